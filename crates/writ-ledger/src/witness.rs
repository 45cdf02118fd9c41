//! Witnessing: C2SP `tlog-cosignature` (Ed25519 `cosignature/v1`)
//! co-signatures and the pure protocol logic of a C2SP `tlog-witness`.
//!
//! A *witness* checks that every checkpoint a log shows it extends the last
//! one it co-signed for that log, and only then co-signs it. Clients that
//! require co-signatures from independent witnesses are protected against a
//! log showing different histories to different people (a split view), and
//! against a log rewriting its history.
//!
//! Like the rest of the crate this module does no I/O, reads no clock and
//! draws no randomness: times and key seeds are arguments. The HTTP server,
//! the persistence of [`WitnessedTree`] and the atomicity of "check the
//! latest size, then store the new one" belong to the caller.
//!
//! # Formats
//!
//! Specs: <https://c2sp.org/tlog-cosignature> (Ed25519 section) and
//! <https://c2sp.org/tlog-witness>.
//!
//! - Key ID: `SHA-256(name || "\n" || 0x04 || pubkey32)[:4]`
//!   ([`COSIGNATURE_V1_ALG`] is the signed-note signature type `0x04`).
//! - Verifier key text (a signed-note *vkey*):
//!   `<name>+<8 hex key ID>+<base64(0x04 || pubkey32)>`.
//! - Secret key text: `PRIVATE+KEY+<name>+<8 hex key ID>+<base64(0x04 ||
//!   seed32)>`, the Go `golang.org/x/mod/sumdb/note` signer-key layout with
//!   the algorithm byte `0x04`; the key ID is the cosignature key ID above.
//!   The same text is accepted by `transparency-dev/formats`
//!   `note.NewSignerForCosignatureV1`. A log key (algorithm `0x01`) is
//!   refused, so one key can never serve as both log and witness key.
//! - Signed message: `"cosignature/v1\ntime <unix seconds>\n"` followed by
//!   the whole checkpoint body (the note text, including extension lines
//!   and the final newline, without signature lines).
//! - Signature line: `— <witness name> base64(keyID(4) || timestamp(8,
//!   big-endian) || Ed25519 signature(64))`, newline-terminated. The
//!   timestamp must not exceed `2^63 - 1`.
//! - `add-checkpoint` request body ([`AddCheckpoint`]): `old <size>\n`, zero
//!   to 63 consistency proof lines (base64 hashes), an empty line, then the
//!   signed checkpoint note.
//!
//! # Status codes ([`WitnessRefusal::status`])
//!
//! 200 with the co-signature line; 400 for a malformed request or an old
//! size above the checkpoint size; 403 when no known log key signed the
//! checkpoint; 404 for an unknown origin; 409 with content type
//! `text/x.tlog.size` and body `<latest size>\n` when the old size is not
//! the latest co-signed size, and 409 (plain text) for a checkpoint of the
//! latest size with another root; 422 when the consistency proof does not
//! verify.

use crate::checkpoint::{Checkpoint, VerifierKey, verify_note};
use crate::error::ProofError;
use crate::tree::{EMPTY_ROOT, Hash, verify_consistency};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, Verifier as _};
use serde::{Deserialize, Serialize};
use signed_note::{Note, NoteError, VerifierList};
use std::fmt;
use thiserror::Error;

/// The signed-note signature type (key ID algorithm byte) of Ed25519
/// `cosignature/v1` co-signatures.
pub const COSIGNATURE_V1_ALG: u8 = 0x04;

/// The first (domain separation) line of the `cosignature/v1` signed
/// message, without its newline.
pub const COSIGNATURE_V1_HEADER: &str = "cosignature/v1";

/// Content type of the `409 Conflict` body carrying the witness's latest
/// co-signed size.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Most consistency proof lines a client may send (`tlog-witness`).
pub const MAX_PROOF_LINES: usize = 63;

/// Largest allowed co-signature timestamp (`2^63 - 1`).
pub const MAX_TIMESTAMP: u64 = u64::MAX >> 1;

const TIMESTAMP_LEN: usize = 8;
const SIGNATURE_LEN: usize = ed25519_dalek::SIGNATURE_LENGTH;

/// Errors from witness key handling, co-signing, co-signature verification
/// and request parsing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WitnessError {
    /// A key name is empty or contains whitespace or `+`.
    #[error("invalid witness key name {0:?}")]
    InvalidKeyName(String),
    /// A witness key text is malformed, of another algorithm, or its key ID
    /// does not match.
    #[error("malformed witness key text: {0}")]
    MalformedKey(&'static str),
    /// A co-signature timestamp exceeds `2^63 - 1`.
    #[error("co-signature timestamp {0} exceeds 2^63 - 1")]
    TimestampOutOfRange(u64),
    /// A checkpoint body is malformed.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// A signed note is malformed.
    #[error("malformed signed note")]
    MalformedNote,
    /// A required witness has no co-signature line on the checkpoint.
    #[error("no co-signature by witness {witness:?}")]
    MissingCosignature {
        /// The witness name.
        witness: String,
    },
    /// A required witness's co-signature line does not verify.
    #[error("invalid co-signature by witness {witness:?}")]
    InvalidCosignature {
        /// The witness name.
        witness: String,
    },
    /// An `add-checkpoint` request body or a `409` size body is malformed.
    #[error("malformed witness request: {0}")]
    MalformedRequest(String),
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// A witness's secret Ed25519 co-signing key with its name.
///
/// `Debug` never prints the secret; the seed is zeroed on drop.
#[derive(Clone)]
pub struct WitnessKey {
    name: String,
    id: u32,
    signing: ed25519_dalek::SigningKey,
}

/// A witness's public co-signature verifier key with its name.
#[derive(Clone, PartialEq, Eq)]
pub struct WitnessVerifier {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl fmt::Debug for WitnessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitnessKey")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for WitnessVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WitnessVerifier")
            .field(&self.to_text())
            .finish()
    }
}

/// `SHA-256(name || "\n" || 0x04 || pubkey)[:4]` as a big-endian `u32`.
fn cosignature_key_id(name: &str, key: &ed25519_dalek::VerifyingKey) -> u32 {
    let raw = [&[COSIGNATURE_V1_ALG][..], key.as_bytes()].concat();
    signed_note::key_id(name, &raw)
}

/// Exactly 8 lowercase hex digits.
fn parse_key_id(hex: &str) -> Option<u32> {
    let ok = hex.len() == 8
        && hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if ok {
        u32::from_str_radix(hex, 16).ok()
    } else {
        None
    }
}

/// Decodes `base64(0x04 || 32 bytes)`.
fn decode_key_material(b64: &str) -> Result<[u8; 32], WitnessError> {
    let raw = B64
        .decode(b64)
        .map_err(|_| WitnessError::MalformedKey("bad base64"))?;
    match raw.split_first() {
        Some((&COSIGNATURE_V1_ALG, rest)) => rest
            .try_into()
            .map_err(|_| WitnessError::MalformedKey("bad key length")),
        Some((&1, _)) => Err(WitnessError::MalformedKey(
            "algorithm 0x01 is a log signing key, not a cosignature/v1 (0x04) witness key",
        )),
        _ => Err(WitnessError::MalformedKey(
            "not a cosignature/v1 (0x04) key",
        )),
    }
}

impl WitnessKey {
    /// Derives a witness key named `name` from 32 caller-supplied random
    /// bytes (the Ed25519 seed).
    ///
    /// # Errors
    ///
    /// [`WitnessError::InvalidKeyName`] if `name` is empty or contains
    /// whitespace or `+`.
    pub fn generate(name: &str, seed: [u8; 32]) -> Result<Self, WitnessError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(WitnessError::InvalidKeyName(name.to_owned()));
        }
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let id = cosignature_key_id(name, &signing.verifying_key());
        Ok(Self {
            name: name.to_owned(),
            id,
            signing,
        })
    }

    /// Parses a `PRIVATE+KEY+<name>+<key ID>+<base64(0x04 || seed)>` text
    /// strictly (canonical spelling only).
    ///
    /// # Errors
    ///
    /// [`WitnessError::MalformedKey`] if the text is malformed, is not a
    /// `0x04` key, or its key ID does not match; [`WitnessError::InvalidKeyName`]
    /// for a bad name.
    pub fn parse(text: &str) -> Result<Self, WitnessError> {
        // Base64 may contain `+`: split off the four leading fields only.
        let mut parts = text.splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(hex), Some(b64)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(WitnessError::MalformedKey(
                "expected PRIVATE+KEY+<name>+<key ID>+<base64>",
            ));
        };
        let id = parse_key_id(hex).ok_or(WitnessError::MalformedKey("bad key ID"))?;
        let seed = decode_key_material(b64)?;
        let me = Self::generate(name, seed)?;
        if me.id != id {
            return Err(WitnessError::MalformedKey("key ID mismatch"));
        }
        if me.to_text() != text {
            return Err(WitnessError::MalformedKey("non-canonical witness key text"));
        }
        Ok(me)
    }

    /// The secret key text `PRIVATE+KEY+<name>+<key ID>+<base64(0x04 ||
    /// seed)>`. Keep it secret.
    pub fn to_text(&self) -> String {
        let raw = [&[COSIGNATURE_V1_ALG][..], self.signing.as_bytes()].concat();
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(raw)
        )
    }

    /// The witness name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-bit `cosignature/v1` key ID.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The matching public verifier key.
    pub fn verifier(&self) -> WitnessVerifier {
        WitnessVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.signing.verifying_key(),
        }
    }
}

impl WitnessVerifier {
    /// Parses a `<name>+<key ID>+<base64(0x04 || pubkey)>` verifier key text
    /// strictly (canonical spelling only, key ID checked).
    ///
    /// # Errors
    ///
    /// [`WitnessError::MalformedKey`] if the text is malformed, is not a
    /// `0x04` key, is not a valid Ed25519 point, or its key ID does not
    /// match; [`WitnessError::InvalidKeyName`] for a bad name.
    pub fn parse(text: &str) -> Result<Self, WitnessError> {
        // Base64 may contain `+`: split off the two leading fields only.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(WitnessError::MalformedKey(
                "expected <name>+<key ID>+<base64>",
            ));
        };
        if !signed_note::is_key_name_valid(name) {
            return Err(WitnessError::InvalidKeyName(name.to_owned()));
        }
        let id = parse_key_id(hex).ok_or(WitnessError::MalformedKey("bad key ID"))?;
        let raw = decode_key_material(b64)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map_err(|_| WitnessError::MalformedKey("not an Ed25519 public key"))?;
        let me = Self {
            name: name.to_owned(),
            id: cosignature_key_id(name, &key),
            key,
        };
        if me.id != id {
            return Err(WitnessError::MalformedKey("key ID mismatch"));
        }
        if me.to_text() != text {
            return Err(WitnessError::MalformedKey(
                "non-canonical witness verifier key text",
            ));
        }
        Ok(me)
    }

    /// The verifier key text `<name>+<key ID>+<base64(0x04 || pubkey)>`.
    pub fn to_text(&self) -> String {
        let raw = [&[COSIGNATURE_V1_ALG][..], self.key.as_bytes()].concat();
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }

    /// The witness name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-bit `cosignature/v1` key ID.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// Checks the signature bytes of one co-signature line (after the key
    /// ID: `timestamp(8) || signature(64)`) over the note text `body`;
    /// returns the timestamp.
    fn verify_raw(&self, body: &[u8], sig: &[u8]) -> Option<u64> {
        if sig.len() != TIMESTAMP_LEN + SIGNATURE_LEN {
            return None;
        }
        let (ts, sig) = sig.split_at(TIMESTAMP_LEN);
        let time = u64::from_be_bytes(ts.try_into().ok()?);
        if time > MAX_TIMESTAMP {
            return None;
        }
        let sig = ed25519_dalek::Signature::from_slice(sig).ok()?;
        let mut msg = cosignature_message_prefix(time).into_bytes();
        msg.extend_from_slice(body);
        self.key.verify(&msg, &sig).ok().map(|()| time)
    }
}

/// Adapter so `signed_note`'s note parser and verifier can check
/// `cosignature/v1` lines.
struct CosignatureNoteVerifier(WitnessVerifier);

impl signed_note::Verifier for CosignatureNoteVerifier {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn key_id(&self) -> u32 {
        self.0.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.0.verify_raw(msg, sig).is_some()
    }
}

// ---------------------------------------------------------------------------
// Co-signing and verification
// ---------------------------------------------------------------------------

fn cosignature_message_prefix(time_unix: u64) -> String {
    format!("{COSIGNATURE_V1_HEADER}\ntime {time_unix}\n")
}

/// The exact message a `cosignature/v1` co-signature signs:
/// `"cosignature/v1\ntime <time_unix>\n"` followed by the checkpoint body.
pub fn cosignature_message(checkpoint_body: &str, time_unix: u64) -> String {
    let mut m = cosignature_message_prefix(time_unix);
    m.push_str(checkpoint_body);
    m
}

/// Co-signs a checkpoint at `time_unix` (seconds since the epoch) and
/// returns the newline-terminated signature line `— <name> <base64>\n`,
/// ready to append to the signed checkpoint or to send as an
/// `add-checkpoint` response body.
///
/// # Errors
///
/// [`WitnessError::MalformedCheckpoint`] for a checkpoint that cannot be
/// written as a note body, [`WitnessError::TimestampOutOfRange`] if
/// `time_unix > 2^63 - 1`.
pub fn cosign(
    checkpoint: &Checkpoint,
    key: &WitnessKey,
    time_unix: u64,
) -> Result<String, WitnessError> {
    let body = checkpoint
        .to_text()
        .map_err(|e| WitnessError::MalformedCheckpoint(e.to_string()))?;
    cosign_body(&body, key, time_unix)
}

/// Like [`cosign`], for a checkpoint body text (the note text before the
/// blank line), which must be a well-formed checkpoint.
///
/// # Errors
///
/// As [`cosign`].
pub fn cosign_body(
    checkpoint_body: &str,
    key: &WitnessKey,
    time_unix: u64,
) -> Result<String, WitnessError> {
    Checkpoint::parse_text(checkpoint_body)
        .map_err(|e| WitnessError::MalformedCheckpoint(e.to_string()))?;
    // Same text rules as a signed note (no control characters but newline).
    Note::new(checkpoint_body.as_bytes(), &[]).map_err(|_| WitnessError::MalformedNote)?;
    if time_unix > MAX_TIMESTAMP {
        return Err(WitnessError::TimestampOutOfRange(time_unix));
    }
    let msg = cosignature_message(checkpoint_body, time_unix);
    let sig = key.signing.sign(msg.as_bytes());
    let mut raw = Vec::with_capacity(4 + TIMESTAMP_LEN + SIGNATURE_LEN);
    raw.extend_from_slice(&key.id.to_be_bytes());
    raw.extend_from_slice(&time_unix.to_be_bytes());
    raw.extend_from_slice(&sig.to_bytes());
    Ok(format!("\u{2014} {} {}\n", key.name, B64.encode(raw)))
}

/// A verified co-signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCosignature {
    /// The witness name.
    pub witness: String,
    /// The witness key ID.
    pub key_id: u32,
    /// The co-signature timestamp (seconds since the epoch).
    pub time_unix: u64,
}

/// Checks that every witness in `witnesses` has a valid `cosignature/v1`
/// line on the signed checkpoint `signed_note`, and returns their
/// timestamps in the order of `witnesses`.
///
/// Other signature lines (the log's own, unknown witnesses) are ignored.
/// The log signature is **not** checked here: open the note with
/// [`crate::checkpoint::open`] as well. Quorum policy and timestamp
/// freshness are the caller's. To check an `add-checkpoint` response,
/// append it to the submitted note (both are newline-terminated) and call
/// this function.
///
/// # Errors
///
/// [`WitnessError::MalformedNote`] or [`WitnessError::MalformedCheckpoint`]
/// for a bad note; otherwise the first witness (in `witnesses` order) that
/// has no line ([`WitnessError::MissingCosignature`]) or whose first line
/// does not verify ([`WitnessError::InvalidCosignature`]).
pub fn verify_cosignatures(
    signed_note: &str,
    witnesses: &[WitnessVerifier],
) -> Result<Vec<VerifiedCosignature>, WitnessError> {
    let note = Note::from_bytes(signed_note.as_bytes()).map_err(|_| WitnessError::MalformedNote)?;
    let text = std::str::from_utf8(note.text()).map_err(|_| WitnessError::MalformedNote)?;
    Checkpoint::parse_text(text).map_err(|e| WitnessError::MalformedCheckpoint(e.to_string()))?;
    let mut out = Vec::with_capacity(witnesses.len());
    for w in witnesses {
        let list = VerifierList::new(vec![Box::new(CosignatureNoteVerifier(w.clone()))]);
        let verified = match note.verify(&list) {
            Ok((verified, _)) => verified,
            Err(NoteError::UnverifiedNote) => {
                return Err(WitnessError::MissingCosignature {
                    witness: w.name.clone(),
                });
            }
            Err(_) => {
                return Err(WitnessError::InvalidCosignature {
                    witness: w.name.clone(),
                });
            }
        };
        let time_unix = verified
            .first()
            .and_then(|s| s.signature().get(..TIMESTAMP_LEN))
            .and_then(|ts| <[u8; TIMESTAMP_LEN]>::try_from(ts).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| WitnessError::InvalidCosignature {
                witness: w.name.clone(),
            })?;
        out.push(VerifiedCosignature {
            witness: w.name.clone(),
            key_id: w.id,
            time_unix,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// add-checkpoint requests
// ---------------------------------------------------------------------------

/// A C2SP `tlog-witness` `add-checkpoint` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the latest checkpoint the client believes the witness
    /// co-signed for this log (0: never).
    pub old_size: u64,
    /// The RFC 6962 consistency proof from `old_size` to the checkpoint's
    /// size (empty when `old_size` is 0 or equals the checkpoint size).
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub note: String,
}

/// Parses a canonical ASCII decimal (no sign, no leading zeros but `0`).
fn parse_decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

impl AddCheckpoint {
    /// The request body: `old <size>\n`, one base64 proof hash per line, an
    /// empty line, then the signed note.
    pub fn to_body(&self) -> String {
        let mut s = format!("old {}\n", self.old_size);
        for h in &self.proof {
            s.push_str(&h.to_base64());
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.note);
        s
    }

    /// Parses a request body strictly: canonical decimal old size, at most
    /// [`MAX_PROOF_LINES`] canonical base64 32-byte hashes, the empty line,
    /// and a non-empty note (the note itself is checked by
    /// [`add_checkpoint`]). A non-UTF-8 body is malformed too (400).
    ///
    /// # Errors
    ///
    /// [`WitnessError::MalformedRequest`] naming the offending line.
    pub fn parse(body: &str) -> Result<Self, WitnessError> {
        let bad = WitnessError::MalformedRequest;
        let (first, mut rest) = body
            .split_once('\n')
            .ok_or_else(|| bad("missing \"old <size>\" line".to_owned()))?;
        let size = first
            .strip_prefix("old ")
            .ok_or_else(|| bad(format!("first line {first:?} is not \"old <size>\"")))?;
        let old_size = parse_decimal(size)
            .ok_or_else(|| bad(format!("old size {size:?} is not a canonical decimal")))?;
        let mut proof = Vec::new();
        loop {
            let (line, tail) = rest.split_once('\n').ok_or_else(|| {
                bad("missing empty line between the proof and the checkpoint".to_owned())
            })?;
            rest = tail;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad(format!(
                    "more than {MAX_PROOF_LINES} consistency proof lines"
                )));
            }
            let h = Hash::from_base64(line).map_err(|_| {
                bad(format!(
                    "proof line {} is not the base64 of a 32-byte hash",
                    proof.len() + 1
                ))
            })?;
            proof.push(h);
        }
        if rest.is_empty() {
            return Err(bad("missing checkpoint".to_owned()));
        }
        Ok(Self {
            old_size,
            proof,
            note: rest.to_owned(),
        })
    }

    /// The checkpoint's origin line, **unverified**: use it only to look up
    /// the witness's state for that log before calling [`add_checkpoint`].
    pub fn origin(&self) -> Option<&str> {
        self.note.split_once('\n').map(|(origin, _)| origin)
    }
}

/// Parses a `409 Conflict` body (`<size>\n`, content type
/// [`SIZE_CONTENT_TYPE`]): the witness's latest co-signed size, to retry
/// with as `old_size`.
///
/// # Errors
///
/// [`WitnessError::MalformedRequest`].
pub fn parse_size_body(body: &str) -> Result<u64, WitnessError> {
    body.strip_suffix('\n')
        .and_then(parse_decimal)
        .ok_or_else(|| WitnessError::MalformedRequest(format!("bad size body {body:?}")))
}

// ---------------------------------------------------------------------------
// The witness state machine
// ---------------------------------------------------------------------------

/// What a witness remembers about one log: the latest checkpoint it
/// co-signed. Persist it per origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessedTree {
    /// The log origin.
    pub origin: String,
    /// The latest co-signed tree size.
    pub size: u64,
    /// The latest co-signed root hash.
    pub root: Hash,
}

/// A successful `add-checkpoint`: the new state to persist (atomically with
/// the check of the old one) and the response body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosigned {
    /// The new state for the checkpoint's origin.
    pub state: WitnessedTree,
    /// The co-signature line (newline-terminated), the `200` response body.
    pub cosignature: String,
}

/// Why a witness refused an `add-checkpoint` request; each maps to an HTTP
/// status ([`WitnessRefusal::status`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WitnessRefusal {
    /// The request, note or checkpoint body is malformed (400).
    #[error("malformed add-checkpoint request: {0}")]
    Malformed(String),
    /// The old size is larger than the checkpoint size (400).
    #[error("old size {old_size} is larger than the checkpoint size {size}")]
    OldSizeTooLarge {
        /// The request's old size.
        old_size: u64,
        /// The checkpoint size.
        size: u64,
    },
    /// No known log has this origin (404).
    #[error("unknown log origin {origin:?}")]
    UnknownLog {
        /// The checkpoint origin.
        origin: String,
    },
    /// No known key of the log signed the checkpoint validly (403).
    #[error("checkpoint for {origin:?} has no valid signature by a known log key")]
    BadSignature {
        /// The checkpoint origin.
        origin: String,
    },
    /// The old size is not the latest co-signed size (409, body
    /// `<latest_size>\n`, content type [`SIZE_CONTENT_TYPE`]).
    #[error("old size {old_size} is not the latest co-signed size {latest_size}")]
    Conflict {
        /// The request's old size.
        old_size: u64,
        /// The witness's latest co-signed size (0: never co-signed).
        latest_size: u64,
    },
    /// A checkpoint of the latest co-signed size with a different root: the
    /// log forked or rewrote its history (409).
    #[error("checkpoint of size {size} has root {found}, but {cosigned} was co-signed")]
    RootMismatch {
        /// The tree size.
        size: u64,
        /// The root co-signed earlier.
        cosigned: Hash,
        /// The root in the request.
        found: Hash,
    },
    /// The consistency proof does not verify: the checkpoint does not extend
    /// the tree last co-signed (422).
    #[error("consistency proof does not verify: {0}")]
    BadProof(ProofError),
    /// A caller error: the state passed is for another origin, or the clock
    /// is beyond `2^63 - 1` (500).
    #[error("internal witness error: {0}")]
    Internal(String),
}

impl WitnessRefusal {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::OldSizeTooLarge { .. } => 400,
            Self::BadSignature { .. } => 403,
            Self::UnknownLog { .. } => 404,
            Self::Conflict { .. } | Self::RootMismatch { .. } => 409,
            Self::BadProof(_) => 422,
            Self::Internal(_) => 500,
        }
    }

    /// The response content type: [`SIZE_CONTENT_TYPE`] for
    /// [`WitnessRefusal::Conflict`], plain text otherwise.
    pub fn content_type(&self) -> &'static str {
        match self {
            Self::Conflict { .. } => SIZE_CONTENT_TYPE,
            _ => "text/plain; charset=utf-8",
        }
    }

    /// The response body: `<latest size>\n` for
    /// [`WitnessRefusal::Conflict`], the error message and a newline
    /// otherwise.
    pub fn body(&self) -> String {
        match self {
            Self::Conflict { latest_size, .. } => format!("{latest_size}\n"),
            other => format!("{other}\n"),
        }
    }
}

/// Handles one `add-checkpoint` request, following C2SP `tlog-witness`.
///
/// - `state`: what the witness recorded for the request's origin (look it
///   up with [`AddCheckpoint::origin`]); `None` if it never co-signed for it.
/// - `known_logs`: the log keys the witness trusts. A log is identified by
///   its key's name, which must equal the checkpoint origin (writ's
///   convention, see [`crate::checkpoint::open`]); several keys may share an
///   origin (rotation), and one valid signature by any of them suffices.
/// - `now_unix`: the co-signature timestamp.
///
/// Checks, in order: the note parses as a signed checkpoint (400); the
/// origin is known (404); a known key signed it (403); `old_size <= size`
/// (400); `old_size` is the latest co-signed size, 0 if none (409 with the
/// size); with `old_size == size` the proof is empty (422) and the root is
/// the co-signed one (409); otherwise the consistency proof from the
/// co-signed tree verifies (422; a proof from size 0 must be empty and a
/// size-0 checkpoint must have the empty root). Then it co-signs the exact
/// note text received.
///
/// The caller must persist [`Cosigned::state`] before answering 200, and
/// must make "read the state, call this, store the new state" atomic per
/// origin (otherwise two concurrent requests can roll the state back).
///
/// # Errors
///
/// A [`WitnessRefusal`]; nothing is co-signed.
pub fn add_checkpoint(
    state: Option<&WitnessedTree>,
    known_logs: &[VerifierKey],
    request: &AddCheckpoint,
    key: &WitnessKey,
    now_unix: u64,
) -> Result<Cosigned, WitnessRefusal> {
    let malformed = |m: &str| WitnessRefusal::Malformed(m.to_owned());

    // 400: the note and its checkpoint body.
    let note = Note::from_bytes(request.note.as_bytes())
        .map_err(|_| malformed("the checkpoint is not a well-formed signed note"))?;
    let body = std::str::from_utf8(note.text())
        .map_err(|_| malformed("the checkpoint is not UTF-8"))?
        .to_owned();
    let checkpoint = Checkpoint::parse_text(&body)
        .map_err(|e| WitnessRefusal::Malformed(format!("bad checkpoint body: {e}")))?;
    let origin = checkpoint.origin.clone();

    // 404 / 403: a known log, validly signed.
    let keys: Vec<&VerifierKey> = known_logs.iter().filter(|k| k.name() == origin).collect();
    if keys.is_empty() {
        return Err(WitnessRefusal::UnknownLog { origin });
    }
    if !keys.iter().any(|k| verify_note(&request.note, k).is_ok()) {
        return Err(WitnessRefusal::BadSignature { origin });
    }

    // 400: old size beyond the checkpoint.
    let (old_size, size) = (request.old_size, checkpoint.size);
    if old_size > size {
        return Err(WitnessRefusal::OldSizeTooLarge { old_size, size });
    }

    // 409: the client's view of the witness state is stale.
    let (latest_size, latest_root) = match state {
        Some(s) if s.origin != origin => {
            return Err(WitnessRefusal::Internal(format!(
                "state for origin {:?} passed for a checkpoint of {origin:?}",
                s.origin
            )));
        }
        Some(s) => (s.size, s.root),
        None => (0, EMPTY_ROOT),
    };
    if old_size != latest_size {
        return Err(WitnessRefusal::Conflict {
            old_size,
            latest_size,
        });
    }

    // 409 / 422: the checkpoint must extend the co-signed tree.
    if old_size == size && old_size != 0 {
        if !request.proof.is_empty() {
            return Err(WitnessRefusal::BadProof(ProofError::Mismatch));
        }
        if checkpoint.root != latest_root {
            return Err(WitnessRefusal::RootMismatch {
                size,
                cosigned: latest_root,
                found: checkpoint.root,
            });
        }
    } else if old_size == 0 {
        // Nothing to prove from the empty tree; the proof must be empty.
        if !request.proof.is_empty() || (size == 0 && checkpoint.root != EMPTY_ROOT) {
            return Err(WitnessRefusal::BadProof(ProofError::Mismatch));
        }
    } else {
        verify_consistency(
            old_size,
            size,
            &request.proof,
            &latest_root,
            &checkpoint.root,
        )
        .map_err(WitnessRefusal::BadProof)?;
    }

    let cosignature = cosign_body(&body, key, now_unix)
        .map_err(|e| WitnessRefusal::Internal(format!("co-signing failed: {e}")))?;
    Ok(Cosigned {
        state: WitnessedTree {
            origin,
            size,
            root: checkpoint.root,
        },
        cosignature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{SignerKey, generate_key, sign};
    use crate::leaf::leaf_hash;
    use crate::tree::Tree;

    const ORIGIN: &str = "writ.test/ledger";
    const T0: u64 = 1_700_000_000;

    fn log_keys() -> (SignerKey, VerifierKey) {
        generate_key(ORIGIN, [7u8; 32]).unwrap()
    }

    fn witness() -> WitnessKey {
        WitnessKey::generate("witness.test/w1", [9u8; 32]).unwrap()
    }

    fn leaves(tag: &str, n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("{tag}{i}").as_bytes()))
            .collect()
    }

    fn signed(tree: &Tree, size: u64, sk: &SignerKey) -> String {
        let cp = Checkpoint::new(sk.name(), size, tree.root_at(size).unwrap());
        sign(&cp, sk).unwrap()
    }

    // --- Known-answer vector ---------------------------------------------
    //
    // Computed independently of this crate with Python `cryptography`
    // (Ed25519 over the message built from the C2SP tlog-cosignature text):
    // seed = bytes 0..=31, name "witness.example/w1", time 1679315147, body =
    // the spec's example checkpoint.
    const KAT_SKEY: &str =
        "PRIVATE+KEY+witness.example/w1+e75f6532+BAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f";
    const KAT_VKEY: &str =
        "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4";
    const KAT_BODY: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    const KAT_TIME: u64 = 1_679_315_147;
    const KAT_LINE: &str = "\u{2014} witness.example/w1 519lMgAAAABkGFDLBuRDazBLVac2NE+Y+IjbjQOcXLfF9CSDZVUIoS83rE1nFZsVE8YiWV6Ngr7lV8H6bdoBQGP/l73euDMQ9k+bBQ==\n";
    /// The log signature line of the spec's example (key unpublished).
    const SPEC_LOG_LINE: &str = "\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    #[test]
    fn known_answer_vector() {
        let seed: [u8; 32] = core::array::from_fn(|i| i as u8);
        let key = WitnessKey::generate("witness.example/w1", seed).unwrap();
        assert_eq!(key.to_text(), KAT_SKEY);
        assert_eq!(key.verifier().to_text(), KAT_VKEY);
        assert_eq!(key.key_id(), 0xe75f_6532);
        assert_eq!(WitnessKey::parse(KAT_SKEY).unwrap().key_id(), key.key_id());
        assert_eq!(cosign_body(KAT_BODY, &key, KAT_TIME).unwrap(), KAT_LINE);
        assert_eq!(
            cosign(&Checkpoint::parse_text(KAT_BODY).unwrap(), &key, KAT_TIME).unwrap(),
            KAT_LINE
        );
        let note = format!("{KAT_BODY}\n{SPEC_LOG_LINE}{KAT_LINE}");
        let w = WitnessVerifier::parse(KAT_VKEY).unwrap();
        assert_eq!(
            verify_cosignatures(&note, &[w]).unwrap(),
            vec![VerifiedCosignature {
                witness: "witness.example/w1".into(),
                key_id: 0xe75f_6532,
                time_unix: KAT_TIME,
            }]
        );
        assert_eq!(
            cosignature_message(KAT_BODY, KAT_TIME),
            format!("cosignature/v1\ntime 1679315147\n{KAT_BODY}")
        );
    }

    #[test]
    fn third_party_key_ids_and_spec_example() {
        // A real cosignature/v1 vkey from transparency-dev/formats
        // note/note_cosigv1_test.go (TestCoSigV1NewVerifier): its key ID must
        // match our computation.
        let remora = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";
        let v = WitnessVerifier::parse(remora).unwrap();
        assert_eq!(v.to_text(), remora);
        assert_eq!(v.key_id(), 0xda77_ade7);
        // Same file: an Ed25519 log (0x01) vkey is not a witness key here.
        assert!(matches!(
            WitnessVerifier::parse("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"),
            Err(WitnessError::MalformedKey(_))
        ));
        // The C2SP tlog-cosignature example: its witness key is unpublished.
        // A witness of that name with another key has another key ID, so the
        // example line is not its line: reported missing.
        let note = format!(
            "{KAT_BODY}\n{SPEC_LOG_LINE}\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
        );
        let other = WitnessKey::generate("witness.example.com/w1", [1; 32]).unwrap();
        assert_eq!(
            verify_cosignatures(&note, &[other.verifier()]),
            Err(WitnessError::MissingCosignature {
                witness: "witness.example.com/w1".into()
            })
        );
        // Its timestamp field is the spec's example time 1679315147.
        let line = note.lines().last().unwrap();
        let raw = B64.decode(line.rsplit(' ').next().unwrap()).unwrap();
        assert_eq!(raw.len(), 4 + 8 + 64);
        assert_eq!(u64::from_be_bytes(raw[4..12].try_into().unwrap()), KAT_TIME);
    }

    #[test]
    fn key_texts_round_trip_and_strictness() {
        let k = witness();
        let text = k.to_text();
        assert!(text.starts_with("PRIVATE+KEY+witness.test/w1+"));
        let k2 = WitnessKey::parse(&text).unwrap();
        assert_eq!(k2.verifier(), k.verifier());
        assert_eq!(k2.name(), "witness.test/w1");
        let vtext = k.verifier().to_text();
        let v = WitnessVerifier::parse(&vtext).unwrap();
        assert_eq!(v, k.verifier());
        assert_eq!(v.name(), k.name());
        assert_eq!(v.key_id(), k.key_id());
        // Debug never shows the secret.
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&text) && !dbg.contains(text.rsplit('+').next().unwrap()));
        assert!(format!("{v:?}").contains(&vtext));

        assert!(WitnessKey::generate("bad name", [0; 32]).is_err());
        assert!(WitnessKey::generate("a+b", [0; 32]).is_err());
        assert!(WitnessKey::generate("", [0; 32]).is_err());
        // Wrong role / algorithm: a log key (0x01) is refused both ways.
        let (log_sk, log_vk) = log_keys();
        assert!(WitnessKey::parse(&log_sk.to_text()).is_err());
        assert!(WitnessVerifier::parse(log_vk.to_text()).is_err());
        assert!(WitnessVerifier::parse(&text).is_err());
        assert!(WitnessKey::parse(&vtext).is_err());
        // Wrong key ID, uppercase hex, trailing junk, extra field.
        let mut bad_id = vtext.clone();
        let pos = vtext.find('+').unwrap() + 1;
        let c = if &vtext[pos..=pos] == "0" { "1" } else { "0" };
        bad_id.replace_range(pos..=pos, c);
        assert!(WitnessVerifier::parse(&bad_id).is_err());
        assert!(WitnessVerifier::parse(&vtext.to_uppercase()).is_err());
        assert!(WitnessVerifier::parse(&format!("{vtext}+x")).is_err());
        assert!(WitnessVerifier::parse(&format!("{vtext} ")).is_err());
        assert!(WitnessKey::parse(&format!("{text}\n")).is_err());
        assert!(WitnessVerifier::parse("w+00000000+BAAA").is_err());
    }

    #[test]
    fn cosignature_verifies_and_tampering_fails() {
        let (sk, vk) = log_keys();
        let w = witness();
        let w2 = WitnessKey::generate("witness.test/w2", [10u8; 32]).unwrap();
        let tree = Tree::from_leaf_hashes(&leaves("a", 5));
        let note = signed(&tree, 5, &sk);
        let cp = crate::checkpoint::open(&note, &vk).unwrap();
        let line = cosign(&cp, &w, T0).unwrap();
        let line2 = cosign(&cp, &w2, T0 + 1).unwrap();
        assert!(line.starts_with("\u{2014} witness.test/w1 ") && line.ends_with('\n'));

        let both = format!("{note}{line}{line2}");
        let got = verify_cosignatures(&both, &[w.verifier(), w2.verifier()]).unwrap();
        assert_eq!(got[0].time_unix, T0);
        assert_eq!(got[1].time_unix, T0 + 1);
        assert_eq!(got[1].witness, "witness.test/w2");
        // The log signature still verifies alongside co-signatures.
        assert_eq!(crate::checkpoint::open(&both, &vk).unwrap(), cp);
        // No witnesses required: trivially fine.
        assert_eq!(verify_cosignatures(&note, &[]).unwrap(), vec![]);

        // Missing: names the first missing witness.
        assert_eq!(
            verify_cosignatures(&format!("{note}{line}"), &[w.verifier(), w2.verifier()]),
            Err(WitnessError::MissingCosignature {
                witness: "witness.test/w2".into()
            })
        );
        // Tampered body (size changed): invalid.
        let tampered = both.replacen("\n5\n", "\n6\n", 1);
        assert_eq!(
            verify_cosignatures(&tampered, &[w.verifier()]),
            Err(WitnessError::InvalidCosignature {
                witness: "witness.test/w1".into()
            })
        );
        // Tampered timestamp (re-encoded): invalid.
        let b64 = line.trim_end().rsplit(' ').next().unwrap();
        let mut raw = B64.decode(b64).unwrap();
        raw[11] ^= 1;
        let forged = format!("\u{2014} witness.test/w1 {}\n", B64.encode(&raw));
        assert!(matches!(
            verify_cosignatures(&format!("{note}{forged}"), &[w.verifier()]),
            Err(WitnessError::InvalidCosignature { .. })
        ));
        // Timestamp beyond 2^63 - 1: invalid, and never produced.
        raw[4] = 0x80;
        let huge = format!("\u{2014} witness.test/w1 {}\n", B64.encode(&raw));
        assert!(matches!(
            verify_cosignatures(&format!("{note}{huge}"), &[w.verifier()]),
            Err(WitnessError::InvalidCosignature { .. })
        ));
        assert_eq!(
            cosign(&cp, &w, MAX_TIMESTAMP + 1),
            Err(WitnessError::TimestampOutOfRange(MAX_TIMESTAMP + 1))
        );
        assert!(cosign(&cp, &w, MAX_TIMESTAMP).is_ok());
        // A plain log-style (0x01) signature by the witness's Ed25519 key
        // under the witness name is not a co-signature.
        let same_seed_log = generate_key("witness.test/w1", [9u8; 32]).unwrap().0;
        let log_style =
            crate::checkpoint::sign_note(&cp.to_text().unwrap(), &same_seed_log).unwrap();
        assert!(matches!(
            verify_cosignatures(&log_style, &[w.verifier()]),
            Err(WitnessError::MissingCosignature { .. })
        ));
        // Malformed notes.
        assert_eq!(
            verify_cosignatures(&cp.to_text().unwrap(), &[w.verifier()]),
            Err(WitnessError::MalformedNote)
        );
        assert!(cosign_body("not a checkpoint\n", &w, T0).is_err());
    }

    #[test]
    fn add_checkpoint_body_round_trip_and_strictness() {
        let (sk, _) = log_keys();
        let tree = Tree::from_leaf_hashes(&leaves("a", 7));
        let req = AddCheckpoint {
            old_size: 3,
            proof: tree.consistency_proof(3, 7).unwrap(),
            note: signed(&tree, 7, &sk),
        };
        let body = req.to_body();
        assert!(body.starts_with("old 3\n"));
        assert!(body.contains("\n\nwrit.test/ledger\n7\n"));
        assert_eq!(AddCheckpoint::parse(&body).unwrap(), req);
        assert_eq!(req.origin(), Some(ORIGIN));

        let first = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: req.note.clone(),
        };
        assert!(first.to_body().starts_with("old 0\n\nwrit.test/ledger\n"));
        assert_eq!(AddCheckpoint::parse(&first.to_body()).unwrap(), first);

        let h = req.proof[0].to_base64();
        let n = &req.note;
        let bad = [
            String::new(),
            "old 3".to_owned(),
            format!("old 03\n\n{n}"),
            format!("old +3\n\n{n}"),
            format!("old -1\n\n{n}"),
            format!("old  3\n\n{n}"),
            format!("Old 3\n\n{n}"),
            format!("old 18446744073709551616\n\n{n}"),
            format!("old 3\n{h}\n"),
            format!("old 3\n{h}\n\n"),
            format!("old 3\n{h}"),
            format!("old 3\n{}\n\n{n}", &h[..h.len() - 1]),
            format!("old 3\n{h} \n\n{n}"),
            format!("old 3\nAAAA\n\n{n}"),
            format!("old 3\n{}\n{n}", "x"),
            format!("old 3\n{}\n{n}", format!("{h}\n").repeat(64)),
        ];
        for b in &bad {
            assert!(
                matches!(
                    AddCheckpoint::parse(b),
                    Err(WitnessError::MalformedRequest(_))
                ),
                "accepted {b:?}"
            );
        }
        // 63 proof lines are allowed by the framing.
        let ok = format!("old 3\n{}\n{n}", format!("{h}\n").repeat(63));
        assert_eq!(AddCheckpoint::parse(&ok).unwrap().proof.len(), 63);

        assert_eq!(parse_size_body("42\n").unwrap(), 42);
        assert!(parse_size_body("42").is_err());
        assert!(parse_size_body("042\n").is_err());
    }

    #[test]
    fn witness_protocol() {
        let (sk, vk) = log_keys();
        let w = witness();
        let known = [vk.clone()];
        let leaves_b = leaves("b", 20);
        let tree = Tree::from_leaf_hashes(&leaves_b);

        // 1. First checkpoint (old 0, empty proof): co-signed.
        let req = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: signed(&tree, 8, &sk),
        };
        let out = add_checkpoint(None, &known, &req, &w, T0).unwrap();
        assert_eq!(out.state.size, 8);
        assert_eq!(out.state.root, tree.root_at(8).unwrap());
        assert_eq!(out.state.origin, ORIGIN);
        let cosigned_note = format!("{}{}", req.note, out.cosignature);
        assert_eq!(
            verify_cosignatures(&cosigned_note, &[w.verifier()]).unwrap()[0].time_unix,
            T0
        );
        let s8 = out.state;

        // 2. A consistent extension with a real proof: co-signed.
        let req = AddCheckpoint {
            old_size: 8,
            proof: tree.consistency_proof(8, 13).unwrap(),
            note: signed(&tree, 13, &sk),
        };
        let out = add_checkpoint(Some(&s8), &known, &req, &w, T0 + 60).unwrap();
        assert_eq!(
            (out.state.size, out.state.root),
            (13, tree.root_at(13).unwrap())
        );
        let s13 = out.state;
        assert!(
            verify_cosignatures(&format!("{}{}", req.note, out.cosignature), &[w.verifier()])
                .is_ok()
        );

        // 3. The same checkpoint again (same size and root): co-signed again.
        let again = AddCheckpoint {
            old_size: 13,
            proof: vec![],
            note: req.note.clone(),
        };
        let out = add_checkpoint(Some(&s13), &known, &again, &w, T0 + 120).unwrap();
        assert_eq!(out.state, s13);

        // 4. Stale old size: 409 with the latest size.
        let stale = AddCheckpoint {
            old_size: 8,
            proof: tree.consistency_proof(8, 20).unwrap(),
            note: signed(&tree, 20, &sk),
        };
        let r = add_checkpoint(Some(&s13), &known, &stale, &w, T0).unwrap_err();
        assert_eq!(
            r,
            WitnessRefusal::Conflict {
                old_size: 8,
                latest_size: 13
            }
        );
        assert_eq!(r.status(), 409);
        assert_eq!(r.content_type(), "text/x.tlog.size");
        assert_eq!(r.body(), "13\n");
        assert_eq!(parse_size_body(&r.body()).unwrap(), 13);
        // Old 0 against a known log: 409 tells the client the size.
        let zero = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: stale.note.clone(),
        };
        assert_eq!(
            add_checkpoint(Some(&s13), &known, &zero, &w, T0)
                .unwrap_err()
                .body(),
            "13\n"
        );
        // Never co-signed, but the client claims an old size: 409 with 0.
        assert_eq!(
            add_checkpoint(None, &known, &stale, &w, T0).unwrap_err(),
            WitnessRefusal::Conflict {
                old_size: 8,
                latest_size: 0
            }
        );
        // Retrying with the right old size succeeds.
        let retry = AddCheckpoint {
            old_size: 13,
            proof: tree.consistency_proof(13, 20).unwrap(),
            note: stale.note.clone(),
        };
        assert_eq!(
            add_checkpoint(Some(&s13), &known, &retry, &w, T0)
                .unwrap()
                .state
                .size,
            20
        );

        // 5. A rewritten history: truncate to 10, append different leaves,
        //    sign again with the real log key. The proof cannot verify.
        let mut forked = Tree::from_leaf_hashes(&leaves_b[..10]);
        for h in leaves("evil", 8) {
            forked.push(h);
        }
        let rewrite = AddCheckpoint {
            old_size: 13,
            proof: forked.consistency_proof(13, 18).unwrap(),
            note: signed(&forked, 18, &sk),
        };
        let r = add_checkpoint(Some(&s13), &known, &rewrite, &w, T0).unwrap_err();
        assert_eq!(r, WitnessRefusal::BadProof(ProofError::Mismatch));
        assert_eq!(r.status(), 422);
        // Nor can an honest proof from the real tree be reused for it.
        let reuse = AddCheckpoint {
            proof: tree.consistency_proof(13, 18).unwrap(),
            ..rewrite.clone()
        };
        assert_eq!(
            add_checkpoint(Some(&s13), &known, &reuse, &w, T0)
                .unwrap_err()
                .status(),
            422
        );
        // Same size, different root: 409 (not a size conflict).
        let same_size = AddCheckpoint {
            old_size: 13,
            proof: vec![],
            note: signed(&forked, 13, &sk),
        };
        let r = add_checkpoint(Some(&s13), &known, &same_size, &w, T0).unwrap_err();
        assert!(matches!(r, WitnessRefusal::RootMismatch { size: 13, .. }));
        assert_eq!(r.status(), 409);
        assert_eq!(r.content_type(), "text/plain; charset=utf-8");
        // Same size with a non-empty proof: 422.
        let odd = AddCheckpoint {
            old_size: 13,
            proof: vec![tree.root()],
            note: req.note.clone(),
        };
        assert_eq!(
            add_checkpoint(Some(&s13), &known, &odd, &w, T0)
                .unwrap_err()
                .status(),
            422
        );
        // A proof sent with old 0: 422.
        let proof_from_zero = AddCheckpoint {
            old_size: 0,
            proof: vec![tree.root()],
            note: signed(&tree, 8, &sk),
        };
        assert_eq!(
            add_checkpoint(None, &known, &proof_from_zero, &w, T0)
                .unwrap_err()
                .status(),
            422
        );

        // 6. Old size above the checkpoint size: 400.
        let backwards = AddCheckpoint {
            old_size: 13,
            proof: vec![],
            note: signed(&tree, 8, &sk),
        };
        let r = add_checkpoint(Some(&s13), &known, &backwards, &w, T0).unwrap_err();
        assert_eq!(
            r,
            WitnessRefusal::OldSizeTooLarge {
                old_size: 13,
                size: 8
            }
        );
        assert_eq!(r.status(), 400);

        // 7. Unknown origin: 404.
        let (other_sk, _) = generate_key("writ.test/other", [3u8; 32]).unwrap();
        let unknown = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: signed(&tree, 8, &other_sk),
        };
        let r = add_checkpoint(None, &known, &unknown, &w, T0).unwrap_err();
        assert_eq!(
            r,
            WitnessRefusal::UnknownLog {
                origin: "writ.test/other".into()
            }
        );
        assert_eq!(r.status(), 404);

        // 8. Known origin, wrong key (same name): 403; tampered note: 403.
        let (impostor, _) = generate_key(ORIGIN, [4u8; 32]).unwrap();
        let forged = AddCheckpoint {
            old_size: 13,
            proof: tree.consistency_proof(13, 20).unwrap(),
            note: signed(&tree, 20, &impostor),
        };
        let r = add_checkpoint(Some(&s13), &known, &forged, &w, T0).unwrap_err();
        assert_eq!(
            r,
            WitnessRefusal::BadSignature {
                origin: ORIGIN.into()
            }
        );
        assert_eq!(r.status(), 403);
        let mut tampered = retry.clone();
        tampered.note = tampered.note.replacen("\n20\n", "\n21\n", 1);
        assert_eq!(
            add_checkpoint(Some(&s13), &known, &tampered, &w, T0)
                .unwrap_err()
                .status(),
            403
        );
        // A rotated key set: any known key of the origin suffices.
        let (_, impostor_vk) = generate_key(ORIGIN, [4u8; 32]).unwrap();
        let rotated = [impostor_vk, vk.clone()];
        assert!(add_checkpoint(Some(&s13), &rotated, &retry, &w, T0).is_ok());
        assert!(add_checkpoint(Some(&s13), &rotated, &forged, &w, T0).is_ok());

        // 9. Malformed: 400.
        let junk = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: "not a note".into(),
        };
        let r = add_checkpoint(None, &known, &junk, &w, T0).unwrap_err();
        assert!(matches!(r, WitnessRefusal::Malformed(_)));
        assert_eq!(r.status(), 400);
        let body_only = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: crate::checkpoint::sign_note("writ.test/ledger\n8\n", &sk).unwrap(),
        };
        assert_eq!(
            add_checkpoint(None, &known, &body_only, &w, T0)
                .unwrap_err()
                .status(),
            400
        );

        // 10. Caller errors: 500.
        let wrong_state = WitnessedTree {
            origin: "writ.test/other".into(),
            ..s13.clone()
        };
        assert_eq!(
            add_checkpoint(Some(&wrong_state), &known, &retry, &w, T0)
                .unwrap_err()
                .status(),
            500
        );
        assert_eq!(
            add_checkpoint(Some(&s13), &known, &retry, &w, MAX_TIMESTAMP + 1)
                .unwrap_err()
                .status(),
            500
        );
    }

    #[test]
    fn empty_tree_checkpoints() {
        let (sk, vk) = log_keys();
        let w = witness();
        let known = [vk];
        let empty = Tree::new();
        let req = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: signed(&empty, 0, &sk),
        };
        let out = add_checkpoint(None, &known, &req, &w, T0).unwrap();
        assert_eq!((out.state.size, out.state.root), (0, EMPTY_ROOT));
        // Again from the recorded size-0 state.
        assert!(add_checkpoint(Some(&out.state), &known, &req, &w, T0).is_ok());
        // A size-0 checkpoint with a non-empty root is refused.
        let bogus = Checkpoint::new(ORIGIN, 0, leaf_hash(b"x"));
        let bad = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: sign(&bogus, &sk).unwrap(),
        };
        assert_eq!(
            add_checkpoint(None, &known, &bad, &w, T0)
                .unwrap_err()
                .status(),
            422
        );
    }

    #[test]
    fn state_serde_round_trip() {
        let s = WitnessedTree {
            origin: ORIGIN.into(),
            size: 13,
            root: leaf_hash(b"r"),
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<WitnessedTree>(&json).unwrap(), s);
    }
}
