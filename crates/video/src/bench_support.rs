//! Benchmark support: ready videos written in bulk for `plaza-bench`, and the feed's
//! scorer over the whole catalogue; nothing else should call it.
//!
//! It lives here, not in the benchmark, so that only this crate's source writes the
//! `video*` tables. A feed benchmark needs a catalogue of 100,000 videos, which through
//! uploads and ffmpeg would take hours; the feed reads only rows, so these videos have
//! rows and no files (playing one is a 404). Each is ready, public, with the given
//! author, hashtags, duration and age, and a trending score as a new upload would have.

use crate::learner::initial_trend;
use crate::{VideoError, VideoHandle};
use plaza_accounts::User;
use plaza_store::Store;

/// A video to insert.
#[derive(Debug, Clone)]
pub struct SeedVideo {
    pub author_id: String,
    /// Lower-case, without `#`; they also make the caption.
    pub hashtags: Vec<String>,
    pub duration_ms: i64,
    /// When it was published (and became ready).
    pub created_at_ms: i64,
}

/// Rows per statement.
const SEED_CHUNK: usize = 200;

/// Inserts `videos` as ready public videos; returns their ids in the same order.
pub async fn insert_ready_videos(store: &Store, videos: &[SeedVideo]) -> Result<Vec<String>, sqlx::Error> {
    let mut ids = Vec::with_capacity(videos.len());
    for chunk in videos.chunks(SEED_CHUNK) {
        let chunk_ids: Vec<String> = chunk.iter().map(|_| plaza_kernel::new_id()).collect();
        let mut transaction = store.begin().await?;
        let mut sql = String::from(
            "INSERT INTO videos (id, author_id, upload_id, caption, hashtags, visibility, status, duration_ms, width,
                                 height, created_at, ready_at, trend_score, next_attempt_at) VALUES ",
        );
        for n in 0..chunk.len() {
            let base = n * 7;
            if n > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, 'public', 'ready', ${}, 360, 640, ${}, ${}, ${}, ${})",
                base + 1,
                base + 2,
                base + 1,
                base + 3,
                base + 4,
                base + 5,
                base + 6,
                base + 6,
                base + 7,
                base + 6
            ));
        }
        let mut query = sqlx::query(&sql);
        for (video, id) in chunk.iter().zip(&chunk_ids) {
            let caption: Vec<String> = video.hashtags.iter().map(|tag| format!("#{tag}")).collect();
            query = query
                .bind(id)
                .bind(&video.author_id)
                .bind(caption.join(" "))
                .bind(video.hashtags.join(" "))
                .bind(video.duration_ms)
                .bind(video.created_at_ms)
                .bind(initial_trend(video.created_at_ms));
        }
        query.execute(&mut *transaction).await?;
        let tags: Vec<(&String, &String, i64)> = chunk
            .iter()
            .zip(&chunk_ids)
            .flat_map(|(video, id)| video.hashtags.iter().map(move |tag| (tag, id, video.created_at_ms)))
            .collect();
        for rows in tags.chunks(SEED_CHUNK) {
            let values: Vec<String> =
                (0..rows.len()).map(|n| format!("(${}, ${}, ${})", n * 3 + 1, n * 3 + 2, n * 3 + 3)).collect();
            let sql = format!(
                "INSERT INTO video_hashtags (tag, video_id, created_at) VALUES {} ON CONFLICT DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (tag, id, at) in rows {
                query = query.bind(*tag).bind(*id).bind(*at);
            }
            query.execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        ids.extend(chunk_ids);
    }
    Ok(ids)
}

/// The top `limit` of every ready video `me` has not seen, by For You's learnt scorer and
/// re-ranking (without the exploration slot): what `for_you` would serve if its candidate
/// sources reached the whole catalogue. An offline ranking benchmark needs it because the
/// six sources retrieve a few hundred candidates, and a held-out item outside them could
/// never be found however good the scorer is.
pub async fn rank_every_unseen(video: &VideoHandle, me: &User, limit: usize) -> Result<Vec<String>, VideoError> {
    video.rank_every_unseen(me, limit).await
}
