//! The writer side: one task per subscriber and slot takes the slot's packets off its channel
//! and writes them on the subscriber's track, with that subscriber's SSRC, payload type,
//! simulcast layer and numbering; a second task reads the track's RTCP for keyframe requests.
//!
//! The decisions of a video leg (which layer, when to ask for a keyframe) are [`VideoLeg`]'s,
//! pure and tested in virtual time; the task only moves packets and reads the clock.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{broadcast, watch, Notify};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

use super::{Forwarded, Room, Slot};
use crate::forward::{InHeader, OutHeader, SlotKind};
use crate::rtcp_forward::is_keyframe_request;
use crate::simulcast::{pick_layer, LayerSwitch};

/// What video a subscriber wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct VideoPref {
    /// Low-bandwidth mode: no video at all.
    pub audio_only: bool,
    /// The smallest simulcast layer instead of the largest.
    pub low: bool,
}

/// One subscriber's view of a video slot: its [`LayerSwitch`] and when it needs a keyframe.
/// Each method returns the layer to ask a keyframe of, if any (the room throttles them).
#[derive(Debug)]
pub(super) struct VideoLeg {
    switch: LayerSwitch,
}

impl VideoLeg {
    pub fn new(kind: SlotKind) -> Self {
        Self {
            switch: LayerSwitch::new(kind),
        }
    }

    /// A packet of the slot: its header for this subscriber, or `None` to skip it.
    pub fn on_packet(
        &mut self,
        f: &Forwarded,
        pref: VideoPref,
        now: Instant,
    ) -> (Option<OutHeader>, Option<u8>) {
        if pref.audio_only {
            self.switch.reset();
            return (None, None);
        }
        let ask = self
            .switch
            .set_target(pick_layer(f.active_layers, pref.low))
            .then(|| self.switch.target())
            .flatten();
        let h = InHeader {
            ssrc: 0,
            seq: f.out.seq,
            ts: f.out.ts,
        };
        let out = self.switch.on_packet(f.layer, h, f.out.keyframe_start, now);
        (out, ask)
    }

    /// The subscriber's choice changed: video that resumes starts at a keyframe, asked for
    /// now rather than at the publisher's next one.
    pub fn on_pref(&mut self, pref: VideoPref) -> Option<u8> {
        if pref.audio_only || self.switch.current().is_some() {
            return None;
        }
        self.switch.target()
    }

    /// The subscriber missed packets (its channel overflowed): start again at a keyframe.
    pub fn on_lagged(&mut self) -> Option<u8> {
        self.switch.reset();
        self.switch.target()
    }

    /// The subscriber asked for a keyframe (PLI or FIR): its decoder lost the picture of the
    /// layer it is sent, or it has not had one yet and waits for its target's.
    pub fn on_keyframe_request(&self, pref: VideoPref) -> Option<u8> {
        if pref.audio_only {
            return None;
        }
        self.switch.current().or(self.switch.target())
    }
}

/// One subscriber's outgoing track for one slot.
pub(super) struct Leg {
    pub conn: u64,
    pub slot: Slot,
    pub track: Arc<TrackLocalStaticRTP>,
    /// The payload type and SSRC negotiated with this subscriber.
    pub pt: u8,
    pub ssrc: u32,
    /// Set by the leg's RTCP reader when the subscriber asks for a keyframe.
    pub keyframe_wanted: Arc<Notify>,
}

/// Write a slot's packets on one subscriber's leg, from the moment its media connection is
/// up: packets written before then die in webrtc-rs for want of SRTP keys, and a keyframe
/// lost that way would leave the subscriber starting at a delta frame.
pub(super) async fn write_slot(
    room: Arc<Room>,
    leg: Leg,
    mut connected: watch::Receiver<bool>,
    mut pref: watch::Receiver<VideoPref>,
) {
    let Leg {
        conn,
        slot,
        track,
        pt,
        ssrc,
        keyframe_wanted,
    } = leg;
    if connected.wait_for(|c| *c).await.is_err() {
        return;
    }
    let mut rx = room.tap(slot);
    let mut video =
        (!slot.is_audio()).then(|| VideoLeg::new(slot.kind(room.sfu.config.video_codec)));
    loop {
        let received = tokio::select! {
            r = rx.recv() => r,
            changed = pref.changed(), if video.is_some() => {
                if changed.is_err() {
                    return;
                }
                let p = *pref.borrow_and_update();
                if let Some(layer) = video.as_mut().and_then(|v| v.on_pref(p)) {
                    room.request_keyframe(slot, layer);
                }
                continue;
            }
            () = keyframe_wanted.notified(), if video.is_some() => {
                let p = *pref.borrow();
                if let Some(layer) = video.as_ref().and_then(|v| v.on_keyframe_request(p)) {
                    room.request_keyframe(slot, layer);
                }
                continue;
            }
        };
        let f = match received {
            Ok(f) => f,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                room.sfu.stats.lagged.fetch_add(n, Ordering::Relaxed);
                if let Some(layer) = video.as_mut().and_then(VideoLeg::on_lagged) {
                    room.request_keyframe(slot, layer);
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if f.from_conn == conn {
            continue;
        }
        let out = match video.as_mut() {
            None => f.out,
            Some(v) => {
                let (out, ask) = v.on_packet(&f, *pref.borrow(), Instant::now());
                if let Some(layer) = ask {
                    room.request_keyframe(slot, layer);
                }
                let Some(out) = out else {
                    continue;
                };
                out
            }
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

/// Read a subscriber's RTCP on one video leg and wake its writer on each keyframe request.
pub(super) async fn read_subscriber_rtcp(
    track: Arc<TrackLocalStaticRTP>,
    keyframe_wanted: Arc<Notify>,
) {
    while let Some(ev) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = ev else {
            continue;
        };
        if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
            keyframe_wanted.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::keyframe::VideoCodec;
    use rtc::rtp;

    const VIDEO: SlotKind = SlotKind::Video(VideoCodec::Vp8);
    const FULL: VideoPref = VideoPref {
        audio_only: false,
        low: false,
    };
    const OFF: VideoPref = VideoPref {
        audio_only: true,
        low: false,
    };

    fn packet(layer: u8, seq: u16, key: bool, active_layers: u8, at: Instant) -> Forwarded {
        Forwarded {
            packet: rtp::Packet::default(),
            out: OutHeader {
                seq,
                ts: u32::from(seq) * 3000,
                keyframe_start: key,
            },
            received: at,
            from_conn: 1,
            layer,
            active_layers,
        }
    }

    /// A leg that started on layer 0 (one layer flowing) at the returned time.
    fn sending_layer_0() -> (Instant, VideoLeg) {
        let t = Instant::now();
        let mut leg = VideoLeg::new(VIDEO);
        let (out, _) = leg.on_packet(&packet(0, 1, true, 0b1, t), FULL, t);
        assert!(out.is_some());
        (t, leg)
    }

    #[test]
    fn a_newcomer_asks_once_and_starts_at_a_keyframe() {
        let t = Instant::now();
        let mut leg = VideoLeg::new(VIDEO);
        let (out, ask) = leg.on_packet(&packet(0, 10, false, 0b1, t), FULL, t);
        assert_eq!(
            (out, ask),
            (None, Some(0)),
            "mid-picture: skip it, ask once"
        );
        let (out, ask) = leg.on_packet(&packet(0, 11, false, 0b1, t), FULL, t);
        assert_eq!((out, ask), (None, None));
        let (out, _) = leg.on_packet(&packet(0, 12, true, 0b1, t), FULL, t);
        assert!(out.is_some_and(|o| o.keyframe_start));
    }

    #[test]
    fn a_newcomers_own_keyframe_request_is_answered() {
        // It has received nothing yet: its request is for the layer it waits on.
        let t = Instant::now();
        let mut leg = VideoLeg::new(VIDEO);
        assert_eq!(
            leg.on_keyframe_request(FULL),
            None,
            "no packet yet: no layer"
        );
        leg.on_packet(&packet(1, 10, false, 0b11, t), FULL, t);
        assert_eq!(leg.on_keyframe_request(FULL), Some(1));
        // Once it is sent a layer, its request is for that layer.
        leg.on_packet(&packet(1, 11, true, 0b11, t), FULL, t);
        let low = VideoPref { low: true, ..FULL };
        leg.on_packet(&packet(1, 12, false, 0b11, t), low, t);
        assert_eq!(leg.on_keyframe_request(low), Some(1), "still on layer 1");
        assert_eq!(leg.on_keyframe_request(OFF), None, "no video: no request");
    }

    #[test]
    fn video_resumes_at_a_keyframe_asked_for_at_once() {
        let (t, mut leg) = sending_layer_0();
        assert_eq!(
            leg.on_packet(&packet(0, 2, false, 0b1, t), OFF, t),
            (None, None)
        );
        assert_eq!(leg.on_pref(FULL), Some(0));
        let later = t + Duration::from_millis(40);
        assert_eq!(
            leg.on_packet(&packet(0, 3, false, 0b1, later), FULL, later)
                .0,
            None,
            "waits for the keyframe"
        );
        assert!(leg
            .on_packet(&packet(0, 4, true, 0b1, later), FULL, later)
            .0
            .is_some());
        assert_eq!(leg.on_pref(FULL), None, "flowing: nothing to ask");
    }

    #[test]
    fn a_lagging_subscriber_restarts_at_a_keyframe() {
        let (t, mut leg) = sending_layer_0();
        assert_eq!(leg.on_lagged(), Some(0));
        assert_eq!(leg.on_packet(&packet(0, 9, false, 0b1, t), FULL, t).0, None);
        assert!(leg
            .on_packet(&packet(0, 10, true, 0b1, t), FULL, t)
            .0
            .is_some());
    }
}
