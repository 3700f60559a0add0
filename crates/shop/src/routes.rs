//! The shop HTTP API (API.md, "Shop"): wire types, thin handlers, and the one mapping from
//! [`ShopError`] to problems.

use crate::flash::FlashSale;
use crate::model::{OrderAction, OrderStatus};
use crate::orders::{ChangeDetails, OrderRole};
use crate::service::{
    Address, GroupChoice, Order, OrderLine, OrderRequest, Product, ProductChange, ProductInput, Shop, ShopError,
    ShopHandle, SkuChange, SkuInput,
};
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::Json;
use plaza_accounts::routes::UserBody;
use plaza_accounts::{Accounts, CurrentUser, User};
use plaza_http::{ApiJson, ApiQuery, ErrorCode, MoneyView, Problem};
use plaza_media::MediaError;
use plaza_wallet::routes::{IdempotencyKeyHeader, MoneyBody};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The shop routes, relative to `/api/v1`.
pub fn router(shop: ShopHandle) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_shop))
        .routes(routes!(my_shop))
        .routes(routes!(get_shop))
        .routes(routes!(create_product))
        .routes(routes!(list_products))
        .routes(routes!(get_product, update_product))
        .routes(routes!(place_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(ship_order))
        .routes(routes!(confirm_order))
        .routes(routes!(request_refund))
        .routes(routes!(approve_refund))
        .routes(routes!(reject_refund))
        .routes(routes!(review_order))
        .merge(crate::sale_routes::router())
        .with_state(shop)
}

impl FromRef<ShopHandle> for Accounts {
    fn from_ref(shop: &ShopHandle) -> Accounts {
        shop.accounts().clone()
    }
}

impl From<ShopError> for Problem {
    fn from(error: ShopError) -> Self {
        match error {
            ShopError::InvalidField { field, reason } => Problem::invalid_field(field, reason),
            ShopError::ShopNotFound => Problem::new(ErrorCode::ShopNotFound, "no such shop"),
            ShopError::ShopAlreadyExists { shop_id } => {
                Problem::new(ErrorCode::ShopAlreadyExists, format!("you already have a shop, {shop_id}"))
            }
            ShopError::ProductNotFound => Problem::new(ErrorCode::ProductNotFound, "no such product"),
            ShopError::ProductArchived { product_id, field } => {
                Problem::new(ErrorCode::ProductArchived, format!("product {product_id} is no longer sold"))
                    .with_field(field)
            }
            ShopError::NotOwner { action } => {
                Problem::new(ErrorCode::Forbidden, format!("only the shop's owner may {action}"))
            }
            ShopError::OrderNotFound => Problem::new(ErrorCode::OrderNotFound, "no such order"),
            ShopError::NotAllowed { who, action } => {
                Problem::new(ErrorCode::Forbidden, format!("only the {who} may {action} this order"))
            }
            ShopError::InvalidTransition { status, action } => Problem::new(
                ErrorCode::InvalidTransition,
                format!("the order is {status}, which does not allow {action}"),
            ),
            ShopError::OutOfStock { sku_id, field } => {
                Problem::new(ErrorCode::OutOfStock, format!("not enough stock of SKU {sku_id}")).with_field(field)
            }
            ShopError::KeyReused => Problem::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was already used for another order; use a new key",
            ),
            ShopError::AlreadyReviewed => Problem::new(ErrorCode::AlreadyReviewed, "you already reviewed this order"),
            ShopError::GroupBuyNotFound => Problem::new(ErrorCode::GroupBuyNotFound, "no such group buy"),
            ShopError::GroupFull => {
                Problem::new(ErrorCode::GroupFull, "every seat of this group is taken; start a group of your own")
            }
            ShopError::GroupExpired => Problem::new(ErrorCode::GroupExpired, "this group buy has ended"),
            ShopError::AlreadyInGroup => Problem::new(ErrorCode::AlreadyInGroup, "you are already in this group"),
            ShopError::NotAMember => Problem::new(ErrorCode::Forbidden, "only a member of the group buy may share it"),
            ShopError::FlashSaleNotFound { field } => {
                Problem::new(ErrorCode::FlashSaleNotFound, "no such flash sale").with_field(field)
            }
            ShopError::SaleNotStarted { starts_at } => {
                Problem::new(ErrorCode::SaleNotStarted, format!("the sale starts at {}", starts_at.to_rfc3339()))
                    .with_extension("starts_at", starts_at.to_rfc3339())
            }
            ShopError::SaleEnded => Problem::new(ErrorCode::SaleEnded, "the sale has ended"),
            ShopError::SoldOut => Problem::new(ErrorCode::SoldOut, "every unit of this sale is sold"),
            ShopError::LimitReached { limit, bought } => Problem::new(
                ErrorCode::LimitReached,
                format!("this sale allows {limit} units per buyer and you have {bought}"),
            )
            .with_extension("limit", limit)
            .with_extension("bought", bought),
            ShopError::Lost(error) => Problem::internal(&error),
            ShopError::Chat(error) => error.into(),
            ShopError::Wallet(error) => error.into(),
            ShopError::Accounts(error) => error.into(),
            ShopError::Media(MediaError::NotFound | MediaError::NotOwned { .. }) => {
                Problem::invalid_field("media_ids", "not one of your uploads")
            }
            // The shop never uploads, so an upload's own failures cannot reach it.
            ShopError::Media(
                error @ (MediaError::TooLarge { .. }
                | MediaError::Empty
                | MediaError::NotAnImage
                | MediaError::DailyLimit { .. }),
            ) => Problem::internal(&error),
            ShopError::Media(MediaError::Database(error)) | ShopError::Database(error)
                if plaza_store::is_unavailable(&error) =>
            {
                Problem::new(ErrorCode::Unavailable, "the database is not reachable; try again shortly")
            }
            ShopError::Media(
                error @ (MediaError::Database(_) | MediaError::UnsupportedUrl(_) | MediaError::Storage(_)),
            ) => Problem::internal(&error),
            ShopError::Database(error) => Problem::internal(&error),
            ShopError::Invariant(reason) => Problem::internal(&reason),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateShopRequest {
    pub name: String,
    pub description: Option<String>,
}

/// `{average, count}`: the mean of the stars given (0 without reviews) and how many.
#[derive(Debug, Serialize, ToSchema)]
pub struct RatingView {
    pub average: f64,
    pub count: i64,
}

impl RatingView {
    fn of(sum: i64, count: i64) -> Self {
        let average = if count == 0 { 0.0 } else { (sum as f64 / count as f64 * 100.0).round() / 100.0 };
        Self { average, count }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Shop)]
pub struct ShopView {
    pub id: String,
    pub owner: UserBody,
    pub name: String,
    pub description: String,
    pub rating: RatingView,
    pub created_at: String,
}

impl From<Shop> for ShopView {
    fn from(shop: Shop) -> Self {
        Self {
            id: shop.id,
            owner: shop.owner.into(),
            name: shop.name,
            description: shop.description,
            rating: RatingView::of(shop.rating_sum, shop.rating_count),
            created_at: shop.created_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SkuBody {
    pub name: String,
    pub price: MoneyBody,
    /// 0 or more units.
    pub stock: i64,
    /// Below `price`; required on every SKU of a product with `group_size`.
    pub group_price: Option<MoneyBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProductRequest {
    pub title: String,
    pub description: Option<String>,
    /// The owner's own uploads (`POST /media`); they become readable by every signed-in user.
    #[serde(default)]
    pub media_ids: Vec<String>,
    pub skus: Vec<SkuBody>,
    /// 2 to 50 buyers, for group buying.
    pub group_size: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SkuChangeBody {
    pub id: String,
    pub price: Option<MoneyBody>,
    pub stock: Option<i64>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatusBody {
    Active,
    Archived,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateProductRequest {
    pub title: Option<String>,
    pub description: Option<String>,
    pub media_ids: Option<Vec<String>>,
    pub status: Option<ProductStatusBody>,
    #[serde(default)]
    pub skus: Vec<SkuChangeBody>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Sku)]
pub struct SkuView {
    pub id: String,
    pub name: String,
    pub price: MoneyView,
    pub group_price: Option<MoneyView>,
    pub stock: i64,
}

/// A forming group of a group-buying product.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenGroupView {
    pub id: String,
    pub leader: UserBody,
    pub size: i64,
    pub seats_left: i64,
    pub price: MoneyView,
    pub expires_at: String,
}

/// A flash sale: `status` is `upcoming`, `live`, `sold_out` or `ended`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FlashSale)]
pub struct FlashSaleView {
    pub id: String,
    pub shop_id: String,
    pub sku_id: String,
    pub product_id: String,
    pub price: MoneyView,
    pub quantity: i64,
    pub remaining: i64,
    /// Units per buyer.
    pub per_user_limit: i64,
    pub starts_at: String,
    pub ends_at: String,
    pub status: String,
}

impl From<FlashSale> for FlashSaleView {
    fn from(sale: FlashSale) -> Self {
        Self {
            status: sale.status(plaza_kernel::Timestamp::now()).to_string(),
            id: sale.id,
            shop_id: sale.shop_id,
            sku_id: sale.sku_id,
            product_id: sale.product_id,
            price: MoneyView { amount: sale.price, currency: sale.currency },
            quantity: sale.quantity,
            remaining: sale.remaining,
            per_user_limit: sale.per_user_limit,
            starts_at: sale.starts_at.to_rfc3339(),
            ends_at: sale.ends_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Product)]
pub struct ProductView {
    pub id: String,
    pub shop_id: String,
    pub title: String,
    pub description: String,
    pub media_ids: Vec<String>,
    /// Where each photo is fetched (`GET /media/{id}`, for any signed-in user).
    pub photo_urls: Vec<String>,
    pub skus: Vec<SkuView>,
    pub group_size: Option<i64>,
    /// `active` or `archived`.
    pub status: String,
    pub rating: RatingView,
    pub sold_count: i64,
    pub created_at: String,
    /// Only on `GET /products/{id}`: up to 10 forming groups, the soonest to end first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_groups: Option<Vec<OpenGroupView>>,
    /// Only on `GET /products/{id}`: its flash sales not yet ended, the soonest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flash_sales: Option<Vec<FlashSaleView>>,
}

impl From<Product> for ProductView {
    fn from(product: Product) -> Self {
        let skus = product
            .skus
            .into_iter()
            .map(|sku| SkuView {
                id: sku.id,
                name: sku.name,
                price: MoneyView { amount: sku.price, currency: sku.currency.clone() },
                group_price: sku.group_price.map(|amount| MoneyView { amount, currency: sku.currency.clone() }),
                stock: sku.stock,
            })
            .collect();
        Self {
            id: product.id,
            shop_id: product.shop_id,
            title: product.title,
            description: product.description,
            photo_urls: product.media_ids.iter().map(|id| format!("/api/v1/media/{id}")).collect(),
            media_ids: product.media_ids,
            skus,
            group_size: product.group_size,
            status: if product.archived { "archived" } else { "active" }.to_string(),
            rating: RatingView::of(product.rating_sum, product.rating_count),
            sold_count: product.sold_count,
            created_at: product.created_at.to_rfc3339(),
            open_groups: None,
            flash_sales: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<ProductView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ProductParams {
    /// Words of the title or description, in any language; results by relevance.
    pub q: Option<String>,
    pub shop_id: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub(crate) fn money_pair(body: MoneyBody) -> (i64, String) {
    (body.amount, body.currency)
}

/// Open your shop (one per user; you are its merchant).
#[utoipa::path(post, path = "/shops", tag = "shop", security(("bearer" = [])),
    request_body = CreateShopRequest, responses((status = 201, body = ShopView)))]
async fn create_shop(
    State(shop): State<ShopHandle>,
    current: CurrentUser,
    ApiJson(body): ApiJson<CreateShopRequest>,
) -> Result<(StatusCode, Json<ShopView>), Problem> {
    let created = shop.create_shop(&current.user, &body.name, body.description.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// A shop (public to signed-in users).
#[utoipa::path(get, path = "/shops/{id}", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ShopView)))]
async fn get_shop(
    State(shop): State<ShopHandle>,
    _current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<ShopView>, Problem> {
    Ok(Json(shop.shop(&id).await?.into()))
}

/// Your own shop (404 `shop_not_found` until you open one).
#[utoipa::path(get, path = "/shops/mine", tag = "shop", security(("bearer" = [])),
    responses((status = 200, body = ShopView)))]
async fn my_shop(State(shop): State<ShopHandle>, current: CurrentUser) -> Result<Json<ShopView>, Problem> {
    Ok(Json(shop.my_shop(&current.user).await?.into()))
}

/// Add a product to your shop.
#[utoipa::path(post, path = "/shops/{id}/products", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = CreateProductRequest, responses((status = 201, body = ProductView)))]
async fn create_product(
    State(shop): State<ShopHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateProductRequest>,
) -> Result<(StatusCode, Json<ProductView>), Problem> {
    let input = ProductInput {
        title: body.title,
        description: body.description,
        media_ids: body.media_ids,
        skus: body
            .skus
            .into_iter()
            .map(|sku| SkuInput {
                name: sku.name,
                price: money_pair(sku.price),
                stock: sku.stock,
                group_price: sku.group_price.map(money_pair),
            })
            .collect(),
        group_size: body.group_size,
    };
    let product = shop.create_product(&current.user, &id, input).await?;
    Ok((StatusCode::CREATED, Json(product.into())))
}

/// Edit a product of your shop (text, photos, archiving, SKU prices and stock).
#[utoipa::path(patch, path = "/products/{id}", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = UpdateProductRequest, responses((status = 200, body = ProductView)))]
async fn update_product(
    State(shop): State<ShopHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateProductRequest>,
) -> Result<Json<ProductView>, Problem> {
    let change = ProductChange {
        title: body.title,
        description: body.description,
        media_ids: body.media_ids,
        archived: body.status.map(|status| status == ProductStatusBody::Archived),
        skus: body
            .skus
            .into_iter()
            .map(|sku| SkuChange { id: sku.id, price: sku.price.map(money_pair), stock: sku.stock })
            .collect(),
    };
    Ok(Json(shop.update_product(&current.user, &id, change).await?.into()))
}

/// Active products: newest first, or with `q` those matching any of its words by relevance.
#[utoipa::path(get, path = "/products", tag = "shop", security(("bearer" = [])),
    params(ProductParams), responses((status = 200, body = ProductPage)))]
async fn list_products(
    State(shop): State<ShopHandle>,
    _current: CurrentUser,
    ApiQuery(params): ApiQuery<ProductParams>,
) -> Result<Json<ProductPage>, Problem> {
    let limit = plaza_http::page_limit(params.limit)?;
    let page = shop.products(params.q.as_deref(), params.shop_id.as_deref(), limit, params.cursor.as_deref()).await?;
    Ok(Json(ProductPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// A product, with the groups forming on it.
#[utoipa::path(get, path = "/products/{id}", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ProductView)))]
async fn get_product(
    State(shop): State<ShopHandle>,
    _current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<ProductView>, Problem> {
    let mut view = ProductView::from(shop.product(&id).await?);
    let mut open_groups = Vec::new();
    for group in shop.open_groups(&id).await? {
        let leader = shop.accounts().user(&group.leader_id).await.map_err(ShopError::from)?;
        open_groups.push(OpenGroupView {
            seats_left: group.seats_left(),
            id: group.id,
            leader: leader.into(),
            size: group.size,
            price: MoneyView { amount: group.price, currency: group.currency },
            expires_at: group.expires_at.to_rfc3339(),
        });
    }
    view.open_groups = Some(open_groups);
    view.flash_sales = Some(shop.product_flash_sales(&id).await?.into_iter().map(Into::into).collect());
    Ok(Json(view))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct OrderItemBody {
    pub sku_id: String,
    /// 1 to 99.
    pub quantity: i64,
    /// Buys at this flash sale's price; the order then has this one item.
    pub flash_sale_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddressBody {
    pub name: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
    pub phone: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PlaceOrderRequest {
    pub items: Vec<OrderItemBody>,
    pub address: AddressBody,
    /// Buy in a group: open one at the group price, or join a forming one.
    pub group: Option<GroupBody>,
    /// The payment PIN, when one is set.
    pub pin: Option<String>,
}

/// `{"mode": "open"}` or `{"mode": "join", "group_id": "…"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum GroupBody {
    Open,
    Join { group_id: String },
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ShipRequest {
    pub carrier: String,
    pub tracking_number: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefundRequest {
    pub reason: String,
    /// At most the order's total; the whole total when absent.
    pub amount: Option<MoneyBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReviewRequest {
    /// 1 to 5.
    pub stars: i64,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderRoleBody {
    Buyer,
    Seller,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct OrderParams {
    /// `buyer` (the default) or `seller`.
    #[param(inline)]
    pub role: Option<OrderRoleBody>,
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// An order: `{id, buyer, shop: {id, name, owner}, items: [{sku_id, product_id, title,
/// sku_name, quantity, unit_price}], total, status, payment_status, group_buy_id,
/// shipment: {carrier, tracking_number, shipped_at, auto_confirm_at} | null, refund:
/// {reason, amount} | null, address, created_at, updated_at}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(as = Order, value_type = Object)]
pub struct OrderView(pub Value);

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderView>,
    pub next_cursor: Option<String>,
}

/// The order with its buyer and shop as objects (events carry their ids only).
/// The viewer, who is the buyer or the seller, is not looked up again.
async fn order_view(shop: &ShopHandle, viewer: &User, order: &Order) -> Result<OrderView, Problem> {
    let seller = shop.shop(&order.shop_id).await?;
    order_view_with_shop(shop, viewer, order, seller).await
}

/// [`order_view`] with the order's shop already in hand.
async fn order_view_with_shop(
    shop: &ShopHandle,
    viewer: &User,
    order: &Order,
    seller: Shop,
) -> Result<OrderView, Problem> {
    let mut view = order.to_json();
    let buyer = match order.buyer_id == viewer.id {
        true => viewer.clone(),
        false => shop.accounts().user(&order.buyer_id).await.map_err(ShopError::from)?,
    };
    let buyer = UserBody::from(buyer);
    if let Value::Object(fields) = &mut view {
        fields.insert("buyer".into(), serde_json::to_value(buyer).map_err(|error| Problem::internal(&error))?);
        let owner = serde_json::to_value(UserBody::from(seller.owner)).map_err(|error| Problem::internal(&error))?;
        fields.insert("shop".into(), serde_json::json!({"id": seller.id, "name": seller.name, "owner": owner}));
    }
    Ok(OrderView(view))
}

type OrderReply = Result<Json<OrderView>, Problem>;

/// Place an order: its total is held from your wallet until you confirm receipt.
#[utoipa::path(post, path = "/orders", tag = "shop", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first order")),
    request_body = PlaceOrderRequest, responses((status = 201, body = OrderView)))]
async fn place_order(
    State(shop): State<ShopHandle>,
    current: CurrentUser,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(body): ApiJson<PlaceOrderRequest>,
) -> Result<(StatusCode, Json<OrderView>), Problem> {
    let address = &body.address;
    let address = Address::parse(
        &address.name,
        &address.line1,
        &address.city,
        &address.postal_code,
        &address.country,
        &address.phone,
    )?;
    let lines = body
        .items
        .into_iter()
        .map(|item| OrderLine { sku_id: item.sku_id, quantity: item.quantity, flash_sale_id: item.flash_sale_id })
        .collect();
    let group = match body.group {
        None => GroupChoice::Alone,
        Some(GroupBody::Open) => GroupChoice::Open,
        Some(GroupBody::Join { group_id }) => GroupChoice::Join(group_id),
    };
    let request = OrderRequest { lines, address, group, pin: body.pin };
    let (order, _replayed, seller) = shop.place_order_with_shop(&current.user, request, key.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(order_view_with_shop(&shop, &current.user, &order, seller).await?)))
}

/// Your orders as buyer or seller, newest first.
#[utoipa::path(get, path = "/orders", tag = "shop", security(("bearer" = [])),
    params(OrderParams), responses((status = 200, body = OrderPage)))]
async fn list_orders(
    State(shop): State<ShopHandle>,
    current: CurrentUser,
    ApiQuery(params): ApiQuery<OrderParams>,
) -> Result<Json<OrderPage>, Problem> {
    let limit = plaza_http::page_limit(params.limit)?;
    let role = match params.role {
        Some(OrderRoleBody::Seller) => OrderRole::Seller,
        Some(OrderRoleBody::Buyer) | None => OrderRole::Buyer,
    };
    let status = match params.status.as_deref() {
        Some(text) => {
            Some(OrderStatus::parse(text).ok_or_else(|| Problem::invalid_field("status", "not an order status"))?)
        }
        None => None,
    };
    let page = shop.orders(&current.user, role, status, limit, params.cursor.as_deref()).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for order in &page.items {
        items.push(order_view(&shop, &current.user, order).await?);
    }
    Ok(Json(OrderPage { items, next_cursor: page.next_cursor }))
}

/// An order (its buyer and its seller only).
#[utoipa::path(get, path = "/orders/{id}", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = OrderView)))]
async fn get_order(State(shop): State<ShopHandle>, current: CurrentUser, Path(id): Path<String>) -> OrderReply {
    let order = shop.order(&current.user, &id).await?;
    Ok(Json(order_view(&shop, &current.user, &order).await?))
}

async fn change(
    shop: &ShopHandle,
    current: &CurrentUser,
    id: &str,
    action: OrderAction,
    details: ChangeDetails,
) -> OrderReply {
    let order = shop.change_order(&current.user, id, action, details).await?;
    Ok(Json(order_view(shop, &current.user, &order).await?))
}

/// Cancel before shipping (buyer or seller): the hold is released and the stock returned.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = OrderView)))]
async fn cancel_order(State(shop): State<ShopHandle>, current: CurrentUser, Path(id): Path<String>) -> OrderReply {
    change(&shop, &current, &id, OrderAction::Cancel, ChangeDetails::default()).await
}

/// Ship (seller).
#[utoipa::path(post, path = "/orders/{id}/ship", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ShipRequest, responses((status = 200, body = OrderView)))]
async fn ship_order(
    State(shop): State<ShopHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ShipRequest>,
) -> OrderReply {
    let details = ChangeDetails {
        carrier: Some(body.carrier),
        tracking_number: Some(body.tracking_number),
        ..ChangeDetails::default()
    };
    change(&shop, &current, &id, OrderAction::Ship, details).await
}

/// Confirm receipt (buyer): the held money goes to the merchant, less the platform fee.
#[utoipa::path(post, path = "/orders/{id}/confirm", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = OrderView)))]
async fn confirm_order(State(shop): State<ShopHandle>, current: CurrentUser, Path(id): Path<String>) -> OrderReply {
    change(&shop, &current, &id, OrderAction::Confirm, ChangeDetails::default()).await
}

/// Ask for a refund after shipping or completion (buyer).
#[utoipa::path(post, path = "/orders/{id}/refund", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = RefundRequest, responses((status = 200, body = OrderView)))]
async fn request_refund(
    State(shop): State<ShopHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RefundRequest>,
) -> OrderReply {
    let amount = match body.amount {
        Some(amount) => {
            let order = shop.order(&current.user, &id).await?;
            if amount.currency != order.currency {
                return Err(Problem::invalid_field("amount.currency", "the order's currency"));
            }
            Some(amount.amount)
        }
        None => None,
    };
    let details = ChangeDetails { reason: Some(body.reason), amount, ..ChangeDetails::default() };
    change(&shop, &current, &id, OrderAction::RequestRefund, details).await
}

/// Approve the refund asked for (seller): the money goes back to the buyer.
#[utoipa::path(post, path = "/orders/{id}/refund/approve", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = OrderView)))]
async fn approve_refund(State(shop): State<ShopHandle>, current: CurrentUser, Path(id): Path<String>) -> OrderReply {
    change(&shop, &current, &id, OrderAction::ApproveRefund, ChangeDetails::default()).await
}

/// Reject the refund asked for (seller): the order returns to where it was.
#[utoipa::path(post, path = "/orders/{id}/refund/reject", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = OrderView)))]
async fn reject_refund(State(shop): State<ShopHandle>, current: CurrentUser, Path(id): Path<String>) -> OrderReply {
    let action = OrderAction::RejectRefund { before_request: OrderStatus::Shipped };
    change(&shop, &current, &id, action, ChangeDetails::default()).await
}

/// Review a completed order (buyer, once): counted into the shop's and products' ratings.
#[utoipa::path(post, path = "/orders/{id}/review", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ReviewRequest, responses((status = 201, description = "Reviewed")))]
async fn review_order(
    State(shop): State<ShopHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReviewRequest>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    shop.review(&current.user, &id, body.stars, body.text.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"order_id": id, "stars": body.stars, "text": body.text}))))
}
