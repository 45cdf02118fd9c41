//! OAuth clients as a target: an authorization server's registered clients, AI agents among
//! them (an agent's tools are its scopes), managed over the standard protocols, so any server
//! that implements them will do:
//!
//! - RFC 7591 dynamic client registration ([`register`], for onboarding and tests) and RFC 7592
//!   management: `GET` a client's configuration (its scopes), `PUT` it back with new scopes,
//!   `DELETE` it. Each client is reached with its own registration access token, which writ
//!   reads from a file the operator keeps (`[[targets]] registrations_file`), never from its
//!   database; no server lists its clients, so the file is the inventory's list.
//! - RFC 7009 token revocation and RFC 7662 introspection ([`OauthClients::revoke_token`],
//!   [`OauthClients::introspect`]), as the client the token belongs to.
//!
//! Secrets (client secrets, registration access tokens, tokens) never leave this crate: read-back
//! attributes carry the client's metadata without them, and errors and logs never name them.
//!
//! Actions: `set_scopes` (exactly these), `grant` (add these), `reduce_scope` (take these
//! away), each undone by putting the pre-image's scopes back; `delete` (irreversible: the
//! server forgets the client and its secret).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value};
use writ_connectors::{
    ApplyOutcome, Capabilities, Connector, ConnectorError, DiscoveredObject, ObjectState, Plan,
    Verification,
};
use writ_core::change::{Action, Reversibility};

/// Metadata a `PUT` must not carry (RFC 7592 section 2.2), besides the secret, which it may
/// leave out (the server keeps it).
const NOT_IN_UPDATE: &[&str] = &[
    "registration_access_token",
    "registration_client_uri",
    "client_secret_expires_at",
    "client_id_issued_at",
    "client_secret",
];

/// A client writ manages: its id and its registration access token.
#[derive(Clone)]
pub struct Registration {
    /// The client id.
    pub client_id: String,
    /// Its RFC 7592 registration access token.
    pub token: SecretString,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("client_id", &self.client_id)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// How to reach an authorization server and which of its clients writ manages.
#[derive(Debug, Clone)]
pub struct OauthClientsConfig {
    /// The system name identities get.
    pub system: String,
    /// The issuer (its `/.well-known/openid-configuration` names the endpoints).
    pub issuer: String,
    /// The clients writ manages.
    pub registrations: Vec<Registration>,
    /// Which of them are AI agents (inventory kind `ai_agent`; the others `oauth_app`).
    pub agents: BTreeSet<String>,
}

impl OauthClientsConfig {
    /// Reads the registrations file: a JSON object from client id to registration access
    /// token. The file is a secret: it must be readable by its owner only.
    pub fn read_registrations(path: &std::path::Path) -> Result<Vec<Registration>, ConnectorError> {
        let name = path.display();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)
                .map_err(|e| ConnectorError::Permanent(format!("{name}: {e}")))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(ConnectorError::Permanent(format!(
                    "{name}: holds registration access tokens and is readable by others (mode {:o}); chmod 600 it",
                    mode & 0o777
                )));
            }
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConnectorError::Permanent(format!("{name}: {e}")))?;
        let map: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
            ConnectorError::Permanent(format!(
                "{name}: line {}: not a JSON object of client id to registration access token",
                e.line()
            ))
        })?;
        Ok(map
            .into_iter()
            .map(|(client_id, token)| Registration {
                client_id,
                token: SecretString::from(token),
            })
            .collect())
    }
}

/// The endpoints the issuer's discovery document names.
#[derive(Debug, Clone)]
struct Endpoints {
    token: String,
    registration: String,
    introspection: Option<String>,
    revocation: Option<String>,
}

/// What RFC 7591 registration returned: the client's credentials. Hand them to the client's
/// owner (and the registration access token to writ's registrations file); never log them.
pub struct Registered {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// The registration access token (RFC 7592).
    pub registration_access_token: SecretString,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn http_client() -> Result<reqwest::Client, ConnectorError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ConnectorError::Permanent(format!("building the HTTP client: {e}")))
}

/// A transport failure or a server error is worth retrying; a refusal is not.
fn transport(what: &str, err: &reqwest::Error) -> ConnectorError {
    // reqwest's errors name the URL, which holds no secret here (client ids only).
    ConnectorError::Retryable(format!("{what}: {err}"))
}

fn status_error(what: &str, status: StatusCode, body: &str) -> ConnectorError {
    // The body is the server's error object (RFC 6749 `error`, `error_description`); keep
    // only those fields, never an echo of what was sent.
    let described = serde_json::from_str::<Value>(body)
        .ok()
        .map(|v| {
            format!(
                "{} {}",
                v["error"].as_str().unwrap_or(""),
                v["error_description"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_default();
    let message = format!("{what}: HTTP {status} {}", described.trim());
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        ConnectorError::Retryable(message)
    } else {
        ConnectorError::Permanent(message)
    }
}

/// Registers a client (RFC 7591) at `issuer` with the initial access token, asking for
/// `metadata` (its `scope`, grant types, name, ...).
pub async fn register(
    issuer: &str,
    initial_access_token: &SecretString,
    metadata: &Value,
) -> Result<Registered, ConnectorError> {
    let http = http_client()?;
    let endpoints = discover_endpoints(&http, issuer).await?;
    let response = http
        .post(&endpoints.registration)
        .bearer_auth(initial_access_token.expose_secret())
        .json(metadata)
        .send()
        .await
        .map_err(|e| transport("registering a client", &e))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| transport("registering a client", &e))?;
    if status != StatusCode::CREATED && status != StatusCode::OK {
        return Err(status_error("registering a client", status, &body));
    }
    let value: Value = serde_json::from_str(&body)
        .map_err(|_| ConnectorError::Permanent("registration answer is not JSON".into()))?;
    let field = |name: &str| {
        value[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ConnectorError::Permanent(format!("registration answer has no {name}")))
    };
    Ok(Registered {
        client_id: field("client_id")?,
        client_secret: SecretString::from(field("client_secret")?),
        registration_access_token: SecretString::from(field("registration_access_token")?),
    })
}

async fn discover_endpoints(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<Endpoints, ConnectorError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| transport("reading the discovery document", &e))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| transport("reading the discovery document", &e))?;
    if !status.is_success() {
        return Err(status_error(
            "reading the discovery document",
            status,
            &body,
        ));
    }
    let doc: Value = serde_json::from_str(&body)
        .map_err(|_| ConnectorError::Permanent("the discovery document is not JSON".into()))?;
    let text = |name: &str| doc[name].as_str().map(str::to_owned);
    Ok(Endpoints {
        token: text("token_endpoint").ok_or_else(|| {
            ConnectorError::Permanent("the discovery document names no token_endpoint".into())
        })?,
        registration: text("registration_endpoint").ok_or_else(|| {
            ConnectorError::Permanent(
                "the server offers no dynamic client registration (registration_endpoint)".into(),
            )
        })?,
        introspection: text("introspection_endpoint"),
        revocation: text("revocation_endpoint"),
    })
}

/// The scopes a client's metadata allows (`scope`, space-separated).
fn scopes_in(metadata: &Value) -> BTreeSet<String> {
    metadata["scope"]
        .as_str()
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn joined(scopes: &BTreeSet<String>) -> String {
    scopes.iter().cloned().collect::<Vec<_>>().join(" ")
}

/// The connector: one authorization server, the clients of its registrations file.
pub struct OauthClients {
    system: String,
    issuer: String,
    http: reqwest::Client,
    registrations: BTreeMap<String, SecretString>,
    agents: BTreeSet<String>,
    endpoints: tokio::sync::OnceCell<Endpoints>,
}

impl std::fmt::Debug for OauthClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OauthClients")
            .field("system", &self.system)
            .field("issuer", &self.issuer)
            .field("clients", &self.registrations.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl OauthClients {
    /// The connector for `config`; the endpoints are discovered on first use.
    pub fn new(config: OauthClientsConfig) -> Result<Self, ConnectorError> {
        Ok(Self {
            system: config.system,
            issuer: config.issuer,
            http: http_client()?,
            registrations: config
                .registrations
                .into_iter()
                .map(|r| (r.client_id, r.token))
                .collect(),
            agents: config.agents,
            endpoints: tokio::sync::OnceCell::new(),
        })
    }

    async fn endpoints(&self) -> Result<&Endpoints, ConnectorError> {
        self.endpoints
            .get_or_try_init(|| discover_endpoints(&self.http, &self.issuer))
            .await
    }

    fn token_of(&self, client_id: &str) -> Result<&SecretString, ConnectorError> {
        self.registrations.get(client_id).ok_or_else(|| {
            ConnectorError::Permanent(format!(
                "client {client_id:?} is not in this target's registrations file"
            ))
        })
    }

    async fn client_uri(&self, client_id: &str) -> Result<String, ConnectorError> {
        let endpoints = self.endpoints().await?;
        let mut url = url::Url::parse(&endpoints.registration)
            .map_err(|e| ConnectorError::Permanent(format!("bad registration endpoint: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| ConnectorError::Permanent("bad registration endpoint".into()))?
            .pop_if_empty()
            .push(client_id);
        Ok(url.to_string())
    }

    /// The client's full configuration (RFC 7592 read), secrets included: for this crate only.
    /// `None` when the server no longer knows the client (deleted: its registration access
    /// token is gone with it, so RFC 7592 answers 401 as well as 404).
    async fn configuration(&self, client_id: &str) -> Result<Option<Value>, ConnectorError> {
        let token = self.token_of(client_id)?;
        let response = self
            .http
            .get(self.client_uri(client_id).await?)
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|e| transport("reading a client", &e))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| transport("reading a client", &e))?;
        match status {
            StatusCode::OK => serde_json::from_str(&body).map(Some).map_err(|_| {
                ConnectorError::Permanent("the client's configuration is not JSON".into())
            }),
            StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED => Ok(None),
            _ => Err(status_error("reading a client", status, &body)),
        }
    }

    /// The read-back state of a client: its metadata without secrets, and `scopes`.
    fn state_of(&self, client_id: &str, configuration: Option<&Value>) -> ObjectState {
        let attributes = configuration.map_or(Value::Null, |config| {
            let mut public = Map::new();
            if let Value::Object(fields) = config {
                for (name, value) in fields {
                    if !NOT_IN_UPDATE.contains(&name.as_str()) {
                        public.insert(name.clone(), value.clone());
                    }
                }
            }
            public.insert(
                "scopes".into(),
                Value::from(scopes_in(config).into_iter().collect::<Vec<_>>()),
            );
            public.insert("agent".into(), Value::Bool(self.agents.contains(client_id)));
            Value::Object(public)
        });
        ObjectState {
            external_id: client_id.to_owned(),
            exists: configuration.is_some(),
            attributes,
        }
    }

    /// Puts the client's configuration back with `scopes` (RFC 7592 update: the whole
    /// metadata, without the fields an update must not carry).
    async fn put_scopes(
        &self,
        client_id: &str,
        configuration: &Value,
        scopes: &BTreeSet<String>,
    ) -> Result<ApplyOutcome, ConnectorError> {
        let mut body = Map::new();
        if let Value::Object(fields) = configuration {
            for (name, value) in fields {
                if !NOT_IN_UPDATE.contains(&name.as_str()) {
                    body.insert(name.clone(), value.clone());
                }
            }
        }
        body.insert("client_id".into(), Value::String(client_id.to_owned()));
        body.insert("scope".into(), Value::String(joined(scopes)));
        let response = self
            .http
            .put(self.client_uri(client_id).await?)
            .bearer_auth(self.token_of(client_id)?.expose_secret())
            .json(&Value::Object(body))
            .send()
            .await
            .map_err(|e| transport("updating a client", &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| transport("updating a client", &e))?;
        if status.is_success() {
            return Ok(ApplyOutcome::Applied);
        }
        match status_error("updating a client", status, &text) {
            ConnectorError::Permanent(reason) => Ok(ApplyOutcome::Rejected { reason }),
            other => Err(other),
        }
    }

    /// The scopes the client must have once `action` is in effect, from `current`.
    fn wanted(action: &Action, current: &BTreeSet<String>) -> Option<BTreeSet<String>> {
        match action {
            Action::SetScopes { scopes } => Some(scopes.iter().cloned().collect()),
            Action::Grant { scopes } => Some(current.iter().chain(scopes).cloned().collect()),
            Action::ReduceScope { remove } => Some(
                current
                    .iter()
                    .filter(|s| !remove.contains(s))
                    .cloned()
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Whether the action holds in `now` (the scopes a grant adds are there, those a reduction
    /// removes are gone, a set is exact).
    fn holds(action: &Action, now: &BTreeSet<String>) -> bool {
        match action {
            Action::SetScopes { scopes } => *now == scopes.iter().cloned().collect(),
            Action::Grant { scopes } => scopes.iter().all(|s| now.contains(s)),
            Action::ReduceScope { remove } => remove.iter().all(|s| !now.contains(s)),
            _ => false,
        }
    }

    /// The client's secret, read from the server for a token call; never stored.
    async fn client_secret(&self, client_id: &str) -> Result<SecretString, ConnectorError> {
        let config = self.configuration(client_id).await?.ok_or_else(|| {
            ConnectorError::Permanent(format!("the server no longer knows client {client_id:?}"))
        })?;
        config["client_secret"]
            .as_str()
            .map(|s| SecretString::from(s.to_owned()))
            .ok_or_else(|| ConnectorError::Permanent(format!("client {client_id:?} has no secret")))
    }

    /// Revokes `token` (RFC 7009), as `client_id`, the client it was issued to.
    pub async fn revoke_token(
        &self,
        client_id: &str,
        token: &SecretString,
    ) -> Result<(), ConnectorError> {
        let endpoint = self.endpoints().await?.revocation.clone().ok_or_else(|| {
            ConnectorError::Unsupported("token revocation (no revocation_endpoint)".into())
        })?;
        let secret = self.client_secret(client_id).await?;
        let response = self
            .http
            .post(endpoint)
            .basic_auth(client_id, Some(secret.expose_secret()))
            .form(&[
                ("token", token.expose_secret()),
                ("token_type_hint", "access_token"),
            ])
            .send()
            .await
            .map_err(|e| transport("revoking a token", &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(status_error("revoking a token", status, &body))
    }

    /// Introspects `token` (RFC 7662), as `client_id`: whether it is active, and its scopes.
    pub async fn introspect(
        &self,
        client_id: &str,
        token: &SecretString,
    ) -> Result<(bool, BTreeSet<String>), ConnectorError> {
        let endpoint = self
            .endpoints()
            .await?
            .introspection
            .clone()
            .ok_or_else(|| {
                ConnectorError::Unsupported("introspection (no introspection_endpoint)".into())
            })?;
        let secret = self.client_secret(client_id).await?;
        let response = self
            .http
            .post(endpoint)
            .basic_auth(client_id, Some(secret.expose_secret()))
            .form(&[("token", token.expose_secret())])
            .send()
            .await
            .map_err(|e| transport("introspecting a token", &e))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| transport("introspecting a token", &e))?;
        if !status.is_success() {
            return Err(status_error("introspecting a token", status, &body));
        }
        let value: Value = serde_json::from_str(&body)
            .map_err(|_| ConnectorError::Permanent("introspection answer is not JSON".into()))?;
        Ok((
            value["active"].as_bool().unwrap_or(false),
            scopes_in(&value),
        ))
    }

    /// The token endpoint (for clients' own client-credentials grants).
    pub async fn token_endpoint(&self) -> Result<String, ConnectorError> {
        Ok(self.endpoints().await?.token.clone())
    }
}

#[async_trait]
impl Connector for OauthClients {
    fn system(&self) -> &str {
        &self.system
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            actions: ["set_scopes", "grant", "reduce_scope", "delete"]
                .into_iter()
                .map(String::from)
                .collect(),
            discovery: true,
        }
    }

    async fn discover(&self) -> Result<Vec<DiscoveredObject>, ConnectorError> {
        let mut objects = Vec::new();
        for client_id in self.registrations.keys() {
            let Some(config) = self.configuration(client_id).await? else {
                continue;
            };
            let state = self.state_of(client_id, Some(&config));
            objects.push(DiscoveredObject {
                external_id: client_id.clone(),
                object_kind: if self.agents.contains(client_id) {
                    "ai_agent".into()
                } else {
                    "oauth_client".into()
                },
                attributes: state.attributes,
            });
        }
        Ok(objects)
    }

    async fn read(&self, external_id: &str) -> Result<ObjectState, ConnectorError> {
        if !self.registrations.contains_key(external_id) {
            return Ok(self.state_of(external_id, None));
        }
        let config = self.configuration(external_id).await?;
        Ok(self.state_of(external_id, config.as_ref()))
    }

    async fn plan(&self, external_id: &str, action: &Action) -> Result<Plan, ConnectorError> {
        let reversibility = match action {
            Action::SetScopes { .. } | Action::Grant { .. } | Action::ReduceScope { .. } => {
                Reversibility::Reversible
            }
            Action::Delete => Reversibility::Irreversible,
            other => return Err(ConnectorError::Unsupported(other.name().into())),
        };
        self.token_of(external_id)?;
        let pre_image = self.read(external_id).await?;
        if !pre_image.exists {
            return Err(ConnectorError::Permanent(format!(
                "client {external_id:?} does not exist"
            )));
        }
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
        idempotency_key: &str,
    ) -> Result<ApplyOutcome, ConnectorError> {
        let client_id = plan.external_id.as_str();
        let Some(config) = self.configuration(client_id).await? else {
            return Ok(if plan.action == Action::Delete {
                ApplyOutcome::AlreadyInState
            } else {
                ApplyOutcome::Rejected {
                    reason: format!("client {client_id:?} does not exist"),
                }
            });
        };
        if plan.action == Action::Delete {
            let response = self
                .http
                .delete(self.client_uri(client_id).await?)
                .bearer_auth(self.token_of(client_id)?.expose_secret())
                .send()
                .await
                .map_err(|e| transport("deleting a client", &e))?;
            let status = response.status();
            if status.is_success() {
                tracing::info!(system = %self.system, client_id, idempotency_key, "deleted client");
                return Ok(ApplyOutcome::Applied);
            }
            let body = response.text().await.unwrap_or_default();
            return Err(status_error("deleting a client", status, &body));
        }
        let current = scopes_in(&config);
        let Some(wanted) = Self::wanted(&plan.action, &current) else {
            return Err(ConnectorError::Unsupported(plan.action.name().into()));
        };
        if wanted == current {
            return Ok(ApplyOutcome::AlreadyInState);
        }
        let outcome = self.put_scopes(client_id, &config, &wanted).await?;
        if outcome == ApplyOutcome::Applied {
            tracing::info!(
                system = %self.system,
                client_id,
                action = plan.action.name(),
                scopes = %joined(&wanted),
                idempotency_key,
                "changed client scopes"
            );
        }
        Ok(outcome)
    }

    async fn verify(&self, plan: &Plan) -> Result<Verification, ConnectorError> {
        let client_id = plan.external_id.as_str();
        let config = self.configuration(client_id).await?;
        let observed = self.state_of(client_id, config.as_ref());
        let in_effect = match (&plan.action, &config) {
            (Action::Delete, None) => true,
            (Action::Delete, Some(_)) | (_, None) => false,
            (action, Some(config)) => Self::holds(action, &scopes_in(config)),
        };
        Ok(if in_effect {
            Verification::Confirmed
        } else {
            Verification::NotInEffect { observed }
        })
    }

    async fn rollback(&self, plan: &Plan) -> Result<ApplyOutcome, ConnectorError> {
        if plan.reversibility == Reversibility::Irreversible {
            return Ok(ApplyOutcome::Rejected {
                reason: format!("{} is irreversible", plan.action.name()),
            });
        }
        let client_id = plan.external_id.as_str();
        let Some(config) = self.configuration(client_id).await? else {
            return Ok(ApplyOutcome::Rejected {
                reason: format!("client {client_id:?} no longer exists"),
            });
        };
        let before: BTreeSet<String> = plan.pre_image.attributes["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        if scopes_in(&config) == before {
            return Ok(ApplyOutcome::AlreadyInState);
        }
        self.put_scopes(client_id, &config, &before).await
    }
}
