//! Rotation and SCRAM verifiers against a real PostgreSQL that authenticates with
//! SCRAM-SHA-256 over TCP (a cluster started by the test), plus quoting checked by the server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{admin, can_log_in, connector, role_url};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sqlx::{Column, Connection, PgConnection, Row};
use writ_connector_postgres::scram::{ExposeSecret as _, generate_salt, scram_verifier};
use writ_connector_postgres::sql::{MAX_IDENTIFIER_BYTES, quote_ident, quote_literal};
use writ_connectors::{ApplyOutcome, Connector, Verification};
use writ_core::change::{Action, Reversibility};
use writ_testkit::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_accepts_our_verifier_for_the_plaintext() {
    let cluster = PgCluster::start_scram().unwrap();
    let verifier = scram_verifier("correct horse", &generate_salt().unwrap(), 4096).unwrap();
    admin(
        &cluster.url("postgres"),
        &format!(
            "CREATE ROLE app LOGIN PASSWORD {};",
            quote_literal(verifier.expose_secret())
        ),
    )
    .await;
    // Stored as sent (not re-hashed): PostgreSQL recognised the verifier.
    let mut conn = PgConnection::connect(&cluster.url("postgres"))
        .await
        .unwrap();
    let stored: String =
        sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(stored, verifier.expose_secret());
    let port = cluster.port();
    assert!(can_log_in(&role_url(port, "postgres", "app", Some("correct horse"))).await);
    assert!(!can_log_in(&role_url(port, "postgres", "app", Some("wrong horse"))).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_sets_a_new_password_only_the_sink_knows() {
    let cluster = PgCluster::start_scram().unwrap();
    let port = cluster.port();
    admin(
        &cluster.url("postgres"),
        "CREATE ROLE \"svc'rot\" LOGIN PASSWORD 'old-password';",
    )
    .await;
    let role = "svc'rot";
    assert!(can_log_in(&role_url(port, "postgres", role, Some("old-password"))).await);

    let (conn, sink) = connector(&cluster.url("postgres")).await;
    let plan = conn.plan(role, &Action::Rotate).await.unwrap();
    assert_eq!(plan.reversibility, Reversibility::Irreversible);
    assert!(plan.pre_image.attributes["planned_scram_salt"].is_string());
    assert!(matches!(
        conn.verify(&plan).await.unwrap(),
        Verification::NotInEffect { .. }
    ));

    assert_eq!(
        conn.apply(&plan, "rot-1").await.unwrap(),
        ApplyOutcome::Applied
    );
    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 1);
    let (system, to, secret) = &delivered[0];
    assert_eq!(system, "postgres:test");
    assert_eq!(to, role);
    assert_eq!(conn.verify(&plan).await.unwrap(), Verification::Confirmed);

    // The new password works over SCRAM; the old one no longer does.
    assert!(can_log_in(&role_url(port, "postgres", role, Some(secret))).await);
    assert!(!can_log_in(&role_url(port, "postgres", role, Some("old-password"))).await);

    // A replay does not rotate twice.
    assert_eq!(
        conn.apply(&plan, "rot-1").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
    assert_eq!(sink.delivered().len(), 1);
    assert!(can_log_in(&role_url(port, "postgres", role, Some(secret))).await);

    // Irreversible: rollback refuses.
    assert!(matches!(
        conn.rollback(&plan).await.unwrap(),
        ApplyOutcome::Rejected { .. }
    ));

    // The secret appears nowhere writ can see.
    let visible = format!(
        "{}{:?}{}{:?}",
        serde_json::to_string(&plan).unwrap(),
        conn,
        serde_json::to_string(&conn.read(role).await.unwrap()).unwrap(),
        conn.discover().await.unwrap()
    );
    assert!(!visible.contains(secret.as_str()));
    assert!(!visible.contains("SCRAM-SHA-256$"));

    // A second plan rotates again, to a different password.
    let plan2 = conn.plan(role, &Action::Rotate).await.unwrap();
    assert_eq!(
        conn.apply(&plan2, "rot-2").await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(conn.verify(&plan2).await.unwrap(), Verification::Confirmed);
    assert!(matches!(
        conn.verify(&plan).await.unwrap(),
        Verification::NotInEffect { .. }
    ));
    let newest = sink.delivered()[1].2.clone();
    assert_ne!(&newest, secret);
    assert!(can_log_in(&role_url(port, "postgres", role, Some(&newest))).await);
    assert!(!can_log_in(&role_url(port, "postgres", role, Some(secret))).await);
}

#[test]
fn quoting_round_trips_through_the_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = writ_testkit::PgCluster::start().unwrap();
    let url = cluster.create_database("q").unwrap();
    let conn = std::cell::RefCell::new(rt.block_on(PgConnection::connect(&url)).unwrap());
    let mut runner = TestRunner::new(Config::with_cases(200));
    let names = "[^\u{0}]{1,30}".prop_filter("fits an identifier", |s: &String| {
        s.len() <= MAX_IDENTIFIER_BYTES
    });
    runner
        .run(&names, |name| {
            let mut conn = conn.borrow_mut();
            rt.block_on(async {
                // Identifier: the column the server names is exactly the input.
                let sql = format!("SELECT 1 AS {}", quote_ident(&name));
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                prop_assert_eq!(row.columns()[0].name(), name.as_str());
                // Literal: the value the server reads is exactly the input, in both
                // standard_conforming_strings modes.
                for scs in ["on", "off"] {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "SET standard_conforming_strings = {scs}"
                    )))
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                    let sql = format!("SELECT {}::text", quote_literal(&name));
                    let back: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                        .fetch_one(&mut *conn)
                        .await
                        .unwrap();
                    prop_assert_eq!(&back, &name);
                }
                Ok(())
            })
        })
        .unwrap();
}
