//! The writer side: a slot's packets out to one subscriber's track, and that track's RTCP.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{broadcast, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

use super::{Room, Slot};
use crate::forward::InHeader;
use crate::rtcp_forward::is_keyframe_request;
use crate::simulcast::{pick_layer, LayerSwitch};

/// What video a subscriber wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct VideoPref {
    /// Low-bandwidth mode: no video at all.
    pub(super) audio_only: bool,
    /// The smallest simulcast layer instead of the largest.
    pub(super) low: bool,
}

/// No layer is being sent (see [`write_slot`]'s shared current layer).
pub(super) const NO_LAYER: u8 = u8::MAX;

/// One subscriber's outgoing track for one slot.
pub(super) struct Leg {
    pub(super) conn: u64,
    pub(super) slot: Slot,
    pub(super) track: Arc<TrackLocalStaticRTP>,
    /// The payload type and SSRC negotiated with this subscriber.
    pub(super) pt: u8,
    pub(super) ssrc: u32,
    /// The simulcast layer being sent, shared with the leg's RTCP reader.
    pub(super) current_layer: Arc<AtomicU8>,
}

pub(super) async fn write_slot(room: Arc<Room>, leg: Leg, mut pref: watch::Receiver<VideoPref>) {
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

pub(super) async fn read_subscriber_rtcp(
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
