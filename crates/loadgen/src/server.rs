//! Starting and stopping a `plaza serve` under test.

use anyhow::Context;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct PlazaServer {
    child: Child,
    pub base: String,
    _data_dir: tempfile::TempDir,
}

impl PlazaServer {
    /// Starts `plaza serve` on a free loopback port; `env` adds settings.
    pub fn start(plaza: &Path, database_url: Option<&str>, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let mut command = Command::new(plaza);
        command
            .arg("serve")
            .env("PLAZA_ADDR", "127.0.0.1:0")
            .env("PLAZA_DATA_DIR", data_dir.path())
            .env("PLAZA_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            command.env("PLAZA_DATABASE_URL", url);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().with_context(|| format!("starting {}", plaza.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let base = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .map(|url| url.trim_end_matches('/').to_string())
            .with_context(|| format!("plaza did not print its address: {line:?}"))?;
        Ok(Self { child, base, _data_dir: data_dir })
    }
}

impl PlazaServer {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server process's resident memory, from /proc (0 where unavailable).
    pub fn rss_bytes(&self) -> u64 {
        rss_of(self.child.id())
    }
}

impl Drop for PlazaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plaza's services in this process, on a fresh database (SQLite in a temporary directory
/// unless `database_url` names PostgreSQL), with the pool `plaza serve` uses by default: for
/// seeding at the service layer, and for measuring it.
pub async fn in_process(
    database_url: Option<String>,
) -> anyhow::Result<(tempfile::TempDir, plaza_server::config::Config, plaza_store::Store, plaza_server::app::Services)>
{
    let data_dir = tempfile::tempdir()?;
    let mut config = plaza_server::config::Config::for_test(data_dir.path(), database_url);
    config.db_pool_max = 16;
    let store = plaza_server::app::open_store(&config).await?;
    let services = plaza_server::app::services(store.clone(), plaza_bus::Bus::in_process(), &config)?;
    Ok((data_dir, config, store, services))
}

/// What a benchmark runs against: the flags every subcommand that starts a server shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The plaza binary to benchmark (build it with --release).
    #[arg(long, default_value = "target/release/plaza")]
    pub plaza: std::path::PathBuf,
    /// A postgres:// URL of an empty database; SQLite in a temporary directory if unset.
    #[arg(long)]
    pub database_url: Option<String>,
}

impl Target {
    /// The engine's name as the result tables print it.
    pub fn backend(&self) -> &'static str {
        if self.database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

/// A process's resident memory, from /proc (0 where unavailable).
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// A short tag that makes usernames unique per run (runs may share a database).
pub fn run_tag() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{:x}", nanos % 0xFFFFF)
}

/// Registers `username` over HTTP; (token, user id).
pub async fn register(client: &reqwest::Client, base: &str, username: &str) -> anyhow::Result<(String, String)> {
    let body: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&serde_json::json!({"username": username, "password": "bench-password"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = body["token"].as_str().context("no token")?.to_string();
    let id = body["user"]["id"].as_str().context("no user id")?.to_string();
    Ok((token, id))
}

/// Registers `names`, 16 at a time (each is an argon2id hash on the server); (token, user
/// id) each, in order.
pub async fn register_many(
    client: &reqwest::Client,
    base: &str,
    names: Vec<String>,
) -> anyhow::Result<Vec<(String, String)>> {
    use futures_util::StreamExt;
    let registering =
        futures_util::stream::iter(names).map(|username| async move { register(client, base, &username).await });
    registering.buffered(16).collect::<Vec<_>>().await.into_iter().collect()
}
