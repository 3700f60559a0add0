//! In-stream deals: the host starts a shop flash sale that runs now, for 10–300 s, and
//! every viewer sees its countdown and units left; buying is an ordinary flash order.
//!
//! The sale is the shop's (`ShopHandle::create_flash_sale`), so its group-committed
//! orders, its per-buyer limit and "never oversold" are the shop's too; live keeps which
//! room ran which sale (`live_deals`) and the room's current one (`live_rooms.deal_*`).
//! One deal at a time: the room's slot is claimed by one conditional update before the
//! sale is made (and given back if the shop refuses it), so two hosts' clicks never make
//! two sales. A deal runs until its end, sold out or not.
//!
//! Viewers hear of a deal on the room's subject when it starts (`live.deal`), then every
//! node sends its viewers the deal again with each 1 s `live.stats` while it runs (units
//! left and milliseconds left by the server's clock), and once with `ended: true` after it
//! ended. Sales reach the room through the shop's placed-orders hook, on the node that
//! placed them: orders of a room's deal, and orders of a product pinned in a live room,
//! become one `Sold` notice per room and batch of orders (`live.sold`).

use crate::hub::RoomNotice;
use crate::model::RoomStatus;
use crate::service::{invalid, LiveError, LiveHandle};
use plaza_accounts::User;
use plaza_kernel::Timestamp;
use plaza_shop::{FlashSale, FlashSaleInput, Order, ShopError};
use plaza_store::Row;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// The shortest and longest deal, in seconds.
pub const DEAL_SECONDS_MIN: i64 = 10;
pub const DEAL_SECONDS_MAX: i64 = 300;
/// Deals a room may run in its life (its sales view sums each).
pub const DEALS_PER_ROOM_MAX: i64 = 200;
/// Sales one `live.sold` notice names at most; the rest are counted in `others`.
pub const SOLD_NAMED_MAX: usize = 20;
/// How long past the deal's end a claim of the room's slot stays held should the node
/// die between the claim and the sale.
const CLAIM_GRACE: Duration = Duration::from_secs(10);
/// How long after a deal's end a node still tells its viewers it ended.
const ENDED_ANNOUNCED_FOR: Duration = Duration::from_secs(10);

/// A deal as the host asks for it.
#[derive(Debug, Clone)]
pub struct DealInput {
    pub sku_id: String,
    pub price: (i64, String),
    pub quantity: i64,
    pub duration_s: i64,
    pub per_user_limit: i64,
}

/// A room's deal: its flash sale and the product's card, as of `at`.
#[derive(Debug, Clone)]
pub struct Deal {
    pub sale: FlashSale,
    pub product: Value,
    pub at: Timestamp,
}

impl Deal {
    pub fn remaining_ms(&self) -> i64 {
        (self.sale.ends_at.unix_millis() - self.at.unix_millis()).max(0)
    }

    pub fn ended(&self) -> bool {
        self.remaining_ms() == 0
    }
}

/// What a room's deals sold (the host's view).
#[derive(Debug, Clone, Default)]
pub struct RoomSales {
    pub deals: i64,
    pub orders: i64,
    pub units: i64,
    /// Per currency, in minor units.
    pub revenue: BTreeMap<String, i64>,
}

impl LiveHandle {
    /// Starts a deal in the host's live room: a flash sale of one SKU of the host's shop,
    /// from now for `duration_s`.
    pub async fn start_deal(&self, host: &User, room_id: &str, input: DealInput) -> Result<Deal, LiveError> {
        let row = self.host_row(host, room_id, "start a deal").await?;
        match row.status {
            RoomStatus::Created => return Err(LiveError::NotLive),
            RoomStatus::Ended => return Err(LiveError::RoomEnded),
            RoomStatus::Live => {}
        }
        if !(DEAL_SECONDS_MIN..=DEAL_SECONDS_MAX).contains(&input.duration_s) {
            return Err(invalid("duration_s", format!("{DEAL_SECONDS_MIN} to {DEAL_SECONDS_MAX} seconds")));
        }
        let now = Timestamp::now();
        let ends_at = now.plus(Duration::from_secs(input.duration_s as u64));
        let claim_until = ends_at.plus(CLAIM_GRACE).unix_millis();
        self.claim_deal_slot(room_id, now, claim_until).await?;
        let sale_input = FlashSaleInput {
            sku_id: input.sku_id,
            price: input.price,
            quantity: input.quantity,
            starts_at: now,
            ends_at,
            per_user_limit: input.per_user_limit,
        };
        let sku_id = sale_input.sku_id.clone();
        let sale = match self.inner.shop.create_flash_sale(host, sale_input).await {
            Ok(sale) => sale,
            Err(error) => {
                self.release_deal_slot(room_id, claim_until).await?;
                return Err(match error {
                    ShopError::NotOwner { .. } => LiveError::SkuNotInShop { sku_id },
                    other => LiveError::Shop(other),
                });
            }
        };
        let mut transaction = self.inner.store.begin().await?;
        sqlx::query("INSERT INTO live_deals (flash_sale_id, room_id, created_at) VALUES ($1, $2, $3)")
            .bind(&sale.id)
            .bind(room_id)
            .bind(now.unix_millis())
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "UPDATE live_rooms SET deal_flash_sale_id = $1, deal_ends_at = $2
             WHERE id = $3 AND deal_flash_sale_id IS NULL AND deal_ends_at = $4",
        )
        .bind(&sale.id)
        .bind(sale.ends_at.unix_millis())
        .bind(room_id)
        .bind(claim_until)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        let deal = self.deal_of(sale).await?;
        self.publish_room(room_id, &RoomNotice::Deal { deal: deal_json(room_id, &deal) });
        Ok(deal)
    }

    /// Ends a just-ended room's running deal with it (the host's end and the idle end
    /// both call this): its sale is cut short, so nobody buys at the deal's price after
    /// the stream, and the room shows no deal.
    pub(crate) async fn end_deal_with_room(&self, room_id: &str) -> Result<(), LiveError> {
        let Some(row) = self.room_row(room_id).await? else { return Ok(()) };
        let now = Timestamp::now().unix_millis();
        let (Some(sale_id), Some(ends_at)) = (row.deal_flash_sale_id, row.deal_ends_at) else { return Ok(()) };
        if ends_at.unix_millis() <= now {
            return Ok(());
        }
        self.inner.shop.end_flash_sale_now(&sale_id).await.map_err(LiveError::Shop)?;
        sqlx::query(
            "UPDATE live_rooms SET deal_ends_at = $1 WHERE id = $2 AND deal_flash_sale_id = $3 AND deal_ends_at > $1",
        )
        .bind(now)
        .bind(room_id)
        .bind(&sale_id)
        .execute(self.inner.store.write())
        .await?;
        Ok(())
    }

    /// Takes the room's one deal slot: live, no deal running, fewer than the most deals.
    async fn claim_deal_slot(&self, room_id: &str, now: Timestamp, claim_until: i64) -> Result<(), LiveError> {
        let claimed = sqlx::query(
            "UPDATE live_rooms SET deal_flash_sale_id = NULL, deal_ends_at = $1
             WHERE id = $2 AND status = 'live' AND (deal_ends_at IS NULL OR deal_ends_at <= $3)
               AND (SELECT COUNT(*) FROM live_deals d WHERE d.room_id = $2) < $4",
        )
        .bind(claim_until)
        .bind(room_id)
        .bind(now.unix_millis())
        .bind(DEALS_PER_ROOM_MAX)
        .execute(self.inner.store.write())
        .await?
        .rows_affected();
        if claimed == 1 {
            return Ok(());
        }
        let row = self.room_row(room_id).await?.ok_or(LiveError::RoomNotFound)?;
        match row.status {
            RoomStatus::Created => Err(LiveError::NotLive),
            RoomStatus::Ended => Err(LiveError::RoomEnded),
            RoomStatus::Live if row.deal_ends_at.is_some_and(|at| at.unix_millis() > now.unix_millis()) => {
                Err(LiveError::DealRunning)
            }
            RoomStatus::Live => Err(invalid("sku_id", format!("a room runs at most {DEALS_PER_ROOM_MAX} deals"))),
        }
    }

    async fn release_deal_slot(&self, room_id: &str, claim_until: i64) -> Result<(), LiveError> {
        sqlx::query(
            "UPDATE live_rooms SET deal_ends_at = NULL
             WHERE id = $1 AND deal_flash_sale_id IS NULL AND deal_ends_at = $2",
        )
        .bind(room_id)
        .bind(claim_until)
        .execute(self.inner.store.write())
        .await?;
        Ok(())
    }

    /// A sale with its product's card, as of now.
    pub(crate) async fn deal_of(&self, sale: FlashSale) -> Result<Deal, LiveError> {
        let product = match self.inner.shop.product_card(&sale.product_id).await {
            Ok(card) => card,
            Err(ShopError::ProductNotFound) => Value::Null,
            Err(error) => return Err(LiveError::Shop(error)),
        };
        Ok(Deal { sale, product, at: Timestamp::now() })
    }

    /// The room's deal while it runs (`None` once it ended, or before any).
    pub(crate) async fn running_deal(
        &self,
        sale_id: Option<&str>,
        ends_at: Option<Timestamp>,
    ) -> Result<Option<Deal>, LiveError> {
        let (Some(sale_id), Some(ends_at)) = (sale_id, ends_at) else { return Ok(None) };
        if ends_at.unix_millis() <= Timestamp::now().unix_millis() {
            return Ok(None);
        }
        match self.inner.shop.flash_sale(sale_id).await {
            Ok(sale) => Ok(Some(self.deal_of(sale).await?)),
            // Sales are never deleted; should one be, the room shows no deal rather than fail.
            Err(ShopError::FlashSaleNotFound { .. }) => Ok(None),
            Err(error) => Err(LiveError::Shop(error)),
        }
    }

    /// The stats tick's `live.deal` to this node's viewers of a room: the deal again while
    /// it runs (its units and time left), and once after it ended, with `ended: true`.
    pub(crate) async fn send_deal_tick(
        &self,
        room_id: &str,
        sale_id: &str,
        ends_at: Timestamp,
        counted: &[(String, i64)],
    ) -> Result<(), LiveError> {
        let now = Timestamp::now().unix_millis();
        let running = now < ends_at.unix_millis();
        // A relay started long after a deal ended does not announce that end.
        let just_ended = !running && now < ends_at.plus(ENDED_ANNOUNCED_FOR).unix_millis();
        let announce = running || (just_ended && self.hub().deal_end_unsent(room_id, sale_id, counted));
        if !announce {
            return Ok(());
        }
        let sale = match self.inner.shop.flash_sale(sale_id).await {
            Ok(sale) => sale,
            Err(ShopError::FlashSaleNotFound { .. }) => return Ok(()),
            Err(error) => return Err(LiveError::Shop(error)),
        };
        let deal = self.deal_of(sale).await?;
        let frame = json!({"type": "live.deal", "data": deal_json(room_id, &deal)});
        self.hub().send(room_id, &axum::extract::ws::Utf8Bytes::from(frame.to_string()));
        Ok(())
    }

    /// The orders, units and revenue of every deal the room ran (host only).
    pub async fn room_sales(&self, host: &User, room_id: &str) -> Result<RoomSales, LiveError> {
        self.host_row(host, room_id, "see the room's sales").await?;
        let rows = sqlx::query("SELECT flash_sale_id FROM live_deals WHERE room_id = $1 ORDER BY created_at LIMIT $2")
            .bind(room_id)
            .bind(DEALS_PER_ROOM_MAX)
            .fetch_all(self.inner.store.read())
            .await?;
        let mut sales = RoomSales::default();
        for row in rows {
            let sale_id: String = row.try_get("flash_sale_id")?;
            let sale = self.inner.shop.flash_sale(&sale_id).await.map_err(LiveError::Shop)?;
            let totals = self.inner.shop.flash_sale_totals(&sale_id).await.map_err(LiveError::Shop)?;
            sales.deals += 1;
            sales.orders += totals.orders;
            sales.units += totals.units;
            *sales.revenue.entry(sale.currency).or_default() += totals.revenue;
        }
        Ok(sales)
    }

    /// Listens to the shop's placed orders for `live.sold`; holds the service weakly, so
    /// the shop (which the service holds) does not keep it alive.
    pub(crate) fn listen_to_sales(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime to announce live sales on; rooms will not hear of them");
            return;
        };
        let live = Arc::downgrade(&self.inner);
        self.inner.shop.on_orders_placed(Arc::new(move |orders: &[Order]| {
            let Some(inner) = live.upgrade() else { return };
            let live = LiveHandle { inner };
            let orders = orders.to_vec();
            runtime.spawn(async move {
                if let Err(error) = live.announce_sales(orders).await {
                    tracing::warn!("announcing live sales: {error}");
                }
            });
        }));
    }

    /// Each room that sold something in `orders` (its deal's, or its pinned product while
    /// live) gets one `Sold` notice naming the buyers.
    async fn announce_sales(&self, orders: Vec<Order>) -> Result<(), LiveError> {
        let mut rooms_of_sale: HashMap<String, Option<String>> = HashMap::new();
        let mut rooms_of_product: HashMap<String, Vec<String>> = HashMap::new();
        for order in &orders {
            if let Some(sale_id) = &order.flash_sale_id {
                if !rooms_of_sale.contains_key(sale_id) {
                    let room: Option<String> =
                        sqlx::query_scalar("SELECT room_id FROM live_deals WHERE flash_sale_id = $1")
                            .bind(sale_id)
                            .fetch_optional(self.inner.store.read())
                            .await?;
                    rooms_of_sale.insert(sale_id.clone(), room);
                }
            } else {
                for item in &order.items {
                    if !rooms_of_product.contains_key(&item.product_id) {
                        let rooms: Vec<String> = sqlx::query_scalar(
                            "SELECT id FROM live_rooms WHERE pinned_product_id = $1 AND status = 'live' LIMIT 10",
                        )
                        .bind(&item.product_id)
                        .fetch_all(self.inner.store.read())
                        .await?;
                        rooms_of_product.insert(item.product_id.clone(), rooms);
                    }
                }
            }
        }
        let mut sold: BTreeMap<String, Vec<(&Order, &plaza_shop::OrderItem)>> = BTreeMap::new();
        for order in &orders {
            for item in &order.items {
                let rooms = match &order.flash_sale_id {
                    Some(sale_id) => rooms_of_sale.get(sale_id).and_then(Clone::clone).into_iter().collect(),
                    None => rooms_of_product.get(&item.product_id).cloned().unwrap_or_default(),
                };
                for room in rooms {
                    sold.entry(room).or_default().push((order, item));
                }
            }
        }
        if sold.is_empty() {
            return Ok(());
        }
        let mut buyer_ids: Vec<String> = orders.iter().map(|order| order.buyer_id.clone()).collect();
        buyer_ids.sort();
        buyer_ids.dedup();
        let names: HashMap<String, String> =
            self.inner.accounts.users(&buyer_ids).await?.into_iter().map(|user| (user.id, user.display_name)).collect();
        for (room_id, lines) in sold {
            let others = lines.len().saturating_sub(SOLD_NAMED_MAX);
            let sales = lines
                .iter()
                .take(SOLD_NAMED_MAX)
                .map(|(order, item)| {
                    json!({"buyer_name": names.get(&order.buyer_id).cloned().unwrap_or_default(),
                           "product_title": item.title, "quantity": item.quantity})
                })
                .collect();
            self.publish_room(&room_id, &RoomNotice::Sold { sales, others });
        }
        Ok(())
    }
}

/// `{room_id, deal}` of a `live.deal` frame, the deal as `GET /live/rooms/{id}` shows it.
pub(crate) fn deal_json(room_id: &str, deal: &Deal) -> Value {
    let body = serde_json::to_value(crate::routes_deals::DealBody::from(deal)).unwrap_or(Value::Null);
    json!({"room_id": room_id, "deal": body})
}
