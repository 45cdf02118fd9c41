//! Signed-note vectors.
//!
//! Source: Go's `golang.org/x/mod/sumdb/note` `note_test.go` (TestNewSigner /
//! TestSign / TestOpen) and the package documentation example, as ported
//! verbatim into the `signed_note` 0.2.0 crate's tests and doc tests
//! (`signed_note-0.2.0/src/lib.rs`, where they pass). Only keys, texts and
//! signature lines that appear there byte for byte are used here.
//!
//! The C2SP `tlog-checkpoint` and `signed-note` spec examples (C2SP/C2SP,
//! `tlog-checkpoint.md` and `signed-note.md`) are checked for structure: the
//! specs do not publish the public keys, so their signatures can only be shown
//! to be refused by a key that did not make them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests may unwrap (code standard).

use writ_ledger::{
    Hash, LedgerError, SignerKey, VerifierKey, generate_key, open, parse_unverified, sign_note,
    verify_note,
};

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

/// The example in C2SP `tlog-checkpoint.md`.
const C2SP_CHECKPOINT: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

/// The example in C2SP `signed-note.md`.
const C2SP_NOTE: &str = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n\n\u{2014} quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";

#[test]
fn c2sp_checkpoint_example_parses_and_only_its_key_could_open_it() {
    let checkpoint = parse_unverified(C2SP_CHECKPOINT).unwrap();
    assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
    assert_eq!(checkpoint.size, 20_852_163);
    assert_eq!(
        checkpoint.root,
        Hash::from_base64("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=").unwrap()
    );
    let (_, impostor) = generate_key("example.com/behind-the-sofa", [1; 32]).unwrap();
    assert!(open(C2SP_CHECKPOINT, &impostor).is_err());
}

#[test]
fn c2sp_signed_note_example_is_refused_by_an_unknown_key() {
    let (_, impostor) = generate_key("quasimodo.example/salvatore", [2; 32]).unwrap();
    assert!(verify_note(C2SP_NOTE, &impostor).is_err());
    // The note text includes its own blank line: the signature block is after the last one.
    let (signer, verifier) = generate_key("quasimodo.example/salvatore", [3; 32]).unwrap();
    let text = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n";
    let ours = sign_note(text, &signer).unwrap();
    assert_eq!(verify_note(&ours, &verifier).unwrap(), text);
}
