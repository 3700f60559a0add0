//! The real-time gateway over real WebSockets, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use crate::support::{Db, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

on_both_databases!(
    a_message_reaches_every_device_of_every_member_with_a_cursor,
    message_send_over_the_socket_is_acked_and_bad_input_is_an_error_frame,
    sends_fired_without_waiting_are_all_acked_and_numbered_in_the_order_sent,
    resume_replays_exactly_what_was_missed_then_continues_live,
    the_events_endpoint_returns_what_the_socket_delivers,
    read_receipts_and_typing_reach_the_other_members,
    the_socket_authenticates_by_query_token_and_refuses_without_one,
    contact_requests_and_acceptances_arrive_on_the_socket,
    a_slow_consumer_is_disconnected_and_misses_nothing_after_resuming,
    a_cursor_older_than_the_retention_is_told_to_resync,
);

fn cursor(frame: &Value) -> i64 {
    frame["cursor"].as_str().unwrap().parse().unwrap()
}

async fn a_message_reaches_every_device_of_every_member_with_a_cursor(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, _), (bob, bob_id)] = server.register_all(["ws_ann", "ws_bob"]).await;
    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;
    let (mut phone, _) = server.socket(&bob).await;
    let (mut laptop, _) = server.socket(&bob).await;
    let (mut sender, _) = server.socket(&ann).await;
    server.send_text(&ann, &conversation, "hello-1", "hello bob").await;
    for socket in [&mut phone, &mut laptop, &mut sender] {
        let frame = socket.next_frame().await;
        assert_eq!(frame["type"], "message.new", "{frame}");
        assert_eq!(frame["data"]["body"]["text"], "hello bob");
        assert_eq!(frame["data"]["seq"], 1);
        assert!(cursor(&frame) > 0);
    }
    phone.send(json!({"type": "ping", "id": "p1"})).await;
    assert_eq!(phone.next_frame().await, json!({"type": "pong", "id": "p1"}));
}

async fn message_send_over_the_socket_is_acked_and_bad_input_is_an_error_frame(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, _), (bob, bob_id)] = server.register_all(["ack_ann", "ack_bob"]).await;
    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;
    let (mut socket, _) = server.socket(&ann).await;
    let send = |client_id: &str, body: Value| {
        json!({"type": "message.send", "id": format!("req-{client_id}"),
               "data": {"conversation_id": conversation, "client_id": client_id, "kind": "text", "body": body}})
    };
    socket.send(send("s1", json!({"text": "over the socket"}))).await;
    let frames = socket.frames_until("ack").await;
    let ack = frames.last().unwrap();
    assert_eq!(ack["id"], "req-s1");
    assert_eq!(ack["data"]["seq"], 1);
    // A retry returns the same message.
    socket.send(send("s1", json!({"text": "over the socket"}))).await;
    let retry = socket.frames_until("ack").await;
    assert_eq!(retry.last().unwrap()["data"]["id"], ack["data"]["id"]);

    socket.send(send("s2", json!({"text": ""}))).await;
    let error = socket.frames_until("error").await.pop().unwrap();
    assert_eq!(error["id"], "req-s2");
    assert_eq!(error["data"]["code"], "invalid_field");
    assert_eq!(error["data"]["field"], "body.text");
    socket.send(json!({"type": "message.send", "id": "x", "data": {"conversation_id": "01NOPE", "client_id": "a", "kind": "text", "body": {"text": "hi"}}})).await;
    assert_eq!(socket.frames_until("error").await.pop().unwrap()["data"]["code"], "conversation_not_found");
    socket.send(json!({"type": "dance", "id": "d"})).await;
    assert_eq!(socket.frames_until("error").await.pop().unwrap()["data"]["field"], "type");
    socket.send(json!("not a frame")).await;
    assert_eq!(socket.frames_until("error").await.pop().unwrap()["data"]["code"], "malformed_json");
    socket.send(json!({"type": "resume", "data": {"cursor": "minus one"}})).await;
    assert_eq!(socket.frames_until("error").await.pop().unwrap()["data"]["field"], "data.cursor");

    let history = server.get(&format!("/api/v1/conversations/{conversation}/messages"), Some(&bob)).await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), 1);
}

/// A socket may fire many sends before the first ack; they are stored in the order they
/// arrived, each acked once (acks may come in any order: match them by `id`).
async fn sends_fired_without_waiting_are_all_acked_and_numbered_in_the_order_sent(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, _), (_, bob_id)] = server.register_all(["burst_ann", "burst_bob"]).await;
    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;
    let (mut socket, _) = server.socket(&ann).await;
    let sends = 150;
    for n in 0..sends {
        let client_id = if n % 10 == 9 { format!("c{}", n - 1) } else { format!("c{n}") };
        socket
            .send(json!({"type": "message.send", "id": format!("req-{n}"),
                         "data": {"conversation_id": conversation, "client_id": client_id, "kind": "text",
                                  "body": {"text": format!("text {n}")}}}))
            .await;
    }
    let mut acks = std::collections::BTreeMap::new();
    while acks.len() < sends {
        let frame = socket.next_frame().await;
        if frame["type"] == "ack" {
            let n: usize = frame["id"].as_str().unwrap().trim_start_matches("req-").parse().unwrap();
            assert!(acks.insert(n, frame["data"].clone()).is_none(), "one ack per send");
        } else {
            assert_eq!(frame["type"], "message.new", "{frame}");
        }
    }
    // Every tenth send repeats the one before it; the rest are numbered in sending order.
    let mut expected_seq = 0;
    for (n, message) in &acks {
        if n % 10 == 9 {
            assert_eq!(message["id"], acks[&(n - 1)]["id"], "a repeated client_id answers with the first message");
            continue;
        }
        expected_seq += 1;
        assert_eq!(message["seq"], expected_seq, "send {n}");
        assert_eq!(message["body"]["text"], format!("text {n}"));
    }
}

async fn resume_replays_exactly_what_was_missed_then_continues_live(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, _), (bob, bob_id)] = server.register_all(["res_ann", "res_bob"]).await;
    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;
    let (mut socket, _) = server.socket(&bob).await;
    server.send_text(&ann, &conversation, "m1", "one").await;
    let first = socket.next_frame().await;
    assert_eq!(first["data"]["seq"], 1);
    let kept_cursor = first["cursor"].as_str().unwrap().to_string();
    socket.close().await;

    for n in 2..=5 {
        server.send_text(&ann, &conversation, &format!("m{n}"), &format!("number {n}")).await;
    }
    let (mut socket, hello) = server.socket_raw(&bob).await;
    let log_position: i64 = hello["data"]["cursor"].as_str().unwrap().parse().unwrap();
    assert!(log_position >= 5, "hello tells where the log stands: {hello}");
    socket.send(json!({"type": "resume", "id": "r", "data": {"cursor": kept_cursor}})).await;
    // Meanwhile, more is sent: it must come exactly once, after the replay or inside it.
    server.send_text(&ann, &conversation, "m6", "number 6").await;
    let mut seen = Vec::new();
    let mut resumed = false;
    while seen.len() < 5 || !resumed {
        let frame = socket.next_frame().await;
        match frame["type"].as_str().unwrap() {
            "message.new" => seen.push((cursor(&frame), frame["data"]["seq"].as_i64().unwrap())),
            "resumed" => resumed = true,
            other => panic!("unexpected {other}: {frame}"),
        }
    }
    let seqs: Vec<i64> = seen.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs, [2, 3, 4, 5, 6], "nothing missed, nothing repeated, in order");
    assert!(seen.windows(2).all(|pair| pair[1].0 == pair[0].0 + 1), "cursors are consecutive: {seen:?}");
    assert!(socket.try_next_frame(Duration::from_millis(300)).await.is_none(), "no duplicates afterwards");
    server.send_text(&ann, &conversation, "m7", "live again").await;
    assert_eq!(socket.next_frame().await["data"]["seq"], 7);

    // Resuming in the URL does the same at connect.
    let url = format!("{}/api/v1/ws?token={bob}&cursor={kept_cursor}", server.base.replace("http://", "ws://"));
    let (stream, _) = tokio_tungstenite::connect_async(url).await.expect("socket");
    let mut by_url = support::Socket::from_stream(stream);
    assert_eq!(by_url.next_frame().await["type"], "hello");
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(by_url.next_frame().await["data"]["seq"].as_i64().unwrap());
    }
    assert_eq!(got, [2, 3, 4, 5, 6, 7]);
}

async fn the_events_endpoint_returns_what_the_socket_delivers(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, _), (bob, bob_id)] = server.register_all(["ev_ann", "ev_bob"]).await;
    let (mut socket, _) = server.socket(&bob).await;
    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;
    for n in 1..=3 {
        server.send_text(&ann, &conversation, &format!("e{n}"), "event").await;
    }
    let mut from_socket = Vec::new();
    while from_socket.len() < 4 {
        from_socket.push(socket.next_frame().await);
    }
    let page = server.get("/api/v1/events?limit=2", Some(&bob)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let mut from_http: Vec<Value> = page.body["items"].as_array().unwrap().clone();
    let next = page.body["next_cursor"].as_str().unwrap();
    let rest = server.get(&format!("/api/v1/events?after={next}"), Some(&bob)).await;
    from_http.extend(rest.body["items"].as_array().unwrap().iter().cloned());
    assert_eq!(from_http.len(), 4);
    for (socket_frame, http_item) in from_socket.iter().zip(&from_http) {
        assert_eq!(socket_frame["type"], http_item["type"]);
        assert_eq!(socket_frame["cursor"], http_item["cursor"]);
        assert_eq!(socket_frame["data"], http_item["data"]);
    }
    assert_eq!(from_http[0]["type"], "conversation.updated");
    server.get("/api/v1/events?after=nonsense", Some(&bob)).await.assert_problem(422, "invalid_field");
    server.get("/api/v1/events", None).await.assert_problem(401, "unauthenticated");
}

async fn read_receipts_and_typing_reach_the_other_members(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, ann_id), (bob, bob_id)] = server.register_all(["rt_ann", "rt_bob"]).await;
    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;
    server.send_text(&ann, &conversation, "r1", "read me").await;
    let (mut anns, _) = server.socket(&ann).await;
    let (mut bobs, _) = server.socket(&bob).await;
    let read = server.post(&format!("/api/v1/conversations/{conversation}/read"), Some(&bob), json!({"seq": 1})).await;
    assert_eq!(read.status, 204);
    let receipt = anns.next_frame().await;
    assert_eq!(receipt["type"], "message.read");
    assert_eq!(receipt["data"], json!({"conversation_id": conversation, "user_id": bob_id, "seq": 1}));
    assert_eq!(bobs.next_frame().await["type"], "message.read", "the reader's other devices learn too");

    bobs.send(json!({"type": "typing", "data": {"conversation_id": conversation}})).await;
    let typing = anns.next_frame().await;
    assert_eq!(typing, json!({"type": "typing", "data": {"conversation_id": conversation, "user_id": bob_id}}));
    // Typing is ephemeral: never in the event log.
    let logged = server.get("/api/v1/events?limit=200", Some(&ann)).await;
    assert!(logged.body["items"].as_array().unwrap().iter().all(|event| event["type"] != "typing"));
    // …and only for members.
    let (carl, _) = server.register("rt_carl").await;
    let (mut carls, _) = server.socket(&carl).await;
    carls.send(json!({"type": "typing", "id": "t", "data": {"conversation_id": conversation}})).await;
    assert_eq!(carls.next_frame().await["data"]["code"], "conversation_not_found");
    let _ = ann_id;
}

async fn the_socket_authenticates_by_query_token_and_refuses_without_one(db: Db) {
    let server = TestServer::start(db).await;
    let (ann, _) = server.register("tok_ann").await;
    let url = format!("{}/api/v1/ws?token={ann}", server.base.replace("http://", "ws://"));
    let (mut stream, _) = tokio_tungstenite::connect_async(url).await.expect("query-token socket");
    use futures_util::StreamExt;
    let hello = stream.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("\"hello\""));

    let refused = server.get("/api/v1/ws", None).await;
    refused.assert_problem(401, "unauthenticated");
    let bad = server.get("/api/v1/ws?token=abc", None).await;
    bad.assert_problem(401, "unauthenticated");
    let url = format!("{}/api/v1/ws", server.base.replace("http://", "ws://"));
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

/// The slow-consumer counter is process-wide (one metrics recorder per process), so the
/// SQLite and PostgreSQL runs of the test take turns and each waits for the counter to move
/// past where it stood when its turn began.
static SLOW_CONSUMER_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn slow_consumer_disconnects(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("plaza_ws_slow_consumer_disconnects_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

async fn a_slow_consumer_is_disconnected_and_misses_nothing_after_resuming(db: Db) {
    let _turn = SLOW_CONSUMER_TURN.lock().await;
    let server = TestServer::start_with(db, |config| {
        config.gateway.send_queue_frames = 4;
        config.gateway.send_timeout = Duration::from_millis(200);
    })
    .await;
    let [(ann, _), (bob, bob_id)] = server.register_all(["slow_ann", "slow_bob"]).await;
    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;

    // Bob's socket has a tiny receive buffer and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.base.trim_start_matches("http://").parse().unwrap()).await.unwrap();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("{}/api/v1/ws", server.base.replace("http://", "ws://")).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {bob}").parse().unwrap());
    let (mut stalled, _) = tokio_tungstenite::client_async(request, tcp).await.expect("handshake");

    let before = slow_consumer_disconnects(&server.get("/metrics", None).await.text);
    let text = "x".repeat(4000);
    let mut sent = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let disconnected = loop {
        for _ in 0..20 {
            sent += 1;
            server.send_text(&ann, &conversation, &format!("flood-{sent}"), &text).await;
        }
        if slow_consumer_disconnects(&server.get("/metrics", None).await.text) > before {
            break true;
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
    };
    assert!(disconnected, "the server dropped the stalled socket after {sent} messages");
    // The stalled socket now ends (after whatever was buffered).
    use futures_util::StreamExt;
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        let mut frames = 0;
        while let Some(Ok(_)) = stalled.next().await {
            frames += 1;
        }
        frames
    })
    .await
    .expect("the stalled socket is closed");
    assert!(drained < sent + 2, "it did not get everything: {drained} of {sent}");

    // Resuming from the start delivers every message exactly once.
    let (mut fresh, _) = server.socket(&bob).await;
    fresh.send(json!({"type": "resume", "data": {"cursor": "0"}})).await;
    let frames = fresh.frames_until("resumed").await;
    let seqs: Vec<i64> =
        frames.iter().filter(|f| f["type"] == "message.new").map(|f| f["data"]["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=sent as i64).collect::<Vec<_>>());
}

async fn contact_requests_and_acceptances_arrive_on_the_socket(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, ann_id), (bob, bob_id)] = server.register_all(["cr_ann", "cr_bob"]).await;
    let (mut bobs, _) = server.socket(&bob).await;
    let (mut anns, _) = server.socket(&ann).await;
    assert_eq!(server.post("/api/v1/contacts", Some(&ann), json!({"user_id": bob_id})).await.status, 201);
    let request = bobs.next_frame().await;
    assert_eq!(request["type"], "contact.request", "{request}");
    assert_eq!(request["data"]["user"]["id"], ann_id.as_str());
    assert_eq!(request["data"]["status"], "incoming");
    assert_eq!(server.post("/api/v1/contacts", Some(&bob), json!({"user_id": ann_id})).await.status, 200);
    let accepted = anns.next_frame().await;
    assert_eq!(accepted["type"], "contact.accepted", "{accepted}");
    assert_eq!(accepted["data"]["user"]["id"], bob_id.as_str());
}

/// Events are kept for PLAZA_EVENT_RETENTION_DAYS (three seconds here). A client whose cursor
/// predates what is kept must be told, not silently handed a log with a hole in it.
async fn a_cursor_older_than_the_retention_is_told_to_resync(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.event_retention = Duration::from_secs(3);
        config.event_prune_interval = Duration::from_millis(100);
    })
    .await;
    let [(ann, _), (bob, bob_id)] = server.register_all(["old_ann", "old_bob"]).await;
    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;
    let (_, hello) = server.socket(&bob).await;
    let stale = hello["data"]["cursor"].as_str().unwrap().to_string();
    for n in 0..3 {
        server.send_text(&ann, &conversation, &format!("old-{n}"), "soon forgotten").await;
    }
    let mut expired = None;
    for _ in 0..200 {
        let reply = server.get(&format!("/api/v1/events?after={stale}"), Some(&bob)).await;
        if reply.status != 200 {
            expired = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    expired.expect("the old events were pruned").assert_problem(410, "cursor_expired");
    // The three were sent milliseconds apart, so a pass of the pruner can fall between
    // them: wait until none is kept.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !server.get("/api/v1/events", Some(&bob)).await.body["items"].as_array().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the old events were never all pruned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    server.send_text(&ann, &conversation, "new", "still kept").await;
    let (mut socket, _) = server.socket_raw(&bob).await;
    socket.send(json!({"type": "resume", "data": {"cursor": stale}})).await;
    let frames = socket.frames_until("resumed").await;
    let types: Vec<&str> = frames.iter().map(|frame| frame["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["resync", "message.new", "resumed"], "{frames:?}");
    assert_eq!(cursor(&frames[1]) - 1, frames[0]["data"]["cursor"].as_str().unwrap().parse::<i64>().unwrap());
    assert_eq!(frames[1]["data"]["body"]["text"], "still kept");
    // Without `after`, HTTP returns what is kept.
    let kept = server.get("/api/v1/events", Some(&bob)).await;
    assert_eq!(kept.status, 200);
    assert_eq!(kept.body["items"].as_array().unwrap().len(), 1);
}
