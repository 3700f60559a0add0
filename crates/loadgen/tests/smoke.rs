//! Every `plaza-bench` subcommand run small, so that a benchmark that no longer runs fails
//! CI instead of rotting until someone next measures. Each test runs the bench binary with
//! the smallest sizes that still take its whole path, and asserts what it prints: the
//! result tables' header rows, a row per case, and the checks (exact sale, balanced
//! ledger, every message delivered). Numbers are never judged: the machine is shared.
//!
//! The server under test is the debug `plaza` next to the bench binary (`cargo nextest run
//! --workspace` builds it; alone, `cargo build --bin plaza` first). Without it, or without a
//! tool a subcommand needs (wrk, ffmpeg), a test says loudly that it skipped, and fails
//! when `CI` is set. The PostgreSQL and two-node runs use the cluster
//! `PLAZA_TEST_DATABASE_URL` and the NATS server `PLAZA_TEST_NATS_URL` name, as scripts/test
//! sets them. Not run here: `video-ranking --part movielens` (it downloads MovieLens and a
//! virtualenv), and live's nginx-rtmp anchor (not installed: the live runs say they left
//! it out).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A run that takes longer than this is killed and fails.
const TIME_LIMIT: Duration = Duration::from_secs(240);

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

/// Fails under CI, and otherwise says loudly that the test did not run.
fn skip(why: &str) {
    assert!(!under_ci(), "{why}: under CI every benchmark's smoke run must run");
    eprintln!("\n*** SKIPPED: {why} ***\n");
}

/// The debug `plaza` next to this bench binary, as `--plaza` takes it.
fn plaza() -> Option<String> {
    let path = Path::new(env!("CARGO_BIN_EXE_plaza-bench")).with_file_name("plaza");
    if path.is_file() {
        return Some(path.to_string_lossy().into_owned());
    }
    skip(&format!("no plaza binary at {} (cargo build --bin plaza)", path.display()));
    None
}

/// Whether `program` is on the PATH (skipping the test when it is not).
fn tool(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !found {
        skip(&format!("{program} is not installed (scripts/test installs it)"));
    }
    found
}

/// What one run printed.
struct Output {
    stdout: String,
}

/// Runs `plaza-bench` with `args` from the workspace root (where the benchmarks' relative
/// paths start), within `TIME_LIMIT`; panics, with everything it printed, unless it exits 0.
fn bench(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plaza-bench"))
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting plaza-bench");
    // Read both pipes on threads; a grandchild left holding one must not hang the test.
    let read = |mut pipe: Box<dyn Read + Send>| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            let _ = sender.send(text);
        });
        receiver
    };
    let stdout = read(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for plaza-bench") {
            break Some(status);
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let collect = |receiver: std::sync::mpsc::Receiver<String>| {
        receiver.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| "(still open)".into())
    };
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    let took = started.elapsed().as_secs_f64();
    let command = format!("plaza-bench {}", args.join(" "));
    eprintln!("{command}: {took:.1} s\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
    match status {
        Some(status) => assert!(status.success(), "{command} exited with {status}"),
        None => panic!("{command} did not finish within {} s", TIME_LIMIT.as_secs()),
    }
    Output { stdout }
}

/// A Markdown table of the output: its header's cells and each row's.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let line = line.strip_prefix('|').unwrap_or(line);
    let line = line.strip_suffix('|').unwrap_or(line);
    line.split('|').map(|cell| cell.trim().to_string()).collect()
}

impl Output {
    /// The table whose header row is exactly `header`; panics when there is none, or when a
    /// row's cells do not match the header's.
    fn table(&self, header: &str) -> Table {
        let lines: Vec<&str> = self.stdout.lines().collect();
        let at = lines
            .iter()
            .position(|line| line.trim() == header)
            .unwrap_or_else(|| panic!("no table with the header\n{header}\nin\n{}", self.stdout));
        assert!(lines.get(at + 1).is_some_and(|line| line.starts_with("|--") || line.starts_with("| --")));
        let header = cells(lines[at]);
        let rows: Vec<Vec<String>> =
            lines[at + 2..].iter().take_while(|line| line.starts_with('|')).map(|line| cells(line)).collect();
        for row in &rows {
            assert_eq!(row.len(), header.len(), "a row of {header:?} has other cells: {row:?}");
        }
        Table { header, rows }
    }

    fn says(&self, text: &str) {
        assert!(self.stdout.contains(text), "the output does not say {text:?}:\n{}", self.stdout);
    }
}

impl Table {
    /// The cell of `row` under the first column named `column`.
    fn cell<'a>(&'a self, row: &'a [String], column: &str) -> &'a str {
        let index = self.header.iter().position(|name| name == column).unwrap_or_else(|| {
            panic!("no column {column:?} in {:?}", self.header);
        });
        &row[index]
    }

    /// The table has `expected` rows.
    fn expect_rows(&self, expected: usize) -> &Self {
        assert_eq!(self.rows.len(), expected, "rows of {:?}: {:?}", self.header, self.rows);
        self
    }

    /// Every row's `column` is `value`.
    fn all(&self, column: &str, value: &str) -> &Self {
        for row in &self.rows {
            assert_eq!(self.cell(row, column), value, "{column} in {row:?}");
        }
        self
    }

    /// The first row with a cell containing `text`.
    fn row_with(&self, text: &str) -> &[String] {
        self.rows
            .iter()
            .find(|row| row.iter().any(|cell| cell.contains(text)))
            .unwrap_or_else(|| panic!("no row with {text:?} in {:?}", self.rows))
    }
}

/// The NATS server `PLAZA_TEST_NATS_URL` names (scripts/test starts one).
fn nats() -> Option<String> {
    let url = std::env::var("PLAZA_TEST_NATS_URL").ok();
    if url.is_none() {
        skip("PLAZA_TEST_NATS_URL is not set (scripts/test starts a NATS server)");
    }
    url
}

/// A fresh database in the `PLAZA_TEST_DATABASE_URL` cluster, dropped afterwards.
struct Postgres {
    admin: String,
    name: String,
    url: String,
}

impl Postgres {
    fn create() -> Option<Self> {
        let Ok(admin) = std::env::var("PLAZA_TEST_DATABASE_URL") else {
            skip("PLAZA_TEST_DATABASE_URL is not set (scripts/test starts a cluster)");
            return None;
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("plaza_bench_smoke_{}_{nanos}", std::process::id());
        Self::execute(&admin, &format!("CREATE DATABASE {name}"));
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Some(Self { admin, name, url })
    }

    fn execute(url: &str, sql: &str) {
        use sqlx::Connection;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            let mut connection = sqlx::PgConnection::connect(url).await.expect("connecting to PostgreSQL");
            sqlx::raw_sql(sql).execute(&mut connection).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
        });
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            Self::execute(&self.admin, &format!("DROP DATABASE {} WITH (FORCE)", self.name));
        }
    }
}

/// The shop bench's two tables.
const SALE_HEADER: &str = "| backend | path | buyers | units | clients | sell-out | orders/s | p50 ok | p99 ok | p50 sold out | p99 sold out | errors | ratio to naive |";
const SEARCH_HEADER: &str =
    "| backend | products | clients | endpoint | requests/s | p50 | p99 | ratio of p99 to GET /me |";

/// A sale of 20 units to 40 buyers from 4 clients, and 1 s of search over 50 products.
const SHOP_SMALL: [&str; 12] = [
    "--buyers",
    "40",
    "--units",
    "20",
    "--clients",
    "4",
    "--search-clients",
    "2",
    "--products",
    "50",
    "--duration",
    "1",
];

#[test]
fn shop() {
    let Some(plaza) = plaza() else { return };
    let output = bench(&[&["shop", "--plaza", &plaza][..], &SHOP_SMALL].concat());
    let sale = output.table(SALE_HEADER);
    sale.expect_rows(2).all("backend", "sqlite").all("buyers", "40").all("units", "20").all("errors", "0");
    sale.row_with("POST /orders (flash sale, group commit)");
    sale.row_with("Plaza's flash code, one transaction per order (no group commit, no HTTP)");
    output.says("Check: 20 paid orders holding 19800 (expected 20 and 19800), 0 units left, ledger balanced: exact, nothing oversold.\nCheck: 20 paid orders");
    output.says("The first search after start-up (the node loads 51 products into its index)");
    output.table(SEARCH_HEADER).expect_rows(2).all("backend", "sqlite").all("products", "50");
}

/// The sale over HTTP and search on PostgreSQL, with the naive baseline beside the sale in a
/// scratch database it creates and drops.
#[test]
fn shop_on_postgres() {
    let Some(plaza) = plaza() else { return };
    let Some(database) = Postgres::create() else { return };
    let output = bench(&[&["shop", "--plaza", &plaza, "--database-url", &database.url][..], &SHOP_SMALL].concat());
    let sale = output.table(SALE_HEADER);
    sale.expect_rows(3).all("backend", "postgres").all("errors", "0");
    sale.row_with("POST /orders (flash sale, group commit)");
    sale.row_with("naive: one transaction per order");
    sale.row_with("Plaza's flash code, one transaction per order (no group commit, no HTTP)");
    output.says("ledger balanced: exact, nothing oversold.");
    output.table(SEARCH_HEADER).expect_rows(2).all("backend", "postgres");
}

/// The service-layer sale on PostgreSQL, beside the naive baseline in a scratch database
/// it creates and drops.
#[test]
fn shop_service_layer_on_postgres() {
    let Some(plaza) = plaza() else { return };
    let Some(database) = Postgres::create() else { return };
    let output = bench(&[
        "shop",
        "--plaza",
        &plaza,
        "--database-url",
        &database.url,
        "--buyers",
        "40",
        "--units",
        "20",
        "--clients",
        "4",
        "--products",
        "20",
        "--service-only",
    ]);
    let sale = output.table(SALE_HEADER);
    sale.expect_rows(3).all("backend", "postgres").all("errors", "0");
    sale.row_with("ShopHandle::place_order (flash sale, group commit, no HTTP)");
    sale.row_with("naive: one transaction per order");
    sale.row_with("Plaza's flash code, one transaction per order (no group commit, no HTTP)");
    output.says("ledger balanced: exact, nothing oversold.");
}

#[test]
fn me() {
    let Some(plaza) = plaza() else { return };
    if !tool("wrk") {
        return;
    }
    let args = ["--duration", "1", "--connections", "4", "--threads", "1", "--logins", "3"];
    let output = bench(&[&["me", "--plaza", &plaza][..], &args].concat());
    let table = output.table("| backend | endpoint | requests/s | p50 | p99 | ratio to /healthz |");
    table.expect_rows(3).all("backend", "sqlite");
    table.row_with("GET /healthz (baseline)");
    table.row_with("GET /api/v1/me, session cache off");
    output.says("login (sqlite, 3 sequential): median ");
}

#[test]
fn hashing() {
    let Some(plaza) = plaza() else { return };
    let output = bench(&["hashing", "--plaza", &plaza, "--registrations", "4", "--pin-flood", "8", "--logins", "3"]);
    let table = output.table("| backend | what | value |");
    table.expect_rows(7).all("backend", "sqlite");
    table.row_with("RSS right after 4 concurrent registrations");
    table.row_with("login median while one account sends 8 PIN changes at once");
    table.row_with("the flood's answers");
}

/// The chat bench's 1:1 and group tables.
const DIRECT_HEADER: &str = "| 1:1 chats | offered rate | sent | delivered | delivered/s | p50 | p99 | max |";
const GROUP_HEADER: &str = "| group fan-out | messages | deliveries | expected | p50 | p99 | max |";

/// Idle sockets several to a user (more than the server's default of 16), 1:1 chats and a
/// group: everything sent is delivered.
/// 40 idle sockets of 2 users, 2 pairs at 20 messages/s for 1 s, 3 messages to a group of 4.
const CHAT_SMALL: [&str; 14] = [
    "--idle-sockets",
    "40",
    "--idle-users",
    "2",
    "--pairs",
    "2",
    "--rate",
    "20",
    "--duration",
    "1",
    "--group-size",
    "4",
    "--group-messages",
    "3",
];

#[test]
fn chat() {
    let Some(plaza) = plaza() else { return };
    let output = bench(&[&["chat", "--plaza", &plaza][..], &CHAT_SMALL].concat());
    output.says("## chat (sqlite)");
    output
        .table("| idle sockets | opened in | server RSS before | after | per socket |")
        .expect_rows(1)
        .all("idle sockets", "40");
    let direct = output.table(DIRECT_HEADER);
    direct.expect_rows(1);
    let row = &direct.rows[0];
    assert_ne!(direct.cell(row, "sent"), "0", "no 1:1 message was sent");
    assert_eq!(direct.cell(row, "delivered"), direct.cell(row, "sent"), "not every 1:1 message was delivered");
    let group = output.table(GROUP_HEADER);
    group.expect_rows(1).all("deliveries", "9").all("expected", "9");
}

/// The same on two nodes sharing PostgreSQL and NATS: sockets alternate between the nodes,
/// and each pair's sender and receiver are on different ones.
#[test]
fn chat_on_two_nodes() {
    let Some(plaza) = plaza() else { return };
    let Some(nats) = nats() else { return };
    let Some(database) = Postgres::create() else { return };
    let args = ["chat", "--plaza", &plaza, "--database-url", &database.url, "--nats-url", &nats];
    let output = bench(&[&args[..], &CHAT_SMALL].concat());
    output.says("## chat (postgres, 2 nodes + NATS)");
    let direct = output.table(DIRECT_HEADER);
    let row = &direct.expect_rows(1).rows[0];
    assert_ne!(direct.cell(row, "sent"), "0", "no 1:1 message was sent");
    assert_eq!(direct.cell(row, "delivered"), direct.cell(row, "sent"), "not every 1:1 message was delivered");
    output.table(GROUP_HEADER).expect_rows(1).all("deliveries", "9").all("expected", "9");
}

/// 160 HTTP clients: more than half the server's default 256 connections per address, which
/// the reqwest clients' pool and then wrk's connections would exceed together.
#[test]
fn wallet() {
    let Some(plaza) = plaza() else { return };
    let wrk = tool("wrk");
    let output = bench(&[
        "wallet",
        "--plaza",
        &plaza,
        "--accounts",
        "50",
        "--hot",
        "5",
        "--http-clients",
        "160",
        "--service-tasks",
        "8",
        "--duration",
        "1",
    ]);
    let table = output.table(
        "| backend | layer | accounts | path | transfers/s | p50 | p99 | refused (402) | errors | ratio to baseline |",
    );
    // Per workload: the floor, the service layer alone and batched, HTTP from reqwest and from wrk.
    table.expect_rows(if wrk { 10 } else { 8 }).all("backend", "sqlite").all("errors", "0");
    for path in ["floor: the rows alone", "one transaction per transfer (baseline)", "group commit", "reqwest clients"]
    {
        table.row_with(path);
    }
    if wrk {
        table.row_with("POST /wallet/transfers, wrk");
    }
    output.says("- uniform: group commit at the service layer reaches ");
    output.says("- zipf: group commit at the service layer reaches ");
    output.says("ledger check after every phase: ok (");
}

#[test]
fn video() {
    let Some(plaza) = plaza() else { return };
    if !tool("ffmpeg") {
        return;
    }
    let output = bench(&[
        "video",
        "--plaza",
        &plaza,
        "--clients",
        "2",
        "--duration",
        "1",
        "--transcodes",
        "1",
        "--clip-seconds",
        "2",
        "--clip-size",
        "320x180",
        "--feed-videos",
        "4",
        "--seed-seconds",
        "120",
        "--creators",
        "2",
        "--viewers",
        "4",
        "--feed-clients",
        "2",
    ]);
    output
        .table("| backend | GET /api/v1/me, 2 clients, 1 s | requests/s | p50 | p99 | ratio of requests/s to idle | ratio of p99 to idle |")
        .expect_rows(2);
    output
        .table("| video | publish → ready | ready after the first publish | its own transcode (ready − max(publish, previous ready)) |")
        .expect_rows(1);
    output.says("Catalogue: 4 ready videos published through tus in ");
    output.says("History: 2 viewers, ");
    let feeds = output.table("| backend | ready videos | clients | endpoint | requests/s | p50 | p99 | p99 ÷ GET /videos/{id} | p99 ÷ GET /feed/following |");
    feeds.expect_rows(5).all("backend", "sqlite").all("ready videos", "4");
    feeds.row_with("GET /feed/for-you?limit=10, 2 viewers with history");
    feeds.row_with("GET /me (floor)");
}

/// Codes, exchanges and refreshes, payments end to end, and webhooks with one slow
/// receiver: every order paid and every webhook received.
#[test]
fn miniapps() {
    let Some(plaza) = plaza() else { return };
    let output = bench(&[
        "miniapps",
        "--plaza",
        &plaza,
        "--clients",
        "2",
        "--duration",
        "1",
        "--codes",
        "10",
        "--rate",
        "10",
        "--e2e-seconds",
        "1",
        "--apps",
        "2",
        "--slow-apps",
        "1",
        "--slow-ms",
        "200",
        "--webhook-rate",
        "10",
        "--webhook-seconds",
        "1",
        "--users-per-app",
        "2",
    ]);
    let tokens = output.table(
        "| backend | clients | endpoint | requests | requests/s | p50 | p99 | requests/s to GET /me | p99 to GET /me |",
    );
    tokens.expect_rows(4).all("backend", "sqlite");
    let exchanges = tokens.row_with("authorization_code");
    assert_eq!(tokens.cell(exchanges, "requests"), "10", "each code is exchanged once");
    output
        .table("| backend | step | orders | offered | p50 | p99 | p99 to GET /me |")
        .expect_rows(4)
        .all("orders", "10");
    output.says("End to end: 10 of 10 orders paid (0 failed), 0 webhooks missing after 60 s");
    output
        .table("| backend | receivers | orders | offered | healthy apps' webhook p50 | p99 | max | healthy over 100 ms | slow apps' p50 | p99 | webhooks/s healthy | webhooks/s all | healthy p99 to the all-healthy run | failed | missing |")
        .expect_rows(2)
        .all("orders", "10")
        .all("failed", "0")
        .all("missing", "0");
}

/// Both in-process parts: ranking quality against the baselines, and latency at scale.
/// (`--part movielens` downloads MovieLens and a virtualenv: not here.)
#[test]
fn video_ranking() {
    let output = bench(&[
        "video-ranking",
        "--topics",
        "4",
        "--authors",
        "6",
        "--videos",
        "60",
        "--users",
        "8",
        "--rounds",
        "2",
        "--pages",
        "2",
        "--fresh",
        "3",
        "--concurrency",
        "2",
        "--scale-videos",
        "200",
        "--scale-users",
        "20",
        "--scale-views",
        "2",
        "--requests",
        "20",
    ]);
    let quality = output.table("| policy | watch time / session | views / session | completion rate | likes | not-interested | NDCG@10 | coverage | fresh: views each in the next 8 sessions | fresh reached | watch × most-popular | coverage × most-popular |");
    quality.expect_rows(5);
    quality.row_with("Plaza For You (`VideoHandle::for_you`)");
    output.says("the learnt scorer after the run: ");
    let scale = output.table("| backend | call | calls | p50 | p99 | p99 × `video` by id |");
    scale.expect_rows(6).all("backend", "sqlite");
    assert_eq!(scale.cell(scale.row_with("`for_you`, first page of 10"), "calls"), "20");
}

#[test]
fn rides() {
    let output = bench(&[
        "rides",
        "--index-drivers",
        "300",
        "--queries",
        "300",
        "--sim-drivers",
        "20",
        "--demand",
        "0.2",
        "--sim-minutes",
        "5",
    ]);
    output.says("### Index: 300 online drivers");
    output.table("| measure | result | target | met |").expect_rows(2);
    let dispatch = output.table("| demand | strategy | requests | service rate | abandoned (of which no_driver) | declines | time to match p50 / p95 | pickup ETA p50 / p95 | mean pickup distance | driver utilisation | rider on board | run time |");
    dispatch.expect_rows(2).all("demand", "0.2/s");
    let requests: Vec<&str> = dispatch.rows.iter().map(|row| dispatch.cell(row, "requests")).collect();
    assert_eq!(requests[0], requests[1], "greedy and batched must see the same demand");
    output
        .table("| demand | batched: pickup distance | batched: mean pickup ETA | batched: rides matched |")
        .expect_rows(1);
}

/// The live chat's table.
const LIVE_CHAT_HEADER: &str = "| backend | viewers | offered | accepted (202) | refused | deliveries | expected | deliveries/s | p50 | p99 | max | chat frames per viewer per s | server CPU | server RSS: no viewers / joined / max in chat | viewers dropped |";

/// 20 viewers, 10 messages/s for 2 s, 1 s of GET /me from 1 client, no ingest run.
const LIVE_FANOUT_SMALL: [&str; 12] = [
    "--viewers",
    "20",
    "--rate",
    "10",
    "--duration",
    "2",
    "--me-clients",
    "1",
    "--me-seconds",
    "1",
    "--ingest-seconds",
    "0",
];

/// The chat fan-out: one room, its viewers, every accepted message to every viewer.
#[test]
fn live_chat_fanout() {
    let Some(plaza) = plaza() else { return };
    if !tool("ffmpeg") {
        return;
    }
    let output = bench(&[&["live", "--plaza", &plaza][..], &LIVE_FANOUT_SMALL].concat());
    output.says("## live (sqlite)");
    let chat = output.table(LIVE_CHAT_HEADER);
    chat.expect_rows(1).all("viewers", "20").all("viewers dropped", "0");
    let row = &chat.rows[0];
    assert_ne!(chat.cell(row, "accepted (202)"), "0", "no chat message was accepted");
    assert_eq!(chat.cell(row, "deliveries"), chat.cell(row, "expected"), "not every message reached every viewer");
    output
        .table("| backend | GET /me (1 clients, one request each every 20 ms) | requests | p50 | p99 | p99 to idle |")
        .expect_rows(3);
}

/// The fan-out with the viewers split over two nodes sharing PostgreSQL and NATS.
#[test]
fn live_chat_fanout_on_two_nodes() {
    let Some(plaza) = plaza() else { return };
    if !tool("ffmpeg") {
        return;
    }
    let Some(nats) = nats() else { return };
    let Some(database) = Postgres::create() else { return };
    let args = ["live", "--plaza", &plaza, "--database-url", &database.url, "--nats-url", &nats];
    let output = bench(&[&args[..], &LIVE_FANOUT_SMALL].concat());
    output.says("## live (postgres, 2 nodes + NATS)");
    let chat = output.table(LIVE_CHAT_HEADER);
    let row = &chat.expect_rows(1).all("viewers dropped", "0").rows[0];
    assert_ne!(chat.cell(row, "accepted (202)"), "0", "no chat message was accepted");
    assert_eq!(chat.cell(row, "deliveries"), chat.cell(row, "expected"), "not every message reached every viewer");
}

/// Glass to glass alone: Debian's Chromium plays the room with hls.js (from web/node_modules,
/// which scripts/test installs before the tests) and reads the frame numbers back.
#[test]
fn live_glass_to_glass() {
    let Some(plaza) = plaza() else { return };
    if !tool("ffmpeg") || !tool("node") || !tool("chromium") {
        return;
    }
    let hls = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/node_modules/hls.js");
    if !hls.is_dir() {
        skip("web/node_modules has no hls.js (npm ci in web/)");
        return;
    }
    let output = bench(&["live", "--plaza", &plaza, "--glass-only", "--ingest-seconds", "12"]);
    output.says("## live glass to glass (sqlite): Chromium + hls.js, ");
    let glass = output.table(
        "| backend | player | frames presented (steady) | distinct | misread | p50 | p99 | max | p50 to nginx |",
    );
    let row = glass.row_with("plaza");
    assert_ne!(glass.cell(row, "frames presented (steady)"), "0", "Chromium presented no frame of Plaza's stream");
}

/// RTMP ingest against ffmpeg's own HLS, and the CPU of a copying and of a transcoding
/// room. Glass to glass needs 12 s of ingest (it has a run of its own above), and the
/// nginx-rtmp anchor is not installed: the run says it left them out.
#[test]
fn live_ingest() {
    let Some(plaza) = plaza() else { return };
    if !tool("ffmpeg") {
        return;
    }
    let output = bench(&["live", "--plaza", &plaza, "--viewers", "0", "--ingest-seconds", "6"]);
    output.says("## live ingest (sqlite)");
    let ingest = output.table("| backend | path | segments | mean segment | first segment | p50 | p99 | max | p50 to ffmpeg alone | p99 to ffmpeg alone |");
    let plaza_row = ingest.row_with("Plaza: RTMP → its ffmpeg → object store → live playlist");
    assert_ne!(ingest.cell(plaza_row, "segments"), "0", "Plaza listed no segment");
    ingest.row_with("ffmpeg's own HLS of the same stream (baseline)");
    output.says("(copy: H.264/AAC over RTMP into 1 s HLS segments) | CPU, % of a core |");
    output.says("(transcode: a browser's VP8/Opus WebM over the ingest socket to H.264/AAC) | CPU, % of a core |");
    output.says("(no glass-to-glass run: it needs --ingest-seconds 12 or more");
}
