//! The `tibiotctl` binary: the operator's tool (like promtool or amtool beside their servers).
//! Everything that writes to the TIBIOT API lives here, never in the exporter. Exit status:
//! 0 success, 1 an API or runtime failure, 2 bad usage or bad configuration.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tibiotctl",
    version = tibiot_exporter::version::LONG_VERSION,
    about = "Operator tool for the TIBIOT IoT SIM-card platform: pools, cards, batches, backfill, guard",
    after_help = "Each command takes only the flags that mean something to it: see `tibiotctl COMMAND --help`.\nExit status: 0 success, 1 an API or runtime failure, 2 bad usage or configuration."
)]
struct Cli {
    #[command(flatten)]
    global: tibiotctl::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Look up a flow pool: `pool show CODE`, `pool usage CODE --month|--day`.
    Pool(tibiotctl::PoolArgs),
    /// Look up cards and switch their network: `card show|usage|network`.
    Card(tibiotctl::CardArgs),
    /// Follow a network-operation batch: `batch status BATCHCODE [--wait]`.
    Batch(tibiotctl::BatchArgs),
    /// Print the last days' and months' usage as OpenMetrics with timestamps, for promtool.
    Backfill(tibiotctl::BackfillCmd),
    /// Receive Alertmanager webhooks and switch runaway cards off (dry-run by default).
    Guard(tibiotctl::GuardCmd),
}

fn main() -> ExitCode {
    let cli: Cli = match tibiot_exporter::serve::parse_args() {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cli.command {
        Command::Pool(a) => tibiotctl::pool_command(&cli.global, a),
        Command::Card(a) => tibiotctl::card_command(&cli.global, a),
        Command::Batch(a) => tibiotctl::batch_command(&cli.global, a),
        Command::Backfill(a) => tibiotctl::backfill_command(&cli.global, a),
        Command::Guard(a) => tibiotctl::guard_command(&cli.global, a),
    }
}
