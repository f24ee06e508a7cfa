//! Rooms and their participants: the driver around the forwarding and floor cores.
//!
//! Each participant has one `RTCPeerConnection` (webrtc-rs) on the shared UDP port. What a
//! participant publishes becomes a *source*; the room decides which source feeds each of its
//! four downstream [`Slot`]s (the chair's voice and camera, the floor holder's voice and
//! camera) and every subscriber gets one outgoing track per slot it asked for. The floor can
//! change without any renegotiation: the slot's [`SlotForwarder`] rewrites the new source's
//! packets to continue the stream the subscriber already decodes.
//!
//! Packet path: a reader task per incoming track → [`Room::on_rtp`] (decision under the room's
//! lock) → a `tokio::sync::broadcast` channel per slot → a writer task per subscriber and slot
//! (SSRC and payload type of that subscriber's leg, gate at keyframes) → webrtc-rs (NACK
//! buffer, SRTP, the shared socket).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rtc::interceptor::Slot as InterceptorSlot;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{broadcast, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};

use crate::floor::{Floor, FloorChange, FloorError};
use crate::forward::{InHeader, SlotForwarder, SlotKind, SourceId, Verdict};
use crate::keyframe::VideoCodec;
use crate::mux::{MuxRuntime, UdpMux};
use crate::rtcp_forward::{is_keyframe_request, KeyframeRequestForwarder};
use crate::sdp::{ice_ufrag, rewrite_candidates_with_tcp};
use crate::signal::{HouseState, RoomState, VideoMode};
use crate::simulcast::{layer_for_rid, pick_layer, LayerActivity, LayerSwitch, MAX_LAYERS};

/// Errors of the SFU layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SfuError {
    /// WebRTC negotiation failed (bad offer, unsupported codecs); the message comes from
    /// webrtc-rs. The client should fix its offer.
    #[error("negotiation failed: {0}")]
    Negotiation(String),
    /// ICE gathering did not finish in time; retry.
    #[error("ICE gathering timed out")]
    GatheringTimeout,
    /// The session has been closed; start a new one.
    #[error("session closed")]
    Closed,
    /// A floor command was refused.
    #[error(transparent)]
    Floor(#[from] FloorError),
}

fn neg(e: impl std::fmt::Display) -> SfuError {
    SfuError::Negotiation(e.to_string())
}

/// SFU settings.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// The room's video codec (every publisher and subscriber negotiates it).
    pub video_codec: VideoCodec,
    /// Least time between two keyframe requests to one publisher.
    pub keyframe_interval: Duration,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            video_codec: VideoCodec::Vp8,
            keyframe_interval: Duration::from_millis(500),
        }
    }
}

/// Counters across all rooms, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct SfuStats {
    /// RTP packets received from publishers.
    pub received: AtomicU64,
    /// RTP packets written to subscribers.
    pub forwarded: AtomicU64,
    /// Packets a slow subscriber missed (its slot channel overflowed).
    pub lagged: AtomicU64,
    /// Keyframe requests sent upstream.
    pub keyframe_requests: AtomicU64,
    /// Peer connections open now.
    pub sessions: AtomicU64,
    /// Time from a packet reaching the hub (its reader task) to its write to each subscriber
    /// returning (queued in webrtc-rs for SRTP and the socket), µs.
    pub forward_latency: crate::histogram::Histogram,
}

/// A downstream stream every subscriber of a room can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The chair's microphone.
    ProgramAudio = 0,
    /// The chair's camera.
    ProgramVideo = 1,
    /// The microphone of the house holding the floor.
    FloorAudio = 2,
    /// The camera of the house holding the floor.
    FloorVideo = 3,
}

impl Slot {
    const ALL: [Slot; 4] = [
        Slot::ProgramAudio,
        Slot::ProgramVideo,
        Slot::FloorAudio,
        Slot::FloorVideo,
    ];

    fn is_audio(self) -> bool {
        matches!(self, Slot::ProgramAudio | Slot::FloorAudio)
    }
}

/// Who a participant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The commune chair: publishes the program, controls the floor.
    Chair,
    /// A village cultural house: watches, and speaks when given the floor.
    House,
    /// A receive-only player (WHEP).
    Viewer,
}

/// What a participant asks of the room.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Participant id (house id, or `chair`). A second session with the same id replaces the
    /// first: a kiosk that reconnects must not appear twice.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Whether its incoming tracks are sources.
    pub publish: bool,
    /// The slots it receives, in the order of its receiving m-lines.
    pub subscribe: Vec<Slot>,
}

/// The SFU: the shared port and the rooms.
pub struct Sfu {
    mux: Arc<UdpMux>,
    config: SfuConfig,
    // std Mutex: a map lookup, never held across `.await`.
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    /// Counters.
    pub stats: Arc<SfuStats>,
}

impl Sfu {
    /// An SFU on `mux`. Spawn [`UdpMux::run`] separately.
    pub fn new(mux: Arc<UdpMux>, config: SfuConfig) -> Arc<Self> {
        Arc::new(Self {
            mux,
            config,
            rooms: Mutex::new(HashMap::new()),
            stats: Arc::new(SfuStats::default()),
        })
    }

    /// The shared UDP port.
    pub fn mux(&self) -> &Arc<UdpMux> {
        &self.mux
    }

    /// The room named `name`, created on first use.
    pub fn room(self: &Arc<Self>, name: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms
            .entry(name.to_owned())
            .or_insert_with(|| Room::new(name, self.clone()))
            .clone()
    }

    /// The room named `name`, if it exists.
    pub fn existing_room(&self, name: &str) -> Option<Arc<Room>> {
        let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms.get(name).cloned()
    }

    fn media_engine(&self) -> Result<MediaEngine, SfuError> {
        let mut m = MediaEngine::default();
        m.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        )
        .map_err(neg)?;
        let fb = |typ: &str, parameter: &str| RTCPFeedback {
            typ: typ.to_owned(),
            parameter: parameter.to_owned(),
        };
        let video = RTCRtpCodec {
            rtcp_feedback: vec![fb("ccm", "fir"), fb("nack", ""), fb("nack", "pli")],
            ..video_codec(self.config.video_codec)
        };
        m.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: video,
                payload_type: 96,
            },
            RtpCodecKind::Video,
        )
        .map_err(neg)?;
        m.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: "video/rtx".to_owned(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: "apt=96".to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: 97,
            },
            RtpCodecKind::Video,
        )
        .map_err(neg)?;
        // MID and RID header extensions: a simulcast publisher names its layers by RID.
        rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers(&mut m)
            .map_err(neg)?;
        Ok(m)
    }
}

/// Opus with in-band FEC (the decoder recovers a lost 20 ms frame from the next packet) and
/// 10 ms minimum packet time, as browsers offer it.
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The SDP codec description of a video codec.
pub fn video_codec(codec: VideoCodec) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: codec.mime_type().to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: match codec {
            VideoCodec::Vp8 => String::new(),
            VideoCodec::H264 => {
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".to_owned()
            }
        },
        rtcp_feedback: vec![],
    }
}

/// A packet on a slot, as the forwarder rewrote it.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The packet as it arrived (header fields still the publisher's).
    pub packet: rtp::Packet,
    /// The slot's sequence number, timestamp and keyframe flag.
    pub out: crate::forward::OutHeader,
    /// When it reached the hub (for the bridge's latency figures).
    pub received: Instant,
    /// The connection it came from: never sent back to it (a house holding the floor must
    /// not hear itself).
    pub from_conn: u64,
    /// Its simulcast layer (0 without simulcast); `out` numbers the layer's own stream.
    pub layer: u8,
    /// The source's layers flowing now, a bit per layer.
    pub active_layers: u8,
}

struct Source {
    conn: u64,
    owner: String,
    role: Role,
    audio: bool,
    track: Arc<dyn TrackRemote>,
    /// Each layer's SSRC, for keyframe requests; without simulcast only layer 0.
    layer_ssrc: [Option<u32>; MAX_LAYERS],
    /// Whether the publisher names its streams by RID (simulcast).
    simulcast: bool,
    activity: LayerActivity,
}

impl Source {
    /// The layer of a packet's SSRC. Without simulcast every SSRC is layer 0 (a publisher that
    /// restarts its encoder changes SSRC; the slot's forwarder follows). With simulcast an
    /// SSRC no RID has named is not media to forward.
    fn layer_of(&self, ssrc: u32) -> Option<u8> {
        match self.layer_ssrc.iter().position(|s| *s == Some(ssrc)) {
            Some(l) => Some(l as u8),
            None if !self.simulcast => Some(0),
            None => None,
        }
    }
}

/// The throttle's key for one layer of a source.
fn throttle_key(source: SourceId, layer: u8) -> SourceId {
    source * MAX_LAYERS as u64 + u64::from(layer)
}

struct Member {
    conn: u64,
    name: String,
    role: Role,
    session: Weak<SessionInner>,
    loss_pct: Option<f32>,
    rtt_ms: Option<f32>,
}

// Everything the room decides on, behind one std Mutex: taken for a few hash lookups per
// packet, never across an `.await`. Keyframe requests and closes it decides on are carried out
// after the lock is released.
struct RoomCore {
    floor: Floor,
    /// Per slot, a forwarder per simulcast layer (audio slots use layer 0).
    forwarders: [[SlotForwarder; MAX_LAYERS]; 4],
    throttle: crate::throttle::KeyframeThrottle,
    sources: HashMap<SourceId, Source>,
    members: HashMap<String, Member>,
    next_source: SourceId,
    directory: Vec<(String, String)>,
}

/// One meeting room.
pub struct Room {
    name: String,
    sfu: Arc<Sfu>,
    core: Mutex<RoomCore>,
    slots: [broadcast::Sender<Arc<Forwarded>>; 4],
    state_tx: watch::Sender<RoomState>,
    next_conn: AtomicU64,
}

/// What to send upstream once the lock is released.
type KeyframeRequests = Vec<(Arc<dyn TrackRemote>, u32)>;

impl Room {
    fn new(name: &str, sfu: Arc<Sfu>) -> Arc<Self> {
        let kind = |s: Slot| {
            if s.is_audio() {
                SlotKind::Audio
            } else {
                SlotKind::Video(sfu.config.video_codec)
            }
        };
        let (state_tx, _) = watch::channel(RoomState::default());
        Arc::new(Self {
            name: name.to_owned(),
            core: Mutex::new(RoomCore {
                floor: Floor::new(),
                forwarders: Slot::ALL.map(|s| std::array::from_fn(|_| SlotForwarder::new(kind(s)))),
                throttle: crate::throttle::KeyframeThrottle::new(sfu.config.keyframe_interval),
                sources: HashMap::new(),
                members: HashMap::new(),
                next_source: 1,
                directory: Vec::new(),
            }),
            // 512 packets: about 1.5 s of audio plus video at 1.2 Mbit/s; a subscriber further
            // behind skips ahead and waits for a keyframe.
            slots: Slot::ALL.map(|_| broadcast::channel(512).0),
            state_tx,
            next_conn: AtomicU64::new(1),
            sfu,
        })
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RoomCore> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The houses that belong to the room (id, display name), shown even when not connected.
    pub fn set_directory(&self, houses: Vec<(String, String)>) {
        self.lock().directory = houses;
        self.publish_state();
    }

    /// Follow the room's state (every change, latest value).
    pub fn watch_state(&self) -> watch::Receiver<RoomState> {
        self.state_tx.subscribe()
    }

    /// The room's state now.
    pub fn state(&self) -> RoomState {
        self.state_tx.borrow().clone()
    }

    fn publish_state(&self) {
        let state = {
            let c = self.lock();
            let live = c.sources.values().any(|s| s.role == Role::Chair);
            let hands: Vec<String> = c.floor.queue().map(str::to_owned).collect();
            let mut houses: Vec<HouseState> = c
                .directory
                .iter()
                .map(|(id, name)| house_state(&c, id, name))
                .collect();
            for (id, m) in &c.members {
                if m.role == Role::House && !c.directory.iter().any(|(d, _)| d == id) {
                    houses.push(house_state(&c, id, &m.name));
                }
            }
            RoomState {
                live,
                floor: c.floor.holder().map(str::to_owned),
                hands,
                houses,
            }
        };
        self.state_tx.send_if_modified(|s| {
            if *s == state {
                false
            } else {
                *s = state;
                true
            }
        });
    }

    /// Connect a participant: negotiate its peer connection from `offer` and return the
    /// session with its answer.
    pub async fn join(
        self: &Arc<Self>,
        req: JoinRequest,
        offer: RTCSessionDescription,
    ) -> Result<Session, SfuError> {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let runtime = self.sfu.mux.runtime();
        let (gather_tx, mut gather_rx) = watch::channel(false);
        let (connected_tx, connected_rx) = watch::channel(false);
        let handler = Arc::new(PeerHandler {
            room: Arc::downgrade(self),
            conn,
            member: req.id.clone(),
            role: req.role,
            publish: req.publish,
            gathered: gather_tx,
            connected: connected_tx,
            session: OnceLock::new(),
        });
        let mut media = self.sfu.media_engine()?;
        let registry = register_default_interceptors(Registry::new(), &mut media).map_err(neg)?;
        let registry = registry.with(
            InterceptorSlot::from(14_000),
            KeyframeRequestForwarder::default(),
        );
        let setting = SettingEngineBuilder::default()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true)
            .build();
        let mut builder = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_setting_engine(setting)
            .with_interceptor_registry(registry)
            .with_handler(handler.clone() as Arc<dyn PeerConnectionEventHandler>)
            .with_runtime(runtime.clone() as Arc<dyn webrtc::runtime::Runtime>)
            // A placeholder: the runtime closes this socket and routes through the mux.
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()]);
        if self.sfu.mux.tcp_addr().is_some() {
            // ICE-TCP passive candidates, through the shared TCP port (`mux::tcp`); this
            // listener is a placeholder the runtime closes, as for UDP.
            builder = builder.with_tcp_addrs(vec!["127.0.0.1:0".to_owned()]);
        }
        let pc: Arc<dyn PeerConnection> = Arc::new(builder.build().await.map_err(neg)?);
        let result = self
            .negotiate(&pc, &req, offer, &mut gather_rx, &runtime)
            .await;
        let (answer, outputs) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = pc.close().await;
                runtime.close();
                return Err(e);
            }
        };
        let inner = Arc::new(SessionInner {
            conn,
            id: req.id.clone(),
            room: self.clone(),
            pc,
            runtime,
            closed: AtomicBool::new(false),
            connected: connected_rx,
            tasks: Mutex::new(Vec::new()),
            video: watch::channel(VideoPref::default()).0,
        });
        let _ = handler.session.set(Arc::downgrade(&inner));
        let replaced = {
            let mut c = self.lock();
            c.floor.join(&req.id);
            let old = c.members.insert(
                req.id.clone(),
                Member {
                    conn,
                    name: req.name.clone(),
                    role: req.role,
                    session: Arc::downgrade(&inner),
                    loss_pct: None,
                    rtt_ms: None,
                },
            );
            old.and_then(|m| m.session.upgrade())
        };
        if let Some(old) = replaced {
            tracing::info!(room = %self.name, member = %req.id, "session replaced by a newer one");
            old.shutdown().await;
        }
        for (slot, track, pt, ssrc) in outputs {
            let current_layer = Arc::new(AtomicU8::new(NO_LAYER));
            let leg = Leg {
                conn,
                slot,
                track: track.clone(),
                pt,
                ssrc,
                current_layer: current_layer.clone(),
            };
            let t = tokio::spawn(write_slot(self.clone(), leg, inner.video.subscribe()));
            let r = tokio::spawn(read_subscriber_rtcp(
                self.clone(),
                slot,
                track,
                current_layer,
            ));
            inner.push_task(t);
            inner.push_task(r);
        }
        self.sfu.stats.sessions.fetch_add(1, Ordering::Relaxed);
        self.publish_state();
        Ok(Session { answer, inner })
    }

    async fn negotiate(
        &self,
        pc: &Arc<dyn PeerConnection>,
        req: &JoinRequest,
        offer: RTCSessionDescription,
        gather_rx: &mut watch::Receiver<bool>,
        runtime: &Arc<MuxRuntime>,
    ) -> Result<(String, Vec<(Slot, Arc<TrackLocalStaticRTP>, u8, u32)>), SfuError> {
        let (mut audio_in, mut video_in) = receiving_sections(&offer.sdp);
        pc.set_remote_description(offer).await.map_err(neg)?;
        let mut added = Vec::new();
        for &slot in &req.subscribe {
            let free = if slot.is_audio() {
                &mut audio_in
            } else {
                &mut video_in
            };
            if *free == 0 {
                continue;
            }
            *free -= 1;
            let ssrc: u32 = rand::random();
            let (kind, codec) = if slot.is_audio() {
                (RtpCodecKind::Audio, opus_codec())
            } else {
                (
                    RtpCodecKind::Video,
                    video_codec(self.sfu.config.video_codec),
                )
            };
            let track = Arc::new(TrackLocalStaticRTP::new(
                rtc::media_stream::MediaStreamTrack::new(
                    format!("{}-{:?}", self.name, slot),
                    format!("{slot:?}-{ssrc}"),
                    format!("{slot:?}"),
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
            let sender = pc
                .add_track(track.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(neg)?;
            added.push((slot, track, sender, ssrc));
        }
        let answer = pc.create_answer(None).await.map_err(neg)?;
        pc.set_local_description(answer).await.map_err(neg)?;
        let answer = finish_answer(pc, gather_rx, runtime).await?;
        let mut outputs = Vec::new();
        for (slot, track, sender, ssrc) in added {
            let params = sender.get_parameters().await.map_err(neg)?;
            let Some(pt) = params
                .rtp_parameters
                .codecs
                .iter()
                .find(|c| !c.rtp_codec.mime_type.eq_ignore_ascii_case("video/rtx"))
                .map(|c| c.payload_type)
            else {
                // The client did not accept this codec on that m-line: nothing to send there.
                continue;
            };
            outputs.push((slot, track, pt, ssrc));
        }
        Ok((answer, outputs))
    }

    /// A packet from `source`.
    pub fn on_rtp(&self, source: SourceId, packet: rtp::Packet, now: Instant) {
        self.sfu.stats.received.fetch_add(1, Ordering::Relaxed);
        if packet.payload.is_empty() {
            return; // padding-only probes are the publisher's bandwidth estimation, not media
        }
        let h = InHeader {
            ssrc: packet.header.ssrc,
            seq: packet.header.sequence_number,
            ts: packet.header.timestamp,
        };
        let decided = {
            let mut c = self.lock();
            let c = &mut *c;
            let Some(src) = c.sources.get_mut(&source) else {
                return;
            };
            let Some(layer) = src.layer_of(h.ssrc) else {
                return;
            };
            if !src.simulcast && src.layer_ssrc[0] != Some(h.ssrc) {
                src.layer_ssrc[0] = Some(h.ssrc);
            }
            src.activity.saw(layer, now);
            let (active, from_conn) = (src.activity.active(now), src.conn);
            c.forwarders.iter_mut().enumerate().find_map(|(i, f)| {
                (f[0].source() == Some(source)).then(|| {
                    let v = f[layer as usize].on_packet(source, h, &packet.payload, now);
                    (i, v, from_conn, layer, active)
                })
            })
        };
        if let Some((i, Verdict::Forward(out), from_conn, layer, active_layers)) = decided {
            // No receivers is not an error: nobody subscribes to this slot yet.
            let _ = self.slots[i].send(Arc::new(Forwarded {
                packet,
                out,
                received: now,
                from_conn,
                layer,
                active_layers,
            }));
        }
    }

    /// A publisher's stream opened: `rid` names its simulcast layer, `None` without simulcast.
    fn open_layer(&self, source: SourceId, ssrc: u32, rid: Option<&str>) {
        let requests = {
            let mut c = self.lock();
            let c = &mut *c;
            let Some(s) = c.sources.get_mut(&source) else {
                return;
            };
            let layer = match rid {
                None if !s.simulcast => {
                    s.layer_ssrc[0] = Some(ssrc);
                    0
                }
                None => return,
                Some(rid) => {
                    if !s.simulcast {
                        s.simulcast = true;
                        s.layer_ssrc = [None; MAX_LAYERS];
                    }
                    if s.layer_ssrc.contains(&Some(ssrc)) {
                        return;
                    }
                    let taken = s
                        .layer_ssrc
                        .iter()
                        .enumerate()
                        .filter(|(_, x)| x.is_some())
                        .fold(0u8, |m, (i, _)| m | 1 << i);
                    let Some(layer) = layer_for_rid(rid, taken) else {
                        tracing::debug!(room = %self.name, "a fourth simulcast layer ignored");
                        return;
                    };
                    s.layer_ssrc[layer as usize] = Some(ssrc);
                    layer
                }
            };
            // A layer that opens after its slot switched to this source: its keyframe starts it.
            let waiting = c
                .forwarders
                .iter()
                .any(|f| f[0].source() == Some(source) && f[layer as usize].waiting_keyframe());
            let request = waiting
                .then(|| layer_keyframe_request(c, source, layer, Instant::now()))
                .flatten();
            request.into_iter().collect()
        };
        self.send_keyframe_requests(requests);
    }

    fn add_source(
        &self,
        conn: u64,
        owner: &str,
        role: Role,
        track: Arc<dyn TrackRemote>,
        audio: bool,
    ) -> SourceId {
        let (id, requests) = {
            let mut c = self.lock();
            let id = c.next_source;
            c.next_source += 1;
            c.sources.insert(
                id,
                Source {
                    conn,
                    owner: owner.to_owned(),
                    role,
                    audio,
                    track,
                    layer_ssrc: [None; MAX_LAYERS],
                    simulcast: false,
                    activity: LayerActivity::default(),
                },
            );
            (id, refresh_sources(&mut c, Instant::now()))
        };
        self.send_keyframe_requests(requests);
        self.publish_state();
        id
    }

    fn remove_source(&self, id: SourceId) {
        let requests = {
            let mut c = self.lock();
            c.sources.remove(&id);
            forget_source(&mut c, id);
            refresh_sources(&mut c, Instant::now())
        };
        self.send_keyframe_requests(requests);
        self.publish_state();
    }

    /// Follow a slot's packets as the subscribers get them (the loudspeaker bridge taps the
    /// two audio slots this way). A receiver that falls behind gets `Lagged` and skips ahead.
    pub fn tap(&self, slot: Slot) -> broadcast::Receiver<Arc<Forwarded>> {
        self.slots[slot as usize].subscribe()
    }

    /// Ask the source of a video slot for a keyframe of one layer (throttled per layer).
    pub fn request_keyframe(&self, slot: Slot, layer: u8) {
        let req = {
            let mut c = self.lock();
            let source = c.forwarders[slot as usize][0].source();
            source.and_then(|id| layer_keyframe_request(&mut c, id, layer, Instant::now()))
        };
        self.send_keyframe_requests(req.into_iter().collect());
    }

    fn send_keyframe_requests(&self, requests: KeyframeRequests) {
        for (track, media_ssrc) in requests {
            self.sfu
                .stats
                .keyframe_requests
                .fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                };
                if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
                    tracing::debug!(error = %e, "keyframe request not sent");
                }
            });
        }
    }

    fn floor_command(
        &self,
        f: impl FnOnce(&mut Floor) -> Result<FloorChange, FloorError>,
    ) -> Result<FloorChange, FloorError> {
        let (change, requests) = {
            let mut c = self.lock();
            let change = f(&mut c.floor)?;
            (change, refresh_sources(&mut c, Instant::now()))
        };
        self.send_keyframe_requests(requests);
        self.publish_state();
        Ok(change)
    }

    /// A house raises its hand.
    pub fn raise_hand(&self, house: &str) -> Result<FloorChange, FloorError> {
        self.floor_command(|f| f.raise_hand(house))
    }

    /// A house lowers its hand (or yields the floor).
    pub fn lower_hand(&self, house: &str) -> Result<FloorChange, FloorError> {
        self.floor_command(|f| Ok(f.lower_hand(house)))
    }

    /// The chair grants the floor.
    pub fn grant_floor(&self, house: &str) -> Result<FloorChange, FloorError> {
        self.floor_command(|f| f.grant(house))
    }

    /// The chair revokes the floor.
    pub fn revoke_floor(&self) -> Result<FloorChange, FloorError> {
        self.floor_command(|f| f.revoke())
    }

    /// The chair mutes or unmutes a house.
    pub fn set_muted(&self, house: &str, muted: bool) -> Result<FloorChange, FloorError> {
        self.floor_command(|f| f.set_muted(house, muted))
    }

    /// A participant reports its link quality.
    pub fn report_quality(&self, member: &str, loss_pct: f32, rtt_ms: f32) {
        {
            let mut c = self.lock();
            if let Some(m) = c.members.get_mut(member) {
                m.loss_pct = Some(loss_pct.clamp(0.0, 100.0));
                m.rtt_ms = Some(rtt_ms.clamp(0.0, 60_000.0));
            }
        }
        self.publish_state();
    }

    fn remove_member(&self, conn: u64, member: &str) {
        let requests = {
            let mut c = self.lock();
            if c.members.get(member).map(|m| m.conn) == Some(conn) {
                c.members.remove(member);
                c.floor.leave(member);
            }
            let gone: Vec<SourceId> = c
                .sources
                .iter()
                .filter(|(_, s)| s.conn == conn)
                .map(|(&id, _)| id)
                .collect();
            for id in gone {
                c.sources.remove(&id);
                forget_source(&mut c, id);
            }
            refresh_sources(&mut c, Instant::now())
        };
        self.send_keyframe_requests(requests);
        self.publish_state();
    }

    /// How many sessions are connected.
    pub fn member_count(&self) -> usize {
        self.lock().members.len()
    }
}

fn house_state(c: &RoomCore, id: &str, name: &str) -> HouseState {
    let m = c.members.get(id);
    HouseState {
        id: id.to_owned(),
        name: name.to_owned(),
        connected: m.is_some(),
        hand_raised: c.floor.queue().any(|h| h == id),
        muted: c.floor.is_muted(id),
        loss_pct: m.and_then(|m| m.loss_pct),
        rtt_ms: m.and_then(|m| m.rtt_ms),
        video: m.and_then(|m| m.session.upgrade()).map(|s| {
            let v = *s.video.borrow();
            if v.audio_only {
                VideoMode::Off
            } else if v.low {
                VideoMode::Small
            } else {
                VideoMode::Full
            }
        }),
    }
}

/// Point every slot at the source it should carry now; return the keyframe requests that the
/// switches call for.
fn refresh_sources(c: &mut RoomCore, now: Instant) -> KeyframeRequests {
    let latest = |pred: &dyn Fn(&Source) -> bool| -> Option<SourceId> {
        c.sources
            .iter()
            .filter(|(_, s)| pred(s))
            .map(|(&id, _)| id)
            .max()
    };
    let holder = c.floor.holder().map(str::to_owned);
    let speaking = holder.as_deref().is_some_and(|h| c.floor.may_speak(h));
    let wanted = [
        latest(&|s| s.role == Role::Chair && s.audio),
        latest(&|s| s.role == Role::Chair && !s.audio),
        if speaking {
            latest(&|s| Some(&s.owner) == holder.as_ref() && s.audio && s.role != Role::Chair)
        } else {
            None
        },
        latest(&|s| Some(&s.owner) == holder.as_ref() && !s.audio && s.role != Role::Chair),
    ];
    let mut switched = Vec::new();
    for (layers, want) in c.forwarders.iter_mut().zip(wanted) {
        for (layer, f) in layers.iter_mut().enumerate() {
            if let (true, Some(src)) = (f.set_source(want), want) {
                switched.push((src, layer as u8));
            }
        }
    }
    switched
        .into_iter()
        .filter_map(|(src, layer)| layer_keyframe_request(c, src, layer, now))
        .collect()
}

/// A keyframe request for one layer of a source, if the layer is known and the throttle lets
/// it through now.
fn layer_keyframe_request(
    c: &mut RoomCore,
    source: SourceId,
    layer: u8,
    now: Instant,
) -> Option<(Arc<dyn TrackRemote>, u32)> {
    let s = c.sources.get(&source)?;
    let ssrc = (*s.layer_ssrc.get(layer as usize)?)?;
    c.throttle
        .request(throttle_key(source, layer), now)
        .then(|| (s.track.clone(), ssrc))
}

fn forget_source(c: &mut RoomCore, id: SourceId) {
    for layer in 0..MAX_LAYERS as u8 {
        c.throttle.forget(throttle_key(id, layer));
    }
}

/// How many audio and video m-lines of an offer can receive from us.
fn receiving_sections(sdp: &str) -> (usize, usize) {
    let (mut audio, mut video) = (0, 0);
    let mut current: Option<bool> = None; // Some(true) = audio section
    let mut can_receive = true;
    let close = |cur: Option<bool>, recv: bool, a: &mut usize, v: &mut usize| match cur {
        Some(true) if recv => *a += 1,
        Some(false) if recv => *v += 1,
        _ => {}
    };
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            close(current, can_receive, &mut audio, &mut video);
            current = if m.starts_with("audio") {
                Some(true)
            } else if m.starts_with("video") {
                Some(false)
            } else {
                None
            };
            can_receive = m.split(' ').nth(1).is_none_or(|port| port != "0");
        } else if line == "a=sendonly" || line == "a=inactive" {
            can_receive = false;
        }
    }
    close(current, can_receive, &mut audio, &mut video);
    (audio, video)
}

async fn finish_answer(
    pc: &Arc<dyn PeerConnection>,
    gather_rx: &mut watch::Receiver<bool>,
    runtime: &Arc<MuxRuntime>,
) -> Result<String, SfuError> {
    // Host candidates only (the server has no STUN of its own): gathering takes milliseconds.
    tokio::time::timeout(Duration::from_secs(5), gather_rx.wait_for(|done| *done))
        .await
        .map_err(|_| SfuError::GatheringTimeout)?
        .map_err(|_| SfuError::Closed)?;
    let local = pc.local_description().await.ok_or(SfuError::Closed)?;
    if let Some(ufrag) = ice_ufrag(&local.sdp) {
        runtime.register_ufrag(ufrag);
    }
    Ok(rewrite_candidates_with_tcp(
        &local.sdp,
        runtime.advertised_addr(),
        runtime.tcp_addr(),
    ))
}

/// What video a subscriber wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct VideoPref {
    /// Low-bandwidth mode: no video at all.
    audio_only: bool,
    /// The smallest simulcast layer instead of the largest.
    low: bool,
}

/// No layer is being sent (see [`write_slot`]'s shared current layer).
const NO_LAYER: u8 = u8::MAX;

/// One subscriber's outgoing track for one slot.
struct Leg {
    conn: u64,
    slot: Slot,
    track: Arc<TrackLocalStaticRTP>,
    /// The payload type and SSRC negotiated with this subscriber.
    pt: u8,
    ssrc: u32,
    /// The simulcast layer being sent, shared with the leg's RTCP reader.
    current_layer: Arc<AtomicU8>,
}

async fn write_slot(room: Arc<Room>, leg: Leg, mut pref: watch::Receiver<VideoPref>) {
    let Leg {
        conn,
        slot,
        track,
        pt,
        ssrc,
        current_layer,
    } = leg;
    let mut rx = room.slots[slot as usize].subscribe();
    let kind = room.lock().forwarders[slot as usize][0].kind();
    let mut switch = LayerSwitch::new(kind);
    loop {
        let received = tokio::select! {
            r = rx.recv() => r,
            // Video resumes at a keyframe: ask for one now rather than wait for the next.
            changed = pref.changed(), if !slot.is_audio() => {
                if changed.is_err() {
                    return;
                }
                let p = *pref.borrow_and_update();
                if !p.audio_only && switch.current().is_none() {
                    if let Some(layer) = switch.target() {
                        room.request_keyframe(slot, layer);
                    }
                }
                continue;
            }
        };
        let f = match received {
            Ok(f) => f,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                room.sfu.stats.lagged.fetch_add(n, Ordering::Relaxed);
                if !slot.is_audio() {
                    switch.reset();
                    current_layer.store(NO_LAYER, Ordering::Relaxed);
                    if let Some(layer) = switch.target() {
                        room.request_keyframe(slot, layer);
                    }
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if f.from_conn == conn {
            continue;
        }
        let out = if slot.is_audio() {
            f.out
        } else {
            let p = *pref.borrow();
            if p.audio_only {
                if switch.current().is_some() {
                    switch.reset();
                    current_layer.store(NO_LAYER, Ordering::Relaxed);
                }
                continue;
            }
            if switch.set_target(pick_layer(f.active_layers, p.low)) {
                if let Some(layer) = switch.target() {
                    room.request_keyframe(slot, layer);
                }
            }
            let h = InHeader {
                ssrc: 0,
                seq: f.out.seq,
                ts: f.out.ts,
            };
            let Some(out) = switch.on_packet(f.layer, h, f.out.keyframe_start, Instant::now())
            else {
                continue;
            };
            current_layer.store(f.layer, Ordering::Relaxed);
            out
        };
        let mut p = f.packet.clone();
        p.header.ssrc = ssrc;
        p.header.payload_type = pt;
        p.header.sequence_number = out.seq;
        p.header.timestamp = out.ts;
        // Header extension ids were negotiated with the publisher, not with this subscriber.
        p.header.extension = false;
        p.header.extensions.clear();
        p.header.extension_profile = 0;
        if track.write_rtp(p).await.is_err() {
            return;
        }
        room.sfu.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let us = f.received.elapsed().as_micros().min(u64::MAX as u128) as u64;
        room.sfu.stats.forward_latency.record(us);
    }
}

async fn read_subscriber_rtcp(
    room: Arc<Room>,
    slot: Slot,
    track: Arc<TrackLocalStaticRTP>,
    current_layer: Arc<AtomicU8>,
) {
    while let Some(ev) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = ev else {
            continue;
        };
        if !slot.is_audio() && packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
            // The subscriber's decoder lost the picture of the layer it is sent.
            let layer = current_layer.load(Ordering::Relaxed);
            if layer != NO_LAYER {
                room.request_keyframe(slot, layer);
            }
        }
    }
}

struct PeerHandler {
    room: Weak<Room>,
    conn: u64,
    member: String,
    role: Role,
    publish: bool,
    gathered: watch::Sender<bool>,
    /// Set once ICE and DTLS are done (the connection state reached `Connected`).
    connected: watch::Sender<bool>,
    session: OnceLock<Weak<SessionInner>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(conn = self.conn, ?state, "peer connection state");
        if state == RTCPeerConnectionState::Connected {
            self.connected.send_replace(true);
        }
        if matches!(
            state,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ) {
            if let Some(s) = self.session.get().and_then(Weak::upgrade) {
                tokio::spawn(async move { s.shutdown().await });
            }
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if !self.publish {
            return;
        }
        let Some(room) = self.room.upgrade() else {
            return;
        };
        let Some(ssrc) = track.ssrcs().await.first().copied() else {
            return;
        };
        let audio = track.kind().await == RtpCodecKind::Audio;
        let (conn, member, role) = (self.conn, self.member.clone(), self.role);
        let task = tokio::spawn(async move {
            let source = room.add_source(conn, &member, role, track.clone(), audio);
            let rid = track.rid(ssrc).await;
            room.open_layer(source, ssrc, rid.as_deref());
            while let Some(ev) = track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => room.on_rtp(source, p, Instant::now()),
                    // One per simulcast layer, as each layer's first packet arrives.
                    TrackRemoteEvent::OnOpen(init) => {
                        room.open_layer(source, init.ssrc, init.rid.as_deref())
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
            room.remove_source(source);
        });
        if let Some(s) = self.session.get().and_then(Weak::upgrade) {
            s.push_task(task);
        }
    }
}

struct SessionInner {
    conn: u64,
    id: String,
    room: Arc<Room>,
    pc: Arc<dyn PeerConnection>,
    runtime: Arc<MuxRuntime>,
    closed: AtomicBool,
    /// Whether ICE and DTLS completed once.
    connected: watch::Receiver<bool>,
    // std Mutex: pushed to and drained, never held across `.await`.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// What video the subscriber wants (low-bandwidth mode, simulcast layer).
    video: watch::Sender<VideoPref>,
}

impl SessionInner {
    fn push_task(&self, t: tokio::task::JoinHandle<()>) {
        if self.closed.load(Ordering::Acquire) {
            t.abort();
            return;
        }
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(t);
    }

    async fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
        }
        let _ = self.pc.close().await;
        self.runtime.close();
        self.room.sfu.stats.sessions.fetch_sub(1, Ordering::Relaxed);
        // A replaced session's member entry already belongs to its successor; the conn check
        // in remove_member keeps it.
        self.room.remove_member(self.conn, &self.id);
    }
}

/// A participant's connection. Dropping it does not close it; call [`Session::close`].
#[derive(Clone)]
pub struct Session {
    /// The SDP answer for the client.
    pub answer: String,
    inner: Arc<SessionInner>,
}

impl Session {
    /// The participant id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The room.
    pub fn room(&self) -> &Arc<Room> {
        &self.inner.room
    }

    /// Low-bandwidth mode: stop sending this participant video (audio goes on), or resume it
    /// from the next keyframe. For a house on a link too poor for both.
    pub fn set_audio_only(&self, on: bool) {
        self.update_video(|v| std::mem::replace(&mut v.audio_only, on) != on);
    }

    /// Change the video choice; `f` says whether it changed. The room's state shows it.
    fn update_video(&self, f: impl FnOnce(&mut VideoPref) -> bool) {
        if self.inner.video.send_if_modified(f) {
            self.inner.room.publish_state();
        }
    }

    /// Whether the session is in low-bandwidth mode.
    pub fn audio_only(&self) -> bool {
        self.inner.video.borrow().audio_only
    }

    /// Low video quality: the smallest simulcast layer the publisher sends, instead of the
    /// largest. The switch happens at that layer's next keyframe (asked for at once). For a
    /// house whose link carries a small picture but not a sharp one; without simulcast there
    /// is one layer and this changes nothing.
    pub fn set_low_quality(&self, on: bool) {
        self.update_video(|v| std::mem::replace(&mut v.low, on) != on);
    }

    /// Whether the session asked for low video quality.
    pub fn low_quality(&self) -> bool {
        self.inner.video.borrow().low
    }

    /// Whether ICE and DTLS have completed (once; a later failure closes the session).
    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Whether the session has ended (closed, failed, or replaced).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// The client's current offer (the remote description), once negotiated.
    pub async fn remote_sdp(&self) -> Option<String> {
        self.inner.pc.remote_description().await.map(|d| d.sdp)
    }

    /// The hub's current ICE username fragment: it names the ICE session (WHIP's entity-tag).
    pub async fn local_ufrag(&self) -> Option<String> {
        let local = self.inner.pc.local_description().await?;
        ice_ufrag(&local.sdp).map(str::to_owned)
    }

    /// A trickled candidate from the client.
    pub async fn add_candidate(
        &self,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    ) -> Result<(), SfuError> {
        if self.is_closed() {
            return Err(SfuError::Closed);
        }
        self.inner
            .pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate,
                sdp_mid,
                sdp_mline_index,
                username_fragment: None,
                url: None,
            })
            .await
            .map_err(neg)
    }

    /// A new offer on the same connection (ICE restart after a network change). The tracks
    /// stay as they are; returns the answer.
    pub async fn renegotiate(&self, offer: RTCSessionDescription) -> Result<String, SfuError> {
        if self.is_closed() {
            return Err(SfuError::Closed);
        }
        let pc = &self.inner.pc;
        pc.set_remote_description(offer).await.map_err(neg)?;
        let answer = pc.create_answer(None).await.map_err(neg)?;
        pc.set_local_description(answer).await.map_err(neg)?;
        let local = pc.local_description().await.ok_or(SfuError::Closed)?;
        if let Some(ufrag) = ice_ufrag(&local.sdp) {
            self.inner.runtime.register_ufrag(ufrag);
        }
        Ok(rewrite_candidates_with_tcp(
            &local.sdp,
            self.inner.runtime.advertised_addr(),
            self.inner.runtime.tcp_addr(),
        ))
    }

    /// Leave the room and close the connection.
    pub async fn close(&self) {
        self.inner.shutdown().await;
    }

    /// Wait until the session ends.
    pub async fn closed(&self) {
        while !self.is_closed() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_receiving_sections() {
        let sdp = "v=0\r\nm=audio 9 UDP 111\r\na=sendrecv\r\nm=video 9 UDP 96\r\na=sendonly\r\n\
m=audio 9 UDP 111\r\na=recvonly\r\nm=video 0 UDP 96\r\nm=application 9 DTLS\r\n";
        assert_eq!(receiving_sections(sdp), (2, 0));
    }
}
