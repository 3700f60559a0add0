//! The authorization endpoint of the OAuth 2.0 server (RFC 6749 §4.1 with RFC 7636 PKCE,
//! following the RFC 9700 security BCP) and the grants users give apps.
//!
//! Only the authorization code flow exists, and only with an `S256` code challenge
//! (`plain` and a missing method are refused: RFC 9700 §2.1.1). A request is checked in
//! two stages, as RFC 6749 §4.1.2.1 orders: first the client and the redirect URI, which
//! must match a registered one byte for byte; a failure there is shown to the user and
//! **never redirected**, since the URI cannot be trusted. Every later failure is sent back
//! to that (now trusted) redirect URI with `error`, `state` and `iss` (RFC 9207).
//!
//! A user's approval is remembered as a grant (user, app, scopes), so the consent screen
//! can answer at once when the scopes asked for were granted before, and Me → Connected
//! apps can list and revoke it. Codes are 32 random bytes, stored as SHA-256 digests,
//! valid [`CODE_LIFETIME`] and once (see `tokens.rs` for the exchange).

use crate::model::SCOPES;
use crate::service::{MiniApp, MiniAppError, MiniApps};
use plaza_kernel::id::to_hex;
use plaza_kernel::{Page, PageLimit, Timestamp};
use plaza_store::Row;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long an authorization code may be exchanged (RFC 6749 §4.1.2: at most 10 minutes).
pub const CODE_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// The longest `state` and `nonce` an app may send; they are echoed, so they are bounded.
pub const STATE_MAX_CHARS: usize = 512;

/// The error codes of RFC 6749 §4.1.2.1 and §5.2 that Plaza answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
        }
    }

    /// The HTTP status RFC 6749 §5.2 gives it at the token endpoint: 401 for a client
    /// that failed to authenticate, 400 for everything else.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidClient => 401,
            Self::InvalidRequest
            | Self::InvalidGrant
            | Self::UnauthorizedClient
            | Self::UnsupportedGrantType
            | Self::UnsupportedResponseType
            | Self::InvalidScope
            | Self::AccessDenied => 400,
        }
    }
}

/// The parameters of an authorization request, as the app sent them (RFC 6749 §4.1.1,
/// RFC 7636 §4.3, OpenID Connect Core §3.1.2.1): unchecked text, read straight from the
/// query or the consent screen's JSON, which is why it alone here is `Deserialize`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AuthorizationParams {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub nonce: Option<String>,
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub app: MiniApp,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub code_challenge: String,
    pub nonce: Option<String>,
}

/// What a checked request comes to.
#[derive(Debug, Clone)]
pub enum Checked {
    Valid(Box<AuthorizationRequest>),
    /// Refused, to be told to the app at its (trusted) redirect URI.
    Refused {
        redirect_to: String,
    },
}

/// An app a user let in, as Me → Connected apps lists it.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub app: MiniApp,
    pub scopes: Vec<String>,
    pub granted_at: Timestamp,
    pub updated_at: Timestamp,
}

impl MiniApps {
    /// Checks an authorization request in RFC 6749's order. `Err` is a request that must
    /// not be redirected (or a failure of the database); `Refused` one that is sent back.
    pub async fn check_authorization(&self, params: &AuthorizationParams) -> Result<Checked, MiniAppError> {
        let unredirectable = |reason: &str| MiniAppError::UnredirectableRequest { reason: reason.to_string() };
        let client_id = params.client_id.as_deref().ok_or_else(|| unredirectable("client_id is missing"))?;
        let app = self.app_by_client_id(client_id).await?.ok_or_else(|| unredirectable("no app has this client_id"))?;
        let redirect_uri = params.redirect_uri.as_deref().ok_or_else(|| unredirectable("redirect_uri is missing"))?;
        // Byte for byte: no normalising of case, slashes, ports or percent-encoding.
        if !app.redirect_uris.iter().any(|registered| registered == redirect_uri) {
            return Err(unredirectable("redirect_uri is not one the app registered (they must match exactly)"));
        }
        let state = params.state.clone();
        let refuse = |error: OAuthErrorCode, description: &str| Checked::Refused {
            redirect_to: self.error_redirect(redirect_uri, error, description, state.as_deref()),
        };
        if state.as_ref().is_some_and(|state| state.chars().count() > STATE_MAX_CHARS) {
            // Not echoed: a state too long to be sent back is dropped from the answer.
            let redirect_to =
                self.error_redirect(redirect_uri, OAuthErrorCode::InvalidRequest, "state is too long", None);
            return Ok(Checked::Refused { redirect_to });
        }
        if params.response_type.as_deref() != Some("code") {
            return Ok(refuse(OAuthErrorCode::UnsupportedResponseType, "only response_type=code is supported"));
        }
        let Some(code_challenge) = params.code_challenge.as_deref() else {
            return Ok(refuse(OAuthErrorCode::InvalidRequest, "code_challenge is required (PKCE, S256)"));
        };
        // RFC 7636 §4.3: a missing method means `plain`, which is refused as well.
        if params.code_challenge_method.as_deref() != Some("S256") {
            return Ok(refuse(OAuthErrorCode::InvalidRequest, "code_challenge_method must be S256"));
        }
        if !is_pkce_value(code_challenge) {
            return Ok(refuse(OAuthErrorCode::InvalidRequest, "code_challenge is not a base64url S256 challenge"));
        }
        let scopes = match parse_scopes(params.scope.as_deref().unwrap_or(""), &app.scopes) {
            Ok(scopes) => scopes,
            Err(description) => return Ok(refuse(OAuthErrorCode::InvalidScope, &description)),
        };
        if params.nonce.as_ref().is_some_and(|nonce| nonce.chars().count() > STATE_MAX_CHARS) {
            return Ok(refuse(OAuthErrorCode::InvalidRequest, "nonce is too long"));
        }
        Ok(Checked::Valid(Box::new(AuthorizationRequest {
            app,
            redirect_uri: redirect_uri.to_string(),
            scopes,
            state,
            code_challenge: code_challenge.to_string(),
            nonce: params.nonce.clone(),
        })))
    }

    /// Whether `user_id` already granted the app every scope the request asks for.
    pub async fn already_granted(&self, user_id: &str, request: &AuthorizationRequest) -> Result<bool, MiniAppError> {
        let granted = self.granted_scopes(user_id, &request.app.id).await?;
        Ok(request.scopes.iter().all(|scope| granted.contains(scope)))
    }

    /// The user's answer: on approval the grant is remembered (widened to these scopes)
    /// and a code is issued; either way, where to send the browser.
    pub async fn answer_authorization(
        &self,
        user_id: &str,
        request: &AuthorizationRequest,
        approve: bool,
    ) -> Result<String, MiniAppError> {
        if !approve {
            let description = "the user denied the request";
            return Ok(self.error_redirect(
                &request.redirect_uri,
                OAuthErrorCode::AccessDenied,
                description,
                request.state.as_deref(),
            ));
        }
        let mut scopes = self.granted_scopes(user_id, &request.app.id).await?;
        for scope in &request.scopes {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
        // Computed before the transaction: on SQLite it would hold the one write connection.
        let sub = self.inner().keys.subject(&request.app.id, user_id).await?;
        let code = format!("pc_{}", to_hex(&plaza_kernel::random_token_bytes::<32>()));
        let now = Timestamp::now();
        let mut transaction = self.inner().store.begin().await?;
        sqlx::query(
            "INSERT INTO miniapp_grants (user_id, app_id, sub, scopes, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (user_id, app_id) DO UPDATE SET scopes = $4, updated_at = $5",
        )
        .bind(user_id)
        .bind(&request.app.id)
        .bind(&sub)
        .bind(scopes_json(&scopes)?)
        .bind(now.unix_millis())
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO miniapp_codes (code_hash, app_id, user_id, redirect_uri, scopes, code_challenge, nonce,
                 auth_time, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
        )
        .bind(digest(&code))
        .bind(&request.app.id)
        .bind(user_id)
        .bind(&request.redirect_uri)
        .bind(scopes_json(&request.scopes)?)
        .bind(&request.code_challenge)
        .bind(&request.nonce)
        .bind(now.unix_millis())
        .bind(now.plus(CODE_LIFETIME).unix_millis())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        let mut pairs = vec![("code", code.as_str())];
        if let Some(state) = request.state.as_deref() {
            pairs.push(("state", state));
        }
        pairs.push(("iss", self.issuer()));
        Ok(append_query(&request.redirect_uri, &pairs))
    }

    /// The apps `user_id` let in, by app id, a page at a time.
    pub async fn authorizations(
        &self,
        user_id: &str,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<Authorization>, MiniAppError> {
        let after = match cursor {
            None | Some("") => String::new(),
            Some(opaque) => plaza_kernel::Cursor::parse_position(opaque).ok_or_else(|| MiniAppError::InvalidField {
                field: "cursor".into(),
                reason: "not a cursor this server issued".into(),
            })?,
        };
        let rows = sqlx::query(
            "SELECT app_id, scopes, created_at, updated_at FROM miniapp_grants
             WHERE user_id = $1 AND app_id > $2 ORDER BY app_id LIMIT $3",
        )
        .bind(user_id)
        .bind(&after)
        .bind(limit.probe())
        .fetch_all(self.inner().store.read())
        .await?;
        let mut authorizations = Vec::with_capacity(rows.len());
        for row in &rows {
            let app_id: String = row.try_get("app_id")?;
            // An app is never deleted today; should one be, its grant simply drops out.
            let Ok(app) = self.app(&app_id).await else { continue };
            authorizations.push(Authorization {
                app,
                scopes: scopes_from_json(&row.try_get::<String, _>("scopes")?)?,
                granted_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
                updated_at: Timestamp::from_unix_millis(row.try_get("updated_at")?),
            });
        }
        Ok(Page::from_probe(authorizations, limit, |authorization| authorization.app.id.clone()))
    }

    /// Revokes the user's grant to the app and, in the same transaction, every token and
    /// unused code of that app for that user. Tokens are checked in the database on every
    /// use, so they stop working at once on every node. Revoking nothing is no error.
    pub async fn revoke_authorization(&self, user_id: &str, app_id: &str) -> Result<(), MiniAppError> {
        let now = Timestamp::now().unix_millis();
        let mut transaction = self.inner().store.begin().await?;
        sqlx::query("DELETE FROM miniapp_grants WHERE user_id = $1 AND app_id = $2")
            .bind(user_id)
            .bind(app_id)
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "UPDATE miniapp_tokens SET revoked_at = $3 WHERE user_id = $1 AND app_id = $2 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(app_id)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        sqlx::query("DELETE FROM miniapp_codes WHERE user_id = $1 AND app_id = $2 AND used_at IS NULL")
            .bind(user_id)
            .bind(app_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The user whose pairwise `sub` for the app this is, if they granted it anything
    /// (for pay orders, which name their payer by `sub`).
    pub async fn user_for_subject(&self, app_id: &str, sub: &str) -> Result<Option<String>, MiniAppError> {
        Ok(sqlx::query_scalar("SELECT user_id FROM miniapp_grants WHERE app_id = $1 AND sub = $2")
            .bind(app_id)
            .bind(sub)
            .fetch_optional(self.inner().store.read())
            .await?)
    }

    /// The user's pairwise `sub` for the app.
    pub async fn subject_for(&self, app_id: &str, user_id: &str) -> Result<String, MiniAppError> {
        self.inner().keys.subject(app_id, user_id).await
    }

    /// The keys the JWKS publishes.
    pub async fn published_keys(&self) -> Result<Vec<crate::keys::PublicJwk>, MiniAppError> {
        self.inner().keys.published().await
    }

    /// The user's `union_id` for the app's developer (the same across their apps).
    pub async fn union_id_for(&self, app: &MiniApp, user_id: &str) -> Result<String, MiniAppError> {
        self.inner().keys.union_id(&app.developer_id, user_id).await
    }

    pub(crate) async fn granted_scopes(&self, user_id: &str, app_id: &str) -> Result<Vec<String>, MiniAppError> {
        let scopes: Option<String> =
            sqlx::query_scalar("SELECT scopes FROM miniapp_grants WHERE user_id = $1 AND app_id = $2")
                .bind(user_id)
                .bind(app_id)
                .fetch_optional(self.inner().store.write())
                .await?;
        scopes.map_or(Ok(Vec::new()), |scopes| scopes_from_json(&scopes))
    }

    fn error_redirect(
        &self,
        redirect_uri: &str,
        error: OAuthErrorCode,
        description: &str,
        state: Option<&str>,
    ) -> String {
        let mut pairs = vec![("error", error.as_str()), ("error_description", description)];
        if let Some(state) = state {
            pairs.push(("state", state));
        }
        pairs.push(("iss", self.issuer()));
        append_query(redirect_uri, &pairs)
    }
}

/// `uri` with `pairs` added to its query (form-encoded), keeping any query it has.
pub(crate) fn append_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let encoded = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let separator = match uri.contains('?') {
        true if uri.ends_with('?') || uri.ends_with('&') => "",
        true => "&",
        false => "?",
    };
    format!("{uri}{separator}{encoded}")
}

/// A space-separated scope list, each one the app registered, duplicates dropped; at
/// least one (RFC 6749 §3.3).
pub(crate) fn parse_scopes(scope: &str, allowed: &[String]) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in scope.split(' ').filter(|scope| !scope.is_empty()) {
        if !SCOPES.contains(&scope) {
            return Err(format!("{scope} is not a scope Plaza knows (openid, profile, payments)"));
        }
        if !allowed.iter().any(|allowed| allowed == scope) {
            return Err(format!("the app did not register the scope {scope}"));
        }
        if !scopes.iter().any(|known| known == scope) {
            scopes.push(scope.to_string());
        }
    }
    if scopes.is_empty() {
        return Err("scope is required: one or more of the app's scopes".into());
    }
    Ok(scopes)
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]` (a verifier, and an S256
/// challenge, which is 43 base64url characters).
pub(crate) fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Codes and tokens have 256 random bits, so one SHA-256 keeps them from a reader of the
/// database without slowing every request the way a password hash would.
pub(crate) fn digest(secret: &str) -> String {
    to_hex(&Sha256::digest(secret.as_bytes()))
}

pub(crate) fn scopes_json(scopes: &[String]) -> Result<String, MiniAppError> {
    serde_json::to_string(scopes).map_err(|error| MiniAppError::Invariant(format!("scopes as JSON: {error}")))
}

pub(crate) fn scopes_from_json(text: &str) -> Result<Vec<String>, MiniAppError> {
    serde_json::from_str(text).map_err(|error| MiniAppError::Invariant(format!("stored scopes: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_keeps_the_uris_own_query_and_encodes_what_it_adds() {
        assert_eq!(append_query("https://a.example/cb", &[("code", "x y")]), "https://a.example/cb?code=x+y");
        assert_eq!(append_query("https://a.example/cb?k=1", &[("state", "&")]), "https://a.example/cb?k=1&state=%26");
    }

    #[test]
    fn scopes_must_be_known_and_registered() {
        let allowed = vec!["openid".to_string(), "profile".to_string()];
        assert_eq!(parse_scopes("openid  profile openid", &allowed), Ok(vec!["openid".into(), "profile".into()]));
        assert!(parse_scopes("payments", &allowed).is_err());
        assert!(parse_scopes("email", &allowed).is_err());
        assert!(parse_scopes("", &allowed).is_err());
    }

    #[test]
    fn pkce_values_are_43_to_128_unreserved_characters() {
        assert!(is_pkce_value(&"a".repeat(43)));
        assert!(is_pkce_value(&"a-._~".repeat(20)));
        assert!(!is_pkce_value(&"a".repeat(42)));
        assert!(!is_pkce_value(&"a".repeat(129)));
        assert!(!is_pkce_value(&format!("{}+", "a".repeat(43))));
    }
}
