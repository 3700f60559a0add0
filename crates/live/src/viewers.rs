//! Who may join, how many watch, and who joined where, across nodes.
//!
//! Viewers are joined sockets. Each node counts its own per room (`hub.rs`) and once a
//! second writes each count to its row of `live_room_nodes` and sets the room's
//! `viewers` to the sum of the rows renewed in the last 3 s, in one statement that also
//! returns the room's hearts and status: those are what that node's viewers get as
//! `live.stats`. So `GET /live/rooms/{id}`, the "live now" order and every node's
//! `live.stats` read one number, and a node that dies stops counting within 3 s.
//!
//! With NATS, chat may be posted through a node other than the one holding the poster's
//! socket, so each node also writes who joined (`live_room_members`): at once on a join,
//! and reconciled with its memory every second. A member row counts only while its
//! node's row for the room is fresh.

use crate::model::RoomStatus;
use crate::service::{LiveError, LiveHandle};
use axum::extract::ws::Utf8Bytes;
use plaza_accounts::User;
use plaza_kernel::Timestamp;
use plaza_store::Row;
use std::collections::HashSet;
use std::time::Duration;

/// How often each node counts its viewers and sends `live.stats`.
pub const COUNT_INTERVAL: Duration = Duration::from_secs(1);
/// A node's row counts while renewed this recently.
const FRESH: Duration = Duration::from_secs(3);
/// A node's rows (and its members) not renewed for this long are deleted: it is gone.
const DEAD: Duration = Duration::from_secs(60);
/// Counts between two sweeps of other nodes' stale rows.
const SWEEP_EVERY: u32 = 5;

/// A room after its recount.
struct Recounted {
    viewers: i64,
    likes: i64,
    status: RoomStatus,
    /// Its latest deal's flash sale and end.
    deal: Option<(String, Timestamp)>,
}

/// The rows this node wrote, as it believes them to be.
#[derive(Debug, Default)]
pub(crate) struct NodeRows {
    /// Rooms with this node's `live_room_nodes` row.
    rooms: HashSet<String>,
    /// (room, user) pairs in `live_room_members` for this node.
    members: HashSet<(String, String)>,
}

impl LiveHandle {
    /// Whether `user` may join the room: it exists (one not yet live is its host's
    /// alone), has not ended, and has not banned them.
    pub(crate) async fn check_join(&self, user: &User, room_id: &str) -> Result<(), LiveError> {
        let gate = self.chat_gate(room_id, &user.id).await?;
        match gate.status {
            RoomStatus::Created if gate.host_id != user.id => return Err(LiveError::RoomNotFound),
            RoomStatus::Ended => return Err(LiveError::RoomEnded),
            RoomStatus::Created | RoomStatus::Live => {}
        }
        if gate.banned {
            return Err(LiveError::Banned);
        }
        Ok(())
    }

    /// Whether `user_id` has a socket in the room: on this node, or (with NATS) on any
    /// node that still counts.
    pub(crate) async fn has_joined(&self, room_id: &str, user_id: &str) -> Result<bool, LiveError> {
        if self.hub().has_joined(room_id, user_id) {
            return Ok(true);
        }
        if !self.inner.bus.is_clustered() {
            return Ok(false);
        }
        let row = sqlx::query(
            "SELECT m.node_id FROM live_room_members m
             JOIN live_room_nodes n ON n.room_id = m.room_id AND n.node_id = m.node_id
             WHERE m.room_id = $1 AND m.user_id = $2 AND n.seen_at >= $3 LIMIT 1",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(Timestamp::now().minus(FRESH).unix_millis())
        .fetch_optional(self.inner.store.read())
        .await?;
        Ok(row.is_some())
    }

    /// With NATS, writes a join at once, so that chat through another node sees it.
    pub(crate) async fn record_member(&self, room_id: &str, user_id: &str) -> Result<(), LiveError> {
        if !self.inner.bus.is_clustered() {
            return Ok(());
        }
        let mut rows = self.hub().rows.lock().await;
        let pair = (room_id.to_string(), user_id.to_string());
        // Already written, or left again while this waited for the lock.
        if rows.members.contains(&pair) || !self.hub().has_joined(room_id, user_id) {
            return Ok(());
        }
        if !rows.rooms.contains(room_id) {
            let viewers = self.hub().counts_of(room_id);
            self.write_node_row(&mut rows, room_id, viewers, Timestamp::now().unix_millis()).await?;
        }
        self.insert_member(room_id, user_id).await?;
        rows.members.insert(pair);
        Ok(())
    }

    async fn insert_member(&self, room_id: &str, user_id: &str) -> Result<(), LiveError> {
        sqlx::query(
            "INSERT INTO live_room_members (room_id, user_id, node_id) VALUES ($1, $2, $3)
             ON CONFLICT (room_id, user_id, node_id) DO NOTHING",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(&self.inner.node_id)
        .execute(self.inner.store.write())
        .await?;
        Ok(())
    }

    /// Renews this node's count for a room (writing the row if it is new, or if another
    /// node took it for a dead one's: then its members are written again too).
    async fn write_node_row(
        &self,
        rows: &mut NodeRows,
        room_id: &str,
        viewers: i64,
        now: i64,
    ) -> Result<(), LiveError> {
        let renewed =
            sqlx::query("UPDATE live_room_nodes SET viewers = $1, seen_at = $2 WHERE room_id = $3 AND node_id = $4")
                .bind(viewers)
                .bind(now)
                .bind(room_id)
                .bind(&self.inner.node_id)
                .execute(self.inner.store.write())
                .await?
                .rows_affected();
        if renewed == 0 {
            sqlx::query(
                "INSERT INTO live_room_nodes (room_id, node_id, viewers, seen_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (room_id, node_id) DO UPDATE SET viewers = $3, seen_at = $4",
            )
            .bind(room_id)
            .bind(&self.inner.node_id)
            .bind(viewers)
            .bind(now)
            .execute(self.inner.store.write())
            .await?;
            rows.members.retain(|(room, _)| room != room_id);
        }
        rows.rooms.insert(room_id.to_string());
        Ok(())
    }

    /// Sets a room's `viewers` to the sum of the fresh node rows; its viewers, hearts,
    /// status and deal after that.
    async fn recount(&self, room_id: &str, now: i64) -> Result<Option<Recounted>, LiveError> {
        let fresh = now - FRESH.as_millis() as i64;
        let row = sqlx::query(
            "UPDATE live_rooms SET viewers = (
                 SELECT COALESCE(SUM(n.viewers), 0) FROM live_room_nodes n
                 WHERE n.room_id = live_rooms.id AND n.seen_at >= $1)
             WHERE id = $2 RETURNING viewers, likes, status, deal_flash_sale_id, deal_ends_at",
        )
        .bind(fresh)
        .bind(room_id)
        .fetch_optional(self.inner.store.write())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let status: String = row.try_get("status")?;
        let deal_id: Option<String> = row.try_get("deal_flash_sale_id")?;
        let deal_ends_at: Option<i64> = row.try_get("deal_ends_at")?;
        Ok(Some(Recounted {
            viewers: row.try_get("viewers")?,
            likes: row.try_get("likes")?,
            status: RoomStatus::parse(&status).unwrap_or(RoomStatus::Ended),
            deal: deal_id.zip(deal_ends_at.map(Timestamp::from_unix_millis)),
        }))
    }

    /// One count: renews this node's rows, reconciles its members, recounts its rooms and
    /// sends their viewers `live.stats` (or `live.ended`, should the end's notice have
    /// been lost).
    pub async fn count_viewers(&self) -> Result<(), LiveError> {
        let now = Timestamp::now().unix_millis();
        let (counts, emptied) = self.hub().counts();
        let emptied: Vec<String> =
            emptied.into_iter().filter(|room| !counts.iter().any(|(counted, _)| counted == room)).collect();
        {
            let mut rows = self.hub().rows.lock().await;
            for (room_id, viewers) in &counts {
                self.write_node_row(&mut rows, room_id, *viewers, now).await?;
            }
            for room_id in &emptied {
                sqlx::query("DELETE FROM live_room_nodes WHERE room_id = $1 AND node_id = $2")
                    .bind(room_id)
                    .bind(&self.inner.node_id)
                    .execute(self.inner.store.write())
                    .await?;
                rows.rooms.remove(room_id);
            }
            if self.inner.bus.is_clustered() {
                self.reconcile_members(&mut rows).await?;
            }
        }
        for (room_id, _) in &counts {
            let Some(recounted) = self.recount(room_id, now).await? else { continue };
            if recounted.status == RoomStatus::Ended {
                self.hub().end(room_id);
                continue;
            }
            let frame = serde_json::json!({"type": "live.stats",
                "data": {"room_id": room_id, "viewers": recounted.viewers, "likes": recounted.likes}});
            self.hub().send(room_id, &Utf8Bytes::from(frame.to_string()));
            if let Some((sale_id, ends_at)) = &recounted.deal {
                self.send_deal_tick(room_id, sale_id, *ends_at, &counts).await?;
            }
        }
        for room_id in &emptied {
            self.recount(room_id, now).await?;
        }
        Ok(())
    }

    /// Makes `live_room_members` say what this node's memory says.
    async fn reconcile_members(&self, rows: &mut NodeRows) -> Result<(), LiveError> {
        let current = self.hub().members();
        let gone: Vec<(String, String)> = rows.members.difference(&current).cloned().collect();
        let new: Vec<(String, String)> = current.difference(&rows.members).cloned().collect();
        for pair in gone {
            sqlx::query("DELETE FROM live_room_members WHERE room_id = $1 AND user_id = $2 AND node_id = $3")
                .bind(&pair.0)
                .bind(&pair.1)
                .bind(&self.inner.node_id)
                .execute(self.inner.store.write())
                .await?;
            rows.members.remove(&pair);
        }
        for pair in new {
            // A room emptied and joined again since the count began has no row yet; the
            // next count writes both.
            if rows.rooms.contains(&pair.0) {
                self.insert_member(&pair.0, &pair.1).await?;
                rows.members.insert(pair);
            }
        }
        Ok(())
    }

    /// Every node's part in forgetting the others: rooms with a row no longer fresh are
    /// recounted, and the rows (and members) of nodes silent for a minute deleted.
    pub async fn sweep_viewer_rows(&self) -> Result<(), LiveError> {
        let now = Timestamp::now();
        let fresh = now.minus(FRESH).unix_millis();
        let dead = now.minus(DEAD).unix_millis();
        let stale = sqlx::query("SELECT DISTINCT room_id FROM live_room_nodes WHERE seen_at < $1 LIMIT 100")
            .bind(fresh)
            .fetch_all(self.inner.store.read())
            .await?;
        for row in stale {
            let room_id: String = row.try_get("room_id")?;
            self.recount(&room_id, now.unix_millis()).await?;
        }
        sqlx::query(
            "DELETE FROM live_room_members WHERE NOT EXISTS (
                 SELECT 1 FROM live_room_nodes n WHERE n.room_id = live_room_members.room_id
                   AND n.node_id = live_room_members.node_id AND n.seen_at >= $1)",
        )
        .bind(dead)
        .execute(self.inner.store.write())
        .await?;
        sqlx::query("DELETE FROM live_room_nodes WHERE seen_at < $1")
            .bind(dead)
            .execute(self.inner.store.write())
            .await?;
        Ok(())
    }

    /// Counts every second for ever, sweeping every few seconds.
    pub async fn count_viewers_continually(self) {
        let mut ticks = tokio::time::interval(COUNT_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut count = 0u32;
        loop {
            ticks.tick().await;
            if let Err(error) = self.count_viewers().await {
                tracing::warn!("counting live viewers: {error}");
            }
            count = count.wrapping_add(1);
            if count.is_multiple_of(SWEEP_EVERY) {
                if let Err(error) = self.sweep_viewer_rows().await {
                    tracing::warn!("sweeping live viewer rows: {error}");
                }
            }
        }
    }

    /// At shutdown: this node's rows go, and its rooms are recounted without it.
    pub(crate) async fn forget_node_rows(&self) -> Result<(), LiveError> {
        let rows = sqlx::query("SELECT room_id FROM live_room_nodes WHERE node_id = $1")
            .bind(&self.inner.node_id)
            .fetch_all(self.inner.store.read())
            .await?;
        sqlx::query("DELETE FROM live_room_members WHERE node_id = $1")
            .bind(&self.inner.node_id)
            .execute(self.inner.store.write())
            .await?;
        sqlx::query("DELETE FROM live_room_nodes WHERE node_id = $1")
            .bind(&self.inner.node_id)
            .execute(self.inner.store.write())
            .await?;
        let now = Timestamp::now().unix_millis();
        for row in rows {
            let room_id: String = row.try_get("room_id")?;
            self.recount(&room_id, now).await?;
        }
        Ok(())
    }
}
