//! `writ approve`, `writ rollback`, `writ writeback run`: the human side of write-back and a way
//! to drive the worker from the command line.

use std::process::ExitCode;
use std::sync::Arc;

use writ_connectors::Connector;
use writ_core::ids::CaseId;
use writ_engine::writeback::WriteBack;

use crate::client::{Client, ServerArgs};
use crate::config::Config;

/// Options of `writ approve` and `writ reject`.
#[derive(Debug, clap::Args)]
pub struct VoteArgs {
    /// The case.
    case: CaseId,
    /// Why (required, recorded in the ledger with your authenticated name).
    #[arg(long)]
    rationale: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Options of `writ rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The case whose verified change to undo.
    case: CaseId,
    /// Why (required, recorded in the ledger).
    #[arg(long)]
    rationale: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// `writ writeback ...`
#[derive(Debug, clap::Subcommand)]
pub enum WriteBackCommand {
    /// Work every pending write-back job once (what `writ serve` does continuously).
    Run,
}

/// Connects every configured target; a target that cannot be reached is reported and skipped
/// (its jobs wait).
pub async fn connectors(config: &Config) -> Vec<(String, Arc<dyn Connector>)> {
    let mut out = Vec::new();
    for target in &config.targets {
        match crate::inventory_cmd::connect(config, target).await {
            Ok(connector) => out.push((target.name.clone(), connector)),
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

/// `writ approve` / `writ reject`: a vote through the API, as the principal of `WRIT_TOKEN`.
pub fn vote(args: VoteArgs, verdict: &str) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        let client = Client::from_env(&args.server)?;
        let answer: serde_json::Value = client
            .post(
                &format!("/v1/cases/{}/approvals", args.case),
                &serde_json::json!({"verdict": verdict, "rationale": args.rationale}),
            )
            .await?;
        let voter = answer["voter"].as_str().unwrap_or("?");
        let rule = answer["rule"].as_str().unwrap_or("?");
        if verdict == "reject" {
            println!("{voter} rejected case {}: the request ends", args.case);
        } else if let (Some(job), Some("rollback_intent")) =
            (answer["job_id"].as_str(), answer["job_state"].as_str())
        {
            println!(
                "{voter} approved case {}; \"{rule}\" is met: the rollback of job {job} is recorded, the worker undoes the change",
                args.case
            );
        } else if let Some(job) = answer["job_id"].as_str() {
            println!(
                "{voter} approved case {}; \"{rule}\" is met: write-back job {job} queued",
                args.case
            );
        } else {
            println!(
                "{voter} approved case {}; \"{rule}\" needs {} more approver(s)",
                args.case,
                answer["missing"].as_u64().unwrap_or(0)
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `writ rollback`: through the API.
pub fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        let client = Client::from_env(&args.server)?;
        let answer: serde_json::Value = client
            .post(
                &format!("/v1/cases/{}/rollback", args.case),
                &serde_json::json!({"rationale": args.rationale}),
            )
            .await?;
        match answer["state"].as_str().unwrap_or("?") {
            "rollback_requested" => println!(
                "case {}: rollback requested; policy asks for \"{}\" ({} more approver(s)): {}",
                args.case,
                answer["rule"].as_str().unwrap_or("?"),
                answer["missing"].as_u64().unwrap_or(0),
                answer["reason"].as_str().unwrap_or("")
            ),
            state => println!(
                "case {}: job {} is {state}",
                args.case,
                answer["job_id"].as_str().unwrap_or("?"),
            ),
        }
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
