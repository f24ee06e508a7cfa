//! The hub's own accept loop over hyper's HTTP/1 server: HTTPS and plain HTTP on one port,
//! connection caps, header and body timeouts, security headers, and a shutdown that waits
//! for the connections.
//!
//! One port speaks both: the first byte of a connection tells a TLS handshake (`0x16`) from
//! plain HTTP. Plain HTTP is served to loopback clients (the machine itself: `./ops/run`'s
//! `http://127.0.0.1:8080/`, a local Prometheus, a reverse proxy) and answered with a
//! redirect to `https://` on the same port for everyone else, so no second port is needed.
//!
//! What must stay true: every accepted socket holds a [`Permit`] until it is dropped (see
//! [`crate::limits`]); a client that sends nothing, or its TLS handshake or request headers
//! too slowly, is closed after `limits.header_timeout_secs`; a request body must arrive
//! within `limits.body_timeout_secs` of its headers; a client that stops reading what it is
//! sent (no write to it makes progress for `limits.write_timeout_secs`) is closed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

use crate::limits::{Bounded, BusyGuard, ConnState, Conns, Permit};
use crate::tls::Tls;
use crate::AppState;

/// How a request reached the hub: an extension on every request the accept loop serves.
/// A request without it (a router test) counts as plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// Over TLS.
    pub https: bool,
}

/// The Content-Security-Policy of every response: scripts, styles and connections from the
/// hub itself only, no inline script, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// HSTS over HTTPS: a year; browsers ignore it for IP addresses, and honour it for names.
pub const HSTS: &str = "max-age=31536000";

/// Set the security headers on `headers`, keeping any a handler set itself.
pub fn security_headers(headers: &mut HeaderMap, https: bool) {
    let set = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    for (name, value) in set {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    if https {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static(HSTS));
    }
}

/// The one middleware that sets the security headers on every response of the app.
pub async fn security_layer(req: Request, next: Next) -> Response {
    let https = req.extensions().get::<Transport>().is_some_and(|t| t.https);
    let mut res = next.run(req).await;
    security_headers(res.headers_mut(), https);
    res
}

/// Bytes left unsent in a socket below which it counts as writable again.
const UNSENT_LOW_WATER: u32 = 128 * 1024;

/// What every connection task shares.
struct Ctx {
    router: Router,
    tls: Option<Arc<Tls>>,
    conns: Arc<Conns>,
    header_timeout: Duration,
    body_timeout: Duration,
    write_timeout: Duration,
    /// Set when the hub stops: connections finish their request and close.
    stopping: watch::Receiver<bool>,
}

impl Ctx {
    fn new(
        router: Router,
        tls: Option<Arc<Tls>>,
        conns: Arc<Conns>,
        limits: &crate::config::LimitsConfig,
        stopping: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let secs = |s: u64| Duration::from_secs(s.max(1));
        Arc::new(Self {
            router,
            tls,
            conns,
            header_timeout: secs(limits.header_timeout_secs),
            body_timeout: secs(limits.body_timeout_secs),
            write_timeout: secs(limits.write_timeout_secs),
            stopping,
        })
    }
}

/// Serve the app on `listener` until `shutdown` completes; then stop accepting, end the
/// WebSockets and streams, let each connection finish its request (10 s at most), close
/// every WHIP/WHEP session and sign a last checkpoint of the record.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stopping) = watch::channel(false);
    let limits = &state.config.limits;
    let ctx = Ctx::new(
        crate::app(state.clone()),
        state.tls.clone(),
        state.conns.clone(),
        limits,
        stopping,
    );
    accept_loop(listener, &ctx, shutdown).await;
    // WebSockets and streams end on `closing`; the other connections after their request.
    let _ = state.closing.send(true);
    let _ = stop_tx.send(true);
    if !state.conns.wait_empty(Duration::from_secs(10)).await {
        tracing::warn!(
            open = state.conns.open(),
            "connections still open after 10 s; stopping anyway"
        );
    }
    state.close_sessions().await;
    // The background tasks end on `closing`: wait for them (the projector's last batch, a
    // follower's last command), then sign what the record holds.
    state.tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            running = state.tasks.len(),
            "background tasks still running after 10 s; stopping anyway"
        );
    }
    state.recording.checkpoint_now().await;
    Ok(())
}

/// Serve `/metrics` alone, in plain HTTP and with no token, on `listener` (the
/// `metrics_listen` address) until the hub closes. Its connections count towards the same
/// caps as the main address's.
pub async fn run_metrics(listener: tokio::net::TcpListener, state: AppState) {
    let limits = &state.config.limits;
    let mut closing = state.closing.subscribe();
    let ctx = Ctx::new(
        crate::metrics_app(state.clone()),
        None,
        state.conns.clone(),
        limits,
        state.closing.subscribe(),
    );
    accept_loop(listener, &ctx, async move {
        let _ = closing.wait_for(|c| *c).await;
    })
    .await;
}

/// Serve `router` alone, with no hub behind it (`dinh witness`), through the same accept loop:
/// the caps and timeouts of `limits`, the security headers, HTTPS when `tls` is given.
/// Returns when `shutdown` completes and the open connections have finished (10 s at most).
pub async fn run_router(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<Tls>>,
    limits: &crate::config::LimitsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Room for the process's own files besides the connections.
    let total = connections_cap(limits.connections, 64);
    let conns = Conns::new(crate::limits::ConnLimits {
        total,
        per_source: limits.connections_per_source.min(total),
    });
    let (stop_tx, stopping) = watch::channel(false);
    let ctx = Ctx::new(
        router.layer(axum::middleware::from_fn(security_layer)),
        tls,
        conns.clone(),
        limits,
        stopping,
    );
    accept_loop(listener, &ctx, shutdown).await;
    let _ = stop_tx.send(true);
    if !conns.wait_empty(Duration::from_secs(10)).await {
        tracing::warn!(
            open = conns.open(),
            "connections still open after 10 s; stopping anyway"
        );
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    ctx: &Arc<Ctx>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors (EMFILE/ENFILE) or memory: the connection caps
                    // should prevent it; wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match ctx.conns.admit(peer.ip()) {
            Ok((permit, evicted)) => {
                tokio::spawn(connection(ctx.clone(), stream, peer, permit, evicted));
            }
            Err(why) => {
                tracing::debug!(?why, "connection refused: at the cap");
                drop(stream);
            }
        }
    }
}

async fn connection(
    ctx: Arc<Ctx>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: Arc<Permit>,
    mut evicted: oneshot::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    // Writable again whenever less than this is left unsent: a client reading slowly (a
    // bad 4G link behind a large auto-tuned send buffer) shows progress often enough for
    // `limits.write_timeout_secs`; only one that stopped reading runs out of it.
    let _ = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(UNSENT_LOW_WATER);
    let mut first = [0u8; 1];
    let sniffed = tokio::select! {
        r = tokio::time::timeout(ctx.header_timeout, stream.peek(&mut first)) => r,
        _ = &mut evicted => return,
    };
    match sniffed {
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => return,
        Err(_) => {
            ctx.conns.stats.timed_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    let io = Counted {
        inner: stream,
        _permit: permit.clone(),
        write_timeout: ctx.write_timeout,
        stalled: None,
        conns: ctx.conns.clone(),
    };
    if first[0] == 0x16 {
        let Some(tls) = &ctx.tls else {
            return; // TLS is off: nothing to answer a handshake with
        };
        let accepted = tokio::select! {
            r = tokio::time::timeout(ctx.header_timeout, tls.acceptor.accept(io)) => r,
            _ = &mut evicted => return,
        };
        match accepted {
            Ok(Ok(tls_stream)) => {
                serve(ctx, TokioIo::new(tls_stream), peer, true, permit, evicted).await
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => {
                ctx.conns.stats.timed_out.fetch_add(1, Ordering::Relaxed);
            }
        }
    } else if ctx.tls.is_some() && !from_this_machine(&io.inner, peer) {
        redirect(ctx, TokioIo::new(io), permit, evicted).await
    } else {
        serve(ctx, TokioIo::new(io), peer, false, permit, evicted).await
    }
}

/// A loopback peer, or one whose address is the socket's own (this machine reaching its
/// LAN address): plain HTTP from there never crossed a network.
fn from_this_machine(stream: &TcpStream, peer: SocketAddr) -> bool {
    let loopback = match peer.ip() {
        std::net::IpAddr::V4(v) => v.is_loopback(),
        std::net::IpAddr::V6(v) => {
            v.is_loopback() || v.to_ipv4_mapped().is_some_and(|m| m.is_loopback())
        }
    };
    loopback || stream.local_addr().is_ok_and(|l| l.ip() == peer.ip())
}

fn http1(ctx: &Ctx) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(ctx.header_timeout)
        // Headers beyond 16 KiB are refused (431): no page or client needs more.
        .max_buf_size(16 * 1024)
        .max_headers(64);
    b
}

/// Serve the app on one connection.
async fn serve<I>(
    ctx: Arc<Ctx>,
    io: TokioIo<I>,
    peer: SocketAddr,
    https: bool,
    permit: Arc<Permit>,
    mut evicted: oneshot::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let c = ctx.clone();
    let p = permit.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let ctx = c.clone();
        let permit = p.clone();
        async move { Ok::<_, Infallible>(handle(&ctx, permit, peer, https, req).await) }
    });
    let conn = http1(&ctx).serve_connection(io, service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut stopping = ctx.stopping.clone();
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                if e.is_timeout() {
                    ctx.conns.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(error = %e, "connection ended");
            }
            return;
        }
        _ = &mut evicted => return,
        _ = stopping.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
}

async fn handle(
    ctx: &Ctx,
    permit: Arc<Permit>,
    peer: SocketAddr,
    https: bool,
    req: Request<Incoming>,
) -> Response {
    use tower_service::Service;
    permit.set(ConnState::Busy);
    let mut req = req.map(|b| Body::new(Bounded::with_deadline(b, ctx.body_timeout)));
    req.extensions_mut().insert(Transport { https });
    req.extensions_mut().insert(ConnectInfo(peer));
    let mut router = ctx.router.clone();
    let res = match router.call(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        permit.set(ConnState::Upgraded);
        return res;
    }
    // Idle again once the response body is sent (an SSE stream stays busy while it runs).
    res.map(|b| Body::new(Bounded::with_guard(b, BusyGuard(permit))))
}

/// Plain HTTP from another machine: every request is redirected to the same URL over HTTPS.
async fn redirect<I>(
    ctx: Arc<Ctx>,
    io: TokioIo<I>,
    permit: Arc<Permit>,
    mut evicted: oneshot::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let permit = permit.clone();
        async move {
            permit.set(ConnState::Busy);
            let res = to_https(&req);
            permit.set(ConnState::Idle);
            Ok::<_, Infallible>(res)
        }
    });
    let conn = http1(&ctx).serve_connection(io, service);
    tokio::select! {
        _ = conn => {}
        _ = &mut evicted => {}
    }
}

/// The redirect for a plain-HTTP request (308 keeps the method and body: a WHIP `POST`
/// is repeated over HTTPS).
pub fn to_https<B>(req: &axum::http::Request<B>) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let mut res = match host {
        Some(host) => {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let location = format!("https://{host}{path}");
            match HeaderValue::from_str(&location) {
                Ok(v) => (
                    StatusCode::PERMANENT_REDIRECT,
                    [(header::LOCATION, v)],
                    "Hãy dùng HTTPS / Use HTTPS\n",
                )
                    .into_response(),
                Err(_) => bad_host(),
            }
        }
        None => bad_host(),
    };
    security_headers(res.headers_mut(), false);
    res
}

fn bad_host() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "Thiếu hoặc sai tiêu đề Host / a valid Host header is required\n",
    )
        .into_response()
}

/// A socket that holds its connection's permit: the place in the connection table is kept
/// until the socket itself is dropped, after a WebSocket upgrade too. A write (or flush)
/// that stays pending for `write_timeout` fails with `TimedOut`: the client has stopped
/// reading, and the connection is closed rather than held with its buffers.
struct Counted<S> {
    inner: S,
    _permit: Arc<Permit>,
    write_timeout: Duration,
    /// Armed when a write is first left pending; disarmed by any write that completes.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    conns: Arc<Conns>,
}

impl<S> Counted<S> {
    fn deadline<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let t = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
        if stalled.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.stalled = None;
        self.conns.stats.timed_out.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("connection closed: the client stopped reading");
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client stopped reading",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        this.deadline(cx, r)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_flush(cx);
        this.deadline(cx, r)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_shutdown(cx);
        this.deadline(cx, r)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.deadline(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The cap on connections the process's open-file limit leaves room for: the soft
/// `RLIMIT_NOFILE` (from `/proc/self/limits`) less `reserve` for the record, the media ports,
/// loudspeaker sockets and files; `configured` when the limit cannot be read.
pub fn connections_cap(configured: usize, reserve: usize) -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        });
    match soft {
        Some(n) => configured.min(n.saturating_sub(reserve).max(16)),
        None => configured,
    }
}
