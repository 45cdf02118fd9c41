//! End-to-end tests of `AwsSecretsManager` against a real moto server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ACCOUNT, MotoServer, REGION, Seed};
use serde_json::{Value, json};
use writ_connector_aws::{AwsSecretsManager, rotation_token};
use writ_connectors::{ApplyOutcome, Connector, ConnectorError, Verification};
use writ_core::change::{Action, Reversibility};

const OLD: &str = "old-Secret-Value-4711";

async fn connect(server: &MotoServer) -> AwsSecretsManager {
    AwsSecretsManager::connect(server.config()).await.unwrap()
}

fn versions(state: &writ_connectors::ObjectState) -> usize {
    state.attributes["versions"].as_object().unwrap().len()
}

#[tokio::test]
async fn rotate_then_roll_back_never_exposes_values() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    let v0 = seed.create_secret("db/password", OLD).await;
    let sm = connect(&moto).await;
    assert_eq!(sm.system(), format!("aws-secrets:{ACCOUNT}/{REGION}"));

    let plan = sm.plan("db/password", &Action::Rotate).await.unwrap();
    assert_eq!(plan.reversibility, Reversibility::Reversible);
    assert_eq!(plan.pre_image.attributes["current_version_id"], json!(v0));
    assert_eq!(
        plan.pre_image.attributes["previous_version_id"],
        Value::Null
    );

    let first = sm.apply(&plan, "change-7").await.unwrap();
    assert_eq!(first, ApplyOutcome::Applied);
    let (new_version, new_value) = seed.current_value("db/password").await.unwrap();
    assert_eq!(new_version, rotation_token("db/password", "change-7"));
    assert_ne!(new_value, OLD);
    assert_eq!(new_value.len(), 40);
    assert_eq!(sm.verify(&plan).await.unwrap(), Verification::Confirmed);
    let after = sm.read("db/password").await.unwrap();
    assert_eq!(after.attributes["previous_version_id"], json!(v0));

    // Same idempotency key: no second version.
    let second = sm.apply(&plan, "change-7").await.unwrap();
    assert_eq!(second, ApplyOutcome::AlreadyInState);
    assert_eq!(versions(&sm.read("db/password").await.unwrap()), 2);
    assert_eq!(
        seed.current_value("db/password").await.unwrap().1,
        new_value
    );

    let rolled = sm.rollback(&plan).await.unwrap();
    assert_eq!(rolled, ApplyOutcome::Applied);
    assert_eq!(
        seed.current_value("db/password").await.unwrap(),
        (v0.clone(), OLD.to_owned())
    );
    let back = sm.read("db/password").await.unwrap();
    assert_eq!(back.attributes["current_version_id"], json!(v0));
    assert_eq!(back.attributes["previous_version_id"], Value::Null);
    assert_eq!(back.attributes["versions"][&v0], json!(["AWSCURRENT"]));
    assert_eq!(
        sm.rollback(&plan).await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
    assert!(matches!(
        sm.verify(&plan).await.unwrap(),
        Verification::NotInEffect { .. }
    ));

    // After a rollback the key's version is no longer current: refuse rather than re-rotate.
    assert!(matches!(
        sm.apply(&plan, "change-7").await.unwrap(),
        ApplyOutcome::Rejected { .. }
    ));

    // Neither value appears in anything the connector hands back.
    let handed_back = serde_json::to_string(&json!({
        "plan": plan,
        "outcomes": [first, second, rolled],
        "read": back,
        "discover": sm.discover().await.unwrap(),
    }))
    .unwrap();
    let debug = format!("{sm:?} {plan:?}");
    for secret in [OLD, new_value.as_str()] {
        assert!(!handed_back.contains(secret));
        assert!(!debug.contains(secret));
    }
}

#[tokio::test]
async fn rotate_keeps_the_shape_of_a_json_secret() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    let old = json!({ "username": "app", "password": OLD, "host": "db" }).to_string();
    seed.create_secret("rds/app", &old).await;
    let sm = connect(&moto).await;

    let plan = sm.plan("rds/app", &Action::Rotate).await.unwrap();
    assert_eq!(sm.apply(&plan, "k").await.unwrap(), ApplyOutcome::Applied);
    let (_, value) = seed.current_value("rds/app").await.unwrap();
    let value: Value = serde_json::from_str(&value).unwrap();
    assert_eq!(value["username"], json!("app"));
    assert_eq!(value["host"], json!("db"));
    assert_ne!(value["password"], json!(OLD));
    assert_eq!(value["password"].as_str().unwrap().len(), 40);
}

#[tokio::test]
async fn delete_with_recovery_window_then_restore() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    seed.create_secret("api/token", OLD).await;
    let sm = connect(&moto).await.with_recovery_window_days(10).unwrap();
    assert!(connect(&moto).await.with_recovery_window_days(3).is_err());

    let plan = sm.plan("api/token", &Action::Delete).await.unwrap();
    assert_eq!(
        plan.reversibility,
        Reversibility::ReversibleWithin {
            seconds: 10 * 86_400
        }
    );
    assert_eq!(plan.pre_image.attributes["deleted_date"], Value::Null);
    assert_eq!(sm.apply(&plan, "d").await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(sm.verify(&plan).await.unwrap(), Verification::Confirmed);
    assert!(seed.current_value("api/token").await.is_err());
    assert_eq!(
        sm.apply(&plan, "d").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );

    assert_eq!(sm.rollback(&plan).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(seed.current_value("api/token").await.unwrap().1, OLD);
    let back = sm.read("api/token").await.unwrap();
    assert_eq!(back.attributes["deleted_date"], Value::Null);
    assert_eq!(
        back.attributes["versions"],
        plan.pre_image.attributes["versions"]
    );
    assert_eq!(
        sm.rollback(&plan).await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
}

#[tokio::test]
async fn unknown_secret_is_rejected_and_other_actions_unsupported() {
    let moto = MotoServer::start().await;
    let sm = connect(&moto).await;
    for action in [Action::Rotate, Action::Delete] {
        let plan = sm.plan("nope", &action).await.unwrap();
        assert!(!plan.pre_image.exists);
        match sm.apply(&plan, "x").await.unwrap() {
            ApplyOutcome::Rejected { reason } => {
                assert!(reason.contains("ResourceNotFound"), "{reason}")
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
    for action in [
        Action::Disable,
        Action::Enable,
        Action::SetExpiry { until: "x".into() },
    ] {
        assert!(matches!(
            sm.plan("nope", &action).await,
            Err(ConnectorError::Unsupported(_))
        ));
    }
}

#[tokio::test]
async fn discover_lists_secrets_without_values() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    let v = seed.create_secret("a", OLD).await;
    seed.create_secret("b", "another-value-99").await;
    let sm = connect(&moto).await;
    let found = sm.discover().await.unwrap();
    let names: Vec<&str> = found.iter().map(|o| o.external_id.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(found.iter().all(|o| o.object_kind == "secret"));
    assert_eq!(found[0].attributes["current_version_id"], json!(v));
    let text = serde_json::to_string(&found).unwrap();
    assert!(!text.contains(OLD) && !text.contains("another-value-99"));
}

#[tokio::test]
async fn moto_stopped_mid_rotation_is_retryable() {
    let mut moto = MotoServer::start().await;
    let client = moto.client();
    Seed(&client).create_secret("db/password", OLD).await;
    let sm = connect(&moto).await;
    let plan = sm.plan("db/password", &Action::Rotate).await.unwrap();
    moto.stop();
    let err = sm.apply(&plan, "k").await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(!err.to_string().contains(OLD));
    assert!(sm.rollback(&plan).await.unwrap_err().is_retryable());
    assert!(sm.verify(&plan).await.unwrap_err().is_retryable());
}
