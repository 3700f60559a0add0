//! Benchmark support: the wallet's rows written in bulk for `plaza-bench wallet`, and
//! nothing else should call it.
//!
//! It lives here, not in the benchmark, so that only this crate's source writes the
//! `wallet_*` tables. Two things are offered:
//!
//! - [`seed_funded_accounts`]: many users' accounts funded at once, in the caller's
//!   transaction (which also writes the users and sessions through their own owners), with
//!   one top-up movement each and the funding account carrying the other side, so the
//!   ledger check holds. Topping up 10,000 users one by one would take minutes.
//! - [`DatabaseFloor`]: the **database floor** of a transfer — per transfer only the rows any
//!   transfer over this schema must write (its journal row, its idempotency key with a
//!   result of a real result's size, the two balances), with the statements the
//!   group-committed path uses, and none of its reads, checks, hashing or events. No
//!   transfer path can beat it on the same machine, which tells a slow code path from a slow
//!   database. Each batch balances, so the ledger check still holds afterwards.

use plaza_kernel::Timestamp;
use plaza_store::JsonColumn::{BigInt, Text};
use plaza_store::{Any, Store, Transaction};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The currency benchmark accounts hold.
const CURRENCY: &str = "USD";

/// Rows per seeding statement.
const SEED_CHUNK: usize = 500;

/// Gives each of `user_ids` a USD account holding `balance_minor`, explained by one
/// `topup` movement from the funding account, inside `transaction`.
pub async fn seed_funded_accounts(
    transaction: &mut Transaction<'static, Any>,
    user_ids: &[String],
    balance_minor: i64,
) -> Result<(), sqlx::Error> {
    let now = Timestamp::now().unix_millis();
    let funding = "system:funding:USD";
    sqlx::query(
        "INSERT INTO wallet_accounts (id, owner_id, kind, currency, balance, held, created_at)
         VALUES ($1, NULL, 'funding', 'USD', $2, 0, $3)
         ON CONFLICT (id) DO UPDATE SET balance = wallet_accounts.balance + excluded.balance",
    )
    .bind(funding)
    .bind(-(user_ids.len() as i64) * balance_minor)
    .bind(now)
    .execute(&mut **transaction)
    .await?;
    for chunk in user_ids.chunks(SEED_CHUNK) {
        insert_accounts(transaction, chunk, balance_minor, now).await?;
        insert_seed_movements(transaction, chunk, balance_minor, funding, now).await?;
    }
    Ok(())
}

async fn insert_accounts(
    transaction: &mut Transaction<'static, Any>,
    user_ids: &[String],
    balance_minor: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO wallet_accounts (id, owner_id, kind, currency, balance, held, created_at) VALUES {}",
        (0..user_ids.len())
            .map(|n| format!("(${}, ${}, 'user', 'USD', $2, 0, $1)", 2 * n + 3, 2 * n + 4))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut query = sqlx::query(&sql).bind(now).bind(balance_minor);
    for id in user_ids {
        query = query.bind(account_id(id)).bind(id);
    }
    query.execute(&mut **transaction).await?;
    Ok(())
}

async fn insert_seed_movements(
    transaction: &mut Transaction<'static, Any>,
    user_ids: &[String],
    balance_minor: i64,
    funding: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO wallet_movements
         (id, transaction_id, kind, debit_account, credit_account, amount, currency, reference, note, created_at)
         VALUES {}",
        (0..user_ids.len())
            .map(|n| format!(
                "(${}, ${}, 'topup', $3, ${}, $2, 'USD', 'topup:bench-seed', NULL, $1)",
                3 * n + 4,
                3 * n + 5,
                3 * n + 6
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut query = sqlx::query(&sql).bind(now).bind(balance_minor).bind(funding);
    for id in user_ids {
        query = query.bind(plaza_kernel::new_id()).bind(plaza_kernel::new_id()).bind(account_id(id));
    }
    query.execute(&mut **transaction).await?;
    Ok(())
}

fn account_id(user_id: &str) -> String {
    format!("user:{user_id}:{CURRENCY}")
}

/// One transfer of a floor batch.
#[derive(Debug, Clone)]
pub struct FloorTransfer {
    pub from_user_id: String,
    pub to_user_id: String,
    pub amount: i64,
    pub idempotency_key: String,
}

/// A floor batch's rows, built ahead so that only the writing is measured.
#[derive(Debug, Clone)]
pub struct FloorBatch {
    deltas: String,
    movements: String,
    keys: String,
    now: i64,
}

/// The floor's three statements, prepared for the store's engine.
#[derive(Debug, Clone)]
pub struct DatabaseFloor {
    update: String,
    journal: String,
    keys: String,
}

impl DatabaseFloor {
    pub fn new(store: &Store) -> Self {
        let backend = store.backend();
        let update = format!(
            "WITH changes AS ({}) UPDATE wallet_accounts SET balance = wallet_accounts.balance + changes.delta
             FROM changes WHERE wallet_accounts.id = changes.id",
            backend.json_rows(1, &[("id", Text), ("delta", BigInt)])
        );
        let journal = format!(
            "INSERT INTO wallet_movements
             (id, transaction_id, kind, debit_account, credit_account, amount, currency, reference, note, created_at)
             SELECT id, transaction_id, 'transfer', debit_account, credit_account, amount, 'USD', reference, NULL, $2
             FROM ({}) AS movements",
            backend.json_rows(
                1,
                &[
                    ("id", Text),
                    ("transaction_id", Text),
                    ("debit_account", Text),
                    ("credit_account", Text),
                    ("amount", BigInt),
                    ("reference", Text),
                ]
            )
        );
        let keys = format!(
            "INSERT INTO wallet_idempotency (scope, idempotency_key, operation, request_hash, result, created_at)
             SELECT scope, idempotency_key, 'transfer', request_hash, result, $2 FROM ({}) AS keys",
            backend
                .json_rows(1, &[("scope", Text), ("idempotency_key", Text), ("request_hash", Text), ("result", Text)])
        );
        Self { update, journal, keys }
    }

    /// The rows of `transfers`: balance changes, journal rows, and keys with a result.
    pub fn prepare(&self, transfers: &[FloorTransfer]) -> Result<FloorBatch, serde_json::Error> {
        let now = Timestamp::now().unix_millis();
        let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
        let mut movements = Vec::with_capacity(transfers.len());
        let mut keys = Vec::with_capacity(transfers.len());
        for transfer in transfers {
            let (debit, credit) = (account_id(&transfer.from_user_id), account_id(&transfer.to_user_id));
            *deltas.entry(debit.clone()).or_default() -= transfer.amount;
            *deltas.entry(credit.clone()).or_default() += transfer.amount;
            let id = plaza_kernel::new_id();
            let result = serde_json::json!({
                "id": id, "from_user_id": transfer.from_user_id, "to_user_id": transfer.to_user_id,
                "amount": transfer.amount, "currency": CURRENCY, "note": null, "conversation_id": null,
                "message_id": null, "created_at_ms": now,
            });
            keys.push((
                transfer.from_user_id.clone(),
                transfer.idempotency_key.clone(),
                plaza_kernel::id::to_hex(&Sha256::digest(id.as_bytes())),
                result.to_string(),
            ));
            movements.push((
                plaza_kernel::new_id(),
                id.clone(),
                debit,
                credit,
                transfer.amount,
                format!("transfer:{id}"),
            ));
        }
        let deltas: Vec<(String, i64)> = deltas.into_iter().collect();
        Ok(FloorBatch {
            deltas: serde_json::to_string(&deltas)?,
            movements: serde_json::to_string(&movements)?,
            keys: serde_json::to_string(&keys)?,
            now,
        })
    }

    /// Writes one batch in one transaction.
    pub async fn write(&self, store: &Store, batch: &FloorBatch) -> Result<(), sqlx::Error> {
        let mut transaction = store.begin().await?;
        sqlx::query(&self.update).bind(&batch.deltas).execute(&mut *transaction).await?;
        sqlx::query(&self.journal).bind(&batch.movements).bind(batch.now).execute(&mut *transaction).await?;
        sqlx::query(&self.keys).bind(&batch.keys).bind(batch.now).execute(&mut *transaction).await?;
        transaction.commit().await
    }
}
