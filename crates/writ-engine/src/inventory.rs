//! The inventory: identities discovered in target systems, with ownership and criticality from
//! the operator's rules file.
//!
//! `sync` runs a connector's `discover` and records every identity it reports, with the
//! system's freshness (`reconciled_at` = now), as `identity_synced` events. Ownership and
//! criticality do not come from targets: `import_rules` records an `ownership_imported` event
//! holding the rules (identity pattern -> owner team, criticality, privileged), applies them to
//! the identities already known, and every later sync applies the latest rules. This is what
//! findings resolve against, and why the source-of-truth check can hold.

use std::collections::HashMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use writ_connectors::{Connector, DiscoveredObject};
use writ_core::event::EventKind;
use writ_core::identity::{Criticality, Identity, IdentityKind};
use writ_core::ids::IdentityId;
use writ_core::{Clock, IdSource, Sha256Digest};
use writ_store::Store;

use crate::sequencer::{AppendError, Draft, EvidenceBlob, Sequencer};

/// One ownership rule: identities whose `system/external_id` matches `pattern` (`*` matches any
/// run of characters, `?` one) belong to `owner_team` and have `criticality`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipRule {
    /// Glob over `system/external_id`, e.g. `aws:123456789012/svc-*`.
    pub pattern: String,
    /// The owning team; empty means "no owner" (findings then go to human review).
    #[serde(default)]
    pub owner_team: Option<String>,
    /// How critical the identity's system is.
    pub criticality: Criticality,
    /// Overrides what the target says about administrative rights.
    #[serde(default)]
    pub privileged: Option<bool>,
}

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
/// optional header line) or JSON (an array of rules), chosen by the file name's extension.
pub fn parse_rules(file: &str, text: &str) -> Result<Vec<OwnershipRule>, InventoryError> {
    let error = |line: usize, message: String| InventoryError::Rules {
        file: file.to_owned(),
        line,
        message,
    };
    if file.ends_with(".json") {
        let mut de = serde_json::Deserializer::from_str(text);
        return Vec::<OwnershipRule>::deserialize(&mut de)
            .map_err(|err| error(err.line(), err.to_string()));
    }
    let mut rules = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        if raw.contains('"') {
            return Err(error(line, "quoted CSV fields are not supported".into()));
        }
        let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
        if index == 0 && fields.first() == Some(&"pattern") {
            continue;
        }
        if !(3..=4).contains(&fields.len()) {
            return Err(error(
                line,
                format!(
                    "expected pattern,owner_team,criticality[,privileged]; found {} fields",
                    fields.len()
                ),
            ));
        }
        let criticality: Criticality = serde_json::from_value(serde_json::Value::String(
            fields[2].to_owned(),
        ))
        .map_err(|_| {
            error(
                line,
                format!(
                    "criticality {:?} is not low, medium, high or business_critical",
                    fields[2]
                ),
            )
        })?;
        let privileged = match fields.get(3).copied() {
            None | Some("") => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(error(
                    line,
                    format!("privileged {other:?} is not true or false"),
                ));
            }
        };
        if fields[0].is_empty() {
            return Err(error(line, "empty pattern".into()));
        }
        rules.push(OwnershipRule {
            pattern: fields[0].to_owned(),
            owner_team: Some(fields[1].to_owned()).filter(|t| !t.is_empty()),
            criticality,
            privileged,
        });
    }
    Ok(rules)
}

/// Whether `text` matches the glob `pattern` (`*` any run, `?` one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Applies the first matching rule to `identity`; returns whether one matched.
pub fn apply_rules(identity: &mut Identity, rules: &[OwnershipRule]) -> bool {
    let key = format!("{}/{}", identity.system, identity.external_id);
    match rules.iter().find(|rule| glob_match(&rule.pattern, &key)) {
        Some(rule) => {
            identity.owner_team = rule.owner_team.clone();
            identity.criticality = rule.criticality;
            if let Some(privileged) = rule.privileged {
                identity.privileged = privileged;
            }
            true
        }
        None => false,
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
        _ => return None,
    };
    let last_used_at = attrs["last_used"]
        .as_str()
        .or_else(|| attrs["last_used"]["date"].as_str())
        .and_then(|text| text.parse::<Timestamp>().ok())
        .map(writ_core::clock::to_micros);
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

/// The latest imported rules (none if never imported).
pub async fn current_rules(store: &dyn Store) -> Result<Vec<OwnershipRule>, InventoryError> {
    let Some(row) = store.latest_entry_of_kind("ownership_imported").await? else {
        return Ok(Vec::new());
    };
    let event = writ_ledger::decode_leaf(&row.leaf)
        .map_err(|err| InventoryError::Corrupt(err.to_string()))?;
    serde_json::from_value(event["body"]["rules"].clone())
        .map_err(|err| InventoryError::Corrupt(err.to_string()))
}

/// What a sync or import recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InventoryReport {
    /// Objects the target reported.
    pub discovered: usize,
    /// Identities recorded (new or updated).
    pub recorded: usize,
    /// Of those, how many an ownership rule matched.
    pub owned: usize,
}

/// Discovers `connector`'s system and records its identities, with the current rules applied.
pub async fn sync(
    store: &dyn Store,
    sequencer: &Sequencer,
    connector: &dyn Connector,
    clock: &dyn Clock,
    ids: &dyn IdSource,
) -> Result<InventoryReport, InventoryError> {
    let now = clock.now();
    let system = connector.system().to_owned();
    let objects = connector.discover().await?;
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
    for object in &objects {
        let Some(mut identity) = identity_from(&system, object, IdentityId(ids.next_id(now)), now)
        else {
            continue;
        };
        if let Some(existing) = known.get(&identity.external_id) {
            identity.id = existing.id;
        }
        if apply_rules(&mut identity, &rules) {
            report.owned += 1;
        }
        drafts.push(Draft {
            case_id: None,
            actor: format!("sync:{system}"),
            kind: EventKind::IdentitySynced,
            idempotency_key: format!("sync:{system}:{run}:{}", identity.external_id),
            policy_bundle: None,
            controls: vec![],
            body: json!({ "identity": identity, "object_kind": object.object_kind }),
            evidence: vec![],
        });
    }
    report.recorded = drafts.len();
    for result in sequencer.append_all(drafts).await {
        result?;
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
) -> Result<InventoryReport, InventoryError> {
    let now = clock.now();
    let digest = Sha256Digest::of(bytes);
    sequencer
        .append(Draft {
            case_id: None,
            actor: "operator".into(),
            kind: EventKind::OwnershipImported,
            idempotency_key: format!("ownership:{digest}:{}", now.as_microsecond()),
            policy_bundle: None,
            controls: vec![],
            body: json!({ "file": file, "rules": rules }),
            evidence: vec![EvidenceBlob {
                media_type: "text/plain".into(),
                bytes: bytes.to_vec(),
            }],
        })
        .await?;
    let mut report = InventoryReport::default();
    let mut drafts = Vec::new();
    for mut identity in store.identities().await? {
        let before = identity.clone();
        if apply_rules(&mut identity, &rules) {
            report.owned += 1;
        }
        if identity != before {
            drafts.push(Draft {
                case_id: None,
                actor: "operator".into(),
                kind: EventKind::IdentitySynced,
                idempotency_key: format!(
                    "ownership:{digest}:{}:{}",
                    now.as_microsecond(),
                    identity.id
                ),
                policy_bundle: None,
                controls: vec![],
                body: json!({ "identity": identity, "reason": "ownership rules imported" }),
                evidence: vec![],
            });
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
    fn globs_match_like_shells() {
        assert!(glob_match("aws:1/svc-*", "aws:1/svc-etl/AccessKey1"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "abbc"));
        assert!(glob_match("*AccessKey?", "aws:1/u/AccessKey2"));
        assert!(!glob_match("postgres:*", "aws:1/x"));
    }

    #[test]
    fn csv_rules_parse_and_errors_name_the_line() {
        let text = "pattern,owner_team,criticality,privileged\n# comment\naws:1/svc-etl*,data,high\naws:1/*,,low,false\n";
        let rules = parse_rules("owners.csv", text).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].owner_team.as_deref(), Some("data"));
        assert_eq!(rules[1].owner_team, None);
        assert_eq!(rules[1].privileged, Some(false));
        let err = parse_rules("owners.csv", "a,b,urgent\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "owners.csv:1: criticality \"urgent\" is not low, medium, high or business_critical"
        );
        let err = parse_rules(
            "owners.json",
            "[{\"pattern\": \"x\",\n \"criticality\": \"high\", \"owner\": 1}]",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("owners.json:2:"), "{err}");
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = parse_rules(
            "o.csv",
            "aws:1/svc-etl/*,data,high,true\naws:1/*,platform,low\n",
        )
        .unwrap();
        let mut identity = Identity {
            id: IdentityId(uuid::Uuid::nil()),
            system: "aws:1".into(),
            external_id: "svc-etl/AccessKey1".into(),
            kind: IdentityKind::ApiKey,
            owner_team: None,
            criticality: Criticality::Medium,
            privileged: false,
            tags: vec![],
            last_used_at: None,
            reconciled_at: None,
        };
        assert!(apply_rules(&mut identity, &rules));
        assert_eq!(identity.owner_team.as_deref(), Some("data"));
        assert!(identity.privileged);
        identity.external_id = "ci/AccessKey1".into();
        assert!(apply_rules(&mut identity, &rules));
        assert_eq!(identity.owner_team.as_deref(), Some("platform"));
    }
}
