//! The token endpoint's grants (RFC 6749 §4.1.3, §4.4, §6), revocation (RFC 7009), and
//! the checks other services use to authenticate a bearer token.
//!
//! Tokens are opaque: 32 random bytes in hex behind a prefix that says what they are
//! (`pat_` access, `prt_` refresh), stored only as SHA-256 digests. Every use is checked
//! against the database (no cache), so a revocation — of a token, a grant, or a family
//! after a replayed code or a reused refresh token — takes effect at once on every node.
//!
//! A *family* is the tokens one authorization code issued and all that their refreshes
//! issued after them. A refresh token works once: its use marks it used and issues a new
//! pair in the same family. A second use of the same refresh token means it was copied
//! (RFC 9700 §4.14.2), so the whole family is revoked; a second use of a code likewise
//! revokes what its first use issued (RFC 6749 §4.1.2).
//!
//! Each exchange is decided by a conditional update in one transaction (`used_at IS
//! NULL`), so of two concurrent uses exactly one wins and the other is the replay.
//! Everything that needs its own database round trip (the subject, the id_token's
//! signature) is done before that transaction, because on SQLite the transaction holds
//! the only write connection.

use crate::oauth::{digest, is_pkce_value, parse_scopes, scopes_from_json, scopes_json, OAuthErrorCode};
use crate::service::{MiniApp, MiniAppError, MiniApps};
use base64::Engine;
use plaza_kernel::id::to_hex;
use plaza_kernel::Timestamp;
use plaza_store::Row;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Access tokens (and id_tokens) live this long.
pub const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Refresh tokens live this long unless used (each use gives a new one).
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// Expired tokens are deleted this long after they expire.
pub const EXPIRED_TOKENS_KEPT_FOR: Duration = Duration::from_secs(86_400);
/// Codes are kept this long after they expire, so a late replay still finds (and revokes)
/// what the first use issued.
pub const EXPIRED_CODES_KEPT_FOR: Duration = REFRESH_TOKEN_LIFETIME;
/// How often every node deletes expired codes and tokens, and how many rows per statement.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
const PRUNE_BATCH_ROWS: i64 = 1000;

/// What the token endpoint hands out.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: Option<String>,
    pub scopes: Vec<String>,
    pub id_token: Option<String>,
}

/// A user's access token, checked: the app it was issued to, the user, their pairwise
/// `sub` for the app, and the scopes granted.
#[derive(Debug, Clone)]
pub struct UserToken {
    pub app: MiniApp,
    pub user_id: String,
    pub sub: String,
    pub scopes: Vec<String>,
}

/// An app server's access token (`client_credentials`), checked: no user.
#[derive(Debug, Clone)]
pub struct AppToken {
    pub app: MiniApp,
    pub scopes: Vec<String>,
}

impl UserToken {
    /// `Ok` when the token carries `scope`, else `InsufficientScope` (a 403).
    pub fn require_scope(&self, scope: &'static str) -> Result<(), MiniAppError> {
        require(&self.scopes, scope)
    }
}

impl AppToken {
    pub fn require_scope(&self, scope: &'static str) -> Result<(), MiniAppError> {
        require(&self.scopes, scope)
    }
}

fn require(scopes: &[String], scope: &'static str) -> Result<(), MiniAppError> {
    match scopes.iter().any(|granted| granted == scope) {
        true => Ok(()),
        false => Err(MiniAppError::InsufficientScope { scope }),
    }
}

/// The id_token's claims (OpenID Connect Core §2).
#[derive(Debug, Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

struct CodeRow {
    app_id: String,
    user_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    code_challenge: String,
    nonce: Option<String>,
    auth_time: i64,
    expires_at: i64,
    used: bool,
    family_id: Option<String>,
}

struct TokenRow {
    kind: String,
    app_id: String,
    user_id: Option<String>,
    family_id: String,
    scopes: Vec<String>,
    auth_time: Option<i64>,
    expires_at: i64,
    used: bool,
    revoked: bool,
}

fn oauth(error: OAuthErrorCode, description: &str) -> MiniAppError {
    MiniAppError::OAuth { error, description: description.to_string() }
}

impl MiniApps {
    /// `grant_type=authorization_code`: a code for tokens, once, with the PKCE verifier.
    pub async fn exchange_code(
        &self,
        app: &MiniApp,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
    ) -> Result<IssuedTokens, MiniAppError> {
        let invalid_grant = |description: &str| oauth(OAuthErrorCode::InvalidGrant, description);
        let code_hash = digest(code);
        let row = self.code_row(&code_hash).await?.ok_or_else(|| invalid_grant("unknown code"))?;
        if row.used {
            self.revoke_family(row.family_id.as_deref()).await?;
            return Err(invalid_grant("the code was used already; the tokens it gave are revoked"));
        }
        if row.app_id != app.id {
            return Err(invalid_grant("the code was issued to another client"));
        }
        if row.expires_at <= Timestamp::now().unix_millis() {
            return Err(invalid_grant("the code has expired"));
        }
        let redirect_uri =
            redirect_uri.ok_or_else(|| oauth(OAuthErrorCode::InvalidRequest, "redirect_uri is required"))?;
        if redirect_uri != row.redirect_uri {
            return Err(invalid_grant("redirect_uri differs from the authorization request's"));
        }
        let verifier =
            code_verifier.ok_or_else(|| oauth(OAuthErrorCode::InvalidRequest, "code_verifier is required (PKCE)"))?;
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if !is_pkce_value(verifier) || challenge != row.code_challenge {
            return Err(invalid_grant("code_verifier does not match the code_challenge"));
        }

        let family_id = plaza_kernel::new_id();
        let id_token = match row.scopes.iter().any(|scope| scope == "openid") {
            true => Some(self.id_token(app, &row.user_id, row.auth_time, row.nonce.as_deref()).await?),
            false => None,
        };
        let now = Timestamp::now();
        let mut transaction = self.inner().store.begin().await?;
        let consumed = sqlx::query(
            "UPDATE miniapp_codes SET used_at = $2, family_id = $3 WHERE code_hash = $1 AND used_at IS NULL",
        )
        .bind(&code_hash)
        .bind(now.unix_millis())
        .bind(&family_id)
        .execute(&mut *transaction)
        .await?;
        if consumed.rows_affected() != 1 {
            // Another exchange of this code won the race: this one is the replay.
            transaction.rollback().await?;
            let winner = self.code_row(&code_hash).await?.and_then(|row| row.family_id);
            self.revoke_family(winner.as_deref()).await?;
            return Err(invalid_grant("the code was used already; the tokens it gave are revoked"));
        }
        let (access_token, refresh_token) = new_pair();
        let user = Some(row.user_id.as_str());
        insert_token(
            &mut transaction,
            &access_token,
            "access",
            app,
            user,
            &family_id,
            &row.scopes,
            Some(row.auth_time),
        )
        .await?;
        insert_token(
            &mut transaction,
            &refresh_token,
            "refresh",
            app,
            user,
            &family_id,
            &row.scopes,
            Some(row.auth_time),
        )
        .await?;
        transaction.commit().await?;
        Ok(IssuedTokens {
            access_token,
            expires_in: ACCESS_TOKEN_LIFETIME.as_secs(),
            refresh_token: Some(refresh_token),
            scopes: row.scopes,
            id_token,
        })
    }

    /// `grant_type=refresh_token`: a new pair for a refresh token, which stops working;
    /// a second use of it revokes its whole family. `scope` may narrow, never widen.
    pub async fn refresh(
        &self,
        app: &MiniApp,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> Result<IssuedTokens, MiniAppError> {
        let invalid_grant = |description: &str| oauth(OAuthErrorCode::InvalidGrant, description);
        let token_hash = digest(refresh_token);
        let row = self.token_row(&token_hash).await?.filter(|row| row.kind == "refresh");
        let row = row.ok_or_else(|| invalid_grant("unknown refresh token"))?;
        if row.app_id != app.id {
            return Err(invalid_grant("the refresh token was issued to another client"));
        }
        if row.revoked {
            return Err(invalid_grant("the refresh token was revoked"));
        }
        if row.used {
            self.revoke_family(Some(&row.family_id)).await?;
            return Err(invalid_grant("the refresh token was used already; its family is revoked"));
        }
        if row.expires_at <= Timestamp::now().unix_millis() {
            return Err(invalid_grant("the refresh token has expired"));
        }
        let scopes = match scope {
            None => row.scopes.clone(),
            Some(scope) => parse_scopes(scope, &row.scopes)
                .map_err(|description| oauth(OAuthErrorCode::InvalidScope, &description))?,
        };
        let user_id =
            row.user_id.clone().ok_or_else(|| MiniAppError::Invariant("a refresh token without a user".into()))?;
        let auth_time = row.auth_time.unwrap_or_else(|| Timestamp::now().unix_millis() / 1000 * 1000);
        let id_token = match scopes.iter().any(|scope| scope == "openid") {
            true => Some(self.id_token(app, &user_id, auth_time, None).await?),
            false => None,
        };
        let mut transaction = self.inner().store.begin().await?;
        let rotated = sqlx::query(
            "UPDATE miniapp_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(&token_hash)
        .bind(Timestamp::now().unix_millis())
        .execute(&mut *transaction)
        .await?;
        if rotated.rows_affected() != 1 {
            transaction.rollback().await?;
            self.revoke_family(Some(&row.family_id)).await?;
            return Err(invalid_grant("the refresh token was used already; its family is revoked"));
        }
        let (access_token, new_refresh_token) = new_pair();
        let user = Some(user_id.as_str());
        insert_token(&mut transaction, &access_token, "access", app, user, &row.family_id, &scopes, Some(auth_time))
            .await?;
        // The new refresh token keeps the family's full scopes, so a narrowed refresh can
        // be widened back later up to what the user granted.
        insert_token(
            &mut transaction,
            &new_refresh_token,
            "refresh",
            app,
            user,
            &row.family_id,
            &row.scopes,
            Some(auth_time),
        )
        .await?;
        transaction.commit().await?;
        Ok(IssuedTokens {
            access_token,
            expires_in: ACCESS_TOKEN_LIFETIME.as_secs(),
            refresh_token: Some(new_refresh_token),
            scopes,
            id_token,
        })
    }

    /// `grant_type=client_credentials`: a token for the app's own server, with no user
    /// and no refresh token; its scopes are those asked for, or all the app registered.
    pub async fn client_credentials(&self, app: &MiniApp, scope: Option<&str>) -> Result<IssuedTokens, MiniAppError> {
        let scopes = match scope {
            None => app.scopes.clone(),
            Some(scope) => parse_scopes(scope, &app.scopes)
                .map_err(|description| oauth(OAuthErrorCode::InvalidScope, &description))?,
        };
        let (access_token, _) = new_pair();
        let mut transaction = self.inner().store.begin().await?;
        let family_id = plaza_kernel::new_id();
        insert_token(&mut transaction, &access_token, "access", app, None, &family_id, &scopes, None).await?;
        transaction.commit().await?;
        Ok(IssuedTokens {
            access_token,
            expires_in: ACCESS_TOKEN_LIFETIME.as_secs(),
            refresh_token: None,
            scopes,
            id_token: None,
        })
    }

    /// RFC 7009: revokes the app's own token (a refresh token with its whole family).
    /// Unknown tokens and other apps' tokens are answered the same and change nothing.
    pub async fn revoke_token(&self, app: &MiniApp, token: &str) -> Result<(), MiniAppError> {
        let token_hash = digest(token);
        let Some(row) = self.token_row(&token_hash).await? else { return Ok(()) };
        if row.app_id != app.id {
            return Ok(());
        }
        if row.kind == "refresh" {
            return self.revoke_family(Some(&row.family_id)).await;
        }
        sqlx::query("UPDATE miniapp_tokens SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(&token_hash)
            .bind(Timestamp::now().unix_millis())
            .execute(self.inner().store.write())
            .await?;
        Ok(())
    }

    /// A user's access token, checked in the database (so a revocation counts at once).
    pub async fn authenticate_user_token(&self, token: &str) -> Result<UserToken, MiniAppError> {
        let (row, app) = self.live_access_token(token).await?;
        let user_id = row.user_id.ok_or(MiniAppError::InvalidToken { reason: "an app token has no user" })?;
        let sub = self.inner().keys.subject(&app.id, &user_id).await?;
        Ok(UserToken { app, user_id, sub, scopes: row.scopes })
    }

    /// An app server's access token (`client_credentials`), checked in the database. This
    /// is what pay orders and other app-server endpoints authenticate with.
    pub async fn authenticate_app_token(&self, token: &str) -> Result<AppToken, MiniAppError> {
        let (row, app) = self.live_access_token(token).await?;
        if row.user_id.is_some() {
            return Err(MiniAppError::InvalidToken { reason: "a user's token is not an app server's" });
        }
        Ok(AppToken { app, scopes: row.scopes })
    }

    async fn live_access_token(&self, token: &str) -> Result<(TokenRow, MiniApp), MiniAppError> {
        let unknown = MiniAppError::InvalidToken { reason: "unknown, expired or revoked" };
        if !token.starts_with("pat_") || token.len() > 128 {
            return Err(unknown);
        }
        let row = self
            .token_row(&digest(token))
            .await?
            .ok_or(MiniAppError::InvalidToken { reason: "unknown, expired or revoked" })?;
        if row.kind != "access" || row.revoked || row.expires_at <= Timestamp::now().unix_millis() {
            return Err(unknown);
        }
        let app = self.app(&row.app_id).await?;
        Ok((row, app))
    }

    /// Deletes codes and tokens long expired, in bounded batches. Deleting what another
    /// node deleted already is harmless, so every node runs it.
    pub async fn prune_expired(&self) -> Result<u64, MiniAppError> {
        let now = Timestamp::now();
        let mut deleted = 0;
        for (statement, before) in [
            (
                "DELETE FROM miniapp_tokens WHERE token_hash IN
                     (SELECT token_hash FROM miniapp_tokens WHERE expires_at < $1 LIMIT $2)",
                now.minus(EXPIRED_TOKENS_KEPT_FOR),
            ),
            (
                "DELETE FROM miniapp_codes WHERE code_hash IN
                     (SELECT code_hash FROM miniapp_codes WHERE expires_at < $1 LIMIT $2)",
                now.minus(EXPIRED_CODES_KEPT_FOR),
            ),
        ] {
            loop {
                let batch = sqlx::query(statement)
                    .bind(before.unix_millis())
                    .bind(PRUNE_BATCH_ROWS)
                    .execute(self.inner().store.write())
                    .await?
                    .rows_affected();
                deleted += batch;
                if batch < PRUNE_BATCH_ROWS as u64 {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Runs [`Self::prune_expired`] every [`PRUNE_INTERVAL`], for ever.
    pub async fn prune_continually(self) {
        let mut every = tokio::time::interval(PRUNE_INTERVAL);
        loop {
            every.tick().await;
            if let Err(error) = self.prune_expired().await {
                tracing::warn!("could not delete expired OAuth codes and tokens: {error}");
            }
        }
    }

    async fn id_token(
        &self,
        app: &MiniApp,
        user_id: &str,
        auth_time_ms: i64,
        nonce: Option<&str>,
    ) -> Result<String, MiniAppError> {
        let sub = self.inner().keys.subject(&app.id, user_id).await?;
        let now = Timestamp::now().unix_millis() / 1000;
        let claims = IdTokenClaims {
            iss: self.issuer(),
            sub: &sub,
            aud: &app.client_id,
            exp: now + ACCESS_TOKEN_LIFETIME.as_secs() as i64,
            iat: now,
            auth_time: auth_time_ms / 1000,
            nonce,
        };
        self.inner().keys.sign(&claims).await
    }

    async fn revoke_family(&self, family_id: Option<&str>) -> Result<(), MiniAppError> {
        let Some(family_id) = family_id else { return Ok(()) };
        let revoked =
            sqlx::query("UPDATE miniapp_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
                .bind(family_id)
                .bind(Timestamp::now().unix_millis())
                .execute(self.inner().store.write())
                .await?;
        tracing::warn!(
            family_id,
            revoked = revoked.rows_affected(),
            "a code or refresh token was replayed; its family is revoked"
        );
        Ok(())
    }

    async fn code_row(&self, code_hash: &str) -> Result<Option<CodeRow>, MiniAppError> {
        let row = sqlx::query(
            "SELECT app_id, user_id, redirect_uri, scopes, code_challenge, nonce, auth_time, expires_at, used_at,
                    family_id
             FROM miniapp_codes WHERE code_hash = $1",
        )
        .bind(code_hash)
        .fetch_optional(self.inner().store.write())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(CodeRow {
            app_id: row.try_get("app_id")?,
            user_id: row.try_get("user_id")?,
            redirect_uri: row.try_get("redirect_uri")?,
            scopes: scopes_from_json(&row.try_get::<String, _>("scopes")?)?,
            code_challenge: row.try_get("code_challenge")?,
            nonce: row.try_get("nonce")?,
            auth_time: row.try_get("auth_time")?,
            expires_at: row.try_get("expires_at")?,
            used: row.try_get::<Option<i64>, _>("used_at")?.is_some(),
            family_id: row.try_get("family_id")?,
        }))
    }

    async fn token_row(&self, token_hash: &str) -> Result<Option<TokenRow>, MiniAppError> {
        let row = sqlx::query(
            "SELECT kind, app_id, user_id, family_id, scopes, auth_time, expires_at, used_at, revoked_at
             FROM miniapp_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.inner().store.read())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TokenRow {
            kind: row.try_get("kind")?,
            app_id: row.try_get("app_id")?,
            user_id: row.try_get("user_id")?,
            family_id: row.try_get("family_id")?,
            scopes: scopes_from_json(&row.try_get::<String, _>("scopes")?)?,
            auth_time: row.try_get("auth_time")?,
            expires_at: row.try_get("expires_at")?,
            used: row.try_get::<Option<i64>, _>("used_at")?.is_some(),
            revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        }))
    }
}

fn new_pair() -> (String, String) {
    (
        format!("pat_{}", to_hex(&plaza_kernel::random_token_bytes::<32>())),
        format!("prt_{}", to_hex(&plaza_kernel::random_token_bytes::<32>())),
    )
}

#[allow(clippy::too_many_arguments)]
async fn insert_token(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    token: &str,
    kind: &str,
    app: &MiniApp,
    user_id: Option<&str>,
    family_id: &str,
    scopes: &[String],
    auth_time: Option<i64>,
) -> Result<(), MiniAppError> {
    let now = Timestamp::now();
    let lifetime = if kind == "refresh" { REFRESH_TOKEN_LIFETIME } else { ACCESS_TOKEN_LIFETIME };
    sqlx::query(
        "INSERT INTO miniapp_tokens (token_hash, kind, app_id, user_id, family_id, scopes, auth_time, created_at,
             expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(digest(token))
    .bind(kind)
    .bind(&app.id)
    .bind(user_id)
    .bind(family_id)
    .bind(scopes_json(scopes)?)
    .bind(auth_time)
    .bind(now.unix_millis())
    .bind(now.plus(lifetime).unix_millis())
    .execute(&mut **transaction)
    .await?;
    Ok(())
}
