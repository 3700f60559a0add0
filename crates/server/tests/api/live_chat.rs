//! Live chat, hearts and counts over the one WebSocket, on SQLite and PostgreSQL, and
//! across two nodes (PostgreSQL and NATS): viewers join rooms with `live.join`, chat is
//! posted over HTTP (or `live.chat.send`) and reaches every viewer in batches, the last 50
//! messages greet a joiner, the host moderates, and `live.stats`, `live.pinned` and
//! `live.ended` arrive. Rooms are made live in the database as ingest would make them
//! (media is `live_ingest.rs`'s business).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::shop::{open_shop, simple_product};
use crate::support::{two_nodes, Db, Reply, Socket, TestServer};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

on_both_databases!(
    every_viewer_gets_every_message_in_fewer_frames_than_messages,
    a_burst_of_posts_is_kept_whole_and_once_though_written_in_shared_statements,
    a_late_joiner_gets_the_last_50_messages_from_memory_or_from_the_table,
    a_rooms_kept_chat_is_bounded,
    chat_is_limited_to_one_message_a_second_with_bursts_of_three_per_viewer_and_room,
    empty_oversized_and_malformed_chat_is_refused_with_its_field,
    the_host_mutes_unmutes_bans_and_deletes_and_nobody_else_may,
    chat_and_joins_to_unknown_unjoined_or_ended_rooms_have_their_own_codes,
    a_viewer_that_never_reads_is_dropped_while_the_others_keep_receiving,
    stats_pins_and_the_hosts_end_reach_every_viewer_and_the_room_counts_the_same,
    the_idle_end_reaches_every_viewer,
);

/// A room of a new host, made live; (host token, host id, room id).
async fn live_room(server: &TestServer, host: &str) -> (String, String, String) {
    let (token, host_id) = server.register(host).await;
    let created = server.post("/api/v1/live/rooms", Some(&token), json!({"title": "Tea tasting"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_string();
    go_live(server, &id).await;
    (token, host_id, id)
}

/// Live as a first segment would have made it, with media that never goes quiet.
async fn go_live(server: &TestServer, room_id: &str) {
    let mut database = server.database().await;
    sqlx::query("UPDATE live_rooms SET status = 'live', started_at = 1, last_media_at = 9999999999999 WHERE id = $1")
        .bind(room_id)
        .execute(&mut database)
        .await
        .unwrap();
}

/// A registered user's socket, joined to `room_id`; (token, user id, socket).
async fn viewer(server: &TestServer, name: &str, room_id: &str) -> (String, String, Socket) {
    let (token, id) = server.register(name).await;
    let (mut socket, _) = server.socket(&token).await;
    join(&mut socket, room_id).await;
    (token, id, socket)
}

/// Sends `live.join` and waits for its ack and the room's backlog (its last messages).
async fn join(socket: &mut Socket, room_id: &str) -> Vec<Value> {
    socket.send(json!({"type": "live.join", "id": "join", "data": {"room_id": room_id}})).await;
    let (mut acked, mut backlog) = (false, None);
    while !acked || backlog.is_none() {
        let frame = socket.next_frame().await;
        match frame["type"].as_str().unwrap() {
            "ack" if frame["id"] == "join" => {
                assert_eq!(frame["data"]["room_id"], room_id, "{frame}");
                acked = true;
            }
            "live.chat" if frame["data"]["room_id"] == room_id && backlog.is_none() => {
                backlog = Some(frame["data"]["messages"].as_array().unwrap().clone());
            }
            "error" => panic!("live.join refused: {frame}"),
            _ => {}
        }
    }
    backlog.unwrap()
}

/// Sends a frame and returns the error frame answering it (by its id).
async fn refused(socket: &mut Socket, frame: Value) -> Value {
    let id = frame["id"].clone();
    socket.send(frame).await;
    let answer = frame_where(socket, |f| f["id"] == id).await;
    assert_eq!(answer["type"], "error", "{answer}");
    answer["data"].clone()
}

/// The next frame `matches` accepts, within 15 s.
async fn frame_where(socket: &mut Socket, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = socket.try_next_frame(left).await.expect("the frame within 15 s");
        if matches(&frame) {
            return frame;
        }
    }
}

/// `live.chat` batches until `count` messages came; the messages and the frames.
async fn receive_chat(socket: &mut Socket, room_id: &str, count: usize) -> (Vec<Value>, usize) {
    let (mut messages, mut frames) = (Vec::new(), 0);
    while messages.len() < count {
        let frame = frame_where(socket, |f| f["type"] == "live.chat" && f["data"]["room_id"] == room_id).await;
        frames += 1;
        messages.extend(frame["data"]["messages"].as_array().unwrap().iter().cloned());
    }
    (messages, frames)
}

/// Frames within `wait`, for asserting what did not come.
async fn frames_for(socket: &mut Socket, wait: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut frames = Vec::new();
    while let Some(frame) = socket.try_next_frame(deadline.saturating_duration_since(tokio::time::Instant::now())).await
    {
        frames.push(frame);
    }
    frames
}

async fn say(server: &TestServer, token: &str, room_id: &str, text: &str) -> Reply {
    server.post(&format!("/api/v1/live/rooms/{room_id}/chat"), Some(token), json!({"text": text})).await
}

async fn moderate(server: &TestServer, token: &str, room_id: &str, body: Value) -> Reply {
    server.post(&format!("/api/v1/live/rooms/{room_id}/moderation"), Some(token), body).await
}

/// Waits until the room's `viewers` is `count` (it is recounted every second).
async fn wait_viewers(server: &TestServer, token: &str, room_id: &str, count: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let room = server.get(&format!("/api/v1/live/rooms/{room_id}"), Some(token)).await;
        if room.body["viewers"] == count {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "viewers never became {count}: {}", room.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(messages: &[Value]) -> Vec<String> {
    messages.iter().map(|message| message["id"].as_str().unwrap().to_string()).collect()
}

fn texts(messages: &[Value]) -> Vec<String> {
    messages.iter().map(|message| message["text"].as_str().unwrap().to_string()).collect()
}

async fn every_viewer_gets_every_message_in_fewer_frames_than_messages(db: Db) {
    let server = TestServer::start(db).await;
    let (_, _, room) = live_room(&server, "host").await;
    let mut viewers = Vec::new();
    for n in 0..6 {
        viewers.push(viewer(&server, &format!("viewer{n}"), &room).await);
    }
    // Every viewer says three things at once (their burst): 18 messages in a moment.
    let (server_ref, room_ref) = (&server, &room);
    let posts = viewers.iter().flat_map(|(token, user_id, _)| {
        (0..3).map(move |k| async move {
            let reply = say(server_ref, token, room_ref, &format!("  hello {k} from {user_id}  ")).await;
            assert_eq!(reply.status, 202, "{}", reply.text);
            assert_eq!(reply.body["text"], format!("hello {k} from {user_id}"), "trimmed");
            assert_eq!(reply.body["user"]["id"], user_id.as_str());
            assert!(reply.body["at"].as_str().unwrap().ends_with('Z'), "{}", reply.text);
            reply.body
        })
    });
    let sent: Vec<Value> = futures_util::future::join_all(posts).await;
    let mut orders = HashSet::new();
    for (_, _, socket) in &mut viewers {
        let (messages, frames) = receive_chat(socket, &room, sent.len()).await;
        assert_eq!(messages.len(), sent.len(), "each message once");
        for message in &sent {
            assert!(messages.contains(message), "{message} reached every viewer as its poster got it");
        }
        assert!(frames <= sent.len() / 3, "{} messages came in {frames} frames: not batched", sent.len());
        orders.insert(ids(&messages));
        let more = frames_for(socket, Duration::from_millis(600)).await;
        assert!(more.iter().all(|frame| frame["type"] != "live.chat"), "nothing twice: {more:?}");
    }
    assert_eq!(orders.len(), 1, "every viewer sees one order");
    server.stop().await;
}

async fn a_burst_of_posts_is_kept_whole_and_once_though_written_in_shared_statements(db: Db) {
    let server = TestServer::start(db).await;
    let (_, _, room) = live_room(&server, "host").await;
    let mut viewers = Vec::new();
    for n in 0..20 {
        viewers.push(viewer(&server, &format!("fan{n}"), &room).await);
    }
    // 60 posts at once: each viewer's burst of three.
    let (server_ref, room_ref) = (&server, &room);
    let posts = viewers.iter().flat_map(|(token, user_id, _)| {
        (0..3).map(move |k| async move {
            let reply = say(server_ref, token, room_ref, &format!("{k} from {user_id}")).await;
            assert_eq!(reply.status, 202, "{}", reply.text);
            reply.body["id"].as_str().unwrap().to_string()
        })
    });
    let mut sent: Vec<String> = futures_util::future::join_all(posts).await;
    sent.sort();
    let mut kept = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = server.get(&format!("/api/v1/live/rooms/{room}/chat?limit=50{cursor}"), Some(&viewers[0].0)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        kept.extend(ids(page.body["items"].as_array().unwrap()));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(kept, sent, "every accepted message kept once, in id order, and nothing else");
    // The point of the burst: rows really shared statements.
    let metrics = server.get("/metrics", None).await.text;
    let batched: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("plaza_live_chat_batched_messages_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(batched > 0.0, "no chat rows shared a batch:\n{metrics}");
    server.stop().await;
}

async fn a_late_joiner_gets_the_last_50_messages_from_memory_or_from_the_table(db: Db) {
    let server = TestServer::start_with(db, |config| config.live.chat_burst = 100).await;
    let (host, _, room) = live_room(&server, "host").await;
    let (talker, _, talker_socket) = viewer(&server, "talker", &room).await;
    for n in 1..=60 {
        assert_eq!(say(&server, &talker, &room, &format!("message {n}")).await.status, 202);
        // Ids are time-ordered to the millisecond; apart, the table's order is the sending order.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let expected: Vec<String> = (11..=60).map(|n| format!("message {n}")).collect();
    // The room's relay on this node is running: the backlog comes from its memory, once
    // the last batch went out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (late, _) = server.register("late").await;
    let (mut late_socket, _) = server.socket(&late).await;
    assert_eq!(texts(&join(&mut late_socket, &room).await), expected);
    // Nobody watching: the next joiner's backlog is read from the table.
    talker_socket.close().await;
    late_socket.close().await;
    wait_viewers(&server, &host, &room, 0).await;
    let (later, _) = server.register("later").await;
    let (mut later_socket, _) = server.socket(&later).await;
    let backlog = join(&mut later_socket, &room).await;
    assert_eq!(texts(&backlog), expected);
    assert_eq!(backlog[0]["user"]["username"], "talker", "{}", backlog[0]);
    // The replay's chat is the same table, oldest first.
    let page = server.get(&format!("/api/v1/live/rooms/{room}/chat?limit=40"), Some(&later)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.body["items"][0]["text"], "message 1");
    let next = page.body["next_cursor"].as_str().unwrap();
    let rest = server.get(&format!("/api/v1/live/rooms/{room}/chat?limit=40&cursor={next}"), Some(&later)).await;
    assert_eq!(texts(rest.body["items"].as_array().unwrap()).last().unwrap(), "message 60");
    assert!(rest.body["next_cursor"].is_null(), "{}", rest.text);
    server
        .get(&format!("/api/v1/live/rooms/{room}/chat?cursor=zz"), Some(&later))
        .await
        .assert_problem(422, "invalid_field");
    server.stop().await;
}

async fn a_rooms_kept_chat_is_bounded(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.live.chat_burst = 1000;
        config.live.chat_kept_per_room = 40;
    })
    .await;
    let (_, _, room) = live_room(&server, "host").await;
    let (talker, _, _socket) = viewer(&server, "talker", &room).await;
    for n in 1..=100 {
        assert_eq!(say(&server, &talker, &room, &format!("message {n}")).await.status, 202);
    }
    let kept = server.get(&format!("/api/v1/live/rooms/{room}/chat?limit=200"), Some(&talker)).await;
    let kept = texts(kept.body["items"].as_array().unwrap());
    assert_eq!(kept.len(), 40, "{kept:?}");
    assert!(kept.contains(&"message 100".to_string()), "the newest are kept: {kept:?}");
    assert!(!kept.contains(&"message 1".to_string()), "the oldest go: {kept:?}");
    server.stop().await;
}

async fn chat_is_limited_to_one_message_a_second_with_bursts_of_three_per_viewer_and_room(db: Db) {
    let server = TestServer::start(db).await;
    let (_, _, room) = live_room(&server, "host").await;
    let (ann, _, mut ann_socket) = viewer(&server, "ann", &room).await;
    let (bob, _, _bob_socket) = viewer(&server, "bob", &room).await;
    for n in 0..3 {
        assert_eq!(say(&server, &ann, &room, &format!("burst {n}")).await.status, 202);
    }
    let limited = say(&server, &ann, &room, "one too many").await;
    limited.assert_problem(429, "rate_limited");
    assert!(limited.header("retry-after").is_some(), "{:?}", limited.headers);
    assert_eq!(say(&server, &bob, &room, "my own bucket").await.status, 202, "per viewer");
    // Over the socket the same bucket answers with an error frame.
    let error = refused(
        &mut ann_socket,
        json!({"type": "live.chat.send", "id": "c1", "data": {"room_id": room, "text": "still too many"}}),
    )
    .await;
    assert_eq!(error["code"], "rate_limited", "{error}");
    assert_eq!(error["room_id"], room.as_str());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ann_socket
        .send(json!({"type": "live.chat.send", "id": "c2", "data": {"room_id": room, "text": "a second later"}}))
        .await;
    let ack = frame_where(&mut ann_socket, |f| f["id"] == "c2").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["data"]["text"], "a second later");
    say(&server, &ann, &room, "and again at once").await.assert_problem(429, "rate_limited");
    // The ack goes out before the batch that carries the message to everyone.
    let (messages, _) = receive_chat(&mut ann_socket, &room, 1).await;
    assert_eq!(texts(&messages), ["a second later"]);
    server.stop().await;
}

async fn empty_oversized_and_malformed_chat_is_refused_with_its_field(db: Db) {
    let server = TestServer::start(db).await;
    let (_, _, room) = live_room(&server, "host").await;
    let (ann, _, mut socket) = viewer(&server, "ann", &room).await;
    let path = format!("/api/v1/live/rooms/{room}/chat");
    for text in ["", "   ", &"x".repeat(201), "a\u{202e}b", "line\nbreak"] {
        let reply = server.post(&path, Some(&ann), json!({"text": text})).await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.body["field"], "text", "{}", reply.text);
    }
    for body in [json!({"text": 5}), json!({}), json!({"text": "hi", "extra": 1})] {
        server.post(&path, Some(&ann), body).await.assert_problem(422, "invalid_field");
    }
    server.post(&path, None, json!({"text": "hi"})).await.assert_problem(401, "unauthenticated");
    let error =
        refused(&mut socket, json!({"type": "live.chat.send", "id": "e", "data": {"room_id": room, "text": ""}})).await;
    assert_eq!((error["code"].as_str(), error["field"].as_str()), (Some("invalid_field"), Some("data.text")));
    // 200 characters (not bytes) is the most.
    let longest = say(&server, &ann, &room, &"好".repeat(200)).await;
    assert_eq!(longest.status, 202, "{}", longest.text);
    let (messages, _) = receive_chat(&mut socket, &room, 1).await;
    assert_eq!(messages[0]["text"].as_str().unwrap().chars().count(), 200);
    server.stop().await;
}

async fn the_host_mutes_unmutes_bans_and_deletes_and_nobody_else_may(db: Db) {
    let server = TestServer::start(db).await;
    let (host, host_id, room) = live_room(&server, "host").await;
    let (vic, vic_id, mut vic_socket) = viewer(&server, "vic", &room).await;
    let (olga, _, mut olga_socket) = viewer(&server, "olga", &room).await;
    let first = say(&server, &vic, &room, "first").await;
    assert_eq!(first.status, 202);

    let muted = moderate(&server, &host, &room, json!({"user_id": vic_id, "action": "mute"})).await;
    assert_eq!(muted.status, 200, "{}", muted.text);
    assert_eq!(muted.body, json!({"room_id": room, "user_id": vic_id, "muted": true, "banned": false}));
    say(&server, &vic, &room, "am I muted?").await.assert_problem(403, "muted");
    let error = refused(
        &mut vic_socket,
        json!({"type": "live.chat.send", "id": "m", "data": {"room_id": room, "text": "and here?"}}),
    )
    .await;
    assert_eq!(error["code"], "muted");
    moderate(&server, &olga, &room, json!({"user_id": vic_id, "action": "unmute"}))
        .await
        .assert_problem(403, "forbidden");
    for (body, field) in [
        (json!({"user_id": host_id, "action": "mute"}), "user_id"),
        (json!({"user_id": vic_id, "action": "kick"}), "action"),
        (json!({"user_id": vic_id}), ""),
        (json!({"user_id": vic_id, "action": "mute", "why": "rude"}), ""),
    ] {
        let reply = moderate(&server, &host, &room, body).await;
        reply.assert_problem(422, "invalid_field");
        if !field.is_empty() {
            assert_eq!(reply.body["field"], field, "{}", reply.text);
        }
    }
    moderate(&server, &host, &room, json!({"user_id": "01NOSUCHUSER", "action": "mute"}))
        .await
        .assert_problem(404, "user_not_found");
    moderate(&server, &host, "nosuchroom", json!({"user_id": vic_id, "action": "mute"}))
        .await
        .assert_problem(404, "live_room_not_found");
    let unmuted = moderate(&server, &host, &room, json!({"user_id": vic_id, "action": "unmute"})).await;
    assert_eq!(unmuted.body["muted"], false, "{}", unmuted.text);
    assert_eq!(say(&server, &vic, &room, "thanks").await.status, 202);

    // The host deletes a message: every viewer is told, and it is gone from the backlog.
    let message_id = first.body["id"].as_str().unwrap();
    let delete_path = format!("/api/v1/live/rooms/{room}/chat/{message_id}");
    server.request("DELETE", &delete_path, Some(&olga), None).await.assert_problem(403, "forbidden");
    assert_eq!(server.request("DELETE", &delete_path, Some(&host), None).await.status, 204);
    for socket in [&mut vic_socket, &mut olga_socket] {
        let deleted = frame_where(socket, |f| f["type"] == "live.chat_deleted").await;
        assert_eq!(deleted["data"], json!({"room_id": room, "message_id": message_id}));
    }
    server.request("DELETE", &delete_path, Some(&host), None).await.assert_problem(404, "live_message_not_found");
    let (newcomer, _) = server.register("newcomer").await;
    let (mut newcomer_socket, _) = server.socket(&newcomer).await;
    assert_eq!(texts(&join(&mut newcomer_socket, &room).await), ["thanks"]);

    // A ban removes the viewer from the room at once, and keeps them out.
    wait_viewers(&server, &host, &room, 3).await;
    let banned = moderate(&server, &host, &room, json!({"user_id": vic_id, "action": "ban"})).await;
    assert_eq!((banned.body["banned"].as_bool(), banned.body["muted"].as_bool()), (Some(true), Some(true)));
    let removed = frame_where(&mut vic_socket, |f| f["type"] == "error").await;
    assert_eq!((removed["data"]["code"].as_str(), removed["data"]["room_id"].as_str()), (Some("banned"), Some(&*room)));
    wait_viewers(&server, &host, &room, 2).await;
    say(&server, &vic, &room, "let me back").await.assert_problem(403, "muted");
    let error = refused(&mut vic_socket, json!({"type": "live.join", "id": "again", "data": {"room_id": room}})).await;
    assert_eq!(error["code"], "banned");
    moderate(&server, &host, &room, json!({"user_id": vic_id, "action": "unmute"})).await;
    let error = refused(&mut vic_socket, json!({"type": "live.join", "id": "again2", "data": {"room_id": room}})).await;
    assert_eq!(error["code"], "banned", "unmuting lifts no ban");
    // Durable: it is a row, not a node's memory.
    let mut database = server.database().await;
    let (muted, banned): (i64, i64) =
        sqlx::query_as("SELECT muted, banned FROM live_room_moderation WHERE room_id = $1 AND user_id = $2")
            .bind(&room)
            .bind(&vic_id)
            .fetch_one(&mut database)
            .await
            .unwrap();
    assert_eq!((muted, banned), (0, 1));
    server.stop().await;
}

async fn chat_and_joins_to_unknown_unjoined_or_ended_rooms_have_their_own_codes(db: Db) {
    let server = TestServer::start(db).await;
    let (host, _, room) = live_room(&server, "host").await;
    let (ann, _) = server.register("ann").await;
    let (mut socket, _) = server.socket(&ann).await;
    say(&server, &ann, &room, "hi").await.assert_problem(409, "live_room_not_joined");
    say(&server, &ann, "nosuchroom", "hi").await.assert_problem(404, "live_room_not_found");
    let error = refused(&mut socket, json!({"type": "live.join", "id": "u", "data": {"room_id": "nosuchroom"}})).await;
    assert_eq!((error["code"].as_str(), error["status"].as_i64()), (Some("live_room_not_found"), Some(404)));
    let error = refused(&mut socket, json!({"type": "live.join", "id": "m", "data": {}})).await;
    assert_eq!((error["code"].as_str(), error["field"].as_str()), (Some("invalid_field"), Some("data.room_id")));
    let error =
        refused(&mut socket, json!({"type": "live.chat.send", "id": "nj", "data": {"room_id": room, "text": "hi"}}))
            .await;
    assert_eq!(error["code"], "live_room_not_joined");
    // A room not yet live is its host's alone, to join as to see.
    let soon = server.post("/api/v1/live/rooms", Some(&host), json!({"title": "Soon"})).await;
    let soon = soon.body["id"].as_str().unwrap().to_string();
    let error = refused(&mut socket, json!({"type": "live.join", "id": "s", "data": {"room_id": soon}})).await;
    assert_eq!(error["code"], "live_room_not_found");
    let (mut host_socket, _) = server.socket(&host).await;
    join(&mut host_socket, &soon).await;

    // A socket joins a few rooms, not more.
    let mut rooms = vec![room.clone()];
    for _ in 1..plaza_live::ROOMS_PER_SOCKET_MAX {
        let created = server.post("/api/v1/live/rooms", Some(&host), json!({"title": "Another"})).await;
        let id = created.body["id"].as_str().unwrap().to_string();
        go_live(&server, &id).await;
        rooms.push(id);
    }
    for id in &rooms {
        join(&mut socket, id).await;
    }
    let extra = server.post("/api/v1/live/rooms", Some(&host), json!({"title": "One more"})).await;
    let extra = extra.body["id"].as_str().unwrap().to_string();
    go_live(&server, &extra).await;
    let error = refused(&mut socket, json!({"type": "live.join", "id": "x", "data": {"room_id": extra}})).await;
    assert_eq!((error["code"].as_str(), error["status"].as_i64()), (Some("too_many_rooms"), Some(409)));
    socket.send(json!({"type": "live.leave", "id": "l", "data": {"room_id": rooms[1]}})).await;
    assert_eq!(frame_where(&mut socket, |f| f["id"] == "l").await["type"], "ack");
    join(&mut socket, &extra).await;

    // The end reaches the joined viewer; then the room takes neither chat nor joins.
    assert_eq!(server.post(&format!("/api/v1/live/rooms/{room}/end"), Some(&host), json!({})).await.status, 200);
    let ended = frame_where(&mut socket, |f| f["type"] == "live.ended").await;
    assert_eq!(ended["data"], json!({"room_id": room}));
    say(&server, &ann, &room, "hello?").await.assert_problem(409, "live_room_ended");
    let error = refused(&mut socket, json!({"type": "live.join", "id": "e", "data": {"room_id": room}})).await;
    assert_eq!((error["code"].as_str(), error["status"].as_i64()), (Some("live_room_ended"), Some(409)));
    let error =
        refused(&mut socket, json!({"type": "live.chat.send", "id": "ec", "data": {"room_id": room, "text": "hi"}}))
            .await;
    assert_eq!(error["code"], "live_room_ended");
    server.stop().await;
}

/// A socket with a tiny receive buffer that joins `room_id` and never reads.
async fn stalled_viewer(server: &TestServer, token: &str, room_id: &str) -> Socket {
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(server.base.trim_start_matches("http://").parse().unwrap()).await.unwrap();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("{}/api/v1/ws", server.base.replace("http://", "ws://")).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let tcp = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (stream, _) = tokio_tungstenite::client_async(request, tcp).await.expect("handshake");
    let mut socket = Socket::from_stream(stream);
    socket.send(json!({"type": "live.join", "data": {"room_id": room_id}})).await;
    socket
}

/// Reads a socket's chat ids until `until` says how many to expect and that many came.
async fn read_chat_ids(
    mut socket: Socket,
    room_id: String,
    mut until: tokio::sync::watch::Receiver<Option<usize>>,
) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if until.borrow().is_some_and(|expected| seen.len() >= expected) || tokio::time::Instant::now() > deadline {
            return seen;
        }
        let asked = tokio::time::Instant::now();
        tokio::select! {
            frame = socket.try_next_frame(Duration::from_secs(1)) => match frame {
                Some(frame) if frame["type"] == "live.chat" && frame["data"]["room_id"] == room_id => {
                    seen.extend(ids(frame["data"]["messages"].as_array().unwrap()));
                }
                Some(_) => {}
                // Nothing well before the second was up: the socket is closed, and asking
                // again would only spin (and starve the test's runtime).
                None if asked.elapsed() < Duration::from_millis(500) => return seen,
                None => {}
            },
            _ = until.changed() => {}
        }
    }
}

async fn a_viewer_that_never_reads_is_dropped_while_the_others_keep_receiving(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.gateway.send_queue_frames = 4;
        // Long, so that it is the room queue, not the socket's send time-out, that acts.
        config.gateway.send_timeout = Duration::from_secs(60);
        // Each 200 ms batch is offered to a viewer's queue whole, split into frames of
        // 32 KB (about 90 of these messages): a queue of 8 dropped a reader that kept up
        // whenever one batch held more than ~700 messages (a fast moment, or a relay tick
        // that came late on a loaded machine). 24 frames hold the most one batch can be
        // (about 17 frames), and the stalled viewer still fills them soon.
        config.live.viewer_queue_frames = 24;
        config.live.chat_per_second = 100_000;
        config.live.chat_burst = 100_000;
    })
    .await;
    let (host, _, room) = live_room(&server, "host").await;
    let (talker, _, talker_socket) = viewer(&server, "talker", &room).await;
    let (_, _, watcher_socket) = viewer(&server, "watcher", &room).await;
    let (stalled_token, _) = server.register("stalled").await;
    let mut stalled = stalled_viewer(&server, &stalled_token, &room).await;
    wait_viewers(&server, &host, &room, 3).await;

    let (expect, until) = tokio::sync::watch::channel(None);
    let readers: Vec<_> = [talker_socket, watcher_socket]
        .into_iter()
        .map(|socket| tokio::spawn(read_chat_ids(socket, room.clone(), until.clone())))
        .collect();
    let text = "x".repeat(200);
    let mut sent = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let posts = (0..8).map(|_| say(&server, &talker, &room, &text));
        for reply in futures_util::future::join_all(posts).await {
            assert_eq!(reply.status, 202, "{}", reply.text);
            sent.push(reply.body["id"].as_str().unwrap().to_string());
        }
        let room_now = server.get(&format!("/api/v1/live/rooms/{room}"), Some(&host)).await;
        if room_now.body["viewers"] == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled viewer was never dropped ({} messages)",
            sent.len()
        );
    }
    // A few more after the drop: the others still get everything.
    for n in 0..20 {
        let reply = say(&server, &talker, &room, &format!("after {n}")).await;
        sent.push(reply.body["id"].as_str().unwrap().to_string());
    }
    expect.send_replace(Some(sent.len()));
    let sent: HashSet<String> = sent.into_iter().collect();
    for reader in readers {
        let seen = reader.await.unwrap();
        assert_eq!(seen.len(), sent.len(), "each message once");
        assert_eq!(seen.into_iter().collect::<HashSet<_>>(), sent, "every message");
    }
    // The stalled socket is closed, after whatever its buffers held.
    assert!(stalled.closed_within(Duration::from_secs(30)).await.is_some(), "the stalled socket stayed open");
    server.stop().await;
}

async fn stats_pins_and_the_hosts_end_reach_every_viewer_and_the_room_counts_the_same(db: Db) {
    let server = TestServer::start(db).await;
    let (host, _) = server.register("host").await;
    let shop = open_shop(&server, &host, "Tea shop").await;
    let (product, _) = simple_product(&server, &host, &shop, "Tea cup", "Porcelain", 1200, 10).await;
    let created =
        server.post("/api/v1/live/rooms", Some(&host), json!({"title": "Cups", "product_ids": [product]})).await;
    let room = created.body["id"].as_str().unwrap().to_string();
    go_live(&server, &room).await;
    let (ann, _, mut ann_socket) = viewer(&server, "ann", &room).await;
    let (bob, _, mut bob_phone) = viewer(&server, "bob", &room).await;
    // Viewers are sockets: Bob's second device counts too.
    let (mut bob_laptop, _) = server.socket(&bob).await;
    join(&mut bob_laptop, &room).await;
    let hearts = server.post(&format!("/api/v1/live/rooms/{room}/likes"), Some(&ann), json!({"count": 5})).await;
    assert_eq!(hearts.status, 202);
    for socket in [&mut ann_socket, &mut bob_phone, &mut bob_laptop] {
        let stats =
            frame_where(socket, |f| f["type"] == "live.stats" && f["data"]["viewers"] == 3 && f["data"]["likes"] == 5)
                .await;
        assert_eq!(stats["data"], json!({"room_id": room, "viewers": 3, "likes": 5}));
    }
    wait_viewers(&server, &ann, &room, 3).await;
    let listed = server.get("/api/v1/live/rooms", Some(&ann)).await;
    assert_eq!(
        (listed.body["items"][0]["id"].as_str(), listed.body["items"][0]["viewers"].as_i64()),
        (Some(&*room), Some(3))
    );

    let pin_path = format!("/api/v1/live/rooms/{room}/pin");
    let pin = |body: Value| server.post(&pin_path, Some(&host), body);
    assert_eq!(pin(json!({"product_id": product})).await.status, 200);
    for socket in [&mut ann_socket, &mut bob_phone, &mut bob_laptop] {
        let pinned = frame_where(socket, |f| f["type"] == "live.pinned").await;
        assert_eq!(
            (pinned["data"]["room_id"].as_str(), pinned["data"]["product"]["id"].as_str()),
            (Some(&*room), Some(&*product))
        );
        assert_eq!(pinned["data"]["product"]["title"], "Tea cup");
    }
    assert_eq!(pin(json!({"product_id": null})).await.status, 200);
    let unpinned = frame_where(&mut ann_socket, |f| f["type"] == "live.pinned").await;
    assert!(unpinned["data"]["product"].is_null(), "{unpinned}");

    bob_laptop.send(json!({"type": "live.leave", "id": "bye", "data": {"room_id": room}})).await;
    frame_where(&mut bob_laptop, |f| f["id"] == "bye").await;
    frame_where(&mut ann_socket, |f| f["type"] == "live.stats" && f["data"]["viewers"] == 2).await;
    wait_viewers(&server, &ann, &room, 2).await;

    assert_eq!(server.post(&format!("/api/v1/live/rooms/{room}/end"), Some(&host), json!({})).await.status, 200);
    for socket in [&mut ann_socket, &mut bob_phone] {
        let ended = frame_where(socket, |f| f["type"] == "live.ended").await;
        assert_eq!(ended["data"], json!({"room_id": room}));
    }
    let after = frames_for(&mut bob_laptop, Duration::from_millis(1500)).await;
    assert!(after.iter().all(|frame| frame["type"] != "live.ended"), "a socket that left hears nothing: {after:?}");
    wait_viewers(&server, &ann, &room, 0).await;
    server.stop().await;
}

async fn the_idle_end_reaches_every_viewer(db: Db) {
    let server = TestServer::start_with(db, |config| config.live.idle_end = Duration::from_secs(1)).await;
    let (_, _, room) = live_room(&server, "host").await;
    let (_, _, mut socket) = viewer(&server, "ann", &room).await;
    // The media stopped long ago and no node ingests: the idle end takes the room.
    let mut database = server.database().await;
    sqlx::query("UPDATE live_rooms SET last_media_at = 1 WHERE id = $1")
        .bind(&room)
        .execute(&mut database)
        .await
        .unwrap();
    let ended = frame_where(&mut socket, |f| f["type"] == "live.ended").await;
    assert_eq!(ended["data"], json!({"room_id": room}));
    server.stop().await;
}

// ---- across nodes ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_through_one_node_reaches_viewers_on_the_other_and_viewers_are_counted_on_both() {
    let (node_a, node_b) = two_nodes().await;
    let (host, _, room) = live_room(&node_a, "cluster_host").await;
    let (ann, _, mut ann_on_a) = viewer(&node_a, "cluster_ann", &room).await;
    let (bob, bob_id, mut bob_on_b) = viewer(&node_b, "cluster_bob", &room).await;
    let (_, _, mut cat_on_b) = viewer(&node_b, "cluster_cat", &room).await;

    let said = say(&node_a, &ann, &room, "hello from A").await;
    assert_eq!(said.status, 202, "{}", said.text);
    for socket in [&mut bob_on_b, &mut cat_on_b, &mut ann_on_a] {
        let (messages, _) = receive_chat(socket, &room, 1).await;
        assert_eq!(messages, std::slice::from_ref(&said.body));
    }
    // Bob joined on B and posts through A: a join counts on every node.
    let across = say(&node_a, &bob, &room, "posted through A, joined on B").await;
    assert_eq!(across.status, 202, "{}", across.text);
    assert_eq!(receive_chat(&mut ann_on_a, &room, 1).await.0[0]["text"], "posted through A, joined on B");
    assert_eq!(receive_chat(&mut cat_on_b, &room, 1).await.0[0]["id"], across.body["id"]);

    // One viewer on A and two on B: both nodes say three.
    for socket in [&mut ann_on_a, &mut bob_on_b] {
        frame_where(socket, |f| f["type"] == "live.stats" && f["data"]["viewers"] == 3).await;
    }
    wait_viewers(&node_a, &host, &room, 3).await;
    wait_viewers(&node_b, &host, &room, 3).await;

    // A ban through A removes Bob from B; the end through A reaches B.
    assert_eq!(moderate(&node_a, &host, &room, json!({"user_id": bob_id, "action": "ban"})).await.status, 200);
    let removed = frame_where(&mut bob_on_b, |f| f["type"] == "error").await;
    assert_eq!(removed["data"]["code"], "banned");
    wait_viewers(&node_b, &host, &room, 2).await;
    assert_eq!(node_a.post(&format!("/api/v1/live/rooms/{room}/end"), Some(&host), json!({})).await.status, 200);
    let ended = frame_where(&mut cat_on_b, |f| f["type"] == "live.ended").await;
    assert_eq!(ended["data"]["room_id"], room.as_str());
    node_b.stop().await;
    node_a.stop().await;
}
