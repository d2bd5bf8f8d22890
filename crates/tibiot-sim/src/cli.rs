//! The `tibiot-exporter simulate` command: starts the simulator, prints one JSON line
//! `{"listen","app_key","app_secret","pools","cards"}` as the first line on stdout, and serves
//! until SIGINT or SIGTERM.

use crate::{Fault, FaultRule, SimHandle, SimOptions};
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 200ms, 1s)"))
}

fn count_parser(max: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |s: &str| {
        let n: usize = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a whole number"))?;
        if n <= max {
            Ok(n)
        } else {
            Err(format!("at most {max}"))
        }
    }
}

fn parse_prefix(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    if s.is_empty() || (s.starts_with('/') && !s.contains(['?', '#', ' '])) {
        Ok(s.to_string())
    } else {
        Err("must be a path starting with '/'".into())
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1".into())
    }
}

/// Flags of `simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Seed of the generated world.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of pools (at most 100000).
    #[arg(long, default_value_t = 8, value_parser = count_parser(100_000))]
    pub pools: usize,
    /// Number of cards (at most 1000000).
    #[arg(long, default_value_t = 40, value_parser = count_parser(1_000_000))]
    pub cards: usize,
    /// Latency added to every answer (e.g. 200ms).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub latency: Duration,
    /// Share of requests (0..1) answered with a random fault.
    #[arg(long = "error-rate", value_parser = parse_ratio, default_value_t = 0.0)]
    pub error_rate: f64,
    /// App key to verify (made up when absent).
    #[arg(long = "app-key", requires = "app_secret")]
    pub app_key: Option<String>,
    /// App secret to verify (made up when absent).
    #[arg(long = "app-secret", requires = "app_key")]
    pub app_secret: Option<String>,
    /// Do not verify signatures (`auth: none`).
    #[arg(long = "no-auth")]
    pub no_auth: bool,
    /// A pool code or ICCID whose every request answers HTTP 500 (repeatable).
    #[arg(long = "failing-target")]
    pub failing_targets: Vec<String>,
    /// A pool code or ICCID whose every request answers after --slow-delay (repeatable).
    #[arg(long = "slow-target")]
    pub slow_targets: Vec<String>,
    /// Delay of the slow targets.
    #[arg(long = "slow-delay", value_parser = parse_duration, default_value = "30s")]
    pub slow_delay: Duration,
    /// Serve the endpoints below this path (e.g. /open/tibiot); the base_url then ends with it.
    #[arg(long = "path-prefix", value_parser = parse_prefix, default_value = "")]
    pub path_prefix: String,
    /// One step of a network-operation batch.
    #[arg(long = "batch-step", value_parser = parse_duration, default_value = "400ms")]
    pub batch_step: Duration,
    /// A pool code whose detail is hostile as data: --hostile-statuses distinct card
    /// statuses and a name of --hostile-name-bytes bytes (repeatable).
    #[arg(long = "hostile-pool")]
    pub hostile_pools: Vec<String>,
    /// Distinct card statuses in a hostile pool's detail.
    #[arg(long = "hostile-statuses", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub hostile_statuses: u32,
    /// Bytes of a hostile pool's name.
    #[arg(long = "hostile-name-bytes", default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(0..=16_777_216))]
    pub hostile_name_bytes: u32,
    /// Runaway cards and the world clock's speed.
    #[command(flatten)]
    pub knobs: Box<TimeKnobs>,
}

/// `simulate` flags for time-compressed end-to-end tests (boxed: `SimulateArgs` sits in the
/// exporter's command enum).
#[derive(Debug, Clone, Args)]
pub struct TimeKnobs {
    /// A card (ICCID) that runs away: it uses --runaway-factor × its normal daily usage on top
    /// of it until switched off (repeatable).
    #[arg(long = "runaway-card", value_name = "ICCID")]
    pub runaway_cards: Vec<String>,
    /// World time after the start at which the runaway cards start (e.g. 25h, to give
    /// Prometheus a day of normal history first).
    #[arg(long = "runaway-after", value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub runaway_after: Duration,
    /// How many times its normal daily usage a runaway card adds.
    #[arg(long = "runaway-factor", value_name = "N", value_parser = parse_factor, default_value_t = 100.0)]
    pub runaway_factor: f64,
    /// The world clock runs this many times faster than real time (for time-compressed
    /// tests: 60 makes an hour pass in a minute).
    #[arg(long = "clock-speed", value_name = "N", value_parser = parse_speed, default_value_t = 1.0)]
    pub clock_speed: f64,
    /// World time at the start, RFC 3339 (default: real time), e.g. to keep a test away from a
    /// month start.
    #[arg(long = "clock-start", value_name = "TIME", value_parser = parse_time)]
    pub clock_start: Option<chrono::DateTime<chrono::Utc>>,
    /// Serve `POST /-/clock?at=RFC3339` (freeze the world clock there) and
    /// `POST /-/clock?resume`, unauthenticated, to read the world at chosen times.
    #[arg(long = "clock-control")]
    pub clock_control: bool,
}

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{e} (e.g. 2026-03-10T00:00:00+08:00)"))
}

fn parse_factor(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1_000_000.0).contains(&v) => Ok(v),
        _ => Err("must be a number from 0 to 1000000".into()),
    }
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.001..=100_000.0).contains(&v) => Ok(v),
        _ => Err("must be a number from 0.001 to 100000".into()),
    }
}

impl SimulateArgs {
    pub fn options(&self) -> SimOptions {
        SimOptions {
            seed: self.seed,
            pools: self.pools,
            cards: self.cards,
            latency: self.latency,
            error_rate: self.error_rate,
            app_key: self.app_key.clone(),
            app_secret: self.app_secret.clone(),
            auth: !self.no_auth,
            batch_step: self.batch_step,
            failing_targets: self.failing_targets.clone(),
            slow_targets: self.slow_targets.clone(),
            slow_delay: self.slow_delay,
            path_prefix: self.path_prefix.clone(),
            runaway_cards: self.knobs.runaway_cards.clone(),
            runaway_factor: self.knobs.runaway_factor,
            runaway_after: self.knobs.runaway_after,
            clock_speed: self.knobs.clock_speed,
            clock_start: self.knobs.clock_start,
            clock_control: self.knobs.clock_control,
            faults: self
                .hostile_pools
                .iter()
                .map(|code| {
                    FaultRule::new(Fault::HostilePool {
                        statuses: self.hostile_statuses,
                        name_bytes: self.hostile_name_bytes,
                    })
                    .target(code.clone())
                    .endpoint(tibiot_api::Endpoint::PoolDetail)
                })
                .collect(),
            ..SimOptions::default()
        }
    }
}

/// The first stdout line.
pub fn announcement(sim: &SimHandle) -> String {
    // Written by hand to keep the documented key order (`listen` first).
    let j = |v: serde_json::Value| v.to_string();
    format!(
        "{{\"listen\":{},\"app_key\":{},\"app_secret\":{},\"pools\":{},\"cards\":{}}}",
        j(sim.addr().to_string().into()),
        j(sim.app_key().into()),
        j(sim.app_secret().into()),
        j(sim.pools().into()),
        j(sim.cards().into()),
    )
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called (before
/// the announcement is printed), so a signal sent right after reading it is not missed.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Runs `simulate`; returns the exit status.
pub fn run(args: SimulateArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let sim = match SimHandle::start(args.options(), args.listen).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::from(1);
            }
        };
        let stop = match shutdown_signal() {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: cannot install signal handlers: {e}");
                return ExitCode::from(1);
            }
        };
        let line = announcement(&sim);
        {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                eprintln!("error: cannot write to stdout");
                return ExitCode::from(1);
            }
        }
        eprintln!(
            "simulator serving {} pools and {} cards on http://{} (auth: {}, clock speed {}, runaway cards: {}); Ctrl-C to stop",
            sim.pools().len(),
            sim.cards().len(),
            sim.addr(),
            if args.no_auth { "none" } else { "hmac-sha256" },
            args.knobs.clock_speed,
            args.knobs.runaway_cards.len(),
        );
        stop.await;
        sim.shutdown().await;
        ExitCode::SUCCESS
    })
}
