//! Shared harness for the end-to-end tests: a site (working directory, config, signing key,
//! database) and a running `writ serve`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use writ_testkit::TestDb;

/// `writ` with a clean environment, run in `dir`.
pub fn writ(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_writ"));
    command.current_dir(dir).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("WRIT_") {
            command.env_remove(key);
        }
    }
    command
}

/// Standard output and error together.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A working directory with `writ.toml`, a signing key and a database: the shared harness's
/// [`TestDb`], whose directory is the site's.
pub struct Site {
    db: TestDb,
    /// The database URL as the test process reaches it.
    pub url: String,
    pub port: u16,
}

impl Site {
    /// A site on `db`; `extra` is appended to writ.toml.
    pub fn new(db: TestDb, extra: &str) -> Site {
        let url = db.url.clone();
        let dir = db.dir.path();
        let port = writ_testkit::free_port().unwrap();
        std::fs::write(
            dir.join("writ.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[database]\nurl = \"{url}\"\n\n[ledger]\nsigning_key = \"ledger.key\"\norigin = \"writ.test/ledger\"\n\n{extra}\n"
            ),
        )
        .unwrap();
        let output = writ(dir).args(["keys", "init"]).output().unwrap();
        assert!(output.status.success(), "{}", text(&output));
        Site { db, url, port }
    }

    /// The PostgreSQL cluster of the site's database (none on SQLite), to restart it.
    pub fn database_cluster(&self) -> Option<&writ_testkit::PgCluster> {
        self.db.cluster()
    }

    /// Imports the site's `owners.csv` and syncs target `pg`, as `admin` through `server`.
    pub fn import_owners_and_sync(&self, server: &Server, admin: &str) {
        for args in [&["inventory", "import", "owners.csv"][..], &["sync", "pg"]] {
            let output = self.run_as(server, admin, args);
            assert!(output.status.success(), "{args:?}: {}", text(&output));
        }
    }

    /// The site's working directory.
    pub fn dir(&self) -> &Path {
        self.db.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        writ(self.dir()).args(args).output().unwrap()
    }

    /// Starts `writ serve` and waits until it answers.
    pub async fn serve(&self) -> Server {
        let child = writ(self.dir())
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut server = Server {
            child: Some(child),
            base: format!("http://127.0.0.1:{}", self.port),
        };
        server.wait_ready().await;
        server
    }
}

impl Site {
    /// Starts `writ serve` with `env` added, its output appended to `serve.log` in the site,
    /// without waiting for it to answer.
    pub fn spawn_serve(&self, env: &[(&str, String)]) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("serve.log"))
            .unwrap();
        let child = writ(self.dir())
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Server {
            child: Some(child),
            base: format!("http://127.0.0.1:{}", self.port),
        }
    }
}

/// A running `writ serve`; killed on drop.
pub struct Server {
    child: Option<Child>,
    pub base: String,
}

impl Server {
    /// Starts `command` (a `writ ... serve` listening on `port`), capturing its output,
    /// without waiting for it to answer.
    pub fn spawn(mut command: Command, port: u16) -> Server {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Server {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// GETs `path` and returns the status and the JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = reqwest::get(self.url(path)).await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Stops the server with SIGTERM, asserts that it exited cleanly, and returns its output.
    pub fn terminate(self) -> Output {
        let output = self.stop();
        assert!(
            output.status.success(),
            "writ did not exit cleanly on SIGTERM: {}",
            text(&output)
        );
        output
    }

    /// Kills the server with SIGKILL: no shutdown, no flushing, as in a crash.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Waits until the server answers `/readyz` (panics after 30 s or if it exits).
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = reqwest::get(format!("{}/readyz", self.base)).await
                && response.status().is_success()
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().unwrap()
            {
                let output = self.child.take().unwrap().wait_with_output().unwrap();
                panic!("writ serve exited early ({status}): {}", text(&output));
            }
            assert!(Instant::now() < deadline, "writ serve did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Reads case `id` (as the principal of `token`) until its state is `want`, and returns
    /// the case with its timeline; panics with the last one read after `within`.
    pub async fn wait_for_case_state(
        &self,
        token: &str,
        id: &str,
        want: &str,
        within: Duration,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        let http = reqwest::Client::new();
        loop {
            let story: serde_json::Value = http
                .get(self.url(&format!("/v1/cases/{id}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if story["case"]["state"] == want {
                return story;
            }
            assert!(
                Instant::now() < deadline,
                "case {id} did not become {want}: {story}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server with SIGTERM and returns its output.
    pub fn stop(mut self) -> Output {
        let child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The writ-formats fixtures (real scanner output).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../writ-formats/tests/fixtures")
        .join(name)
}

/// A signed AWS client for moto at `url` (moto accepts any credentials).
pub fn moto_client(url: &str) -> writ_connector_aws::AwsClient {
    writ_connector_aws::AwsClient::new(
        writ_connector_aws::AwsConfig::new("testing", "testing", "us-east-1")
            .with_endpoint(url)
            .unwrap(),
    )
    .unwrap()
}

/// The status (`Active`/`Inactive`) of `user`'s first access key in moto at `url`.
/// Reads `user`'s access key status in moto until it is `want`; panics after 10 s.
pub async fn wait_for_key_status(url: &str, user: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = key_status(url, user).await;
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user}'s key stayed {status}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn key_status(url: &str, user: &str) -> String {
    let body = moto_client(url)
        .query(
            writ_connector_aws::Service::Iam,
            "ListAccessKeys",
            &[("UserName", user)],
        )
        .await
        .unwrap();
    body.split("<Status>")
        .nth(1)
        .and_then(|rest| rest.split("</Status>").next())
        .unwrap()
        .to_owned()
}

impl Site {
    /// Runs a client command of the CLI against `server` with `token` as WRIT_TOKEN.
    pub fn run_as(&self, server: &Server, token: &str, args: &[&str]) -> Output {
        writ(self.dir())
            .args(args)
            .env("WRIT_SERVER", &server.base)
            .env("WRIT_TOKEN", token)
            .output()
            .unwrap()
    }

    /// Makes the first admin of the site's empty database; returns its token.
    pub fn bootstrap_admin(&self, name: &str) -> String {
        let output = self.run(&["principal", "add", name, "--role", "admin", "--bootstrap"]);
        assert!(output.status.success(), "{}", text(&output));
        last_line(&output)
    }

    /// Adds a principal through the API as `admin`; returns its token.
    pub fn add_principal(&self, server: &Server, admin: &str, args: &[&str]) -> String {
        let mut all = vec!["principal", "add"];
        all.extend_from_slice(args);
        let output = self.run_as(server, admin, &all);
        assert!(output.status.success(), "{}", text(&output));
        last_line(&output)
    }
}

/// The last line of stdout (where a new token is printed, alone).
pub fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The environment a writ process needs to reach moto: its test credentials and region, and
/// `endpoint` (every service's), when given.
pub fn aws_env(endpoint: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    if let Some(endpoint) = endpoint {
        env.push(("AWS_ENDPOINT_URL", endpoint.to_owned()));
    }
    env
}

/// `GET path` as the principal of `token`; the JSON answer (a non-2xx fails the test).
pub async fn api_get(server: &Server, token: &str, path: &str) -> serde_json::Value {
    let response = reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// `POST path` with a JSON `body` as the principal of `token`; the status and JSON answer.
pub async fn api_post(
    server: &Server,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// Whether PostgreSQL role `role` at `url` can log in (`pg_roles.rolcanlogin`).
pub async fn pg_can_login(url: &str, role: &str) -> bool {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let login: bool = sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    login
}

/// A throwaway PostgreSQL target with `sql` run on it (the roles a test needs), and its URL.
pub async fn pg_target(sql: &str) -> (writ_testkit::PgCluster, String) {
    let target = tokio::task::spawn_blocking(writ_testkit::PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = target.url("postgres");
    writ_testkit::exec_sql(&url, sql).await.unwrap();
    (target, url)
}

/// The configuration naming the PostgreSQL at `url` as target `pg` of system `pg-main`, with
/// a write-back worker passing every 200 ms.
pub fn pg_target_config(url: &str) -> String {
    format!(
        "[writeback]\ninterval_ms = 200\n\n\
         [[targets]]\nname = \"pg\"\nkind = \"postgres\"\nsystem = \"pg-main\"\nurl = \"{url}\"\n"
    )
}
