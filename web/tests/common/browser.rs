//! Headless Chromium for the browser tests: chromedriver, a browser per page with a fake
//! camera and microphone, the page's WebRTC stats, waiting for conditions, screenshots.
//! Needs Debian's `chromium` and `chromium-driver` (./ops/test installs them).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

/// chromedriver in a process group of its own, with the Chromiums it starts. Killing only
/// chromedriver leaves its browsers running (reparented to init, decoding video at full CPU
/// for the rest of the run), so the whole group goes, whether the test passed or panicked.
pub struct Driver(Child);
impl Drop for Driver {
    fn drop(&mut self) {
        // By the system call, not the `kill` command: Debian 12's procps-ng 4.0.2 takes
        // `kill -KILL -PGID` as every process there is (it ended whole test runs, PostgreSQL
        // and all, as a test's browsers closed).
        use nix::sys::signal::{killpg, Signal};
        let _ = killpg(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            Signal::SIGKILL,
        );
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The account the browsers run under when the tests run as root (./ops/test makes it): a
/// browser that loads pages from the network has no business running as root.
pub const BROWSER_USER: &str = "dinh-e2e";

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

pub async fn browser(port: u16, n: usize) -> Client {
    browser_with(port, n, 1280, 720, None).await
}

/// A browser that trusts exactly the hub key whose SPKI SHA-256 (base64) is `spki`, for a
/// hub on `https://` with its own certificate.
pub async fn browser_trusting(port: u16, n: usize, spki: &str) -> Client {
    browser_with(port, n, 1280, 720, Some(spki)).await
}

/// A browser whose window is `w` × `h` pixels (a phone: 400 × 800).
pub async fn browser_sized(port: u16, n: usize, w: u32, h: u32) -> Client {
    browser_with(port, n, w, h, None).await
}

async fn browser_with(port: u16, n: usize, w: u32, h: u32, spki: Option<&str>) -> Client {
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
                "--no-first-run", "--disable-quic", format!("--window-size={w},{h}"),
                // A browser in Vietnam: the pages follow its Accept-Language unless ?lang= says.
                "--accept-lang=vi-VN,vi,en",
                format!("--user-data-dir={}", dir.display()),
            ]
        }
    });
    let mut caps = caps;
    if let Some(spki) = spki {
        // Trust exactly the hub's key (this flag needs --user-data-dir), not every certificate.
        caps["goog:chromeOptions"]["args"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!(
                "--ignore-certificate-errors-spki-list={spki}"
            )));
    }
    let caps = match caps {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    ClientBuilder::rustls()
        .expect("tls")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("chromedriver session")
}

pub async fn stats(c: &Client) -> Value {
    c.execute_async(
        "const cb = arguments[arguments.length - 1]; (window.dinh ? window.dinh.stats() : Promise.resolve({})).then(cb);",
        vec![],
    )
    .await
    .unwrap_or(Value::Null)
}

pub fn inbound(s: &Value, mid: &str) -> (f64, f64) {
    let mut frames = 0.0;
    let mut energy = 0.0;
    for i in s["inbound"].as_array().into_iter().flatten() {
        if i["mid"].as_str() == Some(mid) {
            frames += i["frames"].as_f64().unwrap_or(0.0);
            energy += i["energy"].as_f64().unwrap_or(0.0);
        }
    }
    (frames, energy)
}

/// The width of the last picture decoded on `mid`.
pub fn width(s: &Value, mid: &str) -> f64 {
    s["inbound"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["mid"].as_str() == Some(mid))
        .filter_map(|i| i["width"].as_f64())
        .fold(0.0, f64::max)
}

pub async fn wait_for(c: &Client, what: &str, secs: u64, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let s = stats(c).await;
        if cond(&s) {
            return s;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; last stats: {s}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Whether to run browser tests: false (with a line saying so) under DINH_SKIP_BROWSER=1;
/// a clear failure when Chromium is missing.
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

/// One browser test at a time in a process: each runs several Chromiums with WebRTC on a
/// machine of two cores.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// chromedriver on a free port, stopped when dropped; returns once it answers.
pub async fn chromedriver() -> (Driver, u16) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = if running_as_root() {
        let known = Command::new("id")
            .arg("-u")
            .arg(BROWSER_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            known,
            "as root, the browsers run as the user {BROWSER_USER}: run ./ops/test, or \
             useradd --system --create-home --home-dir /var/lib/{BROWSER_USER} {BROWSER_USER}"
        );
        // Its own user, groups and environment (HOME is its home, for Chromium's caches).
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={BROWSER_USER}"))
            .arg(format!("--regid={BROWSER_USER}"))
            .args(["--clear-groups", "--reset-env", "/usr/bin/chromedriver"]);
        c
    } else {
        Command::new("/usr/bin/chromedriver")
    };
    let driver = Driver(
        cmd.arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (driver, port)
}

/// Run `js` (a function body returning a value) until it returns something truthy, or panic
/// after `secs` (with a screenshot, and the page's error line if it has one); the last value.
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
            // The officials' page says what went wrong in its #error line.
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
        tokio::time::sleep(Duration::from_millis(200)).await;
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

/// Click the element with `id` as a person would (WebDriver's pointer click); an element that
/// is being laid out again gets a few more tries.
pub async fn click(c: &Client, id: &str) {
    let mut last = String::new();
    for _ in 0..20 {
        match c.find(fantoccini::Locator::Id(id)).await {
            Ok(e) => match e.click().await {
                Ok(_) => return,
                Err(err) => last = err.to_string(),
            },
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("click #{id}: {last}");
}

/// Set a form field's value as a person would have typed it.
pub async fn fill(c: &Client, id: &str, value: &str) {
    c.execute(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event('input', {bubbles: true}));",
        vec![json!(id), json!(value)],
    )
    .await
    .unwrap_or_else(|e| panic!("fill #{id}: {e}"));
}

/// Nothing the page did broke its Content-Security-Policy, and its address holds no token.
pub async fn clean_page(c: &Client, name: &str) {
    let v = c
        .execute(
            "return [window.dinhCspViolations || null, location.href]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(v[0], json!([]), "{name}: CSP violations");
    assert!(
        !v[1].as_str().unwrap_or("").contains("token"),
        "{name}: the token is still in the address: {}",
        v[1]
    );
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
