//! Orders paid into escrow: placing (hold, then stock and the order in one transaction),
//! the status changes of `OrderStatus::after`, the money each final status moves, and
//! reviews.

use crate::model::{self, text, OrderAction, OrderStatus};
use crate::service::{
    invalid, time_position, Actor, GroupChoice, Order, OrderItem, OrderRequest, Shop, ShopError, ShopHandle,
};
use plaza_accounts::User;
use plaza_events::Appended;
use plaza_kernel::{Currency, Money, Page, PageLimit, Timestamp};
use plaza_store::{Any, AnyRow, Row, Transaction};
use plaza_wallet::model::IdempotencyKey;
use plaza_wallet::{PaymentIntentStatus, WalletError};
use serde_json::json;
use sha2::Digest;

pub(crate) const ORDER_COLUMNS: &str = "id, buyer_id, shop_id, seller_id, status, total_amount, currency,
    payment_intent_id, payment_status, address, carrier, tracking_number, shipped_at, auto_confirm_at, refund_reason,
    refund_amount, status_before_refund, group_buy_id, flash_sale_id, created_at, updated_at";

/// Which side of an order the caller is on, for listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderRole {
    Buyer,
    Seller,
}

/// Details some status changes carry.
#[derive(Debug, Clone, Default)]
pub struct ChangeDetails {
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub reason: Option<String>,
    pub amount: Option<i64>,
}

fn sha256_hex(text: &str) -> String {
    plaza_kernel::id::to_hex(&sha2::Sha256::digest(text.as_bytes()))
}

/// A wallet key derived from the order's own identity, so every retry of one settlement
/// (by a request, a restart or another node) is the same wallet call.
fn wallet_key(purpose: &str, id: &str) -> Result<IdempotencyKey, ShopError> {
    IdempotencyKey::parse(&format!("shop-{purpose}-{}", &sha256_hex(id)[..40]))
        .map_err(|reason| ShopError::Invariant(reason.to_string()))
}

/// The key of the hold of buyer `buyer_id`'s order placed with client key `key`.
pub(crate) fn hold_key(buyer_id: &str, key: &str) -> Result<IdempotencyKey, ShopError> {
    wallet_key("hold", &format!("{buyer_id}\n{key}"))
}

/// What an order buys, priced and checked, before anything is held.
pub(crate) struct PricedOrder {
    pub(crate) items: Vec<OrderItem>,
    pub(crate) shop_id: String,
    pub(crate) seller_id: String,
    pub(crate) money: Money,
    /// The group the order opens or joins, and at what size.
    pub(crate) group: Option<GroupPlan>,
}

/// The group side of an order.
#[derive(Debug, Clone)]
pub(crate) enum GroupPlan {
    Open { size: i64 },
    Join { group_id: String },
}

/// How saving a held order ended.
enum Saved {
    /// Saved now.
    New(Order),
    /// A concurrent duplicate of this request saved it first.
    Earlier(Order),
    /// Refused after the hold (stock gone, the group filled meanwhile): the hold is released.
    Refused(ShopError),
}

/// The checks of an order's lines that need no database.
pub(crate) fn check_request(request: &OrderRequest) -> Result<(), ShopError> {
    let lines = &request.lines;
    if lines.is_empty() || lines.len() > model::ORDER_ITEMS_MAX {
        return Err(invalid("items", format!("1 to {} items", model::ORDER_ITEMS_MAX)));
    }
    for (index, line) in lines.iter().enumerate() {
        if !(1..=model::QUANTITY_MAX).contains(&line.quantity) {
            return Err(invalid(format!("items[{index}].quantity"), format!("1 to {}", model::QUANTITY_MAX)));
        }
        if line.sku_id.is_empty() || line.sku_id.len() > 64 {
            return Err(invalid(format!("items[{index}].sku_id"), "no such SKU"));
        }
        if lines[..index].iter().any(|earlier| earlier.sku_id == line.sku_id) {
            return Err(invalid(format!("items[{index}].sku_id"), "each SKU once per order"));
        }
        if line.flash_sale_id.as_ref().is_some_and(|id| id.is_empty() || id.len() > 64) {
            return Err(invalid(format!("items[{index}].flash_sale_id"), "no such flash sale"));
        }
    }
    let flash = lines.iter().any(|line| line.flash_sale_id.is_some());
    if flash && lines.len() > 1 {
        return Err(invalid("items", "a flash-sale order buys its one SKU alone; place other items separately"));
    }
    if request.group != GroupChoice::Alone {
        if flash {
            return Err(invalid("group", "a flash-sale order is not a group buy"));
        }
        if lines.len() > 1 {
            return Err(invalid("items", "a group-buy order has one item"));
        }
    }
    if let GroupChoice::Join(group_id) = &request.group {
        if group_id.is_empty() || group_id.len() > 64 {
            return Err(invalid("group.group_id", "no such group buy"));
        }
    }
    Ok(())
}

/// The hash an order's retries must match: what is bought, where to, and how.
pub(crate) fn request_hash(request: &OrderRequest) -> String {
    let group = match &request.group {
        GroupChoice::Alone => json!(null),
        GroupChoice::Open => json!("open"),
        GroupChoice::Join(group_id) => json!(["join", group_id]),
    };
    let canonical = json!({
        "items": request.lines.iter().map(|line| match &line.flash_sale_id {
            None => json!([line.sku_id, line.quantity]),
            Some(sale) => json!([line.sku_id, line.quantity, sale]),
        }).collect::<Vec<_>>(),
        "address": request.address.to_json(),
        "group": group,
    });
    sha256_hex(&canonical.to_string())
}

impl ShopHandle {
    /// Places an order: holds its total from the buyer's wallet (keyed by the client's
    /// key), then takes the stock (and the group seat) and saves the order in one
    /// transaction. A retry with the same key and body returns the first order (`true`)
    /// and holds nothing more. Flash-sale orders are group-committed (`flash.rs`).
    pub async fn place_order(
        &self,
        me: &User,
        request: OrderRequest,
        key: Option<&IdempotencyKey>,
    ) -> Result<(Order, bool), ShopError> {
        check_request(&request)?;
        let client_key = match key {
            Some(key) => key.as_str().to_string(),
            None => plaza_kernel::new_id(),
        };
        let hash = request_hash(&request);
        if request.lines[0].flash_sale_id.is_some() {
            // Its batch answers a retry from the stored order (`read_stored_orders`).
            let (order, replayed, _) = self.place_flash_order(me, request, client_key, hash).await?;
            return Ok((order, replayed));
        }
        self.place_order_alone(me, request, client_key, hash).await
    }

    /// [`ShopHandle::place_order`] with the order's shop (and its owner), as the order's
    /// answer shows it. A flash order's batch read the shop in its transaction and its
    /// owner once for the whole batch, so a crowd of flash orders costs no read of either
    /// per order; any other order reads them after it is placed.
    pub async fn place_order_with_shop(
        &self,
        me: &User,
        request: OrderRequest,
        key: Option<&IdempotencyKey>,
    ) -> Result<(Order, bool, Shop), ShopError> {
        check_request(&request)?;
        let client_key = match key {
            Some(key) => key.as_str().to_string(),
            None => plaza_kernel::new_id(),
        };
        let hash = request_hash(&request);
        let (order, replayed, shop) = match request.lines[0].flash_sale_id.is_some() {
            true => self.place_flash_order(me, request, client_key, hash).await?,
            false => {
                let (order, replayed) = self.place_order_alone(me, request, client_key, hash).await?;
                (order, replayed, None)
            }
        };
        let shop = match shop {
            Some(shop) => shop,
            None => self.shop(&order.shop_id).await?,
        };
        Ok((order, replayed, shop))
    }

    /// An order that is not a flash sale's: hold, then stock and the order.
    async fn place_order_alone(
        &self,
        me: &User,
        request: OrderRequest,
        client_key: String,
        hash: String,
    ) -> Result<(Order, bool), ShopError> {
        if let Some(order) = self.order_by_key(&me.id, &client_key, &hash).await? {
            return Ok((order, true));
        }
        let priced = self.price_order(me, &request).await?;
        let pin = plaza_wallet::Pin::parse_optional(request.pin.as_deref()).map_err(|reason| invalid("pin", reason))?;
        self.inner.wallet.authorize_payment(me, pin.as_ref()).await?;
        let Some(intent_id) = self.hold_for_order(me, &client_key, &priced).await? else {
            // An earlier try with this key was refused after its hold and released it.
            if let Some(order) = self.order_by_key(&me.id, &client_key, &hash).await? {
                return Ok((order, true));
            }
            let item = &priced.items[0];
            return Err(ShopError::OutOfStock { sku_id: item.sku_id.clone(), field: "items[0].sku_id".into() });
        };
        match self.save_order(me, &request, &priced, &intent_id, &client_key, &hash).await? {
            Saved::New(order) => Ok((order, false)),
            Saved::Earlier(order) => Ok((order, true)),
            Saved::Refused(error) => {
                self.release(&intent_id, &wallet_key("refused", &format!("{}\n{client_key}", me.id))?).await?;
                self.forget_pending_hold(&me.id, &client_key).await?;
                Err(error)
            }
        }
    }

    /// Step 1: what is bought, at today's prices (the group price in a group), from one
    /// shop; the common refusals answered here, without touching the wallet.
    async fn price_order(&self, me: &User, request: &OrderRequest) -> Result<PricedOrder, ShopError> {
        let mut items = Vec::with_capacity(request.lines.len());
        let mut shop: Option<(String, String)> = None;
        let mut currency: Option<String> = None;
        let mut group_size: Option<i64> = None;
        for (index, line) in request.lines.iter().enumerate() {
            let field = format!("items[{index}].sku_id");
            let row = sqlx::query(
                "SELECT s.id, s.name, s.price_amount, s.group_price_amount, s.currency, s.stock, p.id AS product_id,
                        p.title, p.status, p.group_size, p.shop_id, sh.owner_id
                 FROM shop_skus s JOIN shop_products p ON p.id = s.product_id JOIN shops sh ON sh.id = p.shop_id
                 WHERE s.id = $1",
            )
            .bind(&line.sku_id)
            .fetch_optional(self.inner.store.write())
            .await?
            .ok_or_else(|| invalid(field.clone(), "no such SKU"))?;
            let product_id: String = row.try_get("product_id")?;
            if row.try_get::<String, _>("status")? == "archived" {
                return Err(ShopError::ProductArchived { product_id, field });
            }
            let this_shop: (String, String) = (row.try_get("shop_id")?, row.try_get("owner_id")?);
            if this_shop.1 == me.id {
                return Err(invalid(field, "you cannot buy from your own shop"));
            }
            if *shop.get_or_insert_with(|| this_shop.clone()) != this_shop {
                return Err(invalid("items", "an order buys from one shop; place one order per shop"));
            }
            let sku_currency: String = row.try_get("currency")?;
            if *currency.get_or_insert_with(|| sku_currency.clone()) != sku_currency {
                return Err(invalid("items", "an order is paid in one currency"));
            }
            if row.try_get::<i64, _>("stock")? < line.quantity {
                return Err(ShopError::OutOfStock { sku_id: line.sku_id.clone(), field });
            }
            let unit_price = match request.group {
                GroupChoice::Alone => row.try_get("price_amount")?,
                GroupChoice::Open | GroupChoice::Join(_) => {
                    group_size = row.try_get("group_size")?;
                    row.try_get::<Option<i64>, _>("group_price_amount")?
                        .ok_or_else(|| invalid("group", "this product is not sold in groups"))?
                }
            };
            items.push(OrderItem {
                sku_id: line.sku_id.clone(),
                product_id,
                title: row.try_get("title")?,
                sku_name: row.try_get("name")?,
                quantity: line.quantity,
                unit_price,
            });
        }
        let (Some((shop_id, seller_id)), Some(currency)) = (shop, currency) else {
            return Err(ShopError::Invariant("an order without items".into()));
        };
        let group = match &request.group {
            GroupChoice::Alone => None,
            GroupChoice::Open => Some(GroupPlan::Open {
                size: group_size.ok_or_else(|| invalid("group", "this product is not sold in groups"))?,
            }),
            GroupChoice::Join(group_id) => {
                self.check_joinable(me, group_id, &items[0].sku_id).await?;
                Some(GroupPlan::Join { group_id: group_id.clone() })
            }
        };
        let total: i64 = items.iter().map(|item| item.quantity * item.unit_price).sum();
        let code = Currency::parse(&currency).ok_or_else(|| ShopError::Invariant(format!("currency {currency:?}")))?;
        let money = Money::new(total, code).map_err(|_| invalid("items", "the order's total is too large"))?;
        Ok(PricedOrder { items, shop_id, seller_id, money, group })
    }

    /// Step 2: the hold, keyed by the buyer's key, with a pending-hold row first so the job
    /// can release a hold whose order a crash never saved. `None` when the key's hold
    /// exists but was released (an earlier try was refused).
    async fn hold_for_order(
        &self,
        me: &User,
        client_key: &str,
        priced: &PricedOrder,
    ) -> Result<Option<String>, ShopError> {
        sqlx::query(
            "INSERT INTO shop_pending_holds (buyer_id, idempotency_key, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (buyer_id, idempotency_key) DO NOTHING",
        )
        .bind(&me.id)
        .bind(client_key)
        .bind(Timestamp::now().unix_millis())
        .execute(self.inner.store.write())
        .await?;
        let hold = hold_key(&me.id, client_key)?;
        let intent =
            match self.inner.wallet.create_payment_intent(&me.id, priced.money, "shop order", Some(&hold)).await {
                Ok((intent, false)) => intent,
                Ok((intent, true)) => self.inner.wallet.payment_intent(&intent.id).await?,
                Err(error) => {
                    // Only a refusal proves nothing was held; after anything else the row lets
                    // the job find and release a hold that may exist.
                    if matches!(
                        error,
                        WalletError::InsufficientFunds { .. }
                            | WalletError::InvalidField { .. }
                            | WalletError::IdempotencyKeyReused
                    ) {
                        self.forget_pending_hold(&me.id, client_key).await?;
                    }
                    return Err(match error {
                        // The same key held another total: another order's body.
                        WalletError::IdempotencyKeyReused => ShopError::KeyReused,
                        other => other.into(),
                    });
                }
            };
        Ok((intent.status == PaymentIntentStatus::Held).then_some(intent.id))
    }

    /// Step 3, one transaction: the group seat (a conditional update of the group's row,
    /// taken first: the lock order is group, SKUs, orders), the stock (conditional updates
    /// in SKU-id order), the order and its lines, and, when this order took a group's last
    /// seat, every member's order `paid` at once.
    async fn save_order(
        &self,
        me: &User,
        request: &OrderRequest,
        priced: &PricedOrder,
        intent_id: &str,
        client_key: &str,
        hash: &str,
    ) -> Result<Saved, ShopError> {
        let now = Timestamp::now().unix_millis();
        let order_id = plaza_kernel::new_id();
        let mut transaction = self.inner.store.begin().await?;
        let group_id = match &priced.group {
            None => None,
            Some(GroupPlan::Join { group_id }) => match self.take_seat(&mut transaction, group_id, now).await? {
                Ok(()) => Some(group_id.clone()),
                Err(refusal) => {
                    transaction.rollback().await?;
                    return Ok(Saved::Refused(refusal));
                }
            },
            Some(GroupPlan::Open { size }) => {
                Some(self.open_group(&mut transaction, me, &priced.items[0], *size, &priced.money, now).await?)
            }
        };
        let mut by_sku: Vec<(usize, &OrderItem)> = priced.items.iter().enumerate().collect();
        by_sku.sort_by(|a, b| a.1.sku_id.cmp(&b.1.sku_id));
        for (index, item) in &by_sku {
            let taken = sqlx::query("UPDATE shop_skus SET stock = stock - $2 WHERE id = $1 AND stock >= $2")
                .bind(&item.sku_id)
                .bind(item.quantity)
                .execute(&mut *transaction)
                .await?;
            if taken.rows_affected() != 1 {
                transaction.rollback().await?;
                // A concurrent duplicate of this request may have taken the stock with this
                // very hold: then its order is this one's, and the hold must stay.
                if let Some(order) = self.order_by_key(&me.id, client_key, hash).await? {
                    return Ok(Saved::Earlier(order));
                }
                let field = format!("items[{index}].sku_id");
                return Ok(Saved::Refused(ShopError::OutOfStock { sku_id: item.sku_id.clone(), field }));
            }
        }
        let status = if group_id.is_some() { OrderStatus::Grouping } else { OrderStatus::Paid };
        let inserted = sqlx::query(
            "INSERT INTO shop_orders (id, buyer_id, shop_id, seller_id, status, total_amount, currency,
                 payment_intent_id, payment_status, idempotency_key, request_hash, address, group_buy_id,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'held', $9, $10, $11, $12, $13, $13)
             ON CONFLICT (buyer_id, idempotency_key) DO NOTHING",
        )
        .bind(&order_id)
        .bind(&me.id)
        .bind(&priced.shop_id)
        .bind(&priced.seller_id)
        .bind(status.as_str())
        .bind(priced.money.amount())
        .bind(priced.money.currency().code())
        .bind(intent_id)
        .bind(client_key)
        .bind(hash)
        .bind(request.address.to_json().to_string())
        .bind(&group_id)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            transaction.rollback().await?;
            let order = self.order_by_key(&me.id, client_key, hash).await?;
            return order.map(Saved::Earlier).ok_or(ShopError::OrderNotFound);
        }
        insert_items(&mut transaction, &order_id, &priced.items).await?;
        sqlx::query("DELETE FROM shop_pending_holds WHERE buyer_id = $1 AND idempotency_key = $2")
            .bind(&me.id)
            .bind(client_key)
            .execute(&mut *transaction)
            .await?;
        let mut appended = Vec::new();
        if let Some(group_id) = &group_id {
            if let Err(refusal) = self.seat_member(&mut transaction, group_id, &me.id, &order_id, now).await? {
                transaction.rollback().await?;
                return Ok(Saved::Refused(refusal));
            }
            appended.extend(self.after_seat_taken(&mut transaction, group_id, now).await?);
        }
        let order = load_order(&mut transaction, &order_id).await?.ok_or(ShopError::OrderNotFound)?;
        if order.status != OrderStatus::Paid || group_id.is_none() {
            // A completed group announced every member's order already, this one included.
            appended.push(self.announce(&mut transaction, &order).await?);
        }
        transaction.commit().await?;
        for appended in appended {
            self.inner.events.publish(appended);
        }
        self.tell_placed(std::slice::from_ref(&order));
        Ok(Saved::New(order))
    }

    pub(crate) async fn order_by_key(
        &self,
        buyer_id: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Option<Order>, ShopError> {
        let row = sqlx::query("SELECT id, request_hash FROM shop_orders WHERE buyer_id = $1 AND idempotency_key = $2")
            .bind(buyer_id)
            .bind(key)
            .fetch_optional(self.inner.store.write())
            .await?;
        let Some(row) = row else { return Ok(None) };
        if row.try_get::<String, _>("request_hash")? != request_hash {
            return Err(ShopError::KeyReused);
        }
        let mut connection = self.inner.store.write().acquire().await?;
        load_order(&mut connection, &row.try_get::<String, _>("id")?).await
    }

    pub(crate) async fn forget_pending_hold(&self, buyer_id: &str, key: &str) -> Result<(), ShopError> {
        sqlx::query("DELETE FROM shop_pending_holds WHERE buyer_id = $1 AND idempotency_key = $2")
            .bind(buyer_id)
            .bind(key)
            .execute(self.inner.store.write())
            .await?;
        Ok(())
    }

    /// Voids a hold. One no longer held (released or captured already, by an earlier try
    /// or another node) is left as it is: releasing is then done.
    pub(crate) async fn release(&self, intent_id: &str, key: &IdempotencyKey) -> Result<(), ShopError> {
        match self.inner.wallet.void_payment_intent(intent_id, Some(key)).await {
            Ok(_) | Err(WalletError::InvalidTransition { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    pub(crate) async fn announce(
        &self,
        transaction: &mut Transaction<'static, Any>,
        order: &Order,
    ) -> Result<Appended, ShopError> {
        Ok(self.inner.events.append(transaction, &order.parties(), "order.updated", &order.to_json()).await?)
    }

    /// An order, for its buyer and its seller; to anyone else it does not exist.
    pub async fn order(&self, me: &User, order_id: &str) -> Result<Order, ShopError> {
        let mut connection = self.inner.store.write().acquire().await?;
        let order = load_order(&mut connection, order_id).await?.ok_or(ShopError::OrderNotFound)?;
        if order.buyer_id != me.id && order.seller_id != me.id {
            return Err(ShopError::OrderNotFound);
        }
        Ok(order)
    }

    /// `me`'s orders as buyer or seller, newest first.
    pub async fn orders(
        &self,
        me: &User,
        role: OrderRole,
        status: Option<OrderStatus>,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<Order>, ShopError> {
        let (before_at, before_id) = time_position(cursor)?;
        let column = match role {
            OrderRole::Buyer => "buyer_id",
            OrderRole::Seller => "seller_id",
        };
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM shop_orders WHERE {column} = $1 AND ($2 = '' OR status = $2)
               AND (created_at < $3 OR (created_at = $3 AND ($4 = '' OR id < $4)))
             ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind(&me.id)
        .bind(status.map_or("", OrderStatus::as_str))
        .bind(before_at)
        .bind(&before_id)
        .bind(limit.probe())
        .fetch_all(self.inner.store.read())
        .await?;
        let mut connection = self.inner.store.read().acquire().await?;
        let mut orders = Vec::with_capacity(ids.len());
        for id in ids {
            orders.extend(load_order(&mut connection, &id).await?);
        }
        Ok(Page::from_probe(orders, limit, |order| format!("{}:{}", order.created_at.unix_millis(), order.id)))
    }

    /// Moves an order on by `action` (one conditional update on its old status, in the
    /// transaction that appends `order.updated`), then moves the money its new status
    /// calls for.
    pub async fn change_order(
        &self,
        me: &User,
        order_id: &str,
        action: OrderAction,
        details: ChangeDetails,
    ) -> Result<Order, ShopError> {
        self.change(Actor::User(me), order_id, action, details).await
    }

    pub(crate) async fn change(
        &self,
        actor: Actor<'_>,
        order_id: &str,
        action: OrderAction,
        details: ChangeDetails,
    ) -> Result<Order, ShopError> {
        let before = match actor {
            Actor::User(me) => self.order(me, order_id).await?,
            Actor::Job => {
                let mut connection = self.inner.store.write().acquire().await?;
                load_order(&mut connection, order_id).await?.ok_or(ShopError::OrderNotFound)?
            }
        };
        let action = match action {
            OrderAction::RejectRefund { .. } => OrderAction::RejectRefund {
                before_request: before.status_before_refund.unwrap_or(OrderStatus::Shipped),
            },
            other => other,
        };
        if let Actor::User(me) = actor {
            let is_buyer = me.id == before.buyer_id;
            let allowed = match action {
                OrderAction::Cancel => true,
                OrderAction::CompleteGroup => false,
                OrderAction::Confirm | OrderAction::RequestRefund => is_buyer,
                OrderAction::Ship | OrderAction::ApproveRefund | OrderAction::RejectRefund { .. } => !is_buyer,
            };
            if !allowed {
                let who = if is_buyer { "seller" } else { "buyer" };
                return Err(ShopError::NotAllowed { who, action: action.as_str() });
            }
        }
        let next = before
            .status
            .after(action)
            .ok_or(ShopError::InvalidTransition { status: before.status.as_str(), action: action.as_str() })?;
        let now = Timestamp::now().unix_millis();
        let mut transaction = self.inner.store.begin().await?;
        let mut appended = Vec::new();
        if let (OrderAction::Cancel, OrderStatus::Grouping, Some(group_id)) =
            (action, before.status, &before.group_buy_id)
        {
            // The group's row before the order's: the lock order of `groups.rs`.
            appended.extend(self.leave_group(&mut transaction, group_id, &before.buyer_id, now).await?);
        }
        let moved = self.write_status(&mut transaction, &before, action, next, &details, now).await?;
        if moved != 1 {
            transaction.rollback().await?;
            let mut connection = self.inner.store.write().acquire().await?;
            let now_status = load_order(&mut connection, order_id).await?.map_or(before.status, |order| order.status);
            return Err(ShopError::InvalidTransition { status: now_status.as_str(), action: action.as_str() });
        }
        if action == OrderAction::Cancel {
            for item in &before.items {
                match &before.flash_sale_id {
                    Some(sale_id) => self.return_flash_units(&mut transaction, sale_id, &before.buyer_id, item).await?,
                    None => {
                        sqlx::query("UPDATE shop_skus SET stock = stock + $2 WHERE id = $1")
                            .bind(&item.sku_id)
                            .bind(item.quantity)
                            .execute(&mut *transaction)
                            .await?;
                    }
                }
                sqlx::query("UPDATE shop_products SET sold_count = sold_count - $2 WHERE id = $1")
                    .bind(&item.product_id)
                    .bind(item.quantity)
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        let order = load_order(&mut transaction, order_id).await?.ok_or(ShopError::OrderNotFound)?;
        appended.push(self.announce(&mut transaction, &order).await?);
        transaction.commit().await?;
        for appended in appended {
            self.inner.events.publish(appended);
        }
        self.settle(order).await
    }

    /// The conditional update of `action`, with the details it records: 1 row, or 0 when
    /// the order moved on meanwhile.
    async fn write_status(
        &self,
        transaction: &mut Transaction<'static, Any>,
        before: &Order,
        action: OrderAction,
        next: OrderStatus,
        details: &ChangeDetails,
        now: i64,
    ) -> Result<u64, ShopError> {
        let order_id = before.id.as_str();
        let moved = match action {
            OrderAction::Ship => {
                let carrier =
                    text(details.carrier.as_deref().unwrap_or(""), "carrier", model::CARRIER_MAX_CHARS, false)?;
                let tracking = text(
                    details.tracking_number.as_deref().unwrap_or(""),
                    "tracking_number",
                    model::TRACKING_NUMBER_MAX_CHARS,
                    false,
                )?;
                let auto_confirm_at = now + self.inner.config.auto_confirm_after.as_millis() as i64;
                sqlx::query(
                    "UPDATE shop_orders SET status = $3, carrier = $4, tracking_number = $5, shipped_at = $6,
                         auto_confirm_at = $7, updated_at = $6 WHERE id = $1 AND status = $2",
                )
                .bind(order_id)
                .bind(before.status.as_str())
                .bind(next.as_str())
                .bind(carrier)
                .bind(tracking)
                .bind(now)
                .bind(auto_confirm_at)
                .execute(&mut **transaction)
                .await?
            }
            OrderAction::RequestRefund => {
                let reason = text(details.reason.as_deref().unwrap_or(""), "reason", model::REASON_MAX_CHARS, false)?;
                let amount = details.amount.unwrap_or(before.total);
                if !(1..=before.total).contains(&amount) {
                    return Err(invalid("amount.amount", format!("1 to the order's total, {}", before.total)));
                }
                sqlx::query(
                    "UPDATE shop_orders SET status = $3, refund_reason = $4, refund_amount = $5,
                         status_before_refund = $2, updated_at = $6 WHERE id = $1 AND status = $2",
                )
                .bind(order_id)
                .bind(before.status.as_str())
                .bind(next.as_str())
                .bind(reason)
                .bind(amount)
                .bind(now)
                .execute(&mut **transaction)
                .await?
            }
            OrderAction::Cancel
            | OrderAction::CompleteGroup
            | OrderAction::Confirm
            | OrderAction::ApproveRefund
            | OrderAction::RejectRefund { .. } => {
                sqlx::query("UPDATE shop_orders SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2")
                    .bind(order_id)
                    .bind(before.status.as_str())
                    .bind(next.as_str())
                    .bind(now)
                    .execute(&mut **transaction)
                    .await?
            }
        };
        Ok(moved.rows_affected())
    }

    /// Moves the money an order's status calls for and records it, once: every wallet
    /// call is keyed by the order, and the record is a conditional update of
    /// `payment_status`. The job calls this for orders a crash left unsettled.
    pub(crate) async fn settle(&self, order: Order) -> Result<Order, ShopError> {
        let fee = self.inner.config.platform_fee_bps;
        let intent = &order.payment_intent_id;
        let settled = match (order.status, order.payment_status.as_str()) {
            (OrderStatus::Cancelled, "held") => {
                self.release(intent, &wallet_key("void", &order.id)?).await?;
                "released"
            }
            (OrderStatus::Completed, "held") => {
                let key = wallet_key("capture", &order.id)?;
                self.capture(intent, order.total, &order.seller_id, fee.of(order.total), &key).await?;
                "captured"
            }
            (OrderStatus::Refunded, "held") => {
                let refund = order.refund_amount.unwrap_or(order.total);
                let kept = order.total - refund;
                if kept > 0 {
                    let key = wallet_key("capture", &order.id)?;
                    self.capture(intent, kept, &order.seller_id, fee.of(kept), &key).await?;
                } else {
                    self.release(intent, &wallet_key("void", &order.id)?).await?;
                }
                "refunded"
            }
            (OrderStatus::Refunded, "captured") => {
                let refund = order.refund_amount.unwrap_or(order.total);
                match self
                    .inner
                    .wallet
                    .refund_payment_intent(intent, refund, Some(&wallet_key("refund", &order.id)?))
                    .await
                {
                    Ok(_) => {}
                    Err(error) => return Err(error.into()),
                }
                "refunded"
            }
            _ => return Ok(order),
        };
        sqlx::query("UPDATE shop_orders SET payment_status = $3 WHERE id = $1 AND payment_status = $2")
            .bind(&order.id)
            .bind(&order.payment_status)
            .bind(settled)
            .execute(self.inner.store.write())
            .await?;
        let mut connection = self.inner.store.write().acquire().await?;
        load_order(&mut connection, &order.id).await?.ok_or(ShopError::OrderNotFound)
    }

    async fn capture(
        &self,
        intent_id: &str,
        amount: i64,
        payee_id: &str,
        fee: i64,
        key: &IdempotencyKey,
    ) -> Result<(), ShopError> {
        match self.inner.wallet.capture_payment_intent(intent_id, amount, payee_id, fee, Some(key)).await {
            Ok(_) => Ok(()),
            // Captured already (by a request or another node's job): done.
            Err(WalletError::InvalidTransition { status: "captured", .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

/// An order's lines, and the products' sold counts.
pub(crate) async fn insert_items(
    transaction: &mut Transaction<'static, Any>,
    order_id: &str,
    items: &[OrderItem],
) -> Result<(), ShopError> {
    for (position, item) in items.iter().enumerate() {
        sqlx::query(
            "INSERT INTO shop_order_items (order_id, position, sku_id, product_id, title, sku_name, quantity, unit_price)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(order_id)
        .bind(position as i64)
        .bind(&item.sku_id)
        .bind(&item.product_id)
        .bind(&item.title)
        .bind(&item.sku_name)
        .bind(item.quantity)
        .bind(item.unit_price)
        .execute(&mut **transaction)
        .await?;
        sqlx::query("UPDATE shop_products SET sold_count = sold_count + $2 WHERE id = $1")
            .bind(&item.product_id)
            .bind(item.quantity)
            .execute(&mut **transaction)
            .await?;
    }
    Ok(())
}

pub(crate) async fn load_order(
    connection: &mut sqlx::AnyConnection,
    order_id: &str,
) -> Result<Option<Order>, ShopError> {
    let Some(row) = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM shop_orders WHERE id = $1"))
        .bind(order_id)
        .fetch_optional(&mut *connection)
        .await?
    else {
        return Ok(None);
    };
    let items = sqlx::query(
        "SELECT sku_id, product_id, title, sku_name, quantity, unit_price FROM shop_order_items
         WHERE order_id = $1 ORDER BY position",
    )
    .bind(order_id)
    .fetch_all(&mut *connection)
    .await?
    .iter()
    .map(|item| {
        Ok(OrderItem {
            sku_id: item.try_get("sku_id")?,
            product_id: item.try_get("product_id")?,
            title: item.try_get("title")?,
            sku_name: item.try_get("sku_name")?,
            quantity: item.try_get("quantity")?,
            unit_price: item.try_get("unit_price")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    order_from_row(&row, items).map(Some)
}

fn order_from_row(row: &AnyRow, items: Vec<OrderItem>) -> Result<Order, ShopError> {
    let status =
        |text: String| OrderStatus::parse(&text).ok_or_else(|| ShopError::Invariant(format!("order status {text:?}")));
    let at = |column: &str| -> Result<Option<Timestamp>, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(Timestamp::from_unix_millis))
    };
    let address: String = row.try_get("address")?;
    Ok(Order {
        id: row.try_get("id")?,
        buyer_id: row.try_get("buyer_id")?,
        shop_id: row.try_get("shop_id")?,
        seller_id: row.try_get("seller_id")?,
        status: status(row.try_get("status")?)?,
        total: row.try_get("total_amount")?,
        currency: row.try_get("currency")?,
        payment_intent_id: row.try_get("payment_intent_id")?,
        payment_status: row.try_get("payment_status")?,
        address: serde_json::from_str(&address).map_err(|error| ShopError::Invariant(error.to_string()))?,
        carrier: row.try_get("carrier")?,
        tracking_number: row.try_get("tracking_number")?,
        shipped_at: at("shipped_at")?,
        auto_confirm_at: at("auto_confirm_at")?,
        refund_reason: row.try_get("refund_reason")?,
        refund_amount: row.try_get("refund_amount")?,
        status_before_refund: row.try_get::<Option<String>, _>("status_before_refund")?.map(status).transpose()?,
        group_buy_id: row.try_get("group_buy_id")?,
        flash_sale_id: row.try_get("flash_sale_id")?,
        items,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_unix_millis(row.try_get("updated_at")?),
    })
}
