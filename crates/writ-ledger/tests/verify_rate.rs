//! Measures `verify_chain` throughput on ~300-byte leaves.
//!
//! `cargo test --release --test verify_rate -- --nocapture` runs 1,000,000
//! entries; debug builds run a small smoke-sized chain. Prints entries/s for
//! both canonical-check modes; asserts nothing about speed (shared machine).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests may unwrap (code standard).

use serde_json::json;
use std::time::Instant;
use writ_ledger::{
    CanonicalCheck, Checkpoint, Hash, TreeBuilder, VerifyOptions, encode_leaf, generate_key,
    leaf_hash, sign, verify_chain_with,
};

#[test]
fn verify_rate() {
    let n: u64 = if cfg!(debug_assertions) {
        20_000
    } else {
        1_000_000
    };
    let (sk, vk) = generate_key("writ.test/ledger", [1u8; 32]).unwrap();

    let leaves: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            encode_leaf(&json!({
                "seq": i,
                "kind": "finding.remediated",
                "finding_id": format!("fnd_{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                "identity": format!("arn:aws:iam::123456789012:role/service-{}", i % 977),
                "actor": "writ-controller@prod",
                "at": format!("2026-11-{:02}T{:02}:{:02}:{:02}Z", 1 + i % 28, i % 24, i % 60, (i / 60) % 60),
                "details": {"severity": "high", "previous_state": "open", "reason": "credential rotated by policy", "score": 7.5},
            }))
            .unwrap()
        })
        .collect();
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
    let avg = leaves.iter().map(Vec::len).sum::<usize>() as f64 / n as f64;

    // Checkpoints every 100k entries and at the end.
    let mut b = TreeBuilder::new();
    let mut cps = Vec::new();
    for (i, h) in hashes.iter().enumerate() {
        b.push(*h);
        let size = i as u64 + 1;
        if size.is_multiple_of(100_000) || size == n {
            cps.push((
                size,
                sign(&Checkpoint::new("writ.test/ledger", size, b.root()), &sk).unwrap(),
            ));
        }
    }

    for mode in [CanonicalCheck::Streaming, CanonicalCheck::Recanonicalize] {
        let start = Instant::now();
        let report = verify_chain_with(
            leaves
                .iter()
                .zip(&hashes)
                .enumerate()
                .map(|(i, (l, h))| (i as u64, l.as_slice(), *h)),
            &cps,
            &vk,
            VerifyOptions { canonical: mode },
        )
        .unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(report.entries, n);
        assert_eq!(report.checkpoints_verified, cps.len());
        println!(
            "verify_chain {mode:?}: {n} entries, avg leaf {avg:.0} bytes, {} checkpoints: {secs:.3} s = {:.0} entries/s ({})",
            cps.len(),
            n as f64 / secs,
            if cfg!(debug_assertions) {
                "debug build"
            } else {
                "release build"
            },
        );
    }

    // Baseline: leaf hashing alone.
    let start = Instant::now();
    let mut acc = 0u8;
    for l in &leaves {
        acc ^= leaf_hash(l).0[0];
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "baseline leaf hashing only: {:.0} entries/s (x{acc})",
        n as f64 / secs
    );
}
