//! Structured logs (tracing): text for people, JSON (one object per line) for pipelines.
//! Logs go to stderr, so that a command's output on stdout (`--json` listings, exports) stays
//! clean; `sqlx` is quieted to warnings (its INFO level logs every server notice).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => EnvFilter::try_new(from_env)?,
        _ => EnvFilter::try_new(format!("{},sqlx=warn", config.level))
            .map_err(|err| anyhow::anyhow!("invalid log level {:?}: {err}", config.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|err| anyhow::anyhow!("cannot install the logger: {err}"))
}
