//! The mini-apps service: registration, the directory and secret rotation as plain async
//! functions over the store. No HTTP here.

use crate::model::{self, Registration};
use base64::Engine;
use plaza_accounts::{Accounts, User};
use plaza_chat::Chat;
use plaza_events::Events;
use plaza_kernel::id::to_hex;
use plaza_kernel::Timestamp;
use plaza_store::{Row, Store};
use plaza_wallet::Wallet;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Directory pages hold at most this many apps.
pub const DIRECTORY_PAGE_MAX: i64 = 50;
/// The longest directory query.
pub const QUERY_MAX_CHARS: usize = 60;

#[derive(Debug, thiserror::Error)]
pub enum MiniAppError {
    #[error("{field}: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("no such mini-app")]
    NotFound,
    #[error("only the app's developer may {action}")]
    NotDeveloper { action: &'static str },
    #[error("a developer may register at most {max} apps")]
    TooManyApps { max: i64 },
    /// A token or revocation request refused as RFC 6749 §5.2 says; the OAuth routes
    /// answer it as `{"error", "error_description"}`, not as a problem.
    #[error("{}: {description}", error.as_str())]
    OAuth { error: crate::oauth::OAuthErrorCode, description: String },
    /// An authorization request that must not be sent back to the app, because its
    /// client or redirect URI cannot be trusted (RFC 6749 §4.1.2.1).
    #[error("authorization request refused: {reason}")]
    UnredirectableRequest { reason: String },
    /// An access token that is unknown, expired or revoked, or of the wrong kind.
    #[error("the access token is unknown, expired or revoked")]
    InvalidToken { reason: &'static str },
    /// A valid access token without the scope this needs.
    #[error("the access token lacks the scope {scope}")]
    InsufficientScope { scope: &'static str },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("invariant: {0}")]
    Invariant(String),
    /// A chat refused a post (a share into a conversation the user is not in).
    #[error("chat: {0}")]
    Chat(#[from] plaza_chat::ChatError),
    /// The wallet refused a payment or a refund (funds, PIN, lock, currency).
    #[error("wallet: {0}")]
    Wallet(#[from] plaza_wallet::WalletError),
    #[error("no such pay order")]
    PayOrderNotFound,
    #[error("the pay order expired before it was confirmed")]
    PayOrderExpired,
    #[error("the pay order is not paid")]
    PayOrderNotPaid,
    #[error("the app already has a pay order {out_trade_no}")]
    OutTradeNoTaken { out_trade_no: String },
    #[error("this Idempotency-Key was used for another request")]
    IdempotencyKeyReused,
    #[error("at most {refundable} more can be refunded")]
    RefundExceedsPayment { refundable: i64 },
    #[error("no such webhook delivery")]
    WebhookDeliveryNotFound,
}

/// A registered app as anyone may see it (no secrets).
#[derive(Debug, Clone, PartialEq)]
pub struct MiniApp {
    pub id: String,
    pub client_id: String,
    pub developer_id: String,
    pub name: String,
    pub description: String,
    pub home_url: String,
    pub redirect_uris: Vec<String>,
    pub webhook_url: Option<String>,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
}

/// Secrets as created: handed to the developer once and never again.
#[derive(Debug, Clone)]
pub struct NewSecrets {
    pub client_secret: String,
    pub webhook_secret: String,
}

/// The mini-apps service handle.
#[derive(Debug, Clone)]
pub struct MiniApps {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) accounts: Accounts,
    pub(crate) events: Events,
    pub(crate) wallet: Wallet,
    pub(crate) chat: Chat,
    pub(crate) config: MiniAppsConfig,
    pub(crate) keys: crate::keys::Keys,
    pub(crate) sender: crate::webhooks::Sender,
}

/// What the mini-apps service needs to know of its deployment.
#[derive(Debug, Clone)]
pub struct MiniAppsConfig {
    /// The OpenID Connect issuer: Plaza's public URL (`PLAZA_PUBLIC_URL`), without a
    /// trailing slash; every endpoint the discovery document names is under it.
    pub issuer: String,
    pub payments: PaymentsConfig,
}

/// Fees, expiry and webhook retries of pay orders (`PLAZA_MINIAPPS_*`, `PLAZA_WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    /// Plaza's share of each payment, in basis points of its amount (rounded down).
    pub fee_bps: plaza_kernel::BasisPoints,
    /// How long a pay order may wait for the user's confirmation.
    pub order_ttl: std::time::Duration,
    /// The wait before a failed webhook delivery's first retry; each later one doubles it.
    pub webhook_retry_base: std::time::Duration,
    /// How long deliveries are retried before they are given up.
    pub webhook_give_up_after: std::time::Duration,
    /// The longest a receiver may take to answer one delivery.
    pub webhook_timeout: std::time::Duration,
    /// How often the payments job looks for due deliveries and expired orders when nothing
    /// woke it (a commit on this node wakes it at once).
    pub job_interval: std::time::Duration,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            fee_bps: plaza_kernel::BasisPoints::at_most_all(100),
            order_ttl: std::time::Duration::from_secs(15 * 60),
            webhook_retry_base: std::time::Duration::from_secs(5),
            webhook_give_up_after: std::time::Duration::from_secs(3 * 86_400),
            webhook_timeout: std::time::Duration::from_secs(10),
            job_interval: std::time::Duration::from_secs(1),
        }
    }
}

const COLUMNS: &str =
    "id, client_id, developer_id, name, description, home_url, redirect_uris, webhook_url, scopes, created_at";

impl MiniApps {
    pub fn new(
        store: Store,
        events: Events,
        accounts: Accounts,
        wallet: Wallet,
        chat: Chat,
        config: MiniAppsConfig,
    ) -> Self {
        let keys = crate::keys::Keys::new(store.clone());
        let sender = crate::webhooks::Sender::default();
        Self { inner: Arc::new(Inner { store, accounts, events, wallet, chat, config, keys, sender }) }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The OpenID Connect issuer (Plaza's public URL).
    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }

    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    /// Registers an app for `developer`; its secrets are in the answer and only there.
    pub async fn register(
        &self,
        developer: &User,
        registration: Registration,
    ) -> Result<(MiniApp, NewSecrets), MiniAppError> {
        let owned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM miniapps WHERE developer_id = $1")
            .bind(&developer.id)
            .fetch_one(self.inner.store.write())
            .await?;
        if owned >= model::APPS_PER_DEVELOPER_MAX {
            return Err(MiniAppError::TooManyApps { max: model::APPS_PER_DEVELOPER_MAX });
        }
        let id = plaza_kernel::new_id();
        let client_id = format!("app_{}", to_hex(&plaza_kernel::random_token_bytes::<12>()));
        let client_secret = new_client_secret();
        let webhook_secret = new_webhook_secret();
        let now = Timestamp::now().unix_millis();
        let redirect_uris: Vec<&str> = registration.redirect_uris.iter().map(|uri| uri.as_str()).collect();
        sqlx::query(
            "INSERT INTO miniapps (id, client_id, developer_id, name, name_folded, description, home_url,
                 redirect_uris, webhook_url, scopes, client_secret_hash, webhook_secret, created_at, secret_rotated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
        )
        .bind(&id)
        .bind(&client_id)
        .bind(&developer.id)
        .bind(&registration.name)
        .bind(registration.name.to_lowercase())
        .bind(&registration.description)
        .bind(registration.home_url.as_str())
        .bind(to_json(&redirect_uris)?)
        .bind(registration.webhook_url.as_ref().map(|url| url.as_str().to_string()))
        .bind(to_json(&registration.scopes)?)
        .bind(secret_digest(&client_secret))
        .bind(&webhook_secret)
        .bind(now)
        .execute(self.inner.store.write())
        .await?;
        let app = self.app(&id).await?;
        Ok((app, NewSecrets { client_secret, webhook_secret }))
    }

    /// One app, by its id.
    pub async fn app(&self, id: &str) -> Result<MiniApp, MiniAppError> {
        self.app_where("id", id).await?.ok_or(MiniAppError::NotFound)
    }

    /// One app, by its OAuth client id.
    pub async fn app_by_client_id(&self, client_id: &str) -> Result<Option<MiniApp>, MiniAppError> {
        self.app_where("client_id", client_id).await
    }

    async fn app_where(&self, column: &'static str, value: &str) -> Result<Option<MiniApp>, MiniAppError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM miniapps WHERE {column} = $1"))
            .bind(value)
            .fetch_optional(self.inner.store.write())
            .await?;
        row.as_ref().map(app_from_row).transpose()
    }

    /// The directory: every app, newest first, or those whose name contains `query`
    /// (case-insensitively), at most [`DIRECTORY_PAGE_MAX`].
    pub async fn directory(&self, query: Option<&str>) -> Result<Vec<MiniApp>, MiniAppError> {
        let query = query.map(str::trim).filter(|query| !query.is_empty());
        if let Some(query) = query {
            if query.chars().count() > QUERY_MAX_CHARS {
                return Err(MiniAppError::InvalidField {
                    field: "q".into(),
                    reason: format!("at most {QUERY_MAX_CHARS} characters"),
                });
            }
        }
        // The pattern's own wildcards are escaped so that `%` and `_` match themselves.
        let pattern = query.map(|query| {
            let escaped = query.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            format!("%{escaped}%")
        });
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM miniapps WHERE ($1 IS NULL OR name_folded LIKE $1 ESCAPE '\\')
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(pattern)
        .bind(DIRECTORY_PAGE_MAX)
        .fetch_all(self.inner.store.read())
        .await?;
        rows.iter().map(app_from_row).collect()
    }

    /// A new client secret for the developer's app; the old one stops working at once.
    pub async fn rotate_client_secret(&self, developer: &User, id: &str) -> Result<(MiniApp, String), MiniAppError> {
        let app = self.app(id).await?;
        if app.developer_id != developer.id {
            return Err(MiniAppError::NotDeveloper { action: "rotate its secret" });
        }
        let client_secret = new_client_secret();
        sqlx::query("UPDATE miniapps SET client_secret_hash = $1, secret_rotated_at = $2 WHERE id = $3")
            .bind(secret_digest(&client_secret))
            .bind(Timestamp::now().unix_millis())
            .bind(id)
            .execute(self.inner.store.write())
            .await?;
        Ok((app, client_secret))
    }

    /// The app whose client id and secret these are, if both match (for the token
    /// endpoint). The digests are compared, so timing reveals nothing of the secret.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Option<MiniApp>, MiniAppError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS}, client_secret_hash FROM miniapps WHERE client_id = $1"))
            .bind(client_id)
            .fetch_optional(self.inner.store.write())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("client_secret_hash")?;
        if stored != secret_digest(client_secret) {
            return Ok(None);
        }
        app_from_row(&row).map(Some)
    }

    /// A new webhook secret for the developer's app, returned here once like the first.
    /// Deliveries are signed when sent, so every later one (retries of older events too)
    /// carries the new signature. `plaza demo --serve` uses it to hand the sample app its
    /// secret in memory without ever printing it.
    pub async fn rotate_webhook_secret(&self, developer: &User, id: &str) -> Result<(MiniApp, String), MiniAppError> {
        let app = self.app(id).await?;
        if app.developer_id != developer.id {
            return Err(MiniAppError::NotDeveloper { action: "rotate its webhook secret" });
        }
        let webhook_secret = new_webhook_secret();
        sqlx::query("UPDATE miniapps SET webhook_secret = $1 WHERE id = $2")
            .bind(&webhook_secret)
            .bind(id)
            .execute(self.inner.store.write())
            .await?;
        Ok((app, webhook_secret))
    }

    /// Moves the developer's app to new addresses (its home, redirect URIs and webhook
    /// URL), each checked as at registration; what users granted it stays.
    pub async fn update_urls(
        &self,
        developer: &User,
        id: &str,
        home_url: &model::AppUrl,
        redirect_uris: &[model::AppUrl],
        webhook_url: Option<&model::AppUrl>,
    ) -> Result<MiniApp, MiniAppError> {
        let app = self.app(id).await?;
        if app.developer_id != developer.id {
            return Err(MiniAppError::NotDeveloper { action: "change its addresses" });
        }
        if redirect_uris.is_empty() || redirect_uris.len() > model::REDIRECT_URIS_MAX {
            return Err(MiniAppError::InvalidField {
                field: "redirect_uris".into(),
                reason: format!("1 to {} redirect URIs", model::REDIRECT_URIS_MAX),
            });
        }
        let redirect_uris: Vec<&str> = redirect_uris.iter().map(|uri| uri.as_str()).collect();
        sqlx::query("UPDATE miniapps SET home_url = $1, redirect_uris = $2, webhook_url = $3 WHERE id = $4")
            .bind(home_url.as_str())
            .bind(to_json(&redirect_uris)?)
            .bind(webhook_url.map(|url| url.as_str().to_string()))
            .bind(id)
            .execute(self.inner.store.write())
            .await?;
        self.app(id).await
    }
}

/// `secret_` and 32 random bytes in hex.
fn new_client_secret() -> String {
    format!("secret_{}", to_hex(&plaza_kernel::random_token_bytes::<32>()))
}

/// `whsec_` and base64 of 32 random bytes, as Standard Webhooks libraries expect.
fn new_webhook_secret() -> String {
    let bytes = plaza_kernel::random_token_bytes::<32>();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A client secret has 256 random bits, so one unsalted SHA-256 is enough to keep it from
/// anyone who reads the database (a password hash would only slow the token endpoint).
fn secret_digest(secret: &str) -> String {
    to_hex(&Sha256::digest(secret.as_bytes()))
}

fn app_from_row(row: &plaza_store::AnyRow) -> Result<MiniApp, MiniAppError> {
    let list = |column: &str| -> Result<Vec<String>, MiniAppError> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|error| MiniAppError::Invariant(format!("{column}: {error}")))
    };
    Ok(MiniApp {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        developer_id: row.try_get("developer_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        home_url: row.try_get("home_url")?,
        redirect_uris: list("redirect_uris")?,
        webhook_url: row.try_get("webhook_url")?,
        scopes: list("scopes")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
    })
}

fn to_json(list: &impl serde::Serialize) -> Result<String, MiniAppError> {
    serde_json::to_string(list).map_err(|error| MiniAppError::Invariant(format!("a list as JSON: {error}")))
}
