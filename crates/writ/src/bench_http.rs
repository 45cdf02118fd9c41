//! `writ bench http`: many small senders. This very binary serves on loopback (`writ serve`, a
//! child process, on a throwaway SQLite file or PostgreSQL cluster), and N concurrent clients
//! each post one finding per request for a while; it reports findings/s and p50/p99 latency
//! for each N, beside two baselines measured in the same run: the rate of `writ ingest` of a
//! file of findings into the same database, and the rate of authenticated `GET /v1/whoami`
//! requests from the same N clients (the HTTP and authentication floor, no ledger). Nothing
//! here asserts a speed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use writ_testkit::PgCluster;

use crate::bench::BenchBackend;

/// Options of `writ bench http`.
#[derive(Debug, clap::Args)]
pub struct HttpArgs {
    /// Concurrent clients of each round, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Seconds each round posts for.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Findings in the file ingested for the baseline.
    #[arg(long, default_value_t = 20_000)]
    file_findings: u64,
    /// Which backends to measure.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BenchBackend,
    /// On PostgreSQL, rounds again with this many `writ serve` replicas on the same database
    /// (comma-separated; each client sends to one replica, the clients spread over them).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    replicas: Vec<usize>,
}

/// What a round's clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// `POST /v1/findings` with one new finding.
    Finding,
    /// `GET /v1/whoami` (authentication and HTTP only).
    Whoami,
}

/// One round's figures.
struct Round {
    clients: usize,
    findings: u64,
    failed: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

pub async fn run(args: HttpArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.clients.is_empty() && args.clients.iter().all(|c| *c > 0),
        "--clients: one or more counts above 0"
    );
    println!(
        "writ bench http: one finding per request, {} s per round, clients {:?}; baseline: `writ ingest` of {} findings",
        args.seconds, args.clients, args.file_findings
    );
    if matches!(args.backend, BenchBackend::Sqlite | BenchBackend::All) {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("writ.db").display());
        one_backend("sqlite", dir.path(), &url, &args).await?;
        if std::env::var_os("BENCH_SERVE_LOG").is_some() {
            println!("kept {}", dir.keep().display());
        }
    }
    if matches!(args.backend, BenchBackend::Postgres | BenchBackend::All) {
        let dir = tempfile::tempdir()?;
        let cluster = PgCluster::start().context("cannot start a throwaway PostgreSQL")?;
        let url = cluster.create_database("bench")?;
        one_backend("postgres", dir.path(), &url, &args).await?;
        drop(cluster);
        if std::env::var_os("BENCH_SERVE_LOG").is_some() {
            println!("kept {}", dir.keep().display());
        }
    }
    Ok(())
}

/// A `writ` child process in `dir`.
pub(crate) fn writ(dir: &Path) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("where is this binary?")?;
    let mut command = Command::new(exe);
    command
        .current_dir(dir)
        .env("WRIT_CONFIG", dir.join("writ.toml"))
        // `BENCH_SERVE_LOG` (a `RUST_LOG` filter) shows the server's timings, e.g.
        // `writ_engine=debug`; its log is `serve.log` in the kept directory.
        .env(
            "RUST_LOG",
            std::env::var("BENCH_SERVE_LOG").unwrap_or_else(|_| "warn".to_owned()),
        );
    Ok(command)
}

/// Kills the server when the measurement ends, however it ends.
pub(crate) struct Server {
    child: Child,
    /// Its URL.
    pub base: String,
    /// The token of `bench`: an admin that may also send findings.
    pub token: String,
    /// A client with room for many connections.
    pub http: reqwest::Client,
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Starts one more `writ serve` on `server`'s configuration and database, listening on its
/// own port.
async fn start_replica(dir: &Path, server: &Server, index: usize) -> anyhow::Result<Server> {
    let port = free_port()?;
    let log = std::fs::File::create(dir.join(format!("serve-{index}.log")))?;
    let child = writ(dir)?
        .arg("serve")
        .env("WRIT_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let replica = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        token: server.token.clone(),
        http: server.http.clone(),
    };
    wait_ready(&replica, dir).await?;
    Ok(replica)
}

async fn wait_ready(server: &Server, dir: &Path) -> anyhow::Result<()> {
    let ready = Instant::now();
    loop {
        if server
            .http
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(30),
            "writ serve did not start: see the serve logs in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes `writ.toml` in `dir` for database `url` (with `extra` appended), bootstraps the
/// `bench` principal (admin and source), runs `before_serving` (a baseline on the same
/// database), then starts `writ serve` and waits until it is ready.
pub(crate) async fn start_server(
    dir: &Path,
    url: &str,
    extra: &str,
    before_serving: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    std::fs::write(
        dir.join("writ.toml"),
        format!(
            "[database]\nurl = \"{url}\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\
             rate_limit_per_second = 0\nmax_concurrent_requests = 1024\n\n[console]\nenabled = false\n\n{extra}\n"
        ),
    )?;
    // One principal sends the findings (and may bootstrap: an admin with the source role).
    let output = writ(dir)?
        .args([
            "principal",
            "add",
            "bench",
            "--role",
            "admin",
            "--role",
            "source",
            "--trust",
            "high",
            "--bootstrap",
        ])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "bootstrap: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    before_serving(dir)?;
    let log = std::fs::File::create(dir.join("serve.log"))?;
    let child = writ(dir)?
        .arg("serve")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        token,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?,
    };
    wait_ready(&server, dir).await?;
    Ok(server)
}

async fn one_backend(name: &str, dir: &Path, url: &str, args: &HttpArgs) -> anyhow::Result<()> {
    // The baseline: the same kind of findings from a file, through `writ ingest`, into the
    // same database before it is served.
    let mut file_rate = 0.0;
    let server = start_server(dir, url, "", |dir| {
        let file = dir.join("baseline.ndjson");
        write_findings(&file, args.file_findings)?;
        let started = Instant::now();
        let output = writ(dir)?
            .arg("ingest")
            .arg(&file)
            .stdout(Stdio::null())
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "writ ingest: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        file_rate = args.file_findings as f64 / started.elapsed().as_secs_f64();
        Ok(())
    })
    .await?;
    let (http, token) = (&server.http, &server.token);
    let base = std::slice::from_ref(&server.base);

    println!("\n{name}: `writ ingest` of a file: {file_rate:.0} findings/s");
    println!(
        "{:>8} {:>12} {:>9} {:>9} {:>8} {:>13} {:>12} {:>11}",
        "clients",
        "findings/s",
        "p50 ms",
        "p99 ms",
        "failed",
        "of file rate",
        "whoami/s",
        "whoami p99"
    );
    let mut serial = 0u64;
    for &clients in &args.clients {
        let floor = round(
            http,
            base,
            token,
            (clients, Probe::Whoami),
            args.seconds.div_ceil(2),
            &mut serial,
        )
        .await;
        let round = round(
            http,
            base,
            token,
            (clients, Probe::Finding),
            args.seconds,
            &mut serial,
        )
        .await;
        let rate = round.findings as f64 / round.elapsed.as_secs_f64();
        println!(
            "{:>8} {:>12.0} {:>9.1} {:>9.1} {:>8} {:>12.0}% {:>12.0} {:>8.1} ms",
            round.clients,
            rate,
            round.p50.as_secs_f64() * 1e3,
            round.p99.as_secs_f64() * 1e3,
            round.failed,
            100.0 * rate / file_rate,
            floor.findings as f64 / floor.elapsed.as_secs_f64(),
            floor.p99.as_secs_f64() * 1e3,
        );
    }
    // Replicas share one PostgreSQL database (a SQLite file is one machine's).
    if name == "postgres" && args.replicas.iter().any(|r| *r > 1) {
        println!("\n{name}: replicas on the same database, clients spread over them");
        println!(
            "{:>8} {:>8} {:>12} {:>9} {:>9} {:>8}",
            "replicas", "clients", "findings/s", "p50 ms", "p99 ms", "failed"
        );
        let mut replicas = Vec::new();
        let most = args.clients.iter().copied().max().unwrap_or(16);
        for &count in &args.replicas {
            while replicas.len() + 1 < count {
                replicas.push(start_replica(dir, &server, replicas.len() + 1).await?);
            }
            let bases: Vec<String> = std::iter::once(server.base.clone())
                .chain(
                    replicas
                        .iter()
                        .take(count.saturating_sub(1))
                        .map(|r| r.base.clone()),
                )
                .collect();
            let round = round(
                http,
                &bases,
                token,
                (most, Probe::Finding),
                args.seconds,
                &mut serial,
            )
            .await;
            println!(
                "{:>8} {:>8} {:>12.0} {:>9.1} {:>9.1} {:>8}",
                bases.len(),
                most,
                round.findings as f64 / round.elapsed.as_secs_f64(),
                round.p50.as_secs_f64() * 1e3,
                round.p99.as_secs_f64() * 1e3,
                round.failed
            );
        }
    }
    Ok(())
}

/// How many failed requests a bench describes (on standard error), so that a failure count
/// comes with its reasons without flooding the terminal.
const MAX_FAILURES_SHOWN: u32 = 5;
static FAILURES_SHOWN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Whether a request succeeded, its body read whole (so that the connection is kept for the
/// next request); the first few failures are described on standard error.
pub(crate) async fn succeeded(sent: reqwest::Result<reqwest::Response>) -> bool {
    let outcome = match sent {
        Ok(response) => {
            let status = response.status();
            match response.bytes().await {
                Ok(_) if status.is_success() => Ok(()),
                Ok(body) => Err(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                )),
                Err(err) => Err(format!("{status}, body unread: {err}")),
            }
        }
        Err(err) => Err(err.to_string()),
    };
    match outcome {
        Ok(()) => true,
        Err(why) => {
            if FAILURES_SHOWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                < MAX_FAILURES_SHOWN
            {
                eprintln!("bench: a request failed: {why}");
            }
            false
        }
    }
}

/// `clients` concurrent senders sending `probe` requests (one new finding each, for findings)
/// for `seconds`, client `i` to `bases[i % bases.len()]`; `findings` counts the successful
/// requests.
async fn round(
    http: &reqwest::Client,
    bases: &[String],
    token: &str,
    (clients, probe): (usize, Probe),
    seconds: u64,
    serial: &mut u64,
) -> Round {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let http = http.clone();
        let base = &bases[client % bases.len()];
        let url = match probe {
            Probe::Finding => format!("{base}/v1/findings"),
            Probe::Whoami => format!("{base}/v1/whoami"),
        };
        let token = token.to_owned();
        let first = *serial + (client as u64) * 10_000_000;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0u64;
            let mut n = first;
            while Instant::now() < deadline {
                n += 1;
                let sent = Instant::now();
                let request = match probe {
                    Probe::Finding => http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(finding(n)),
                    Probe::Whoami => http.get(&url),
                };
                let ok = succeeded(request.bearer_auth(&token).send().await).await;
                if ok {
                    latencies.push(sent.elapsed());
                } else {
                    failed += 1;
                }
            }
            (latencies, failed)
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for task in tasks {
        if let Ok((mine, lost)) = task.await {
            latencies.extend(mine);
            failed += lost;
        }
    }
    let elapsed = started.elapsed();
    *serial += (clients as u64) * 10_000_000;
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Round {
        clients,
        findings: latencies.len() as u64,
        failed,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// A native finding about identity `n` (each a new case), as a scanner's webhook sends it.
pub(crate) fn finding(n: u64) -> String {
    let kind = [
        "inactive_service_account",
        "iam_user_accesskey_unused",
        "leaked_secret",
    ];
    serde_json::json!({
        "finding_type": kind[(n % 3) as usize],
        "severity": "medium",
        "confidence": 0.9,
        "subject": {"system": "pg-main", "external_id": format!("svc_{n}")},
        "title": "bench finding",
    })
    .to_string()
}

fn write_findings(path: &PathBuf, n: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n {
        // Numbered apart from the rounds' identities.
        writeln!(out, "{}", finding(1_000_000_000_000 + i))?;
    }
    out.flush()?;
    Ok(())
}
