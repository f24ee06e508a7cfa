//! Two `dinh` processes over HTTP: one commune's hub witnesses another's record
//! (c2sp.org/tlog-witness). Someone who can write the witnessed hub's data folder, key
//! included, rewrites its log (or cuts its tail), removes its checkpoints and signs again:
//! the witness refuses the forged checkpoint and keeps it as evidence, `dinh log verify`
//! refuses the log given the witness or a checkpoint saved earlier, and the hub restarted
//! over it signs nothing and says why.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dinh;
use dinh_events::chain::{leaf_hash, Frontier, Signer};
use dinh_events::store::Store;
use serde_json::{json, Value};

const ORIGIN: &str = "xa-a.example.vn/record";

fn dir(tag: &str) -> PathBuf {
    let d = common::app::data_dir(&format!("witness-{tag}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `dinh` process serving on `port`, killed when dropped.
struct Proc {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Proc {
    fn spawn(args: &[&str], port: u16, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dinh"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        let p = Self { child, port, log };
        // Up when it answers at all (503 included), within a generous bound: the machine is
        // shared.
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut p = p;
        while get(p.port, "/healthz", None).is_none() {
            assert!(Instant::now() < deadline, "not up: {}", p.output());
            if p.child.try_wait().unwrap().is_some() {
                panic!("exited: {}", p.output());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit (the hub signs and sends its last checkpoint).
    fn stop(mut self) {
        // By the system call, not procps-ng's `kill` (see tests/common/browser.rs's Driver).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "did not stop: {}", self.output());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut req = agent().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut res = req.call().ok()?;
    let status = res.status().as_u16();
    Some((status, res.body_mut().read_to_string().unwrap_or_default()))
}

fn post(port: u16, path: &str, token: Option<&str>, ctype: &str, body: String) -> (u16, String) {
    let mut req = agent()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", ctype);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut res = req.send(body).unwrap();
    let status = res.status().as_u16();
    (status, res.body_mut().read_to_string().unwrap_or_default())
}

fn json_of(port: u16, path: &str, token: Option<&str>) -> Value {
    let (st, body) = get(port, path, token).unwrap();
    assert_eq!(st, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Wait (generously) until `f` holds.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A's data folder with its key made first (B must trust it before A runs) and its settings:
/// checkpoints every 3 events, witnessed by `witness` (`url`, `vkey`).
fn hub_a(url: &str, vkey: &str) -> (PathBuf, Signer) {
    let a = dir("a");
    let key = Signer::load_or_create(&a.join("record.key"))
        .unwrap()
        .with_origin(ORIGIN);
    std::fs::write(
        a.join("dinh.toml"),
        format!(
            "[record]\norigin = \"{ORIGIN}\"\ncheckpoint_every = 3\ncheckpoint_interval_secs = 1\n\
             [[record.witnesses]]\nurl = \"{url}\"\nvkey = \"{vkey}\"\n"
        ),
    )
    .unwrap();
    (a, key)
}

fn witness_settings(b: &Path, log_vkey: &str) -> String {
    let conf = b.join("dinh.toml");
    std::fs::write(
        &conf,
        format!("[witness]\nname = \"huyen.example.vn/witness\"\n[[witness.logs]]\nvkey = \"{log_vkey}\"\n"),
    )
    .unwrap();
    conf.to_string_lossy().into_owned()
}

/// The key of the witness whose data folder is `b` (`dinh witness --public-key`).
fn witness_vkey(b: &Path) -> String {
    let placeholder = "placeholder+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let conf = witness_settings(b, placeholder);
    let d = b.to_str().unwrap();
    let (code, vkey, err) = dinh(&["witness", "--public-key", "--data", d, "--config", &conf]);
    assert_eq!(code, 0, "{err}");
    let vkey = vkey.trim().to_owned();
    assert!(vkey.starts_with("huyen.example.vn/witness+"), "{vkey}");
    vkey
}

fn serve(data: &Path, port: u16) -> Proc {
    let d = data.to_str().unwrap();
    let conf = data.join("dinh.toml");
    Proc::spawn(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--udp",
            "127.0.0.1:0",
            "--data",
            d,
            "--config",
            conf.to_str().unwrap(),
        ],
        port,
        data.join(format!("serve-{}.log", uuid::Uuid::new_v4())),
    )
}

/// A meeting and `n` headcounts through A's API.
fn record_events(port: u16, chair: &str, n: u32) {
    let (st, body) = post(
        port,
        "/api/meetings",
        Some(chair),
        "application/json",
        json!({"id": "m1", "title": "Họp dân", "starts_at": "2026-11-23T08:00:00+07:00"})
            .to_string(),
    );
    assert_eq!(st, 201, "{body}");
    let cmd = |v: Value| {
        let (st, body) = post(
            port,
            "/api/meetings/m1/commands",
            Some(chair),
            "application/json",
            v.to_string(),
        );
        assert_eq!(st, 200, "{body}");
    };
    cmd(json!({"type": "open"}));
    for i in 0..n {
        cmd(json!({"type": "report_headcount", "house": "house-1", "count": 10 + i}));
    }
}

fn token(data: &Path, role: &str) -> String {
    let (code, out, err) = dinh(&[
        "token",
        "--role",
        role,
        "--room",
        "demo",
        "--id",
        "t",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_owned()
}

async fn unlock_all(store_path: &Path) -> String {
    let target = format!("sqlite://{}", store_path.display());
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&target).await.unwrap();
    for t in [
        "events_no_update",
        "events_no_delete",
        "checkpoints_no_update",
        "checkpoints_no_delete",
        "cosignatures_no_update",
        "cosignatures_no_delete",
    ] {
        sqlx::query(&format!("DROP TRIGGER {t}"))
            .execute(&mut c)
            .await
            .unwrap();
    }
    target
}

async fn exec(target: &str, sql: &str) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(target).await.unwrap();
    sqlx::query(sql).execute(&mut c).await.unwrap();
}

/// Rewrite position 4 of A's log, recompute every hash, remove the checkpoints and the
/// cosignatures, and sign the forged log with A's own key: all a file-level attacker can do.
async fn forge(a: &Path, key: &Signer) -> Store {
    let path = a.join("record.sqlite");
    let store = Store::open_sqlite(&path).await.unwrap();
    let target = unlock_all(&path).await;
    exec(&target, "UPDATE events SET payload = replace(payload, '\"count\":11', '\"count\":99') WHERE position = 4").await;
    let mut prev = [0u8; 32];
    for e in store.read(0, 1000).await.unwrap() {
        let h = e.chain_hash(&prev);
        exec(
            &target,
            &format!(
                "UPDATE events SET hash = '{}' WHERE position = {}",
                hex::encode(h),
                e.position
            ),
        )
        .await;
        prev = h;
    }
    exec(&target, "DELETE FROM checkpoints").await;
    exec(&target, "DELETE FROM cosignatures").await;
    dinh_events::record::checkpoint_if_due(&store, key, 1, Duration::ZERO, true)
        .await
        .unwrap()
        .expect("the forged log signed");
    store
}

/// The body of an add-checkpoint for the store's newest checkpoint, with a proof from `old`
/// computed over the store's (forged) events.
async fn add_checkpoint_body(store: &Store, old: u64) -> String {
    let (cp, _) = store.last_checkpoint().await.unwrap().unwrap();
    let events = store.read(0, 10_000).await.unwrap();
    let mut f = Frontier::default();
    for e in &events[..old as usize] {
        f.push(&e.canonical());
    }
    let leaves: Vec<[u8; 32]> = events[old as usize..cp.tree_size as usize]
        .iter()
        .map(|e| leaf_hash(&e.canonical()))
        .collect();
    let proof = dinh_events::consistency::prove(&f, &leaves).unwrap();
    dinh_events::witness::AddCheckpoint::body(old, &proof, cp.note.as_ref().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hub_witnesses_another_and_a_rewrite_is_caught_everywhere() {
    // B: a neighbouring commune's hub, witnessing A (a route of `dinh serve`).
    let b = dir("b");
    let pb = free_port();
    let url = format!("http://127.0.0.1:{pb}/witness");
    // B's key, printed for A's settings.
    let b_vkey = witness_vkey(&b);
    let (a, a_key) = hub_a(&url, &b_vkey);
    witness_settings(&b, &a_key.log_vkey().to_string());
    let hub_b = serve(&b, pb);

    // A records a meeting; every checkpoint goes to B, which cosigns it.
    let pa = free_port();
    let hub_a_proc = serve(&a, pa);
    let chair = token(&a, "chair");
    let official = token(&a, "official");
    record_events(pa, &chair, 8);
    until("B to cosign all of A's log", || {
        let st = json_of(pb, "/witness/status", None);
        st["logs"][0]["size"] == 10 && st["logs"][0]["origin"] == ORIGIN
    });
    until("A to see the cosignature", || {
        let v = json_of(pa, "/api/integrity", Some(&official));
        v["witnesses"][0]["state"] == "ok" && v["witnesses"][0]["cosigned_size"] == 10
    });
    let v = json_of(pa, "/api/integrity", Some(&official));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["origin"], ORIGIN);
    // An official saves the newest checkpoint, cosigned, somewhere else.
    let conf_a = a.join("dinh.toml");
    let (ad, ac) = (a.to_str().unwrap(), conf_a.to_str().unwrap());
    let (code, saved, err) = dinh(&["log", "checkpoint", "--data", ad, "--config", ac]);
    assert_eq!(code, 0, "{err}");
    assert!(
        saved.contains("\n— huyen.example.vn/witness "),
        "cosigned: {saved}"
    );
    let saved_file = dir("official").join("checkpoint.txt");
    std::fs::write(&saved_file, &saved).unwrap();
    let (code, out, err) = dinh(&["log", "verify", "--data", ad, "--config", ac]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("1 checkpoints held elsewhere extended"),
        "{out}"
    );
    hub_a_proc.stop();

    // The attacker's rewrite, re-signed with A's key.
    let store = forge(&a, &a_key).await;
    // Alone, the forged log verifies: the hole this closes.
    let (code, out, err) = dinh(&["log", "verify", "--data", ad, "--config", ac, "--offline"]);
    assert_eq!(
        code, 0,
        "the forged log is consistent in itself: {out}{err}"
    );
    // Against the witness (from the settings, or by URL) and against the saved checkpoint, it
    // is refused, naming where the first difference lies.
    for extra in [
        vec![],
        vec![
            "--offline",
            "--witness",
            url.as_str(),
            "--witness-key",
            b_vkey.as_str(),
        ],
        vec!["--offline", "--against", saved_file.to_str().unwrap()],
    ] {
        let mut args = vec!["log", "verify", "--data", ad, "--config", ac];
        args.extend(extra.iter().copied());
        let (code, out, err) = dinh(&args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.contains("FAILED between positions 1 and 10"),
            "{args:?}: {err}"
        );
    }
    // B refuses the forged checkpoint and keeps it as evidence.
    let (st, body) = post(
        pb,
        "/witness/add-checkpoint",
        None,
        "text/plain",
        add_checkpoint_body(&store, 10).await,
    );
    assert_eq!(st, 422, "{body}");
    let (st, body) = post(
        pb,
        "/witness/add-checkpoint",
        None,
        "text/plain",
        add_checkpoint_body(&store, 0).await,
    );
    assert_eq!((st, body.as_str()), (409, "10\n"));
    let status = json_of(pb, "/witness/status", None);
    assert_eq!(status["logs"][0]["size"], 10, "B still holds the true log");
    assert_eq!(status["refusals"][0]["origin"], ORIGIN, "{status}");
    assert_eq!(status["refusals"][0]["status"], 422);
    drop(store);

    // A restarted over the forged log asks B, finds the rewrite, and signs nothing.
    let hub_a_proc = serve(&a, pa);
    let (st, body) = get(pa, "/healthz", None).unwrap();
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("witness huyen.example.vn/witness"), "{body}");
    let v = json_of(pa, "/api/integrity", Some(&official));
    assert_eq!(
        (v["ok"].clone(), v["signing"].clone()),
        (json!(false), json!(false)),
        "{v}"
    );
    assert_eq!(
        (
            v["problem"]["position"].clone(),
            v["problem"]["up_to"].clone()
        ),
        (json!(1), json!(10)),
        "{v}"
    );
    let (_, metrics) = get(pa, "/metrics", Some(&official)).unwrap();
    assert!(metrics.contains("dinh_record_integrity_ok 0"), "{metrics}");
    let cmd = json!({"type": "report_headcount", "house": "house-2", "count": 5}).to_string();
    let (st, _) = post(
        pa,
        "/api/meetings/m1/commands",
        Some(&chair),
        "application/json",
        cmd,
    );
    assert_eq!(st, 200);
    // Checkpoints are due every 3 events or 1 s: wait two checkpointer rounds.
    std::thread::sleep(Duration::from_secs(11));
    hub_a_proc.stop();
    let store = Store::open_sqlite(&a.join("record.sqlite")).await.unwrap();
    let cps = store.checkpoints().await.unwrap();
    assert_eq!(
        cps.len(),
        1,
        "only the attacker's checkpoint: the hub signed nothing"
    );
    assert!(
        hub_b.output().contains("witness refused a checkpoint"),
        "{}",
        hub_b.output()
    );
    assert_eq!(json_of(pb, "/witness/status", None)["logs"][0]["size"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_refused_by_a_standalone_witness_and_the_hub() {
    // B: `dinh witness` alone.
    let b = dir("b");
    let pb = free_port();
    let url = format!("http://127.0.0.1:{pb}/witness");
    let b_vkey = witness_vkey(&b);
    let (a, a_key) = hub_a(&url, &b_vkey);
    let conf = witness_settings(&b, &a_key.log_vkey().to_string());
    let hub_b = Proc::spawn(
        &[
            "witness",
            "--listen",
            &format!("127.0.0.1:{pb}"),
            "--data",
            b.to_str().unwrap(),
            "--config",
            &conf,
        ],
        pb,
        b.join("witness.log"),
    );
    let pa = free_port();
    let hub_a_proc = serve(&a, pa);
    let chair = token(&a, "chair");
    record_events(pa, &chair, 6);
    until("B to cosign all of A's log", || {
        json_of(pb, "/witness/status", None)["logs"][0]["size"] == 8
    });
    hub_a_proc.stop();

    // The tail goes, with its checkpoints; the shorter log is signed again.
    let path = a.join("record.sqlite");
    let store = Store::open_sqlite(&path).await.unwrap();
    let target = unlock_all(&path).await;
    for sql in [
        "DELETE FROM events WHERE position > 5",
        "DELETE FROM checkpoints",
        "DELETE FROM cosignatures",
    ] {
        exec(&target, sql).await;
    }
    drop(store);
    let store = Store::open_sqlite(&path).await.unwrap();
    dinh_events::record::checkpoint_if_due(&store, &a_key, 1, Duration::ZERO, true)
        .await
        .unwrap()
        .unwrap();
    // B: told nothing, it says what it holds; told that, the log cannot go backwards.
    let (st, body) = post(
        pb,
        "/witness/add-checkpoint",
        None,
        "text/plain",
        add_checkpoint_body(&store, 0).await,
    );
    assert_eq!((st, body.as_str()), (409, "8\n"));
    let mut rolled = add_checkpoint_body(&store, 0).await;
    rolled = rolled.replacen("old 0\n", "old 8\n", 1);
    let (st, body) = post(pb, "/witness/add-checkpoint", None, "text/plain", rolled);
    assert_eq!(st, 400, "{body}");
    let status = json_of(pb, "/witness/status", None);
    assert_eq!(status["refusals"][0]["status"], 400, "{status}");
    drop(store);

    let hub_a_proc = serve(&a, pa);
    let (st, body) = get(pa, "/healthz", None).unwrap();
    assert_eq!(st, 503, "{body}");
    assert!(
        body.contains("rolled back") && body.contains("position 6"),
        "{body}"
    );
    let (ad, ac) = (a.to_str().unwrap(), a.join("dinh.toml"));
    let (code, _, err) = dinh(&[
        "log",
        "verify",
        "--data",
        ad,
        "--config",
        ac.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("FAILED at position 6") && err.contains("rolled back"),
        "{err}"
    );
    hub_a_proc.stop();
    drop(hub_b);
}
