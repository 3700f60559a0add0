//! (c) The cost of a room that must be transcoded: a phone's browser camera. ffmpeg
//! encodes the test pattern at real time as Chromium's MediaRecorder does (VP8 + Opus
//! WebM, realtime settings) and the bench forwards its output, as it comes, over the
//! room's ingest socket (`ingest.websocket_url`: the key first, then binary chunks), as
//! the client's "Go live from this phone" does. The server's ffmpeg transcodes it to
//! H.264/AAC; its CPU and the server's are measured as for the copying room.

use super::ingest::{cpu_sample, print_cost, CpuSample};
use super::{wait_live, Options};
use crate::server::{register_many, run_tag, PlazaServer};
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

/// A read of the encoder's output forwarded as one socket message (MediaRecorder's
/// chunks of a second are a few tens of KiB at this size).
const CHUNK_BYTES: usize = 64 * 1024;

pub(super) async fn browser_ingest_cost(
    options: &Options,
    server: &PlazaServer,
    client: &reqwest::Client,
    idle_share: f64,
) -> anyhow::Result<()> {
    let backend = options.target.backend();
    let host = register_many(client, &server.base, vec![format!("phone_{}", run_tag())]).await?.remove(0);
    let created: Value = client
        .post(format!("{}/api/v1/live/rooms", server.base))
        .bearer_auth(&host.0)
        .json(&json!({"title": "Phone room"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let room = created["id"].as_str().context("room id")?.to_string();
    let key = created["stream_key"].as_str().context("stream key")?;
    let path = created["ingest"]["websocket_url"].as_str().context("no browser ingest")?;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{}{path}", server.base.replacen("http://", "ws://", 1))).await?;
    socket.send(Message::Text(json!({"stream_key": key}).to_string().into())).await?;
    let accepted = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.context("no answer")?;
    anyhow::ensure!(
        matches!(&accepted, Some(Ok(Message::Text(text))) if text.contains("accepted")),
        "the ingest socket refused the key: {accepted:?}"
    );
    let mut recorder = record(options.ingest_seconds)?;
    let recorder_pid = recorder.id();
    let mut output = recorder.stdout.take().context("ffmpeg's stdout")?;
    let (client, base, token) = (client.clone(), server.base.clone(), host.0.clone());
    let waiting = tokio::spawn(async move { wait_live(&client, &base, &token, &room).await });
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut streaming: Option<CpuSample> = None;
    let mut last = cpu_sample(server.pid(), recorder_pid);
    loop {
        let read = output.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        socket.send(Message::Binary(buffer[..read].to_vec().into())).await?;
        if streaming.is_none() && waiting.is_finished() {
            // From the room going live (its first segment) to the recording's end.
            streaming = Some(cpu_sample(server.pid(), recorder_pid));
        }
        if last.at.elapsed() >= Duration::from_millis(250) {
            last = cpu_sample(server.pid(), recorder_pid);
        }
    }
    last = cpu_sample(server.pid(), recorder_pid);
    let _ = recorder.wait().await;
    waiting.await??;
    let streaming = streaming.context("the room did not go live while the recording lasted")?;
    let _ = socket.close(None).await;
    print_cost(
        backend,
        "transcode: a browser's VP8/Opus WebM over the ingest socket to H.264/AAC",
        idle_share,
        &[streaming, last],
    );
    Ok(())
}

/// `seconds` of the 640x360 30 fps pattern with a tone, encoded at real time as
/// Chromium's MediaRecorder does, as a live WebM on stdout; every argument fixed.
fn record(seconds: u64) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new("nice")
        .args(["-n", "10", "ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error"])
        .args(["-re", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string(), "-map", "0:v", "-map", "1:a"])
        .args(["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M", "-g", "30"])
        .args(["-c:a", "libopus", "-b:a", "64k"])
        .args(["-f", "webm", "-live", "1", "-cluster_time_limit", "1000", "pipe:1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("ffmpeg (apt install ffmpeg)")
}
