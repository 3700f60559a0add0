//! The OAuth 2.0 and OpenID Connect endpoints (API.md, "Mini-apps"): `/oauth/*` under
//! `/api/v1`, and the discovery document at the server's root.
//!
//! `/oauth/token` and `/oauth/revoke` speak RFC 6749 §5.2 (`{"error", "error_description"}`
//! as `application/json`), because that is what every OAuth client library parses; the
//! rest answer problems like the rest of the API. These routes are not in the OpenAPI
//! document: their bodies are form-encoded and their answers redirects, which standard
//! OAuth clients, not generated ones, speak; the discovery document describes them.

use crate::bearer::{BearerRejection, UserBearer};
use crate::oauth::{AuthorizationParams, Checked, OAuthErrorCode};
use crate::service::{MiniApp, MiniAppError, MiniApps};
use crate::tokens::IssuedTokens;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use plaza_accounts::CurrentUser;
use plaza_http::{ApiJson, Problem};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;

/// The longest form body the token and revocation endpoints read.
pub const FORM_BODY_MAX_BYTES: usize = 16 * 1024;

/// `/oauth/*`, relative to `/api/v1` (not in the OpenAPI document; see the module doc).
pub(crate) fn oauth_routes() -> Router<MiniApps> {
    Router::new()
        .route("/oauth/authorize", get(authorize_page).post(answer_authorization))
        .route("/oauth/consent", get(consent))
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/jwks", get(jwks))
        .route("/oauth/userinfo", get(userinfo).post(userinfo))
}

/// `GET /.well-known/openid-configuration`, to be served at the server's root.
pub fn discovery_router(miniapps: MiniApps) -> Router {
    Router::new().route("/.well-known/openid-configuration", get(discovery)).with_state(miniapps)
}

/// The consent screen's answer: the request's parameters and the user's choice.
#[derive(Debug, Deserialize)]
pub struct AuthorizeAnswerBody {
    #[serde(flatten)]
    pub params: AuthorizationParams,
    pub approve: bool,
}

#[derive(Debug, Serialize)]
pub struct RedirectView {
    pub redirect_to: String,
}

/// What the consent screen shows: who asks for what, and whether it was granted before
/// (then the screen answers at once); or, for a request refused, where to send the user.
#[derive(Debug, Serialize)]
pub struct ConsentView {
    pub app: Option<ConsentAppView>,
    pub scopes: Vec<String>,
    pub already_granted: bool,
    pub redirect_to: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ConsentAppView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub home_url: String,
}

/// Parses a query string into the request's parameters; a parameter given twice is
/// refused (RFC 6749 §3.1), as an unredirectable request.
fn params_from_query(query: Option<&str>) -> Result<AuthorizationParams, MiniAppError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|error| MiniAppError::UnredirectableRequest { reason: format!("the query: {error}") })
}

/// A valid request goes on to the Plaza client's consent screen (`/consent` with the
/// same parameters); a refused one back to the app; an untrustworthy one nowhere.
async fn authorize_page(State(miniapps): State<MiniApps>, RawQuery(query): RawQuery) -> Result<Response, Problem> {
    let params = params_from_query(query.as_deref())?;
    match miniapps.check_authorization(&params).await? {
        Checked::Refused { redirect_to } => Ok(found(&redirect_to)),
        Checked::Valid(_) => Ok(found(&format!("{}/consent?{}", miniapps.issuer(), query.unwrap_or_default()))),
    }
}

/// A 302 to `location` (RFC 6749 §4.1.2's usual answer; axum's `Redirect` has no 302).
fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => Problem::internal(&"a redirect that is no header value").into_response(),
    }
}

async fn consent(
    State(miniapps): State<MiniApps>,
    current: CurrentUser,
    RawQuery(query): RawQuery,
) -> Result<Json<ConsentView>, Problem> {
    let params = params_from_query(query.as_deref())?;
    let view = match miniapps.check_authorization(&params).await? {
        Checked::Refused { redirect_to } => {
            ConsentView { app: None, scopes: Vec::new(), already_granted: false, redirect_to: Some(redirect_to) }
        }
        Checked::Valid(request) => {
            let already_granted = miniapps.already_granted(&current.user.id, &request).await?;
            let app = request.app;
            ConsentView {
                app: Some(ConsentAppView {
                    id: app.id,
                    name: app.name,
                    description: app.description,
                    home_url: app.home_url,
                }),
                scopes: request.scopes,
                already_granted,
                redirect_to: None,
            }
        }
    };
    Ok(Json(view))
}

async fn answer_authorization(
    State(miniapps): State<MiniApps>,
    current: CurrentUser,
    ApiJson(body): ApiJson<AuthorizeAnswerBody>,
) -> Result<Json<RedirectView>, Problem> {
    let redirect_to = match miniapps.check_authorization(&body.params).await? {
        Checked::Refused { redirect_to } => redirect_to,
        Checked::Valid(request) => miniapps.answer_authorization(&current.user.id, &request, body.approve).await?,
    };
    Ok(Json(RedirectView { redirect_to }))
}

/// The token endpoint's success (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
#[derive(Debug, Serialize)]
struct TokenView {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl From<IssuedTokens> for TokenView {
    fn from(tokens: IssuedTokens) -> Self {
        Self {
            access_token: tokens.access_token,
            token_type: "Bearer",
            expires_in: tokens.expires_in,
            refresh_token: tokens.refresh_token,
            scope: tokens.scopes.join(" "),
            id_token: tokens.id_token,
        }
    }
}

async fn token(State(miniapps): State<MiniApps>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    match token_grant(&miniapps, &headers, &body).await {
        Ok(tokens) => no_store(Json(TokenView::from(tokens)).into_response()),
        Err(error) => oauth_error_response(error),
    }
}

async fn token_grant(miniapps: &MiniApps, headers: &HeaderMap, body: &[u8]) -> Result<IssuedTokens, MiniAppError> {
    let form = parse_form(body)?;
    let app = authenticate_client(miniapps, headers, &form).await?;
    let field = |name: &str| form.get(name).map(String::as_str);
    let required =
        |name: &str| field(name).ok_or_else(|| oauth(OAuthErrorCode::InvalidRequest, &format!("{name} is required")));
    match required("grant_type")? {
        "authorization_code" => {
            miniapps.exchange_code(&app, required("code")?, field("redirect_uri"), field("code_verifier")).await
        }
        "refresh_token" => miniapps.refresh(&app, required("refresh_token")?, field("scope")).await,
        "client_credentials" => miniapps.client_credentials(&app, field("scope")).await,
        _ => Err(oauth(
            OAuthErrorCode::UnsupportedGrantType,
            "grant_type is one of authorization_code, refresh_token, client_credentials",
        )),
    }
}

async fn revoke(State(miniapps): State<MiniApps>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let result = async {
        let form = parse_form(&body)?;
        let app = authenticate_client(&miniapps, &headers, &form).await?;
        let token = form.get("token").ok_or_else(|| oauth(OAuthErrorCode::InvalidRequest, "token is required"))?;
        miniapps.revoke_token(&app, token).await
    };
    match result.await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(error) => oauth_error_response(error),
    }
}

async fn jwks(State(miniapps): State<MiniApps>) -> Result<Response, Problem> {
    let keys = miniapps.published_keys().await?;
    let mut response = Json(json!({ "keys": keys })).into_response();
    // Short, so that a rotated-in key is seen soon; old keys stay published for days.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Ok(response)
}

/// OpenID Connect Core §5.3: `sub` and `union_id` with `openid`, `name` and `picture`
/// with `profile` too.
async fn userinfo(
    State(miniapps): State<MiniApps>,
    UserBearer(token): UserBearer,
) -> Result<Response, BearerRejection> {
    token.require_scope("openid")?;
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), json!(token.sub));
    claims.insert("union_id".into(), json!(miniapps.union_id_for(&token.app, &token.user_id).await?));
    if token.require_scope("profile").is_ok() {
        let user = miniapps.accounts().user(&token.user_id).await.map_err(|error| match error {
            plaza_accounts::AccountsError::UserNotFound => MiniAppError::InvalidToken { reason: "the user is gone" },
            other => MiniAppError::Invariant(format!("reading the user: {other}")),
        })?;
        let picture = user.avatar_url.map(|url| match url.starts_with('/') {
            true => format!("{}{url}", miniapps.issuer()),
            false => url,
        });
        claims.insert("name".into(), json!(user.display_name));
        // OpenID Connect Core §5.3.2: a claim without a value is left out, not null.
        if let Some(picture) = picture {
            claims.insert("picture".into(), json!(picture));
        }
    }
    Ok(no_store(Json(serde_json::Value::Object(claims)).into_response()))
}

async fn discovery(State(miniapps): State<MiniApps>) -> Response {
    let issuer = miniapps.issuer();
    let endpoint = |path: &str| format!("{issuer}/api/v1/oauth/{path}");
    let document = json!({
        "issuer": issuer,
        "authorization_endpoint": endpoint("authorize"),
        "token_endpoint": endpoint("token"),
        "userinfo_endpoint": endpoint("userinfo"),
        "jwks_uri": endpoint("jwks"),
        "revocation_endpoint": endpoint("revoke"),
        "scopes_supported": crate::model::SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": [crate::keys::ALGORITHM],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "union_id", "name", "picture"],
        "authorization_response_iss_parameter_supported": true,
    });
    let mut response = Json(document).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

fn oauth(error: OAuthErrorCode, description: &str) -> MiniAppError {
    MiniAppError::OAuth { error, description: description.to_string() }
}

/// The form body as a map; a parameter sent twice is `invalid_request` (RFC 6749 §3.2).
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, MiniAppError> {
    if body.len() > FORM_BODY_MAX_BYTES {
        return Err(oauth(OAuthErrorCode::InvalidRequest, "the body is too large"));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| oauth(OAuthErrorCode::InvalidRequest, "the body is not application/x-www-form-urlencoded"))?;
    let mut form = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if form.insert(name.clone(), value).is_some() {
            return Err(oauth(OAuthErrorCode::InvalidRequest, &format!("{name} is given more than once")));
        }
    }
    Ok(form)
}

/// `client_secret_basic` or `client_secret_post` (RFC 6749 §2.3.1), never both.
async fn authenticate_client(
    miniapps: &MiniApps,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<MiniApp, MiniAppError> {
    let invalid_client = || oauth(OAuthErrorCode::InvalidClient, "client authentication failed");
    let basic = plaza_http::authorization_credentials(headers, "basic");
    let (client_id, client_secret) = match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(oauth(OAuthErrorCode::InvalidRequest, "use one client authentication method, not two"))
        }
        (Some(encoded), None) => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| invalid_client())?;
            let decoded = String::from_utf8(decoded).map_err(|_| invalid_client())?;
            let (id, secret) = decoded.split_once(':').ok_or_else(invalid_client)?;
            let (id, secret) = (form_decode(id), form_decode(secret));
            if form.get("client_id").is_some_and(|body_id| *body_id != id) {
                return Err(invalid_client());
            }
            (id, secret)
        }
        (None, Some(secret)) => (form.get("client_id").cloned().ok_or_else(invalid_client)?, secret.clone()),
        (None, None) => return Err(invalid_client()),
    };
    miniapps.authenticate_client(&client_id, &client_secret).await?.ok_or_else(invalid_client)
}

/// RFC 6749 §2.3.1 form-encodes the id and secret before Basic; ours are plain, but a
/// client may encode them anyway.
fn form_decode(text: &str) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={text}"))
        .ok()
        .filter(|pairs| pairs.len() == 1)
        .and_then(|mut pairs| pairs.pop())
        .map_or_else(|| text.to_string(), |(_, value)| value)
}

/// RFC 6749 §5.2 for OAuth's own refusals; anything else (the database) is a problem.
fn oauth_error_response(error: MiniAppError) -> Response {
    match error {
        MiniAppError::OAuth { error, description } => {
            let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            let body = json!({ "error": error.as_str(), "error_description": description });
            let mut response = no_store((status, Json(body)).into_response());
            if error == OAuthErrorCode::InvalidClient {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"plaza\""));
            }
            response
        }
        other => Problem::from(other).into_response(),
    }
}

/// RFC 6749 §5.1: token answers are never cached.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_decoded_basic_credential_is_decoded_and_a_plain_one_kept() {
        assert_eq!(form_decode("app_12"), "app_12");
        assert_eq!(form_decode("a%3Ab+c"), "a:b c");
    }

    #[test]
    fn a_parameter_sent_twice_is_refused() {
        assert!(parse_form(b"grant_type=a&grant_type=b").is_err());
        assert_eq!(parse_form(b"code=x&grant_type=y").map(|form| form.len()).ok(), Some(2));
    }
}
