//! The reader side: one task per publisher's track hands each packet, stamped with its arrival
//! time, to the room's core and puts what it routes on the slot's channel; keyframe requests
//! the core decides on go back up the publisher's track as PLIs.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::{KeyframeRequest, Role, Room};

/// Who publishes a track.
pub(super) struct Publisher {
    pub conn: u64,
    pub member: String,
    pub role: Role,
    pub audio: bool,
}

/// Read a publisher's track until it ends; `ssrc` is its first stream's.
pub(super) async fn read_track(
    room: Arc<Room>,
    publisher: Publisher,
    track: Arc<dyn TrackRemote>,
    ssrc: u32,
) {
    let source = room.add_source(&publisher, track.clone());
    let rid = track.rid(ssrc).await;
    room.open_layer(source, ssrc, rid.as_deref());
    while let Some(ev) = track.poll().await {
        match ev {
            TrackRemoteEvent::OnRtpPacket(p) => room.on_rtp(source, p, Instant::now()),
            // One per simulcast layer, as each layer's first packet arrives.
            TrackRemoteEvent::OnOpen(init) => {
                room.open_layer(source, init.ssrc, init.rid.as_deref())
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    room.remove_source(source);
}

/// Send PLIs up the tracks that carry the requested streams.
pub(super) fn send_keyframe_requests(room: &Room, requests: Vec<KeyframeRequest>) {
    for r in requests {
        let Some(track) = room.track(r.source) else {
            continue;
        };
        room.sfu
            .stats
            .keyframe_requests
            .fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: r.ssrc,
            };
            if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
                tracing::debug!(error = %e, "keyframe request not sent");
            }
        });
    }
}
