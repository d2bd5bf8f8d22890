//! The `tibiot-exporter` binary: parses the command line (flags follow the Prometheus
//! exporters' names, CONTRACT §4) and hands over to the library. Exit status: 0 success,
//! 1 an API or runtime failure, 2 bad usage or bad configuration.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tibiot-exporter",
    version,
    about = "Prometheus exporter for the TIBIOT IoT SIM-card platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Flags of the server (the default command).
    #[command(flatten)]
    serve: tibiot_exporter::serve::ServeFlags,
}

#[derive(Subcommand)]
enum Command {
    /// Simulator + exporter with a generated configuration: zero setup.
    Demo(tibiot_exporter::demo::DemoFlags),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        None => tibiot_exporter::serve::run(cli.serve),
        Some(Command::Demo(d)) => tibiot_exporter::demo::run(d, cli.serve.log),
    }
}
