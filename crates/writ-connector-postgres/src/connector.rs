//! [`PostgresRoles`]: the [`Connector`] for the roles of one PostgreSQL server.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection};
use writ_connectors::{
    ApplyOutcome, Capabilities, Connector, ConnectorError, DiscoveredObject, ObjectState, Plan,
    Verification,
};
use writ_core::change::{Action, Reversibility};

use crate::config::{PostgresRolesConfig, SecretSink};
use crate::error;
use crate::scram::{self, ExposeSecret as _};
use crate::sql::{self, Item, quote_ident, quote_literal};
use crate::state::{self, Held, RoleAttributes};

/// How long `pg_terminate_backend` waits for each session to end (milliseconds).
const TERMINATE_WAIT_MS: i64 = 5000;

/// The connector for the roles of one PostgreSQL server. See the crate README.
pub struct PostgresRoles {
    system: String,
    pool: PgPool,
    sink: Option<Arc<dyn SecretSink>>,
}

impl std::fmt::Debug for PostgresRoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRoles")
            .field("system", &self.system)
            .field("rotation_sink", &self.sink.as_ref().map(|_| "configured"))
            .finish_non_exhaustive()
    }
}

fn connect_options(url: &str) -> Result<PgConnectOptions, ConnectorError> {
    let options = PgConnectOptions::from_str(url).map_err(|e| error::map("admin URL", e))?;
    Ok(options
        .application_name("writ-connector-postgres")
        .options([("lock_timeout", "10s"), ("statement_timeout", "60s")])
        // Statements can hold a SCRAM verifier: never log them.
        .disable_statement_logging())
}

fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
}

fn reject(reason: impl Into<String>) -> ApplyOutcome {
    ApplyOutcome::Rejected {
        reason: reason.into(),
    }
}

/// Database errors that mean "this change cannot be made" rather than "the call failed".
fn rejection(err: &sqlx::Error) -> Option<ApplyOutcome> {
    let code = error::sqlstate(err)?;
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    matches!(
        code.as_str(),
        error::UNDEFINED_OBJECT | error::UNDEFINED_TABLE | error::DEPENDENT_PRIVILEGES
    )
    .then(|| reject(format!("{} (SQLSTATE {code})", db.message())))
}

/// Runs one utility statement (simple protocol: nothing is prepared or cached). Every name and
/// value in `statement` was quoted with [`quote_ident`] / [`quote_literal`]. Callers never put
/// the text in an error or a log: it may hold a SCRAM verifier.
async fn exec(conn: &mut PgConnection, statement: &str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(conn)
        .await
        .map(|_| ())
}

fn parse_items(action: &Action) -> Result<Vec<Item>, ConnectorError> {
    let texts: Vec<&String> = match action {
        Action::Revoke { what } => vec![what],
        Action::ReduceScope { remove } => remove.iter().collect(),
        _ => Vec::new(),
    };
    if texts.is_empty() {
        return Err(ConnectorError::Permanent(
            "nothing to remove: the item list is empty".into(),
        ));
    }
    texts
        .into_iter()
        .map(|t| Item::parse(t).map_err(|e| ConnectorError::Permanent(e.to_string())))
        .collect()
}

fn attributes_json(attrs: &RoleAttributes) -> Result<serde_json::Value, ConnectorError> {
    serde_json::to_value(attrs)
        .map_err(|e| ConnectorError::Permanent(format!("encoding role attributes: {e}")))
}

fn object_state(role: &str, found: Option<&RoleAttributes>) -> Result<ObjectState, ConnectorError> {
    Ok(ObjectState {
        external_id: role.to_string(),
        exists: found.is_some(),
        attributes: match found {
            Some(attrs) => attributes_json(attrs)?,
            None => serde_json::Value::Null,
        },
    })
}

/// The comment a role created for a request carries: who owns it and why. `verify` and
/// `rollback` recognise the role writ created by it (a role of the same name made by someone
/// else is never taken for it, nor dropped).
fn creation_comment(owner_team: &str, purpose: &str) -> String {
    format!("writ: owner team {owner_team}; purpose: {purpose}")
}

/// The comment on `role` (`shobj_description`), if the role exists and has one.
async fn role_comment(conn: &mut PgConnection, role: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(conn)
    .await
    .map(Option::flatten)
}

fn pre_image_attributes(plan: &Plan) -> Result<RoleAttributes, ConnectorError> {
    serde_json::from_value(plan.pre_image.attributes.clone())
        .map_err(|e| ConnectorError::Permanent(format!("the plan's pre-image is unreadable: {e}")))
}

/// The statement that revokes or re-grants one held entitlement, and the grantor to act as.
fn entitlement_sql(held: &Held, role: &str, grant: bool) -> (String, Option<String>) {
    let role_q = quote_ident(role);
    match held {
        Held::Grant {
            privilege,
            table,
            grantor,
            grantable,
        } => {
            // `privilege` comes from the fixed list in `sql::TABLE_PRIVILEGES` or the catalog.
            let sql = if grant {
                let option = if *grantable { " WITH GRANT OPTION" } else { "" };
                format!(
                    "GRANT {privilege} ON TABLE {} TO {role_q}{option}",
                    table.to_sql()
                )
            } else {
                format!(
                    "REVOKE {privilege} ON TABLE {} FROM {role_q}",
                    table.to_sql()
                )
            };
            (sql, Some(grantor.clone()))
        }
        Held::Member {
            role: group,
            admin_option,
        } => {
            let sql = if grant {
                let option = if *admin_option {
                    " WITH ADMIN OPTION"
                } else {
                    ""
                };
                format!("GRANT {} TO {role_q}{option}", quote_ident(group))
            } else {
                format!("REVOKE {} FROM {role_q}", quote_ident(group))
            };
            (sql, None)
        }
    }
}

/// Runs `statement`, as `grantor` when that is not the current user (table privileges belong
/// to their grantor: a REVOKE only removes the issuing role's own grants).
async fn as_grantor(
    conn: &mut PgConnection,
    current_user: &str,
    grantor: Option<&str>,
    statement: &str,
) -> Result<(), sqlx::Error> {
    match grantor {
        Some(g) if g != current_user => {
            exec(conn, &format!("SET LOCAL ROLE {}", quote_ident(g))).await?;
            exec(conn, statement).await?;
            exec(conn, "RESET ROLE").await
        }
        _ => exec(conn, statement).await,
    }
}

impl PostgresRoles {
    /// Connects to the server (one connection is opened now, to fail fast).
    pub async fn connect(config: PostgresRolesConfig) -> Result<Self, ConnectorError> {
        let pool = pool_options()
            .connect_with(connect_options(&config.url)?)
            .await
            .map_err(|e| error::map("connecting to PostgreSQL", e))?;
        Ok(Self {
            system: config.system,
            pool,
            sink: config.rotation_secret_sink,
        })
    }

    /// Builds the connector without connecting; connections open on first use.
    pub fn connect_lazy(config: PostgresRolesConfig) -> Result<Self, ConnectorError> {
        let pool = pool_options().connect_lazy_with(connect_options(&config.url)?);
        Ok(Self {
            system: config.system,
            pool,
            sink: config.rotation_secret_sink,
        })
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, ConnectorError> {
        self.pool
            .acquire()
            .await
            .map_err(|e| error::map("connecting to PostgreSQL", e))
    }

    async fn read_one(
        conn: &mut PgConnection,
        role: &str,
    ) -> Result<Option<RoleAttributes>, ConnectorError> {
        Ok(state::read_roles(conn, Some(role)).await?.remove(role))
    }

    /// Whether the stored expiry equals `until` (null and `infinity` count as equal).
    async fn expiry_is(
        conn: &mut PgConnection,
        role: &str,
        until: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT coalesce(rolvaliduntil, 'infinity') = coalesce($2::timestamptz, 'infinity') \
             FROM pg_roles WHERE rolname = $1",
        )
        .bind(role)
        .bind(until)
        .fetch_optional(conn)
        .await
        .map(|v| v.unwrap_or(false))
    }

    /// Ends the role's client sessions, waiting for each to go; returns how many were signalled.
    async fn terminate_sessions(conn: &mut PgConnection, role: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT count(*)::int8 FROM (\
               SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity \
               WHERE usename = $1 AND backend_type = 'client backend' \
                 AND pid <> pg_backend_pid()) t",
        )
        .bind(role)
        .bind(TERMINATE_WAIT_MS)
        .fetch_one(conn)
        .await
    }

    /// Starts a transaction holding writ's lock on `role`, so that two applies or rollbacks of
    /// the same role do not interleave.
    async fn locked(
        &self,
        role: &str,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, String), ConnectorError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| error::map("starting a transaction", e))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("writ-connector-postgres:{role}"))
            .execute(&mut *tx)
            .await
            .map_err(|e| error::map("locking the role", e))?;
        let current_user: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| error::map("reading current_user", e))?;
        Ok((tx, current_user))
    }

    /// Refuses changes to the role this connector logs in as: disabling or rotating it would
    /// lock writ out of the server.
    async fn refuse_self(&self, role: &str) -> Result<(), ConnectorError> {
        let mut conn = self.conn().await?;
        let own: bool = sqlx::query_scalar("SELECT $1 IN (current_user::text, session_user::text)")
            .bind(role)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| error::map("reading current_user", e))?;
        if own {
            return Err(ConnectorError::Permanent(format!(
                "refusing to change {role:?}: it is the role this connector logs in as"
            )));
        }
        Ok(())
    }

    /// Reads the role back and says whether the plan's pre-image has been restored (after a
    /// [`Connector::rollback`]). Only the attributes the plan's action touches are compared;
    /// terminated sessions are not "restored".
    pub async fn verify_rollback(&self, plan: &Plan) -> Result<Verification, ConnectorError> {
        let role = plan.external_id.as_str();
        let mut conn = self.conn().await?;
        let found = Self::read_one(&mut conn, role).await?;
        let observed = object_state(role, found.as_ref())?;
        if matches!(plan.action, Action::Create { .. }) {
            // A creation is undone when the role is gone again.
            return Ok(if found.is_none() {
                Verification::Confirmed
            } else {
                Verification::NotInEffect { observed }
            });
        }
        let pre = pre_image_attributes(plan)?;
        let Some(now) = found else {
            return Ok(Verification::NotInEffect { observed });
        };
        let restored = match &plan.action {
            Action::Disable | Action::Enable => now.can_login == pre.can_login,
            Action::SetExpiry { .. } => {
                Self::expiry_is(&mut conn, role, pre.valid_until.as_deref())
                    .await
                    .map_err(|e| error::map("reading the expiry", e))?
            }
            Action::Revoke { .. } | Action::ReduceScope { .. } => {
                parse_items(&plan.action)?.iter().all(|item| {
                    pre.holds(item)
                        .iter()
                        .all(|held| now.holds(item).contains(held))
                })
            }
            Action::Rotate
            | Action::Delete
            | Action::Create { .. }
            | Action::SetScopes { .. }
            | Action::Grant { .. } => false,
        };
        Ok(if restored {
            Verification::Confirmed
        } else {
            Verification::NotInEffect { observed }
        })
    }

    async fn apply_rotate(
        &self,
        tx: &mut PgConnection,
        plan: &Plan,
        idempotency_key: &str,
    ) -> Result<ApplyOutcome, ConnectorError> {
        let role = plan.external_id.as_str();
        let Some(sink) = &self.sink else {
            return Err(ConnectorError::Unsupported("rotate".into()));
        };
        let planned_b64 = pre_image_attributes(plan)?
            .planned_scram_salt
            .ok_or_else(|| ConnectorError::Permanent("rotate plan has no planned salt".into()))?;
        let salt = STANDARD
            .decode(&planned_b64)
            .map_err(|_| ConnectorError::Permanent("rotate plan has an invalid salt".into()))?;
        if !state::can_read_authid(tx).await? {
            return Err(ConnectorError::Permanent(
                "rotation needs read access to pg_authid (superuser) to stay idempotent".into(),
            ));
        }
        // Replays find the verifier this plan set: same planned salt.
        if state::scram_salt(tx, role).await?.as_deref() == Some(planned_b64.as_str()) {
            return Ok(ApplyOutcome::AlreadyInState);
        }
        let password = scram::generate_password()
            .map_err(|e| ConnectorError::Retryable(format!("generating a password: {e}")))?;
        let verifier =
            scram::scram_verifier(password.expose_secret(), &salt, scram::SCRAM_ITERATIONS)
                .map_err(|e| ConnectorError::Permanent(format!("computing the verifier: {e}")))?;
        // Deliver first: if the ALTER then fails, a retry delivers a newer secret and sets it;
        // setting first and failing to deliver would lose the only copy of the password.
        let version = sink
            .deliver(&self.system, role, password.expose_secret())
            .await?;
        drop(password);
        let statement = format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(role),
            quote_literal(verifier.expose_secret())
        );
        if let Err(e) = exec(tx, &statement).await {
            return match rejection(&e) {
                Some(outcome) => Ok(outcome),
                None => Err(error::map("setting the new verifier", e)),
            };
        }
        tracing::info!(
            system = %self.system,
            role,
            idempotency_key,
            secret_version = %version,
            verifier_sha256 = %scram::verifier_digest(verifier.expose_secret()),
            "rotated password"
        );
        Ok(ApplyOutcome::Applied)
    }

    /// The body of `apply` inside the locked transaction; the caller commits only on `Applied`.
    async fn apply_locked(
        &self,
        tx: &mut PgConnection,
        current_user: &str,
        plan: &Plan,
        idempotency_key: &str,
    ) -> Result<ApplyOutcome, ConnectorError> {
        let role = plan.external_id.as_str();
        let role_q = quote_ident(role);
        if let Action::Create {
            owner_team,
            purpose,
        } = &plan.action
        {
            let comment = creation_comment(owner_team, purpose);
            if Self::read_one(tx, role).await?.is_some() {
                let ours = role_comment(tx, role)
                    .await
                    .map_err(|e| error::map("reading the role's comment", e))?;
                return Ok(if ours.as_deref() == Some(comment.as_str()) {
                    ApplyOutcome::AlreadyInState
                } else {
                    reject(format!("role {role:?} already exists"))
                });
            }
            // A service account logs in; no password is set here (no credential is issued
            // to writ): its owners set one through their own secret delivery, or rotate it.
            let created = async {
                exec(tx, &format!("CREATE ROLE {role_q} LOGIN NOINHERIT")).await?;
                exec(
                    tx,
                    &format!("COMMENT ON ROLE {role_q} IS {}", quote_literal(&comment)),
                )
                .await
            }
            .await;
            return match created {
                Ok(()) => Ok(ApplyOutcome::Applied),
                Err(e) => match rejection(&e) {
                    Some(outcome) => Ok(outcome),
                    None => Err(error::map("create", e)),
                },
            };
        }
        let Some(now) = Self::read_one(tx, role).await? else {
            return Ok(reject(format!("role {role:?} does not exist")));
        };
        let result: Result<ApplyOutcome, sqlx::Error> = match &plan.action {
            Action::Disable => {
                if !now.can_login && now.open_sessions == 0 {
                    return Ok(ApplyOutcome::AlreadyInState);
                }
                if now.can_login {
                    exec(tx, &format!("ALTER ROLE {role_q} NOLOGIN"))
                        .await
                        .map(|()| ApplyOutcome::Applied)
                } else {
                    Ok(ApplyOutcome::Applied)
                }
                // Sessions are ended after commit, in `apply`.
            }
            Action::Enable => {
                if now.can_login {
                    return Ok(ApplyOutcome::AlreadyInState);
                }
                exec(tx, &format!("ALTER ROLE {role_q} LOGIN"))
                    .await
                    .map(|()| ApplyOutcome::Applied)
            }
            Action::SetExpiry { until } => {
                match Self::expiry_is(tx, role, Some(until)).await {
                    Ok(true) => return Ok(ApplyOutcome::AlreadyInState),
                    Ok(false) => {}
                    Err(e) => return Err(error::map("reading the expiry", e)),
                }
                exec(
                    tx,
                    &format!("ALTER ROLE {role_q} VALID UNTIL {}", quote_literal(until)),
                )
                .await
                .map(|()| ApplyOutcome::Applied)
            }
            Action::Revoke { .. } | Action::ReduceScope { .. } => {
                let items = parse_items(&plan.action)?;
                let held: Vec<Held> = items.iter().flat_map(|i| now.holds(i)).collect();
                if held.is_empty() {
                    return Ok(ApplyOutcome::AlreadyInState);
                }
                let mut result = Ok(ApplyOutcome::Applied);
                for h in &held {
                    let (statement, grantor) = entitlement_sql(h, role, false);
                    if let Err(e) =
                        as_grantor(tx, current_user, grantor.as_deref(), &statement).await
                    {
                        result = Err(e);
                        break;
                    }
                }
                result
            }
            Action::Rotate => return self.apply_rotate(tx, plan, idempotency_key).await,
            Action::Delete => return Err(ConnectorError::Unsupported("delete".into())),
            Action::Create { .. } | Action::SetScopes { .. } | Action::Grant { .. } => {
                return Err(ConnectorError::Unsupported(plan.action.name().into()));
            }
        };
        match result {
            Ok(outcome) => Ok(outcome),
            Err(e) => match rejection(&e) {
                Some(outcome) => Ok(outcome),
                None => Err(error::map(plan.action.name(), e)),
            },
        }
    }

    async fn rollback_locked(
        tx: &mut PgConnection,
        current_user: &str,
        plan: &Plan,
    ) -> Result<ApplyOutcome, ConnectorError> {
        let role = plan.external_id.as_str();
        if let Action::Create {
            owner_team,
            purpose,
        } = &plan.action
        {
            // Undoing a creation drops the role, only the one this change created.
            if Self::read_one(tx, role).await?.is_none() {
                return Ok(ApplyOutcome::AlreadyInState);
            }
            let ours = role_comment(tx, role)
                .await
                .map_err(|e| error::map("reading the role's comment", e))?;
            if ours.as_deref() != Some(creation_comment(owner_team, purpose).as_str()) {
                return Ok(reject(format!(
                    "role {role:?} is not the one this change created; it is left alone"
                )));
            }
            return match exec(tx, &format!("DROP ROLE {}", quote_ident(role))).await {
                Ok(()) => Ok(ApplyOutcome::Applied),
                Err(e) => match rejection(&e) {
                    Some(outcome) => Ok(outcome),
                    None => Err(error::map("rollback", e)),
                },
            };
        }
        if !plan.pre_image.exists {
            return Ok(reject(format!("role {role:?} did not exist when planned")));
        }
        let pre = pre_image_attributes(plan)?;
        let Some(now) = Self::read_one(tx, role).await? else {
            return Ok(reject(format!("role {role:?} does not exist")));
        };
        let role_q = quote_ident(role);
        let result: Result<ApplyOutcome, sqlx::Error> = match &plan.action {
            Action::Disable | Action::Enable => {
                if now.can_login == pre.can_login {
                    return Ok(ApplyOutcome::AlreadyInState);
                }
                let login = if pre.can_login { "LOGIN" } else { "NOLOGIN" };
                exec(tx, &format!("ALTER ROLE {role_q} {login}"))
                    .await
                    .map(|()| ApplyOutcome::Applied)
            }
            Action::SetExpiry { .. } => {
                let old = pre.valid_until.as_deref();
                match Self::expiry_is(tx, role, old).await {
                    Ok(true) => return Ok(ApplyOutcome::AlreadyInState),
                    Ok(false) => {}
                    Err(e) => return Err(error::map("reading the expiry", e)),
                }
                // ALTER ROLE cannot set the expiry back to null; `infinity` means the same.
                let literal = quote_literal(old.unwrap_or("infinity"));
                exec(tx, &format!("ALTER ROLE {role_q} VALID UNTIL {literal}"))
                    .await
                    .map(|()| ApplyOutcome::Applied)
            }
            Action::Revoke { .. } | Action::ReduceScope { .. } => {
                let items = parse_items(&plan.action)?;
                let missing: Vec<Held> = items
                    .iter()
                    .flat_map(|item| {
                        let current = now.holds(item);
                        pre.holds(item)
                            .into_iter()
                            .filter(move |h| !current.contains(h))
                    })
                    .collect();
                if missing.is_empty() {
                    return Ok(ApplyOutcome::AlreadyInState);
                }
                let mut result = Ok(ApplyOutcome::Applied);
                for h in &missing {
                    let (statement, grantor) = entitlement_sql(h, role, true);
                    if let Err(e) =
                        as_grantor(tx, current_user, grantor.as_deref(), &statement).await
                    {
                        result = Err(e);
                        break;
                    }
                }
                result
            }
            Action::Rotate
            | Action::Delete
            | Action::Create { .. }
            | Action::SetScopes { .. }
            | Action::Grant { .. } => {
                return Ok(reject("this action cannot be rolled back"));
            }
        };
        match result {
            Ok(outcome) => Ok(outcome),
            Err(e) => match rejection(&e) {
                Some(outcome) => Ok(outcome),
                None => Err(error::map("rollback", e)),
            },
        }
    }
}

#[async_trait]
impl Connector for PostgresRoles {
    fn system(&self) -> &str {
        &self.system
    }

    fn capabilities(&self) -> Capabilities {
        let mut actions = vec![
            "disable",
            "enable",
            "revoke",
            "set_expiry",
            "reduce_scope",
            "create",
        ];
        if self.sink.is_some() {
            actions.push("rotate");
        }
        Capabilities {
            actions: actions.into_iter().map(String::from).collect(),
            discovery: true,
        }
    }

    async fn discover(&self) -> Result<Vec<DiscoveredObject>, ConnectorError> {
        let mut conn = self.conn().await?;
        state::read_roles(&mut conn, None)
            .await?
            .into_iter()
            .map(|(name, attrs)| {
                Ok(DiscoveredObject {
                    external_id: name,
                    object_kind: "role".into(),
                    attributes: attributes_json(&attrs)?,
                })
            })
            .collect()
    }

    async fn read(&self, external_id: &str) -> Result<ObjectState, ConnectorError> {
        let mut conn = self.conn().await?;
        let found = Self::read_one(&mut conn, external_id).await?;
        object_state(external_id, found.as_ref())
    }

    async fn plan(&self, external_id: &str, action: &Action) -> Result<Plan, ConnectorError> {
        sql::check_identifier(external_id)
            .map_err(|e| ConnectorError::Permanent(format!("role name: {e}")))?;
        let reversibility = match action {
            Action::Delete => return Err(ConnectorError::Unsupported("delete".into())),
            Action::SetScopes { .. } | Action::Grant { .. } => {
                return Err(ConnectorError::Unsupported(action.name().into()));
            }
            // Undone by dropping the role it made.
            Action::Create { .. } => Reversibility::Reversible,
            Action::Rotate => {
                if self.sink.is_none() {
                    return Err(ConnectorError::Unsupported("rotate".into()));
                }
                Reversibility::Irreversible
            }
            Action::Revoke { .. } | Action::ReduceScope { .. } => {
                parse_items(action)?;
                Reversibility::Reversible
            }
            Action::SetExpiry { until } => {
                let mut conn = self.conn().await?;
                sqlx::query("SELECT $1::timestamptz")
                    .bind(until)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| match error::sqlstate(&e) {
                        Some(code) if code.starts_with("22") => {
                            ConnectorError::Permanent(format!("invalid expiry {until:?}"))
                        }
                        _ => error::map("checking the expiry", e),
                    })?;
                Reversibility::Reversible
            }
            Action::Disable | Action::Enable => Reversibility::Reversible,
        };
        self.refuse_self(external_id).await?;
        let mut pre_image = self.read(external_id).await?;
        if matches!(action, Action::Rotate) {
            let mut conn = self.conn().await?;
            if !state::can_read_authid(&mut conn).await? {
                return Err(ConnectorError::Permanent(
                    "rotation needs read access to pg_authid (superuser) to stay idempotent".into(),
                ));
            }
            if let serde_json::Value::Object(map) = &mut pre_image.attributes {
                let salt = scram::generate_salt()
                    .map_err(|e| ConnectorError::Retryable(format!("generating a salt: {e}")))?;
                map.insert(
                    "planned_scram_salt".into(),
                    serde_json::Value::String(STANDARD.encode(salt)),
                );
            }
        }
        Ok(Plan {
            external_id: external_id.to_string(),
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
        let role = plan.external_id.as_str();
        if let Err(e) = sql::check_identifier(role) {
            return Ok(reject(format!("role name: {e}")));
        }
        let (mut tx, current_user) = self.locked(role).await?;
        if role == current_user {
            return Ok(reject(
                "refusing to change the role this connector logs in as",
            ));
        }
        let outcome = self
            .apply_locked(&mut tx, &current_user, plan, idempotency_key)
            .await?;
        if !matches!(outcome, ApplyOutcome::Applied) {
            tx.rollback()
                .await
                .map_err(|e| error::map("ending the transaction", e))?;
            return Ok(outcome);
        }
        tx.commit().await.map_err(|e| error::map("committing", e))?;
        if matches!(plan.action, Action::Disable) {
            // After commit: new logins are refused from here on, so end the open sessions.
            let mut conn = self.conn().await?;
            let ended = Self::terminate_sessions(&mut conn, role)
                .await
                .map_err(|e| error::map("terminating sessions", e))?;
            tracing::info!(system = %self.system, role, sessions = ended, "terminated sessions");
        }
        tracing::info!(
            system = %self.system,
            role,
            action = plan.action.name(),
            idempotency_key,
            "applied"
        );
        Ok(outcome)
    }

    async fn verify(&self, plan: &Plan) -> Result<Verification, ConnectorError> {
        let role = plan.external_id.as_str();
        let mut conn = self.conn().await?;
        let found = Self::read_one(&mut conn, role).await?;
        let observed = object_state(role, found.as_ref())?;
        let Some(now) = found else {
            return Ok(Verification::NotInEffect { observed });
        };
        let in_effect = match &plan.action {
            Action::Create {
                owner_team,
                purpose,
            } => {
                let comment = role_comment(&mut conn, role)
                    .await
                    .map_err(|e| error::map("reading the role's comment", e))?;
                now.can_login
                    && comment.as_deref() == Some(creation_comment(owner_team, purpose).as_str())
            }
            Action::SetScopes { .. } | Action::Grant { .. } => {
                return Err(ConnectorError::Unsupported(plan.action.name().into()));
            }
            Action::Disable => !now.can_login && now.open_sessions == 0,
            Action::Enable => now.can_login,
            Action::SetExpiry { until } => Self::expiry_is(&mut conn, role, Some(until))
                .await
                .map_err(|e| error::map("reading the expiry", e))?,
            Action::Revoke { .. } | Action::ReduceScope { .. } => parse_items(&plan.action)?
                .iter()
                .all(|item| now.holds(item).is_empty()),
            Action::Rotate => {
                let planned = pre_image_attributes(plan)?.planned_scram_salt;
                planned.is_some() && state::scram_salt(&mut conn, role).await? == planned
            }
            Action::Delete => return Err(ConnectorError::Unsupported("delete".into())),
        };
        Ok(if in_effect {
            Verification::Confirmed
        } else {
            Verification::NotInEffect { observed }
        })
    }

    async fn rollback(&self, plan: &Plan) -> Result<ApplyOutcome, ConnectorError> {
        if plan.reversibility == Reversibility::Irreversible {
            return Ok(reject(format!(
                "{} is irreversible: the old state is not kept",
                plan.action.name()
            )));
        }
        let role = plan.external_id.as_str();
        if let Err(e) = sql::check_identifier(role) {
            return Ok(reject(format!("role name: {e}")));
        }
        let (mut tx, current_user) = self.locked(role).await?;
        let outcome = Self::rollback_locked(&mut tx, &current_user, plan).await?;
        if matches!(outcome, ApplyOutcome::Applied) {
            tx.commit().await.map_err(|e| error::map("committing", e))?;
            tracing::info!(
                system = %self.system,
                role,
                action = plan.action.name(),
                "rolled back"
            );
        } else {
            tx.rollback()
                .await
                .map_err(|e| error::map("ending the transaction", e))?;
        }
        Ok(outcome)
    }
}
