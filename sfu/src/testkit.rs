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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::watch;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
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
    /// The webrtc-rs peer connection, for what the helpers do not cover (closing it).
    pub pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
}

/// A track this peer sends.
pub struct Sender {
    /// The local track the packets are written on.
    pub track: Arc<TrackLocalStaticRTP>,
    /// The SSRC its packets carry (random, chosen at creation).
    pub ssrc: u32,
    transceiver: Arc<dyn RtpTransceiver>,
}

impl Peer {
    /// A peer with the default codecs and interceptors, on 127.0.0.1.
    pub async fn new(on_rtp: Option<OnRtp>) -> Self {
        Self::with_ice(on_rtp, Vec::new(), false).await
    }

    /// A peer that uses these STUN/TURN servers; `relay_only`: only TURN relay candidates
    /// (as a browser on a network that blocks direct UDP ends up doing).
    pub async fn with_ice(
        on_rtp: Option<OnRtp>,
        servers: Vec<webrtc::peer_connection::RTCIceServer>,
        relay_only: bool,
    ) -> Self {
        let mut config = RTCConfigurationBuilder::new().with_ice_servers(servers);
        if relay_only {
            config = config
                .with_ice_transport_policy(webrtc::peer_connection::RTCIceTransportPolicy::Relay);
        }
        let builder = PeerConnectionBuilder::new()
            .with_configuration(config.build())
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()]);
        Self::build(on_rtp, builder).await
    }

    /// A peer on a network that lets no UDP through: ICE-TCP only, as the active side
    /// (RFC 6544), like a browser behind a firewall that blocks UDP.
    pub async fn tcp_only(on_rtp: Option<OnRtp>) -> Self {
        let setting = webrtc::peer_connection::SettingEngineBuilder::default()
            .with_network_types(vec![rtc::ice::network_type::NetworkType::Tcp4])
            .build();
        let builder = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(setting)
            .with_tcp_addrs(vec!["127.0.0.1:0".to_owned()])
            .with_udp_addrs(Vec::new());
        Self::build(on_rtp, builder).await
    }

    async fn build(on_rtp: Option<OnRtp>, builder: PeerConnectionBuilder<String>) -> Self {
        let (tx, gathered) = watch::channel(false);
        let mut media = MediaEngine::default();
        media
            .register_default_codecs()
            .expect("default codecs register");
        let registry = register_default_interceptors(Registry::new(), &mut media)
            .expect("default interceptors register")
            // Keyframe requests reach the sending tracks, for an encoder that answers them
            // (Sender::spawn_keyframes_on_request).
            .with(
                rtc::interceptor::Slot::from(14_000),
                crate::rtcp_forward::KeyframeRequestForwarder::default(),
            );
        let pc: Arc<dyn PeerConnection> = Arc::new(
            builder
                .with_media_engine(media)
                .with_interceptor_registry(registry)
                .with_handler(Arc::new(Handler {
                    gathered: tx,
                    on_rtp,
                }))
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
        let track = Arc::new(crate::room::local_track(
            [
                format!("{id}-stream"),
                format!("{id}-{kind:?}"),
                format!("{id}-{kind:?}"),
            ],
            kind,
            codec,
            ssrc,
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

    /// An ICE restart (a network change): a new offer with new ICE credentials, once
    /// gathering is done again.
    pub async fn restart_offer(&mut self) -> String {
        let options = rtc::peer_connection::configuration::RTCOfferOptions { ice_restart: true };
        let offer = self.pc.create_offer(Some(options)).await.expect("an offer");
        self.gathered.borrow_and_update();
        self.pc
            .set_local_description(offer)
            .await
            .expect("set the offer");
        // Gathering completes again; the handler reports it even if the value is unchanged.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.gathered.changed()).await;
        self.pc
            .local_description()
            .await
            .expect("a local description")
            .sdp
    }

    /// Apply the hub's answer.
    pub async fn accept(&self, answer: String) {
        // webrtc-rs dials passive TCP candidates only when they are added one by one (trickle),
        // not when they come in the description; a browser dials them from either.
        // The first media section's candidates serve the whole bundle.
        let tcp: Vec<String> = answer
            .lines()
            .skip_while(|l| !l.starts_with("m="))
            .enumerate()
            .take_while(|(i, l)| *i == 0 || !l.starts_with("m="))
            .filter_map(|(_, l)| l.trim_end().strip_prefix("a="))
            .filter(|l| l.starts_with("candidate:") && l.contains(" tcptype passive"))
            .map(str::to_owned)
            .collect();
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer).expect("an answer"))
            .await
            .expect("set the answer");
        for candidate in tcp {
            self.pc
                .add_ice_candidate(webrtc::peer_connection::RTCIceCandidateInit {
                    candidate,
                    sdp_mid: Some("0".to_owned()),
                    sdp_mline_index: Some(0),
                    username_fragment: None,
                    url: None,
                })
                .await
                .expect("add a TCP candidate");
        }
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
        payloads: impl FnMut(u64) -> Vec<Bytes> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.send(every, ts_step, marker, payloads))
    }

    /// [`Self::spawn`] for an encoder that sends a keyframe only when asked, as a camera
    /// encoder or a hub relaying without decoding does: `payloads(n, key)` gives frame `n`'s
    /// packets, a keyframe when `key`. The first frame is a keyframe; after that, the next
    /// frame after each keyframe request (PLI or FIR) from the other side. Also returns how
    /// many requests have come.
    pub fn spawn_keyframes_on_request(
        self,
        every: Duration,
        ts_step: u32,
        marker: bool,
        mut payloads: impl FnMut(u64, bool) -> Vec<Bytes> + Send + 'static,
    ) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>) {
        let requests = Arc::new(AtomicU64::new(0));
        let asked = Arc::new(AtomicBool::new(true));
        let (track, count, wanted) = (self.track.clone(), requests.clone(), asked.clone());
        let listen = async move {
            while let Some(ev) = track.poll().await {
                let TrackLocalEvent::OnRtcpPacket(packets) = ev else {
                    continue;
                };
                if packets
                    .iter()
                    .any(|p| crate::rtcp_forward::is_keyframe_request(p.as_ref()))
                {
                    count.fetch_add(1, Ordering::Relaxed);
                    wanted.store(true, Ordering::Relaxed);
                }
            }
        };
        let send = self.send(every, ts_step, marker, move |n| {
            payloads(n, asked.swap(false, Ordering::Relaxed))
        });
        let task = tokio::spawn(async move {
            // Either ends when the connection does.
            tokio::select! {
                () = listen => {}
                () = send => {}
            }
        });
        (task, requests)
    }

    async fn send(
        self,
        every: Duration,
        ts_step: u32,
        marker: bool,
        mut payloads: impl FnMut(u64) -> Vec<Bytes> + Send + 'static,
    ) {
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
    }
}

/// A UDP mux and the ICE-TCP mux that shares its connections, on loopback ports the system
/// picks. The TCP mux runs; running the UDP mux (`tokio::spawn(udp.clone().run())`) is left to
/// the caller.
pub async fn loopback_muxes() -> (Arc<crate::mux::UdpMux>, Arc<crate::mux::tcp::TcpMux>) {
    let loopback = "127.0.0.1:0".parse().expect("an address");
    let udp = crate::mux::UdpMux::bind(loopback, None)
        .await
        .expect("bind UDP");
    let tcp = crate::mux::tcp::TcpMux::bind(loopback, None, &udp)
        .await
        .expect("bind TCP");
    tokio::spawn(tcp.clone().run());
    (udp, tcp)
}

/// A lossy, slow link in user space, for tests of lossy networks where the kernel has no
/// `tc netem` (this machine's does not): a UDP relay between one client and the hub's media
/// port that drops a share of the datagrams each way and delays the rest. Point a client at
/// it by rewriting the hub's answer with [`crate::sdp::rewrite_candidates`] to [`Self::addr`].
///
/// Drops are decided per datagram from a fixed sequence (a 64-bit LCG), so a run loses the
/// same share every time; bursts of two or three happen as they would on a radio link.
pub struct LossyLink {
    /// Where the client sends.
    pub addr: std::net::SocketAddr,
    /// Datagrams dropped toward the hub and toward the client.
    pub dropped: Arc<[std::sync::atomic::AtomicU64; 2]>,
    /// Datagrams passed toward the hub and toward the client.
    pub passed: Arc<[std::sync::atomic::AtomicU64; 2]>,
    /// Drop thresholds toward the hub and toward the client.
    threshold: Arc<[std::sync::atomic::AtomicU32; 2]>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl LossyLink {
    /// Relay to `hub`, dropping `loss` (0..1) of the datagrams each way and delaying the others
    /// by `delay`.
    pub async fn start(hub: std::net::SocketAddr, loss: f64, delay: Duration) -> Self {
        Self::start_each_way(hub, loss, loss, delay).await
    }

    /// [`Self::start`] with a different loss each way: `toward_hub` of the client's datagrams
    /// and `toward_client` of the hub's.
    pub async fn start_each_way(
        hub: std::net::SocketAddr,
        toward_hub: f64,
        toward_client: f64,
        delay: Duration,
    ) -> Self {
        use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
        use tokio::net::UdpSocket;
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        back.connect(hub).await.expect("connect to the hub");
        let addr = front.local_addr().expect("local address");
        let dropped = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let passed = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let client = Arc::new(std::sync::Mutex::new(None::<std::net::SocketAddr>));
        let threshold = Arc::new([
            AtomicU32::new(Self::threshold(toward_hub)),
            AtomicU32::new(Self::threshold(toward_client)),
        ]);
        // One way's loss: a fixed pseudo-random sequence per way (so that a run repeats),
        // drawn against the way's threshold; counts the datagram as dropped or passed.
        let gate = |way: usize| {
            let (t, dropped, passed) = (threshold.clone(), dropped.clone(), passed.clone());
            let mut state = way as u64 + 1;
            move || {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let lose = ((state >> 32) as u32) < t[way].load(Ordering::Relaxed);
                let count = if lose { &dropped[way] } else { &passed[way] };
                count.fetch_add(1, Ordering::Relaxed);
                !lose
            }
        };
        let up = {
            let (front, back, client) = (front.clone(), back.clone(), client.clone());
            let mut passes = gate(0);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().unwrap_or_else(|p| p.into_inner()) = Some(from);
                    if !passes() {
                        continue;
                    }
                    let (back, data) = (back.clone(), buf[..n].to_vec());
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = back.send(&data).await;
                    });
                }
            })
        };
        let down = {
            let mut passes = gate(1);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok(n) = back.recv(&mut buf).await {
                    let Some(to) = *client.lock().unwrap_or_else(|p| p.into_inner()) else {
                        continue;
                    };
                    if !passes() {
                        continue;
                    }
                    let (front, data) = (front.clone(), buf[..n].to_vec());
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = front.send_to(&data, to).await;
                    });
                }
            })
        };
        Self {
            addr,
            dropped,
            passed,
            threshold,
            tasks: [up, down],
        }
    }

    fn threshold(loss: f64) -> u32 {
        (loss.clamp(0.0, 1.0) * u32::MAX as f64) as u32
    }

    /// Change the loss from now on (e.g. once the connection is up) and restart the counters.
    pub fn set_loss(&self, loss: f64) {
        use std::sync::atomic::Ordering;
        for t in self.threshold.iter() {
            t.store(Self::threshold(loss), Ordering::Relaxed);
        }
        for c in self.dropped.iter().chain(self.passed.iter()) {
            c.store(0, Ordering::Relaxed);
        }
    }
}
