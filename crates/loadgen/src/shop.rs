//! `plaza-bench shop`: a flash sale sold out over HTTP, and catalogue search.
//!
//! The sale: `units` units (one per buyer) to `buyers` distinct funded buyers, each sending
//! one `POST /orders` with the sale's id and its own key, from `clients` concurrent HTTP
//! clients against a release `plaza serve`. Reported: the sell-out time (first sale to the
//! last), successful orders per second over it, p50/p99 of the successful and of the
//! sold-out answers, and a check read from the database afterwards: exactly `units` paid
//! orders holding exactly `units` × price, the sale at zero, and the ledger balanced.
//!
//! The same-run baseline (PostgreSQL only): the naive design, one transaction per order
//! that locks the stock row with `SELECT … FOR UPDATE`, decrements it, debits the buyer,
//! credits escrow and inserts the order, in a scratch database of its own, driven directly
//! with the same concurrency (so it pays no HTTP at all: the ratio flatters it). On both
//! engines, a second baseline: Plaza's own flash-sale code run one order per transaction
//! (`plaza_shop::bench_support`), in-process on the same database once the server has
//! stopped, selling a second sale of as many units to the same buyers: the naive design
//! with the rows Plaza writes.
//!
//! Search: `products` products with English and Chinese titles, then `GET /products?q=`
//! with a mix of words from `search_clients` clients for `duration` seconds, against
//! `GET /me` in the same run as the baseline. The first search, which loads the node's
//! index, is timed apart.

use crate::server::{PlazaServer, Target};
use crate::wallet::{seed, wait_ready};
use anyhow::Context;
use hdrhistogram::Histogram;
use plaza_kernel::Timestamp;
use plaza_shop::{FlashSaleInput, ProductInput, SkuInput};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub target: Target,
    /// Distinct funded buyers, each ordering one unit once.
    #[arg(long, default_value_t = 50_000)]
    pub buyers: usize,
    /// Units in the sale.
    #[arg(long, default_value_t = 10_000)]
    pub units: i64,
    /// Concurrent HTTP clients of the flash sale.
    #[arg(long, default_value_t = 128)]
    pub clients: usize,
    /// Concurrent HTTP clients of the search runs (and of their GET /me baseline).
    #[arg(long, default_value_t = 16)]
    pub search_clients: usize,
    /// Products in the catalogue for the search runs.
    #[arg(long, default_value_t = 100_000)]
    pub products: usize,
    /// Seconds per search run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Only the flash sale, at the service layer (`ShopHandle::place_order` from `clients`
    /// tasks in-process, no HTTP, no search): splits the batch's time from the HTTP path's.
    #[arg(long, conflicts_with = "search_only")]
    pub service_only: bool,
    /// Only the flash sale over HTTP (no search runs): for profiling the sale.
    #[arg(long, conflicts_with = "search_only")]
    pub sale_only: bool,
    /// Only the search runs (the sale is scheduled but nobody buys): for profiling search.
    #[arg(long)]
    pub search_only: bool,
}

/// The sale price, in cents.
const SALE_PRICE: i64 = 990;

/// Words the catalogue's titles are made of, and the queries.
const WORDS: &[&str] = &[
    "coffee", "beans", "tea", "green", "oolong", "mango", "phone", "case", "cable", "lamp", "desk", "chair", "咖啡",
    "茶叶", "手机", "云南", "芒果", "台灯", "椅子", "绿茶",
];

pub async fn run(options: Options) -> anyhow::Result<()> {
    let backend = options.target.backend();
    let (_data_dir, config, store, services) = crate::server::in_process(options.target.database_url.clone()).await?;
    let started = Instant::now();
    let people = seed(&store, options.buyers + 1).await?;
    let merchant = services.accounts.user(&people[0].0).await?;
    let buyers: Arc<Vec<String>> = Arc::new(people[1..].iter().map(|(_, token)| token.clone()).collect());
    let buyer_ids: Vec<String> = people[1..].iter().map(|(id, _)| id.clone()).collect();
    eprintln!("seeded {} funded buyers in {:.1} s", buyers.len(), started.elapsed().as_secs_f64());

    let shop = services.shop.create_shop(&merchant, "Bench", None).await?;
    let started = Instant::now();
    let sku_id = seed_catalogue(&services.shop, &merchant, &shop.id, options.products, options.units).await?;
    eprintln!("seeded {} products in {:.1} s", options.products, started.elapsed().as_secs_f64());
    let sale = open_sale(&services.shop, &merchant, &sku_id, options.units).await?;

    if options.service_only {
        let users = Arc::new(buyers_in_order(&services.accounts, &buyer_ids).await?);
        let sold = drive_service_sale(&services.shop, &users, &sku_id, &sale.id, options.clients, false).await?;
        let check = check_sale(&store, &sale.id, options.units).await?;
        let (unbatched, unbatched_check) =
            unbatched_sale(&options, &store, &services.shop, &merchant, &shop.id, &users).await?;
        // Like for like: the naive design is driven in-process too, with as many tasks.
        let baseline = match &options.target.database_url {
            Some(url) => Some(naive_baseline(url, options.buyers, options.units, options.clients).await?),
            None => None,
        };
        let path = "ShopHandle::place_order (flash sale, group commit, no HTTP)";
        print_sale(&options, backend, path, &sold, baseline.as_ref());
        print_unbatched(&options, backend, &sold, &unbatched);
        println!();
        check.print(options.units);
        unbatched_check.print(options.units);
        store.close().await;
        anyhow::ensure!(check.exact && unbatched_check.exact, "the flash sale's check failed");
        return Ok(());
    }
    let server = PlazaServer::start(&options.target.plaza, Some(&config.database_url), &[])?;
    eprintln!("plaza serve is process {}", server.pid());
    let client = reqwest::Client::builder().pool_max_idle_per_host(options.clients).build()?;
    wait_ready(&client, &server.base).await?;
    let sold = match options.search_only {
        true => None,
        false => Some(drive_sale(&client, &server.base, &buyers, &sku_id, &sale.id, options.clients).await?),
    };
    // The first search on a node loads the catalogue into its index; time it alone.
    let started = Instant::now();
    let first = client.get(format!("{}/api/v1/products?q=tea", server.base)).bearer_auth(&buyers[0]).send().await?;
    anyhow::ensure!(first.status().is_success(), "the first search answered {}", first.status());
    let first_search = started.elapsed();
    let search = match options.sale_only {
        true => None,
        false => Some(
            drive_search(&client, &server.base, &buyers, options.search_clients, Duration::from_secs(options.duration))
                .await?,
        ),
    };
    drop(server);

    let baseline = match (&options.target.database_url, &sold) {
        (Some(url), Some(_)) => Some(naive_baseline(url, options.buyers, options.units, options.clients).await?),
        _ => None,
    };
    let check = match &sold {
        Some(sold) => {
            let check = check_sale(&store, &sale.id, options.units).await?;
            // The same-code baseline runs in-process once the server has stopped, on the
            // same database, so the headline ratio is a same-run one on SQLite too.
            let users = Arc::new(buyers_in_order(&services.accounts, &buyer_ids).await?);
            let (unbatched, unbatched_check) =
                unbatched_sale(&options, &store, &services.shop, &merchant, &shop.id, &users).await?;
            print_sale(&options, backend, "POST /orders (flash sale, group commit)", sold, baseline.as_ref());
            print_unbatched(&options, backend, sold, &unbatched);
            println!();
            check.print(options.units);
            unbatched_check.print(options.units);
            println!();
            Some(check.exact && unbatched_check.exact)
        }
        None => None,
    };
    println!(
        "The first search after start-up (the node loads {} products into its index): {:.0} ms.",
        options.products + 1,
        first_search.as_secs_f64() * 1000.0
    );
    if let Some(search) = &search {
        println!();
        print_search(&options, backend, search);
    }
    store.close().await;
    anyhow::ensure!(check.unwrap_or(true), "the flash sale's check failed");
    Ok(())
}

/// What the database holds after the sale.
struct SaleCheck {
    paid: i64,
    held: i64,
    remaining: i64,
    ledger_ok: bool,
    exact: bool,
}

impl SaleCheck {
    fn print(&self, units: i64) {
        println!(
            "Check: {} paid orders holding {} (expected {units} and {}), {} units left, ledger {}: {}.",
            self.paid,
            self.held,
            units * SALE_PRICE,
            self.remaining,
            if self.ledger_ok { "balanced" } else { "NOT balanced" },
            if self.exact { "exact, nothing oversold" } else { "MISMATCH" }
        );
    }
}

/// The check, from the database: exactly `units` paid orders holding `units` × price, the
/// sale at zero, and the ledger balanced.
async fn check_sale(store: &plaza_store::Store, sale_id: &str, units: i64) -> anyhow::Result<SaleCheck> {
    let (paid, held): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(total_amount), 0) AS BIGINT) FROM shop_orders
         WHERE flash_sale_id = $1 AND status = 'paid' AND payment_status = 'held'",
    )
    .bind(sale_id)
    .fetch_one(store.read())
    .await?;
    let remaining: i64 = sqlx::query_scalar("SELECT remaining FROM shop_flash_sales WHERE id = $1")
        .bind(sale_id)
        .fetch_one(store.read())
        .await?;
    let ledger_ok = plaza_wallet::check_ledger(store).await?.ok;
    let exact = paid == units && held == units * SALE_PRICE && remaining == 0 && ledger_ok;
    Ok(SaleCheck { paid, held, remaining, ledger_ok, exact })
}

fn print_search(options: &Options, backend: &str, search: &(Measured, Measured)) {
    println!("| backend | products | clients | endpoint | requests/s | p50 | p99 | ratio of p99 to GET /me |");
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    for (name, measured) in
        [("GET /products?q= (English and Chinese words)", &search.0), ("GET /me (baseline)", &search.1)]
    {
        println!(
            "| {backend} | {} | {} | {name} | {:.0} | {} | {} | {:.1}× |",
            options.products,
            options.search_clients,
            measured.per_second,
            ms(measured.latency.value_at_quantile(0.5)),
            ms(measured.latency.value_at_quantile(0.99)),
            measured.latency.value_at_quantile(0.99) as f64 / search.1.latency.value_at_quantile(0.99).max(1) as f64,
        );
    }
}

/// The buyers as the service layer takes them, in the order of `ids`.
async fn buyers_in_order(
    accounts: &plaza_accounts::Accounts,
    ids: &[String],
) -> anyhow::Result<Vec<plaza_accounts::User>> {
    let mut users = accounts.users(ids).await?;
    let position: std::collections::HashMap<&str, usize> =
        ids.iter().enumerate().map(|(position, id)| (id.as_str(), position)).collect();
    users.sort_by_key(|user| position.get(user.id.as_str()).copied());
    anyhow::ensure!(users.len() == ids.len(), "seeded {} buyers, found {}", ids.len(), users.len());
    Ok(users)
}

/// The sale at the service layer: `clients` tasks calling `place_order` for each buyer
/// once, as the HTTP clients do, timed the same way.
async fn drive_service_sale(
    shop: &plaza_shop::ShopHandle,
    buyers: &Arc<Vec<plaza_accounts::User>>,
    sku_id: &str,
    sale_id: &str,
    clients: usize,
    unbatched: bool,
) -> anyhow::Result<Sold> {
    let address = plaza_shop::Address::parse("Bench", "1 Loop Road", "Localhost", "127001", "CN", "+86 000")
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let count = buyers.len();
    let (shop, buyers, sku_id, sale_id) = (shop.clone(), buyers.clone(), sku_id.to_string(), sale_id.to_string());
    let place = move |n: usize| {
        let (shop, buyers, address, sku_id, sale_id) =
            (shop.clone(), buyers.clone(), address.clone(), sku_id.clone(), sale_id.clone());
        async move {
            let buyer = &buyers[n];
            let request = plaza_shop::OrderRequest {
                lines: vec![plaza_shop::OrderLine { sku_id, quantity: 1, flash_sale_id: Some(sale_id) }],
                address,
                group: plaza_shop::GroupChoice::Alone,
                pin: None,
            };
            let key = match plaza_wallet::model::IdempotencyKey::parse(&format!(
                "{}-{n}",
                if unbatched { "unbatched" } else { "flash" }
            )) {
                Ok(key) => key,
                Err(error) => return Answer::Failed(error.to_string()),
            };
            let answer = match unbatched {
                true => plaza_shop::bench_support::place_flash_order_unbatched(&shop, buyer, request, &key)
                    .await
                    .map(|_| ()),
                false => shop.place_order(buyer, request, Some(&key)).await.map(|_| ()),
            };
            match answer {
                Ok(()) => Answer::Sold,
                Err(plaza_shop::ShopError::SoldOut) => Answer::SoldOut,
                Err(error) => Answer::Failed(format!("place_order answered {error}")),
            }
        }
    };
    drive_buyers(count, clients, place).await
}

/// What one buyer's order got.
enum Answer {
    Sold,
    SoldOut,
    Failed(String),
}

/// `clients` tasks placing buyer 0, 1, 2, … `buyers` − 1's one order each with `place`,
/// each answer timed: the sale's histograms and its sell-out.
async fn drive_buyers<F, Placed>(buyers: usize, clients: usize, place: F) -> anyhow::Result<Sold>
where
    F: Fn(usize) -> Placed + Clone + Send + 'static,
    Placed: std::future::Future<Output = Answer> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let successes: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (place, next, successes) = (place.clone(), next.clone(), successes.clone());
        handles.push(tokio::spawn(async move {
            let mut ok = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut sold_out = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0u64;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= buyers {
                    break;
                }
                let sent = Instant::now();
                let answer = place(n).await;
                let took = sent.elapsed().as_micros() as u64;
                match answer {
                    Answer::Sold => {
                        ok.saturating_record(took);
                        successes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(Instant::now());
                    }
                    Answer::SoldOut => sold_out.saturating_record(took),
                    Answer::Failed(why) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("{why}");
                        }
                    }
                }
            }
            anyhow::Ok((ok, sold_out, errors))
        }));
    }
    collect_sold(handles, successes, started).await
}

/// The flash sale's row, beside the naive baseline's on PostgreSQL.
fn print_sale(options: &Options, backend: &str, path: &str, sold: &Sold, baseline: Option<&Sold>) {
    println!("| backend | path | buyers | units | clients | sell-out | orders/s | p50 ok | p99 ok | p50 sold out | p99 sold out | errors | ratio to naive |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let ratio =
        baseline.map_or("—".to_string(), |naive| format!("{:.1}×", sold.orders_per_second / naive.orders_per_second));
    print_sale_row(options, backend, path, sold, &ratio);
    if let Some(naive) = baseline {
        let path = "naive: one transaction per order, SELECT … FOR UPDATE on the stock row (no HTTP)";
        print_sale_row(options, "postgres", path, naive, "1.0×");
    }
}

/// The row of Plaza's own flash-sale code run one transaction per order (no group commit),
/// and the batched run's ratio to it.
fn print_unbatched(options: &Options, backend: &str, batched: &Sold, unbatched: &Sold) {
    let path = "Plaza's flash code, one transaction per order (no group commit, no HTTP)";
    let ratio = format!("batched {:.1}× this", batched.orders_per_second / unbatched.orders_per_second);
    print_sale_row(options, backend, path, unbatched, &ratio);
}

/// One row of the sale's table; a run without sold-out answers (the naive baseline) shows
/// "—" for them.
fn print_sale_row(options: &Options, backend: &str, path: &str, sold: &Sold, ratio: &str) {
    let sold_out = |quantile: f64| match sold.sold_out.is_empty() {
        true => "—".to_string(),
        false => ms(sold.sold_out.value_at_quantile(quantile)),
    };
    println!(
        "| {backend} | {path} | {} | {} | {} | {:.2} s | {:.0} | {} | {} | {} | {} | {} | {ratio} |",
        options.buyers,
        options.units,
        options.clients,
        sold.sell_out.as_secs_f64(),
        sold.orders_per_second,
        ms(sold.ok.value_at_quantile(0.5)),
        ms(sold.ok.value_at_quantile(0.99)),
        sold_out(0.5),
        sold_out(0.99),
        sold.errors,
    );
}

/// Plaza's own flash-sale code one order per transaction, on a second sale of as many
/// units to the same buyers from as many tasks, in-process: the naive design with Plaza's
/// rows, and the check of what it stored.
async fn unbatched_sale(
    options: &Options,
    store: &plaza_store::Store,
    shop: &plaza_shop::ShopHandle,
    merchant: &plaza_accounts::User,
    shop_id: &str,
    users: &Arc<Vec<plaza_accounts::User>>,
) -> anyhow::Result<(Sold, SaleCheck)> {
    let sale = second_sale(shop, merchant, shop_id, options.units).await?;
    let sold = drive_service_sale(shop, users, &sale.sku_id, &sale.id, options.clients, true).await?;
    let check = check_sale(store, &sale.id, options.units).await?;
    Ok((sold, check))
}

/// A second product and flash sale of `units` units, as the first, for the unbatched run.
async fn second_sale(
    shop: &plaza_shop::ShopHandle,
    merchant: &plaza_accounts::User,
    shop_id: &str,
    units: i64,
) -> anyhow::Result<plaza_shop::FlashSale> {
    let input = ProductInput {
        title: "Flash lamp 台灯".into(),
        description: Some("The unbatched sale's lamp".into()),
        media_ids: Vec::new(),
        skus: vec![SkuInput { name: "white".into(), price: (1990, "USD".into()), stock: units, group_price: None }],
        group_size: None,
    };
    let product = shop.create_product(merchant, shop_id, input).await?;
    open_sale(shop, merchant, &product.skus[0].id, units).await
}

/// A flash sale of `units` units of `sku_id` at the sale price, open now for an hour, one
/// per buyer.
async fn open_sale(
    shop: &plaza_shop::ShopHandle,
    merchant: &plaza_accounts::User,
    sku_id: &str,
    units: i64,
) -> anyhow::Result<plaza_shop::FlashSale> {
    let now = Timestamp::now();
    let input = FlashSaleInput {
        sku_id: sku_id.to_string(),
        price: (SALE_PRICE, "USD".into()),
        quantity: units,
        starts_at: now.minus(Duration::from_secs(1)),
        ends_at: now.plus(Duration::from_secs(3600)),
        per_user_limit: 1,
    };
    Ok(shop.create_flash_sale(merchant, input).await?)
}

pub(crate) fn ms(micros: u64) -> String {
    format!("{:.1} ms", micros as f64 / 1000.0)
}

/// `count` products of two-word titles (one of them the sale's), through the shop's own
/// `create_product` so they are indexed as any product is. Returns the sale SKU's id.
async fn seed_catalogue(
    shop: &plaza_shop::ShopHandle,
    merchant: &plaza_accounts::User,
    shop_id: &str,
    count: usize,
    units: i64,
) -> anyhow::Result<String> {
    let sale = shop
        .create_product(
            merchant,
            shop_id,
            ProductInput {
                title: "Flash phone 手机".into(),
                description: Some("The flash sale's phone".into()),
                media_ids: Vec::new(),
                skus: vec![SkuInput {
                    name: "black".into(),
                    price: (1990, "USD".into()),
                    stock: units,
                    group_price: None,
                }],
                group_size: None,
            },
        )
        .await?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (shop, merchant, shop_id, next) = (shop.clone(), merchant.clone(), shop_id.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return anyhow::Ok(());
                }
                let (first, second) = (WORDS[n % WORDS.len()], WORDS[(n / WORDS.len() + 7 * n) % WORDS.len()]);
                let input = ProductInput {
                    title: format!("{first} {second} {n}"),
                    description: Some(format!("A {second} for the benchmark, number {n}")),
                    media_ids: Vec::new(),
                    skus: vec![SkuInput {
                        name: "one".into(),
                        price: (500, "USD".into()),
                        stock: 10,
                        group_price: None,
                    }],
                    group_size: None,
                };
                shop.create_product(&merchant, &shop_id, input).await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    sale.skus.first().map(|sku| sku.id.clone()).context("the sale product has no SKU")
}

struct Sold {
    ok: Histogram<u64>,
    sold_out: Histogram<u64>,
    errors: u64,
    sell_out: Duration,
    orders_per_second: f64,
}

async fn drive_sale(
    client: &reqwest::Client,
    base: &str,
    buyers: &Arc<Vec<String>>,
    sku_id: &str,
    sale_id: &str,
    clients: usize,
) -> anyhow::Result<Sold> {
    let url = format!("{base}/api/v1/orders");
    let body = serde_json::json!({
        "items": [{"sku_id": sku_id, "quantity": 1, "flash_sale_id": sale_id}],
        "address": {"name": "Bench", "line1": "1 Loop Road", "city": "Localhost", "postal_code": "127001",
                    "country": "CN", "phone": "+86 000"},
    });
    // Shared, not copied per request: the load generator's own work competes with the
    // server's for the same two cores.
    let (client, tokens, url, body) = (client.clone(), buyers.clone(), Arc::new(url), Arc::new(body));
    let place = move |n: usize| {
        let (client, url, body, tokens) = (client.clone(), Arc::clone(&url), Arc::clone(&body), tokens.clone());
        async move {
            let response = client
                .post(url.as_str())
                .bearer_auth(&tokens[n])
                .header("idempotency-key", format!("flash-{n}"))
                .json(&*body)
                .send()
                .await;
            let (status, text) = match response {
                Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
                Err(error) => (0, error.to_string()),
            };
            match status {
                201 => Answer::Sold,
                409 if text.contains("\"sold_out\"") => Answer::SoldOut,
                _ => Answer::Failed(format!("POST /orders answered {status}: {text}")),
            }
        }
    };
    drive_buyers(buyers.len(), clients, place).await
}

type SaleTask = tokio::task::JoinHandle<anyhow::Result<(Histogram<u64>, Histogram<u64>, u64)>>;

/// The sale's tasks joined: their histograms merged, the sell-out timed from `started`
/// (the first request) to the last sale.
async fn collect_sold(
    handles: Vec<SaleTask>,
    successes: Arc<Mutex<Vec<Instant>>>,
    started: Instant,
) -> anyhow::Result<Sold> {
    let mut ok = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut sold_out = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for handle in handles {
        let (task_ok, task_sold_out, task_errors) = handle.await??;
        ok.add(&task_ok)?;
        sold_out.add(&task_sold_out)?;
        errors += task_errors;
    }
    let times = successes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    let first = times.iter().min().copied().unwrap_or(started);
    let last = times.iter().max().copied().unwrap_or(started);
    // From the first request to the last sale: the first order's own latency counts.
    let sell_out = last.duration_since(started.min(first));
    let orders_per_second = times.len() as f64 / sell_out.as_secs_f64().max(1e-9);
    Ok(Sold { ok, sold_out, errors, sell_out, orders_per_second })
}

pub(crate) struct Measured {
    pub(crate) per_second: f64,
    pub(crate) latency: Histogram<u64>,
}

async fn drive_search(
    client: &reqwest::Client,
    base: &str,
    tokens: &Arc<Vec<String>>,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(Measured, Measured)> {
    let search = drive_get(client, base, tokens, clients, duration, |n| {
        let word = WORDS[n % WORDS.len()];
        format!("/api/v1/products?q={}&limit=20", urlencode(word))
    })
    .await?;
    let me = drive_get(client, base, tokens, clients, duration, |_| "/api/v1/me".to_string()).await?;
    Ok((search, me))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| if byte.is_ascii_alphanumeric() { (byte as char).to_string() } else { format!("%{byte:02X}") })
        .collect()
}

/// `clients` tasks sending `GET {base}{path(n)}` back to back for `duration`, each with
/// `tokens[n % len]`; every answer must be 2xx.
pub(crate) async fn drive_get(
    client: &reqwest::Client,
    base: &str,
    tokens: &Arc<Vec<String>>,
    clients: usize,
    duration: Duration,
    path: impl Fn(usize) -> String + Send + Sync + Clone + 'static,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::new();
    for task in 0..clients {
        let (client, base, tokens, path) = (client.clone(), base.to_string(), tokens.clone(), path.clone());
        handles.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut n = task;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response =
                    client.get(format!("{base}{}", path(n))).bearer_auth(&tokens[n % tokens.len()]).send().await?;
                anyhow::ensure!(response.status().is_success(), "GET answered {}", response.status());
                let _ = response.bytes().await;
                latency.saturating_record(sent.elapsed().as_micros() as u64);
                n += clients;
            }
            anyhow::Ok(latency)
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for handle in handles {
        latency.add(&handle.await??)?;
    }
    Ok(Measured { per_second: latency.len() as f64 / started.elapsed().as_secs_f64(), latency })
}

/// The naive design on PostgreSQL, in a scratch database next to `database_url`'s.
async fn naive_baseline(database_url: &str, buyers: usize, units: i64, clients: usize) -> anyhow::Result<Sold> {
    use sqlx::Connection;
    let scratch = format!("plaza_naive_{}", std::process::id());
    let mut admin = sqlx::AnyConnection::connect(database_url).await?;
    sqlx::query(&format!("CREATE DATABASE {scratch}")).execute(&mut admin).await?;
    let base = database_url.rsplit_once('/').map_or(database_url, |(base, _)| base);
    let url = format!("{base}/{scratch}");
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(16).connect(&url).await?;
    sqlx::raw_sql(
        "CREATE TABLE naive_stock (id BIGINT PRIMARY KEY, stock BIGINT NOT NULL CHECK (stock >= 0));
         CREATE TABLE naive_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL CHECK (balance >= 0));
         CREATE TABLE naive_orders (id BIGSERIAL PRIMARY KEY, buyer BIGINT NOT NULL, amount BIGINT NOT NULL);",
    )
    .execute(&pool)
    .await?;
    sqlx::query("INSERT INTO naive_stock (id, stock) VALUES (1, $1)").bind(units).execute(&pool).await?;
    sqlx::query("INSERT INTO naive_accounts (id, balance) SELECT g, 1000000 FROM generate_series(0, $1) AS g")
        .bind(buyers as i64)
        .execute(&pool)
        .await?;
    let next = Arc::new(AtomicUsize::new(0));
    let successes: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (pool, next, successes) = (pool.clone(), next.clone(), successes.clone());
        handles.push(tokio::spawn(async move {
            let mut ok = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= buyers {
                    break;
                }
                let sent = Instant::now();
                let mut transaction = pool.begin().await?;
                let stock: i64 = sqlx::query_scalar("SELECT stock FROM naive_stock WHERE id = 1 FOR UPDATE")
                    .fetch_one(&mut *transaction)
                    .await?;
                if stock == 0 {
                    transaction.rollback().await?;
                    continue;
                }
                sqlx::query("UPDATE naive_stock SET stock = stock - 1 WHERE id = 1").execute(&mut *transaction).await?;
                sqlx::query("UPDATE naive_accounts SET balance = balance - $2 WHERE id = $1")
                    .bind(n as i64 + 1)
                    .bind(SALE_PRICE)
                    .execute(&mut *transaction)
                    .await?;
                sqlx::query("UPDATE naive_accounts SET balance = balance + $1 WHERE id = 0")
                    .bind(SALE_PRICE)
                    .execute(&mut *transaction)
                    .await?;
                sqlx::query("INSERT INTO naive_orders (buyer, amount) VALUES ($1, $2)")
                    .bind(n as i64 + 1)
                    .bind(SALE_PRICE)
                    .execute(&mut *transaction)
                    .await?;
                transaction.commit().await?;
                ok.saturating_record(sent.elapsed().as_micros() as u64);
                successes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(Instant::now());
            }
            anyhow::Ok(ok)
        }));
    }
    let mut ok = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for handle in handles {
        ok.add(&handle.await??)?;
    }
    let times = successes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    let last = times.iter().max().copied().unwrap_or(started);
    let sell_out = last.duration_since(started);
    let sold: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM naive_orders").fetch_one(&pool).await?;
    anyhow::ensure!(sold == units, "the naive baseline sold {sold} of {units}");
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE {scratch} WITH (FORCE)")).execute(&mut admin).await?;
    Ok(Sold {
        ok,
        sold_out: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?,
        errors: 0,
        orders_per_second: times.len() as f64 / sell_out.as_secs_f64().max(1e-9),
        sell_out,
    })
}
