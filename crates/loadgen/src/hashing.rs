//! `plaza-bench hashing`: what password hashing costs the server, and that one account
//! cannot make it cost everyone else.
//!
//! Three measurements against one `plaza serve`:
//! - resident memory before and after a burst of concurrent registrations (each an argon2
//!   hash of 19 MiB), and again a few seconds later: the hashing threads reuse one block
//!   each, so the burst should leave the server near where it started;
//! - another user's sequential logins while the server is idle (the baseline);
//! - the same logins while one account floods `POST /wallet/pin` (two argon2 runs each):
//!   PIN work queues behind sign-in work and each user may have two PIN hashes waiting, so
//!   the flood is mostly answered 429 and logins stay near the baseline.

use crate::me::wait_ready;
use crate::server::{register, PlazaServer, Target};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub target: Target,
    #[arg(long, default_value_t = 40)]
    pub registrations: usize,
    #[arg(long, default_value_t = 400)]
    pub pin_flood: usize,
    #[arg(long, default_value_t = 20)]
    pub logins: usize,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let backend = options.target.backend();
    let settings = [
        ("PLAZA_AUTH_ATTEMPTS_PER_ADDRESS", "100000"),
        ("PLAZA_AUTH_ATTEMPTS_PER_USERNAME", "100000"),
        ("PLAZA_PIN_CHANGES_PER_HOUR", "10000"),
        ("PLAZA_PASSWORD_HASH_QUEUE_MAX", "10000"),
        // One client address opens every connection of the flood.
        ("PLAZA_CONNECTIONS_PER_ADDRESS_MAX", "4096"),
    ];
    let client = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
    let server = PlazaServer::start(&options.target.plaza, options.target.database_url.as_deref(), &settings)?;
    wait_ready(&client, &server.base).await?;
    let base = server.base.clone();

    let (_, _) = register(&client, &base, "hash_login").await?;
    let rss_idle = server.rss_bytes();
    let started = Instant::now();
    let burst: Vec<_> = (0..options.registrations)
        .map(|n| {
            let client = client.clone();
            let base = base.clone();
            tokio::spawn(async move { register(&client, &base, &format!("hash_burst_{n}")).await })
        })
        .collect();
    for task in burst {
        task.await??;
    }
    let burst_took = started.elapsed();
    let rss_after = server.rss_bytes();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_later = server.rss_bytes();

    let baseline = time_logins(&client, &base, options.logins).await?;

    let (flooder, _) = register(&client, &base, "hash_flooder").await?;
    let first = client
        .post(format!("{base}/api/v1/wallet/pin"))
        .bearer_auth(&flooder)
        .json(&json!({"pin": "135790"}))
        .send()
        .await?;
    anyhow::ensure!(first.status().is_success(), "setting the first PIN: {}", first.status());
    let flood: Vec<_> = (0..options.pin_flood)
        .map(|_| {
            let client = client.clone();
            let url = format!("{base}/api/v1/wallet/pin");
            let token = flooder.clone();
            tokio::spawn(async move {
                let body = json!({"pin": "135790", "current_pin": "135790"});
                client.post(url).bearer_auth(token).json(&body).send().await.map(|reply| reply.status().as_u16())
            })
        })
        .collect();
    let under_flood = time_logins(&client, &base, options.logins).await?;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for task in flood {
        *statuses.entry(task.await??).or_default() += 1;
    }
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!("| backend | what | value |");
    println!("| --- | --- | ---: |");
    println!("| {backend} | RSS idle | {:.0} MiB |", mib(rss_idle));
    println!(
        "| {backend} | RSS right after {} concurrent registrations ({:.1} s) | {:.0} MiB |",
        options.registrations,
        burst_took.as_secs_f64(),
        mib(rss_after)
    );
    println!("| {backend} | RSS 3 s later | {:.0} MiB |", mib(rss_later));
    println!("| {backend} | login median, idle (baseline) | {:.1} ms |", median(&baseline));
    println!(
        "| {backend} | login median while one account sends {} PIN changes at once | {:.1} ms ({:.2}× the baseline) |",
        options.pin_flood,
        median(&under_flood),
        median(&under_flood) / median(&baseline)
    );
    println!(
        "| {backend} | login p90, idle / under the flood | {:.1} ms / {:.1} ms |",
        p90(&baseline),
        p90(&under_flood)
    );
    let answered: Vec<String> = statuses.iter().map(|(status, count)| format!("{count} × {status}")).collect();
    println!("| {backend} | the flood's answers | {} |", answered.join(", "));
    Ok(())
}

/// Milliseconds each of `count` sequential logins of `hash_login` took, sorted.
async fn time_logins(client: &reqwest::Client, base: &str, count: usize) -> anyhow::Result<Vec<f64>> {
    let mut took = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let started = Instant::now();
        let reply = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": "hash_login", "password": "bench-password"}))
            .send()
            .await?;
        anyhow::ensure!(reply.status().is_success(), "login failed: {}", reply.status());
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    Ok(took)
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

fn p90(sorted: &[f64]) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * 0.9).round() as usize]
}
