//! Shared test helpers: an in-memory secret sink, a SCRAM-authenticating cluster, SQL helpers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use writ_connector_postgres::{PostgresRoles, PostgresRolesConfig, SecretSink};
use writ_connectors::ConnectorError;

/// Keeps delivered secrets in memory, as a secrets manager would.
#[derive(Default)]
pub struct MemorySink {
    delivered: Mutex<Vec<(String, String, String)>>,
}

impl std::fmt::Debug for MemorySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemorySink([redacted])")
    }
}

impl MemorySink {
    /// Everything delivered: (system, role, secret).
    pub fn delivered(&self) -> Vec<(String, String, String)> {
        self.delivered.lock().unwrap().clone()
    }
}

#[async_trait]
impl SecretSink for MemorySink {
    async fn deliver(
        &self,
        system: &str,
        role: &str,
        secret: &str,
    ) -> Result<String, ConnectorError> {
        let mut d = self.delivered.lock().unwrap();
        d.push((system.into(), role.into(), secret.into()));
        Ok(format!("v{}", d.len()))
    }
}

/// Runs statements as the admin (test setup only).
pub async fn admin(url: &str, statements: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(statements.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// A URL for `role` (with an optional password) on a loopback port.
pub fn role_url(port: u16, db: &str, role: &str, password: Option<&str>) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    match password {
        Some(p) => format!("postgres://{}:{}@127.0.0.1:{port}/{db}", enc(role), enc(p)),
        None => format!("postgres://{}@127.0.0.1:{port}/{db}", enc(role)),
    }
}

/// Connects the connector to `url`, with a memory sink.
pub async fn connector(url: &str) -> (PostgresRoles, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let connector = PostgresRoles::connect(PostgresRolesConfig {
        system: "postgres:test".into(),
        url: url.into(),
        rotation_secret_sink: Some(sink.clone()),
    })
    .await
    .unwrap();
    (connector, sink)
}

/// A cluster like `writ_testkit::PgCluster`, but with SCRAM password authentication over TCP
/// for every role except `postgres` (trusted, so the admin needs no password).
pub struct ScramCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    as_postgres: bool,
}

impl ScramCluster {
    pub fn start() -> Self {
        let bin = find_bin_dir();
        let as_postgres =
            String::from_utf8_lossy(&Command::new("id").arg("-u").output().unwrap().stdout).trim()
                == "0";
        let dir = tempfile::Builder::new()
            .prefix("writ-pg-scram-")
            .tempdir()
            .unwrap();
        if as_postgres {
            assert!(
                Command::new("chown")
                    .arg("postgres:")
                    .arg(dir.path())
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let port = writ_testkit::free_port().unwrap();
        let cluster = Self {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = cluster.dir.path().join("data");
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        let hba = "local all all trust\n\
                   host all postgres 127.0.0.1/32 trust\n\
                   host all all 127.0.0.1/32 scram-sha-256\n";
        let hba_path = data.join("pg_hba.conf");
        std::fs::write(&hba_path, hba).unwrap();
        let options = format!(
            "-k {} -p {} -h 127.0.0.1 -F",
            cluster.dir.path().display(),
            cluster.port
        );
        let log = cluster.dir.path().join("server.log");
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for ScramCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let path = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = command
            .args(["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"])
            .output();
    }
}

fn find_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WRIT_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().expect("PostgreSQL server binaries").1
}

/// Whether `url` accepts a login.
pub async fn can_log_in(url: &str) -> bool {
    match PgConnection::connect(url).await {
        Ok(conn) => {
            let _ = conn.close().await;
            true
        }
        Err(_) => false,
    }
}
