//! Bounds on the TCP connections an outsider can make the hub hold, and on the time a
//! request's body may take.
//!
//! What must stay true:
//! - at most `total` connections are open, and at most `per_source` from one source (an IPv4
//!   address, or an IPv6 /64: one machine has a whole /64);
//! - a connection counts from its accept until its socket is dropped, after a WebSocket
//!   upgrade too (the [`Permit`] lives inside the socket wrapper);
//! - when a limit is reached, the new connection takes the place of the one that has been
//!   idle longest within that limit (between requests, or still sending its first bytes); a
//!   connection inside a request or upgraded to a WebSocket is never evicted; with no idle
//!   one the new connection is refused. So a flood of idle connections can neither exhaust
//!   the process's file descriptors nor keep anyone else out for long.
//!
//! [`ConnTable`] decides with the time as an argument and no IO; [`Conns`] is its driver.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

/// Whom a per-source limit counts together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// One IPv4 address (IPv4-mapped IPv6 addresses count as IPv4).
    V4([u8; 4]),
    /// One IPv6 /64.
    V6([u8; 8]),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v) => Source::V4(v.octets()),
            IpAddr::V6(v) => match v.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let o = v.octets();
                    let mut p = [0u8; 8];
                    p.copy_from_slice(&o[..8]);
                    Source::V6(p)
                }
            },
        }
    }
}

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Between requests, or before its first request: may be evicted.
    Idle,
    /// Inside a request or its response.
    Busy,
    /// A WebSocket: never evicted; ends by its own rules.
    Upgraded,
}

/// The two caps.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections in total.
    pub total: usize,
    /// Connections from one [`Source`].
    pub per_source: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its source has `per_source` connections, all busy.
    SourceFull,
    /// The hub has `total` connections, all busy.
    Full,
}

/// The decision on a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Take it as `id`; first close `evict`, when set (already removed from the table).
    Admit {
        /// The new connection's id.
        id: u64,
        /// The idle connection it replaces.
        evict: Option<u64>,
    },
    /// Close it at once.
    Refuse(Refusal),
}

#[derive(Debug)]
struct Slot {
    source: Source,
    state: ConnState,
    /// When it entered its state.
    since: Instant,
}

/// The open connections: who, doing what, since when. Pure: the caller passes `now`.
#[derive(Debug, Default)]
pub struct ConnTable {
    next: u64,
    open: HashMap<u64, Slot>,
    per_source: HashMap<Source, usize>,
}

impl ConnTable {
    /// Decide on a connection from `source` arriving at `now`.
    pub fn admit(&mut self, limits: ConnLimits, source: Source, now: Instant) -> Admission {
        let mut evict = None;
        if self.per_source.get(&source).copied().unwrap_or(0) >= limits.per_source.max(1) {
            match self.oldest_idle(Some(source)) {
                Some(id) => evict = Some(id),
                None => return Admission::Refuse(Refusal::SourceFull),
            }
        } else if self.open.len() >= limits.total.max(1) {
            match self.oldest_idle(None) {
                Some(id) => evict = Some(id),
                None => return Admission::Refuse(Refusal::Full),
            }
        }
        if let Some(id) = evict {
            self.close(id);
        }
        self.next += 1;
        let id = self.next;
        self.open.insert(
            id,
            Slot {
                source,
                state: ConnState::Idle,
                since: now,
            },
        );
        *self.per_source.entry(source).or_default() += 1;
        Admission::Admit { id, evict }
    }

    fn oldest_idle(&self, source: Option<Source>) -> Option<u64> {
        self.open
            .iter()
            .filter(|(_, s)| s.state == ConnState::Idle)
            .filter(|(_, s)| source.is_none_or(|src| s.source == src))
            .min_by_key(|(id, s)| (s.since, **id))
            .map(|(id, _)| *id)
    }

    /// Connection `id` is now `state` (an upgraded one stays upgraded).
    pub fn set_state(&mut self, id: u64, state: ConnState, now: Instant) {
        if let Some(s) = self.open.get_mut(&id) {
            if s.state != state && s.state != ConnState::Upgraded {
                s.state = state;
                s.since = now;
            }
        }
    }

    /// Connection `id` is gone (closing an unknown or evicted id does nothing).
    pub fn close(&mut self, id: u64) {
        if let Some(s) = self.open.remove(&id) {
            if let Some(n) = self.per_source.get_mut(&s.source) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&s.source);
                }
            }
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Open connections from `source`.
    pub fn from_source(&self, source: Source) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Refused because their source was full of busy connections.
    pub refused_source: AtomicU64,
    /// Refused because the hub was full of busy connections.
    pub refused_total: AtomicU64,
    /// Idle connections closed to make room.
    pub evicted: AtomicU64,
    /// Closed for sending nothing, its TLS handshake or headers too slowly, or for not reading
    /// what it was sent.
    pub timed_out: AtomicU64,
}

/// The table behind a lock, with a way to tell each connection it was evicted.
pub struct Conns {
    limits: ConnLimits,
    // std Mutex: a few map operations per connection and request, never across an `.await`.
    inner: Mutex<Inner>,
    /// Counters.
    pub stats: ConnStats,
    emptied: tokio::sync::Notify,
}

struct Inner {
    table: ConnTable,
    evict: HashMap<u64, oneshot::Sender<()>>,
}

impl Conns {
    /// Connections bounded by `limits`.
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            inner: Mutex::new(Inner {
                table: ConnTable::default(),
                evict: HashMap::new(),
            }),
            stats: ConnStats::default(),
            emptied: tokio::sync::Notify::new(),
        })
    }

    /// The caps in force.
    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit a connection from `ip`: its permit, and a receiver that fires if it is evicted.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
    ) -> Result<(Arc<Permit>, oneshot::Receiver<()>), Refusal> {
        let mut inner = self.lock();
        match inner
            .table
            .admit(self.limits, Source::from(ip), Instant::now())
        {
            Admission::Refuse(r) => {
                let c = match r {
                    Refusal::SourceFull => &self.stats.refused_source,
                    Refusal::Full => &self.stats.refused_total,
                };
                c.fetch_add(1, Ordering::Relaxed);
                Err(r)
            }
            Admission::Admit { id, evict } => {
                if let Some(old) = evict {
                    if let Some(tx) = inner.evict.remove(&old) {
                        let _ = tx.send(());
                    }
                    self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                }
                let (tx, rx) = oneshot::channel();
                inner.evict.insert(id, tx);
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                Ok((
                    Arc::new(Permit {
                        conns: self.clone(),
                        id,
                    }),
                    rx,
                ))
            }
        }
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.lock().table.len()
    }

    /// Open connections from `ip`'s source now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.lock().table.from_source(Source::from(ip))
    }

    /// Wait until no connection is open, or `limit` passes; whether none is open.
    pub async fn wait_empty(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.emptied.notified();
            if self.open() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.open() == 0;
            }
        }
    }
}

/// A connection's place in the table; the place is freed when the last clone is dropped.
pub struct Permit {
    conns: Arc<Conns>,
    id: u64,
}

impl Permit {
    /// The connection is now `state`.
    pub fn set(&self, state: ConnState) {
        self.conns
            .lock()
            .table
            .set_state(self.id, state, Instant::now());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let empty = {
            let mut inner = self.conns.lock();
            inner.table.close(self.id);
            inner.evict.remove(&self.id);
            inner.table.is_empty()
        };
        if empty {
            self.conns.emptied.notify_waiters();
        }
    }
}

/// Marks its connection idle again when dropped (a response body finished or was abandoned).
pub struct BusyGuard(pub Arc<Permit>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.set(ConnState::Idle);
    }
}

/// A body that fails once its deadline passes: a request body's time is bounded as a whole,
/// not per chunk, so a client trickling one byte at a time cannot hold the connection.
/// Also carries an optional [`BusyGuard`] for response bodies.
pub struct Bounded<B> {
    inner: B,
    deadline: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
    _busy: Option<BusyGuard>,
}

impl<B> Bounded<B> {
    /// `inner`, failing `limit` from now.
    pub fn with_deadline(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Some((Box::pin(tokio::time::sleep(limit)), limit)),
            _busy: None,
        }
    }

    /// `inner`, marking its connection idle when done.
    pub fn with_guard(inner: B, guard: BusyGuard) -> Self {
        Self {
            inner,
            deadline: None,
            _busy: Some(guard),
        }
    }
}

/// The error of a body whose deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}; send it faster or smaller")]
pub struct BodyTimeout(pub Duration);

impl<B> Body for Bounded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(f) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(f.map(|r| r.map_err(Into::into)));
        }
        if let Some((sleep, limit)) = &mut self.deadline {
            if sleep.as_mut().poll(cx).is_ready() {
                let limit = *limit;
                self.deadline = None;
                return Poll::Ready(Some(Err(Box::new(BodyTimeout(limit)))));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnLimits = ConnLimits {
        total: 4,
        per_source: 2,
    };

    fn src(n: u8) -> Source {
        Source::from(IpAddr::from([192, 0, 2, n]))
    }

    fn id(a: Admission) -> u64 {
        match a {
            Admission::Admit { id, .. } => id,
            other => panic!("expected admission, got {other:?}"),
        }
    }

    #[test]
    fn a_full_source_evicts_its_own_oldest_idle_connection() {
        let t0 = Instant::now();
        let mut t = ConnTable::default();
        let a = id(t.admit(LIMITS, src(1), t0));
        let b = id(t.admit(LIMITS, src(1), t0 + Duration::from_secs(1)));
        // b is busy, a idle since t0: the third from the same source replaces a.
        t.set_state(b, ConnState::Busy, t0 + Duration::from_secs(2));
        let c = t.admit(LIMITS, src(1), t0 + Duration::from_secs(3));
        assert!(matches!(c, Admission::Admit { evict: Some(e), .. } if e == a));
        assert_eq!(t.from_source(src(1)), 2);
        // Now both are busy: the next one from that source is refused; another source is not.
        t.set_state(id(c), ConnState::Busy, t0 + Duration::from_secs(4));
        assert_eq!(
            t.admit(LIMITS, src(1), t0 + Duration::from_secs(5)),
            Admission::Refuse(Refusal::SourceFull)
        );
        assert!(matches!(
            t.admit(LIMITS, src(2), t0 + Duration::from_secs(5)),
            Admission::Admit { evict: None, .. }
        ));
    }

    #[test]
    fn a_full_hub_evicts_the_oldest_idle_connection_of_anyone() {
        let t0 = Instant::now();
        let mut t = ConnTable::default();
        let ids: Vec<u64> = (1..=4)
            .map(|n| id(t.admit(LIMITS, src(n), t0 + Duration::from_secs(n as u64))))
            .collect();
        // The oldest (source 1) is a WebSocket; source 2's is the oldest idle one.
        t.set_state(ids[0], ConnState::Upgraded, t0);
        t.set_state(ids[0], ConnState::Idle, t0); // an upgrade is for good
        let a = t.admit(LIMITS, src(9), t0 + Duration::from_secs(9));
        assert!(matches!(a, Admission::Admit { evict: Some(e), .. } if e == ids[1]));
        assert_eq!(t.len(), 4);
        for i in &ids[2..] {
            t.set_state(*i, ConnState::Busy, t0);
        }
        t.set_state(id(a), ConnState::Busy, t0);
        assert_eq!(
            t.admit(LIMITS, src(10), t0 + Duration::from_secs(10)),
            Admission::Refuse(Refusal::Full)
        );
        // One ends: room again.
        t.close(ids[2]);
        t.close(ids[2]);
        assert_eq!(t.len(), 3);
        assert!(matches!(
            t.admit(LIMITS, src(10), t0 + Duration::from_secs(11)),
            Admission::Admit { evict: None, .. }
        ));
    }

    #[test]
    fn ipv6_sources_are_counted_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::from(a), Source::from(b));
        assert_ne!(Source::from(a), Source::from(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(Source::from(mapped), src(1));
    }

    #[tokio::test]
    async fn permits_free_their_place_and_evictions_are_signalled() {
        let conns = Conns::new(ConnLimits {
            total: 2,
            per_source: 2,
        });
        let ip: IpAddr = [192, 0, 2, 1].into();
        let (p1, mut rx1) = conns.admit(ip).unwrap();
        let (p2, _rx2) = conns.admit(ip).unwrap();
        p2.set(ConnState::Busy);
        let (p3, _rx3) = conns.admit(ip).unwrap();
        assert!(rx1.try_recv().is_ok(), "the idle one was told to go");
        assert_eq!(conns.open(), 2);
        drop(p1); // its task ends: nothing more to free
        assert_eq!(conns.open(), 2);
        p3.set(ConnState::Busy);
        assert_eq!(conns.admit(ip).err(), Some(Refusal::SourceFull));
        drop(BusyGuard(p3.clone()));
        drop(p3);
        drop(p2);
        assert!(conns.wait_empty(Duration::from_secs(1)).await);
        assert_eq!(conns.stats.evicted.load(Ordering::Relaxed), 1);
        assert_eq!(conns.stats.refused_source.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_body_past_its_deadline_fails() {
        use futures::StreamExt;
        use http_body_util::BodyExt;
        // One byte, then nothing more: a slow client.
        let frames = futures::stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(
            Bytes::from_static(b"a"),
        ))])
        .chain(futures::stream::pending());
        let body = http_body_util::StreamBody::new(frames);
        let mut b = Bounded::with_deadline(body, Duration::from_millis(50));
        let first = b.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "a");
        let e = b.frame().await.unwrap().unwrap_err();
        assert!(e.to_string().contains("did not arrive"), "{e}");
    }
}
