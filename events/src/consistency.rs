//! RFC 9162 (§2.1.4) Merkle consistency proofs: that a tree of `new` leaves extends a tree of
//! `old` leaves, proved with at most about `2 log2(new)` hashes.
//!
//! The prover needs no stored tree: every node of a proof is either a perfect subtree of the
//! old tree's decomposition (its [`Frontier`], which the log keeps with each checkpoint) or
//! lies wholly among the leaves added since (`old..new`), which the log reads anyway to sign.
//! So a proof costs hashing the new leaves once.

use crate::chain::{node_hash, Frontier};

/// Most hashes a proof may have (c2sp.org/tlog-witness: at most 63 lines).
pub const MAX_PROOF_HASHES: usize = 63;

/// Why a proof could not be made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The sizes do not allow a proof (old beyond new, or a frontier of another size).
    #[error("no consistency proof from {old} to {new} leaves: {why}")]
    Sizes {
        /// Old tree size.
        old: u64,
        /// New tree size.
        new: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// The proof does not lead from the old root to the new one: the trees are not
    /// consistent (a rewritten or truncated log), or the proof is damaged.
    #[error("the consistency proof does not verify")]
    Invalid,
}

/// MTH over leaf hashes (RFC 9162 §2.1.1, with the leaves already hashed).
pub fn root_of(leaf_hashes: &[[u8; 32]]) -> [u8; 32] {
    match leaf_hashes.len() {
        0 => Frontier::default().root(),
        1 => leaf_hashes[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root_of(&leaf_hashes[..k]), &root_of(&leaf_hashes[k..]))
        }
    }
}

/// The largest power of two smaller than `n` (n >= 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The proof that the tree of `old_frontier.size()` leaves is a prefix of the tree extended
/// by `new_leaves` (leaf hashes of positions `old+1..=new`).
pub fn prove(
    old_frontier: &Frontier,
    new_leaves: &[[u8; 32]],
) -> Result<Vec<[u8; 32]>, ProofError> {
    let old = old_frontier.size();
    let new = old + new_leaves.len() as u64;
    let mut out = Vec::new();
    if old == 0 || old == new {
        return Ok(out);
    }
    let hash = |lo: u64, hi: u64| -> Result<[u8; 32], ProofError> {
        if hi <= old {
            old_frontier.subtree(lo, hi).ok_or(ProofError::Sizes {
                old,
                new,
                why: "a node of the old tree is not in its frontier",
            })
        } else if lo >= old {
            Ok(root_of(
                &new_leaves[(lo - old) as usize..(hi - old) as usize],
            ))
        } else {
            Err(ProofError::Sizes {
                old,
                new,
                why: "a node spans the old tree's end",
            })
        }
    };
    subproof(old, 0, new, true, &mut out, &hash)?;
    Ok(out)
}

/// RFC 9162 §2.1.4.1 SUBPROOF(m, D[lo:hi], b).
fn subproof(
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<[u8; 32]>,
    hash: &impl Fn(u64, u64) -> Result<[u8; 32], ProofError>,
) -> Result<(), ProofError> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(hash(lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(m, lo, lo + k, whole, out, hash)?;
        out.push(hash(lo + k, hi)?);
    } else {
        subproof(m - k, lo + k, hi, false, out, hash)?;
        out.push(hash(lo, lo + k)?);
    }
    Ok(())
}

/// Check that `proof` proves the tree (`old`, `old_root`) is a prefix of (`new`, `new_root`)
/// (RFC 9162 §2.1.4.2). A tree of size 0 is a prefix of every tree, with an empty proof.
pub fn verify(
    old: u64,
    new: u64,
    old_root: &[u8; 32],
    new_root: &[u8; 32],
    proof: &[[u8; 32]],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::Sizes {
            old,
            new,
            why: "the old tree is larger",
        });
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::Invalid);
    }
    if old == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::Invalid)
        };
    }
    if old == new {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::Invalid)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::Invalid);
    }
    let mut path: Vec<[u8; 32]> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return Err(ProofError::Invalid);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if fr == *old_root && sr == *new_root && s == 0 {
        Ok(())
    } else {
        Err(ProofError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::leaf_hash;

    fn h(s: &str) -> [u8; 32] {
        let mut out = [0; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// The leaves of the RFC 6962 test tree used by certificate-transparency and
    /// transparency-dev/merkle.
    fn vector_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|x| hex::decode(x).unwrap())
        .collect()
    }

    fn frontier(leaves: &[Vec<u8>]) -> Frontier {
        let mut f = Frontier::default();
        for l in leaves {
            f.push(l);
        }
        f
    }

    fn proof_for(leaves: &[Vec<u8>], old: usize) -> Vec<[u8; 32]> {
        let hashes: Vec<[u8; 32]> = leaves[old..].iter().map(|l| leaf_hash(l)).collect();
        prove(&frontier(&leaves[..old]), &hashes).unwrap()
    }

    #[test]
    fn known_vectors_of_the_rfc_6962_test_tree() {
        let leaves = vector_leaves();
        assert_eq!(
            hex::encode(frontier(&leaves).root()),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        let cases: [(usize, usize, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let want: Vec<[u8; 32]> = want.iter().map(|x| h(x)).collect();
            assert_eq!(proof_for(&leaves[..new], old), want, "{old} -> {new}");
            let (r1, r2) = (
                frontier(&leaves[..old]).root(),
                frontier(&leaves[..new]).root(),
            );
            verify(old as u64, new as u64, &r1, &r2, &want).unwrap();
        }
    }

    #[test]
    fn every_pair_up_to_70_leaves_proves_and_verifies() {
        let leaves: Vec<Vec<u8>> = (0..70u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let roots: Vec<[u8; 32]> = (0..=leaves.len())
            .map(|n| frontier(&leaves[..n]).root())
            .collect();
        for new in 1..=leaves.len() {
            let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l)).collect();
            assert_eq!(root_of(&hashes[..new]), roots[new]);
            for old in 0..=new {
                let p = proof_for(&leaves[..new], old);
                verify(old as u64, new as u64, &roots[old], &roots[new], &p)
                    .unwrap_or_else(|e| panic!("{old} -> {new}: {e}"));
            }
        }
    }

    #[test]
    fn a_changed_leaf_or_proof_hash_does_not_verify() {
        let leaves: Vec<Vec<u8>> = (0..13u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut forged = leaves.clone();
        forged[3] = b"changed".to_vec();
        for old in 1..13 {
            let p = proof_for(&forged, old);
            let old_root = frontier(&leaves[..old]).root();
            let new_root = frontier(&forged).root();
            // The old tree had the original leaf 3: only trees before it stay consistent.
            let r = verify(old as u64, 13, &old_root, &new_root, &p);
            assert_eq!(r.is_ok(), old <= 3, "old size {old}");
            let mut p = proof_for(&leaves, old);
            let good = frontier(&leaves).root();
            if let Some(first) = p.first_mut() {
                first[0] ^= 1;
                assert_eq!(
                    verify(old as u64, 13, &old_root, &good, &p),
                    Err(ProofError::Invalid)
                );
            }
        }
    }

    #[test]
    fn edge_sizes() {
        let r = [1u8; 32];
        assert!(verify(0, 5, &Frontier::default().root(), &r, &[]).is_ok());
        assert_eq!(verify(0, 5, &r, &r, &[r]), Err(ProofError::Invalid));
        assert!(verify(5, 5, &r, &r, &[]).is_ok());
        assert_eq!(verify(5, 5, &r, &[2; 32], &[]), Err(ProofError::Invalid));
        assert!(matches!(
            verify(6, 5, &r, &r, &[]),
            Err(ProofError::Sizes { .. })
        ));
        assert_eq!(verify(3, 5, &r, &r, &[]), Err(ProofError::Invalid));
        assert_eq!(verify(3, 5, &r, &r, &[r; 64]), Err(ProofError::Invalid));
    }
}
