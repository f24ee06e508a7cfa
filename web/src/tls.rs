//! HTTPS: the hub's certificate and the rustls server configuration.
//!
//! Browsers give a page the camera and microphone only in a secure context, and the chair's
//! laptop and the houses open the hub by its LAN address, so the hub speaks TLS. Either:
//! - **files**: `tls.cert` and `tls.key` name a PEM chain and key (the province's CA, or a
//!   public one for a hub with a public name); they are read at start; or
//! - **its own CA** (the default): a local certificate authority is made once in
//!   `data/tls/ca.pem` (key `ca.key`, mode 0600), and signs a server certificate
//!   (`server.pem`, `server.key`) for `localhost`, the host name, the listen address,
//!   `rtc.public_ip`, the machine's LAN addresses and `tls.names`. Each laptop and house box
//!   trusts the CA once (the hub prints its SHA-256 fingerprint and how); the server
//!   certificate is then renewed by the hub itself, without anyone noticing: at start and
//!   every hour it is made again when it is missing, not from this CA, [`RENEW_BEFORE`] from
//!   expiry, or when the machine's names or addresses changed.
//!
//! What must stay true: the private keys are written 0600 and never logged; a handshake
//! always gets the newest certificate (the resolver swaps it whole, under a std `RwLock`
//! never held across an `.await`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

use crate::config::Config;

/// The hub's own CA is valid this long.
const CA_VALIDITY: time::Duration = time::Duration::days(3650);
/// Its server certificates are valid this long (below the 398 days browsers accept)...
const SERVER_VALIDITY: time::Duration = time::Duration::days(90);
/// ...and made again when this close to expiry.
pub const RENEW_BEFORE: time::Duration = time::Duration::days(30);
/// How often a running hub checks its certificate.
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// Why HTTPS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written; the message names it.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key; fix or replace it.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Only one of `tls.cert` and `tls.key` is set: set both, or neither.
    #[error(
        "tls.cert and tls.key go together: set both, or neither for the hub's own certificate"
    )]
    HalfConfigured,
    /// rustls or rcgen refused the material; the message says why.
    #[error("certificate: {0}")]
    Crypto(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

fn crypto<E: std::fmt::Display>(e: E) -> TlsError {
    TlsError::Crypto(e.to_string())
}

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `tls.cert` and `tls.key`.
    Files {
        /// The chain.
        cert: PathBuf,
    },
    /// The hub's own CA in `data/tls/`.
    OwnCa {
        /// `data/tls/ca.pem`, to hand to browsers and house boxes.
        ca_pem: PathBuf,
        /// SHA-256 of the CA certificate (DER), as browsers show it: `AB:CD:…`.
        ca_fingerprint: String,
    },
}

/// HTTPS for the hub: the rustls configuration and what to tell the people who run it.
pub struct Tls {
    /// For the accept loop.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Where the certificate comes from.
    pub source: Source,
    resolver: Arc<Resolver>,
    /// For renewals of the hub's own certificate.
    own: Option<OwnCa>,
}

/// The current certificate, swapped whole on renewal.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The hub's own CA and what its server certificate must name.
struct OwnCa {
    dir: PathBuf,
    names: BTreeSet<String>,
}

impl Tls {
    /// Set up HTTPS as the settings say, making or renewing the hub's own certificate.
    pub fn start(config: &Config) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (key, source, own) = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => {
                let ck = load_files(cert, key, &provider)?;
                (ck, Source::Files { cert: cert.clone() }, None)
            }
            (None, None) => {
                let own = OwnCa {
                    dir: config.data.join("tls"),
                    names: wanted_names(config),
                };
                let (ck, fingerprint) = own.ensure(OffsetDateTime::now_utc(), &provider)?;
                let source = Source::OwnCa {
                    ca_pem: own.dir.join("ca.pem"),
                    ca_fingerprint: fingerprint,
                };
                (ck, source, Some(own))
            }
            _ => return Err(TlsError::HalfConfigured),
        };
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(key)),
        });
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(crypto)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            source,
            resolver,
            own,
        })
    }

    /// Base64 of the SHA-256 of the served certificate's public key (SubjectPublicKeyInfo):
    /// what Chromium's `--ignore-certificate-errors-spki-list` pins, and HPKP-style pins name.
    pub fn spki_sha256_base64(&self) -> String {
        use base64::Engine;
        let current = self
            .resolver
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let spki = current
            .cert
            .first()
            .and_then(|c| spki_of(c.as_ref()))
            .unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    }

    /// The served certificate chain, DER, leaf first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.resolver
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cert
            .clone()
    }

    /// The hub's own CA certificate (PEM), to hand out at `/ca.pem`; `None` with files.
    pub fn ca_pem(&self) -> Option<String> {
        let own = self.own.as_ref()?;
        std::fs::read_to_string(own.dir.join("ca.pem")).ok()
    }

    /// Renew the hub's own server certificate if it is due (see the module doc); returns
    /// whether it did. Certificates from files are left alone.
    pub fn renew_if_due(&self, config: &Config) -> Result<bool, TlsError> {
        let Some(own) = &self.own else {
            return Ok(false);
        };
        let names = wanted_names(config);
        let provider = rustls::crypto::ring::default_provider();
        let now = OffsetDateTime::now_utc();
        let current = self.chain();
        let ca = std::fs::read(own.dir.join("ca.pem")).map_err(io_err(&own.dir))?;
        let ca_der = CertificateDer::from_pem_slice(&ca).map_err(|e| TlsError::Pem {
            path: own.dir.join("ca.pem"),
            reason: e.to_string(),
        })?;
        let due = current
            .first()
            .is_none_or(|c| server_cert_due(c.as_ref(), ca_der.as_ref(), &names, now));
        if !due {
            return Ok(false);
        }
        let own = OwnCa {
            dir: own.dir.clone(),
            names,
        };
        let (ck, _) = own.ensure(now, &Arc::new(provider))?;
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
        Ok(true)
    }
}

/// Renew the hub's own certificate every [`CHECK_EVERY`] until `closing`.
pub fn spawn_renewal(
    tls: Arc<Tls>,
    config: Config,
    tasks: &tokio_util::task::TaskTracker,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    if tls.own.is_none() {
        return;
    }
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = closing.wait_for(|c| *c) => return,
            }
            let t = tls.clone();
            let c = config.clone();
            match tokio::task::spawn_blocking(move || t.renew_if_due(&c)).await {
                Ok(Ok(true)) => tracing::info!("HTTPS certificate renewed"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "HTTPS certificate renewal failed"),
                Err(e) => tracing::error!(error = %e, "HTTPS certificate renewal panicked"),
            }
        }
    });
}

fn load_files(
    cert: &Path,
    key: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Pem {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_owned(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let ck = CertifiedKey::from_der(chain, key_der, provider).map_err(crypto)?;
    Ok(ck)
}

impl OwnCa {
    /// Make the CA if there is none, and a server certificate if the one on disk is not
    /// good for `now` and `self.names`. Returns the key to serve and the CA's fingerprint.
    fn ensure(
        &self,
        now: OffsetDateTime,
        provider: &Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<(CertifiedKey, String), TlsError> {
        crate::auth::create_private_dir(&self.dir).map_err(io_err(&self.dir))?;
        let ca_pem_path = self.dir.join("ca.pem");
        let ca_key_path = self.dir.join("ca.key");
        let (ca_pem, ca_key) = match (
            std::fs::read_to_string(&ca_pem_path),
            std::fs::read_to_string(&ca_key_path),
        ) {
            (Ok(c), Ok(k)) => (c, KeyPair::from_pem(&k).map_err(crypto)?),
            _ => {
                let key = KeyPair::generate().map_err(crypto)?;
                let mut p = CertificateParams::default();
                p.distinguished_name = rcgen::DistinguishedName::new();
                p.distinguished_name
                    .push(DnType::CommonName, format!("Đình hub CA ({})", host_name()));
                p.distinguished_name.push(DnType::OrganizationName, "Đình");
                p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                p.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                p.not_before = now - time::Duration::days(1);
                p.not_after = now + CA_VALIDITY;
                p.serial_number = Some(random_serial());
                let cert = p.self_signed(&key).map_err(crypto)?;
                replace_file(&ca_key_path, key.serialize_pem().as_bytes())
                    .map_err(io_err(&ca_key_path))?;
                replace_file(&ca_pem_path, cert.pem().as_bytes()).map_err(io_err(&ca_pem_path))?;
                // A new CA: any server certificate from an older one goes.
                let _ = std::fs::remove_file(self.dir.join("server.pem"));
                (cert.pem(), key)
            }
        };
        let ca_der =
            CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| TlsError::Pem {
                path: ca_pem_path.clone(),
                reason: e.to_string(),
            })?;
        let fingerprint = fingerprint(ca_der.as_ref());
        let server_pem = self.dir.join("server.pem");
        let server_key = self.dir.join("server.key");
        let existing = std::fs::read(&server_pem)
            .ok()
            .and_then(|b| CertificateDer::from_pem_slice(&b).ok());
        let fresh = existing
            .as_ref()
            .is_some_and(|c| !server_cert_due(c.as_ref(), ca_der.as_ref(), &self.names, now))
            && server_key.exists();
        if fresh {
            if let Ok(ck) = load_files(&server_pem, &server_key, provider) {
                return Ok((ck, fingerprint));
            }
        }
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(crypto)?;
        let key = KeyPair::generate().map_err(crypto)?;
        let mut p = CertificateParams::new(self.names.iter().cloned().collect::<Vec<_>>())
            .map_err(crypto)?;
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, format!("Đình hub ({})", host_name()));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + SERVER_VALIDITY;
        p.serial_number = Some(random_serial());
        let cert = p.signed_by(&key, &issuer).map_err(crypto)?;
        replace_file(&server_key, key.serialize_pem().as_bytes()).map_err(io_err(&server_key))?;
        replace_file(&server_pem, cert.pem().as_bytes()).map_err(io_err(&server_pem))?;
        tracing::info!(
            names = self.names.len(),
            "HTTPS certificate made by the hub's own CA"
        );
        let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(crypto)?;
        let ck =
            CertifiedKey::from_der(vec![cert.der().clone()], key_der, provider).map_err(crypto)?;
        Ok((ck, fingerprint))
    }
}

fn random_serial() -> SerialNumber {
    // Positive 16-byte serial (RFC 5280 allows up to 20 octets): Firefox refuses two
    // certificates from one issuer with the same serial.
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f;
    SerialNumber::from_slice(&b)
}

/// Whether a server certificate must be made again: not issued by `ca`, expiring within
/// [`RENEW_BEFORE`] of `now`, not yet valid, or not naming exactly `names`.
pub fn server_cert_due(
    cert: &[u8],
    ca: &[u8],
    names: &BTreeSet<String>,
    now: OffsetDateTime,
) -> bool {
    use x509_parser::prelude::*;
    let (Ok((_, c)), Ok((_, ca))) = (parse_x509_certificate(cert), parse_x509_certificate(ca))
    else {
        return true;
    };
    if c.issuer().as_raw() != ca.subject().as_raw()
        || c.verify_signature(Some(ca.public_key())).is_err()
    {
        return true;
    }
    let not_after = c.validity().not_after.to_datetime();
    let not_before = c.validity().not_before.to_datetime();
    if not_after - now < RENEW_BEFORE || not_before > now {
        return true;
    }
    let mut have = BTreeSet::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => {
                    have.insert(d.to_string());
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()),
                        _ => continue,
                    };
                    have.insert(ip.to_string());
                }
                _ => {}
            }
        }
    }
    have != *names
}

fn spki_of(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(c.tbs_certificate.subject_pki.raw.to_vec())
}

/// SHA-256 of a DER certificate as browsers show it: upper-case hex pairs joined by `:`.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What the hub's own certificate names: `localhost`, the loopback addresses, the host
/// name, the listen address (unless unspecified), `rtc.public_ip`, the LAN addresses
/// (not link-local) and `tls.names`.
pub fn wanted_names(config: &Config) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let host = host_name();
    if is_dns_name(&host) {
        names.insert(host.to_ascii_lowercase());
    }
    let mut ips: Vec<IpAddr> = local_addresses();
    ips.push(config.listen.ip());
    ips.extend(config.rtc.public_ip);
    for ip in ips {
        if usable_in_certificate(ip) {
            names.insert(ip.to_string());
        }
    }
    for n in &config.tls.names {
        let n = n.trim();
        if n.parse::<IpAddr>().is_ok() || is_dns_name(n) {
            names.insert(n.to_ascii_lowercase());
        }
    }
    names
}

fn usable_in_certificate(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => !v.is_unspecified() && !v.is_link_local() && !v.is_multicast(),
        IpAddr::V6(v) => {
            !v.is_unspecified()
                && !v.is_multicast()
                && (v.segments()[0] & 0xffc0) != 0xfe80
                && v.to_ipv4_mapped().is_none()
        }
    }
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && s.parse::<IpAddr>().is_err()
}

/// The machine's host name (`/proc/sys/kernel/hostname`), or `dinh`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "dinh".to_owned())
}

/// The addresses of the machine's interfaces that are up.
pub fn local_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter(|a| a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP))
        .filter_map(|a| a.address)
        .filter_map(|s| {
            if let Some(v4) = s.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

/// Write a file readable only by its owner, replacing what was there (via a temporary file
/// and a rename, so a crash leaves the old file or the new one, never half of one).
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    crate::auth::write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        Config {
            data: dir.to_owned(),
            ..Config::default()
        }
    }

    fn temp() -> PathBuf {
        let d = std::env::temp_dir().join(format!("dinh-tls-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn makes_a_ca_once_and_a_server_certificate_it_signed() {
        let dir = temp();
        let mut cfg = config(&dir);
        cfg.tls.names = vec!["hub.xa-an-binh.vn".into(), "not a name".into()];
        let tls = Tls::start(&cfg).unwrap();
        let Source::OwnCa {
            ca_fingerprint,
            ca_pem,
        } = &tls.source
        else {
            panic!("own CA expected")
        };
        assert_eq!(ca_fingerprint.len(), 32 * 3 - 1);
        let ca = std::fs::read(ca_pem).unwrap();
        let ca_der = CertificateDer::from_pem_slice(&ca).unwrap();
        assert_eq!(*ca_fingerprint, fingerprint(ca_der.as_ref()));
        let leaf = tls.chain()[0].clone();
        let names = wanted_names(&cfg);
        assert!(names.contains("localhost") && names.contains("127.0.0.1"));
        assert!(names.contains("hub.xa-an-binh.vn"));
        assert!(!names.iter().any(|n| n.contains(' ')), "{names:?}");
        let now = OffsetDateTime::now_utc();
        assert!(!server_cert_due(
            leaf.as_ref(),
            ca_der.as_ref(),
            &names,
            now
        ));
        // Private keys are the owner's only.
        #[cfg(unix)]
        for f in ["ca.key", "server.key"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("tls").join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.join("tls"))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(mode & 0o777, 0o700);

        // A second start keeps the CA and the certificate.
        let again = Tls::start(&cfg).unwrap();
        assert_eq!(again.source, tls.source);
        assert_eq!(again.chain()[0], leaf);
        assert_eq!(again.spki_sha256_base64(), tls.spki_sha256_base64());

        // A new name (a new LAN address, say) gives a new certificate from the same CA.
        cfg.tls.names.push("10.1.2.3".into());
        let renewed = Tls::start(&cfg).unwrap();
        assert_eq!(renewed.source, tls.source);
        assert_ne!(renewed.chain()[0], leaf);
        // ...and renew_if_due on a running hub swaps it in.
        assert!(tls.renew_if_due(&cfg).unwrap() || tls.chain()[0] != leaf);
        assert!(
            !tls.renew_if_due(&cfg).unwrap(),
            "nothing due the second time"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn renewal_is_due_before_expiry_and_for_another_ca() {
        let dir = temp();
        let cfg = config(&dir);
        let tls = Tls::start(&cfg).unwrap();
        let leaf = tls.chain()[0].clone();
        let ca = std::fs::read(dir.join("tls/ca.pem")).unwrap();
        let ca_der = CertificateDer::from_pem_slice(&ca).unwrap();
        let names = wanted_names(&cfg);
        let due = |at| server_cert_due(leaf.as_ref(), ca_der.as_ref(), &names, at);
        let now = OffsetDateTime::now_utc();
        assert!(!due(now));
        assert!(due(
            now + SERVER_VALIDITY - RENEW_BEFORE + time::Duration::days(1)
        ));
        let other = temp();
        let other_tls = Tls::start(&config(&other)).unwrap();
        let other_leaf = other_tls.chain()[0].clone();
        assert!(server_cert_due(
            other_leaf.as_ref(),
            ca_der.as_ref(),
            &names,
            now
        ));
        assert!(server_cert_due(b"garbage", ca_der.as_ref(), &names, now));
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(other);
    }

    #[test]
    fn takes_a_certificate_and_key_from_files() {
        let dir = temp();
        let ck = rcgen::generate_simple_self_signed(vec!["hub.example.vn".to_owned()]).unwrap();
        std::fs::write(dir.join("c.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("k.pem"), ck.signing_key.serialize_pem()).unwrap();
        let mut cfg = config(&dir);
        cfg.tls.cert = Some(dir.join("c.pem"));
        cfg.tls.key = Some(dir.join("k.pem"));
        let tls = Tls::start(&cfg).unwrap();
        assert_eq!(tls.chain()[0], *ck.cert.der());
        assert!(!dir.join("tls").exists(), "no CA made when files are given");
        assert!(tls.ca_pem().is_none());
        cfg.tls.key = None;
        assert!(matches!(Tls::start(&cfg), Err(TlsError::HalfConfigured)));
        cfg.tls.key = Some(dir.join("c.pem"));
        let e = Tls::start(&cfg).err().unwrap().to_string();
        assert!(e.contains("c.pem"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
