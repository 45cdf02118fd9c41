//! Signing keys, C2SP `signed-note` signatures and C2SP `tlog-checkpoint`
//! tree heads.
//!
//! Key texts use the formats of Go's `golang.org/x/mod/sumdb/note`:
//! - signer (secret): `PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed32)>`
//! - verifier (public): `<name>+<hash>+<base64(0x01 || pubkey32)>`
//!
//! where `<hash>` is 8 lowercase hex digits of
//! `SHA-256(name || "\n" || 0x01 || pubkey)[:4]` and the algorithm byte
//! `0x01` is Ed25519.
//!
//! A checkpoint body is `origin\nsize\nbase64(root)\n` followed by optional
//! non-empty extension lines; a signed checkpoint is that body followed by a
//! blank line and one or more signature lines `— <name> <base64(keyhash4 ||
//! sig64)>\n`. Signing and note parsing are delegated to the `signed_note`
//! crate, checkpoint body parsing to `tlog_tiles`.

use crate::error::LedgerError;
use crate::tree::Hash;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use signed_note::{Note, NoteError, StandardSigner, StandardVerifier, VerifierList};
use std::fmt;

/// Ed25519 algorithm byte of the note key formats.
const ALG_ED25519: u8 = 1;

/// A secret signing key (Ed25519) with its name.
///
/// `Debug` never prints the secret.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    id: u32,
    signing: ed25519_dalek::SigningKey,
    signer: StandardSigner,
}

/// A public verifier key (Ed25519) with its name.
#[derive(Clone)]
pub struct VerifierKey {
    name: String,
    id: u32,
    text: String,
    verifier: StandardVerifier,
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerKey")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifierKey").field(&self.text).finish()
    }
}

impl PartialEq for VerifierKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for VerifierKey {}

/// Derives a key pair named `name` from 32 caller-supplied random bytes (the
/// Ed25519 seed). The crate never draws randomness itself.
///
/// # Errors
///
/// [`LedgerError::InvalidKeyName`] if `name` is empty or contains whitespace
/// or `+`.
pub fn generate_key(name: &str, seed: [u8; 32]) -> Result<(SignerKey, VerifierKey), LedgerError> {
    if !signed_note::is_key_name_valid(name) {
        return Err(LedgerError::InvalidKeyName(name.to_owned()));
    }
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let signer = SignerKey::from_signing_key(name, signing)?;
    let verifier = signer.verifier_key()?;
    Ok((signer, verifier))
}

impl SignerKey {
    fn from_signing_key(
        name: &str,
        signing: ed25519_dalek::SigningKey,
    ) -> Result<Self, LedgerError> {
        let pubkey = [&[ALG_ED25519][..], signing.verifying_key().as_bytes()].concat();
        let id = signed_note::key_id(name, &pubkey);
        let text = private_text(name, id, &signing);
        let signer = StandardSigner::new(&text).map_err(|_| LedgerError::MalformedKey("signer"))?;
        Ok(Self {
            name: name.to_owned(),
            id,
            signing,
            signer,
        })
    }

    /// Parses a `PRIVATE+KEY+<name>+<hash>+<base64>` signer key text.
    ///
    /// # Errors
    ///
    /// [`LedgerError::MalformedKey`] if the text is malformed, uses another
    /// algorithm, or its key hash does not match.
    pub fn parse(text: &str) -> Result<Self, LedgerError> {
        StandardSigner::new(text).map_err(|e| match e {
            signed_note::SignerError::Alg => LedgerError::MalformedKey("unknown algorithm"),
            signed_note::SignerError::Id => LedgerError::MalformedKey("key hash mismatch"),
            signed_note::SignerError::Format => LedgerError::MalformedKey("bad signer key format"),
        })?;
        // StandardSigner validated the layout; extract name and seed.
        let mut parts = text.splitn(5, '+');
        let (Some(_), Some(_), Some(name), Some(_), Some(b64)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(LedgerError::MalformedKey("bad signer key format"));
        };
        let raw = B64
            .decode(b64)
            .map_err(|_| LedgerError::MalformedKey("bad base64"))?;
        let seed: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, rest)) => rest
                .try_into()
                .map_err(|_| LedgerError::MalformedKey("bad key length"))?,
            _ => return Err(LedgerError::MalformedKey("unknown algorithm")),
        };
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let me = Self::from_signing_key(name, signing)?;
        // Reject non-canonical spellings (e.g. uppercase hex key hash).
        if me.to_text() != text {
            return Err(LedgerError::MalformedKey("non-canonical signer key text"));
        }
        Ok(me)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-bit key hash (key ID).
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The secret key text `PRIVATE+KEY+<name>+<hash>+<base64>`. Keep it
    /// secret.
    pub fn to_text(&self) -> String {
        private_text(&self.name, self.id, &self.signing)
    }

    /// The matching verifier key.
    ///
    /// # Errors
    ///
    /// Only if the derived key text fails to re-parse (should not happen).
    pub fn verifier_key(&self) -> Result<VerifierKey, LedgerError> {
        VerifierKey::parse(&signed_note::new_ed25519_verifier_key(
            &self.name,
            &self.signing.verifying_key(),
        ))
    }
}

fn private_text(name: &str, id: u32, signing: &ed25519_dalek::SigningKey) -> String {
    let raw = [&[ALG_ED25519][..], signing.as_bytes()].concat();
    format!("PRIVATE+KEY+{name}+{id:08x}+{}", B64.encode(raw))
}

impl VerifierKey {
    /// Parses a `<name>+<hash>+<base64>` verifier key text.
    ///
    /// # Errors
    ///
    /// [`LedgerError::MalformedKey`] if the text is malformed, uses another
    /// algorithm, or its key hash does not match.
    pub fn parse(text: &str) -> Result<Self, LedgerError> {
        let verifier = StandardVerifier::new(text).map_err(|e| match e {
            signed_note::VerifierError::Alg => LedgerError::MalformedKey("unknown algorithm"),
            signed_note::VerifierError::Id => LedgerError::MalformedKey("key hash mismatch"),
            signed_note::VerifierError::Format => {
                LedgerError::MalformedKey("bad verifier key format")
            }
        })?;
        use signed_note::Verifier as _;
        let name = verifier.name().to_owned();
        let id = verifier.key_id();
        // Reject non-canonical spellings (uppercase hex, non-canonical base64).
        let canonical = {
            let mut parts = text.splitn(3, '+');
            let (_, _, b64) = (parts.next(), parts.next(), parts.next());
            let raw = b64.and_then(|b| B64.decode(b).ok());
            raw.map(|r| format!("{name}+{id:08x}+{}", B64.encode(r)))
        };
        if canonical.as_deref() != Some(text) {
            return Err(LedgerError::MalformedKey("non-canonical verifier key text"));
        }
        Ok(Self {
            name,
            id,
            text: text.to_owned(),
            verifier,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-bit key hash (key ID).
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The verifier key text `<name>+<hash>+<base64>`.
    pub fn to_text(&self) -> &str {
        &self.text
    }
}

/// Signs an arbitrary note text (must end in `\n`, no control characters
/// other than newline) and returns the signed note.
///
/// # Errors
///
/// [`LedgerError::MalformedNote`] for a bad text, [`LedgerError::Signing`] if
/// signing fails.
pub fn sign_note(text: &str, key: &SignerKey) -> Result<String, LedgerError> {
    let mut note = Note::new(text.as_bytes(), &[]).map_err(|_| LedgerError::MalformedNote)?;
    note.add_sigs(&[&key.signer])
        .map_err(|e| LedgerError::Signing(e.to_string()))?;
    String::from_utf8(note.to_bytes()).map_err(|_| LedgerError::MalformedNote)
}

/// Verifies that a signed note carries a valid signature by `key` and
/// returns its text (signatures by unknown keys are ignored, as the spec
/// requires).
///
/// # Errors
///
/// [`LedgerError::MalformedNote`] or [`LedgerError::BadSignature`].
pub fn verify_note(note: &str, key: &VerifierKey) -> Result<String, LedgerError> {
    let parsed = Note::from_bytes(note.as_bytes()).map_err(|_| LedgerError::MalformedNote)?;
    let list = VerifierList::new(vec![Box::new(key.verifier.clone())]);
    match parsed.verify(&list) {
        Ok(_) => {}
        Err(NoteError::MalformedNote) => return Err(LedgerError::MalformedNote),
        Err(e) => return Err(LedgerError::BadSignature(e.to_string())),
    }
    String::from_utf8(parsed.text().to_vec()).map_err(|_| LedgerError::MalformedNote)
}

/// A C2SP `tlog-checkpoint` tree head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (for writ, the signing key's name).
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The RFC 6962 root hash at `size`.
    pub root: Hash,
    /// Optional extension lines (each non-empty, without the newline).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Self {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The checkpoint body text: `origin\nsize\nbase64(root)\n` plus one
    /// line per extension.
    ///
    /// # Errors
    ///
    /// [`LedgerError::MalformedCheckpoint`] if the origin or an extension
    /// line is empty or contains a newline.
    pub fn to_text(&self) -> Result<String, LedgerError> {
        if self.origin.is_empty() || self.origin.contains('\n') {
            return Err(LedgerError::MalformedCheckpoint("bad origin line"));
        }
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for e in &self.extensions {
            if e.is_empty() || e.contains('\n') {
                return Err(LedgerError::MalformedCheckpoint("bad extension line"));
            }
            s.push_str(e);
            s.push('\n');
        }
        Ok(s)
    }

    /// Parses a checkpoint body strictly: exactly three lines then
    /// non-empty extension lines, every line newline-terminated, a
    /// canonical decimal size, canonical base64 of a 32-byte root.
    ///
    /// # Errors
    ///
    /// [`LedgerError::MalformedCheckpoint`].
    pub fn parse_text(text: &str) -> Result<Self, LedgerError> {
        let cp = tlog_tiles::Checkpoint::from_bytes(text.as_bytes())
            .map_err(|_| LedgerError::MalformedCheckpoint("bad checkpoint body"))?;
        let me = Self {
            origin: cp.origin().to_owned(),
            size: cp.size(),
            root: Hash(cp.hash().0),
            extensions: cp.extension().lines().map(str::to_owned).collect(),
        };
        // Round-trip check rejects any non-canonical spelling.
        if me.to_text()? != text {
            return Err(LedgerError::MalformedCheckpoint(
                "non-canonical checkpoint body",
            ));
        }
        Ok(me)
    }
}

/// Signs a checkpoint and returns the signed note text.
///
/// # Errors
///
/// [`LedgerError::MalformedCheckpoint`] for a bad origin or extension,
/// [`LedgerError::MalformedNote`] if the origin contains control characters,
/// [`LedgerError::Signing`] if signing fails.
pub fn sign(checkpoint: &Checkpoint, key: &SignerKey) -> Result<String, LedgerError> {
    sign_note(&checkpoint.to_text()?, key)
}

/// Verifies a signed checkpoint with `key` and parses its body strictly.
/// The checkpoint origin must equal the key name.
///
/// # Errors
///
/// [`LedgerError::MalformedNote`], [`LedgerError::BadSignature`],
/// [`LedgerError::MalformedCheckpoint`] or [`LedgerError::WrongOrigin`].
pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, LedgerError> {
    open_with_origin(note, key, key.name())
}

/// Like [`open`], but checks the origin against `origin` instead of the key
/// name.
///
/// # Errors
///
/// As [`open`].
pub fn open_with_origin(
    note: &str,
    key: &VerifierKey,
    origin: &str,
) -> Result<Checkpoint, LedgerError> {
    let text = verify_note(note, key)?;
    let cp = Checkpoint::parse_text(&text)?;
    if cp.origin != origin {
        return Err(LedgerError::WrongOrigin {
            expected: origin.to_owned(),
            found: cp.origin,
        });
    }
    Ok(cp)
}

/// Parses a signed checkpoint **without verifying any signature** (for
/// building bundles from the operator's own notes). Never trust the result.
///
/// # Errors
///
/// [`LedgerError::MalformedNote`] or [`LedgerError::MalformedCheckpoint`].
pub fn parse_unverified(note: &str) -> Result<Checkpoint, LedgerError> {
    let parsed = Note::from_bytes(note.as_bytes()).map_err(|_| LedgerError::MalformedNote)?;
    let text = std::str::from_utf8(parsed.text()).map_err(|_| LedgerError::MalformedNote)?;
    Checkpoint::parse_text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_B64: &str = "TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=";

    fn keys() -> (SignerKey, VerifierKey) {
        generate_key("writ.test/ledger", [7u8; 32]).unwrap()
    }

    #[test]
    fn checkpoint_text_round_trip() {
        // leaf hash of "hello world" (tlog_tiles / Go sumdb tlog test data).
        let root = crate::leaf::leaf_hash(b"hello world");
        assert_eq!(root.to_base64(), ROOT_B64);
        let mut cp = Checkpoint::new("example.com/origin", 123, root);
        assert_eq!(
            cp.to_text().unwrap(),
            format!("example.com/origin\n123\n{ROOT_B64}\n")
        );
        cp.extensions = vec!["abc".into(), "def".into()];
        let text = cp.to_text().unwrap();
        assert_eq!(
            text,
            format!("example.com/origin\n123\n{ROOT_B64}\nabc\ndef\n")
        );
        assert_eq!(Checkpoint::parse_text(&text).unwrap(), cp);
    }

    #[test]
    fn checkpoint_strict_parsing() {
        let bad = [
            String::new(),
            "example.com/origin\n".to_owned(),
            "example.com/origin\n123\n".to_owned(),
            format!("example.com/origin\n123\n{ROOT_B64}"),
            format!("\n123\n{ROOT_B64}\n"),
            format!("example.com/origin\n0123\n{ROOT_B64}\n"),
            format!("example.com/origin\n+123\n{ROOT_B64}\n"),
            format!("example.com/origin\n0x7b\n{ROOT_B64}\n"),
            format!("example.com/origin\n18446744073709551616\n{ROOT_B64}\n"),
            "example.com/origin\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0\n".to_owned(),
            "example.com/origin\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb1=\n".to_owned(),
            "example.com/origin\n123\n!!!!\n".to_owned(),
            "example.com/origin\n123\nQUFBQQ==\n".to_owned(),
            format!("example.com/origin\n123\n{ROOT_B64}\nabc\n\n"),
            format!("example.com/origin\n123\n{ROOT_B64}\nabc"),
        ];
        for t in &bad {
            assert!(Checkpoint::parse_text(t).is_err(), "accepted {t:?}");
        }
    }

    #[test]
    fn sign_and_open() {
        let (sk, vk) = keys();
        let cp = Checkpoint::new("writ.test/ledger", 5, crate::leaf::leaf_hash(b"x"));
        let note = sign(&cp, &sk).unwrap();
        assert!(note.starts_with(&cp.to_text().unwrap()));
        assert!(note.contains("\n\n\u{2014} writ.test/ledger "));
        assert_eq!(open(&note, &vk).unwrap(), cp);
        // Parsing without verification gives the same body.
        assert_eq!(parse_unverified(&note).unwrap(), cp);
    }

    #[test]
    fn open_rejects() {
        let (sk, vk) = keys();
        let cp = Checkpoint::new("writ.test/ledger", 5, crate::leaf::leaf_hash(b"x"));
        let note = sign(&cp, &sk).unwrap();

        // Wrong origin.
        let other = Checkpoint::new("writ.test/other", 5, cp.root);
        let other_note = sign(&other, &sk).unwrap();
        assert!(matches!(
            open(&other_note, &vk),
            Err(LedgerError::WrongOrigin { .. })
        ));
        assert_eq!(
            open_with_origin(&other_note, &vk, "writ.test/other").unwrap(),
            other
        );

        // Tampered size.
        let tampered = note.replacen("\n5\n", "\n6\n", 1);
        assert!(matches!(
            open(&tampered, &vk),
            Err(LedgerError::BadSignature(_))
        ));

        // Other key.
        let (_, vk2) = generate_key("writ.test/ledger", [8u8; 32]).unwrap();
        assert!(matches!(
            open(&note, &vk2),
            Err(LedgerError::BadSignature(_))
        ));

        // Signed but malformed body (missing root line).
        let body_note = sign_note("writ.test/ledger\n5\n", &sk).unwrap();
        assert!(matches!(
            open(&body_note, &vk),
            Err(LedgerError::MalformedCheckpoint(_))
        ));

        // Missing signature block.
        assert!(matches!(
            open(&cp.to_text().unwrap(), &vk),
            Err(LedgerError::MalformedNote)
        ));
    }

    #[test]
    fn key_texts_round_trip() {
        let (sk, vk) = keys();
        let sk2 = SignerKey::parse(&sk.to_text()).unwrap();
        assert_eq!(sk2.verifier_key().unwrap(), vk);
        assert_eq!(VerifierKey::parse(vk.to_text()).unwrap(), vk);
        assert!(sk.to_text().starts_with("PRIVATE+KEY+writ.test/ledger+"));
        assert!(!format!("{sk:?}").contains(&sk.to_text()));
        assert!(generate_key("bad name", [0; 32]).is_err());
        assert!(generate_key("a+b", [0; 32]).is_err());
        assert!(VerifierKey::parse("writ+00000000+AAAA").is_err());
        assert!(SignerKey::parse(vk.to_text()).is_err());
        assert!(VerifierKey::parse(&vk.to_text().to_uppercase()).is_err());
    }
}
