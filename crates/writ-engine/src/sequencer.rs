//! The sequencer: the one writer of the ledger, with group commit.
//!
//! Callers send [`Draft`]s; a single task gathers whatever is queued (up to
//! [`SequencerConfig::max_batch`], waiting at most [`SequencerConfig::linger`] for more), assigns
//! sequence numbers and the time from the injected clock, encodes each event as a canonical
//! leaf, extends the Merkle tree, signs **one** checkpoint for the batch, and hands the store one
//! [`CommitBatch`] holding the entries, the checkpoint, the evidence and the projection effects.
//! Only after that transaction commits does any caller get its [`Appended`]. If the commit fails,
//! every caller in the batch gets the error and the in-memory tree is left as it was: nothing
//! changed anywhere (fail closed).
//!
//! Idempotency: a draft whose key is already in the ledger (or earlier in the same batch)
//! returns the original entry with `duplicate: true` and appends nothing.
//!
//! Groups: [`Sequencer::append_groups`] takes drafts in groups that are recorded all or nothing
//! (a finding's events, say: never a decision without its finding). A request is never split
//! across transactions; when a transaction is refused, the groups are retried one by one so
//! that only the group at fault fails.
//!
//! Several replicas may run a sequencer against one PostgreSQL: when another replica has
//! appended first, the store answers `HeadMoved`, and the sequencer reads the new entries,
//! extends its tree and retries.
//!
//! Fail closed at start: the sequencer recomputes every stored leaf's hash from the leaf (the
//! stored hash column is not trusted), and refuses to extend a ledger whose latest checkpoint
//! does not verify with the key, does not match the stored entries, or leaves entries that no
//! checkpoint covers (`writ admin seal` checks and seals such a tail, as an event). Every
//! checkpoint committed is handed to the configured [`crate::publish::CheckpointSink`]s before
//! the callers are answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::publish::{CheckpointSink, SignedCheckpoint};
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use writ_core::case::CaseState;
use writ_core::event::{ControlTag, EventBody, EventKind, FindingReceived, secret_fields};
use writ_core::ids::{CaseId, JobId};
use writ_core::job::JobState;
use writ_core::projection::{Projection, project};
use writ_core::workflow::{IllegalTransition, case_transition, job_transition};
use writ_core::{Clock, Sha256Digest};
use writ_ledger::{Checkpoint, Hash, SignerKey, TreeBuilder, encode_members_leaf, leaf_hash, sign};
use writ_store::{
    CheckpointRow, CommitBatch, Effect, EvidenceRow, Expectation, LedgerRow, Store, StoreError,
};

/// An event to append, before the sequencer gives it a place and a time.
///
/// A draft that changes a case or a job (its body carries a case or job snapshot) must say,
/// in `expect`, what state and version of it the writer read, unless an earlier draft of the
/// same group made it: the sequencer checks every such change against the state machine
/// ([`writ_core::workflow`]) from that state, and the store checks that the state still holds
/// in the same transaction (a conditional append). So a transition is legal when it is
/// recorded, not only when it was decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// The case it belongs to.
    pub case_id: Option<CaseId>,
    /// Who or what caused it.
    pub actor: String,
    /// Unique per logical event; a retry with the same key returns the first entry.
    pub idempotency_key: String,
    /// The policy bundle that decided, where a decision was made.
    pub policy_bundle: Option<Sha256Digest>,
    /// Control framework references.
    pub controls: Vec<ControlTag>,
    /// The payload, with the snapshots of whatever it changes.
    pub body: EventBody,
    /// Raw evidence to store beside the ledger; the event records only the digests.
    pub evidence: Vec<EvidenceBlob>,
    /// What the writer read of the cases and jobs this draft changes.
    pub expect: Vec<Expectation>,
}

impl Draft {
    /// A draft of `body` by `actor` under `idempotency_key`, with nothing else set.
    pub fn new(
        case_id: Option<CaseId>,
        actor: impl Into<String>,
        idempotency_key: impl Into<String>,
        body: EventBody,
    ) -> Self {
        Draft {
            case_id,
            actor: actor.into(),
            idempotency_key: idempotency_key.into(),
            policy_bundle: None,
            controls: Vec::new(),
            body,
            evidence: Vec::new(),
            expect: Vec::new(),
        }
    }

    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }
}

/// A draft with its body encoded as JSON once, on the caller's task: the secret check and the
/// leaf both read it.
#[derive(Debug, Clone)]
struct Encoded {
    draft: Draft,
    body: serde_json::Value,
}

/// Raw evidence (a finding exactly as received, a pre-image), stored by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceBlob {
    /// Media type, for example `application/json`.
    pub media_type: String,
    /// The bytes, unchanged.
    pub bytes: Vec<u8>,
}

/// Where an event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence number.
    pub seq: u64,
    /// Its RFC 6962 leaf hash.
    pub leaf_hash: [u8; 32],
    /// Its time.
    pub time: Timestamp,
    /// True when the idempotency key was already used and this is the original entry.
    pub duplicate: bool,
}

/// Why an append failed. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The event body holds a field that names secret material.
    #[error("refusing to record secret material in the ledger (field {pointer})")]
    SecretInEvent {
        /// JSON pointer to the field.
        pointer: String,
    },
    /// The event could not be encoded as a canonical leaf.
    #[error("cannot encode the event: {0}")]
    Encode(String),
    /// A unique value other than the idempotency key (say, a finding's key) is taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store failed; the batch was rolled back.
    #[error("the ledger could not be written: {0}")]
    Storage(String),
    /// The stored ledger does not match the signing key or its own checkpoints.
    #[error("the stored ledger cannot be extended: {0}")]
    Untrusted(String),
    /// The event is not a legal step of its case or job from the state before it.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// A case or job changed since the writer read it; read again and decide again.
    #[error("{0}")]
    Stale(String),
    /// The sequencer has stopped.
    #[error("the ledger sequencer has stopped")]
    Stopped,
}

/// Group-commit settings.
#[derive(Debug, Clone)]
pub struct SequencerConfig {
    /// The most events in one transaction.
    pub max_batch: usize,
    /// How long to wait for more events once one has arrived (zero: take what is queued).
    pub linger: Duration,
    /// Queue length before callers wait.
    pub queue: usize,
    /// The webhook endpoints and the notification kinds each receives: a notification an
    /// entry calls for is written to the outbox in the entry's transaction.
    pub webhooks: Vec<WebhookRoute>,
    /// Where each committed checkpoint is published (a directory, S3, witnesses).
    pub publish: Vec<Arc<dyn CheckpointSink>>,
    /// Start on a ledger whose newest entries no checkpoint covers (only `writ admin seal`,
    /// which appends the event that covers them).
    pub accept_unsigned_tail: bool,
    /// Told about each transaction committed (for `writ serve`'s metrics).
    pub commit_observer: Option<Arc<dyn CommitObserver>>,
}

/// Told about each ledger transaction the writer commits, or fails to.
pub trait CommitObserver: Send + Sync + std::fmt::Debug {
    /// `entries` events were committed together (`ok`), or refused, in `took`.
    fn ledger_committed(&self, entries: usize, took: Duration, ok: bool);
}

/// A `[[webhooks]]` endpoint's name and the notification kinds it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRoute {
    /// The endpoint's name.
    pub endpoint: String,
    /// What it receives.
    pub kinds: Vec<writ_core::notification::NotificationKind>,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            linger: Duration::ZERO,
            queue: 8192,
            webhooks: Vec::new(),
            publish: Vec::new(),
            accept_unsigned_tail: false,
            commit_observer: None,
        }
    }
}

/// One caller's groups of drafts, committed in one transaction, each group all or nothing.
struct Request {
    groups: Vec<Vec<Encoded>>,
    reply: oneshot::Sender<Vec<Vec<Result<Appended, AppendError>>>>,
}

impl Request {
    fn len(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }
}

/// A handle to the running sequencer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sequencer {
    tx: mpsc::Sender<Request>,
}

impl Sequencer {
    /// Loads the ledger's tree from the store, checks the latest checkpoint against it and the
    /// key, and starts the writer task.
    pub async fn start(
        store: Arc<dyn Store>,
        key: SignerKey,
        clock: Arc<dyn Clock>,
        config: SequencerConfig,
    ) -> Result<Self, AppendError> {
        let loaded = load(&*store, &key).await?;
        if let Some((signed, entries)) = loaded.unsigned_tail()
            && !config.accept_unsigned_tail
        {
            return Err(AppendError::Untrusted(format!(
                "entries {signed}..{entries} are covered by no signed checkpoint (a crash, a database from an older writ, or tampering); check them with `writ audit verify` and seal them with `writ admin seal --reason TEXT`"
            )));
        }
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let mut writer = Writer {
            store,
            key,
            clock,
            config,
            tree: loaded.tree,
            last: loaded.latest,
            published: 0,
        };
        // A crash between a commit and its publication heals here.
        writer.publish().await;
        tokio::spawn(writer.run(rx));
        Ok(Self { tx })
    }

    /// Appends one event and waits until it is committed.
    pub async fn append(&self, draft: Draft) -> Result<Appended, AppendError> {
        self.append_groups(vec![vec![draft]])
            .await
            .pop()
            .and_then(|mut group| group.pop())
            .unwrap_or(Err(AppendError::Stopped))
    }

    /// Appends one group of events, recorded whole or not at all. Results come back per
    /// event, in order (empty only when the sequencer stopped).
    pub async fn append_group(&self, group: Vec<Draft>) -> Vec<Result<Appended, AppendError>> {
        self.append_groups(vec![group])
            .await
            .pop()
            .unwrap_or_default()
    }

    /// Appends several independent events in one request, so they share a transaction when
    /// possible; each succeeds or fails on its own. Results come back in order.
    pub async fn append_all(&self, drafts: Vec<Draft>) -> Vec<Result<Appended, AppendError>> {
        self.append_groups(drafts.into_iter().map(|d| vec![d]).collect())
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Appends groups of events in one request. Each group is recorded whole or not at all;
    /// one group failing does not fail the others. Results come back per group, in order.
    pub async fn append_groups(
        &self,
        groups: Vec<Vec<Draft>>,
    ) -> Vec<Vec<Result<Appended, AppendError>>> {
        self.submit_groups(groups).await.results().await
    }

    /// Hands groups of events to the writer and returns once they are queued, behind every
    /// request queued before and ahead of every request queued after; their results come
    /// from [`Submitted::results`]. A pipeline uses this to hand its next batch over while
    /// the one before is still committing (the writer may commit both together).
    pub async fn submit_groups(&self, groups: Vec<Vec<Draft>>) -> Submitted {
        // A group with a secret-named field is refused whole, before anything is sent.
        let mut refused: Vec<Option<(AppendError, usize)>> = Vec::with_capacity(groups.len());
        let mut send = Vec::with_capacity(groups.len());
        for group in groups {
            let size = group.len();
            match encode_group(group) {
                Ok(encoded) => {
                    refused.push(None);
                    send.push(encoded);
                }
                Err(err) => {
                    refused.push(Some((err, size)));
                    send.push(Vec::new());
                }
            }
        }
        let sizes: Vec<usize> = send.iter().map(Vec::len).collect();
        let answer = if sizes.iter().all(|&n| n == 0) {
            Answer::Ready(send.iter().map(|_| Vec::new()).collect())
        } else {
            let (reply, receive) = oneshot::channel();
            match self
                .tx
                .send(Request {
                    groups: send,
                    reply,
                })
                .await
            {
                Ok(()) => Answer::Queued(receive),
                Err(_) => Answer::Stopped,
            }
        };
        Submitted {
            refused,
            sizes,
            answer,
        }
    }
}

/// Groups handed to the writer ([`Sequencer::submit_groups`]), their results to come.
#[derive(Debug)]
#[must_use = "the results say which groups were recorded"]
pub struct Submitted {
    refused: Vec<Option<(AppendError, usize)>>,
    sizes: Vec<usize>,
    answer: Answer,
}

#[derive(Debug)]
enum Answer {
    /// Nothing was sent (every group refused or empty).
    Ready(Vec<Vec<Result<Appended, AppendError>>>),
    Queued(oneshot::Receiver<Vec<Vec<Result<Appended, AppendError>>>>),
    Stopped,
}

impl Submitted {
    /// One result per draft, per group, in order, once the writer has committed them.
    pub async fn results(self) -> Vec<Vec<Result<Appended, AppendError>>> {
        let Submitted {
            refused,
            sizes,
            answer,
        } = self;
        let answered = match answer {
            Answer::Ready(ready) => Ok(ready),
            Answer::Queued(receive) => receive.await.map_err(|_| AppendError::Stopped),
            Answer::Stopped => Err(AppendError::Stopped),
        };
        let mut answered = match answered {
            Ok(answered) => answered.into_iter(),
            Err(err) => sizes
                .iter()
                .map(|&n| vec![Err(err.clone()); n])
                .collect::<Vec<_>>()
                .into_iter(),
        };
        refused
            .into_iter()
            .map(|refusal| {
                let group = answered.next().unwrap_or_default();
                match refusal {
                    Some((err, n)) => vec![Err(err); n],
                    None => group,
                }
            })
            .collect()
    }
}

/// Encodes each draft's body once, refusing the whole group if any holds a secret-named field.
fn encode_group(group: Vec<Draft>) -> Result<Vec<Encoded>, AppendError> {
    group
        .into_iter()
        .map(|draft| {
            let body = draft
                .body
                .to_value()
                .map_err(|err| AppendError::Encode(err.to_string()))?;
            if let Some(pointer) = secret_fields(&body).into_iter().next() {
                return Err(AppendError::SecretInEvent { pointer });
            }
            Ok(Encoded { draft, body })
        })
        .collect()
}

/// Extends `tree` with every stored entry beyond its size, recomputing each leaf's hash (the
/// stored hash must agree). `at` is called with the tree after each entry.
async fn catch_up(
    store: &dyn Store,
    tree: &mut TreeBuilder,
    at: &mut (dyn FnMut(&TreeBuilder) + Send),
) -> Result<(), AppendError> {
    loop {
        let page = store.entries(tree.size(), 10_000).await.map_err(storage)?;
        if page.is_empty() {
            return Ok(());
        }
        for row in page {
            if row.seq != tree.size() {
                return Err(AppendError::Untrusted(format!(
                    "entry {} found where {} was expected; run `writ audit verify`",
                    row.seq,
                    tree.size()
                )));
            }
            let hash = leaf_hash(&row.leaf);
            if hash.0 != row.leaf_hash {
                return Err(AppendError::Untrusted(format!(
                    "entry {}: its stored hash is not its leaf's; run `writ audit verify`",
                    row.seq
                )));
            }
            tree.push(hash);
            at(tree);
        }
    }
}

/// The stored ledger as the sequencer found it at start.
struct Loaded {
    /// Every stored entry, hashes recomputed.
    tree: TreeBuilder,
    /// The latest checkpoint (verified, and matching the entries at its size), with the tree
    /// at its size.
    latest: Option<SignedCheckpoint>,
}

impl Loaded {
    /// `(signed, entries)` when entries beyond the latest checkpoint exist.
    fn unsigned_tail(&self) -> Option<(u64, u64)> {
        let signed = self.latest.as_ref().map_or(0, |c| c.size);
        (signed < self.tree.size()).then_some((signed, self.tree.size()))
    }
}

/// Loads the stored ledger and checks its latest checkpoint: signed by this key, its stored
/// root the one it signs, and the root of the stored entries at its size.
async fn load(store: &dyn Store, key: &SignerKey) -> Result<Loaded, AppendError> {
    let latest = store.latest_checkpoint().await.map_err(storage)?;
    let checkpoint = latest
        .as_ref()
        .map(|row| open_stored(row, key))
        .transpose()?;
    let mut tree = TreeBuilder::new();
    let mut at_checkpoint = (checkpoint.as_ref().map(|c| c.size) == Some(0)).then(TreeBuilder::new);
    let wanted = checkpoint.as_ref().map(|c| c.size);
    catch_up(store, &mut tree, &mut |tree| {
        if Some(tree.size()) == wanted {
            at_checkpoint = Some(tree.clone());
        }
    })
    .await?;
    let latest = match (checkpoint, latest) {
        (Some(signed), Some(row)) => {
            let Some(frontier) = at_checkpoint else {
                return Err(AppendError::Untrusted(format!(
                    "the latest checkpoint covers {} entries but {} are stored: entries were removed; run `writ audit verify`",
                    signed.size,
                    tree.size()
                )));
            };
            if frontier.root() != signed.root {
                return Err(AppendError::Untrusted(format!(
                    "the stored entries do not hash to the latest checkpoint (size {}); run `writ audit verify`",
                    signed.size
                )));
            }
            Some(SignedCheckpoint {
                size: signed.size,
                root: signed.root,
                note: row.note,
                tree: frontier,
            })
        }
        _ => None,
    };
    Ok(Loaded { tree, latest })
}

/// The stored checkpoint `row`, opened with `key`'s public half: its note must verify, and its
/// stored size and root must be the ones the note signs.
fn open_stored(row: &CheckpointRow, key: &SignerKey) -> Result<Checkpoint, AppendError> {
    let verifier = key
        .verifier_key()
        .map_err(|err| AppendError::Untrusted(err.to_string()))?;
    let signed = writ_ledger::open(&row.note, &verifier).map_err(|err| {
        AppendError::Untrusted(format!(
            "the latest checkpoint (size {}) does not verify with this signing key: {err}",
            row.size
        ))
    })?;
    if signed.root.0 != row.root || signed.size != row.size {
        return Err(AppendError::Untrusted(format!(
            "the latest checkpoint's stored size or root (size {}) is not what its note signs; run `writ audit verify`",
            row.size
        )));
    }
    Ok(signed)
}

/// `(signed, entries)` when the stored ledger has entries no checkpoint covers: what
/// `writ admin seal` would seal. Refuses, like the sequencer, a ledger whose latest checkpoint
/// does not verify or match.
pub async fn unsigned_tail(
    store: &dyn Store,
    key: &SignerKey,
) -> Result<Option<(u64, u64)>, AppendError> {
    Ok(load(store, key).await?.unsigned_tail())
}

/// How often a batch is retried after another replica moved the head.
const MAX_HEAD_RETRIES: u32 = 64;

/// Up to `attempt` x 500 microseconds, randomised.
// Backoff jitter: must differ between replicas, and never reaches the ledger.
#[allow(clippy::disallowed_methods)]
fn backoff(attempt: u32) -> Duration {
    let mut random = [0u8; 2];
    let jitter = if getrandom::fill(&mut random).is_ok() {
        u64::from(u16::from_le_bytes(random)) % 500
    } else {
        250
    };
    Duration::from_micros(jitter * u64::from(attempt.min(20)))
}

fn storage(err: StoreError) -> AppendError {
    AppendError::Storage(err.to_string())
}

struct Writer {
    store: Arc<dyn Store>,
    key: SignerKey,
    clock: Arc<dyn Clock>,
    config: SequencerConfig,
    tree: TreeBuilder,
    /// The latest checkpoint committed (or found at start).
    last: Option<SignedCheckpoint>,
    /// The size of the latest checkpoint every sink took.
    published: u64,
}

/// A batch ready to commit, and what each request will be told.
struct Prepared {
    batch: CommitBatch,
    results: Vec<Appended>,
    tree: TreeBuilder,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.recv().await {
            let mut drafts = first.len();
            let mut requests = vec![first];
            let deadline = tokio::time::Instant::now() + self.config.linger;
            // Requests are never split: a large one may exceed `max_batch` on its own.
            while drafts < self.config.max_batch {
                match rx.try_recv() {
                    Ok(request) => {
                        drafts += request.len();
                        requests.push(request);
                    }
                    Err(mpsc::error::TryRecvError::Empty) if !self.config.linger.is_zero() => {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(request)) => {
                                drafts += request.len();
                                requests.push(request);
                            }
                            Ok(None) | Err(_) => break,
                        }
                    }
                    Err(_) => break,
                }
            }
            self.process(requests).await;
        }
    }

    /// After reading another replica's entries: its latest checkpoint, when it ends where the
    /// tree now ends, must verify with the key and sign the tree's root (a replica, or someone
    /// writing the database, cannot slip in entries the checkpoints do not vouch for).
    async fn check_other_replica(&self) -> Result<(), AppendError> {
        let Some(latest) = self.store.latest_checkpoint().await.map_err(storage)? else {
            return Err(AppendError::Untrusted(
                "another writer appended entries with no checkpoint".into(),
            ));
        };
        if latest.size < self.tree.size() {
            return Err(AppendError::Untrusted(format!(
                "entries {}..{} are covered by no signed checkpoint; run `writ audit verify`",
                latest.size,
                self.tree.size()
            )));
        }
        if latest.size > self.tree.size() {
            // More was appended since: the next catch-up checks it.
            return Ok(());
        }
        let signed = open_stored(&latest, &self.key)?;
        if signed.root != self.tree.root() {
            return Err(AppendError::Untrusted(format!(
                "another writer's checkpoint (size {}) does not sign the entries it ends; run `writ audit verify`",
                latest.size
            )));
        }
        Ok(())
    }

    /// Hands the latest committed checkpoint to every sink, unless they all have it. A sink
    /// that fails is logged; the next commit publishes again (its checkpoint extends this one).
    async fn publish(&mut self) {
        let Some(checkpoint) = &self.last else {
            return;
        };
        if self.config.publish.is_empty() || checkpoint.size <= self.published {
            return;
        }
        let mut all = true;
        for sink in &self.config.publish {
            if let Err(err) = sink.publish(checkpoint).await {
                all = false;
                tracing::error!(sink = %sink.name(), size = checkpoint.size, error = %err, "checkpoint not published");
            }
        }
        if all {
            self.published = checkpoint.size;
        }
    }

    /// Commits a batch, answering every request exactly once.
    async fn process(&mut self, requests: Vec<Request>) {
        let mut shapes = Vec::with_capacity(requests.len());
        let mut groups = Vec::new();
        let mut replies = Vec::with_capacity(requests.len());
        for request in requests {
            shapes.push(request.groups.len());
            groups.extend(request.groups);
            replies.push(request.reply);
        }
        let mut results = self.commit_groups(groups).await.into_iter();
        self.publish().await;
        for (reply, count) in replies.into_iter().zip(shapes) {
            let _ = reply.send(results.by_ref().take(count).collect());
        }
    }

    /// Commits `groups` in one transaction when possible; returns one result per draft, per
    /// group, in order. A group is recorded whole or not at all.
    async fn commit_groups(
        &mut self,
        groups: Vec<Vec<Encoded>>,
    ) -> Vec<Vec<Result<Appended, AppendError>>> {
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        let group_of: Vec<usize> = sizes
            .iter()
            .enumerate()
            .flat_map(|(group, &n)| std::iter::repeat_n(group, n))
            .collect();
        let drafts: Vec<Encoded> = groups.into_iter().flatten().collect();
        let mut results: Vec<Option<Result<Appended, AppendError>>> = vec![None; drafts.len()];
        // Within the batch, later drafts with an earlier draft's key follow that draft.
        let mut first_with_key: HashMap<&str, usize> = HashMap::new();
        let mut followers: Vec<(usize, usize)> = Vec::new();
        let mut leaders: Vec<usize> = Vec::new();
        for (index, draft) in drafts.iter().enumerate() {
            match first_with_key.get(draft.draft.idempotency_key.as_str()) {
                Some(&leader) => followers.push((index, leader)),
                None => {
                    first_with_key.insert(&draft.draft.idempotency_key, index);
                    leaders.push(index);
                }
            }
        }
        // Fails every leader of `group` with `err`.
        let fail_group = |leaders: &mut Vec<usize>,
                          results: &mut Vec<Option<Result<Appended, AppendError>>>,
                          group: usize,
                          err: &AppendError| {
            leaders.retain(|&index| {
                let member = group_of[index] == group;
                if member {
                    results[index] = Some(Err(err.clone()));
                }
                !member
            });
        };

        let mut attempts = 0;
        while !leaders.is_empty() {
            attempts += 1;
            let preparing = std::time::Instant::now();
            let prepared = match self.prepare(leaders.iter().map(|&i| &drafts[i]), |position| {
                group_of[leaders[position]]
            }) {
                Ok(prepared) => prepared,
                Err((position, err)) => {
                    let group = group_of[leaders[position]];
                    fail_group(&mut leaders, &mut results, group, &err);
                    continue;
                }
            };
            let committing = std::time::Instant::now();
            let checkpoint = prepared
                .batch
                .checkpoint
                .as_ref()
                .map(|row| SignedCheckpoint {
                    size: row.size,
                    root: Hash(row.root),
                    note: row.note.clone(),
                    tree: prepared.tree.clone(),
                });
            let committed = self.store.commit(prepared.batch).await;
            if let Some(observer) = &self.config.commit_observer {
                observer.ledger_committed(leaders.len(), committing.elapsed(), committed.is_ok());
            }
            tracing::debug!(
                events = leaders.len(),
                prepare_ms = (committing - preparing).as_secs_f64() * 1e3,
                commit_ms = committing.elapsed().as_secs_f64() * 1e3,
                ok = committed.is_ok(),
                "ledger batch"
            );
            match committed {
                Ok(()) => {
                    self.tree = prepared.tree;
                    if checkpoint.is_some() {
                        self.last = checkpoint;
                    }
                    for (&index, appended) in leaders.iter().zip(prepared.results) {
                        results[index] = Some(Ok(appended));
                    }
                    leaders.clear();
                }
                Err(StoreError::HeadMoved { .. }) if attempts <= MAX_HEAD_RETRIES => {
                    // Another replica appended: back off a little (with jitter, so that two
                    // replicas do not keep colliding), extend our tree and try again.
                    tokio::time::sleep(backoff(attempts)).await;
                    let caught_up = match catch_up(&*self.store, &mut self.tree, &mut |_| {}).await
                    {
                        Ok(()) => self.check_other_replica().await,
                        Err(err) => Err(err),
                    };
                    if let Err(err) = caught_up {
                        for &index in &leaders {
                            results[index] = Some(Err(err.clone()));
                        }
                        leaders.clear();
                    }
                }
                Err(StoreError::Conflict(detail)) => {
                    // Resolve drafts whose key is already in the ledger; isolate the rest.
                    let mut remaining = Vec::new();
                    for &index in &leaders {
                        match self
                            .store
                            .entry_by_idempotency_key(&drafts[index].draft.idempotency_key)
                            .await
                        {
                            Ok(Some(row)) => results[index] = Some(Ok(duplicate_of(&row))),
                            Ok(None) => remaining.push(index),
                            Err(err) => results[index] = Some(Err(storage(err))),
                        }
                    }
                    if remaining.len() == leaders.len() {
                        if !has_many_groups(&remaining, &group_of) {
                            let err = AppendError::Conflict(detail);
                            for index in remaining.drain(..) {
                                results[index] = Some(Err(err.clone()));
                            }
                        } else {
                            // Commit group by group so that only the offending group fails.
                            self.commit_one_by_one(&remaining, &group_of, &drafts, &mut results)
                                .await;
                            remaining.clear();
                        }
                    }
                    leaders = remaining;
                }
                Err(StoreError::Stale { .. }) if has_many_groups(&leaders, &group_of) => {
                    // Someone else changed a case or job one of the groups read: commit group
                    // by group, so that only the groups that read stale state fail.
                    self.commit_one_by_one(&leaders, &group_of, &drafts, &mut results)
                        .await;
                    leaders.clear();
                }
                Err(err @ StoreError::Stale { .. }) => {
                    let err = AppendError::Stale(err.to_string());
                    for &index in &leaders {
                        results[index] = Some(Err(err.clone()));
                    }
                    leaders.clear();
                }
                Err(err) => {
                    tracing::error!(error = %err, events = leaders.len(), "ledger commit failed; batch rolled back");
                    let err = storage(err);
                    for &index in &leaders {
                        results[index] = Some(Err(err.clone()));
                    }
                    leaders.clear();
                }
            }
        }

        for (index, leader) in followers {
            results[index] = Some(match &results[leader] {
                Some(Ok(appended)) => Ok(Appended {
                    duplicate: true,
                    ..*appended
                }),
                Some(Err(err)) => Err(err.clone()),
                None => Err(AppendError::Stopped),
            });
        }
        let mut results = results
            .into_iter()
            .map(|result| result.unwrap_or(Err(AppendError::Stopped)));
        sizes
            .into_iter()
            .map(|n| results.by_ref().take(n).collect())
            .collect()
    }

    /// Commits each group of `members` (positions in `drafts`, grouped by `group_of`) in a
    /// transaction of its own, recording each draft's result.
    async fn commit_one_by_one(
        &mut self,
        members: &[usize],
        group_of: &[usize],
        drafts: &[Encoded],
        results: &mut [Option<Result<Appended, AppendError>>],
    ) {
        let mut groups: Vec<usize> = members.iter().map(|&i| group_of[i]).collect();
        groups.dedup();
        for group in groups {
            let alone: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| group_of[i] == group)
                .collect();
            let drafts_alone: Vec<Encoded> = alone.iter().map(|&i| drafts[i].clone()).collect();
            let outcome = Box::pin(self.commit_groups(vec![drafts_alone]))
                .await
                .pop()
                .unwrap_or_default();
            for (index, result) in alone.into_iter().zip(outcome) {
                results[index] = Some(result);
            }
        }
    }

    /// Builds the commit for `drafts` on top of the current tree. On an encoding error, an
    /// illegal transition or an expectation an earlier draft of the batch already broke,
    /// returns the position of the draft at fault. `group_of` names a position's group.
    fn prepare<'d>(
        &self,
        drafts: impl Iterator<Item = &'d Encoded>,
        group_of: impl Fn(usize) -> usize,
    ) -> Result<Prepared, (usize, AppendError)> {
        let mut tree = self.tree.clone();
        let mut batch = CommitBatch::default();
        let mut results = Vec::new();
        let mut states = BatchStates::default();
        let now = writ_core::clock::to_micros(self.clock.now());
        for (position, Encoded { draft, body }) in drafts.enumerate() {
            let seq = tree.size();
            let fail = |err: AppendError| (position, err);
            states
                .check(draft, seq, group_of(position), &mut batch.expectations)
                .map_err(fail)?;
            let mut evidence_digests = Vec::with_capacity(draft.evidence.len());
            for blob in &draft.evidence {
                if draft.kind().evidence_media_type() != Some(blob.media_type.as_str()) {
                    return Err(fail(AppendError::Encode(format!(
                        "a {} event names no evidence of type {}",
                        draft.kind(),
                        blob.media_type
                    ))));
                }
                let digest = Sha256Digest::of(&blob.bytes);
                evidence_digests.push(digest);
                batch.effects.push(Effect::PutEvidence(EvidenceRow {
                    digest,
                    media_type: blob.media_type.clone(),
                    bytes: blob.bytes.clone(),
                    received: now,
                }));
            }
            let mut controls = draft.controls.clone();
            for tag in draft.kind().nist_csf_controls() {
                if !controls.iter().any(|c| c.0 == *tag) {
                    controls.push(ControlTag((*tag).to_owned()));
                }
            }
            controls.sort();
            let header = Header {
                seq,
                time: now,
                case_id: draft.case_id,
                actor: &draft.actor,
                kind: draft.kind(),
                idempotency_key: &draft.idempotency_key,
                policy_bundle: draft.policy_bundle,
                evidence: &evidence_digests,
                controls: &controls,
            };
            let leaf =
                encode_event_leaf(&header, body).map_err(|err| fail(AppendError::Encode(err)))?;
            let hash = leaf_hash(&leaf);
            let projections = project(draft.case_id, &draft.body);
            // A finding is recorded under its event's key (the store refuses anything else).
            for projection in &projections {
                if let Projection::Finding { finding, .. } = projection
                    && finding.idempotency_key != draft.idempotency_key
                {
                    return Err(fail(AppendError::Encode(format!(
                        "the finding's idempotency key {:?} is not its event's {:?}",
                        finding.idempotency_key, draft.idempotency_key
                    ))));
                }
            }
            for projection in projections {
                batch.effects.push(effect_of(projection, seq));
            }
            if let Some(kind) = writ_core::notification::notification_of(&draft.body) {
                let routes = self
                    .config
                    .webhooks
                    .iter()
                    .filter(|r| r.kinds.contains(&kind));
                for route in routes {
                    let payload = serde_json::json!({
                        "type": kind.type_name(),
                        "timestamp": now.to_string(),
                        "data": {
                            "seq": seq,
                            "case_id": draft.case_id,
                            "event": draft.kind(),
                            "actor": draft.actor,
                            "body": body,
                        },
                    });
                    batch.outbox.push(writ_store::OutboxRow {
                        id: format!("msg_{seq}_{}", route.endpoint),
                        endpoint: route.endpoint.clone(),
                        seq,
                        kind: <&str>::from(kind).to_owned(),
                        payload: payload.to_string(),
                        created: now,
                        attempts: 0,
                    });
                }
            }
            tree.push(hash);
            batch.entries.push(LedgerRow {
                seq,
                time: now,
                case_id: draft.case_id,
                kind: draft.kind(),
                actor: draft.actor.clone(),
                idempotency_key: draft.idempotency_key.clone(),
                leaf,
                leaf_hash: hash.0,
            });
            results.push(Appended {
                seq,
                leaf_hash: hash.0,
                time: now,
                duplicate: false,
            });
        }
        let root = tree.root();
        let checkpoint = Checkpoint::new(self.key.name(), tree.size(), root);
        let note = sign(&checkpoint, &self.key).map_err(|err| {
            (
                0,
                AppendError::Encode(format!("cannot sign the checkpoint: {err}")),
            )
        })?;
        batch.checkpoint = Some(CheckpointRow {
            size: tree.size(),
            root: root.0,
            note,
            time: now,
        });
        Ok(Prepared {
            batch,
            results,
            tree,
        })
    }
}

/// The cases and jobs a batch has changed so far, with the group that changed each, so that
/// every draft is checked against the state machine from the state before it.
#[derive(Default)]
struct BatchStates {
    cases: HashMap<CaseId, (Option<CaseState>, usize)>,
    jobs: HashMap<JobId, (Option<JobState>, usize)>,
}

impl BatchStates {
    /// Checks `draft` (at `seq`, in `group`): its expectations must be about things no other
    /// group of the batch has changed (they go to the store, checked in the transaction); each
    /// case or job it changes must have a known state before it (expected, or made earlier in
    /// the group) from which the change is legal.
    fn check(
        &mut self,
        draft: &Draft,
        seq: u64,
        group: usize,
        expectations: &mut Vec<Expectation>,
    ) -> Result<(), AppendError> {
        for expectation in &draft.expect {
            match expectation {
                Expectation::Principal { .. } => {}
                &Expectation::Case { id, state, .. } => {
                    if self.cases.get(&id).is_some_and(|(_, g)| *g != group) {
                        return Err(AppendError::Stale(format!(
                            "case {id} changed in the same batch before entry {seq}"
                        )));
                    }
                    self.cases.insert(id, (Some(state), group));
                }
                &Expectation::Job { id, state, .. } => {
                    if self.jobs.get(&id).is_some_and(|(_, g)| *g != group) {
                        return Err(AppendError::Stale(format!(
                            "job {id} changed in the same batch before entry {seq}"
                        )));
                    }
                    self.jobs.insert(id, (Some(state), group));
                }
            }
            expectations.push(expectation.clone());
        }
        let body = &draft.body;
        if let Some(case_id) = draft.case_id {
            let known = self.cases.get(&case_id).copied();
            let changes = body.case().is_some();
            match known {
                Some((from, g)) if g == group || !changes => {
                    let to = case_transition(from, body)?;
                    if changes {
                        self.cases.insert(case_id, (to, group));
                    }
                }
                Some(_) => {
                    return Err(AppendError::Stale(format!(
                        "case {case_id} changed in the same batch before entry {seq}"
                    )));
                }
                None => match body {
                    // Opening a case: from nothing.
                    EventBody::FindingReceived(FindingReceived { case: Some(_), .. })
                    | EventBody::RequestSubmitted(_) => {
                        let to = case_transition(None, body)?;
                        self.cases.insert(case_id, (to, group));
                    }
                    _ if changes => {
                        return Err(AppendError::Illegal(IllegalTransition {
                            kind: body.kind(),
                            reason: format!(
                                "case {case_id} is changed without saying what state it was read in"
                            ),
                        }));
                    }
                    // A finding joining an open case changes nothing; the store's indexes keep
                    // it in an open case.
                    _ => {}
                },
            }
        }
        if let Some(job) = body.job() {
            let from = match (self.jobs.get(&job.id).copied(), body) {
                (Some((_, g)), _) if g != group => {
                    return Err(AppendError::Stale(format!(
                        "job {} changed in the same batch before entry {seq}",
                        job.id
                    )));
                }
                (Some((from, _)), _) => from,
                (None, EventBody::ChangeRequested(_) | EventBody::AccessExpired(_)) => None,
                (None, _) => {
                    return Err(AppendError::Illegal(IllegalTransition {
                        kind: body.kind(),
                        reason: format!(
                            "job {} is changed without saying what state it was read in",
                            job.id
                        ),
                    }));
                }
            };
            let to = job_transition(from, body)?;
            self.jobs.insert(job.id, (to, group));
        }
        Ok(())
    }
}

/// Whether `leaders` span more than one group.
fn has_many_groups(leaders: &[usize], group_of: &[usize]) -> bool {
    leaders
        .first()
        .is_some_and(|&first| leaders.iter().any(|&i| group_of[i] != group_of[first]))
}

/// An event without its body, serialised exactly as [`writ_core::event::Event`] serialises
/// those fields, so that the body can be encoded by reference.
#[derive(Serialize)]
struct Header<'a> {
    seq: u64,
    time: Timestamp,
    case_id: Option<CaseId>,
    actor: &'a str,
    kind: EventKind,
    idempotency_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_bundle: Option<Sha256Digest>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    evidence: &'a [Sha256Digest],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    controls: &'a [ControlTag],
}

/// The leaf of `header` with `body` as its body: the bytes `writ_ledger::encode_leaf` gives for
/// the whole event, without copying the body.
fn encode_event_leaf(header: &Header<'_>, body: &serde_json::Value) -> Result<Vec<u8>, String> {
    let header = serde_json::to_value(header).map_err(|err| err.to_string())?;
    let serde_json::Value::Object(header) = header else {
        return Err("an event must serialize as a JSON object".to_owned());
    };
    let members = header
        .iter()
        .map(|(name, value)| (name.as_str(), value))
        .chain(std::iter::once(("body", body)))
        .collect();
    encode_members_leaf(members).map_err(|err| err.to_string())
}

/// The store effect for a projection row produced by entry `seq`.
pub fn effect_of(projection: Projection, seq: u64) -> Effect {
    match projection {
        Projection::Identity(identity) => Effect::UpsertIdentity { identity, seq },
        Projection::Case { case, decided } => Effect::UpsertCase { case, decided, seq },
        Projection::Job { job, intent } => Effect::UpsertJob { job, intent, seq },
        Projection::Finding { finding, case_id } => Effect::InsertFinding {
            finding,
            case_id,
            seq,
        },
        Projection::Vote { case_id, approver } => Effect::InsertVote {
            case_id,
            approver,
            seq,
        },
        Projection::Principal(principal) => Effect::UpsertPrincipal { principal, seq },
        Projection::Token(token) => Effect::InsertToken { token, seq },
        Projection::TokenRevoked(id) => Effect::RevokeToken { id, seq },
        Projection::Exception { exception, state } => Effect::UpsertException {
            exception,
            state,
            seq,
        },
        Projection::ExceptionsEnded {
            case_id,
            only,
            state,
        } => Effect::EndExceptions {
            case_id,
            only,
            state,
            seq,
        },
        Projection::Deadline { case_id, kind, due } => Effect::SetDeadline {
            case_id,
            kind,
            due,
            seq,
        },
        Projection::Bypass {
            case_id,
            by,
            reviewed,
        } => Effect::UpsertBypass {
            case_id,
            by,
            reviewed,
            seq,
        },
        Projection::DeadlinesMet { case_id, kinds } => Effect::MeetDeadlines {
            case_id,
            kinds,
            seq,
        },
        Projection::System(status) => Effect::UpsertSystem { status, seq },
        Projection::SystemPause { system, reason } => Effect::SetSystemPause {
            system,
            reason,
            seq,
        },
    }
}

fn duplicate_of(row: &LedgerRow) -> Appended {
    Appended {
        seq: row.seq,
        leaf_hash: row.leaf_hash,
        time: row.time,
        duplicate: true,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use writ_ledger::encode_leaf;

    use super::*;

    proptest! {
        /// Encoding the body by reference gives the leaf of the whole event.
        #[test]
        fn event_leaf_by_parts_equals_the_whole(
            seq in any::<u64>(),
            micros in 0i64..4_102_444_800_000_000,
            case in proptest::option::of(any::<u128>()),
            actor in any::<String>(),
            key in "\\PC*",
            bundle in proptest::option::of(any::<[u8; 32]>()),
            evidence in proptest::collection::vec(any::<[u8; 32]>(), 0..3),
            controls in proptest::collection::vec("\\PC{0,8}", 0..3),
            text in any::<String>(),
        ) {
            let body = EventBody::OwnershipImported(writ_core::event::OwnershipImported {
                file: text,
                rules: vec![],
            });
            let evidence: Vec<Sha256Digest> = evidence.into_iter().map(Sha256Digest).collect();
            let controls: Vec<ControlTag> = controls.into_iter().map(ControlTag).collect();
            let header = Header {
                seq,
                time: Timestamp::from_microsecond(micros).unwrap(),
                case_id: case.map(|n| CaseId(uuid::Uuid::from_u128(n))),
                actor: &actor,
                kind: EventKind::OwnershipImported,
                idempotency_key: &key,
                policy_bundle: bundle.map(Sha256Digest),
                evidence: &evidence,
                controls: &controls,
            };
            let by_parts = encode_event_leaf(&header, &body.to_value().unwrap()).unwrap();
            let event = writ_core::event::Event {
                seq,
                time: header.time,
                case_id: header.case_id,
                actor: actor.clone(),
                kind: header.kind,
                idempotency_key: key.clone(),
                policy_bundle: header.policy_bundle,
                evidence: evidence.clone(),
                controls: controls.clone(),
                body,
            };
            prop_assert_eq!(by_parts, encode_leaf(&event).unwrap());
        }
    }
}
