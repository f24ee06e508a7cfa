//! The text of a C2SP checkpoint (c2sp.org/tlog-checkpoint): the log's origin, the tree size,
//! the base64 RFC 9162 root hash, and optional extension lines. The hub adds two:
//! `chain <base64>` (the chain hash at that size, tying the tree head to the hash chain) and
//! `time <RFC 3339>` (when it was signed). A witness cosigns the extension lines with the
//! rest, but vouches only for the first three.
//!
//! ```text
//! xa-an-phu.example.vn/record
//! 1042
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
//! chain 7C8Ue0XgR3WfH1eI8hQyb0o0I0t1Z0s9u0Kf0Xo3n6E=
//! time 2026-11-21T08:00:00Z
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::note::{Note, NoteError, VerifierKey};

/// Most extension lines accepted.
pub const MAX_EXTENSIONS: usize = 16;

/// Why a checkpoint text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Not a checkpoint; the message names the line.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The note around it is malformed or not signed by the expected key.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A checkpoint's lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointText {
    /// The log's identity (first line).
    pub origin: String,
    /// Leaves in the tree.
    pub size: u64,
    /// RFC 9162 Merkle tree head.
    pub root: [u8; 32],
    /// Extension lines, each non-empty, in order.
    pub extensions: Vec<String>,
}

impl CheckpointText {
    /// The hub's checkpoint: origin, size, root, then the chain hash and time lines.
    pub fn new(origin: &str, size: u64, root: [u8; 32], chain: [u8; 32], time: &str) -> Self {
        Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions: vec![
                format!("chain {}", B64.encode(chain)),
                format!("time {time}"),
            ],
        }
    }

    /// Parse the text of a note (final newline included).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::Malformed(
            "the text ends without a newline",
        ))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::Malformed("the origin line is empty"));
        }
        let size = lines
            .next()
            .ok_or(CheckpointError::Malformed("no size line"))?;
        let size = parse_decimal(size).ok_or(CheckpointError::Malformed(
            "the size is not a decimal without leading zeros",
        ))?;
        let root = lines
            .next()
            .ok_or(CheckpointError::Malformed("no root hash line"))?;
        let root: [u8; 32] = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(CheckpointError::Malformed(
                "the root hash is not 32 bytes of base64",
            ))?;
        let mut extensions = Vec::new();
        for l in lines {
            if l.is_empty() {
                return Err(CheckpointError::Malformed("an empty extension line"));
            }
            if extensions.len() == MAX_EXTENSIONS {
                return Err(CheckpointError::Malformed("more than 16 extension lines"));
            }
            extensions.push(l.to_owned());
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The text, final newline included.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// The chain hash of the `chain` extension line, if any.
    pub fn chain(&self) -> Option<[u8; 32]> {
        let v = self.extension("chain")?;
        B64.decode(v).ok()?.try_into().ok()
    }

    /// The signing time of the `time` extension line, if any.
    pub fn time(&self) -> Option<&str> {
        self.extension("time")
    }

    fn extension(&self, key: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
    }
}

/// ASCII decimal with no leading zero (but `0`), at most 2^63 - 1: a size fits SQL's BIGINT.
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse::<u64>().ok().filter(|n| *n <= i64::MAX as u64)
}

/// A checkpoint note: the note and its parsed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The note, with every signature line it came with.
    pub note: Note,
    /// The note's text parsed: origin, tree size, root hash, extension lines.
    pub text: CheckpointText,
}

impl SignedCheckpoint {
    /// Parse a checkpoint note (no signature checked yet).
    pub fn parse(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let note = Note::parse(bytes)?;
        let text = CheckpointText::parse(&note.text)?;
        Ok(Self { note, text })
    }

    /// Check the log's signature: `log` must be named as the origin and have signed it.
    pub fn verify_log(&self, log: &VerifierKey) -> Result<(), CheckpointError> {
        if log.name != self.text.origin {
            return Err(CheckpointError::Note(NoteError::NotSigned(
                log.name.clone(),
            )));
        }
        self.note.verify(log)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of c2sp.org/tlog-checkpoint.
    const SPEC: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    #[test]
    fn the_specification_example_parses() {
        let c = SignedCheckpoint::parse(SPEC.as_bytes()).unwrap();
        assert_eq!(c.text.origin, "example.com/behind-the-sofa");
        assert_eq!(c.text.size, 20852163);
        assert!(c.text.extensions.is_empty());
        assert_eq!(c.note.to_text(), SPEC);
    }

    #[test]
    fn the_hubs_lines_round_trip() {
        let t = CheckpointText::new(
            "x.example/record",
            7,
            [3; 32],
            [4; 32],
            "2026-11-21T08:00:00Z",
        );
        let back = CheckpointText::parse(&t.to_text()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.chain(), Some([4; 32]));
        assert_eq!(back.time(), Some("2026-11-21T08:00:00Z"));
    }

    #[test]
    fn bad_lines_are_refused() {
        let root = B64.encode([0u8; 32]);
        for (text, why) in [
            (format!("o\n01\n{root}\n"), "leading zeros"),
            (format!("o\n-1\n{root}\n"), "decimal"),
            (format!("o\n99999999999999999999\n{root}\n"), "decimal"),
            (format!("o\n9223372036854775808\n{root}\n"), "decimal"),
            ("o\n1\nAAAA\n".to_owned(), "32 bytes"),
            (format!("\n1\n{root}\n"), "origin"),
            (format!("o\n1\n{root}\n\n"), "empty extension"),
            (format!("o\n1\n{root}"), "newline"),
            ("o\n1\n".to_owned(), "root hash"),
            (
                format!("o\n1\n{root}\n{}", "e\n".repeat(17)),
                "16 extension",
            ),
        ] {
            let e = CheckpointText::parse(&text).unwrap_err().to_string();
            assert!(e.contains(why), "{text:?}: {e}");
        }
        assert_eq!(parse_decimal("0"), Some(0));
    }
}
