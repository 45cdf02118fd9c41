//! The ledger end to end over a real store: group commit, idempotency, fail-closed, restart,
//! tamper detection, rebuild and offline export. Every case runs on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;
use writ_core::case::CaseState;
use writ_core::event::{ControlTag, EventBody, OwnershipImported};
use writ_core::example;
use writ_core::ids::{CaseId, FindingId};
use writ_core::{ManualClock, Sha256Digest};
use writ_engine::audit::{self, Selection};
use writ_engine::{AppendError, Draft, EvidenceBlob, Sequencer, SequencerConfig, rebuild};
use writ_ledger::{FailureReason, SignerKey, VerifierKey, generate_key, verify_bundle};
use writ_store::Store;
use writ_testkit::TestDb;

struct Harness {
    store: Arc<dyn Store>,
    url: String,
    signer: SignerKey,
    verifier: VerifierKey,
    clock: Arc<ManualClock>,
    db: TestDb,
}

fn keys(seed: u8) -> (SignerKey, VerifierKey) {
    generate_key("writ.test/ledger", [seed; 32]).unwrap()
}

async fn harness(db: TestDb) -> Harness {
    let (signer, verifier) = keys(7);
    Harness {
        store: writ_store::open(&db.url).await.unwrap(),
        url: db.url.clone(),
        signer,
        verifier,
        clock: Arc::new(ManualClock::new(example::time())),
        db,
    }
}

impl Harness {
    async fn sequencer(&self) -> Sequencer {
        Sequencer::start(
            self.store.clone(),
            self.signer.clone(),
            self.clock.clone(),
            SequencerConfig::default(),
        )
        .await
        .unwrap()
    }

    async fn verify(&self) -> Result<writ_ledger::VerifyReport, writ_ledger::VerifyFailure> {
        audit::verify_store(self.store.clone(), &self.verifier, &mut |_, _| {})
            .await
            .unwrap()
    }

    /// Runs SQL straight against the database, as an attacker with database access would.
    async fn tamper(&self, sql: &str) {
        writ_testkit::exec_sql(&self.url, sql).await.unwrap();
    }
}

fn draft(key: &str) -> Draft {
    Draft {
        controls: vec![ControlTag("NHI-01".into()), ControlTag("DE.CM".into())],
        ..Draft::new(
            None,
            "engine",
            key,
            EventBody::OwnershipImported(OwnershipImported {
                file: format!("event {key}"),
                rules: vec![],
            }),
        )
    }
}

/// A small but realistic story, recorded as one group: an identity synced, a finding opens a
/// case, policy decides it needs one approval.
fn story(n: u128) -> Vec<Draft> {
    let case_id = example::case_id(n);
    let raw = format!(r#"{{"finding":"raw bytes {n}"}}"#).into_bytes();
    let key = format!("received-{n}");
    vec![
        Draft::new(None, "engine", format!("sync-{n}"), example::synced(n)),
        Draft {
            evidence: vec![EvidenceBlob {
                media_type: "application/json".into(),
                bytes: raw.clone(),
            }],
            ..Draft::new(
                Some(case_id),
                "engine",
                key.clone(),
                example::opened(n, &key, &raw),
            )
        },
        Draft {
            policy_bundle: Some(Sha256Digest::of(b"bundle")),
            ..Draft::new(
                Some(case_id),
                "engine",
                format!("decided-{n}"),
                example::decided(n, example::one_owner_approval()),
            )
        },
    ]
}

/// Appends `story(n)` as one group and returns its results.
async fn append_story(
    sequencer: &Sequencer,
    n: u128,
) -> Vec<Result<writ_engine::Appended, AppendError>> {
    sequencer
        .append_groups(vec![story(n)])
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The leaf format is what auditors' tools read: it must not change by accident. With the clock
/// and ids fixed, the stored leaf is byte for byte the snapshot, on either backend.
async fn leaf_format_is_stable(h: Harness) {
    let sequencer = h.sequencer().await;
    for result in append_story(&sequencer, 7).await {
        result.unwrap();
    }
    let entries = h.store.entries(0, 10).await.unwrap();
    let leaves: Vec<String> = entries
        .iter()
        .map(|row| String::from_utf8(row.leaf.clone()).unwrap())
        .collect();
    insta::assert_snapshot!("story_leaves", leaves.join("\n---\n"));
    let checkpoint = h.store.latest_checkpoint().await.unwrap().unwrap();
    insta::assert_snapshot!("story_checkpoint", checkpoint.note);
}

async fn group_commit_assigns_contiguous_seqs_and_verifies(h: Harness) {
    let sequencer = h.sequencer().await;
    let results = sequencer
        .append_all((0..300).map(|i| draft(&format!("k{i}"))).collect())
        .await;
    let seqs: Vec<u64> = results.iter().map(|r| r.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, (0..300).collect::<Vec<_>>());
    assert_eq!(h.store.ledger_size().await.unwrap(), 300);
    let checkpoints = h.store.checkpoints().await.unwrap();
    assert!(
        checkpoints.len() < 300,
        "appends were not batched: {} checkpoints",
        checkpoints.len()
    );
    assert_eq!(checkpoints.last().unwrap().size, 300);
    let report = h.verify().await.unwrap();
    assert_eq!(report.entries, 300);
    assert_eq!(report.checkpoints_verified, checkpoints.len());
}

async fn idempotency_key_returns_the_original_entry(h: Harness) {
    let sequencer = h.sequencer().await;
    let first = sequencer.append(draft("same")).await.unwrap();
    assert!(!first.duplicate);
    h.clock.advance(jiff::SignedDuration::from_secs(60));
    let again = sequencer.append(draft("same")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.seq, again.leaf_hash, again.time),
        (first.seq, first.leaf_hash, first.time)
    );
    // Duplicates inside one batch, too.
    let results = sequencer
        .append_all(vec![draft("a"), draft("a"), draft("same"), draft("b")])
        .await;
    let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(results[0].seq, results[1].seq);
    assert!(results[1].duplicate && results[2].duplicate && !results[3].duplicate);
    assert_eq!(results[2].seq, first.seq);
    assert_eq!(h.store.ledger_size().await.unwrap(), 3);
    h.verify().await.unwrap();
}

async fn secrets_never_enter_the_ledger(h: Harness) {
    let sequencer = h.sequencer().await;
    let err = sequencer
        .append(Draft {
            body: secret_body(),
            ..draft("s")
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AppendError::SecretInEvent {
            pointer: "/observation/details/rotation/new/secret_value".into()
        }
    );
    assert_eq!(h.store.ledger_size().await.unwrap(), 0);
}

/// The finding of `story(1)` again under `key`, opening a second case for the same subject and
/// finding type while the first is open: the store refuses it (one open case per subject).
fn clashing_finding(key: &str) -> Draft {
    let mut clash = story(1).remove(1);
    clash.idempotency_key = key.into();
    let second_case = CaseId(Uuid::from_u128(9_002));
    let EventBody::FindingReceived(body) = &mut clash.body else {
        unreachable!("story(1)[1] is a finding")
    };
    body.finding.idempotency_key = key.into();
    body.finding.id = FindingId(Uuid::from_u128(9_001));
    body.case.as_mut().unwrap().id = second_case;
    clash.case_id = Some(second_case);
    clash
}

/// A finding whose tool details hold a secret-named field.
fn secret_body() -> EventBody {
    let mut body = example::opened(1, "s", b"raw");
    let EventBody::FindingReceived(received) = &mut body else {
        unreachable!()
    };
    received.observation.details = json!({"rotation": {"new": {"secret_value": "hunter2"}}});
    received.case = None;
    body
}

/// One draft in a batch fails in the store (a second open case for its subject): only it
/// fails, the others commit, and the ledger stays verifiable.
async fn a_failing_draft_does_not_take_the_batch_down(h: Harness) {
    let sequencer = h.sequencer().await;
    for result in append_story(&sequencer, 1).await {
        result.unwrap();
    }
    let clash = clashing_finding("received-again");
    let results = sequencer
        .append_all(vec![draft("x"), clash, draft("y")])
        .await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(AppendError::Conflict(_))),
        "{results:?}"
    );
    assert_eq!(h.store.ledger_size().await.unwrap(), 5);
    assert!(
        h.store
            .entry_by_idempotency_key("received-again")
            .await
            .unwrap()
            .is_none()
    );
    h.verify().await.unwrap();
}

/// A finding is recorded under its own event's key: a draft whose finding carries another key
/// is refused alone, before the store sees it.
async fn a_finding_under_another_key_is_refused(h: Harness) {
    let sequencer = h.sequencer().await;
    let mut odd = clashing_finding("received-odd");
    let EventBody::FindingReceived(body) = &mut odd.body else {
        unreachable!()
    };
    body.finding.idempotency_key = "some-other-key".into();
    let results = sequencer
        .append_all(vec![draft("x"), odd, draft("y")])
        .await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        matches!(&results[1], Err(AppendError::Encode(message)) if message.contains("some-other-key")),
        "{results:?}"
    );
    assert_eq!(h.store.ledger_size().await.unwrap(), 2);
}

/// Groups are all or nothing: a group with a refused member (a secret-named field, a second
/// open case) records none of its events; the other groups of the request commit.
async fn a_group_is_recorded_whole_or_not_at_all(h: Harness) {
    let sequencer = h.sequencer().await;
    for result in append_story(&sequencer, 1).await {
        result.unwrap();
    }
    let mut secret = draft("g0-secret");
    secret.body = secret_body();
    let clash = clashing_finding("g2-clash");
    let results = sequencer
        .append_groups(vec![
            vec![draft("g0-a"), secret],
            vec![draft("g1-a"), draft("g1-b")],
            vec![draft("g2-a"), clash],
            vec![draft("g3-a")],
        ])
        .await;
    assert!(
        results[0]
            .iter()
            .all(|r| matches!(r, Err(AppendError::SecretInEvent { .. }))),
        "{results:?}"
    );
    assert!(results[1].iter().all(Result::is_ok), "{results:?}");
    assert!(
        results[2]
            .iter()
            .all(|r| matches!(r, Err(AppendError::Conflict(_)))),
        "{results:?}"
    );
    assert!(results[3].iter().all(Result::is_ok), "{results:?}");
    for absent in ["g0-a", "g0-secret", "g2-a", "g2-clash"] {
        assert!(
            h.store
                .entry_by_idempotency_key(absent)
                .await
                .unwrap()
                .is_none(),
            "{absent} was recorded"
        );
    }
    assert_eq!(h.store.ledger_size().await.unwrap(), 3 + 3);
    h.verify().await.unwrap();
}

async fn restart_continues_the_chain_and_refuses_a_foreign_key(h: Harness) {
    {
        let sequencer = h.sequencer().await;
        append_story(&sequencer, 1).await;
    }
    let sequencer = h.sequencer().await;
    let next = sequencer.append(draft("after-restart")).await.unwrap();
    assert_eq!(next.seq, 3);
    h.verify().await.unwrap();

    let (foreign, _) = keys(99);
    let err = Sequencer::start(
        h.store.clone(),
        foreign,
        h.clock.clone(),
        SequencerConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AppendError::Untrusted(_)), "{err:?}");
}

async fn projections_evidence_and_rebuild_agree(h: Harness) {
    let sequencer = h.sequencer().await;
    for n in 1..=5 {
        for result in append_story(&sequencer, n).await {
            result.unwrap();
        }
    }
    let case = h.store.case(example::case_id(3)).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::AwaitingApproval);
    let raw = br#"{"finding":"raw bytes 3"}"#;
    let evidence = h
        .store
        .evidence(&Sha256Digest::of(raw))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(evidence.bytes, raw);

    let live = h.store.projection_dump().await.unwrap();
    assert_eq!(
        (live.identities.len(), live.cases.len(), live.findings.len()),
        (5, 5, 5)
    );
    assert!(rebuild::check(&*h.store).await.unwrap().is_empty());
    let report = rebuild::rebuild(&*h.store).await.unwrap();
    assert_eq!(report.entries, 15);
    assert_eq!(
        h.store.projection_dump().await.unwrap(),
        live,
        "rebuild differs from live tables"
    );

    h.tamper("UPDATE cases SET state = 'closed'").await;
    let drift = rebuild::check(&*h.store).await.unwrap();
    assert_eq!(drift.len(), 5, "{drift:?}");
    rebuild::rebuild(&*h.store).await.unwrap();
    assert_eq!(h.store.projection_dump().await.unwrap(), live);
}

async fn offline_bundles_verify_and_detect_tampering(h: Harness) {
    let sequencer = h.sequencer().await;
    for n in 1..=3 {
        append_story(&sequencer, n).await;
    }
    let case = example::case_id(2);
    let bundle = audit::export(&*h.store, Selection::Case(case), &h.verifier)
        .await
        .unwrap();
    let report = verify_bundle(&bundle, &h.verifier).unwrap();
    assert_eq!(report.seqs, vec![4, 5]);
    let all = audit::export(&*h.store, Selection::All, &h.verifier)
        .await
        .unwrap();
    assert_eq!(verify_bundle(&all, &h.verifier).unwrap().seqs.len(), 9);

    let mut forged = writ_ledger::Bundle::from_json(&bundle.to_json().unwrap()).unwrap();
    forged.entries[0].leaf[20] ^= 1;
    assert!(verify_bundle(&forged, &h.verifier).is_err());
    let (_, other) = keys(42);
    assert!(verify_bundle(&bundle, &other).is_err());
    assert!(matches!(
        audit::export(&*h.store, Selection::Case(CaseId(Uuid::nil())), &h.verifier).await,
        Err(audit::AuditError::UnknownCase(_))
    ));
}

async fn populated(h: &Harness) {
    let sequencer = h.sequencer().await;
    for i in 0..10 {
        // Separate appends: one checkpoint each, so a root mismatch pins a single entry.
        sequencer.append(draft(&format!("k{i}"))).await.unwrap();
    }
    h.verify().await.unwrap();
}

async fn edited_leaf_is_named(h: Harness) {
    populated(&h).await;
    h.tamper("UPDATE ledger_entries SET leaf = leaf || leaf WHERE seq = 6")
        .await;
    let failure = h.verify().await.unwrap_err();
    assert_eq!(
        (failure.seq, failure.reason),
        (Some(6), FailureReason::LeafHashMismatch)
    );
}

async fn edited_leaf_with_recomputed_hash_breaks_the_checkpoint(h: Harness) {
    populated(&h).await;
    // Swap the hashes and leaves of two rows: each row is self-consistent, but the leaf's own
    // seq field no longer matches its position.
    h.tamper(
        "UPDATE ledger_entries SET seq = 100 WHERE seq = 3;
         UPDATE ledger_entries SET seq = 3 WHERE seq = 4;
         UPDATE ledger_entries SET seq = 4 WHERE seq = 100;",
    )
    .await;
    let failure = h.verify().await.unwrap_err();
    assert_eq!(failure.seq, Some(3));
    assert!(
        matches!(
            failure.reason,
            FailureReason::SeqFieldMismatch { found: Some(4) }
        ),
        "{failure:?}"
    );
}

async fn deleted_row_is_named(h: Harness) {
    populated(&h).await;
    h.tamper("DELETE FROM ledger_entries WHERE seq = 2").await;
    let failure = h.verify().await.unwrap_err();
    assert_eq!(failure.seq, Some(2));
    assert!(matches!(
        failure.reason,
        FailureReason::SequenceGap {
            expected: 2,
            found: 3
        }
    ));
}

async fn deleted_tail_is_detected(h: Harness) {
    populated(&h).await;
    h.tamper("DELETE FROM ledger_entries WHERE seq = 9; DELETE FROM checkpoints WHERE size = 10")
        .await;
    let failure = h.verify().await.unwrap_err();
    assert_eq!(failure.seq, Some(9));
    assert!(
        matches!(
            failure.reason,
            FailureReason::TruncatedLog {
                claimed: 10,
                found: 9
            }
        ),
        "{failure:?}"
    );
}

async fn forged_checkpoint_is_detected(h: Harness) {
    populated(&h).await;
    let (forger, _) = keys(13);
    let latest = h.store.checkpoints().await.unwrap().pop().unwrap();
    let checkpoint = writ_ledger::Checkpoint::new(
        "writ.test/ledger",
        latest.size,
        writ_ledger::Hash(latest.root),
    );
    let forged = writ_ledger::sign(&checkpoint, &forger).unwrap();
    h.tamper(&format!(
        "UPDATE checkpoints SET note = '{}' WHERE size = {}",
        forged.replace('\'', "''"),
        latest.size
    ))
    .await;
    let failure = h.verify().await.unwrap_err();
    assert!(
        matches!(failure.reason, FailureReason::BadSignature { size: 10 }),
        "{failure:?}"
    );
}

writ_testkit::backend_suite!(
    leaf_format_is_stable,
    group_commit_assigns_contiguous_seqs_and_verifies,
    idempotency_key_returns_the_original_entry,
    secrets_never_enter_the_ledger,
    a_failing_draft_does_not_take_the_batch_down,
    a_finding_under_another_key_is_refused,
    a_group_is_recorded_whole_or_not_at_all,
    restart_continues_the_chain_and_refuses_a_foreign_key,
    projections_evidence_and_rebuild_agree,
    offline_bundles_verify_and_detect_tampering,
    edited_leaf_is_named,
    edited_leaf_with_recomputed_hash_breaks_the_checkpoint,
    deleted_row_is_named,
    deleted_tail_is_detected,
    forged_checkpoint_is_detected,
);

/// Two writ replicas append to one PostgreSQL at once: one gap-free chain, every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_share_one_chain() {
    let h = harness(TestDb::postgres().unwrap()).await;
    let replica_a = h.sequencer().await;
    let second_store = writ_store::open(&h.url).await.unwrap();
    let replica_b = Sequencer::start(
        second_store,
        h.signer.clone(),
        h.clock.clone(),
        SequencerConfig::default(),
    )
    .await
    .unwrap();
    let a = tokio::spawn(async move {
        let mut results = Vec::new();
        for i in 0..100 {
            results.push(replica_a.append(draft(&format!("a{i}"))).await);
        }
        results
    });
    let b = tokio::spawn(async move {
        let mut results = Vec::new();
        for i in 0..100 {
            results.push(replica_b.append(draft(&format!("b{i}"))).await);
        }
        results
    });
    let mut seqs: Vec<u64> = a
        .await
        .unwrap()
        .into_iter()
        .chain(b.await.unwrap())
        .map(|r| r.unwrap().seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..200).collect::<Vec<_>>());
    assert_eq!(h.verify().await.unwrap().entries, 200);
}

/// A writer with another key appends behind a running replica's back (entries and a
/// checkpoint signed with its own key): when the replica next commits, it reads those entries,
/// finds their checkpoint does not verify with its key, and refuses to sign over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_refuses_entries_another_key_signed() {
    let h = harness(TestDb::postgres().unwrap()).await;
    let replica = h.sequencer().await;
    replica.append(draft("first")).await.unwrap();
    // The intruder's commit: one more entry, and a checkpoint over the whole tree signed with
    // another key.
    let (intruder_key, _) = keys(99);
    let mut tree = writ_ledger::TreeBuilder::new();
    for row in h.store.entries(0, 100).await.unwrap() {
        tree.push(writ_ledger::Hash(row.leaf_hash));
    }
    let leaf = writ_ledger::encode_leaf(&serde_json::json!({
        "actor": "intruder", "body": {}, "idempotency_key": "intruder", "kind": "ownership_imported",
        "seq": tree.size(), "time": "2026-12-07T00:00:00Z"
    }))
    .unwrap();
    let hash = writ_ledger::leaf_hash(&leaf);
    let seq = tree.size();
    tree.push(hash);
    let note = writ_ledger::sign(
        &writ_ledger::Checkpoint::new("writ.test/ledger", tree.size(), tree.root()),
        &intruder_key,
    )
    .unwrap();
    h.store
        .commit(writ_store::CommitBatch {
            entries: vec![writ_store::LedgerRow {
                seq,
                time: jiff::Timestamp::from_second(1_796_601_600).unwrap(),
                case_id: None,
                kind: writ_core::event::EventKind::OwnershipImported,
                actor: "intruder".into(),
                idempotency_key: "intruder".into(),
                leaf,
                leaf_hash: hash.0,
            }],
            checkpoint: Some(writ_store::CheckpointRow {
                size: tree.size(),
                root: tree.root().0,
                note,
                time: jiff::Timestamp::from_second(1_796_601_600).unwrap(),
            }),
            ..writ_store::CommitBatch::default()
        })
        .await
        .unwrap();
    let refused = replica.append(draft("second")).await;
    assert!(
        matches!(&refused, Err(AppendError::Untrusted(detail)) if detail.contains("does not verify with this signing key")),
        "{refused:?}"
    );
    assert_eq!(
        h.store.ledger_size().await.unwrap(),
        2,
        "nothing signed over it"
    );
}

/// Fail closed: with the database gone, appends fail and nothing is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_fail_closed_when_the_database_is_gone() {
    let mut h = harness(TestDb::postgres().unwrap()).await;
    let sequencer = h.sequencer().await;
    sequencer.append(draft("before")).await.unwrap();
    drop(h.db.take_cluster());
    let err = sequencer.append(draft("after")).await.unwrap_err();
    assert!(matches!(err, AppendError::Storage(_)), "{err:?}");
}
