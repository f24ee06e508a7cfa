//! Debian's headless Chromium through chromedriver, for the tests that drive the pages.
//! Needs `chromium` and `chromium-driver` (./ops/test installs them); DINH_SKIP_BROWSER=1
//! skips knowingly.
//!
//! The names follow the "pages" helper's `common/browser.rs` (`wanted`, `chromedriver`,
//! `browser_sized`, `wait_js`, `screenshot`), written at the same time on another branch: when
//! both meet, one of the two goes and the Chrome DevTools commands here ([`emulate_print`],
//! [`emulate_phone`]) move into the other.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

/// chromedriver in a process group of its own with the Chromiums it starts, all killed when
/// dropped (killing chromedriver alone leaves its browsers running), pass or panic.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(format!("-{}", self.0.id()))
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether to run browser tests: false (saying so) under DINH_SKIP_BROWSER=1, a clear failure
/// when Chromium is missing.
pub fn wanted() -> bool {
    if std::env::var("DINH_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("DINH_SKIP_BROWSER=1: browser test skipped");
        return false;
    }
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            && std::path::Path::new("/usr/bin/chromedriver").exists(),
        "chromium and chromedriver are needed: run ./ops/test, or apt-get install chromium chromium-driver"
    );
    true
}

/// chromedriver on a free port; returns once it answers.
pub async fn chromedriver() -> (Driver, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (driver, port)
}

/// A browser whose window is `w` × `h` pixels, with a fake camera and microphone, its own
/// profile, and nothing fetched from the internet.
pub async fn browser_sized(port: u16, n: usize, w: u32, h: u32) -> Client {
    // fantoccini's rustls needs a crypto provider chosen; ring is already in the tree.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("dinh-chromium-{}-{n}", std::process::id()));
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", "--hide-scrollbars",
                format!("--window-size={w},{h}"),
                format!("--user-data-dir={}", dir.display()),
            ]
        }
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::rustls()
        .expect("tls")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("chromedriver session")
}

/// A Chrome DevTools command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp(Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.0.to_string()))
    }
}

/// Lay the page out as for printing (`@media print`), or back for the screen.
pub async fn emulate_print(c: &Client, on: bool) {
    c.issue_cmd(Cdp(json!({
        "cmd": "Emulation.setEmulatedMedia",
        "params": {"media": if on { "print" } else { "" }},
    })))
    .await
    .expect("Emulation.setEmulatedMedia");
}

/// Lay pages out as a phone `width` × `height` CSS pixels would (touch, the viewport meta, a
/// layout that widens when content is wider than the screen).
pub async fn emulate_phone(c: &Client, width: u32, height: u32) {
    c.issue_cmd(Cdp(json!({
        "cmd": "Emulation.setDeviceMetricsOverride",
        "params": {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": true},
    })))
    .await
    .expect("Emulation.setDeviceMetricsOverride");
}

/// Run `js` (a function body returning a value) until it returns something truthy, or panic
/// after `secs` (with a screenshot, and the page's error line); the value.
pub async fn wait_js(c: &Client, what: &str, secs: u64, js: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let v = c.execute(js, vec![]).await.unwrap_or(Value::Null);
        let truthy = match &v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        };
        if truthy {
            return v;
        }
        if std::time::Instant::now() > deadline {
            let shot = c.screenshot().await.unwrap_or_default();
            let path = e2e_dir().join(format!("timeout-{}.png", what.replace(' ', "-")));
            let _ = std::fs::write(&path, shot);
            let error = c
                .execute(
                    "const e = document.getElementById('error'); return e && e.textContent",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            panic!(
                "timed out waiting for {what} (last value {v}; the page's error line: {error}; screenshot {})",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// `target/e2e/`, where the screenshots of every page go.
pub fn e2e_dir() -> std::path::PathBuf {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e");
    std::fs::create_dir_all(&out).unwrap();
    out
}

/// Save a screenshot of the page as `target/e2e/NAME.png`.
pub async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.len() > 5_000, "{name}: an empty screenshot");
    std::fs::write(e2e_dir().join(format!("{name}.png")), png).unwrap();
}
