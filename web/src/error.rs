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
    /// The status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// For a person.
    pub message: String,
}

impl AppError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        } else {
            tracing::debug!(code = self.code, message = %self.message, "request refused");
        }
        let body = Json(serde_json::json!({"error": self.code, "message": self.message}));
        (self.status, body).into_response()
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
