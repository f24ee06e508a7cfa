//! Each cluster's health, pure: evidence and `now` in, status changes out.
//!
//! Evidence by kind: RTCP receiver reports from RTP receivers that send them, the OS refusing
//! a send (ICMP port or host unreachable on a unicast destination), heartbeats from smart
//! receivers, listener counts of HTTP streams, and the Icecast source connection. Evidence of
//! a fault wins over evidence of life; a cluster with no evidence either way keeps its status
//! (an RTP adapter that sends no reports, while the relay is stopped).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::ClusterKind;

/// A cluster's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing known yet.
    Unknown,
    /// Receiving, as far as the evidence shows.
    Up,
    /// Not receiving: the reason says why.
    Down,
}

impl Status {
    /// Lowercase name, as recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Up => "up",
            Status::Down => "down",
        }
    }
}

/// Something learnt about a cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidence {
    /// A packet left without error.
    Sent,
    /// The OS refused a send (unreachable port, host or network).
    SendFailed(String),
    /// An RTCP receiver report about our stream.
    ReceiverReport {
        /// Fraction lost since the last report, 0..1.
        fraction_lost: f32,
        /// Interarrival jitter, ms.
        jitter_ms: f32,
    },
    /// A smart receiver's heartbeat.
    Heartbeat {
        /// The receiver says it plays.
        ok: bool,
        /// Its volume, 0..100.
        volume: Option<u8>,
        /// What it says is wrong.
        detail: Option<String>,
    },
    /// Listeners connected now.
    Listeners(u32),
    /// The Icecast source connection is up.
    SourceConnected,
    /// The Icecast source connection failed or dropped.
    SourceFailed(String),
}

/// A status change to report and record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The cluster's id.
    pub cluster: String,
    /// Its status from now on.
    pub status: Status,
    /// The evidence that changed it, in words (for the record and the API).
    pub reason: String,
}

/// What is known of one cluster, for the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Its status now.
    pub status: Status,
    /// The evidence behind the status, in words.
    pub reason: String,
    /// Seconds in this status.
    pub for_secs: u64,
    /// Listeners (HTTP and Icecast).
    pub listeners: Option<u32>,
    /// Volume the receiver reported.
    pub volume: Option<u8>,
    /// Loss the receiver reported, percent.
    pub loss_pct: Option<f32>,
    /// Jitter the receiver reported, ms.
    pub jitter_ms: Option<f32>,
}

struct Cluster {
    kind: ClusterKind,
    heartbeat: Option<Duration>,
    added: Instant,
    status: Status,
    reason: String,
    since: Instant,
    last_sent: Option<Instant>,
    failures: VecDeque<(Instant, String)>,
    last_rr: Option<Instant>,
    last_heartbeat: Option<(Instant, bool, Option<String>)>,
    listeners: u32,
    listeners_seen: Option<Instant>,
    source: Option<Result<(), String>>,
    volume: Option<u8>,
    loss: Option<f32>,
    jitter: Option<f32>,
}

/// Every cluster's health.
#[derive(Default)]
pub struct Health {
    clusters: BTreeMap<String, Cluster>,
    quiet_after: Duration,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("clusters", &self.clusters.len())
            .finish()
    }
}

const FAILURE_WINDOW: Duration = Duration::from_secs(2);
const FAILURES_FOR_DOWN: usize = 3;

impl Health {
    /// A cluster with no RTCP report, heartbeat or listener for `quiet_after` (when it has
    /// shown it sends them) is down.
    pub fn new(quiet_after: Duration) -> Self {
        Self {
            clusters: BTreeMap::new(),
            quiet_after,
        }
    }

    /// Watch a cluster.
    pub fn add(&mut self, id: &str, kind: ClusterKind, heartbeat: Option<Duration>, now: Instant) {
        self.clusters.insert(
            id.to_owned(),
            Cluster {
                kind,
                heartbeat,
                added: now,
                status: Status::Unknown,
                reason: "no evidence yet".into(),
                since: now,
                last_sent: None,
                failures: VecDeque::new(),
                last_rr: None,
                last_heartbeat: None,
                listeners: 0,
                listeners_seen: None,
                source: None,
                volume: None,
                loss: None,
                jitter: None,
            },
        );
    }

    /// Stop watching a cluster.
    pub fn remove(&mut self, id: &str) {
        self.clusters.remove(id);
    }

    /// Whether a cluster is watched.
    pub fn contains(&self, id: &str) -> bool {
        self.clusters.contains_key(id)
    }

    /// Take in evidence; a change it causes is returned.
    pub fn observe(&mut self, id: &str, ev: Evidence, now: Instant) -> Option<Change> {
        let c = self.clusters.get_mut(id)?;
        match ev {
            Evidence::Sent => c.last_sent = Some(now),
            Evidence::SendFailed(why) => {
                c.failures.push_back((now, why));
                if c.failures.len() > 16 {
                    c.failures.pop_front();
                }
            }
            Evidence::ReceiverReport {
                fraction_lost,
                jitter_ms,
            } => {
                c.last_rr = Some(now);
                c.loss = Some(fraction_lost * 100.0);
                c.jitter = Some(jitter_ms);
            }
            Evidence::Heartbeat { ok, volume, detail } => {
                c.last_heartbeat = Some((now, ok, detail));
                if volume.is_some() {
                    c.volume = volume;
                }
            }
            Evidence::Listeners(n) => {
                c.listeners = n;
                if n > 0 {
                    c.listeners_seen = Some(now);
                }
            }
            Evidence::SourceConnected => c.source = Some(Ok(())),
            Evidence::SourceFailed(why) => c.source = Some(Err(why)),
        }
        let quiet = self.quiet_after;
        update(id, c, quiet, now)
    }

    /// Look for clusters that went quiet.
    pub fn poll(&mut self, now: Instant) -> Vec<Change> {
        let quiet = self.quiet_after;
        self.clusters
            .iter_mut()
            .filter_map(|(id, c)| update(id, c, quiet, now))
            .collect()
    }

    /// What is known of a cluster.
    pub fn report(&self, id: &str, now: Instant) -> Option<Report> {
        let c = self.clusters.get(id)?;
        Some(Report {
            status: c.status,
            reason: c.reason.clone(),
            for_secs: (now - c.since).as_secs(),
            listeners: matches!(c.kind, ClusterKind::Http | ClusterKind::Icecast)
                .then_some(c.listeners),
            volume: c.volume,
            loss_pct: c.loss,
            jitter_ms: c.jitter,
        })
    }

    /// Status of a cluster.
    pub fn status(&self, id: &str) -> Option<Status> {
        self.clusters.get(id).map(|c| c.status)
    }
}

fn update(id: &str, c: &mut Cluster, quiet: Duration, now: Instant) -> Option<Change> {
    let (status, reason) = evaluate(c, quiet, now)?;
    if status == c.status {
        c.reason = reason;
        return None;
    }
    c.status = status;
    c.reason = reason.clone();
    c.since = now;
    Some(Change {
        cluster: id.to_owned(),
        status,
        reason,
    })
}

/// The status the evidence shows, or `None` when it shows nothing new.
fn evaluate(c: &mut Cluster, quiet: Duration, now: Instant) -> Option<(Status, String)> {
    while c
        .failures
        .front()
        .is_some_and(|(t, _)| now - *t > FAILURE_WINDOW)
    {
        c.failures.pop_front();
    }
    let secs = |d: Duration| d.as_secs();
    // Faults first.
    if c.failures.len() >= FAILURES_FOR_DOWN {
        let why = c
            .failures
            .back()
            .map(|(_, w)| w.clone())
            .unwrap_or_default();
        return Some((Status::Down, format!("unreachable: {why}")));
    }
    if let Some(Err(why)) = &c.source {
        return Some((Status::Down, format!("Icecast: {why}")));
    }
    if let Some(every) = c.heartbeat {
        let limit = every.mul_f32(2.5);
        match &c.last_heartbeat {
            Some((_, false, detail)) => {
                let d = detail.clone().unwrap_or_else(|| "fault".into());
                return Some((Status::Down, format!("receiver reports: {d}")));
            }
            Some((t, true, _)) if now - *t > limit => {
                return Some((
                    Status::Down,
                    format!("no heartbeat for {} s", secs(now - *t)),
                ))
            }
            None if now - c.added > limit => {
                return Some((Status::Down, "no heartbeat since the hub started".into()))
            }
            _ => {}
        }
    }
    if let Some(t) = c.last_rr {
        if now - t > quiet {
            return Some((
                Status::Down,
                format!("no receiver reports for {} s", secs(now - t)),
            ));
        }
    }
    if c.kind == ClusterKind::Http && c.listeners == 0 {
        let from = c.listeners_seen.unwrap_or(c.added);
        if now - from > quiet {
            return Some((Status::Down, "no receiver connected".into()));
        }
        return None;
    }
    // Then life.
    if let Some((t, true, _)) = &c.last_heartbeat {
        if c.heartbeat.is_some() || now - *t < quiet {
            return Some((Status::Up, "heartbeat".into()));
        }
    }
    if let (Some(t), Some(loss)) = (c.last_rr, c.loss) {
        if now - t <= quiet {
            return Some((Status::Up, format!("receiver reports {loss:.0}% loss")));
        }
    }
    match c.kind {
        ClusterKind::Http => Some((Status::Up, format!("{} receiver(s) connected", c.listeners))),
        ClusterKind::Icecast if c.source == Some(Ok(())) => Some((
            Status::Up,
            format!("source connected, {} listener(s)", c.listeners),
        )),
        ClusterKind::Rtp
            if c.last_sent.is_some_and(|t| now - t < quiet) && c.failures.is_empty() =>
        {
            Some((Status::Up, "sending; the receiver sends no reports".into()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_secs(10);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn unicast_rtp_goes_down_on_repeated_unreachable_and_back_up() {
        let t0 = Instant::now();
        let mut h = Health::new(Q);
        h.add("a", ClusterKind::Rtp, None, t0);
        let c = h.observe("a", Evidence::Sent, t0).unwrap();
        assert_eq!(c.status, Status::Up);
        // ICMP errors surface on every other send: still three within two seconds.
        let mut changes = Vec::new();
        for i in 0..6u64 {
            let ev = if i % 2 == 0 {
                Evidence::Sent
            } else {
                Evidence::SendFailed("connection refused".into())
            };
            changes.extend(h.observe("a", ev, at(t0, 20 * (i + 1))));
        }
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].status, Status::Down);
        assert!(changes[0].reason.contains("connection refused"));
        // Sends go through again for longer than the window.
        let back = h.observe("a", Evidence::Sent, at(t0, 3000)).unwrap();
        assert_eq!(back.status, Status::Up);
    }

    #[test]
    fn a_receiver_that_sent_reports_and_stops_is_down() {
        let t0 = Instant::now();
        let mut h = Health::new(Q);
        h.add("a", ClusterKind::Rtp, None, t0);
        h.observe(
            "a",
            Evidence::ReceiverReport {
                fraction_lost: 0.02,
                jitter_ms: 3.0,
            },
            t0,
        );
        assert_eq!(h.status("a"), Some(Status::Up));
        for s in 1..=10 {
            h.observe("a", Evidence::Sent, at(t0, s * 1000));
        }
        assert!(h.poll(at(t0, 10_000)).is_empty());
        let c = h.poll(at(t0, 11_000));
        assert_eq!(c[0].status, Status::Down);
        assert!(
            c[0].reason.contains("no receiver reports"),
            "{}",
            c[0].reason
        );
        let r = h.report("a", at(t0, 11_000)).unwrap();
        assert_eq!(r.loss_pct, Some(2.0));
    }

    #[test]
    fn heartbeats_keep_a_cluster_up_and_a_fault_or_silence_takes_it_down() {
        let t0 = Instant::now();
        let mut h = Health::new(Q);
        h.add("loa", ClusterKind::Http, Some(Duration::from_secs(4)), t0);
        h.observe("loa", Evidence::Listeners(1), t0);
        h.observe(
            "loa",
            Evidence::Heartbeat {
                ok: true,
                volume: Some(70),
                detail: None,
            },
            t0,
        );
        assert_eq!(h.status("loa"), Some(Status::Up));
        assert!(h.poll(at(t0, 9_000)).is_empty());
        let c = h.poll(at(t0, 10_001));
        assert_eq!(c[0].status, Status::Down);
        assert!(c[0].reason.contains("no heartbeat"));
        h.observe(
            "loa",
            Evidence::Heartbeat {
                ok: true,
                volume: None,
                detail: None,
            },
            at(t0, 11_000),
        );
        assert_eq!(h.status("loa"), Some(Status::Up));
        assert_eq!(h.report("loa", at(t0, 11_000)).unwrap().volume, Some(70));
        let c = h
            .observe(
                "loa",
                Evidence::Heartbeat {
                    ok: false,
                    volume: None,
                    detail: Some("amplifier overheated".into()),
                },
                at(t0, 12_000),
            )
            .unwrap();
        assert_eq!(
            (c.status, c.reason.as_str()),
            (Status::Down, "receiver reports: amplifier overheated")
        );
    }

    #[test]
    fn pull_and_icecast_clusters_follow_their_connections() {
        let t0 = Instant::now();
        let mut h = Health::new(Q);
        h.add("pull", ClusterKind::Http, None, t0);
        h.add("ice", ClusterKind::Icecast, None, t0);
        assert!(h.poll(at(t0, 5_000)).is_empty());
        let c = h.poll(at(t0, 10_001));
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].cluster.as_str(), c[0].status), ("pull", Status::Down));
        assert_eq!(
            h.observe("pull", Evidence::Listeners(1), at(t0, 10_500))
                .unwrap()
                .status,
            Status::Up
        );
        assert_eq!(
            h.observe("ice", Evidence::SourceConnected, t0)
                .unwrap()
                .status,
            Status::Up
        );
        let c = h
            .observe(
                "ice",
                Evidence::SourceFailed("connection refused".into()),
                t0,
            )
            .unwrap();
        assert_eq!(c.status, Status::Down);
        assert!(h.observe("nope", Evidence::Sent, t0).is_none());
    }
}
