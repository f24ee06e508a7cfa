//! In-process WebRTC clients (webrtc-rs) for the scenario tests, the end-to-end tests of the
//! other crates and the load generator (feature `testkit`). A [`Peer`] is a real peer
//! connection on loopback with the default codecs and interceptors (NACK, RTCP reports);
//! [`Sender`] writes RTP on a negotiated track at a steady pace.
//!
//! ```no_run
//! # async fn demo(answer_from_hub: impl FnOnce(String) -> String) {
//! use dinh_sfu::testkit::Peer;
//! use dinh_sfu::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
//! use std::time::Duration;
//! let mut peer = Peer::new(None).await;
//! let audio = peer.add_sender(RtpCodecKind::Audio, "chair", dinh_sfu::room::opus_codec(), false).await;
//! let offer = peer.offer().await;
//! peer.accept(answer_from_hub(offer)).await;
//! let task = audio.spawn(Duration::from_millis(20), 960, false, |_n| vec![vec![0xf8; 80].into()]);
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::watch;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCSessionDescription, Registry,
};
use webrtc::rtp_transceiver::RtpTransceiver;

/// Called for every RTP packet a peer receives, with the id of the track it came on.
pub type OnRtp = Arc<dyn Fn(&str, &rtp::Packet) + Send + Sync>;

struct Handler {
    gathered: watch::Sender<bool>,
    on_rtp: Option<OnRtp>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, s: RTCIceGatheringState) {
        if s == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some(on_rtp) = self.on_rtp.clone() else {
            return;
        };
        tokio::spawn(async move {
            let id = track.track_id().await;
            while let Some(ev) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                    on_rtp(&id, &p);
                }
            }
        });
    }
}

/// A peer connection on loopback.
pub struct Peer {
    /// The connection.
    pub pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
}

/// A track this peer sends.
pub struct Sender {
    /// The track.
    pub track: Arc<TrackLocalStaticRTP>,
    /// Its SSRC.
    pub ssrc: u32,
    transceiver: Arc<dyn RtpTransceiver>,
}

impl Peer {
    /// A peer with the default codecs and interceptors, on 127.0.0.1.
    pub async fn new(on_rtp: Option<OnRtp>) -> Self {
        let (tx, gathered) = watch::channel(false);
        let mut media = MediaEngine::default();
        media
            .register_default_codecs()
            .expect("default codecs register");
        let registry = register_default_interceptors(Registry::new(), &mut media)
            .expect("default interceptors register");
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(media)
                .with_interceptor_registry(registry)
                .with_handler(Arc::new(Handler {
                    gathered: tx,
                    on_rtp,
                }))
                .with_udp_addrs(vec!["127.0.0.1:0"])
                .build()
                .await
                .expect("a loopback peer connection"),
        );
        Self { pc, gathered }
    }

    /// Add a track to send (`also_receive`: the m-line is sendrecv).
    pub async fn add_sender(
        &self,
        kind: RtpCodecKind,
        id: &str,
        codec: RTCRtpCodec,
        also_receive: bool,
    ) -> Sender {
        let ssrc: u32 = rand::random();
        let track = Arc::new(TrackLocalStaticRTP::new(
            rtc::media_stream::MediaStreamTrack::new(
                format!("{id}-stream"),
                format!("{id}-{kind:?}"),
                format!("{id}-{kind:?}"),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec,
                    ..Default::default()
                }],
            ),
        ));
        let direction = if also_receive {
            RTCRtpTransceiverDirection::Sendrecv
        } else {
            RTCRtpTransceiverDirection::Sendonly
        };
        let transceiver = self
            .pc
            .add_transceiver_from_track(
                track.clone() as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .expect("add a send transceiver");
        Sender {
            track,
            ssrc,
            transceiver,
        }
    }

    /// Add a receive-only m-line.
    pub async fn add_receiver(&self, kind: RtpCodecKind) {
        self.pc
            .add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .expect("add a receive transceiver");
    }

    /// Create the offer, wait for ICE gathering (no trickle), and return its SDP.
    pub async fn offer(&mut self) -> String {
        let offer = self.pc.create_offer(None).await.expect("an offer");
        self.pc
            .set_local_description(offer)
            .await
            .expect("set the offer");
        tokio::time::timeout(Duration::from_secs(5), self.gathered.wait_for(|d| *d))
            .await
            .expect("ICE gathering within 5 s")
            .expect("the peer lives");
        self.pc
            .local_description()
            .await
            .expect("a local description")
            .sdp
    }

    /// Apply the hub's answer.
    pub async fn accept(&self, answer: String) {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer).expect("an answer"))
            .await
            .expect("set the answer");
    }
}

impl Sender {
    /// The negotiated payload type, once negotiation has set it (waits up to 4 s).
    pub async fn payload_type(&self) -> Option<u8> {
        let sender = self.transceiver.sender().await.ok().flatten()?;
        for _ in 0..200 {
            if let Some(c) = sender
                .get_parameters()
                .await
                .ok()
                .and_then(|p| p.rtp_parameters.codecs.first().cloned())
            {
                return Some(c.payload_type);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Write packets every `every`: `payloads(n)` gives frame `n`'s packets (one for audio,
    /// several for a video frame); the timestamp steps by `ts_step` per frame; `marker` sets
    /// the marker bit on each frame's last packet. Ends when the track can no longer write.
    pub fn spawn(
        self,
        every: Duration,
        ts_step: u32,
        marker: bool,
        mut payloads: impl FnMut(u64) -> Vec<Bytes> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let Some(pt) = self.payload_type().await else {
                return;
            };
            let (mut seq, mut ts) = (rand::random::<u16>(), rand::random::<u32>());
            let mut tick = tokio::time::interval(every);
            for n in 0.. {
                tick.tick().await;
                let packets = payloads(n);
                let last = packets.len().saturating_sub(1);
                for (i, payload) in packets.into_iter().enumerate() {
                    let packet = rtp::Packet {
                        header: rtp::header::Header {
                            version: 2,
                            marker: marker && i == last,
                            payload_type: pt,
                            sequence_number: seq,
                            timestamp: ts,
                            ssrc: self.ssrc,
                            ..Default::default()
                        },
                        payload,
                    };
                    if self.track.write_rtp(packet).await.is_err() {
                        return;
                    }
                    seq = seq.wrapping_add(1);
                }
                ts = ts.wrapping_add(ts_step);
            }
        })
    }
}
