//! Principals over the real stores: the first admin, and `[[sources]]` entries as source
//! principals whose configured tokens rotate with the configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use writ_core::finding::Trust;
use writ_core::principal::{PrincipalKind, Role, token_digest};
use writ_engine::Engine;
use writ_engine::principals::NewPrincipal;
use writ_testkit::TestDb;

struct World {
    engine: Engine,
    _db: TestDb,
}

async fn harness(db: TestDb) -> World {
    let store = writ_store::open(&db.url).await.unwrap();
    let (signer, _) = writ_ledger::generate_key("writ.test/ledger", [3; 32]).unwrap();
    let engine = Engine::builder(store, signer).start().await.unwrap();
    World { engine, _db: db }
}

fn admin(name: &str) -> NewPrincipal {
    NewPrincipal {
        name: name.into(),
        kind: PrincipalKind::Person,
        teams: vec![],
        roles: vec![Role::Admin],
        trust: None,
        token_ttl: None,
    }
}

/// Changing a source's `token_sha256` rotates its token; dropping the entry revokes the
/// configured token; a token an admin issued over the API is never touched by either.
async fn configured_source_tokens_follow_the_configuration(w: World) {
    let principals = &w.engine.principals;
    let secret = |n: u8| format!("writ_{}", format!("{n:02x}").repeat(32));
    assert!(
        principals
            .reconcile_source("ci", Trust::High, Some(token_digest(&secret(1))))
            .await
            .unwrap()
    );
    // Source principals do not stop the first admin from being made.
    let (root, _) = principals.bootstrap(admin("root")).await.unwrap();
    assert!(principals.bootstrap(admin("second")).await.is_err());
    assert_eq!(
        principals.authenticate(&secret(1)).await.unwrap().name,
        "ci"
    );

    principals
        .reconcile_source("ci", Trust::High, Some(token_digest(&secret(2))))
        .await
        .unwrap();
    assert!(
        principals.authenticate(&secret(1)).await.is_err(),
        "rotated out"
    );
    assert_eq!(
        principals.authenticate(&secret(2)).await.unwrap().name,
        "ci"
    );

    let (_, issued) = principals.issue_token(&root, "ci", None).await.unwrap();
    // Now signed with HMAC instead: the configured token goes, the admin's stays.
    principals
        .reconcile_source("ci", Trust::High, None)
        .await
        .unwrap();
    assert!(principals.authenticate(&secret(2)).await.is_err());
    assert!(principals.authenticate(&issued.secret).await.is_ok());

    principals
        .reconcile_source("ci", Trust::High, Some(token_digest(&secret(3))))
        .await
        .unwrap();
    assert!(principals.authenticate(&secret(3)).await.is_ok());
    // The entry is removed from [[sources]].
    assert_eq!(
        principals.retire_unconfigured_sources(&[]).await.unwrap(),
        1
    );
    assert!(principals.authenticate(&secret(3)).await.is_err());
    assert!(principals.authenticate(&issued.secret).await.is_ok());
    // Nothing more to do the second time.
    assert_eq!(
        principals.retire_unconfigured_sources(&[]).await.unwrap(),
        0
    );
    let drift = writ_engine::rebuild::check(&*w.engine.store).await.unwrap();
    assert!(drift.is_empty(), "{drift:#?}");
}

/// Two replicas over one database, each remembering authentications: a disable made through
/// one is refused there at once; the other, which remembered the token, refuses it once its
/// time to live has passed.
async fn remembered_authentications_follow_changes(w: World) {
    use std::time::Duration;
    let db_url = w._db.url.clone();
    let replica = |ttl: Duration| {
        let url = db_url.clone();
        async move {
            let store = writ_store::open(&url).await.unwrap();
            let (signer, _) = writ_ledger::generate_key("writ.test/ledger", [3; 32]).unwrap();
            Engine::builder(store, signer)
                .auth_cache(ttl)
                .start()
                .await
                .unwrap()
        }
    };
    let here = replica(Duration::from_secs(60)).await;
    let there = replica(Duration::from_millis(300)).await;
    let (root, _) = here.principals.bootstrap(admin("root")).await.unwrap();
    let mut approver = admin("alice");
    approver.roles = vec![Role::Approver];
    let (_, first) = here.principals.create(&root, approver).await.unwrap();
    let (_, second) = here
        .principals
        .issue_token(&root, "alice", None)
        .await
        .unwrap();
    for engine in [&here, &there] {
        for token in [&first, &second] {
            let who = engine.principals.authenticate(&token.secret).await.unwrap();
            assert_eq!(who.name, "alice");
        }
    }

    let tokens = here.principals.tokens("alice").await.unwrap();
    let first_id = tokens
        .iter()
        .find(|t| t.token.sha256 == token_digest(&first.secret))
        .unwrap()
        .token
        .id;
    here.principals
        .revoke_token(&root, "alice", first_id)
        .await
        .unwrap();
    assert!(
        here.principals.authenticate(&first.secret).await.is_err(),
        "revoked through this replica: refused at once"
    );
    assert!(here.principals.authenticate(&second.secret).await.is_ok());

    here.principals
        .disable(&root, "alice", "left".into())
        .await
        .unwrap();
    assert!(here.principals.authenticate(&second.secret).await.is_err());
    // The other replica remembered the token for up to its time to live, then reads again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for token in [&first, &second] {
        assert!(
            there.principals.authenticate(&token.secret).await.is_err(),
            "still authenticated past the other replica's time to live"
        );
    }
    // A replica that remembers nothing sees the change at once.
    let exact = replica(Duration::ZERO).await;
    assert!(exact.principals.authenticate(&second.secret).await.is_err());
}

writ_testkit::backend_suite!(
    configured_source_tokens_follow_the_configuration,
    remembered_authentications_follow_changes
);
