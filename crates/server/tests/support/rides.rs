//! Rides helpers shared by `rides.rs` and `cluster.rs`: a client's view of quotes, rides,
//! offers and the wallet.

use super::{Reply, Socket, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

pub const PICKUP: (f64, f64) = (1.3000, 103.8000);
pub const DROPOFF: (f64, f64) = (1.3300, 103.8200);

pub async fn topup(server: &TestServer, token: &str, amount: i64) {
    let request = server
        .client
        .post(format!("{}/api/v1/wallet/topups", server.base))
        .bearer_auth(token)
        .header("idempotency-key", plaza_kernel::new_id())
        .json(&json!({"amount": amount, "currency": "USD"}));
    let reply = server.raw(request).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
}

/// (available, held) in USD.
pub async fn balance(server: &TestServer, token: &str) -> (i64, i64) {
    let reply = server.get("/api/v1/wallet", Some(token)).await;
    let usd = reply.body["balances"].as_array().unwrap().iter().find(|b| b["currency"] == "USD").cloned();
    usd.map_or((0, 0), |usd| (usd["available"].as_i64().unwrap(), usd["held"].as_i64().unwrap()))
}

pub async fn go_online(server: &TestServer, token: &str, at: (f64, f64)) {
    let reply = server
        .post(
            "/api/v1/rides/driver/online",
            Some(token),
            json!({"vehicle": {"plate": "SGX 1234", "model": "Toyota Prius", "seats": 4},
                   "location": {"lat": at.0, "lng": at.1}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["online"], true);
}

/// A quote from PICKUP to DROPOFF.
pub async fn quote(server: &TestServer, token: &str) -> Value {
    let quote = server
        .post(
            "/api/v1/rides/quotes",
            Some(token),
            json!({"pickup": {"lat": PICKUP.0, "lng": PICKUP.1}, "dropoff": {"lat": DROPOFF.0, "lng": DROPOFF.1}}),
        )
        .await;
    assert_eq!(quote.status, 201, "{}", quote.text);
    assert!(quote.body["fare"]["amount"].as_i64().unwrap() > 0);
    assert!(quote.body["surge"].as_f64().unwrap() >= 1.0);
    quote.body
}

/// Quotes and requests a ride; returns the ride.
pub async fn request_ride(server: &TestServer, token: &str) -> Value {
    let quote = quote(server, token).await;
    let ride = server.post("/api/v1/rides", Some(token), json!({"quote_id": quote["id"]})).await;
    assert_eq!(ride.status, 201, "{}", ride.text);
    assert_eq!(ride.body["status"], "requested");
    // The same quote again is the same ride, and holds nothing more.
    let again = server.post("/api/v1/rides", Some(token), json!({"quote_id": quote["id"]})).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["id"], ride.body["id"]);
    ride.body
}

/// The next `ride.offer` on a driver's socket.
pub async fn next_offer(socket: &mut Socket) -> Value {
    let frames = socket.frames_until("ride.offer").await;
    frames.last().unwrap()["data"].clone()
}

/// Waits (at most 20 s) until the ride, as `token` sees it, satisfies `done`.
pub async fn wait_ride(server: &TestServer, token: &str, ride_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let reply = server.get(&format!("/api/v1/rides/{ride_id}"), Some(token)).await;
        if reply.status == 200 && done(&reply.body) {
            return reply.body;
        }
        assert!(tokio::time::Instant::now() < deadline, "ride never got there: {}", reply.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn act(server: &TestServer, token: &str, ride_id: &str, action: &str) -> Reply {
    server.post(&format!("/api/v1/rides/{ride_id}/{action}"), Some(token), json!({})).await
}
