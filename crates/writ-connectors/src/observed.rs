//! A connector that reports each call it passes on (operation, time taken, success) to a
//! [`CallObserver`]: how `writ serve` measures target latency for its metrics without any
//! connector knowing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{
    Action, ApplyOutcome, Capabilities, Connector, ConnectorError, DiscoveredObject, KeyRotation,
    ObjectState, Plan, Verification,
};

/// Told about every target call an [`Observed`] connector makes.
pub trait CallObserver: Send + Sync + std::fmt::Debug {
    /// `system`'s `operation` (`discover`, `read`, `plan`, `apply`, `verify`, `rollback`) took
    /// `took` and succeeded or not.
    fn target_called(&self, system: &str, operation: &'static str, took: Duration, ok: bool);
}

/// `inner`, with each call timed and reported.
#[derive(Debug)]
pub struct Observed {
    inner: Arc<dyn Connector>,
    observer: Arc<dyn CallObserver>,
}

impl Observed {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Connector>, observer: Arc<dyn CallObserver>) -> Self {
        Self { inner, observer }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, ConnectorError>>,
    ) -> Result<T, ConnectorError> {
        let started = Instant::now();
        let result = call.await;
        self.observer.target_called(
            self.inner.system(),
            operation,
            started.elapsed(),
            result.is_ok(),
        );
        result
    }
}

#[async_trait]
impl Connector for Observed {
    fn system(&self) -> &str {
        self.inner.system()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn discover(&self) -> Result<Vec<DiscoveredObject>, ConnectorError> {
        self.timed("discover", self.inner.discover()).await
    }

    async fn read(&self, external_id: &str) -> Result<ObjectState, ConnectorError> {
        self.timed("read", self.inner.read(external_id)).await
    }

    async fn plan(&self, external_id: &str, action: &Action) -> Result<Plan, ConnectorError> {
        self.timed("plan", self.inner.plan(external_id, action))
            .await
    }

    async fn apply(
        &self,
        plan: &Plan,
        idempotency_key: &str,
    ) -> Result<ApplyOutcome, ConnectorError> {
        self.timed("apply", self.inner.apply(plan, idempotency_key))
            .await
    }

    async fn verify(&self, plan: &Plan) -> Result<Verification, ConnectorError> {
        self.timed("verify", self.inner.verify(plan)).await
    }

    async fn rollback(&self, plan: &Plan) -> Result<ApplyOutcome, ConnectorError> {
        self.timed("rollback", self.inner.rollback(plan)).await
    }

    fn key_rotation(&self) -> Option<&dyn KeyRotation> {
        self.inner.key_rotation()
    }
}
