//! Hearts: viewers send them by the thousand, so they are counted, not stored one by one.
//! Each node adds them up in memory per room and writes the sums once a second with one
//! `likes = likes + n` per room, so a burst costs the database one statement per room
//! and second whatever its size, and every node's hearts add up.

use crate::model::RoomStatus;
use crate::service::{invalid, LiveError, LiveHandle};
use plaza_accounts::User;
use std::collections::HashMap;
use std::time::Duration;

/// Hearts one request may carry.
pub const LIKES_PER_REQUEST_MAX: i64 = 100;
/// How often a node writes the hearts it counted.
pub const LIKES_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Rooms whose unwritten hearts one node holds (live rooms are far fewer).
const LIKE_ROOMS_MAX: usize = 10_000;

impl LiveHandle {
    /// Counts `count` hearts for a live room; they show in its `likes` within a second.
    pub async fn like(&self, viewer: &User, room_id: &str, count: i64) -> Result<(), LiveError> {
        if !(1..=LIKES_PER_REQUEST_MAX).contains(&count) {
            return Err(invalid("count", format!("1 to {LIKES_PER_REQUEST_MAX}")));
        }
        match self.playback_status(room_id).await? {
            RoomStatus::Live => {}
            RoomStatus::Created => {
                // Not live yet: its host's alone, like everything about it.
                self.room(Some(viewer), room_id).await?;
                return Err(LiveError::InvalidTransition { status: RoomStatus::Created, action: "take hearts yet" });
            }
            RoomStatus::Ended => {
                return Err(LiveError::InvalidTransition { status: RoomStatus::Ended, action: "take hearts" })
            }
        }
        let mut pending = self.pending_likes();
        if pending.len() >= LIKE_ROOMS_MAX && !pending.contains_key(room_id) {
            // Past the bound a heart is dropped rather than memory grown: hearts are a
            // signal, not money.
            return Ok(());
        }
        *pending.entry(room_id.to_string()).or_insert(0) += count;
        Ok(())
    }

    fn pending_likes(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.inner.pending_likes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes the hearts counted since the last call.
    pub async fn flush_likes(&self) -> Result<(), LiveError> {
        let pending = std::mem::take(&mut *self.pending_likes());
        let mut rooms: Vec<(String, i64)> = pending.into_iter().collect();
        // Room ids in ascending order, as every multi-row write here takes its locks.
        rooms.sort();
        for (index, (room_id, count)) in rooms.iter().enumerate() {
            let written = sqlx::query("UPDATE live_rooms SET likes = likes + $1 WHERE id = $2")
                .bind(count)
                .bind(room_id)
                .execute(self.inner.store.write())
                .await;
            if let Err(error) = written {
                // Put back what was not written, for the next flush.
                let mut pending = self.pending_likes();
                for (room_id, count) in &rooms[index..] {
                    *pending.entry(room_id.clone()).or_insert(0) += count;
                }
                return Err(error.into());
            }
        }
        Ok(())
    }

    /// Runs [`Self::flush_likes`] every second for ever.
    pub async fn flush_likes_continually(self) {
        let mut ticks = tokio::time::interval(LIKES_FLUSH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = self.flush_likes().await {
                tracing::warn!("writing live hearts: {error}");
            }
        }
    }
}
