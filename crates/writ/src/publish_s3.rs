//! Publishing checkpoints to S3 under Object Lock in compliance mode (`[ledger.s3]`): one
//! object per checkpoint, its key naming the tree size, retained so that no one (the root
//! account included) can delete or overwrite it before the retention date. The bucket must
//! have Object Lock enabled: writ checks before the first write and refuses otherwise, as a
//! bucket without it would let the database's operators remove what should outlive them.

use std::sync::Arc;

use tokio::sync::OnceCell;
use writ_connector_aws::s3::{PutOnce, S3};
use writ_connector_aws::{AwsClient, AwsConfig};
use writ_engine::publish::{CheckpointSink, PublishError, SignedCheckpoint, checkpoint_file_name};

use crate::config::S3PublishConfig;

/// The S3 sink.
#[derive(Debug)]
pub struct S3Sink {
    s3: S3,
    bucket: String,
    prefix: String,
    retain: jiff::SignedDuration,
    clock: Arc<dyn writ_core::Clock>,
    lock_checked: OnceCell<()>,
}

impl S3Sink {
    /// The sink `[ledger.s3]` describes: credentials from the standard environment
    /// (`AWS_ACCESS_KEY_ID`, ...), region and endpoint from the section when given.
    pub fn from_config(config: &S3PublishConfig) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let mut aws = AwsConfig::from_env()
            .context("[ledger.s3]: AWS credentials (AWS_ACCESS_KEY_ID, ...)")?;
        if let Some(region) = &config.region {
            aws.region = region.clone();
        }
        if let Some(endpoint) = &config.endpoint {
            aws = aws
                .with_endpoint(endpoint)
                .context("[ledger.s3]: bad endpoint")?;
        }
        writ_connector_aws::s3::check_name("bucket", &config.bucket)?;
        if !config.prefix.is_empty() {
            writ_connector_aws::s3::check_name("prefix", &config.prefix)?;
        }
        if config.retain_days == 0 {
            anyhow::bail!("[ledger.s3] retain_days must be at least 1");
        }
        Ok(Self {
            s3: S3::new(AwsClient::new(aws)?),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            retain: jiff::SignedDuration::from_hours(i64::from(config.retain_days) * 24),
            clock: Arc::new(writ_core::SystemClock),
            lock_checked: OnceCell::new(),
        })
    }
}

#[async_trait::async_trait]
impl CheckpointSink for S3Sink {
    fn name(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    async fn publish(&self, checkpoint: &SignedCheckpoint) -> Result<(), PublishError> {
        self.lock_checked
            .get_or_try_init(|| async {
                match self.s3.object_lock_enabled(&self.bucket).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(self.failed(
                        "the bucket does not have Object Lock enabled: refusing to publish checkpoints where they could be deleted",
                    )),
                    Err(err) => Err(self.failed(err.to_string())),
                }
            })
            .await?;
        let key = format!("{}{}", self.prefix, checkpoint_file_name(checkpoint.size));
        let until = self.clock.now() + self.retain;
        match self
            .s3
            .put_locked_once(&self.bucket, &key, checkpoint.note.as_bytes(), until)
            .await
            .map_err(|err| self.failed(err.to_string()))?
        {
            PutOnce::Created => Ok(()),
            PutOnce::Exists => {
                let existing = self
                    .s3
                    .get(&self.bucket, &key)
                    .await
                    .map_err(|err| self.failed(err.to_string()))?;
                if existing.as_deref() == Some(checkpoint.note.as_str()) {
                    Ok(())
                } else {
                    Err(PublishError::Fork {
                        sink: self.name(),
                        size: checkpoint.size,
                    })
                }
            }
        }
    }
}
