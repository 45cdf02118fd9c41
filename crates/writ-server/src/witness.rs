//! `writ witness`: a small witness (C2SP `tlog-witness`) with its own key. It co-signs a log's
//! checkpoint only when a valid RFC 6962 consistency proof shows that the checkpoint's tree
//! extends the last one it co-signed, so it refuses a history rewritten behind the log's back.
//!
//! One endpoint, `POST /add-checkpoint` (the body: `old <size>`, the proof's hashes, a blank
//! line, the signed checkpoint). The protocol decisions are `writ_ledger::add_checkpoint`'s;
//! this module serialises requests (one at a time, so a check and the state it moves are
//! atomic) and persists the state before it answers `200`: a JSON file mapping each origin to
//! the tree last co-signed, replaced atomically (written beside, synced, renamed, directory
//! synced). A witness that cannot persist answers `500` and co-signs nothing.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use writ_ledger::{AddCheckpoint, VerifierKey, WitnessKey, WitnessedTree, add_checkpoint};

/// The largest request accepted (a checkpoint and up to 63 proof hashes fit many times over).
const MAX_BODY: usize = 64 * 1024;

/// Why the witness could not start.
#[derive(Debug, thiserror::Error)]
pub enum WitnessStartError {
    /// The state file could not be read or is not a witness's state.
    #[error("{path}: {detail}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// A running witness's state: its key, the logs it knows, and what it co-signed.
pub struct Witness {
    key: WitnessKey,
    logs: Vec<VerifierKey>,
    state_path: PathBuf,
    clock: Arc<dyn writ_core::Clock>,
    trees: tokio::sync::Mutex<BTreeMap<String, WitnessedTree>>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("key", &self.key)
            .field("logs", &self.logs)
            .field("state_path", &self.state_path)
            .finish_non_exhaustive()
    }
}

impl Witness {
    /// A witness co-signing with `key` for the logs whose public keys are `logs`, remembering
    /// what it co-signed in `state_path` (created on the first co-signature).
    pub fn open(
        key: WitnessKey,
        logs: Vec<VerifierKey>,
        state_path: PathBuf,
        clock: Arc<dyn writ_core::Clock>,
    ) -> Result<Self, WitnessStartError> {
        let trees = match std::fs::read(&state_path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|err| WitnessStartError::State {
                    path: state_path.clone(),
                    detail: format!("not a witness state file: {err}"),
                })?
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => {
                return Err(WitnessStartError::State {
                    path: state_path,
                    detail: err.to_string(),
                });
            }
        };
        Ok(Self {
            key,
            logs,
            state_path,
            clock,
            trees: tokio::sync::Mutex::new(trees),
        })
    }

    /// The witness's HTTP routes.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/add-checkpoint", post(add))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self)
    }
}

async fn add(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let plain = |status: StatusCode, text: String| {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response()
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return plain(StatusCode::BAD_REQUEST, "the body is not UTF-8\n".into());
    };
    let request = match AddCheckpoint::parse(text) {
        Ok(request) => request,
        Err(err) => return plain(StatusCode::BAD_REQUEST, format!("{err}\n")),
    };
    let now = u64::try_from(witness.clock.now().as_second()).unwrap_or(0);
    // One request at a time: the state checked is the state moved.
    let mut trees = witness.trees.lock().await;
    let state = request.origin().and_then(|origin| trees.get(origin));
    match add_checkpoint(state, &witness.logs, &request, &witness.key, now) {
        Ok(cosigned) => {
            let mut next = trees.clone();
            next.insert(cosigned.state.origin.clone(), cosigned.state.clone());
            let path = witness.state_path.clone();
            let saved = tokio::task::spawn_blocking(move || save(&path, &next).map(|()| next))
                .await
                .map_err(|err| err.to_string())
                .and_then(|saved| saved.map_err(|err| err.to_string()));
            match saved {
                Ok(next) => {
                    *trees = next;
                    tracing::info!(origin = %cosigned.state.origin, size = cosigned.state.size, "co-signed");
                    plain(StatusCode::OK, cosigned.cosignature)
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot persist the witness state; nothing co-signed");
                    plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the witness cannot persist its state\n".into(),
                    )
                }
            }
        }
        Err(refusal) => {
            tracing::warn!(status = refusal.status(), reason = %refusal, "refused a checkpoint");
            let status =
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                status,
                [(header::CONTENT_TYPE, refusal.content_type())],
                refusal.body(),
            )
                .into_response()
        }
    }
}

/// Replaces the state file atomically: written beside, synced, renamed over, directory synced.
fn save(path: &Path, trees: &BTreeMap<String, WitnessedTree>) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(trees).map_err(std::io::Error::other)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(&json)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|err| err.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Serves `witness` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, witness.router())
        .with_graceful_shutdown(shutdown)
        .await
}
