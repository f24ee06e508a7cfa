//! Benchmark of the record's tamper evidence. Prints its figures; asserts nothing.
//!
//! ```text
//! cargo run --release -p dinh-ops --bin integrity_bench [-- --events 1000000]
//! ```
//! 1. the hub's start-up verification of a log of `--events` events (SQLite): every hash,
//!    the Merkle tree, the checkpoints, and one tree head held by a witness, events/s;
//! 2. a checkpoint's consistency proof from the previous one (1,000 new events): time to
//!    prove, and to verify as a witness does;
//! 3. a witness's whole decision on an `add-checkpoint` body (parse, log signature, proof,
//!    cosignature), per request.

use dinh_ops::{arg, headcount_batch};
use std::time::Instant;

use dinh_events::chain::{leaf_hash, Frontier, Signer};
use dinh_events::consistency;
use dinh_events::store::Store;
use dinh_events::verify::{verify_store_with, HeldElsewhere, Policy, TrustedKey};
use dinh_events::witness::{AddCheckpoint, Held, KnownLog, Witness};

#[tokio::main]
async fn main() {
    let n: u64 = arg("--events")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("dinh-integrity-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open_sqlite(&dir.join("record.sqlite"))
        .await
        .unwrap();
    let t = Instant::now();
    let mut seq = 1;
    while seq <= n {
        let k = (n - seq + 1).min(500) as usize;
        store
            .append(headcount_batch("m-bench", seq, k))
            .await
            .unwrap();
        seq += k as u64;
    }
    eprintln!("filled {n} events in {:.1} s", t.elapsed().as_secs_f64());

    // A checkpoint every 1,000 events, as the hub signs them, and one tree head held by a
    // witness at 90% of the log.
    let signer = Signer::ephemeral().with_origin("bench.example/record");
    let events = store.read(0, n as usize).await.unwrap();
    let mut f = Frontier::default();
    let mut witness_at = None;
    for e in &events {
        f.push(&e.canonical());
        let p = e.position;
        if p % 1000 == 0 || p == n {
            let mut chain = [0u8; 32];
            hex::decode_to_slice(&e.hash, &mut chain).unwrap();
            let cp = signer.sign(p, &f.root(), &chain, "2026-11-23T01:00:00Z");
            store.put_checkpoint(&cp, &f).await.unwrap();
        }
        if p == n * 9 / 10 {
            witness_at = Some(HeldElsewhere {
                size: p,
                root: f.root(),
                chain: None,
                source: "bench".into(),
            });
        }
    }
    drop(events);
    let policy = Policy {
        trusted_key: Some(TrustedKey {
            public_hex: signer.public_hex(),
            origin: None,
        }),
        held_elsewhere: witness_at.into_iter().collect(),
        ..Policy::default()
    };
    let t = Instant::now();
    let (report, _, _) = verify_store_with(&store, policy).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(report.ok(), "{:?}", report.problem);
    println!(
        "start-up verification: {} events, {} checkpoints, {} witnessed tree head: {:.2} s ({:.0} events/s)",
        report.events,
        report.checkpoints,
        report.held_elsewhere,
        secs,
        report.events as f64 / secs
    );

    // A proof for the last 1,000 events, and a witness deciding on it.
    let m = n.saturating_sub(1000).max(1);
    let all = store.read(0, n as usize).await.unwrap();
    let mut old = Frontier::default();
    for e in &all[..m as usize] {
        old.push(&e.canonical());
    }
    let leaves: Vec<[u8; 32]> = all[m as usize..]
        .iter()
        .map(|e| leaf_hash(&e.canonical()))
        .collect();
    let mut new = old.clone();
    for h in &leaves {
        new.push_hash(*h);
    }
    let rounds = 200;
    let t = Instant::now();
    let mut proof = Vec::new();
    for _ in 0..rounds {
        proof = consistency::prove(&old, &leaves).unwrap();
    }
    let prove_us = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let t = Instant::now();
    for _ in 0..rounds {
        consistency::verify(m, n, &old.root(), &new.root(), &proof).unwrap();
    }
    let verify_us = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    println!(
        "consistency proof {m} -> {n}: {} hashes, prove {prove_us:.0} µs (hashing 1,000 leaf hashes), verify {verify_us:.1} µs",
        proof.len()
    );

    let note = signer
        .sign(n, &new.root(), &[0; 32], "2026-11-23T01:00:00Z")
        .note
        .unwrap();
    let body = AddCheckpoint::body(m, &proof, &note);
    let witness = Witness::new("w.example/bench", Signer::ephemeral());
    let log = KnownLog {
        origin: signer.origin().to_owned(),
        keys: vec![signer.log_vkey()],
    };
    let held = Held {
        size: m,
        root: hex::encode(old.root()),
        note: String::new(),
        cosigned_at: 0,
    };
    let t = Instant::now();
    for i in 0..rounds {
        let req = AddCheckpoint::parse(body.as_bytes()).unwrap();
        witness
            .add_checkpoint(&req, Some(&log), Some(&held), i)
            .unwrap();
    }
    println!(
        "witness add-checkpoint decision ({} bytes): {:.0} µs per request",
        body.len(),
        t.elapsed().as_secs_f64() * 1e6 / rounds as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
