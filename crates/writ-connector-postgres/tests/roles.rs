//! End-to-end tests against a real PostgreSQL 15 started by the test (writ_testkit::PgCluster):
//! plan, apply, verify, re-apply, rollback and read back for every reversible action.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{admin, can_log_in, connector, role_url};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use writ_connector_postgres::PostgresRoles;
use writ_connector_postgres::sql::{quote_ident, quote_literal};
use writ_connectors::{ApplyOutcome, Connector, ConnectorError, Plan, Verification};
use writ_core::change::{Action, Reversibility};
use writ_testkit::PgCluster;

struct Env {
    cluster: PgCluster,
    url: String,
    conn: PostgresRoles,
}

async fn env(setup: &str) -> Env {
    let cluster = PgCluster::start().unwrap();
    let url = cluster.create_database("app").unwrap();
    admin(&url, setup).await;
    let (conn, _) = connector(&url).await;
    Env { cluster, url, conn }
}

/// plan -> apply (Applied) -> verify (Confirmed) -> apply again (AlreadyInState) -> rollback
/// (Applied) -> verify_rollback (Confirmed) -> rollback again (AlreadyInState).
async fn round_trip(conn: &PostgresRoles, role: &str, action: Action) -> Plan {
    let plan = conn.plan(role, &action).await.unwrap();
    assert_eq!(plan.reversibility, Reversibility::Reversible);
    assert!(plan.pre_image.exists);
    assert_eq!(
        conn.apply(&plan, "key-1").await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(conn.verify(&plan).await.unwrap(), Verification::Confirmed);
    assert_eq!(
        conn.apply(&plan, "key-1").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
    assert_eq!(conn.rollback(&plan).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(
        conn.verify_rollback(&plan).await.unwrap(),
        Verification::Confirmed
    );
    assert!(matches!(
        conn.verify(&plan).await.unwrap(),
        Verification::NotInEffect { .. }
    ));
    assert_eq!(
        conn.rollback(&plan).await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
    plan
}

fn attrs(state: &writ_connectors::ObjectState) -> &Value {
    &state.attributes
}

/// The attributes that rollback restores, without session counts.
fn restorable(v: &Value) -> Value {
    let mut v = v.clone();
    let map = v.as_object_mut().unwrap();
    map.remove("open_sessions");
    map.remove("planned_scram_salt");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_lists_roles_without_password_hashes() {
    let e = env(
        "CREATE ROLE svc_billing LOGIN PASSWORD 'hunter2-plaintext' CONNECTION LIMIT 5 \
           VALID UNTIL '2031-02-03 04:05:06+00';
         CREATE ROLE app_readers NOLOGIN;
         GRANT app_readers TO svc_billing;
         CREATE TABLE accounts (id int);
         GRANT SELECT, UPDATE ON accounts TO svc_billing;",
    )
    .await;
    let objects = e.conn.discover().await.unwrap();
    let names: Vec<&str> = objects.iter().map(|o| o.external_id.as_str()).collect();
    assert!(names.contains(&"svc_billing"), "{names:?}");
    assert!(names.contains(&"app_readers"));
    // The bootstrap superuser is listed: it is an identity worth reviewing.
    assert!(names.contains(&"postgres"));
    assert!(!names.iter().any(|n| n.starts_with("pg_")), "{names:?}");
    let svc = objects
        .iter()
        .find(|o| o.external_id == "svc_billing")
        .unwrap();
    assert_eq!(svc.object_kind, "role");
    let a = &svc.attributes;
    assert_eq!(a["can_login"], true);
    assert_eq!(a["superuser"], false);
    assert_eq!(a["createrole"], false);
    assert_eq!(a["connection_limit"], 5);
    assert_eq!(a["valid_until"], "2031-02-03T04:05:06Z");
    assert_eq!(a["member_of"], serde_json::json!(["app_readers"]));
    assert_eq!(a["password_kind"], "scram-sha-256");
    assert_eq!(a["table_grants"][0]["table"], "public.accounts");
    assert_eq!(
        a["table_grants"][0]["privileges"],
        serde_json::json!(["SELECT", "UPDATE"])
    );
    let all = serde_json::to_string(&objects).unwrap();
    assert!(!all.contains("SCRAM-SHA-256$"), "a verifier leaked");
    assert!(!all.contains("hunter2"));

    let read = e.conn.read("svc_billing").await.unwrap();
    assert!(read.exists);
    assert_eq!(read.attributes, svc.attributes);
    let missing = e.conn.read("nobody").await.unwrap();
    assert!(!missing.exists);
    drop(e.cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_terminates_open_sessions_and_rolls_back() {
    let e = env("CREATE ROLE svc LOGIN;").await;
    let port = e.cluster.port();
    // An open session as the role (trust auth: no password needed).
    let mut session = PgConnection::connect(&role_url(port, "app", "svc", None))
        .await
        .unwrap();
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert_eq!(who, "svc");
    assert_eq!(
        attrs(&e.conn.read("svc").await.unwrap())["open_sessions"],
        1
    );

    let plan = e.conn.plan("svc", &Action::Disable).await.unwrap();
    assert_eq!(plan.pre_image.attributes["can_login"], true);
    assert_eq!(
        e.conn.apply(&plan, "k").await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(e.conn.verify(&plan).await.unwrap(), Verification::Confirmed);
    // The session was ended, and new logins are refused.
    assert!(sqlx::query("SELECT 1").execute(&mut session).await.is_err());
    assert!(!can_log_in(&role_url(port, "app", "svc", None)).await);
    assert_eq!(
        e.conn.apply(&plan, "k").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );

    assert_eq!(e.conn.rollback(&plan).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(
        e.conn.verify_rollback(&plan).await.unwrap(),
        Verification::Confirmed
    );
    assert!(can_log_in(&role_url(port, "app", "svc", None)).await);
    assert_eq!(
        restorable(attrs(&e.conn.read("svc").await.unwrap())),
        restorable(&plan.pre_image.attributes)
    );
    assert_eq!(
        e.conn.rollback(&plan).await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_of_a_nologin_role_with_sessions_still_ends_them() {
    // A half-applied disable (NOLOGIN committed, sessions not yet ended) is finished on replay.
    let e = env("CREATE ROLE svc LOGIN;").await;
    let port = e.cluster.port();
    let mut session = PgConnection::connect(&role_url(port, "app", "svc", None))
        .await
        .unwrap();
    admin(&e.url, "ALTER ROLE svc NOLOGIN;").await;
    let plan = e.conn.plan("svc", &Action::Disable).await.unwrap();
    assert!(matches!(
        e.conn.verify(&plan).await.unwrap(),
        Verification::NotInEffect { .. }
    ));
    assert_eq!(
        e.conn.apply(&plan, "k").await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(e.conn.verify(&plan).await.unwrap(), Verification::Confirmed);
    assert!(sqlx::query("SELECT 1").execute(&mut session).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_round_trip() {
    let e = env("CREATE ROLE svc NOLOGIN;").await;
    let plan = round_trip(&e.conn, "svc", Action::Enable).await;
    assert_eq!(plan.pre_image.attributes["can_login"], false);
    assert_eq!(
        attrs(&e.conn.read("svc").await.unwrap())["can_login"],
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_expiry_round_trip_from_none_and_from_a_date() {
    let e = env("CREATE ROLE svc LOGIN;
         CREATE ROLE svc2 LOGIN VALID UNTIL '2040-06-01 12:00:00+00';")
    .await;
    let until = "2030-01-02T03:04:05Z".to_string();
    let plan = round_trip(
        &e.conn,
        "svc",
        Action::SetExpiry {
            until: until.clone(),
        },
    )
    .await;
    assert_eq!(plan.pre_image.attributes["valid_until"], Value::Null);
    // ALTER ROLE cannot write null back; `infinity` means the same (no expiry).
    assert_eq!(
        attrs(&e.conn.read("svc").await.unwrap())["valid_until"],
        "infinity"
    );

    let plan = e
        .conn
        .plan(
            "svc2",
            &Action::SetExpiry {
                until: until.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        e.conn.apply(&plan, "k").await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        attrs(&e.conn.read("svc2").await.unwrap())["valid_until"],
        "2030-01-02T03:04:05Z"
    );
    // The same instant written differently is already in state.
    let same = e
        .conn
        .plan(
            "svc2",
            &Action::SetExpiry {
                until: "2030-01-02 04:04:05+01".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        e.conn.apply(&same, "k2").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
    assert_eq!(e.conn.rollback(&plan).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(
        attrs(&e.conn.read("svc2").await.unwrap())["valid_until"],
        "2040-06-01T12:00:00Z"
    );

    let bad = e
        .conn
        .plan(
            "svc",
            &Action::SetExpiry {
                until: "next tuesday'; DROP ROLE svc; --".into(),
            },
        )
        .await;
    assert!(matches!(bad, Err(ConnectorError::Permanent(_))), "{bad:?}");
    assert!(e.conn.read("svc").await.unwrap().exists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_table_grant_round_trip() {
    let e = env("CREATE ROLE svc LOGIN;
         CREATE TABLE accounts (id int);
         GRANT SELECT, UPDATE ON accounts TO svc;")
    .await;
    let plan = round_trip(
        &e.conn,
        "svc",
        Action::Revoke {
            what: "grant:select:public.accounts".into(),
        },
    )
    .await;
    let after = e.conn.read("svc").await.unwrap();
    assert_eq!(
        restorable(attrs(&after)),
        restorable(&plan.pre_image.attributes)
    );

    // Applied again, only SELECT goes; UPDATE stays.
    let plan = e.conn.plan("svc", &plan.action).await.unwrap();
    assert_eq!(
        e.conn.apply(&plan, "k").await.unwrap(),
        ApplyOutcome::Applied
    );
    let mut admin_conn = PgConnection::connect(&e.url).await.unwrap();
    let (select, update): (bool, bool) = sqlx::query_as(
        "SELECT has_table_privilege('svc', 'public.accounts', 'SELECT'), \
                has_table_privilege('svc', 'public.accounts', 'UPDATE')",
    )
    .fetch_one(&mut admin_conn)
    .await
    .unwrap();
    assert!(!select);
    assert!(update);

    // Revoking something never granted is already in state.
    let none = e
        .conn
        .plan(
            "svc",
            &Action::Revoke {
                what: "grant:DELETE:public.accounts".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        e.conn.apply(&none, "k").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_membership_round_trip_keeps_admin_option() {
    let e = env("CREATE ROLE svc LOGIN;
         CREATE ROLE app_writers NOLOGIN;
         GRANT app_writers TO svc WITH ADMIN OPTION;")
    .await;
    let plan = round_trip(
        &e.conn,
        "svc",
        Action::Revoke {
            what: "member:app_writers".into(),
        },
    )
    .await;
    assert_eq!(
        plan.pre_image.attributes["memberships"][0]["admin_option"],
        true
    );
    let after = e.conn.read("svc").await.unwrap();
    assert_eq!(attrs(&after)["memberships"][0]["admin_option"], true);
    assert_eq!(
        attrs(&after)["member_of"],
        serde_json::json!(["app_writers"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduce_scope_removes_several_items_and_grants_from_other_grantors() {
    let e = env("CREATE ROLE svc LOGIN;
         CREATE ROLE team_lead LOGIN;
         CREATE ROLE app_readers NOLOGIN;
         CREATE ROLE keep_me NOLOGIN;
         GRANT app_readers, keep_me TO svc;
         CREATE SCHEMA ledger;
         CREATE TABLE ledger.entries (id int);
         CREATE TABLE ledger.other (id int);
         GRANT USAGE ON SCHEMA ledger TO team_lead;
         GRANT SELECT ON ledger.entries TO team_lead WITH GRANT OPTION;
         GRANT INSERT ON ledger.entries TO svc WITH GRANT OPTION;
         GRANT SELECT ON ledger.other TO svc;
         SET ROLE team_lead;
         GRANT SELECT ON ledger.entries TO svc;
         RESET ROLE;
         GRANT SELECT ON ledger.entries TO svc;")
    .await;
    let before = e.conn.read("svc").await.unwrap();
    let entries = before.attributes["table_grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["table"] == "ledger.entries")
        .unwrap()
        .clone();
    // SELECT from two grantors, INSERT with grant option.
    assert_eq!(entries["details"].as_array().unwrap().len(), 3, "{entries}");

    let plan = round_trip(
        &e.conn,
        "svc",
        Action::ReduceScope {
            remove: vec![
                "grant:SELECT:ledger.entries".into(),
                "grant:INSERT:ledger.entries".into(),
                "member:app_readers".into(),
            ],
        },
    )
    .await;
    assert_eq!(
        restorable(attrs(&e.conn.read("svc").await.unwrap())),
        restorable(&plan.pre_image.attributes)
    );

    // Applied once more and left applied: exactly the named items are gone.
    let plan = e.conn.plan("svc", &plan.action).await.unwrap();
    assert_eq!(
        e.conn.apply(&plan, "k").await.unwrap(),
        ApplyOutcome::Applied
    );
    let a = e.conn.read("svc").await.unwrap().attributes;
    assert_eq!(a["member_of"], serde_json::json!(["keep_me"]));
    assert_eq!(a["table_grants"].as_array().unwrap().len(), 1);
    assert_eq!(a["table_grants"][0]["table"], "ledger.other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_role_and_table_names_are_quoted() {
    let evil = "evil\"; DROP ROLE victim; --";
    let evil2 = "Robert'); DROP TABLE t;--\\";
    let schema = "s\".x; DROP ROLE victim";
    let table = "t\"'.; DROP TABLE t";
    let setup = format!(
        "CREATE ROLE victim LOGIN;
         CREATE TABLE t (id int);
         CREATE ROLE {e} LOGIN;
         CREATE ROLE {e2} NOLOGIN;
         GRANT {e2} TO {e};
         CREATE SCHEMA {s};
         CREATE TABLE {s}.{t} (id int);
         GRANT SELECT ON {s}.{t} TO {e};
         COMMENT ON ROLE victim IS {c};",
        e = quote_ident(evil),
        e2 = quote_ident(evil2),
        s = quote_ident(schema),
        t = quote_ident(table),
        c = quote_literal("it's fine\\"),
    );
    let e = env(&setup).await;
    let read = e.conn.read(evil).await.unwrap();
    assert!(read.exists);
    let grant_item = format!(
        "grant:SELECT:{}",
        read.attributes["table_grants"][0]["table"]
            .as_str()
            .unwrap()
    );
    assert_eq!(
        grant_item,
        format!("grant:SELECT:{}.{table}", quote_ident(schema))
    );

    round_trip(&e.conn, evil, Action::Disable).await;
    round_trip(
        &e.conn,
        evil,
        Action::SetExpiry {
            until: "2029-12-31T23:59:59Z".into(),
        },
    )
    .await;
    round_trip(
        &e.conn,
        evil,
        Action::ReduceScope {
            remove: vec![grant_item, format!("member:{evil2}")],
        },
    )
    .await;
    round_trip(&e.conn, evil2, Action::Enable).await;

    // Nothing was injected.
    assert!(e.conn.read("victim").await.unwrap().exists);
    let mut admin_conn = PgConnection::connect(&e.url).await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname = 't'")
        .fetch_one(&mut admin_conn)
        .await
        .unwrap();
    assert_eq!(tables, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_missing_roles_and_unsupported_actions() {
    let e = env("CREATE ROLE svc LOGIN;").await;
    let caps = e.conn.capabilities();
    assert!(caps.discovery);
    for action in [
        "disable",
        "enable",
        "revoke",
        "rotate",
        "set_expiry",
        "reduce_scope",
    ] {
        assert!(caps.actions.iter().any(|a| a == action), "{action}");
    }
    assert!(!caps.actions.iter().any(|a| a == "delete"));
    assert_eq!(e.conn.system(), "postgres:test");

    // Delete is not supported.
    assert!(matches!(
        e.conn.plan("svc", &Action::Delete).await,
        Err(ConnectorError::Unsupported(_))
    ));
    // The connector's own role is off limits.
    assert!(matches!(
        e.conn.plan("postgres", &Action::Disable).await,
        Err(ConnectorError::Permanent(_))
    ));
    // Names PostgreSQL would truncate onto another role are refused.
    let long = "x".repeat(64);
    assert!(matches!(
        e.conn.plan(&long, &Action::Disable).await,
        Err(ConnectorError::Permanent(_))
    ));
    // Bad items are refused at plan time.
    for what in ["grant:ALL:public.t", "owner:svc", "grant:SELECT:no_schema"] {
        assert!(matches!(
            e.conn
                .plan("svc", &Action::Revoke { what: what.into() })
                .await,
            Err(ConnectorError::Permanent(_))
        ));
    }

    // A role that vanishes between plan and apply is rejected, not an error.
    admin(&e.url, "CREATE ROLE gone LOGIN;").await;
    let plan = e.conn.plan("gone", &Action::Disable).await.unwrap();
    admin(&e.url, "DROP ROLE gone;").await;
    assert!(matches!(
        e.conn.apply(&plan, "k").await.unwrap(),
        ApplyOutcome::Rejected { .. }
    ));
    assert!(matches!(
        e.conn.verify(&plan).await.unwrap(),
        Verification::NotInEffect { observed } if !observed.exists
    ));
    assert!(matches!(
        e.conn.rollback(&plan).await.unwrap(),
        ApplyOutcome::Rejected { .. }
    ));
    // A plan for a role that never existed says so.
    let plan = e.conn.plan("never", &Action::Enable).await.unwrap();
    assert!(!plan.pre_image.exists);
    assert!(matches!(
        e.conn.apply(&plan, "k").await.unwrap(),
        ApplyOutcome::Rejected { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_errors_are_permanent_and_connection_errors_retryable() {
    let e = env("CREATE ROLE limited LOGIN CREATEROLE;
         CREATE ROLE boss LOGIN SUPERUSER;")
    .await;
    let port = e.cluster.port();
    // A non-superuser admin may not alter a superuser.
    let (limited, _) = connector(&role_url(port, "app", "limited", None)).await;
    let plan = limited.plan("boss", &Action::Disable).await.unwrap();
    let err = limited.apply(&plan, "k").await.unwrap_err();
    assert!(matches!(err, ConnectorError::Permanent(_)), "{err:?}");
    // Without pg_authid access, rotation is refused up front.
    assert!(matches!(
        limited.plan("boss", &Action::Rotate).await,
        Err(ConnectorError::Permanent(_))
    ));

    // A server that is gone: retryable.
    let url = e.url.clone();
    let (conn, _) = connector(&url).await;
    drop(e);
    let err = conn.read("svc").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_is_not_offered_without_a_sink() {
    let cluster = PgCluster::start().unwrap();
    let url = cluster.create_database("app").unwrap();
    let conn = PostgresRoles::connect(writ_connector_postgres::PostgresRolesConfig {
        system: "postgres:x".into(),
        url: url.clone(),
        rotation_secret_sink: None,
    })
    .await
    .unwrap();
    assert!(!conn.capabilities().actions.iter().any(|a| a == "rotate"));
    assert!(matches!(
        conn.plan("postgres", &Action::Rotate).await,
        Err(ConnectorError::Unsupported(_))
    ));
    assert!(!format!("{conn:?}").contains(&url));
}
