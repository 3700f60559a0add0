//! Live rooms over real HTTP, on SQLite and PostgreSQL: a host creates a room with
//! products of their own shop and a secret stream key, rotates the key and ends the room;
//! others see live rooms and replays, never a room not yet live, and bad input is refused
//! with its code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::shop::{open_shop, simple_product, upload};
use crate::support::{Db, TestServer};
use serde_json::json;

on_both_databases!(
    a_host_creates_a_room_with_their_products_and_alone_sees_its_stream_key,
    a_room_not_yet_live_is_its_hosts_alone_and_ending_it_twice_is_refused,
    rotating_the_stream_key_gives_a_new_one_that_only_the_host_can_ask_for,
    every_bad_room_is_refused_with_its_code_and_creates_nothing,
    the_host_pins_and_unpins_their_own_products_and_nobody_pins_another_shops,
    hearts_are_counted_into_a_live_rooms_likes_and_refused_elsewhere,
    a_rooms_cover_is_the_hosts_own_upload_and_every_viewer_sees_it,
);

/// A host with a shop and one product; (token, user id, shop id, product id).
async fn host_with_product(server: &TestServer, name: &str) -> (String, String, String, String) {
    let (token, id) = server.register(name).await;
    let shop_id = open_shop(server, &token, &format!("{name}'s shop")).await;
    let (product_id, _) = simple_product(server, &token, &shop_id, "Tea cup", "Porcelain", 1200, 10).await;
    (token, id, shop_id, product_id)
}

async fn a_host_creates_a_room_with_their_products_and_alone_sees_its_stream_key(db: Db) {
    let server = TestServer::start(db).await;
    let (host, host_id, _, product_id) = host_with_product(&server, "mia").await;
    let created = server
        .post("/api/v1/live/rooms", Some(&host), json!({"title": "  Spring tea  ", "product_ids": [product_id]}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let room = &created.body;
    assert_eq!(room["title"], "Spring tea");
    assert_eq!(room["status"], "created");
    assert_eq!(room["host"]["id"], host_id);
    assert_eq!(room["viewers"], 0);
    assert_eq!(room["likes"], 0);
    assert_eq!(room["products"][0]["id"], product_id);
    assert_eq!(room["products"][0]["title"], "Tea cup");
    assert!(room["playback"].is_null() && room["replay"].is_null() && room["started_at"].is_null());
    let key = room["stream_key"].as_str().unwrap();
    assert_eq!(key.len(), 64);
    let rtmp_url = room["ingest"]["rtmp_url"].as_str();
    if let Some(url) = rtmp_url {
        assert!(url.starts_with("rtmp://") && url.ends_with(&format!("/live/{key}")), "{url}");
    }
    let id = room["id"].as_str().unwrap();
    let fetched = server.get(&format!("/api/v1/live/rooms/{id}"), Some(&host)).await;
    assert_eq!(fetched.status, 200, "{}", fetched.text);
    assert!(fetched.body.get("stream_key").is_none(), "{}", fetched.text);
    assert!(!fetched.text.contains(key), "the key is shown only at creation");
    let mine = server.get("/api/v1/live/rooms?status=created", Some(&host)).await;
    assert_eq!(mine.body["items"][0]["id"], id, "{}", mine.text);
    let live_now = server.get("/api/v1/live/rooms", Some(&host)).await;
    assert_eq!(live_now.body["items"], json!([]), "not live until media arrives: {}", live_now.text);
    server.stop().await;
}

async fn a_room_not_yet_live_is_its_hosts_alone_and_ending_it_twice_is_refused(db: Db) {
    let server = TestServer::start(db).await;
    let [(host, _), (viewer, _)] = server.register_all(["host", "viewer"]).await;
    let created = server.post("/api/v1/live/rooms", Some(&host), json!({"title": "Soon"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap();
    server.get(&format!("/api/v1/live/rooms/{id}"), Some(&viewer)).await.assert_problem(404, "live_room_not_found");
    end_room(&server, &viewer, id).await.assert_problem(404, "live_room_not_found");
    let others = server.get("/api/v1/live/rooms?status=created", Some(&viewer)).await;
    assert_eq!(others.body["items"], json!([]), "{}", others.text);
    let playlist = server.get(&format!("/live/{id}/index.m3u8"), None).await;
    playlist.assert_problem(404, "live_room_not_found");
    server.get(&format!("/api/v1/live/rooms/{id}"), None).await.assert_problem(401, "unauthenticated");

    let ended = end_room(&server, &host, id).await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    assert_eq!(ended.body["status"], "ended");
    assert!(ended.body["ended_at"].is_string());
    assert!(ended.body["replay"].is_null(), "nothing was recorded: {}", ended.text);
    // An ended room is anyone's to see; one that never went live is not a replay.
    let seen = server.get(&format!("/api/v1/live/rooms/{id}"), Some(&viewer)).await;
    assert_eq!(seen.status, 200, "{}", seen.text);
    end_room(&server, &viewer, id).await.assert_problem(403, "forbidden");
    let again = end_room(&server, &host, id).await;
    again.assert_problem(409, "invalid_transition");
    let replays = server.get("/api/v1/live/rooms?status=ended", Some(&viewer)).await;
    assert_eq!(replays.body["items"], json!([]), "{}", replays.text);
    server.stop().await;
}

async fn rotating_the_stream_key_gives_a_new_one_that_only_the_host_can_ask_for(db: Db) {
    let server = TestServer::start(db).await;
    let [(host, _), (other, _)] = server.register_all(["host", "other"]).await;
    let created = server.post("/api/v1/live/rooms", Some(&host), json!({"title": "Keys"})).await;
    let id = created.body["id"].as_str().unwrap();
    let first = created.body["stream_key"].as_str().unwrap();
    let rotated = server.post(&format!("/api/v1/live/rooms/{id}/stream-key"), Some(&host), json!({})).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let second = rotated.body["stream_key"].as_str().unwrap();
    assert_eq!(second.len(), 64);
    assert_ne!(first, second);
    let refused = server.post(&format!("/api/v1/live/rooms/{id}/stream-key"), Some(&other), json!({})).await;
    refused.assert_problem(404, "live_room_not_found");
    end_room(&server, &host, id).await;
    let after_end = server.post(&format!("/api/v1/live/rooms/{id}/stream-key"), Some(&host), json!({})).await;
    after_end.assert_problem(409, "invalid_transition");
    server.stop().await;
}

async fn every_bad_room_is_refused_with_its_code_and_creates_nothing(db: Db) {
    let server = TestServer::start(db).await;
    let (host, _, _, own_product) = host_with_product(&server, "host").await;
    let (_, _, _, foreign_product) = host_with_product(&server, "rival").await;
    let (shopless, _) = server.register("shopless").await;
    let cases = [
        (&host, json!({"title": ""}), 422, "invalid_field"),
        (&host, json!({"title": "x".repeat(101)}), 422, "invalid_field"),
        (&host, json!({"title": "a\u{202e}b"}), 422, "invalid_field"),
        (&host, json!({"title": 5}), 422, "invalid_field"),
        (&host, json!({"title": "ok", "extra": 1}), 422, "invalid_field"),
        (&host, json!({"title": "ok", "product_ids": [foreign_product]}), 422, "product_not_in_shop"),
        (&host, json!({"title": "ok", "product_ids": [own_product, foreign_product]}), 422, "product_not_in_shop"),
        (&shopless, json!({"title": "ok", "product_ids": [own_product]}), 422, "product_not_in_shop"),
        (&host, json!({"title": "ok", "product_ids": ["01NOSUCHPRODUCT"]}), 404, "product_not_found"),
        (&host, json!({"title": "ok", "product_ids": vec![own_product.clone(); 51]}), 422, "invalid_field"),
        (&host, json!({"title": "ok", "cover_media_id": "../x"}), 422, "invalid_field"),
    ];
    for (token, body, status, code) in cases {
        let reply = server.post("/api/v1/live/rooms", Some(token), body.clone()).await;
        reply.assert_problem(status, code);
        if code == "product_not_in_shop" || code == "product_not_found" {
            assert_eq!(reply.body["field"], "product_ids", "{body}: {}", reply.text);
        }
    }
    server.post("/api/v1/live/rooms", None, json!({"title": "ok"})).await.assert_problem(401, "unauthenticated");
    for token in [&host, &shopless] {
        let mine = server.get("/api/v1/live/rooms?status=created", Some(token)).await;
        assert_eq!(mine.body["items"], json!([]), "{}", mine.text);
    }
    server.get("/api/v1/live/rooms?status=soon", Some(&host)).await.assert_problem(422, "invalid_field");
    server.get("/api/v1/live/rooms?limit=0", Some(&host)).await.assert_problem(422, "invalid_field");
    server.get("/api/v1/live/rooms?cursor=zz", Some(&host)).await.assert_problem(422, "invalid_field");
    server.get("/api/v1/live/rooms/nosuchroom", Some(&host)).await.assert_problem(404, "live_room_not_found");
    server.get("/live/nosuchroom/index.m3u8", None).await.assert_problem(404, "live_room_not_found");
    server.get("/live/nosuchroom/../etc", None).await;
    server.stop().await;
}

async fn the_host_pins_and_unpins_their_own_products_and_nobody_pins_another_shops(db: Db) {
    let server = TestServer::start(db).await;
    let (host, _, shop_id, first) = host_with_product(&server, "host").await;
    let (second, _) = simple_product(&server, &host, &shop_id, "Tea pot", "Clay", 3000, 5).await;
    let (_, _, _, foreign) = host_with_product(&server, "rival").await;
    let (viewer, _) = server.register("viewer").await;
    let created =
        server.post("/api/v1/live/rooms", Some(&host), json!({"title": "Pins", "product_ids": [first]})).await;
    let id = created.body["id"].as_str().unwrap();
    let pinned = pin(&server, &host, id, json!({"product_id": first})).await;
    assert_eq!(pinned.status, 200, "{}", pinned.text);
    assert_eq!(pinned.body["pinned_product"]["id"], first.as_str());
    // A product of the host's shop not in the room joins it as it is pinned.
    let pinned = pin(&server, &host, id, json!({"product_id": second})).await;
    assert_eq!(pinned.body["pinned_product"]["id"], second.as_str(), "{}", pinned.text);
    let products: Vec<&str> =
        pinned.body["products"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(products, vec![first.as_str(), second.as_str()]);
    pin(&server, &host, id, json!({"product_id": foreign})).await.assert_problem(422, "product_not_in_shop");
    pin(&server, &host, id, json!({"product_id": "01NOSUCH"})).await.assert_problem(404, "product_not_found");
    pin(&server, &host, id, json!({"product": first})).await.assert_problem(422, "invalid_field");
    pin(&server, &viewer, id, json!({"product_id": first})).await.assert_problem(404, "live_room_not_found");
    let unpinned = pin(&server, &host, id, json!({"product_id": null})).await;
    assert_eq!(unpinned.status, 200, "{}", unpinned.text);
    assert!(unpinned.body["pinned_product"].is_null(), "{}", unpinned.text);
    end_room(&server, &host, id).await;
    pin(&server, &viewer, id, json!({"product_id": first})).await.assert_problem(403, "forbidden");
    pin(&server, &host, id, json!({"product_id": first})).await.assert_problem(409, "invalid_transition");
    server.stop().await;
}

async fn end_room(server: &TestServer, token: &str, room_id: &str) -> crate::support::Reply {
    server.post(&format!("/api/v1/live/rooms/{room_id}/end"), Some(token), json!({})).await
}

async fn pin(server: &TestServer, token: &str, room_id: &str, body: serde_json::Value) -> crate::support::Reply {
    server.post(&format!("/api/v1/live/rooms/{room_id}/pin"), Some(token), body).await
}

async fn likes(server: &TestServer, token: &str, room_id: &str, body: serde_json::Value) -> crate::support::Reply {
    server.post(&format!("/api/v1/live/rooms/{room_id}/likes"), Some(token), body).await
}

async fn hearts_are_counted_into_a_live_rooms_likes_and_refused_elsewhere(db: Db) {
    let server = TestServer::start(db).await;
    let [(host, _), (viewer, _)] = server.register_all(["host", "viewer"]).await;
    let created = server.post("/api/v1/live/rooms", Some(&host), json!({"title": "Hearts"})).await;
    let id = created.body["id"].as_str().unwrap().to_string();
    likes(&server, &viewer, &id, json!({"count": 1})).await.assert_problem(404, "live_room_not_found");
    likes(&server, &host, &id, json!({"count": 1})).await.assert_problem(409, "invalid_transition");
    // Live as ingest would have made it (media is another test's business).
    let mut database = server.database().await;
    sqlx::query("UPDATE live_rooms SET status = 'live', started_at = 1, last_media_at = 9999999999999")
        .execute(&mut database)
        .await
        .unwrap();
    // Each node trusts a room's status for a second, and this change bypassed the service.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while likes(&server, &viewer, &id, json!({"count": 5})).await.status != 202 {
        assert!(tokio::time::Instant::now() < deadline, "the room never took hearts");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for count in [10, 100] {
        assert_eq!(likes(&server, &viewer, &id, json!({"count": count})).await.status, 202);
    }
    for bad in [json!({"count": 0}), json!({"count": 101}), json!({"count": "x"}), json!({})] {
        likes(&server, &viewer, &id, bad).await.assert_problem(422, "invalid_field");
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let room = server.get(&format!("/api/v1/live/rooms/{id}"), Some(&viewer)).await;
        if room.body["likes"] == 115 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "hearts not counted: {}", room.text);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    end_room(&server, &host, &id).await;
    likes(&server, &viewer, &id, json!({"count": 1})).await.assert_problem(409, "invalid_transition");
    server.stop().await;
}

async fn a_rooms_cover_is_the_hosts_own_upload_and_every_viewer_sees_it(db: Db) {
    let server = TestServer::start(db).await;
    let [(host, _), (viewer, _)] = server.register_all(["host", "viewer"]).await;
    let theirs = upload(&server, &viewer).await;
    // Before the room, the host's upload is the host's alone.
    let cover = upload(&server, &host).await;
    assert_eq!(server.get(&format!("/api/v1/media/{cover}"), Some(&viewer)).await.status, 404);

    // Another's upload is no cover, and the refusal creates no room.
    let refused =
        server.post("/api/v1/live/rooms", Some(&host), json!({"title": "Borrowed", "cover_media_id": theirs})).await;
    refused.assert_problem(422, "invalid_field");
    assert_eq!(refused.body["field"], "cover_media_id", "{}", refused.text);
    let mine = server.get("/api/v1/live/rooms?status=created", Some(&host)).await;
    assert_eq!(mine.body["items"].as_array().map(Vec::len), Some(0), "{}", mine.text);

    let created =
        server.post("/api/v1/live/rooms", Some(&host), json!({"title": "Covered", "cover_media_id": cover})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let cover_url = created.body["cover_url"].as_str().unwrap().to_string();
    assert_eq!(cover_url, format!("/api/v1/media/{cover}"));
    let seen = server.get(&cover_url, Some(&viewer)).await;
    assert_eq!(seen.status, 200, "a viewer sees the cover in the list of rooms: {}", seen.text);
    assert_eq!(seen.header("content-type"), Some("image/png"));
    server.stop().await;
}
