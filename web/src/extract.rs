//! What handlers take from a request beyond axum's own extractors.

use axum::http::{HeaderMap, StatusCode};

use crate::auth::Claims;
use crate::error::AppError;

/// The command id of a retried request: its `Idempotency-Key`, scoped to the caller and the
/// route so that one caller's key never replays another's outcome.
pub(crate) fn command_key(
    headers: &HeaderMap,
    c: &Claims,
    route: &str,
) -> Result<Option<String>, AppError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .ok_or_else(|| {
            AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_idempotency_key",
                "Idempotency-Key must be 1 to 128 visible ASCII characters",
            )
        })?;
    Ok(Some(format!(
        "{route}/{}/{}/{}/{v}",
        c.room,
        c.role.as_str(),
        c.sub
    )))
}
