//! Property tests: Merkle proofs, tamper detection by `verify_chain`, and
//! agreement between the two canonical-JSON checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests may unwrap (code standard).

use proptest::prelude::*;
use serde_json::{Value, json};
use writ_ledger::{
    CanonicalCheck, Checkpoint, FailureReason, Hash, SignerKey, Tree, VerifierKey, VerifyFailure,
    encode_leaf, generate_key, leaf_hash, sign, validate_leaf, verify_chain, verify_consistency,
    verify_inclusion,
};

const ORIGIN: &str = "writ.test/ledger";

type Row = (u64, Vec<u8>, Hash);

fn keys() -> (SignerKey, VerifierKey) {
    generate_key(ORIGIN, [42u8; 32]).unwrap()
}

fn make_rows(payloads: &[String]) -> Vec<Row> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let leaf = encode_leaf(&json!({
                "seq": i,
                "kind": "finding.triaged",
                "payload": p,
                "n": (i as f64) * 0.5,
            }))
            .unwrap();
            let h = leaf_hash(&leaf);
            (i as u64, leaf, h)
        })
        .collect()
}

/// Signed checkpoints at the given sizes over the given (honest) rows.
fn checkpoints(rows: &[Row], sizes: &[u64], sk: &SignerKey) -> Vec<(u64, String)> {
    let hashes: Vec<Hash> = rows.iter().map(|r| r.2).collect();
    let tree = Tree::from_leaf_hashes(&hashes);
    sizes
        .iter()
        .map(|&s| {
            let cp = Checkpoint::new(ORIGIN, s, tree.root_at(s).unwrap());
            (s, sign(&cp, sk).unwrap())
        })
        .collect()
}

fn run(rows: &[Row], cps: &[(u64, String)], vk: &VerifierKey) -> Result<u64, VerifyFailure> {
    verify_chain(rows.iter().map(|(s, l, h)| (*s, l.as_slice(), *h)), cps, vk).map(|r| r.entries)
}

fn payloads(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-z0-9 \u{e9}\u{1F600}\"\\\\\n]{0,24}", 1..max)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every inclusion proof (every index at every size) and every
    /// consistency proof (every pair of sizes) verifies, and fails with a
    /// flipped bit.
    #[test]
    fn all_proofs_verify(ps in payloads(200)) {
        let rows = make_rows(&ps);
        let hashes: Vec<Hash> = rows.iter().map(|r| r.2).collect();
        let tree = Tree::from_leaf_hashes(&hashes);
        let n = tree.size();
        let roots: Vec<Hash> = (0..=n).map(|s| tree.root_at(s).unwrap()).collect();
        for size in 1..=n {
            let root = roots[size as usize];
            for index in 0..size {
                let p = tree.inclusion_proof(index, size).unwrap();
                prop_assert!(verify_inclusion(&hashes[index as usize], index, size, &p, &root).is_ok());
            }
            for old in 1..=size {
                let p = tree.consistency_proof(old, size).unwrap();
                prop_assert!(verify_consistency(old, size, &p, &roots[old as usize], &root).is_ok());
            }
        }
        // Corrupting one proof hash is detected.
        if n >= 2 {
            let mut p = tree.inclusion_proof(0, n).unwrap();
            p[0].0[0] ^= 1;
            prop_assert!(verify_inclusion(&hashes[0], 0, n, &p, &roots[n as usize]).is_err());
            let mut c = tree.consistency_proof(1, n).unwrap();
            c[0].0[31] ^= 0x80;
            prop_assert!(verify_consistency(1, n, &c, &roots[1], &roots[n as usize]).is_err());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn honest_chain_verifies(ps in payloads(200), extra in prop::collection::vec(0u64..200, 0..4)) {
        let (sk, vk) = keys();
        let rows = make_rows(&ps);
        let n = rows.len() as u64;
        let mut sizes: Vec<u64> = extra.into_iter().map(|s| s % (n + 1)).collect();
        sizes.push(n);
        let cps = checkpoints(&rows, &sizes, &sk);
        prop_assert_eq!(run(&rows, &cps, &vk), Ok(n));
    }

    #[test]
    fn byte_change_in_leaf_is_detected(ps in payloads(200), k in any::<prop::sample::Index>(),
                                       pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let (sk, vk) = keys();
        let mut rows = make_rows(&ps);
        let n = rows.len() as u64;
        let cps = checkpoints(&rows, &[n], &sk);
        let k = k.index(rows.len());
        let pos = pos.index(rows[k].1.len());
        rows[k].1[pos] ^= x;
        let err = run(&rows, &cps, &vk).unwrap_err();
        prop_assert_eq!(err, VerifyFailure { seq: Some(k as u64), reason: FailureReason::LeafHashMismatch });
    }

    #[test]
    fn byte_change_in_stored_hash_is_detected(ps in payloads(200), k in any::<prop::sample::Index>(),
                                              pos in 0usize..32, x in 1u8..=255) {
        let (sk, vk) = keys();
        let mut rows = make_rows(&ps);
        let n = rows.len() as u64;
        let cps = checkpoints(&rows, &[n], &sk);
        let k = k.index(rows.len());
        rows[k].2.0[pos] ^= x;
        let err = run(&rows, &cps, &vk).unwrap_err();
        prop_assert_eq!(err, VerifyFailure { seq: Some(k as u64), reason: FailureReason::LeafHashMismatch });
    }

    #[test]
    fn deletion_is_detected(ps in payloads(200), k in any::<prop::sample::Index>()) {
        let (sk, vk) = keys();
        let mut rows = make_rows(&ps);
        let n = rows.len() as u64;
        let cps = checkpoints(&rows, &[n], &sk);
        let k = k.index(rows.len());
        rows.remove(k);
        let err = run(&rows, &cps, &vk).unwrap_err();
        let k = k as u64;
        let want = if k + 1 < n {
            FailureReason::SequenceGap { expected: k, found: k + 1 }
        } else {
            FailureReason::CheckpointBeyondLog { size: n, entries: n - 1 }
        };
        prop_assert_eq!(err, VerifyFailure { seq: Some(k), reason: want });
    }

    #[test]
    fn swap_of_rows_is_detected(ps in payloads(200), a in any::<prop::sample::Index>(),
                                b in any::<prop::sample::Index>()) {
        let (sk, vk) = keys();
        let mut rows = make_rows(&ps);
        let n = rows.len() as u64;
        prop_assume!(n >= 2);
        let cps = checkpoints(&rows, &[n], &sk);
        let (i, j) = (a.index(rows.len()), b.index(rows.len()));
        prop_assume!(i != j);
        let (i, j) = (i.min(j), i.max(j));
        rows.swap(i, j);
        let err = run(&rows, &cps, &vk).unwrap_err();
        prop_assert_eq!(err, VerifyFailure {
            seq: Some(i as u64),
            reason: FailureReason::SequenceGap { expected: i as u64, found: j as u64 },
        });
    }

    #[test]
    fn swap_of_contents_is_detected(ps in payloads(200), a in any::<prop::sample::Index>(),
                                    b in any::<prop::sample::Index>()) {
        // The seq column is left in place; leaf and stored hash are swapped.
        let (sk, vk) = keys();
        let mut rows = make_rows(&ps);
        let n = rows.len() as u64;
        prop_assume!(n >= 2);
        let cps = checkpoints(&rows, &[n], &sk);
        let (i, j) = (a.index(rows.len()), b.index(rows.len()));
        prop_assume!(i != j);
        let (i, j) = (i.min(j), i.max(j));
        let (li, hi) = (rows[i].1.clone(), rows[i].2);
        rows[i].1 = rows[j].1.clone();
        rows[i].2 = rows[j].2;
        rows[j].1 = li;
        rows[j].2 = hi;
        let err = run(&rows, &cps, &vk).unwrap_err();
        prop_assert_eq!(err, VerifyFailure {
            seq: Some(i as u64),
            reason: FailureReason::SeqFieldMismatch { found: Some(j as u64) },
        });
    }

    #[test]
    fn rewritten_entry_is_caught_by_checkpoint(ps in payloads(200), k in any::<prop::sample::Index>(),
                                               cut in any::<prop::sample::Index>()) {
        // An attacker rewrites entry k with a valid canonical leaf and a
        // matching stored hash: only the checkpoints can tell.
        let (sk, vk) = keys();
        let mut rows = make_rows(&ps);
        let n = rows.len();
        let k = k.index(n);
        let before = cut.index(n + 1).min(k) as u64; // a checkpoint before k
        let cps = checkpoints(&rows, &[before, n as u64], &sk);
        let leaf = encode_leaf(&json!({"seq": k, "kind": "forged"})).unwrap();
        rows[k].2 = leaf_hash(&leaf);
        rows[k].1 = leaf;
        let err = run(&rows, &cps, &vk).unwrap_err();
        prop_assert_eq!(err, VerifyFailure {
            seq: None,
            reason: FailureReason::CheckpointRootMismatch { size: n as u64 },
        });
    }
}

#[test]
fn forged_checkpoints_are_detected() {
    let (sk, vk) = keys();
    let rows = make_rows(&["a".into(), "b".into(), "c".into()]);
    let good = checkpoints(&rows, &[1, 3], &sk);
    // Signed by another key.
    let (other_sk, _) = generate_key(ORIGIN, [43u8; 32]).unwrap();
    let forged = checkpoints(&rows, &[3], &other_sk);
    let cps = vec![good[0].clone(), forged[0].clone()];
    assert_eq!(
        run(&rows, &cps, &vk).unwrap_err(),
        VerifyFailure {
            seq: None,
            reason: FailureReason::BadSignature { size: 3 }
        }
    );
    // Validly signed but over a different root.
    let wrong = Checkpoint::new(ORIGIN, 3, leaf_hash(b"nope"));
    let cps = vec![(3, sign(&wrong, &sk).unwrap())];
    assert_eq!(
        run(&rows, &cps, &vk).unwrap_err(),
        VerifyFailure {
            seq: None,
            reason: FailureReason::CheckpointRootMismatch { size: 3 }
        }
    );
    // Declared size differs from the signed size.
    let cps = vec![(2, good[1].1.clone())];
    assert_eq!(
        run(&rows, &cps, &vk).unwrap_err(),
        VerifyFailure {
            seq: None,
            reason: FailureReason::CheckpointSizeMismatch {
                declared: 2,
                signed: 3
            }
        }
    );
    // Empty log with a size-0 checkpoint verifies.
    let empty = checkpoints(&[], &[0], &sk);
    assert_eq!(run(&[], &empty, &vk), Ok(0));
}

#[test]
fn non_canonical_and_bad_seq_leaves_are_named() {
    let (sk, vk) = keys();
    let mut rows = make_rows(&["a".into(), "b".into(), "c".into()]);
    let cps = checkpoints(&rows, &[3], &sk);
    // Non-canonical JSON (space), with a recomputed stored hash.
    let leaf = b"writ.event.v1\n{\"seq\": 1}".to_vec();
    rows[1] = (1, leaf.clone(), leaf_hash(&leaf));
    assert_eq!(
        run(&rows, &cps, &vk).unwrap_err(),
        VerifyFailure {
            seq: Some(1),
            reason: FailureReason::NotCanonical
        }
    );
    for mode in [CanonicalCheck::Streaming, CanonicalCheck::Recanonicalize] {
        let err = writ_ledger::verify_chain_with(
            rows.iter().map(|(s, l, h)| (*s, l.as_slice(), *h)),
            &cps,
            &vk,
            writ_ledger::VerifyOptions { canonical: mode },
        )
        .unwrap_err();
        assert_eq!(err.seq, Some(1));
        assert_eq!(err.reason, FailureReason::NotCanonical);
    }
    // Missing seq field.
    let leaf = encode_leaf(&json!({"kind": "x"})).unwrap();
    rows[1] = (1, leaf.clone(), leaf_hash(&leaf));
    assert_eq!(
        run(&rows, &cps, &vk).unwrap_err(),
        VerifyFailure {
            seq: Some(1),
            reason: FailureReason::SeqFieldMismatch { found: None }
        }
    );
    // Missing tag.
    let leaf = b"{\"seq\":1}".to_vec();
    rows[1] = (1, leaf.clone(), leaf_hash(&leaf));
    assert_eq!(
        run(&rows, &cps, &vk).unwrap_err(),
        VerifyFailure {
            seq: Some(1),
            reason: FailureReason::BadLeafTag
        }
    );
}

// ---- Streaming vs re-canonicalising check: must agree on every input ----

fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("seq".to_owned()),
        "[a-c]{0,2}",
        "[\u{0}-\u{1f}\"\\\\/\u{7f}\u{e000}\u{ffff}\u{10000}\u{1F600}a]{0,3}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        (-1000i64..1000, -30i32..30).prop_map(|(m, e)| Value::from(m as f64 * 10f64.powi(e))),
        "[\u{0}-\u{1f}\"\\\\/\u{7f}\u{e9}\u{2028}\u{1F600}a-z]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Replace(prop::sample::Index, u8),
    SwapAdjacent(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop::sample::select(vec![
        b' ', b'"', b'\\', b',', b':', b'0', b'1', b'9', b'-', b'.', b'e', b'E', b'+', b'{', b'}',
        b'[', b']', b'u', b'a', b'/', b'n', b't', 0x1f, 0x7f, 0xc3, 0xa9, 0xff,
    ]);
    prop_oneof![
        (any::<prop::sample::Index>(), byte.clone()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Edit::Delete),
        (any::<prop::sample::Index>(), byte).prop_map(|(i, b)| Edit::Replace(i, b)),
        any::<prop::sample::Index>().prop_map(Edit::SwapAdjacent),
    ]
}

fn apply(body: &mut Vec<u8>, e: &Edit) {
    match e {
        Edit::Insert(i, b) => {
            let i = i.index(body.len() + 1);
            body.insert(i, *b);
        }
        Edit::Delete(i) if !body.is_empty() => {
            let i = i.index(body.len());
            body.remove(i);
        }
        Edit::Replace(i, b) if !body.is_empty() => {
            let i = i.index(body.len());
            body[i] = *b;
        }
        Edit::SwapAdjacent(i) if body.len() >= 2 => {
            let i = i.index(body.len() - 1);
            body.swap(i, i + 1);
        }
        _ => {}
    }
}

fn both(leaf: &[u8]) -> (Result<Option<u64>, ()>, Result<Option<u64>, ()>) {
    (
        validate_leaf(leaf, CanonicalCheck::Streaming).map_err(|_| ()),
        validate_leaf(leaf, CanonicalCheck::Recanonicalize).map_err(|_| ()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn canonical_checks_agree(v in json_value(), edits in prop::collection::vec(edit(), 0..3)) {
        let leaf = encode_leaf(&v).unwrap();
        let (fast, full) = both(&leaf);
        prop_assert!(fast.is_ok(), "streaming check rejected canonical {:?}", String::from_utf8_lossy(&leaf));
        prop_assert_eq!(fast, full);
        let mut edited = leaf.clone();
        for e in &edits {
            apply(&mut edited, e);
        }
        let (fast, full) = both(&edited);
        prop_assert_eq!(fast, full, "disagree on {:?}", String::from_utf8_lossy(&edited));
    }

    #[test]
    fn number_spellings_agree(f in any::<f64>().prop_filter("finite", |f| f.is_finite()),
                              style in 0usize..4) {
        let s = match style {
            0 => format!("{f}"),
            1 => format!("{f:e}"),
            2 => format!("{f:E}"),
            _ => format!("{f:.3}"),
        };
        let leaf = [b"writ.event.v1\n".as_slice(), s.as_bytes()].concat();
        let (fast, full) = both(&leaf);
        prop_assert_eq!(fast, full, "disagree on {}", s);
    }
}
