//! What a room negotiates: Opus, the room's video codec with its feedback, RTX, and the
//! MID and RID header extensions.

use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::MediaEngine;

use super::{neg, SfuError};
use crate::keyframe::VideoCodec;

/// The codecs every peer connection of a room whose video is `codec` negotiates.
pub(super) fn media_engine(codec: VideoCodec) -> Result<MediaEngine, SfuError> {
    let mut m = MediaEngine::default();
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )
    .map_err(neg)?;
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    let video = RTCRtpCodec {
        rtcp_feedback: vec![fb("ccm", "fir"), fb("nack", ""), fb("nack", "pli")],
        ..video_codec(codec)
    };
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: video,
            payload_type: 96,
        },
        RtpCodecKind::Video,
    )
    .map_err(neg)?;
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: "video/rtx".to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: "apt=96".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: 97,
        },
        RtpCodecKind::Video,
    )
    .map_err(neg)?;
    // MID and RID header extensions: a simulcast publisher names its layers by RID.
    rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers(&mut m)
        .map_err(neg)?;
    Ok(m)
}

/// Opus with in-band FEC (the decoder recovers a lost 20 ms frame from the next packet) and
/// 10 ms minimum packet time, as browsers offer it.
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The SDP codec description of a video codec.
pub fn video_codec(codec: VideoCodec) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: codec.mime_type().to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: match codec {
            VideoCodec::Vp8 => String::new(),
            VideoCodec::H264 => {
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".to_owned()
            }
        },
        rtcp_feedback: vec![],
    }
}

/// A local track that sends one stream, `ssrc`, in `codec`: what the hub sends a subscriber on
/// one slot, and what the testkit's clients publish. `ids`: stream id, track id, label.
pub(crate) fn local_track(
    ids: [String; 3],
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    ssrc: u32,
) -> TrackLocalStaticRTP {
    let [stream, track, label] = ids;
    TrackLocalStaticRTP::new(rtc::media_stream::MediaStreamTrack::new(
        stream,
        track,
        label,
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    ))
}
