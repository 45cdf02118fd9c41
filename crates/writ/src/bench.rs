//! `writ bench`: throughput measured beside a baseline taken in the same run.
//!
//! `writ bench ledger` appends events through the real sequencer (group commit, canonical
//! leaves, Merkle tree, one signed checkpoint per batch, projections) from many concurrent
//! callers, then inserts the very same rows with plain `INSERT`s into a bare table of the same
//! shape, in transactions of the same average size, on the same backend. The ratio of the two
//! is the cost of the ledger. It then verifies a large ledger, both from the database and in
//! memory. Figures depend on the machine; nothing here asserts a speed.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::{Connection as _, Executor as _};
use writ_core::event::{ControlTag, EventBody, OwnershipImported};
use writ_core::identity::Criticality;
use writ_core::ids::CaseId;
use writ_core::ownership::OwnershipRule;
use writ_engine::{Draft, Engine, SequencerConfig, audit};
use writ_ledger::{ChainVerifier, Hash, VerifyOptions, generate_key};
use writ_store::{LedgerRow, Store};
use writ_testkit::PgCluster;

use crate::progress;

/// `writ bench ...`
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Ledger appends per second (group commit) beside raw inserts of the same rows, and the
    /// verification rate of a large ledger.
    Ledger(LedgerArgs),
    /// Findings per second from a file to recorded decisions, beside raw inserts of the same
    /// finding rows, with peak memory as the input grows.
    Ingest(crate::bench_ingest::IngestArgs),
    /// Time from a finding to a verified change in moto and PostgreSQL, beside the direct call.
    Writeback(crate::bench_writeback::WriteBackArgs),
    /// Findings per second and latency from many concurrent clients posting one finding per
    /// request to `writ serve` on loopback, beside `writ ingest` of a file in the same run.
    Http(crate::bench_http::HttpArgs),
    /// A steady stream of findings and approvals for N minutes, reporting memory and latency
    /// over time.
    Soak(crate::bench_soak::SoakArgs),
}

/// Options of `writ bench ledger`.
#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    /// Events to append per backend.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Concurrent callers appending.
    #[arg(long, default_value_t = 64)]
    callers: u64,
    /// Which backends to measure.
    #[arg(long, value_enum, default_value = "all")]
    backend: BenchBackend,
    /// An empty PostgreSQL database to use; by default a throwaway cluster is started.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Size of the ledger to verify (built on SQLite); 0 skips the verification benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    verify_entries: u64,
}

/// Backends to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchBackend {
    /// SQLite only.
    Sqlite,
    /// PostgreSQL only.
    Postgres,
    /// Both.
    All,
}

pub fn run(command: BenchCommand) -> anyhow::Result<std::process::ExitCode> {
    match command {
        BenchCommand::Ledger(args) => crate::runtime()?.block_on(ledger(args))?,
        BenchCommand::Ingest(args) => crate::runtime()?.block_on(crate::bench_ingest::run(args))?,
        BenchCommand::Writeback(args) => {
            crate::runtime()?.block_on(crate::bench_writeback::run(args))?
        }
        BenchCommand::Http(args) => crate::runtime()?.block_on(crate::bench_http::run(args))?,
        BenchCommand::Soak(args) => crate::runtime()?.block_on(crate::bench_soak::run(args))?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Keeps a benchmark database alive until the end of its measurement.
#[expect(
    dead_code,
    reason = "held only so that its Drop runs after the measurement"
)]
pub(crate) enum Scratch {
    Dir(tempfile::TempDir),
    Pg(Option<PgCluster>),
}

async fn ledger(args: LedgerArgs) -> anyhow::Result<()> {
    println!(
        "writ bench ledger: {} events per backend, {} concurrent callers, group commit up to {} events/transaction",
        args.events,
        args.callers,
        SequencerConfig::default().max_batch
    );
    if matches!(args.backend, BenchBackend::Sqlite | BenchBackend::All) {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let raw_url = format!("sqlite://{}", dir.path().join("raw.db").display());
        append_vs_raw("sqlite", &url, &raw_url, &args, Scratch::Dir(dir)).await?;
    }
    if matches!(args.backend, BenchBackend::Postgres | BenchBackend::All) {
        let (url, raw_url, cluster) = match &args.postgres_url {
            Some(url) => (url.clone(), url.clone(), None),
            None => {
                let cluster = PgCluster::start().context("cannot start a throwaway PostgreSQL")?;
                let url = cluster.create_database("bench")?;
                let raw = cluster.create_database("raw")?;
                (url, raw, Some(cluster))
            }
        };
        append_vs_raw("postgres", &url, &raw_url, &args, Scratch::Pg(cluster)).await?;
    }
    if args.verify_entries > 0 {
        verify_rate(args.verify_entries).await?;
    }
    Ok(())
}

/// A realistic event: about 300 bytes of canonical JSON, with no projection (so the bench
/// measures the ledger alone).
fn bench_draft(i: u64) -> Draft {
    Draft {
        controls: vec![ControlTag("NHI-01".into()), ControlTag("DE.CM-01".into())],
        ..Draft::new(
            Some(CaseId(uuid::Uuid::from_u64_pair(0x0190_0000_0000_7000, i))),
            "source:prowler",
            format!("bench-{i}"),
            EventBody::OwnershipImported(OwnershipImported {
                file: format!("aws:123456789012/svc-{}/AccessKey1", i % 997),
                rules: vec![OwnershipRule {
                    pattern: "aws:123456789012/svc-*".into(),
                    owner_team: Some("iam_user_accesskey_unused".into()),
                    criticality: Criticality::Medium,
                    privileged: Some(false),
                }],
            }),
        )
    }
}

async fn append_vs_raw(
    backend: &str,
    url: &str,
    raw_url: &str,
    args: &LedgerArgs,
    scratch: Scratch,
) -> anyhow::Result<()> {
    let store = writ_store::open(url).await?;
    anyhow::ensure!(
        store.ledger_size().await? == 0,
        "the benchmark database must be empty"
    );
    let (signer, _) = generate_key("writ.bench/ledger", [9; 32])?;
    let sequencer = Engine::builder(store.clone(), signer)
        .start()
        .await?
        .sequencer;

    let bar = progress::bar(args.events, "appending");
    let started = Instant::now();
    let callers = args.callers.max(1);
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let sequencer = sequencer.clone();
        let bar = bar.clone();
        let events = args.events;
        tasks.push(tokio::spawn(async move {
            let mut i = caller;
            while i < events {
                sequencer.append(bench_draft(i)).await?;
                bar.inc(1);
                i += callers;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let append_time = started.elapsed();
    bar.finish_and_clear();
    let checkpoints = store.checkpoints().await?.len() as u64;
    let batch = (args.events / checkpoints.max(1)).max(1);

    let rows = all_rows(&*store).await?;
    let raw_time = raw_inserts(backend, raw_url, &rows, batch, false).await?;
    let raw_multi_time = raw_inserts(backend, raw_url, &rows, batch, true).await?;
    let appends = per_second(args.events, append_time);
    let raw = per_second(args.events, raw_time);
    let raw_multi = per_second(args.events, raw_multi_time);
    println!(
        "{backend:>8}: ledger appends {appends:>9.0}/s ({checkpoints} batches, avg {batch}/batch) | raw INSERT of the same rows, same transactions: one row per statement {raw:>9.0}/s (ratio {:.2}), multi-row {raw_multi:>9.0}/s (ratio {:.2})",
        appends / raw,
        appends / raw_multi
    );
    drop(scratch);
    Ok(())
}

pub(crate) async fn all_rows(store: &dyn Store) -> anyhow::Result<Vec<LedgerRow>> {
    let mut rows = Vec::new();
    loop {
        let page = store.entries(rows.len() as u64, 10_000).await?;
        if page.is_empty() {
            return Ok(rows);
        }
        rows.extend(page);
    }
}

const RAW_TABLE_SQLITE: &str = "CREATE TABLE raw_entries (seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, case_id BLOB, kind TEXT NOT NULL, actor TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE, leaf BLOB NOT NULL, leaf_hash BLOB NOT NULL)";
const RAW_TABLE_POSTGRES: &str = "CREATE TABLE raw_entries (seq BIGINT PRIMARY KEY, time_us BIGINT NOT NULL, case_id UUID, kind TEXT NOT NULL, actor TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE, leaf BYTEA NOT NULL, leaf_hash BYTEA NOT NULL)";
const RAW_INSERT: &str = "INSERT INTO raw_entries (seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Inserts `rows` into a bare table in transactions of `batch` rows, with one writer and the
/// same durability settings as the store. Returns the time taken.
async fn raw_inserts(
    backend: &str,
    url: &str,
    rows: &[LedgerRow],
    batch: u64,
    multi_row: bool,
) -> anyhow::Result<Duration> {
    macro_rules! timed_inserts {
        ($db:ty, $conn:expr, $begin:expr) => {{
            let conn = &mut $conn;
            let started = Instant::now();
            for chunk in rows.chunks(usize::try_from(batch).unwrap_or(1)) {
                conn.execute($begin).await?;
                if multi_row {
                    let mut builder = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO raw_entries (seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash) ",
                    );
                    builder.push_values(chunk, |mut b, row| {
                        b.push_bind(i64::try_from(row.seq).unwrap_or(i64::MAX))
                            .push_bind(row.time.as_microsecond())
                            .push_bind(row.case_id.map(|id| id.as_uuid()))
                            .push_bind(row.kind.name())
                            .push_bind(row.actor.clone())
                            .push_bind(row.idempotency_key.clone())
                            .push_bind(row.leaf.clone())
                            .push_bind(row.leaf_hash.to_vec());
                    });
                    builder.build().execute(&mut *conn).await?;
                } else {
                    for row in chunk {
                        sqlx::query(RAW_INSERT)
                            .bind(i64::try_from(row.seq)?)
                            .bind(row.time.as_microsecond())
                            .bind(row.case_id.map(|id| id.as_uuid()))
                            .bind(row.kind.name())
                            .bind(row.actor.as_str())
                            .bind(row.idempotency_key.as_str())
                            .bind(row.leaf.as_slice())
                            .bind(row.leaf_hash.as_slice())
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                conn.execute("COMMIT").await?;
            }
            started.elapsed()
        }};
    }
    if backend == "sqlite" {
        let mut conn = raw_sqlite(url).await?;
        conn.execute("DROP TABLE IF EXISTS raw_entries").await?;
        conn.execute(RAW_TABLE_SQLITE).await?;
        Ok(timed_inserts!(sqlx::Sqlite, conn, "BEGIN IMMEDIATE"))
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        conn.execute("DROP TABLE IF EXISTS raw_entries").await?;
        conn.execute(RAW_TABLE_POSTGRES).await?;
        Ok(timed_inserts!(sqlx::Postgres, conn, "BEGIN"))
    }
}

/// A plain SQLite connection with the store's durability settings (WAL, `synchronous=FULL`), for
/// raw-insert baselines.
pub(crate) async fn raw_sqlite(url: &str) -> anyhow::Result<sqlx::SqliteConnection> {
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
    Ok(sqlx::SqliteConnection::connect_with(
        &options
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full),
    )
    .await?)
}

/// Builds a ledger of `entries` on SQLite, then measures verification from the database and
/// in memory.
async fn verify_rate(entries: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("verify.db").display());
    let store = writ_store::open(&url).await?;
    let (signer, verifier) = generate_key("writ.bench/ledger", [3; 32])?;
    let sequencer = Engine::builder(store.clone(), signer)
        .sequencer_config(SequencerConfig {
            max_batch: 8192,
            ..SequencerConfig::default()
        })
        .start()
        .await?
        .sequencer;
    let bar = progress::bar(entries, "building");
    let chunk = 8192u64;
    let mut next = 0u64;
    while next < entries {
        let end = (next + chunk).min(entries);
        for result in sequencer
            .append_all((next..end).map(bench_draft).collect())
            .await
        {
            result?;
        }
        bar.set_position(end);
        next = end;
    }
    bar.finish_and_clear();
    // Verify as an auditor does: the database at rest (its write-ahead log folded in, as SQLite
    // does when writ stops), opened afresh.
    drop(sequencer);
    drop(store);
    tokio::time::sleep(Duration::from_millis(200)).await;
    writ_testkit::exec_sql(&url, "PRAGMA wal_checkpoint(TRUNCATE)").await?;
    let store = writ_store::open(&url).await?;

    let started = Instant::now();
    let verdict = audit::verify_store(store.clone(), &verifier, &mut |_, _| {}).await?;
    let from_db = started.elapsed();
    let report = verdict.map_err(|failure| anyhow::anyhow!("verification failed: {failure:?}"))?;

    // Reading alone: the same pages the verification reads, dropped.
    let started = Instant::now();
    let mut read = 0u64;
    loop {
        let page = store.scan_page(read, 10_000).await?;
        if page.is_empty() {
            break;
        }
        read += page.len() as u64;
    }
    let read_only = started.elapsed();
    let rows = all_rows(&*store).await?;
    let checkpoints: Vec<(u64, String)> = store
        .checkpoints()
        .await?
        .into_iter()
        .map(|row| (row.size, row.note))
        .collect();
    let average_leaf = rows.iter().map(|row| row.leaf.len() as u64).sum::<u64>() / entries.max(1);
    let started = Instant::now();
    let mut chain = ChainVerifier::new(checkpoints, verifier, VerifyOptions::default())
        .map_err(|failure| anyhow::anyhow!("{failure:?}"))?;
    for row in &rows {
        chain
            .push(row.seq, &row.leaf, Hash(row.leaf_hash))
            .map_err(|failure| anyhow::anyhow!("{failure:?}"))?;
    }
    chain
        .finish()
        .map_err(|failure| anyhow::anyhow!("{failure:?}"))?;
    let in_memory = started.elapsed();
    println!(
        "  verify: {} entries (avg leaf {average_leaf} bytes, {} checkpoints): from SQLite {:.0} entries/s ({:.2} s) | reading the rows alone {:.0} entries/s ({:.2} s) | in memory {:.0} entries/s ({:.2} s)",
        report.entries,
        report.checkpoints_verified,
        per_second(entries, from_db),
        from_db.as_secs_f64(),
        per_second(entries, read_only),
        read_only.as_secs_f64(),
        per_second(entries, in_memory),
        in_memory.as_secs_f64(),
    );
    Ok(())
}

pub(crate) fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}
