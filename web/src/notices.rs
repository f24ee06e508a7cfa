//! Notices of the village bulletin boards over HTTP: the chair or an official posts and
//! withdraws them, every screen of the room reads them.
//!
//! - `GET /api/notices`: the room's notices (a house sees those shown today);
//! - `POST /api/notices`: post (`title`, `text`, `valid_from`, `valid_until`, `picture`);
//! - `POST /api/notices/{id}/withdraw`: take one off the boards;
//! - `PUT /api/notices/pictures`: upload a picture (PNG, JPEG or WebP, at most
//!   [`MAX_PICTURE_BYTES`]); answered with its name, which a post then names;
//! - `GET /api/notices/pictures/{name}`: a picture of the caller's room.
//!
//! Pictures are stored in `DATA/notices/ROOM/<sha256>.<ext>`, named by their content: the same
//! picture twice is stored once, and the log's name proves which bytes were shown. A room holds
//! at most [`ROOM_QUOTA_BYTES`] of them. They are served with the type their bytes prove
//! (never what the uploader said), `nosniff` and a sandboxing policy, and stored without their
//! metadata (EXIF, XMP, text chunks: see [`crate::picture`]).

use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use time::{Date, OffsetDateTime};

use crate::api::record;
use crate::auth::{Claims, Role};
use crate::error::AppError;
use crate::extract::json;
use crate::extract::Caller;
use crate::AppState;
use dinh_events::domain::notices::{Notice, NoticeAction, Picture};
use dinh_events::domain::workdays::VIETNAM;
use dinh_events::projections::NoticeRow;

/// Largest picture accepted, bytes: a phone photo re-saved for a screen.
pub const MAX_PICTURE_BYTES: usize = 2 * 1024 * 1024;
/// Pictures one room may hold, bytes.
pub const ROOM_QUOTA_BYTES: u64 = 64 * 1024 * 1024;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/notices", get(list).post(post_notice))
        .route("/api/notices/{id}/withdraw", post(withdraw))
        .route(
            "/api/notices/pictures",
            put(upload).layer(DefaultBodyLimit::max(MAX_PICTURE_BYTES)),
        )
        .route("/api/notices/pictures/{name}", get(picture))
}

/// Anyone of the room who uses the pages (not a loudspeaker receiver).
fn reader(c: &Claims) -> Result<(), AppError> {
    c.require(
        &[Role::Chair, Role::Official, Role::House],
        "read the notices",
    )?;
    Ok(())
}

fn bad(field: &str, reason: impl std::fmt::Display) -> AppError {
    AppError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_body",
        format!("invalid {field}: {reason}"),
    )
}

/// Today in Vietnam: the day the boards show.
pub fn today() -> Date {
    OffsetDateTime::now_utc().to_offset(VIETNAM).date()
}

async fn list(State(s): State<AppState>, Caller(c): Caller) -> Result<Response, AppError> {
    reader(&c)?;
    let day = today();
    let views = s.recording.views.read().await;
    let mut rows: Vec<NoticeRow> = views
        .notices
        .rows()
        .filter(|n| n.room == c.room)
        .filter(|n| c.role != Role::House || n.shown_on(day))
        .cloned()
        .collect();
    rows.sort_by(|a, b| b.posted_at.cmp(&a.posted_at));
    Ok(Json(rows).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    title: String,
    text: String,
    valid_from: String,
    valid_until: String,
    /// The name an upload answered.
    #[serde(default)]
    picture: Option<String>,
}

fn day(field: &str, v: &str) -> Result<Date, AppError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(v.trim(), &fmt).map_err(|_| bad(field, "not a date (YYYY-MM-DD)"))
}

fn pictures_dir(s: &AppState, room: &str) -> PathBuf {
    s.config.data.join("notices").join(room)
}

/// A picture's type from its first bytes: (extension, content type).
fn sniff(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("png", "image/png"))
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("jpg", "image/jpeg"))
    } else if bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(("webp", "image/webp"))
    } else {
        None
    }
}

/// A stored picture name: `<64 hex>.<png|jpg|webp>`, nothing that could leave the folder.
fn valid_picture_name(name: &str) -> Option<&'static str> {
    let (hash, ext) = name.split_once('.')?;
    if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    match ext {
        "png" => Some("image/png"),
        "jpg" => Some("image/jpeg"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

async fn post_notice(
    State(s): State<AppState>,
    Caller(c): Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair, Role::Official], "post a notice")?;
    let b: PostBody = json(&headers, &bytes)?;
    let valid_from = day("valid_from", &b.valid_from)?;
    let valid_until = day("valid_until", &b.valid_until)?;
    let picture = match b.picture.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        Some(name) => {
            let ctype = valid_picture_name(name)
                .ok_or_else(|| bad("picture", "not an uploaded picture"))?;
            let meta = tokio::fs::metadata(pictures_dir(&s, &c.room).join(name))
                .await
                .map_err(|_| bad("picture", "not an uploaded picture; upload it first"))?;
            Some(Picture {
                name: name.to_owned(),
                content_type: ctype.to_owned(),
                bytes: meta.len(),
            })
        }
    };
    let action = NoticeAction::Post {
        room: c.room.clone(),
        title: b.title,
        text: b.text,
        picture,
        valid_from,
        valid_until,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let o = record::<Notice>(&s.recording, &c, &headers, "notice", &id, action).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": o.aggregate_id, "appended": o.appended, "replayed": o.replayed })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WithdrawBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn withdraw(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(c): Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair, Role::Official], "withdraw a notice")?;
    let b: WithdrawBody = if bytes.is_empty() {
        WithdrawBody { reason: None }
    } else {
        json(&headers, &bytes)?
    };
    // Another room's notice is as absent as a missing one.
    let known = s
        .recording
        .views
        .read()
        .await
        .notices
        .get(&id)
        .is_some_and(|n| n.room == c.room);
    if !known {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "no_such_notice",
            format!("there is no notice '{id}'"),
        ));
    }
    let action = NoticeAction::Withdraw { reason: b.reason };
    let o = record::<Notice>(&s.recording, &c, &headers, "withdraw", &id, action).await?;
    Ok(Json(o).into_response())
}

async fn upload(
    State(s): State<AppState>,
    Caller(c): Caller,
    bytes: Bytes,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair, Role::Official], "upload a notice picture")?;
    let Some((ext, ctype)) = sniff(&bytes) else {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_picture",
            "invalid picture: a PNG, JPEG or WebP file",
        ));
    };
    // What the screens serve is the picture without its camera's metadata (where and when it
    // was taken, the phone's serial number): stripped before it is named and stored.
    let bytes = crate::picture::strip(ext, &bytes).map_err(|e| {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_picture",
            e.to_string(),
        )
    })?;
    let hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
    let name = format!("{hash}.{ext}");
    let dir = pictures_dir(&s, &c.room);
    let path = dir.join(&name);
    // One picture stored at a time, so that two uploads cannot both pass the quota check.
    static STORING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _storing = STORING.lock().await;
    let stored = tokio::fs::metadata(&path).await.is_ok();
    if !stored {
        let used = folder_bytes(&dir).await;
        if used + bytes.len() as u64 > ROOM_QUOTA_BYTES {
            return Err(AppError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "quota",
                format!(
                    "the room's pictures would exceed {} MiB; withdraw old notices first",
                    ROOM_QUOTA_BYTES >> 20
                ),
            ));
        }
        let tmp = dir.join(format!(".{name}.part"));
        let write = async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::write(&tmp, &bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        write.await.map_err(|e| {
            // No half-written file is left to count against the quota.
            let _ = std::fs::remove_file(&tmp);
            tracing::error!(error = %e, "notice picture not stored");
            AppError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage",
                "the picture could not be stored",
            )
        })?;
    }
    Ok((
        if stored {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(serde_json::json!({ "name": name, "content_type": ctype, "bytes": bytes.len() })),
    )
        .into_response())
}

async fn folder_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(mut rd) = tokio::fs::read_dir(dir).await {
        while let Ok(Some(e)) = rd.next_entry().await {
            if let Ok(m) = e.metadata().await {
                total += m.len();
            }
        }
    }
    total
}

async fn picture(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    reader(&c)?;
    let not_found = || {
        AppError::new(
            StatusCode::NOT_FOUND,
            "no_such_picture",
            "there is no such picture",
        )
    };
    let ctype = valid_picture_name(&name).ok_or_else(not_found)?;
    let bytes = tokio::fs::read(pictures_dir(&s, &c.room).join(&name))
        .await
        .map_err(|_| not_found())?;
    Ok((
        [
            (header::CONTENT_TYPE, ctype),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox",
            ),
            (header::CONTENT_DISPOSITION, "inline"),
            // Named by content: it never changes.
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_typed_by_their_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(("png", "image/png")));
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(("jpg", "image/jpeg"))
        );
        assert_eq!(
            sniff(b"RIFF\x10\0\0\0WEBPVP8 "),
            Some(("webp", "image/webp"))
        );
        assert_eq!(sniff(b"<svg onload=alert(1)>"), None);
        assert_eq!(sniff(b"GIF89a"), None);
    }

    #[test]
    fn only_content_names_reach_the_disk() {
        let h = "0123456789abcdef".repeat(4);
        assert_eq!(valid_picture_name(&format!("{h}.png")), Some("image/png"));
        assert_eq!(valid_picture_name(&format!("{h}.svg")), None);
        assert_eq!(valid_picture_name("../../signing.key"), None);
        assert_eq!(
            valid_picture_name(&format!("{}.png", h.to_uppercase())),
            None
        );
        assert_eq!(valid_picture_name(&format!("{h}.png/..")), None);
    }
}
