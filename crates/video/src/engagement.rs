//! Views, likes, comments, shares and "not interested": each is recorded, counted on the
//! video, and taught to the feed at once (`learn`), so the next page already reflects it.
//!
//! What one signal changes: the viewer's affinities to the video's hashtags and author
//! (`video_affinities`, read, faded and rewritten), the video's trending score (a
//! compare-and-set on the value read, retried), for a completion the co-engagement pairs
//! with the viewer's last finished videos, and for a view one step of the node's global
//! scorer. Two signals of one viewer at the same instant may each miss the other's
//! affinity change; counts never drift, because they are only changed by the statement
//! that inserted or deleted the row they count.

use crate::learner::{self, Features, Signal};
use crate::model::CommentText;
use crate::service::{invalid, VideoError, VideoHandle, VideoRow};
use plaza_accounts::User;
use plaza_chat::MessageKind;
use plaza_kernel::{Page, PageLimit, Timestamp};
use plaza_store::{JsonColumn, Row};
use serde_json::{json, Value};
use std::collections::HashMap;

/// A view reported longer than this is not believed.
pub const WATCHED_MS_MAX: i64 = 3_600_000;
/// Replays reported beyond this count as this many.
pub const REPLAYS_MAX: i64 = 100;
/// How many of a viewer's last finished videos a completion is paired with.
const CO_ENGAGEMENT_RECENT: i64 = 10;
const DAY_MS: i64 = 86_400_000;

/// A comment on a video.
#[derive(Debug, Clone)]
pub struct Comment {
    pub id: String,
    pub video_id: String,
    pub author: User,
    pub parent_id: Option<String>,
    pub text: String,
    pub created_at: Timestamp,
}

/// Where a share posted its card.
#[derive(Debug, Clone)]
pub struct SharedVideo {
    pub message_id: String,
    pub conversation_id: String,
    pub seq: i64,
}

impl VideoHandle {
    /// Records that `viewer` watched a video; a view counts once per viewer and UTC day.
    pub async fn record_view(
        &self,
        viewer: &User,
        video_id: &str,
        watched_ms: i64,
        completed: bool,
        replays: i64,
    ) -> Result<(), VideoError> {
        if !(0..=WATCHED_MS_MAX).contains(&watched_ms) {
            return Err(invalid("watched_ms", "0 to 3,600,000 milliseconds"));
        }
        if !(0..=REPLAYS_MAX).contains(&replays) {
            return Err(invalid("replays", "0 to 100"));
        }
        let row = self.playable_row(viewer, video_id).await?;
        let now = Timestamp::now().unix_millis();
        let day = now.div_euclid(DAY_MS);
        let mut transaction = self.inner.store.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO video_views (user_id, video_id, day, watched_ms, completed, at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, video_id, day) DO NOTHING",
        )
        .bind(&viewer.id)
        .bind(video_id)
        .bind(day)
        .bind(watched_ms)
        .bind(i64::from(completed))
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 1 {
            sqlx::query("UPDATE videos SET views = views + 1, completions = completions + $2 WHERE id = $1")
                .bind(video_id)
                .bind(i64::from(completed))
                .execute(&mut *transaction)
                .await?;
        } else {
            // Counted already today; a first completion today still counts as one.
            let newly_completed = sqlx::query(
                "UPDATE video_views SET completed = 1, watched_ms = $4, at = $5
                 WHERE user_id = $1 AND video_id = $2 AND day = $3 AND completed = 0 AND $6 = 1",
            )
            .bind(&viewer.id)
            .bind(video_id)
            .bind(day)
            .bind(watched_ms)
            .bind(now)
            .bind(i64::from(completed))
            .execute(&mut *transaction)
            .await?;
            if newly_completed.rows_affected() == 1 {
                sqlx::query("UPDATE videos SET completions = completions + 1 WHERE id = $1")
                    .bind(video_id)
                    .execute(&mut *transaction)
                    .await?;
            } else {
                sqlx::query("UPDATE video_views SET at = $4 WHERE user_id = $1 AND video_id = $2 AND day = $3")
                    .bind(&viewer.id)
                    .bind(video_id)
                    .bind(day)
                    .bind(now)
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        transaction.commit().await?;
        let duration_ms = row.duration_ms.unwrap_or(0);
        self.learn(viewer, &row, Signal::View { watched_ms, duration_ms, completed, replays }).await
    }

    /// Likes a video; liking twice is one like.
    pub async fn like(&self, viewer: &User, video_id: &str) -> Result<(), VideoError> {
        let row = self.playable_row(viewer, video_id).await?;
        let mut transaction = self.inner.store.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO video_likes (video_id, user_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (video_id, user_id) DO NOTHING",
        )
        .bind(video_id)
        .bind(&viewer.id)
        .bind(Timestamp::now().unix_millis())
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(());
        }
        sqlx::query("UPDATE videos SET likes = likes + 1 WHERE id = $1")
            .bind(video_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        self.learn(viewer, &row, Signal::Like).await
    }

    /// Takes a like back; unliking a video not liked changes nothing.
    pub async fn unlike(&self, viewer: &User, video_id: &str) -> Result<(), VideoError> {
        self.visible_row(viewer, video_id).await?;
        let mut transaction = self.inner.store.begin().await?;
        let deleted = sqlx::query("DELETE FROM video_likes WHERE video_id = $1 AND user_id = $2")
            .bind(video_id)
            .bind(&viewer.id)
            .execute(&mut *transaction)
            .await?;
        if deleted.rows_affected() == 1 {
            sqlx::query("UPDATE videos SET likes = likes - 1 WHERE id = $1")
                .bind(video_id)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Comments on a video, or replies to one of its top-level comments.
    pub async fn comment(
        &self,
        viewer: &User,
        video_id: &str,
        text: &str,
        parent_id: Option<&str>,
    ) -> Result<Comment, VideoError> {
        let text = CommentText::parse(text).map_err(|reason| invalid("text", reason))?;
        let row = self.playable_row(viewer, video_id).await?;
        let now = Timestamp::now();
        let id = plaza_kernel::new_id();
        let mut transaction = self.inner.store.begin().await?;
        if let Some(parent_id) = parent_id {
            let parent: Option<Option<String>> =
                sqlx::query_scalar("SELECT parent_id FROM video_comments WHERE id = $1 AND video_id = $2")
                    .bind(parent_id)
                    .bind(video_id)
                    .fetch_optional(&mut *transaction)
                    .await?;
            match parent {
                None => return Err(VideoError::CommentNotFound),
                Some(Some(_)) => {
                    return Err(invalid("parent_id", "replies have one level: reply to the comment itself"))
                }
                Some(None) => {}
            }
        }
        sqlx::query(
            "INSERT INTO video_comments (id, video_id, author_id, parent_id, text, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(video_id)
        .bind(&viewer.id)
        .bind(parent_id)
        .bind(text.as_str())
        .bind(now.unix_millis())
        .execute(&mut *transaction)
        .await?;
        sqlx::query("UPDATE videos SET comments = comments + 1 WHERE id = $1")
            .bind(video_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        self.learn(viewer, &row, Signal::Comment).await?;
        Ok(Comment {
            id,
            video_id: video_id.to_string(),
            author: viewer.clone(),
            parent_id: parent_id.map(str::to_string),
            text: text.as_str().to_string(),
            created_at: now,
        })
    }

    /// A video's comments, oldest first, replies among them (each names its parent).
    pub async fn comments(
        &self,
        viewer: &User,
        video_id: &str,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<Comment>, VideoError> {
        self.visible_row(viewer, video_id).await?;
        let (after_ms, after_id) = match cursor {
            None | Some("") => (i64::MIN, String::new()),
            Some(_) => crate::service::time_position(cursor)?,
        };
        let rows = sqlx::query(
            "SELECT id, author_id, parent_id, text, created_at FROM video_comments
             WHERE video_id = $1 AND (created_at > $2 OR (created_at = $2 AND id > $3))
             ORDER BY created_at, id LIMIT $4",
        )
        .bind(video_id)
        .bind(after_ms)
        .bind(after_id)
        .bind(limit.probe())
        .fetch_all(self.inner.store.read())
        .await?;
        let author_ids: Vec<String> = rows.iter().filter_map(|row| row.try_get("author_id").ok()).collect();
        let authors: HashMap<String, User> =
            self.inner.accounts.users(&author_ids).await?.into_iter().map(|user| (user.id.clone(), user)).collect();
        let mut comments = Vec::with_capacity(rows.len());
        for row in rows {
            let author_id: String = row.try_get("author_id")?;
            let Some(author) = authors.get(&author_id).cloned() else { continue };
            comments.push(Comment {
                id: row.try_get("id")?,
                video_id: video_id.to_string(),
                author,
                parent_id: row.try_get("parent_id")?,
                text: row.try_get("text")?,
                created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
            });
        }
        Ok(Page::from_probe(comments, limit, |comment| format!("{}:{}", comment.created_at.unix_millis(), comment.id)))
    }

    /// Deletes a comment (and its replies): its author may, and so may the video's.
    pub async fn delete_comment(&self, viewer: &User, video_id: &str, comment_id: &str) -> Result<(), VideoError> {
        let row = self.visible_row(viewer, video_id).await?;
        let mut transaction = self.inner.store.begin().await?;
        let author: Option<String> =
            sqlx::query_scalar("SELECT author_id FROM video_comments WHERE id = $1 AND video_id = $2")
                .bind(comment_id)
                .bind(video_id)
                .fetch_optional(&mut *transaction)
                .await?;
        let Some(author) = author else { return Err(VideoError::CommentNotFound) };
        if author != viewer.id && row.author_id != viewer.id {
            return Err(VideoError::Forbidden { who: "the comment's or the video's author", action: "delete it" });
        }
        let replies = sqlx::query("DELETE FROM video_comments WHERE parent_id = $1")
            .bind(comment_id)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM video_comments WHERE id = $1").bind(comment_id).execute(&mut *transaction).await?;
        sqlx::query("UPDATE videos SET comments = comments - $2 WHERE id = $1")
            .bind(video_id)
            .bind(replies as i64 + 1)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Posts a `video` card in a chat the viewer is in.
    pub async fn share(&self, viewer: &User, video_id: &str, conversation_id: &str) -> Result<SharedVideo, VideoError> {
        let row = self.playable_row(viewer, video_id).await?;
        // A card's body is kept in the chat as it was posted, so only what every member
        // may see is shared: a followers-only or private video stays where it is.
        if row.visibility != crate::model::Visibility::Public {
            return Err(VideoError::Forbidden { who: "public videos", action: "be shared into chats" });
        }
        let body = self.card(&row).await?;
        let mut transaction = self.inner.store.begin().await?;
        let client_id = format!("video-share-{}", plaza_kernel::new_id());
        let (message, appended) = self
            .inner
            .chat
            .post_in_transaction(&mut transaction, conversation_id, &viewer.id, &client_id, MessageKind::Card, &body)
            .await?;
        sqlx::query("UPDATE videos SET shares = shares + 1 WHERE id = $1")
            .bind(video_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        self.learn(viewer, &row, Signal::Share).await?;
        Ok(SharedVideo { message_id: message.id, conversation_id: message.conversation_id, seq: message.seq })
    }

    /// The `video` card body: what a chat shows, and plays inline.
    pub(crate) async fn card(&self, row: &VideoRow) -> Result<Value, VideoError> {
        let author = self.inner.accounts.user(&row.author_id).await?;
        let title: String = row.caption.chars().take(80).collect();
        Ok(json!({
            "type": "video",
            "id": row.id,
            "title": title,
            "author_name": author.display_name,
            "poster_url": format!("/api/v1/videos/{}/poster.jpg", row.id),
            "mp4_url": format!("/api/v1/videos/{}/video.mp4", row.id),
            "hls_url": format!("/api/v1/videos/{}/hls/master.m3u8", row.id),
            "duration_ms": row.duration_ms,
        }))
    }

    /// Less of this video's author and hashtags, and never this video again.
    pub async fn not_interested(&self, viewer: &User, video_id: &str) -> Result<(), VideoError> {
        let row = self.visible_row(viewer, video_id).await?;
        sqlx::query(
            "INSERT INTO video_hidden (user_id, video_id, at) VALUES ($1, $2, $3) ON CONFLICT (user_id, video_id) DO NOTHING",
        )
        .bind(&viewer.id)
        .bind(video_id)
        .bind(Timestamp::now().unix_millis())
        .execute(self.inner.store.write())
        .await?;
        self.learn(viewer, &row, Signal::NotInterested).await
    }

    /// Forgets what the feed learnt about the viewer: affinities, hidden videos and what
    /// they have seen (the videos' counts stay).
    pub async fn reset_feed(&self, viewer: &User) -> Result<(), VideoError> {
        let mut transaction = self.inner.store.begin().await?;
        for table in ["video_affinities", "video_hidden", "video_views"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(&viewer.id)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Teaches the feed one signal (see the module doc).
    pub(crate) async fn learn(&self, viewer: &User, row: &VideoRow, signal: Signal) -> Result<(), VideoError> {
        let now = Timestamp::now().unix_millis();
        let reward = learner::reward(signal);
        let mut items: Vec<(&str, String, f64)> = vec![("author", row.author_id.clone(), reward)];
        if !matches!(signal, Signal::Follow) && !row.hashtags.is_empty() {
            let share = reward / (row.hashtags.len() as f64).sqrt();
            items.extend(row.hashtags.iter().map(|tag| ("tag", tag.clone(), share)));
        }
        let stored = self.affinities_of(&viewer.id, &items).await?;
        if let Some(label) = learner::view_label(signal) {
            let features = self.features_for_learning(viewer, row, &stored).await?;
            self.inner.weights.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).learn(&features, label);
        }
        for (kind, item, reward) in &items {
            let (old, updated_at) = stored.get(&(kind.to_string(), item.clone())).copied().unwrap_or((0.0, now));
            let score = learner::next_affinity(old, updated_at, now, *reward);
            sqlx::query(
                "INSERT INTO video_affinities (user_id, kind, item, score, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id, kind, item) DO UPDATE SET score = excluded.score, updated_at = excluded.updated_at",
            )
            .bind(&viewer.id)
            .bind(*kind)
            .bind(item)
            .bind(score)
            .bind(now)
            .execute(self.inner.store.write())
            .await?;
        }
        let weight = learner::trend_weight(signal);
        if weight > 0.0 {
            self.add_trend(&row.id, weight, now).await?;
        }
        if let Signal::View { completed: true, .. } = signal {
            self.pair_with_recent_completions(&viewer.id, &row.id).await?;
        }
        Ok(())
    }

    /// The viewer's stored affinities to these items: `(kind, item) → (score, updated_at)`.
    async fn affinities_of(
        &self,
        user_id: &str,
        items: &[(&str, String, f64)],
    ) -> Result<HashMap<(String, String), (f64, i64)>, VideoError> {
        let mut stored = HashMap::new();
        for chunk in items.chunks(100) {
            let clauses: Vec<String> =
                (0..chunk.len()).map(|n| format!("(kind = ${} AND item = ${})", 2 * n + 2, 2 * n + 3)).collect();
            let sql = format!(
                "SELECT kind, item, score, updated_at FROM video_affinities WHERE user_id = $1 AND ({})",
                clauses.join(" OR ")
            );
            let mut query = sqlx::query(&sql).bind(user_id);
            for (kind, item, _) in chunk {
                query = query.bind(*kind).bind(item);
            }
            for row in query.fetch_all(self.inner.store.read()).await? {
                stored.insert(
                    (row.try_get("kind")?, row.try_get("item")?),
                    (row.try_get::<f64, _>("score")?, row.try_get::<i64, _>("updated_at")?),
                );
            }
        }
        Ok(stored)
    }

    /// The features the feed would have scored this video with for this viewer.
    async fn features_for_learning(
        &self,
        viewer: &User,
        row: &VideoRow,
        stored: &HashMap<(String, String), (f64, i64)>,
    ) -> Result<Features, VideoError> {
        let tag_scores: Vec<f64> = row
            .hashtags
            .iter()
            .map(|tag| stored.get(&("tag".to_string(), tag.clone())).map_or(0.0, |(score, _)| *score))
            .collect();
        // As the feed saw it when serving: the counts of `row`, read before this signal was
        // recorded (so the label is not inside its own feature), and the co-engagement with
        // the viewer's last finished videos, summed as the co-engagement source sums it.
        let co_engagement: f64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(c.score), 0.0) FROM video_coengagement c
             WHERE c.other_id = $1 AND c.video_id IN (
                 SELECT v.video_id FROM video_views v
                 WHERE v.user_id = $2 AND v.completed = 1 AND v.video_id <> $1 ORDER BY v.at DESC LIMIT 20)",
        )
        .bind(&row.id)
        .bind(&viewer.id)
        .fetch_one(self.inner.store.read())
        .await?;
        Ok(Features {
            tag_affinity: mean(&tag_scores),
            author_affinity: stored.get(&("author".to_string(), row.author_id.clone())).map_or(0.0, |(s, _)| *s),
            follows_author: self.inner.accounts.follows(&viewer.id, &row.author_id).await?,
            co_engagement,
            completion_rate: learner::smoothed_completion_rate(row.views, row.completions),
            views: row.views,
            age_hours: (Timestamp::now().unix_millis() - row.created_at.unix_millis()).max(0) as f64 / 3_600_000.0,
        })
    }

    async fn add_trend(&self, video_id: &str, weight: f64, now: i64) -> Result<(), VideoError> {
        for _attempt in 0..3 {
            let Some(old): Option<f64> = sqlx::query_scalar("SELECT trend_score FROM videos WHERE id = $1")
                .bind(video_id)
                .fetch_optional(self.inner.store.read())
                .await?
            else {
                return Ok(());
            };
            let updated = sqlx::query("UPDATE videos SET trend_score = $3 WHERE id = $1 AND trend_score = $2")
                .bind(video_id)
                .bind(old)
                .bind(learner::next_trend(old, weight, now))
                .execute(self.inner.store.write())
                .await?;
            if updated.rows_affected() == 1 {
                return Ok(());
            }
        }
        tracing::debug!("trending of {video_id} is busy; one signal was not added");
        Ok(())
    }

    /// "Viewers who finished this also finished that": pairs this completion with the
    /// viewer's last few other completions, both ways, in one statement.
    ///
    /// The pairs are written in one order, the same for everyone: two viewers finishing
    /// the same two videos from opposite ends would otherwise each lock one of the pair's
    /// rows and wait for the other's (PostgreSQL's deadlock detector then failed one view
    /// with a 500 under `plaza-bench video-ranking`'s concurrent views).
    async fn pair_with_recent_completions(&self, user_id: &str, video_id: &str) -> Result<(), VideoError> {
        let mut recent: Vec<String> = sqlx::query_scalar(
            "SELECT video_id FROM video_views WHERE user_id = $1 AND completed = 1 AND video_id <> $2
             ORDER BY at DESC LIMIT $3",
        )
        .bind(user_id)
        .bind(video_id)
        .bind(CO_ENGAGEMENT_RECENT)
        .fetch_all(self.inner.store.read())
        .await?;
        // A video finished on several days is one pair, not several rows of one statement.
        recent.sort();
        recent.dedup();
        let mut pairs: Vec<(&str, &str)> =
            recent.iter().flat_map(|other| [(video_id, other.as_str()), (other.as_str(), video_id)]).collect();
        pairs.sort_unstable();
        if pairs.is_empty() {
            return Ok(());
        }
        // `WHERE true`: SQLite reads an upsert's `ON CONFLICT` after a bare `SELECT … FROM`
        // as a join constraint.
        let upsert = format!(
            "INSERT INTO video_coengagement (video_id, other_id, score)
             SELECT video_id, other_id, 1 FROM ({}) AS pairs WHERE true ORDER BY video_id, other_id
             ON CONFLICT (video_id, other_id) DO UPDATE SET score = video_coengagement.score + 1",
            self.inner.store.backend().json_rows(1, &[("video_id", JsonColumn::Text), ("other_id", JsonColumn::Text)])
        );
        let payload = serde_json::to_string(&pairs).map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
        sqlx::query(&upsert).bind(payload).execute(self.inner.store.write()).await?;
        Ok(())
    }
}

pub(crate) fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}
