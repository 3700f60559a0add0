//! Two `plaza serve` nodes sharing one PostgreSQL database and one NATS server (started by
//! `scripts/test`, named by `PLAZA_TEST_NATS_URL`). PostgreSQL only: two processes cannot
//! share one SQLite database, and every single-node behaviour is tested on both engines in
//! the service's own file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::process::ChildNode;
use crate::support::rides::{
    act, balance, drive_trip, fast_driving, go_online, near_and_far, next_offer, offered_ride, request_ride,
    wait_for_eta, wait_ride, NearAndFar, OfferedRide,
};
use crate::support::{two_nodes, Cluster, TestServer};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_through_one_node_reaches_a_socket_on_the_other_and_a_moved_client_misses_nothing() {
    let (node_a, node_b) = two_nodes().await;
    let [(ann, _), (bob, bob_id)] = node_a.register_all(["cluster_ann", "cluster_bob"]).await;
    let conversation = node_a.conversation(&ann, "direct", &[&bob_id]).await;

    let (mut on_b, _) = node_b.socket(&bob).await;
    node_a.send_text(&ann, &conversation, "x1", "across nodes").await;
    // Delivery across nodes is immediate; the wait is only a bound for a loaded machine.
    let frame = on_b.next_frame().await;
    assert_eq!(frame["type"], "message.new");
    assert_eq!(frame["data"]["body"]["text"], "across nodes");
    let kept_cursor = frame["cursor"].as_str().unwrap().to_string();

    // Typing indicators cross nodes too.
    let (mut ann_on_a, _) = node_a.socket(&ann).await;
    on_b.send(json!({"type": "typing", "data": {"conversation_id": conversation}})).await;
    assert_eq!(ann_on_a.next_frame().await["type"], "typing");

    // Bob moves from B to A; meanwhile messages go through both nodes.
    on_b.close().await;
    node_b.send_text(&ann, &conversation, "x2", "two").await;
    node_a.send_text(&ann, &conversation, "x3", "three").await;
    node_b.send_text(&ann, &conversation, "x4", "four").await;
    let (mut on_a, _) = node_a.socket_raw(&bob).await;
    on_a.send(json!({"type": "resume", "data": {"cursor": kept_cursor}})).await;
    let frames = on_a.frames_until("resumed").await;
    let seqs: Vec<i64> =
        frames.iter().filter(|f| f["type"] == "message.new").map(|f| f["data"]["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [2, 3, 4], "nothing missed, nothing repeated");
    node_b.send_text(&ann, &conversation, "x5", "live from B").await;
    let live = on_a.next_frame().await;
    assert_eq!(live["data"]["seq"], 5);
    assert!(on_a.try_next_frame(Duration::from_millis(300)).await.is_none(), "exactly once");
}

/// Sessions are cached per node; a logout through one node must end the session on the
/// other at once, not when the other's cache entry expires (5 minutes here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_through_one_node_ends_the_session_on_the_other() {
    let cluster = Cluster::new().await;
    let configure = |config: &mut plaza_server::config::Config| config.session_cache = Duration::from_secs(300);
    let node_a = cluster.node(configure).await;
    let node_b = cluster.node(configure).await;
    let (token, _) = node_a.register("revoked_ann").await;
    assert_eq!(node_b.get("/api/v1/me", Some(&token)).await.status, 200, "node B now caches the session");
    assert_eq!(node_a.post("/api/v1/auth/logout", Some(&token), json!({})).await.status, 204);
    let mut refused = false;
    for _ in 0..50 {
        if node_b.get("/api/v1/me", Some(&token)).await.status == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "node B still honours a session that node A ended");
}

// ---- rides across nodes ----

/// Two nodes tuned for rides. Node A starts first and holds the dispatch lease before B
/// starts, so B only ever dispatches by taking the lease over. Returns A's lease identity.
async fn two_ride_nodes(batch: Duration, lease: Duration, offer_timeout: Duration) -> (TestServer, TestServer, String) {
    let cluster = Cluster::new().await;
    let configure = |config: &mut plaza_server::config::Config| {
        config.rides.batch_interval = batch;
        config.rides.lease_ttl = lease;
        config.rides.offer_timeout = offer_timeout;
        config.rides.dispatch_rounds_max = 1_000_000;
        fast_driving(config);
    };
    let node_a = cluster.node(configure).await;
    let holder = wait_lease_holder(&node_a, |_| true).await;
    let node_b = cluster.node(configure).await;
    (node_a, node_b, holder)
}

/// The node id in the region's lease row, once `accept` likes it (at most 20 s).
async fn wait_lease_holder(node: &TestServer, accept: impl Fn(&str) -> bool) -> String {
    let mut database = node.database().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let holder: Option<String> = sqlx::query_scalar("SELECT holder FROM ride_leases WHERE region = 'default'")
            .fetch_optional(&mut database)
            .await
            .unwrap();
        if let Some(holder) = holder.filter(|holder| accept(holder)) {
            return holder;
        }
        assert!(tokio::time::Instant::now() < deadline, "the lease never went where expected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The rider asks on node A, which dispatches; the driver is connected to node B only.
/// A sees the driver through the replicated index, the offer reaches the driver's socket on
/// B, the accept goes through A and the driver's locations through B still reach the rider
/// on A, and the money moves once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rider_on_one_node_rides_with_a_driver_connected_to_the_other() {
    let (node_a, node_b, holder) =
        two_ride_nodes(Duration::from_millis(50), Duration::from_secs(2), Duration::from_secs(15)).await;
    let OfferedRide {
        rider,
        driver,
        driver_id,
        rider_socket: mut rider_on_a,
        driver_socket: mut driver_on_b,
        ride,
        ..
    } = offered_ride(&node_a, "cross_rider", &node_b, "cross_driver").await;
    let ride_id = ride["id"].as_str().unwrap();
    let fare = ride["fare"]["amount"].as_i64().unwrap();
    let accepted = act(&node_a, &driver, ride_id, "accept").await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(accepted.body["driver_id"], driver_id);

    // Locations sent to B stream to the rider on A once B has heard (over the bus) whose
    // trip this is; resend until one arrives, as a driver's app does anyway.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut step = 0;
    let location = loop {
        step += 1;
        let lat = 1.3005 - f64::from(step) * 0.00001;
        driver_on_b.send(json!({"type": "driver.location", "data": {"lat": lat, "lng": 103.8}})).await;
        if let Some(frame) = rider_on_a.try_next_frame(Duration::from_millis(300)).await {
            if frame["type"] == "driver.location" {
                break frame;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no driver.location reached the rider's node");
    };
    assert_eq!(location["data"]["ride_id"], ride_id);
    assert_eq!(location["data"]["driver_id"], driver_id);

    drive_trip(&node_b, &driver, ride_id, (1.3005 - f64::from(step) * 0.00001, 103.8)).await;
    wait_ride(&node_a, &rider, ride_id, |r| r["payment_status"] == "captured").await;
    assert_eq!(balance(&node_a, &rider).await, (10_000 - fare, 0));
    assert_eq!(balance(&node_b, &driver).await, (fare - fare * 2000 / 10_000, 0));
    assert_eq!(wait_lease_holder(&node_b, |_| true).await, holder, "node A dispatched throughout");
}

/// A decline through node B wakes the dispatcher on node A at once: with 4 s between
/// batches, the next driver's offer comes well before the next batch would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_on_one_node_hands_the_ride_on_at_once_from_the_other() {
    let (node_a, node_b, _) =
        two_ride_nodes(Duration::from_secs(4), Duration::from_secs(12), Duration::from_secs(15)).await;
    let NearAndFar { rider, near, near_socket: mut near_on_b, far_socket: mut far_on_b, .. } =
        near_and_far(&node_a, &node_b, ["wake_rider", "wake_near", "wake_far"]).await;
    let ride = request_ride(&node_a, &rider).await;
    let ride_id = ride["id"].as_str().unwrap();
    // The first offer may wait for the next batch (up to 4 s).
    let offer = near_on_b.frames_until("ride.offer").await.pop().unwrap();
    assert_eq!(offer["data"]["ride_id"], ride_id);
    let declined_at = tokio::time::Instant::now();
    assert_eq!(act(&node_b, &near, ride_id, "decline").await.status, 200);
    let offer = far_on_b.try_next_frame(Duration::from_secs(2)).await;
    let offer = offer.expect("the next driver is offered the ride within 2 s of the decline, not at the next batch");
    assert_eq!(offer["type"], "ride.offer", "{offer}");
    assert_eq!(offer["data"]["ride_id"], ride_id);
    assert!(declined_at.elapsed() < Duration::from_secs(2));
}

/// The dispatching node is SIGKILLed while a request is open and offered to a driver who
/// does not answer. After the lease's TTL the other node takes the lease over, expires the
/// unanswered offer, offers the ride to the next driver from its own copy of the index,
/// and the trip completes with the money moved once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_dispatching_node_is_killed_the_other_takes_the_lease_and_dispatches_the_open_request() {
    let cluster = Cluster::new().await;
    let mut node_a = ChildNode::start(&[
        ("PLAZA_DATABASE_URL", cluster.database_url.clone()),
        ("PLAZA_NATS_URL", cluster.nats_url.clone()),
        ("PLAZA_RIDES_BATCH_MS", "50".into()),
        ("PLAZA_RIDES_LEASE_MS", "2000".into()),
        ("PLAZA_RIDES_OFFER_TIMEOUT_MS", "1500".into()),
        ("PLAZA_RIDES_DISPATCH_ROUNDS", "100".into()),
    ])
    .await;
    let node_b = cluster
        .node(|config| {
            config.rides.batch_interval = Duration::from_millis(50);
            config.rides.lease_ttl = Duration::from_secs(2);
            config.rides.offer_timeout = Duration::from_millis(1500);
            config.rides.dispatch_rounds_max = 100;
            fast_driving(config);
        })
        .await;
    // The child started first, so it holds the lease; node B only waits.
    let holder_a = wait_lease_holder(&node_b, |_| true).await;
    // The silent driver is nearer, so offered the ride first.
    let NearAndFar {
        rider,
        near: silent,
        near_socket: mut silent_on_b,
        far: driver,
        far_id: driver_id,
        far_socket: mut driver_on_b,
        ..
    } = near_and_far(&node_b, &node_b, ["takeover_rider", "takeover_silent", "takeover_driver"]).await;

    let ride = request_ride(&node_b, &rider).await;
    let ride_id = ride["id"].as_str().unwrap();
    let fare = ride["fare"]["amount"].as_i64().unwrap();
    let offer = next_offer(&mut silent_on_b).await;
    assert_eq!(offer["ride_id"], ride_id, "node A offered it to the nearest driver, connected to B");
    assert_eq!(wait_lease_holder(&node_b, |_| true).await, holder_a, "node A dispatched it");
    node_a.kill();

    let holder_b = wait_lease_holder(&node_b, |holder| holder != holder_a).await;
    assert_ne!(holder_b, holder_a);
    let offer = next_offer(&mut driver_on_b).await;
    assert_eq!(offer["ride_id"], ride_id, "node B dispatched the open request after taking the lease");
    let accepted = act(&node_b, &driver, ride_id, "accept").await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(accepted.body["driver_id"], driver_id);
    drive_trip(&node_b, &driver, ride_id, (1.3100, 103.8000)).await;
    wait_ride(&node_b, &rider, ride_id, |r| r["payment_status"] == "captured").await;
    assert_eq!(balance(&node_b, &rider).await, (10_000 - fare, 0));
    assert_eq!(balance(&node_b, &driver).await, (fare - fare * 2000 / 10_000, 0));
    act(&node_b, &silent, ride_id, "accept").await.assert_problem(409, "invalid_transition");
}

/// Surge weighs the quotes of every node: demand quoted through node A raises the price
/// node B quotes for the same area. (A pickup of its own, away from the other tests' area:
/// they share the NATS server, and with it the announcements.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_through_one_node_count_as_demand_for_surge_on_the_other() {
    let (node_a, node_b, _) =
        two_ride_nodes(Duration::from_secs(2), Duration::from_secs(10), Duration::from_secs(15)).await;
    let trip = json!({"pickup": {"lat": 1.4100, "lng": 103.9500}, "dropoff": {"lat": 1.4300, "lng": 103.9700}});
    let (rider_a, _) = node_a.register("demand_on_a").await;
    for _ in 0..3 {
        let quote = node_a.post("/api/v1/rides/quotes", Some(&rider_a), trip.clone()).await;
        assert_eq!(quote.status, 201, "{}", quote.text);
    }
    // No driver is online there, so each quote is one more rider per (at least one) car.
    // Node A announces its quotes' demand and its drivers on one bus subject, in order, so
    // once node B sees a driver who went online through A after those quotes, B has heard
    // the quotes too. The driver waits far from the quotes' area (outside the search radius
    // and the surge area), and B's look-out quotes count as demand only there.
    let sentinel = (1.4700, 103.8700);
    let (driver_a, _) = node_a.register("sentinel_on_a").await;
    go_online(&node_a, &driver_a, sentinel).await;
    let (rider_b, _) = node_b.register("demand_on_b").await;
    let look_out =
        json!({"pickup": {"lat": sentinel.0, "lng": sentinel.1}, "dropoff": {"lat": 1.4800, "lng": 103.8800}});
    wait_for_eta(&node_b, &rider_b, &look_out).await;
    let quote = node_b.post("/api/v1/rides/quotes", Some(&rider_b), trip).await;
    assert_eq!(quote.status, 201, "{}", quote.text);
    let surge = quote.body["surge"].as_f64().unwrap();
    assert!(surge >= 2.0, "node B priced four quotes in the area as {surge}: it did not hear of A's three");
}

/// A group opened through node A is joined through node B and completes; racers for its
/// last seat, half on each node, leave exactly one winner; and with both nodes running the
/// shop's job, a group whose window ends is failed once, each hold released once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_buys_span_two_nodes_with_one_winner_of_the_last_seat_and_one_expiry() {
    use crate::shop::{add_product, assert_ledger_sound, open_shop, usd};
    use crate::shop_groups::group_order;
    use crate::support::topup;
    let cluster = Cluster::new().await;
    let configure = |config: &mut plaza_server::config::Config| {
        config.shop.group_window = Duration::from_secs(4);
        config.shop.job_interval = Duration::from_millis(50);
    };
    let node_a = cluster.node(configure).await;
    let node_b = cluster.node(configure).await;
    let (merchant, _) = node_a.register("group_merchant").await;
    let shop_id = open_shop(&node_a, &merchant, "Two nodes").await;
    let tea = json!({"title": "Tea", "group_size": 3,
                     "skus": [{"name": "tin", "price": usd(1000), "group_price": usd(700), "stock": 100}]});
    let product = add_product(&node_a, &merchant, &shop_id, tea).await;
    let sku_id = product.body["skus"][0]["id"].as_str().unwrap().to_string();
    let mut buyers = Vec::new();
    for index in 0..10 {
        let node = if index % 2 == 0 { &node_a } else { &node_b };
        let (token, _) = node.register(&format!("group_buyer{index}")).await;
        topup(node, &token, 10_000).await;
        buyers.push(token);
    }
    let opened = group_order(&node_a, &buyers[0], &sku_id, json!({"mode": "open"})).await;
    assert_eq!(opened.status, 201, "{}", opened.text);
    let group_id = opened.body["group_buy_id"].as_str().unwrap().to_string();
    let (mut leader_on_a, _) = node_a.socket(&buyers[0]).await;
    let joined = group_order(&node_b, &buyers[1], &sku_id, json!({"mode": "join", "group_id": group_id})).await;
    assert_eq!(joined.body["status"], "grouping", "{}", joined.text);
    assert_eq!(leader_on_a.frames_until("group_buy.updated").await.last().unwrap()["data"]["seats_left"], 1);
    let racers = buyers[2..].iter().enumerate().map(|(index, token)| {
        let node = if index % 2 == 0 { &node_a } else { &node_b };
        group_order(node, token, &sku_id, json!({"mode": "join", "group_id": group_id}))
    });
    let replies = futures_util::future::join_all(racers).await;
    assert_eq!(replies.iter().filter(|reply| reply.status == 201).count(), 1, "one winner across both nodes");
    for reply in replies.iter().filter(|reply| reply.status != 201) {
        reply.assert_problem(409, "group_full");
    }
    let leader_order =
        node_b.get(&format!("/api/v1/orders/{}", opened.body["id"].as_str().unwrap()), Some(&buyers[0])).await;
    assert_eq!(leader_order.body["status"], "paid");
    let held: i64 = {
        let mut total = 0;
        for token in &buyers[2..] {
            total += balance(&node_a, token).await.1;
        }
        total
    };
    assert_eq!(held, 700, "only the winner holds money");

    // A second group, never filled: both nodes run the job, it fails once.
    let lonely = group_order(&node_b, &buyers[3], &sku_id, json!({"mode": "open"})).await;
    assert_eq!(lonely.status, 201, "{}", lonely.text);
    let lonely_id = lonely.body["id"].as_str().unwrap().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = node_a.get(&format!("/api/v1/orders/{lonely_id}"), Some(&buyers[3])).await;
        if seen.body["status"] == "cancelled" && seen.body["payment_status"] == "released" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never failed: {}", seen.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = balance(&node_a, &buyers[3]).await;
    assert_eq!(after.0 + after.1, 10_000, "released once, never twice");
    assert_ledger_sound(&node_a).await;
}

/// Each node searches its own in-memory index: a product written through one node is found
/// through the other at once, an edit or an archiving there too, and products written
/// concurrently through both nodes are all found through each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_written_through_one_node_is_searched_through_the_other_at_once() {
    use crate::shop::{open_shop, search, simple_product};
    let (node_a, node_b) = two_nodes().await;
    let (merchant, _) = node_a.register("search_merchant").await;
    let (buyer, _) = node_b.register("search_buyer").await;
    let shop_id = open_shop(&node_a, &merchant, "Tea house").await;
    assert!(search(&node_b, &buyer, "oolong").await.is_empty(), "node B has loaded its index");
    let (product_id, _) = simple_product(&node_a, &merchant, &shop_id, "Oolong tea", "Roasted", 900, 5).await;
    assert_eq!(search(&node_b, &buyer, "oolong").await, ["Oolong tea"]);
    let path = format!("/api/v1/products/{product_id}");
    let edited = node_b.request("PATCH", &path, Some(&merchant), Some(json!({"title": "乌龙茶 Tieguanyin"}))).await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert!(search(&node_a, &buyer, "oolong").await.is_empty(), "node A dropped the old title");
    assert_eq!(search(&node_a, &buyer, "乌龙").await, ["乌龙茶 Tieguanyin"]);
    let archived = node_a.request("PATCH", &path, Some(&merchant), Some(json!({"status": "archived"}))).await;
    assert_eq!(archived.status, 200, "{}", archived.text);
    assert!(search(&node_b, &buyer, "tieguanyin").await.is_empty(), "node B dropped the archived product");

    let writes = (0..12).map(|n| {
        let node = if n % 2 == 0 { &node_a } else { &node_b };
        let (merchant, shop_id) = (merchant.clone(), shop_id.clone());
        async move { simple_product(node, &merchant, &shop_id, &format!("Jasmine {n}"), "", 500, 1).await }
    });
    futures_util::future::join_all(writes).await;
    for node in [&node_a, &node_b] {
        let mut found = search(node, &buyer, "jasmine").await;
        found.sort();
        let mut expected: Vec<String> = (0..12).map(|n| format!("Jasmine {n}")).collect();
        expected.sort();
        assert_eq!(found, expected);
    }
}
