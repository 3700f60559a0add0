//! Rides' soft state across two `plaza serve` nodes sharing one PostgreSQL database and
//! one NATS server (`PLAZA_TEST_NATS_URL`), where an announcement one node missed must not
//! cost more than a moment: a trip one node still streams after its ride ended elsewhere,
//! a trip whose start no node heard, and a driver the database has offline though the
//! nodes' indexes still have them. (The rest of rides across nodes: `cluster.rs`.)
//! PostgreSQL only: two processes cannot share one SQLite database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::rides::{end_trip_unannounced, has_location, move_then_message};
use crate::support::rides::{
    act, fast_driving, go_online, offered_ride, set_offline_in_database, wait_for_eta, OfferedRide,
};
use crate::support::{Cluster, Socket, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

/// Two nodes on one database and one bus, each tuned for rides, the first checking its
/// trips against the database every `check_a`, the second every `check_b`.
async fn two_nodes(check_a: Duration, check_b: Duration) -> (TestServer, TestServer) {
    let cluster = Cluster::new().await;
    let configure = |check: Duration| {
        move |config: &mut plaza_server::config::Config| {
            config.rides.batch_interval = Duration::from_millis(50);
            config.rides.offer_timeout = Duration::from_secs(15);
            config.rides.dispatch_rounds_max = 1_000_000;
            config.rides.trip_check_interval = check;
            fast_driving(config);
        }
    };
    let node_a = cluster.node(configure(check_a)).await;
    let node_b = cluster.node(configure(check_b)).await;
    (node_a, node_b)
}

/// Moves the driver through `node` (and marks it with a chat message) until `done` says
/// what the rider then received is right; at most 15 s. Returns the next step.
async fn move_until(
    node: &TestServer,
    driver: &str,
    conversation: &str,
    rider_socket: &mut Socket,
    mut step: u32,
    done: impl Fn(&[Value]) -> bool,
    what: &str,
) -> u32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let frames = move_then_message(node, driver, conversation, rider_socket, step).await;
        step += 1;
        if done(&frames) {
            return step;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {frames:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ride's trip ends without a word on the bus, so both nodes stream it still. Node A's
/// own trip check (every 100 ms) drops it there; node B checks only hourly. The driver then
/// goes online through A, which has nothing to end itself: B must still stop streaming the
/// driver's locations to the former rider at once, not at its next hourly check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_another_node_still_streams_ends_when_its_driver_goes_online_through_this_one() {
    let (node_a, node_b) = two_nodes(Duration::from_millis(100), Duration::from_secs(3600)).await;
    // The driver stays connected to B throughout.
    let OfferedRide { rider_id, driver, rider_socket: mut rider_on_a, driver_socket: _driver_on_b, ride_id, .. } =
        offered_ride(&node_a, "stale_rider", &node_b, "stale_driver").await;
    let ride_id = ride_id.as_str();
    assert_eq!(act(&node_b, &driver, ride_id, "accept").await.status, 200);
    let conversation = node_b.conversation(&driver, "direct", &[&rider_id]).await;
    // Both nodes stream the trip (A once it heard of it over the bus).
    let step = move_until(&node_b, &driver, &conversation, &mut rider_on_a, 0, has_location, "B streams").await;
    let step = move_until(&node_a, &driver, &conversation, &mut rider_on_a, step, has_location, "A streams").await;

    end_trip_unannounced(&node_a, ride_id).await;
    let no_location = |frames: &[Value]| !has_location(frames);
    let step = move_until(&node_a, &driver, &conversation, &mut rider_on_a, step, no_location, "A's check").await;
    let frames = move_then_message(&node_b, &driver, &conversation, &mut rider_on_a, step).await;
    assert!(has_location(&frames), "B checks only hourly, so it still streams the ended trip: {frames:?}");

    go_online(&node_a, &driver, (1.3005, 103.8000)).await;
    let step =
        move_until(&node_b, &driver, &conversation, &mut rider_on_a, step + 1, no_location, "B kept streaming").await;
    let frames = move_then_message(&node_b, &driver, &conversation, &mut rider_on_a, step).await;
    assert!(!has_location(&frames), "and B stays stopped: {frames:?}");
}

/// The driver's accept commits but its announcement reaches no node (here: the ride is
/// assigned in the database alone). The driver's locations, sent through node B, reach the
/// rider on node A after B's next trip check, without the driver going online again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_whose_start_no_node_heard_streams_to_the_rider_after_the_next_trip_check() {
    let (node_a, node_b) = two_nodes(Duration::from_millis(200), Duration::from_millis(200)).await;
    // The driver stays connected to B throughout.
    let OfferedRide {
        rider_id,
        driver,
        driver_id,
        rider_socket: mut rider_on_a,
        driver_socket: _driver_on_b,
        ride_id,
        ..
    } = offered_ride(&node_a, "unheard_rider", &node_b, "unheard_driver").await;
    let ride_id = ride_id.as_str();
    let assigned = node_a
        .execute_sql(
            "UPDATE rides SET status = 'driver_assigned', driver_id = $2, offered_driver_id = NULL,
                 offer_expires_at = NULL WHERE id = $1 AND status = 'requested'",
            &[ride_id, &driver_id],
        )
        .await;
    assert_eq!(assigned, 1);
    let conversation = node_b.conversation(&driver, "direct", &[&rider_id]).await;
    let step = move_until(&node_b, &driver, &conversation, &mut rider_on_a, 0, has_location, "never streamed").await;
    let frames = move_then_message(&node_b, &driver, &conversation, &mut rider_on_a, step).await;
    let location = frames.iter().find(|frame| frame["type"] == "driver.location").unwrap();
    assert_eq!(location["data"]["ride_id"], ride_id, "{location}");
}

/// A driver online through node A is heard of by node B; then the database has them offline
/// while both indexes still do (an `offline` notice lost). Neither node's quotes count them
/// nor show them to riders as a car. (A pickup of its own: the nodes of
/// other tests share the NATS server, and with it the announcements.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_the_database_has_offline_is_neither_quoted_nor_shown_on_either_node() {
    let (node_a, node_b) = two_nodes(Duration::from_secs(60), Duration::from_secs(60)).await;
    let here = (1.4403, 103.7102);
    let trip = json!({"pickup": {"lat": here.0, "lng": here.1}, "dropoff": {"lat": 1.4500, "lng": 103.7200}});
    let (driver, driver_id) = node_a.register("quoted_driver").await;
    let (rider, _) = node_b.register("quoting_rider").await;
    go_online(&node_a, &driver, here).await;
    let nearby_path = format!("/api/v1/rides/nearby-drivers?lat={}&lng={}", here.0, here.1);
    wait_for_eta(&node_b, &rider, &trip).await;
    for node in [&node_a, &node_b] {
        let cars = node.get(&nearby_path, Some(&rider)).await;
        assert_eq!(cars.body["drivers"].as_array().map(Vec::len), Some(1), "{}", cars.text);
    }

    set_offline_in_database(&node_a, &driver_id).await;
    for node in [&node_a, &node_b] {
        let quote = node.post("/api/v1/rides/quotes", Some(&rider), trip.clone()).await;
        assert_eq!(quote.status, 201, "{}", quote.text);
        assert_eq!(
            quote.body["pickup_eta_s"],
            Value::Null,
            "a driver offline in the database is no ETA: {}",
            quote.text
        );
        let cars = node.get(&nearby_path, Some(&rider)).await;
        assert_eq!(cars.body["drivers"], json!([]), "nor a car on the map: {}", cars.text);
    }
    // The driver's own app, reading where they stand, is told they are offline.
    assert_eq!(node_b.get("/api/v1/rides/driver", Some(&driver)).await.body["online"], false);
}
