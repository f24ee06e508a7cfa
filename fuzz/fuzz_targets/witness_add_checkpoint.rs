//! `POST /witness/add-checkpoint`: any bytes as a request body, decided by a witness that
//! holds a checkpoint of a known log. Must answer, never panic; a cosignature is given only
//! to a request the log's key signed (which random bytes never are).
#![no_main]

use std::sync::OnceLock;

use dinh_events::chain::Signer;
use dinh_events::witness::{AddCheckpoint, Held, KnownLog, Witness};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    witness: Witness,
    log: KnownLog,
    held: Held,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // Fixed keys so that runs are reproducible.
        let log_key = Signer::from_pkcs8(&pkcs8(1)).unwrap().with_origin("xa.example/record");
        let witness = Witness::new("w.example/1", Signer::from_pkcs8(&pkcs8(2)).unwrap());
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
        Fixture { witness, log, held }
    })
}

/// A PKCS#8 v1 Ed25519 key with every seed byte `b`.
fn pkcs8(b: u8) -> Vec<u8> {
    let mut v = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    v.extend_from_slice(&[b; 32]);
    v
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Ok(req) = AddCheckpoint::parse(data) else {
        return;
    };
    // Round trip: what parses is written back the same way.
    let body = AddCheckpoint::body(req.old, &req.proof, &req.checkpoint.note.to_text());
    assert_eq!(AddCheckpoint::parse(body.as_bytes()).as_ref(), Ok(&req));
    for held in [None, Some(&f.held)] {
        match f.witness.add_checkpoint(&req, Some(&f.log), held, 100) {
            Ok(_) => panic!("cosigned a checkpoint the log never signed"),
            Err(e) => assert!([400, 403, 404, 409, 422].contains(&e.status())),
        }
    }
});
