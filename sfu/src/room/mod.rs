//! Rooms and their participants: the driver around the room's pure core, [`RoomCore`].
//!
//! Each participant has one `RTCPeerConnection` (webrtc-rs) on the shared UDP port. What a
//! participant publishes becomes a *source*; the room decides which source feeds each of its
//! four downstream [`Slot`]s (the chair's voice and camera, the floor holder's voice and
//! camera) and every subscriber gets one outgoing track per slot it asked for. The floor can
//! change without any renegotiation: the slot's [`SlotForwarder`](crate::forward::SlotForwarder)
//! rewrites the new source's packets to continue the stream the subscriber already decodes.
//!
//! Split by role, as Galène's `rtpconn/` is:
//! - `core`: [`RoomCore`], every decision, pure (no tracks, no clock, no tokio);
//! - `sfu`: [`Sfu`], the shared port and the rooms, with its settings and counters;
//! - `codecs`: what the room negotiates (Opus, the room's video codec, RTX, RID extensions);
//! - `session`: a participant's peer connection, its negotiation and its events ([`Session`]);
//! - `reader`: a publisher's track into the core, and keyframe requests back up it;
//! - `writer`: a slot's channel out to one subscriber's track, and that track's RTCP.
//!
//! Packet path: a reader task per incoming track → [`Room::on_rtp`] ([`RoomCore::on_rtp`] under
//! the room's lock) → a `tokio::sync::broadcast` channel per slot → a writer task per
//! subscriber and slot (SSRC and payload type of that subscriber's leg, simulcast layer, gate
//! at keyframes) → webrtc-rs (NACK buffer, SRTP, the shared socket).
//!
//! The driver reads the clock and passes `now` in; it carries out what the core returns
//! after releasing the lock (keyframe requests, a replaced session to close, the new state),
//! and keeps one timer per room for what the core owes later ([`RoomCore::poll_timeout`]).

mod codecs;
mod core;
mod reader;
mod session;
mod sfu;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use rtc::rtp;
use tokio::sync::{broadcast, watch};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::RTCSessionDescription;

use crate::floor::{FloorChange, FloorError};
use crate::forward::{InHeader, SourceId};
use crate::signal::{RoomState, VideoMode};

pub use self::core::{FloorCommand, KeyframeRequest, Restored, Role, RoomCore, Routed, Slot};
#[cfg(feature = "testkit")]
pub(crate) use codecs::local_track;
pub use codecs::{opus_codec, video_codec};
pub use session::Session;
pub use sfu::{Sfu, SfuConfig, SfuStats};

use session::SessionInner;

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

/// What a participant asks of the room.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Participant id (house id, or `chair`). A second session with the same id replaces the
    /// first: a kiosk that reconnects must not appear twice.
    pub id: String,
    /// Display name, shown to the chair.
    pub name: String,
    /// What it may do in the room.
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

/// A source's track and the connection it arrived on.
type SourceTrack = (u64, Arc<dyn TrackRemote>);

/// One meeting room: its participants, its four slots and its floor. Created on first use by
/// [`Sfu::room`] and kept for the life of the SFU.
pub struct Room {
    name: String,
    sfu: Arc<Sfu>,
    me: Weak<Room>,
    // std Mutex: taken for a few hash lookups per packet, never across an `.await`. What the
    // core decides is carried out after the lock is released.
    core: Mutex<RoomCore>,
    // The driver's halves of what the core names by id: each source's track (with its
    // connection) for keyframe requests, each connection's session for replacing it. std
    // Mutexes: map lookups, never held across an `.await`.
    tracks: Mutex<HashMap<SourceId, SourceTrack>>,
    sessions: Mutex<HashMap<u64, Weak<SessionInner>>>,
    slots: [broadcast::Sender<Arc<Forwarded>>; 4],
    state_tx: watch::Sender<RoomState>,
    floor_tx: broadcast::Sender<FloorChange>,
    /// The deadline a timer task is armed for (see [`RoomCore::poll_timeout`]).
    timer: Mutex<Option<Instant>>,
    next_conn: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Room {
    fn new(name: &str, sfu: Arc<Sfu>) -> Arc<Self> {
        let (state_tx, _) = watch::channel(RoomState::default());
        Arc::new_cyclic(|me| Self {
            name: name.to_owned(),
            me: me.clone(),
            core: Mutex::new(RoomCore::new(
                sfu.config.video_codec,
                sfu.config.keyframe_interval,
            )),
            tracks: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            // 512 packets: about 1.5 s of audio plus video at 1.2 Mbit/s; a subscriber further
            // behind skips ahead and waits for a keyframe.
            slots: Slot::ALL.map(|_| broadcast::channel(512).0),
            state_tx,
            // Floor changes are rare (commands, leaves): 64 is more than any reader lags.
            floor_tx: broadcast::channel(64).0,
            timer: Mutex::new(None),
            next_conn: AtomicU64::new(1),
            sfu,
        })
    }

    /// The room's name, as in URLs and tokens.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run `f` on the core with `now`, then carry out the keyframe requests it returns and arm
    /// the timer for any it owes.
    fn decide<T>(&self, f: impl FnOnce(&mut RoomCore, Instant) -> (T, Vec<KeyframeRequest>)) -> T {
        let (value, requests, wake) = {
            let mut c = lock(&self.core);
            let (value, requests) = f(&mut c, Instant::now());
            (value, requests, c.poll_timeout())
        };
        reader::send_keyframe_requests(self, requests);
        self.arm_timer(wake);
        value
    }

    /// Make sure a timer fires at `at` to hand the core the time: one task per deadline. A
    /// deadline later than the one armed needs none: that one re-arms for it when it fires.
    fn arm_timer(&self, at: Option<Instant>) {
        let Some(at) = at else {
            return;
        };
        {
            let mut armed = lock(&self.timer);
            if armed.is_some_and(|a| a <= at) {
                return;
            }
            *armed = Some(at);
        }
        let room = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            let Some(room) = room.upgrade() else {
                return;
            };
            {
                let mut armed = lock(&room.timer);
                if *armed == Some(at) {
                    *armed = None;
                }
            }
            room.decide(|c, now| ((), c.handle_timeout(now)));
        });
    }

    /// The houses that belong to the room (id, display name), shown even when not connected.
    pub fn set_directory(&self, houses: Vec<(String, String)>) {
        lock(&self.core).set_directory(houses);
        self.publish_state();
    }

    /// Seed the room with what it knew before the hub stopped (from the record): the house
    /// that held the floor holds it again, and is heard as soon as its media is back, unless
    /// the chair grants or revokes the floor first; the houses the chair had muted stay
    /// muted. Call it at start-up, before participants reconnect.
    pub fn restore(&self, restored: Restored) {
        self.decide(|c, now| ((), c.restore(restored, now)));
        self.publish_state();
    }

    /// Follow the room's state (every change, latest value).
    pub fn watch_state(&self) -> watch::Receiver<RoomState> {
        self.state_tx.subscribe()
    }

    /// The room's state as last published.
    pub fn state(&self) -> RoomState {
        self.state_tx.borrow().clone()
    }

    /// Every change of the floor the room decides, whatever caused it: a command (also
    /// returned to its caller), or a holder whose session ended (which no command returns).
    pub fn floor_changes(&self) -> broadcast::Receiver<FloorChange> {
        self.floor_tx.subscribe()
    }

    fn announce(&self, change: &FloorChange) {
        if *change != FloorChange::None {
            // No receivers is not an error: nobody follows the floor.
            let _ = self.floor_tx.send(change.clone());
        }
    }

    fn publish_state(&self) {
        let state = lock(&self.core).state();
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
    /// session with its answer. It counts as connected (in [`Self::state`], and for the
    /// floor) once its media is up: ICE and DTLS done.
    pub async fn join(
        self: &Arc<Self>,
        req: JoinRequest,
        offer: RTCSessionDescription,
    ) -> Result<Session, SfuError> {
        session::join(self, req, offer).await
    }

    /// Enter a negotiated session; returns the older session it replaces, to close.
    fn enter(
        &self,
        req: &JoinRequest,
        conn: u64,
        session: Weak<SessionInner>,
    ) -> Option<Arc<SessionInner>> {
        let replaced = lock(&self.core).join(&req.id, conn, &req.name, req.role);
        let mut sessions = lock(&self.sessions);
        sessions.insert(conn, session);
        replaced.and_then(|old| sessions.get(&old)?.upgrade())
    }

    /// A session's media connection is up.
    fn media_connected(&self, conn: u64) {
        if lock(&self.core).media_connected(conn) {
            self.publish_state();
        }
    }

    /// A session ended.
    fn leave(&self, id: &str, conn: u64) {
        lock(&self.sessions).remove(&conn);
        lock(&self.tracks).retain(|_, (c, _)| *c != conn);
        let change = self.decide(|c, now| c.leave(id, conn, now));
        self.announce(&change);
        self.publish_state();
    }

    fn set_video(&self, conn: u64, mode: VideoMode) {
        lock(&self.core).set_video(conn, mode);
        self.publish_state();
    }

    fn track(&self, source: SourceId) -> Option<Arc<dyn TrackRemote>> {
        lock(&self.tracks).get(&source).map(|(_, t)| t.clone())
    }

    /// A packet from `source`, arrived at `now`.
    pub fn on_rtp(&self, source: SourceId, packet: rtp::Packet, now: Instant) {
        self.sfu.stats.received.fetch_add(1, Ordering::Relaxed);
        let h = InHeader {
            ssrc: packet.header.ssrc,
            seq: packet.header.sequence_number,
            ts: packet.header.timestamp,
        };
        let routed = lock(&self.core).on_rtp(source, h, &packet.payload, now);
        if let Some(r) = routed {
            // No receivers is not an error: nobody subscribes to this slot yet.
            let _ = self.slots[r.slot as usize].send(Arc::new(Forwarded {
                packet,
                out: r.out,
                received: now,
                from_conn: r.from_conn,
                layer: r.layer,
                active_layers: r.active_layers,
            }));
        }
    }

    fn add_source(&self, p: &reader::Publisher, track: Arc<dyn TrackRemote>) -> SourceId {
        let (id, requests, wake) = {
            let mut c = lock(&self.core);
            let (id, requests) = c.add_source(p.conn, &p.member, p.role, p.audio, Instant::now());
            (id, requests, c.poll_timeout())
        };
        // The track is known before the requests that need it go out.
        lock(&self.tracks).insert(id, (p.conn, track));
        reader::send_keyframe_requests(self, requests);
        self.arm_timer(wake);
        self.publish_state();
        id
    }

    fn open_layer(&self, source: SourceId, ssrc: u32, rid: Option<&str>) {
        self.decide(|c, now| ((), c.open_layer(source, ssrc, rid, now)));
    }

    fn remove_source(&self, id: SourceId) {
        self.decide(|c, now| ((), c.remove_source(id, now)));
        lock(&self.tracks).remove(&id);
        self.publish_state();
    }

    /// Follow a slot's packets as the subscribers get them (the loudspeaker bridge taps the
    /// two audio slots this way). A receiver that falls behind gets `Lagged` and skips ahead.
    pub fn tap(&self, slot: Slot) -> broadcast::Receiver<Arc<Forwarded>> {
        self.slots[slot as usize].subscribe()
    }

    /// Ask the source of a video slot for a keyframe of one layer. Throttled per layer: a
    /// request inside the interval is sent at its end, once for all that came meanwhile.
    pub fn request_keyframe(&self, slot: Slot, layer: u8) {
        self.decide(|c, now| {
            (
                (),
                c.request_keyframe(slot, layer, now).into_iter().collect(),
            )
        });
    }

    fn floor_command(&self, command: FloorCommand) -> Result<FloorChange, FloorError> {
        let change = self.decide(|c, now| match c.floor(command, now) {
            Ok((change, requests)) => (Ok(change), requests),
            Err(e) => (Err(e), Vec::new()),
        })?;
        self.announce(&change);
        self.publish_state();
        Ok(change)
    }

    /// A house raises its hand: it joins the end of the queue (raising twice keeps its
    /// place). Refused for a house whose media is not connected.
    pub fn raise_hand(&self, house: &str) -> Result<FloorChange, FloorError> {
        self.floor_command(FloorCommand::RaiseHand(house.to_owned()))
    }

    /// A house lowers its hand, or yields the floor if it holds it.
    pub fn lower_hand(&self, house: &str) -> Result<FloorChange, FloorError> {
        self.floor_command(FloorCommand::LowerHand(house.to_owned()))
    }

    /// The chair gives the floor to a connected house, taking it from any other.
    pub fn grant_floor(&self, house: &str) -> Result<FloorChange, FloorError> {
        self.floor_command(FloorCommand::Grant(house.to_owned()))
    }

    /// The chair takes the floor back; refused when nobody holds it.
    pub fn revoke_floor(&self) -> Result<FloorChange, FloorError> {
        self.floor_command(FloorCommand::Revoke)
    }

    /// The chair mutes or unmutes a connected house: a muted holder keeps the floor and its
    /// picture, not its voice.
    pub fn set_muted(&self, house: &str, muted: bool) -> Result<FloorChange, FloorError> {
        self.floor_command(FloorCommand::Mute(house.to_owned(), muted))
    }

    /// A participant reports its link quality: loss in percent, round-trip time in ms.
    pub fn report_quality(&self, member: &str, loss_pct: f32, rtt_ms: f32) {
        if lock(&self.core).report_quality(member, loss_pct, rtt_ms) {
            self.publish_state();
        }
    }

    /// How many sessions are in the room (connected, or still connecting).
    pub fn member_count(&self) -> usize {
        lock(&self.core).member_count()
    }
}
