//! The `tibiot-exporter` binary: parses the command line (flags follow the Prometheus
//! exporters' names) and hands over to the library. Exit status: 0 success,
//! 1 an API or runtime failure, 2 bad usage or bad configuration.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tibiot_exporter::config;

#[derive(Parser)]
#[command(
    name = "tibiot-exporter",
    version = tibiot_exporter::version::LONG_VERSION,
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
    /// Validate the configuration file and exit (0 valid, 2 invalid).
    CheckConfig {
        /// Path to the configuration file.
        #[arg(long = "config.file", default_value = config::DEFAULT_CONFIG_FILE)]
        config_file: PathBuf,
        /// Also validate this web configuration file (TLS, basic auth).
        #[arg(long = "web.config.file")]
        web_config_file: Option<PathBuf>,
    },
    /// Run the embedded TIBIOT simulator (prints one JSON line, then serves until SIGINT/SIGTERM).
    Simulate(Box<tibiot_sim::cli::SimulateArgs>),
    /// Simulator + exporter with a generated configuration: zero setup.
    Demo(tibiot_exporter::demo::DemoFlags),
}

fn main() -> ExitCode {
    let cli: Cli = match tibiot_exporter::serve::parse_args() {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cli.command {
        Some(Command::CheckConfig {
            config_file,
            web_config_file,
        }) => check_config(&config_file, web_config_file.as_deref()),
        None => tibiot_exporter::serve::run(cli.serve),
        Some(Command::Simulate(args)) => tibiot_sim::cli::run(*args),
        Some(Command::Demo(d)) => tibiot_exporter::demo::run(d, cli.serve.log, cli.serve.web),
    }
}

/// `check-config`: the configuration file and, when given, the web configuration file.
fn check_config(config_file: &std::path::Path, web: Option<&std::path::Path>) -> ExitCode {
    let status = config::check_config_command(config_file);
    if status != ExitCode::SUCCESS {
        return status;
    }
    match web.map(tibiot_web::check_file) {
        Some(Err(e)) => {
            eprintln!("invalid web configuration: {e}");
            ExitCode::from(2)
        }
        Some(Ok(())) => {
            if let Some(w) = web {
                println!("{}: OK", w.display());
            }
            ExitCode::SUCCESS
        }
        None => ExitCode::SUCCESS,
    }
}
