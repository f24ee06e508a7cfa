//! Debian's headless Chromium through chromedriver, for the tests that drive the pages: one
//! chromedriver per test, a browser window per person, each with its own profile.
//!
//! Needs `chromium` and `chromium-driver` (./ops/test installs them). Tests skip knowingly with
//! DINH_SKIP_BROWSER=1 ([`Chromium::start`] returns `None`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

/// A running chromedriver; killed when dropped.
pub struct Chromium {
    driver: Child,
    port: u16,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Chromium {
    /// Start chromedriver and wait until it answers. `None` with DINH_SKIP_BROWSER=1.
    pub async fn start() -> Option<Self> {
        if std::env::var("DINH_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("DINH_SKIP_BROWSER=1: browser test skipped");
            return None;
        }
        assert!(
            std::path::Path::new("/usr/bin/chromium").exists()
                && std::path::Path::new("/usr/bin/chromedriver").exists(),
            "chromium and chromedriver are needed: run ./ops/test, or apt-get install chromium chromium-driver"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver never listened"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Self { driver, port })
    }

    /// A new browser window `width` × `height` CSS pixels, with a fake camera and microphone
    /// and nothing fetched from the internet.
    pub async fn window(&self, name: &str, width: u32, height: u32) -> Client {
        // fantoccini's rustls needs a crypto provider chosen; ring is already in the tree.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = std::env::temp_dir().join(format!(
            "dinh-chromium-{}-{name}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        let caps = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                    "--autoplay-policy=no-user-gesture-required",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-quic", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
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
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("chromedriver session")
    }
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

/// Lay pages out as a phone `width` × `height` CSS pixels wide would (touch, viewport meta).
pub async fn emulate_phone(c: &Client, width: u32, height: u32) {
    c.issue_cmd(Cdp(json!({
        "cmd": "Emulation.setDeviceMetricsOverride",
        "params": {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": true},
    })))
    .await
    .expect("Emulation.setDeviceMetricsOverride");
}

/// Poll `js` (an expression) until it is truthy; its value. Panics after `secs` naming `what`.
pub async fn until(c: &Client, what: &str, secs: u64, js: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let script = format!("return ({js});");
    loop {
        let v = c.execute(&script, vec![]).await.unwrap_or(Value::Null);
        let truthy = match &v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return v;
        }
        if std::time::Instant::now() > deadline {
            let error = c
                .execute(
                    "return document.getElementById('error') && document.getElementById('error').textContent",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            panic!("timed out waiting for {what} (last value {v}; the page's error line: {error})");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Save a screenshot under target/e2e/.
pub async fn screenshot(c: &Client, name: &str) -> Vec<u8> {
    let png = c.screenshot().await.unwrap();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join(format!("{name}.png")), &png).unwrap();
    png
}
