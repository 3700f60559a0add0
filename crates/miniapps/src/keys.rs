//! The id_token's signing keys and the pairwise subjects.
//!
//! Keys are Ed25519 (JOSE `EdDSA`), made from 32 bytes of the operating system's random
//! source with `ed25519-dalek` and signed with through `jsonwebtoken`; no cryptography is
//! written here. They live in the database (`miniapp_signing_keys`) so that every node
//! signs with the same key and publishes the same JWKS. **The private keys are stored
//! unencrypted** (PKCS#8 DER, base64): anyone who can read the database can mint
//! id_tokens, just as they could read every other secret the database holds; encrypting
//! them under a key kept outside the database is a later step.
//!
//! Rotation is by age: the newest key signs until it is [`SIGNING_KEY_ROTATE_AFTER`]
//! old, then the next signature retires it (a conditional update, so of several nodes
//! exactly one makes the successor) and a new key takes over. A retired key stays in the
//! JWKS for [`RETIRED_KEY_PUBLISHED_FOR`], far longer than an id_token lives, so a token
//! signed just before a rotation still verifies against a freshly fetched JWKS.
//!
//! Two nodes starting on an empty table may each create a first key; both are published
//! and the newest signs, which is harmless.
//!
//! `sub` is pairwise (OpenID Connect Core §8.1): HMAC-SHA256 under a per-deployment
//! secret of the app's id and the user's id, so two apps cannot match their users by it;
//! `union_id` is the same over the developer's id, so one developer's apps can. Both are
//! stable for as long as the database keeps its secret.

use crate::service::MiniAppError;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use hmac::{Hmac, Mac};
use plaza_kernel::Timestamp;
use plaza_store::{Row, Store};
use serde::Serialize;
use sha2::Sha256;
use std::sync::OnceLock;
use std::time::Duration;

/// A key signs id_tokens for this long before a successor replaces it.
pub const SIGNING_KEY_ROTATE_AFTER: Duration = Duration::from_secs(30 * 86_400);
/// A retired key stays in the JWKS this long (id_tokens live an hour).
pub const RETIRED_KEY_PUBLISHED_FOR: Duration = Duration::from_secs(7 * 86_400);
/// The one algorithm Plaza signs id_tokens with.
pub const ALGORITHM: &str = "EdDSA";

const BASE64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// One public key as the JWKS lists it (RFC 8037 §2: an `OKP` key on `Ed25519`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PublicJwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    pub kid: String,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub key_use: &'static str,
}

/// The signing half of the OpenID Connect server: keys, signatures, subjects.
#[derive(Debug)]
pub(crate) struct Keys {
    store: Store,
    subject_secret: OnceLock<Vec<u8>>,
}

struct SigningKey {
    kid: String,
    private_key: Vec<u8>,
    created_at: Timestamp,
}

impl Keys {
    pub(crate) fn new(store: Store) -> Self {
        Self { store, subject_secret: OnceLock::new() }
    }

    /// Signs `claims` as a compact JWS with the current key (rotating it if it is due).
    pub(crate) async fn sign(&self, claims: &impl Serialize) -> Result<String, MiniAppError> {
        let key = self.current_key().await?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(key.kid);
        header.typ = Some("JWT".to_string());
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ed_der(&key.private_key))
            .map_err(|error| MiniAppError::Invariant(format!("signing an id_token: {error}")))
    }

    /// The keys a client may see signatures of: the current ones and those retired less
    /// than [`RETIRED_KEY_PUBLISHED_FOR`] ago, newest first.
    pub(crate) async fn published(&self) -> Result<Vec<PublicJwk>, MiniAppError> {
        // A deployment that has signed nothing yet still publishes the key it will use.
        self.current_key().await?;
        let since = Timestamp::now().minus(RETIRED_KEY_PUBLISHED_FOR).unix_millis();
        let rows = sqlx::query(
            "SELECT kid, public_key FROM miniapp_signing_keys WHERE retired_at IS NULL OR retired_at > $1
             ORDER BY created_at DESC, kid DESC",
        )
        .bind(since)
        .fetch_all(self.store.read())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PublicJwk {
                    kty: "OKP",
                    crv: "Ed25519",
                    x: row.try_get("public_key")?,
                    kid: row.try_get("kid")?,
                    alg: ALGORITHM,
                    key_use: "sig",
                })
            })
            .collect()
    }

    /// The newest key in service, made (or replaced, when it is too old) if need be.
    async fn current_key(&self) -> Result<SigningKey, MiniAppError> {
        // A few rounds at most: each round either finds a usable key or makes one.
        for _ in 0..3 {
            match self.newest_key().await? {
                Some(key) if key.created_at.plus(SIGNING_KEY_ROTATE_AFTER) > Timestamp::now() => return Ok(key),
                Some(old) => {
                    // Only the node whose update retires the old key makes its successor.
                    let retired = sqlx::query(
                        "UPDATE miniapp_signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL",
                    )
                    .bind(Timestamp::now().unix_millis())
                    .bind(&old.kid)
                    .execute(self.store.write())
                    .await?;
                    if retired.rows_affected() == 1 {
                        return self.create_key().await;
                    }
                }
                None => return self.create_key().await,
            }
        }
        Err(MiniAppError::Invariant("no signing key could be found or made".into()))
    }

    async fn newest_key(&self) -> Result<Option<SigningKey>, MiniAppError> {
        let row = sqlx::query(
            "SELECT kid, private_key, created_at FROM miniapp_signing_keys WHERE retired_at IS NULL
             ORDER BY created_at DESC, kid DESC LIMIT 1",
        )
        .fetch_optional(self.store.write())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let private_key: String = row.try_get("private_key")?;
        let private_key = base64::engine::general_purpose::STANDARD
            .decode(private_key)
            .map_err(|error| MiniAppError::Invariant(format!("a stored signing key: {error}")))?;
        Ok(Some(SigningKey {
            kid: row.try_get("kid")?,
            private_key,
            created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        }))
    }

    async fn create_key(&self) -> Result<SigningKey, MiniAppError> {
        let seed = plaza_kernel::random_token_bytes::<32>();
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let der = signing
            .to_pkcs8_der()
            .map_err(|error| MiniAppError::Invariant(format!("encoding a signing key: {error}")))?;
        let public_key = BASE64URL.encode(signing.verifying_key().to_bytes());
        let kid = plaza_kernel::new_id().to_ascii_lowercase();
        let created_at = Timestamp::now();
        sqlx::query(
            "INSERT INTO miniapp_signing_keys (kid, algorithm, private_key, public_key, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&kid)
        .bind(ALGORITHM)
        .bind(base64::engine::general_purpose::STANDARD.encode(der.as_bytes()))
        .bind(&public_key)
        .bind(created_at.unix_millis())
        .execute(self.store.write())
        .await?;
        tracing::info!(kid = %kid, "made a new id_token signing key");
        Ok(SigningKey { kid, private_key: der.as_bytes().to_vec(), created_at })
    }

    /// The user's `sub` for an app: pairwise, stable, and meaningless to other apps.
    pub(crate) async fn subject(&self, app_id: &str, user_id: &str) -> Result<String, MiniAppError> {
        self.pairwise("sub", app_id, user_id).await
    }

    /// The user's `union_id` for a developer: the same across all of that developer's apps.
    pub(crate) async fn union_id(&self, developer_id: &str, user_id: &str) -> Result<String, MiniAppError> {
        self.pairwise("union", developer_id, user_id).await
    }

    async fn pairwise(&self, purpose: &str, sector: &str, user_id: &str) -> Result<String, MiniAppError> {
        let secret = self.subject_secret().await?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret)
            .map_err(|error| MiniAppError::Invariant(format!("the subject key: {error}")))?;
        // Each part is length-prefixed, so no two (purpose, sector, user) share an input.
        for part in [purpose, sector, user_id] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        Ok(BASE64URL.encode(mac.finalize().into_bytes()))
    }

    /// The deployment's subject secret, made once in the database and then kept in memory.
    async fn subject_secret(&self) -> Result<Vec<u8>, MiniAppError> {
        if let Some(secret) = self.subject_secret.get() {
            return Ok(secret.clone());
        }
        let made = plaza_kernel::id::to_hex(&plaza_kernel::random_token_bytes::<32>());
        sqlx::query(
            "INSERT INTO miniapp_server_secrets (name, secret, created_at) VALUES ('pairwise_subject', $1, $2)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&made)
        .bind(Timestamp::now().unix_millis())
        .execute(self.store.write())
        .await?;
        let stored: String =
            sqlx::query_scalar("SELECT secret FROM miniapp_server_secrets WHERE name = 'pairwise_subject'")
                .fetch_one(self.store.write())
                .await?;
        let secret = stored.into_bytes();
        let _ = self.subject_secret.set(secret.clone());
        Ok(secret)
    }
}
