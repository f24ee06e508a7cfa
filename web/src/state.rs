//! The hub's shared state ([`AppState`]): the SFU, the record, the bridge, the keys and the
//! bounds, started together by [`AppState::start`] and reached by every handler.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};

use crate::auth::{AuthError, Claims, Keys};
use crate::commune::Commune;
use crate::config::Config;
use crate::error::AppError;
use dinh_sfu::mux::{tcp::TcpMux, UdpMux};
use dinh_sfu::room::{Room, Sfu, SfuConfig};
use dinh_sfu::sdp::CandidatePolicy;
use dinh_sfu::signal::IceServer;

use crate::{
    auth, limits, loudspeakers, official, rate, recording, server, tls, tokens, whip, witness,
};

/// Shared state of the hub.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
pub struct Inner {
    /// The rooms' media: sessions, forwarding, the floor as the SFU decides it.
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

/// Handlers that need only the record take `State<Arc<Recording>>`: what they can touch is
/// what their signature says.
impl axum::extract::FromRef<AppState> for Arc<recording::Recording> {
    fn from_ref(s: &AppState) -> Self {
        s.recording.clone()
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
        let revoked = tokens::DenyList::new(deny.revoked());
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

    /// Completes when the hub shuts down, or when the token of `claims` is revoked or
    /// expires: an event stream or a live stream opened with that token ends with it, as a
    /// WebSocket does.
    pub fn token_lifetime(&self, claims: &Claims) -> impl std::future::Future<Output = ()> + Send {
        let mut closing = self.closing.subscribe();
        let mut revocations = self.revoked.subscribe();
        let state = self.clone();
        let (jti, room) = (claims.jti.clone(), claims.room.clone());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let expiry =
            tokio::time::Instant::now() + Duration::from_secs(claims.exp.saturating_sub(now));
        async move {
            loop {
                tokio::select! {
                    _ = closing.wait_for(|c| *c) => return,
                    _ = tokio::time::sleep_until(expiry) => return,
                    r = revocations.changed() => {
                        if r.is_err() || state.revoked.contains(&jti, &room) {
                            return;
                        }
                    }
                }
            }
        }
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
        if self.revoked.contains(&claims.jti, &claims.room) {
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
