//! Crash safety of the shop: under a flash-sale load the server is killed with SIGKILL and
//! restarted, twice; every order is retried with its Idempotency-Key until it is answered,
//! then once more. Units sold, paid orders and money held must agree, nothing may be sold
//! twice, and a group buy whose window ends across the kills is failed once, its hold
//! released once, by the job of the restarted node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use crate::support::process::{
    crash_node, register_until_answered, topup_until_answered, until_answered, work_through, RETRIED,
};
use crate::support::Db;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

on_both_databases!(killed_under_a_flash_sale_sells_each_unit_once);

const BUYERS: usize = 16;
const ORDERS: usize = 96;
const UNITS: i64 = 40;
const LIMIT: i64 = 3;
const SALE_PRICE: i64 = 600;

fn address() -> Value {
    json!({"name": "Ann Lee", "line1": "1 Hill Road", "city": "Kunming", "postal_code": "650000",
           "country": "CN", "phone": "+86 871 0000"})
}

async fn killed_under_a_flash_sale_sells_each_unit_once(db: Db) {
    let env = vec![
        ("PLAZA_ADMINS".to_string(), "auditor".to_string()),
        ("PLAZA_SHOP_GROUP_WINDOW_SECONDS".to_string(), "3".to_string()),
    ];
    let (node, client, base) = crash_node(db, env).await;
    let post = |path: &str, token: Option<&str>, key: Option<&str>, body: Value| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        let (token, key) = (token.map(str::to_string), key.map(str::to_string));
        async move {
            let (status, reply, _) =
                until_answered(&client, reqwest::Method::POST, &url, token.as_deref(), key.as_deref(), Some(&body))
                    .await;
            (status, reply)
        }
    };

    let mut people = Vec::new();
    let names: Vec<String> = ["auditor", "merchant", "leader"]
        .iter()
        .map(|name| name.to_string())
        .chain((0..BUYERS).map(|n| format!("buyer{n}")))
        .collect();
    for name in &names {
        people.push(register_until_answered(&client, &base, name).await.0);
    }
    let (auditor, merchant, leader) = (people[0].clone(), people[1].clone(), people[2].clone());
    let buyers: Vec<String> = people[3..].to_vec();
    for token in people.iter().skip(2) {
        topup_until_answered(&client, &base, token, 10_000).await;
    }
    let (_, shop) = post("/api/v1/shops", Some(&merchant), None, json!({"name": "Crash"})).await;
    let (status, product) = post(
        &format!("/api/v1/shops/{}/products", shop["id"].as_str().unwrap()),
        Some(&merchant),
        None,
        json!({"title": "Phone", "group_size": 2, "skus": [{"name": "black", "price": {"amount": 1000, "currency": "USD"},
               "group_price": {"amount": 800, "currency": "USD"}, "stock": 100}]}),
    )
    .await;
    assert_eq!(status, 201, "{product}");
    let sku_id = product["skus"][0]["id"].as_str().unwrap().to_string();
    let now = plaza_kernel::Timestamp::now();
    let (status, sale) = post(
        "/api/v1/flash-sales",
        Some(&merchant),
        None,
        json!({"sku_id": sku_id, "price": {"amount": SALE_PRICE, "currency": "USD"}, "quantity": UNITS,
               "starts_at": now.minus(Duration::from_secs(5)).to_rfc3339(),
               "ends_at": now.plus(Duration::from_secs(3600)).to_rfc3339(), "per_user_limit": LIMIT}),
    )
    .await;
    assert_eq!(status, 201, "{sale}");
    let sale_id = sale["id"].as_str().unwrap().to_string();
    // A group nobody joins; its window ends while the server is being killed.
    let (status, group_order) = post(
        "/api/v1/orders",
        Some(&leader),
        Some("group"),
        json!({"items": [{"sku_id": sku_id, "quantity": 1}], "address": address(), "group": {"mode": "open"}}),
    )
    .await;
    assert_eq!(status, 201, "{group_order}");

    let plan: Arc<Vec<(String, usize)>> = Arc::new((0..ORDERS).map(|n| (format!("flash-{n}"), n % BUYERS)).collect());
    let answered = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<HashMap<String, (u16, Value)>>> = Arc::new(Mutex::new(HashMap::new()));
    let order_body =
        json!({"items": [{"sku_id": sku_id, "quantity": 1, "flash_sale_id": sale_id}], "address": address()});
    let context =
        (client.clone(), format!("{base}/api/v1/orders"), buyers.clone(), results.clone(), order_body.clone());
    let workers = work_through(
        8,
        plan.clone(),
        answered.clone(),
        context,
        |(client, url, buyers, results, body), (key, buyer)| async move {
            let (status, reply, _) =
                until_answered(&client, reqwest::Method::POST, &url, Some(&buyers[buyer]), Some(&key), Some(&body))
                    .await;
            results.lock().unwrap().insert(key, (status, reply));
        },
    );
    support::process::kill_and_restart_at(&node, &base, &answered, &[ORDERS / 4, ORDERS / 2], "orders").await;
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(RETRIED.load(Ordering::Relaxed) > 0, "the kills interrupted no request; the test proved nothing");

    // Each answer is an order or a clear refusal, and a retry answers the same.
    let results = results.lock().unwrap().clone();
    let mut order_ids = HashSet::new();
    let mut units_by_buyer = vec![0_i64; BUYERS];
    for (key, buyer) in plan.iter() {
        let (status, reply) = &results[key];
        match status {
            201 => {
                assert!(order_ids.insert(reply["id"].as_str().unwrap().to_string()), "{key}: an order answered twice");
                units_by_buyer[*buyer] += 1;
            }
            409 => assert!(reply["code"] == "sold_out" || reply["code"] == "limit_reached", "{key}: {reply}"),
            other => panic!("{key}: {other} {reply}"),
        }
        let (again, replay) = post("/api/v1/orders", Some(&buyers[*buyer]), Some(key), order_body.clone()).await;
        if *status == 201 {
            assert_eq!((again, &replay["id"]), (201, &reply["id"]), "{key}: the retry answers with the first order");
        } else {
            assert_eq!(again, 409, "{key}: {replay}");
        }
    }
    assert_eq!(order_ids.len() as i64, UNITS, "every unit sold once");
    assert!(units_by_buyer.iter().all(|units| *units <= LIMIT), "{units_by_buyer:?}");

    let get = |path: String, token: String| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move { until_answered(&client, reqwest::Method::GET, &url, Some(&token), None, None).await.1 }
    };
    let sale = get(format!("/api/v1/flash-sales/{sale_id}"), merchant.clone()).await;
    assert_eq!(sale["remaining"], 0, "{sale}");
    let sold = get("/api/v1/orders?role=seller&status=paid&limit=200".into(), merchant.clone()).await;
    let paid: HashSet<String> =
        sold["items"].as_array().unwrap().iter().map(|order| order["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(paid, order_ids, "the paid orders are exactly the orders answered");
    let mut held = 0;
    for (index, token) in buyers.iter().enumerate() {
        let wallet = get("/api/v1/wallet".into(), token.clone()).await;
        let usd = &wallet["balances"][0];
        assert_eq!(usd["held"], units_by_buyer[index] * SALE_PRICE, "buyer {index}: {wallet}");
        assert_eq!(usd["available"].as_i64().unwrap() + usd["held"].as_i64().unwrap(), 10_000);
        held += usd["held"].as_i64().unwrap();
    }
    assert_eq!(held, UNITS * SALE_PRICE, "money held = units sold × price");

    // The group's window ended across the kills: failed once, its hold released once.
    let group_order_id = group_order["id"].as_str().unwrap().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let order = get(format!("/api/v1/orders/{group_order_id}"), leader.clone()).await;
        if order["status"] == "cancelled" && order["payment_status"] == "released" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the group was never failed: {order}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wallet = get("/api/v1/wallet".into(), leader.clone()).await;
    assert_eq!(
        (wallet["balances"][0]["available"].clone(), wallet["balances"][0]["held"].clone()),
        (json!(10_000), json!(0))
    );
    let check = get("/api/v1/admin/ledger/check".into(), auditor.clone()).await;
    assert_eq!(check["ok"], true, "{check}");
}
