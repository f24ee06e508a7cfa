//! Tamper evidence: canonical bytes of an event, the SHA-256 hash chain, RFC 9162 Merkle tree
//! heads, and checkpoints signed with Ed25519.
//!
//! What must stay true:
//! - the canonical bytes of an event depend only on its stored fields, never on how a JSON
//!   library orders keys (objects are written with sorted keys, no spaces);
//! - `hash(n) = SHA-256(hash(n-1) || canonical(n))`, with 32 zero bytes before position 1;
//! - the Merkle leaves are the canonical bytes, hashed as RFC 9162 §2.1.1 says
//!   (`0x00 || leaf`, nodes `0x01 || left || right`);
//! - a checkpoint signs `dinh-checkpoint/v1\n{tree_size}\n{root hex}\n{signed_at}\n`.

use ring::digest::{Context, SHA256};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event as the log holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Global position, from 1, gap-free, in commit order.
    pub position: u64,
    /// `meeting` or `feedback`.
    pub aggregate_type: String,
    /// The meeting's or item's id.
    pub aggregate_id: String,
    /// Position within the aggregate, from 1.
    pub sequence: u64,
    /// Event name, e.g. `FloorGranted`.
    pub event_type: String,
    /// Version of that event's shape.
    pub event_version: String,
    /// Unique id of this event.
    pub event_id: String,
    /// The command that caused it, when the client gave one.
    pub command_id: Option<String>,
    /// `role:id` of who issued the command.
    pub actor: String,
    /// When (RFC 3339, UTC).
    pub recorded_at: String,
    /// The event's fields.
    pub payload: Value,
    /// SHA-256 chain hash, hex.
    pub hash: String,
}

/// Write `v` as JSON with object keys sorted and no whitespace.
pub fn canonical_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String((*k).clone()).to_string().as_bytes());
                out.push(b':');
                canonical_json(&map[*k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

impl StoredEvent {
    /// The bytes that are hashed and that form the Merkle leaf.
    pub fn canonical(&self) -> Vec<u8> {
        let v = serde_json::json!({
            "position": self.position,
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
            "sequence": self.sequence,
            "event_type": self.event_type,
            "event_version": self.event_version,
            "event_id": self.event_id,
            "command_id": self.command_id,
            "actor": self.actor,
            "recorded_at": self.recorded_at,
            "payload": self.payload,
        });
        let mut out = Vec::with_capacity(256);
        canonical_json(&v, &mut out);
        out
    }

    /// The chain hash of this event after `prev` (the previous event's hash).
    pub fn chain_hash(&self, prev: &[u8; 32]) -> [u8; 32] {
        chain_hash(prev, &self.canonical())
    }
}

/// `SHA-256(prev || canonical)`.
pub fn chain_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(prev);
    ctx.update(canonical);
    to32(ctx.finish().as_ref())
}

fn to32(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(b);
    out
}

/// RFC 9162 leaf hash.
pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0]);
    ctx.update(leaf);
    to32(ctx.finish().as_ref())
}

/// RFC 9162 interior node hash.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[1]);
    ctx.update(left);
    ctx.update(right);
    to32(ctx.finish().as_ref())
}

/// The right edge of a Merkle tree being built leaf by leaf: the roots of its perfect
/// subtrees, largest first. Appending is O(log n); the root needs no other leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frontier {
    size: u64,
    /// (height, root) of each perfect subtree, largest first.
    nodes: Vec<(u32, [u8; 32])>,
}

impl Frontier {
    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Add one leaf (its raw bytes).
    pub fn push(&mut self, leaf: &[u8]) {
        let mut node = (0u32, leaf_hash(leaf));
        while let Some(&(h, left)) = self.nodes.last() {
            if h != node.0 {
                break;
            }
            self.nodes.pop();
            node = (h + 1, node_hash(&left, &node.1));
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The tree head: RFC 9162 MTH over every leaf pushed (SHA-256 of nothing when empty).
    pub fn root(&self) -> [u8; 32] {
        let mut it = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return to32(ring::digest::digest(&SHA256, b"").as_ref());
        };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// A signed tree head over the first `tree_size` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Events covered: positions 1 to `tree_size`.
    pub tree_size: u64,
    /// Merkle tree head, hex.
    pub root_hash: String,
    /// The chain hash of the event at `tree_size`, hex: ties the checkpoint to the chain.
    pub chain_hash: String,
    /// When it was signed (RFC 3339).
    pub signed_at: String,
    /// Ed25519 public key that signed it, hex.
    pub key: String,
    /// Signature over [`Checkpoint::message`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// The signed bytes.
    pub fn message(tree_size: u64, root_hash: &str, chain_hash: &str, signed_at: &str) -> Vec<u8> {
        format!("dinh-checkpoint/v1\n{tree_size}\n{root_hash}\n{chain_hash}\n{signed_at}\n")
            .into_bytes()
    }

    /// Whether the signature is good for the key it names.
    pub fn signature_ok(&self) -> bool {
        let (Ok(key), Ok(sig)) = (hex::decode(&self.key), hex::decode(&self.signature)) else {
            return false;
        };
        let msg = Self::message(
            self.tree_size,
            &self.root_hash,
            &self.chain_hash,
            &self.signed_at,
        );
        UnparsedPublicKey::new(&ED25519, key)
            .verify(&msg, &sig)
            .is_ok()
    }
}

/// The record's Ed25519 signing key, kept in the data folder (`record.key`, PKCS#8, mode 0600).
pub struct Signer {
    pair: Ed25519KeyPair,
}

/// Why a signing key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Check the path and its permissions.
    #[error("cannot read or write the record key: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not an Ed25519 PKCS#8 key: restore it from backup.
    #[error("the record key is not a valid Ed25519 key")]
    Invalid,
}

impl Signer {
    /// Load `path`, or create it (mode 0600) when missing.
    pub fn load_or_create(path: &std::path::Path) -> Result<Self, KeyError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_pkcs8(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = ring::rand::SystemRandom::new();
                let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Invalid)?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                write_private(path, doc.as_ref())?;
                Self::from_pkcs8(doc.as_ref())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A key from PKCS#8 bytes.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self, KeyError> {
        Ed25519KeyPair::from_pkcs8(bytes)
            .map(|pair| Self { pair })
            .map_err(|_| KeyError::Invalid)
    }

    /// A fresh key held only in memory (tests, benchmarks).
    pub fn ephemeral() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system RNG works");
        Self::from_pkcs8(doc.as_ref()).expect("a key just generated is valid")
    }

    /// Public key, hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// Sign a tree head.
    pub fn sign(
        &self,
        tree_size: u64,
        root: &[u8; 32],
        chain: &[u8; 32],
        signed_at: &str,
    ) -> Checkpoint {
        let root_hash = hex::encode(root);
        let chain_hash = hex::encode(chain);
        let sig = self.pair.sign(&Checkpoint::message(
            tree_size,
            &root_hash,
            &chain_hash,
            signed_at,
        ));
        Checkpoint {
            tree_size,
            root_hash,
            chain_hash,
            signed_at: signed_at.to_owned(),
            key: self.public_hex(),
            signature: hex::encode(sig.as_ref()),
        }
    }
}

/// Write a file readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9162 §2.1.1 MTH, written straight from its recursive definition.
    fn mth(leaves: &[Vec<u8>]) -> [u8; 32] {
        match leaves.len() {
            0 => to32(ring::digest::digest(&SHA256, b"").as_ref()),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = (n - 1).next_power_of_two().max(1);
                let k = if k >= n { k / 2 } else { k };
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn frontier_root_matches_the_rfc_definition() {
        let mut f = Frontier::default();
        let mut leaves = Vec::new();
        assert_eq!(f.root(), mth(&leaves));
        for i in 0..70u32 {
            let leaf = format!("leaf {i}").into_bytes();
            f.push(&leaf);
            leaves.push(leaf);
            assert_eq!(f.root(), mth(&leaves), "size {}", i + 1);
        }
    }

    #[test]
    fn known_vector_for_one_empty_leaf() {
        // SHA-256 of the single byte 0x00, from sha256sum.
        let mut f = Frontier::default();
        f.push(b"");
        assert_eq!(
            hex::encode(f.root()),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"z":null,"y":"é"}],"c":true}}"#).unwrap();
        let mut out = Vec::new();
        canonical_json(&v, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":{"c":true,"d":[1,{"y":"é","z":null}]},"b":1}"#
        );
    }

    #[test]
    fn a_checkpoint_signature_breaks_when_anything_changes() {
        let s = Signer::ephemeral();
        let cp = s.sign(10, &[7; 32], &[9; 32], "2026-11-21T00:00:00Z");
        assert!(cp.signature_ok());
        let mut bad = cp.clone();
        bad.tree_size = 11;
        assert!(!bad.signature_ok());
        let mut bad = cp.clone();
        bad.root_hash = hex::encode([8; 32]);
        assert!(!bad.signature_ok());
        let mut bad = cp;
        bad.key = Signer::ephemeral().public_hex();
        assert!(!bad.signature_ok());
    }
}
