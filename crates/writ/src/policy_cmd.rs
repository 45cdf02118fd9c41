//! `writ policy`: validate a bundle and run its test cases.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::policy_source;

/// `writ policy ...`
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Load a bundle and validate every policy strictly against its schema. Names every
    /// problem with its file and line; exit 1 when the bundle is refused.
    Validate {
        /// The bundle directory (*.cedar, one *.cedarschema, remediations.toml).
        dir: PathBuf,
    },
    /// Run a folder of test cases (one TOML file per case with the expected decision) against a
    /// bundle, like `opa test`. Exit 1 when any case fails.
    Test {
        /// The bundle directory.
        dir: PathBuf,
        /// The folder of cases.
        cases: PathBuf,
    },
    /// Decide the finding decisions the ledger records again under a candidate bundle, before
    /// deploying it: what would change, per tier and per policy, and the cases. Reads the
    /// database; writes nothing.
    Simulate {
        /// The candidate bundle directory.
        #[arg(long)]
        candidate: PathBuf,
        /// Only decisions recorded within this span (`30d`, `12h`); all when absent.
        #[arg(long)]
        since: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: &crate::config::Config, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Simulate {
            candidate,
            since,
            json,
        } => simulate(config, &candidate, since.as_deref(), json),
        PolicyCommand::Validate { dir } => match writ_policy::PolicyBundle::load_dir(&dir) {
            Ok(bundle) => {
                println!(
                    "policy bundle {} is valid: {} policies, {} remediations, hash {}",
                    dir.display(),
                    bundle.policy_ids().count(),
                    bundle.remediations().len(),
                    bundle.hash()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("policy bundle {} refused:\n{err}", dir.display());
                Ok(ExitCode::FAILURE)
            }
        },
        PolicyCommand::Test { dir, cases } => {
            let bundle = policy_source::load_dir(&dir)?;
            let report = writ_policy::run_tests(&bundle, &cases)?;
            print!("{report}");
            Ok(if report.all_passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// `writ policy simulate`.
fn simulate(
    config: &crate::config::Config,
    candidate: &std::path::Path,
    since: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    let bundle = policy_source::load_dir(candidate)
        .with_context(|| format!("--candidate {}", candidate.display()))?;
    let since = since
        .map(|span| {
            let seconds = crate::exception_cmd::span_seconds(span).context("--since")?;
            let back = jiff::SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX));
            writ_core::Clock::now(&writ_core::SystemClock)
                .checked_sub(back)
                .context("--since reaches before the start of time")
        })
        .transpose()?;
    crate::runtime()?.block_on(async {
        let store = crate::open_store(config).await?;
        let bar = crate::progress::bar(0, "simulating");
        let started = std::time::Instant::now();
        let report = writ_engine::simulate::simulate(
            &*store,
            std::sync::Arc::new(bundle),
            since,
            &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            },
        )
        .await?;
        bar.finish_and_clear();
        let elapsed = started.elapsed().as_secs_f64();
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_simulation(&report, elapsed);
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_simulation(report: &writ_engine::simulate::SimulationReport, elapsed: f64) {
    let rate = if elapsed > 0.0 {
        report.decisions as f64 / elapsed
    } else {
        0.0
    };
    println!(
        "candidate {}: {} decision(s) simulated in {elapsed:.2}s ({rate:.0}/s); {} would change, in {} case(s)",
        report.candidate_bundle,
        report.decisions,
        report.changed,
        report.cases.len()
    );
    println!("by tier (recorded -> candidate):");
    for (move_, count) in &report.tiers {
        println!("  {move_}: {count}");
    }
    if !report.policies.is_empty() {
        println!("by policy (decisions determined, recorded -> candidate):");
        for (id, delta) in &report.policies {
            println!("  {id}: {} -> {}", delta.recorded, delta.candidate);
        }
    }
    for change in &report.changes {
        let tier = |d: &writ_core::decision::Decision| {
            format!("{} by [{}]", d.reason, d.determining_policies.join(", "))
        };
        println!(
            "  case {} (entry {}) {}: {} => {}",
            change
                .case_id
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            change.seq,
            change.action,
            tier(&change.recorded),
            change.candidate.as_ref().map_or_else(
                || format!(
                    "cannot decide: {}",
                    change.error.clone().unwrap_or_default()
                ),
                tier
            ),
        );
    }
}
