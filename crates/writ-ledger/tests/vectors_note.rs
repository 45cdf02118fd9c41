//! Signed-note vectors.
//!
//! Source: Go's `golang.org/x/mod/sumdb/note` `note_test.go` (TestNewSigner /
//! TestSign / TestOpen) and the package documentation example, as ported
//! verbatim into the `signed_note` 0.2.0 crate's tests and doc tests
//! (`signed_note-0.2.0/src/lib.rs`, where they pass). Only keys, texts and
//! signature lines that appear there byte for byte are used here.
//!
//! The C2SP `tlog-checkpoint` spec example is NOT included: its exact bytes
//! could not be checked offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests may unwrap (code standard).

use writ_ledger::{LedgerError, SignerKey, VerifierKey, generate_key, sign_note, verify_note};

const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";

const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter_note() -> String {
    format!("{TEXT}\n{PETER_SIG}")
}

#[test]
fn known_keys_parse() {
    let vk = VerifierKey::parse(PETER_VKEY).unwrap();
    assert_eq!(vk.name(), "PeterNeumann");
    assert_eq!(vk.key_id(), 0xc74f_20a3);
    assert_eq!(vk.to_text(), PETER_VKEY);

    let sk = SignerKey::parse(PETER_SKEY).unwrap();
    assert_eq!(sk.name(), "PeterNeumann");
    assert_eq!(sk.key_id(), 0xc74f_20a3);
    assert_eq!(sk.to_text(), PETER_SKEY);
    assert_eq!(sk.verifier_key().unwrap(), vk);

    let enoch = VerifierKey::parse(ENOCH_VKEY).unwrap();
    assert_eq!(enoch.key_id(), 0xaf0c_fe78);
}

#[test]
fn signing_reproduces_known_note() {
    // Ed25519 is deterministic, so signing the text with the known private
    // key must give the known note byte for byte.
    let sk = SignerKey::parse(PETER_SKEY).unwrap();
    assert_eq!(sign_note(TEXT, &sk).unwrap(), peter_note());
}

#[test]
fn known_note_verifies() {
    let vk = VerifierKey::parse(PETER_VKEY).unwrap();
    assert_eq!(verify_note(&peter_note(), &vk).unwrap(), TEXT);
}

#[test]
fn doubly_signed_note_verifies_under_each_key() {
    let note = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    let peter = VerifierKey::parse(PETER_VKEY).unwrap();
    let enoch = VerifierKey::parse(ENOCH_VKEY).unwrap();
    // Signatures by keys the verifier does not know are ignored.
    assert_eq!(verify_note(&note, &peter).unwrap(), TEXT);
    assert_eq!(verify_note(&note, &enoch).unwrap(), TEXT);
    // Only Enoch's signature: Peter's key finds nothing it can verify.
    let only_enoch = format!("{TEXT}\n{ENOCH_SIG}");
    assert!(matches!(
        verify_note(&only_enoch, &peter),
        Err(LedgerError::BadSignature(_))
    ));
}

#[test]
fn zero_seed_key_reproduces_enoch_signature() {
    // The signed_note doc example generates "EnochRoot" from an all-zero RNG,
    // i.e. the all-zero Ed25519 seed, and gets exactly ENOCH_SIG.
    let (sk, vk) = generate_key("EnochRoot", [0u8; 32]).unwrap();
    assert_eq!(
        sign_note(TEXT, &sk).unwrap(),
        format!("{TEXT}\n{ENOCH_SIG}")
    );
    assert_eq!(vk.key_id(), sk.key_id());
    assert_eq!(vk.to_text(), ENOCH_VKEY);
}

#[test]
fn tampered_notes_are_rejected() {
    let vk = VerifierKey::parse(PETER_VKEY).unwrap();
    // Changed text.
    let changed_text = peter_note().replacen("problem,", "problems,", 1);
    assert!(matches!(
        verify_note(&changed_text, &vk),
        Err(LedgerError::BadSignature(_))
    ));
    // Signature with inserted bytes (the note_test.go "ABCD" insertion).
    let bad_sig = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert!(matches!(
        verify_note(&format!("{TEXT}\n{bad_sig}"), &vk),
        Err(LedgerError::BadSignature(_))
    ));
    // Malformed encodings from note_test.go.
    let bad_msgs = [
        TEXT.to_owned(),
        format!("\n{TEXT}"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\x01{TEXT}\n{PETER_SIG}"),
        format!(
            "{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
        ),
    ];
    for m in &bad_msgs {
        assert!(verify_note(m, &vk).is_err(), "accepted {m:?}");
    }
}
