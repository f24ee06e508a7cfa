//! Sessions: a participant's peer connection, negotiated from its offer, with the tasks that
//! serve it, and the events webrtc-rs reports on it (gathering done, media up or failed, a
//! publisher's track).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rtc::interceptor::Slot as InterceptorSlot;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::{watch, Notify};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    register_default_interceptors, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};

use super::codecs::{local_track, media_engine, opus_codec, video_codec};
use super::writer::{read_subscriber_rtcp, write_slot, Leg, VideoPref};
use super::{neg, reader, JoinRequest, Role, Room, SfuError, Slot};
use crate::mux::MuxRuntime;
use crate::rtcp_forward::KeyframeRequestForwarder;
use crate::sdp::{ice_ufrag, rewrite_candidates_with_tcp};
use crate::signal::VideoMode;

/// Negotiate `req`'s peer connection from `offer`, enter it in the room, and start its
/// writers. The participant counts as connected once its media is up ([`Session::connected`]).
pub(super) async fn join(
    room: &Arc<Room>,
    req: JoinRequest,
    offer: RTCSessionDescription,
) -> Result<Session, SfuError> {
    let conn = room.next_conn.fetch_add(1, Ordering::Relaxed);
    let runtime = room.sfu.mux.runtime();
    let (gather_tx, mut gather_rx) = watch::channel(false);
    let handler = Arc::new(PeerHandler {
        room: Arc::downgrade(room),
        conn,
        member: req.id.clone(),
        role: req.role,
        publish: req.publish,
        gathered: gather_tx,
        session: OnceLock::new(),
    });
    let mut media = media_engine(room.sfu.config.video_codec)?;
    let registry = register_default_interceptors(Registry::new(), &mut media).map_err(neg)?;
    let registry = registry.with(
        InterceptorSlot::from(14_000),
        KeyframeRequestForwarder::default(),
    );
    let setting = SettingEngineBuilder::default()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true)
        .build();
    let mut builder = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_setting_engine(setting)
        .with_interceptor_registry(registry)
        .with_handler(handler.clone() as Arc<dyn PeerConnectionEventHandler>)
        .with_runtime(runtime.clone() as Arc<dyn webrtc::runtime::Runtime>)
        // A placeholder: the runtime closes this socket and routes through the mux.
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()]);
    if room.sfu.mux.tcp_addr().is_some() {
        // ICE-TCP passive candidates, through the shared TCP port (`mux::tcp`); this
        // listener is a placeholder the runtime closes, as for UDP.
        builder = builder.with_tcp_addrs(vec!["127.0.0.1:0".to_owned()]);
    }
    let pc: Arc<dyn PeerConnection> = Arc::new(builder.build().await.map_err(neg)?);
    let result = negotiate(room, &pc, &req, offer, &mut gather_rx, &runtime).await;
    let (answer, outputs) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = pc.close().await;
            runtime.close();
            return Err(e);
        }
    };
    let inner = Arc::new(SessionInner {
        conn,
        id: req.id.clone(),
        room: room.clone(),
        pc,
        runtime,
        closed: watch::channel(false).0,
        connected: watch::channel(false).0,
        tasks: Mutex::new(Vec::new()),
        video: watch::channel(VideoPref::default()).0,
    });
    let _ = handler.session.set(Arc::downgrade(&inner));
    if let Some(old) = room.enter(&req, conn, Arc::downgrade(&inner)) {
        tracing::info!(room = %room.name, "session replaced by a newer one");
        old.shutdown().await;
    }
    for (slot, track, pt, ssrc) in outputs {
        let keyframe_wanted = Arc::new(Notify::new());
        let leg = Leg {
            conn,
            slot,
            track: track.clone(),
            pt,
            ssrc,
            keyframe_wanted: keyframe_wanted.clone(),
        };
        inner.push_task(tokio::spawn(write_slot(
            room.clone(),
            leg,
            inner.connected.subscribe(),
            inner.video.subscribe(),
        )));
        if !slot.is_audio() {
            inner.push_task(tokio::spawn(read_subscriber_rtcp(track, keyframe_wanted)));
        }
    }
    room.sfu.stats.sessions.fetch_add(1, Ordering::Relaxed);
    room.publish_state();
    Ok(Session { answer, inner })
}

/// The outgoing tracks of a subscriber: slot, track, negotiated payload type, SSRC.
type Outputs = Vec<(Slot, Arc<TrackLocalStaticRTP>, u8, u32)>;

async fn negotiate(
    room: &Room,
    pc: &Arc<dyn PeerConnection>,
    req: &JoinRequest,
    offer: RTCSessionDescription,
    gather_rx: &mut watch::Receiver<bool>,
    runtime: &Arc<MuxRuntime>,
) -> Result<(String, Outputs), SfuError> {
    let (mut audio_in, mut video_in) = receiving_sections(&offer.sdp);
    pc.set_remote_description(offer).await.map_err(neg)?;
    let mut added = Vec::new();
    for &slot in &req.subscribe {
        let free = if slot.is_audio() {
            &mut audio_in
        } else {
            &mut video_in
        };
        if *free == 0 {
            continue;
        }
        *free -= 1;
        let ssrc: u32 = rand::random();
        let (kind, codec) = if slot.is_audio() {
            (RtpCodecKind::Audio, opus_codec())
        } else {
            (
                RtpCodecKind::Video,
                video_codec(room.sfu.config.video_codec),
            )
        };
        let track = Arc::new(local_track(
            [
                format!("{}-{:?}", room.name, slot),
                format!("{slot:?}-{ssrc}"),
                format!("{slot:?}"),
            ],
            kind,
            codec,
            ssrc,
        ));
        let sender = pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(neg)?;
        added.push((slot, track, sender, ssrc));
    }
    let answer = pc.create_answer(None).await.map_err(neg)?;
    pc.set_local_description(answer).await.map_err(neg)?;
    let answer = finish_answer(pc, gather_rx, runtime).await?;
    let mut outputs = Vec::new();
    for (slot, track, sender, ssrc) in added {
        let params = sender.get_parameters().await.map_err(neg)?;
        let Some(pt) = params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| !c.rtp_codec.mime_type.eq_ignore_ascii_case("video/rtx"))
            .map(|c| c.payload_type)
        else {
            // The client did not accept this codec on that m-line: nothing to send there.
            continue;
        };
        outputs.push((slot, track, pt, ssrc));
    }
    Ok((answer, outputs))
}

/// How many audio and video m-lines of an offer can receive from us.
fn receiving_sections(sdp: &str) -> (usize, usize) {
    let (mut audio, mut video) = (0, 0);
    let mut current: Option<bool> = None; // Some(true) = audio section
    let mut can_receive = true;
    let close = |cur: Option<bool>, recv: bool, a: &mut usize, v: &mut usize| match cur {
        Some(true) if recv => *a += 1,
        Some(false) if recv => *v += 1,
        _ => {}
    };
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            close(current, can_receive, &mut audio, &mut video);
            current = if m.starts_with("audio") {
                Some(true)
            } else if m.starts_with("video") {
                Some(false)
            } else {
                None
            };
            can_receive = m.split(' ').nth(1).is_none_or(|port| port != "0");
        } else if line == "a=sendonly" || line == "a=inactive" {
            can_receive = false;
        }
    }
    close(current, can_receive, &mut audio, &mut video);
    (audio, video)
}

/// The local description once gathering is done, registered with the mux and with the
/// shared port's candidates.
async fn finish_answer(
    pc: &Arc<dyn PeerConnection>,
    gather_rx: &mut watch::Receiver<bool>,
    runtime: &Arc<MuxRuntime>,
) -> Result<String, SfuError> {
    // Host candidates only (the server has no STUN of its own): gathering takes milliseconds.
    tokio::time::timeout(Duration::from_secs(5), gather_rx.wait_for(|done| *done))
        .await
        .map_err(|_| SfuError::GatheringTimeout)?
        .map_err(|_| SfuError::Closed)?;
    local_answer(pc, runtime).await
}

async fn local_answer(
    pc: &Arc<dyn PeerConnection>,
    runtime: &Arc<MuxRuntime>,
) -> Result<String, SfuError> {
    let local = pc.local_description().await.ok_or(SfuError::Closed)?;
    if let Some(ufrag) = ice_ufrag(&local.sdp) {
        runtime.register_ufrag(ufrag);
    }
    Ok(rewrite_candidates_with_tcp(
        &local.sdp,
        runtime.advertised_addr(),
        runtime.tcp_addr(),
    ))
}

struct PeerHandler {
    room: Weak<Room>,
    conn: u64,
    member: String,
    role: Role,
    publish: bool,
    gathered: watch::Sender<bool>,
    session: OnceLock<Weak<SessionInner>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(conn = self.conn, ?state, "peer connection state");
        match state {
            // ICE and DTLS are done: media can flow, and the member counts as connected.
            RTCPeerConnectionState::Connected => {
                if let Some(s) = self.session.get().and_then(Weak::upgrade) {
                    s.connected.send_replace(true);
                }
                if let Some(room) = self.room.upgrade() {
                    room.media_connected(self.conn);
                }
            }
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                if let Some(s) = self.session.get().and_then(Weak::upgrade) {
                    tokio::spawn(async move { s.shutdown().await });
                }
            }
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if !self.publish {
            return;
        }
        let Some(room) = self.room.upgrade() else {
            return;
        };
        let Some(ssrc) = track.ssrcs().await.first().copied() else {
            return;
        };
        let audio = track.kind().await == RtpCodecKind::Audio;
        let publisher = reader::Publisher {
            conn: self.conn,
            member: self.member.clone(),
            role: self.role,
            audio,
        };
        let task = tokio::spawn(reader::read_track(room, publisher, track, ssrc));
        if let Some(s) = self.session.get().and_then(Weak::upgrade) {
            s.push_task(task);
        }
    }
}

pub(super) struct SessionInner {
    conn: u64,
    id: String,
    room: Arc<Room>,
    pc: Arc<dyn PeerConnection>,
    runtime: Arc<MuxRuntime>,
    /// Turns true once, when the session ends.
    closed: watch::Sender<bool>,
    /// Turns true when the media connection is first up (ICE and DTLS done).
    connected: watch::Sender<bool>,
    // std Mutex: pushed to and drained, never held across `.await`.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// What video the subscriber wants (low-bandwidth mode, simulcast layer).
    video: watch::Sender<VideoPref>,
}

impl SessionInner {
    fn push_task(&self, t: tokio::task::JoinHandle<()>) {
        if *self.closed.borrow() {
            t.abort();
            return;
        }
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(t);
    }

    pub(super) async fn shutdown(&self) {
        if self.closed.send_replace(true) {
            return;
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
        }
        let _ = self.pc.close().await;
        self.runtime.close();
        self.room.sfu.stats.sessions.fetch_sub(1, Ordering::Relaxed);
        // A replaced session's member entry already belongs to its successor; the room keeps
        // it (the core compares connections).
        self.room.leave(&self.id, self.conn);
    }
}

/// A participant's connection. Dropping it does not close it; call [`Session::close`].
#[derive(Clone)]
pub struct Session {
    /// The SDP answer for the client.
    pub answer: String,
    inner: Arc<SessionInner>,
}

impl Session {
    /// The participant's id in the room (a house id, or `chair`).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The room it joined.
    pub fn room(&self) -> &Arc<Room> {
        &self.inner.room
    }

    /// Low-bandwidth mode: stop sending this participant video (audio goes on), or resume it
    /// from the next keyframe. For a house on a link too poor for both.
    pub fn set_audio_only(&self, on: bool) {
        self.update_video(|v| std::mem::replace(&mut v.audio_only, on) != on);
    }

    /// Change the video choice; `f` says whether it changed. The room's state shows it.
    fn update_video(&self, f: impl FnOnce(&mut VideoPref) -> bool) {
        if self.inner.video.send_if_modified(f) {
            let v = *self.inner.video.borrow();
            let mode = if v.audio_only {
                VideoMode::Off
            } else if v.low {
                VideoMode::Small
            } else {
                VideoMode::Full
            };
            self.inner.room.set_video(self.inner.conn, mode);
        }
    }

    /// Whether the session is in low-bandwidth mode.
    pub fn audio_only(&self) -> bool {
        self.inner.video.borrow().audio_only
    }

    /// Low video quality: the smallest simulcast layer the publisher sends, instead of the
    /// largest. The switch happens at that layer's next keyframe (asked for at once). For a
    /// house whose link carries a small picture but not a sharp one; without simulcast there
    /// is one layer and this changes nothing.
    pub fn set_low_quality(&self, on: bool) {
        self.update_video(|v| std::mem::replace(&mut v.low, on) != on);
    }

    /// Whether the session asked for low video quality.
    pub fn low_quality(&self) -> bool {
        self.inner.video.borrow().low
    }

    /// Whether the session has ended (closed, failed, or replaced).
    pub fn is_closed(&self) -> bool {
        *self.inner.closed.borrow()
    }

    /// Whether its media connection has come up (ICE and DTLS done); from then on the room
    /// counts the participant as connected.
    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Wait until the media connection is up (`true`) or the session ends first (`false`).
    /// With a timeout around it, this is how a caller removes a session whose ICE never
    /// completes.
    pub async fn connected(&self) -> bool {
        let mut connected = self.inner.connected.subscribe();
        let mut closed = self.inner.closed.subscribe();
        tokio::select! {
            r = connected.wait_for(|c| *c) => r.is_ok() && !self.is_closed(),
            _ = closed.wait_for(|c| *c) => false,
        }
    }

    /// The client's current offer (the remote description), once negotiated.
    pub async fn remote_sdp(&self) -> Option<String> {
        self.inner.pc.remote_description().await.map(|d| d.sdp)
    }

    /// The hub's current ICE username fragment: it names the ICE session (WHIP's entity-tag).
    pub async fn local_ufrag(&self) -> Option<String> {
        let local = self.inner.pc.local_description().await?;
        ice_ufrag(&local.sdp).map(str::to_owned)
    }

    /// A trickled candidate from the client.
    pub async fn add_candidate(
        &self,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    ) -> Result<(), SfuError> {
        if self.is_closed() {
            return Err(SfuError::Closed);
        }
        self.inner
            .pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate,
                sdp_mid,
                sdp_mline_index,
                username_fragment: None,
                url: None,
            })
            .await
            .map_err(neg)
    }

    /// A new offer on the same connection (ICE restart after a network change). The tracks
    /// stay as they are; returns the answer.
    pub async fn renegotiate(&self, offer: RTCSessionDescription) -> Result<String, SfuError> {
        if self.is_closed() {
            return Err(SfuError::Closed);
        }
        let pc = &self.inner.pc;
        pc.set_remote_description(offer).await.map_err(neg)?;
        let answer = pc.create_answer(None).await.map_err(neg)?;
        pc.set_local_description(answer).await.map_err(neg)?;
        local_answer(pc, &self.inner.runtime).await
    }

    /// Leave the room and close the connection.
    pub async fn close(&self) {
        self.inner.shutdown().await;
    }

    /// Wait until the session ends.
    pub async fn closed(&self) {
        let _ = self.inner.closed.subscribe().wait_for(|c| *c).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_receiving_sections() {
        let sdp = "v=0\r\nm=audio 9 UDP 111\r\na=sendrecv\r\nm=video 9 UDP 96\r\na=sendonly\r\n\
m=audio 9 UDP 111\r\na=recvonly\r\nm=video 0 UDP 96\r\nm=application 9 DTLS\r\n";
        assert_eq!(receiving_sections(sdp), (2, 0));
    }
}
