//! The mini-apps HTTP API (API.md, "Mini-apps"): wire types, thin handlers, and the one
//! mapping from [`MiniAppError`] to problems.

use crate::model::Registration;
use crate::oauth::{Authorization, OAuthErrorCode};
use crate::service::{MiniApp, MiniAppError, MiniApps, NewSecrets};
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::Json;
use plaza_accounts::{Accounts, CurrentUser};
use plaza_http::{page_limit, ApiJson, ApiQuery, ErrorCode, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The mini-apps routes, relative to `/api/v1`.
pub fn router(miniapps: MiniApps) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(register_app, directory))
        .routes(routes!(get_app))
        .routes(routes!(rotate_secret))
        .routes(routes!(my_authorizations))
        .routes(routes!(revoke_my_authorization))
        .merge(OpenApiRouter::from(crate::oauth_routes::oauth_routes()))
        .merge(crate::payment_routes::payment_routes())
        .with_state(miniapps)
}

impl FromRef<MiniApps> for Accounts {
    fn from_ref(miniapps: &MiniApps) -> Accounts {
        miniapps.accounts().clone()
    }
}

impl From<MiniAppError> for Problem {
    fn from(error: MiniAppError) -> Self {
        match error {
            MiniAppError::InvalidField { field, reason } => Problem::invalid_field(field, reason),
            MiniAppError::NotFound => Problem::new(ErrorCode::MiniappNotFound, "no such mini-app"),
            MiniAppError::NotDeveloper { action } => {
                Problem::new(ErrorCode::Forbidden, format!("only the app's developer may {action}"))
            }
            MiniAppError::TooManyApps { max } => {
                Problem::new(ErrorCode::MiniappLimitReached, format!("a developer may register at most {max} apps"))
            }
            // Only the consent screen's answer could meet one; the token endpoint answers
            // these as RFC 6749 JSON itself.
            MiniAppError::OAuth { error: OAuthErrorCode::InvalidClient, description } => {
                Problem::new(ErrorCode::Unauthenticated, description)
            }
            MiniAppError::OAuth { error, description } => {
                Problem::new(ErrorCode::InvalidAuthorizationRequest, format!("{}: {description}", error.as_str()))
            }
            MiniAppError::UnredirectableRequest { reason } => Problem::new(
                ErrorCode::InvalidAuthorizationRequest,
                format!("{reason}; the request is not sent back to the app"),
            ),
            MiniAppError::InvalidToken { reason } => {
                Problem::new(ErrorCode::InvalidToken, format!("the access token is not accepted: {reason}"))
            }
            MiniAppError::InsufficientScope { scope } => {
                Problem::new(ErrorCode::InsufficientScope, format!("the access token lacks the scope {scope}"))
            }
            MiniAppError::Database(error) if plaza_store::is_unavailable(&error) => {
                Problem::new(ErrorCode::Unavailable, "the database is not reachable; try again shortly")
            }
            MiniAppError::Database(error) => Problem::internal(&error),
            MiniAppError::Invariant(reason) => Problem::internal(&reason),
            MiniAppError::Chat(error) => error.into(),
            MiniAppError::Wallet(error) => error.into(),
            MiniAppError::PayOrderNotFound => Problem::new(ErrorCode::PayOrderNotFound, "no such pay order"),
            MiniAppError::PayOrderExpired => Problem::new(
                ErrorCode::PayOrderExpired,
                "the pay order expired before it was confirmed; the app must create a new one",
            ),
            MiniAppError::PayOrderNotPaid => {
                Problem::new(ErrorCode::PayOrderNotPaid, "only a paid pay order can be refunded")
            }
            MiniAppError::OutTradeNoTaken { out_trade_no } => Problem::new(
                ErrorCode::OutTradeNoTaken,
                format!("the app already has a pay order {out_trade_no:?} with other details"),
            )
            .with_field("out_trade_no"),
            MiniAppError::IdempotencyKeyReused => Problem::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was already used for another request; use a new key",
            ),
            MiniAppError::RefundExceedsPayment { refundable } => Problem::new(
                ErrorCode::RefundExceedsPayment,
                format!("at most {refundable} (minor units) more can be refunded"),
            )
            .with_field("amount"),
            MiniAppError::WebhookDeliveryNotFound => {
                Problem::new(ErrorCode::WebhookDeliveryNotFound, "no such webhook delivery for this app")
            }
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAppRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub home_url: String,
    pub redirect_uris: Vec<String>,
    pub webhook_url: Option<String>,
    pub scopes: Vec<String>,
}

/// `miniapp`: an app as anyone signed in sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MiniAppView {
    pub id: String,
    pub client_id: String,
    pub developer_id: String,
    pub name: String,
    pub description: String,
    pub home_url: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub created_at: String,
}

impl From<MiniApp> for MiniAppView {
    fn from(app: MiniApp) -> Self {
        Self {
            id: app.id,
            client_id: app.client_id,
            developer_id: app.developer_id,
            name: app.name,
            description: app.description,
            home_url: app.home_url,
            redirect_uris: app.redirect_uris,
            scopes: app.scopes,
            created_at: app.created_at.to_rfc3339(),
        }
    }
}

/// A registered app with its secrets, which are shown in this answer only.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredAppView {
    #[serde(flatten)]
    pub app: MiniAppView,
    pub webhook_url: Option<String>,
    pub client_secret: String,
    /// `whsec_` and base64 of 32 random bytes: the key the app verifies webhooks with.
    pub webhook_secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryView {
    pub items: Vec<MiniAppView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecretView {
    pub id: String,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DirectoryQuery {
    /// Part of an app's name (case-insensitive), at most 60 characters.
    pub q: Option<String>,
}

/// Register a mini-app; the answer carries its secrets, shown this once.
#[utoipa::path(post, path = "/miniapps", tag = "miniapps", security(("bearer" = [])),
    request_body = RegisterAppRequest, responses((status = 201, body = RegisteredAppView)))]
async fn register_app(
    State(miniapps): State<MiniApps>,
    current: CurrentUser,
    ApiJson(body): ApiJson<RegisterAppRequest>,
) -> Result<(StatusCode, Json<RegisteredAppView>), Problem> {
    let registration = Registration::parse(
        &body.name,
        &body.description,
        &body.home_url,
        &body.redirect_uris,
        body.webhook_url.as_deref(),
        &body.scopes,
    )?;
    let (app, NewSecrets { client_secret, webhook_secret }) = miniapps.register(&current.user, registration).await?;
    let webhook_url = app.webhook_url.clone();
    Ok((StatusCode::CREATED, Json(RegisteredAppView { app: app.into(), webhook_url, client_secret, webhook_secret })))
}

/// The directory of mini-apps, newest first (at most 50), or those whose name contains `q`.
#[utoipa::path(get, path = "/miniapps", tag = "miniapps", security(("bearer" = [])),
    params(DirectoryQuery), responses((status = 200, body = DirectoryView)))]
async fn directory(
    State(miniapps): State<MiniApps>,
    _current: CurrentUser,
    ApiQuery(query): ApiQuery<DirectoryQuery>,
) -> Result<Json<DirectoryView>, Problem> {
    let apps = miniapps.directory(query.q.as_deref()).await?;
    Ok(Json(DirectoryView { items: apps.into_iter().map(Into::into).collect() }))
}

/// One mini-app.
#[utoipa::path(get, path = "/miniapps/{id}", tag = "miniapps", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = MiniAppView)))]
async fn get_app(
    State(miniapps): State<MiniApps>,
    _current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<MiniAppView>, Problem> {
    Ok(Json(miniapps.app(&id).await?.into()))
}

/// A new client secret for your app (shown this once); the old one stops working at once.
#[utoipa::path(post, path = "/miniapps/{id}/secret", tag = "miniapps", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RotatedSecretView)))]
async fn rotate_secret(
    State(miniapps): State<MiniApps>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<RotatedSecretView>, Problem> {
    let (app, client_secret) = miniapps.rotate_client_secret(&current.user, &id).await?;
    Ok(Json(RotatedSecretView { id: app.id, client_id: app.client_id, client_secret }))
}

/// An app the caller let in, with the scopes they granted it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationView {
    pub app_id: String,
    pub app: MiniAppView,
    pub scopes: Vec<String>,
    /// When the app was first let in.
    pub granted_at: String,
    /// When the grant last changed (widened to more scopes).
    pub updated_at: String,
}

impl From<Authorization> for AuthorizationView {
    fn from(authorization: Authorization) -> Self {
        Self {
            app_id: authorization.app.id.clone(),
            app: authorization.app.into(),
            scopes: authorization.scopes,
            granted_at: authorization.granted_at.to_rfc3339(),
            updated_at: authorization.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationPage {
    pub items: Vec<AuthorizationView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuthorizationListParams {
    /// At most this many (1 to 200, default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// The apps you let in (Me → Connected apps), by app id, with the scopes you granted.
#[utoipa::path(get, path = "/me/authorizations", tag = "miniapps", security(("bearer" = [])),
    params(AuthorizationListParams), responses((status = 200, body = AuthorizationPage)))]
async fn my_authorizations(
    State(miniapps): State<MiniApps>,
    current: CurrentUser,
    ApiQuery(params): ApiQuery<AuthorizationListParams>,
) -> Result<Json<AuthorizationPage>, Problem> {
    let limit = page_limit(params.limit)?;
    let page = miniapps.authorizations(&current.user.id, limit, params.cursor.as_deref()).await?;
    Ok(Json(AuthorizationPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Revokes what you granted an app, and every token it holds for you, at once.
#[utoipa::path(delete, path = "/me/authorizations/{app_id}", tag = "miniapps", security(("bearer" = [])),
    params(("app_id" = String, Path)), responses((status = 204, description = "Revoked (or nothing was granted)")))]
async fn revoke_my_authorization(
    State(miniapps): State<MiniApps>,
    current: CurrentUser,
    Path(app_id): Path<String>,
) -> Result<StatusCode, Problem> {
    miniapps.revoke_authorization(&current.user.id, &app_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
