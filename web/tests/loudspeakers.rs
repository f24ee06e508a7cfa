//! The loudspeaker bridge end to end: a 440 Hz tone published over WHIP reaches RTP outputs
//! (Opus and G.711, unicast and multicast), the HTTP Ogg stream and an Icecast2 mount, where
//! Debian's ffmpeg receives it and measures pitch and loudness with its own filters; an
//! emergency announcement takes over every output and gives it back; a cluster that stops
//! answering is marked down and recorded while the others keep playing; bad input is refused;
//! the relay is the record's fact and the bridge follows it; a scheduled bulletin and a
//! cluster added through the API survive a restart; rooms are isolated; uploads are bounded.

mod common;

use std::time::Duration;

use common::{eventually, pitch_track, Hub, Input, Receiver, Tone};
use dinh_broadcast::config::{ClusterConfig, ClusterKind, Codec};
use dinh_web::auth::Role;
use serde_json::json;

fn rtp_cluster(id: &str, port: u16, codec: Codec, target: f64) -> ClusterConfig {
    ClusterConfig {
        id: id.into(),
        name: format!("Cụm loa {id}"),
        room: None,
        kind: ClusterKind::Rtp,
        destination: Some(format!("127.0.0.1:{port}")),
        codec,
        payload_type: None,
        loudness_target: target,
        gain_db: 0.0,
        ttl: 16,
        interface: None,
        password: None,
        heartbeat_secs: None,
    }
}

fn rtp_input(port: u16, codec: Codec) -> Input {
    match codec {
        Codec::Opus => Input::Rtp("127.0.0.1".into(), port, 111, "opus/48000/2"),
        Codec::Pcmu => Input::Rtp("127.0.0.1".into(), port, 0, "PCMU/8000"),
        Codec::Pcma => Input::Rtp("127.0.0.1".into(), port, 8, "PCMA/8000"),
    }
}

fn assert_tone(what: &str, m: common::Measured, hz: f64, lufs: f64) {
    eprintln!("{what}: {:.2} Hz, {:.2} LUFS", m.hz, m.lufs);
    assert!(
        (m.hz - hz).abs() / hz < 0.01,
        "{what}: {:.1} Hz, want {hz} within 1%",
        m.hz
    );
    assert!(
        (m.lufs - lufs).abs() <= 1.0,
        "{what}: {:.1} LUFS, want {lufs} within 1 LU",
        m.lufs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tone_reaches_rtp_and_http_at_its_pitch_and_each_loudness_target() {
    let (p_opus, p_pcmu) = (common::free_rtp_port(), common::free_rtp_port());
    let hub = Hub::start(|c| {
        c.broadcast.clusters = vec![
            rtp_cluster("opus", p_opus, Codec::Opus, -16.0),
            rtp_cluster("pcmu", p_pcmu, Codec::Pcmu, -20.0),
        ];
    })
    .await;
    // A quiet microphone (peak -26 dBFS): the bridge must bring it up to each target.
    let tone = Tone::publish(&hub, 440.0, 0.05).await;
    let house = hub.token(Role::House, "house-1");
    let http = Receiver::measure(hub.live_ogg(&house), 4.0, 5.0);
    let opus = Receiver::measure(rtp_input(p_opus, Codec::Opus), 4.0, 5.0);
    let pcmu = Receiver::measure(rtp_input(p_pcmu, Codec::Pcmu), 4.0, 5.0);
    // The chime plays first on the clusters; the measurement starts after it.
    hub.relay(true).await;
    // While the receivers listen, both clusters are up and play the meeting.
    eventually(30, "both clusters up", || async {
        let c = hub.clusters().await;
        c.len() == 2
            && c.iter()
                .all(|c| c["health"]["status"] == "up" && c["playing"] == "meeting")
    })
    .await;
    let t = Duration::from_secs(30);
    let (http, opus, pcmu) = (
        http.measured(t).await,
        opus.measured(t).await,
        pcmu.measured(t).await,
    );
    assert_tone("HTTP Ogg/Opus stream", http, 440.0, -16.0);
    assert_tone("RTP Opus", opus, 440.0, -16.0);
    assert_tone("RTP PCMU", pcmu, 440.0, -20.0);
    tone.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_uplink_from_the_chair_still_reaches_the_loudspeakers_in_tune() {
    // 5 % of the chair's datagrams lost (and 5 % of what comes back), 30 ms each way: the
    // bridge's jitter buffer rebuilds what it can from Opus FEC and conceals the rest.
    let hub = Hub::start(|_| {}).await;
    let link = dinh_sfu::testkit::LossyLink::start(
        hub.state.sfu.mux().advertised_addr(),
        0.0,
        Duration::from_millis(30),
    )
    .await;
    let tone = Tone::publish_via(&hub, 440.0, 0.1, Some(&link)).await;
    // The loss starts once the chair is connected (the handshake is not what is tested).
    eventually(15, "the chair's audio reaches the bridge", || async {
        let s = hub.state.bridge.input_stats().await;
        s.iter().any(|(r, i)| r == "demo" && i.decoded > 10)
    })
    .await;
    link.set_loss(0.05);
    let house = hub.token(Role::House, "house-1");
    let http = Receiver::measure(hub.live_ogg(&house), 4.0, 6.0);
    let m = http.measured(Duration::from_secs(30)).await;
    let lost = link.dropped[0].load(std::sync::atomic::Ordering::Relaxed);
    assert!(lost > 10, "the link lost only {lost} datagrams");
    assert_tone("HTTP stream over a lossy uplink", m, 440.0, -16.0);
    // Lost packets were rebuilt from the next one's FEC, or concealed.
    let stats = hub.state.bridge.input_stats().await;
    let demo = stats
        .iter()
        .find(|(r, _)| r == "demo")
        .map(|(_, s)| *s)
        .unwrap();
    eprintln!("bridge input over the lossy uplink: {demo:?}");
    assert!(demo.fec + demo.concealed > 0, "{demo:?}");
    assert!(demo.fec > 0, "no packet was rebuilt from FEC: {demo:?}");
    tone.stop().await;
}

fn wav_tone(hz: f64, secs: f64, rate: u32) -> Vec<u8> {
    let mut cur = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
    for n in 0..(rate as f64 * secs) as usize {
        let v = (2.0 * std::f64::consts::PI * hz * n as f64 / rate as f64).sin() * 12_000.0;
        w.write_sample(v as i16).unwrap();
    }
    w.finalize().unwrap();
    cur.into_inner()
}

/// Windows at `hz` (within 2%) in a pitch track.
fn at(track: &[f64], hz: f64) -> Vec<usize> {
    track
        .iter()
        .enumerate()
        .filter(|(_, f)| (**f - hz).abs() / hz < 0.02)
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_replaces_the_meeting_on_every_output_then_the_meeting_comes_back() {
    let (p_opus, p_pcma) = (common::free_rtp_port(), common::free_rtp_port());
    let hub = Hub::start(|c| {
        c.broadcast.chime = false;
        c.broadcast.clusters = vec![
            rtp_cluster("opus", p_opus, Codec::Opus, -16.0),
            rtp_cluster("pcma", p_pcma, Codec::Pcma, -16.0),
        ];
    })
    .await;
    let chair = hub.token(Role::Chair, "chair");
    // The announcement: 3 s of 1 kHz, at 44.1 kHz (resampled by the hub).
    hub.upload("lu-lut.wav", wav_tone(1000.0, 3.0, 44_100))
        .await;
    let tone = Tone::publish(&hub, 440.0, 0.2).await;
    hub.relay(true).await;
    let receivers = [
        (
            "RTP Opus",
            Receiver::record(rtp_input(p_opus, Codec::Opus), 10.0),
        ),
        (
            "RTP PCMA",
            Receiver::record(rtp_input(p_pcma, Codec::Pcma), 10.0),
        ),
        ("HTTP", Receiver::record(hub.live_ogg(&chair), 10.0)),
    ];
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (st, v) = hub
        .post(
            "/api/broadcast/announcements",
            &chair,
            json!({"priority": "emergency", "file": "lu-lut.wav", "chime": false}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    // While it plays, every cluster says so.
    let id = v["id"].as_str().unwrap().to_owned();
    for c in hub.clusters().await {
        assert_eq!(c["playing"], format!("announcement:{id}"), "{c}");
    }
    for (what, r) in receivers {
        let samples = r.samples(Duration::from_secs(30)).await;
        let track = pitch_track(&samples, 0.25);
        let (before, alarm) = (at(&track, 440.0), at(&track, 1000.0));
        assert!(
            alarm.len() >= 8,
            "{what}: the announcement was not heard: {track:?}"
        );
        let (first, last) = (alarm[0], *alarm.last().unwrap());
        assert!(
            before.iter().any(|i| *i < first),
            "{what}: no meeting before: {track:?}"
        );
        assert!(
            before.iter().any(|i| *i > last),
            "{what}: the meeting did not come back: {track:?}"
        );
        // Nothing else in between: the announcement replaced the meeting, not mixed with it.
        assert!(
            track[first..=last]
                .iter()
                .all(|f| (f - 1000.0).abs() / 1000.0 < 0.02 || *f == 0.0),
            "{what}: {track:?}"
        );
    }
    for c in hub.clusters().await {
        assert_eq!(c["playing"], "meeting", "{c}");
    }
    // The record's loudspeaker log has who asked for it, and that it played to its end.
    eventually(10, "the end is in the log", || async {
        loudspeaker_log(&hub)
            .await
            .iter()
            .any(|e| e["event_type"] == "AnnouncementEnded")
    })
    .await;
    let log = loudspeaker_log(&hub).await;
    let started = log
        .iter()
        .find(|e| e["event_type"] == "AnnouncementStarted")
        .expect("started");
    assert_eq!(started["payload"]["priority"], "emergency", "{started}");
    assert_eq!(
        started["payload"]["requested_by"], "chair:chair@demo",
        "{started}"
    );
    assert_eq!(started["payload"]["source"], "lu-lut.wav", "{started}");
    assert_eq!(started["actor"], "system:bridge", "{started}");
    let ended = log
        .iter()
        .find(|e| e["event_type"] == "AnnouncementEnded")
        .expect("ended");
    assert_eq!(ended["payload"]["how"], "played", "{ended}");
    assert!(log
        .iter()
        .any(|e| e["event_type"] == "RelaySwitched" && e["payload"]["on"] == true));
    tone.stop().await;
}

async fn loudspeaker_log(hub: &Hub) -> Vec<serde_json::Value> {
    let official = hub.token(Role::Official, "official");
    let (st, t) = hub
        .call("GET", "/api/broadcast/demo/log", &official, None)
        .await;
    assert_eq!(st, 200, "{t}");
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    v["events"].as_array().unwrap().clone()
}

async fn open_meeting(hub: &Hub) {
    hub.open_meeting("m1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_stops_answering_is_marked_down_and_recorded_while_the_others_play() {
    let (p_gone, p_live) = (common::free_rtp_port(), common::free_rtp_port());
    let hub = Hub::start(|c| {
        let mut smart = rtp_cluster("smart", 9, Codec::Opus, -16.0);
        smart.kind = ClusterKind::Http;
        smart.destination = None;
        smart.heartbeat_secs = Some(1);
        c.broadcast.clusters = vec![
            rtp_cluster("gone", p_gone, Codec::Pcmu, -16.0),
            rtp_cluster("live", p_live, Codec::Opus, -16.0),
            smart,
        ];
    })
    .await;
    open_meeting(&hub).await;
    let tone = Tone::publish(&hub, 440.0, 0.1).await;
    let receiver = hub.token(Role::Receiver, "smart");
    let (st, body) = hub
        .call(
            "POST",
            "/api/clusters/smart/heartbeat",
            &receiver,
            Some((
                "application/json",
                br#"{"status":"ok","volume":80}"#.to_vec(),
            )),
        )
        .await;
    assert_eq!(st, 204, "{body}");
    // A receiver's token opens streams and heartbeats, not the record.
    for path in ["/api/feedback", "/api/events?from=0"] {
        let (st, body) = hub.call("GET", path, &receiver, None).await;
        assert_eq!(st, 403, "{path}: {body}");
        assert!(body.contains("use the record"), "{body}");
    }
    // The smart receiver pulls its own stream.
    let pull = Receiver::record(
        Input::Url(format!(
            "{}/broadcast/clusters/smart/live.ogg?token={receiver}",
            hub.base
        )),
        20.0,
    );
    let gone = Receiver::record(rtp_input(p_gone, Codec::Pcmu), 60.0);
    let live = Receiver::measure(rtp_input(p_live, Codec::Opus), 4.0, 8.0);
    hub.relay(true).await;
    eventually(10, "the smart cluster is up", || async {
        hub.cluster_status("smart").await == "up"
    })
    .await;
    eventually(10, "the RTP cluster is up", || async {
        hub.cluster_status("gone").await == "up"
    })
    .await;
    // Now one receiver goes away (its port answers with ICMP) and the smart one stops
    // sending heartbeats.
    gone.kill().await;
    eventually(10, "the gone cluster is down", || async {
        hub.cluster_status("gone").await == "down"
    })
    .await;
    eventually(10, "the smart cluster is down", || async {
        hub.cluster_status("smart").await == "down"
    })
    .await;
    let clusters = hub.clusters().await;
    let reason = |id: &str| {
        clusters.iter().find(|c| c["id"] == id).unwrap()["health"]["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(reason("gone").contains("unreachable"), "{}", reason("gone"));
    assert!(reason("smart").contains("heartbeat"), "{}", reason("smart"));
    let live_c = clusters.iter().find(|c| c["id"] == "live").unwrap();
    assert_eq!(live_c["health"]["status"], "up", "{live_c}");
    // The other cluster kept playing the meeting all along.
    assert_tone(
        "the cluster still up",
        live.measured(Duration::from_secs(30)).await,
        440.0,
        -16.0,
    );
    drop(pull);
    // The record has both changes, by the bridge, in the open meeting.
    let official = hub.token(Role::Official, "official");
    eventually(10, "the record has the status changes", || async {
        let (_, t) = hub.call("GET", "/api/meetings/m1", &official, None).await;
        let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
        v["minutes"]["clusters"]["gone"] == "down" && v["minutes"]["clusters"]["smart"] == "down"
    })
    .await;
    let (_, t) = hub.call("GET", "/api/meetings/m1", &official, None).await;
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert!(
        v["minutes"]["relay"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{v}"
    );
    tone.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_broadcast_plays_at_its_time_on_its_clusters_only() {
    let (p_a, p_b) = (common::free_rtp_port(), common::free_rtp_port());
    let hub = Hub::start(|c| {
        c.broadcast.chime = false;
        c.broadcast.clusters = vec![
            rtp_cluster("thon-1", p_a, Codec::Pcmu, -16.0),
            rtp_cluster("thon-2", p_b, Codec::Pcmu, -16.0),
        ];
    })
    .await;
    let chair = hub.token(Role::Chair, "chair");
    hub.upload("ban-tin.wav", wav_tone(1000.0, 2.0, 16_000))
        .await;
    let tone = Tone::publish(&hub, 440.0, 0.2).await;
    hub.relay(true).await;
    let a = Receiver::record(rtp_input(p_a, Codec::Pcmu), 8.0);
    let b = Receiver::record(rtp_input(p_b, Codec::Pcmu), 8.0);
    let when = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let when = when
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (st, v) = hub
        .json("POST", "/api/broadcast/announcements", &chair, json!({"id": "ban-tin-sang", "file": "ban-tin.wav", "clusters": ["thon-1"], "at": when, "chime": false}))
        .await;
    assert_eq!((st, v["scheduled"].clone()), (201, json!(true)), "{v}");
    let (a, b) = (
        a.samples(Duration::from_secs(30)).await,
        b.samples(Duration::from_secs(30)).await,
    );
    let (ta, tb) = (pitch_track(&a, 0.25), pitch_track(&b, 0.25));
    // Not at once: the meeting first, then the bulletin, on thon-1 only.
    let first = *at(&ta, 1000.0)
        .first()
        .unwrap_or_else(|| panic!("thon-1 never played it: {ta:?}"));
    assert!(first >= 4, "played before its time: {ta:?}");
    assert!(at(&ta, 1000.0).len() >= 5, "{ta:?}");
    assert!(at(&tb, 1000.0).is_empty(), "thon-2 played it: {tb:?}");
    assert!(
        at(&tb, 440.0).len() >= 20,
        "thon-2 lost the meeting: {tb:?}"
    );
    tone.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_the_relay_keeps_going() {
    // A cluster in the configuration that cannot work is left out; the hub starts anyway.
    let hub = Hub::start(|c| {
        let mut bad = rtp_cluster("bad", 9, Codec::Opus, -16.0);
        bad.destination = Some("nowhere:5004".into());
        let mut good = rtp_cluster("good", 9, Codec::Opus, -16.0);
        good.kind = ClusterKind::Http;
        good.destination = None;
        c.broadcast.clusters = vec![bad, good];
    })
    .await;
    let ids: Vec<_> = hub
        .clusters()
        .await
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["good"]);
    let chair = hub.token(Role::Chair, "chair");
    let house = hub.token(Role::House, "house-1");
    let rx = hub.token(Role::Receiver, "pull-1");
    let other_rx = hub.token(Role::Receiver, "pull-2");
    hub.upload("chuong.wav", wav_tone(440.0, 0.5, 8000)).await;
    enum Body {
        None,
        Json(serde_json::Value),
        Raw(&'static str, Vec<u8>),
    }
    use Body::{Json as J, Raw};
    let ann = "/api/broadcast/announcements";
    // (what, method, path, token, body, status, a word the message must contain)
    let cases: Vec<(&str, &str, &str, &str, Body, u16, &str)> = vec![
        (
            "malformed destination",
            "POST",
            "/api/clusters",
            &chair,
            J(json!({"id": "x", "kind": "rtp", "destination": "not-an-address"})),
            422,
            "destination",
        ),
        (
            "unknown field",
            "POST",
            "/api/clusters",
            &chair,
            J(json!({"id": "x", "kind": "rtp", "colour": 1})),
            422,
            "colour",
        ),
        (
            "a cluster",
            "POST",
            "/api/clusters",
            &chair,
            J(json!({"id": "pull-1", "kind": "http", "heartbeat_secs": 30})),
            201,
            "",
        ),
        (
            "the same again",
            "POST",
            "/api/clusters",
            &chair,
            J(json!({"id": "pull-1", "kind": "http"})),
            409,
            "exists",
        ),
        (
            "a house adds a cluster",
            "POST",
            "/api/clusters",
            &house,
            J(json!({"id": "y", "kind": "http"})),
            403,
            "house",
        ),
        (
            "heartbeat, unknown cluster",
            "POST",
            "/api/clusters/nope/heartbeat",
            &rx,
            J(json!({"status": "ok"})),
            404,
            "nope",
        ),
        (
            "heartbeat, bad status",
            "POST",
            "/api/clusters/pull-1/heartbeat",
            &rx,
            J(json!({"status": "loud"})),
            422,
            "status",
        ),
        (
            "heartbeat, bad volume",
            "POST",
            "/api/clusters/pull-1/heartbeat",
            &rx,
            J(json!({"status": "ok", "volume": 300})),
            422,
            "",
        ),
        (
            "heartbeat, another cluster's receiver",
            "POST",
            "/api/clusters/pull-1/heartbeat",
            &other_rx,
            J(json!({"status": "ok"})),
            403,
            "receiver",
        ),
        (
            "heartbeat, no token",
            "POST",
            "/api/clusters/pull-1/heartbeat",
            "",
            J(json!({"status": "ok"})),
            401,
            "token",
        ),
        (
            "heartbeat",
            "POST",
            "/api/clusters/pull-1/heartbeat",
            &rx,
            J(json!({"status": "ok", "volume": 55})),
            204,
            "",
        ),
        (
            "a receiver reads the record",
            "GET",
            "/api/meetings",
            &rx,
            Body::None,
            403,
            "receiver",
        ),
        (
            "missing file",
            "POST",
            ann,
            &chair,
            J(json!({"file": "missing.wav"})),
            404,
            "upload",
        ),
        (
            "not audio",
            "PUT",
            "/api/broadcast/files/notes.wav",
            &chair,
            Raw("audio/wav", b"ID3 this is an mp3".to_vec()),
            422,
            "WAV",
        ),
        (
            "a path in the name",
            "PUT",
            "/api/broadcast/files/..%2Fetc.wav",
            &chair,
            Raw("audio/wav", wav_tone(440.0, 0.5, 8000)),
            422,
            "NAME",
        ),
        (
            "unknown cluster",
            "POST",
            ann,
            &chair,
            J(json!({"file": "chuong.wav", "clusters": ["nope"]})),
            404,
            "nope",
        ),
        (
            "two sources",
            "POST",
            ann,
            &chair,
            J(json!({"file": "chuong.wav", "live_room": "demo"})),
            422,
            "either",
        ),
        (
            "unknown priority",
            "POST",
            ann,
            &chair,
            J(json!({"file": "chuong.wav", "priority": "urgent"})),
            422,
            "urgent",
        ),
        (
            "bad time",
            "POST",
            ann,
            &chair,
            J(json!({"file": "chuong.wav", "at": "tomorrow"})),
            422,
            "RFC 3339",
        ),
        (
            "a house announces",
            "POST",
            ann,
            &house,
            J(json!({"file": "chuong.wav"})),
            403,
            "house",
        ),
        (
            "stop nothing",
            "DELETE",
            "/api/broadcast/announcements/nope",
            &chair,
            Body::None,
            404,
            "",
        ),
        (
            "stream, no token",
            "GET",
            "/broadcast/demo/live.ogg",
            "",
            Body::None,
            401,
            "token",
        ),
        (
            "stream, unknown room",
            "GET",
            "/broadcast/nowhere/live.ogg",
            &house,
            Body::None,
            404,
            "nowhere",
        ),
        (
            "a house starts the relay",
            "POST",
            "/api/broadcast/demo/relay",
            &house,
            J(json!({"on": true})),
            403,
            "house",
        ),
        (
            "relay, not JSON",
            "POST",
            "/api/broadcast/demo/relay",
            &chair,
            Raw("text/plain", b"on".to_vec()),
            415,
            "json",
        ),
        (
            "remove a cluster configured in dinh.toml",
            "DELETE",
            "/api/clusters/good",
            &chair,
            Body::None,
            409,
            "dinh.toml",
        ),
        (
            "a schedule",
            "POST",
            ann,
            &chair,
            J(
                json!({"id": "sang-mai", "file": "chuong.wav", "clusters": ["pull-1"], "at": "2099-01-01T06:00:00+07:00"}),
            ),
            201,
            "scheduled",
        ),
    ];
    for (what, method, path, token, body, want, word) in cases {
        let body = match body {
            Body::None => None,
            Body::Json(v) => Some(("application/json", v.to_string().into_bytes())),
            Body::Raw(c, b) => Some((c, b)),
        };
        let (st, text) = hub.call(method, path, token, body).await;
        assert_eq!(st, want, "{what}: {text}");
        assert!(
            text.contains(word),
            "{what}: the answer does not say '{word}': {text}"
        );
    }
    // The scheduled broadcast is listed, then cancelled.
    let (_, t) = hub.call("GET", ann, &chair, None).await;
    assert!(t.contains("sang-mai"), "{t}");
    assert_eq!(
        hub.call(
            "DELETE",
            "/api/broadcast/announcements/sang-mai",
            &chair,
            None
        )
        .await
        .0,
        204
    );
    // After all that, the hub still serves the stream.
    let r = Receiver::record(hub.live_ogg(&house), 1.0);
    let samples = r.samples(Duration::from_secs(20)).await;
    assert!(samples.len() >= 40_000, "{}", samples.len());
    // And /metrics shows the bridge and the forwarding histogram (nothing forwarded here).
    let official = hub.token(Role::Official, "can-bo-1");
    let (st, m) = hub.call("GET", "/metrics", &official, None).await;
    assert_eq!(st, 200);
    for line in [
        "dinh_broadcast_clusters{status=\"up\"} ",
        "dinh_broadcast_ogg_pages_total ",
        "dinh_forward_latency_us_count 0",
        "dinh_broadcast_input_packets_total{outcome=\"fec\"} 0",
    ] {
        assert!(m.contains(line), "{line} not in:\n{m}");
    }
}

/// Start Icecast2 as its own user (it refuses root) on a free port, with the configuration
/// in ops/deploy/icecast.xml.
struct Icecast {
    child: tokio::process::Child,
    port: u16,
    /// Its settings file, which names this server in the process list.
    conf: std::path::PathBuf,
}

impl Icecast {
    async fn start(password: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = common::app::data_dir("icecast");
        std::fs::create_dir_all(&dir).unwrap();
        let root = common::browser::running_as_root();
        // The configuration shipped for deployers, with this test's port, password and logs.
        let shipped = include_str!("../../ops/deploy/icecast.xml");
        let mut conf = shipped.to_owned();
        for (from, to) in [
            (
                "<port>8000</port>".to_owned(),
                format!("<port>{port}</port><bind-address>127.0.0.1</bind-address>"),
            ),
            ("change-me-source".to_owned(), password.to_owned()),
            (
                "<logdir>/var/log/icecast2</logdir>".to_owned(),
                format!("<logdir>{}</logdir>", dir.display()),
            ),
        ] {
            assert!(conf.contains(&from), "ops/deploy/icecast.xml lost {from}");
            conf = conf.replace(&from, &to);
        }
        let path = dir.join("icecast.xml");
        std::fs::write(&path, conf).unwrap();
        let mut cmd = if root {
            // icecast2 refuses to run as root: run it as the user its package made.
            std::process::Command::new("chown")
                .args(["-R", "icecast2", &dir.to_string_lossy()])
                .status()
                .unwrap();
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "icecast2", "--", "icecast2", "-c"])
                .arg(&path);
            c
        } else {
            let mut c = tokio::process::Command::new("icecast2");
            c.arg("-c").arg(&path);
            c
        };
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("icecast2 (Debian package icecast2) must be installed");
        eventually(10, "icecast2 listens", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Self {
            child,
            port,
            conf: path,
        }
    }
}

impl Drop for Icecast {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // runuser does not pass the kill on: end the server itself, found by its settings
        // file (its command line names the file, not the port).
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f"])
            .arg(format!("icecast2 -c {}", self.conf.display()))
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_icecast_mount_carries_the_tone_and_a_dead_server_is_a_status_not_a_stop() {
    let ice = Icecast::start("nguon-loa").await;
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ice_cluster = |id: &str, port: u16| {
        let mut c = rtp_cluster(id, 9, Codec::Opus, -16.0);
        c.kind = ClusterKind::Icecast;
        c.destination = Some(format!("http://127.0.0.1:{port}/loa-{id}.ogg"));
        c.password = Some("nguon-loa".into());
        c
    };
    let hub = Hub::start(|c| {
        c.broadcast.clusters = vec![ice_cluster("ice", ice.port), ice_cluster("dead", dead_port)];
    })
    .await;
    let tone = Tone::publish(&hub, 440.0, 0.1).await;
    hub.relay(true).await;
    eventually(15, "the mount is up", || async {
        hub.cluster_status("ice").await == "up"
    })
    .await;
    let listener = Receiver::measure(
        Input::Url(format!("http://127.0.0.1:{}/loa-ice.ogg", ice.port)),
        4.0,
        5.0,
    );
    eventually(15, "the dead server is down", || async {
        hub.cluster_status("dead").await == "down"
    })
    .await;
    // The listener shows in the cluster's health (from the server's status-json.xsl).
    eventually(20, "the listener is counted", || async {
        hub.clusters()
            .await
            .iter()
            .any(|c| c["id"] == "ice" && c["health"]["listeners"].as_u64().unwrap_or(0) >= 1)
    })
    .await;
    assert_tone(
        "Icecast mount",
        listener.measured(Duration::from_secs(40)).await,
        440.0,
        -16.0,
    );
    let dead = hub
        .clusters()
        .await
        .into_iter()
        .find(|c| c["id"] == "dead")
        .unwrap();
    assert!(
        dead["health"]["reason"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{dead}"
    );
    tone.stop().await;
}

#[test]
fn multicast_reaches_a_receiver_in_a_network_namespace() {
    // Loopback has no multicast outside a namespace of our own: re-run the inner test in one.
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "ip link set lo up multicast on && ip route add 224.0.0.0/4 dev lo && exec '{}' --exact multicast_inner --ignored --nocapture --test-threads=1",
        exe.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-r", "-n", "--", "sh", "-c", &script])
        .env("DINH_IN_NETNS", "1")
        .output()
        .expect("unshare (util-linux) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the inner test failed (it needs a network namespace: root, or unprivileged user namespaces):\n{text}"
    );
    assert!(text.contains("1 passed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the network namespace that multicast_reaches_a_receiver_in_a_network_namespace makes"]
async fn multicast_inner() {
    if std::env::var_os("DINH_IN_NETNS").is_none() {
        eprintln!("not in a network namespace: nothing to do");
        return;
    }
    let port = common::free_rtp_port();
    let group = "239.10.0.1";
    let hub = Hub::start(|c| {
        let mut m = rtp_cluster("thon-3", port, Codec::Pcmu, -18.0);
        m.destination = Some(format!("{group}:{port}"));
        m.ttl = 4;
        c.broadcast.clusters = vec![m];
    })
    .await;
    let tone = Tone::publish(&hub, 440.0, 0.1).await;
    let rx = Receiver::measure(Input::Rtp(group.into(), port, 0, "PCMU/8000"), 4.0, 5.0);
    hub.relay(true).await;
    assert_tone(
        "RTP PCMU multicast",
        rx.measured(Duration::from_secs(30)).await,
        440.0,
        -18.0,
    );
    tone.stop().await;
}

/// Every event of the record.
async fn record(hub: &Hub) -> Vec<dinh_events::chain::StoredEvent> {
    hub.state.recording.store().read(0, 100_000).await.unwrap()
}

/// Events of one type in the record.
async fn count(hub: &Hub, event_type: &str) -> usize {
    record(hub)
        .await
        .iter()
        .filter(|e| e.event_type == event_type)
        .count()
}

/// What a cluster plays now.
async fn playing(hub: &Hub, id: &str) -> String {
    hub.state
        .bridge
        .clusters()
        .await
        .into_iter()
        .find(|c| c.config.id == id)
        .unwrap()
        .playing
}

/// The files a token's room lists.
async fn file_names(hub: &Hub, token: &str) -> serde_json::Value {
    let (_, t) = hub.call("GET", "/api/broadcast/files", token, None).await;
    serde_json::from_str::<serde_json::Value>(&t).unwrap()["files"].clone()
}

fn http_cluster(id: &str, room: &str) -> ClusterConfig {
    let mut c = rtp_cluster(id, 9, Codec::Opus, -16.0);
    c.kind = ClusterKind::Http;
    c.destination = None;
    c.room = Some(room.into());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_is_the_records_fact_switched_once_and_followed_by_the_bridge() {
    let hub = Hub::start(|c| {
        c.broadcast.clusters = vec![http_cluster("loa-1", "demo")];
    })
    .await;
    open_meeting(&hub).await;
    hub.relay(true).await;
    // The answer comes once the bridge follows: no waiting needed.
    assert_eq!(hub.state.bridge.relays().await, ["demo"]);
    // Asked again, nothing changes and nothing is appended.
    hub.relay(true).await;
    let switched = |log: &[dinh_events::chain::StoredEvent]| -> Vec<(String, bool)> {
        log.iter()
            .filter(|e| e.event_type == "RelaySwitched")
            .map(|e| (e.actor.clone(), e.payload["on"] == true))
            .collect()
    };
    // One fact, by the chair of this room; the bridge no longer echoes it.
    assert_eq!(
        switched(&record(&hub).await),
        [("chair:chair@demo".to_owned(), true)]
    );
    assert!(!record(&hub)
        .await
        .iter()
        .any(|e| e.event_type == "RelayStarted"));
    // Closing the meeting stops the room's relay, as a fact of its own.
    hub.command("m1", json!({"type": "close"})).await;
    eventually(10, "the relay stops with the meeting", || async {
        hub.state.bridge.relays().await.is_empty()
    })
    .await;
    assert_eq!(
        switched(&record(&hub).await),
        [
            ("chair:chair@demo".to_owned(), true),
            ("system:meeting".to_owned(), false)
        ]
    );
    // The minutes show the relay from the room's loudspeakers, closed with the meeting.
    let official = hub.token(Role::Official, "official");
    let (_, t) = hub.call("GET", "/api/meetings/m1", &official, None).await;
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    let relay = v["minutes"]["relay"].as_array().unwrap();
    assert_eq!(relay.len(), 1, "{v}");
    assert!(relay[0][1].is_string(), "{v}");
}

/// The commune of the isolation test: room `demo` and room `xom-2`.
fn two_rooms(data: &std::path::Path) {
    std::fs::create_dir_all(data).unwrap();
    let room = |id: &str, n: u32| json!({"id": id, "title": format!("Phòng {id}"), "houses": [{"id": format!("house-{n}"), "name": format!("Nhà văn hoá {n}")}]});
    let commune = json!({"name": "Xã hai phòng", "rooms": [room("demo", 1), room("xom-2", 2)]});
    std::fs::write(data.join("commune.json"), commune.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_isolated_in_the_loudspeaker_api() {
    let hub = Hub::start(|c| {
        two_rooms(&c.data);
        c.broadcast.chime = false;
        c.broadcast.clusters = vec![http_cluster("a-1", "demo"), http_cluster("b-1", "xom-2")];
    })
    .await;
    let chair_a = hub.token(Role::Chair, "chair");
    let official_a = hub.token(Role::Official, "can-bo-1");
    let chair_b = hub.token_in(Role::Chair, "chair", "xom-2");
    let official_b = hub.token_in(Role::Official, "can-bo-1", "xom-2");
    let ann = "/api/broadcast/announcements";
    // Room B: a file, a bulletin scheduled on its cluster, its relay on.
    let b_file = wav_tone(600.0, 2.0, 8000);
    let (st, t) = hub
        .put(
            "/api/broadcast/files/ban-tin.wav",
            &chair_b,
            "audio/wav",
            b_file.clone(),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let (st, v) = hub
        .json("POST", ann, &chair_b, json!({"id": "b-sang", "file": "ban-tin.wav", "clusters": ["b-1"], "at": "2099-01-01T06:00:00+07:00"}))
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = hub
        .post("/api/broadcast/xom-2/relay", &chair_b, json!({"on": true}))
        .await;
    assert_eq!(st, 200, "{v}");
    // Room A's chair has a file of its own.
    hub.upload("lu-lut.wav", wav_tone(1000.0, 30.0, 8000)).await;
    let by_a = |log: &[dinh_events::chain::StoredEvent], after: u64| -> Vec<String> {
        log.iter()
            .filter(|e| e.position > after && e.actor == "chair:chair@demo")
            .map(|e| format!("{} {}", e.aggregate_id, e.event_type))
            .collect()
    };
    // Each reproduction of issue 11 §3, refused: nothing appended, nothing played.
    let before = hub.state.recording.store().head();
    let refused: Vec<(&str, &str, String, Option<serde_json::Value>, u16)> = vec![
        (
            "an emergency on room B's cluster",
            "POST",
            ann.to_owned(),
            Some(json!({"priority": "emergency", "file": "lu-lut.wav", "clusters": ["b-1"]})),
            404,
        ),
        (
            "cancel room B's scheduled bulletin",
            "DELETE",
            format!("{ann}/b-sang"),
            None,
            404,
        ),
        (
            "remove room B's cluster",
            "DELETE",
            "/api/clusters/b-1".into(),
            None,
            404,
        ),
        (
            "a heartbeat for room B's cluster",
            "POST",
            "/api/clusters/b-1/heartbeat".into(),
            Some(json!({"status": "fault"})),
            404,
        ),
        (
            "play room B's file",
            "POST",
            ann.to_owned(),
            Some(json!({"file": "ban-tin.wav"})),
            404,
        ),
        (
            "room B's relay",
            "POST",
            "/api/broadcast/xom-2/relay".into(),
            Some(json!({"on": false})),
            403,
        ),
        (
            "room B's log",
            "GET",
            "/api/broadcast/xom-2/log".into(),
            None,
            403,
        ),
        (
            "room B's cluster stream",
            "GET",
            "/broadcast/clusters/b-1/live.ogg".into(),
            None,
            404,
        ),
    ];
    for (what, method, path, body, want) in refused {
        let body = body.map(|v| ("application/json", v.to_string().into_bytes()));
        let (st, text) = hub.call(method, &path, &chair_a, body).await;
        assert_eq!(st, want, "{what}: {text}");
        assert!(
            !text.contains("xom-2") || want == 403,
            "{what} reveals room B: {text}"
        );
    }
    assert_eq!(by_a(&record(&hub).await, before), Vec::<String>::new());
    assert_eq!(playing(&hub, "b-1").await, "meeting");
    // An emergency with no clusters named plays on room A's outputs only.
    let (st, v) = hub
        .post(
            ann,
            &chair_a,
            json!({"priority": "emergency", "file": "lu-lut.wav", "chime": false}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let a1 = hub.clusters().await;
    assert_eq!(a1.len(), 1, "room A sees only its cluster: {a1:?}");
    assert_eq!(a1[0]["playing"], format!("announcement:{id}"));
    assert_eq!(playing(&hub, "b-1").await, "meeting");
    eventually(10, "the start is recorded", || async {
        record(&hub)
            .await
            .iter()
            .any(|e| e.event_type == "AnnouncementStarted")
    })
    .await;
    let log = record(&hub).await;
    let started: Vec<_> = log
        .iter()
        .filter(|e| e.event_type == "AnnouncementStarted")
        .collect();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].aggregate_id, "demo");
    assert_eq!(started[0].payload["requested_by"], "chair:chair@demo");
    // Room A's chair uploads a file of the same name: its own, room B's is untouched; and
    // deleting it deletes room A's.
    let (st, t) = hub
        .put(
            "/api/broadcast/files/ban-tin.wav",
            &chair_a,
            "audio/wav",
            wav_tone(900.0, 1.0, 8000),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let (st, t) = hub
        .call("DELETE", "/api/broadcast/files/ban-tin.wav", &chair_a, None)
        .await;
    assert_eq!(st, 204, "{t}");
    let b_dir = hub
        .state
        .config
        .data
        .join("announcements/xom-2/ban-tin.wav");
    assert_eq!(std::fs::read(&b_dir).unwrap(), b_file);
    // Lists hold the caller's room only.
    let (_, t) = hub.call("GET", ann, &official_a, None).await;
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["scheduled"], json!([]), "{v}");
    assert_eq!(v["relays"], json!([]), "{v}");
    assert_eq!(v["clusters"].as_array().unwrap().len(), 1, "{v}");
    let (_, t) = hub.call("GET", ann, &official_b, None).await;
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["scheduled"][0]["id"], "b-sang", "{v}");
    assert_eq!(v["relays"], json!(["xom-2"]), "{v}");
    assert_eq!(v["clusters"][0]["cluster"], "b-1", "{v}");
    assert_eq!(file_names(&hub, &official_a).await, json!(["lu-lut.wav"]));
    assert_eq!(file_names(&hub, &official_b).await, json!(["ban-tin.wav"]));
    let (_, t) = hub.call("GET", "/api/clusters", &official_b, None).await;
    assert!(t.contains("b-1") && !t.contains("a-1"), "{t}");
    // Room B's chair still has everything, and is named with its room in the record.
    let (st, _) = hub
        .call("DELETE", &format!("{ann}/b-sang"), &chair_b, None)
        .await;
    assert_eq!(st, 204);
    let log = record(&hub).await;
    let cancel = log
        .iter()
        .find(|e| e.event_type == "AnnouncementCancelled")
        .unwrap();
    assert_eq!(
        (cancel.aggregate_id.as_str(), cancel.actor.as_str()),
        ("xom-2", "chair:chair@xom-2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_bulletin_and_a_cluster_added_through_the_api_survive_a_restart() {
    let port = common::free_rtp_port();
    let data = common::app::data_dir("restart");
    let quiet = |c: &mut dinh_web::config::Config| {
        c.broadcast.chime = false;
    };
    let hub = Hub::start(|c| {
        c.data = data.clone();
        quiet(c);
    })
    .await;
    let chair = hub.token(Role::Chair, "chair");
    // The cluster comes through the API, not the configuration.
    let (st, v) = hub
        .post(
            "/api/clusters",
            &chair,
            serde_json::to_value(rtp_cluster("thon-9", port, Codec::Pcmu, -16.0)).unwrap(),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    hub.upload("ban-tin.wav", wav_tone(1000.0, 2.0, 16_000))
        .await;
    hub.relay(true).await;
    let due = time::OffsetDateTime::now_utc() + time::Duration::seconds(20);
    let at_text = due
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (st, v) = hub
        .json("POST", "/api/broadcast/announcements", &chair, json!({"id": "ban-tin-sang", "file": "ban-tin.wav", "clusters": ["thon-9"], "at": at_text, "chime": false}))
        .await;
    assert_eq!((st, v["scheduled"].clone()), (201, json!(true)), "{v}");
    // An emergency is playing when the hub goes down.
    // Its pitch is above the others: a window that spans the bulletin's end and the meeting's
    // 440 Hz reads as a pitch between them (712 Hz was seen), which a 700 Hz tone would match.
    hub.upload("lu.wav", wav_tone(1500.0, 60.0, 8000)).await;
    let (st, v) = hub
        .post(
            "/api/broadcast/announcements",
            &chair,
            json!({"id": "lu", "priority": "emergency", "file": "lu.wav", "chime": false}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    eventually(10, "the emergency's start is recorded", || async {
        count(&hub, "AnnouncementStarted").await == 1
    })
    .await;
    // The hub goes down.
    let old_bridge = hub.state.bridge.clone();
    let base = hub.base.clone();
    drop(hub);
    eventually(20, "the first hub is down", || async {
        old_bridge.clusters().await.is_empty()
            && std::net::TcpStream::connect(base.trim_start_matches("http://")).is_err()
    })
    .await;
    // And comes back on the same data, with nothing in its configuration.
    let hub = Hub::start(|c| {
        c.data = data.clone();
        quiet(c);
    })
    .await;
    let clusters = hub.clusters().await;
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    assert_eq!(clusters[0]["id"], "thon-9");
    assert_eq!(hub.state.bridge.relays().await, ["demo"]);
    let chair = hub.token(Role::Chair, "chair");
    let (_, t) = hub
        .call("GET", "/api/broadcast/announcements", &chair, None)
        .await;
    assert!(t.contains("ban-tin-sang"), "{t}");
    let tone = Tone::publish(&hub, 440.0, 0.2).await;
    let left = (due - time::OffsetDateTime::now_utc()).as_seconds_f64();
    assert!(left > 3.0, "the restart took too long: {left:.1} s left");
    let rx = Receiver::record(rtp_input(port, Codec::Pcmu), left + 5.0);
    let samples = rx.samples(Duration::from_secs(60)).await;
    let track = pitch_track(&samples, 0.25);
    let bulletin = at(&track, 1000.0);
    assert!(bulletin.len() >= 5, "the bulletin was not heard: {track:?}");
    // The emergency cut by the restart is not resumed, and the record says it stopped.
    assert!(at(&track, 1500.0).is_empty(), "{track:?}");
    let log = record(&hub).await;
    let cut = log
        .iter()
        .find(|e| e.event_type == "AnnouncementEnded" && e.payload["announcement"] == "lu")
        .expect("the cut emergency ended");
    assert_eq!(
        (cut.payload["how"].as_str(), cut.actor.as_str()),
        (Some("stopped"), "system:bridge")
    );
    assert!(
        at(&track, 440.0).iter().any(|i| *i < bulletin[0]),
        "the relay did not come back before it: {track:?}"
    );
    // It started at its time: the bridge's own report, within a second.
    eventually(10, "the start is recorded", || async {
        count(&hub, "AnnouncementStarted").await == 2
    })
    .await;
    let log = record(&hub).await;
    let started = log
        .iter()
        .find(|e| {
            e.event_type == "AnnouncementStarted" && e.payload["announcement"] == "ban-tin-sang"
        })
        .unwrap();
    let when = time::OffsetDateTime::parse(
        &started.recorded_at,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let late = (when - due).as_seconds_f64();
    eprintln!("the bulletin started {late:.3} s after its time");
    assert!(
        (0.0..1.0).contains(&late),
        "started {late:.3} s from its time"
    );
    assert_eq!(started.payload["requested_by"], "chair:chair@demo");
    tone.stop().await;
}

/// A WAV header whose data chunk claims `claimed` samples, followed by `held` zero bytes.
fn wav_claiming(rate: u32, bits: u16, claimed: u32, held: usize) -> Vec<u8> {
    let block = bits as u32 / 8;
    let data = claimed * block;
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * block).to_le_bytes());
    h.extend_from_slice(&(block as u16).to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data.to_le_bytes());
    h.extend(std::iter::repeat_n(0x80u8, held));
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_bounded_in_length_in_flight_one_at_a_time_and_by_a_quota() {
    let hub = Hub::start(|c| c.broadcast.files_quota_mb = 1).await;
    let chair = hub.token(Role::Chair, "chair");
    let put = |name: &str, wav: Vec<u8>| {
        let hub = &hub;
        let chair = chair.clone();
        let path = format!("/api/broadcast/files/{name}");
        async move {
            hub.call("PUT", &path, &chair, Some(("audio/wav", wav)))
                .await
        }
    };
    // Longer than an hour by its header: refused before decoding, though the body is 8 KB.
    let t0 = std::time::Instant::now();
    let (st, t) = put("dai.wav", wav_claiming(8000, 8, 8000 * 3601, 8000)).await;
    assert_eq!(st, 422, "{t}");
    assert!(t.contains("longer than 3600 s"), "{t}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The quota: 1 MB per room. 40 s of 16-bit 8 kHz is 640 KB; a second one is refused.
    let (st, t) = put("a.wav", wav_tone(440.0, 40.0, 8000)).await;
    assert_eq!(st, 201, "{t}");
    let (st, t) = put("b.wav", wav_tone(440.0, 40.0, 8000)).await;
    assert_eq!(st, 507, "{t}");
    assert!(t.contains("quota"), "{t}");
    assert_eq!(
        count(&hub, "FileStored").await,
        1,
        "a refused upload appended"
    );
    assert!(!hub
        .state
        .config
        .data
        .join("announcements/demo/b.wav")
        .exists());
    // Replacing a file counts the difference; deleting one frees its room.
    let (st, t) = put("a.wav", wav_tone(440.0, 50.0, 8000)).await;
    assert_eq!(st, 201, "{t}");
    let (st, _) = hub
        .call("DELETE", "/api/broadcast/files/a.wav", &chair, None)
        .await;
    assert_eq!(st, 204);
    let (st, t) = put("b.wav", wav_tone(440.0, 40.0, 8000)).await;
    assert_eq!(st, 201, "{t}");
    let (st, _) = hub
        .call("DELETE", "/api/broadcast/files/b.wav", &chair, None)
        .await;
    assert_eq!(st, 204);
    // In flight: three uploads whose bodies trickle hold every place; the fourth is told
    // to come back, and the hub still answers.
    let addr = hub.base.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for i in 0..3 {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "PUT /api/broadcast/files/slow-{i}.wav HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {chair}\r\nContent-Type: audio/wav\r\nContent-Length: 1000000\r\n\r\nRIFF").unwrap();
        slow.push(s);
    }
    eventually(10, "three uploads in flight", || async {
        hub.state.bridge.files().in_flight() == 3
    })
    .await;
    let r = hub
        .request(
            "PUT",
            "/api/broadcast/files/c.wav",
            vec![
                ("authorization".into(), format!("Bearer {chair}")),
                ("content-type".into(), "audio/wav".into()),
            ],
            Some(wav_tone(440.0, 1.0, 8000)),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("5"));
    let t0 = std::time::Instant::now();
    let (st, _) = hub.call("GET", "/healthz", "", None).await;
    assert_eq!(st, 200);
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    drop(slow);
    eventually(10, "the slow uploads gave their places back", || async {
        hub.state.bridge.files().in_flight() == 0
    })
    .await;
    // One at a time: three real uploads at once all go through, checked one after another.
    let big = wav_tone(440.0, 10.0, 16_000);
    let (a, b, c) = tokio::join!(
        put("x.wav", big.clone()),
        put("y.wav", big.clone()),
        put("z.wav", big)
    );
    for (st, t) in [a, b, c] {
        assert_eq!(st, 201, "{t}");
    }
    let peak = hub
        .state
        .bridge
        .files()
        .stats()
        .checking_peak
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(peak, 1);
    // a.wav, a.wav replaced, b.wav, then x, y and z.
    assert_eq!(count(&hub, "FileStored").await, 6);
}
