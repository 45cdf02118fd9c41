//! `writ report`: evidence by control, read from the ledger, with inclusion proofs an auditor
//! checks offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use writ_engine::audit::{self, Framework};

use crate::config::Config;
use crate::ledger_key;

/// `writ report ...`
#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// Per control of a framework, the ledger entries and cases that evidence it, with each
    /// entry's inclusion proof against the latest signed checkpoint (JSON: the report and an
    /// offline bundle `writ audit verify --bundle` checks; CSV: one row per control and entry).
    Controls {
        /// `nist-csf-2` or `owasp-nhi`.
        #[arg(long, value_enum)]
        framework: FrameworkArg,
        /// Only entries within this span (`90d`, `12h`); all when absent.
        #[arg(long)]
        since: Option<String>,
        /// CSV instead of JSON.
        #[arg(long)]
        csv: bool,
        /// Write here instead of standard output.
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
        /// The public key to embed (default: the configured signing key's .pub).
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

/// A framework, as typed.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FrameworkArg {
    /// NIST Cybersecurity Framework 2.0.
    #[value(name = "nist-csf-2")]
    NistCsf2,
    /// OWASP Non-Human Identities Top 10.
    #[value(name = "owasp-nhi")]
    OwaspNhi,
}

pub fn run(config: &Config, command: ReportCommand) -> anyhow::Result<ExitCode> {
    let ReportCommand::Controls {
        framework,
        since,
        csv,
        out,
        key,
    } = command;
    let framework = match framework {
        FrameworkArg::NistCsf2 => Framework::NistCsf2,
        FrameworkArg::OwaspNhi => Framework::OwaspNhi,
    };
    let since = since
        .map(|span| {
            let seconds = crate::exception_cmd::span_seconds(&span).context("--since")?;
            writ_core::Clock::now(&writ_core::SystemClock)
                .checked_sub(jiff::SignedDuration::from_secs(
                    i64::try_from(seconds).unwrap_or(i64::MAX),
                ))
                .context("--since reaches before the start of time")
        })
        .transpose()?;
    let verifier = ledger_key::verifier(config, key.as_deref())?;
    let (controls, bundle) = crate::runtime()?.block_on(async {
        let store = crate::open_store(config).await?;
        anyhow::Ok(audit::controls_report(&*store, framework, since, &verifier).await?)
    })?;
    let text = if csv {
        let proofs: std::collections::HashMap<u64, String> = bundle
            .entries
            .iter()
            .map(|e| {
                let proof: Vec<String> = e.inclusion_proof.iter().map(|h| h.to_base64()).collect();
                (e.seq, proof.join(" "))
            })
            .collect();
        let mut out = String::from("control,seq,kind,case_id,inclusion_proof,tree_size\n");
        for (control, evidence) in &controls {
            for entry in &evidence.entries {
                out.push_str(&format!(
                    "{control},{},{},{},{},{}\n",
                    entry.seq,
                    entry.kind,
                    entry.case_id.map(|c| c.to_string()).unwrap_or_default(),
                    proofs.get(&entry.seq).map_or("", String::as_str),
                    bundle.tree_size
                ));
            }
        }
        out
    } else {
        let bundle: serde_json::Value = serde_json::from_str(&bundle.to_json()?)?;
        serde_json::to_string_pretty(&serde_json::json!({
            "framework": framework,
            "controls": controls,
            "bundle": bundle,
        }))? + "\n"
    };
    match out {
        Some(path) => {
            std::fs::write(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} ({} controls, checkpoint at size {})",
                path.display(),
                controls.len(),
                bundle.tree_size
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
