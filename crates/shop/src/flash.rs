//! Flash sales: a merchant sells a number of units of one SKU at a sale price in a window,
//! with a limit per buyer, and a crowd arrives at the second it opens.
//!
//! The sale owns its units: scheduling takes them from the SKU's stock (a conditional
//! update), the job gives back what is unsold once the window ends, and a cancelled
//! sale order returns its units to the sale (or to the SKU after that). The sale's row is
//! then the one hot spot every buyer hits, so its orders are **group-committed**
//! ([`plaza_store::GroupCommit`], as wallet transfers and chat sends are): every order
//! waiting is decided in one transaction, in arrival order, against the sale's remaining
//! units, each buyer's units so far and each buyer's balance (read once, locked on
//! PostgreSQL), and written with a fixed number of statements — the sale's row once, the
//! holds through [`plaza_wallet::HoldBatch`], the orders, their lines and the purchases
//! as multi-row inserts. The hold and the order commit together, so no flash order ever
//! has a hold without its order. The batch also decides every refusal (not started,
//! ended, sold out, over the limit, another SKU, the buyer's own shop) under its lock,
//! before any hold, so nothing is ever oversold and a refused order touches no wallet; an
//! order costs no read of its own before the queue, and a batch of sold-out answers reads
//! no balance. A buyer's PIN, when sent, is verified before the queue, but only for an
//! order one read of the sale says it could take (a PIN costs an attempt and a hash); one
//! not sent is asked for by the batch if the buyer has set one (`HoldBatch::hold`), so an
//! order without a PIN costs no read of it. The batch reads each sale's shop too, and its
//! owner once, so the orders' answers need no read of either. A batch that fails as a
//! whole (a key taken meanwhile by another node, a lost connection) runs its orders one per
//! transaction.

use crate::flash_batch::{
    decide, payers_by_currency, read_purchases, read_sales, read_stored_orders, write_orders, write_purchases,
    write_sales, Decided, SaleInBatch, Verdict,
};
use crate::order_json::OrderJson;
use crate::orders::load_order;
use crate::service::{invalid, Order, OrderItem, OrderRequest, Shop, ShopError, ShopHandle};
use plaza_accounts::User;
use plaza_events::{Appended, ToAppend};
use plaza_kernel::{Currency, Timestamp};
use plaza_store::{Any, GroupCommit, Row, SyncTicket, Transaction, WalSync};
use plaza_wallet::{HoldBatch, HoldEvents};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Orders decided in one transaction at most.
const FLASH_BATCH_MAX: usize = 512;
/// Orders waiting for the batcher at most, before callers wait for room.
const FLASH_QUEUE_MAX: usize = 8192;
/// The longest window of a sale.
const SALE_WINDOW_MAX_MS: i64 = 7 * 24 * 3600 * 1000;
/// How far ahead a sale may be scheduled.
const SALE_AHEAD_MAX_MS: i64 = 90 * 24 * 3600 * 1000;
/// Units a buyer may be allowed per sale at most.
const PER_USER_LIMIT_MAX: i64 = 99;
/// Sales listed on a product page at most.
pub const PRODUCT_SALES_LISTED: i64 = 5;

pub(crate) type FlashQueue = GroupCommit<FlashJob, FlashOutcome>;

/// A flash sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashSale {
    pub id: String,
    pub shop_id: String,
    pub product_id: String,
    pub sku_id: String,
    pub price: i64,
    pub currency: String,
    pub quantity: i64,
    pub remaining: i64,
    pub per_user_limit: i64,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_at: Timestamp,
}

impl FlashSale {
    /// `upcoming`, `live`, `sold_out` or `ended`, at `now`.
    pub fn status(&self, now: Timestamp) -> &'static str {
        if now.unix_millis() >= self.ends_at.unix_millis() {
            "ended"
        } else if now.unix_millis() < self.starts_at.unix_millis() {
            "upcoming"
        } else if self.remaining == 0 {
            "sold_out"
        } else {
            "live"
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "shop_id": self.shop_id,
            "product_id": self.product_id,
            "sku_id": self.sku_id,
            "price": {"amount": self.price, "currency": self.currency},
            "quantity": self.quantity,
            "remaining": self.remaining,
            "per_user_limit": self.per_user_limit,
            "starts_at": self.starts_at.to_rfc3339(),
            "ends_at": self.ends_at.to_rfc3339(),
            "status": self.status(Timestamp::now()),
            "created_at": self.created_at.to_rfc3339(),
        })
    }
}

/// What a flash sale sold ([`ShopHandle::flash_sale_totals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlashSaleTotals {
    pub orders: i64,
    pub units: i64,
    /// In the sale's minor units and currency.
    pub revenue: i64,
}

/// A sale as a merchant asks for it.
#[derive(Debug, Clone)]
pub struct FlashSaleInput {
    pub sku_id: String,
    pub price: (i64, String),
    pub quantity: i64,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub per_user_limit: i64,
}

/// One flash-sale order waiting for its batch.
#[derive(Debug)]
pub(crate) struct FlashJob {
    pub(crate) buyer_id: String,
    pub(crate) sale_id: String,
    pub(crate) sku_id: String,
    pub(crate) quantity: i64,
    pub(crate) address: Value,
    pub(crate) client_key: String,
    pub(crate) hash: String,
    /// The buyer sent a PIN and it was verified; without one, the batch refuses a buyer
    /// who has a PIN (`HoldBatch::hold`).
    pub(crate) pin_verified: bool,
}

/// A placed flash order: the order, whether it was placed before, and its shop when the
/// batch has it (read once per batch, so a route need not read it per order).
pub(crate) type FlashPlaced = (Order, bool, Option<Shop>);

/// A batched order's answer, and what must be on disk before it is given.
pub(crate) struct FlashOutcome {
    outcome: Result<FlashPlaced, ShopError>,
    durable: Option<(Arc<WalSync>, SyncTicket)>,
}

pub(crate) const SALE_COLUMNS: &str = "f.id, f.shop_id, f.product_id, f.sku_id, f.price_amount, f.currency, f.quantity,
    f.remaining, f.per_user_limit, f.starts_at, f.ends_at, f.created_at";

impl ShopHandle {
    /// Schedules a sale of one SKU of `me`'s shop; its units leave the SKU's stock now.
    pub async fn create_flash_sale(&self, me: &User, input: FlashSaleInput) -> Result<FlashSale, ShopError> {
        if input.sku_id.is_empty() || input.sku_id.len() > 64 {
            return Err(invalid("sku_id", "no such SKU"));
        }
        let row = sqlx::query(
            "SELECT s.price_amount, s.currency, s.stock, p.id AS product_id, p.status, p.shop_id, sh.owner_id
             FROM shop_skus s JOIN shop_products p ON p.id = s.product_id JOIN shops sh ON sh.id = p.shop_id
             WHERE s.id = $1",
        )
        .bind(&input.sku_id)
        .fetch_optional(self.inner.store.write())
        .await?
        .ok_or_else(|| invalid("sku_id", "no such SKU"))?;
        if row.try_get::<String, _>("owner_id")? != me.id {
            return Err(ShopError::NotOwner { action: "put its products on sale" });
        }
        let product_id: String = row.try_get("product_id")?;
        if row.try_get::<String, _>("status")? == "archived" {
            return Err(ShopError::ProductArchived { product_id, field: "sku_id".into() });
        }
        let price = self.money(input.price, "price")?;
        if price.currency().code() != row.try_get::<String, _>("currency")? {
            return Err(invalid("price.currency", "the SKU's currency"));
        }
        if price.amount() >= row.try_get::<i64, _>("price_amount")? {
            return Err(invalid("price", "a sale price is below the SKU's price"));
        }
        if !(1..=crate::model::STOCK_MAX).contains(&input.quantity) {
            return Err(invalid("quantity", format!("1 to {}", crate::model::STOCK_MAX)));
        }
        if !(1..=PER_USER_LIMIT_MAX).contains(&input.per_user_limit) {
            return Err(invalid("per_user_limit", format!("1 to {PER_USER_LIMIT_MAX} units per buyer")));
        }
        let now = Timestamp::now().unix_millis();
        let (starts, ends) = (input.starts_at.unix_millis(), input.ends_at.unix_millis());
        if ends <= starts {
            return Err(invalid("ends_at", "after starts_at"));
        }
        if ends <= now {
            return Err(invalid("ends_at", "in the future"));
        }
        if ends - starts > SALE_WINDOW_MAX_MS {
            return Err(invalid("ends_at", "a sale lasts at most 7 days"));
        }
        if starts - now > SALE_AHEAD_MAX_MS {
            return Err(invalid("starts_at", "at most 90 days ahead"));
        }
        let id = plaza_kernel::new_id();
        let mut transaction = self.inner.store.begin().await?;
        let taken = sqlx::query("UPDATE shop_skus SET stock = stock - $2 WHERE id = $1 AND stock >= $2")
            .bind(&input.sku_id)
            .bind(input.quantity)
            .execute(&mut *transaction)
            .await?;
        if taken.rows_affected() != 1 {
            return Err(ShopError::OutOfStock { sku_id: input.sku_id, field: "quantity".into() });
        }
        sqlx::query(
            "INSERT INTO shop_flash_sales (id, shop_id, product_id, sku_id, price_amount, currency, quantity, remaining,
                 per_user_limit, starts_at, ends_at, returned, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, 0, $11)",
        )
        .bind(&id)
        .bind(row.try_get::<String, _>("shop_id")?)
        .bind(&product_id)
        .bind(&input.sku_id)
        .bind(price.amount())
        .bind(price.currency().code())
        .bind(input.quantity)
        .bind(input.per_user_limit)
        .bind(starts)
        .bind(ends)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        self.flash_sale(&id).await
    }

    pub async fn flash_sale(&self, sale_id: &str) -> Result<FlashSale, ShopError> {
        let row = sqlx::query(&format!("SELECT {SALE_COLUMNS} FROM shop_flash_sales f WHERE f.id = $1"))
            .bind(sale_id)
            .fetch_optional(self.inner.store.read())
            .await?
            .ok_or(ShopError::FlashSaleNotFound { field: "id".into() })?;
        sale_from_row(&row)
    }

    /// What a sale has sold: its orders not cancelled or refunded, their units and their
    /// total (in the sale's currency). A flash order has one line, so lines are orders.
    pub async fn flash_sale_totals(&self, sale_id: &str) -> Result<FlashSaleTotals, ShopError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS orders, CAST(COALESCE(SUM(i.quantity), 0) AS BIGINT) AS units,
                    CAST(COALESCE(SUM(i.quantity * i.unit_price), 0) AS BIGINT) AS revenue
             FROM shop_orders o JOIN shop_order_items i ON i.order_id = o.id
             WHERE o.flash_sale_id = $1 AND o.status NOT IN ('cancelled', 'refunded')",
        )
        .bind(sale_id)
        .fetch_one(self.inner.store.read())
        .await?;
        Ok(FlashSaleTotals {
            orders: row.try_get("orders")?,
            units: row.try_get("units")?,
            revenue: row.try_get("revenue")?,
        })
    }

    /// A product's sales not yet ended, the soonest first.
    pub async fn product_flash_sales(&self, product_id: &str) -> Result<Vec<FlashSale>, ShopError> {
        let rows = sqlx::query(&format!(
            "SELECT {SALE_COLUMNS} FROM shop_flash_sales f WHERE f.product_id = $1 AND f.ends_at > $2
             ORDER BY f.starts_at, f.id LIMIT $3"
        ))
        .bind(product_id)
        .bind(Timestamp::now().unix_millis())
        .bind(PRODUCT_SALES_LISTED)
        .fetch_all(self.inner.store.read())
        .await?;
        rows.iter().map(sale_from_row).collect()
    }

    /// A flash-sale order: the batch decides it, every refusal included. An order with a
    /// PIN is first checked against one read of the sale, so that a PIN (an attempt and a
    /// hash) is verified only for an order the sale could take.
    pub(crate) async fn place_flash_order(
        &self,
        me: &User,
        request: OrderRequest,
        client_key: String,
        hash: String,
    ) -> Result<FlashPlaced, ShopError> {
        let line = &request.lines[0];
        let sale_id = line.flash_sale_id.clone().unwrap_or_default();
        let pin = plaza_wallet::Pin::parse_optional(request.pin.as_deref()).map_err(|reason| invalid("pin", reason))?;
        let pin_verified = pin.is_some();
        if pin_verified {
            if let Some(refused) = self.flash_refusal(me, &sale_id, &line.sku_id, line.quantity).await? {
                // A concurrent try with this key may have bought the units this refusal counts.
                if let Some(order) = self.order_by_key(&me.id, &client_key, &hash).await? {
                    return Ok((order, true, None));
                }
                return Err(refused);
            }
            self.inner.wallet.authorize_payment(me, pin.as_ref()).await?;
        }
        let job = FlashJob {
            buyer_id: me.id.clone(),
            sale_id,
            sku_id: line.sku_id.clone(),
            quantity: line.quantity,
            address: request.address.to_json(),
            client_key,
            hash,
            pin_verified,
        };
        let answer = self.flash_queue().submit(job).await?;
        if let Some((wal, ticket)) = answer.durable {
            wal.durable(ticket).await.map_err(|_| ShopError::Lost(plaza_store::GroupCommitError::Lost))?;
        }
        answer.outcome
    }

    /// Why the sale would refuse this order now, from one read: the sale, its product's
    /// status, the shop's owner and what this buyer has bought of it so far. The batch
    /// decides all of it again under its lock.
    async fn flash_refusal(
        &self,
        me: &User,
        sale_id: &str,
        sku_id: &str,
        quantity: i64,
    ) -> Result<Option<ShopError>, ShopError> {
        let row = sqlx::query(&format!(
            "SELECT {SALE_COLUMNS}, p.status AS product_status, sh.owner_id,
                    COALESCE((SELECT MAX(units) FROM shop_flash_purchases
                              WHERE flash_sale_id = f.id AND buyer_id = $2), 0) AS bought
             FROM shop_flash_sales f JOIN shop_products p ON p.id = f.product_id JOIN shops sh ON sh.id = f.shop_id
             WHERE f.id = $1"
        ))
        .bind(sale_id)
        .bind(&me.id)
        .fetch_optional(self.inner.store.read())
        .await?;
        let Some(row) = row else {
            return Ok(Some(ShopError::FlashSaleNotFound { field: "items[0].flash_sale_id".into() }));
        };
        let sale = sale_from_row(&row)?;
        let archived = row.try_get::<String, _>("product_status")? == "archived";
        let own = row.try_get::<String, _>("owner_id")? == me.id;
        let bought: i64 = row.try_get("bought")?;
        Ok(sale_refusal(&sale, sku_id, archived, own)
            .or_else(|| refusal(&sale, Timestamp::now().unix_millis(), quantity, bought)))
    }

    fn flash_queue(&self) -> &FlashQueue {
        self.inner.flash_orders.get_or_init(|| {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let _ = self.inner.flash_publisher.set(runtime);
            }
            // The runner holds the service weakly, so dropping the last handle stops it.
            let service = Arc::downgrade(&self.inner);
            let run = move |jobs: Vec<FlashJob>| {
                let service = service.upgrade().map(|inner| ShopHandle { inner });
                async move {
                    match service {
                        Some(shop) => shop.flash_batch(jobs).await,
                        None => jobs
                            .iter()
                            .map(|_| FlashOutcome {
                                outcome: Err(ShopError::Lost(plaza_store::GroupCommitError::Stopped)),
                                durable: None,
                            })
                            .collect(),
                    }
                }
            };
            GroupCommit::spawn_on_own_thread("plaza-shop-flash", FLASH_QUEUE_MAX, FLASH_BATCH_MAX, run.clone())
                .unwrap_or_else(|error| {
                    tracing::warn!("no thread for flash-sale orders ({error}); they share the main runtime");
                    GroupCommit::spawn(FLASH_QUEUE_MAX, FLASH_BATCH_MAX, run)
                })
        })
    }

    /// Decides and writes a batch; should it fail as a whole, each order alone.
    async fn flash_batch(&self, jobs: Vec<FlashJob>) -> Vec<FlashOutcome> {
        metrics::counter!("plaza_shop_flash_batches_total").increment(1);
        match self.try_flash_batch(&jobs).await {
            Ok((outcomes, durable)) => {
                return outcomes.into_iter().map(|outcome| FlashOutcome { outcome, durable: durable.clone() }).collect()
            }
            Err(error) => {
                tracing::debug!("a batch of {} flash orders failed as a whole ({error}); one by one", jobs.len())
            }
        }
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs.chunks(1) {
            match self.try_flash_batch(job).await {
                Ok((mut answers, durable)) => {
                    let outcome = answers.pop().unwrap_or(Err(ShopError::Invariant("an unanswered order".into())));
                    outcomes.push(FlashOutcome { outcome, durable });
                }
                Err(error) => outcomes.push(FlashOutcome { outcome: Err(error), durable: None }),
            }
        }
        outcomes
    }

    /// The batch in one transaction: on SQLite's writer set not to wait for the disk when
    /// it can be (as wallet transfers do), with the ticket each caller waits on.
    pub(crate) async fn try_flash_batch(
        &self,
        jobs: &[FlashJob],
    ) -> Result<(Vec<Result<FlashPlaced, ShopError>>, Option<(Arc<WalSync>, SyncTicket)>), ShopError> {
        let store = &self.inner.store;
        let Some((mut writer, wal)) = store.deferred_sync_writer().await? else {
            let (decided, appended, shops) = self.flash_batch_in(store.begin().await?, jobs).await?;
            self.inner.events.publish(appended);
            let placed: Vec<Order> = decided.accepted.iter().map(|(_, order)| order.clone()).collect();
            self.tell_placed(&placed);
            return Ok((self.answers(decided, jobs, &shops).await?, None));
        };
        let transaction = writer.begin().await?;
        let batch = self.flash_batch_in(transaction, jobs).await;
        writer.finish();
        // Answers read stored orders through the pool, so only once the writer is back.
        let (decided, appended, shops) = batch?;
        let placed: Vec<Order> = decided.accepted.iter().map(|(_, order)| order.clone()).collect();
        let outcomes = self.answers(decided, jobs, &shops).await?;
        if appended.is_empty() {
            return Ok((outcomes, Some((Arc::clone(&wal), wal.read_ticket()))));
        }
        let ticket = wal.committed();
        let (shop, syncing) = (self.clone(), Arc::clone(&wal));
        let publish = async move {
            if syncing.durable(ticket).await.is_ok() {
                shop.inner.events.publish(appended);
                shop.tell_placed(&placed);
            }
        };
        match self.inner.flash_publisher.get() {
            Some(runtime) => drop(runtime.spawn(publish)),
            None => drop(tokio::spawn(publish)),
        }
        Ok((outcomes, Some((wal, ticket))))
    }

    /// Reads what the batch needs (stored keys, the sales locked, each buyer's units so
    /// far, the balances), decides every order in order ([`decide`]), then writes. The
    /// shops of the accepted orders (for their answers) are read meanwhile from the read
    /// pool, so that the owner's read is not one more step the writer waits on.
    async fn flash_batch_in(
        &self,
        mut transaction: Transaction<'_, Any>,
        jobs: &[FlashJob],
    ) -> Result<(Decided, Appended, HashMap<String, Shop>), ShopError> {
        let backend = self.inner.store.backend();
        let stored = read_stored_orders(&mut transaction, backend, jobs).await?;
        let sales = read_sales(&mut transaction, backend, jobs).await?;
        let bought = read_purchases(&mut transaction, backend, jobs).await?;
        let now = Timestamp::now();
        let mut holds: BTreeMap<String, HoldBatch> = BTreeMap::new();
        for (currency, payers) in payers_by_currency(jobs, &sales, now) {
            let code =
                Currency::parse(&currency).ok_or_else(|| ShopError::Invariant(format!("currency {currency}")))?;
            let payers: Vec<&str> = payers.iter().map(String::as_str).collect();
            holds.insert(currency, self.inner.wallet.begin_hold_batch(&mut transaction, code, &payers).await?);
        }
        let decided = decide(jobs, &stored, &sales, bought, &mut holds, now)?;
        if decided.accepted.is_empty() {
            transaction.rollback().await?;
            return Ok((decided, Appended::default(), HashMap::new()));
        }
        let (written, shops) =
            tokio::join!(self.write_batch(transaction, jobs, holds, &decided, now), self.shops_of(&sales, &decided));
        Ok((decided, written?, shops))
    }

    /// The decided batch's writes and its events, committed.
    async fn write_batch(
        &self,
        mut transaction: Transaction<'_, Any>,
        jobs: &[FlashJob],
        holds: BTreeMap<String, HoldBatch>,
        decided: &Decided,
        now: Timestamp,
    ) -> Result<Appended, ShopError> {
        let backend = self.inner.store.backend();
        let mut wallet_events = Vec::with_capacity(holds.len());
        for batch in holds.into_values() {
            wallet_events.push(batch.write(&mut transaction).await?);
        }
        write_sales(&mut transaction, decided).await?;
        write_purchases(&mut transaction, backend, jobs, decided).await?;
        write_orders(&mut transaction, backend, jobs, decided, now).await?;
        let data: Vec<(Vec<String>, Box<RawValue>)> = decided
            .accepted
            .iter()
            .map(|(_, order)| (order.parties(), plaza_events::to_data(&OrderJson::of(order))))
            .collect();
        // Each buyer's `wallet.updated` first, then the orders', in one append.
        let to_append: Vec<ToAppend<'_>> = wallet_events
            .iter()
            .flat_map(HoldEvents::to_append)
            .chain(data.iter().map(|(users, data)| ToAppend { user_ids: users, event_type: "order.updated", data }))
            .collect();
        let appended = self.inner.events.append_many(&mut transaction, &to_append).await?;
        transaction.commit().await?;
        Ok(appended)
    }

    /// Every job's answer once the batch committed (or decided to write nothing).
    async fn answers(
        &self,
        decided: Decided,
        jobs: &[FlashJob],
        shops: &HashMap<String, Shop>,
    ) -> Result<Vec<Result<FlashPlaced, ShopError>>, ShopError> {
        let shop_of = |order: &Order| shops.get(&order.shop_id).cloned();
        let accepted: HashMap<usize, Order> = decided.accepted.into_iter().collect();
        let mut answers = Vec::with_capacity(jobs.len());
        for (index, verdict) in decided.verdicts.into_iter().enumerate() {
            answers.push(match verdict {
                Verdict::Accepted => accepted
                    .get(&index)
                    .map(|order| (order.clone(), false, shop_of(order)))
                    .ok_or(ShopError::OrderNotFound),
                Verdict::SameAs(first) => match accepted.get(&first) {
                    Some(order) => Ok((order.clone(), true, shop_of(order))),
                    None => Err(ShopError::OrderNotFound),
                },
                Verdict::Stored(order_id) => {
                    let mut connection = self.inner.store.write().acquire().await?;
                    load_order(&mut connection, &order_id)
                        .await?
                        .map(|order| (order, true, None))
                        .ok_or(ShopError::OrderNotFound)
                }
                Verdict::Refused(error) => Err(error),
            });
        }
        Ok(answers)
    }

    /// The shops of the batch's accepted orders, each with its owner read once for the
    /// whole batch. A shop whose owner cannot be read now is left out: its orders' routes
    /// read it themselves (the batch has committed; its answers must not fail for this).
    async fn shops_of(&self, sales: &HashMap<String, SaleInBatch>, decided: &Decided) -> HashMap<String, Shop> {
        let mut shops = HashMap::new();
        for sale in sales.values() {
            if shops.contains_key(sale.shop_id()) || !decided.taken.contains_key(sale.sale_id()) {
                continue;
            }
            let Ok(owner) = self.inner.accounts.user(sale.seller_id()).await else { continue };
            let shop = &sale.shop;
            shops.insert(
                sale.shop_id().to_string(),
                Shop {
                    id: sale.shop_id().to_string(),
                    owner,
                    name: shop.name.clone(),
                    description: shop.description.clone(),
                    rating_sum: shop.rating_sum,
                    rating_count: shop.rating_count,
                    created_at: shop.created_at,
                },
            );
        }
        shops
    }

    /// A cancelled flash order's units go back to its sale, or to the SKU once the sale
    /// has returned its unsold units; the buyer's count drops with them.
    pub(crate) async fn return_flash_units(
        &self,
        transaction: &mut Transaction<'static, Any>,
        sale_id: &str,
        buyer_id: &str,
        item: &OrderItem,
    ) -> Result<(), ShopError> {
        let to_sale =
            sqlx::query("UPDATE shop_flash_sales SET remaining = remaining + $2 WHERE id = $1 AND returned = 0")
                .bind(sale_id)
                .bind(item.quantity)
                .execute(&mut **transaction)
                .await?;
        if to_sale.rows_affected() == 0 {
            sqlx::query("UPDATE shop_skus SET stock = stock + $2 WHERE id = $1")
                .bind(&item.sku_id)
                .bind(item.quantity)
                .execute(&mut **transaction)
                .await?;
        }
        sqlx::query("UPDATE shop_flash_purchases SET units = units - $3 WHERE flash_sale_id = $1 AND buyer_id = $2")
            .bind(sale_id)
            .bind(buyer_id)
            .bind(item.quantity)
            .execute(&mut **transaction)
            .await?;
        Ok(())
    }

    /// Ends a running sale now (a live room's deal when its room ends): later orders are
    /// `sale_ended`, and the job gives its unsold units back as for any ended sale.
    /// Whether this call ended it.
    pub async fn end_flash_sale_now(&self, sale_id: &str) -> Result<bool, ShopError> {
        let now = Timestamp::now().unix_millis();
        let ended = sqlx::query(
            "UPDATE shop_flash_sales SET ends_at = CASE WHEN starts_at > $2 THEN starts_at ELSE $2 END
             WHERE id = $1 AND ends_at > $2",
        )
        .bind(sale_id)
        .bind(now)
        .execute(self.inner.store.write())
        .await?
        .rows_affected();
        Ok(ended == 1)
    }

    /// The job's step for ended sales: each gives its unsold units back to its SKU, once.
    pub(crate) async fn return_ended_sales(&self, now: i64) -> Result<usize, ShopError> {
        let ended: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM shop_flash_sales WHERE returned = 0 AND ends_at <= $1 ORDER BY ends_at LIMIT 200",
        )
        .bind(now)
        .fetch_all(self.inner.store.write())
        .await?;
        let mut returned = 0;
        for sale_id in ended {
            let mut transaction = self.inner.store.begin().await?;
            let marked = sqlx::query("UPDATE shop_flash_sales SET returned = 1 WHERE id = $1 AND returned = 0")
                .bind(&sale_id)
                .execute(&mut *transaction)
                .await?;
            if marked.rows_affected() == 1 {
                sqlx::query(
                    "UPDATE shop_skus SET stock = stock + (SELECT remaining FROM shop_flash_sales WHERE id = $1)
                     WHERE id = (SELECT sku_id FROM shop_flash_sales WHERE id = $1)",
                )
                .bind(&sale_id)
                .execute(&mut *transaction)
                .await?;
                returned += 1;
            }
            transaction.commit().await?;
        }
        Ok(returned)
    }
}

/// Why this sale sells nothing to this order at all: another SKU, an archived product, or
/// the buyer's own shop.
pub(crate) fn sale_refusal(sale: &FlashSale, sku_id: &str, archived: bool, own_shop: bool) -> Option<ShopError> {
    if sale.sku_id != sku_id {
        Some(invalid("items[0].flash_sale_id", "this sale sells another SKU"))
    } else if archived {
        Some(ShopError::ProductArchived { product_id: sale.product_id.clone(), field: "items[0].sku_id".into() })
    } else if own_shop {
        Some(invalid("items[0].sku_id", "you cannot buy from your own shop"))
    } else {
        None
    }
}

/// Why an order of `quantity` units by a buyer who bought `bought` cannot be had now.
pub(crate) fn refusal(sale: &FlashSale, now: i64, quantity: i64, bought: i64) -> Option<ShopError> {
    if now < sale.starts_at.unix_millis() {
        Some(ShopError::SaleNotStarted { starts_at: sale.starts_at })
    } else if now >= sale.ends_at.unix_millis() {
        Some(ShopError::SaleEnded)
    } else if sale.remaining == 0 {
        Some(ShopError::SoldOut)
    } else if bought + quantity > sale.per_user_limit {
        Some(ShopError::LimitReached { limit: sale.per_user_limit, bought })
    } else if sale.remaining < quantity {
        Some(ShopError::OutOfStock { sku_id: sale.sku_id.clone(), field: "items[0].quantity".into() })
    } else {
        None
    }
}

pub(crate) fn sale_from_row(row: &plaza_store::AnyRow) -> Result<FlashSale, ShopError> {
    Ok(FlashSale {
        id: row.try_get("id")?,
        shop_id: row.try_get("shop_id")?,
        product_id: row.try_get("product_id")?,
        sku_id: row.try_get("sku_id")?,
        price: row.try_get("price_amount")?,
        currency: row.try_get("currency")?,
        quantity: row.try_get("quantity")?,
        remaining: row.try_get("remaining")?,
        per_user_limit: row.try_get("per_user_limit")?,
        starts_at: Timestamp::from_unix_millis(row.try_get("starts_at")?),
        ends_at: Timestamp::from_unix_millis(row.try_get("ends_at")?),
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
    })
}
