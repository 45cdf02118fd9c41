//! End-to-end: the ledger holds against whoever can write its database. Checkpoints are
//! published outside it as they are made (`ledger.publish_dir`), an auditor's kept checkpoint
//! proves that today's tree extends it (`audit verify --trusted`, `audit export --since`), and
//! writ refuses to extend a ledger it cannot vouch for until an operator seals it, as an event.
//! Through the real binary, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Site, text};
use writ_testkit::TestDb;

/// Writes a finding file and ingests it with the real binary (one commit, one checkpoint).
fn ingest(site: &Site, n: u32) -> std::process::Output {
    let name = format!("finding-{n}.json");
    ingest_file(site, n, &name);
    site.run(&["ingest", "--source", "cli", &name])
}

/// Writes finding `n` to `name` in the site.
fn ingest_file(site: &Site, n: u32, name: &str) {
    std::fs::write(
        site.path(name),
        serde_json::to_vec(&serde_json::json!({
            "finding_type": "unused_key",
            "severity": "medium",
            "confidence": 0.9,
            "subject": {"system": "aws:123456789012", "external_id": format!("AKIA{n:016}"), "kind": "api_key"},
            "title": format!("key {n} unused for 120 days"),
            "idempotency_key": format!("trust-test:{n}"),
        }))
        .unwrap(),
    )
    .unwrap();
}

fn ok(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", text(output));
    text(output)
}

fn published(site: &Site) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(site.path("published"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The attack: the newest commit (its entries and its checkpoint) removed and the head set back,
/// so that writ signs a different history over the same sizes.
const REMOVE_NEWEST_COMMIT: &str = "DELETE FROM checkpoints WHERE size = (SELECT MAX(size) FROM checkpoints); \
     DELETE FROM ledger_entries WHERE seq >= (SELECT MAX(size) FROM checkpoints); \
     UPDATE ledger_head SET size = (SELECT MAX(size) FROM checkpoints)";

async fn tamper(site: &Site, sql: &str) {
    writ_testkit::exec_sql(&site.url, sql).await.unwrap();
}

/// Every commit publishes its checkpoint; an auditor's kept one proves the tree extends it,
/// in the database and in a bundle; the truncate-and-re-sign attack is caught by the published
/// checkpoints and refused by the publish directory itself.
async fn published_checkpoints_catch_a_rewritten_history(db: TestDb) {
    let site = Site::new(db, "publish_dir = \"published\"");
    for n in 0..3 {
        ok(&ingest(&site, n));
    }
    let files = published(&site);
    // One file per commit: the policy bundle kept by the first ingest, then each ingest.
    assert_eq!(files.len(), 4, "one file per commit: {files:?}");
    let newest =
        std::fs::read_to_string(site.path("published").join(files.last().unwrap())).unwrap();
    assert_eq!(ok(&site.run(&["audit", "checkpoint"])), newest);
    ok(&site.run(&["audit", "verify", "--trusted", "published"]));

    // The auditor keeps today's checkpoint; after more work, a bundle proves the tree extends it.
    std::fs::write(site.path("kept.note"), &newest).unwrap();
    ok(&ingest(&site, 3));
    ok(&site.run(&[
        "audit",
        "export",
        "--all",
        "--since",
        "kept.note",
        "-o",
        "bundle.json",
    ]));
    let verified = ok(&site.run(&[
        "audit",
        "verify",
        "--bundle",
        "bundle.json",
        "--key",
        "ledger.key.pub",
        "--trusted",
        "kept.note",
    ]));
    assert!(
        verified.contains("consistent with the earlier tree"),
        "{verified}"
    );
    // A bundle without the proof does not satisfy a trusted checkpoint.
    ok(&site.run(&["audit", "export", "--all", "-o", "plain.json"]));
    let plain = site.run(&[
        "audit",
        "verify",
        "--bundle",
        "plain.json",
        "--key",
        "ledger.key.pub",
        "--trusted",
        "kept.note",
    ]);
    assert_eq!(plain.status.code(), Some(1), "{}", text(&plain));

    // The attack: remove the newest commit (its entries and checkpoint), set the head back, and
    // let writ sign a different history over the same sizes.
    tamper(&site, REMOVE_NEWEST_COMMIT).await;
    let rewrite = ingest(&site, 4);
    assert!(rewrite.status.success(), "{}", text(&rewrite));
    assert!(
        text(&rewrite).contains("already published there"),
        "the publish directory refuses the second history: {}",
        text(&rewrite)
    );
    assert_eq!(published(&site).len(), 5, "nothing rewritten");
    ok(&site.run(&["audit", "verify"]));
    let caught = site.run(&["audit", "verify", "--trusted", "published"]);
    assert_eq!(caught.status.code(), Some(1), "{}", text(&caught));
    assert!(
        text(&caught).contains("was published but the database does not hold it"),
        "{}",
        text(&caught)
    );
    let export = site.run(&["audit", "export", "--all", "--since", "published"]);
    assert!(!export.status.success(), "{}", text(&export));
    assert!(
        text(&export).contains("history was rewritten"),
        "{}",
        text(&export)
    );
    // The auditor's older checkpoint is still extended: the rewrite came after it, and the
    // consistency proof from it to today's tree is built and checked.
    let extended = ok(&site.run(&["audit", "verify", "--trusted", "kept.note"]));
    assert!(
        extended.contains("RFC 6962 consistency proof of")
            && !extended.contains("proof of 0 hashes"),
        "{extended}"
    );
}

/// writ refuses to extend a ledger it cannot vouch for: a stored hash that is not its leaf's,
/// or entries no checkpoint covers; an operator seals the latter after checking, as an event.
async fn an_unsigned_tail_is_refused_until_sealed(db: TestDb) {
    let site = Site::new(db, "publish_dir = \"published\"");
    for n in 0..3 {
        ok(&ingest(&site, n));
    }
    tamper(
        &site,
        "DELETE FROM checkpoints WHERE size = (SELECT MAX(size) FROM checkpoints)",
    )
    .await;
    let refused = ingest(&site, 3);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("covered by no signed checkpoint")
            && text(&refused).contains("writ admin seal"),
        "{}",
        text(&refused)
    );
    let verify = site.run(&["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    let blank = site.run(&["admin", "seal", "--reason", " "]);
    assert!(!blank.status.success());
    let sealed = ok(&site.run(&[
        "admin",
        "seal",
        "--reason",
        "crash during the 02:00 batch; entries checked against the application log",
    ]));
    assert!(sealed.contains("sealed entries"), "{sealed}");
    ok(&site.run(&["audit", "verify"]));
    // The checkpoint this test deleted to make the tail had been published: the publish
    // directory still names it.
    let deleted = site.run(&["audit", "verify", "--trusted", "published"]);
    assert_eq!(deleted.status.code(), Some(1), "{}", text(&deleted));
    assert!(
        text(&deleted).contains("was published but the database does not hold it"),
        "{}",
        text(&deleted)
    );
    ok(&ingest(&site, 3));
    let nothing = ok(&site.run(&["admin", "seal", "--reason", "again"]));
    assert!(nothing.contains("nothing to seal"), "{nothing}");
    let store = writ_store::open(&site.url).await.unwrap();
    let entries = store.entries(0, 1_000).await.unwrap();
    let seal = entries
        .iter()
        .find(|e| e.kind.name() == "ledger_sealed")
        .expect("the seal is an event");
    assert!(seal.actor.starts_with("operator:"), "{}", seal.actor);

    // A stored hash that is not its leaf's: writ will not sign over it.
    let sql = if site.url.starts_with("sqlite") {
        "UPDATE ledger_entries SET leaf_hash = zeroblob(32) WHERE seq = 1"
    } else {
        "UPDATE ledger_entries SET leaf_hash = decode(repeat('00', 32), 'hex') WHERE seq = 1"
    };
    tamper(&site, sql).await;
    let refused = ingest(&site, 5);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("entry 1: its stored hash is not its leaf's"),
        "{}",
        text(&refused)
    );
}

/// `writ witness serve` as a child process, killed on drop.
struct WitnessProcess(std::process::Child);

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_witness(site: &Site, port: u16) -> WitnessProcess {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(site.path("witness.log"))
        .unwrap();
    let child = common::writ(site.dir())
        .args([
            "witness",
            "serve",
            "--key",
            "witness.key",
            "--log-key",
            "ledger.key.pub",
            "--state",
            "witness-state.json",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::from(log.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(log))
        .spawn()
        .unwrap();
    let process = WitnessProcess(child);
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return process;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the witness did not start: {}",
        std::fs::read_to_string(site.path("witness.log")).unwrap_or_default()
    );
}

/// A witness co-signs every checkpoint with a consistency proof from the last one it
/// co-signed; `audit verify --witness-key` requires it to have co-signed the head; a witness
/// that was down catches up; a truncated and re-signed history is refused by the witness and
/// fails verification.
async fn a_witness_cosigns_and_refuses_a_rewritten_history(db: TestDb) {
    let port = writ_testkit::free_port().unwrap();
    let site = Site::new(
        db,
        &format!(
            "[[ledger.witnesses]]\nurl = \"http://127.0.0.1:{port}\"\nkey = \"witness.key.pub\"\n"
        ),
    );
    let vkey = ok(&site.run(&[
        "witness",
        "init",
        "--key",
        "witness.key",
        "--name",
        "witness.test/w1",
    ]));
    assert!(vkey.starts_with("witness.test/w1+"), "{vkey}");
    let witness = start_witness(&site, port).await;
    for n in 0..3 {
        let output = ingest(&site, n);
        assert!(
            !text(&output).contains("not published"),
            "{}",
            text(&output)
        );
        ok(&output);
    }
    ok(&site.run(&["audit", "verify", "--witness-key", "witness.key.pub"]));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.path("witness-state.json")).unwrap()).unwrap();
    let head = writ_store::open(&site.url)
        .await
        .unwrap()
        .ledger_size()
        .await
        .unwrap();
    assert_eq!(state["writ.test/ledger"]["size"], head, "{state}");

    // The witness is down: the commit stands, but the head is not witnessed.
    drop(witness);
    let unwitnessed = ingest(&site, 3);
    assert!(unwitnessed.status.success(), "{}", text(&unwitnessed));
    assert!(text(&unwitnessed).contains("not published"));
    let behind = site.run(&["audit", "verify", "--witness-key", "witness.key.pub"]);
    assert_eq!(behind.status.code(), Some(1), "{}", text(&behind));
    assert!(text(&behind).contains("has co-signed"), "{}", text(&behind));
    // Back up: the next commit is co-signed with a proof from where the witness stopped.
    let witness = start_witness(&site, port).await;
    ok(&ingest(&site, 4));
    ok(&site.run(&["audit", "verify", "--witness-key", "witness.key.pub"]));

    // The attack: remove the newest commit, set the head back, sign a different history.
    tamper(&site, REMOVE_NEWEST_COMMIT).await;
    let rewrite = ingest(&site, 5);
    assert!(
        text(&rewrite).contains("refused the checkpoint"),
        "the witness refuses the rewritten history: {}",
        text(&rewrite)
    );
    ok(&site.run(&["audit", "verify"]));
    let caught = site.run(&["audit", "verify", "--witness-key", "witness.key.pub"]);
    assert_eq!(caught.status.code(), Some(1), "{}", text(&caught));
    drop(witness);
    let log = std::fs::read_to_string(site.path("witness.log")).unwrap();
    assert!(log.contains("refused a checkpoint"), "{log}");
}

/// Checkpoints go to S3 under Object Lock in compliance mode (moto): one object per
/// checkpoint, keyed by tree size, that cannot be deleted; a missing bucket is reported and the
/// next commit publishes again.
async fn checkpoints_are_published_to_s3_under_object_lock(db: TestDb) {
    use writ_connector_aws::s3::S3;
    use writ_connector_aws::{AwsClient, AwsConfig};
    let moto = tokio::task::spawn_blocking(writ_testkit::MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    let site = Site::new(
        db,
        &format!(
            "[ledger.s3]\nbucket = \"writ-audit\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nretain_days = 30\n",
            moto.url()
        ),
    );
    let with_aws = |n: u32| {
        let name = format!("finding-{n}.json");
        ingest_file(&site, n, &name);
        common::writ(site.dir())
            .args(["ingest", "--source", "cli", &name])
            .envs(common::aws_env(None))
            .output()
            .unwrap()
    };
    // No bucket yet: the commit stands, the failure is reported.
    let missing = with_aws(0);
    assert!(missing.status.success(), "{}", text(&missing));
    assert!(
        text(&missing).contains("not published"),
        "{}",
        text(&missing)
    );
    let s3 = S3::new(
        AwsClient::new(
            AwsConfig::new("testing", "testing", "us-east-1")
                .with_endpoint(&moto.url())
                .unwrap(),
        )
        .unwrap(),
    );
    s3.create_locked_bucket("writ-audit").await.unwrap();
    assert!(s3.object_lock_enabled("writ-audit").await.unwrap());
    let published = with_aws(1);
    assert!(
        !text(&published).contains("not published"),
        "{}",
        text(&published)
    );
    let latest = ok(&site.run(&["audit", "checkpoint"]));
    let size: u64 = latest.lines().nth(1).unwrap().parse().unwrap();
    let key = format!("writ-checkpoints/{size:020}.checkpoint");
    assert_eq!(s3.get("writ-audit", &key).await.unwrap().unwrap(), latest);
    let (mode, _until) = s3.retention("writ-audit", &key).await.unwrap().unwrap();
    assert_eq!(mode, "COMPLIANCE");
    let versions = s3.versions("writ-audit", &key).await.unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert!(
        s3.delete_version("writ-audit", &key, &versions[0])
            .await
            .is_err(),
        "a retained checkpoint cannot be deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_are_published_to_s3_under_object_lock() {
    checkpoints_are_published_to_s3_under_object_lock(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_checkpoints_are_published_to_s3_under_object_lock() {
    checkpoints_are_published_to_s3_under_object_lock(TestDb::postgres().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_witness_cosigns_and_refuses_a_rewritten_history() {
    a_witness_cosigns_and_refuses_a_rewritten_history(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_witness_cosigns_and_refuses_a_rewritten_history() {
    a_witness_cosigns_and_refuses_a_rewritten_history(TestDb::postgres().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_published_checkpoints_catch_a_rewritten_history() {
    published_checkpoints_catch_a_rewritten_history(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_published_checkpoints_catch_a_rewritten_history() {
    published_checkpoints_catch_a_rewritten_history(TestDb::postgres().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_unsigned_tail_is_refused_until_sealed() {
    an_unsigned_tail_is_refused_until_sealed(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_unsigned_tail_is_refused_until_sealed() {
    an_unsigned_tail_is_refused_until_sealed(TestDb::postgres().unwrap()).await;
}
