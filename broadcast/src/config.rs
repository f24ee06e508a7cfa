//! Loudspeaker clusters as `dinh.toml` (`[[broadcast.clusters]]`) and the API describe them,
//! and their validation: a malformed cluster is refused with a message naming the field, and
//! never stops the others.

use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// How a cluster receives the meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterKind {
    /// RTP pushed to an IP paging adapter or a multicast group (wired clusters).
    Rtp,
    /// The hub is the source of a mount on an Icecast2 server.
    Icecast,
    /// A smart receiver pulls `/broadcast/clusters/{id}/live.ogg` (4G clusters).
    Http,
}

/// Audio codec of an output.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Opus, 48 kHz mono.
    #[default]
    Opus,
    /// G.711 μ-law at 8 kHz.
    Pcmu,
    /// G.711 A-law at 8 kHz.
    Pcma,
}

impl Codec {
    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Pcmu | Codec::Pcma => 8_000,
        }
    }

    /// The payload type used when none is configured (the static ones for G.711).
    pub fn default_payload_type(self) -> u8 {
        match self {
            Codec::Opus => 111,
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }
}

fn default_target() -> f64 {
    -16.0
}

fn default_ttl() -> u32 {
    16
}

/// One loudspeaker cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Id (letters, digits, `-`, `_`).
    pub id: String,
    /// Display name, e.g. "Cụm loa thôn 3".
    #[serde(default)]
    pub name: String,
    /// The room whose meeting it relays; the commune's first room when left out.
    #[serde(default)]
    pub room: Option<String>,
    /// How it receives.
    pub kind: ClusterKind,
    /// `rtp`: `HOST:PORT` (a multicast group or a unicast adapter). `icecast`:
    /// `http://HOST:PORT/MOUNT`. `http`: none.
    #[serde(default)]
    pub destination: Option<String>,
    /// Codec (`rtp` only; Icecast and HTTP carry Ogg/Opus).
    #[serde(default)]
    pub codec: Codec,
    /// RTP payload type; 111 for Opus, 0 and 8 for G.711 when left out.
    #[serde(default)]
    pub payload_type: Option<u8>,
    /// Loudness target, LUFS (EBU R128 measurement).
    #[serde(default = "default_target")]
    pub loudness_target: f64,
    /// Extra gain after levelling, dB.
    #[serde(default)]
    pub gain_db: f64,
    /// Multicast TTL, hops (1 to 255); unicast ignores it.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// The address of the interface multicast leaves by; the OS chooses when unset.
    #[serde(default)]
    pub interface: Option<Ipv4Addr>,
    /// Icecast source password; masked by the API, never written to the record.
    #[serde(default)]
    pub password: Option<String>,
    /// The receiver posts a heartbeat this often, seconds; it is marked down after 2.5 times
    /// this with none.
    #[serde(default)]
    pub heartbeat_secs: Option<u64>,
}

/// Why a cluster configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field is wrong; the message names it and says what is expected.
    #[error("cluster '{id}': {field}: {message}")]
    Invalid {
        /// Cluster id.
        id: String,
        /// The field's name in `dinh.toml` and the API.
        field: &'static str,
        /// What is expected.
        message: String,
    },
}

/// Where an Icecast mount is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcecastTarget {
    /// `HOST:PORT`.
    pub host: String,
    /// Mount, starting with `/`.
    pub mount: String,
}

/// A checked destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// RTP to an address.
    Rtp(SocketAddr),
    /// Icecast mount.
    Icecast(IcecastTarget),
    /// Pulled over HTTP.
    Pull,
}

/// A valid id: 1 to 64 of letters, digits, `-`, `_`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl ClusterConfig {
    /// Check every field; return the destination.
    pub fn validate(&self) -> Result<Destination, ConfigError> {
        let bad = |field, message: &str| ConfigError::Invalid {
            id: self.id.clone(),
            field,
            message: message.to_owned(),
        };
        if !valid_id(&self.id) {
            return Err(bad("id", "1 to 64 letters, digits, '-' or '_'"));
        }
        if !(-40.0..=-5.0).contains(&self.loudness_target) {
            return Err(bad("loudness_target", "between -40 and -5 LUFS"));
        }
        if !(-30.0..=20.0).contains(&self.gain_db) {
            return Err(bad("gain_db", "between -30 and +20 dB"));
        }
        if self.heartbeat_secs == Some(0) {
            return Err(bad("heartbeat_secs", "at least 1 second"));
        }
        match self.kind {
            ClusterKind::Rtp => {
                let d = self
                    .destination
                    .as_deref()
                    .ok_or_else(|| bad("destination", "HOST:PORT is required for rtp"))?;
                let addr: SocketAddr = d.parse().map_err(|_| {
                    bad(
                        "destination",
                        "an IP address and port, e.g. 239.10.0.1:5004",
                    )
                })?;
                if addr.port() == 0 {
                    return Err(bad("destination", "port 0 is not a destination"));
                }
                if let Some(pt) = self.payload_type {
                    if pt > 127 || (self.codec == Codec::Opus && pt < 96) {
                        return Err(bad("payload_type", "96 to 127 for Opus"));
                    }
                }
                if !(1..=255).contains(&self.ttl) {
                    return Err(bad("ttl", "1 to 255"));
                }
                Ok(Destination::Rtp(addr))
            }
            ClusterKind::Icecast => {
                if self.codec != Codec::Opus {
                    return Err(bad("codec", "Icecast mounts carry Ogg/Opus"));
                }
                let d = self
                    .destination
                    .as_deref()
                    .ok_or_else(|| bad("destination", "http://HOST:PORT/MOUNT is required"))?;
                let rest = d
                    .strip_prefix("http://")
                    .ok_or_else(|| bad("destination", "must start with http://"))?;
                let (host, mount) = rest.split_once('/').ok_or_else(|| {
                    bad("destination", "must name a mount: http://HOST:PORT/MOUNT")
                })?;
                if host.is_empty() || mount.is_empty() || mount.contains(char::is_whitespace) {
                    return Err(bad("destination", "must be http://HOST:PORT/MOUNT"));
                }
                let host = if host.contains(':') {
                    host.to_owned()
                } else {
                    format!("{host}:8000")
                };
                if self.password.as_deref().is_none_or(str::is_empty) {
                    return Err(bad("password", "the mount's source password is required"));
                }
                Ok(Destination::Icecast(IcecastTarget {
                    host,
                    mount: format!("/{mount}"),
                }))
            }
            ClusterKind::Http => {
                if self.codec != Codec::Opus {
                    return Err(bad("codec", "HTTP streams carry Ogg/Opus"));
                }
                Ok(Destination::Pull)
            }
        }
    }

    /// The payload type to send.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
            .unwrap_or_else(|| self.codec.default_payload_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_like: &str) -> ClusterConfig {
        serde_json::from_str(toml_like).unwrap()
    }

    #[test]
    fn good_clusters_validate() {
        let c =
            parse(r#"{"id":"thon-1","kind":"rtp","destination":"239.10.0.1:5004","codec":"pcmu"}"#);
        assert_eq!(
            c.validate(),
            Ok(Destination::Rtp("239.10.0.1:5004".parse().unwrap()))
        );
        assert_eq!(c.payload_type(), 0);
        assert_eq!(c.loudness_target, -16.0);
        let c = parse(
            r#"{"id":"ice","kind":"icecast","destination":"http://127.0.0.1/loa","password":"x"}"#,
        );
        assert_eq!(
            c.validate(),
            Ok(Destination::Icecast(IcecastTarget {
                host: "127.0.0.1:8000".into(),
                mount: "/loa".into()
            }))
        );
    }

    #[test]
    fn bad_clusters_name_the_field() {
        let cases = [
            (r#"{"id":"a b","kind":"http"}"#, "id"),
            (r#"{"id":"a","kind":"rtp"}"#, "destination"),
            (
                r#"{"id":"a","kind":"rtp","destination":"nowhere"}"#,
                "destination",
            ),
            (
                r#"{"id":"a","kind":"rtp","destination":"10.0.0.1:0"}"#,
                "destination",
            ),
            (
                r#"{"id":"a","kind":"rtp","destination":"10.0.0.1:5004","payload_type":12}"#,
                "payload_type",
            ),
            (
                r#"{"id":"a","kind":"http","loudness_target":3}"#,
                "loudness_target",
            ),
            (
                r#"{"id":"a","kind":"icecast","destination":"http://h:8000/m"}"#,
                "password",
            ),
            (
                r#"{"id":"a","kind":"icecast","destination":"ftp://h/m","password":"p"}"#,
                "destination",
            ),
            (r#"{"id":"a","kind":"http","codec":"pcma"}"#, "codec"),
        ];
        for (json, field) in cases {
            match parse(json).validate() {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }
}
