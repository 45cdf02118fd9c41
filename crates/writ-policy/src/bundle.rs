//! Policy bundles: loading a directory, strict validation against its schema, and hashing.
//!
//! A bundle is refused as a whole when anything is wrong with it; [`BundleError`] then lists
//! every problem found, each with its file and, where the source allows, its line and column.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{Effect, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;
use serde::Deserialize;
use writ_core::Sha256Digest;

use crate::error::{BundleError, BundleIssue};
use crate::model::{self, REMEDIATIONS};

/// The name of the remediations file every bundle must hold.
pub const REMEDIATIONS_FILE: &str = "remediations.toml";

/// The signal of a finding type whose entry in `remediations.toml` declares none.
pub const DEFAULT_SIGNAL: &str = "other";

/// The prefix of the bundle hash's canonical listing (versioned so the listing can evolve).
const HASH_DOMAIN: &[u8] = b"writ-policy-bundle/v1\n";

/// Annotation naming a policy; required and unique.
pub const ANN_ID: &str = "id";
/// Annotation on a permit: how many approvals the action needs (default 1).
pub const ANN_APPROVALS: &str = "approvals";
/// Annotation on a permit: which group approves (default `owner_team`).
pub const ANN_APPROVERS: &str = "approvers";
/// Annotation on a forbid: when it determines the outcome, only open a case.
pub const ANN_CASE_ONLY: &str = "case_only";
/// Annotation on a `case_only` forbid: freeze approvals pending on the identity.
pub const ANN_FREEZE: &str = "freeze";
/// The longest an exception a permit of `accept_risk` allows may last, in days.
pub const ANN_MAX_DAYS: &str = "max_days";
/// How many days before such an exception expires re-approval is asked for.
pub const ANN_RENEW_BEFORE_DAYS: &str = "renew_before_days";
/// Within how many hours a change a permit of `break_glass` allows must be reviewed.
pub const ANN_REVIEW_WITHIN_HOURS: &str = "review_within_hours";
/// The longest a requested change a permit allows may hold, in hours (an agent's access, a new
/// service account's lifetime).
pub const ANN_MAX_HOURS: &str = "max_hours";
/// How far a freezing case-only forbid reaches: `identity` (the default), `owner_team` or
/// `system`.
pub const ANN_FREEZE_SCOPE: &str = "freeze_scope";

/// The approver group used when a permit has no `@approvers`.
pub const DEFAULT_APPROVERS: &str = "owner_team";

/// What writ reads from a policy's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyMeta {
    /// Permit or forbid.
    pub(crate) effect: Effect,
    /// `@approvals` (permits only; 1 by default).
    pub(crate) approvals: u32,
    /// `@approvers` (permits only; `owner_team` by default).
    pub(crate) approvers: String,
    /// `@case_only("true")` (forbids only).
    pub(crate) case_only: bool,
    /// `@freeze("true")` (case-only forbids only).
    pub(crate) freeze: bool,
    /// `@max_days`, `@renew_before_days`, `@review_within_hours` (permits only).
    pub(crate) terms: writ_core::decision::Terms,
}

/// A loaded, strictly validated policy bundle. Immutable; cheap enough to clone.
#[derive(Debug, Clone)]
pub struct PolicyBundle {
    pub(crate) hash: Sha256Digest,
    pub(crate) schema: Schema,
    pub(crate) policies: PolicySet,
    pub(crate) meta: BTreeMap<String, PolicyMeta>,
    pub(crate) remediations: BTreeMap<String, String>,
    /// The declared signal of each finding type that declares one.
    pub(crate) signals: BTreeMap<String, String>,
    pub(crate) files: Vec<String>,
    /// Every file's bytes, by name: what [`PolicyBundle::archive`] keeps, so a decision stays
    /// replayable under the bundle that made it after the directory changes.
    pub(crate) sources: std::sync::Arc<Vec<(String, Vec<u8>)>>,
    /// The Cedar uid of every writ action the schema declares (`auto:<a>` and `<a>`), by name.
    pub(crate) action_uids: HashMap<String, cedar_policy::EntityUid>,
}

/// The uids of writ's actions that `schema` declares.
fn declared_actions(schema: &Schema) -> HashMap<String, cedar_policy::EntityUid> {
    crate::model::ACTIONS
        .iter()
        .flat_map(|action| [format!("auto:{action}"), (*action).to_owned()])
        .filter_map(|name| {
            let uid = crate::model::entity_uid("Action", &name).ok()?;
            schema.actions().any(|a| *a == uid).then_some((name, uid))
        })
        .collect()
}

/// A bundle's files in one document, for keeping it by hash.
#[derive(serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Archive {
    files: Vec<ArchivedFile>,
}

/// One file of an [`Archive`] (bundle files are UTF-8, checked when loaded).
#[derive(serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchivedFile {
    name: String,
    text: String,
}

/// One file of the bundle, as read.
struct BundleFile {
    name: String,
    bytes: Vec<u8>,
}

/// The shape of `remediations.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemediationsFile {
    finding_types: BTreeMap<String, toml::Spanned<FindingTypeEntry>>,
}

/// One `[finding_types]` entry: `type = "<action>"` or
/// `type = { action = "<action>", signal = "<signal>" }`.
enum FindingTypeEntry {
    /// The string form: the action only (the signal is [`DEFAULT_SIGNAL`]).
    Action(String),
    /// The table form.
    Table(FindingTypeTable),
}

/// The table form of a `[finding_types]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingTypeTable {
    action: toml::Spanned<String>,
    #[serde(default)]
    signal: Option<toml::Spanned<String>>,
}

impl<'de> Deserialize<'de> for FindingTypeEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FindingTypeEntry;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an action name or a table { action = \"...\", signal = \"...\" }")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FindingTypeEntry::Action(v.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                FindingTypeTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(FindingTypeEntry::Table)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Whether `signal` is a lowercase identifier: `[a-z][a-z0-9_]*`.
fn is_signal_name(signal: &str) -> bool {
    let mut chars = signal.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// What `remediations.toml` declares: the action of each finding type, and the signal of
/// those that declare one.
struct Remediations {
    actions: BTreeMap<String, String>,
    signals: BTreeMap<String, String>,
}

/// A policy as parsed from its file, before renaming to its `@id`.
struct ParsedPolicy {
    file: String,
    text: std::sync::Arc<str>,
    offset: Option<usize>,
    policy: cedar_policy::Policy,
}

impl PolicyBundle {
    /// Loads and strictly validates the bundle in `dir`.
    ///
    /// The directory must hold only regular files: one or more `*.cedar` policy files, exactly
    /// one `*.cedarschema` schema (Cedar human syntax) and `remediations.toml`. Every problem
    /// found is reported in the error, not just the first.
    pub fn load_dir(dir: &Path) -> Result<PolicyBundle, BundleError> {
        let mut issues = Vec::new();
        let entries = fs::read_dir(dir).map_err(|e| BundleError {
            issues: vec![BundleIssue::in_file(
                ".",
                format!("cannot read bundle directory: {e}"),
            )],
        })?;
        let files = read_files(entries, &mut issues);
        Self::from_files(files, issues)
    }

    /// Loads a bundle from an archive ([`PolicyBundle::archive`]): the same strict checks as
    /// a directory, and the hash must be `expected`.
    pub fn from_archive(
        bytes: &[u8],
        expected: &Sha256Digest,
    ) -> Result<PolicyBundle, BundleError> {
        let archive: Archive = serde_json::from_slice(bytes).map_err(|e| BundleError {
            issues: vec![BundleIssue::in_file(
                ".",
                format!("not a bundle archive: {e}"),
            )],
        })?;
        let mut files: Vec<BundleFile> = archive
            .files
            .into_iter()
            .map(|f| BundleFile {
                name: f.name,
                bytes: f.text.into_bytes(),
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let bundle = Self::from_files(files, Vec::new())?;
        if bundle.hash != *expected {
            return Err(BundleError {
                issues: vec![BundleIssue::in_file(
                    ".",
                    format!(
                        "the archive's files hash to {}, not {expected}",
                        bundle.hash
                    ),
                )],
            });
        }
        Ok(bundle)
    }

    /// The bundle's files as one JSON document (`{"files":[{"name","text"}]}`, by name), from
    /// which [`PolicyBundle::from_archive`] loads the same bundle, with the same hash.
    pub fn archive(&self) -> Vec<u8> {
        let archive = Archive {
            files: self
                .sources
                .iter()
                .map(|(name, bytes)| ArchivedFile {
                    name: name.clone(),
                    text: String::from_utf8_lossy(bytes).into_owned(),
                })
                .collect(),
        };
        serde_json::to_vec(&archive).unwrap_or_default()
    }

    fn from_files(
        files: Vec<BundleFile>,
        mut issues: Vec<BundleIssue>,
    ) -> Result<PolicyBundle, BundleError> {
        let hash = bundle_hash(&files);
        let texts = utf8_texts(&files, &mut issues);

        let schema = load_schema(&texts, &mut issues);
        let remediations = load_remediations(&texts, schema.as_ref(), &mut issues);
        let parsed = parse_policies(&texts, &mut issues);
        let (policies, meta, origins) = assemble(parsed, &mut issues);

        if let Some(schema) = &schema {
            let validator = Validator::new(schema.clone());
            let result = validator.validate(&policies, ValidationMode::Strict);
            for error in result.validation_errors() {
                let id: &str = error.policy_id().as_ref();
                match origins.get(id) {
                    Some((file, text)) => push_diagnostic(&mut issues, file, Some(text), error),
                    None => push_diagnostic(&mut issues, ".", None, error),
                }
            }
            for problem in model::schema_contract_problems(schema) {
                issues.push(BundleIssue::in_file(schema_file_name(&texts), problem));
            }
        }

        if !issues.is_empty() {
            issues.sort();
            issues.dedup();
            return Err(BundleError { issues });
        }
        match (schema, remediations) {
            (Some(schema), Some(remediations)) => Ok(PolicyBundle {
                hash,
                action_uids: declared_actions(&schema),
                schema,
                policies,
                meta,
                remediations: remediations.actions,
                signals: remediations.signals,
                files: files.iter().map(|f| f.name.clone()).collect(),
                sources: std::sync::Arc::new(
                    files.into_iter().map(|f| (f.name, f.bytes)).collect(),
                ),
            }),
            // Unreachable in practice: a missing schema or remediations file is an issue.
            _ => Err(BundleError {
                issues: vec![BundleIssue::in_file(".", "bundle incomplete")],
            }),
        }
    }

    /// The bundle hash: SHA-256 over the canonical listing of its files (see the README).
    pub fn hash(&self) -> Sha256Digest {
        self.hash
    }

    /// The action that remediates `finding_type`, per `remediations.toml`.
    pub fn remediation_for(&self, finding_type: &str) -> Option<&str> {
        self.remediations.get(finding_type).map(String::as_str)
    }

    /// What `finding_type` signals, as policies see it in `context.finding.signal`: the signal
    /// its `remediations.toml` entry declares, else [`DEFAULT_SIGNAL`] (`"other"`), also for a
    /// finding type the file does not list.
    pub fn signal_for(&self, finding_type: &str) -> &str {
        self.signals
            .get(finding_type)
            .map_or(DEFAULT_SIGNAL, String::as_str)
    }

    /// The finding type to action mapping, sorted by finding type.
    pub fn remediations(&self) -> &BTreeMap<String, String> {
        &self.remediations
    }

    /// The `@id`s of all policies, sorted.
    pub fn policy_ids(&self) -> impl Iterator<Item = &str> {
        self.meta.keys().map(String::as_str)
    }

    /// The bundle's file names, sorted (the files the hash covers).
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The bundle's Cedar schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }
}

/// Computes the bundle hash over files sorted by name: a domain line, then for each file the
/// big-endian u64 length of its name, the name, the big-endian u64 length of its bytes, the
/// bytes.
fn bundle_hash(files: &[BundleFile]) -> Sha256Digest {
    let mut listing = Vec::from(HASH_DOMAIN);
    for file in files {
        listing.extend_from_slice(&(file.name.len() as u64).to_be_bytes());
        listing.extend_from_slice(file.name.as_bytes());
        listing.extend_from_slice(&(file.bytes.len() as u64).to_be_bytes());
        listing.extend_from_slice(&file.bytes);
    }
    Sha256Digest::of(&listing)
}

fn read_files(entries: fs::ReadDir, issues: &mut Vec<BundleIssue>) -> Vec<BundleFile> {
    let mut files = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                issues.push(BundleIssue::in_file(
                    ".",
                    format!("cannot list bundle directory: {e}"),
                ));
                continue;
            }
        };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            issues.push(BundleIssue::in_file(
                entry.file_name().to_string_lossy(),
                "file name is not UTF-8",
            ));
            continue;
        };
        let path = entry.path();
        if !path.is_file() {
            issues.push(BundleIssue::in_file(
                name,
                "not a regular file (bundles are flat directories)",
            ));
            continue;
        }
        if !(name.ends_with(".cedar")
            || name.ends_with(".cedarschema")
            || name == REMEDIATIONS_FILE)
        {
            issues.push(BundleIssue::in_file(
                name,
                "unexpected file: a bundle holds only *.cedar, one *.cedarschema and remediations.toml",
            ));
            continue;
        }
        match fs::read(&path) {
            Ok(bytes) => files.push(BundleFile { name, bytes }),
            Err(e) => issues.push(BundleIssue::in_file(name, format!("cannot read: {e}"))),
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

fn utf8_texts(files: &[BundleFile], issues: &mut Vec<BundleIssue>) -> BTreeMap<String, String> {
    let mut texts = BTreeMap::new();
    for file in files {
        match std::str::from_utf8(&file.bytes) {
            Ok(text) => {
                texts.insert(file.name.clone(), text.to_owned());
            }
            Err(e) => issues.push(BundleIssue::in_file(
                file.name.clone(),
                format!("not UTF-8: {e}"),
            )),
        }
    }
    texts
}

fn schema_file_name(texts: &BTreeMap<String, String>) -> String {
    texts
        .keys()
        .find(|name| name.ends_with(".cedarschema"))
        .cloned()
        .unwrap_or_else(|| ".".to_owned())
}

fn load_schema(texts: &BTreeMap<String, String>, issues: &mut Vec<BundleIssue>) -> Option<Schema> {
    let schemas: Vec<(&String, &String)> = texts
        .iter()
        .filter(|(name, _)| name.ends_with(".cedarschema"))
        .collect();
    match schemas.as_slice() {
        [(name, text)] => match Schema::from_cedarschema_str(text) {
            Ok((schema, _warnings)) => Some(schema),
            Err(error) => {
                push_diagnostic(issues, name, Some(text), &error);
                None
            }
        },
        [] => {
            issues.push(BundleIssue::in_file(
                ".",
                "no *.cedarschema schema file in the bundle",
            ));
            None
        }
        many => {
            let names: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
            issues.push(BundleIssue::in_file(
                ".",
                format!(
                    "expected exactly one *.cedarschema file, found {}: {}",
                    names.len(),
                    names.join(", ")
                ),
            ));
            None
        }
    }
}

fn load_remediations(
    texts: &BTreeMap<String, String>,
    schema: Option<&Schema>,
    issues: &mut Vec<BundleIssue>,
) -> Option<Remediations> {
    let Some(text) = texts.get(REMEDIATIONS_FILE) else {
        if !issues.iter().any(|i| i.file == REMEDIATIONS_FILE) {
            issues.push(BundleIssue::in_file(
                ".",
                "no remediations.toml in the bundle",
            ));
        }
        return None;
    };
    let parsed: RemediationsFile = match toml::from_str(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((None, None));
            issues.push(BundleIssue {
                file: REMEDIATIONS_FILE.to_owned(),
                line,
                column,
                message: one_line(e.message()),
            });
            return None;
        }
    };
    let mut out = Remediations {
        actions: BTreeMap::new(),
        signals: BTreeMap::new(),
    };
    let mut ok = true;
    for (finding_type, entry) in parsed.finding_types {
        let entry_span = entry.span();
        let (action, signal) = match entry.into_inner() {
            FindingTypeEntry::Action(action) => (toml::Spanned::new(entry_span, action), None),
            FindingTypeEntry::Table(table) => (table.action, table.signal),
        };
        if let Some(signal) = signal {
            let name = signal.get_ref();
            if is_signal_name(name) {
                out.signals
                    .insert(finding_type.clone(), signal.into_inner());
            } else {
                ok = false;
                let (line, column) = line_column(text, signal.span().start);
                issues.push(BundleIssue {
                    file: REMEDIATIONS_FILE.to_owned(),
                    line,
                    column,
                    message: format!(
                        "finding type {finding_type:?} declares signal {name:?}, which is not a lowercase identifier ([a-z][a-z0-9_]*)"
                    ),
                });
            }
        }
        let (line, column) = line_column(text, action.span().start);
        let name = action.get_ref();
        if !REMEDIATIONS.contains(&name.as_str()) {
            ok = false;
            issues.push(BundleIssue {
                file: REMEDIATIONS_FILE.to_owned(),
                line,
                column,
                message: format!(
                    "finding type {finding_type:?} maps to unknown action {name:?} (known: {})",
                    REMEDIATIONS.join(", ")
                ),
            });
            continue;
        }
        if let Some(schema) = schema {
            for cedar_action in [format!("auto:{name}"), name.clone()] {
                if !model::schema_declares_action(schema, &cedar_action) {
                    ok = false;
                    issues.push(BundleIssue {
                        file: REMEDIATIONS_FILE.to_owned(),
                        line,
                        column,
                        message: format!(
                            "finding type {finding_type:?} maps to {name:?} but the schema does not declare {}::Action::{cedar_action:?}",
                            model::NAMESPACE
                        ),
                    });
                }
            }
        }
        out.actions.insert(finding_type, action.into_inner());
    }
    ok.then_some(out)
}

fn parse_policies(
    texts: &BTreeMap<String, String>,
    issues: &mut Vec<BundleIssue>,
) -> Vec<ParsedPolicy> {
    let mut out = Vec::new();
    let mut any_policy_file = false;
    for (name, text) in texts.iter().filter(|(n, _)| n.ends_with(".cedar")) {
        any_policy_file = true;
        let set = match PolicySet::from_str(text) {
            Ok(set) => set,
            Err(errors) => {
                push_diagnostic(issues, name, Some(text), &errors);
                continue;
            }
        };
        let shared: std::sync::Arc<str> = std::sync::Arc::from(text.as_str());
        for template in set.templates() {
            issues.push(BundleIssue {
                file: name.clone(),
                line: None,
                column: None,
                message: format!(
                    "policy templates are not supported (template {})",
                    template.annotation(ANN_ID).unwrap_or("without @id")
                ),
            });
        }
        // Cedar names the policies of one text policy0, policy1, ... in source order.
        let mut policies: Vec<(usize, cedar_policy::Policy)> = set
            .policies()
            .map(|p| {
                let id: &str = p.id().as_ref();
                let n = id
                    .strip_prefix("policy")
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(usize::MAX);
                (n, p.clone())
            })
            .collect();
        policies.sort_by_key(|(n, _)| *n);
        let mut cursor = 0;
        for (_, policy) in policies {
            let source = policy.to_string();
            let offset = text
                .get(cursor..)
                .and_then(|rest| rest.find(&source))
                .map(|at| {
                    cursor += at + source.len();
                    cursor - source.len()
                });
            out.push(ParsedPolicy {
                file: name.clone(),
                text: shared.clone(),
                offset,
                policy,
            });
        }
    }
    if !any_policy_file && !texts.is_empty() {
        issues.push(BundleIssue::in_file(
            ".",
            "no *.cedar policy files in the bundle",
        ));
    }
    out
}

type Origins = BTreeMap<String, (String, std::sync::Arc<str>)>;

/// Checks annotations, renames every policy to its `@id`, and builds the policy set.
fn assemble(
    parsed: Vec<ParsedPolicy>,
    issues: &mut Vec<BundleIssue>,
) -> (PolicySet, BTreeMap<String, PolicyMeta>, Origins) {
    let mut set = PolicySet::new();
    let mut meta = BTreeMap::new();
    let mut origins: Origins = BTreeMap::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut fallback = 0usize;
    for p in parsed {
        let (line, column) = p
            .offset
            .map(|o| line_column(&p.text, o))
            .unwrap_or((None, None));
        let issue = |message: String| BundleIssue {
            file: p.file.clone(),
            line,
            column,
            message,
        };
        let id = match p.policy.annotation(ANN_ID) {
            None => {
                issues.push(issue("policy has no @id annotation".to_owned()));
                None
            }
            Some(id) if id.trim().is_empty() => {
                issues.push(issue("policy has an empty @id".to_owned()));
                None
            }
            Some(id) => match seen.get(id) {
                Some(first) => {
                    issues.push(issue(format!(
                        "duplicate @id {id:?} (first used at {first})"
                    )));
                    None
                }
                None => {
                    let here = match (line, column) {
                        (Some(l), Some(c)) => format!("{}:{l}:{c}", p.file),
                        _ => p.file.clone(),
                    };
                    seen.insert(id.to_owned(), here);
                    Some(id.to_owned())
                }
            },
        };
        let effect = p.policy.effect();
        let mut problems = Vec::new();
        let policy_meta = read_meta(&p.policy, effect, &mut problems);
        for problem in problems {
            issues.push(issue(problem));
        }
        // Policies without a usable @id still get validated, under a placeholder id (the
        // bundle is refused anyway, so the placeholder never reaches a decision).
        let final_id = id.unwrap_or_else(|| {
            fallback += 1;
            let at = line.map_or_else(|| p.file.clone(), |l| format!("{}:{l}", p.file));
            match p.policy.annotation(ANN_ID) {
                Some(id) if !id.trim().is_empty() => {
                    format!("<duplicate @id {id} #{fallback} at {at}>")
                }
                _ => format!("<no @id #{fallback} at {at}>"),
            }
        });
        let renamed = p.policy.new_id(PolicyId::new(&final_id));
        if let Err(e) = set.add(renamed) {
            issues.push(issue(format!("cannot add policy: {e}")));
            continue;
        }
        origins.insert(final_id.clone(), (p.file.clone(), p.text.clone()));
        meta.insert(final_id, policy_meta);
    }
    (set, meta, origins)
}

fn read_meta(
    policy: &cedar_policy::Policy,
    effect: Effect,
    problems: &mut Vec<String>,
) -> PolicyMeta {
    let flag = |key: &str, problems: &mut Vec<String>| match policy.annotation(key) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            problems.push(format!(
                "@{key} must be \"true\" or \"false\", not {other:?}"
            ));
            false
        }
    };
    let case_only = flag(ANN_CASE_ONLY, problems);
    let freeze = flag(ANN_FREEZE, problems);
    let approvals = match policy.annotation(ANN_APPROVALS) {
        None => 1,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                problems.push(format!(
                    "@approvals must be a whole number of at least 1, not {text:?}"
                ));
                1
            }
        },
    };
    let approvers = match policy.annotation(ANN_APPROVERS) {
        None => DEFAULT_APPROVERS.to_owned(),
        Some(group) if group.trim().is_empty() => {
            problems.push("@approvers must name a group".to_owned());
            DEFAULT_APPROVERS.to_owned()
        }
        Some(group) => group.trim().to_owned(),
    };
    // `@approvers` is an approval rule (writ_core::approvers): "owner_team", "security", or
    // "1 of owner_team and 2 of team:security". The recorded count is the rule's total.
    let approvals = if effect == Effect::Permit {
        let explicit = approvers.to_ascii_lowercase().contains(" of ");
        if explicit && policy.annotation(ANN_APPROVALS).is_some() {
            problems.push(
                "give the counts in @approvers (\"1 of owner_team and 2 of team:security\") or in @approvals, not in both".to_owned(),
            );
        }
        match writ_core::approvers::ApprovalRule::parse(&approvers, approvals) {
            // A count in @approvals would apply to every group here, but a recorded decision
            // keeps only the rule's text: each group's count must be in the text.
            Ok(rule) if rule.quorums.len() > 1 && policy.annotation(ANN_APPROVALS).is_some() => {
                if !explicit {
                    problems.push(
                        "with several groups, give each group's count in @approvers (\"2 of owner_team and 2 of team:security\"), not in @approvals".to_owned(),
                    );
                }
                rule.total()
            }
            Ok(rule) => rule.total(),
            Err(err) => {
                problems.push(err.to_string());
                approvals
            }
        }
    } else {
        approvals
    };
    let up_to = |key: &str, most: u32, problems: &mut Vec<String>| match policy.annotation(key) {
        None => None,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=most).contains(&n) => Some(n),
            _ => {
                problems.push(format!(
                    "@{key} must be a whole number from 1 to {most}, not {text:?}"
                ));
                None
            }
        },
    };
    let number = |key: &str, problems: &mut Vec<String>| up_to(key, 3650, problems);
    let freeze_scope = match policy.annotation(ANN_FREEZE_SCOPE) {
        None => None,
        Some(text) => match text.parse::<writ_core::decision::FreezeScope>() {
            Ok(scope) => Some(scope),
            Err(_) => {
                problems.push(format!(
                    "@{ANN_FREEZE_SCOPE} must be \"identity\", \"owner_team\" or \"system\", not {text:?}"
                ));
                None
            }
        },
    };
    if freeze_scope.is_some() && !(effect == Effect::Forbid && freeze) {
        problems.push(format!(
            "@{ANN_FREEZE_SCOPE} only applies with @freeze(\"true\")"
        ));
    }
    let terms = writ_core::decision::Terms {
        max_days: number(ANN_MAX_DAYS, problems),
        renew_before_days: number(ANN_RENEW_BEFORE_DAYS, problems),
        review_within_hours: number(ANN_REVIEW_WITHIN_HOURS, problems),
        max_hours: up_to(ANN_MAX_HOURS, 87_600, problems),
        freeze_scope,
    };
    if let (Some(max), Some(renew)) = (terms.max_days, terms.renew_before_days)
        && renew >= max
    {
        problems.push(format!(
            "@renew_before_days ({renew}) must be less than @max_days ({max})"
        ));
    }
    match effect {
        Effect::Permit => {
            for key in [ANN_CASE_ONLY, ANN_FREEZE] {
                if policy.annotation(key).is_some() {
                    problems.push(format!("@{key} only applies to forbid policies"));
                }
            }
        }
        Effect::Forbid => {
            for key in [
                ANN_APPROVALS,
                ANN_APPROVERS,
                ANN_MAX_DAYS,
                ANN_RENEW_BEFORE_DAYS,
                ANN_REVIEW_WITHIN_HOURS,
                ANN_MAX_HOURS,
            ] {
                if policy.annotation(key).is_some() {
                    problems.push(format!("@{key} only applies to permit policies"));
                }
            }
            if policy.annotation(ANN_FREEZE).is_some() && !case_only {
                problems.push("@freeze only applies with @case_only(\"true\")".to_owned());
            }
        }
    }
    PolicyMeta {
        effect,
        approvals,
        approvers,
        case_only,
        freeze,
        terms,
    }
}

/// Records a Cedar diagnostic and every related one as issues in `file`.
fn push_diagnostic(
    issues: &mut Vec<BundleIssue>,
    file: &str,
    text: Option<&str>,
    diagnostic: &dyn Diagnostic,
) {
    let mut all: Vec<&dyn Diagnostic> = vec![diagnostic];
    if let Some(related) = diagnostic.related() {
        all.extend(related);
    }
    for d in all {
        let (line, column) = match (text, d.labels().and_then(|mut l| l.next())) {
            (Some(text), Some(label)) => line_column(text, label.offset()),
            _ => (None, None),
        };
        let mut message = with_sources(d);
        if let Some(help) = d.help() {
            message.push_str(&format!(" (help: {help})"));
        }
        issues.push(BundleIssue {
            file: file.to_owned(),
            line,
            column,
            message,
        });
    }
}

/// Joins the lines of a multi-line message with "; ".
pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// An error's message followed by its sources' messages (when they add something).
pub(crate) fn with_sources(error: &dyn std::error::Error) -> String {
    let mut message = one_line(&error.to_string());
    let mut source = error.source();
    while let Some(e) = source {
        let text = one_line(&e.to_string());
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = e.source();
    }
    message
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (Option<usize>, Option<usize>) {
    let Some(before) = text.get(..offset.min(text.len())) else {
        return (None, None);
    };
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (Some(line), Some(column))
}

/// The raw ids (the `@id` values), sorted and deduplicated.
pub(crate) fn sorted_ids<'a>(ids: impl Iterator<Item = &'a PolicyId>) -> Vec<String> {
    let set: BTreeSet<String> = ids.map(|id| AsRef::<str>::as_ref(id).to_owned()).collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), (Some(1), Some(1)));
        assert_eq!(line_column(text, 3), (Some(2), Some(1)));
        assert_eq!(line_column(text, 7), (Some(2), Some(4)));
        assert_eq!(line_column(text, 8), (Some(3), Some(1)));
    }

    fn remediations(text: &str) -> (Option<Remediations>, Vec<BundleIssue>) {
        let texts = BTreeMap::from([(REMEDIATIONS_FILE.to_owned(), text.to_owned())]);
        let mut issues = Vec::new();
        let out = load_remediations(&texts, None, &mut issues);
        (out, issues)
    }

    #[test]
    fn string_and_table_forms_both_load() {
        let (out, issues) = remediations(
            "[finding_types]\n\
             plain = \"disable\"\n\
             declared = { action = \"revoke\", signal = \"compromise\" }\n\
             no_signal = { action = \"rotate\" }\n\
             \n\
             [finding_types.long_form]\n\
             action = \"grant\"\n\
             signal = \"entitlement_request2\"\n",
        );
        assert!(issues.is_empty(), "{issues:?}");
        let out = out.unwrap();
        let actions: Vec<(&str, &str)> = out
            .actions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("declared", "revoke"),
                ("long_form", "grant"),
                ("no_signal", "rotate"),
                ("plain", "disable")
            ]
        );
        let signals: Vec<(&str, &str)> = out
            .signals
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            signals,
            [
                ("declared", "compromise"),
                ("long_form", "entitlement_request2")
            ]
        );
    }

    #[test]
    fn unknown_key_in_a_table_is_refused_with_its_line() {
        let (out, issues) = remediations(
            "[finding_types]\n\
             ok = \"disable\"\n\
             typo = { action = \"revoke\", sginal = \"compromise\" }\n",
        );
        assert!(out.is_none());
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].file, REMEDIATIONS_FILE);
        assert_eq!(issues[0].line, Some(3), "{issues:?}");
        assert!(issues[0].message.contains("sginal"), "{issues:?}");
    }

    #[test]
    fn table_without_an_action_is_refused_with_its_line() {
        let (out, issues) = remediations("[finding_types]\nx = { signal = \"leak\" }\n");
        assert!(out.is_none());
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].line, Some(2), "{issues:?}");
        assert!(issues[0].message.contains("action"), "{issues:?}");
    }

    #[test]
    fn bad_signals_are_refused_with_their_position() {
        for bad in ["", "Leak", "1leak", "_leak", "leak-ish", "leak ", "fuite_é"] {
            let (out, issues) = remediations(&format!(
                "[finding_types]\nok = \"disable\"\nx = {{ action = \"rotate\", signal = {bad:?} }}\n"
            ));
            assert!(out.is_none(), "{bad:?} accepted");
            assert_eq!(issues.len(), 1, "{issues:?}");
            assert_eq!(issues[0].file, REMEDIATIONS_FILE);
            assert_eq!((issues[0].line, issues[0].column), (Some(3), Some(35)));
            assert!(
                issues[0].message.contains("not a lowercase identifier"),
                "{issues:?}"
            );
        }
    }

    #[test]
    fn bad_signal_and_bad_action_are_both_named() {
        let (out, issues) =
            remediations("[finding_types]\nx = { action = \"nuke\", signal = \"Bad\" }\n");
        assert!(out.is_none());
        assert_eq!(issues.len(), 2, "{issues:?}");
        assert!(issues.iter().all(|i| i.line == Some(2)), "{issues:?}");
    }

    #[test]
    fn signal_names() {
        for good in ["a", "leak", "stale_credential", "x2", "a_1_b"] {
            assert!(is_signal_name(good), "{good:?}");
        }
        for bad in ["", "A", "2x", "_x", "x-y", "x y", "é"] {
            assert!(!is_signal_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn hash_depends_on_names_and_bytes() {
        let a = vec![BundleFile {
            name: "a.cedar".into(),
            bytes: b"x".to_vec(),
        }];
        let b = vec![BundleFile {
            name: "b.cedar".into(),
            bytes: b"x".to_vec(),
        }];
        assert_ne!(bundle_hash(&a), bundle_hash(&b));
        assert_eq!(bundle_hash(&a), bundle_hash(&a));
    }
}
