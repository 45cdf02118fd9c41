//! The store suite: every case runs against SQLite and against a real, throwaway PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use jiff::Timestamp;
use uuid::Uuid;
use writ_core::Sha256Digest;
use writ_core::case::{Case, CaseState};
use writ_core::finding::{Finding, Severity};
use writ_core::identity::{Criticality, Identity, IdentityKind};
use writ_core::ids::{CaseId, FindingId, IdentityId};
use writ_store::{
    CaseFilter, CheckpointRow, CommitBatch, Effect, EvidenceRow, Expectation, LedgerRow, Store,
    StoreError,
};
use writ_testkit::{PgCluster, TestDb};

/// A store under test, on the database that [`TestDb`] keeps alive.
struct Harness {
    store: Arc<dyn Store>,
    url: String,
    _db: TestDb,
}

async fn harness(db: TestDb) -> Harness {
    Harness {
        store: writ_store::open(&db.url).await.unwrap(),
        url: db.url.clone(),
        _db: db,
    }
}

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn entry(seq: u64, key: &str, case: Option<CaseId>) -> LedgerRow {
    let leaf = format!("writ.event.v1\n{{\"seq\":{seq}}}").into_bytes();
    LedgerRow {
        seq,
        time: t(seq as i64),
        case_id: case,
        kind: writ_core::event::EventKind::FindingReceived,
        actor: "source:prowler".into(),
        idempotency_key: key.into(),
        leaf_hash: Sha256Digest::of(&leaf).0,
        leaf,
    }
}

fn identity(n: u128, external_id: &str) -> Identity {
    Identity {
        id: IdentityId(uuid(n)),
        system: "aws:000000000000".into(),
        external_id: external_id.into(),
        kind: IdentityKind::ApiKey,
        owner_team: Some("payments".into()),
        criticality: Criticality::BusinessCritical,
        privileged: true,
        tags: vec!["ci".into(), "prod".into()],
        last_used_at: Some(t(-86_400)),
        reconciled_at: Some(t(-60)),
    }
}

fn case(n: u128, subject: &str, state: CaseState) -> Case {
    Case {
        id: CaseId(uuid(n)),
        identity_id: Some(IdentityId(uuid(1))),
        subject: subject.into(),
        finding_type: "iam_user_accesskey_unused".into(),
        state,
        compliance_closed: false,
    }
}

fn finding(n: u128, key: &str, evidence: Sha256Digest) -> Finding {
    Finding {
        id: FindingId(uuid(n)),
        source: "prowler".into(),
        finding_type: "iam_user_accesskey_unused".into(),
        severity: Severity::High,
        confidence_bp: 9_500,
        subject_system: "aws:000000000000".into(),
        subject_external_id: "ci-deployer/AccessKey1".into(),
        observed_at: t(-5),
        evidence,
        idempotency_key: key.into(),
    }
}

async fn migrations_are_idempotent(h: Harness) {
    assert_eq!(h.store.ledger_size().await.unwrap(), 0);
    let again = writ_store::open(&h.url).await.unwrap();
    assert_eq!(again.ledger_size().await.unwrap(), 0);
    again.ping().await.unwrap();
    assert_eq!(again.backend(), h.store.backend());
}

async fn commit_writes_ledger_and_projections_together(h: Harness) {
    let raw = br#"{"finding":"exactly as received"}"#.to_vec();
    let digest = Sha256Digest::of(&raw);
    let case_id = CaseId(uuid(10));
    let batch = CommitBatch {
        entries: vec![
            entry(0, "k0", Some(case_id)),
            entry(1, "finding-1", Some(case_id)),
        ],
        checkpoint: Some(CheckpointRow {
            size: 2,
            root: [7; 32],
            note: "writ.example/ledger\n2\nBwcH\n\n— writ.example/ledger sig\n".into(),
            time: t(2),
        }),
        outbox: Vec::new(),
        effects: vec![
            Effect::PutEvidence(EvidenceRow {
                digest,
                media_type: "application/json".into(),
                bytes: raw.clone(),
                received: t(0),
            }),
            Effect::UpsertIdentity {
                identity: identity(1, "ci-deployer/AccessKey1"),
                seq: 0,
            },
            Effect::UpsertCase {
                decided: false,
                case: case(
                    10,
                    "aws:000000000000/ci-deployer/AccessKey1",
                    CaseState::AwaitingApproval,
                ),
                seq: 0,
            },
            Effect::InsertFinding {
                finding: finding(20, "finding-1", digest),
                case_id: Some(case_id),
                seq: 1,
            },
        ],
        expectations: vec![],
    };
    h.store.commit(batch.clone()).await.unwrap();

    assert_eq!(h.store.ledger_size().await.unwrap(), 2);
    let stored = h.store.entries(0, 10).await.unwrap();
    assert_eq!(stored, batch.entries);
    assert_eq!(h.store.entries(1, 10).await.unwrap(), batch.entries[1..]);
    // The audit's bulk read gives the same rows.
    assert_eq!(
        h.store.scan_page(0, 10).await.unwrap(),
        writ_store::EntryPage::from_rows(&batch.entries)
    );
    assert_eq!(
        h.store.scan_page(1, 1).await.unwrap(),
        writ_store::EntryPage::from_rows(&batch.entries[1..])
    );
    assert_eq!(h.store.case_entries(case_id).await.unwrap(), batch.entries);
    assert_eq!(
        h.store.entry_by_idempotency_key("finding-1").await.unwrap(),
        Some(batch.entries[1].clone())
    );
    assert_eq!(
        h.store.entry_by_idempotency_key("nope").await.unwrap(),
        None
    );
    assert_eq!(
        h.store.checkpoints().await.unwrap(),
        vec![batch.checkpoint.clone().unwrap()]
    );
    assert_eq!(h.store.latest_checkpoint().await.unwrap(), batch.checkpoint);

    let evidence = h.store.evidence(&digest).await.unwrap().unwrap();
    assert_eq!(evidence.bytes, raw, "evidence is stored byte for byte");
    assert_eq!(
        h.store.evidence(&Sha256Digest::of(b"other")).await.unwrap(),
        None
    );

    let stored_identity = h
        .store
        .identity(IdentityId(uuid(1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored_identity, identity(1, "ci-deployer/AccessKey1"));
    assert_eq!(
        h.store
            .identity_by_external_id("aws:000000000000", "ci-deployer/AccessKey1")
            .await
            .unwrap(),
        Some(stored_identity)
    );
    assert_eq!(
        h.store.case(case_id).await.unwrap().unwrap().state,
        CaseState::AwaitingApproval
    );
}

fn job(n: u128, state: writ_core::job::JobState) -> writ_core::job::Job {
    writ_core::job::Job {
        id: writ_core::ids::JobId(uuid(n)),
        case_id: CaseId(uuid(n + 1000)),
        system: "pg:main".into(),
        external_id: format!("role{n}"),
        action: writ_core::change::Action::Disable,
        state,
        attempts: 0,
        next_attempt_at: None,
        dry_run: false,
        last_error: None,
        applied_at: None,
        expires_at: None,
        rotation: None,
    }
}

/// A live lease keeps a job from every other worker; renewing needs the lease; an expired or
/// released lease is free again; finished and not-yet-due jobs are never claimed.
async fn job_leases_exclude_other_workers(h: Harness) {
    use writ_core::job::JobState;
    let mut later = job(3, JobState::Queued);
    later.next_attempt_at = Some(t(100));
    let jobs = [job(1, JobState::Queued), job(2, JobState::Verified), later];
    h.store
        .commit(CommitBatch {
            entries: (0..3).map(|i| entry(i, &format!("j{i}"), None)).collect(),
            effects: jobs
                .iter()
                .zip(0..)
                .map(|(job, seq)| Effect::UpsertJob {
                    intent: false,
                    job: job.clone(),
                    seq,
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids =
        |jobs: Vec<writ_store::JobView>| jobs.into_iter().map(|j| j.job.id).collect::<Vec<_>>();
    let a = h.store.claim_jobs("a", t(10), t(20), 10).await.unwrap();
    assert_eq!(ids(a), vec![jobs[0].id], "only the due, unfinished job");
    assert!(
        h.store
            .claim_jobs("b", t(15), t(25), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!h.store.renew_lease(jobs[0].id, "b", t(30)).await.unwrap());
    assert!(h.store.renew_lease(jobs[0].id, "a", t(30)).await.unwrap());
    assert!(
        h.store
            .claim_jobs("b", t(25), t(35), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Expired: b takes it over, and a's renewal now fails.
    let b = h.store.claim_jobs("b", t(30), t(40), 10).await.unwrap();
    assert_eq!(ids(b), vec![jobs[0].id]);
    assert!(!h.store.renew_lease(jobs[0].id, "a", t(50)).await.unwrap());
    // Released (by its holder only): free at once.
    h.store.release_lease(jobs[0].id, "a").await.unwrap();
    assert!(
        h.store
            .claim_jobs("c", t(31), t(41), 10)
            .await
            .unwrap()
            .is_empty()
    );
    h.store.release_lease(jobs[0].id, "b").await.unwrap();
    let c = h.store.claim_jobs("c", t(100), t(110), 10).await.unwrap();
    assert_eq!(
        ids(c),
        vec![jobs[0].id, jobs[2].id],
        "the held-back job is due now"
    );
}

async fn stale_head_is_refused(h: Harness) {
    h.store
        .commit(CommitBatch {
            entries: vec![entry(0, "a", None)],
            ..Default::default()
        })
        .await
        .unwrap();
    let err = h
        .store
        .commit(CommitBatch {
            entries: vec![entry(0, "b", None)],
            effects: vec![Effect::UpsertIdentity {
                identity: identity(1, "x"),
                seq: 0,
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::HeadMoved {
                batch_start: 0,
                head: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(h.store.ledger_size().await.unwrap(), 1);
    assert_eq!(h.store.identity(IdentityId(uuid(1))).await.unwrap(), None);
}

async fn gap_in_batch_writes_nothing(h: Harness) {
    let err = h
        .store
        .commit(CommitBatch {
            entries: vec![entry(0, "a", None), entry(2, "c", None)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::BatchNotContiguous { seq: 2 }),
        "{err:?}"
    );
    assert_eq!(h.store.ledger_size().await.unwrap(), 0);
    assert!(h.store.entries(0, 10).await.unwrap().is_empty());
}

/// Fail closed: when any part of a batch cannot be written, no state changes.
async fn failed_write_changes_no_state(h: Harness) {
    h.store
        .commit(CommitBatch {
            entries: vec![entry(0, "dup", None)],
            ..Default::default()
        })
        .await
        .unwrap();
    let err = h
        .store
        .commit(CommitBatch {
            entries: vec![entry(1, "fresh", None), entry(2, "dup", None)],
            checkpoint: Some(CheckpointRow {
                size: 3,
                root: [1; 32],
                note: "n".into(),
                time: t(3),
            }),
            outbox: Vec::new(),
            effects: vec![
                Effect::UpsertIdentity {
                    identity: identity(1, "x"),
                    seq: 1,
                },
                Effect::UpsertCase {
                    decided: false,
                    case: case(10, "s", CaseState::NeedsReview),
                    seq: 1,
                },
            ],
            expectations: vec![],
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(h.store.ledger_size().await.unwrap(), 1);
    assert_eq!(
        h.store.entry_by_idempotency_key("fresh").await.unwrap(),
        None
    );
    assert!(h.store.checkpoints().await.unwrap().is_empty());
    assert_eq!(h.store.identity(IdentityId(uuid(1))).await.unwrap(), None);
    assert_eq!(h.store.case(CaseId(uuid(10))).await.unwrap(), None);
}

/// A batch too big for one call goes in several (thousand-row statements, past the combined
/// SQL bound) and is still one transaction: all of it lands, or, when its last statement
/// fails, none of it does.
async fn a_batch_of_many_statements_commits_whole(h: Harness) {
    const FINDINGS: u64 = 2_500;
    // `last_id`: the id of the batch's last finding.
    let batch = |base: u64, last_id: u128| {
        let mut entries = Vec::new();
        let mut effects = Vec::new();
        for i in 0..FINDINGS {
            let seq = base + i;
            let key = format!("k{seq}");
            let id = if i + 1 == FINDINGS {
                last_id
            } else {
                1_000_000 + u128::from(seq)
            };
            let bytes = format!("evidence {seq}").into_bytes();
            let digest = Sha256Digest::of(&bytes);
            entries.push(entry(seq, &key, None));
            effects.push(Effect::PutEvidence(EvidenceRow {
                digest,
                media_type: "application/json".into(),
                bytes,
                received: t(1),
            }));
            effects.push(Effect::InsertFinding {
                finding: finding(id, &key, digest),
                case_id: None,
                seq,
            });
        }
        CommitBatch {
            entries,
            effects,
            ..Default::default()
        }
    };
    h.store
        .commit(batch(0, 1_000_000 + u128::from(FINDINGS)))
        .await
        .unwrap();
    assert_eq!(h.store.ledger_size().await.unwrap(), FINDINGS);
    let dump = h.store.projection_dump().await.unwrap();
    assert_eq!(dump.findings.len(), FINDINGS as usize);

    // The second batch's last finding takes the id of the first batch's first: the findings'
    // last statement fails, after every other statement of the batch has run.
    let err = h
        .store
        .commit(batch(FINDINGS, 1_000_000))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(h.store.ledger_size().await.unwrap(), FINDINGS);
    assert_eq!(
        h.store
            .entry_by_idempotency_key(&format!("k{FINDINGS}"))
            .await
            .unwrap(),
        None
    );
    let after = h.store.projection_dump().await.unwrap();
    assert_eq!(after.findings.len(), FINDINGS as usize);
    let evidence = h
        .store
        .evidence_meta(&[Sha256Digest::of(format!("evidence {FINDINGS}").as_bytes())])
        .await
        .unwrap();
    assert!(evidence.is_empty(), "{evidence:?}");
}

/// A finding's idempotency key is its entry's key: a second finding with a taken key
/// conflicts (on the ledger's unique index), and a finding that does not carry its entry's key
/// is refused. Nothing of either batch is written.
async fn duplicate_finding_key_conflicts(h: Harness) {
    let digest = Sha256Digest::of(b"x");
    let first = CommitBatch {
        entries: vec![entry(0, "same-key", None)],
        effects: vec![Effect::InsertFinding {
            finding: finding(20, "same-key", digest),
            case_id: None,
            seq: 0,
        }],
        ..Default::default()
    };
    h.store.commit(first).await.unwrap();
    let second = CommitBatch {
        entries: vec![entry(1, "same-key", None)],
        effects: vec![Effect::InsertFinding {
            finding: finding(21, "same-key", digest),
            case_id: None,
            seq: 1,
        }],
        ..Default::default()
    };
    assert!(matches!(
        h.store.commit(second).await,
        Err(StoreError::Conflict(_))
    ));
    for (entry_key, finding_seq) in [("other-key", 1), ("fresh-key", 2)] {
        let mismatched = CommitBatch {
            entries: vec![entry(1, entry_key, None)],
            effects: vec![Effect::InsertFinding {
                finding: finding(22, "fresh-key", digest),
                case_id: None,
                seq: finding_seq,
            }],
            ..Default::default()
        };
        assert!(matches!(
            h.store.commit(mismatched).await,
            Err(StoreError::FindingKeyMismatch { .. })
        ));
    }
    assert_eq!(h.store.ledger_size().await.unwrap(), 1);
    assert_eq!(h.store.projection_dump().await.unwrap().findings.len(), 1);
}

async fn open_case_lookup_ignores_closed_cases(h: Harness) {
    let subject = "aws:000000000000/ci-deployer";
    let mut open = case(10, subject, CaseState::AwaitingApproval);
    h.store
        .commit(CommitBatch {
            entries: vec![entry(0, "a", Some(open.id))],
            effects: vec![Effect::UpsertCase {
                decided: false,
                case: open.clone(),
                seq: 0,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        h.store
            .open_cases_for(&[(subject.to_owned(), "iam_user_accesskey_unused".to_owned())])
            .await
            .unwrap()
            .pop(),
        Some(open.clone())
    );
    assert_eq!(
        h.store
            .open_cases_for(&[(subject.to_owned(), "other_type".to_owned())])
            .await
            .unwrap()
            .pop(),
        None
    );

    open.state = CaseState::Closed;
    open.compliance_closed = true;
    h.store
        .commit(CommitBatch {
            entries: vec![entry(1, "b", Some(open.id))],
            effects: vec![Effect::UpsertCase {
                decided: false,
                case: open.clone(),
                seq: 1,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        h.store
            .open_cases_for(&[(subject.to_owned(), "iam_user_accesskey_unused".to_owned())])
            .await
            .unwrap()
            .pop(),
        None
    );
    assert_eq!(h.store.case(open.id).await.unwrap(), Some(open));
}

/// The batch look-ups ingest plans with: identities by (system, external id) across systems,
/// open cases by (subject, finding type) only, duplicates and misses in the keys ignored.
async fn batch_lookups_match_exact_pairs(h: Harness) {
    let mut other_system = identity(2, "ci-deployer");
    other_system.system = "github:acme".into();
    let known = [
        identity(1, "ci-deployer"),
        other_system,
        identity(3, "backup"),
    ];
    let mut cases = [
        case(
            10,
            "aws:000000000000/ci-deployer",
            CaseState::AwaitingApproval,
        ),
        case(11, "aws:000000000000/ci-deployer", CaseState::NeedsReview),
        case(12, "aws:000000000000/backup", CaseState::Closed),
    ];
    cases[1].finding_type = "leaked_secret".into();
    let mut effects: Vec<Effect> = known
        .iter()
        .map(|i| Effect::UpsertIdentity {
            identity: i.clone(),
            seq: 0,
        })
        .collect();
    effects.extend(cases.iter().map(|c| Effect::UpsertCase {
        decided: false,
        case: c.clone(),
        seq: 0,
    }));
    h.store
        .commit(CommitBatch {
            entries: vec![entry(0, "a", None)],
            effects,
            ..Default::default()
        })
        .await
        .unwrap();
    let pair = |s: &str, e: &str| (s.to_owned(), e.to_owned());

    let mut found = h
        .store
        .identities_by_external_ids(&[
            pair("aws:000000000000", "ci-deployer"),
            pair("aws:000000000000", "ci-deployer"),
            pair("github:acme", "ci-deployer"),
            pair("github:acme", "backup"),
            pair("aws:000000000000", "nobody"),
        ])
        .await
        .unwrap();
    found.sort_by_key(|i| i.id.as_uuid());
    assert_eq!(found, known[..2].to_vec());

    let found = h
        .store
        .open_cases_for(&[
            pair("aws:000000000000/ci-deployer", "iam_user_accesskey_unused"),
            pair("aws:000000000000/ci-deployer", "iam_user_accesskey_unused"),
            pair("aws:000000000000/backup", "iam_user_accesskey_unused"),
            pair("aws:000000000000/ci-deployer", "other_type"),
        ])
        .await
        .unwrap();
    assert_eq!(found, vec![cases[0].clone()]);
    assert!(h.store.open_cases_for(&[]).await.unwrap().is_empty());
    assert!(
        h.store
            .identities_by_external_ids(&[])
            .await
            .unwrap()
            .is_empty()
    );
}

/// Only one case per subject and finding type may be open: a second one conflicts and nothing
/// of its batch is written.
async fn one_open_case_per_subject(h: Harness) {
    let first = case(10, "aws:1/ci", CaseState::NeedsReview);
    h.store
        .commit(CommitBatch {
            entries: vec![entry(0, "a", Some(first.id))],
            effects: vec![Effect::UpsertCase {
                decided: false,
                case: first.clone(),
                seq: 0,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let second = case(11, "aws:1/ci", CaseState::AwaitingApproval);
    let err = h
        .store
        .commit(CommitBatch {
            entries: vec![entry(1, "b", Some(second.id))],
            effects: vec![Effect::UpsertCase {
                decided: false,
                case: second.clone(),
                seq: 1,
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(h.store.case(second.id).await.unwrap(), None);
    // Once the first is closed, a new case may open.
    let mut closed = first;
    closed.state = CaseState::Closed;
    h.store
        .commit(CommitBatch {
            entries: vec![
                entry(1, "c", Some(closed.id)),
                entry(2, "d", Some(second.id)),
            ],
            effects: vec![
                Effect::UpsertCase {
                    decided: false,
                    case: closed,
                    seq: 1,
                },
                Effect::UpsertCase {
                    decided: false,
                    case: second.clone(),
                    seq: 2,
                },
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        h.store
            .open_cases_for(&[(
                "aws:1/ci".to_owned(),
                "iam_user_accesskey_unused".to_owned()
            )])
            .await
            .unwrap()
            .pop(),
        Some(second)
    );
}

async fn case_listing_filters_and_limits(h: Harness) {
    let states = [
        CaseState::NeedsReview,
        CaseState::Remediated,
        CaseState::NeedsReview,
        CaseState::Frozen,
    ];
    let mut batch = CommitBatch::default();
    for (i, state) in states.iter().enumerate() {
        let c = case(100 + i as u128, &format!("subject-{i}"), *state);
        batch
            .entries
            .push(entry(i as u64, &format!("k{i}"), Some(c.id)));
        batch.effects.push(Effect::UpsertCase {
            decided: false,
            case: c,
            seq: i as u64,
        });
    }
    h.store.commit(batch).await.unwrap();
    let all = h.store.cases(&CaseFilter::default()).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].subject, "subject-3", "newest first");
    let review = h
        .store
        .cases(&CaseFilter {
            state: Some(CaseState::NeedsReview),
            ..CaseFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(review.len(), 2);
    let limited = h
        .store
        .cases(&CaseFilter {
            limit: Some(1),
            ..CaseFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    // Pages: the second of two-case pages, newest changed first.
    let second_page = h
        .store
        .cases(&CaseFilter {
            limit: Some(2),
            offset: Some(2),
            ..CaseFilter::default()
        })
        .await
        .unwrap();
    let subjects: Vec<&str> = second_page.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(subjects, ["subject-1", "subject-0"]);
    // By finding type and state together.
    let typed = h
        .store
        .cases(&CaseFilter {
            state: Some(CaseState::NeedsReview),
            finding_type: Some(all[0].finding_type.clone()),
            ..CaseFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(typed.len(), 2);
    let none = h
        .store
        .cases(&CaseFilter {
            finding_type: Some("no_such_type".into()),
            ..CaseFilter::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn identity_upsert_replaces(h: Harness) {
    let mut id = identity(1, "svc-backup");
    h.store
        .commit(CommitBatch {
            entries: vec![entry(0, "a", None)],
            effects: vec![Effect::UpsertIdentity {
                identity: id.clone(),
                seq: 0,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    id.owner_team = None;
    id.tags.clear();
    id.last_used_at = None;
    id.privileged = false;
    h.store
        .commit(CommitBatch {
            entries: vec![entry(1, "b", None)],
            effects: vec![Effect::UpsertIdentity {
                identity: id.clone(),
                seq: 1,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(h.store.identities().await.unwrap(), vec![id]);
}

async fn replacing_projections_keeps_the_ledger(h: Harness) {
    h.store
        .commit(CommitBatch {
            entries: vec![entry(0, "a", None)],
            effects: vec![
                Effect::UpsertIdentity {
                    identity: identity(1, "x"),
                    seq: 0,
                },
                Effect::UpsertCase {
                    decided: false,
                    case: case(10, "s", CaseState::NeedsReview),
                    seq: 0,
                },
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let before = h.store.projection_dump().await.unwrap();
    assert_eq!((before.identities.len(), before.cases.len()), (1, 1));
    h.store.replace_projections(vec![]).await.unwrap();
    assert!(h.store.identities().await.unwrap().is_empty());
    assert!(
        h.store
            .cases(&CaseFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.store.ledger_size().await.unwrap(), 1);

    let effects = vec![
        Effect::UpsertIdentity {
            identity: identity(1, "x"),
            seq: 0,
        },
        Effect::UpsertCase {
            decided: false,
            case: case(10, "s", CaseState::NeedsReview),
            seq: 0,
        },
    ];
    h.store.replace_projections(effects).await.unwrap();
    assert_eq!(h.store.projection_dump().await.unwrap(), before);
}

/// Two writers that both think the ledger is empty: exactly one wins, the other is told the
/// head moved, and the ledger has no gap and no duplicate.
async fn racing_writers_serialise(h: Harness) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = h.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .commit(CommitBatch {
                    entries: vec![entry(0, &format!("writer-{i}"), None)],
                    ..Default::default()
                })
                .await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(StoreError::HeadMoved { .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(h.store.ledger_size().await.unwrap(), 1);
}

/// A commit whose expectation no longer holds (someone changed the case since it was read)
/// writes nothing; one that holds goes through, and the case's version moves with it.
async fn expectations_make_appends_conditional(h: Harness) {
    let mut open = case(20, "aws:000000000000/svc-1", CaseState::NeedsReview);
    h.store
        .commit(CommitBatch {
            entries: vec![entry(0, "open", Some(open.id))],
            effects: vec![Effect::UpsertCase {
                case: open.clone(),
                decided: true,
                seq: 0,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let expect = |state, updated_seq| Expectation::Case {
        id: open.id,
        state,
        updated_seq,
    };
    // A stale read: wrong state, or wrong version.
    for stale in [
        expect(CaseState::AwaitingApproval, 0),
        expect(CaseState::NeedsReview, 7),
    ] {
        let err = h
            .store
            .commit(CommitBatch {
                entries: vec![entry(1, "late", Some(open.id))],
                expectations: vec![stale],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Stale { .. }), "{err}");
        assert_eq!(h.store.ledger_size().await.unwrap(), 1, "nothing written");
    }
    // A vote counts for the decision in force and makes the case newer.
    open.state = CaseState::NeedsReview;
    h.store
        .commit(CommitBatch {
            entries: vec![entry(1, "vote", Some(open.id))],
            expectations: vec![expect(CaseState::NeedsReview, 0)],
            effects: vec![Effect::InsertVote {
                case_id: open.id,
                approver: "alice".into(),
                seq: 1,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let view = h.store.case_view(open.id).await.unwrap().unwrap();
    assert_eq!(view.updated_seq, 1);
    assert_eq!(view.votes, vec![("alice".to_owned(), 1)]);
    assert_eq!(view.decision_seq, Some(0));
    // The same approver twice for the same decision: a conflict, nothing written.
    let err = h
        .store
        .commit(CommitBatch {
            entries: vec![entry(2, "vote-again", Some(open.id))],
            effects: vec![Effect::InsertVote {
                case_id: open.id,
                approver: "alice".into(),
                seq: 2,
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(h.store.ledger_size().await.unwrap(), 2);
    // The old version is stale now.
    let err = h
        .store
        .commit(CommitBatch {
            entries: vec![entry(2, "after", Some(open.id))],
            expectations: vec![expect(CaseState::NeedsReview, 0)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale { .. }), "{err}");
}

/// A case never has two jobs in the worker's hands: the second live job is refused whole.
async fn one_live_job_per_case(h: Harness) {
    let case_id = CaseId(uuid(30));
    let job = |n: u128| {
        writ_core::job::Job::queued(
            writ_core::ids::JobId(uuid(n)),
            case_id,
            "aws:000000000000",
            "svc-1",
            writ_core::change::Action::Disable,
            false,
        )
    };
    let upsert = |job: writ_core::job::Job, seq| Effect::UpsertJob {
        job,
        intent: false,
        seq,
    };
    h.store
        .commit(CommitBatch {
            entries: vec![entry(0, "j1", Some(case_id))],
            effects: vec![upsert(job(31), 0)],
            ..Default::default()
        })
        .await
        .unwrap();
    let err = h
        .store
        .commit(CommitBatch {
            entries: vec![entry(1, "j2", Some(case_id))],
            effects: vec![upsert(job(32), 1)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    // Once the first is finished, another may be queued.
    let mut done = job(31);
    done.state = writ_core::job::JobState::Failed;
    h.store
        .commit(CommitBatch {
            entries: vec![entry(1, "j1-failed", Some(case_id))],
            effects: vec![upsert(done, 1), upsert(job(32), 1)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(h.store.jobs_for_case(case_id).await.unwrap().len(), 2);
}

/// The outbox is written with the entries; a notification is claimed by one worker at a time,
/// retried when it fails, and an endpoint that answers 410 is disabled with what it had pending.
async fn the_outbox_is_committed_claimed_and_finished(h: Harness) {
    use writ_store::{DeliveryAttempt, DeliveryNext, OutboxRow};
    let row = |n: u64, endpoint: &str| OutboxRow {
        id: format!("msg_{n}_{endpoint}"),
        endpoint: endpoint.into(),
        seq: n,
        kind: "case_closed".into(),
        payload: format!("{{\"n\":{n}}}"),
        created: t(0),
        attempts: 0,
    };
    h.store
        .commit(CommitBatch {
            entries: vec![
                entry(0, "k0", None),
                entry(1, "k1", None),
                entry(2, "k2", None),
            ],
            checkpoint: None,
            outbox: vec![row(0, "soc"), row(1, "soc"), row(2, "gone")],
            effects: vec![],
            expectations: vec![],
        })
        .await
        .unwrap();
    let first = h.store.claim_outbox("w1", t(1), t(60), 10).await.unwrap();
    assert_eq!(first.len(), 3);
    assert!(
        h.store
            .claim_outbox("w2", t(2), t(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let attempt = |status| DeliveryAttempt {
        at: t(3),
        status: Some(status),
        error: None,
    };
    h.store
        .finish_delivery("msg_0_soc", "w1", attempt(204), DeliveryNext::Delivered)
        .await
        .unwrap();
    h.store
        .finish_delivery("msg_1_soc", "w1", attempt(500), DeliveryNext::RetryAt(t(8)))
        .await
        .unwrap();
    h.store
        .finish_delivery("msg_2_gone", "w1", attempt(410), DeliveryNext::EndpointGone)
        .await
        .unwrap();
    assert!(
        h.store
            .claim_outbox("w2", t(7), t(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = h.store.claim_outbox("w2", t(8), t(60), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.as_str(), again[0].attempts), ("msg_1_soc", 1));
    let states: Vec<(String, String)> = h
        .store
        .outbox(10)
        .await
        .unwrap()
        .into_iter()
        .map(|(row, state)| (row.id, state))
        .collect();
    assert_eq!(
        states,
        [
            ("msg_0_soc".to_owned(), "delivered".to_owned()),
            ("msg_1_soc".to_owned(), "pending".to_owned()),
            ("msg_2_gone".to_owned(), "disabled".to_owned()),
        ]
    );
}

/// Each witness keeps its newest co-signature: a larger size replaces it, a smaller one does not.
async fn a_witness_keeps_its_newest_cosignature(h: Harness) {
    use writ_store::CosignatureRow;
    let row = |witness: &str, size: u64| CosignatureRow {
        witness: witness.into(),
        size,
        cosignature: format!("\u{2014} {witness} sig{size}"),
        time: jiff::Timestamp::from_second(1_700_000_000 + i64::try_from(size).unwrap()).unwrap(),
    };
    assert!(h.store.cosignatures().await.unwrap().is_empty());
    h.store.put_cosignature(&row("w1", 5)).await.unwrap();
    h.store.put_cosignature(&row("w2", 3)).await.unwrap();
    h.store.put_cosignature(&row("w1", 9)).await.unwrap();
    h.store.put_cosignature(&row("w1", 7)).await.unwrap();
    let rows = h.store.cosignatures().await.unwrap();
    assert_eq!(rows, vec![row("w1", 9), row("w2", 3)]);
    assert!(h.store.checkpoint_at(1).await.unwrap().is_none());
}

/// Replicas racing for a system's scheduled sync: exactly one claims each round; a round
/// already run, or older than one run, is claimed by nobody; systems are claimed apart.
async fn one_replica_claims_each_sync_round(h: Harness) {
    let race = |round: i64| {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = h.store.clone();
                tokio::spawn(async move {
                    store
                        .claim_sync_round("pg-main", round, &format!("replica-{i}"))
                        .await
                        .unwrap()
                })
            })
            .collect();
        async move {
            let mut wins = 0;
            for task in tasks {
                if task.await.unwrap() {
                    wins += 1;
                }
            }
            wins
        }
    };
    assert_eq!(race(5).await, 1);
    assert_eq!(race(5).await, 0, "the round is taken");
    assert_eq!(race(4).await, 0, "an older round is past");
    assert_eq!(race(6).await, 1);
    assert!(
        h.store
            .claim_sync_round("aws", 6, "replica-0")
            .await
            .unwrap()
    );
}

writ_testkit::backend_suite!(
    one_replica_claims_each_sync_round,
    a_witness_keeps_its_newest_cosignature,
    the_outbox_is_committed_claimed_and_finished,
    expectations_make_appends_conditional,
    one_live_job_per_case,
    migrations_are_idempotent,
    commit_writes_ledger_and_projections_together,
    stale_head_is_refused,
    gap_in_batch_writes_nothing,
    failed_write_changes_no_state,
    a_batch_of_many_statements_commits_whole,
    duplicate_finding_key_conflicts,
    open_case_lookup_ignores_closed_cases,
    batch_lookups_match_exact_pairs,
    case_listing_filters_and_limits,
    one_open_case_per_subject,
    identity_upsert_replaces,
    replacing_projections_keeps_the_ledger,
    racing_writers_serialise,
    job_leases_exclude_other_workers,
);

/// Several replicas starting at once against one PostgreSQL migrate exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_migrate_concurrently() {
    let cluster = PgCluster::start().unwrap();
    let url = cluster.create_database("writ").unwrap();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { writ_store::open(&url).await.map(|s| s.backend()) })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
}
