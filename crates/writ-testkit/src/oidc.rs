//! A throwaway OAuth 2.0 authorization server for tests: the real `oidc-provider` from npm
//! (`oidc/server.mjs`, pinned by `oidc/package-lock.json`), run by Node on loopback, with
//! dynamic client registration (RFC 7591) and management (RFC 7592), client credentials,
//! introspection (RFC 7662) and revocation (RFC 7009). State lives in memory; the server exits
//! when its stdin closes, so it never outlives the test process.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{HarnessError, free_port};

/// The bearer token the server requires for `POST /reg`.
pub const INITIAL_ACCESS_TOKEN: &str = "writ-test-initial-access-token";

/// The scopes the server offers besides `openid`.
pub const SCOPES: &str = "api:read api:write tools:search tools:deploy";

/// A static client for [`OidcProvider::start_with_sign_in`].
#[derive(Debug, Clone, Copy)]
pub struct SignInClient<'a> {
    /// Its id.
    pub client_id: &'a str,
    /// Its secret.
    pub client_secret: &'a str,
    /// Its one redirect URI.
    pub redirect_uri: &'a str,
    /// The `groups` claim each login gets (a JSON object: login -> teams).
    pub groups: &'a str,
}

/// An `oidc-provider` on 127.0.0.1 and a free port; killed on drop.
#[derive(Debug)]
pub struct OidcProvider {
    child: Option<Child>,
    /// Held open: the server exits when it closes.
    _stdin: Option<ChildStdin>,
    port: u16,
}

/// The directory holding `server.mjs` and its `node_modules`.
pub fn oidc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

impl OidcProvider {
    /// Starts the server (`node oidc/server.mjs`) and waits for its readiness line. Needs
    /// Node.js and `npm ci` run in `oidc/` (scripts/test does it).
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with_sign_in(None)
    }

    /// Starts the server with a static client people sign in to through the authorization
    /// code flow (the library's development login pages: any login, any password; the ID
    /// token's `preferred_username` is the login).
    pub fn start_with_sign_in(client: Option<SignInClient<'_>>) -> Result<Self, HarnessError> {
        let dir = oidc_dir();
        if !dir.join("node_modules/oidc-provider").is_dir() {
            return Err(HarnessError::Missing {
                program: "oidc-provider".into(),
                hint: format!("run `npm ci` in {} (scripts/test does it)", dir.display()),
            });
        }
        let port = free_port()?;
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("INITIAL_ACCESS_TOKEN", INITIAL_ACCESS_TOKEN)
            .env("SCOPES", SCOPES)
            .env(
                "SIGN_IN_CLIENTS",
                client.map_or_else(String::new, |c| {
                    format!(
                        r#"[{{"client_id":"{}","client_secret":"{}","redirect_uris":["{}"],"grant_types":["authorization_code"],"response_types":["code"]}}]"#,
                        c.client_id, c.client_secret, c.redirect_uri
                    )
                }),
            )
            .env("SIGN_IN_GROUPS", client.map_or("{}", |c| c.groups))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => HarnessError::Missing {
                    program: "node".into(),
                    hint: "install Node.js (Debian: nodejs)".into(),
                },
                _ => HarnessError::Io(err),
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(stdout) = stdout {
                let _ = BufReader::new(stdout).read_line(&mut line);
            }
            let _ = tx.send(line);
        });
        let mut server = OidcProvider {
            child: Some(child),
            _stdin: stdin,
            port,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("listening ") => Ok(server),
            Ok(line) => {
                server.stop();
                Err(HarnessError::Failed {
                    program: "node oidc/server.mjs".into(),
                    status: "not ready".into(),
                    output: line,
                })
            }
            Err(_) => {
                server.stop();
                Err(HarnessError::Failed {
                    program: "node oidc/server.mjs".into(),
                    status: "not ready after 30 s".into(),
                    output: String::new(),
                })
            }
        }
    }

    /// The issuer, `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server now.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}
