//! What the For You feed learns, as pure functions: the reward of each signal, the
//! per-user affinities it moves, the global scorer (a logistic regression over a few
//! features, trained online one view at a time), the trending score, and the re-ranking
//! for diversity and exploration. `feed.rs` reads and writes the state; nothing here
//! touches the database, so every rule is unit-tested.

use std::collections::HashMap;

/// A signal from a viewer about a video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// A view ended: how long was watched, of how long, whether it reached the end, and
    /// how many times it started over.
    View {
        watched_ms: i64,
        duration_ms: i64,
        completed: bool,
        replays: i64,
    },
    Like,
    Comment,
    Share,
    /// Followed the author from the video.
    Follow,
    NotInterested,
}

/// A view shorter than this, or under [`SKIP_FRACTION`] of the video, is a quick skip.
pub const SKIP_MS: i64 = 2_000;
pub const SKIP_FRACTION: f64 = 0.2;

/// How much a signal says the viewer wants more like it: completion and replays first,
/// then shares, likes, comments and follows; quick skips and "not interested" against.
pub fn reward(signal: Signal) -> f64 {
    match signal {
        Signal::View { watched_ms, duration_ms, completed, replays } => {
            let fraction = if duration_ms > 0 { (watched_ms as f64 / duration_ms as f64).min(1.0) } else { 0.0 };
            if completed || replays > 0 {
                1.0 + 0.5 * replays.clamp(0, 3) as f64
            } else if watched_ms < SKIP_MS || fraction < SKIP_FRACTION {
                -0.8
            } else {
                fraction - 0.4
            }
        }
        Signal::Share => 1.2,
        Signal::Like => 1.0,
        Signal::Comment => 0.8,
        Signal::Follow => 1.5,
        Signal::NotInterested => -3.0,
    }
}

/// The label a view teaches the scorer: 1 for a completion or replay, 0 for a quick
/// skip, the watched fraction in between. `None` for signals that are not views.
pub fn view_label(signal: Signal) -> Option<f64> {
    match signal {
        Signal::View { watched_ms, duration_ms, completed, replays } => Some(if completed || replays > 0 {
            1.0
        } else if watched_ms < SKIP_MS || duration_ms <= 0 {
            0.0
        } else {
            (watched_ms as f64 / duration_ms as f64).clamp(0.0, 1.0)
        }),
        _ => None,
    }
}

/// Affinities fade with a half-life of a week, so tastes can change.
pub const AFFINITY_HALF_LIFE_MS: f64 = 7.0 * 86_400_000.0;
/// An affinity stays within ±this.
pub const AFFINITY_MAX: f64 = 10.0;

/// A stored affinity after `reward` at `now_ms`, given its value at `updated_ms`.
pub fn next_affinity(old: f64, updated_ms: i64, now_ms: i64, reward: f64) -> f64 {
    let elapsed = (now_ms - updated_ms).max(0) as f64;
    let faded = old * 0.5f64.powf(elapsed / AFFINITY_HALF_LIFE_MS);
    (faded + reward).clamp(-AFFINITY_MAX, AFFINITY_MAX)
}

/// Trending counts engagement with a half-life of six hours. The score is kept in log
/// space relative to a fixed epoch, `ln(Σ wᵢ·e^((tᵢ−T₀)/τ))`, so that ordering by the
/// stored number orders by the decayed sum at any later instant without rewriting rows.
pub const TREND_TAU_MS: f64 = 6.0 * 3_600_000.0 / std::f64::consts::LN_2;
/// The prior a new video starts with, as if it had this much engagement at upload.
pub const TREND_PRIOR: f64 = 0.5;

/// The trending score after engagement of `weight` at `now_ms`.
pub fn next_trend(old: f64, weight: f64, now_ms: i64) -> f64 {
    let added = weight.max(1e-9).ln() + now_ms as f64 / TREND_TAU_MS;
    let (high, low) = if old > added { (old, added) } else { (added, old) };
    high + (low - high).exp().ln_1p()
}

/// The trending score of a video uploaded at `now_ms`.
pub fn initial_trend(now_ms: i64) -> f64 {
    TREND_PRIOR.ln() + now_ms as f64 / TREND_TAU_MS
}

/// How much engagement each signal adds to trending.
pub fn trend_weight(signal: Signal) -> f64 {
    match signal {
        Signal::View { completed, replays, .. } => {
            if completed || replays > 0 {
                1.0
            } else {
                0.3
            }
        }
        Signal::Like => 2.0,
        Signal::Comment => 2.0,
        Signal::Share => 3.0,
        Signal::Follow => 2.0,
        Signal::NotInterested => 0.0,
    }
}

/// What the scorer knows of one (viewer, video) pair.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Features {
    /// The viewer's mean affinity over the video's hashtags.
    pub tag_affinity: f64,
    /// The viewer's affinity to the author.
    pub author_affinity: f64,
    pub follows_author: bool,
    /// How strongly viewers who finished what this viewer finished also finished this.
    pub co_engagement: f64,
    /// Completions per view, smoothed toward a prior of one in three.
    pub completion_rate: f64,
    pub views: i64,
    pub age_hours: f64,
}

/// The scorer's inputs, in the order of [`Weights`].
pub const FEATURE_NAMES: [&str; 8] = [
    "bias",
    "tag_affinity",
    "author_affinity",
    "follows_author",
    "co_engagement",
    "completion_rate",
    "popularity",
    "freshness",
];

impl Features {
    pub fn vector(&self) -> [f64; 8] {
        [
            1.0,
            (self.tag_affinity / 3.0).tanh(),
            (self.author_affinity / 3.0).tanh(),
            if self.follows_author { 1.0 } else { 0.0 },
            // A count that grows with traffic: a fixed tanh squashes every well-watched
            // pair to 1 and loses the order the co-engagement source itself ranks by, so
            // it is taken in log space, where doubling adds the same at any volume.
            (1.0 + self.co_engagement.max(0.0)).ln() / 5.0,
            self.completion_rate,
            ((1.0 + self.views as f64).ln() / 10.0).min(1.0),
            (-self.age_hours / 48.0).exp(),
        ]
    }
}

/// The completion rate of a video with these counts, smoothed.
pub fn smoothed_completion_rate(views: i64, completions: i64) -> f64 {
    (completions as f64 + 1.0) / (views as f64 + 3.0)
}

/// The global scorer's weights: the probability that a viewer finishes a video is
/// `σ(w·x)`. It starts from a hand-set prior and learns from every view.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights(pub [f64; 8]);

impl Default for Weights {
    fn default() -> Self {
        Weights([-1.0, 2.5, 1.5, 0.8, 1.0, 1.0, 0.3, 0.4])
    }
}

/// The learning rate of one view and the L2 pull toward the prior.
pub const LEARNING_RATE: f64 = 0.05;
pub const L2: f64 = 0.001;

impl Weights {
    pub fn score(&self, features: &Features) -> f64 {
        let x = features.vector();
        let z: f64 = self.0.iter().zip(x.iter()).map(|(w, x)| w * x).sum();
        1.0 / (1.0 + (-z).exp())
    }

    /// One step of stochastic gradient descent on the log loss of `label` (0–1).
    pub fn learn(&mut self, features: &Features, label: f64) {
        let prior = Weights::default();
        let x = features.vector();
        let error = label - self.score(features);
        for (index, weight) in self.0.iter_mut().enumerate() {
            *weight += LEARNING_RATE * (error * x[index] - L2 * (*weight - prior.0[index]));
            *weight = weight.clamp(-10.0, 10.0);
        }
    }

    /// The weights as stored (`video_model.weights`): a JSON object by feature name.
    pub fn to_json(&self) -> String {
        let map: HashMap<&str, f64> = FEATURE_NAMES.iter().copied().zip(self.0.iter().copied()).collect();
        serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_string())
    }

    pub fn from_json(text: &str) -> Weights {
        let map: HashMap<String, f64> = serde_json::from_str(text).unwrap_or_default();
        let mut weights = Weights::default();
        for (index, name) in FEATURE_NAMES.iter().enumerate() {
            if let Some(value) = map.get(*name).filter(|value| value.is_finite()) {
                weights.0[index] = *value;
            }
        }
        weights
    }

    /// Another node's weights folded into these, half each: nodes learn from the signals
    /// they serve and meet in the stored row.
    pub fn merged_with(&self, other: &Weights) -> Weights {
        let mut merged = self.clone();
        for (index, weight) in merged.0.iter_mut().enumerate() {
            *weight = (*weight + other.0[index]) / 2.0;
        }
        merged
    }
}

/// Where a candidate came from; the first source that found it explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A video of someone the viewer follows (their username).
    Following(String),
    /// Finished by viewers who finished what the viewer finished.
    CoEngagement,
    /// Under a hashtag the viewer engages with.
    Hashtag(String),
    /// By an author the viewer engages with (their username).
    Author(String),
    Trending,
    /// New and barely seen: the explore share.
    Fresh,
    /// Seen before; offered again when nothing new is left.
    Again,
}

impl Source {
    /// A stable code clients can translate.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Following(_) => "following",
            Self::CoEngagement => "co_engagement",
            Self::Hashtag(_) => "hashtag",
            Self::Author(_) => "author",
            Self::Trending => "trending",
            Self::Fresh => "fresh",
            Self::Again => "again",
        }
    }

    /// Why the viewer sees it, in words.
    pub fn reason(&self) -> String {
        match self {
            Self::Following(username) => format!("You follow @{username}"),
            Self::CoEngagement => "People who finished videos you finished also finished this".to_string(),
            Self::Hashtag(tag) => format!("You watch #{tag} videos"),
            Self::Author(username) => format!("You often watch @{username}"),
            Self::Trending => "Trending now".to_string(),
            Self::Fresh => "New on Plaza: you are among its first viewers".to_string(),
            Self::Again => "Watch again: you have seen everything new".to_string(),
        }
    }
}

/// A scored candidate for re-ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub video_id: String,
    pub author_id: String,
    pub score: f64,
    pub source: Source,
}

/// No author twice within this many consecutive items.
pub const AUTHOR_WINDOW: usize = 5;
/// One item in this many is taken from the fresh pool, whatever its score.
pub const EXPLORE_EVERY: usize = 10;

/// The page: best score first, no author twice in any [`AUTHOR_WINDOW`] consecutive
/// items (relaxed only when nothing else is left), and every [`EXPLORE_EVERY`]th item,
/// starting at the fourth, from `fresh` (about 10 %), so new videos get their first views.
pub fn rerank(mut ranked: Vec<Scored>, mut fresh: Vec<Scored>, limit: usize) -> Vec<Scored> {
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.video_id.cmp(&b.video_id)));
    let mut page: Vec<Scored> = Vec::with_capacity(limit);
    while page.len() < limit && (!ranked.is_empty() || !fresh.is_empty()) {
        let position = page.len();
        let explore_slot = position % EXPLORE_EVERY == 3 || ranked.is_empty();
        let pool = if explore_slot && !fresh.is_empty() { &mut fresh } else { &mut ranked };
        if pool.is_empty() {
            break;
        }
        let recent: Vec<&str> = page.iter().rev().take(AUTHOR_WINDOW - 1).map(|item| item.author_id.as_str()).collect();
        let pick = pool.iter().position(|item| !recent.contains(&item.author_id.as_str())).unwrap_or(0);
        let item = pool.remove(pick);
        ranked.retain(|other| other.video_id != item.video_id);
        fresh.retain(|other| other.video_id != item.video_id);
        page.push(item);
    }
    page
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn scored(id: &str, author: &str, score: f64) -> Scored {
        Scored { video_id: id.into(), author_id: author.into(), score, source: Source::Trending }
    }

    #[test]
    fn completions_and_replays_reward_more_than_likes_and_skips_count_against() {
        let completed = reward(Signal::View { watched_ms: 10_000, duration_ms: 10_000, completed: true, replays: 0 });
        let replayed = reward(Signal::View { watched_ms: 20_000, duration_ms: 10_000, completed: true, replays: 1 });
        let skipped = reward(Signal::View { watched_ms: 800, duration_ms: 10_000, completed: false, replays: 0 });
        assert!(replayed > completed && completed > 0.0);
        assert!(skipped < 0.0);
        assert!(reward(Signal::NotInterested) < skipped);
    }

    #[test]
    fn an_affinity_fades_by_half_in_a_week_and_stays_bounded() {
        let week = AFFINITY_HALF_LIFE_MS as i64;
        assert!((next_affinity(4.0, 0, week, 0.0) - 2.0).abs() < 1e-9);
        assert_eq!(next_affinity(9.5, 0, 0, 5.0), AFFINITY_MAX);
    }

    #[test]
    fn trending_ranks_recent_engagement_above_old_engagement_of_the_same_amount() {
        let hour = 3_600_000;
        let old = (0..10).fold(initial_trend(0), |trend, _| next_trend(trend, 1.0, 0));
        let recent = (0..10).fold(initial_trend(24 * hour), |trend, _| next_trend(trend, 1.0, 24 * hour));
        assert!(recent > old);
        // Ten times the engagement a day ago beats the same engagement six hours ago? No:
        // a day is four half-lives (16×), so recent still wins over ten times as much.
        let heavy_old = (0..100).fold(initial_trend(0), |trend, _| next_trend(trend, 1.0, 0));
        assert!(recent > heavy_old);
    }

    #[test]
    fn the_scorer_learns_that_tag_affinity_predicts_completion() {
        let mut weights = Weights([0.0; 8]);
        let liked = Features { tag_affinity: 5.0, ..Features::default() };
        let disliked = Features { tag_affinity: -5.0, ..Features::default() };
        for _ in 0..500 {
            weights.learn(&liked, 1.0);
            weights.learn(&disliked, 0.0);
        }
        assert!(weights.score(&liked) > 0.8, "{}", weights.score(&liked));
        assert!(weights.score(&disliked) < 0.2);
        assert_eq!(Weights::from_json(&weights.to_json()), weights);
    }

    #[test]
    fn no_author_appears_twice_in_five_unless_nothing_else_is_left() {
        let ranked = vec![
            scored("a1", "a", 0.99),
            scored("a2", "a", 0.98),
            scored("a3", "a", 0.97),
            scored("b1", "b", 0.5),
            scored("c1", "c", 0.4),
        ];
        let page = rerank(ranked, Vec::new(), 5);
        let authors: Vec<&str> = page.iter().map(|item| item.author_id.as_str()).collect();
        assert_eq!(authors, vec!["a", "b", "c", "a", "a"]);
    }

    #[test]
    fn one_slot_in_ten_explores_fresh_videos() {
        let ranked: Vec<Scored> =
            (0..30).map(|n| scored(&format!("r{n}"), &format!("ra{n}"), 1.0 - n as f64 / 100.0)).collect();
        let fresh: Vec<Scored> = (0..5).map(|n| scored(&format!("f{n}"), &format!("fa{n}"), 0.0)).collect();
        let page = rerank(ranked, fresh, 20);
        let explored: Vec<usize> =
            page.iter().enumerate().filter(|(_, item)| item.video_id.starts_with('f')).map(|(i, _)| i).collect();
        assert_eq!(explored, vec![3, 13]);
    }
}
