//! The router driven without a socket: the webhook endpoint and the order it updates.

use super::*;
use axum::body::Body;
use tower::ServiceExt;

const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn app() -> Arc<App> {
    let config = Config {
        // Nothing here calls Plaza: port 9 (discard) would refuse anyway.
        plaza_url: "http://127.0.0.1:9".into(),
        public_url: None,
        client_id: "app_test".into(),
        client_secret: "secret_test".into(),
        webhook_secret: SECRET.into(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    Arc::new(App::new(&config, "http://127.0.0.1:8081").expect("a valid test config"))
}

/// A signed-in session with one order awaiting payment; returns the session token.
fn seed(app: &App, sub: &str, out_trade_no: &str) -> String {
    let token = format!("session-{sub}");
    let user = UserInfo { sub: sub.into(), name: Some("Hal".into()), picture: None };
    app.sessions
        .lock()
        .expect("lock")
        .insert(token.clone(), Session { user, expires_at: Instant::now() + SESSION_TTL });
    let order = Order {
        out_trade_no: out_trade_no.into(),
        user_sub: sub.into(),
        item: "Flat white",
        amount: 350,
        pay_order_id: Some("po_1".into()),
        status: OrderStatus::AwaitingPayment,
        refunded: 0,
        refund_ids: Vec::new(),
    };
    app.orders.lock().expect("lock").insert(out_trade_no.into(), order);
    token
}

fn event(kind: &str, amount: i64, refund_id: Option<&str>) -> String {
    serde_json::json!({
        "type": kind,
        "timestamp": "2026-12-03T08:00:00Z",
        "data": { "order_id": "po_1", "out_trade_no": "cof_1", "amount": amount, "currency": "USD", "refund_id": refund_id },
    })
    .to_string()
}

async fn deliver(app: &Arc<App>, id: &str, timestamp: i64, body: &str, signature: Option<String>) -> StatusCode {
    let secret = WebhookSecret::parse(SECRET).expect("secret");
    let signature = signature.unwrap_or_else(|| webhook::sign(&secret, id, timestamp, body.as_bytes()));
    let request = Request::post(WEBHOOK_PATH)
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    router(app.clone()).oneshot(request).await.expect("answer").status()
}

async fn order_status(app: &Arc<App>, session: &str, out_trade_no: &str) -> (StatusCode, serde_json::Value) {
    let request = Request::get(format!("/api/orders/{out_trade_no}"))
        .header("authorization", format!("Bearer {session}"))
        .body(Body::empty())
        .expect("request");
    let response = router(app.clone()).oneshot(request).await.expect("answer");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), BODY_BYTES_MAX).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn an_order_turns_paid_only_on_a_verified_webhook() {
    let app = app();
    let session = seed(&app, "sub-hal", "cof_1");
    let body = event("payment.succeeded", 350, None);

    let forged = Some(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode([7u8; 32])));
    assert_eq!(deliver(&app, "wh_1", unix_now(), &body, forged).await, StatusCode::UNAUTHORIZED);
    let stale = unix_now() - webhook::TOLERANCE_SECONDS - 60;
    assert_eq!(deliver(&app, "wh_1", stale, &body, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(order_status(&app, &session, "cof_1").await.1["status"], "awaiting_payment");

    assert_eq!(deliver(&app, "wh_1", unix_now(), &body, None).await, StatusCode::NO_CONTENT);
    let (status, order) = order_status(&app, &session, "cof_1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(order["status"], "paid");
    assert_eq!(order["order_id"], "po_1");
}

#[tokio::test]
async fn a_payment_for_another_amount_does_not_mark_the_order_paid() {
    let app = app();
    let session = seed(&app, "sub-hal", "cof_1");
    let body = event("payment.succeeded", 1, None);
    assert_eq!(deliver(&app, "wh_2", unix_now(), &body, None).await, StatusCode::NO_CONTENT);
    assert_eq!(order_status(&app, &session, "cof_1").await.1["status"], "awaiting_payment");
}

#[tokio::test]
async fn a_redelivered_refund_counts_once() {
    let app = app();
    let session = seed(&app, "sub-hal", "cof_1");
    let refund = event("refund.succeeded", 150, Some("rf_1"));
    assert_eq!(deliver(&app, "wh_3", unix_now(), &refund, None).await, StatusCode::NO_CONTENT);
    assert_eq!(deliver(&app, "wh_3", unix_now(), &refund, None).await, StatusCode::NO_CONTENT);
    // The same refund under another webhook id (a resend from the delivery log) too.
    assert_eq!(deliver(&app, "wh_4", unix_now(), &refund, None).await, StatusCode::NO_CONTENT);
    assert_eq!(order_status(&app, &session, "cof_1").await.1["refunded"], 150);
}

#[tokio::test]
async fn an_order_is_only_shown_to_its_buyer() {
    let app = app();
    seed(&app, "sub-hal", "cof_1");
    let other = seed(&app, "sub-ivy", "cof_2");
    assert_eq!(order_status(&app, &other, "cof_1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(order_status(&app, "no-such-session", "cof_1").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_page_loads_the_sdk_from_plaza_under_a_nonce_policy() {
    let app = app();
    let response = router(app).oneshot(Request::get("/").body(Body::empty()).expect("request")).await.expect("answer");
    let policy = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().expect("text").to_string();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let html = String::from_utf8(bytes.to_vec()).expect("utf-8");
    assert!(html.contains(r#"<script src="http://127.0.0.1:9/sdk/plaza-miniapp-1.js">"#), "{html}");
    let nonce = policy.split("'nonce-").nth(1).and_then(|rest| rest.split('\'').next()).expect("a nonce");
    assert!(html.contains(&format!(r#"<script nonce="{nonce}">"#)));
    assert!(policy.contains("frame-ancestors http://127.0.0.1:9"), "{policy}");
    assert!(policy.contains("connect-src http://127.0.0.1:8081"), "{policy}");
}

#[test]
fn an_origin_is_scheme_host_and_port() {
    assert_eq!(origin("http://127.0.0.1:8080/some/path?q"), "http://127.0.0.1:8080");
    assert_eq!(origin("https://plaza.example"), "https://plaza.example");
}
