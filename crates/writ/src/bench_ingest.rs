//! `writ bench ingest`: findings from a file to recorded decisions, per second, beside raw
//! inserts of the same finding rows in the same run, with peak memory as the input grows.
//!
//! The input is a native NDJSON file written to a temp dir (so reading is real file I/O), about
//! `--subjects` identities in a reconciled inventory with owners, three finding types, and the
//! built-in demo policy. Every finding goes the whole way: parse, authenticate-free local
//! source, idempotency check, identity resolution, deduplication, Cedar decision for new cases,
//! and the ledger events with their projections, committed.

use std::io::{BufReader, BufWriter, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use sqlx::{Connection as _, Executor as _};
use writ_core::event::{EventBody, IdentitySynced};
use writ_core::finding::{SourceFormat, Trust};
use writ_core::identity::{Criticality, Identity, IdentityKind};
use writ_core::ids::IdentityId;
use writ_engine::ingest::{IngestSettings, Submission};
use writ_engine::sources::Source;
use writ_engine::{Draft, Engine, Sequencer};
use writ_formats::{FindingReader, ParseOptions};
use writ_ledger::generate_key;
use writ_testkit::PgCluster;

use crate::bench::{BenchBackend, Scratch, per_second};
use crate::progress;

/// Options of `writ bench ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Findings per backend.
    #[arg(long, default_value_t = 100_000)]
    findings: u64,
    /// Distinct identities the findings are about.
    #[arg(long, default_value_t = 10_000)]
    subjects: u64,
    /// Findings read, decided and committed together. Larger batches are faster (fewer
    /// commits and lookups) and hold more in memory: about 450 MiB at the default, flat
    /// whatever the file's size; 1000 needs about 200 MiB.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Which backends to measure.
    #[arg(long, value_enum, default_value = "all")]
    backend: BenchBackend,
}

const TYPES: [&str; 3] = [
    "iam_user_accesskey_unused",
    "leaked_secret",
    "token_compromise",
];

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    println!(
        "writ bench ingest: {} findings per backend about {} identities, batches of {}, demo policy",
        args.findings, args.subjects, args.batch
    );
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("findings.ndjson");
    write_input(&input, args.findings, args.subjects)?;
    if matches!(args.backend, BenchBackend::Sqlite | BenchBackend::All) {
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let raw = format!("sqlite://{}", dir.path().join("raw.db").display());
        one_backend(
            "sqlite",
            &url,
            &raw,
            &input,
            &args,
            Scratch::Dir(tempfile::tempdir()?),
        )
        .await?;
    }
    if matches!(args.backend, BenchBackend::Postgres | BenchBackend::All) {
        let cluster = PgCluster::start().context("cannot start a throwaway PostgreSQL")?;
        let url = cluster.create_database("bench")?;
        let raw = cluster.create_database("raw")?;
        one_backend(
            "postgres",
            &url,
            &raw,
            &input,
            &args,
            Scratch::Pg(Some(cluster)),
        )
        .await?;
    }
    Ok(())
}

fn subject(i: u64) -> String {
    format!("svc-{i:06}/AccessKey1")
}

/// Writes `n` native findings, one per line, without holding them in memory.
fn write_input(path: &std::path::Path, n: u64, subjects: u64) -> anyhow::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n {
        let s = (i.wrapping_mul(2_654_435_761)) % subjects.max(1);
        let finding = json!({
            "finding_type": TYPES[usize::try_from(i % 3).unwrap_or(0)],
            "severity": "medium",
            "confidence": 0.95,
            "subject": {"system": "aws:123456789012", "external_id": subject(s)},
            "title": format!("bench finding {i}"),
            "idempotency_key": format!("bench-{i}"),
        });
        serde_json::to_writer(&mut out, &finding)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

async fn one_backend(
    backend: &str,
    url: &str,
    raw_url: &str,
    input: &std::path::Path,
    args: &IngestArgs,
    scratch: Scratch,
) -> anyhow::Result<()> {
    let store = writ_store::open(url).await?;
    let (signer, _) = generate_key("writ.bench/ledger", [4; 32])?;
    let engine = Engine::builder(store.clone(), signer)
        .policy(Arc::new(crate::policy_source::demo()?))
        .ingest_settings(IngestSettings {
            max_reconcile_age: SignedDuration::from_hours(24),
        })
        .start()
        .await?;
    seed(&engine.sequencer, args.subjects).await?;
    let ingestor = engine.ingestor()?.clone();
    let source = Arc::new(Source {
        name: "bench".into(),
        trust: Trust::High,
    });

    let entries_before = store.ledger_size().await?;
    let bar = progress::bar(args.findings, "ingesting");
    let file = std::fs::File::open(input)?;
    let mut reader = FindingReader::new(
        BufReader::with_capacity(256 * 1024, file),
        SourceFormat::Native,
        ParseOptions::default(),
    );
    let mut peak_at_quarter = None;
    let started = Instant::now();
    let mut done = 0u64;
    let mut batch = Vec::with_capacity(args.batch);
    let mut running: std::collections::VecDeque<
        tokio::task::JoinHandle<
            Vec<Result<writ_engine::ingest::IngestOutcome, writ_engine::ingest::IngestError>>,
        >,
    > = std::collections::VecDeque::new();
    let items = reader.by_ref();
    loop {
        let item = items.next();
        let end = item.is_none();
        if let Some(item) = item {
            let finding =
                item.map_err(|err| anyhow::anyhow!("bench input line {}: {err}", err.line))?;
            batch.push(Submission {
                observation: finding.observation,
                evidence: finding.evidence,
                redacted_from: finding.redacted_from,
                idempotency_key: None,
            });
        }
        if batch.len() >= args.batch.max(1) || (end && !batch.is_empty()) {
            if running.len() >= writ_engine::ingest::PIPELINE_DEPTH
                && let Some(previous) = running.pop_front()
            {
                for result in previous.await? {
                    result?;
                    done += 1;
                }
                bar.set_position(done);
                if peak_at_quarter.is_none() && done >= args.findings / 4 {
                    peak_at_quarter = peak_rss_kib();
                }
            }
            let ingestor = ingestor.clone();
            let source = source.clone();
            let work = std::mem::take(&mut batch);
            running.push_back(tokio::spawn(async move {
                ingestor.ingest_batch(&source, work).await
            }));
        }
        if end {
            break;
        }
    }
    while let Some(previous) = running.pop_front() {
        for result in previous.await? {
            result?;
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let peak_at_end = peak_rss_kib();
    let events = store.ledger_size().await? - entries_before;
    let dump = store.projection_dump().await?;

    let raw_time = raw_finding_inserts(backend, raw_url, &dump.findings, 64).await?;
    let rate = per_second(args.findings, elapsed);
    let raw_rate = per_second(dump.findings.len() as u64, raw_time);
    println!(
        "{backend:>8}: ingest {rate:>8.0} findings/s ({} cases, {events} ledger events, {:.1} s) | raw INSERT of the same finding rows {raw_rate:>8.0}/s | ratio {:.2}",
        dump.cases.len(),
        elapsed.as_secs_f64(),
        rate / raw_rate
    );
    if let (Some(quarter), Some(end)) = (peak_at_quarter, peak_at_end) {
        println!(
            "          peak memory: {:.0} MiB after 25% of the input, {:.0} MiB after 100%",
            quarter as f64 / 1024.0,
            end as f64 / 1024.0
        );
    }
    // `writ policy simulate` over the decisions just recorded, the demo bundle as candidate.
    let candidate = crate::policy_source::demo()?;
    let started = Instant::now();
    let simulated =
        writ_engine::simulate::simulate(&*store, Arc::new(candidate), None, &mut |_, _| {}).await?;
    let elapsed = started.elapsed();
    println!(
        "          policy simulate: {:>8.0} decisions/s ({} decisions re-decided, {} changed, {:.1} s) | ingest above {rate:>8.0} findings/s",
        per_second(simulated.decisions, elapsed),
        simulated.decisions,
        simulated.changed,
        elapsed.as_secs_f64()
    );
    drop(scratch);
    Ok(())
}

/// Records `n` reconciled, owned identities.
// Benchmark data: any recent time will do, and nothing here is replayed.
#[allow(clippy::disallowed_methods)]
async fn seed(sequencer: &Sequencer, n: u64) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let mut drafts = Vec::new();
    for i in 0..n {
        let identity = Identity {
            id: IdentityId(uuid::Uuid::from_u64_pair(0x0190_0000_0000_7000, i)),
            system: "aws:123456789012".into(),
            external_id: subject(i),
            kind: IdentityKind::ApiKey,
            owner_team: Some(format!("team-{}", i % 20)),
            criticality: Criticality::Medium,
            privileged: false,
            tags: vec![],
            last_used_at: None,
            reconciled_at: Some(now - SignedDuration::from_mins(1)),
        };
        drafts.push(Draft::new(
            None,
            "sync:bench",
            format!("seed-{i}"),
            EventBody::IdentitySynced(IdentitySynced {
                identity,
                object_kind: None,
                reason: None,
            }),
        ));
        if drafts.len() == 4096 || i + 1 == n {
            for result in sequencer.append_all(std::mem::take(&mut drafts)).await {
                result?;
            }
        }
    }
    Ok(())
}

const RAW_SQLITE: &str = "CREATE TABLE raw_findings (id BLOB PRIMARY KEY, case_id BLOB, source TEXT NOT NULL, finding_type TEXT NOT NULL, severity TEXT NOT NULL, confidence_bp INTEGER NOT NULL, subject_system TEXT NOT NULL, subject_external_id TEXT NOT NULL, observed_us INTEGER NOT NULL, evidence TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE, seq INTEGER NOT NULL)";
const RAW_POSTGRES: &str = "CREATE TABLE raw_findings (id UUID PRIMARY KEY, case_id UUID, source TEXT NOT NULL, finding_type TEXT NOT NULL, severity TEXT NOT NULL, confidence_bp INTEGER NOT NULL, subject_system TEXT NOT NULL, subject_external_id TEXT NOT NULL, observed_us BIGINT NOT NULL, evidence TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE, seq BIGINT NOT NULL)";
const RAW_INSERT: &str = "INSERT INTO raw_findings (id, case_id, source, finding_type, severity, confidence_bp, subject_system, subject_external_id, observed_us, evidence, idempotency_key, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

type FindingRow = (
    writ_core::finding::Finding,
    Option<writ_core::ids::CaseId>,
    u64,
);

async fn raw_finding_inserts(
    backend: &str,
    url: &str,
    rows: &[FindingRow],
    batch: usize,
) -> anyhow::Result<Duration> {
    macro_rules! timed {
        ($conn:expr, $begin:expr) => {{
            let conn = &mut $conn;
            let started = Instant::now();
            for chunk in rows.chunks(batch) {
                conn.execute($begin).await?;
                for (finding, case_id, seq) in chunk {
                    sqlx::query(RAW_INSERT)
                        .bind(finding.id.as_uuid())
                        .bind(case_id.map(|id| id.as_uuid()))
                        .bind(finding.source.as_str())
                        .bind(finding.finding_type.as_str())
                        .bind("medium")
                        .bind(i32::from(finding.confidence_bp))
                        .bind(finding.subject_system.as_str())
                        .bind(finding.subject_external_id.as_str())
                        .bind(finding.observed_at.as_microsecond())
                        .bind(finding.evidence.to_string())
                        .bind(finding.idempotency_key.as_str())
                        .bind(i64::try_from(*seq)?)
                        .execute(&mut *conn)
                        .await?;
                }
                conn.execute("COMMIT").await?;
            }
            started.elapsed()
        }};
    }
    if backend == "sqlite" {
        let mut conn = crate::bench::raw_sqlite(url).await?;
        conn.execute(RAW_SQLITE).await?;
        Ok(timed!(conn, "BEGIN IMMEDIATE"))
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        conn.execute(RAW_POSTGRES).await?;
        Ok(timed!(conn, "BEGIN"))
    }
}

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
