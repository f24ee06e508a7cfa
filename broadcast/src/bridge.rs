//! The driver around the [`Engine`]: one task owns the engine, the health core and every
//! output's transport, and moves data between them and the world every 20 ms (STYLE habit 2).
//! Everything else talks to it through [`Bridge`], a cheap handle.
//!
//! Outputs:
//! - RTP clusters: one UDP socket each, connected to the destination (unicast, or a multicast
//!   group with its TTL and interface). The socket also receives: RTCP receiver reports sent
//!   back to it, and the ICMP errors a connected socket surfaces, are the cluster's health.
//! - Ogg outputs (the rooms' HTTP streams, pull clusters, Icecast mounts): one
//!   [`OggPager`], whose pages go to a broadcast channel for HTTP listeners and to a source
//!   task for Icecast.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::clip::Clip;
use crate::config::{ClusterConfig, ClusterKind, ConfigError, Destination};
use crate::engine::{
    Announcement, Engine, EngineError, EngineSettings, FeedKey, Format, OutputSpec, Priority,
    Source, Targets, Voice,
};
use crate::health::{Change, Evidence, Health, Report, Status};
use crate::jitter::InputStats;
use crate::ogg::OggPager;
use crate::rtp::{reception_reports, RtpStream};

/// Errors of the bridge's commands.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The cluster configuration is wrong; the message names the field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Refused by the engine (an id taken, a target that does not exist).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// No cluster with that id.
    #[error("there is no cluster '{0}'")]
    NoSuchCluster(String),
    /// No stream for that room or cluster.
    #[error("there is no stream '{0}'")]
    NoSuchStream(String),
    /// The destination cannot be used (no socket for it, a bad interface).
    #[error("cluster '{id}': cannot open its socket: {message}")]
    Socket {
        /// Cluster.
        id: String,
        /// The OS's reason.
        message: String,
    },
    /// The bridge has stopped.
    #[error("the loudspeaker bridge is not running")]
    Stopped,
}

/// Bridge settings.
#[derive(Debug, Clone)]
pub struct BridgeSettings {
    /// The DSP chain.
    pub engine: EngineSettings,
    /// Quiet this long (no reports, heartbeats or listeners where they were expected): down.
    pub quiet_after: Duration,
    /// Loudness of the rooms' HTTP streams, LUFS.
    pub stream_target_lufs: f64,
    /// Play the chime on the clusters when a room's relay starts.
    pub chime: bool,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        Self {
            engine: EngineSettings::default(),
            quiet_after: Duration::from_secs(10),
            stream_target_lufs: -16.0,
            chime: true,
        }
    }
}

/// What the bridge tells the rest of the hub (to record and to show).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BridgeEvent {
    /// A cluster changed status.
    ClusterStatus {
        /// Cluster.
        cluster: String,
        /// Its room.
        room: String,
        /// New status.
        status: Status,
        /// Why.
        reason: String,
    },
    /// A room's relay to its clusters started or stopped.
    Relay {
        /// Room.
        room: String,
        /// Running now.
        on: bool,
    },
    /// An announcement started.
    AnnouncementStarted {
        /// Id.
        id: String,
        /// Priority.
        priority: Priority,
        /// The clusters it plays on (empty: every output).
        clusters: Vec<String>,
        /// What it plays: a file name, or `live:ROOM`.
        source: String,
        /// Who asked for it (`role:id`).
        requested_by: String,
        /// The rooms whose outputs it plays on.
        rooms: Vec<String>,
    },
    /// An announcement ended.
    AnnouncementEnded {
        /// Id.
        id: String,
        /// `played` (to the end) or `stopped`.
        how: String,
        /// The rooms whose outputs it played on.
        rooms: Vec<String>,
    },
}

/// An announcement asked for.
#[derive(Debug, Clone)]
pub struct AnnounceRequest {
    /// Id; one is made up when empty.
    pub id: String,
    /// Priority.
    pub priority: Priority,
    /// Audio, and its name for the record.
    pub source: (Source, String),
    /// Cluster ids; empty means every output.
    pub clusters: Vec<String>,
    /// Chime first.
    pub chime: bool,
    /// Play later at this time (a scheduled broadcast); now when `None`.
    pub at: Option<SystemTime>,
    /// Who asked (`role:id`), for the record.
    pub requested_by: String,
}

/// A cluster as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// Configuration.
    #[serde(flatten)]
    pub config: ClusterConfig,
    /// Health.
    pub health: Option<Report>,
    /// What it plays now: `meeting`, `announcement:ID`, `silence` or `nothing`.
    pub playing: String,
}

/// A scheduled broadcast as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduledView {
    /// Id.
    pub id: String,
    /// When, seconds since the Unix epoch.
    pub at_unix: u64,
    /// Priority.
    pub priority: Priority,
    /// Clusters (empty: all).
    pub clusters: Vec<String>,
    /// File.
    pub source: String,
}

/// Counters, and the latency samples the benchmark reads.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Ticks run.
    pub ticks: AtomicU64,
    /// RTP packets sent.
    pub rtp_sent: AtomicU64,
    /// RTP sends the OS refused.
    pub rtp_errors: AtomicU64,
    /// Ogg pages written.
    pub pages: AtomicU64,
    /// Frames encoded.
    pub encodes: AtomicU64,
    latency_us: Mutex<Vec<u32>>,
}

impl BridgeStats {
    /// Take the latency samples gathered so far (µs from a meeting packet reaching the hub to
    /// its audio leaving on an RTP output).
    pub fn take_latencies(&self) -> Vec<u32> {
        std::mem::take(&mut *self.latency_us.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The pages of one Ogg output, shared with its HTTP listeners.
#[derive(Debug)]
struct OggShared {
    pages: broadcast::Sender<Bytes>,
    headers: Bytes,
    listeners: AtomicU32,
}

/// An HTTP listener: the header pages, then every page from now on.
#[derive(Debug)]
pub struct Listener {
    /// Send these first.
    pub headers: Bytes,
    /// Then these. A listener too slow to keep up skips ahead (`Lagged`).
    pub pages: broadcast::Receiver<Bytes>,
    guard: ListenerGuard,
}

impl Listener {
    /// Split into headers, pages and the guard that counts the listener while it lives.
    pub fn into_parts(self) -> (Bytes, broadcast::Receiver<Bytes>, ListenerGuard) {
        (self.headers, self.pages, self.guard)
    }
}

/// Counts a listener while it lives.
#[derive(Debug)]
pub struct ListenerGuard(Arc<OggShared>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

type Reply<T> = oneshot::Sender<Result<T, BridgeError>>;

enum Cmd {
    Push(String, Voice, u16, Bytes, Instant),
    Relay(String, bool),
    AddRoom(String, String),
    AddCluster(Box<ClusterConfig>, String, Reply<()>),
    RemoveCluster(String, Reply<()>),
    Announce(Box<AnnounceRequest>, Reply<String>),
    Stop(String, Reply<()>),
    Heartbeat(String, bool, Option<u8>, Option<String>, Reply<()>),
    Evidence(String, Evidence),
    Clusters(oneshot::Sender<Vec<ClusterView>>),
    Scheduled(oneshot::Sender<Vec<ScheduledView>>),
    Relays(oneshot::Sender<Vec<String>>),
    Inputs(oneshot::Sender<Vec<(String, InputStats)>>),
}

/// A handle on the bridge.
#[derive(Clone)]
pub struct Bridge {
    tx: mpsc::UnboundedSender<Cmd>,
    streams: Arc<Mutex<HashMap<String, Arc<OggShared>>>>,
    events: broadcast::Sender<BridgeEvent>,
    stats: Arc<BridgeStats>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bridge")
    }
}

/// The id of a room's HTTP stream output.
pub fn room_output(room: &str) -> String {
    format!("room:{room}")
}

impl Bridge {
    /// Start the bridge's task; it ends when `stop` turns true.
    pub fn start(
        settings: BridgeSettings,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, BridgeError> {
        let engine = Engine::new(settings.engine)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let bridge = Self {
            tx: tx.clone(),
            streams: Arc::new(Mutex::new(HashMap::new())),
            events: broadcast::channel(256).0,
            stats: Arc::new(BridgeStats::default()),
        };
        let driver = Driver {
            engine,
            health: Health::new(settings.quiet_after),
            settings,
            outputs: HashMap::new(),
            clusters: BTreeMap::new(),
            schedules: Vec::new(),
            tick: 0,
            next_id: 0,
            self_tx: tx,
            bridge: bridge.clone(),
            stop: stop.clone(),
            sources: HashMap::new(),
        };
        tokio::spawn(driver.run(rx, stop));
        Ok(bridge)
    }

    fn send(&self, cmd: Cmd) -> Result<(), BridgeError> {
        self.tx.send(cmd).map_err(|_| BridgeError::Stopped)
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, BridgeError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| BridgeError::Stopped)?
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<BridgeStats> {
        &self.stats
    }

    /// Follow what happens (status changes, announcements).
    pub fn events(&self) -> broadcast::Receiver<BridgeEvent> {
        self.events.subscribe()
    }

    /// A packet of a room's voice (the SFU's slot stream: sequence numbers continue across
    /// speakers). `received` is when it reached the hub.
    pub fn push(&self, room: &str, voice: Voice, seq: u16, payload: Bytes, received: Instant) {
        let _ = self.send(Cmd::Push(room.to_owned(), voice, seq, payload, received));
    }

    /// Give a room its HTTP stream (`room:ROOM`).
    pub fn add_room(&self, room: &str, title: &str) {
        self.ensure_stream(&room_output(room), title);
        let _ = self.send(Cmd::AddRoom(room.to_owned(), title.to_owned()));
    }

    fn ensure_stream(&self, id: &str, title: &str) -> Arc<OggShared> {
        let mut s = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        s.entry(id.to_owned())
            .or_insert_with(|| {
                let pager = pager_for(id, title);
                Arc::new(OggShared {
                    pages: broadcast::channel(64).0,
                    headers: pager.headers(),
                    listeners: AtomicU32::new(0),
                })
            })
            .clone()
    }

    /// Start or stop a room's relay to its clusters.
    pub fn set_relay(&self, room: &str, on: bool) {
        let _ = self.send(Cmd::Relay(room.to_owned(), on));
    }

    /// Rooms whose relay runs.
    pub async fn relays(&self) -> Vec<String> {
        let (tx, rx) = oneshot::channel();
        if self.send(Cmd::Relays(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Each room's jitter-buffer counters (its two voices added up): packets decoded, rebuilt
    /// from FEC, concealed, dropped, corrupt.
    pub async fn input_stats(&self) -> Vec<(String, InputStats)> {
        let (tx, rx) = oneshot::channel();
        if self.send(Cmd::Inputs(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Listen to an Ogg output: `room:ROOM`, or a pull cluster's id.
    pub fn listen(&self, output: &str) -> Result<Listener, BridgeError> {
        let s = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(output)
            .cloned()
            .ok_or_else(|| BridgeError::NoSuchStream(output.to_owned()))?;
        s.listeners.fetch_add(1, Ordering::Relaxed);
        Ok(Listener {
            headers: s.headers.clone(),
            pages: s.pages.subscribe(),
            guard: ListenerGuard(s),
        })
    }

    /// Add a cluster relaying `room`.
    pub async fn add_cluster(&self, config: ClusterConfig, room: &str) -> Result<(), BridgeError> {
        let dest = config.validate()?;
        if matches!(dest, Destination::Pull | Destination::Icecast(_)) {
            // The pages exist before the driver has the cluster: a receiver can connect now.
            let title = if config.name.is_empty() {
                config.id.clone()
            } else {
                config.name.clone()
            };
            self.ensure_stream(&config.id, &title);
        }
        let room = room.to_owned();
        let r = self
            .ask(|tx| Cmd::AddCluster(Box::new(config.clone()), room, tx))
            .await;
        if r.is_err() {
            // A refused cluster leaves no stream behind (unless it already existed).
            if !matches!(r, Err(BridgeError::Engine(EngineError::Exists(_)))) {
                self.streams
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&config.id);
            }
        }
        r
    }

    /// Remove a cluster.
    pub async fn remove_cluster(&self, id: &str) -> Result<(), BridgeError> {
        let id2 = id.to_owned();
        self.ask(|tx| Cmd::RemoveCluster(id2, tx)).await?;
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    /// The clusters with their health.
    pub async fn clusters(&self) -> Vec<ClusterView> {
        let (tx, rx) = oneshot::channel();
        if self.send(Cmd::Clusters(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Scheduled broadcasts not yet played.
    pub async fn scheduled(&self) -> Vec<ScheduledView> {
        let (tx, rx) = oneshot::channel();
        if self.send(Cmd::Scheduled(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Play (or schedule) an announcement; its id is returned.
    pub async fn announce(&self, req: AnnounceRequest) -> Result<String, BridgeError> {
        self.ask(|tx| Cmd::Announce(Box::new(req), tx)).await
    }

    /// Stop an announcement, or cancel a scheduled one.
    pub async fn stop_announcement(&self, id: &str) -> Result<(), BridgeError> {
        let id = id.to_owned();
        self.ask(|tx| Cmd::Stop(id, tx)).await
    }

    /// A smart receiver's heartbeat.
    pub async fn heartbeat(
        &self,
        cluster: &str,
        ok: bool,
        volume: Option<u8>,
        detail: Option<String>,
    ) -> Result<(), BridgeError> {
        let c = cluster.to_owned();
        self.ask(|tx| Cmd::Heartbeat(c, ok, volume, detail, tx))
            .await
    }
}

enum Transport {
    Rtp {
        stream: RtpStream,
        socket: Arc<UdpSocket>,
        reader: tokio::task::JoinHandle<()>,
    },
    Ogg {
        pager: OggPager,
        shared: Arc<OggShared>,
        icecast: Option<mpsc::Sender<Bytes>>,
    },
}

impl Drop for Transport {
    fn drop(&mut self) {
        if let Transport::Rtp { reader, .. } = self {
            reader.abort();
        }
    }
}

struct Scheduled {
    at: SystemTime,
    req: AnnounceRequest,
}

struct Driver {
    engine: Engine,
    health: Health,
    settings: BridgeSettings,
    outputs: HashMap<String, Transport>,
    clusters: BTreeMap<String, (ClusterConfig, String)>,
    schedules: Vec<Scheduled>,
    /// Running announcements: their rooms.
    sources: HashMap<String, Vec<String>>,
    tick: u64,
    next_id: u64,
    self_tx: mpsc::UnboundedSender<Cmd>,
    bridge: Bridge,
    stop: watch::Receiver<bool>,
}

fn rtp_socket(cfg: &ClusterConfig, dest: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if dest.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    let any: SocketAddr = if dest.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    s.bind(&any.into())?;
    if dest.ip().is_multicast() {
        match dest.ip() {
            IpAddr::V4(_) => {
                s.set_multicast_ttl_v4(cfg.ttl)?;
                if let Some(iface) = cfg.interface {
                    s.set_multicast_if_v4(&iface)?;
                }
                s.set_multicast_loop_v4(true)?;
            }
            IpAddr::V6(_) => s.set_multicast_hops_v6(cfg.ttl)?,
        }
    }
    s.connect(&dest.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.on_tick(),
                cmd = rx.recv() => match cmd {
                    Some(c) => self.on_cmd(c),
                    None => return,
                },
                _ = stop.changed() => if *stop.borrow() { return },
            }
        }
    }

    fn emit(&self, e: BridgeEvent) {
        let _ = self.bridge.events.send(e);
    }

    fn status_changes(&self, changes: Vec<Change>) {
        for c in changes {
            let room = self
                .clusters
                .get(&c.cluster)
                .map(|(_, r)| r.clone())
                .unwrap_or_default();
            tracing::info!(cluster = %c.cluster, status = c.status.as_str(), reason = %c.reason, "cluster status");
            self.emit(BridgeEvent::ClusterStatus {
                cluster: c.cluster,
                room,
                status: c.status,
                reason: c.reason,
            });
        }
    }

    fn observe(&mut self, id: &str, ev: Evidence) {
        if let Some(c) = self.health.observe(id, ev, Instant::now()) {
            self.status_changes(vec![c]);
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.tick += 1;
        self.bridge.stats.ticks.fetch_add(1, Ordering::Relaxed);
        // Scheduled broadcasts that are due.
        let wall = SystemTime::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.schedules)
            .into_iter()
            .partition(|s| s.at <= wall);
        self.schedules = later;
        for s in due {
            let id = s.req.id.clone();
            if let Err(e) = self.start_announcement(s.req) {
                tracing::warn!(announcement = %id, error = %e, "scheduled broadcast not played");
            }
        }
        // HTTP streams nobody listens to are not encoded (the room's stream runs always).
        for (id, t) in &self.outputs {
            if let Transport::Ogg {
                shared,
                icecast: None,
                ..
            } = t
            {
                let idle = shared.listeners.load(Ordering::Relaxed) == 0;
                self.engine.set_idle(id, idle);
            }
        }
        let tick = self.engine.tick(now);
        let stats = self.bridge.stats.clone();
        let mut evidence: Vec<(String, Evidence)> = Vec::new();
        let mut latencies = Vec::new();
        for send in &tick.sends {
            stats.encodes.fetch_add(1, Ordering::Relaxed);
            for id in &send.outputs {
                let Some(t) = self.outputs.get_mut(id) else {
                    continue;
                };
                match t {
                    Transport::Rtp { stream, socket, .. } => {
                        let pkt = stream.packet(&send.frame, self.tick);
                        match socket.try_send(&pkt) {
                            Ok(_) => {
                                stats.rtp_sent.fetch_add(1, Ordering::Relaxed);
                                evidence.push((id.clone(), Evidence::Sent));
                                if let Some(a) = send.frame.arrived {
                                    latencies
                                        .push(a.elapsed().as_micros().min(u32::MAX as u128) as u32);
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                stats.rtp_errors.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                stats.rtp_errors.fetch_add(1, Ordering::Relaxed);
                                evidence.push((id.clone(), Evidence::SendFailed(e.to_string())));
                            }
                        }
                    }
                    Transport::Ogg {
                        pager,
                        shared,
                        icecast,
                    } => {
                        if let Some(page) = pager.push(&send.frame.payload) {
                            stats.pages.fetch_add(1, Ordering::Relaxed);
                            let _ = shared.pages.send(page.clone());
                            if let Some(ic) = icecast {
                                // A stalled server must not stall the bridge: drop the page.
                                let _ = ic.try_send(page);
                            }
                        }
                    }
                }
            }
        }
        if !latencies.is_empty() {
            let mut l = stats.latency_us.lock().unwrap_or_else(|p| p.into_inner());
            if l.len() < 1_000_000 {
                l.extend(latencies);
            }
        }
        for (id, ev) in evidence {
            self.observe(&id, ev);
        }
        for id in tick.finished {
            // The relay's chime is not an announcement of its own.
            if let Some(rooms) = self.sources.remove(&id) {
                self.emit(BridgeEvent::AnnouncementEnded {
                    id,
                    how: "played".into(),
                    rooms,
                });
            }
        }
        // Once a second: listener counts of pull clusters, and quiet clusters.
        if self.tick.is_multiple_of(50) {
            let pulls: Vec<(String, u32)> = self
                .clusters
                .iter()
                .filter(|(_, (c, _))| c.kind == ClusterKind::Http)
                .filter_map(|(id, _)| match self.outputs.get(id) {
                    Some(Transport::Ogg { shared, .. }) => {
                        Some((id.clone(), shared.listeners.load(Ordering::Relaxed)))
                    }
                    _ => None,
                })
                .collect();
            for (id, n) in pulls {
                self.observe(&id, Evidence::Listeners(n));
            }
            let changes = self.health.poll(now);
            self.status_changes(changes);
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Push(room, voice, seq, payload, at) => {
                self.engine.push(&room, voice, seq, payload, at)
            }
            Cmd::Relay(room, on) => {
                if self.engine.relay(&room) == on {
                    return;
                }
                self.engine.set_relay(&room, on);
                tracing::info!(%room, on, "relay");
                self.emit(BridgeEvent::Relay {
                    room: room.clone(),
                    on,
                });
                if on && self.settings.chime {
                    let targets: Vec<String> = self
                        .clusters
                        .iter()
                        .filter(|(_, (_, r))| *r == room)
                        .map(|(id, _)| id.clone())
                        .collect();
                    if !targets.is_empty() {
                        let id = format!("chime-{room}-{}", self.tick);
                        let _ = self.engine.announce(Announcement {
                            id,
                            priority: Priority::Normal,
                            source: Source::Clip(Clip::from_samples(&[])),
                            targets: Targets::Outputs(targets),
                            chime: true,
                        });
                    }
                }
            }
            Cmd::Inputs(reply) => {
                let mut rooms: Vec<String> =
                    self.engine.outputs().map(|o| o.room.clone()).collect();
                rooms.sort();
                rooms.dedup();
                let stats = rooms
                    .into_iter()
                    .filter_map(|r| {
                        let [a, b] = self.engine.input_stats(&r)?;
                        Some((
                            r,
                            InputStats {
                                decoded: a.decoded + b.decoded,
                                fec: a.fec + b.fec,
                                concealed: a.concealed + b.concealed,
                                dropped: a.dropped + b.dropped,
                                corrupt: a.corrupt + b.corrupt,
                            },
                        ))
                    })
                    .collect();
                let _ = reply.send(stats);
            }
            Cmd::Relays(reply) => {
                let rooms: Vec<String> = self
                    .clusters
                    .values()
                    .map(|(_, r)| r.clone())
                    .chain(self.engine.outputs().map(|o| o.room.clone()))
                    .filter(|r| self.engine.relay(r))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let _ = reply.send(rooms);
            }
            Cmd::AddRoom(room, title) => {
                let id = room_output(&room);
                if self.outputs.contains_key(&id) {
                    return;
                }
                let spec = OutputSpec {
                    id: id.clone(),
                    room,
                    format: Format {
                        codec: crate::config::Codec::Opus,
                        target_lufs: self.settings.stream_target_lufs,
                        gain_db: 0.0,
                    },
                    follows_relay: false,
                    continuous: true,
                };
                if self.engine.add_output(spec).is_ok() {
                    let shared = self.bridge.ensure_stream(&id, &title);
                    let pager = pager_for(&id, &title);
                    self.outputs.insert(
                        id,
                        Transport::Ogg {
                            pager,
                            shared,
                            icecast: None,
                        },
                    );
                }
            }
            Cmd::AddCluster(cfg, room, reply) => {
                let _ = reply.send(self.add_cluster(*cfg, room));
            }
            Cmd::RemoveCluster(id, reply) => {
                let r = if self.clusters.remove(&id).is_some() {
                    let _ = self.engine.remove_output(&id);
                    self.outputs.remove(&id);
                    self.health.remove(&id);
                    Ok(())
                } else {
                    Err(BridgeError::NoSuchCluster(id))
                };
                let _ = reply.send(r);
            }
            Cmd::Announce(req, reply) => {
                let mut req = *req;
                if req.id.is_empty() {
                    self.next_id += 1;
                    req.id = format!("a{}-{}", self.tick, self.next_id);
                }
                if let Some(missing) = req
                    .clusters
                    .iter()
                    .find(|c| !self.clusters.contains_key(*c))
                {
                    let _ = reply.send(Err(BridgeError::NoSuchCluster(missing.clone())));
                    return;
                }
                let id = req.id.clone();
                let r = match req.at {
                    Some(at) if at > SystemTime::now() => {
                        if self.schedules.iter().any(|s| s.req.id == id) {
                            Err(BridgeError::Engine(EngineError::Exists(id.clone())))
                        } else {
                            self.schedules.push(Scheduled { at, req });
                            Ok(())
                        }
                    }
                    _ => self.start_announcement(req),
                };
                let _ = reply.send(r.map(|_| id));
            }
            Cmd::Stop(id, reply) => {
                let before = self.schedules.len();
                self.schedules.retain(|s| s.req.id != id);
                let r = if self.schedules.len() < before {
                    Ok(())
                } else {
                    self.engine
                        .stop_announcement(&id)
                        .map_err(BridgeError::from)
                        .map(|_| {
                            let rooms = self.sources.remove(&id).unwrap_or_default();
                            self.emit(BridgeEvent::AnnouncementEnded {
                                id: id.clone(),
                                how: "stopped".into(),
                                rooms,
                            });
                        })
                };
                let _ = reply.send(r);
            }
            Cmd::Heartbeat(id, ok, volume, detail, reply) => {
                if !self.health.contains(&id) {
                    let _ = reply.send(Err(BridgeError::NoSuchCluster(id)));
                    return;
                }
                self.observe(&id, Evidence::Heartbeat { ok, volume, detail });
                let _ = reply.send(Ok(()));
            }
            Cmd::Evidence(id, ev) => self.observe(&id, ev),
            Cmd::Clusters(reply) => {
                let now = Instant::now();
                let views = self
                    .clusters
                    .iter()
                    .map(|(id, (cfg, room))| {
                        let mut config = cfg.clone();
                        config.password = config.password.as_ref().map(|_| "********".into());
                        config.room = Some(room.clone());
                        ClusterView {
                            config,
                            health: self.health.report(id, now),
                            playing: match self.engine.selection(id) {
                                Some(FeedKey::Room(_)) => "meeting".into(),
                                Some(FeedKey::Announcement(a)) => format!("announcement:{a}"),
                                Some(FeedKey::Silence) => "silence".into(),
                                None => "nothing".into(),
                            },
                        }
                    })
                    .collect();
                let _ = reply.send(views);
            }
            Cmd::Scheduled(reply) => {
                let mut v: Vec<ScheduledView> = self
                    .schedules
                    .iter()
                    .map(|s| ScheduledView {
                        id: s.req.id.clone(),
                        at_unix: s
                            .at
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0),
                        priority: s.req.priority,
                        clusters: s.req.clusters.clone(),
                        source: s.req.source.1.clone(),
                    })
                    .collect();
                v.sort_by_key(|s| s.at_unix);
                let _ = reply.send(v);
            }
        }
    }

    fn start_announcement(&mut self, req: AnnounceRequest) -> Result<(), BridgeError> {
        let targets = if req.clusters.is_empty() {
            Targets::All
        } else {
            Targets::Outputs(req.clusters.clone())
        };
        self.engine.announce(Announcement {
            id: req.id.clone(),
            priority: req.priority,
            source: req.source.0,
            targets,
            chime: req.chime,
        })?;
        tracing::info!(announcement = %req.id, priority = ?req.priority, "announcement started");
        let rooms: std::collections::BTreeSet<String> = if req.clusters.is_empty() {
            self.engine.outputs().map(|o| o.room.clone()).collect()
        } else {
            req.clusters
                .iter()
                .filter_map(|c| self.clusters.get(c).map(|(_, r)| r.clone()))
                .collect()
        };
        let rooms: Vec<String> = rooms.into_iter().collect();
        self.sources.insert(req.id.clone(), rooms.clone());
        self.emit(BridgeEvent::AnnouncementStarted {
            id: req.id,
            priority: req.priority,
            clusters: req.clusters,
            source: req.source.1,
            requested_by: req.requested_by,
            rooms,
        });
        Ok(())
    }

    fn add_cluster(&mut self, cfg: ClusterConfig, room: String) -> Result<(), BridgeError> {
        let dest = cfg.validate()?;
        if self.clusters.contains_key(&cfg.id) || self.outputs.contains_key(&cfg.id) {
            return Err(BridgeError::Engine(EngineError::Exists(cfg.id)));
        }
        let id = cfg.id.clone();
        let title = if cfg.name.is_empty() {
            id.clone()
        } else {
            cfg.name.clone()
        };
        let continuous = !matches!(dest, Destination::Rtp(_));
        let transport = match &dest {
            Destination::Rtp(addr) => {
                let sock = rtp_socket(&cfg, *addr)
                    .and_then(UdpSocket::from_std)
                    .map_err(|e| BridgeError::Socket {
                        id: id.clone(),
                        message: e.to_string(),
                    })?;
                let socket = Arc::new(sock);
                let reader = tokio::spawn(rtcp_reader(
                    id.clone(),
                    socket.clone(),
                    cfg.codec.clock_rate(),
                    self.self_tx.clone(),
                ));
                let seed = id
                    .bytes()
                    .fold(0x9e37_79b9u32, |h, b| h.rotate_left(7) ^ b as u32)
                    ^ (self.tick as u32).wrapping_mul(2_654_435_761);
                Transport::Rtp {
                    stream: RtpStream::new(seed.rotate_left(11) | 1, cfg.payload_type(), seed),
                    socket,
                    reader,
                }
            }
            Destination::Icecast(target) => {
                let shared = self.bridge.ensure_stream(&id, &title);
                let pager = pager_for(&id, &title);
                let (ptx, prx) = mpsc::channel(64);
                let (etx, mut erx) = mpsc::unbounded_channel();
                tokio::spawn(crate::icecast::run(
                    target.clone(),
                    cfg.password.clone().unwrap_or_default(),
                    title.clone(),
                    pager.headers(),
                    prx,
                    etx,
                    self.stop.clone(),
                ));
                let back = self.self_tx.clone();
                let cid = id.clone();
                tokio::spawn(async move {
                    while let Some(ev) = erx.recv().await {
                        if back.send(Cmd::Evidence(cid.clone(), ev)).is_err() {
                            return;
                        }
                    }
                });
                Transport::Ogg {
                    pager,
                    shared,
                    icecast: Some(ptx),
                }
            }
            Destination::Pull => {
                let shared = self.bridge.ensure_stream(&id, &title);
                Transport::Ogg {
                    pager: pager_for(&id, &title),
                    shared,
                    icecast: None,
                }
            }
        };
        self.engine.add_output(OutputSpec {
            id: id.clone(),
            room: room.clone(),
            format: Format {
                codec: cfg.codec,
                target_lufs: cfg.loudness_target,
                gain_db: cfg.gain_db,
            },
            follows_relay: true,
            continuous,
        })?;
        self.health.add(
            &id,
            cfg.kind,
            cfg.heartbeat_secs.map(Duration::from_secs),
            Instant::now(),
        );
        self.outputs.insert(id.clone(), transport);
        tracing::info!(cluster = %id, kind = ?cfg.kind, "cluster added");
        self.clusters.insert(id, (cfg, room));
        Ok(())
    }
}

/// The pager of an output; the same serial and headers as its [`OggShared`] (both are made
/// from the id and title), so listeners that joined before the driver had it decode alike.
fn pager_for(id: &str, title: &str) -> OggPager {
    let serial = id
        .bytes()
        .fold(0x6469_6e68u32, |h, b| h.rotate_left(5) ^ b as u32);
    OggPager::new(serial, title, 5)
}

/// Read what comes back on an RTP output's socket: RTCP reports, and the errors ICMP causes.
async fn rtcp_reader(
    id: String,
    socket: Arc<UdpSocket>,
    clock_rate: u32,
    tx: mpsc::UnboundedSender<Cmd>,
) {
    let mut buf = vec![0u8; 1500];
    loop {
        let ev = match socket.recv(&mut buf).await {
            Ok(n) => {
                let reports = reception_reports(&buf[..n]);
                let Some(r) = reports.first() else { continue };
                Evidence::ReceiverReport {
                    fraction_lost: r.fraction_lost,
                    // Jitter is in the codec's clock units.
                    jitter_ms: r.jitter as f32 * 1000.0 / clock_rate as f32,
                }
            }
            Err(e) => {
                let ev = Evidence::SendFailed(e.to_string());
                // Errors repeat at most as often as we send; do not spin on one.
                tokio::time::sleep(Duration::from_millis(20)).await;
                ev
            }
        };
        if tx.send(Cmd::Evidence(id.clone(), ev)).is_err() {
            return;
        }
    }
}
