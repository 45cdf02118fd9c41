//! RFC 6962 / RFC 9162 Merkle trees over SHA-256.
//!
//! - [`Hash`](struct@Hash): a 32-byte SHA-256 value with base64 / hex helpers.
//! - [`TreeBuilder`]: an incremental accumulator (O(log n) memory) giving the
//!   root at the current size; used to verify long chains in one pass.
//! - [`Tree`]: an in-memory tree over a list of leaf hashes that produces
//!   roots at any earlier size, inclusion proofs and consistency proofs.
//! - [`verify_inclusion`] and [`verify_consistency`]: proof verification.
//!
//! Proof generation and verification are delegated to the `tlog_tiles`
//! crate (a port of Go's `golang.org/x/mod/sumdb/tlog`), whose types never
//! appear in this API.

use crate::error::{LedgerError, ProofError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Length of a [`Hash`](struct@Hash) in bytes.
pub const HASH_LEN: usize = 32;

/// Longest valid inclusion proof for a 64-bit tree size.
const MAX_INCLUSION_PROOF: usize = 64;
/// Longest valid consistency proof for 64-bit tree sizes (with margin).
const MAX_CONSISTENCY_PROOF: usize = 130;

/// A SHA-256 hash: a leaf hash, interior node hash or tree root.
///
/// Displays as lowercase hex; serializes (serde) as standard padded base64.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; HASH_LEN]);

/// The root of the empty tree: `SHA-256("")`.
pub const EMPTY_ROOT: Hash = Hash(tlog_tiles::EMPTY_HASH.0);

impl Hash {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Builds a hash from a slice that must be exactly 32 bytes long.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Encoding`] if the length is not 32.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, LedgerError> {
        <[u8; HASH_LEN]>::try_from(bytes).map(Hash).map_err(|_| {
            LedgerError::Encoding(format!("hash must be 32 bytes, got {}", bytes.len()))
        })
    }

    /// Standard padded base64 (RFC 4648 §4), as used in checkpoints.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Parses standard padded base64 of exactly 32 bytes (canonical
    /// encoding only).
    ///
    /// # Errors
    ///
    /// [`LedgerError::Encoding`] on bad base64 or wrong length.
    pub fn from_base64(s: &str) -> Result<Self, LedgerError> {
        let bytes = B64
            .decode(s)
            .map_err(|e| LedgerError::Encoding(format!("bad base64: {e}")))?;
        Self::from_slice(&bytes)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(HASH_LEN * 2);
        for b in self.0 {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Parses 64 hex digits (either case).
    ///
    /// # Errors
    ///
    /// [`LedgerError::Encoding`] on bad hex or wrong length.
    pub fn from_hex(s: &str) -> Result<Self, LedgerError> {
        let b = s.as_bytes();
        if b.len() != HASH_LEN * 2 {
            return Err(LedgerError::Encoding(format!(
                "hex hash must be 64 digits, got {}",
                b.len()
            )));
        }
        let mut out = [0u8; HASH_LEN];
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let (Some(hi), Some(lo)) = (hex_val(pair[0]), hex_val(pair[1])) else {
                return Err(LedgerError::Encoding("bad hex digit".to_owned()));
            };
            *o = hi << 4 | lo;
        }
        Ok(Hash(out))
    }

    fn to_tlog(self) -> tlog_tiles::Hash {
        tlog_tiles::Hash(self.0)
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl From<[u8; HASH_LEN]> for Hash {
    fn from(b: [u8; HASH_LEN]) -> Self {
        Hash(b)
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

/// The RFC 6962 interior node hash `SHA-256(0x01 || left || right)`.
#[inline]
pub fn hash_children(left: &Hash, right: &Hash) -> Hash {
    Hash(tlog_tiles::node_hash(left.to_tlog(), right.to_tlog()).0)
}

/// Incremental Merkle accumulator: push leaf hashes in order, read the root
/// at the current size at any time.
///
/// Keeps one hash per set bit of the size (at most 64), so memory is
/// O(log n); `push` costs one leaf-level store plus amortised one node hash,
/// and `root` costs at most 63 node hashes.
#[derive(Clone, Debug, Default)]
pub struct TreeBuilder {
    size: u64,
    /// Roots of the perfect subtrees making up the tree, largest first.
    stack: Vec<Hash>,
}

impl TreeBuilder {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self {
            size: 0,
            stack: Vec::with_capacity(64),
        }
    }

    /// Number of leaves pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the next leaf hash.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut h = leaf_hash;
        let mut n = self.size;
        while n & 1 == 1 {
            // The stack always holds one entry per set bit of `size`.
            let Some(left) = self.stack.pop() else { break };
            h = hash_children(&left, &h);
            n >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// The RFC 6962 consistency proof from this tree to the tree with `appended` leaf hashes
    /// added, built from this tree's frontier and the new leaves alone (no other stored
    /// hash): every node of such a proof is either a perfect subtree of the old tree's
    /// frontier or made only of new leaves. Empty when nothing is appended or this tree is
    /// empty (nothing to prove).
    pub fn consistency_proof_to(&self, appended: &[Hash]) -> Vec<Hash> {
        let mut builder = ConsistencyBuilder::new(self, self.size + appended.len() as u64);
        for (offset, hash) in appended.iter().enumerate() {
            builder.push(self.size + offset as u64, *hash);
        }
        builder.finish().unwrap_or_default()
    }

    /// The frontier's perfect subtrees, as `(start, end, root)`, largest first.
    fn frontier(&self) -> Vec<(u64, u64, Hash)> {
        let mut frontier = Vec::with_capacity(self.stack.len());
        let mut start = 0u64;
        let mut hashes = self.stack.iter();
        for bit in (0..64).rev() {
            let width = 1u64 << bit;
            if self.size & width != 0 {
                if let Some(hash) = hashes.next() {
                    frontier.push((start, start + width, *hash));
                }
                start += width;
            }
        }
        frontier
    }

    /// The RFC 6962 root hash at the current size ([`EMPTY_ROOT`] if empty).
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&last) = it.next() else {
            return EMPTY_ROOT;
        };
        it.fold(last, |acc, left| hash_children(left, &acc))
    }
}

/// The node ranges `[from, to)` of the RFC 6962 consistency proof from size `old` to size
/// `new` (section 2.1.2, SUBPROOF), in proof order. Each lies wholly in the old tree (a
/// perfect subtree of its frontier) or wholly among the new leaves. Empty when `old` is 0 or
/// not below `new`.
pub fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    if old == 0 || old >= new {
        return ranges;
    }
    let (mut m, mut from, mut to, mut complete) = (old, 0u64, new, true);
    loop {
        let n = to - from;
        if m == n {
            if !complete {
                ranges.push((from, to));
            }
            break;
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            ranges.push((from + k, to));
            to = from + k;
        } else {
            ranges.push((from, from + k));
            m -= k;
            from += k;
            complete = false;
        }
    }
    ranges.reverse();
    ranges
}

/// Builds the RFC 6962 consistency proof from an old tree (its frontier) to a new size while
/// the new leaves stream by, holding one subtree builder at a time: memory stays O(log n)
/// however many leaves are appended.
#[derive(Debug, Clone)]
pub struct ConsistencyBuilder {
    old: u64,
    new: u64,
    /// The proof's nodes: the range, and its root once known.
    nodes: Vec<((u64, u64), Option<Hash>)>,
    /// The new-leaf range being hashed, and its builder.
    current: Option<(usize, TreeBuilder)>,
}

impl ConsistencyBuilder {
    /// A proof from `old` (a tree's frontier) to the tree of size `new`.
    pub fn new(old: &TreeBuilder, new: u64) -> Self {
        let frontier = old.frontier();
        let nodes = consistency_ranges(old.size, new)
            .into_iter()
            .map(|(from, to)| {
                let known = (to <= old.size)
                    .then(|| {
                        frontier
                            .iter()
                            .find(|(s, e, _)| *s == from && *e == to)
                            .map(|(_, _, h)| *h)
                    })
                    .flatten();
                ((from, to), known)
            })
            .collect();
        Self {
            old: old.size,
            new,
            nodes,
            current: None,
        }
    }

    /// Takes leaf `index` (at or past the old size, in order) with hash `hash`.
    pub fn push(&mut self, index: u64, hash: Hash) {
        if index < self.old || index >= self.new {
            return;
        }
        if self.current.is_none() {
            let slot = self
                .nodes
                .iter()
                .position(|((from, to), root)| root.is_none() && (*from..*to).contains(&index));
            self.current = slot.map(|slot| (slot, TreeBuilder::new()));
        }
        if let Some((slot, builder)) = &mut self.current {
            builder.push(hash);
            let (from, to) = self.nodes[*slot].0;
            if from + builder.size() == to {
                self.nodes[*slot].1 = Some(builder.root());
                self.current = None;
            }
        }
    }

    /// The proof, once every leaf up to the new size was pushed (`None` before).
    pub fn finish(self) -> Option<Vec<Hash>> {
        self.nodes.into_iter().map(|(_, root)| root).collect()
    }
}

/// The largest power of two strictly below `n` (`n` > 1).
fn largest_power_of_two_below(n: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The RFC 6962 root of a list of leaf hashes.
pub fn root_of(leaf_hashes: &[Hash]) -> Hash {
    let mut b = TreeBuilder::new();
    for h in leaf_hashes {
        b.push(*h);
    }
    b.root()
}

/// An in-memory Merkle tree that can prove inclusion and consistency at any
/// size up to its current size.
///
/// Stores every complete-subtree hash (about `2n` hashes, in the
/// `golang.org/x/mod/sumdb/tlog` storage order).
#[derive(Clone, Debug, Default)]
pub struct Tree {
    size: u64,
    stored: Stored,
}

#[derive(Clone, Debug, Default)]
struct Stored(Vec<tlog_tiles::Hash>);

impl tlog_tiles::HashReader for Stored {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.0.get(i).copied())
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree over the given leaf hashes, in order.
    pub fn from_leaf_hashes(leaf_hashes: &[Hash]) -> Self {
        let mut t = Self::new();
        t.stored.0.reserve(leaf_hashes.len().saturating_mul(2));
        for h in leaf_hashes {
            t.push(*h);
        }
        t
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf_hash: Hash) {
        // Each trailing one bit of `size` completes a subtree whose left
        // sibling is already stored; compute the new hashes directly with
        // the tlog storage layout (same as tlog_tiles::stored_hashes).
        let n = self.size;
        let mut h = leaf_hash.to_tlog();
        self.stored.0.push(h);
        let m = (n + 1).trailing_zeros();
        for level in 0..m {
            let idx = tlog_tiles::stored_hash_index(
                u8::try_from(level).unwrap_or(u8::MAX),
                (n >> level) - 1,
            );
            let left = usize::try_from(idx)
                .ok()
                .and_then(|i| self.stored.0.get(i).copied())
                .unwrap_or_default();
            h = tlog_tiles::node_hash(left, h);
            self.stored.0.push(h);
        }
        self.size += 1;
    }

    /// The leaf hash at `index`, if present.
    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        if index >= self.size {
            return None;
        }
        let i = usize::try_from(tlog_tiles::stored_hash_index(0, index)).ok()?;
        self.stored.0.get(i).map(|h| Hash(h.0))
    }

    /// The root at the current size.
    pub fn root(&self) -> Hash {
        self.root_at(self.size).unwrap_or(EMPTY_ROOT)
    }

    /// The root of the tree made of the first `size` leaves.
    ///
    /// # Errors
    ///
    /// [`ProofError::SizeBeyondTree`] if `size` exceeds the tree size.
    pub fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        self.check_size(size)?;
        tlog_tiles::tree_hash(size, &self.stored)
            .map(|h| Hash(h.0))
            .map_err(|_| ProofError::Mismatch.into())
    }

    /// The inclusion proof (audit path) of leaf `index` in the tree of size
    /// `size`, leaf-side first as in RFC 6962.
    ///
    /// # Errors
    ///
    /// [`ProofError::IndexOutOfRange`] or [`ProofError::SizeBeyondTree`].
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size }.into());
        }
        tlog_tiles::prove_record(size, index, &self.stored)
            .map(|p| p.into_iter().map(|h| Hash(h.0)).collect())
            .map_err(|_| ProofError::Mismatch.into())
    }

    /// The consistency proof between the trees of sizes `size1` and `size2`
    /// (`1 <= size1 <= size2`; empty when the sizes are equal).
    ///
    /// # Errors
    ///
    /// [`ProofError::SizeOutOfOrder`], [`ProofError::EmptyOldTree`] or
    /// [`ProofError::SizeBeyondTree`].
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(size2)?;
        if size1 > size2 {
            return Err(ProofError::SizeOutOfOrder { size1, size2 }.into());
        }
        if size1 == 0 {
            return Err(ProofError::EmptyOldTree.into());
        }
        tlog_tiles::prove_tree(size2, size1, &self.stored)
            .map(|p| p.into_iter().map(|h| Hash(h.0)).collect())
            .map_err(|_| ProofError::Mismatch.into())
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.size {
            Err(ProofError::SizeBeyondTree {
                size,
                available: self.size,
            })
        } else {
            Ok(())
        }
    }
}

/// Verifies that `leaf_hash` is leaf number `index` of the tree of size
/// `size` with root `root`, given its inclusion proof.
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`], [`ProofError::ProofTooLong`] or
/// [`ProofError::Mismatch`].
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    if proof.len() > MAX_INCLUSION_PROOF {
        return Err(ProofError::ProofTooLong { len: proof.len() });
    }
    let p: Vec<tlog_tiles::Hash> = proof.iter().map(|h| h.to_tlog()).collect();
    tlog_tiles::check_record(&p, size, root.to_tlog(), index, leaf_hash.to_tlog())
        .map_err(|_| ProofError::Mismatch)
}

/// Verifies that the tree of size `size2` with root `root2` extends the tree
/// of size `size1` with root `root1`, given a consistency proof.
///
/// Equal sizes need an empty proof and equal roots (for size 0, both roots
/// must be [`EMPTY_ROOT`]); `size1 == 0 < size2` is rejected as
/// [`ProofError::EmptyOldTree`].
///
/// # Errors
///
/// [`ProofError::SizeOutOfOrder`], [`ProofError::EmptyOldTree`],
/// [`ProofError::ProofTooLong`] or [`ProofError::Mismatch`].
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizeOutOfOrder { size1, size2 });
    }
    if proof.len() > MAX_CONSISTENCY_PROOF {
        return Err(ProofError::ProofTooLong { len: proof.len() });
    }
    if size1 == 0 {
        if size2 != 0 {
            return Err(ProofError::EmptyOldTree);
        }
        return if proof.is_empty() && *root1 == EMPTY_ROOT && *root2 == EMPTY_ROOT {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    let p: Vec<tlog_tiles::Hash> = proof.iter().map(|h| h.to_tlog()).collect();
    tlog_tiles::check_tree(&p, size2, root2.to_tlog(), size1, root1.to_tlog())
        .map_err(|_| ProofError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| crate::leaf::leaf_hash(&i.to_be_bytes()))
            .collect()
    }

    #[test]
    fn builder_matches_tree() {
        let ls = leaves(70);
        let t = Tree::from_leaf_hashes(&ls);
        let mut b = TreeBuilder::new();
        assert_eq!(b.root(), EMPTY_ROOT);
        for (i, h) in ls.iter().enumerate() {
            b.push(*h);
            assert_eq!(b.root(), t.root_at(i as u64 + 1).unwrap(), "size {}", i + 1);
            assert_eq!(t.leaf_hash(i as u64), Some(*h));
        }
        assert_eq!(root_of(&ls), t.root());
    }

    /// The frontier-built consistency proof is the full tree's, for every pair of sizes up to
    /// 70, and verifies.
    #[test]
    fn frontier_consistency_proofs_are_the_trees() {
        let ls = leaves(70);
        let t = Tree::from_leaf_hashes(&ls);
        for old in 1..70u64 {
            let mut b = TreeBuilder::new();
            for h in &ls[..old as usize] {
                b.push(*h);
            }
            for new in old + 1..=70 {
                let proof = b.consistency_proof_to(&ls[old as usize..new as usize]);
                assert_eq!(
                    proof,
                    t.consistency_proof(old, new).unwrap(),
                    "{old} -> {new}"
                );
                verify_consistency(
                    old,
                    new,
                    &proof,
                    &t.root_at(old).unwrap(),
                    &t.root_at(new).unwrap(),
                )
                .unwrap();
            }
            assert!(b.consistency_proof_to(&[]).is_empty());
        }
        assert_eq!(largest_power_of_two_below(2), 1);
        assert_eq!(largest_power_of_two_below(8), 4);
        assert_eq!(largest_power_of_two_below(9), 8);
    }

    #[test]
    fn hash_encodings() {
        let h = crate::leaf::leaf_hash(b"");
        assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
        assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()).unwrap(), h);
        assert_eq!(Hash::from_base64(&h.to_base64()).unwrap(), h);
        assert!(Hash::from_base64("AAAA").is_err());
        assert!(Hash::from_hex("zz").is_err());
        assert_eq!(
            EMPTY_ROOT.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), h);
    }

    #[test]
    fn proof_errors() {
        let t = Tree::from_leaf_hashes(&leaves(5));
        assert!(t.inclusion_proof(5, 5).is_err());
        assert!(t.inclusion_proof(0, 6).is_err());
        assert!(t.consistency_proof(0, 5).is_err());
        assert!(t.consistency_proof(4, 3).is_err());
        assert_eq!(t.consistency_proof(5, 5).unwrap(), Vec::<Hash>::new());
    }
}
