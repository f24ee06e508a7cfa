//! What handlers take from a request beyond axum's own extractors.

use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::auth::Claims;
use crate::error::AppError;
use crate::AppState;

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

/// The caller of a request, from its bearer token (`Authorization: Bearer …`, or `?token=`
/// where a header cannot be set): an extractor, so handlers start from the claims.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = crate::error::AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        #[derive(Deserialize)]
        struct TokenQuery {
            token: Option<String>,
        }
        let q = axum::extract::Query::<TokenQuery>::try_from_uri(&parts.uri)
            .map(|q| q.0.token)
            .unwrap_or(None);
        let claims = state.claims(&parts.headers, q.as_deref())?;
        // What a token makes the hub write is paced per token; reads are not counted.
        let writes = !matches!(
            parts.method,
            axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
        );
        if writes {
            state
                .rates
                .write(&claims.jti)
                .map_err(crate::error::AppError::rate_limited)?;
        }
        Ok(Self(claims))
    }
}

/// A JSON request body, by the one rule every route follows: a `Content-Type` other than
/// `application/json` is 415; text that is not JSON is 400; JSON of the wrong shape (an
/// unknown command, a missing field, a wrong type) is 422, with serde's words naming the field.
/// All three answer the code `bad_body` or `unsupported_media_type`.
pub(crate) fn json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<T, AppError> {
    if let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json",
            ));
        }
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let status = if e.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        AppError::new(status, "bad_body", format!("request body: {e}"))
    })
}

/// [`json`] as an extractor, for handlers that need nothing else of the body.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AppError> {
        let headers = req.headers().clone();
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| AppError::new(e.status(), "bad_body", e.body_text()))?;
        json(&headers, &bytes).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code)]
        n: u32,
    }

    fn typed(ct: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(axum::http::header::CONTENT_TYPE, ct.parse().unwrap());
        }
        h
    }

    #[test]
    fn one_rule_for_every_body() {
        let ok = |ct, b: &str| json::<Body>(&typed(ct), b.as_bytes()).map(|_| ());
        let code = |ct, b: &str| {
            let e = json::<Body>(&typed(ct), b.as_bytes()).unwrap_err();
            (e.status.as_u16(), e.code)
        };
        assert!(ok(Some("application/json"), r#"{"n": 1}"#).is_ok());
        assert!(ok(Some("application/json; charset=utf-8"), r#"{"n": 1}"#).is_ok());
        assert!(ok(None, r#"{"n": 1}"#).is_ok());
        assert_eq!(
            code(Some("text/plain"), "{}"),
            (415, "unsupported_media_type")
        );
        assert_eq!(
            code(Some("application/jsonx"), "{}"),
            (415, "unsupported_media_type")
        );
        assert_eq!(code(None, "{not json"), (400, "bad_body"));
        assert_eq!(code(None, r#"{"n": "one"}"#), (422, "bad_body"));
        assert_eq!(code(None, r#"{"n": 1, "m": 2}"#), (422, "bad_body"));
        assert_eq!(code(None, "{}"), (422, "bad_body"));
    }
}
