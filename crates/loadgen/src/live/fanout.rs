//! (b) Chat fan-out: one live room, many viewer sockets, a steady open-loop rate of chat,
//! and `GET /me` from a few paced clients as the same-run baseline.

use super::{
    backend, cpu_seconds, cpu_seconds_of, create_room, descriptor_limit, publish, start_nodes, wait_live, Options,
};
use crate::server::{register_many, rss_of, run_tag, PlazaServer};
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the viewers' tasks count: deliveries (messages × viewers), the `live.chat` frames
/// that carried any, and sockets that ended (dropped by the server as too slow, or failed).
#[derive(Default)]
struct Tally {
    deliveries: AtomicU64,
    frames: AtomicU64,
    closed: AtomicU64,
}

/// Send-to-receive latencies in µs, sharded so that thousands of viewer tasks rarely
/// wait for one another; each task locks its shard once per frame.
struct Shards(Vec<Mutex<Histogram<u64>>>);

impl Shards {
    fn new(count: usize) -> anyhow::Result<Self> {
        let mut shards = Vec::with_capacity(count);
        for _ in 0..count {
            shards.push(Mutex::new(Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?));
        }
        Ok(Self(shards))
    }

    fn merged(&self) -> anyhow::Result<Histogram<u64>> {
        let mut all = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
        for shard in &self.0 {
            let shard = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            all.add(&*shard)?;
        }
        Ok(all)
    }

    fn clear(&self) {
        for shard in &self.0 {
            shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).reset();
        }
    }
}

/// One live room with its senders registered, on fresh nodes.
struct ChatSetup {
    nodes: Vec<PlazaServer>,
    bases: Vec<String>,
    room: String,
    /// Each sender's token; sender `n` also holds viewer sockets `n`, `n + len`, ….
    tokens: Vec<String>,
}

async fn chat_setup(options: &Options, client: &reqwest::Client) -> anyhow::Result<ChatSetup> {
    let node_count = if options.nats_url.is_some() { 2 } else { 1 };
    let senders = if options.senders > 0 { options.senders } else { (options.rate as usize * 5).div_ceil(4).max(1) };
    let needed = (options.viewers / node_count + senders + 200) as u64;
    if let Some(limit) = descriptor_limit() {
        anyhow::ensure!(
            limit >= needed + 512,
            "{} viewers need about {needed} descriptors here and in each node, the limit is {limit}: run \
             `ulimit -n 65536` first",
            options.viewers
        );
    }
    // Each sender's user also holds its share of the viewer sockets (a viewer must have
    // joined the room to post in it).
    let per_user = options.viewers.div_ceil(senders) + 2;
    let nodes = start_nodes(options, node_count, needed as usize + 1000, per_user, true)?;
    for node in &nodes {
        crate::me::wait_ready(client, &node.base).await?;
    }
    let bases: Vec<String> = nodes.iter().map(|node| node.base.clone()).collect();
    let tag = run_tag();
    let host = register_many(client, &bases[0], vec![format!("host_{tag}")]).await?.remove(0);
    let (room, rtmp_url) = create_room(client, &bases[0], &host.0).await?;
    // Media makes the room live; the publisher then stops (the room waits for an hour), so
    // that the chat runs with no ffmpeg beside it.
    let mut publisher = publish(&rtmp_url, 30)?;
    wait_live(client, &bases[0], &host.0, &room).await?;
    publisher.kill().await.ok();
    let users = register_many(client, &bases[0], (0..senders).map(|n| format!("live_{tag}_{n}")).collect()).await?;
    let tokens = users.into_iter().map(|(token, _)| token).collect();
    Ok(ChatSetup { nodes, bases, room, tokens })
}

pub(super) async fn chat_fanout(options: &Options) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let ChatSetup { nodes, bases, room, tokens } = chat_setup(options, &client).await?;
    let idle_probe = Duration::from_secs(options.me_seconds);
    let rss_empty: u64 = nodes.iter().map(PlazaServer::rss_bytes).sum();
    let me_empty = probe_me(&client, &bases, &tokens, options, idle_probe).await?;

    let run_started = Instant::now();
    let tally = Arc::new(Tally::default());
    let shards = Arc::new(Shards::new(64)?);
    let opening = Instant::now();
    let watchers = open_viewers(&bases, &tokens, &room, options.viewers, run_started, &tally, &shards).await?;
    let opened_in = opening.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_joined: u64 = nodes.iter().map(PlazaServer::rss_bytes).sum();
    let me_joined = probe_me(&client, &bases, &tokens, options, idle_probe).await?;

    // Only what the chat run brings counts from here on.
    shards.clear();
    tally.deliveries.store(0, Ordering::Relaxed);
    tally.frames.store(0, Ordering::Relaxed);
    let closed_before = tally.closed.load(Ordering::Relaxed);
    let pids: Vec<u32> = nodes.iter().map(PlazaServer::pid).collect();
    let (cpu_before, bench_before) = (cpu_seconds(&pids), cpu_seconds_of("self"));
    let window = Instant::now();
    let duration = Duration::from_secs(options.duration);
    let me_during = {
        let (client, bases, tokens, options) = (client.clone(), bases.clone(), tokens.clone(), options.clone());
        tokio::spawn(async move { probe_me(&client, &bases, &tokens, &options, duration).await })
    };
    let rss_peak = Arc::new(AtomicU64::new(0));
    let sampler = sample_rss(pids.clone(), rss_peak.clone(), duration);
    let sent = send_chat(&client, &bases, &tokens, &room, options, run_started).await?;
    sampler.await.ok();
    let server_cpu = cpu_seconds(&pids) - cpu_before;
    let bench_cpu = cpu_seconds_of("self") - bench_before;
    let window_seconds = window.elapsed().as_secs_f64();
    let me_during = me_during.await??;
    // Everything accepted should reach every viewer still connected.
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    let viewers_left = || options.viewers as u64 - tally.closed.load(Ordering::Relaxed);
    while tally.deliveries.load(Ordering::Relaxed) < sent.accepted * viewers_left() && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = ChatReport {
        sent,
        senders: tokens.len(),
        opened_in,
        window_seconds,
        server_cpu,
        bench_cpu,
        rss: [rss_empty, rss_joined, rss_peak.load(Ordering::Relaxed)],
        dropped: tally.closed.load(Ordering::Relaxed) - closed_before,
        latency: shards.merged()?,
        me: [me_empty, me_joined, me_during],
    };
    print_chat(options, &report, &tally);
    for watcher in watchers {
        watcher.abort();
    }
    Ok(())
}

struct ChatReport {
    sent: Sent,
    senders: usize,
    opened_in: Duration,
    window_seconds: f64,
    server_cpu: f64,
    bench_cpu: f64,
    /// Server RSS with no viewers, with the viewers joined, and the most during the chat.
    rss: [u64; 3],
    dropped: u64,
    latency: Histogram<u64>,
    /// `GET /me` with no viewers, with the viewers joined, during the chat.
    me: [Histogram<u64>; 3],
}

fn print_chat(options: &Options, report: &ChatReport, tally: &Tally) {
    let backend = backend(options);
    let deliveries = tally.deliveries.load(Ordering::Relaxed);
    let frames = tally.frames.load(Ordering::Relaxed);
    let viewers_left = options.viewers as u64 - tally.closed.load(Ordering::Relaxed);
    let sending = options.duration as f64;
    let latency = &report.latency;
    let mib = |bytes: u64| bytes as f64 / 1048576.0;
    println!("## live ({backend})");
    println!();
    println!(
        "{} viewer sockets joined in {:.1} s; {} senders; chat window {:.1} s",
        options.viewers,
        report.opened_in.as_secs_f64(),
        report.senders,
        report.window_seconds
    );
    println!();
    println!(
        "| backend | viewers | offered | accepted (202) | refused | deliveries | expected | deliveries/s | p50 | p99 | max \
         | chat frames per viewer per s | server CPU | server RSS: no viewers / joined / max in chat | viewers dropped |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |");
    println!(
        "| {backend} | {} | {}/s for {} s | {} | {} | {deliveries} | {} | {:.0} | {} | {} | {} | {:.2} | {:.0} % of a core | \
         {:.0} / {:.0} / {:.0} MiB | {} |",
        options.viewers,
        options.rate,
        options.duration,
        report.sent.accepted,
        report.sent.refused,
        report.sent.accepted * viewers_left,
        deliveries as f64 / sending,
        crate::shop::ms(latency.value_at_quantile(0.5)),
        crate::shop::ms(latency.value_at_quantile(0.99)),
        crate::shop::ms(latency.max()),
        frames as f64 / viewers_left.max(1) as f64 / sending,
        100.0 * report.server_cpu / report.window_seconds,
        mib(report.rss[0]),
        mib(report.rss[1]),
        mib(report.rss[2]),
        report.dropped,
    );
    println!();
    println!(
        "chat POST to its 202 (part of send-to-receive): p50 {}, p99 {}, max {}",
        crate::shop::ms(report.sent.post.value_at_quantile(0.5)),
        crate::shop::ms(report.sent.post.value_at_quantile(0.99)),
        crate::shop::ms(report.sent.post.max())
    );
    println!();
    println!(
        "load generator (this process: {} viewers' sockets, the senders, the baseline): {:.0} % of a core",
        options.viewers,
        100.0 * report.bench_cpu / report.window_seconds
    );
    println!();
    let clients = format!("{} clients, one request each every {} ms", options.me_clients, options.me_interval_ms);
    println!("| backend | GET /me ({clients}) | requests | p50 | p99 | p99 to idle |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    let idle_p99 = report.me[0].value_at_quantile(0.99).max(1) as f64;
    let labels = [
        "idle, no viewers (baseline)".to_string(),
        format!("{} viewers joined, no chat", options.viewers),
        format!("during the chat, {}/s to {} viewers", options.rate, options.viewers),
    ];
    for (label, histogram) in labels.iter().zip(&report.me) {
        println!(
            "| {backend} | {label} | {} | {} | {} | {:.1}× |",
            histogram.len(),
            crate::shop::ms(histogram.value_at_quantile(0.5)),
            crate::shop::ms(histogram.value_at_quantile(0.99)),
            histogram.value_at_quantile(0.99) as f64 / idle_p99
        );
    }
    println!();
}

/// Opens `count` viewer sockets over `bases` (round robin), user `n % len` each, joins
/// them to `room`, and leaves each with a task counting what it receives.
async fn open_viewers(
    bases: &[String],
    tokens: &[String],
    room: &str,
    count: usize,
    run_started: Instant,
    tally: &Arc<Tally>,
    shards: &Arc<Shards>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let opening = futures_util::stream::iter(0..count).map(|n| {
        let base = bases[n % bases.len()].clone();
        let token = tokens[n % tokens.len()].clone();
        let room = room.to_string();
        async move {
            // Spread over 127.0.0.x source addresses so that the run never runs out of ports.
            let source = std::net::Ipv4Addr::new(127, 0, 1 + ((n / 5_000) % 250) as u8, 1 + (n % 250) as u8);
            let socket = join_room(&base, &token, source, &room).await.with_context(|| format!("viewer {n}"))?;
            anyhow::Ok((n, socket))
        }
    });
    let mut opening = opening.buffer_unordered(64);
    let mut watchers = Vec::with_capacity(count);
    while let Some(opened) = opening.next().await {
        let (n, socket) = opened?;
        let (tally, shards) = (tally.clone(), shards.clone());
        watchers.push(tokio::spawn(async move {
            watch(socket, run_started, &tally, &shards.0[n % shards.0.len()]).await;
            tally.closed.fetch_add(1, Ordering::Relaxed);
        }));
    }
    Ok(watchers)
}

/// A socket from `source`, resumed (live delivery from now on) and joined to `room`.
async fn join_room(base: &str, token: &str, source: std::net::Ipv4Addr, room: &str) -> anyhow::Result<Socket> {
    let url = format!("{}/api/v1/ws?token={token}", base.replace("http://", "ws://"));
    let address: std::net::SocketAddr = base.trim_start_matches("http://").parse()?;
    let tcp = tokio::net::TcpSocket::new_v4()?;
    tcp.bind(std::net::SocketAddr::new(source.into(), 0))?;
    let tcp = tcp.connect(address).await?;
    // Small buffers: 10,000 sockets at tungstenite's default 128 KiB each would be 2.5 GiB.
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024).write_buffer_size(0);
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (mut socket, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    let hello: Value = match socket.next().await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str())?,
        other => anyhow::bail!("no hello: {other:?}"),
    };
    let resume = json!({"type": "resume", "data": {"cursor": hello["data"]["cursor"]}});
    socket.send(Message::Text(resume.to_string().into())).await?;
    let join = json!({"type": "live.join", "id": "join", "data": {"room_id": room}});
    socket.send(Message::Text(join.to_string().into())).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Value>(text.as_str())?,
            Ok(Some(Ok(_))) => continue,
            Ok(other) => anyhow::bail!("socket ended before joining: {other:?}"),
            Err(_) => anyhow::bail!("live.join not answered in 30 s"),
        };
        match (frame["type"].as_str(), frame["id"].as_str()) {
            (Some("ack"), Some("join")) => return Ok(socket),
            (Some("error"), _) => anyhow::bail!("live.join refused: {frame}"),
            _ => {}
        }
    }
}

/// Reads frames until the socket ends, recording each chat message's latency. Frames are
/// not parsed as JSON: 10,000 viewers receive hundreds of megabytes a second, so the
/// stamps are found in the text (`"text":"t=…"`, the only texts this run sends).
async fn watch(mut socket: Socket, run_started: Instant, tally: &Tally, shard: &Mutex<Histogram<u64>>) {
    const MARK: &str = "\"text\":\"t=";
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        let text = text.as_str();
        if !text.starts_with(r#"{"type":"live.chat""#) {
            continue;
        }
        let now = run_started.elapsed().as_micros() as u64;
        let mut stamps = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find(MARK) {
            rest = &rest[at + MARK.len()..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if let Ok(stamp) = rest[..digits].parse::<u64>() {
                stamps.push(now.saturating_sub(stamp).max(1));
            }
        }
        if stamps.is_empty() {
            continue;
        }
        tally.frames.fetch_add(1, Ordering::Relaxed);
        tally.deliveries.fetch_add(stamps.len() as u64, Ordering::Relaxed);
        let mut histogram = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for latency in stamps {
            histogram.saturating_record(latency);
        }
    }
}

struct Sent {
    accepted: u64,
    refused: u64,
    /// From just before each request to its answer, µs: what accepting a message takes.
    post: Histogram<u64>,
}

/// Posts `options.rate` messages a second for `options.duration` s, open loop: the n-th
/// starts at n / rate s whatever the earlier ones do, from sender `n % len` through the
/// node that sender's index falls on.
async fn send_chat(
    client: &reqwest::Client,
    bases: &[String],
    tokens: &[String],
    room: &str,
    options: &Options,
    run_started: Instant,
) -> anyhow::Result<Sent> {
    let total = options.rate * options.duration;
    let interval = Duration::from_secs_f64(1.0 / options.rate.max(1) as f64);
    let start = tokio::time::Instant::now();
    let mut requests = Vec::with_capacity(total as usize);
    for n in 0..total as usize {
        tokio::time::sleep_until(start + interval * n as u32).await;
        let url = format!("{}/api/v1/live/rooms/{room}/chat", bases[n % bases.len()]);
        let (client, token) = (client.clone(), tokens[n % tokens.len()].clone());
        requests.push(tokio::spawn(async move {
            let stamp = run_started.elapsed().as_micros();
            let response =
                client.post(url).bearer_auth(token).json(&json!({"text": format!("t={stamp}")})).send().await;
            let took = (run_started.elapsed().as_micros() - stamp) as u64;
            (response.map(|response| response.status().as_u16()).unwrap_or(0), took)
        }));
    }
    let mut sent = Sent { accepted: 0, refused: 0, post: Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)? };
    let mut statuses = BTreeMap::new();
    for request in requests {
        let (status, took) = request.await?;
        sent.post.saturating_record(took.max(1));
        *statuses.entry(status).or_insert(0u64) += 1;
        if status == 202 {
            sent.accepted += 1;
        } else {
            sent.refused += 1;
        }
    }
    if sent.refused > 0 {
        eprintln!("chat posts by status: {statuses:?}");
    }
    Ok(sent)
}

/// `GET /me` from `options.me_clients` clients (each with its own user), paced: one
/// request every `me_interval_ms` each, for `duration`. Latencies in µs.
async fn probe_me(
    client: &reqwest::Client,
    bases: &[String],
    tokens: &[String],
    options: &Options,
    duration: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for task in 0..options.me_clients {
        let url = format!("{}/api/v1/me", bases[task % bases.len()]);
        let (client, token) = (client.clone(), tokens[task % tokens.len()].clone());
        let interval = Duration::from_millis(options.me_interval_ms.max(1));
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < deadline {
                ticker.tick().await;
                let sent = Instant::now();
                let response = client.get(&url).bearer_auth(&token).send().await?;
                anyhow::ensure!(response.status().is_success(), "GET /me answered {}", response.status());
                let _ = response.bytes().await;
                latency.saturating_record(sent.elapsed().as_micros() as u64);
            }
            anyhow::Ok(latency)
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    for task in tasks {
        all.add(&task.await??)?;
    }
    Ok(all)
}

/// Samples the nodes' summed RSS every 250 ms for `duration`, keeping the largest.
fn sample_rss(pids: Vec<u32>, peak: Arc<AtomicU64>, duration: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline {
            let rss: u64 = pids.iter().map(|pid| rss_of(*pid)).sum();
            peak.fetch_max(rss, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}
