//! End-to-end: the real `writ` binary, started as a user would start it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{Server, writ};
use writ_testkit::{TestDb, free_port, venv_program};

/// `writ serve` with no arguments: embedded SQLite in the working directory. The port comes from
/// the environment (`WRIT_SERVER__LISTEN`), which also proves environment configuration works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_arguments_uses_sqlite_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let mut command = writ(dir.path());
    command
        .arg("serve")
        .env("WRIT_SERVER__LISTEN", format!("127.0.0.1:{port}"));
    let mut server = Server::spawn(command, port);
    server.wait_ready().await;

    let (status, body) = server.get_json("/readyz").await;
    assert_eq!((status, body["backend"].as_str()), (200, Some("sqlite")));
    assert!(
        dir.path().join("writ.db").exists(),
        "writ.db was not created in the working directory"
    );
    assert!(
        dir.path().join("writ-ledger.key").exists(),
        "the default ledger signing key was not created"
    );
    let response = reqwest::get(server.url("/v1/ledger/checkpoint"))
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        404,
        "an empty ledger has no checkpoint"
    );

    let (status, doc) = server.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let validation = Command::new(venv_program("openapi-spec-validator").unwrap())
        .arg(&spec)
        .output()
        .unwrap();
    assert!(
        validation.status.success(),
        "the OpenAPI document is not valid: {}{}",
        String::from_utf8_lossy(&validation.stdout),
        String::from_utf8_lossy(&validation.stderr)
    );

    let (status, problem) = server.get_json("/v1/does-not-exist").await;
    assert_eq!(status, 404);
    assert_eq!(problem["status"], 404);

    server.terminate();
}

/// A TOML file selects PostgreSQL; `--log-format json` makes every log line a JSON object; the
/// database password never appears in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_from_a_config_file_on_postgres_with_json_logs() {
    let db = TestDb::postgres().unwrap();
    let with_password = db.url.replace("postgres@", "postgres:not-a-real-password@");
    let dir = &db.dir;
    let port = free_port().unwrap();
    let config = dir.path().join("writ.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[database]\nurl = \"{with_password}\"\n"
        ),
    )
    .unwrap();
    let mut command = writ(dir.path());
    command
        .args(["--log-format", "json", "--config"])
        .arg(&config)
        .arg("serve");
    let mut server = Server::spawn(command, port);
    server.wait_ready().await;
    let (status, body) = server.get_json("/readyz").await;
    assert_eq!((status, body["backend"].as_str()), (200, Some("postgres")));
    let (_, body) = server.get_json("/v1/status").await;
    assert_eq!(body["ledger_size"], 0);

    let output = server.terminate();
    let logs = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(!lines.is_empty(), "no log output");
    for line in &lines {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("log line is not JSON ({err}): {line}"));
        assert!(parsed["level"].is_string() && parsed["timestamp"].is_string());
    }
    assert!(
        !logs.contains("not-a-real-password"),
        "a secret reached the logs"
    );
    assert!(
        !dir.path().join("writ.db").exists(),
        "SQLite used despite the config file"
    );
}

#[test]
fn invalid_configuration_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("writ.toml"),
        "[server]\nlisten = \"not an address\"\n",
    )
    .unwrap();
    let output = writ(dir.path()).arg("serve").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("writ.toml") && stderr.contains("listen"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("writ.toml"), "[databse]\nurl = \"x\"\n").unwrap();
    let output = writ(dir.path()).arg("serve").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("databse"), "typo not named: {stderr}");

    let output = writ(dir.path())
        .args(["--config", "missing.toml", "serve"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.toml"));
}

#[test]
fn unreachable_database_fails_clearly_without_leaking_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let output = writ(dir.path())
        .args(["serve", "--database"])
        .arg(format!(
            "postgres://writ:hunter2-secret@127.0.0.1:{port}/writ"
        ))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(all.contains("cannot open the database"), "{all}");
    assert!(!all.contains("hunter2-secret"), "password leaked: {all}");

    let output = writ(dir.path())
        .args(["serve", "--database", "mysql://x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unsupported database URL"));
}
