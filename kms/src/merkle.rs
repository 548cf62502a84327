//! The audit log's Merkle tree, as RFC 9162 (Certificate Transparency 2.0) §2.1 defines it.
//!
//! A leaf is `SHA-256(0x00 ‖ entry)`, an interior node `SHA-256(0x01 ‖ left ‖ right)`, and the
//! tree over `n` leaves splits at the largest power of two below `n` (the RFC's MTH), so every
//! tree size has one root. Kept apart from the store because it is pure arithmetic over hashes,
//! shared by the writer (the [`Frontier`] extends the root in O(log n) per entry), the CLI (proofs
//! from one pass over the stored leaves) and the offline checker (the RFC's verification
//! algorithms, on untrusted proofs).

use std::ops::Range;

use sha2::{Digest, Sha256};

/// A SHA-256 output: a leaf, a node or a root.
pub type Hash = [u8; 32];

/// The longest audit path of any tree whose size fits a `u64`.
pub(crate) const MAX_INCLUSION_PATH: usize = 64;

/// The longest consistency path of any tree whose size fits a `u64` (one node per level, plus
/// the old root's own node).
pub(crate) const MAX_CONSISTENCY_PATH: usize = 65;

/// The root of the empty tree: `SHA-256()`.
pub(crate) fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The hash of a leaf holding `entry`: `SHA-256(0x00 ‖ entry)`.
pub(crate) fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub(crate) fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (the RFC's `k`), for `n >= 2`.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The roots of the perfect subtrees that make up a tree, largest first: one per set bit of its
/// size. Appending a leaf merges equal-sized subtrees like a binary counter, so it costs
/// O(log n) hashes at worst and one on average, and the root is O(log n) away at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// How many leaves the tree has.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub(crate) fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            // A set low bit means the last node is a perfect subtree of the same height.
            let Some(left) = self.nodes.pop() else { break };
            node = node_hash(&left, &node);
            size >>= 1;
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The tree's root (MTH): the subtrees folded from the right.
    pub(crate) fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |right, left| node_hash(left, &right))
    }

    /// The frontier as bytes: the size (8 bytes, big-endian), then the subtree roots.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.nodes.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for n in &self.nodes {
            out.extend_from_slice(n);
        }
        out
    }

    /// Reads [`Frontier::encode`]'s bytes; None unless they are exactly a frontier.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let (size, rest) = bytes.split_first_chunk::<8>()?;
        let size = u64::from_be_bytes(*size);
        let (nodes, tail) = rest.as_chunks::<32>();
        let count = usize::try_from(size.count_ones()).ok()?;
        if !tail.is_empty() || nodes.len() != count {
            return None;
        }
        Some(Self {
            size,
            nodes: nodes.to_vec(),
        })
    }
}

/// The leaf ranges whose subtree hashes make up the audit path of leaf `index` in a tree of
/// `size` leaves, in the path's order (RFC 9162 §2.1.3.1, `PATH(m, D[n])`). None unless
/// `index < size`.
pub(crate) fn inclusion_ranges(index: u64, size: u64) -> Option<Vec<Range<u64>>> {
    fn path(m: u64, lo: u64, hi: u64, out: &mut Vec<Range<u64>>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m - lo < k {
            path(m, lo, lo + k, out);
            out.push(lo + k..hi);
        } else {
            path(m, lo + k, hi, out);
            out.push(lo..lo + k);
        }
    }
    if index >= size {
        return None;
    }
    let mut out = Vec::new();
    path(index, 0, size, &mut out);
    Some(out)
}

/// The leaf ranges whose subtree hashes make up the consistency proof from a tree of `old`
/// leaves to one of `new` leaves, in the proof's order (RFC 9162 §2.1.4.1, `PROOF(m, D[n])`).
/// Empty when `old` is 0 or equals `new` (nothing to prove); None when `old > new`.
pub(crate) fn consistency_ranges(old: u64, new: u64) -> Option<Vec<Range<u64>>> {
    fn subproof(m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<Range<u64>>) {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push(lo..hi);
            }
            return;
        }
        let k = split(n);
        if m <= k {
            subproof(m, lo, lo + k, whole, out);
            out.push(lo + k..hi);
        } else {
            subproof(m - k, lo + k, hi, false, out);
            out.push(lo..lo + k);
        }
    }
    if old > new {
        return None;
    }
    let mut out = Vec::new();
    if old > 0 {
        subproof(old, 0, new, true, &mut out);
    }
    Some(out)
}

/// Hashes disjoint leaf ranges (and the whole tree) in one pass over the leaves in order, so a
/// proof over a stored log needs O(log n) memory whatever the log's size.
#[derive(Debug)]
pub(crate) struct RangeHasher {
    /// (range, its position in the caller's order), by start.
    ranges: Vec<(Range<u64>, usize)>,
    /// The next range of `ranges` to fill.
    next: usize,
    /// The range being filled.
    current: Frontier,
    hashes: Vec<Option<Hash>>,
    whole: Frontier,
}

impl RangeHasher {
    /// A hasher for `ranges`, which must not overlap (those of [`inclusion_ranges`] and
    /// [`consistency_ranges`] do not).
    pub(crate) fn new(ranges: &[Range<u64>]) -> Self {
        let mut by_start: Vec<_> = ranges.iter().cloned().zip(0..).collect();
        by_start.sort_by_key(|(r, _)| r.start);
        Self {
            ranges: by_start,
            next: 0,
            current: Frontier::new(),
            hashes: vec![None; ranges.len()],
            whole: Frontier::new(),
        }
    }

    /// Takes the next leaf (leaf number [`RangeHasher::size`]).
    pub(crate) fn push(&mut self, leaf: Hash) {
        let index = self.whole.size();
        self.whole.push(leaf);
        let Some((range, position)) = self.ranges.get(self.next) else {
            return;
        };
        if !range.contains(&index) {
            return;
        }
        self.current.push(leaf);
        if index + 1 == range.end {
            if let Some(slot) = self.hashes.get_mut(*position) {
                *slot = Some(self.current.root());
            }
            self.current = Frontier::new();
            self.next += 1;
        }
    }

    /// How many leaves it has taken.
    pub(crate) fn size(&self) -> u64 {
        self.whole.size()
    }

    /// The tree over every leaf taken so far.
    pub(crate) fn tree(&self) -> &Frontier {
        &self.whole
    }

    /// Every range's hash in the caller's order, or None if a range was not complete.
    pub(crate) fn finish(self) -> Option<Vec<Hash>> {
        self.hashes.into_iter().collect()
    }
}

/// The root an audit path leads to from `leaf` at `index` in a tree of `size` leaves: RFC 9162
/// §2.1.3.2 steps 1 to 4, with step 5's `sn == 0` check. None if the path cannot be an audit
/// path for that position (wrong length, index out of range).
pub(crate) fn root_from_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// Whether `path` proves `leaf` is leaf `index` of the tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2).
pub(crate) fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> bool {
    root_from_inclusion(leaf, index, size, path).is_some_and(|r| r == *root)
}

/// Whether `path` proves the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2 for `0 < old_size < new_size`).
/// Equal sizes need an empty path and equal roots; the empty tree is extended by any tree (with
/// an empty path); a larger old tree is never extended.
pub(crate) fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return path.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return path.is_empty() && *old_root == empty_root();
    }
    // Step 1.
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    // Step 2: a power-of-two old tree is a node of the new one; its root starts the path.
    let (start, rest) = if old_size.is_power_of_two() {
        (old_root, path)
    } else {
        (first, rest)
    };
    // Steps 3 and 4.
    let mut f = old_size - 1;
    let mut s = new_size - 1;
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Step 5.
    let mut fr = *start;
    let mut sr = *start;
    // Step 6.
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 7.
    fr == *old_root && sr == *new_root && s == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH exactly as RFC 9162 §2.1.1 writes it, over the leaves' contents.
    fn mth(d: &[Vec<u8>]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => leaf_hash(&d[0]),
            n => {
                let k = usize::try_from(split(n as u64)).unwrap();
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    /// PATH(m, D[n]), RFC 9162 §2.1.3.1.
    fn naive_path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = usize::try_from(split(n as u64)).unwrap();
        if m < k {
            let mut p = naive_path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = naive_path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    /// SUBPROOF(m, D[n], b), RFC 9162 §2.1.4.1.
    fn naive_subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { Vec::new() } else { vec![mth(d)] };
        }
        let k = usize::try_from(split(n as u64)).unwrap();
        if m <= k {
            let mut p = naive_subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = naive_subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn leaves(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
    }

    /// The hashes of `ranges` over `d`, through one [`RangeHasher`] pass.
    fn hash_ranges(d: &[Vec<u8>], ranges: &[Range<u64>]) -> (Vec<Hash>, Hash) {
        let mut h = RangeHasher::new(ranges);
        for x in d {
            h.push(leaf_hash(x));
        }
        let root = h.tree().root();
        (h.finish().unwrap(), root)
    }

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        let cases = [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ];
        for (n, k) in cases {
            assert_eq!(split(n), k, "{n}");
        }
        assert_eq!(split(u64::MAX), 1 << 63);
    }

    /// The tree of the RFC 6962 reference implementation's test data (certificate-transparency
    /// `merkle_tree_test`): its roots for sizes 1 to 8, and the empty tree's.
    #[test]
    fn known_roots() {
        let data: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        assert_eq!(
            hex::encode(Frontier::new().root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut f = Frontier::new();
        for (d, root) in data.iter().zip(roots) {
            f.push(leaf_hash(d));
            assert_eq!(hex::encode(f.root()), root, "size {}", f.size());
        }
    }

    #[test]
    fn frontier_root_is_mth_for_every_size_and_survives_encoding() {
        let d = leaves(300);
        let mut f = Frontier::new();
        assert_eq!(f.root(), mth(&[]));
        for n in 1..=d.len() {
            f.push(leaf_hash(&d[n - 1]));
            assert_eq!(f.size(), n as u64);
            assert_eq!(f.root(), mth(&d[..n]), "size {n}");
            assert_eq!(Frontier::decode(&f.encode()).as_ref(), Some(&f));
        }
        let bytes = f.encode();
        assert_eq!(Frontier::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(
            Frontier::decode(&[bytes.as_slice(), &[0; 32]].concat()),
            None
        );
        assert_eq!(Frontier::decode(&[0; 7]), None);
        assert_eq!(Frontier::decode(&1u64.to_be_bytes()), None);
        assert_eq!(Frontier::decode(&0u64.to_be_bytes()), Some(Frontier::new()));
    }

    #[test]
    fn inclusion_proofs_are_the_rfcs_and_verify_for_sizes_1_to_40() {
        let all = leaves(40);
        for n in 1..=all.len() {
            let d = &all[..n];
            let root = mth(d);
            for m in 0..n {
                let ranges = inclusion_ranges(m as u64, n as u64).unwrap();
                let (path, whole) = hash_ranges(d, &ranges);
                assert_eq!(whole, root);
                assert_eq!(path, naive_path(m, d), "PATH({m}, D[{n}])");
                let leaf = leaf_hash(&d[m]);
                let (m64, n64) = (m as u64, n as u64);
                assert!(
                    verify_inclusion(&leaf, m64, n64, &path, &root),
                    "{m} in {n}"
                );
                // Anything changed fails: the leaf, its index, the path, the root. (A path can
                // fit several sizes: the root commits to the size, so a signed head signs both.)
                assert!(!verify_inclusion(&leaf_hash(b"x"), m64, n64, &path, &root));
                if n > 1 {
                    let other = (m + 1) % n;
                    assert!(!verify_inclusion(&leaf, other as u64, n64, &path, &root));
                }
                assert!(!verify_inclusion(&leaf, m64, m64, &path, &root));
                for i in 0..path.len() {
                    let mut bad = path.clone();
                    bad[i][0] ^= 1;
                    assert!(!verify_inclusion(&leaf, m64, n64, &bad, &root));
                    assert!(!verify_inclusion(&leaf, m64, n64, &path[..i], &root));
                }
                let mut longer = path.clone();
                longer.push(root);
                assert!(!verify_inclusion(&leaf, m64, n64, &longer, &root));
                let mut bad_root = root;
                bad_root[31] ^= 1;
                assert!(!verify_inclusion(&leaf, m64, n64, &path, &bad_root));
            }
            assert_eq!(inclusion_ranges(n as u64, n as u64), None);
        }
    }

    #[test]
    fn consistency_proofs_are_the_rfcs_and_verify_for_sizes_1_to_40() {
        let all = leaves(40);
        for n in 1..=all.len() {
            let d = &all[..n];
            let new_root = mth(d);
            for m in 1..=n {
                let ranges = consistency_ranges(m as u64, n as u64).unwrap();
                let (proof, whole) = hash_ranges(d, &ranges);
                assert_eq!(whole, new_root);
                assert_eq!(proof, naive_subproof(m, d, true), "PROOF({m}, D[{n}])");
                let old_root = mth(&d[..m]);
                let (m64, n64) = (m as u64, n as u64);
                assert!(
                    verify_consistency(m64, n64, &old_root, &new_root, &proof),
                    "{m}→{n}"
                );
                // A different old tree, new tree or path fails.
                let other_old = mth(&[&d[..m - 1], &[b"x".to_vec()][..]].concat());
                assert!(!verify_consistency(m64, n64, &other_old, &new_root, &proof));
                let mut other_new = new_root;
                other_new[0] ^= 1;
                assert!(!verify_consistency(m64, n64, &old_root, &other_new, &proof));
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i][5] ^= 1;
                    assert!(!verify_consistency(m64, n64, &old_root, &new_root, &bad));
                    assert!(!verify_consistency(
                        m64,
                        n64,
                        &old_root,
                        &new_root,
                        &proof[..i]
                    ));
                }
                let mut longer = proof.clone();
                longer.push(new_root);
                assert!(!verify_consistency(m64, n64, &old_root, &new_root, &longer));
            }
            // From the empty tree: always consistent, with nothing to prove.
            assert_eq!(consistency_ranges(0, n as u64), Some(Vec::new()));
            assert!(verify_consistency(
                0,
                n as u64,
                &empty_root(),
                &new_root,
                &[]
            ));
            assert!(!verify_consistency(0, n as u64, &new_root, &new_root, &[]));
            // A tree never extends a larger one.
            assert_eq!(consistency_ranges(n as u64 + 1, n as u64), None);
            assert!(!verify_consistency(
                n as u64 + 1,
                n as u64,
                &new_root,
                &new_root,
                &[]
            ));
        }
    }

    #[test]
    fn verification_survives_extreme_sizes() {
        let leaf = leaf_hash(b"x");
        let path = vec![leaf; MAX_INCLUSION_PATH + 1];
        assert!(!verify_inclusion(
            &leaf,
            u64::MAX - 1,
            u64::MAX,
            &path,
            &leaf
        ));
        assert!(!verify_inclusion(&leaf, 0, u64::MAX, &[], &leaf));
        assert!(!verify_consistency(1, u64::MAX, &leaf, &leaf, &path));
        assert!(!verify_consistency(
            u64::MAX - 1,
            u64::MAX,
            &leaf,
            &leaf,
            &path
        ));
        assert!(!verify_consistency(1 << 63, u64::MAX, &leaf, &leaf, &[]));
    }
}
