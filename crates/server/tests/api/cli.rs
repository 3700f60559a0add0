//! The `plaza` binary as an operator runs it: flags, start-up errors, migrate, demo, JSON
//! logs and graceful shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::process::json_of;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn plaza() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plaza"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PLAZA_") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn version_and_help_describe_the_binary() {
    let version = plaza().arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("plaza {}", env!("CARGO_PKG_VERSION")));
    let help = plaza().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for word in
        ["serve", "migrate", "demo", "PLAZA_ADDR", "PLAZA_DATABASE_URL", "PLAZA_DATA_DIR", "PLAZA_ADMINS", "PLAZA_LOG"]
    {
        assert!(text.contains(word), "--help mentions {word}:\n{text}");
    }
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("PLAZA_ADDR", "not-an-address"),
        ("PLAZA_DATABASE_URL", "mysql://localhost/plaza"),
        ("PLAZA_ADMINS", "alice,not valid"),
        ("PLAZA_LOG", "info,[[["),
        ("PLAZA_LOG_FORMAT", "yaml"),
        ("PLAZA_DB_POOL_MAX", "lots"),
        ("PLAZA_CURRENCIES", "USD,ZZZ"),
        ("PLAZA_TOPUP_DAILY_LIMIT", "-1"),
        ("PLAZA_RED_PACKET_REFUND_SECONDS", "0"),
    ];
    for (setting, value) in cases {
        let output = plaza().env("PLAZA_DATA_DIR", dir.path()).env(setting, value).arg("migrate").output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{setting}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one line for {setting}: {stderr}");
        assert!(stderr.contains(setting), "{stderr}");
    }
    // A flag mirrors its variable and names the same setting.
    let output = plaza().args(["--addr", "nope", "migrate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PLAZA_ADDR"));
}

#[test]
fn migrate_then_demo_twice_seeds_the_same_demo_users_once() {
    let dir = tempfile::tempdir().unwrap();
    let migrate = plaza().env("PLAZA_DATA_DIR", dir.path()).arg("migrate").output().unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    assert!(dir.path().join("plaza.db").exists());
    let first = plaza().env("PLAZA_DATA_DIR", dir.path()).arg("demo").output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let second = plaza().env("PLAZA_DATA_DIR", dir.path()).arg("demo").output().unwrap();
    assert!(second.status.success());
    let text = String::from_utf8_lossy(&second.stdout);
    for name in ["alice", "bob", "carol", "dave", "plaza-demo"] {
        assert!(text.contains(name), "{text}");
    }
    assert_eq!(String::from_utf8_lossy(&first.stdout), text);
    // Two chats with history, seeded once however often demo runs.
    let counts = tokio::runtime::Runtime::new().unwrap().block_on(async {
        sqlx::any::install_default_drivers();
        let url = plaza_store::Store::sqlite_url_in(dir.path());
        let mut connection = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
        let conversations: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM conversations").fetch_one(&mut connection).await.unwrap();
        let messages: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM messages").fetch_one(&mut connection).await.unwrap();
        let movements: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM wallet_movements").fetch_one(&mut connection).await.unwrap();
        let videos: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM videos").fetch_one(&mut connection).await.unwrap();
        let follows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM follows").fetch_one(&mut connection).await.unwrap();
        (conversations, messages, movements, videos, follows)
    });
    assert_eq!(
        counts,
        (2, 14, 9, 12, 4),
        "a direct chat of 4 messages and a transfer, a group of 1 + 4, a transfer, a red packet, bob's \
         opening it and alice's group-buy card; 4 top-ups, 2 transfers, a red packet, a claim and the group \
         order's hold; twelve clips and four follows"
    );
    // The demo money leaves the ledger sound.
    let check = plaza().env("PLAZA_DATA_DIR", dir.path()).args(["ledger", "check"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    assert!(String::from_utf8_lossy(&check.stdout).contains("ledger OK"));
}

/// The README's sample output is what `bash scripts/run` prints: `plaza demo`'s text, then
/// the line `serve` prints (at the default address the README shows).
#[test]
fn the_readme_shows_exactly_what_the_demo_prints() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find("```\nDemo data is ready.").expect("the README has the demo's sample output") + 4;
    let sample = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let demo =
        plaza().env("PLAZA_DATA_DIR", dir.path()).env("PLAZA_ADDR", "127.0.0.1:8080").arg("demo").output().unwrap();
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    let printed = format!(
        "{}Plaza is running at http://127.0.0.1:8080/  (API reference: /api/docs)\n",
        String::from_utf8_lossy(&demo.stdout)
    );
    assert_eq!(sample, printed, "README.md's sample output is not what the binary prints");
    assert!(printed.contains("simulated drivers") && printed.contains("Rides tab"), "{printed}");
}

#[test]
fn demo_reseeds_after_alice_has_many_newer_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let first = plaza().env("PLAZA_DATA_DIR", dir.path()).arg("demo").output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = plaza_store::Store::sqlite_url_in(dir.path());
    let count_conversations = |url: &str| {
        runtime.block_on(async {
            sqlx::any::install_default_drivers();
            let mut connection = <sqlx::AnyConnection as sqlx::Connection>::connect(url).await.unwrap();
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM conversations").fetch_one(&mut connection).await.unwrap();
            count
        })
    };
    // More than a page of groups newer than the demo's, all with alice in them.
    runtime.block_on(async {
        sqlx::any::install_default_drivers();
        let mut connection = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
        let alice: String = sqlx::query_scalar("SELECT id FROM users WHERE username = 'alice'")
            .fetch_one(&mut connection)
            .await
            .unwrap();
        let later = plaza_kernel::Timestamp::now().unix_millis() + 60_000;
        // Each group, then alice as its owner: both statements take (id, alice, time).
        let statements = [
            "INSERT INTO conversations (id, kind, title, owner_id, direct_key, last_seq, last_activity_at, created_at)
             VALUES ($1, 'group', 'Other', $2, NULL, 0, $3, $3)",
            "INSERT INTO conversation_members (conversation_id, user_id, role, read_seq, joined_at)
             VALUES ($1, $2, 'owner', 0, $3)",
        ];
        for n in 0..250 {
            let id = format!("newer-{n:03}");
            for statement in statements {
                sqlx::query(statement).bind(&id).bind(&alice).bind(later + n).execute(&mut connection).await.unwrap();
            }
        }
    });
    assert_eq!(count_conversations(&url), 252);
    let second = plaza().env("PLAZA_DATA_DIR", dir.path()).arg("demo").output().unwrap();
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(count_conversations(&url), 252, "the demo's own group was found, not made again");
}

/// Starts `plaza serve` on a free port and returns the child and its base URL.
fn spawn_server(dir: &std::path::Path, extra_env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut command = plaza();
    command
        .env("PLAZA_DATA_DIR", dir)
        .env("PLAZA_ADDR", "127.0.0.1:0")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .map(|url| url.trim_end_matches('/').to_string())
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    (child, base)
}

fn in_flight(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with("plaza_http_requests_in_flight"))
        .and_then(|line| line.split_whitespace().last())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_and_json_logs_carry_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_server(dir.path(), &[("PLAZA_LOG_FORMAT", "json"), ("PLAZA_LOG", "info")]);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Registrations are slow on purpose (argon2id), so several are in flight at once.
    let registrations: Vec<_> = (0..8)
        .map(|n| {
            let client = client.clone();
            let url = format!("{base}/api/v1/auth/register");
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&serde_json::json!({"username": format!("late_{n}"), "password": "long enough"}))
                    .send()
                    .await
                    .map(|response| response.status().as_u16())
            })
        })
        .collect();
    // Wait until the server reports them in flight (the metrics request itself is one more).
    loop {
        let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        if in_flight(&metrics) >= 4.0 {
            break;
        }
        assert!(Instant::now() < deadline, "requests never showed as in flight");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());

    let mut statuses = Vec::new();
    for registration in registrations {
        statuses.push(registration.await.unwrap());
    }
    let finished = statuses.iter().filter(|status| matches!(status, Ok(201))).count();
    let refused = statuses.iter().filter(|status| status.is_err()).count();
    assert!(finished >= 3, "the requests in flight at SIGTERM completed: {statuses:?}");
    assert_eq!(finished + refused, 8, "each request either completed or was never accepted: {statuses:?}");

    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
    assert!(client.get(format!("{base}/healthz")).send().await.is_err(), "no longer listening");

    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let mut saw_request_log = false;
    for line in stderr.lines().filter(|line| !line.trim().is_empty()) {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if entry["fields"]["message"] == "registered" {
            assert_eq!(entry["span"]["request_id"].as_str().map(str::len), Some(26), "{line}");
            saw_request_log = true;
        }
    }
    assert!(saw_request_log, "{stderr}");
}

/// `plaza demo --serve` (what `bash scripts/run` starts) has carol's room live through the
/// real RTMP ingest, her first product pinned, so a newcomer sees a live room at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serve_has_carols_room_live_with_a_product_pinned() {
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut child = plaza()
        .env("PLAZA_DATA_DIR", dir.path())
        .env("PLAZA_ADDR", "127.0.0.1:0")
        .env("PLAZA_LIVE_RTMP_ADDR", free())
        .env("PLAZA_DEMO_COFFEE_ADDR", free())
        .args(["demo", "--serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Killed if an assertion fails: its ffmpegs end with their connection or pipe to it.
    let mut child = KilledOnDrop(Some(child));
    let base = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the demo never said where it runs");
        if let Some(rest) = line.strip_prefix("Plaza is running at ") {
            break rest.split_whitespace().next().unwrap().trim_end_matches('/').to_string();
        }
    };
    let client = reqwest::Client::new();
    let login: serde_json::Value = json_of(
        client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "alice", "password": "plaza-demo"})),
    )
    .await;
    let token = login["token"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let room = loop {
        let live: serde_json::Value =
            json_of(client.get(format!("{base}/api/v1/live/rooms?status=live")).bearer_auth(&token)).await;
        let found =
            live["items"].as_array().unwrap().iter().find(|room| room["title"] == "Live from the trail").cloned();
        if let Some(room) = found {
            break room;
        }
        assert!(Instant::now() < deadline, "the demo room never went live: {live}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(room["status"], "live", "{room}");
    assert_eq!(room["host"]["username"], "carol", "{room}");
    assert!(room["pinned_product"]["id"].is_string(), "a product is pinned: {room}");
    let hls = room["playback"]["hls_url"].as_str().unwrap();
    let playlist = client.get(format!("{base}{hls}")).send().await.unwrap();
    assert_eq!(playlist.status(), 200);
    assert!(playlist.text().await.unwrap().contains(".ts"), "the stream has segments");
    // SIGTERM, so the node stops its demo publisher (ffmpeg) with it.
    let mut child = child.0.take().unwrap();
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// A child process killed when the test lets go of it, however the test ends.
struct KilledOnDrop(Option<std::process::Child>);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
