//! Signalling messages between a browser (or any client) and the hub, over a WebSocket.
//! JSON text frames, one message per frame, tagged by `type`. The protocol is written down in
//! docs/signalling.md; keep the two in step.

use serde::{Deserialize, Serialize};

/// Largest signalling frame accepted (an offer SDP plus envelope).
pub const MAX_FRAME_BYTES: usize = 96 * 1024;

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// An SDP offer: the first one connects; later ones renegotiate or restart ICE.
    Offer {
        /// The offer, SDP text.
        sdp: String,
    },
    /// A trickled ICE candidate from the client.
    Candidate {
        /// The `candidate:` line, or empty for end-of-candidates.
        candidate: String,
        /// The media section id it belongs to.
        #[serde(default, rename = "sdpMid")]
        sdp_mid: Option<String>,
        /// The media section index it belongs to.
        #[serde(default, rename = "sdpMLineIndex")]
        sdp_mline_index: Option<u16>,
    },
    /// A house asks for the floor.
    RaiseHand,
    /// A house withdraws its request, or yields the floor.
    LowerHand,
    /// The chair gives the floor to a house.
    GrantFloor {
        /// The house's id.
        house: String,
    },
    /// The chair takes the floor back.
    RevokeFloor,
    /// The chair mutes or unmutes a house.
    Mute {
        /// The house's id.
        house: String,
        /// `true` mutes, `false` unmutes.
        muted: bool,
    },
    /// The client reports how its link is doing (from its getStats), shown to the chair.
    Quality {
        /// Packets lost per hundred received, over the last few seconds.
        loss_pct: f32,
        /// Round-trip time in milliseconds.
        rtt_ms: f32,
    },
    /// Low-bandwidth mode: `true` stops the video to this client (audio goes on); `false`
    /// resumes it from the next keyframe. Answered by `audio_only`.
    AudioOnly {
        /// `true`: no video to this client; `false`: video again.
        on: bool,
    },
    /// Low video quality: `true` sends this client the publisher's smallest simulcast layer,
    /// `false` its largest (the default). Answered by `low_quality`.
    LowQuality {
        /// `true`: the smallest simulcast layer; `false`: the largest.
        on: bool,
    },
    /// Keep-alive; answered by `pong`.
    Ping,
}

/// A message from the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Sent once, right after the WebSocket opens.
    Welcome {
        /// The participant's id in the room (a house id, or `chair`).
        id: String,
        /// `chair`, `house` or `official`.
        role: String,
        /// The room's name.
        room: String,
        /// The participant's display name, from its token.
        name: String,
        /// STUN/TURN servers for the client's RTCPeerConnection.
        ice_servers: Vec<IceServer>,
    },
    /// The answer to the client's offer.
    Answer {
        /// The answer, SDP text.
        sdp: String,
    },
    /// Who is in the room and who has the floor; sent on every change.
    Room(RoomState),
    /// The request could not be done; the connection stays open.
    Error {
        /// Stable machine-readable code (see docs/signalling.md).
        code: String,
        /// What went wrong, for a person.
        message: String,
    },
    /// Reply to `audio_only`: the mode now.
    AudioOnly {
        /// `true`: no video to this client; `false`: video again.
        on: bool,
    },
    /// Reply to `low_quality`: the mode now.
    LowQuality {
        /// `true`: the smallest simulcast layer; `false`: the largest.
        on: bool,
    },
    /// Reply to `ping`.
    Pong,
}

/// One ICE server for the browser, in RTCIceServer's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` / `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username (coturn REST style: `expiry:id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password (HMAC of the username).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The room as the chair sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RoomState {
    /// Whether the chair is connected and publishing.
    pub live: bool,
    /// The house holding the floor.
    pub floor: Option<String>,
    /// Raised hands, oldest first.
    pub hands: Vec<String>,
    /// Every known house of the room, connected or not.
    pub houses: Vec<HouseState>,
}

/// One house in [`RoomState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseState {
    /// The house's id, as in its token and the room's directory.
    pub id: String,
    /// Its name in the room's directory (or its token's, when not listed).
    pub name: String,
    /// Whether a screen of this house is connected.
    pub connected: bool,
    /// Whether its hand is up.
    pub hand_raised: bool,
    /// Whether the chair muted it.
    pub muted: bool,
    /// Last reported packet loss, percent.
    pub loss_pct: Option<f32>,
    /// Last reported round-trip time, ms.
    pub rtt_ms: Option<f32>,
    /// What video its screen asked for, while connected.
    #[serde(default)]
    pub video: Option<VideoMode>,
}

/// The video a screen receives: chosen by the house (or by its page on a weak link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoMode {
    /// The largest simulcast layer flowing.
    Full,
    /// The smallest layer (`low_quality`).
    Small,
    /// No video (`audio_only`, the low-bandwidth mode).
    Off,
}

/// Why a frame was refused. Each becomes an `error` frame with the code in [`Self::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The frame exceeds [`MAX_FRAME_BYTES`]; the client should send a smaller one.
    #[error("frame is {0} bytes; the limit is {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    /// A binary frame; the protocol is JSON text.
    #[error("binary frames are not part of the protocol; send JSON text")]
    Binary,
    /// JSON that is not a known message; the text says which field or type.
    #[error("bad message: {0}")]
    BadMessage(String),
}

impl SignalError {
    /// The stable error code sent to the client.
    pub fn code(&self) -> &'static str {
        match self {
            SignalError::TooLarge(_) => "frame_too_large",
            SignalError::Binary => "binary_frame",
            SignalError::BadMessage(_) => "bad_message",
        }
    }
}

/// Parse one text frame from a client.
pub fn parse_client(text: &str) -> Result<ClientMessage, SignalError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(SignalError::TooLarge(text.len()));
    }
    serde_json::from_str(text).map_err(|e| SignalError::BadMessage(e.to_string()))
}

impl ServerMessage {
    /// An `error` frame: a stable `code` (docs/signalling.md) and a message for a person.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The frame's JSON text.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys, no custom
        // serialisers.
        serde_json::to_string(self).unwrap_or_else(|_| "{\"type\":\"error\"}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_messages() {
        assert_eq!(
            parse_client(r#"{"type":"raise_hand"}"#),
            Ok(ClientMessage::RaiseHand)
        );
        assert_eq!(
            parse_client(r#"{"type":"grant_floor","house":"h1"}"#),
            Ok(ClientMessage::GrantFloor { house: "h1".into() })
        );
        assert_eq!(
            parse_client(
                r#"{"type":"candidate","candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0}"#
            ),
            Ok(ClientMessage::Candidate {
                candidate: "candidate:1 1 udp 1 1.2.3.4 5 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0)
            })
        );
    }

    #[test]
    fn refuses_unknown_malformed_and_oversized() {
        let e = parse_client(r#"{"type":"launch_rockets"}"#).unwrap_err();
        assert_eq!(e.code(), "bad_message");
        assert!(e.to_string().contains("launch_rockets"), "{e}");
        assert!(parse_client(r#"{"type":"grant_floor"}"#)
            .unwrap_err()
            .to_string()
            .contains("house"));
        assert!(parse_client("not json").is_err());
        let big = format!(
            r#"{{"type":"offer","sdp":"{}"}}"#,
            "a".repeat(MAX_FRAME_BYTES)
        );
        assert_eq!(parse_client(&big).unwrap_err().code(), "frame_too_large");
    }

    #[test]
    fn server_messages_have_stable_shape() {
        let j = ServerMessage::error("bad_message", "x").to_json();
        assert_eq!(j, r#"{"type":"error","code":"bad_message","message":"x"}"#);
        let r = ServerMessage::Room(RoomState::default()).to_json();
        assert!(r.starts_with(r#"{"type":"room","live":false"#), "{r}");
    }
}
