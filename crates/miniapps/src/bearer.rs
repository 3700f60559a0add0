//! Extractors for the access tokens the OAuth server issues, for any crate's routes:
//! [`AppBearer`] for an app server's `client_credentials` token (pay orders, refunds) and
//! [`UserBearer`] for a user's token (userinfo). Both check the token in the database on
//! every request, so a revocation counts at once on every node, and both answer a
//! missing or bad token with a 401 problem carrying `WWW-Authenticate: Bearer
//! error="invalid_token"` (RFC 6750 §3). A scope check is the handler's, with
//! [`crate::UserToken::require_scope`], whose failure becomes a 403 with
//! `error="insufficient_scope"` through [`BearerRejection`].
//!
//! A route using them needs `MiniApps: FromRef<S>` for its state.

use crate::service::{MiniAppError, MiniApps};
use crate::tokens::{AppToken, UserToken};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use plaza_http::Problem;

/// The caller is an app's server, by its `client_credentials` access token.
#[derive(Debug, Clone)]
pub struct AppBearer(pub AppToken);

/// The caller is an app acting for a user, by the user's access token.
#[derive(Debug, Clone)]
pub struct UserBearer(pub UserToken);

/// A refused bearer token: the problem, with the `WWW-Authenticate` challenge RFC 6750
/// asks for on 401 and 403.
#[derive(Debug)]
pub struct BearerRejection(pub MiniAppError);

impl From<MiniAppError> for BearerRejection {
    fn from(error: MiniAppError) -> Self {
        Self(error)
    }
}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        let challenge = match &self.0 {
            MiniAppError::InvalidToken { .. } => Some("Bearer error=\"invalid_token\"".to_string()),
            MiniAppError::InsufficientScope { scope } => {
                Some(format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""))
            }
            _ => None,
        };
        let mut response = Problem::from(self.0).into_response();
        if let Some(value) = challenge.and_then(|challenge| HeaderValue::from_str(&challenge).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl<S> FromRequestParts<S> for AppBearer
where
    MiniApps: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = BearerRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        Ok(AppBearer(MiniApps::from_ref(state).authenticate_app_token(token).await?))
    }
}

impl<S> FromRequestParts<S> for UserBearer
where
    MiniApps: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = BearerRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        Ok(UserBearer(MiniApps::from_ref(state).authenticate_user_token(token).await?))
    }
}

fn bearer_token(parts: &Parts) -> Result<&str, BearerRejection> {
    let missing =
        || BearerRejection(MiniAppError::InvalidToken { reason: "send Authorization: Bearer <access token>" });
    plaza_http::authorization_credentials(&parts.headers, "bearer").ok_or_else(missing)
}
