//! A real hub on loopback for the loudspeaker tests, a WHIP publisher of a test tone
//! (webrtc-rs, real Opus), and Debian's ffmpeg as the loudspeaker receiver.

#![allow(dead_code)]

pub mod app;
pub mod browser;
pub mod official_page;

use std::process::Stdio;
use std::time::Duration;

use dinh_sfu::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use dinh_sfu::testkit::{LossyLink, Peer};
use dinh_web::auth::Role;
use dinh_web::config::Config;
use dinh_web::AppState;
use tokio::io::AsyncReadExt;

/// A hub serving on loopback.
pub struct Hub {
    pub state: AppState,
    /// `http://127.0.0.1:PORT`, or `https://…` for [`Hub::start_tls`].
    pub base: String,
    /// The listen address.
    pub addr: std::net::SocketAddr,
    /// The hub's own CA (DER) when the base is `https://`: the tests' only trusted root.
    pub ca: Option<Vec<u8>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// An HTTP response.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Hub {
    /// Start a hub; `configure` adjusts the settings (clusters, timings). Plain HTTP: the
    /// tests are on the hub's own machine.
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_with(false, configure).await
    }

    /// Start a hub and talk to it over HTTPS, trusting only its own CA.
    pub async fn start_tls(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_with(true, configure).await
    }

    async fn start_with(https: bool, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = app::config(app::data_dir("hub"));
        config.broadcast.quiet_after_secs = 3;
        configure(&mut config);
        let state = AppState::start(config).await.unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (base, ca) = if https {
            let pem = state
                .tls
                .as_ref()
                .and_then(|t| t.ca_pem())
                .expect("a hub with its own CA");
            use rustls::pki_types::pem::PemObject;
            let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            (format!("https://{addr}"), Some(der.to_vec()))
        } else {
            (format!("http://{addr}"), None)
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(dinh_web::run(l, state.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            state,
            base,
            addr,
            ca,
            stop: Some(tx),
            server: Some(server),
        }
    }

    /// Stop the hub and wait until `run` returns (connections closed, sessions ended).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("the hub stops within 30 s")
                .unwrap()
                .unwrap();
        }
    }

    /// An HTTP agent that trusts the hub's CA (and nothing else) for `https://` bases.
    pub fn agent(ca: Option<&[u8]>) -> ureq::Agent {
        let mut b = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)));
        if let Some(der) = ca {
            let root = ureq::tls::Certificate::from_der(der).to_owned();
            b = b.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&[root]))
                    .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .build(),
            );
        }
        b.build().into()
    }

    /// An hour's token of room `demo`.
    pub fn token(&self, role: Role, sub: &str) -> String {
        self.token_in(role, sub, "demo")
    }

    /// An hour's token of `room`.
    pub fn token_in(&self, role: Role, sub: &str, room: &str) -> String {
        self.state
            .keys
            .issue(sub, sub, role, room, Duration::from_secs(3600))
    }

    /// `PUT path` with a body of `ctype`; status and the answer's text.
    pub async fn put(&self, path: &str, token: &str, ctype: &str, body: Vec<u8>) -> (u16, String) {
        self.call("PUT", path, token, Some((ctype, body))).await
    }

    /// An HTTP request with a bearer token; status and body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, String) {
        let mut headers = vec![("authorization".to_owned(), format!("Bearer {token}"))];
        let body = body.map(|(ctype, bytes)| {
            headers.push(("content-type".to_owned(), ctype.to_owned()));
            bytes
        });
        let r = self.request(method, path, headers, body).await;
        (r.status, r.body)
    }

    /// Watch room `demo` over WHEP: POST the offer, expect 201, return the answer.
    pub async fn whep(&self, token: &str, offer: String) -> String {
        self.whep_with(token, "", offer).await
    }

    /// [`Self::whep`] with a query string (e.g. `?video=off`).
    pub async fn whep_with(&self, token: &str, query: &str, offer: String) -> String {
        let (st, answer) = self
            .call(
                "POST",
                &format!("/whep/demo{query}"),
                token,
                Some(("application/sdp", offer.into_bytes())),
            )
            .await;
        assert_eq!(st, 201, "{answer}");
        answer
    }

    /// Any HTTP request; status, headers (names in lower case) and body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        request(&self.base, self.ca.as_deref(), method, path, headers, body).await
    }

    pub async fn json(
        &self,
        method: &str,
        path: &str,
        token: &str,
        v: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let (s, t) = self
            .call(
                method,
                path,
                token,
                Some(("application/json", v.to_string().into_bytes())),
            )
            .await;
        (
            s,
            serde_json::from_str(&t).unwrap_or(serde_json::Value::Null),
        )
    }

    /// `POST path` with a JSON body; status and the answer as JSON.
    pub async fn post(
        &self,
        path: &str,
        token: &str,
        v: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.json("POST", path, token, v).await
    }

    /// A command to meeting `id` of room `demo`, as the chair; the outcome, which must be 200.
    pub async fn command(&self, id: &str, v: serde_json::Value) -> serde_json::Value {
        let chair = self.token(Role::Chair, "chair");
        let path = format!("/api/meetings/{id}/commands");
        let (st, v) = self.post(&path, &chair, v).await;
        assert_eq!(st, 200, "{v}");
        v
    }

    /// Upload an announcement file as the chair.
    pub async fn upload(&self, name: &str, wav: Vec<u8>) {
        let chair = self.token(Role::Chair, "chair");
        let path = format!("/api/broadcast/files/{name}");
        let (st, body) = self
            .call("PUT", &path, &chair, Some(("audio/wav", wav)))
            .await;
        assert_eq!(st, 201, "{body}");
    }

    /// Schedule meeting `id` in room `demo` and open it, as the chair.
    pub async fn open_meeting(&self, id: &str) {
        self.open_meeting_with(id, &[]).await
    }

    /// Schedule meeting `id` with `agenda` in room `demo` and open it, as the chair.
    pub async fn open_meeting_with(&self, id: &str, agenda: &[&str]) {
        let chair = self.token(Role::Chair, "chair");
        let meeting = serde_json::json!({"id": id, "title": "Họp dân",
            "starts_at": "2026-11-23T08:00:00+07:00", "agenda": agenda});
        let (st, v) = self.post("/api/meetings", &chair, meeting).await;
        assert_eq!(st, 201, "{v}");
        self.command(id, serde_json::json!({"type": "open"})).await;
    }

    pub async fn relay(&self, on: bool) {
        let chair = self.token(Role::Chair, "chair");
        let (s, v) = self
            .json(
                "POST",
                "/api/broadcast/demo/relay",
                &chair,
                serde_json::json!({ "on": on }),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }

    /// Room `demo`'s live HTTP stream, heard with `token`.
    pub fn live_ogg(&self, token: &str) -> Input {
        Input::Url(format!(
            "{}/broadcast/demo/live.ogg?token={token}",
            self.base
        ))
    }

    /// The clusters as the API shows them.
    pub async fn clusters(&self) -> Vec<serde_json::Value> {
        let chair = self.token(Role::Chair, "chair");
        let (s, t) = self.call("GET", "/api/clusters", &chair, None).await;
        assert_eq!(s, 200, "{t}");
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        v["clusters"].as_array().unwrap().clone()
    }

    pub async fn cluster_status(&self, id: &str) -> String {
        self.clusters()
            .await
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["health"]["status"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A count of the RTP packets a test peer receives, and the callback that counts them.
pub fn packet_counter() -> (
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    Option<dinh_sfu::testkit::OnRtp>,
) {
    let got = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let g = got.clone();
    let on_rtp: dinh_sfu::testkit::OnRtp = std::sync::Arc::new(move |_, _| {
        g.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    (got, Some(on_rtp))
}

/// A signalling WebSocket of a test client.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Send `frame` then a ping over signalling; the frames answered before the pong (20 s at
/// most).
pub async fn ask(ws: &mut Ws, frame: &str) -> Vec<String> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(frame)).await.unwrap();
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    let mut got = Vec::new();
    let mut pongs = if frame.contains("\"ping\"") { 2 } else { 1 };
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .unwrap();
        let text = m.to_text().unwrap_or("").to_owned();
        if text.contains("\"pong\"") {
            pongs -= 1;
            if pongs == 0 {
                return got;
            }
            continue;
        }
        got.push(text);
    }
}

/// `dinh ARGS`, the hub's own binary: exit code, stdout, stderr.
pub fn dinh(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dinh"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Any HTTP request to the hub at `base`; status, headers (names in lower case) and body.
/// One HTTP request to `base` (trusting only `ca`, the hub's own CA, for `https://`).
pub async fn request(
    base: &str,
    ca: Option<&[u8]>,
    method: &str,
    path: &str,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
) -> Reply {
    let url = format!("{base}{path}");
    let method = method.to_owned();
    let ca = ca.map(<[u8]>::to_vec);
    tokio::task::spawn_blocking(move || {
        let agent = Hub::agent(ca.as_deref());
        let mut req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let res = match body {
            Some(b) => agent.run(req.body(b).unwrap()),
            None => agent.run(req.body(()).unwrap()),
        };
        let mut res = res.expect("request");
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        Reply {
            status: res.status().as_u16(),
            headers,
            body: res.body_mut().read_to_string().unwrap_or_default(),
        }
    })
    .await
    .unwrap()
}

/// A WHIP publisher sending a sine tone as real Opus, 20 ms packets.
pub struct Tone {
    peer: Peer,
    sender: tokio::task::JoinHandle<()>,
}

impl Tone {
    /// Publish `hz` at peak `amp` into room `demo` as the chair, over WHIP.
    pub async fn publish(hub: &Hub, hz: f64, amp: f32) -> Self {
        Self::publish_via(hub, hz, amp, None).await
    }

    /// [`Tone::publish`] through a lossy link.
    pub async fn publish_via(hub: &Hub, hz: f64, amp: f32, link: Option<&LossyLink>) -> Self {
        let mut peer = Peer::new(None).await;
        let audio = peer
            .add_sender(
                RtpCodecKind::Audio,
                "tone",
                dinh_sfu::room::opus_codec(),
                false,
            )
            .await;
        let offer = peer.offer().await;
        let chair = hub.token(Role::Chair, "chair");
        let (status, answer) = hub
            .call(
                "POST",
                "/whip/demo",
                &chair,
                Some(("application/sdp", offer.into_bytes())),
            )
            .await;
        assert_eq!(status, 201, "{answer}");
        let answer = match link {
            Some(l) => dinh_sfu::sdp::rewrite_candidates(&answer, l.addr),
            None => answer,
        };
        peer.accept(answer).await;
        // As a browser's microphone track: VoIP mode, 32 kbit/s, and in-band FEC because the
        // answer says useinbandfec=1.
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        enc.set_bitrate(opus::Bitrate::Bits(32_000)).unwrap();
        enc.set_inband_fec(true).unwrap();
        enc.set_packet_loss_perc(10).unwrap();
        let sender = audio.spawn(Duration::from_millis(20), 960, false, move |n| {
            let frame: Vec<f32> = (0..960)
                .map(|i| {
                    let t = (n * 960 + i) as f64 / 48_000.0;
                    amp * (2.0 * std::f64::consts::PI * hz * t).sin() as f32
                })
                .collect();
            vec![enc.encode_vec_float(&frame, 1500).unwrap().into()]
        });
        Self { peer, sender }
    }

    pub async fn stop(self) {
        self.sender.abort();
        let _ = self.peer.pc.close().await;
    }
}

/// A free UDP port pair (even RTP port, RTCP on the next).
pub fn free_rtp_port() -> u16 {
    loop {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port();
        if p.is_multiple_of(2)
            && p < 65_000
            && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
}

/// Where ffmpeg reads from.
pub enum Input {
    /// RTP described by an SDP: (address, port, payload type, encoding line).
    Rtp(String, u16, u8, &'static str),
    /// A URL (HTTP Ogg, Icecast).
    Url(String),
}

/// ffmpeg receiving an output.
pub struct Receiver {
    child: tokio::process::Child,
    _sdp: Option<std::path::PathBuf>,
}

/// What ffmpeg measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub hz: f64,
    pub lufs: f64,
}

fn ffmpeg_input(input: &Input) -> (Vec<String>, Option<std::path::PathBuf>) {
    match input {
        Input::Rtp(addr, port, pt, enc) => {
            let sdp = format!(
                "v=0\r\no=- 0 0 IN IP4 {addr}\r\ns=dinh test\r\nc=IN IP4 {addr}/16\r\nt=0 0\r\nm=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {enc}\r\n"
            );
            let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("rx-{}.sdp", uuid::Uuid::new_v4()));
            std::fs::write(&path, sdp).unwrap();
            (
                vec![
                    "-protocol_whitelist".into(),
                    "file,udp,rtp".into(),
                    "-i".into(),
                    path.to_string_lossy().into_owned(),
                ],
                Some(path),
            )
        }
        Input::Url(u) => (vec!["-i".into(), u.clone()], None),
    }
}

impl Receiver {
    /// Receive `secs` seconds and measure the tone from `skip` seconds on (ffmpeg's own
    /// astats and ebur128 filters: an implementation independent of the hub's).
    pub fn measure(input: Input, skip: f64, secs: f64) -> Self {
        let (args, sdp) = ffmpeg_input(&input);
        let filter = format!(
            "aresample=48000,pan=mono|c0=c0,atrim=start={skip},astats=measure_perchannel=Zero_crossings_rate+RMS_level:measure_overall=none,ebur128"
        );
        let child = tokio::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "info"])
            .args(args)
            .args([
                "-t",
                &format!("{}", skip + secs),
                "-af",
                &filter,
                "-f",
                "null",
                "-",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("ffmpeg (Debian package ffmpeg) must be installed");
        Self { child, _sdp: sdp }
    }

    /// Receive `secs` seconds as raw 48 kHz mono samples.
    pub fn record(input: Input, secs: f64) -> Self {
        let (args, sdp) = ffmpeg_input(&input);
        let child = tokio::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(args)
            .args([
                "-t",
                &format!("{secs}"),
                "-af",
                "aresample=48000,pan=mono|c0=c0",
                "-f",
                "s16le",
                "-acodec",
                "pcm_s16le",
                "-",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("ffmpeg (Debian package ffmpeg) must be installed");
        Self { child, _sdp: sdp }
    }

    /// Stop it now (a receiver that goes away).
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Wait for `measure` to finish and read its figures.
    pub async fn measured(mut self, timeout: Duration) -> Measured {
        let mut err = String::new();
        let mut stderr = self.child.stderr.take().unwrap();
        let read = async {
            stderr.read_to_string(&mut err).await.unwrap();
            self.child.wait().await.unwrap()
        };
        let status = tokio::time::timeout(timeout, read)
            .await
            .expect("ffmpeg took too long");
        let summary: String = err
            .lines()
            .filter(|l| !l.contains(" t: "))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(status.success(), "ffmpeg failed:\n{summary}");
        let zcr = summary
            .lines()
            .find_map(|l| l.split("Zero crossings rate:").nth(1))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no astats in:\n{summary}"));
        let lufs = summary
            .lines()
            .skip_while(|l| !l.contains("Integrated loudness"))
            .find_map(|l| l.trim().strip_prefix("I:"))
            .and_then(|v| v.trim().trim_end_matches("LUFS").trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no ebur128 summary in:\n{summary}"));
        Measured {
            hz: zcr * 48_000.0 / 2.0,
            lufs,
        }
    }

    /// Wait for `record` to finish; the samples.
    pub async fn samples(mut self, timeout: Duration) -> Vec<f32> {
        let mut out = Vec::new();
        let mut stdout = self.child.stdout.take().unwrap();
        tokio::time::timeout(timeout, stdout.read_to_end(&mut out))
            .await
            .expect("ffmpeg took too long")
            .unwrap();
        let _ = self.child.wait().await;
        out.chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
            .collect()
    }
}

/// The dominant frequency of each `window`-second stretch, by zero crossings (0 for silence).
pub fn pitch_track(samples: &[f32], window: f64) -> Vec<f64> {
    let n = (48_000.0 * window) as usize;
    samples
        .chunks(n)
        .filter(|c| c.len() == n)
        .map(|c| {
            let rms = (c.iter().map(|x| x * x).sum::<f32>() / n as f32).sqrt();
            if rms < 0.003 {
                return 0.0;
            }
            let z = c
                .windows(2)
                .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
                .count();
            z as f64 / window / 2.0
        })
        .collect()
}

/// Wait until `cond` holds (checked every 100 ms) or panic after `secs`.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
