//! Crash safety of transcoding: the node is killed with SIGKILL while ffmpeg works on a
//! video and started again; the job's lease runs out, the restarted node claims it, and
//! the video becomes ready exactly once (one `video.ready`, playable), on both databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use crate::support::process::{json_of, ChildNode};
use crate::support::Db;
use serde_json::{json, Value};
use std::time::Duration;

on_both_databases!(a_transcode_killed_midway_finishes_once_after_a_restart);

/// A 720p clip long enough that re-encoding it takes a few seconds, so the kill lands
/// while ffmpeg runs.
fn heavy_clip(dir: &std::path::Path) -> Vec<u8> {
    let out = dir.join("heavy.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-f", "lavfi", "-i"])
        .args(["sine=frequency=440", "-t", "20", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "6M"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-y"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

async fn database(db: Db, dir: &std::path::Path, url: Option<&str>) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = match db {
        Db::Sqlite => plaza_store::Store::sqlite_url_in(dir),
        Db::Postgres => url.unwrap().to_string(),
    };
    <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap()
}

async fn a_transcode_killed_midway_finishes_once_after_a_restart(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let mut env = Vec::new();
    let mut pg_url = None;
    if db == Db::Postgres {
        let url = support::fresh_database(Db::Postgres, dir.path()).await;
        env.push(("PLAZA_DATABASE_URL".to_string(), url.clone()));
        pg_url = Some(url);
    }
    let file = heavy_clip(dir.path());
    let mut node = ChildNode::spawn_in(env, dir);
    node.wait_ready().await;
    let base = node.base();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let registered: Value = json_of(
        client
            .post(format!("{base}/api/v1/auth/register"))
            .json(&json!({"username": "crash_vid", "password": "password-crash", "display_name": "Crash"})),
    )
    .await;
    let (token, user_id) =
        (registered["token"].as_str().unwrap().to_string(), registered["user"]["id"].as_str().unwrap().to_string());
    let created = client
        .post(format!("{base}/api/v1/videos/uploads"))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", file.len().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let sent = client
        .patch(format!("{base}{location}"))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(file)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 204);
    let upload_id = location.rsplit('/').next().unwrap();
    let published: Value = json_of(
        client
            .post(format!("{base}/api/v1/videos"))
            .bearer_auth(&token)
            .json(&json!({"upload_id": upload_id, "caption": "survives #crash", "visibility": "public"})),
    )
    .await;
    let video_id = published["id"].as_str().unwrap().to_string();

    // Wait until a node holds the job and ffmpeg has started writing, then kill the node.
    let mut connection = database(db, &data, pg_url.as_deref()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, leased): (String, Option<i64>) =
            sqlx::query_as("SELECT status, lease_until FROM videos WHERE id = $1")
                .bind(&video_id)
                .fetch_one(&mut connection)
                .await
                .unwrap();
        assert_eq!(status, "processing", "the transcode finished before the kill; make the clip heavier");
        let scratch_written = std::fs::read_dir(data.join("video-work"))
            .map(|entries| entries.flatten().any(|entry| entry.path().join("0.mp4").exists()))
            .unwrap_or(false);
        if leased.is_some() && scratch_written {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the job was never claimed: {}", node.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.kill();
    node.respawn();
    node.wait_ready().await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let video = loop {
        let video: Value = json_of(client.get(format!("{base}/api/v1/videos/{video_id}")).bearer_auth(&token)).await;
        if video["status"] != "processing" {
            break video;
        }
        assert!(tokio::time::Instant::now() < deadline, "still processing 4 minutes after the restart: {}", node.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!((video["width"].as_i64(), video["height"].as_i64()), (Some(1280), Some(720)));
    let attempts: i64 = sqlx::query_scalar("SELECT attempts FROM videos WHERE id = $1")
        .bind(&video_id)
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(attempts, 2, "one attempt killed, one that finished");
    let announced: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM user_events WHERE user_id = $1 AND type = 'video.ready'")
            .bind(&user_id)
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert_eq!(announced, 1, "video.ready exactly once");
    let mp4 = client
        .get(format!("{base}{}", video["playback"]["mp4_url"].as_str().unwrap()))
        .bearer_auth(&token)
        .header("Range", "bytes=0-7")
        .send()
        .await
        .unwrap();
    assert_eq!(mp4.status(), 206);
    assert_eq!(&mp4.bytes().await.unwrap()[4..8], b"ftyp");
}
