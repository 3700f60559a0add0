//! The shop over real HTTP, on SQLite and PostgreSQL: shops and products with SKUs and
//! public photos, only the owner editing; catalogue search in English and Chinese, ranked
//! by relevance, the same order on both engines; orders paid into escrow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use support::{Db, Reply, TestServer};

on_both_databases!(
    a_merchant_opens_one_shop_and_adds_a_product_whose_photos_every_signed_in_user_sees,
    only_the_owner_edits_a_shop_and_its_products,
    every_bad_product_is_refused_with_its_code_and_field,
    search_finds_an_english_word_and_a_chinese_word_inside_a_longer_run,
    search_ranks_a_title_hit_above_a_description_hit_and_never_finds_archived_products,
);

const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

async fn upload(server: &TestServer, token: &str) -> String {
    let part = reqwest::multipart::Part::bytes(PIXEL_PNG.to_vec()).file_name("p.png").mime_str("image/png").unwrap();
    let form = reqwest::multipart::Form::new().part("file", part);
    let reply = server
        .raw(server.client.post(format!("{}/api/v1/media", server.base)).bearer_auth(token).multipart(form))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body["id"].as_str().unwrap().to_string()
}

async fn open_shop(server: &TestServer, token: &str, name: &str) -> String {
    let reply = server.post("/api/v1/shops", Some(token), json!({"name": name, "description": "good things"})).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body["id"].as_str().unwrap().to_string()
}

fn usd(amount: i64) -> Value {
    json!({"amount": amount, "currency": "USD"})
}

async fn add_product(server: &TestServer, token: &str, shop_id: &str, body: Value) -> Reply {
    server.post(&format!("/api/v1/shops/{shop_id}/products"), Some(token), body).await
}

/// A product with one SKU of `stock` units at `price`; returns (product id, SKU id).
async fn simple_product(
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

async fn search(server: &TestServer, token: &str, query: &str) -> Vec<String> {
    let reply = server
        .raw(server.client.get(format!("{}/api/v1/products", server.base)).bearer_auth(token).query(&[("q", query)]))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["items"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap().to_string()).collect()
}

async fn a_merchant_opens_one_shop_and_adds_a_product_whose_photos_every_signed_in_user_sees(db: Db) {
    let server = TestServer::start(db).await;
    let (merchant, merchant_id) = server.register("merchant").await;
    let (buyer, _) = server.register("buyer").await;
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

async fn only_the_owner_edits_a_shop_and_its_products(db: Db) {
    let server = TestServer::start(db).await;
    let (merchant, _) = server.register("merchant").await;
    let (other, _) = server.register("other").await;
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
    let (merchant, _) = server.register("merchant").await;
    let (buyer, _) = server.register("buyer").await;
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
    let (merchant, _) = server.register("merchant").await;
    let (buyer, _) = server.register("buyer").await;
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
