//! Deciding: evaluating an [`Evaluation`] against a bundle and mapping Cedar's answers to a
//! [`Tier`].
//!
//! Tiers are evaluated in order:
//! 1. `auto:<a>` for the principal: `Allow` gives [`Tier::Auto`]. A `Deny` determined by a
//!    `@case_only("true")` forbid gives [`Tier::CaseOnly`] at once.
//! 2. `<a>` for the same principal: `Allow` gives [`Tier::Approval`] with the count and group
//!    of the determining permit (the largest `@approvals` when several permits determine; ties
//!    go to the first id in sorted order).
//! 3. A `Deny` of `<a>` determined by a `@case_only("true")` forbid gives [`Tier::CaseOnly`],
//!    freezing when any such forbid says `@freeze("true")`.
//! 4. Anything else is [`Tier::Deny`]; with no determining policy the reason is exactly
//!    `no permit matched`.
//!
//! A policy that errors during evaluation fails closed: the decision is [`Tier::Deny`] naming
//! the erroring policies.

use cedar_policy::{Authorizer, Decision as CedarDecision, Request, Response};
use writ_core::decision::{Decision, Tier};

use crate::bundle::{PolicyBundle, PolicyMeta, sorted_ids};
use crate::error::PolicyError;
use crate::model::{ACTIONS, CedarInputs, DecisionRequest, Evaluation};

/// The reason given when nothing matched.
pub const NO_PERMIT_MATCHED: &str = "no permit matched";

impl PolicyBundle {
    /// Decides `request` under this bundle; returns the decision and the exact inputs evaluated.
    pub fn decide(
        &self,
        request: &DecisionRequest<'_>,
    ) -> Result<(Decision, Evaluation), PolicyError> {
        // The inputs are built directly rather than parsed back from the record; they are
        // equal either way, so replaying the record gives this decision.
        let (evaluation, inputs) = request.evaluation_and_inputs(&self.schema)?;
        let decision = self.evaluate(&evaluation.action, &inputs)?;
        Ok((decision, evaluation))
    }

    /// Re-evaluates a recorded [`Evaluation`] under this bundle. With the bundle that made the
    /// original decision, the result is identical to it.
    pub fn replay(&self, evaluation: &Evaluation) -> Result<Decision, PolicyError> {
        if !ACTIONS.contains(&evaluation.action.as_str()) {
            return Err(PolicyError::UnknownAction(evaluation.action.clone()));
        }
        // The inputs are the same for both questions: parse them once.
        let inputs = CedarInputs::parse(&self.schema, evaluation)?;
        self.evaluate(&evaluation.action, &inputs)
    }

    /// Asks the tier questions about `action` (one of [`ACTIONS`]: both callers check it before
    /// building the inputs), with the inputs already in Cedar's form.
    fn evaluate(&self, action: &str, inputs: &CedarInputs) -> Result<Decision, PolicyError> {
        let auto = self.authorize(inputs, &format!("auto:{action}"))?;
        if let Some(failure) = self.failure(action, &auto) {
            return Ok(failure);
        }
        let auto_ids = sorted_ids(auto.diagnostics().reason());
        if auto.decision() == CedarDecision::Allow {
            return Ok(self.decision(
                Tier::Auto,
                action,
                format!(
                    "{action} may be done automatically: permitted by {}",
                    auto_ids.join(", ")
                ),
                auto_ids,
            ));
        }
        if let Some(case) = self.case_only(action, &auto_ids) {
            return Ok(case);
        }

        let manual = self.authorize(inputs, action)?;
        if let Some(failure) = self.failure(action, &manual) {
            return Ok(failure);
        }
        let ids = sorted_ids(manual.diagnostics().reason());
        if manual.decision() == CedarDecision::Allow {
            let (count, group) = self.approval_requirement(&ids);
            return Ok(self.decision(
                Tier::Approval {
                    count,
                    approver_group: group.clone(),
                },
                action,
                format!(
                    "{action} needs {count} approval(s) from {group}: permitted by {}",
                    ids.join(", ")
                ),
                ids,
            ));
        }
        if let Some(case) = self.case_only(action, &ids) {
            return Ok(case);
        }
        if ids.is_empty() {
            return Ok(self.decision(Tier::Deny, action, NO_PERMIT_MATCHED.to_owned(), ids));
        }
        Ok(self.decision(
            Tier::Deny,
            action,
            format!("{action} is forbidden by {}", ids.join(", ")),
            ids,
        ))
    }

    fn authorize(&self, inputs: &CedarInputs, cedar_action: &str) -> Result<Response, PolicyError> {
        let action = self.action_uids.get(cedar_action).ok_or_else(|| {
            PolicyError::UndeclaredAction(
                crate::model::entity_uid("Action", cedar_action)
                    .map_or_else(|_| cedar_action.to_owned(), |uid| uid.to_string()),
            )
        })?;
        // `Request::new` checks the principal, resource and context against the schema for
        // this action.
        let request = Request::new(
            inputs.principal.clone(),
            action.clone(),
            inputs.resource.clone(),
            inputs.context.clone(),
            Some(&self.schema),
        )
        .map_err(|e| PolicyError::Request(crate::bundle::with_sources(&e)))?;
        Ok(Authorizer::new().is_authorized(&request, &self.policies, &inputs.entities))
    }

    fn decision(&self, tier: Tier, action: &str, reason: String, ids: Vec<String>) -> Decision {
        // The limits of the permits that allowed it, the strictest of each.
        let terms = match tier {
            Tier::Auto | Tier::Approval { .. } | Tier::CaseOnly { freeze: true } => ids
                .iter()
                .filter_map(|id| self.meta.get(id))
                .map(|meta| meta.terms)
                .reduce(writ_core::decision::Terms::strictest)
                .unwrap_or_default(),
            Tier::CaseOnly { freeze: false } | Tier::Deny => Default::default(),
        };
        Decision {
            terms,
            tier,
            action: action.to_owned(),
            bundle_hash: self.hash,
            determining_policies: ids,
            reason,
        }
    }

    /// Fails closed when any policy errored during evaluation.
    fn failure(&self, action: &str, response: &Response) -> Option<Decision> {
        let mut errors: Vec<(String, String)> = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => (
                    AsRef::<str>::as_ref(e.policy_id()).to_owned(),
                    crate::bundle::with_sources(e.inner()),
                ),
            })
            .collect();
        if errors.is_empty() {
            return None;
        }
        errors.sort();
        let mut ids: Vec<String> = errors.iter().map(|(id, _)| id.clone()).collect();
        ids.dedup();
        let details: Vec<String> = errors
            .iter()
            .map(|(id, message)| format!("{id}: {message}"))
            .collect();
        Some(self.decision(
            Tier::Deny,
            action,
            format!(
                "policy evaluation failed ({}); failing closed",
                details.join("; ")
            ),
            ids,
        ))
    }

    /// A case-only tier when any determining policy is a `@case_only("true")` forbid.
    fn case_only(&self, action: &str, ids: &[String]) -> Option<Decision> {
        let case_only: Vec<&PolicyMeta> = ids
            .iter()
            .filter_map(|id| self.meta.get(id))
            .filter(|m| m.case_only)
            .collect();
        if case_only.is_empty() {
            return None;
        }
        let freeze = case_only.iter().any(|m| m.freeze);
        Some(self.decision(
            Tier::CaseOnly { freeze },
            action,
            format!(
                "{action} only opens a case{}: forbidden by {}",
                if freeze {
                    " and freezes pending approvals"
                } else {
                    ""
                },
                ids.join(", ")
            ),
            ids.to_vec(),
        ))
    }

    /// The strictest requirement among the determining permits.
    fn approval_requirement(&self, ids: &[String]) -> (u32, String) {
        let mut best: Option<&PolicyMeta> = None;
        for meta in ids.iter().filter_map(|id| self.meta.get(id)) {
            if best.is_none_or(|b| meta.approvals > b.approvals) {
                best = Some(meta);
            }
        }
        best.map_or((1, crate::bundle::DEFAULT_APPROVERS.to_owned()), |m| {
            (m.approvals, m.approvers.clone())
        })
    }
}
