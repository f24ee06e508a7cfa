//! The room's decisions, pure: which source feeds each slot, whose media is forwarded, when a
//! publisher is asked for a keyframe, who is connected and who holds the floor.
//!
//! [`RoomCore`] holds no tracks, no sockets and no clock, in the manner of str0m's and
//! quinn-proto's cores: the driver ([`super::Room`]) feeds it what happened (a member joined,
//! its media connected, a stream opened, a packet arrived, the chair granted the floor) with
//! `now`, and carries out what it returns: a [`Routed`] packet to put on a slot's channel,
//! [`KeyframeRequest`]s to send upstream, a [`FloorChange`] to announce. Between calls the
//! driver asks [`RoomCore::poll_timeout`] when to come back with
//! [`RoomCore::handle_timeout`] (a keyframe request owed at the end of a throttle window).
//!
//! It is built from the smaller cores: [`Floor`] (the floor's rules), a [`SlotForwarder`] per
//! slot and simulcast layer (continuity across sources), [`LayerActivity`] per source, and the
//! [`KeyframeThrottle`].
//!
//! What must stay true:
//! - each slot carries at most one source, the one [`RoomCore::state`]'s floor and the
//!   sources present call for: the chair's newest audio and video on the program slots; the
//!   floor holder's newest video, and its audio only while it is not muted, on the floor slots;
//! - a member counts as connected (in the state, and for the floor's rules) only once its
//!   media connection is up (ICE and DTLS done), never on the strength of an SDP answer;
//! - every slot switch to a video source asks that source for a keyframe of each known layer,
//!   through the throttle (at most one request per layer per interval, none lost).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::floor::{Floor, FloorChange, FloorError};
use crate::forward::{InHeader, OutHeader, SlotForwarder, SlotKind, SourceId, Verdict};
use crate::keyframe::VideoCodec;
use crate::signal::{HouseState, RoomState, VideoMode};
use crate::simulcast::{layer_for_rid, LayerActivity, MAX_LAYERS};
use crate::throttle::KeyframeThrottle;

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
    /// Every slot, in index order.
    pub const ALL: [Slot; 4] = [
        Slot::ProgramAudio,
        Slot::ProgramVideo,
        Slot::FloorAudio,
        Slot::FloorVideo,
    ];

    /// Whether the slot carries audio (else video).
    pub fn is_audio(self) -> bool {
        matches!(self, Slot::ProgramAudio | Slot::FloorAudio)
    }

    /// What the slot carries in a room whose video codec is `video`.
    pub fn kind(self, video: VideoCodec) -> SlotKind {
        if self.is_audio() {
            SlotKind::Audio
        } else {
            SlotKind::Video(video)
        }
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

/// A floor command, from a house or the chair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorCommand {
    /// A house raises its hand.
    RaiseHand(String),
    /// A house lowers its hand, or yields the floor if it holds it.
    LowerHand(String),
    /// The chair gives the floor to a house.
    Grant(String),
    /// The chair takes the floor back.
    Revoke,
    /// The chair mutes (`true`) or unmutes a house.
    Mute(String, bool),
}

/// Ask a publisher for a keyframe: a PLI for `ssrc`, on the track of `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeRequest {
    /// The source whose track carries the request.
    pub source: SourceId,
    /// The stream (simulcast layer) that should send a keyframe.
    pub ssrc: u32,
}

/// Where a packet goes: onto `slot`, with the slot's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// The slot it feeds.
    pub slot: Slot,
    /// Its sequence number, timestamp and keyframe flag on the slot (per simulcast layer).
    pub out: OutHeader,
    /// The connection it came from (never sent back to it: a house holding the floor must
    /// not hear itself).
    pub from_conn: u64,
    /// Its simulcast layer (0 without simulcast).
    pub layer: u8,
    /// The source's layers flowing at the packet's arrival, a bit per layer.
    pub active_layers: u8,
}

/// What a room knew before the hub stopped (from the record, after a power cut): the room
/// resumes from it as the houses reconnect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restored {
    /// The house that held the floor. It holds it again, and is heard as soon as its media
    /// is back, unless the chair grants or revokes the floor first.
    pub floor: Option<String>,
    /// Houses the chair had muted.
    pub muted: Vec<String>,
}

impl Restored {
    /// The floor held by `floor`, nobody muted.
    pub fn floor(floor: Option<String>) -> Self {
        Self {
            floor,
            muted: Vec::new(),
        }
    }

    /// And these houses muted.
    pub fn with_muted(mut self, muted: Vec<String>) -> Self {
        self.muted = muted;
        self
    }
}

struct Source {
    conn: u64,
    owner: String,
    role: Role,
    audio: bool,
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

/// The throttle's key for one layer of a source, and back.
fn throttle_key(source: SourceId, layer: u8) -> SourceId {
    source * MAX_LAYERS as u64 + u64::from(layer)
}

fn from_throttle_key(key: SourceId) -> (SourceId, u8) {
    (key / MAX_LAYERS as u64, (key % MAX_LAYERS as u64) as u8)
}

struct Member {
    conn: u64,
    name: String,
    role: Role,
    /// Its media connection is up (ICE and DTLS done).
    connected: bool,
    /// Last reported loss, percent (0..=100).
    loss_pct: Option<f32>,
    /// Last reported round-trip time, ms (0..=60,000).
    rtt_ms: Option<f32>,
    video: VideoMode,
}

/// The decision state of one room. See the module documentation.
pub struct RoomCore {
    floor: Floor,
    /// Per slot, a forwarder per simulcast layer (audio slots use layer 0).
    forwarders: [[SlotForwarder; MAX_LAYERS]; 4],
    throttle: KeyframeThrottle,
    sources: HashMap<SourceId, Source>,
    /// By member id; one entry per id (a newer session replaces an older one).
    members: HashMap<String, Member>,
    next_source: SourceId,
    /// The houses that belong to the room (id, display name), shown even when absent.
    directory: Vec<(String, String)>,
}

impl RoomCore {
    /// An empty room whose video is `video`, asking a publisher for at most one keyframe per
    /// layer per `keyframe_interval`.
    pub fn new(video: VideoCodec, keyframe_interval: Duration) -> Self {
        Self {
            floor: Floor::new(),
            forwarders: Slot::ALL
                .map(|s| std::array::from_fn(|_| SlotForwarder::new(s.kind(video)))),
            throttle: KeyframeThrottle::new(keyframe_interval),
            sources: HashMap::new(),
            members: HashMap::new(),
            next_source: 1,
            directory: Vec::new(),
        }
    }

    /// The houses that belong to the room (id, display name), shown even when not connected.
    pub fn set_directory(&mut self, houses: Vec<(String, String)>) {
        self.directory = houses;
    }

    /// Seed the room with what it knew before a restart. Call it before the members
    /// reconnect; a later grant, revoke or mute by the chair wins over it.
    pub fn restore(&mut self, restored: Restored, now: Instant) -> Vec<KeyframeRequest> {
        self.floor.restore(restored.floor, restored.muted);
        self.refresh_sources(now)
    }

    /// A participant's session was accepted (its SDP answered) on connection `conn`. It is not
    /// connected until [`Self::media_connected`]. Returns the connection of an older session
    /// with the same id, which the driver must close: a kiosk that reconnects must not appear
    /// twice. (A house whose older session was connected keeps its place on the floor while
    /// the newer one connects.)
    pub fn join(&mut self, id: &str, conn: u64, name: &str, role: Role) -> Option<u64> {
        let old = self.members.insert(
            id.to_owned(),
            Member {
                conn,
                name: name.to_owned(),
                role,
                connected: false,
                loss_pct: None,
                rtt_ms: None,
                video: VideoMode::Full,
            },
        );
        old.map(|m| m.conn).filter(|&c| c != conn)
    }

    /// The media connection `conn` is up (ICE and DTLS done): its member counts as connected
    /// from now on. Returns whether that changed the state.
    pub fn media_connected(&mut self, conn: u64) -> bool {
        let Some((id, m)) = self.members.iter_mut().find(|(_, m)| m.conn == conn) else {
            return false;
        };
        if m.connected {
            return false;
        }
        m.connected = true;
        self.floor.join(id);
        true
    }

    /// The session on `conn` of member `id` ended: its sources go, and unless a newer session
    /// took its place, the member leaves (losing its raised hand and the floor).
    pub fn leave(
        &mut self,
        id: &str,
        conn: u64,
        now: Instant,
    ) -> (FloorChange, Vec<KeyframeRequest>) {
        let mut change = FloorChange::None;
        if self.members.get(id).map(|m| m.conn) == Some(conn) {
            self.members.remove(id);
            change = self.floor.leave(id);
        }
        let gone: Vec<SourceId> = self
            .sources
            .iter()
            .filter(|(_, s)| s.conn == conn)
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.forget_source(id);
        }
        (change, self.refresh_sources(now))
    }

    /// A member's link quality, as it reports it (clamped to sane ranges). Returns whether the
    /// member is known.
    pub fn report_quality(&mut self, id: &str, loss_pct: f32, rtt_ms: f32) -> bool {
        let Some(m) = self.members.get_mut(id) else {
            return false;
        };
        m.loss_pct = Some(loss_pct.clamp(0.0, 100.0));
        m.rtt_ms = Some(rtt_ms.clamp(0.0, 60_000.0));
        true
    }

    /// The video a member's session asked for (shown to the chair).
    pub fn set_video(&mut self, conn: u64, mode: VideoMode) {
        if let Some(m) = self.members.values_mut().find(|m| m.conn == conn) {
            m.video = mode;
        }
    }

    /// A publisher's track arrived on `conn`: a new source. Its streams become known with
    /// [`Self::open_layer`].
    pub fn add_source(
        &mut self,
        conn: u64,
        owner: &str,
        role: Role,
        audio: bool,
        now: Instant,
    ) -> (SourceId, Vec<KeyframeRequest>) {
        let id = self.next_source;
        self.next_source += 1;
        self.sources.insert(
            id,
            Source {
                conn,
                owner: owner.to_owned(),
                role,
                audio,
                layer_ssrc: [None; MAX_LAYERS],
                simulcast: false,
                activity: LayerActivity::default(),
            },
        );
        (id, self.refresh_sources(now))
    }

    /// A source's track ended.
    pub fn remove_source(&mut self, id: SourceId, now: Instant) -> Vec<KeyframeRequest> {
        self.forget_source(id);
        self.refresh_sources(now)
    }

    /// A source's stream `ssrc` opened: `rid` names its simulcast layer, `None` without
    /// simulcast.
    pub fn open_layer(
        &mut self,
        source: SourceId,
        ssrc: u32,
        rid: Option<&str>,
        now: Instant,
    ) -> Vec<KeyframeRequest> {
        let Some(s) = self.sources.get_mut(&source) else {
            return Vec::new();
        };
        let layer = match rid {
            None if !s.simulcast => {
                s.layer_ssrc[0] = Some(ssrc);
                0
            }
            None => return Vec::new(),
            Some(rid) => {
                if !s.simulcast {
                    s.simulcast = true;
                    s.layer_ssrc = [None; MAX_LAYERS];
                }
                if s.layer_ssrc.contains(&Some(ssrc)) {
                    return Vec::new();
                }
                let taken = s
                    .layer_ssrc
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| x.is_some())
                    .fold(0u8, |m, (i, _)| m | 1 << i);
                let Some(layer) = layer_for_rid(rid, taken) else {
                    tracing::debug!("a fourth simulcast layer ignored");
                    return Vec::new();
                };
                s.layer_ssrc[layer as usize] = Some(ssrc);
                layer
            }
        };
        // A layer that opens after its slot switched to this source: its keyframe starts it.
        let waiting = self
            .forwarders
            .iter()
            .any(|f| f[0].source() == Some(source) && f[layer as usize].waiting_keyframe());
        if waiting {
            self.layer_keyframe_request(source, layer, now)
                .into_iter()
                .collect()
        } else {
            Vec::new()
        }
    }

    /// A packet from `source` arrived at `now`: the slot it feeds and its header there, or
    /// `None` when it feeds nothing now (not a current source, a muted holder, waiting for a
    /// keyframe, padding).
    pub fn on_rtp(
        &mut self,
        source: SourceId,
        h: InHeader,
        payload: &[u8],
        now: Instant,
    ) -> Option<Routed> {
        if payload.is_empty() {
            return None; // padding-only probes are the publisher's bandwidth estimation
        }
        let src = self.sources.get_mut(&source)?;
        let layer = src.layer_of(h.ssrc)?;
        if !src.simulcast && src.layer_ssrc[0] != Some(h.ssrc) {
            src.layer_ssrc[0] = Some(h.ssrc);
        }
        src.activity.saw(layer, now);
        let (active_layers, from_conn) = (src.activity.active(now), src.conn);
        let (i, layers) = self
            .forwarders
            .iter_mut()
            .enumerate()
            .find(|(_, f)| f[0].source() == Some(source))?;
        match layers[layer as usize].on_packet(source, h, payload, now) {
            Verdict::Forward(out) => Some(Routed {
                slot: Slot::ALL[i],
                out,
                from_conn,
                layer,
                active_layers,
            }),
            Verdict::Drop(_) => None,
        }
    }

    /// Ask the source of a video slot for a keyframe of one layer (a subscriber starts, or
    /// lost its picture). Throttled per layer: a request inside the interval is owed and
    /// comes out of [`Self::handle_timeout`] at the interval's end, one for all that came.
    pub fn request_keyframe(
        &mut self,
        slot: Slot,
        layer: u8,
        now: Instant,
    ) -> Option<KeyframeRequest> {
        let source = self.forwarders[slot as usize][0].source()?;
        self.layer_keyframe_request(source, layer, now)
    }

    /// Carry out a floor command. The change it made (for the driver to announce and the
    /// record to follow) and the keyframe requests its slot switches call for.
    pub fn floor(
        &mut self,
        command: FloorCommand,
        now: Instant,
    ) -> Result<(FloorChange, Vec<KeyframeRequest>), FloorError> {
        let change = match command {
            FloorCommand::RaiseHand(h) => self.floor.raise_hand(&h)?,
            FloorCommand::LowerHand(h) => self.floor.lower_hand(&h),
            FloorCommand::Grant(h) => self.floor.grant(&h)?,
            FloorCommand::Revoke => self.floor.revoke()?,
            FloorCommand::Mute(h, muted) => self.floor.set_muted(&h, muted)?,
        };
        Ok((change, self.refresh_sources(now)))
    }

    /// When [`Self::handle_timeout`] has something to do, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.throttle.poll_timeout()
    }

    /// The keyframe requests owed at `now` (coalesced at the end of their throttle window).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<KeyframeRequest> {
        self.throttle
            .handle_timeout(now)
            .into_iter()
            .filter_map(|key| {
                let (source, layer) = from_throttle_key(key);
                let ssrc = self.sources.get(&source)?.layer_ssrc[layer as usize]?;
                Some(KeyframeRequest { source, ssrc })
            })
            .collect()
    }

    /// The source feeding a slot now.
    pub fn slot_source(&self, slot: Slot) -> Option<SourceId> {
        self.forwarders[slot as usize][0].source()
    }

    /// How many sessions are in the room (connected or still connecting).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The room as the chair sees it.
    pub fn state(&self) -> RoomState {
        let mut houses: Vec<HouseState> = self
            .directory
            .iter()
            .map(|(id, name)| self.house_state(id, name))
            .collect();
        for (id, m) in &self.members {
            if m.role == Role::House && !self.directory.iter().any(|(d, _)| d == id) {
                houses.push(self.house_state(id, &m.name));
            }
        }
        RoomState {
            live: self.sources.values().any(|s| s.role == Role::Chair),
            floor: self.floor.holder().map(str::to_owned),
            hands: self.floor.queue().map(str::to_owned).collect(),
            houses,
        }
    }

    fn house_state(&self, id: &str, name: &str) -> HouseState {
        let m = self.members.get(id).filter(|m| m.connected);
        HouseState {
            id: id.to_owned(),
            name: name.to_owned(),
            connected: m.is_some(),
            hand_raised: self.floor.queue().any(|h| h == id),
            muted: self.floor.is_muted(id),
            loss_pct: m.and_then(|m| m.loss_pct),
            rtt_ms: m.and_then(|m| m.rtt_ms),
            video: m.map(|m| m.video),
        }
    }

    /// Point every slot at the source it should carry now; return the keyframe requests that
    /// the switches call for.
    fn refresh_sources(&mut self, now: Instant) -> Vec<KeyframeRequest> {
        let latest = |pred: &dyn Fn(&Source) -> bool| -> Option<SourceId> {
            self.sources
                .iter()
                .filter(|(_, s)| pred(s))
                .map(|(&id, _)| id)
                .max()
        };
        let holder = self.floor.holder();
        let speaking = holder.is_some_and(|h| self.floor.may_speak(h));
        let holds = |s: &Source| Some(s.owner.as_str()) == holder && s.role != Role::Chair;
        let wanted = [
            latest(&|s| s.role == Role::Chair && s.audio),
            latest(&|s| s.role == Role::Chair && !s.audio),
            if speaking {
                latest(&|s| holds(s) && s.audio)
            } else {
                None
            },
            latest(&|s| holds(s) && !s.audio),
        ];
        let mut switched = Vec::new();
        for (layers, want) in self.forwarders.iter_mut().zip(wanted) {
            for (layer, f) in layers.iter_mut().enumerate() {
                if let (true, Some(src)) = (f.set_source(want), want) {
                    switched.push((src, layer as u8));
                }
            }
        }
        switched
            .into_iter()
            .filter_map(|(src, layer)| self.layer_keyframe_request(src, layer, now))
            .collect()
    }

    /// A keyframe request for one layer of a source, if the layer is known and the throttle
    /// lets it through now (else it is owed).
    fn layer_keyframe_request(
        &mut self,
        source: SourceId,
        layer: u8,
        now: Instant,
    ) -> Option<KeyframeRequest> {
        let ssrc = (*self.sources.get(&source)?.layer_ssrc.get(layer as usize)?)?;
        self.throttle
            .request(throttle_key(source, layer), now)
            .then_some(KeyframeRequest { source, ssrc })
    }

    fn forget_source(&mut self, id: SourceId) {
        self.sources.remove(&id);
        for layer in 0..MAX_LAYERS as u8 {
            self.throttle.forget(throttle_key(id, layer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const KEY: &[u8] = &[0x10, 0x00, 0x9d];
    const DELTA: &[u8] = &[0x10, 0x01, 0x00];
    const VOICE: &[u8] = &[0xf8, 0xff, 0xfe];

    /// A room in virtual time: `at(ms)` is the clock.
    struct Given {
        core: RoomCore,
        t0: Instant,
    }

    fn room() -> Given {
        Given {
            core: RoomCore::new(VideoCodec::Vp8, 500 * MS),
            t0: Instant::now(),
        }
    }

    fn h(ssrc: u32, seq: u16) -> InHeader {
        InHeader {
            ssrc,
            seq,
            ts: u32::from(seq) * 960,
        }
    }

    impl Given {
        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        /// `id` joins on connection `conn` and its media comes up.
        fn connect(&mut self, id: &str, conn: u64, role: Role) {
            assert_eq!(self.core.join(id, conn, id, role), None);
            assert!(self.core.media_connected(conn));
        }

        /// `id` on `conn` publishes a stream `ssrc`: its source.
        fn publish(&mut self, conn: u64, id: &str, role: Role, audio: bool, ssrc: u32) -> SourceId {
            let now = self.at(0);
            let (s, _) = self.core.add_source(conn, id, role, audio, now);
            self.core.open_layer(s, ssrc, None, now);
            s
        }

        fn rtp(
            &mut self,
            source: SourceId,
            ssrc: u32,
            seq: u16,
            payload: &[u8],
            ms: u64,
        ) -> Option<Routed> {
            let now = self.at(ms);
            self.core.on_rtp(source, h(ssrc, seq), payload, now)
        }

        fn floor(&mut self, command: FloorCommand, ms: u64) -> (FloorChange, Vec<KeyframeRequest>) {
            let now = self.at(ms);
            self.core
                .floor(command, now)
                .expect("the floor command is accepted")
        }

        fn house(&self, id: &str) -> HouseState {
            let state = self.core.state();
            state
                .houses
                .into_iter()
                .find(|h| h.id == id)
                .expect("the house is listed")
        }
    }

    /// h1 (connection 2) and h2 (3) connected, each with one audio or video stream.
    fn two_houses(audio: bool, ssrc1: u32, ssrc2: u32) -> (Given, SourceId, SourceId) {
        let mut g = room();
        g.connect("h1", 2, Role::House);
        g.connect("h2", 3, Role::House);
        let s1 = g.publish(2, "h1", Role::House, audio, ssrc1);
        let s2 = g.publish(3, "h2", Role::House, audio, ssrc2);
        (g, s1, s2)
    }

    fn holder(from: Option<&str>, to: Option<&str>) -> FloorChange {
        FloorChange::Holder {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
        }
    }

    #[test]
    fn a_house_counts_as_connected_only_once_its_media_is_up() {
        let mut g = room();
        g.core.set_directory(vec![("h1".into(), "Thôn 1".into())]);
        assert_eq!(g.core.join("h1", 7, "Thôn 1", Role::House), None);
        assert!(
            !g.house("h1").connected,
            "an SDP answer is not a connection"
        );
        assert_eq!(g.house("h1").video, None);
        assert_eq!(
            g.core
                .floor(FloorCommand::Grant("h1".into()), g.at(0))
                .err(),
            Some(FloorError::NotConnected("h1".into())),
            "the floor goes only to a house whose media flows"
        );
        assert!(
            !g.core.media_connected(99),
            "an unknown connection changes nothing"
        );
        assert!(g.core.media_connected(7));
        assert!(!g.core.media_connected(7), "once");
        assert!(g.house("h1").connected);
        assert_eq!(g.house("h1").video, Some(VideoMode::Full));
        let (change, _) = g.floor(FloorCommand::Grant("h1".into()), 10);
        assert_eq!(change, holder(None, Some("h1")));
        // Another leaves before its media ever came up: it never counted, and now it is gone.
        g.core.join("h2", 8, "h2", Role::House);
        g.core.leave("h2", 8, g.at(20));
        assert!(g.core.state().houses.iter().all(|h| h.id != "h2"));
        assert_eq!(g.core.member_count(), 1);
    }

    #[test]
    fn a_replaced_session_never_takes_its_successor_with_it() {
        let mut g = room();
        g.connect("h1", 1, Role::House);
        g.floor(FloorCommand::Grant("h1".into()), 0);
        assert_eq!(
            g.core.join("h1", 2, "h1", Role::House),
            Some(1),
            "close the old one"
        );
        assert!(!g.house("h1").connected, "the new one has no media yet");
        let (change, _) = g.core.leave("h1", 1, g.at(5));
        assert_eq!(change, FloorChange::None);
        assert_eq!(g.core.member_count(), 1);
        assert_eq!(
            g.core.state().floor.as_deref(),
            Some("h1"),
            "it keeps the floor"
        );
        assert!(g.core.media_connected(2));
        assert!(g.house("h1").connected);
    }

    #[test]
    fn the_chair_is_heard_and_seen_from_its_first_keyframe() {
        let mut g = room();
        g.connect("chair", 1, Role::Chair);
        let voice = g.publish(1, "chair", Role::Chair, true, 100);
        let (camera, requests) = g.core.add_source(1, "chair", Role::Chair, false, g.at(0));
        assert!(requests.is_empty(), "its stream is not known yet");
        let requests = g.core.open_layer(camera, 200, None, g.at(1));
        assert_eq!(
            requests,
            vec![KeyframeRequest {
                source: camera,
                ssrc: 200
            }]
        );
        assert!(g.core.state().live);
        let r = g.rtp(voice, 100, 5, VOICE, 2).expect("the voice goes out");
        assert_eq!((r.slot, r.from_conn, r.out.seq), (Slot::ProgramAudio, 1, 5));
        assert_eq!(g.rtp(camera, 200, 1, DELTA, 3), None, "mid-picture");
        let r = g
            .rtp(camera, 200, 2, KEY, 4)
            .expect("the keyframe starts it");
        assert!(r.slot == Slot::ProgramVideo && r.out.keyframe_start);
        assert_eq!(g.rtp(voice, 100, 6, &[], 5), None, "padding is not media");
    }

    #[test]
    fn a_house_is_heard_only_while_it_holds_the_floor() {
        let mut g = room();
        g.connect("chair", 1, Role::Chair);
        g.connect("h1", 2, Role::House);
        let voice = g.publish(2, "h1", Role::House, true, 300);
        assert_eq!(g.rtp(voice, 300, 1, VOICE, 0), None, "no floor, not heard");
        g.floor(FloorCommand::RaiseHand("h1".into()), 10);
        assert_eq!(g.core.state().hands, vec!["h1".to_owned()]);
        assert_eq!(
            g.rtp(voice, 300, 2, VOICE, 20),
            None,
            "a raised hand is not the floor"
        );
        let (change, _) = g.floor(FloorCommand::Grant("h1".into()), 30);
        assert_eq!(change, holder(None, Some("h1")));
        assert_eq!(g.core.state().floor.as_deref(), Some("h1"));
        let r = g.rtp(voice, 300, 3, VOICE, 40).expect("heard");
        assert_eq!(r.slot, Slot::FloorAudio);
        assert_eq!(r.from_conn, 2, "tagged so it is not sent back to itself");
        let (change, _) = g.floor(FloorCommand::Revoke, 50);
        assert_eq!(change, holder(Some("h1"), None));
        assert_eq!(g.rtp(voice, 300, 4, VOICE, 60), None, "revoked, silent");
    }

    #[test]
    fn a_muted_holder_is_not_forwarded() {
        let mut g = room();
        g.connect("h1", 2, Role::House);
        let voice = g.publish(2, "h1", Role::House, true, 300);
        let camera = g.publish(2, "h1", Role::House, false, 301);
        g.floor(FloorCommand::Grant("h1".into()), 0);
        assert!(g.rtp(voice, 300, 1, VOICE, 10).is_some());
        assert!(g.rtp(camera, 301, 1, KEY, 10).is_some());
        let (change, _) = g.floor(FloorCommand::Mute("h1".into(), true), 20);
        assert_eq!(change, FloorChange::Muted("h1".into(), true));
        assert!(g.house("h1").muted);
        for seq in 2..50 {
            assert_eq!(
                g.rtp(voice, 300, seq, VOICE, 20 + u64::from(seq) * 20),
                None
            );
        }
        let r = g
            .rtp(camera, 301, 2, DELTA, 30)
            .expect("its picture goes on");
        assert_eq!(r.slot, Slot::FloorVideo);
        assert_eq!(
            g.core.state().floor.as_deref(),
            Some("h1"),
            "it keeps the floor"
        );
        g.floor(FloorCommand::Mute("h1".into(), false), 1000);
        let r = g.rtp(voice, 300, 51, VOICE, 1020).expect("heard again");
        assert_eq!(
            r.out.seq, 2,
            "the slot's numbering goes on where it stopped"
        );
    }

    #[test]
    fn a_switch_asks_for_one_keyframe() {
        let (mut g, c1, c2) = two_houses(false, 401, 402);
        let (_, requests) = g.floor(FloorCommand::Grant("h1".into()), 0);
        assert_eq!(
            requests,
            vec![KeyframeRequest {
                source: c1,
                ssrc: 401
            }]
        );
        // Thirty houses join within the window and each asks: nothing more goes now...
        for i in 1..=30 {
            assert_eq!(
                g.core.request_keyframe(Slot::FloorVideo, 0, g.at(i * 10)),
                None
            );
        }
        // ...and one goes at the window's end, for all of them.
        assert_eq!(g.core.poll_timeout(), Some(g.at(500)));
        assert!(g.core.handle_timeout(g.at(499)).is_empty());
        assert_eq!(
            g.core.handle_timeout(g.at(500)),
            vec![KeyframeRequest {
                source: c1,
                ssrc: 401
            }]
        );
        assert_eq!(g.core.poll_timeout(), None, "one, not thirty");
        // Passing the floor asks the new holder at once: its own throttle window.
        let (_, requests) = g.floor(FloorCommand::Grant("h2".into()), 510);
        assert_eq!(
            requests,
            vec![KeyframeRequest {
                source: c2,
                ssrc: 402
            }]
        );
        assert_eq!(g.core.poll_timeout(), None);
    }

    #[test]
    fn a_request_owed_for_a_source_that_left_is_dropped() {
        let mut g = room();
        g.connect("chair", 1, Role::Chair);
        let camera = g.publish(1, "chair", Role::Chair, false, 900);
        assert!(g
            .core
            .request_keyframe(Slot::ProgramVideo, 0, g.at(10))
            .is_none());
        assert_eq!(g.core.poll_timeout(), Some(g.at(500)), "owed");
        g.core.remove_source(camera, g.at(100));
        assert_eq!(g.core.poll_timeout(), None);
        assert!(g.core.handle_timeout(g.at(600)).is_empty());
    }

    #[test]
    fn the_floor_passes_from_house_to_house_as_one_stream() {
        let (mut g, v1, v2) = two_houses(true, 501, 502);
        g.floor(FloorCommand::Grant("h1".into()), 0);
        let last = g.rtp(v1, 501, 9000, VOICE, 20).expect("h1 heard").out;
        assert_eq!(g.rtp(v2, 502, 70, VOICE, 20), None, "one holder at a time");
        let (change, _) = g.floor(FloorCommand::Grant("h2".into()), 30);
        assert_eq!(change, holder(Some("h1"), Some("h2")));
        assert_eq!(g.rtp(v1, 501, 9001, VOICE, 40), None, "h1 quiet now");
        let first = g.rtp(v2, 502, 71, VOICE, 40).expect("h2 heard").out;
        assert_eq!(first.seq, last.seq.wrapping_add(1), "one continuous stream");
        assert!(first.ts.wrapping_sub(last.ts) >= 960);
        let (change, _) = g.floor(FloorCommand::LowerHand("h2".into()), 50);
        assert_eq!(
            change,
            holder(Some("h2"), None),
            "a holder lowering its hand yields"
        );
        assert_eq!(g.rtp(v2, 502, 72, VOICE, 60), None);
    }

    #[test]
    fn a_holder_that_leaves_yields_the_floor() {
        let mut g = room();
        g.connect("h1", 2, Role::House);
        let voice = g.publish(2, "h1", Role::House, true, 601);
        g.floor(FloorCommand::Grant("h1".into()), 0);
        let (change, _) = g.core.leave("h1", 2, g.at(10));
        assert_eq!(change, holder(Some("h1"), None));
        assert_eq!(g.core.state().floor, None);
        assert_eq!(
            g.rtp(voice, 601, 1, VOICE, 20),
            None,
            "its sources went with it"
        );
        assert_eq!(g.core.member_count(), 0);
    }

    #[test]
    fn a_restored_floor_returns_with_its_house() {
        let mut g = room();
        g.core.restore(
            Restored::floor(Some("h3".into())).with_muted(vec!["h4".into()]),
            g.at(0),
        );
        let state = g.core.state();
        assert_eq!(
            state.floor.as_deref(),
            Some("h3"),
            "the floor is still h3's"
        );
        // The houses come back after the power cut, in any order.
        g.connect("h4", 4, Role::House);
        assert!(g.house("h4").muted);
        g.connect("h3", 3, Role::House);
        let voice = g.publish(3, "h3", Role::House, true, 700);
        let camera = g.publish(3, "h3", Role::House, false, 701);
        let r = g
            .rtp(voice, 700, 1, VOICE, 50)
            .expect("heard as soon as it is back");
        assert_eq!(r.slot, Slot::FloorAudio);
        assert!(g.rtp(camera, 701, 1, KEY, 50).is_some());
        assert_eq!(g.core.state().floor.as_deref(), Some("h3"));
    }

    #[test]
    fn the_chair_overrides_a_restored_floor() {
        let mut g = room();
        g.core.restore(Restored::floor(Some("h3".into())), g.at(0));
        g.connect("h2", 2, Role::House);
        let (change, _) = g.floor(FloorCommand::Grant("h2".into()), 10);
        assert_eq!(
            change,
            holder(Some("h3"), Some("h2")),
            "the record learns h3 lost it"
        );
        g.connect("h3", 3, Role::House);
        let voice = g.publish(3, "h3", Role::House, true, 800);
        assert_eq!(
            g.rtp(voice, 800, 1, VOICE, 20),
            None,
            "h3 came back too late"
        );

        let mut g = room();
        g.core.restore(Restored::floor(Some("h3".into())), g.at(0));
        let (change, _) = g.floor(FloorCommand::Revoke, 10);
        assert_eq!(change, holder(Some("h3"), None));
        g.connect("h3", 3, Role::House);
        let voice = g.publish(3, "h3", Role::House, true, 800);
        assert_eq!(g.rtp(voice, 800, 1, VOICE, 20), None);
    }
}
