//! Group buying and flash sales over real HTTP, on SQLite and PostgreSQL: a group opened,
//! shared into a chat, joined from the card and completed with every order paid at once;
//! the race for a group's last seat; groups whose window ends; flash sales that never
//! oversell or pass a buyer's limit, refuse outside their window without touching the
//! wallet, and answer a retried order once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::shop::{
    act, add_product, address, assert_ledger_sound, created_ids, funded, open_shop, shop_server, stock_of, usd,
};
use crate::support::{balance, topup, Db, Reply, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

on_both_databases!(
    a_group_shared_into_a_chat_is_joined_from_the_card_and_every_order_is_paid_at_once,
    buyers_racing_for_the_last_seat_leave_one_winner_and_nothing_held_for_the_others,
    a_group_whose_window_ends_cancels_every_order_and_releases_each_hold_once,
    a_member_who_cancels_while_grouping_frees_the_seat,
    every_bad_group_order_is_refused_with_its_code_and_holds_nothing,
    a_flash_sale_refuses_outside_its_window_and_past_the_limit_without_touching_the_wallet,
    many_buyers_at_once_on_a_flash_sale_never_oversell_nor_pass_the_limit,
    a_retried_flash_order_is_one_order_held_once,
    a_cancelled_flash_order_returns_its_units_to_the_sale,
    every_bad_flash_sale_is_refused_with_its_code_and_field,
    a_flash_order_of_a_buyer_with_a_pin_needs_the_right_pin_and_holds_nothing_without_it,
);

/// A group-buying product: price 1000, group price 700, groups of `size`, 100 in stock.
/// Returns (merchant token, product id, SKU id).
async fn group_product(server: &TestServer, size: i64) -> (String, String, String) {
    let (merchant, _) = server.register("merchant").await;
    let shop_id = open_shop(server, &merchant, "Orchard").await;
    let mangoes = json!({"title": "Mango box", "description": "Ripe mangoes",
                         "skus": [{"name": "5 kg", "price": usd(1000), "group_price": usd(700), "stock": 100}],
                         "group_size": size});
    let reply = add_product(server, &merchant, &shop_id, mangoes).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    (
        merchant,
        reply.body["id"].as_str().unwrap().to_string(),
        reply.body["skus"][0]["id"].as_str().unwrap().to_string(),
    )
}

pub(crate) async fn group_order(server: &TestServer, token: &str, sku_id: &str, group: Value) -> Reply {
    let request = server
        .client
        .post(format!("{}/api/v1/orders", server.base))
        .bearer_auth(token)
        .header("idempotency-key", plaza_kernel::new_id())
        .json(&json!({"items": [{"sku_id": sku_id, "quantity": 1}], "address": address(), "group": group}));
    server.raw(request).await
}

/// `name`, funded, opens a group of `sku_id`: (their token, the group's id).
async fn funded_leader_of_a_group(server: &TestServer, name: &str, sku_id: &str) -> (String, String) {
    let (leader, _) = funded(server, name).await;
    let opened = group_order(server, &leader, sku_id, json!({"mode": "open"})).await;
    (leader, opened.body["group_buy_id"].as_str().unwrap().to_string())
}

async fn join_group(server: &TestServer, token: &str, sku_id: &str, group_id: &str) -> Reply {
    group_order(server, token, sku_id, json!({"mode": "join", "group_id": group_id})).await
}

async fn group_of(server: &TestServer, token: &str, group_id: &str) -> Value {
    let reply = server.get(&format!("/api/v1/group-buys/{group_id}"), Some(token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

async fn a_group_shared_into_a_chat_is_joined_from_the_card_and_every_order_is_paid_at_once(db: Db) {
    let server = shop_server(db).await;
    let (merchant, product_id, sku_id) = group_product(&server, 2).await;
    let people = server.register_contacts(&["ann", "bob"]).await;
    let ((ann, ann_id), (bob, bob_id)) = (people[0].clone(), people[1].clone());
    topup(&server, &ann, 10_000).await;
    topup(&server, &bob, 10_000).await;
    let chat = server.conversation(&ann, "direct", &[&bob_id]).await;

    let opened = group_order(&server, &ann, &sku_id, json!({"mode": "open"})).await;
    assert_eq!(opened.status, 201, "{}", opened.text);
    assert_eq!(opened.body["status"], "grouping");
    assert_eq!(opened.body["total"], usd(700), "the group price");
    let group_id = opened.body["group_buy_id"].as_str().unwrap().to_string();
    assert_eq!(balance(&server, &ann).await, (9300, 700), "held while grouping");

    // The product page shows the forming group with its leader, seats and deadline.
    let page = server.get(&format!("/api/v1/products/{product_id}"), Some(&bob)).await;
    let groups = page.body["open_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["id"], group_id.as_str());
    assert_eq!(groups[0]["leader"]["id"], ann_id.as_str());
    assert_eq!(groups[0]["seats_left"], 1);
    let group = group_of(&server, &bob, &group_id).await;
    assert_eq!(
        (group["size"].clone(), group["seats_left"].clone(), group["status"].clone()),
        (json!(2), json!(1), json!("forming"))
    );
    assert_eq!(group["price"], usd(700));
    assert!(group["expires_at"].as_str().is_some());

    // Only a member shares it; the card shows the group to the chat.
    server
        .post(&format!("/api/v1/group-buys/{group_id}/share"), Some(&bob), json!({"conversation_id": chat}))
        .await
        .assert_problem(403, "forbidden");
    let shared = server
        .post(&format!("/api/v1/group-buys/{group_id}/share"), Some(&ann), json!({"conversation_id": chat}))
        .await;
    assert_eq!(shared.status, 201, "{}", shared.text);
    let card = server.first_card(&bob, &chat).await;
    assert_eq!(card["body"]["type"], "group_buy");
    assert_eq!(card["body"]["id"], group_id.as_str());
    assert_eq!(card["body"]["seats_left"], 1);

    // Bob joins from the card; both orders are paid at once and both hear of it.
    let (mut ann_socket, _) = server.socket(&ann).await;
    let joined = join_group(&server, &bob, &sku_id, &group_id).await;
    assert_eq!(joined.status, 201, "{}", joined.text);
    assert_eq!(joined.body["status"], "paid");
    let ann_order = server.get(&format!("/api/v1/orders/{}", opened.body["id"].as_str().unwrap()), Some(&ann)).await;
    assert_eq!(ann_order.body["status"], "paid");
    let frames = ann_socket.frames_until("group_buy.updated").await;
    assert!(frames.iter().any(|f| f["type"] == "order.updated" && f["data"]["status"] == "paid"), "{frames:?}");
    let group = group_of(&server, &ann, &group_id).await;
    assert_eq!(group["status"], "complete");
    assert_eq!(group["seats_left"], 0);
    let members: Vec<&str> = group["members"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(members, [ann_id.as_str(), bob_id.as_str()]);
    let history = server.get(&format!("/api/v1/conversations/{chat}/messages"), Some(&bob)).await;
    let cards: Vec<&Value> = history.body["items"].as_array().unwrap().iter().filter(|m| m["kind"] == "card").collect();
    assert!(cards.iter().any(|m| m["body"]["status"] == "complete"), "the chat hears the group completed: {cards:?}");
    assert!(server.get(&format!("/api/v1/products/{product_id}"), Some(&bob)).await.body["open_groups"]
        .as_array()
        .unwrap()
        .is_empty());
    // A complete group takes nobody else.
    let (carol, _) = funded(&server, "carol").await;
    join_group(&server, &carol, &sku_id, &group_id).await.assert_problem(409, "group_full");

    // The merchant ships, Ann confirms, the merchant is paid the group price less 5 %.
    let ann_order_id = opened.body["id"].as_str().unwrap();
    act(&server, &merchant, ann_order_id, "ship", json!({"carrier": "SF", "tracking_number": "9"})).await;
    let confirmed = act(&server, &ann, ann_order_id, "confirm", json!({})).await;
    assert_eq!(confirmed.body["status"], "completed", "{}", confirmed.text);
    assert_eq!(balance(&server, &merchant).await, (665, 0));
    assert_eq!(stock_of(&server, &merchant, &product_id).await, 98);
    assert_ledger_sound(&server).await;
}

async fn buyers_racing_for_the_last_seat_leave_one_winner_and_nothing_held_for_the_others(db: Db) {
    let server = shop_server(db).await;
    let (_, product_id, sku_id) = group_product(&server, 3).await;
    let (leader, group_id) = funded_leader_of_a_group(&server, "leader", &sku_id).await;
    let (second, _) = funded(&server, "second").await;
    assert_eq!(join_group(&server, &second, &sku_id, &group_id).await.status, 201);
    let mut racers = Vec::new();
    for index in 0..8 {
        racers.push(funded(&server, &format!("racer{index}")).await.0);
    }
    let tries = racers.iter().map(|token| join_group(&server, token, &sku_id, &group_id));
    let replies = futures_util::future::join_all(tries).await;
    let winners = replies.iter().filter(|reply| reply.status == 201).count();
    for reply in replies.iter().filter(|reply| reply.status != 201) {
        reply.assert_problem(409, "group_full");
    }
    assert_eq!(winners, 1, "exactly one buyer takes the last seat");
    let mut held = 0;
    for token in &racers {
        let (available, on_hold) = balance(&server, token).await;
        assert_eq!(available + on_hold, 10_000);
        held += on_hold;
    }
    assert_eq!(held, 700, "only the winner holds money");
    let group = group_of(&server, &leader, &group_id).await;
    assert_eq!((group["status"].clone(), group["members"].as_array().unwrap().len()), (json!("complete"), 3));
    assert_eq!(stock_of(&server, &leader, &product_id).await, 97, "stock for the three members only");
    assert_ledger_sound(&server).await;
}

async fn a_group_whose_window_ends_cancels_every_order_and_releases_each_hold_once(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.shop.group_window = Duration::from_millis(1500);
        config.shop.job_interval = Duration::from_millis(50);
    })
    .await;
    let (_, product_id, sku_id) = group_product(&server, 3).await;
    let (leader, _) = funded(&server, "leader").await;
    let (member, _) = funded(&server, "member").await;
    let opened = group_order(&server, &leader, &sku_id, json!({"mode": "open"})).await;
    let group_id = opened.body["group_buy_id"].as_str().unwrap().to_string();
    let joined = join_group(&server, &member, &sku_id, &group_id).await;
    assert_eq!(joined.status, 201, "{}", joined.text);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let leader_order =
            server.get(&format!("/api/v1/orders/{}", opened.body["id"].as_str().unwrap()), Some(&leader)).await;
        let member_order =
            server.get(&format!("/api/v1/orders/{}", joined.body["id"].as_str().unwrap()), Some(&member)).await;
        let settled = |order: &Reply| order.body["status"] == "cancelled" && order.body["payment_status"] == "released";
        if settled(&leader_order) && settled(&member_order) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not failed: {} {}", leader_order.text, member_order.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(group_of(&server, &leader, &group_id).await["status"], "failed");
    assert_eq!(balance(&server, &leader).await, (10_000, 0), "released once");
    assert_eq!(balance(&server, &member).await, (10_000, 0));
    assert_eq!(stock_of(&server, &leader, &product_id).await, 100, "the stock is back");
    let (late, _) = funded(&server, "late").await;
    join_group(&server, &late, &sku_id, &group_id).await.assert_problem(409, "group_expired");
    assert_eq!(balance(&server, &late).await, (10_000, 0));
    assert_ledger_sound(&server).await;
}

async fn a_member_who_cancels_while_grouping_frees_the_seat(db: Db) {
    let server = shop_server(db).await;
    let (_, _, sku_id) = group_product(&server, 2).await;
    let (_, group_id) = funded_leader_of_a_group(&server, "leader", &sku_id).await;
    let (member, _) = funded(&server, "member").await;
    let (other, _) = funded(&server, "other").await;
    // Another buyer opens a group of their own and cancels: nobody is left in it.
    let (third, _) = funded(&server, "third").await;
    let own = group_order(&server, &third, &sku_id, json!({"mode": "open"})).await;
    let cancelled = act(&server, &third, own.body["id"].as_str().unwrap(), "cancel", json!({})).await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.text);
    let own_group = group_of(&server, &third, own.body["group_buy_id"].as_str().unwrap()).await;
    assert_eq!(own_group["status"], "failed", "a group nobody is left in has failed");
    assert_eq!(balance(&server, &third).await, (10_000, 0));
    // The leader's group still fills.
    let joined = join_group(&server, &member, &sku_id, &group_id).await;
    assert_eq!(joined.body["status"], "paid", "{}", joined.text);
    join_group(&server, &other, &sku_id, &group_id).await.assert_problem(409, "group_full");
    assert_ledger_sound(&server).await;
}

async fn every_bad_group_order_is_refused_with_its_code_and_holds_nothing(db: Db) {
    let server = shop_server(db).await;
    let (merchant, _, sku_id) = group_product(&server, 2).await;
    let shop: String = server.get("/api/v1/products?limit=1", Some(&merchant)).await.body["items"][0]["shop_id"]
        .as_str()
        .unwrap()
        .to_string();
    let plain = json!({"title": "Plain", "skus": [{"name": "one", "price": usd(500), "stock": 5}]});
    let plain = add_product(&server, &merchant, &shop, plain).await;
    let plain_sku = plain.body["skus"][0]["id"].as_str().unwrap().to_string();
    let (leader, group_id) = funded_leader_of_a_group(&server, "leader", &sku_id).await;
    let held_before = balance(&server, &leader).await;
    join_group(&server, &leader, &sku_id, &group_id).await.assert_problem(409, "already_in_group");
    let (buyer, _) = funded(&server, "buyer").await;
    let no_group = group_order(&server, &buyer, &plain_sku, json!({"mode": "open"})).await;
    no_group.assert_problem(422, "invalid_field");
    assert_eq!(no_group.body["field"], "group");
    group_order(&server, &buyer, &sku_id, json!({"mode": "join", "group_id": "nope"}))
        .await
        .assert_problem(404, "group_buy_not_found");
    group_order(&server, &buyer, &sku_id, json!({"mode": "sideways"})).await.assert_problem(422, "invalid_field");
    let two_items = server
        .raw(server.client.post(format!("{}/api/v1/orders", server.base)).bearer_auth(&buyer).json(&json!({
            "items": [{"sku_id": sku_id, "quantity": 1}, {"sku_id": plain_sku, "quantity": 1}],
            "address": address(), "group": {"mode": "open"}})))
        .await;
    two_items.assert_problem(422, "invalid_field");
    join_group(&server, &merchant, &sku_id, &group_id).await.assert_problem(422, "invalid_field");
    assert_eq!(balance(&server, &buyer).await, (10_000, 0), "nothing held");
    assert_eq!(balance(&server, &leader).await, held_before);
    server.get("/api/v1/group-buys/nope", Some(&buyer)).await.assert_problem(404, "group_buy_not_found");
    assert_ledger_sound(&server).await;
}

fn at(offset: Duration, later: bool) -> String {
    let now = plaza_kernel::Timestamp::now();
    if later { now.plus(offset) } else { now.minus(offset) }.to_rfc3339()
}

/// A product at 1000 with `stock` units and a sale of `quantity` at 600, `limit` per buyer,
/// in the window given. Returns (merchant, product id, SKU id, sale id).
async fn flash_product(
    server: &TestServer,
    stock: i64,
    quantity: i64,
    limit: i64,
    window: (String, String),
) -> (String, String, String, String) {
    let (merchant, _) = server.register("merchant").await;
    let shop_id = open_shop(server, &merchant, "Flash").await;
    let phone = json!({"title": "Phone", "skus": [{"name": "black", "price": usd(1000), "stock": stock}]});
    let reply = add_product(server, &merchant, &shop_id, phone).await;
    let (product_id, sku_id) =
        (reply.body["id"].as_str().unwrap().to_string(), reply.body["skus"][0]["id"].as_str().unwrap().to_string());
    let sale = server
        .post(
            "/api/v1/flash-sales",
            Some(&merchant),
            json!({"sku_id": sku_id, "price": usd(600), "quantity": quantity, "starts_at": window.0,
                   "ends_at": window.1, "per_user_limit": limit}),
        )
        .await;
    assert_eq!(sale.status, 201, "{}", sale.text);
    (merchant, product_id, sku_id, sale.body["id"].as_str().unwrap().to_string())
}

async fn flash_order(server: &TestServer, token: &str, key: &str, sku_id: &str, sale_id: &str, quantity: i64) -> Reply {
    let request = server
        .client
        .post(format!("{}/api/v1/orders", server.base))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({"items": [{"sku_id": sku_id, "quantity": quantity, "flash_sale_id": sale_id}],
                      "address": address()}));
    server.raw(request).await
}

fn live_window() -> (String, String) {
    (at(Duration::from_secs(5), false), at(Duration::from_secs(3600), true))
}

async fn a_flash_sale_refuses_outside_its_window_and_past_the_limit_without_touching_the_wallet(db: Db) {
    let server = shop_server(db).await;
    let later = (at(Duration::from_secs(3600), true), at(Duration::from_secs(7200), true));
    let (merchant, product_id, sku_id, upcoming) = flash_product(&server, 50, 10, 2, later).await;
    let (buyer, _) = funded(&server, "buyer").await;
    let early = flash_order(&server, &buyer, "k1", &sku_id, &upcoming, 1).await;
    early.assert_problem(409, "sale_not_started");
    assert!(early.body["starts_at"].as_str().is_some(), "{}", early.text);
    let page = server.get(&format!("/api/v1/products/{product_id}"), Some(&buyer)).await;
    assert_eq!(page.body["flash_sales"][0]["status"], "upcoming");
    assert_eq!(page.body["flash_sales"][0]["remaining"], 10);
    assert_eq!(stock_of(&server, &buyer, &product_id).await, 40, "the sale's units left the SKU's stock");
    // A sale that ends in a moment.
    let soon = server
        .post(
            "/api/v1/flash-sales",
            Some(&merchant),
            json!({"sku_id": sku_id, "price": usd(600), "quantity": 5, "starts_at": at(Duration::from_secs(5), false),
                   "ends_at": at(Duration::from_millis(800), true), "per_user_limit": 2}),
        )
        .await;
    let soon_id = soon.body["id"].as_str().unwrap().to_string();
    let first = flash_order(&server, &buyer, "k2", &sku_id, &soon_id, 2).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["total"], usd(1200), "the sale price");
    assert_eq!(first.body["flash_sale_id"], soon_id.as_str());
    let over = flash_order(&server, &buyer, "k3", &sku_id, &soon_id, 1).await;
    over.assert_problem(409, "limit_reached");
    assert_eq!((over.body["limit"].clone(), over.body["bought"].clone()), (json!(2), json!(2)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = flash_order(&server, &buyer, &plaza_kernel::new_id(), &sku_id, &soon_id, 1).await;
        if reply.body["code"] == "sale_ended" {
            break;
        }
        reply.assert_problem(409, "limit_reached");
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (other, _) = funded(&server, "other").await;
    flash_order(&server, &other, "k4", &sku_id, &soon_id, 1).await.assert_problem(409, "sale_ended");
    assert_eq!(balance(&server, &buyer).await, (8800, 1200), "only the one order holds money");
    assert_eq!(balance(&server, &other).await, (10_000, 0));
    assert_ledger_sound(&server).await;
}

async fn a_flash_order_of_a_buyer_with_a_pin_needs_the_right_pin_and_holds_nothing_without_it(db: Db) {
    let server = shop_server(db).await;
    let (_, _, sku_id, sale_id) = flash_product(&server, 10, 5, 2, live_window()).await;
    let (buyer, _) = funded(&server, "buyer").await;
    let set = server.post("/api/v1/wallet/pin", Some(&buyer), json!({"pin": "024680"})).await;
    assert!(set.status < 300, "{}", set.text);
    let order_with = |key: &'static str, pin: Option<&'static str>| {
        let mut body = json!({"items": [{"sku_id": sku_id, "quantity": 1, "flash_sale_id": sale_id}],
                              "address": address()});
        if let Some(pin) = pin {
            body["pin"] = json!(pin);
        }
        let request = server
            .client
            .post(format!("{}/api/v1/orders", server.base))
            .bearer_auth(&buyer)
            .header("idempotency-key", key)
            .json(&body);
        server.raw(request)
    };
    order_with("no-pin", None).await.assert_problem(403, "pin_required");
    assert_eq!(balance(&server, &buyer).await, (10_000, 0), "nothing held without the PIN");
    let wrong = order_with("wrong-pin", Some("135799")).await;
    assert!(wrong.status >= 400, "{}", wrong.text);
    assert_eq!(balance(&server, &buyer).await, (10_000, 0), "nothing held with a wrong PIN");
    let paid = order_with("right-pin", Some("024680")).await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    assert_eq!(balance(&server, &buyer).await, (9_400, 600));
    assert_ledger_sound(&server).await;
}

async fn many_buyers_at_once_on_a_flash_sale_never_oversell_nor_pass_the_limit(db: Db) {
    let server = shop_server(db).await;
    let (merchant, _, sku_id, sale_id) = flash_product(&server, 100, 25, 2, live_window()).await;
    let mut buyers = Vec::new();
    for index in 0..20 {
        buyers.push(funded(&server, &format!("buyer{index}")).await.0);
    }
    // Every buyer tries three single units at once: at most two each, 25 in all.
    let keys: Vec<(usize, String)> =
        (0..buyers.len()).flat_map(|index| (0..3).map(move |_| (index, plaza_kernel::new_id()))).collect();
    let tries = keys.iter().map(|(index, key)| flash_order(&server, &buyers[*index], key, &sku_id, &sale_id, 1));
    let replies = futures_util::future::join_all(tries).await;
    let sold = replies.iter().filter(|reply| reply.status == 201).count();
    for reply in replies.iter().filter(|reply| reply.status != 201) {
        assert!(
            reply.body["code"] == "sold_out" || reply.body["code"] == "limit_reached",
            "{} {}",
            reply.status,
            reply.text
        );
    }
    assert_eq!(sold, 25, "every unit sold, none twice");
    let mut held = 0;
    for token in &buyers {
        let (available, on_hold) = balance(&server, token).await;
        assert_eq!(available + on_hold, 10_000);
        assert!(on_hold <= 1200, "no buyer past the limit: {on_hold}");
        held += on_hold;
    }
    assert_eq!(held, 25 * 600, "money held = units sold × price");
    let sale = server.get(&format!("/api/v1/flash-sales/{sale_id}"), Some(&merchant)).await;
    assert_eq!(sale.body["remaining"], 0);
    assert_eq!(sale.body["status"], "sold_out");
    let sold_orders = server.get("/api/v1/orders?role=seller&limit=200", Some(&merchant)).await;
    assert_eq!(sold_orders.body["items"].as_array().unwrap().len(), 25);
    assert_ledger_sound(&server).await;
}

async fn a_retried_flash_order_is_one_order_held_once(db: Db) {
    let server = shop_server(db).await;
    let (_, _, sku_id, sale_id) = flash_product(&server, 100, 10, 3, live_window()).await;
    let (buyer, _) = funded(&server, "buyer").await;
    let tries = (0..5).map(|_| flash_order(&server, &buyer, "same", &sku_id, &sale_id, 2));
    let ids = created_ids(&futures_util::future::join_all(tries).await);
    assert_eq!(ids.len(), 1, "one order");
    assert_eq!(balance(&server, &buyer).await, (8800, 1200), "held once");
    flash_order(&server, &buyer, "same", &sku_id, &sale_id, 1).await.assert_problem(422, "idempotency_key_reused");
    let sale = server.get(&format!("/api/v1/flash-sales/{sale_id}"), Some(&buyer)).await;
    assert_eq!(sale.body["remaining"], 8);
    assert_ledger_sound(&server).await;
}

async fn a_cancelled_flash_order_returns_its_units_to_the_sale(db: Db) {
    let server = shop_server(db).await;
    let (_, _, sku_id, sale_id) = flash_product(&server, 10, 1, 1, live_window()).await;
    let (buyer, _) = funded(&server, "buyer").await;
    let (other, _) = funded(&server, "other").await;
    let placed = flash_order(&server, &buyer, "a", &sku_id, &sale_id, 1).await;
    flash_order(&server, &other, "b", &sku_id, &sale_id, 1).await.assert_problem(409, "sold_out");
    act(&server, &buyer, placed.body["id"].as_str().unwrap(), "cancel", json!({})).await;
    assert_eq!(balance(&server, &buyer).await, (10_000, 0));
    let again = flash_order(&server, &other, "c", &sku_id, &sale_id, 1).await;
    assert_eq!(again.status, 201, "the unit is for sale again: {}", again.text);
    let sale = server.get(&format!("/api/v1/flash-sales/{sale_id}"), Some(&buyer)).await;
    assert_eq!(sale.body["remaining"], 0);
    assert_ledger_sound(&server).await;
}

async fn every_bad_flash_sale_is_refused_with_its_code_and_field(db: Db) {
    let server = shop_server(db).await;
    let (merchant, _, sku_id, _) = flash_product(&server, 20, 5, 1, live_window()).await;
    let (stranger, _) = server.register("stranger").await;
    let (start, end) = live_window();
    let base = json!({"sku_id": sku_id, "price": usd(600), "quantity": 5, "starts_at": start, "ends_at": end,
                      "per_user_limit": 1});
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let cases = [
        (with("price", usd(1000)), 422, "invalid_field", "price"),
        (with("price", usd(0)), 422, "invalid_field", "price.amount"),
        (with("quantity", json!(0)), 422, "invalid_field", "quantity"),
        (with("quantity", json!(16)), 409, "out_of_stock", "quantity"),
        (with("per_user_limit", json!(0)), 422, "invalid_field", "per_user_limit"),
        (with("ends_at", json!(start)), 422, "invalid_field", "ends_at"),
        (with("starts_at", json!("tomorrow")), 422, "invalid_field", "starts_at"),
        (with("sku_id", json!("nope")), 422, "invalid_field", "sku_id"),
    ];
    for (body, status, code, field) in cases {
        let reply = server.post("/api/v1/flash-sales", Some(&merchant), body.clone()).await;
        reply.assert_problem(status, code);
        assert_eq!(reply.body["field"], field, "{body}: {}", reply.text);
    }
    server.post("/api/v1/flash-sales", Some(&stranger), base).await.assert_problem(403, "forbidden");
    server.get("/api/v1/flash-sales/nope", Some(&stranger)).await.assert_problem(404, "flash_sale_not_found");
    let (buyer, _) = funded(&server, "buyer").await;
    flash_order(&server, &buyer, "x", &sku_id, "nope", 1).await.assert_problem(404, "flash_sale_not_found");
    assert_eq!(balance(&server, &buyer).await, (10_000, 0));
}
