//! Tokens can be revoked (issue 11 §5): every token has an id, a revocation goes into the
//! record, and from then on the token is refused on every request, its WebSockets close and
//! its event streams and WHIP/WHEP sessions end;
//! after a restart too. A WebSocket also closes when its token expires. `dinh token revoke`
//! does it from the command line, through the running hub or into a stopped hub's record;
//! `dinh serve` prints links only on a terminal, `dinh links` on request.

mod common;

use std::time::Duration;

use common::{dinh, eventually, Hub};
use dinh_sfu::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use dinh_sfu::testkit::Peer;
use dinh_web::auth::Role;
use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(hub: &Hub, token: &str) -> Ws {
    let url = format!("ws://{}/ws/demo?token={token}", hub.addr);
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Read frames until one is an error with `code`, or the socket closes first (panics).
async fn until_error(ws: &mut Ws, code: &str, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {code} within {limit:?}"));
        let Some(Ok(m)) = m else {
            panic!("closed before the {code} frame")
        };
        let text = m.to_text().unwrap_or("").to_owned();
        if text.contains(&format!("\"{code}\"")) {
            break;
        }
    }
    // Then the hub closes the socket.
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(rest.is_ok(), "the socket closes after {code}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_everywhere_and_after_a_restart() {
    let data = common::app::data_dir("tokens");
    let d = data.clone();
    let hub = Hub::start(move |c| c.data = d).await;
    let chair = hub.token(Role::Chair, "chair");
    let house = hub.token(Role::House, "house-1");
    let other_house = hub.token(Role::House, "house-2");
    let mut socket = ws(&hub, &house).await;
    let (st, _) = hub.call("GET", "/api/meetings", &house, None).await;
    assert_eq!(st, 200);

    // A house may not revoke; a chair may not revoke another room's token.
    let (st, v) = hub
        .post(
            "/api/tokens/revoke",
            &other_house,
            json!({ "token": house }),
        )
        .await;
    assert_eq!(st, 403, "{v}");
    let foreign = hub.token_in(Role::Chair, "chair", "xa-khac");
    let (st, v) = hub
        .post("/api/tokens/revoke", &foreign, json!({ "token": house }))
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = hub
        .post("/api/tokens/revoke", &chair, json!({ "token": "garbage" }))
        .await;
    assert_eq!(st, 401, "{v}");
    let (st, v) = hub
        .json("POST", "/api/tokens/revoke", &chair, json!({}))
        .await;
    assert_eq!(st, 422, "{v}");
    // Another room's chair naming the house token's id alone revokes that id in its own room
    // only: the house goes on working.
    let house_jti = hub.state.keys.verify(&house).unwrap().jti;
    let (st, v) = hub
        .post("/api/tokens/revoke", &foreign, json!({ "jti": house_jti }))
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = hub.call("GET", "/api/meetings", &house, None).await;
    assert_eq!(
        st, 200,
        "a revocation in another room leaves this room's token alone"
    );

    // Long-lived answers opened with the house's token: an event stream and a WHEP session.
    let mut sse = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    let ask =
        format!("GET /api/events?token={house} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n");
    sse.write_all(ask.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    sse.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let mut viewer = Peer::new(None).await;
    viewer.add_receiver(RtpCodecKind::Audio).await;
    hub.whep(&house, viewer.offer().await).await;
    assert_eq!(hub.state.sessions.len(), 1);

    // The chair revokes the house's token.
    let (st, v) = hub
        .post(
            "/api/tokens/revoke",
            &chair,
            json!({ "token": house, "reason": "máy tính bảng bị mất" }),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let jti = hub.state.keys.verify(&house).unwrap().jti;
    assert_eq!(v["revoked"], jti.as_str());
    until_error(&mut socket, "token_revoked", Duration::from_secs(5)).await;
    // The event stream ends and the WHEP session is closed.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), sse.read_to_end(&mut rest))
        .await
        .expect("the event stream ends with its token")
        .unwrap();
    eventually(5, "the revoked token's WHEP session closes", || async {
        hub.state.sessions.is_empty()
    })
    .await;
    let (st, body) = hub.call("GET", "/api/meetings", &house, None).await;
    assert_eq!(st, 401);
    assert!(body.contains("token_revoked"), "{body}");
    let url = format!("ws://{}/ws/demo?token={house}", hub.addr);
    let refused = match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("no new WebSocket with a revoked token"),
        Err(e) => e,
    };
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 401),
        other => panic!("expected 401, got {other}"),
    }
    // Other tokens, the same house's included, go on.
    let (st, _) = hub.call("GET", "/api/meetings", &other_house, None).await;
    assert_eq!(st, 200);
    let fresh = hub.token(Role::House, "house-1");
    let (st, _) = hub.call("GET", "/api/meetings", &fresh, None).await;
    assert_eq!(st, 200);
    // Revoking twice changes nothing.
    let (st, v) = hub
        .json("POST", "/api/tokens/revoke", &chair, json!({ "jti": jti }))
        .await;
    assert_eq!(st, 409, "{v}");
    // The record holds it.
    let events = hub.state.recording.store().read(0, 100).await.unwrap();
    let revoked: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "TokenRevoked")
        .collect();
    assert_eq!(revoked.len(), 2);
    assert_eq!(revoked[0].actor, "chair:chair@xa-khac");
    assert_eq!(revoked[0].payload["room"], "xa-khac");
    assert_eq!(revoked[1].actor, "chair:chair@demo");
    assert_eq!(revoked[1].payload["room"], "demo");
    assert_eq!(revoked[1].payload["jti"], jti.as_str());
    assert_eq!(revoked[1].payload["subject"], "house-1");
    hub.stop().await;

    // After a restart on the same data the token is still refused.
    let d = data.clone();
    let hub = Hub::start(move |c| c.data = d).await;
    let (st, body) = hub.call("GET", "/api/meetings", &house, None).await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("token_revoked"), "{body}");
    hub.stop().await;
    let _ = std::fs::remove_dir_all(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_closes_when_its_token_expires() {
    let hub = Hub::start(|_| {}).await;
    let short = hub
        .state
        .keys
        .issue("house-1", "h", Role::House, "demo", Duration::from_secs(2));
    let mut socket = ws(&hub, &short).await;
    let t = std::time::Instant::now();
    until_error(&mut socket, "token_expired", Duration::from_secs(6)).await;
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dinh_token_revoke_through_the_running_hub_or_offline() {
    let hub = Hub::start(|_| {}).await;
    let data = hub.state.config.data.clone();
    let d = data.to_str().unwrap().to_owned();
    let house = hub.token(Role::House, "house-1");
    let addr = hub.addr.to_string();
    let (code, out, err) = dinh(&[
        "token", "revoke", &house, "--reason", "lost", "--data", &d, "--hub", &addr,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let jti = hub.state.keys.verify(&house).unwrap().jti;
    assert!(out.contains(&jti), "{out}");
    let (st, _) = hub.call("GET", "/api/meetings", &house, None).await;
    assert_eq!(st, 401);
    // By id, the room is needed.
    let other = hub.token(Role::House, "house-2");
    let other_jti = hub.state.keys.verify(&other).unwrap().jti;
    let (code, _, err) = dinh(&["token", "revoke", &other_jti, "--data", &d, "--hub", &addr]);
    assert_ne!(code, 0);
    assert!(err.contains("--room"), "{err}");
    // Writing the record itself is refused while the hub runs (it would not learn of it).
    let (code, _, err) = dinh(&[
        "token",
        "revoke",
        &other_jti,
        "--data",
        &d,
        "--hub",
        &addr,
        "--offline",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("a hub answers"), "{err}");
    // With the hub stopped, the CLI says so unless told to write the record itself.
    hub.stop().await;
    let (code, _, err) = dinh(&[
        "token", "revoke", &other_jti, "--room", "demo", "--data", &d, "--hub", &addr,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--offline"), "{err}");
    let (code, out, err) = dinh(&[
        "token",
        "revoke",
        &other_jti,
        "--room",
        "demo",
        "--data",
        &d,
        "--offline",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let d2 = data.clone();
    let hub = Hub::start(move |c| c.data = d2).await;
    let (st, _) = hub.call("GET", "/api/meetings", &other, None).await;
    assert_eq!(st, 401);
    let (st, _) = hub
        .call(
            "GET",
            "/api/meetings",
            &hub.token(Role::House, "house-2"),
            None,
        )
        .await;
    assert_eq!(st, 200);
    hub.stop().await;
    // Tokens minted as before still work: `dinh token` keeps its arguments.
    let (code, out, err) = dinh(&["token", "--role", "house", "--room", "demo", "--data", &d]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim().matches('.').count(), 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_links_only_on_a_terminal_and_links_prints_them_on_request() {
    let data = common::app::data_dir("links");
    let d = data.to_str().unwrap().to_owned();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dinh"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--data",
            &d,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut out = String::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    use tokio::io::AsyncReadExt;
    while !out.contains("dinh links") {
        let n = tokio::time::timeout_at(deadline, stdout.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no start-up output: {out}"))
            .unwrap();
        assert!(n > 0, "the hub stopped: {out}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        !out.contains("token="),
        "no token in a service's output: {out}"
    );
    assert!(
        out.contains("SHA-256: "),
        "the CA fingerprint is printed: {out}"
    );
    assert!(out.contains("update-ca-certificates"), "{out}");
    let _ = child.kill().await;
    let (code, out, err) = dinh(&["links", "--data", &d]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/chair?token="), "{out}");
    assert!(out.contains("/house?token="), "{out}");
    // The data folder is the owner's only, and so are its keys.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for f in [
        "signing.key",
        "tls/ca.key",
        "tls/server.key",
        "record.sqlite",
        "record.key",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    let _ = std::fs::remove_dir_all(data);
}
