//! Ledger events: the one record of everything writ decides and does.
//!
//! An [`Event`] is what gets appended to the ledger. Its `body` is an [`EventBody`]: one variant
//! per [`EventKind`], with typed fields. Large or raw material (a finding as received, a pre-image) is referenced by digest
//! and stored beside the ledger. No secret may ever be put into an event: connectors hand back
//! digests or redacted forms only.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Sha256Digest;
use crate::approval::Approval;
use crate::case::Case;
use crate::case::CaseState;
use crate::change::{ApplyOutcome, Plan};
use crate::decision::{Decision, Evaluation};
use crate::exception::Exception;
use crate::finding::{Finding, FindingStatus, SourceFormat, Trust};
use crate::identity::{Identity, IdentityKind};
use crate::ids::{CaseId, ExceptionId, FindingId, TokenId};
use crate::job::Job;
use crate::ownership::OwnershipRule;
use crate::principal::{Principal, TokenRecord};

/// What happened: the kind of an event, as its snake_case name in the leaf and the `kind`
/// column. Each kind has exactly one [`EventBody`] variant.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum EventKind {
    /// A finding was accepted from a source (and, for the first finding of a case, the case
    /// was opened).
    FindingReceived,
    /// An identity was recorded or updated from a target's inventory.
    IdentitySynced,
    /// Ownership and criticality rules were imported.
    OwnershipImported,
    /// Policy decided.
    DecisionRecorded,
    /// A change was requested (a write-back job queued).
    ChangeRequested,
    /// An approver approved.
    ApprovalGranted,
    /// The write-back intent was recorded (before apply).
    WriteBackIntent,
    /// The target accepted the change.
    WriteBackApplied,
    /// Reading the target back confirmed the change.
    WriteBackVerified,
    /// The write-back failed or did not verify (or was put back for a retry).
    WriteBackFailed,
    /// A rollback was asked for and its intent recorded (before the target is touched).
    RollbackIntent,
    /// The change was rolled back from its pre-image.
    RolledBack,
    /// An eligible approver rejected the change: the request ends.
    ChangeRejected,
    /// A principal asked to roll a verified change back, and policy decided the rollback.
    RollbackRequested,
    /// A principal (person or service) was created.
    PrincipalCreated,
    /// A principal's teams, roles or trust changed.
    PrincipalChanged,
    /// A principal was disabled (its tokens stop working, its votes stop counting).
    PrincipalDisabled,
    /// An API token was issued to a principal.
    TokenIssued,
    /// An API token was revoked.
    TokenRevoked,
    /// The finding was closed for compliance, with evidence: a later scan reporting it passes,
    /// or a reviewer's closure with a rationale. The case closes.
    CaseClosed,
    /// A reviewer dismissed the case as a false positive. The case closes.
    CaseDismissed,
    /// A `@freeze` decision on another case of the same identity froze this case's pending
    /// approvals or queued job.
    CaseFrozen,
    /// A principal unfroze a frozen case: its work goes on where it stopped.
    CaseUnfrozen,
    /// A principal asked for an exception (to accept the case's risk for a while), and policy
    /// decided it (action `accept_risk`).
    ExceptionRequested,
    /// The exception is in force (on the asker's word, or with its approvals).
    ExceptionGranted,
    /// The exception ended: the case reopened to be decided again.
    ExceptionExpired,
    /// The exception expires soon: re-approval is asked for.
    ExceptionRenewalDue,
    /// A principal with the break_glass role applied the case's change at once, in an
    /// emergency, where policy allows it (an override, not an approval).
    BreakGlassUsed,
    /// The after-the-fact review of a break-glass change: upheld, or rejected (the change is
    /// rolled back).
    BypassReviewed,
    /// A break-glass change's review is overdue: escalated.
    BypassReviewOverdue,
    /// An admin asked to override an automated deny or case-only decision; the change waits
    /// for the named risk owner to accept the residual risk.
    OverrideRequested,
    /// A reviewer asked to dismiss the case as a false positive, and policy decided it (action
    /// `dismiss`): on the reviewer's word, or with a second person's approval.
    DismissalRequested,
    /// An operator sealed ledger entries that no signed checkpoint covered (left by a crash
    /// or an older writ), after checking them: the checkpoint of this entry covers them.
    LedgerSealed,
    /// A principal asked for a change (a new service account, a scope change, an agent's
    /// access): the case opened, with policy's decision on it.
    RequestSubmitted,
    /// A rotation with cut-over took a step (delivered, cut over, old key deleted).
    RotationProgressed,
    /// A requested change reached its end (an account's expiry, an agent's access running
    /// out, a revocation criterion met): the change that ends it was queued.
    AccessExpired,
    /// A target's inventory was synced (on schedule or on demand), or the sync failed: the
    /// system's freshness and last result.
    SystemSynced,
    /// A policy bundle was put in force; its files are kept as the event's evidence, by hash,
    /// so every decision it makes stays replayable after a deploy.
    PolicyBundleLoaded,
    /// Automation stopped on a system whose source of truth cannot be trusted (its inventory
    /// stale, its ownership coverage below the configured share): no automatic tier there, and
    /// queued jobs wait.
    AutomationPaused,
    /// The system's source of truth is repaired: automation goes on.
    AutomationResumed,
    /// A certification campaign asked each owner team to certify or revoke each identity of
    /// a system by a deadline (one `certification_due` finding per identity follows).
    CampaignStarted,
    /// A certification reached its deadline unanswered: the case was decided again as
    /// `certification_overdue` (escalated as the policy says, never changed automatically).
    CertificationOverdue,
}

impl EventKind {
    /// The kind's snake_case name, as stored in the leaf and the `kind` column.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The media type of the raw evidence an event of this kind names (a finding as received
    /// is JSON; an ownership rules file is text), or `None` when it names none. The sequencer
    /// refuses a blob of another type, and `writ audit verify` checks the stored type by it.
    pub fn evidence_media_type(self) -> Option<&'static str> {
        match self {
            EventKind::FindingReceived => Some("application/json"),
            EventKind::OwnershipImported => Some("text/plain"),
            EventKind::PolicyBundleLoaded => Some("application/json"),
            _ => None,
        }
    }

    /// The NIST CSF 2.0 outcomes this kind of event is evidence for. The sequencer adds them to
    /// every event, beside any tags the caller gives (OWASP NHI Top 10 tags depend on the
    /// finding, so the ingest path adds those).
    pub fn nist_csf_controls(self) -> &'static [&'static str] {
        use EventKind as K;
        match self {
            K::FindingReceived => &["DE.CM", "DE.AE-02"],
            K::IdentitySynced => &["ID.AM-01", "PR.AA-01"],
            K::OwnershipImported => &["ID.AM-01", "GV.RR-02"],
            K::DecisionRecorded => &["GV.RM-03", "GV.PO-01"],
            K::ChangeRequested | K::ApprovalGranted | K::ChangeRejected => {
                &["PR.AA-05", "GV.RR-02"]
            }
            K::PrincipalCreated | K::PrincipalChanged | K::PrincipalDisabled => {
                &["PR.AA-01", "PR.AA-05", "GV.RR-04"]
            }
            K::TokenIssued | K::TokenRevoked => &["PR.AA-01", "PR.AA-03"],
            K::WriteBackIntent
            | K::WriteBackApplied
            | K::WriteBackVerified
            | K::WriteBackFailed => &["RS.MI-02", "PR.AA-05"],
            K::RollbackRequested => &["RC.RP-01", "GV.RM-03", "PR.AA-05"],
            K::RollbackIntent | K::RolledBack => &["RC.RP-01", "RS.MI-02"],
            K::CaseClosed | K::CaseDismissed | K::DismissalRequested => &["RS.MA-05", "GV.OV-02"],
            K::CaseFrozen | K::CaseUnfrozen => &["RS.MI-01", "GV.RR-02"],
            K::ExceptionRequested
            | K::ExceptionGranted
            | K::ExceptionExpired
            | K::ExceptionRenewalDue => &["GV.RM-04", "GV.RM-03", "ID.RA-06"],
            K::BreakGlassUsed
            | K::BypassReviewed
            | K::BypassReviewOverdue
            | K::OverrideRequested => &["PR.AA-05", "GV.OV-02", "RS.MA-01"],
            K::LedgerSealed => &["PR.DS-01", "DE.CM-09"],
            K::RequestSubmitted => &["PR.AA-05", "GV.RR-02", "ID.AM-01"],
            K::AccessExpired => &["PR.AA-05", "PR.AA-01"],
            K::RotationProgressed => &["PR.AA-01", "RS.MI-02", "PR.DS-01"],
            K::SystemSynced => &["ID.AM-01", "DE.CM-09"],
            K::PolicyBundleLoaded => &["GV.PO-01", "GV.PO-02"],
            K::AutomationPaused | K::AutomationResumed => &["ID.AM-01", "GV.OV-02"],
            K::CampaignStarted | K::CertificationOverdue => &["PR.AA-05", "GV.RR-02"],
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A control framework reference, for grouping evidence by control.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ControlTag(pub String);

/// An event as appended to the ledger. `seq` and `time` are assigned by the sequencer.
///
/// In the leaf, `kind` names the event and `body` holds its kind's fields (no tag of its own),
/// so reading an event back takes both: [`EventBody::decode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Position in the ledger, from 0.
    pub seq: u64,
    /// When it was appended, from the injected clock.
    pub time: Timestamp,
    /// The case it belongs to, if any.
    pub case_id: Option<CaseId>,
    /// Who or what caused it (`source:prowler`, `user:alice`, `engine`).
    pub actor: String,
    /// What happened.
    pub kind: EventKind,
    /// Unique per logical event: a retry with the same key returns the first entry.
    pub idempotency_key: String,
    /// The policy bundle that decided, where a decision was made.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_bundle: Option<Sha256Digest>,
    /// Digests of evidence stored beside the ledger.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub evidence: Vec<Sha256Digest>,
    /// OWASP NHI Top 10 and NIST CSF 2.0 references.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub controls: Vec<ControlTag>,
    /// The kind-specific payload.
    pub body: EventBody,
}

/// An event whose header was read but whose body is not yet decoded.
#[derive(Deserialize)]
struct RawEvent {
    seq: u64,
    time: Timestamp,
    case_id: Option<CaseId>,
    actor: String,
    kind: EventKind,
    idempotency_key: String,
    #[serde(default)]
    policy_bundle: Option<Sha256Digest>,
    #[serde(default)]
    evidence: Vec<Sha256Digest>,
    #[serde(default)]
    controls: Vec<ControlTag>,
    body: serde_json::Value,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawEvent::deserialize(deserializer)?;
        let body = EventBody::decode(raw.kind, raw.body).map_err(serde::de::Error::custom)?;
        Ok(Event {
            seq: raw.seq,
            time: raw.time,
            case_id: raw.case_id,
            actor: raw.actor,
            kind: raw.kind,
            idempotency_key: raw.idempotency_key,
            policy_bundle: raw.policy_bundle,
            evidence: raw.evidence,
            controls: raw.controls,
            body,
        })
    }
}

/// A body that does not have its kind's shape.
#[derive(Debug, thiserror::Error)]
#[error("{kind} body: {source}")]
pub struct BodyError {
    /// The kind the body was read as.
    pub kind: EventKind,
    /// What did not fit.
    #[source]
    pub source: serde_json::Error,
}

/// The payload of every kind of event, with typed fields. Serialised without a tag (the
/// event's `kind` says which variant it is); [`EventBody::decode`] reads it back by kind.
///
/// Events that change a case, a job or an identity carry the new snapshot of it; the
/// projection ([`crate::projection::project`]) takes the snapshots and nothing else, and the
/// state machine ([`crate::workflow`]) checks that each snapshot's state is a legal step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EventBody {
    /// See [`FindingReceived`].
    FindingReceived(FindingReceived),
    /// See [`IdentitySynced`].
    IdentitySynced(IdentitySynced),
    /// See [`OwnershipImported`].
    OwnershipImported(OwnershipImported),
    /// See [`DecisionRecorded`].
    DecisionRecorded(DecisionRecorded),
    /// See [`ChangeRequested`].
    ChangeRequested(ChangeRequested),
    /// See [`ApprovalGranted`].
    ApprovalGranted(ApprovalGranted),
    /// See [`WriteBackIntent`].
    WriteBackIntent(WriteBackIntent),
    /// See [`WriteBackApplied`].
    WriteBackApplied(WriteBackApplied),
    /// See [`WriteBackVerified`].
    WriteBackVerified(WriteBackVerified),
    /// See [`WriteBackFailed`].
    WriteBackFailed(WriteBackFailed),
    /// See [`RollbackIntent`].
    RollbackIntent(RollbackIntent),
    /// See [`RolledBack`].
    RolledBack(RolledBack),
    /// See [`ChangeRejected`].
    ChangeRejected(ChangeRejected),
    /// See [`RollbackRequested`].
    RollbackRequested(RollbackRequested),
    /// `principal_created`: see [`PrincipalRecorded`].
    PrincipalCreated(PrincipalRecorded),
    /// `principal_changed`: see [`PrincipalRecorded`].
    PrincipalChanged(PrincipalRecorded),
    /// `principal_disabled`: see [`PrincipalRecorded`].
    PrincipalDisabled(PrincipalRecorded),
    /// See [`TokenIssued`].
    TokenIssued(TokenIssued),
    /// See [`TokenRevoked`].
    TokenRevoked(TokenRevoked),
    /// See [`CaseClosed`].
    CaseClosed(CaseClosed),
    /// See [`CaseDismissed`].
    CaseDismissed(CaseDismissed),
    /// See [`CaseFrozen`].
    CaseFrozen(CaseFrozen),
    /// See [`CaseUnfrozen`].
    CaseUnfrozen(CaseUnfrozen),
    /// See [`ExceptionRequested`].
    ExceptionRequested(ExceptionRequested),
    /// See [`ExceptionGranted`].
    ExceptionGranted(ExceptionGranted),
    /// See [`ExceptionExpired`].
    ExceptionExpired(ExceptionExpired),
    /// See [`ExceptionRenewalDue`].
    ExceptionRenewalDue(ExceptionRenewalDue),
    /// See [`BreakGlassUsed`].
    BreakGlassUsed(BreakGlassUsed),
    /// See [`BypassReviewed`].
    BypassReviewed(BypassReviewed),
    /// See [`BypassReviewOverdue`].
    BypassReviewOverdue(BypassReviewOverdue),
    /// See [`OverrideRequested`].
    OverrideRequested(OverrideRequested),
    /// See [`DismissalRequested`].
    DismissalRequested(DismissalRequested),
    /// See [`LedgerSealed`].
    LedgerSealed(LedgerSealed),
    /// See [`RequestSubmitted`].
    RequestSubmitted(RequestSubmitted),
    /// See [`AccessExpired`].
    AccessExpired(AccessExpired),
    /// See [`RotationProgressed`].
    RotationProgressed(RotationProgressed),
    /// See [`SystemSynced`].
    SystemSynced(SystemSynced),
    /// See [`PolicyBundleLoaded`].
    PolicyBundleLoaded(PolicyBundleLoaded),
    /// See [`AutomationPaused`].
    AutomationPaused(AutomationPaused),
    /// See [`AutomationResumed`].
    AutomationResumed(AutomationResumed),
    /// See [`CampaignStarted`].
    CampaignStarted(CampaignStarted),
    /// See [`CertificationOverdue`].
    CertificationOverdue(CertificationOverdue),
}

impl EventBody {
    /// The kind of event this body belongs to.
    pub fn kind(&self) -> EventKind {
        use EventBody as B;
        use EventKind as K;
        match self {
            B::FindingReceived(_) => K::FindingReceived,
            B::IdentitySynced(_) => K::IdentitySynced,
            B::OwnershipImported(_) => K::OwnershipImported,
            B::DecisionRecorded(_) => K::DecisionRecorded,
            B::ChangeRequested(_) => K::ChangeRequested,
            B::ApprovalGranted(_) => K::ApprovalGranted,
            B::WriteBackIntent(_) => K::WriteBackIntent,
            B::WriteBackApplied(_) => K::WriteBackApplied,
            B::WriteBackVerified(_) => K::WriteBackVerified,
            B::WriteBackFailed(_) => K::WriteBackFailed,
            B::RollbackIntent(_) => K::RollbackIntent,
            B::RolledBack(_) => K::RolledBack,
            B::ChangeRejected(_) => K::ChangeRejected,
            B::RollbackRequested(_) => K::RollbackRequested,
            B::PrincipalCreated(_) => K::PrincipalCreated,
            B::PrincipalChanged(_) => K::PrincipalChanged,
            B::PrincipalDisabled(_) => K::PrincipalDisabled,
            B::TokenIssued(_) => K::TokenIssued,
            B::TokenRevoked(_) => K::TokenRevoked,
            B::CaseClosed(_) => K::CaseClosed,
            B::CaseDismissed(_) => K::CaseDismissed,
            B::CaseFrozen(_) => K::CaseFrozen,
            B::CaseUnfrozen(_) => K::CaseUnfrozen,
            B::ExceptionRequested(_) => K::ExceptionRequested,
            B::ExceptionGranted(_) => K::ExceptionGranted,
            B::ExceptionExpired(_) => K::ExceptionExpired,
            B::ExceptionRenewalDue(_) => K::ExceptionRenewalDue,
            B::BreakGlassUsed(_) => K::BreakGlassUsed,
            B::BypassReviewed(_) => K::BypassReviewed,
            B::BypassReviewOverdue(_) => K::BypassReviewOverdue,
            B::OverrideRequested(_) => K::OverrideRequested,
            B::DismissalRequested(_) => K::DismissalRequested,
            B::LedgerSealed(_) => K::LedgerSealed,
            B::RequestSubmitted(_) => K::RequestSubmitted,
            B::AccessExpired(_) => K::AccessExpired,
            B::RotationProgressed(_) => K::RotationProgressed,
            B::SystemSynced(_) => K::SystemSynced,
            B::PolicyBundleLoaded(_) => K::PolicyBundleLoaded,
            B::AutomationPaused(_) => K::AutomationPaused,
            B::AutomationResumed(_) => K::AutomationResumed,
            B::CampaignStarted(_) => K::CampaignStarted,
            B::CertificationOverdue(_) => K::CertificationOverdue,
        }
    }

    /// Reads a body of `kind` back from its JSON.
    pub fn decode(kind: EventKind, body: serde_json::Value) -> Result<EventBody, BodyError> {
        use EventBody as B;
        use EventKind as K;
        let decoded = match kind {
            K::FindingReceived => serde_json::from_value(body).map(B::FindingReceived),
            K::IdentitySynced => serde_json::from_value(body).map(B::IdentitySynced),
            K::OwnershipImported => serde_json::from_value(body).map(B::OwnershipImported),
            K::DecisionRecorded => serde_json::from_value(body).map(B::DecisionRecorded),
            K::ChangeRequested => serde_json::from_value(body).map(B::ChangeRequested),
            K::ApprovalGranted => serde_json::from_value(body).map(B::ApprovalGranted),
            K::WriteBackIntent => serde_json::from_value(body).map(B::WriteBackIntent),
            K::WriteBackApplied => serde_json::from_value(body).map(B::WriteBackApplied),
            K::WriteBackVerified => serde_json::from_value(body).map(B::WriteBackVerified),
            K::WriteBackFailed => serde_json::from_value(body).map(B::WriteBackFailed),
            K::RollbackIntent => serde_json::from_value(body).map(B::RollbackIntent),
            K::RolledBack => serde_json::from_value(body).map(B::RolledBack),
            K::ChangeRejected => serde_json::from_value(body).map(B::ChangeRejected),
            K::RollbackRequested => serde_json::from_value(body).map(B::RollbackRequested),
            K::PrincipalCreated => serde_json::from_value(body).map(B::PrincipalCreated),
            K::PrincipalChanged => serde_json::from_value(body).map(B::PrincipalChanged),
            K::PrincipalDisabled => serde_json::from_value(body).map(B::PrincipalDisabled),
            K::TokenIssued => serde_json::from_value(body).map(B::TokenIssued),
            K::TokenRevoked => serde_json::from_value(body).map(B::TokenRevoked),
            K::CaseClosed => serde_json::from_value(body).map(B::CaseClosed),
            K::CaseDismissed => serde_json::from_value(body).map(B::CaseDismissed),
            K::CaseFrozen => serde_json::from_value(body).map(B::CaseFrozen),
            K::CaseUnfrozen => serde_json::from_value(body).map(B::CaseUnfrozen),
            K::ExceptionRequested => serde_json::from_value(body).map(B::ExceptionRequested),
            K::ExceptionGranted => serde_json::from_value(body).map(B::ExceptionGranted),
            K::ExceptionExpired => serde_json::from_value(body).map(B::ExceptionExpired),
            K::ExceptionRenewalDue => serde_json::from_value(body).map(B::ExceptionRenewalDue),
            K::BreakGlassUsed => serde_json::from_value(body).map(B::BreakGlassUsed),
            K::BypassReviewed => serde_json::from_value(body).map(B::BypassReviewed),
            K::BypassReviewOverdue => serde_json::from_value(body).map(B::BypassReviewOverdue),
            K::OverrideRequested => serde_json::from_value(body).map(B::OverrideRequested),
            K::DismissalRequested => serde_json::from_value(body).map(B::DismissalRequested),
            K::LedgerSealed => serde_json::from_value(body).map(B::LedgerSealed),
            K::RequestSubmitted => serde_json::from_value(body).map(B::RequestSubmitted),
            K::AccessExpired => serde_json::from_value(body).map(B::AccessExpired),
            K::RotationProgressed => serde_json::from_value(body).map(B::RotationProgressed),
            K::SystemSynced => serde_json::from_value(body).map(B::SystemSynced),
            K::PolicyBundleLoaded => serde_json::from_value(body).map(B::PolicyBundleLoaded),
            K::AutomationPaused => serde_json::from_value(body).map(B::AutomationPaused),
            K::AutomationResumed => serde_json::from_value(body).map(B::AutomationResumed),
            K::CampaignStarted => serde_json::from_value(body).map(B::CampaignStarted),
            K::CertificationOverdue => serde_json::from_value(body).map(B::CertificationOverdue),
        };
        decoded.map_err(|source| BodyError { kind, source })
    }

    /// The body as a JSON value (its leaf form before canonicalisation).
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    /// The case snapshot the event carries, if any.
    pub fn case(&self) -> Option<&Case> {
        use EventBody as B;
        match self {
            B::FindingReceived(b) => b.case.as_ref(),
            B::DecisionRecorded(b) => Some(&b.case),
            B::ChangeRequested(b) => b.case.as_ref(),
            B::WriteBackVerified(b) => Some(&b.case),
            B::WriteBackFailed(b) => b.case.as_ref(),
            B::RolledBack(b) => Some(&b.case),
            B::ChangeRejected(b) => Some(&b.case),
            B::RollbackRequested(b) => Some(&b.case),
            B::CaseClosed(b) => Some(&b.case),
            B::CaseDismissed(b) => Some(&b.case),
            B::CaseFrozen(b) => Some(&b.case),
            B::CaseUnfrozen(b) => Some(&b.case),
            B::ExceptionRequested(b) => Some(&b.case),
            B::ExceptionGranted(b) => Some(&b.case),
            B::ExceptionExpired(b) => Some(&b.case),
            B::BreakGlassUsed(b) => Some(&b.case),
            B::BypassReviewed(b) => b.remedy.as_ref().map(|remedy| &remedy.case),
            B::OverrideRequested(b) => Some(&b.case),
            B::DismissalRequested(b) => Some(&b.case),
            B::RequestSubmitted(b) => Some(&b.case),
            B::AccessExpired(b) => Some(&b.case),
            B::CertificationOverdue(b) => Some(&b.case),
            B::IdentitySynced(_)
            | B::CampaignStarted(_)
            | B::BypassReviewOverdue(_)
            | B::ExceptionRenewalDue(_)
            | B::OwnershipImported(_)
            | B::ApprovalGranted(_)
            | B::WriteBackIntent(_)
            | B::WriteBackApplied(_)
            | B::RollbackIntent(_)
            | B::PrincipalCreated(_)
            | B::PrincipalChanged(_)
            | B::PrincipalDisabled(_)
            | B::TokenIssued(_)
            | B::TokenRevoked(_)
            | B::LedgerSealed(_)
            | B::RotationProgressed(_)
            | B::SystemSynced(_)
            | B::PolicyBundleLoaded(_)
            | B::AutomationPaused(_)
            | B::AutomationResumed(_) => None,
        }
    }

    /// The policy decision the event records, with the inputs it was evaluated from (what
    /// replay re-evaluates), if it records one.
    pub fn recorded_decision(&self) -> Option<(&Decision, &Evaluation)> {
        use EventBody as B;
        match self {
            B::DecisionRecorded(b) => Some((&b.decision, &b.evaluation)),
            B::RollbackRequested(b) => Some((&b.decision, &b.evaluation)),
            B::ExceptionRequested(b) => Some((&b.decision, &b.evaluation)),
            B::BreakGlassUsed(b) => Some((&b.decision, &b.evaluation)),
            B::BypassReviewed(b) => b.remedy.as_ref().map(|r| (&r.decision, &r.evaluation)),
            B::OverrideRequested(b) => Some((&b.decision, &b.evaluation)),
            B::DismissalRequested(b) => Some((&b.decision, &b.evaluation)),
            B::RequestSubmitted(b) => Some((&b.decision, &b.evaluation)),
            _ => None,
        }
    }

    /// The principal record the event carries, if any.
    pub fn principal(&self) -> Option<&Principal> {
        use EventBody as B;
        match self {
            B::PrincipalCreated(b) | B::PrincipalChanged(b) | B::PrincipalDisabled(b) => {
                Some(&b.principal)
            }
            _ => None,
        }
    }

    /// The job snapshot the event carries, if any.
    pub fn job(&self) -> Option<&Job> {
        use EventBody as B;
        match self {
            B::ChangeRequested(b) => Some(&b.job),
            B::WriteBackIntent(b) => Some(&b.job),
            B::WriteBackApplied(b) => Some(&b.job),
            B::WriteBackVerified(b) => Some(&b.job),
            B::WriteBackFailed(b) => Some(&b.job),
            B::RollbackIntent(b) => Some(&b.job),
            B::RolledBack(b) => Some(&b.job),
            B::AccessExpired(b) => Some(&b.job),
            B::RotationProgressed(b) => Some(&b.job),
            B::FindingReceived(_)
            | B::IdentitySynced(_)
            | B::OwnershipImported(_)
            | B::DecisionRecorded(_)
            | B::ApprovalGranted(_)
            | B::ChangeRejected(_)
            | B::RollbackRequested(_)
            | B::PrincipalCreated(_)
            | B::PrincipalChanged(_)
            | B::PrincipalDisabled(_)
            | B::TokenIssued(_)
            | B::TokenRevoked(_)
            | B::CaseClosed(_)
            | B::CaseDismissed(_)
            | B::CaseFrozen(_)
            | B::CaseUnfrozen(_)
            | B::ExceptionRequested(_)
            | B::ExceptionGranted(_)
            | B::ExceptionExpired(_)
            | B::ExceptionRenewalDue(_)
            | B::BreakGlassUsed(_)
            | B::BypassReviewed(_)
            | B::BypassReviewOverdue(_)
            | B::OverrideRequested(_)
            | B::DismissalRequested(_)
            | B::RequestSubmitted(_)
            | B::SystemSynced(_)
            | B::PolicyBundleLoaded(_)
            | B::AutomationPaused(_)
            | B::AutomationResumed(_)
            | B::CampaignStarted(_)
            | B::CertificationOverdue(_)
            | B::LedgerSealed(_) => None,
        }
    }
}

/// What a finding's source said, beside the normalised [`Finding`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationSummary {
    /// The format it arrived in.
    pub format: SourceFormat,
    /// The tool's one-line summary.
    pub title: String,
    /// What kind of identity the tool believes the subject is.
    pub subject_kind: Option<IdentityKind>,
    /// Format-specific details (no secrets).
    pub details: serde_json::Value,
    /// What the tool reported: a problem (`fail`, the default) or that the check now passes.
    #[serde(default, skip_serializing_if = "FindingStatus::is_fail")]
    pub status: FindingStatus,
}

/// The authenticated source of a finding, as policies saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRef {
    /// Its configured name.
    pub name: String,
    /// How much it is trusted.
    pub trust: Trust,
}

/// `finding_received`: a finding was accepted. The first finding of a case opens it and
/// carries the new case; a finding that joins an open case carries none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingReceived {
    /// The finding, normalised.
    pub finding: Finding,
    /// What the tool said about it.
    pub observation: ObservationSummary,
    /// Who sent it.
    pub source: SourceRef,
    /// When the stored evidence is a redacted form, the digest of the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_from: Option<Sha256Digest>,
    /// The case it opened, if it opened one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<Case>,
    /// When it opened a case: the last closed case of the same subject and finding type, which
    /// this one continues (the same problem, found again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopens: Option<CaseId>,
}

/// Where an undecidable or unautomatable case was sent, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Always `human_review` today.
    pub to: String,
    /// Why automation stays away.
    pub reason: String,
}

/// `decision_recorded`: policy decided a case, from the exact inputs recorded here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecorded {
    /// The case as the decision leaves it.
    pub case: Case,
    /// The decision.
    pub decision: Decision,
    /// The inputs it was evaluated from (replayable).
    pub evaluation: Evaluation,
    /// The finding type's signal, from the bundle.
    pub signal: String,
    /// Set when the case goes to a human whatever the tier said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
}

/// `identity_synced`: an identity as a target reported it (and ownership rules shaped it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySynced {
    /// The identity as it now is.
    pub identity: Identity,
    /// The kind of object the target reported, when it came from discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_kind: Option<String>,
    /// Why it changed, when not from discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `system_synced`: how a target's inventory sync went. The identities it found are
/// `identity_synced` events of the same group (only those new or changed since the last sync).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSynced {
    /// The system (`pg-main`, `aws:123456789012`).
    pub system: String,
    /// The `[[targets]]` name it is configured as.
    pub target: String,
    /// When the sync started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// Whether it ran on the schedule (`sync_every`) or was asked for.
    pub scheduled: bool,
    /// What came of it.
    pub outcome: SyncOutcome,
}

/// `policy_bundle_loaded`: a bundle put in force, its files the event's evidence (an archive
/// `writ_policy::PolicyBundle::from_archive` loads, checked against `hash`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBundleLoaded {
    /// The bundle hash decisions name.
    pub hash: Sha256Digest,
    /// Its files, by name.
    pub files: Vec<String>,
}

/// `automation_paused`: why automation stopped on a system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomationPaused {
    /// The system.
    pub system: String,
    /// Why, in words ("ownership coverage 40% is below 80%", "inventory last synced at ...").
    pub reason: String,
}

/// `automation_resumed`: the system's source of truth is repaired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomationResumed {
    /// The system.
    pub system: String,
    /// Why it had been paused.
    pub was: String,
    /// What is true now, in words.
    pub reason: String,
}

/// What a sync came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum SyncOutcome {
    /// The target was read in full.
    Succeeded {
        /// Objects it reported.
        discovered: u64,
        /// Identities among them.
        identities: u64,
        /// Of those, how many have an owner.
        owned: u64,
        /// Identities new or changed since the last sync (recorded in this group).
        changed: u64,
    },
    /// The target could not be read; the inventory stays as it was.
    Failed {
        /// Why (never a secret: connector errors carry none).
        error: String,
    },
}

/// `ownership_imported`: the ownership rules in force from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipImported {
    /// The file they came from.
    pub file: String,
    /// The rules, in file order (first match wins).
    pub rules: Vec<OwnershipRule>,
}

/// `change_requested`: a write-back job was queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequested {
    /// The new job.
    pub job: Job,
    /// The case, when queueing moved it (approvals complete); none when it was queued with
    /// the decision that already moved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<Case>,
}

/// `approval_granted`: one approver's vote for the case's current decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalGranted {
    /// The vote.
    pub approval: Approval,
    /// Why, in the approver's words.
    pub rationale: String,
}

/// `change_rejected`: an eligible approver said no; the request ends (the case is `rejected`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRejected {
    /// The vote (verdict `reject`), bound to the change like an approval.
    pub approval: Approval,
    /// Why, in the approver's words.
    pub rationale: String,
    /// The case, now `rejected`.
    pub case: Case,
}

/// `principal_created`, `principal_changed`, `principal_disabled`: the whole record after
/// the change, so that the ledger alone says who could do what at any point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRecorded {
    /// The principal as it now is.
    pub principal: Principal,
    /// Why, when the admin said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `token_issued`: a token was made for a principal. Only its digest is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenIssued {
    /// The token (digest, owner, expiry).
    pub token: TokenRecord,
}

/// `token_revoked`: a token stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRevoked {
    /// Which token.
    pub token: TokenId,
    /// Whose it was.
    pub principal: String,
    /// Why (`revoked`, `principal disabled`, ...).
    pub reason: String,
}

/// `write_back_intent`: the plan and pre-image, recorded before the target is touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteBackIntent {
    /// The job, now `intent` (or `planned` for a dry run).
    pub job: Job,
    /// What will be done and what the target looked like before.
    pub plan: Plan,
}

/// `write_back_applied`: the target took the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteBackApplied {
    /// The job, now `applied`.
    pub job: Job,
    /// What the target said.
    pub outcome: ApplyOutcome,
}

/// The read-back's verdict in a `write_back_verified` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadBack {
    /// The target shows the change.
    Confirmed,
}

/// `write_back_verified`: reading the target back confirmed the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteBackVerified {
    /// The job, now `verified`.
    pub job: Job,
    /// The case, now `remediated`.
    pub case: Case,
    /// What the read-back showed.
    pub verification: ReadBack,
}

/// `write_back_failed`: a try failed. Retryable failures keep the job pending (with a later
/// `next_attempt_at`); a final one fails the job and the case, for a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteBackFailed {
    /// The job after the failure.
    pub job: Job,
    /// The case, when the failure is final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<Case>,
    /// Whether the job will be tried again.
    pub retryable: bool,
    /// What went wrong, for people.
    pub error: String,
    /// A blast-radius guard held the job back (nothing was tried).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_by_guard: bool,
    /// A human must look.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_attention: bool,
}

/// `rollback_intent`: a person asked to undo a verified change; recorded before the target is
/// touched, so a crash in between is finished by the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackIntent {
    /// The job, now `rollback_intent`.
    pub job: Job,
    /// Why, in the requester's words.
    pub rationale: String,
}

/// `rollback_requested`: a principal asked to undo a case's verified change, and policy
/// decided the rollback (Cedar action `rollback`, the change's action as
/// `context.requested_action`). The decision becomes the case's decision in force: when it
/// calls for approvals the case waits in `rollback_requested` (the change stays in effect) and
/// votes answer it; when it is automatic, the rollback intent follows at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequested {
    /// The case as the request leaves it.
    pub case: Case,
    /// The job whose change would be undone.
    pub job: crate::ids::JobId,
    /// The policy decision on the rollback.
    pub decision: Decision,
    /// The inputs it was evaluated from (replayable).
    pub evaluation: Evaluation,
    /// Who asked (the principal's canonical name, `alice`); never counted as an approver of
    /// it. The entry's actor is `user:alice`.
    pub requester: String,
    /// Why, in the requester's words.
    pub rationale: String,
}

/// `rolled_back`: the change was undone from its pre-image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolledBack {
    /// The job, now `rolled_back`.
    pub job: Job,
    /// The case, now `rolled_back`.
    pub case: Case,
    /// What the target said.
    pub outcome: ApplyOutcome,
    /// Why, in the requester's words.
    pub rationale: String,
}

/// The evidence a compliance closure rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClosureEvidence {
    /// A later scan of the same check and resource reported that it passes.
    Scan {
        /// The passing finding (recorded just before, in the same group).
        finding: FindingId,
        /// The source that reported it.
        source: String,
        /// What the tool said.
        title: String,
    },
    /// A reviewer closed it.
    Reviewer {
        /// Who (the principal's canonical name).
        reviewer: String,
        /// Why, in the reviewer's words.
        rationale: String,
    },
    /// An owner team answered a certification campaign's question about the identity.
    Certification {
        /// The campaign.
        campaign: String,
        /// `certify` (kept) or `revoke` (the change verified in the target).
        answer: crate::campaign::Answer,
        /// Who answered (the voters).
        answered_by: Vec<String>,
        /// Why, in their words.
        rationale: String,
    },
    /// A requested change ran its course: what it granted ended by itself (an account's
    /// expiry, an agent's access), verified by reading the target back.
    RequestEnded {
        /// The job that ended it, verified.
        job: crate::ids::JobId,
        /// Why it ended (`expired`, or the revocation criterion met).
        reason: String,
    },
}

/// `case_closed`: the finding is closed for compliance, with evidence, and the case closes.
/// Whether the risk was closed operationally (a verified change) stays in the case's
/// history; a new finding of the same problem opens a new case that names this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseClosed {
    /// The case, now `closed` with `compliance_closed` set.
    pub case: Case,
    /// What the closure rests on.
    pub evidence: ClosureEvidence,
}

/// `case_dismissed`: a reviewer judged the case a false positive; it closes, nothing changes
/// in the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseDismissed {
    /// The case, now `closed`.
    pub case: Case,
    /// Who dismissed it (the principal's canonical name).
    pub reviewer: String,
    /// Why, in the reviewer's words.
    pub rationale: String,
}

/// `case_frozen`: a `@freeze` decision on another case of the same identity froze this one's
/// pending work (approvals wait, a queued job is not started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFrozen {
    /// The case, now `frozen`.
    pub case: Case,
    /// The state it was frozen in, which unfreezing returns it to.
    pub was: CaseState,
    /// The case whose decision froze it.
    pub by_case: CaseId,
    /// Why, from that decision.
    pub reason: String,
}

/// `case_unfrozen`: a principal let a frozen case go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseUnfrozen {
    /// The case, back in the state it was frozen in (`needs_review` when its own decision
    /// froze it).
    pub case: Case,
    /// Who (the principal's canonical name).
    pub by: String,
    /// Why, in their words.
    pub rationale: String,
}

/// `exception_requested`: a principal asked to accept the case's risk for a while, and policy
/// decided it (action `accept_risk`). The decision becomes the case's decision in force; the
/// case waits in `exception_requested` until it is granted (at once when policy allows it on
/// the asker's word, else with the approvals it asks for) or rejected (back to `was`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionRequested {
    /// The case, now `exception_requested`.
    pub case: Case,
    /// The exception asked for.
    pub exception: Exception,
    /// The state the case was in, which a rejection returns it to.
    pub was: CaseState,
    /// The policy decision on it.
    pub decision: Decision,
    /// The inputs it was evaluated from (replayable).
    pub evaluation: Evaluation,
}

/// `exception_granted`: the exception is in force until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionGranted {
    /// The case, now `risk_accepted`.
    pub case: Case,
    /// The exception, as granted.
    pub exception: Exception,
}

/// `exception_expired`: the exception ended; the case reopens (`needs_review`) and is decided
/// again in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionExpired {
    /// The case, now `needs_review`.
    pub case: Case,
    /// The exception that ended.
    pub exception: ExceptionId,
    /// When it was due to end.
    pub expires_at: jiff::Timestamp,
}

/// `campaign_started`: a certification campaign over a system's identities. Its items are
/// asked as `certification_due` findings (source `writ-campaign`), one case each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignStarted {
    /// The campaign.
    pub campaign: crate::campaign::Campaign,
}

/// `certification_overdue`: nobody answered a certification by its campaign's deadline. The
/// case (unchanged here) is decided again in the same transaction, as
/// [`crate::campaign::CERTIFICATION_OVERDUE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificationOverdue {
    /// The case, as it was at the deadline.
    pub case: Case,
    /// The campaign.
    pub campaign: String,
    /// The deadline that passed.
    pub deadline: jiff::Timestamp,
}

/// `exception_renewal_due`: the exception expires soon; re-approval (a new exception) is
/// asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionRenewalDue {
    /// The exception.
    pub exception: ExceptionId,
    /// When it expires.
    pub expires_at: jiff::Timestamp,
}

/// `break_glass_used`: a principal with the break_glass role applied the case's change at
/// once, in an emergency, because policy allows it on their word (`auto:break_glass`). The
/// decision becomes the case's decision in force; the job follows in the same transaction.
/// The case owes a review by `review_due`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassUsed {
    /// The case, now `remediating`.
    pub case: Case,
    /// Who (a principal's canonical name).
    pub by: String,
    /// Why, in their words.
    pub reason: String,
    /// The incident it answers (a ticket or incident id).
    pub incident: String,
    /// The state the case was in.
    pub was: CaseState,
    /// The policy decision that allowed it (action `break_glass`, tier auto).
    pub decision: Decision,
    /// The inputs it was evaluated from (replayable).
    pub evaluation: Evaluation,
    /// When the review is due; overdue, it escalates, and again at twice the time.
    pub review_due: jiff::Timestamp,
    /// The review window, in seconds (the escalation comes again this long after
    /// `review_due`).
    pub review_window_seconds: u64,
}

/// What a review of a break-glass change concluded.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ReviewVerdict {
    /// The emergency change was right: it stays.
    Upheld,
    /// It was not: the change is rolled back through the engine (or, where it cannot be
    /// undone, a rotation is rotated again).
    Rejected,
}

/// `bypass_reviewed`: someone other than who used it reviewed a break-glass change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BypassReviewed {
    /// The reviewer (a principal's canonical name).
    pub reviewer: String,
    /// Who used the break-glass.
    pub by: String,
    /// Upheld or rejected.
    pub verdict: ReviewVerdict,
    /// Why, in the reviewer's words.
    pub rationale: String,
    /// The entry of the break-glass it reviews.
    pub bypass_seq: u64,
    /// What a rejection decides instead of a rollback, when the change cannot be undone from
    /// its pre-image (a rotation: rotate again, so the secret the emergency produced is
    /// replaced). Absent for an upheld review and for a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<ReviewRemedy>,
}

/// The change a rejecting review decides in place of a rollback: on the review's word (an
/// `auto` decision), as the review is the control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRemedy {
    /// The case as the review leaves it (`remediating`: the change is queued next).
    pub case: Case,
    /// The decision: the action to apply again.
    pub decision: Decision,
    /// The break-glass's inputs it was decided on (replayable).
    pub evaluation: Evaluation,
}

/// `bypass_review_overdue`: a break-glass change was not reviewed in time; escalated (level 1
/// at the deadline, level 2 at twice it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BypassReviewOverdue {
    /// Who used the break-glass.
    pub by: String,
    /// 1 at the deadline, 2 at twice it.
    pub level: u8,
    /// When the review was due.
    pub review_due: jiff::Timestamp,
    /// The entry of the break-glass.
    pub bypass_seq: u64,
}

/// `override_requested`: an admin overrides an automated deny or case-only decision with a
/// rationale. The change is not made on the admin's word: the decision recorded here (one
/// approval from the role `risk_owner`) becomes the decision in force, and the named risk
/// owner's approval, accepting the residual risk, queues it like any approved change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequested {
    /// The case, now `awaiting_approval`.
    pub case: Case,
    /// The admin who overrides (a principal's canonical name); never an approver of it.
    pub requester: String,
    /// Why, in the admin's words.
    pub rationale: String,
    /// The principal asked to accept the residual risk (holds the role `risk_owner`).
    pub risk_owner: String,
    /// The automated decision overridden (deny or case-only).
    pub overridden: Decision,
    /// The decision in force from now on: the change, with one approval from `risk_owner`.
    pub decision: Decision,
    /// The inputs of the overridden decision (replayable).
    pub evaluation: Evaluation,
}

/// `dismissal_requested`: a reviewer asked to dismiss the case as a false positive, and policy
/// decided it (action `dismiss`). The decision becomes the case's decision in force; the case
/// waits in `dismissal_requested` for the second person policy asks for (never the reviewer),
/// whose approval dismisses it; a rejection returns it to `was`. On the reviewer's word, the
/// dismissal follows at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DismissalRequested {
    /// The case, now `dismissal_requested`.
    pub case: Case,
    /// Who asked (a principal's canonical name).
    pub reviewer: String,
    /// Why, in their words.
    pub rationale: String,
    /// The state the case was in.
    pub was: CaseState,
    /// The policy decision on it.
    pub decision: Decision,
    /// The inputs it was evaluated from (replayable).
    pub evaluation: Evaluation,
}

/// Field names that must never appear in an event body: they name secret material.
const SECRET_FIELD_NAMES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "secret_value",
    "secret_string",
    "secret_access_key",
    "private_key",
    "client_secret",
    "api_key_value",
    "token_value",
    "plaintext",
];

/// JSON pointers to every field in `body` whose name marks it as secret material. An event with
/// any such field is refused: connectors must hand back digests or redacted forms instead.
pub fn secret_fields(body: &serde_json::Value) -> Vec<String> {
    /// The common answer, without allocating: no secret-named field anywhere.
    fn any_secret(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(map) => map.iter().any(|(key, child)| {
                (!child.is_null()
                    && SECRET_FIELD_NAMES
                        .iter()
                        .any(|name| key.eq_ignore_ascii_case(name)))
                    || any_secret(child)
            }),
            serde_json::Value::Array(items) => items.iter().any(any_secret),
            _ => false,
        }
    }
    fn walk(value: &serde_json::Value, pointer: &mut String, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    let lower = key.to_ascii_lowercase();
                    if SECRET_FIELD_NAMES.contains(&lower.as_str()) && !child.is_null() {
                        found.push(pointer.clone());
                    }
                    walk(child, pointer, found);
                    pointer.truncate(len);
                }
            }
            serde_json::Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&index.to_string());
                    walk(child, pointer, found);
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    if !any_secret(body) {
        return found;
    }
    walk(body, &mut String::new(), &mut found);
    // Map order depends on serde_json features chosen elsewhere in the build; sort so the
    // answer does not.
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_are_found_anywhere() {
        let body = serde_json::json!({
            "finding": {"type": "leaked_secret", "hashed_secret": "abc"},
            "target": {"items": [{"Password": "x"}], "a/b": {"private_key": "k"}},
            "secret": null
        });
        assert_eq!(
            secret_fields(&body),
            vec![
                "/target/a~1b/private_key".to_owned(),
                "/target/items/0/Password".to_owned()
            ]
        );
        assert!(secret_fields(&serde_json::json!({"digest": "sha256:00"})).is_empty());
    }
}

/// `ledger_sealed`: entries `signed_size..sealed_size` were in the ledger with no signed
/// checkpoint covering them (a crash, or a database from an older writ). An operator checked
/// them (every leaf hashes to its stored hash, the chain is whole, the checkpoint before them
/// verifies) and sealed them: this entry's checkpoint covers them and itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSealed {
    /// The size of the last checkpoint that verified (0: there was none).
    pub signed_size: u64,
    /// The size of the ledger before this entry: the entries sealed end here.
    pub sealed_size: u64,
    /// Who sealed them (the operating system user who ran the command).
    pub operator: String,
    /// Why, in the operator's words.
    pub reason: String,
}

/// `request_submitted`: a principal asked for a change, the case opened, and policy decided it
/// (the requester never counts as an approver). An automatic decision is followed in the same
/// transaction by the job (`change_requested`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSubmitted {
    /// The case the request opened, in the state the decision leaves it.
    pub case: Case,
    /// What was asked, by whom, and the change that fulfils it.
    pub request: crate::request::Request,
    /// The policy decision on it.
    pub decision: Decision,
    /// The inputs it was evaluated from (replayable).
    pub evaluation: Evaluation,
}

/// `access_expired`: a requested change's time ran out (or a revocation criterion was met);
/// the job that ends it is queued, on the request's approved terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessExpired {
    /// The case, now `remediating` again.
    pub case: Case,
    /// The job whose change ends.
    pub ended: crate::ids::JobId,
    /// The job that ends it (disable the account, take the scopes away).
    pub job: Job,
    /// Why now: `expired`, or the revocation criterion met (the finding type).
    pub reason: String,
}

/// `rotation_progressed`: a rotation with cut-over took a step; the job snapshot carries the
/// record (old key id, new key id, where the new one went: never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationProgressed {
    /// The job, with its rotation record as it now is.
    pub job: Job,
    /// What was seen or done, in words.
    pub note: String,
}
