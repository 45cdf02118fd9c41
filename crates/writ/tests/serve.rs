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
    // The one entry: the policy bundle in force, kept by hash so its decisions replay.
    let (_, status) = server.get_json("/v1/status").await;
    assert_eq!(status["ledger_size"], 1, "{status}");
    let response = reqwest::get(server.url("/v1/ledger/checkpoint"))
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "the entry is covered by a signed checkpoint"
    );

    let (status, doc) = server.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    // Every `pattern` is an ECMA-262 regular expression with Unicode property classes
    // (`\p{L}`); the engine schemathesis and jsonschema-rs use (Rust's `regex`) must compile
    // each. openapi-spec-validator compiles patterns with Python's `re`, which has no `\p{..}`,
    // so it gets a copy with those classes narrowed to ASCII ranges.
    let mut patterns = Vec::new();
    collect_patterns(&doc, &mut patterns);
    assert!(!patterns.is_empty());
    for pattern in &patterns {
        regex::Regex::new(pattern).unwrap_or_else(|err| panic!("pattern {pattern:?}: {err}"));
    }
    let narrowed = serde_json::to_string_pretty(&doc)
        .unwrap()
        .replace(r"\\p{L}", "a-z")
        .replace(r"\\p{M}", r"\\u0300-\\u036F")
        .replace(r"\\p{Nd}", "0-9");
    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, narrowed).unwrap();
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
    assert_eq!(body["ledger_size"], 1, "the policy bundle kept: {body}");

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

/// A client that sends its headers a byte at a time is cut off after the header timeout,
/// while other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let mut command = writ(dir.path());
    command
        .arg("serve")
        .env("WRIT_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WRIT_SERVER__HEADER_READ_TIMEOUT_MS", "1000");
    let mut server = Server::spawn(command, port);
    server.wait_ready().await;

    // 64 header bytes at one every 100 ms take 6.4 s; the server allows 1 s.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: {}\r\n\r\n",
        "a".repeat(16)
    );
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let slow_client = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut sent = 0;
        for byte in request.as_bytes() {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            // Closed by the server? A read that returns at once with 0 bytes says so.
            let mut buffer = [0u8; 512];
            if let Ok(Ok(n)) =
                tokio::time::timeout(std::time::Duration::from_millis(1), slow.read(&mut buffer))
                    .await
            {
                let answer = String::from_utf8_lossy(&buffer[..n]).into_owned();
                return (sent, request.len(), answer, started.elapsed());
            }
        }
        (sent, request.len(), String::new(), started.elapsed())
    });
    // Meanwhile, others are served.
    for _ in 0..5 {
        let (status, _) = server.get_json("/readyz").await;
        assert_eq!(status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (sent, total, answer, elapsed) = slow_client.await.unwrap();
    assert!(
        sent < total,
        "the slow client sent its whole request ({sent} bytes in {elapsed:?}) without being cut off"
    );
    assert!(
        !answer.contains("200 OK"),
        "the slow client was served: {answer}"
    );
    let (status, _) = server.get_json("/readyz").await;
    assert_eq!(status, 200);
    server.terminate();
}

/// With `tls_cert` and `tls_key`, writ serves HTTPS only; the CLI reaches it with
/// `--ca-cert`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let port = free_port().unwrap();
    let mut command = writ(dir.path());
    command
        .arg("serve")
        .env("WRIT_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WRIT_SERVER__TLS_CERT", fixtures.join("cert.pem"))
        .env("WRIT_SERVER__TLS_KEY", fixtures.join("key.pem"));
    let server = Server::spawn(command, port);
    let pem = std::fs::read(fixtures.join("cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let https = format!("https://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let response = loop {
        match client.get(format!("{https}/readyz")).send().await {
            Ok(response) => break response,
            Err(err) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no HTTPS answer: {err}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(response.status(), 200);
    // Plain HTTP gets no answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await;
    assert!(plain.is_err(), "plain HTTP was served: {plain:?}");
    // The CLI trusts the server's certificate with --ca-cert, and reaches the API.
    let output = writ(dir.path())
        .args(["principal", "list", "--server", &https, "--ca-cert"])
        .arg(fixtures.join("cert.pem"))
        .env("WRIT_TOKEN", "writ_not-a-token")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        said.contains("401") || said.contains("Not authenticated"),
        "{said}"
    );
    server.terminate();
}

/// Every `pattern` string in a JSON document.
fn collect_patterns(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("pattern", serde_json::Value::String(pattern)) => out.push(pattern.clone()),
                    _ => collect_patterns(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_patterns(item, out);
            }
        }
        _ => {}
    }
}

/// The principal commands an admin uses after the first day: change, tokens, revoke, whoami;
/// nobody changes its own roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_are_managed_through_the_cli() {
    let site = common::Site::new(TestDb::sqlite().unwrap(), "");
    let root = site.bootstrap_admin("root");
    let mut server = site.spawn_serve(&[]);
    server.wait_ready().await;
    let alice = site.add_principal(&server, &root, &["alice", "--role", "approver"]);
    let run = |token: &str, args: &[&str]| site.run_as(&server, token, args);

    let output = run(
        &root,
        &[
            "principal",
            "change",
            "Alice",
            "--team",
            "ops",
            "--role",
            "approver",
            "--reason",
            "joined ops",
        ],
    );
    assert!(output.status.success(), "{}", common::text(&output));
    assert!(
        common::text(&output).contains("ops"),
        "{}",
        common::text(&output)
    );
    let output = run(
        &root,
        &[
            "principal",
            "change",
            "root",
            "--role",
            "approver",
            "--reason",
            "me too",
        ],
    );
    assert!(!output.status.success(), "an admin changed its own roles");
    assert!(
        common::text(&output).contains("403"),
        "{}",
        common::text(&output)
    );

    let output = run(&alice, &["principal", "whoami"]);
    assert!(
        common::text(&output).contains("\"alice\""),
        "{}",
        common::text(&output)
    );
    let output = run(&root, &["principal", "tokens", "alice"]);
    let listing = common::text(&output);
    let id = listing
        .lines()
        .find(|l| l.contains("live"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no live token in {listing}"))
        .to_owned();
    let output = run(&root, &["principal", "revoke", "alice", &id]);
    assert!(output.status.success(), "{}", common::text(&output));
    let output = run(&alice, &["principal", "whoami"]);
    assert!(!output.status.success(), "a revoked token still works");
    assert!(
        common::text(&output).contains("401"),
        "{}",
        common::text(&output)
    );
    server.terminate();
}

/// An address that keeps failing to authenticate is refused (429, Retry-After) before its
/// next credentials are checked, valid or not; public endpoints stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_authentications_lock_the_address_out() {
    let site = common::Site::new(TestDb::sqlite().unwrap(), "");
    let root = site.bootstrap_admin("root");
    let mut server = site.spawn_serve(&[
        ("WRIT_SERVER__AUTH_FAILURE_BURST", "3".to_owned()),
        ("WRIT_SERVER__AUTH_FAILURES_PER_SECOND", "0.01".to_owned()),
    ]);
    server.wait_ready().await;
    let http = reqwest::Client::new();
    let whoami = |token: String| http.get(server.url("/v1/whoami")).bearer_auth(token).send();
    for attempt in 0..3 {
        let response = whoami(format!("writ_{attempt:064x}")).await.unwrap();
        assert_eq!(response.status(), 401, "attempt {attempt}");
    }
    let response = whoami("writ_guess".to_owned()).await.unwrap();
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);
    // Locked out means not even a good token is checked from here for now.
    assert_eq!(whoami(root.clone()).await.unwrap().status(), 429);
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, 200);
    server.terminate();
}
