//! Token revocation: the deny list in memory (loaded from the record at start, added to as
//! each revocation is recorded), checked by `AppState::claims` on every request and by each
//! WebSocket while it lives; and `POST /api/tokens/revoke`, which `dinh token revoke` calls
//! on a running hub.
//!
//! What must stay true: an id is in the in-memory list only once the record holds its
//! `TokenRevoked` (the record is the truth; a restart reloads it), and from then on no request
//! with that token is served.

use std::collections::BTreeMap;
use std::sync::RwLock;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::watch;

use crate::auth::Role;
use crate::error::AppError;
use crate::extract::{Caller, JsonBody};
use crate::AppState;
use dinh_events::domain::tokens::TokenAction;
use dinh_events::domain::Command;

/// The revoked token ids, each with the rooms it is revoked in (`None`: every room).
pub struct DenyList {
    // std RwLock: read on every request, written on a revocation; never held across `.await`.
    ids: RwLock<BTreeMap<String, Vec<Option<String>>>>,
    /// Bumped on every revocation: WebSockets wake and check their own token.
    changed: watch::Sender<u64>,
}

fn covers(rooms: &[Option<String>], room: &str) -> bool {
    rooms.iter().any(|r| r.as_deref().is_none_or(|r| r == room))
}

impl DenyList {
    /// A list holding `revoked`: ids and the room each is revoked in.
    pub fn new<'a>(revoked: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Self {
        let list = Self {
            ids: RwLock::new(BTreeMap::new()),
            changed: watch::channel(0).0,
        };
        for (jti, room) in revoked {
            list.add(jti, room);
        }
        list
    }

    fn add(&self, jti: &str, room: Option<&str>) {
        self.ids
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(jti.to_owned())
            .or_default()
            .push(room.map(str::to_owned));
    }

    /// Whether the token `jti` of `room` is revoked.
    pub fn contains(&self, jti: &str, room: &str) -> bool {
        self.ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(jti)
            .is_some_and(|rooms| covers(rooms, room))
    }

    /// Whether an id revoked for `room` starts with `prefix` (a `feedback` token's parent):
    /// a range of the sorted ids, not a scan of them all.
    pub fn contains_prefix(&self, prefix: &str, room: &str) -> bool {
        !prefix.is_empty()
            && self
                .ids
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .range(prefix.to_owned()..)
                .take_while(|(j, _)| j.starts_with(prefix))
                .any(|(_, rooms)| covers(rooms, room))
    }

    /// Add `jti` for `room` (once the record holds its revocation).
    pub fn insert(&self, jti: &str, room: Option<&str>) {
        self.add(jti, room);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Revoked ids.
    pub fn len(&self) -> usize {
        self.ids.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no id is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes on every revocation.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The revocation route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/tokens/revoke", post(revoke))
}

/// `POST /api/tokens/revoke` body: the token itself (its room must be the caller's), or its
/// id alone, revoked in the caller's room only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The whole token.
    pub token: Option<String>,
    /// Its id (`jti`).
    pub jti: Option<String>,
    /// Why, for the record.
    #[serde(default)]
    pub reason: String,
}

async fn revoke(
    State(s): State<AppState>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<RevokeRequest>,
) -> Result<Json<serde_json::Value>, AppError> {
    caller.require(&[Role::Chair, Role::Official], "revoke tokens")?;
    let (jti, room, subject, expires_at) = match (body.token, body.jti) {
        (Some(t), None) => {
            let c = s.keys.verify_signature(t.trim())?;
            c.for_room(&caller.room)?;
            (c.jti, Some(c.room), Some(c.sub), Some(c.exp))
        }
        (None, Some(jti)) => (jti, Some(caller.room.clone()), None, None),
        _ => {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_body",
                "give either token (the whole token) or jti (its id), not both",
            ))
        }
    };
    let cmd = Command::new(
        time::OffsetDateTime::now_utc(),
        crate::recording::actor(&caller),
        TokenAction::Revoke {
            jti: jti.clone(),
            room: room.clone(),
            subject,
            expires_at,
            reason: body.reason,
        },
    );
    let outcome = s.recording.record.revoke_token(cmd, None).await?;
    s.revoked.insert(&jti, room.as_deref());
    tracing::info!("token revoked");
    Ok(Json(serde_json::json!({
        "revoked": jti,
        "position": outcome.appended.map(|a| a.last),
    })))
}
