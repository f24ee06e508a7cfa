//! Benchmarks and load tools for Đình live in `benches/` and `src/bin/`.

/// The subscriber counts given on the command line, or the 10, 50, 100 and 200.
pub fn subscriber_counts() -> Vec<usize> {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if ns.is_empty() {
        vec![10, 50, 100, 200]
    } else {
        ns
    }
}

/// A release `dinh serve` run for a benchmark, on loopback, killed when dropped.
pub struct HubProcess {
    child: std::process::Child,
    bin: String,
    /// Its data folder.
    pub data: std::path::PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl HubProcess {
    /// Start `dinh serve` (the binary `DINH_BIN`, else `target/release/dinh`) on `port` with
    /// the data folder `data` (its media on an ephemeral port), and wait until `/healthz`
    /// answers (60 s at most).
    pub fn start(data: &std::path::Path, port: u16) -> Self {
        use std::process::{Command, Stdio};
        let bin = std::env::var("DINH_BIN").unwrap_or_else(|_| "target/release/dinh".into());
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "serve",
                "--listen",
                &listen,
                "--udp",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(data)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run target/release/dinh (cargo build --release --bin dinh -p dinh-web)");
        let hub = Self {
            child,
            bin,
            data: data.to_path_buf(),
            base: format!("http://{listen}"),
        };
        let started = std::time::Instant::now();
        while ureq::get(&format!("{}/healthz", hub.base)).call().is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the hub did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        hub
    }

    /// The hub's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A token of room `demo` for `role` and `id`, minted by `dinh token` from the data
    /// folder's key.
    pub fn token(&self, role: &str, id: &str) -> String {
        let out = std::process::Command::new(&self.bin)
            .args([
                "token", "--role", role, "--room", "demo", "--id", id, "--data",
            ])
            .arg(&self.data)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value after `name` on the command line (`--events 1000000`).
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `n` headcount reports of meeting `id` from its event `seq` on, as one append: the
/// record benches' load.
pub fn headcount_batch(id: &str, seq: u64, n: usize) -> dinh_events::store::Append {
    dinh_events::store::Append {
        aggregate_type: "meeting".into(),
        aggregate_id: id.into(),
        first_sequence: seq,
        events: (0..n)
            .map(|i| {
                (
                    "HeadcountReported".into(),
                    "1".into(),
                    serde_json::json!({"type": "headcount_reported", "house": format!("house-{}", i % 30), "count": i}),
                )
            })
            .collect(),
        command_id: None,
        actor: "system:bench".into(),
        recorded_at: "2026-11-23T01:00:00Z".into(),
        snapshot: None,
    }
}
