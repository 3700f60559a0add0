//! Resumable uploads, by the tus 1.0 core protocol and its creation extension, over the
//! object store.
//!
//! An object store cannot append, so an upload is a list of parts: a `PATCH` streams its
//! body into memory and flushes a part every [`PART_BYTES`] (and at its end, also when
//! the connection drops midway), each flush one object plus one transaction that
//! records the part and advances `offset_bytes` on the condition that it is still where
//! the part starts. `HEAD` answers that offset, so a client resumes from exactly the
//! bytes that were stored, on any node. One `PATCH` at a time writes an upload: it
//! holds `writer_until`, renewed at each flush, and a second one meanwhile is a 409. A
//! part written by a request that then lost the condition is an orphan object under the
//! upload's prefix, deleted with it.

use crate::service::{VideoError, VideoHandle};
use crate::storage;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use object_store::path::Path as ObjectPath;
use plaza_accounts::User;
use plaza_kernel::Timestamp;
use plaza_store::Row;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A part is flushed to the object store every this many bytes.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// A `PATCH` that sends nothing for this long is treated as dropped.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a `PATCH` holds the upload between flushes.
const WRITER_LEASE: Duration = Duration::from_secs(60);

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadState {
    pub offset: i64,
    pub length: i64,
}

impl VideoHandle {
    /// Creates an upload of `length` bytes (tus creation).
    pub async fn create_upload(&self, me: &User, length: i64) -> Result<String, VideoError> {
        let config = &self.inner.config;
        if length <= 0 {
            return Err(crate::service::invalid("Upload-Length", "a positive number of bytes"));
        }
        if length > config.upload_max_bytes {
            return Err(VideoError::TooLarge { max_bytes: config.upload_max_bytes });
        }
        let now = Timestamp::now();
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM video_uploads WHERE owner_id = $1 AND video_id IS NULL AND expires_at > $2",
        )
        .bind(&me.id)
        .bind(now.unix_millis())
        .fetch_one(self.inner.store.read())
        .await?;
        if open >= config.open_uploads_per_user_max {
            return Err(VideoError::Busy {
                what: "too many unfinished uploads; finish or abandon one first",
                retry_after_seconds: 60,
            });
        }
        let id = plaza_kernel::new_id();
        sqlx::query(
            "INSERT INTO video_uploads (id, owner_id, length_bytes, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(&me.id)
        .bind(length)
        .bind(now.unix_millis())
        .bind(now.plus(config.upload_expiry).unix_millis())
        .execute(self.inner.store.write())
        .await?;
        Ok(id)
    }

    /// The upload's offset and length (tus `HEAD`).
    pub async fn upload_state(&self, me: &User, upload_id: &str) -> Result<UploadState, VideoError> {
        let row = sqlx::query(
            "SELECT offset_bytes, length_bytes FROM video_uploads WHERE id = $1 AND owner_id = $2 AND expires_at > $3",
        )
        .bind(upload_id)
        .bind(&me.id)
        .bind(Timestamp::now().unix_millis())
        .fetch_optional(self.inner.store.read())
        .await?
        .ok_or(VideoError::UploadNotFound)?;
        Ok(UploadState { offset: row.try_get("offset_bytes")?, length: row.try_get("length_bytes")? })
    }

    /// Appends a `PATCH` body at `offset`; returns the new offset. Bytes received before
    /// the body broke off are kept; bytes past the upload's length are refused (413) after
    /// those that fit are stored.
    pub async fn append<S, E>(&self, me: &User, upload_id: &str, offset: i64, body: S) -> Result<i64, VideoError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let state = self.upload_state(me, upload_id).await?;
        if state.offset != offset {
            return Err(VideoError::OffsetMismatch { offset: state.offset });
        }
        let now = Timestamp::now();
        let claimed = sqlx::query(
            "UPDATE video_uploads SET writer_until = $4
             WHERE id = $1 AND owner_id = $2 AND offset_bytes = $3 AND video_id IS NULL
               AND (writer_until IS NULL OR writer_until < $5)",
        )
        .bind(upload_id)
        .bind(&me.id)
        .bind(offset)
        .bind(now.plus(WRITER_LEASE).unix_millis())
        .bind(now.unix_millis())
        .execute(self.inner.store.write())
        .await?;
        if claimed.rows_affected() != 1 {
            let state = self.upload_state(me, upload_id).await?;
            return Err(if state.offset != offset {
                VideoError::OffsetMismatch { offset: state.offset }
            } else {
                VideoError::UploadBusy
            });
        }
        let outcome = self.receive(upload_id, offset, state.length, body).await;
        let released = sqlx::query("UPDATE video_uploads SET writer_until = NULL WHERE id = $1")
            .bind(upload_id)
            .execute(self.inner.store.write())
            .await;
        if let Err(error) = released {
            tracing::warn!("releasing upload {upload_id}: {error} (its lease expires by itself)");
        }
        outcome
    }

    async fn receive<S, E>(&self, upload_id: &str, start: i64, length: i64, mut body: S) -> Result<i64, VideoError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut offset = start;
        let mut buffer = BytesMut::new();
        let mut overflow = false;
        loop {
            let next = match tokio::time::timeout(BODY_IDLE_TIMEOUT, body.next()).await {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(Some(Err(error))) => {
                    tracing::debug!("upload {upload_id}: the body broke off after {} bytes: {error}", buffer.len());
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::debug!("upload {upload_id}: the body went quiet; keeping what came");
                    break;
                }
            };
            let room = (length - offset) as usize - buffer.len();
            if next.len() > room {
                buffer.extend_from_slice(&next[..room]);
                overflow = true;
                break;
            }
            buffer.extend_from_slice(&next);
            if buffer.len() >= PART_BYTES {
                offset = self.flush(upload_id, offset, buffer.split().freeze()).await?;
            }
        }
        if !buffer.is_empty() {
            offset = self.flush(upload_id, offset, buffer.freeze()).await?;
        }
        if overflow {
            return Err(VideoError::TooLarge { max_bytes: length });
        }
        Ok(offset)
    }

    /// Stores one part and advances the offset past it.
    async fn flush(&self, upload_id: &str, offset: i64, bytes: Bytes) -> Result<i64, VideoError> {
        let part_id = plaza_kernel::new_id();
        let key = storage::upload_part_key(upload_id, &part_id);
        let length = bytes.len() as i64;
        self.inner.objects.put(&ObjectPath::from(key.as_str()), bytes.into()).await?;
        let mut transaction = self.inner.store.begin().await?;
        let advanced = sqlx::query(
            "UPDATE video_uploads SET offset_bytes = offset_bytes + $3, writer_until = $4
             WHERE id = $1 AND offset_bytes = $2",
        )
        .bind(upload_id)
        .bind(offset)
        .bind(length)
        .bind(Timestamp::now().plus(WRITER_LEASE).unix_millis())
        .execute(&mut *transaction)
        .await?;
        if advanced.rows_affected() != 1 {
            return Err(VideoError::UploadBusy);
        }
        sqlx::query(
            "INSERT INTO video_upload_parts (upload_id, start_bytes, length_bytes, object_key) VALUES ($1, $2, $3, $4)",
        )
        .bind(upload_id)
        .bind(offset)
        .bind(length)
        .bind(&key)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(offset + length)
    }

    /// Writes a complete upload's bytes, in order, to a local file.
    pub(crate) async fn assemble_upload(&self, upload_id: &str, file: &std::path::Path) -> Result<i64, VideoError> {
        let parts = sqlx::query(
            "SELECT start_bytes, length_bytes, object_key FROM video_upload_parts WHERE upload_id = $1 ORDER BY start_bytes",
        )
        .bind(upload_id)
        .fetch_all(self.inner.store.read())
        .await?;
        let mut out = tokio::fs::File::create(file).await?;
        let mut expected = 0i64;
        for part in parts {
            let start: i64 = part.try_get("start_bytes")?;
            let length: i64 = part.try_get("length_bytes")?;
            let key: String = part.try_get("object_key")?;
            if start != expected {
                return Err(VideoError::Io(std::io::Error::other(format!(
                    "upload {upload_id} has a gap at {expected} (next part at {start})"
                ))));
            }
            let mut stream = self.inner.objects.get(&ObjectPath::from(key.as_str())).await?.into_stream();
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk?).await?;
            }
            expected = start + length;
        }
        out.flush().await?;
        Ok(expected)
    }

    /// Forgets uploads that expired unpublished and the parts of published ones whose
    /// video has been processed; returns how many uploads went.
    pub async fn delete_spent_uploads(&self) -> Result<u64, VideoError> {
        let now = Timestamp::now().unix_millis();
        let spent: Vec<String> = sqlx::query_scalar(
            "SELECT u.id FROM video_uploads u
             WHERE (u.video_id IS NULL AND u.expires_at < $1)
                OR (u.video_id IS NOT NULL AND NOT EXISTS (
                       SELECT 1 FROM videos v WHERE v.id = u.video_id AND v.status = 'processing'))
             LIMIT 100",
        )
        .bind(now)
        .fetch_all(self.inner.store.read())
        .await?;
        for upload_id in &spent {
            storage::delete_prefix(&self.inner.objects, &storage::upload_prefix(upload_id)).await;
            sqlx::query("DELETE FROM video_upload_parts WHERE upload_id = $1")
                .bind(upload_id)
                .execute(self.inner.store.write())
                .await?;
            sqlx::query("DELETE FROM video_uploads WHERE id = $1 AND (video_id IS NOT NULL OR expires_at < $2)")
                .bind(upload_id)
                .bind(now)
                .execute(self.inner.store.write())
                .await?;
        }
        Ok(spent.len() as u64)
    }
}
