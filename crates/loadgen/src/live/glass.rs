//! (a) Glass to glass: a headless Chromium plays the room with hls.js, configured as the
//! client's watch screen is, beside the same stream from nginx-rtmp (the anchor), and
//! reads each presented frame's number back off the screen (the publisher burns it in:
//! [`Publish::frame_numbers`]). Frame n was sent at the publish's start plus n/30 s (it
//! publishes at real time), so its glass-to-glass latency is when Chromium presented it
//! less that. The script is `web/bench/glass-to-glass.mjs` (playwright-core and hls.js
//! from `web/node_modules`: run `npm ci` in `web/` first).

use super::anchor::Nginx;
use super::ingest::{follow_progress, note_listed, percentile, Listed};
use super::{create_room, Options, Publish};
use crate::server::{register_many, run_tag, PlazaServer};
use anyhow::Context;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const SCRIPT: &str = "web/bench/glass-to-glass.mjs";
const FRAMES_PER_SECOND: f64 = 30.0;
/// A player's first seconds (joining, catching up to its target) are not its steady state.
const WARM_UP_MS: f64 = 3_000.0;

/// One frame a player presented.
#[derive(Debug)]
struct Presented {
    label: String,
    frame: u32,
    shown_ms: f64,
}

impl Presented {
    fn parse(line: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        Some(Self {
            label: value["label"].as_str()?.to_string(),
            frame: u32::try_from(value["frame"].as_u64()?).ok()?,
            shown_ms: value["shown_ms"].as_f64()?,
        })
    }
}

/// `--glass-only`: glass to glass alone, on a node of its own; its prerequisites missing
/// are an error here, not a note.
pub(super) async fn glass_only(options: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(options.ingest_seconds >= 12, "glass to glass needs --ingest-seconds 12 or more");
    anyhow::ensure!(
        Path::new(SCRIPT).exists() && Path::new("web/node_modules/hls.js").exists(),
        "glass to glass needs {SCRIPT} and `npm ci` in web/ (run from the workspace's root)"
    );
    let nodes = super::start_nodes(options, 1, 1000, 16, false)?;
    let client = reqwest::Client::new();
    crate::me::wait_ready(&client, &nodes[0].base).await?;
    glass_to_glass(options, &nodes[0], &client).await
}

pub(super) async fn glass_to_glass(
    options: &Options,
    server: &PlazaServer,
    client: &reqwest::Client,
) -> anyhow::Result<()> {
    if options.ingest_seconds < 12 || !Path::new(SCRIPT).exists() || !Path::new("web/node_modules/hls.js").exists() {
        println!("(no glass-to-glass run: it needs --ingest-seconds 12 or more, {SCRIPT} and `npm ci` in web/)");
        println!();
        return Ok(());
    }
    let backend = options.target.backend();
    let host = register_many(client, &server.base, vec![format!("glass_{}", run_tag())]).await?.remove(0);
    let (room, rtmp_url) = create_room(client, &server.base, &host.0).await?;
    let nginx = Nginx::start().await?;
    let mut rtmp_urls = vec![rtmp_url];
    rtmp_urls.extend(nginx.as_ref().map(|nginx| nginx.rtmp_url.clone()));
    let mut publisher =
        Publish { rtmp_urls, seconds: options.ingest_seconds, local_hls: None, progress: true, frame_numbers: true }
            .spawn()?;
    let started = Instant::now();
    let anchor = Arc::new(Mutex::new(None));
    let progress = follow_progress(publisher.stdout.take().context("ffmpeg's stdout")?, anchor.clone());
    let playlist_url = format!("{}/live/{room}/index.m3u8", server.base);
    wait_for_segments(client, &playlist_url, &host.0, nginx.as_ref()).await?;
    let mut players = vec![json!({"label": "plaza", "origin": server.base, "url": playlist_url, "token": host.0})];
    if let Some(nginx) = &nginx {
        players.push(json!({"label": "nginx", "origin": nginx.http_base, "url": nginx.playlist_url, "token": null}));
    }
    let watch = options.ingest_seconds.saturating_sub(started.elapsed().as_secs() + 1).max(5);
    let output = tokio::time::timeout(
        Duration::from_secs(watch + 60),
        tokio::process::Command::new("node")
            .arg(SCRIPT)
            .arg(json!({"seconds": watch, "players": players}).to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("the headless player did not finish")??;
    anyhow::ensure!(output.status.success(), "the headless player failed: {}", String::from_utf8_lossy(&output.stderr));
    let _ = publisher.wait().await;
    progress.abort();
    let anchor = anchor.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).context("no progress from ffmpeg")?;
    let sent_ms = wall_ms_of(anchor);
    let presented: Vec<Presented> =
        String::from_utf8_lossy(&output.stdout).lines().filter_map(Presented::parse).collect();
    print_glass(backend, sent_ms, &presented, watch);
    Ok(())
}

/// Until Plaza lists two segments (the room is live) and nginx, if there, one.
async fn wait_for_segments(
    client: &reqwest::Client,
    playlist_url: &str,
    token: &str,
    nginx: Option<&Nginx>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut plaza = Listed::new();
        if let Ok(response) = client.get(playlist_url).bearer_auth(token).send().await {
            if response.status().is_success() {
                note_listed(&mut plaza, &response.text().await.unwrap_or_default());
            }
        }
        let mut theirs = Listed::new();
        if let Some(nginx) = nginx {
            note_listed(&mut theirs, &std::fs::read_to_string(&nginx.playlist).unwrap_or_default());
        }
        if plaza.len() >= 2 && (nginx.is_none() || !theirs.is_empty()) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "no segments listed within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Milliseconds since the Unix epoch at `instant` (both clocks of this machine).
fn wall_ms_of(instant: Instant) -> f64 {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1e3;
    now - instant.elapsed().as_secs_f64() * 1e3
}

fn print_glass(backend: &str, sent_ms: f64, presented: &[Presented], watch: u64) {
    let mut by_label: BTreeMap<&str, Vec<&Presented>> = BTreeMap::new();
    for frame in presented {
        by_label.entry(frame.label.as_str()).or_default().push(frame);
    }
    println!("## live glass to glass ({backend}): Chromium + hls.js, {watch} s watched");
    println!();
    println!("| backend | player | frames presented (steady) | distinct | misread | p50 | p99 | max | p50 to nginx |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let summaries: Vec<(&str, Option<Summary>)> =
        by_label.iter().map(|(label, frames)| (*label, summarise(sent_ms, frames))).collect();
    let nginx_p50 = summaries.iter().find(|(label, _)| *label == "nginx").and_then(|(_, summary)| summary.as_ref());
    for (label, summary) in &summaries {
        let Some(summary) = summary else {
            println!("| {backend} | {label} | 0 | | | | | | |");
            continue;
        };
        let ratio = nginx_p50.map_or("—".to_string(), |nginx| format!("{:.2}×", summary.p50 / nginx.p50));
        println!(
            "| {backend} | {label} | {} | {} | {} | {:.2} s | {:.2} s | {:.2} s | {ratio} |",
            summary.frames, summary.distinct, summary.misread, summary.p50, summary.p99, summary.max
        );
    }
    println!();
}

struct Summary {
    frames: usize,
    distinct: usize,
    misread: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

/// Latencies of a player's frames after its warm-up. A frame number that would put the
/// frame before its sending or a minute behind is a misread (a block blurred by the
/// encoder), counted and left out.
fn summarise(sent_ms: f64, frames: &[&Presented]) -> Option<Summary> {
    let first = frames.iter().map(|frame| frame.shown_ms).fold(f64::INFINITY, f64::min);
    let steady: Vec<&&Presented> = frames.iter().filter(|frame| frame.shown_ms >= first + WARM_UP_MS).collect();
    let mut latencies = Vec::new();
    let mut distinct = HashSet::new();
    let mut misread = 0;
    for frame in &steady {
        let latency = (frame.shown_ms - (sent_ms + f64::from(frame.frame) * 1e3 / FRAMES_PER_SECOND)) / 1e3;
        if !(0.0..60.0).contains(&latency) {
            misread += 1;
            continue;
        }
        latencies.push(latency);
        distinct.insert(frame.frame);
    }
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_by(f64::total_cmp);
    Some(Summary {
        frames: steady.len(),
        distinct: distinct.len(),
        misread,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or(f64::NAN),
    })
}
