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
//! - [`tokens`]: the deny list of revoked tokens and `POST /api/tokens/revoke`.
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
mod extract;
pub mod integrity;
pub mod limits;
pub mod loudspeakers;
pub mod notices;
pub mod official;
mod pages;
pub mod phone;
pub mod rate;
pub mod recording;
pub mod server;
pub mod tls;
pub mod tokens;
pub mod whip;
pub mod witness;
pub mod ws;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use auth::{AuthError, Caller, Claims, Keys, Role};
use commune::Commune;
use config::Config;
use dinh_sfu::mux::{tcp::TcpMux, UdpMux};
use dinh_sfu::room::{Room, Sfu, SfuConfig};
use dinh_sfu::sdp::CandidatePolicy;
use dinh_sfu::signal::IceServer;
use error::AppError;

pub use server::run;

/// Shared state of the hub.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
pub struct Inner {
    /// The SFU.
    pub sfu: Arc<Sfu>,
    /// Token keys.
    pub keys: Keys,
    /// Settings.
    pub config: Config,
    /// Rooms and houses.
    pub commune: Commune,
    /// The meeting record.
    pub recording: Arc<recording::Recording>,
    /// The loudspeaker bridge.
    pub bridge: dinh_broadcast::bridge::Bridge,
    /// What the officials' routes keep between requests.
    pub official: official::OfficialState,
    /// This hub as a witness of other logs, when `[[witness.logs]]` names any.
    pub witness: Option<Arc<witness::WitnessService>>,
    /// The WHIP/WHEP sessions, their owners and caps.
    pub sessions: whip::Sessions,
    /// HTTPS, unless `tls.enabled` is off.
    pub tls: Option<Arc<tls::Tls>>,
    /// The open TCP connections and their caps.
    pub conns: Arc<limits::Conns>,
    /// Revoked token ids.
    pub revoked: tokens::DenyList,
    /// Per-token write rates.
    pub rates: rate::Rates,
    /// The hub's background tasks (projector, checkpointer, room watchers, the bridge's
    /// followers, sweepers): they end on `closing`, and [`server::run`] waits for them.
    pub tasks: tokio_util::task::TaskTracker,
    /// Set when the hub shuts down; long-lived handlers (WebSockets) end on it.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// The shared ICE-TCP port, when `rtc.tcp_listen` is set.
    pub tcp: Option<Arc<TcpMux>>,
    mux_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.mux_tasks {
            t.abort();
        }
    }
}

impl AppState {
    /// Open the data folder (creating it 0700, the key and the demo commune on first start),
    /// make or load the HTTPS certificate, bind the media port, and start the SFU.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        auth::create_private_dir(&config.data).map_err(|e| {
            anyhow::anyhow!("cannot create data folder {}: {e}", config.data.display())
        })?;
        let tls = if config.tls.enabled {
            let c = config.clone();
            let t = tokio::task::spawn_blocking(move || tls::Tls::start(&c))
                .await?
                .map_err(|e| anyhow::anyhow!("HTTPS: {e}"))?;
            Some(Arc::new(t))
        } else {
            None
        };
        let l = &config.limits;
        // Room for the record, the media ports, loudspeaker sockets and files besides.
        let total = server::connections_cap(l.connections, 256);
        if total < l.connections {
            tracing::warn!(
                configured = l.connections,
                cap = total,
                "limits.connections lowered to what the open-file limit allows (raise LimitNOFILE)"
            );
        }
        let conns = limits::Conns::new(limits::ConnLimits {
            total,
            per_source: l.connections_per_source.min(total),
        });
        let sessions = whip::Sessions::new(whip::SessionLimits {
            total: l.sessions,
            per_room: l.sessions_per_room,
            per_token: l.sessions_per_token,
            connect_timeout: Duration::from_secs(l.connect_timeout_secs.max(1)),
            trickled: l.trickled_candidates,
        });
        let keys = Keys::load_or_create(&config.data)?;
        let commune = Commune::load_or_create(&config.data)?;
        let mux = UdpMux::bind(config.rtc.udp_listen, config.rtc.public_ip)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot bind media port {}: {e}", config.rtc.udp_listen)
            })?;
        let mut mux_tasks = vec![tokio::spawn(mux.clone().run())];
        let tcp = match config.rtc.tcp_listen {
            Some(addr) => {
                let tcp = TcpMux::bind(addr, config.rtc.public_ip, &mux)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot bind ICE-TCP port {addr}: {e}"))?;
                mux_tasks.push(tokio::spawn(tcp.clone().run()));
                Some(tcp)
            }
            None => None,
        };
        let sfu = Sfu::new(
            mux,
            SfuConfig {
                video_codec: config.rtc.video_codec,
                ..SfuConfig::default()
            },
        );
        for r in &commune.rooms {
            sfu.room(&r.id).set_directory(
                r.houses
                    .iter()
                    .map(|h| (h.id.clone(), h.name.clone()))
                    .collect(),
            );
        }
        let recording = recording::Recording::open(&config).await?;
        // The record (SQLite creates it with the default umask) and anything else in the data
        // folder: the owner's only, outside systemd's UMask too.
        if let Err(e) = auth::tighten(&config.data) {
            tracing::warn!(error = %e, "cannot restrict the data folder's files to their owner");
        }
        let closing = tokio::sync::watch::channel(false).0;
        // Every background task: they end on `closing`, and shutdown waits for them.
        let tasks = tokio_util::task::TaskTracker::new();
        recording.spawn_tasks(&config, &tasks, closing.subscribe());
        for r in &commune.rooms {
            let room = sfu.room(&r.id);
            recording.restore_room(&room).await;
            recording.watch_room(room, &tasks, closing.subscribe());
        }
        let bridge = start_bridge(&config, &commune, &sfu, &recording, &tasks, &closing).await?;
        let deny = recording
            .record
            .load_deny_list()
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the token deny list: {e}"))?;
        let revoked = tokens::DenyList::new(deny.revoked().map(str::to_owned));
        if let Some(t) = &tls {
            tls::spawn_renewal(t.clone(), config.clone(), &tasks, closing.subscribe());
        }
        let rates = rate::Rates::new(config.limits.writes_per_minute, config.limits.write_burst);
        let witness = witness::WitnessService::open(&config).await?;
        let state = Self(Arc::new(Inner {
            sfu,
            keys,
            config,
            commune,
            recording,
            bridge,
            official: official::OfficialState::default(),
            witness,
            sessions,
            tls,
            conns,
            revoked,
            rates,
            tasks,
            closing,
            tcp,
            mux_tasks,
        }));
        whip::spawn_sweeper(state.clone(), state.closing.subscribe());
        Ok(state)
    }

    /// The room `id`, if the commune has it.
    pub fn room(&self, id: &str) -> Result<Arc<Room>, AppError> {
        if self.commune.room(id).is_none() {
            return Err(AppError::new(
                StatusCode::NOT_FOUND,
                "no_such_room",
                format!("there is no room '{id}'"),
            ));
        }
        Ok(self.sfu.room(id))
    }

    /// Check the bearer token of a request (header, or `token` in the query), whatever its
    /// room.
    pub fn claims(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<Claims, AuthError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .or(query_token)
            .ok_or(AuthError::Missing)?;
        let claims = self.keys.verify(token.trim())?;
        if self.revoked.contains(&claims.jti) {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    /// Which remote ICE candidates the hub sends checks to: loopback or link-local ones only
    /// when its own media addresses are.
    pub fn candidate_policy(&self) -> CandidatePolicy {
        let mut addrs = vec![self.sfu.mux().advertised_addr().ip()];
        if let Some(t) = &self.tcp {
            addrs.push(t.advertised_addr().ip());
        }
        CandidatePolicy::for_hub(&addrs)
    }

    /// End every WHIP/WHEP session (at shutdown).
    pub async fn close_sessions(&self) {
        self.sessions.close_all().await;
    }

    /// Check the bearer token of a request (header, or `token` in the query) for `room`.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        room: &str,
    ) -> Result<Claims, AuthError> {
        let claims = self.claims(headers, query_token)?;
        claims.for_room(room)?;
        Ok(claims)
    }

    /// STUN/TURN servers for one client, with fresh TURN credentials.
    pub fn ice_servers(&self, who: &str) -> Vec<IceServer> {
        let ice = &self.config.ice;
        let mut out = Vec::new();
        if !ice.stun.is_empty() {
            out.push(IceServer {
                urls: ice.stun.clone(),
                username: None,
                credential: None,
            });
        }
        if !ice.turn.is_empty() {
            let (username, credential) = match &ice.turn_secret {
                Some(secret) => {
                    let (u, c) =
                        auth::turn_credentials(secret, who, Duration::from_secs(ice.turn_ttl_secs));
                    (Some(u), Some(c))
                }
                None => (None, None),
            };
            out.push(IceServer {
                urls: ice.turn.clone(),
                username,
                credential,
            });
        }
        out
    }
}

/// Start the loudspeaker bridge: a stream per room, the configured clusters (one that is
/// refused is logged and left out; the others start), the taps on the rooms' audio, then
/// the rest rebuilt from the record (clusters added through the API, the relay, scheduled
/// announcements) and followed from there.
async fn start_bridge(
    config: &Config,
    commune: &Commune,
    sfu: &Arc<Sfu>,
    recording: &Arc<recording::Recording>,
    tasks: &tokio_util::task::TaskTracker,
    closing: &tokio::sync::watch::Sender<bool>,
) -> anyhow::Result<dinh_broadcast::bridge::Bridge> {
    use dinh_broadcast::bridge::{Bridge, BridgeSettings};
    let b = &config.broadcast;
    let settings = BridgeSettings {
        engine: dinh_broadcast::engine::EngineSettings {
            band_low_hz: b.band_low_hz,
            band_high_hz: b.band_high_hz,
            opus_bitrate: b.opus_bitrate,
            ..Default::default()
        },
        programme: dinh_broadcast::programme::ProgrammeSettings {
            chime: b.chime,
            ..Default::default()
        },
        files: dinh_broadcast::files::FileSettings {
            dir: config.data.join("announcements"),
            quota_bytes: b.files_quota_mb.saturating_mul(1024 * 1024),
            ..Default::default()
        },
        quiet_after: Duration::from_secs(b.quiet_after_secs.max(1)),
        stream_target_lufs: b.stream_target_lufs,
    };
    let bridge = Bridge::start(settings, closing.subscribe())
        .map_err(|e| anyhow::anyhow!("broadcast settings: {e}"))?;
    // Subscribed before anything can happen, so that no fact of the bridge goes unrecorded.
    loudspeakers::record_events(&bridge, recording.clone(), tasks, closing.subscribe());
    for r in &commune.rooms {
        bridge.add_room(&r.id, &r.title).await;
        loudspeakers::tap_room(bridge.clone(), sfu.room(&r.id), tasks, closing.subscribe());
    }
    let default_room = commune
        .rooms
        .first()
        .map(|r| r.id.clone())
        .unwrap_or_default();
    for c in &b.clusters {
        let room = c.room.clone().unwrap_or_else(|| default_room.clone());
        if commune.room(&room).is_none() {
            tracing::error!(cluster = %c.id, %room, "cluster not started: the commune has no such room");
            continue;
        }
        if let Err(e) = bridge.add_cluster(c.clone(), &room).await {
            tracing::error!(error = %e, "cluster not started");
        }
    }
    let rooms: Vec<String> = commune.rooms.iter().map(|r| r.id.clone()).collect();
    loudspeakers::restore_and_follow(
        &bridge,
        recording.clone(),
        config,
        &rooms,
        tasks,
        closing.subscribe(),
    )
    .await?;
    Ok(bridge)
}

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
        .route("/metrics", get(metrics_with_token))
        .route("/ca.pem", get(ca_pem))
        .layer(DefaultBodyLimit::max(dinh_sfu::sdp::MAX_SDP_BYTES))
        .with_state(state)
        .layer(axum::middleware::from_fn(server::security_layer))
}

/// The router of `metrics_listen`: `/metrics` with no token, and nothing else.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
        .layer(axum::middleware::from_fn(server::security_layer))
}

/// `/metrics` on the main address: for an official's token (a Prometheus job carries one as
/// its bearer token), unless the metrics have their own address.
async fn metrics_with_token(
    state: State<AppState>,
    Caller(c): Caller,
) -> Result<axum::response::Response, AppError> {
    c.require(&[Role::Official], "read the metrics")?;
    Ok(metrics(state).await.into_response())
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

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let st = &s.sfu.stats;
    let m = &s.sfu.mux().stats;
    let tcp = s.tcp.as_ref().map(|t| &t.stats);
    let b = s.bridge.stats();
    let clusters = s.bridge.clusters().await;
    let count = |status: &str| {
        clusters
            .iter()
            .filter(|c| {
                c.health
                    .as_ref()
                    .is_some_and(|h| h.status.as_str() == status)
            })
            .count()
    };
    let inputs = s.bridge.input_stats().await;
    let sum = |f: fn(&dinh_broadcast::jitter::InputStats) -> u64| -> u64 {
        inputs.iter().map(|(_, i)| f(i)).sum()
    };
    let bridge = format!(
        "# TYPE dinh_broadcast_rtp_sent_total counter\ndinh_broadcast_rtp_sent_total {}\n\
# TYPE dinh_broadcast_rtp_errors_total counter\ndinh_broadcast_rtp_errors_total {}\n\
# TYPE dinh_broadcast_ogg_pages_total counter\ndinh_broadcast_ogg_pages_total {}\n\
# TYPE dinh_broadcast_encodes_total counter\ndinh_broadcast_encodes_total {}\n\
# TYPE dinh_broadcast_clusters gauge\n\
dinh_broadcast_clusters{{status=\"up\"}} {}\n\
dinh_broadcast_clusters{{status=\"down\"}} {}\n\
dinh_broadcast_clusters{{status=\"unknown\"}} {}\n\
# TYPE dinh_broadcast_input_packets_total counter\n\
dinh_broadcast_input_packets_total{{outcome=\"decoded\"}} {}\n\
dinh_broadcast_input_packets_total{{outcome=\"fec\"}} {}\n\
dinh_broadcast_input_packets_total{{outcome=\"concealed\"}} {}\n\
dinh_broadcast_input_packets_total{{outcome=\"dropped\"}} {}\n",
        b.rtp_sent.load(Ordering::Relaxed),
        b.rtp_errors.load(Ordering::Relaxed),
        b.pages.load(Ordering::Relaxed),
        b.encodes.load(Ordering::Relaxed),
        count("up"),
        count("down"),
        count("unknown"),
        sum(|i| i.decoded),
        sum(|i| i.fec),
        sum(|i| i.concealed),
        sum(|i| i.dropped),
    );
    // The forwarding latency as a Prometheus histogram: cumulative buckets up to the last
    // one that has counts.
    let counts = st.forward_latency.snapshot();
    let last = counts.iter().rposition(|c| *c > 0).unwrap_or(0);
    let mut latency = String::from("# TYPE dinh_forward_latency_us histogram\n");
    let mut cumulative = 0u64;
    for (b, c) in counts.iter().enumerate().take(last + 1) {
        cumulative += c;
        latency.push_str(&format!(
            "dinh_forward_latency_us_bucket{{le=\"{}\"}} {cumulative}\n",
            dinh_sfu::histogram::upper_bound(b)
        ));
    }
    latency.push_str(&format!(
        "dinh_forward_latency_us_bucket{{le=\"+Inf\"}} {cumulative}\ndinh_forward_latency_us_count {cumulative}\n"
    ));
    let body = format!(
        "# TYPE dinh_sessions gauge\ndinh_sessions {}\n\
# TYPE dinh_rtp_received_total counter\ndinh_rtp_received_total {}\n\
# TYPE dinh_rtp_forwarded_total counter\ndinh_rtp_forwarded_total {}\n\
# TYPE dinh_rtp_lagged_total counter\ndinh_rtp_lagged_total {}\n\
# TYPE dinh_keyframe_requests_total counter\ndinh_keyframe_requests_total {}\n\
# TYPE dinh_udp_unroutable_total counter\ndinh_udp_unroutable_total {}\n\
# TYPE dinh_udp_overflow_total counter\ndinh_udp_overflow_total {}\n\
# TYPE dinh_tcp_routed_total counter\ndinh_tcp_routed_total {}\n\
# TYPE dinh_tcp_refused_total counter\ndinh_tcp_refused_total {}\n\
# TYPE dinh_http_connections gauge\ndinh_http_connections {}\n\
# TYPE dinh_http_connections_total counter\ndinh_http_connections_total {}\n\
# TYPE dinh_http_connections_refused_total counter\n\
dinh_http_connections_refused_total{{cap=\"source\"}} {}\n\
dinh_http_connections_refused_total{{cap=\"total\"}} {}\n\
# TYPE dinh_http_connections_evicted_total counter\ndinh_http_connections_evicted_total {}\n\
# TYPE dinh_http_timeouts_total counter\ndinh_http_timeouts_total {}\n\
# TYPE dinh_whip_sessions gauge\ndinh_whip_sessions {}\n\
# TYPE dinh_tokens_revoked gauge\ndinh_tokens_revoked {}\n",
        st.sessions.load(Ordering::Relaxed),
        st.received.load(Ordering::Relaxed),
        st.forwarded.load(Ordering::Relaxed),
        st.lagged.load(Ordering::Relaxed),
        st.keyframe_requests.load(Ordering::Relaxed),
        m.unroutable.load(Ordering::Relaxed),
        m.overflow.load(Ordering::Relaxed),
        tcp.map_or(0, |t| t.routed.load(Ordering::Relaxed)),
        tcp.map_or(0, |t| t.refused.load(Ordering::Relaxed)),
        s.conns.open(),
        s.conns.stats.accepted.load(Ordering::Relaxed),
        s.conns.stats.refused_source.load(Ordering::Relaxed),
        s.conns.stats.refused_total.load(Ordering::Relaxed),
        s.conns.stats.evicted.load(Ordering::Relaxed),
        s.conns.stats.timed_out.load(Ordering::Relaxed),
        s.sessions.len(),
        s.revoked.len(),
    ) + &latency
        + &bridge
        + &integrity::metrics(&s);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
