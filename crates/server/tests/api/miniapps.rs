//! Mini-apps over real HTTP, on SQLite and PostgreSQL: registration shows the secrets
//! once and stores the client secret only as a digest; the directory and an app's page
//! never show a secret; bad registrations change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Db, TestServer};
use serde_json::{json, Value};
use sqlx::Row;

on_both_databases!(
    a_developer_registers_an_app_and_sees_its_secrets_once_and_everyone_finds_it_in_the_directory,
    every_bad_registration_is_refused_with_its_code_and_field_and_registers_nothing,
    only_the_developer_rotates_the_client_secret_and_the_new_one_differs,
);

fn coffee() -> Value {
    json!({
        "name": "Coffee House",
        "description": "Order a coffee",
        "home_url": "https://coffee.example/",
        "redirect_uris": ["https://coffee.example/callback", "http://127.0.0.1:8080/callback"],
        "webhook_url": "https://coffee.example/webhooks",
        "scopes": ["openid", "profile", "payments", "openid"],
    })
}

async fn a_developer_registers_an_app_and_sees_its_secrets_once_and_everyone_finds_it_in_the_directory(db: Db) {
    let server = TestServer::start(db).await;
    let [(developer, developer_id), (user, _)] = server.register_all(["dev", "ann"]).await;

    let created = server.post("/api/v1/miniapps", Some(&developer), coffee()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let app = &created.body;
    let id = app["id"].as_str().unwrap();
    let secret = app["client_secret"].as_str().unwrap();
    assert!(secret.len() >= 64, "{secret}");
    assert!(app["webhook_secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(app["developer_id"], developer_id.as_str());
    assert_eq!(app["scopes"], json!(["openid", "profile", "payments"]));
    assert_eq!(app["redirect_uris"], coffee()["redirect_uris"]);

    // The database holds a digest of the client secret, never the secret itself.
    let mut database = server.database().await;
    let row = sqlx::query("SELECT client_secret_hash FROM miniapps WHERE id = $1")
        .bind(id)
        .fetch_one(&mut database)
        .await
        .unwrap();
    let stored: String = row.try_get("client_secret_hash").unwrap();
    assert_ne!(stored, secret);
    assert!(!stored.contains(secret));

    let page = server.get(&format!("/api/v1/miniapps/{id}"), Some(&user)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.body["name"], "Coffee House");
    assert!(page.body.get("client_secret").is_none() && page.body.get("webhook_secret").is_none(), "{}", page.text);

    let other = json!({"name": "Tea Garden", "home_url": "https://tea.example/",
        "redirect_uris": ["https://tea.example/cb"], "scopes": ["openid"]});
    assert_eq!(server.post("/api/v1/miniapps", Some(&developer), other).await.status, 201);

    let all = server.get("/api/v1/miniapps", Some(&user)).await;
    assert_eq!(all.status, 200, "{}", all.text);
    let names: Vec<&str> = all.body["items"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Tea Garden", "Coffee House"]);
    assert!(!all.text.contains(secret) && !all.text.contains("whsec_"));

    let found = server.get("/api/v1/miniapps?q=coFFee", Some(&user)).await;
    let found: Vec<&str> = found.body["items"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(found, [id]);
    // A wildcard in the query is a character, not a pattern.
    let none = server.get("/api/v1/miniapps?q=%25", Some(&user)).await;
    assert_eq!(none.body["items"], json!([]), "{}", none.text);

    server.get("/api/v1/miniapps/NOSUCHAPP", Some(&user)).await.assert_problem(404, "miniapp_not_found");
    server.get("/api/v1/miniapps", None).await.assert_problem(401, "unauthenticated");
    let long = "x".repeat(61);
    server.get(&format!("/api/v1/miniapps?q={long}"), Some(&user)).await.assert_problem(422, "invalid_field");
    server.stop().await;
}

async fn every_bad_registration_is_refused_with_its_code_and_field_and_registers_nothing(db: Db) {
    let server = TestServer::start(db).await;
    let (developer, _) = server.register("dev").await;
    let with = |field: &str, value: Value| {
        let mut body = coffee();
        body[field] = value;
        body
    };
    let cases = [
        (with("name", json!("")), "name"),
        (with("name", json!("n".repeat(61))), "name"),
        (with("home_url", json!("http://coffee.example/")), "home_url"),
        (with("home_url", json!("https://coffee.example/#top")), "home_url"),
        (with("redirect_uris", json!([])), "redirect_uris"),
        (with("redirect_uris", json!(["https://coffee.example/cb", "https://coffee.example/cb"])), "redirect_uris/1"),
        (with("redirect_uris", json!(["javascript:alert(1)"])), "redirect_uris/0"),
        (with("redirect_uris", json!(vec!["https://a.example/cb"; 11])), "redirect_uris"),
        (with("webhook_url", json!("http://10.0.0.1/hook")), "webhook_url"),
        (with("scopes", json!([])), "scopes"),
        (with("scopes", json!(["openid", "email"])), "scopes/1"),
    ];
    for (body, field) in cases {
        let reply = server.post("/api/v1/miniapps", Some(&developer), body.clone()).await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{body}: {}", reply.text);
    }
    let all = server.get("/api/v1/miniapps", Some(&developer)).await;
    assert_eq!(all.body["items"], json!([]), "{}", all.text);
    server.stop().await;
}

async fn only_the_developer_rotates_the_client_secret_and_the_new_one_differs(db: Db) {
    let server = TestServer::start(db).await;
    let [(developer, _), (other, _)] = server.register_all(["dev", "eve"]).await;
    let created = server.post("/api/v1/miniapps", Some(&developer), coffee()).await;
    let id = created.body["id"].as_str().unwrap();
    let path = format!("/api/v1/miniapps/{id}/secret");
    server.post(&path, Some(&other), json!({})).await.assert_problem(403, "forbidden");
    let rotated = server.post(&path, Some(&developer), json!({})).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert_ne!(rotated.body["client_secret"], created.body["client_secret"]);
    assert_eq!(rotated.body["client_id"], created.body["client_id"]);
    server.stop().await;
}
