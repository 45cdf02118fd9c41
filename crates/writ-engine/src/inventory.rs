//! The inventory: identities discovered in target systems, with ownership and criticality from
//! the operator's rules file.
//!
//! `sync` runs a connector's `discover` and records each identity it reports that is new or
//! changed since the last sync (ownership rules applied) as an `identity_synced` event, and the
//! sync itself (counts, or why it failed) as a `system_synced` event in the same group: the
//! system's freshness. `scheduled_syncs` runs it for each target whose `sync_every` has come
//! round, once per round across replicas. Ownership and
//! criticality do not come from targets: `import_rules` records an `ownership_imported` event
//! holding the rules (identity pattern -> owner team, criticality, privileged), applies them to
//! the identities already known, and every later sync applies the latest rules. This is what
//! findings resolve against, and why the source-of-truth check can hold.

use std::collections::HashMap;

use jiff::Timestamp;
use serde::Serialize;
use writ_connectors::{Connector, DiscoveredObject};
use writ_core::event::{EventBody, EventKind, IdentitySynced, OwnershipImported};
use writ_core::identity::{Criticality, Identity, IdentityKind};
use writ_core::ids::IdentityId;
use writ_core::ownership::{self, OwnershipRule, OwnershipRules, RulesFormat};
use writ_core::{Clock, IdSource, Sha256Digest};
use writ_store::Store;

use crate::entries;
use crate::sequencer::{AppendError, Draft, EvidenceBlob, Sequencer};

/// Why an inventory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The rules file is malformed.
    #[error("{file}:{line}: {message}")]
    Rules {
        /// The file.
        file: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The target could not be read.
    #[error("discovery failed: {0}")]
    Connector(#[from] writ_connectors::ConnectorError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] writ_store::StoreError),
    /// The ledger refused the events.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// A recorded rules event could not be read.
    #[error("the recorded ownership rules are unreadable: {0}")]
    Corrupt(String),
}

/// Parses a rules file: CSV (`pattern,owner_team,criticality[,privileged]`, `#` comments, an
/// optional header line, RFC 4180 quoting) or JSON (an array of rules), chosen by the file
/// name's extension. Errors name the file and line.
pub fn parse_rules(file: &str, text: &str) -> Result<Vec<OwnershipRule>, InventoryError> {
    let format = if file.ends_with(".json") {
        RulesFormat::Json
    } else {
        RulesFormat::Csv
    };
    ownership::parse_rules(format, text).map_err(|err| rules_error(file, err))
}

/// A rules problem, named with the file it came from.
fn rules_error(file: &str, err: ownership::RuleError) -> InventoryError {
    InventoryError::Rules {
        file: file.to_owned(),
        line: err.line,
        message: err.message,
    }
}

/// The identity a discovered object stands for, if it is one writ governs. Access keys are
/// recorded under their slot (`<user>/AccessKeyN`), which is how scanners name them.
pub fn identity_from(
    system: &str,
    object: &DiscoveredObject,
    id: IdentityId,
    now: Timestamp,
) -> Option<Identity> {
    let attrs = &object.attributes;
    let (kind, external_id, privileged) = match object.object_kind.as_str() {
        // Database roles (superuser, createrole) and IAM roles and users (administrator
        // policy attached) alike.
        "role" | "user" => (
            IdentityKind::ServiceAccount,
            object.external_id.clone(),
            attrs["superuser"].as_bool().unwrap_or(false)
                || attrs["createrole"].as_bool().unwrap_or(false)
                || attrs["attached_policies"].as_array().is_some_and(|p| {
                    p.iter()
                        .any(|v| v.to_string().contains("AdministratorAccess"))
                }),
        ),
        "access_key" => (
            IdentityKind::ApiKey,
            attrs["slot_external_id"]
                .as_str()
                .map_or_else(|| object.external_id.clone(), str::to_owned),
            false,
        ),
        "secret" => (IdentityKind::Secret, object.external_id.clone(), false),
        // OAuth clients, and AI agents (clients whose scopes are their tools).
        "oauth_client" => (IdentityKind::OauthApp, object.external_id.clone(), false),
        "ai_agent" => (IdentityKind::AiAgent, object.external_id.clone(), false),
        _ => return None,
    };
    let last_used_at = crate::requests::last_used(attrs).map(writ_core::clock::to_micros);
    let mut tags = Vec::new();
    if let Some(key_id) = attrs["access_key_id"].as_str() {
        tags.push(format!("key_id:{key_id}"));
    }
    if let Some(status) = attrs["status"].as_str() {
        tags.push(format!("status:{}", status.to_ascii_lowercase()));
    }
    Some(Identity {
        id,
        system: system.to_owned(),
        external_id,
        kind,
        owner_team: None,
        criticality: Criticality::Medium,
        privileged,
        tags,
        last_used_at,
        reconciled_at: Some(writ_core::clock::to_micros(now)),
    })
}

/// The latest imported rules (none if never imported), compiled for matching.
pub async fn current_rules(store: &dyn Store) -> Result<OwnershipRules, InventoryError> {
    let Some(row) = store
        .latest_entry_of_kind(EventKind::OwnershipImported)
        .await?
    else {
        return Ok(OwnershipRules::default());
    };
    let EventBody::OwnershipImported(imported) =
        entries::decode_body(&row).map_err(|err| InventoryError::Corrupt(err.to_string()))?
    else {
        return Err(InventoryError::Corrupt(format!(
            "entry {} is not an ownership import",
            row.seq
        )));
    };
    OwnershipRules::new(imported.rules).map_err(|err| InventoryError::Corrupt(err.to_string()))
}

/// What a sync or import recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InventoryReport {
    /// Objects the target reported.
    pub discovered: usize,
    /// Identities recorded (new or changed since the last sync).
    pub recorded: usize,
    /// Identities the target holds (changed or not).
    pub identities: usize,
    /// The reconciliation findings the sync raises (when asked for), for the caller to ingest.
    #[serde(skip)]
    pub findings: Vec<writ_core::reconcile::ReconcileFinding>,
    /// Of those, how many an ownership rule matched.
    pub owned: usize,
    /// The subjects (`system/external id`) recorded, for resolving the cases opened before
    /// they were known.
    pub subjects: Vec<String>,
}

/// Discovers `connector`'s system and records its identities, with the current rules applied
/// (as asked for, under the system's own name as its target).
pub async fn sync(
    store: &dyn Store,
    sequencer: &Sequencer,
    connector: &dyn Connector,
    clock: &dyn Clock,
    ids: &dyn IdSource,
    actor: &str,
) -> Result<InventoryReport, InventoryError> {
    let run = SyncRun {
        target: connector.system(),
        scheduled: false,
        actor,
        refresh_after: jiff::SignedDuration::ZERO,
        dormant_after: None,
    };
    sync_target(store, sequencer, connector, clock, ids, &run).await
}

/// Who runs a sync, and how.
#[derive(Debug, Clone, Copy)]
pub struct SyncRun<'a> {
    /// The `[[targets]]` name.
    pub target: &'a str,
    /// Whether it runs on the schedule.
    pub scheduled: bool,
    /// The ledger actor.
    pub actor: &'a str,
    /// An identity unchanged since the last sync is recorded again (its `reconciled_at`
    /// renewed) once its record is older than this: zero re-records every identity (an
    /// explicit sync confirms them all); a schedule uses a fraction of the freshness window
    /// (`ingest.max_reconcile_age_hours`), so identities stay fresh without a ledger entry
    /// per identity per round.
    pub refresh_after: jiff::SignedDuration,
    /// When set, the sync also works out its reconciliation findings
    /// (`writ_core::reconcile`), with this dormancy threshold; the caller raises them.
    pub dormant_after: Option<jiff::SignedDuration>,
}

/// Whether `known` may stand for `found` as is: they say the same (freshness aside) and
/// `known` was confirmed less than `refresh_after` before `now`.
fn still_current(
    known: &Identity,
    found: &Identity,
    now: Timestamp,
    refresh_after: jiff::SignedDuration,
) -> bool {
    let fresh = known
        .reconciled_at
        .is_some_and(|at| now.duration_since(at) < refresh_after);
    let mut found = found.clone();
    found.reconciled_at = known.reconciled_at;
    found.id = known.id;
    fresh && *known == found
}

/// Discovers `connector`'s system and records what changed, and the sync itself. A target
/// that cannot be read is recorded as a failed sync (the inventory stays as it was) and the
/// error returned.
pub async fn sync_target(
    store: &dyn Store,
    sequencer: &Sequencer,
    connector: &dyn Connector,
    clock: &dyn Clock,
    ids: &dyn IdSource,
    how: &SyncRun<'_>,
) -> Result<InventoryReport, InventoryError> {
    let actor = how.actor;
    let now = clock.now();
    let system = connector.system().to_owned();
    let synced = |outcome: writ_core::event::SyncOutcome, key: String| {
        Draft::new(
            None,
            actor,
            key,
            EventBody::SystemSynced(writ_core::event::SystemSynced {
                system: system.clone(),
                target: how.target.to_owned(),
                started_at: now,
                finished_at: clock.now(),
                scheduled: how.scheduled,
                outcome,
            }),
        )
    };
    let objects = match connector.discover().await {
        Ok(objects) => objects,
        Err(err) => {
            let key = format!("system-sync:{system}:{}", now.as_microsecond());
            let failed = synced(
                writ_core::event::SyncOutcome::Failed {
                    error: err.to_string(),
                },
                key,
            );
            sequencer.append(failed).await?;
            return Err(err.into());
        }
    };
    let rules = current_rules(store).await?;
    let known: HashMap<String, Identity> = store
        .identities()
        .await?
        .into_iter()
        .filter(|i| i.system == system)
        .map(|i| (i.external_id.clone(), i))
        .collect();
    let mut report = InventoryReport {
        discovered: objects.len(),
        ..InventoryReport::default()
    };
    let run = now.as_microsecond();
    let mut drafts = Vec::new();
    let mut found: Vec<(Identity, usize)> = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        let Some(mut identity) = identity_from(&system, object, IdentityId(ids.next_id(now)), now)
        else {
            continue;
        };
        let existing = known.get(&identity.external_id);
        if let Some(existing) = existing {
            identity.id = existing.id;
        }
        if rules.apply(&mut identity) {
            report.owned += 1;
        } else if let Some(owner) = existing.and_then(|e| e.owner_team.clone()) {
            // No rule names an owner: the one recorded before (a requested account's) stays.
            identity.owner_team = Some(owner);
            report.owned += 1;
        }
        let key = format!("sync:{system}:{run}:{}", identity.external_id);
        report
            .subjects
            .push(format!("{}/{}", identity.system, identity.external_id));
        report.identities += 1;
        if how.dormant_after.is_some() {
            found.push((identity.clone(), index));
        }
        if existing.is_some_and(|e| still_current(e, &identity, now, how.refresh_after)) {
            continue;
        }
        drafts.push(Draft::new(
            None,
            actor,
            key,
            EventBody::IdentitySynced(IdentitySynced {
                identity,
                object_kind: Some(object.object_kind.clone()),
                reason: None,
            }),
        ));
    }
    report.recorded = drafts.len();
    if let Some(dormant_after) = how.dormant_after {
        let synced_before = store
            .systems()
            .await?
            .iter()
            .any(|s| s.system == system && s.last_success_at.is_some());
        let verified = store
            .jobs_applied_since(&system, Timestamp::UNIX_EPOCH)
            .await?;
        let present: std::collections::HashSet<&str> = found
            .iter()
            .map(|(identity, _)| identity.external_id.as_str())
            .collect();
        let mut regranted = Vec::new();
        for job in writ_core::reconcile::revocations_in_force(&verified) {
            if present.contains(job.external_id.as_str())
                && revocation_lapsed(store, connector, job).await?
            {
                regranted.push(job);
            }
        }
        let found: Vec<writ_core::reconcile::Found<'_>> = found
            .iter()
            .map(|(identity, index)| writ_core::reconcile::Found {
                identity,
                attributes: &objects[*index].attributes,
            })
            .collect();
        report.findings =
            writ_core::reconcile::reconciliation_findings(&writ_core::reconcile::SyncView {
                system: &system,
                before: &known,
                synced_before,
                found: &found,
                verified: &verified,
                regranted: &regranted,
                now,
                dormant_after,
            });
    }
    drafts.push(synced(
        writ_core::event::SyncOutcome::Succeeded {
            discovered: report.discovered as u64,
            identities: report.identities as u64,
            owned: report.owned as u64,
            changed: report.recorded as u64,
        },
        format!("system-sync:{system}:{run}"),
    ));
    for result in sequencer.append_all(drafts).await {
        result?;
    }
    Ok(report)
}

/// Whether a verified revocation no longer holds: its plan (from its intent entry) read back
/// with the connector's own verification. A target that cannot be read, or a job whose plan
/// cannot be found, says nothing (no finding).
async fn revocation_lapsed(
    store: &dyn Store,
    connector: &dyn Connector,
    job: &writ_core::job::Job,
) -> Result<bool, InventoryError> {
    let Some(intent) = store
        .job_view(job.id)
        .await?
        .and_then(|view| view.intent_seq)
    else {
        return Ok(false);
    };
    let Some(row) = store.entries_at(&[intent]).await?.pop() else {
        return Ok(false);
    };
    let plan = match crate::entries::decode_body(&row) {
        Ok(writ_core::event::EventBody::WriteBackIntent(intent)) => intent.plan,
        _ => {
            tracing::warn!(job = %job.id, seq = row.seq, "the job's intent is unreadable");
            return Ok(false);
        }
    };
    match connector.verify(&plan).await {
        Ok(writ_core::change::Verification::NotInEffect { .. }) => Ok(true),
        Ok(writ_core::change::Verification::Confirmed) => Ok(false),
        Err(err) => {
            tracing::warn!(job = %job.id, error = %err, "could not read a revocation back");
            Ok(false)
        }
    }
}

/// A target synced on a schedule (`[[targets]] sync_every`).
#[derive(Clone)]
pub struct ScheduledTarget {
    /// The `[[targets]]` name.
    pub target: String,
    /// Its connector.
    pub connector: std::sync::Arc<dyn Connector>,
    /// How often.
    pub every: jiff::SignedDuration,
}

impl std::fmt::Debug for ScheduledTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledTarget")
            .field("target", &self.target)
            .field("system", &self.connector.system())
            .field("every", &self.every)
            .finish()
    }
}

/// How scheduled syncs treat identities: when an unchanged one is confirmed again
/// ([`SyncRun::refresh_after`]) and when an unused one is dormant.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleRules {
    /// See [`SyncRun::refresh_after`].
    pub refresh_after: jiff::SignedDuration,
    /// See [`SyncRun::dormant_after`].
    pub dormant_after: jiff::SignedDuration,
}

/// What a pass of scheduled syncs did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduledReport {
    /// Targets synced by this replica.
    pub synced: usize,
    /// Of those, how many failed (recorded as failed syncs).
    pub failed: usize,
    /// Subjects the successful syncs recorded (to decide cases opened before them).
    pub subjects: Vec<String>,
    /// Reconciliation findings the syncs raised, for the caller to ingest ([`raise_findings`]).
    pub findings: Vec<writ_core::reconcile::ReconcileFinding>,
}

/// Ingests reconciliation findings through the same pipeline and policy as any source's, as
/// the source `writ-reconcile` (trusted high: writ read the target itself). Returns how many
/// were new (a finding already recorded for the same state is a duplicate).
pub async fn raise_findings(
    ingestor: &crate::ingest::Ingestor,
    findings: Vec<writ_core::reconcile::ReconcileFinding>,
) -> Result<usize, crate::ingest::IngestError> {
    if findings.is_empty() {
        return Ok(0);
    }
    let source = crate::sources::Source {
        name: writ_core::reconcile::RECONCILE_SOURCE.to_owned(),
        trust: writ_core::finding::Trust::High,
    };
    let submissions = findings
        .into_iter()
        .map(|f| crate::ingest::Submission {
            evidence: serde_json::to_vec(&f.observation).unwrap_or_default(),
            observation: f.observation,
            redacted_from: None,
            idempotency_key: Some(f.idempotency_key),
        })
        .collect();
    let mut new = 0;
    for result in ingestor.ingest_batch(&source, submissions).await {
        if !result?.duplicate {
            new += 1;
        }
    }
    Ok(new)
}

/// The round a time falls in, for a schedule of `every`: whole periods since the epoch. Every
/// replica computes the same round, so the claim on it is what makes one of them run it.
pub fn sync_round(now: Timestamp, every: jiff::SignedDuration) -> i64 {
    let period = every.as_micros().max(1);
    i64::try_from(i128::from(now.as_microsecond()) / period).unwrap_or(i64::MAX)
}

/// Syncs every scheduled target whose round has come and that no replica has claimed yet
/// (one replica per target per round); a failed target is recorded as a failed sync and the
/// others go on.
pub async fn scheduled_syncs(
    store: &dyn Store,
    sequencer: &Sequencer,
    schedule: &[ScheduledTarget],
    clock: &dyn Clock,
    ids: &dyn IdSource,
    holder: &str,
    rules: ScheduleRules,
) -> Result<ScheduledReport, InventoryError> {
    let ScheduleRules {
        refresh_after,
        dormant_after,
    } = rules;
    let mut report = ScheduledReport::default();
    for entry in schedule {
        let system = entry.connector.system();
        let round = sync_round(clock.now(), entry.every);
        if !store.claim_sync_round(system, round, holder).await? {
            continue;
        }
        let run = SyncRun {
            target: &entry.target,
            scheduled: true,
            actor: writ_core::workflow::ENGINE_ACTOR,
            refresh_after,
            dormant_after: Some(dormant_after),
        };
        report.synced += 1;
        match sync_target(store, sequencer, &*entry.connector, clock, ids, &run).await {
            Ok(synced) => {
                report.subjects.extend(synced.subjects);
                report.findings.extend(synced.findings);
            }
            Err(InventoryError::Connector(err)) => {
                report.failed += 1;
                tracing::warn!(target = %entry.target, system, error = %err, "scheduled sync failed; recorded, the inventory stays as it was");
            }
            Err(err) => return Err(err),
        }
    }
    Ok(report)
}

/// Records `rules` (from `file`, whose bytes are kept as evidence) and applies them to every
/// known identity.
pub async fn import_rules(
    store: &dyn Store,
    sequencer: &Sequencer,
    file: &str,
    bytes: &[u8],
    rules: Vec<OwnershipRule>,
    clock: &dyn Clock,
    actor: &str,
) -> Result<InventoryReport, InventoryError> {
    let now = clock.now();
    let digest = Sha256Digest::of(bytes);
    let compiled = OwnershipRules::new(rules.clone()).map_err(|err| rules_error(file, err))?;
    sequencer
        .append(Draft {
            evidence: vec![EvidenceBlob {
                media_type: "text/plain".into(),
                bytes: bytes.to_vec(),
            }],
            ..Draft::new(
                None,
                actor,
                format!("ownership:{digest}:{}", now.as_microsecond()),
                EventBody::OwnershipImported(OwnershipImported {
                    file: file.to_owned(),
                    rules,
                }),
            )
        })
        .await?;
    let mut report = InventoryReport::default();
    let mut drafts = Vec::new();
    for mut identity in store.identities().await? {
        let before = identity.clone();
        if compiled.apply(&mut identity) {
            report.owned += 1;
        }
        if identity != before {
            let key = format!(
                "ownership:{digest}:{}:{}",
                now.as_microsecond(),
                identity.id
            );
            drafts.push(Draft::new(
                None,
                actor,
                key,
                EventBody::IdentitySynced(IdentitySynced {
                    identity,
                    object_kind: None,
                    reason: Some("ownership rules imported".into()),
                }),
            ));
        }
    }
    report.recorded = drafts.len();
    for result in sequencer.append_all(drafts).await {
        result?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_file_errors_name_the_file_and_line() {
        let err = parse_rules("owners.csv", "a,b,low\na,b,urgent\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "owners.csv:2: criticality \"urgent\" is not low, medium, high or business_critical"
        );
        let err = parse_rules(
            "owners.json",
            "[{\"pattern\": \"x\",\n \"criticality\": \"high\", \"owner\": 1}]",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("owners.json:2:"), "{err}");
    }
}
