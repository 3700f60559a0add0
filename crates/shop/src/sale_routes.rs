//! The shop's social-commerce routes (API.md "Shop"): group buys, flash sales, sharing
//! into chats, and product reviews. Problems map through `routes.rs`.

use crate::flash::FlashSaleInput;
use crate::groups::{GroupBuy, SharedCard};
use crate::routes::{money_pair, FlashSaleView};
use crate::service::{Review, ShopError, ShopHandle};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use plaza_accounts::routes::UserBody;
use plaza_accounts::CurrentUser;
use plaza_http::MoneyView;
use plaza_http::{ApiJson, ApiQuery, Problem};
use plaza_wallet::routes::MoneyBody;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// These routes, relative to `/api/v1`, merged into the shop's router.
pub(crate) fn router() -> OpenApiRouter<ShopHandle> {
    OpenApiRouter::new()
        .routes(routes!(product_reviews))
        .routes(routes!(share_product))
        .routes(routes!(get_group_buy))
        .routes(routes!(share_group_buy))
        .routes(routes!(create_flash_sale))
        .routes(routes!(get_flash_sale))
}

/// A group buy: `status` is `forming`, `complete` or `failed`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GroupBuy)]
pub struct GroupBuyView {
    pub id: String,
    pub product_id: String,
    pub sku_id: String,
    pub title: String,
    pub leader: UserBody,
    pub size: i64,
    pub price: MoneyView,
    pub members: Vec<UserBody>,
    pub seats_left: i64,
    pub status: String,
    pub expires_at: String,
    pub created_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ShareRequest {
    pub conversation_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateFlashSaleRequest {
    pub sku_id: String,
    /// Below the SKU's price.
    pub price: MoneyBody,
    /// Units for sale, taken from the SKU's stock now (unsold ones return after the end).
    pub quantity: i64,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339, after `starts_at`, at most 7 days later.
    pub ends_at: String,
    /// Units per buyer, 1 to 99.
    pub per_user_limit: i64,
}

/// A buyer's review of a product.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewView {
    pub order_id: String,
    pub buyer: UserBody,
    pub stars: i64,
    pub text: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewPage {
    pub items: Vec<ReviewView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ReviewParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The card message a share posted.
#[derive(Debug, Serialize, ToSchema)]
pub struct SharedCardView {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub kind: String,
}

impl From<SharedCard> for SharedCardView {
    fn from(card: SharedCard) -> Self {
        Self { id: card.message_id, conversation_id: card.conversation_id, seq: card.seq, kind: "card".into() }
    }
}

/// A product's reviews, newest first.
#[utoipa::path(get, path = "/products/{id}/reviews", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path), ReviewParams), responses((status = 200, body = ReviewPage)))]
async fn product_reviews(
    State(shop): State<ShopHandle>,
    _current: CurrentUser,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ReviewParams>,
) -> Result<Json<ReviewPage>, Problem> {
    let limit = plaza_http::page_limit(params.limit)?;
    let page = shop.product_reviews(&id, limit, params.cursor.as_deref()).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for Review { order_id, buyer_id, stars, text, created_at } in page.items {
        let buyer = shop.accounts().user(&buyer_id).await.map_err(ShopError::from)?;
        items.push(ReviewView { order_id, buyer: buyer.into(), stars, text, created_at: created_at.to_rfc3339() });
    }
    Ok(Json(ReviewPage { items, next_cursor: page.next_cursor }))
}

/// Share a product into one of your chats as a `card` message.
#[utoipa::path(post, path = "/products/{id}/share", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ShareRequest, responses((status = 201, body = SharedCardView)))]
async fn share_product(
    State(shop): State<ShopHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ShareRequest>,
) -> Result<(StatusCode, Json<SharedCardView>), Problem> {
    let card = shop.share_product(&current.user, &id, &body.conversation_id).await?;
    Ok((StatusCode::CREATED, Json(card.into())))
}

async fn group_view(shop: &ShopHandle, group: GroupBuy) -> Result<GroupBuyView, Problem> {
    let mut members = Vec::with_capacity(group.member_ids.len());
    for member_id in &group.member_ids {
        members.push(UserBody::from(shop.accounts().user(member_id).await.map_err(ShopError::from)?));
    }
    let leader = shop.accounts().user(&group.leader_id).await.map_err(ShopError::from)?;
    Ok(GroupBuyView {
        seats_left: group.seats_left(),
        status: group.status.as_str().to_string(),
        id: group.id,
        product_id: group.product_id,
        sku_id: group.sku_id,
        title: group.title,
        leader: leader.into(),
        size: group.size,
        price: MoneyView { amount: group.price, currency: group.currency },
        members,
        expires_at: group.expires_at.to_rfc3339(),
        created_at: group.created_at.to_rfc3339(),
    })
}

/// A group buy: its members, seats left and exact deadline (public to signed-in users).
#[utoipa::path(get, path = "/group-buys/{id}", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = GroupBuyView)))]
async fn get_group_buy(
    State(shop): State<ShopHandle>,
    _current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<GroupBuyView>, Problem> {
    let group = shop.group_buy(&id).await?;
    Ok(Json(group_view(&shop, group).await?))
}

/// Share a group buy you are in into one of your chats; its members join from the card,
/// and the chat hears when the group completes or fails.
#[utoipa::path(post, path = "/group-buys/{id}/share", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ShareRequest, responses((status = 201, body = SharedCardView)))]
async fn share_group_buy(
    State(shop): State<ShopHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ShareRequest>,
) -> Result<(StatusCode, Json<SharedCardView>), Problem> {
    let card = shop.share_group_buy(&current.user, &id, &body.conversation_id).await?;
    Ok((StatusCode::CREATED, Json(card.into())))
}

fn timestamp(text: &str, field: &str) -> Result<plaza_kernel::Timestamp, Problem> {
    plaza_kernel::Timestamp::parse_rfc3339(text).ok_or_else(|| Problem::invalid_field(field, "an RFC 3339 time"))
}

/// Schedule a flash sale of one SKU of your shop.
#[utoipa::path(post, path = "/flash-sales", tag = "shop", security(("bearer" = [])),
    request_body = CreateFlashSaleRequest, responses((status = 201, body = FlashSaleView)))]
async fn create_flash_sale(
    State(shop): State<ShopHandle>,
    current: CurrentUser,
    ApiJson(body): ApiJson<CreateFlashSaleRequest>,
) -> Result<(StatusCode, Json<FlashSaleView>), Problem> {
    let input = FlashSaleInput {
        sku_id: body.sku_id,
        price: money_pair(body.price),
        quantity: body.quantity,
        starts_at: timestamp(&body.starts_at, "starts_at")?,
        ends_at: timestamp(&body.ends_at, "ends_at")?,
        per_user_limit: body.per_user_limit,
    };
    let sale = shop.create_flash_sale(&current.user, input).await?;
    Ok((StatusCode::CREATED, Json(sale.into())))
}

/// A flash sale, with the units left.
#[utoipa::path(get, path = "/flash-sales/{id}", tag = "shop", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = FlashSaleView)))]
async fn get_flash_sale(
    State(shop): State<ShopHandle>,
    _current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<FlashSaleView>, Problem> {
    Ok(Json(shop.flash_sale(&id).await?.into()))
}
