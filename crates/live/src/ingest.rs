//! Ingest, two ways. The RTMP listener: each connection speaks RTMP up to `publish`
//! (`rtmp/`), is refused there unless its key names a room that may be ingested here, and
//! only then has its media read, packaged (`packager.rs`) and heartbeated into the
//! database (`sessions.rs`). The browser's camera: `GET /api/v1/live/ingest` upgrades to
//! a WebSocket whose first message is `{"stream_key": …}`, checked the same way before
//! any media is read; then each binary message is the next chunk of the page's
//! MediaRecorder WebM, piped in order into the session's one ffmpeg (the chunks decode
//! only joined) and transcoded to H.264/AAC. A publisher that stops (or is cut off)
//! leaves the room live for `PLAZA_LIVE_IDLE_END_SECONDS`, so a reconnect continues it.

use crate::packager::Packager;
use crate::rtmp::{Connection, Media, RtmpError};
use crate::service::LiveHandle;
use crate::sessions::{IngestSlot, HEARTBEAT_INTERVAL};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use plaza_kernel::Timestamp;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// Connections a node serves at once, per ingest slot: publishers still in the
/// handshake or being refused take a connection too.
const CONNECTIONS_PER_ROOM: usize = 4;
/// The largest chunk a browser may send in one message (MediaRecorder's one-second
/// chunks of a phone camera are a few hundred KiB).
pub const BROWSER_CHUNK_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Where a session's media comes from.
enum Publisher {
    Rtmp(Connection<TcpStream>),
    Browser(WebSocket),
}

/// One unit of a publisher's media.
enum Chunk {
    Flv(Media),
    WebM(axum::body::Bytes),
}

impl Publisher {
    /// The next media, `None` once the publisher has stopped.
    async fn next(&mut self) -> Result<Option<Chunk>, String> {
        match self {
            Publisher::Rtmp(connection) => match connection.next_media().await {
                Ok(media) => Ok(media.map(Chunk::Flv)),
                Err(RtmpError::Closed) => Ok(None),
                Err(error) => Err(error.to_string()),
            },
            Publisher::Browser(socket) => loop {
                match socket.recv().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(None),
                    Some(Ok(Message::Binary(bytes))) => return Ok(Some(Chunk::WebM(bytes))),
                    // Pings are answered by axum; text after the key means nothing.
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => return Err(error.to_string()),
                }
            },
        }
    }
}

/// `GET /api/v1/live/ingest`: the browser camera's ingest socket (the stream key, not a
/// session, is its credential, as for RTMP).
pub fn ingest_router(live: LiveHandle) -> axum::Router {
    axum::Router::new().route(crate::routes::BROWSER_INGEST_PATH, axum::routing::get(browser_ingest)).with_state(live)
}

async fn browser_ingest(State(live): State<LiveHandle>, upgrade: WebSocketUpgrade) -> axum::response::Response {
    upgrade
        .max_message_size(BROWSER_CHUNK_BYTES_MAX)
        .max_frame_size(BROWSER_CHUNK_BYTES_MAX)
        .on_upgrade(move |socket| async move { live.serve_browser_publisher(socket).await })
}

/// What a browser publisher sends first.
#[derive(serde::Deserialize)]
struct BrowserHello {
    stream_key: String,
}

impl LiveHandle {
    /// Binds the RTMP listener when this node ingests (`rtmp_addr`), and remembers the
    /// address (port 0 becomes a real port) for the URLs hosts are given.
    pub async fn bind_ingest(&self) -> std::io::Result<Option<TcpListener>> {
        let Some(addr) = self.inner.config.rtmp_addr else { return Ok(None) };
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(error) if !self.inner.config.rtmp_addr_required && addr.port() != 0 => {
                tracing::warn!(
                    "RTMP ingest is off on this node: the default {addr} is taken ({error}); \
                     set PLAZA_LIVE_RTMP_ADDR to another address, or to off"
                );
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        *self.inner.rtmp_bound.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(listener.local_addr()?);
        Ok(Some(listener))
    }

    /// Stops every ingest session of this node (at shutdown): each stores what ffmpeg
    /// finished and gives its lease back, so a publisher reconnecting to another node
    /// continues the room at once. Waits at most `wait`.
    pub async fn stop_ingest(&self, wait: std::time::Duration) {
        self.inner.stopping.send_replace(true);
        let deadline = tokio::time::Instant::now() + wait;
        while !self.ingesting().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // Hearts counted in the last second are written too, and this node's viewers
        // stop counting at once rather than when its rows go stale.
        if let Err(error) = self.flush_likes().await {
            tracing::warn!("writing live hearts at shutdown: {error}");
        }
        if let Err(error) = self.forget_node_rows().await {
            tracing::warn!("forgetting this node's live viewers at shutdown: {error}");
        }
    }

    /// Accepts publishers for ever, at most a bounded number at once; the others are
    /// closed at once.
    pub async fn serve_ingest(self, listener: TcpListener) {
        let limit = Arc::new(tokio::sync::Semaphore::new(self.inner.config.rooms_max * CONNECTIONS_PER_ROOM + 4));
        loop {
            let (socket, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("accepting an RTMP connection: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "too many RTMP connections; closing this one");
                continue;
            };
            let live = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _ = socket.set_nodelay(true);
                live.serve_publisher(socket, peer).await;
            });
        }
    }

    /// A browser publisher: its key first (refused with a close frame naming why, before
    /// any media is read), then its recording.
    async fn serve_browser_publisher(&self, mut socket: WebSocket) {
        let hello = tokio::time::timeout(self.inner.config.handshake_timeout, socket.recv()).await;
        let key = match hello {
            Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<BrowserHello>(&text).ok(),
            _ => None,
        };
        let Some(key) = key else {
            close(socket, 4400, "first send {\"stream_key\": \"…\"}").await;
            return;
        };
        let slot = match self.begin_ingest("live", &key.stream_key).await {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::info!(code = refusal.rtmp_code(), "browser publish refused");
                let (code, reason) = match refusal {
                    crate::sessions::Refusal::BadKey => (4401, "live_stream_key_invalid"),
                    crate::sessions::Refusal::Busy => (4409, "live_ingest_busy"),
                };
                close(socket, code, reason).await;
                return;
            }
        };
        let accepted = serde_json::json!({"type": "accepted", "room_id": slot.room_id}).to_string();
        if socket.send(Message::Text(accepted.into())).await.is_err() {
            let _ = self.release_ingest(&slot, None).await;
            return;
        }
        tracing::info!(room = %slot.room_id, "browser publisher streaming");
        self.ingest(Publisher::Browser(socket), slot).await;
    }

    async fn serve_publisher(&self, socket: TcpStream, peer: std::net::SocketAddr) {
        let mut connection = Connection::new(socket);
        let asked = match tokio::time::timeout(self.inner.config.handshake_timeout, connection.accept_publish()).await {
            Ok(Ok(publish)) => publish,
            Ok(Err(RtmpError::Closed)) => return,
            Ok(Err(error)) => {
                tracing::info!(%peer, "RTMP connection dropped before publishing: {error}");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "RTMP connection dropped: no publish within the handshake time-out");
                return;
            }
        };
        let slot = match self.begin_ingest(&asked.app, &asked.name).await {
            Ok(slot) => slot,
            Err(refusal) => {
                // The key is never logged: only that one was refused.
                tracing::info!(%peer, code = refusal.rtmp_code(), "RTMP publish refused");
                let _ = connection.answer_publish(&asked, Err(refusal.rtmp_code())).await;
                return;
            }
        };
        if let Err(error) = connection.answer_publish(&asked, Ok(())).await {
            tracing::info!(room = %slot.room_id, "RTMP publisher left at once: {error}");
            let _ = self.release_ingest(&slot, None).await;
            return;
        }
        tracing::info!(room = %slot.room_id, %peer, "RTMP publisher streaming");
        self.ingest(Publisher::Rtmp(connection), slot).await;
    }

    /// Reads media until the publisher stops, goes silent, or the session must end.
    async fn ingest(&self, mut publisher: Publisher, slot: IngestSlot) {
        let mut packager = match Packager::start(self, &slot.room_id).await {
            Ok(packager) => packager,
            Err(error) => {
                tracing::warn!(room = %slot.room_id, "cannot start packaging: {error}");
                let _ = self.release_ingest(&slot, None).await;
                return;
            }
        };
        let last_media_at = Arc::new(AtomicI64::new(0));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let mut node_stopping = self.inner.stopping.subscribe();
        let heartbeat = tokio::spawn(heartbeat(self.clone(), slot_view(&slot), last_media_at.clone(), stop));
        let media_timeout = self.inner.config.media_timeout;
        let why = loop {
            tokio::select! {
                _ = stopped.changed() => break "the room ended, its key changed or another node took it",
                () = async { drop(node_stopping.wait_for(|stopping| *stopping).await) } => break "the node is stopping",
                next = tokio::time::timeout(media_timeout, publisher.next()) => match next {
                    Err(_) => break "no media within the time-out",
                    Ok(Ok(None)) => break "the publisher stopped",
                    Ok(Err(error)) => {
                        tracing::info!(room = %slot.room_id, "ingest: {error}");
                        break "the connection failed";
                    }
                    Ok(Ok(Some(chunk))) => {
                        last_media_at.store(Timestamp::now().unix_millis(), Ordering::Relaxed);
                        let pushed = match chunk {
                            Chunk::Flv(media) => packager.push(media).await,
                            Chunk::WebM(bytes) => packager.push_webm(&bytes).await,
                        };
                        if let Err(error) = pushed {
                            tracing::warn!(room = %slot.room_id, "packaging: {error}");
                            break "packaging failed";
                        }
                    }
                }
            }
        };
        tracing::info!(room = %slot.room_id, "ingest stopping: {why}");
        drop(publisher);
        heartbeat.abort();
        packager.finish().await;
        let last = Some(last_media_at.load(Ordering::Relaxed)).filter(|at| *at > 0);
        if let Err(error) = self.release_ingest(&slot, last).await {
            tracing::warn!(room = %slot.room_id, "giving the ingest lease back: {error}");
        }
        // A room ended while this session still uploaded gets its final playlist again,
        // now with every segment.
        if matches!(self.room_status(&slot.room_id).await, Ok(crate::RoomStatus::Ended)) {
            if let Err(error) = self.write_final_playlist(&slot.room_id).await {
                tracing::warn!(room = %slot.room_id, "writing the replay playlist: {error}");
            }
        }
    }
}

/// Closes a browser publisher's socket with `code` (4400 no key, 4401 a bad key, 4409
/// busy) and the reason in words.
async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let frame = axum::extract::ws::CloseFrame { code, reason: reason.to_string().into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// What the heartbeat needs of a slot (the slot itself stays with the session, which
/// frees it when it ends).
fn slot_view(slot: &IngestSlot) -> (String, String) {
    (slot.room_id.clone(), slot.key_digest.clone())
}

/// Renews the lease every second with the last media time; tells the session to stop
/// when the renewal is refused.
async fn heartbeat(
    live: LiveHandle,
    (room_id, key_digest): (String, String),
    last_media_at: Arc<AtomicI64>,
    stop: tokio::sync::watch::Sender<bool>,
) {
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let last = Some(last_media_at.load(Ordering::Relaxed)).filter(|at| *at > 0);
        match live.renew_ingest_of(&room_id, &key_digest, last).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = stop.send(true);
                return;
            }
            Err(error) => tracing::warn!(room = %room_id, "renewing the ingest lease: {error}"),
        }
    }
}
