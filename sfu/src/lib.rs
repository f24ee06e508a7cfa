//! # dinh-sfu: the selective forwarding unit of Đình
//!
//! One chair publishes camera and microphone; every cultural house receives them; the house
//! holding the floor is heard (and seen) by the chair and every other house.
//!
//! # Layout
//!
//! Pure cores, tested without sockets or clocks:
//! - [`forward`]: per-slot sequence/timestamp rewriting across source switches, keyframe gating;
//! - [`simulcast`]: which layer each subscriber gets, switched at keyframes;
//! - [`floor`]: raised hands, the floor holder, mutes;
//! - [`throttle`]: one keyframe request per publisher per interval;
//! - [`histogram`]: the packet path's latency counts;
//! - [`keyframe`]: VP8 and H.264 keyframe recognition;
//! - [`signal`] and [`sdp`]: the signalling messages and SDP checks (fuzzed).
//!
//! Drivers around them:
//! - [`mux`]: one UDP port for every peer connection;
//! - [`room`]: rooms, sessions and the packet path on webrtc-rs.
//!
//! With the feature `testkit`, `testkit` has in-process WebRTC clients for tests and load tools.
//!
//! # Driving it
//!
//! ```no_run
//! # async fn demo(offer_sdp: String) -> Result<(), Box<dyn std::error::Error>> {
//! use dinh_sfu::{mux::UdpMux, room::{JoinRequest, Role, Sfu, SfuConfig, Slot}, sdp::parse_offer};
//! let mux = UdpMux::bind("127.0.0.1:0".parse()?, None).await?;
//! tokio::spawn(mux.clone().run());
//! let sfu = Sfu::new(mux, SfuConfig::default());
//! let room = sfu.room("demo");
//! let session = room
//!     .join(
//!         JoinRequest {
//!             id: "house-1".into(),
//!             name: "Nhà văn hoá thôn 1".into(),
//!             role: Role::House,
//!             publish: true,
//!             subscribe: vec![Slot::ProgramAudio, Slot::ProgramVideo, Slot::FloorAudio, Slot::FloorVideo],
//!         },
//!         parse_offer(&offer_sdp)?,
//!     )
//!     .await?;
//! println!("answer: {}", session.answer);
//! room.grant_floor("house-1")?;
//! # Ok(()) }
//! ```

pub mod floor;
pub mod forward;
pub mod histogram;
pub mod keyframe;
pub mod mux;
pub mod room;
mod rtcp_forward;
pub mod sdp;
pub mod signal;
pub mod simulcast;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod throttle;

pub use rtc;
pub use webrtc;
