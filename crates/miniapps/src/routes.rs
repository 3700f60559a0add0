//! The mini-apps HTTP API (API.md, "Mini-apps"): wire types, thin handlers, and the one
//! mapping from [`MiniAppError`] to problems.

use crate::model::Registration;
use crate::service::{MiniApp, MiniAppError, MiniApps, NewSecrets};
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::Json;
use plaza_accounts::{Accounts, CurrentUser};
use plaza_http::{ApiJson, ApiQuery, ErrorCode, Problem};
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
            MiniAppError::Database(error) if plaza_store::is_unavailable(&error) => {
                Problem::new(ErrorCode::Unavailable, "the database is not reachable; try again shortly")
            }
            MiniAppError::Database(error) => Problem::internal(&error),
            MiniAppError::Invariant(reason) => Problem::internal(&reason),
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
