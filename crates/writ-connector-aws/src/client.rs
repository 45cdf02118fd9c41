//! A minimal signed AWS client: the Query protocol (IAM, STS) and awsJson 1.1 (Secrets
//! Manager) over `reqwest`, signed with [`crate::sigv4`].
//!
//! It logs (at `debug`) the service, action and HTTP status of each call, never a body, a
//! header or a credential.

use reqwest::header::{CONTENT_TYPE, HOST};
use secrecy::ExposeSecret;

use crate::config::{AwsConfig, Service};
use crate::error::AwsError;
use crate::sigv4::{self, SignableRequest, SigningKey, uri_encode};
use crate::xml;

/// A signed HTTP client for one set of credentials.
#[derive(Debug, Clone)]
pub struct AwsClient {
    http: reqwest::Client,
    config: AwsConfig,
}

pub(crate) struct RawResponse {
    pub(crate) status: u16,
    error_type_header: Option<String>,
    pub(crate) body: String,
    /// The response headers.
    pub(crate) headers: reqwest::header::HeaderMap,
}

impl AwsClient {
    /// Builds a client. Fails only if the TLS stack cannot be set up.
    pub fn new(config: AwsConfig) -> Result<Self, AwsError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| AwsError::Config(format!("HTTP client: {e}")))?;
        Ok(Self { http, config })
    }

    /// The configuration.
    pub fn config(&self) -> &AwsConfig {
        &self.config
    }

    /// The account id: from the configuration, else STS `GetCallerIdentity`.
    pub async fn account_id(&self) -> Result<String, AwsError> {
        if let Some(id) = &self.config.account_id {
            return Ok(id.clone());
        }
        let body = self.query(Service::Sts, "GetCallerIdentity", &[]).await?;
        let doc = xml::parse(&body)?;
        xml::find_text(doc.root(), "Account")
            .ok_or_else(|| AwsError::Decode("GetCallerIdentity without Account".into()))
    }

    /// Calls a Query-protocol `action` (IAM or STS) with form parameters and returns the XML
    /// body of a successful answer.
    pub async fn query(
        &self,
        service: Service,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, AwsError> {
        let version = match service {
            Service::Iam => "2010-05-08",
            Service::Sts => "2011-06-15",
            Service::SecretsManager | Service::S3 => {
                return Err(AwsError::Config(format!(
                    "{} does not speak the Query protocol",
                    service.signing_name()
                )));
            }
        };
        let mut body = format!("Action={}&Version={version}", uri_encode(action));
        for (k, v) in params {
            body.push('&');
            body.push_str(&uri_encode(k));
            body.push('=');
            body.push_str(&uri_encode(v));
        }
        let raw = self
            .send(
                service,
                action,
                vec![(
                    CONTENT_TYPE.as_str().to_owned(),
                    "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
                )],
                body.into_bytes(),
            )
            .await?;
        if (200..300).contains(&raw.status) {
            return Ok(raw.body);
        }
        let (code, message) = match xml::parse(&raw.body) {
            Ok(doc) => (
                xml::find_text(doc.root(), "Code"),
                xml::find_text(doc.root(), "Message"),
            ),
            Err(_) => (None, None),
        };
        Err(AwsError::Service {
            status: raw.status,
            code: code
                .or(raw.error_type_header)
                .unwrap_or_else(|| format!("HTTP{}", raw.status)),
            message: message.unwrap_or_else(|| truncate(&raw.body)),
        })
    }

    /// Calls an awsJson 1.1 operation (`target` like `secretsmanager.DescribeSecret`).
    pub async fn json(
        &self,
        service: Service,
        target: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, AwsError> {
        let bytes = serde_json::to_vec(body).map_err(|e| AwsError::Decode(e.to_string()))?;
        let raw = self
            .send(
                service,
                target,
                vec![
                    (
                        CONTENT_TYPE.as_str().to_owned(),
                        "application/x-amz-json-1.1".to_owned(),
                    ),
                    ("x-amz-target".to_owned(), target.to_owned()),
                ],
                bytes,
            )
            .await?;
        let parsed: Option<serde_json::Value> = if raw.body.trim().is_empty() {
            Some(serde_json::Value::Object(serde_json::Map::new()))
        } else {
            serde_json::from_str(&raw.body).ok()
        };
        if (200..300).contains(&raw.status) {
            return parsed.ok_or_else(|| AwsError::Decode(format!("{target}: body is not JSON")));
        }
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let code = field("__type")
            .or(raw.error_type_header)
            .map(|c| clean_error_type(&c))
            .unwrap_or_else(|| format!("HTTP{}", raw.status));
        let message = field("message")
            .or_else(|| field("Message"))
            .unwrap_or_else(|| truncate(&raw.body));
        Err(AwsError::Service {
            status: raw.status,
            code,
            message,
        })
    }

    async fn send(
        &self,
        service: Service,
        action: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<RawResponse, AwsError> {
        self.request(service, "POST", None, &[], action, headers, body)
            .await
    }

    /// Sends a signed `method` request to `service`: at `path` under the endpoint (already
    /// URI-encoded, starting with `/`; `None`: the endpoint itself) with `query`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn request(
        &self,
        service: Service,
        method: &str,
        path: Option<&str>,
        query: &[(String, String)],
        action: &str,
        mut headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<RawResponse, AwsError> {
        let mut url = self.config.endpoint_for(service)?;
        if let Some(path) = path {
            let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
            url.set_path(&joined);
        }
        if !query.is_empty() {
            let encoded: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    // A subresource (`?retention`) is sent bare; it is signed as `retention=`.
                    if v.is_empty() {
                        uri_encode(k)
                    } else {
                        format!("{}={}", uri_encode(k), uri_encode(v))
                    }
                })
                .collect();
            url.set_query(Some(&encoded.join("&")));
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(AwsError::Config(format!("endpoint {url} has no host"))),
        };
        headers.push((HOST.as_str().to_owned(), host));
        let key = SigningKey {
            access_key_id: &self.config.access_key_id,
            secret_access_key: self.config.secret_access_key.expose_secret(),
            session_token: self
                .config
                .session_token
                .as_ref()
                .map(ExposeSecret::expose_secret),
        };
        // SigV4 signs the real current time, which AWS checks against its own clock (5 minute
        // skew); a test clock would only make the target refuse the request.
        #[allow(clippy::disallowed_methods)]
        let amz_date = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let signed = sigv4::sign(
            &SignableRequest {
                method,
                path: url.path(),
                query,
                headers: &headers,
                body: &body,
            },
            key,
            self.config.signing_region(service),
            service.signing_name(),
            &amz_date,
        );
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| AwsError::Config(format!("bad HTTP method {method}")))?;
        let mut request = self.http.request(method, url.clone());
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request = request
            .header("x-amz-date", signed.amz_date)
            .header("authorization", signed.authorization);
        if let Some(token) = signed.security_token {
            request = request.header("x-amz-security-token", token);
        }
        let response = request.body(body).send().await.map_err(|e| {
            // reqwest's message names the URL, never headers or the body.
            AwsError::Transport(format!("{} {action}: {e}", service.signing_name()))
        })?;
        let status = response.status().as_u16();
        tracing::debug!(service = service.signing_name(), action, status, "aws call");
        let response_headers = response.headers().clone();
        let error_type_header = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.map_err(|e| {
            AwsError::Transport(format!(
                "{} {action}: reading the response: {e}",
                service.signing_name()
            ))
        })?;
        Ok(RawResponse {
            status,
            error_type_header,
            body,
            headers: response_headers,
        })
    }
}

/// `com.amazonaws.x#ResourceNotFoundException` or `ResourceNotFoundException:http://..` to the
/// bare code.
fn clean_error_type(raw: &str) -> String {
    let no_suffix = raw.split(':').next().unwrap_or(raw);
    no_suffix.rsplit('#').next().unwrap_or(no_suffix).to_owned()
}

fn truncate(body: &str) -> String {
    body.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_error_types() {
        assert_eq!(
            clean_error_type("com.amazonaws.secretsmanager#ResourceNotFoundException"),
            "ResourceNotFoundException"
        );
        assert_eq!(
            clean_error_type("ResourceNotFoundException:http://internal.amazon.com/"),
            "ResourceNotFoundException"
        );
        assert_eq!(clean_error_type("Throttling"), "Throttling");
    }
}
