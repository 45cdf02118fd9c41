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

writ_testkit::backend_suite!(configured_source_tokens_follow_the_configuration);
