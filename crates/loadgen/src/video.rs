//! `plaza-bench video`: the server keeps answering while it transcodes, and the cost of a
//! For You page.
//!
//! Everything goes through HTTP against a release `plaza serve` on 127.0.0.1; only the
//! users (creators and viewers, with a session each) are seeded in the database, as the
//! other benchmarks do. Clips are made by ffmpeg's `lavfi` sources in a temporary
//! directory at start (no media is committed).
//!
//! Transcoding: `GET /me` from `clients` clients for `duration` seconds on an idle server
//! (the baseline), then again right after publishing `transcodes` clips (1280x720 unless `--clip-size`) of
//! `clip_seconds` seconds, which the server re-encodes to its 720p/360p ladder at
//! `PLAZA_VIDEO_TRANSCODE_CONCURRENCY` = `transcode_concurrency`. The window is sampled
//! for ffmpeg children of the server, so the table says how much of it really had a
//! transcode running. Each video's publish → `ready` time is reported.
//!
//! The feed: `plaza_video` has no public way to insert ready videos, so the catalogue is
//! real: one 320x240 H.264/AAC clip (which the transcoder copies) uploaded through tus and
//! published again and again for at most `seed_seconds` (or `feed_videos` videos), by
//! `creators` creators with two of twenty hashtags each. Half the `viewers` then build a
//! history through the API (follows, finished and skipped views, likes); the other half
//! are fresh. Measured from `feed_clients` clients: `GET /feed/for-you?limit=10` for
//! both halves, against `GET /feed/following` and `GET /videos/{id}` in the same run.

use crate::server::{PlazaServer, Target};
use crate::shop::{drive_get, ms, Measured};
use crate::wallet::{seed, wait_ready};
use anyhow::Context;
use reqwest::header::HeaderValue;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub target: Target,
    /// Concurrent clients of GET /me, idle and while transcoding.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Clips published at once for the transcoding run (0 skips that run).
    #[arg(long, default_value_t = 3)]
    pub transcodes: usize,
    /// Length of each of those clips, in seconds.
    #[arg(long, default_value_t = 25)]
    pub clip_seconds: u32,
    /// Their frame size, WIDTHxHEIGHT (1920x1080 for issue 14's speed target).
    #[arg(long, default_value = "1280x720", value_parser = parse_clip_size)]
    pub clip_size: String,
    /// PLAZA_VIDEO_TRANSCODE_CONCURRENCY of the server.
    #[arg(long, default_value_t = 1)]
    pub transcode_concurrency: usize,
    /// Ready videos wanted for the feed runs (seeding also stops at --seed-seconds).
    #[arg(long, default_value_t = 2_000)]
    pub feed_videos: usize,
    /// Seconds at most spent publishing the feed's catalogue.
    #[arg(long, default_value_t = 180)]
    pub seed_seconds: u64,
    /// Creators of the catalogue.
    #[arg(long, default_value_t = 20)]
    pub creators: usize,
    /// Viewers: half build a history through the API, half stay fresh.
    #[arg(long, default_value_t = 100)]
    pub viewers: usize,
    /// Concurrent clients of the feed runs.
    #[arg(long, default_value_t = 16)]
    pub feed_clients: usize,
}

/// The hashtags of the seeded catalogue.
const TAGS: &[&str] = &[
    "cats", "dogs", "cars", "food", "travel", "music", "dance", "tech", "art", "sport", "games", "books", "garden",
    "coffee", "tea", "beach", "city", "night", "rain", "snow",
];

/// Publishers running at once while seeding (each waits for its video to be ready).
const SEEDERS: usize = 8;

/// `WIDTHxHEIGHT` with even sides H.264 can take, up to 4K: it is passed to ffmpeg's lavfi.
fn parse_clip_size(text: &str) -> Result<String, String> {
    let (width, height) = text.split_once('x').ok_or("WIDTHxHEIGHT, such as 1920x1080")?;
    let side = |side: &str| side.parse::<u32>().ok().filter(|n| (16..=4096).contains(n) && n % 2 == 0);
    match (side(width), side(height)) {
        (Some(width), Some(height)) => Ok(format!("{width}x{height}")),
        _ => Err("two even sides from 16 to 4096, such as 1920x1080".into()),
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let backend = options.target.backend();
    anyhow::ensure!(options.creators >= 1 && options.viewers >= 2, "need a creator and two viewers");
    let clips = tempfile::tempdir()?;
    let started = Instant::now();
    let large = if options.transcodes > 0 {
        let source = format!("testsrc2=size={}:rate=30:duration={}", options.clip_size, options.clip_seconds);
        make_clip(clips.path(), "large.mp4", &source, options.clip_seconds, "ultrafast")?
    } else {
        Vec::new()
    };
    let small = make_clip(clips.path(), "small.mp4", "testsrc=size=320x240:rate=25:duration=3", 3, "veryfast")?;
    eprintln!(
        "made a {} s {} clip ({} KiB) and a 3 s 320x240 clip ({} KiB) in {:.1} s",
        options.clip_seconds,
        options.clip_size,
        large.len() / 1024,
        small.len() / 1024,
        started.elapsed().as_secs_f64()
    );

    // Users: creators, viewers, and one account for GET /me and the large uploads.
    let (_data_dir, config, store, _services) = crate::server::in_process(options.target.database_url.clone()).await?;
    let people = seed(&store, 1 + options.creators + options.viewers).await?;
    let me = people[0].clone();
    let creators: Vec<(String, String)> = people[1..=options.creators].to_vec();
    let viewers: Vec<(String, String)> = people[options.creators + 1..].to_vec();
    let concurrency = options.transcode_concurrency.to_string();
    let settings = [("PLAZA_VIDEO_TRANSCODE_CONCURRENCY", concurrency.as_str())];
    let server = PlazaServer::start(&options.target.plaza, Some(&config.database_url), &settings)?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    wait_ready(&client, &server.base).await?;
    let base = server.base.clone();
    let duration = Duration::from_secs(options.duration);

    // 1. GET /me idle, then while transcoding (skipped with --transcodes 0).
    if options.transcodes > 0 {
        transcoding_under_load(&options, backend, &client, &server, &me.1, &creators, &large).await?;
    }

    // 2. The catalogue, then the viewers, then the feeds.
    let started = Instant::now();
    let catalogue = seed_catalogue(&client, &base, &creators, &small, &options).await?;
    let seeding = started.elapsed();
    println!(
        "Catalogue: {} ready videos published through tus in {:.0} s ({:.1} videos/s; a 3 s 320x240 H.264 clip, copied by the transcoder) by {} creators.",
        catalogue.len(),
        seeding.as_secs_f64(),
        catalogue.len() as f64 / seeding.as_secs_f64(),
        options.creators
    );
    let (historied, fresh) = viewers.split_at(viewers.len() / 2);
    let started = Instant::now();
    let actions = build_history(&client, &base, historied, &creators, &catalogue).await?;
    println!(
        "History: {} viewers, {actions} follows, views and likes through the API in {:.0} s; {} fresh viewers.",
        historied.len(),
        started.elapsed().as_secs_f64(),
        fresh.len()
    );
    println!();
    let historied_tokens = Arc::new(historied.iter().map(|(_, token)| token.clone()).collect::<Vec<_>>());
    let fresh_tokens = Arc::new(fresh.iter().map(|(_, token)| token.clone()).collect::<Vec<_>>());
    let all_tokens = Arc::new(viewers.iter().map(|(_, token)| token.clone()).collect::<Vec<_>>());
    let ids = Arc::new(catalogue.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>());
    let clients = options.feed_clients;
    let for_you_path = |_| "/api/v1/feed/for-you?limit=10".to_string();
    let for_you_history = drive_get(&client, &base, &historied_tokens, clients, duration, for_you_path).await?;
    let for_you_fresh = drive_get(&client, &base, &fresh_tokens, clients, duration, for_you_path).await?;
    let following =
        drive_get(&client, &base, &historied_tokens, clients, duration, |_| "/api/v1/feed/following?limit=10".into())
            .await?;
    let single = {
        let ids = ids.clone();
        drive_get(&client, &base, &all_tokens, clients, duration, move |n| {
            format!("/api/v1/videos/{}", ids[(n * 7919) % ids.len()])
        })
        .await?
    };
    let me_run = drive_get(&client, &base, &all_tokens, clients, duration, |_| "/api/v1/me".into()).await?;
    drop(server);
    store.close().await;

    println!(
        "| backend | ready videos | clients | endpoint | requests/s | p50 | p99 | p99 ÷ GET /videos/{{id}} | p99 ÷ GET /feed/following |"
    );
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    let p99 = |measured: &Measured| measured.latency.value_at_quantile(0.99) as f64;
    for (name, measured) in [
        (format!("GET /feed/for-you?limit=10, {} viewers with history", historied.len()), &for_you_history),
        (format!("GET /feed/for-you?limit=10, {} fresh viewers", fresh.len()), &for_you_fresh),
        ("GET /feed/following?limit=10 (baseline; each follows 3 creators)".into(), &following),
        ("GET /videos/{id} (baseline)".into(), &single),
        ("GET /me (floor)".into(), &me_run),
    ] {
        println!(
            "| {backend} | {} | {clients} | {name} | {:.0} | {} | {} | {:.2}× | {:.2}× |",
            catalogue.len(),
            measured.per_second,
            ms(measured.latency.value_at_quantile(0.5)),
            ms(measured.latency.value_at_quantile(0.99)),
            p99(measured) / p99(&single).max(1.0),
            p99(measured) / p99(&following).max(1.0),
        );
    }
    Ok(())
}

/// `GET /me` on the idle server (the baseline), then right after publishing the large
/// clips, with the window sampled for the server's ffmpeg children; and each video's
/// publish → ready time.
async fn transcoding_under_load(
    options: &Options,
    backend: &str,
    client: &reqwest::Client,
    server: &PlazaServer,
    me_token: &str,
    creators: &[(String, String)],
    large: &[u8],
) -> anyhow::Result<()> {
    let (base, duration) = (server.base.clone(), Duration::from_secs(options.duration));
    let me_tokens = Arc::new(vec![me_token.to_string()]);
    let idle = drive_get(client, &base, &me_tokens, options.clients, duration, |_| "/api/v1/me".into()).await?;
    let mut uploaded = Vec::new();
    // By the creators in turn: an author may have only a few videos processing at once.
    for n in 0..options.transcodes {
        let token = creators[n % creators.len()].1.clone();
        uploaded.push((upload(client, &base, &token, large).await?, token));
        eprintln!("uploaded large clip {}/{}", n + 1, options.transcodes);
    }
    let mut published = Vec::new();
    for (n, (upload_id, token)) in uploaded.iter().enumerate() {
        let caption = format!("Large clip {n} #bench");
        published.push((publish(client, &base, token, upload_id, &caption).await?, Instant::now(), token.clone()));
    }
    let watchers: Vec<_> = published
        .iter()
        .map(|(id, at, token)| {
            // Polled by its author: until it is ready, only the author sees it.
            let (client, base, token, id, at) = (client.clone(), base.clone(), token.clone(), id.clone(), *at);
            tokio::spawn(async move {
                let status = settle(&client, &base, &token, &id, Duration::from_millis(100)).await?;
                anyhow::ensure!(status == "ready", "video {id} ended {status}");
                anyhow::Ok((at, Instant::now()))
            })
        })
        .collect();
    // The transcoder polls once a second: give it time to claim the first job.
    let pid = server.pid();
    let claimed_by = Instant::now() + Duration::from_secs(10);
    while ffmpeg_children(pid) == 0 && Instant::now() < claimed_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::task::spawn_blocking(move || {
            let (mut samples, mut busy, mut most) = (0u64, 0u64, 0usize);
            while sampling.load(Ordering::Relaxed) {
                let running = ffmpeg_children(pid);
                samples += 1;
                busy += u64::from(running > 0);
                most = most.max(running);
                std::thread::sleep(Duration::from_millis(100));
            }
            (busy as f64 / samples.max(1) as f64, most)
        })
    };
    let busy = drive_get(client, &base, &me_tokens, options.clients, duration, |_| "/api/v1/me".into()).await?;
    sampling.store(false, Ordering::Relaxed);
    let (covered, most_ffmpeg) = sampler.await?;
    let mut transcoded = Vec::new();
    for watcher in watchers {
        transcoded.push(watcher.await??);
    }
    let first_published = published.iter().map(|(_, at, _)| *at).min().context("no videos")?;

    print_transcoding(options, backend, &idle, &busy, (covered, most_ffmpeg), first_published, &transcoded);
    Ok(())
}

/// The tables of the transcoding run: GET /me idle and busy, and each transcode.
fn print_transcoding(
    options: &Options,
    backend: &str,
    idle: &Measured,
    busy: &Measured,
    (covered, most_ffmpeg): (f64, usize),
    first_published: Instant,
    transcoded: &[(Instant, Instant)],
) {
    println!("| backend | GET /api/v1/me, {} clients, {} s | requests/s | p50 | p99 | ratio of requests/s to idle | ratio of p99 to idle |", options.clients, options.duration);
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, measured) in [
        ("idle (baseline)".to_string(), idle),
        (
            format!(
                "transcoding {} × {} s {} (ffmpeg running {:.0}% of the window, at most {} at once)",
                options.transcodes,
                options.clip_seconds,
                options.clip_size,
                covered * 100.0,
                most_ffmpeg
            ),
            busy,
        ),
    ] {
        println!(
            "| {backend} | {name} | {:.0} | {} | {} | {:.2} | {:.2} |",
            measured.per_second,
            ms(measured.latency.value_at_quantile(0.5)),
            ms(measured.latency.value_at_quantile(0.99)),
            measured.per_second / idle.per_second,
            measured.latency.value_at_quantile(0.99) as f64 / idle.latency.value_at_quantile(0.99).max(1) as f64,
        );
    }
    println!();
    println!(
        "Transcodes ({}-second {} H.264 → 720p + 360p ladder, PLAZA_VIDEO_TRANSCODE_CONCURRENCY={}), published back to back:",
        options.clip_seconds, options.clip_size, options.transcode_concurrency
    );
    println!();
    println!("| video | publish → ready | ready after the first publish | its own transcode (ready − max(publish, previous ready)) |");
    println!("| ---: | ---: | ---: | ---: |");
    let mut previous_ready = first_published;
    let mut order: Vec<_> = transcoded.iter().enumerate().collect();
    order.sort_by_key(|(_, (_, ready))| *ready);
    for (n, (at, ready)) in order {
        let own = ready.duration_since((*at).max(previous_ready));
        println!(
            "| {} | {:.1} s | {:.1} s | {} |",
            n + 1,
            ready.duration_since(*at).as_secs_f64(),
            ready.duration_since(first_published).as_secs_f64(),
            if options.transcode_concurrency == 1 { format!("{:.1} s", own.as_secs_f64()) } else { "—".into() }
        );
        previous_ready = *ready;
    }
    println!();
}

/// Makes a clip with ffmpeg's test sources (H.264/AAC, 4:2:0) and returns its bytes.
fn make_clip(dir: &Path, name: &str, video: &str, seconds: u32, preset: &str) -> anyhow::Result<Vec<u8>> {
    let out = dir.join(name);
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", video, "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args(["-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-y"])
        .arg(&out)
        .status()
        .context("running ffmpeg (is it installed?)")?;
    anyhow::ensure!(status.success(), "ffmpeg could not make {name}");
    Ok(std::fs::read(out)?)
}

/// How many `ffmpeg` processes `parent` has (the server's transcodes), from /proc.
fn ffmpeg_children(parent: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().bytes().all(|byte| byte.is_ascii_digit()))
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
            let Some((head, tail)) = stat.rsplit_once(')') else { return false };
            let is_ffmpeg = head.split_once('(').is_some_and(|(_, comm)| comm == "ffmpeg");
            is_ffmpeg && tail.split_whitespace().nth(1).and_then(|ppid| ppid.parse::<u32>().ok()) == Some(parent)
        })
        .count()
}

fn tus(request: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
    request.bearer_auth(token).header("Tus-Resumable", "1.0.0")
}

/// A tus upload of `bytes` in one PATCH; its id.
async fn upload(client: &reqwest::Client, base: &str, token: &str, bytes: &[u8]) -> anyhow::Result<String> {
    let created = tus(client.post(format!("{base}/api/v1/videos/uploads")), token)
        .header("Upload-Length", bytes.len().to_string())
        .send()
        .await?;
    anyhow::ensure!(created.status() == 201, "creating an upload answered {}: {}", created.status(), {
        created.text().await.unwrap_or_default()
    });
    let location = created
        .headers()
        .get("location")
        .and_then(|value: &HeaderValue| value.to_str().ok())
        .context("no Location")?
        .to_string();
    let sent = tus(client.patch(format!("{base}{location}")), token)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(bytes.to_vec())
        .send()
        .await?;
    anyhow::ensure!(
        sent.status() == 204,
        "PATCH answered {}: {}",
        sent.status(),
        sent.text().await.unwrap_or_default()
    );
    Ok(location.rsplit('/').next().unwrap_or_default().to_string())
}

/// Publishes a finished upload as a public video; its id.
async fn publish(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    upload_id: &str,
    caption: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/api/v1/videos"))
        .bearer_auth(token)
        .json(&json!({"upload_id": upload_id, "caption": caption, "visibility": "public"}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status == 201, "publishing answered {status}: {body}");
    Ok(body["id"].as_str().context("no id")?.to_string())
}

/// Polls until the video is no longer `processing`; its status.
async fn settle(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    every: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let response = client.get(format!("{base}/api/v1/videos/{id}")).bearer_auth(token).send().await?;
        anyhow::ensure!(response.status().is_success(), "GET /videos/{id} answered {}", response.status());
        let body: Value = response.json().await?;
        let status = body["status"].as_str().unwrap_or_default();
        if status != "processing" {
            return Ok(status.to_string());
        }
        anyhow::ensure!(Instant::now() < deadline, "video {id} still processing after 15 minutes");
        tokio::time::sleep(every).await;
    }
}

/// The caption's two hashtags of the `n`th seeded video.
fn tags_of(n: usize) -> (&'static str, &'static str) {
    let first = n % TAGS.len();
    let second = (first + 1 + (n / TAGS.len()) % (TAGS.len() - 1)) % TAGS.len();
    (TAGS[first], TAGS[second])
}

/// Publishes the small clip until `seed_seconds` have passed or `feed_videos` are ready;
/// (video id, index of its creator) of each, all `ready`.
async fn seed_catalogue(
    client: &reqwest::Client,
    base: &str,
    creators: &[(String, String)],
    clip: &[u8],
    options: &Options,
) -> anyhow::Result<Vec<(String, usize)>> {
    let deadline = Instant::now() + Duration::from_secs(options.seed_seconds);
    let next = Arc::new(AtomicUsize::new(0));
    let done: Arc<Mutex<Vec<(usize, String, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    let clip = Arc::new(clip.to_vec());
    let creators = Arc::new(creators.to_vec());
    let mut tasks = Vec::new();
    for _ in 0..SEEDERS {
        let (client, base, next, done, clip, creators) =
            (client.clone(), base.to_string(), next.clone(), done.clone(), clip.clone(), creators.clone());
        let target = options.feed_videos;
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= target {
                    break;
                }
                let author = n % creators.len();
                let token = &creators[author].1;
                let (first, second) = tags_of(n);
                let upload_id = upload(&client, &base, token, &clip).await?;
                let id = publish(&client, &base, token, &upload_id, &format!("Clip {n} #{first} #{second}")).await?;
                let status = settle(&client, &base, token, &id, Duration::from_millis(200)).await?;
                anyhow::ensure!(status == "ready", "seeded video {id} ended {status}");
                done.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((n, id, author));
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let mut done = done.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    done.sort();
    Ok(done.into_iter().map(|(_, id, author)| (id, author)).collect())
}

/// Each viewer follows three creators, finishes (and likes some of) the videos of two
/// favourite hashtags and skips a few others. Returns the number of requests made.
async fn build_history(
    client: &reqwest::Client,
    base: &str,
    viewers: &[(String, String)],
    creators: &[(String, String)],
    catalogue: &[(String, usize)],
) -> anyhow::Result<usize> {
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (v, (_, token)) in viewers.iter().enumerate() {
        let (client, base, token, count) = (client.clone(), base.to_string(), token.clone(), count.clone());
        let follows: Vec<String> = (0..3).map(|k| creators[(v * 3 + k) % creators.len()].0.clone()).collect();
        let favourite = [TAGS[v % TAGS.len()], TAGS[(v * 7 + 3) % TAGS.len()]];
        // Finished: up to 12 videos carrying a favourite tag; skipped: 4 others.
        let mut finished = Vec::new();
        let mut skipped = Vec::new();
        for (n, (id, _)) in catalogue.iter().enumerate().skip(v % 5) {
            let (first, second) = tags_of(n);
            if favourite.contains(&first) || favourite.contains(&second) {
                if finished.len() < 12 {
                    finished.push(id.clone());
                }
            } else if skipped.len() < 4 {
                skipped.push(id.clone());
            }
            if finished.len() >= 12 && skipped.len() >= 4 {
                break;
            }
        }
        tasks.push(tokio::spawn(async move {
            let post = |path: String, body: Option<Value>| {
                let mut request = client.post(format!("{base}{path}")).bearer_auth(&token);
                if let Some(body) = body {
                    request = request.json(&body);
                }
                let count = count.clone();
                async move {
                    let response = request.send().await?;
                    let status = response.status();
                    anyhow::ensure!(status.is_success(), "POST {path} answered {status}: {}", response.text().await?);
                    count.fetch_add(1, Ordering::Relaxed);
                    anyhow::Ok(())
                }
            };
            for user in &follows {
                post(format!("/api/v1/users/{user}/follow"), None).await?;
            }
            for (k, id) in finished.iter().enumerate() {
                post(format!("/api/v1/videos/{id}/views"), Some(json!({"watched_ms": 3000, "completed": true})))
                    .await?;
                if k % 3 == 0 {
                    post(format!("/api/v1/videos/{id}/like"), None).await?;
                }
            }
            for id in &skipped {
                post(format!("/api/v1/videos/{id}/views"), Some(json!({"watched_ms": 300, "completed": false})))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(count.load(Ordering::Relaxed))
}
