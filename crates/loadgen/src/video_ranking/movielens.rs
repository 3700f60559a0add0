//! Ranking quality on real data: MovieLens-100k replayed through the For You learner, in
//! time order, event by event, against most-popular and `implicit`'s BPR and ALS trained
//! offline on the same split in the same run.
//!
//! The data ships inside the `recbole` wheel on PyPI and its licence forbids
//! redistribution, so it is fetched here, at benchmark time, into `target/movielens/`
//! (`pip download recbole==1.2.1 --no-deps`), with a virtualenv for `implicit` beside it
//! (`target/movielens-venv`); nothing of it is committed. `scripts/bench_movielens.py`
//! extracts the two files and trains the baselines.
//!
//! - **Interactions:** every rating is an interaction (the person watched the movie),
//!   whatever its value, for every method alike.
//! - **Split:** each user's ratings in time order (timestamp, then item id); the last
//!   `--holdout` are the test set, the rest the training stream.
//! - **Plaza:** movies are ready videos (one author each, their genres as hashtags, the
//!   release year as the publication date), users are users, on a fresh database. Each
//!   training rating becomes one `VideoHandle::record_view` of the whole video (completed),
//!   and with `--movielens-likes` a rating of 4 or 5 also a `like`; the stream is replayed
//!   in global time order in chunks of [`CHUNK`] events, each chunk's users split over
//!   `--concurrency` lanes (one user's events stay in order in one lane).
//! - **Ranked:** for every test user, the real `for_you` first page of 10, and the same
//!   scorer over every unseen video (`bench_support::rank_every_unseen`), because For
//!   You's sources retrieve only a few hundred of the 1,682 candidates. Everything the
//!   user rated in training is excluded for every method.
//! - **Metrics:** one function ([`ndcg_and_recall`]) for every method's top 10.

use super::*;
use plaza_video::bench_support::rank_every_unseen;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Events replayed between two points where every lane has caught up.
const CHUNK: usize = 1_000;
const TOP: usize = 10;
/// Each movie is a one-minute video, watched to the end.
const DURATION_MS: i64 = 60_000;
const RECBOLE: &str = "recbole==1.2.1";
const IMPLICIT: &str = "implicit==0.7.3";

#[derive(Debug, Clone, Copy)]
struct Rating {
    user: u32,
    item: u32,
    rating: f32,
    timestamp: i64,
}

struct Movie {
    genres: Vec<String>,
    release_year: i32,
}

struct Split {
    /// In global time order.
    train: Vec<Rating>,
    test: HashMap<u32, HashSet<u32>>,
    seen: HashMap<u32, HashSet<u32>>,
}

struct Paths {
    venv: PathBuf,
    data: PathBuf,
    script: PathBuf,
}

/// One method's result.
struct Scored {
    method: String,
    ndcg: f64,
    recall: f64,
    seconds: f64,
    note: String,
}

pub(super) async fn movielens(options: &Options, backend: &str) -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let paths = Paths {
        venv: workspace.join("target/movielens-venv"),
        data: workspace.join("target/movielens"),
        script: workspace.join("scripts/bench_movielens.py"),
    };
    prepare(&paths)?;
    let ratings = read_ratings(&paths.data.join("ml-100k/ml-100k.inter"))?;
    let movies = read_movies(&paths.data.join("ml-100k/ml-100k.item"))?;
    let split = split(ratings, options.holdout);
    let split_dir = paths.data.join("split");
    write_split(&split_dir, &split)?;
    let users = split.seen.len();
    let test_items: usize = split.test.values().map(HashSet::len).sum();
    eprintln!(
        "movielens: {users} users, {} movies, {} training events, {test_items} held out (last {} each)",
        movies.len(),
        split.train.len(),
        options.holdout
    );

    let mut results = Vec::new();
    let started = Instant::now();
    let popular = most_popular(&split);
    let (ndcg, recall) = mean_metrics(&split, &popular);
    results.push(Scored {
        method: "most-popular (training count)".into(),
        ndcg,
        recall,
        seconds: started.elapsed().as_secs_f64(),
        note: String::new(),
    });

    let plaza = replay_through_plaza(options, &split, &movies).await?;
    results.extend(plaza);

    let out = split_dir.join("implicit.json");
    let python = paths.venv.join("bin/python");
    run_checked(Command::new(&python).arg(&paths.script).arg("train").arg(&split_dir).arg(&out))?;
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    for (kind, name) in [("bpr", "`implicit` BPR (offline)"), ("als", "`implicit` ALS (offline)")] {
        let entry = &report[kind];
        let mut top: HashMap<u32, Vec<u32>> = HashMap::new();
        if let Some(map) = entry["top"].as_object() {
            for (user, items) in map {
                let items = items.as_array().map(|list| list.iter().filter_map(|i| i.as_u64()).map(|i| i as u32));
                top.insert(user.parse()?, items.map(Iterator::collect).unwrap_or_default());
            }
        }
        let (ndcg, recall) = mean_metrics(&split, &top);
        results.push(Scored {
            method: name.into(),
            ndcg,
            recall,
            seconds: entry["fit_seconds"].as_f64().unwrap_or(0.0) + entry["recommend_seconds"].as_f64().unwrap_or(0.0),
            note: format!(
                "{} (chosen on validation from {} in {:.0} s)",
                entry["params"],
                entry["grid"].as_array().map_or(0, Vec::len),
                entry["tuning_seconds"].as_f64().unwrap_or(0.0)
            ),
        });
    }
    print_table(backend, options, &split, &results);
    Ok(())
}

/// The virtualenv with `implicit`, the recbole wheel and the two files out of it; each
/// step only if its result is missing.
fn prepare(paths: &Paths) -> anyhow::Result<()> {
    std::fs::create_dir_all(&paths.data)?;
    let python = paths.venv.join("bin/python");
    if !python.exists() {
        run_checked(Command::new("python3").arg("-m").arg("venv").arg(&paths.venv))?;
    }
    let has_implicit = Command::new(&python).args(["-c", "import implicit"]).output()?.status.success();
    if !has_implicit {
        run_checked(Command::new(&python).args(["-m", "pip", "install", "--quiet", IMPLICIT]))?;
    }
    let wheel = paths.data.join("recbole-1.2.1-py3-none-any.whl");
    if !wheel.exists() {
        run_checked(
            Command::new(&python)
                .args(["-m", "pip", "download", "--quiet", RECBOLE, "--no-deps", "-d"])
                .arg(&paths.data),
        )?;
    }
    let extracted = paths.data.join("ml-100k");
    if !extracted.join("ml-100k.inter").exists() || !extracted.join("ml-100k.item").exists() {
        run_checked(Command::new(&python).arg(&paths.script).arg("extract").arg(&wheel).arg(&extracted))?;
    }
    Ok(())
}

fn run_checked(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status()?;
    anyhow::ensure!(status.success(), "{command:?} failed: {status}");
    Ok(())
}

fn read_ratings(path: &Path) -> anyhow::Result<Vec<Rating>> {
    let text = std::fs::read_to_string(path)?;
    let mut ratings = Vec::new();
    for line in text.lines().skip(1).filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        anyhow::ensure!(fields.len() >= 4, "{}: {line:?}", path.display());
        ratings.push(Rating {
            user: fields[0].parse()?,
            item: fields[1].parse()?,
            rating: fields[2].parse()?,
            timestamp: fields[3].parse::<f64>()? as i64,
        });
    }
    Ok(ratings)
}

/// Movie id → genres (lower-case letters only: `Children's` is `childrens`) and year.
fn read_movies(path: &Path) -> anyhow::Result<HashMap<u32, Movie>> {
    let text = std::fs::read_to_string(path)?;
    let mut movies = HashMap::new();
    for line in text.lines().skip(1).filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let genres = fields
            .get(3)
            .map(|class| {
                class
                    .split_whitespace()
                    .map(|genre| genre.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_lowercase())
                    .filter(|genre| !genre.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let release_year = fields.get(2).and_then(|year| year.trim().parse().ok()).unwrap_or(1900);
        movies.insert(fields[0].parse()?, Movie { genres, release_year });
    }
    Ok(movies)
}

/// Each user's last `holdout` ratings (timestamp, then item id) are the test set.
fn split(mut ratings: Vec<Rating>, holdout: usize) -> Split {
    ratings.sort_by_key(|r| (r.user, r.timestamp, r.item));
    let mut train = Vec::with_capacity(ratings.len());
    let mut test: HashMap<u32, HashSet<u32>> = HashMap::new();
    let mut seen: HashMap<u32, HashSet<u32>> = HashMap::new();
    for own in ratings.chunk_by(|a, b| a.user == b.user) {
        let cut = own.len().saturating_sub(holdout).max(1).min(own.len());
        train.extend_from_slice(&own[..cut]);
        seen.insert(own[0].user, own[..cut].iter().map(|r| r.item).collect());
        test.insert(own[0].user, own[cut..].iter().map(|r| r.item).collect());
    }
    test.retain(|_, items| !items.is_empty());
    train.sort_by_key(|r| (r.timestamp, r.user, r.item));
    Split { train, test, seen }
}

fn write_split(dir: &Path, split: &Split) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir)?;
    let mut train = String::new();
    for r in &split.train {
        writeln!(train, "{}\t{}\t{}\t{}", r.user, r.item, r.timestamp, r.rating)?;
    }
    std::fs::write(dir.join("train.tsv"), train)?;
    let mut test = String::new();
    let mut users: Vec<&u32> = split.test.keys().collect();
    users.sort();
    for user in users {
        let mut items: Vec<&u32> = split.test[user].iter().collect();
        items.sort();
        for item in items {
            writeln!(test, "{user}\t{item}\t0\t0")?;
        }
    }
    std::fs::write(dir.join("test.tsv"), test)?;
    Ok(())
}

/// NDCG@10 and Recall@10 of one ranked list against the held-out items: binary gains,
/// the ideal DCG of min(held out, 10) hits at the top, recall over everything held out.
fn ndcg_and_recall(ranked: &[u32], held_out: &HashSet<u32>) -> (f64, f64) {
    if held_out.is_empty() {
        return (0.0, 0.0);
    }
    let mut dcg = 0.0;
    let mut hits = 0usize;
    for (rank, item) in ranked.iter().take(TOP).enumerate() {
        if held_out.contains(item) {
            dcg += 1.0 / ((rank + 2) as f64).log2();
            hits += 1;
        }
    }
    let ideal: f64 = (0..held_out.len().min(TOP)).map(|rank| 1.0 / ((rank + 2) as f64).log2()).sum();
    (dcg / ideal, hits as f64 / held_out.len() as f64)
}

/// The means over every test user (a user missing from `top` scores 0).
fn mean_metrics(split: &Split, top: &HashMap<u32, Vec<u32>>) -> (f64, f64) {
    let (mut ndcg, mut recall) = (0.0, 0.0);
    for (user, held_out) in &split.test {
        let ranked = top.get(user).map(Vec::as_slice).unwrap_or(&[]);
        let (n, r) = ndcg_and_recall(ranked, held_out);
        ndcg += n;
        recall += r;
    }
    let users = split.test.len().max(1) as f64;
    (ndcg / users, recall / users)
}

/// The ten items rated most often in training that the user has not rated, ties by id.
fn most_popular(split: &Split) -> HashMap<u32, Vec<u32>> {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for r in &split.train {
        *counts.entry(r.item).or_default() += 1;
    }
    let mut order: Vec<(u32, usize)> = counts.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    split
        .test
        .keys()
        .map(|user| {
            let seen = &split.seen[user];
            (*user, order.iter().map(|(item, _)| *item).filter(|item| !seen.contains(item)).take(TOP).collect())
        })
        .collect()
}

/// Seeds the movies and users, replays the training stream through `record_view` (and
/// `like`), then ranks for every test user with `for_you` and with the scorer over the
/// whole catalogue.
async fn replay_through_plaza(
    options: &Options,
    split: &Split,
    movies: &HashMap<u32, Movie>,
) -> anyhow::Result<Vec<Scored>> {
    let (_data_dir, _config, store, services) = crate::server::in_process(options.database_url.clone()).await?;
    let mut items: Vec<u32> = movies.keys().copied().collect();
    items.sort();
    let mut user_ids: Vec<u32> = split.seen.keys().copied().collect();
    user_ids.sort();
    let people = seed_users(&services, items.len() + user_ids.len()).await?;
    let (authors, viewers) = people.split_at(items.len());
    let seeds: Vec<SeedVideo> = items
        .iter()
        .zip(authors)
        .map(|(item, author)| {
            let movie = &movies[item];
            // Published on 1 January of its release year; the id orders one year's movies.
            let year_ms = (i64::from(movie.release_year) - 1970) * 31_556_952_000;
            SeedVideo {
                author_id: author.id.clone(),
                hashtags: movie.genres.clone(),
                duration_ms: DURATION_MS,
                created_at_ms: year_ms + i64::from(*item),
            }
        })
        .collect();
    let video_ids = insert_ready_videos(&store, &seeds).await?;
    let video_of: HashMap<u32, String> = items.iter().copied().zip(video_ids.iter().cloned()).collect();
    let item_of: HashMap<String, u32> = video_of.iter().map(|(item, id)| (id.clone(), *item)).collect();
    let user_of: HashMap<u32, User> = user_ids.iter().copied().zip(viewers.iter().cloned()).collect();

    let replay_started = Instant::now();
    let lanes_count = options.concurrency.max(1);
    for (index, chunk) in split.train.chunks(CHUNK).enumerate() {
        let mut lanes: Vec<Vec<Rating>> = vec![Vec::new(); lanes_count];
        for rating in chunk {
            lanes[rating.user as usize % lanes_count].push(*rating);
        }
        let work = lanes.into_iter().map(|lane| {
            let (feed, user_of, video_of) = (&services.video, &user_of, &video_of);
            async move {
                for rating in lane {
                    let (me, video) = (&user_of[&rating.user], &video_of[&rating.item]);
                    feed.record_view(me, video, DURATION_MS, true, 0).await?;
                    if options.movielens_likes && rating.rating >= 4.0 {
                        feed.like(me, video).await?;
                    }
                }
                anyhow::Ok(())
            }
        });
        futures_util::future::try_join_all(work).await?;
        if (index + 1) % 10 == 0 {
            let done = (index + 1) * CHUNK;
            let seconds = replay_started.elapsed().as_secs_f64();
            eprintln!("movielens: {done} events replayed in {seconds:.0} s ({:.0}/s)", done as f64 / seconds);
        }
    }
    let replay_seconds = replay_started.elapsed().as_secs_f64();
    eprintln!(
        "movielens: replayed {} events in {replay_seconds:.0} s; scorer {:?}",
        split.train.len(),
        services.video.weights()
    );

    let limit = PageLimit::parse(Some(TOP as i64)).map_err(anyhow::Error::msg)?;
    let mut feed_top: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut all_top: HashMap<u32, Vec<u32>> = HashMap::new();
    let (mut feed_seconds, mut all_seconds) = (0.0, 0.0);
    for user in split.test.keys() {
        let me = &user_of[user];
        let at = Instant::now();
        let page = services.video.for_you(me, limit, None).await?;
        feed_seconds += at.elapsed().as_secs_f64();
        feed_top.insert(*user, page.items.iter().filter_map(|item| item_of.get(&item.video.id).copied()).collect());
        let at = Instant::now();
        let ranked = rank_every_unseen(&services.video, me, TOP).await?;
        all_seconds += at.elapsed().as_secs_f64();
        all_top.insert(*user, ranked.iter().filter_map(|id| item_of.get(id).copied()).collect());
    }
    let signals = if options.movielens_likes { "views and likes" } else { "views" };
    let mut results = Vec::new();
    for (method, top, seconds) in [
        (format!("Plaza For You (`for_you`, first page), online from {signals}"), &feed_top, feed_seconds),
        (format!("Plaza's scorer over every unseen video, online from {signals}"), &all_top, all_seconds),
    ] {
        let (ndcg, recall) = mean_metrics(split, top);
        results.push(Scored {
            method,
            ndcg,
            recall,
            seconds: replay_seconds + seconds,
            note: format!("replay {replay_seconds:.0} s + ranking {seconds:.1} s"),
        });
    }
    Ok(results)
}

fn print_table(backend: &str, options: &Options, split: &Split, results: &[Scored]) {
    let bpr = results.iter().find(|r| r.method.contains("BPR")).map_or(f64::NAN, |r| r.ndcg);
    let bpr_recall = results.iter().find(|r| r.method.contains("BPR")).map_or(f64::NAN, |r| r.recall);
    println!(
        "\nMovieLens-100k on {backend}: {} test users, last {} ratings each held out, {} training events\n",
        split.test.len(),
        options.holdout,
        split.train.len()
    );
    println!("| method | NDCG@10 | Recall@10 | NDCG ÷ BPR | Recall ÷ BPR | time | notes |");
    println!("|---|---|---|---|---|---|---|");
    for r in results {
        println!(
            "| {} | {:.4} | {:.4} | {:.2}× | {:.2}× | {:.1} s | {} |",
            r.method,
            r.ndcg,
            r.recall,
            r.ndcg / bpr,
            r.recall / bpr_recall,
            r.seconds,
            r.note
        );
    }
}
