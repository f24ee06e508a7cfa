//! HTTPS on the hub's one port (issue 11 §1): a client that trusts only the hub's own CA gets
//! the pages and WHEP over TLS with HSTS; a client trusting another CA is refused by its own
//! TLS stack; plain HTTP from another machine is redirected to HTTPS, while the machine itself
//! keeps plain HTTP (`./ops/run`'s first link); a certificate and key from files are served
//! instead of the hub's own.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::Hub;
use dinh_sfu::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use dinh_sfu::testkit::Peer;
use dinh_web::auth::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn get(agent: ureq::Agent, url: String) -> Result<(u16, Option<String>, String), ureq::Error> {
    let mut r = agent.get(&url).call()?;
    let hsts = r
        .headers()
        .get("strict-transport-security")
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((r.status().as_u16(), hsts, r.body_mut().read_to_string()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trusts_the_hubs_ca_gets_https_with_hsts() {
    let hub = Hub::start_tls(|_| {}).await;
    assert!(hub.base.starts_with("https://127.0.0.1:"));
    let r = hub.request("GET", "/healthz", vec![], None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    assert!(r.header("content-security-policy").is_some());
    // WHEP over HTTPS.
    let mut p = Peer::new(None).await;
    p.add_receiver(RtpCodecKind::Audio).await;
    let offer = p.offer().await;
    let answer = hub.whep(&hub.token(Role::House, "house-1"), offer).await;
    assert!(answer.starts_with("v=0"));

    // A client whose only root is another CA refuses the hub's certificate.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = other.cert.der().to_vec();
    let url = format!("{}/healthz", hub.base);
    let refused = tokio::task::spawn_blocking(move || get(Hub::agent(Some(&der)), url))
        .await
        .unwrap();
    assert!(refused.is_err(), "an unknown CA must fail: {refused:?}");

    // The name matters too: the certificate names localhost and this machine's addresses.
    let url = format!("https://localhost:{}/healthz", hub.addr.port());
    let ca = hub.ca.clone();
    let (st, hsts, _) = tokio::task::spawn_blocking(move || get(Hub::agent(ca.as_deref()), url))
        .await
        .unwrap()
        .expect("localhost is in the certificate");
    assert_eq!((st, hsts.as_deref()), (200, Some("max-age=31536000")));
    hub.stop().await;
}

/// This machine's first non-loopback IPv4 address, if it has one.
fn lan_address() -> Option<IpAddr> {
    dinh_web::tls::local_addresses()
        .into_iter()
        .find(|a| a.is_ipv4() && !a.is_loopback() && !a.is_unspecified())
}

async fn raw_get(from: IpAddr, to: SocketAddr, request: &str) -> String {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from, 0)).unwrap();
    let mut c = s.connect(to).await.unwrap();
    c.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        c.read_to_string(&mut out),
    )
    .await
    .expect("an answer")
    .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_served_to_this_machine_and_redirected_for_others() {
    let hub = Hub::start(|_| {}).await;
    let req = "GET /house?token=abc HTTP/1.1\r\nHost: hub.lan:8080\r\nConnection: close\r\n\r\n";
    let local = raw_get([127, 0, 0, 1].into(), hub.addr, req).await;
    assert!(local.starts_with("HTTP/1.1 200"), "{local}");
    assert!(
        !local
            .to_ascii_lowercase()
            .contains("strict-transport-security"),
        "no HSTS over plain HTTP: {local}"
    );
    let Some(lan) = lan_address() else {
        // The rule itself is the same either way; say why the network half did not run.
        eprintln!("no LAN address on this machine: redirect from another address not exercised");
        hub.stop().await;
        return;
    };
    // From a LAN address of this machine to the hub's loopback address: another source.
    let other = raw_get(lan, hub.addr, req).await;
    let lower = other.to_ascii_lowercase();
    assert!(other.starts_with("HTTP/1.1 308"), "{other}");
    assert!(
        lower.contains("location: https://hub.lan:8080/house?token=abc\r\n"),
        "{other}"
    );
    assert!(lower.contains("x-frame-options: deny"), "{other}");
    // A request without a usable Host is told so.
    let bad = raw_get(
        lan,
        hub.addr,
        "GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_and_key_from_files_are_served() {
    let dir = common::app::data_dir("tls-files");
    std::fs::create_dir_all(&dir).unwrap();
    // The province's CA, say, and a certificate it issued for the hub.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("hub.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("hub.key"), key.serialize_pem()).unwrap();
    let (c, k) = (dir.join("hub.pem"), dir.join("hub.key"));
    let hub = Hub::start(move |cfg| {
        cfg.tls.cert = Some(c);
        cfg.tls.key = Some(k);
    })
    .await;
    assert!(
        !hub.state.config.data.join("tls").exists(),
        "no CA of its own"
    );
    let url = format!("https://127.0.0.1:{}/healthz", hub.addr.port());
    let ca = ca_cert.der().to_vec();
    let (st, hsts, body) = tokio::task::spawn_blocking(move || get(Hub::agent(Some(&ca)), url))
        .await
        .unwrap()
        .expect("the file's certificate is served");
    assert_eq!((st, body.as_str()), (200, "ok"));
    assert!(hsts.is_some());
    let (st, _) = hub.call("GET", "/ca.pem", "", None).await;
    assert_eq!(st, 404, "no CA to hand out");
    hub.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
