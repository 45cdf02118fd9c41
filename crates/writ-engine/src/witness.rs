//! The log's side of witnessing: asking each configured witness (C2SP `tlog-witness`) to
//! co-sign every checkpoint as it is made, and keeping the co-signatures.
//!
//! A witness co-signs a checkpoint only with an RFC 6962 consistency proof from the last one it
//! co-signed, so a history rewritten in the database (truncated, or changed and signed again)
//! is refused by every witness. [`WitnessClient`] is a [`CheckpointSink`]: it builds the proof
//! from the tree it last had co-signed (its frontier) and the leaf hashes since, read from the
//! store; when the witness answers `409` with the size it has, it starts again from that size.
//! Each co-signature is checked against the witness's key before it is stored
//! (`witness_cosignatures`); `writ audit verify --witness-key` checks them again.

use std::sync::Arc;

use writ_ledger::{
    AddCheckpoint, Hash, TreeBuilder, WitnessVerifier, leaf_hash, parse_size_body,
    verify_cosignatures,
};
use writ_store::{CosignatureRow, Store};

use crate::publish::{CheckpointSink, PublishError, SignedCheckpoint};

/// One witness the ledger asks to co-sign its checkpoints.
#[derive(Debug)]
pub struct WitnessClient {
    url: String,
    verifier: WitnessVerifier,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    clock: Arc<dyn writ_core::Clock>,
    /// The tree the witness last co-signed, as far as this process knows.
    cosigned: tokio::sync::Mutex<Option<TreeBuilder>>,
}

impl WitnessClient {
    /// A client for the witness at `url` (its `add-checkpoint` endpoint is `url` +
    /// `/add-checkpoint`), whose co-signatures verify with `verifier`.
    pub fn new(
        url: &str,
        verifier: WitnessVerifier,
        store: Arc<dyn Store>,
        clock: Arc<dyn writ_core::Clock>,
    ) -> Result<Self, PublishError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|err| PublishError::Failed {
                sink: format!("witness {}", verifier.name()),
                detail: format!("HTTP client: {err}"),
            })?;
        Ok(Self {
            url: format!("{}/add-checkpoint", url.trim_end_matches('/')),
            verifier,
            http,
            store,
            clock,
            cosigned: tokio::sync::Mutex::new(None),
        })
    }

    /// The stored leaf hashes `from..to`, each recomputed from its leaf.
    async fn leaf_hashes(&self, from: u64, to: u64) -> Result<Vec<Hash>, PublishError> {
        let mut hashes = Vec::new();
        let mut next = from;
        while next < to {
            let want = u32::try_from((to - next).min(10_000)).unwrap_or(10_000);
            let page = self
                .store
                .entries(next, want)
                .await
                .map_err(|err| self.failed(err.to_string()))?;
            if page.is_empty() {
                return Err(self.failed(format!(
                    "the ledger holds {next} entries, fewer than {to}: it was truncated"
                )));
            }
            for row in page {
                if row.seq != next {
                    return Err(self.failed(format!("entry {next} is missing")));
                }
                hashes.push(leaf_hash(&row.leaf));
                next += 1;
                if next == to {
                    break;
                }
            }
        }
        Ok(hashes)
    }

    /// The tree of the first `size` stored entries.
    async fn tree_at(&self, size: u64) -> Result<TreeBuilder, PublishError> {
        let mut tree = TreeBuilder::new();
        for hash in self.leaf_hashes(0, size).await? {
            tree.push(hash);
        }
        Ok(tree)
    }

    /// This witness's newest co-signature, as the store recorded it.
    async fn recorded(&self) -> Result<Option<CosignatureRow>, PublishError> {
        let rows = self
            .store
            .cosignatures()
            .await
            .map_err(|err| self.failed(err.to_string()))?;
        Ok(rows
            .into_iter()
            .find(|row| row.witness == self.verifier.name()))
    }
}

#[async_trait::async_trait]
impl CheckpointSink for WitnessClient {
    fn name(&self) -> String {
        format!("witness {}", self.verifier.name())
    }

    async fn publish(&self, checkpoint: &SignedCheckpoint) -> Result<(), PublishError> {
        let mut cosigned = self.cosigned.lock().await;
        let mut old = match cosigned.take() {
            Some(tree) => tree,
            None => {
                let recorded = self.recorded().await?;
                let already = recorded.as_ref().is_some_and(|row| {
                    row.size == checkpoint.size
                        && verify_cosignatures(
                            &format!("{}{}\n", checkpoint.note, row.cosignature.trim_end()),
                            std::slice::from_ref(&self.verifier),
                        )
                        .is_ok()
                });
                if already {
                    // At start, with this very checkpoint co-signed: nothing to ask, and no
                    // need to read the leaves for the tree the witness holds.
                    *cosigned = Some(checkpoint.tree.clone());
                    return Ok(());
                }
                self.tree_at(recorded.map_or(0, |row| row.size)).await?
            }
        };
        // Twice at most: once from what we believe, once from the size the witness says.
        for _ in 0..2 {
            if old.size() > checkpoint.size {
                return Err(PublishError::Refused {
                    sink: self.name(),
                    size: checkpoint.size,
                    detail: format!(
                        "the witness has co-signed a tree of {} entries, larger than this checkpoint's {}: the ledger was truncated",
                        old.size(),
                        checkpoint.size
                    ),
                });
            }
            let appended = self.leaf_hashes(old.size(), checkpoint.size).await?;
            let request = AddCheckpoint {
                old_size: old.size(),
                proof: old.consistency_proof_to(&appended),
                note: checkpoint.note.clone(),
            };
            let response = self
                .http
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(request.to_body())
                .send()
                .await
                .map_err(|err| self.failed(format!("POST {}: {err}", self.url)))?;
            let status = response.status().as_u16();
            let size_answer = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/x.tlog.size"));
            let body = response
                .text()
                .await
                .map_err(|err| self.failed(format!("reading the answer: {err}")))?;
            match status {
                200 => {
                    let note = format!("{}{}", checkpoint.note, body);
                    let verified = verify_cosignatures(&note, std::slice::from_ref(&self.verifier))
                        .map_err(|err| {
                            self.failed(format!(
                                "the witness answered with a co-signature that does not verify: {err}"
                            ))
                        })?;
                    // The row's time is the one the co-signature signs, so it can be checked.
                    let signed_at = verified
                        .first()
                        .and_then(|v| i64::try_from(v.time_unix).ok())
                        .and_then(|s| jiff::Timestamp::from_second(s).ok())
                        .unwrap_or_else(|| self.clock.now());
                    let cosignature = body
                        .lines()
                        .find(|line| {
                            line.starts_with(&format!("\u{2014} {} ", self.verifier.name()))
                        })
                        .unwrap_or(body.trim_end())
                        .to_owned();
                    self.store
                        .put_cosignature(&CosignatureRow {
                            witness: self.verifier.name().to_owned(),
                            size: checkpoint.size,
                            cosignature,
                            time: signed_at,
                        })
                        .await
                        .map_err(|err| self.failed(err.to_string()))?;
                    *cosigned = Some(checkpoint.tree.clone());
                    return Ok(());
                }
                409 if size_answer => {
                    let size = parse_size_body(&body)
                        .map_err(|err| self.failed(format!("the witness's size answer: {err}")))?;
                    if size > checkpoint.size {
                        return Err(PublishError::Refused {
                            sink: self.name(),
                            size: checkpoint.size,
                            detail: format!(
                                "the witness has co-signed a tree of {size} entries, larger than this checkpoint's {}: the ledger was truncated",
                                checkpoint.size
                            ),
                        });
                    }
                    old = self.tree_at(size).await?;
                }
                _ => {
                    return Err(PublishError::Refused {
                        sink: self.name(),
                        size: checkpoint.size,
                        detail: format!("HTTP {status}: {}", body.trim()),
                    });
                }
            }
        }
        Err(self.failed("the witness kept answering with another size"))
    }
}
