//! Profiles and one-way follows on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Db, TestServer, PIXEL_PNG};
use serde_json::json;

on_both_databases!(
    a_profile_changes_with_patch_me_and_its_avatar_is_seen_by_everyone,
    follows_are_one_way_counted_listed_and_announced,
    concurrent_follows_and_unfollows_leave_counts_equal_to_the_follows,
);

async fn a_profile_changes_with_patch_me_and_its_avatar_is_seen_by_everyone(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, ann_id), (bob, _)] = server.register_all(["prof_ann", "prof_bob"]).await;
    let uploaded = server.upload_media(&ann, "file", PIXEL_PNG.to_vec()).await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text);
    let media_id = uploaded.body["id"].as_str().unwrap().to_string();
    // Before it is the avatar, the image is Ann's alone.
    server.get(&format!("/api/v1/media/{media_id}"), Some(&bob)).await.assert_problem(404, "media_not_found");

    let change = json!({"display_name": "Ann Lee", "bio": "Coffee and cats", "avatar_media_id": media_id});
    let changed = server.request("PATCH", "/api/v1/me", Some(&ann), Some(change)).await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.body["display_name"], "Ann Lee");
    assert_eq!(changed.body["bio"], "Coffee and cats");
    let avatar_url = changed.body["avatar_url"].as_str().unwrap().to_string();
    assert_eq!(avatar_url, format!("/api/v1/media/{media_id}"));
    let seen = server.get(&format!("/api/v1/users/{ann_id}"), Some(&bob)).await;
    assert_eq!(
        (seen.body["bio"].as_str(), seen.body["display_name"].as_str()),
        (Some("Coffee and cats"), Some("Ann Lee"))
    );
    assert_eq!(seen.body["followed_by_me"], false);
    let avatar = server.client.get(format!("{}{avatar_url}", server.base)).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(avatar.status(), 200, "an avatar is seen by every signed-in user");
    assert_eq!(avatar.bytes().await.unwrap().to_vec(), PIXEL_PNG.to_vec());

    // A field left out stays; an empty bio clears it; bad input changes nothing.
    let cleared = server.request("PATCH", "/api/v1/me", Some(&ann), Some(json!({"bio": ""}))).await;
    assert_eq!((cleared.body["bio"].as_str(), cleared.body["display_name"].as_str()), (Some(""), Some("Ann Lee")));
    for (body, field) in [
        (json!({"bio": "x".repeat(161)}), "bio"),
        (json!({"display_name": ""}), "display_name"),
        (json!({"avatar_media_id": "someone-elses"}), "avatar_media_id"),
    ] {
        let refused = server.request("PATCH", "/api/v1/me", Some(&ann), Some(body)).await;
        refused.assert_problem(422, "invalid_field");
        assert_eq!(refused.body["field"], field);
    }
    let unknown = server.request("PATCH", "/api/v1/me", Some(&ann), Some(json!({"username": "taken"}))).await;
    assert_eq!(unknown.status, 422, "{}", unknown.text);
    let me = server.get("/api/v1/me", Some(&ann)).await;
    assert_eq!((me.body["username"].as_str(), me.body["display_name"].as_str()), (Some("prof_ann"), Some("Ann Lee")));
    server.stop().await;
}

async fn follows_are_one_way_counted_listed_and_announced(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, ann_id), (bob, bob_id), (cat, cat_id)] = server.register_all(["fol_ann", "fol_bob", "fol_cat"]).await;
    let (mut ann_socket, _) = server.socket(&ann).await;

    for _ in 0..2 {
        let followed = server.request("POST", &format!("/api/v1/users/{ann_id}/follow"), Some(&bob), None).await;
        assert_eq!(followed.status, 204, "{}", followed.text);
    }
    let announced = ann_socket.frames_until("follow.new").await.pop().unwrap();
    assert_eq!(announced["data"]["follower"]["id"], bob_id.as_str(), "{announced}");
    server.request("POST", &format!("/api/v1/users/{ann_id}/follow"), Some(&cat), None).await;
    server.request("POST", &format!("/api/v1/users/{cat_id}/follow"), Some(&bob), None).await;

    let ann_seen = server.get(&format!("/api/v1/users/{ann_id}"), Some(&bob)).await;
    assert_eq!(
        (ann_seen.body["followers_count"].as_i64(), ann_seen.body["following_count"].as_i64()),
        (Some(2), Some(0))
    );
    assert_eq!(ann_seen.body["followed_by_me"], true);
    // One-way: Ann does not follow Bob back.
    assert_eq!(server.get(&format!("/api/v1/users/{bob_id}"), Some(&ann)).await.body["followed_by_me"], false);
    let me = server.get("/api/v1/me", Some(&bob)).await;
    assert_eq!(me.body["following_count"], 2);

    let followers = server.get(&format!("/api/v1/users/{ann_id}/followers"), Some(&bob)).await;
    let names: Vec<&str> =
        followers.body["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["fol_cat", "fol_bob"], "most recent first");
    // As Bob sees the list: he follows Cat, and is himself.
    let flags: Vec<bool> =
        followers.body["items"].as_array().unwrap().iter().map(|u| u["followed_by_me"].as_bool().unwrap()).collect();
    assert_eq!(flags, [true, false]);
    let page = server.get(&format!("/api/v1/users/{bob_id}/following?limit=1"), Some(&ann)).await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = server.get(&format!("/api/v1/users/{bob_id}/following?limit=1&cursor={cursor}"), Some(&ann)).await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1);
    assert_ne!(rest.body["items"][0]["id"], page.body["items"][0]["id"]);

    server
        .request("POST", &format!("/api/v1/users/{bob_id}/follow"), Some(&bob), None)
        .await
        .assert_problem(422, "cannot_follow_self");
    server.request("POST", "/api/v1/users/nobody/follow", Some(&bob), None).await.assert_problem(404, "user_not_found");
    server.get("/api/v1/users/nobody/followers", Some(&bob)).await.assert_problem(404, "user_not_found");

    for _ in 0..2 {
        let unfollowed = server.request("DELETE", &format!("/api/v1/users/{ann_id}/follow"), Some(&bob), None).await;
        assert_eq!(unfollowed.status, 204);
    }
    let ann_seen = server.get(&format!("/api/v1/users/{ann_id}"), Some(&bob)).await;
    assert_eq!(
        (ann_seen.body["followers_count"].as_i64(), ann_seen.body["followed_by_me"].as_bool()),
        (Some(1), Some(false))
    );
    server.stop().await;
}

async fn concurrent_follows_and_unfollows_leave_counts_equal_to_the_follows(db: Db) {
    let server = TestServer::start(db).await;
    let (_, star_id) = server.register("fol_star").await;
    let mut fans = Vec::new();
    for n in 0..12 {
        fans.push(server.register(&format!("fol_fan{n}")).await.0);
    }
    // Each fan follows three times at once; every other fan then unfollows twice at once.
    let path = format!("/api/v1/users/{star_id}/follow");
    let follows =
        fans.iter().flat_map(|fan| (0..3).map(move |_| fan)).map(|fan| server.request("POST", &path, Some(fan), None));
    for reply in futures_util::future::join_all(follows).await {
        assert_eq!(reply.status, 204, "{}", reply.text);
    }
    let leaving: Vec<&String> = fans.iter().step_by(2).collect();
    let unfollows = leaving
        .iter()
        .flat_map(|fan| (0..2).map(move |_| *fan))
        .map(|fan| server.request("DELETE", &path, Some(fan), None));
    for reply in futures_util::future::join_all(unfollows).await {
        assert_eq!(reply.status, 204, "{}", reply.text);
    }
    let star = server.get(&format!("/api/v1/users/{star_id}"), Some(&fans[1])).await;
    assert_eq!(star.body["followers_count"], 6, "{}", star.text);
    let listed = server.get(&format!("/api/v1/users/{star_id}/followers"), Some(&fans[1])).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 6);
    for fan in &fans {
        let me = server.get("/api/v1/me", Some(fan)).await;
        assert!(me.body["following_count"] == 0 || me.body["following_count"] == 1, "{}", me.text);
    }
    server.stop().await;
}
