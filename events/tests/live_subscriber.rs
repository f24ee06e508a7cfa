//! Concurrent writers on one database (PostgreSQL, or one SQLite file), through separate
//! stores as separate hubs would: a live subscriber sees every event exactly once, in position
//! order, although transactions commit in an order nobody controls.

mod common;

use std::time::Duration;

use common::*;
use dinh_events::store::Store;

async fn subscriber_sees_everything_once(url_or_path: String, writers: usize, each: u64) {
    let reader = Store::open(&url_or_path).await.unwrap();
    let total = writers as u64 * each;
    let sub = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut head = reader.watch_head();
        let mut after = 0;
        while (seen.len() as u64) < total {
            let batch = reader.read(after, 500).await.unwrap();
            if batch.is_empty() {
                // Woken by a commit (ours or, through LISTEN, another pool's), or poll.
                let _ = tokio::time::timeout(Duration::from_millis(50), head.changed()).await;
                continue;
            }
            for e in batch {
                after = e.position;
                seen.push((e.position, e.aggregate_id.clone(), e.sequence));
            }
        }
        seen
    });
    let mut tasks = Vec::new();
    for w in 0..writers {
        let target = url_or_path.clone();
        tasks.push(tokio::spawn(async move {
            // Each writer its own store (its own pool), as another hub process would have.
            let store = Store::open(&target).await.unwrap();
            for s in 1..=each {
                store
                    .append(headcount_append(&format!("w{w}"), s))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(60), sub)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.len() as u64, total);
    for (i, (p, _, _)) in seen.iter().enumerate() {
        assert_eq!(
            *p,
            i as u64 + 1,
            "positions in order, none skipped or repeated"
        );
    }
    for w in 0..writers {
        let seqs: Vec<u64> = seen
            .iter()
            .filter(|(_, a, _)| *a == format!("w{w}"))
            .map(|x| x.2)
            .collect();
        assert_eq!(seqs, (1..=each).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_writers() {
    let Some(url) = postgres_url().await else {
        return;
    };
    // Create the schema once before the writers race.
    drop(Store::open(&url).await.unwrap());
    subscriber_sees_everything_once(url, 6, 150).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_writers() {
    // Several stores on one file, as two hub processes started by mistake would be: each
    // writer reads the head again under SQLite's write lock, so positions stay gap-free and
    // each aggregate's sequence continues from what the others wrote.
    let path = temp_dir("live").join("record.sqlite");
    drop(Store::open_sqlite(&path).await.unwrap());
    subscriber_sees_everything_once(path.to_string_lossy().into_owned(), 4, 100).await;
}
