//! The server's edge under a probe (issue 18, points 1 and 2): idle and slow connections
//! cannot take a node down, and /metrics stays small whatever clients send, and can be
//! protected by a token or moved to a listener of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use crate::support::{Db, TestServer};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Opens a connection to `server` from `source` (any 127.x.y.z address is this machine).
async fn connect_from(source: [u8; 4], server: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((source, 0)))?;
    socket.connect(server).await
}

/// Reads until the server closes the connection, for at most 30 s; returns what was read,
/// or `None` if the connection was still open at the deadline.
async fn read_until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_elapsed) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

fn addr_of(base: &str) -> std::net::SocketAddr {
    base.trim_start_matches("http://").parse().expect("an address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_slow_and_idle_connections_are_closed_by_their_time_outs() {
    let server = TestServer::start_with(Db::Sqlite, |config| {
        config.connections.header_read_timeout = Duration::from_secs(1);
        config.connections.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = addr_of(&server.base);
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: plaza\r\nX-Slow: ").await.unwrap();
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    kept_alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: plaza\r\n\r\n").await.unwrap();

    assert!(read_until_closed(&mut silent).await.is_some(), "a connection that never sends is closed");
    assert!(read_until_closed(&mut slow).await.is_some(), "a half-sent request head is not waited for forever");
    let answered = read_until_closed(&mut kept_alive).await.expect("an idle kept-alive connection is closed");
    let answered = String::from_utf8_lossy(&answered);
    assert!(answered.starts_with("HTTP/1.1 200"), "the request itself was answered first: {answered}");
    // New clients are still served. (A new client: the test server's own pool holds a
    // connection from start-up that the 2 s idle time-out has closed meanwhile, and reusing
    // it races the close, which is this test's point, not a failure.)
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    assert_eq!(fresh.get(format!("{}/healthz", server.base)).send().await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_address_over_its_connection_cap_is_turned_away_while_others_are_served() {
    let server = TestServer::start_with(Db::Sqlite, |config| {
        config.connections.connections_per_address_max = 20;
    })
    .await;
    let addr = addr_of(&server.base);
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from([127, 0, 0, 2], addr).await.unwrap());
    }
    // Each of the 20 is being served: it answers a request.
    held[0].write_all(b"GET /healthz HTTP/1.1\r\nHost: plaza\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    held[0].read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let mut over = connect_from([127, 0, 0, 2], addr).await.unwrap();
    assert_eq!(read_until_closed(&mut over).await, Some(Vec::new()), "the 21st is closed unanswered");
    assert_eq!(server.get("/healthz", None).await.status, 200, "another address is served");
    // A slot given back is free again (the server notices the close asynchronously).
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut again = connect_from([127, 0, 0, 2], addr).await.unwrap();
        again.write_all(b"GET /healthz HTTP/1.1\r\nHost: plaza\r\nConnection: close\r\n\r\n").await.unwrap();
        let reply = read_until_closed(&mut again).await.unwrap_or_default();
        if reply.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

/// `plaza serve` as a child whose descriptor limit is 1024 (`prlimit`, from util-linux),
/// held under 3,000 idle and half-sent connections from three addresses: before the
/// caps it ran out of descriptors (`accept error: Too many open files`) and stopped
/// answering; now it keeps its connections under the limit and answers health and login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_login_answer_while_thousands_of_idle_and_slow_connections_are_held() {
    // The test holds ~3,000 sockets itself; the soft limit may be lower than that.
    let limit = plaza_server::connections::raise_descriptor_limit().unwrap_or(u64::MAX);
    assert!(limit >= 3_200, "this test needs a descriptor limit of at least 3200 (ulimit -Hn is {limit})");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = tokio::process::Command::new("prlimit")
        .args(["--nofile=1024:1024", "--", env!("CARGO_BIN_EXE_plaza"), "serve"])
        .env("PLAZA_ADDR", format!("127.0.0.1:{port}"))
        .env("PLAZA_DATA_DIR", dir.path())
        .env("PLAZA_DATABASE_URL", "")
        .env("PLAZA_LOG", "warn")
        // The caps do the work here, not the time-outs.
        .env("PLAZA_HEADER_READ_TIMEOUT_SECONDS", "300")
        .env("PLAZA_IDLE_TIMEOUT_SECONDS", "300")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("prlimit (util-linux) runs plaza");
    let base = format!("http://127.0.0.1:{port}");
    support::process::wait_ready(&base, || std::fs::read_to_string(&log_path).unwrap_or_default()).await;
    let addr = addr_of(&base);

    let mut held = Vec::new();
    for source in [[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]] {
        for index in 0..1_000 {
            let Ok(mut stream) = connect_from(source, addr).await else { continue };
            if index % 2 == 1 {
                let _ = stream.write_all(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: plaza\r\nContent-Ty").await;
            }
            held.push(stream);
        }
    }
    assert!(held.len() > 2_000, "the probe could open only {} connections", held.len());

    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let health = client.get(format!("{base}/healthz")).send().await.expect("healthz answers");
    assert_eq!(health.status(), 200);
    let registered = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"username": "held", "password": "password-held", "display_name": "Held"}))
        .send()
        .await
        .expect("register answers");
    assert_eq!(registered.status(), 201);
    let login = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "held", "password": "password-held"}))
        .send()
        .await
        .expect("login answers");
    assert_eq!(login.status(), 200);
    drop(held);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!log.contains("Too many open files"), "{log}");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_fold_into_one_series_and_metrics_stay_small() {
    let server = TestServer::start(Db::Sqlite).await;
    let before = server.get("/metrics", None).await.text.len();
    for index in 0..400 {
        let method = reqwest::Method::from_bytes(format!("PROBE{index}").as_bytes()).unwrap();
        let path = format!("/probe/{index}/x{index}");
        server.raw(server.client.request(method, format!("{}{path}", server.base))).await;
    }
    let metrics = server.get("/metrics", None).await.text;
    assert!(!metrics.contains("PROBE"), "no made-up method becomes a label");
    assert!(!metrics.contains("/probe/"), "no raw path becomes a label");
    let folded: Vec<&str> = metrics
        .lines()
        .filter(|line| {
            line.starts_with("plaza_http_requests_total{")
                && line.contains("method=\"other\"")
                && line.contains("route=\"unmatched\"")
        })
        .collect();
    assert_eq!(folded.len(), 1, "one series for every made-up method on every unmatched path: {folded:?}");
    assert!(folded[0].ends_with(" 400"), "{}", folded[0]);
    assert!(metrics.len() < before + 16 * 1024, "/metrics grew from {before} to {} bytes", metrics.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_their_token_when_one_is_set() {
    let token = "metrics-token-0123456789";
    let server = TestServer::start_with(Db::Sqlite, |config| config.metrics_token = Some(token.to_string())).await;
    server.get("/metrics", None).await.assert_problem(401, "unauthenticated");
    server.get("/metrics", Some("metrics-token-0123456780")).await.assert_problem(401, "unauthenticated");
    let reply = server.get("/metrics", Some(token)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.contains("plaza_http_requests_total"), "{}", reply.text);
    assert_eq!(server.get("/healthz", None).await.status, 200, "health stays open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_to_their_own_listener_when_an_address_is_set() {
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = TestServer::start_with(Db::Sqlite, |config| config.metrics_addr = Some(metrics_addr)).await;
    let main = server.get("/metrics", None).await;
    assert!(!main.text.contains("plaza_http_requests_total"), "the main listener shows no metrics: {}", main.text);
    let reply = server.raw(server.client.get(format!("http://{metrics_addr}/metrics"))).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.contains("plaza_http_requests_total"), "{}", reply.text);
    server.stop().await;
}
