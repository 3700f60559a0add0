//! `plaza-bench wallet`: transfers per second and their latency, at the service layer
//! in-process (the group-committed `Wallet::transfer`, and one transaction per transfer
//! with `Wallet::transfer_alone` as the baseline) and through HTTP against a release
//! `plaza serve`, with transfers spread over many accounts and with a few hot accounts
//! drawn from a Zipf distribution. The ledger is checked after every phase.
//!
//! Users are seeded with SQL (users and sessions here; their funded accounts, with one
//! top-up posting each and the funding account carrying the other side, through
//! `plaza_wallet::bench_support`): registering 10,000 users through argon2 would take
//! minutes. The ledger check after seeding proves the seed balances.
//!
//! Alongside, the **database floor** (`plaza_wallet::bench_support::DatabaseFloor`): per
//! transfer only the rows any transfer over this schema must write, as batches of 1,024 in
//! one transaction each, from one task. No transfer path over these tables can beat it on
//! the same machine, which tells a slow code path from a slow database.

use crate::random::Random;
use crate::server::{PlazaServer, Target};
use anyhow::Context;
use hdrhistogram::Histogram;
use plaza_accounts::User;
use plaza_kernel::Timestamp;
use plaza_store::Store;
use plaza_wallet::bench_support::{DatabaseFloor, FloorTransfer};
use plaza_wallet::model::IdempotencyKey;
use plaza_wallet::{TransferRequest, Wallet, WalletError};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub target: Target,
    /// Users with money (the "many accounts" workload picks any two).
    #[arg(long, default_value_t = 10_000)]
    pub accounts: usize,
    /// Hot users for the Zipf workload.
    #[arg(long, default_value_t = 100)]
    pub hot: usize,
    /// Zipf exponent over the hot users.
    #[arg(long, default_value_t = 1.1)]
    pub zipf_s: f64,
    /// Concurrent keep-alive HTTP clients.
    #[arg(long, default_value_t = 256)]
    pub http_clients: usize,
    /// Concurrent callers at the service layer.
    #[arg(long, default_value_t = 1024)]
    pub service_tasks: usize,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Only the service layer, with group commit (no baseline, no HTTP): for profiling.
    #[arg(long, conflicts_with = "http_only")]
    pub service_only: bool,
    /// Only the HTTP runs (no service layer, no floor): for profiling the server.
    #[arg(long)]
    pub http_only: bool,
}

/// What every seeded user starts with, in cents.
const SEED_BALANCE: i64 = 1_000_000;

/// How the two sides of a transfer are picked.
#[derive(Clone)]
enum Pick {
    /// Any two of the first `n` users.
    Uniform(usize),
    /// Two of the hot users, by a Zipf CDF.
    Zipf(Arc<Vec<f64>>),
}

impl Pick {
    fn zipf(hot: usize, s: f64) -> Self {
        let weights: Vec<f64> = (1..=hot).map(|rank| 1.0 / (rank as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        Self::Zipf(Arc::new(
            weights
                .iter()
                .map(|weight| {
                    sum += weight / total;
                    sum
                })
                .collect(),
        ))
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Uniform(_) => "uniform",
            Self::Zipf(_) => "zipf",
        }
    }

    fn one(&self, random: &mut Random) -> usize {
        match self {
            Self::Uniform(n) => (random.next() % *n as u64) as usize,
            Self::Zipf(cdf) => {
                let u = (random.next() >> 11) as f64 / (1u64 << 53) as f64;
                cdf.partition_point(|p| *p < u).min(cdf.len() - 1)
            }
        }
    }

    /// Two different users, and an amount of 1 to 100 cents.
    fn transfer(&self, random: &mut Random) -> (usize, usize, i64) {
        let from = self.one(random);
        let mut to = self.one(random);
        for _ in 0..8 {
            if to != from {
                break;
            }
            to = self.one(random);
        }
        if to == from {
            to = (from + 1) % self.population();
        }
        (from, to, 1 + (random.next() % 100) as i64)
    }

    fn population(&self) -> usize {
        match self {
            Self::Uniform(n) => *n,
            Self::Zipf(cdf) => cdf.len(),
        }
    }
}

/// One measured run.
struct Measured {
    transfers_per_second: f64,
    refused: u64,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Measured {
    fn from_histogram(transfers_per_second: f64, refused: u64, errors: u64, latency_us: &Histogram<u64>) -> Self {
        Self {
            transfers_per_second,
            refused,
            errors,
            p50_ms: latency_us.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: latency_us.value_at_quantile(0.99) as f64 / 1000.0,
        }
    }
}

impl Measured {
    fn row(&self, backend: &str, layer: &str, workload: &str, path: &str, baseline: Option<&Measured>) -> String {
        let ratio = baseline
            .map(|baseline| format!("{:.1}×", self.transfers_per_second / baseline.transfers_per_second.max(1.0)))
            .unwrap_or_else(|| "—".into());
        format!(
            "| {backend} | {layer} | {workload} | {path} | {:.0} | {:.1} ms | {:.1} ms | {} | {} | {ratio} |",
            self.transfers_per_second, self.p50_ms, self.p99_ms, self.refused, self.errors,
        )
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let backend = options.target.backend();
    let (_data_dir, config, store, services) = crate::server::in_process(options.target.database_url.clone()).await?;
    let started = Instant::now();
    let tokens = seed(&store, options.accounts).await?;
    let ids: Vec<String> = tokens.iter().map(|(id, _)| id.clone()).collect();
    let mut users = services.accounts.users(&ids).await?;
    let order: std::collections::HashMap<&str, usize> =
        ids.iter().enumerate().map(|(position, id)| (id.as_str(), position)).collect();
    users.sort_by_key(|user| order.get(user.id.as_str()).copied());
    anyhow::ensure!(users.len() == options.accounts, "seeded {} users, found {}", options.accounts, users.len());
    check_ledger(&store, "after seeding").await?;
    eprintln!("seeded {} users in {:.1} s", users.len(), started.elapsed().as_secs_f64());

    let users = Arc::new(users);
    let workloads = [Pick::Uniform(options.accounts), Pick::zipf(options.hot.min(options.accounts), options.zipf_s)];
    let duration = Duration::from_secs(options.duration);
    let mut rows = Vec::new();
    let mut shares = Vec::new();
    for pick in &workloads {
        if options.http_only {
            break;
        }
        let floor = drive_floor(&store, &users, pick, duration).await?;
        rows.push(floor.row(backend, "database", pick.name(), "floor: the rows alone, batches of 1024", None));
        check_ledger(&store, "after the floor runs").await?;
        let batched = drive_service(&services.wallet, &users, pick, options.service_tasks, duration, true).await?;
        shares.push(format!(
            "{}: group commit at the service layer reaches {:.0}% of the database floor",
            pick.name(),
            100.0 * batched.transfers_per_second / floor.transfers_per_second
        ));
        if options.service_only {
            rows.push(batched.row(backend, "service", pick.name(), "group commit", None));
            continue;
        }
        let alone = drive_service(&services.wallet, &users, pick, options.service_tasks, duration, false).await?;
        rows.push(alone.row(backend, "service", pick.name(), "one transaction per transfer (baseline)", None));
        rows.push(batched.row(backend, "service", pick.name(), "group commit", Some(&alone)));
        check_ledger(&store, "after the service-layer runs").await?;
    }

    if options.service_only {
        print_rows(&rows);
        print_lines(&shares);
        store.close().await;
        return Ok(());
    }
    // Every connection comes from 127.0.0.1: the reqwest clients' (kept open in the pool
    // through the wrk run), then wrk's as many, and the readiness probe.
    let per_address = 2 * options.http_clients + 64;
    let per_address_text = per_address.to_string();
    let mut settings = Vec::new();
    if per_address > 256 {
        settings.push(("PLAZA_CONNECTIONS_PER_ADDRESS_MAX", per_address_text.as_str()));
    }
    let server = PlazaServer::start(&options.target.plaza, Some(&config.database_url), &settings)?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(options.http_clients).build()?;
    wait_ready(&client, &server.base).await?;
    let tokens = Arc::new(tokens);
    for pick in &workloads {
        let measured = drive_http(&client, &server.base, &tokens, pick, options.http_clients, duration).await?;
        rows.push(measured.row(
            backend,
            "HTTP",
            pick.name(),
            "POST /wallet/transfers, reqwest clients in-process",
            None,
        ));
        match drive_wrk(&server.base, &tokens, pick, options.zipf_s, options.http_clients, duration) {
            Ok(measured) => {
                rows.push(measured.row(backend, "HTTP", pick.name(), "POST /wallet/transfers, wrk", None));
            }
            Err(error) => eprintln!("wrk run skipped: {error:#}"),
        }
    }
    drop(server);
    let check = check_ledger(&store, "after the HTTP runs").await?;

    print_rows(&rows);
    print_lines(&shares);
    println!();
    println!(
        "{} accounts ({} hot, Zipf s = {}), {} service tasks, {} HTTP clients, {} s per run; ledger check after every phase: ok ({} accounts, sum {})",
        options.accounts,
        options.hot,
        options.zipf_s,
        options.service_tasks,
        options.http_clients,
        options.duration,
        check.accounts_checked,
        check.currencies.iter().map(|currency| format!("{} {}", currency.currency, currency.sum)).collect::<Vec<_>>().join(", ")
    );
    store.close().await;
    Ok(())
}

fn print_lines(lines: &[String]) {
    if !lines.is_empty() {
        println!();
    }
    for line in lines {
        println!("- {line}");
    }
}

fn print_rows(rows: &[String]) {
    println!(
        "| backend | layer | accounts | path | transfers/s | p50 | p99 | refused (402) | errors | ratio to baseline |"
    );
    println!("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        println!("{row}");
    }
}

/// Inserts `count` users with a session and `SEED_BALANCE` each, in one transaction;
/// returns (user id, token) in order.
pub(crate) async fn seed(store: &Store, count: usize) -> anyhow::Result<Vec<(String, String)>> {
    let now = Timestamp::now().unix_millis();
    let people: Vec<(String, String)> = (0..count)
        .map(|_| (plaza_kernel::new_id(), plaza_kernel::id::to_hex(&plaza_kernel::random_token_bytes::<32>())))
        .collect();
    let mut transaction = store.begin().await?;
    for (chunk_index, chunk) in people.chunks(500).enumerate() {
        // The password hash '!' matches no password: these users only use their session.
        let sql = format!(
            "INSERT INTO users (id, username, display_name, display_name_lower, password_hash, created_at) VALUES {}",
            (0..chunk.len())
                .map(|n| format!("(${}, ${}, ${}, ${}, '!', $1)", 4 * n + 2, 4 * n + 3, 4 * n + 4, 4 * n + 5))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut query = sqlx::query(&sql).bind(now);
        for (offset, (id, _)) in chunk.iter().enumerate() {
            let name = format!("bench_{}", chunk_index * 500 + offset);
            query = query.bind(id).bind(name.clone()).bind(name.clone()).bind(name);
        }
        query.execute(&mut *transaction).await?;

        let sql = format!(
            "INSERT INTO sessions (token_hash, user_id, created_at, last_used_at) VALUES {}",
            (0..chunk.len())
                .map(|n| format!("(${}, ${}, $1, $1)", 2 * n + 2, 2 * n + 3))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut query = sqlx::query(&sql).bind(now);
        for (id, token) in chunk {
            query = query.bind(plaza_kernel::id::to_hex(&Sha256::digest(token.as_bytes()))).bind(id);
        }
        query.execute(&mut *transaction).await?;
    }
    let ids: Vec<String> = people.iter().map(|(id, _)| id.clone()).collect();
    plaza_wallet::bench_support::seed_funded_accounts(&mut transaction, &ids, SEED_BALANCE).await?;
    transaction.commit().await?;
    Ok(people)
}

async fn check_ledger(store: &Store, when: &str) -> anyhow::Result<plaza_wallet::LedgerCheck> {
    let check = plaza_wallet::check_ledger(store).await?;
    anyhow::ensure!(
        check.ok,
        "the ledger does not balance {when}: {:?} {:?} {:?}",
        check.currencies,
        check.mismatches,
        check.problems
    );
    Ok(check)
}

/// `tasks` concurrent callers of the wallet for `duration`, each transfer with its own key.
async fn drive_service(
    wallet: &Wallet,
    users: &Arc<Vec<User>>,
    pick: &Pick,
    tasks: usize,
    duration: Duration,
    batched: bool,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let (wallet, users, pick) = (wallet.clone(), users.clone(), pick.clone());
        handles.push(tokio::spawn(async move {
            let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ (task as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut refused, mut errors) = (0u64, 0u64);
            let mut n = 0u64;
            while Instant::now() < deadline {
                let (from, to, amount) = pick.transfer(&mut random);
                let request = TransferRequest {
                    to_user_id: users[to].id.clone(),
                    money: wallet.money(amount, "USD")?,
                    note: None,
                    conversation_id: None,
                };
                let key = IdempotencyKey::parse(&format!("s-{}-{batched}-{task}-{n}-{}", pick.name(), random.next()))
                    .map_err(|reason| anyhow::anyhow!(reason))?;
                n += 1;
                let sent = Instant::now();
                let outcome = if batched {
                    wallet.transfer(&users[from], request, Some(&key), None).await
                } else {
                    wallet.transfer_alone(&users[from], request, Some(&key), None).await
                };
                histogram.saturating_record(sent.elapsed().as_micros() as u64);
                match outcome {
                    Ok(_) => {}
                    Err(WalletError::InsufficientFunds { .. }) => refused += 1,
                    Err(error) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("transfer failed: {error}");
                        }
                    }
                }
            }
            anyhow::Ok((histogram, refused, errors))
        }));
    }
    collect(handles, started).await
}

/// wrk's side of the HTTP run: each request a transfer between two users picked the way
/// `Pick` does (uniform over the first `uniform` users, or Zipf over the hot ones), with
/// its own `Idempotency-Key`; statuses are counted per thread and printed by `done`.
const WRK_TRANSFERS_LUA: &str = r#"
local users, cdf, uniform, run = {}, nil, 0, ""
local counter, threads = 0, {}
-- Global, so that `done` can read each thread's counts with thread:get.
statuses = {}

function setup(thread)
  thread:set("thread_number", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local id, token = line:match("^(%S+) (%S+)$")
    users[#users + 1] = { id, "Bearer " .. token }
  end
  run = args[2]
  if args[3] == "uniform" then
    uniform = #users
  else
    local hot, s, total = tonumber(args[4]), tonumber(args[5]), 0
    cdf = {}
    for rank = 1, hot do total = total + 1 / rank ^ s; cdf[rank] = total end
    for rank = 1, hot do cdf[rank] = cdf[rank] / total end
  end
  math.randomseed(thread_number * 7919 + #run)
end

local function one()
  if cdf == nil then return math.random(uniform) end
  local u = math.random()
  for rank = 1, #cdf do if u <= cdf[rank] then return rank end end
  return #cdf
end

function request()
  local from, to = one(), one()
  for _ = 1, 8 do if to ~= from then break end; to = one() end
  if to == from then to = from % #users + 1 end
  counter = counter + 1
  local body = '{"to_user_id":"' .. users[to][1] .. '","amount":' .. math.random(100) .. ',"currency":"USD"}'
  return wrk.format("POST", "/api/v1/wallet/transfers", {
    ["Authorization"] = users[from][2],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = run .. "-" .. thread_number .. "-" .. counter,
  }, body)
end

function response(status)
  statuses[status] = (statuses[status] or 0) + 1
end

function done()
  local total = {}
  for _, thread in ipairs(threads) do
    local counted = thread:get("statuses")
    for status, count in pairs(counted) do total[status] = (total[status] or 0) + count end
  end
  for status, count in pairs(total) do print("status " .. status .. " " .. count) end
end
"#;

/// wrk posting transfers over `connections` connections for `duration`; the bench
/// process only waits meanwhile, so the server has the machine's cores to itself but for
/// wrk's two threads (C and LuaJIT, lighter than the in-process reqwest clients).
fn drive_wrk(
    base: &str,
    tokens: &[(String, String)],
    pick: &Pick,
    zipf_s: f64,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let script = tempfile::Builder::new().suffix(".lua").tempfile()?;
    std::fs::write(script.path(), WRK_TRANSFERS_LUA)?;
    let people = tempfile::NamedTempFile::new()?;
    let lines: Vec<String> = tokens.iter().map(|(id, token)| format!("{id} {token}")).collect();
    std::fs::write(people.path(), lines.join("\n") + "\n")?;
    let (workload, hot, s) = match pick {
        Pick::Uniform(_) => ("uniform", 0, 0.0),
        Pick::Zipf(cdf) => ("zipf", cdf.len(), zipf_s),
    };
    let run = format!("w{}-{workload}", plaza_kernel::new_id());
    let result = crate::wrk::run(
        2,
        connections as u32,
        duration.as_secs() as u32,
        script.path(),
        &format!("{base}/api/v1/wallet/transfers"),
        &[people.path().display().to_string(), run, workload.to_string(), hot.to_string(), s.to_string()],
    )?;
    let count =
        |wanted: u16| result.statuses.iter().filter(|(status, _)| *status == wanted).map(|(_, n)| *n).sum::<u64>();
    let all: u64 = result.statuses.iter().map(|(_, n)| *n).sum();
    let (created, refused) = (count(201), count(402));
    anyhow::ensure!(all > 0, "wrk's script counted no responses");
    Ok(Measured {
        transfers_per_second: result.requests_per_second * created as f64 / all as f64,
        refused,
        errors: all - created - refused,
        p50_ms: result.p50_ms,
        p99_ms: result.p99_ms,
    })
}

/// Transfers in the floor's batches.
const FLOOR_BATCH: usize = 1024;

/// The database floor (see the module's comment): one task writing batches of
/// `FLOOR_BATCH` transfers — balance changes, journal rows, keys with a result of a real
/// result's size — with the same statements the group-committed path uses, for `duration`.
/// Each batch balances, so the ledger check still holds afterwards.
async fn drive_floor(store: &Store, users: &[User], pick: &Pick, duration: Duration) -> anyhow::Result<Measured> {
    let floor = DatabaseFloor::new(store);
    let mut random = Random(0x853c_49e6_748f_ea9b);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut stored_so_far = 0;
    while Instant::now() < deadline {
        let transfers: Vec<FloorTransfer> = (0..FLOOR_BATCH)
            .map(|index| {
                let (from, to, amount) = pick.transfer(&mut random);
                FloorTransfer {
                    from_user_id: users[from].id.clone(),
                    to_user_id: users[to].id.clone(),
                    amount,
                    idempotency_key: format!("floor-{}-{}", pick.name(), stored_so_far + index),
                }
            })
            .collect();
        let batch = floor.prepare(&transfers)?;
        let sent = Instant::now();
        floor.write(store, &batch).await?;
        // Every transfer of the batch waited as long as the batch took.
        histogram.record_n(sent.elapsed().as_micros() as u64, FLOOR_BATCH as u64)?;
        stored_so_far += FLOOR_BATCH;
    }
    let sent = histogram.len();
    Ok(Measured::from_histogram(sent as f64 / started.elapsed().as_secs_f64(), 0, 0, &histogram))
}

/// `clients` keep-alive HTTP clients posting transfers for `duration`.
async fn drive_http(
    client: &reqwest::Client,
    base: &str,
    tokens: &Arc<Vec<(String, String)>>,
    pick: &Pick,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let deadline = started + duration;
    let url = format!("{base}/api/v1/wallet/transfers");
    let mut handles = Vec::with_capacity(clients);
    for task in 0..clients {
        let (client, tokens, pick, url) = (client.clone(), tokens.clone(), pick.clone(), url.clone());
        handles.push(tokio::spawn(async move {
            let mut random = Random(0x2545_f491_4f6c_dd1d ^ (task as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut refused, mut errors) = (0u64, 0u64);
            let mut n = 0u64;
            while Instant::now() < deadline {
                let (from, to, amount) = pick.transfer(&mut random);
                let body = serde_json::json!({"to_user_id": tokens[to].0, "amount": amount, "currency": "USD"});
                n += 1;
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(&tokens[from].1)
                    .header("idempotency-key", format!("h-{}-{task}-{n}-{}", pick.name(), random.next()))
                    .json(&body)
                    .send()
                    .await;
                let status = match response {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // Read the body so the connection is reused.
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                histogram.saturating_record(sent.elapsed().as_micros() as u64);
                match status {
                    201 => {}
                    402 => refused += 1,
                    other => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("POST /wallet/transfers answered {other}");
                        }
                    }
                }
            }
            anyhow::Ok((histogram, refused, errors))
        }));
    }
    collect(handles, started).await
}

type TaskResult = anyhow::Result<(Histogram<u64>, u64, u64)>;

async fn collect(handles: Vec<tokio::task::JoinHandle<TaskResult>>, started: Instant) -> anyhow::Result<Measured> {
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut refused, mut errors) = (0, 0);
    for handle in handles {
        let (histogram, task_refused, task_errors) = handle.await??;
        latency_us.add(&histogram)?;
        refused += task_refused;
        errors += task_errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = latency_us.len() - refused - errors;
    Ok(Measured::from_histogram(sent as f64 / elapsed, refused, errors, &latency_us))
}

pub(crate) async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow::anyhow!("plaza did not become ready")).context(base.to_string())
}
