//! Certification campaigns over HTTP: `POST /v1/campaigns` starts one over a system's
//! inventory (role `admin`), `GET /v1/campaigns` and `GET /v1/campaigns/{id}` show where they
//! stand (readers), and `POST /v1/cases/{id}/certification` answers one question (certify or
//! revoke) as a vote under the case's approval rule (`writ_engine::campaigns`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use writ_core::campaign::{Answer, Campaign};
use writ_core::principal::Role;
use writ_engine::campaigns::{CampaignAsk, CampaignStatus};

use crate::AppState;
use crate::auth::Caller;
use crate::body::json_body;
use crate::cases::{parse_case_id, writeback, writeback_problem};
use crate::problem::Problem;

/// A campaign as asked for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    /// The system whose identities are put to their owner teams (as the inventory names it).
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub system: String,
    /// When answers are due (RFC 3339): in the future, at most 366 days away.
    #[schema(value_type = String, format = DateTime)]
    pub deadline: jiff::Timestamp,
    /// The identity kinds covered; all when absent.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub kinds: Vec<IdentityKindParam>,
}

/// An identity kind, as the inventory names it.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum IdentityKindParam {
    /// A service account or database role.
    ServiceAccount,
    /// A long-lived API or access key.
    ApiKey,
    /// An OAuth application (client).
    OauthApp,
    /// A short-lived or long-lived token.
    Token,
    /// An X.509 certificate.
    Certificate,
    /// A stored secret.
    Secret,
    /// An AI agent.
    AiAgent,
}

/// A campaign's summary.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignSummary {
    /// Its id.
    pub id: String,
    /// The system.
    pub system: String,
    /// When answers are due.
    pub deadline: String,
    /// Who started it.
    pub started_by: String,
    /// When.
    pub started_at: String,
    /// The identity kinds covered (all when empty).
    pub kinds: Vec<String>,
    /// How many identities it asks about.
    pub items: usize,
    /// The ledger entry that records it.
    pub seq: u64,
}

fn summary(seq: u64, campaign: &Campaign) -> CampaignSummary {
    CampaignSummary {
        id: campaign.id.clone(),
        system: campaign.system.clone(),
        deadline: campaign.deadline.to_string(),
        started_by: campaign.started_by.clone(),
        started_at: campaign.started_at.to_string(),
        kinds: campaign.kinds.clone(),
        items: campaign.items.len(),
        seq,
    }
}

/// What starting a campaign did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignStarted {
    /// The campaign.
    pub campaign: CampaignSummary,
    /// Cases opened for its questions.
    pub opened: usize,
    /// Open certification cases (of an earlier campaign) its questions joined.
    pub joined: usize,
}

/// One identity's question in a campaign.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignItem {
    /// The identity (external id).
    pub external_id: String,
    /// Its case, once opened.
    pub case_id: Option<String>,
    /// Its owner team.
    pub owner_team: Option<String>,
    /// `not_asked`, `pending`, `escalated`, `certified`, `revoking`, `revoked` or `other`.
    pub status: String,
}

/// A campaign and where each of its items stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignReport {
    /// The campaign.
    pub campaign: CampaignSummary,
    /// Items by status.
    pub counts: std::collections::BTreeMap<String, usize>,
    /// Each item, in the campaign's order.
    pub items: Vec<CampaignItem>,
}

fn report(status: &CampaignStatus) -> CampaignReport {
    let mut counts = std::collections::BTreeMap::new();
    for item in &status.items {
        *counts
            .entry(<&str>::from(item.status).to_owned())
            .or_insert(0) += 1;
    }
    CampaignReport {
        campaign: summary(status.seq, &status.campaign),
        counts,
        items: status
            .items
            .iter()
            .map(|item| CampaignItem {
                external_id: item.external_id.clone(),
                case_id: item.case_id.map(|id| id.to_string()),
                owner_team: item.owner_team.clone(),
                status: <&str>::from(item.status).to_owned(),
            })
            .collect(),
    }
}

/// Who starts campaigns.
const STARTERS: &[Role] = &[Role::Admin];

/// Start a certification campaign as the authenticated admin: every identity of the system
/// (of the kinds named) is put to its owner team as a `certification_due` case, decided by
/// policy, to certify or revoke by the deadline.
#[utoipa::path(post, path = "/v1/campaigns", tag = "campaigns",
    request_body(content = CampaignRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Started: each identity's question is a case", body = CampaignStarted),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not start campaigns", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The system has no identities (of those kinds) in the inventory", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No policy bundle is loaded", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not acceptable (a deadline in the past or over a year away, an unknown kind)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn start_campaign(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CampaignStarted>), Problem> {
    caller.require(STARTERS, "starting a campaign")?;
    let request: CampaignRequest = json_body(&state, body)?;
    let started = writeback(&state)?
        .start_campaign(
            caller.principal(),
            &CampaignAsk {
                system: request.system,
                deadline: request.deadline,
                kinds: request
                    .kinds
                    .iter()
                    .map(|k| <&str>::from(*k).to_owned())
                    .collect(),
            },
        )
        .await
        .map_err(|err| match err {
            writ_engine::writeback::WriteBackError::NotFound(why) => {
                Problem::new(StatusCode::NOT_FOUND, "no-identities", "Nothing to certify")
                    .field("system", why)
            }
            other => writeback_problem(other),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(CampaignStarted {
            campaign: summary(started.seq, &started.campaign),
            opened: started.opened,
            joined: started.joined,
        }),
    ))
}

/// The campaigns started, newest first (at most 1000).
#[utoipa::path(get, path = "/v1/campaigns", tag = "campaigns",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The campaigns, newest first", body = [CampaignSummary]),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not read campaigns", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn list_campaigns(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<CampaignSummary>>, Problem> {
    caller.require(crate::READERS, "reading campaigns")?;
    let campaigns = writeback(&state)?
        .campaigns()
        .await
        .map_err(writeback_problem)?;
    Ok(Json(
        campaigns
            .iter()
            .map(|(seq, campaign)| summary(*seq, campaign))
            .collect(),
    ))
}

/// A campaign and where each of its items stands.
#[utoipa::path(get, path = "/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = String, Path, description = "The campaign id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The campaign and its items", body = CampaignReport),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not read campaigns", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such campaign", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn get_campaign(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CampaignReport>, Problem> {
    caller.require(crate::READERS, "reading campaigns")?;
    let status = writeback(&state)?
        .campaign_status(&id)
        .await
        .map_err(|err| match err {
            writ_engine::writeback::WriteBackError::NotFound(why) => {
                Problem::new(StatusCode::NOT_FOUND, "no-campaign", "No such campaign")
                    .field("id", why)
            }
            other => writeback_problem(other),
        })?;
    Ok(Json(report(&status)))
}

/// An answer to a certification.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// `certify` (keep the identity) or `revoke` (take it away: the policy's change).
    pub answer: AnswerParam,
    /// Why (required, not blank).
    #[schema(
        min_length = 1,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub rationale: String,
}

/// An answer's kind.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnswerParam {
    /// Keep it.
    Certify,
    /// Take it away.
    Revoke,
}

/// What an answer came to.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnswerResponse {
    /// The case.
    pub case_id: String,
    /// Who answered.
    pub voter: String,
    /// The answer.
    pub answer: AnswerParam,
    /// The approval rule it counted under.
    pub rule: String,
    /// The groups the vote counted for.
    pub groups: Vec<String>,
    /// How many more approvals a revocation needs, at least.
    pub missing: u64,
    /// The revocation's job, once the rule is met.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Whether the case closed on the answer (a certification).
    pub closed: bool,
}

/// Answer a certification as the authenticated principal: a vote on the case's decision
/// under its approval rule (the owner team, N of M, separation of duties). `revoke` approves
/// the policy's change, written back once the rule is met; `certify` rejects it and the case
/// closes with the answer as evidence.
#[utoipa::path(post, path = "/v1/cases/{id}/certification", tag = "campaigns",
    params(("id" = String, Path, format = Uuid, description = "The certification case")),
    request_body(content = AnswerRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Recorded", body = AnswerResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not answer it (not in the rule's groups, separation of duties)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a certification, not awaiting an answer, or answered by this principal already", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn answer(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AnswerResponse>, Problem> {
    caller.require(
        &[Role::Approver, Role::RiskOwner],
        "answering a certification",
    )?;
    let id = parse_case_id(&id)?;
    let request: AnswerRequest = json_body(&state, body)?;
    let answer = match request.answer {
        AnswerParam::Certify => Answer::Certify,
        AnswerParam::Revoke => Answer::Revoke,
    };
    let outcome = writeback(&state)?
        .answer_certification(id, caller.principal(), answer, &request.rationale)
        .await
        .map_err(writeback_problem)?;
    Ok(Json(AnswerResponse {
        case_id: id.to_string(),
        voter: caller.principal().name.clone(),
        answer: request.answer,
        rule: outcome.vote.rule,
        groups: outcome.vote.groups,
        missing: outcome.vote.missing,
        job_id: outcome.vote.job.map(|job| job.id.to_string()),
        closed: outcome.closed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_identity_kind_is_a_kind_parameter() {
        use strum::VariantArray as _;
        for kind in writ_core::identity::IdentityKind::VARIANTS {
            let name: &str = (*kind).into();
            let param: IdentityKindParam = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(<&str>::from(param), name);
        }
    }
}
