//! Group commit across requests: findings that arrive in many small concurrent requests (a
//! webhook per alert) are planned and committed together, as one [`Ingestor::ingest_batch`] per
//! source, instead of one plan and one commit each.
//!
//! Each request hands its findings to [`GroupCommit::ingest`] and waits for its own results.
//! One task collects the requests: whenever fewer than [`GroupLimits::batches_in_flight`]
//! batches are running, it takes whatever has queued (up to [`GroupLimits::max_findings`]).
//! Clients that were just answered tend to send again at once (a sender with one request
//! open at a time), so when fewer requests have queued than were answered and not seen since,
//! the collector waits up to [`GroupLimits::linger`] for them: without that, the first of them
//! to come back would start a batch of one while the others are a round trip behind. It waits
//! for no more than a fair share of the clients at work (the last batches' sizes over the
//! batches in flight), so the batches stay about equal and one plans while another commits. A
//! lone client was answered once and is alone in the queue: it waits for nothing.
//!
//! A request is answered only after the batch holding its findings has committed, with one
//! result per finding, in order: findings are judged one by one, so one request's bad finding
//! never fails another request's. A batch-wide failure (the ledger unwritable) fails each of
//! its findings with that error, as it would have alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::AppendError;
use crate::ingest::{IngestError, IngestOutcome, Ingestor, Submission};
use crate::sources::Source;

/// How batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// Findings a batch takes at most (a larger request is a batch of its own).
    pub max_findings: usize,
    /// Batches planned or committing at once: while they run, requests queue up for the next.
    pub batches_in_flight: usize,
    /// How long a forming batch waits at most for the clients answered since the last one
    /// formed (zero: it takes what has queued).
    pub linger: Duration,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            max_findings: 5000,
            // The ingestor pipelines two: one planning while the other commits.
            batches_in_flight: 2,
            // About ten times a loopback client's round trip from answer to next request.
            linger: Duration::from_millis(2),
        }
    }
}

type Results = Vec<Result<IngestOutcome, IngestError>>;

/// One request's findings and where its results go.
struct Request {
    source: Source,
    submissions: Vec<Submission>,
    reply: oneshot::Sender<Results>,
}

/// The collector's inputs, kept until it starts.
type Pending = Option<(mpsc::UnboundedReceiver<Request>, Ingestor)>;

/// The entrance of group commit; cheap to clone, shared by every request handler.
#[derive(Clone)]
pub struct GroupCommit {
    sender: mpsc::UnboundedSender<Request>,
    /// The collector's end, until the first request starts it on the caller's runtime.
    pending: Arc<Mutex<Pending>>,
    limits: GroupLimits,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Group commit in front of `ingestor`. The collecting task starts with the first request.
    pub fn new(ingestor: Ingestor, limits: GroupLimits) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            sender,
            pending: Arc::new(Mutex::new(Some((receiver, ingestor)))),
            limits: GroupLimits {
                max_findings: limits.max_findings.max(1),
                batches_in_flight: limits.batches_in_flight.max(1),
                linger: limits.linger,
            },
        }
    }

    /// Records `submissions` from `source` together with whatever other requests are waiting,
    /// and returns one result per submission, in order, once they are committed.
    pub async fn ingest(&self, source: Source, submissions: Vec<Submission>) -> Results {
        if submissions.is_empty() {
            return Vec::new();
        }
        self.start();
        let count = submissions.len();
        let (reply, answer) = oneshot::channel();
        let request = Request {
            source,
            submissions,
            reply,
        };
        if self.sender.send(request).is_err() {
            return stopped(count);
        }
        answer.await.unwrap_or_else(|_| stopped(count))
    }

    fn start(&self) {
        let taken = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((receiver, ingestor)) = taken {
            tokio::spawn(collect(receiver, ingestor, self.limits));
        }
    }
}

fn stopped(count: usize) -> Results {
    (0..count)
        .map(|_| Err(IngestError::Append(AppendError::Stopped)))
        .collect()
}

/// Forms batches from the queued requests while fewer than the limit are running.
async fn collect(
    mut receiver: mpsc::UnboundedReceiver<Request>,
    ingestor: Ingestor,
    limits: GroupLimits,
) {
    let slots = Arc::new(Semaphore::new(limits.batches_in_flight));
    // Requests answered and not yet seen again: the clients likely to come back.
    let answered = Arc::new(AtomicUsize::new(0));
    // The sizes (in requests) of the last batches formed, one per slot: the clients at work.
    let mut recent = std::collections::VecDeque::with_capacity(limits.batches_in_flight);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = receiver.recv().await else {
            return;
        };
        // Wait for the clients coming back, but no more than a fair share of the clients at
        // work: batches of about equal size keep one planning while the other commits, where
        // one batch of everybody would plan and commit in turn.
        let at_work: usize = recent.iter().sum();
        let fair_share = at_work.div_ceil(limits.batches_in_flight);
        let expected = answered.load(Ordering::SeqCst).min(fair_share);
        let mut taken = first.submissions.len();
        let mut batch = vec![first];
        while taken < limits.max_findings {
            match receiver.try_recv() {
                Ok(request) => {
                    taken += request.submissions.len();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        if batch.len() < expected && !limits.linger.is_zero() {
            let deadline = tokio::time::Instant::now() + limits.linger;
            while batch.len() < expected && taken < limits.max_findings {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(request)) => {
                        taken += request.submissions.len();
                        batch.push(request);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        // Saturating: a request may come back before its batch has counted it as answered.
        let _ = answered.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            Some(n.saturating_sub(batch.len()))
        });
        if recent.len() == limits.batches_in_flight {
            recent.pop_front();
        }
        recent.push_back(batch.len());
        let ingestor = ingestor.clone();
        let answered = answered.clone();
        tokio::spawn(async move {
            let requests = batch.len();
            commit(&ingestor, batch).await;
            answered.fetch_add(requests, Ordering::SeqCst);
            drop(slot);
        });
    }
}

/// Commits a batch of requests: one `ingest_batch` per source (in the order the sources first
/// appear), then each request gets its own slice of the results.
async fn commit(ingestor: &Ingestor, batch: Vec<Request>) {
    let mut by_source: Vec<(Source, Vec<Request>)> = Vec::new();
    for request in batch {
        match by_source
            .iter_mut()
            .find(|(source, _)| *source == request.source)
        {
            Some((_, requests)) => requests.push(request),
            None => by_source.push((request.source.clone(), vec![request])),
        }
    }
    for (source, requests) in by_source {
        let mut replies = Vec::with_capacity(requests.len());
        let mut submissions = Vec::new();
        for request in requests {
            replies.push((request.reply, request.submissions.len()));
            submissions.extend(request.submissions);
        }
        let mut results = ingestor
            .ingest_batch(&source, submissions)
            .await
            .into_iter();
        for (reply, count) in replies {
            let mine: Results = results.by_ref().take(count).collect();
            // A request whose client went away has nobody to answer; its findings stay
            // recorded (a retry comes back as duplicates).
            let _ = reply.send(mine);
        }
    }
}
