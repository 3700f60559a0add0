//! Per-user resource caps (issue 18, point 4): real-time sockets per user on a node,
//! uploads per day in count and bytes, and uploads never sent being cleaned up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Db, TestServer, PIXEL_PNG};
use serde_json::json;
use std::time::Duration;

on_both_databases!(
    uploads_over_the_daily_count_or_bytes_are_refused_with_retry_after,
    an_upload_never_sent_is_deleted_after_a_day_and_a_sent_image_is_kept,
);

/// A PNG signature padded to `size` bytes (the server checks signatures, not pixels).
fn png_of(size: usize) -> Vec<u8> {
    let mut bytes = PIXEL_PNG.to_vec();
    bytes.resize(size.max(PIXEL_PNG.len()), 0);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_the_socket_cap_is_refused_before_the_upgrade() {
    let server = TestServer::start_with(Db::Sqlite, |config| config.gateway.sockets_per_user_max = 3).await;
    let [(ann, _), (bob, _)] = server.register_all(["sock_ann", "sock_bob"]).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(server.socket_raw(&ann).await.0);
    }
    // The fourth is answered over plain HTTP, without switching protocols.
    let refused = server
        .raw(
            server
                .client
                .get(format!("{}/api/v1/ws", server.base))
                .bearer_auth(&ann)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        )
        .await;
    refused.assert_problem(429, "too_many_connections");
    assert!(refused.header("retry-after").is_some());
    // Another user is not affected, and a closed socket frees its place.
    drop(server.socket_raw(&bob).await);
    drop(sockets.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request =
            format!("{}/api/v1/ws", server.base.replace("http://", "ws://")).into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {ann}").parse().unwrap());
        if tokio_tungstenite::connect_async(request).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the closed socket's place was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn uploads_over_the_daily_count_or_bytes_are_refused_with_retry_after(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.media.uploads_per_day = 3;
        config.media.upload_bytes_per_day = 1024 * 1024;
    })
    .await;
    let [(ann, _), (bob, _)] = server.register_all(["quota_ann", "quota_bob"]).await;
    // Concurrent uploads: exactly three of five get through.
    let attempts =
        futures_util::future::join_all((0..5).map(|_| server.upload_media(&ann, "file", PIXEL_PNG.to_vec()))).await;
    let stored = attempts.iter().filter(|reply| reply.status == 201).count();
    assert_eq!(stored, 3, "{:?}", attempts.iter().map(|reply| reply.status).collect::<Vec<_>>());
    for refused in attempts.iter().filter(|reply| reply.status != 201) {
        refused.assert_problem(429, "upload_limit_exceeded");
        let retry_after: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=86_400).contains(&retry_after), "until the next UTC day: {retry_after}");
    }
    // Bytes: 600 KiB fits, another 600 KiB does not, and what was refused stored nothing.
    assert_eq!(server.upload_media(&bob, "file", png_of(600 * 1024)).await.status, 201);
    server.upload_media(&bob, "file", png_of(600 * 1024)).await.assert_problem(429, "upload_limit_exceeded");
    let mut database = server.database().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM media").fetch_one(&mut database).await.unwrap();
    assert_eq!(rows, 4, "three of ann's and one of bob's");
    // The count is in the database: a node started afresh on it still refuses.
    if db == Db::Sqlite {
        let dir = server.stop_keeping_data().await;
        let url = plaza_store::Store::sqlite_url_in(dir.path());
        let again = TestServer::start_on(&url, |config| config.media.uploads_per_day = 3).await;
        let token = again
            .post("/api/v1/auth/login", None, json!({"username": "quota_ann", "password": "password-quota_ann"}))
            .await
            .body["token"]
            .as_str()
            .unwrap()
            .to_string();
        again.upload_media(&token, "file", PIXEL_PNG.to_vec()).await.assert_problem(429, "upload_limit_exceeded");
        drop(dir);
    }
}

async fn an_upload_never_sent_is_deleted_after_a_day_and_a_sent_image_is_kept(db: Db) {
    let server = TestServer::start_with(db, |config| config.media.cleanup_interval = Duration::from_millis(100)).await;
    let [(ann, _), (bob, bob_id)] = server.register_all(["clean_ann", "clean_bob"]).await;
    let sent_id = server.upload_media(&ann, "file", PIXEL_PNG.to_vec()).await.body["id"].as_str().unwrap().to_string();
    let unsent_id =
        server.upload_media(&ann, "file", PIXEL_PNG.to_vec()).await.body["id"].as_str().unwrap().to_string();
    let fresh_id = server.upload_media(&ann, "file", PIXEL_PNG.to_vec()).await.body["id"].as_str().unwrap().to_string();
    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;
    let sent = server.send_image(&ann, &conversation, "kept", &sent_id).await;
    assert_eq!(sent.status, 201, "{}", sent.text);
    // Two of them were uploaded "two days ago".
    let mut database = server.database().await;
    let two_days_ms: i64 = 2 * 86_400_000;
    sqlx::query("UPDATE media SET created_at = created_at - $1 WHERE id = $2 OR id = $3")
        .bind(two_days_ms)
        .bind(&sent_id)
        .bind(&unsent_id)
        .execute(&mut database)
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while server.get(&format!("/api/v1/media/{unsent_id}"), Some(&ann)).await.status != 404 {
        assert!(tokio::time::Instant::now() < deadline, "the unsent upload was never cleaned up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.get(&format!("/api/v1/media/{unsent_id}"), Some(&ann)).await.assert_problem(404, "media_not_found");
    assert_eq!(server.get(&format!("/api/v1/media/{sent_id}"), Some(&bob)).await.status, 200, "a sent image stays");
    assert_eq!(server.get(&format!("/api/v1/media/{fresh_id}"), Some(&ann)).await.status, 200, "a new upload waits");
    // An upload that is gone cannot be sent any more.
    let late = server.send_image(&ann, &conversation, "late", &unsent_id).await;
    late.assert_problem(422, "invalid_field");
}
