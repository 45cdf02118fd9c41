//! A throwaway moto server (AWS IAM, STS, Secrets Manager emulator) for tests.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{HarnessError, free_port};

/// A moto server on 127.0.0.1 and a free port, with fresh state; killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    child: Option<Child>,
    port: u16,
}

impl MotoServer {
    /// Starts `moto_server` from the test venv (`$WRIT_TEST_VENV`, else `.venv` at the
    /// workspace root), waits until it answers, and resets its state.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with_env(&[])
    }

    /// Like [`MotoServer::start`], and moto writes every request it receives, as one JSON
    /// object per line, to `path` (moto's recorder): a record of what the target was asked to
    /// do, to count calls against.
    pub fn start_recording(path: &std::path::Path) -> Result<Self, HarnessError> {
        let path = path.display().to_string();
        Self::start_with_env(&[
            ("MOTO_ENABLE_RECORDING", "true"),
            ("MOTO_RECORDER_FILEPATH", &path),
        ])
    }

    fn start_with_env(env: &[(&str, &str)]) -> Result<Self, HarnessError> {
        let bin = moto_binary()?;
        let mut last = String::new();
        for _attempt in 0..3 {
            let port = free_port()?;
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                // moto 5 only knows AWS-managed policies (AdministratorAccess, ...) with this.
                .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let mut server = MotoServer {
                child: Some(child),
                port,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Some(status) = server
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    last = format!("moto_server exited with {status}");
                    break;
                }
                match server.reset() {
                    Ok(()) => return Ok(server),
                    Err(err) => last = err.to_string(),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            server.stop();
        }
        Err(HarnessError::Failed {
            program: bin.display().to_string(),
            status: "not ready".into(),
            output: last,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Clears every resource (`POST /moto-api/reset`).
    pub fn reset(&self) -> Result<(), HarnessError> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "POST /moto-api/reset HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        if response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(HarnessError::Failed {
                program: "moto reset".into(),
                status: response.lines().next().unwrap_or("").to_owned(),
                output: String::new(),
            })
        }
    }

    /// Kills the server now (to test what happens when the target goes away).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn moto_binary() -> Result<PathBuf, HarnessError> {
    venv_program("moto_server")
}

/// A program from the Python test venv (`$WRIT_TEST_VENV`, else `.venv` at the workspace
/// root) that `scripts/test` makes from `requirements-test.txt`.
pub fn venv_program(name: &str) -> Result<PathBuf, HarnessError> {
    let venv = std::env::var_os("WRIT_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    let bin = venv.join("bin").join(name);
    if bin.exists() {
        Ok(bin)
    } else {
        Err(HarnessError::Missing {
            program: bin.display().to_string(),
            hint: "run scripts/test (it creates .venv from requirements-test.txt) or set WRIT_TEST_VENV"
                .into(),
        })
    }
}
