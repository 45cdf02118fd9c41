//! Audit bundle tests: build, JSON round trip, verification and tampering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests may unwrap (code standard).

use serde_json::json;
use writ_ledger::{
    BUNDLE_FORMAT, Bundle, Checkpoint, FailureReason, Hash, LedgerError, SignerKey, Tree,
    VerifierKey, build_bundle, encode_leaf, generate_key, leaf_hash, sign, verify_bundle,
};

const ORIGIN: &str = "writ.test/ledger";

struct Log {
    leaves: Vec<Vec<u8>>,
    hashes: Vec<Hash>,
    sk: SignerKey,
    vk: VerifierKey,
}

fn log(n: u64) -> Log {
    let (sk, vk) = generate_key(ORIGIN, [9u8; 32]).unwrap();
    let leaves: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            encode_leaf(&json!({"seq": i, "kind": "identity.revoked", "id": format!("nhi-{i}")}))
                .unwrap()
        })
        .collect();
    let hashes = leaves.iter().map(|l| leaf_hash(l)).collect();
    Log {
        leaves,
        hashes,
        sk,
        vk,
    }
}

fn note_at(l: &Log, size: u64) -> String {
    let root = Tree::from_leaf_hashes(&l.hashes[..size as usize]).root();
    sign(&Checkpoint::new(ORIGIN, size, root), &l.sk).unwrap()
}

fn bundle(l: &Log, size: u64, seqs: &[u64]) -> Bundle {
    let selected: Vec<(u64, Vec<u8>)> = seqs
        .iter()
        .map(|&s| (s, l.leaves[s as usize].clone()))
        .collect();
    build_bundle(&l.hashes, &selected, &note_at(l, size), l.vk.to_text()).unwrap()
}

#[test]
fn build_verify_round_trip() {
    let l = log(50);
    let b = bundle(&l, 40, &[7, 3, 39])
        .with_consistency(&l.hashes, 20)
        .unwrap();
    assert_eq!(b.format, BUNDLE_FORMAT);
    assert_eq!(b.tree_size, 40);
    assert_eq!(
        b.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 7, 39]
    );

    let json = b.to_json().unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for k in [
        "format",
        "origin",
        "public_key",
        "checkpoint",
        "tree_size",
        "entries",
        "consistency",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert!(v["entries"][0]["leaf"].is_string());
    assert!(v["entries"][0]["inclusion_proof"][0].is_string());
    let b2 = Bundle::from_json(&json).unwrap();
    assert_eq!(b2, b);

    let report = verify_bundle(&b2, &l.vk).unwrap();
    assert_eq!(report.seqs, vec![3, 7, 39]);
    assert_eq!(report.tree_size, 40);
    assert_eq!(report.origin, ORIGIN);
    let old_root = Tree::from_leaf_hashes(&l.hashes[..20]).root();
    assert_eq!(report.consistent_with, Some((20, old_root)));

    // Without consistency the field is omitted.
    let plain = bundle(&l, 50, &[0]);
    assert!(!plain.to_json().unwrap().contains("consistency"));
    assert!(verify_bundle(&plain, &l.vk).is_ok());
}

#[test]
fn tampering_is_detected() {
    let l = log(30);
    let good = bundle(&l, 30, &[2, 5, 11])
        .with_consistency(&l.hashes, 10)
        .unwrap();
    let reason = |b: &Bundle| verify_bundle(b, &l.vk).unwrap_err();

    // Another trusted key.
    let (_, other_vk) = generate_key(ORIGIN, [10u8; 32]).unwrap();
    assert_eq!(
        verify_bundle(&good, &other_vk).unwrap_err().reason,
        FailureReason::PublicKeyMismatch
    );

    // Public key swapped inside the bundle.
    let mut b = good.clone();
    b.public_key = other_vk.to_text().to_owned();
    assert_eq!(reason(&b).reason, FailureReason::PublicKeyMismatch);

    // Leaf content changed (still canonical, same seq).
    let mut b = good.clone();
    b.entries[1].leaf = encode_leaf(&json!({"seq": 5, "kind": "identity.kept"})).unwrap();
    let e = reason(&b);
    assert_eq!(
        (e.seq, e.reason),
        (Some(5), FailureReason::BadInclusionProof)
    );

    // Proof hash flipped.
    let mut b = good.clone();
    b.entries[2].inclusion_proof[0].0[3] ^= 4;
    let e = reason(&b);
    assert_eq!(
        (e.seq, e.reason),
        (Some(11), FailureReason::BadInclusionProof)
    );

    // Entry moved to another seq.
    let mut b = good.clone();
    b.entries[0].seq = 3;
    let e = reason(&b);
    assert_eq!(
        (e.seq, e.reason),
        (Some(3), FailureReason::SeqFieldMismatch { found: Some(2) })
    );

    // Non-canonical leaf.
    let mut b = good.clone();
    b.entries[0].leaf = b"writ.event.v1\n{\"seq\":2 }".to_vec();
    assert_eq!(reason(&b).reason, FailureReason::NotCanonical);

    // Tree size changed.
    let mut b = good.clone();
    b.tree_size = 29;
    assert!(matches!(
        reason(&b).reason,
        FailureReason::CheckpointSizeMismatch { .. }
    ));

    // Checkpoint forged by another key.
    let (other_sk, _) = generate_key(ORIGIN, [11u8; 32]).unwrap();
    let mut b = good.clone();
    b.checkpoint = sign(
        &writ_ledger::parse_unverified(&good.checkpoint).unwrap(),
        &other_sk,
    )
    .unwrap();
    assert_eq!(reason(&b).reason, FailureReason::BadSignature { size: 30 });

    // Origin changed.
    let mut b = good.clone();
    b.origin = "elsewhere".into();
    assert_eq!(reason(&b).reason, FailureReason::WrongOrigin { size: 30 });

    // Unknown format.
    let mut b = good.clone();
    b.format = "writ.audit-bundle.v2".into();
    assert!(matches!(
        reason(&b).reason,
        FailureReason::MalformedBundle(_)
    ));

    // Consistency proof tampered.
    let mut b = good.clone();
    if let Some(c) = b.consistency.as_mut() {
        c.old_root.0[0] ^= 1;
    }
    assert_eq!(reason(&b).reason, FailureReason::BadConsistencyProof);

    // Unknown JSON field rejected.
    let json = good
        .to_json()
        .unwrap()
        .replacen("\"format\"", "\"extra\": 1, \"format\"", 1);
    assert!(matches!(
        Bundle::from_json(&json),
        Err(LedgerError::Bundle(_))
    ));
}

#[test]
fn build_rejects_inconsistent_input() {
    let l = log(10);
    let note = note_at(&l, 10);
    // Leaf does not match its stored hash.
    let bad = vec![(4u64, l.leaves[5].clone())];
    assert!(build_bundle(&l.hashes, &bad, &note, l.vk.to_text()).is_err());
    // Seq beyond the checkpoint.
    let note5 = note_at(&l, 5);
    let beyond = vec![(7u64, l.leaves[7].clone())];
    assert!(build_bundle(&l.hashes, &beyond, &note5, l.vk.to_text()).is_err());
    // Checkpoint larger than the leaf hashes given.
    assert!(build_bundle(&l.hashes[..5], &[], &note, l.vk.to_text()).is_err());
}
