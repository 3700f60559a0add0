//! Live ingest with real ffmpeg, on SQLite and PostgreSQL: ffmpeg publishes a generated
//! H.264/AAC stream (lavfi testsrc and sine, made on the fly, never committed) over RTMP
//! with the room's key; the room goes live, its HLS decodes, and ending it leaves a
//! replay. A wrong key is refused before any media and changes nothing; a publisher killed
//! mid-stream leaves the room waiting, a reconnect continues it, and silence ends it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Db, Reply, TestServer};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;

on_both_databases!(
    a_stream_pushed_with_the_rooms_key_goes_live_plays_as_hls_and_ends_as_a_replay,
    a_wrong_or_rotated_key_is_refused_before_any_media_and_changes_nothing,
    a_publisher_killed_mid_stream_leaves_the_room_waiting_a_reconnect_continues_it_and_silence_ends_it,
    a_node_ingests_at_most_its_rooms_max_and_refuses_one_more_publisher,
    plazas_ffmpeg_dying_mid_stream_is_started_again_and_the_room_stays_live,
    a_node_stopping_mid_stream_stores_its_segments_and_gives_the_ingest_lease_back,
);

pub(crate) async fn live_server(db: Db, idle_end: Duration) -> TestServer {
    TestServer::start_with(db, |config| {
        config.live.rtmp_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        config.live.idle_end = idle_end;
    })
    .await
}

/// A new room of a new host; (host token, room id, RTMP URL with the key).
pub(crate) async fn room(server: &TestServer, host: &str) -> (String, String, String) {
    let (token, _) = server.register(host).await;
    let created = server.post("/api/v1/live/rooms", Some(&token), json!({"title": "Tea tasting"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let url = created.body["ingest"]["rtmp_url"].as_str().expect("an RTMP URL").to_string();
    (token, created.body["id"].as_str().unwrap().to_string(), url)
}

/// ffmpeg publishing `seconds` of a 320x240 test pattern with a tone, at real time,
/// keyframes every second, niced; killed if the test drops it.
fn publish(url: &str, seconds: u32) -> tokio::process::Child {
    tokio::process::Command::new("nice")
        .args(["-n", "10", "ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
        ])
        .args(["-t", &seconds.to_string()])
        .args(plaza_server::demo::LIVE_PUBLISH_CODECS)
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg (apt install ffmpeg)")
}

/// Polls `check` until it gives a value, for at most `seconds`.
pub(crate) async fn wait_for<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn room_state(server: &TestServer, token: &str, room_id: &str) -> Value {
    let reply = server.get(&format!("/api/v1/live/rooms/{room_id}"), Some(token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

/// Asserts the room (the test's only one) is still only created: no segment stored and no
/// media ever read.
pub(crate) async fn assert_nothing_ingested(server: &TestServer, host: &str, room_id: &str) {
    let room = room_state(server, host, room_id).await;
    assert_eq!(room["status"], "created", "{room}");
    let mut database = server.database().await;
    let segments: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM live_segments").fetch_one(&mut database).await.unwrap();
    assert_eq!(segments, 0);
    let last_media: Option<i64> =
        sqlx::query_scalar("SELECT last_media_at FROM live_rooms").fetch_one(&mut database).await.unwrap();
    assert_eq!(last_media, None, "no media was read");
}

pub(crate) async fn wait_for_status(
    server: &TestServer,
    token: &str,
    room_id: &str,
    status: &str,
    seconds: u64,
) -> Value {
    wait_for(seconds, &format!("the room to be {status}"), || async {
        let room = room_state(server, token, room_id).await;
        (room["status"] == status).then_some(room)
    })
    .await
}

pub(crate) async fn playlist(server: &TestServer, room_id: &str, token: Option<&str>) -> Reply {
    let path = match token {
        Some(token) => format!("/live/{room_id}/index.m3u8?token={token}"),
        None => format!("/live/{room_id}/index.m3u8"),
    };
    server.get(&path, None).await
}

/// ffprobe's streams (`codec_type:codec_name`) and duration of a file or URL.
pub(crate) async fn probe(input: &str, bearer: Option<&str>) -> (Vec<String>, f64) {
    let mut command = tokio::process::Command::new("nice");
    command.args(["-n", "10", "ffprobe", "-v", "error"]);
    if let Some(token) = bearer {
        command.args(["-headers", &format!("Authorization: Bearer {token}\r\n")]);
    }
    let output = command
        .args(["-show_entries", "stream=codec_type,codec_name:format=duration", "-of", "json", input])
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(60), output).await.expect("ffprobe in time").expect("ffprobe");
    assert!(output.status.success(), "ffprobe {input}: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let streams = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stream| format!("{}:{}", stream["codec_type"].as_str().unwrap(), stream["codec_name"].as_str().unwrap()))
        .collect();
    let duration = report["format"]["duration"].as_str().and_then(|text| text.parse().ok()).unwrap_or(0.0);
    (streams, duration)
}

/// Saves a fetched segment to a file and probes it: (its streams, its duration in seconds).
pub(crate) async fn probe_segment(segment: reqwest::Response) -> (Vec<String>, f64) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seg0.ts");
    std::fs::write(&file, segment.bytes().await.unwrap()).unwrap();
    probe(file.to_str().unwrap(), None).await
}

async fn finished(mut child: tokio::process::Child) -> (bool, String) {
    let stderr = child.stderr.take();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("ffmpeg ends").expect("wait");
    let mut text = String::new();
    if let Some(mut stderr) = stderr {
        use tokio::io::AsyncReadExt;
        let _ = stderr.read_to_string(&mut text).await;
    }
    (status.success(), text)
}

async fn a_stream_pushed_with_the_rooms_key_goes_live_plays_as_hls_and_ends_as_a_replay(db: Db) {
    let server = live_server(db, Duration::from_secs(60)).await;
    let (host, room_id, url) = room(&server, "host").await;
    let (viewer, _) = server.register("viewer").await;
    let ffmpeg = publish(&url, 7);
    let live = wait_for_status(&server, &host, &room_id, "live", 30).await;
    assert_eq!(live["playback"]["hls_url"], format!("/live/{room_id}/index.m3u8"), "{live}");
    assert!(live["started_at"].is_string() && live["replay"].is_null(), "{live}");
    let listed = server.get("/api/v1/live/rooms?status=live", Some(&viewer)).await;
    assert_eq!(listed.body["items"][0]["id"], room_id.as_str(), "{}", listed.text);

    // Playback is public while live: no token.
    let window = playlist(&server, &room_id, None).await;
    assert_eq!(window.status, 200, "{}", window.text);
    assert_eq!(window.header("content-type"), Some("application/vnd.apple.mpegurl"));
    assert_eq!(window.header("cache-control"), Some("no-cache"));
    assert_eq!(window.header("access-control-allow-origin"), Some("*"));
    assert!(window.text.starts_with("#EXTM3U") && window.text.contains("seg0.ts"), "{}", window.text);
    assert!(!window.text.contains("#EXT-X-ENDLIST"), "{}", window.text);
    let segment = server.client.get(format!("{}/live/{room_id}/seg0.ts", server.base)).send().await.unwrap();
    assert_eq!(segment.status(), 200);
    assert_eq!(segment.headers()["content-type"], "video/mp2t");
    assert!(segment.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    let (streams, duration) = probe_segment(segment).await;
    assert_eq!(streams, vec!["video:h264", "audio:aac"], "copied, not transcoded");
    assert!(duration > 0.5 && duration < 3.0, "a short segment: {duration}");

    let (succeeded, stderr) = finished(ffmpeg).await;
    assert!(succeeded, "ffmpeg published: {stderr}");
    // The room stays live after the publisher stops (a reconnect would continue it),
    // until the host ends it.
    assert_eq!(room_state(&server, &viewer, &room_id).await["status"], "live");
    let ended = server.post(&format!("/api/v1/live/rooms/{room_id}/end"), Some(&host), json!({})).await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    assert_eq!(ended.body["replay"]["hls_url"], format!("/live/{room_id}/index.m3u8"), "{}", ended.text);
    assert!(ended.body["playback"].is_null());

    // The replay is for signed-in users: the whole recording, closed.
    playlist(&server, &room_id, None).await.assert_problem(401, "unauthenticated");
    // The publisher's session may still be storing its last segment; it writes the
    // replay again as it stops.
    let replay = wait_for(10, "the closed recording", || async {
        let replay = playlist(&server, &room_id, Some(&viewer)).await;
        assert_eq!(replay.status, 200, "{}", replay.text);
        replay.text.contains("#EXT-X-ENDLIST").then_some(replay)
    })
    .await;
    assert!(replay.text.contains("#EXT-X-MEDIA-SEQUENCE:0"), "{}", replay.text);
    let segment = |token: Option<&str>| {
        let mut request = server.client.get(format!("{}/live/{room_id}/seg1.ts", server.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        server.raw(request)
    };
    segment(None).await.assert_problem(401, "unauthenticated");
    let signed_in = segment(Some(&viewer)).await;
    assert_eq!(signed_in.status, 200);
    assert_eq!(signed_in.header("cache-control"), Some("private, max-age=31536000, immutable"));
    assert!(replay.text.matches(".ts").count() >= 5, "about a segment a second: {}", replay.text);
    let (streams, duration) = probe(&format!("{}/live/{room_id}/index.m3u8", server.base), Some(&viewer)).await;
    assert!(streams.contains(&"video:h264".to_string()), "{streams:?}");
    assert!((5.0..9.0).contains(&duration), "the recording is the stream: {duration} s");
    let replays = server.get("/api/v1/live/rooms?status=ended", Some(&viewer)).await;
    assert_eq!(replays.body["items"][0]["id"], room_id.as_str(), "{}", replays.text);
    server.stop().await;
}

async fn a_wrong_or_rotated_key_is_refused_before_any_media_and_changes_nothing(db: Db) {
    let server = live_server(db, Duration::from_secs(60)).await;
    let (host, room_id, url) = room(&server, "host").await;
    let base = url.rsplit_once('/').unwrap().0.to_string();
    let rotated = server.post(&format!("/api/v1/live/rooms/{room_id}/stream-key"), Some(&host), json!({})).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let wrong = format!("{base}/{}", "0".repeat(64));
    let mut publishers = Vec::new();
    for refused in [wrong, format!("{base}/not-a-key"), url.clone(), url.replace("/live/", "/other/")] {
        publishers.push((refused.clone(), publish(&refused, 5)));
    }
    for (refused, ffmpeg) in publishers {
        let (succeeded, _) = finished(ffmpeg).await;
        assert!(!succeeded, "{refused} was refused");
    }
    assert_nothing_ingested(&server, &host, &room_id).await;
    server.stop().await;
}

async fn a_publisher_killed_mid_stream_leaves_the_room_waiting_a_reconnect_continues_it_and_silence_ends_it(db: Db) {
    let idle_end = Duration::from_secs(3);
    let server = live_server(db, idle_end).await;
    let (host, room_id, url) = room(&server, "host").await;
    let mut first = publish(&url, 60);
    wait_for_status(&server, &host, &room_id, "live", 30).await;
    wait_for(30, "three segments", || async {
        let text = playlist(&server, &room_id, None).await.text;
        text.contains("seg2.ts").then_some(())
    })
    .await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let killed_at = tokio::time::Instant::now();
    let waiting = room_state(&server, &host, &room_id).await;
    if killed_at.elapsed() < Duration::from_secs(2) {
        assert_eq!(waiting["status"], "live", "the room waits for the publisher to come back");
    }

    // Back within the idle time: the same room, its recording continued after a
    // discontinuity.
    let mut second = publish(&url, 60);
    wait_for(30, "the reconnect's segments", || async {
        let text = playlist(&server, &room_id, None).await.text;
        text.contains("#EXT-X-DISCONTINUITY\n").then_some(())
    })
    .await;
    assert_eq!(room_state(&server, &host, &room_id).await["status"], "live");
    second.start_kill().unwrap();
    second.wait().await.unwrap();
    let stopped_at = tokio::time::Instant::now();
    let ended = wait_for_status(&server, &host, &room_id, "ended", 30).await;
    assert!(stopped_at.elapsed() >= idle_end - Duration::from_millis(500), "not before the idle time");
    assert_eq!(ended["replay"]["hls_url"], format!("/live/{room_id}/index.m3u8"), "{ended}");
    let (viewer, _) = server.register("viewer").await;
    let replay = playlist(&server, &room_id, Some(&viewer)).await;
    assert!(
        replay.text.contains("#EXT-X-ENDLIST") && replay.text.contains("#EXT-X-DISCONTINUITY\n"),
        "{}",
        replay.text
    );
    let (streams, _) = probe(&format!("{}/live/{room_id}/index.m3u8", server.base), Some(&viewer)).await;
    assert!(streams.contains(&"video:h264".to_string()), "{streams:?}");
    server.stop().await;
}

async fn a_node_ingests_at_most_its_rooms_max_and_refuses_one_more_publisher(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.live.rtmp_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        config.live.rooms_max = 1;
    })
    .await;
    let (first_host, first_room, first_url) = room(&server, "first").await;
    let (second_host, second_room, second_url) = room(&server, "second").await;
    let _streaming = publish(&first_url, 30);
    wait_for_status(&server, &first_host, &first_room, "live", 30).await;
    let (succeeded, _) = finished(publish(&second_url, 5)).await;
    assert!(!succeeded, "the node is full");
    assert_eq!(room_state(&server, &second_host, &second_room).await["status"], "created");
    assert_eq!(room_state(&server, &first_host, &first_room).await["status"], "live");
    // A browser player on another origin asks before sending its token.
    let preflight = server
        .raw(server.client.request(reqwest::Method::OPTIONS, format!("{}/live/{first_room}/index.m3u8", server.base)))
        .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(preflight.header("access-control-allow-headers").unwrap().contains("Authorization"));
    server.stop().await;
}

/// The pids of the packaging ffmpeg this test's server started for `room_id`: children of
/// this process whose command line names the room's scratch directory.
fn packagers_of(room_id: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let command = String::from_utf8_lossy(&command);
        if parent == Some(me) && command.contains("pipe:0") && command.contains(room_id) {
            pids.push(pid);
        }
    }
    pids
}

async fn plazas_ffmpeg_dying_mid_stream_is_started_again_and_the_room_stays_live(db: Db) {
    let server = live_server(db, Duration::from_secs(60)).await;
    let (host, room_id, url) = room(&server, "host").await;
    let _publisher = publish(&url, 30);
    wait_for_status(&server, &host, &room_id, "live", 30).await;
    let packager = wait_for(10, "the packaging ffmpeg", || async { packagers_of(&room_id).pop() }).await;
    let killed = std::process::Command::new("kill").args(["-9", &packager.to_string()]).status().unwrap();
    assert!(killed.success());
    let text = wait_for(30, "segments from a new ffmpeg", || async {
        let text = playlist(&server, &room_id, None).await.text;
        text.contains("#EXT-X-DISCONTINUITY\n").then_some(text)
    })
    .await;
    assert!(!text.contains("ENDLIST"), "{text}");
    assert_eq!(room_state(&server, &host, &room_id).await["status"], "live");
    let restarted = wait_for(10, "the new ffmpeg", || async { packagers_of(&room_id).pop() }).await;
    assert_ne!(restarted, packager);
    server.stop().await;
}

async fn a_node_stopping_mid_stream_stores_its_segments_and_gives_the_ingest_lease_back(db: Db) {
    let server = live_server(db, Duration::from_secs(60)).await;
    let (host, room_id, url) = room(&server, "host").await;
    let _publisher = publish(&url, 30);
    wait_for_status(&server, &host, &room_id, "live", 30).await;
    wait_for(30, "three segments", || async {
        playlist(&server, &room_id, None).await.text.contains("seg2.ts").then_some(())
    })
    .await;
    let database_url = server.database_url.clone();
    let _data = server.stop_keeping_data().await;
    sqlx::any::install_default_drivers();
    let mut database = <sqlx::AnyConnection as sqlx::Connection>::connect(&database_url).await.unwrap();
    let (status, node): (String, Option<String>) =
        sqlx::query_as("SELECT status, ingest_node FROM live_rooms").fetch_one(&mut database).await.unwrap();
    assert_eq!(status, "live", "a publisher reconnecting to another node continues the room");
    assert_eq!(node, None, "the lease was given back, not left to expire");
    let segments: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM live_segments").fetch_one(&mut database).await.unwrap();
    assert!(segments >= 3, "{segments} segments");
}

/// Two nodes on one PostgreSQL, one NATS and one object store (a shared directory, as one
/// S3 bucket would be): a stream ingested on node A (node B ingests nothing) plays from
/// node B, its playlist and segments decoding there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ingested_on_one_node_plays_from_the_other() {
    let nats = std::env::var("PLAZA_TEST_NATS_URL")
        .expect("PLAZA_TEST_NATS_URL must name a NATS server for the cluster tests; scripts/test starts one");
    let dir = tempfile::tempdir().unwrap();
    let database_url = crate::support::fresh_database(Db::Postgres, dir.path()).await;
    let shared = dir.path().join("shared");
    let node = |ingests: bool| {
        let (nats, shared) = (nats.clone(), shared.clone());
        move |config: &mut plaza_server::config::Config| {
            config.nats_url = Some(nats);
            config.data_dir = shared;
            config.live.rtmp_addr = ingests.then(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        }
    };
    let node_a = TestServer::start_on(&database_url, node(true)).await;
    let node_b = TestServer::start_on(&database_url, node(false)).await;
    let (host, room_id, url) = room(&node_a, "cluster_host").await;
    let (viewer, _) = node_b.register("cluster_viewer").await;
    let ffmpeg = publish(&url, 6);
    // The host asks node B: a room not yet live is visible to its host only.
    let live = wait_for_status(&node_b, &host, &room_id, "live", 30).await;
    assert_eq!(room_state(&node_b, &viewer, &room_id).await["status"], "live");
    assert_eq!(live["playback"]["hls_url"], format!("/live/{room_id}/index.m3u8"), "{live}");
    let window = wait_for(30, "two segments listed on node B", || async {
        let window = playlist(&node_b, &room_id, None).await;
        (window.status == 200 && window.text.contains("seg1.ts")).then_some(window)
    })
    .await;
    assert!(window.text.starts_with("#EXTM3U"), "{}", window.text);
    let segment = node_b.client.get(format!("{}/live/{room_id}/seg0.ts", node_b.base)).send().await.unwrap();
    assert_eq!(segment.status(), 200);
    let (streams, duration) = probe_segment(segment).await;
    assert_eq!(streams, vec!["video:h264", "audio:aac"], "node B serves node A's segment");
    assert!(duration > 0.5, "a whole segment: {duration}");
    let (succeeded, stderr) = finished(ffmpeg).await;
    assert!(succeeded, "ffmpeg published: {stderr}");
    let ended = node_b.post(&format!("/api/v1/live/rooms/{room_id}/end"), Some(&host), json!({})).await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    node_a.stop().await;
    node_b.stop().await;
}
