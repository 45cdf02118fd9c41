//! `writ admin`: maintenance that operators run by hand.

use std::process::ExitCode;

use anyhow::Context as _;
use writ_engine::{audit, rebuild};
use writ_ledger::FailureReason;

use crate::config::Config;

/// `writ admin ...`
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Re-derive the identity, case and finding tables from the ledger, in one transaction.
    Rebuild {
        /// Only compare the tables with what the ledger implies; change nothing. Exits 1 when
        /// they differ.
        #[arg(long)]
        check: bool,
    },
    /// Seal ledger entries that no signed checkpoint covers (after a crash, or a database from
    /// an older writ), which writ refuses to extend until they are sealed. Everything else must
    /// verify first; the seal is an event of its own (`ledger_sealed`, naming the range, the
    /// operator and the reason), and its checkpoint covers the sealed entries.
    Seal {
        /// Why the entries may be trusted (required).
        #[arg(long)]
        reason: String,
    },
}

pub fn run(config: &Config, command: AdminCommand) -> anyhow::Result<ExitCode> {
    let check = match command {
        AdminCommand::Rebuild { check } => check,
        AdminCommand::Seal { reason } => return seal(config, &reason),
    };
    crate::runtime()?.block_on(async {
        let store = crate::open_store(config).await?;
        if check {
            let differences = rebuild::check(&*store).await?;
            if differences.is_empty() {
                println!("projections match the ledger");
                return Ok(ExitCode::SUCCESS);
            }
            for line in &differences {
                println!("{line}");
            }
            eprintln!(
                "{} difference(s) between the tables and the ledger; `writ admin rebuild` repairs them",
                differences.len()
            );
            return Ok(ExitCode::FAILURE);
        }
        let report = rebuild::rebuild(&*store).await?;
        println!(
            "rebuilt projections from {} ledger entries ({} rows)",
            report.entries, report.rows
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `writ admin seal`: checks the whole ledger, and when the only failure is a tail no
/// checkpoint covers, appends `ledger_sealed`, whose checkpoint covers it.
fn seal(config: &Config, reason: &str) -> anyhow::Result<ExitCode> {
    if reason.trim().is_empty() {
        anyhow::bail!("--reason must say why the unsigned entries may be trusted");
    }
    let signer = crate::ledger_key::signer_for_serving(config, true)?;
    let verifier = signer.verifier_key()?;
    crate::runtime()?.block_on(async {
        let store = crate::open_store(config).await?;
        let verdict =
            audit::verify_store(store.clone(), &verifier, &mut |_, _| {}).await?;
        let (signed, entries) = match verdict {
            Ok(report) => {
                println!(
                    "nothing to seal: all {} entries are covered by a signed checkpoint",
                    report.entries
                );
                return Ok(ExitCode::SUCCESS);
            }
            Err(failure) => match failure.reason {
                FailureReason::UnsignedTail { signed, entries } => (signed, entries),
                reason => {
                    eprintln!(
                        "refusing to seal: the ledger fails verification for another reason{}: {reason}",
                        failure
                            .seq
                            .map(|seq| format!(" (first bad entry is seq {seq})"))
                            .unwrap_or_default()
                    );
                    return Ok(ExitCode::FAILURE);
                }
            },
        };
        let publish = crate::serve::checkpoint_sinks(config, &store)?;
        let engine = writ_engine::Engine::builder(store, signer)
            .sequencer_config(writ_engine::SequencerConfig {
                accept_unsigned_tail: true,
                publish,
                ..writ_engine::SequencerConfig::default()
            })
            .start()
            .await
            .context("cannot open the ledger for sealing")?;
        let operator = std::env::var("USER")
            .ok()
            .filter(|user| !user.trim().is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        let appended = engine
            .sequencer
            .append(writ_engine::Draft::new(
                None,
                format!("operator:{operator}"),
                format!("ledger-sealed:{signed}:{entries}"),
                writ_core::event::EventBody::LedgerSealed(writ_core::event::LedgerSealed {
                    signed_size: signed,
                    sealed_size: entries,
                    operator,
                    reason: reason.to_owned(),
                }),
            ))
            .await
            .context("cannot append the seal")?;
        println!(
            "sealed entries {signed}..{entries}: entry {} (ledger_sealed) is covered by a new signed checkpoint",
            appended.seq
        );
        Ok(ExitCode::SUCCESS)
    })
}
