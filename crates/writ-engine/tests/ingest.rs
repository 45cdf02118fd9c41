//! The ingest pipeline over a real store and the shipped demo policy bundle: identity
//! resolution, the source-of-truth gate, deduplication, idempotency and policy tiers. Every case
//! runs on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use uuid::Uuid;
use writ_core::case::CaseState;
use writ_core::clock::SequentialIds;
use writ_core::decision::Tier;
use writ_core::event::{EventBody, IdentitySynced};
use writ_core::finding::{Observation, Severity, SourceFormat, SubjectRef, Trust};
use writ_core::identity::{Criticality, Identity, IdentityKind};
use writ_core::ids::IdentityId;
use writ_core::{ManualClock, Sha256Digest};
use writ_engine::ingest::{Ingestor, Submission};
use writ_engine::sources::Source;
use writ_engine::{Draft, Engine, Sequencer, rebuild};
use writ_ledger::generate_key;
use writ_policy::{Evaluation, PolicyBundle};
use writ_store::{Store, StoreError};
use writ_testkit::TestDb;

struct Harness {
    store: Arc<dyn Store>,
    sequencer: Sequencer,
    clock: Arc<ManualClock>,
    ingestor: Ingestor,
    policy: Arc<PolicyBundle>,
    _db: TestDb,
}

const NOW: i64 = 1_800_000_000;

async fn harness(db: TestDb) -> Harness {
    let store = writ_store::open(&db.url).await.unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_second(NOW).unwrap()));
    let (signer, _) = generate_key("writ.test/ledger", [1; 32]).unwrap();
    let policy = Arc::new(
        PolicyBundle::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo"))
            .unwrap(),
    );
    let engine = Engine::builder(store.clone(), signer)
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::starting_at(1)))
        .policy(policy.clone())
        .start()
        .await
        .unwrap();
    let h = Harness {
        store,
        sequencer: engine.sequencer.clone(),
        clock,
        ingestor: engine.ingestor().unwrap().clone(),
        policy,
        _db: db,
    };
    h.seed_inventory().await;
    h
}

fn identity(n: u128, system: &str, external_id: &str, kind: IdentityKind) -> Identity {
    Identity {
        id: IdentityId(Uuid::from_u128(n)),
        system: system.into(),
        external_id: external_id.into(),
        kind,
        owner_team: Some("payments".into()),
        criticality: Criticality::High,
        privileged: false,
        tags: vec![],
        last_used_at: None,
        reconciled_at: Some(Timestamp::from_second(NOW - 600).unwrap()),
    }
}

impl Harness {
    async fn seed_inventory(&self) {
        let mut unowned = identity(
            3,
            "aws:000000000000",
            "orphan/AccessKey1",
            IdentityKind::ApiKey,
        );
        unowned.owner_team = None;
        let mut critical = identity(5, "stripe:live", "rk_live_payments", IdentityKind::Token);
        critical.criticality = Criticality::BusinessCritical;
        for identity in [
            identity(
                1,
                "aws:000000000000",
                "ci-deployer/AccessKey1",
                IdentityKind::ApiKey,
            ),
            identity(2, "github:acme", "ghp_deploy_bot", IdentityKind::Token),
            unowned,
            critical,
        ] {
            self.sequencer
                .append(Draft::new(
                    None,
                    "sync:test",
                    format!("sync:{}", identity.id),
                    EventBody::IdentitySynced(IdentitySynced {
                        identity,
                        object_kind: None,
                        reason: None,
                    }),
                ))
                .await
                .unwrap();
        }
    }
}

fn observation(
    system: &str,
    external_id: &str,
    finding_type: &str,
    confidence_bp: u16,
) -> Observation {
    Observation {
        status: writ_core::finding::FindingStatus::Fail,
        format: SourceFormat::Native,
        finding_type: finding_type.into(),
        severity: Severity::High,
        confidence_bp,
        subject: SubjectRef {
            system: system.into(),
            external_id: external_id.into(),
            kind_hint: None,
        },
        observed_at: Some(Timestamp::from_second(NOW - 60).unwrap()),
        title: format!("{finding_type} on {external_id}"),
        source_key: None,
        controls: vec!["NHI-01".into()],
        details: serde_json::Value::Null,
    }
}

fn submit(observation: Observation, key: &str) -> Submission {
    let evidence =
        serde_json::to_vec(&json!({"raw": key, "subject": observation.subject.external_id}))
            .unwrap();
    Submission {
        observation,
        evidence,
        redacted_from: None,
        idempotency_key: Some(key.into()),
    }
}

/// A finding that ci-deployer's first key is unused, with idempotency key `key`.
fn unused_key_finding(key: &str) -> Submission {
    submit(
        observation(
            "aws:000000000000",
            "ci-deployer/AccessKey1",
            "iam_user_accesskey_unused",
            10_000,
        ),
        key,
    )
}

fn prowler() -> Source {
    Source {
        name: "prowler".into(),
        trust: Trust::High,
    }
}

async fn unused_key_needs_owner_approval(h: Harness) {
    let sub = submit(
        observation(
            "aws:000000000000",
            "ci-deployer/AccessKey1",
            "iam_user_accesskey_unused",
            10_000,
        ),
        "k1",
    );
    let evidence = sub.evidence.clone();
    let outcome = h.ingestor.ingest(&prowler(), sub).await.unwrap();
    assert_eq!(outcome.case_state, CaseState::AwaitingApproval);
    assert!(!outcome.joined_open_case && !outcome.duplicate);
    let decision = outcome.decision.clone().unwrap();
    assert_eq!(
        decision.tier,
        Tier::Approval {
            count: 1,
            approver_group: "owner_team".into()
        }
    );
    assert_eq!(decision.action, "disable");
    assert_eq!(decision.bundle_hash, h.policy.hash());
    assert_eq!(
        decision.determining_policies,
        vec!["inactive-credential-disable-owner-approval".to_owned()]
    );

    // The story in the ledger: the finding, then the decision with its exact inputs.
    let events = h.store.case_entries(outcome.case_id).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, ["finding_received", "decision_recorded"]);
    let decided = writ_ledger::decode_leaf(&events[1].leaf).unwrap();
    assert_eq!(decided["policy_bundle"], json!(h.policy.hash()));
    let evaluation: Evaluation =
        serde_json::from_value(decided["body"]["evaluation"].clone()).unwrap();
    assert_eq!(
        h.policy.replay(&evaluation).unwrap(),
        decision,
        "replaying the recorded inputs gives the same decision"
    );
    // The finding's bytes are kept exactly.
    let stored = h
        .store
        .evidence(&Sha256Digest::of(&evidence))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.bytes, evidence);
    let case = h.store.case(outcome.case_id).await.unwrap().unwrap();
    assert_eq!(case.identity_id, Some(IdentityId(Uuid::from_u128(1))));
}

async fn incomplete_source_of_truth_goes_to_human_review(h: Harness) {
    let unknown = h
        .ingestor
        .ingest(
            &prowler(),
            submit(
                observation(
                    "aws:000000000000",
                    "ghost/AccessKey1",
                    "iam_user_accesskey_unused",
                    10_000,
                ),
                "u",
            ),
        )
        .await
        .unwrap();
    assert_eq!(unknown.case_state, CaseState::NeedsReview);
    assert_eq!(
        unknown.review_reason.as_deref(),
        Some("source of truth incomplete: identity unknown to the inventory")
    );
    let unowned = h
        .ingestor
        .ingest(
            &prowler(),
            submit(
                observation(
                    "aws:000000000000",
                    "orphan/AccessKey1",
                    "iam_user_accesskey_unused",
                    10_000,
                ),
                "o",
            ),
        )
        .await
        .unwrap();
    assert_eq!(unowned.case_state, CaseState::NeedsReview);
    assert!(unowned.review_reason.unwrap().contains("no owner"));

    // A token that policy would revoke automatically, but whose system is stale: review.
    h.clock.advance(SignedDuration::from_hours(48));
    let stale = h
        .ingestor
        .ingest(
            &prowler(),
            submit(
                observation("github:acme", "ghp_deploy_bot", "token_compromise", 9_900),
                "s",
            ),
        )
        .await
        .unwrap();
    assert_eq!(stale.case_state, CaseState::NeedsReview);
    assert!(
        stale
            .review_reason
            .unwrap()
            .contains("source of truth incomplete")
    );
    assert_ne!(
        stale.decision.unwrap().tier,
        Tier::Auto,
        "policy itself refuses auto on unreconciled identities"
    );
}

async fn policy_tiers_follow_the_demo_bundle(h: Harness) {
    let auto = h
        .ingestor
        .ingest(
            &prowler(),
            submit(
                observation("github:acme", "ghp_deploy_bot", "token_compromise", 9_500),
                "t1",
            ),
        )
        .await
        .unwrap();
    // Policy allows revoking automatically, but a revocation needs to know what to revoke:
    // no job can be queued, so a person takes it (the case says why) rather than the case
    // claiming a remediation that nothing will carry out.
    assert_eq!(auto.decision.unwrap().tier, Tier::Auto);
    assert_eq!(auto.case_state, CaseState::NeedsReview);
    assert!(
        auto.review_reason
            .as_deref()
            .is_some_and(|r| r.contains("needs parameters from a person")),
        "{:?}",
        auto.review_reason
    );

    let frozen = h
        .ingestor
        .ingest(
            &prowler(),
            submit(
                observation("stripe:live", "rk_live_payments", "token_compromise", 9_900),
                "t2",
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        frozen.decision.unwrap().tier,
        Tier::CaseOnly { freeze: true }
    );
    assert_eq!(frozen.case_state, CaseState::Frozen);

    let low_trust = Source {
        name: "hobby-scanner".into(),
        trust: Trust::Low,
    };
    let needs_approval = h
        .ingestor
        .ingest(
            &low_trust,
            submit(
                observation("github:acme", "ghp_deploy_bot", "token_compromise", 9_500),
                "t3",
            ),
        )
        .await
        .unwrap();
    // Same subject and type as the first: it joins that case rather than deciding again.
    assert!(needs_approval.joined_open_case);
    assert_eq!(needs_approval.case_id, auto.case_id);

    let unknown_type = h
        .ingestor
        .ingest(
            &prowler(),
            submit(
                observation("github:acme", "ghp_deploy_bot", "weird_new_check", 9_500),
                "t4",
            ),
        )
        .await
        .unwrap();
    assert_eq!(unknown_type.case_state, CaseState::NeedsReview);
    assert!(unknown_type.decision.is_none());
    assert!(
        unknown_type
            .review_reason
            .unwrap()
            .contains("no remediation")
    );
}

async fn duplicates_return_the_original(h: Harness) {
    let first = h
        .ingestor
        .ingest(
            &prowler(),
            submit(
                observation(
                    "aws:000000000000",
                    "ci-deployer/AccessKey1",
                    "iam_user_accesskey_unused",
                    10_000,
                ),
                "same",
            ),
        )
        .await
        .unwrap();
    let size = h.store.ledger_size().await.unwrap();
    let again = h
        .ingestor
        .ingest(
            &prowler(),
            submit(
                observation(
                    "aws:000000000000",
                    "ci-deployer/AccessKey1",
                    "iam_user_accesskey_unused",
                    10_000,
                ),
                "same",
            ),
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.finding_id, again.case_id, again.seq),
        (first.finding_id, first.case_id, first.seq)
    );
    assert_eq!(again.decision, first.decision);
    assert_eq!(
        h.store.ledger_size().await.unwrap(),
        size,
        "a duplicate records nothing"
    );
    // The same key from another source is another finding.
    let other = Source {
        name: "other".into(),
        trust: Trust::Medium,
    };
    let theirs = h
        .ingestor
        .ingest(
            &other,
            submit(
                observation(
                    "aws:000000000000",
                    "ci-deployer/AccessKey1",
                    "iam_user_accesskey_unused",
                    10_000,
                ),
                "same",
            ),
        )
        .await
        .unwrap();
    assert!(!theirs.duplicate && theirs.joined_open_case);
}

/// Many findings about one subject at once open exactly one case.
async fn concurrent_findings_open_one_case(h: Harness) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let ingestor = h.ingestor.clone();
        tasks.push(tokio::spawn(async move {
            ingestor
                .ingest(
                    &prowler(),
                    submit(
                        observation(
                            "aws:000000000000",
                            "ci-deployer/AccessKey1",
                            "iam_user_accesskey_unused",
                            10_000,
                        ),
                        &format!("c{i}"),
                    ),
                )
                .await
                .unwrap()
        }));
    }
    let mut cases = Vec::new();
    for task in tasks {
        cases.push(task.await.unwrap().case_id);
    }
    cases.dedup();
    assert_eq!(cases.len(), 1, "{cases:?}");
    let dump = h.store.projection_dump().await.unwrap();
    assert_eq!(dump.cases.len(), 1);
    assert_eq!(dump.findings.len(), 40);
    assert!(
        rebuild::check(&*h.store).await.unwrap().is_empty(),
        "projections match the ledger"
    );
}

/// Two batches in the pipeline at once: the second is planned while the first commits, joins
/// the case the first is opening, and records a finding both carry once. A finding carrying a
/// secret-named field is refused whole: none of its events (not even its decision) is recorded.
async fn pipelined_batches_see_each_other(h: Harness) {
    let mut poisoned = submit(
        observation(
            "aws:000000000000",
            "svc-etl/AccessKey1",
            "iam_user_accesskey_unused",
            10_000,
        ),
        "poisoned",
    );
    poisoned.observation.details = json!({"password": "hunter2"});
    let first = vec![
        unused_key_finding("p1"),
        poisoned,
        unused_key_finding("shared"),
    ];
    let second = vec![unused_key_finding("p2"), unused_key_finding("shared")];
    let source = prowler();
    let (a, b) = tokio::join!(
        h.ingestor.ingest_batch(&source, first),
        h.ingestor.ingest_batch(&source, second)
    );
    assert!(
        matches!(
            &a[1],
            Err(writ_engine::ingest::IngestError::Append(
                writ_engine::AppendError::SecretInEvent { .. }
            ))
        ),
        "the secret-carrying finding is refused: {:?}",
        a[1]
    );
    let ok: Vec<_> = [&a[0], &a[2], &b[0], &b[1]]
        .into_iter()
        .map(|r| r.as_ref().unwrap())
        .collect();
    let case = ok[0].case_id;
    assert!(ok.iter().all(|o| o.case_id == case), "{ok:?}");
    assert_eq!(
        ok.iter().filter(|o| !o.duplicate).count(),
        3,
        "the shared finding is recorded once: {ok:?}"
    );
    let dump = h.store.projection_dump().await.unwrap();
    assert_eq!(dump.cases.len(), 1);
    assert_eq!(dump.findings.len(), 3);
    assert!(rebuild::check(&*h.store).await.unwrap().is_empty());
}

/// Four batches handed over without waiting for each other: each later one sees the cases
/// and keys of every one still committing, so all join the one case the first opens, and a
/// finding three of them carry is recorded once (the others are told it is a duplicate).
async fn many_batches_in_flight_see_all_before_them(h: Harness) {
    let source = prowler();
    let batch = |n: u32| {
        vec![
            unused_key_finding(&format!("own-{n}")),
            unused_key_finding("shared"),
        ]
    };
    let (a, b, c, d) = tokio::join!(
        h.ingestor.ingest_batch(&source, batch(1)),
        h.ingestor.ingest_batch(&source, batch(2)),
        h.ingestor.ingest_batch(&source, batch(3)),
        h.ingestor
            .ingest_batch(&source, vec![unused_key_finding("own-4")]),
    );
    let all: Vec<_> = [a, b, c, d]
        .into_iter()
        .flatten()
        .map(|r| r.unwrap())
        .collect();
    let case = all[0].case_id;
    assert!(all.iter().all(|o| o.case_id == case), "{all:?}");
    assert_eq!(
        all.iter().filter(|o| !o.duplicate).count(),
        5,
        "four own findings and the shared one once: {all:?}"
    );
    let dump = h.store.projection_dump().await.unwrap();
    assert_eq!(dump.cases.len(), 1);
    assert_eq!(dump.findings.len(), 5);
    assert!(rebuild::check(&*h.store).await.unwrap().is_empty());
}

/// A caller that stops waiting (a client hung up) at any point of its batch's way through
/// the pipeline leaves nothing behind for the next batches to wait on: the finding it carried
/// that was refused (a secret-named field) comes again clean and is recorded, and the store
/// rebuilds to what the ledger says.
async fn a_batch_given_up_on_holds_nothing_up(h: Harness) {
    use std::time::Duration;
    let source = prowler();
    // Every 250 microseconds up to 40 ms: some give up while planning, some once handed over.
    for micros in (0u64..160).map(|step| step * 250) {
        let mut poisoned = unused_key_finding("shared");
        poisoned.observation.details = json!({"password": "hunter2"});
        let batch = vec![unused_key_finding(&format!("given-up-{micros}")), poisoned];
        let _ = tokio::time::timeout(
            Duration::from_micros(micros),
            h.ingestor.ingest_batch(&source, batch),
        )
        .await;
    }
    let results = tokio::time::timeout(
        Duration::from_secs(30),
        h.ingestor.ingest_batch(
            &source,
            vec![unused_key_finding("shared"), unused_key_finding("after")],
        ),
    )
    .await
    .expect("a later batch is not held up");
    for result in &results {
        assert!(result.is_ok(), "{results:?}");
    }
    assert!(rebuild::check(&*h.store).await.unwrap().is_empty());
}

/// Group commit across requests: 60 concurrent requests from two sources, most with one
/// finding, one with three, several about the same identity and one carrying a secret-named
/// field, are committed in shared batches. Each request gets its own results in order; the bad
/// finding alone is refused; every other finding is recorded once, in the right case.
async fn concurrent_requests_commit_together(h: Harness) {
    use writ_engine::group_commit::{GroupCommit, GroupLimits};
    let group = GroupCommit::new(
        h.ingestor.clone(),
        GroupLimits {
            max_findings: 16,
            batches_in_flight: 2,
            linger: std::time::Duration::from_millis(2),
        },
    );
    let mut tasks = Vec::new();
    for i in 0..60u32 {
        let group = group.clone();
        let source = if i % 2 == 0 {
            prowler()
        } else {
            source("wiz", Trust::Medium)
        };
        let mut submissions = vec![if i % 3 == 0 {
            unused_key_finding(&format!("shared-identity-{i}"))
        } else {
            submit(
                observation(
                    "aws:000000000000",
                    &format!("svc-{i}/AccessKey1"),
                    "iam_user_accesskey_unused",
                    10_000,
                ),
                &format!("own-{i}"),
            )
        }];
        if i == 7 {
            submissions[0].observation.details = json!({"password": "hunter2"});
        }
        if i == 10 {
            for n in 0..2 {
                submissions.push(submit(
                    observation(
                        "aws:000000000000",
                        &format!("svc-10-{n}/AccessKey1"),
                        "iam_user_accesskey_unused",
                        10_000,
                    ),
                    &format!("own-10-{n}"),
                ));
            }
        }
        let subjects: Vec<String> = submissions
            .iter()
            .map(|s| s.observation.subject.external_id.clone())
            .collect();
        tasks.push(tokio::spawn(async move {
            (i, subjects, group.ingest(source, submissions).await)
        }));
    }
    let mut recorded = 0;
    for task in tasks {
        let (i, subjects, results) = task.await.unwrap();
        assert_eq!(results.len(), subjects.len(), "request {i}");
        for (subject, result) in subjects.iter().zip(results) {
            if i == 7 {
                assert!(
                    matches!(
                        result,
                        Err(writ_engine::ingest::IngestError::Append(
                            writ_engine::AppendError::SecretInEvent { .. }
                        ))
                    ),
                    "request 7 alone is refused: {result:?}"
                );
                continue;
            }
            let outcome = result.unwrap_or_else(|err| panic!("request {i}: {err}"));
            let case = h.store.case(outcome.case_id).await.unwrap().unwrap();
            assert!(
                case.subject.ends_with(&format!("/{subject}")),
                "request {i}: {} is not about {subject}",
                case.subject
            );
            recorded += 1;
        }
    }
    assert_eq!(recorded, 61);
    let dump = h.store.projection_dump().await.unwrap();
    assert_eq!(dump.findings.len(), 61, "each finding once");
    assert!(rebuild::check(&*h.store).await.unwrap().is_empty());
}

/// A store that fails its next `commit` when armed, and otherwise is the real one.
#[derive(Debug)]
struct FailNextCommit {
    inner: Arc<dyn Store>,
    armed: std::sync::atomic::AtomicBool,
}

/// Delegates every listed method of role trait `$role` to `self.inner`. (One macro per impl,
/// so that `async_trait` sees the expanded methods.)
macro_rules! delegate {
    ($role:path { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )* } $($extra:item)*) => {
        #[async_trait::async_trait]
        impl $role for FailNextCommit {
            $( async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                self.inner.$name($($arg),*).await
            } )*
            $($extra)*
        }
    };
}

delegate! {
    writ_store::LedgerStore {
        fn ledger_size(&self) -> u64;
        fn entry_by_idempotency_key(&self, key: &str) -> Option<writ_store::LedgerRow>;
        fn entries_by_idempotency_keys(&self, keys: &[String]) -> Vec<writ_store::LedgerRow>;
        fn latest_entry_of_kind(&self, kind: writ_core::event::EventKind) -> Option<writ_store::LedgerRow>;
        fn campaigns_started(&self, limit: u32) -> Vec<writ_store::LedgerRow>;
        fn entries(&self, from: u64, limit: u32) -> Vec<writ_store::LedgerRow>;
        fn entries_at(&self, seqs: &[u64]) -> Vec<writ_store::LedgerRow>;
        fn leaves(&self, from: u64, limit: u32) -> Vec<(u64, Vec<u8>, [u8; 32])>;
        fn case_entries(&self, case: writ_core::ids::CaseId) -> Vec<writ_store::LedgerRow>;
        fn checkpoints(&self) -> Vec<writ_store::CheckpointRow>;
        fn latest_checkpoint(&self) -> Option<writ_store::CheckpointRow>;
        fn checkpoint_at(&self, size: u64) -> Option<writ_store::CheckpointRow>;
        fn put_cosignature(&self, row: &writ_store::CosignatureRow) -> ();
        fn cosignatures(&self) -> Vec<writ_store::CosignatureRow>;
        fn evidence(&self, digest: &Sha256Digest) -> Option<writ_store::EvidenceRow>;
        fn evidence_page(&self, after: Option<&str>, limit: u32) -> Vec<(String, Vec<u8>)>;
        fn evidence_meta(&self, digests: &[Sha256Digest]) -> Vec<(String, String, jiff::Timestamp)>;
    }
    async fn commit(&self, batch: writ_store::CommitBatch) -> Result<(), StoreError> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Corrupt {
                table: "ledger_entries",
                detail: "injected: the database failed the commit".into(),
            });
        }
        self.inner.commit(batch).await
    }
}

delegate! {
    writ_store::ProjectionStore {
        fn identities_by_external_ids(&self, subjects: &[(String, String)]) -> Vec<Identity>;
        fn open_cases_for(&self, keys: &[(String, String)]) -> Vec<writ_core::case::Case>;
        fn open_case_heads(&self, keys: &[(String, String)]) -> Vec<writ_store::CaseHead>;
        fn open_case_heads_under(&self, keys: &[(String, String)]) -> Vec<writ_store::CaseHead>;
        fn last_closed_cases_for(&self, keys: &[(String, String)]) -> Vec<writ_store::CaseHead>;
        fn open_cases_of_identity(&self, identity: IdentityId) -> Vec<writ_store::CaseHead>;
        fn pending_cases_where(&self, by_system: bool, value: &str) -> Vec<writ_store::CaseHead>;
        fn unresolved_cases_for(&self, subjects: &[String]) -> Vec<writ_store::CaseHead>;
        fn identity(&self, id: IdentityId) -> Option<Identity>;
        fn identity_by_external_id(&self, system: &str, external_id: &str) -> Option<Identity>;
        fn identities(&self) -> Vec<Identity>;
        fn case(&self, id: writ_core::ids::CaseId) -> Option<writ_core::case::Case>;
        fn case_view(&self, id: writ_core::ids::CaseId) -> Option<writ_store::CaseView>;
        fn cases(&self, filter: &writ_store::CaseFilter) -> Vec<writ_core::case::Case>;
        fn case_sources(&self, case: writ_core::ids::CaseId) -> Vec<String>;
        fn exceptions(&self, filter: &writ_store::ExceptionFilter) -> Vec<writ_store::ExceptionView>;
        fn due_deadlines(&self, now: jiff::Timestamp, limit: u32) -> Vec<writ_store::DueDeadline>;
        fn live_grants(&self, limit: u32) -> Vec<(writ_core::ids::CaseId, String, u64)>;
        fn systems(&self) -> Vec<writ_store::SystemStatus>;
        fn claim_sync_round(&self, system: &str, round: i64, holder: &str) -> bool;
        fn finding_types_about(&self, system: &str, external_id: &str, after_seq: u64) -> Vec<String>;
        fn unreviewed_bypasses_of(&self, principal: &str) -> Vec<writ_core::ids::CaseId>;
        fn principal(&self, name: &str) -> Option<writ_store::PrincipalView>;
        fn principals(&self) -> Vec<writ_store::PrincipalView>;
        fn principal_count(&self) -> u64;
        fn token_by_digest(&self, digest: &writ_core::Sha256Digest) -> Option<writ_store::TokenView>;
        fn tokens_of(&self, name: &str) -> Vec<writ_store::TokenView>;
    }
}

delegate! {
    writ_store::JobQueue {
        fn claim_jobs(&self, holder: &str, now: Timestamp, until: Timestamp, limit: u32) -> Vec<writ_store::JobView>;
        fn renew_lease(&self, job: writ_core::ids::JobId, holder: &str, until: Timestamp) -> bool;
        fn release_lease(&self, job: writ_core::ids::JobId, holder: &str) -> ();
        fn claim_outbox(&self, holder: &str, now: Timestamp, until: Timestamp, limit: u32) -> Vec<writ_store::OutboxRow>;
        fn finish_delivery(&self, id: &str, holder: &str, attempt: writ_store::DeliveryAttempt, next: writ_store::DeliveryNext) -> ();
        fn outbox(&self, limit: u32) -> Vec<(writ_store::OutboxRow, String)>;
        fn queue_depths(&self) -> writ_store::QueueDepths;
        fn jobs_applied_since(&self, system: &str, since: Timestamp) -> Vec<writ_core::job::Job>;
        fn job_view(&self, id: writ_core::ids::JobId) -> Option<writ_store::JobView>;
        fn jobs_for_case(&self, case: writ_core::ids::CaseId) -> Vec<writ_core::job::Job>;
    }
}

delegate! {
    writ_store::AdminStore {
        fn ping(&self) -> ();
        fn replace_projections(&self, effects: Vec<writ_store::Effect>) -> ();
        fn projection_dump(&self) -> writ_store::ProjectionDump;
    }
    fn backend(&self) -> writ_store::Backend {
        self.inner.backend()
    }
}

/// The batch in flight fails to commit while the next one, planned meanwhile, has joined the
/// case it was opening: the next batch is planned again from the store and opens the case
/// itself, rather than recording findings in a case that does not exist. And the failed
/// finding's events are recorded all or nothing: no decision without its finding.
async fn a_failed_batch_in_flight_is_planned_around(h: Harness) {
    let flaky = Arc::new(FailNextCommit {
        inner: h.store.clone(),
        armed: std::sync::atomic::AtomicBool::new(false),
    });
    let (signer, _) = generate_key("writ.test/ledger", [1; 32]).unwrap();
    let engine = Engine::builder(flaky.clone(), signer)
        .clock(h.clock.clone())
        .ids(Arc::new(SequentialIds::starting_at(1_000)))
        .policy(h.policy.clone())
        .start()
        .await
        .unwrap();
    let ingestor = engine.ingestor().unwrap().clone();
    flaky.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let source = prowler();
    let (a, b) = tokio::join!(
        ingestor.ingest_batch(&source, vec![unused_key_finding("first")]),
        ingestor.ingest_batch(&source, vec![unused_key_finding("second")])
    );
    assert!(a[0].is_err(), "the first batch's commit failed: {a:?}");
    let second = b[0].as_ref().unwrap();
    assert!(!second.joined_open_case, "{second:?}");
    let case = h.store.case(second.case_id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::AwaitingApproval);
    let dump = h.store.projection_dump().await.unwrap();
    assert_eq!(dump.cases.len(), 1);
    assert_eq!(dump.findings.len(), 1);
    let first_recorded = h
        .store
        .entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .any(|e| e.idempotency_key.ends_with(":first"));
    assert!(
        !first_recorded,
        "nothing of the failed finding is in the ledger"
    );
    assert!(rebuild::check(&*h.store).await.unwrap().is_empty());
}

fn source(name: &str, trust: Trust) -> Source {
    Source {
        name: name.into(),
        trust,
    }
}

async fn kinds_of(h: &Harness, case: writ_core::ids::CaseId) -> Vec<&'static str> {
    h.store
        .case_entries(case)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .collect()
}

/// Seed G2: a weak finding opens the case; a stronger one decides it again and its decision
/// is the one applied; a weaker one after that only joins.
async fn a_weak_finding_cannot_block_a_strong_one(h: Harness) {
    let token = |confidence, key| {
        submit(
            observation(
                "aws:000000000000",
                "ci-deployer/AccessKey1",
                "credential_compromise",
                confidence,
            ),
            key,
        )
    };
    let weak = h
        .ingestor
        .ingest(&source("hunch", Trust::Low), token(3_000, "weak"))
        .await
        .unwrap();
    assert_eq!(weak.case_state, CaseState::AwaitingApproval);
    let strong = h
        .ingestor
        .ingest(&prowler(), token(9_900, "strong"))
        .await
        .unwrap();
    assert_eq!(strong.case_id, weak.case_id);
    assert!(strong.joined_open_case && strong.redecided, "{strong:?}");
    assert_eq!(strong.decision.as_ref().unwrap().tier, Tier::Auto);
    assert_eq!(strong.case_state, CaseState::Remediating);
    let view = h.store.case_view(weak.case_id).await.unwrap().unwrap();
    assert_eq!(view.case.state, CaseState::Remediating);
    assert!(view.job.is_some(), "the strong decision queued the change");
    // Both decisions stay in the case; the later one is in force.
    assert_eq!(
        kinds_of(&h, weak.case_id).await,
        [
            "finding_received",
            "decision_recorded",
            "finding_received",
            "decision_recorded",
            "change_requested"
        ]
    );
    let later = h
        .ingestor
        .ingest(&source("hunch", Trust::Low), token(9_990, "later"))
        .await
        .unwrap();
    assert!(later.joined_open_case && !later.redecided, "{later:?}");
    assert!(rebuild::check(&*h.store).await.unwrap().is_empty());
}

/// Seed 4: a compromise signal on a business-critical identity only opens a case, and freezes
/// the approvals already pending on that identity.
async fn a_freeze_decision_freezes_pending_work_on_the_identity(h: Harness) {
    let leak = h
        .ingestor
        .ingest(
            &prowler(),
            submit(
                observation("stripe:live", "rk_live_payments", "leaked_secret", 9_000),
                "leak",
            ),
        )
        .await
        .unwrap();
    assert_eq!(leak.case_state, CaseState::AwaitingApproval);
    let compromise = h
        .ingestor
        .ingest(
            &prowler(),
            submit(
                observation("stripe:live", "rk_live_payments", "token_compromise", 9_900),
                "compromise",
            ),
        )
        .await
        .unwrap();
    assert_eq!(compromise.case_state, CaseState::Frozen);
    let frozen = h.store.case(leak.case_id).await.unwrap().unwrap();
    assert_eq!(frozen.state, CaseState::Frozen);
    let kinds = kinds_of(&h, leak.case_id).await;
    assert_eq!(kinds.last(), Some(&"case_frozen"));
    assert!(rebuild::check(&*h.store).await.unwrap().is_empty());
}

/// A later scan reporting that the check passes closes the compliance side of the case; the
/// same problem found again opens a new case that names the closed one.
async fn a_pass_closes_and_a_new_failure_reopens(h: Harness) {
    let failed = h
        .ingestor
        .ingest(&prowler(), unused_key_finding("fail-1"))
        .await
        .unwrap();
    let mut pass = unused_key_finding("pass-1");
    pass.observation.status = writ_core::finding::FindingStatus::Pass;
    let passed = h.ingestor.ingest(&prowler(), pass).await.unwrap();
    assert_eq!(passed.case_id, failed.case_id);
    assert!(passed.closed_case, "{passed:?}");
    let closed = h.store.case(failed.case_id).await.unwrap().unwrap();
    assert_eq!(closed.state, CaseState::Closed);
    assert!(closed.compliance_closed);
    assert_eq!(
        kinds_of(&h, failed.case_id).await[2..],
        ["finding_received", "case_closed"]
    );
    // A pass about nothing open records nothing.
    let mut again = unused_key_finding("pass-2");
    again.observation.status = writ_core::finding::FindingStatus::Pass;
    assert!(matches!(
        h.ingestor.ingest(&prowler(), again).await,
        Err(writ_engine::ingest::IngestError::NothingToClose)
    ));
    let reopened = h
        .ingestor
        .ingest(&prowler(), unused_key_finding("fail-2"))
        .await
        .unwrap();
    assert_ne!(reopened.case_id, failed.case_id);
    assert_eq!(reopened.reopens, Some(failed.case_id));
    assert_eq!(reopened.case_state, CaseState::AwaitingApproval);
    // A pass about the user (Prowler reports a key check passing for the user) closes the
    // check's cases about the user's keys; the pass is recorded once, outside any case.
    let mut user_pass = submit(
        observation(
            "aws:000000000000",
            "ci-deployer",
            "iam_user_accesskey_unused",
            10_000,
        ),
        "user-pass",
    );
    user_pass.observation.status = writ_core::finding::FindingStatus::Pass;
    let closed_under = h
        .ingestor
        .ingest(&prowler(), user_pass.clone())
        .await
        .unwrap();
    assert!(closed_under.closed_case, "{closed_under:?}");
    assert_eq!(closed_under.case_id, reopened.case_id);
    let case = h.store.case(reopened.case_id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::Closed);
    // Sent again: nothing more to record.
    assert!(matches!(
        h.ingestor.ingest(&prowler(), user_pass).await,
        Err(writ_engine::ingest::IngestError::NothingToClose)
    ));
    assert!(rebuild::check(&*h.store).await.unwrap().is_empty());
}

/// A case opened before its identity was known is resolved and decided when a sync brings the
/// identity.
async fn a_sync_decides_cases_opened_before_their_identity_was_known(h: Harness) {
    let early = h
        .ingestor
        .ingest(
            &prowler(),
            submit(
                observation(
                    "aws:000000000000",
                    "new-bot/AccessKey1",
                    "iam_user_accesskey_unused",
                    10_000,
                ),
                "early",
            ),
        )
        .await
        .unwrap();
    assert_eq!(early.case_state, CaseState::NeedsReview);
    let subject = "aws:000000000000/new-bot/AccessKey1".to_owned();
    // Nothing to resolve while the identity is unknown.
    assert_eq!(
        h.ingestor
            .resolve_cases(std::slice::from_ref(&subject))
            .await
            .unwrap(),
        0
    );
    let identity = identity(
        9,
        "aws:000000000000",
        "new-bot/AccessKey1",
        IdentityKind::ApiKey,
    );
    h.sequencer
        .append(Draft::new(
            None,
            "sync:test",
            "sync:new-bot",
            EventBody::IdentitySynced(IdentitySynced {
                identity: identity.clone(),
                object_kind: None,
                reason: None,
            }),
        ))
        .await
        .unwrap();
    assert_eq!(h.ingestor.resolve_cases(&[subject]).await.unwrap(), 1);
    let case = h.store.case(early.case_id).await.unwrap().unwrap();
    assert_eq!(case.identity_id, Some(identity.id));
    assert_eq!(case.state, CaseState::AwaitingApproval);
    assert!(rebuild::check(&*h.store).await.unwrap().is_empty());
}

/// A freeze reaches what the policy names (`@freeze_scope("system")`): the pending work of
/// every identity in the system of the compromised one.
async fn a_freeze_reaches_what_the_policy_names(h: Harness) {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&demo).unwrap() {
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let text = text.replace(
            "@freeze(\"true\")\n",
            "@freeze(\"true\")\n@freeze_scope(\"system\")\n",
        );
        std::fs::write(dir.path().join(entry.file_name()), text).unwrap();
    }
    let bundle = Arc::new(PolicyBundle::load_dir(dir.path()).unwrap());
    let ingestor = Ingestor::new(
        h.store.clone(),
        h.sequencer.clone(),
        h.clock.clone(),
        Arc::new(SequentialIds::starting_at(5_000)),
        bundle,
        writ_engine::ingest::IngestSettings::default(),
    );
    let mut vault = identity(
        6,
        "aws:000000000000",
        "vault-root/AccessKey1",
        IdentityKind::ApiKey,
    );
    vault.criticality = Criticality::BusinessCritical;
    h.sequencer
        .append(Draft::new(
            None,
            "sync:test",
            "sync:vault-root",
            EventBody::IdentitySynced(IdentitySynced {
                identity: vault,
                object_kind: None,
                reason: None,
            }),
        ))
        .await
        .unwrap();
    let pending = ingestor
        .ingest(&prowler(), unused_key_finding("pending"))
        .await
        .unwrap();
    assert_eq!(pending.case_state, CaseState::AwaitingApproval);
    let elsewhere = ingestor
        .ingest(
            &prowler(),
            submit(
                observation("github:acme", "ghp_deploy_bot", "token_compromise", 3_000),
                "elsewhere",
            ),
        )
        .await
        .unwrap();
    assert_eq!(elsewhere.case_state, CaseState::AwaitingApproval);
    let compromise = ingestor
        .ingest(
            &prowler(),
            submit(
                observation(
                    "aws:000000000000",
                    "vault-root/AccessKey1",
                    "credential_compromise",
                    9_900,
                ),
                "compromise",
            ),
        )
        .await
        .unwrap();
    assert_eq!(compromise.case_state, CaseState::Frozen);
    let same_system = h.store.case(pending.case_id).await.unwrap().unwrap();
    assert_eq!(same_system.state, CaseState::Frozen, "same system: frozen");
    let other_system = h.store.case(elsewhere.case_id).await.unwrap().unwrap();
    assert_eq!(
        other_system.state,
        CaseState::AwaitingApproval,
        "another system"
    );
    assert!(rebuild::check(&*h.store).await.unwrap().is_empty());
}

writ_testkit::backend_suite!(
    a_freeze_reaches_what_the_policy_names,
    a_sync_decides_cases_opened_before_their_identity_was_known,
    a_weak_finding_cannot_block_a_strong_one,
    a_freeze_decision_freezes_pending_work_on_the_identity,
    a_pass_closes_and_a_new_failure_reopens,
    a_failed_batch_in_flight_is_planned_around,
    pipelined_batches_see_each_other,
    many_batches_in_flight_see_all_before_them,
    a_batch_given_up_on_holds_nothing_up,
    unused_key_needs_owner_approval,
    incomplete_source_of_truth_goes_to_human_review,
    policy_tiers_follow_the_demo_bundle,
    duplicates_return_the_original,
    concurrent_findings_open_one_case,
    concurrent_requests_commit_together,
);
