//! # dinh-broadcast: the loudspeaker bridge
//!
//! Carries a room's voice (the SFU's two audio slots: the chair, the house holding the floor)
//! to the commune's loudspeaker clusters and the rooms' HTTP streams, and plays announcements
//! at three priorities. The hub (`dinh-web`) feeds it packets, tells it what the record says
//! (the relay, scheduled announcements) and records what it reports (clusters' health,
//! announcements started and ended). It knows nothing of the record, the SFU or HTTP.
//!
//! # Layout
//! Pure cores, with the clock as an argument and no IO (STYLE habit 1):
//! - [`engine`]: every 20 ms, decode, mix, filter, level and encode once per (feed, format),
//!   and say which outputs each frame goes to; which feed each output plays;
//! - [`programme`]: what plays when: scheduled announcements, the running ones'
//!   bookkeeping, announcement ids, the relay's chime;
//! - [`health`]: each cluster's status from evidence;
//! - [`jitter`] and [`dsp`]: the meeting's input and the signal chain; [`clip`]: announcement
//!   files decoded within bounds; [`rtp`], [`ogg`]: packet and page formats; [`config`]: a
//!   cluster's settings and their validation.
//!
//! The driver, which owns the sockets, the tasks and the 20 ms tick, and decides nothing the
//! cores decide:
//! - [`bridge`]: [`bridge::Bridge`], a cheap handle on the one task that runs the cores and
//!   every output's transport; [`icecast`]: the source connection to an Icecast mount;
//! - [`files`]: announcement files on disk, a folder and a quota per room.
//!
//! ```no_run
//! use dinh_broadcast::bridge::{Bridge, BridgeSettings};
//! use dinh_broadcast::config::{ClusterConfig, ClusterKind, Codec};
//! use dinh_broadcast::engine::Voice;
//!
//! # async fn demo(opus_packet: bytes::Bytes) -> Result<(), Box<dyn std::error::Error>> {
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! let bridge = Bridge::start(BridgeSettings::default(), stopped)?;
//! bridge.add_room("demo", "Họp dân").await;
//! let cluster: ClusterConfig = serde_json::from_value(serde_json::json!({
//!     "id": "thon-3", "kind": "rtp", "destination": "239.10.0.3:5004", "codec": "pcmu"
//! }))?;
//! assert_eq!(cluster.kind, ClusterKind::Rtp);
//! assert_eq!(cluster.codec, Codec::Pcmu);
//! bridge.add_cluster(cluster, "demo").await?;
//! // What the record says: the room's relay runs.
//! bridge.set_relay("demo", true).await;
//! // The SFU's chair slot, packet by packet; the bridge sends RTP to thon-3 every 20 ms.
//! bridge.push("demo", Voice::Chair, 1, opus_packet, std::time::Instant::now());
//! let mut events = bridge.events(); // clusters' status, announcements: to record
//! # let _ = events.try_recv();
//! stop.send(true)?;
//! # Ok(()) }
//! ```
/// `Debug` that names the type and shows only the fields listed (`debug_fields!(Leveller:
/// gain_db)`): the others hold codec or filter state that has no `Debug` or is not worth
/// printing.
macro_rules! debug_fields {
    ($ty:ident: $($field:ident),+) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))+
                    .finish()
            }
        }
    };
}
pub(crate) use debug_fields;

pub mod bridge;
pub mod clip;
pub mod config;
pub mod dsp;
pub mod engine;
pub mod files;
pub mod health;
pub mod icecast;
pub mod jitter;
pub mod ogg;
pub mod programme;
pub mod rtp;
