//! `plaza-bench me`: the authenticated read path, and what one login costs.

use crate::server::{PlazaServer, Target};
use crate::wrk::WrkResult;
use anyhow::Context;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub target: Target,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    pub duration: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Sequential logins to time.
    #[arg(long, default_value_t = 30)]
    pub logins: u32,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let backend = options.target.backend();
    let limits = [("PLAZA_AUTH_ATTEMPTS_PER_ADDRESS", "100000"), ("PLAZA_AUTH_ATTEMPTS_PER_USERNAME", "100000")];
    let client = reqwest::Client::new();

    let server = PlazaServer::start(&options.target.plaza, options.target.database_url.as_deref(), &limits)?;
    wait_ready(&client, &server.base).await?;
    let token = obtain_token(&client, &server.base).await?;
    let login_ms = time_logins(&client, &server.base, options.logins).await?;
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(script.path(), format!("wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"))?;
    let baseline = wrk(&options, &format!("{}/healthz", server.base), script.path())?;
    let cached = wrk(&options, &format!("{}/api/v1/me", server.base), script.path())?;
    drop(server);

    // The same read with the session cache off: every request queries the database.
    let mut uncached_settings = limits.to_vec();
    uncached_settings.push(("PLAZA_SESSION_CACHE_SECONDS", "0"));
    let server = PlazaServer::start(&options.target.plaza, options.target.database_url.as_deref(), &uncached_settings)?;
    wait_ready(&client, &server.base).await?;
    let token = obtain_token(&client, &server.base).await?;
    std::fs::write(script.path(), format!("wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"))?;
    let uncached = wrk(&options, &format!("{}/api/v1/me", server.base), script.path())?;
    drop(server);

    for (name, result) in [("cached", &cached), ("uncached", &uncached)] {
        anyhow::ensure!(result.non_2xx == 0, "GET /me ({name}) answered {} non-2xx responses", result.non_2xx);
    }
    println!("| backend | endpoint | requests/s | p50 | p99 | ratio to /healthz |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for (name, result) in [
        ("GET /healthz (baseline)", &baseline),
        ("GET /api/v1/me", &cached),
        ("GET /api/v1/me, session cache off", &uncached),
    ] {
        println!(
            "| {backend} | {name} | {:.0} | {:.2} ms | {:.2} ms | {:.2} |",
            result.requests_per_second,
            result.p50_ms,
            result.p99_ms,
            result.requests_per_second / baseline.requests_per_second
        );
    }
    let percentile = |p: f64| login_ms[((login_ms.len() as f64 - 1.0) * p).round() as usize];
    println!();
    println!(
        "login ({backend}, {} sequential): median {:.1} ms, p90 {:.1} ms, min {:.1} ms",
        login_ms.len(),
        percentile(0.5),
        percentile(0.9),
        login_ms[0]
    );
    Ok(())
}

/// Registers the benchmark user, or logs in when an earlier run on the same database did.
async fn obtain_token(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let credentials = serde_json::json!({"username": "bench_user", "password": "bench-password"});
    let mut response = client.post(format!("{base}/api/v1/auth/register")).json(&credentials).send().await?;
    if response.status() == reqwest::StatusCode::CONFLICT {
        response = client.post(format!("{base}/api/v1/auth/login")).json(&credentials).send().await?;
    }
    anyhow::ensure!(response.status().is_success(), "could not sign in: {}", response.status());
    let body: serde_json::Value = response.json().await?;
    Ok(body["token"].as_str().context("no token")?.to_string())
}

/// Milliseconds each of `count` sequential logins took, sorted.
async fn time_logins(client: &reqwest::Client, base: &str, count: u32) -> anyhow::Result<Vec<f64>> {
    let mut login_ms = Vec::new();
    for _ in 0..count.max(1) {
        let started = Instant::now();
        let response = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "bench_user", "password": "bench-password"}))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "login failed: {}", response.status());
        login_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    login_ms.sort_by(f64::total_cmp);
    Ok(login_ms)
}

pub(crate) async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "plaza did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn wrk(options: &Options, url: &str, script: &std::path::Path) -> anyhow::Result<WrkResult> {
    crate::wrk::run(options.threads, options.connections, options.duration, script, url, &[])
}
