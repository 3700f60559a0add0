//! The video handle: publishing, reading and deleting videos, with the one visibility
//! rule applied on every read path. No HTTP here.

use crate::learner::{initial_trend, Weights};
use crate::model::{Caption, VideoStatus, Visibility};
use object_store::ObjectStore;
use plaza_accounts::{Accounts, AccountsError, User};
use plaza_chat::{Chat, ChatError};
use plaza_events::Events;
use plaza_kernel::{Cursor, Page, PageLimit, Timestamp};
use plaza_shop::{ShopError, ShopHandle};
use plaza_store::{AnyRow, Row, Store};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tunables of the video service (`PLAZA_VIDEO_*`).
#[derive(Debug, Clone)]
pub struct VideoConfig {
    /// The largest upload accepted (`PLAZA_VIDEO_UPLOAD_MAX_MB`, 256 MiB).
    pub upload_max_bytes: i64,
    /// The longest video accepted (`PLAZA_VIDEO_DURATION_MAX_S`, 180 s).
    pub duration_max: Duration,
    /// Transcodes one node runs at once (`PLAZA_VIDEO_TRANSCODE_CONCURRENCY`, 1).
    pub transcode_concurrency: usize,
    /// Videos waiting to be processed, over all nodes, before publishing is refused
    /// (`PLAZA_VIDEO_QUEUE_MAX`, 100): the queue is bounded.
    pub queue_max: i64,
    /// Videos one author may have processing at once.
    pub processing_per_author_max: i64,
    /// Unfinished uploads one user may have at once.
    pub open_uploads_per_user_max: i64,
    /// How long an unfinished upload is kept.
    pub upload_expiry: Duration,
    /// How long a node holds a transcoding job without renewing its lease.
    pub lease_ttl: Duration,
    /// The first retry of a failed transcode waits this long, then twice as long each time.
    pub retry_base: Duration,
    /// Transcoding attempts before a video is `failed` with `transcode_failed`.
    pub attempts_max: i64,
    /// How long one ffmpeg or ffprobe run may take.
    pub process_timeout: Duration,
    /// How often each node looks for work.
    pub poll_interval: Duration,
    /// Where transcodes keep their scratch files (under the data directory).
    pub work_dir: PathBuf,
    /// The niceness ffmpeg runs at, so requests are served first.
    pub niceness: i32,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            upload_max_bytes: 256 * 1024 * 1024,
            duration_max: Duration::from_secs(180),
            transcode_concurrency: 1,
            queue_max: 100,
            processing_per_author_max: 5,
            open_uploads_per_user_max: 10,
            upload_expiry: Duration::from_secs(24 * 3600),
            lease_ttl: Duration::from_secs(20),
            retry_base: Duration::from_secs(5),
            attempts_max: 5,
            process_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            work_dir: std::env::temp_dir().join("plaza-video"),
            niceness: 10,
        }
    }
}

/// What can go wrong, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("no such video")]
    VideoNotFound,
    #[error("no such upload")]
    UploadNotFound,
    #[error("the upload is at offset {offset}")]
    OffsetMismatch { offset: i64 },
    #[error("the upload has {offset} of its {length} bytes")]
    UploadIncomplete { offset: i64, length: i64 },
    #[error("larger than {max_bytes} bytes")]
    TooLarge { max_bytes: i64 },
    #[error("the upload is being written by another request")]
    UploadBusy,
    #[error("send Tus-Resumable: 1.0.0")]
    TusVersion,
    #[error("send Content-Type: application/offset+octet-stream")]
    ContentType,
    #[error("{what}")]
    Busy { what: &'static str, retry_after_seconds: u64 },
    #[error("no such product")]
    ProductNotFound,
    #[error("no such comment")]
    CommentNotFound,
    #[error("only {who} may {action}")]
    Forbidden { who: &'static str, action: &'static str },
    #[error("chat: {0}")]
    Chat(#[from] ChatError),
    #[error("accounts: {0}")]
    Accounts(#[from] AccountsError),
    #[error("shop: {0}")]
    Shop(ShopError),
    #[error("object storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("file: {0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> VideoError {
    VideoError::InvalidField { field, reason: reason.into() }
}

/// A video as one viewer sees it.
#[derive(Debug, Clone)]
pub struct Video {
    pub id: String,
    pub author: User,
    pub caption: String,
    pub hashtags: Vec<String>,
    pub status: VideoStatus,
    pub failure: Option<String>,
    pub duration_ms: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub visibility: Visibility,
    /// The shop's `product` card of the linked product, when there is one it still sells.
    pub product: Option<Value>,
    pub views: i64,
    pub likes: i64,
    pub comments: i64,
    pub shares: i64,
    pub liked_by_me: bool,
    pub created_at: Timestamp,
}

/// The video service handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct VideoHandle {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) events: Events,
    pub(crate) accounts: Accounts,
    pub(crate) chat: Chat,
    pub(crate) shop: ShopHandle,
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) config: VideoConfig,
    /// This node's name in transcoding leases.
    pub(crate) node_id: String,
    /// The scorer as this node has learnt it (`learner.rs`); merged into `video_model`.
    pub(crate) weights: Mutex<Weights>,
}

/// Columns of `videos` that a [`Video`] is read from.
pub(crate) const VIDEO_COLUMNS: &str =
    "v.id, v.author_id, v.caption, v.hashtags, v.product_id, v.visibility, v.status, \
     v.failure, v.duration_ms, v.width, v.height, v.views, v.completions, v.likes, v.comments, v.shares, v.created_at";

/// The same columns for ranking candidates, without the caption (up to 2,200 characters
/// that scoring never reads): a For You page reads hundreds of candidates and shows ten.
pub(crate) const CANDIDATE_COLUMNS: &str = "v.id, v.author_id, '' AS caption, v.hashtags, v.product_id, v.visibility, \
     v.status, v.failure, v.duration_ms, v.width, v.height, v.views, v.completions, v.likes, v.comments, v.shares, \
     v.created_at";

/// A `videos` row before its author and the viewer's relations are joined in.
#[derive(Debug, Clone)]
pub(crate) struct VideoRow {
    pub(crate) id: String,
    pub(crate) author_id: String,
    pub(crate) caption: String,
    pub(crate) hashtags: Vec<String>,
    pub(crate) product_id: Option<String>,
    pub(crate) visibility: Visibility,
    pub(crate) status: VideoStatus,
    pub(crate) failure: Option<String>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) width: Option<i64>,
    pub(crate) height: Option<i64>,
    pub(crate) views: i64,
    /// Views that reached the end (at most one per viewer and day).
    pub(crate) completions: i64,
    pub(crate) likes: i64,
    pub(crate) comments: i64,
    pub(crate) shares: i64,
    pub(crate) created_at: Timestamp,
}

pub(crate) fn video_row(row: &AnyRow) -> Result<VideoRow, sqlx::Error> {
    let hashtags: String = row.try_get("hashtags")?;
    Ok(VideoRow {
        id: row.try_get("id")?,
        author_id: row.try_get("author_id")?,
        caption: row.try_get("caption")?,
        hashtags: hashtags.split_whitespace().map(str::to_string).collect(),
        product_id: row.try_get("product_id")?,
        visibility: Visibility::parse(&row.try_get::<String, _>("visibility")?).unwrap_or(Visibility::Private),
        status: VideoStatus::parse(&row.try_get::<String, _>("status")?),
        failure: row.try_get("failure")?,
        duration_ms: row.try_get("duration_ms")?,
        width: row.try_get("width")?,
        height: row.try_get("height")?,
        views: row.try_get("views")?,
        completions: row.try_get("completions")?,
        likes: row.try_get("likes")?,
        comments: row.try_get("comments")?,
        shares: row.try_get("shares")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
    })
}

impl VideoHandle {
    pub fn new(
        store: Store,
        events: Events,
        accounts: Accounts,
        chat: Chat,
        shop: ShopHandle,
        objects: Arc<dyn ObjectStore>,
        config: VideoConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                events,
                accounts,
                chat,
                shop,
                objects,
                config,
                node_id: plaza_kernel::new_id(),
                weights: Mutex::new(Weights::default()),
            }),
        }
    }

    pub fn config(&self) -> &VideoConfig {
        &self.inner.config
    }

    /// Publishes a finished upload as a video, `processing` until its job has run.
    pub async fn publish(
        &self,
        me: &User,
        upload_id: &str,
        caption: &str,
        product_id: Option<&str>,
        visibility: &str,
    ) -> Result<Video, VideoError> {
        let caption = Caption::parse(caption).map_err(|reason| invalid("caption", reason))?;
        let visibility = Visibility::parse(visibility)
            .ok_or_else(|| invalid("visibility", "one of public, followers and private"))?;
        if let Some(product_id) = product_id {
            match self.inner.shop.product(product_id).await {
                Ok(product) if !product.archived => {}
                Ok(_) | Err(ShopError::ProductNotFound) => return Err(VideoError::ProductNotFound),
                Err(error) => return Err(VideoError::Shop(error)),
            }
        }
        let hashtags = caption.hashtags();
        let now = Timestamp::now();
        let id = plaza_kernel::new_id();
        let mut transaction = self.inner.store.begin().await?;
        let upload = sqlx::query(
            "SELECT length_bytes, offset_bytes, video_id FROM video_uploads WHERE id = $1 AND owner_id = $2",
        )
        .bind(upload_id)
        .bind(&me.id)
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or(VideoError::UploadNotFound)?;
        let (length, offset): (i64, i64) = (upload.try_get("length_bytes")?, upload.try_get("offset_bytes")?);
        if let Some(existing) = upload.try_get::<Option<String>, _>("video_id")? {
            // Publishing the same upload again is answered with the video it made.
            transaction.rollback().await?;
            return self.video(me, &existing).await;
        }
        if offset < length {
            return Err(VideoError::UploadIncomplete { offset, length });
        }
        let (queued, mine): (i64, i64) = {
            let row = sqlx::query(
                "SELECT COUNT(*) AS queued, COALESCE(SUM(CASE WHEN author_id = $1 THEN 1 ELSE 0 END), 0) AS mine
                 FROM videos WHERE status = 'processing'",
            )
            .bind(&me.id)
            .fetch_one(&mut *transaction)
            .await?;
            (row.try_get("queued")?, row.try_get("mine")?)
        };
        if queued >= self.inner.config.queue_max {
            return Err(VideoError::Busy {
                what: "too many videos are waiting to be processed",
                retry_after_seconds: 30,
            });
        }
        if mine >= self.inner.config.processing_per_author_max {
            return Err(VideoError::Busy {
                what: "you have too many videos processing; wait for one to finish",
                retry_after_seconds: 30,
            });
        }
        let claimed = sqlx::query("UPDATE video_uploads SET video_id = $2 WHERE id = $1 AND video_id IS NULL")
            .bind(upload_id)
            .bind(&id)
            .execute(&mut *transaction)
            .await?;
        if claimed.rows_affected() != 1 {
            return Err(VideoError::UploadNotFound);
        }
        sqlx::query(
            "INSERT INTO videos (id, author_id, upload_id, caption, hashtags, product_id, visibility, status, created_at,
                                 trend_score, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'processing', $8, $9, $8)",
        )
        .bind(&id)
        .bind(&me.id)
        .bind(upload_id)
        .bind(caption.as_str())
        .bind(hashtags.join(" "))
        .bind(product_id)
        .bind(visibility.as_str())
        .bind(now.unix_millis())
        .bind(initial_trend(now.unix_millis()))
        .execute(&mut *transaction)
        .await?;
        for tag in &hashtags {
            sqlx::query("INSERT INTO video_hashtags (tag, video_id, created_at) VALUES ($1, $2, $3)")
                .bind(tag)
                .bind(&id)
                .bind(now.unix_millis())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        self.video(me, &id).await
    }

    /// A video, if `viewer` may see it (404 otherwise, as for one that does not exist).
    pub async fn video(&self, viewer: &User, video_id: &str) -> Result<Video, VideoError> {
        let row = self.visible_row(viewer, video_id).await?;
        Ok(self.assemble(viewer, vec![row]).await?.remove(0))
    }

    /// The row of a video `viewer` may see: visible to them and, unless they are its
    /// author, ready.
    pub(crate) async fn visible_row(&self, viewer: &User, video_id: &str) -> Result<VideoRow, VideoError> {
        let row = sqlx::query(&format!("SELECT {VIDEO_COLUMNS} FROM videos v WHERE v.id = $1"))
            .bind(video_id)
            .fetch_optional(self.inner.store.read())
            .await?
            .ok_or(VideoError::VideoNotFound)?;
        let row = video_row(&row)?;
        let is_author = row.author_id == viewer.id;
        let follows = !is_author
            && row.visibility == Visibility::Followers
            && self.inner.accounts.follows(&viewer.id, &row.author_id).await?;
        if !row.visibility.allows(is_author, follows) {
            return Err(VideoError::VideoNotFound);
        }
        // A video still processing, or failed, is its author's alone.
        if !is_author && row.status != VideoStatus::Ready {
            return Err(VideoError::VideoNotFound);
        }
        Ok(row)
    }

    /// A ready video `viewer` may see: what may be played, liked, commented or shared.
    pub(crate) async fn playable_row(&self, viewer: &User, video_id: &str) -> Result<VideoRow, VideoError> {
        let row = self.visible_row(viewer, video_id).await?;
        if row.status != VideoStatus::Ready {
            return Err(VideoError::VideoNotFound);
        }
        Ok(row)
    }

    /// Rows joined with their authors, the linked products and the viewer's likes, in
    /// the order given.
    pub(crate) async fn assemble(&self, viewer: &User, rows: Vec<VideoRow>) -> Result<Vec<Video>, VideoError> {
        let author_ids: Vec<String> =
            rows.iter().map(|row| row.author_id.clone()).collect::<HashSet<_>>().into_iter().collect();
        let authors: HashMap<String, User> =
            self.inner.accounts.users(&author_ids).await?.into_iter().map(|user| (user.id.clone(), user)).collect();
        let liked = self.liked_among(&viewer.id, &rows.iter().map(|row| row.id.clone()).collect::<Vec<_>>()).await?;
        let mut videos = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(author) = authors.get(&row.author_id).cloned() else { continue };
            let product = match &row.product_id {
                Some(product_id) => match self.inner.shop.product_card(product_id).await {
                    Ok(card) => Some(card),
                    Err(ShopError::ProductNotFound) => None,
                    Err(error) => return Err(VideoError::Shop(error)),
                },
                None => None,
            };
            videos.push(Video {
                liked_by_me: liked.contains(&row.id),
                id: row.id,
                author,
                caption: row.caption,
                hashtags: row.hashtags,
                status: row.status,
                failure: row.failure,
                duration_ms: row.duration_ms,
                width: row.width,
                height: row.height,
                visibility: row.visibility,
                product,
                views: row.views,
                likes: row.likes,
                comments: row.comments,
                shares: row.shares,
                created_at: row.created_at,
            });
        }
        Ok(videos)
    }

    async fn liked_among(&self, user_id: &str, video_ids: &[String]) -> Result<HashSet<String>, VideoError> {
        let mut liked = HashSet::new();
        for chunk in video_ids.chunks(200) {
            if chunk.is_empty() {
                continue;
            }
            let placeholders = plaza_store::numbered_parameters(2, chunk.len());
            let sql = format!("SELECT video_id FROM video_likes WHERE user_id = $1 AND video_id IN ({})", placeholders);
            let mut query = sqlx::query_scalar::<_, String>(&sql).bind(user_id);
            for id in chunk {
                query = query.bind(id);
            }
            liked.extend(query.fetch_all(self.inner.store.read()).await?);
        }
        Ok(liked)
    }

    /// Deletes the author's video: its row and everything hanging off it at once, its
    /// files after.
    pub async fn delete(&self, me: &User, video_id: &str) -> Result<(), VideoError> {
        let row = self.visible_row(me, video_id).await?;
        if row.author_id != me.id {
            return Err(VideoError::Forbidden { who: "the author", action: "delete this video" });
        }
        let mut transaction = self.inner.store.begin().await?;
        for table in ["video_hashtags", "video_likes", "video_views", "video_hidden"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE video_id = $1"))
                .bind(video_id)
                .execute(&mut *transaction)
                .await?;
        }
        sqlx::query("DELETE FROM video_comments WHERE video_id = $1 AND parent_id IS NOT NULL")
            .bind(video_id)
            .execute(&mut *transaction)
            .await?;
        sqlx::query("DELETE FROM video_comments WHERE video_id = $1").bind(video_id).execute(&mut *transaction).await?;
        sqlx::query("DELETE FROM video_coengagement WHERE video_id = $1 OR other_id = $1")
            .bind(video_id)
            .execute(&mut *transaction)
            .await?;
        sqlx::query("DELETE FROM videos WHERE id = $1").bind(video_id).execute(&mut *transaction).await?;
        transaction.commit().await?;
        crate::storage::delete_prefix(&self.inner.objects, &crate::storage::video_prefix(video_id)).await;
        Ok(())
    }

    /// A user's videos that `viewer` may see, newest first.
    pub async fn user_videos(
        &self,
        viewer: &User,
        user_id: &str,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<Video>, VideoError> {
        self.inner.accounts.user(user_id).await?;
        let is_author = viewer.id == user_id;
        let follows = !is_author && self.inner.accounts.follows(&viewer.id, user_id).await?;
        let visible: &[&str] = match (is_author, follows) {
            (true, _) => &["public", "followers", "private"],
            (false, true) => &["public", "followers"],
            (false, false) => &["public"],
        };
        let (before_ms, before_id) = time_position(cursor)?;
        let placeholders = plaza_store::numbered_parameters(5, visible.len());
        // Others see ready videos only; the author also sees what is processing or failed.
        let status = if is_author { "" } else { "AND v.status = 'ready'" };
        let sql = format!(
            "SELECT {VIDEO_COLUMNS} FROM videos v
             WHERE v.author_id = $1 AND (v.created_at < $2 OR (v.created_at = $2 AND v.id < $3)) {status}
               AND v.visibility IN ({})
             ORDER BY v.created_at DESC, v.id DESC LIMIT $4",
            placeholders
        );
        let mut query = sqlx::query(&sql).bind(user_id).bind(before_ms).bind(before_id).bind(limit.probe());
        for visibility in visible {
            query = query.bind(*visibility);
        }
        let rows = query.fetch_all(self.inner.store.read()).await?;
        let rows = rows.iter().map(video_row).collect::<Result<Vec<_>, _>>()?;
        let page = Page::from_probe(rows, limit, |row| format!("{}:{}", row.created_at.unix_millis(), row.id));
        let next_cursor = page.next_cursor.clone();
        let items = self.assemble(viewer, page.items).await?;
        Ok(Page { items, next_cursor })
    }
}

/// The `(created_at, id)` a newest-first listing's cursor stands after.
pub(crate) fn time_position(cursor: Option<&str>) -> Result<(i64, String), VideoError> {
    match cursor {
        None | Some("") => Ok((i64::MAX, String::new())),
        Some(opaque) => Cursor::parse_position(opaque)
            .and_then(|position| {
                let (at, id) = position.split_once(':')?;
                Some((at.parse::<i64>().ok()?, id.to_string()))
            })
            .ok_or_else(|| invalid("cursor", "not a cursor this server issued")),
    }
}
