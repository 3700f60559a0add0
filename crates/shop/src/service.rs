//! The shop service: shops, products, search and orders as plain async functions over the
//! store and the wallet's payment intents. No HTTP here.

use crate::model::{self, text, OrderStatus};
use crate::search;
use plaza_accounts::{Accounts, AccountsError, User};
use plaza_chat::{Chat, ChatError};
use plaza_events::Events;
use plaza_kernel::{Currency, Cursor, Money, Page, PageLimit, Timestamp};
use plaza_media::{Media, MediaError};
use plaza_store::{Row, Store};
use plaza_wallet::{Wallet, WalletError};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Tunables of the shop (`PLAZA_SHOP_*`).
#[derive(Debug, Clone)]
pub struct ShopConfig {
    /// The platform's share of each order's total, in basis points.
    pub platform_fee_bps: plaza_kernel::BasisPoints,
    /// How long after shipping an order nobody confirmed confirms itself.
    pub auto_confirm_after: Duration,
    /// How long a group buy has to fill its seats before its orders are cancelled.
    pub group_window: Duration,
    /// How often every node runs the shop's job (it acts only while holding the lease).
    pub job_interval: Duration,
    /// How long a node holds the job's lease without renewing it.
    pub lease_ttl: Duration,
    /// How long after a hold was taken for an order never saved the job releases it (far
    /// longer than a request may take, so no request can still be saving it).
    pub stranded_hold_grace: Duration,
}

impl Default for ShopConfig {
    fn default() -> Self {
        Self {
            platform_fee_bps: plaza_kernel::BasisPoints::at_most_all(500),
            auto_confirm_after: Duration::from_secs(10 * 24 * 3600),
            group_window: Duration::from_secs(24 * 3600),
            job_interval: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
            stranded_hold_grace: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("{field}: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("no such shop")]
    ShopNotFound,
    #[error("the user already has shop {shop_id}")]
    ShopAlreadyExists { shop_id: String },
    #[error("no such product")]
    ProductNotFound,
    #[error("product {product_id} is archived")]
    ProductArchived { product_id: String, field: String },
    #[error("only the shop's owner may {action}")]
    NotOwner { action: &'static str },
    #[error("no such order")]
    OrderNotFound,
    #[error("only the {who} may {action} this order")]
    NotAllowed { who: &'static str, action: &'static str },
    #[error("the order is {status}, which does not allow {action}")]
    InvalidTransition { status: &'static str, action: &'static str },
    #[error("not enough stock of {sku_id}")]
    OutOfStock { sku_id: String, field: String },
    #[error("the Idempotency-Key was used for another order")]
    KeyReused,
    #[error("already reviewed")]
    AlreadyReviewed,
    #[error("no such group buy")]
    GroupBuyNotFound,
    #[error("the group buy is full")]
    GroupFull,
    #[error("the group buy has ended")]
    GroupExpired,
    #[error("already in this group buy")]
    AlreadyInGroup,
    #[error("only a member of the group buy may share it")]
    NotAMember,
    #[error("no such flash sale")]
    FlashSaleNotFound { field: String },
    #[error("the flash sale has not started")]
    SaleNotStarted { starts_at: Timestamp },
    #[error("the flash sale has ended")]
    SaleEnded,
    #[error("the flash sale is sold out")]
    SoldOut,
    #[error("past the flash sale's limit of {limit} per buyer")]
    LimitReached { limit: i64, bought: i64 },
    #[error("the order could not be answered: {0}")]
    Lost(#[from] plaza_store::GroupCommitError),
    #[error("chat: {0}")]
    Chat(#[from] ChatError),
    #[error("wallet: {0}")]
    Wallet(#[from] WalletError),
    #[error("accounts: {0}")]
    Accounts(#[from] AccountsError),
    #[error("media: {0}")]
    Media(#[from] MediaError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("invariant: {0}")]
    Invariant(String),
}

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ShopError {
    ShopError::InvalidField { field: field.into(), reason: reason.into() }
}

/// The `(created_at, id)` a newest-first listing's cursor stands after; the list's start
/// without one.
pub(crate) fn time_position(cursor: Option<&str>) -> Result<(i64, String), ShopError> {
    match cursor {
        Some(cursor) => {
            time_position_of(&Cursor::parse_position(cursor).ok_or_else(|| invalid("cursor", "not a cursor"))?)
        }
        None => Ok((i64::MAX, String::new())),
    }
}

/// A decoded position `at:id` of a newest-first listing.
pub(crate) fn time_position_of(position: &str) -> Result<(i64, String), ShopError> {
    let (at, id) = position.split_once(':').ok_or_else(|| invalid("cursor", "not a cursor"))?;
    Ok((at.parse::<i64>().map_err(|_| invalid("cursor", "not a cursor"))?, id.to_string()))
}

/// A shop.
#[derive(Debug, Clone, PartialEq)]
pub struct Shop {
    pub id: String,
    pub owner: User,
    pub name: String,
    pub description: String,
    pub rating_sum: i64,
    pub rating_count: i64,
    pub created_at: Timestamp,
}

/// One variant of a product, with its own price and stock.
#[derive(Debug, Clone, PartialEq)]
pub struct Sku {
    pub id: String,
    pub name: String,
    pub price: i64,
    pub group_price: Option<i64>,
    pub currency: String,
    pub stock: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub id: String,
    pub shop_id: String,
    pub title: String,
    pub description: String,
    pub media_ids: Vec<String>,
    pub skus: Vec<Sku>,
    pub group_size: Option<i64>,
    pub archived: bool,
    pub rating_sum: i64,
    pub rating_count: i64,
    pub sold_count: i64,
    pub created_at: Timestamp,
}

/// A SKU as a merchant describes it; checked by [`ProductDraft::parse`].
#[derive(Debug, Clone)]
pub struct SkuInput {
    pub name: String,
    pub price: (i64, String),
    pub stock: i64,
    pub group_price: Option<(i64, String)>,
}

/// A product as a merchant describes it, before it is checked.
#[derive(Debug, Clone)]
pub struct ProductInput {
    pub title: String,
    pub description: Option<String>,
    pub media_ids: Vec<String>,
    pub skus: Vec<SkuInput>,
    pub group_size: Option<i64>,
}

/// Changes to a product; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct ProductChange {
    pub title: Option<String>,
    pub description: Option<String>,
    pub media_ids: Option<Vec<String>>,
    pub archived: Option<bool>,
    pub skus: Vec<SkuChange>,
}

/// A new price and stock for one SKU; absent fields stay as they are.
#[derive(Debug, Clone)]
pub struct SkuChange {
    pub id: String,
    pub price: Option<(i64, String)>,
    pub stock: Option<i64>,
}

/// A checked product.
#[derive(Debug, Clone)]
struct ProductDraft {
    title: String,
    description: String,
    media_ids: Vec<String>,
    skus: Vec<(String, Money, i64, Option<Money>)>,
    group_size: Option<i64>,
}

/// A line of an order as the buyer asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub sku_id: String,
    pub quantity: i64,
    /// Buys at this flash sale's price (then the order has this one line).
    pub flash_sale_id: Option<String>,
}

/// Whether an order buys alone or in a group buy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChoice {
    /// At the SKU's price.
    Alone,
    /// Opens a group at the group price; the order waits (`grouping`) for the group to fill.
    Open,
    /// Takes a seat in a forming group.
    Join(String),
}

/// An order as the buyer asks for it.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    pub lines: Vec<OrderLine>,
    pub address: Address,
    pub group: GroupChoice,
    pub pin: Option<String>,
}

/// Where an order goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub name: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
    pub phone: String,
}

impl Address {
    pub fn parse(
        name: &str,
        line1: &str,
        city: &str,
        postal_code: &str,
        country: &str,
        phone: &str,
    ) -> Result<Self, ShopError> {
        let part =
            |value: &str, field: &str| text(value, format!("address.{field}"), model::ADDRESS_PART_MAX_CHARS, false);
        Ok(Self {
            name: part(name, "name")?,
            line1: part(line1, "line1")?,
            city: part(city, "city")?,
            postal_code: part(postal_code, "postal_code")?,
            country: part(country, "country")?,
            phone: part(phone, "phone")?,
        })
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({"name": self.name, "line1": self.line1, "city": self.city, "postal_code": self.postal_code,
            "country": self.country, "phone": self.phone})
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    pub sku_id: String,
    pub product_id: String,
    pub title: String,
    pub sku_name: String,
    pub quantity: i64,
    pub unit_price: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: String,
    pub buyer_id: String,
    pub shop_id: String,
    pub seller_id: String,
    pub status: OrderStatus,
    pub total: i64,
    pub currency: String,
    pub payment_intent_id: String,
    pub payment_status: String,
    pub address: Value,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub shipped_at: Option<Timestamp>,
    pub auto_confirm_at: Option<Timestamp>,
    pub refund_reason: Option<String>,
    pub refund_amount: Option<i64>,
    pub status_before_refund: Option<OrderStatus>,
    pub group_buy_id: Option<String>,
    pub flash_sale_id: Option<String>,
    pub items: Vec<OrderItem>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Order {
    /// The order as its buyer and seller see it, with the users and the shop filled in by
    /// the caller (also the data of `order.updated`, where they are ids).
    pub fn to_json(&self) -> Value {
        // A view of borrowed fields and numbers serializes infallibly.
        serde_json::to_value(crate::order_json::OrderJson::of(self)).unwrap_or(Value::Null)
    }

    pub(crate) fn parties(&self) -> Vec<String> {
        let mut parties = vec![self.buyer_id.clone(), self.seller_id.clone()];
        parties.sort();
        parties.dedup();
        parties
    }
}

/// A buyer's review of a completed order.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub order_id: String,
    pub buyer_id: String,
    pub stars: i64,
    pub text: String,
    pub created_at: Timestamp,
}

/// Who is acting on an order: a person, or the shop's own job (auto-confirmation).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Actor<'a> {
    User(&'a User),
    Job,
}

/// The shop service handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct ShopHandle {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) events: Events,
    pub(crate) accounts: Accounts,
    pub(crate) media: Media,
    pub(crate) wallet: Wallet,
    pub(crate) chat: Chat,
    pub(crate) config: ShopConfig,
    pub(crate) node_id: String,
    /// The group commit of flash-sale orders, started on first use.
    pub(crate) flash_orders: OnceLock<crate::flash::FlashQueue>,
    /// The runtime of the first flash order's caller, where a committed batch's events are
    /// published: off the batch's own thread, which every waiting buyer depends on.
    pub(crate) flash_publisher: OnceLock<tokio::runtime::Handle>,
    /// This node's catalogue index (`search.rs`).
    pub(crate) search_index: search::SearchIndex,
    /// Told of every order placed through this node, once committed (`on_orders_placed`).
    pub(crate) placed_hooks: crate::placed::PlacedHooks,
}

const PRODUCT_COLUMNS: &str =
    "id, shop_id, title, description, media_ids, group_size, status, rating_sum, rating_count,
    sold_count, created_at";

impl ShopHandle {
    pub fn new(
        store: Store,
        events: Events,
        accounts: Accounts,
        media: Media,
        wallet: Wallet,
        chat: Chat,
        config: ShopConfig,
    ) -> Self {
        let node_id = plaza_kernel::new_id();
        let flash_orders = OnceLock::new();
        let search_index = search::SearchIndex::default();
        Self {
            inner: Arc::new(Inner {
                store,
                events,
                accounts,
                media,
                wallet,
                chat,
                config,
                node_id,
                flash_orders,
                flash_publisher: OnceLock::new(),
                search_index,
                placed_hooks: Default::default(),
            }),
        }
    }

    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    // ---- shops ----

    /// Opens `me`'s shop (one per user: the unique owner decides between concurrent tries).
    pub async fn create_shop(&self, me: &User, name: &str, description: Option<&str>) -> Result<Shop, ShopError> {
        let name = text(name, "name", model::SHOP_NAME_MAX_CHARS, false)?;
        let description = text(description.unwrap_or(""), "description", model::DESCRIPTION_MAX_CHARS, true)?;
        let id = plaza_kernel::new_id();
        let inserted = sqlx::query(
            "INSERT INTO shops (id, owner_id, name, description, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (owner_id) DO NOTHING",
        )
        .bind(&id)
        .bind(&me.id)
        .bind(&name)
        .bind(&description)
        .bind(Timestamp::now().unix_millis())
        .execute(self.inner.store.write())
        .await?;
        if inserted.rows_affected() == 0 {
            let shop_id: String = sqlx::query_scalar("SELECT id FROM shops WHERE owner_id = $1")
                .bind(&me.id)
                .fetch_one(self.inner.store.write())
                .await?;
            return Err(ShopError::ShopAlreadyExists { shop_id });
        }
        self.shop(&id).await
    }

    /// `me`'s own shop, if they opened one (a merchant's client finds its shop by this).
    pub async fn my_shop(&self, me: &User) -> Result<Shop, ShopError> {
        let shop_id: Option<String> = sqlx::query_scalar("SELECT id FROM shops WHERE owner_id = $1")
            .bind(&me.id)
            .fetch_optional(self.inner.store.write())
            .await?;
        self.shop(&shop_id.ok_or(ShopError::ShopNotFound)?).await
    }

    pub async fn shop(&self, shop_id: &str) -> Result<Shop, ShopError> {
        let row = sqlx::query(
            "SELECT id, owner_id, name, description, rating_sum, rating_count, created_at FROM shops WHERE id = $1",
        )
        .bind(shop_id)
        .fetch_optional(self.inner.store.read())
        .await?
        .ok_or(ShopError::ShopNotFound)?;
        let owner = self.inner.accounts.user(&row.try_get::<String, _>("owner_id")?).await?;
        Ok(Shop {
            id: row.try_get("id")?,
            owner,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            rating_sum: row.try_get("rating_sum")?,
            rating_count: row.try_get("rating_count")?,
            created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        })
    }

    // ---- products ----

    fn parse_product(&self, input: ProductInput) -> Result<ProductDraft, ShopError> {
        let title = text(&input.title, "title", model::TITLE_MAX_CHARS, false)?;
        let description =
            text(input.description.as_deref().unwrap_or(""), "description", model::DESCRIPTION_MAX_CHARS, true)?;
        let media_ids = parse_media_ids(input.media_ids)?;
        if let Some(size) = input.group_size {
            if !(model::GROUP_SIZE_MIN..=model::GROUP_SIZE_MAX).contains(&size) {
                return Err(invalid(
                    "group_size",
                    format!("a group has {} to {} buyers", model::GROUP_SIZE_MIN, model::GROUP_SIZE_MAX),
                ));
            }
        }
        if input.skus.is_empty() || input.skus.len() > model::SKUS_MAX {
            return Err(invalid("skus", format!("1 to {} SKUs", model::SKUS_MAX)));
        }
        let mut skus = Vec::with_capacity(input.skus.len());
        let mut currency: Option<Currency> = None;
        for (index, sku) in input.skus.into_iter().enumerate() {
            let field = |name: &str| format!("skus[{index}].{name}");
            let name = text(&sku.name, field("name"), model::SKU_NAME_MAX_CHARS, false)?;
            let price = self.money(sku.price, &field("price"))?;
            if *currency.get_or_insert(price.currency()) != price.currency() {
                return Err(invalid(field("price.currency"), "every SKU of a product is priced in one currency"));
            }
            let stock = parse_stock(sku.stock, &field("stock"))?;
            let group_price = match (sku.group_price, input.group_size) {
                (Some(group_price), Some(_)) => {
                    let group_price = self.money(group_price, &field("group_price"))?;
                    if group_price.currency() != price.currency() {
                        return Err(invalid(field("group_price.currency"), "the group price is in the SKU's currency"));
                    }
                    if group_price.amount() >= price.amount() {
                        return Err(invalid(field("group_price"), "a group price is below the price"));
                    }
                    Some(group_price)
                }
                (Some(_), None) => return Err(invalid("group_size", "a product with group prices has a group size")),
                (None, Some(_)) => {
                    return Err(invalid(field("group_price"), "a group product prices every SKU for groups"))
                }
                (None, None) => None,
            };
            skus.push((name, price, stock, group_price));
        }
        Ok(ProductDraft { title, description, media_ids, skus, group_size: input.group_size })
    }

    pub(crate) fn money(&self, (amount, currency): (i64, String), field: &str) -> Result<Money, ShopError> {
        self.inner.wallet.money(amount, &currency).map_err(|error| match error {
            WalletError::InvalidField { field: part, reason } => {
                invalid(format!("{field}.{}", part.rsplit('.').next().unwrap_or(part)), reason)
            }
            other => other.into(),
        })
    }

    /// The shop owned by `me` with id `shop_id`: anyone else is refused (the shop itself is
    /// public, so it is a 403, not a 404).
    async fn own_shop(&self, me: &User, shop_id: &str, action: &'static str) -> Result<Shop, ShopError> {
        let shop = self.shop(shop_id).await?;
        if shop.owner.id != me.id {
            return Err(ShopError::NotOwner { action });
        }
        Ok(shop)
    }

    pub async fn create_product(&self, me: &User, shop_id: &str, input: ProductInput) -> Result<Product, ShopError> {
        let shop = self.own_shop(me, shop_id, "add products").await?;
        let draft = self.parse_product(input)?;
        // Published before the product's row: a failure in between leaves the owner's own
        // photos readable, which they meant them to be.
        self.inner.media.publish_product_photos(&me.id, &draft.media_ids).await.map_err(photo_error)?;
        let id = plaza_kernel::new_id();
        let now = Timestamp::now().unix_millis();
        let (title_terms, description_terms) = (search::terms(&draft.title), search::terms(&draft.description));
        let mut transaction = self.inner.store.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO shop_products ({PRODUCT_COLUMNS}, title_terms, description_terms, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'active', 0, 0, 0, $7, $8, $9, $7)"
        ))
        .bind(&id)
        .bind(&shop.id)
        .bind(&draft.title)
        .bind(&draft.description)
        .bind(json!(draft.media_ids).to_string())
        .bind(draft.group_size)
        .bind(now)
        .bind(title_terms.values().sum::<i64>())
        .bind(description_terms.values().sum::<i64>())
        .execute(&mut *transaction)
        .await?;
        for (position, (name, price, stock, group_price)) in draft.skus.iter().enumerate() {
            sqlx::query(
                "INSERT INTO shop_skus (id, product_id, position, name, price_amount, group_price_amount, currency, stock)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(plaza_kernel::new_id())
            .bind(&id)
            .bind(position as i64)
            .bind(name)
            .bind(price.amount())
            .bind(group_price.map(Money::amount))
            .bind(price.currency().code())
            .bind(*stock)
            .execute(&mut *transaction)
            .await?;
        }
        search::stamp(&mut transaction, &id).await?;
        transaction.commit().await?;
        self.product(&id).await
    }

    /// Edits a product of `me`'s shop: text (re-indexed in the same transaction), photos,
    /// archiving, and each named SKU's price and stock.
    pub async fn update_product(
        &self,
        me: &User,
        product_id: &str,
        change: ProductChange,
    ) -> Result<Product, ShopError> {
        let product = self.product(product_id).await?;
        self.own_shop(me, &product.shop_id, "edit its products").await?;
        let title = change.title.as_deref().map(|t| text(t, "title", model::TITLE_MAX_CHARS, false)).transpose()?;
        let description = change
            .description
            .as_deref()
            .map(|d| text(d, "description", model::DESCRIPTION_MAX_CHARS, true))
            .transpose()?;
        let media_ids = change.media_ids.map(parse_media_ids).transpose()?;
        let mut sku_changes = Vec::new();
        for (index, SkuChange { id: sku_id, price, stock }) in change.skus.into_iter().enumerate() {
            let Some(sku) = product.skus.iter().find(|sku| sku.id == sku_id) else {
                return Err(invalid(format!("skus[{index}].id"), "not a SKU of this product"));
            };
            let price = price.map(|price| self.money(price, &format!("skus[{index}].price"))).transpose()?;
            if let Some(price) = price {
                if price.currency().code() != sku.currency {
                    return Err(invalid(format!("skus[{index}].price.currency"), "a SKU keeps its currency"));
                }
                if sku.group_price.is_some_and(|group_price| group_price >= price.amount()) {
                    return Err(invalid(format!("skus[{index}].price"), "the price stays above the group price"));
                }
            }
            let stock = stock.map(|stock| parse_stock(stock, &format!("skus[{index}].stock"))).transpose()?;
            sku_changes.push((sku_id, price, stock));
        }
        if let Some(media_ids) = &media_ids {
            self.inner.media.publish_product_photos(&me.id, media_ids).await.map_err(photo_error)?;
        }
        let now = Timestamp::now().unix_millis();
        let reindex = title.is_some() || description.is_some() || change.archived.is_some();
        let mut transaction = self.inner.store.begin().await?;
        if title.is_some() || description.is_some() {
            let title = title.unwrap_or(product.title);
            let description = description.unwrap_or(product.description);
            let (title_terms, description_terms) = (search::terms(&title), search::terms(&description));
            sqlx::query(
                "UPDATE shop_products SET title = $2, description = $3, title_terms = $4, description_terms = $5,
                     updated_at = $6 WHERE id = $1",
            )
            .bind(product_id)
            .bind(&title)
            .bind(&description)
            .bind(title_terms.values().sum::<i64>())
            .bind(description_terms.values().sum::<i64>())
            .bind(now)
            .execute(&mut *transaction)
            .await?;
        }
        if let Some(media_ids) = media_ids {
            sqlx::query("UPDATE shop_products SET media_ids = $2, updated_at = $3 WHERE id = $1")
                .bind(product_id)
                .bind(json!(media_ids).to_string())
                .bind(now)
                .execute(&mut *transaction)
                .await?;
        }
        if let Some(archived) = change.archived {
            sqlx::query("UPDATE shop_products SET status = $2, updated_at = $3 WHERE id = $1")
                .bind(product_id)
                .bind(if archived { "archived" } else { "active" })
                .bind(now)
                .execute(&mut *transaction)
                .await?;
        }
        for (sku_id, price, stock) in sku_changes {
            if let Some(price) = price {
                sqlx::query("UPDATE shop_skus SET price_amount = $2 WHERE id = $1")
                    .bind(&sku_id)
                    .bind(price.amount())
                    .execute(&mut *transaction)
                    .await?;
            }
            if let Some(stock) = stock {
                sqlx::query("UPDATE shop_skus SET stock = $2 WHERE id = $1")
                    .bind(&sku_id)
                    .bind(stock)
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        if reindex {
            search::stamp(&mut transaction, product_id).await?;
        }
        transaction.commit().await?;
        self.product(product_id).await
    }

    /// A product, archived or not (an archived one stays visible to whoever has its link
    /// and to its orders; it is only out of the catalogue and cannot be bought).
    pub async fn product(&self, product_id: &str) -> Result<Product, ShopError> {
        let mut connection = self.inner.store.read().acquire().await?;
        load_product(&mut connection, product_id).await?.ok_or(ShopError::ProductNotFound)
    }

    /// Active products, newest first, or, with a query, by relevance (`search.rs`).
    pub async fn products(
        &self,
        query: Option<&str>,
        shop_id: Option<&str>,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<Product>, ShopError> {
        let position = match cursor {
            Some(cursor) => Some(Cursor::parse_position(cursor).ok_or_else(|| invalid("cursor", "not a cursor"))?),
            None => None,
        };
        let query = query.map(str::trim).filter(|query| !query.is_empty());
        let ids = match query {
            Some(query) => {
                if query.chars().count() > 200 {
                    return Err(invalid("q", "at most 200 characters"));
                }
                let offset: usize = match &position {
                    Some(position) => position.parse().map_err(|_| invalid("cursor", "not a cursor"))?,
                    None => 0,
                };
                let ranked = self.search(query, shop_id, offset.saturating_add(limit.probe() as usize)).await?;
                let page: Vec<(usize, String)> = ranked
                    .into_iter()
                    .enumerate()
                    .skip(offset)
                    .take(limit.probe() as usize)
                    .map(|(index, id)| (index + 1, id))
                    .collect();
                return self.page_of(page, limit, |(next, _)| next.to_string()).await;
            }
            None => {
                let (before_at, before_id) = match &position {
                    Some(position) => time_position_of(position)?,
                    None => (i64::MAX, String::new()),
                };
                let rows = sqlx::query(
                    "SELECT id, created_at FROM shop_products
                     WHERE status = 'active' AND ($1 = '' OR shop_id = $1)
                       AND (created_at < $2 OR (created_at = $2 AND ($3 = '' OR id < $3)))
                     ORDER BY created_at DESC, id DESC LIMIT $4",
                )
                .bind(shop_id.unwrap_or(""))
                .bind(before_at)
                .bind(&before_id)
                .bind(limit.probe())
                .fetch_all(self.inner.store.read())
                .await?;
                let mut ids = Vec::with_capacity(rows.len());
                for row in rows {
                    let id: String = row.try_get("id")?;
                    let at: i64 = row.try_get("created_at")?;
                    ids.push((format!("{at}:{id}"), id));
                }
                ids
            }
        };
        self.page_of(ids, limit, |(position, _)| position.clone()).await
    }

    async fn page_of<P: Clone>(
        &self,
        ids: Vec<(P, String)>,
        limit: PageLimit,
        position_of: impl Fn(&(P, String)) -> String,
    ) -> Result<Page<Product>, ShopError> {
        let page = Page::from_probe(ids, limit, position_of);
        let ids: Vec<String> = page.items.into_iter().map(|(_, id)| id).collect();
        let mut connection = self.inner.store.read().acquire().await?;
        let items = load_products(&mut connection, &ids).await?;
        Ok(Page { items, next_cursor: page.next_cursor })
    }
}

fn photo_error(error: MediaError) -> ShopError {
    match error {
        MediaError::NotOwned { media_id } => invalid("media_ids", format!("{media_id} is not one of your uploads")),
        other => other.into(),
    }
}

fn parse_media_ids(media_ids: Vec<String>) -> Result<Vec<String>, ShopError> {
    if media_ids.len() > model::PHOTOS_MAX {
        return Err(invalid("media_ids", format!("at most {} photos", model::PHOTOS_MAX)));
    }
    for (index, id) in media_ids.iter().enumerate() {
        if id.is_empty() || id.len() > 64 || media_ids[..index].contains(id) {
            return Err(invalid(format!("media_ids[{index}]"), "a media id, once"));
        }
    }
    Ok(media_ids)
}

fn parse_stock(stock: i64, field: &str) -> Result<i64, ShopError> {
    if !(0..=model::STOCK_MAX).contains(&stock) {
        return Err(invalid(field, format!("stock is 0 to {}", model::STOCK_MAX)));
    }
    Ok(stock)
}

async fn load_product(connection: &mut sqlx::AnyConnection, product_id: &str) -> Result<Option<Product>, ShopError> {
    Ok(load_products(connection, &[product_id.to_string()]).await?.pop())
}

/// The products of `ids` that exist, in the order of `ids`, with their SKUs: one
/// statement whatever the number (each product joined with its SKUs, its own columns
/// repeated per SKU; a catalogue's products mostly have one), where two were a second
/// round trip on every search and product page.
pub(crate) async fn load_products(
    connection: &mut sqlx::AnyConnection,
    ids: &[String],
) -> Result<Vec<Product>, ShopError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = plaza_store::numbered_parameters(1, ids.len());
    let sql = format!(
        "SELECT p.id, p.shop_id, p.title, p.description, p.media_ids, p.group_size, p.status, p.rating_sum,
                p.rating_count, p.sold_count, p.created_at, s.id AS sku_id, s.name AS sku_name, s.price_amount,
                s.group_price_amount, s.currency, s.stock
         FROM shop_products p LEFT JOIN shop_skus s ON s.product_id = p.id
         WHERE p.id IN ({placeholders}) ORDER BY p.id, s.position"
    );
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(id);
    }
    let mut products: HashMap<String, Product> = HashMap::with_capacity(ids.len());
    for row in query.fetch_all(&mut *connection).await? {
        let product = match products.entry(row.try_get("id")?) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let product = product_from_row(&row, entry.key().clone())?;
                entry.insert(product)
            }
        };
        if let Some(sku_id) = row.try_get::<Option<String>, _>("sku_id")? {
            product.skus.push(Sku {
                id: sku_id,
                name: row.try_get("sku_name")?,
                price: row.try_get("price_amount")?,
                group_price: row.try_get("group_price_amount")?,
                currency: row.try_get("currency")?,
                stock: row.try_get("stock")?,
            });
        }
    }
    Ok(ids.iter().filter_map(|id| products.remove(id)).collect())
}

/// A product's own columns from [`load_products`]' row, without its SKUs.
fn product_from_row(row: &plaza_store::AnyRow, id: String) -> Result<Product, ShopError> {
    let media_ids: Vec<String> = serde_json::from_str(&row.try_get::<String, _>("media_ids")?)
        .map_err(|error| ShopError::Invariant(format!("media_ids: {error}")))?;
    Ok(Product {
        skus: Vec::new(),
        id,
        shop_id: row.try_get("shop_id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        media_ids,
        group_size: row.try_get("group_size")?,
        archived: row.try_get::<String, _>("status")? == "archived",
        rating_sum: row.try_get("rating_sum")?,
        rating_count: row.try_get("rating_count")?,
        sold_count: row.try_get("sold_count")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
    })
}
