//! In-process WebRTC clients (webrtc-rs) for scenario tests and the fan-out benchmark.
//! Each client is a real peer connection over loopback UDP to the room's shared port.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dinh_sfu::mux::{tcp::TcpMux, UdpMux};
use dinh_sfu::room::{JoinRequest, Role, Room, Session, Sfu, SfuConfig, Slot};
use dinh_sfu::rtc;
use dinh_sfu::sdp::parse_offer;
use dinh_sfu::testkit::{LossyLink, OnRtp, Peer};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;

/// How a publishing client's camera sends keyframes.
#[derive(Clone, Copy)]
pub enum Keyframes {
    /// Every this many frames (a browser's encoder does about every few seconds).
    Every(u64),
    /// Only the first, then one whenever asked (a camera encoder, a relaying hub).
    OnRequest,
}

/// How a client reaches the hub.
#[derive(Clone, Copy)]
pub enum Via<'a> {
    /// Straight to the shared UDP port.
    Udp,
    /// Through a lossy relay in front of the UDP port.
    Link(&'a LossyLink),
    /// ICE-TCP only (a network that blocks UDP), to the shared TCP port.
    Tcp,
}

pub async fn sfu() -> Arc<Sfu> {
    let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    tokio::spawn(mux.clone().run());
    Sfu::new(mux, SfuConfig::default())
}

/// An SFU that also serves ICE-TCP on one shared port.
pub async fn sfu_with_tcp() -> (Arc<Sfu>, Arc<TcpMux>) {
    let (mux, tcp) = dinh_sfu::testkit::loopback_muxes().await;
    tokio::spawn(mux.clone().run());
    (Sfu::new(mux, SfuConfig::default()), tcp)
}

/// What a client has received, per slot (named by the track id the SFU gave it).
#[derive(Default, Debug, Clone)]
pub struct Received {
    /// Packets per slot.
    pub packets: HashMap<String, u64>,
    /// Packets per (slot, first bytes of payload tag).
    pub by_tag: HashMap<(String, String), u64>,
    /// Whether the first video packet of each slot was a keyframe start.
    pub first_video_keyframe: HashMap<String, bool>,
    /// Keyframe starts received per video slot.
    pub keyframes: HashMap<String, u64>,
    /// Sequence numbers received per slot, extended past wrap-around.
    pub seqs: HashMap<String, std::collections::BTreeSet<u64>>,
}

/// Test payloads carry the sender's name after a fixed prefix: audio `[0xF8]name`, video a VP8
/// descriptor then `name`.
fn tag_of(p: &[u8]) -> String {
    let body = if p.first() == Some(&0xf8) {
        &p[1..]
    } else if p.len() > 3 {
        &p[3..]
    } else {
        &[][..]
    };
    String::from_utf8_lossy(body)
        .trim_end_matches('\0')
        .to_owned()
}

pub struct Client {
    pub peer: Peer,
    pub session: Session,
    pub received: Arc<Mutex<Received>>,
    /// Keyframe requests its camera received, when it sends keyframes on request.
    pub keyframe_requests: Option<Arc<std::sync::atomic::AtomicU64>>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Client {
    pub fn count(&self, slot: &str) -> u64 {
        *self
            .received
            .lock()
            .unwrap()
            .packets
            .get(slot)
            .unwrap_or(&0)
    }
    /// Wait up to `secs` until `more` packets of `slot` have come than had come when called.
    pub async fn receives_more(&self, slot: &str, more: u64, secs: u64, what: &str) {
        let before = self.count(slot);
        eventually(secs, what, || self.count(slot) > before + more).await;
    }
    pub fn count_from(&self, slot: &str, tag: &str) -> u64 {
        *self
            .received
            .lock()
            .unwrap()
            .by_tag
            .get(&(slot.to_owned(), tag.to_owned()))
            .unwrap_or(&0)
    }
    /// Forget the sequence numbers seen so far (measure completeness from now on).
    pub fn reset_seqs(&self) {
        self.received.lock().unwrap().seqs.clear();
    }

    /// Of the sequence numbers a slot spanned (less the last `recent`, whose repairs may still
    /// be on their way), the share received.
    pub fn completeness(&self, slot: &str, recent: u64) -> f64 {
        let r = self.received.lock().unwrap();
        let Some(seqs) = r.seqs.get(slot) else {
            return 0.0;
        };
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return 0.0;
        };
        let end = last.saturating_sub(recent);
        if end <= first {
            return 0.0;
        }
        seqs.range(first..=end).count() as f64 / (end - first + 1) as f64
    }
    pub fn keyframes(&self, slot: &str) -> u64 {
        *self
            .received
            .lock()
            .unwrap()
            .keyframes
            .get(slot)
            .unwrap_or(&0)
    }
    pub fn first_video_was_keyframe(&self, slot: &str) -> Option<bool> {
        self.received
            .lock()
            .unwrap()
            .first_video_keyframe
            .get(slot)
            .copied()
    }
    pub async fn close(self) {
        for s in &self.senders {
            s.abort();
        }
        self.session.close().await;
        let _ = self.peer.pc.close().await;
    }
}

/// Connect a client to `room`. A publishing client sends Opus-sized audio every 20 ms and VP8
/// video every 33 ms (a keyframe every 15 frames), tagged with its id.
pub async fn join(
    room: &Arc<Room>,
    id: &str,
    role: Role,
    publish: bool,
    subscribe: &[Slot],
) -> Client {
    join_with(room, id, role, publish, subscribe, Via::Udp).await
}

/// How a client joins: its path to the hub, its camera's keyframes.
#[derive(Clone, Copy)]
pub struct How<'a> {
    pub via: Via<'a>,
    pub keyframes: Keyframes,
}

impl<'a> From<Via<'a>> for How<'a> {
    fn from(via: Via<'a>) -> Self {
        How {
            via,
            keyframes: Keyframes::Every(15),
        }
    }
}

impl From<Keyframes> for How<'static> {
    fn from(keyframes: Keyframes) -> Self {
        How {
            via: Via::Udp,
            keyframes,
        }
    }
}

/// [`join`], over the given path or with the given camera.
pub async fn join_with<'a>(
    room: &Arc<Room>,
    id: &str,
    role: Role,
    publish: bool,
    subscribe: &[Slot],
    how: impl Into<How<'a>>,
) -> Client {
    let How { via, keyframes } = how.into();
    let received = Arc::new(Mutex::new(Received::default()));
    let r = received.clone();
    let on_rtp: OnRtp = Arc::new(move |track_id, p| {
        let slot = track_id.split('-').next().unwrap_or("").to_owned();
        let mut r = r.lock().unwrap();
        *r.packets.entry(slot.clone()).or_default() += 1;
        if slot.contains("Video") {
            let key = dinh_sfu::keyframe::vp8_is_keyframe_start(&p.payload);
            r.first_video_keyframe.entry(slot.clone()).or_insert(key);
            *r.keyframes.entry(slot.clone()).or_default() += u64::from(key);
        }
        let tag = tag_of(&p.payload);
        *r.by_tag.entry((slot.clone(), tag)).or_default() += 1;
        let seqs = r.seqs.entry(slot).or_default();
        let seq = p.header.sequence_number as u64;
        let ext = match seqs.last() {
            None => (1 << 16) + seq,
            Some(&last) => {
                let base = last & !0xFFFF;
                [base - (1 << 16), base, base + (1 << 16)]
                    .into_iter()
                    .map(|b| b + seq)
                    .min_by_key(|c| c.abs_diff(last))
                    .unwrap_or(base + seq)
            }
        };
        seqs.insert(ext);
    });
    let mut peer = match via {
        Via::Tcp => Peer::tcp_only(Some(on_rtp)).await,
        _ => Peer::new(Some(on_rtp)).await,
    };
    let mut senders = Vec::new();
    for (kind, codec) in [
        (RtpCodecKind::Audio, dinh_sfu::room::opus_codec()),
        (
            RtpCodecKind::Video,
            dinh_sfu::room::video_codec(dinh_sfu::keyframe::VideoCodec::Vp8),
        ),
    ] {
        let recv = subscribe.iter().any(|s| {
            matches!(
                (s, kind),
                (Slot::ProgramAudio | Slot::FloorAudio, RtpCodecKind::Audio)
                    | (Slot::ProgramVideo | Slot::FloorVideo, RtpCodecKind::Video)
            )
        });
        if publish {
            senders.push((kind, peer.add_sender(kind, id, codec, recv).await));
        } else if recv {
            peer.add_receiver(kind).await;
        }
    }
    // Second receiving m-lines for the floor slots.
    for (slot, first, kind) in [
        (Slot::FloorAudio, Slot::ProgramAudio, RtpCodecKind::Audio),
        (Slot::FloorVideo, Slot::ProgramVideo, RtpCodecKind::Video),
    ] {
        if subscribe.contains(&slot) && subscribe.contains(&first) {
            peer.add_receiver(kind).await;
        }
    }
    let offer = peer.offer().await;
    let session = room
        .join(
            JoinRequest {
                id: id.into(),
                name: id.into(),
                role,
                publish,
                subscribe: subscribe.to_vec(),
            },
            parse_offer(&offer).unwrap(),
        )
        .await
        .unwrap();
    let answer = match via {
        Via::Link(l) => dinh_sfu::sdp::rewrite_candidates(&session.answer, l.addr),
        _ => session.answer.clone(),
    };
    peer.accept(answer).await;
    let mut keyframe_requests = None;
    let mut tasks = Vec::new();
    for (kind, sender) in senders {
        let tag = id.to_owned();
        let frame = move |key: bool| {
            let mut v = vec![0x10, if key { 0x00 } else { 0x01 }, 0x00];
            v.extend_from_slice(tag.as_bytes());
            v.resize(900, 0);
            vec![Bytes::from(v)]
        };
        let task = match (kind, keyframes) {
            (RtpCodecKind::Audio, _) => {
                let tag = id.to_owned();
                sender.spawn(Duration::from_millis(20), 960, false, move |_| {
                    let mut v = vec![0xf8];
                    v.extend_from_slice(tag.as_bytes());
                    v.resize(80, 0);
                    vec![Bytes::from(v)]
                })
            }
            (_, Keyframes::Every(k)) => {
                sender.spawn(Duration::from_millis(33), 3000, true, move |n| {
                    frame(n.is_multiple_of(k))
                })
            }
            (_, Keyframes::OnRequest) => {
                let (task, requests) = sender.spawn_keyframes_on_request(
                    Duration::from_millis(33),
                    3000,
                    true,
                    move |_, key| frame(key),
                );
                keyframe_requests = Some(requests);
                task
            }
        };
        tasks.push(task);
    }
    Client {
        peer,
        session,
        received,
        keyframe_requests,
        senders: tasks,
    }
}

/// A house that only watches (publishes nothing), reaching the hub over `via`.
pub async fn watcher(room: &Arc<Room>, id: &str, via: Via<'_>) -> Client {
    join_with(room, id, Role::House, false, &HOUSE_SLOTS, via).await
}

/// Check that `quiet` stays still while `clock` (a stream that keeps flowing) advances: first
/// `settle` of its packets for what was in flight to land, then `window` more. Returns
/// `quiet` before and after the window; the caller says how still it must be.
pub async fn over_a_window(
    clock: impl Fn() -> u64,
    settle: u64,
    window: u64,
    quiet: impl Fn() -> u64,
) -> (u64, u64) {
    let c = clock();
    eventually(10, "the clock stream settles", || clock() > c + settle).await;
    let (before, c) = (quiet(), clock());
    eventually(10, "the clock stream runs the window", || {
        clock() >= c + window
    })
    .await;
    (before, quiet())
}

/// Wait until `cond` holds, checking every 50 ms, for at most `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub const HOUSE_SLOTS: [Slot; 4] = [
    Slot::ProgramAudio,
    Slot::ProgramVideo,
    Slot::FloorAudio,
    Slot::FloorVideo,
];
pub const CHAIR_SLOTS: [Slot; 2] = [Slot::FloorAudio, Slot::FloorVideo];
