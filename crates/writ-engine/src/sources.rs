//! Findings sources: who may send findings, how they prove it, and how much they are trusted.
//!
//! Each source is a principal configured by the operator with either
//! - a **bearer token**, of which writ keeps only the SHA-256 (`token_sha256`), or
//! - an **HMAC-SHA256 signing secret** read from a file (`hmac_secret_file`). The sender sends
//!   `X-Writ-Source: <name>`, `X-Writ-Timestamp: <unix seconds>` and
//!   `X-Writ-Signature: v2=<hex HMAC-SHA256>` over exactly these seven lines, joined by `\n`
//!   (no trailing newline):
//!
//!   ```text
//!   writ-hmac-v2
//!   <METHOD, upper case>
//!   <path, as sent>
//!   <query string as sent, without '?'; empty when none>
//!   <X-Writ-Timestamp, as sent>
//!   <Idempotency-Key header, as sent; empty when none>
//!   <SHA-256 of the body, lower-case hex>
//!   ```
//!
//!   Signatures whose timestamp is more than [`MAX_SKEW`] from now are refused, and a
//!   [`ReplayCache`] refuses a signature seen before within that window, so a captured request
//!   cannot be sent again, to this path or another, with another body or key.
//!
//! Authentication is a pure function of the configured sources, the request and the time
//! (injected); the replay cache is the one piece of memory. A request that does not
//! authenticate is refused before anything is stored.

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
    /// A bearer token: its digest is the source principal's token, checked by
    /// [`crate::principals::Principals::authenticate`].
    Token,
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token => f.write_str("Token"),
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
    /// The signature is not of the scheme writ checks.
    #[error("X-Writ-Signature must be v2=<hex> (the v1 sha256= scheme is not accepted)")]
    Scheme,
    /// The signature was used before.
    #[error("this signature was already used; sign every request anew")]
    Replayed,
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
    /// `X-Writ-Signature` (`v2=<hex>`).
    pub signature: Option<&'a str>,
}

/// What an HMAC signature covers besides the timestamp: the request line and the
/// idempotency key.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignedRequest<'a> {
    /// The method (`POST`).
    pub method: &'a str,
    /// The path, as sent (`/v1/findings`).
    pub path: &'a str,
    /// The query string as sent, without `?` (empty when none).
    pub query: &'a str,
    /// The `Idempotency-Key` header (empty when none).
    pub idempotency_key: &'a str,
}

/// A signature whose headers check out, before the body is read: its source, its timestamp,
/// and the signature bytes to verify once the body is there.
#[derive(Clone)]
pub struct PendingSignature {
    source: Source,
    secret: Vec<u8>,
    timestamp: String,
    signed_at: Timestamp,
    signature: Vec<u8>,
}

impl std::fmt::Debug for PendingSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignature")
            .field("source", &self.source)
            .field("timestamp", &self.timestamp)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl PendingSignature {
    /// The source it names.
    pub fn source(&self) -> &Source {
        &self.source
    }
}

/// The signatures seen within the replay window. Each server process keeps its own; a
/// request replayed to another replica within the window is refused there only if it
/// reached that one first, and the ledger's idempotency keys still keep it from recording a
/// finding twice.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Timestamp>>,
}

impl ReplayCache {
    /// Records `signature` (signed at `signed_at`) as used at `now`. False when it was
    /// already used. Entries older than the window are forgotten as new ones arrive.
    pub fn first_use(&self, signature: &[u8], signed_at: Timestamp, now: Timestamp) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|_, at| now.duration_since(*at).abs() <= MAX_SKEW);
        if seen.contains_key(signature) {
            return false;
        }
        seen.insert(signature.to_vec(), signed_at);
        true
    }
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
                    Credential::Token
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

    /// Checks an HMAC-signed request's headers before its body is read: the source is known
    /// and signs with a secret, the timestamp is fresh, the signature is `v2=<hex>`.
    pub fn check_signature_headers(
        &self,
        headers: AuthHeaders<'_>,
        now: Timestamp,
    ) -> Result<PendingSignature, AuthError> {
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
        let signature = signature
            .trim()
            .strip_prefix("v2=")
            .ok_or(AuthError::Scheme)
            .and_then(|hex_part| hex::decode(hex_part).map_err(|_| AuthError::Rejected))?;
        Ok(PendingSignature {
            source: source.clone(),
            secret: secret.clone(),
            timestamp: timestamp.trim().to_owned(),
            signed_at,
            signature,
        })
    }

    /// Verifies a pending signature over `request` and `body`, and that it was not used
    /// before (`replays`).
    pub fn verify_signature(
        pending: PendingSignature,
        request: SignedRequest<'_>,
        body: &[u8],
        replays: &ReplayCache,
        now: Timestamp,
    ) -> Result<Source, AuthError> {
        let mut mac = hmac_for(&pending.secret).map_err(|_| AuthError::Rejected)?;
        mac.update(string_to_sign(&pending.timestamp, request, body).as_bytes());
        mac.verify_slice(&pending.signature)
            .map_err(|_| AuthError::Rejected)?;
        if !replays.first_use(&pending.signature, pending.signed_at, now) {
            return Err(AuthError::Replayed);
        }
        Ok(pending.source)
    }
}

/// The exact text a v2 signature covers (see the module documentation).
pub fn string_to_sign(timestamp: &str, request: SignedRequest<'_>, body: &[u8]) -> String {
    [
        "writ-hmac-v2",
        &request.method.to_ascii_uppercase(),
        request.path,
        request.query,
        timestamp,
        request.idempotency_key,
        &hex::encode(Sha256::digest(body)),
    ]
    .join("\n")
}

/// A keyed HMAC. HMAC takes keys of any length, so the error never happens in practice.
fn hmac_for(secret: &[u8]) -> Result<Hmac<Sha256>, hmac::digest::InvalidLength> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret)
}

/// The `X-Writ-Signature` value a sender computes for `request` with `body` at `timestamp`
/// (unix seconds).
pub fn sign_request(
    secret: &[u8],
    timestamp: i64,
    request: SignedRequest<'_>,
    body: &[u8],
) -> Result<String, hmac::digest::InvalidLength> {
    let mut mac = hmac_for(secret)?;
    mac.update(string_to_sign(&timestamp.to_string(), request, body).as_bytes());
    Ok(format!("v2={}", hex::encode(mac.finalize().into_bytes())))
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

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-secret";

    fn request(query: &str) -> SignedRequest<'_> {
        SignedRequest {
            method: "POST",
            path: "/v1/findings",
            query,
            idempotency_key: "k-1",
        }
    }

    #[test]
    fn the_string_to_sign_is_exactly_seven_lines() {
        assert_eq!(
            string_to_sign("1800000000", request("format=prowler"), b"{}"),
            "writ-hmac-v2\nPOST\n/v1/findings\nformat=prowler\n1800000000\nk-1\n\
             44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn v2_signatures_cover_the_request_and_are_used_once() {
        let dir = tempfile::tempdir().unwrap();
        let sources = registry(dir.path());
        let replays = ReplayCache::default();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let body = br#"[{"finding":1}]"#;
        let signature = sign_request(SECRET, 1_800_000_000, request(""), body).unwrap();
        let signed = AuthHeaders {
            source: Some("gitleaks-ci"),
            timestamp: Some("1800000000"),
            signature: Some(&signature),
            ..AuthHeaders::default()
        };
        let verify = |req: SignedRequest<'_>, body: &[u8], at: Timestamp| {
            let pending = sources.check_signature_headers(signed, at)?;
            SourceRegistry::verify_signature(pending, req, body, &replays, at)
        };
        // Another body, query, key, path or method: refused (and not remembered).
        assert_eq!(verify(request(""), b"[]", now), Err(AuthError::Rejected));
        assert_eq!(
            verify(request("format=ocsf"), body, now),
            Err(AuthError::Rejected)
        );
        for changed in [
            SignedRequest {
                idempotency_key: "k-2",
                ..request("")
            },
            SignedRequest {
                path: "/v1/other",
                ..request("")
            },
            SignedRequest {
                method: "PUT",
                ..request("")
            },
        ] {
            assert_eq!(verify(changed, body, now), Err(AuthError::Rejected));
        }
        // The request as signed: accepted once, then refused as a replay.
        assert_eq!(verify(request(""), body, now).unwrap().trust, Trust::Low);
        assert_eq!(verify(request(""), body, now), Err(AuthError::Replayed));
        // An hour later: stale before the body is even read.
        assert_eq!(
            sources
                .check_signature_headers(signed, now + SignedDuration::from_hours(1))
                .unwrap_err(),
            AuthError::Stale
        );
        // The old scheme, a bearer-token source's name, a missing header: refused.
        let v1 = AuthHeaders {
            signature: Some("sha256=00"),
            ..signed
        };
        assert_eq!(
            sources.check_signature_headers(v1, now).unwrap_err(),
            AuthError::Scheme
        );
        let other = AuthHeaders {
            source: Some("prowler"),
            ..signed
        };
        assert_eq!(
            sources.check_signature_headers(other, now).unwrap_err(),
            AuthError::Rejected
        );
        let missing = AuthHeaders {
            timestamp: None,
            ..signed
        };
        assert_eq!(
            sources.check_signature_headers(missing, now).unwrap_err(),
            AuthError::Missing
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
