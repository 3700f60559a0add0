//! Plaza live shopping: a host creates a room with products of their shop, streams into
//! it from OBS or ffmpeg over RTMP, and viewers play it as HLS from any node.
//!
//! The main design choice is **Plaza's own RTMP listener in front of a per-room ffmpeg**.
//! Debian's ffmpeg can listen for RTMP itself, but then accepts any stream key, so the
//! publish side of RTMP (handshake, chunk stream, AMF0 commands) is parsed here
//! (`rtmp/`): the key in `publish` is checked against the room's stored digest before
//! any media is read, and only then are the audio and video messages remuxed into FLV
//! and piped into an ffmpeg that cuts 1 s HLS segments, copying H.264/AAC. Plaza, not
//! ffmpeg, numbers the segments and writes the playlists (`playlist.rs`), into the object
//! store, because a room outlives its ingest sessions: a reconnect within
//! `PLAZA_LIVE_IDLE_END_SECONDS` continues the same recording after a discontinuity, and
//! the ended playlist is the replay.
//!
//! Live chat, hearts and counts ride the gateway's one WebSocket: each node keeps, per
//! room, the sockets that joined it there and relays the room's bus subject to them in
//! batches (`hub.rs`); chat is kept per room, not in every viewer's event log
//! (`chat.rs`); viewers are counted per node and summed in the database (`viewers.rs`).

mod chat;
mod chat_batch;
mod deals;
mod hub;
mod ingest;
mod likes;
mod migrations;
pub mod model;
mod moderation;
mod packager;
pub mod playlist;
mod rooms;
pub mod routes;
pub mod routes_chat;
pub mod routes_deals;
pub mod rtmp;
mod service;
mod sessions;
mod storage;
mod viewers;

pub use chat::ChatMessage;
pub use deals::{Deal, DealInput, RoomSales, DEAL_SECONDS_MAX, DEAL_SECONDS_MIN};
pub use hub::{LiveViewer, RoomDelivery, ViewerInbox, BACKLOG_MESSAGES, ROOMS_PER_SOCKET_MAX};
pub use ingest::{ingest_router, BROWSER_CHUNK_BYTES_MAX};
pub use migrations::MIGRATIONS;
pub use model::{RoomStatus, StreamKey};
pub use moderation::{Moderation, ModerationAction};
pub use rooms::RoomList;
pub use routes::{playback_router, router};
pub use service::{LiveConfig, LiveError, LiveHandle, Room, RoomWithKey};
