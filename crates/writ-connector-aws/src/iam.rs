//! [`AwsIam`]: IAM users and their access keys, as the system `aws:<account id>`.
//!
//! External ids:
//! - `<user>`: an IAM user (for [`Action::ReduceScope`]; [`Action::Disable`] and
//!   [`Action::Enable`] turn all its access keys off or on; [`Action::Create`] makes a requested
//!   service account, see `iam_accounts`);
//! - `role:<name>`: an IAM role (for [`Action::ReduceScope`]; `:` never occurs in IAM names);
//! - `<user>/AccessKey1`, `<user>/AccessKey2`: a key *slot*, as Prowler names keys. Slot N is
//!   the Nth key of the user in `ListAccessKeys` ordered by `CreateDate` (oldest first; keys
//!   with the same `CreateDate` keep the order `ListAccessKeys` gives, which is creation order
//!   in moto). The slot is resolved once, when planning: the plan's pre-image pins the key id,
//!   so apply, verify and rollback act on that key even after a deletion renumbers the slots;
//! - `<user>/<access key id>` (`AKIA...`): a key by id.
//!
//! Idempotency is by state: every apply reads the target first and answers
//! [`ApplyOutcome::AlreadyInState`] when there is nothing to do, so the idempotency key is not
//! needed (IAM has no client tokens for these calls).

use async_trait::async_trait;
use serde_json::{Value, json};
use writ_connectors::{
    ApplyOutcome, Capabilities, Connector, ConnectorError, DiscoveredObject, ObjectState, Plan,
    Verification,
};
use writ_core::change::{Action, Reversibility};

use crate::client::AwsClient;
use crate::config::{AwsConfig, Service};
use crate::error::AwsError;
use crate::xml;

const ACTIVE: &str = "Active";
const INACTIVE: &str = "Inactive";
/// Pages fetched at most from one paginated IAM list.
const MAX_PAGES: usize = 1000;

/// The AWS IAM connector: disables, enables and deletes access keys; detaches managed and
/// deletes inline policies of users and roles, and confines them within a permissions
/// boundary.
///
/// [`Action::ReduceScope`] entries: `policy:<arn>` (detach a managed policy), `inline:<name>`
/// (delete an inline policy), `boundary:<arn>` (set the managed policy `<arn>` as the
/// permissions boundary, capping whatever the other policies grant). Rollback restores each
/// from the pre-image: re-attach, re-put the same document, put back the previous boundary or
/// remove it.
#[derive(Debug, Clone)]
pub struct AwsIam {
    client: AwsClient,
    pub(crate) system: String,
    /// Where rotated keys go, when rotation is configured.
    pub(crate) rotation: Option<crate::key_rotation::KeyDelivery>,
}

/// What an external id names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Principal(Principal),
    Key { user: String, key: KeyRef },
}

/// An IAM user or role: what policies and boundaries attach to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Principal {
    kind: PrincipalKind,
    name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrincipalKind {
    User,
    Role,
}

impl PrincipalKind {
    /// The noun in IAM action names (`DetachUserPolicy`, `DetachRolePolicy`).
    fn noun(self) -> &'static str {
        match self {
            PrincipalKind::User => "User",
            PrincipalKind::Role => "Role",
        }
    }

    /// The request parameter naming it.
    fn param(self) -> &'static str {
        match self {
            PrincipalKind::User => "UserName",
            PrincipalKind::Role => "RoleName",
        }
    }

    /// The pre-image attribute naming it.
    fn attribute(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Role => "role",
        }
    }
}

impl Principal {
    /// `Verb` + `User`/`Role` + `rest`: the IAM action for this kind of principal.
    fn api(&self, verb: &str, rest: &str) -> String {
        format!("{verb}{}{rest}", self.kind.noun())
    }

    /// The principal a user or role pre-image names.
    fn of(state: &ObjectState) -> Option<Principal> {
        [PrincipalKind::User, PrincipalKind::Role]
            .into_iter()
            .find_map(|kind| {
                str_attr(state, kind.attribute()).map(|name| Principal {
                    kind,
                    name: name.to_owned(),
                })
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyRef {
    /// 1-based slot (`AccessKey1`).
    Slot(usize),
    Id(String),
}

/// An entitlement named in [`Action::ReduceScope`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entitlement {
    /// `policy:<arn>`: a managed policy attached to the user.
    Managed(String),
    /// `inline:<name>`: an inline policy.
    Inline(String),
    /// `boundary:<arn>`: confine the principal within this managed policy.
    Boundary(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyMeta {
    pub(crate) id: String,
    pub(crate) status: String,
    create_date: String,
}

fn parse_target(external_id: &str) -> Result<Target, ConnectorError> {
    let invalid = || {
        ConnectorError::Permanent(format!(
            "invalid IAM external id {external_id:?}: expected <user>, role:<name>, <user>/AccessKeyN or <user>/<key id>"
        ))
    };
    if let Some(role) = external_id.strip_prefix("role:") {
        if role.is_empty() || role.contains(['/', ':']) {
            return Err(invalid());
        }
        return Ok(Target::Principal(Principal {
            kind: PrincipalKind::Role,
            name: role.to_owned(),
        }));
    }
    if external_id.contains(':') {
        return Err(invalid());
    }
    match external_id.split_once('/') {
        None if !external_id.is_empty() => Ok(Target::Principal(Principal {
            kind: PrincipalKind::User,
            name: external_id.to_owned(),
        })),
        None => Err(invalid()),
        Some((user, key)) if !user.is_empty() && !key.is_empty() && !key.contains('/') => {
            let key = match key.strip_prefix("AccessKey").map(str::parse::<usize>) {
                Some(Ok(n)) if n >= 1 => KeyRef::Slot(n),
                Some(_) => return Err(invalid()),
                None => KeyRef::Id(key.to_owned()),
            };
            Ok(Target::Key {
                user: user.to_owned(),
                key,
            })
        }
        Some(_) => Err(invalid()),
    }
}

fn parse_entitlement(s: &str) -> Result<Entitlement, ConnectorError> {
    match s.split_once(':') {
        Some(("policy", arn)) if arn.starts_with("arn:") => {
            Ok(Entitlement::Managed(arn.to_owned()))
        }
        Some(("inline", name)) if !name.is_empty() => Ok(Entitlement::Inline(name.to_owned())),
        Some(("boundary", arn)) if arn.starts_with("arn:") => {
            Ok(Entitlement::Boundary(arn.to_owned()))
        }
        _ => Err(ConnectorError::Permanent(format!(
            "invalid entitlement {s:?}: expected policy:<arn>, inline:<name> or boundary:<arn>"
        ))),
    }
}

/// Orders keys into slots: by `CreateDate`, ties keeping `ListAccessKeys` order.
fn order_slots(keys: &mut [KeyMeta]) {
    keys.sort_by(|a, b| {
        match (
            a.create_date.parse::<jiff::Timestamp>(),
            b.create_date.parse::<jiff::Timestamp>(),
        ) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.create_date.cmp(&b.create_date),
        }
    });
}

/// Policy documents come URL-encoded from AWS (`%7B...`); moto returns them as sent.
fn decode_policy_document(raw: &str) -> String {
    if raw.trim_start().starts_with('{') {
        raw.to_owned()
    } else {
        percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned()
    }
}

fn rejected(reason: impl Into<String>) -> ApplyOutcome {
    ApplyOutcome::Rejected {
        reason: reason.into(),
    }
}

/// A refusal from AWS becomes [`ApplyOutcome::Rejected`]; anything else an error.
fn refusal_or_err(e: AwsError) -> Result<ApplyOutcome, ConnectorError> {
    if e.is_refusal() {
        Ok(rejected(e.to_string()))
    } else {
        Err(e.into())
    }
}

fn str_attr<'a>(state: &'a ObjectState, name: &str) -> Option<&'a str> {
    state.attributes.get(name).and_then(Value::as_str)
}

impl AwsIam {
    /// Connects with `config`, learning the account id from STS unless configured.
    pub async fn connect(config: AwsConfig) -> Result<Self, AwsError> {
        let client = AwsClient::new(config)?;
        let account = client.account_id().await?;
        Ok(Self::new(client, &account))
    }

    /// A connector for `account_id` over an existing client.
    pub fn new(client: AwsClient, account_id: &str) -> Self {
        Self {
            client,
            system: format!("aws:{account_id}"),
            rotation: None,
        }
    }

    /// Rotates access keys with cut-over: each new key's secret goes to the Secrets Manager
    /// that `secrets` reaches, into the secret `name_template` names (`{system}` and
    /// `{identity}`, the user name, replaced).
    pub fn with_rotation(
        mut self,
        secrets: AwsConfig,
        name_template: &str,
    ) -> Result<Self, AwsError> {
        self.rotation = Some(crate::key_rotation::KeyDelivery {
            secrets: AwsClient::new(secrets)?,
            name_template: name_template.to_owned(),
        });
        Ok(self)
    }

    /// The underlying signed client.
    pub fn client(&self) -> &AwsClient {
        &self.client
    }

    pub(crate) async fn call(
        &self,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, AwsError> {
        self.client.query(Service::Iam, action, params).await
    }

    /// Calls a paginated IAM list action and collects `extract` over every page.
    async fn paged<T>(
        &self,
        action: &str,
        params: &[(&str, &str)],
        extract: impl Fn(roxmltree::Node<'_, '_>) -> Vec<T>,
    ) -> Result<Vec<T>, AwsError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut p: Vec<(&str, &str)> = params.to_vec();
            if let Some(m) = &marker {
                p.push(("Marker", m));
            }
            let body = self.call(action, &p).await?;
            let doc = xml::parse(&body)?;
            out.extend(extract(doc.root()));
            marker = match xml::find_text(doc.root(), "IsTruncated").as_deref() {
                Some("true") => xml::find_text(doc.root(), "Marker"),
                _ => None,
            };
            if marker.is_none() {
                return Ok(out);
            }
        }
        Err(AwsError::Decode(format!(
            "{action}: more than {MAX_PAGES} pages"
        )))
    }

    /// The user's keys in slot order, or `None` if the user does not exist.
    pub(crate) async fn list_keys(&self, user: &str) -> Result<Option<Vec<KeyMeta>>, AwsError> {
        let result = self
            .paged("ListAccessKeys", &[("UserName", user)], |root| {
                xml::members(root, "AccessKeyMetadata")
                    .into_iter()
                    .filter_map(|m| {
                        Some(KeyMeta {
                            id: xml::child_text(m, "AccessKeyId")?,
                            status: xml::child_text(m, "Status").unwrap_or_default(),
                            create_date: xml::child_text(m, "CreateDate").unwrap_or_default(),
                        })
                    })
                    .collect()
            })
            .await;
        match result {
            Ok(mut keys) => {
                order_slots(&mut keys);
                Ok(Some(keys))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn last_used(&self, key_id: &str) -> Result<Value, AwsError> {
        let body = self
            .call("GetAccessKeyLastUsed", &[("AccessKeyId", key_id)])
            .await?;
        let doc = xml::parse(&body)?;
        let Some(node) = xml::find(doc.root(), "AccessKeyLastUsed") else {
            return Ok(Value::Null);
        };
        Ok(match xml::child_text(node, "LastUsedDate") {
            Some(date) => json!({
                "date": date,
                "service": xml::child_text(node, "ServiceName"),
                "region": xml::child_text(node, "Region"),
            }),
            None => Value::Null,
        })
    }

    async fn attached_policies(&self, who: &Principal) -> Result<Vec<(String, String)>, AwsError> {
        self.paged(
            &who.api("ListAttached", "Policies"),
            &[(who.kind.param(), &who.name)],
            |root| {
                xml::members(root, "AttachedPolicies")
                    .into_iter()
                    .filter_map(|m| {
                        Some((
                            xml::child_text(m, "PolicyArn")?,
                            xml::child_text(m, "PolicyName").unwrap_or_default(),
                        ))
                    })
                    .collect()
            },
        )
        .await
    }

    async fn inline_policy_names(&self, who: &Principal) -> Result<Vec<String>, AwsError> {
        self.paged(
            &who.api("List", "Policies"),
            &[(who.kind.param(), &who.name)],
            |root| {
                xml::members(root, "PolicyNames")
                    .into_iter()
                    .map(|m| m.text().unwrap_or_default().to_owned())
                    .collect()
            },
        )
        .await
    }

    async fn inline_policy_document(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<String, AwsError> {
        let body = self
            .call(
                &who.api("Get", "Policy"),
                &[(who.kind.param(), &who.name), ("PolicyName", name)],
            )
            .await?;
        let doc = xml::parse(&body)?;
        let raw = xml::find_text(doc.root(), "PolicyDocument")
            .ok_or_else(|| AwsError::Decode("Get*Policy without PolicyDocument".into()))?;
        Ok(decode_policy_document(&raw))
    }

    /// A user's or role's state: its managed and inline policies (with documents), its
    /// permissions boundary and, for a user, its key ids.
    async fn principal_state(&self, who: &Principal) -> Result<ObjectState, AwsError> {
        let external_id = match who.kind {
            PrincipalKind::User => who.name.clone(),
            PrincipalKind::Role => format!("role:{}", who.name),
        };
        let body = match self
            .call(&who.api("Get", ""), &[(who.kind.param(), &who.name)])
            .await
        {
            Ok(body) => body,
            Err(e) if e.is_not_found() => {
                return Ok(ObjectState {
                    external_id,
                    exists: false,
                    attributes: json!({ (who.kind.attribute()): who.name }),
                });
            }
            Err(e) => return Err(e),
        };
        let (arn, boundary, last_used) = {
            let doc = xml::parse(&body)?;
            (
                xml::find_text(doc.root(), "Arn"),
                xml::find_text(doc.root(), "PermissionsBoundaryArn"),
                // Roles only: users' last use is their keys'.
                xml::find(doc.root(), "RoleLastUsed")
                    .and_then(|node| xml::child_text(node, "LastUsedDate")),
            )
        };
        let attached: Vec<Value> = self
            .attached_policies(who)
            .await?
            .into_iter()
            .map(|(arn, name)| json!({ "arn": arn, "name": name }))
            .collect();
        let mut inline = serde_json::Map::new();
        for name in self.inline_policy_names(who).await? {
            let document = self.inline_policy_document(who, &name).await?;
            inline.insert(name, Value::String(document));
        }
        let mut attributes = json!({
            (who.kind.attribute()): who.name,
            "arn": arn,
            "attached_policies": attached,
            "inline_policies": inline,
            "permissions_boundary": boundary,
        });
        if let Some(date) = last_used {
            attributes["last_used"] = json!({ "date": date });
        }
        if who.kind == PrincipalKind::User {
            let keys = self.list_keys(&who.name).await?.unwrap_or_default();
            attributes["access_key_status"] = crate::iam_accounts::key_statuses(&keys);
            attributes["access_keys"] = json!(keys.into_iter().map(|k| k.id).collect::<Vec<_>>());
        }
        Ok(ObjectState {
            external_id,
            exists: true,
            attributes,
        })
    }

    /// A key's state, resolving a slot to a key id.
    async fn key_state(&self, user: &str, key: &KeyRef) -> Result<ObjectState, AwsError> {
        let requested = match key {
            KeyRef::Slot(n) => format!("AccessKey{n}"),
            KeyRef::Id(id) => id.clone(),
        };
        let Some(keys) = self.list_keys(user).await? else {
            return Ok(ObjectState {
                external_id: format!("{user}/{requested}"),
                exists: false,
                attributes: json!({ "user": user, "reason": "no such user" }),
            });
        };
        let found = match key {
            KeyRef::Slot(n) => keys.get(n - 1).map(|k| (n - 1, k)),
            KeyRef::Id(id) => keys.iter().enumerate().find(|(_, k)| &k.id == id),
        };
        let Some((index, meta)) = found else {
            let mut attributes = json!({ "user": user, "reason": "no such access key" });
            if let KeyRef::Id(id) = key {
                attributes["access_key_id"] = json!(id);
            }
            return Ok(ObjectState {
                external_id: format!("{user}/{requested}"),
                exists: false,
                attributes,
            });
        };
        let last_used = self.last_used(&meta.id).await?;
        Ok(ObjectState {
            external_id: format!("{user}/{}", meta.id),
            exists: true,
            attributes: json!({
                "user": user,
                "access_key_id": meta.id,
                "slot": format!("AccessKey{}", index + 1),
                "status": meta.status,
                "create_date": meta.create_date,
                "last_used": last_used,
            }),
        })
    }

    /// The current status of a pinned key: `Ok(None)` if the user or key is gone.
    pub(crate) async fn key_status(
        &self,
        user: &str,
        key_id: &str,
    ) -> Result<Option<String>, AwsError> {
        Ok(self
            .list_keys(user)
            .await?
            .and_then(|keys| keys.into_iter().find(|k| k.id == key_id))
            .map(|k| k.status))
    }

    pub(crate) async fn set_status(
        &self,
        user: &str,
        key_id: &str,
        status: &str,
    ) -> Result<ApplyOutcome, ConnectorError> {
        match self.key_status(user, key_id).await? {
            None => Ok(rejected(format!(
                "NoSuchEntity: access key {key_id} of user {user} does not exist"
            ))),
            Some(current) if current == status => Ok(ApplyOutcome::AlreadyInState),
            Some(_) => match self
                .call(
                    "UpdateAccessKey",
                    &[
                        ("UserName", user),
                        ("AccessKeyId", key_id),
                        ("Status", status),
                    ],
                )
                .await
            {
                Ok(_) => Ok(ApplyOutcome::Applied),
                Err(e) => refusal_or_err(e),
            },
        }
    }

    /// The user a whole-user plan (create, disable, enable a user) acts on; `None` for any
    /// other plan.
    fn whole_user(plan: &Plan) -> Option<String> {
        if !matches!(
            plan.action,
            Action::Create { .. } | Action::Disable | Action::Enable
        ) {
            return None;
        }
        match parse_target(&plan.external_id) {
            Ok(Target::Principal(who)) if who.kind == PrincipalKind::User => Some(who.name),
            _ => None,
        }
    }

    /// The user and pinned key id of a key plan.
    fn pinned_key(plan: &Plan) -> Result<(String, String), ApplyOutcome> {
        let pre = &plan.pre_image;
        match (str_attr(pre, "user"), str_attr(pre, "access_key_id")) {
            (Some(user), Some(key)) if pre.exists => Ok((user.to_owned(), key.to_owned())),
            _ => Err(rejected(format!(
                "NoSuchEntity: {} does not exist ({})",
                plan.external_id,
                str_attr(pre, "reason").unwrap_or("unknown")
            ))),
        }
    }

    async fn reduce_scope(
        &self,
        plan: &Plan,
        remove: &[String],
    ) -> Result<ApplyOutcome, ConnectorError> {
        let Some(who) = Principal::of(&plan.pre_image).filter(|_| plan.pre_image.exists) else {
            return Ok(rejected(format!(
                "NoSuchEntity: {} does not exist",
                plan.external_id
            )));
        };
        let now = self.principal_state(&who).await?;
        if !now.exists {
            return Ok(rejected(format!(
                "NoSuchEntity: {} does not exist",
                plan.external_id
            )));
        }
        let named = (who.kind.param(), who.name.as_str());
        let mut changed = false;
        for entry in remove {
            let result = match parse_entitlement(entry)? {
                Entitlement::Managed(arn) if has_managed(&now, &arn) => {
                    self.call(&who.api("Detach", "Policy"), &[named, ("PolicyArn", &arn)])
                        .await
                }
                Entitlement::Inline(name) if inline_document(&now, &name).is_some() => {
                    self.call(
                        &who.api("Delete", "Policy"),
                        &[named, ("PolicyName", &name)],
                    )
                    .await
                }
                Entitlement::Boundary(arn) if boundary(&now) != Some(arn.as_str()) => {
                    self.call(
                        &who.api("Put", "PermissionsBoundary"),
                        &[named, ("PermissionsBoundary", &arn)],
                    )
                    .await
                }
                _ => continue,
            };
            match result {
                Ok(_) => changed = true,
                // Removed meanwhile by someone else: the desired state holds.
                Err(e) if e.is_not_found() => {}
                Err(e) => return refusal_or_err(e),
            }
        }
        Ok(if changed {
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::AlreadyInState
        })
    }

    async fn restore_scope(
        &self,
        plan: &Plan,
        remove: &[String],
    ) -> Result<ApplyOutcome, ConnectorError> {
        let pre = &plan.pre_image;
        let Some(who) = Principal::of(pre).filter(|_| pre.exists) else {
            return Ok(ApplyOutcome::AlreadyInState);
        };
        let now = self.principal_state(&who).await?;
        if !now.exists {
            return Ok(rejected(format!(
                "NoSuchEntity: {} no longer exists",
                plan.external_id
            )));
        }
        let named = (who.kind.param(), who.name.as_str());
        let mut changed = false;
        for entry in remove {
            let result = match parse_entitlement(entry)? {
                Entitlement::Managed(arn) if has_managed(pre, &arn) && !has_managed(&now, &arn) => {
                    self.call(&who.api("Attach", "Policy"), &[named, ("PolicyArn", &arn)])
                        .await
                }
                Entitlement::Inline(name) => match inline_document(pre, &name) {
                    Some(doc) if inline_document(&now, &name) != Some(doc) => {
                        self.call(
                            &who.api("Put", "Policy"),
                            &[named, ("PolicyName", &name), ("PolicyDocument", doc)],
                        )
                        .await
                    }
                    _ => continue,
                },
                Entitlement::Boundary(_) if boundary(pre) == boundary(&now) => continue,
                Entitlement::Boundary(_) => match boundary(pre) {
                    Some(previous) => {
                        self.call(
                            &who.api("Put", "PermissionsBoundary"),
                            &[named, ("PermissionsBoundary", previous)],
                        )
                        .await
                    }
                    None => {
                        self.call(&who.api("Delete", "PermissionsBoundary"), &[named])
                            .await
                    }
                },
                Entitlement::Managed(_) => continue,
            };
            match result {
                Ok(_) => changed = true,
                Err(e) => return refusal_or_err(e),
            }
        }
        Ok(if changed {
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::AlreadyInState
        })
    }
}

/// The permissions boundary's policy ARN in a user or role state.
fn boundary(state: &ObjectState) -> Option<&str> {
    str_attr(state, "permissions_boundary")
}

fn has_managed(state: &ObjectState, arn: &str) -> bool {
    state
        .attributes
        .get("attached_policies")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter()
                .any(|p| p.get("arn").and_then(Value::as_str) == Some(arn))
        })
}

fn inline_document<'a>(state: &'a ObjectState, name: &str) -> Option<&'a str> {
    state
        .attributes
        .get("inline_policies")
        .and_then(|m| m.get(name))
        .and_then(Value::as_str)
}

#[async_trait]
impl Connector for AwsIam {
    fn system(&self) -> &str {
        &self.system
    }

    fn key_rotation(&self) -> Option<&dyn writ_connectors::KeyRotation> {
        self.rotation
            .as_ref()
            .map(|_| self as &dyn writ_connectors::KeyRotation)
    }

    fn capabilities(&self) -> Capabilities {
        let mut actions: Vec<String> = ["disable", "enable", "delete", "reduce_scope"]
            .map(str::to_owned)
            .to_vec();
        if self.rotation.is_some() {
            // A new account's key and a rotated key alike go to the consumers' secret.
            actions.push("rotate".to_owned());
            actions.push("create".to_owned());
        }
        Capabilities {
            actions,
            discovery: true,
        }
    }

    async fn discover(&self) -> Result<Vec<DiscoveredObject>, ConnectorError> {
        let users: Vec<Value> = self
            .paged("ListUsers", &[], |root| {
                xml::members(root, "Users")
                    .into_iter()
                    .map(|m| {
                        json!({
                            "user": xml::child_text(m, "UserName"),
                            "user_id": xml::child_text(m, "UserId"),
                            "arn": xml::child_text(m, "Arn"),
                            "path": xml::child_text(m, "Path"),
                            "create_date": xml::child_text(m, "CreateDate"),
                            "password_last_used": xml::child_text(m, "PasswordLastUsed"),
                        })
                    })
                    .collect()
            })
            .await?;
        let mut out = Vec::new();
        for mut attributes in users {
            let Some(user) = attributes
                .get("user")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            let principal = Principal {
                kind: PrincipalKind::User,
                name: user.clone(),
            };
            let attached: Vec<Value> = self
                .attached_policies(&principal)
                .await?
                .into_iter()
                .map(|(arn, name)| json!({ "arn": arn, "name": name }))
                .collect();
            attributes["attached_policies"] = Value::Array(attached);
            attributes["inline_policies"] = json!(self.inline_policy_names(&principal).await?);
            let keys = self.list_keys(&user).await?.unwrap_or_default();
            attributes["access_keys"] = json!(keys.iter().map(|k| &k.id).collect::<Vec<_>>());
            out.push(DiscoveredObject {
                external_id: user.clone(),
                object_kind: "user".to_owned(),
                attributes,
            });
            for (index, key) in keys.iter().enumerate() {
                out.push(DiscoveredObject {
                    external_id: format!("{user}/{}", key.id),
                    object_kind: "access_key".to_owned(),
                    attributes: json!({
                        "user": user,
                        "access_key_id": key.id,
                        "slot": format!("AccessKey{}", index + 1),
                        "slot_external_id": format!("{user}/AccessKey{}", index + 1),
                        "status": key.status,
                        "create_date": key.create_date,
                        "last_used": self.last_used(&key.id).await?,
                    }),
                });
            }
        }
        let roles: Vec<String> = self
            .paged("ListRoles", &[], |root| {
                xml::members(root, "Roles")
                    .into_iter()
                    .filter_map(|m| xml::child_text(m, "RoleName"))
                    .collect()
            })
            .await?;
        for name in roles {
            let state = self
                .principal_state(&Principal {
                    kind: PrincipalKind::Role,
                    name,
                })
                .await?;
            // Deleted between the listing and the read: not there any more.
            if state.exists {
                out.push(DiscoveredObject {
                    external_id: state.external_id,
                    object_kind: "role".to_owned(),
                    attributes: state.attributes,
                });
            }
        }
        Ok(out)
    }

    async fn read(&self, external_id: &str) -> Result<ObjectState, ConnectorError> {
        Ok(match parse_target(external_id)? {
            Target::Principal(who) => self.principal_state(&who).await?,
            Target::Key { user, key } => self.key_state(&user, &key).await?,
        })
    }

    async fn plan(&self, external_id: &str, action: &Action) -> Result<Plan, ConnectorError> {
        let target = parse_target(external_id)?;
        let reversibility = match (&target, action) {
            (Target::Key { .. }, Action::Disable | Action::Enable) => Reversibility::Reversible,
            // AWS never shows a deleted key's secret again: it cannot be recreated.
            (Target::Key { .. }, Action::Delete) => Reversibility::Irreversible,
            // Orchestrated step by step by the engine (`key_rotation`); never undone.
            (Target::Key { .. }, Action::Rotate) if self.rotation.is_some() => {
                Reversibility::Irreversible
            }
            // A whole user: every access key turned off or back on.
            (Target::Principal(who), Action::Disable | Action::Enable)
                if who.kind == PrincipalKind::User =>
            {
                Reversibility::Reversible
            }
            // A requested service account: its key goes to the consumers' secret.
            (Target::Principal(who), Action::Create { .. })
                if who.kind == PrincipalKind::User && self.rotation.is_some() =>
            {
                Reversibility::Reversible
            }
            (Target::Principal(_), Action::ReduceScope { remove }) => {
                if remove.is_empty() {
                    return Err(ConnectorError::Permanent(
                        "reduce_scope needs at least one entitlement".into(),
                    ));
                }
                for entry in remove {
                    parse_entitlement(entry)?;
                }
                Reversibility::Reversible
            }
            _ => {
                return Err(ConnectorError::Unsupported(format!(
                    "{} on {external_id}",
                    action.name()
                )));
            }
        };
        let pre_image = match &target {
            Target::Principal(who) => self.principal_state(who).await?,
            Target::Key { user, key } => self.key_state(user, key).await?,
        };
        Ok(Plan {
            external_id: external_id.to_owned(),
            action: action.clone(),
            pre_image,
            reversibility,
        })
    }

    async fn apply(
        &self,
        plan: &Plan,
        _idempotency_key: &str,
    ) -> Result<ApplyOutcome, ConnectorError> {
        if let Some(user) = Self::whole_user(plan) {
            return match &plan.action {
                Action::Create {
                    owner_team,
                    purpose,
                } => self.create_user(&user, owner_team, purpose).await,
                Action::Disable => self.set_user_keys(&user, INACTIVE).await,
                Action::Enable => self.set_user_keys(&user, ACTIVE).await,
                other => Err(ConnectorError::Unsupported(other.name().to_owned())),
            };
        }
        match &plan.action {
            Action::Disable | Action::Enable | Action::Delete => {
                let (user, key_id) = match Self::pinned_key(plan) {
                    Ok(pinned) => pinned,
                    Err(outcome) => return Ok(outcome),
                };
                match plan.action {
                    Action::Disable => self.set_status(&user, &key_id, INACTIVE).await,
                    Action::Enable => self.set_status(&user, &key_id, ACTIVE).await,
                    _ => {
                        if self.key_status(&user, &key_id).await?.is_none() {
                            return Ok(ApplyOutcome::AlreadyInState);
                        }
                        match self
                            .call(
                                "DeleteAccessKey",
                                &[("UserName", &user), ("AccessKeyId", &key_id)],
                            )
                            .await
                        {
                            Ok(_) => Ok(ApplyOutcome::Applied),
                            Err(e) if e.is_not_found() => Ok(ApplyOutcome::AlreadyInState),
                            Err(e) => refusal_or_err(e),
                        }
                    }
                }
            }
            Action::ReduceScope { remove } => self.reduce_scope(plan, remove).await,
            other => Err(ConnectorError::Unsupported(other.name().to_owned())),
        }
    }

    async fn verify(&self, plan: &Plan) -> Result<Verification, ConnectorError> {
        if let Some(user) = Self::whole_user(plan) {
            return match &plan.action {
                Action::Create { .. } => self.verify_created(&user).await,
                Action::Disable => self.verify_user_keys(&user, INACTIVE).await,
                _ => self.verify_user_keys(&user, ACTIVE).await,
            };
        }
        match &plan.action {
            Action::Disable | Action::Enable | Action::Delete => {
                let (user, key_id) = match Self::pinned_key(plan) {
                    Ok(pinned) => pinned,
                    Err(_) => {
                        return Ok(Verification::NotInEffect {
                            observed: plan.pre_image.clone(),
                        });
                    }
                };
                let observed = self.key_state(&user, &KeyRef::Id(key_id)).await?;
                let status = str_attr(&observed, "status");
                let holds = match plan.action {
                    Action::Disable => observed.exists && status == Some(INACTIVE),
                    Action::Enable => observed.exists && status == Some(ACTIVE),
                    _ => !observed.exists,
                };
                Ok(if holds {
                    Verification::Confirmed
                } else {
                    Verification::NotInEffect { observed }
                })
            }
            Action::ReduceScope { remove } => {
                let Some(who) = Principal::of(&plan.pre_image) else {
                    return Ok(Verification::NotInEffect {
                        observed: plan.pre_image.clone(),
                    });
                };
                let observed = self.principal_state(&who).await?;
                let mut holds = observed.exists;
                for entry in remove {
                    holds &= match parse_entitlement(entry)? {
                        Entitlement::Managed(arn) => !has_managed(&observed, &arn),
                        Entitlement::Inline(name) => inline_document(&observed, &name).is_none(),
                        Entitlement::Boundary(arn) => boundary(&observed) == Some(arn.as_str()),
                    };
                }
                Ok(if holds {
                    Verification::Confirmed
                } else {
                    Verification::NotInEffect { observed }
                })
            }
            other => Err(ConnectorError::Unsupported(other.name().to_owned())),
        }
    }

    async fn rollback(&self, plan: &Plan) -> Result<ApplyOutcome, ConnectorError> {
        if let Some(user) = Self::whole_user(plan) {
            return match &plan.action {
                Action::Create { .. } => self.remove_created(&user).await,
                _ => self.restore_user_keys(&user, plan).await,
            };
        }
        match &plan.action {
            Action::Disable | Action::Enable => {
                let Ok((user, key_id)) = Self::pinned_key(plan) else {
                    return Ok(ApplyOutcome::AlreadyInState);
                };
                let Some(status) = str_attr(&plan.pre_image, "status") else {
                    return Ok(rejected("the pre-image has no key status"));
                };
                self.set_status(&user, &key_id, status).await
            }
            Action::Delete => {
                let Ok((user, key_id)) = Self::pinned_key(plan) else {
                    return Ok(ApplyOutcome::AlreadyInState);
                };
                if self.key_status(&user, &key_id).await?.is_some() {
                    return Ok(ApplyOutcome::AlreadyInState);
                }
                Ok(rejected(format!(
                    "access key {key_id} of {user} was deleted: deleting an access key is irreversible"
                )))
            }
            Action::ReduceScope { remove } => self.restore_scope(plan, remove).await,
            other => Err(ConnectorError::Unsupported(other.name().to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_external_ids() {
        assert_eq!(
            parse_target("svc").unwrap(),
            Target::Principal(Principal {
                kind: PrincipalKind::User,
                name: "svc".into()
            })
        );
        assert_eq!(
            parse_target("role:agent-runner").unwrap(),
            Target::Principal(Principal {
                kind: PrincipalKind::Role,
                name: "agent-runner".into()
            })
        );
        assert_eq!(
            parse_target("svc/AccessKey2").unwrap(),
            Target::Key {
                user: "svc".into(),
                key: KeyRef::Slot(2)
            }
        );
        assert_eq!(
            parse_target("svc/AKIAEXAMPLE").unwrap(),
            Target::Key {
                user: "svc".into(),
                key: KeyRef::Id("AKIAEXAMPLE".into())
            }
        );
        for bad in [
            "",
            "/x",
            "svc/",
            "svc/AccessKey0",
            "svc/AccessKeyX",
            "a/b/c",
            "role:",
            "role:a/b",
            "group:admins",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_entitlements() {
        assert_eq!(
            parse_entitlement("policy:arn:aws:iam::aws:policy/ReadOnlyAccess").unwrap(),
            Entitlement::Managed("arn:aws:iam::aws:policy/ReadOnlyAccess".into())
        );
        assert_eq!(
            parse_entitlement("inline:star").unwrap(),
            Entitlement::Inline("star".into())
        );
        assert_eq!(
            parse_entitlement("boundary:arn:aws:iam::123456789012:policy/cap").unwrap(),
            Entitlement::Boundary("arn:aws:iam::123456789012:policy/cap".into())
        );
        assert!(parse_entitlement("boundary:cap").is_err());
        assert!(parse_entitlement("group:admins").is_err());
        assert!(parse_entitlement("policy:ReadOnly").is_err());
    }

    #[test]
    fn slots_follow_create_date_then_list_order() {
        let k = |id: &str, date: &str| KeyMeta {
            id: id.into(),
            status: ACTIVE.into(),
            create_date: date.into(),
        };
        let mut keys = vec![
            k("B", "2024-02-01T00:00:00Z"),
            k("A", "2024-01-01T00:00:00+00:00"),
            k("C", "2024-02-01T00:00:00Z"),
        ];
        order_slots(&mut keys);
        let ids: Vec<_> = keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["A", "B", "C"]);
    }

    #[test]
    fn decodes_policy_documents() {
        assert_eq!(decode_policy_document("%7B%22a%22%3A1%7D"), r#"{"a":1}"#);
        assert_eq!(decode_policy_document(r#"{"a":"%41"}"#), r#"{"a":"%41"}"#);
    }
}
