//! The hub's router in-process, without sockets: a hub's state on a fresh data folder, its
//! tokens, and one way to send it a request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use dinh_web::auth::Role;
use dinh_web::config::Config;
use dinh_web::AppState;

/// A fresh folder under the tests' temporary directory, named after `tag`.
pub fn data_dir(tag: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{tag}-{}", uuid::Uuid::new_v4()))
}

/// The default settings on `data`, with the media port on loopback.
pub fn config(data: PathBuf) -> Config {
    let mut config = Config {
        data,
        ..Default::default()
    };
    config.rtc.udp_listen = "127.0.0.1:0".parse().unwrap();
    config
}

/// A hub's state with the default settings on a fresh folder.
pub async fn state() -> AppState {
    state_with(|_| {}).await
}

/// A hub's state on a fresh folder, its settings adjusted by `change`.
pub async fn state_with(change: impl FnOnce(&mut Config)) -> AppState {
    let mut c = config(data_dir("app"));
    change(&mut c);
    AppState::start(c).await.unwrap()
}

/// A hub's state on the folder `data` (a restart on the same data).
pub async fn state_in(data: &Path) -> AppState {
    AppState::start(config(data.to_path_buf())).await.unwrap()
}

/// A ten-minute token of room `demo`.
pub fn token(s: &AppState, role: Role, id: &str) -> String {
    token_in(s, role, id, "demo")
}

/// A ten-minute token of `room`.
pub fn token_in(s: &AppState, role: Role, id: &str, room: &str) -> String {
    s.keys.issue(id, id, role, room, Duration::from_secs(600))
}

/// A response, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A request to `path` with `token` as its bearer, if any.
pub fn request(method: &str, path: &str, token: Option<&str>) -> axum::http::request::Builder {
    let req = Request::builder().method(method).uri(path);
    match token {
        Some(t) => req.header("authorization", format!("Bearer {t}")),
        None => req,
    }
}

/// Send `req` through the hub's router; the answer within 60 s.
pub async fn send(s: &AppState, req: Request<Body>) -> Answer {
    let res = tokio::time::timeout(
        Duration::from_secs(60),
        dinh_web::app(s.clone()).oneshot(req),
    )
    .await
    .expect("the hub answers")
    .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `method path` with `token` and, if given, a JSON body.
pub async fn call(
    s: &AppState,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let req = request(method, path, token);
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    };
    send(s, req.unwrap()).await
}
