//! The CLI as a client of writ's API: every human action (votes, rollbacks, principals,
//! discovery, rules) is an authenticated call to `writ serve`, which alone holds the ledger's
//! signing key. The server is `--server URL` (default `http://127.0.0.1:8080`); the token is
//! `WRIT_TOKEN`. Errors print the server's problem+json title, detail and fields.

use anyhow::Context as _;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where the server is and who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The writ server.
    #[arg(long, env = "WRIT_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A PEM certificate to trust for an `https://` server (its own, or its CA's), besides
    /// the public roots.
    #[arg(long, env = "WRIT_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// An authenticated API client.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for `args.server` with the token from `WRIT_TOKEN`.
    pub fn from_env(args: &ServerArgs) -> anyhow::Result<Self> {
        let token = std::env::var("WRIT_TOKEN").map_err(|_| {
            anyhow::anyhow!(
                "set WRIT_TOKEN to your API token (an admin makes one with `writ principal add`)"
            )
        })?;
        let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(120));
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{}: not a PEM certificate", path.display()))?;
            http = http.add_root_certificate(certificate);
        }
        let http = http.build().context("cannot build the HTTP client")?;
        Ok(Self {
            base: args.server.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            http,
        })
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(Method::GET, path, None::<&()>).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(Method::DELETE, path, None::<&()>).await
    }

    /// `POST path` with no body.
    pub async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(Method::POST, path, None::<&()>).await
    }

    /// `POST path` with `body` as `content_type`, returning the status and the JSON answer
    /// whatever the status (for callers that report refusals themselves).
    pub async fn post_bytes_answer(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
        let request = self
            .request(Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        let (status, bytes) = self.exchange(request).await?;
        let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if value.is_null() && !status.is_success() {
            anyhow::bail!("{}", problem_text(status, &bytes));
        }
        Ok((status, value))
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        json: Option<&B>,
    ) -> anyhow::Result<T> {
        let mut request = self.request(method.clone(), path);
        if let Some(body) = json {
            request = request.json(body);
        }
        let (status, bytes) = self.exchange(request).await?;
        if !status.is_success() {
            anyhow::bail!("{}", problem_text(status, &bytes));
        }
        let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(body)
            .with_context(|| format!("{method} {path}: unexpected answer from the server"))
    }

    /// A request to `path`, with the token.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends `request`; the status and the whole answer.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<(reqwest::StatusCode, Vec<u8>)> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the writ server at {}", self.base))?;
        let status = response.status();
        let bytes = response.bytes().await.context("cannot read the answer")?;
        Ok((status, bytes.to_vec()))
    }
}

/// A problem+json answer in one line: status, title, detail, fields.
fn problem_text(status: reqwest::StatusCode, body: &[u8]) -> String {
    let Ok(problem) = serde_json::from_slice::<serde_json::Value>(body) else {
        return format!("the server answered {status}");
    };
    let mut text = format!(
        "{} ({})",
        problem["title"].as_str().unwrap_or("error"),
        status.as_u16()
    );
    if let Some(detail) = problem["detail"].as_str() {
        text.push_str(": ");
        text.push_str(detail);
    }
    if let Some(errors) = problem["errors"].as_array() {
        for error in errors {
            let field = error["field"].as_str().unwrap_or("");
            let message = error["message"].as_str().unwrap_or("");
            if !problem["detail"].as_str().unwrap_or("").contains(message) {
                text.push_str(&format!("; {field}: {message}"));
            }
        }
    }
    text
}
