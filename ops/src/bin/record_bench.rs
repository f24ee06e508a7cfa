//! Benchmark of the record. Prints its figures; asserts nothing.
//!
//! ```text
//! cargo run --release -p dinh-ops --bin record_bench [-- --events 1000000 --pg postgres://...]
//! ```
//! 1. durable single-event commands per second through the whole path (cqrs-es, the
//!    aggregate in memory, the store's writer committing the waiting commands together), each
//!    acknowledged after its commit, with 1, 16, 64 and 256 concurrent clients (goal:
//!    20,000/s on SQLite, 5,000/s on PostgreSQL);
//! 2. 100-event appends per second;
//! 3. projection rebuild time for `--events` events (default 1,000,000, SQLite; goal: 5 s
//!    for a million);
//! 4. SSE delivery to 100 subscribers of a running hub: time from command to every
//!    subscriber having the event (p50, p99).
//!
//! With `--pg URL` (or DINH_BENCH_DATABASE_URL), 1 and 2 run on PostgreSQL too.
//!
//! Beside each rate, the CPU the bench process spent per command or event (user + system,
//! from /proc/self/stat; the PostgreSQL server's own CPU is not in it). On a machine shared
//! with other work the rates fall with the load; the CPU cost per command does much less, and
//! two idle cores give at most 2,000,000 / (µs per command) commands per second.

use dinh_ops::{arg, headcount_batch};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dinh_events::domain::meeting::MeetingAction;
use dinh_events::domain::{Actor, ActorRole, Command};
use dinh_events::projections::Views;
use dinh_events::record::Record;
use dinh_events::store::Store;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn fresh_sqlite(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("dinh-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("record.sqlite").to_string_lossy().into_owned()
}

async fn fresh_pg(base: &str) -> String {
    use sqlx::Connection;
    let schema = format!("bench_{}", std::process::id());
    let mut c = sqlx::PgConnection::connect(base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut c)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// CPU seconds this process has used (user + system), in clock ticks of 1/100 s.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn chair() -> Actor {
    Actor::new(ActorRole::Chair, "chair")
}

async fn open(r: &Record, id: &str) {
    let now = time::OffsetDateTime::now_utc();
    let s = MeetingAction::Schedule {
        room: "demo".into(),
        title: "bench".into(),
        starts_at: now,
        agenda: vec![],
    };
    r.meeting(id, Command::new(now, chair(), s), None)
        .await
        .unwrap();
    r.meeting(id, Command::new(now, chair(), MeetingAction::Open), None)
        .await
        .unwrap();
}

/// Run `client(c)` for every `c` in `0..n` at once; seconds until the last is done.
async fn at_once<F, Fut>(n: usize, client: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let t = Instant::now();
    let tasks: Vec<_> = (0..n).map(|c| tokio::spawn(client(c))).collect();
    for task in tasks {
        task.await.unwrap();
    }
    t.elapsed().as_secs_f64()
}

/// Single-event commands through cqrs-es, `clients` at once, each on its own meeting.
async fn commands(store: Store, clients: usize, per_client: usize) -> f64 {
    let r = Arc::new(Record::new(store, Default::default()));
    for c in 0..clients {
        open(&r, &format!("c{clients}-{c}")).await;
    }
    let secs = at_once(clients, |c| {
        let r = r.clone();
        async move {
            let id = format!("c{clients}-{c}");
            for i in 0..per_client {
                let a = MeetingAction::ReportHeadcount {
                    house: "house-1".into(),
                    count: i as u32,
                };
                r.meeting(
                    &id,
                    Command::new(time::OffsetDateTime::now_utc(), chair(), a),
                    None,
                )
                .await
                .unwrap();
            }
        }
    })
    .await;
    (clients * per_client) as f64 / secs
}

/// 100-event appends per second, `clients` at once.
async fn batches(store: Store, clients: usize, per_client: usize) -> f64 {
    let secs = at_once(clients, |c| {
        let store = store.clone();
        async move {
            let id = format!("b{c}");
            for i in 0..per_client {
                store
                    .append(headcount_batch(&id, 1 + (i * 100) as u64, 100))
                    .await
                    .unwrap();
            }
        }
    })
    .await;
    (clients * per_client) as f64 / secs
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn sse(subscribers: usize, events: usize) {
    let dir = std::env::temp_dir().join(format!("dinh-bench-sse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = dinh_web::config::Config {
        data: dir.clone(),
        ..Default::default()
    };
    config.rtc.udp_listen = "127.0.0.1:0".parse().unwrap();
    let state = dinh_web::AppState::start(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = state.keys.issue(
        "chair",
        "c",
        dinh_web::auth::Role::Chair,
        "demo",
        Duration::from_secs(3600),
    );
    let rec = state.recording.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dinh_web::run(listener, state, async {
        let _ = stop_rx.await;
    }));
    open(&rec.record, "sse").await;
    let base = rec.store().head();
    let sent: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let mut subs = Vec::new();
    for _ in 0..subscribers {
        let token = token.clone();
        let sent = sent.clone();
        subs.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let req = format!(
                "GET /api/events?from={base} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut lines = BufReader::new(s).lines();
            let mut lat = Vec::with_capacity(events);
            while lat.len() < events {
                let Ok(Some(l)) = lines.next_line().await else { break };
                if let Some(id) = l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")) {
                    let p: u64 = id.trim().parse().unwrap();
                    let i = (p - base - 1) as usize;
                    let at = sent.lock().unwrap().get(i).copied();
                    if let Some(at) = at {
                        lat.push(at.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    for i in 0..events {
        sent.lock().unwrap().push(Instant::now());
        let a = MeetingAction::ReportHeadcount {
            house: "house-1".into(),
            count: i as u32,
        };
        rec.record
            .meeting(
                "sse",
                Command::new(time::OffsetDateTime::now_utc(), chair(), a),
                None,
            )
            .await
            .unwrap();
        // About 200 events a second: a busy meeting, not a flood.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut all = Vec::new();
    for s in subs {
        if let Ok(Ok(l)) = tokio::time::timeout(Duration::from_secs(30), s).await {
            all.extend(l);
        }
    }
    let wall = t.elapsed().as_secs_f64();
    let delivered = all.len();
    println!(
        "sse: {subscribers} subscribers x {events} events: {delivered} deliveries ({:.0}/s), command-to-subscriber p50 {:.1} ms, p99 {:.1} ms",
        delivered as f64 / wall,
        pct(&mut all, 0.5),
        pct(&mut all, 0.99)
    );
    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main]
async fn main() {
    let n_events: u64 = arg("--events")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let pg = arg("--pg").or_else(|| std::env::var("DINH_BENCH_DATABASE_URL").ok());
    println!(
        "record benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    for (name, target) in [("sqlite", Some(fresh_sqlite("cmd"))), ("postgres", None)] {
        let target = match (target, &pg) {
            (Some(t), _) => t,
            (None, Some(base)) => fresh_pg(base).await,
            (None, None) => continue,
        };
        let goal = if name == "sqlite" { 20_000 } else { 5_000 };
        for clients in [1, 16, 64, 256] {
            let store = Store::open(&target).await.unwrap();
            let per = if clients == 1 { 1000 } else { 40_000 / clients };
            let cpu = cpu_seconds();
            let rate = commands(store, clients, per).await;
            let us = (cpu_seconds() - cpu) * 1e6 / (clients * per) as f64;
            println!(
                "{name}: single-event commands, {clients:>3} clients: {rate:>8.0} acknowledged/s, {us:>5.1} µs CPU each (goal {goal}/s with many clients)"
            );
        }
        let store = Store::open(&target).await.unwrap();
        let cpu = cpu_seconds();
        let rate = batches(store, 8, 100).await;
        let us = (cpu_seconds() - cpu) * 1e6 / (8 * 100 * 100) as f64;
        println!(
            "{name}: 100-event appends, 8 clients: {rate:>8.0} batches/s ({:.0} events/s), {us:.1} µs CPU per event",
            rate * 100.0
        );
    }

    // Rebuild: fill a fresh SQLite log with n_events in 100-event appends, then rebuild.
    let target = fresh_sqlite("rebuild");
    let store = Store::open(&target).await.unwrap();
    let per_agg = 10_000u64; // 100 appends per meeting
    let aggs = n_events.div_ceil(per_agg) as usize;
    let mut secs = 0.0;
    for first in (0..aggs).step_by(16) {
        secs += at_once(16.min(aggs - first), |a| {
            let store = store.clone();
            async move {
                let id = format!("m{}", first + a);
                for seq in (1..=per_agg).step_by(100) {
                    store.append(headcount_batch(&id, seq, 100)).await.unwrap();
                }
            }
        })
        .await;
    }
    println!("filled {} events in {secs:.1} s", store.head());
    let t = Instant::now();
    let cpu = cpu_seconds();
    let views = Views::rebuild(&store).await.unwrap();
    println!(
        "rebuild: {} events in {:.2} s ({:.0} events/s; goal 5 s for a million), {:.2} s CPU, {} attendance rows",
        views.position(),
        t.elapsed().as_secs_f64(),
        views.position() as f64 / t.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
        views.attendance.rows().count()
    );

    sse(100, 500).await;
}
