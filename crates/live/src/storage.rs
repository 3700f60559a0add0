//! Where a room's playback lives in the object store (the media crate's: files under
//! the data directory, or an S3 bucket), so every node serves every room:
//! `live/{room}/index.m3u8` (the live window while live, the whole recording with
//! `EXT-X-ENDLIST` once ended) and `live/{room}/seg{n}.ts`.

use crate::playlist::{self, Segment};
use crate::service::{LiveError, LiveHandle};
use object_store::path::Path as ObjectPath;
use object_store::PutPayload;
use plaza_store::Row;

pub(crate) fn playlist_key(room_id: &str) -> ObjectPath {
    ObjectPath::from(format!("live/{room_id}/index.m3u8"))
}

pub(crate) fn segment_key(room_id: &str, seq: i64) -> ObjectPath {
    ObjectPath::from(format!("live/{room_id}/{}", playlist::segment_name(seq)))
}

impl LiveHandle {
    /// Every recorded segment of a room, in order.
    pub(crate) async fn segments(&self, room_id: &str) -> Result<Vec<Segment>, LiveError> {
        let rows =
            sqlx::query("SELECT seq, duration_ms, discontinuity FROM live_segments WHERE room_id = $1 ORDER BY seq")
                .bind(room_id)
                .fetch_all(self.inner.store.read())
                .await?;
        rows.iter()
            .map(|row| {
                Ok(Segment {
                    seq: row.try_get("seq")?,
                    duration_ms: row.try_get("duration_ms")?,
                    discontinuity: row.try_get::<i64, _>("discontinuity")? == 1,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(LiveError::from)
    }

    /// Writes the ended room's playlist, every segment and `EXT-X-ENDLIST`, from the
    /// database. Whoever ends a room calls it, and so does an ingest that stops after
    /// the end; each writes what the rows say, so the last writer's text is complete.
    pub(crate) async fn write_final_playlist(&self, room_id: &str) -> Result<(), LiveError> {
        let segments = self.segments(room_id).await?;
        if segments.is_empty() {
            return Ok(());
        }
        let text = playlist::media_playlist(&segments, 0, true);
        self.inner.objects.put(&playlist_key(room_id), PutPayload::from(text.into_bytes())).await?;
        Ok(())
    }
}
