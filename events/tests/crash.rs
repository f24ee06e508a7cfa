//! `kill -9` at any moment loses no acknowledged event: a child process appends under load
//! (8 concurrent writers, group commit) and is killed with SIGKILL, five times over; then
//! every event it acknowledged is present, positions have no gap, and the chain verifies.
//!
//! The child is this test binary run again with `DINH_CRASH_CHILD` set (`child_appender`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dinh_events::store::Store;
use dinh_events::verify::verify_store;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn child_appender() {
    let (Ok(path), Ok(round)) = (
        std::env::var("DINH_CRASH_CHILD"),
        std::env::var("DINH_CRASH_ROUND"),
    ) else {
        return; // only meaningful as the child of kill_9_loses_nothing_acknowledged
    };
    runtime().block_on(async move {
        let store = Store::open(&path).await.unwrap();
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = store.clone();
            let out = out.clone();
            let id = format!("r{round}-w{w}");
            tasks.push(tokio::spawn(async move {
                for seq in 1.. {
                    let a = store
                        .append(common::headcount_append(&id, seq))
                        .await
                        .unwrap();
                    // Acknowledged: say so before doing anything else.
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {id} {seq} {}", a.first).unwrap();
                    o.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let dir = common::temp_dir("crash");
    let path = dir.join("record.sqlite").to_string_lossy().into_owned();
    let acked: Arc<Mutex<Vec<(String, u64, u64)>>> = Arc::default();
    for round in 0..5u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_appender",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("DINH_CRASH_CHILD", &path)
            .env("DINH_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let sink = acked.clone();
        let reader = std::thread::spawn(move || {
            let mut n = 0;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut f = line.split(' ');
                if f.next() != Some("ACK") {
                    continue;
                }
                let id = f.next().unwrap().to_owned();
                let seq: u64 = f.next().unwrap().parse().unwrap();
                let pos: u64 = f.next().unwrap().parse().unwrap();
                sink.lock().unwrap().push((id, seq, pos));
                n += 1;
            }
            n
        });
        // Wait until the child is appending, then kill it at a different moment each round.
        let before = acked.lock().unwrap().len();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < before + 50 {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never appended"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(37 * round + 11));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let n = reader.join().unwrap();
        assert!(n > 0);
    }
    let acked = acked.lock().unwrap().clone();
    runtime().block_on(async move {
        let store = Store::open(&path).await.unwrap();
        let all = store.read(0, 10_000_000).await.unwrap();
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.position, i as u64 + 1, "gap-free positions");
        }
        let by_pos: std::collections::HashMap<u64, (&str, u64)> = all
            .iter()
            .map(|e| (e.position, (e.aggregate_id.as_str(), e.sequence)))
            .collect();
        for (id, seq, pos) in &acked {
            assert_eq!(
                by_pos.get(pos),
                Some(&(id.as_str(), *seq)),
                "acknowledged event lost"
            );
        }
        let report = verify_store(&store, None).await.unwrap();
        assert!(report.ok(), "{report:?}");
        eprintln!(
            "{} events acknowledged over 5 kills; {} in the log; chain intact",
            acked.len(),
            all.len()
        );
    });
}
