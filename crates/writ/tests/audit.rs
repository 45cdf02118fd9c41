//! End-to-end: `writ keys init`, `writ audit verify|export`, `writ admin rebuild` as an operator
//! and an auditor run them, on SQLite and PostgreSQL. The ledger is filled through the engine
//! library; everything checked is done by the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Site, text, writ};
use writ_testkit::{TestBackend, TestDb};

use serde_json::json;
use writ_core::approval::{Approval, Verdict};
use writ_core::case::CaseState;
use writ_core::event::{ApprovalGranted, EventBody};
use writ_core::example;
use writ_core::ids::{ApprovalId, ChangeId};
use writ_engine::{Draft, Engine};
use writ_store::Expectation;

/// Appends `cases` cases of three events each to `site`'s ledger, one batch per append.
async fn fill(site: &Site, cases: u128) {
    fill_at(&site.url, &site.path("ledger.key"), cases).await;
}

async fn fill_at(url: &str, key: &std::path::Path, cases: u128) {
    let store = writ_store::open(url).await.unwrap();
    let signer = writ_engine::keys::load_signer(key).unwrap();
    let sequencer = Engine::builder(store, signer)
        .start()
        .await
        .unwrap()
        .sequencer;
    // Each case: a finding opens it, policy decides it needs an approval, alice approves;
    // three entries and three checkpoints, each step expecting the case as it was left.
    for n in 0..cases {
        let n = n + 1;
        let id = example::case_id(n);
        let key = format!("case-{n}-0");
        // The finding's raw bytes are stored as evidence beside the ledger.
        let opened = sequencer
            .append(Draft {
                evidence: vec![writ_engine::EvidenceBlob {
                    media_type: "application/json".into(),
                    bytes: format!("{{\"finding\": {n}}}").into_bytes(),
                }],
                ..Draft::new(
                    Some(id),
                    "engine",
                    key.clone(),
                    example::opened(n, &key, b"raw"),
                )
            })
            .await
            .unwrap();
        let decided = sequencer
            .append(Draft {
                expect: vec![Expectation::Case {
                    id,
                    state: CaseState::NeedsReview,
                    updated_seq: opened.seq,
                }],
                ..Draft::new(
                    Some(id),
                    "engine",
                    format!("case-{n}-1"),
                    example::decided(n, example::one_owner_approval()),
                )
            })
            .await
            .unwrap();
        sequencer
            .append(Draft {
                expect: vec![Expectation::Case {
                    id,
                    state: CaseState::AwaitingApproval,
                    updated_seq: decided.seq,
                }],
                ..Draft::new(
                    Some(id),
                    "user:alice",
                    format!("case-{n}-2"),
                    EventBody::ApprovalGranted(ApprovalGranted {
                        approval: Approval {
                            id: ApprovalId(uuid::Uuid::from_u128(n)),
                            change_id: ChangeId(id.as_uuid()),
                            approver: "alice".into(),
                            verdict: Verdict::Approve,
                            rationale: "owner confirms unused".into(),
                            at: example::time(),
                            binding: None,
                        },
                        rationale: "owner confirms unused".into(),
                    }),
                )
            })
            .await
            .unwrap();
    }
}

/// Changes `site`'s database behind writ's back.
async fn tamper(site: &Site, sql: &str) {
    writ_testkit::exec_sql(&site.url, sql).await.unwrap();
}

async fn operator_and_auditor_story(db: TestDb) {
    let site = Site::new(db, "");
    fill(&site, 4).await;

    let output = site.run(&["audit", "verify"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("ledger verified: 12 entries, 12 checkpoints"),
        "{}",
        text(&output)
    );

    // Export one case and verify it offline, with nothing but the bundle and the public key.
    let output = site.run(&[
        "audit",
        "export",
        "--case",
        "00000000-0000-0000-0000-000000000002",
        "-o",
        "case.json",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let offline = tempfile::tempdir().unwrap();
    std::fs::copy(site.path("case.json"), offline.path().join("case.json")).unwrap();
    std::fs::copy(
        site.path("ledger.key.pub"),
        offline.path().join("ledger.pub"),
    )
    .unwrap();
    let output = writ(offline.path())
        .args([
            "audit",
            "verify",
            "--bundle",
            "case.json",
            "--key",
            "ledger.pub",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("3 entries (3-5)"),
        "{}",
        text(&output)
    );

    // A changed byte in the bundle is caught.
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(offline.path().join("case.json")).unwrap()).unwrap();
    let leaf = bundle["entries"][1]["leaf"].as_str().unwrap().to_owned();
    let flipped = if leaf.starts_with('d') {
        leaf.replacen('d', "e", 1)
    } else {
        format!("d{}", &leaf[1..])
    };
    bundle["entries"][1]["leaf"] = json!(flipped);
    std::fs::write(offline.path().join("forged.json"), bundle.to_string()).unwrap();
    let output = writ(offline.path())
        .args([
            "audit",
            "verify",
            "--bundle",
            "forged.json",
            "--key",
            "ledger.pub",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("VERIFICATION FAILED"),
        "{}",
        text(&output)
    );

    // The whole ledger, too.
    let output = site.run(&["audit", "export", "--all", "-o", "all.json"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = site.run(&[
        "audit",
        "verify",
        "--bundle",
        "all.json",
        "--key",
        "ledger.key.pub",
    ]);
    assert!(
        text(&output).contains("12 entries (0-11)"),
        "{}",
        text(&output)
    );

    // A bundle is never verified with its own key.
    let output = site.run(&["audit", "verify", "--bundle", "all.json"]);
    assert_eq!(output.status.code(), Some(2));

    // Projections: check, drift, repair.
    let output = site.run(&["admin", "rebuild", "--check"]);
    assert!(output.status.success(), "{}", text(&output));
    tamper(&site, "UPDATE cases SET state = 'closed'").await;
    let output = site.run(&["admin", "rebuild", "--check"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let output = site.run(&["admin", "rebuild"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(site.run(&["admin", "rebuild", "--check"]).status.success());
}

async fn tampering_is_named(backend: TestBackend) {
    let sqlite = matches!(backend, TestBackend::Sqlite);
    let zero_root = if sqlite {
        "UPDATE checkpoints SET root = zeroblob(32) WHERE size = 6"
    } else {
        "UPDATE checkpoints SET root = decode(repeat('00', 32), 'hex') WHERE size = 6"
    };
    let changed_evidence = if sqlite {
        "UPDATE evidence SET bytes = X'7B7D' WHERE digest = (SELECT MIN(digest) FROM evidence)"
    } else {
        "UPDATE evidence SET bytes = '\\x7b7d'::bytea WHERE digest = (SELECT MIN(digest) FROM evidence)"
    };
    let cases: [(&str, &str); 14] = [
        // Every column an entry copies from its leaf, edited alone (the leaf intact).
        (
            "UPDATE ledger_entries SET actor = 'mallory' WHERE seq = 5",
            "first bad entry is seq 5: the stored actor differs from the leaf's",
        ),
        (
            "UPDATE ledger_entries SET time_us = time_us + 1 WHERE seq = 6",
            "first bad entry is seq 6: the stored time_us differs from the leaf's",
        ),
        (
            "UPDATE ledger_entries SET case_id = NULL WHERE seq = 3",
            "first bad entry is seq 3: the stored case_id differs from the leaf's",
        ),
        (
            "UPDATE ledger_entries SET kind = 'rolled_back' WHERE seq = 1",
            "first bad entry is seq 1: the stored kind differs from the leaf's",
        ),
        (
            "UPDATE ledger_entries SET idempotency_key = 'forged' WHERE seq = 8",
            "first bad entry is seq 8: the stored idempotency_key differs from the leaf's",
        ),
        // A checkpoint's stored root, beside its signed note.
        (
            zero_root,
            "checkpoint at size 6: the stored root differs from the signed note's",
        ),
        // Every checkpoint deleted: nothing vouches for the entries.
        (
            "DELETE FROM checkpoints",
            "the latest signed checkpoint covers 0 of 12 entries",
        ),
        // The raw finding as received, or its digest.
        (
            changed_evidence,
            "the stored bytes do not hash to the digest",
        ),
        (
            "UPDATE evidence SET digest = 'sha256:0000000000000000000000000000000000000000000000000000000000000000' WHERE digest = (SELECT MIN(digest) FROM evidence)",
            "which is not stored",
        ),
        (
            "UPDATE ledger_entries SET actor = 'mallory', leaf = leaf || leaf WHERE seq = 4",
            "first bad entry is seq 4: stored leaf hash does not match",
        ),
        (
            "DELETE FROM ledger_entries WHERE seq = 7",
            "first bad entry is seq 7: expected seq 7, found 8",
        ),
        (
            "UPDATE ledger_entries SET seq = 100 WHERE seq = 2; UPDATE ledger_entries SET seq = 2 WHERE seq = 3; UPDATE ledger_entries SET seq = 3 WHERE seq = 100",
            "first bad entry is seq 2",
        ),
        (
            "DELETE FROM ledger_entries WHERE seq = 11; DELETE FROM checkpoints WHERE size = 12",
            "first bad entry is seq 11: the log claims 12 entries but 11 are stored",
        ),
        (
            "FORGE",
            "checkpoint at size 12 has a bad or missing signature",
        ),
    ];
    for (sql, expected) in cases {
        let site = Site::new(TestDb::new(backend).unwrap(), "");
        fill(&site, 4).await;
        assert!(site.run(&["audit", "verify"]).status.success());
        if sql == "FORGE" {
            // Re-sign the latest checkpoint with a key that is not the ledger's.
            let (forger, _) = writ_ledger::generate_key("writ.test/ledger", [66; 32]).unwrap();
            let store = writ_store::open(&site.url).await.unwrap();
            let latest = store.latest_checkpoint().await.unwrap().unwrap();
            let note = writ_ledger::sign(
                &writ_ledger::Checkpoint::new(
                    "writ.test/ledger",
                    latest.size,
                    writ_ledger::Hash(latest.root),
                ),
                &forger,
            )
            .unwrap();
            tamper(
                &site,
                &format!(
                    "UPDATE checkpoints SET note = '{note}' WHERE size = {}",
                    latest.size
                ),
            )
            .await;
        } else {
            tamper(&site, sql).await;
        }
        let output = site.run(&["audit", "verify"]);
        assert_eq!(output.status.code(), Some(1), "{sql}: {}", text(&output));
        assert!(
            text(&output).contains(expected),
            "{sql}: expected {expected:?} in {}",
            text(&output)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_operator_and_auditor_story() {
    operator_and_auditor_story(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_operator_and_auditor_story() {
    operator_and_auditor_story(TestDb::postgres().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tampering_is_named() {
    tampering_is_named(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tampering_is_named() {
    tampering_is_named(TestBackend::Postgres).await;
}

/// The attack of issue 13: someone with write access to the database deletes the last entry
/// and its checkpoint and sets the head back; writ's next append signs over the shortened
/// history, so the database is consistent with itself and `audit verify` alone passes. The
/// checkpoint an auditor kept (`writ audit checkpoint`) catches it: today's tree no longer
/// extends it.
async fn a_truncated_and_resigned_history_fails_against_a_kept_checkpoint(db: TestDb) {
    let site = Site::new(db, "");
    fill(&site, 4).await;
    let kept = site.run(&["audit", "checkpoint"]);
    assert!(kept.status.success(), "{}", text(&kept));
    std::fs::write(site.path("kept.note"), &kept.stdout).unwrap();
    assert!(
        site.run(&["audit", "verify", "--trusted", "kept.note"])
            .status
            .success()
    );
    tamper(
        &site,
        "DELETE FROM ledger_entries WHERE seq = 11; DELETE FROM checkpoints WHERE size = 12; UPDATE ledger_head SET size = 11",
    )
    .await;
    // The next append signs over the shortened history.
    {
        let store = writ_store::open(&site.url).await.unwrap();
        let signer = writ_engine::keys::load_signer(&site.path("ledger.key")).unwrap();
        let sequencer = Engine::builder(store, signer)
            .start()
            .await
            .unwrap()
            .sequencer;
        sequencer
            .append(Draft::new(
                None,
                "operator",
                "after-the-rewrite",
                EventBody::OwnershipImported(writ_core::event::OwnershipImported {
                    file: "owners.csv".into(),
                    rules: vec![],
                }),
            ))
            .await
            .unwrap();
    }
    let alone = site.run(&["audit", "verify"]);
    assert!(alone.status.success(), "{}", text(&alone));
    let against = site.run(&["audit", "verify", "--trusted", "kept.note"]);
    assert_eq!(against.status.code(), Some(1), "{}", text(&against));
    assert!(
        text(&against).contains("root at size 12 does not match the checkpoint"),
        "{}",
        text(&against)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_truncated_history_fails_against_a_kept_checkpoint() {
    a_truncated_and_resigned_history_fails_against_a_kept_checkpoint(TestDb::sqlite().unwrap())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_truncated_history_fails_against_a_kept_checkpoint() {
    a_truncated_and_resigned_history_fails_against_a_kept_checkpoint(TestDb::postgres().unwrap())
        .await;
}

/// A signed ledger whose key went missing is never given a new key: `writ serve` at the
/// default key path refuses to start until the key is restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_never_replaced_on_a_signed_ledger() {
    let db = TestDb::sqlite().unwrap();
    let dir = db.dir.path();
    // Only the database: the signing key is the default one, created by the first start.
    std::fs::write(
        dir.join("writ.toml"),
        format!("[database]\nurl = \"{}\"\n", db.url),
    )
    .unwrap();
    let port = writ_testkit::free_port().unwrap();
    let mut first = common::Server::spawn(
        {
            let mut command = writ(dir);
            command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
            command
        },
        port,
    );
    first.wait_ready().await;
    let output = writ(dir)
        .args(["principal", "add", "root", "--role", "admin", "--bootstrap"])
        .output()
        .unwrap();
    first.stop();
    assert!(output.status.success(), "{}", text(&output));
    std::fs::remove_file(dir.join("writ-ledger.key")).unwrap();
    let again = writ(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("restore the key from its backup"),
        "{}",
        text(&again)
    );
    assert!(!dir.join("writ-ledger.key").exists(), "no new key was made");
}

#[test]
fn keys_init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let first = writ(dir.path())
        .args(["keys", "init", "--key", "k", "--origin", "a.example/log"])
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", text(&first));
    let second = writ(dir.path())
        .args(["keys", "init", "--key", "k", "--origin", "a.example/log"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    assert!(
        text(&second).contains("refusing to overwrite"),
        "{}",
        text(&second)
    );
    let bad = writ(dir.path())
        .args(["keys", "init", "--key", "k2", "--origin", "has space"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad).contains("invalid ledger origin"),
        "{}",
        text(&bad)
    );
}
