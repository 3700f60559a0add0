//! Plaza chat: direct and group conversations, messages with a per-conversation `seq`
//! that is 1, 2, 3, … with no gaps, idempotent sends by `client_id`, history, and read
//! receipts.
//!
//! The main design choice: a message is numbered by incrementing the conversation's
//! `last_seq` with an atomic `UPDATE … RETURNING` in the same transaction that inserts the
//! message and appends a `message.new` event for every member. The row lock (PostgreSQL) or
//! the single writer (SQLite) serialises concurrent senders, and a failed transaction rolls
//! the increment back with everything else — so numbers are never skipped or repeated, and
//! a message is never visible without its events or the other way round.
//!
//! Other services post into chats (transfers, red packets, cards) through [`Chat`]'s
//! public functions, never its tables; a card a client posts is rendered by the service
//! that owns its type ([`CardSource`]).
//!
//! Who may join: only a person's contacts may add them to a group, someone who left cannot
//! be added back by others, and a new member's history starts when they joined.

mod cards;
mod migrations;
pub mod model;
pub mod routes;
mod send_batch;
mod service;
pub mod wire;

pub use cards::{CardFuture, CardSource};
pub use migrations::MIGRATIONS;
pub use model::{ConversationKind, MessageKind};
pub use routes::router;
pub use service::{Chat, ChatConfig, ChatError, QueuedSend};
