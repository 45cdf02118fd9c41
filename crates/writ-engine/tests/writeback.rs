//! Write-back end to end on real parts: moto holds an IAM user's access key; a finding about it
//! is decided (owner approval), approved, written back (key deactivated in moto), read back,
//! and rolled back, with the whole story in one case. Also: a crash between applying and
//! recording does not apply twice. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::json;
use writ_connector_aws::{AwsClient, AwsConfig, AwsIam, Service};
use writ_connectors::{
    ApplyOutcome, Capabilities, Connector, ConnectorError, DiscoveredObject, ObjectState, Plan,
    Verification,
};
use writ_core::approval::Verdict;
use writ_core::case::CaseState;
use writ_core::change::Action;
use writ_core::clock::RandomIds;
use writ_core::decision::Tier;
use writ_core::event::{EventBody, EventKind};
use writ_core::finding::{Observation, Severity, SourceFormat, SubjectRef, Trust};
use writ_core::ids::{CaseId, JobId, PrincipalId};
use writ_core::job::{Job, JobState};
use writ_core::principal::{Principal, PrincipalKind, Role};
use writ_core::{Clock as _, ManualClock, example};
use writ_engine::ingest::{Ingestor, Submission};
use writ_engine::inventory;
use writ_engine::principals::NewPrincipal;
use writ_engine::sources::Source;
use writ_engine::writeback::{RollbackOutcome, WriteBack, WriteBackError, WriteBackSettings};
use writ_engine::{Draft, Engine, Sequencer};
use writ_ledger::generate_key;
use writ_policy::PolicyBundle;
use writ_store::Store;
use writ_testkit::{MotoServer, TestDb};

/// Delegates to a real connector; can pretend the process died right after the target changed,
/// that the target is unreachable for every apply, or that it is unreachable for the next
/// rollback. Counts the applies that reached the target.
#[derive(Debug)]
struct CrashAfterApply {
    inner: AwsIam,
    crash_next: AtomicBool,
    unreachable: AtomicBool,
    rollback_unreachable_once: AtomicBool,
    applies: AtomicUsize,
}

#[async_trait]
impl Connector for CrashAfterApply {
    fn system(&self) -> &str {
        self.inner.system()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn discover(&self) -> Result<Vec<DiscoveredObject>, ConnectorError> {
        self.inner.discover().await
    }
    async fn read(&self, id: &str) -> Result<ObjectState, ConnectorError> {
        self.inner.read(id).await
    }
    async fn plan(&self, id: &str, action: &Action) -> Result<Plan, ConnectorError> {
        self.inner.plan(id, action).await
    }
    async fn apply(&self, plan: &Plan, key: &str) -> Result<ApplyOutcome, ConnectorError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(ConnectorError::Retryable("connection refused".into()));
        }
        self.applies.fetch_add(1, Ordering::SeqCst);
        let outcome = self.inner.apply(plan, key).await?;
        if self.crash_next.swap(false, Ordering::SeqCst) {
            return Err(ConnectorError::Retryable(
                "connection lost after the change".into(),
            ));
        }
        Ok(outcome)
    }
    async fn verify(&self, plan: &Plan) -> Result<Verification, ConnectorError> {
        self.inner.verify(plan).await
    }
    async fn rollback(&self, plan: &Plan) -> Result<ApplyOutcome, ConnectorError> {
        if self.rollback_unreachable_once.swap(false, Ordering::SeqCst) {
            return Err(ConnectorError::Retryable("connection refused".into()));
        }
        self.inner.rollback(plan).await
    }
}

struct World {
    store: Arc<dyn Store>,
    sequencer: Sequencer,
    ingestor: Ingestor,
    writeback: WriteBack,
    connector: Arc<CrashAfterApply>,
    clock: Arc<ManualClock>,
    engine: Engine,
    url: String,
    _moto: MotoServer,
    _db: TestDb,
}

/// The teams of the harness's people: `carol` and `dave` are in `security`, everyone else in
/// `data`.
fn teams_of(name: &str) -> &'static str {
    if matches!(name, "carol" | "dave") {
        "security"
    } else {
        "data"
    }
}

/// A person with the approver role, in the team the harness adds them to.
fn person(name: &str) -> Principal {
    Principal::new(
        PrincipalId(uuid::Uuid::nil()),
        name,
        PrincipalKind::Person,
        [teams_of(name)],
        [Role::Approver],
        None,
    )
    .unwrap()
}

/// Approving as one of the harness's people.
trait ApproveAs {
    async fn approve(
        &self,
        case: CaseId,
        who: &str,
        rationale: &str,
        dry_run: bool,
    ) -> Result<Option<Job>, WriteBackError>;
}

impl ApproveAs for WriteBack {
    async fn approve(
        &self,
        case: CaseId,
        who: &str,
        rationale: &str,
        dry_run: bool,
    ) -> Result<Option<Job>, WriteBackError> {
        self.vote(case, &person(who), Verdict::Approve, rationale, dry_run)
            .await
            .map(|outcome| outcome.job)
    }
}

async fn harness(db: TestDb) -> World {
    let url = db.url.clone();
    // svc-bi is business-critical: a compromise signal about it freezes its pending work.
    let rules =
        "aws:123456789012/svc-bi*,data,business_critical\naws:123456789012/svc-*,data,high\n";
    let settings = WriteBackSettings::default();
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    let config = AwsConfig::new("testing", "testing", "us-east-1")
        .with_endpoint(&moto.url())
        .unwrap();
    let client = AwsClient::new(config.clone()).unwrap();
    for user in ["svc-etl", "svc-bi"] {
        client
            .query(Service::Iam, "CreateUser", &[("UserName", user)])
            .await
            .unwrap();
        client
            .query(Service::Iam, "CreateAccessKey", &[("UserName", user)])
            .await
            .unwrap();
    }

    let store = writ_store::open(&url).await.unwrap();
    let (signer, _) = generate_key("writ.test/ledger", [2; 32]).unwrap();
    let clock = Arc::new(ManualClock::new(writ_core::example::time()));
    let connector = Arc::new(CrashAfterApply {
        inner: AwsIam::connect(config).await.unwrap(),
        crash_next: AtomicBool::new(false),
        unreachable: AtomicBool::new(false),
        rollback_unreachable_once: AtomicBool::new(false),
        applies: AtomicUsize::new(0),
    });
    let policy = Arc::new(
        PolicyBundle::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo"),
        )
        .unwrap(),
    );
    let engine = Engine::builder(store.clone(), signer)
        .clock(clock.clone())
        .policy(policy)
        .connectors(vec![connector.clone() as Arc<dyn Connector>])
        .writeback_settings(WriteBackSettings {
            backoff: jiff::SignedDuration::ZERO,
            ..settings
        })
        .start()
        .await
        .unwrap();
    let sequencer = engine.sequencer.clone();
    inventory::sync(
        &*store,
        &sequencer,
        &*connector,
        &*clock,
        &RandomIds,
        "operator",
    )
    .await
    .unwrap();
    let rules = inventory::parse_rules("owners.csv", rules).unwrap();
    inventory::import_rules(
        &*store,
        &sequencer,
        "owners.csv",
        b"x",
        rules,
        &*clock,
        "operator",
    )
    .await
    .unwrap();
    // The approvers: people of the owner team `data`, added by an admin.
    let (root, _) = engine
        .principals
        .bootstrap(NewPrincipal {
            name: "root".into(),
            kind: PrincipalKind::Person,
            teams: vec![],
            roles: vec![Role::Admin],
            trust: None,
            token_ttl: None,
        })
        .await
        .unwrap();
    for name in ["alice", "bob", "carol", "dave"] {
        engine
            .principals
            .create(
                &root,
                NewPrincipal {
                    name: name.into(),
                    kind: PrincipalKind::Person,
                    teams: vec![teams_of(name).into()],
                    roles: vec![Role::Approver],
                    trust: None,
                    token_ttl: None,
                },
            )
            .await
            .unwrap();
    }
    let ingestor = engine.ingestor().unwrap().clone();
    let writeback = engine.writeback.clone();
    let sequencer_for_world = sequencer;
    World {
        store,
        sequencer: sequencer_for_world,
        ingestor,
        writeback,
        connector,
        clock,
        engine,
        url,
        _moto: moto,
        _db: db,
    }
}

async fn key_status(w: &World) -> String {
    w.connector
        .read("svc-etl/AccessKey1")
        .await
        .unwrap()
        .attributes["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A native finding of `finding_type` about `user`'s first access key.
fn key_observation(
    user: &str,
    finding_type: &str,
    severity: Severity,
    confidence_bp: u16,
    title: &str,
) -> Observation {
    Observation {
        status: writ_core::finding::FindingStatus::Fail,
        format: SourceFormat::Native,
        finding_type: finding_type.into(),
        severity,
        confidence_bp,
        subject: SubjectRef {
            system: "aws:123456789012".into(),
            external_id: format!("{user}/AccessKey1"),
            kind_hint: None,
        },
        observed_at: None,
        title: title.into(),
        source_key: None,
        controls: vec![],
        details: serde_json::Value::Null,
    }
}

async fn unused_key_case(w: &World) -> writ_core::ids::CaseId {
    unused_key_case_for(w, "svc-etl").await
}

async fn unused_key_case_for(w: &World, user: &str) -> writ_core::ids::CaseId {
    let observation = key_observation(
        user,
        "iam_user_accesskey_unused",
        Severity::Medium,
        10_000,
        "unused for 200 days",
    );
    let source = Source {
        name: "prowler".into(),
        trust: Trust::High,
    };
    let outcome = w
        .ingestor
        .ingest(
            &source,
            Submission {
                evidence: serde_json::to_vec(&json!({"finding": "unused key", "user": user}))
                    .unwrap(),
                observation,
                redacted_from: None,
                idempotency_key: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        outcome.case_state,
        CaseState::AwaitingApproval,
        "{outcome:?}"
    );
    outcome.case_id
}

async fn approved_change_is_applied_verified_and_rolled_back(w: World) {
    let case = unused_key_case(&w).await;
    assert_eq!(key_status(&w).await, "Active");
    // Nothing happens without the approval.
    assert_eq!(w.writeback.run_once().await.unwrap().verified, 0);
    assert!(
        w.writeback.approve(case, "alice", "", false).await.is_err(),
        "rationale required"
    );
    let job = w
        .writeback
        .approve(case, "alice", "owner confirmed the key is unused", false)
        .await
        .unwrap()
        .expect("one approval is enough under the demo policy");
    assert_eq!(job.state, JobState::Queued);
    assert!(
        w.writeback
            .approve(case, "bob", "late", false)
            .await
            .is_err(),
        "case no longer awaiting"
    );

    let report = w.writeback.run_once().await.unwrap();
    assert_eq!(report.verified, 1, "{report:?}");
    assert_eq!(
        key_status(&w).await,
        "Inactive",
        "the key is deactivated in moto"
    );
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::Remediated
    );

    let kinds: Vec<String> = w
        .store
        .case_entries(case)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.name().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "finding_received",
            "decision_recorded",
            "approval_granted",
            "change_requested",
            "write_back_intent",
            "write_back_applied",
            "write_back_verified"
        ]
    );

    w.writeback
        .rollback(case, &person("alice"), "the key is still needed")
        .await
        .unwrap();
    assert_eq!(
        key_status(&w).await,
        "Active",
        "rollback restores the pre-image"
    );
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::RolledBack
    );
    let drift = writ_engine::rebuild::check(&*w.store).await.unwrap();
    assert!(drift.is_empty(), "{drift:#?}");
}

/// The demo bundle with `rollbacks.cedar` replaced by `rollbacks`.
fn bundle_with_rollbacks(rollbacks: &str) -> Arc<PolicyBundle> {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&demo).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.path().join("rollbacks.cedar"), rollbacks).unwrap();
    Arc::new(PolicyBundle::load_dir(dir.path()).unwrap())
}

/// A verified change of the unused-key case, approved by alice.
async fn verified_unused_key_case(w: &World) -> CaseId {
    let case = unused_key_case(w).await;
    w.writeback
        .approve(case, "alice", "owner confirmed", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.writeback.run_once().await.unwrap().verified, 1);
    assert_eq!(key_status(w).await, "Inactive");
    case
}

/// Policy can demand approvals for a rollback: the case waits in `rollback_requested`, the
/// asker's own vote and votes outside the rule do not count, and the vote that completes
/// the rule lets the worker undo the change. Every step is in the ledger.
async fn a_rollback_can_need_approvals(w: World) {
    let case = verified_unused_key_case(&w).await;
    let strict = w.writeback.clone().with_policy(Some(bundle_with_rollbacks(
        r#"@id("rollback-needs-security")
@approvers("team:security")
permit (principal, action == Writ::Action::"rollback", resource);
"#,
    )));
    let outcome = strict
        .rollback(case, &person("carol"), "the nightly export still uses it")
        .await
        .unwrap();
    let RollbackOutcome::AwaitingApproval { rule, missing, .. } = outcome else {
        panic!("expected to wait for approvals: {outcome:?}");
    };
    assert_eq!((rule.as_str(), missing), ("1 of team:security", 1));
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::RollbackRequested
    );
    assert_eq!(key_status(&w).await, "Inactive", "nothing undone yet");
    // A second request while one waits is refused.
    assert!(
        strict
            .rollback(case, &person("dave"), "again")
            .await
            .is_err()
    );
    // The asker never counts; alice is not in security.
    for who in ["carol", "alice"] {
        let vote = strict.approve(case, who, "ok", false).await;
        assert!(
            matches!(vote, Err(WriteBackError::Forbidden(_))),
            "{who}: {vote:?}"
        );
    }
    let job = strict
        .approve(case, "dave", "security agrees", false)
        .await
        .unwrap()
        .expect("the last approval records the rollback intent");
    assert_eq!(job.state, JobState::RollbackIntent);
    let report = strict.run_once().await.unwrap();
    assert_eq!(report.rolled_back, 1, "{report:?}");
    assert_eq!(key_status(&w).await, "Active");
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::RolledBack
    );
    let kinds: Vec<String> = w
        .store
        .case_entries(case)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.name().to_owned())
        .skip(7)
        .collect();
    assert_eq!(
        kinds,
        [
            "rollback_requested",
            "approval_granted",
            "rollback_intent",
            "rolled_back"
        ]
    );
    let drift = writ_engine::rebuild::check(&*w.store).await.unwrap();
    assert!(drift.is_empty(), "{drift:#?}");
}

/// A rejected rollback leaves the change in effect; a rollback policy does not permit is
/// refused with the policy's reason.
async fn a_rollback_can_be_rejected_or_forbidden(w: World) {
    let case = verified_unused_key_case(&w).await;
    let strict = w.writeback.clone().with_policy(Some(bundle_with_rollbacks(
        r#"@id("rollback-needs-security")
@approvers("team:security")
permit (principal, action == Writ::Action::"rollback", resource);
"#,
    )));
    strict
        .rollback(case, &person("alice"), "still needed")
        .await
        .unwrap();
    strict
        .vote(
            case,
            &person("dave"),
            Verdict::Reject,
            "it stays off",
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::Remediated
    );
    assert_eq!(key_status(&w).await, "Inactive");
    let none = w
        .writeback
        .clone()
        .with_policy(Some(bundle_with_rollbacks("")));
    let refused = none.rollback(case, &person("alice"), "please").await;
    assert!(
        matches!(&refused, Err(WriteBackError::Forbidden(why)) if why.contains("no permit matched")),
        "{refused:?}"
    );
    assert_eq!(key_status(&w).await, "Inactive");
}

async fn a_crash_after_apply_does_not_apply_twice(w: World) {
    let case = unused_key_case(&w).await;
    w.writeback
        .approve(case, "alice", "go", false)
        .await
        .unwrap()
        .unwrap();
    w.connector.crash_next.store(true, Ordering::SeqCst);
    let first = w.writeback.run_once().await.unwrap();
    assert_eq!(first.retried, 1, "{first:?}");
    assert_eq!(key_status(&w).await, "Inactive", "the target did change");
    let jobs = w.store.jobs_for_case(case).await.unwrap();
    assert_eq!(
        jobs[0].state,
        JobState::Intent,
        "only the intent was recorded"
    );

    let second = w.writeback.run_once().await.unwrap();
    assert_eq!(second.verified, 1, "{second:?}");
    assert_eq!(
        w.connector.applies.load(Ordering::SeqCst),
        1,
        "applied exactly once"
    );
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::Remediated
    );
}

async fn dry_run_plans_without_applying(w: World) {
    let case = unused_key_case(&w).await;
    w.writeback
        .approve(case, "alice", "try", true)
        .await
        .unwrap()
        .unwrap();
    let report = w.writeback.run_once().await.unwrap();
    assert_eq!(report.planned, 1);
    assert_eq!(key_status(&w).await, "Active");
    assert_eq!(w.connector.applies.load(Ordering::SeqCst), 0);
    assert_eq!(
        w.store.jobs_for_case(case).await.unwrap()[0].state,
        JobState::Planned
    );
}

/// The change cap holds a second change on the same system until the window has room.
async fn change_cap_holds_jobs(w: World) {
    let mut w = w;
    w.writeback = w.writeback.clone().with_settings(WriteBackSettings {
        max_changes_per_window: 1,
        backoff: jiff::SignedDuration::ZERO,
        ..WriteBackSettings::default()
    });
    let first = unused_key_case_for(&w, "svc-etl").await;
    let second = unused_key_case_for(&w, "svc-bi").await;
    w.writeback
        .approve(first, "alice", "ok", false)
        .await
        .unwrap()
        .unwrap();
    w.writeback
        .approve(second, "alice", "ok", false)
        .await
        .unwrap()
        .unwrap();
    let report = w.writeback.run_once().await.unwrap();
    assert_eq!((report.verified, report.retried), (1, 1), "{report:?}");
    let held = w.store.jobs_for_case(second).await.unwrap().remove(0);
    assert_eq!(held.state, JobState::Queued);
    assert!(held.next_attempt_at.is_some());
    assert!(held.last_error.unwrap().contains("change cap"));
}

/// Never take the rights of the last privileged identity of a system.
async fn last_admin_is_never_disabled(w: World) {
    let rules = inventory::parse_rules(
        "owners.csv",
        "aws:123456789012/svc-etl/*,data,high,true\naws:123456789012/*,data,high,false\n",
    )
    .unwrap();
    inventory::import_rules(
        &*w.store,
        &w.sequencer,
        "owners.csv",
        b"admins",
        rules,
        &*w.clock,
        "operator",
    )
    .await
    .unwrap();
    let case = unused_key_case(&w).await;
    w.writeback
        .approve(case, "alice", "ok", false)
        .await
        .unwrap()
        .unwrap();
    let report = w.writeback.run_once().await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(key_status(&w).await, "Active", "nothing was changed");
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::WriteBackFailed
    );
    let job = w.store.jobs_for_case(case).await.unwrap().remove(0);
    assert!(job.last_error.unwrap().contains("last privileged identity"));
}

/// Two workers (two replicas) on the same queue: each job is worked once.
async fn concurrent_workers_apply_once(w: World) {
    let case = unused_key_case(&w).await;
    w.writeback
        .approve(case, "alice", "ok", false)
        .await
        .unwrap()
        .unwrap();
    let other = w.writeback.clone();
    let (a, b) = tokio::join!(w.writeback.run_once(), other.run_once());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.verified + b.verified, 1, "{a:?} {b:?}");
    assert_eq!(w.connector.applies.load(Ordering::SeqCst), 1);
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::Remediated
    );
}

/// Two separate workers (as on two replicas) claim through leases: one of them gets the job.
async fn separate_workers_lease_each_job_once(w: World) {
    let case = unused_key_case(&w).await;
    w.writeback
        .approve(case, "alice", "ok", false)
        .await
        .unwrap()
        .unwrap();
    let (a, b) = (
        w.worker(WriteBackSettings::default()),
        w.worker(WriteBackSettings::default()),
    );
    let (a, b) = tokio::join!(a.run_once(), b.run_once());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.verified + b.verified, 1, "{a:?} {b:?}");
    assert_eq!(w.connector.applies.load(Ordering::SeqCst), 1);
}

/// A worker that claimed a job and died holds it until its lease runs out; then another
/// worker takes it over and finishes it once.
async fn a_dead_workers_job_is_taken_over_after_its_lease(w: World) {
    let case = unused_key_case(&w).await;
    w.writeback
        .approve(case, "alice", "ok", false)
        .await
        .unwrap()
        .unwrap();
    let now = w.clock.now();
    let lease = jiff::SignedDuration::from_millis(700);
    let claimed = w
        .store
        .claim_jobs("worker:dead", now, now + lease, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let survivor = w.worker(WriteBackSettings::default());
    let early = survivor.run_once().await.unwrap();
    assert_eq!(
        early,
        Default::default(),
        "the dead worker's lease still holds"
    );
    assert_eq!(w.connector.applies.load(Ordering::SeqCst), 0);

    w.clock.advance(jiff::SignedDuration::from_millis(800));
    let late = survivor.run_once().await.unwrap();
    assert_eq!(late.verified, 1, "{late:?}");
    assert_eq!(w.connector.applies.load(Ordering::SeqCst), 1);
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::Remediated
    );
}

impl World {
    /// Another worker (its own lease holder) on the same store, ledger and target.
    fn worker(&self, settings: WriteBackSettings) -> WriteBack {
        self.engine.another_worker(settings)
    }
}

/// A target that never takes the change: every try is recorded, and after `max_attempts` the
/// job fails for a human instead of being retried forever.
async fn a_target_that_always_fails_ends_after_max_attempts(w: World) {
    let worker = w.worker(WriteBackSettings {
        max_attempts: 3,
        ..WriteBackSettings::default()
    });
    let case = unused_key_case(&w).await;
    w.writeback
        .approve(case, "alice", "ok", false)
        .await
        .unwrap()
        .unwrap();
    w.connector.unreachable.store(true, Ordering::SeqCst);
    let mut passes = 0;
    loop {
        let report = worker.run_once().await.unwrap();
        passes += 1;
        if report.failed == 1 {
            break;
        }
        assert_eq!(report.retried, 1, "pass {passes}: {report:?}");
        assert!(passes < 10, "the job never ended");
        // Past the backoff: the job is due again.
        w.clock.advance(jiff::SignedDuration::from_hours(1));
    }
    assert_eq!(passes, 3, "one pass per attempt");
    let job = w.store.jobs_for_case(case).await.unwrap().remove(0);
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.attempts, 3);
    assert!(job.last_error.unwrap().contains("gave up after 3 attempts"));
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::WriteBackFailed
    );
    let entries = w.store.case_entries(case).await.unwrap();
    let failures = entries
        .iter()
        .filter(|e| e.kind == EventKind::WriteBackFailed)
        .count();
    assert_eq!(
        failures, 3,
        "two retries and the final failure, each recorded"
    );
    // Nothing is due any more.
    w.clock.advance(jiff::SignedDuration::from_hours(10));
    assert_eq!(worker.run_once().await.unwrap(), Default::default());
    assert_eq!(key_status(&w).await, "Active");
}

/// Two approvals at once on a case that needs one: one queues the job, the other is refused
/// (the case is no longer awaiting approval); the change is applied once.
async fn two_approvals_at_once_queue_one_job(w: World) {
    let case = unused_key_case(&w).await;
    let (a, b) = tokio::join!(
        w.writeback.approve(case, "alice", "ok", false),
        w.writeback.approve(case, "bob", "ok", false)
    );
    let queued = [&a, &b].iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    assert_eq!(queued, 1, "{a:?} {b:?}");
    assert!(a.is_err() || b.is_err(), "{a:?} {b:?}");
    assert_eq!(w.store.jobs_for_case(case).await.unwrap().len(), 1);
    let report = w.writeback.run_once().await.unwrap();
    assert_eq!(report.verified, 1, "{report:?}");
    assert_eq!(w.connector.applies.load(Ordering::SeqCst), 1);
}

/// A case decided to need two approvals of team security, about svc-bi's key, opened
/// directly in the ledger.
async fn two_approval_case(w: &World) -> CaseId {
    approval_case(w, 77, 2, "security").await
}

/// A case about svc-bi's key decided to need `count` approvals of `approvers` (the recorded
/// rule text), opened directly in the ledger as case `n`.
async fn approval_case(w: &World, n: u128, count: u32, approvers: &str) -> CaseId {
    let identity = w
        .store
        .identity_by_external_id("aws:123456789012", "svc-bi/AccessKey1")
        .await
        .unwrap()
        .unwrap();
    let id = example::case_id(n);
    let key = format!("approval-case-{n}");
    let mut opened = example::opened(n, &key, b"raw");
    let mut decided = example::decided(
        n,
        Tier::Approval {
            count,
            approver_group: approvers.into(),
        },
    );
    for body in [&mut opened, &mut decided] {
        let case = match body {
            EventBody::FindingReceived(b) => b.case.as_mut().unwrap(),
            EventBody::DecisionRecorded(b) => &mut b.case,
            _ => unreachable!(),
        };
        case.identity_id = Some(identity.id);
        case.subject = format!("{}/{}", identity.system, identity.external_id);
    }
    let results = w
        .sequencer
        .append_groups(vec![vec![
            Draft::new(Some(id), "source:prowler", key.as_str(), opened),
            Draft::new(Some(id), "engine", format!("{key}-decided"), decided),
        ]])
        .await;
    for result in results.into_iter().flatten() {
        result.unwrap();
    }
    id
}

/// Two approvals at once on a case that needs two: neither is lost (the one that read a stale
/// case reads again), and exactly one job is queued.
async fn two_approvals_at_once_complete_a_two_approval_case(w: World) {
    let case = two_approval_case(&w).await;
    // alice is not in security: she cannot vote at all.
    let outsider = w.writeback.approve(case, "alice", "ok", false).await;
    assert!(
        matches!(&outsider, Err(WriteBackError::Forbidden(why)) if why.contains("2 of team:security")),
        "{outsider:?}"
    );
    let (a, b) = tokio::join!(
        w.writeback.approve(case, "carol", "ok", false),
        w.writeback.approve(case, "dave", "ok", false)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        usize::from(a.is_some()) + usize::from(b.is_some()),
        1,
        "{a:?} {b:?}"
    );
    let view = w.store.case_view(case).await.unwrap().unwrap();
    assert_eq!(view.votes.len(), 2, "{view:?}");
    assert_eq!(view.case.state, CaseState::Remediating);
    assert_eq!(w.store.jobs_for_case(case).await.unwrap().len(), 1);
    // And the same person twice counts once.
    let again = w.writeback.approve(case, "carol", "again", false).await;
    assert!(again.is_err(), "{again:?}");
}

/// "1 of owner_team and 1 of team:security": two approvers of the owner team do not meet it
/// (each counts once, and neither is in security); one of each does.
async fn two_groups_need_one_approver_of_each(w: World) {
    let case = approval_case(&w, 78, 2, "1 of owner_team and 1 of team:security").await;
    for who in ["alice", "bob"] {
        let queued = w
            .writeback
            .approve(case, who, "owner ok", false)
            .await
            .unwrap();
        assert!(queued.is_none(), "{who} alone queued {queued:?}");
    }
    let view = w.store.case_view(case).await.unwrap().unwrap();
    assert_eq!(view.votes.len(), 2, "{view:?}");
    assert_eq!(view.case.state, CaseState::AwaitingApproval);
    assert!(w.store.jobs_for_case(case).await.unwrap().is_empty());
    let queued = w
        .writeback
        .approve(case, "carol", "security ok", false)
        .await
        .unwrap();
    assert!(queued.is_some(), "owner and security approved: {queued:?}");
    let view = w.store.case_view(case).await.unwrap().unwrap();
    assert_eq!(view.case.state, CaseState::Remediating);
}

/// A rollback whose target call fails is not lost: its intent is recorded first, and the
/// worker finishes it.
async fn a_rollback_is_recorded_before_the_target_and_finished_by_the_worker(w: World) {
    let case = unused_key_case(&w).await;
    w.writeback
        .approve(case, "alice", "ok", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.writeback.run_once().await.unwrap().verified, 1);
    assert_eq!(key_status(&w).await, "Inactive");
    w.connector
        .rollback_unreachable_once
        .store(true, Ordering::SeqCst);
    let err = w
        .writeback
        .rollback(case, &person("alice"), "still needed")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("worker will try again"), "{err}");
    let job = w.store.jobs_for_case(case).await.unwrap().remove(0);
    assert_eq!(job.state, JobState::RollbackIntent);
    assert_eq!(key_status(&w).await, "Inactive", "not rolled back yet");
    w.clock.advance(jiff::SignedDuration::from_hours(1));
    let report = w.writeback.run_once().await.unwrap();
    assert_eq!(report.rolled_back, 1, "{report:?}");
    assert_eq!(key_status(&w).await, "Active");
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::RolledBack
    );
    let drift = writ_engine::rebuild::check(&*w.store).await.unwrap();
    assert!(drift.is_empty(), "{drift:#?}");
}

/// A job row written into the `jobs` table by hand (no ledger entry backs it) is refused and
/// reported; the target is never touched.
async fn a_forged_job_row_is_refused(w: World) {
    let case = unused_key_case(&w).await;
    let forged = writ_core::job::Job::queued(
        JobId(uuid::Uuid::from_u128(0xf0f0)),
        case,
        "aws:123456789012",
        "svc-etl/AccessKey1",
        Action::Disable,
        false,
    );
    let snapshot = serde_json::to_string(&forged).unwrap();
    let id = forged.id.as_uuid();
    let case_uuid = case.as_uuid();
    let insert = "INSERT INTO jobs (id, case_id, system, state, next_attempt_us, snapshot, created_seq, updated_seq) VALUES ($1, $2, 'aws:123456789012', 'queued', NULL, $3, 1, 1)";
    if w.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&w.url).await.unwrap();
        sqlx::query(insert)
            .bind(id)
            .bind(case_uuid)
            .bind(&snapshot)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&w.url).await.unwrap();
        sqlx::query(insert)
            .bind(id)
            .bind(case_uuid)
            .bind(&snapshot)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let report = w.writeback.run_once().await.unwrap();
    assert_eq!(report.refused, 1, "{report:?}");
    assert_eq!(report.verified, 0, "{report:?}");
    assert_eq!(w.connector.applies.load(Ordering::SeqCst), 0);
    assert_eq!(key_status(&w).await, "Active");
}

/// A database upgraded to schema 6 has empty read models (no decision in force, no votes, no
/// plans): approving says to rebuild, and after `writ admin rebuild` the case goes on.
async fn an_upgraded_database_is_filled_by_rebuild(w: World) {
    let case = unused_key_case(&w).await;
    writ_testkit::exec_sql(
        &w.url,
        "UPDATE cases SET decision_seq = NULL; DELETE FROM case_votes; UPDATE jobs SET intent_seq = NULL",
    )
    .await
    .unwrap();
    let err = w
        .writeback
        .approve(case, "alice", "ok", false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("writ admin rebuild"), "{err}");
    writ_engine::rebuild::rebuild(&*w.store).await.unwrap();
    w.writeback
        .approve(case, "alice", "ok", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.writeback.run_once().await.unwrap().verified, 1);
}

fn admin() -> Principal {
    Principal::new(
        PrincipalId(uuid::Uuid::nil()),
        "root",
        PrincipalKind::Person,
        Vec::<String>::new(),
        [Role::Admin],
        None,
    )
    .unwrap()
}

/// Seed 4: a high-confidence compromise signal on a business-critical identity opens a case
/// only and freezes the approval pending on the same identity; nobody can approve it until an
/// admin unfreezes it, and then the approval goes on and the change is applied.
async fn a_freeze_holds_pending_approvals_until_unfrozen(w: World) {
    let pending = unused_key_case_for(&w, "svc-bi").await;
    let compromise = key_observation(
        "svc-bi",
        "credential_compromise",
        Severity::Critical,
        9_900,
        "key used from an unknown network",
    );
    let source = Source {
        name: "guardduty".into(),
        trust: Trust::High,
    };
    let opened = w
        .ingestor
        .ingest(
            &source,
            Submission {
                evidence: b"{\"compromise\": true}".to_vec(),
                observation: compromise,
                redacted_from: None,
                idempotency_key: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(opened.case_state, CaseState::Frozen);
    let frozen = w.store.case(pending).await.unwrap().unwrap();
    assert_eq!(frozen.state, CaseState::Frozen);
    let refused = w.writeback.approve(pending, "alice", "ok", false).await;
    assert!(
        matches!(refused, Err(WriteBackError::Refused(_))),
        "{refused:?}"
    );
    // Unfreezing needs a rationale; then the approval goes on where it stopped.
    assert!(matches!(
        w.writeback.unfreeze(pending, &admin(), " ").await,
        Err(WriteBackError::Refused(_))
    ));
    let unfrozen = w
        .writeback
        .unfreeze(pending, &admin(), "the compromise was a false alarm")
        .await
        .unwrap();
    assert_eq!(unfrozen.state, CaseState::AwaitingApproval);
    let job = w
        .writeback
        .approve(pending, "alice", "unused, disable it", false)
        .await
        .unwrap();
    assert!(job.is_some());
    w.writeback.run_once().await.unwrap();
    assert_eq!(
        w.store.case(pending).await.unwrap().unwrap().state,
        CaseState::Remediated
    );
    // The compromise case, frozen by its own decision, goes to review when unfrozen.
    let own = w
        .writeback
        .unfreeze(opened.case_id, &admin(), "handled with the owner")
        .await
        .unwrap();
    assert_eq!(own.state, CaseState::NeedsReview);
    assert!(
        writ_engine::rebuild::check(&*w.store)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A reviewer closes a case's compliance side with a rationale, or dismisses one as a false
/// positive; a case whose change is in effect cannot be dismissed.
async fn reviewers_close_and_dismiss_cases(w: World) {
    let first = unused_key_case(&w).await;
    assert!(matches!(
        w.writeback.dismiss(first, &person("alice"), "").await,
        Err(WriteBackError::Refused(_))
    ));
    let dismissed = w
        .writeback
        .dismiss(first, &person("alice"), "the key belongs to a test account")
        .await
        .unwrap();
    assert_eq!(dismissed.state, CaseState::Closed);
    assert!(dismissed.compliance_closed);
    assert!(matches!(
        w.writeback.close(first, &person("alice"), "again").await,
        Err(WriteBackError::Refused(_))
    ));
    // Once a change is in effect a case can be closed, not dismissed.
    let second = unused_key_case_for(&w, "svc-bi").await;
    assert_ne!(second, first);
    w.writeback
        .approve(second, "alice", "disable it", false)
        .await
        .unwrap();
    w.writeback.run_once().await.unwrap();
    assert!(matches!(
        w.writeback
            .dismiss(second, &person("bob"), "false positive")
            .await,
        Err(WriteBackError::Refused(_))
    ));
    let closed = w
        .writeback
        .close(
            second,
            &person("bob"),
            "disabled and verified; ticket SEC-12 done",
        )
        .await
        .unwrap();
    assert_eq!(closed.state, CaseState::Closed);
    assert!(
        writ_engine::rebuild::check(&*w.store)
            .await
            .unwrap()
            .is_empty()
    );
}

fn exception_ask(days: i64) -> writ_engine::exceptions::ExceptionAsk {
    writ_engine::exceptions::ExceptionAsk {
        justification: "the quarterly batch still uses this key".into(),
        expires_at: writ_core::example::time() + jiff::SignedDuration::from_hours(days * 24),
        compensating_controls: vec!["key limited to one bucket".into()],
        follow_up: "DATA-42: move the batch to a role".into(),
    }
}

/// Seed 1: an inactive key is disabled only after the owner team approves, inside a recorded
/// exception window: the exception is approved by the owner team (not by who asked), holds the
/// change back, asks for re-approval before it ends, and at its expiry the case reopens and is
/// decided again; the owner's approval then disables the key.
async fn an_exception_window_expires_and_reopens_the_case(w: World) {
    use writ_engine::exceptions::ExceptionOutcome;
    let case = unused_key_case(&w).await;
    // Longer than the policy's 90 days: refused, naming the field.
    let too_long = w
        .writeback
        .request_exception(case, &person("alice"), exception_ask(120))
        .await;
    assert!(
        matches!(&too_long, Err(WriteBackError::Invalid { field, .. }) if field == "expires_at"),
        "{too_long:?}"
    );
    let outcome = w
        .writeback
        .request_exception(case, &person("alice"), exception_ask(30))
        .await
        .unwrap();
    let ExceptionOutcome::AwaitingApproval {
        exception, rule, ..
    } = outcome
    else {
        panic!("the demo policy asks the owner team: {outcome:?}");
    };
    assert_eq!(rule, "1 of owner_team");
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::ExceptionRequested
    );
    // Who asked never approves it.
    let own = w
        .writeback
        .approve(case, "alice", "fine by me", false)
        .await;
    assert!(matches!(own, Err(WriteBackError::Forbidden(_))), "{own:?}");
    let granted = w
        .writeback
        .approve(case, "bob", "accepted until the batch moves", false)
        .await
        .unwrap();
    assert!(granted.is_none(), "an exception queues no change");
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::RiskAccepted
    );
    w.writeback.run_once().await.unwrap();
    assert_eq!(
        key_status(&w).await,
        "Active",
        "the exception holds the change back"
    );

    // Seven days before the end, re-approval is asked for, once.
    w.clock.advance(jiff::SignedDuration::from_hours(24 * 24));
    let report = w.writeback.run_deadlines().await.unwrap();
    assert_eq!(report.renewals, 1, "{report:?}");
    assert_eq!(w.writeback.run_deadlines().await.unwrap().renewals, 0);
    // At the end the case reopens and is decided again on the inventory as it is then (synced
    // that day): the owner team must approve.
    w.clock.advance(jiff::SignedDuration::from_hours(7 * 24));
    inventory::sync(
        &*w.store,
        &w.sequencer,
        &*w.connector,
        &*w.clock,
        &RandomIds,
        "operator",
    )
    .await
    .unwrap();
    let report = w.writeback.run_deadlines().await.unwrap();
    assert_eq!(report.expired, 1, "{report:?}");
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::AwaitingApproval
    );
    let listed = w
        .store
        .exceptions(&writ_store::ExceptionFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].exception.id, exception.id);
    assert_eq!(
        listed[0].state,
        writ_core::exception::ExceptionState::Expired
    );
    let job = w
        .writeback
        .approve(case, "bob", "the batch moved; disable it", false)
        .await
        .unwrap();
    assert!(job.is_some());
    w.writeback.run_once().await.unwrap();
    assert_eq!(key_status(&w).await, "Inactive");
    let kinds: Vec<String> = w
        .store
        .case_entries(case)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.name().to_owned())
        .collect();
    for kind in [
        "exception_requested",
        "exception_granted",
        "exception_renewal_due",
        "exception_expired",
        "write_back_verified",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing: {kinds:?}");
    }
    assert!(
        writ_engine::rebuild::check(&*w.store)
            .await
            .unwrap()
            .is_empty()
    );
}

fn break_glass_holder(name: &str) -> Principal {
    Principal::new(
        PrincipalId(uuid::Uuid::nil()),
        name,
        PrincipalKind::Person,
        ["sre"],
        [Role::BreakGlass],
        None,
    )
    .unwrap()
}

async fn kinds(w: &World, case: CaseId) -> Vec<String> {
    w.store
        .case_entries(case)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.name().to_owned())
        .collect()
}

/// An emergency bypass is applied at once (an override, not an approval); its review becomes
/// overdue and escalates, and again at twice the deadline; the one who used it can neither
/// review it nor use break-glass again until it is reviewed; a review that rejects it rolls the
/// change back, all in the same case.
async fn a_break_glass_is_applied_escalated_and_reviewed(w: World) {
    use writ_core::event::ReviewVerdict;
    let case = unused_key_case(&w).await;
    let eve = break_glass_holder("eve");
    assert!(matches!(
        w.writeback
            .break_glass(case, &eve, "key in a public gist", " ")
            .await,
        Err(WriteBackError::Invalid { .. })
    ));
    let job = w
        .writeback
        .break_glass(case, &eve, "key in a public gist", "INC-7")
        .await
        .unwrap();
    w.writeback.run_once().await.unwrap();
    assert_eq!(key_status(&w).await, "Inactive", "applied at once");
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::Remediated
    );
    // No second break-glass while this one owes its review.
    let other = unused_key_case_for(&w, "svc-bi").await;
    let again = w
        .writeback
        .break_glass(other, &eve, "another", "INC-8")
        .await;
    assert!(
        matches!(again, Err(WriteBackError::Forbidden(_))),
        "{again:?}"
    );
    // Overdue after 24 hours: escalated once; again at twice the time.
    w.clock.advance(jiff::SignedDuration::from_hours(25));
    w.writeback.run_deadlines().await.unwrap();
    w.writeback.run_deadlines().await.unwrap();
    let overdue = |kinds: &[String]| {
        kinds
            .iter()
            .filter(|k| *k == "bypass_review_overdue")
            .count()
    };
    assert_eq!(overdue(&kinds(&w, case).await), 1);
    w.clock.advance(jiff::SignedDuration::from_hours(24));
    w.writeback.run_deadlines().await.unwrap();
    assert_eq!(overdue(&kinds(&w, case).await), 2);
    w.clock.advance(jiff::SignedDuration::from_hours(48));
    w.writeback.run_deadlines().await.unwrap();
    assert_eq!(
        overdue(&kinds(&w, case).await),
        2,
        "two escalations, no more"
    );
    // Eve cannot review her own; Bob rejects it, and the change is rolled back.
    let own = w
        .writeback
        .review_bypass(case, &eve, ReviewVerdict::Upheld, "it was fine")
        .await;
    assert!(matches!(own, Err(WriteBackError::Forbidden(_))), "{own:?}");
    let review = w
        .writeback
        .review_bypass(
            case,
            &person("bob"),
            ReviewVerdict::Rejected,
            "the key was a canary, not a leak",
        )
        .await
        .unwrap();
    assert_eq!(review.rollback, Some(job.id));
    w.writeback.run_once().await.unwrap();
    assert_eq!(key_status(&w).await, "Active", "rolled back");
    assert_eq!(
        w.store.case(case).await.unwrap().unwrap().state,
        CaseState::RolledBack
    );
    let story = kinds(&w, case).await;
    for kind in [
        "break_glass_used",
        "bypass_review_overdue",
        "bypass_reviewed",
        "rolled_back",
    ] {
        assert!(story.iter().any(|k| k == kind), "{kind} missing: {story:?}");
    }
    // Reviewed: Eve may use break-glass again.
    w.writeback
        .break_glass(other, &eve, "svc-bi key leaked", "INC-9")
        .await
        .unwrap();
    assert!(
        writ_engine::rebuild::check(&*w.store)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Seed: a reviewer overrides an automated deny. The admin's override changes nothing by
/// itself; the named risk owner's approval, accepting the residual risk, queues the change; the
/// case shows both.
async fn an_admin_overrides_a_deny_with_the_risk_owners_acceptance(w: World) {
    let bundle = {
        let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo");
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&demo).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        std::fs::write(
            dir.path().join("freeze_high.cedar"),
            r#"@id("no-disabling-high-criticality-keys")
forbid (principal, action == Writ::Action::"disable", resource)
when { resource.criticality == "high" };
"#,
        )
        .unwrap();
        Arc::new(PolicyBundle::load_dir(dir.path()).unwrap())
    };
    let ingestor = writ_engine::ingest::Ingestor::new(
        w.store.clone(),
        w.sequencer.clone(),
        w.clock.clone(),
        Arc::new(RandomIds),
        bundle,
        writ_engine::ingest::IngestSettings::default(),
    );
    let observation = key_observation(
        "svc-etl",
        "iam_user_accesskey_unused",
        Severity::Medium,
        10_000,
        "unused for 200 days",
    );
    let source = Source {
        name: "prowler".into(),
        trust: Trust::High,
    };
    let outcome = ingestor
        .ingest(
            &source,
            Submission {
                evidence: b"{\"unused\": 200}".to_vec(),
                observation,
                redacted_from: None,
                idempotency_key: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(outcome.case_state, CaseState::Denied);
    let case = outcome.case_id;
    w.engine
        .principals
        .create(
            &admin(),
            NewPrincipal {
                name: "rita".into(),
                kind: PrincipalKind::Person,
                teams: vec!["risk".into()],
                roles: vec![Role::RiskOwner],
                trust: None,
                token_ttl: None,
            },
        )
        .await
        .unwrap();
    // The risk owner must hold the role; the admin cannot name itself.
    assert!(matches!(
        w.writeback
            .request_override(case, &admin(), "the key must go", "alice")
            .await,
        Err(WriteBackError::Refused(_))
    ));
    let overridden = w
        .writeback
        .request_override(case, &admin(), "the key is unused and must go", "rita")
        .await
        .unwrap();
    assert_eq!(overridden.state, CaseState::AwaitingApproval);
    w.writeback.run_once().await.unwrap();
    assert_eq!(
        key_status(&w).await,
        "Active",
        "nothing on the admin's word"
    );
    let alice = w.writeback.approve(case, "alice", "sure", false).await;
    assert!(
        matches!(alice, Err(WriteBackError::Forbidden(_))),
        "{alice:?}"
    );
    let rita = w.store.principal("rita").await.unwrap().unwrap().principal;
    let outcome = w
        .writeback
        .vote(
            case,
            &rita,
            Verdict::Approve,
            "I accept the residual risk of disabling it",
            false,
        )
        .await
        .unwrap();
    assert!(outcome.job.is_some());
    w.writeback.run_once().await.unwrap();
    assert_eq!(key_status(&w).await, "Inactive");
    let story = kinds(&w, case).await;
    for kind in [
        "override_requested",
        "approval_granted",
        "write_back_verified",
    ] {
        assert!(story.iter().any(|k| k == kind), "{kind} missing: {story:?}");
    }
    assert!(
        writ_engine::rebuild::check(&*w.store)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Policy may demand a second person to dismiss a case: a compromise report is dismissed only
/// with security's approval, never the reviewer's own.
async fn dismissing_a_compromise_needs_a_second_person(w: World) {
    let observation = key_observation(
        "svc-etl",
        "credential_compromise",
        Severity::High,
        4_000,
        "maybe leaked",
    );
    let source = Source {
        name: "hunch".into(),
        trust: Trust::Low,
    };
    let case = w
        .ingestor
        .ingest(
            &source,
            Submission {
                evidence: b"{\"maybe\": true}".to_vec(),
                observation,
                redacted_from: None,
                idempotency_key: None,
            },
        )
        .await
        .unwrap()
        .case_id;
    let asked = w
        .writeback
        .dismiss(case, &person("alice"), "the key was never exposed")
        .await
        .unwrap();
    assert_eq!(asked.state, CaseState::DismissalRequested);
    let own = w.writeback.approve(case, "alice", "agreed", false).await;
    assert!(matches!(own, Err(WriteBackError::Forbidden(_))), "{own:?}");
    let outsider = w.writeback.approve(case, "bob", "agreed", false).await;
    assert!(
        matches!(outsider, Err(WriteBackError::Forbidden(_))),
        "{outsider:?}"
    );
    w.writeback
        .approve(case, "carol", "checked CloudTrail: no use", false)
        .await
        .unwrap();
    let closed = w.store.case(case).await.unwrap().unwrap();
    assert_eq!(closed.state, CaseState::Closed);
    assert!(closed.compliance_closed);
    assert_eq!(
        key_status(&w).await,
        "Active",
        "nothing changed in the target"
    );
    assert!(
        writ_engine::rebuild::check(&*w.store)
            .await
            .unwrap()
            .is_empty()
    );
}

writ_testkit::backend_suite!(
    dismissing_a_compromise_needs_a_second_person,
    an_admin_overrides_a_deny_with_the_risk_owners_acceptance,
    a_break_glass_is_applied_escalated_and_reviewed,
    an_exception_window_expires_and_reopens_the_case,
    a_freeze_holds_pending_approvals_until_unfrozen,
    reviewers_close_and_dismiss_cases,
    an_upgraded_database_is_filled_by_rebuild,
    a_target_that_always_fails_ends_after_max_attempts,
    two_approvals_at_once_queue_one_job,
    two_approvals_at_once_complete_a_two_approval_case,
    two_groups_need_one_approver_of_each,
    a_rollback_can_need_approvals,
    a_rollback_can_be_rejected_or_forbidden,
    a_rollback_is_recorded_before_the_target_and_finished_by_the_worker,
    a_forged_job_row_is_refused,
    concurrent_workers_apply_once,
    separate_workers_lease_each_job_once,
    a_dead_workers_job_is_taken_over_after_its_lease,
    change_cap_holds_jobs,
    last_admin_is_never_disabled,
    approved_change_is_applied_verified_and_rolled_back,
    a_crash_after_apply_does_not_apply_twice,
    dry_run_plans_without_applying,
);
