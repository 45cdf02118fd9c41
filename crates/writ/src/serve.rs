//! `writ serve`: open the store, bind, serve until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use writ_server::{AppState, ServerSettings};

use crate::config::Config;

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let shown_url = writ_store::redact_url(&config.database.url);
    let store = writ_store::open(&config.database.url)
        .await
        .with_context(|| format!("cannot open the database {shown_url}"))?;
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
