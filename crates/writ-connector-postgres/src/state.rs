//! Reading roles from the catalogs: attributes, memberships, direct table grants, open sessions.
//!
//! Password hashes are never read here: only the *kind* of stored password (`scram-sha-256`,
//! `md5`, `none`), and only when the connection may read `pg_authid`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use writ_connectors::ConnectorError;

use crate::error;
use crate::sql::{Item, QualifiedName};

/// One membership of a role in another role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The group role.
    pub role: String,
    /// Whether the member may grant the group to others.
    pub admin_option: bool,
    /// Who granted it.
    pub grantor: Option<String>,
}

/// One privilege on one table, as one grantor gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantDetail {
    /// `SELECT`, `UPDATE`, ...
    pub privilege: String,
    /// The role that granted it.
    pub grantor: String,
    /// Whether it was granted `WITH GRANT OPTION`.
    pub grantable: bool,
}

/// The privileges granted directly to a role on one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableGrant {
    /// The table, in item form (`schema.table`, see [`QualifiedName`]).
    pub table: String,
    /// The distinct privileges, sorted.
    pub privileges: Vec<String>,
    /// Each privilege with its grantor and grant option.
    pub details: Vec<GrantDetail>,
}

/// A role's attributes, as `read`, `discover` and pre-images report them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RoleAttributes {
    /// `rolcanlogin`.
    pub can_login: bool,
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolcreaterole`.
    pub createrole: bool,
    /// `rolcreatedb`.
    pub createdb: bool,
    /// `rolreplication`.
    pub replication: bool,
    /// `rolbypassrls`.
    pub bypassrls: bool,
    /// `rolinherit`.
    pub inherit: bool,
    /// `rolconnlimit` (-1: no limit).
    pub connection_limit: i32,
    /// `rolvaliduntil` in RFC 3339 UTC, `infinity`, or null for none.
    pub valid_until: Option<String>,
    /// Names of the roles this role is a member of.
    pub member_of: Vec<String>,
    /// The same memberships with admin option and grantor.
    pub memberships: Vec<Membership>,
    /// Direct table grants (not via PUBLIC or memberships; not the owner's implicit ones).
    pub table_grants: Vec<TableGrant>,
    /// Client sessions currently open as this role (the connector's own excluded).
    pub open_sessions: i64,
    /// `scram-sha-256`, `md5`, `none` or `other`; null when `pg_authid` is not readable.
    pub password_kind: Option<String>,
    /// For a rotate plan only: the salt (base64) the new verifier will use. Not a secret:
    /// the server sends a verifier's salt to any client starting a SCRAM exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_scram_salt: Option<String>,
}

impl RoleAttributes {
    /// The grants and memberships `item` names that the role currently holds.
    pub fn holds(&self, item: &Item) -> Vec<Held> {
        match item {
            Item::Grant { privilege, table } => self
                .table_grants
                .iter()
                .filter(|g| QualifiedName::parse(&g.table).as_ref() == Some(table))
                .flat_map(|g| g.details.iter())
                .filter(|d| &d.privilege == privilege)
                .map(|d| Held::Grant {
                    privilege: privilege.clone(),
                    table: table.clone(),
                    grantor: d.grantor.clone(),
                    grantable: d.grantable,
                })
                .collect(),
            Item::Member { role } => self
                .memberships
                .iter()
                .filter(|m| &m.role == role)
                .map(|m| Held::Member {
                    role: role.clone(),
                    admin_option: m.admin_option,
                })
                .collect(),
        }
    }
}

/// One concrete grant or membership held by a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// A table privilege from one grantor.
    Grant {
        /// The privilege.
        privilege: String,
        /// The table.
        table: QualifiedName,
        /// Who granted it.
        grantor: String,
        /// With grant option.
        grantable: bool,
    },
    /// A membership.
    Member {
        /// The group role.
        role: String,
        /// With admin option.
        admin_option: bool,
    },
}

/// Formats `rolvaliduntil`-like timestamps in RFC 3339 UTC, leaving null and infinities alone.
pub fn valid_until_expr(column: &str) -> String {
    format!(
        "CASE WHEN {c} IS NULL THEN NULL \
              WHEN NOT isfinite({c}) THEN {c}::text \
              WHEN date_trunc('second', {c}) = {c} \
                THEN to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
              ELSE to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END",
        c = column
    )
}

const MEMBERSHIPS: &str = "\
SELECT m.rolname::text AS member, g.rolname::text AS role, am.admin_option, gr.rolname::text AS grantor
FROM pg_auth_members am
JOIN pg_roles m ON m.oid = am.member
JOIN pg_roles g ON g.oid = am.roleid
LEFT JOIN pg_roles gr ON gr.oid = am.grantor
WHERE $1::text IS NULL OR m.rolname = $1
ORDER BY 1, 2";

const GRANTS: &str = "\
SELECT r.rolname::text AS grantee, n.nspname::text AS schema, c.relname::text AS name,
       a.privilege_type::text AS privilege, a.is_grantable, g.rolname::text AS grantor
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL aclexplode(c.relacl) a
JOIN pg_roles r ON r.oid = a.grantee
JOIN pg_roles g ON g.oid = a.grantor
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.grantee <> c.relowner
  AND ($1::text IS NULL OR r.rolname = $1)
ORDER BY 1, 2, 3, 4, 6";

const SESSIONS: &str = "\
SELECT usename::text AS name, count(*)::int8 AS sessions
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND usename IS NOT NULL
  AND ($1::text IS NULL OR usename = $1)
GROUP BY 1";

const PASSWORD_KINDS: &str = "\
SELECT rolname::text AS name,
       CASE WHEN rolpassword IS NULL THEN 'none'
            WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram-sha-256'
            WHEN rolpassword LIKE 'md5%' THEN 'md5'
            ELSE 'other' END AS kind
FROM pg_authid
WHERE $1::text IS NULL OR rolname = $1";

fn get<'r, T>(row: &'r sqlx::postgres::PgRow, column: &str) -> Result<T, ConnectorError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column)
        .map_err(|e| error::map("decoding the role catalog", e))
}

/// Whether this connection may read `pg_authid` (superuser, or granted explicitly).
pub async fn can_read_authid(conn: &mut PgConnection) -> Result<bool, ConnectorError> {
    sqlx::query_scalar("SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')")
        .fetch_one(conn)
        .await
        .map_err(|e| error::map("checking access to pg_authid", e))
}

/// Reads one role (`Some(name)`, whatever its name) or every role except the `pg_*` system
/// roles (`None`).
pub async fn read_roles(
    conn: &mut PgConnection,
    role: Option<&str>,
) -> Result<BTreeMap<String, RoleAttributes>, ConnectorError> {
    let roles_sql = format!(
        "SELECT r.rolname::text AS name, r.rolcanlogin, r.rolsuper, r.rolcreaterole, \
                r.rolcreatedb, r.rolreplication, r.rolbypassrls, r.rolinherit, r.rolconnlimit, \
                {} AS valid_until \
         FROM pg_roles r \
         WHERE ($1::text IS NULL AND r.rolname !~ '^pg_') OR r.rolname = $1 \
         ORDER BY 1",
        valid_until_expr("r.rolvaliduntil")
    );
    let mut out = BTreeMap::new();
    for row in sqlx::query(sqlx::AssertSqlSafe(roles_sql))
        .bind(role)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| error::map("reading pg_roles", e))?
    {
        let name: String = get(&row, "name")?;
        out.insert(
            name,
            RoleAttributes {
                can_login: get(&row, "rolcanlogin")?,
                superuser: get(&row, "rolsuper")?,
                createrole: get(&row, "rolcreaterole")?,
                createdb: get(&row, "rolcreatedb")?,
                replication: get(&row, "rolreplication")?,
                bypassrls: get(&row, "rolbypassrls")?,
                inherit: get(&row, "rolinherit")?,
                connection_limit: get(&row, "rolconnlimit")?,
                valid_until: get(&row, "valid_until")?,
                ..RoleAttributes::default()
            },
        );
    }
    if out.is_empty() {
        return Ok(out);
    }

    for row in sqlx::query(MEMBERSHIPS)
        .bind(role)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| error::map("reading pg_auth_members", e))?
    {
        let member: String = get(&row, "member")?;
        if let Some(attrs) = out.get_mut(&member) {
            let group: String = get(&row, "role")?;
            attrs.member_of.push(group.clone());
            attrs.memberships.push(Membership {
                role: group,
                admin_option: get(&row, "admin_option")?,
                grantor: get(&row, "grantor")?,
            });
        }
    }

    for row in sqlx::query(GRANTS)
        .bind(role)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| error::map("reading table privileges", e))?
    {
        let grantee: String = get(&row, "grantee")?;
        let Some(attrs) = out.get_mut(&grantee) else {
            continue;
        };
        let table = QualifiedName {
            schema: get(&row, "schema")?,
            name: get(&row, "name")?,
        }
        .to_string();
        let detail = GrantDetail {
            privilege: get(&row, "privilege")?,
            grantor: get(&row, "grantor")?,
            grantable: get(&row, "is_grantable")?,
        };
        match attrs.table_grants.iter_mut().find(|g| g.table == table) {
            Some(grant) => {
                if !grant.privileges.contains(&detail.privilege) {
                    grant.privileges.push(detail.privilege.clone());
                }
                grant.details.push(detail);
            }
            None => attrs.table_grants.push(TableGrant {
                table,
                privileges: vec![detail.privilege.clone()],
                details: vec![detail],
            }),
        }
    }

    for row in sqlx::query(SESSIONS)
        .bind(role)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| error::map("reading pg_stat_activity", e))?
    {
        let name: String = get(&row, "name")?;
        if let Some(attrs) = out.get_mut(&name) {
            attrs.open_sessions = get(&row, "sessions")?;
        }
    }

    if can_read_authid(conn).await? {
        for row in sqlx::query(PASSWORD_KINDS)
            .bind(role)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| error::map("reading password kinds", e))?
        {
            let name: String = get(&row, "name")?;
            if let Some(attrs) = out.get_mut(&name) {
                attrs.password_kind = Some(get(&row, "kind")?);
            }
        }
    }
    Ok(out)
}

/// The salt of the role's stored SCRAM verifier, if it has one. The verifier itself is read
/// into memory only to extract the salt and is dropped here.
pub async fn scram_salt(
    conn: &mut PgConnection,
    role: &str,
) -> Result<Option<String>, ConnectorError> {
    let verifier: Option<Option<String>> =
        sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
            .bind(role)
            .fetch_optional(conn)
            .await
            .map_err(|e| error::map("reading the stored verifier", e))?;
    Ok(verifier
        .flatten()
        .and_then(|v| crate::scram::verifier_salt(&v).map(|(salt, _)| salt.to_string())))
}
