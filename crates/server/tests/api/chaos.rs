//! Chaos: under a load of sends, sockets are dropped at random and a server is killed with
//! SIGKILL and restarted; afterwards every client holds every message exactly once, in
//! `seq` order. Short enough for CI; `PLAZA_CHAOS_MESSAGES` makes it longer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use crate::support::process::{json_of, ChildNode};
use crate::support::Db;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// What one user's sockets received: per conversation, the seqs in arrival order.
type Received = Arc<Mutex<BTreeMap<String, Vec<i64>>>>;

/// Keeps a socket open to some live node, dropping it at random and resuming from the last
/// cursor each time, until `stop`.
async fn socket_client(bases: Vec<String>, token: String, received: Received, stop: Arc<AtomicBool>, seed: u64) {
    let mut cursor = "0".to_string();
    let mut random = seed;
    let mut attempt = 0usize;
    while !stop.load(Ordering::Relaxed) {
        attempt += 1;
        let base = &bases[attempt % bases.len()];
        let url = format!("{}/api/v1/ws?token={token}&cursor={cursor}", base.replace("http://", "ws://"));
        let Ok(Ok((mut socket, _))) =
            tokio::time::timeout(Duration::from_secs(2), tokio_tungstenite::connect_async(url)).await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Drop this socket after a random number of frames.
        random = random.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let frames_before_drop = 5 + (random >> 33) % 40;
        let mut frames = 0;
        loop {
            let next = tokio::time::timeout(Duration::from_millis(200), socket.next()).await;
            match next {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                    if let Some(event_cursor) = frame["cursor"].as_str() {
                        cursor = event_cursor.to_string();
                    }
                    if frame["type"] == "message.new" {
                        let conversation = frame["data"]["conversation_id"].as_str().unwrap().to_string();
                        received
                            .lock()
                            .unwrap()
                            .entry(conversation)
                            .or_default()
                            .push(frame["data"]["seq"].as_i64().unwrap());
                        frames += 1;
                    }
                    if frames >= frames_before_drop {
                        break;
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => break,
                Err(_) if stop.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
        }
        let _ = socket.close(None).await;
    }
}

/// Sends `count` messages, retrying each with its client_id until a node accepts it.
async fn sender(
    bases: Vec<String>,
    token: String,
    conversations: Vec<String>,
    user: usize,
    count: usize,
    sent: Arc<std::sync::atomic::AtomicUsize>,
) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    for n in 0..count {
        let conversation = &conversations[n % conversations.len()];
        let body =
            json!({"client_id": format!("u{user}-{n}"), "kind": "text", "body": {"text": format!("{user}/{n}")}});
        let mut attempt = user + n;
        loop {
            attempt += 1;
            let base = &bases[attempt % bases.len()];
            let outcome = client
                .post(format!("{base}/api/v1/conversations/{conversation}/messages"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await;
            match outcome {
                Ok(response) if response.status().is_success() => {
                    sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

async fn chaos(db: Db) {
    let messages: usize = std::env::var("PLAZA_CHAOS_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let mut env = Vec::new();
    let node_count = match db {
        Db::Sqlite => 1,
        Db::Postgres => {
            let dir = tempfile::tempdir().unwrap();
            env.push(("PLAZA_DATABASE_URL".to_string(), support::fresh_database(Db::Postgres, dir.path()).await));
            env.push((
                "PLAZA_NATS_URL".to_string(),
                std::env::var("PLAZA_TEST_NATS_URL").expect("PLAZA_TEST_NATS_URL"),
            ));
            2
        }
    };
    let mut nodes: Vec<ChildNode> =
        (0..node_count).map(|_| ChildNode::spawn_in(env.clone(), tempfile::tempdir().unwrap())).collect();
    // A SQLite node is restarted on its own data directory: share the first node's.
    let client = reqwest::Client::new();
    for node in &nodes {
        node.wait_ready().await;
    }
    let bases: Vec<String> = nodes.iter().map(ChildNode::base).collect();

    let mut users = Vec::new();
    for n in 0..5 {
        let reply: Value = json_of(
            client
                .post(format!("{}/api/v1/auth/register", bases[0]))
                .json(&json!({"username": format!("chaos_{n}"), "password": "chaos-password"})),
        )
        .await;
        users.push((reply["token"].as_str().unwrap().to_string(), reply["user"]["id"].as_str().unwrap().to_string()));
    }
    // Only contacts may add each other to groups: chaos_0 befriends the others.
    for (token, id) in &users[1..] {
        for (asker, other) in [(&users[0].0, id), (token, &users[0].1)] {
            let status = client
                .post(format!("{}/api/v1/contacts", bases[0]))
                .bearer_auth(asker)
                .json(&json!({"user_id": other}))
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "contact: {status}");
        }
    }
    let create = |token: &str, kind: &str, members: Vec<String>| {
        let client = client.clone();
        let base = bases[0].clone();
        let token = token.to_string();
        let kind = kind.to_string();
        async move {
            let reply: Value = json_of(
                client
                    .post(format!("{base}/api/v1/conversations"))
                    .bearer_auth(token)
                    .json(&json!({"kind": kind, "member_ids": members})),
            )
            .await;
            reply["id"].as_str().unwrap().to_string()
        }
    };
    let group = create(&users[0].0, "group", users[1..].iter().map(|u| u.1.clone()).collect()).await;
    let direct = create(&users[0].0, "direct", vec![users[1].1.clone()]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut listeners = Vec::new();
    let mut received_by_user = Vec::new();
    for (index, (token, _)) in users.iter().enumerate() {
        let received: Received = Arc::default();
        received_by_user.push(received.clone());
        listeners.push(tokio::spawn(socket_client(
            bases.clone(),
            token.clone(),
            received,
            stop.clone(),
            index as u64 + 7,
        )));
    }
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = messages * users.len();
    let mut senders = Vec::new();
    for (index, (token, _)) in users.iter().enumerate() {
        let conversations = if index <= 1 { vec![group.clone(), direct.clone()] } else { vec![group.clone()] };
        senders.push(tokio::spawn(sender(bases.clone(), token.clone(), conversations, index, messages, sent.clone())));
    }

    // A third of the way through the load: SIGKILL the last node, bring it back on the
    // same port.
    while sent.load(Ordering::Relaxed) < total / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let victim = nodes.last_mut().unwrap();
    victim.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    victim.respawn();
    victim.wait_ready().await;
    let sent_at_restart = sent.load(Ordering::Relaxed);
    assert!(sent_at_restart < total, "the load was still running when the node came back");

    for sender in senders {
        sender.await.unwrap();
    }
    // Ground truth from the server, then wait until every client has caught up.
    let mut truth: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for conversation in [&group, &direct] {
        let mut seqs = Vec::new();
        let mut after = 0;
        loop {
            let page: Value = json_of(
                client
                    .get(format!(
                        "{}/api/v1/conversations/{conversation}/messages?after_seq={after}&limit=200",
                        bases[0]
                    ))
                    .bearer_auth(&users[0].0),
            )
            .await;
            let items = page["items"].as_array().unwrap();
            seqs.extend(items.iter().map(|m| m["seq"].as_i64().unwrap()));
            match items.last() {
                Some(last) if page["next_cursor"].is_string() => after = last["seq"].as_i64().unwrap(),
                _ => break,
            }
        }
        truth.insert(conversation.clone(), seqs);
    }
    let sent_to_group = messages * users.len();
    assert_eq!(truth[&group].len(), 1 + sent_to_group - messages, "every send stored once");
    let expected_for = |user: usize| -> BTreeMap<String, Vec<i64>> {
        let mut expected = BTreeMap::new();
        // The group's first message (group created) predates every socket: it is replayed
        // from cursor 0 like everything else.
        expected.insert(group.clone(), truth[&group].clone());
        if user <= 1 {
            expected.insert(direct.clone(), truth[&direct].clone());
        }
        expected
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = (0..users.len()).all(|user| *received_by_user[user].lock().unwrap() == expected_for(user));
        if done || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for listener in listeners {
        listener.await.unwrap();
    }
    for (user, received) in received_by_user.iter().enumerate().take(users.len()) {
        let got = received.lock().unwrap().clone();
        assert_eq!(got, expected_for(user), "user {user} holds every message exactly once, in seq order");
    }
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_node_killed_and_restarted_under_load_loses_and_repeats_nothing() {
    chaos(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_one_killed_and_restarted_under_load_loses_and_repeats_nothing() {
    chaos(Db::Postgres).await;
}
