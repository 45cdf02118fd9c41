//! Public Merkle test vectors from transparency-dev/merkle (Apache-2.0),
//! copied unchanged into `tests/vectors/transparency-dev-merkle/` (its
//! README.md names the source and the files) and read at test time:
//! - every `testdata/inclusion/**` and `testdata/consistency/**` case: happy
//!   paths must verify, every `wantErr` case must be rejected;
//! - `constants.go.txt`: reference leaf hashes and roots for sizes 0..=8.
//!
//! Some error cases use placeholder roots that are not 32 bytes long (e.g.
//! base64 of "don't care 1"). Our API takes `Hash = [u8; 32]`, so such a
//! placeholder is mapped to SHA-256 of its bytes: equal placeholders stay
//! equal and distinct ones stay distinct, which is all those cases test. A
//! proof element or leaf hash that is not 32 bytes cannot be passed to the
//! typed API at all, so such a case counts as rejected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests may unwrap (code standard).

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use sha2::Digest as _;
use std::path::Path;
use writ_ledger::{
    EMPTY_ROOT, Hash, Tree, TreeBuilder, leaf_hash, verify_consistency, verify_inclusion,
};

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64 string"))
        .expect("valid base64")
}

/// A root: 32 bytes as-is, any other placeholder mapped through SHA-256.
fn root(v: &Value) -> Hash {
    let raw = b64(v);
    match Hash::from_slice(&raw) {
        Ok(h) => h,
        Err(_) => Hash(sha2::Sha256::digest(&raw).into()),
    }
}

/// Proof hashes, or None if any is not 32 bytes.
fn proof(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(vec![]),
        Value::Array(a) => a.iter().map(|h| Hash::from_slice(&b64(h)).ok()).collect(),
        _ => panic!("bad proof field"),
    }
}

fn json_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            json_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

fn load(kind: &str) -> Vec<(String, Value)> {
    let dir = common::vectors_dir("transparency-dev-merkle")
        .join("testdata")
        .join(kind);
    let mut files = Vec::new();
    json_files(&dir, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read vector");
            (
                p.display().to_string(),
                serde_json::from_str(&text).expect("vector JSON"),
            )
        })
        .collect()
}

#[test]
fn inclusion_vectors() {
    let cases = load("inclusion");
    assert!(
        cases.len() >= 90,
        "expected the full inclusion set, got {}",
        cases.len()
    );
    let (mut ok, mut rejected) = (0, 0);
    for (name, c) in &cases {
        let want_err = c["wantErr"].as_bool().expect("wantErr");
        let index = c["leafIdx"].as_u64().expect("leafIdx");
        let size = c["treeSize"].as_u64().expect("treeSize");
        let root = root(&c["root"]);
        let leaf = Hash::from_slice(&b64(&c["leafHash"]));
        let result = match (leaf, proof(&c["proof"])) {
            (Ok(leaf), Some(p)) => verify_inclusion(&leaf, index, size, &p, &root).is_ok(),
            _ => false,
        };
        if want_err {
            assert!(!result, "{name}: accepted a wantErr case ({})", c["desc"]);
            rejected += 1;
        } else {
            assert!(result, "{name}: rejected a happy path ({})", c["desc"]);
            ok += 1;
        }
    }
    println!("inclusion: {ok} verified, {rejected} rejected");
    assert!(ok >= 3);
}

#[test]
fn consistency_vectors() {
    let cases = load("consistency");
    assert!(
        cases.len() >= 90,
        "expected the full consistency set, got {}",
        cases.len()
    );
    let (mut ok, mut rejected) = (0, 0);
    for (name, c) in &cases {
        let want_err = c["wantErr"].as_bool().expect("wantErr");
        let size1 = c["size1"].as_u64().expect("size1");
        let size2 = c["size2"].as_u64().expect("size2");
        let root1 = root(&c["root1"]);
        let root2 = root(&c["root2"]);
        let result = match proof(&c["proof"]) {
            Some(p) => verify_consistency(size1, size2, &p, &root1, &root2).is_ok(),
            None => false,
        };
        if want_err {
            assert!(!result, "{name}: accepted a wantErr case ({})", c["desc"]);
            rejected += 1;
        } else {
            assert!(result, "{name}: rejected a happy path ({})", c["desc"]);
            ok += 1;
        }
    }
    println!("consistency: {ok} verified, {rejected} rejected");
    assert!(ok >= 5);
}

/// Extracts the `hd("...")` literals of one Go function in constants.go.txt.
fn go_func_hexes(src: &str, func: &str) -> Vec<Vec<u8>> {
    let start = src
        .find(&format!("func {func}()"))
        .expect("function present");
    let body = &src[start..];
    let end = body[1..].find("\nfunc ").map_or(body.len(), |e| e + 1);
    body[..end]
        .split("hd(\"")
        .skip(1)
        .map(|s| {
            let hex = &s[..s.find('"').expect("closing quote")];
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
}

#[test]
fn reference_tree_constants() {
    let path = common::vectors_dir("transparency-dev-merkle").join("constants.go.txt");
    let src = std::fs::read_to_string(path).expect("constants.go.txt");
    let inputs = go_func_hexes(&src, "LeafInputs");
    let nodes = go_func_hexes(&src, "NodeHashes");
    let roots = go_func_hexes(&src, "RootHashes");
    let empty = go_func_hexes(&src, "EmptyRootHash");
    assert_eq!(inputs.len(), 8);
    assert_eq!(
        roots.len(),
        8,
        "RootHashes lists sizes 1..=8 (size 0 is EmptyRootHash())"
    );
    assert_eq!(empty.len(), 1);
    assert_eq!(EMPTY_ROOT.as_bytes().as_slice(), empty[0].as_slice());

    // Level-0 node hashes are the leaf hashes.
    let leaves: Vec<Hash> = inputs.iter().map(|d| leaf_hash(d)).collect();
    for (i, h) in leaves.iter().enumerate() {
        assert_eq!(h.as_bytes().as_slice(), nodes[i].as_slice(), "leaf {i}");
    }

    // Interior nodes: level L, index j covers leaves [j*2^L, (j+1)*2^L).
    let mut k = 8;
    for level in 1..=3u32 {
        let width = 1usize << level;
        for j in 0..(8 / width) {
            let sub = writ_ledger::root_of(&leaves[j * width..(j + 1) * width]);
            assert_eq!(
                sub.as_bytes().as_slice(),
                nodes[k].as_slice(),
                "node {level}/{j}"
            );
            k += 1;
        }
    }
    assert_eq!(k, nodes.len());

    let tree = Tree::from_leaf_hashes(&leaves);
    let mut builder = TreeBuilder::new();
    assert_eq!(tree.root_at(0).unwrap(), EMPTY_ROOT);
    assert_eq!(builder.root(), EMPTY_ROOT);
    for size in 1..=8usize {
        builder.push(leaves[size - 1]);
        let want = Hash::from_slice(&roots[size - 1]).unwrap();
        assert_eq!(builder.root(), want, "builder root at size {size}");
        assert_eq!(
            tree.root_at(size as u64).unwrap(),
            want,
            "tree root at size {size}"
        );
        assert_eq!(writ_ledger::root_of(&leaves[..size]), want);
    }
}
