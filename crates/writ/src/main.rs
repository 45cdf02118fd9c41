//! The `writ` command: the server and every operator command, in one binary.

mod config;
mod logging;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};

/// writ: the control plane between NHI findings and governed, verified write-back.
#[derive(Debug, Parser)]
#[command(name = "writ", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Defaults to ./writ.toml when it exists.
    #[arg(long, short = 'c', global = true, env = "WRIT_CONFIG")]
    config: Option<PathBuf>,

    /// Log format: text for people, json for log pipelines.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,

    /// Log filter, for example `info` or `writ=debug,sqlx=warn`.
    #[arg(long, global = true)]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API (and, later, the console). With no options: embedded SQLite file
    /// `writ.db` in the working directory, listening on 127.0.0.1:8080.
    Serve(serve::ServeArgs),
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("writ: {err:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    if let Some(level) = cli.log_level {
        config.log.level = level;
    }
    if let Err(err) = logging::init(&config.log) {
        eprintln!("writ: {err:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(config, args),
        Command::Config => config.print_redacted(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "writ stopped with an error");
            eprintln!("writ: {err:#}");
            ExitCode::FAILURE
        }
    }
}
