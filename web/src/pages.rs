//! The browser pages, compiled into the binary: nothing to install beside it.

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

use crate::AppState;

/// Routes of the pages and their assets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("pages/index.html")) }),
        )
        .route(
            "/chair",
            get(|| async { Html(include_str!("pages/chair.html")) }),
        )
        .route(
            "/house",
            get(|| async { Html(include_str!("pages/house.html")) }),
        )
        .route(
            "/assets/client.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("pages/client.js"),
                )
            }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", include_str!("pages/style.css")) }),
        )
}

fn asset(ctype: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, ctype)], body)
}
