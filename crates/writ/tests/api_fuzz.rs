//! The OpenAPI document is exact: schemathesis (a real, external fuzzer) generates requests
//! from `/openapi.json` and sends them to the real `writ serve`, with an admin's token, every
//! check on: no 5xx, every status and body as documented, no schema-valid request refused and
//! no schema-invalid one accepted. On SQLite and PostgreSQL.
//!
//! The fuzzer's principal holds every role, so it reaches every handler; it may revoke its own
//! token or change its own roles along the way (the API allows both), after which its calls
//! get 401/403, which the document also describes. The rate limits are off for the run (the
//! fuzzer sends thousands of requests a second, some with bad credentials on purpose); they
//! have their own tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{Site, text};
use writ_testkit::{TestDb, venv_program};

/// Examples per operation and phase; `WRIT_FUZZ_EXAMPLES` raises it for a longer run.
fn examples() -> String {
    std::env::var("WRIT_FUZZ_EXAMPLES").unwrap_or_else(|_| "40".to_owned())
}

/// The seed: fixed so that CI is repeatable; `WRIT_FUZZ_SEED` explores others.
fn seed() -> String {
    std::env::var("WRIT_FUZZ_SEED").unwrap_or_else(|_| "20261206".to_owned())
}

async fn schemathesis_finds_nothing(db: TestDb) {
    let site = Site::new(db, "");
    let token = {
        let output = site.run(&[
            "principal",
            "add",
            "fuzzer",
            "--role",
            "admin",
            "--role",
            "approver",
            "--role",
            "source",
            "--role",
            "auditor",
            "--role",
            "requester",
            "--role",
            "break_glass",
            "--trust",
            "high",
            "--bootstrap",
        ]);
        assert!(output.status.success(), "{}", text(&output));
        common::last_line(&output)
    };
    // The fuzzer sends thousands of requests a second, and deliberately bad credentials (to
    // check they are refused): both limits are off for the run; each has its own test.
    let mut server = site.spawn_serve(&[
        ("WRIT_SERVER__RATE_LIMIT_PER_SECOND", "0".to_owned()),
        ("WRIT_SERVER__AUTH_FAILURE_BURST", "0".to_owned()),
    ]);
    server.wait_ready().await;
    let st = venv_program("st").unwrap();
    let output = tokio::task::spawn_blocking({
        let url = server.url("/openapi.json");
        let dir = site.dir().to_owned();
        move || {
            Command::new(st)
                .current_dir(dir)
                .args(["run", &url, "--no-color", "--max-examples", &examples()])
                .args(["--seed", &seed()])
                .args(["--header", &format!("Authorization: Bearer {token}")])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let report = text(&output);
    assert!(
        output.status.success(),
        "schemathesis found problems in the API or its document:\n{report}"
    );
    assert!(report.contains("passed"), "{report}");
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_schemathesis_finds_nothing() {
    schemathesis_finds_nothing(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schemathesis_finds_nothing() {
    schemathesis_finds_nothing(TestDb::postgres().unwrap()).await;
}
