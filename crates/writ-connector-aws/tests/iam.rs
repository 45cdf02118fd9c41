//! End-to-end tests of `AwsIam` against a real moto server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ACCOUNT, MotoServer, Seed, use_key};
use serde_json::json;
use writ_connector_aws::AwsIam;
use writ_connectors::{ApplyOutcome, Connector, ConnectorError, Verification};
use writ_core::change::{Action, Reversibility};

const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
const STAR: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}"#;

async fn connect(server: &MotoServer) -> AwsIam {
    AwsIam::connect(server.config()).await.unwrap()
}

#[tokio::test]
async fn system_names_the_account_from_sts() {
    let moto = MotoServer::start().await;
    let iam = connect(&moto).await;
    assert_eq!(iam.system(), format!("aws:{ACCOUNT}"));
    assert!(iam.capabilities().discovery);
    let debug = format!("{iam:?}");
    assert!(!debug.contains("testing\""), "{debug}");
}

#[tokio::test]
async fn disable_by_slot_then_roll_back() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    seed.user("svc").await;
    let (key1, _) = seed.access_key("svc").await;
    let (key2, _) = seed.access_key("svc").await;
    let iam = connect(&moto).await;

    // Slot resolution: AccessKey2 is the second key by CreateDate.
    let plan = iam.plan("svc/AccessKey2", &Action::Disable).await.unwrap();
    assert_eq!(plan.reversibility, Reversibility::Reversible);
    assert!(plan.pre_image.exists);
    assert_eq!(plan.pre_image.external_id, format!("svc/{key2}"));
    assert_eq!(plan.pre_image.attributes["access_key_id"], json!(key2));
    assert_eq!(plan.pre_image.attributes["slot"], json!("AccessKey2"));
    assert_eq!(plan.pre_image.attributes["status"], json!("Active"));
    assert_eq!(
        iam.read("svc/AccessKey1").await.unwrap().attributes["access_key_id"],
        json!(key1)
    );

    assert_eq!(iam.apply(&plan, "c1").await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(iam.verify(&plan).await.unwrap(), Verification::Confirmed);
    assert_eq!(
        seed.key_status("svc", &key2).await.as_deref(),
        Some("Inactive")
    );
    assert_eq!(
        seed.key_status("svc", &key1).await.as_deref(),
        Some("Active")
    );
    assert_eq!(
        iam.apply(&plan, "c1").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );

    assert_eq!(iam.rollback(&plan).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(
        seed.key_status("svc", &key2).await.as_deref(),
        Some("Active")
    );
    assert_eq!(iam.read("svc/AccessKey2").await.unwrap(), plan.pre_image);
    assert_eq!(
        iam.rollback(&plan).await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
    assert!(matches!(
        iam.verify(&plan).await.unwrap(),
        Verification::NotInEffect { .. }
    ));
}

#[tokio::test]
async fn enable_by_raw_key_id_then_roll_back() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    seed.user("svc").await;
    let (key, _) = seed.access_key("svc").await;
    seed.iam(
        "UpdateAccessKey",
        &[
            ("UserName", "svc"),
            ("AccessKeyId", &key),
            ("Status", "Inactive"),
        ],
    )
    .await;
    let iam = connect(&moto).await;

    let plan = iam
        .plan(&format!("svc/{key}"), &Action::Enable)
        .await
        .unwrap();
    assert_eq!(plan.pre_image.attributes["status"], json!("Inactive"));
    assert_eq!(plan.pre_image.attributes["slot"], json!("AccessKey1"));
    assert_eq!(iam.apply(&plan, "e1").await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(iam.verify(&plan).await.unwrap(), Verification::Confirmed);
    assert_eq!(
        iam.apply(&plan, "e1").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
    assert_eq!(iam.rollback(&plan).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(
        seed.key_status("svc", &key).await.as_deref(),
        Some("Inactive")
    );
}

#[tokio::test]
async fn delete_is_irreversible_and_pinned_to_the_key() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    seed.user("svc").await;
    let (key1, _) = seed.access_key("svc").await;
    let (key2, _) = seed.access_key("svc").await;
    let iam = connect(&moto).await;

    let plan = iam.plan("svc/AccessKey1", &Action::Delete).await.unwrap();
    assert_eq!(plan.reversibility, Reversibility::Irreversible);
    assert_eq!(plan.pre_image.attributes["access_key_id"], json!(key1));
    assert_eq!(iam.apply(&plan, "d1").await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(iam.verify(&plan).await.unwrap(), Verification::Confirmed);
    assert_eq!(seed.key_status("svc", &key1).await, None);
    // The slots renumber, but the plan stays pinned to the deleted key.
    assert_eq!(
        iam.read("svc/AccessKey1").await.unwrap().attributes["access_key_id"],
        json!(key2)
    );
    assert_eq!(
        iam.apply(&plan, "d1").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
    assert_eq!(
        seed.key_status("svc", &key2).await.as_deref(),
        Some("Active")
    );
    match iam.rollback(&plan).await.unwrap() {
        ApplyOutcome::Rejected { reason } => assert!(reason.contains("irreversible"), "{reason}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn reduce_scope_detaches_and_deletes_then_restores_identically() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    seed.user("svc").await;
    seed.iam(
        "AttachUserPolicy",
        &[("UserName", "svc"), ("PolicyArn", ADMIN)],
    )
    .await;
    seed.iam(
        "PutUserPolicy",
        &[
            ("UserName", "svc"),
            ("PolicyName", "star"),
            ("PolicyDocument", STAR),
        ],
    )
    .await;
    let keep = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;
    seed.iam(
        "PutUserPolicy",
        &[
            ("UserName", "svc"),
            ("PolicyName", "keep"),
            ("PolicyDocument", keep),
        ],
    )
    .await;
    let created = seed
        .iam(
            "CreatePolicy",
            &[("PolicyName", "deploy"), ("PolicyDocument", STAR)],
        )
        .await;
    let custom = format!("arn:aws:iam::{ACCOUNT}:policy/deploy");
    assert!(created.contains(&custom), "{created}");
    seed.iam(
        "AttachUserPolicy",
        &[("UserName", "svc"), ("PolicyArn", &custom)],
    )
    .await;
    let iam = connect(&moto).await;

    let action = Action::ReduceScope {
        remove: vec![
            format!("policy:{ADMIN}"),
            format!("policy:{custom}"),
            "inline:star".to_owned(),
        ],
    };
    let plan = iam.plan("svc", &action).await.unwrap();
    assert_eq!(plan.reversibility, Reversibility::Reversible);
    assert_eq!(
        plan.pre_image.attributes["inline_policies"]["star"],
        json!(STAR)
    );
    assert_eq!(
        plan.pre_image.attributes["attached_policies"],
        json!([{ "arn": ADMIN, "name": "AdministratorAccess" }, { "arn": custom, "name": "deploy" }])
    );

    assert_eq!(iam.apply(&plan, "r1").await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(iam.verify(&plan).await.unwrap(), Verification::Confirmed);
    let after = iam.read("svc").await.unwrap();
    assert_eq!(after.attributes["attached_policies"], json!([]));
    assert_eq!(after.attributes["inline_policies"], json!({ "keep": keep }));
    assert_eq!(
        iam.apply(&plan, "r1").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );

    assert_eq!(iam.rollback(&plan).await.unwrap(), ApplyOutcome::Applied);
    // Policy re-attached, inline document back byte for byte: the whole pre-image is back.
    assert_eq!(iam.read("svc").await.unwrap(), plan.pre_image);
    assert_eq!(
        iam.rollback(&plan).await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
}

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// An AI agent's role: its policies detached, its inline policy deleted and a permissions
/// boundary set in one change; read back; rolled back to the exact pre-image (no boundary).
/// Then a role that already had a boundary gets a tighter one, and rollback puts the old one
/// back.
#[tokio::test]
async fn role_scope_and_permissions_boundary_then_restore() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    let cap = |name: &str| format!("arn:aws:iam::{ACCOUNT}:policy/{name}");
    for name in ["agent-cap", "agent-cap-strict"] {
        seed.iam(
            "CreatePolicy",
            &[("PolicyName", name), ("PolicyDocument", STAR)],
        )
        .await;
    }
    seed.iam(
        "CreateRole",
        &[
            ("RoleName", "agent-runner"),
            ("AssumeRolePolicyDocument", TRUST),
        ],
    )
    .await;
    seed.iam(
        "AttachRolePolicy",
        &[("RoleName", "agent-runner"), ("PolicyArn", ADMIN)],
    )
    .await;
    seed.iam(
        "PutRolePolicy",
        &[
            ("RoleName", "agent-runner"),
            ("PolicyName", "star"),
            ("PolicyDocument", STAR),
        ],
    )
    .await;
    let iam = connect(&moto).await;

    let discovered = iam.discover().await.unwrap();
    let role = discovered
        .iter()
        .find(|o| o.external_id == "role:agent-runner")
        .unwrap_or_else(|| panic!("role not discovered: {discovered:#?}"));
    assert_eq!(role.object_kind, "role");
    assert_eq!(role.attributes["attached_policies"][0]["arn"], json!(ADMIN));

    let action = Action::ReduceScope {
        remove: vec![
            format!("policy:{ADMIN}"),
            "inline:star".to_owned(),
            format!("boundary:{}", cap("agent-cap")),
        ],
    };
    let plan = iam.plan("role:agent-runner", &action).await.unwrap();
    assert_eq!(plan.reversibility, Reversibility::Reversible);
    assert_eq!(
        plan.pre_image.attributes["permissions_boundary"],
        json!(null)
    );
    assert_eq!(iam.verify(&plan).await.unwrap(), {
        let observed = iam.read("role:agent-runner").await.unwrap();
        Verification::NotInEffect { observed }
    });
    assert_eq!(iam.apply(&plan, "k").await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(iam.verify(&plan).await.unwrap(), Verification::Confirmed);
    let after = iam.read("role:agent-runner").await.unwrap();
    assert_eq!(after.attributes["attached_policies"], json!([]));
    assert_eq!(after.attributes["inline_policies"], json!({}));
    assert_eq!(
        after.attributes["permissions_boundary"],
        json!(cap("agent-cap"))
    );
    assert_eq!(
        iam.apply(&plan, "k").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
    assert_eq!(iam.rollback(&plan).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(iam.read("role:agent-runner").await.unwrap(), plan.pre_image);

    // A tighter boundary replaces the one in place; rollback restores the old one.
    let loose = Action::ReduceScope {
        remove: vec![format!("boundary:{}", cap("agent-cap"))],
    };
    let first = iam.plan("role:agent-runner", &loose).await.unwrap();
    assert_eq!(
        iam.apply(&first, "k1").await.unwrap(),
        ApplyOutcome::Applied
    );
    let strict = Action::ReduceScope {
        remove: vec![format!("boundary:{}", cap("agent-cap-strict"))],
    };
    let second = iam.plan("role:agent-runner", &strict).await.unwrap();
    assert_eq!(
        second.pre_image.attributes["permissions_boundary"],
        json!(cap("agent-cap"))
    );
    assert_eq!(
        iam.apply(&second, "k2").await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(iam.verify(&second).await.unwrap(), Verification::Confirmed);
    assert_eq!(iam.rollback(&second).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(
        iam.read("role:agent-runner").await.unwrap().attributes["permissions_boundary"],
        json!(cap("agent-cap"))
    );

    // A role that does not exist is refused, not half-changed.
    let missing = iam.plan("role:nobody", &loose).await.unwrap();
    assert!(!missing.pre_image.exists);
    assert!(matches!(
        iam.apply(&missing, "k3").await.unwrap(),
        ApplyOutcome::Rejected { .. }
    ));
}

#[tokio::test]
async fn discover_lists_users_keys_status_last_use_and_policies() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    for u in ["svc-etl", "svc-backup", "svc-admin"] {
        seed.user(u).await;
    }
    let (etl, etl_secret) = seed.access_key("svc-etl").await;
    let (backup, _) = seed.access_key("svc-backup").await;
    seed.iam(
        "UpdateAccessKey",
        &[
            ("UserName", "svc-backup"),
            ("AccessKeyId", &backup),
            ("Status", "Inactive"),
        ],
    )
    .await;
    use_key(&moto, &etl, &etl_secret).await;
    seed.iam(
        "AttachUserPolicy",
        &[("UserName", "svc-admin"), ("PolicyArn", ADMIN)],
    )
    .await;
    seed.iam(
        "PutUserPolicy",
        &[
            ("UserName", "svc-backup"),
            ("PolicyName", "star"),
            ("PolicyDocument", STAR),
        ],
    )
    .await;
    let iam = connect(&moto).await;

    let found = iam.discover().await.unwrap();
    let get = |id: &str| {
        found
            .iter()
            .find(|o| o.external_id == id)
            .unwrap_or_else(|| panic!("{id} not discovered in {found:#?}"))
    };
    for u in ["svc-etl", "svc-backup", "svc-admin"] {
        assert_eq!(get(u).object_kind, "user");
    }
    assert_eq!(
        get("svc-admin").attributes["attached_policies"][0]["arn"],
        json!(ADMIN)
    );
    assert_eq!(
        get("svc-backup").attributes["inline_policies"],
        json!(["star"])
    );

    let etl_key = get(&format!("svc-etl/{etl}"));
    assert_eq!(etl_key.object_kind, "access_key");
    assert_eq!(etl_key.attributes["status"], json!("Active"));
    assert_eq!(
        etl_key.attributes["slot_external_id"],
        json!("svc-etl/AccessKey1")
    );
    assert!(
        etl_key.attributes["last_used"]["date"].is_string(),
        "{:?}",
        etl_key.attributes
    );
    let backup_key = get(&format!("svc-backup/{backup}"));
    assert_eq!(backup_key.attributes["status"], json!("Inactive"));
    assert_eq!(backup_key.attributes["last_used"], json!(null));
    // Discovery never carries key secrets.
    let text = serde_json::to_string(&found).unwrap();
    assert!(!text.contains(&etl_secret));
}

#[tokio::test]
async fn unknown_user_is_rejected_and_bad_actions_are_unsupported() {
    let moto = MotoServer::start().await;
    let iam = connect(&moto).await;

    for id in ["ghost/AccessKey1", "ghost/AKIAGHOSTGHOSTGHOST1"] {
        let plan = iam.plan(id, &Action::Disable).await.unwrap();
        assert!(!plan.pre_image.exists);
        match iam.apply(&plan, "g").await.unwrap() {
            ApplyOutcome::Rejected { reason } => {
                assert!(reason.contains("NoSuchEntity"), "{reason}")
            }
            other => panic!("{id}: expected a rejection, got {other:?}"),
        }
    }
    let plan = iam
        .plan(
            "ghost",
            &Action::ReduceScope {
                remove: vec!["inline:x".into()],
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        iam.apply(&plan, "g").await.unwrap(),
        ApplyOutcome::Rejected { .. }
    ));

    for (id, action) in [
        (
            "svc/AccessKey1",
            Action::SetExpiry {
                until: "2030-01-01T00:00:00Z".into(),
            },
        ),
        ("svc/AccessKey1", Action::Rotate),
        ("role:ci", Action::Disable),
        (
            "svc",
            Action::Create {
                owner_team: "data".into(),
                purpose: "no sink configured".into(),
            },
        ),
    ] {
        assert!(matches!(
            iam.plan(id, &action).await,
            Err(ConnectorError::Unsupported(_))
        ));
    }
    assert!(matches!(
        iam.plan(
            "svc",
            &Action::ReduceScope {
                remove: vec!["group:x".into()]
            }
        )
        .await,
        Err(ConnectorError::Permanent(_))
    ));
}

#[tokio::test]
async fn moto_stopped_mid_test_is_retryable() {
    let mut moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    seed.user("svc").await;
    seed.access_key("svc").await;
    let iam = connect(&moto).await;
    let plan = iam.plan("svc/AccessKey1", &Action::Disable).await.unwrap();

    moto.stop();
    let err = iam.apply(&plan, "x").await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(iam.read("svc").await.unwrap_err().is_retryable());
    assert!(iam.discover().await.unwrap_err().is_retryable());
    assert!(!err.to_string().contains("testing"), "{err}");
}

#[tokio::test]
async fn server_errors_are_retryable_and_client_errors_are_not() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    // moto answers 500 for ServiceSpecificCredentials (not implemented).
    let err = client
        .query(
            writ_connector_aws::Service::Iam,
            "ListServiceSpecificCredentials",
            &[("UserName", "x")],
        )
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(ConnectorError::from(err).is_retryable());
    let err = client
        .query(
            writ_connector_aws::Service::Iam,
            "GetUser",
            &[("UserName", "ghost")],
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found() && !err.is_retryable(), "{err}");
}

/// Rotation with cut-over survives a crash at any point: a second key that was never
/// delivered (its secret lost) is deleted and made again; one already in the secret is adopted.
#[tokio::test]
async fn key_rotation_creates_delivers_and_resumes_after_a_crash() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    seed.user("svc").await;
    let (old, _) = seed.access_key("svc").await;
    // A try that crashed after CreateAccessKey, before the secret was written.
    let (orphan, _) = seed.access_key("svc").await;
    let iam = connect(&moto)
        .await
        .with_rotation(moto.config(), "apps/{identity}/aws")
        .unwrap();
    assert!(iam.capabilities().actions.contains(&"rotate".to_owned()));
    let rotation = iam.key_rotation().unwrap();
    let delivered = rotation.create_and_deliver("svc", &old).await.unwrap();
    assert_ne!(
        delivered.key_id, orphan,
        "the undelivered key is not trusted"
    );
    assert_eq!(delivered.secret_name, "apps/svc/aws");
    assert_eq!(rotation.key_status("svc", &orphan).await.unwrap(), None);
    assert_eq!(rotation.key_status("svc", &old).await.unwrap(), Some(true));
    // A crash after delivery, before it was recorded: the same key is adopted.
    let again = rotation.create_and_deliver("svc", &old).await.unwrap();
    assert_eq!(again.key_id, delivered.key_id);
    // Not used yet; then used by a consumer signing with it.
    assert_eq!(
        rotation.last_used("svc", &delivered.key_id).await.unwrap(),
        None
    );
    rotation.deactivate("svc", &old).await.unwrap();
    rotation.deactivate("svc", &old).await.unwrap();
    assert_eq!(rotation.key_status("svc", &old).await.unwrap(), Some(false));
    rotation.delete_key("svc", &old).await.unwrap();
    rotation.delete_key("svc", &old).await.unwrap();
    assert_eq!(rotation.key_status("svc", &old).await.unwrap(), None);
    // Without a rotation sink, rotation is not offered.
    let plain = connect(&moto).await;
    assert!(plain.key_rotation().is_none());
    assert!(matches!(
        plain.plan("svc/AccessKey1", &Action::Rotate).await,
        Err(ConnectorError::Unsupported(_))
    ));
}

#[tokio::test]
async fn requested_account_gets_a_delivered_key_is_disabled_whole_and_rolls_back() {
    let moto = MotoServer::start().await;
    let client = moto.client();
    let seed = Seed(&client);
    seed.user("someone-elses").await;
    let iam = connect(&moto)
        .await
        .with_rotation(moto.config(), "apps/{identity}/aws")
        .unwrap();
    assert!(iam.capabilities().actions.contains(&"create".to_owned()));
    let create = Action::Create {
        owner_team: "data".into(),
        purpose: "nightly reports (ETL)".into(),
    };
    let plan = iam.plan("svc-new", &create).await.unwrap();
    assert!(!plan.pre_image.exists);
    assert_eq!(plan.reversibility, Reversibility::Reversible);
    assert_eq!(iam.apply(&plan, "k1").await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(iam.verify(&plan).await.unwrap(), Verification::Confirmed);
    // The key went to the consumers' secret, never through writ.
    let secret = client
        .json(
            writ_connector_aws::Service::SecretsManager,
            "secretsmanager.GetSecretValue",
            &json!({"SecretId": "apps/svc-new/aws"}),
        )
        .await
        .unwrap();
    let value: serde_json::Value =
        serde_json::from_str(secret["SecretString"].as_str().unwrap()).unwrap();
    let key_id = value["AccessKeyId"].as_str().unwrap().to_owned();
    assert!(value["SecretAccessKey"].as_str().unwrap().len() >= 20);
    let state = iam.read("svc-new").await.unwrap();
    assert_eq!(state.attributes["access_keys"], json!([key_id]));
    // Applied again after a crash: the user and its delivered key are adopted.
    iam.apply(&plan, "k1").await.unwrap();
    assert_eq!(
        iam.read("svc-new").await.unwrap().attributes["access_keys"],
        json!([key_id])
    );
    // A user writ did not create is never taken over, nor deleted.
    let theirs = iam.plan("someone-elses", &create).await.unwrap();
    assert!(matches!(
        iam.apply(&theirs, "k2").await.unwrap(),
        ApplyOutcome::Rejected { .. }
    ));
    assert!(matches!(
        iam.rollback(&theirs).await.unwrap(),
        ApplyOutcome::Rejected { .. }
    ));

    // Disabled at its expiry: every key inactive; rolled back to the statuses before.
    let disable = iam.plan("svc-new", &Action::Disable).await.unwrap();
    assert_eq!(
        disable.pre_image.attributes["access_key_status"][&key_id],
        "Active"
    );
    assert_eq!(
        iam.apply(&disable, "k3").await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(iam.verify(&disable).await.unwrap(), Verification::Confirmed);
    assert_eq!(
        iam.apply(&disable, "k3").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
    assert_eq!(iam.rollback(&disable).await.unwrap(), ApplyOutcome::Applied);
    assert_eq!(
        iam.read("svc-new").await.unwrap().attributes["access_key_status"][&key_id],
        "Active"
    );

    // The creation rolled back: keys and user gone.
    assert_eq!(iam.rollback(&plan).await.unwrap(), ApplyOutcome::Applied);
    assert!(!iam.read("svc-new").await.unwrap().exists);
    assert_eq!(
        iam.rollback(&plan).await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
}
