//! `plaza-bench video-ranking`: how good and how fast the For You feed is, in-process.
//!
//! **Ranking quality.** A simulator with hidden preferences: topics (hashtags), authors
//! with one or two topics each, a catalogue of ready videos (`plaza_video::bench_support`)
//! spread over the last week, and simulated users with a latent taste (a Dirichlet draw
//! over the topics) and a few favourite authors. A user's reaction to a video (skip,
//! partial watch, completion, replays, like, sometimes not-interested) is drawn from how
//! well it matches their hidden taste, with a random stream seeded by (user, video), so
//! every policy meets exactly the same reactions. Sessions run in rounds (every user one
//! session per round, back to back; the server's clock is real); a session is up to
//! `--pages` pages of ten, and the user leaves after four quick skips in a row, so a
//! better ranking earns longer sessions. Plaza's For You is driven through
//! `VideoHandle::{for_you, record_view, like, not_interested}`; the baselines (random,
//! most-popular by views so far in their own run, chronological) are computed here from
//! the same catalogue and the same simulated users, each in a world of its own, and an
//! oracle that knows the hidden tastes gives the ceiling. Midway, a few fresh videos are
//! uploaded, and the views each gets in the next round (one session per user) is counted.
//!
//! **Latency at scale.** A catalogue of `--scale-videos` videos and `--scale-users`
//! users, each with `--scale-views` views recorded through `record_view` (videos drawn
//! from their taste); some users follow a few authors. Then `for_you` (first page of 10),
//! interleaved with the baselines `VideoHandle::video` by id and `following_feed`, one
//! call at a time, and `for_you` again from several concurrent callers.
//!
//! **On real data** (`--part movielens`, `movielens.rs`): MovieLens-100k replayed through
//! the same learner in time order, against most-popular and `implicit`'s BPR and ALS.
//!
//! Users (authors and viewers) are seeded with `crate::wallet::seed` (SQL rows; argon2 for
//! thousands of users would take minutes).

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use plaza_accounts::User;
use plaza_kernel::{PageLimit, Timestamp};
use plaza_video::bench_support::{insert_ready_videos, SeedVideo};
use plaza_video::VideoHandle;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// A postgres:// URL of an empty database; SQLite in a temporary directory if unset.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Which part to run (with --database-url, one part per fresh database).
    #[arg(long, value_enum, default_value_t = Part::Both)]
    pub part: Part,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Topics (hashtags) of the simulated catalogue.
    #[arg(long, default_value_t = 20)]
    pub topics: usize,
    /// Authors, each with one or two topics.
    #[arg(long, default_value_t = 200)]
    pub authors: usize,
    /// Videos in the simulated catalogue, spread over the last week.
    #[arg(long, default_value_t = 3_000)]
    pub videos: usize,
    /// Simulated users with hidden tastes.
    #[arg(long, default_value_t = 300)]
    pub users: usize,
    /// Rounds: every user has one session per round.
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// Pages of 10 per session at most.
    #[arg(long, default_value_t = 3)]
    pub pages: usize,
    /// Fresh uploads added before the middle round.
    #[arg(long, default_value_t = 20)]
    pub fresh: usize,
    /// Users (or callers) driven at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Videos in the latency catalogue.
    #[arg(long, default_value_t = 20_000)]
    pub scale_videos: usize,
    /// Users in the latency run.
    #[arg(long, default_value_t = 2_000)]
    pub scale_users: usize,
    /// Views each of those users records first, through record_view.
    #[arg(long, default_value_t = 3)]
    pub scale_views: usize,
    /// Sequential calls of each kind timed.
    #[arg(long, default_value_t = 1_000)]
    pub requests: usize,
    /// MovieLens: each user's last ratings held out as the test set.
    #[arg(long, default_value_t = 5)]
    pub holdout: usize,
    /// MovieLens: a rating of 4 or 5 is also a like for Plaza (the baselines see only
    /// that the movie was rated).
    #[arg(long)]
    pub movielens_likes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Quality,
    Scale,
    /// Both of the above.
    Both,
    /// MovieLens-100k replayed in time order, against most-popular and `implicit`'s BPR
    /// and ALS (downloads the data and a virtualenv under `target/`; not in `both`).
    Movielens,
}

const PAGE: usize = 10;
/// Quick skips in a row after which a simulated user leaves the session.
const PATIENCE: usize = 4;
const DAY_MS: i64 = 86_400_000;

pub async fn run(options: Options) -> anyhow::Result<()> {
    let backend = if options.database_url.is_some() { "postgres" } else { "sqlite" };
    if options.part == Part::Movielens {
        return movielens(&options, backend).await;
    }
    if matches!(options.part, Part::Quality | Part::Both) {
        quality(&options, backend).await?;
    }
    if matches!(options.part, Part::Scale | Part::Both) {
        anyhow::ensure!(
            options.part != Part::Both || options.database_url.is_none(),
            "with --database-url, run --part quality and --part scale on two fresh databases"
        );
        scale(&options, backend).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The simulated world.

/// splitmix64.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn float(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn normal(&mut self) -> f64 {
        let u = self.float().max(1e-12);
        let v = self.float();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Marsaglia–Tsang.
    fn gamma(&mut self, alpha: f64) -> f64 {
        if alpha < 1.0 {
            return self.gamma(alpha + 1.0) * self.float().max(1e-12).powf(1.0 / alpha);
        }
        let d = alpha - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.float().max(1e-12);
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[derive(Clone)]
struct SimVideo {
    author: usize,
    topics: Vec<usize>,
    duration_ms: i64,
    created_at_ms: i64,
}

struct SimUser {
    /// Sums to 1 over the topics.
    taste: Vec<f64>,
    taste_max: f64,
    favourites: HashSet<usize>,
}

struct World {
    topic_names: Vec<String>,
    author_topics: Vec<Vec<usize>>,
    videos: Vec<SimVideo>,
    users: Vec<SimUser>,
    seed: u64,
}

impl World {
    fn new(seed: u64, topics: usize, authors: usize, videos: usize, users: usize, now_ms: i64) -> Self {
        let mut rng = Rng(seed);
        let topic_names = (0..topics).map(|n| format!("topic{n:02}")).collect();
        let author_topics: Vec<Vec<usize>> = (0..authors)
            .map(|_| {
                let first = rng.below(topics);
                let mut own = vec![first];
                if rng.float() < 0.5 {
                    let second = rng.below(topics);
                    if second != first {
                        own.push(second);
                    }
                }
                own
            })
            .collect();
        let mut world = World { topic_names, author_topics, videos: Vec::new(), users: Vec::new(), seed };
        for _ in 0..videos {
            let created_at_ms = now_ms - 60_000 - (rng.float() * 7.0 * DAY_MS as f64) as i64;
            let video = world.make_video(&mut rng, created_at_ms);
            world.videos.push(video);
        }
        for _ in 0..users {
            let raw: Vec<f64> = (0..topics).map(|_| rng.gamma(0.3)).collect();
            let total: f64 = raw.iter().sum::<f64>().max(1e-12);
            let taste: Vec<f64> = raw.iter().map(|x| x / total).collect();
            let taste_max = taste.iter().copied().fold(1e-12, f64::max);
            // Three favourite authors, drawn toward the user's topics.
            let mut favourites = HashSet::new();
            for _ in 0..200 {
                if favourites.len() == 3 {
                    break;
                }
                let author = rng.below(authors);
                let fit = world.author_topics[author].iter().map(|t| taste[*t]).sum::<f64>() / taste_max;
                if rng.float() < fit.max(0.02) {
                    favourites.insert(author);
                }
            }
            world.users.push(SimUser { taste, taste_max, favourites });
        }
        world
    }

    fn make_video(&self, rng: &mut Rng, created_at_ms: i64) -> SimVideo {
        let author = rng.below(self.author_topics.len());
        let own = &self.author_topics[author];
        let topics = if own.len() == 2 && rng.float() < 0.5 { own.clone() } else { vec![own[rng.below(own.len())]] };
        SimVideo { author, topics, duration_ms: 10_000 + rng.below(50_001) as i64, created_at_ms }
    }

    fn seed_video(&self, video: &SimVideo, author_ids: &[String]) -> SeedVideo {
        SeedVideo {
            author_id: author_ids[video.author].clone(),
            hashtags: video.topics.iter().map(|t| self.topic_names[*t].clone()).collect(),
            duration_ms: video.duration_ms,
            created_at_ms: video.created_at_ms,
        }
    }

    /// The hidden relevance of a video to a user, 0–1: how well its topics match the
    /// user's taste (1 for their favourite topic), plus 0.4 for a favourite author.
    fn relevance(&self, user: usize, video: usize) -> f64 {
        let taste = &self.users[user];
        let v = &self.videos[video];
        let topic = v.topics.iter().map(|t| taste.taste[*t]).sum::<f64>() / v.topics.len() as f64 / taste.taste_max;
        let favourite = if taste.favourites.contains(&v.author) { 0.4 } else { 0.0 };
        (topic + favourite).min(1.0)
    }

    /// How `user` watches `video`: the same every time and under every policy.
    fn react(&self, user: usize, video: usize) -> Reaction {
        let mut rng = Rng(self.seed ^ (user as u64).wrapping_mul(0xA24B_AED4_963E_E407) ^ (video as u64) << 1);
        rng.next();
        let relevance = self.relevance(user, video);
        let duration_ms = self.videos[video].duration_ms;
        let duration_s = duration_ms as f64 / 1000.0;
        let completed = rng.float() < sigmoid(6.0 * relevance - 3.5 - 0.02 * (duration_s - 30.0));
        if completed {
            let replays = if rng.float() < 0.4 * relevance * relevance { 1 + i64::from(rng.float() < 0.3) } else { 0 };
            let like = rng.float() < 0.5 * relevance;
            return Reaction {
                watched_ms: duration_ms * (1 + replays),
                completed,
                replays,
                like,
                not_interested: false,
                quick_skip: false,
            };
        }
        if rng.float() < 1.0 - relevance {
            let not_interested = relevance < 0.15 && rng.float() < 0.3;
            return Reaction {
                watched_ms: 300 + rng.below(1_600) as i64,
                completed,
                replays: 0,
                like: false,
                not_interested,
                quick_skip: true,
            };
        }
        let fraction = 0.2 + 0.75 * rng.float();
        Reaction {
            watched_ms: (duration_ms as f64 * fraction) as i64,
            completed,
            replays: 0,
            like: false,
            not_interested: false,
            quick_skip: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Reaction {
    watched_ms: i64,
    completed: bool,
    replays: i64,
    like: bool,
    not_interested: bool,
    quick_skip: bool,
}

/// What one policy's run adds up to.
#[derive(Default)]
struct Tally {
    sessions: u64,
    watch_ms: u64,
    views: u64,
    completions: u64,
    likes: u64,
    not_interested: u64,
    pages: u64,
    ndcg_sum: f64,
    served: HashSet<usize>,
    /// Views of the fresh uploads in the round after they were added.
    fresh_views: u64,
    fresh_reached: HashSet<usize>,
}

impl Tally {
    fn merge(&mut self, other: SessionResult, fresh: &HashSet<usize>, count_fresh: bool) {
        self.sessions += 1;
        self.watch_ms += other.watch_ms;
        self.views += other.viewed.len() as u64;
        self.completions += other.completions;
        self.likes += other.likes;
        self.not_interested += other.not_interested;
        self.pages += other.pages;
        self.ndcg_sum += other.ndcg_sum;
        self.served.extend(other.served.iter().copied());
        if count_fresh {
            for video in other.viewed.iter().filter(|video| fresh.contains(video)) {
                self.fresh_views += 1;
                self.fresh_reached.insert(*video);
            }
        }
    }

    fn watch_s(&self) -> f64 {
        self.watch_ms as f64 / 1000.0 / self.sessions.max(1) as f64
    }

    fn coverage(&self, catalogue: usize) -> f64 {
        self.served.len() as f64 / catalogue.max(1) as f64
    }
}

#[derive(Default)]
struct SessionResult {
    watch_ms: u64,
    viewed: Vec<usize>,
    completions: u64,
    likes: u64,
    not_interested: u64,
    pages: u64,
    ndcg_sum: f64,
    served: Vec<usize>,
}

/// What one user has seen, in one policy's world, and the catalogue by their hidden
/// relevance (for the ideal page of NDCG).
struct UserState {
    seen: HashSet<usize>,
    by_relevance: Vec<usize>,
}

impl UserState {
    fn new(world: &World, user: usize, available: usize) -> Self {
        let mut state = UserState { seen: HashSet::new(), by_relevance: Vec::new() };
        state.resort(world, user, available);
        state
    }

    fn resort(&mut self, world: &World, user: usize, available: usize) {
        let relevance: Vec<f64> = (0..available).map(|video| world.relevance(user, video)).collect();
        let mut order: Vec<usize> = (0..available).collect();
        order.sort_by(|a, b| relevance[*b].total_cmp(&relevance[*a]).then(a.cmp(b)));
        self.by_relevance = order;
    }

    /// The best `PAGE` videos not seen (nor served in this session).
    fn ideal(&self, session: &HashSet<usize>) -> Vec<usize> {
        self.by_relevance
            .iter()
            .copied()
            .filter(|video| !self.seen.contains(video) && !session.contains(video))
            .take(PAGE)
            .collect()
    }
}

fn dcg(world: &World, user: usize, page: &[usize]) -> f64 {
    page.iter().enumerate().map(|(rank, video)| world.relevance(user, *video) / (rank as f64 + 2.0).log2()).sum()
}

fn ndcg(world: &World, user: usize, page: &[usize], ideal: &[usize]) -> f64 {
    let best = dcg(world, user, ideal);
    if best <= 0.0 {
        0.0
    } else {
        dcg(world, user, page) / best
    }
}

// ---------------------------------------------------------------------------------------
// The baselines, in memory.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Baseline {
    Random,
    Popular,
    Chronological,
    Oracle,
}

impl Baseline {
    fn name(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Popular => "most-popular (views so far)",
            Self::Chronological => "chronological (newest first)",
            Self::Oracle => "oracle (knows the hidden tastes; ceiling)",
        }
    }
}

struct BaselineWorld<'a> {
    world: &'a World,
    policy: Baseline,
    available: usize,
    views: Vec<u64>,
    /// A fixed random rank to break ties among equally popular videos.
    tie: Vec<u64>,
    rng: Rng,
    users: Vec<UserState>,
}

impl<'a> BaselineWorld<'a> {
    fn new(world: &'a World, policy: Baseline, available: usize) -> Self {
        let mut rng = Rng(world.seed ^ 0x5151);
        let tie = (0..world.videos.len()).map(|_| rng.next()).collect();
        let users = (0..world.users.len()).map(|user| UserState::new(world, user, available)).collect();
        BaselineWorld { world, policy, available, views: vec![0; world.videos.len()], tie, rng, users }
    }

    fn add_fresh(&mut self, available: usize) {
        self.available = available;
        for (user, state) in self.users.iter_mut().enumerate() {
            state.resort(self.world, user, available);
        }
    }

    fn page(&mut self, user: usize, session: &HashSet<usize>) -> Vec<usize> {
        let state = &self.users[user];
        let open = |video: &usize| !state.seen.contains(video) && !session.contains(video);
        match self.policy {
            Baseline::Oracle => state.ideal(session),
            Baseline::Random => {
                let mut page = Vec::new();
                for _ in 0..PAGE * 50 {
                    if page.len() == PAGE {
                        break;
                    }
                    let video = self.rng.below(self.available);
                    if open(&video) && !page.contains(&video) {
                        page.push(video);
                    }
                }
                page
            }
            Baseline::Popular => {
                let mut order: Vec<usize> = (0..self.available).filter(open).collect();
                let (views, tie) = (&self.views, &self.tie);
                order.sort_by(|a, b| views[*b].cmp(&views[*a]).then(tie[*a].cmp(&tie[*b])));
                order.truncate(PAGE);
                order
            }
            Baseline::Chronological => {
                let mut order: Vec<usize> = (0..self.available).filter(open).collect();
                let videos = &self.world.videos;
                order.sort_by(|a, b| videos[*b].created_at_ms.cmp(&videos[*a].created_at_ms).then(a.cmp(b)));
                order.truncate(PAGE);
                order
            }
        }
    }

    fn session(&mut self, user: usize, pages: usize) -> SessionResult {
        let mut result = SessionResult::default();
        let mut session = HashSet::new();
        let mut skips = 0;
        'pages: for _ in 0..pages {
            let ideal = self.users[user].ideal(&session);
            let page = self.page(user, &session);
            if page.is_empty() {
                break;
            }
            result.pages += 1;
            result.ndcg_sum += ndcg(self.world, user, &page, &ideal);
            session.extend(page.iter().copied());
            result.served.extend(page.iter().copied());
            for video in page {
                let reaction = self.world.react(user, video);
                self.views[video] += 1;
                self.users[user].seen.insert(video);
                add_reaction(&mut result, video, &reaction);
                skips = if reaction.quick_skip { skips + 1 } else { 0 };
                if skips >= PATIENCE {
                    break 'pages;
                }
            }
        }
        result
    }
}

fn add_reaction(result: &mut SessionResult, video: usize, reaction: &Reaction) {
    result.watch_ms += reaction.watched_ms as u64;
    result.viewed.push(video);
    result.completions += u64::from(reaction.completed);
    result.likes += u64::from(reaction.like);
    result.not_interested += u64::from(reaction.not_interested);
}

// ---------------------------------------------------------------------------------------
// Plaza's For You, through the video service.

struct Plaza {
    video: VideoHandle,
    users: Vec<User>,
    ids: HashMap<String, usize>,
    /// Pages whose cursor the service refused.
    refused: std::sync::atomic::AtomicU64,
}

async fn plaza_session(
    plaza: &Plaza,
    world: &World,
    user: usize,
    mut state: UserState,
    pages: usize,
    latency: &std::sync::Mutex<Histogram<u64>>,
) -> anyhow::Result<(UserState, SessionResult)> {
    let me = &plaza.users[user];
    let mut result = SessionResult::default();
    let mut session = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut skips = 0;
    let limit = PageLimit::parse(Some(PAGE as i64)).map_err(anyhow::Error::msg)?;
    'pages: for _ in 0..pages {
        let ideal = state.ideal(&session);
        let started = Instant::now();
        let feed = match plaza.video.for_you(me, limit, cursor.as_deref()).await {
            Ok(feed) => feed,
            // The service refuses its own cursor once it carries about 19 ids (it is
            // longer than the 1,024 characters `Cursor::parse_position` accepts): the
            // session goes on from a first page, as a client would have to.
            Err(_) if cursor.is_some() => {
                plaza.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                plaza.video.for_you(me, limit, None).await?
            }
            Err(error) => return Err(error.into()),
        };
        latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .saturating_record(started.elapsed().as_micros() as u64);
        let page: Vec<(String, usize)> = feed
            .items
            .iter()
            .filter_map(|item| plaza.ids.get(&item.video.id).map(|index| (item.video.id.clone(), *index)))
            .collect();
        if page.is_empty() {
            break;
        }
        cursor = feed.next_cursor;
        let indices: Vec<usize> = page.iter().map(|(_, index)| *index).collect();
        result.pages += 1;
        result.ndcg_sum += ndcg(world, user, &indices, &ideal);
        session.extend(indices.iter().copied());
        result.served.extend(indices.iter().copied());
        for (id, video) in page {
            let reaction = world.react(user, video);
            plaza.video.record_view(me, &id, reaction.watched_ms, reaction.completed, reaction.replays).await?;
            if reaction.like {
                plaza.video.like(me, &id).await?;
            }
            if reaction.not_interested {
                plaza.video.not_interested(me, &id).await?;
            }
            state.seen.insert(video);
            add_reaction(&mut result, video, &reaction);
            skips = if reaction.quick_skip { skips + 1 } else { 0 };
            if skips >= PATIENCE {
                break 'pages;
            }
        }
    }
    Ok((state, result))
}

/// Seeds `count` users (for authors and viewers) and returns them in order.
async fn seed_users(services: &plaza_server::app::Services, count: usize) -> anyhow::Result<Vec<User>> {
    let people = crate::wallet::seed(&services.store, count).await?;
    let ids: Vec<String> = people.into_iter().map(|(id, _)| id).collect();
    let mut found: HashMap<String, User> = HashMap::new();
    for chunk in ids.chunks(500) {
        for user in services.accounts.users(chunk).await? {
            found.insert(user.id.clone(), user);
        }
    }
    let users: Vec<User> = ids.iter().filter_map(|id| found.remove(id)).collect();
    anyhow::ensure!(users.len() == count, "seeded {count} users, found {}", users.len());
    Ok(users)
}

async fn quality(options: &Options, backend: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let (_data_dir, _config, store, services) = crate::server::in_process(options.database_url.clone()).await?;
    let now = Timestamp::now().unix_millis();
    let mut world = World::new(options.seed, options.topics, options.authors, options.videos, options.users, now);
    let people = seed_users(&services, options.authors + options.users).await?;
    let author_ids: Vec<String> = people[..options.authors].iter().map(|user| user.id.clone()).collect();
    let users: Vec<User> = people[options.authors..].to_vec();
    let seeds: Vec<SeedVideo> = world.videos.iter().map(|video| world.seed_video(video, &author_ids)).collect();
    let video_ids = insert_ready_videos(&store, &seeds).await?;
    let mut ids: HashMap<String, usize> = video_ids.iter().enumerate().map(|(index, id)| (id.clone(), index)).collect();
    eprintln!(
        "quality: {} topics, {} authors, {} videos, {} users seeded in {:.1} s",
        options.topics,
        options.authors,
        options.videos,
        options.users,
        started.elapsed().as_secs_f64()
    );
    // The fresh uploads, made now so every policy gets the same ones.
    let mut rng = Rng(options.seed ^ 0xF8E5);
    let fresh_videos: Vec<SimVideo> = (0..options.fresh).map(|_| world.make_video(&mut rng, 0)).collect();
    let fresh: HashSet<usize> = (options.videos..options.videos + options.fresh).collect();
    let fresh_round = options.rounds / 2;

    // Plaza's For You.
    let plaza_started = Instant::now();
    let mut tally = Tally::default();
    let latency = std::sync::Mutex::new(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?);
    let mut states: Vec<Option<UserState>> =
        (0..users.len()).map(|user| Some(UserState::new(&world, user, options.videos))).collect();
    let mut plaza = Plaza { video: services.video.clone(), users, ids: HashMap::new(), refused: Default::default() };
    for round in 0..options.rounds {
        if round == fresh_round && options.fresh > 0 {
            let at = Timestamp::now().unix_millis();
            for video in &fresh_videos {
                world.videos.push(SimVideo { created_at_ms: at, ..video.clone() });
            }
            let seeds: Vec<SeedVideo> =
                world.videos[options.videos..].iter().map(|video| world.seed_video(video, &author_ids)).collect();
            for (offset, id) in insert_ready_videos(&store, &seeds).await?.into_iter().enumerate() {
                ids.insert(id, options.videos + offset);
            }
            for (user, state) in states.iter_mut().enumerate() {
                if let Some(state) = state {
                    state.resort(&world, user, world.videos.len());
                }
            }
        }
        plaza.ids = ids.clone();
        let world_ref = &world;
        let plaza_ref = &plaza;
        let latency_ref = &latency;
        let work: Vec<(usize, UserState)> =
            states.iter_mut().enumerate().filter_map(|(user, state)| state.take().map(|state| (user, state))).collect();
        let results: Vec<anyhow::Result<(usize, UserState, SessionResult)>> = futures_util::stream::iter(work)
            .map(|(user, state)| async move {
                let (state, result) =
                    plaza_session(plaza_ref, world_ref, user, state, options.pages, latency_ref).await?;
                Ok((user, state, result))
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
        for outcome in results {
            let (user, state, result) = outcome?;
            states[user] = Some(state);
            tally.merge(result, &fresh, round == fresh_round);
        }
        eprintln!(
            "for you: round {}/{} done, {:.0} s, {} views so far",
            round + 1,
            options.rounds,
            plaza_started.elapsed().as_secs_f64(),
            tally.views
        );
    }
    let plaza_seconds = plaza_started.elapsed().as_secs_f64();
    let weights = services.video.weights();

    // The baselines, in the same run, over the same world.
    let mut rows: Vec<(String, Tally)> = vec![("Plaza For You (`VideoHandle::for_you`)".into(), tally)];
    rows.extend(baseline_tallies(options, &world, &fresh, fresh_round));
    let catalogue = world.videos.len();

    let latency = latency.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    println!(
        "\n{backend}: {} topics, {} authors, {} videos (+{} fresh after round {}), {} users × {} rounds of up to {} pages of {PAGE}; For You ran in {:.0} s ({} concurrent users), `for_you` p50 {:.1} ms, p99 {:.1} ms over {} pages\n",
        options.topics,
        options.authors,
        options.videos,
        options.fresh,
        fresh_round,
        options.users,
        options.rounds,
        options.pages,
        plaza_seconds,
        options.concurrency,
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.len(),
    );
    print_quality_table(options, &rows, catalogue);
    println!("\nthe learnt scorer after the run: {}", weights.to_json());
    println!(
        "For You pages whose cursor `for_you` refused (fetched again without one): {}",
        plaza.refused.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

/// Each baseline's run over the same world, the same rounds and the same fresh videos.
fn baseline_tallies(
    options: &Options,
    world: &World,
    fresh: &HashSet<usize>,
    fresh_round: usize,
) -> Vec<(String, Tally)> {
    let catalogue = world.videos.len();
    let mut rows = Vec::new();
    for policy in [Baseline::Popular, Baseline::Random, Baseline::Chronological, Baseline::Oracle] {
        let mut baseline = BaselineWorld::new(world, policy, options.videos);
        let mut tally = Tally::default();
        for round in 0..options.rounds {
            if round == fresh_round && options.fresh > 0 {
                baseline.add_fresh(catalogue);
            }
            for user in 0..world.users.len() {
                let result = baseline.session(user, options.pages);
                tally.merge(result, fresh, round == fresh_round);
            }
        }
        rows.push((policy.name().to_string(), tally));
    }
    rows
}

/// One row per policy; the ratios are to most-popular, the second row.
fn print_quality_table(options: &Options, rows: &[(String, Tally)], catalogue: usize) {
    println!("| policy | watch time / session | views / session | completion rate | likes | not-interested | NDCG@10 | coverage | fresh: views each in the next {} sessions | fresh reached | watch × most-popular | coverage × most-popular |", options.users);
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let popular_watch = rows[1].1.watch_s();
    let popular_coverage = rows[1].1.coverage(catalogue);
    for (name, tally) in rows {
        println!(
            "| {name} | {:.1} s | {:.1} | {:.1}% | {} | {} | {:.3} | {:.1}% | {:.1} | {}/{} | {:.2}× | {:.2}× |",
            tally.watch_s(),
            tally.views as f64 / tally.sessions.max(1) as f64,
            100.0 * tally.completions as f64 / tally.views.max(1) as f64,
            tally.likes,
            tally.not_interested,
            tally.ndcg_sum / tally.pages.max(1) as f64,
            100.0 * tally.coverage(catalogue),
            tally.fresh_views as f64 / options.fresh.max(1) as f64,
            tally.fresh_reached.len(),
            options.fresh,
            tally.watch_s() / popular_watch.max(1e-9),
            tally.coverage(catalogue) / popular_coverage.max(1e-9),
        );
    }
}

mod movielens;
mod scale;
use movielens::movielens;
use scale::scale;
