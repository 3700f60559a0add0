//! Plaza media: images that users upload, kept in an object store — files under the
//! data directory by default, any S3-compatible bucket when `PLAZA_MEDIA_URL=s3://…` —
//! with a row per item in the database saying who uploaded what.
//!
//! Uploads are checked by their bytes, not by what the client claims: only PNG, JPEG,
//! GIF and WebP are accepted. Who may *read* an item is not decided here but by the
//! service that shares it (chat: the uploader and the members of a conversation it was
//! sent in).
//!
//! **Daily caps.** Each user may store at most `uploads_per_day` items and
//! `upload_bytes_per_day` bytes per UTC day. The day's use is a counter row
//! (`media_quota`) taken with one conditional upsert before the bytes are stored, so it
//! holds exactly under concurrent uploads, across nodes and across restarts; an upload
//! over either cap is refused (`MediaError::DailyLimit`, 429 with `Retry-After` until the
//! next UTC midnight) and stores nothing.
//!
//! **Unreferenced uploads are deleted.** An item is *kept* once the service that shares
//! it says so (`Media::keep`: chat calls it when an image is sent; an avatar would do the
//! same), so this crate never reads another service's tables. Items not kept within
//! `unreferenced_after` (a day) are deleted by `run_cleanup`, which every node runs: the
//! row goes first, in a statement that deletes it only if it is still not kept, then the
//! object. A crash in between leaves an orphan object that nothing refers to, never a
//! row served without bytes; and an item kept a moment before its deletion is not
//! deleted (the `kept_at IS NULL` condition), while `keep` on an item already deleted
//! says `NotFound`, so a message never points at bytes that are gone.
//!
//! **Public product photos.** Items their uploader published as product photos
//! ([`Media::publish_product_photos`], visibility `public_product`) may be read by every
//! signed-in user, since a shop's pages are public.

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use plaza_kernel::Timestamp;
use plaza_store::{Migration, Row, Store};
use std::sync::Arc;
use std::time::Duration;

pub const MIGRATIONS: &[Migration] = &[
    Migration { service: "media", version: 1, name: "media items", sqlite: MEDIA_SCHEMA, postgres: MEDIA_SCHEMA },
    Migration {
        service: "media",
        version: 2,
        name: "kept items and daily upload quotas",
        sqlite: MEDIA_QUOTA_SCHEMA,
        postgres: MEDIA_QUOTA_SCHEMA,
    },
    Migration {
        service: "media",
        version: 3,
        name: "public product photos",
        sqlite: PUBLIC_PRODUCT_VISIBILITY,
        postgres: PUBLIC_PRODUCT_VISIBILITY,
    },
];

/// Items uploaded before this migration may already be in messages, which this crate
/// cannot see, so they all count as kept.
const MEDIA_QUOTA_SCHEMA: &str = r#"
    ALTER TABLE media ADD COLUMN kept_at BIGINT;
    UPDATE media SET kept_at = created_at;
    CREATE INDEX media_unkept ON media (created_at) WHERE kept_at IS NULL;
    CREATE TABLE media_quota (
        owner_id TEXT NOT NULL,
        day BIGINT NOT NULL,
        uploads BIGINT NOT NULL,
        bytes BIGINT NOT NULL,
        PRIMARY KEY (owner_id, day)
    );
"#;

const MEDIA_SCHEMA: &str = r#"
    CREATE TABLE media (
        id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size_bytes BIGINT NOT NULL,
        object_key TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX media_owner ON media (owner_id);
"#;

/// Who may read an item besides its uploader: `private` (the sharing service decides) or
/// `public_product` (any signed-in user: a shop's product photo).
const PUBLIC_PRODUCT_VISIBILITY: &str = r#"
    ALTER TABLE media ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private'
        CHECK (visibility IN ('private', 'public_product'));
"#;

/// The largest upload accepted (10 MiB).
pub const UPLOAD_MAX_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the file is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("the file is empty")]
    Empty,
    #[error("the file is not a PNG, JPEG, GIF or WebP image")]
    NotAnImage,
    #[error("no such media")]
    NotFound,
    #[error("today's uploads are used up (at most {uploads_max} items and {bytes_max} bytes a day)")]
    DailyLimit { uploads_max: u32, bytes_max: u64, retry_after_seconds: u64 },
    #[error("{media_id} is not one of your uploads")]
    NotOwned { media_id: String },
    #[error("unsupported PLAZA_MEDIA_URL {0:?} (expected s3://bucket[/prefix])")]
    UnsupportedUrl(String),
    #[error("object storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Who may read a media item besides its uploader.
/// (`PublicProduct` also covers avatars: see [`Media::publish_avatar`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// The service that shared it decides (chat: members of its conversations).
    Private,
    /// Every signed-in user: a product photo of a shop.
    PublicProduct,
}

impl Visibility {
    fn parse(text: &str) -> Self {
        match text {
            "public_product" => Self::PublicProduct,
            _ => Self::Private,
        }
    }
}

/// A stored media item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaItem {
    pub id: String,
    pub owner_id: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub created_at: Timestamp,
    pub visibility: Visibility,
    object_key: String,
}

/// Per-user daily caps and the clean-up of unreferenced items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLimits {
    pub uploads_per_day: u32,
    pub upload_bytes_per_day: u64,
    /// An item not kept by then is deleted.
    pub unreferenced_after: Duration,
    /// How often each node looks for unreferenced items.
    pub cleanup_interval: Duration,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            uploads_per_day: 200,
            upload_bytes_per_day: 200 * 1024 * 1024,
            unreferenced_after: Duration::from_secs(86_400),
            cleanup_interval: Duration::from_secs(3600),
        }
    }
}

impl MediaItem {
    /// Whether every signed-in user may read it.
    pub fn is_public(&self) -> bool {
        self.visibility == Visibility::PublicProduct
    }
}

/// The media service handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Media {
    store: Store,
    objects: Arc<dyn ObjectStore>,
    limits: MediaLimits,
}

const DAY_MS: i64 = 86_400_000;

/// The most unreferenced items one clean-up pass deletes; the next pass takes the rest.
const CLEANUP_BATCH: i64 = 500;

impl Media {
    /// Local files under `data_dir/media`, or the S3-compatible bucket of `url`
    /// (credentials and endpoint from the usual `AWS_*` variables).
    pub fn open(store: Store, data_dir: &std::path::Path, url: Option<&str>) -> Result<Self, MediaError> {
        let objects: Arc<dyn ObjectStore> = match url {
            None => {
                let root = data_dir.join("media");
                std::fs::create_dir_all(&root)
                    .map_err(|error| object_store::Error::Generic { store: "local", source: Box::new(error) })?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(root)?)
            }
            Some(url) if url.starts_with("s3://") => {
                Arc::new(object_store::aws::AmazonS3Builder::from_env().with_url(url).build()?)
            }
            Some(other) => return Err(MediaError::UnsupportedUrl(other.to_string())),
        };
        Ok(Self { store, objects, limits: MediaLimits::default() })
    }

    /// Objects kept in this process's memory only: for tools that store no bytes (the
    /// admin command line) and for tests.
    pub fn in_memory(store: Store) -> Self {
        Self { store, objects: Arc::new(object_store::memory::InMemory::new()), limits: MediaLimits::default() }
    }

    /// The object store itself, for services that keep files of their own beside the
    /// images under their own key prefixes (video); what they store is theirs to clean up.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.objects.clone()
    }

    pub fn with_limits(self, limits: MediaLimits) -> Self {
        Self { limits, ..self }
    }

    /// Marks an item as referenced by the service sharing it, so it is never cleaned up.
    /// `NotFound` if it no longer exists (it was unreferenced for too long).
    pub async fn keep(&self, item: &MediaItem) -> Result<(), MediaError> {
        let kept = sqlx::query("UPDATE media SET kept_at = $2 WHERE id = $1 AND kept_at IS NULL")
            .bind(&item.id)
            .bind(Timestamp::now().unix_millis())
            .execute(self.store.write())
            .await?;
        if kept.rows_affected() == 1 {
            return Ok(());
        }
        // Already kept (sent before), or deleted.
        self.item(&item.id).await.map(|_| ())
    }

    /// Deletes unreferenced items older than `unreferenced_after`, row first and then its
    /// object; returns how many were deleted.
    pub async fn delete_unreferenced(&self) -> Result<u64, MediaError> {
        let cutoff = Timestamp::now().unix_millis() - self.limits.unreferenced_after.as_millis() as i64;
        let rows = sqlx::query(
            "SELECT id, object_key FROM media WHERE kept_at IS NULL AND created_at < $1 ORDER BY created_at LIMIT $2",
        )
        .bind(cutoff)
        .bind(CLEANUP_BATCH)
        .fetch_all(self.store.read())
        .await?;
        let mut deleted = 0;
        for row in rows {
            let id: String = row.try_get("id")?;
            let object_key: String = row.try_get("object_key")?;
            let removed = sqlx::query("DELETE FROM media WHERE id = $1 AND kept_at IS NULL")
                .bind(&id)
                .execute(self.store.write())
                .await?;
            if removed.rows_affected() == 0 {
                continue; // kept meanwhile, or deleted by another node
            }
            match self.objects.delete(&ObjectPath::from(object_key.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                // The row is gone, so nothing serves it; the orphan object costs only space.
                Err(error) => tracing::warn!(media_id = id, "could not delete an unreferenced object: {error}"),
            }
            deleted += 1;
        }
        // Yesterday's and older quota rows are never read again (a day's row is read only
        // on that day); without this they would pile up, one per user per upload day.
        let today = Timestamp::now().unix_millis().div_euclid(DAY_MS);
        sqlx::query("DELETE FROM media_quota WHERE day < $1").bind(today - 1).execute(self.store.write()).await?;
        Ok(deleted)
    }

    /// Runs `delete_unreferenced` every `cleanup_interval`, forever.
    pub async fn run_cleanup(self) {
        let mut every = tokio::time::interval(self.limits.cleanup_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match self.delete_unreferenced().await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "deleted unreferenced uploads"),
                Err(error) => tracing::warn!("media clean-up failed: {error}"),
            }
        }
    }

    /// Takes one upload of `size` from the owner's quota for today, or says when the next
    /// day starts. One statement, so concurrent uploads cannot both take the last one.
    async fn take_quota(&self, owner_id: &str, size: i64) -> Result<(), MediaError> {
        let now = Timestamp::now().unix_millis();
        let day = now.div_euclid(DAY_MS);
        let uploads_max = i64::from(self.limits.uploads_per_day);
        let bytes_max = self.limits.upload_bytes_per_day as i64;
        let taken = if size <= bytes_max {
            sqlx::query(
                "INSERT INTO media_quota (owner_id, day, uploads, bytes) VALUES ($1, $2, 1, $3)
                 ON CONFLICT (owner_id, day) DO UPDATE SET uploads = media_quota.uploads + 1, bytes = media_quota.bytes + $3
                 WHERE media_quota.uploads + 1 <= $4 AND media_quota.bytes + $3 <= $5",
            )
            .bind(owner_id)
            .bind(day)
            .bind(size)
            .bind(uploads_max)
            .bind(bytes_max)
            .execute(self.store.write())
            .await?
            .rows_affected()
        } else {
            0
        };
        if taken == 1 {
            return Ok(());
        }
        let next_day_ms = (day + 1) * DAY_MS;
        Err(MediaError::DailyLimit {
            uploads_max: self.limits.uploads_per_day,
            bytes_max: self.limits.upload_bytes_per_day,
            retry_after_seconds: ((next_day_ms - now) / 1000).max(1) as u64,
        })
    }

    /// Gives an upload back to today's quota when its bytes could not be stored.
    async fn return_quota(&self, owner_id: &str, size: i64) {
        let day = Timestamp::now().unix_millis().div_euclid(DAY_MS);
        let returned = sqlx::query(
            "UPDATE media_quota SET uploads = uploads - 1, bytes = bytes - $3 WHERE owner_id = $1 AND day = $2 AND uploads > 0",
        )
        .bind(owner_id)
        .bind(day)
        .bind(size)
        .execute(self.store.write())
        .await;
        if let Err(error) = returned {
            tracing::warn!("could not give a failed upload back to its quota: {error}");
        }
    }

    /// Stores an image uploaded by `owner_id`.
    pub async fn upload(&self, owner_id: &str, bytes: Bytes) -> Result<MediaItem, MediaError> {
        if bytes.is_empty() {
            return Err(MediaError::Empty);
        }
        if bytes.len() > UPLOAD_MAX_BYTES {
            return Err(MediaError::TooLarge { max: UPLOAD_MAX_BYTES });
        }
        let content_type = sniff_image(&bytes).ok_or(MediaError::NotAnImage)?;
        let id = plaza_kernel::new_id();
        // Objects are written before the row: a crash in between leaves an orphan file,
        // never a row pointing at nothing.
        let object_key = format!("{}/{}", &id[..4], id);
        let item = MediaItem {
            id,
            owner_id: owner_id.to_string(),
            content_type: content_type.to_string(),
            size_bytes: bytes.len() as i64,
            created_at: Timestamp::now(),
            visibility: Visibility::Private,
            object_key,
        };
        self.take_quota(owner_id, item.size_bytes).await?;
        if let Err(error) = self.objects.put(&ObjectPath::from(item.object_key.as_str()), bytes.into()).await {
            self.return_quota(owner_id, item.size_bytes).await;
            return Err(error.into());
        }
        sqlx::query(
            "INSERT INTO media (id, owner_id, content_type, size_bytes, object_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&item.id)
        .bind(&item.owner_id)
        .bind(&item.content_type)
        .bind(item.size_bytes)
        .bind(&item.object_key)
        .bind(item.created_at.unix_millis())
        .execute(self.store.write())
        .await?;
        Ok(item)
    }

    pub async fn item(&self, id: &str) -> Result<MediaItem, MediaError> {
        let row = sqlx::query(
            "SELECT id, owner_id, content_type, size_bytes, object_key, created_at, visibility FROM media WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.store.read())
        .await?
        .ok_or(MediaError::NotFound)?;
        Ok(MediaItem {
            id: row.try_get("id")?,
            owner_id: row.try_get("owner_id")?,
            content_type: row.try_get("content_type")?,
            size_bytes: row.try_get("size_bytes")?,
            created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
            visibility: Visibility::parse(&row.try_get::<String, _>("visibility")?),
            object_key: row.try_get("object_key")?,
        })
    }

    /// Makes `media_ids` readable by every signed-in user, as photos of a product of
    /// `owner_id`'s shop. Each must be `owner_id`'s own upload: otherwise nothing changes
    /// and the first one that is not is named in [`MediaError::NotOwned`]. Publishing is
    /// not undone when a product drops a photo: it was public, and may be cached anywhere.
    pub async fn publish_product_photos(&self, owner_id: &str, media_ids: &[String]) -> Result<(), MediaError> {
        let mut transaction = self.store.begin().await?;
        for media_id in media_ids {
            let published =
                sqlx::query("UPDATE media SET visibility = 'public_product' WHERE id = $1 AND owner_id = $2")
                    .bind(media_id)
                    .bind(owner_id)
                    .execute(&mut *transaction)
                    .await?;
            if published.rows_affected() != 1 {
                return Err(MediaError::NotOwned { media_id: media_id.clone() });
            }
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Makes `media_id`, an image `owner_id` uploaded, their avatar: readable by every
    /// signed-in user and kept. The stored visibility is `public_product`, the value
    /// that already means "every signed-in user" (SQLite cannot widen the column's
    /// `CHECK` without rebuilding the table).
    pub async fn publish_avatar(&self, owner_id: &str, media_id: &str) -> Result<(), MediaError> {
        self.publish_kept(owner_id, media_id).await
    }

    /// Makes `media_id`, an image `owner_id` uploaded, a live room's cover: readable by
    /// every signed-in user and kept, as an avatar is.
    pub async fn publish_cover(&self, owner_id: &str, media_id: &str) -> Result<(), MediaError> {
        self.publish_kept(owner_id, media_id).await
    }

    async fn publish_kept(&self, owner_id: &str, media_id: &str) -> Result<(), MediaError> {
        let published = sqlx::query(
            "UPDATE media SET visibility = 'public_product', kept_at = COALESCE(kept_at, $3) WHERE id = $1 AND owner_id = $2",
        )
        .bind(media_id)
        .bind(owner_id)
        .bind(Timestamp::now().unix_millis())
        .execute(self.store.write())
        .await?;
        if published.rows_affected() != 1 {
            return Err(MediaError::NotOwned { media_id: media_id.to_string() });
        }
        Ok(())
    }

    /// The bytes of a stored item.
    pub async fn bytes(&self, item: &MediaItem) -> Result<Bytes, MediaError> {
        Ok(self.objects.get(&ObjectPath::from(item.object_key.as_str())).await?.bytes().await?)
    }
}

/// The image type of `bytes` by their signature, if it is one Plaza accepts.
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid PNG: one transparent pixel.
    pub const PIXEL_PNG: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00,
        0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D,
        0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];

    #[test]
    fn images_are_recognised_by_their_bytes() {
        assert_eq!(sniff_image(PIXEL_PNG), Some("image/png"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"GIF89a...."), Some("image/gif"));
        assert_eq!(sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"<svg xmlns="), None);
        assert_eq!(sniff_image(b"%PDF-1.7"), None);
    }

    #[tokio::test]
    async fn an_upload_is_stored_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&Store::sqlite_url_in(dir.path()), 2).await.expect("connect");
        store.migrate(MIGRATIONS).await.expect("migrate");
        let media = Media::open(store, dir.path(), None).expect("open");
        let item = media.upload("ann", Bytes::from_static(PIXEL_PNG)).await.expect("upload");
        assert_eq!(item.content_type, "image/png");
        let again = media.item(&item.id).await.expect("item");
        assert_eq!(media.bytes(&again).await.expect("bytes").as_ref(), PIXEL_PNG);
        assert!(matches!(media.upload("ann", Bytes::from_static(b"hello")).await, Err(MediaError::NotAnImage)));
        assert!(matches!(media.item("nope").await, Err(MediaError::NotFound)));
        assert!(!again.is_public());
        let not_mine = media.publish_product_photos("bob", std::slice::from_ref(&item.id)).await;
        assert!(matches!(not_mine, Err(MediaError::NotOwned { .. })));
        media.publish_product_photos("ann", std::slice::from_ref(&item.id)).await.expect("publish");
        assert!(media.item(&item.id).await.expect("item").is_public());
    }
}
