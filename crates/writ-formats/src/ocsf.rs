//! OCSF Detection Findings (`class_uid` 2004, OCSF 1.x), from any producer or from Prowler.
//!
//! Lenient about fields writ does not use (OCSF objects are large and versions add fields), strict
//! about the ones it does: a wrong type names its field path. Prowler's output gets its own
//! rules: only `FAIL` findings become observations, the check id is the finding type, and the
//! subject is the IAM identity (or access-key slot) rather than the resource's ARN.

use serde::Deserialize;
use serde_json::{Value, json};
use writ_core::finding::{FindingStatus, Observation, Severity, SourceFormat, SubjectRef};
use writ_core::identity::IdentityKind;

use crate::common::{epoch_timestamp, lenient_timestamp};
use crate::controls;
use crate::error::{ElementError, from_element};

/// The OCSF class of Detection Findings.
pub const DETECTION_FINDING_CLASS_UID: u32 = 2004;

/// The fields of an OCSF Detection Finding writ reads.
#[derive(Deserialize)]
struct OcsfFinding {
    class_uid: u32,
    #[serde(default)]
    metadata: Option<Metadata>,
    finding_info: FindingInfo,
    #[serde(default)]
    severity_id: Option<u8>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    confidence_score: Option<u8>,
    #[serde(default)]
    confidence_id: Option<u8>,
    #[serde(default)]
    resources: Option<Vec<Resource>>,
    #[serde(default)]
    cloud: Option<Cloud>,
    #[serde(default)]
    time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_timestamp")]
    time_dt: Option<jiff::Timestamp>,
    #[serde(default)]
    status_code: Option<String>,
    #[serde(default)]
    status_detail: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    event_code: Option<String>,
    #[serde(default)]
    product: Option<Product>,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
struct Product {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    vendor_name: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
struct FindingInfo {
    uid: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    types: Option<Vec<String>>,
    #[serde(default)]
    analytic: Option<Analytic>,
}

#[derive(Deserialize)]
struct Analytic {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    cloud_partition: Option<String>,
}

#[derive(Deserialize)]
struct Cloud {
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    account: Option<Account>,
    #[serde(default)]
    region: Option<String>,
}

#[derive(Deserialize)]
struct Account {
    #[serde(default)]
    uid: Option<String>,
}

/// Which producer's rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Any OCSF producer.
    Generic,
    /// Prowler's `json-ocsf` output.
    Prowler,
}

/// The outcome of parsing one OCSF finding.
pub(crate) enum Outcome {
    /// A finding to ingest.
    Observation(Box<Observation>),
    /// A finding that is neither a problem nor a pass (`MANUAL`, no status), or a pass
    /// that names no identity writ could find a case about.
    Skipped,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Parses one OCSF Detection Finding under `flavor`'s rules. A `FAIL` (or, for generic
/// producers, any status but `PASS` and `MANUAL`) is a problem; a `PASS` is evidence that the
/// check now passes ([`FindingStatus::Pass`]), which closes the compliance side of an open case
/// about the same check and resource. A pass that cannot be read as a finding about an
/// identity is skipped, not refused: it could close nothing.
pub(crate) fn parse(bytes: &[u8], flavor: Flavor) -> Result<Outcome, ElementError> {
    let f: OcsfFinding = from_element(bytes)?;
    let passes = non_empty(&f.status_code).is_some_and(|s| s.eq_ignore_ascii_case("PASS"));
    match parse_finding(f, flavor, passes) {
        Err(_) if passes => Ok(Outcome::Skipped),
        outcome => outcome,
    }
}

fn parse_finding(f: OcsfFinding, flavor: Flavor, passes: bool) -> Result<Outcome, ElementError> {
    if f.class_uid != DETECTION_FINDING_CLASS_UID {
        return Err(ElementError::invalid(
            "class_uid",
            format!(
                "class_uid {} is not a Detection Finding ({DETECTION_FINDING_CLASS_UID})",
                f.class_uid
            ),
        ));
    }
    let status = non_empty(&f.status_code).map(str::to_ascii_uppercase);
    match (flavor, status.as_deref()) {
        (Flavor::Prowler, Some("FAIL")) | (_, Some("PASS")) => {}
        (Flavor::Prowler, _) | (Flavor::Generic, Some("MANUAL")) => {
            return Ok(Outcome::Skipped);
        }
        (Flavor::Generic, _) => {}
    }
    if f.finding_info.uid.trim().is_empty() {
        return Err(ElementError::invalid(
            "finding_info.uid",
            "must not be empty",
        ));
    }
    let severity = severity(f.severity_id, non_empty(&f.severity))?;
    let confidence_bp = confidence(&f, flavor)?;
    let resource = f
        .resources
        .as_ref()
        .and_then(|r| r.first())
        .ok_or_else(|| {
            ElementError::invalid("resources", "a finding needs at least one resource")
        })?;

    let event_code = f
        .metadata
        .as_ref()
        .and_then(|m| non_empty(&m.event_code))
        .map(str::to_owned);
    let finding_type = match flavor {
        Flavor::Prowler => event_code.clone().ok_or_else(|| {
            ElementError::invalid(
                "metadata.event_code",
                "Prowler findings name their check here",
            )
        })?,
        Flavor::Generic => event_code
            .clone()
            .or_else(|| {
                let a = f.finding_info.analytic.as_ref()?;
                non_empty(&a.uid).or(non_empty(&a.name)).map(str::to_owned)
            })
            .or_else(|| {
                f.finding_info
                    .types
                    .as_ref()
                    .and_then(|t| t.first())
                    .filter(|t| !t.trim().is_empty())
                    .cloned()
            })
            .unwrap_or_else(|| "ocsf_detection_finding".to_owned()),
    };

    let system = system(&f)?;
    let (external_id, kind_hint) = match flavor {
        Flavor::Prowler => prowler_subject(&finding_type, resource, passes)?,
        Flavor::Generic => generic_subject(resource)?,
    };
    let check_title = non_empty(&f.finding_info.title).map(str::to_owned);
    let title = match flavor {
        Flavor::Prowler => non_empty(&f.status_detail)
            .or(non_empty(&f.message))
            .map(str::to_owned)
            .or(check_title.clone()),
        Flavor::Generic => check_title
            .clone()
            .or(non_empty(&f.message).map(str::to_owned)),
    }
    .unwrap_or_else(|| finding_type.clone());
    let observed_at = f.time_dt.or_else(|| f.time.and_then(epoch_timestamp));
    let product = f.metadata.as_ref().and_then(|m| m.product.as_ref());

    let details = json!({
        "status_code": status,
        "status": non_empty(&f.status),
        "status_detail": non_empty(&f.status_detail),
        "check_title": check_title,
        "types": f.finding_info.types,
        "resource_uid": non_empty(&resource.uid),
        "resource_name": non_empty(&resource.name),
        "resource_type": non_empty(&resource.kind),
        "region": non_empty(&resource.region).or(f.cloud.as_ref().and_then(|c| non_empty(&c.region))),
        "cloud_partition": non_empty(&resource.cloud_partition),
        "product": product.and_then(|p| non_empty(&p.name)),
        "product_vendor": product.and_then(|p| non_empty(&p.vendor_name)),
        "product_version": product.and_then(|p| non_empty(&p.version)),
        "ocsf_version": f.metadata.as_ref().and_then(|m| non_empty(&m.version)),
    });
    let details = drop_nulls(details);

    Ok(Outcome::Observation(Box::new(Observation {
        status: if passes {
            FindingStatus::Pass
        } else {
            FindingStatus::Fail
        },
        format: match flavor {
            Flavor::Generic => SourceFormat::Ocsf,
            Flavor::Prowler => SourceFormat::Prowler,
        },
        controls: controls::controls_for(&finding_type),
        finding_type,
        severity,
        confidence_bp,
        subject: SubjectRef {
            system,
            external_id,
            kind_hint,
        },
        observed_at,
        title,
        source_key: Some(f.finding_info.uid),
        details,
    })))
}

/// OCSF `severity_id`: 0 Unknown, 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical,
/// 6 Fatal, 99 Other. Unknown and Other fall back to the `severity` caption, then to info.
fn severity(id: Option<u8>, caption: Option<&str>) -> Result<Severity, ElementError> {
    let from_caption = || match caption.map(str::to_ascii_lowercase).as_deref() {
        Some("low") => Severity::Low,
        Some("medium") => Severity::Medium,
        Some("high") => Severity::High,
        Some("critical" | "fatal") => Severity::Critical,
        _ => Severity::Info,
    };
    match id {
        Some(1) => Ok(Severity::Info),
        Some(2) => Ok(Severity::Low),
        Some(3) => Ok(Severity::Medium),
        Some(4) => Ok(Severity::High),
        Some(5 | 6) => Ok(Severity::Critical),
        None | Some(0 | 99) => Ok(from_caption()),
        Some(other) => Err(ElementError::invalid(
            "severity_id",
            format!("{other} is not an OCSF severity_id (0-6 or 99)"),
        )),
    }
}

/// OCSF `confidence_score` (0-100) wins over `confidence_id` (1 Low, 2 Medium, 3 High). With
/// neither, Prowler findings (deterministic configuration checks) are certain and others
/// get 5000.
fn confidence(f: &OcsfFinding, flavor: Flavor) -> Result<u16, ElementError> {
    if let Some(score) = f.confidence_score {
        if score > 100 {
            return Err(ElementError::invalid(
                "confidence_score",
                format!("{score} is over 100"),
            ));
        }
        return Ok(u16::from(score) * 100);
    }
    match f.confidence_id {
        Some(1) => return Ok(3000),
        Some(2) => return Ok(6000),
        Some(3) => return Ok(9000),
        Some(0 | 99) | None => {}
        Some(other) => {
            return Err(ElementError::invalid(
                "confidence_id",
                format!("{other} is not an OCSF confidence_id (0-3 or 99)"),
            ));
        }
    }
    Ok(match flavor {
        Flavor::Prowler => 10_000,
        Flavor::Generic => 5_000,
    })
}

/// `<provider>:<account>` from `cloud` (`aws:123456789012`), or the provider alone, or
/// `ocsf:<product name>` for findings with no cloud.
fn system(f: &OcsfFinding) -> Result<String, ElementError> {
    let cloud = f.cloud.as_ref();
    let provider = cloud
        .and_then(|c| non_empty(&c.provider))
        .map(str::to_ascii_lowercase);
    let account = cloud
        .and_then(|c| c.account.as_ref())
        .and_then(|a| non_empty(&a.uid));
    match (provider, account) {
        (Some(p), Some(a)) => Ok(format!("{p}:{a}")),
        (Some(p), None) => Ok(p),
        (None, _) => f
            .metadata
            .as_ref()
            .and_then(|m| m.product.as_ref())
            .and_then(|p| non_empty(&p.name))
            .map(|name| format!("ocsf:{}", name.to_ascii_lowercase()))
            .ok_or_else(|| {
                ElementError::invalid(
                    "cloud.provider",
                    "no cloud provider nor metadata.product.name to name the subject's system",
                )
            }),
    }
}

/// A generic OCSF subject: the first resource's `uid`, else its `name`.
fn generic_subject(r: &Resource) -> Result<(String, Option<IdentityKind>), ElementError> {
    let id = non_empty(&r.uid).or(non_empty(&r.name)).ok_or_else(|| {
        ElementError::invalid("resources[0].uid", "the resource has no uid nor name")
    })?;
    Ok((id.to_owned(), kind_from_type(non_empty(&r.kind))))
}

/// What kind of identity an OCSF resource type names (`AwsIamUser`, `AwsIamAccessKey`).
fn kind_from_type(ty: Option<&str>) -> Option<IdentityKind> {
    let ty = ty?.to_ascii_lowercase();
    if ty.contains("accesskey") || ty.contains("apikey") || ty.contains("access_key") {
        Some(IdentityKind::ApiKey)
    } else if ty.contains("secret") {
        Some(IdentityKind::Secret)
    } else if ty.contains("certificate") {
        Some(IdentityKind::Certificate)
    } else if ty.contains("token") {
        Some(IdentityKind::Token)
    } else if ty.contains("serviceaccount")
        || ty.contains("service_account")
        || ty.ends_with("iamuser")
        || ty.ends_with("iamrole")
    {
        Some(IdentityKind::ServiceAccount)
    } else {
        None
    }
}

/// Prowler checks whose resource is one access-key slot of a user.
const KEY_SLOT_CHECKS: &[&str] = &["iam_user_accesskey_unused", "iam_rotate_access_key_90_days"];

/// The IAM principal an ARN names: `(type, name)` for `arn:<partition>:iam::<account>:<type>/…/<name>`.
fn iam_arn(uid: &str) -> Option<(&str, &str)> {
    let mut parts = uid.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let _partition = parts.next()?;
    if parts.next()? != "iam" {
        return None;
    }
    let _region = parts.next()?;
    let _account = parts.next()?;
    let resource = parts.next()?;
    let (ty, rest) = resource.split_once('/')?;
    let name = rest.rsplit('/').next().filter(|n| !n.is_empty())?;
    Some((ty, name))
}

/// A Prowler subject: the access-key slot `<user>/AccessKey<n>` for key checks, the IAM
/// principal named by the resource ARN (`user` → `<name>`, others → `<type>/<name>`), else
/// the resource's name or uid.
/// The subject of a Prowler finding. A key check names an access-key slot when it fails; when
/// it passes, Prowler names the user (none of its keys fails the check), and the subject is
/// the user: the pass closes the check's cases about any of that user's keys.
fn prowler_subject(
    check: &str,
    r: &Resource,
    passes: bool,
) -> Result<(String, Option<IdentityKind>), ElementError> {
    let name = non_empty(&r.name);
    let arn = non_empty(&r.uid).and_then(iam_arn);
    if KEY_SLOT_CHECKS.contains(&check) {
        let slot = name.and_then(|n| key_slot(n, arn.map(|(_, user)| user)));
        if let Some(slot) = slot {
            return Ok((slot, Some(IdentityKind::ApiKey)));
        }
        if !(passes && arn.is_some()) {
            return Err(ElementError::invalid(
                "resources[0].name",
                format!(
                    "expected an access-key slot (`<user>/AccessKey1` or `<user>-access-key-1`), found {:?}",
                    name.unwrap_or_default()
                ),
            ));
        }
    }
    if let Some((ty, principal)) = arn {
        return Ok(match ty {
            "user" => (principal.to_owned(), Some(IdentityKind::ServiceAccount)),
            "role" => (
                format!("role/{principal}"),
                Some(IdentityKind::ServiceAccount),
            ),
            other => (format!("{other}/{principal}"), None),
        });
    }
    let id = name.or(non_empty(&r.uid)).ok_or_else(|| {
        ElementError::invalid("resources[0].name", "the resource has no name nor uid")
    })?;
    Ok((id.to_owned(), kind_from_type(non_empty(&r.kind))))
}

/// Normalises Prowler's names for an access-key slot to `<user>/AccessKey<n>`: it writes
/// `<user>/AccessKey1` for some checks and `<user>-access-key-1` for others.
fn key_slot(name: &str, arn_user: Option<&str>) -> Option<String> {
    if let Some((user, slot)) = name.rsplit_once("/AccessKey")
        && !user.is_empty()
        && !slot.is_empty()
        && slot.bytes().all(|b| b.is_ascii_digit())
    {
        return Some(name.to_owned());
    }
    let (user, slot) = name.rsplit_once("-access-key-")?;
    if user.is_empty() || slot.is_empty() || !slot.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let user = arn_user.unwrap_or(user);
    Some(format!("{user}/AccessKey{slot}"))
}

/// Removes `null` members, so details hold only what the finding says.
fn drop_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_key_slots_and_arns() {
        assert_eq!(
            key_slot("svc-etl/AccessKey1", None).as_deref(),
            Some("svc-etl/AccessKey1")
        );
        assert_eq!(
            key_slot("svc-etl-access-key-2", Some("svc-etl")).as_deref(),
            Some("svc-etl/AccessKey2")
        );
        assert_eq!(key_slot("svc-etl", None), None);
        assert_eq!(
            iam_arn("arn:aws:iam::123456789012:user/path/to/svc-etl"),
            Some(("user", "svc-etl"))
        );
        assert_eq!(iam_arn("arn:aws:iam::123456789012:root"), None);
        assert_eq!(iam_arn("arn:aws:s3:::bucket"), None);
        assert_eq!(
            kind_from_type(Some("AwsIamAccessKey")),
            Some(IdentityKind::ApiKey)
        );
        assert_eq!(
            kind_from_type(Some("AwsIamUser")),
            Some(IdentityKind::ServiceAccount)
        );
        assert_eq!(kind_from_type(Some("AwsS3Bucket")), None);
    }
}
