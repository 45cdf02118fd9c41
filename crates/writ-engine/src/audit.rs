//! Auditing the stored ledger: full verification, and offline bundles.
//!
//! [`verify_store`] reads every entry page by page and feeds the incremental
//! [`ChainVerifier`], so memory stays flat however long the ledger is. [`export`] builds a
//! [`Bundle`] (entries, inclusion proofs, the latest signed checkpoint and the public key) that
//! `writ audit verify --bundle` checks with no database.

use std::sync::Arc;

use writ_core::ids::CaseId;
use writ_ledger::{
    Bundle, ChainVerifier, FailureReason, Hash, VerifierKey, VerifyFailure, VerifyOptions,
    VerifyReport, build_bundle,
};
use writ_store::{Store, StoreError};

/// Entries read per page.
const PAGE: u32 = 10_000;

/// Why an audit could not run (as opposed to finding tampering, which is a [`VerifyFailure`]).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// There is no signed checkpoint to export against.
    #[error("the ledger has no signed checkpoint yet")]
    NoCheckpoint,
    /// The case has no ledger entries.
    #[error("case {0} has no ledger entries")]
    UnknownCase(CaseId),
    /// The ledger math refused the input.
    #[error("{0}")]
    Ledger(String),
}

/// Verifies every entry and checkpoint in the store. `progress` is called with
/// (entries done, entries claimed) after each page. The next page is read while the current one
/// is verified, so reading and hashing overlap.
///
/// The outer `Result` is about being able to read the store; the inner one is the verdict.
pub async fn verify_store(
    store: Arc<dyn Store>,
    key: &VerifierKey,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Result<VerifyReport, VerifyFailure>, AuditError> {
    let claimed = store.ledger_size().await?;
    let checkpoints = store
        .checkpoints()
        .await?
        .into_iter()
        .map(|row| (row.size, row.note));
    let mut verifier = match ChainVerifier::new(checkpoints, key.clone(), VerifyOptions::default())
    {
        Ok(verifier) => verifier,
        Err(failure) => return Ok(Err(failure)),
    };
    let fetch = |from: u64| {
        let store = store.clone();
        tokio::spawn(async move { store.leaves(from, PAGE).await })
    };
    let mut next_page = fetch(0);
    loop {
        let page = next_page
            .await
            .map_err(|err| AuditError::Ledger(format!("reader task failed: {err}")))??;
        let Some(&(last, _, _)) = page.last() else {
            break;
        };
        // Read ahead from just after this page; if the page has a gap the verifier stops
        // before the read-ahead matters.
        next_page = fetch(last + 1);
        for (seq, leaf, hash) in &page {
            if let Err(failure) = verifier.push(*seq, leaf, Hash(*hash)) {
                next_page.abort();
                return Ok(Err(failure));
            }
        }
        progress(verifier.size(), claimed);
    }
    let found = verifier.size();
    if found < claimed {
        return Ok(Err(VerifyFailure {
            seq: Some(found),
            reason: FailureReason::TruncatedLog { claimed, found },
        }));
    }
    Ok(verifier.finish())
}

/// What to put in an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every entry of one case.
    Case(CaseId),
    /// Every entry.
    All,
}

/// Builds an offline bundle of the selected entries against the latest signed checkpoint.
pub async fn export(
    store: &dyn Store,
    selection: Selection,
    key: &VerifierKey,
) -> Result<Bundle, AuditError> {
    let checkpoint = store
        .latest_checkpoint()
        .await?
        .ok_or(AuditError::NoCheckpoint)?;
    let mut hashes: Vec<Hash> = Vec::new();
    let mut selected: Vec<(u64, Vec<u8>)> = Vec::new();
    while (hashes.len() as u64) < checkpoint.size {
        let page = store.entries(hashes.len() as u64, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            if row.seq >= checkpoint.size {
                break;
            }
            hashes.push(Hash(row.leaf_hash));
            if selection == Selection::All {
                selected.push((row.seq, row.leaf));
            }
        }
    }
    if let Selection::Case(case) = selection {
        selected = store
            .case_entries(case)
            .await?
            .into_iter()
            .filter(|row| row.seq < checkpoint.size)
            .map(|row| (row.seq, row.leaf))
            .collect();
        if selected.is_empty() {
            return Err(AuditError::UnknownCase(case));
        }
    }
    build_bundle(&hashes, &selected, &checkpoint.note, key.to_text())
        .map_err(|err| AuditError::Ledger(err.to_string()))
}
