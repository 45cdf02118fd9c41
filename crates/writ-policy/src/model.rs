//! The entity and request model: how writ's findings and identities become Cedar entities,
//! context and requests, and the [`Evaluation`] record that makes a decision replayable.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{Context, Entities, EntityId, EntityTypeName, EntityUid, Request, Schema};
use serde_json::{Value, json};
use writ_core::finding::{Observation, Severity, Trust};
use writ_core::identity::{Criticality, Identity, IdentityKind};

use crate::bundle::with_sources;
use crate::error::PolicyError;

/// The Cedar namespace of writ's entity types and actions.
pub const NAMESPACE: &str = "Writ";

/// The remediations a finding type can map to (`remediations.toml`).
pub const REMEDIATIONS: [&str; 8] = [
    "disable",
    "enable",
    "revoke",
    "delete",
    "rotate",
    "reduce_scope",
    "set_expiry",
    "grant",
];

/// The actions writ asks about: the [`REMEDIATIONS`], and what a principal asks about a case
/// (see [`asked_evaluation`]): `rollback` (undoing a verified change), `accept_risk` (an
/// exception), `break_glass` (an emergency change without approvals) and `dismiss` (closing a
/// case as a false positive). Each has two Cedar
/// actions: `auto:<a>` and `<a>`. A bundle whose schema does not declare one refuses it.
pub const ACTIONS: [&str; 14] = [
    REMEDIATIONS[0],
    REMEDIATIONS[1],
    REMEDIATIONS[2],
    REMEDIATIONS[3],
    REMEDIATIONS[4],
    REMEDIATIONS[5],
    REMEDIATIONS[6],
    REMEDIATIONS[7],
    ROLLBACK,
    ACCEPT_RISK,
    BREAK_GLASS,
    DISMISS,
    writ_core::request::CREATE_ACTION,
    writ_core::request::SET_SCOPES_ACTION,
];

/// The Cedar action a dismissal as a false positive is decided as.
pub const DISMISS: &str = "dismiss";

/// The Cedar action a rollback is decided as.
pub const ROLLBACK: &str = "rollback";

/// The Cedar action an exception (a risk acceptance) is decided as.
pub const ACCEPT_RISK: &str = "accept_risk";

/// The Cedar action an emergency change without approvals is decided as.
pub const BREAK_GLASS: &str = "break_glass";

/// The evaluation of rolling back the change a recorded decision allowed, asked for by the
/// principal `requester`: the same identity, finding and source as the decision of the
/// change (`context.requested_action` names the change's action), with the action `rollback`
/// and the principal `Writ::User::"<requester>"`.
pub fn rollback_evaluation(
    change: &Evaluation,
    requester: &str,
) -> Result<Evaluation, PolicyError> {
    asked_evaluation(change, ROLLBACK, requester)
}

/// The evaluation of `action` ([`ROLLBACK`], [`ACCEPT_RISK`], [`BREAK_GLASS`]) asked for by the
/// principal `requester` about the case a recorded decision decided: the same identity,
/// finding and source (`context.requested_action` names that decision's action), with the
/// principal `Writ::User::"<requester>"`.
pub fn asked_evaluation(
    change: &Evaluation,
    action: &str,
    requester: &str,
) -> Result<Evaluation, PolicyError> {
    let user = entity_uid("User", requester)?;
    let mut evaluation = change.clone();
    evaluation.action = action.to_owned();
    let old_principal = change.principal.clone();
    evaluation.principal = user.to_string();
    if let Some(entities) = evaluation.entities.as_array_mut() {
        entities.retain(|entity| {
            parse_uid_json(&entity["uid"]).is_none_or(|uid| uid.to_string() != old_principal)
        });
        entities.insert(
            0,
            json!({ "uid": uid_json(&user), "attrs": {}, "parents": [] }),
        );
    }
    Ok(evaluation)
}

/// Everything a requested change's decision is made from (see [`request_evaluation`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The request as it will be recorded (its change worked out from the target's state).
    pub request: &'a writ_core::request::Request,
    /// The identity it is about, when the inventory knows it (never, for a new account).
    pub identity: Option<&'a Identity>,
    /// Whether that identity's source of truth is complete and fresh.
    pub reconciled: bool,
    /// How long the request lasts, in hours ([`writ_core::request::RequestSpec::duration_hours`]).
    pub duration_hours: i64,
}

/// The evaluation of a requested change: the principal `Writ::User::"<requester>"`, the
/// identity (the inventory's, or the one a new account will be: kind `service_account`, the
/// requested owner team), the change's action (`create`, `set_scopes`, `grant`), and
/// `context.request` (kind, requester, reason, ticket, the scopes wanted, added and removed,
/// the duration in hours). `context.finding` is `request:<kind>` with signal `request`.
/// Decided with [`crate::PolicyBundle::replay`], like every recorded evaluation.
pub fn request_evaluation(facts: &RequestFacts<'_>) -> Result<Evaluation, PolicyError> {
    use writ_core::request::RequestSpec;
    let request = facts.request;
    let spec = &request.spec;
    let action = request.change.name();
    if !ACTIONS.contains(&action) {
        return Err(PolicyError::UnknownAction(action.to_owned()));
    }
    let user = entity_uid("User", &request.requester)?;
    let current: BTreeSet<String> = request.current_scopes.iter().cloned().collect();
    let (added, removed) = spec.scope_delta(&current);
    let (wanted, reason) = match spec {
        RequestSpec::NewServiceAccount(r) => (Vec::new(), r.purpose.as_str()),
        RequestSpec::OauthScopeChange(r) => (r.scopes.clone(), r.justification.as_str()),
        RequestSpec::AgentToolAccess(r) => (r.scopes.clone(), r.justification.as_str()),
        RequestSpec::Offboard(r) => (Vec::new(), r.justification.as_str()),
    };
    let (resource, attrs) = match facts.identity {
        Some(identity) => (
            identity_uid(&identity.id.to_string())?,
            json!({
                "kind": kind_name(identity.kind),
                "system": identity.system,
                "has_owner": identity.owner_team.as_deref().is_some_and(|t| !t.is_empty()),
                "owner_team": identity.owner_team.as_deref().unwrap_or_default(),
                "criticality": criticality_name(identity.criticality),
                "privileged": identity.privileged,
                "tags": identity.tags,
                "reconciled": facts.reconciled,
            }),
        ),
        None => {
            let (kind, owner_team) = match spec {
                RequestSpec::NewServiceAccount(r) => ("service_account", r.owner_team.as_str()),
                RequestSpec::OauthScopeChange(_) => ("oauth_app", ""),
                RequestSpec::AgentToolAccess(_) => ("ai_agent", ""),
                RequestSpec::Offboard(_) => ("unknown", ""),
            };
            (
                identity_uid(&format!("request:{}/{}", spec.system(), spec.external_id()))?,
                json!({
                    "kind": kind,
                    "system": spec.system(),
                    "has_owner": !owner_team.is_empty(),
                    "owner_team": owner_team,
                    "criticality": "unknown",
                    "privileged": false,
                    "tags": [],
                    "reconciled": matches!(spec, RequestSpec::NewServiceAccount(_)),
                }),
            )
        }
    };
    let entities = json!([
        { "uid": uid_json(&user), "attrs": {}, "parents": [] },
        { "uid": uid_json(&resource), "attrs": attrs, "parents": [] },
    ]);
    let context = json!({
        "finding": {
            "type": spec.case_type(),
            "severity": "info",
            "confidence": { "__extn": { "fn": "decimal", "arg": confidence_decimal(10_000)? } },
            "signal": "request",
        },
        "source": { "name": request.requester, "trust": trust_name(Trust::High) },
        "requested_action": action,
        "request": {
            "kind": spec.kind(),
            "requester": request.requester,
            "reason": reason,
            "ticket": spec.ticket().unwrap_or_default(),
            "scopes": wanted,
            "scopes_added": added,
            "scopes_removed": removed,
            "duration_hours": facts.duration_hours,
        },
    });
    Ok(Evaluation {
        action: action.to_owned(),
        principal: user.to_string(),
        resource: resource.to_string(),
        entities,
        context,
    })
}

fn parse_uid_json(value: &Value) -> Option<EntityUid> {
    let type_name = EntityTypeName::from_str(value["type"].as_str()?).ok()?;
    Some(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(value["id"].as_str()?),
    ))
}

/// The principal writ asks about: the automation engine.
pub const ENGINE_PRINCIPAL: &str = r#"Writ::Engine::"automation""#;

/// Everything a decision is made from. Borrowed; nothing is read from anywhere else.
#[derive(Debug, Clone, Copy)]
pub struct DecisionRequest<'a> {
    /// The identity the finding is about, or `None` when the inventory does not know it.
    pub identity: Option<&'a Identity>,
    /// Whether the identity's source of truth is complete and fresh (ignored when `identity`
    /// is `None`: unknown identities are never reconciled).
    pub reconciled: bool,
    /// The finding.
    pub observation: &'a Observation,
    /// What the finding signals (`inactivity`, `leak`, `compromise`, `overprivilege`, ...).
    pub signal: &'a str,
    /// The authenticated source that sent the finding.
    pub source_name: &'a str,
    /// How much that source is trusted.
    pub source_trust: Trust,
    /// The remediation action asked about (`disable`, `revoke`, ...; see [`ACTIONS`]).
    pub action: &'a str,
}

pub use writ_core::decision::Evaluation;

/// Cedar's name for an identity kind; also the `kind` attribute.
pub fn kind_name(kind: IdentityKind) -> &'static str {
    match kind {
        IdentityKind::ServiceAccount => "service_account",
        IdentityKind::ApiKey => "api_key",
        IdentityKind::OauthApp => "oauth_app",
        IdentityKind::Token => "token",
        IdentityKind::Certificate => "certificate",
        IdentityKind::Secret => "secret",
        IdentityKind::AiAgent => "ai_agent",
    }
}

/// The `criticality` attribute.
pub fn criticality_name(criticality: Criticality) -> &'static str {
    match criticality {
        Criticality::Low => "low",
        Criticality::Medium => "medium",
        Criticality::High => "high",
        Criticality::BusinessCritical => "business_critical",
    }
}

/// The `finding.severity` context field.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// The `source.trust` context field.
pub fn trust_name(trust: Trust) -> &'static str {
    match trust {
        Trust::Low => "low",
        Trust::Medium => "medium",
        Trust::High => "high",
    }
}

/// Formats a confidence in ten-thousandths as a Cedar decimal literal (`9500` -> `0.9500`).
pub fn confidence_decimal(confidence_bp: u16) -> Result<String, PolicyError> {
    if confidence_bp > 10_000 {
        return Err(PolicyError::Confidence(confidence_bp));
    }
    Ok(format!(
        "{}.{:04}",
        confidence_bp / 10_000,
        confidence_bp % 10_000
    ))
}

/// A request's attribute values, worked out once and rendered two ways: as the evaluation
/// record kept in the ledger ([`Facts::record`], Cedar's JSON formats) and as Cedar values
/// built directly ([`Facts::cedar`]), which is what [`crate::PolicyBundle::decide`] evaluates.
/// The two renderings are equal once parsed (a property test holds them to it), so replaying
/// the record gives the same decision.
struct Facts<'a> {
    principal: EntityUid,
    resource: EntityUid,
    kind: &'a str,
    system: &'a str,
    owner_team: &'a str,
    criticality: &'a str,
    privileged: bool,
    tags: BTreeSet<&'a str>,
    reconciled: bool,
    confidence: String,
}

impl<'a> Facts<'a> {
    fn of(request: &DecisionRequest<'a>) -> Result<Self, PolicyError> {
        if !ACTIONS.contains(&request.action) {
            return Err(PolicyError::UnknownAction(request.action.to_owned()));
        }
        let confidence = confidence_decimal(request.observation.confidence_bp)?;
        let principal = engine_principal()?;
        Ok(match request.identity {
            Some(identity) => Facts {
                principal,
                resource: identity_uid(&identity.id.to_string())?,
                kind: kind_name(identity.kind),
                system: &identity.system,
                owner_team: identity.owner_team.as_deref().unwrap_or_default(),
                criticality: criticality_name(identity.criticality),
                privileged: identity.privileged,
                tags: identity.tags.iter().map(String::as_str).collect(),
                reconciled: request.reconciled,
                confidence,
            },
            None => {
                let subject = &request.observation.subject;
                Facts {
                    principal,
                    resource: identity_uid(&format!(
                        "unknown:{}/{}",
                        subject.system, subject.external_id
                    ))?,
                    kind: subject.kind_hint.map_or("unknown", kind_name),
                    system: &subject.system,
                    owner_team: "",
                    criticality: "unknown",
                    privileged: false,
                    tags: BTreeSet::new(),
                    reconciled: false,
                    confidence,
                }
            }
        })
    }

    /// The evaluation record: entities (principal, then resource) and context as JSON.
    fn record(&self, request: &DecisionRequest<'_>) -> Evaluation {
        let entities = json!([
            {
                "uid": uid_json(&self.principal),
                "attrs": {},
                "parents": [],
            },
            {
                "uid": uid_json(&self.resource),
                "attrs": {
                    "kind": self.kind,
                    "system": self.system,
                    "has_owner": !self.owner_team.is_empty(),
                    "owner_team": self.owner_team,
                    "criticality": self.criticality,
                    "privileged": self.privileged,
                    "tags": self.tags,
                    "reconciled": self.reconciled,
                },
                "parents": [],
            },
        ]);
        let context = json!({
            "finding": {
                "type": request.observation.finding_type,
                "severity": severity_name(request.observation.severity),
                "confidence": { "__extn": { "fn": "decimal", "arg": self.confidence } },
                "signal": request.signal,
            },
            "source": {
                "name": request.source_name,
                "trust": trust_name(request.source_trust),
            },
            "requested_action": request.action,
        });
        Evaluation {
            action: request.action.to_owned(),
            principal: self.principal.to_string(),
            resource: self.resource.to_string(),
            entities,
            context,
        }
    }

    /// The same entities and context as Cedar values, without a JSON round trip. The entities
    /// are checked against `schema` as parsing the record would check them.
    fn cedar(
        &self,
        request: &DecisionRequest<'_>,
        schema: &Schema,
    ) -> Result<(Entities, Context), PolicyError> {
        use std::collections::{HashMap, HashSet};

        use cedar_policy::{Entity, RestrictedExpression as X};

        let text = |value: &str| X::new_string(value.to_owned());
        let attrs = HashMap::from([
            ("kind".to_owned(), text(self.kind)),
            ("system".to_owned(), text(self.system)),
            (
                "has_owner".to_owned(),
                X::new_bool(!self.owner_team.is_empty()),
            ),
            ("owner_team".to_owned(), text(self.owner_team)),
            ("criticality".to_owned(), text(self.criticality)),
            ("privileged".to_owned(), X::new_bool(self.privileged)),
            (
                "tags".to_owned(),
                X::new_set(self.tags.iter().map(|t| text(t))),
            ),
            ("reconciled".to_owned(), X::new_bool(self.reconciled)),
        ]);
        let resource = Entity::new(self.resource.clone(), attrs, HashSet::new())
            .map_err(|e| PolicyError::Entities(with_sources(&e)))?;
        let principal = Entity::new_no_attrs(self.principal.clone(), HashSet::new());
        let entities = Entities::from_entities([principal, resource], Some(schema))
            .map_err(|e| PolicyError::Entities(with_sources(&e)))?;
        let record = |fields: Vec<(&str, X)>| {
            X::new_record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)))
                .map_err(|e| PolicyError::Context(with_sources(&e)))
        };
        let finding = record(vec![
            ("type", text(&request.observation.finding_type)),
            (
                "severity",
                text(severity_name(request.observation.severity)),
            ),
            ("confidence", X::new_decimal(&self.confidence)),
            ("signal", text(request.signal)),
        ])?;
        let source = record(vec![
            ("name", text(request.source_name)),
            ("trust", text(trust_name(request.source_trust))),
        ])?;
        let context = Context::from_pairs([
            ("finding".to_owned(), finding),
            ("source".to_owned(), source),
            ("requested_action".to_owned(), text(request.action)),
        ])
        .map_err(|e| PolicyError::Context(with_sources(&e)))?;
        Ok((entities, context))
    }
}

/// What Cedar evaluates for one decision: both tier questions share it.
pub(crate) struct CedarInputs {
    pub(crate) principal: EntityUid,
    pub(crate) resource: EntityUid,
    pub(crate) entities: Entities,
    pub(crate) context: Context,
}

impl CedarInputs {
    /// The inputs of a recorded evaluation, parsed (the entities checked against `schema`).
    pub(crate) fn parse(schema: &Schema, evaluation: &Evaluation) -> Result<Self, PolicyError> {
        Ok(Self {
            principal: parse_uid(&evaluation.principal)?,
            resource: EntityUid::from_str(&evaluation.resource)
                .map_err(|e| PolicyError::Evaluation(format!("bad resource uid: {e}")))?,
            entities: cedar_entities(schema, evaluation)?,
            context: cedar_context(evaluation)?,
        })
    }
}

impl DecisionRequest<'_> {
    /// Builds the evaluation record: entities (principal, then resource) and context.
    pub fn evaluation(&self) -> Result<Evaluation, PolicyError> {
        Ok(Facts::of(self)?.record(self))
    }

    /// The evaluation record and the same inputs as Cedar values (checked against `schema`).
    pub(crate) fn evaluation_and_inputs(
        &self,
        schema: &Schema,
    ) -> Result<(Evaluation, CedarInputs), PolicyError> {
        let facts = Facts::of(self)?;
        let (entities, context) = facts.cedar(self, schema)?;
        let evaluation = facts.record(self);
        Ok((
            evaluation,
            CedarInputs {
                principal: facts.principal,
                resource: facts.resource,
                entities,
                context,
            },
        ))
    }
}

fn uid_json(uid: &EntityUid) -> Value {
    json!({ "type": uid.type_name().to_string(), "id": uid.id().unescaped() })
}

/// `Writ::<type_name>::"<id>"`.
pub(crate) fn entity_uid(type_name: &str, id: &str) -> Result<EntityUid, PolicyError> {
    let type_name = EntityTypeName::from_str(&format!("{NAMESPACE}::{type_name}"))
        .map_err(|e| PolicyError::Request(format!("bad entity type {type_name:?}: {e}")))?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

/// [`ENGINE_PRINCIPAL`], parsed once (Cedar's parser is costly next to a decision).
fn engine_principal() -> Result<EntityUid, PolicyError> {
    static PRINCIPAL: LazyLock<Option<EntityUid>> =
        LazyLock::new(|| parse_uid(ENGINE_PRINCIPAL).ok());
    match &*PRINCIPAL {
        Some(uid) => Ok(uid.clone()),
        None => parse_uid(ENGINE_PRINCIPAL),
    }
}

/// `Writ::Identity::"<id>"`, with the type name parsed once.
fn identity_uid(id: &str) -> Result<EntityUid, PolicyError> {
    static IDENTITY: LazyLock<Option<EntityTypeName>> =
        LazyLock::new(|| EntityTypeName::from_str(&format!("{NAMESPACE}::Identity")).ok());
    match &*IDENTITY {
        Some(type_name) => Ok(EntityUid::from_type_name_and_id(
            type_name.clone(),
            EntityId::new(id),
        )),
        None => entity_uid("Identity", id),
    }
}

fn parse_uid(text: &str) -> Result<EntityUid, PolicyError> {
    EntityUid::from_str(text).map_err(|e| PolicyError::InvalidPrincipal {
        principal: text.to_owned(),
        message: e.to_string(),
    })
}

/// Whether the schema declares `Writ::Action::"<name>"`.
pub(crate) fn schema_declares_action(schema: &Schema, name: &str) -> bool {
    entity_uid("Action", name).is_ok_and(|uid| schema.actions().any(|a| *a == uid))
}

/// Turns an evaluation record into a Cedar request for `cedar_action` and its entities,
/// checking both against the schema.
/// The entities of an evaluation, validated against `schema`.
pub(crate) fn cedar_entities(
    schema: &Schema,
    evaluation: &Evaluation,
) -> Result<Entities, PolicyError> {
    Entities::from_json_value(evaluation.entities.clone(), Some(schema))
        .map_err(|e| PolicyError::Entities(with_sources(&e)))
}

/// The context of an evaluation. Parsed once per decision and shared by both questions; it is
/// checked against the schema when each request is built.
pub(crate) fn cedar_context(evaluation: &Evaluation) -> Result<Context, PolicyError> {
    Context::from_json_value(evaluation.context.clone(), None)
        .map_err(|e| PolicyError::Context(with_sources(&e)))
}

/// The request and entities of an evaluation for one Cedar action.
pub(crate) fn cedar_inputs(
    schema: &Schema,
    evaluation: &Evaluation,
    cedar_action: &str,
) -> Result<(Request, Entities), PolicyError> {
    let (request, entities) = request_parts(schema, evaluation, cedar_action, true)?;
    let entities = match entities {
        Some(entities) => entities,
        None => cedar_entities(schema, evaluation)?,
    };
    Ok((request, entities))
}

fn request_parts(
    schema: &Schema,
    evaluation: &Evaluation,
    cedar_action: &str,
    with_entities: bool,
) -> Result<(Request, Option<Entities>), PolicyError> {
    let action = entity_uid("Action", cedar_action)?;
    if !schema.actions().any(|a| *a == action) {
        return Err(PolicyError::UndeclaredAction(action.to_string()));
    }
    let principal = parse_uid(&evaluation.principal)?;
    let resource = EntityUid::from_str(&evaluation.resource)
        .map_err(|e| PolicyError::Evaluation(format!("bad resource uid: {e}")))?;
    let entities = if with_entities {
        Some(cedar_entities(schema, evaluation)?)
    } else {
        None
    };
    let context = Context::from_json_value(evaluation.context.clone(), Some((schema, &action)))
        .map_err(|e| PolicyError::Context(with_sources(&e)))?;
    let request = Request::new(principal, action, resource, context, Some(schema))
        .map_err(|e| PolicyError::Request(with_sources(&e)))?;
    Ok((request, entities))
}

/// Checks that the entities and context writ builds conform to `schema` for every writ action
/// it declares. Returns the problems found (empty when the schema fits writ's model).
pub(crate) fn schema_contract_problems(schema: &Schema) -> Vec<String> {
    use writ_core::finding::{SourceFormat, SubjectRef};
    use writ_core::ids::IdentityId;

    let identity = Identity {
        id: IdentityId(uuid::Uuid::nil()),
        system: "contract:check".into(),
        external_id: "sample".into(),
        kind: IdentityKind::Token,
        owner_team: Some("team".into()),
        criticality: Criticality::Medium,
        privileged: false,
        tags: vec!["tag".into()],
        last_used_at: None,
        reconciled_at: None,
    };
    let observation = Observation {
        status: writ_core::finding::FindingStatus::Fail,
        format: SourceFormat::Native,
        finding_type: "contract_check".into(),
        severity: Severity::Medium,
        confidence_bp: 5_000,
        subject: SubjectRef {
            system: "contract:check".into(),
            external_id: "sample".into(),
            kind_hint: None,
        },
        observed_at: None,
        title: String::new(),
        source_key: None,
        controls: vec![],
        details: Value::Null,
    };
    // Problem text -> the Cedar actions it occurs for.
    let mut problems: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut declared = 0usize;
    for action in ACTIONS {
        for cedar_action in [format!("auto:{action}"), action.to_owned()] {
            if !schema_declares_action(schema, &cedar_action) {
                continue;
            }
            declared += 1;
            for known in [Some(&identity), None] {
                let request = DecisionRequest {
                    identity: known,
                    reconciled: true,
                    observation: &observation,
                    signal: "contract",
                    source_name: "contract",
                    source_trust: Trust::High,
                    action,
                };
                let result = request
                    .evaluation()
                    .and_then(|e| cedar_inputs(schema, &e, &cedar_action));
                if let Err(e) = result {
                    let actions = problems.entry(e.to_string()).or_default();
                    if !actions.contains(&cedar_action) {
                        actions.push(cedar_action.clone());
                    }
                }
            }
        }
    }
    if declared == 0 {
        return vec![format!(
            "schema declares none of writ's actions ({NAMESPACE}::Action::\"auto:<a>\" and \"<a>\" for <a> in {})",
            ACTIONS.join(", ")
        )];
    }
    problems
        .into_iter()
        .map(|(problem, actions)| {
            let which = if actions.len() == declared {
                "every action".to_owned()
            } else {
                format!("action(s) {}", actions.join(", "))
            };
            format!("schema does not fit writ's entity model ({which}): {problem}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use writ_core::finding::{SourceFormat, SubjectRef};
    use writ_core::ids::IdentityId;

    use super::*;

    fn demo_schema() -> Schema {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo");
        crate::PolicyBundle::load_dir(&dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .schema
    }

    fn any_kind() -> impl Strategy<Value = IdentityKind> {
        prop_oneof![
            Just(IdentityKind::ServiceAccount),
            Just(IdentityKind::ApiKey),
            Just(IdentityKind::OauthApp),
            Just(IdentityKind::Token),
            Just(IdentityKind::Certificate),
            Just(IdentityKind::Secret),
            Just(IdentityKind::AiAgent),
        ]
    }

    prop_compose! {
        fn any_identity()(
            kind in any_kind(),
            criticality in prop_oneof![
                Just(Criticality::Low),
                Just(Criticality::Medium),
                Just(Criticality::High),
                Just(Criticality::BusinessCritical),
            ],
            id in any::<u128>(),
            system in "\\PC{0,12}",
            owner_team in proptest::option::of("\\PC{0,8}"),
            privileged in any::<bool>(),
            tags in proptest::collection::vec("\\PC{0,6}", 0..4),
        ) -> Identity {
            Identity {
                id: IdentityId(uuid::Uuid::from_u128(id)),
                system,
                external_id: "x".into(),
                kind,
                owner_team,
                criticality,
                privileged,
                tags,
                last_used_at: None,
                reconciled_at: None,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The Cedar values `decide` evaluates equal those parsed from the record that
        /// `replay` evaluates, for any request.
        #[test]
        fn direct_inputs_equal_the_parsed_record(
            identity in proptest::option::of(any_identity()),
            reconciled in any::<bool>(),
            finding_type in "\\PC{0,12}",
            severity in prop_oneof![
                Just(Severity::Info), Just(Severity::Low), Just(Severity::Medium),
                Just(Severity::High), Just(Severity::Critical),
            ],
            confidence_bp in 0u16..=10_000,
            kind_hint in proptest::option::of(any_kind()),
            subject in "\\PC{0,12}",
            signal in "\\PC{0,8}",
            source_name in "\\PC{0,8}",
            trust in prop_oneof![Just(Trust::Low), Just(Trust::Medium), Just(Trust::High)],
            action in proptest::sample::select(ACTIONS.to_vec()),
        ) {
            static SCHEMA: std::sync::LazyLock<Schema> = std::sync::LazyLock::new(demo_schema);
            let observation = Observation {
                status: writ_core::finding::FindingStatus::Fail,
                format: SourceFormat::Native,
                finding_type,
                severity,
                confidence_bp,
                subject: SubjectRef { system: subject.clone(), external_id: subject, kind_hint },
                observed_at: None,
                title: String::new(),
                source_key: None,
                controls: vec![],
                details: Value::Null,
            };
            let request = DecisionRequest {
                identity: identity.as_ref(),
                reconciled,
                observation: &observation,
                signal: &signal,
                source_name: &source_name,
                source_trust: trust,
                action,
            };
            let (record, direct) = request.evaluation_and_inputs(&SCHEMA).unwrap();
            prop_assert_eq!(&record, &request.evaluation().unwrap());
            let parsed = CedarInputs::parse(&SCHEMA, &record).unwrap();
            prop_assert_eq!(direct.principal, parsed.principal);
            prop_assert_eq!(direct.resource, parsed.resource);
            // `Entities`' `==` compares entity uids only; `deep_eq` compares attributes too.
            prop_assert!(direct.entities.deep_eq(&parsed.entities));
            prop_assert_eq!(direct.context, parsed.context);
        }
    }

    #[test]
    fn confidence_is_an_exact_decimal() {
        assert_eq!(confidence_decimal(9_500).unwrap(), "0.9500");
        assert_eq!(confidence_decimal(9_001).unwrap(), "0.9001");
        assert_eq!(confidence_decimal(10_000).unwrap(), "1.0000");
        assert_eq!(confidence_decimal(0).unwrap(), "0.0000");
        assert!(confidence_decimal(10_001).is_err());
    }
}
