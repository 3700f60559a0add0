//! `GET /api/v1/client/config`: public, and it tells the web client where map tiles come
//! from (or that it draws its bundled map) and the ride rules shown before a request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Db, TestServer};

on_both_databases!(
    without_a_tile_server_the_client_is_told_to_draw_its_bundled_map,
    a_configured_tile_server_and_the_ride_rules_reach_the_client_without_signing_in,
);

async fn without_a_tile_server_the_client_is_told_to_draw_its_bundled_map(db: Db) {
    let server = TestServer::start(db).await;
    let reply = server.get("/api/v1/client/config", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.body["map"]["tile_url"].is_null(), "{}", reply.text);
    assert!(reply.body["map"]["attribution"].is_null(), "{}", reply.text);
    assert!(reply.body["map"]["center"]["lat"].as_f64().is_some(), "{}", reply.text);
    assert!(reply.body["map"]["zoom"].as_u64().is_some(), "{}", reply.text);
    assert_eq!(reply.body["currencies"], serde_json::json!(["USD"]));
    // The document describes it.
    let document = server.get("/api/v1/openapi.json", None).await;
    assert!(document.body["paths"]["/api/v1/client/config"]["get"].is_object(), "not in the OpenAPI document");
}

async fn a_configured_tile_server_and_the_ride_rules_reach_the_client_without_signing_in(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.map_tile_url = Some("https://tiles.example/{z}/{x}/{y}.png".into());
        config.map_tile_attribution = Some("© Example maps".into());
        config.rides.cancel_fee = 450;
        config.rides.platform_fee_bps = plaza_kernel::BasisPoints::new(1500).unwrap();
    })
    .await;
    let reply = server.get("/api/v1/client/config", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["map"]["tile_url"], "https://tiles.example/{z}/{x}/{y}.png");
    assert_eq!(reply.body["map"]["attribution"], "© Example maps");
    assert_eq!(reply.body["rides"]["cancel_fee"], serde_json::json!({"amount": 450, "currency": "USD"}));
    assert_eq!(reply.body["rides"]["platform_fee_bps"], 1500);
    assert_eq!(reply.body["rides"]["hold_margin_percent"], 20);
}
