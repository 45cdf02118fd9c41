//! A throwaway PostgreSQL cluster for tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::{HarnessError, free_port};

/// A PostgreSQL cluster in a temporary directory, listening on a loopback port with `trust`
/// authentication. Stopped (immediate mode) and deleted when dropped.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    run_as_postgres: bool,
}

impl PgCluster {
    /// Initialises and starts a new cluster. Takes about a second.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(false)
    }

    /// Like [`PgCluster::start`], but every role except `postgres` must log in over TCP with
    /// a password (SCRAM-SHA-256), so that tests can prove which password works.
    pub fn start_scram() -> Result<Self, HarnessError> {
        Self::start_with(true)
    }

    fn start_with(scram: bool) -> Result<Self, HarnessError> {
        let bin = find_bin_dir()?;
        let run_as_postgres = running_as_root();
        let dir = tempfile::Builder::new().prefix("writ-pg-").tempdir()?;
        if run_as_postgres {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()?;
            if !status.success() {
                return Err(HarnessError::Failed {
                    program: "chown postgres".into(),
                    status: status.to_string(),
                    output: String::new(),
                });
            }
        }
        let data = dir.path().join("data");
        let cluster = Self {
            bin,
            port: free_port()?,
            dir,
            run_as_postgres,
        };
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
                "--no-instructions".as_ref(),
            ],
        )?;
        if scram {
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\n\
                 host all postgres 127.0.0.1/32 trust\n\
                 host all all 127.0.0.1/32 scram-sha-256\n",
            )?;
        }
        cluster.pg_ctl("start", &[])?;
        Ok(cluster)
    }

    /// Runs `pg_ctl ACTION` on the cluster's data directory with its server options, waiting
    /// for it to finish.
    fn pg_ctl(&self, action: &str, extra: &[&str]) -> Result<Output, HarnessError> {
        let data = self.dir.path().join("data");
        let server_options = format!(
            "-k {} -p {} -h 127.0.0.1 -F -c max_connections=200",
            self.dir.path().display(),
            self.port
        );
        let log = self.server_log_path();
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "-D".as_ref(),
            data.as_os_str(),
            "-o".as_ref(),
            server_options.as_ref(),
            "-l".as_ref(),
            log.as_os_str(),
            "-w".as_ref(),
            "-t".as_ref(),
            "60".as_ref(),
        ];
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        args.push(action.as_ref());
        self.run("pg_ctl", &args)
    }

    /// Restarts the server (fast shutdown: open connections are cut, as in a failover), and
    /// waits until it accepts connections again.
    pub fn restart(&self) -> Result<(), HarnessError> {
        self.pg_ctl("restart", &["-m", "fast"]).map(|_| ())
    }

    /// Where the server writes its log (with `log_statement = 'all'`, every statement run).
    pub fn server_log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.server_log_path()).unwrap_or_default()
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, HarnessError> {
        let port = self.port.to_string();
        self.run(
            "createdb",
            &[
                "-h".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                name.as_ref(),
            ],
        )?;
        Ok(self.url(name))
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<Output, HarnessError> {
        let path = self.bin.join(program);
        let mut command = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        command.args(args).current_dir(self.dir.path());
        let output = command.output()?;
        if !output.status.success() {
            return Err(HarnessError::Failed {
                program: format!("{} {:?}", path.display(), args),
                status: output.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        Ok(output)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "stop".as_ref(),
            ],
        );
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Finds PostgreSQL's server binaries: `$WRIT_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`.
fn find_bin_dir() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = std::env::var_os("WRIT_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if Path::new(&dir).join("initdb").exists() {
            return Ok(dir);
        }
    }
    Err(HarnessError::Missing {
        program: "initdb".into(),
        hint: "install PostgreSQL (Debian: apt-get install postgresql) or set WRIT_PG_BIN".into(),
    })
}
