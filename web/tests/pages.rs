//! The pages through the router (no sockets): served with the strict Content-Security-Policy,
//! revalidated cheaply, their assets and string tables found, nothing else.

mod common;

use axum::body::Body;
use axum::http::StatusCode;

use common::app::{request, send, state};
use dinh_web::AppState;

async fn get(
    s: &AppState,
    path: &str,
    etag: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = request("GET", path, None);
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    let a = send(s, req.body(Body::empty()).unwrap()).await;
    (a.status, a.headers, a.body)
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
