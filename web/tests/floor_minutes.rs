//! The minutes say who had the floor as the houses heard it: a chair and three houses on real
//! WebRTC connections (the testkit's in-process peers) and WebSocket signalling, the floor
//! passed around every way the SFU knows (a holder yielding by lowering its hand, a grant to
//! another house, the chair revoking, the holder leaving), and after each step the test waits
//! for what the other houses hear. The minutes' floor turns must be the same houses in the
//! same order, each ended for the reason it ended.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, Hub};
use dinh_sfu::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use dinh_sfu::testkit::{OnRtp, Peer};
use dinh_web::auth::Role;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Packets received, by (slot, the sender's tag in the payload).
type Heard = Arc<Mutex<HashMap<(String, String), u64>>>;

/// A participant: its signalling socket, its peer connection, and what it has heard.
struct Member {
    ws: Ws,
    peer: Peer,
    heard: Heard,
    sender: tokio::task::JoinHandle<()>,
}

impl Member {
    /// Connect `id` to room `demo`: an offer over signalling, then Opus-sized packets every
    /// 20 ms tagged with its id. A house also receives the floor's voice on a second m-line.
    async fn join(hub: &Hub, role: Role, id: &str) -> Self {
        let token = hub.token(role, id);
        let url = format!("{}/ws/demo?token={token}", hub.base.replace("http", "ws"));
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let heard: Heard = Arc::default();
        let h = heard.clone();
        let on_rtp: OnRtp = Arc::new(move |track_id, p| {
            let slot = track_id.split('-').next().unwrap_or("").to_owned();
            let body = p.payload.get(1..).unwrap_or_default();
            let tag = String::from_utf8_lossy(body)
                .trim_end_matches('\0')
                .to_owned();
            *h.lock().unwrap().entry((slot, tag)).or_default() += 1;
        });
        let mut peer = Peer::new(Some(on_rtp)).await;
        let audio = peer
            .add_sender(RtpCodecKind::Audio, id, dinh_sfu::room::opus_codec(), true)
            .await;
        if role == Role::House {
            peer.add_receiver(RtpCodecKind::Audio).await;
        }
        let offer = peer.offer().await;
        ws.send(Message::text(
            json!({"type": "offer", "sdp": offer}).to_string(),
        ))
        .await
        .unwrap();
        let answer = until(&mut ws, "answer").await;
        peer.accept(answer["sdp"].as_str().unwrap().to_owned())
            .await;
        let tag = id.to_owned();
        let sender = audio.spawn(Duration::from_millis(20), 960, false, move |_| {
            let mut v = vec![0xf8];
            v.extend_from_slice(tag.as_bytes());
            v.resize(80, 0);
            vec![v.into()]
        });
        Self {
            ws,
            peer,
            heard,
            sender,
        }
    }

    /// Packets of `from`'s voice received on the floor slot.
    fn heard_from(&self, from: &str) -> u64 {
        let h = self.heard.lock().unwrap();
        h.get(&("FloorAudio".to_owned(), from.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Send a signalling message of `kind`, with `house` when it names one.
    async fn say(&mut self, kind: &str, house: Option<&str>) {
        let mut m = json!({ "type": kind });
        if let Some(h) = house {
            m["house"] = h.into();
        }
        self.ws.send(Message::text(m.to_string())).await.unwrap();
    }

    async fn leave(self) {
        self.sender.abort();
        let _ = self.peer.pc.close().await;
        drop(self.ws);
    }
}

/// Read frames until one of `kind` (within 20 s); an error frame fails the test.
async fn until(ws: &mut Ws, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await {
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == kind {
            return v;
        }
    }
    panic!("no {kind} frame within 20 s");
}

/// Wait until `who` hears `from` on the floor slot (packets keep arriving).
async fn hears(who: &Member, from: &str) {
    let start = who.heard_from(from);
    eventually(20, &format!("{from} heard"), || async {
        who.heard_from(from) > start + 10
    })
    .await;
}

/// Wait until `who` no longer hears `from`: no new packet for 600 ms (30 packet times).
async fn silent(who: &Member, from: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let before = who.heard_from(from);
        tokio::time::sleep(Duration::from_millis(600)).await;
        if who.heard_from(from) == before {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{from} is still heard"
        );
    }
}

async fn minutes(hub: &Hub) -> Value {
    let chair = hub.token(Role::Chair, "chair");
    let (st, body) = hub.call("GET", "/api/meetings/m1", &chair, None).await;
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minutes_follow_the_floor_the_houses_heard() {
    let hub = Hub::start(|_| {}).await;
    hub.open_meeting("m1").await;

    let mut chair = Member::join(&hub, Role::Chair, "chair").await;
    let mut h1 = Member::join(&hub, Role::House, "house-1").await;
    let h2 = Member::join(&hub, Role::House, "house-2").await;
    let mut h3 = Member::join(&hub, Role::House, "house-3").await;
    // The record knows the houses are there (the room watcher) before the chair acts.
    eventually(20, "three houses connected in the record", || async {
        let m = minutes(&hub).await;
        m["attendance"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| !a["connected_since"].is_null())
            .count()
            == 3
    })
    .await;

    // house-1 asks and gets the floor; then lowers its hand and so yields it.
    h1.say("raise_hand", None).await;
    chair.say("grant_floor", Some("house-1")).await;
    hears(&h2, "house-1").await;
    hears(&chair, "house-1").await;
    h1.say("lower_hand", None).await;
    silent(&h2, "house-1").await;
    silent(&chair, "house-1").await;

    // The chair gives it to house-2, then to house-3 (granted to another), then takes it back.
    chair.say("grant_floor", Some("house-2")).await;
    hears(&h1, "house-2").await;
    chair.say("grant_floor", Some("house-3")).await;
    hears(&h1, "house-3").await;
    silent(&h1, "house-2").await;
    chair.say("revoke_floor", None).await;
    silent(&h1, "house-3").await;

    // house-1 holds it again and drops out.
    chair.say("grant_floor", Some("house-1")).await;
    hears(&h2, "house-1").await;
    h1.leave().await;
    silent(&h2, "house-1").await;
    h3.say("ping", None).await;
    until(&mut h3.ws, "pong").await;

    // What the houses heard, in order, and why each turn ended.
    let heard = [
        ("house-1", "yielded"),
        ("house-2", "granted_to_another"),
        ("house-3", "chair"),
        ("house-1", "left"),
    ];
    eventually(20, "the minutes show four ended turns", || async {
        let m = minutes(&hub).await;
        let floor = m["minutes"]["floor"].as_array().unwrap().clone();
        floor.len() == heard.len() && floor.iter().all(|t| !t["revoked_at"].is_null())
    })
    .await;
    let m = minutes(&hub).await;
    let turns: Vec<(String, String)> = m["minutes"]["floor"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["house"].as_str().unwrap().to_owned(),
                t["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = heard
        .iter()
        .map(|(h, r)| (h.to_string(), r.to_string()))
        .collect();
    assert_eq!(turns, expected);
    // Nobody is still counted as speaking.
    for a in m["attendance"].as_array().unwrap() {
        assert!(a["speaking_since"].is_null(), "{a}");
    }
    assert_eq!(hub.state.sfu.room("demo").state().floor, None);
    chair.leave().await;
    h2.leave().await;
    h3.leave().await;
}
