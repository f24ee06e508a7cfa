//! The officials' page with a large record. Prints its figures; asserts nothing.
//!
//! ```text
//! cargo build --release --bin dinh -p dinh-web
//! cargo run --release -p dinh-ops --bin official_bench [-- --items 10000 --runs 5]
//! ```
//! 1. writes a record of `--items` feedback items (default 10,000) raised in 20 meetings of
//!    room `demo`, most classified, half assigned (some of them past their deadline), a fifth
//!    answered, through the record's commands, as the hub would have;
//! 2. starts that record under a real `dinh serve` (`DINH_BIN`, default target/release/dinh);
//! 3. prints the page's weight: every file `/official` loads, raw and gzip -9;
//! 4. times the register's API (p50 and p95 of 20 calls): the first page, filtered and sorted
//!    pages, a text search, the overdue series, attendance across meetings;
//! 5. opens `/official` in headless Chromium (`--runs` times, the first with an empty cache)
//!    and prints the time from the navigation's start to the register shown: the page marks
//!    `dinh:register-shown` when the first page of rows is in the document.

// chromedriver and the browser's settings: the browser tests' own (one copy for both).
#[path = "../../../web/tests/common/browser.rs"]
#[allow(dead_code)]
mod browser;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dinh_events::domain::feedback::{FeedbackAction, FeedbackKind};
use dinh_events::domain::meeting::MeetingAction;
use dinh_events::domain::{Actor, ActorRole, Command as Cmd};
use dinh_events::record::Record;
use dinh_events::store::Store;
use time::OffsetDateTime;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const MEETINGS: usize = 20;

/// The record the page will read: `items` items over 20 meetings, written by 16 clients at once.
async fn seed(data: &std::path::Path, items: usize) {
    // The record's key first, as the hub makes it: a hub refuses a non-empty record whose key
    // is missing.
    dinh_events::chain::Signer::load_or_create(&data.join("record.key")).unwrap();
    let store = Store::open(&data.join("record.sqlite").to_string_lossy())
        .await
        .unwrap();
    let record = Arc::new(Record::new(store, Default::default()));
    let now = OffsetDateTime::now_utc();
    let chair = Actor::new(ActorRole::Chair, "chair");
    for m in 0..MEETINGS {
        let at = now - time::Duration::days(7 * (MEETINGS - m) as i64);
        let id = format!("m{m:02}");
        let schedule = MeetingAction::Schedule {
            room: "demo".into(),
            title: format!("Họp dân kỳ {m}"),
            starts_at: at,
            agenda: vec!["Giao thông".into(), "Thủy lợi".into()],
        };
        record
            .meeting(&id, Cmd::new(at, chair.clone(), schedule), None)
            .await
            .unwrap();
        record
            .meeting(&id, Cmd::new(at, chair.clone(), MeetingAction::Open), None)
            .await
            .unwrap();
        for h in 1..=6 {
            let house = format!("house-{h}");
            if (m + h) % 5 == 0 {
                continue; // absent this time
            }
            let connect = MeetingAction::ConnectHouse {
                house: house.clone(),
                connection: format!("{id}-{house}"),
            };
            record
                .meeting(&id, Cmd::new(at, Actor::system("sfu"), connect), None)
                .await
                .unwrap();
            let count = MeetingAction::ReportHeadcount {
                house,
                count: 20 + (m * h) as u32 % 30,
            };
            record
                .meeting(&id, Cmd::new(at, chair.clone(), count), None)
                .await
                .unwrap();
        }
    }
    let t = Instant::now();
    let clients = 16;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let record = record.clone();
        tasks.push(tokio::spawn(async move {
            for i in (c..items).step_by(clients) {
                let id = format!("f{i:05}");
                let m = i % MEETINGS;
                let at = now - time::Duration::days(7 * (MEETINGS - m) as i64);
                let house = format!("house-{}", i % 6 + 1);
                let raise = FeedbackAction::Raise {
                    meeting: format!("m{m:02}"),
                    agenda_item: Some(i % 2),
                    house: house.clone(),
                    content: format!(
                        "Ý kiến số {i}: {}",
                        [
                            "đường liên thôn xuống cấp",
                            "mương thủy lợi bị lấp",
                            "đèn đường hỏng",
                            "trường học thiếu nước sạch"
                        ][i % 4]
                    ),
                };
                let h = Actor::new(ActorRole::House, &house);
                record
                    .feedback(&id, Cmd::new(at, h, raise), None)
                    .await
                    .unwrap();
                let o = Actor::new(ActorRole::Official, format!("can-bo-{}", i % 3 + 1));
                if i % 10 < 8 {
                    let kind = [
                        FeedbackKind::Feedback,
                        FeedbackKind::Complaint,
                        FeedbackKind::Denunciation,
                    ][i % 3];
                    record
                        .feedback(
                            &id,
                            Cmd::new(at, o.clone(), FeedbackAction::Classify { kind }),
                            None,
                        )
                        .await
                        .unwrap();
                }
                if i % 10 < 5 {
                    let assign = FeedbackAction::Assign {
                        official: o.id.clone(),
                        working_days: Some(10),
                    };
                    record
                        .feedback(&id, Cmd::new(at, o.clone(), assign), None)
                        .await
                        .unwrap();
                }
                if i % 10 < 2 {
                    let answer = FeedbackAction::Answer {
                        answer: "Đã xử lý".into(),
                    };
                    record
                        .feedback(&id, Cmd::new(at, o.clone(), answer), None)
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let head = record.store().head();
    println!(
        "record: {items} feedback items, {head} events written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

fn get(url: &str, token: &str) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut res = agent
        .get(url)
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .expect("request");
    let status = res.status().as_u16();
    let body = res
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    (status, body)
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn gzip_len(bytes: &[u8]) -> usize {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .arg("-9c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    child.wait_with_output().unwrap().stdout.len()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let items = arg("--items", 10_000);
    let runs = arg("--runs", 5).max(1);
    let data = std::env::temp_dir().join(format!("dinh-official-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    seed(&data, items).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Instant::now();
    let hub = dinh_ops::HubProcess::start(&data, port);
    let base = hub.base.clone();
    println!(
        "hub up (projections caught up) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let token = hub.token("official", "can-bo-1");

    // The page's weight.
    let files = [
        "/official",
        "/assets/dinh.js",
        "/assets/official.js",
        "/assets/style.css",
        "/assets/official.css",
        "/assets/i18n/official/vi.json",
    ];
    let (mut raw, mut gz) = (0, 0);
    println!("\npage weight (what /official loads)");
    for f in files {
        let (st, body) = get(&format!("{base}{f}"), "");
        assert_eq!(st, 200, "{f}");
        let g = gzip_len(&body);
        println!("  {f:<24} {:>7} B raw {:>7} B gzip", body.len(), g);
        raw += body.len();
        gz += g;
    }
    println!("  {:<24} {raw:>7} B raw {gz:>7} B gzip", "total");

    // The API.
    println!("\nAPI with {items} items (20 calls each)          p50 ms   p95 ms   bytes");
    let calls = [
        "/api/feedback",
        "/api/feedback?status=open&sort=deadline",
        "/api/feedback?overdue=true&house=house-3",
        "/api/feedback?q=m%C6%B0%C6%A1ng&kind=complaint&offset=200",
        "/api/feedback?limit=500",
        "/api/stats/overdue?days=90",
        "/api/attendance",
    ];
    for path in calls {
        let mut ms = Vec::new();
        let mut bytes = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let (st, body) = get(&format!("{base}{path}"), &token);
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(st, 200, "{path}: {}", String::from_utf8_lossy(&body));
            bytes = body.len();
        }
        let first = ms[0];
        let p50 = quantile(&mut ms, 0.5);
        let p95 = quantile(&mut ms, 0.95);
        println!("  {path:<44} {p50:>6.1} {p95:>8.1} {bytes:>8}  (first {first:.1})");
    }

    // The page in Chromium, started as the browser tests start it.
    let (_driver, driver_port) = browser::chromedriver().await;
    let c = browser::browser_sized(driver_port, 0, 1280, 900).await;
    println!("\nopening /official to the register shown (ms from navigation start)");
    let mut shown = Vec::new();
    for run in 0..runs {
        c.goto(&format!("{base}/official?lang=vi&token={token}"))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let v = loop {
            let v = c
                .execute(
                    "return window.dinhRegisterShownAt ? [window.dinhRegisterShownAt, document.querySelectorAll('#regRows tr').length, \
                     performance.getEntriesByType('navigation')[0].responseEnd, \
                     (performance.getEntriesByType('resource').find((r) => r.name.includes('/api/feedback')) || {}).duration || 0] : null",
                    vec![],
                )
                .await
                .unwrap();
            if !v.is_null() || Instant::now() > deadline {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let ms = v[0].as_f64().expect("the register was never shown");
        println!(
            "  run {} ({}): {ms:.0} ms, {} rows; HTML done at {:.0} ms, /api/feedback took {:.0} ms",
            run + 1,
            if run == 0 { "empty cache" } else { "revalidated" },
            v[1],
            v[2].as_f64().unwrap_or(0.0),
            v[3].as_f64().unwrap_or(0.0)
        );
        shown.push(ms);
    }
    let first = shown[0];
    let median = quantile(&mut shown, 0.5);
    println!("  register shown: first {first:.0} ms, median {median:.0} ms over {runs} runs");
    let _ = c.close().await;
    drop(hub);
    let _ = std::fs::remove_dir_all(&data);
}
