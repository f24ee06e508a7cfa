//! # dinh-web: the Đình hub
//!
//! The axum application ([`app`]) over the SFU: pages for the chair and the cultural houses,
//! WebSocket signalling (`/ws/{room}`), WHIP (`/whip/{room}`) and WHEP (`/whep/{room}`),
//! health and metrics. [`run`] serves it until its shutdown future fires.
//!
//! # Layout
//! - [`config`]: settings from defaults, `dinh.toml`, `DINH_*`;
//! - [`auth`]: bearer tokens and TURN credentials;
//! - [`commune`]: rooms and houses, in the data folder;
//! - [`ws`]: the signalling protocol of docs/signalling.md;
//! - [`whip`]: RFC 9725 WHIP and the WHEP draft;
//! - [`api`]: the record's REST API, SSE and CSV exports; [`recording`]: the record's
//!   background work and the SFU facts it is fed;
//! - [`notices`], [`board`], [`phone`]: the page-facing API of the village bulletin board
//!   (notices, the house's board) and the QR code's phone page (the `feedback` token);
//! - [`loudspeakers`]: the loudspeaker bridge (dinh-broadcast) wired to the rooms, the record
//!   and HTTP;
//! - [`integrity`]: the record checked at start-up, signed and witnessed as it grows
//!   (`/api/integrity`, `/healthz`); [`witness`]: this hub as a witness of other communes'
//!   logs (`/witness`, and `dinh witness`);
//! - [`error`]: [`error::AppError`], the one HTTP error type;
//! - [`server`]: [`run`], the accept loop: HTTPS and plain HTTP on one port, connection caps,
//!   header and body timeouts, security headers; [`tls`]: the certificate (the hub's own CA,
//!   or files); [`limits`]: the connection table and body deadlines;
//! - [`tokens`]: the deny list of revoked tokens and `POST /api/tokens/revoke`; [`rate`]: each
//!   token's write rate;
//! - `state`: [`AppState`], what the handlers share, and [`AppState::start`]; [`metrics`]:
//!   `/metrics`; `extract`: what handlers take from a request beyond axum's extractors
//!   (`Caller`, `JsonBody`, the scoped Idempotency-Key).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = dinh_web::config::Config::default();
//! let state = dinh_web::AppState::start(config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! dinh_web::run(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod board;
pub mod commune;
pub mod config;
pub mod error;
pub mod extract;
pub mod integrity;
pub mod limits;
pub mod loudspeakers;
pub mod metrics;
pub mod notices;
pub mod official;
mod pages;
pub mod phone;
pub mod picture;
pub mod rate;
pub mod recording;
pub mod server;
mod state;
pub mod tls;
pub mod tokens;
pub mod whip;
pub mod witness;
pub mod ws;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use error::AppError;

pub use metrics::metrics_app;
pub use server::run;
pub use state::{AppState, Inner};

/// The router. Every response gets the security headers ([`server::security_layer`]).
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(pages::routes())
        .route("/ws/{room}", get(ws::upgrade))
        .merge(whip::routes())
        .merge(api::routes())
        .merge(official::routes())
        .merge(loudspeakers::routes())
        .merge(notices::routes())
        .merge(board::routes())
        .merge(phone::routes())
        .merge(tokens::routes())
        .merge(integrity::routes())
        .merge(witness::routes(state.witness.clone()))
        .route("/healthz", get(integrity::healthz))
        .route("/metrics", get(metrics::metrics_with_token))
        .route("/ca.pem", get(ca_pem))
        .layer(DefaultBodyLimit::max(dinh_sfu::sdp::MAX_SDP_BYTES))
        .with_state(state)
        .layer(axum::middleware::from_fn(server::security_layer))
}

/// The hub's own CA certificate, for browsers and house boxes to trust (check its
/// fingerprint against the one `dinh serve` prints); 404 when the certificate comes from files.
async fn ca_pem(State(s): State<AppState>) -> Result<axum::response::Response, AppError> {
    match s.tls.as_ref().and_then(|t| t.ca_pem()) {
        Some(pem) => Ok((
            [
                (header::CONTENT_TYPE, "application/x-pem-file"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"dinh-ca.crt\"",
                ),
            ],
            pem,
        )
            .into_response()),
        None => Err(AppError::new(
            StatusCode::NOT_FOUND,
            "no_ca",
            "this hub's certificate is not from its own CA",
        )),
    }
}
