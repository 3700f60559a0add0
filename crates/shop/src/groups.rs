//! Group buying, as Pinduoduo does it and with nothing hidden: a buyer opens a group of a
//! product's `group_size` at the group price, others join it (from the product page or a
//! card shared into a chat) until the last seat is taken, and then every member's order
//! is `paid` at once; when the window ends first, every member's order is cancelled and
//! its hold released.
//!
//! The group's row carries `seats_taken`, checked by the database against `size`; a seat
//! is taken by one conditional update (`status = 'forming' AND seats_taken < size AND
//! expires_at > now`) in the order's own transaction, so the last seat goes to exactly one
//! buyer however many race for it, on any node, and the others are refused (`group_full`)
//! before their hold is released. The lock order is the group's row, then SKUs, then
//! orders, in every transaction that touches a group (joining, leaving, completing,
//! failing), so none of them wait on each other in a cycle.

use crate::model::{OrderAction, OrderStatus};
use crate::orders::{load_order, ChangeDetails};
use crate::service::{invalid, Actor, OrderItem, ShopError, ShopHandle};
use plaza_accounts::User;
use plaza_chat::{CardFuture, CardSource, ChatError, MessageKind};
use plaza_events::Appended;
use plaza_kernel::{Money, Timestamp};
use plaza_store::{Any, AnyRow, Row, Transaction};
use serde_json::{json, Value};

/// Groups listed on a product page at most.
pub const OPEN_GROUPS_LISTED: i64 = 10;
/// Groups failed per run of the job at most; the rest wait for the next run.
const EXPIRED_PER_RUN: i64 = 200;

/// Where a group buy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStatus {
    Forming,
    Complete,
    Failed,
}

impl GroupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forming => "forming",
            Self::Complete => "complete",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "forming" => Self::Forming,
            "complete" => Self::Complete,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// A group buy.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupBuy {
    pub id: String,
    pub product_id: String,
    pub sku_id: String,
    pub leader_id: String,
    pub size: i64,
    /// The group price of one unit.
    pub price: i64,
    pub currency: String,
    pub seats_taken: i64,
    pub status: GroupStatus,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    /// Members' user ids, in the order they joined.
    pub member_ids: Vec<String>,
    pub title: String,
    pub photo_media_id: Option<String>,
}

impl GroupBuy {
    pub fn seats_left(&self) -> i64 {
        (self.size - self.seats_taken).max(0)
    }

    /// The group as events and cards carry it (users as ids).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "product_id": self.product_id,
            "sku_id": self.sku_id,
            "leader": {"id": self.leader_id},
            "size": self.size,
            "price": {"amount": self.price, "currency": self.currency},
            "members": self.member_ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
            "seats_left": self.seats_left(),
            "status": self.status.as_str(),
            "expires_at": self.expires_at.to_rfc3339(),
            "created_at": self.created_at.to_rfc3339(),
        })
    }

    /// The `group_buy` card body.
    pub fn card(&self) -> Value {
        json!({
            "type": "group_buy",
            "id": self.id,
            "title": self.title,
            "product_id": self.product_id,
            "sku_id": self.sku_id,
            "price": {"amount": self.price, "currency": self.currency},
            "size": self.size,
            "seats_left": self.seats_left(),
            "status": self.status.as_str(),
            "expires_at": self.expires_at.to_rfc3339(),
            "photo_url": self.photo_media_id.as_ref().map(|id| format!("/api/v1/media/{id}")),
        })
    }
}

/// Where a share posted its card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCard {
    pub message_id: String,
    pub conversation_id: String,
    pub seq: i64,
}

const GROUP_COLUMNS: &str = "g.id, g.product_id, g.sku_id, g.leader_id, g.size, g.price_amount, g.currency,
    g.seats_taken, g.status, g.expires_at, g.created_at, p.title, p.media_ids";

impl ShopHandle {
    /// A group buy (public to signed-in users, so that a card's recipients can join it).
    pub async fn group_buy(&self, group_id: &str) -> Result<GroupBuy, ShopError> {
        let mut connection = self.inner.store.write().acquire().await?;
        load_group(&mut connection, group_id).await?.ok_or(ShopError::GroupBuyNotFound)
    }

    /// Up to [`OPEN_GROUPS_LISTED`] groups of a product that can still be joined, the
    /// soonest to end first.
    pub async fn open_groups(&self, product_id: &str) -> Result<Vec<GroupBuy>, ShopError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM shop_group_buys WHERE product_id = $1 AND status = 'forming' AND expires_at > $2
             ORDER BY expires_at, id LIMIT $3",
        )
        .bind(product_id)
        .bind(Timestamp::now().unix_millis())
        .bind(OPEN_GROUPS_LISTED)
        .fetch_all(self.inner.store.read())
        .await?;
        let mut connection = self.inner.store.read().acquire().await?;
        let mut groups = Vec::with_capacity(ids.len());
        for id in ids {
            groups.extend(load_group(&mut connection, &id).await?);
        }
        Ok(groups)
    }

    /// Posts a `group_buy` card of a group `me` is a member of into a chat of theirs; the
    /// chat also gets a card when the group completes or fails.
    pub async fn share_group_buy(
        &self,
        me: &User,
        group_id: &str,
        conversation_id: &str,
    ) -> Result<SharedCard, ShopError> {
        let group = self.group_buy(group_id).await?;
        if !group.member_ids.contains(&me.id) {
            return Err(ShopError::NotAMember);
        }
        let mut transaction = self.inner.store.begin().await?;
        let client_id = format!("group-share-{}", plaza_kernel::new_id());
        let (message, appended) = self
            .inner
            .chat
            .post_in_transaction(
                &mut transaction,
                conversation_id,
                &me.id,
                &client_id,
                MessageKind::Card,
                &group.card(),
            )
            .await?;
        sqlx::query(
            "INSERT INTO shop_group_shares (group_buy_id, conversation_id, shared_by, shared_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (group_buy_id, conversation_id) DO NOTHING",
        )
        .bind(group_id)
        .bind(conversation_id)
        .bind(&me.id)
        .bind(Timestamp::now().unix_millis())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok(SharedCard { message_id: message.id, conversation_id: message.conversation_id, seq: message.seq })
    }

    /// Posts a `product` card into a chat of `me`'s.
    pub async fn share_product(
        &self,
        me: &User,
        product_id: &str,
        conversation_id: &str,
    ) -> Result<SharedCard, ShopError> {
        let body = self.product_card(product_id).await?;
        let client_id = format!("product-share-{}", plaza_kernel::new_id());
        let message = self.inner.chat.post_card(conversation_id, &me.id, &client_id, &body).await?;
        Ok(SharedCard { message_id: message.id, conversation_id: message.conversation_id, seq: message.seq })
    }

    /// The `product` card body of a product.
    pub async fn product_card(&self, product_id: &str) -> Result<Value, ShopError> {
        let product = self.product(product_id).await?;
        let shop = self.shop(&product.shop_id).await?;
        let sku = product.skus.first();
        Ok(json!({
            "type": "product",
            "id": product.id,
            "title": product.title,
            "price": sku.map(|sku| json!({"amount": sku.price, "currency": sku.currency})),
            "group_price": sku.and_then(|sku| sku.group_price.map(|amount| json!({"amount": amount, "currency": sku.currency}))),
            "group_size": product.group_size,
            "photo_url": product.media_ids.first().map(|id| format!("/api/v1/media/{id}")),
            "shop_name": shop.name,
            "status": if product.archived { "archived" } else { "active" },
        }))
    }

    /// The refusals of joining `group_id` for `sku_id` that need no hold: answered before
    /// the wallet is touched. (The seat itself is taken with the order.)
    pub(crate) async fn check_joinable(&self, me: &User, group_id: &str, sku_id: &str) -> Result<(), ShopError> {
        let group = self.group_buy(group_id).await?;
        if group.sku_id != sku_id {
            return Err(invalid("group.group_id", "this group buys another SKU; order that SKU to join it"));
        }
        if group.member_ids.contains(&me.id) {
            return Err(ShopError::AlreadyInGroup);
        }
        refusal_of(&group, Timestamp::now().unix_millis()).map_or(Ok(()), Err)
    }

    /// Takes a seat in `group_id` (the group's row first: see the module docs). The inner
    /// error is the refusal to answer once the hold is released.
    pub(crate) async fn take_seat(
        &self,
        transaction: &mut Transaction<'static, Any>,
        group_id: &str,
        now: i64,
    ) -> Result<Result<(), ShopError>, ShopError> {
        let taken = sqlx::query(
            "UPDATE shop_group_buys SET seats_taken = seats_taken + 1, updated_at = $2
             WHERE id = $1 AND status = 'forming' AND seats_taken < size AND expires_at > $2",
        )
        .bind(group_id)
        .bind(now)
        .execute(&mut **transaction)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        let group = load_group(transaction, group_id).await?.ok_or(ShopError::GroupBuyNotFound)?;
        Ok(Err(refusal_of(&group, now).unwrap_or(ShopError::GroupFull)))
    }

    /// A new forming group led by `me`, with their seat taken.
    pub(crate) async fn open_group(
        &self,
        transaction: &mut Transaction<'static, Any>,
        me: &User,
        item: &OrderItem,
        size: i64,
        money: &Money,
        now: i64,
    ) -> Result<String, ShopError> {
        let id = plaza_kernel::new_id();
        let expires_at = now + self.inner.config.group_window.as_millis() as i64;
        sqlx::query(
            "INSERT INTO shop_group_buys (id, product_id, sku_id, leader_id, size, price_amount, currency, seats_taken,
                 status, expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, 'forming', $8, $9, $9)",
        )
        .bind(&id)
        .bind(&item.product_id)
        .bind(&item.sku_id)
        .bind(&me.id)
        .bind(size)
        .bind(item.unit_price)
        .bind(money.currency().code())
        .bind(expires_at)
        .bind(now)
        .execute(&mut **transaction)
        .await?;
        Ok(id)
    }

    /// Records `buyer_id` as a member with their order; a second seat for one buyer is
    /// refused (`already_in_group`: two concurrent joins by one buyer, say).
    pub(crate) async fn seat_member(
        &self,
        transaction: &mut Transaction<'static, Any>,
        group_id: &str,
        buyer_id: &str,
        order_id: &str,
        now: i64,
    ) -> Result<Result<(), ShopError>, ShopError> {
        let seated = sqlx::query(
            "INSERT INTO shop_group_members (group_buy_id, buyer_id, order_id, joined_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (group_buy_id, buyer_id) DO NOTHING",
        )
        .bind(group_id)
        .bind(buyer_id)
        .bind(order_id)
        .bind(now)
        .execute(&mut **transaction)
        .await?;
        Ok(if seated.rows_affected() == 1 { Ok(()) } else { Err(ShopError::AlreadyInGroup) })
    }

    /// After a seat was taken: when it was the last, the group is complete and every
    /// member's order `paid` (each announced); members get `group_buy.updated` either way.
    pub(crate) async fn after_seat_taken(
        &self,
        transaction: &mut Transaction<'static, Any>,
        group_id: &str,
        now: i64,
    ) -> Result<Vec<Appended>, ShopError> {
        let completed = sqlx::query(
            "UPDATE shop_group_buys SET status = 'complete', updated_at = $2
             WHERE id = $1 AND status = 'forming' AND seats_taken = size",
        )
        .bind(group_id)
        .bind(now)
        .execute(&mut **transaction)
        .await?;
        let mut appended = Vec::new();
        if completed.rows_affected() == 1 {
            let paid = OrderStatus::Grouping
                .after(OrderAction::CompleteGroup)
                .ok_or_else(|| ShopError::Invariant("a grouping order cannot be paid".into()))?;
            let order_ids: Vec<String> =
                sqlx::query_scalar("SELECT id FROM shop_orders WHERE group_buy_id = $1 AND status = $2 ORDER BY id")
                    .bind(group_id)
                    .bind(OrderStatus::Grouping.as_str())
                    .fetch_all(&mut **transaction)
                    .await?;
            sqlx::query("UPDATE shop_orders SET status = $3, updated_at = $4 WHERE group_buy_id = $1 AND status = $2")
                .bind(group_id)
                .bind(OrderStatus::Grouping.as_str())
                .bind(paid.as_str())
                .bind(now)
                .execute(&mut **transaction)
                .await?;
            for order_id in order_ids {
                let order = load_order(transaction, &order_id).await?.ok_or(ShopError::OrderNotFound)?;
                appended.push(self.announce(transaction, &order).await?);
            }
        }
        appended.extend(self.announce_group(transaction, group_id, completed.rows_affected() == 1).await?);
        Ok(appended)
    }

    /// A member leaves a forming group (their order is being cancelled): the seat is
    /// freed, and a group nobody is left in has failed.
    pub(crate) async fn leave_group(
        &self,
        transaction: &mut Transaction<'static, Any>,
        group_id: &str,
        buyer_id: &str,
        now: i64,
    ) -> Result<Vec<Appended>, ShopError> {
        let left = sqlx::query(
            "UPDATE shop_group_buys SET seats_taken = seats_taken - 1,
                 status = CASE WHEN seats_taken <= 1 THEN 'failed' ELSE status END, updated_at = $2
             WHERE id = $1 AND status = 'forming' AND seats_taken >= 1",
        )
        .bind(group_id)
        .bind(now)
        .execute(&mut **transaction)
        .await?;
        if left.rows_affected() == 0 {
            // Complete or failed meanwhile: the order's own conditional update decides.
            return Ok(Vec::new());
        }
        sqlx::query("DELETE FROM shop_group_members WHERE group_buy_id = $1 AND buyer_id = $2")
            .bind(group_id)
            .bind(buyer_id)
            .execute(&mut **transaction)
            .await?;
        let mut appended = self.announce_group(transaction, group_id, false).await?;
        // The one who left hears of it too.
        let group = load_group(transaction, group_id).await?.ok_or(ShopError::GroupBuyNotFound)?;
        appended.push(
            self.inner
                .events
                .append(transaction, &[buyer_id.to_string()], "group_buy.updated", &group.to_json())
                .await?,
        );
        Ok(appended)
    }

    /// `group_buy.updated` to the members, and, when the group just completed or failed
    /// (`settled`), a card in every chat it was shared into.
    async fn announce_group(
        &self,
        transaction: &mut Transaction<'static, Any>,
        group_id: &str,
        settled: bool,
    ) -> Result<Vec<Appended>, ShopError> {
        let group = load_group(transaction, group_id).await?.ok_or(ShopError::GroupBuyNotFound)?;
        let mut appended = Vec::new();
        if !group.member_ids.is_empty() {
            let mut members = group.member_ids.clone();
            members.sort();
            appended
                .push(self.inner.events.append(transaction, &members, "group_buy.updated", &group.to_json()).await?);
        }
        if settled || group.status == GroupStatus::Failed {
            let shares = sqlx::query(
                "SELECT conversation_id, shared_by FROM shop_group_shares WHERE group_buy_id = $1 ORDER BY shared_at",
            )
            .bind(group_id)
            .fetch_all(&mut **transaction)
            .await?;
            for share in shares {
                let conversation_id: String = share.try_get("conversation_id")?;
                let shared_by: String = share.try_get("shared_by")?;
                let client_id = format!("group-{}-{}", group.status.as_str(), group.id);
                match self
                    .inner
                    .chat
                    .post_in_transaction(
                        transaction,
                        &conversation_id,
                        &shared_by,
                        &client_id,
                        MessageKind::Card,
                        &group.card(),
                    )
                    .await
                {
                    Ok((_, posted)) => appended.push(posted),
                    // The sharer left that chat since: it hears nothing more of the group.
                    Err(ChatError::ConversationNotFound) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Ok(appended)
    }

    /// The job's step for group buys whose window ended: each group fails (one conditional
    /// update, with its cards), then each member's order is cancelled and its hold released
    /// by the order's own state machine, so a repeated run, a restart or another node
    /// cancels nothing twice. Orders of a group failed by an earlier run that a crash
    /// interrupted are picked up again here.
    pub(crate) async fn fail_expired_groups(&self, now: i64) -> Result<usize, ShopError> {
        let expired: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM shop_group_buys WHERE status = 'forming' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(EXPIRED_PER_RUN)
        .fetch_all(self.inner.store.write())
        .await?;
        for group_id in &expired {
            let mut transaction = self.inner.store.begin().await?;
            let failed = sqlx::query(
                "UPDATE shop_group_buys SET status = 'failed', updated_at = $2
                 WHERE id = $1 AND status = 'forming' AND expires_at <= $2",
            )
            .bind(group_id)
            .bind(now)
            .execute(&mut *transaction)
            .await?;
            let appended = if failed.rows_affected() == 1 {
                self.announce_group(&mut transaction, group_id, true).await?
            } else {
                Vec::new()
            };
            transaction.commit().await?;
            for appended in appended {
                self.inner.events.publish(appended);
            }
        }
        let stranded: Vec<String> = sqlx::query_scalar(
            "SELECT o.id FROM shop_orders o JOIN shop_group_buys g ON g.id = o.group_buy_id
             WHERE o.status = 'grouping' AND g.status = 'failed' ORDER BY o.id LIMIT $1",
        )
        .bind(EXPIRED_PER_RUN * 4)
        .fetch_all(self.inner.store.write())
        .await?;
        let mut cancelled = 0;
        for order_id in stranded {
            match self.change(Actor::Job, &order_id, OrderAction::Cancel, ChangeDetails::default()).await {
                Ok(_) => cancelled += 1,
                Err(ShopError::InvalidTransition { .. }) => {}
                Err(error) => tracing::warn!(order_id, "failing a group buy's order: {error}"),
            }
        }
        Ok(cancelled)
    }
}

/// Why `group` cannot take a seat now, if it cannot.
fn refusal_of(group: &GroupBuy, now: i64) -> Option<ShopError> {
    match group.status {
        GroupStatus::Complete => Some(ShopError::GroupFull),
        GroupStatus::Failed => Some(ShopError::GroupExpired),
        GroupStatus::Forming if group.expires_at.unix_millis() <= now => Some(ShopError::GroupExpired),
        GroupStatus::Forming if group.seats_taken >= group.size => Some(ShopError::GroupFull),
        GroupStatus::Forming => None,
    }
}

pub(crate) async fn load_group(
    connection: &mut sqlx::AnyConnection,
    group_id: &str,
) -> Result<Option<GroupBuy>, ShopError> {
    let Some(row) = sqlx::query(&format!(
        "SELECT {GROUP_COLUMNS} FROM shop_group_buys g JOIN shop_products p ON p.id = g.product_id WHERE g.id = $1"
    ))
    .bind(group_id)
    .fetch_optional(&mut *connection)
    .await?
    else {
        return Ok(None);
    };
    let member_ids: Vec<String> = sqlx::query_scalar(
        "SELECT buyer_id FROM shop_group_members WHERE group_buy_id = $1 ORDER BY joined_at, buyer_id",
    )
    .bind(group_id)
    .fetch_all(&mut *connection)
    .await?;
    group_from_row(&row, member_ids).map(Some)
}

fn group_from_row(row: &AnyRow, member_ids: Vec<String>) -> Result<GroupBuy, ShopError> {
    let status: String = row.try_get("status")?;
    let media_ids: Vec<String> = serde_json::from_str(&row.try_get::<String, _>("media_ids")?)
        .map_err(|error| ShopError::Invariant(format!("media_ids: {error}")))?;
    Ok(GroupBuy {
        id: row.try_get("id")?,
        product_id: row.try_get("product_id")?,
        sku_id: row.try_get("sku_id")?,
        leader_id: row.try_get("leader_id")?,
        size: row.try_get("size")?,
        price: row.try_get("price_amount")?,
        currency: row.try_get("currency")?,
        seats_taken: row.try_get("seats_taken")?,
        status: GroupStatus::parse(&status).ok_or_else(|| ShopError::Invariant(format!("group status {status:?}")))?,
        expires_at: Timestamp::from_unix_millis(row.try_get("expires_at")?),
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        member_ids,
        title: row.try_get("title")?,
        photo_media_id: media_ids.into_iter().next(),
    })
}

/// Renders `product` cards: any signed-in user may see a product.
pub struct ProductCards(pub ShopHandle);

impl CardSource for ProductCards {
    fn render<'a>(&'a self, _viewer: &'a User, object_id: &'a str) -> CardFuture<'a> {
        Box::pin(async move {
            match self.0.product_card(object_id).await {
                Ok(card) => Ok(Some(card)),
                Err(ShopError::ProductNotFound) => Ok(None),
                Err(error) => Err(error.to_string()),
            }
        })
    }
}

/// Renders `group_buy` cards: any signed-in user may see (and join) a group buy.
pub struct GroupBuyCards(pub ShopHandle);

impl CardSource for GroupBuyCards {
    fn render<'a>(&'a self, _viewer: &'a User, object_id: &'a str) -> CardFuture<'a> {
        Box::pin(async move {
            match self.0.group_buy(object_id).await {
                Ok(group) => Ok(Some(group.card())),
                Err(ShopError::GroupBuyNotFound) => Ok(None),
                Err(error) => Err(error.to_string()),
            }
        })
    }
}
