//! The pages through the router (no sockets): served with the strict Content-Security-Policy,
//! revalidated cheaply, their assets and string tables found, nothing else.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use dinh_web::AppState;

async fn state() -> AppState {
    let data = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("pages-{}", uuid::Uuid::new_v4()));
    let mut config = dinh_web::config::Config {
        data,
        ..Default::default()
    };
    config.rtc.udp_listen = "127.0.0.1:0".parse().unwrap();
    AppState::start(config).await.unwrap()
}

async fn get(
    s: &AppState,
    path: &str,
    etag: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::get(path);
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        dinh_web::app(s.clone()).oneshot(req.body(Body::empty()).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn pages_carry_the_strict_policy_and_no_inline_script() {
    let s = state().await;
    for path in ["/", "/chair", "/house", "/official"] {
        let (st, h, body) = get(&s, path, None).await;
        assert_eq!(st, StatusCode::OK, "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(
            body.contains("/assets/dinh.js"),
            "{path} loads the shared module"
        );
    }
}

#[tokio::test]
async fn assets_are_revalidated_with_an_etag() {
    let s = state().await;
    let (st, h, body) = get(&s, "/assets/dinh.js", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(
        body.contains("replaceState"),
        "the token leaves the address bar"
    );
    let etag = h["etag"].to_str().unwrap().to_owned();
    let (st, _, body) = get(&s, "/assets/dinh.js", Some(&etag)).await;
    assert_eq!(st, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    let (st, _, _) = get(&s, "/assets/dinh.js", Some("\"stale\"")).await;
    assert_eq!(st, StatusCode::OK);
    for (path, ctype) in [
        ("/assets/i18n/vi.json", "application/json"),
        ("/assets/i18n/en.json", "application/json"),
        ("/assets/i18n/official/vi.json", "application/json"),
        ("/assets/i18n/house/en.json", "application/json"),
        ("/assets/style.css", "text/css"),
    ] {
        let (st, h, _) = get(&s, path, None).await;
        assert_eq!(st, StatusCode::OK, "{path}");
        assert!(
            h["content-type"].to_str().unwrap().starts_with(ctype),
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
}

#[tokio::test]
async fn unknown_assets_and_traversal_are_not_found() {
    let s = state().await;
    for path in [
        "/assets/nope.js",
        "/assets/../Cargo.toml",
        "/assets/i18n/fr.json",
        "/assets/i18n/official/fr.json",
        "/assets/i18n/nope/vi.json",
        "/assets/%2e%2e/signing.key",
    ] {
        let (st, _, body) = get(&s, path, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {body}");
    }
}
