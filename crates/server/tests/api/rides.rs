//! Rides over real HTTP and WebSocket, on SQLite and PostgreSQL: the full trip and its
//! money, offers handed over on decline and time-out, `no_driver` releasing the hold,
//! cancellation fees, the state machine's refusals, dispatch surviving a restart, one open
//! ride per rider under concurrent requests, stranded holds released, and the demo's
//! simulated drivers; what a lost trip-end notice, a lost `offline` notice and a batch woken
//! by a decline may and may not do. (Two nodes: `cluster.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use crate::support::rides::{
    act, balance, drive, drive_trip, fast_driving, go_online, near_and_far, next_offer, quote, request_ride,
    set_offline_in_database, topup, wait_ride, NearAndFar, DROPOFF, PICKUP,
};
use crate::support::{Db, Socket, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

on_both_databases!(
    a_full_trip_pays_the_driver_and_the_fee_and_both_parties_follow_it,
    a_declined_offer_and_an_unanswered_one_pass_on_and_then_no_driver_releases_the_hold,
    cancelling_before_arrival_releases_the_hold_and_after_it_charges_the_cancel_fee,
    every_transition_not_allowed_is_refused_and_strangers_see_nothing,
    two_riders_and_one_driver_one_gets_the_car_the_other_no_driver,
    bad_coordinates_missing_money_and_impossible_jumps_are_refused,
    a_request_open_across_a_restart_is_dispatched_after_it,
    two_requests_at_once_on_different_quotes_open_one_ride_and_release_the_other_hold,
    a_hold_whose_ride_was_never_saved_is_released_once_its_quote_is_dead,
    a_simulated_demo_driver_takes_a_rider_from_request_to_completion,
    a_database_where_the_race_already_happened_migrates_keeping_each_riders_oldest_open_ride,
    expired_quotes_are_pruned_after_their_retention_and_then_unknown,
    a_driver_back_online_after_an_unannounced_trip_end_streams_nothing_to_the_former_rider,
    an_unannounced_trip_end_stops_the_streaming_at_the_next_trip_check,
    a_driver_the_database_has_offline_takes_no_candidate_slot_from_an_online_one_further_away,
    a_hold_that_failed_other_than_by_a_refusal_is_kept_for_the_sweep_which_releases_it,
    a_batch_woken_by_a_decline_counts_no_round_and_does_no_housekeeping_and_none_runs_after_the_lease_is_given_back,
    a_driver_who_never_came_cannot_arrive_and_a_drivers_cancel_never_charges_the_rider,
    a_trip_not_driven_to_the_dropoff_cannot_complete_and_one_not_driven_plausibly_is_charged_what_was_driven_and_marked_for_review,
    one_rider_quoting_thirty_times_does_not_raise_another_riders_surge,
    quotes_around_a_lone_driver_give_one_coarse_eta_that_does_not_locate_them,
);

/// Fast batches; offers that wait long enough for a test to answer them.
async fn server(db: Db) -> TestServer {
    server_with(db, 15_000, 5).await
}

async fn server_with(db: Db, offer_timeout_ms: u64, rounds: i64) -> TestServer {
    TestServer::start_with(db, |config| {
        config.rides.batch_interval = Duration::from_millis(50);
        config.rides.offer_timeout = Duration::from_millis(offer_timeout_ms);
        config.rides.dispatch_rounds_max = rounds;
        fast_driving(config);
    })
    .await
}

fn fee_of(amount: i64) -> i64 {
    amount * 2000 / 10_000
}

async fn a_full_trip_pays_the_driver_and_the_fee_and_both_parties_follow_it(db: Db) {
    let server = server(db).await;
    let [(rider, _), (driver, driver_id)] = server.register_all(["rider", "driver"]).await;
    topup(&server, &rider, 10_000).await;
    let (mut driver_socket, _) = server.socket(&driver).await;
    let (mut rider_socket, _) = server.socket(&rider).await;
    go_online(&server, &driver, (1.3005, 103.8000)).await;

    let ride = request_ride(&server, &rider).await;
    let ride_id = ride["id"].as_str().unwrap();
    let fare = ride["fare"]["amount"].as_i64().unwrap();
    let hold = ride["hold"]["amount"].as_i64().unwrap();
    assert!(hold > fare, "the hold carries a margin: {ride}");
    assert_eq!(balance(&server, &rider).await, (10_000 - hold, hold));

    let offer = next_offer(&mut driver_socket).await;
    assert_eq!(offer["ride_id"], ride_id);
    assert_eq!(offer["fare"]["amount"], fare);
    assert!(offer["pickup_eta_s"].as_i64().is_some() && offer["expires_at"].is_string());

    let accepted = act(&server, &driver, ride_id, "accept").await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(accepted.body["status"], "driver_assigned");
    assert_eq!(accepted.body["driver_id"], driver_id);
    // The rider reads the car to look for.
    let seen = server.get(&format!("/api/v1/rides/{ride_id}"), Some(&rider)).await;
    assert_eq!(
        seen.body["vehicle"],
        json!({"plate": "SGX 1234", "model": "Toyota Prius", "seats": 4}),
        "{}",
        seen.text
    );

    // The assigned driver's position streams to the rider.
    let moved = server
        .post("/api/v1/rides/driver/location", Some(&driver), json!({"lat": 1.3003, "lng": 103.8, "heading": 180.0}))
        .await;
    assert_eq!(moved.status, 204, "{}", moved.text);
    let early_frames = rider_socket.frames_until("driver.location").await;
    // A rider opening the ride afresh sees where the car is.
    let seen = server.get(&format!("/api/v1/rides/{ride_id}"), Some(&rider)).await;
    assert_eq!(seen.body["driver_location"], json!({"lat": 1.3003, "lng": 103.8}), "{}", seen.text);
    let location = &early_frames.last().unwrap()["data"];
    assert_eq!((location["ride_id"].as_str(), location["lat"].as_f64()), (Some(ride_id), Some(1.3003)));
    // The socket frame does the same, acknowledged.
    driver_socket.send(json!({"type": "driver.location", "id": "l1", "data": {"lat": 1.3002, "lng": 103.8}})).await;
    let acked = driver_socket.frames_until("ack").await;
    assert_eq!(acked.last().unwrap()["id"], "l1");

    for (action, status) in [("arrive", "driver_arrived"), ("start", "in_progress"), ("complete", "completed")] {
        if action == "complete" {
            drive(&server, &driver, (1.3002, 103.8), DROPOFF).await;
        }
        let reply = act(&server, &driver, ride_id, action).await;
        assert_eq!(reply.status, 200, "{action}: {}", reply.text);
        assert_eq!(reply.body["status"], status);
    }
    let done = wait_ride(&server, &rider, ride_id, |r| r["payment_status"] == "captured").await;
    assert_eq!(done["charged"]["amount"], fare);
    assert_eq!(done["review"], Value::Null, "a trip driven all the way needs no review: {done}");
    assert_eq!(balance(&server, &rider).await, (10_000 - fare, 0));
    assert_eq!(balance(&server, &driver).await, (fare - fee_of(fare), 0));

    // Both saw every step, in order.
    let status_of = |frame: &Value| frame["data"]["status"].as_str().unwrap().to_string();
    let mut seen: Vec<String> =
        early_frames.iter().filter(|frame| frame["type"] == "ride.updated").map(status_of).collect();
    while seen.last().map(String::as_str) != Some("completed") {
        let frame = rider_socket.frames_until("ride.updated").await.pop().unwrap();
        seen.push(status_of(&frame));
    }
    assert_eq!(seen, ["requested", "driver_assigned", "driver_arrived", "in_progress", "completed"]);
    // Then the money: one more `ride.updated` says the fare was captured.
    let settled = rider_socket.frames_until("ride.updated").await.pop().unwrap();
    assert_eq!(
        (settled["data"]["status"].as_str(), settled["data"]["payment_status"].as_str()),
        (Some("completed"), Some("captured")),
        "{settled}"
    );
    // (The driver's `driver_assigned` came before the location ack read above.)
    let driver_frames = driver_socket.frames_until("ride.updated").await;
    assert_eq!(driver_frames.last().unwrap()["data"]["status"], "driver_arrived");

    let rated = server
        .post(&format!("/api/v1/rides/{ride_id}/rating"), Some(&rider), json!({"stars": 5, "comment": "smooth"}))
        .await;
    assert_eq!(rated.status, 201, "{}", rated.text);
    assert_eq!(rated.body["ratee_id"], driver_id);
    server
        .post(&format!("/api/v1/rides/{ride_id}/rating"), Some(&rider), json!({"stars": 4}))
        .await
        .assert_problem(409, "already_rated");
    server
        .post(&format!("/api/v1/rides/{ride_id}/rating"), Some(&driver), json!({"stars": 6}))
        .await
        .assert_problem(422, "invalid_field");
    let rated_back = server.post(&format!("/api/v1/rides/{ride_id}/rating"), Some(&driver), json!({"stars": 4})).await;
    assert_eq!(rated_back.status, 201, "{}", rated_back.text);

    // Shared into a chat as a card.
    let (_, rider_friend) = server.register("friend").await;
    let conversation = server.conversation(&rider, "direct", &[&rider_friend]).await;
    let shared = server
        .post(&format!("/api/v1/rides/{ride_id}/share"), Some(&rider), json!({"conversation_id": conversation}))
        .await;
    assert_eq!(shared.status, 201, "{}", shared.text);
    let card = server.first_card(&rider, &conversation).await;
    assert_eq!((card["body"]["type"].as_str(), card["body"]["id"].as_str()), (Some("ride"), Some(ride_id)));
    assert_eq!(card["body"]["distance_m"], done["distance_m"], "the card tells the quoted route's length");
}

async fn a_declined_offer_and_an_unanswered_one_pass_on_and_then_no_driver_releases_the_hold(db: Db) {
    let server = server_with(db, 1_500, 3).await;
    let NearAndFar { rider, near, mut near_socket, far, mut far_socket, .. } =
        near_and_far(&server, &server, ["rider", "near", "far"]).await;

    let ride = request_ride(&server, &rider).await;
    let ride_id = ride["id"].as_str().unwrap();
    // The nearest driver is asked first, and declines.
    let offer = next_offer(&mut near_socket).await;
    assert_eq!(offer["ride_id"], ride_id);
    let offered = wait_ride(&server, &near, ride_id, |_| true).await;
    assert_eq!(offered["status"], "requested");
    let declined = act(&server, &near, ride_id, "decline").await;
    assert_eq!(declined.status, 200, "{}", declined.text);
    // Declining again, or accepting after declining, is not allowed.
    act(&server, &near, ride_id, "accept").await.assert_problem(409, "invalid_transition");
    // The next best driver gets it, and lets it time out.
    let offer = next_offer(&mut far_socket).await;
    assert_eq!(offer["ride_id"], ride_id);
    // With nobody left, the request ends as no_driver and the hold comes back.
    let ended =
        wait_ride(&server, &rider, ride_id, |r| r["status"] == "no_driver" && r["payment_status"] == "released").await;
    assert_eq!(ended["charged"]["amount"], 0);
    assert_eq!(balance(&server, &rider).await, (10_000, 0));
    act(&server, &far, ride_id, "accept").await.assert_problem(409, "invalid_transition");
}

/// Requests a ride and has `driver` accept it; returns the ride id.
async fn assigned_ride(server: &TestServer, rider: &str, driver: &str, driver_socket: &mut Socket) -> String {
    let ride = request_ride(server, rider).await;
    let ride_id = ride["id"].as_str().unwrap().to_string();
    loop {
        let offer = next_offer(driver_socket).await;
        if offer["ride_id"] == ride_id.as_str() {
            break;
        }
    }
    let accepted = act(server, driver, &ride_id, "accept").await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    ride_id
}

async fn cancelling_before_arrival_releases_the_hold_and_after_it_charges_the_cancel_fee(db: Db) {
    let server = server(db).await;
    let [(rider, _), (driver, _)] = server.register_all(["rider", "driver"]).await;
    topup(&server, &rider, 10_000).await;
    let (mut driver_socket, _) = server.socket(&driver).await;
    go_online(&server, &driver, (1.3005, 103.8000)).await;

    let first = assigned_ride(&server, &rider, &driver, &mut driver_socket).await;
    let cancelled = act(&server, &rider, &first, "cancel").await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["cancelled_by"], "rider");
    wait_ride(&server, &rider, &first, |r| r["payment_status"] == "released").await;
    assert_eq!(balance(&server, &rider).await, (10_000, 0));

    let second = assigned_ride(&server, &rider, &driver, &mut driver_socket).await;
    assert_eq!(act(&server, &driver, &second, "arrive").await.status, 200);
    let cancelled = act(&server, &rider, &second, "cancel").await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    let settled = wait_ride(&server, &rider, &second, |r| r["payment_status"] == "captured").await;
    assert_eq!(settled["charged"]["amount"], 300);
    assert_eq!(balance(&server, &rider).await, (10_000 - 300, 0));
    assert_eq!(balance(&server, &driver).await, (300 - fee_of(300), 0));

    // A driver may cancel too (before arrival: free for the rider).
    let third = assigned_ride(&server, &rider, &driver, &mut driver_socket).await;
    let cancelled = act(&server, &driver, &third, "cancel").await;
    assert_eq!(cancelled.body["cancelled_by"], "driver");
    wait_ride(&server, &rider, &third, |r| r["payment_status"] == "released").await;
    assert_eq!(balance(&server, &rider).await, (10_000 - 300, 0));
}

/// Issue 18.9: a driver 3.7 km away accepted, called `arrive`, cancelled, and earned the
/// rider's cancel fee. Arriving needs the car at the pickup, and a driver's cancel costs the
/// rider nothing even after a real arrival.
async fn a_driver_who_never_came_cannot_arrive_and_a_drivers_cancel_never_charges_the_rider(db: Db) {
    let server = server(db).await;
    let [(rider, _), (driver, _)] = server.register_all(["rider", "driver"]).await;
    topup(&server, &rider, 10_000).await;
    let (mut driver_socket, _) = server.socket(&driver).await;
    let far_away = (1.3333, 103.8000);
    go_online(&server, &driver, far_away).await;

    let ride_id = assigned_ride(&server, &rider, &driver, &mut driver_socket).await;
    act(&server, &driver, &ride_id, "arrive").await.assert_problem(409, "not_at_pickup");
    act(&server, &driver, &ride_id, "start").await.assert_problem(409, "invalid_transition");
    let still = server.get(&format!("/api/v1/rides/{ride_id}"), Some(&rider)).await;
    assert_eq!(still.body["status"], "driver_assigned", "{}", still.text);

    // Once there, the driver may arrive; cancelling then is still free for the rider.
    drive(&server, &driver, far_away, PICKUP).await;
    assert_eq!(act(&server, &driver, &ride_id, "arrive").await.status, 200);
    let cancelled = act(&server, &driver, &ride_id, "cancel").await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.body["cancelled_by"], "driver");
    let settled = wait_ride(&server, &rider, &ride_id, |r| r["payment_status"] == "released").await;
    assert_eq!(settled["charged"]["amount"], 0, "{settled}");
    assert_eq!(balance(&server, &rider).await, (10_000, 0));
    assert_eq!(balance(&server, &driver).await, (0, 0));
}

/// Issue 18.10: accept, arrive, start and complete back to back captured the whole fare.
/// Completing needs the car at the drop-off; a trip that got there faster than any car
/// could (here: 4 km in well under a second, against 150 km/h), or without driving the way
/// (going online again at the drop-off), is charged the metered fare of what was recorded,
/// less than quoted, and marked for review, which both parties see.
async fn a_trip_not_driven_to_the_dropoff_cannot_complete_and_one_not_driven_plausibly_is_charged_what_was_driven_and_marked_for_review(
    db: Db,
) {
    let server = TestServer::start_with(db, |config| {
        config.rides.batch_interval = Duration::from_millis(50);
        fast_driving(config);
        config.rides.trip_speed_max_kmh = 150.0;
    })
    .await;
    let [(rider, _), (driver, _)] = server.register_all(["rider", "driver"]).await;
    topup(&server, &rider, 10_000).await;
    let (mut driver_socket, _) = server.socket(&driver).await;
    go_online(&server, &driver, (1.3005, 103.8000)).await;

    let mut paid = 0;
    let mut earned = 0;
    for (round, teleport) in [(0, false), (1, true)] {
        let ride_id = assigned_ride(&server, &rider, &driver, &mut driver_socket).await;
        assert_eq!(act(&server, &driver, &ride_id, "arrive").await.status, 200);
        assert_eq!(act(&server, &driver, &ride_id, "start").await.status, 200);
        act(&server, &driver, &ride_id, "complete").await.assert_problem(409, "not_at_dropoff");
        if teleport {
            go_online(&server, &driver, DROPOFF).await;
        } else {
            drive(&server, &driver, (1.3005, 103.8000), DROPOFF).await;
        }
        let completed = act(&server, &driver, &ride_id, "complete").await;
        assert_eq!(completed.status, 200, "round {round}: {}", completed.text);
        assert_eq!(completed.body["review"], "implausible_route", "round {round}: {}", completed.text);
        let done = wait_ride(&server, &rider, &ride_id, |r| r["payment_status"] == "captured").await;
        let (fare, charged) = (done["fare"]["amount"].as_i64().unwrap(), done["charged"]["amount"].as_i64().unwrap());
        assert!(charged > 0 && charged < fare, "round {round}: charged {charged} of {fare}: {done}");
        let driver_sees = server.get(&format!("/api/v1/rides/{ride_id}"), Some(&driver)).await;
        assert_eq!(driver_sees.body["review"], "implausible_route", "{}", driver_sees.text);
        paid += charged;
        earned += charged - fee_of(charged);
        assert_eq!(balance(&server, &rider).await, (10_000 - paid, 0));
        assert_eq!(balance(&server, &driver).await, (earned, 0));
        // The next trip starts where this one ended.
        go_online(&server, &driver, (1.3005, 103.8000)).await;
    }
}

/// Issue 18.11 (and 16.6): thirty quotes by one account at one pickup raised another
/// rider's surge from 1.0 to 2.5. Demand counts riders, each once.
async fn one_rider_quoting_thirty_times_does_not_raise_another_riders_surge(db: Db) {
    let server = server(db).await;
    let [(pumper, _), (other, _), (third, _)] = server.register_all(["pumper", "other", "third"]).await;
    for (i, name) in ["near_one", "near_two"].into_iter().enumerate() {
        let (driver, _) = server.register(name).await;
        go_online(&server, &driver, (1.3001 + 0.0001 * i as f64, 103.8000)).await;
    }
    for _ in 0..30 {
        quote(&server, &pumper).await;
    }
    let surge = |quote: &Value| quote["surge"].as_f64().unwrap();
    assert_eq!(surge(&quote(&server, &pumper).await), 1.0, "one rider against two cars is no surge");
    assert_eq!(surge(&quote(&server, &other).await), 1.0, "two riders against two cars is no surge");
    // Distinct riders still count: three against two cars.
    assert_eq!(surge(&quote(&server, &third).await), 1.5);
}

/// Issue 18.12: the ETA in quotes from three points around the only nearby driver
/// trilaterated where the driver was. With fewer than three drivers in reach a quote tells
/// only a coarse bucket, the same from every point here (200 m to 1.2 km from the car,
/// whose precise ETAs would differ by minutes); with more, whole minutes.
async fn quotes_around_a_lone_driver_give_one_coarse_eta_that_does_not_locate_them(db: Db) {
    let server = server(db).await;
    let [(rider, _), (lone, _)] = server.register_all(["rider", "lone"]).await;
    let car = (1.3100, 103.8000);
    go_online(&server, &lone, car).await;
    let eta_from = |pickup: (f64, f64)| {
        let (server, rider) = (&server, &rider);
        async move {
            let quote = server
                .post(
                    "/api/v1/rides/quotes",
                    Some(rider),
                    json!({"pickup": {"lat": pickup.0, "lng": pickup.1}, "dropoff": {"lat": 1.3300, "lng": 103.8200}}),
                )
                .await;
            assert_eq!(quote.status, 201, "{}", quote.text);
            quote.body["pickup_eta_s"].as_i64().unwrap()
        }
    };
    let around = [(car.0 + 0.0018, car.1), (car.0 - 0.0045, car.1 - 0.0045), (car.0, car.1 + 0.0110)];
    let mut etas = Vec::new();
    for pickup in around {
        etas.push(eta_from(pickup).await);
    }
    assert!(etas.iter().all(|eta| *eta == 300), "one bucket from every side of a lone driver: {etas:?}");

    // Three drivers in reach: whole minutes, no finer.
    for (i, name) in ["second", "third"].into_iter().enumerate() {
        let (driver, _) = server.register(name).await;
        go_online(&server, &driver, (car.0 + 0.01 * (i as f64 + 1.0), car.1)).await;
    }
    let eta = eta_from(around[0]).await;
    assert!(eta > 0 && eta % 60 == 0 && eta < 300, "whole minutes: {eta}");
}

async fn every_transition_not_allowed_is_refused_and_strangers_see_nothing(db: Db) {
    let server = server(db).await;
    let [(rider, _), (driver, _), (stranger, _)] = server.register_all(["rider", "driver", "stranger"]).await;
    topup(&server, &rider, 10_000).await;
    let (mut driver_socket, _) = server.socket(&driver).await;

    // Requested, nobody online: nothing but cancel (and the dispatcher) moves it.
    let ride = request_ride(&server, &rider).await;
    let ride_id = ride["id"].as_str().unwrap().to_string();
    for action in ["arrive", "start", "complete"] {
        act(&server, &rider, &ride_id, action).await.assert_problem(403, "forbidden");
        act(&server, &stranger, &ride_id, action).await.assert_problem(404, "ride_not_found");
    }
    act(&server, &stranger, &ride_id, "accept").await.assert_problem(404, "ride_not_found");
    act(&server, &rider, &ride_id, "accept").await.assert_problem(403, "forbidden");
    server.get(&format!("/api/v1/rides/{ride_id}"), Some(&stranger)).await.assert_problem(404, "ride_not_found");
    act(&server, &rider, &ride_id, "cancel").await;
    act(&server, &rider, &ride_id, "cancel").await.assert_problem(409, "invalid_transition");

    go_online(&server, &driver, (1.3005, 103.8000)).await;
    let ride_id = assigned_ride(&server, &rider, &driver, &mut driver_socket).await;
    let steps = [
        ("driver_assigned", "arrive", ["start", "complete", "accept"]),
        ("driver_arrived", "start", ["arrive", "complete", "accept"]),
        ("in_progress", "complete", ["arrive", "start", "accept"]),
    ];
    for (status, next, refused) in steps {
        for action in refused {
            act(&server, &driver, &ride_id, action).await.assert_problem(409, "invalid_transition");
        }
        act(&server, &rider, &ride_id, next).await.assert_problem(403, "forbidden");
        act(&server, &stranger, &ride_id, next).await.assert_problem(404, "ride_not_found");
        let current = server.get(&format!("/api/v1/rides/{ride_id}"), Some(&driver)).await;
        assert_eq!(current.body["status"], status);
        if next == "complete" {
            drive(&server, &driver, (1.3005, 103.8000), DROPOFF).await;
        }
        assert_eq!(act(&server, &driver, &ride_id, next).await.status, 200);
    }
    for action in ["accept", "decline", "arrive", "start", "complete", "cancel"] {
        act(&server, &driver, &ride_id, action).await.assert_problem(409, "invalid_transition");
    }
    act(&server, &rider, &ride_id, "cancel").await.assert_problem(409, "invalid_transition");
    server.get("/api/v1/rides/nope", Some(&rider)).await.assert_problem(404, "ride_not_found");
}

async fn two_riders_and_one_driver_one_gets_the_car_the_other_no_driver(db: Db) {
    let server = server_with(db, 15_000, 3).await;
    let [(ann, _), (bob, _), (driver, _)] = server.register_all(["ann", "bob", "driver"]).await;
    topup(&server, &ann, 10_000).await;
    topup(&server, &bob, 10_000).await;
    let (mut driver_socket, _) = server.socket(&driver).await;
    go_online(&server, &driver, (1.3005, 103.8000)).await;
    let first = request_ride(&server, &ann).await;
    let second = request_ride(&server, &bob).await;
    let offer = next_offer(&mut driver_socket).await;
    let (winner, loser, loser_token) = if offer["ride_id"] == first["id"] {
        (first["id"].as_str().unwrap(), second["id"].as_str().unwrap(), &bob)
    } else {
        (second["id"].as_str().unwrap(), first["id"].as_str().unwrap(), &ann)
    };
    assert_eq!(act(&server, &driver, winner, "accept").await.status, 200);
    // The only driver is busy: the other request runs out of rounds.
    let ended =
        wait_ride(&server, loser_token, loser, |r| r["status"] == "no_driver" && r["payment_status"] == "released")
            .await;
    assert_eq!(ended["driver_id"], Value::Null);
    assert_eq!(balance(&server, loser_token).await, (10_000, 0));
    // The driver was never offered the second ride while holding the first.
    act(&server, &driver, loser, "accept").await.assert_problem(404, "ride_not_found");
}

async fn bad_coordinates_missing_money_and_impossible_jumps_are_refused(db: Db) {
    let server = server(db).await;
    let [(rider, _), (driver, _)] = server.register_all(["rider", "driver"]).await;
    let bad = [json!({"lat": 91.0, "lng": 0.0}), json!({"lat": 0.0, "lng": 181.0}), json!({"lat": "x", "lng": 0.0})];
    for point in bad {
        let reply = server
            .post("/api/v1/rides/quotes", Some(&rider), json!({"pickup": point, "dropoff": {"lat": 1.0, "lng": 1.0}}))
            .await;
        assert_eq!(reply.status, 422, "{}", reply.text);
    }
    // No money: 402, and nothing is held or created.
    let quote = server
        .post(
            "/api/v1/rides/quotes",
            Some(&rider),
            json!({"pickup": {"lat": PICKUP.0, "lng": PICKUP.1}, "dropoff": {"lat": DROPOFF.0, "lng": DROPOFF.1}}),
        )
        .await;
    server
        .post("/api/v1/rides", Some(&rider), json!({"quote_id": quote.body["id"]}))
        .await
        .assert_problem(402, "insufficient_funds");
    assert_eq!(balance(&server, &rider).await, (0, 0));
    // Someone else's quote is not found.
    server
        .post("/api/v1/rides", Some(&driver), json!({"quote_id": quote.body["id"]}))
        .await
        .assert_problem(404, "quote_not_found");
    // Locations need an online driver, and a jump faster than 250 km/h is refused.
    server
        .post("/api/v1/rides/driver/location", Some(&driver), json!({"lat": 1.3, "lng": 103.8}))
        .await
        .assert_problem(409, "driver_offline");
    go_online(&server, &driver, (1.3, 103.8)).await;
    server
        .post("/api/v1/rides/driver/location", Some(&driver), json!({"lat": 1.5, "lng": 103.8}))
        .await
        .assert_problem(422, "location_jump");
    server
        .post(
            "/api/v1/rides/driver/online",
            Some(&driver),
            json!({"vehicle": {"plate": "", "model": "x", "seats": 4}, "location": {"lat": 1.3, "lng": 103.8}}),
        )
        .await
        .assert_problem(422, "invalid_field");
    let offline = server.post("/api/v1/rides/driver/offline", Some(&driver), json!({})).await;
    assert_eq!((offline.status, offline.body["online"].as_bool()), (200, Some(false)));
}

async fn a_request_open_across_a_restart_is_dispatched_after_it(db: Db) {
    let adjust = |config: &mut plaza_server::config::Config| {
        config.rides.batch_interval = Duration::from_millis(50);
        config.rides.dispatch_rounds_max = 1_000_000;
        // The old node gives its lease back when it stops; were that lost, a short lease
        // keeps the wait for its expiry well inside the socket's 10 s for the offer frame.
        config.rides.lease_ttl = Duration::from_secs(2);
        fast_driving(config);
    };
    let first = TestServer::start_with(db, adjust).await;
    let [(rider, _), (driver, _)] = first.register_all(["rider", "driver"]).await;
    topup(&first, &rider, 10_000).await;
    // Nobody is online: the request waits, durable, while the node stops.
    let ride = request_ride(&first, &rider).await;
    let ride_id = ride["id"].as_str().unwrap().to_string();
    let database_url = first.database_url.clone();
    let data = first.stop_keeping_data().await;
    {
        sqlx::any::install_default_drivers();
        let mut database = <sqlx::AnyConnection as sqlx::Connection>::connect(&database_url).await.unwrap();
        let leases: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM ride_leases").fetch_one(&mut database).await.unwrap();
        assert_eq!(leases, 0, "a node stopping gracefully gives the dispatch lease back");
        sqlx::Connection::close(database).await.ok();
    }

    let second = TestServer::start_on(&database_url, adjust).await;
    let (mut driver_socket, _) = second.socket(&driver).await;
    go_online(&second, &driver, (1.3005, 103.8000)).await;
    let offer = next_offer(&mut driver_socket).await;
    assert_eq!(offer["ride_id"], ride_id.as_str());
    assert_eq!(act(&second, &driver, &ride_id, "accept").await.status, 200);
    drive_trip(&second, &driver, &ride_id, (1.3005, 103.8000)).await;
    let fare = ride["fare"]["amount"].as_i64().unwrap();
    wait_ride(&second, &rider, &ride_id, |r| r["payment_status"] == "captured").await;
    assert_eq!(balance(&second, &rider).await, (10_000 - fare, 0));
    drop(data);
}

/// `plaza demo --serve`: a rider alone gets a ride end to end from a simulated driver.
async fn a_simulated_demo_driver_takes_a_rider_from_request_to_completion(db: Db) {
    let server = TestServer::start_with_demo_drivers(db, |config| {
        config.rides.batch_interval = Duration::from_millis(200);
        // The simulated drivers register (argon2) before going online: keep looking.
        config.rides.dispatch_rounds_max = 1_000;
    })
    .await;
    let (rider, _) = server.register("rider").await;
    topup(&server, &rider, 10_000).await;
    let (lat, lng) = plaza_server::demo::DEMO_CITY;
    let quote = server
        .post(
            "/api/v1/rides/quotes",
            Some(&rider),
            json!({"pickup": {"lat": lat + 0.001, "lng": lng}, "dropoff": {"lat": lat + 0.005, "lng": lng}}),
        )
        .await;
    assert_eq!(quote.status, 201, "{}", quote.text);
    let ride = server.post("/api/v1/rides", Some(&rider), json!({"quote_id": quote.body["id"]})).await;
    assert_eq!(ride.status, 201, "{}", ride.text);
    let ride_id = ride.body["id"].as_str().unwrap().to_string();
    // Generous: the simulated drivers act every 2 s and drive 60 m per step.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let reply = server.get(&format!("/api/v1/rides/{ride_id}"), Some(&rider)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        if reply.body["status"] == "completed" {
            assert!(reply.body["driver_id"].is_string());
            break;
        }
        assert!(!["cancelled", "no_driver"].contains(&reply.body["status"].as_str().unwrap_or("")), "{}", reply.text);
        assert!(tokio::time::Instant::now() < deadline, "the ride never completed: {}", reply.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;
}

/// Two requests of one rider at once, on two quotes: the database lets exactly one ride
/// open; the other request is a 409 and its hold is released before it answers. Several
/// rounds, since the cheap check before the hold usually decides, and only a true overlap
/// reaches the unique index.
async fn two_requests_at_once_on_different_quotes_open_one_ride_and_release_the_other_hold(db: Db) {
    let server = server_with(db, 15_000, 1_000_000).await;
    let (rider, _) = server.register("rider").await;
    topup(&server, &rider, 10_000).await;
    for round in 0..6 {
        let (first, second) = (quote(&server, &rider).await, quote(&server, &rider).await);
        let (a, b) = tokio::join!(
            server.post("/api/v1/rides", Some(&rider), json!({"quote_id": first["id"]})),
            server.post("/api/v1/rides", Some(&rider), json!({"quote_id": second["id"]})),
        );
        let (winner, loser) = if a.status == 201 { (a, b) } else { (b, a) };
        assert_eq!(winner.status, 201, "round {round}: {} / {}", winner.text, loser.text);
        loser.assert_problem(409, "ride_already_open");
        let hold = winner.body["hold"]["amount"].as_i64().unwrap();
        assert_eq!(balance(&server, &rider).await, (10_000 - hold, hold), "round {round}: only the winner holds");
        let ride_id = winner.body["id"].as_str().unwrap();
        assert_eq!(act(&server, &rider, ride_id, "cancel").await.status, 200);
        wait_ride(&server, &rider, ride_id, |r| r["payment_status"] == "released").await;
        assert_eq!(balance(&server, &rider).await, (10_000, 0));
    }
    // With a ride open, a request on another quote is refused before anything is held.
    let open = request_ride(&server, &rider).await;
    let other = quote(&server, &rider).await;
    let refused = server.post("/api/v1/rides", Some(&rider), json!({"quote_id": other["id"]})).await;
    refused.assert_problem(409, "ride_already_open");
    assert_eq!(refused.body["ride_id"], open["id"], "the open ride as a typed member, not inside the words");
    let hold = open["hold"]["amount"].as_i64().unwrap();
    assert_eq!(balance(&server, &rider).await, (10_000 - hold, hold));
}

/// A node that dies between the wallet's hold and the ride's row leaves money held with no
/// ride. The dispatcher's sweep finds it through the pending-hold row once the quote is
/// dead, releases it, and the quote cannot be used again.
async fn a_hold_whose_ride_was_never_saved_is_released_once_its_quote_is_dead(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.rides.batch_interval = Duration::from_millis(50);
        config.rides.dispatch_rounds_max = 1_000_000;
        config.rides.stranded_hold_grace = Duration::from_millis(0);
    })
    .await;
    let (rider, rider_id) = server.register("rider").await;
    topup(&server, &rider, 10_000).await;
    let ride = request_ride(&server, &rider).await;
    let hold = ride["hold"]["amount"].as_i64().unwrap();
    assert_eq!(balance(&server, &rider).await, (10_000 - hold, hold));
    // Arrange what the crash leaves: the hold and its pending row, no ride. (Nobody is
    // online, so the ride has no offers; its quote is made dead.)
    let quote_id: String = {
        let mut database = server.database().await;
        let quote_id: String = sqlx::query_scalar("SELECT quote_id FROM rides WHERE id = $1")
            .bind(ride["id"].as_str().unwrap())
            .fetch_one(&mut database)
            .await
            .unwrap();
        sqlx::query("DELETE FROM rides WHERE id = $1")
            .bind(ride["id"].as_str().unwrap())
            .execute(&mut database)
            .await
            .unwrap();
        sqlx::query("INSERT INTO ride_holds (quote_id, rider_id, quote_expires_at, created_at) VALUES ($1, $2, 0, 0)")
            .bind(&quote_id)
            .bind(&rider_id)
            .execute(&mut database)
            .await
            .unwrap();
        quote_id
    };
    // Released, and the pending-hold row gone with it.
    let mut database = server.database().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM ride_holds").fetch_one(&mut database).await.unwrap();
        if pending == 0 && balance(&server, &rider).await == (10_000, 0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the stranded hold was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The quote's hold is spent: asking again holds nothing and opens nothing.
    server
        .post("/api/v1/rides", Some(&rider), json!({"quote_id": quote_id}))
        .await
        .assert_problem(409, "quote_expired");
    assert_eq!(balance(&server, &rider).await, (10_000, 0));
}

/// Before the one-open-ride index, the race could leave a rider with two open rides; the
/// migration that adds the index keeps the oldest and cancels the rest at no charge (their
/// holds are released by the dispatcher's settlement sweep), instead of failing start-up.
async fn a_database_where_the_race_already_happened_migrates_keeping_each_riders_oldest_open_ride(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = support::fresh_database(db, dir.path()).await;
    let store = plaza_store::Store::connect_with(&url, 4, plaza_store::SqliteSync::Full).await.unwrap();
    let all = plaza_server::app::migrations();
    let before: Vec<_> = all.iter().filter(|m| !(m.service == "rides" && m.version >= 2)).cloned().collect();
    store.migrate(&before).await.unwrap();
    for (id, rider, status, created_at) in [
        ("r1", "ann", "requested", 2),
        ("r2", "ann", "driver_assigned", 1),
        ("r3", "ann", "requested", 3),
        ("r4", "bob", "requested", 5),
        ("r5", "bob", "completed", 1),
    ] {
        sqlx::query(
            "INSERT INTO rides (id, quote_id, rider_id, status, pickup_lat, pickup_lng, dropoff_lat, dropoff_lng,
                 fare_amount, currency, distance_m, duration_s, surge_milli, payment_intent_id, hold_amount,
                 payment_status, created_at, updated_at)
             VALUES ($1, $1, $2, $3, 1.3, 103.8, 1.33, 103.82, 1000, 'USD', 5000, 700, 1000, $1, 1200, 'held', $4, $4)",
        )
        .bind(id)
        .bind(rider)
        .bind(status)
        .bind(created_at as i64)
        .execute(store.write())
        .await
        .unwrap();
    }
    store.migrate(&all).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, status FROM rides ORDER BY id").fetch_all(store.write()).await.unwrap();
    let statuses: Vec<(&str, &str)> = rows.iter().map(|(id, status)| (id.as_str(), status.as_str())).collect();
    assert_eq!(
        statuses,
        [("r1", "cancelled"), ("r2", "driver_assigned"), ("r3", "cancelled"), ("r4", "requested"), ("r5", "completed")]
    );
    store.close().await;
}

async fn expired_quotes_are_pruned_after_their_retention_and_then_unknown(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.rides.batch_interval = Duration::from_millis(50);
        config.rides.quote_ttl = Duration::from_millis(300);
        config.rides.quote_retention = Duration::from_millis(300);
    })
    .await;
    let (rider, _) = server.register("rider").await;
    topup(&server, &rider, 10_000).await;
    let quote_id = quote(&server, &rider).await["id"].as_str().unwrap().to_string();
    let mut database = server.database().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ride_quotes WHERE id = $1")
            .bind(&quote_id)
            .fetch_one(&mut database)
            .await
            .unwrap();
        if kept == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the expired quote was never pruned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = server.post("/api/v1/rides", Some(&rider), json!({"quote_id": quote_id})).await;
    reply.assert_problem(404, "quote_not_found");
    // Nothing was held for it.
    assert_eq!(balance(&server, &rider).await, (10_000, 0));
}

/// The ride's trip ends in the database without the trip-end notice reaching the driver's
/// node (a bus that lost it, a node that was down): what `transition` announces is skipped.
pub(crate) async fn end_trip_unannounced(server: &TestServer, ride_id: &str) {
    server.execute_sql("UPDATE rides SET status = 'cancelled', cancelled_by = 'rider' WHERE id = $1", &[ride_id]).await;
}

/// The driver moves and then sends the rider a chat message; returns the frames the rider
/// receives up to that message. Both go out on the rider's one subject in this order, so a
/// `driver.location` the move sent comes before the message.
pub(crate) async fn move_then_message(
    server: &TestServer,
    driver: &str,
    conversation: &str,
    rider_socket: &mut Socket,
    step: u32,
) -> Vec<Value> {
    let lat = 1.3005 - f64::from(step) * 0.00001;
    let moved = server.post("/api/v1/rides/driver/location", Some(driver), json!({"lat": lat, "lng": 103.8})).await;
    assert_eq!(moved.status, 204, "{}", moved.text);
    let marker = format!("marker {step}");
    server.send_text(driver, conversation, &format!("m{step}"), &marker).await;
    let mut frames = Vec::new();
    loop {
        let frame = rider_socket.next_frame().await;
        let done = frame["type"] == "message.new" && frame["data"]["body"]["text"] == marker.as_str();
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

pub(crate) fn has_location(frames: &[Value]) -> bool {
    frames.iter().any(|frame| frame["type"] == "driver.location")
}

/// A server that checks its trips against the database every `trip_check_interval`, and on
/// it an assigned trip whose driver's locations reach the rider (checked).
struct StreamingTrip {
    server: TestServer,
    driver: String,
    rider_socket: Socket,
    ride_id: String,
    /// The conversation between driver and rider, used as a marker.
    conversation: String,
}

async fn streaming_trip(db: Db, trip_check_interval: Duration) -> StreamingTrip {
    let server = TestServer::start_with(db, |config| {
        config.rides.batch_interval = Duration::from_millis(50);
        config.rides.index_limits.update_interval_min_ms = 0;
        config.rides.trip_check_interval = trip_check_interval;
    })
    .await;
    let [(rider, rider_id), (driver, _)] = server.register_all(["rider", "driver"]).await;
    topup(&server, &rider, 10_000).await;
    let (mut rider_socket, _) = server.socket(&rider).await;
    let (mut driver_socket, _) = server.socket(&driver).await;
    go_online(&server, &driver, (1.3005, 103.8000)).await;
    let ride_id = assigned_ride(&server, &rider, &driver, &mut driver_socket).await;
    let conversation = server.conversation(&driver, "direct", &[&rider_id]).await;
    let frames = move_then_message(&server, &driver, &conversation, &mut rider_socket, 0).await;
    assert!(has_location(&frames), "the trip streams the driver's location: {frames:?}");
    StreamingTrip { server, driver, rider_socket, ride_id, conversation }
}

/// Privacy: a node that missed a trip's end must not go on sending the driver's position to
/// the former rider. Going online again checks the trip against the database.
async fn a_driver_back_online_after_an_unannounced_trip_end_streams_nothing_to_the_former_rider(db: Db) {
    // Only going online may repair it here.
    let StreamingTrip { server, driver, mut rider_socket, ride_id, conversation } =
        streaming_trip(db, Duration::from_secs(3600)).await;

    end_trip_unannounced(&server, &ride_id).await;
    go_online(&server, &driver, (1.3005, 103.8000)).await;
    let frames = move_then_message(&server, &driver, &conversation, &mut rider_socket, 1).await;
    assert!(!has_location(&frames), "the former rider still sees the driver: {frames:?}");
}

/// The same without the driver going online: the node's periodic trip check (every
/// `trip_check_interval`, here 50 ms; also run whenever the bus says notices were lost)
/// stops the streaming.
async fn an_unannounced_trip_end_stops_the_streaming_at_the_next_trip_check(db: Db) {
    let StreamingTrip { server, driver, mut rider_socket, ride_id, conversation } =
        streaming_trip(db, Duration::from_millis(50)).await;

    end_trip_unannounced(&server, &ride_id).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut step = 1;
    while has_location(&move_then_message(&server, &driver, &conversation, &mut rider_socket, step).await) {
        assert!(tokio::time::Instant::now() < deadline, "the former rider kept receiving the driver's location");
        step += 1;
    }
    // And it stays stopped.
    let frames = move_then_message(&server, &driver, &conversation, &mut rider_socket, step + 1).await;
    assert!(!has_location(&frames), "{frames:?}");
}

/// A driver whose `offline` notice was lost is still in the index; with one candidate per
/// request, the nearest such driver must not hide an online driver further away.
async fn a_driver_the_database_has_offline_takes_no_candidate_slot_from_an_online_one_further_away(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.rides.batch_interval = Duration::from_millis(50);
        config.rides.candidates_per_request = 1;
    })
    .await;
    let [(rider, _), (stale, stale_id), (far, far_id)] = server.register_all(["rider", "stale", "far"]).await;
    topup(&server, &rider, 10_000).await;
    let (mut far_socket, _) = server.socket(&far).await;
    go_online(&server, &stale, (1.3001, 103.8000)).await;
    go_online(&server, &far, (1.3100, 103.8000)).await;
    // What a lost `offline` notice leaves: offline in the database, still in the index.
    set_offline_in_database(&server, &stale_id).await;

    let ride = request_ride(&server, &rider).await;
    let ride_id = ride["id"].as_str().unwrap();
    let offer = next_offer(&mut far_socket).await;
    assert_eq!(offer["ride_id"], ride_id);
    let accepted = act(&server, &far, ride_id, "accept").await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(accepted.body["driver_id"], far_id);
    act(&server, &stale, ride_id, "accept").await.assert_problem(404, "ride_not_found");
}

/// The services of a node in this test's process, on `server`'s database and a bus of its
/// own (so it shares nothing in memory with `server`).
async fn in_process_services(
    server: &TestServer,
    adjust: impl FnOnce(&mut plaza_server::config::Config),
) -> (plaza_server::app::Services, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = plaza_server::config::Config::for_test(dir.path(), Some(server.database_url.clone()));
    adjust(&mut config);
    let store = plaza_server::app::open_store(&config).await.unwrap();
    (plaza_server::app::services(store, plaza_bus::Bus::in_process(), &config).unwrap(), dir)
}

async fn pending_holds(server: &TestServer, quote_id: &str) -> i64 {
    server.query_i64("SELECT COUNT(*) FROM ride_holds WHERE quote_id = $1", &[quote_id]).await
}

/// A request records its hold as pending before asking the wallet. Only the wallet's
/// refusal proves nothing was held and forgets the record; after any other failure (here
/// the hold's key already holds another amount) a hold may exist, and the sweep must find
/// it once the quote is dead, and release it.
async fn a_hold_that_failed_other_than_by_a_refusal_is_kept_for_the_sweep_which_releases_it(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.rides.batch_interval = Duration::from_millis(50);
        config.rides.stranded_hold_grace = Duration::from_millis(0);
    })
    .await;
    let (broke, _) = server.register("broke").await;
    let refused = quote(&server, &broke).await["id"].as_str().unwrap().to_string();
    server
        .post("/api/v1/rides", Some(&broke), json!({"quote_id": refused}))
        .await
        .assert_problem(402, "insufficient_funds");
    assert_eq!(pending_holds(&server, &refused).await, 0, "a refused hold leaves nothing pending");

    let (rider, rider_id) = server.register("rider").await;
    topup(&server, &rider, 10_000).await;
    let quote_id = quote(&server, &rider).await["id"].as_str().unwrap().to_string();
    // Something already holds 1 under this quote's hold key (what a lost reply could leave).
    let (services, _dir) = in_process_services(&server, |_| {}).await;
    let key = plaza_wallet::model::IdempotencyKey::parse(&format!("ride-hold-{quote_id}")).unwrap();
    services
        .wallet
        .create_payment_intent(&rider_id, services.wallet.money(1, "USD").unwrap(), "ride", Some(&key))
        .await
        .unwrap();
    assert_eq!(balance(&server, &rider).await, (9_999, 1));
    let failed = server.post("/api/v1/rides", Some(&rider), json!({"quote_id": quote_id})).await;
    assert!(failed.status >= 400, "{}", failed.text);
    assert_eq!(pending_holds(&server, &quote_id).await, 1, "a hold that failed otherwise stays pending");

    // Once the quote is dead, the sweep releases what the key holds.
    server.execute_sql("UPDATE ride_holds SET quote_expires_at = 0 WHERE quote_id = $1", &[&quote_id]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while balance(&server, &rider).await != (10_000, 0) || pending_holds(&server, &quote_id).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the pending hold was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn dispatch_rounds(server: &TestServer, ride_id: &str) -> i64 {
    server.query_i64("SELECT dispatch_rounds FROM rides WHERE id = $1", &[ride_id]).await
}

/// A batch woken early by a decline only hands requests on: a request nobody can reach
/// counts no round towards `no_driver` in it, and the housekeeping (here: a stranded hold's
/// pending row) waits for the batches on the clock. Batches here come an hour apart, so
/// every batch after the first is a woken one, and the dispatching node (in this process)
/// is stepped by hand. Giving the lease back waits for the batch under way, and no batch
/// takes the lease again afterwards.
async fn a_batch_woken_by_a_decline_counts_no_round_and_does_no_housekeeping_and_none_runs_after_the_lease_is_given_back(
    db: Db,
) {
    let hour = Duration::from_secs(3600);
    // The server's own dispatcher runs one batch at start, whose lease lapses at once.
    let server = TestServer::start_with(db, |config| {
        config.rides.batch_interval = hour;
        config.rides.lease_ttl = Duration::from_millis(1);
    })
    .await;
    let [(rider, _), (lonely, _)] = server.register_all(["rider", "lonely"]).await;
    server.register("near").await;
    server.register("far").await;
    topup(&server, &rider, 10_000).await;
    topup(&server, &lonely, 10_000).await;
    let (services, _dir) = in_process_services(&server, |config| {
        config.rides.batch_interval = hour;
        config.rides.lease_ttl = hour;
        config.rides.dispatch_rounds_max = 1_000;
    })
    .await;
    let rides = services.rides.clone();
    let user = |name: &'static str| {
        let accounts = services.accounts.clone();
        async move { accounts.user_by_username(name).await.unwrap() }
    };
    let (near, far) = (user("near").await, user("far").await);
    let vehicle = plaza_rides::Vehicle::parse("SGX 1234", "Toyota Prius", 4).unwrap();
    rides.go_online(&near, vehicle.clone(), plaza_rides::LatLng::new(1.3001, 103.8).unwrap()).await.unwrap();
    rides.go_online(&far, vehicle, plaza_rides::LatLng::new(1.3100, 103.8).unwrap()).await.unwrap();
    let reachable = request_ride(&server, &rider).await["id"].as_str().unwrap().to_string();
    // A pickup some 20 km from every driver.
    let far_away = server
        .post(
            "/api/v1/rides/quotes",
            Some(&lonely),
            json!({"pickup": {"lat": 1.45, "lng": 103.95}, "dropoff": {"lat": 1.46, "lng": 103.96}}),
        )
        .await;
    let unreachable = server.post("/api/v1/rides", Some(&lonely), json!({"quote_id": far_away.body["id"]})).await;
    assert_eq!(unreachable.status, 201, "{}", unreachable.text);
    let unreachable = unreachable.body["id"].as_str().unwrap().to_string();

    let offered_to = |driver: plaza_accounts::User| {
        let rides = rides.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(ride) = rides.driver_work(&driver).await.unwrap() {
                    return ride.id;
                }
                assert!(tokio::time::Instant::now() < deadline, "no offer reached {}", driver.username);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // The dispatcher's first batch is on the clock: it offers the near driver the ride and
    // counts a round for the ride nobody can reach. One more batch on the clock after it
    // (which waits for the first to end) leaves nothing under way.
    let dispatcher = tokio::spawn(rides.clone().run_dispatcher());
    assert_eq!(offered_to(near.clone()).await, reachable);
    rides.dispatch_once().await.unwrap();
    let rounds = dispatch_rounds(&server, &unreachable).await;
    assert!(rounds >= 1, "a batch on the clock counts a round for a request nobody can reach");
    let stranded =
        "INSERT INTO ride_holds (quote_id, rider_id, quote_expires_at, created_at) VALUES ('stranded', $1, 0, 0)";
    server.execute_sql(stranded, &[&near.id]).await;

    // The decline wakes a batch, which hands the ride on to the far driver...
    rides.decline(&near, &reachable).await.unwrap();
    assert_eq!(offered_to(far.clone()).await, reachable);
    // ...and, once it has ended, had counted nothing and swept nothing.
    assert!(rides.release_lease().await.unwrap(), "the node held the lease");
    assert_eq!(dispatch_rounds(&server, &unreachable).await, rounds);
    assert_eq!(pending_holds(&server, "stranded").await, 1);
    let lonely_sees = server.get(&format!("/api/v1/rides/{unreachable}"), Some(&lonely)).await;
    assert_eq!(lonely_sees.body["status"], "requested", "{}", lonely_sees.text);

    // The lease given back stays given back.
    rides.dispatch_once().await.unwrap();
    let mut database = server.database().await;
    let leases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ride_leases").fetch_one(&mut database).await.unwrap();
    assert_eq!(leases, 0, "a batch after release_lease took the lease again");
    dispatcher.abort();
}
