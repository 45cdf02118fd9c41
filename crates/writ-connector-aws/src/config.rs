//! Credentials, region and endpoint: from explicit configuration or the standard environment.
//!
//! Secret material lives in [`SecretString`] (from the `secrecy` crate): its `Debug` is
//! redacted, it has no `Display`, and it is zeroed on drop; nothing here logs it. The standard
//! variables are `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`
//! (falling back to `AWS_DEFAULT_REGION`) and `AWS_ENDPOINT_URL` (one endpoint for every service,
//! as with moto or LocalStack).

use std::fmt;
use std::time::Duration;

pub use secrecy::SecretString;
use url::Url;

use crate::error::AwsError;

/// The AWS services this crate talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// IAM (Query protocol, global endpoint, signed for `us-east-1`).
    Iam,
    /// STS (Query protocol), used to learn the account id.
    Sts,
    /// Secrets Manager (awsJson 1.1).
    SecretsManager,
    /// S3 (REST, path-style), where ledger checkpoints are published under Object Lock.
    S3,
}

impl Service {
    /// The SigV4 signing name (and endpoint prefix).
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::Iam => "iam",
            Service::Sts => "sts",
            Service::SecretsManager => "secretsmanager",
            Service::S3 => "s3",
        }
    }
}

/// How to reach and authenticate to AWS (or an emulator such as moto).
#[derive(Clone)]
pub struct AwsConfig {
    /// The access key id (not secret on its own, but only its prefix is ever printed).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// A session token for temporary credentials.
    pub session_token: Option<SecretString>,
    /// The region (`us-east-1`, ...). IAM is global and is always signed for `us-east-1`.
    pub region: String,
    /// One endpoint for every service (`http://127.0.0.1:5000` for moto); `None` for AWS.
    pub endpoint: Option<Url>,
    /// The account id; when `None` the connectors ask STS `GetCallerIdentity`.
    pub account_id: Option<String>,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

impl fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix: String = self.access_key_id.chars().take(4).collect();
        f.debug_struct("AwsConfig")
            .field("access_key_id", &format_args!("{prefix}…"))
            .field("secret_access_key", &self.secret_access_key)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_ref().map(Url::as_str))
            .field("account_id", &self.account_id)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AwsConfig {
    /// Explicit static credentials for `region`, against real AWS.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: SecretString::from(secret_access_key.into()),
            session_token: None,
            region: region.into(),
            endpoint: None,
            account_id: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Adds a session token.
    #[must_use]
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(SecretString::from(token.into()));
        self
    }

    /// Sends every request to `endpoint` instead of AWS.
    pub fn with_endpoint(mut self, endpoint: &str) -> Result<Self, AwsError> {
        self.endpoint = Some(parse_endpoint(endpoint)?);
        Ok(self)
    }

    /// Sets the account id, so no `GetCallerIdentity` call is needed.
    #[must_use]
    pub fn with_account_id(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = Some(account_id.into());
        self
    }

    /// Sets the per-request timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads the standard environment variables.
    pub fn from_env() -> Result<Self, AwsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the standard variables through `lookup` (for tests, or another source).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AwsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let access_key_id = get("AWS_ACCESS_KEY_ID")
            .ok_or(AwsError::Config("AWS_ACCESS_KEY_ID is not set".into()))?;
        let secret = get("AWS_SECRET_ACCESS_KEY")
            .ok_or(AwsError::Config("AWS_SECRET_ACCESS_KEY is not set".into()))?;
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let mut config = Self::new(access_key_id, secret, region);
        if let Some(token) = get("AWS_SESSION_TOKEN") {
            config = config.with_session_token(token);
        }
        if let Some(endpoint) = get("AWS_ENDPOINT_URL") {
            config = config.with_endpoint(&endpoint)?;
        }
        Ok(config)
    }

    /// The endpoint for `service`.
    pub fn endpoint_for(&self, service: Service) -> Result<Url, AwsError> {
        if let Some(endpoint) = &self.endpoint {
            return Ok(endpoint.clone());
        }
        let url = match service {
            Service::Iam => "https://iam.amazonaws.com/".to_owned(),
            other => format!(
                "https://{}.{}.amazonaws.com/",
                other.signing_name(),
                self.region
            ),
        };
        parse_endpoint(&url)
    }

    /// The region to sign requests to `service` for.
    pub fn signing_region(&self, service: Service) -> &str {
        match service {
            Service::Iam => "us-east-1",
            _ => &self.region,
        }
    }
}

fn parse_endpoint(endpoint: &str) -> Result<Url, AwsError> {
    let url = Url::parse(endpoint)
        .map_err(|e| AwsError::Config(format!("invalid endpoint {endpoint:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(AwsError::Config(format!(
            "invalid endpoint {endpoint:?}: need http(s)://host[:port]"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn debug_redacts_credentials() {
        let config = AwsConfig::new("AKIAEXAMPLEEXAMPLE", "very-secret-key", "eu-west-1")
            .with_session_token("session-secret");
        let text = format!("{config:?}");
        assert!(!text.contains("very-secret-key"), "{text}");
        assert!(!text.contains("session-secret"), "{text}");
        assert!(!text.contains("AKIAEXAMPLEEXAMPLE"), "{text}");
        assert!(text.contains("eu-west-1"));
        let secret = SecretString::from("very-secret-key");
        assert!(!format!("{secret:?}").contains("very-secret-key"));
    }

    #[test]
    fn reads_the_standard_environment() {
        let env = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("AKID".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_owned()),
            "AWS_SESSION_TOKEN" => Some("tok".to_owned()),
            "AWS_DEFAULT_REGION" => Some("eu-central-1".to_owned()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:5000".to_owned()),
            _ => None,
        };
        let config = AwsConfig::from_lookup(env).unwrap();
        assert_eq!(config.region, "eu-central-1");
        assert_eq!(
            config
                .session_token
                .as_ref()
                .map(ExposeSecret::expose_secret),
            Some("tok")
        );
        assert_eq!(
            config
                .endpoint_for(Service::SecretsManager)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:5000/"
        );
        assert_eq!(config.signing_region(Service::Iam), "us-east-1");
        assert!(AwsConfig::from_lookup(|_| None).is_err());
    }

    #[test]
    fn default_endpoints_are_aws() {
        let config = AwsConfig::new("a", "b", "eu-west-1");
        assert_eq!(
            config.endpoint_for(Service::Iam).unwrap().as_str(),
            "https://iam.amazonaws.com/"
        );
        assert_eq!(
            config
                .endpoint_for(Service::SecretsManager)
                .unwrap()
                .as_str(),
            "https://secretsmanager.eu-west-1.amazonaws.com/"
        );
        assert!(
            AwsConfig::new("a", "b", "r")
                .with_endpoint("ftp://x")
                .is_err()
        );
    }
}
