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

mod codecs;
mod core;
mod session;
mod sfu;
mod writer;

pub use codecs::{opus_codec, video_codec};
pub use session::Session;
pub use sfu::{Sfu, SfuConfig, SfuStats};

use self::core::{
    forget_source, house_state, layer_keyframe_request, refresh_sources, Member, RoomCore, Source,
};
use session::SessionInner;
use writer::{read_subscriber_rtcp, write_slot, Leg, VideoPref, NO_LAYER};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use tokio::sync::{broadcast, watch};
use webrtc::media_stream::track_remote::TrackRemote;

use crate::floor::{Floor, FloorChange, FloorError};
use crate::forward::{InHeader, SlotForwarder, SlotKind, SourceId, Verdict};
use crate::signal::{HouseState, RoomState};
use crate::simulcast::{layer_for_rid, LayerActivity, MAX_LAYERS};

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
