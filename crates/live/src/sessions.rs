//! An ingest session in the database: which node holds a room's ingest (a lease renewed
//! while media flows), when media last arrived, the segments it recorded, and the idle
//! end. Each step is one conditional update, so two publishers with one key, a host's
//! end and the idle end on every node decide once.

use crate::model::StreamKey;
use crate::playlist::Segment;
use crate::service::{LiveError, LiveHandle};
use plaza_kernel::Timestamp;
use plaza_store::Row;
use std::time::Duration;

/// How long an ingest lease lasts without renewal; a node that dies holding one frees the
/// room this long after its last renewal.
pub(crate) const INGEST_LEASE: Duration = Duration::from_secs(5);
/// How often a session renews its lease and records when media last arrived.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Why a publisher is refused, as RTMP's `onStatus` codes say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// An unknown, rotated or ended room's key, or not `rtmp://…/live/KEY`.
    BadKey,
    /// This node ingests `rooms_max` rooms already, or the room has a publisher.
    Busy,
}

impl Refusal {
    pub(crate) fn rtmp_code(self) -> &'static str {
        match self {
            Refusal::BadKey => "NetStream.Publish.BadName",
            Refusal::Busy => "NetStream.Publish.Rejected",
        }
    }
}

/// A room this node ingests; dropping it frees the node's slot.
#[derive(Debug)]
pub(crate) struct IngestSlot {
    pub(crate) live: LiveHandle,
    pub(crate) room_id: String,
    pub(crate) key_digest: String,
}

impl Drop for IngestSlot {
    fn drop(&mut self) {
        self.live.ingesting().remove(&self.room_id);
    }
}

impl LiveHandle {
    pub(crate) fn ingesting(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.inner.ingesting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides a publisher's `publish`: the key must be a room's that has not ended, the
    /// node must have a free slot, and no other publisher may hold the room.
    pub(crate) async fn begin_ingest(&self, app: &str, name: &str) -> Result<IngestSlot, Refusal> {
        let key = StreamKey::parse(name).filter(|_| app == "live").ok_or(Refusal::BadKey)?;
        let digest = key.digest();
        let room_id = match self.room_for_key(&digest).await {
            Ok(Some(room_id)) => room_id,
            Ok(None) => return Err(Refusal::BadKey),
            Err(error) => {
                tracing::warn!("looking up a stream key: {error}");
                return Err(Refusal::Busy);
            }
        };
        let slot = self.take_slot(&room_id, &digest).await?;
        match self.claim_lease(&room_id, &digest).await {
            Ok(true) => Ok(slot),
            Ok(false) => Err(Refusal::Busy),
            Err(error) => {
                tracing::warn!(room = %room_id, "claiming the ingest lease: {error}");
                Err(Refusal::Busy)
            }
        }
    }

    async fn room_for_key(&self, digest: &str) -> Result<Option<String>, LiveError> {
        let row = sqlx::query("SELECT id FROM live_rooms WHERE stream_key_digest = $1 AND status <> 'ended'")
            .bind(digest)
            .fetch_optional(self.inner.store.read())
            .await?;
        Ok(row.map(|row| row.try_get("id")).transpose()?)
    }

    /// A slot on this node for `room_id`. A reconnect may arrive while the dropped
    /// session still flushes its last segment, so it waits a little for that one.
    async fn take_slot(&self, room_id: &str, digest: &str) -> Result<IngestSlot, Refusal> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            {
                let mut ingesting = self.ingesting();
                if !ingesting.contains(room_id) {
                    if ingesting.len() >= self.inner.config.rooms_max {
                        return Err(Refusal::Busy);
                    }
                    ingesting.insert(room_id.to_string());
                    return Ok(IngestSlot {
                        live: self.clone(),
                        room_id: room_id.to_string(),
                        key_digest: digest.to_string(),
                    });
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Refusal::Busy);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn claim_lease(&self, room_id: &str, digest: &str) -> Result<bool, LiveError> {
        let now = Timestamp::now();
        let claimed = sqlx::query(
            "UPDATE live_rooms SET ingest_node = $1, ingest_until = $2
             WHERE id = $3 AND stream_key_digest = $4 AND status <> 'ended'
               AND (ingest_node IS NULL OR ingest_node = $1 OR ingest_until < $5)",
        )
        .bind(&self.inner.node_id)
        .bind(now.plus(INGEST_LEASE).unix_millis())
        .bind(room_id)
        .bind(digest)
        .bind(now.unix_millis())
        .execute(self.inner.store.write())
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    /// Renews the lease and records the last media time; `false` when the session must
    /// stop: the room ended, its key was rotated, or another node took it over.
    pub(crate) async fn renew_ingest_of(
        &self,
        room_id: &str,
        key_digest: &str,
        last_media_at: Option<i64>,
    ) -> Result<bool, LiveError> {
        let renewed = sqlx::query(
            "UPDATE live_rooms SET ingest_until = $1, last_media_at = COALESCE($2, last_media_at)
             WHERE id = $3 AND stream_key_digest = $4 AND status <> 'ended' AND ingest_node = $5",
        )
        .bind(Timestamp::now().plus(INGEST_LEASE).unix_millis())
        .bind(last_media_at)
        .bind(room_id)
        .bind(key_digest)
        .bind(&self.inner.node_id)
        .execute(self.inner.store.write())
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    /// Gives the lease back when the publisher is gone; the room stays live for the idle
    /// time, measured from its last media.
    pub(crate) async fn release_ingest(&self, slot: &IngestSlot, last_media_at: Option<i64>) -> Result<(), LiveError> {
        sqlx::query(
            "UPDATE live_rooms SET ingest_node = NULL, ingest_until = NULL,
                 last_media_at = COALESCE($1, last_media_at)
             WHERE id = $2 AND ingest_node = $3",
        )
        .bind(last_media_at)
        .bind(&slot.room_id)
        .bind(&self.inner.node_id)
        .execute(self.inner.store.write())
        .await?;
        Ok(())
    }

    /// Records a segment already in the object store; the first one makes the room live.
    pub(crate) async fn record_segment(&self, room_id: &str, segment: Segment) -> Result<(), LiveError> {
        let now = Timestamp::now().unix_millis();
        let mut transaction = self.inner.store.begin().await?;
        sqlx::query(
            "INSERT INTO live_segments (room_id, seq, duration_ms, discontinuity, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(room_id)
        .bind(segment.seq)
        .bind(segment.duration_ms)
        .bind(i64::from(segment.discontinuity))
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "UPDATE live_rooms SET status = 'live', started_at = $1, last_media_at = $1
             WHERE id = $2 AND status = 'created'",
        )
        .bind(now)
        .bind(room_id)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        self.forget_playback_status(room_id);
        Ok(())
    }

    /// Ends every live room whose media stopped `idle_end` ago and that no node ingests;
    /// how many. Every node runs it: each end is one conditional update.
    pub async fn end_idle_rooms(&self) -> Result<usize, LiveError> {
        let now = Timestamp::now();
        let cutoff = now.minus(self.inner.config.idle_end).unix_millis();
        let idle = "status = 'live' AND last_media_at < $1 AND (ingest_until IS NULL OR ingest_until < $2)";
        let rows = sqlx::query(&format!("SELECT id FROM live_rooms WHERE {idle} LIMIT 100"))
            .bind(cutoff)
            .bind(now.unix_millis())
            .fetch_all(self.inner.store.read())
            .await?;
        let mut ended = 0;
        for row in rows {
            let room_id: String = row.try_get("id")?;
            let changed =
                sqlx::query(&format!("UPDATE live_rooms SET status = 'ended', ended_at = $3 WHERE id = $4 AND {idle}"))
                    .bind(cutoff)
                    .bind(now.unix_millis())
                    .bind(now.unix_millis())
                    .bind(&room_id)
                    .execute(self.inner.store.write())
                    .await?
                    .rows_affected();
            if changed == 1 {
                self.end_deal_with_room(&room_id).await?;
                self.forget_playback_status(&room_id);
                self.publish_room(&room_id, &crate::hub::RoomNotice::Ended);
                tracing::info!(room = %room_id, "live room ended after its media stopped");
                self.write_final_playlist(&room_id).await?;
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Runs [`Self::end_idle_rooms`] for ever, a few times per idle period.
    pub async fn end_idle_rooms_continually(self) {
        let every = (self.inner.config.idle_end / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = self.end_idle_rooms().await {
                tracing::warn!("ending idle live rooms: {error}");
            }
        }
    }
}
