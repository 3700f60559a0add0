//! The pay-order and webhook-log endpoints (API.md, "Mini-apps"): wire types and thin
//! handlers over `payments.rs` and `webhooks.rs`.
//!
//! Two kinds of caller meet here: an app's server, by its `client_credentials` access
//! token (`pat_…`, [`AppBearer`]), and a Plaza user, by their session token
//! ([`CurrentUser`]). `GET /pay/orders/{id}` takes either, told apart by the token's
//! prefix; each sees only its own orders (404 otherwise, as for anything one may not see).

use crate::bearer::AppBearer;
use crate::payments::{NewPayOrder, PayOrder, PayRefund};
use crate::service::MiniApps;
use crate::webhooks::{Attempt, Delivery};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use plaza_accounts::CurrentUser;
use plaza_http::{idempotent_answer, page_limit, ApiJson, ApiQuery, Problem};
use plaza_wallet::routes::IdempotencyKeyHeader;
use plaza_wallet::Pin;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The pay-order routes and the delivery log, relative to `/api/v1`.
pub(crate) fn payment_routes() -> OpenApiRouter<MiniApps> {
    OpenApiRouter::new()
        .routes(routes!(create_pay_order))
        .routes(routes!(get_pay_order))
        .routes(routes!(confirm_pay_order))
        .routes(routes!(refund_pay_order))
        .routes(routes!(webhook_deliveries))
        .routes(routes!(redeliver))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayOrderRequest {
    /// The app's own order number: unique per app, 1 to 64 printable ASCII characters.
    pub out_trade_no: String,
    /// The paying user's pairwise `sub` for this app (from the id_token or userinfo).
    pub user_sub: String,
    /// Minor units (cents for USD), 1 to 10,000,000.
    pub amount: i64,
    pub currency: String,
    /// What the user pays for, shown on Plaza's pay sheet (1 to 128 characters).
    pub description: String,
}

/// `pay_order`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayOrderView {
    pub id: String,
    pub app_id: String,
    pub app_name: String,
    pub out_trade_no: String,
    pub user_sub: String,
    pub amount: i64,
    pub currency: String,
    pub description: String,
    /// `created` (waiting for the user), `paid` or `expired`.
    pub status: String,
    /// Plaza's fee, taken from the payment (0 until paid).
    pub fee: i64,
    /// How much has been refunded so far.
    pub refunded: i64,
    pub created_at: String,
    pub expires_at: String,
    pub paid_at: Option<String>,
}

impl From<PayOrder> for PayOrderView {
    fn from(order: PayOrder) -> Self {
        Self {
            id: order.id,
            app_id: order.app_id,
            app_name: order.app_name,
            out_trade_no: order.out_trade_no,
            user_sub: order.user_sub,
            amount: order.amount,
            currency: order.currency,
            description: order.description,
            status: order.status.as_str().to_string(),
            fee: order.fee,
            refunded: order.refunded,
            created_at: order.created_at.to_rfc3339(),
            expires_at: order.expires_at.to_rfc3339(),
            paid_at: order.paid_at.map(|at| at.to_rfc3339()),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmPayOrderRequest {
    /// The payment PIN, when one is set (six digits).
    pub pin: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Minor units; all refunds of an order together are at most what it paid.
    pub amount: i64,
}

/// A refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundView {
    pub id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub created_at: String,
}

impl From<PayRefund> for RefundView {
    fn from(refund: PayRefund) -> Self {
        Self {
            id: refund.id,
            order_id: refund.order_id,
            amount: refund.amount,
            currency: refund.currency,
            created_at: refund.created_at.to_rfc3339(),
        }
    }
}

/// A webhook delivery in the developer's log.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The `webhook-id` header, the same at every attempt.
    pub id: String,
    pub event_type: String,
    pub order_id: String,
    /// `pending` (retried until a 2xx), `delivered` or `failed` (given up).
    pub status: String,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    pub created_at: String,
    /// The body sent, exactly as signed.
    pub payload: String,
    /// The newest attempts first (at most 20).
    pub attempt_log: Vec<AttemptView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub number: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    /// The first 512 bytes of the receiver's answer.
    pub response_excerpt: Option<String>,
    pub duration_ms: i64,
    pub at: String,
}

impl From<Attempt> for AttemptView {
    fn from(attempt: Attempt) -> Self {
        Self {
            number: attempt.number,
            status_code: attempt.status_code,
            error: attempt.error,
            response_excerpt: attempt.response_excerpt,
            duration_ms: attempt.duration_ms,
            at: attempt.at.to_rfc3339(),
        }
    }
}

impl From<Delivery> for DeliveryView {
    fn from(delivery: Delivery) -> Self {
        Self {
            id: delivery.id,
            event_type: delivery.event_type,
            order_id: delivery.order_id,
            status: delivery.status.as_str().to_string(),
            attempts: delivery.attempts,
            last_status_code: delivery.last_status_code,
            last_error: delivery.last_error,
            next_attempt_at: delivery.next_attempt_at.map(|at| at.to_rfc3339()),
            delivered_at: delivery.delivered_at.map(|at| at.to_rfc3339()),
            created_at: delivery.created_at.to_rfc3339(),
            payload: delivery.payload,
            attempt_log: delivery.attempt_log.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DeliveryListParams {
    /// At most this many (1 to 100, default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// The app server creates a pay order for one of its users.
#[utoipa::path(post, path = "/pay/orders", tag = "miniapps", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first order")),
    request_body = CreatePayOrderRequest, responses((status = 201, body = PayOrderView)))]
async fn create_pay_order(
    State(miniapps): State<MiniApps>,
    AppBearer(token): AppBearer,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(body): ApiJson<CreatePayOrderRequest>,
) -> Result<Response, Problem> {
    let order = NewPayOrder {
        out_trade_no: body.out_trade_no,
        user_sub: body.user_sub,
        amount: body.amount,
        currency: body.currency,
        description: body.description,
    };
    let (order, replayed) = miniapps.create_pay_order(&token, order, key.as_ref().map(|key| key.as_str())).await?;
    Ok(idempotent_answer(StatusCode::CREATED, PayOrderView::from(order), replayed))
}

/// A pay order, to the app that made it or to the user asked to pay it.
#[utoipa::path(get, path = "/pay/orders/{id}", tag = "miniapps", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = PayOrderView)))]
async fn get_pay_order(
    State(miniapps): State<MiniApps>,
    Path(id): Path<String>,
    mut parts: Parts,
) -> Result<Json<PayOrderView>, Response> {
    let order = match is_app_token(&parts.headers) {
        true => {
            let AppBearer(token) =
                AppBearer::from_request_parts(&mut parts, &miniapps).await.map_err(IntoResponse::into_response)?;
            miniapps.pay_order_for_app(&token.app, &id).await
        }
        false => {
            let current =
                CurrentUser::from_request_parts(&mut parts, &miniapps).await.map_err(IntoResponse::into_response)?;
            miniapps.pay_order_for_user(&current.user, &id).await
        }
    };
    order.map(|order| Json(order.into())).map_err(|error| Problem::from(error).into_response())
}

/// The user confirms a pay order in Plaza (with the PIN when one is set): the developer is
/// paid at once, less Plaza's fee, and the app gets `payment.succeeded`.
#[utoipa::path(post, path = "/pay/orders/{id}/confirm", tag = "miniapps", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ConfirmPayOrderRequest,
    responses((status = 200, body = PayOrderView)))]
async fn confirm_pay_order(
    State(miniapps): State<MiniApps>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ConfirmPayOrderRequest>,
) -> Result<Json<PayOrderView>, Problem> {
    let pin = Pin::parse_optional(body.pin.as_deref()).map_err(|reason| Problem::invalid_field("pin", reason))?;
    let order = miniapps.confirm_pay_order(&current.user, &id, pin.as_ref()).await?;
    Ok(Json(order.into()))
}

/// The app server refunds part or all of a paid order.
#[utoipa::path(post, path = "/pay/orders/{id}/refunds", tag = "miniapps", security(("bearer" = [])),
    params(("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first refund")),
    request_body = RefundRequest, responses((status = 201, body = RefundView)))]
async fn refund_pay_order(
    State(miniapps): State<MiniApps>,
    AppBearer(token): AppBearer,
    Path(id): Path<String>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(body): ApiJson<RefundRequest>,
) -> Result<Response, Problem> {
    let (refund, replayed) =
        miniapps.refund_pay_order(&token, &id, body.amount, key.as_ref().map(|key| key.as_str())).await?;
    Ok(idempotent_answer(StatusCode::CREATED, RefundView::from(refund), replayed))
}

/// The app's webhook deliveries, newest first, with their attempts (its developer only).
#[utoipa::path(get, path = "/miniapps/{id}/webhook-deliveries", tag = "miniapps", security(("bearer" = [])),
    params(("id" = String, Path), DeliveryListParams), responses((status = 200, body = DeliveryPage)))]
async fn webhook_deliveries(
    State(miniapps): State<MiniApps>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<DeliveryListParams>,
) -> Result<Json<DeliveryPage>, Problem> {
    let limit = page_limit(params.limit)?;
    let (deliveries, next_cursor) =
        miniapps.webhook_deliveries(&current.user, &id, i64::from(limit.get()), params.cursor.as_deref()).await?;
    Ok(Json(DeliveryPage { items: deliveries.into_iter().map(Into::into).collect(), next_cursor }))
}

/// Sends a delivery again now, with the same `webhook-id` (its developer only).
#[utoipa::path(post, path = "/miniapps/{id}/webhook-deliveries/{delivery_id}/redeliver", tag = "miniapps",
    security(("bearer" = [])), params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 202, body = DeliveryView)))]
async fn redeliver(
    State(miniapps): State<MiniApps>,
    current: CurrentUser,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<DeliveryView>), Problem> {
    let delivery = miniapps.redeliver(&current.user, &id, &delivery_id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}

/// App access tokens are `pat_…`; Plaza's session tokens never are.
fn is_app_token(headers: &HeaderMap) -> bool {
    plaza_http::authorization_credentials(headers, "bearer").is_some_and(|token| token.starts_with("pat_"))
}
