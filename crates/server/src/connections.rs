//! The listener's own accept loop, so that idle and slow clients cannot take the node
//! down (issue 18, point 1: 20,000 idle connections filled the descriptor limit and the
//! log filled with `accept error: Too many open files`).
//!
//! - **Caps.** At most `connections_max` TCP connections are open at once and at most
//!   `connections_per_address_max` from one address (an IPv6 /64 is one address). A
//!   connection over a cap is accepted and closed at once, so it leaves the kernel's
//!   backlog instead of filling it. The slot is held by the socket itself (`Counted`), so
//!   a WebSocket keeps counting after its upgrade, until the socket closes.
//! - **Time-outs.** A connection must send a complete request head within
//!   `header_read_timeout` of opening (or of the first byte of a later request), and a
//!   kept-alive connection silent for `idle_timeout` between requests is closed. hyper's
//!   own header timer also runs while a connection is idle, so it would merge the two;
//!   this module keeps them apart with a watcher per connection instead.
//! - **Back-off.** Accept errors that mean "out of descriptors or memory" (EMFILE,
//!   ENFILE, ENOBUFS, ENOMEM) pause accepting, doubling from 10 ms to 1 s, and are logged
//!   at most once every 10 s with how many there were, instead of a hot loop.
//! - **Shutdown.** When `stopping` turns true, accepting stops, every connection is asked
//!   to finish its request in flight and close, and `serve` returns when all have closed
//!   (the caller bounds that by `PLAZA_SHUTDOWN_GRACE_SECONDS`). Upgraded WebSockets are
//!   not waited for, as with `axum::serve`.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// The cap on connections when the descriptor limit allows more (or is unknown).
pub const CONNECTIONS_MAX_DEFAULT: u32 = 10_000;

/// The listener's caps and time-outs (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub connections_max: usize,
    pub connections_per_address_max: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            connections_max: CONNECTIONS_MAX_DEFAULT as usize,
            connections_per_address_max: 256,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The soft limit on open descriptors (RLIMIT_NOFILE), where the platform says.
pub fn descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Raises the soft descriptor limit to the hard one, as Go's runtime and most servers do:
/// the soft limit (often 1024) exists for old `select()` programs, and a server holding
/// one descriptor per client needs the room. Returns the soft limit now in force.
pub fn raise_descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
            // Refused on some systems (macOS caps the soft limit below an unlimited hard
            // one); the old limit then stands and the connection cap is checked against it.
            let _refused = setrlimit(Resource::Nofile, raised);
        }
    }
    descriptor_limit()
}

/// Descriptors kept for everything but client connections: three per database
/// connection in each of the two pools (SQLite opens the file, its WAL and its shared
/// memory), plus 128 for the listeners, served and uploaded files, NATS, logs and the
/// runtime itself.
pub fn descriptor_reserve(db_pool_max: u32) -> u64 {
    6 * u64::from(db_pool_max) + 128
}

/// Accepts on `listener` and serves `router` on each connection within `limits`, until
/// `stopping` turns true; returns once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let registry = Arc::new(Registry { limits, open: Mutex::new(Open::default()) });
    // Each connection task holds a clone; `recv` returns `None` once all have ended.
    let (alive, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(error) => {
                if let Some(pause) = backoff.failed(&error) {
                    tokio::time::sleep(pause).await;
                }
                continue;
            }
        };
        let Some(slot) = registry.admit(peer.ip()) else {
            metrics::counter!("plaza_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection =
            Connection { router: router.clone(), limits, peer, stopping: stopping.clone(), _alive: alive.clone() };
        tokio::spawn(connection.run(stream, slot));
    }
    drop(listener);
    drop(alive);
    let _ = all_closed.recv().await;
}

/// Which connections are open, in total and per address.
struct Registry {
    limits: ConnectionLimits,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl Registry {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let address = address_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let from_address = open.per_address.get(&address).copied().unwrap_or(0);
        if open.total >= self.limits.connections_max || from_address >= self.limits.connections_per_address_max {
            return None;
        }
        open.total += 1;
        open.per_address.insert(address, from_address + 1);
        metrics::gauge!("plaza_connections_open").set(open.total as f64);
        Some(Slot { registry: Arc::clone(self), address })
    }
}

/// An IPv6 client usually holds a whole /64, so that is what counts as one address.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0))
            }
        },
    }
}

/// One admitted connection's place under the caps, given back when dropped.
struct Slot {
    registry: Arc<Registry>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.registry.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_address.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_address.remove(&self.address);
            }
        }
        metrics::gauge!("plaza_connections_open").set(open.total as f64);
    }
}

/// What a connection's watcher needs to know: milliseconds since the connection opened.
struct Activity {
    opened: Instant,
    requests_in_flight: AtomicU32,
    /// When the current request head began (its first byte, or the connection's start),
    /// or `NONE` while no head is being read.
    head_started_ms: AtomicU64,
    /// The last byte read or written, or the end of the last response.
    last_activity_ms: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            requests_in_flight: AtomicU32::new(0),
            head_started_ms: AtomicU64::new(0),
            last_activity_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn read(&self) {
        let now = self.now_ms();
        self.last_activity_ms.store(now, Ordering::Relaxed);
        if self.requests_in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_started_ms.compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_activity_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.requests_in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(NONE, Ordering::Release);
    }

    fn request_finished(&self) {
        self.last_activity_ms.store(self.now_ms(), Ordering::Relaxed);
        self.requests_in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// `Err(reason)` once the connection has outstayed a time-out, otherwise when to look
    /// again.
    fn check(&self, limits: &ConnectionLimits) -> Result<Instant, &'static str> {
        let now = self.now_ms();
        let header_ms = limits.header_read_timeout.as_millis() as u64;
        let idle_ms = limits.idle_timeout.as_millis() as u64;
        let at = |ms: u64| self.opened + Duration::from_millis(ms);
        if self.requests_in_flight.load(Ordering::Acquire) > 0 {
            // A request is bounded by the router's own time-out; look again later.
            return Ok(at(now + header_ms.min(idle_ms)));
        }
        let head_started = self.head_started_ms.load(Ordering::Acquire);
        if head_started != NONE {
            let deadline = head_started.saturating_add(header_ms);
            return if now >= deadline { Err("no complete request head in time") } else { Ok(at(deadline)) };
        }
        let deadline = self.last_activity_ms.load(Ordering::Relaxed).saturating_add(idle_ms);
        if now >= deadline {
            Err("idle")
        } else {
            Ok(at(deadline))
        }
    }
}

struct Connection {
    router: Router,
    limits: ConnectionLimits,
    peer: SocketAddr,
    stopping: tokio::sync::watch::Receiver<bool>,
    _alive: tokio::sync::mpsc::Sender<()>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream, slot: Slot) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Counted { stream, activity: Arc::clone(&activity), _slot: slot });
        let router = self.router.clone();
        let peer = self.peer;
        let service_activity = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let activity = Arc::clone(&service_activity);
            activity.request_started();
            let call = router.clone().oneshot(request);
            async move {
                let response = call.await;
                activity.request_finished();
                response
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The watcher below enforces both time-outs; hyper's header timer would also run
        // while the connection is idle and so cut kept-alive connections short.
        builder.timer(TokioTimer::new()).header_read_timeout(None).keep_alive(true);
        let connection = builder.serve_connection(io, service).with_upgrades();
        tokio::pin!(connection);
        let mut shutting_down = false;
        loop {
            let next_look = match activity.check(&self.limits) {
                Ok(next_look) => next_look,
                Err(reason) => {
                    tracing::debug!(peer = %self.peer, reason, "closing a connection");
                    return;
                }
            };
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(peer = %self.peer, "connection ended: {error}");
                    }
                    return;
                }
                _ = self.stopping.wait_for(|stop| *stop), if !shutting_down => {
                    shutting_down = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep_until(next_look.into()) => {}
            }
        }
    }
}

/// The TCP stream, noting activity for the watcher and holding the connection's slot
/// for as long as the socket is open (through a WebSocket upgrade too).
struct Counted {
    stream: TcpStream,
    activity: Arc<Activity>,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, data);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Pauses after accept errors that more accepting cannot fix, and keeps the log short.
struct AcceptBackoff {
    pause: Duration,
    errors_since_log: u64,
    last_log: Option<Instant>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self { pause: ACCEPT_PAUSE_MIN, errors_since_log: 0, last_log: None }
    }
}

const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

impl AcceptBackoff {
    fn succeeded(&mut self) {
        self.pause = ACCEPT_PAUSE_MIN;
    }

    /// The pause before accepting again, if any. A connection that failed on its own
    /// (reset before it was accepted) needs none.
    fn failed(&mut self, error: &io::Error) -> Option<Duration> {
        metrics::counter!("plaza_accept_errors_total").increment(1);
        if !is_resource_exhaustion(error) {
            tracing::debug!("accept error: {error}");
            return None;
        }
        self.errors_since_log += 1;
        if self.last_log.is_none_or(|last| last.elapsed() >= ACCEPT_LOG_EVERY) {
            tracing::warn!(
                errors = self.errors_since_log,
                "accept error: {error}; pausing accepts (lower PLAZA_CONNECTIONS_MAX or raise ulimit -n)"
            );
            self.errors_since_log = 0;
            self.last_log = Some(Instant::now());
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(ACCEPT_PAUSE_MAX);
        Some(pause)
    }
}

fn is_resource_exhaustion(error: &io::Error) -> bool {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        let errno = error.raw_os_error().map(Errno::from_raw_os_error);
        matches!(errno, Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM))
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_counts_as_its_slash_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        assert_eq!(address_key(one), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn running_out_of_descriptors_pauses_accepting_longer_each_time() {
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        assert_eq!(backoff.failed(&emfile), Some(Duration::from_millis(10)));
        assert_eq!(backoff.failed(&emfile), Some(Duration::from_millis(20)));
        for _ in 0..20 {
            backoff.failed(&emfile);
        }
        assert_eq!(backoff.failed(&emfile), Some(ACCEPT_PAUSE_MAX));
        backoff.succeeded();
        assert_eq!(backoff.failed(&emfile), Some(Duration::from_millis(10)));
        let reset = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(backoff.failed(&reset), None, "a connection that failed alone needs no pause");
    }

    #[test]
    fn a_slot_is_given_back_when_the_connection_closes() {
        let registry = Arc::new(Registry {
            limits: ConnectionLimits { connections_max: 3, connections_per_address_max: 2, ..Default::default() },
            open: Mutex::new(Open::default()),
        });
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let first = registry.admit(a).expect("first");
        let _second = registry.admit(a).expect("second");
        assert!(registry.admit(a).is_none(), "two per address");
        let _third = registry.admit(b).expect("another address");
        assert!(registry.admit(b).is_none(), "three in total");
        drop(first);
        assert!(registry.admit(a).is_some());
    }
}
