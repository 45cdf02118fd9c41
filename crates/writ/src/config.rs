//! Configuration: defaults, then a TOML file, then `WRIT_*` environment variables, then flags.
//!
//! Nested keys map to environment variables with a double underscore:
//! `[database] url` is `WRIT_DATABASE__URL`, `[server] listen` is `WRIT_SERVER__LISTEN`.
//! Unknown keys are errors, so a typo never silently falls back to a default. `WRIT_SERVER` and
//! `WRIT_TOKEN` (and `WRIT_CA_CERT`) are not configuration: they are the API client's server
//! URL, token and trusted certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP server.
    pub server: ServerConfig,
    /// Storage.
    pub database: DatabaseConfig,
    /// Logging.
    pub log: LogConfig,
    /// The event ledger.
    pub ledger: LedgerConfig,
    /// Findings sources allowed to send findings (`[[sources]]`).
    pub sources: Vec<writ_engine::sources::SourceConfig>,
    /// The policy bundle.
    pub policy: PolicyConfig,
    /// Target systems writ reads and changes (`[[targets]]`).
    pub targets: Vec<TargetConfig>,
    /// Ingest.
    pub ingest: IngestConfig,
    /// The write-back worker and its guards.
    pub writeback: WriteBackConfig,
    /// Webhook endpoints notified of what people must hear about (`[[webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
    /// The reviewer console served at `/`.
    pub console: ConsoleConfig,
    /// Single sign-on for the console (OpenID Connect), when set.
    pub oidc: Option<OidcConfig>,
}

/// `[console]`: the reviewer console in the browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve it (at `/`).
    pub enabled: bool,
    /// The key console sessions are signed with: 32 random bytes as hex, readable by its owner
    /// only; made on first start when absent. Every replica needs the same file.
    pub session_key_file: PathBuf,
    /// Minutes a session may go unused.
    pub idle_minutes: u32,
    /// Hours a session lasts at most.
    pub absolute_hours: u32,
    /// The URL browsers reach the console at (for the sign-on redirect); by default
    /// `http(s)://` and `[server] listen`.
    pub public_url: Option<String>,
    /// Where `writ serve` leaves the one-time code that makes the first admin on the
    /// console's `/setup` page, while no admin exists (mode 600; removed once used).
    pub setup_code_file: PathBuf,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_key_file: PathBuf::from("writ-console.key"),
            idle_minutes: 30,
            absolute_hours: 12,
            public_url: None,
            setup_code_file: PathBuf::from("writ-setup.code"),
        }
    }
}

/// `[oidc]`: sign-in through an OpenID Connect provider (authorization code flow with PKCE).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL.
    pub issuer: String,
    /// The client id writ is registered under (redirect URI `{public_url}/auth/oidc/callback`).
    pub client_id: String,
    /// A file holding the client secret, readable by its owner only.
    pub client_secret_file: PathBuf,
    /// The ID token claim naming the principal: `preferred_username` (default), `email` or
    /// `sub`. The principal must exist in writ.
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// A claim (from UserInfo) listing the person's teams; when set, each sign-in sets the
    /// principal's teams to it, recorded in the ledger. Roles stay writ's.
    #[serde(default)]
    pub teams_claim: Option<String>,
}

fn default_name_claim() -> String {
    "preferred_username".to_owned()
}

/// `[[webhooks]]`: an endpoint that receives notifications, signed as the Standard Webhooks
/// specification says, from a durable outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Its name (in logs and the outbox).
    pub name: String,
    /// Where notifications are POSTed (`https://...`; `http://` only to loopback).
    pub url: String,
    /// A file holding the signing secret, `whsec_<base64>`, readable only by its owner. The
    /// secret never reaches the database, the ledger or the logs.
    pub secret_file: std::path::PathBuf,
    /// The notifications it receives: `approval_due`, `escalation`, `break_glass_used`,
    /// `exception_expiring`, `case_closed`.
    pub events: Vec<writ_core::notification::NotificationKind>,
    /// Seconds between attempts after the first (the specification's schedule when absent:
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); it fails after the last.
    #[serde(default)]
    pub retry_schedule_seconds: Option<Vec<u32>>,
}

/// `[[targets]]`: a target system. Credentials never come from writ's database: the AWS ones come
/// from the standard `AWS_*` environment variables, a PostgreSQL URL from the environment
/// variable named by `url_env` (or `url`, for local setups).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The name `writ sync NAME` uses.
    pub name: String,
    /// `postgres`, `aws_iam`, `aws_secrets` or `oauth`.
    pub kind: TargetKind,
    /// The system name identities get (default: derived by the connector, e.g.
    /// `aws:<account>`); required for `postgres`.
    #[serde(default)]
    pub system: Option<String>,
    /// PostgreSQL: the admin URL (prefer `url_env`).
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL: the environment variable holding the admin URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// AWS: the endpoint (for moto or a VPC endpoint); default the public one.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// AWS: the region (default `AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// PostgreSQL and AWS IAM: the `aws_secrets` target rotated passwords and access keys are
    /// delivered to. Without one, rotation is not offered (the new secret would have nowhere to
    /// go).
    #[serde(default)]
    pub rotation_sink: Option<String>,
    /// The secret name for a rotated password or access key; `{system}` and `{identity}` (the
    /// role, or the IAM user) are replaced (default `writ/{system}/{identity}`).
    #[serde(default)]
    pub rotation_secret_name: Option<String>,
    /// OAuth: the authorization server's issuer URL (its discovery document names the
    /// registration, token, introspection and revocation endpoints).
    #[serde(default)]
    pub issuer: Option<String>,
    /// OAuth: the JSON file (mode 600) mapping each managed client id to its RFC 7592
    /// registration access token.
    #[serde(default)]
    pub registrations_file: Option<PathBuf>,
    /// OAuth: the client ids that are AI agents (their scopes are their tools).
    #[serde(default)]
    pub agents: Vec<String>,
    /// How often `writ serve` syncs this target's inventory (`15m`, `1h`, `1d`; unset: only
    /// when asked, `writ sync`).
    #[serde(default)]
    pub sync_every: Option<String>,
}

/// By hand, so the URL (which may hold a password) is shown redacted.
impl std::fmt::Debug for TargetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("system", &self.system)
            .field("url", &self.url.as_deref().map(writ_store::redact_url))
            .field("url_env", &self.url_env)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("rotation_sink", &self.rotation_sink)
            .field("rotation_secret_name", &self.rotation_secret_name)
            .field("issuer", &self.issuer)
            .field("registrations_file", &self.registrations_file)
            .field("agents", &self.agents)
            .finish()
    }
}

/// The kinds of target writ has connectors for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// PostgreSQL roles.
    Postgres,
    /// AWS IAM users and access keys.
    AwsIam,
    /// AWS Secrets Manager secrets.
    AwsSecrets,
    /// OAuth clients and AI agents of an authorization server (RFC 7591/7592).
    Oauth,
}

/// `[policy]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The Cedar bundle directory; the built-in demo bundle when absent.
    pub bundle: Option<PathBuf>,
}

/// `[ingest]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// How many hours since a system's last reconciliation its identities count as fresh;
    /// after that, findings about them go to human review.
    pub max_reconcile_age_hours: u32,
    /// A sync raises `dormant_identity` for an identity its target reports unused for longer
    /// than this span (`90d`, `12h`, `30m`, `45s`).
    pub dormant_after: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_reconcile_age_hours: 24,
            dormant_after: "90d".to_owned(),
        }
    }
}

/// `[writeback]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriteBackConfig {
    /// Milliseconds between two passes of `writ serve`'s write-back worker.
    pub interval_ms: u64,
    /// Seconds a worker holds a job it claimed; a job whose worker died waits this long before
    /// another worker takes it over.
    pub lease_seconds: u32,
    /// Attempts before a job fails for good.
    pub max_attempts: u32,
    /// Seconds before the first retry; doubled each attempt.
    pub backoff_seconds: u32,
    /// Blast-radius guard: at most this many changes per system within `window_minutes`.
    pub max_changes_per_window: u32,
    /// The window of the change cap, in minutes.
    pub window_minutes: u32,
    /// Seconds within which a break-glass change must be reviewed, when the policy that
    /// allowed it sets no `@review_within_hours` (a day by default); overdue, it escalates, and
    /// again at twice the time.
    pub break_glass_review_seconds: u32,
    /// Seconds a key rotation waits for the consumers to use the new key before a human is
    /// asked (the old key stays active meanwhile); a day by default.
    pub rotation_cutover_seconds: u32,
    /// Seconds a rotated-out key stays, inactive, before it is deleted; a week by default.
    pub rotation_grace_seconds: u32,
    /// Seconds a principal must have gone unused before it may be offboarded without a
    /// rotation showing its dependants cut over; a day by default.
    pub offboard_quiet_seconds: u32,
    /// Seconds a queued job waits before looking again when automation is paused on its
    /// system.
    pub pause_recheck_seconds: u32,
    /// Automation pauses on a system whose last sync found fewer than this share of its
    /// identities owned (0 to 1; 0, the default, never pauses for ownership). A system whose
    /// inventory is older than `ingest.max_reconcile_age_hours` pauses too.
    pub min_ownership_share: f64,
}

impl Default for WriteBackConfig {
    fn default() -> Self {
        let engine = writ_engine::writeback::WriteBackSettings::default();
        let whole = |d: jiff::SignedDuration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        Self {
            interval_ms: 2000,
            lease_seconds: whole(engine.lease),
            max_attempts: engine.max_attempts,
            backoff_seconds: whole(engine.backoff),
            max_changes_per_window: engine.max_changes_per_window,
            window_minutes: whole(engine.window) / 60,
            break_glass_review_seconds: whole(engine.break_glass_review),
            rotation_cutover_seconds: whole(engine.rotation_cutover),
            rotation_grace_seconds: whole(engine.rotation_grace),
            offboard_quiet_seconds: whole(engine.offboard_quiet),
            pause_recheck_seconds: whole(engine.pause_recheck),
            min_ownership_share: 0.0,
        }
    }
}

impl WriteBackConfig {
    /// The engine's settings.
    pub fn settings(&self) -> writ_engine::writeback::WriteBackSettings {
        let secs = |s: u32| jiff::SignedDuration::from_secs(i64::from(s));
        writ_engine::writeback::WriteBackSettings {
            max_attempts: self.max_attempts.max(1),
            backoff: secs(self.backoff_seconds),
            max_changes_per_window: self.max_changes_per_window,
            window: secs(self.window_minutes.saturating_mul(60)),
            lease: secs(self.lease_seconds.max(1)),
            break_glass_review: secs(self.break_glass_review_seconds.max(1)),
            rotation_cutover: secs(self.rotation_cutover_seconds.max(1)),
            rotation_grace: secs(self.rotation_grace_seconds),
            offboard_quiet: secs(self.offboard_quiet_seconds),
            pause_recheck: secs(self.pause_recheck_seconds.max(1)),
        }
    }
}

/// `[ledger]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// The checkpoint signing key (private; mode 0600). Its public key is `<path>.pub`.
    pub signing_key: PathBuf,
    /// The ledger's origin (the key name and the first line of every checkpoint), used by
    /// `writ keys init` and when `writ serve` creates the default key.
    pub origin: String,
    /// The most events committed in one transaction.
    pub max_batch: usize,
    /// Milliseconds to wait for more events once one has arrived.
    pub linger_ms: u64,
    /// A directory every signed checkpoint is also written to as it is made (one read-only
    /// file per checkpoint, named by its tree size, never rewritten): state the database
    /// cannot rewrite, for `writ audit verify --trusted DIR`. Put it on storage the database's
    /// operators cannot change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_dir: Option<PathBuf>,
    /// Witnesses asked to co-sign every checkpoint as it is made (`[[ledger.witnesses]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<WitnessConfig>,
    /// An S3 bucket with Object Lock every checkpoint is also written to (`[ledger.s3]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3PublishConfig>,
}

/// `[ledger.s3]`: publish each checkpoint to S3 under Object Lock, compliance mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3PublishConfig {
    /// The bucket (created with Object Lock enabled; writ refuses one without).
    pub bucket: String,
    /// Prepended to each object key (`<prefix><size>.checkpoint`).
    #[serde(default = "default_s3_prefix")]
    pub prefix: String,
    /// How long each checkpoint is retained in compliance mode, in days.
    #[serde(default = "default_retain_days")]
    pub retain_days: u32,
    /// The region (default: `AWS_REGION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An endpoint instead of AWS's (moto, an S3-compatible store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

fn default_s3_prefix() -> String {
    "writ-checkpoints/".into()
}

/// Seven years: a common retention for audit evidence.
fn default_retain_days() -> u32 {
    7 * 365
}

/// `[[ledger.witnesses]]`: a witness (C2SP `tlog-witness`, say `writ witness serve`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Its base URL (`POST <url>/add-checkpoint`).
    pub url: String,
    /// Its public key: the vkey text, or a file holding it.
    pub key: String,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            signing_key: PathBuf::from(DEFAULT_SIGNING_KEY),
            origin: "writ.local/ledger".into(),
            max_batch: 1024,
            linger_ms: 0,
            publish_dir: None,
            witnesses: Vec::new(),
            s3: None,
        }
    }
}

/// Where the signing key lives unless configured.
pub const DEFAULT_SIGNING_KEY: &str = "writ-ledger.key";

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seconds to wait for requests in flight on shutdown.
    pub shutdown_grace_seconds: u64,
    /// Milliseconds a client has to send a request's headers (and finish a TLS handshake);
    /// a slower client is disconnected.
    pub header_read_timeout_ms: u64,
    /// Milliseconds a request body may go without sending anything (408).
    pub body_read_timeout_ms: u64,
    /// Milliseconds a request may take in all (503).
    pub request_timeout_ms: u64,
    /// Requests served at once; more get 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Sustained requests per second for each authenticated principal (0: no limit); more
    /// get 429 with `Retry-After`.
    pub rate_limit_per_second: f64,
    /// Requests a principal may make at once after a quiet spell.
    pub rate_limit_burst: f64,
    /// Failed authentications a client address may make at once; past them it gets 429 until
    /// its budget refills (0 turns the limit off).
    pub auth_failure_burst: f64,
    /// How fast that budget refills, per second.
    pub auth_failures_per_second: f64,
    /// Milliseconds a successful authentication is remembered, so that a busy client's
    /// requests do not each read its token and principal (0: read them on every request). A
    /// revocation or a disabled principal takes effect at once on the replica it was made
    /// through, and on other replicas within this time.
    pub auth_cache_ms: u64,
    /// PEM certificate chain: with `tls_key`, the server speaks only HTTPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Who may read `GET /metrics`: `loopback` (open to loopback clients, a token of an admin
    /// or auditor elsewhere) or `token` (always a token).
    pub metrics_access: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let defaults = writ_server::ServerSettings::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: defaults.max_body_bytes,
            shutdown_grace_seconds: defaults.shutdown_grace.as_secs(),
            header_read_timeout_ms: millis(defaults.header_read_timeout),
            body_read_timeout_ms: millis(defaults.body_read_timeout),
            request_timeout_ms: millis(defaults.request_timeout),
            max_concurrent_requests: defaults.max_concurrent_requests,
            rate_limit_per_second: defaults.rate_limit.per_second,
            rate_limit_burst: defaults.rate_limit.burst,
            auth_failure_burst: defaults.auth_failure_limit.burst,
            auth_failures_per_second: defaults.auth_failure_limit.per_second,
            auth_cache_ms: 1000,
            tls_cert: None,
            tls_key: None,
            metrics_access: "loopback".to_owned(),
        }
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl ServerConfig {
    /// The HTTP edge's settings. Refuses half a TLS configuration.
    pub fn settings(&self) -> anyhow::Result<writ_server::ServerSettings> {
        use std::time::Duration;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(writ_server::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => anyhow::bail!("[server] tls_cert and tls_key go together: set both or neither"),
        };
        for (name, value) in [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            anyhow::ensure!(value > 0, "[server] {name} must be more than 0");
        }
        anyhow::ensure!(
            self.rate_limit_per_second >= 0.0
                && self.rate_limit_burst >= 0.0
                && self.auth_failures_per_second >= 0.0
                && self.auth_failure_burst >= 0.0,
            "[server] rate limits cannot be negative"
        );
        Ok(writ_server::ServerSettings {
            max_body_bytes: self.max_body_bytes,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_concurrent_requests: self.max_concurrent_requests.max(1),
            metrics_access: match self.metrics_access.as_str() {
                "loopback" => writ_server::metrics::MetricsAccess::Loopback,
                "token" => writ_server::metrics::MetricsAccess::Token,
                other => {
                    anyhow::bail!("[server] metrics_access is loopback or token, not {other:?}")
                }
            },
            rate_limit: writ_server::RateLimit {
                per_second: self.rate_limit_per_second,
                burst: self.rate_limit_burst,
            },
            auth_failure_limit: writ_server::RateLimit {
                per_second: if self.auth_failure_burst > 0.0 {
                    self.auth_failures_per_second
                } else {
                    0.0
                },
                burst: self.auth_failure_burst,
            },
            tls,
            dormant_after: jiff::SignedDuration::from_hours(90 * 24),
        })
    }
}

/// `[database]`
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (embedded) or `postgres://USER[:PASSWORD]@HOST:PORT/DB`.
    pub url: String,
}

/// By hand, so the URL (which may hold a password) is shown redacted.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &writ_store::redact_url(&self.url))
            .finish()
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://writ.db".into(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `writ=debug,sqlx=warn`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

const DEFAULT_FILE: &str = "writ.toml";

impl Config {
    /// Loads the configuration. `file` must exist when given; `./writ.toml` is read when it
    /// exists and no file is given.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let path: Option<PathBuf> = match file {
            Some(path) => {
                anyhow::ensure!(
                    path.is_file(),
                    "configuration file {} does not exist",
                    path.display()
                );
                Some(path.to_owned())
            }
            None => Path::new(DEFAULT_FILE)
                .is_file()
                .then(|| PathBuf::from(DEFAULT_FILE)),
        };
        if let Some(path) = &path {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(
            Env::prefixed("WRIT_")
                .ignore(&[
                    "CONFIG",
                    "TEST_VENV",
                    "PG_BIN",
                    "SERVER",
                    "TOKEN",
                    "CA_CERT",
                ])
                .split("__")
                .lowercase(true),
        );
        figment.extract().with_context(|| match &path {
            Some(path) => format!("invalid configuration (file {})", path.display()),
            None => "invalid configuration (from WRIT_* environment variables)".to_owned(),
        })
    }

    /// Prints the effective configuration as JSON, with secrets redacted.
    pub fn print_redacted(&self) -> anyhow::Result<()> {
        let mut shown = self.clone();
        shown.database.url = writ_store::redact_url(&shown.database.url);
        for target in &mut shown.targets {
            target.url = target.url.as_deref().map(writ_store::redact_url);
        }
        let text = serde_json::to_string_pretty(&shown)?;
        println!("{text}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_database_password() {
        let database = DatabaseConfig {
            url: "postgres://writ:hunter2@db/writ?password=hunter3".into(),
        };
        let target = TargetConfig {
            name: "billing".into(),
            kind: TargetKind::Postgres,
            system: Some("pg:billing".into()),
            url: Some(database.url.clone()),
            url_env: None,
            endpoint: None,
            region: None,
            rotation_sink: None,
            rotation_secret_name: None,
            issuer: None,
            registrations_file: None,
            agents: Vec::new(),
            sync_every: None,
        };
        for text in [format!("{database:?}"), format!("{target:?}")] {
            assert!(!text.contains("hunter"), "{text}");
            assert!(text.contains("postgres://writ:***@db/writ"), "{text}");
        }
    }
}
