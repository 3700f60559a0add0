//! `plaza-bench live`: live shopping end to end, against a real `plaza serve`.
//!
//! (b) **Chat fan-out**: one live room, many viewer sockets joined to it (`live.join`),
//! and a few hundred senders posting `POST /live/rooms/{id}/chat` at a steady open-loop
//! total rate. Each message's text is `t=<µs since the run started>` taken just before
//! its request is sent, and every viewer's task subtracts that from its own clock when a
//! batched `live.chat` frame brings it: send-to-receive over every delivery. Beside it,
//! the server's CPU (utime + stime from /proc) and RSS, and `GET /me` from a few paced
//! clients with the server idle, with the viewers joined, and during the chat (the
//! same-run baseline).
//!
//! (a) **Ingest to playlist**: ffmpeg publishes a generated test pattern at real time
//! over RTMP, and through the `tee` muxer the same encoded stream is also cut into HLS by
//! ffmpeg itself into a local directory (the baseline: HLS without Plaza). Both playlists
//! are polled every 50 ms. Segment N's first frame was sent at the publish's start plus
//! the durations of the segments before it (`#EXTINF`); the start comes from ffmpeg's
//! `-progress` reports (the earliest wall time less the output time reported). Latency is
//! when the segment was first listed less that. (c) **Cost per room**: the CPU of the
//! server's ffmpeg child (copying H.264/AAC) and of the server itself while one room
//! streams, and how many such rooms two cores carry by that estimate; then the same for
//! a room that must be transcoded, fed a browser's WebM over the ingest socket
//! (`webm.rs`). nginx with libnginx-mod-rtmp, fed the same stream, is the anchor
//! (`anchor.rs`), and a headless Chromium measures glass to glass off frame numbers burnt
//! into the picture (`glass.rs`).
//!
//! Opening 10,000 sockets needs a descriptor limit above that in this process and in the
//! server it starts: run `ulimit -n 65536` first.

mod anchor;
mod fanout;
mod glass;
mod ingest;
mod webm;

use crate::server::{PlazaServer, Target};
use anyhow::Context;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub target: Target,
    /// Split the chat's viewers over two nodes connected by this NATS server (needs
    /// --database-url).
    #[arg(long, requires = "database_url")]
    pub nats_url: Option<String>,
    /// Viewer sockets joined to the room (0 skips the chat part).
    #[arg(long, default_value_t = 10_000)]
    pub viewers: usize,
    /// Chat messages per second offered over all senders, open loop.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Seconds of chat.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Distinct senders (0: a quarter more than the rate, so each stays under the
    /// per-viewer limit of 1 message a second).
    #[arg(long, default_value_t = 0)]
    pub senders: usize,
    /// Clients of the `GET /me` baseline, each sending one request every --me-interval-ms.
    #[arg(long, default_value_t = 4)]
    pub me_clients: usize,
    /// Milliseconds between one baseline client's requests.
    #[arg(long, default_value_t = 20)]
    pub me_interval_ms: u64,
    /// Seconds of each idle `GET /me` baseline.
    #[arg(long, default_value_t = 5)]
    pub me_seconds: u64,
    /// Seconds of RTMP publishing for the ingest latency and the cost per room (0 skips it).
    #[arg(long, default_value_t = 20)]
    pub ingest_seconds: u64,
    /// A smoke run of a few seconds: 300 viewers, 50 messages/s for 4 s, 6 s of ingest.
    #[arg(long)]
    pub quick: bool,
    /// Only glass to glass, over --ingest-seconds of publishing (12 at least; Chromium and
    /// `npm ci` in web/): no chat, no ingest latency, no cost per room.
    #[arg(long)]
    pub glass_only: bool,
}

impl Options {
    pub fn quick(self) -> Self {
        Self {
            viewers: self.viewers.min(300),
            rate: self.rate.min(50),
            duration: self.duration.min(4),
            me_seconds: self.me_seconds.min(2),
            ingest_seconds: self.ingest_seconds.min(6),
            ..self
        }
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let options = if options.quick { options.quick() } else { options };
    if options.glass_only {
        return glass::glass_only(&options).await;
    }
    if options.viewers > 0 {
        fanout::chat_fanout(&options).await?;
    }
    if options.ingest_seconds > 0 {
        ingest::ingest(&options).await?;
    }
    Ok(())
}

fn backend(options: &Options) -> &'static str {
    match (&options.target.database_url, &options.nats_url) {
        (Some(_), Some(_)) => "postgres, 2 nodes + NATS",
        (Some(_), None) => "postgres",
        (None, _) => "sqlite",
    }
}

/// A free loopback port for a node's RTMP listener.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `count` nodes (the first with RTMP ingest on a free port, the others without),
/// each allowed `connections` connections from one address and `sockets_per_user` sockets
/// per user; with a rooms' idle end long enough that a room stays live after its
/// publisher stops.
fn start_nodes(
    options: &Options,
    count: usize,
    connections: usize,
    sockets_per_user: usize,
    with_nats: bool,
) -> anyhow::Result<Vec<PlazaServer>> {
    let connections = connections.to_string();
    let sockets_per_user = sockets_per_user.clamp(16, 10_000).to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("PLAZA_AUTH_ATTEMPTS_PER_ADDRESS", "100000"),
        ("PLAZA_AUTH_ATTEMPTS_PER_USERNAME", "100000"),
        ("PLAZA_CONNECTIONS_MAX", &connections),
        ("PLAZA_CONNECTIONS_PER_ADDRESS_MAX", &connections),
        ("PLAZA_SOCKETS_PER_USER_MAX", &sockets_per_user),
        ("PLAZA_LIVE_IDLE_END_SECONDS", "3600"),
    ];
    if let (Some(url), true) = (options.nats_url.as_deref(), with_nats) {
        env.push(("PLAZA_NATS_URL", url));
    }
    let mut nodes = Vec::new();
    for node in 0..count {
        let rtmp = if node == 0 { format!("127.0.0.1:{}", free_port()?) } else { "off".to_string() };
        let mut node_env = env.clone();
        node_env.push(("PLAZA_LIVE_RTMP_ADDR", &rtmp));
        nodes.push(PlazaServer::start(&options.target.plaza, options.target.database_url.as_deref(), &node_env)?);
    }
    Ok(nodes)
}

/// This process's soft limit on open descriptors, from /proc.
fn descriptor_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Rooms, users, the publisher and /proc
// ---------------------------------------------------------------------------------------

/// A new room of the host's; (room id, RTMP URL with the key).
async fn create_room(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<(String, String)> {
    let created: Value = client
        .post(format!("{base}/api/v1/live/rooms"))
        .bearer_auth(token)
        .json(&json!({"title": "Bench room"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"].as_str().context("room id")?.to_string();
    let url = created["ingest"]["rtmp_url"].as_str().context("no RTMP ingest on this node")?.to_string();
    Ok((id, url))
}

async fn wait_live(client: &reqwest::Client, base: &str, token: &str, room: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let room_state: Value =
            client.get(format!("{base}/api/v1/live/rooms/{room}")).bearer_auth(token).send().await?.json().await?;
        if room_state["status"] == "live" {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the room did not go live in 30 s: {room_state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Debian's ffmpeg, niced, publishing `seconds` of a 640x360 30 fps test pattern with a
/// tone at real time to `url` (H.264 with a keyframe every second, AAC), every argument
/// fixed here.
fn publish(url: &str, seconds: u64) -> anyhow::Result<tokio::process::Child> {
    Publish { rtmp_urls: vec![url.to_string()], seconds, ..Publish::default() }.spawn()
}

/// One publishing ffmpeg and where its one encoded stream goes (the `tee` muxer sends the
/// same packets to every output, so every server gets the very same stream).
#[derive(Debug, Default)]
struct Publish {
    rtmp_urls: Vec<String>,
    seconds: u64,
    /// Also cut by ffmpeg itself into 1 s HLS segments in this directory.
    local_hls: Option<PathBuf>,
    /// Progress reports on stdout (`-progress pipe:1`, every 50 ms), for the anchor.
    progress: bool,
    /// A strip across the top 40 rows showing the frame's number in 16 black-or-white
    /// blocks (bit 0 on the left), which a player can read back off its screen.
    frame_numbers: bool,
}

/// The 16 blocks of [`Publish::frame_numbers`], each 40 px wide.
const FRAME_NUMBER_STRIP: &str = "color=c=black:size=16x2:rate=30,format=gray,\
geq=lum='255*mod(floor(N/pow(2,X)),2)',scale=640:40:flags=neighbor[strip];[pattern][strip]overlay=0:0:shortest=1";

impl Publish {
    fn spawn(&self) -> anyhow::Result<tokio::process::Child> {
        let mut command = tokio::process::Command::new("nice");
        command.args(["-n", "10", "ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error"]);
        if self.progress {
            command.args(["-progress", "pipe:1", "-stats_period", "0.05"]);
        }
        let video = match self.frame_numbers {
            true => format!("testsrc=size=640x360:rate=30[pattern];{FRAME_NUMBER_STRIP}[out0]"),
            false => "testsrc=size=640x360:rate=30".to_string(),
        };
        command
            .args(["-re", "-f", "lavfi", "-i", &video])
            .args(["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-t", &self.seconds.to_string(), "-map", "0:v", "-map", "1:a"])
            .args(plaza_server::demo::LIVE_PUBLISH_CODECS);
        let mut outputs: Vec<String> = self.rtmp_urls.iter().map(|url| format!("[f=flv]{url}")).collect();
        if let Some(dir) = &self.local_hls {
            let playlist = dir.join("index.m3u8");
            outputs
                .push(format!("[f=hls:hls_time=1:hls_list_size=0:hls_flags=temp_file]{}", playlist.to_string_lossy()));
        }
        match outputs.as_slice() {
            [only] if self.local_hls.is_none() => command.args(["-f", "flv", &only["[f=flv]".len()..]]),
            _ => command.args(["-flags", "+global_header", "-f", "tee", &outputs.join("|")]),
        };
        command
            .stdin(std::process::Stdio::null())
            .stdout(if self.progress { std::process::Stdio::piped() } else { std::process::Stdio::null() })
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("ffmpeg (apt install ffmpeg)")
    }
}

/// CPU seconds (user + system) the processes have used so far.
fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter().map(|pid| cpu_seconds_of(&pid.to_string())).sum()
}

/// CPU seconds of `/proc/{pid}` (a pid or `self`), from fields 14 and 15 of its `stat`.
fn cpu_seconds_of(pid: &str) -> f64 {
    stat_fields(pid)
        .map(|fields| {
            let ticks: u64 =
                fields.get(11..13).into_iter().flatten().filter_map(|field| field.parse::<u64>().ok()).sum();
            ticks as f64 / clock_ticks()
        })
        .unwrap_or(0.0)
}

/// The fields of `/proc/{pid}/stat` after the command name (the first is the state).
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux unless configured otherwise).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
