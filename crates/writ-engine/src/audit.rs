//! Auditing the stored ledger: full verification, and offline bundles.
//!
//! [`verify_store`] reads every entry page by page and feeds the incremental
//! [`ChainVerifier`], so memory stays flat however long the ledger is. [`export`] builds a
//! [`Bundle`] (entries, inclusion proofs, the latest signed checkpoint and the public key) that
//! `writ audit verify --bundle` checks with no database.

use std::sync::Arc;

use writ_core::Sha256Digest;
use writ_core::ids::CaseId;
use writ_ledger::{
    Bundle, ChainVerifier, FailureReason, Hash, LeafMembers, VerifierKey, VerifyFailure,
    VerifyOptions, VerifyReport, WitnessVerifier, build_bundle, verify_cosignatures,
};
use writ_store::{Store, StoreError};

/// Entries read per page.
const PAGE: u32 = 4_000;

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
    /// The checkpoint an export starts from is not one this ledger extends.
    #[error("{0}")]
    NotExtending(String),
}

/// Verifies everything the store holds about the ledger:
/// - every entry's leaf, its stored hash, the chain and every checkpoint's signature
///   ([`ChainVerifier`]);
/// - every stored column of an entry against its leaf (seq, time, case, actor, kind, key);
/// - every checkpoint's stored root against the root its signed note states;
/// - that a signed checkpoint covers the head (an unsigned tail fails);
/// - that every evidence digest an entry names is stored, and that every stored blob hashes to
///   its digest.
///
/// `progress` is called with (entries done, entries claimed) after each page. The next page is
/// read while the current one is verified, so reading and hashing overlap.
///
/// The outer `Result` is about being able to read the store; the inner one is the verdict.
pub async fn verify_store(
    store: Arc<dyn Store>,
    key: &VerifierKey,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Result<VerifyReport, VerifyFailure>, AuditError> {
    verify_store_against(store, key, None, progress).await
}

/// [`verify_store`], and also that today's tree extends `trusted`: a signed checkpoint an
/// auditor kept (or one published outside the database). Its root must be the root the stored
/// entries give at its size, so a history rewritten or truncated and signed again since is
/// named, however consistent the database is with itself.
pub async fn verify_store_against(
    store: Arc<dyn Store>,
    key: &VerifierKey,
    trusted: Option<&str>,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Result<VerifyReport, VerifyFailure>, AuditError> {
    let trusted = Trusted {
        notes: trusted.map(str::to_owned).into_iter().collect(),
        published: false,
    };
    verify_store_witnessed(store, key, &trusted, &[], progress).await
}

/// Checkpoints kept outside the database that today's tree must extend.
#[derive(Debug, Clone, Default)]
pub struct Trusted {
    /// The signed notes.
    pub notes: Vec<String>,
    /// They are every checkpoint published as it was made (a publish directory): each must
    /// also be in the database, so a checkpoint deleted from it is named.
    pub published: bool,
}

/// [`verify_store_against`], and also that each of `witnesses` has co-signed a checkpoint
/// covering every entry: its stored co-signature verifies with its key over the stored
/// checkpoint it names (which the chain check verified against the entries).
pub async fn verify_store_witnessed(
    store: Arc<dyn Store>,
    key: &VerifierKey,
    trusted: &Trusted,
    witnesses: &[WitnessVerifier],
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Result<VerifyReport, VerifyFailure>, AuditError> {
    let claimed = store.ledger_size().await?;
    let mut checkpoints = store.checkpoints().await?;
    // A stored root and size must be the ones its note signs (the verifier checks each note
    // against the tree; the columns beside it are what a reader of the table would trust).
    for row in &checkpoints {
        if let Ok(signed) = writ_ledger::open(&row.note, key) {
            let column = if signed.root.0 != row.root {
                Some("root")
            } else if signed.size != row.size {
                Some("size")
            } else {
                None
            };
            if let Some(column) = column {
                return Ok(Err(VerifyFailure {
                    seq: None,
                    reason: if column == "root" {
                        FailureReason::StoredRootMismatch { size: row.size }
                    } else {
                        FailureReason::CheckpointColumnMismatch {
                            size: row.size,
                            column: column.to_owned(),
                        }
                    },
                }));
            }
        }
    }
    // A checkpoint is written with the entries it ends: its time is theirs.
    let checkpoint_times: std::collections::HashMap<u64, jiff::Timestamp> =
        checkpoints.iter().map(|row| (row.size, row.time)).collect();
    let stored_notes: std::collections::HashSet<&str> =
        checkpoints.iter().map(|row| row.note.as_str()).collect();
    let mut kept_rows = Vec::new();
    // One kept checkpoint: the consistency proof from it is built as the leaves stream by.
    let mut kept_one: Option<writ_ledger::Checkpoint> = None;
    for note in &trusted.notes {
        let Ok(kept) = writ_ledger::open(note, key) else {
            return Ok(Err(VerifyFailure {
                seq: None,
                reason: FailureReason::MalformedBundle(
                    "the trusted checkpoint is not a checkpoint signed by this key".into(),
                ),
            }));
        };
        let note = note.trim_end().to_owned() + "\n";
        if trusted.published && !stored_notes.contains(note.as_str()) {
            return Ok(Err(VerifyFailure {
                seq: None,
                reason: FailureReason::CheckpointNotStored { size: kept.size },
            }));
        }
        kept_rows.push(writ_store::CheckpointRow {
            size: kept.size,
            root: kept.root.0,
            note,
            time: jiff::Timestamp::UNIX_EPOCH,
        });
        if !trusted.published && trusted.notes.len() == 1 {
            kept_one = Some(kept);
        }
    }
    let mut proof: Option<writ_ledger::ConsistencyBuilder> = None;
    drop(stored_notes);
    checkpoints.extend(kept_rows);
    let mut verifier = match ChainVerifier::new(
        checkpoints.into_iter().map(|row| (row.size, row.note)),
        key.clone(),
        VerifyOptions::default(),
    ) {
        Ok(verifier) => verifier,
        Err(failure) => return Ok(Err(failure)),
    };
    // Two workers read and check alternate pages (each entry on its own: hash, canonical
    // form, stored columns), each on its own core; this task takes the pages in order and adds
    // each entry to the tree, checking the sequence and the checkpoints.
    let options = verifier.options();
    let mut pages = Vec::with_capacity(WORKERS as usize);
    let mut workers = Vec::with_capacity(WORKERS as usize);
    for worker in 0..WORKERS {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<CheckedRow>, StoreError>>(2);
        pages.push(rx);
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let mut page_number = worker;
            loop {
                let read = store.scan_page(page_number * u64::from(PAGE), PAGE).await;
                let last = matches!(&read, Ok(rows) if rows.is_empty()) || read.is_err();
                let checked = match read {
                    Ok(rows) => tokio::task::spawn_blocking(move || Ok(check_rows(&rows, options)))
                        .await
                        .unwrap_or_else(|err| {
                            Err(StoreError::Corrupt {
                                table: "ledger_entries",
                                detail: format!("the checking thread failed: {err}"),
                            })
                        }),
                    Err(err) => Err(err),
                };
                if tx.send(checked).await.is_err() || last {
                    return;
                }
                page_number += WORKERS;
            }
        }));
    }
    let stop = |workers: &[tokio::task::JoinHandle<()>]| {
        for worker in workers {
            worker.abort();
        }
    };
    // Digests whose first naming entry has been seen (their receipt time checked there).
    let mut first_named: std::collections::HashSet<Sha256Digest> = std::collections::HashSet::new();
    let mut page_number = 0usize;
    loop {
        let Some(page) = pages[page_number % WORKERS as usize].recv().await else {
            stop(&workers);
            return Err(AuditError::Ledger("a reader task stopped".into()));
        };
        page_number += 1;
        let page = match page {
            Ok(page) => page,
            Err(err) => {
                stop(&workers);
                return Err(err.into());
            }
        };
        if page.is_empty() {
            break;
        }
        let mut named: Vec<Named> = Vec::new();
        for row in page {
            if proof.is_none()
                && kept_one
                    .as_ref()
                    .is_some_and(|kept| kept.size > 0 && kept.size == verifier.size())
            {
                proof = Some(writ_ledger::ConsistencyBuilder::new(
                    verifier.tree(),
                    claimed,
                ));
            }
            let checked = verifier
                .expect_seq(row.seq)
                .and(row.alone)
                .and_then(|(hash, found)| {
                    named.extend(found);
                    if let Some(proof) = &mut proof {
                        proof.push(row.seq, hash);
                    }
                    verifier.push_checked(row.seq, hash)
                })
                .and_then(|()| match checkpoint_times.get(&(row.seq + 1)) {
                    Some(time) if *time != row.time => Err(VerifyFailure {
                        seq: None,
                        reason: FailureReason::CheckpointColumnMismatch {
                            size: row.seq + 1,
                            column: "time_us".into(),
                        },
                    }),
                    _ => Ok(()),
                });
            if let Err(failure) = checked {
                stop(&workers);
                return Ok(Err(failure));
            }
        }
        if let Some(failure) = evidence_named(&*store, &named, &mut first_named).await? {
            stop(&workers);
            return Ok(Err(failure));
        }
        progress(verifier.size(), claimed);
    }
    stop(&workers);
    let found = verifier.size();
    if found < claimed {
        return Ok(Err(VerifyFailure {
            seq: Some(found),
            reason: FailureReason::TruncatedLog { claimed, found },
        }));
    }
    if found > claimed {
        return Ok(Err(VerifyFailure {
            seq: Some(claimed),
            reason: FailureReason::HeadMismatch { claimed, found },
        }));
    }
    let mut report = match verifier.finish() {
        Ok(report) => report,
        Err(failure) => return Ok(Err(failure)),
    };
    // The kept checkpoint's RFC 6962 consistency proof to today's tree (the entries already
    // give its root at its size: the proof is what an auditor's own tools check).
    if let Some(kept) = &kept_one
        && kept.size > 0
    {
        let hashes = match proof {
            Some(proof) => proof.finish().unwrap_or_default(),
            None => Vec::new(), // the kept checkpoint is today's tree
        };
        if writ_ledger::verify_consistency(
            kept.size,
            report.entries,
            &hashes,
            &kept.root,
            &report.root,
        )
        .is_err()
        {
            return Ok(Err(VerifyFailure {
                seq: None,
                reason: FailureReason::BadConsistencyProof,
            }));
        }
        report.consistent_with = Some((kept.size, hashes.len()));
    }
    let signed = report.latest_checkpoint.as_ref().map_or(0, |c| c.size);
    if signed < report.entries {
        return Ok(Err(VerifyFailure {
            seq: Some(signed),
            reason: FailureReason::UnsignedTail {
                signed,
                entries: report.entries,
            },
        }));
    }
    if let Some(failure) = evidence_failure(&*store).await? {
        return Ok(Err(failure));
    }
    if let Some(failure) = witness_failure(&*store, witnesses, report.entries).await? {
        return Ok(Err(failure));
    }
    Ok(Ok(report))
}

/// The first required witness that has not co-signed the head, or whose co-signature does
/// not verify.
async fn witness_failure(
    store: &dyn Store,
    witnesses: &[WitnessVerifier],
    entries: u64,
) -> Result<Option<VerifyFailure>, AuditError> {
    if witnesses.is_empty() {
        return Ok(None);
    }
    let rows = store.cosignatures().await?;
    for witness in witnesses {
        let name = witness.name().to_owned();
        let Some(row) = rows.iter().find(|row| row.witness == name) else {
            return Ok(Some(VerifyFailure {
                seq: None,
                reason: FailureReason::NotWitnessed {
                    witness: name,
                    witnessed: 0,
                    entries,
                },
            }));
        };
        let bad = || VerifyFailure {
            seq: None,
            reason: FailureReason::BadCosignature {
                witness: name.clone(),
                size: row.size,
            },
        };
        let Some(checkpoint) = store.checkpoint_at(row.size).await? else {
            return Ok(Some(bad()));
        };
        let cosigned = format!("{}{}\n", checkpoint.note, row.cosignature.trim_end());
        match verify_cosignatures(&cosigned, std::slice::from_ref(witness)) {
            Ok(verified)
                if verified.first().is_some_and(|v| {
                    i64::try_from(v.time_unix).ok() == Some(row.time.as_second())
                }) => {}
            _ => return Ok(Some(bad())),
        }
        if row.size < entries {
            return Ok(Some(VerifyFailure {
                seq: Some(row.size),
                reason: FailureReason::NotWitnessed {
                    witness: name,
                    witnessed: row.size,
                    entries,
                },
            }));
        }
    }
    Ok(None)
}

/// How many tasks read and check pages at once (this machine class has two cores).
const WORKERS: u64 = 3;

/// One entry as a worker checked it on its own: what the in-order pass still needs.
struct CheckedRow {
    seq: u64,
    time: jiff::Timestamp,
    /// The leaf hash and the evidence it names, or its problem.
    alone: Result<(Hash, Vec<Named>), VerifyFailure>,
}

/// Checks each entry on its own ([`writ_ledger::check_leaf`] and [`columns_match`]). The
/// page is dropped here, on the thread that checked it.
fn check_rows(rows: &writ_store::EntryPage, options: VerifyOptions) -> Vec<CheckedRow> {
    rows.iter()
        .map(|row| CheckedRow {
            seq: row.seq,
            time: row.time,
            alone: writ_ledger::check_leaf(options, row.seq, row.leaf, Hash(row.leaf_hash))
                .and_then(|(hash, members)| {
                    let mut named = Vec::new();
                    columns_match(&row, &members, &mut named)?;
                    Ok((hash, named))
                }),
        })
        .collect()
}

/// An evidence digest an entry names: the entry's seq, time and kind.
struct Named {
    seq: u64,
    time: jiff::Timestamp,
    kind: writ_core::event::EventKind,
    digest: Sha256Digest,
}

/// Checks the evidence `named` (in entry order) against the store: stored, of the media type
/// the naming entry's kind says, received at the time of the first entry that names it.
async fn evidence_named(
    store: &dyn Store,
    named: &[Named],
    first_named: &mut std::collections::HashSet<Sha256Digest>,
) -> Result<Option<VerifyFailure>, AuditError> {
    if named.is_empty() {
        return Ok(None);
    }
    let digests: Vec<Sha256Digest> = named.iter().map(|n| n.digest).collect();
    let stored: std::collections::HashMap<String, (String, jiff::Timestamp)> = store
        .evidence_meta(&digests)
        .await?
        .into_iter()
        .map(|(digest, media, received)| (digest, (media, received)))
        .collect();
    for entry in named {
        let digest = entry.digest.to_string();
        let mismatch = |column: &str| VerifyFailure {
            seq: Some(entry.seq),
            reason: FailureReason::EvidenceColumnMismatch {
                digest: digest.clone(),
                column: column.to_owned(),
            },
        };
        let Some((media, received)) = stored.get(&digest) else {
            return Ok(Some(VerifyFailure {
                seq: Some(entry.seq),
                reason: FailureReason::EvidenceMissing { digest },
            }));
        };
        if entry.kind.evidence_media_type() != Some(media.as_str()) {
            return Ok(Some(mismatch("media_type")));
        }
        if first_named.insert(entry.digest) && *received != entry.time {
            return Ok(Some(mismatch("received_us")));
        }
    }
    Ok(None)
}

/// Checks `row`'s stored columns against its leaf's top-level members (the leaf already
/// verified against its hash, and `seq` against its position), naming the first that differs,
/// and collects the evidence digests the entry names. Compares raw canonical JSON where it can,
/// so a leaf is not parsed a second time.
fn columns_match(
    row: &writ_store::EntryRef<'_>,
    members: &LeafMembers<'_>,
    named: &mut Vec<Named>,
) -> Result<(), VerifyFailure> {
    let differs = |column: &str| VerifyFailure {
        seq: Some(row.seq),
        reason: FailureReason::ColumnMismatch {
            column: column.to_owned(),
        },
    };
    let time_same = members.get("time").and_then(json_str).is_some_and(|text| {
        match utc_seconds_and_nanos(text.as_bytes()) {
            Some((seconds, nanos)) => {
                i128::from(seconds) * 1_000_000_000 + i128::from(nanos) == row.time.as_nanosecond()
            }
            None => text.parse::<jiff::Timestamp>().ok() == Some(row.time),
        }
    });
    if !time_same {
        return Err(differs("time_us"));
    }
    let case_same = match (members.get("case_id"), row.case_id) {
        (Some(b"null") | None, None) => true,
        (Some(raw), Some(case)) => {
            json_str(raw).and_then(|text| text.parse::<CaseId>().ok()) == Some(case)
        }
        _ => false,
    };
    if !case_same {
        return Err(differs("case_id"));
    }
    if !string_is(members.get("actor"), row.actor) {
        return Err(differs("actor"));
    }
    if !string_is(members.get("kind"), row.kind.name().as_bytes()) {
        return Err(differs("kind"));
    }
    if !string_is(members.get("idempotency_key"), row.idempotency_key) {
        return Err(differs("idempotency_key"));
    }
    if let Some(raw) = members.get("evidence") {
        let digests: Vec<Sha256Digest> =
            serde_json::from_slice(raw).map_err(|_| differs("leaf"))?;
        named.extend(digests.into_iter().map(|digest| Named {
            seq: row.seq,
            time: row.time,
            kind: row.kind,
            digest,
        }));
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS[.fffffffff]Z` (how a timestamp is written in a leaf) as seconds since
/// the Unix epoch and nanoseconds, read directly (the audit reads a million of them); `None`
/// for any other shape or an impossible date, which the caller parses the slow way.
fn utc_seconds_and_nanos(text: &[u8]) -> Option<(i64, i32)> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let bytes = text.get(range)?;
        bytes.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if text.len() < 20 || separators.iter().any(|&(at, c)| text.get(at) != Some(&c)) {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let days_in_month = *month_days.get(usize::try_from(month.checked_sub(1)?).ok()?)?;
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let nanos = match (text.get(19), text.last()) {
        (Some(b'Z'), _) if text.len() == 20 => 0,
        (Some(b'.'), Some(b'Z')) if (22..=30).contains(&text.len()) => {
            let fraction = digits(20..text.len() - 1)?;
            let width = u32::try_from(text.len() - 21).ok()?;
            i32::try_from(fraction * 10i64.pow(9 - width)).ok()?
        }
        _ => return None,
    };
    // Days from the civil date (H. Hinnant's algorithm).
    let shifted = if month <= 2 { year - 1 } else { year };
    let era = shifted.div_euclid(400);
    let year_of_era = shifted - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second, nanos))
}

/// The content of a raw JSON string with no escapes (timestamps, uuids, names), else `None`.
fn json_bytes(raw: &[u8]) -> Option<&[u8]> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    (!inner.contains(&b'\\')).then_some(inner)
}

/// The text of a raw JSON string with no escapes, else `None`.
fn json_str(raw: &[u8]) -> Option<&str> {
    json_bytes(raw).and_then(|inner| std::str::from_utf8(inner).ok())
}

/// Whether the raw JSON string `raw` is the text `expected` (a stored column's bytes):
/// compared as bytes when it has no escapes, else decoded.
fn string_is(raw: Option<&[u8]>, expected: &[u8]) -> bool {
    let Some(raw) = raw else {
        return false;
    };
    match json_bytes(raw) {
        Some(text) => text == expected,
        None => serde_json::from_slice::<String>(raw).is_ok_and(|text| text.as_bytes() == expected),
    }
}

/// The first stored evidence blob whose bytes do not hash to its digest, if any.
async fn evidence_failure(store: &dyn Store) -> Result<Option<VerifyFailure>, AuditError> {
    let mut after: Option<String> = None;
    loop {
        let page = store.evidence_page(after.as_deref(), 1_000).await?;
        let Some((last, _)) = page.last() else {
            return Ok(None);
        };
        let last = last.clone();
        for (digest, bytes) in page {
            if Sha256Digest::of(&bytes).to_string() != digest {
                return Ok(Some(VerifyFailure {
                    seq: None,
                    reason: FailureReason::EvidenceMismatch { digest },
                }));
            }
        }
        after = Some(last);
    }
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
    export_since(store, selection, key, None).await
}

/// [`export`], with an RFC 6962 consistency proof from `since` (a signed checkpoint an auditor
/// kept) to the bundle's checkpoint, and `since` itself: the bundle then proves that today's
/// tree extends the one the auditor saw. Refuses a `since` this ledger does not extend.
pub async fn export_since(
    store: &dyn Store,
    selection: Selection,
    key: &VerifierKey,
    since: Option<&str>,
) -> Result<Bundle, AuditError> {
    let since_note = since;
    let since = since
        .map(|note| {
            writ_ledger::open(note, key).map_err(|err| {
                AuditError::NotExtending(format!(
                    "the checkpoint to export since is not one signed by this ledger's key: {err}"
                ))
            })
        })
        .transpose()?;
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
    let bundle = build_bundle(&hashes, &selected, &checkpoint.note, key.to_text())
        .map_err(|err| AuditError::Ledger(err.to_string()))?;
    let Some(kept) = since else {
        return Ok(bundle);
    };
    if kept.size > checkpoint.size {
        return Err(AuditError::NotExtending(format!(
            "the checkpoint to export since covers {} entries, more than the ledger's latest checkpoint ({}): the ledger was truncated",
            kept.size, checkpoint.size
        )));
    }
    let mut bundle = bundle
        .with_consistency(&hashes, kept.size)
        .map_err(|err| AuditError::Ledger(err.to_string()))?;
    if let Some(consistency) = &mut bundle.consistency {
        if consistency.old_root != kept.root {
            return Err(AuditError::NotExtending(format!(
                "the ledger's tree at size {} is not the one the checkpoint signs: the history was rewritten since",
                kept.size
            )));
        }
        if let Some(note) = since_note {
            consistency.old_checkpoint = Some(note.to_owned());
        }
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::utc_seconds_and_nanos;

    proptest::proptest! {
        /// The fast reading of a leaf's timestamp is jiff's, for any timestamp jiff writes.
        #[test]
        fn timestamps_read_fast_are_jiffs(seconds in -62_000_000_000i64..250_000_000_000, nanos in 0i32..1_000_000_000) {
            let time = jiff::Timestamp::new(seconds, nanos).unwrap();
            let text = serde_json::to_value(time).unwrap();
            let text = text.as_str().unwrap();
            if let Some(read) = utc_seconds_and_nanos(text.as_bytes()) {
                proptest::prop_assert_eq!(
                    i128::from(read.0) * 1_000_000_000 + i128::from(read.1),
                    time.as_nanosecond(),
                    "{}",
                    text
                );
            } else {
                // Only years outside 0000-9999 take the slow way.
                proptest::prop_assert!(!(0..=9999).contains(&time.to_zoned(jiff::tz::TimeZone::UTC).year()), "{}", text);
            }
        }
    }

    #[test]
    fn odd_shapes_take_the_slow_way() {
        for text in [
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07T04:00:00+00:00",
            "2026-12-07T04:00:00.Z",
            "2026-12-07 04:00:00Z",
            "2026-12-07T04:00:00.1234567890Z",
        ] {
            assert_eq!(utc_seconds_and_nanos(text.as_bytes()), None, "{text}");
        }
        assert_eq!(
            utc_seconds_and_nanos(b"1970-01-01T00:00:01.5Z"),
            Some((1, 500_000_000))
        );
        assert_eq!(
            utc_seconds_and_nanos(b"2024-02-29T23:59:59.000001Z"),
            Some((1_709_251_199, 1_000))
        );
    }
}

/// A control framework whose tags the ledger's events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framework {
    /// NIST Cybersecurity Framework 2.0 outcomes (`PR.AA-05`), added to every event by kind.
    NistCsf2,
    /// OWASP Non-Human Identities Top 10 (`NHI-02`), from the findings.
    OwaspNhi,
}

impl Framework {
    /// Whether `tag` belongs to this framework.
    pub fn owns(self, tag: &str) -> bool {
        let owasp = tag.starts_with("NHI-");
        match self {
            Framework::OwaspNhi => owasp,
            Framework::NistCsf2 => !owasp,
        }
    }
}

/// The evidence of one control: the entries tagged with it, and their cases.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ControlEvidence {
    /// Entries tagged with the control.
    pub events: u64,
    /// Their event kinds, with counts.
    pub kinds: std::collections::BTreeMap<String, u64>,
    /// The cases they belong to.
    pub cases: std::collections::BTreeSet<CaseId>,
    /// The entries, each with its inclusion proof in the bundle.
    pub entries: Vec<ControlEntry>,
}

/// One entry that evidences a control.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ControlEntry {
    /// Its sequence number.
    pub seq: u64,
    /// Its event kind.
    pub kind: String,
    /// Its case, if it belongs to one.
    pub case_id: Option<CaseId>,
}

/// Evidence by control: for each control of `framework`, the entries (at or after `since`)
/// that evidence it, and a bundle holding those entries with their inclusion proofs against
/// the latest signed checkpoint, for checking offline (`writ audit verify --bundle`).
pub async fn controls_report(
    store: &dyn Store,
    framework: Framework,
    since: Option<jiff::Timestamp>,
    key: &VerifierKey,
) -> Result<(std::collections::BTreeMap<String, ControlEvidence>, Bundle), AuditError> {
    let checkpoint = store
        .latest_checkpoint()
        .await?
        .ok_or(AuditError::NoCheckpoint)?;
    let mut hashes: Vec<Hash> = Vec::new();
    let mut selected: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut controls: std::collections::BTreeMap<String, ControlEvidence> =
        std::collections::BTreeMap::new();
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
            if since.is_some_and(|t| row.time < t) {
                continue;
            }
            let event =
                crate::entries::decode(&row).map_err(|err| AuditError::Ledger(err.to_string()))?;
            let mut tagged = false;
            for tag in event.controls.iter().filter(|t| framework.owns(&t.0)) {
                tagged = true;
                let evidence = controls.entry(tag.0.clone()).or_default();
                evidence.events += 1;
                *evidence
                    .kinds
                    .entry(event.kind.name().to_owned())
                    .or_default() += 1;
                if let Some(case) = event.case_id {
                    evidence.cases.insert(case);
                }
                evidence.entries.push(ControlEntry {
                    seq: row.seq,
                    kind: event.kind.name().to_owned(),
                    case_id: event.case_id,
                });
            }
            if tagged {
                selected.push((row.seq, row.leaf));
            }
        }
    }
    let bundle = build_bundle(&hashes, &selected, &checkpoint.note, key.to_text())
        .map_err(|err| AuditError::Ledger(err.to_string()))?;
    Ok((controls, bundle))
}
