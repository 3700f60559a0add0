//! In-stream deals and the host's sales over HTTP (API.md, "Live"). The frames
//! (`live.deal`, `live.sold`) go through the room's relay (`hub.rs`).

use crate::deals::{Deal, DealInput};
use crate::service::LiveHandle;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use plaza_accounts::CurrentUser;
use plaza_http::{ApiJson, MoneyView, Problem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn router() -> OpenApiRouter<LiveHandle> {
    OpenApiRouter::new().routes(routes!(start_deal)).routes(routes!(room_sales))
}

/// A room's deal: a shop flash sale running inside the stream. Buy it with an ordinary
/// `POST /orders` whose item names `flash_sale_id`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = LiveDeal)]
pub struct DealBody {
    pub flash_sale_id: String,
    pub sku_id: String,
    /// The shop's `product` card of the SKU's product.
    pub product: Value,
    pub price: MoneyView,
    pub quantity: i64,
    /// Units left, as of this answer.
    pub remaining: i64,
    /// Units one buyer may have.
    pub per_user_limit: i64,
    /// RFC 3339, UTC.
    pub ends_at: String,
    /// Milliseconds until the end by the server's clock, as of this answer.
    pub remaining_ms: i64,
    /// Whether its window is over (only `live.deal` carries an ended deal).
    pub ended: bool,
}

impl From<&Deal> for DealBody {
    fn from(deal: &Deal) -> Self {
        let sale = &deal.sale;
        Self {
            flash_sale_id: sale.id.clone(),
            sku_id: sale.sku_id.clone(),
            product: deal.product.clone(),
            price: MoneyView::new(sale.price, &sale.currency),
            quantity: sale.quantity,
            remaining: sale.remaining,
            per_user_limit: sale.per_user_limit,
            ends_at: sale.ends_at.to_rfc3339(),
            remaining_ms: deal.remaining_ms(),
            ended: deal.ended(),
        }
    }
}

/// An amount of money: integer minor units and an ISO 4217 code.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = LiveDealPrice)]
#[serde(deny_unknown_fields)]
pub struct PriceRequest {
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartDealRequest {
    /// A SKU of one of the host's own products.
    pub sku_id: String,
    /// Below the SKU's price, in its currency.
    pub price: PriceRequest,
    /// Units for sale, taken from the SKU's stock now (unsold ones return after the end).
    pub quantity: i64,
    /// How long the deal runs from now.
    #[schema(minimum = 10, maximum = 300)]
    pub duration_s: i64,
    /// Units per buyer, 1 to 99.
    pub per_user_limit: i64,
}

/// What the room's deals sold, for its host.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LiveRoomSales)]
pub struct SalesBody {
    pub room_id: String,
    /// Deals the room ran.
    pub deals: i64,
    /// Their orders not cancelled or refunded, and those orders' units.
    pub orders: i64,
    pub units: i64,
    /// Those orders' totals, one entry per currency.
    pub revenue: Vec<MoneyView>,
}

/// Start a deal in the stream (host only): a flash sale of one of the host's SKUs that
/// runs from now for `duration_s` (10–300). The room must be live (409
/// `live_room_not_live`, ended 409 `live_room_ended`) and run no other deal (409
/// `live_deal_running`); another shop's SKU is 422 `product_not_in_shop`; the price,
/// quantity and limit are checked as `POST /flash-sales` checks them.
#[utoipa::path(post, path = "/live/rooms/{id}/deals", tag = "live", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = StartDealRequest,
    responses((status = 201, description = "The deal, running", body = DealBody)))]
async fn start_deal(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StartDealRequest>,
) -> Result<(StatusCode, Json<DealBody>), Problem> {
    let input = DealInput {
        sku_id: body.sku_id,
        price: (body.price.amount, body.price.currency),
        quantity: body.quantity,
        duration_s: body.duration_s,
        per_user_limit: body.per_user_limit,
    };
    let deal = live.start_deal(&current.user, &id, input).await?;
    Ok((StatusCode::CREATED, Json(DealBody::from(&deal))))
}

/// The orders, units and revenue of the room's deals (host only), live while it runs.
#[utoipa::path(get, path = "/live/rooms/{id}/sales", tag = "live", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = SalesBody)))]
async fn room_sales(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<SalesBody>, Problem> {
    let sales = live.room_sales(&current.user, &id).await?;
    Ok(Json(SalesBody {
        room_id: id,
        deals: sales.deals,
        orders: sales.orders,
        units: sales.units,
        revenue: sales.revenue.iter().map(|(currency, amount)| MoneyView::new(*amount, currency)).collect(),
    }))
}
