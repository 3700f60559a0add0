//! `plaza-bench miniapps`: the mini-app platform's hot paths (issue 15), over HTTP against a
//! release `plaza serve`, with the server's plain authenticated `GET /me` from the same
//! number of clients in the same run as the baseline.
//!
//! - **The token endpoint.** Codes are made first (`POST /oauth/authorize` with S256 PKCE
//!   and `approve`, timed as a row of its own), then only their exchanges
//!   (`grant_type=authorization_code`) are timed, each code once. Every exchange starts a
//!   refresh chain; `grant_type=refresh_token` is then timed over all chains at once, each
//!   refresh using the newest token of its chain (the rotation makes the older one dead).
//! - **A payment end to end**, at a steady offered rate (open loop: an order starts every
//!   1/rate s whether or not earlier ones have finished): the app's server creates a pay
//!   order with its client-credentials token, the user confirms it with their session, and
//!   the app's loopback receiver records when `payment.succeeded` arrives.
//! - **Webhooks with slow receivers.** Orders spread over many apps, first with every
//!   receiver answering at once, then with some of them (10 % by default) sleeping before
//!   they answer: the healthy apps' webhook latency should not rise.
//!
//! Users are seeded with SQL and funded (`crate::wallet::seed`): registering through
//! argon2 would take most of the run. Every receiver is one loopback axum server in this
//! process (`POST /hooks/{app}`), so the webhooks' latency includes this process's share of
//! the two cores. The run reports and does not gate: missing webhooks and failed requests
//! are counted in the output.

use crate::server::{PlazaServer, Target};
use crate::shop::{drive_get, ms, Measured};
use crate::wallet::{seed, wait_ready};
use anyhow::Context;
use base64::Engine;
use futures_util::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub target: Target,
    /// Concurrent keep-alive clients of GET /me and of the token endpoint.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds of GET /me and of refreshing.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Authorization codes made, then each exchanged once (one refresh chain each).
    #[arg(long, default_value_t = 3_000)]
    pub codes: usize,
    /// Orders per second offered in the end-to-end run.
    #[arg(long, default_value_t = 50)]
    pub rate: u64,
    /// Seconds of the end-to-end run.
    #[arg(long, default_value_t = 20)]
    pub e2e_seconds: u64,
    /// Apps of the webhook runs, the first also the end-to-end run's (at most 20: one
    /// developer's limit).
    #[arg(long, default_value_t = 20)]
    pub apps: usize,
    /// Of those, the apps whose receiver is slow in the second webhook run.
    #[arg(long, default_value_t = 2)]
    pub slow_apps: usize,
    /// How long a slow receiver waits before it answers, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pub slow_ms: u64,
    /// Orders per second offered in each webhook run, spread over the apps.
    #[arg(long, default_value_t = 100)]
    pub webhook_rate: u64,
    /// Seconds of each webhook run.
    #[arg(long, default_value_t = 20)]
    pub webhook_seconds: u64,
    /// Paying users signed in to each app.
    #[arg(long, default_value_t = 20)]
    pub users_per_app: usize,
    /// Small sizes for a smoke run of a few seconds (overrides the sizes above).
    #[arg(long)]
    pub quick: bool,
}

impl Options {
    /// Sizes small enough for a smoke run of a few seconds.
    pub fn quick(self) -> Self {
        Self {
            clients: self.clients.min(8),
            duration: 2,
            codes: 200,
            rate: 20,
            e2e_seconds: 3,
            apps: 10,
            slow_apps: 1,
            slow_ms: self.slow_ms.min(1000),
            webhook_rate: 40,
            webhook_seconds: 3,
            users_per_app: 4,
            ..self
        }
    }
}

/// The redirect URI of every app (never fetched: the bench reads the code off the answer).
const CALLBACK: &str = "https://bench.example/callback";
/// Each payment, in cents.
const ORDER_AMOUNT: i64 = 100;
/// Attempts one node has in flight for one app (`IN_FLIGHT_PER_APP_MAX` in
/// `plaza-miniapps`): a slow receiver is answered at most this many at a time.
const SENDER_SLOTS_PER_APP: u64 = 4;

pub async fn run(options: Options) -> anyhow::Result<()> {
    let options = if options.quick { options.quick() } else { options };
    let backend = options.target.backend();
    anyhow::ensure!(options.apps >= 1 && options.slow_apps < options.apps, "--slow-apps must be less than --apps");
    let (_data_dir, config, store, _services) = crate::server::in_process(options.target.database_url.clone()).await?;
    let started = Instant::now();
    let users = options.apps * options.users_per_app.max(1) + options.clients.max(1);
    let people = seed(&store, users + 1).await?;
    store.close().await;
    let developer = people[0].1.clone();
    let sessions: Arc<Vec<String>> = Arc::new(people[1..].iter().map(|(_, token)| token.clone()).collect());
    eprintln!("seeded {} funded users in {:.1} s", sessions.len(), started.elapsed().as_secs_f64());

    let receiver = Receiver::start(options.apps, Duration::from_millis(options.slow_ms)).await?;
    let server = PlazaServer::start(&options.target.plaza, Some(&config.database_url), &[])?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    wait_ready(&client, &server.base).await?;
    let base = server.base.clone();
    let http = Http { client: client.clone(), base: base.clone() };

    let apps = register_apps(&http, &developer, &receiver, &sessions, &options).await?;
    eprintln!("registered {} apps and signed their payers in", apps.len());

    let duration = Duration::from_secs(options.duration);
    let me = drive_get(&client, &base, &sessions, options.clients, duration, |_| "/api/v1/me".to_string()).await?;
    let (authorize, codes) = make_codes(&http, &apps[0], &sessions, options.codes, options.clients).await?;
    let (exchange, chains) = exchange_codes(&http, &apps[0], codes, options.clients).await?;
    let refresh = refresh_chains(&http, &apps[0], chains, options.clients, duration).await?;

    let e2e =
        pay_at_rate(&http, &apps[..1], &receiver, options.rate, options.e2e_seconds, Duration::from_secs(60)).await?;

    // A slow app's receiver answers SENDER_SLOTS_PER_APP webhooks per `slow_ms`; give its
    // backlog that long to drain, and everyone a minute more.
    let per_app = options.webhook_rate * options.webhook_seconds / options.apps as u64 + 1;
    let slow_drain = Duration::from_millis(per_app * options.slow_ms / SENDER_SLOTS_PER_APP);
    let (rate, seconds) = (options.webhook_rate, options.webhook_seconds);
    let all_fast = pay_at_rate(&http, &apps, &receiver, rate, seconds, Duration::from_secs(60)).await?;
    for app in options.apps - options.slow_apps..options.apps {
        receiver.slow[app].store(true, Ordering::Relaxed);
    }
    let some_slow = pay_at_rate(&http, &apps, &receiver, rate, seconds, Duration::from_secs(60) + slow_drain).await?;
    drop(server);

    let rows = [
        ("GET /me (baseline)", &me),
        ("POST /oauth/authorize (approve: makes a code)", &authorize),
        ("POST /oauth/token, authorization_code (PKCE S256, id_token)", &exchange),
        ("POST /oauth/token, refresh_token (rotating)", &refresh),
    ];
    print_token_table(backend, options.clients, &rows);
    println!();
    print_e2e_table(backend, &options, &me, &e2e)?;
    println!();
    print_webhook_table(backend, &options, &all_fast, &some_slow)?;
    println!();
    println!(
        "Duplicate webhook arrivals (same order twice): {}. Users: {} seeded and funded; {} apps of one developer, {} payers each.",
        receiver.duplicates.load(Ordering::Relaxed),
        sessions.len(),
        options.apps,
        options.users_per_app
    );
    Ok(())
}

/// The bench's HTTP client and the server's address.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// A POST with a JSON body and a bearer token; the answer's JSON when its status is `expected`.
    async fn post_json(
        &self,
        path: &str,
        bearer: &str,
        body: &serde_json::Value,
        idempotency_key: Option<&str>,
        expected: u16,
    ) -> anyhow::Result<serde_json::Value> {
        let mut request = self.client.post(self.url(path)).bearer_auth(bearer).json(body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        answer(request.send().await?, expected, path).await
    }

    /// `POST /oauth/token` with `client_secret_basic`.
    async fn token(&self, client: &Credentials, fields: &[(&str, &str)]) -> anyhow::Result<serde_json::Value> {
        let request =
            self.client.post(self.url("/oauth/token")).basic_auth(&client.id, Some(&client.secret)).form(fields);
        answer(request.send().await?, 200, "/oauth/token").await
    }
}

async fn answer(response: reqwest::Response, expected: u16, path: &str) -> anyhow::Result<serde_json::Value> {
    let status = response.status().as_u16();
    let text = response.text().await?;
    anyhow::ensure!(status == expected, "{path} answered {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

/// An app's OAuth client id and secret.
#[derive(Clone)]
struct Credentials {
    id: String,
    secret: String,
}

/// A registered app: its client credentials, its client-credentials token, and the users
/// signed in to it with their pairwise `sub`.
struct App {
    index: usize,
    client: Credentials,
    app_token: String,
    /// (session token, sub for this app)
    payers: Vec<(String, String)>,
}

/// One developer's `apps` apps, each with its own receiver path and `users_per_app` users
/// signed in to it through the full code flow and `GET /oauth/userinfo`.
async fn register_apps(
    http: &Http,
    developer: &str,
    receiver: &Receiver,
    sessions: &Arc<Vec<String>>,
    options: &Options,
) -> anyhow::Result<Vec<App>> {
    let mut apps = Vec::with_capacity(options.apps);
    for index in 0..options.apps {
        let body = serde_json::json!({
            "name": format!("Bench app {index}"),
            "home_url": "https://bench.example/",
            "redirect_uris": [CALLBACK],
            "webhook_url": format!("{}/hooks/{index}", receiver.base),
            "scopes": ["openid", "payments"],
        });
        let registered = http.post_json("/miniapps", developer, &body, None, 201).await?;
        let text = |name: &str| {
            registered[name].as_str().map(str::to_string).with_context(|| format!("the app has no {name}"))
        };
        let mut app = App {
            index,
            client: Credentials { id: text("client_id")?, secret: text("client_secret")? },
            app_token: String::new(),
            payers: Vec::new(),
        };
        let granted = http.token(&app.client, &[("grant_type", "client_credentials"), ("scope", "payments")]).await?;
        app.app_token = granted["access_token"].as_str().context("no app token")?.to_string();
        let first = index * options.users_per_app;
        let payers: Vec<String> = sessions[first..first + options.users_per_app].to_vec();
        let payers = futures_util::stream::iter(payers)
            .map(|session| {
                let app = &app;
                async move {
                    let (code, verifier) = authorize(http, app, &session).await?;
                    let tokens = exchange(http, app, &code, &verifier).await?;
                    let access = tokens["access_token"].as_str().context("no access token")?;
                    let response = http.client.get(http.url("/oauth/userinfo")).bearer_auth(access).send().await?;
                    let info = answer(response, 200, "/oauth/userinfo").await?;
                    let sub = info["sub"].as_str().context("no sub")?.to_string();
                    anyhow::Ok((session, sub))
                }
            })
            .buffer_unordered(options.clients.max(1))
            .try_collect()
            .await?;
        app.payers = payers;
        apps.push(app);
    }
    Ok(apps)
}

/// The user approves `app` (scopes `openid payments`, S256 PKCE): the code and its verifier.
async fn authorize(http: &Http, app: &App, session: &str) -> anyhow::Result<(String, String)> {
    let verifier = format!("v{}", plaza_kernel::id::to_hex(&plaza_kernel::random_token_bytes::<32>()));
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let body = serde_json::json!({
        "client_id": app.client.id,
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "scope": "openid payments",
        "state": "bench",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "approve": true,
    });
    let answer = http.post_json("/oauth/authorize", session, &body, None, 200).await?;
    let redirect_to = answer["redirect_to"].as_str().context("no redirect_to")?;
    let query = redirect_to.split_once('?').map_or("", |(_, query)| query);
    // Plaza's codes are `pc_` and hex, so they need no percent-decoding.
    let code = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("code="))
        .with_context(|| format!("no code in {redirect_to}"))?;
    Ok((code.to_string(), verifier))
}

async fn exchange(http: &Http, app: &App, code: &str, verifier: &str) -> anyhow::Result<serde_json::Value> {
    let fields =
        [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CALLBACK), ("code_verifier", verifier)];
    http.token(&app.client, &fields).await
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?)
}

fn micros_since(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// `work` on every item, `clients` at a time, each call timed: the rate over the whole
/// run, the latencies, and the results.
async fn timed_each<Item, Out, Work>(
    items: Vec<Item>,
    clients: usize,
    work: impl Fn(Item) -> Work,
) -> anyhow::Result<(Measured, Vec<Out>)>
where
    Work: std::future::Future<Output = anyhow::Result<Out>>,
{
    let count = items.len();
    let started = Instant::now();
    let done: Vec<(u64, Out)> = futures_util::stream::iter(items)
        .map(|item| {
            // Lazy: the call starts when the stream polls it, after `sent`.
            let call = work(item);
            async move {
                let sent = Instant::now();
                let out = call.await?;
                anyhow::Ok((micros_since(sent), out))
            }
        })
        .buffer_unordered(clients.max(1))
        .try_collect()
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut latency = histogram()?;
    for (took, _) in &done {
        latency.saturating_record(*took);
    }
    let outs = done.into_iter().map(|(_, out)| out).collect();
    Ok((Measured { per_second: count as f64 / elapsed, latency }, outs))
}

/// `count` codes for `app`, from `clients` concurrent approvals, timed.
async fn make_codes(
    http: &Http,
    app: &App,
    sessions: &Arc<Vec<String>>,
    count: usize,
    clients: usize,
) -> anyhow::Result<(Measured, Vec<(String, String)>)> {
    timed_each((0..count).collect(), clients, |n| authorize(http, app, &sessions[n % sessions.len()])).await
}

/// Every code exchanged once, by `clients` concurrent clients, timed; each exchange's
/// refresh token starts a chain.
async fn exchange_codes(
    http: &Http,
    app: &App,
    codes: Vec<(String, String)>,
    clients: usize,
) -> anyhow::Result<(Measured, Vec<String>)> {
    timed_each(codes, clients, |(code, verifier)| async move {
        let tokens = exchange(http, app, &code, &verifier).await?;
        let refresh = tokens["refresh_token"].as_str().context("the exchange gave no refresh token")?;
        anyhow::Ok(refresh.to_string())
    })
    .await
}

/// `clients` tasks refreshing for `duration`; task `t` owns chains `t`, `t + clients`, …
/// and refreshes them in turn, each with the token its previous refresh returned.
async fn refresh_chains(
    http: &Http,
    app: &App,
    chains: Vec<String>,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let clients = clients.clamp(1, chains.len().max(1));
    let mut owned: Vec<Vec<String>> = vec![Vec::new(); clients];
    for (n, chain) in chains.into_iter().enumerate() {
        owned[n % clients].push(chain);
    }
    let client = Arc::new(app.client.clone());
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::new();
    for mut chains in owned {
        let (http, client) = (http.clone(), client.clone());
        handles.push(tokio::spawn(async move {
            let mut latency = histogram()?;
            let mut n = 0;
            while Instant::now() < deadline && !chains.is_empty() {
                let slot = n % chains.len();
                let sent = Instant::now();
                let fields = [("grant_type", "refresh_token"), ("refresh_token", chains[slot].as_str())];
                let tokens = http.token(&client, &fields).await?;
                latency.saturating_record(micros_since(sent));
                chains[slot] =
                    tokens["refresh_token"].as_str().context("the refresh gave no refresh token")?.to_string();
                n += 1;
            }
            anyhow::Ok(latency)
        }));
    }
    let mut latency = histogram()?;
    for handle in handles {
        latency.add(&handle.await??)?;
    }
    Ok(Measured { per_second: latency.len() as f64 / started.elapsed().as_secs_f64(), latency })
}

/// Every app's loopback webhook endpoint, `POST {base}/hooks/{app}`: it notes when each
/// order's first webhook arrived, then answers 204, after `slow_for` for an app marked slow.
#[derive(Clone)]
struct Receiver {
    base: String,
    arrived: Arc<Mutex<HashMap<String, Instant>>>,
    duplicates: Arc<AtomicUsize>,
    slow: Arc<Vec<AtomicBool>>,
}

impl Receiver {
    async fn start(apps: usize, slow_for: Duration) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let receiver = Self {
            base: format!("http://{}", listener.local_addr()?),
            arrived: Arc::default(),
            duplicates: Arc::default(),
            slow: Arc::new((0..apps).map(|_| AtomicBool::new(false)).collect()),
        };
        let state = receiver.clone();
        let handler = move |axum::extract::Path(app): axum::extract::Path<usize>, body: String| {
            let state = state.clone();
            async move {
                let at = Instant::now();
                let event: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                if let Some(order_id) = event["data"]["order_id"].as_str() {
                    let mut arrived = state.arrived.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if arrived.insert(order_id.to_string(), at).is_some() {
                        state.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if state.slow.get(app).is_some_and(|slow| slow.load(Ordering::Relaxed)) {
                    tokio::time::sleep(slow_for).await;
                }
                axum::http::StatusCode::NO_CONTENT
            }
        };
        let router = axum::Router::new().route("/hooks/{app}", axum::routing::post(handler));
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("the webhook receiver stopped: {error}");
            }
        });
        Ok(receiver)
    }

    fn arrival(&self, order_id: &str) -> Option<Instant> {
        self.arrived.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(order_id).copied()
    }

    /// Waits until every order's webhook has arrived or `deadline` passed, and notes each
    /// arrival on its order.
    async fn wait_for(&self, payments: &mut Payments, deadline: Duration) {
        let until = Instant::now() + deadline;
        loop {
            let missing = payments.paid.iter().filter(|order| self.arrival(&order.order_id).is_none()).count();
            if missing == 0 || Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for order in &mut payments.paid {
            order.arrived = self.arrival(&order.order_id);
        }
    }
}

/// One paid order, as the client saw it, and when its webhook arrived.
struct Paid {
    app: usize,
    order_id: String,
    create_sent: Instant,
    confirm_sent: Instant,
    create_us: u64,
    confirm_us: u64,
    arrived: Option<Instant>,
}

/// What an open-loop run of payments gave.
struct Payments {
    paid: Vec<Paid>,
    offered: usize,
    errors: usize,
    /// Seconds from the first order's start to the last's.
    sending_s: f64,
}

impl Payments {
    fn missing(&self) -> usize {
        self.paid.iter().filter(|order| order.arrived.is_none()).count()
    }

    /// Latencies of the orders `select` keeps, from `from` to their webhook's arrival.
    fn to_webhook(
        &self,
        select: impl Fn(&Paid) -> bool,
        from: impl Fn(&Paid) -> Instant,
    ) -> anyhow::Result<Histogram<u64>> {
        let mut latency = histogram()?;
        for order in self.paid.iter().filter(|order| select(order)) {
            if let Some(at) = order.arrived {
                latency.saturating_record(at.saturating_duration_since(from(order)).as_micros() as u64);
            }
        }
        Ok(latency)
    }

    /// Webhooks received of the orders `select` keeps, per second, from the first order's
    /// start to the last of those webhooks.
    fn webhooks_per_second(&self, select: impl Fn(&Paid) -> bool) -> f64 {
        let Some(first) = self.paid.iter().map(|order| order.create_sent).min() else { return 0.0 };
        let arrivals: Vec<Instant> =
            self.paid.iter().filter(|order| select(order)).filter_map(|order| order.arrived).collect();
        let Some(last) = arrivals.iter().max() else { return 0.0 };
        arrivals.len() as f64 / last.duration_since(first).as_secs_f64().max(1e-9)
    }
}

/// Orders started every 1/`rate` s for `seconds` (open loop), round robin over `apps` and
/// over each app's payers: each created by the app's server, then confirmed by the user.
/// Then the wait, up to `deadline`, for their webhooks.
async fn pay_at_rate(
    http: &Http,
    apps: &[App],
    receiver: &Receiver,
    rate: u64,
    seconds: u64,
    deadline: Duration,
) -> anyhow::Result<Payments> {
    let offered = usize::try_from(rate.max(1) * seconds.max(1))?;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let run = plaza_kernel::new_id();
    let mut handles = Vec::with_capacity(offered);
    let started = Instant::now();
    let mut last_start = started;
    for n in 0..offered {
        ticks.tick().await;
        last_start = Instant::now();
        let app = &apps[n % apps.len()];
        let (session, sub) = app.payers[(n / apps.len()) % app.payers.len()].clone();
        let (http, app_token, index, key) = (http.clone(), app.app_token.clone(), app.index, format!("{run}-{n}"));
        handles.push(tokio::spawn(async move { pay_once(&http, index, &app_token, &session, &sub, &key).await }));
    }
    let sending_s = last_start.duration_since(started).as_secs_f64();
    let mut paid = Vec::with_capacity(offered);
    let mut errors = 0;
    for handle in handles {
        match handle.await? {
            Ok(order) => paid.push(order),
            Err(error) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("a payment failed: {error:#}");
                }
            }
        }
    }
    let mut payments = Payments { paid, offered, errors, sending_s };
    receiver.wait_for(&mut payments, deadline).await;
    Ok(payments)
}

async fn pay_once(
    http: &Http,
    app: usize,
    app_token: &str,
    session: &str,
    sub: &str,
    key: &str,
) -> anyhow::Result<Paid> {
    let body = serde_json::json!({
        "out_trade_no": key,
        "user_sub": sub,
        "amount": ORDER_AMOUNT,
        "currency": "USD",
        "description": "Bench coffee",
    });
    let create_sent = Instant::now();
    let order = http.post_json("/pay/orders", app_token, &body, Some(key), 201).await?;
    let create_us = micros_since(create_sent);
    let order_id = order["id"].as_str().context("the pay order has no id")?.to_string();
    let confirm_sent = Instant::now();
    http.post_json(&format!("/pay/orders/{order_id}/confirm"), session, &serde_json::json!({}), None, 200).await?;
    let confirm_us = micros_since(confirm_sent);
    Ok(Paid { app, order_id, create_sent, confirm_sent, create_us, confirm_us, arrived: None })
}

fn p99_ratio(latency: &Histogram<u64>, baseline: &Measured) -> String {
    format!("{:.1}×", latency.value_at_quantile(0.99) as f64 / baseline.latency.value_at_quantile(0.99).max(1) as f64)
}

fn print_token_table(backend: &str, clients: usize, rows: &[(&str, &Measured)]) {
    let me = rows[0].1;
    println!(
        "| backend | clients | endpoint | requests | requests/s | p50 | p99 | requests/s to GET /me | p99 to GET /me |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, measured) in rows {
        println!(
            "| {backend} | {clients} | {name} | {} | {:.0} | {} | {} | {:.2} | {} |",
            measured.latency.len(),
            measured.per_second,
            ms(measured.latency.value_at_quantile(0.5)),
            ms(measured.latency.value_at_quantile(0.99)),
            measured.per_second / me.per_second.max(1e-9),
            p99_ratio(&measured.latency, me),
        );
    }
}

fn print_e2e_table(backend: &str, options: &Options, me: &Measured, e2e: &Payments) -> anyhow::Result<()> {
    let (mut create, mut confirm) = (histogram()?, histogram()?);
    for order in &e2e.paid {
        create.saturating_record(order.create_us);
        confirm.saturating_record(order.confirm_us);
    }
    let rows = [
        ("POST /pay/orders (app token)", create),
        ("POST /pay/orders/{id}/confirm (user session)", confirm),
        ("confirm sent → webhook received", e2e.to_webhook(|_| true, |order| order.confirm_sent)?),
        ("create sent → webhook received", e2e.to_webhook(|_| true, |order| order.create_sent)?),
    ];
    println!("| backend | step | orders | offered | p50 | p99 | p99 to GET /me |");
    println!("| --- | --- | ---: | --- | ---: | ---: | ---: |");
    for (name, latency) in rows {
        println!(
            "| {backend} | {name} | {} | {}/s for {} s | {} | {} | {} |",
            latency.len(),
            options.rate,
            options.e2e_seconds,
            ms(latency.value_at_quantile(0.5)),
            ms(latency.value_at_quantile(0.99)),
            p99_ratio(&latency, me),
        );
    }
    println!();
    println!(
        "End to end: {} of {} orders paid ({} failed), {} webhooks missing after 60 s; the orders started at {:.1}/s.",
        e2e.paid.len(),
        e2e.offered,
        e2e.errors,
        e2e.missing(),
        e2e.offered.saturating_sub(1) as f64 / e2e.sending_s.max(1e-9),
    );
    Ok(())
}

fn print_webhook_table(
    backend: &str,
    options: &Options,
    all_fast: &Payments,
    some_slow: &Payments,
) -> anyhow::Result<()> {
    let slow_from = options.apps - options.slow_apps;
    let healthy = |order: &Paid| order.app < slow_from;
    let slow = |order: &Paid| order.app >= slow_from;
    println!("| backend | receivers | orders | offered | healthy apps' webhook p50 | p99 | max | healthy over 100 ms | slow apps' p50 | p99 | webhooks/s healthy | webhooks/s all | healthy p99 to the all-healthy run | failed | missing |");
    println!("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let baseline = all_fast.to_webhook(healthy, |order| order.confirm_sent)?;
    let slow_name = format!("{} of {} sleep {} ms", options.slow_apps, options.apps, options.slow_ms);
    for (name, payments, slow_count) in
        [("all healthy", all_fast, 0), (slow_name.as_str(), some_slow, options.slow_apps)]
    {
        let healthy_latency = payments.to_webhook(healthy, |order| order.confirm_sent)?;
        let slow_latency = payments.to_webhook(slow, |order| order.confirm_sent)?;
        let slow_cells = if slow_count == 0 {
            "— | —".to_string()
        } else {
            format!("{} | {}", ms(slow_latency.value_at_quantile(0.5)), ms(slow_latency.value_at_quantile(0.99)))
        };
        println!(
            "| {backend} | {name} | {} | {}/s for {} s | {} | {} | {} | {} | {slow_cells} | {:.1} | {:.1} | {:.2}× | {} | {} |",
            payments.offered,
            options.webhook_rate,
            options.webhook_seconds,
            ms(healthy_latency.value_at_quantile(0.5)),
            ms(healthy_latency.value_at_quantile(0.99)),
            ms(healthy_latency.max()),
            healthy_latency.count_between(100_001, healthy_latency.high()),
            payments.webhooks_per_second(healthy),
            payments.webhooks_per_second(|_| true),
            healthy_latency.value_at_quantile(0.99) as f64 / baseline.value_at_quantile(0.99).max(1) as f64,
            payments.errors,
            payments.missing(),
        );
    }
    println!();
    println!(
        "Webhook latency is from the confirm request's start to the webhook's arrival at the receiver (a slow receiver notes the arrival, then sleeps). The healthy apps are the first {slow_from} in both runs."
    );
    Ok(())
}
