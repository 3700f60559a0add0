//! The shop over real HTTP, on SQLite and PostgreSQL: shops and products with SKUs and
//! public photos, only the owner editing; catalogue search in English and Chinese, ranked
//! by relevance, the same order on both engines; orders paid into escrow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{balance, topup, Db, Reply, TestServer, PIXEL_PNG};
use serde_json::{json, Value};

on_both_databases!(
    a_merchant_opens_one_shop_and_adds_a_product_whose_photos_every_signed_in_user_sees,
    a_merchant_finds_their_own_shop_and_anyone_else_has_none,
    only_the_owner_edits_a_shop_and_its_products,
    every_bad_product_is_refused_with_its_code_and_field,
    search_finds_an_english_word_and_a_chinese_word_inside_a_longer_run,
    search_ranks_a_title_hit_above_a_description_hit_and_never_finds_archived_products,
    an_order_is_held_shipped_confirmed_and_pays_the_merchant_less_the_fee_and_is_reviewed,
    cancelling_before_shipping_releases_the_hold_and_returns_the_stock,
    refunds_are_approved_with_the_money_back_or_rejected_back_to_where_they_were,
    many_buyers_at_once_on_one_sku_never_oversell_and_hold_only_for_what_they_got,
    a_retried_order_creates_one_order_and_holds_once_and_another_body_under_its_key_is_refused,
    only_buyer_and_seller_see_an_order_and_each_does_only_their_part,
    every_bad_order_is_refused_with_its_code_and_field_and_holds_nothing,
    a_shipped_order_nobody_confirms_confirms_itself_once,
    a_product_shared_into_a_chat_is_a_card_its_members_see_and_an_outsider_cannot_post,
);

const AUDITOR: &str = "auditor";

pub(crate) async fn shop_server(db: Db) -> TestServer {
    TestServer::start(db).await
}

pub(crate) async fn assert_ledger_sound(server: &TestServer) {
    let (auditor, _) = server.register(AUDITOR).await;
    server.set_admin(AUDITOR, true).await;
    let reply = server.get("/api/v1/admin/ledger/check", Some(&auditor)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["ok"], true, "{}", reply.text);
}

pub(crate) fn address() -> Value {
    json!({"name": "Ann Lee", "line1": "1 Hill Road", "city": "Kunming", "postal_code": "650000",
           "country": "CN", "phone": "+86 871 0000"})
}

pub(crate) async fn order(server: &TestServer, token: &str, key: Option<&str>, items: Value) -> Reply {
    let mut request = server
        .client
        .post(format!("{}/api/v1/orders", server.base))
        .bearer_auth(token)
        .json(&json!({"items": items, "address": address()}));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    server.raw(request).await
}

pub(crate) async fn act(server: &TestServer, token: &str, order_id: &str, action: &str, body: Value) -> Reply {
    server.post(&format!("/api/v1/orders/{order_id}/{action}"), Some(token), body).await
}

pub(crate) async fn stock_of(server: &TestServer, token: &str, product_id: &str) -> i64 {
    server.get(&format!("/api/v1/products/{product_id}"), Some(token)).await.body["skus"][0]["stock"].as_i64().unwrap()
}

/// Registers `name` with 10,000 in their wallet; (token, user id).
pub(crate) async fn funded(server: &TestServer, name: &str) -> (String, String) {
    let (token, id) = server.register(name).await;
    topup(server, &token, 10_000).await;
    (token, id)
}

/// The ids of `replies`, each of which must be a 201 (what the tries of one order answered).
pub(crate) fn created_ids(replies: &[Reply]) -> std::collections::HashSet<String> {
    replies
        .iter()
        .map(|reply| {
            assert_eq!(reply.status, 201, "{}", reply.text);
            reply.body["id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// A shop of `merchant` with one product: (merchant token, merchant id, product id, SKU id).
pub(crate) async fn merchant_with_product(
    server: &TestServer,
    price: i64,
    stock: i64,
) -> (String, String, String, String) {
    let (merchant, merchant_id) = server.register("merchant").await;
    let shop_id = open_shop(server, &merchant, "Beans").await;
    let (product_id, sku_id) = simple_product(server, &merchant, &shop_id, "云南咖啡豆", "Arabica", price, stock).await;
    (merchant, merchant_id, product_id, sku_id)
}

pub(crate) async fn upload(server: &TestServer, token: &str) -> String {
    let part = reqwest::multipart::Part::bytes(PIXEL_PNG.to_vec()).file_name("p.png").mime_str("image/png").unwrap();
    let form = reqwest::multipart::Form::new().part("file", part);
    let reply = server
        .raw(server.client.post(format!("{}/api/v1/media", server.base)).bearer_auth(token).multipart(form))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body["id"].as_str().unwrap().to_string()
}

pub(crate) async fn open_shop(server: &TestServer, token: &str, name: &str) -> String {
    let reply = server.post("/api/v1/shops", Some(token), json!({"name": name, "description": "good things"})).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body["id"].as_str().unwrap().to_string()
}

pub(crate) fn usd(amount: i64) -> Value {
    json!({"amount": amount, "currency": "USD"})
}

pub(crate) async fn add_product(server: &TestServer, token: &str, shop_id: &str, body: Value) -> Reply {
    server.post(&format!("/api/v1/shops/{shop_id}/products"), Some(token), body).await
}

/// A product with one SKU of `stock` units at `price`; returns (product id, SKU id).
pub(crate) async fn simple_product(
    server: &TestServer,
    token: &str,
    shop_id: &str,
    title: &str,
    description: &str,
    price: i64,
    stock: i64,
) -> (String, String) {
    let reply = add_product(
        server,
        token,
        shop_id,
        json!({"title": title, "description": description,
               "skus": [{"name": "standard", "price": usd(price), "stock": stock}]}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    (reply.body["id"].as_str().unwrap().to_string(), reply.body["skus"][0]["id"].as_str().unwrap().to_string())
}

pub(crate) async fn search(server: &TestServer, token: &str, query: &str) -> Vec<String> {
    let reply = server
        .raw(server.client.get(format!("{}/api/v1/products", server.base)).bearer_auth(token).query(&[("q", query)]))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["items"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap().to_string()).collect()
}

async fn a_merchant_opens_one_shop_and_adds_a_product_whose_photos_every_signed_in_user_sees(db: Db) {
    let server = TestServer::start(db).await;
    let [(merchant, merchant_id), (buyer, _)] = server.register_all(["merchant", "buyer"]).await;
    let shop_id = open_shop(&server, &merchant, "Mountain Goods").await;
    server
        .post("/api/v1/shops", Some(&merchant), json!({"name": "Second"}))
        .await
        .assert_problem(409, "shop_already_exists");

    let shop = server.get(&format!("/api/v1/shops/{shop_id}"), Some(&buyer)).await;
    assert_eq!(shop.status, 200, "{}", shop.text);
    assert_eq!(shop.body["owner"]["id"], merchant_id);
    assert_eq!(shop.body["rating"], json!({"average": 0.0, "count": 0}));

    let photo = upload(&server, &merchant).await;
    // Before it is a product photo, only its uploader sees it.
    server.get(&format!("/api/v1/media/{photo}"), Some(&buyer)).await.assert_problem(404, "media_not_found");
    let created = add_product(
        &server,
        &merchant,
        &shop_id,
        json!({"title": "Trail boots", "description": "Waterproof", "media_ids": [photo],
               "group_size": 3,
               "skus": [{"name": "EU 42", "price": usd(9000), "stock": 5, "group_price": usd(7500)},
                        {"name": "EU 44", "price": usd(9500), "stock": 0, "group_price": usd(8000)}]}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let product_id = created.body["id"].as_str().unwrap();
    assert_eq!(created.body["status"], "active");
    assert_eq!(created.body["photo_urls"], json!([format!("/api/v1/media/{photo}")]));
    assert_eq!(created.body["skus"][1]["group_price"], usd(8000));

    let seen = server.get(&format!("/api/v1/products/{product_id}"), Some(&buyer)).await;
    assert_eq!(seen.status, 200, "{}", seen.text);
    assert_eq!(seen.body["title"], "Trail boots");
    assert_eq!(seen.body["group_size"], 3);
    assert_eq!(seen.body["open_groups"], json!([]));
    assert_eq!(seen.body["sold_count"], 0);
    let image =
        server.raw(server.client.get(format!("{}/api/v1/media/{photo}", server.base)).bearer_auth(&buyer)).await;
    assert_eq!(image.status, 200, "a product photo is public to signed-in users");
    server.get(&format!("/api/v1/media/{photo}"), None).await.assert_problem(401, "unauthenticated");

    let listed = server.get(&format!("/api/v1/products?shop_id={shop_id}"), Some(&buyer)).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    server.get("/api/v1/products/nope", Some(&buyer)).await.assert_problem(404, "product_not_found");
    server.get("/api/v1/shops/nope", Some(&buyer)).await.assert_problem(404, "shop_not_found");
}

async fn a_merchant_finds_their_own_shop_and_anyone_else_has_none(db: Db) {
    let server = TestServer::start(db).await;
    let [(merchant, _), (buyer, _)] = server.register_all(["merchant", "buyer"]).await;
    server.get("/api/v1/shops/mine", Some(&merchant)).await.assert_problem(404, "shop_not_found");
    let shop_id = open_shop(&server, &merchant, "Mountain Goods").await;
    let mine = server.get("/api/v1/shops/mine", Some(&merchant)).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    assert_eq!(mine.body["id"], shop_id);
    assert_eq!(mine.body["name"], "Mountain Goods");
    server.get("/api/v1/shops/mine", Some(&buyer)).await.assert_problem(404, "shop_not_found");
}

async fn only_the_owner_edits_a_shop_and_its_products(db: Db) {
    let server = TestServer::start(db).await;
    let [(merchant, _), (other, _)] = server.register_all(["merchant", "other"]).await;
    let shop_id = open_shop(&server, &merchant, "Tea House").await;
    let (product_id, sku_id) = simple_product(&server, &merchant, &shop_id, "Green tea", "", 500, 10).await;
    let body = json!({"title": "Mine now", "skus": [{"id": sku_id, "stock": 0}]});
    let path = format!("/api/v1/products/{product_id}");
    server.request("PATCH", &path, Some(&other), Some(body)).await.assert_problem(403, "forbidden");
    add_product(&server, &other, &shop_id, json!({"title": "x", "skus": [{"name": "a", "price": usd(1), "stock": 1}]}))
        .await
        .assert_problem(403, "forbidden");
    let other_photo = upload(&server, &other).await;
    server
        .request("PATCH", &path, Some(&merchant), Some(json!({"media_ids": [other_photo]})))
        .await
        .assert_problem(422, "invalid_field");
    let unchanged = server.get(&path, Some(&other)).await;
    assert_eq!(unchanged.body["title"], "Green tea");
    assert_eq!(unchanged.body["skus"][0]["stock"], 10);

    let edited = server
        .request(
            "PATCH",
            &path,
            Some(&merchant),
            Some(json!({"title": "Jasmine tea", "skus": [{"id": sku_id, "price": usd(650), "stock": 3}]})),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(edited.body["title"], "Jasmine tea");
    assert_eq!(edited.body["skus"][0]["price"], usd(650));
    assert_eq!(edited.body["skus"][0]["stock"], 3);
    assert_eq!(search(&server, &other, "jasmine").await, ["Jasmine tea"]);
    assert!(search(&server, &other, "green").await.is_empty(), "the old title is no longer indexed");
}

async fn every_bad_product_is_refused_with_its_code_and_field(db: Db) {
    let server = TestServer::start(db).await;
    let (merchant, _) = server.register("merchant").await;
    let shop_id = open_shop(&server, &merchant, "Shop").await;
    let sku = |price: Value, stock: i64| json!({"name": "a", "price": price, "stock": stock});
    let cases = [
        (json!({"title": "", "skus": [sku(usd(100), 1)]}), "title"),
        (json!({"title": "x", "skus": []}), "skus"),
        (json!({"title": "x", "skus": [sku(usd(0), 1)]}), "skus[0].price.amount"),
        (json!({"title": "x", "skus": [sku(usd(-5), 1)]}), "skus[0].price.amount"),
        (json!({"title": "x", "skus": [sku(json!({"amount": 100, "currency": "XXX"}), 1)]}), "skus[0].price.currency"),
        (json!({"title": "x", "skus": [sku(usd(100), -1)]}), "skus[0].stock"),
        (
            json!({"title": "x", "group_size": 2,
                   "skus": [{"name": "a", "price": usd(100), "stock": 1, "group_price": usd(100)}]}),
            "skus[0].group_price",
        ),
        (
            json!({"title": "x", "group_size": 1,
                   "skus": [{"name": "a", "price": usd(100), "stock": 1, "group_price": usd(50)}]}),
            "group_size",
        ),
        (
            json!({"title": "x", "group_size": 51,
                   "skus": [{"name": "a", "price": usd(100), "stock": 1, "group_price": usd(50)}]}),
            "group_size",
        ),
        (json!({"title": "x", "group_size": 2, "skus": [sku(usd(100), 1)]}), "skus[0].group_price"),
        (json!({"title": "x", "media_ids": ["nope"], "skus": [sku(usd(100), 1)]}), "media_ids"),
    ];
    for (body, field) in cases {
        let reply = add_product(&server, &merchant, &shop_id, body.clone()).await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{body}: {}", reply.text);
    }
    let listed = server.get("/api/v1/products", Some(&merchant)).await;
    assert_eq!(listed.body["items"], json!([]), "nothing was created");
}

async fn search_finds_an_english_word_and_a_chinese_word_inside_a_longer_run(db: Db) {
    let server = TestServer::start(db).await;
    let [(merchant, _), (buyer, _)] = server.register_all(["merchant", "buyer"]).await;
    let shop_id = open_shop(&server, &merchant, "Beans").await;
    simple_product(&server, &merchant, &shop_id, "云南咖啡豆", "来自普洱的小粒咖啡", 3800, 10).await;
    simple_product(&server, &merchant, &shop_id, "Ethiopian Coffee Beans", "Fruity, light ROAST.", 2400, 10).await;
    simple_product(&server, &merchant, &shop_id, "绿茶", "明前龙井", 1800, 10).await;
    assert_eq!(search(&server, &buyer, "咖啡").await, ["云南咖啡豆"]);
    assert_eq!(search(&server, &buyer, "龙井").await, ["绿茶"]);
    assert_eq!(search(&server, &buyer, "roast").await, ["Ethiopian Coffee Beans"]);
    assert_eq!(search(&server, &buyer, "COFFEE").await, ["Ethiopian Coffee Beans"]);
    assert!(search(&server, &buyer, "espresso").await.is_empty());
    assert!(search(&server, &buyer, "  ,. ").await.is_empty(), "a query without words finds nothing");
}

async fn search_ranks_a_title_hit_above_a_description_hit_and_never_finds_archived_products(db: Db) {
    let server = TestServer::start(db).await;
    let [(merchant, _), (buyer, _)] = server.register_all(["merchant", "buyer"]).await;
    let shop_id = open_shop(&server, &merchant, "Outdoors").await;
    // Created in an order that is not the ranking, so a correct answer is not an accident
    // of insertion or creation time.
    simple_product(&server, &merchant, &shop_id, "Camping stove", "Pairs well with a tent footprint", 5000, 1).await;
    simple_product(&server, &merchant, &shop_id, "Tent", "Two person", 20000, 1).await;
    simple_product(&server, &merchant, &shop_id, "Sleeping bag", "For tent and hut", 9000, 1).await;
    let (archived, _) = simple_product(&server, &merchant, &shop_id, "Old tent", "Tent tent", 100, 1).await;
    simple_product(&server, &merchant, &shop_id, "露营帐篷", "tent 双人", 15000, 1).await;
    let archive = server
        .request("PATCH", &format!("/api/v1/products/{archived}"), Some(&merchant), Some(json!({"status": "archived"})))
        .await;
    assert_eq!(archive.status, 200, "{}", archive.text);
    assert_eq!(archive.body["status"], "archived");

    let ranked = search(&server, &buyer, "tent").await;
    assert_eq!(ranked[0], "Tent", "the title hit first: {ranked:?}");
    assert!(!ranked.contains(&"Old tent".to_string()), "archived products are not found");
    assert_eq!(ranked.len(), 4);
    // The exact order both engines must agree on: BM25 over the same postings. (The
    // description hits rank by field length, the shorter first; equal scores by id.)
    assert_eq!(ranked, ["Tent", "Sleeping bag", "露营帐篷", "Camping stove"]);
    assert_eq!(search(&server, &buyer, "帐篷").await, ["露营帐篷"]);

    // Pages of one follow the ranking exactly.
    let mut cursor: Option<String> = None;
    let mut paged = Vec::new();
    loop {
        let mut query = vec![("q", "tent".to_string()), ("limit", "1".to_string())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let reply = server
            .raw(server.client.get(format!("{}/api/v1/products", server.base)).bearer_auth(&buyer).query(&query))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        paged.extend(reply.body["items"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap().to_string()));
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, ranked);
}

async fn an_order_is_held_shipped_confirmed_and_pays_the_merchant_less_the_fee_and_is_reviewed(db: Db) {
    let server = shop_server(db).await;
    let (merchant, _, product_id, sku_id) = merchant_with_product(&server, 2000, 10).await;
    let (buyer, buyer_id) = funded(&server, "buyer").await;
    let placed = order(&server, &buyer, Some("order-1"), json!([{"sku_id": sku_id, "quantity": 2}])).await;
    assert_eq!(placed.status, 201, "{}", placed.text);
    let order_id = placed.body["id"].as_str().unwrap().to_string();
    assert_eq!(placed.body["status"], "paid");
    assert_eq!(placed.body["total"], usd(4000));
    assert_eq!(placed.body["buyer"]["id"], buyer_id);
    assert_eq!(placed.body["items"][0]["unit_price"], usd(2000));
    assert_eq!(placed.body["items"][0]["title"], "云南咖啡豆");
    assert_eq!(balance(&server, &buyer).await, (6000, 4000), "the total is held");
    assert_eq!(stock_of(&server, &buyer, &product_id).await, 8);

    act(&server, &buyer, &order_id, "confirm", json!({})).await.assert_problem(409, "invalid_transition");
    let shipped =
        act(&server, &merchant, &order_id, "ship", json!({"carrier": "SF Express", "tracking_number": "SF123"})).await;
    assert_eq!(shipped.status, 200, "{}", shipped.text);
    assert_eq!(shipped.body["status"], "shipped");
    assert_eq!(shipped.body["shipment"]["carrier"], "SF Express");
    act(&server, &merchant, &order_id, "ship", json!({"carrier": "SF", "tracking_number": "1"}))
        .await
        .assert_problem(409, "invalid_transition");
    act(&server, &buyer, &order_id, "review", json!({"stars": 5})).await.assert_problem(409, "invalid_transition");

    let confirmed = act(&server, &buyer, &order_id, "confirm", json!({})).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text);
    assert_eq!(confirmed.body["status"], "completed");
    assert_eq!(confirmed.body["payment_status"], "captured");
    assert_eq!(balance(&server, &buyer).await, (6000, 0));
    assert_eq!(balance(&server, &merchant).await, (4000 - 200, 0), "the price less the 5% fee");

    let reviewed = act(&server, &buyer, &order_id, "review", json!({"stars": 4, "text": "浓郁"})).await;
    assert_eq!(reviewed.status, 201, "{}", reviewed.text);
    act(&server, &buyer, &order_id, "review", json!({"stars": 5})).await.assert_problem(409, "already_reviewed");
    let product = server.get(&format!("/api/v1/products/{product_id}"), Some(&buyer)).await;
    assert_eq!(product.body["rating"], json!({"average": 4.0, "count": 1}));
    assert_eq!(product.body["sold_count"], 2);
    let shop = server.get(&format!("/api/v1/shops/{}", product.body["shop_id"].as_str().unwrap()), Some(&buyer)).await;
    assert_eq!(shop.body["rating"], json!({"average": 4.0, "count": 1}));
    assert_ledger_sound(&server).await;
}

async fn cancelling_before_shipping_releases_the_hold_and_returns_the_stock(db: Db) {
    let server = shop_server(db).await;
    let (merchant, _, product_id, sku_id) = merchant_with_product(&server, 1500, 3).await;
    let (buyer, _) = funded(&server, "buyer").await;
    let first = order(&server, &buyer, None, json!([{"sku_id": sku_id, "quantity": 3}])).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(stock_of(&server, &buyer, &product_id).await, 0);
    let cancelled = act(&server, &buyer, first.body["id"].as_str().unwrap(), "cancel", json!({})).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["payment_status"], "released");
    assert_eq!(balance(&server, &buyer).await, (10_000, 0));
    assert_eq!(stock_of(&server, &buyer, &product_id).await, 3);

    // The seller may cancel too, but not once it has shipped.
    let second = order(&server, &buyer, None, json!([{"sku_id": sku_id, "quantity": 1}])).await;
    let second_id = second.body["id"].as_str().unwrap();
    act(&server, &merchant, second_id, "ship", json!({"carrier": "SF", "tracking_number": "1"})).await;
    act(&server, &buyer, second_id, "cancel", json!({})).await.assert_problem(409, "invalid_transition");
    act(&server, &merchant, second_id, "cancel", json!({})).await.assert_problem(409, "invalid_transition");
    assert_eq!(balance(&server, &buyer).await, (8500, 1500));
    assert_ledger_sound(&server).await;
}

async fn refunds_are_approved_with_the_money_back_or_rejected_back_to_where_they_were(db: Db) {
    let server = shop_server(db).await;
    let (merchant, _, _, sku_id) = merchant_with_product(&server, 1000, 10).await;
    let (buyer, _) = funded(&server, "buyer").await;
    let place_and_ship = |quantity: i64| {
        let (server, buyer, merchant, sku_id) = (&server, &buyer, &merchant, &sku_id);
        async move {
            let placed = order(server, buyer, None, json!([{"sku_id": sku_id, "quantity": quantity}])).await;
            let id = placed.body["id"].as_str().unwrap().to_string();
            act(server, merchant, &id, "ship", json!({"carrier": "SF", "tracking_number": "1"})).await;
            id
        }
    };
    // Rejected while shipped: back to shipped, then confirmed as usual.
    let rejected = place_and_ship(1).await;
    act(&server, &buyer, &rejected, "refund", json!({"reason": ""})).await.assert_problem(422, "invalid_field");
    let asked = act(&server, &buyer, &rejected, "refund", json!({"reason": "arrived damp"})).await;
    assert_eq!(asked.body["status"], "refund_requested", "{}", asked.text);
    act(&server, &buyer, &rejected, "refund/approve", json!({})).await.assert_problem(403, "forbidden");
    let back = act(&server, &merchant, &rejected, "refund/reject", json!({})).await;
    assert_eq!(back.body["status"], "shipped", "{}", back.text);
    act(&server, &buyer, &rejected, "confirm", json!({})).await;

    // Approved after completion: the merchant's share and the fee go back.
    let completed = place_and_ship(2).await;
    act(&server, &buyer, &completed, "confirm", json!({})).await;
    act(&server, &buyer, &completed, "refund", json!({"reason": "wrong beans"})).await;
    let approved = act(&server, &merchant, &completed, "refund/approve", json!({})).await;
    assert_eq!(approved.body["status"], "refunded", "{}", approved.text);
    assert_eq!(approved.body["payment_status"], "refunded");
    act(&server, &merchant, &completed, "refund/approve", json!({})).await.assert_problem(409, "invalid_transition");

    // Approved in part while shipped: the rest is paid to the merchant.
    let partial = place_and_ship(3).await;
    act(&server, &buyer, &partial, "refund", json!({"reason": "one bag torn", "amount": usd(1000)})).await;
    let approved = act(&server, &merchant, &partial, "refund/approve", json!({})).await;
    assert_eq!(approved.body["status"], "refunded", "{}", approved.text);
    // Spent: 1000 (confirmed) + 0 (refunded in full) + 2000 (partly refunded).
    assert_eq!(balance(&server, &buyer).await, (10_000 - 3000, 0));
    // Earned: 1000 + 2000 less 5% each.
    assert_eq!(balance(&server, &merchant).await, (950 + 1900, 0));
    assert_ledger_sound(&server).await;
}

async fn many_buyers_at_once_on_one_sku_never_oversell_and_hold_only_for_what_they_got(db: Db) {
    let server = shop_server(db).await;
    let (merchant, _, product_id, sku_id) = merchant_with_product(&server, 700, 5).await;
    let mut buyers = Vec::new();
    for index in 0..12 {
        let (token, _) = server.register(&format!("buyer{index}")).await;
        topup(&server, &token, 5000).await;
        buyers.push(token);
    }
    let attempts = buyers.iter().map(|token| order(&server, token, None, json!([{"sku_id": sku_id, "quantity": 1}])));
    let replies = futures_util::future::join_all(attempts).await;
    let won = replies.iter().filter(|reply| reply.status == 201).count();
    for reply in replies.iter().filter(|reply| reply.status != 201) {
        reply.assert_problem(409, "out_of_stock");
    }
    assert_eq!(won, 5, "exactly the stock was sold");
    assert_eq!(stock_of(&server, &merchant, &product_id).await, 0);
    let mut held_total = 0;
    for token in &buyers {
        let (available, held) = balance(&server, token).await;
        assert_eq!(available + held, 5000);
        held_total += held;
    }
    assert_eq!(held_total, 5 * 700, "only the winners hold money");
    assert_ledger_sound(&server).await;
}

async fn a_retried_order_creates_one_order_and_holds_once_and_another_body_under_its_key_is_refused(db: Db) {
    let server = shop_server(db).await;
    let (merchant, _, product_id, sku_id) = merchant_with_product(&server, 1000, 10).await;
    let (buyer, _) = funded(&server, "buyer").await;
    let items = json!([{"sku_id": sku_id, "quantity": 2}]);
    let tries = (0..4).map(|_| order(&server, &buyer, Some("same-key"), items.clone()));
    let ids = created_ids(&futures_util::future::join_all(tries).await);
    assert_eq!(ids.len(), 1, "one order");
    assert_eq!(balance(&server, &buyer).await, (8000, 2000), "held once");
    assert_eq!(stock_of(&server, &buyer, &product_id).await, 8);
    order(&server, &buyer, Some("same-key"), json!([{"sku_id": sku_id, "quantity": 3}]))
        .await
        .assert_problem(422, "idempotency_key_reused");
    let listed = server.get("/api/v1/orders?role=buyer", Some(&buyer)).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    let sold = server.get("/api/v1/orders?role=seller", Some(&merchant)).await;
    assert_eq!(sold.body["items"].as_array().unwrap().len(), 1);
    assert_ledger_sound(&server).await;
}

async fn only_buyer_and_seller_see_an_order_and_each_does_only_their_part(db: Db) {
    let server = shop_server(db).await;
    let (merchant, _, _, sku_id) = merchant_with_product(&server, 1000, 10).await;
    let [(buyer, _), (stranger, _)] = server.register_all(["buyer", "stranger"]).await;
    topup(&server, &buyer, 10_000).await;
    let placed = order(&server, &buyer, None, json!([{"sku_id": sku_id, "quantity": 1}])).await;
    let id = placed.body["id"].as_str().unwrap();
    let path = format!("/api/v1/orders/{id}");
    assert_eq!(server.get(&path, Some(&buyer)).await.status, 200);
    assert_eq!(server.get(&path, Some(&merchant)).await.status, 200);
    server.get(&path, Some(&stranger)).await.assert_problem(404, "order_not_found");
    for action in ["cancel", "confirm", "refund/approve"] {
        act(&server, &stranger, id, action, json!({})).await.assert_problem(404, "order_not_found");
    }
    act(&server, &buyer, id, "ship", json!({"carrier": "SF", "tracking_number": "1"}))
        .await
        .assert_problem(403, "forbidden");
    act(&server, &merchant, id, "ship", json!({"carrier": "", "tracking_number": "1"}))
        .await
        .assert_problem(422, "invalid_field");
    act(&server, &merchant, id, "ship", json!({"carrier": "SF", "tracking_number": "1"})).await;
    act(&server, &merchant, id, "confirm", json!({})).await.assert_problem(403, "forbidden");
    assert_eq!(server.get("/api/v1/orders?role=seller", Some(&stranger)).await.body["items"], json!([]));
}

async fn every_bad_order_is_refused_with_its_code_and_field_and_holds_nothing(db: Db) {
    let server = shop_server(db).await;
    let (merchant, _, product_id, sku_id) = merchant_with_product(&server, 1000, 10).await;
    let (other_merchant, _) = server.register("other").await;
    let other_shop = open_shop(&server, &other_merchant, "Other").await;
    let (_, other_sku) = simple_product(&server, &other_merchant, &other_shop, "Tea", "", 500, 10).await;
    let (archived, archived_sku) = simple_product(&server, &other_merchant, &other_shop, "Old", "", 500, 10).await;
    server
        .request(
            "PATCH",
            &format!("/api/v1/products/{archived}"),
            Some(&other_merchant),
            Some(json!({"status": "archived"})),
        )
        .await;
    let (buyer, _) = funded(&server, "buyer").await;
    let cases = [
        (json!([{"sku_id": sku_id, "quantity": 0}]), 422, "invalid_field", "items[0].quantity"),
        (json!([{"sku_id": sku_id, "quantity": 100}]), 422, "invalid_field", "items[0].quantity"),
        (json!([{"sku_id": "nope", "quantity": 1}]), 422, "invalid_field", "items[0].sku_id"),
        (json!([]), 422, "invalid_field", "items"),
        (
            json!([{"sku_id": sku_id, "quantity": 1}, {"sku_id": other_sku, "quantity": 1}]),
            422,
            "invalid_field",
            "items",
        ),
        (json!([{"sku_id": archived_sku, "quantity": 1}]), 409, "product_archived", "items[0].sku_id"),
        (json!([{"sku_id": sku_id, "quantity": 11}]), 409, "out_of_stock", "items[0].sku_id"),
    ];
    for (items, status, code, field) in cases {
        let reply = order(&server, &buyer, None, items.clone()).await;
        reply.assert_problem(status, code);
        assert_eq!(reply.body["field"], field, "{items}: {}", reply.text);
    }
    order(&server, &merchant, None, json!([{"sku_id": sku_id, "quantity": 1}]))
        .await
        .assert_problem(422, "invalid_field");
    let (poor, _) = server.register("poor").await;
    let short = order(&server, &poor, None, json!([{"sku_id": sku_id, "quantity": 1}])).await;
    short.assert_problem(402, "insufficient_funds");
    assert_eq!((short.body["available"].clone(), short.body["requested"].clone()), (json!(0), json!(1000)));
    assert_eq!(balance(&server, &buyer).await, (10_000, 0), "nothing held");
    assert_eq!(stock_of(&server, &buyer, &product_id).await, 10, "no stock taken");
    assert_ledger_sound(&server).await;
}

async fn a_shipped_order_nobody_confirms_confirms_itself_once(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.shop.auto_confirm_after = std::time::Duration::from_millis(300);
        config.shop.job_interval = std::time::Duration::from_millis(50);
    })
    .await;
    let (merchant, _, _, sku_id) = merchant_with_product(&server, 1000, 10).await;
    let (buyer, _) = funded(&server, "buyer").await;
    let placed = order(&server, &buyer, None, json!([{"sku_id": sku_id, "quantity": 1}])).await;
    let id = placed.body["id"].as_str().unwrap();
    // Unshipped orders wait for the merchant, however long.
    let shipped = act(&server, &merchant, id, "ship", json!({"carrier": "SF", "tracking_number": "1"})).await;
    assert_eq!(shipped.body["status"], "shipped");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let seen = server.get(&format!("/api/v1/orders/{id}"), Some(&buyer)).await;
        if seen.body["status"] == "completed" && seen.body["payment_status"] == "captured" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not confirmed: {}", seen.text);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(balance(&server, &merchant).await, (950, 0), "paid once");
    assert_eq!(balance(&server, &buyer).await, (9000, 0));
    act(&server, &buyer, id, "confirm", json!({})).await.assert_problem(409, "invalid_transition");
    assert_ledger_sound(&server).await;
}

async fn a_product_shared_into_a_chat_is_a_card_its_members_see_and_an_outsider_cannot_post(db: Db) {
    let server = shop_server(db).await;
    let (_, _, product_id, _) = merchant_with_product(&server, 1200, 5).await;
    let people = server.register_contacts(&["ann", "bob"]).await;
    let [(ann, ann_id), (bob, bob_id)] = [people[0].clone(), people[1].clone()];
    let (carol, _) = server.register("carol").await;
    let chat = server.conversation(&ann, "direct", &[&bob_id]).await;
    let server = &server;
    let share = |token: &str, product: &str, conversation: &str| {
        let path = format!("/api/v1/products/{product}/share");
        let body = json!({"conversation_id": conversation});
        let token = token.to_string();
        async move { server.post(&path, Some(&token), body).await }
    };

    let shared = share(&ann, &product_id, &chat).await;
    assert_eq!(shared.status, 201, "{}", shared.text);
    assert_eq!(shared.body["conversation_id"], chat.as_str(), "{}", shared.text);
    let card = server.first_card(&bob, &chat).await;
    assert_eq!(card["body"]["type"], "product", "{card}");
    assert_eq!(card["body"]["id"], product_id.as_str());
    assert_eq!(card["body"]["title"], "云南咖啡豆");
    assert_eq!(card["body"]["price"], usd(1200));
    assert_eq!(card["body"]["shop_name"], "Beans");
    assert_eq!(card["body"]["status"], "active");
    assert_eq!(card["sender_id"], ann_id.as_str(), "the sharer sent it: {card}");

    // Someone outside the chat cannot post into it, and nothing is posted.
    share(&carol, &product_id, &chat).await.assert_problem(404, "conversation_not_found");
    share(&ann, "no-such-product", &chat).await.assert_problem(404, "product_not_found");
    let history = server.get(&format!("/api/v1/conversations/{chat}/messages"), Some(&bob)).await;
    let cards = history.body["items"].as_array().unwrap().iter().filter(|m| m["kind"] == "card").count();
    assert_eq!(cards, 1, "{}", history.text);
}
