//! Plaza media: images that users upload, kept in an object store — files under the
//! data directory by default, any S3-compatible bucket when `PLAZA_MEDIA_URL=s3://…` —
//! with a row per item in the database saying who uploaded what.
//!
//! Uploads are checked by their bytes, not by what the client claims: only PNG, JPEG,
//! GIF and WebP are accepted. Who may *read* an item is not decided here but by the
//! service that shares it (chat: the uploader and the members of a conversation it was
//! sent in) — except for items their uploader published as product photos
//! ([`Media::publish_product_photos`], visibility `public_product`), which every signed-in
//! user may read, since a shop's pages are public.

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use plaza_kernel::Timestamp;
use plaza_store::{Migration, Row, Store};
use std::sync::Arc;

pub const MIGRATIONS: &[Migration] = &[
    Migration { service: "media", version: 1, name: "media items", sqlite: MEDIA_SCHEMA, postgres: MEDIA_SCHEMA },
    Migration {
        service: "media",
        version: 2,
        name: "public product photos",
        sqlite: PUBLIC_PRODUCT_VISIBILITY,
        postgres: PUBLIC_PRODUCT_VISIBILITY,
    },
];

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
}

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
        Ok(Self { store, objects })
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
        self.objects.put(&ObjectPath::from(item.object_key.as_str()), bytes.into()).await?;
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
