//! One UDP port, and one TCP port, for every peer connection.
//!
//! webrtc 0.21 binds a UDP socket per peer connection. A commune's firewall or 4G router should
//! forward one port, not thousands, so the SFU owns one socket ([`UdpMux`]) and gives each peer
//! connection a [`Runtime`] ([`MuxRuntime`]) whose UDP "sockets" are views onto it. The driver of
//! webrtc-rs binds an ephemeral socket as before; the runtime closes it at once and hands back a
//! view that keeps the ephemeral address as its name (the connection's ICE agent knows its host
//! candidate by that name) while all traffic goes through the shared port. The SDP sent to the
//! client carries the shared address instead (see [`crate::sdp::rewrite_candidates`]).
//!
//! Routing, as Pion's and LiveKit's UDP muxes do it: a STUN binding request names the
//! connection by the local ICE username fragment in its USERNAME attribute; the first such
//! request from a remote address binds that address to the connection, and every later packet
//! from it (DTLS, SRTP, SRTCP, STUN) follows the binding. Anything else is garbage: dropped and
//! counted, never a panic, never a reply.
//!
//! ICE-TCP (RFC 6544) goes through one shared TCP port the same way: see [`tcp`].
//!
//! Decision record: docs/decisions/0001-one-udp-port.md.

pub mod tcp;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

/// Packets waiting for one connection's driver before new ones are dropped. At 2 Mbit/s of
/// video that is about half a second; a driver that falls further behind has stalled.
const CONN_QUEUE: usize = 512;

/// Counters of the mux, for metrics and tests.
#[derive(Debug, Default)]
pub struct MuxStats {
    /// Datagrams delivered to a connection.
    pub delivered: AtomicU64,
    /// Datagrams from an address that no connection claims and that name no known ufrag.
    pub unroutable: AtomicU64,
    /// Datagrams dropped because a connection's queue was full.
    pub overflow: AtomicU64,
}

/// A shared UDP socket and the routing table over it.
pub struct UdpMux {
    socket: tokio::net::UdpSocket,
    advertised: SocketAddr,
    routes: Mutex<Routes>,
    next_id: AtomicU64,
    /// The shared TCP port's advertised address, once a [`tcp::TcpMux`] serves this mux.
    tcp_advertised: OnceLock<SocketAddr>,
    /// Counters, for `/metrics` and the tests.
    pub stats: MuxStats,
}

impl fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpMux")
            .field("advertised", &self.advertised)
            .finish_non_exhaustive()
    }
}

// The routing table is behind a std Mutex: it is touched once per datagram for a hash lookup
// and never held across an `.await`.
#[derive(Default)]
struct Routes {
    by_ufrag: HashMap<String, Arc<ConnQueue>>,
    by_addr: HashMap<SocketAddr, Arc<ConnQueue>>,
}

struct ConnQueue {
    id: u64,
    inner: Mutex<QueueInner>,
    /// ICE-TCP streams the TCP mux routed to this connection.
    tcp: tcp::Accepts,
}

#[derive(Default)]
struct QueueInner {
    packets: VecDeque<(Bytes, SocketAddr)>,
    waker: Option<Waker>,
    closed: bool,
}

impl UdpMux {
    /// Bind the shared socket. `advertised` replaces the bound address in candidates (a
    /// public address in front of NAT); `None` advertises the bound address.
    pub async fn bind(
        addr: SocketAddr,
        advertised_ip: Option<std::net::IpAddr>,
    ) -> io::Result<Arc<Self>> {
        let socket = tokio::net::UdpSocket::bind(addr).await?;
        let advertised = advertise(socket.local_addr()?, advertised_ip, "UDP")?;
        Ok(Arc::new(Self {
            socket,
            advertised,
            routes: Mutex::new(Routes::default()),
            next_id: AtomicU64::new(1),
            tcp_advertised: OnceLock::new(),
            stats: MuxStats::default(),
        }))
    }

    /// The shared TCP port's advertised address, when ICE-TCP is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_advertised.get().copied()
    }

    /// The address clients send to.
    pub fn advertised_addr(&self) -> SocketAddr {
        self.advertised
    }

    /// The address the socket is bound to (the advertised one may differ, behind NAT).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receive and route datagrams until the socket fails. Run it as one task.
    pub async fn run(self: Arc<Self>) {
        let mut buf = vec![0u8; 1500 * 2];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(v) => v,
                Err(e) if is_transient(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "UDP mux socket failed");
                    return;
                }
            };
            self.route(Bytes::copy_from_slice(&buf[..n]), from);
        }
    }

    /// Route one datagram (public so tests and fuzzing can drive the mux without sockets).
    pub fn route(&self, packet: Bytes, from: SocketAddr) {
        let conn = {
            let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            let claimed =
                stun_request_ufrag(&packet).and_then(|ufrag| routes.by_ufrag.get(ufrag).cloned());
            match claimed {
                Some(conn) => {
                    routes.by_addr.insert(from, conn.clone());
                    Some(conn)
                }
                None => routes.by_addr.get(&from).cloned(),
            }
        };
        let Some(conn) = conn else {
            self.stats.unroutable.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut q = conn.inner.lock().unwrap_or_else(|p| p.into_inner());
        if q.closed {
            return;
        }
        if q.packets.len() >= CONN_QUEUE {
            self.stats.overflow.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.packets.push_back((packet, from));
        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(w) = q.waker.take() {
            w.wake();
        }
    }

    /// A runtime for one new peer connection. Register its ICE ufrag with
    /// [`MuxRuntime::register_ufrag`] once the local description is set.
    pub fn runtime(self: &Arc<Self>) -> Arc<MuxRuntime> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Arc::new(MuxRuntime {
            inner: TokioRuntime,
            mux: self.clone(),
            queue: Arc::new(ConnQueue {
                id,
                inner: Mutex::new(QueueInner::default()),
                tcp: tcp::Accepts::default(),
            }),
        })
    }

    fn register(&self, ufrag: &str, queue: &Arc<ConnQueue>) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.by_ufrag.insert(ufrag.to_owned(), queue.clone());
    }

    fn connection_for(&self, ufrag: &str) -> Option<Arc<ConnQueue>> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.by_ufrag.get(ufrag).cloned()
    }

    fn unregister(&self, id: u64) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.by_ufrag.retain(|_, q| q.id != id);
        routes.by_addr.retain(|_, q| q.id != id);
    }

    /// How many remote addresses and ufrags are routed (for leak tests).
    pub fn route_count(&self) -> (usize, usize) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        (routes.by_ufrag.len(), routes.by_addr.len())
    }
}

/// The address clients reach for a socket bound at `local`: `advertised_ip` when set, else the
/// bound address, which must then not be a wildcard.
fn advertise(
    local: SocketAddr,
    advertised_ip: Option<std::net::IpAddr>,
    what: &str,
) -> io::Result<SocketAddr> {
    let ip = match advertised_ip {
        Some(ip) => ip,
        None if local.ip().is_unspecified() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the {what} port is bound to a wildcard address: set rtc.public_ip to the address clients reach"),
            ))
        }
        None => local.ip(),
    };
    Ok(SocketAddr::new(ip, local.port()))
}

fn is_transient(e: &io::Error) -> bool {
    // ICMP port unreachable from a vanished peer surfaces as ConnectionRefused/Reset on Linux.
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// The local ufrag named by a STUN binding request (RFC 8489 §6, RFC 8445 §7.2.2: USERNAME is
/// "local:remote" from the receiver's point of view). `None` for anything else.
pub fn stun_request_ufrag(p: &[u8]) -> Option<&str> {
    if p.len() < 20 || p[0] & 0xc0 != 0 {
        return None;
    }
    let msg_type = u16::from_be_bytes([p[0], p[1]]);
    let len = u16::from_be_bytes([p[2], p[3]]) as usize;
    if msg_type != 0x0001 || p[4..8] != [0x21, 0x12, 0xa4, 0x42] || 20 + len > p.len() {
        return None;
    }
    let mut i = 20;
    let end = 20 + len;
    while i + 4 <= end {
        let at = u16::from_be_bytes([p[i], p[i + 1]]);
        let al = u16::from_be_bytes([p[i + 2], p[i + 3]]) as usize;
        let v = p.get(i + 4..i + 4 + al)?;
        if at == 0x0006 {
            let user = std::str::from_utf8(v).ok()?;
            return user.split(':').next().filter(|u| !u.is_empty());
        }
        i += 4 + al.div_ceil(4) * 4;
    }
    None
}

/// The [`Runtime`] of one peer connection on the mux: Tokio for everything but UDP.
pub struct MuxRuntime {
    inner: TokioRuntime,
    mux: Arc<UdpMux>,
    queue: Arc<ConnQueue>,
}

impl fmt::Debug for MuxRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxRuntime")
            .field("conn", &self.queue.id)
            .finish()
    }
}

impl MuxRuntime {
    /// Route STUN requests naming `ufrag` to this connection (call after every local
    /// description: an ICE restart changes the ufrag).
    pub fn register_ufrag(&self, ufrag: &str) {
        self.mux.register(ufrag, &self.queue);
    }

    /// Drop this connection's routes and queue; further datagrams for it are unroutable.
    pub fn close(&self) {
        self.mux.unregister(self.queue.id);
        let mut q = self.queue.inner.lock().unwrap_or_else(|p| p.into_inner());
        q.closed = true;
        q.packets.clear();
        if let Some(w) = q.waker.take() {
            w.wake();
        }
    }

    /// The shared socket's advertised address.
    pub fn advertised_addr(&self) -> SocketAddr {
        self.mux.advertised
    }

    /// The shared TCP port's advertised address, when ICE-TCP is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.mux.tcp_addr()
    }
}

impl Drop for MuxRuntime {
    fn drop(&mut self) {
        self.mux.unregister(self.queue.id);
    }
}

impl Runtime for MuxRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(
        &self,
        pool: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        // The reactor pool gives each connection a dedicated thread; on the mux the I/O is
        // the shared socket's task, so the driver runs as an ordinary task.
        let _ = pool;
        self.inner.spawn(future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        // Keep the ephemeral address as the view's name and close the socket itself: no
        // traffic ever reaches it, and it must not hold a port open.
        let name = socket.local_addr()?;
        drop(socket);
        Ok(Arc::new(MuxSocket {
            name,
            mux: self.mux.clone(),
            queue: self.queue.clone(),
        }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        if self.mux.tcp_addr().is_none() {
            return self.inner.wrap_tcp_listener(listener);
        }
        // As for UDP: keep the ephemeral address as the listener's name (the ICE agent's TCP
        // host candidate) and free the port; streams come from the shared TCP port.
        let name = listener.local_addr()?;
        drop(listener);
        Ok(Arc::new(tcp::MuxTcpListener::new(name, self.queue.clone())))
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn name(&self) -> &'static str {
        "dinh-mux"
    }
}

struct MuxSocket {
    name: SocketAddr,
    mux: Arc<UdpMux>,
    queue: Arc<ConnQueue>,
}

impl fmt::Debug for MuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxSocket")
            .field("name", &self.name)
            .finish()
    }
}

impl AsyncUdpSocket for MuxSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.name)
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        match self
            .mux
            .socket
            .poll_send_to(cx, transmit.contents, transmit.destination)
        {
            // A peer that went away answers with ICMP; that is not this connection's failure.
            Poll::Ready(Err(e)) if is_transient(&e) => Poll::Ready(Ok(transmit.contents.len())),
            other => other,
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut q = self.queue.inner.lock().unwrap_or_else(|p| p.into_inner());
        if q.closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "connection left the mux",
            )));
        }
        let mut n = 0;
        while n < bufs.len().min(meta.len()) {
            let Some((pkt, from)) = q.packets.pop_front() else {
                break;
            };
            let len = pkt.len().min(bufs[n].len());
            bufs[n][..len].copy_from_slice(&pkt[..len]);
            let mut m = RecvMeta::default();
            m.addr = from;
            m.len = len;
            m.stride = len.max(1);
            m.dst_ip = Some(self.name.ip());
            meta[n] = m;
            n += 1;
        }
        if n > 0 {
            return Poll::Ready(Ok(n));
        }
        q.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN binding request with only a USERNAME attribute.
    pub(crate) fn binding_request(username: &str) -> Vec<u8> {
        let u = username.as_bytes();
        let padded = u.len().div_ceil(4) * 4;
        let mut p = vec![0x00, 0x01];
        p.extend_from_slice(&((4 + padded) as u16).to_be_bytes());
        p.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        p.extend_from_slice(&[7; 12]);
        p.extend_from_slice(&[0x00, 0x06]);
        p.extend_from_slice(&(u.len() as u16).to_be_bytes());
        p.extend_from_slice(u);
        p.resize(20 + 4 + padded, 0);
        p
    }

    #[test]
    fn parses_ufrag_from_binding_request() {
        assert_eq!(
            stun_request_ufrag(&binding_request("abcd:wxyz")),
            Some("abcd")
        );
        assert_eq!(stun_request_ufrag(&binding_request(":x")), None);
        // A binding success response (0x0101) does not claim a route.
        let mut resp = binding_request("abcd:wxyz");
        resp[1] = 0x01;
        resp[0] = 0x01;
        assert_eq!(stun_request_ufrag(&resp), None);
        // Truncated and garbage input.
        let req = binding_request("abcd:wxyz");
        for cut in 0..req.len() {
            let _ = stun_request_ufrag(&req[..cut]);
        }
        assert_eq!(stun_request_ufrag(&[0xff; 40]), None);
    }

    #[tokio::test]
    async fn routes_by_ufrag_then_by_address() {
        let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let a = mux.runtime();
        let b = mux.runtime();
        a.register_ufrag("aaaa");
        b.register_ufrag("bbbb");
        let pa: SocketAddr = "127.0.0.1:1111".parse().unwrap();
        let pb: SocketAddr = "127.0.0.1:2222".parse().unwrap();
        mux.route(Bytes::from(binding_request("bbbb:zz")), pb);
        mux.route(Bytes::from(binding_request("aaaa:zz")), pa);
        mux.route(Bytes::from_static(b"dtls-for-a"), pa);
        mux.route(
            Bytes::from_static(b"garbage"),
            "127.0.0.1:3333".parse().unwrap(),
        );
        assert_eq!(mux.stats.unroutable.load(Ordering::Relaxed), 1);
        let qa = a.queue.inner.lock().unwrap();
        assert_eq!(qa.packets.len(), 2);
        assert_eq!(&qa.packets[1].0[..], b"dtls-for-a");
        drop(qa);
        assert_eq!(b.queue.inner.lock().unwrap().packets.len(), 1);
        a.close();
        mux.route(Bytes::from_static(b"late"), pa);
        assert_eq!(mux.stats.unroutable.load(Ordering::Relaxed), 2);
        drop(b);
        assert_eq!(mux.route_count(), (0, 0));
    }
}
