//! Signed notes (c2sp.org/signed-note): a text, a blank line, and signature lines
//! `— <key name> base64(key id || signature)`. Checkpoints and witness cosignatures are notes.
//!
//! What must stay true:
//! - a note is valid UTF-8 with no ASCII control character but newline, at most
//!   [`MAX_NOTE_BYTES`] long with at most [`MAX_SIGNATURES`] signature lines;
//! - the text ends with a newline and is separated from the signatures by the last blank line;
//! - a signature is checked only when both its key name and its key id match a configured key
//!   (the id alone is not a strong hash); signatures of unknown keys are ignored, never errors;
//! - key ids are `SHA-256(name || 0x0A || type || public key)[:4]`, type 0x01 for the log's
//!   Ed25519 signatures and 0x04 for timestamped `cosignature/v1` cosignatures.
//!
//! ```
//! use dinh_events::chain::Signer;
//! use dinh_events::note::{Note, KeyType};
//!
//! let key = Signer::ephemeral();
//! let text = "example.org/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
//! let line = key.sign_note_line("example.org/log", text);
//! let note = Note::parse(format!("{text}\n{line}").as_bytes()).unwrap();
//! let vkey = key.verifier_key("example.org/log", KeyType::Ed25519);
//! assert!(note.verify(&vkey).is_ok());
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ED25519};

/// Longest note accepted, bytes: a checkpoint with a few dozen Ed25519 signatures is ~5 KB.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;
/// Most signature lines accepted (the specification asks for at least 16).
pub const MAX_SIGNATURES: usize = 64;
/// Longest key name accepted, bytes.
pub const MAX_KEY_NAME: usize = 256;

/// Why a note, a signature line or a verifier key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The bytes are not a note: fix the sender (the message says which rule failed).
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A signature line names a trusted key but does not verify: the note was altered or
    /// signed by another key; reject it whole.
    #[error("the signature of {0} does not verify")]
    BadSignature(String),
    /// No signature of the trusted key is present.
    #[error("the note is not signed by {0}")]
    NotSigned(String),
    /// A verifier key string is not `name+hexid+base64`.
    #[error("malformed verifier key: {0}")]
    BadKey(&'static str),
}

/// The signature types this crate signs and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// 0x01: Ed25519 over the note text (the log's own checkpoint signature).
    Ed25519,
    /// 0x04: a timestamped Ed25519 `cosignature/v1` (c2sp.org/tlog-cosignature).
    Cosignature,
}

impl KeyType {
    /// The identifier byte of c2sp.org/signed-note.
    pub fn byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => 0x01,
            KeyType::Cosignature => 0x04,
        }
    }
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// The 4-byte key id (big-endian).
    pub key_id: u32,
    /// The signature bytes after the key id.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line, with its em dash and final newline.
    pub fn line(&self) -> String {
        let mut raw = self.key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.signature);
        format!("— {} {}\n", self.name, B64.encode(raw))
    }

    /// Parse one line (with or without its final newline).
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let rest = line
            .strip_prefix("— ")
            .ok_or(NoteError::Malformed("a signature line starts with '— '"))?;
        let (name, sig) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "a signature line is '— name signature'",
        ))?;
        check_key_name(name)?;
        if sig.contains(' ') {
            return Err(NoteError::Malformed("a signature has no spaces"));
        }
        let raw = B64
            .decode(sig)
            .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed(
                "a signature is shorter than its key id",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            signature: raw[4..].to_vec(),
        })
    }
}

fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.len() > MAX_KEY_NAME {
        return Err(NoteError::Malformed("a key name has 1 to 256 bytes"));
    }
    if name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::Malformed("a key name has no spaces and no '+'"));
    }
    Ok(())
}

/// A parsed note: its text and signatures (none verified yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, final newline included.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parse a note. Refuses anything the specification does not allow.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Malformed("longer than 16 KiB"));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        if s.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed(
                "a control character other than newline",
            ));
        }
        let sep = s
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let text = &s[..sep + 1];
        let sigs = &s[sep + 2..];
        if sigs.is_empty() {
            return Err(NoteError::Malformed("no signature"));
        }
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "the last signature line has no newline",
            ));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::Malformed("more than 64 signatures"));
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note as text: the text, a blank line, the signature lines.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }

    /// Add signature lines (a witness's response), skipping exact duplicates.
    pub fn add_signatures(&mut self, sigs: impl IntoIterator<Item = NoteSignature>) {
        for s in sigs {
            if !self.signatures.contains(&s) && self.signatures.len() < MAX_SIGNATURES {
                self.signatures.push(s);
            }
        }
    }

    /// Check the signatures of `key`: every one present must verify, and one must be present.
    /// For a cosignature key, returns the newest cosignature's timestamp (seconds since the
    /// epoch); for a log key, 0.
    pub fn verify(&self, key: &VerifierKey) -> Result<u64, NoteError> {
        let mut found = None;
        for s in self
            .signatures
            .iter()
            .filter(|s| s.name == key.name && s.key_id == key.key_id)
        {
            let t = key
                .check(&self.text, &s.signature)
                .ok_or_else(|| NoteError::BadSignature(key.name.clone()))?;
            found = Some(found.map_or(t, |f: u64| f.max(t)));
        }
        found.ok_or_else(|| NoteError::NotSigned(key.name.clone()))
    }
}

/// A public key that checks note signatures, with its name and id
/// (`name+hex(key id)+base64(type || public key)` as text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerifierKey {
    /// Key name; for a log, its origin.
    pub name: String,
    /// The first 4 bytes of SHA-256(name || 0x0A || type || key): which key signed a line.
    pub key_id: u32,
    /// Signature type.
    pub kind: KeyType,
    /// Ed25519 public key.
    pub public: [u8; 32],
}

/// `SHA-256(name || 0x0A || type || public)[:4]`, big-endian.
pub fn key_id(name: &str, kind: KeyType, public: &[u8; 32]) -> u32 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[kind.byte()]);
    ctx.update(public);
    let d = ctx.finish();
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The message a `cosignature/v1` signs: header, time line, then the checkpoint text.
pub fn cosignature_message(timestamp: u64, text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

impl VerifierKey {
    /// The key of `name` and `public` for `kind`, its id computed.
    pub fn new(name: &str, kind: KeyType, public: [u8; 32]) -> Self {
        Self {
            name: name.to_owned(),
            key_id: key_id(name, kind, &public),
            kind,
            public,
        }
    }

    /// Parse `name+hexid+base64(type || key)`.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let s = s.trim();
        // The base64 key may itself contain '+': only the first two separate.
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected name+keyid+key"));
        };
        check_key_name(name).map_err(|_| NoteError::BadKey("bad key name"))?;
        if id.len() != 8 {
            return Err(NoteError::BadKey("the key id is 8 hex digits"));
        }
        let key_id =
            u32::from_str_radix(id, 16).map_err(|_| NoteError::BadKey("the key id is not hex"))?;
        let raw = B64
            .decode(key)
            .map_err(|_| NoteError::BadKey("the key is not base64"))?;
        let kind = match raw.first() {
            Some(0x01) => KeyType::Ed25519,
            Some(0x04) => KeyType::Cosignature,
            _ => {
                return Err(NoteError::BadKey(
                    "only Ed25519 (0x01, 0x04) keys are supported",
                ))
            }
        };
        let public: [u8; 32] = raw[1..]
            .try_into()
            .map_err(|_| NoteError::BadKey("an Ed25519 key has 32 bytes"))?;
        let k = Self::new(name, kind, public);
        if k.key_id != key_id {
            return Err(NoteError::BadKey(
                "the key id does not match the name and key",
            ));
        }
        Ok(k)
    }

    /// Check one signature (the bytes after the key id) over `text`; for a cosignature,
    /// return its timestamp.
    fn check(&self, text: &str, sig: &[u8]) -> Option<u64> {
        let key = UnparsedPublicKey::new(&ED25519, self.public);
        match self.kind {
            KeyType::Ed25519 => key.verify(text.as_bytes(), sig).ok().map(|()| 0),
            KeyType::Cosignature => {
                if sig.len() != 8 + 64 {
                    return None;
                }
                let t = u64::from_be_bytes(sig[..8].try_into().ok()?);
                if t > i64::MAX as u64 {
                    return None;
                }
                key.verify(&cosignature_message(t, text), &sig[8..])
                    .ok()
                    .map(|()| t)
            }
        }
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![self.kind.byte()];
        raw.extend_from_slice(&self.public);
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Signer;

    /// The example of c2sp.org/signed-note ("Verifier keys").
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    #[test]
    fn the_specification_example_verifies() {
        let k = VerifierKey::parse(SPEC_VKEY).unwrap();
        assert_eq!(k.to_string(), SPEC_VKEY);
        let n = Note::parse(SPEC_NOTE.as_bytes()).unwrap();
        assert_eq!(n.text, "This is an example message.\n");
        assert_eq!(n.verify(&k), Ok(0));
        assert_eq!(n.to_text(), SPEC_NOTE);
        // One changed character in the text: the known key's signature fails.
        let bad = SPEC_NOTE.replacen("example message", "example massage", 1);
        let n = Note::parse(bad.as_bytes()).unwrap();
        assert!(matches!(n.verify(&k), Err(NoteError::BadSignature(_))));
    }

    #[test]
    fn unknown_keys_are_ignored_and_a_missing_key_is_not_signed() {
        let n = Note::parse(SPEC_NOTE.as_bytes()).unwrap();
        let other = Signer::ephemeral().verifier_key("example.com/foo", KeyType::Ed25519);
        assert_eq!(
            n.verify(&other),
            Err(NoteError::NotSigned("example.com/foo".into()))
        );
    }

    #[test]
    fn cosignatures_carry_their_time_and_cover_the_text() {
        let w = Signer::ephemeral();
        let text = "a.example/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let line = w.cosign_line("w.example/1", text, 1_700_000_000);
        let n = Note::parse(format!("{text}\n{line}").as_bytes()).unwrap();
        let vk = w.verifier_key("w.example/1", KeyType::Cosignature);
        assert_eq!(n.verify(&vk), Ok(1_700_000_000));
        // The same key as a plain Ed25519 key has another id: the line is not its.
        let plain = w.verifier_key("w.example/1", KeyType::Ed25519);
        assert!(matches!(n.verify(&plain), Err(NoteError::NotSigned(_))));
        let moved = Note::parse(format!("{}\n{line}", text.replace('5', "6")).as_bytes()).unwrap();
        assert!(matches!(moved.verify(&vk), Err(NoteError::BadSignature(_))));
    }

    #[test]
    fn malformed_notes_are_refused_with_the_rule() {
        for (bad, why) in [
            (&b"no blank line\n- x y\n"[..], "no blank line"),
            (b"text\n\n", "no signature"),
            (b"text\n\n\xe2\x80\x94 k AAAAAAAA", "no newline"),
            (b"text\r\n\n\xe2\x80\x94 k AAAAAAAA\n", "control character"),
            (b"text\n\n- k AAAAAAAA\n", "starts with"),
            (b"text\n\n\xe2\x80\x94 k+1 AAAAAAAA\n", "'+'"),
            (b"text\n\n\xe2\x80\x94 k AAAA\n", "shorter"),
            (b"text\n\n\xe2\x80\x94 k !!!!\n", "base64"),
            (b"\xff\n\n", "UTF-8"),
        ] {
            let e = Note::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{e} should say {why}");
        }
        let many = format!("t\n\n{}", "— k AAAAAAAA\n".repeat(MAX_SIGNATURES + 1));
        assert!(Note::parse(many.as_bytes()).is_err());
        assert!(Note::parse(&vec![b'a'; MAX_NOTE_BYTES + 1]).is_err());
    }

    #[test]
    fn a_key_whose_base64_has_a_plus_parses() {
        // Keys until one's base64 has a '+' (about one in two has one).
        let k = std::iter::repeat_with(|| {
            Signer::ephemeral().verifier_key("n.example/w", KeyType::Cosignature)
        })
        .find(|k| k.to_string().matches('+').count() > 2)
        .unwrap();
        assert_eq!(VerifierKey::parse(&k.to_string()).unwrap(), k);
    }

    #[test]
    fn verifier_keys_round_trip_and_refuse_a_wrong_id() {
        let s = Signer::ephemeral();
        let k = s.verifier_key("commune.example/record", KeyType::Ed25519);
        assert_eq!(VerifierKey::parse(&k.to_string()).unwrap(), k);
        let text = k.to_string();
        let (head, tail) = text.split_at(text.find('+').unwrap() + 1);
        let wrong = format!("{head}00000000{}", &tail[8..]);
        assert!(VerifierKey::parse(&wrong).is_err());
        assert!(VerifierKey::parse("name+0011").is_err());
        assert!(VerifierKey::parse(&format!("{head}{}", &tail[..9])).is_err());
    }
}
