//! Two `plaza serve` nodes sharing one PostgreSQL database and one NATS server (started by
//! `scripts/test`, named by `PLAZA_TEST_NATS_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::time::Duration;
use support::{Db, TestServer};

async fn two_nodes() -> (TestServer, TestServer) {
    let nats = std::env::var("PLAZA_TEST_NATS_URL")
        .expect("PLAZA_TEST_NATS_URL must name a NATS server for the cluster tests; scripts/test starts one");
    let dir = tempfile::tempdir().unwrap();
    let database_url = support::fresh_database(Db::Postgres, dir.path()).await;
    let with_nats = |config: &mut plaza_server::config::Config| config.nats_url = Some(nats.clone());
    let first = TestServer::start_on(&database_url, with_nats).await;
    let second = TestServer::start_on(&database_url, with_nats).await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_through_one_node_reaches_a_socket_on_the_other_and_a_moved_client_misses_nothing() {
    let (node_a, node_b) = two_nodes().await;
    let (ann, _) = node_a.register("cluster_ann").await;
    let (bob, bob_id) = node_a.register("cluster_bob").await;
    let conversation = node_a.conversation(&ann, "direct", &[&bob_id]).await;

    let (mut on_b, _) = node_b.socket(&bob).await;
    node_a.send_text(&ann, &conversation, "x1", "across nodes").await;
    let frame = on_b.try_next_frame(Duration::from_secs(1)).await.expect("delivered on node B within one second");
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
    let nats = std::env::var("PLAZA_TEST_NATS_URL").expect("PLAZA_TEST_NATS_URL");
    let dir = tempfile::tempdir().unwrap();
    let database_url = support::fresh_database(Db::Postgres, dir.path()).await;
    let configure = |config: &mut plaza_server::config::Config| {
        config.nats_url = Some(nats.clone());
        config.session_cache = Duration::from_secs(300);
    };
    let node_a = TestServer::start_on(&database_url, configure).await;
    let node_b = TestServer::start_on(&database_url, configure).await;
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
