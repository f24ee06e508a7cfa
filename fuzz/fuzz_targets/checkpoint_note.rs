//! Checkpoint notes and verifier keys from outside (a witness's answer, a saved file, the
//! settings): any bytes. Must parse or refuse, never panic; what parses writes back as read.
#![no_main]

use dinh_events::checkpoint::{CheckpointText, SignedCheckpoint};
use dinh_events::note::{KeyType, Note, VerifierKey};
use dinh_events::witness::read_answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = Note::parse(data) {
        assert_eq!(n.to_text().as_bytes(), data, "a note writes back as read");
        if let Ok(t) = CheckpointText::parse(&n.text) {
            assert_eq!(t.to_text(), n.text);
            let _ = (t.chain(), t.time());
        }
    }
    if let Ok(c) = SignedCheckpoint::parse(data) {
        let key = VerifierKey::new(&c.text.origin, KeyType::Ed25519, [1; 32]);
        let _ = c.verify_log(&key);
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(k) = VerifierKey::parse(&text) {
        assert_eq!(VerifierKey::parse(&k.to_string()), Ok(k));
    }
    let w = VerifierKey::new("w.example/1", KeyType::Cosignature, [2; 32]);
    for status in [200, 409, 422] {
        let _ = read_answer(status, &text, "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", &w);
    }
});
