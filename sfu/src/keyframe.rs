//! Recognising the first packet of a keyframe in VP8 and H.264 RTP payloads.
//!
//! A subscriber that starts (or a slot that switches source) mid-stream must not be fed delta
//! frames: its decoder would show garbage until the next keyframe. The forwarder therefore gates
//! video on the first packet of a keyframe, which these functions recognise from the payload
//! alone (RFC 7741 for VP8, RFC 6184 for H.264).

/// Video codecs the SFU forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    /// VP8, RFC 7741.
    Vp8,
    /// H.264, RFC 6184 (packetization-mode 1).
    H264,
}

impl VideoCodec {
    /// The codec's SDP mime type (`video/VP8`, `video/H264`).
    pub fn mime_type(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "video/VP8",
            VideoCodec::H264 => "video/H264",
        }
    }

    /// Whether this RTP payload starts a keyframe.
    pub fn is_keyframe_start(self, payload: &[u8]) -> bool {
        match self {
            VideoCodec::Vp8 => vp8_is_keyframe_start(payload),
            VideoCodec::H264 => h264_is_keyframe_start(payload),
        }
    }
}

/// Whether a VP8 RTP payload is the first packet of a keyframe (RFC 7741 §4.2 and §4.3).
pub fn vp8_is_keyframe_start(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let extended = first & 0x80 != 0;
    let start_of_partition = first & 0x10 != 0;
    let partition_id = first & 0x0f;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut i = 1;
    if extended {
        let Some(&x) = payload.get(i) else {
            return false;
        };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: one or two bytes (M bit).
            let Some(&pid) = payload.get(i) else {
                return false;
            };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/KEYIDX
        }
    }
    // VP8 payload header: the P bit (inverse key frame flag) is bit 0 of the first byte.
    match payload.get(i) {
        Some(&b) => b & 0x01 == 0,
        None => false,
    }
}

/// Whether an H.264 RTP payload starts an IDR picture or carries the SPS that precedes one
/// (RFC 6184: single NAL unit, STAP-A aggregation, FU-A fragmentation start).
pub fn h264_is_keyframe_start(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let nal_type = first & 0x1f;
    match nal_type {
        5 | 7 => true,
        24 => {
            // STAP-A: a sequence of 16-bit size + NAL unit.
            let mut i = 1;
            while i + 2 < payload.len() {
                let size = u16::from_be_bytes([payload[i], payload[i + 1]]) as usize;
                let Some(&nal) = payload.get(i + 2) else {
                    return false;
                };
                if matches!(nal & 0x1f, 5 | 7) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => {
            // FU-A: start bit set and fragment of an IDR slice.
            match payload.get(1) {
                Some(&fu) => fu & 0x80 != 0 && fu & 0x1f == 5,
                None => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_without_extension() {
        // S=1, PID=0; VP8 header byte with P=0 (keyframe).
        assert!(vp8_is_keyframe_start(&[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        // P=1: interframe.
        assert!(!vp8_is_keyframe_start(&[0x10, 0x01, 0x00]));
        // Not the start of the partition.
        assert!(!vp8_is_keyframe_start(&[0x00, 0x00]));
    }

    #[test]
    fn vp8_keyframe_with_two_byte_picture_id() {
        // X=1 S=1; I=1; PictureID M=1 (two bytes); then VP8 header P=0.
        assert!(vp8_is_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x50]));
        assert!(!vp8_is_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x51]));
        // Truncated payloads are never keyframes and never panic.
        assert!(!vp8_is_keyframe_start(&[0x90, 0x80, 0x81]));
        assert!(!vp8_is_keyframe_start(&[]));
    }

    #[test]
    fn h264_single_stap_and_fu() {
        assert!(h264_is_keyframe_start(&[0x65, 0x88])); // IDR
        assert!(h264_is_keyframe_start(&[0x67, 0x42])); // SPS
        assert!(!h264_is_keyframe_start(&[0x41, 0x9a])); // non-IDR slice
                                                         // STAP-A holding SPS.
        assert!(h264_is_keyframe_start(&[0x78, 0x00, 0x02, 0x67, 0x42]));
        // STAP-A holding only a non-IDR slice.
        assert!(!h264_is_keyframe_start(&[0x78, 0x00, 0x02, 0x41, 0x9a]));
        // FU-A start of IDR versus continuation.
        assert!(h264_is_keyframe_start(&[0x7c, 0x85, 0x00]));
        assert!(!h264_is_keyframe_start(&[0x7c, 0x05, 0x00]));
        // Malformed STAP-A sizes do not panic.
        assert!(!h264_is_keyframe_start(&[0x78, 0xff, 0xff]));
    }
}
