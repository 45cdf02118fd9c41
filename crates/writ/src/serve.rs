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
    build_observed(config, connectors, None).await
}

/// [`build_with`], with each ledger transaction reported to `commit_observer`.
async fn build_observed(
    config: &Config,
    connectors: Vec<Arc<dyn writ_connectors::Connector>>,
    commit_observer: Option<Arc<dyn writ_engine::CommitObserver>>,
) -> anyhow::Result<Engine> {
    let policy = Arc::new(crate::policy_source::load(config)?);
    let store = crate::open_store(config).await?;
    let signed = store
        .latest_checkpoint()
        .await
        .context("cannot read the ledger's checkpoints")?
        .is_some();
    let key = ledger_key::signer_for_serving(config, signed)?;
    let publish = checkpoint_sinks(config, &store)?;
    Engine::builder(store, key)
        .policy(policy)
        .connectors(connectors)
        .sequencer_config(SequencerConfig {
            max_batch: config.ledger.max_batch,
            linger: Duration::from_millis(config.ledger.linger_ms),
            webhooks: config
                .webhooks
                .iter()
                .map(|w| writ_engine::WebhookRoute {
                    endpoint: w.name.clone(),
                    kinds: w.events.clone(),
                })
                .collect(),
            publish,
            commit_observer,
            ..SequencerConfig::default()
        })
        .ingest_settings(IngestSettings {
            max_reconcile_age: SignedDuration::from_hours(i64::from(
                config.ingest.max_reconcile_age_hours,
            )),
        })
        .writeback_settings(config.writeback.settings())
        .auth_cache(Duration::from_millis(config.server.auth_cache_ms))
        .start()
        .await
        .context("cannot open the ledger for writing")
}

/// Where the configuration says each signed checkpoint is published as it is made: the
/// publish directory and the witnesses.
pub fn checkpoint_sinks(
    config: &Config,
    store: &Arc<dyn writ_store::Store>,
) -> anyhow::Result<Vec<Arc<dyn writ_engine::publish::CheckpointSink>>> {
    let mut sinks: Vec<Arc<dyn writ_engine::publish::CheckpointSink>> = Vec::new();
    if let Some(dir) = &config.ledger.publish_dir {
        sinks.push(Arc::new(writ_engine::publish::DirSink::new(dir.clone())));
    }
    if let Some(s3) = &config.ledger.s3 {
        sinks.push(Arc::new(crate::publish_s3::S3Sink::from_config(s3)?));
    }
    for witness in &config.ledger.witnesses {
        let verifier = writ_engine::keys::load_witness_verifier(&witness.key)
            .with_context(|| format!("[[ledger.witnesses]] {}", witness.url))?;
        sinks.push(Arc::new(writ_engine::witness::WitnessClient::new(
            &witness.url,
            verifier,
            store.clone(),
            Arc::new(writ_core::SystemClock),
        )?));
    }
    Ok(sinks)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let shown_url = writ_store::redact_url(&config.database.url);
    let sources = SourceRegistry::load(&config.sources).context("invalid [[sources]]")?;
    // This process's metrics: the ledger writer reports each commit, and each target call is
    // timed by the connector's wrapper.
    let metrics = Arc::new(writ_server::metrics::Metrics::default());
    let named: Vec<(String, Arc<dyn writ_connectors::Connector>)> =
        crate::writeback_cmd::connectors(&config)
            .await
            .into_iter()
            .map(|(name, connector)| {
                let observed: Arc<dyn writ_connectors::Connector> = Arc::new(
                    writ_connectors::observed::Observed::new(connector, metrics.clone()),
                );
                (name, observed)
            })
            .collect();
    let engine = build_observed(
        &config,
        named.iter().map(|(_, c)| c.clone()).collect(),
        Some(metrics.clone()),
    )
    .await?;
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
    // The bundle in force is kept in the ledger by hash (once), so that every decision it
    // makes stays replayable after the next deploy.
    if writ_engine::replay::keep_bundle(
        &engine.sequencer,
        engine.ingestor()?.policy(),
        "operator:config",
    )
    .await
    .context("keeping the policy bundle in the ledger")?
    {
        tracing::info!(bundle = %engine.ingestor()?.policy().hash(), "policy bundle kept in the ledger");
    }
    let mut settings = config.server.settings()?;
    settings.dormant_after = SignedDuration::from_secs(
        i64::try_from(
            crate::exception_cmd::span_seconds(&config.ingest.dormant_after)
                .context("[ingest] dormant_after")?,
        )
        .unwrap_or(i64::MAX),
    );
    if let Some(tls) = &settings.tls {
        tls.acceptor().context("[server] tls_cert / tls_key")?;
    }
    let schedule = sync_schedule(&config, &named)?;
    let mut state = AppState::from_engine(
        &engine,
        sources,
        named.into_iter().collect(),
        settings.clone(),
    );
    state.console = console_settings(&config, settings.tls.is_some())?;
    state.metrics = metrics;
    if let Some(console) = &state.console {
        prepare_setup_code(&engine.principals, console)
            .await
            .context("[console] setup_code_file")?;
    }
    let worker = engine.writeback.clone();
    let notifier = notifier(&config, &engine)?;
    // Unchanged identities are confirmed again a quarter into their freshness window.
    let refresh_after =
        SignedDuration::from_hours(i64::from(config.ingest.max_reconcile_age_hours)) / 4;
    let dormant_after = settings.dormant_after;
    anyhow::ensure!(
        (0.0..=1.0).contains(&config.writeback.min_ownership_share),
        "[writeback] min_ownership_share must be between 0 and 1"
    );
    let automation = writ_engine::automation::AutomationRules {
        max_staleness: SignedDuration::from_hours(i64::from(config.ingest.max_reconcile_age_hours)),
        min_ownership: config.writeback.min_ownership_share,
    };
    let syncer = (
        engine.store.clone(),
        engine.sequencer.clone(),
        engine.clock.clone(),
        engine.ids.clone(),
        engine.ingestor.clone(),
        format!("sync:{}", engine.ids.next_id(engine.clock.now())),
    );
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
            if let Some(notifier) = &notifier
                && let Err(err) = notifier.run_once().await
            {
                tracing::error!(error = %err, "webhook delivery pass failed; will retry");
            }
            // Scheduled inventory syncs: each target once per `sync_every` round, by whichever
            // replica claims the round first.
            if !schedule.is_empty() {
                let (store, sequencer, clock, ids, ingestor, holder) = &syncer;
                match writ_engine::inventory::scheduled_syncs(
                    &**store,
                    sequencer,
                    &schedule,
                    &**clock,
                    &**ids,
                    holder,
                    writ_engine::inventory::ScheduleRules {
                        refresh_after,
                        dormant_after,
                    },
                )
                .await
                {
                    Ok(report) => {
                        if let Some(ingestor) = ingestor {
                            if !report.subjects.is_empty()
                                && let Err(err) = ingestor.resolve_cases(&report.subjects).await
                            {
                                tracing::error!(error = %err, "deciding cases opened before their identity was known failed; will retry");
                            }
                            if let Err(err) =
                                writ_engine::inventory::raise_findings(ingestor, report.findings)
                                    .await
                            {
                                tracing::error!(error = %err, "raising reconciliation findings failed; the next round raises them again");
                            }
                        }
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "scheduled sync pass failed; will retry")
                    }
                }
            }
            // Automation pauses where the source of truth cannot be trusted, and resumes when
            // it is repaired (every replica looks; each change is recorded once).
            let (store, sequencer, clock, ..) = &syncer;
            if let Err(err) =
                writ_engine::automation::review_pauses(&**store, sequencer, &**clock, &automation)
                    .await
            {
                tracing::error!(error = %err, "reviewing automation pauses failed; will retry");
            }
        }
    });
    writ_server::serve(listener, state, shutdown_signal()).await?;
    worker_task.abort();
    tracing::info!("writ stopped");
    Ok(())
}

/// The targets with a `sync_every`, connected (a target that could not be connected is not
/// synced; its error was logged when connecting).
fn sync_schedule(
    config: &Config,
    named: &[(String, Arc<dyn writ_connectors::Connector>)],
) -> anyhow::Result<Vec<writ_engine::inventory::ScheduledTarget>> {
    let mut schedule = Vec::new();
    for target in &config.targets {
        let Some(every) = &target.sync_every else {
            continue;
        };
        let seconds = crate::exception_cmd::span_seconds(every)
            .with_context(|| format!("[[targets]] {}: sync_every", target.name))?;
        let Some((_, connector)) = named.iter().find(|(name, _)| *name == target.name) else {
            continue;
        };
        schedule.push(writ_engine::inventory::ScheduledTarget {
            target: target.name.clone(),
            connector: connector.clone(),
            every: jiff::SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX)),
        });
    }
    Ok(schedule)
}

/// The webhook notifier of `[[webhooks]]`, with each endpoint's secret read from its file
/// (none when no endpoint is configured).
fn notifier(
    config: &Config,
    engine: &Engine,
) -> anyhow::Result<Option<writ_engine::notify::Notifier>> {
    if config.webhooks.is_empty() {
        return Ok(None);
    }
    let mut endpoints = std::collections::HashMap::new();
    for webhook in &config.webhooks {
        let context = || format!("[[webhooks]] {}", webhook.name);
        let url = reqwest::Url::parse(&webhook.url)
            .with_context(|| format!("{}: url {:?} is not a URL", context(), webhook.url))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        anyhow::ensure!(
            url.scheme() == "https" || (url.scheme() == "http" && loopback),
            "{}: url must be https (http only to loopback)",
            context()
        );
        refuse_shared_secret_file(&webhook.secret_file).with_context(context)?;
        let secret = std::fs::read_to_string(&webhook.secret_file).with_context(|| {
            format!(
                "{}: cannot read secret_file {}",
                context(),
                webhook.secret_file.display()
            )
        })?;
        let schedule = match &webhook.retry_schedule_seconds {
            Some(seconds) => seconds
                .iter()
                .map(|s| SignedDuration::from_secs(i64::from(*s)))
                .collect(),
            None => writ_engine::notify::STANDARD_SCHEDULE.to_vec(),
        };
        let endpoint = writ_engine::notify::Endpoint::new(&webhook.url, &secret, schedule)
            .with_context(|| format!("{}: secret_file", context()))?;
        anyhow::ensure!(
            endpoints.insert(webhook.name.clone(), endpoint).is_none(),
            "{}: two [[webhooks]] have this name",
            context()
        );
    }
    Ok(Some(
        writ_engine::notify::Notifier::new(
            engine.store.clone(),
            engine.clock.clone(),
            &*engine.ids,
            endpoints,
        )
        .context("cannot start the webhook client")?,
    ))
}

/// Refuses a secret file that its group or others may read: the secret signs what writ
/// tells the world.
/// The console's settings from `[console]` and `[oidc]`: the session key (made on first start,
/// mode 600), the timeouts, and single sign-on with its client secret read from its file.
fn console_settings(
    config: &Config,
    tls: bool,
) -> anyhow::Result<Option<writ_server::console::ConsoleSettings>> {
    use writ_server::console::{ConsoleSettings, OidcSettings, session};
    let console = &config.console;
    if !console.enabled {
        return Ok(None);
    }
    let path = &console.session_key_file;
    if !path.exists() {
        let mut bytes = [0u8; 32];
        writ_core::clock::RandomSource::fill(&writ_engine::principals::OsRandom, &mut bytes)
            .map_err(|e| anyhow::anyhow!("no randomness for the console's session key: {e}"))?;
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_private(path, &text)
            .with_context(|| format!("[console] session_key_file {}", path.display()))?;
        tracing::info!(file = %path.display(), "made the console's session key");
    }
    refuse_shared_secret_file(path).context("[console] session_key_file")?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("[console] session_key_file {}", path.display()))?;
    let bytes = hex::decode(text.trim())
        .ok()
        .and_then(session::SessionKey::new)
        .with_context(|| {
            format!(
                "[console] session_key_file {}: not 32 or more bytes of hex",
                path.display()
            )
        })?;
    let public_url = console.public_url.clone().unwrap_or_else(|| {
        format!(
            "{}://{}",
            if tls { "https" } else { "http" },
            config.server.listen
        )
    });
    let oidc = match &config.oidc {
        Some(oidc) => {
            refuse_shared_secret_file(&oidc.client_secret_file)
                .context("[oidc] client_secret_file")?;
            let secret = std::fs::read_to_string(&oidc.client_secret_file).with_context(|| {
                format!(
                    "[oidc] client_secret_file {}",
                    oidc.client_secret_file.display()
                )
            })?;
            anyhow::ensure!(
                matches!(
                    oidc.name_claim.as_str(),
                    "preferred_username" | "email" | "sub"
                ),
                "[oidc] name_claim must be preferred_username, email or sub"
            );
            Some(OidcSettings {
                issuer: oidc.issuer.clone(),
                client_id: oidc.client_id.clone(),
                client_secret: secret.trim().to_owned(),
                public_url: public_url.clone(),
                name_claim: oidc.name_claim.clone(),
                teams_claim: oidc.teams_claim.clone(),
            })
        }
        None => None,
    };
    Ok(Some(ConsoleSettings {
        key: bytes,
        limits: session::SessionLimits {
            idle: SignedDuration::from_mins(i64::from(console.idle_minutes.max(1))),
            absolute: SignedDuration::from_hours(i64::from(console.absolute_hours.max(1))),
        },
        // Behind a proxy that terminates TLS, the public URL says the browser is on HTTPS.
        secure_cookies: tls || public_url.starts_with("https://"),
        oidc,
        // Absolute, so that the setup page names the file wherever the server was started.
        setup_code_file: Some(
            std::path::absolute(&console.setup_code_file)
                .unwrap_or_else(|_| console.setup_code_file.clone()),
        ),
        public_url,
    }))
}

/// While no admin exists, leaves a one-time setup code on the host (mode 600) for the
/// console's `/setup` page, and says where (never what); once one exists, removes a leftover
/// code. Whoever can read the file could bootstrap an admin on this host with the CLI anyway.
async fn prepare_setup_code(
    principals: &writ_engine::principals::Principals,
    console: &writ_server::console::ConsoleSettings,
) -> anyhow::Result<()> {
    let Some(path) = &console.setup_code_file else {
        return Ok(());
    };
    if principals.admin_exists().await? {
        if path.exists() {
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        return Ok(());
    }
    if !path.exists() {
        let mut bytes = [0u8; 16];
        writ_core::clock::RandomSource::fill(&writ_engine::principals::OsRandom, &mut bytes)
            .map_err(|e| anyhow::anyhow!("no randomness for the setup code: {e}"))?;
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_private(path, &text).with_context(|| path.display().to_string())?;
    }
    refuse_shared_secret_file(path)?;
    tracing::warn!(
        file = %path.display(),
        "no admin yet: open {}/setup and enter the setup code from this file (or run `writ principal add NAME --role admin --bootstrap`)",
        console.public_url
    );
    Ok(())
}

/// Writes a new file readable by its owner only; never overwrites.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn refuse_shared_secret_file(path: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read secret_file {}", path.display()))?;
        anyhow::ensure!(
            meta.permissions().mode() & 0o077 == 0,
            "secret_file {} is readable by group or others; chmod 600 it",
            path.display()
        );
    }
    Ok(())
}

pub async fn shutdown_signal() {
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
