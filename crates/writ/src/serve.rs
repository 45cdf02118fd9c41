//! `writ serve`: open the store, bind, serve until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context as _;
use writ_core::SystemClock;
use writ_engine::{Sequencer, SequencerConfig};
use writ_server::{AppState, ServerSettings};

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

async fn serve(config: Config) -> anyhow::Result<()> {
    let shown_url = writ_store::redact_url(&config.database.url);
    let store = crate::open_store(&config).await?;
    let key = ledger_key::signer_for_serving(&config)?;
    let sequencer = Sequencer::start(
        store.clone(),
        key,
        Arc::new(SystemClock),
        SequencerConfig {
            max_batch: config.ledger.max_batch,
            linger: Duration::from_millis(config.ledger.linger_ms),
            ..SequencerConfig::default()
        },
    )
    .await
    .context("cannot open the ledger for writing")?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        database = %shown_url,
        backend = store.backend().name(),
        version = env!("CARGO_PKG_VERSION"),
        "writ is serving"
    );
    let state = AppState {
        store,
        sequencer,
        settings: ServerSettings {
            max_body_bytes: config.server.max_body_bytes,
            shutdown_grace: Duration::from_secs(config.server.shutdown_grace_seconds),
        },
    };
    writ_server::serve(listener, state, shutdown_signal()).await?;
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
