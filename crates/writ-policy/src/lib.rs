//! Cedar policy for writ: decides, under a strictly validated policy bundle, what may happen
//! to a non-human identity a finding is about.
//!
//! * [`PolicyBundle::load_dir`] loads a bundle directory (`*.cedar`, one `*.cedarschema`,
//!   `remediations.toml`), validates every policy strictly against the schema, and refuses
//!   the bundle as a whole with every problem named ([`BundleError`]).
//! * [`PolicyBundle::decide`] maps a [`DecisionRequest`] to a [`writ_core::decision::Decision`]
//!   (tier Auto, Approval, CaseOnly or Deny) and the [`Evaluation`] it was made from;
//!   [`PolicyBundle::replay`] re-evaluates that record.
//! * [`run_tests`] runs a folder of TOML test cases against a bundle, like `opa test`.
//!
//! No I/O happens outside [`PolicyBundle::load_dir`] and [`run_tests`]; no clock is read.

#![forbid(unsafe_code)]

mod bundle;
mod decide;
mod error;
mod model;
mod testing;

pub use bundle::{
    ANN_APPROVALS, ANN_APPROVERS, ANN_CASE_ONLY, ANN_FREEZE, ANN_ID, ANN_MAX_HOURS,
    DEFAULT_APPROVERS, DEFAULT_SIGNAL, PolicyBundle, REMEDIATIONS_FILE,
};
pub use decide::NO_PERMIT_MATCHED;
pub use error::{BundleError, BundleIssue, PolicyError};
pub use model::{
    ACCEPT_RISK, ACTIONS, BREAK_GLASS, DISMISS, DecisionRequest, ENGINE_PRINCIPAL, Evaluation,
    NAMESPACE, REMEDIATIONS, ROLLBACK, RequestFacts, asked_evaluation, confidence_decimal,
    criticality_name, kind_name, request_evaluation, rollback_evaluation, severity_name,
    trust_name,
};
pub use testing::{CaseResult, TestReport, run_tests};
