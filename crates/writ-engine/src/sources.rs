//! Findings sources: who may send findings, how they prove it, and how much they are trusted.
//!
//! Each source is a principal configured by the operator with either
//! - a **bearer token**, of which writ keeps only the SHA-256 (`token_sha256`), or
//! - an **HMAC-SHA256 signing secret** read from a file: the sender signs
//!   `<unix seconds>.<body>` and sends `X-Writ-Source`, `X-Writ-Timestamp` and
//!   `X-Writ-Signature: sha256=<hex>`. Signatures older or newer than [`MAX_SKEW`] are refused,
//!   so a captured request cannot be replayed later.
//!
//! Authentication is a pure function of the configured sources, the request's headers and body,
//! and the time (injected). A request that does not authenticate is refused before anything
//! is stored.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use writ_core::finding::Trust;

/// How far a signed request's timestamp may be from now.
pub const MAX_SKEW: SignedDuration = SignedDuration::from_secs(300);

/// A source as configured (`[[sources]]` in writ.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Its name, as recorded in events and seen by policies (`prowler`, `gitleaks-ci`).
    pub name: String,
    /// How much it is trusted.
    pub trust: Trust,
    /// SHA-256 (hex) of its bearer token. Make one with `writ token new`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// A file holding its HMAC signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret_file: Option<PathBuf>,
}

/// An authenticated source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Its name.
    pub name: String,
    /// How much it is trusted.
    pub trust: Trust,
}

#[derive(Clone)]
enum Credential {
    TokenHash([u8; 32]),
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::TokenHash(_) => f.write_str("TokenHash(..)"),
            Credential::Hmac(_) => f.write_str("Hmac(<redacted>)"),
        }
    }
}

/// The configured sources, ready to authenticate requests.
#[derive(Debug, Clone, Default)]
pub struct SourceRegistry {
    sources: Vec<(Source, Credential)>,
}

/// Why the sources could not be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceConfigError {
    /// A source has no credential, or two.
    #[error("source {name:?}: give exactly one of token_sha256 or hmac_secret_file")]
    Credential {
        /// The source.
        name: String,
    },
    /// A token hash is not 64 hex characters.
    #[error("source {name:?}: token_sha256 must be 64 hex characters")]
    BadHash {
        /// The source.
        name: String,
    },
    /// The HMAC secret file could not be read or is too short.
    #[error("source {name:?}: {detail}")]
    Secret {
        /// The source.
        name: String,
        /// What went wrong.
        detail: String,
    },
    /// Two sources share a name.
    #[error("source {name:?} is configured twice")]
    Duplicate {
        /// The name.
        name: String,
    },
}

/// Why a request was not authenticated. Deliberately vague towards the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials were presented.
    #[error(
        "no credentials: send Authorization: Bearer <token>, or X-Writ-Source, X-Writ-Timestamp and X-Writ-Signature"
    )]
    Missing,
    /// Credentials were presented but do not match any source.
    #[error("credentials not accepted")]
    Rejected,
    /// The signature's timestamp is too far from now.
    #[error("signature timestamp outside the allowed window")]
    Stale,
}

/// The headers authentication looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthHeaders<'a> {
    /// `Authorization`.
    pub authorization: Option<&'a str>,
    /// `X-Writ-Source`.
    pub source: Option<&'a str>,
    /// `X-Writ-Timestamp` (unix seconds).
    pub timestamp: Option<&'a str>,
    /// `X-Writ-Signature` (`sha256=<hex>`).
    pub signature: Option<&'a str>,
}

impl SourceRegistry {
    /// Builds the registry, reading HMAC secrets from their files.
    pub fn load(configs: &[SourceConfig]) -> Result<Self, SourceConfigError> {
        let mut sources = Vec::with_capacity(configs.len());
        for config in configs {
            if sources
                .iter()
                .any(|(s, _): &(Source, Credential)| s.name == config.name)
            {
                return Err(SourceConfigError::Duplicate {
                    name: config.name.clone(),
                });
            }
            let credential = match (&config.token_sha256, &config.hmac_secret_file) {
                (Some(hash), None) => {
                    let mut bytes = [0u8; 32];
                    hex::decode_to_slice(hash.trim(), &mut bytes).map_err(|_| {
                        SourceConfigError::BadHash {
                            name: config.name.clone(),
                        }
                    })?;
                    Credential::TokenHash(bytes)
                }
                (None, Some(path)) => Credential::Hmac(read_secret(&config.name, path)?),
                _ => {
                    return Err(SourceConfigError::Credential {
                        name: config.name.clone(),
                    });
                }
            };
            sources.push((
                Source {
                    name: config.name.clone(),
                    trust: config.trust,
                },
                credential,
            ));
        }
        Ok(Self { sources })
    }

    /// Whether any source is configured.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Authenticates a request with `body` at time `now`.
    pub fn authenticate(
        &self,
        headers: AuthHeaders<'_>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Source, AuthError> {
        if let Some(authorization) = headers.authorization {
            let token = authorization
                .strip_prefix("Bearer ")
                .ok_or(AuthError::Rejected)?
                .trim();
            let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            // Compare against every token hash, in constant time each, so timing says nothing.
            let mut found = None;
            for (source, credential) in &self.sources {
                if let Credential::TokenHash(hash) = credential
                    && constant_time_eq(hash, &presented)
                {
                    found = Some(source.clone());
                }
            }
            return found.ok_or(AuthError::Rejected);
        }
        let (Some(name), Some(timestamp), Some(signature)) =
            (headers.source, headers.timestamp, headers.signature)
        else {
            return Err(AuthError::Missing);
        };
        let Some((source, Credential::Hmac(secret))) =
            self.sources.iter().find(|(s, _)| s.name == name)
        else {
            return Err(AuthError::Rejected);
        };
        let seconds: i64 = timestamp.trim().parse().map_err(|_| AuthError::Rejected)?;
        let signed_at = Timestamp::from_second(seconds).map_err(|_| AuthError::Rejected)?;
        if now.duration_since(signed_at).abs() > MAX_SKEW {
            return Err(AuthError::Stale);
        }
        let presented = signature
            .trim()
            .strip_prefix("sha256=")
            .and_then(|hex_part| hex::decode(hex_part).ok())
            .ok_or(AuthError::Rejected)?;
        let mut mac = hmac_for(secret).map_err(|_| AuthError::Rejected)?;
        mac.update(timestamp.trim().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&presented)
            .map_err(|_| AuthError::Rejected)?;
        Ok(source.clone())
    }
}

/// A keyed HMAC. HMAC takes keys of any length, so the error never happens in practice.
fn hmac_for(secret: &[u8]) -> Result<Hmac<Sha256>, hmac::digest::InvalidLength> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret)
}

/// The signature header value a sender computes for `body` at `timestamp` (unix seconds).
pub fn sign_request(
    secret: &[u8],
    timestamp: i64,
    body: &[u8],
) -> Result<String, hmac::digest::InvalidLength> {
    let mut mac = hmac_for(secret)?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// A new random bearer token and the SHA-256 (hex) to configure for it.
// Token generation: a bearer token must come from the OS random source.
#[allow(clippy::disallowed_methods)]
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = format!(
        "writ_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// The SHA-256 (hex) of a bearer token, as configured in `token_sha256`.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

fn read_secret(name: &str, path: &Path) -> Result<Vec<u8>, SourceConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| SourceConfigError::Secret {
        name: name.to_owned(),
        detail: format!("cannot read {}: {err}", path.display()),
    })?;
    let secret = text.trim().as_bytes().to_vec();
    if secret.len() < 32 {
        return Err(SourceConfigError::Secret {
            name: name.to_owned(),
            detail: format!("{} holds fewer than 32 bytes", path.display()),
        });
    }
    Ok(secret)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(dir: &Path) -> SourceRegistry {
        let secret = dir.join("ci.hmac");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef-secret\n").unwrap();
        SourceRegistry::load(&[
            SourceConfig {
                name: "prowler".into(),
                trust: Trust::High,
                token_sha256: Some(token_hash("writ_prowler_token")),
                hmac_secret_file: None,
            },
            SourceConfig {
                name: "gitleaks-ci".into(),
                trust: Trust::Low,
                token_sha256: None,
                hmac_secret_file: Some(secret),
            },
        ])
        .unwrap()
    }

    #[test]
    fn bearer_tokens_and_hmac_signatures_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let sources = registry(dir.path());
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let body = br#"[{"finding":1}]"#;

        let bearer = AuthHeaders {
            authorization: Some("Bearer writ_prowler_token"),
            ..AuthHeaders::default()
        };
        assert_eq!(
            sources.authenticate(bearer, body, now).unwrap(),
            Source {
                name: "prowler".into(),
                trust: Trust::High
            }
        );
        let wrong = AuthHeaders {
            authorization: Some("Bearer nope"),
            ..AuthHeaders::default()
        };
        assert_eq!(
            sources.authenticate(wrong, body, now),
            Err(AuthError::Rejected)
        );
        assert_eq!(
            sources.authenticate(AuthHeaders::default(), body, now),
            Err(AuthError::Missing)
        );

        let secret = b"0123456789abcdef0123456789abcdef-secret";
        let signature = sign_request(secret, 1_800_000_000, body).unwrap();
        let signed = AuthHeaders {
            source: Some("gitleaks-ci"),
            timestamp: Some("1800000000"),
            signature: Some(&signature),
            ..AuthHeaders::default()
        };
        assert_eq!(
            sources.authenticate(signed, body, now).unwrap().trust,
            Trust::Low
        );
        // A changed body, a replay an hour later, another source's name: all refused.
        assert_eq!(
            sources.authenticate(signed, b"[]", now),
            Err(AuthError::Rejected)
        );
        assert_eq!(
            sources.authenticate(signed, body, now + SignedDuration::from_hours(1)),
            Err(AuthError::Stale)
        );
        let other = AuthHeaders {
            source: Some("prowler"),
            ..signed
        };
        assert_eq!(
            sources.authenticate(other, body, now),
            Err(AuthError::Rejected)
        );
    }

    #[test]
    fn configuration_errors_are_named() {
        let err = SourceRegistry::load(&[SourceConfig {
            name: "x".into(),
            trust: Trust::Low,
            token_sha256: None,
            hmac_secret_file: None,
        }])
        .unwrap_err();
        assert_eq!(err, SourceConfigError::Credential { name: "x".into() });
        let (token, hash) = new_token().unwrap();
        assert!(token.starts_with("writ_"));
        assert_eq!(hash, token_hash(&token));
    }
}
