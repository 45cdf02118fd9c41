//! Webhook delivery: notifications from the outbox to their endpoints, signed as the Standard
//! Webhooks specification says.
//!
//! Each request carries `webhook-id` (the message id, the same on every attempt),
//! `webhook-timestamp` (seconds since the epoch) and `webhook-signature: v1,<base64>`, an
//! HMAC-SHA256 with the endpoint's secret (`whsec_<base64>`) over `id.timestamp.body`. A 2xx
//! answer delivers it; a 410 disables the endpoint (nothing more is sent to it); anything
//! else, or no answer, is tried again on the specification's schedule (5 s, 5 min, 30 min,
//! 2 h, 5 h, 10 h, 10 h) and fails after the last. Every attempt is recorded. The secret is
//! held in memory only: never in the database, the ledger or the logs.
//!
//! Any replica's worker loop may run it: a notification is leased to one worker at a time.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use jiff::SignedDuration;
use sha2::Sha256;
use writ_core::{Clock, IdSource};
use writ_store::{DeliveryAttempt, DeliveryNext, OutboxRow, Store, StoreError};

/// The retry schedule of the Standard Webhooks specification, after the first attempt.
pub const STANDARD_SCHEDULE: [SignedDuration; 7] = [
    SignedDuration::from_secs(5),
    SignedDuration::from_secs(5 * 60),
    SignedDuration::from_secs(30 * 60),
    SignedDuration::from_secs(2 * 3600),
    SignedDuration::from_secs(5 * 3600),
    SignedDuration::from_secs(10 * 3600),
    SignedDuration::from_secs(10 * 3600),
];

/// How long a worker holds the notifications it claimed.
const LEASE: SignedDuration = SignedDuration::from_secs(60);

/// Notifications claimed at most in one pass.
const PASS_LIMIT: u32 = 50;

/// A webhook endpoint: where, with which secret, and how often to retry.
#[derive(Clone)]
pub struct Endpoint {
    /// The URL notifications are POSTed to.
    pub url: String,
    /// The signing key (the secret's decoded bytes).
    key: Arc<Vec<u8>>,
    /// The delays between attempts; the notification fails after the last.
    pub schedule: Vec<SignedDuration>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("key", &"[redacted]")
            .field("schedule", &self.schedule)
            .finish()
    }
}

/// A secret that is not `whsec_` followed by base64 of at least 16 bytes.
#[derive(Debug, thiserror::Error)]
#[error("a webhook secret is whsec_ followed by the base64 of at least 16 random bytes")]
pub struct BadSecret;

impl Endpoint {
    /// An endpoint at `url` signing with `secret` (`whsec_<base64>`), retrying on `schedule`.
    pub fn new(url: &str, secret: &str, schedule: Vec<SignedDuration>) -> Result<Self, BadSecret> {
        let encoded = secret.trim().strip_prefix("whsec_").ok_or(BadSecret)?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| BadSecret)?;
        if key.len() < 16 {
            return Err(BadSecret);
        }
        Ok(Self {
            url: url.to_owned(),
            key: Arc::new(key),
            schedule,
        })
    }

    /// The `webhook-signature` value for message `id` at `timestamp` (seconds) with `body`.
    pub fn signature(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body.as_bytes());
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    }
}

/// What one pass delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyReport {
    /// Delivered.
    pub delivered: usize,
    /// To be tried again.
    pub retrying: usize,
    /// Failed for good.
    pub failed: usize,
    /// Their endpoint answered 410 and is disabled.
    pub disabled: usize,
}

/// Delivers the outbox. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    endpoints: Arc<HashMap<String, Endpoint>>,
    http: reqwest::Client,
    holder: String,
}

impl Notifier {
    /// A notifier for these endpoints (by `[[webhooks]]` name).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: &dyn IdSource,
        endpoints: HashMap<String, Endpoint>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            holder: format!("notifier:{}", ids.next_id(clock.now())),
            store,
            clock,
            endpoints: Arc::new(endpoints),
            http,
        })
    }

    /// Delivers what is due (up to a pass's worth), once each.
    pub async fn run_once(&self) -> Result<NotifyReport, StoreError> {
        let mut report = NotifyReport::default();
        let now = self.clock.now();
        let claimed = self
            .store
            .claim_outbox(&self.holder, now, now + LEASE, PASS_LIMIT)
            .await?;
        for row in claimed {
            let next = self.deliver(&row).await;
            match &next.1 {
                DeliveryNext::Delivered => report.delivered += 1,
                DeliveryNext::RetryAt(_) => report.retrying += 1,
                DeliveryNext::Failed => report.failed += 1,
                DeliveryNext::EndpointGone => report.disabled += 1,
            }
            self.store
                .finish_delivery(&row.id, &self.holder, next.0, next.1)
                .await?;
        }
        Ok(report)
    }

    async fn deliver(&self, row: &OutboxRow) -> (DeliveryAttempt, DeliveryNext) {
        let at = self.clock.now();
        let Some(endpoint) = self.endpoints.get(&row.endpoint) else {
            // Configured no more: it cannot be delivered.
            return (
                DeliveryAttempt {
                    at,
                    status: None,
                    error: Some(format!(
                        "no [[webhooks]] endpoint {:?} is configured",
                        row.endpoint
                    )),
                },
                DeliveryNext::Failed,
            );
        };
        let timestamp = at.as_second();
        let answer = self
            .http
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &row.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                endpoint.signature(&row.id, timestamp, &row.payload),
            )
            .body(row.payload.clone())
            .send()
            .await;
        let retry = || {
            usize::try_from(row.attempts)
                .ok()
                .and_then(|n| endpoint.schedule.get(n))
                .map_or(DeliveryNext::Failed, |delay| {
                    DeliveryNext::RetryAt(at + *delay)
                })
        };
        match answer {
            Ok(response) if response.status().is_success() => (
                DeliveryAttempt {
                    at,
                    status: Some(response.status().as_u16()),
                    error: None,
                },
                DeliveryNext::Delivered,
            ),
            Ok(response) if response.status() == reqwest::StatusCode::GONE => {
                tracing::warn!(endpoint = %row.endpoint, "webhook endpoint answered 410 Gone; disabled");
                (
                    DeliveryAttempt {
                        at,
                        status: Some(410),
                        error: Some("410 Gone: the endpoint is disabled".into()),
                    },
                    DeliveryNext::EndpointGone,
                )
            }
            Ok(response) => {
                let status = response.status().as_u16();
                (
                    DeliveryAttempt {
                        at,
                        status: Some(status),
                        error: Some(format!("answered {status}")),
                    },
                    retry(),
                )
            }
            Err(err) => {
                // reqwest's error names the URL, never the headers: the signature stays out.
                let error = if err.is_timeout() {
                    "timed out".to_owned()
                } else if err.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "the request failed".to_owned()
                };
                (
                    DeliveryAttempt {
                        at,
                        status: None,
                        error: Some(error),
                    },
                    retry(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries: this secret,
    /// id, timestamp and body give this signature.
    #[test]
    fn signs_as_the_specification_says() {
        let endpoint = Endpoint::new(
            "http://127.0.0.1:1/",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            vec![],
        )
        .unwrap();
        assert_eq!(
            endpoint.signature(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(Endpoint::new("http://x/", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", vec![]).is_err());
        assert!(Endpoint::new("http://x/", "whsec_c2hvcnQ=", vec![]).is_err());
        assert!(!format!("{endpoint:?}").contains("MfKQ"));
    }
}
