//! One error type for HTTP: a status and a message for the client, details in the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::AuthError;
use dinh_sfu::room::SfuError;
use dinh_sfu::sdp::SdpError;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct AppError {
    /// The HTTP status it is answered with (4xx for the caller's mistake, 5xx for ours).
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// For a person.
    pub message: String,
    /// For 429 and 503: when to try again (a `Retry-After` header, whole seconds).
    pub retry_after: Option<std::time::Duration>,
}

impl AppError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A token's write rate is spent: 429 with when to try again.
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        Self {
            retry_after: Some(std::time::Duration::from_secs(secs)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests with this token: try again in {secs} s"),
            )
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        } else {
            // Only the code: a refusal's message can quote what the caller sent.
            tracing::debug!(code = self.code, "request refused");
        }
        let body = Json(serde_json::json!({"error": self.code, "message": self.message}));
        let mut res = (self.status, body).into_response();
        if let Some(wait) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, wait.as_secs().into());
        }
        res
    }
}

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        let (status, code) = match e {
            AuthError::Missing => (StatusCode::UNAUTHORIZED, "token_missing"),
            AuthError::Expired => (StatusCode::UNAUTHORIZED, "token_expired"),
            AuthError::Invalid => (StatusCode::UNAUTHORIZED, "token_invalid"),
            AuthError::Revoked => (StatusCode::UNAUTHORIZED, "token_revoked"),
            AuthError::WrongRoom { .. } => (StatusCode::FORBIDDEN, "wrong_room"),
            AuthError::WrongRole { .. } => (StatusCode::FORBIDDEN, "wrong_role"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<SdpError> for AppError {
    fn from(e: SdpError) -> Self {
        let status = match e {
            SdpError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, "bad_sdp", e.to_string())
    }
}

impl From<SfuError> for AppError {
    fn from(e: SfuError) -> Self {
        match e {
            SfuError::Negotiation(_) => {
                Self::new(StatusCode::BAD_REQUEST, "negotiation_failed", e.to_string())
            }
            SfuError::Floor(_) => Self::new(StatusCode::CONFLICT, "floor", e.to_string()),
            SfuError::Closed => Self::new(StatusCode::NOT_FOUND, "session_closed", e.to_string()),
            _ => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
        }
    }
}
