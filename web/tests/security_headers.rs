//! The security headers on every response, through the router (no sockets): pages, assets,
//! errors, the API, unknown paths; HSTS only over HTTPS. And who may read `/metrics`, and the
//! hub's CA certificate for browsers to trust.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use common::app::{request, send, state, token};
use dinh_web::auth::Role;
use dinh_web::server::{Transport, CSP, HSTS};
use dinh_web::AppState;

async fn get(
    s: &AppState,
    path: &str,
    token: Option<&str>,
    https: bool,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = request("GET", path, token).body(Body::empty()).unwrap();
    if https {
        req.extensions_mut().insert(Transport { https: true });
    }
    let a = send(s, req).await;
    (a.status, a.headers, a.body)
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_hsts_only_over_https() {
    let s = state().await;
    let house = token(&s, Role::House, "house-1");
    let cases = [
        ("/", None, StatusCode::OK),
        ("/assets/client.js", None, StatusCode::OK),
        ("/healthz", None, StatusCode::OK),
        ("/api/meetings", None, StatusCode::UNAUTHORIZED),
        ("/api/meetings", Some(house.as_str()), StatusCode::OK),
        ("/no/such/page", None, StatusCode::NOT_FOUND),
        ("/metrics", None, StatusCode::UNAUTHORIZED),
    ];
    for (path, token, want) in cases {
        for https in [false, true] {
            let (status, h, body) = get(&s, path, token, https).await;
            assert_eq!(status, want, "{path}: {body}");
            let v = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(v("content-security-policy").as_deref(), Some(CSP), "{path}");
            assert_eq!(
                v("referrer-policy").as_deref(),
                Some("no-referrer"),
                "{path}"
            );
            assert_eq!(v("x-frame-options").as_deref(), Some("DENY"), "{path}");
            assert_eq!(
                v("x-content-type-options").as_deref(),
                Some("nosniff"),
                "{path}"
            );
            assert_eq!(
                v("strict-transport-security").as_deref(),
                https.then_some(HSTS),
                "{path} https={https}"
            );
        }
    }
    assert_eq!(
        CSP,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
}

#[tokio::test]
async fn every_page_gets_the_strict_policy() {
    let s = state().await;
    for path in ["/", "/chair", "/house", "/phone"] {
        let (status, h, _) = get(&s, path, None, true).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(h.get("content-security-policy").unwrap(), CSP, "{path}");
        assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer", "{path}");
        assert_eq!(h.get("x-frame-options").unwrap(), "DENY", "{path}");
    }
}

#[tokio::test]
async fn metrics_need_an_officials_token() {
    let s = state().await;
    let t = |role, room: &str| s.keys.issue("x", "x", role, room, Duration::from_secs(60));
    let (st, _, body) = get(&s, "/metrics", None, false).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    for role in [Role::House, Role::Chair, Role::Receiver] {
        let (st, _, body) = get(&s, "/metrics", Some(&t(role, "demo")), false).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{role:?}: {body}");
        assert!(body.contains("read the metrics"), "{body}");
    }
    let (st, h, body) = get(&s, "/metrics", Some(&t(Role::Official, "demo")), false).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(h
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    for line in [
        "dinh_http_connections ",
        "dinh_http_connections_refused_total{cap=\"source\"} ",
        "dinh_whip_sessions 0\n",
        "dinh_tokens_revoked 0\n",
    ] {
        assert!(body.contains(line), "{line}: {body}");
    }
    // The separate metrics address needs no token, and serves nothing else.
    let m = dinh_web::metrics_app(s.clone());
    let res = m
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = m
        .oneshot(Request::get("/api/meetings").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_hubs_ca_is_offered_for_download() {
    let s = state().await;
    let (st, h, body) = get(&s, "/ca.pem", None, false).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.starts_with("-----BEGIN CERTIFICATE-----"), "{body}");
    assert!(!body.contains("PRIVATE"), "never a key");
    assert!(h
        .get("content-disposition")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("dinh-ca.crt"));
    // What is served is the CA whose fingerprint the hub prints.
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(body.as_bytes()).unwrap();
    let dinh_web::tls::Source::OwnCa { ca_fingerprint, .. } = &s.tls.as_ref().unwrap().source
    else {
        panic!("own CA expected")
    };
    assert_eq!(dinh_web::tls::fingerprint(der.as_ref()), *ca_fingerprint);
}
