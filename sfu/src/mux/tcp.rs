//! One TCP port for every connection's ICE-TCP (RFC 6544), for networks that block UDP.
//!
//! webrtc 0.21 listens on a TCP port per peer connection, as it binds a UDP socket per
//! connection. The hub listens on one port instead ([`TcpMux`]) and routes each accepted
//! stream as its UDP mux routes datagrams: an ICE-TCP client (the active side) opens with a
//! connectivity check, an RFC 4571 frame (a 16-bit length, then the packet) holding a STUN
//! binding request whose USERNAME names the connection by its local ufrag. The mux reads that
//! one frame, hands the stream to the connection's `MuxTcpListener`, and the frame is
//! replayed as the stream's first bytes, so webrtc-rs's own framing and ICE code see the
//! stream exactly as their own listener would have given it.
//!
//! A stream that does not open with such a request within [`FIRST_FRAME_TIMEOUT`], names no
//! known connection, or arrives when [`MAX_PENDING`] streams are already being read is closed
//! and counted. Nothing else is read or answered.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, Semaphore};
use webrtc::runtime::{AsyncTcpListener, AsyncTcpStream};

use super::{advertise, stun_request_ufrag, ConnQueue, UdpMux};

/// How long a new stream has to send its first frame.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams read at once before their first frame; more are closed at once.
pub const MAX_PENDING: usize = 256;
/// Largest first frame accepted. A binding request with ICE attributes is about 100 bytes.
const MAX_FIRST_FRAME: usize = 1500;
/// Streams routed to one connection and not yet taken by its driver.
const ACCEPT_QUEUE: usize = 4;

/// Counters of the TCP mux, for metrics and tests.
#[derive(Debug, Default)]
pub struct TcpMuxStats {
    /// Streams handed to a connection.
    pub routed: AtomicU64,
    /// Streams closed: no binding request in time, an unknown ufrag, too many pending, or a
    /// connection that was not taking streams.
    pub refused: AtomicU64,
}

/// The shared ICE-TCP listener.
pub struct TcpMux {
    listener: tokio::net::TcpListener,
    advertised: SocketAddr,
    udp: Arc<UdpMux>,
    pending: Arc<Semaphore>,
    /// Counters, for `/metrics` and the tests.
    pub stats: TcpMuxStats,
}

impl fmt::Debug for TcpMux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpMux")
            .field("advertised", &self.advertised)
            .finish_non_exhaustive()
    }
}

/// Why a stream was closed (for the trace log).
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("no first frame: {0}")]
    Read(#[from] io::Error),
    #[error("no first frame within {FIRST_FRAME_TIMEOUT:?}")]
    Timeout,
    #[error("first frame of {0} bytes is not a binding request")]
    Size(usize),
    #[error("first frame is not a STUN binding request with a USERNAME")]
    NotBindingRequest,
    #[error("the binding request names no connection")]
    UnknownUfrag,
    #[error("the connection is not taking streams")]
    NotTaking,
}

impl TcpMux {
    /// Listen on `addr` and serve ICE-TCP for every connection of `udp`. `advertised_ip`
    /// replaces the bound address in candidates, as for the UDP port.
    pub async fn bind(
        addr: SocketAddr,
        advertised_ip: Option<std::net::IpAddr>,
        udp: &Arc<UdpMux>,
    ) -> io::Result<Arc<Self>> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let advertised = advertise(listener.local_addr()?, advertised_ip, "TCP")?;
        udp.tcp_advertised.set(advertised).map_err(|_| {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "this mux already has a TCP port",
            )
        })?;
        Ok(Arc::new(Self {
            listener,
            advertised,
            udp: udp.clone(),
            pending: Arc::new(Semaphore::new(MAX_PENDING)),
            stats: TcpMuxStats::default(),
        }))
    }

    /// The address clients connect to.
    pub fn advertised_addr(&self) -> SocketAddr {
        self.advertised
    }

    /// The address the listener is bound to (the advertised one may differ, behind NAT).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept and route streams until the listener fails. Run it as one task.
    pub async fn run(self: Arc<Self>) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(v) => v,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "ICE-TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = self.pending.clone().try_acquire_owned() else {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let mux = self.clone();
            tokio::spawn(async move {
                let result = tokio::time::timeout(FIRST_FRAME_TIMEOUT, mux.admit(stream, peer))
                    .await
                    .unwrap_or(Err(Refusal::Timeout));
                drop(permit);
                match result {
                    Ok(()) => mux.stats.routed.fetch_add(1, Ordering::Relaxed),
                    Err(why) => {
                        tracing::debug!(%why, "ICE-TCP stream closed");
                        mux.stats.refused.fetch_add(1, Ordering::Relaxed)
                    }
                };
            });
        }
    }

    /// Read the first frame of `stream` and hand the stream to the connection it names.
    async fn admit(
        &self,
        mut stream: tokio::net::TcpStream,
        peer: SocketAddr,
    ) -> Result<(), Refusal> {
        let _ = stream.set_nodelay(true);
        let mut first = vec![0u8; 2];
        stream.read_exact(&mut first).await?;
        let len = u16::from_be_bytes([first[0], first[1]]) as usize;
        if !(20..=MAX_FIRST_FRAME).contains(&len) {
            return Err(Refusal::Size(len));
        }
        first.resize(2 + len, 0);
        stream.read_exact(&mut first[2..]).await?;
        let conn = self.route(&first[2..])?;
        conn.tcp.offer(Accepted {
            stream,
            peer,
            first,
        })
    }

    /// The connection a first frame names.
    fn route(&self, frame: &[u8]) -> Result<Arc<ConnQueue>, Refusal> {
        let ufrag = stun_request_ufrag(frame).ok_or(Refusal::NotBindingRequest)?;
        self.udp.connection_for(ufrag).ok_or(Refusal::UnknownUfrag)
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// A stream routed to a connection, with the frame read to route it.
struct Accepted {
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    first: Vec<u8>,
}

/// One connection's queue of routed streams.
pub(super) struct Accepts {
    tx: mpsc::Sender<Accepted>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Accepted>>,
}

impl Default for Accepts {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        Self {
            tx,
            rx: tokio::sync::Mutex::new(rx),
        }
    }
}

impl Accepts {
    fn offer(&self, accepted: Accepted) -> Result<(), Refusal> {
        self.tx.try_send(accepted).map_err(|_| Refusal::NotTaking)
    }
}

/// What a connection's ICE agent sees as its TCP listener: streams the [`TcpMux`] routed to
/// it, under the name of the port the driver bound and the runtime closed.
pub(super) struct MuxTcpListener {
    name: SocketAddr,
    conn: Arc<ConnQueue>,
}

impl MuxTcpListener {
    pub(super) fn new(name: SocketAddr, conn: Arc<ConnQueue>) -> Self {
        Self { name, conn }
    }
}

impl fmt::Debug for MuxTcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxTcpListener")
            .field("name", &self.name)
            .finish()
    }
}

impl AsyncTcpListener for MuxTcpListener {
    fn accept<'a>(
        &'a self,
    ) -> Pin<Box<dyn Future<Output = io::Result<(Arc<dyn AsyncTcpStream>, SocketAddr)>> + Send + 'a>>
    {
        Box::pin(async move {
            let next = self.conn.tcp.rx.lock().await.recv().await;
            let a = next.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotConnected, "connection left the mux")
            })?;
            let peer = a.peer;
            let (read, write) = a.stream.into_split();
            let stream = MuxTcpStream {
                replay: Mutex::new(a.first),
                read,
                write: tokio::sync::Mutex::new(write),
                name: self.name,
                peer,
            };
            Ok((Arc::new(stream) as Arc<dyn AsyncTcpStream>, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.name)
    }
}

/// A routed stream: first the frame the mux read, then the socket.
struct MuxTcpStream {
    replay: Mutex<Vec<u8>>,
    read: OwnedReadHalf,
    // Writes are whole RFC 4571 frames; the lock keeps two of them from interleaving.
    write: tokio::sync::Mutex<OwnedWriteHalf>,
    name: SocketAddr,
    peer: SocketAddr,
}

impl fmt::Debug for MuxTcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxTcpStream")
            .field("name", &self.name)
            .field("peer", &self.peer)
            .finish()
    }
}

impl MuxTcpStream {
    /// Copy replayed bytes into `buf`; 0 when there are none left.
    fn take_replay(&self, buf: &mut [u8]) -> usize {
        let mut replay = self.replay.lock().unwrap_or_else(|p| p.into_inner());
        let n = replay.len().min(buf.len());
        buf[..n].copy_from_slice(&replay[..n]);
        replay.drain(..n);
        n
    }
}

impl AsyncTcpStream for MuxTcpStream {
    fn read<'a, 'b>(
        &'a self,
        buf: &'b mut [u8],
    ) -> Pin<Box<dyn Future<Output = io::Result<usize>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move {
            let n = self.take_replay(buf);
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            loop {
                self.read.readable().await?;
                match self.read.try_read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
        })
    }

    fn write_all<'a, 'b>(
        &'a self,
        buf: &'b [u8],
    ) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move { self.write.lock().await.write_all(buf).await })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.name)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::binding_request;
    use super::*;

    fn framed(packet: &[u8]) -> Vec<u8> {
        let mut f = (packet.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(packet);
        f
    }

    /// Wait until the mux has decided about `n` streams.
    async fn decided(tcp: &TcpMux, n: u64) {
        for _ in 0..500 {
            let s = &tcp.stats;
            if s.routed.load(Ordering::Relaxed) + s.refused.load(Ordering::Relaxed) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the mux did not decide about {n} streams");
    }

    #[tokio::test]
    async fn routes_a_stream_by_its_first_binding_request_and_replays_it() {
        let (udp, tcp) = crate::testkit::loopback_muxes().await;
        let a = udp.runtime();
        let b = udp.runtime();
        a.register_ufrag("aaaa");
        b.register_ufrag("bbbb");
        assert_eq!(udp.tcp_addr(), Some(tcp.advertised_addr()));
        let listener_b = MuxTcpListener::new("127.0.0.1:9".parse().unwrap(), b.queue.clone());

        let mut client = tokio::net::TcpStream::connect(tcp.local_addr().unwrap())
            .await
            .unwrap();
        let request = framed(&binding_request("bbbb:rem"));
        client.write_all(&request).await.unwrap();
        client.write_all(&framed(b"after")).await.unwrap();

        let (stream, peer) = tokio::time::timeout(Duration::from_secs(5), listener_b.accept())
            .await
            .expect("b accepts the stream")
            .unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        // The ICE agent knows its candidate by the listener's name.
        assert_eq!(
            stream.local_addr().unwrap(),
            "127.0.0.1:9".parse::<SocketAddr>().unwrap()
        );
        let mut got = Vec::new();
        let want = request.len() + 7;
        while got.len() < want {
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended early");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(
            &got[..request.len()],
            &request[..],
            "the first frame is replayed"
        );
        assert_eq!(&got[request.len()..], &framed(b"after")[..]);
        // Writes reach the client.
        stream.write_all(&framed(b"reply")).await.unwrap();
        let mut reply = [0u8; 7];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, &framed(b"reply")[..]);
        assert_eq!(tcp.stats.routed.load(Ordering::Relaxed), 1);
        // a got nothing.
        assert!(a.queue.tcp.rx.lock().await.try_recv().is_err());
    }

    #[tokio::test]
    async fn closes_garbage_and_unknown_streams() {
        let (udp, tcp) = crate::testkit::loopback_muxes().await;
        let a = udp.runtime();
        a.register_ufrag("aaaa");
        let addr = tcp.local_addr().unwrap();
        let cases: Vec<Vec<u8>> = vec![
            // HTTP, not ICE.
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            // A frame too short to be STUN.
            framed(b"tiny"),
            // A frame that claims 60 kB.
            vec![0xea, 0x60, 1, 2, 3],
            // A frame that claims 100 bytes and ends after 3.
            vec![0x00, 0x64, 1, 2, 3],
            // A binding request for a connection that does not exist.
            framed(&binding_request("zzzz:rem")),
            // A STUN frame that is not a binding request.
            framed(&[0u8; 40]),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(bytes).await.unwrap();
            // Close our side: a frame cut short ends there.
            c.shutdown().await.unwrap();
            decided(&tcp, i as u64 + 1).await;
            let mut rest = Vec::new();
            let n = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
                .await
                .expect("the mux closes the stream")
                .unwrap_or(0);
            assert_eq!(n, 0, "case {i}: nothing is answered");
        }
        assert_eq!(
            tcp.stats.refused.load(Ordering::Relaxed),
            cases.len() as u64
        );
        assert_eq!(tcp.stats.routed.load(Ordering::Relaxed), 0);
        assert!(a.queue.tcp.rx.lock().await.try_recv().is_err());
        // A closed connection takes no streams.
        a.close();
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(&framed(&binding_request("aaaa:rem")))
            .await
            .unwrap();
        decided(&tcp, cases.len() as u64 + 1).await;
        assert_eq!(tcp.stats.routed.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_second_tcp_port_on_one_mux_is_refused() {
        let (udp, _tcp) = crate::testkit::loopback_muxes().await;
        let err = TcpMux::bind("127.0.0.1:0".parse().unwrap(), None, &udp)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }
}
