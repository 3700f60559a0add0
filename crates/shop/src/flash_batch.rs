//! A flash-sale batch: what it reads (stored keys, the sales locked, each buyer's units,
//! through [`plaza_wallet::HoldBatch`] the balances), the pure decision of every order in
//! arrival order ([`decide`]), and the few multi-row statements that write it. The flow
//! and the reasons are in `flash.rs`.

use crate::flash::{refusal, sale_from_row, sale_refusal, FlashJob, FlashSale, SALE_COLUMNS};
use crate::model::OrderStatus;
use crate::service::{invalid, Order, OrderItem, ShopError};
use plaza_kernel::Timestamp;
use plaza_store::JsonColumn::{BigInt, Text};
use plaza_store::{Any, Backend, Row, Transaction};
use plaza_wallet::{HoldBatch, WalletError};
use std::collections::{BTreeMap, HashMap};

/// A sale as the batch sees it, with what the order lines need.
#[derive(Debug, Clone)]
pub(crate) struct SaleInBatch {
    sale: FlashSale,
    seller_id: String,
    /// The sale's shop as its orders' answers show it, read in the batch's transaction.
    pub(crate) shop: ShopInBatch,
    title: String,
    sku_name: String,
    archived: bool,
    /// Units taken by this batch so far.
    taken: i64,
}

/// A shop's own columns, without its owner (who is the accounts service's).
#[derive(Debug, Clone)]
pub(crate) struct ShopInBatch {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) rating_sum: i64,
    pub(crate) rating_count: i64,
    pub(crate) created_at: Timestamp,
}

impl SaleInBatch {
    pub(crate) fn seller_id(&self) -> &str {
        &self.seller_id
    }

    pub(crate) fn shop_id(&self) -> &str {
        &self.sale.shop_id
    }

    pub(crate) fn sale_id(&self) -> &str {
        &self.sale.id
    }
}

/// What one job of a batch comes to.
#[derive(Debug)]
pub(crate) enum Verdict {
    Accepted,
    /// The same key and body as an earlier job of this batch: its order.
    SameAs(usize),
    /// Saved before this batch.
    Stored(String),
    Refused(ShopError),
}

/// The batch decided in memory.
#[derive(Debug)]
pub(crate) struct Decided {
    pub(crate) verdicts: Vec<Verdict>,
    /// The accepted orders, by job index.
    pub(crate) accepted: Vec<(usize, Order)>,
    /// Units taken per sale.
    pub(crate) taken: BTreeMap<String, i64>,
}

/// A pure function: each job in arrival order, checked as `place_order` checks one (a
/// stored key first, then the window, the units left, the buyer's limit and the balance),
/// each acceptance taking its units, its limit and its money before the next is decided.
pub(crate) fn decide(
    jobs: &[FlashJob],
    stored: &HashMap<(String, String), (String, String)>,
    sales: &HashMap<String, SaleInBatch>,
    mut bought: HashMap<(String, String), i64>,
    holds: &mut BTreeMap<String, HoldBatch>,
    now: Timestamp,
) -> Result<Decided, ShopError> {
    let mut sales = sales.clone();
    let mut verdicts = Vec::with_capacity(jobs.len());
    let mut accepted = Vec::new();
    let mut first_of_key: HashMap<(&str, &str), usize> = HashMap::new();
    for (index, job) in jobs.iter().enumerate() {
        let key = (job.buyer_id.clone(), job.client_key.clone());
        if let Some((order_id, hash)) = stored.get(&key) {
            verdicts.push(if *hash == job.hash {
                Verdict::Stored(order_id.clone())
            } else {
                Verdict::Refused(ShopError::KeyReused)
            });
            continue;
        }
        if let Some(&first) = first_of_key.get(&(job.buyer_id.as_str(), job.client_key.as_str())) {
            let same = jobs[first].hash == job.hash && matches!(verdicts[first], Verdict::Accepted);
            verdicts.push(match (same, jobs[first].hash == job.hash) {
                (true, _) => Verdict::SameAs(first),
                (false, true) => Verdict::Refused(match &verdicts[first] {
                    Verdict::Refused(error) => copy_refusal(error),
                    _ => ShopError::KeyReused,
                }),
                (false, false) => Verdict::Refused(ShopError::KeyReused),
            });
            continue;
        }
        first_of_key.insert((job.buyer_id.as_str(), job.client_key.as_str()), index);
        let Some(in_batch) = sales.get_mut(&job.sale_id) else {
            verdicts.push(Verdict::Refused(ShopError::FlashSaleNotFound { field: "items[0].flash_sale_id".into() }));
            continue;
        };
        let own_shop = in_batch.seller_id == job.buyer_id;
        if let Some(refused) = sale_refusal(&in_batch.sale, &job.sku_id, in_batch.archived, own_shop) {
            verdicts.push(Verdict::Refused(refused));
            continue;
        }
        let units = bought.entry((job.sale_id.clone(), job.buyer_id.clone())).or_insert(0);
        if let Some(refused) = refusal(&in_batch.sale, now.unix_millis(), job.quantity, *units) {
            verdicts.push(Verdict::Refused(refused));
            continue;
        }
        let total = in_batch.sale.price.checked_mul(job.quantity).ok_or_else(|| invalid("items", "too large"))?;
        let Some(batch) = holds.get_mut(&in_batch.sale.currency) else {
            return Err(ShopError::Invariant(format!("no hold batch for {}", in_batch.sale.currency)));
        };
        let intent_id = match batch.hold(&job.buyer_id, total, "shop order", job.pin_verified) {
            Ok(intent_id) => intent_id,
            Err(error @ (WalletError::InsufficientFunds { .. } | WalletError::PinRequired)) => {
                verdicts.push(Verdict::Refused(error.into()));
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        in_batch.sale.remaining -= job.quantity;
        in_batch.taken += job.quantity;
        *units += job.quantity;
        accepted.push((index, order_of(job, in_batch, intent_id, total, now)));
        verdicts.push(Verdict::Accepted);
    }
    let taken = sales.into_iter().filter(|(_, sale)| sale.taken > 0).map(|(id, sale)| (id, sale.taken)).collect();
    Ok(Decided { verdicts, accepted, taken })
}

/// The same refusal again, for a repeated key in one batch.
fn copy_refusal(error: &ShopError) -> ShopError {
    match error {
        ShopError::SaleNotStarted { starts_at } => ShopError::SaleNotStarted { starts_at: *starts_at },
        ShopError::SaleEnded => ShopError::SaleEnded,
        ShopError::SoldOut => ShopError::SoldOut,
        ShopError::LimitReached { limit, bought } => ShopError::LimitReached { limit: *limit, bought: *bought },
        ShopError::OutOfStock { sku_id, field } => {
            ShopError::OutOfStock { sku_id: sku_id.clone(), field: field.clone() }
        }
        ShopError::Wallet(WalletError::InsufficientFunds { available, requested }) => {
            ShopError::Wallet(WalletError::InsufficientFunds { available: *available, requested: *requested })
        }
        ShopError::Wallet(WalletError::PinRequired) => ShopError::Wallet(WalletError::PinRequired),
        ShopError::FlashSaleNotFound { field } => ShopError::FlashSaleNotFound { field: field.clone() },
        ShopError::ProductArchived { product_id, field } => {
            ShopError::ProductArchived { product_id: product_id.clone(), field: field.clone() }
        }
        ShopError::InvalidField { field, reason } => invalid(field.clone(), reason.clone()),
        _ => ShopError::SoldOut,
    }
}

fn order_of(job: &FlashJob, in_batch: &SaleInBatch, intent_id: String, total: i64, now: Timestamp) -> Order {
    let sale = &in_batch.sale;
    Order {
        id: plaza_kernel::new_id(),
        buyer_id: job.buyer_id.clone(),
        shop_id: sale.shop_id.clone(),
        seller_id: in_batch.seller_id.clone(),
        status: OrderStatus::Paid,
        total,
        currency: sale.currency.clone(),
        payment_intent_id: intent_id,
        payment_status: "held".into(),
        address: job.address.clone(),
        carrier: None,
        tracking_number: None,
        shipped_at: None,
        auto_confirm_at: None,
        refund_reason: None,
        refund_amount: None,
        status_before_refund: None,
        group_buy_id: None,
        flash_sale_id: Some(sale.id.clone()),
        items: vec![OrderItem {
            sku_id: sale.sku_id.clone(),
            product_id: sale.product_id.clone(),
            title: in_batch.title.clone(),
            sku_name: in_batch.sku_name.clone(),
            quantity: job.quantity,
            unit_price: sale.price,
        }],
        created_at: now,
        updated_at: now,
    }
}

fn json_text<T: serde::Serialize>(rows: &T) -> Result<String, ShopError> {
    serde_json::to_string(rows).map_err(|error| ShopError::Invariant(error.to_string()))
}

/// The orders already saved under the batch's keys: (buyer, key) → (order id, hash).
pub(crate) async fn read_stored_orders(
    transaction: &mut Transaction<'_, Any>,
    backend: Backend,
    jobs: &[FlashJob],
) -> Result<HashMap<(String, String), (String, String)>, ShopError> {
    let sql = format!(
        "SELECT o.buyer_id, o.idempotency_key, o.id, o.request_hash FROM shop_orders o
         JOIN ({}) AS wanted ON o.buyer_id = wanted.buyer_id AND o.idempotency_key = wanted.idempotency_key",
        backend.json_rows(1, &[("buyer_id", Text), ("idempotency_key", Text)])
    );
    let keys: Vec<(&str, &str)> = jobs.iter().map(|job| (job.buyer_id.as_str(), job.client_key.as_str())).collect();
    let mut stored = HashMap::new();
    for row in sqlx::query(&sql).bind(json_text(&keys)?).fetch_all(&mut **transaction).await? {
        stored.insert(
            (row.try_get("buyer_id")?, row.try_get("idempotency_key")?),
            (row.try_get("id")?, row.try_get("request_hash")?),
        );
    }
    Ok(stored)
}

/// The batch's sales, locked on PostgreSQL (in id order), with their products.
pub(crate) async fn read_sales(
    transaction: &mut Transaction<'_, Any>,
    backend: Backend,
    jobs: &[FlashJob],
) -> Result<HashMap<String, SaleInBatch>, ShopError> {
    let mut ids: Vec<&str> = jobs.iter().map(|job| job.sale_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let lock = if backend == Backend::Postgres { " FOR UPDATE OF f" } else { "" };
    let sql = format!(
        "SELECT {SALE_COLUMNS}, p.title, p.status, s.name AS sku_name, sh.owner_id, sh.name AS shop_name,
                sh.description AS shop_description, sh.rating_sum AS shop_rating_sum,
                sh.rating_count AS shop_rating_count, sh.created_at AS shop_created_at
         FROM shop_flash_sales f JOIN shop_products p ON p.id = f.product_id JOIN shop_skus s ON s.id = f.sku_id
              JOIN shops sh ON sh.id = f.shop_id
         WHERE f.id IN (SELECT id FROM ({}) AS wanted) ORDER BY f.id{lock}",
        backend.json_rows(1, &[("id", Text)])
    );
    let wanted: Vec<[&str; 1]> = ids.iter().map(|id| [*id]).collect();
    let mut sales = HashMap::new();
    for row in sqlx::query(&sql).bind(json_text(&wanted)?).fetch_all(&mut **transaction).await? {
        let sale = sale_from_row(&row)?;
        sales.insert(
            sale.id.clone(),
            SaleInBatch {
                seller_id: row.try_get("owner_id")?,
                title: row.try_get("title")?,
                sku_name: row.try_get("sku_name")?,
                archived: row.try_get::<String, _>("status")? == "archived",
                shop: ShopInBatch {
                    name: row.try_get("shop_name")?,
                    description: row.try_get("shop_description")?,
                    rating_sum: row.try_get("shop_rating_sum")?,
                    rating_count: row.try_get("shop_rating_count")?,
                    created_at: Timestamp::from_unix_millis(row.try_get("shop_created_at")?),
                },
                taken: 0,
                sale,
            },
        );
    }
    Ok(sales)
}

/// Each buyer's units of each sale so far: (sale, buyer) → units.
pub(crate) async fn read_purchases(
    transaction: &mut Transaction<'_, Any>,
    backend: Backend,
    jobs: &[FlashJob],
) -> Result<HashMap<(String, String), i64>, ShopError> {
    let sql = format!(
        "SELECT p.flash_sale_id, p.buyer_id, p.units FROM shop_flash_purchases p
         JOIN ({}) AS wanted ON p.flash_sale_id = wanted.flash_sale_id AND p.buyer_id = wanted.buyer_id",
        backend.json_rows(1, &[("flash_sale_id", Text), ("buyer_id", Text)])
    );
    let pairs: Vec<(&str, &str)> = jobs.iter().map(|job| (job.sale_id.as_str(), job.buyer_id.as_str())).collect();
    let mut bought = HashMap::new();
    for row in sqlx::query(&sql).bind(json_text(&pairs)?).fetch_all(&mut **transaction).await? {
        bought.insert((row.try_get("flash_sale_id")?, row.try_get("buyer_id")?), row.try_get("units")?);
    }
    Ok(bought)
}

/// The buyers whose balances the batch reads (and on PostgreSQL locks), by currency: not
/// those of a sale that can take none of its orders at `now` (not started, ended, sold
/// out), since [`decide`] refuses them before any hold. After a sell-out, a batch of
/// sold-out answers so reads no balance at all.
pub(crate) fn payers_by_currency(
    jobs: &[FlashJob],
    sales: &HashMap<String, SaleInBatch>,
    now: Timestamp,
) -> BTreeMap<String, Vec<String>> {
    let mut payers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in jobs {
        let Some(sale) = sales.get(&job.sale_id) else { continue };
        // With nothing bought yet: a refusal then is one whatever the buyer bought, and a
        // batch only takes units, so it holds for every job of the batch.
        if refusal(&sale.sale, now.unix_millis(), job.quantity, 0).is_none() {
            payers.entry(sale.sale.currency.clone()).or_default().push(job.buyer_id.clone());
        }
    }
    payers
}

/// Each sale's units, once per sale, checked against the decision.
pub(crate) async fn write_sales(transaction: &mut Transaction<'_, Any>, decided: &Decided) -> Result<(), ShopError> {
    for (sale_id, taken) in &decided.taken {
        let updated =
            sqlx::query("UPDATE shop_flash_sales SET remaining = remaining - $2 WHERE id = $1 AND remaining >= $2")
                .bind(sale_id)
                .bind(taken)
                .execute(&mut **transaction)
                .await?;
        if updated.rows_affected() != 1 {
            return Err(ShopError::Invariant(format!("sale {sale_id} has fewer than {taken} units left")));
        }
    }
    Ok(())
}

pub(crate) async fn write_purchases(
    transaction: &mut Transaction<'_, Any>,
    backend: Backend,
    jobs: &[FlashJob],
    decided: &Decided,
) -> Result<(), ShopError> {
    let mut units: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for (index, _) in &decided.accepted {
        let job = &jobs[*index];
        *units.entry((job.sale_id.as_str(), job.buyer_id.as_str())).or_default() += job.quantity;
    }
    let rows: Vec<(&str, &str, i64)> = units.into_iter().map(|((sale, buyer), units)| (sale, buyer, units)).collect();
    // (`WHERE true` tells SQLite's parser that `ON CONFLICT` is not a join's `ON`.)
    let sql = format!(
        "INSERT INTO shop_flash_purchases (flash_sale_id, buyer_id, units)
         SELECT flash_sale_id, buyer_id, units FROM ({}) AS bought WHERE true
         ON CONFLICT (flash_sale_id, buyer_id) DO UPDATE SET units = shop_flash_purchases.units + excluded.units",
        backend.json_rows(1, &[("flash_sale_id", Text), ("buyer_id", Text), ("units", BigInt)])
    );
    sqlx::query(&sql).bind(json_text(&rows)?).execute(&mut **transaction).await?;
    Ok(())
}

/// The orders and their lines, two statements; a key saved meanwhile by another node fails
/// the batch (which then runs one by one, where that key answers with its order).
pub(crate) async fn write_orders(
    transaction: &mut Transaction<'_, Any>,
    backend: Backend,
    jobs: &[FlashJob],
    decided: &Decided,
    now: Timestamp,
) -> Result<(), ShopError> {
    let orders_sql = format!(
        "INSERT INTO shop_orders (id, buyer_id, shop_id, seller_id, status, total_amount, currency,
             payment_intent_id, payment_status, idempotency_key, request_hash, address, flash_sale_id,
             created_at, updated_at)
         SELECT id, buyer_id, shop_id, seller_id, 'paid', total_amount, currency, payment_intent_id, 'held',
                idempotency_key, request_hash, address, flash_sale_id, $2, $2
         FROM ({}) AS orders WHERE true
         ON CONFLICT (buyer_id, idempotency_key) DO NOTHING",
        backend.json_rows(
            1,
            &[
                ("id", Text),
                ("buyer_id", Text),
                ("shop_id", Text),
                ("seller_id", Text),
                ("total_amount", BigInt),
                ("currency", Text),
                ("payment_intent_id", Text),
                ("idempotency_key", Text),
                ("request_hash", Text),
                ("address", Text),
                ("flash_sale_id", Text),
            ]
        )
    );
    let jobs_of: Vec<_> = decided
        .accepted
        .iter()
        .map(|(index, order)| {
            (
                &order.id,
                &order.buyer_id,
                &order.shop_id,
                &order.seller_id,
                order.total,
                &order.currency,
                &order.payment_intent_id,
                &jobs[*index].client_key,
                &jobs[*index].hash,
                order.address.to_string(),
                &order.flash_sale_id,
            )
        })
        .collect();
    let inserted = sqlx::query(&orders_sql)
        .bind(json_text(&jobs_of)?)
        .bind(now.unix_millis())
        .execute(&mut **transaction)
        .await?
        .rows_affected();
    if inserted != decided.accepted.len() as u64 {
        return Err(ShopError::Invariant(format!("{inserted} of {} flash orders saved", decided.accepted.len())));
    }
    let items_sql = format!(
        "INSERT INTO shop_order_items (order_id, position, sku_id, product_id, title, sku_name, quantity, unit_price)
         SELECT order_id, 0, sku_id, product_id, title, sku_name, quantity, unit_price FROM ({}) AS items",
        backend.json_rows(
            1,
            &[
                ("order_id", Text),
                ("sku_id", Text),
                ("product_id", Text),
                ("title", Text),
                ("sku_name", Text),
                ("quantity", BigInt),
                ("unit_price", BigInt),
            ]
        )
    );
    let items: Vec<_> = decided
        .accepted
        .iter()
        .flat_map(|(_, order)| order.items.iter().map(move |item| (order, item)))
        .map(|(order, item)| {
            (&order.id, &item.sku_id, &item.product_id, &item.title, &item.sku_name, item.quantity, item.unit_price)
        })
        .collect();
    sqlx::query(&items_sql).bind(json_text(&items)?).execute(&mut **transaction).await?;
    let mut sold: BTreeMap<&str, i64> = BTreeMap::new();
    for (_, order) in &decided.accepted {
        for item in &order.items {
            *sold.entry(item.product_id.as_str()).or_default() += item.quantity;
        }
    }
    for (product_id, units) in sold {
        sqlx::query("UPDATE shop_products SET sold_count = sold_count + $2 WHERE id = $1")
            .bind(product_id)
            .bind(units)
            .execute(&mut **transaction)
            .await?;
    }
    Ok(())
}
