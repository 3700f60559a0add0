//! The chat writer: posts are checked and stored in batches ([`plaza_store::GroupCommit`],
//! as chat sends and flash orders are), on a thread of its own.
//!
//! A batch takes one database connection, reads the room and moderation of every post in
//! it with one `SELECT`, decides each post in arrival order exactly as one post alone
//! would be decided (the room, then mute or ban, then whether the poster joined, then
//! their rate limit), and stores the accepted ones with one multi-row `INSERT`.
//!
//! Why: with 10,000 viewers in a room, the server's runtime is busy writing frames to
//! their sockets, and a post that took a pooled connection and then waited for its turn
//! on the runtime between each of its statements held the connection all that while; at
//! 200 posts a second the pool ran dry and posts were refused with 503 after waiting
//! seconds for a connection. Here a post costs the runtime no connection at all, and a
//! batch holds one only for its two statements, on a thread that does nothing else.

use crate::chat::{ChatGate, ChatMessage};
use crate::service::{LiveError, LiveHandle};
use plaza_store::{GroupCommit, GroupCommitError, JsonColumn};
use std::collections::HashMap;
use std::sync::Arc;

/// Posts waiting for the writer; past it posters wait for room (back-pressure).
const CHAT_POST_QUEUE_MAX: usize = 4_096;
/// Posts in one batch.
const CHAT_POST_BATCH_MAX: usize = 256;

/// The chat writer of one node.
pub(crate) type ChatPosts = GroupCommit<ChatPost, Result<(), LiveError>>;

/// A post as its row: id, room, author, text, milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ChatPost(String, String, String, String, i64);

impl ChatPost {
    pub(crate) fn of(message: &ChatMessage) -> Self {
        Self(
            message.id.clone(),
            message.room_id.clone(),
            message.user.id.clone(),
            message.text.clone(),
            message.at.unix_millis(),
        )
    }

    fn room_id(&self) -> &str {
        &self.1
    }

    fn user_id(&self) -> &str {
        &self.2
    }
}

impl LiveHandle {
    pub(crate) fn chat_posts(&self) -> &ChatPosts {
        self.inner.chat_posts.get_or_init(|| {
            // The runner holds the service weakly, so dropping the last handle stops it.
            let service = Arc::downgrade(&self.inner);
            let run = move |posts: Vec<ChatPost>| {
                let service = service.upgrade().map(|inner| LiveHandle { inner });
                async move {
                    match service {
                        Some(live) => live.chat_batch(posts).await,
                        None => posts.iter().map(|_| Err(LiveError::ChatLost(GroupCommitError::Stopped))).collect(),
                    }
                }
            };
            GroupCommit::spawn_on_own_thread("plaza-live-chat", CHAT_POST_QUEUE_MAX, CHAT_POST_BATCH_MAX, run.clone())
                .unwrap_or_else(|error| {
                    tracing::warn!("no thread for live chat posts ({error}); they share the main runtime");
                    GroupCommit::spawn(CHAT_POST_QUEUE_MAX, CHAT_POST_BATCH_MAX, run)
                })
        })
    }

    /// Decides and stores a batch; a failure of the whole is every post's failure (each
    /// caller sees its own error; nothing of the batch was stored).
    async fn chat_batch(&self, posts: Vec<ChatPost>) -> Vec<Result<(), LiveError>> {
        metrics::counter!("plaza_live_chat_batches_total").increment(1);
        match self.try_chat_batch(&posts).await {
            Ok(outcomes) => outcomes,
            Err(first) => {
                tracing::warn!("a batch of {} chat posts failed ({first})", posts.len());
                let mut errors = vec![Err(first)];
                errors.extend(posts.iter().skip(1).map(|_| Err(LiveError::ChatLost(GroupCommitError::Lost))));
                errors
            }
        }
    }

    async fn try_chat_batch(&self, posts: &[ChatPost]) -> Result<Vec<Result<(), LiveError>>, LiveError> {
        let backend = self.inner.store.backend();
        let mut connection = self.inner.store.write().acquire().await?;
        let pairs: Vec<(&str, &str)> = posts.iter().map(|post| (post.room_id(), post.user_id())).collect();
        let read = format!(
            "SELECT p.room_id, p.user_id, r.status, r.host_id, m.muted, m.banned FROM ({}) AS p
             JOIN live_rooms r ON r.id = p.room_id
             LEFT JOIN live_room_moderation m ON m.room_id = p.room_id AND m.user_id = p.user_id",
            backend.json_rows(1, &[("room_id", JsonColumn::Text), ("user_id", JsonColumn::Text)])
        );
        let rows = sqlx::query(&read).bind(to_json(&pairs)?).fetch_all(&mut *connection).await?;
        let mut gates: HashMap<(String, String), ChatGate> = HashMap::new();
        for row in &rows {
            use plaza_store::Row;
            gates.insert((row.try_get("room_id")?, row.try_get("user_id")?), ChatGate::from_row(row)?);
        }
        let mut outcomes = Vec::with_capacity(posts.len());
        let mut accepted = Vec::new();
        for post in posts {
            let gate = gates.get(&(post.room_id().to_string(), post.user_id().to_string()));
            let outcome = self.decide(post, gate).await?;
            if outcome.is_ok() {
                accepted.push(post);
            }
            outcomes.push(outcome);
        }
        if !accepted.is_empty() {
            let insert = format!(
                "INSERT INTO live_chat_messages (id, room_id, user_id, text, created_at)
                 SELECT id, room_id, user_id, text, created_at FROM ({}) AS rows",
                backend.json_rows(
                    1,
                    &[
                        ("id", JsonColumn::Text),
                        ("room_id", JsonColumn::Text),
                        ("user_id", JsonColumn::Text),
                        ("text", JsonColumn::Text),
                        ("created_at", JsonColumn::BigInt),
                    ]
                )
            );
            sqlx::query(&insert).bind(to_json(&accepted)?).execute(&mut *connection).await?;
            if accepted.len() > 1 {
                metrics::counter!("plaza_live_chat_batched_messages_total").increment(accepted.len() as u64);
            }
        }
        drop(connection);
        self.bound_rooms(&accepted).await;
        Ok(outcomes)
    }

    /// One post's answer: the room and its moderation, then the join, then the rate.
    async fn decide(&self, post: &ChatPost, gate: Option<&ChatGate>) -> Result<Result<(), LiveError>, LiveError> {
        if let Some(refusal) = ChatGate::refusal(gate, post.user_id()) {
            return Ok(Err(refusal));
        }
        if !self.has_joined(post.room_id(), post.user_id()).await? {
            return Ok(Err(LiveError::NotJoined));
        }
        Ok(self
            .inner
            .chat_limiter
            .take(post.room_id(), post.user_id())
            .map_err(|retry_after| LiveError::RateLimited { retry_after }))
    }

    /// Bounds the kept chat of the rooms that are due after these posts.
    async fn bound_rooms(&self, accepted: &[&ChatPost]) {
        for post in accepted {
            if self.count_for_pruning(post.room_id()) {
                if let Err(error) = self.bound_chat(post.room_id()).await {
                    tracing::warn!(room = %post.room_id(), "bounding the room's kept chat: {error}");
                }
            }
        }
    }
}

fn to_json(rows: &impl serde::Serialize) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|error| sqlx::Error::Encode(Box::new(error)))
}
