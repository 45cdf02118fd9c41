//! `writ audit`: verify the ledger (in the database, or an exported bundle offline) and export
//! bundles for auditors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use writ_core::ids::CaseId;
use writ_engine::audit::{self, Selection};
use writ_ledger::{Bundle, VerifyFailure, verify_bundle};

use crate::config::Config;
use crate::{ledger_key, progress};

/// `writ audit ...`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Recompute every leaf, the Merkle tree and every checkpoint signature. Exits 1 and names
    /// the first bad entry when anything was tampered with.
    Verify {
        /// Verify this exported bundle offline instead of the database (needs --key).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// The ledger's public key file (default: the configured signing key's .pub).
        #[arg(long)]
        key: Option<PathBuf>,
        /// A signed checkpoint kept outside the database (`writ audit checkpoint` printed it),
        /// or a publish directory (its newest checkpoint): today's tree must extend it, so a
        /// history rewritten and signed again since fails. With --bundle, the bundle's
        /// consistency proof must start from it.
        #[arg(long)]
        trusted: Option<PathBuf>,
        /// A witness's public key (vkey text or a file): it must have co-signed a checkpoint
        /// covering every entry. Repeat for each witness required.
        #[arg(long = "witness-key", conflicts_with = "bundle")]
        witness_keys: Vec<String>,
    },
    /// Print the latest signed checkpoint, for an auditor to keep outside the database and give
    /// later to `writ audit verify --trusted`.
    Checkpoint {
        /// The ledger's public key file (default: the configured signing key's .pub).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Write an offline bundle (entries, inclusion proofs, signed checkpoint, public key).
    Export {
        /// Export one case's entries.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        case: Option<CaseId>,
        /// Export every entry.
        #[arg(long)]
        all: bool,
        /// Output file (default: standard output).
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
        /// The public key to embed (default: the configured signing key's .pub).
        #[arg(long)]
        key: Option<PathBuf>,
        /// A signed checkpoint an auditor kept (or a publish directory: its newest): the bundle
        /// carries the RFC 6962 consistency proof from it to the bundle's checkpoint.
        #[arg(long)]
        since: Option<PathBuf>,
    },
}

/// A kept checkpoint: the file, or the newest one published in a directory.
fn read_checkpoint(path: &std::path::Path) -> anyhow::Result<String> {
    if path.is_dir() {
        let (_, note) = writ_engine::publish::latest_published(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .with_context(|| format!("{} holds no published checkpoint", path.display()))?;
        return Ok(note);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn run(config: &Config, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Checkpoint { key } => {
            let verifier = ledger_key::verifier(config, key.as_deref())?;
            crate::runtime()?.block_on(async {
                let store = crate::open_store(config).await?;
                let latest = store
                    .latest_checkpoint()
                    .await?
                    .context("the ledger has no signed checkpoint yet")?;
                writ_ledger::open(&latest.note, &verifier).map_err(|err| {
                    anyhow::anyhow!("the latest checkpoint does not verify with the key: {err}")
                })?;
                print!("{}", latest.note);
                Ok(ExitCode::SUCCESS)
            })
        }
        AuditCommand::Verify {
            bundle: Some(bundle),
            key,
            trusted,
            ..
        } => {
            let key =
                key.context("--bundle needs --key PUBKEY: the bundle's own key proves nothing")?;
            let verifier = writ_engine::keys::load_verifier(&key)?;
            let text = std::fs::read_to_string(&bundle)
                .with_context(|| format!("cannot read {}", bundle.display()))?;
            let parsed = Bundle::from_json(&text)
                .with_context(|| format!("{} is not a writ audit bundle", bundle.display()))?;
            let trusted = trusted
                .map(|path| {
                    let note = read_checkpoint(&path)?;
                    writ_ledger::open(&note, &verifier).map_err(|err| {
                        anyhow::anyhow!(
                            "{} is not a checkpoint signed by this key: {err}",
                            path.display()
                        )
                    })
                })
                .transpose()?;
            match verify_bundle(&parsed, &verifier) {
                Ok(report)
                    if trusted.as_ref().is_some_and(|kept| {
                        report.consistent_with != Some((kept.size, kept.root))
                    }) =>
                {
                    eprintln!(
                        "VERIFICATION FAILED: bundle {}: it does not prove that its tree extends the trusted checkpoint (export it with --since)",
                        bundle.display()
                    );
                    Ok(ExitCode::FAILURE)
                }
                Ok(report) => {
                    if let Some((size, _)) = report.consistent_with {
                        println!("consistent with the earlier tree of size {size}");
                    }
                    println!(
                        "bundle verified: origin {}, tree size {}, root {}, {} entries ({})",
                        report.origin,
                        report.tree_size,
                        report.root.to_hex(),
                        report.seqs.len(),
                        summarize_seqs(&report.seqs)
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(failure) => Ok(tampered(&failure, &format!("bundle {}", bundle.display()))),
            }
        }
        AuditCommand::Verify {
            bundle: None,
            key,
            trusted,
            witness_keys,
        } => {
            let verifier = ledger_key::verifier(config, key.as_deref())?;
            let witnesses = witness_keys
                .iter()
                .map(|key| writ_engine::keys::load_witness_verifier(key))
                .collect::<Result<Vec<_>, _>>()?;
            let trusted = match trusted {
                Some(dir) if dir.is_dir() => audit::Trusted {
                    notes: writ_engine::publish::all_published(&dir)
                        .with_context(|| format!("cannot read {}", dir.display()))?,
                    published: true,
                },
                Some(file) => audit::Trusted {
                    notes: vec![read_checkpoint(&file)?],
                    published: false,
                },
                None => audit::Trusted::default(),
            };
            crate::runtime()?.block_on(async {
                let store = crate::open_store(config).await?;
                let total = store.ledger_size().await?;
                let bar = progress::bar(total, "verifying");
                let verdict = audit::verify_store_witnessed(
                    store.clone(),
                    &verifier,
                    &trusted,
                    &witnesses,
                    &mut |done, _| {
                        bar.set_position(done);
                    },
                )
                .await?;
                bar.finish_and_clear();
                match verdict {
                    Ok(report) => {
                        println!(
                            "ledger verified: {} entries, {} checkpoints, root {}{}",
                            report.entries,
                            report.checkpoints_verified,
                            report.root.to_hex(),
                            report
                                .latest_checkpoint
                                .map(|cp| format!(", latest checkpoint at size {}", cp.size))
                                .unwrap_or_default()
                        );
                        if let Some((size, hashes)) = report.consistent_with {
                            println!(
                                "today's tree extends the trusted checkpoint at size {size}: RFC 6962 consistency proof of {hashes} hashes verified"
                            );
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(failure) => Ok(tampered(&failure, "ledger")),
                }
            })
        }
        AuditCommand::Export {
            case,
            all: _,
            out,
            key,
            since,
        } => {
            let verifier = ledger_key::verifier(config, key.as_deref())?;
            let selection = case.map_or(Selection::All, Selection::Case);
            let since = since.map(|path| read_checkpoint(&path)).transpose()?;
            let bundle = crate::runtime()?.block_on(async {
                let store = crate::open_store(config).await?;
                anyhow::Ok(
                    audit::export_since(&*store, selection, &verifier, since.as_deref()).await?,
                )
            })?;
            let json = bundle.to_json()?;
            match out {
                Some(path) => {
                    std::fs::write(&path, json + "\n")
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "wrote {} ({} entries, checkpoint at size {})",
                        path.display(),
                        bundle.entries.len(),
                        bundle.tree_size
                    );
                }
                None => println!("{json}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn tampered(failure: &VerifyFailure, what: &str) -> ExitCode {
    match failure.seq {
        Some(seq) => eprintln!(
            "VERIFICATION FAILED: {what}: first bad entry is seq {seq}: {}",
            failure.reason
        ),
        None => eprintln!("VERIFICATION FAILED: {what}: {}", failure.reason),
    }
    ExitCode::FAILURE
}

/// `0-3, 7, 9-12` for a sorted list of sequence numbers.
fn summarize_seqs(seqs: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = seqs.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn seq_ranges_are_compact() {
        assert_eq!(
            super::summarize_seqs(&[0, 1, 2, 3, 7, 9, 10]),
            "0-3, 7, 9-10"
        );
        assert_eq!(super::summarize_seqs(&[]), "");
    }
}
