//! AWS Signature Version 4, implemented here (HMAC-SHA256 over a canonical request).
//!
//! Small enough to own: about a hundred lines over `hmac` and `sha2`, which the workspace
//! already uses, instead of the `aws-sigv4` crate and its `aws-smithy-*` runtime. It covers
//! what the Query (IAM, STS) and awsJson (Secrets Manager) protocols need: header-based
//! signing of a request with a small body, an optional session token, and query strings.
//! It does not do S3's unsigned or chunked payloads, presigned URLs, or SigV4a.
//!
//! Tested against the official `aws-sig-v4-test-suite` vectors `get-vanilla` and
//! `get-vanilla-query-order-key-case`, and against signatures computed with botocore's
//! `SigV4Auth` for a form-encoded IAM POST and an awsJson POST with a session token.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Everything SigV4 leaves unencoded: `A-Z a-z 0-9 - _ . ~`.
pub(crate) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `s` the way SigV4 and the AWS Query protocol want it.
pub(crate) fn uri_encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The credentials used to sign (borrowed, never stored by the signer).
#[derive(Clone, Copy)]
pub(crate) struct SigningKey<'a> {
    pub(crate) access_key_id: &'a str,
    pub(crate) secret_access_key: &'a str,
    pub(crate) session_token: Option<&'a str>,
}

/// A request to sign.
pub(crate) struct SignableRequest<'a> {
    /// `GET`, `POST`, ...
    pub(crate) method: &'a str,
    /// The path as sent on the wire (already percent-encoded), `/` for the AWS APIs used here.
    pub(crate) path: &'a str,
    /// Query parameters, unencoded.
    pub(crate) query: &'a [(String, String)],
    /// Headers to sign (must include `host`), names in any case.
    pub(crate) headers: &'a [(String, String)],
    /// The body.
    pub(crate) body: &'a [u8],
}

/// The headers to add to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedHeaders {
    /// `X-Amz-Date`.
    pub(crate) amz_date: String,
    /// `Authorization`.
    pub(crate) authorization: String,
    /// `X-Amz-Security-Token`, when a session token is used.
    pub(crate) security_token: Option<String>,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    // Non-S3 services: each segment of the (already encoded) path is encoded once more.
    path.split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn normalize_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Signs `req` at `amz_date` (`YYYYMMDDTHHMMSSZ`) for `region` and `service`.
pub(crate) fn sign(
    req: &SignableRequest<'_>,
    key: SigningKey<'_>,
    region: &str,
    service: &str,
    amz_date: &str,
) -> SignedHeaders {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), normalize_value(v)))
        .collect();
    headers.push(("x-amz-date".to_owned(), amz_date.to_owned()));
    if let Some(token) = key.session_token {
        headers.push(("x-amz-security-token".to_owned(), token.to_owned()));
    }
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query),
        canonical_headers,
        signed_headers,
        sha256_hex(req.body)
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac(
        format!("AWS4{}", key.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    SignedHeaders {
        amz_date: amz_date.to_owned(),
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            key.access_key_id
        ),
        security_token: key.session_token.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: SigningKey<'static> = SigningKey {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
    };
    const DATE: &str = "20150830T123600Z";

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// aws-sig-v4-test-suite `get-vanilla`.
    #[test]
    fn suite_get_vanilla() {
        let headers = h(&[("Host", "example.amazonaws.com")]);
        let req = SignableRequest {
            method: "GET",
            path: "/",
            query: &[],
            headers: &headers,
            body: b"",
        };
        let signed = sign(&req, KEY, "us-east-1", "service", DATE);
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(signed.amz_date, DATE);
        assert_eq!(signed.security_token, None);
    }

    /// aws-sig-v4-test-suite `get-vanilla-query-order-key-case` (`?Param2=value2&Param1=value1`).
    #[test]
    fn suite_get_vanilla_query_order_key_case() {
        let headers = h(&[("Host", "example.amazonaws.com")]);
        let query = h(&[("Param2", "value2"), ("Param1", "value1")]);
        let req = SignableRequest {
            method: "GET",
            path: "/",
            query: &query,
            headers: &headers,
            body: b"",
        };
        let signed = sign(&req, KEY, "us-east-1", "service", DATE);
        assert!(signed.authorization.ends_with(
            "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        ));
    }

    /// Expected value computed with botocore 1.44.5 `SigV4Auth` (same key and date).
    #[test]
    fn iam_query_post_matches_botocore() {
        let headers = h(&[
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Host", "iam.amazonaws.com"),
        ]);
        let req = SignableRequest {
            method: "POST",
            path: "/",
            query: &[],
            headers: &headers,
            body: b"Action=ListUsers&Version=2010-05-08",
        };
        let signed = sign(&req, KEY, "us-east-1", "iam", DATE);
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d76d0de3e0ffe5a7a23cfce21b99d6f4e5060aad86bd9dc7c617f224e5b492a"
        );
    }

    /// Expected value computed with botocore 1.44.5 `SigV4Auth`, with a session token and a
    /// non-default port in the host.
    #[test]
    fn json_post_with_session_token_matches_botocore() {
        let headers = h(&[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "secretsmanager.DescribeSecret"),
            ("Host", "127.0.0.1:5000"),
        ]);
        let req = SignableRequest {
            method: "POST",
            path: "/",
            query: &[],
            headers: &headers,
            body: br#"{"SecretId":"db/password"}"#,
        };
        let key = SigningKey {
            session_token: Some("SESSIONTOKEN/xyz+="),
            ..KEY
        };
        let signed = sign(&req, key, "eu-west-1", "secretsmanager", DATE);
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/secretsmanager/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
             Signature=0c6816ee8940d3bf69eb9ed9aa4029cca4c3574a56cf6ccb03dc7372c2afbde6"
        );
        assert_eq!(signed.security_token.as_deref(), Some("SESSIONTOKEN/xyz+="));
    }

    #[test]
    fn encoding_follows_sigv4() {
        assert_eq!(uri_encode("a b/c~d*e+f=g"), "a%20b%2Fc~d%2Ae%2Bf%3Dg");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri(""), "/");
    }
}
