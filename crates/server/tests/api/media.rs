//! Image uploads and who may see them, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Db, TestServer, PIXEL_PNG};
use serde_json::json;

on_both_databases!(
    an_uploaded_image_is_served_to_its_uploader_and_the_members_it_was_sent_to,
    uploads_that_are_not_images_or_too_large_are_refused,
    another_users_media_cannot_be_sent,
);

async fn fetch(server: &TestServer, token: &str, id: &str) -> (u16, Option<String>, Vec<u8>) {
    let response =
        server.client.get(format!("{}/api/v1/media/{id}", server.base)).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    (status, content_type, response.bytes().await.unwrap().to_vec())
}

async fn an_uploaded_image_is_served_to_its_uploader_and_the_members_it_was_sent_to(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, _), (bob, bob_id), (eve, _)] = server.register_all(["pic_ann", "pic_bob", "pic_eve"]).await;
    let uploaded = server.upload_media(&ann, "file", PIXEL_PNG.to_vec()).await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text);
    assert_eq!(uploaded.body["content_type"], "image/png");
    assert_eq!(uploaded.body["size_bytes"], PIXEL_PNG.len());
    let media_id = uploaded.body["id"].as_str().unwrap().to_string();

    assert_eq!(fetch(&server, &ann, &media_id).await, (200, Some("image/png".to_string()), PIXEL_PNG.to_vec()));
    assert_eq!(fetch(&server, &bob, &media_id).await.0, 404, "not shared with bob yet");

    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;
    let sent = server.send_image(&ann, &conversation, "pic", &media_id).await;
    assert_eq!(sent.status, 201, "{}", sent.text);
    assert_eq!(sent.body["body"], json!({"media_id": media_id}));
    assert_eq!(fetch(&server, &bob, &media_id).await.2, PIXEL_PNG.to_vec());
    let refused = server.get(&format!("/api/v1/media/{media_id}"), Some(&eve)).await;
    refused.assert_problem(404, "media_not_found");

    // An <img src> cannot send a header: the token may come in the query instead.
    let by_query = server.get(&format!("/api/v1/media/{media_id}?token={bob}"), None).await;
    assert_eq!(by_query.status, 200);
    server.get(&format!("/api/v1/media/{media_id}?token={eve}"), None).await.assert_problem(404, "media_not_found");
    server.get(&format!("/api/v1/media/{media_id}?token=forged"), None).await.assert_problem(401, "unauthenticated");
    server.get(&format!("/api/v1/media/{media_id}"), None).await.assert_problem(401, "unauthenticated");
}

async fn uploads_that_are_not_images_or_too_large_are_refused(db: Db) {
    let server = TestServer::start(db).await;
    let (ann, _) = server.register("up_ann").await;
    let not_image = server.upload_media(&ann, "file", b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec()).await;
    not_image.assert_problem(422, "invalid_field");
    assert_eq!(not_image.body["field"], "file");
    server.upload_media(&ann, "file", Vec::new()).await.assert_problem(422, "invalid_field");
    server.upload_media(&ann, "picture", PIXEL_PNG.to_vec()).await.assert_problem(422, "invalid_field");
    let mut huge = PIXEL_PNG.to_vec();
    huge.resize(10 * 1024 * 1024 + 1, 0);
    let too_large = server.upload_media(&ann, "file", huge).await;
    too_large.assert_problem(413, "payload_too_large");
    let not_multipart = server.post("/api/v1/media", Some(&ann), json!({"file": "x"})).await;
    not_multipart.assert_problem(415, "unsupported_media_type");
    server.get("/api/v1/media/01NOSUCHMEDIA", Some(&ann)).await.assert_problem(404, "media_not_found");
    let mut database = server.database().await;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM media").fetch_one(&mut database).await.unwrap();
    assert_eq!(stored, 0);
}

async fn another_users_media_cannot_be_sent(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, _), (bob, bob_id)] = server.register_all(["own_ann", "own_bob"]).await;
    let annes = server.upload_media(&ann, "file", PIXEL_PNG.to_vec()).await.body["id"].as_str().unwrap().to_string();
    let _ = bob_id;
    let (carl, carl_id) = server.register("own_carl").await;
    let with_carl = server.conversation(&bob, "direct", &[&carl_id]).await;
    let reply = server.send_image(&bob, &with_carl, "steal", &annes).await;
    reply.assert_problem(422, "invalid_field");
    assert_eq!(reply.body["field"], "body.media_id");
    assert_eq!(fetch(&server, &carl, &annes).await.0, 404);
}
