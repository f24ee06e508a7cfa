//! Bad input gets a clear error and the hub keeps serving: tokens, roles, SDP, signalling
//! frames, a client that vanishes mid-handshake, garbage on the media port.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

use common::app::{send, state, token};
use dinh_web::auth::Role;

async fn call(s: &dinh_web::AppState, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let a = send(s, req).await;
    (a.status, a.json())
}

fn whip(token: Option<&str>, room: &str, ctype: &str, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(format!("/whip/{room}")).header("content-type", ctype);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(body.into()).unwrap()
}

#[tokio::test]
async fn whip_refuses_with_clear_errors() {
    let s = state().await;
    let chair = token(&s, Role::Chair, "chair");
    let house = token(&s, Role::House, "house-1");

    let (st, b) = call(&s, whip(None, "demo", "application/sdp", "v=0")).await;
    assert_eq!(
        (st, b["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_missing"))
    );
    let (st, b) = call(
        &s,
        whip(Some("not.a.token"), "demo", "application/sdp", "v=0"),
    )
    .await;
    assert_eq!(
        (st, b["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_invalid"))
    );
    let (st, b) = call(&s, whip(Some(&house), "demo", "application/sdp", "v=0")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        b["message"],
        "a house token cannot publish the meeting; it needs the chair role"
    );
    let (st, b) = call(&s, whip(Some(&chair), "other", "application/sdp", "v=0")).await;
    assert_eq!(
        (st, b["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_room"))
    );
    let (st, _) = call(&s, whip(Some(&chair), "demo", "text/plain", "v=0")).await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (st, b) = call(&s, whip(Some(&chair), "demo", "application/sdp", "hello")).await;
    assert_eq!(
        (st, b["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_sdp"))
    );
    // The video choice of a WHEP player: only full, small or off, and only on WHEP.
    for (room, why) in [
        ("whep/demo?video=huge", "full, small or off"),
        ("whip/demo?video=small", "WHEP player"),
    ] {
        let req = Request::post(format!("/{room}"))
            .header("content-type", "application/sdp")
            .header("authorization", format!("Bearer {chair}"))
            .body(Body::from("v=0"))
            .unwrap();
        let (st, b) = call(&s, req).await;
        assert_eq!(
            (st, b["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_video")),
            "{room}"
        );
        assert!(b["message"].as_str().unwrap_or("").contains(why), "{b}");
    }
    let (st, b) = call(
        &s,
        whip(
            Some(&chair),
            "demo",
            "application/sdp",
            "v=0\r\nm=audio 9 RTP/AVP 0\r\n",
        ),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    let (st, _) = call(
        &s,
        whip(Some(&chair), "demo", "application/sdp", vec![b'v'; 200_000]),
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    let (st, _) = call(
        &s,
        Request::delete("/whip/demo/nope")
            .header("authorization", format!("Bearer {chair}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // PATCH (trickle ICE, ICE restart) needs a token and a live session.
    let res = dinh_web::app(s.clone())
        .oneshot(Request::patch("/whip/demo/x").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let (st, b) = call(
        &s,
        Request::patch("/whip/demo/nope")
            .header("authorization", format!("Bearer {chair}"))
            .header("content-type", "application/trickle-ice-sdpfrag")
            .header("if-match", "*")
            .body(Body::from("a=ice-ufrag:abcd\r\n"))
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, _) = call(&s, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(st, StatusCode::OK);
}

async fn serve() -> (dinh_web::AppState, String) {
    let s = state().await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(dinh_web::run(l, s.clone(), std::future::pending()));
    (s, format!("ws://{addr}"))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] != "room" {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_errors_are_frames_and_the_hub_keeps_serving() {
    let (s, base) = serve().await;
    let house = token(&s, Role::House, "house-1");

    // Refused before the upgrade, with a status.
    let err = tokio_tungstenite::connect_async(format!("{base}/ws/demo?token=bad"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{base}/ws/demo?token={house}"))
        .await
        .unwrap();
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["id"], "house-1");

    let cases: Vec<(Message, &str)> = vec![
        (Message::text(r#"{"type":"launch"}"#), "bad_message"),
        (Message::text("{not json"), "bad_message"),
        (Message::text(r#"{"type":"grant_floor"}"#), "bad_message"),
        (Message::binary(vec![1, 2, 3]), "binary_frame"),
        (
            Message::text(format!(
                r#"{{"type":"offer","sdp":"{}"}}"#,
                "x".repeat(100_000)
            )),
            "frame_too_large",
        ),
        (
            Message::text(r#"{"type":"offer","sdp":"v=0 nonsense"}"#),
            "bad_sdp",
        ),
        (
            Message::text(r#"{"type":"candidate","candidate":"x"}"#),
            "no_session",
        ),
        (
            Message::text(r#"{"type":"audio_only","on":true}"#),
            "no_session",
        ),
        (
            Message::text(r#"{"type":"audio_only","on":"yes"}"#),
            "bad_message",
        ),
        (
            Message::text(r#"{"type":"grant_floor","house":"house-1"}"#),
            "wrong_role",
        ),
        (Message::text(r#"{"type":"raise_hand"}"#), "floor"),
    ];
    for (msg, code) in cases {
        ws.send(msg).await.unwrap();
        let e = next_json(&mut ws).await;
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["code"], code, "{e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(
        next_json(&mut ws).await["type"],
        "pong",
        "still serving after every error"
    );

    // A client that sends an offer and vanishes at once.
    let (mut gone, _) = tokio_tungstenite::connect_async(format!("{base}/ws/demo?token={house}"))
        .await
        .unwrap();
    let _ = next_json(&mut gone).await;
    gone.send(Message::text(
        r#"{"type":"offer","sdp":"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"}"#,
    ))
    .await
    .unwrap();
    drop(gone);

    // Garbage on the media port is counted and dropped.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let media = s.sfu.mux().local_addr().unwrap();
    for i in 0..50u8 {
        udp.send_to(&[i; 64], media).unwrap();
    }
    // STUN-looking junk naming an unknown ufrag, and a truncated STUN header.
    udp.send_to(&[0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0], media)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while s
        .sfu
        .mux()
        .stats
        .unroutable
        .load(std::sync::atomic::Ordering::Relaxed)
        < 51
    {
        assert!(std::time::Instant::now() < deadline, "garbage not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "pong");
    let (mut again, _) = tokio_tungstenite::connect_async(format!("{base}/ws/demo?token={house}"))
        .await
        .unwrap();
    assert_eq!(next_json(&mut again).await["type"], "welcome");
}
