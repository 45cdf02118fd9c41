//! The `writ` command: the server and every operator command, in one binary.

/// mimalloc rather than the system allocator: ingest and the ledger allocate many small JSON
/// values, where glibc's malloc and free took about a quarter of the CPU time (measured with
/// `perf` on `writ bench ingest`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin_cmd;
mod audit_cmd;
mod bench;
mod bench_http;
mod bench_ingest;
mod bench_soak;
mod bench_writeback;
mod campaign_cmd;
mod case_cmd;
mod client;
mod config;
mod exception_cmd;
mod ingest_cmd;
mod inventory_cmd;
mod keys_cmd;
mod ledger_key;
mod logging;
mod policy_cmd;
mod policy_source;
mod principal_cmd;
mod progress;
mod publish_s3;
mod report_cmd;
mod request_cmd;
mod serve;
mod token_cmd;
mod witness_cmd;
mod writeback_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
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
    /// Run the HTTP API. With no options: embedded SQLite file `writ.db` and signing key
    /// `writ-ledger.key` in the working directory, listening on 127.0.0.1:8080.
    Serve(serve::ServeArgs),
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Manage the ledger's checkpoint signing key.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Verify the ledger, or export and verify offline bundles.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Maintenance: rebuild projections from the ledger, seal an unsigned tail.
    #[command(subcommand)]
    Admin(admin_cmd::AdminCommand),
    /// Run a witness that co-signs ledgers' checkpoints (C2SP tlog-witness).
    #[command(subcommand)]
    Witness(witness_cmd::WitnessCommand),
    /// Ingest findings files (streaming, constant memory, progress bar).
    Ingest(ingest_cmd::IngestArgs),
    /// Validate, test and inspect policy bundles.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Discover a target's identities into the inventory.
    Sync(inventory_cmd::SyncArgs),
    /// Import ownership rules; list the inventory.
    #[command(subcommand)]
    Inventory(inventory_cmd::InventoryCommand),
    /// Each target system's inventory freshness and last sync (scheduled or asked for).
    Systems(inventory_cmd::SystemsArgs),
    /// Reports from the ledger: evidence by control.
    #[command(subcommand)]
    Report(report_cmd::ReportCommand),
    /// Approve a case's pending change, as the principal of WRIT_TOKEN (through the API);
    /// queues the write-back once the approval rule is met.
    Approve(writeback_cmd::VoteArgs),
    /// Reject a case's pending change (through the API): the request ends.
    Reject(writeback_cmd::VoteArgs),
    /// Undo a case's verified change from its recorded pre-image (through the API).
    Rollback(writeback_cmd::RollbackArgs),
    /// Principals (people and services), their teams, roles and tokens.
    #[command(subcommand)]
    Principal(principal_cmd::PrincipalCommand),
    /// Drive the write-back worker.
    #[command(subcommand)]
    Writeback(writeback_cmd::WriteBackCommand),
    /// List cases and show their story; close, dismiss or unfreeze one.
    #[command(subcommand)]
    Case(case_cmd::CaseCommand),
    /// Exceptions: accept a case's risk for a while; list them.
    #[command(subcommand)]
    Exception(exception_cmd::ExceptionCommand),
    /// Ask for a change no finding called for: a new service account, an OAuth client's
    /// scopes, an agent's time-boxed tool access (through the API).
    #[command(subcommand)]
    Request(request_cmd::RequestCommand),
    /// Certification campaigns: owner teams certify or revoke each identity of a system by a
    /// deadline (through the API).
    #[command(subcommand)]
    Campaign(campaign_cmd::CampaignCommand),
    /// Make credentials for findings sources.
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// Measure throughput beside a baseline taken in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
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
        Command::Serve(args) => serve::run(config, args).map(|()| ExitCode::SUCCESS),
        Command::Config => config.print_redacted().map(|()| ExitCode::SUCCESS),
        Command::Keys(command) => keys_cmd::run(&config, command).map(|()| ExitCode::SUCCESS),
        Command::Audit(command) => audit_cmd::run(&config, command),
        Command::Admin(command) => admin_cmd::run(&config, command),
        Command::Witness(command) => witness_cmd::run(command).map(|()| ExitCode::SUCCESS),
        Command::Ingest(args) => ingest_cmd::run(&config, args),
        Command::Policy(command) => policy_cmd::run(&config, command),
        Command::Sync(args) => inventory_cmd::sync(args),
        Command::Inventory(command) => inventory_cmd::run(command),
        Command::Systems(args) => inventory_cmd::systems(args),
        Command::Report(command) => report_cmd::run(&config, command),
        Command::Approve(args) => writeback_cmd::vote(args, "approve"),
        Command::Reject(args) => writeback_cmd::vote(args, "reject"),
        Command::Rollback(args) => writeback_cmd::rollback(args),
        Command::Principal(command) => principal_cmd::run(&config, command),
        Command::Writeback(command) => writeback_cmd::run(&config, command),
        Command::Case(command) => case_cmd::run(command),
        Command::Exception(command) => exception_cmd::run(command),
        Command::Request(command) => request_cmd::run(command),
        Command::Campaign(command) => campaign_cmd::run(command),
        Command::Token(command) => token_cmd::run(command).map(|()| ExitCode::SUCCESS),
        Command::Bench(command) => bench::run(command),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            tracing::debug!(error = format!("{err:#}"), "command failed");
            eprintln!("writ: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// A multi-threaded runtime for commands that talk to the database.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Opens the configured store, naming the (redacted) URL on failure.
pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn writ_store::Store>> {
    writ_store::open(&config.database.url)
        .await
        .with_context(|| {
            format!(
                "cannot open the database {}",
                writ_store::redact_url(&config.database.url)
            )
        })
}
