//! The room's decision state and the functions that decide on it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use webrtc::media_stream::track_remote::TrackRemote;

use super::{KeyframeRequests, Role, SessionInner};
use crate::floor::Floor;
use crate::forward::{SlotForwarder, SourceId};
use crate::signal::{HouseState, VideoMode};
use crate::simulcast::{LayerActivity, MAX_LAYERS};

pub(super) struct Source {
    pub(super) conn: u64,
    pub(super) owner: String,
    pub(super) role: Role,
    pub(super) audio: bool,
    pub(super) track: Arc<dyn TrackRemote>,
    /// Each layer's SSRC, for keyframe requests; without simulcast only layer 0.
    pub(super) layer_ssrc: [Option<u32>; MAX_LAYERS],
    /// Whether the publisher names its streams by RID (simulcast).
    pub(super) simulcast: bool,
    pub(super) activity: LayerActivity,
}

impl Source {
    /// The layer of a packet's SSRC. Without simulcast every SSRC is layer 0 (a publisher that
    /// restarts its encoder changes SSRC; the slot's forwarder follows). With simulcast an
    /// SSRC no RID has named is not media to forward.
    pub(super) fn layer_of(&self, ssrc: u32) -> Option<u8> {
        match self.layer_ssrc.iter().position(|s| *s == Some(ssrc)) {
            Some(l) => Some(l as u8),
            None if !self.simulcast => Some(0),
            None => None,
        }
    }
}

/// The throttle's key for one layer of a source.
pub(super) fn throttle_key(source: SourceId, layer: u8) -> SourceId {
    source * MAX_LAYERS as u64 + u64::from(layer)
}

pub(super) struct Member {
    pub(super) conn: u64,
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) session: Weak<SessionInner>,
    pub(super) loss_pct: Option<f32>,
    pub(super) rtt_ms: Option<f32>,
}

// Everything the room decides on, behind one std Mutex: taken for a few hash lookups per
// packet, never across an `.await`. Keyframe requests and closes it decides on are carried out
// after the lock is released.
pub(super) struct RoomCore {
    pub(super) floor: Floor,
    /// Per slot, a forwarder per simulcast layer (audio slots use layer 0).
    pub(super) forwarders: [[SlotForwarder; MAX_LAYERS]; 4],
    pub(super) throttle: crate::throttle::KeyframeThrottle,
    pub(super) sources: HashMap<SourceId, Source>,
    pub(super) members: HashMap<String, Member>,
    pub(super) next_source: SourceId,
    pub(super) directory: Vec<(String, String)>,
}

pub(super) fn house_state(c: &RoomCore, id: &str, name: &str) -> HouseState {
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
pub(super) fn refresh_sources(c: &mut RoomCore, now: Instant) -> KeyframeRequests {
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
pub(super) fn layer_keyframe_request(
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

pub(super) fn forget_source(c: &mut RoomCore, id: SourceId) {
    for layer in 0..MAX_LAYERS as u8 {
        c.throttle.forget(throttle_key(id, layer));
    }
}
