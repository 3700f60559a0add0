//! Rides as a driver's and a rider's app read them between events, on SQLite and
//! PostgreSQL: the driver's own state (`GET /rides/driver`), which an app reloads from, and
//! the available drivers a rider sees on the map before requesting
//! (`GET /rides/nearby-drivers`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::rides::{
    act, fast_driving, go_online, next_offer, request_ride, set_offline_in_database, topup, PICKUP,
};
use crate::support::{Db, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

on_both_databases!(
    a_driver_reads_where_they_stand_offline_online_offered_and_on_a_trip,
    a_rider_sees_free_drivers_only_as_cell_centres_without_identities_and_no_busy_or_offline_ones,
);

const OFFER_TIMEOUT_MS: i64 = 15_000;

async fn server(db: Db) -> TestServer {
    TestServer::start_with(db, |config| {
        config.rides.batch_interval = Duration::from_millis(50);
        config.rides.offer_timeout = Duration::from_millis(OFFER_TIMEOUT_MS as u64);
        fast_driving(config);
    })
    .await
}

async fn driver_state(server: &TestServer, token: &str) -> Value {
    let reply = server.get("/api/v1/rides/driver", Some(token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

/// What a reloaded driver's app reads: before ever driving, nothing; online, the car and
/// where it is; offered a ride, the offer with what is left of it by the server's clock (the
/// offer event says so too); on a trip, the trip, which goes on after going offline.
async fn a_driver_reads_where_they_stand_offline_online_offered_and_on_a_trip(db: Db) {
    let server = server(db).await;
    let [(rider, _), (driver, driver_id)] = server.register_all(["rider", "driver"]).await;
    topup(&server, &rider, 10_000).await;

    let state = driver_state(&server, &driver).await;
    assert_eq!(
        state,
        json!({"driver_id": driver_id, "online": false, "vehicle": null, "location": null,
               "active_ride_id": null, "ride": null, "offer": null})
    );
    assert_eq!(server.get("/api/v1/rides/driver", None).await.status, 401);

    let (mut driver_socket, _) = server.socket(&driver).await;
    go_online(&server, &driver, (1.3005, 103.8000)).await;
    let state = driver_state(&server, &driver).await;
    assert_eq!(state["online"], true, "{state}");
    assert_eq!(state["vehicle"], json!({"plate": "SGX 1234", "model": "Toyota Prius", "seats": 4}));
    assert_eq!(state["location"], json!({"lat": 1.3005, "lng": 103.8}));
    assert_eq!((&state["ride"], &state["offer"]), (&Value::Null, &Value::Null));

    let ride = request_ride(&server, &rider).await;
    let ride_id = ride["id"].as_str().unwrap();
    let offer = next_offer(&mut driver_socket).await;
    assert_eq!(offer["ride_id"], ride_id);
    assert_eq!(offer["remaining_ms"], OFFER_TIMEOUT_MS, "the event says how long the offer lasts: {offer}");
    let state = driver_state(&server, &driver).await;
    let offered = &state["offer"];
    assert_eq!(offered["ride_id"], ride_id, "{state}");
    assert_eq!(
        (&offered["fare"], &offered["pickup"], &offered["dropoff"]),
        (&ride["fare"], &ride["pickup"], &ride["dropoff"])
    );
    assert_eq!(offered["expires_at"], offer["expires_at"]);
    let remaining_ms = offered["remaining_ms"].as_i64().unwrap();
    assert!((1..=OFFER_TIMEOUT_MS).contains(&remaining_ms), "{state}");
    assert!(offered["pickup_eta_s"].as_i64().is_some(), "the server knows where the driver is: {state}");
    assert_eq!(state["ride"], Value::Null);
    // The rider is not offered anything.
    assert_eq!(driver_state(&server, &rider).await["offer"], Value::Null);

    let accepted = act(&server, &driver, ride_id, "accept").await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    let state = driver_state(&server, &driver).await;
    assert_eq!(state["offer"], Value::Null, "{state}");
    assert_eq!((state["active_ride_id"].as_str(), state["ride"]["id"].as_str()), (Some(ride_id), Some(ride_id)));
    assert_eq!(state["ride"]["status"], "driver_assigned");

    // Offline, the driver gets no offers, but the trip goes on.
    let offline = server.post("/api/v1/rides/driver/offline", Some(&driver), json!({})).await;
    assert_eq!(offline.status, 200, "{}", offline.text);
    assert_eq!(offline.body["online"], false);
    let state = driver_state(&server, &driver).await;
    assert_eq!((state["online"].as_bool(), state["location"].is_null()), (Some(false), true), "{state}");
    assert_eq!(state["ride"]["id"], ride_id);
    assert_eq!(state["vehicle"]["plate"], "SGX 1234", "the car stays known, for going online again");
}

/// The cars on a rider's map: `GET /rides/nearby-drivers` as a rider's app polls it.
async fn nearby(server: &TestServer, token: &str, at: (f64, f64)) -> Value {
    let reply = server.get(&format!("/api/v1/rides/nearby-drivers?lat={}&lng={}", at.0, at.1), Some(token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

/// The centre of the H3 cell `at` is in, as the server coarsens positions.
fn coarse(at: (f64, f64)) -> (f64, f64) {
    let centre = plaza_rides::coarse_position(plaza_rides::LatLng::new(at.0, at.1).unwrap()).unwrap();
    (centre.lat(), centre.lng())
}

/// The cars of a nearby answer, checking that each has a position and nothing else.
fn cars(answer: &Value) -> Vec<(f64, f64)> {
    assert_eq!(answer.as_object().map(|o| o.len()), Some(1), "only `drivers`: {answer}");
    let drivers = answer["drivers"].as_array().unwrap_or_else(|| panic!("{answer}"));
    drivers
        .iter()
        .map(|car| {
            assert_eq!(car.as_object().map(|o| o.len()), Some(2), "a position and nothing else: {car}");
            (car["lat"].as_f64().unwrap(), car["lng"].as_f64().unwrap())
        })
        .collect()
}

/// Whether two lists of points are the same, to a millionth of a degree (JSON's decimals).
fn same_points(seen: &[(f64, f64)], expected: &[(f64, f64)]) -> bool {
    seen.len() == expected.len()
        && seen.iter().zip(expected).all(|(a, b)| (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9)
}

/// Around the pickup: a driver holding an offer and then on the trip, two free ones, one who
/// went offline, one the database has offline although the index still has them (a lost
/// `offline` notice), one beyond the radius. The rider sees the two free ones, each as the
/// centre of its H3 cell and nothing else; quotes do not count the one offline in the
/// database either.
async fn a_rider_sees_free_drivers_only_as_cell_centres_without_identities_and_no_busy_or_offline_ones(db: Db) {
    let server = server(db).await;
    let [(rider, _), (other_rider, _)] = server.register_all(["rider", "other"]).await;
    topup(&server, &other_rider, 10_000).await;
    assert_eq!(cars(&nearby(&server, &rider, PICKUP).await), []);

    // The nearest driver takes someone else's ride: busy from the offer on.
    let (busy, _) = server.register("busy").await;
    let (mut busy_socket, _) = server.socket(&busy).await;
    go_online(&server, &busy, (1.30004, 103.80003)).await;
    let seen = cars(&nearby(&server, &rider, PICKUP).await);
    assert!(same_points(&seen, &[coarse((1.30004, 103.80003))]), "{seen:?}");
    let ride = request_ride(&server, &other_rider).await;
    let ride_id = ride["id"].as_str().unwrap();
    assert_eq!(next_offer(&mut busy_socket).await["ride_id"], ride_id);
    assert_eq!(cars(&nearby(&server, &rider, PICKUP).await), [], "a driver holding an offer is not free");
    assert_eq!(act(&server, &busy, ride_id, "accept").await.status, 200);

    let free_north = (1.31003, 103.80004);
    let free_east = (1.30002, 103.81506);
    for (name, at) in
        [("north", free_north), ("east", free_east), ("west", (1.30001, 103.78497)), ("far", (1.34002, 103.80001))]
    {
        let (token, _) = server.register(name).await;
        go_online(&server, &token, at).await;
        if name == "west" {
            let offline = server.post("/api/v1/rides/driver/offline", Some(&token), json!({})).await;
            assert_eq!(offline.status, 200, "{}", offline.text);
        }
    }
    let (lost, lost_id) = server.register("lost").await;
    let lost_at = (1.25002, 103.80003);
    go_online(&server, &lost, lost_at).await;
    // Alone near the quote's pickup, the driver gives it an ETA while online…
    let (quoting, _) = server.register("quoting").await;
    let far_trip = json!({"pickup": {"lat": lost_at.0, "lng": lost_at.1}, "dropoff": {"lat": 1.2400, "lng": 103.8100}});
    let quoted = server.post("/api/v1/rides/quotes", Some(&quoting), far_trip.clone()).await;
    assert!(quoted.body["pickup_eta_s"].as_i64().is_some(), "{}", quoted.text);
    set_offline_in_database(&server, &lost_id).await;
    // …and none once the database has them offline, though this node's index still does.
    let quoted = server.post("/api/v1/rides/quotes", Some(&quoting), far_trip).await;
    assert_eq!(quoted.body["pickup_eta_s"], Value::Null, "{}", quoted.text);
    assert_eq!(cars(&nearby(&server, &rider, lost_at).await), []);

    let seen = cars(&nearby(&server, &rider, PICKUP).await);
    assert!(same_points(&seen, &[coarse(free_north), coarse(free_east)]), "the free ones, nearest first: {seen:?}");
    for (&(lat, lng), exact) in seen.iter().zip([free_north, free_east]) {
        let shown = plaza_rides::LatLng::new(lat, lng).unwrap();
        let off_m = shown.distance_m(plaza_rides::LatLng::new(exact.0, exact.1).unwrap());
        assert!((1.0..=250.0).contains(&off_m), "a cell's centre, not the driver's position: {off_m} m off");
    }
    // The busy driver's trip ends: free again, seen again.
    assert_eq!(act(&server, &busy, ride_id, "cancel").await.status, 200);
    let seen = cars(&nearby(&server, &rider, PICKUP).await);
    assert!(same_points(&seen[..1], &[coarse((1.30004, 103.80003))]), "{seen:?}");

    server
        .get("/api/v1/rides/nearby-drivers?lat=91&lng=103.8", Some(&rider))
        .await
        .assert_problem(422, "invalid_field");
    server.get("/api/v1/rides/nearby-drivers?lat=1.3", Some(&rider)).await.assert_problem(422, "invalid_field");
    assert_eq!(server.get("/api/v1/rides/nearby-drivers?lat=1.3&lng=103.8", None).await.status, 401);
}
