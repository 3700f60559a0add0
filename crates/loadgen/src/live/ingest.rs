//! (a) Ingest to playlist against ffmpeg's own HLS of the same stream and nginx-rtmp's,
//! and (c) the CPU one streaming room costs.

use super::anchor::Nginx;
use super::{cpu_seconds_of, create_room, start_nodes, stat_fields, Options, Publish};
use crate::server::{register_many, run_tag, PlazaServer};
use anyhow::Context;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each segment's duration and when it was first seen listed, by number.
pub(super) type Listed = BTreeMap<i64, (f64, Instant)>;

/// CPU seconds so far of the server, of its children (each room's ffmpeg), and of the
/// publisher.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuSample {
    pub(super) at: Instant,
    pub(super) server: f64,
    pub(super) children: f64,
    pub(super) publisher: f64,
}

pub(super) fn cpu_sample(server: u32, publisher: Option<u32>) -> CpuSample {
    let children: f64 = children_of(server).iter().map(|pid| cpu_seconds_of(&pid.to_string())).sum();
    CpuSample {
        at: Instant::now(),
        server: cpu_seconds_of(&server.to_string()),
        children,
        publisher: publisher.map_or(0.0, |pid| cpu_seconds_of(&pid.to_string())),
    }
}

/// The processes whose parent is `pid` (the server's ffmpeg: `nice` execs it in place).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            stat_fields(&child.to_string()).and_then(|fields| fields.get(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

/// The segments an HLS playlist lists: (number from the name's trailing digits, seconds).
fn parse_playlist(text: &str) -> Vec<(i64, f64)> {
    let mut listed = Vec::new();
    let mut duration = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            duration = rest.split(',').next().and_then(|seconds| seconds.trim().parse::<f64>().ok());
        } else if let Some(stem) = line.strip_suffix(".ts") {
            let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
            if let (Some(seconds), Ok(number)) = (duration.take(), stem[stem.len() - digits..].parse::<i64>()) {
                listed.push((number, seconds));
            }
        }
    }
    listed
}

pub(super) fn note_listed(listed: &mut Listed, text: &str) {
    let now = Instant::now();
    for (number, seconds) in parse_playlist(text) {
        listed.entry(number).or_insert((seconds, now));
    }
}

/// Seconds from each segment's first frame being sent (`anchor` plus the durations of
/// the segments before it) to its listing; only from segment 0 on without a gap.
pub(super) fn latencies_of(listed: &Listed, anchor: Instant) -> Vec<f64> {
    let mut media_start = 0.0;
    let mut latencies = Vec::new();
    for (expected, (number, (seconds, at))) in listed.iter().enumerate() {
        if *number != expected as i64 {
            break;
        }
        latencies.push(at.duration_since(anchor).as_secs_f64() - media_start);
        media_start += seconds;
    }
    latencies
}

/// Reads ffmpeg's `-progress` reports, keeping the earliest wall time less the output
/// time reported: when media time 0 was sent.
pub(super) fn follow_progress(
    stdout: tokio::process::ChildStdout,
    anchor: Arc<Mutex<Option<Instant>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Some(micros) = line.strip_prefix("out_time_us=").and_then(|n| n.trim().parse::<u64>().ok()) else {
                continue;
            };
            if micros == 0 {
                continue;
            }
            let Some(start) = Instant::now().checked_sub(Duration::from_micros(micros)) else { continue };
            let mut anchor = anchor.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if anchor.is_none_or(|earliest| start < earliest) {
                *anchor = Some(start);
            }
        }
    })
}

struct IngestRun {
    plaza: Listed,
    local: Listed,
    /// nginx-rtmp's playlist, when nginx is installed.
    nginx: Option<Listed>,
    anchor: Instant,
    /// The server's share of a core idle, just before publishing.
    idle_share: f64,
    /// Once Plaza listed two segments, and at the publish's end.
    cpu: [CpuSample; 2],
}

/// Publishes for `options.ingest_seconds` into a new room, polling Plaza's playlist and
/// ffmpeg's own every 50 ms.
async fn ingest_run(options: &Options, server: &PlazaServer, client: &reqwest::Client) -> anyhow::Result<IngestRun> {
    let host = register_many(client, &server.base, vec![format!("ingest_{}", run_tag())]).await?.remove(0);
    let (room, rtmp_url) = create_room(client, &server.base, &host.0).await?;
    let dir = tempfile::tempdir()?;
    let idle_start = cpu_sample(server.pid(), None);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_end = cpu_sample(server.pid(), None);
    let nginx = Nginx::start().await?;
    let mut rtmp_urls = vec![rtmp_url];
    rtmp_urls.extend(nginx.as_ref().map(|nginx| nginx.rtmp_url.clone()));
    let mut publisher = Publish {
        rtmp_urls,
        seconds: options.ingest_seconds,
        local_hls: Some(dir.path().to_path_buf()),
        progress: true,
        frame_numbers: false,
    }
    .spawn()?;
    let publisher_pid = publisher.id();
    let anchor = Arc::new(Mutex::new(None));
    let progress = follow_progress(publisher.stdout.take().context("ffmpeg's stdout")?, anchor.clone());
    let (mut plaza, mut local, mut nginx_listed) = (Listed::new(), Listed::new(), Listed::new());
    let playlist_url = format!("{}/live/{room}/index.m3u8", server.base);
    let local_playlist = dir.path().join("index.m3u8");
    let mut streaming: Option<CpuSample> = None;
    let mut last = cpu_sample(server.pid(), publisher_pid);
    let mut ended_at = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    loop {
        ticker.tick().await;
        if let Ok(response) = client.get(&playlist_url).bearer_auth(&host.0).send().await {
            if response.status().is_success() {
                note_listed(&mut plaza, &response.text().await.unwrap_or_default());
            }
        }
        note_listed(&mut local, &std::fs::read_to_string(&local_playlist).unwrap_or_default());
        if let Some(nginx) = &nginx {
            note_listed(&mut nginx_listed, &std::fs::read_to_string(&nginx.playlist).unwrap_or_default());
        }
        if streaming.is_none() && plaza.len() >= 2 {
            streaming = Some(cpu_sample(server.pid(), publisher_pid));
        }
        match ended_at {
            None if publisher.try_wait()?.is_some() => ended_at = Some(Instant::now()),
            None => last = cpu_sample(server.pid(), publisher_pid),
            // The last segments are listed once ffmpeg flushes them.
            Some(ended) if ended.elapsed() > Duration::from_secs(3) => break,
            Some(_) => {}
        }
    }
    progress.abort();
    let anchor = anchor.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).context("no progress from ffmpeg")?;
    let idle_share = (idle_end.server - idle_start.server) / idle_end.at.duration_since(idle_start.at).as_secs_f64();
    let streaming = streaming.context("Plaza listed fewer than 2 segments")?;
    let nginx = nginx.map(|_| nginx_listed);
    Ok(IngestRun { plaza, local, nginx, anchor, idle_share, cpu: [streaming, last] })
}

pub(super) fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub(super) async fn ingest(options: &Options) -> anyhow::Result<()> {
    let backend = options.target.backend();
    let nodes = start_nodes(options, 1, 1000, 16, false)?;
    let server = &nodes[0];
    let client = reqwest::Client::new();
    crate::me::wait_ready(&client, &server.base).await?;
    let run = ingest_run(options, server, &client).await?;
    let plaza = latencies_of(&run.plaza, run.anchor);
    let local = latencies_of(&run.local, run.anchor);
    println!("## live ingest ({backend})");
    println!();
    println!(
        "| backend | path | segments | mean segment | first segment | p50 | p99 | max | p50 to ffmpeg alone | p99 to ffmpeg alone |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut sorted_local = local.clone();
    sorted_local.sort_by(f64::total_cmp);
    let nginx = run.nginx.as_ref().map(|listed| (latencies_of(listed, run.anchor), listed));
    let mut rows = vec![("ffmpeg's own HLS of the same stream (baseline)", &local, &run.local)];
    if let Some((latencies, listed)) = &nginx {
        rows.push((
            "nginx-rtmp (libnginx-mod-rtmp 1.2.2, hls_fragment 1s) fed the same stream (anchor)",
            latencies,
            listed,
        ));
    }
    rows.push(("Plaza: RTMP → its ffmpeg → object store → live playlist", &plaza, &run.plaza));
    for (label, latencies, listed) in rows {
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        let mean = listed.values().take(count).map(|(seconds, _)| seconds).sum::<f64>() / count.max(1) as f64;
        println!(
            "| {backend} | {label} | {count} | {mean:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2}× | {:.2}× |",
            latencies.first().copied().unwrap_or(f64::NAN),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            sorted.last().copied().unwrap_or(f64::NAN),
            percentile(&sorted, 0.5) / percentile(&sorted_local, 0.5),
            percentile(&sorted, 0.99) / percentile(&sorted_local, 0.99),
        );
    }
    println!();
    print_cost(backend, "copy: H.264/AAC over RTMP into 1 s HLS segments", run.idle_share, &run.cpu);
    println!("{} s of ingest", options.ingest_seconds);
    println!();
    super::glass::glass_to_glass(options, server, &client).await?;
    super::webm::browser_ingest_cost(options, server, &client, run.idle_share).await?;
    Ok(())
}

/// (c): the CPU of one room streaming, while it streamed (from its second segment to the
/// publish's end), against the server idle just before.
pub(super) fn print_cost(backend: &str, what: &str, idle_share: f64, cpu: &[CpuSample; 2]) {
    let [streaming, last] = cpu;
    let seconds = last.at.duration_since(streaming.at).as_secs_f64().max(1e-3);
    let share = |cpu_seconds: f64| cpu_seconds / seconds;
    let ffmpeg = share(last.children - streaming.children);
    let server = share(last.server - streaming.server);
    let publisher = share(last.publisher - streaming.publisher);
    let per_room = ffmpeg + (server - idle_share).max(0.0);
    println!("| backend | process, one room streaming 640x360 30 fps for {seconds:.0} s ({what}) | CPU, % of a core |");
    println!("| --- | --- | ---: |");
    println!("| {backend} | the server's ffmpeg | {:.1} % |", 100.0 * ffmpeg);
    println!("| {backend} | plaza serve (ingest, segments to the object store, playlists) | {:.1} % |", 100.0 * server);
    println!("| {backend} | plaza serve idle just before (baseline) | {:.1} % |", 100.0 * idle_share);
    println!("| {backend} | the publisher (its encode; not the server's) | {:.1} % |", 100.0 * publisher);
    println!();
    println!(
        "per room ({what}): {:.1} % of a core (ffmpeg + the server above idle): about {:.0} rooms on two cores",
        100.0 * per_room,
        2.0 / per_room.max(1e-6),
    );
    println!();
}
