//! `plaza serve` as a child process: a node that can really die (SIGKILL: no shutdown code
//! runs, nothing is flushed or given back) and start again in place, on the same port and
//! data directory, unlike the in-process `TestServer`, whose tasks stop gracefully.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct ChildNode {
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl ChildNode {
    /// Spawns `plaza serve` with these settings on top of the test defaults, in `dir` (which
    /// may already hold a database's files), without waiting for it to be ready.
    pub fn spawn_in(env: Vec<(String, String)>, dir: tempfile::TempDir) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut node = Self { port, env, child: None, dir };
        node.respawn();
        node
    }

    /// Spawns a node in a fresh data directory and waits until it is ready.
    pub async fn start(env: &[(&str, String)]) -> Self {
        let env = env.iter().map(|(key, value)| (key.to_string(), value.clone())).collect();
        let node = Self::spawn_in(env, tempfile::tempdir().unwrap());
        node.wait_ready().await;
        node
    }

    /// Starts the process again after `kill`, with the same port, settings and data.
    pub fn respawn(&mut self) {
        assert!(self.child.is_none(), "the node is still running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_plaza"));
        command
            .arg("serve")
            .env("PLAZA_ADDR", format!("127.0.0.1:{}", self.port))
            .env("PLAZA_DATA_DIR", self.dir.path())
            .env("PLAZA_LOG", "warn")
            .env("PLAZA_AUTH_ATTEMPTS_PER_ADDRESS", "100000")
            .stdout(Stdio::null())
            .stderr(log);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        self.child = Some(command.spawn().unwrap());
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits (up to a minute) until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        wait_ready(&self.base(), || self.log()).await
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("stderr.log")
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits (up to a minute) until `base/readyz` answers 200; `log` explains a failure.
pub async fn wait_ready(base: &str, log: impl Fn() -> String) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !matches!(client.get(format!("{base}/readyz")).send().await, Ok(r) if r.status().is_success()) {
        assert!(tokio::time::Instant::now() < deadline, "{base} never became ready: {}", log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILLs the node and starts it again each time `answered` reaches one of
/// `thresholds` (waiting at most two minutes for each), then waits until it is ready:
/// the crash tests' kills, landing while their workers' requests are in flight.
pub async fn kill_and_restart_at(
    node: &std::sync::Mutex<ChildNode>,
    base: &str,
    answered: &std::sync::atomic::AtomicUsize,
    thresholds: &[usize],
    what: &str,
) {
    for &threshold in thresholds {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while answered.load(std::sync::atomic::Ordering::Relaxed) < threshold {
            assert!(tokio::time::Instant::now() < deadline, "only {answered:?} of {threshold} {what} were answered");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        {
            let mut node = node.lock().unwrap();
            node.kill();
            node.respawn();
        }
        wait_ready(base, || node.lock().unwrap().log()).await;
    }
}

/// A `plaza serve` child for a crash test, with `env` on top of the test defaults and, on
/// PostgreSQL, a fresh database; ready when returned. It is behind a mutex so that
/// [`kill_and_restart_at`] can kill it while workers talk to it: (node, a client, its base URL).
pub async fn crash_node(
    db: super::Db,
    mut env: Vec<(String, String)>,
) -> (std::sync::Arc<std::sync::Mutex<ChildNode>>, reqwest::Client, String) {
    let dir = tempfile::tempdir().unwrap();
    if db == super::Db::Postgres {
        env.push(("PLAZA_DATABASE_URL".to_string(), super::fresh_database(db, dir.path()).await));
    }
    let node = std::sync::Arc::new(std::sync::Mutex::new(ChildNode::spawn_in(env, dir)));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let base = node.lock().unwrap().base();
    wait_ready(&base, || node.lock().unwrap().log()).await;
    (node, client, base)
}

/// Spawns `workers` tasks that between them take each item of `plan` once, in order, and
/// run `work` on it with a clone of `context`, counting each finished item in `answered`
/// (which [`kill_and_restart_at`] watches to time its kills).
pub fn work_through<T, C, F, Fut>(
    workers: usize,
    plan: std::sync::Arc<Vec<T>>,
    answered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    context: C,
    work: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    T: Clone + Send + Sync + 'static,
    C: Clone + Send + 'static,
    F: Fn(C, T) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use std::sync::atomic::Ordering;
    let cursor = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (0..workers)
        .map(|_| {
            let (plan, answered, cursor, context, work) =
                (plan.clone(), answered.clone(), cursor.clone(), context.clone(), work.clone());
            tokio::spawn(async move {
                while let Some(item) = plan.get(cursor.fetch_add(1, Ordering::Relaxed)).cloned() {
                    work(context.clone(), item).await;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

/// Registers `name` (password `password-<name>`) on a node that may be killed meanwhile;
/// (token, user id).
pub async fn register_until_answered(client: &reqwest::Client, base: &str, name: &str) -> (String, String) {
    let body = serde_json::json!({"username": name, "password": format!("password-{name}"), "display_name": name});
    let url = format!("{base}/api/v1/auth/register");
    let (status, reply, _) = until_answered(client, reqwest::Method::POST, &url, None, None, Some(&body)).await;
    assert_eq!(status, 201, "{reply}");
    (reply["token"].as_str().unwrap().to_string(), reply["user"]["id"].as_str().unwrap().to_string())
}

/// Tops `token`'s wallet up by `amount` USD under the key `initial`, on a node that may be
/// killed meanwhile.
pub async fn topup_until_answered(client: &reqwest::Client, base: &str, token: &str, amount: i64) {
    let body = serde_json::json!({"amount": amount, "currency": "USD"});
    let url = format!("{base}/api/v1/wallet/topups");
    let (status, reply, _) =
        until_answered(client, reqwest::Method::POST, &url, Some(token), Some("initial"), Some(&body)).await;
    assert_eq!(status, 201, "{reply}");
}

/// Sends `request` and reads the JSON body of the answer (from a node that is not being
/// killed meanwhile: no retry).
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Requests that failed in transport or with a 5xx and were retried by [`until_answered`]
/// (the kills of the crash tests cause them).
pub static RETRIED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sends until the server answers with something other than a transport error or a 5xx
/// (for two minutes at most): the status, the JSON body, and whether it was a replay.
pub async fn until_answered(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value, bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut request = client.request(method.clone(), url);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        if let Ok(response) = request.send().await {
            let status = response.status().as_u16();
            let replayed = response.headers().get("idempotent-replayed").is_some();
            if let Ok(text) = response.text().await {
                if status < 500 {
                    return (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null), replayed);
                }
            }
        }
        RETRIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(tokio::time::Instant::now() < deadline, "{url} was never answered");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}
