//! The crash test: `writ serve` is killed with SIGKILL at random points, 200 times, while
//! findings stream in over HTTP and its worker writes changes back to moto; after each kill it
//! is started again. At the end: every finding the server accepted is in the ledger, every
//! change the policy allowed was applied to moto exactly once (counted from moto's own record
//! of the requests it received) and verified, and `writ audit verify` and `writ admin rebuild
//! --check` pass. On SQLite and PostgreSQL.
//!
//! `WRIT_CRASH_KILLS` sets the number of kills (default 200); `WRIT_CRASH_SEED` replays a run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Tests may read the wall clock and the OS random source (they drive real processes).
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Site, text};
use serde_json::{Value, json};
use writ_connector_aws::Service;
use writ_core::case::CaseState;
use writ_core::job::JobState;
use writ_testkit::{MotoServer, TestDb};

const TOKEN: &str = "writ_crash_test_token_0123456789abcdef";
const ACCOUNT: &str = "aws:123456789012";

/// A small deterministic generator (SplitMix64), so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The demo schema and remediations, and one policy: disabling an unused key is automatic.
fn write_policy(dir: &Path) {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo");
    std::fs::create_dir_all(dir).unwrap();
    for file in ["writ.cedarschema", "remediations.toml", "guardrails.cedar"] {
        std::fs::copy(demo.join(file), dir.join(file)).unwrap();
    }
    std::fs::write(
        dir.join("auto.cedar"),
        "@id(\"crash-test-auto-disable\")\n\
         permit (principal == Writ::Engine::\"automation\", action == Writ::Action::\"auto:disable\", resource)\n\
         when { resource.has_owner };\n",
    )
    .unwrap();
}

fn finding(user: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "finding_type": "iam_user_accesskey_unused",
        "severity": "high",
        "confidence": 0.99,
        "subject": {"system": ACCOUNT, "external_id": format!("{user}/AccessKey1"), "kind": "api_key"},
        "title": format!("access key 1 of {user} unused for 200 days"),
        "idempotency_key": format!("crash-test:{user}"),
    }))
    .unwrap()
}

/// Posts one finding; true when the server answered that it accepted (or already had) it.
async fn post(client: &reqwest::Client, base: &str, body: Vec<u8>) -> bool {
    let response = client
        .post(format!("{base}/v1/findings?format=native"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert!(
                status.is_success() || status.is_server_error(),
                "the server refused a good finding: {status} {body}"
            );
            status.is_success()
        }
        Err(_) => false,
    }
}

/// UpdateAccessKey requests moto received that set a key `Inactive`, per user.
fn deactivations(recording: &Path) -> BTreeMap<String, usize> {
    deactivations_since(recording, &mut 0)
}

/// The same, for the complete lines after byte `offset`; moves `offset` past them.
fn deactivations_since(recording: &Path, offset: &mut usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let Ok(bytes) = std::fs::read(recording) else {
        return counts;
    };
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        return counts;
    };
    if end < *offset {
        return counts;
    }
    let text = String::from_utf8_lossy(&bytes[*offset..=end]).into_owned();
    *offset = end + 1;
    for line in text.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        let body = match (entry["body"].as_str(), entry["body_encoded"].as_bool()) {
            (Some(body), Some(true)) => {
                use base64::Engine as _;
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .unwrap(),
                )
                .unwrap()
            }
            (Some(body), _) => body.to_owned(),
            (None, _) => continue,
        };
        let form: BTreeMap<String, String> = body
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if form.get("Action").map(String::as_str) == Some("UpdateAccessKey")
            && form.get("Status").map(String::as_str) == Some("Inactive")
        {
            *counts
                .entry(form.get("UserName").cloned().unwrap_or_default())
                .or_insert(0) += 1;
        }
    }
    counts
}

async fn serve_survives_sigkill(db: TestDb) {
    let kills: usize = std::env::var("WRIT_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("WRIT_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test: {kills} kills, WRIT_CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let scratch = tempfile::tempdir().unwrap();
    let recording = scratch.path().join("moto-requests.ndjson");
    let moto = tokio::task::spawn_blocking({
        let recording = recording.clone();
        move || MotoServer::start_recording(&recording)
    })
    .await
    .unwrap()
    .unwrap();
    let iam = common::moto_client(&moto.url());
    // One user (with one key) per finding; a new finding every other lifetime of the server.
    let users: Vec<String> = (0..kills / 2)
        .map(|n| format!("svc-crash-{n:03}"))
        .collect();
    for user in &users {
        iam.query(Service::Iam, "CreateUser", &[("UserName", user)])
            .await
            .unwrap();
        iam.query(Service::Iam, "CreateAccessKey", &[("UserName", user)])
            .await
            .unwrap();
    }

    let site = Site::new(
        db,
        &format!(
            "[policy]\nbundle = \"policy\"\n\n\
             [writeback]\ninterval_ms = 20\nlease_seconds = 1\nbackoff_seconds = 0\nmax_changes_per_window = 100000\n\n\
             [[sources]]\nname = \"scanner\"\ntrust = \"high\"\ntoken_sha256 = \"{}\"\n\n\
             [[targets]]\nname = \"aws\"\nkind = \"aws_iam\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
            writ_engine::sources::token_hash(TOKEN),
            moto.url()
        ),
    );
    write_policy(&site.path("policy"));
    std::fs::write(
        site.path("owners.csv"),
        format!("pattern,owner_team,criticality\n{ACCOUNT}/svc-crash-*,data,low\n"),
    )
    .unwrap();
    let aws_env = common::aws_env(None);
    // Discovery and ownership rules are an admin's API calls to a running server.
    let root = site.bootstrap_admin("root");
    let mut setup = site.spawn_serve(&aws_env);
    setup.wait_ready().await;
    let output = site.run_as(&setup, &root, &["sync", "aws"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = site.run_as(&setup, &root, &["inventory", "import", "owners.csv"]);
    assert!(output.status.success(), "{}", text(&output));
    setup.terminate();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut next = 0usize;
    let mut killed_before_ready = 0;
    // Kills that left a job between its recorded intent and its verdict.
    let mut mid_write_back = 0;
    let store = writ_store::open(&site.url).await.unwrap();
    let started = Instant::now();
    for lifetime in 0..kills {
        let mut server = site.spawn_serve(&aws_env);
        // One lifetime in ten dies during start-up (migrations, ledger catch-up, key check).
        if rng.below(10) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
            server.kill();
            killed_before_ready += 1;
            continue;
        }
        server.wait_ready().await;
        let lifespan = Duration::from_millis(rng.below(300));
        // One lifetime in three dies the moment moto receives a deactivation: the target
        // changes, the worker never hears back, and nothing of it is recorded yet.
        let at_apply = rng.below(3) == 0;
        let mut seen = std::fs::metadata(&recording).map_or(0, |m| m.len() as usize);
        let base = server.base.clone();
        // Every other lifetime, the next finding (re-sent until the server says it has it,
        // as a real scanner would); the worker meanwhile works the queue.
        let send = (lifetime % 2 == 0 || next < lifetime / 2) && next < users.len();
        let poster = {
            let client = client.clone();
            let user = users.get(next).cloned();
            async move {
                match user {
                    Some(user) if send => post(&client, &base, finding(&user)).await,
                    _ => false,
                }
            }
        };
        let recording_ref = &recording;
        let timer = async move {
            let until = Instant::now() + lifespan;
            while Instant::now() < until {
                if at_apply && !deactivations_since(recording_ref, &mut seen).is_empty() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let (was_accepted, ()) = tokio::join!(poster, timer);
        server.kill();
        let interrupted = store
            .projection_dump()
            .await
            .unwrap()
            .jobs
            .iter()
            .any(|(j, ..)| matches!(j.state, JobState::Intent | JobState::Applied));
        mid_write_back += usize::from(interrupted);
        if was_accepted {
            accepted.insert(users[next].clone());
            next += 1;
        }
    }
    let stress = started.elapsed();

    // A last, undisturbed run: the queue drains, including every job a killed worker held.
    let mut server = site.spawn_serve(&aws_env);
    server.wait_ready().await;
    while next < users.len() {
        assert!(post(&client, &server.base, finding(&users[next])).await);
        accepted.insert(users[next].clone());
        next += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let cases = store
            .cases(&writ_store::CaseFilter::default())
            .await
            .unwrap();
        let remediated = cases
            .iter()
            .filter(|c| c.state == CaseState::Remediated)
            .count();
        if remediated == users.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {remediated} of {} cases remediated; states: {:?}",
            users.len(),
            cases.iter().map(|c| c.state).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = server.stop();

    // Every accepted finding is in the ledger, in its own case.
    let cases = store
        .cases(&writ_store::CaseFilter::default())
        .await
        .unwrap();
    assert_eq!(accepted.len(), users.len());
    assert_eq!(cases.len(), users.len(), "one case per finding");
    let deactivated = deactivations(&recording);
    let mut recovered = 0;
    for user in &accepted {
        let subject = format!("{ACCOUNT}/{user}/AccessKey1");
        let case = cases
            .iter()
            .find(|c| c.subject == subject)
            .unwrap_or_else(|| panic!("no case for the accepted finding about {user}"));
        // Every allowed change: applied once, verified, recorded once.
        let jobs = store.jobs_for_case(case.id).await.unwrap();
        assert_eq!(jobs.len(), 1, "{user}: {jobs:?}");
        assert_eq!(jobs[0].state, JobState::Verified, "{user}: {jobs:?}");
        let entries = store.case_entries(case.id).await.unwrap();
        let count = |kind: &str| entries.iter().filter(|e| e.kind.name() == kind).count();
        assert_eq!(count("finding_received"), 1, "{user}");
        assert_eq!(count("decision_recorded"), 1, "{user}");
        assert_eq!(count("write_back_applied"), 1, "{user}");
        assert_eq!(count("write_back_verified"), 1, "{user}");
        assert_eq!(
            deactivated.get(user).copied().unwrap_or(0),
            1,
            "{user}: moto was asked to deactivate the key {} times",
            deactivated.get(user).copied().unwrap_or(0)
        );
        assert_eq!(
            common::key_status(&moto.url(), user).await,
            "Inactive",
            "{user}"
        );
        let applied = entries
            .iter()
            .find(|e| e.kind.name() == "write_back_applied")
            .unwrap();
        let event = writ_ledger::decode_leaf(&applied.leaf).unwrap();
        if event["body"]["outcome"].to_string().contains("already") {
            recovered += 1;
        }
    }
    let output = site.run(&["audit", "verify"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = site.run(&["admin", "rebuild", "--check"]);
    assert!(output.status.success(), "{}", text(&output));
    eprintln!(
        "crash test: {kills} SIGKILLs ({killed_before_ready} during start-up, {mid_write_back} after which a job stood between intent and verdict) in {:.1} s; \
         {} findings accepted, {} changes applied once and verified; \
         {recovered} found already in effect after a crash and recorded without a second apply",
        stress.as_secs_f64(),
        accepted.len(),
        users.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_serve_survives_sigkill() {
    serve_survives_sigkill(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_serve_survives_sigkill() {
    serve_survives_sigkill(TestDb::postgres().unwrap()).await;
}
