//! `writ bench soak`: a steady stream for N minutes, to show that memory and latency stay flat.
//! This very binary serves on loopback (`writ serve`, a child process) over a throwaway
//! database, with a throwaway PostgreSQL target holding one role per approval to come. Findings
//! arrive at a fixed rate (one request each, open loop): one in twenty about an owned role
//! (it waits for the owner team's approval, which an approver gives within a second; the worker
//! disables the role and reads it back), the others about identities writ does not know (a new
//! case for a person each). Every `--every` seconds it prints the window's findings/s,
//! latency (p50, p99, max), approvals and verified changes, the server's resident memory (its
//! heap apart from the database file pages its SQLite readers map, which the kernel may take
//! back) and the ledger's size. Nothing here asserts a figure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tokio::sync::{Mutex, Semaphore};
use writ_testkit::PgCluster;

use crate::bench::BenchBackend;
use crate::bench_http::{Server, start_server};

/// Options of `writ bench soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Findings per second.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Seconds between two report lines.
    #[arg(long, default_value_t = 30)]
    every: u64,
    /// The backend of writ's database (one of them).
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BenchBackend,
}

/// One in this many findings is about an owned role (an approval and a write-back).
const OWNED_EVERY: u64 = 20;

/// What the window since the last report saw.
#[derive(Default)]
struct Window {
    latencies: Vec<Duration>,
    failed: u64,
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.minutes > 0 && args.rate > 0 && args.every > 0,
        "all above 0"
    );
    let roles = args.rate.div_ceil(OWNED_EVERY) * args.minutes * 60 + 100;
    println!(
        "writ bench soak: {} findings/s for {} min ({} about owned roles: approved and written back), a line every {} s",
        args.rate,
        args.minutes,
        args.rate.div_ceil(OWNED_EVERY),
        args.every
    );
    let target = PgCluster::start().context("cannot start a throwaway PostgreSQL target")?;
    let pg = target.url("postgres");
    writ_testkit::exec_sql(
        &pg,
        &format!(
            "DO $$ BEGIN FOR i IN 0..{} LOOP EXECUTE format('CREATE ROLE svc_%s LOGIN', i); END LOOP; END $$;",
            roles - 1
        ),
    )
    .await
    .context("creating the target's roles")?;
    let dir = tempfile::tempdir()?;
    let mut _database = None;
    let url = match args.backend {
        BenchBackend::Postgres => {
            let cluster = PgCluster::start().context("cannot start a throwaway PostgreSQL")?;
            let url = cluster.create_database("writ")?;
            _database = Some(cluster);
            url
        }
        _ => format!("sqlite://{}", dir.path().join("writ.db").display()),
    };
    let server = start_server(
        dir.path(),
        &url,
        &format!(
            // The blast-radius guard (50 changes per hour by default) would hold the stream's
            // write-backs after the first fifty: this measures the system, not the guard.
            "[writeback]\ninterval_ms = 200\nmax_changes_per_window = 1000000\n\n[[targets]]\nname = \"pg\"\nkind = \"postgres\"\nsystem = \"pg-main\"\nurl = \"{pg}\"\n"
        ),
        |_| Ok(()),
    )
    .await?;
    let approver = prepare(&server).await?;
    println!(
        "{:>7} {:>11} {:>8} {:>8} {:>8} {:>7} {:>10} {:>9} {:>9} {:>11} {:>9}",
        "minute",
        "findings/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "failed",
        "approvals",
        "verified",
        "heap MiB",
        "mapped MiB",
        "ledger"
    );

    let window = Arc::new(Mutex::new(Window::default()));
    let approvals = Arc::new(AtomicU64::new(0));
    let server = Arc::new(server);
    let deadline = Instant::now() + Duration::from_secs(args.minutes * 60);
    // The approver: every second, every case waiting for the owner team.
    let approving = {
        let (server, approvals) = (server.clone(), approvals.clone());
        tokio::spawn(async move {
            while Instant::now() < deadline {
                approve_waiting(&server, &approver, &approvals).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // The senders: one request per finding, at the rate, whatever the answers take (at most
    // 256 in flight).
    let in_flight = Arc::new(Semaphore::new(256));
    let sending = {
        let (server, window) = (server.clone(), window.clone());
        let rate = args.rate;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                n += 1;
                let Ok(slot) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let (server, window) = (server.clone(), window.clone());
                tokio::spawn(async move {
                    let body = if n.is_multiple_of(OWNED_EVERY) {
                        owned_finding(n / OWNED_EVERY)
                    } else {
                        crate::bench_http::finding(2_000_000_000_000 + n)
                    };
                    let sent = Instant::now();
                    let ok = crate::bench_http::succeeded(
                        server
                            .http
                            .post(format!("{}/v1/findings", server.base))
                            .bearer_auth(&server.token)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await,
                    )
                    .await;
                    let took = sent.elapsed();
                    let mut window = window.lock().await;
                    if ok {
                        window.latencies.push(took);
                    } else {
                        window.failed += 1;
                    }
                    drop(slot);
                });
            }
        })
    };
    // The reports.
    let started = Instant::now();
    let mut approvals_before = 0;
    let mut verified_before = verified(&server).await.unwrap_or(0);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(args.every)).await;
        let mut taken = std::mem::take(&mut *window.lock().await);
        taken.latencies.sort_unstable();
        let at = |q: f64| {
            taken
                .latencies
                .get(
                    ((taken.latencies.len() as f64 * q) as usize)
                        .min(taken.latencies.len().saturating_sub(1)),
                )
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3
        };
        let approvals_now = approvals.load(Ordering::SeqCst);
        let verified_now = verified(&server).await.unwrap_or(verified_before);
        let ledger = ledger_size(&server).await.unwrap_or(0);
        let (heap, mapped) = memory_mib(server.pid()).unwrap_or_default();
        println!(
            "{:>7.1} {:>11.0} {:>8.1} {:>8.1} {:>8.1} {:>7} {:>10} {:>9} {:>9.0} {:>11.0} {:>9}",
            started.elapsed().as_secs_f64() / 60.0,
            taken.latencies.len() as f64 / args.every as f64,
            at(0.5),
            at(0.99),
            at(1.0),
            taken.failed,
            approvals_now - approvals_before,
            verified_now.saturating_sub(verified_before),
            heap,
            mapped,
            ledger
        );
        approvals_before = approvals_now;
        verified_before = verified_now;
    }
    let _ = sending.await;
    let _ = approving.await;
    drop(target);
    Ok(())
}

/// A finding about owned role `n` (each role once).
fn owned_finding(n: u64) -> String {
    json!({
        "finding_type": "inactive_service_account",
        "severity": "medium",
        "confidence": 0.95,
        "subject": {"system": "pg-main", "external_id": format!("svc_{n}")},
        "title": "no login for 200 days",
    })
    .to_string()
}

/// The owner team's approver, the ownership rule and the first sync; returns the approver's
/// token.
async fn prepare(server: &Server) -> anyhow::Result<String> {
    let post = |path: &str, body: serde_json::Value| {
        server
            .http
            .post(format!("{}{path}", server.base))
            .bearer_auth(&server.token)
            .json(&body)
            .send()
    };
    let made: serde_json::Value = post(
        "/v1/principals",
        json!({"name": "owner", "kind": "person", "teams": ["data"], "roles": ["approver"]}),
    )
    .await?
    .error_for_status()?
    .json()
    .await?;
    let token = made["token"]
        .as_str()
        .context("no token for the approver")?
        .to_owned();
    post(
        "/v1/inventory/rules?name=owners.json",
        json!([{"pattern": "pg-main/svc_*", "owner_team": "data", "criticality": "medium"}]),
    )
    .await?
    .error_for_status()?;
    post("/v1/targets/pg/sync", json!({}))
        .await?
        .error_for_status()?;
    Ok(token)
}

/// Approves every case waiting for the owner team (up to 200 a pass).
async fn approve_waiting(server: &Server, token: &str, approvals: &AtomicU64) {
    let Ok(response) = server
        .http
        .get(format!(
            "{}/v1/cases?state=awaiting_approval&limit=200",
            server.base
        ))
        .bearer_auth(token)
        .send()
        .await
    else {
        return;
    };
    let Ok(cases) = response.json::<Vec<serde_json::Value>>().await else {
        return;
    };
    for case in cases {
        let Some(id) = case["id"].as_str() else {
            continue;
        };
        let voted = server
            .http
            .post(format!("{}/v1/cases/{id}/approvals", server.base))
            .bearer_auth(token)
            .json(&json!({"verdict": "approve", "rationale": "unused; the team agreed"}))
            .send()
            .await;
        if voted.is_ok_and(|r| r.status().is_success()) {
            approvals.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Write-back jobs verified so far, from the server's own metrics.
async fn verified(server: &Server) -> Option<u64> {
    let text = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("writ_writeback_jobs{") && l.contains("state=\"verified\""))?;
    line.rsplit(' ').next()?.parse().ok()
}

async fn ledger_size(server: &Server) -> Option<u64> {
    let status: serde_json::Value = server
        .http
        .get(format!("{}/v1/status", server.base))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    status["ledger_size"].as_u64()
}

/// The resident memory of process `pid`, from `/proc` (Linux): anonymous (the heap, stacks,
/// SQLite's own page caches) and file-backed (mapped files: the database pages the readers
/// map, the binary).
fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    };
    Some((field("RssAnon:")?, field("RssFile:")?))
}
