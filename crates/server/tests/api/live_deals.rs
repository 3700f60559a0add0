//! In-stream deals on SQLite and PostgreSQL: the host of a live room starts a shop flash
//! sale that runs now (`POST /live/rooms/{id}/deals`), buyers race for it with ordinary
//! orders, viewers on a socket get `live.deal` (its start, its units left, its end) and
//! `live.sold` (on another node too, over NATS), and the host reads the room's orders,
//! units and revenue. Rooms are made
//! live in the database as a first segment would make them (media is `live_ingest.rs`'s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::shop::{add_product, address, assert_ledger_sound, open_shop, usd};
use crate::support::{self, balance, topup, Db, Reply, Socket, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

on_both_databases!(
    racing_buyers_never_get_more_than_the_deals_units_nor_their_limit,
    bad_deals_are_refused_with_their_codes,
    viewers_see_the_deal_start_sell_and_end_and_sales_of_the_pinned_product,
    a_running_deal_ends_with_its_room,
);

/// A host with a shop, a product at 1000 with 100 in stock, and a live room showing it;
/// (host token, product id, SKU id, room id).
async fn live_room_with_product(server: &TestServer, host: &str) -> (String, String, String, String) {
    let (token, _) = server.register(host).await;
    let shop_id = open_shop(server, &token, &format!("{host}'s shop")).await;
    let tea = json!({"title": "Pu'er tea", "skus": [{"name": "357 g", "price": usd(1000), "stock": 100}]});
    let product = add_product(server, &token, &shop_id, tea).await;
    assert_eq!(product.status, 201, "{}", product.text);
    let product_id = product.body["id"].as_str().unwrap().to_string();
    let sku_id = product.body["skus"][0]["id"].as_str().unwrap().to_string();
    let room = server
        .post("/api/v1/live/rooms", Some(&token), json!({"title": "Tea tasting", "product_ids": [product_id]}))
        .await;
    assert_eq!(room.status, 201, "{}", room.text);
    let room_id = room.body["id"].as_str().unwrap().to_string();
    go_live(server, &room_id).await;
    (token, product_id, sku_id, room_id)
}

/// Live as a first segment would have made it, with media that never goes quiet.
async fn go_live(server: &TestServer, room_id: &str) {
    let sql = "UPDATE live_rooms SET status = 'live', started_at = 1, last_media_at = 9999999999999 WHERE id = $1";
    server.execute_sql(sql, &[room_id]).await;
}

async fn start_deal(server: &TestServer, token: &str, room_id: &str, body: Value) -> Reply {
    server.post(&format!("/api/v1/live/rooms/{room_id}/deals"), Some(token), body).await
}

/// Starts a deal that must start (201); its flash sale's id.
async fn started_deal(server: &TestServer, token: &str, room_id: &str, body: Value) -> String {
    let started = start_deal(server, token, room_id, body).await;
    assert_eq!(started.status, 201, "{}", started.text);
    started.body["flash_sale_id"].as_str().unwrap().to_string()
}

fn deal(sku_id: &str, quantity: i64, duration_s: i64, per_user_limit: i64) -> Value {
    json!({"sku_id": sku_id, "price": usd(600), "quantity": quantity, "duration_s": duration_s,
           "per_user_limit": per_user_limit})
}

async fn deal_order(server: &TestServer, token: &str, sku_id: &str, sale_id: &str, quantity: i64) -> Reply {
    let request = server
        .client
        .post(format!("{}/api/v1/orders", server.base))
        .bearer_auth(token)
        .header("idempotency-key", plaza_kernel::new_id())
        .json(&json!({"items": [{"sku_id": sku_id, "quantity": quantity, "flash_sale_id": sale_id}],
                      "address": address()}));
    server.raw(request).await
}

/// A registered user with 10,000 in the wallet and a socket joined to the room.
async fn joined_viewer(server: &TestServer, name: &str, room_id: &str) -> (String, Socket) {
    let (token, _) = server.register(name).await;
    topup(server, &token, 10_000).await;
    let (mut socket, _) = server.socket(&token).await;
    socket.send(json!({"type": "live.join", "id": "join", "data": {"room_id": room_id}})).await;
    let ack = frame_where(&mut socket, |f| f["id"] == "join").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    (token, socket)
}

/// The next frame `matches` accepts, within 20 s.
async fn frame_where(socket: &mut Socket, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = socket.try_next_frame(left).await.expect("the frame within 20 s");
        if matches(&frame) {
            return frame;
        }
    }
}

async fn racing_buyers_never_get_more_than_the_deals_units_nor_their_limit(db: Db) {
    // Forty-odd sign-ups from one address.
    let server = TestServer::start_with(db, |config| config.auth_attempts_per_address = 100).await;
    let (host, _, sku_id, room_id) = live_room_with_product(&server, "host").await;
    let (_, mut watcher) = joined_viewer(&server, "watcher", &room_id).await;
    let started = start_deal(&server, &host, &room_id, deal(&sku_id, 25, 120, 2)).await;
    assert_eq!(started.status, 201, "{}", started.text);
    let sale_id = started.body["flash_sale_id"].as_str().unwrap().to_string();
    assert_eq!(started.body["remaining"], 25);
    assert_eq!(started.body["per_user_limit"], 2);
    assert!(started.body["remaining_ms"].as_i64().unwrap() > 100_000, "{}", started.text);
    let mut buyers = Vec::new();
    for index in 0..40 {
        let (token, _) = server.register(&format!("buyer{index}")).await;
        topup(&server, &token, 10_000).await;
        buyers.push(token);
    }
    // Forty buyers each try two units twice at once (and one unit once): 25 units, 2 each.
    let (server_ref, sku_ref, sale_ref) = (&server, sku_id.as_str(), sale_id.as_str());
    let tries = buyers.iter().flat_map(|token| {
        [2, 2, 1].into_iter().map(move |quantity| deal_order(server_ref, token, sku_ref, sale_ref, quantity))
    });
    let replies = futures_util::future::join_all(tries).await;
    let mut units_sold = 0;
    for reply in &replies {
        match reply.status {
            201 => units_sold += reply.body["items"][0]["quantity"].as_i64().unwrap(),
            409 => assert!(
                ["sold_out", "limit_reached", "out_of_stock"].contains(&reply.body["code"].as_str().unwrap()),
                "{}",
                reply.text
            ),
            _ => panic!("{} {}", reply.status, reply.text),
        }
    }
    assert_eq!(units_sold, 25, "every unit sold, none twice");
    let mut held = 0;
    for token in &buyers {
        let (available, on_hold) = balance(&server, token).await;
        assert_eq!(available + on_hold, 10_000);
        assert!(on_hold <= 2 * 600, "no buyer past the limit: {on_hold}");
        held += on_hold;
    }
    assert_eq!(held, 25 * 600, "money held = units sold × price");
    let room = server.get(&format!("/api/v1/live/rooms/{room_id}"), Some(&host)).await;
    assert_eq!(room.body["deal"]["flash_sale_id"], sale_id.as_str(), "{}", room.text);
    assert_eq!(room.body["deal"]["remaining"], 0);
    let sales = server.get(&format!("/api/v1/live/rooms/{room_id}/sales"), Some(&host)).await;
    assert_eq!(sales.status, 200, "{}", sales.text);
    assert_eq!(sales.body["units"], 25, "{}", sales.text);
    assert_eq!(sales.body["revenue"], json!([usd(25 * 600)]));
    let orders = sales.body["orders"].as_i64().unwrap();
    assert!((13..=25).contains(&orders), "{}", sales.text);
    // The watcher hears of the deal, of sales, and of no units left.
    frame_where(&mut watcher, |f| f["type"] == "live.sold" && f["data"]["room_id"] == room_id).await;
    frame_where(&mut watcher, |f| f["type"] == "live.deal" && f["data"]["deal"]["remaining"] == 0).await;
    assert_ledger_sound(&server).await;
}

async fn bad_deals_are_refused_with_their_codes(db: Db) {
    let server = TestServer::start(db).await;
    let (host, _, sku_id, room_id) = live_room_with_product(&server, "host").await;
    let (other_host, _, other_sku, other_room) = live_room_with_product(&server, "other").await;
    let (viewer, _) = server.register("viewer").await;
    for (duration_s, why) in [(301, "longer than 300 s"), (9, "shorter than 10 s"), (0, "zero")] {
        let reply = start_deal(&server, &host, &room_id, deal(&sku_id, 5, duration_s, 1)).await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.body["field"], "duration_s", "{why}: {}", reply.text);
    }
    let foreign = start_deal(&server, &host, &room_id, deal(&other_sku, 5, 60, 1)).await;
    foreign.assert_problem(422, "product_not_in_shop");
    assert_eq!(foreign.body["field"], "sku_id", "{}", foreign.text);
    start_deal(&server, &viewer, &room_id, deal(&sku_id, 5, 60, 1)).await.assert_problem(403, "forbidden");
    start_deal(&server, &other_host, &room_id, deal(&sku_id, 5, 60, 1)).await.assert_problem(403, "forbidden");
    let mut pricey = deal(&sku_id, 5, 60, 1);
    pricey["price"] = usd(1000);
    start_deal(&server, &host, &room_id, pricey).await.assert_problem(422, "invalid_field");
    start_deal(&server, &host, &room_id, deal(&sku_id, 5, 60, 0)).await.assert_problem(422, "invalid_field");
    start_deal(&server, &host, &room_id, deal(&sku_id, 0, 60, 1)).await.assert_problem(422, "invalid_field");
    start_deal(&server, &host, &room_id, deal(&sku_id, 500, 60, 1)).await.assert_problem(409, "out_of_stock");
    start_deal(&server, &host, "nope", deal(&sku_id, 5, 60, 1)).await.assert_problem(404, "live_room_not_found");
    let room = server.get(&format!("/api/v1/live/rooms/{room_id}"), Some(&host)).await;
    assert_eq!(room.body["deal"], Value::Null, "refusals left no deal: {}", room.text);
    // One at a time.
    let first = start_deal(&server, &host, &room_id, deal(&sku_id, 5, 60, 1)).await;
    assert_eq!(first.status, 201, "{}", first.text);
    start_deal(&server, &host, &room_id, deal(&sku_id, 5, 60, 1)).await.assert_problem(409, "live_deal_running");
    server.get(&format!("/api/v1/live/rooms/{room_id}/sales"), Some(&viewer)).await.assert_problem(403, "forbidden");
    // A room not live yet, and an ended one.
    let created = server.post("/api/v1/live/rooms", Some(&other_host), json!({"title": "Later"})).await;
    let created_id = created.body["id"].as_str().unwrap().to_string();
    start_deal(&server, &other_host, &created_id, deal(&other_sku, 5, 60, 1))
        .await
        .assert_problem(409, "live_room_not_live");
    let ended = server.post(&format!("/api/v1/live/rooms/{other_room}/end"), Some(&other_host), json!({})).await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    start_deal(&server, &other_host, &other_room, deal(&other_sku, 5, 60, 1))
        .await
        .assert_problem(409, "live_room_ended");
    let sales = server.get(&format!("/api/v1/live/rooms/{other_room}/sales"), Some(&other_host)).await;
    assert_eq!(sales.body["deals"], 0, "{}", sales.text);
    assert_ledger_sound(&server).await;
}

async fn viewers_see_the_deal_start_sell_and_end_and_sales_of_the_pinned_product(db: Db) {
    let server = TestServer::start(db).await;
    let (host, product_id, sku_id, room_id) = live_room_with_product(&server, "host").await;
    let (_, mut watcher) = joined_viewer(&server, "watcher", &room_id).await;
    let (mia, _) = joined_viewer(&server, "Mia", &room_id).await;
    let sale_id = started_deal(&server, &host, &room_id, deal(&sku_id, 10, 10, 3)).await;
    let announced = frame_where(&mut watcher, |f| f["type"] == "live.deal").await;
    assert_eq!(announced["data"]["room_id"], room_id.as_str());
    assert_eq!(announced["data"]["deal"]["flash_sale_id"], sale_id.as_str());
    assert_eq!(announced["data"]["deal"]["remaining"], 10);
    assert_eq!(announced["data"]["deal"]["product"]["id"], product_id.as_str());
    assert_eq!(announced["data"]["deal"]["ended"], false);
    let bought = deal_order(&server, &mia, &sku_id, &sale_id, 2).await;
    assert_eq!(bought.status, 201, "{}", bought.text);
    let sold = frame_where(&mut watcher, |f| f["type"] == "live.sold").await;
    assert_eq!(sold["data"]["room_id"], room_id.as_str());
    assert_eq!(sold["data"]["buyer_name"], "Mia", "{sold}");
    assert_eq!(sold["data"]["product_title"], "Pu'er tea");
    assert_eq!(sold["data"]["quantity"], 2);
    let units = frame_where(&mut watcher, |f| f["type"] == "live.deal" && f["data"]["deal"]["remaining"] == 8).await;
    assert!(units["data"]["deal"]["remaining_ms"].as_i64().unwrap() <= 10_000, "{units}");
    let ended = frame_where(&mut watcher, |f| f["type"] == "live.deal" && f["data"]["deal"]["ended"] == true).await;
    assert_eq!(ended["data"]["deal"]["remaining_ms"], 0, "{ended}");
    assert_eq!(ended["data"]["deal"]["remaining"], 8);
    let room = server.get(&format!("/api/v1/live/rooms/{room_id}"), Some(&mia)).await;
    assert_eq!(room.body["deal"], Value::Null, "no deal after its end: {}", room.text);
    // The pinned product sells at its own price, and the room hears of it.
    let pinned =
        server.post(&format!("/api/v1/live/rooms/{room_id}/pin"), Some(&host), json!({"product_id": product_id})).await;
    assert_eq!(pinned.status, 200, "{}", pinned.text);
    let plain = crate::shop::order(&server, &mia, Some("plain"), json!([{"sku_id": sku_id, "quantity": 1}])).await;
    assert_eq!(plain.status, 201, "{}", plain.text);
    let sold = frame_where(&mut watcher, |f| f["type"] == "live.sold" && f["data"]["quantity"] == 1).await;
    assert_eq!(sold["data"]["buyer_name"], "Mia", "{sold}");
    let sales = server.get(&format!("/api/v1/live/rooms/{room_id}/sales"), Some(&host)).await;
    assert_eq!(
        (sales.body["deals"].clone(), sales.body["orders"].clone(), sales.body["units"].clone()),
        (json!(1), json!(1), json!(2))
    );
    assert_ledger_sound(&server).await;
}

// ---- across nodes ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_on_another_node_sees_the_deal_and_what_was_bought_through_the_first() {
    let nats = std::env::var("PLAZA_TEST_NATS_URL")
        .expect("PLAZA_TEST_NATS_URL must name a NATS server for the cluster tests; scripts/test starts one");
    let dir = tempfile::tempdir().unwrap();
    let database_url = support::fresh_database(Db::Postgres, dir.path()).await;
    let with_nats = |config: &mut plaza_server::config::Config| config.nats_url = Some(nats.clone());
    let node_a = TestServer::start_on(&database_url, with_nats).await;
    let node_b = TestServer::start_on(&database_url, with_nats).await;
    let (host, _, sku_id, room_id) = live_room_with_product(&node_a, "cluster_host").await;
    let (_, mut viewer_on_b) = joined_viewer(&node_b, "cluster_viewer", &room_id).await;
    let (buyer, _) = joined_viewer(&node_a, "Noa", &room_id).await;
    let sale_id = started_deal(&node_a, &host, &room_id, deal(&sku_id, 10, 60, 2)).await;
    let announced = frame_where(&mut viewer_on_b, |f| f["type"] == "live.deal").await;
    assert_eq!(announced["data"]["deal"]["flash_sale_id"], sale_id.as_str());
    let bought = deal_order(&node_a, &buyer, &sku_id, &sale_id, 2).await;
    assert_eq!(bought.status, 201, "{}", bought.text);
    let sold = frame_where(&mut viewer_on_b, |f| f["type"] == "live.sold").await;
    assert_eq!((sold["data"]["buyer_name"].clone(), sold["data"]["quantity"].clone()), (json!("Noa"), json!(2)));
    // Node B's own count tells its viewers the units left.
    frame_where(&mut viewer_on_b, |f| f["type"] == "live.deal" && f["data"]["deal"]["remaining"] == 8).await;
    node_b.stop().await;
    node_a.stop().await;
}

async fn a_running_deal_ends_with_its_room(db: Db) {
    let server = TestServer::start(db).await;
    let (host, _, sku_id, room_id) = live_room_with_product(&server, "host").await;
    let (buyer, _) = server.register("buyer").await;
    topup(&server, &buyer, 10_000).await;
    let sale_id = started_deal(&server, &host, &room_id, deal(&sku_id, 10, 300, 5)).await;
    let bought = deal_order(&server, &buyer, &sku_id, &sale_id, 1).await;
    assert_eq!(bought.status, 201, "{}", bought.text);

    let ended = server.post(&format!("/api/v1/live/rooms/{room_id}/end"), Some(&host), json!({})).await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    assert!(ended.body["deal"].is_null(), "the ended room shows no deal: {}", ended.text);
    // Not at the deal's price after the stream, though its five minutes are not up.
    deal_order(&server, &buyer, &sku_id, &sale_id, 1).await.assert_problem(409, "sale_ended");
    let sale = server.get(&format!("/api/v1/flash-sales/{sale_id}"), Some(&buyer)).await;
    assert_eq!(sale.status, 200, "{}", sale.text);
    assert_eq!(sale.body["status"], "ended", "{}", sale.text);
    server.stop().await;
}
