//! Publishing signed checkpoints outside the database, where whoever can write the database
//! cannot rewrite them.
//!
//! The sequencer hands every checkpoint it commits to each [`CheckpointSink`] before it answers
//! the batch's callers (so a short-lived command has published when it exits), and again at
//! start (so a crash between commit and publish heals). A sink that fails does not undo the
//! commit: the entries are in the ledger and the next checkpoint extends this one, so the
//! failure is logged and the next commit publishes again.
//!
//! - [`DirSink`]: one file per checkpoint in a directory (`ledger.publish_dir`), named by the
//!   tree size and never rewritten (created exclusively, read-only, synced). A file already
//!   there with other content is a fork: two different trees of one size, which only a
//!   rewritten history explains. It is reported, never overwritten.
//! - The S3 sink (Object Lock, compliance mode) and the witness client live with their
//!   protocols (`writ_connector_aws`, [`crate::witness`]).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use writ_ledger::{Hash, TreeBuilder};

/// A checkpoint the sequencer committed, with the tree it signs.
#[derive(Debug, Clone)]
pub struct SignedCheckpoint {
    /// The tree size.
    pub size: u64,
    /// The root.
    pub root: Hash,
    /// The signed note (C2SP `tlog-checkpoint`).
    pub note: String,
    /// The tree at `size` (its perfect-subtree frontier): what a consistency proof from an
    /// earlier size is built from, with the leaf hashes since.
    pub tree: TreeBuilder,
}

/// Why a checkpoint could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The destination failed (disk, network, a refusal).
    #[error("{sink}: {detail}")]
    Failed {
        /// The sink.
        sink: String,
        /// What went wrong.
        detail: String,
    },
    /// The destination already holds a different checkpoint of the same size: two histories.
    #[error(
        "{sink}: a different checkpoint of size {size} is already published there: the ledger's history was rewritten (run `writ audit verify --trusted` with the published one)"
    )]
    Fork {
        /// The sink.
        sink: String,
        /// The tree size.
        size: u64,
    },
    /// A witness refused to co-sign.
    #[error("{sink}: the witness refused the checkpoint of size {size}: {detail}")]
    Refused {
        /// The witness.
        sink: String,
        /// The tree size.
        size: u64,
        /// Its answer.
        detail: String,
    },
}

/// Somewhere checkpoints are published as they are made.
#[async_trait::async_trait]
pub trait CheckpointSink: Send + Sync + std::fmt::Debug {
    /// A name for logs and errors.
    fn name(&self) -> String;

    /// Publishes `checkpoint`. Publishing one already published (the same note) succeeds.
    async fn publish(&self, checkpoint: &SignedCheckpoint) -> Result<(), PublishError>;

    /// A failure of this sink, saying what went wrong.
    fn failed(&self, detail: impl Into<String>) -> PublishError
    where
        Self: Sized,
    {
        PublishError::Failed {
            sink: self.name(),
            detail: detail.into(),
        }
    }
}

/// The file name of the checkpoint of `size` in a publish directory (or an object key's last
/// part): zero-padded so that names sort by size.
pub fn checkpoint_file_name(size: u64) -> String {
    format!("{size:020}.checkpoint")
}

/// Publishes each checkpoint as a file of its own in a directory.
#[derive(Debug, Clone)]
pub struct DirSink {
    dir: PathBuf,
}

impl DirSink {
    /// A sink writing into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

#[async_trait::async_trait]
impl CheckpointSink for DirSink {
    fn name(&self) -> String {
        format!("publish_dir {}", self.dir.display())
    }

    async fn publish(&self, checkpoint: &SignedCheckpoint) -> Result<(), PublishError> {
        let dir = self.dir.clone();
        let size = checkpoint.size;
        let note = checkpoint.note.clone();
        let name = self.name();
        let written = tokio::task::spawn_blocking(move || write_once(&dir, size, &note))
            .await
            .map_err(|err| self.failed(format!("writer task failed: {err}")))?;
        match written {
            Ok(()) => Ok(()),
            Err(WriteOnce::Differs) => Err(PublishError::Fork { sink: name, size }),
            Err(WriteOnce::Io(detail)) => Err(self.failed(detail)),
        }
    }
}

enum WriteOnce {
    Differs,
    Io(String),
}

/// Writes `note` to `dir/<size>.checkpoint` unless that file exists; an existing file must hold
/// the same note. The new file is read-only, synced, and so is the directory entry.
fn write_once(dir: &Path, size: u64, note: &str) -> Result<(), WriteOnce> {
    let io = |what: &str, err: std::io::Error| WriteOnce::Io(format!("{what}: {err}"));
    std::fs::create_dir_all(dir).map_err(|err| io("creating the directory", err))?;
    let path = dir.join(checkpoint_file_name(size));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(note.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|err| io("writing the checkpoint", err))?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|err| io("syncing the directory", err))?;
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let existing =
                std::fs::read_to_string(&path).map_err(|err| io("reading the checkpoint", err))?;
            if existing == note {
                Ok(())
            } else {
                Err(WriteOnce::Differs)
            }
        }
        Err(err) => Err(io("creating the checkpoint file", err)),
    }
}

/// The newest checkpoint published in `dir` (the largest size), if any: what an auditor gives
/// `writ audit export --since`.
pub fn latest_published(dir: &Path) -> std::io::Result<Option<(PathBuf, String)>> {
    let Some((_, path)) = published_files(dir)?.pop() else {
        return Ok(None);
    };
    let note = std::fs::read_to_string(&path)?;
    Ok(Some((path, note)))
}

/// Every checkpoint published in `dir`, smallest size first: what `writ audit verify
/// --trusted DIR` checks the database against.
pub fn all_published(dir: &Path) -> std::io::Result<Vec<String>> {
    published_files(dir)?
        .into_iter()
        .map(|(_, path)| std::fs::read_to_string(path))
        .collect()
}

/// The checkpoint files in `dir` with their sizes, smallest first.
fn published_files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(size) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".checkpoint"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        files.push((size, path));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn checkpoint(size: u64, note: &str) -> SignedCheckpoint {
        SignedCheckpoint {
            size,
            root: Hash([0; 32]),
            note: note.to_owned(),
            tree: TreeBuilder::new(),
        }
    }

    #[tokio::test]
    async fn a_published_checkpoint_is_never_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let sink = DirSink::new(dir.path().join("published"));
        sink.publish(&checkpoint(3, "three\n")).await.unwrap();
        sink.publish(&checkpoint(3, "three\n")).await.unwrap();
        sink.publish(&checkpoint(12, "twelve\n")).await.unwrap();
        let fork = sink.publish(&checkpoint(3, "another three\n")).await;
        assert!(
            matches!(fork, Err(PublishError::Fork { size: 3, .. })),
            "{fork:?}"
        );
        let (path, note) = latest_published(&dir.path().join("published"))
            .unwrap()
            .unwrap();
        assert_eq!(note, "twelve\n");
        assert!(path.ends_with("00000000000000000012.checkpoint"));
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert!(mode.readonly());
    }
}
