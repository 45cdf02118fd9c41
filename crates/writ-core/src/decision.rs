//! Policy decisions: what policy said may happen to a finding.

use serde::{Deserialize, Serialize};

use crate::Sha256Digest;

/// The tier a decision lands in, evaluated in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tier", rename_all = "snake_case")]
pub enum Tier {
    /// The engine may apply the change without a human.
    Auto,
    /// The change needs approvals.
    Approval {
        /// How many distinct approvers.
        count: u32,
        /// The group they must belong to (for example `owner_team`).
        approver_group: String,
    },
    /// Only open a case; optionally freeze pending approvals on the identity.
    CaseOnly {
        /// Freeze approvals already pending.
        freeze: bool,
    },
    /// No change may be made.
    Deny,
}

/// A recorded decision, with everything needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The outcome.
    pub tier: Tier,
    /// The action the decision is about (for example `disable`).
    pub action: String,
    /// The hash of the policy bundle that decided.
    pub bundle_hash: Sha256Digest,
    /// The ids of the policies that determined the outcome; empty for a default deny.
    pub determining_policies: Vec<String>,
    /// Why, in words (for example "no permit matched").
    pub reason: String,
    /// Limits the determining policies set on what they allow (exceptions' longest duration,
    /// a break-glass review's deadline); empty for most decisions.
    #[serde(default, skip_serializing_if = "Terms::is_empty")]
    pub terms: Terms,
}

/// Limits a permitting policy sets on what it allows, from its annotations. When several
/// policies determine a decision, the strictest value of each applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    /// The longest an exception (a risk acceptance) may last, in days (`@max_days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_days: Option<u32>,
    /// How many days before an exception expires re-approval is asked for
    /// (`@renew_before_days`); none: it simply expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before_days: Option<u32>,
    /// Within how many hours a break-glass change must be reviewed (`@review_within_hours`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_within_hours: Option<u32>,
    /// The longest a requested change may hold, in hours (`@max_hours`): an agent's
    /// time-boxed access, a new service account's lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hours: Option<u32>,
    /// What a freezing case-only decision freezes besides the identity's own pending work
    /// (`@freeze_scope`): every identity of the same owner team, or of the same system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_scope: Option<FreezeScope>,
}

/// How far a freeze reaches.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
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
pub enum FreezeScope {
    /// The identity's own pending work (the default).
    Identity,
    /// The pending work of every identity its owner team owns.
    OwnerTeam,
    /// The pending work of every identity in its system.
    System,
}

impl Terms {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Terms::default()
    }

    /// The strictest of `self` and `other`: the shorter duration and review deadline, the
    /// earlier renewal.
    pub fn strictest(self, other: Terms) -> Terms {
        fn min(a: Option<u32>, b: Option<u32>) -> Option<u32> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        fn max(a: Option<u32>, b: Option<u32>) -> Option<u32> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }
        }
        Terms {
            max_days: min(self.max_days, other.max_days),
            renew_before_days: max(self.renew_before_days, other.renew_before_days),
            review_within_hours: min(self.review_within_hours, other.review_within_hours),
            max_hours: min(self.max_hours, other.max_hours),
            // A freeze reaches as far as the widest scope asks.
            freeze_scope: self.freeze_scope.max(other.freeze_scope),
        }
    }
}

/// The exact inputs a decision was evaluated from. Re-evaluating it against the same bundle
/// (writ-policy's `PolicyBundle::replay`) gives the same [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The remediation action (`disable`); both `auto:disable` and `disable` are evaluated.
    pub action: String,
    /// The principal's Cedar uid (`Writ::Engine::"automation"`).
    pub principal: String,
    /// The resource's Cedar uid (`Writ::Identity::"<id>"`).
    pub resource: String,
    /// The entities, in Cedar's entities JSON format.
    pub entities: serde_json::Value,
    /// The context, in Cedar's context JSON format.
    pub context: serde_json::Value,
}

/// How strong the evidence behind a decision is: the trust in its source and the finding's
/// confidence. A finding that joins an open case is decided again when it is stronger than the
/// finding the decision in force was made from ([`Strength::exceeds`]), so a weak first finding
/// cannot hold back a strong later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strength {
    /// How much the source is trusted.
    pub trust: crate::finding::Trust,
    /// The finding's confidence, in ten-thousandths.
    pub confidence_bp: u16,
    /// Whether the identity's source of truth was complete when it was decided.
    pub reconciled: bool,
}

impl Strength {
    /// The strength recorded in a decision's inputs (`context.source.trust`,
    /// `context.finding.confidence` and the resource's `reconciled` attribute). `None` when
    /// the record does not say (a rollback's, or one written before these fields).
    pub fn of_evaluation(evaluation: &Evaluation) -> Option<Strength> {
        use std::str::FromStr as _;
        let context = &evaluation.context;
        let trust =
            crate::finding::Trust::from_str(context.pointer("/source/trust")?.as_str()?).ok()?;
        let confidence = context
            .pointer("/finding/confidence/__extn/arg")
            .or_else(|| context.pointer("/finding/confidence"))?
            .as_str()?;
        let confidence_bp = parse_confidence_bp(confidence)?;
        let reconciled = evaluation
            .entities
            .as_array()
            .into_iter()
            .flatten()
            .find(|entity| {
                entity
                    .pointer("/uid/type")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t.ends_with("Identity"))
            })
            .and_then(|entity| entity.pointer("/attrs/reconciled"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        Some(Strength {
            trust,
            confidence_bp,
            reconciled,
        })
    }

    /// Whether `self` is stronger evidence than `earlier`: the source of truth has become
    /// complete, or neither trust nor confidence is lower and one of them is higher. A higher
    /// confidence from a less trusted source is not stronger.
    pub fn exceeds(&self, earlier: &Strength) -> bool {
        if self.reconciled && !earlier.reconciled {
            return true;
        }
        self.trust >= earlier.trust
            && self.confidence_bp >= earlier.confidence_bp
            && (self.trust > earlier.trust || self.confidence_bp > earlier.confidence_bp)
    }
}

/// `"0.9500"` (a Cedar decimal with up to four places) in ten-thousandths.
fn parse_confidence_bp(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 4 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let fraction: u32 = format!("{fraction:0<4}").parse().ok()?;
    u16::try_from(whole * 10_000 + fraction)
        .ok()
        .filter(|bp| *bp <= 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Trust;

    fn strength(trust: Trust, confidence_bp: u16) -> Strength {
        Strength {
            trust,
            confidence_bp,
            reconciled: true,
        }
    }

    #[test]
    fn stronger_means_no_worse_in_either_and_better_in_one() {
        let weak = strength(Trust::Low, 3_000);
        assert!(strength(Trust::High, 9_900).exceeds(&weak));
        assert!(strength(Trust::Low, 3_001).exceeds(&weak));
        assert!(strength(Trust::Medium, 3_000).exceeds(&weak));
        assert!(!strength(Trust::Low, 3_000).exceeds(&weak));
        assert!(!strength(Trust::High, 2_000).exceeds(&weak));
        assert!(!weak.exceeds(&strength(Trust::High, 9_900)));
        let unknown = Strength {
            reconciled: false,
            ..strength(Trust::High, 9_900)
        };
        assert!(weak.exceeds(&unknown));
    }

    #[test]
    fn confidences_parse_exactly() {
        assert_eq!(parse_confidence_bp("0.9500"), Some(9_500));
        assert_eq!(parse_confidence_bp("0.95"), Some(9_500));
        assert_eq!(parse_confidence_bp("1.0000"), Some(10_000));
        assert_eq!(parse_confidence_bp("1.5"), None);
        assert_eq!(parse_confidence_bp("0.12345"), None);
        assert_eq!(parse_confidence_bp("x"), None);
    }
}
