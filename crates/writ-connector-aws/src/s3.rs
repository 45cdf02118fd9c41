//! S3, for what publishing ledger checkpoints needs and no more: write an object once, under
//! Object Lock in compliance mode (no one, the root account included, can delete or overwrite
//! it before its retention date), read it back, and check that a bucket has Object Lock on.
//!
//! Requests are path-style (`<endpoint>/<bucket>/<key>`), signed with SigV4 with the payload's
//! SHA-256; a write carries `If-None-Match: *`, so an existing object is never replaced (S3
//! answers 412), and its SHA-256 checksum, which Object Lock uploads require. Bucket names and
//! keys are limited to characters that need no URI encoding (see [`check_name`]).

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::client::AwsClient;
use crate::config::Service;
use crate::error::AwsError;
use crate::xml;

/// What writing an object once came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOnce {
    /// The object was created.
    Created,
    /// An object of that key already exists; it was not touched.
    Exists,
}

/// An S3 client for one set of credentials.
#[derive(Debug, Clone)]
pub struct S3 {
    client: AwsClient,
}

/// Refuses a bucket name or key with characters outside `[A-Za-z0-9._/-]` (and an empty one,
/// or one starting with `/`): what S3 accepts without URI encoding, which keeps the signed
/// path and the sent path the same.
pub fn check_name(what: &str, name: &str) -> Result<(), AwsError> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(AwsError::Config(format!(
            "S3 {what} {name:?} must be letters, digits, '.', '_', '-' and '/'"
        )))
    }
}

/// The payload hash SigV4 signs for S3 (every request).
fn payload_hash(body: &[u8]) -> (String, String) {
    (
        "x-amz-content-sha256".to_owned(),
        hex::encode(Sha256::digest(body)),
    )
}

/// The SHA-256 checksum an upload under Object Lock must carry.
fn checksum_headers(body: &[u8]) -> [(String, String); 2] {
    [
        (
            "x-amz-sdk-checksum-algorithm".to_owned(),
            "SHA256".to_owned(),
        ),
        (
            "x-amz-checksum-sha256".to_owned(),
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body)),
        ),
    ]
}

fn service_error(action: &str, status: u16, body: &str) -> AwsError {
    let (code, message) = match xml::parse(body) {
        Ok(doc) => (
            xml::find_text(doc.root(), "Code"),
            xml::find_text(doc.root(), "Message"),
        ),
        Err(_) => (None, None),
    };
    AwsError::Service {
        status,
        code: code.unwrap_or_else(|| format!("HTTP{status}")),
        message: message.unwrap_or_else(|| format!("{action} failed")),
    }
}

impl S3 {
    /// A client on `client`'s credentials and endpoint.
    pub fn new(client: AwsClient) -> Self {
        Self { client }
    }

    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        method: &str,
        bucket: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        action: &str,
        mut headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(u16, String, reqwest::header::HeaderMap), AwsError> {
        check_name("bucket", bucket)?;
        let path = match key {
            Some(key) => {
                check_name("key", key)?;
                format!("/{bucket}/{key}")
            }
            None => format!("/{bucket}"),
        };
        headers.push(payload_hash(&body));
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let raw = self
            .client
            .request(
                Service::S3,
                method,
                Some(&path),
                &query,
                action,
                headers,
                body,
            )
            .await?;
        Ok((raw.status, raw.body, raw.headers))
    }

    /// Creates `bucket` with Object Lock enabled (which also turns versioning on).
    pub async fn create_locked_bucket(&self, bucket: &str) -> Result<(), AwsError> {
        let (status, body, _) = self
            .call(
                "PUT",
                bucket,
                None,
                &[],
                "CreateBucket",
                vec![(
                    "x-amz-bucket-object-lock-enabled".to_owned(),
                    "true".to_owned(),
                )],
                Vec::new(),
            )
            .await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(service_error("CreateBucket", status, &body))
        }
    }

    /// Whether `bucket` has Object Lock enabled.
    pub async fn object_lock_enabled(&self, bucket: &str) -> Result<bool, AwsError> {
        let (status, body, _) = self
            .call(
                "GET",
                bucket,
                None,
                &[("object-lock", "")],
                "GetObjectLockConfiguration",
                Vec::new(),
                Vec::new(),
            )
            .await?;
        match status {
            200..=299 => {
                let doc = xml::parse(&body)?;
                Ok(xml::find_text(doc.root(), "ObjectLockEnabled").as_deref() == Some("Enabled"))
            }
            404 => match service_error("GetObjectLockConfiguration", status, &body) {
                AwsError::Service { code, .. }
                    if code == "ObjectLockConfigurationNotFoundError" =>
                {
                    Ok(false)
                }
                other => Err(other),
            },
            _ => Err(service_error("GetObjectLockConfiguration", status, &body)),
        }
    }

    /// Writes `body` to `bucket/key` unless an object of that key exists, retained in
    /// compliance mode until `retain_until`.
    pub async fn put_locked_once(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        retain_until: jiff::Timestamp,
    ) -> Result<PutOnce, AwsError> {
        let mut headers = checksum_headers(body).to_vec();
        headers.extend([
            (
                "content-type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            ),
            ("if-none-match".to_owned(), "*".to_owned()),
            ("x-amz-object-lock-mode".to_owned(), "COMPLIANCE".to_owned()),
            (
                "x-amz-object-lock-retain-until-date".to_owned(),
                retain_until.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ),
        ]);
        let (status, text, _) = self
            .call(
                "PUT",
                bucket,
                Some(key),
                &[],
                "PutObject",
                headers,
                body.to_vec(),
            )
            .await?;
        match status {
            200..=299 => Ok(PutOnce::Created),
            412 => Ok(PutOnce::Exists),
            _ => Err(service_error("PutObject", status, &text)),
        }
    }

    /// The object `bucket/key`, if it exists.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<String>, AwsError> {
        let (status, body, _) = self
            .call(
                "GET",
                bucket,
                Some(key),
                &[],
                "GetObject",
                Vec::new(),
                Vec::new(),
            )
            .await?;
        match status {
            200..=299 => Ok(Some(body)),
            404 => Ok(None),
            _ => Err(service_error("GetObject", status, &body)),
        }
    }

    /// The retention of `bucket/key`: its mode and retain-until date, as S3 reports them on
    /// the object (`HeadObject`).
    pub async fn retention(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(String, String)>, AwsError> {
        let (status, body, headers) = self
            .call(
                "HEAD",
                bucket,
                Some(key),
                &[],
                "HeadObject",
                Vec::new(),
                Vec::new(),
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(service_error("HeadObject", status, &body));
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(header("x-amz-object-lock-mode").zip(header("x-amz-object-lock-retain-until-date")))
    }

    /// The version ids of `bucket/key`, newest first.
    pub async fn versions(&self, bucket: &str, key: &str) -> Result<Vec<String>, AwsError> {
        let (status, body, _) = self
            .call(
                "GET",
                bucket,
                None,
                &[("versions", ""), ("prefix", key)],
                "ListObjectVersions",
                Vec::new(),
                Vec::new(),
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(service_error("ListObjectVersions", status, &body));
        }
        let doc = xml::parse(&body)?;
        Ok(doc
            .descendants()
            .filter(|n| n.has_tag_name("Version"))
            .filter(|n| xml::find_text(*n, "Key").as_deref() == Some(key))
            .filter_map(|n| xml::find_text(n, "VersionId"))
            .collect())
    }

    /// Deletes one version of `bucket/key` (refused by S3 while it is retained).
    pub async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
    ) -> Result<(), AwsError> {
        let (status, body, _) = self
            .call(
                "DELETE",
                bucket,
                Some(key),
                &[("versionId", version)],
                "DeleteObject",
                Vec::new(),
                Vec::new(),
            )
            .await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(service_error("DeleteObject", status, &body))
        }
    }
}
