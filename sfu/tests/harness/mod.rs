//! In-process WebRTC clients (webrtc-rs) for scenario tests and the fan-out benchmark.
//! Each client is a real peer connection over loopback UDP to the room's shared port.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dinh_sfu::mux::UdpMux;
use dinh_sfu::room::{JoinRequest, Role, Room, Session, Sfu, SfuConfig, Slot};
use dinh_sfu::rtc;
use dinh_sfu::sdp::parse_offer;
use dinh_sfu::webrtc;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::watch;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCSessionDescription, Registry,
};

pub async fn sfu() -> Arc<Sfu> {
    let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    tokio::spawn(mux.clone().run());
    Sfu::new(mux, SfuConfig::default())
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
}

struct Handler {
    gathered: watch::Sender<bool>,
    received: Arc<Mutex<Received>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, s: RTCIceGatheringState) {
        if s == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let received = self.received.clone();
        tokio::spawn(async move {
            let id = track.track_id().await;
            let slot = id.split('-').next().unwrap_or("").to_owned();
            while let Some(ev) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                    let mut r = received.lock().unwrap();
                    *r.packets.entry(slot.clone()).or_default() += 1;
                    if slot.contains("Video") {
                        let key = dinh_sfu::keyframe::vp8_is_keyframe_start(&p.payload);
                        r.first_video_keyframe.entry(slot.clone()).or_insert(key);
                    }
                    let tag = tag_of(&p.payload);
                    *r.by_tag.entry((slot.clone(), tag)).or_default() += 1;
                }
            }
        });
    }
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
    pub pc: Arc<dyn PeerConnection>,
    pub session: Session,
    pub received: Arc<Mutex<Received>>,
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
    pub fn count_from(&self, slot: &str, tag: &str) -> u64 {
        *self
            .received
            .lock()
            .unwrap()
            .by_tag
            .get(&(slot.to_owned(), tag.to_owned()))
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
        let _ = self.pc.close().await;
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
    let (gtx, mut grx) = watch::channel(false);
    let received = Arc::new(Mutex::new(Received::default()));
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler {
                gathered: gtx,
                received: received.clone(),
            }))
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .unwrap(),
    );
    let mut locals = Vec::new();
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
            let ssrc: u32 = rand::random();
            let track = Arc::new(TrackLocalStaticRTP::new(
                rtc::media_stream::MediaStreamTrack::new(
                    format!("{id}-stream"),
                    format!("{id}-{kind:?}"),
                    format!("{id}-{kind:?}"),
                    kind,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(ssrc),
                            ..Default::default()
                        },
                        codec,
                        ..Default::default()
                    }],
                ),
            ));
            let direction = if recv {
                RTCRtpTransceiverDirection::Sendrecv
            } else {
                RTCRtpTransceiverDirection::Sendonly
            };
            let t = pc
                .add_transceiver_from_track(
                    track.clone() as Arc<dyn TrackLocal>,
                    Some(RTCRtpTransceiverInit {
                        direction,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await
                .unwrap();
            locals.push((kind, track, ssrc, t));
        } else if recv {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .unwrap();
        }
    }
    // Second receiving m-lines for the floor slots.
    for (slot, kind) in [
        (Slot::FloorAudio, RtpCodecKind::Audio),
        (Slot::FloorVideo, RtpCodecKind::Video),
    ] {
        let first = if kind == RtpCodecKind::Audio {
            Slot::ProgramAudio
        } else {
            Slot::ProgramVideo
        };
        if subscribe.contains(&slot) && subscribe.contains(&first) {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .unwrap();
        }
    }
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), grx.wait_for(|d| *d))
        .await
        .unwrap()
        .unwrap();
    let local = pc.local_description().await.unwrap();
    let session = room
        .join(
            JoinRequest {
                id: id.into(),
                name: id.into(),
                role,
                publish,
                subscribe: subscribe.to_vec(),
            },
            parse_offer(&local.sdp).unwrap(),
        )
        .await
        .unwrap();
    pc.set_remote_description(RTCSessionDescription::answer(session.answer.clone()).unwrap())
        .await
        .unwrap();
    let mut senders = Vec::new();
    for (kind, track, ssrc, t) in locals {
        let sender = t.sender().await.unwrap().unwrap();
        let tag = id.to_owned();
        senders.push(tokio::spawn(async move {
            // The payload type must be the negotiated one.
            let mut pt = None;
            for _ in 0..100 {
                if let Some(c) = sender
                    .get_parameters()
                    .await
                    .ok()
                    .and_then(|p| p.rtp_parameters.codecs.first().cloned())
                {
                    pt = Some(c.payload_type);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let Some(pt) = pt else { return };
            let audio = kind == RtpCodecKind::Audio;
            let mut seq: u16 = rand::random();
            let mut ts: u32 = rand::random();
            let mut frame = 0u64;
            let mut tick =
                tokio::time::interval(Duration::from_millis(if audio { 20 } else { 33 }));
            loop {
                tick.tick().await;
                let payload = if audio {
                    let mut v = vec![0xf8];
                    v.extend_from_slice(tag.as_bytes());
                    v.resize(80, 0);
                    v
                } else {
                    let key = frame.is_multiple_of(15);
                    let mut v = vec![0x10, if key { 0x00 } else { 0x01 }, 0x00];
                    v.extend_from_slice(tag.as_bytes());
                    v.resize(900, 0);
                    v
                };
                let packet = rtp::Packet {
                    header: rtp::header::Header {
                        version: 2,
                        marker: !audio,
                        payload_type: pt,
                        sequence_number: seq,
                        timestamp: ts,
                        ssrc,
                        ..Default::default()
                    },
                    payload: Bytes::from(payload),
                };
                if track.write_rtp(packet).await.is_err() {
                    return;
                }
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(if audio { 960 } else { 3000 });
                frame += 1;
            }
        }));
    }
    Client {
        pc,
        session,
        received,
        senders,
    }
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
