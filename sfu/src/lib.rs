//! # dinh-sfu: the selective forwarding unit of Đình
//!
//! One chair publishes camera and microphone; every cultural house receives them; the house
//! holding the floor is heard (and seen) by the chair and every other house.
//!
//! # Layout
//!
//! Pure cores, tested without sockets or clocks (they take `now` and return what to do):
//! - [`room::RoomCore`]: a room's decisions: which source feeds each of the four slots,
//!   whose packets are forwarded, who counts as connected (once ICE and DTLS are done), the
//!   floor, and the keyframe requests (with [`room::RoomCore::poll_timeout`] for the ones it
//!   owes later). Built from the smaller cores below;
//! - [`forward`]: per-slot sequence/timestamp rewriting across source switches, keyframe gating;
//! - [`simulcast`]: which layer each subscriber gets, switched at keyframes;
//! - [`floor`]: raised hands, the floor holder, mutes, the floor restored after a restart;
//! - [`throttle`]: one keyframe request per stream per interval, a late one owed to the
//!   interval's end rather than dropped;
//! - [`histogram`]: the packet path's latency counts;
//! - [`keyframe`]: VP8 and H.264 keyframe recognition;
//! - [`signal`] and [`sdp`]: the signalling messages and SDP checks (fuzzed).
//!
//! Drivers around them:
//! - [`mux`]: one UDP port (and one TCP port) for every peer connection;
//! - [`room`]: [`room::Sfu`] and [`room::Room`], the driver of `RoomCore` on webrtc-rs, split
//!   by role as Galène's `rtpconn/` is: `room/session.rs` (a participant's peer connection,
//!   its negotiation and events, [`room::Session`]), `room/reader.rs` (a publisher's track
//!   into the core, keyframe requests back up it), `room/writer.rs` (a slot's packets out to
//!   one subscriber, with that leg's pure `VideoLeg`), `room/codecs.rs`, `room/sfu.rs`.
//!
//! With the feature `testkit`, `testkit` has in-process WebRTC clients for tests and load tools.
//!
//! # The core in virtual time
//!
//! What the driver does for each event, with the clock as an argument:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use dinh_sfu::floor::FloorChange;
//! use dinh_sfu::forward::InHeader;
//! use dinh_sfu::keyframe::VideoCodec;
//! use dinh_sfu::room::{FloorCommand, KeyframeRequest, Role, RoomCore, Slot};
//!
//! let t0 = Instant::now();
//! let ms = |n: u64| t0 + Duration::from_millis(n);
//! let mut core = RoomCore::new(VideoCodec::Vp8, Duration::from_millis(500));
//! // A house's session is answered on connection 1; it counts once its media is up.
//! core.join("house-1", 1, "Thôn 1", Role::House);
//! assert!(core.media_connected(1));
//! // Its microphone and camera arrive as sources; each stream opens with its SSRC.
//! let (voice, _) = core.add_source(1, "house-1", Role::House, true, ms(0));
//! core.open_layer(voice, 0xa1, None, ms(0));
//! let (camera, _) = core.add_source(1, "house-1", Role::House, false, ms(0));
//! core.open_layer(camera, 0xc1, None, ms(0));
//! // Its voice is not forwarded until the chair gives it the floor...
//! let h = |seq| InHeader { ssrc: 0xa1, seq, ts: u32::from(seq) * 960 };
//! assert_eq!(core.on_rtp(voice, h(1), &[0xf8, 1], ms(20)), None);
//! let (change, keyframes) = core.floor(FloorCommand::Grant("house-1".into()), ms(30))?;
//! assert_eq!(change, FloorChange::Holder { from: None, to: Some("house-1".into()) });
//! // ...which switches the floor's video slot to its camera: one keyframe request.
//! assert_eq!(keyframes, vec![KeyframeRequest { source: camera, ssrc: 0xc1 }]);
//! let routed = core.on_rtp(voice, h(2), &[0xf8, 2], ms(40)).expect("forwarded");
//! assert_eq!(routed.slot, Slot::FloorAudio);
//! // A house joining 10 ms later asks again: owed, sent once at the window's end.
//! assert_eq!(core.request_keyframe(Slot::FloorVideo, 0, ms(40)), None);
//! assert_eq!(core.poll_timeout(), Some(ms(530)));
//! assert_eq!(core.handle_timeout(ms(530)).len(), 1);
//! # Ok::<(), dinh_sfu::floor::FloorError>(())
//! ```
//!
//! # Driving it
//!
//! After a restart, seed each room from the record before the houses reconnect
//! ([`room::Room::restore`]). Then:
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
//! // The house counts as connected (and may be given the floor) once ICE and DTLS are done;
//! // a caller bounds the wait and drops a session that never gets there.
//! if tokio::time::timeout(std::time::Duration::from_secs(30), session.connected()).await != Ok(true) {
//!     session.close().await;
//!     return Ok(());
//! }
//! let mut floor = room.floor_changes(); // every change, also those no command returns
//! room.grant_floor("house-1")?;
//! println!("{:?}", floor.recv().await?);
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
