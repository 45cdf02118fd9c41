//! `writ approve`, `writ rollback`, `writ writeback run`: the human side of write-back and a way
//! to drive the worker from the command line.

use std::process::ExitCode;
use std::sync::Arc;

use writ_connectors::Connector;
use writ_core::ids::CaseId;
use writ_engine::writeback::WriteBack;

use crate::config::Config;

/// Options of `writ approve`.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The case.
    case: CaseId,
    /// Who approves (recorded in the ledger; separation of duties applies).
    #[arg(long = "as")]
    approver: String,
    /// Why (required, recorded in the ledger).
    #[arg(long)]
    rationale: String,
    /// Plan and record the change but never apply it.
    #[arg(long)]
    dry_run: bool,
}

/// Options of `writ rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The case whose verified change to undo.
    case: CaseId,
    /// Who asks for it.
    #[arg(long = "as")]
    actor: String,
    /// Why.
    #[arg(long)]
    rationale: String,
}

/// `writ writeback ...`
#[derive(Debug, clap::Subcommand)]
pub enum WriteBackCommand {
    /// Work every pending write-back job once (what `writ serve` does continuously).
    Run,
}

/// Connects every configured target; a target that cannot be reached is reported and skipped
/// (its jobs wait).
pub async fn connectors(config: &Config) -> Vec<Arc<dyn Connector>> {
    let mut out = Vec::new();
    for target in &config.targets {
        match crate::inventory_cmd::connect(config, target).await {
            Ok(connector) => out.push(connector),
            Err(err) => {
                tracing::error!(target = %target.name, error = format!("{err:#}"), "target unavailable; its write-back jobs wait")
            }
        }
    }
    out
}

/// The write-back engine wired from the configuration.
pub async fn engine(config: &Config) -> anyhow::Result<WriteBack> {
    Ok(crate::serve::build(config, true).await?.writeback)
}

pub fn approve(config: &Config, args: ApproveArgs) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        let engine = engine(config).await?;
        match engine
            .approve(args.case, &args.approver, &args.rationale, args.dry_run)
            .await?
        {
            Some(job) => println!(
                "approved by {}; approvals complete: write-back job {} queued ({} on {}/{})",
                args.approver,
                job.id,
                job.action.name(),
                job.system,
                job.external_id
            ),
            None => println!("approved by {}; more approvals are needed", args.approver),
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn rollback(config: &Config, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        let engine = engine(config).await?;
        let job = engine
            .rollback(args.case, &args.actor, &args.rationale)
            .await?;
        println!(
            "rolled back {} on {}/{} from its recorded pre-image",
            job.action.name(),
            job.system,
            job.external_id
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run(config: &Config, command: WriteBackCommand) -> anyhow::Result<ExitCode> {
    let WriteBackCommand::Run = command;
    crate::runtime()?.block_on(async {
        let engine = engine(config).await?;
        let report = engine.run_once().await?;
        println!(
            "write-back: {} verified, {} failed (needs attention), {} to retry, {} planned (dry run)",
            report.verified, report.failed, report.retried, report.planned
        );
        Ok(if report.failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}
