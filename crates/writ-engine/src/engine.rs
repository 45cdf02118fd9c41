//! The composition root: one place that wires a store, the ledger's signing key, a clock, an
//! id source, a policy bundle and the target connectors into running services.
//!
//! `writ serve`, every CLI command that writes, the benches and the tests build their engine
//! here, so the services are always wired the same way (one sequencer per process, shared by
//! ingest and write-back; the same clock and id source everywhere).
//!
//! ```no_run
//! # async fn example(store: std::sync::Arc<dyn writ_store::Store>, key: writ_ledger::SignerKey) {
//! let engine = writ_engine::Engine::builder(store, key).start().await.unwrap();
//! engine.writeback.run_once().await.unwrap();
//! # }
//! ```

use std::sync::Arc;

use writ_connectors::Connector;
use writ_core::clock::RandomIds;
use writ_core::{Clock, IdSource, RandomSource, SystemClock};
use writ_ledger::SignerKey;
use writ_policy::PolicyBundle;
use writ_store::Store;

use crate::ingest::{IngestSettings, Ingestor};
use crate::principals::{OsRandom, Principals};
use crate::sequencer::{AppendError, Sequencer, SequencerConfig};
use crate::writeback::{WriteBack, WriteBackSettings};

/// writ's services, wired and running.
#[derive(Debug, Clone)]
pub struct Engine {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The one ledger writer of this process.
    pub sequencer: Sequencer,
    /// The clock every service reads.
    pub clock: Arc<dyn Clock>,
    /// The id source every service draws from.
    pub ids: Arc<dyn IdSource>,
    /// The ingest pipeline, when a policy bundle was given.
    pub ingestor: Option<Ingestor>,
    /// Approvals, the write-back worker and rollback.
    pub writeback: WriteBack,
    /// Principals and their tokens.
    pub principals: Principals,
    /// The ledger's public key (what offline bundles embed).
    pub verifier: writ_ledger::VerifierKey,
}

impl Engine {
    /// A builder over `store`, signing checkpoints with `key`; the system clock, random ids,
    /// no policy, no connectors and default settings until told otherwise.
    pub fn builder(store: Arc<dyn Store>, key: SignerKey) -> EngineBuilder {
        EngineBuilder {
            store,
            key,
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            random: Arc::new(OsRandom),
            policy: None,
            connectors: Vec::new(),
            sequencer: SequencerConfig::default(),
            ingest: IngestSettings::default(),
            writeback: WriteBackSettings::default(),
            auth_cache: std::time::Duration::ZERO,
        }
    }

    /// The ingest pipeline.
    ///
    /// # Errors
    /// When the engine was built without a policy bundle.
    pub fn ingestor(&self) -> Result<&Ingestor, NoPolicy> {
        self.ingestor.as_ref().ok_or(NoPolicy)
    }

    /// Another write-back worker on the same store, ledger and targets (its own lease
    /// holder), as a second replica would have.
    pub fn another_worker(&self, settings: WriteBackSettings) -> WriteBack {
        self.writeback.clone().as_new_worker(settings)
    }
}

/// The engine was built without a policy bundle, so it cannot decide findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no policy bundle is configured")]
pub struct NoPolicy;

/// How to build an [`Engine`]; see [`Engine::builder`].
#[derive(Debug)]
pub struct EngineBuilder {
    store: Arc<dyn Store>,
    key: SignerKey,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    random: Arc<dyn RandomSource>,
    policy: Option<Arc<PolicyBundle>>,
    connectors: Vec<Arc<dyn Connector>>,
    sequencer: SequencerConfig,
    ingest: IngestSettings,
    writeback: WriteBackSettings,
    auth_cache: std::time::Duration,
}

impl EngineBuilder {
    /// How long a successful authentication is kept (zero, the default: not at all); see
    /// [`Principals::with_auth_cache`].
    pub fn auth_cache(mut self, ttl: std::time::Duration) -> Self {
        self.auth_cache = ttl;
        self
    }

    /// The clock (a manual one in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The id source (sequential ids in tests).
    pub fn ids(mut self, ids: Arc<dyn IdSource>) -> Self {
        self.ids = ids;
        self
    }

    /// The source of token secrets (a predictable one in tests).
    pub fn random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = random;
        self
    }

    /// The policy bundle that decides findings.
    pub fn policy(mut self, policy: Arc<PolicyBundle>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The target connectors write-back may use.
    pub fn connectors(mut self, connectors: Vec<Arc<dyn Connector>>) -> Self {
        self.connectors = connectors;
        self
    }

    /// Group-commit settings.
    pub fn sequencer_config(mut self, config: SequencerConfig) -> Self {
        self.sequencer = config;
        self
    }

    /// Ingest settings.
    pub fn ingest_settings(mut self, settings: IngestSettings) -> Self {
        self.ingest = settings;
        self
    }

    /// Write-back settings.
    pub fn writeback_settings(mut self, settings: WriteBackSettings) -> Self {
        self.writeback = settings;
        self
    }

    /// Starts the sequencer (checking the stored ledger against the key) and wires the rest.
    ///
    /// # Errors
    /// When the stored ledger cannot be extended with this key, or the store fails.
    pub async fn start(self) -> Result<Engine, AppendError> {
        let verifier = self
            .key
            .verifier_key()
            .map_err(|err| AppendError::Untrusted(format!("the ledger key: {err}")))?;
        let sequencer = Sequencer::start(
            self.store.clone(),
            self.key,
            self.clock.clone(),
            self.sequencer,
        )
        .await?;
        let policy = self.policy;
        let ingestor = policy.clone().map(|policy| {
            Ingestor::new(
                self.store.clone(),
                sequencer.clone(),
                self.clock.clone(),
                self.ids.clone(),
                policy,
                self.ingest,
            )
        });
        let writeback = WriteBack::new(
            self.store.clone(),
            sequencer.clone(),
            self.clock.clone(),
            self.ids.clone(),
            self.connectors,
            self.writeback,
        )
        .with_policy(policy)
        .with_ingestor(ingestor.clone());
        let principals = Principals::new(
            self.store.clone(),
            sequencer.clone(),
            self.clock.clone(),
            self.ids.clone(),
            self.random,
        )
        .with_auth_cache(self.auth_cache);
        Ok(Engine {
            principals,
            store: self.store,
            sequencer,
            clock: self.clock,
            ids: self.ids,
            ingestor,
            writeback,
            verifier,
        })
    }
}
