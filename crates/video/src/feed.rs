//! The For You and Following feeds.
//!
//! For You is retrieval, then scoring, then re-ranking, per request:
//! 1. Candidates from six sources, each one bounded indexed read: the newest videos of
//!    people the viewer follows; co-engagement with the videos they finished last;
//!    the newest under their three strongest hashtags; the newest of their three
//!    strongest authors; trending (`trend_score`); and a pool of fresh, barely seen
//!    uploads.
//! 2. Filtering: ready, visible to the viewer (the one rule of `Visibility::allows`),
//!    not their own, not hidden, not seen in the last week, not served earlier in this
//!    session (the cursor carries fingerprints of the last 60), no author the viewer turned against.
//! 3. Scoring by the learnt scorer (`learner::Weights`, `σ(w·x)`), then `learner::rerank`:
//!    no author twice in five, one slot in ten from the fresh pool.
//! 4. When nothing new is left, videos seen before fill the page ("Watch again").
//!
//! New viewers have no affinities: trending and fresh carry their first pages, and each
//! view moves their affinities at once.

use crate::engagement::mean;
use crate::learner::{self, Features, Scored, Source, Weights};
use crate::model::Visibility;
use crate::service::{
    time_position, video_row, Video, VideoError, VideoHandle, VideoRow, CANDIDATE_COLUMNS, VIDEO_COLUMNS,
};
use plaza_accounts::User;
use plaza_kernel::{Cursor, Page, PageLimit, Timestamp};
use plaza_store::Row;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// A feed item: a video and why it was chosen.
#[derive(Debug, Clone)]
pub struct FeedItem {
    pub video: Video,
    pub source: Source,
}

/// How many of this session's earlier items a cursor carries (six pages of ten), each as
/// a 32-bit fingerprint of its id: cursors have at most 1,024 characters, which would
/// hold only 19 ids themselves. A collision only hides one more video for a session.
const SERVED_MAX: usize = 60;
/// How far back "seen recently" looks, and how many views it reads.
const SEEN_WINDOW_MS: i64 = 7 * 86_400_000;
const SEEN_MAX: i64 = 1_000;
/// How many followed people's videos are read (the most recently followed first).
const FOLLOWED_MAX: usize = 500;
/// Per-source candidate counts.
const FOLLOWING_CANDIDATES: i64 = 50;
const CO_ENGAGEMENT_CANDIDATES: i64 = 50;
const TAG_CANDIDATES: i64 = 30;
const AUTHOR_CANDIDATES: i64 = 10;
const TRENDING_CANDIDATES: i64 = 100;
const FRESH_CANDIDATES: i64 = 50;
/// A video with fewer views than this is fresh.
const FRESH_VIEWS_BELOW: i64 = 20;
/// An author the viewer's affinity is below this is left out.
const AUTHOR_MUTED_BELOW: f64 = -4.0;
/// How often each node folds its scorer into the stored one.
pub const MODEL_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// What the feed knows of one viewer while building a page.
struct Viewer {
    tags: HashMap<String, f64>,
    authors: HashMap<String, f64>,
    followed: HashSet<String>,
    excluded: HashSet<String>,
    /// Fingerprints of what this session served already.
    served: HashSet<u32>,
    seen: HashSet<String>,
}

/// A page's candidates before scoring.
struct Candidates {
    /// Each candidate's id with the source that found it first.
    sources: HashMap<String, Source>,
    /// Co-engagement with what the viewer finished, by candidate id.
    co_scores: HashMap<String, f64>,
    fresh_ids: HashSet<String>,
}

impl VideoHandle {
    /// A ranked page of the For You feed.
    pub async fn for_you(
        &self,
        me: &User,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<FeedItem>, VideoError> {
        let served = decode_served(cursor)?;
        let viewer = self.viewer(me, &served).await?;
        let candidates = self.candidates(me, &viewer).await?;
        let (ranked, fresh_pool, again) = self.score_candidates(me, &viewer, &candidates).await?;
        let limit_count = limit.get() as usize;
        let mut page = learner::rerank(ranked, fresh_pool, limit_count);
        if page.len() < limit_count {
            let room = limit_count - page.len();
            page.extend(learner::rerank(again, Vec::new(), room));
        }
        let chosen: Vec<String> = page.iter().map(|item| item.video_id.clone()).collect();
        let by_id: HashMap<String, Scored> = page.into_iter().map(|item| (item.video_id.clone(), item)).collect();
        // The ten chosen are read again whole (with their captions), by primary key.
        let rows = self.rows(&chosen, VIDEO_COLUMNS).await?;
        let rows_by_id: HashMap<String, VideoRow> = rows.into_iter().map(|row| (row.id.clone(), row)).collect();
        let ordered: Vec<VideoRow> = chosen.iter().filter_map(|id| rows_by_id.get(id).cloned()).collect();
        let videos = self.assemble(me, ordered).await?;
        let usernames = self.usernames(&videos);
        let items: Vec<FeedItem> = videos
            .into_iter()
            .map(|video| {
                let source = match by_id.get(&video.id).map(|item| item.source.clone()) {
                    Some(Source::Following(author_id)) => {
                        Source::Following(usernames.get(&author_id).cloned().unwrap_or(author_id))
                    }
                    Some(Source::Author(author_id)) => {
                        Source::Author(usernames.get(&author_id).cloned().unwrap_or(author_id))
                    }
                    Some(other) => other,
                    None => Source::Trending,
                };
                FeedItem { video, source }
            })
            .collect();
        let next_cursor = if items.is_empty() {
            None
        } else {
            let mut served = served;
            served.extend(items.iter().map(|item| fingerprint(&item.video.id)));
            let keep_from = served.len().saturating_sub(SERVED_MAX);
            Some(encode_served(&served[keep_from..]))
        };
        Ok(Page { items, next_cursor })
    }

    /// Where a page's candidates come from, each id with the first source that found it:
    /// the people followed, videos co-engaged with what the viewer finished, the viewer's
    /// strongest hashtags and authors, trending, and fresh videos with few views.
    async fn candidates(&self, me: &User, viewer: &Viewer) -> Result<Candidates, VideoError> {
        let mut sources: HashMap<String, Source> = HashMap::new();
        let mut co_scores: HashMap<String, f64> = HashMap::new();
        let mut fresh_ids: HashSet<String> = HashSet::new();
        let add = |ids: Vec<String>, source: Source, sources: &mut HashMap<String, Source>| {
            for id in ids {
                sources.entry(id).or_insert_with(|| source.clone());
            }
        };

        // Following.
        let followed: Vec<String> = viewer.followed.iter().take(FOLLOWED_MAX).cloned().collect();
        for row in self.newest_of_authors(&followed, FOLLOWING_CANDIDATES).await? {
            sources.entry(row.id.clone()).or_insert(Source::Following(row.author_id.clone()));
        }
        // Co-engagement.
        for (id, total) in self.co_engaged(me, CO_ENGAGEMENT_CANDIDATES).await? {
            co_scores.insert(id.clone(), total);
            add(vec![id], Source::CoEngagement, &mut sources);
        }
        // Hashtags and authors the viewer engages with.
        for tag in strongest(&viewer.tags, 3) {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT video_id FROM video_hashtags WHERE tag = $1 ORDER BY created_at DESC LIMIT $2",
            )
            .bind(&tag)
            .bind(TAG_CANDIDATES)
            .fetch_all(self.inner.store.read())
            .await?;
            add(ids, Source::Hashtag(tag), &mut sources);
        }
        for author in strongest(&viewer.authors, 3) {
            for row in self.newest_of_authors(std::slice::from_ref(&author), AUTHOR_CANDIDATES).await? {
                sources.entry(row.id).or_insert(Source::Author(author.clone()));
            }
        }
        // Trending and fresh.
        let trending: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM videos WHERE status = 'ready' AND visibility <> 'private' ORDER BY trend_score DESC LIMIT $1",
        )
        .bind(TRENDING_CANDIDATES)
        .fetch_all(self.inner.store.read())
        .await?;
        add(trending, Source::Trending, &mut sources);
        let fresh: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM videos WHERE status = 'ready' AND visibility <> 'private' AND views < $1
             ORDER BY ready_at DESC LIMIT $2",
        )
        .bind(FRESH_VIEWS_BELOW)
        .bind(FRESH_CANDIDATES)
        .fetch_all(self.inner.store.read())
        .await?;
        for id in fresh {
            fresh_ids.insert(id.clone());
            sources.entry(id).or_insert(Source::Fresh);
        }

        Ok(Candidates { sources, co_scores, fresh_ids })
    }

    /// The `limit` videos most co-engaged with the viewer's last 20 finished ones, with
    /// the summed co-engagement, strongest first.
    async fn co_engaged(&self, me: &User, limit: i64) -> Result<Vec<(String, f64)>, VideoError> {
        let finished: Vec<String> = sqlx::query_scalar(
            "SELECT video_id FROM video_views WHERE user_id = $1 AND completed = 1 ORDER BY at DESC LIMIT 20",
        )
        .bind(&me.id)
        .fetch_all(self.inner.store.read())
        .await?;
        if finished.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = plaza_store::numbered_parameters(2, finished.len());
        let sql = format!(
            "SELECT other_id, SUM(score) AS total FROM video_coengagement WHERE video_id IN ({})
             GROUP BY other_id ORDER BY total DESC LIMIT $1",
            placeholders
        );
        let mut query = sqlx::query(&sql).bind(limit);
        for id in &finished {
            query = query.bind(id);
        }
        let mut found = Vec::new();
        for row in query.fetch_all(self.inner.store.read()).await? {
            found.push((row.try_get::<String, _>("other_id")?, row.try_get::<f64, _>("total")?));
        }
        Ok(found)
    }

    /// Benchmark support (`bench_support::rank_every_unseen`): the page the scorer would
    /// make if every ready video were a candidate, not only what the six sources retrieve.
    /// The same viewer state, filters, features, scorer and re-ranking as `for_you`, with
    /// no exploration slot and no "watch again".
    pub(crate) async fn rank_every_unseen(&self, me: &User, limit: usize) -> Result<Vec<String>, VideoError> {
        let viewer = self.viewer(me, &[]).await?;
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM videos WHERE status = 'ready' AND visibility <> 'private'")
                .fetch_all(self.inner.store.read())
                .await?;
        let co_scores: HashMap<String, f64> = self.co_engaged(me, ids.len().max(1) as i64).await?.into_iter().collect();
        let sources = ids.into_iter().map(|id| (id, Source::Trending)).collect();
        let candidates = Candidates { sources, co_scores, fresh_ids: HashSet::new() };
        let (ranked, _, _) = self.score_candidates(me, &viewer, &candidates).await?;
        Ok(learner::rerank(ranked, Vec::new(), limit).into_iter().map(|item| item.video_id).collect())
    }

    /// Every candidate the viewer may see, scored: the unseen ranked (fresh ones also in
    /// the exploration pool) and the seen kept apart, to fill a page that runs short.
    async fn score_candidates(
        &self,
        me: &User,
        viewer: &Viewer,
        candidates: &Candidates,
    ) -> Result<(Vec<Scored>, Vec<Scored>, Vec<Scored>), VideoError> {
        let Candidates { sources, co_scores, fresh_ids } = candidates;
        let ids: Vec<String> = sources
            .keys()
            .filter(|id| !viewer.excluded.contains(*id) && !viewer.served.contains(&fingerprint(id)))
            .cloned()
            .collect();
        let rows = self.rows(&ids, CANDIDATE_COLUMNS).await?;
        let weights = self.inner.weights.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let now = Timestamp::now().unix_millis();
        let mut ranked = Vec::new();
        let mut fresh_pool = Vec::new();
        let mut again = Vec::new();
        for row in rows {
            if row.author_id == me.id || !self.may_see(viewer, &row) {
                continue;
            }
            if viewer.authors.get(&row.author_id).is_some_and(|score| *score < AUTHOR_MUTED_BELOW) {
                continue;
            }
            let features =
                features(viewer, &row, co_scores.get(&row.id).copied().unwrap_or(0.0), row.views, row.completions, now);
            let source = sources.get(&row.id).cloned().unwrap_or(Source::Trending);
            let scored = Scored {
                video_id: row.id.clone(),
                author_id: row.author_id.clone(),
                score: weights.score(&features),
                source: source.clone(),
            };
            if viewer.seen.contains(&row.id) {
                again.push(Scored { source: Source::Again, ..scored });
            } else if fresh_ids.contains(&row.id) {
                fresh_pool.push(Scored { source: Source::Fresh, ..scored.clone() });
                ranked.push(scored);
            } else {
                ranked.push(scored);
            }
        }
        Ok((ranked, fresh_pool, again))
    }

    /// The newest ready videos of the people `me` follows that `me` may see.
    pub async fn following_feed(
        &self,
        me: &User,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<FeedItem>, VideoError> {
        let (before_ms, before_id) = time_position(cursor)?;
        let followed: Vec<String> =
            self.inner.accounts.following_ids(&me.id).await?.into_iter().take(FOLLOWED_MAX).collect();
        if followed.is_empty() {
            return Ok(Page { items: Vec::new(), next_cursor: None });
        }
        let placeholders = plaza_store::numbered_parameters(5, followed.len());
        let sql = format!(
            "SELECT {VIDEO_COLUMNS} FROM videos v
             WHERE v.status = 'ready' AND v.visibility IN ('public', 'followers')
               AND (v.created_at < $1 OR (v.created_at = $1 AND v.id < $2)) AND v.author_id IN ({})
               AND $3 = $3
             ORDER BY v.created_at DESC, v.id DESC LIMIT $4",
            placeholders
        );
        let mut query = sqlx::query(&sql).bind(before_ms).bind(before_id).bind(1i64).bind(limit.probe());
        for id in &followed {
            query = query.bind(id);
        }
        let rows = query.fetch_all(self.inner.store.read()).await?;
        let rows = rows.iter().map(video_row).collect::<Result<Vec<_>, _>>()?;
        let page = Page::from_probe(rows, limit, |row| format!("{}:{}", row.created_at.unix_millis(), row.id));
        let next_cursor = page.next_cursor.clone();
        let videos = self.assemble(me, page.items).await?;
        let items = videos
            .into_iter()
            .map(|video| {
                let source = Source::Following(video.author.username.clone());
                FeedItem { video, source }
            })
            .collect();
        Ok(Page { items, next_cursor })
    }

    /// Folds this node's scorer into the stored one every [`MODEL_SYNC_INTERVAL`].
    pub async fn sync_model_continually(self) {
        loop {
            if let Err(error) = self.sync_model().await {
                tracing::warn!("saving the feed's scorer: {error}");
            }
            tokio::time::sleep(MODEL_SYNC_INTERVAL).await;
        }
    }

    /// Merges the stored scorer and this node's, stores the result and adopts it.
    pub async fn sync_model(&self) -> Result<(), VideoError> {
        let stored: Option<String> = sqlx::query_scalar("SELECT weights FROM video_model WHERE id = 1")
            .fetch_optional(self.inner.store.read())
            .await?;
        let local = self.inner.weights.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let merged = match &stored {
            Some(text) => local.merged_with(&Weights::from_json(text)),
            None => local,
        };
        sqlx::query(
            "INSERT INTO video_model (id, weights, updated_at) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET weights = excluded.weights, updated_at = excluded.updated_at",
        )
        .bind(merged.to_json())
        .bind(Timestamp::now().unix_millis())
        .execute(self.inner.store.write())
        .await?;
        *self.inner.weights.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = merged;
        Ok(())
    }

    /// The scorer this node uses now.
    pub fn weights(&self) -> Weights {
        self.inner.weights.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    async fn viewer(&self, me: &User, served: &[u32]) -> Result<Viewer, VideoError> {
        let mut tags = HashMap::new();
        let mut authors = HashMap::new();
        let now = Timestamp::now().unix_millis();
        let rows = sqlx::query(
            "SELECT kind, item, score, updated_at FROM video_affinities WHERE user_id = $1 ORDER BY score DESC LIMIT 500",
        )
        .bind(&me.id)
        .fetch_all(self.inner.store.read())
        .await?;
        for row in rows {
            let kind: String = row.try_get("kind")?;
            let score = learner::next_affinity(row.try_get("score")?, row.try_get("updated_at")?, now, 0.0);
            let target = if kind == "tag" { &mut tags } else { &mut authors };
            target.insert(row.try_get::<String, _>("item")?, score);
        }
        let followed: HashSet<String> = self.inner.accounts.following_ids(&me.id).await?.into_iter().collect();
        let mut excluded: HashSet<String> = HashSet::new();
        let hidden: Vec<String> =
            sqlx::query_scalar("SELECT video_id FROM video_hidden WHERE user_id = $1 ORDER BY at DESC LIMIT $2")
                .bind(&me.id)
                .bind(SEEN_MAX)
                .fetch_all(self.inner.store.read())
                .await?;
        excluded.extend(hidden);
        let seen: HashSet<String> = sqlx::query_scalar(
            "SELECT video_id FROM video_views WHERE user_id = $1 AND at > $2 ORDER BY at DESC LIMIT $3",
        )
        .bind(&me.id)
        .bind(now - SEEN_WINDOW_MS)
        .bind(SEEN_MAX)
        .fetch_all(self.inner.store.read())
        .await?
        .into_iter()
        .collect();
        Ok(Viewer { tags, authors, followed, excluded, served: served.iter().copied().collect(), seen })
    }

    fn may_see(&self, viewer: &Viewer, row: &VideoRow) -> bool {
        row.status == crate::model::VideoStatus::Ready
            && row.visibility != Visibility::Private
            && row.visibility.allows(false, viewer.followed.contains(&row.author_id))
    }

    async fn newest_of_authors(&self, author_ids: &[String], limit: i64) -> Result<Vec<VideoRow>, VideoError> {
        if author_ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = plaza_store::numbered_parameters(2, author_ids.len());
        let sql = format!(
            "SELECT {VIDEO_COLUMNS} FROM videos v WHERE v.status = 'ready' AND v.author_id IN ({})
             ORDER BY v.created_at DESC LIMIT $1",
            placeholders
        );
        let mut query = sqlx::query(&sql).bind(limit);
        for id in author_ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(self.inner.store.read()).await?;
        Ok(rows.iter().map(video_row).collect::<Result<Vec<_>, _>>()?)
    }

    /// The rows of `ids` with `columns` (`VIDEO_COLUMNS`, or `CANDIDATE_COLUMNS` to rank).
    async fn rows(&self, ids: &[String], columns: &str) -> Result<Vec<VideoRow>, VideoError> {
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(200) {
            let placeholders = plaza_store::numbered_parameters(1, chunk.len());
            let sql = format!("SELECT {columns} FROM videos v WHERE v.id IN ({})", placeholders);
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(self.inner.store.read()).await? {
                rows.push(video_row(&row)?);
            }
        }
        Ok(rows)
    }

    fn usernames(&self, videos: &[Video]) -> HashMap<String, String> {
        videos.iter().map(|video| (video.author.id.clone(), video.author.username.clone())).collect()
    }
}

fn features(viewer: &Viewer, row: &VideoRow, co_engagement: f64, views: i64, completions: i64, now: i64) -> Features {
    let tag_scores: Vec<f64> = row.hashtags.iter().map(|tag| viewer.tags.get(tag).copied().unwrap_or(0.0)).collect();
    Features {
        tag_affinity: mean(&tag_scores),
        author_affinity: viewer.authors.get(&row.author_id).copied().unwrap_or(0.0),
        follows_author: viewer.followed.contains(&row.author_id),
        co_engagement,
        completion_rate: learner::smoothed_completion_rate(views, completions),
        views,
        age_hours: (now - row.created_at.unix_millis()).max(0) as f64 / 3_600_000.0,
    }
}

/// The `count` items with the highest positive scores.
fn strongest(scores: &HashMap<String, f64>, count: usize) -> Vec<String> {
    let mut positive: Vec<(&String, &f64)> = scores.iter().filter(|(_, score)| **score > 0.5).collect();
    positive.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
    positive.into_iter().take(count).map(|(item, _)| item.clone()).collect()
}

/// A video id's fingerprint in a cursor: 32-bit FNV-1a, the same on every node and
/// release.
fn fingerprint(id: &str) -> u32 {
    id.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

fn encode_served(served: &[u32]) -> String {
    let position: String = served.iter().map(|print| format!("{print:08x}")).collect();
    Cursor::from_position(&position).into_string()
}

fn decode_served(cursor: Option<&str>) -> Result<Vec<u32>, VideoError> {
    let refused = || crate::service::invalid("cursor", "not a cursor this server issued");
    match cursor {
        None | Some("") => Ok(Vec::new()),
        Some(opaque) => {
            let position = Cursor::parse_position(opaque).ok_or_else(refused)?;
            if position.len() % 8 != 0 || position.len() > SERVED_MAX * 8 || !position.is_ascii() {
                return Err(refused());
            }
            (0..position.len() / 8)
                .map(|n| u32::from_str_radix(&position[n * 8..n * 8 + 8], 16).map_err(|_| refused()))
                .collect()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_holds_six_pages_of_fingerprints_and_refuses_anything_else() {
        let served: Vec<u32> =
            (0..SERVED_MAX).map(|n| fingerprint(&format!("01M8XCK9C9VX8M8YBF3QGBB{n:03}"))).collect();
        let cursor = encode_served(&served);
        assert!(cursor.len() <= 1024, "{} characters", cursor.len());
        assert_eq!(decode_served(Some(&cursor)).unwrap(), served);
        assert_eq!(decode_served(None).unwrap(), Vec::<u32>::new());
        let too_many: Vec<u32> = (0..SERVED_MAX as u32 + 1).collect();
        assert!(decode_served(Some(&encode_served(&too_many))).is_err());
        for forged in [
            "forged",
            &Cursor::from_position("0123456").into_string(),
            &Cursor::from_position("zzzzzzzz").into_string(),
        ] {
            assert!(decode_served(Some(forged)).is_err(), "{forged}");
        }
        assert_ne!(fingerprint("01M8XCK9C9VX8M8YBF3QGBBAA4"), fingerprint("01M8XCK9C9VX8M8YBF3QGBBAA5"));
    }
}
