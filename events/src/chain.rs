//! Tamper evidence: canonical bytes of an event, the SHA-256 hash chain, RFC 9162 Merkle tree
//! heads, and checkpoints signed with Ed25519.
//!
//! What must stay true:
//! - the canonical bytes of an event depend only on its stored fields, never on how a JSON
//!   library orders keys (objects are written with sorted keys, no spaces);
//! - `hash(n) = SHA-256(hash(n-1) || canonical(n))`, with 32 zero bytes before position 1;
//! - the Merkle leaves are the canonical bytes, hashed as RFC 9162 §2.1.1 says
//!   (`0x00 || leaf`, nodes `0x01 || left || right`);
//! - a checkpoint is a C2SP checkpoint note (c2sp.org/tlog-checkpoint: origin, size, base64
//!   root, then `chain` and `time` extension lines) with the log's Ed25519 note signature;
//!   checkpoints of earlier logs signed `dinh-checkpoint/v1\n{size}\n{root hex}\n{chain
//!   hex}\n{signed_at}\n` and still verify.

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
        self.push_hash(leaf_hash(leaf));
    }

    /// Add one leaf by its RFC 9162 leaf hash.
    pub fn push_hash(&mut self, leaf_hash: [u8; 32]) {
        let mut node = (0u32, leaf_hash);
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

    /// The root of the perfect subtree over leaves `lo..hi` (0-based, end excluded) when it
    /// is one of this frontier's nodes.
    pub fn subtree(&self, lo: u64, hi: u64) -> Option<[u8; 32]> {
        let mut start = 0u64;
        for &(h, root) in &self.nodes {
            // A frontier read back from the database is outside input: no shift overflow.
            let end = start.checked_add(1u64.checked_shl(h)?)?;
            if (start, end) == (lo, hi) {
                return Some(root);
            }
            start = end;
        }
        None
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
///
/// Two formats verify: the C2SP checkpoint note the hub signs now ([`Checkpoint::note`] set,
/// see [`crate::checkpoint`]), and the `dinh-checkpoint/v1` message of earlier logs (no note).
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
    /// The Ed25519 signature, hex: over the note text, or over [`Checkpoint::message`] for a
    /// checkpoint without a note.
    pub signature: String,
    /// The signed C2SP checkpoint note (text, blank line, the log's signature line, and any
    /// witness cosignature lines). Absent in `dinh-checkpoint/v1` checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Checkpoint {
    /// The bytes a `dinh-checkpoint/v1` checkpoint signs.
    pub fn message(tree_size: u64, root_hash: &str, chain_hash: &str, signed_at: &str) -> Vec<u8> {
        format!("dinh-checkpoint/v1\n{tree_size}\n{root_hash}\n{chain_hash}\n{signed_at}\n")
            .into_bytes()
    }

    /// Whether the log's signature is good for the key it names, and (for a note) whether the
    /// note says what the fields say.
    pub fn signature_ok(&self) -> bool {
        match &self.note {
            Some(note) => self.note_ok(note).is_ok(),
            None => {
                let (Ok(key), Ok(sig)) = (hex::decode(&self.key), hex::decode(&self.signature))
                else {
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
    }

    /// The origin line of a note checkpoint.
    pub fn origin(&self) -> Option<String> {
        let note = crate::note::Note::parse(self.note.as_ref()?.as_bytes()).ok()?;
        Some(
            crate::checkpoint::CheckpointText::parse(&note.text)
                .ok()?
                .origin,
        )
    }

    fn note_ok(&self, note: &str) -> Result<(), &'static str> {
        use crate::checkpoint::CheckpointText;
        use crate::note::{KeyType, Note, VerifierKey};
        let note = Note::parse(note.as_bytes()).map_err(|_| "malformed note")?;
        let body = CheckpointText::parse(&note.text).map_err(|_| "malformed checkpoint")?;
        let same = body.size == self.tree_size
            && hex::encode(body.root) == self.root_hash
            && body.chain().map(hex::encode).as_deref() == Some(self.chain_hash.as_str())
            && body.time() == Some(self.signed_at.as_str());
        if !same {
            return Err("the note and the fields differ");
        }
        let mut public = [0u8; 32];
        hex::decode_to_slice(&self.key, &mut public).map_err(|_| "bad key")?;
        let vkey = VerifierKey::new(&body.origin, KeyType::Ed25519, public);
        note.verify(&vkey).map(|_| ()).map_err(|_| "bad signature")
    }
}

/// An Ed25519 signing key: the record's (`record.key`), which signs checkpoints for the log
/// named by its origin, or a witness's (`witness.key`), which cosigns other logs'
/// checkpoints. PKCS#8 in a file of mode 0600.
pub struct Signer {
    pair: Ed25519KeyPair,
    origin: String,
}

/// Why a signing key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Check the path and its permissions.
    #[error("cannot read or write the key: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not an Ed25519 PKCS#8 key: restore it from backup.
    #[error("the key is not a valid Ed25519 key")]
    Invalid,
    /// Group or others may read the key file: `chmod 600` it (and keep its folder 0700).
    #[error("{0} is readable by other users: run chmod 600 on it")]
    Exposed(String),
    /// The record has events but its key is gone: signing with a new key would break every
    /// check of the old checkpoints. Restore the key (or mount the disk that holds it).
    #[error("the key {0} is missing but the record is not empty: restore it from backup")]
    Missing(String),
}

impl Signer {
    /// Load `path`, or create it (mode 0600) when missing.
    pub fn load_or_create(path: &std::path::Path) -> Result<Self, KeyError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                check_private(path)?;
                Self::from_pkcs8(&bytes)
            }
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

    /// Load `path`; create it only when `may_create` (a record with no events yet).
    pub fn load(path: &std::path::Path, may_create: bool) -> Result<Self, KeyError> {
        if !may_create && !path.exists() {
            return Err(KeyError::Missing(path.display().to_string()));
        }
        Self::load_or_create(path)
    }

    /// A key from PKCS#8 bytes.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(bytes).map_err(|_| KeyError::Invalid)?;
        let origin = default_origin(pair.public_key().as_ref());
        Ok(Self { pair, origin })
    }

    /// The key of a 32-byte Ed25519 seed (reproducible tests and fuzzing).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| KeyError::Invalid)?;
        let origin = default_origin(pair.public_key().as_ref());
        Ok(Self { pair, origin })
    }

    /// A fresh key held only in memory (tests, benchmarks).
    pub fn ephemeral() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system RNG works");
        Self::from_pkcs8(doc.as_ref()).expect("a key just generated is valid")
    }

    /// The same key signing for the log named `origin` (the checkpoint's first line and the
    /// signature's key name). Without it, `dinh.local/record-` and 16 hex digits of the key.
    pub fn with_origin(mut self, origin: &str) -> Self {
        if !origin.trim().is_empty() {
            origin.trim().clone_into(&mut self.origin);
        }
        self
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Public key, hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// Public key bytes.
    pub fn public(&self) -> [u8; 32] {
        to32(self.pair.public_key().as_ref())
    }

    /// The verifier key (`name+id+key`) of this key under `name` for signatures of `kind`.
    pub fn verifier_key(&self, name: &str, kind: crate::note::KeyType) -> crate::note::VerifierKey {
        crate::note::VerifierKey::new(name, kind, self.public())
    }

    /// The log's verifier key: its origin and this key, type Ed25519.
    pub fn log_vkey(&self) -> crate::note::VerifierKey {
        self.verifier_key(&self.origin, crate::note::KeyType::Ed25519)
    }

    /// A signature line of `name` over a note's `text` (type 0x01).
    pub fn sign_note_line(&self, name: &str, text: &str) -> String {
        let id = crate::note::key_id(name, crate::note::KeyType::Ed25519, &self.public());
        crate::note::NoteSignature {
            name: name.to_owned(),
            key_id: id,
            signature: self.pair.sign(text.as_bytes()).as_ref().to_vec(),
        }
        .line()
    }

    /// A `cosignature/v1` line of `name` over a checkpoint's `text` at `timestamp` (seconds
    /// since the epoch), as c2sp.org/tlog-cosignature specifies.
    pub fn cosign_line(&self, name: &str, text: &str, timestamp: u64) -> String {
        let id = crate::note::key_id(name, crate::note::KeyType::Cosignature, &self.public());
        let sig = self
            .pair
            .sign(&crate::note::cosignature_message(timestamp, text));
        let mut signature = timestamp.to_be_bytes().to_vec();
        signature.extend_from_slice(sig.as_ref());
        crate::note::NoteSignature {
            name: name.to_owned(),
            key_id: id,
            signature,
        }
        .line()
    }

    /// Sign a tree head as a C2SP checkpoint note of this key's origin, with the chain hash
    /// and the time as extension lines.
    pub fn sign(
        &self,
        tree_size: u64,
        root: &[u8; 32],
        chain: &[u8; 32],
        signed_at: &str,
    ) -> Checkpoint {
        let text = crate::checkpoint::CheckpointText::new(
            &self.origin,
            tree_size,
            *root,
            *chain,
            signed_at,
        )
        .to_text();
        let sig = self.pair.sign(text.as_bytes());
        let line = self.sign_note_line(&self.origin, &text);
        Checkpoint {
            tree_size,
            root_hash: hex::encode(root),
            chain_hash: hex::encode(chain),
            signed_at: signed_at.to_owned(),
            key: self.public_hex(),
            signature: hex::encode(sig.as_ref()),
            note: Some(format!("{text}\n{line}")),
        }
    }

    /// Sign a tree head in the `dinh-checkpoint/v1` format of earlier logs (tests of the
    /// older format only).
    pub fn sign_v1(
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
            note: None,
        }
    }
}

/// `dinh.local/record-` and the first 16 hex digits of SHA-256 of the public key: stable for
/// as long as the key is, and unique among communes without any setting.
pub fn default_origin(public: &[u8]) -> String {
    let d = ring::digest::digest(&SHA256, public);
    format!("dinh.local/record-{}", &hex::encode(d.as_ref())[..16])
}

/// Refuse a key file that group or others may read.
fn check_private(path: &std::path::Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed(path.display().to_string()));
        }
    }
    let _ = path;
    Ok(())
}

/// Write a new file (refused if it exists) readable by its owner only, and sync it.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
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
