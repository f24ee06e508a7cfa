//! `POST /witness/add-checkpoint`: any bytes as a request body (after a mode byte), decided by
//! a witness holding nothing and holding a checkpoint of a known log. Must answer, never
//! panic. Mode odd: the checkpoint is first signed by the log's key, so that the decision
//! goes past the signature (sizes, proofs); mode even: as received, and then it is never
//! cosigned (random bytes are never the log's signature).
#![no_main]

use std::sync::OnceLock;

use dinh_events::chain::Signer;
use dinh_events::note::{Note, NoteSignature};
use dinh_events::witness::{AddCheckpoint, Held, KnownLog, Witness};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    log_key: Signer,
    witness: Witness,
    log: KnownLog,
    held: Held,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // Fixed keys so that runs are reproducible.
        let log_key = Signer::from_seed(&[1; 32]).unwrap().with_origin("xa.example/record");
        let witness = Witness::new("w.example/1", Signer::from_seed(&[2; 32]).unwrap());
        let log = KnownLog {
            origin: "xa.example/record".into(),
            keys: vec![log_key.log_vkey()],
        };
        let cp = log_key.sign(3, &[7; 32], &[8; 32], "2026-11-21T00:00:00Z");
        let held = Held {
            size: 3,
            root: hex::encode([7u8; 32]),
            note: cp.note.unwrap(),
            cosigned_at: 1,
        };
        Fixture {
            log_key,
            witness,
            log,
            held,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let Ok(mut req) = AddCheckpoint::parse(body) else {
        return;
    };
    // Round trip: what parses is written back the same way.
    let again = AddCheckpoint::body(req.old, &req.proof, &req.checkpoint.note.to_text());
    assert_eq!(AddCheckpoint::parse(again.as_bytes()).as_ref(), Ok(&req));
    let signed = mode & 1 == 1;
    if signed {
        let line = f
            .log_key
            .sign_note_line(f.log_key.origin(), &req.checkpoint.note.text);
        req.checkpoint.note.signatures = vec![NoteSignature::parse_line(&line).unwrap()];
    }
    for held in [None, Some(&f.held)] {
        match f.witness.add_checkpoint(&req, Some(&f.log), held, 100) {
            Ok(c) => {
                assert!(signed, "cosigned a checkpoint the log never signed");
                assert_eq!(req.old, held.map_or(0, |h| h.size));
                assert!(c.held.size >= req.old);
                let note = Note::parse(c.held.note.as_bytes()).unwrap();
                assert!(note.verify(&f.witness.vkey()).is_ok());
                assert!(note.verify(&f.log_key.log_vkey()).is_ok());
            }
            Err(e) => assert!([400, 403, 404, 409, 422].contains(&e.status())),
        }
    }
});
