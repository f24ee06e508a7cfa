//! A transparency-log witness (c2sp.org/tlog-witness) as a pure core, and the log's side of
//! the protocol. No IO and no clock: the driver (`dinh witness`, or `/witness` of
//! `dinh serve`) passes the time, loads what the witness holds for the log and stores the
//! result; [`crate::witness_store`] keeps it.
//!
//! What must stay true:
//! - a witness cosigns a checkpoint only if the log's trusted key signed it and it is
//!   consistent (RFC 9162 proof) with the checkpoint it cosigned last for that origin: a
//!   rewritten log or a rolled-back one never gets a cosignature;
//! - checking `old` against what is held and storing the new checkpoint happen atomically
//!   (the driver holds one lock across [`Witness::add_checkpoint`] and the store's
//!   compare-and-swap), or a late request could roll the witness back;
//! - the answers are the specification's: 404 unknown origin, 403 no or bad log signature,
//!   400 `old` beyond the size, 409 stale `old` (body: the held size), 422 inconsistent;
//! - cosignature timestamps never go backwards for a log.
//!
//! A request body (`POST <prefix>/add-checkpoint`):
//!
//! ```text
//! old 1000
//! <base64 hash>     (0 to 63 consistency proof lines)
//!
//! <checkpoint note>
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::chain::{Frontier, Signer};
use crate::checkpoint::{parse_decimal, SignedCheckpoint};
use crate::consistency::{self, MAX_PROOF_HASHES};
use crate::note::{KeyType, Note, NoteError, NoteSignature, VerifierKey, MAX_NOTE_BYTES};

/// Largest request body accepted, bytes: a note and 63 proof lines.
pub const MAX_REQUEST_BYTES: usize = MAX_NOTE_BYTES + 64 * 46 + 32;

/// `Content-Type` of a 409 answer.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Why a witness did not cosign. [`WitnessError::status`] is the HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The request is not `old N`, proof lines, a blank line and a checkpoint (400).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// This witness does not know the log (404): configure its key at the witness.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// No valid signature of the log's trusted key (403).
    #[error("the checkpoint is not signed by the log's trusted key: {0}")]
    Unsigned(NoteError),
    /// `old` is beyond the checkpoint's size (400): a log going backwards.
    #[error("old size {old} is larger than the checkpoint's size {size}: the log went backwards")]
    OldBeyondSize {
        /// Claimed old size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// `old` is not the size the witness holds (409): resend with `old` = `held`.
    #[error("the witness holds size {held}, not {old}")]
    Stale {
        /// Claimed old size.
        old: u64,
        /// The size the witness holds.
        held: u64,
    },
    /// A size-0 checkpoint must have the empty tree's root (422).
    #[error("an empty tree has the root hash of the empty string")]
    BadEmptyRoot,
    /// A proof from size 0 must be empty (422).
    #[error("a proof from size 0 must be empty")]
    ProofNotEmpty,
    /// The proof does not lead from the held checkpoint to this one (422): the log was
    /// rewritten, or rolled back and regrown.
    #[error("checkpoint {size} is not consistent with checkpoint {held} held by the witness")]
    Inconsistent {
        /// The size the witness holds.
        held: u64,
        /// The checkpoint's size.
        size: u64,
    },
}

impl WitnessError {
    /// The HTTP status of c2sp.org/tlog-witness.
    pub fn status(&self) -> u16 {
        match self {
            WitnessError::Malformed(_) | WitnessError::OldBeyondSize { .. } => 400,
            WitnessError::UnknownOrigin(_) => 404,
            WitnessError::Unsigned(_) => 403,
            WitnessError::Stale { .. } => 409,
            WitnessError::BadEmptyRoot
            | WitnessError::ProofNotEmpty
            | WitnessError::Inconsistent { .. } => 422,
        }
    }

    /// Whether the log's own valid signature is on a checkpoint that contradicts what the
    /// witness holds: evidence of a rewritten or rolled-back log, kept and shown.
    pub fn is_evidence(&self) -> bool {
        matches!(
            self,
            WitnessError::OldBeyondSize { .. }
                | WitnessError::Inconsistent { .. }
                | WitnessError::BadEmptyRoot
        )
    }
}

/// One `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the log believes the witness holds.
    pub old: u64,
    /// Consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<[u8; 32]>,
    /// The new checkpoint, signed by the log, to be cosigned.
    pub checkpoint: SignedCheckpoint,
}

impl AddCheckpoint {
    /// Parse a request body.
    pub fn parse(body: &[u8]) -> Result<Self, WitnessError> {
        let bad = |m: &str| WitnessError::Malformed(m.to_owned());
        if body.len() > MAX_REQUEST_BYTES {
            return Err(bad("the body is too large"));
        }
        let s = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
        let (head, note) = s
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .and_then(parse_decimal)
            .ok_or_else(|| bad("the first line is not 'old <size>'"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF_HASHES {
                return Err(bad("more than 63 proof lines"));
            }
            let h: [u8; 32] = B64
                .decode(l)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| bad("a proof line is not a base64 hash"))?;
            proof.push(h);
        }
        let checkpoint = SignedCheckpoint::parse(note.as_bytes())
            .map_err(|e| WitnessError::Malformed(e.to_string()))?;
        Ok(Self {
            old,
            proof,
            checkpoint,
        })
    }

    /// The body of a request.
    pub fn body(old: u64, proof: &[[u8; 32]], note: &str) -> String {
        let mut out = format!("old {old}\n");
        for h in proof {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(note);
        out
    }
}

/// What a witness holds for one log: the latest checkpoint it cosigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Its tree size, in events.
    pub size: u64,
    /// Its root hash, hex.
    pub root: String,
    /// The checkpoint with the log's signature and the witness's cosignature.
    pub note: String,
    /// Time of the cosignature (seconds since the epoch).
    pub cosigned_at: u64,
}

impl Held {
    fn root_bytes(&self) -> Option<[u8; 32]> {
        let mut r = [0u8; 32];
        hex::decode_to_slice(&self.root, &mut r).ok()?;
        Some(r)
    }
}

/// A log the witness accepts: its origin and the keys trusted to sign its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownLog {
    /// The origin line.
    pub origin: String,
    /// Trusted keys (usually one; two during a key rotation).
    pub keys: Vec<VerifierKey>,
}

/// A witness's answer to a good request: the state to store and the response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The new latest checkpoint, to store (atomically with the check of `old`).
    pub held: Held,
    /// The cosignature line(s), the 200 body.
    pub response: String,
}

/// A witness: a name and a key that cosigns.
pub struct Witness {
    name: String,
    key: Signer,
}

impl Witness {
    /// A witness named `name` (a schema-less URL, e.g. `huyen.example.vn/witness`).
    pub fn new(name: &str, key: Signer) -> Self {
        Self {
            name: name.to_owned(),
            key,
        }
    }

    /// The name in its cosignature lines.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key logs configure for this witness (type 0x04).
    pub fn vkey(&self) -> VerifierKey {
        self.key.verifier_key(&self.name, KeyType::Cosignature)
    }

    /// The checks that need nothing held: the origin is known and its key signed the
    /// checkpoint (404, 403). A driver runs them before taking its lock, so that requests no
    /// log signed never wait for, or touch, the store.
    pub fn authenticate(req: &AddCheckpoint, log: Option<&KnownLog>) -> Result<(), WitnessError> {
        let origin = &req.checkpoint.text.origin;
        let log = log
            .filter(|l| &l.origin == origin)
            .ok_or_else(|| WitnessError::UnknownOrigin(origin.clone()))?;
        check_log_signature(&req.checkpoint.note, log)
    }

    /// Decide on a request. `log` is the configured log of the checkpoint's origin (if any),
    /// `held` what this witness holds for it, `now` seconds since the epoch.
    pub fn add_checkpoint(
        &self,
        req: &AddCheckpoint,
        log: Option<&KnownLog>,
        held: Option<&Held>,
        now: u64,
    ) -> Result<Cosigned, WitnessError> {
        let cp = &req.checkpoint;
        Self::authenticate(req, log)?;
        let log = log.expect("authenticated");
        let size = cp.text.size;
        if req.old > size {
            return Err(WitnessError::OldBeyondSize { old: req.old, size });
        }
        let held_size = held.map_or(0, |h| h.size);
        if req.old != held_size {
            return Err(WitnessError::Stale {
                old: req.old,
                held: held_size,
            });
        }
        if size == 0 && cp.text.root != Frontier::default().root() {
            return Err(WitnessError::BadEmptyRoot);
        }
        if req.old == 0 {
            if !req.proof.is_empty() {
                return Err(WitnessError::ProofNotEmpty);
            }
        } else {
            let held_root = held
                .and_then(Held::root_bytes)
                .ok_or(WitnessError::Inconsistent {
                    held: held_size,
                    size,
                })?;
            consistency::verify(req.old, size, &held_root, &cp.text.root, &req.proof).map_err(
                |_| WitnessError::Inconsistent {
                    held: held_size,
                    size,
                },
            )?;
        }
        // Never a timestamp before the last one for this log, even if the clock stepped back.
        let at = now.max(held.map_or(0, |h| h.cosigned_at));
        let line = self.key.cosign_line(&self.name, &cp.note.text, at);
        let mut note = Note {
            text: cp.note.text.clone(),
            // Keep only the log's verified signatures, then ours.
            signatures: cp
                .note
                .signatures
                .iter()
                .filter(|s| {
                    log.keys
                        .iter()
                        .any(|k| k.name == s.name && k.key_id == s.key_id)
                })
                .cloned()
                .collect(),
        };
        note.add_signatures([NoteSignature::parse_line(&line).expect("a line we just made")]);
        Ok(Cosigned {
            held: Held {
                size,
                root: hex::encode(cp.text.root),
                note: note.to_text(),
                cosigned_at: at,
            },
            response: line,
        })
    }
}

/// 403 unless one trusted key signed it and no trusted key's signature fails.
fn check_log_signature(note: &Note, log: &KnownLog) -> Result<(), WitnessError> {
    let mut verified = false;
    let mut last = NoteError::NotSigned(log.origin.clone());
    for k in &log.keys {
        match note.verify(k) {
            Ok(_) => verified = true,
            Err(e @ NoteError::BadSignature(_)) => return Err(WitnessError::Unsigned(e)),
            Err(e) => last = e,
        }
    }
    if verified {
        Ok(())
    } else {
        Err(WitnessError::Unsigned(last))
    }
}

/// `SHA-256(origin)` in lower-case hex: the path segment of a witness's monitoring URL
/// (`GET <prefix>/<origin hash>/checkpoint`).
pub fn origin_hash(origin: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, origin.as_bytes()).as_ref())
}

/// What a witness answered a log, as the log reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: the witness's verified cosignature lines and their newest timestamp.
    Cosigned {
        /// The lines of the configured witness key (others are dropped).
        signatures: Vec<NoteSignature>,
        /// Seconds since the epoch.
        timestamp: u64,
    },
    /// 409: the witness holds this size; resend with it as `old`.
    Holds(u64),
    /// Any other answer (or a 200 without a valid cosignature): the status and a message.
    Refused {
        /// HTTP status.
        status: u16,
        /// The witness's body, cut to one line, or what was wrong.
        message: String,
    },
}

/// Read a witness's answer to `add-checkpoint` for the checkpoint `text`, checking its
/// cosignature with `witness` (the configured key).
pub fn read_answer(status: u16, body: &str, text: &str, witness: &VerifierKey) -> Answer {
    match status {
        200 => {
            let mut sigs = Vec::new();
            for l in body.lines().take(crate::note::MAX_SIGNATURES) {
                if let Ok(s) = NoteSignature::parse_line(l) {
                    sigs.push(s);
                }
            }
            let note = Note {
                text: text.to_owned(),
                signatures: sigs,
            };
            match note.verify(witness) {
                Ok(timestamp) => Answer::Cosigned {
                    signatures: note
                        .signatures
                        .into_iter()
                        .filter(|s| s.name == witness.name && s.key_id == witness.key_id)
                        .collect(),
                    timestamp,
                },
                Err(e) => Answer::Refused {
                    status,
                    message: format!("no valid cosignature in the answer: {e}"),
                },
            }
        }
        409 => match body
            .trim_end_matches('\n')
            .lines()
            .next()
            .and_then(parse_decimal)
        {
            Some(n) => Answer::Holds(n),
            None => Answer::Refused {
                status,
                message: "409 without a size".into(),
            },
        },
        _ => Answer::Refused {
            status,
            message: body
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::leaf_hash;

    struct Log {
        key: Signer,
        leaves: Vec<[u8; 32]>,
    }

    impl Log {
        fn new() -> Self {
            Self {
                key: Signer::ephemeral().with_origin("xa.example/record"),
                leaves: Vec::new(),
            }
        }
        fn grow(&mut self, n: usize) {
            for _ in 0..n {
                let i = self.leaves.len() as u32;
                self.leaves.push(leaf_hash(&i.to_be_bytes()));
            }
        }
        fn frontier(&self, size: usize) -> Frontier {
            let mut f = Frontier::default();
            for h in &self.leaves[..size] {
                f.push_hash(*h);
            }
            f
        }
        fn note(&self, size: usize) -> String {
            let root = self.frontier(size).root();
            self.key
                .sign(size as u64, &root, &[0; 32], "2026-11-21T00:00:00Z")
                .note
                .unwrap()
        }
        fn request(&self, old: usize, size: usize) -> AddCheckpoint {
            let proof = consistency::prove(&self.frontier(old), &self.leaves[old..size]).unwrap();
            AddCheckpoint::parse(
                AddCheckpoint::body(old as u64, &proof, &self.note(size)).as_bytes(),
            )
            .unwrap()
        }
        fn known(&self) -> KnownLog {
            KnownLog {
                origin: self.key.origin().to_owned(),
                keys: vec![self.key.log_vkey()],
            }
        }
        /// The log, known to `w`, sends its checkpoint at `size` proved from `old`.
        fn send(
            &self,
            w: &Witness,
            (old, size): (usize, usize),
            held: Option<&Held>,
            now: u64,
        ) -> Result<Cosigned, WitnessError> {
            w.add_checkpoint(&self.request(old, size), Some(&self.known()), held, now)
        }
    }

    fn witness() -> Witness {
        Witness::new("huyen.example/witness", Signer::ephemeral())
    }

    /// A witness that holds (since time 1) the checkpoint of a log of `size` leaves.
    fn holding(size: usize) -> (Witness, Log, Held) {
        let (w, mut log) = (witness(), Log::new());
        log.grow(size);
        let held = log.send(&w, (0, size), None, 1).unwrap().held;
        (w, log, held)
    }

    #[test]
    fn given_nothing_held_when_a_log_sends_its_first_checkpoint_then_it_is_cosigned() {
        let (w, mut log) = (witness(), Log::new());
        log.grow(5);
        let c = log.send(&w, (0, 5), None, 100).unwrap();
        assert_eq!(c.held.size, 5);
        let note = Note::parse(c.held.note.as_bytes()).unwrap();
        assert_eq!(note.verify(&w.vkey()), Ok(100));
        assert!(note.verify(&log.key.log_vkey()).is_ok());
        let text = SignedCheckpoint::parse(c.held.note.as_bytes())
            .unwrap()
            .note
            .text;
        assert!(matches!(
            read_answer(200, &c.response, &text, &w.vkey()),
            Answer::Cosigned { timestamp: 100, .. }
        ));
    }

    #[test]
    fn given_a_held_checkpoint_when_the_log_grows_then_the_proof_is_checked_and_it_advances() {
        let (w, mut log) = (witness(), Log::new());
        log.grow(5);
        let first = log.send(&w, (0, 5), None, 100).unwrap();
        log.grow(9);
        let second = log.send(&w, (5, 14), Some(&first.held), 50).unwrap();
        assert_eq!(second.held.size, 14);
        // The clock went back: the timestamp does not.
        assert_eq!(second.held.cosigned_at, 100);
    }

    #[test]
    fn given_a_held_checkpoint_when_the_log_is_rewritten_then_it_is_refused_as_evidence() {
        let (w, mut log, held) = holding(8);
        // Leaf 3 changed and every later hash recomputed, then re-signed with the log's key.
        log.leaves[3] = leaf_hash(b"forged");
        log.grow(4);
        let e = log.send(&w, (8, 12), Some(&held), 2).unwrap_err();
        assert_eq!(e, WitnessError::Inconsistent { held: 8, size: 12 });
        assert_eq!(e.status(), 422);
        assert!(e.is_evidence());
        // The same size with another root.
        let e = log.send(&w, (8, 8), Some(&held), 2).unwrap_err();
        assert_eq!(e.status(), 422);
    }

    #[test]
    fn given_a_held_checkpoint_when_the_log_rolls_back_then_it_is_refused() {
        let (w, log, held) = holding(8);
        // A log that lost its tail does not know what the witness holds: it sends old 0.
        let e = log.send(&w, (0, 6), Some(&held), 2).unwrap_err();
        assert_eq!(e, WitnessError::Stale { old: 0, held: 8 });
        assert_eq!(e.status(), 409);
        assert_eq!(read_answer(409, "8\n", "", &w.vkey()), Answer::Holds(8));
        // Told 8, it cannot prove 8 -> 6: old beyond the size.
        let mut req = log.request(0, 6);
        req.old = 8;
        let e = w
            .add_checkpoint(&req, Some(&log.known()), Some(&held), 2)
            .unwrap_err();
        assert_eq!(e, WitnessError::OldBeyondSize { old: 8, size: 6 });
        assert_eq!(e.status(), 400);
        assert!(e.is_evidence());
    }

    #[test]
    fn unknown_origins_and_foreign_keys_are_refused() {
        let (w, mut log) = (witness(), Log::new());
        log.grow(2);
        let req = log.request(0, 2);
        assert_eq!(
            w.add_checkpoint(&req, None, None, 1).unwrap_err().status(),
            404
        );
        let other = KnownLog {
            origin: log.key.origin().to_owned(),
            keys: vec![Signer::ephemeral().verifier_key(log.key.origin(), KeyType::Ed25519)],
        };
        let e = w.add_checkpoint(&req, Some(&other), None, 1).unwrap_err();
        assert_eq!(e.status(), 403);
        assert!(!e.is_evidence());
        // A known key whose signature does not verify: 403 too.
        let mut bad = req.clone();
        bad.checkpoint.note.text = bad.checkpoint.note.text.replace("\n2\n", "\n3\n");
        assert_eq!(
            w.add_checkpoint(&bad, Some(&log.known()), None, 1)
                .unwrap_err()
                .status(),
            403
        );
    }

    #[test]
    fn an_empty_tree_needs_the_empty_root_and_an_empty_proof() {
        let (w, mut log) = (witness(), Log::new());
        let c = log.send(&w, (0, 0), None, 1).unwrap();
        assert_eq!(c.held.size, 0);
        log.grow(3);
        let mut req = log.request(0, 3);
        req.proof.push([0; 32]);
        let e = w
            .add_checkpoint(&req, Some(&log.known()), None, 1)
            .unwrap_err();
        assert_eq!(e, WitnessError::ProofNotEmpty);
    }

    #[test]
    fn malformed_requests_are_400() {
        for body in [
            "",
            "old 1\n",
            "old x\n\nnote",
            "new 1\n\nnote",
            "old 01\n\nnote",
            "old 0\nnot-base64!\n\nnote",
            "old 0\n\nnot a note",
        ] {
            let e = AddCheckpoint::parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.status(), 400, "{body:?}");
        }
        let many = format!(
            "old 1\n{}\n",
            format!("{}\n", B64.encode([0u8; 32])).repeat(64)
        );
        assert!(AddCheckpoint::parse(many.as_bytes()).is_err());
    }

    #[test]
    fn a_200_without_the_witness_key_is_not_a_cosignature() {
        let w = witness();
        let text = "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let forged = Signer::ephemeral().cosign_line(w.name(), text, 5);
        assert!(matches!(
            read_answer(200, &forged, text, &w.vkey()),
            Answer::Refused { .. }
        ));
        let good = w.key.cosign_line(w.name(), text, 5);
        assert!(matches!(
            read_answer(200, &good, text, &w.vkey()),
            Answer::Cosigned { .. }
        ));
    }
}
