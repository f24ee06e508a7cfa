//! WHIP/WHEP with a publisher that shares no code with the hub (GStreamer's webrtcbin), and
//! sessions after the `POST` (RFC 9725 §4.3): trickle ICE and ICE restarts over `PATCH`, and
//! every way a `PATCH` can be wrong.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Hub, Receiver, Reply, Tone};
use dinh_sfu::keyframe::VideoCodec;
use dinh_sfu::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use dinh_sfu::sdp::{apply_ice_fragment, ice_fragment, parse_ice_fragment, rewrite_candidates};
use dinh_sfu::testkit::{LossyLink, Peer};
use dinh_web::auth::Role;

const FRAG: &str = "application/trickle-ice-sdpfrag";

async fn patch(
    hub: &Hub,
    loc: &str,
    token: &str,
    if_match: Option<&str>,
    ctype: &str,
    body: &str,
) -> Reply {
    let mut headers = vec![
        ("authorization".to_owned(), format!("Bearer {token}")),
        ("content-type".to_owned(), ctype.to_owned()),
    ];
    if let Some(m) = if_match {
        headers.push(("if-match".to_owned(), m.to_owned()));
    }
    hub.request("PATCH", loc, headers, Some(body.as_bytes().to_vec()))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_trickles_candidates_and_restarts_ice_over_patch() {
    let hub = Hub::start(|_| {}).await;
    let tone = Tone::publish(&hub, 440.0, 0.1).await;
    let token = hub.token(Role::House, "house-1");
    let (got, on_rtp) = common::packet_counter();
    let mut viewer = Peer::new(on_rtp).await;
    viewer.add_receiver(RtpCodecKind::Audio).await;
    let hub_udp = hub.state.sfu.mux().advertised_addr();
    let path1 = LossyLink::start(hub_udp, 0.0, Duration::ZERO).await;

    // The offer goes without its candidates; they follow in a PATCH (trickle ICE).
    let offer = viewer.offer().await;
    let bare: String = offer
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("a=candidate:") && !l.starts_with("a=end-of-candidates"))
        .collect();
    let created = hub
        .request(
            "POST",
            "/whep/demo",
            vec![
                ("authorization".into(), format!("Bearer {token}")),
                ("content-type".into(), "application/sdp".into()),
            ],
            Some(bare.into_bytes()),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let loc = created.header("location").expect("a Location").to_owned();
    let etag = created.header("etag").expect("an ETag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong entity-tag: {etag}"
    );
    let first_answer = rewrite_candidates(&created.body, path1.addr);
    viewer.accept(first_answer.clone()).await;
    let trickle = ice_fragment(&offer);
    assert!(trickle.contains("a=candidate:"), "{trickle}");
    let r = patch(&hub, &loc, &token, Some(&etag), FRAG, &trickle).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.header("etag").is_none(), "no ETag on a trickle reply");
    assert!(r.body.is_empty());
    eventually(15, "audio after trickle ICE", || {
        let n = got.load(Ordering::Relaxed);
        async move { n > 50 }
    })
    .await;

    // Wrong PATCHes: each refused with its reason, and the session goes on.
    let cases: [(Option<&str>, &str, &str, u16, &str); 6] = [
        (None, FRAG, &trickle, 428, "If-Match"),
        (Some("\"stale\""), FRAG, &trickle, 412, "latest ETag"),
        (
            Some(&etag),
            "application/sdp",
            &trickle,
            415,
            "trickle-ice-sdpfrag",
        ),
        (Some(&etag), FRAG, "hello", 400, "not an a= or m= line"),
        (Some("*"), FRAG, &trickle, 400, "new ice-ufrag"),
        (
            Some(&etag),
            FRAG,
            "a=ice-ufrag:othr\r\na=ice-pwd:anotherpasswordanother1\r\n",
            422,
            "If-Match: *",
        ),
    ];
    for (if_match, ctype, body, status, why) in cases {
        let r = patch(&hub, &loc, &token, if_match, ctype, body).await;
        assert_eq!(r.status, status, "{if_match:?} {ctype}: {}", r.body);
        assert!(r.body.contains(why), "{status}: {}", r.body);
    }
    let before = got.load(Ordering::Relaxed);
    eventually(10, "audio goes on after the refusals", || {
        let n = got.load(Ordering::Relaxed);
        async move { n > before + 25 }
    })
    .await;

    // The house's network changes: the old path dies, and it restarts ICE over PATCH.
    drop(path1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dead = got.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        got.load(Ordering::Relaxed) - dead < 3,
        "the old path is not dead"
    );
    let path2 = LossyLink::start(hub_udp, 0.0, Duration::ZERO).await;
    let restart = viewer.restart_offer().await;
    let r = patch(&hub, &loc, &token, Some("*"), FRAG, &ice_fragment(&restart)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some(FRAG));
    let new_etag = r.header("etag").expect("a new ETag").to_owned();
    assert_ne!(new_etag, etag);
    let reply = parse_ice_fragment(&r.body).expect("the reply parses");
    assert!(
        reply.ufrag.is_some() && !reply.candidates.is_empty(),
        "{}",
        r.body
    );
    let answer = rewrite_candidates(&apply_ice_fragment(&first_answer, &reply), path2.addr);
    viewer.accept(answer).await;
    let resumed = got.load(Ordering::Relaxed);
    eventually(15, "audio again after the ICE restart", || {
        let n = got.load(Ordering::Relaxed);
        async move { n > resumed + 50 }
    })
    .await;
    // The old entity-tag names an ICE session that is gone.
    let r = patch(&hub, &loc, &token, Some(&etag), FRAG, &trickle).await;
    assert_eq!(r.status, 412, "{}", r.body);

    // DELETE ends it; a PATCH after that finds nothing.
    let (st, _) = hub.call("DELETE", &loc, &token, None).await;
    assert_eq!(st, 200);
    let r = patch(&hub, &loc, &token, Some(&new_etag), FRAG, &trickle).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let _ = viewer.pc.close().await;
    tone.stop().await;
}

/// GStreamer's WebRTC stack (webrtcbin, libnice, its own DTLS and SRTP; Debian's packages)
/// publishes a 440 Hz tone and VP8 test pictures over WHIP as the commune's camera, through
/// ops/scripts/gst_whip.py. A WHEP house joins afterwards and gets the audio and the video
/// from a keyframe on; the room's live stream carries the tone at 440 Hz; the script's
/// DELETE ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gstreamer_camera_over_whip_reaches_a_whep_house_and_the_loudspeakers() {
    gstreamer_camera(VideoCodec::Vp8).await;
}

/// The same with H.264 from x264 (constrained baseline, as browsers decode it) in a room
/// configured for H.264: the house's video starts at an IDR picture (SPS, PPS, IDR).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gstreamer_h264_camera_reaches_a_whep_house() {
    gstreamer_camera(VideoCodec::H264).await;
}

async fn gstreamer_camera(codec: VideoCodec) {
    let hub = Hub::start(|c| c.rtc.video_codec = codec).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/scripts/gst_whip.py");
    let gst = tokio::process::Command::new("/usr/bin/python3")
        .arg(script)
        .arg(format!("{}/whip/demo", hub.base))
        .arg(hub.token(Role::Chair, "chair"))
        .arg("25")
        .arg(match codec {
            VideoCodec::Vp8 => "vp8",
            VideoCodec::H264 => "h264",
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect(
            "python3 with GStreamer (python3-gst-1.0, gstreamer1.0-plugins-bad, gstreamer1.0-nice)",
        );
    let sfu = hub.state.sfu.clone();
    eventually(20, "the GStreamer camera publishes", || {
        let n = sfu.stats.received.load(Ordering::Relaxed);
        async move { n > 50 }
    })
    .await;

    #[derive(Default)]
    struct Seen {
        audio: u64,
        video: u64,
        first_video_keyframe: Option<bool>,
    }
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let s = seen.clone();
    let mut house = Peer::new(Some(Arc::new(move |track, p| {
        let mut s = s.lock().unwrap();
        if track.contains("Video") {
            s.video += 1;
            s.first_video_keyframe
                .get_or_insert(codec.is_keyframe_start(&p.payload));
        } else {
            s.audio += 1;
        }
    })))
    .await;
    house.add_receiver(RtpCodecKind::Audio).await;
    house.add_receiver(RtpCodecKind::Video).await;
    let offer = house.offer().await;
    let token = hub.token(Role::House, "house-1");
    let answer = hub.whep(&token, offer).await;
    house.accept(answer).await;
    // A second player on a weak link asks for sound only in its WHEP URL.
    let (a2, v2) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (a, v) = (a2.clone(), v2.clone());
    let mut weak = Peer::new(Some(Arc::new(move |track, _| {
        if track.contains("Video") { &v } else { &a }.fetch_add(1, Ordering::Relaxed);
    })))
    .await;
    weak.add_receiver(RtpCodecKind::Audio).await;
    weak.add_receiver(RtpCodecKind::Video).await;
    let offer = weak.offer().await;
    let answer = hub
        .whep_with(&hub.token(Role::House, "house-2"), "?video=off", offer)
        .await;
    weak.accept(answer).await;
    let live = Receiver::measure(hub.live_ogg(&token), 2.0, 4.0);
    eventually(15, "GStreamer's audio and video at the house", || {
        let s = seen.lock().unwrap();
        let ok = s.audio > 100 && s.video > 30;
        async move { ok }
    })
    .await;
    assert_eq!(
        seen.lock().unwrap().first_video_keyframe,
        Some(true),
        "the house's video starts at a keyframe"
    );
    eventually(10, "sound at the sound-only player", || {
        let n = a2.load(Ordering::Relaxed);
        async move { n > 100 }
    })
    .await;
    assert_eq!(v2.load(Ordering::Relaxed), 0, "no video with ?video=off");
    let m = live.measured(Duration::from_secs(30)).await;
    assert!(
        (m.hz - 440.0).abs() < 4.4,
        "GStreamer's tone on the live stream: {} Hz",
        m.hz
    );
    let out = gst.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("connection connected") && log.contains("session deleted"),
        "{log}"
    );
    let sfu = hub.state.sfu.clone();
    eventually(10, "the camera's session ends with its DELETE", || {
        let room = sfu.room("demo");
        async move { !room.state().live }
    })
    .await;
    let _ = house.pc.close().await;
    let _ = weak.pc.close().await;
}
