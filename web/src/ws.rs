//! WebSocket signalling: `GET /ws/{room}?token=…` (or `Authorization: Bearer …`).
//! The protocol is in docs/signalling.md.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;

use crate::auth::{Claims, Role};
use crate::error::AppError;
use crate::recording::FloorAsk;
use crate::AppState;
use dinh_sfu::room::{JoinRequest, Role as SfuRole, Room, Session, Slot};
use dinh_sfu::sdp::{check_candidate, filter_offer_candidates, parse_offer, CandidatePolicy};
use dinh_sfu::signal::{parse_client, ClientMessage, ServerMessage, SignalError, MAX_FRAME_BYTES};

/// A client that says nothing (not even `ping`) for this long is gone.
const IDLE: Duration = Duration::from_secs(60);

/// Query of the upgrade request.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

/// `GET /ws/{room}`: check the token before upgrading, so a bad one gets a 401/403 with a
/// message instead of a WebSocket that closes at once.
pub async fn upgrade(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let claims = state.authorize(&headers, q.token.as_deref(), &room)?;
    let room = state.room(&room)?;
    // Accept frames somewhat over the protocol limit so that an oversized one gets an error
    // frame from parse_client rather than a dropped connection.
    Ok(ws
        .max_message_size(MAX_FRAME_BYTES * 4)
        .on_upgrade(move |socket: WebSocket| async move {
            let (tx, rx) = socket.split();
            serve(state, room, claims, tx, rx).await;
        }))
}

/// Run one signalling connection over any sink and stream of messages (tests drive it
/// without a socket).
pub async fn serve<Tx, Rx, E>(
    state: AppState,
    room: std::sync::Arc<Room>,
    claims: Claims,
    mut tx: Tx,
    mut rx: Rx,
) where
    Tx: Sink<Message> + Unpin,
    Rx: Stream<Item = Result<Message, E>> + Unpin,
{
    let mut conn = Conn {
        app: state.clone(),
        recording: state.recording.clone(),
        room: room.clone(),
        claims,
        session: None,
        policy: state.candidate_policy(),
        candidates: std::collections::HashSet::new(),
        remote_ufrag: None,
        max_trickled: state.config.limits.trickled_candidates,
    };
    // The connection lives no longer than its token: closed at its expiry, or as soon as it
    // is revoked.
    let expiry = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        tokio::time::Instant::now() + Duration::from_secs(conn.claims.exp.saturating_sub(now))
    };
    let mut revocations = state.revoked.subscribe();
    let welcome = ServerMessage::Welcome {
        id: conn.claims.sub.clone(),
        role: conn.claims.role.as_str().to_owned(),
        room: room.name().to_owned(),
        name: conn.claims.name.clone(),
        ice_servers: state.ice_servers(&conn.claims.sub),
    };
    let mut room_rx = room.watch_state();
    let mut closing = state.closing.subscribe();
    let initial = ServerMessage::Room(room_rx.borrow_and_update().clone());
    if send(&mut tx, &welcome).await.is_err() || send(&mut tx, &initial).await.is_err() {
        return;
    }
    tracing::debug!(room = %room.name(), role = conn.claims.role.as_str(), "signalling connected");
    loop {
        let session_gone = async {
            match &conn.session {
                Some(s) => s.closed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = tokio::time::timeout(IDLE, rx.next()) => {
                let reply = match msg {
                    Err(_) => break, // idle
                    Ok(None) | Ok(Some(Err(_))) => break,
                    Ok(Some(Ok(Message::Text(t)))) => conn.handle(parse_client(t.as_str())).await,
                    Ok(Some(Ok(Message::Binary(_)))) => conn.handle(Err(SignalError::Binary)).await,
                    Ok(Some(Ok(Message::Close(_)))) => break,
                    Ok(Some(Ok(_))) => None, // ping/pong frames: the library answers
                };
                if let Some(reply) = reply {
                    if send(&mut tx, &reply).await.is_err() {
                        break;
                    }
                }
            }
            changed = room_rx.changed() => {
                if changed.is_err() { break; }
                let m = ServerMessage::Room(room_rx.borrow_and_update().clone());
                if send(&mut tx, &m).await.is_err() { break; }
            }
            _ = session_gone => {
                conn.session = None;
                let m = ServerMessage::error("session_ended", "the media connection ended; send a new offer to reconnect");
                if send(&mut tx, &m).await.is_err() { break; }
            }
            _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => break,
            _ = tokio::time::sleep_until(expiry) => {
                let m = ServerMessage::error("token_expired", "the token has expired; open the page again with a new link");
                let _ = send(&mut tx, &m).await;
                break;
            }
            changed = revocations.changed() => {
                if changed.is_err() { break; }
                if state.revoked.contains(&conn.claims.jti, &conn.claims.room) {
                    let m = ServerMessage::error("token_revoked", "the token has been revoked; ask for a new link");
                    let _ = send(&mut tx, &m).await;
                    break;
                }
            }
        }
    }
    if let Some(s) = conn.session.take() {
        s.close().await;
    }
    // A client that stopped reading gets no more than a moment to take the close.
    let _ = tokio::time::timeout(Duration::from_secs(2), tx.send(Message::Close(None))).await;
}

async fn send<Tx: Sink<Message> + Unpin>(tx: &mut Tx, m: &ServerMessage) -> Result<(), ()> {
    tx.send(Message::Text(m.to_json().into()))
        .await
        .map_err(|_| ())
}

struct Conn {
    /// The hub (its per-token write rates).
    app: AppState,
    recording: std::sync::Arc<crate::recording::Recording>,
    room: std::sync::Arc<Room>,
    claims: Claims,
    session: Option<Session>,
    /// Which remote candidates the hub will check.
    policy: CandidatePolicy,
    /// The distinct remote candidates of the current ICE session (offered or trickled), its
    /// remote ufrag, and the cap. Only an ICE restart (a new ufrag) or a new session starts
    /// the count again: renegotiating with the same ufrag does not.
    candidates: std::collections::HashSet<String>,
    remote_ufrag: Option<String>,
    max_trickled: usize,
}

impl Conn {
    async fn handle(&mut self, msg: Result<ClientMessage, SignalError>) -> Option<ServerMessage> {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => return Some(ServerMessage::error(e.code(), e.to_string())),
        };
        // What makes the record or the room change (joining, the floor) counts against the
        // token's write rate, as the API's writes do: a house looping raise/lower or join/leave
        // gets an error frame, and nothing is appended.
        let writes = match &msg {
            ClientMessage::Offer { .. } => self.session.as_ref().is_none_or(|s| s.is_closed()),
            ClientMessage::RaiseHand
            | ClientMessage::LowerHand
            | ClientMessage::GrantFloor { .. }
            | ClientMessage::RevokeFloor
            | ClientMessage::Mute { .. } => true,
            _ => false,
        };
        if writes {
            if let Err(wait) = self.app.rates.write(&self.claims.jti) {
                let e = AppError::rate_limited(wait);
                return Some(ServerMessage::error(e.code, e.message));
            }
        }
        match self.dispatch(msg).await {
            Ok(reply) => reply,
            Err(e) => Some(ServerMessage::error(e.code, e.message)),
        }
    }

    /// Count a remote candidate of the current ICE session (`candidate:…`); a repeat is free,
    /// a new one past the cap is refused.
    fn count_candidate(&mut self, candidate: &str) -> Result<(), AppError> {
        if self.candidates.contains(candidate) {
            return Ok(());
        }
        if self.candidates.len() >= self.max_trickled {
            return Err(AppError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_candidates",
                format!(
                    "one ICE session may use at most {} remote candidates, offered or trickled",
                    self.max_trickled
                ),
            ));
        }
        self.candidates.insert(candidate.to_owned());
        Ok(())
    }

    /// Ask the SFU, which decides the floor, then record what it decided in the meeting open
    /// in this room (if any); `role` and `what` are who may ask and what they ask, for a
    /// refusal.
    async fn ask_floor(
        &self,
        role: Role,
        what: &'static str,
        ask: FloorAsk,
    ) -> Result<Option<ServerMessage>, AppError> {
        self.claims.require(&[role], what)?;
        let change = match &ask {
            FloorAsk::RaiseHand(house) => self.room.raise_hand(house),
            FloorAsk::LowerHand(house) => self.room.lower_hand(house),
            FloorAsk::Grant(house) => self.room.grant_floor(house),
            FloorAsk::Revoke => self.room.revoke_floor(),
        }
        .map_err(floor)?;
        let actor = crate::recording::actor(&self.claims);
        self.recording
            .follow_floor(self.room.name(), &actor, &ask, &change)
            .await;
        Ok(None)
    }

    async fn dispatch(&mut self, msg: ClientMessage) -> Result<Option<ServerMessage>, AppError> {
        let me = self.claims.sub.clone();
        match msg {
            ClientMessage::Offer { sdp } => {
                let (sdp, _) = filter_offer_candidates(&sdp, self.policy)?;
                let offer = parse_offer(&sdp)?;
                let live = self.session.as_ref().is_some_and(|s| !s.is_closed());
                let ufrag = dinh_sfu::sdp::ice_ufrag(&sdp).map(str::to_owned);
                if !live || ufrag != self.remote_ufrag {
                    self.candidates.clear();
                    self.remote_ufrag = ufrag;
                }
                for c in sdp.lines().filter_map(|l| l.trim_end().strip_prefix("a=")) {
                    if c.starts_with("candidate:") {
                        self.count_candidate(c)?;
                    }
                }
                if let Some(s) = self.session.as_ref().filter(|s| !s.is_closed()) {
                    let answer = s.renegotiate(offer).await?;
                    return Ok(Some(ServerMessage::Answer { sdp: answer }));
                }
                let session = self.room.join(self.join_request(), offer).await?;
                let answer = session.answer.clone();
                self.session = Some(session);
                Ok(Some(ServerMessage::Answer { sdp: answer }))
            }
            ClientMessage::Candidate {
                candidate,
                sdp_mid,
                sdp_mline_index,
            } => {
                if self.session.is_none() {
                    return Err(no_session());
                }
                if candidate.trim().is_empty() {
                    // End of candidates, as browsers signal it.
                    return Ok(None);
                }
                let line = candidate.trim();
                self.count_candidate(line.strip_prefix("a=").unwrap_or(line))?;
                let Some(s) = &self.session else {
                    return Err(no_session());
                };
                if let Err(why) = check_candidate(&candidate, self.policy) {
                    tracing::debug!(%why, "trickled candidate dropped");
                    return Ok(None);
                }
                s.add_candidate(candidate, sdp_mid, sdp_mline_index).await?;
                Ok(None)
            }
            ClientMessage::RaiseHand => {
                self.ask_floor(Role::House, "raise a hand", FloorAsk::RaiseHand(me))
                    .await
            }
            ClientMessage::LowerHand => {
                self.ask_floor(Role::House, "lower a hand", FloorAsk::LowerHand(me))
                    .await
            }
            ClientMessage::GrantFloor { house } => {
                self.ask_floor(Role::Chair, "grant the floor", FloorAsk::Grant(house))
                    .await
            }
            ClientMessage::RevokeFloor => {
                self.ask_floor(Role::Chair, "revoke the floor", FloorAsk::Revoke)
                    .await
            }
            ClientMessage::Mute { house, muted } => {
                self.claims.require(&[Role::Chair], "mute a house")?;
                self.room.set_muted(&house, muted).map_err(floor)?;
                Ok(None)
            }
            ClientMessage::Quality { loss_pct, rtt_ms } => {
                if loss_pct.is_finite() && rtt_ms.is_finite() {
                    self.room.report_quality(&me, loss_pct, rtt_ms);
                }
                Ok(None)
            }
            ClientMessage::AudioOnly { on } => {
                let Some(s) = self.session.as_ref().filter(|s| !s.is_closed()) else {
                    return Err(no_session());
                };
                s.set_audio_only(on);
                Ok(Some(ServerMessage::AudioOnly { on }))
            }
            ClientMessage::LowQuality { on } => {
                let Some(s) = self.session.as_ref().filter(|s| !s.is_closed()) else {
                    return Err(no_session());
                };
                s.set_low_quality(on);
                Ok(Some(ServerMessage::LowQuality { on }))
            }
            ClientMessage::Ping => Ok(Some(ServerMessage::Pong)),
        }
    }

    fn join_request(&self) -> JoinRequest {
        let all = vec![
            Slot::ProgramAudio,
            Slot::ProgramVideo,
            Slot::FloorAudio,
            Slot::FloorVideo,
        ];
        let (role, publish, subscribe) = match self.claims.role {
            Role::Chair => (
                SfuRole::Chair,
                true,
                vec![Slot::FloorAudio, Slot::FloorVideo],
            ),
            Role::House => (SfuRole::House, true, all),
            Role::Official => (SfuRole::Viewer, false, all),
            // A loudspeaker receiver that speaks WebRTC: the meeting's voice only.
            // Refused by Keys::verify before the upgrade; should one get here, it gets nothing.
            Role::Feedback => (SfuRole::Viewer, false, vec![]),
            Role::Receiver => (
                SfuRole::Viewer,
                false,
                vec![Slot::ProgramAudio, Slot::FloorAudio],
            ),
        };
        JoinRequest {
            id: self.claims.sub.clone(),
            name: self.claims.name.clone(),
            role,
            publish,
            subscribe,
        }
    }
}

fn no_session() -> AppError {
    AppError::new(
        axum::http::StatusCode::CONFLICT,
        "no_session",
        "send an offer first",
    )
}

fn floor(e: dinh_sfu::floor::FloorError) -> AppError {
    AppError::new(axum::http::StatusCode::CONFLICT, "floor", e.to_string())
}
