//! Certification campaigns at the edge: starting one over a system's inventory, answering its
//! questions, reading where it stands, and what its deadline does. The rules are the core's
//! ([`writ_core::campaign`]); this module reads the store and appends through the sequencer.
//!
//! Starting a campaign asks about each identity through the ingest pipeline, as a
//! `certification_due` finding from [`CAMPAIGN_SOURCE`] (one case per identity, decided by
//! policy), then records `campaign_started` with the campaign's items. The findings come first:
//! a crash in between leaves working cases (each owes its answer by the deadline) and no
//! campaign record, and starting again asks no question twice (an open case is joined).
//!
//! An answer is a vote on the case's decision ([`writ_core::campaign::Answer::verdict`]) by
//! the answering principal, under the same rules as any vote; a certification then closes the
//! case on that answer. At the deadline ([`WriteBack::certification_due`], run by the deadline
//! scheduler) a certified case that is still open closes, a verified revocation closes, and an
//! unanswered case is decided again as overdue, never automatically.

use jiff::Timestamp;
use writ_core::campaign::{
    Answer, CAMPAIGN_SOURCE, CERTIFICATION_DUE, Campaign, CampaignProblem, ItemStatus, ItemView,
};
use writ_core::case::CaseState;
use writ_core::event::{
    CampaignStarted, CaseClosed, CertificationOverdue, ClosureEvidence, EventBody,
};
use writ_core::identity::IdentityKind;
use writ_core::ids::CaseId;
use writ_core::principal::Principal;
use writ_store::DueDeadline;

use crate::entries;
use crate::principals::actor_of;
use crate::sequencer::Draft;
use crate::writeback::{
    STALE_RETRIES, VoteOutcome, WriteBack, WriteBackError, case_expectation, workflow_of,
};

/// A campaign as a principal asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignAsk {
    /// The system whose identities it asks about.
    pub system: String,
    /// When answers are due.
    pub deadline: Timestamp,
    /// The identity kinds it covers (all when empty).
    pub kinds: Vec<String>,
}

/// What starting a campaign did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedCampaign {
    /// The campaign as recorded.
    pub campaign: Campaign,
    /// The ledger entry that recorded it.
    pub seq: u64,
    /// Cases it opened.
    pub opened: usize,
    /// Open cases (of an earlier campaign) its questions joined.
    pub joined: usize,
}

/// A campaign and where each of its items stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignStatus {
    /// The campaign as recorded.
    pub campaign: Campaign,
    /// The ledger entry that recorded it.
    pub seq: u64,
    /// Each item, in the campaign's order.
    pub items: Vec<ItemView>,
}

impl CampaignStatus {
    /// How many items stand at `status`.
    pub fn count(&self, status: ItemStatus) -> usize {
        self.items.iter().filter(|i| i.status == status).count()
    }
}

/// What an answer came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerOutcome {
    /// The vote it was.
    pub vote: VoteOutcome,
    /// Whether the case closed on it (a certification).
    pub closed: bool,
}

/// Questions asked per ingest batch.
const ITEMS_PER_BATCH: usize = 500;

/// The campaigns listed at most.
pub const MAX_LISTED: u32 = 1000;

fn problem(err: CampaignProblem) -> WriteBackError {
    WriteBackError::Invalid {
        field: err.field.to_owned(),
        message: err.message,
    }
}

fn started_key(campaign: &str) -> String {
    format!("campaign:{campaign}:started")
}

impl WriteBack {
    /// Starts a campaign over `ask.system`'s inventory as `starter`: asks each covered
    /// identity's owner team (a `certification_due` finding, decided by policy), then records
    /// `campaign_started`.
    pub async fn start_campaign(
        &self,
        starter: &Principal,
        ask: &CampaignAsk,
    ) -> Result<StartedCampaign, WriteBackError> {
        let now = self.clock.now();
        for kind in &ask.kinds {
            if kind.parse::<IdentityKind>().is_err() {
                return Err(problem(CampaignProblem {
                    field: "kinds",
                    message: format!("{kind:?} is not an identity kind"),
                }));
            }
        }
        let ingestor = self.ingestor.as_ref().ok_or_else(|| {
            WriteBackError::Refused("campaigns need a policy bundle: none is loaded".into())
        })?;
        let mut identities: Vec<_> = self
            .store
            .identities()
            .await?
            .into_iter()
            .filter(|i| i.system == ask.system && writ_core::campaign::covers(&ask.kinds, i))
            .collect();
        if identities.is_empty() {
            return Err(WriteBackError::NotFound(format!(
                "system {:?} has no identities of those kinds in the inventory (sync it first)",
                ask.system
            )));
        }
        // What is asked about exists; then whether the ask is acceptable.
        writ_core::campaign::check_deadline(ask.deadline, now).map_err(problem)?;
        if identities.len() > writ_core::campaign::MAX_ITEMS {
            return Err(problem(CampaignProblem {
                field: "system",
                message: format!(
                    "{} identities: a campaign asks about at most {}; narrow it with kinds",
                    identities.len(),
                    writ_core::campaign::MAX_ITEMS
                ),
            }));
        }
        identities.sort_by(|a, b| a.external_id.cmp(&b.external_id));
        let campaign = Campaign {
            id: self.ids.next_id(now).to_string(),
            system: ask.system.clone(),
            deadline: ask.deadline,
            started_by: starter.name.clone(),
            started_at: now,
            kinds: ask.kinds.clone(),
            items: identities.iter().map(|i| i.external_id.clone()).collect(),
        };
        let source = crate::sources::Source {
            name: CAMPAIGN_SOURCE.to_owned(),
            trust: writ_core::finding::Trust::High,
        };
        let (mut opened, mut joined) = (0, 0);
        for chunk in identities.chunks(ITEMS_PER_BATCH) {
            let submissions = chunk
                .iter()
                .map(|identity| {
                    let observation =
                        writ_core::campaign::certification_finding(&campaign, identity);
                    crate::ingest::Submission {
                        evidence: serde_json::to_vec(&observation).unwrap_or_default(),
                        observation,
                        redacted_from: None,
                        idempotency_key: Some(writ_core::campaign::item_key(
                            &campaign.id,
                            &campaign.system,
                            &identity.external_id,
                        )),
                    }
                })
                .collect();
            for result in ingestor.ingest_batch(&source, submissions).await {
                let outcome = result.map_err(|err| WriteBackError::Refused(err.to_string()))?;
                if outcome.joined_open_case {
                    joined += 1;
                } else if !outcome.duplicate {
                    opened += 1;
                }
            }
        }
        let draft = Draft::new(
            None,
            actor_of(starter),
            started_key(&campaign.id),
            EventBody::CampaignStarted(CampaignStarted {
                campaign: campaign.clone(),
            }),
        );
        let seq = self
            .append_group(vec![draft])
            .await?
            .first()
            .map_or(0, |appended| appended.seq);
        Ok(StartedCampaign {
            seq,
            campaign,
            opened,
            joined,
        })
    }

    /// The campaigns started, newest first (at most [`MAX_LISTED`]).
    pub async fn campaigns(&self) -> Result<Vec<(u64, Campaign)>, WriteBackError> {
        let mut out = Vec::new();
        for row in self.store.campaigns_started(MAX_LISTED).await? {
            out.push((row.seq, campaign_of_row(&row)?));
        }
        Ok(out)
    }

    /// Campaign `id` and where each of its items stands.
    pub async fn campaign_status(&self, id: &str) -> Result<CampaignStatus, WriteBackError> {
        let row = self
            .store
            .entry_by_idempotency_key(&started_key(id))
            .await?
            .ok_or_else(|| WriteBackError::NotFound(format!("no campaign {id}")))?;
        let campaign = campaign_of_row(&row)?;
        let keys: Vec<String> = campaign
            .items
            .iter()
            .map(|external_id| {
                format!(
                    "finding:{CAMPAIGN_SOURCE}:{}",
                    writ_core::campaign::item_key(&campaign.id, &campaign.system, external_id)
                )
            })
            .collect();
        let cases: std::collections::HashMap<String, CaseId> = self
            .store
            .entries_by_idempotency_keys(&keys)
            .await?
            .into_iter()
            .filter_map(|row| Some((row.idempotency_key, row.case_id?)))
            .collect();
        let overdue = self.clock.now() >= campaign.deadline;
        let mut items = Vec::with_capacity(campaign.items.len());
        for (external_id, key) in campaign.items.iter().zip(&keys) {
            let case_id = cases.get(key).copied();
            let (state, answer) = match case_id {
                Some(case_id) => match self.store.case(case_id).await? {
                    Some(case) if case.state == CaseState::Closed => {
                        (Some(case.state), self.closing_answer(case_id).await?)
                    }
                    Some(case) => (Some(case.state), None),
                    None => (None, None),
                },
                None => (None, None),
            };
            let owner_team = self
                .store
                .identity_by_external_id(&campaign.system, external_id)
                .await?
                .and_then(|i| i.owner_team);
            items.push(ItemView {
                external_id: external_id.clone(),
                case_id,
                owner_team,
                status: writ_core::campaign::item_status(state, overdue, answer),
            });
        }
        Ok(CampaignStatus {
            campaign,
            seq: row.seq,
            items,
        })
    }

    /// The answer a closed certification case closed on, if it closed on one.
    async fn closing_answer(&self, case_id: CaseId) -> Result<Option<Answer>, WriteBackError> {
        for row in self.store.case_entries(case_id).await?.iter().rev() {
            if let EventBody::CaseClosed(closed) = decode(row)? {
                return Ok(match closed.evidence {
                    ClosureEvidence::Certification { answer, .. } => Some(answer),
                    _ => None,
                });
            }
        }
        Ok(None)
    }

    /// Answers a certification as `voter`: a vote on the case's decision (revoke approves its
    /// change, certify rejects it) under the same rules as any vote; a certification then
    /// closes the case on the answer.
    pub async fn answer_certification(
        &self,
        case_id: CaseId,
        voter: &Principal,
        answer: Answer,
        rationale: &str,
    ) -> Result<AnswerOutcome, WriteBackError> {
        let view = self.case_view(case_id).await?;
        if view.case.finding_type != CERTIFICATION_DUE {
            return Err(WriteBackError::Refused(format!(
                "case {case_id} is not a certification (its finding type is {})",
                view.case.finding_type
            )));
        }
        let vote = self
            .vote(case_id, voter, answer.verdict(), rationale, false)
            .await?;
        let closed = answer == Answer::Certify && self.close_certification(case_id).await?;
        Ok(AnswerOutcome { vote, closed })
    }

    /// Closes a certification case on its answer: certified (rejected) or revoked (its change
    /// verified). `false` when it stands elsewhere (no answer yet, a change under way).
    async fn close_certification(&self, case_id: CaseId) -> Result<bool, WriteBackError> {
        for _ in 0..STALE_RETRIES {
            let view = self.case_view(case_id).await?;
            let answer = match view.case.state {
                CaseState::Rejected => Answer::Certify,
                CaseState::Remediated => Answer::Revoke,
                _ => return Ok(false),
            };
            let Some(decision_seq) = view.decision_seq else {
                return Ok(false);
            };
            let rows = self.store.case_entries(case_id).await?;
            let mut campaign = String::new();
            let mut answered_by = Vec::new();
            let mut rationales = Vec::new();
            for row in &rows {
                match decode(row)? {
                    EventBody::FindingReceived(received) => {
                        if let Some(id) =
                            writ_core::campaign::campaign_of(&received.observation.details)
                        {
                            id.clone_into(&mut campaign);
                        }
                    }
                    // The votes on the decision in force: the rejection that certified it, or
                    // the approvals that revoked it.
                    EventBody::ChangeRejected(rejected)
                        if answer == Answer::Certify && row.seq > decision_seq =>
                    {
                        answered_by.push(rejected.approval.approver.clone());
                        rationales.push(rejected.rationale.clone());
                    }
                    EventBody::ApprovalGranted(granted)
                        if answer == Answer::Revoke && row.seq > decision_seq =>
                    {
                        answered_by.push(granted.approval.approver.clone());
                        rationales.push(granted.rationale.clone());
                    }
                    _ => {}
                }
            }
            if answered_by.is_empty() {
                // Revoked by another path (break-glass): not an answer to the campaign.
                return Ok(false);
            }
            let recorded = entries::recorded_decision_at(&*self.store, decision_seq).await?;
            let mut workflow = workflow_of(&view, &recorded);
            let mut case = view.case.clone();
            case.state = CaseState::Closed;
            case.compliance_closed = true;
            let body = EventBody::CaseClosed(CaseClosed {
                case,
                evidence: ClosureEvidence::Certification {
                    campaign,
                    answer,
                    answered_by,
                    rationale: rationales.join("; "),
                },
            });
            workflow
                .apply(case_id, &body)
                .map_err(|err| WriteBackError::Refused(err.to_string()))?;
            let draft = Draft {
                expect: vec![case_expectation(&view)],
                ..Draft::new(
                    Some(case_id),
                    writ_core::workflow::ENGINE_ACTOR,
                    format!("certification:{case_id}:{}:closed", view.updated_seq),
                    body,
                )
            };
            match self.append_group(vec![draft]).await {
                Err(WriteBackError::Stale(_)) => continue,
                Err(err) => return Err(err),
                Ok(_) => return Ok(true),
            }
        }
        Ok(false)
    }

    /// A certification's deadline fell due: an answered case closes on its answer; an
    /// unanswered one is recorded overdue and decided again as the policy says for
    /// `certification_overdue` (never automatically), in one group. `false` when the case
    /// must wait (a change under way) or changed meanwhile.
    pub(crate) async fn certification_due(
        &self,
        due: &DueDeadline,
    ) -> Result<bool, WriteBackError> {
        let view = self.case_view(due.case_id).await?;
        match view.case.state {
            CaseState::Rejected | CaseState::Remediated => {
                self.close_certification(due.case_id).await
            }
            CaseState::AwaitingApproval | CaseState::NeedsReview => {
                let campaign = self.campaign_of_case(due.case_id).await?;
                let mut case = view.case.clone();
                let key = format!(
                    "certification:{}:{}:overdue",
                    case.id,
                    due.due.as_microsecond()
                );
                let mut group = vec![Draft {
                    expect: vec![case_expectation(&view)],
                    ..Draft::new(
                        Some(case.id),
                        writ_core::workflow::ENGINE_ACTOR,
                        key.clone(),
                        EventBody::CertificationOverdue(CertificationOverdue {
                            case: case.clone(),
                            campaign,
                            deadline: due.due,
                        }),
                    )
                }];
                if let Some(ingestor) = &self.ingestor
                    && let Some(drafts) = ingestor
                        .overdue_redecision(&mut case, &key)
                        .await
                        .map_err(|err| WriteBackError::Refused(err.to_string()))?
                {
                    group.extend(drafts);
                }
                self.record_deadline(group).await
            }
            _ => Ok(false),
        }
    }

    /// The campaign a certification case's latest question came from.
    async fn campaign_of_case(&self, case_id: CaseId) -> Result<String, WriteBackError> {
        for row in self.store.case_entries(case_id).await?.iter().rev() {
            if let EventBody::FindingReceived(received) = decode(row)?
                && let Some(id) = writ_core::campaign::campaign_of(&received.observation.details)
            {
                return Ok(id.to_owned());
            }
        }
        Ok(String::new())
    }
}

fn decode(row: &writ_store::LedgerRow) -> Result<EventBody, WriteBackError> {
    entries::decode_body(row).map_err(|err| WriteBackError::Corrupt {
        seq: row.seq,
        detail: err.to_string(),
    })
}

fn campaign_of_row(row: &writ_store::LedgerRow) -> Result<Campaign, WriteBackError> {
    match decode(row)? {
        EventBody::CampaignStarted(started) => Ok(started.campaign),
        other => Err(WriteBackError::Corrupt {
            seq: row.seq,
            detail: format!("a {} entry, not a campaign", other.kind()),
        }),
    }
}
