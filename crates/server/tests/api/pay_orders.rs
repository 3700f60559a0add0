//! Mini-app payments over real HTTP, on SQLite and PostgreSQL: an app's server creates a
//! pay order for its user, the user confirms it in Plaza, the developer is paid less the
//! fee, refunds never exceed the payment, and the app's server receives Standard
//! Webhooks (checked here by computing the HMAC independently; Python's `standardwebhooks`
//! verifies the same from `scripts/test`), retried until acknowledged, without a slow
//! receiver holding up anyone else's deliveries, and across a SIGKILL and two nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::oauth::{form, sign_in, App, CALLBACK};
use crate::support::process::ChildNode;
use crate::support::rides::{balance, topup};
use crate::support::{Db, Reply, TestServer};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::Mac;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

on_both_databases!(
    a_confirmed_order_pays_the_developer_less_the_fee_once_and_sends_a_signed_webhook,
    retried_and_conflicting_creates_are_answered_by_the_first_order_or_refused,
    bad_orders_strangers_and_missing_scopes_are_refused_and_move_nothing,
    a_pin_an_expiry_and_an_empty_wallet_each_stop_a_confirmation,
    concurrent_confirms_pay_once_and_concurrent_refunds_never_exceed_the_payment,
    a_failing_receiver_is_retried_with_growing_delays_while_a_hanging_one_delays_nobody,
    a_hanging_receivers_long_backlog_does_not_hold_up_another_apps_webhook,
    a_webhook_written_before_a_sigkill_is_delivered_after_the_restart,
);

/// A webhook as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    at: Instant,
}

/// What a receiver answers: a status, after an optional wait on a gate.
type Script = Arc<dyn Fn(usize) -> StatusCode + Send + Sync>;

/// A loopback HTTP server standing in for an app's webhook endpoint.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    gate: Arc<tokio::sync::Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Answers the n-th request (from 0) with `script(n)`.
    async fn start(script: Script) -> Self {
        Self::start_gated(script, false).await
    }

    /// As `start`, but with `hold`, every request waits until `release` is called.
    async fn start_gated(script: Script, hold: bool) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let gate = Arc::new(tokio::sync::Semaphore::new(if hold { 0 } else { 1 << 20 }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
        let (log, gate_for_handler) = (received.clone(), gate.clone());
        let handler = move |headers: HeaderMap, body: String| {
            let (log, gate, script) = (log.clone(), gate_for_handler.clone(), script.clone());
            async move {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let number = {
                    let mut log = log.lock().unwrap();
                    log.push(Received {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        body,
                        at: Instant::now(),
                    });
                    log.len() - 1
                };
                let _permit = gate.acquire().await;
                script(number)
            }
        };
        let router = axum::Router::new().route("/webhooks", axum::routing::post(handler));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, received, gate, task }
    }

    fn release(&self) {
        self.gate.add_permits(1 << 20);
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to a minute) until `count` requests have arrived.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(Instant::now() < deadline, "only {} of {count} webhooks arrived", received.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn always(status: StatusCode) -> Script {
    Arc::new(move |_| status)
}

/// A registered app with its webhook secret.
struct PayApp {
    app: App,
    webhook_secret: String,
}

async fn register(server: &TestServer, developer: &str, name: &str, webhook_url: &str) -> PayApp {
    let body = json!({
        "name": name,
        "home_url": "https://coffee.example/",
        "redirect_uris": [CALLBACK],
        "webhook_url": webhook_url,
        "scopes": ["openid", "profile", "payments"],
    });
    let reply = server.post("/api/v1/miniapps", Some(developer), body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    PayApp {
        app: App {
            id: reply.body["id"].as_str().unwrap().to_string(),
            client_id: reply.body["client_id"].as_str().unwrap().to_string(),
            secret: reply.body["client_secret"].as_str().unwrap().to_string(),
        },
        webhook_secret: reply.body["webhook_secret"].as_str().unwrap().to_string(),
    }
}

/// The app server's `client_credentials` token with `scope`.
async fn app_token(server: &TestServer, app: &App, scope: &str) -> String {
    let reply = form(server, "token", app, &[("grant_type", "client_credentials"), ("scope", scope)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["access_token"].as_str().unwrap().to_string()
}

/// The user's pairwise `sub` for the app, after signing in with `scope`.
async fn user_sub(server: &TestServer, user: &str, app: &App, scope: &str) -> String {
    let tokens = sign_in(server, user, app, scope).await;
    let info = server.get("/api/v1/oauth/userinfo", tokens["access_token"].as_str()).await;
    assert_eq!(info.status, 200, "{}", info.text);
    info.body["sub"].as_str().unwrap().to_string()
}

async fn create_order(server: &TestServer, token: &str, key: Option<&str>, body: &Value) -> Reply {
    let mut request = server.client.post(format!("{}/api/v1/pay/orders", server.base)).bearer_auth(token).json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    server.raw(request).await
}

async fn refund(server: &TestServer, token: &str, order_id: &str, key: &str, amount: i64) -> Reply {
    let request = server
        .client
        .post(format!("{}/api/v1/pay/orders/{order_id}/refunds", server.base))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({"amount": amount}));
    server.raw(request).await
}

fn order_body(out_trade_no: &str, sub: &str, amount: i64) -> Value {
    json!({"out_trade_no": out_trade_no, "user_sub": sub, "amount": amount, "currency": "USD",
           "description": "Flat white"})
}

/// `user` pays the order `order_id`.
async fn confirm(server: &TestServer, user: &str, order_id: &str) -> Reply {
    server.post(&format!("/api/v1/pay/orders/{order_id}/confirm"), Some(user), json!({})).await
}

/// A second app of `developer`'s, "Tea Garden", whose webhooks go to `webhook_url`, with one
/// order of 100 (`out_trade_no`) that `user` has paid (checked).
async fn tea_garden_with_a_paid_order(
    server: &TestServer,
    developer: &str,
    user: &str,
    webhook_url: &str,
    out_trade_no: &str,
) -> PayApp {
    let app = register(server, developer, "Tea Garden", webhook_url).await;
    let sub = user_sub(server, user, &app.app, "openid payments").await;
    let token = app_token(server, &app.app, "payments").await;
    let order = create_order(server, &token, None, &order_body(out_trade_no, &sub, 100)).await;
    let paid = confirm(server, user, order.body["id"].as_str().unwrap()).await;
    assert_eq!(paid.body["status"], "paid", "{}", paid.text);
    app
}

/// Everything a payment test needs: a server, a developer, a paying user with $100, the
/// app with its webhook receiver, the user's sub and the app server's token.
struct Shop {
    server: TestServer,
    developer: String,
    user: String,
    app: PayApp,
    sub: String,
    token: String,
}

async fn shop(server: TestServer, receiver: &Receiver) -> Shop {
    let [(developer, _), (user, _)] = server.register_all(["dev", "ann"]).await;
    topup(&server, &user, 10_000).await;
    let app = register(&server, &developer, "Coffee House", &receiver.url).await;
    let sub = user_sub(&server, &user, &app.app, "openid payments").await;
    let token = app_token(&server, &app.app, "payments").await;
    Shop { server, developer, user, app, sub, token }
}

/// Fast retries and a sender that looks for due deliveries often.
fn quick_webhooks(config: &mut plaza_server::config::Config) {
    config.miniapps.webhook_retry_base = Duration::from_millis(400);
    config.miniapps.job_interval = Duration::from_millis(50);
}

/// Checks a webhook's signature as the Standard Webhooks specification defines it:
/// HMAC-SHA256 over `id.timestamp.body` with the base64-decoded secret.
fn assert_signed(received: &Received, secret: &str) {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", received.id, received.timestamp, received.body).as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(received.signature, format!("v1,{expected}"), "{received:?}");
    let sent_at: i64 = received.timestamp.parse().unwrap();
    let now = plaza_kernel::Timestamp::now().unix_millis() / 1000;
    assert!((now - sent_at).abs() < 300, "the timestamp {sent_at} is not now ({now})");
}

async fn ledger_is_balanced(server: &TestServer) {
    let store = plaza_store::Store::connect_with(&server.database_url, 2, plaza_store::SqliteSync::Full).await.unwrap();
    let check = plaza_wallet::check_ledger(&store).await.unwrap();
    store.close().await;
    assert!(check.ok, "{check:?}");
}

async fn a_confirmed_order_pays_the_developer_less_the_fee_once_and_sends_a_signed_webhook(db: Db) {
    let receiver = Receiver::start(always(StatusCode::NO_CONTENT)).await;
    let Shop { server, developer, user, app, sub, token } =
        shop(TestServer::start_with(db, quick_webhooks).await, &receiver).await;
    let created = create_order(&server, &token, Some("k1"), &order_body("T-1", &sub, 1_250)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let order = &created.body;
    let id = order["id"].as_str().unwrap();
    assert_eq!(order["status"], "created");
    assert_eq!((order["amount"].as_i64(), order["currency"].as_str()), (Some(1_250), Some("USD")));
    assert_eq!(order["app_name"], "Coffee House");
    assert_eq!(order["user_sub"], sub.as_str());

    // Plaza's pay sheet reads it with the user's own token.
    let seen = server.get(&format!("/api/v1/pay/orders/{id}"), Some(&user)).await;
    assert_eq!((seen.status, seen.body["status"].as_str()), (200, Some("created")), "{}", seen.text);
    let confirm = format!("/api/v1/pay/orders/{id}/confirm");
    let paid = server.post(&confirm, Some(&user), json!({})).await;
    assert_eq!(paid.status, 200, "{}", paid.text);
    assert_eq!(paid.body["status"], "paid");
    // 1 % of $12.50, rounded down.
    assert_eq!(paid.body["fee"], 12);
    assert!(paid.body["paid_at"].is_string());
    assert_eq!(balance(&server, &user).await, (10_000 - 1_250, 0));
    assert_eq!(balance(&server, &developer).await, (1_250 - 12, 0));

    // A retry moves nothing.
    let again = server.post(&confirm, Some(&user), json!({})).await;
    assert_eq!((again.status, again.body["status"].as_str()), (200, Some("paid")), "{}", again.text);
    assert_eq!(balance(&server, &user).await.0, 10_000 - 1_250);

    let received = receiver.wait_for(1).await;
    assert_signed(&received[0], &app.webhook_secret);
    assert!(received[0].id.starts_with("msg_"), "{:?}", received[0]);
    let event: Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(event["type"], "payment.succeeded");
    assert_eq!(event["data"], json!({"order_id": id, "out_trade_no": "T-1", "amount": 1_250, "currency": "USD"}));
    assert!(event["timestamp"].is_string());

    // The app's server sees it paid; the user's history names the payment.
    let for_app = server.get(&format!("/api/v1/pay/orders/{id}"), Some(&token)).await;
    assert_eq!(for_app.body["status"], "paid", "{}", for_app.text);
    let history = server.get("/api/v1/wallet/transactions", Some(&user)).await;
    assert!(history.text.contains("miniapp_payment"), "{}", history.text);

    // A partial refund comes back from the developer, with its own webhook.
    let refunded = refund(&server, &token, id, "r1", 250).await;
    assert_eq!(refunded.status, 201, "{}", refunded.text);
    assert_eq!(refunded.body["amount"], 250);
    assert_eq!(balance(&server, &user).await.0, 10_000 - 1_000);
    assert_eq!(balance(&server, &developer).await.0, 1_250 - 12 - 250);
    let received = receiver.wait_for(2).await;
    assert_signed(&received[1], &app.webhook_secret);
    let event: Value = serde_json::from_str(&received[1].body).unwrap();
    assert_eq!(event["type"], "refund.succeeded");
    assert_eq!(event["data"]["refund_id"], refunded.body["id"]);
    assert_eq!(event["data"]["amount"], 250);
    assert_ne!(received[0].id, received[1].id);

    // The developer's delivery log shows both, delivered at the first attempt (once the
    // sender has written down the receiver's answer).
    let path = format!("/api/v1/miniapps/{}/webhook-deliveries", app.app.id);
    wait_log(&server, &developer, &path, |item| item["status"] == "delivered").await;
    let log = server.get(&path, Some(&developer)).await;
    assert_eq!(log.status, 200, "{}", log.text);
    let items = log.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", log.text);
    for item in items {
        assert_eq!(item["status"], "delivered", "{}", log.text);
        assert_eq!(item["attempts"], 1);
        assert_eq!(item["attempt_log"][0]["status_code"], 204);
    }
    server.get(&path, Some(&user)).await.assert_problem(403, "forbidden");
    ledger_is_balanced(&server).await;
    server.stop().await;
}

async fn retried_and_conflicting_creates_are_answered_by_the_first_order_or_refused(db: Db) {
    let receiver = Receiver::start(always(StatusCode::OK)).await;
    let Shop { server, sub, token, .. } = shop(TestServer::start(db).await, &receiver).await;
    let first = create_order(&server, &token, Some("key-1"), &order_body("T-1", &sub, 500)).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let retry = create_order(&server, &token, Some("key-1"), &order_body("T-1", &sub, 500)).await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(retry.body["id"], first.body["id"]);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    // The same key with another body, and the same out_trade_no with other details.
    create_order(&server, &token, Some("key-1"), &order_body("T-2", &sub, 500))
        .await
        .assert_problem(422, "idempotency_key_reused");
    create_order(&server, &token, Some("key-2"), &order_body("T-1", &sub, 900))
        .await
        .assert_problem(409, "out_trade_no_taken");
    // Without a key, the same out_trade_no and details are a retry too.
    let unkeyed = create_order(&server, &token, None, &order_body("T-1", &sub, 500)).await;
    assert_eq!(unkeyed.body["id"], first.body["id"], "{}", unkeyed.text);

    // Twelve concurrent creates of one order make one.
    let body = order_body("T-3", &sub, 700);
    let creates = (0..12).map(|_| create_order(&server, &token, Some("key-3"), &body));
    let replies = futures_util::future::join_all(creates).await;
    let ids: std::collections::BTreeSet<String> = replies
        .iter()
        .map(|reply| reply.body["id"].as_str().unwrap_or_else(|| panic!("{}", reply.text)).into())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let mut database = server.database().await;
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM miniapp_pay_orders").fetch_one(&mut database).await.unwrap();
    assert_eq!(count, 2);
    server.stop().await;
}

async fn bad_orders_strangers_and_missing_scopes_are_refused_and_move_nothing(db: Db) {
    let receiver = Receiver::start(always(StatusCode::OK)).await;
    let Shop { server, developer, user, app, sub, token } = shop(TestServer::start(db).await, &receiver).await;
    for (field, body) in [
        ("amount", order_body("B-1", &sub, 0)),
        ("amount", order_body("B-1", &sub, -5)),
        ("amount", order_body("B-1", &sub, 10_000_001)),
        ("out_trade_no", order_body("has space", &sub, 100)),
        ("out_trade_no", order_body("", &sub, 100)),
        ("user_sub", order_body("B-1", "nobody", 100)),
        (
            "description",
            json!({"out_trade_no": "B-1", "user_sub": sub, "amount": 100, "currency": "USD", "description": " "}),
        ),
    ] {
        let reply = create_order(&server, &token, None, &body).await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{}", reply.text);
    }
    let unknown_currency =
        json!({"out_trade_no": "B-1", "user_sub": sub, "amount": 100, "currency": "XXX", "description": "x"});
    assert_eq!(create_order(&server, &token, None, &unknown_currency).await.status, 422);
    let float = json!({"out_trade_no": "B-1", "user_sub": sub, "amount": 1.5, "currency": "USD", "description": "x"});
    assert_eq!(create_order(&server, &token, None, &float).await.status, 422);

    // Tokens: none, a user's Plaza session, a user's app token, an app token without the
    // payments scope.
    create_order(&server, "", None, &order_body("B-2", &sub, 100)).await.assert_problem(401, "invalid_token");
    create_order(&server, &user, None, &order_body("B-2", &sub, 100)).await.assert_problem(401, "invalid_token");
    let user_app_token = sign_in(&server, &user, &app.app, "openid payments").await;
    create_order(&server, user_app_token["access_token"].as_str().unwrap(), None, &order_body("B-2", &sub, 100))
        .await
        .assert_problem(401, "invalid_token");
    let openid_only = app_token(&server, &app.app, "openid").await;
    create_order(&server, &openid_only, None, &order_body("B-2", &sub, 100))
        .await
        .assert_problem(403, "insufficient_scope");

    // A user who granted only openid cannot be charged.
    let (bob, _) = server.register("bob").await;
    let bob_sub = user_sub(&server, &bob, &app.app, "openid").await;
    create_order(&server, &token, None, &order_body("B-3", &bob_sub, 100))
        .await
        .assert_problem(403, "insufficient_scope");

    // Another app's token, and another user, see no such order.
    let order = create_order(&server, &token, None, &order_body("B-4", &sub, 100)).await;
    let id = order.body["id"].as_str().unwrap();
    let other = register(&server, &developer, "Tea Garden", &receiver.url).await;
    let other_token = app_token(&server, &other.app, "payments").await;
    server
        .get(&format!("/api/v1/pay/orders/{id}"), Some(&other_token))
        .await
        .assert_problem(404, "pay_order_not_found");
    refund(&server, &other_token, id, "r", 10).await.assert_problem(404, "pay_order_not_found");
    server.get(&format!("/api/v1/pay/orders/{id}"), Some(&bob)).await.assert_problem(404, "pay_order_not_found");
    server
        .post(&format!("/api/v1/pay/orders/{id}/confirm"), Some(&bob), json!({}))
        .await
        .assert_problem(404, "pay_order_not_found");
    // Nothing paid yet: no refund.
    refund(&server, &token, id, "r", 10).await.assert_problem(409, "pay_order_not_paid");
    assert_eq!(balance(&server, &user).await, (10_000, 0));
    assert_eq!(balance(&server, &developer).await, (0, 0));
    server.stop().await;
}

async fn a_pin_an_expiry_and_an_empty_wallet_each_stop_a_confirmation(db: Db) {
    let receiver = Receiver::start(always(StatusCode::OK)).await;
    let Shop { server, user, sub, token, .. } = shop(TestServer::start(db).await, &receiver).await;
    let order = create_order(&server, &token, None, &order_body("P-1", &sub, 300)).await;
    let confirm = format!("/api/v1/pay/orders/{}/confirm", order.body["id"].as_str().unwrap());
    let set = server.post("/api/v1/wallet/pin", Some(&user), json!({"pin": "482913"})).await;
    assert!(set.status < 300, "{}", set.text);
    server.post(&confirm, Some(&user), json!({})).await.assert_problem(403, "pin_required");
    server.post(&confirm, Some(&user), json!({"pin": "111111"})).await.assert_problem(403, "wrong_pin");
    assert_eq!(balance(&server, &user).await.0, 10_000);
    let paid = server.post(&confirm, Some(&user), json!({"pin": "482913"})).await;
    assert_eq!(paid.body["status"], "paid", "{}", paid.text);

    // More than the wallet holds: 402, and the order can still be paid later.
    let big = create_order(&server, &token, None, &order_body("P-2", &sub, 20_000)).await;
    let big_confirm = format!("/api/v1/pay/orders/{}/confirm", big.body["id"].as_str().unwrap());
    server.post(&big_confirm, Some(&user), json!({"pin": "482913"})).await.assert_problem(402, "insufficient_funds");
    let still = server.get(&format!("/api/v1/pay/orders/{}", big.body["id"].as_str().unwrap()), Some(&user)).await;
    assert_eq!(still.body["status"], "created", "{}", still.text);

    // An order past its 15 minutes (backdated) is expired and cannot be paid.
    let late = create_order(&server, &token, None, &order_body("P-3", &sub, 100)).await;
    let late_id = late.body["id"].as_str().unwrap();
    let mut database = server.database().await;
    sqlx::query("UPDATE miniapp_pay_orders SET expires_at = $1 WHERE id = $2")
        .bind(plaza_kernel::Timestamp::now().unix_millis() - 1)
        .bind(late_id)
        .execute(&mut database)
        .await
        .unwrap();
    let seen = server.get(&format!("/api/v1/pay/orders/{late_id}"), Some(&user)).await;
    assert_eq!(seen.body["status"], "expired", "{}", seen.text);
    server
        .post(&format!("/api/v1/pay/orders/{late_id}/confirm"), Some(&user), json!({"pin": "482913"}))
        .await
        .assert_problem(409, "pay_order_expired");
    assert_eq!(balance(&server, &user).await.0, 10_000 - 300);
    ledger_is_balanced(&server).await;
    server.stop().await;
}

async fn concurrent_confirms_pay_once_and_concurrent_refunds_never_exceed_the_payment(db: Db) {
    let receiver = Receiver::start(always(StatusCode::OK)).await;
    let Shop { server, developer, user, sub, token, .. } =
        shop(TestServer::start_with(db, quick_webhooks).await, &receiver).await;
    let order = create_order(&server, &token, None, &order_body("C-1", &sub, 1_000)).await;
    let id = order.body["id"].as_str().unwrap().to_string();
    let confirm = format!("/api/v1/pay/orders/{id}/confirm");
    let confirms = (0..10).map(|_| server.post(&confirm, Some(&user), json!({})));
    for reply in futures_util::future::join_all(confirms).await {
        assert_eq!((reply.status, reply.body["status"].as_str()), (200, Some("paid")), "{}", reply.text);
    }
    assert_eq!(balance(&server, &user).await.0, 9_000);
    assert_eq!(balance(&server, &developer).await.0, 990);

    // Seven refunds of 300 at once, each with its own key: three fit in 1,000.
    let refunds = (0..7).map(|n| {
        let (server, token, id) = (&server, &token, &id);
        async move { refund(server, token, id, &format!("r{n}"), 300).await }
    });
    let replies = futures_util::future::join_all(refunds).await;
    let won = replies.iter().filter(|reply| reply.status == 201).count();
    assert_eq!(won, 3, "{:?}", replies.iter().map(|r| &r.text).collect::<Vec<_>>());
    for reply in replies.iter().filter(|reply| reply.status != 201) {
        reply.assert_problem(409, "refund_exceeds_payment");
    }
    // A retried refund moves nothing; the rest (100) still can be refunded, from the fee
    // once the developer's share is gone.
    let winner = replies.iter().position(|reply| reply.status == 201).unwrap();
    let again = refund(&server, &token, &id, &format!("r{winner}"), 300).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (201, Some("true")), "{}", again.text);
    assert_eq!(again.body["id"], replies[winner].body["id"]);
    let last = refund(&server, &token, &id, "last", 100).await;
    assert_eq!(last.status, 201, "{}", last.text);
    refund(&server, &token, &id, "more", 1).await.assert_problem(409, "refund_exceeds_payment");
    assert_eq!(balance(&server, &user).await.0, 10_000);
    assert_eq!(balance(&server, &developer).await.0, 0);
    let seen = server.get(&format!("/api/v1/pay/orders/{id}"), Some(&token)).await;
    assert_eq!(seen.body["refunded"], 1_000, "{}", seen.text);
    ledger_is_balanced(&server).await;
    server.stop().await;
}

async fn a_failing_receiver_is_retried_with_growing_delays_while_a_hanging_one_delays_nobody(db: Db) {
    // The hanging receiver holds every request until the test lets go, which it does
    // only after the other app's event was acknowledged: if one app's hanging receiver
    // held up another's deliveries, that would never happen and the test would fail.
    let hanging = Receiver::start_gated(always(StatusCode::OK), true).await;
    let flaky =
        Receiver::start(Arc::new(|n| if n < 2 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK })).await;
    let server = TestServer::start_with(db, |config| {
        quick_webhooks(config);
        config.miniapps.webhook_timeout = Duration::from_secs(60);
    })
    .await;
    let Shop { server, developer, user, app, sub, token } = shop(server, &hanging).await;
    let slow_orders: Vec<String> = futures_util::future::join_all((0..6).map(|n| {
        let (server, token, sub) = (&server, &token, &sub);
        async move { create_order(server, token, None, &order_body(&format!("S-{n}"), sub, 100)).await }
    }))
    .await
    .iter()
    .map(|reply| reply.body["id"].as_str().unwrap().to_string())
    .collect();
    for id in &slow_orders {
        let paid = confirm(&server, &user, id).await;
        assert_eq!(paid.body["status"], "paid", "{}", paid.text);
    }
    hanging.wait_for(4).await;

    let flaky_app = tea_garden_with_a_paid_order(&server, &developer, &user, &flaky.url, "F-1").await;
    let attempts = flaky.wait_for(3).await;
    // The same webhook, signed afresh at each attempt, with growing gaps.
    assert!(attempts.iter().all(|attempt| attempt.id == attempts[0].id && attempt.body == attempts[0].body));
    for attempt in &attempts {
        assert_signed(attempt, &flaky_app.webhook_secret);
    }
    let (first_gap, second_gap) = (attempts[1].at - attempts[0].at, attempts[2].at - attempts[1].at);
    assert!(second_gap > first_gap, "the retries did not back off: {first_gap:?} then {second_gap:?}");
    // Until a 2xx, and not after.
    let log_path = format!("/api/v1/miniapps/{}/webhook-deliveries", flaky_app.app.id);
    let log = wait_log(&server, &developer, &log_path, |item| item["status"] == "delivered").await;
    assert_eq!(log["attempts"], 3);
    let codes: Vec<i64> =
        log["attempt_log"].as_array().unwrap().iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [200, 500, 500]);
    assert_eq!(flaky.received().len(), 3);
    // A redelivery sends it again, with the same webhook-id.
    let delivery_id = log["id"].as_str().unwrap();
    let again = server.post(&format!("{log_path}/{delivery_id}/redeliver"), Some(&developer), json!({})).await;
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(flaky.wait_for(4).await[3].id, attempts[0].id);
    server
        .post(&format!("{log_path}/nosuch/redeliver"), Some(&developer), json!({}))
        .await
        .assert_problem(404, "webhook_delivery_not_found");

    hanging.release();
    let all = hanging.wait_for(6).await;
    let distinct: std::collections::BTreeSet<&str> = all.iter().map(|received| received.id.as_str()).collect();
    assert_eq!(distinct.len(), 6);
    let log_path = format!("/api/v1/miniapps/{}/webhook-deliveries", app.app.id);
    wait_log(&server, &developer, &log_path, |item| item["status"] == "delivered").await;
    server.stop().await;
}

async fn a_hanging_receivers_long_backlog_does_not_hold_up_another_apps_webhook(db: Db) {
    // More due deliveries for the hanging app than a sender reads in one round (twice its
    // free slots, once sorted oldest first): if the sender read them before skipping the
    // app at its in-flight limit, the other app's newer webhook would wait for the
    // hanging receiver's time-outs, a minute away.
    let backlog = 2 * plaza_miniapps::webhooks::IN_FLIGHT_MAX + 8;
    let hanging = Receiver::start_gated(always(StatusCode::OK), true).await;
    let prompt = Receiver::start(always(StatusCode::OK)).await;
    let server = TestServer::start_with(db, |config| {
        quick_webhooks(config);
        config.miniapps.webhook_timeout = Duration::from_secs(60);
    })
    .await;
    let Shop { server, developer, user, sub, token, .. } = shop(server, &hanging).await;
    futures_util::future::join_all((0..backlog).map(|n| {
        let (server, token, sub, user) = (&server, &token, &sub, &user);
        async move {
            let order = create_order(server, token, None, &order_body(&format!("H-{n}"), sub, 10)).await;
            let id = order.body["id"].as_str().unwrap();
            let paid = confirm(server, user, id).await;
            assert_eq!(paid.status, 200, "{}", paid.text);
        }
    }))
    .await;
    hanging.wait_for(plaza_miniapps::webhooks::IN_FLIGHT_PER_APP_MAX).await;

    let other = tea_garden_with_a_paid_order(&server, &developer, &user, &prompt.url, "T-1").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while prompt.received().is_empty() {
        assert!(Instant::now() < deadline, "the other app's webhook waited behind the hanging receiver's backlog");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_signed(&prompt.received()[0], &other.webhook_secret);
    // Still four at a time for the hanging app, however long its queue.
    assert_eq!(hanging.received().len(), plaza_miniapps::webhooks::IN_FLIGHT_PER_APP_MAX);
    hanging.release();
    hanging.wait_for(backlog).await;
    server.stop().await;
}

/// Waits (up to a minute) until the newest delivery of the log satisfies `done`.
async fn wait_log(server: &TestServer, developer: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = server.get(path, Some(developer)).await;
        let items = log.body["items"].as_array().cloned().unwrap_or_default();
        if !items.is_empty() && items.iter().all(&done) {
            return items[0].clone();
        }
        assert!(Instant::now() < deadline, "the deliveries never got there: {}", log.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_webhook_written_before_a_sigkill_is_delivered_after_the_restart(db: Db) {
    // The receiver refuses everything until the node is gone, so the webhook is still in
    // the outbox when the SIGKILL comes; after the restart it is delivered, once acknowledged.
    let refusing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let switch = refusing.clone();
    let receiver = Receiver::start(Arc::new(move |_| match switch.load(std::sync::atomic::Ordering::SeqCst) {
        true => StatusCode::SERVICE_UNAVAILABLE,
        false => StatusCode::OK,
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = crate::support::fresh_database(db, dir.path()).await;
    let env = vec![
        ("PLAZA_DATABASE_URL".to_string(), database_url.clone()),
        ("PLAZA_WEBHOOK_RETRY_BASE_MS".to_string(), "200".to_string()),
    ];
    let mut node = ChildNode::spawn_in(env, dir);
    node.wait_ready().await;
    let shim = TestServer::attach(&node.base(), &database_url);
    let [(developer, _), (user, _)] = shim.register_all(["dev", "ann"]).await;
    topup(&shim, &user, 5_000).await;
    let app = register(&shim, &developer, "Coffee House", &receiver.url).await;
    let sub = user_sub(&shim, &user, &app.app, "openid payments").await;
    let token = app_token(&shim, &app.app, "payments").await;
    let order = create_order(&shim, &token, None, &order_body("K-1", &sub, 400)).await;
    let id = order.body["id"].as_str().unwrap();
    let paid = shim.post(&format!("/api/v1/pay/orders/{id}/confirm"), Some(&user), json!({})).await;
    assert_eq!(paid.body["status"], "paid", "{}", paid.text);
    receiver.wait_for(1).await;
    node.kill();
    refusing.store(false, std::sync::atomic::Ordering::SeqCst);
    let before = receiver.received().len();
    node.respawn();
    node.wait_ready().await;
    let received = receiver.wait_for(before + 1).await;
    let last = received.last().unwrap();
    assert_eq!(last.id, received[0].id, "the same webhook, by its id");
    assert_signed(last, &app.webhook_secret);
    let log_path = format!("/api/v1/miniapps/{}/webhook-deliveries", app.app.id);
    let log = wait_log(&shim, &developer, &log_path, |item| item["status"] == "delivered").await;
    assert_eq!(log["attempt_log"][0]["status_code"], 200, "{log}");
    assert_eq!(balance(&shim, &user).await.0, 4_600);
    ledger_is_balanced(&shim).await;
}

/// Two nodes on one PostgreSQL database, both sending: each webhook reaches the receiver
/// once, at its first attempt, whichever node's sender found it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_both_deliver_one_attempt() {
    let receiver = Receiver::start(always(StatusCode::OK)).await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = crate::support::fresh_database(Db::Postgres, dir.path()).await;
    let first = TestServer::start_on(&database_url, quick_webhooks).await;
    let second = TestServer::start_on(&database_url, quick_webhooks).await;
    let Shop { server: first, user, sub, token, developer, app } = shop(first, &receiver).await;
    let orders = 24;
    for n in 0..orders {
        let node = if n % 2 == 0 { &first } else { &second };
        let order = create_order(node, &token, None, &order_body(&format!("N-{n}"), &sub, 10)).await;
        let id = order.body["id"].as_str().unwrap_or_else(|| panic!("{}", order.text));
        let paid = node.post(&format!("/api/v1/pay/orders/{id}/confirm"), Some(&user), json!({})).await;
        assert_eq!(paid.body["status"], "paid", "{}", paid.text);
    }
    let log_path = format!("/api/v1/miniapps/{}/webhook-deliveries?limit=100", app.app.id);
    wait_log(&second, &developer, &log_path, |item| item["status"] == "delivered").await;
    let received = receiver.received();
    let distinct: std::collections::BTreeSet<&str> = received.iter().map(|r| r.id.as_str()).collect();
    assert_eq!((received.len(), distinct.len()), (orders, orders), "{received:?}");
    let mut database = second.database().await;
    let retried: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM miniapp_webhook_deliveries WHERE attempts <> 1")
        .fetch_one(&mut database)
        .await
        .unwrap();
    assert_eq!(retried, 0);
    ledger_is_balanced(&first).await;
    first.stop().await;
    second.stop().await;
}
