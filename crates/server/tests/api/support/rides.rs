//! Rides helpers shared by `rides.rs`, `cluster.rs` and `rides_cluster.rs`: a client's view of quotes, rides,
//! offers and the wallet.

use super::{Reply, Socket, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

pub const PICKUP: (f64, f64) = (1.3000, 103.8000);
pub const DROPOFF: (f64, f64) = (1.3300, 103.8200);

// The wallet's side of a ride, which the rides tests import from here with the rest.
pub use super::{balance, topup};

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
/// Quotes `trip` through `server` until the quote has a pickup ETA (for at most 10 s):
/// a driver who went online through another node has been heard of here.
pub async fn wait_for_eta(server: &TestServer, token: &str, trip: &Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let quote = server.post("/api/v1/rides/quotes", Some(token), trip.clone()).await;
        assert_eq!(quote.status, 201, "{}", quote.text);
        if !quote.body["pickup_eta_s"].is_null() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "this node never heard of the driver who went online elsewhere"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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

/// A ride offered across two nodes: see [`offered_ride`].
pub struct OfferedRide {
    pub rider: String,
    pub rider_id: String,
    pub driver: String,
    pub driver_id: String,
    /// The rider's socket, on the rider's node.
    pub rider_socket: Socket,
    /// The driver's socket, on the driver's node.
    pub driver_socket: Socket,
    pub ride: Value,
    pub ride_id: String,
}

/// Registers a rider on `rider_node` (topped up with 10,000) and a driver on `driver_node`,
/// connects each to their node, has the driver go online there beside the pickup and the
/// rider request a ride there; returns once the ride's offer reached the driver (checked).
pub async fn offered_ride(
    rider_node: &TestServer,
    rider_name: &str,
    driver_node: &TestServer,
    driver_name: &str,
) -> OfferedRide {
    let (rider, rider_id) = rider_node.register(rider_name).await;
    let (driver, driver_id) = driver_node.register(driver_name).await;
    topup(rider_node, &rider, 10_000).await;
    let (rider_socket, _) = rider_node.socket(&rider).await;
    let (mut driver_socket, _) = driver_node.socket(&driver).await;
    go_online(driver_node, &driver, (1.3005, 103.8000)).await;
    let ride = request_ride(rider_node, &rider).await;
    let ride_id = ride["id"].as_str().unwrap().to_string();
    assert_eq!(next_offer(&mut driver_socket).await["ride_id"], ride_id.as_str());
    OfferedRide { rider, rider_id, driver, driver_id, rider_socket, driver_socket, ride, ride_id }
}

/// A rider and two drivers, one near the pickup and one further: see [`near_and_far`].
pub struct NearAndFar {
    pub rider: String,
    pub near: String,
    pub near_id: String,
    pub near_socket: Socket,
    pub far: String,
    pub far_id: String,
    pub far_socket: Socket,
}

/// Registers `[rider, near, far]`: the rider on `rider_node`, topped up with 10,000, and
/// the two drivers on `driver_node`, connected to it and online there, `near` at 11 m from
/// the pickup and `far` at 1.1 km.
pub async fn near_and_far(rider_node: &TestServer, driver_node: &TestServer, names: [&str; 3]) -> NearAndFar {
    let [rider_name, near_name, far_name] = names;
    let (rider, _) = rider_node.register(rider_name).await;
    let (near, near_id) = driver_node.register(near_name).await;
    let (far, far_id) = driver_node.register(far_name).await;
    topup(rider_node, &rider, 10_000).await;
    let (near_socket, _) = driver_node.socket(&near).await;
    let (far_socket, _) = driver_node.socket(&far).await;
    go_online(driver_node, &near, (1.3001, 103.8000)).await;
    go_online(driver_node, &far, (1.3100, 103.8000)).await;
    NearAndFar { rider, near, near_id, near_socket, far, far_id, far_socket }
}

/// Has the database, but not the nodes' indexes, take `driver_id` offline: what a lost
/// `offline` notice leaves.
pub async fn set_offline_in_database(server: &TestServer, driver_id: &str) {
    server.execute_sql("UPDATE ride_drivers SET online = 0 WHERE driver_id = $1", &[driver_id]).await;
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

/// Test time for driving: the index takes moves of up to ~1.4 km per update (5,000 km/h,
/// each update judged as at least a second after the last) at any rate, and trips are never
/// too fast. The trip checks themselves stay on: arriving, starting and completing still
/// need the car there, and the recorded route must still cover the way.
pub fn fast_driving(config: &mut plaza_server::config::Config) {
    config.rides.index_limits.speed_max_kmh = 5_000.0;
    config.rides.index_limits.update_interval_min_ms = 0;
    // No finite speed: an idle machine drives a test trip of a few kilometres in a few
    // milliseconds, which even a million km/h would judge implausible.
    config.rides.trip_speed_max_kmh = f64::INFINITY;
}

/// The longest stretch `drive` sends in one location update.
const DRIVE_STEP_M: f64 = 250.0;

/// Drives `token`'s car from `from` to `to` along the straight line, sending a location
/// every `DRIVE_STEP_M` or less (what a driver's app does on the way), ending exactly at `to`.
pub async fn drive(server: &TestServer, token: &str, from: (f64, f64), to: (f64, f64)) {
    let (from_at, to_at) =
        (plaza_rides::LatLng::new(from.0, from.1).unwrap(), plaza_rides::LatLng::new(to.0, to.1).unwrap());
    let steps = (from_at.distance_m(to_at) / DRIVE_STEP_M).ceil().max(1.0) as u32;
    for step in 1..=steps {
        let part = f64::from(step) / f64::from(steps);
        let (lat, lng) = (from.0 + (to.0 - from.0) * part, from.1 + (to.1 - from.1) * part);
        let moved = server.post("/api/v1/rides/driver/location", Some(token), json!({"lat": lat, "lng": lng})).await;
        assert_eq!(moved.status, 204, "step {step} of {steps}: {}", moved.text);
    }
}

/// The assigned driver, now at `at`, drives to the pickup, arrives, starts, drives to the
/// drop-off and completes; each step answers 200.
pub async fn drive_trip(server: &TestServer, token: &str, ride_id: &str, at: (f64, f64)) {
    drive(server, token, at, PICKUP).await;
    for action in ["arrive", "start"] {
        let reply = act(server, token, ride_id, action).await;
        assert_eq!(reply.status, 200, "{action}: {}", reply.text);
    }
    drive(server, token, PICKUP, DROPOFF).await;
    let reply = act(server, token, ride_id, "complete").await;
    assert_eq!(reply.status, 200, "complete: {}", reply.text);
}
