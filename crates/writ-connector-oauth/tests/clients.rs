//! The OAuth client connector against the real `oidc-provider` (npm), started by the test on
//! loopback: discovery, scope changes read back and undone, a token for a removed scope
//! refused, introspection and revocation, deletion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use secrecy::SecretString;
use serde_json::json;
use writ_connector_oauth::{OauthClients, OauthClientsConfig, Registration, register};
use writ_connectors::{ApplyOutcome, Connector, Verification};
use writ_core::change::Action;
use writ_testkit::{INITIAL_ACCESS_TOKEN, OidcProvider};

async fn client(issuer: &str, name: &str, scope: &str) -> writ_connector_oauth::Registered {
    register(
        issuer,
        &SecretString::from(INITIAL_ACCESS_TOKEN),
        &json!({
            "client_name": name,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": scope,
        }),
    )
    .await
    .unwrap()
}

/// A client-credentials grant for `scope`: the token, or the server's error code.
async fn token_for(
    endpoint: &str,
    registered: &writ_connector_oauth::Registered,
    scope: &str,
) -> Result<String, String> {
    use secrecy::ExposeSecret as _;
    let response = reqwest::Client::new()
        .post(endpoint)
        .basic_auth(
            &registered.client_id,
            Some(registered.client_secret.expose_secret()),
        )
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap();
    let ok = response.status().is_success();
    let body: serde_json::Value = response.json().await.unwrap();
    if ok {
        Ok(body["access_token"].as_str().unwrap().to_owned())
    } else {
        Err(body["error"].as_str().unwrap_or("?").to_owned())
    }
}

fn scopes(state: &writ_connectors::ObjectState) -> BTreeSet<String> {
    state.attributes["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn scopes_change_read_back_and_roll_back_against_oidc_provider() {
    let server = OidcProvider::start().unwrap();
    let issuer = server.issuer();
    let app = client(&issuer, "reporting", "api:read").await;
    let agent = client(&issuer, "support-bot", "api:read").await;
    let connector = OauthClients::new(OauthClientsConfig {
        system: "idp".into(),
        issuer: issuer.clone(),
        registrations: [&app, &agent]
            .iter()
            .map(|r| Registration {
                client_id: r.client_id.clone(),
                token: r.registration_access_token.clone(),
            })
            .collect(),
        agents: [agent.client_id.clone()].into(),
    })
    .unwrap();
    let endpoint = connector.token_endpoint().await.unwrap();

    // Discovery: both clients, the agent marked, no secret anywhere.
    let found = connector.discover().await.unwrap();
    assert_eq!(found.len(), 2);
    let text = serde_json::to_string(&found).unwrap();
    for secret in [&app.client_secret, &app.registration_access_token] {
        use secrecy::ExposeSecret as _;
        assert!(!text.contains(secret.expose_secret()), "a secret leaked");
    }
    let kinds: BTreeSet<_> = found.iter().map(|o| o.object_kind.as_str()).collect();
    assert_eq!(kinds, ["ai_agent", "oauth_client"].into());

    // Widen: the client may then get a token for the new scope.
    assert_eq!(
        token_for(&endpoint, &app, "api:write").await,
        Err("invalid_scope".into())
    );
    let widen = connector
        .plan(
            &app.client_id,
            &Action::SetScopes {
                scopes: vec!["api:read".into(), "api:write".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(scopes(&widen.pre_image), ["api:read".to_owned()].into());
    assert_eq!(
        connector.apply(&widen, "k1").await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        connector.verify(&widen).await.unwrap(),
        Verification::Confirmed
    );
    assert_eq!(
        connector.apply(&widen, "k1").await.unwrap(),
        ApplyOutcome::AlreadyInState
    );
    assert!(token_for(&endpoint, &app, "api:write").await.is_ok());

    // Narrow again: a token for the removed scope is refused.
    let narrow = connector
        .plan(
            &app.client_id,
            &Action::ReduceScope {
                remove: vec!["api:write".into()],
            },
        )
        .await
        .unwrap();
    connector.apply(&narrow, "k2").await.unwrap();
    assert_eq!(
        connector.verify(&narrow).await.unwrap(),
        Verification::Confirmed
    );
    assert_eq!(
        token_for(&endpoint, &app, "api:write").await,
        Err("invalid_scope".into())
    );
    // Undo the narrowing from its pre-image: api:write is back.
    assert_eq!(
        connector.rollback(&narrow).await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        scopes(&connector.read(&app.client_id).await.unwrap()),
        ["api:read".to_owned(), "api:write".to_owned()].into()
    );

    // An agent's time-boxed tool: granted, then taken away.
    let grant = connector
        .plan(
            &agent.client_id,
            &Action::Grant {
                scopes: vec!["tools:search".into()],
            },
        )
        .await
        .unwrap();
    connector.apply(&grant, "k3").await.unwrap();
    assert_eq!(
        connector.verify(&grant).await.unwrap(),
        Verification::Confirmed
    );
    let tool_token = token_for(&endpoint, &agent, "tools:search").await.unwrap();
    let tool_token = SecretString::from(tool_token);
    let (active, held) = connector
        .introspect(&agent.client_id, &tool_token)
        .await
        .unwrap();
    assert!(active);
    assert!(held.contains("tools:search"));
    let end = connector
        .plan(
            &agent.client_id,
            &Action::ReduceScope {
                remove: vec!["tools:search".into()],
            },
        )
        .await
        .unwrap();
    connector.apply(&end, "k4").await.unwrap();
    assert_eq!(
        connector.verify(&end).await.unwrap(),
        Verification::Confirmed
    );
    assert_eq!(
        token_for(&endpoint, &agent, "tools:search").await,
        Err("invalid_scope".into())
    );
    // A token issued before stays active until it is revoked (RFC 7009).
    connector
        .revoke_token(&agent.client_id, &tool_token)
        .await
        .unwrap();
    let (active, _) = connector
        .introspect(&agent.client_id, &tool_token)
        .await
        .unwrap();
    assert!(!active);

    // Delete: irreversible, read back as gone.
    let delete = connector
        .plan(&app.client_id, &Action::Delete)
        .await
        .unwrap();
    assert_eq!(
        connector.apply(&delete, "k5").await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        connector.verify(&delete).await.unwrap(),
        Verification::Confirmed
    );
    assert!(!connector.read(&app.client_id).await.unwrap().exists);
    assert!(matches!(
        connector.rollback(&delete).await.unwrap(),
        ApplyOutcome::Rejected { .. }
    ));
}

#[test]
fn a_registrations_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registrations.json");
    std::fs::write(&path, r#"{"client-a": "token-a"}"#).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = OauthClientsConfig::read_registrations(&path).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let read = OauthClientsConfig::read_registrations(&path).unwrap();
    assert_eq!(read[0].client_id, "client-a");
    assert!(!format!("{read:?}").contains("token-a"));
    std::fs::write(&path, "{\n  \"a\": 1\n}").unwrap();
    let err = OauthClientsConfig::read_registrations(&path).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}
