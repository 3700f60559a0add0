//! Mini-apps inside Plaza, over real HTTP, on SQLite and PostgreSQL: sharing an app's page
//! into a chat posts a `miniapp` card the other members read (and hear of live); every bad
//! field is a 422 naming it and posts nothing; a conversation the sharer is not in is not
//! found; the SDK is served at the root as cacheable cross-origin JavaScript.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Db, Reply, TestServer};
use serde_json::{json, Value};

on_both_databases!(
    a_shared_page_is_a_miniapp_card_the_other_member_reads_and_hears_of,
    every_bad_share_is_a_422_naming_its_field_and_posts_nothing,
    a_share_into_a_chat_the_sharer_is_not_in_or_of_an_unknown_app_is_not_found,
    the_sdk_is_served_at_the_root_as_cross_origin_javascript,
);

/// Registers an app as `developer` and returns its id.
async fn coffee_app(server: &TestServer, developer: &str) -> String {
    let app = json!({
        "name": "Coffee House",
        "description": "Order a coffee",
        "home_url": "https://coffee.example/",
        "redirect_uris": ["https://coffee.example/callback"],
        "scopes": ["openid", "profile", "payments"],
    });
    let created = server.post("/api/v1/miniapps", Some(developer), app).await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["id"].as_str().unwrap().to_string()
}

/// The Coffee House app of a new developer and a direct chat between the contacts ann and
/// bob: (app id, [ann, bob] as (token, user id), chat id).
async fn app_and_chat(server: &TestServer) -> (String, Vec<(String, String)>, String) {
    let (developer, _) = server.register("dev").await;
    let people = server.register_contacts(&["ann", "bob"]).await;
    let app_id = coffee_app(server, &developer).await;
    let chat = server.conversation(&people[0].0, "direct", &[&people[1].1]).await;
    (app_id, people, chat)
}

async fn share(server: &TestServer, token: &str, app_id: &str, body: Value) -> Reply {
    server.post(&format!("/api/v1/miniapps/{app_id}/share"), Some(token), body).await
}

async fn cards(server: &TestServer, token: &str, conversation: &str) -> Vec<Value> {
    let history = server.get(&format!("/api/v1/conversations/{conversation}/messages"), Some(token)).await;
    assert_eq!(history.status, 200, "{}", history.text);
    history.body["items"].as_array().unwrap().iter().filter(|m| m["kind"] == "card").cloned().collect()
}

async fn a_shared_page_is_a_miniapp_card_the_other_member_reads_and_hears_of(db: Db) {
    let server = TestServer::start(db).await;
    let (app_id, people, chat) = app_and_chat(&server).await;
    let ((ann, ann_id), (bob, _)) = (&people[0], &people[1]);
    let (mut bob_socket, _) = server.socket(bob).await;

    let flat_white = json!({"conversation_id": chat, "title": "  Flat white, 咖啡  ", "path": "/menu?item=flat-white"});
    let shared = share(&server, ann, &app_id, flat_white).await;
    assert_eq!(shared.status, 201, "{}", shared.text);
    let message = &shared.body;
    assert_eq!(message["kind"], "card");
    assert_eq!(message["conversation_id"], chat.as_str());
    assert_eq!(message["sender_id"], ann_id.as_str());
    assert!(message["id"].is_string() && message["seq"].as_i64().unwrap() >= 1, "{}", shared.text);
    // The card is the service's: the app's name, home and description come from its
    // registration, the title is trimmed, the path kept as given.
    let expected = json!({
        "type": "miniapp",
        "id": app_id,
        "title": "Flat white, 咖啡",
        "path": "/menu?item=flat-white",
        "app_name": "Coffee House",
        "home_url": "https://coffee.example/",
        "description": "Order a coffee",
    });
    assert_eq!(message["body"], expected);

    let bob_cards = cards(&server, bob, &chat).await;
    assert_eq!(bob_cards.len(), 1, "{bob_cards:?}");
    assert_eq!(bob_cards[0]["id"], message["id"]);
    assert_eq!(bob_cards[0]["body"], expected);
    let frames = bob_socket.frames_until("message.new").await;
    let heard = frames.last().unwrap();
    assert_eq!(heard["data"]["id"], message["id"], "{heard}");
    assert_eq!(heard["data"]["body"]["type"], "miniapp");

    // Sharing the same page again is a second card, as sharing a video twice is.
    let again = share(&server, bob, &app_id, json!({"conversation_id": chat, "title": "Also good", "path": "/"})).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(cards(&server, ann, &chat).await.len(), 2);
    bob_socket.close().await;
    server.stop().await;
}

async fn every_bad_share_is_a_422_naming_its_field_and_posts_nothing(db: Db) {
    let server = TestServer::start(db).await;
    let (app_id, people, chat) = app_and_chat(&server).await;
    let ann = &people[0].0;
    let share = format!("/api/v1/miniapps/{app_id}/share");

    let long_title = "a".repeat(81);
    let long_path = format!("/{}", "a".repeat(512));
    let cases: Vec<(&str, Value)> = vec![
        ("title", json!({"conversation_id": chat, "title": "", "path": "/"})),
        ("title", json!({"conversation_id": chat, "title": "   ", "path": "/"})),
        ("title", json!({"conversation_id": chat, "title": long_title, "path": "/"})),
        ("title", json!({"conversation_id": chat, "title": "two\nlines", "path": "/"})),
        ("title", json!({"conversation_id": chat, "title": "bell\u{7}", "path": "/"})),
        ("path", json!({"conversation_id": chat, "title": "t", "path": ""})),
        ("path", json!({"conversation_id": chat, "title": "t", "path": "menu"})),
        ("path", json!({"conversation_id": chat, "title": "t", "path": "//evil.example/"})),
        ("path", json!({"conversation_id": chat, "title": "t", "path": "/\\evil.example"})),
        ("path", json!({"conversation_id": chat, "title": "t", "path": "https://evil.example/"})),
        ("path", json!({"conversation_id": chat, "title": "t", "path": "/a b"})),
        ("path", json!({"conversation_id": chat, "title": "t", "path": "/a\u{1}"})),
        ("path", json!({"conversation_id": chat, "title": "t", "path": long_path})),
        ("conversation_id", json!({"conversation_id": "", "title": "t", "path": "/"})),
        ("conversation_id", json!({"conversation_id": "c".repeat(65), "title": "t", "path": "/"})),
    ];
    for (field, body) in cases {
        let reply = server.post(&share, Some(ann), body.clone()).await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{body} → {}", reply.text);
    }
    // A missing or mistyped field is refused before anything is checked.
    for body in
        [json!({"conversation_id": chat, "title": "t"}), json!({"conversation_id": chat, "title": 7, "path": "/"})]
    {
        let reply = server.post(&share, Some(ann), body.clone()).await;
        assert!(reply.status == 400 || reply.status == 422, "{body} → {}", reply.text);
    }
    server
        .post(&share, None, json!({"conversation_id": chat, "title": "t", "path": "/"}))
        .await
        .assert_problem(401, "unauthenticated");
    assert!(cards(&server, ann, &chat).await.is_empty());
    server.stop().await;
}

async fn a_share_into_a_chat_the_sharer_is_not_in_or_of_an_unknown_app_is_not_found(db: Db) {
    let server = TestServer::start(db).await;
    let (app_id, people, chat) = app_and_chat(&server).await;
    let ((ann, _), (bob, _)) = (&people[0], &people[1]);
    let (carol, _) = server.register("carol").await;
    let body = json!({"conversation_id": chat, "title": "Menu", "path": "/menu"});

    share(&server, &carol, &app_id, body.clone()).await.assert_problem(404, "conversation_not_found");
    let unknown_chat = json!({"conversation_id": "NOSUCHCHAT", "title": "Menu", "path": "/menu"});
    share(&server, ann, &app_id, unknown_chat).await.assert_problem(404, "conversation_not_found");
    server
        .post("/api/v1/miniapps/NOSUCHAPP/share", Some(ann), body.clone())
        .await
        .assert_problem(404, "miniapp_not_found");
    assert!(cards(&server, bob, &chat).await.is_empty());

    // The route is in the OpenAPI document, beside the other mini-app routes.
    let document = server.get("/api/v1/openapi.json", None).await;
    assert_eq!(document.status, 200);
    assert!(document.body["paths"]["/api/v1/miniapps/{id}/share"]["post"].is_object(), "no share route documented");
    server.stop().await;
}

async fn the_sdk_is_served_at_the_root_as_cross_origin_javascript(db: Db) {
    let server = TestServer::start(db).await;
    for (path, cache_control) in
        [("/sdk/plaza-miniapp.js", "public, max-age=300"), ("/sdk/plaza-miniapp-1.js", "public, max-age=86400")]
    {
        let reply = server.get(path, None).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(reply.header("content-type"), Some("text/javascript; charset=utf-8"), "{path}");
        assert_eq!(reply.header("cache-control"), Some(cache_control), "{path}");
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"), "{path}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{path}");
        // JavaScript, not the web client's page that unknown paths get.
        assert!(!reply.text.contains("<html") && !reply.text.contains("<!doctype"), "{path}");
        assert!(reply.text.contains("'use strict'") && reply.text.contains("global.Plaza = Plaza"), "{path}");
        for function in ["login:", "getProfile:", "requestPayment:", "shareToChat:", "close:"] {
            assert!(reply.text.contains(function), "{path} lacks {function}");
        }
        assert_eq!(reply.text, plaza_miniapps::SDK_SOURCE);
    }
    // Under /api/v1 it is not: the SDK is a static script at the root.
    server.get("/api/v1/sdk/plaza-miniapp.js", None).await.assert_problem(404, "not_found");
    server.stop().await;
}
