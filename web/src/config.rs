//! Settings: defaults, then `dinh.toml` (or `--config FILE`), then `DINH_*` environment
//! variables (`DINH_LISTEN`, `DINH_RTC__UDP_LISTEN`: a double underscore separates levels),
//! then command-line flags.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use dinh_broadcast::config::ClusterConfig;
use dinh_sfu::keyframe::VideoCodec;

/// Everything the hub is told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listen address (pages, signalling, WHIP/WHEP, API).
    pub listen: SocketAddr,
    /// Data folder: signing key, commune directory.
    pub data: PathBuf,
    /// WebRTC transport.
    pub rtc: RtcConfig,
    /// STUN/TURN servers handed to clients.
    pub ice: IceConfig,
    /// The record: `postgres://...` to use PostgreSQL (`DINH_DATABASE_URL`); by default a
    /// SQLite file `record.sqlite` in the data folder.
    pub database_url: Option<String>,
    /// The record's checkpoints and deadlines.
    pub record: RecordConfig,
    /// The loudspeaker bridge.
    pub broadcast: BroadcastConfig,
    /// Witnessing other communes' logs (`/witness` on `dinh serve`, or `dinh witness`).
    pub witness: WitnessConfig,
    /// HTTPS on the listen address.
    pub tls: TlsConfig,
    /// Bounds on what an outsider can make the hub hold.
    pub limits: LimitsConfig,
    /// A separate plain-HTTP address serving only `/metrics` with no token (for a Prometheus
    /// on the same machine or a management network); when unset, `/metrics` on the main
    /// address needs an official's token.
    pub metrics_listen: Option<SocketAddr>,
}

/// A witness this hub sends its checkpoints to (c2sp.org/tlog-witness).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WitnessEndpoint {
    /// Its submission prefix: `add-checkpoint` is posted under it, e.g.
    /// `https://huyen.example.vn/witness`.
    pub url: String,
    /// Its cosigning key, `name+id+key` (type 0x04), as `dinh witness --public-key` prints.
    pub vkey: String,
    /// A PEM file of the CA that signed its HTTPS certificate (another hub's own CA); the
    /// public web's CAs otherwise.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// This hub as a witness of other logs.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WitnessConfig {
    /// The name in its cosignatures, a schema-less URL (default `dinh-witness/` and 16 hex
    /// digits of its key).
    pub name: Option<String>,
    /// Its cosigning key (default `DATA/witness.key`, created on first start).
    pub key_path: Option<PathBuf>,
    /// The logs it witnesses; with none, `/witness` answers 404.
    pub logs: Vec<WitnessedLog>,
}

/// A log this hub witnesses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WitnessedLog {
    /// The log's key, `origin+id+key` (type 0x01), as `dinh log public-key` prints.
    pub vkey: String,
    /// Its origin line, when it differs from the key's name.
    #[serde(default)]
    pub origin: Option<String>,
}

/// HTTPS settings. The listen address speaks both TLS and plain HTTP: plain HTTP is served
/// to loopback clients (the machine itself) and redirected to HTTPS for everyone else.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Serve HTTPS (default). Off only behind a proxy that terminates TLS: then plain HTTP is
    /// served to every client and no certificate is made.
    pub enabled: bool,
    /// A PEM certificate chain (leaf first), e.g. from the province's CA or Let's Encrypt;
    /// with `key`. When unset, the hub makes its own local CA and certificate in `data/tls/`.
    pub cert: Option<PathBuf>,
    /// The PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// More DNS names or IP addresses for the hub's own certificate, besides `localhost`, the
    /// host name, the listen address, `rtc.public_ip` and the machine's LAN addresses.
    pub names: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cert: None,
            key: None,
            names: Vec::new(),
        }
    }
}

/// Bounds on connections, requests and WHIP/WHEP sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open TCP connections in total (HTTP, WebSockets, streams). Lowered at start to what the
    /// process's open-file limit leaves room for.
    pub connections: usize,
    /// Open TCP connections from one source (an IPv4 address or an IPv6 /64). A commune
    /// behind one NAT address counts as one source: leave room for every house's browser.
    pub connections_per_source: usize,
    /// Seconds a client has to send a request's headers: from the connection's start (TLS
    /// handshake included) or from the end of its previous response. Also the idle timeout
    /// of a kept-alive connection.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body, from its headers.
    pub body_timeout_secs: u64,
    /// Seconds a write to a client may wait for it to read before the connection is closed
    /// (it stopped reading, or its link is gone without a reset).
    pub write_timeout_secs: u64,
    /// WHIP/WHEP sessions in total.
    pub sessions: usize,
    /// WHIP/WHEP sessions in one room.
    pub sessions_per_room: usize,
    /// WHIP/WHEP sessions made with one token.
    pub sessions_per_token: usize,
    /// Seconds a WHIP/WHEP session has to connect (ICE and DTLS) before it is removed.
    pub connect_timeout_secs: u64,
    /// Remote ICE candidates one WHIP/WHEP or signalling session may add by trickle, in all.
    pub trickled_candidates: usize,
    /// Writes one token may make a minute (record commands through the API, signalling
    /// actions that append), after a burst of [`Self::write_burst`].
    pub writes_per_minute: u32,
    /// Writes one token may make at once before [`Self::writes_per_minute`] applies.
    pub write_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            connections: 4096,
            connections_per_source: 256,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            write_timeout_secs: 60,
            sessions: 500,
            sessions_per_room: 300,
            sessions_per_token: 4,
            connect_timeout_secs: 30,
            trickled_candidates: 64,
            writes_per_minute: 240,
            write_burst: 60,
        }
    }
}

/// Settings of the loudspeaker bridge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BroadcastConfig {
    /// The clusters (`[[broadcast.clusters]]`).
    pub clusters: Vec<ClusterConfig>,
    /// Speech band high-pass corner, Hz.
    pub band_low_hz: f32,
    /// Speech band low-pass corner, Hz.
    pub band_high_hz: f32,
    /// Opus bitrate of the outputs, bit/s.
    pub opus_bitrate: i32,
    /// Loudness of the rooms' HTTP streams (`/broadcast/{room}/live.ogg`), LUFS.
    pub stream_target_lufs: f64,
    /// Play the chime on the clusters when a relay starts.
    pub chime: bool,
    /// A cluster that stops answering is marked down after this many seconds.
    pub quiet_after_secs: u64,
    /// Most announcement files one room may keep, MB (`DATA/announcements/ROOM/`).
    pub files_quota_mb: u64,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self {
            clusters: Vec::new(),
            band_low_hz: 150.0,
            band_high_hz: 7000.0,
            opus_bitrate: 32_000,
            stream_target_lufs: -16.0,
            chime: true,
            quiet_after_secs: 10,
            files_quota_mb: 512,
        }
    }
}

/// Settings of the record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Sign a checkpoint after this many new events...
    pub checkpoint_every: u64,
    /// ...or after this many seconds with new events.
    pub checkpoint_interval_secs: u64,
    /// Public holidays besides the fixed-date ones (Tết, Hùng Kings' day): `YYYY-MM-DD`.
    pub holidays: Vec<String>,
    /// How often to look for feedback past its deadline, seconds.
    pub overdue_check_secs: u64,
    /// The log's name, its checkpoints' origin line: a schema-less URL such as
    /// `xa-an-phu.example.vn/record` (default `dinh.local/record-` and 16 hex digits of the
    /// key). Witnesses know the log by it: do not change it once witnessed.
    pub origin: Option<String>,
    /// The checkpoint signing key (default `DATA/record.key`). Keep it off the data disk
    /// (docs/record.md, "The key"); the hub refuses to start when it is missing and the
    /// record is not empty, or when other users may read it.
    pub key_path: Option<PathBuf>,
    /// Witnesses that cosign each checkpoint (`[[record.witnesses]]`).
    pub witnesses: Vec<WitnessEndpoint>,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval_secs: 300,
            holidays: Vec::new(),
            overdue_check_secs: 60,
            origin: None,
            key_path: None,
            witnesses: Vec::new(),
        }
    }
}

impl Config {
    /// The record's signing key file.
    pub fn record_key_path(&self) -> PathBuf {
        self.record
            .key_path
            .clone()
            .unwrap_or_else(|| self.data.join("record.key"))
    }

    /// The witness's cosigning key file.
    pub fn witness_key_path(&self) -> PathBuf {
        self.witness
            .key_path
            .clone()
            .unwrap_or_else(|| self.data.join("witness.key"))
    }

    /// Where the record lives: the database URL, or the SQLite file in the data folder.
    pub fn record_target(&self) -> String {
        match &self.database_url {
            Some(u) if !u.trim().is_empty() => u.clone(),
            _ => self
                .data
                .join("record.sqlite")
                .to_string_lossy()
                .into_owned(),
        }
    }
}

/// WebRTC transport settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtcConfig {
    /// The one UDP port for all media. Port 0 picks a free one (tests).
    pub udp_listen: SocketAddr,
    /// The address clients reach, when the hub is behind NAT or bound to 0.0.0.0.
    pub public_ip: Option<IpAddr>,
    /// The one TCP port for ICE-TCP (RFC 6544), for networks that block UDP; off when unset.
    /// Candidates advertise `public_ip` when set, as for UDP.
    pub tcp_listen: Option<SocketAddr>,
    /// The rooms' video codec: `vp8` (default) or `h264` (for OBS and hardware encoders).
    pub video_codec: VideoCodec,
}

/// STUN and TURN servers for the clients.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IceConfig {
    /// STUN URLs, e.g. `stun:stun.example.vn:3478`.
    pub stun: Vec<String>,
    /// TURN URLs, e.g. `turn:turn.example.vn:3478?transport=udp`, `turns:...:5349`.
    pub turn: Vec<String>,
    /// coturn `static-auth-secret`: credentials are minted per client (REST API style).
    pub turn_secret: Option<String>,
    /// Lifetime of minted TURN credentials, seconds.
    pub turn_ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: PathBuf::from("data"),
            rtc: RtcConfig::default(),
            ice: IceConfig {
                turn_ttl_secs: 24 * 3600,
                ..IceConfig::default()
            },
            database_url: None,
            record: RecordConfig::default(),
            broadcast: BroadcastConfig::default(),
            witness: WitnessConfig::default(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            metrics_listen: None,
        }
    }
}

impl Default for RtcConfig {
    fn default() -> Self {
        Self {
            udp_listen: SocketAddr::from(([127, 0, 0, 1], 50000)),
            public_ip: None,
            tcp_listen: None,
            video_codec: VideoCodec::Vp8,
        }
    }
}

impl Config {
    /// Load: defaults, the file (`path`, or `dinh.toml` when it exists), the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut f = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) => f = f.merge(Toml::file_exact(p)),
            None => f = f.merge(Toml::file("dinh.toml")),
        }
        // Only variables that name a setting: other DINH_* variables (DINH_SKIP_BROWSER, the
        // tests' DINH_TEST_DATABASE_URL) are not the hub's settings and must not stop it.
        const TOP: [&str; 11] = [
            "listen",
            "data",
            "rtc",
            "ice",
            "database_url",
            "record",
            "broadcast",
            "witness",
            "tls",
            "limits",
            "metrics_listen",
        ];
        let env = Env::prefixed("DINH_").split("__").filter(|k| {
            let first = k.as_str().split('.').next().unwrap_or("");
            TOP.iter().any(|t| first.eq_ignore_ascii_case(t))
        });
        f.merge(env).extract().map_err(Box::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn file_and_env_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "dinh.toml",
                "listen = \"127.0.0.1:9000\"\n[rtc]\nvideo_codec = \"h264\"\n\
                 [[broadcast.clusters]]\nid = \"thon-1\"\nkind = \"rtp\"\n\
                 destination = \"239.10.0.1:5004\"\ncodec = \"pcmu\"\n",
            )?;
            jail.set_env("DINH_DATA", "/tmp/x");
            jail.set_env("DINH_SKIP_BROWSER", "1");
            jail.set_env("DINH_DATABASE_URL", "postgres://u@h/db");
            let c = Config::load(None).map_err(|e| *e)?;
            assert_eq!(c.listen.port(), 9000);
            assert_eq!(c.rtc.video_codec, VideoCodec::H264);
            assert_eq!(c.data, PathBuf::from("/tmp/x"));
            assert_eq!(c.record_target(), "postgres://u@h/db");
            assert_eq!(c.broadcast.clusters.len(), 1);
            assert_eq!(c.broadcast.clusters[0].loudness_target, -16.0);
            jail.create_file("bad.toml", "listn = 1\n")?;
            let e = Config::load(Some(Path::new("bad.toml"))).unwrap_err();
            assert!(e.to_string().contains("listn"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_example_file_is_valid_and_its_clusters_validate() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/dinh.example.toml");
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.broadcast.clusters.len(), 3);
        for cl in &c.broadcast.clusters {
            cl.validate().unwrap();
        }
    }
}
