//! Test support: a real Plaza server on a free port with a fresh database per test, on
//! SQLite (a temporary directory) or PostgreSQL (a new database in the cluster named by
//! `PLAZA_TEST_DATABASE_URL`, which `scripts/test` starts), and a small HTTP client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod process;
pub mod rides;

use plaza_server::config::Config;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Generates one test per database for each named `async fn(Db)`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::support::Db::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::support::Db::Postgres).await }
            )*
        }
    };
}

pub struct TestServer {
    pub base: String,
    pub database_url: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// A response as a client sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts this is a problem document with the given status and code.
    pub fn assert_problem(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status, status, "expected {status} {code}, got {}: {}", self.status, self.text);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.text);
        assert_eq!(self.body["code"], code, "{}", self.text);
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string() && self.body["type"].is_string());
        self
    }
}

/// The smallest valid PNG: one transparent pixel.
pub const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// A xorshift64 generator from `seed`: the same numbers on every run, so that a failing
/// random plan can be replayed.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut random = seed;
    move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    }
}

/// Tops `token`'s wallet up by `amount` USD (under a fresh idempotency key).
pub async fn topup(server: &TestServer, token: &str, amount: i64) {
    let request = server
        .client
        .post(format!("{}/api/v1/wallet/topups", server.base))
        .bearer_auth(token)
        .header("idempotency-key", plaza_kernel::new_id())
        .json(&serde_json::json!({"amount": amount, "currency": "USD"}));
    let reply = server.raw(request).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
}

/// (available, held) in USD.
pub async fn balance(server: &TestServer, token: &str) -> (i64, i64) {
    let reply = server.get("/api/v1/wallet", Some(token)).await;
    let usd = reply.body["balances"].as_array().unwrap().iter().find(|b| b["currency"] == "USD").cloned();
    usd.map_or((0, 0), |usd| (usd["available"].as_i64().unwrap(), usd["held"].as_i64().unwrap()))
}

/// What the nodes of a cluster share: a fresh PostgreSQL database and the test NATS server.
pub struct Cluster {
    pub database_url: String,
    pub nats_url: String,
}

impl Cluster {
    pub async fn new() -> Self {
        let nats_url = std::env::var("PLAZA_TEST_NATS_URL")
            .expect("PLAZA_TEST_NATS_URL must name a NATS server for the cluster tests; scripts/test starts one");
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database(Db::Postgres, dir.path()).await;
        Self { database_url, nats_url }
    }

    /// A node of the cluster, in this process: on its database and its bus, then `adjust`ed.
    pub async fn node(&self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let nats_url = self.nats_url.clone();
        TestServer::start_on(&self.database_url, |config| {
            config.nats_url = Some(nats_url);
            adjust(config);
        })
        .await
    }
}

/// Two nodes of a fresh [`Cluster`].
pub async fn two_nodes() -> (TestServer, TestServer) {
    let cluster = Cluster::new().await;
    (cluster.node(|_| {}).await, cluster.node(|_| {}).await)
}

/// A fresh database URL for one test.
pub async fn fresh_database(db: Db, dir: &std::path::Path) -> String {
    match db {
        Db::Sqlite => plaza_store::Store::sqlite_url_in(dir),
        Db::Postgres => {
            let admin_url = std::env::var("PLAZA_TEST_DATABASE_URL").expect(
                "PLAZA_TEST_DATABASE_URL must name a PostgreSQL cluster for the postgres tests; \
                 scripts/test starts a throw-away one",
            );
            sqlx::any::install_default_drivers();
            let name = format!("plaza_test_{}", plaza_kernel::new_id().to_ascii_lowercase());
            let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
                .await
                .expect("connect to the test cluster");
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create database");
            sqlx::Connection::close(admin).await.ok();
            let (base, query) = match admin_url.split_once('?') {
                Some((base, query)) => (base.to_string(), format!("?{query}")),
                None => (admin_url.clone(), String::new()),
            };
            let prefix =
                base.rsplit_once('/').map(|(prefix, _)| prefix.to_string()).expect("a database URL with a path");
            format!("{prefix}/{name}{query}")
        }
    }
}

impl TestServer {
    pub async fn start(db: Db) -> Self {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: Db, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database(db, dir.path()).await;
        Self::start_in(dir, database_url, adjust, false).await
    }

    /// As `start_with`, with the demo's simulated drivers running (`plaza demo --serve`).
    pub async fn start_with_demo_drivers(db: Db, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database(db, dir.path()).await;
        Self::start_in(dir, database_url, adjust, true).await
    }

    /// A client of a node this test did not start (a `ChildNode`), for the same helpers;
    /// `stop` does nothing to it.
    pub fn attach(base: &str, database_url: &str) -> Self {
        Self {
            base: base.to_string(),
            database_url: database_url.to_string(),
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
            stop: None,
            task: None,
            _dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A node on an existing database (several nodes can share one PostgreSQL database).
    pub async fn start_on(database_url: &str, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_in(tempfile::tempdir().expect("tempdir"), database_url.to_string(), adjust, false).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        database_url: String,
        adjust: impl FnOnce(&mut Config),
        demo_drivers: bool,
    ) -> Self {
        let mut config = Config::for_test(dir.path(), Some(database_url.clone()));
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(plaza_server::serve_with(config, listener, stopped, demo_drivers));
        let server = Self {
            base: format!("http://{addr}"),
            database_url,
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self.client.get(format!("{}/readyz", self.base)).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server gracefully and hands back its data directory, so that a new node
    /// can be started on the same (SQLite) database with `start_on`.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
        let placeholder = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self._dir, placeholder)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }

    pub async fn request(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_reply(request.send().await.expect("request")).await
    }

    pub async fn raw(&self, request: reqwest::RequestBuilder) -> Reply {
        into_reply(request.send().await.expect("request")).await
    }

    /// Uploads `bytes` as `token` to `POST /api/v1/media`, as an `image/png` file in the
    /// multipart field `field`.
    pub async fn upload_media(&self, token: &str, field: &str, bytes: Vec<u8>) -> Reply {
        let part = reqwest::multipart::Part::bytes(bytes).file_name("upload.png").mime_str("image/png").unwrap();
        let form = reqwest::multipart::Form::new().part(field.to_string(), part);
        self.raw(self.client.post(format!("{}/api/v1/media", self.base)).bearer_auth(token).multipart(form)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.request("GET", path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.request("POST", path, token, Some(body)).await
    }

    /// Registers `username` (password `password-<username>`) and returns (token, user id).
    pub async fn register(&self, username: &str) -> (String, String) {
        let reply = self
            .post(
                "/api/v1/auth/register",
                None,
                serde_json::json!({"username": username, "password": format!("password-{username}"), "display_name": username}),
            )
            .await;
        assert_eq!(reply.status, 201, "register {username}: {}", reply.text);
        (reply.body["token"].as_str().unwrap().to_string(), reply.body["user"]["id"].as_str().unwrap().to_string())
    }

    /// Registers each of `names`, in order, as [`register`](Self::register) does; (token, user id) each.
    pub async fn register_all<const N: usize>(&self, names: [&str; N]) -> [(String, String); N] {
        let mut people = Vec::with_capacity(N);
        for name in names {
            people.push(self.register(name).await);
        }
        people.try_into().unwrap()
    }

    /// Makes two registered users contacts: `a` asks, `b` accepts by asking back. Only
    /// contacts may add each other to groups.
    pub async fn befriend(&self, a: &(String, String), b: &(String, String)) {
        let asked = self.post("/api/v1/contacts", Some(&a.0), serde_json::json!({"user_id": b.1})).await;
        assert!(asked.status == 201 || asked.status == 200, "contact request: {}", asked.text);
        let accepted = self.post("/api/v1/contacts", Some(&b.0), serde_json::json!({"user_id": a.1})).await;
        assert!(accepted.status == 201 || accepted.status == 200, "contact acceptance: {}", accepted.text);
    }

    /// Registers each name and makes everyone contacts of everyone; (token, user id) each.
    pub async fn register_contacts(&self, names: &[&str]) -> Vec<(String, String)> {
        let mut people = Vec::new();
        for name in names {
            people.push(self.register(name).await);
        }
        for (index, a) in people.iter().enumerate() {
            for b in &people[index + 1..] {
                self.befriend(a, b).await;
            }
        }
        people
    }

    /// Grants (`true`) or revokes the admin role of an existing account, as the operator's
    /// `plaza admin grant|revoke` does; returns what the command would print.
    pub async fn set_admin(&self, username: &str, granting: bool) -> String {
        let store = plaza_store::Store::connect_with(&self.database_url, 2, plaza_store::SqliteSync::Full)
            .await
            .expect("connect");
        let accounts = plaza_server::app::accounts_only(store.clone()).expect("accounts");
        let outcome = plaza_server::app::set_admin(&accounts, username, granting).await;
        store.close().await;
        outcome.unwrap_or_else(|error| panic!("set_admin {username}: {error}"))
    }

    /// The value of the counter `name` in `/metrics` (0 if nothing was counted yet), and the
    /// whole text to explain a failure.
    pub async fn metric(&self, name: &str) -> (f64, String) {
        let metrics = self.get("/metrics", None).await.text;
        let prefix = format!("{name} ");
        let value = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0);
        (value, metrics)
    }

    /// A direct connection to this test's database, for arranging what the API cannot
    /// (such as a session unused for 31 days).
    pub async fn database(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        <sqlx::AnyConnection as sqlx::Connection>::connect(&self.database_url).await.expect("connect")
    }

    /// Runs one statement with text `binds` on this server's database, behind its back (what
    /// a lost notice or a crash would leave); returns how many rows it changed.
    pub async fn execute_sql(&self, sql: &str, binds: &[&str]) -> u64 {
        let mut database = self.database().await;
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        let changed = query.execute(&mut database).await.unwrap().rows_affected();
        sqlx::Connection::close(database).await.ok();
        changed
    }

    /// The number one query with text `binds` reads from this server's database.
    pub async fn query_i64(&self, sql: &str, binds: &[&str]) -> i64 {
        let mut database = self.database().await;
        let mut query = sqlx::query_scalar(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        let number = query.fetch_one(&mut database).await.unwrap();
        sqlx::Connection::close(database).await.ok();
        number
    }
}

async fn into_reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, body, text }
}

/// A WebSocket client of the gateway.
pub struct Socket {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl TestServer {
    /// Opens `/api/v1/ws` as a client should: reads `hello`, then resumes from its cursor
    /// so that live delivery starts at once.
    pub async fn socket(&self, token: &str) -> (Socket, Value) {
        let (mut socket, hello) = self.socket_raw(token).await;
        socket.send(serde_json::json!({"type": "resume", "data": {"cursor": hello["data"]["cursor"]}})).await;
        let resumed = socket.next_frame().await;
        assert_eq!(resumed["type"], "resumed", "{resumed}");
        (socket, hello)
    }

    /// Opens `/api/v1/ws` with the token in the Authorization header and reads `hello`,
    /// sending nothing.
    pub async fn socket_raw(&self, token: &str) -> (Socket, Value) {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/api/v1/ws", self.base.replace("http://", "ws://"));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (stream, _) = tokio_tungstenite::connect_async(request).await.expect("websocket");
        let mut socket = Socket { stream };
        let hello = socket.next_frame().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        (socket, hello)
    }

    /// Sends a text message over HTTP and returns the message.
    pub async fn send_text(&self, token: &str, conversation_id: &str, client_id: &str, text: &str) -> Value {
        let reply = self
            .post(
                &format!("/api/v1/conversations/{conversation_id}/messages"),
                Some(token),
                serde_json::json!({"client_id": client_id, "kind": "text", "body": {"text": text}}),
            )
            .await;
        assert!(reply.status == 201 || reply.status == 200, "send: {}", reply.text);
        reply.body
    }

    /// Sends the uploaded image `media_id` as a message over HTTP; the reply, to check.
    pub async fn send_image(&self, token: &str, conversation_id: &str, client_id: &str, media_id: &str) -> Reply {
        self.post(
            &format!("/api/v1/conversations/{conversation_id}/messages"),
            Some(token),
            serde_json::json!({"client_id": client_id, "kind": "image", "body": {"media_id": media_id}}),
        )
        .await
    }

    /// The first card message in `conversation_id`, as `token` reads it (there must be one).
    pub async fn first_card(&self, token: &str, conversation_id: &str) -> Value {
        let history = self.get(&format!("/api/v1/conversations/{conversation_id}/messages"), Some(token)).await;
        history.body["items"].as_array().unwrap().iter().find(|m| m["kind"] == "card").cloned().unwrap()
    }

    /// Creates a conversation and returns its id.
    pub async fn conversation(&self, token: &str, kind: &str, member_ids: &[&str]) -> String {
        let reply = self
            .post("/api/v1/conversations", Some(token), serde_json::json!({"kind": kind, "member_ids": member_ids}))
            .await;
        assert!(reply.status == 201 || reply.status == 200, "create: {}", reply.text);
        reply.body["id"].as_str().unwrap().to_string()
    }
}

impl Socket {
    pub fn from_stream(
        stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    ) -> Self {
        Self { stream }
    }

    pub async fn send(&mut self, frame: Value) {
        use futures_util::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into()))
            .await
            .expect("send frame");
    }

    /// The next JSON frame (pings are skipped), waiting at most 10 s.
    pub async fn next_frame(&mut self) -> Value {
        self.try_next_frame(Duration::from_secs(10)).await.expect("a frame within 10 s")
    }

    /// The next JSON frame, or `None` if the socket closed or nothing came within `wait`.
    pub async fn try_next_frame(&mut self, wait: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next()).await.ok()??.ok()?;
            match message {
                tokio_tungstenite::tungstenite::Message::Text(text) => return serde_json::from_str(text.as_str()).ok(),
                tokio_tungstenite::tungstenite::Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Frames until one of type `frame_type` arrives; returns all of them, that one last.
    pub async fn frames_until(&mut self, frame_type: &str) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next_frame().await;
            let done = frame["type"] == frame_type;
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// Whether the socket closes within `wait` (skipping other frames), and if so with
    /// which close code: `None` if it stayed open, `Some(None)` if it closed without a code.
    pub async fn closed_within(&mut self, wait: Duration) -> Option<Option<u16>> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return Some(None),
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame)))) => {
                    return Some(frame.map(|frame| u16::from(frame.code)))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
