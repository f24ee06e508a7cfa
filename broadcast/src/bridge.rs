//! The driver around the [`Engine`] and the [`Programme`]: one task owns the engine, the
//! programme, the health core and every output's transport, and moves data between them and
//! the world every 20 ms (STYLE habit 2). It decides nothing the cores can decide: when an
//! announcement starts is the programme's, what each output plays is the engine's, a
//! cluster's status is the health core's. Everything else talks to it through [`Bridge`], a
//! cheap handle.
//!
//! Outputs:
//! - RTP clusters: one UDP socket each, connected to the destination (unicast, or a multicast
//!   group with its TTL and interface). The socket also receives: RTCP receiver reports sent
//!   back to it, and the ICMP errors a connected socket surfaces, are the cluster's health.
//! - Ogg outputs (the rooms' HTTP streams, pull clusters, Icecast mounts): one
//!   [`OggPager`], whose pages go to a broadcast channel for HTTP listeners and to a source
//!   task for Icecast.
//!
//! What it tells the rest of the hub ([`BridgeEvent`]): clusters' status changes and
//! announcements starting and ending. The relay is not among them: it is the record's fact,
//! and the hub switches the bridge to follow the record ([`Bridge::set_relay`]).
//!
//! # Bounds
//! Both channels into the driver are bounded. Packets ([`Bridge::push`]) are dropped when
//! [`PACKET_QUEUE`] are waiting (counted in [`BridgeStats::packets_dropped`]): a driver that far
//! behind would play them late, and the jitter buffer conceals a gap. Commands wait for room
//! ([`COMMAND_QUEUE`]), so a flood of requests slows its senders instead of growing memory.

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
    Source, Voice,
};
use crate::files::{FileSettings, FileStore};
use crate::health::{Change, Evidence, Health, Report, Status};
use crate::jitter::InputStats;
use crate::ogg::OggPager;
use crate::programme::{
    self, AfterLoad, Audio, Cancelled, Ended, Planned, Programme, ProgrammeError,
    ProgrammeSettings, ScheduledView, Started, Step,
};
use crate::rtp::{reception_reports, RtpStream};

/// Packets waiting for the driver before new ones are dropped: 5 s of both voices of 5 rooms.
pub const PACKET_QUEUE: usize = 1000;
/// Commands waiting for the driver before senders wait.
pub const COMMAND_QUEUE: usize = 256;

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
    /// Refused by the programme (an announcement id taken, or none of that id in the room).
    #[error(transparent)]
    Programme(#[from] ProgrammeError),
    /// No cluster with that id (in the room asked about); check the id.
    #[error("there is no cluster '{0}'")]
    NoSuchCluster(String),
    /// No stream for that room or cluster; check the id.
    #[error("there is no stream '{0}'")]
    NoSuchStream(String),
    /// The destination cannot be used (no socket for it, a bad interface); fix the cluster.
    #[error("cluster '{id}': cannot open its socket: {message}")]
    Socket {
        /// The cluster's id.
        id: String,
        /// The OS's reason.
        message: String,
    },
    /// The bridge has stopped (the hub is shutting down); retry after a restart.
    #[error("the loudspeaker bridge is not running")]
    Stopped,
}

/// How the bridge runs.
#[derive(Debug, Clone)]
pub struct BridgeSettings {
    /// The DSP chain.
    pub engine: EngineSettings,
    /// Scheduling and the relay's chime.
    pub programme: ProgrammeSettings,
    /// Announcement files.
    pub files: FileSettings,
    /// Quiet this long (no reports, heartbeats or listeners where they were expected): down.
    pub quiet_after: Duration,
    /// Loudness of the rooms' HTTP streams, LUFS.
    pub stream_target_lufs: f64,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        Self {
            engine: EngineSettings::default(),
            programme: ProgrammeSettings::default(),
            files: FileSettings::default(),
            quiet_after: Duration::from_secs(10),
            stream_target_lufs: -16.0,
        }
    }
}

/// What the bridge tells the rest of the hub, to record and to show: health and
/// announcements, each of one room.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BridgeEvent {
    /// A cluster changed status.
    ClusterStatus {
        /// The cluster's id.
        cluster: String,
        /// The room it relays.
        room: String,
        /// Its status now.
        status: Status,
        /// The evidence, in words.
        reason: String,
    },
    /// An announcement started.
    AnnouncementStarted(Started),
    /// An announcement ended, or will never play (missed, failed).
    AnnouncementEnded(Ended),
}

/// An announcement to play now, with its audio.
#[derive(Debug, Clone)]
pub struct AnnounceRequest {
    /// Unique among planned and running announcements ([`Bridge::new_id`] makes one).
    pub id: String,
    /// The room it is for: it plays only on that room's outputs.
    pub room: String,
    /// Its priority over the meeting and other announcements.
    pub priority: Priority,
    /// The audio: a decoded file, or a room's live voice.
    pub audio: Source,
    /// What the record calls the audio: the file name, or `live:ROOM`.
    pub label: String,
    /// Cluster ids of the room; empty for every output of the room.
    pub clusters: Vec<String>,
    /// Whether the chime plays first.
    pub chime: bool,
    /// Who asked (`role:id`), for the record.
    pub requested_by: String,
}

/// A cluster as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// The configuration (the password masked), with its room.
    #[serde(flatten)]
    pub config: ClusterConfig,
    /// `None` until the health core has heard of it.
    pub health: Option<Report>,
    /// What it plays now: `meeting`, `announcement:ID`, `silence` or `nothing`.
    pub playing: String,
}

/// Counters, and the latency samples the benchmark reads.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// 20 ms ticks run.
    pub ticks: AtomicU64,
    /// RTP packets sent.
    pub rtp_sent: AtomicU64,
    /// RTP sends the OS refused.
    pub rtp_errors: AtomicU64,
    /// Ogg pages written.
    pub pages: AtomicU64,
    /// Frames encoded.
    pub encodes: AtomicU64,
    /// Meeting packets dropped because [`PACKET_QUEUE`] were waiting.
    pub packets_dropped: AtomicU64,
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

/// A packet of a room's voice, on its own bounded channel.
struct Packet {
    room: String,
    voice: Voice,
    seq: u16,
    payload: Bytes,
    received: Instant,
}

/// What the handle asks of the driver.
enum Cmd {
    Relay {
        room: String,
        on: bool,
    },
    AddRoom {
        room: String,
        title: String,
    },
    AddCluster {
        config: Box<ClusterConfig>,
        room: String,
        reply: Reply<()>,
    },
    RemoveCluster {
        id: String,
        reply: Reply<()>,
    },
    Announce {
        req: Box<AnnounceRequest>,
        reply: Reply<String>,
    },
    Schedule {
        planned: Box<Planned>,
        reply: Reply<()>,
    },
    Cancel {
        room: String,
        id: String,
        reply: Reply<()>,
    },
    Stop {
        room: String,
        id: String,
        reply: Reply<()>,
    },
    /// A file decoded (or not) for a planned announcement.
    Loaded {
        id: String,
        clip: Result<Clip, String>,
    },
    Heartbeat {
        cluster: String,
        ok: bool,
        volume: Option<u8>,
        detail: Option<String>,
        reply: Reply<()>,
    },
    Evidence {
        cluster: String,
        evidence: Evidence,
    },
    Clusters {
        reply: oneshot::Sender<Vec<ClusterView>>,
    },
    Scheduled {
        room: String,
        reply: oneshot::Sender<Vec<ScheduledView>>,
    },
    Relays {
        reply: oneshot::Sender<Vec<String>>,
    },
    Inputs {
        reply: oneshot::Sender<Vec<(String, InputStats)>>,
    },
}

/// A handle on the bridge.
#[derive(Clone)]
pub struct Bridge {
    tx: mpsc::Sender<Cmd>,
    packets: mpsc::Sender<Packet>,
    streams: Arc<Mutex<HashMap<String, Arc<OggShared>>>>,
    events: broadcast::Sender<BridgeEvent>,
    stats: Arc<BridgeStats>,
    files: Arc<FileStore>,
    ids: Arc<AtomicU64>,
    followed: Arc<watch::Sender<u64>>,
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
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (ptx, prx) = mpsc::channel(PACKET_QUEUE);
        let bridge = Self {
            tx: tx.clone(),
            packets: ptx,
            streams: Arc::new(Mutex::new(HashMap::new())),
            events: broadcast::channel(256).0,
            stats: Arc::new(BridgeStats::default()),
            files: Arc::new(FileStore::new(settings.files.clone())),
            ids: Arc::new(AtomicU64::new(0)),
            followed: Arc::new(watch::channel(0).0),
        };
        let driver = Driver {
            engine,
            programme: Programme::new(settings.programme),
            health: Health::new(settings.quiet_after),
            stream_target_lufs: settings.stream_target_lufs,
            outputs: HashMap::new(),
            clusters: BTreeMap::new(),
            clips: HashMap::new(),
            tick: 0,
            self_tx: tx,
            bridge: bridge.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(driver.run(rx, prx, stop));
        Ok(bridge)
    }

    async fn send(&self, cmd: Cmd) -> Result<(), BridgeError> {
        self.tx.send(cmd).await.map_err(|_| BridgeError::Stopped)
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, BridgeError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| BridgeError::Stopped)?
    }

    async fn query<T: Default>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> T {
        let (tx, rx) = oneshot::channel();
        if self.send(make(tx)).await.is_err() {
            return T::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Counters, for `/metrics` and the benchmark.
    pub fn stats(&self) -> &Arc<BridgeStats> {
        &self.stats
    }

    /// The announcement files of every room.
    pub fn files(&self) -> &Arc<FileStore> {
        &self.files
    }

    /// Follow what happens (status changes, announcements).
    pub fn events(&self) -> broadcast::Receiver<BridgeEvent> {
        self.events.subscribe()
    }

    /// Say how far the bridge has been brought in line with the hub's instructions: a number
    /// the hub chooses and only raises (the record's position it has followed). Commands are
    /// applied in the order sent, so every command sent before this call is in effect.
    pub fn set_followed(&self, position: u64) {
        self.followed.send_if_modified(|p| {
            let raise = position > *p;
            if raise {
                *p = position;
            }
            raise
        });
    }

    /// Wait until [`Bridge::set_followed`] reached `position`, at most `within`; whether it
    /// did. A request that changed what the bridge follows answers once it is in effect.
    pub async fn followed(&self, position: u64, within: Duration) -> bool {
        let mut rx = self.followed.subscribe();
        tokio::time::timeout(within, rx.wait_for(|p| *p >= position))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A fresh announcement id ([`programme::announcement_id`]).
    pub fn new_id(&self) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        programme::announcement_id(SystemTime::now(), n)
    }

    /// A packet of a room's voice (the SFU's slot stream: sequence numbers continue across
    /// speakers). `received` is when it reached the hub. Dropped when the driver is
    /// [`PACKET_QUEUE`] packets behind.
    pub fn push(&self, room: &str, voice: Voice, seq: u16, payload: Bytes, received: Instant) {
        let p = Packet {
            room: room.to_owned(),
            voice,
            seq,
            payload,
            received,
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.packets.try_send(p) {
            self.stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Give a room its HTTP stream (`room:ROOM`).
    pub async fn add_room(&self, room: &str, title: &str) {
        self.ensure_stream(&room_output(room), title);
        let _ = self
            .send(Cmd::AddRoom {
                room: room.to_owned(),
                title: title.to_owned(),
            })
            .await;
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

    /// Start or stop a room's relay to its clusters. The relay is a fact of the record: the
    /// hub calls this only to follow it, never for a request directly.
    pub async fn set_relay(&self, room: &str, on: bool) {
        let _ = self
            .send(Cmd::Relay {
                room: room.to_owned(),
                on,
            })
            .await;
    }

    /// Rooms whose relay runs.
    pub async fn relays(&self) -> Vec<String> {
        self.query(|reply| Cmd::Relays { reply }).await
    }

    /// Each room's jitter-buffer counters (its two voices added up): packets decoded, rebuilt
    /// from FEC, concealed, dropped, corrupt.
    pub async fn input_stats(&self) -> Vec<(String, InputStats)> {
        self.query(|reply| Cmd::Inputs { reply }).await
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
            .ask(|reply| Cmd::AddCluster {
                config: Box::new(config.clone()),
                room,
                reply,
            })
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
        self.ask(|reply| Cmd::RemoveCluster { id: id2, reply })
            .await?;
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    /// The clusters with their health, every room's (callers filter by room).
    pub async fn clusters(&self) -> Vec<ClusterView> {
        self.query(|reply| Cmd::Clusters { reply }).await
    }

    /// A room's scheduled announcements not yet started, soonest first.
    pub async fn scheduled(&self, room: &str) -> Vec<ScheduledView> {
        let room = room.to_owned();
        self.query(|reply| Cmd::Scheduled { room, reply }).await
    }

    /// Play an announcement now; its id is returned.
    pub async fn announce(&self, req: AnnounceRequest) -> Result<String, BridgeError> {
        self.ask(|reply| Cmd::Announce {
            req: Box::new(req),
            reply,
        })
        .await
    }

    /// Plan an announcement for its time. Scheduled announcements are the record's facts:
    /// the hub calls this to follow the record (and to rebuild the programme at start-up).
    pub async fn schedule(&self, planned: Planned) -> Result<(), BridgeError> {
        self.ask(|reply| Cmd::Schedule {
            planned: Box::new(planned),
            reply,
        })
        .await
    }

    /// Cancel a planned announcement of `room`, or stop it if it is already playing.
    pub async fn cancel(&self, room: &str, id: &str) -> Result<(), BridgeError> {
        let (room, id) = (room.to_owned(), id.to_owned());
        self.ask(|reply| Cmd::Cancel { room, id, reply }).await
    }

    /// Stop a running announcement of `room`.
    pub async fn stop_announcement(&self, room: &str, id: &str) -> Result<(), BridgeError> {
        let (room, id) = (room.to_owned(), id.to_owned());
        self.ask(|reply| Cmd::Stop { room, id, reply }).await
    }

    /// A smart receiver's heartbeat.
    pub async fn heartbeat(
        &self,
        cluster: &str,
        ok: bool,
        volume: Option<u8>,
        detail: Option<String>,
    ) -> Result<(), BridgeError> {
        let cluster = cluster.to_owned();
        self.ask(|reply| Cmd::Heartbeat {
            cluster,
            ok,
            volume,
            detail,
            reply,
        })
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

struct Driver {
    engine: Engine,
    programme: Programme,
    health: Health,
    stream_target_lufs: f64,
    outputs: HashMap<String, Transport>,
    /// Every cluster's configuration and room.
    clusters: BTreeMap<String, (ClusterConfig, String)>,
    /// Files decoded for planned announcements that have not started yet.
    clips: HashMap<String, Clip>,
    tick: u64,
    self_tx: mpsc::Sender<Cmd>,
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
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Cmd>,
        mut packets: mpsc::Receiver<Packet>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.on_tick(),
                p = packets.recv() => if let Some(p) = p {
                    self.engine.push(&p.room, p.voice, p.seq, p.payload, p.received);
                },
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

    fn ended(&self, e: Ended) {
        tracing::info!(announcement = %e.id, how = e.how.as_str(), "announcement ended");
        self.emit(BridgeEvent::AnnouncementEnded(e));
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

    /// The room's cluster ids.
    fn clusters_of(&self, room: &str) -> Vec<String> {
        self.clusters
            .iter()
            .filter(|(_, (_, r))| r == room)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The first of `clusters` that is not one of `room`'s.
    fn foreign<'a>(&self, room: &str, clusters: &'a [String]) -> Option<&'a String> {
        clusters
            .iter()
            .find(|c| self.clusters.get(*c).is_none_or(|(_, r)| r != room))
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.tick += 1;
        self.bridge.stats.ticks.fetch_add(1, Ordering::Relaxed);
        for step in self.programme.poll(SystemTime::now()) {
            match step {
                Step::Load { id, room, file } => {
                    let files = self.bridge.files.clone();
                    let back = self.self_tx.clone();
                    tokio::spawn(async move {
                        let clip = files.load(&room, &file).await.map_err(|e| e.to_string());
                        let _ = back.send(Cmd::Loaded { id, clip }).await;
                    });
                }
                Step::Start(p) => self.start_planned(p),
                Step::Missed(e) => {
                    tracing::warn!(announcement = %e.id, "scheduled announcement missed: its time passed while the hub was off");
                    self.ended(e);
                }
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
            if let Some(e) = self.programme.finished(&id) {
                self.ended(e);
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

    /// A planned announcement whose time has come, its audio ready.
    fn start_planned(&mut self, p: Planned) {
        let clip = self.clips.remove(&p.id);
        let source = match (&p.audio, clip) {
            (Audio::Live(room), _) => Source::Room(room.clone()),
            (Audio::File(_), Some(clip)) => Source::Clip(clip),
            // The programme starts a file only once it is loaded.
            (Audio::File(_), None) => {
                let e = self.programme.failed(&p);
                return self.ended(e);
            }
        };
        if let Some(c) = self.foreign(&p.room, &p.clusters) {
            tracing::warn!(announcement = %p.id, cluster = %c, "scheduled announcement not played: its cluster is gone");
            let e = self.programme.failed(&p);
            return self.ended(e);
        }
        let taken = self.engine.announce(Announcement {
            id: p.id.clone(),
            priority: p.priority,
            source,
            targets: p.targets(),
            chime: p.chime,
        });
        if let Err(e) = taken {
            tracing::warn!(announcement = %p.id, error = %e, "scheduled announcement not played");
            let e = self.programme.failed(&p);
            return self.ended(e);
        }
        let started = self.programme.started(
            &p.id,
            &p.room,
            p.priority,
            &p.clusters,
            p.audio.label(),
            &p.requested_by,
        );
        tracing::info!(announcement = %p.id, priority = ?p.priority, "scheduled announcement started");
        self.emit(BridgeEvent::AnnouncementStarted(started));
    }

    /// An announcement asked for now.
    fn announce(&mut self, req: AnnounceRequest) -> Result<String, BridgeError> {
        if self.programme.knows(&req.id) {
            return Err(ProgrammeError::Exists(req.id).into());
        }
        if let Some(c) = self.foreign(&req.room, &req.clusters) {
            return Err(BridgeError::NoSuchCluster(c.clone()));
        }
        self.engine.announce(Announcement {
            id: req.id.clone(),
            priority: req.priority,
            source: req.audio,
            targets: programme::targets(&req.room, &req.clusters),
            chime: req.chime,
        })?;
        let started = self.programme.started(
            &req.id,
            &req.room,
            req.priority,
            &req.clusters,
            req.label,
            &req.requested_by,
        );
        tracing::info!(announcement = %req.id, priority = ?req.priority, "announcement started");
        self.emit(BridgeEvent::AnnouncementStarted(started));
        Ok(req.id)
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Relay { room, on } => {
                if self.engine.relay(&room) == on {
                    return;
                }
                self.engine.set_relay(&room, on);
                tracing::info!(%room, on, "relay");
                let clusters = self.clusters_of(&room);
                if let Some(chime) = self.programme.relay_switched(&room, on, clusters) {
                    let _ = self.engine.announce(chime);
                }
            }
            Cmd::Inputs { reply } => {
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
            Cmd::Relays { reply } => {
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
            Cmd::AddRoom { room, title } => {
                let id = room_output(&room);
                if self.outputs.contains_key(&id) {
                    return;
                }
                let spec = OutputSpec {
                    id: id.clone(),
                    room,
                    format: Format {
                        codec: crate::config::Codec::Opus,
                        target_lufs: self.stream_target_lufs,
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
            Cmd::AddCluster {
                config,
                room,
                reply,
            } => {
                let _ = reply.send(self.add_cluster(*config, room));
            }
            Cmd::RemoveCluster { id, reply } => {
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
            Cmd::Announce { req, reply } => {
                let _ = reply.send(self.announce(*req));
            }
            Cmd::Schedule { planned, reply } => {
                let _ = reply.send(self.programme.schedule(*planned).map_err(Into::into));
            }
            Cmd::Cancel { room, id, reply } => {
                let r = match self.programme.cancel(&room, &id) {
                    Ok(Cancelled::Planned(_)) => {
                        self.clips.remove(&id);
                        Ok(())
                    }
                    Ok(Cancelled::Running(e)) => {
                        let _ = self.engine.stop_announcement(&id);
                        self.ended(e);
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(r);
            }
            Cmd::Stop { room, id, reply } => {
                let r = self.programme.stop(&room, &id).map(|e| {
                    let _ = self.engine.stop_announcement(&id);
                    self.ended(e);
                });
                let _ = reply.send(r.map_err(Into::into));
            }
            Cmd::Loaded { id, clip } => {
                let ok = clip.is_ok();
                match (self.programme.loaded(&id, ok), clip) {
                    (AfterLoad::Keep, Ok(clip)) => {
                        self.clips.insert(id, clip);
                    }
                    (AfterLoad::Failed(e), Err(why)) => {
                        tracing::warn!(announcement = %id, error = %why, "scheduled announcement's file not played");
                        self.ended(e);
                    }
                    _ => {}
                }
            }
            Cmd::Heartbeat {
                cluster,
                ok,
                volume,
                detail,
                reply,
            } => {
                if !self.health.contains(&cluster) {
                    let _ = reply.send(Err(BridgeError::NoSuchCluster(cluster)));
                    return;
                }
                self.observe(&cluster, Evidence::Heartbeat { ok, volume, detail });
                let _ = reply.send(Ok(()));
            }
            Cmd::Evidence { cluster, evidence } => self.observe(&cluster, evidence),
            Cmd::Clusters { reply } => {
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
            Cmd::Scheduled { room, reply } => {
                let _ = reply.send(self.programme.scheduled(&room));
            }
        }
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
                let (etx, mut erx) = mpsc::channel(16);
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
                    while let Some(evidence) = erx.recv().await {
                        let cmd = Cmd::Evidence {
                            cluster: cid.clone(),
                            evidence,
                        };
                        if back.send(cmd).await.is_err() {
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
async fn rtcp_reader(id: String, socket: Arc<UdpSocket>, clock_rate: u32, tx: mpsc::Sender<Cmd>) {
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
        let cmd = Cmd::Evidence {
            cluster: id.clone(),
            evidence: ev,
        };
        // Waiting for room here slows the reading of this socket, not the bridge.
        if tx.send(cmd).await.is_err() {
            return;
        }
    }
}
