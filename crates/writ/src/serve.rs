//! `writ serve`: open the store, bind, serve until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context as _;
use jiff::SignedDuration;
use writ_engine::ingest::IngestSettings;
use writ_engine::sources::SourceRegistry;
use writ_engine::{Engine, SequencerConfig};
use writ_server::AppState;

use crate::config::Config;
use crate::ledger_key;

/// Options of `writ serve`; each overrides the configuration.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Database URL (default sqlite://writ.db in the working directory).
    #[arg(long)]
    database: Option<String>,
}

pub fn run(mut config: Config, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(database) = args.database {
        config.database.url = database;
    }
    crate::runtime()?.block_on(serve(config))
}

/// The engine every writing command uses, wired from the configuration: the store, the
/// ledger (with its signing key), the policy bundle, the targets' connectors and the settings.
/// `connect_targets` is false for commands that never touch a target (they skip connecting).
pub async fn build(config: &Config, connect_targets: bool) -> anyhow::Result<Engine> {
    let connectors = if connect_targets {
        crate::writeback_cmd::connectors(config).await
    } else {
        Vec::new()
    };
    build_with(config, connectors.into_iter().map(|(_, c)| c).collect()).await
}

/// [`build`] with connectors already made.
pub async fn build_with(
    config: &Config,
    connectors: Vec<Arc<dyn writ_connectors::Connector>>,
) -> anyhow::Result<Engine> {
    let policy = Arc::new(crate::policy_source::load(config)?);
    let store = crate::open_store(config).await?;
    let key = ledger_key::signer_for_serving(config)?;
    Engine::builder(store, key)
        .policy(policy)
        .connectors(connectors)
        .sequencer_config(SequencerConfig {
            max_batch: config.ledger.max_batch,
            linger: Duration::from_millis(config.ledger.linger_ms),
            ..SequencerConfig::default()
        })
        .ingest_settings(IngestSettings {
            max_reconcile_age: SignedDuration::from_hours(i64::from(
                config.ingest.max_reconcile_age_hours,
            )),
        })
        .writeback_settings(config.writeback.settings())
        .start()
        .await
        .context("cannot open the ledger for writing")
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let shown_url = writ_store::redact_url(&config.database.url);
    let sources = SourceRegistry::load(&config.sources).context("invalid [[sources]]")?;
    let named = crate::writeback_cmd::connectors(&config).await;
    let engine = build_with(&config, named.iter().map(|(_, c)| c.clone()).collect()).await?;
    // `[[sources]]` entries are source principals: make sure each exists, with its trust and
    // its configured token digest, as ledger events.
    for source in &config.sources {
        let digest = source
            .token_sha256
            .as_deref()
            .map(|hex| format!("sha256:{}", hex.trim().to_ascii_lowercase()).parse())
            .transpose()
            .map_err(|_| {
                anyhow::anyhow!(
                    "source {}: token_sha256 must be 64 hex characters",
                    source.name
                )
            })?;
        let enabled = engine
            .principals
            .reconcile_source(&source.name, source.trust, digest)
            .await
            .with_context(|| format!("[[sources]] {}", source.name))?;
        if !enabled {
            tracing::warn!(source = %source.name, "[[sources]] names a disabled principal; it stays disabled");
        }
    }
    let declared: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
    let retired = engine
        .principals
        .retire_unconfigured_sources(&declared)
        .await
        .context("revoking the tokens of sources no longer in [[sources]]")?;
    if retired > 0 {
        tracing::warn!(
            tokens = retired,
            "revoked the tokens of sources no longer declared in [[sources]]"
        );
    }
    engine.ingestor()?;
    let settings = config.server.settings()?;
    if let Some(tls) = &settings.tls {
        tls.acceptor().context("[server] tls_cert / tls_key")?;
    }
    let state = AppState::from_engine(
        &engine,
        sources,
        named.into_iter().collect(),
        settings.clone(),
    );
    let worker = engine.writeback.clone();
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        scheme = if settings.tls.is_some() { "https" } else { "http" },
        database = %shown_url,
        backend = engine.store.backend().name(),
        version = env!("CARGO_PKG_VERSION"),
        "writ is serving"
    );
    // The write-back worker: works due jobs every `[writeback] interval_ms` while the server
    // runs. Replicas share the queue through job leases.
    let interval = Duration::from_millis(config.writeback.interval_ms.max(10));
    let worker_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = worker.run_once().await {
                tracing::error!(error = %err, "write-back pass failed; will retry");
            }
            // Deadlines (exception expiries and renewals, overdue reviews): every replica runs
            // the same pass; each deadline is acted on once.
            if let Err(err) = worker.run_deadlines().await {
                tracing::error!(error = %err, "deadline pass failed; will retry");
            }
        }
    });
    writ_server::serve(listener, state, shutdown_signal()).await?;
    worker_task.abort();
    tracing::info!("writ stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
