//! Live chat: posting (checked, rate limited, stored per room, published once on the
//! room's subject), the host's deletions, the room's kept chat for the replay and the
//! last messages a joining viewer gets.
//!
//! Chat is kept per room in `live_chat_messages`, not in every viewer's event log: a
//! message to 10,000 viewers is one row and one bus notification, and each node hands it
//! to its own viewers in its next batch (`hub.rs`). Each room keeps its newest
//! `chat_kept_per_room` messages; older ones are deleted as new ones arrive.
//!
//! Posts are checked and written in batches by the chat writer (`chat_batch.rs`).

use crate::chat_batch::ChatPost;
use crate::hub::RoomNotice;
use crate::model::{ChatText, RoomStatus};
use crate::service::{invalid, LiveError, LiveHandle};
use plaza_accounts::User;
use plaza_kernel::{Cursor, Page, PageLimit, Timestamp};
use plaza_store::Row;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A chat message as stored, with its author.
#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub id: String,
    pub room_id: String,
    pub user: User,
    pub text: String,
    pub at: Timestamp,
}

/// How many messages posted through one node to one room between two boundings of the
/// room's kept chat.
const PRUNE_EVERY: usize = 100;
/// Rooms whose posts since the last bounding one node counts.
const PRUNE_COUNTERS_MAX: usize = 10_000;

impl LiveHandle {
    /// Posts `text` to a live room's chat as `user`, who must have joined it (on any
    /// socket, on any node). The message reaches every viewer within a batch interval.
    pub async fn post_chat(&self, user: &User, room_id: &str, text: &str) -> Result<ChatMessage, LiveError> {
        let text = ChatText::parse(text).map_err(|reason| invalid("text", reason))?;
        let message = ChatMessage {
            id: plaza_kernel::new_id(),
            room_id: room_id.to_string(),
            user: user.clone(),
            text: text.as_str().to_string(),
            at: Timestamp::now(),
        };
        // Checked and written by the chat writer (`chat_batch.rs`), with the other posts
        // of its batch.
        self.chat_posts().submit(ChatPost::of(&message)).await??;
        // Published once, by the node that accepted it; every node relays it to its own.
        let body = crate::routes_chat::ChatMessageBody::from(&message);
        self.publish_room(room_id, &RoomNotice::Chat { message: serde_json::to_value(&body).unwrap_or_default() });
        metrics::counter!("plaza_live_chat_messages_total").increment(1);
        Ok(message)
    }

    /// Deletes a message of the host's room; every viewer is told (`live.chat_deleted`).
    pub async fn delete_chat(&self, host: &User, room_id: &str, message_id: &str) -> Result<(), LiveError> {
        self.host_row(host, room_id, "delete chat messages").await?;
        let deleted = sqlx::query("DELETE FROM live_chat_messages WHERE id = $1 AND room_id = $2")
            .bind(message_id)
            .bind(room_id)
            .execute(self.inner.store.write())
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(LiveError::MessageNotFound);
        }
        self.publish_room(room_id, &RoomNotice::Deleted { message_id: message_id.to_string() });
        Ok(())
    }

    /// A page of a room's kept chat, oldest first (a replay's chat, or what was said
    /// before joining). A room not yet live is its host's alone.
    pub async fn chat_history(
        &self,
        viewer: &User,
        room_id: &str,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<ChatMessage>, LiveError> {
        let row = self.room_row(room_id).await?.ok_or(LiveError::RoomNotFound)?;
        if row.status == RoomStatus::Created && row.host_id != viewer.id {
            return Err(LiveError::RoomNotFound);
        }
        let after = match cursor {
            Some(cursor) => Cursor::parse_position(cursor).ok_or_else(|| invalid("cursor", "not a cursor"))?,
            None => String::new(),
        };
        let rows = sqlx::query(&format!(
            "SELECT id, user_id, text, created_at FROM live_chat_messages
             WHERE room_id = $1 AND id > $2 ORDER BY id LIMIT {}",
            limit.probe()
        ))
        .bind(room_id)
        .bind(&after)
        .fetch_all(self.inner.store.read())
        .await?;
        let messages = self.messages_from_rows(room_id, &rows).await?;
        Ok(Page::from_probe(messages, limit, |message| message.id.clone()))
    }

    /// The newest `count` messages of a room, oldest first.
    pub(crate) async fn last_chat(&self, room_id: &str, count: usize) -> Result<Vec<ChatMessage>, LiveError> {
        let mut rows = sqlx::query(&format!(
            "SELECT id, user_id, text, created_at FROM live_chat_messages
             WHERE room_id = $1 ORDER BY id DESC LIMIT {count}"
        ))
        .bind(room_id)
        .fetch_all(self.inner.store.read())
        .await?;
        rows.reverse();
        self.messages_from_rows(room_id, &rows).await
    }

    async fn messages_from_rows(
        &self,
        room_id: &str,
        rows: &[plaza_store::AnyRow],
    ) -> Result<Vec<ChatMessage>, LiveError> {
        let mut user_ids = rows.iter().map(|row| row.try_get("user_id")).collect::<Result<Vec<String>, _>>()?;
        user_ids.sort();
        user_ids.dedup();
        let users: HashMap<String, User> =
            self.inner.accounts.users(&user_ids).await?.into_iter().map(|user| (user.id.clone(), user)).collect();
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            let user_id: String = row.try_get("user_id")?;
            // An author whose account is gone drops out of the kept chat.
            let Some(user) = users.get(&user_id).cloned() else { continue };
            messages.push(ChatMessage {
                id: row.try_get("id")?,
                room_id: room_id.to_string(),
                user,
                text: row.try_get("text")?,
                at: Timestamp::from_unix_millis(row.try_get("created_at")?),
            });
        }
        Ok(messages)
    }

    /// Whether a room's kept chat is due to be bounded after one more message.
    pub(crate) fn count_for_pruning(&self, room_id: &str) -> bool {
        let mut counters = self.inner.chat_since_prune.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if counters.len() >= PRUNE_COUNTERS_MAX && !counters.contains_key(room_id) {
            counters.clear();
        }
        let count = counters.entry(room_id.to_string()).or_insert(0);
        *count += 1;
        if *count >= PRUNE_EVERY {
            *count = 0;
            return true;
        }
        false
    }

    /// Deletes a room's messages older than its newest `chat_kept_per_room`.
    pub(crate) async fn bound_chat(&self, room_id: &str) -> Result<u64, LiveError> {
        let kept = self.inner.config.chat_kept_per_room.max(1) as i64;
        let deleted = sqlx::query(
            "DELETE FROM live_chat_messages WHERE room_id = $1 AND id < (
                 SELECT id FROM live_chat_messages WHERE room_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(room_id)
        .bind(kept - 1)
        .execute(self.inner.store.write())
        .await?
        .rows_affected();
        Ok(deleted)
    }
}

/// A room's status, host and the caller's moderation, in one read.
#[derive(Debug, Clone)]
pub(crate) struct ChatGate {
    pub(crate) status: RoomStatus,
    pub(crate) host_id: String,
    pub(crate) muted: bool,
    pub(crate) banned: bool,
}

impl ChatGate {
    /// Why `user_id` may not chat in the room, as far as the room and its moderation
    /// say; `None` (no room) is an unknown room.
    pub(crate) fn refusal(gate: Option<&Self>, user_id: &str) -> Option<LiveError> {
        let Some(gate) = gate else { return Some(LiveError::RoomNotFound) };
        match gate.status {
            RoomStatus::Created if gate.host_id != user_id => return Some(LiveError::RoomNotFound),
            RoomStatus::Ended => return Some(LiveError::RoomEnded),
            RoomStatus::Created | RoomStatus::Live => {}
        }
        (gate.muted || gate.banned).then_some(LiveError::Muted)
    }

    pub(crate) fn from_row(row: &plaza_store::AnyRow) -> Result<Self, sqlx::Error> {
        let status: String = row.try_get("status")?;
        let flag = |name: &str| row.try_get::<Option<i64>, _>(name).map(|value| value == Some(1));
        Ok(Self {
            status: RoomStatus::parse(&status).unwrap_or(RoomStatus::Ended),
            host_id: row.try_get("host_id")?,
            muted: flag("muted")?,
            banned: flag("banned")?,
        })
    }
}

impl LiveHandle {
    pub(crate) async fn chat_gate(&self, room_id: &str, user_id: &str) -> Result<ChatGate, LiveError> {
        let row = sqlx::query(
            "SELECT r.status, r.host_id, m.muted, m.banned FROM live_rooms r
             LEFT JOIN live_room_moderation m ON m.room_id = r.id AND m.user_id = $2
             WHERE r.id = $1",
        )
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(self.inner.store.read())
        .await?
        .ok_or(LiveError::RoomNotFound)?;
        Ok(ChatGate::from_row(&row)?)
    }
}

/// A token bucket per viewer and room: `per_second` on average, `burst` at once. In
/// memory and per node, like every rate limit here: a viewer posting through several
/// nodes gets each node's share.
#[derive(Debug)]
pub(crate) struct ChatLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets one node keeps; past it the full ones (which forget nothing) are dropped.
const BUCKETS_MAX: usize = 100_000;

impl ChatLimiter {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second: f64::from(per_second.max(1)), burst: f64::from(burst.max(1)), buckets: Mutex::default() }
    }

    /// Takes a token; `Err(retry_after)` when the bucket is empty.
    pub(crate) fn take(&self, room_id: &str, user_id: &str) -> Result<(), Duration> {
        self.take_at(&format!("{room_id}:{user_id}"), Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= BUCKETS_MAX && !buckets.contains_key(key) {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets
                .retain(|_, bucket| bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * per_second < burst);
            if buckets.len() >= BUCKETS_MAX {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket { tokens: self.burst, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.per_second).min(self.burst);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_viewer_may_burst_three_then_one_a_second() {
        let limiter = ChatLimiter::new(1, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take_at("room:ann", start).is_ok());
        }
        let retry = limiter.take_at("room:ann", start).expect_err("the burst is spent");
        assert!(retry <= Duration::from_secs(1) && retry > Duration::from_millis(900), "{retry:?}");
        assert!(limiter.take_at("room:bob", start).is_ok(), "buckets are per viewer");
        assert!(limiter.take_at("other:ann", start).is_ok(), "and per room");
        assert!(limiter.take_at("room:ann", start + Duration::from_millis(500)).is_err());
        assert!(limiter.take_at("room:ann", start + Duration::from_millis(1000)).is_ok());
        assert!(limiter.take_at("room:ann", start + Duration::from_millis(1100)).is_err());
        // A long pause refills the bucket to its size, no more.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.take_at("room:ann", later).is_ok());
        }
        assert!(limiter.take_at("room:ann", later).is_err());
    }
}
