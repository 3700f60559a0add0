//! `plaza-bench chat`: the real-time path end to end. Opens many WebSockets, drives
//! messages over them, and measures what clients see: delivered messages per second and
//! send-to-receive latency (HdrHistogram), plus memory per idle socket.
//!
//! Latency is measured inside this one process: each message's text carries the
//! microseconds since the run started when it was sent, and the receiving socket's task
//! subtracts that from its own clock.

use crate::server::{register_many, run_tag, PlazaServer, Target};
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub target: Target,
    /// Start two nodes connected by this NATS server (needs --database-url).
    #[arg(long, requires = "database_url")]
    pub nats_url: Option<String>,
    /// Idle sockets to open (0 to skip).
    #[arg(long, default_value_t = 20_000)]
    pub idle_sockets: usize,
    /// Users the idle sockets belong to, round robin (many devices of a few users).
    #[arg(long, default_value_t = 100)]
    pub idle_users: usize,
    /// 1:1 conversations driven at once (0 to skip).
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Messages per second offered across all pairs.
    #[arg(long = "rate", default_value_t = 5_000)]
    pub rate_per_second: u64,
    /// Seconds of 1:1 sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Members of the fan-out group, its sender included (0 to skip).
    #[arg(long, default_value_t = 500)]
    pub group_size: usize,
    /// Messages sent to the group, one at a time.
    #[arg(long, default_value_t = 20)]
    pub group_messages: usize,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn run(options: Options) -> anyhow::Result<()> {
    let backend = match (&options.target.database_url, &options.nats_url) {
        (Some(_), Some(_)) => "postgres, 2 nodes + NATS",
        (Some(_), None) => "postgres",
        (None, _) => "sqlite",
    };
    let settings = [
        ("PLAZA_AUTH_ATTEMPTS_PER_ADDRESS", "100000"),
        ("PLAZA_AUTH_ATTEMPTS_PER_USERNAME", "100000"),
        ("PLAZA_GROUP_MEMBERS_MAX", "1000"),
    ];
    let limits = socket_limits(&options);
    let mut env: Vec<(&str, &str)> = settings.to_vec();
    env.extend(limits.iter().map(|(name, value)| (*name, value.as_str())));
    if let Some(url) = options.nats_url.as_deref() {
        env.push(("PLAZA_NATS_URL", url));
    }
    let mut nodes = vec![PlazaServer::start(&options.target.plaza, options.target.database_url.as_deref(), &env)?];
    if options.nats_url.is_some() {
        nodes.push(PlazaServer::start(&options.target.plaza, options.target.database_url.as_deref(), &env)?);
    }
    let client = reqwest::Client::new();
    for node in &nodes {
        crate::me::wait_ready(&client, &node.base).await?;
    }
    let bases: Vec<String> = nodes.iter().map(|node| node.base.clone()).collect();
    println!("## chat ({backend})");
    println!();

    if options.idle_sockets > 0 {
        idle_sockets(&client, &bases, &nodes, options.idle_sockets, options.idle_users).await?;
    }
    if options.pairs > 0 {
        direct_throughput(&client, &bases, &options).await?;
    }
    if options.group_size > 0 {
        group_fanout(&client, &bases, &options).await?;
    }
    Ok(())
}

/// The server's connection caps the run would exceed at their defaults, raised to what it
/// holds at once (its parts run one after another): the idle sockets, many to a user and
/// 250 to a source address; then the 1:1 pairs' and the group's sockets, all from 127.0.0.1.
fn socket_limits(options: &Options) -> Vec<(&'static str, String)> {
    let at_once = options.idle_sockets.max(options.pairs * 2).max(options.group_size) + 64;
    let per_address = (options.pairs * 2).max(options.group_size).max(250) + 64;
    let per_user = options.idle_sockets.div_ceil(options.idle_users.max(1)) + 2;
    let mut limits = Vec::new();
    if at_once > 10_000 {
        limits.push(("PLAZA_CONNECTIONS_MAX", at_once.to_string()));
    }
    if per_address > 256 {
        limits.push(("PLAZA_CONNECTIONS_PER_ADDRESS_MAX", per_address.to_string()));
    }
    if per_user > 16 {
        limits.push(("PLAZA_SOCKETS_PER_USER_MAX", per_user.min(10_000).to_string()));
    }
    limits
}

async fn idle_sockets(
    client: &reqwest::Client,
    bases: &[String],
    nodes: &[PlazaServer],
    count: usize,
    user_count: usize,
) -> anyhow::Result<()> {
    // Many devices of a few users: registering is deliberately slow (argon2id).
    let users = register_users(client, &bases[0], "idle", user_count.max(1)).await?;
    let rss_before: u64 = nodes.iter().map(PlazaServer::rss_bytes).sum();
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(count);
    for n in 0..count {
        let base = &bases[n % bases.len()];
        let (token, _) = &users[n % users.len()];
        // Spread over 127.0.0.x source addresses so that the run never runs out of ports.
        let source = std::net::Ipv4Addr::new(127, 0, ((n / 20_000) % 250) as u8, 1 + ((n / 250) % 250) as u8);
        sockets.push(connect(base, token, Some(source)).await.with_context(|| format!("socket {n}"))?);
    }
    let opened_in = started.elapsed();
    // Let the server settle its per-connection buffers before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after: u64 = nodes.iter().map(PlazaServer::rss_bytes).sum();
    let per_socket = rss_after.saturating_sub(rss_before) as f64 / count as f64;
    println!("| idle sockets | opened in | server RSS before | after | per socket |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {count} | {:.1} s | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
        opened_in.as_secs_f64(),
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0,
        per_socket / 1024.0
    );
    println!();
    for mut socket in sockets {
        let _ = socket.close(None).await;
    }
    Ok(())
}

async fn direct_throughput(client: &reqwest::Client, bases: &[String], options: &Options) -> anyhow::Result<()> {
    let users = register_users(client, &bases[0], "pair", options.pairs * 2).await?;
    let run_started = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let latency = latencies()?;
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for pair in 0..options.pairs {
        let (sender_token, _) = &users[pair * 2];
        let (receiver_token, receiver_id) = &users[pair * 2 + 1];
        let conversation =
            create_conversation(client, &bases[0], sender_token, "direct", std::slice::from_ref(receiver_id)).await?;
        // Sender and receiver on different nodes when there are two.
        let receiver_socket = connect(&bases[(pair + 1) % bases.len()], receiver_token, None).await?;
        receivers.push(tokio::spawn(receive(receiver_socket, run_started, received.clone(), latency.clone())));
        let sender_socket = connect(&bases[pair % bases.len()], sender_token, None).await?;
        senders.push((sender_socket, conversation));
    }
    let per_sender_interval = Duration::from_secs_f64(options.pairs as f64 / options.rate_per_second.max(1) as f64);
    let deadline = Instant::now() + Duration::from_secs(options.duration);
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (index, (socket, conversation)) in senders.into_iter().enumerate() {
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            send_paced(socket, conversation, index, per_sender_interval, deadline, run_started, sent).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let sending_took = options.duration as f64;
    let total_sent = sent.load(Ordering::Relaxed);
    // Wait for stragglers: everything sent should arrive.
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < total_sent && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for receiver in &receivers {
        receiver.abort();
    }
    let histogram = snapshot(&latency);
    let delivered = histogram.len();
    println!("| 1:1 chats | offered rate | sent | delivered | delivered/s | p50 | p99 | max |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} pairs | {}/s | {total_sent} | {delivered} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms |",
        options.pairs,
        options.rate_per_second,
        delivered as f64 / sending_took,
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0
    );
    println!();
    Ok(())
}

async fn group_fanout(client: &reqwest::Client, bases: &[String], options: &Options) -> anyhow::Result<()> {
    let users = register_users(client, &bases[0], "member", options.group_size).await?;
    let (owner_token, _) = &users[0];
    let others: Vec<String> = users[1..].iter().map(|(_, id)| id.clone()).collect();
    // Only contacts may be added to a group: the owner befriends every member first.
    for (token, id) in &users[1..] {
        add_contact(client, &bases[0], owner_token, id).await?;
        add_contact(client, &bases[0], token, &users[0].1).await?;
    }
    let conversation = create_conversation(client, &bases[0], owner_token, "group", &others).await?;
    let run_started = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let latency = latencies()?;
    let mut receivers = Vec::new();
    for (index, (token, _)) in users.iter().enumerate().skip(1) {
        let socket = connect(&bases[index % bases.len()], token, None).await?;
        receivers.push(tokio::spawn(receive(socket, run_started, received.clone(), latency.clone())));
    }
    let mut sender = connect(&bases[0], owner_token, None).await?;
    let members = (options.group_size - 1) as u64;
    for n in 0..options.group_messages {
        let before = received.load(Ordering::Relaxed);
        let stamp = run_started.elapsed().as_micros();
        let frame = json!({"type": "message.send", "id": format!("g{n}"), "data": {
            "conversation_id": conversation, "client_id": format!("group-{n}"), "kind": "text",
            "body": {"text": format!("t={stamp}")}}});
        sender.send(Message::Text(frame.to_string().into())).await?;
        // One message at a time: the next goes once every member has this one.
        let deadline = Instant::now() + Duration::from_secs(30);
        while received.load(Ordering::Relaxed) < before + members && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(1), sender.next()).await {}
    }
    for receiver in &receivers {
        receiver.abort();
    }
    let histogram = snapshot(&latency);
    println!("| group fan-out | messages | deliveries | expected | p50 | p99 | max |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} members | {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
        options.group_size,
        options.group_messages,
        histogram.len(),
        members * options.group_messages as u64,
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0
    );
    println!();
    Ok(())
}

/// Sends one message every `interval` until `deadline`, reading acks as they come.
async fn send_paced(
    socket: Socket,
    conversation: String,
    index: usize,
    interval: Duration,
    deadline: Instant,
    run_started: Instant,
    sent: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = socket.split();
    // Drain acks and echoes so the server never sees this client as slow.
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while Instant::now() < deadline {
        ticker.tick().await;
        let stamp = run_started.elapsed().as_micros();
        let frame = json!({"type": "message.send", "id": n.to_string(), "data": {
            "conversation_id": conversation, "client_id": format!("{index}-{n}"), "kind": "text",
            "body": {"text": format!("t={stamp}")}}});
        sink.send(Message::Text(frame.to_string().into())).await?;
        sent.fetch_add(1, Ordering::Relaxed);
        n += 1;
    }
    // Give the last acks a moment, then let the drain task end with the socket.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drain.abort();
    Ok(())
}

/// Reads `message.new` frames until aborted, recording each one's latency in µs.
async fn receive(mut socket: Socket, run_started: Instant, received: Arc<AtomicU64>, latencies: Latencies) {
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else { continue };
        if frame["type"] != "message.new" {
            continue;
        }
        let stamp = frame["data"]["body"]["text"]
            .as_str()
            .and_then(|t| t.strip_prefix("t="))
            .and_then(|t| t.parse::<u128>().ok());
        let Some(stamp) = stamp else { continue };
        let latency = run_started.elapsed().as_micros().saturating_sub(stamp).clamp(1, 60_000_000) as u64;
        if let Ok(mut histogram) = latencies.lock() {
            let _ = histogram.record(latency);
        }
        received.fetch_add(1, Ordering::Relaxed);
    }
}

/// Send-to-receive latencies in microseconds, shared by the receiving tasks.
type Latencies = Arc<std::sync::Mutex<Histogram<u64>>>;

fn latencies() -> anyhow::Result<Latencies> {
    Ok(Arc::new(std::sync::Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?)))
}

fn snapshot(latencies: &Latencies) -> Histogram<u64> {
    latencies.lock().map(|histogram| histogram.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
}

async fn connect(base: &str, token: &str, source: Option<std::net::Ipv4Addr>) -> anyhow::Result<Socket> {
    let url = format!("{}/api/v1/ws?token={token}", base.replace("http://", "ws://"));
    let stream = match source {
        Some(source) => {
            let address: std::net::SocketAddr = base.trim_start_matches("http://").parse()?;
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::new(source.into(), 0))?;
            let tcp = socket.connect(address).await?;
            tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await?.0
        }
        None => tokio_tungstenite::connect_async(url).await?.0,
    };
    let mut stream = stream;
    // hello, then resume from its cursor: live from now on.
    let hello: Value = match stream.next().await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str())?,
        other => anyhow::bail!("no hello: {other:?}"),
    };
    let resume = json!({"type": "resume", "data": {"cursor": hello["data"]["cursor"]}});
    stream.send(Message::Text(resume.to_string().into())).await?;
    Ok(stream)
}

async fn register_users(
    client: &reqwest::Client,
    base: &str,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let run = run_tag();
    register_many(client, base, (0..count).map(|n| format!("{prefix}_{run}_{n}")).collect()).await
}

/// Asks `user_id` to be a contact of `token`'s user, or accepts their request.
async fn add_contact(client: &reqwest::Client, base: &str, token: &str, user_id: &str) -> anyhow::Result<()> {
    client
        .post(format!("{base}/api/v1/contacts"))
        .bearer_auth(token)
        .json(&json!({"user_id": user_id}))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

async fn create_conversation(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    kind: &str,
    member_ids: &[String],
) -> anyhow::Result<String> {
    let body: Value = client
        .post(format!("{base}/api/v1/conversations"))
        .bearer_auth(token)
        .json(&json!({"kind": kind, "member_ids": member_ids}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["id"].as_str().context("conversation id")?.to_string())
}
