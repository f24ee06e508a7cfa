//! The SFU: the shared port, the rooms, their settings and counters.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Room;
use crate::keyframe::VideoCodec;
use crate::mux::UdpMux;

/// Settings shared by every room of the SFU.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// The room's video codec (every publisher and subscriber negotiates it).
    pub video_codec: VideoCodec,
    /// Least time between two keyframe requests for one stream (a simulcast layer) of a
    /// publisher; requests that come inside it go out as one at its end.
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

/// The SFU: the shared port and the rooms.
pub struct Sfu {
    pub(super) mux: Arc<UdpMux>,
    pub(super) config: SfuConfig,
    // std Mutex: a map lookup, never held across `.await`.
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    /// Counters across all rooms, for `/metrics` and the benchmarks.
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

    /// The shared UDP port (its address, routes and counters).
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
}
