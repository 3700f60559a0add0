//! Idempotency keys. A key is claimed inside the transaction that moves the money, with a
//! hash of the request, and the operation's result is stored in the same transaction: so
//! a key is either unused, or bound to exactly one committed result. A concurrent
//! duplicate's `INSERT … ON CONFLICT DO NOTHING` waits on the unique index until the first
//! transaction ends (PostgreSQL; SQLite runs one writer at a time anyway) and then reads
//! the stored result instead of executing again.

use crate::model::IdempotencyKey;
use crate::service::WalletError;
use plaza_kernel::Timestamp;
use plaza_store::{Any, AnyPool, Row, Transaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// A key in its scope (the caller's user id, or a payment intent for service calls), with
/// the operation and the hash of what was asked.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub scope: &'a str,
    pub key: &'a IdempotencyKey,
    pub operation: &'static str,
    pub hash: String,
}

impl<'a> Request<'a> {
    /// `canonical` lists every input that affects the outcome (never the PIN).
    pub fn new(
        scope: &'a str,
        key: &'a IdempotencyKey,
        operation: &'static str,
        canonical: &serde_json::Value,
    ) -> Self {
        Self { scope, key, operation, hash: request_hash(operation, canonical) }
    }
}

/// The hash stored with a key: of the operation and every input that affects its outcome.
pub fn request_hash(operation: &str, canonical: &serde_json::Value) -> String {
    let digest = Sha256::digest(format!("{operation}\n{canonical}").as_bytes());
    plaza_kernel::id::to_hex(&digest)
}

/// Looks for a committed result without taking any lock: the cheap path for a retry.
/// `Some` is what an earlier request with the key committed; without a key, there is none.
pub async fn lookup<T: DeserializeOwned>(
    pool: &AnyPool,
    request: Option<&Request<'_>>,
) -> Result<Option<T>, WalletError> {
    let Some(request) = request else { return Ok(None) };
    let row = sqlx::query(
        "SELECT operation, request_hash, result FROM wallet_idempotency WHERE scope = $1 AND idempotency_key = $2",
    )
    .bind(request.scope)
    .bind(request.key.as_str())
    .fetch_optional(pool)
    .await?;
    match row {
        None => Ok(None),
        Some(row) => stored(&row, request).map(Some),
    }
}

/// Claims the key (when there is one) inside `transaction`. `Some` means another request
/// with this key has committed: return its result and do nothing else.
pub async fn claim<T: DeserializeOwned>(
    transaction: &mut Transaction<'static, Any>,
    request: Option<&Request<'_>>,
) -> Result<Option<T>, WalletError> {
    let Some(request) = request else { return Ok(None) };
    let inserted = sqlx::query(
        "INSERT INTO wallet_idempotency (scope, idempotency_key, operation, request_hash, result, created_at)
         VALUES ($1, $2, $3, $4, NULL, $5) ON CONFLICT (scope, idempotency_key) DO NOTHING",
    )
    .bind(request.scope)
    .bind(request.key.as_str())
    .bind(request.operation)
    .bind(&request.hash)
    .bind(Timestamp::now().unix_millis())
    .execute(&mut **transaction)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT operation, request_hash, result FROM wallet_idempotency WHERE scope = $1 AND idempotency_key = $2",
    )
    .bind(request.scope)
    .bind(request.key.as_str())
    .fetch_one(&mut **transaction)
    .await?;
    stored(&row, request).map(Some)
}

/// Records the result of the operation that claimed the key (when there is one), before
/// commit.
pub async fn complete<T: Serialize>(
    transaction: &mut Transaction<'static, Any>,
    request: Option<&Request<'_>>,
    result: &T,
) -> Result<(), WalletError> {
    let Some(request) = request else { return Ok(()) };
    let text = serde_json::to_string(result).map_err(|error| WalletError::Invariant(error.to_string()))?;
    let updated = sqlx::query("UPDATE wallet_idempotency SET result = $3 WHERE scope = $1 AND idempotency_key = $2")
        .bind(request.scope)
        .bind(request.key.as_str())
        .bind(text)
        .execute(&mut **transaction)
        .await?;
    if updated.rows_affected() != 1 {
        return Err(WalletError::Invariant("an idempotency key vanished before its result was stored".into()));
    }
    Ok(())
}

fn stored<T: DeserializeOwned>(row: &plaza_store::AnyRow, request: &Request<'_>) -> Result<T, WalletError> {
    let operation: String = row.try_get("operation")?;
    let hash: String = row.try_get("request_hash")?;
    if operation != request.operation || hash != request.hash {
        return Err(WalletError::IdempotencyKeyReused);
    }
    let result: Option<String> = row.try_get("result")?;
    // A committed key always has its result; `None` can only be seen through a read that
    // raced the claiming transaction, which the callers' ordering rules out.
    let result = result.ok_or(WalletError::IdempotencyKeyInProgress)?;
    serde_json::from_str(&result).map_err(|error| WalletError::Invariant(error.to_string()))
}

/// Forgets keys older than `max_age_ms`, so the table stays bounded; a retry after that
/// is a new request.
pub async fn prune(pool: &AnyPool, max_age_ms: i64) -> Result<u64, sqlx::Error> {
    let cutoff = Timestamp::now().unix_millis() - max_age_ms;
    Ok(sqlx::query("DELETE FROM wallet_idempotency WHERE created_at < $1")
        .bind(cutoff)
        .execute(pool)
        .await?
        .rows_affected())
}
