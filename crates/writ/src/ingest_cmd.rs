//! `writ ingest FILE...`: stream findings files into writ, with a progress bar, in constant
//! memory.
//!
//! By default it runs in-process against the configured database (the operator's bulk path,
//! with the operator's own access), as the source named by `--source` (which must be
//! configured in `[[sources]]`, or the built-in low-trust `cli` source). With `--server URL`
//! it posts each file to `POST /v1/findings` with the source principal's token instead.
//! Every bad finding is reported as `FILE:LINE: field: message` and skipped; the good ones
//! are recorded. Exit status 1 when any finding was refused.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use writ_core::finding::{SourceFormat, Trust};
use writ_engine::ingest::{IngestOutcome, Ingestor, Submission};
use writ_engine::sources::Source;
use writ_formats::{FindingReader, ParseOptions, detect_format};

use crate::config::Config;
use crate::progress;

/// Options of `writ ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Findings files (native JSON/NDJSON, OCSF, Prowler OCSF, detect-secrets, gitleaks).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The format of every file (default: detected per file).
    #[arg(long)]
    format: Option<String>,
    /// The source to record the findings as (a configured `[[sources]]` name).
    #[arg(long, default_value = "cli")]
    source: String,
    /// For secrets scanners: the repository or system that was scanned.
    #[arg(long)]
    system: Option<String>,
    /// Findings read, decided and committed together. Larger batches are faster (fewer
    /// commits and lookups) and hold more in memory: about 450 MiB at the default, flat
    /// whatever the file's size; 1000 needs about 200 MiB.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Post each file to this writ server (`POST /v1/findings`) with the source principal's
    /// token from WRIT_TOKEN, instead of ingesting locally. Each file is one request, so it
    /// must fit the server's `max_body_bytes`.
    #[arg(long)]
    server: Option<String>,
    /// A PEM certificate to trust for an `https://` server.
    #[arg(long, env = "WRIT_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

/// Counts for the summary line.
#[derive(Debug, Default)]
struct Tally {
    new_cases: u64,
    joined: u64,
    duplicates: u64,
    refused: u64,
    skipped: u64,
    closed: u64,
    redecided: u64,
}

impl Tally {
    /// The summary line both paths print.
    fn summary(&self) -> String {
        format!(
            "ingested {} finding(s): {} new case(s), {} joined an open case ({} decided again, {} closed by a passing check), {} duplicate(s); {} refused; {} skipped (passes with nothing open to close, or not problems)",
            self.new_cases + self.joined + self.duplicates,
            self.new_cases,
            self.joined,
            self.redecided,
            self.closed,
            self.duplicates,
            self.refused,
            self.skipped
        )
    }

    fn add(&mut self, outcome: &IngestOutcome) {
        self.closed += u64::from(outcome.closed_case && !outcome.duplicate);
        self.redecided += u64::from(outcome.redecided && !outcome.duplicate);
        if outcome.duplicate {
            self.duplicates += 1;
        } else if outcome.joined_open_case {
            self.joined += 1;
        } else {
            self.new_cases += 1;
        }
    }
}

pub fn run(config: &Config, args: IngestArgs) -> anyhow::Result<ExitCode> {
    if let Some(server) = &args.server {
        return post_files(server, &args);
    }
    let source = resolve_source(config, &args.source)?;
    let forced = args
        .format
        .as_deref()
        .map(|name| {
            writ_server::parse_format(name).with_context(|| {
                format!("--format {name:?} is not one of native, ocsf, prowler, detect_secrets, gitleaks")
            })
        })
        .transpose()?;
    crate::runtime()?.block_on(async {
        let engine = crate::serve::build(config, false).await?;
        // Decisions made here stay replayable: the bundle is kept by hash (once).
        writ_engine::replay::keep_bundle(
            &engine.sequencer,
            engine.ingestor()?.policy(),
            "operator:import",
        )
        .await
        .context("keeping the policy bundle in the ledger")?;
        let ingestor = engine.ingestor()?.clone().as_operator_import();
        let mut tally = Tally::default();
        for file in &args.files {
            ingest_file(&ingestor, &source, file, forced, &args, &mut tally).await?;
        }
        println!("{}", tally.summary());
        Ok(if tally.refused > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// `writ ingest --server URL FILE...`: each file posted as one request, as the source
/// principal of WRIT_TOKEN. Refused findings are printed as `FILE:LINE: field: message`.
fn post_files(server: &str, args: &IngestArgs) -> anyhow::Result<ExitCode> {
    let client = crate::client::Client::from_env(&crate::client::ServerArgs {
        server: server.to_owned(),
        ca_cert: args.ca_cert.clone(),
    })?;
    let mut query = Vec::new();
    if let Some(format) = &args.format {
        query.push(format!(
            "format={}",
            crate::inventory_cmd::path_segment(format)
        ));
    }
    if let Some(system) = &args.system {
        query.push(format!(
            "system={}",
            crate::inventory_cmd::path_segment(system)
        ));
    }
    let path = if query.is_empty() {
        "/v1/findings".to_owned()
    } else {
        format!("/v1/findings?{}", query.join("&"))
    };
    crate::runtime()?.block_on(async {
        let mut tally = Tally::default();
        for file in &args.files {
            let shown = file.display();
            let body =
                std::fs::read(file).with_context(|| format!("cannot read {shown}"))?;
            let (status, answer) = client
                .post_bytes_answer(&path, "application/json", body)
                .await?;
            let count = |key: &str| answer[key].as_array().map_or(0, Vec::len) as u64;
            match status.as_u16() {
                200 => {
                    for accepted in answer["accepted"].as_array().map_or(&[][..], Vec::as_slice) {
                        let flag = |key: &str| accepted["outcome"][key].as_bool() == Some(true);
                        tally.closed += u64::from(flag("closed_case"));
                        tally.redecided += u64::from(flag("redecided"));
                        if flag("joined_open_case") {
                            tally.joined += 1;
                        } else {
                            tally.new_cases += 1;
                        }
                    }
                    tally.duplicates += count("duplicates");
                    tally.skipped += answer["skipped"].as_u64().unwrap_or(0);
                    for refused in answer["refused"].as_array().map_or(&[][..], Vec::as_slice) {
                        tally.refused += 1;
                        eprintln!(
                            "{shown}:{}: {}{}",
                            refused["line"],
                            refused["field"]
                                .as_str()
                                .map(|f| format!("{f}: "))
                                .unwrap_or_default(),
                            refused["message"].as_str().unwrap_or("refused")
                        );
                    }
                }
                409 => {
                    println!("{shown}: every finding was already ingested");
                }
                _ => {
                    let mut text = format!(
                        "{shown}: {} ({status})",
                        answer["detail"]
                            .as_str()
                            .or(answer["title"].as_str())
                            .unwrap_or("refused")
                    );
                    for error in answer["errors"].as_array().map_or(&[][..], Vec::as_slice) {
                        text.push_str(&format!(
                            "\n  {}: {}",
                            error["field"].as_str().unwrap_or("?"),
                            error["message"].as_str().unwrap_or("?")
                        ));
                    }
                    anyhow::bail!(text);
                }
            }
        }
        println!(
            "posted {} finding(s) as {}: {} accepted ({} joined an open case, {} decided again, {} closed by a passing check), {} duplicate(s); {} refused; {} skipped (passes with nothing open to close, or not problems)",
            tally.new_cases + tally.joined + tally.duplicates,
            server,
            tally.new_cases + tally.joined,
            tally.joined,
            tally.redecided,
            tally.closed,
            tally.duplicates,
            tally.refused,
            tally.skipped
        );
        Ok(if tally.refused > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

fn resolve_source(config: &Config, name: &str) -> anyhow::Result<Source> {
    if let Some(configured) = config.sources.iter().find(|s| s.name == name) {
        return Ok(Source {
            name: configured.name.clone(),
            trust: configured.trust,
        });
    }
    anyhow::ensure!(
        name == "cli",
        "source {name:?} is not configured in [[sources]]"
    );
    Ok(Source {
        name: "cli".into(),
        trust: Trust::Low,
    })
}

/// Counts bytes as they are read, for the progress bar.
struct Counting<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

async fn ingest_file(
    ingestor: &Ingestor,
    source: &Source,
    path: &Path,
    forced: Option<SourceFormat>,
    args: &IngestArgs,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let display = path.display().to_string();
    let file = File::open(path).with_context(|| format!("cannot open {display}"))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let format = match forced {
        Some(format) => format,
        None => {
            let mut head = vec![0u8; 64 * 1024];
            let mut sniff = File::open(path).with_context(|| format!("cannot open {display}"))?;
            let n = sniff.read(&mut head)?;
            detect_format(&head[..n]).with_context(|| {
                format!("{display}: unknown finding format (give --format native|ocsf|prowler|detect_secrets|gitleaks)")
            })?
        }
    };
    let bar = progress::bytes_bar(size, "ingesting");
    let mut options = ParseOptions::default();
    if let Some(system) = &args.system {
        options.secrets_system = system.clone();
    }
    let mut reader = FindingReader::new(
        BufReader::with_capacity(
            256 * 1024,
            Counting {
                inner: file,
                bar: bar.clone(),
            },
        ),
        format,
        options,
    );
    let source = Arc::new(source.clone());
    let batch_size = args.batch.max(1);
    let mut batch: Vec<(u64, Submission)> = Vec::with_capacity(batch_size);
    // Two batches in the ingest pipeline (one planned while the other commits) while the
    // next is parsed.
    let mut running: std::collections::VecDeque<tokio::task::JoinHandle<Vec<(u64, IngestResult)>>> =
        std::collections::VecDeque::new();
    let mut failure: Option<anyhow::Error> = None;
    let mut items = reader.by_ref().peekable();
    while failure.is_none() {
        let item = items.next();
        let end = item.is_none();
        match item {
            Some(Ok(finding)) => batch.push((
                finding.line,
                Submission {
                    observation: finding.observation,
                    evidence: finding.evidence,
                    redacted_from: finding.redacted_from,
                    idempotency_key: None,
                },
            )),
            Some(Err(err)) => {
                tally.refused += 1;
                bar.suspend(|| {
                    eprintln!(
                        "{display}:{}: {}{}",
                        err.line,
                        err.field
                            .as_deref()
                            .map(|f| format!("{f}: "))
                            .unwrap_or_default(),
                        err.message
                    );
                });
                if err.is_fatal() {
                    break;
                }
            }
            None => {}
        }
        if batch.len() >= batch_size || (end && !batch.is_empty()) {
            if running.len() >= writ_engine::ingest::PIPELINE_DEPTH
                && let Some(previous) = running.pop_front()
            {
                settle(previous.await, &display, tally, &mut failure);
            }
            let ingestor = ingestor.clone();
            let source = source.clone();
            let work = std::mem::take(&mut batch);
            running.push_back(tokio::spawn(async move {
                let (lines, submissions): (Vec<u64>, Vec<Submission>) = work.into_iter().unzip();
                let results = ingestor.ingest_batch(&source, submissions).await;
                lines.into_iter().zip(results).collect()
            }));
        }
        if end {
            break;
        }
    }
    while let Some(previous) = running.pop_front() {
        settle(previous.await, &display, tally, &mut failure);
    }
    tally.skipped += reader.report().skipped;
    bar.finish_and_clear();
    match failure {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

type IngestResult = Result<IngestOutcome, writ_engine::ingest::IngestError>;

fn settle(
    done: Result<Vec<(u64, IngestResult)>, tokio::task::JoinError>,
    display: &str,
    tally: &mut Tally,
    failure: &mut Option<anyhow::Error>,
) {
    let results = match done {
        Ok(results) => results,
        Err(join) => {
            failure.get_or_insert_with(|| anyhow::anyhow!("ingest task failed: {join}"));
            return;
        }
    };
    for (line, result) in results {
        match result {
            Ok(outcome) => tally.add(&outcome),
            Err(writ_engine::ingest::IngestError::NothingToClose) => tally.skipped += 1,
            Err(writ_engine::ingest::IngestError::Append(
                writ_engine::AppendError::SecretInEvent { pointer },
            )) => {
                tally.refused += 1;
                eprintln!("{display}:{line}: {pointer}: holds secret material; not recorded");
            }
            Err(err) => {
                failure.get_or_insert_with(|| {
                    anyhow::anyhow!(
                        "{display}:{line}: could not be recorded ({err}); rerun to resume (findings already recorded are skipped as duplicates)"
                    )
                });
            }
        }
    }
}
