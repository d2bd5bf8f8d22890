//! The operator commands (README, "Operator commands"): `pool show|usage`,
//! `card show|usage|network`, `batch status`, `backfill` and `guard`. This module owns their command-line arguments, loading the
//! configuration and picking the account, the one error type with its exit code (0 ok,
//! 1 API/runtime failure, 2 bad usage or configuration) and the tokio runtime they run on.
//! Each command lives in its own module; [`output`] prints tables and JSON.

#![warn(unreachable_pub)]

pub mod backfill;
pub mod batch;
pub mod card;
pub mod guard;
pub mod iccid;
pub mod network;
pub mod output;
pub mod pool;

use chrono::NaiveDate;
use clap::{Args, Subcommand};
use output::OutputFormat;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::calendar::{Month, parse_day};
use tibiot_api::{ApiError, Client, Gate};
use tibiot_exporter::config::{Account, Config};

/// The default `--timeout`: upper bound of one API call, retries included.
pub const DEFAULT_TIMEOUT: &str = "30s";

pub use tibiot_exporter::config::DEFAULT_CONFIG_FILE;

/// What every API command works from: the configuration file and the flags of the command
/// that mean something to it (`--output` is ignored by `backfill` and `guard`, `--account`
/// by `guard`).
#[derive(Debug, Clone)]
pub struct CommonArgs {
    pub config_file: PathBuf,
    pub account: Option<String>,
    pub output: OutputFormat,
    pub timeout: Duration,
}

/// `--config.file`: every command reads the exporter's configuration. Accepted before or
/// after the command.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Path to the exporter's configuration file (accounts, credentials, limits).
    #[arg(long = "config.file", value_name = "PATH", default_value = DEFAULT_CONFIG_FILE, global = true, help_heading = "Global options", display_order = 100)]
    pub config_file: PathBuf,
}

/// `--account`: the commands that work on one account.
#[derive(Debug, Clone, Args)]
pub struct AccountArg {
    /// Account to use (default: the first configured account).
    #[arg(
        long,
        value_name = "NAME",
        global = true,
        help_heading = "API",
        display_order = 50
    )]
    pub account: Option<String>,
}

/// `--timeout`: the commands that call the API.
#[derive(Debug, Clone, Args)]
pub struct TimeoutArg {
    /// Upper bound of one API call (GET retries included). Generous by default, because a
    /// network operation that times out has an unknown outcome.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout, global = true, help_heading = "API", display_order = 51)]
    pub timeout: Duration,
}

/// `--output`: the commands that print tables.
#[derive(Debug, Clone, Args)]
pub struct OutputArg {
    /// Output format.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Table, global = true, help_heading = "Output", display_order = 60)]
    pub output: OutputFormat,
}

/// The flags of the lookup commands (`pool`, `card`, `batch`).
#[derive(Debug, Clone, Args)]
pub struct LookupArgs {
    #[command(flatten)]
    pub account: AccountArg,
    #[command(flatten)]
    pub timeout: TimeoutArg,
    #[command(flatten)]
    pub output: OutputArg,
}

impl LookupArgs {
    pub fn common(&self, global: &GlobalArgs) -> CommonArgs {
        CommonArgs {
            config_file: global.config_file.clone(),
            account: self.account.account.clone(),
            output: self.output.output,
            timeout: self.timeout.timeout,
        }
    }
}

/// A `--timeout` value: a humantime duration, at least 1ms.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    if d.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(d)
}

/// `--month=YYYY-MM | --day=YYYY-MM-DD`, exactly one.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct PeriodArgs {
    /// A month within the last 12 (API calendar), YYYY-MM.
    #[arg(long, value_name = "YYYY-MM", value_parser = parse_month_arg)]
    pub month: Option<Month>,
    /// A day within the last 30 (API calendar), YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day_arg)]
    pub day: Option<NaiveDate>,
}

fn parse_month_arg(s: &str) -> Result<Month, String> {
    Month::parse(s).ok_or_else(|| format!("{s:?} is not a month (YYYY-MM)"))
}

fn parse_day_arg(s: &str) -> Result<NaiveDate, String> {
    parse_day(s).ok_or_else(|| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

/// A period the user asked for.
#[derive(Debug, Clone, Copy)]
pub enum Period {
    Month(Month),
    Day(NaiveDate),
}

impl PeriodArgs {
    pub fn period(&self) -> Result<Period, Failure> {
        match (self.month, self.day) {
            (Some(m), None) => Ok(Period::Month(m)),
            (None, Some(d)) => Ok(Period::Day(d)),
            _ => Err(Failure::Usage(
                "give exactly one of --month or --day".into(),
            )),
        }
    }
}

/// `tibiotctl pool …`
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    #[command(flatten)]
    pub flags: LookupArgs,
    #[command(subcommand)]
    pub command: PoolCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PoolCommand {
    /// Show a flow pool: type, usage, capacity, cards by status.
    Show {
        /// Pool code.
        #[arg(value_name = "CODE")]
        code: String,
    },
    /// Show a pool's usage of one month or one day.
    Usage {
        /// Pool code.
        #[arg(value_name = "CODE")]
        code: String,
        #[command(flatten)]
        period: PeriodArgs,
    },
}

/// `tibiotctl card …`
#[derive(Debug, Clone, Args)]
pub struct CardArgs {
    #[command(flatten)]
    pub flags: LookupArgs,
    #[command(subcommand)]
    pub command: CardCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CardCommand {
    /// Show a card: identifiers, status, billing method, usage.
    Show {
        #[arg(value_name = "ICCID")]
        iccid: String,
    },
    /// Show a card's usage of one month or one day.
    Usage {
        #[arg(value_name = "ICCID")]
        iccid: String,
        #[command(flatten)]
        period: PeriodArgs,
    },
    /// Switch the network of cards on or off, in batches of at most 10, and follow the batches.
    Network(network::NetworkArgs),
}

/// `tibiotctl batch …`
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub flags: LookupArgs,
    #[command(subcommand)]
    pub command: BatchCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BatchCommand {
    /// Per-card state of a network-operation batch.
    Status(batch::StatusArgs),
}

/// Why a command failed, and so its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Bad usage or bad configuration: exit 2.
    Usage(String),
    /// An API or runtime failure: exit 1.
    Runtime(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Runtime(m) => m,
        }
    }

    /// A failed API call: what was asked, the error (with the API's code, message and traceId
    /// when it gave them) and a hint for credential errors.
    pub fn api(what: &str, account: &str, e: &ApiError) -> Failure {
        let hint = if e.is_auth() {
            format!(" (check the credentials of account {account:?})")
        } else {
            String::new()
        };
        Failure::Runtime(format!("{what}: {e}{hint}"))
    }
}

/// Runs a command's future on a fresh runtime and turns the result into an exit status,
/// printing a failure on stderr.
fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("tibiotctl: error: {}", f.message());
            ExitCode::from(f.exit_code())
        }
    }
}

fn block_on<F: Future<Output = Result<(), Failure>>>(f: F) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(f)
}

/// Reads the configuration; any problem is a usage error (exit 2).
pub fn load_config(path: &std::path::Path) -> Result<Config, Failure> {
    Config::load(path)
        .map_err(|e| Failure::Usage(format!("bad configuration file {}:\n{e}", path.display())))
}

/// The account named by `--account`, or the first one.
pub fn pick_account<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a Account, Failure> {
    match name {
        Some(n) => config.account(n).ok_or_else(|| {
            let names: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
            Failure::Usage(format!(
                "no account named {n:?} in the configuration (accounts: {})",
                names.join(", ")
            ))
        }),
        None => config
            .accounts
            .first()
            .ok_or_else(|| Failure::Usage("the configuration has no accounts".into())),
    }
}

/// A client for the account whose requests pass `gate` (the account's limits); one HTTP
/// attempt takes at most `timeout`.
pub fn client_for(account: &Account, gate: Gate, timeout: Duration) -> Result<Client, Failure> {
    let mut opts = account.client_options();
    opts.request_timeout = timeout;
    opts.gate = Some(Arc::new(gate));
    Client::new(opts).map_err(|e| {
        Failure::Usage(format!(
            "account {:?}: cannot build the API client: {e}",
            account.name
        ))
    })
}

/// What an API command works with.
pub struct Ctx {
    pub config: Config,
    pub account: Account,
    pub client: Client,
    pub output: OutputFormat,
    /// `--timeout`.
    pub timeout: Duration,
}

impl Ctx {
    pub fn load(common: &CommonArgs) -> Result<Ctx, Failure> {
        let config = load_config(&common.config_file)?;
        let account = pick_account(&config, common.account.as_deref())?.clone();
        let gate = Gate::new(
            config.collect.concurrency,
            config.collect.requests_per_second,
        );
        let client = client_for(&account, gate, common.timeout)?;
        Ok(Ctx {
            config,
            account,
            client,
            output: common.output,
            timeout: common.timeout,
        })
    }

    /// The deadline of one API call started now.
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.timeout
    }

    pub fn api_failure(&self, what: &str, e: &ApiError) -> Failure {
        Failure::api(what, &self.account.name, e)
    }
}

/// `tibiotctl pool …`
pub fn pool_command(global: &GlobalArgs, args: PoolArgs) -> ExitCode {
    let common = args.flags.common(global);
    finish(Ctx::load(&common).and_then(|ctx| block_on(pool::run(ctx, args.command))))
}

/// `tibiotctl card …`
pub fn card_command(global: &GlobalArgs, args: CardArgs) -> ExitCode {
    let common = args.flags.common(global);
    let result = match args.command {
        CardCommand::Network(net) => network::run(&common, net),
        other => Ctx::load(&common).and_then(|ctx| block_on(card::run(ctx, other))),
    };
    finish(result)
}

/// `tibiotctl batch …`
pub fn batch_command(global: &GlobalArgs, args: BatchArgs) -> ExitCode {
    let common = args.flags.common(global);
    finish(Ctx::load(&common).and_then(|ctx| match args.command {
        BatchCommand::Status(s) => block_on(batch::run_status(ctx, s)),
    }))
}

/// `tibiotctl backfill …` arguments: its own, plus `--account` and `--timeout`.
#[derive(Debug, Clone, Args)]
pub struct BackfillCmd {
    #[command(flatten)]
    pub args: backfill::BackfillArgs,
    #[command(flatten)]
    pub account: AccountArg,
    #[command(flatten)]
    pub timeout: TimeoutArg,
}

/// `tibiotctl backfill …`
pub fn backfill_command(global: &GlobalArgs, cmd: BackfillCmd) -> ExitCode {
    let common = CommonArgs {
        config_file: global.config_file.clone(),
        account: cmd.account.account,
        output: OutputFormat::Table,
        timeout: cmd.timeout.timeout,
    };
    finish(backfill::run(&common, cmd.args))
}

/// `tibiotctl guard …` arguments: its own, plus `--timeout`.
#[derive(Debug, Clone, Args)]
pub struct GuardCmd {
    #[command(flatten)]
    pub args: guard::GuardArgs,
    #[command(flatten)]
    pub timeout: TimeoutArg,
}

/// `tibiotctl guard …`
pub fn guard_command(global: &GlobalArgs, cmd: GuardCmd) -> ExitCode {
    guard::run(global.config_file.clone(), cmd.timeout.timeout, cmd.args)
}

/// Runs a future on a fresh current-thread runtime (for the commands' own modules).
pub(crate) fn run_async<F: Future<Output = Result<(), Failure>>>(f: F) -> Result<(), Failure> {
    block_on(f)
}
