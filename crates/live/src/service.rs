//! The live handle, its settings and its errors. No HTTP here.

use crate::model::RoomStatus;
use object_store::ObjectStore;
use plaza_accounts::{Accounts, AccountsError, User};
use plaza_bus::Bus;
use plaza_kernel::Timestamp;
use plaza_shop::{ShopError, ShopHandle};
use plaza_store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tunables of the live service (`PLAZA_LIVE_*`).
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Where the RTMP listener binds (`PLAZA_LIVE_RTMP_ADDR`, `127.0.0.1:1935`); `None`
    /// runs no ingest on this node.
    pub rtmp_addr: Option<SocketAddr>,
    /// Whether the operator chose `rtmp_addr`: then a node that cannot bind it does not
    /// start. The default address, when taken (another node on the same machine), only
    /// leaves this node without ingest, with a warning.
    pub rtmp_addr_required: bool,
    /// The RTMP base URL hosts are told to publish to, without the key
    /// (`PLAZA_LIVE_RTMP_PUBLIC_URL`); by default `rtmp://{the bound address}/live`.
    pub rtmp_public_url: Option<String>,
    /// Rooms this node ingests at once (`PLAZA_LIVE_ROOMS_MAX`, 4): each is an ffmpeg.
    pub rooms_max: usize,
    /// How long a live room waits for media after it stopped before it ends
    /// (`PLAZA_LIVE_IDLE_END_SECONDS`, 60); a reconnect within it continues the room.
    pub idle_end: Duration,
    /// Where each ingest's ffmpeg writes its segments before they go to the object store.
    pub work_dir: PathBuf,
    /// The niceness ffmpeg runs at, so requests are served first.
    pub niceness: i32,
    /// The target length of an HLS segment.
    pub segment_duration: Duration,
    /// Segments in the live playlist's window.
    pub live_window_segments: usize,
    /// How long a publisher may take from connecting to `publish`.
    pub handshake_timeout: Duration,
    /// A publisher silent this long is disconnected (the room then waits `idle_end`).
    pub media_timeout: Duration,
    /// Chat messages each viewer may post per second in a room, on average…
    pub chat_per_second: u32,
    /// …and at once (the token bucket's size).
    pub chat_burst: u32,
    /// How often each node sends a room's new chat to its viewers, as one frame each.
    pub chat_batch_interval: Duration,
    /// Frames a socket may have waiting from its rooms; a viewer whose queue is full is
    /// dropped from its rooms and disconnected rather than buffered without bound. One
    /// batch is offered whole, and is at most about 17 frames (the relay holds at most
    /// 512 KiB for it): a queue shorter than that drops viewers that keep up.
    pub viewer_queue_frames: usize,
    /// Chat messages kept per room (for the replay); older ones are deleted.
    pub chat_kept_per_room: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            rtmp_addr: Some(SocketAddr::from(([127, 0, 0, 1], 1935))),
            rtmp_addr_required: false,
            rtmp_public_url: None,
            rooms_max: 4,
            idle_end: Duration::from_secs(60),
            work_dir: std::env::temp_dir().join("plaza-live"),
            niceness: 10,
            segment_duration: Duration::from_secs(1),
            live_window_segments: 6,
            handshake_timeout: Duration::from_secs(10),
            media_timeout: Duration::from_secs(10),
            chat_per_second: 1,
            chat_burst: 3,
            chat_batch_interval: Duration::from_millis(200),
            viewer_queue_frames: 64,
            chat_kept_per_room: 10_000,
        }
    }
}

/// What can go wrong, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("no such live room")]
    RoomNotFound,
    #[error("only the host may {action}")]
    NotHost { action: &'static str },
    #[error("no such product: {product_id}")]
    ProductNotFound { product_id: String },
    #[error("product {product_id} is not sold by the host's shop")]
    ProductNotInShop { product_id: String },
    #[error("the room is {status:?}; it cannot {action}")]
    InvalidTransition { status: RoomStatus, action: &'static str },
    #[error("no such file")]
    FileNotFound,
    #[error("the room has ended")]
    RoomEnded,
    #[error("join the room before chatting in it")]
    NotJoined,
    #[error("a socket joins at most {max} rooms")]
    TooManyRooms { max: usize },
    #[error("muted in this room")]
    Muted,
    #[error("banned from this room")]
    Banned,
    #[error("too many chat messages; retry in {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("no such chat message")]
    MessageNotFound,
    #[error("the room is not live yet")]
    NotLive,
    #[error("a deal is running in the room")]
    DealRunning,
    #[error("SKU {sku_id} is not sold by the host's shop")]
    SkuNotInShop { sku_id: String },
    #[error("bus: {0}")]
    Bus(String),
    #[error("media: {0}")]
    Media(String),
    #[error("accounts: {0}")]
    Accounts(#[from] AccountsError),
    #[error("shop: {0}")]
    Shop(ShopError),
    #[error("object storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The chat writer stopped or its batch was lost; whether the message was kept is
    /// unknown, as after a lost connection.
    #[error("chat writer: {0}")]
    ChatLost(#[from] plaza_store::GroupCommitError),
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> LiveError {
    LiveError::InvalidField { field, reason: reason.into() }
}

/// A room as anyone may see it (the stream key is never part of it).
#[derive(Debug, Clone)]
pub struct Room {
    pub id: String,
    pub host: User,
    pub title: String,
    pub cover_media_id: Option<String>,
    pub status: RoomStatus,
    pub viewers: i64,
    pub likes: i64,
    /// The shop's `product` cards of the room's products, in the host's order.
    pub products: Vec<serde_json::Value>,
    pub pinned_product_id: Option<String>,
    /// The deal running now, if any.
    pub deal: Option<crate::deals::Deal>,
    /// Whether any media was recorded (an ended room with segments has a replay).
    pub has_recording: bool,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
}

/// A room with its new stream key, for its host only.
#[derive(Debug, Clone)]
pub struct RoomWithKey {
    pub room: Room,
    pub stream_key: crate::model::StreamKey,
    /// Where to publish, key included; `None` when no node of this deployment ingests.
    pub rtmp_url: Option<String>,
}

/// The live service handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveHandle {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) accounts: Accounts,
    pub(crate) shop: ShopHandle,
    /// Publishes a room's cover image to every signed-in user.
    pub(crate) media: plaza_media::Media,
    pub(crate) objects: Arc<dyn ObjectStore>,
    /// Room subjects (`live.room.<id>`): chat, pins, ends and bans, to every node.
    pub(crate) bus: Bus,
    pub(crate) config: LiveConfig,
    /// This node's name in ingest leases.
    pub(crate) node_id: String,
    /// Rooms this node is ingesting now, for `rooms_max` and for one publisher per room.
    pub(crate) ingesting: Mutex<std::collections::HashSet<String>>,
    /// The address the RTMP listener bound (port 0 becomes a real port).
    pub(crate) rtmp_bound: Mutex<Option<SocketAddr>>,
    /// Hearts counted and not yet written, per room (`likes.rs`).
    pub(crate) pending_likes: Mutex<std::collections::HashMap<String, i64>>,
    /// Set when the node stops: every ingest session flushes and gives its lease back.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
    /// Room statuses recently read for playback (`rooms.rs`).
    pub(crate) playback_statuses: Mutex<crate::rooms::PlaybackCache>,
    /// This node's viewers per room and their chat relays (`hub.rs`).
    pub(crate) hub: crate::hub::Hub,
    /// Each viewer's chat token bucket per room (`chat.rs`).
    pub(crate) chat_limiter: crate::chat::ChatLimiter,
    /// Messages posted through this node per room since its chat was last bounded.
    pub(crate) chat_since_prune: Mutex<std::collections::HashMap<String, usize>>,
    /// The chat writer (`chat_batch.rs`); started on first use (it needs the runtime).
    pub(crate) chat_posts: std::sync::OnceLock<crate::chat_batch::ChatPosts>,
}

impl LiveHandle {
    pub fn new(
        store: Store,
        accounts: Accounts,
        shop: ShopHandle,
        media: plaza_media::Media,
        bus: Bus,
        config: LiveConfig,
    ) -> Self {
        // The media crate's object store: segments and playlists sit beside the uploads.
        let objects = media.object_store();
        let chat_limiter = crate::chat::ChatLimiter::new(config.chat_per_second, config.chat_burst);
        let live = Self {
            inner: Arc::new(Inner {
                store,
                accounts,
                shop,
                media,
                objects,
                bus,
                hub: Default::default(),
                chat_limiter,
                chat_since_prune: Mutex::new(Default::default()),
                chat_posts: Default::default(),
                config,
                node_id: plaza_kernel::new_id(),
                ingesting: Mutex::new(Default::default()),
                rtmp_bound: Mutex::new(None),
                playback_statuses: Mutex::new(Default::default()),
                stopping: tokio::sync::watch::channel(false).0,
                pending_likes: Mutex::new(Default::default()),
            }),
        };
        live.listen_to_sales();
        live
    }

    pub fn config(&self) -> &LiveConfig {
        &self.inner.config
    }

    /// The RTMP URL a host publishes to, key excluded.
    pub fn rtmp_base_url(&self) -> Option<String> {
        if let Some(url) = &self.inner.config.rtmp_public_url {
            return Some(url.trim_end_matches('/').to_string());
        }
        let bound = *self.inner.rtmp_bound.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        bound.or(self.inner.config.rtmp_addr).map(|addr| format!("rtmp://{addr}/live"))
    }
}
