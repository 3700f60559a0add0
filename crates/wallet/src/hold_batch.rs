//! Group-committed holds: many payment intents created in the caller's transaction with a
//! fixed number of multi-row statements, for a service that takes a burst of payments on
//! one hot object (a flash sale's orders) and decides, payer by payer in arrival order,
//! who gets what.
//!
//! [`Wallet::begin_hold_batch`] reads (and on PostgreSQL locks, in id order, so batches
//! never deadlock) the payers' accounts; the service then calls [`HoldBatch::hold`] per
//! payment in its own order, each checked against the running balance exactly as
//! [`Wallet::create_payment_intent`] checks one; [`HoldBatch::write`] writes the balances,
//! the escrow account, the journal and the intents, asserts the batch balances, and
//! returns one `wallet.updated` per payer for the caller to append with its own events.
//! The intents are ordinary ones: capture, void and refund treat them like any other, and
//! the ledger check counts them.

use crate::ledger::{Account, SystemAccount};
use crate::service::{Wallet, WalletError};
use plaza_events::ToAppend;
use plaza_kernel::{Currency, Timestamp};
use plaza_store::JsonColumn::{BigInt, Text};
use plaza_store::{Any, Backend, Transaction};
use serde_json::json;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// A payer's account in the batch: its state when read and its running state.
#[derive(Debug, Clone, Copy, Default)]
struct PayerAccount {
    balance: i64,
    held: i64,
    balance_before: i64,
    /// Whether the payer has a payment PIN, which a hold then needs verified first.
    pin_set: bool,
}

/// One hold the batch will write.
#[derive(Debug, Clone)]
struct PlannedHold {
    intent_id: String,
    payer_id: String,
    amount: i64,
    description: String,
}

/// The `wallet.updated` events a written [`HoldBatch`] owes its payers.
#[derive(Debug, Default)]
#[must_use = "append the payers' events in the batch's transaction"]
pub struct HoldEvents {
    updates: Vec<(Vec<String>, Box<RawValue>)>,
}

impl HoldEvents {
    /// The events, as [`plaza_events::Events::append_many`] takes them.
    pub fn to_append(&self) -> impl Iterator<Item = ToAppend<'_>> {
        self.updates.iter().map(|(users, data)| ToAppend { user_ids: users, event_type: "wallet.updated", data })
    }
}

/// Holds being planned in one transaction, for payers whose accounts were read at its start.
#[derive(Debug)]
pub struct HoldBatch {
    currency: Currency,
    backend: Backend,
    accounts: BTreeMap<String, PayerAccount>,
    holds: Vec<PlannedHold>,
}

impl Wallet {
    /// Reads the `currency` accounts of `payer_ids` in `transaction` (locked on
    /// PostgreSQL) for a batch of holds. A payer without an account has nothing to hold.
    pub async fn begin_hold_batch(
        &self,
        transaction: &mut Transaction<'_, Any>,
        currency: Currency,
        payer_ids: &[&str],
    ) -> Result<HoldBatch, WalletError> {
        let backend = self.inner.store.backend();
        let mut ids: Vec<String> = payer_ids.iter().map(|id| Account::user(id).id(currency)).collect();
        ids.sort();
        ids.dedup();
        let lock = if backend == Backend::Postgres { " FOR UPDATE" } else { "" };
        // One row back however many payers (`Backend::json_array_agg`).
        let sql = format!(
            "SELECT {} AS accounts FROM (
                 SELECT a.owner_id, a.balance, a.held,
                        (SELECT COUNT(*) FROM wallet_pins p WHERE p.user_id = a.owner_id) AS pins
                 FROM wallet_accounts a
                 WHERE a.id IN (SELECT id FROM ({}) AS wanted) ORDER BY a.id{lock}) AS locked",
            backend.json_array_agg(&["owner_id", "balance", "held", "pins"]),
            backend.json_rows(1, &[("id", Text)])
        );
        let wanted = json_text(&ids.iter().map(|id| [id]).collect::<Vec<_>>())?;
        let read: Option<String> = sqlx::query_scalar(&sql).bind(wanted).fetch_one(&mut **transaction).await?;
        let rows: Vec<(Option<String>, i64, i64, i64)> = match read {
            Some(text) => serde_json::from_str(&text).map_err(|error| WalletError::Invariant(error.to_string()))?,
            None => Vec::new(),
        };
        let mut accounts = BTreeMap::new();
        for (owner, balance, held, pins) in rows {
            if let Some(owner) = owner {
                accounts.insert(owner, PayerAccount { balance, held, balance_before: balance, pin_set: pins > 0 });
            }
        }
        Ok(HoldBatch { currency, backend, accounts, holds: Vec::new() })
    }
}

impl HoldBatch {
    /// What `payer_id` may still hold in this batch.
    pub fn available(&self, payer_id: &str) -> i64 {
        self.accounts.get(payer_id).map_or(0, |account| account.balance)
    }

    /// Plans a hold of `amount` from `payer_id` and returns the id its intent will have;
    /// `InsufficientFunds` (and nothing planned) when the running balance is short, and
    /// `PinRequired` when the payer has a PIN the caller did not verify
    /// ([`Wallet::authorize_payment`]) before the batch: so a payment without a PIN costs
    /// no read of its own, and a PIN set while the batch waited is still asked for.
    pub fn hold(
        &mut self,
        payer_id: &str,
        amount: i64,
        description: &str,
        pin_verified: bool,
    ) -> Result<String, WalletError> {
        if amount <= 0 {
            return Err(WalletError::Invariant(format!("a hold of {amount}")));
        }
        if !pin_verified && self.accounts.get(payer_id).is_some_and(|account| account.pin_set) {
            return Err(WalletError::PinRequired);
        }
        let available = self.available(payer_id);
        let Some(account) = self.accounts.get_mut(payer_id).filter(|_| available >= amount) else {
            return Err(WalletError::InsufficientFunds { available, requested: amount });
        };
        account.balance -= amount;
        account.held += amount;
        let intent_id = plaza_kernel::new_id();
        self.holds.push(PlannedHold {
            intent_id: intent_id.clone(),
            payer_id: payer_id.to_string(),
            amount,
            description: description.to_string(),
        });
        Ok(intent_id)
    }

    /// How many holds are planned.
    pub fn len(&self) -> usize {
        self.holds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }

    /// Writes the planned holds into `transaction` and returns each payer's
    /// `wallet.updated`, for the caller to append in the same transaction together with its
    /// own events ([`HoldEvents::to_append`]): one append for the batch, so a payer who is
    /// also told of the order takes one step of its event cursor, not two.
    pub async fn write(self, transaction: &mut Transaction<'_, Any>) -> Result<HoldEvents, WalletError> {
        if self.holds.is_empty() {
            return Ok(HoldEvents::default());
        }
        let now = Timestamp::now().unix_millis();
        let total: i64 = self.holds.iter().map(|hold| hold.amount).sum();
        let moved: i64 = self.accounts.values().map(|account| account.balance_before - account.balance).sum();
        if moved != total {
            return Err(WalletError::Invariant(format!("a hold batch moves {moved} but holds {total}")));
        }
        self.write_payers(transaction).await?;
        self.write_escrow(transaction, total, now).await?;
        self.write_journal(transaction, now).await?;
        let updates = self
            .accounts
            .iter()
            .filter(|(_, account)| account.balance != account.balance_before)
            .map(|(payer_id, account)| {
                let reference = self
                    .holds
                    .iter()
                    .rev()
                    .find(|hold| &hold.payer_id == payer_id)
                    .map(|hold| format!("payment_intent:{}", hold.intent_id))
                    .unwrap_or_default();
                let data = json!({"currency": self.currency.code(), "available": account.balance,
                    "held": account.held, "kind": "payment_hold", "reference": reference});
                (vec![payer_id.clone()], plaza_events::to_data(&data))
            })
            .collect();
        Ok(HoldEvents { updates })
    }

    /// The payers' balances and holds. Each row was read (and on PostgreSQL locked) in this
    /// transaction, so a payer debited by exactly its planned amount, never below zero, is
    /// at the planned balance: counting the rows checks the plan without reading them back.
    async fn write_payers(&self, transaction: &mut Transaction<'_, Any>) -> Result<(), WalletError> {
        let changed: Vec<(String, i64)> = self
            .accounts
            .iter()
            .filter(|(_, account)| account.balance != account.balance_before)
            .map(|(payer_id, account)| {
                (Account::user(payer_id).id(self.currency), account.balance_before - account.balance)
            })
            .collect();
        let sql = format!(
            "WITH changes AS ({})
             UPDATE wallet_accounts SET balance = wallet_accounts.balance - changes.amount,
                                        held = wallet_accounts.held + changes.amount
             FROM changes WHERE wallet_accounts.id = changes.id AND wallet_accounts.balance >= changes.amount",
            self.backend.json_rows(1, &[("id", Text), ("amount", BigInt)])
        );
        let debited = sqlx::query(&sql).bind(json_text(&changed)?).execute(&mut **transaction).await?.rows_affected();
        if debited != changed.len() as u64 {
            return Err(WalletError::Invariant(format!("{debited} of {} payers debited", changed.len())));
        }
        Ok(())
    }

    async fn write_escrow(
        &self,
        transaction: &mut Transaction<'_, Any>,
        total: i64,
        now: i64,
    ) -> Result<(), WalletError> {
        let escrow = Account::System(SystemAccount::Escrow);
        sqlx::query(
            "INSERT INTO wallet_accounts (id, owner_id, kind, currency, balance, held, created_at)
             VALUES ($1, NULL, 'escrow', $2, $3, 0, $4)
             ON CONFLICT (id) DO UPDATE SET balance = wallet_accounts.balance + excluded.balance",
        )
        .bind(escrow.id(self.currency))
        .bind(self.currency.code())
        .bind(total)
        .bind(now)
        .execute(&mut **transaction)
        .await?;
        Ok(())
    }

    /// One journal row and one intent per hold, each in one statement for the batch.
    async fn write_journal(&self, transaction: &mut Transaction<'_, Any>, now: i64) -> Result<(), WalletError> {
        let escrow = Account::System(SystemAccount::Escrow).id(self.currency);
        let movements_sql = format!(
            "INSERT INTO wallet_movements
             (id, transaction_id, kind, debit_account, credit_account, amount, currency, reference, note, created_at)
             SELECT id, transaction_id, 'payment_hold', debit_account, $2, amount, $3, reference, note, $4
             FROM ({}) AS movements",
            self.backend.json_rows(
                1,
                &[
                    ("id", Text),
                    ("transaction_id", Text),
                    ("debit_account", Text),
                    ("amount", BigInt),
                    ("reference", Text),
                    ("note", Text)
                ]
            )
        );
        let movements: Vec<_> = self
            .holds
            .iter()
            .map(|hold| {
                (
                    plaza_kernel::new_id(),
                    plaza_kernel::new_id(),
                    Account::user(&hold.payer_id).id(self.currency),
                    hold.amount,
                    format!("payment_intent:{}", hold.intent_id),
                    &hold.description,
                )
            })
            .collect();
        sqlx::query(&movements_sql)
            .bind(json_text(&movements)?)
            .bind(&escrow)
            .bind(self.currency.code())
            .bind(now)
            .execute(&mut **transaction)
            .await?;
        let intents_sql = format!(
            "INSERT INTO wallet_payment_intents
             (id, payer_id, currency, amount, held, captured, fee, refunded, payee_id, status, description, created_at, updated_at)
             SELECT id, payer_id, $2, amount, amount, 0, 0, 0, NULL, 'held', description, $3, $3 FROM ({}) AS intents",
            self.backend.json_rows(1, &[("id", Text), ("payer_id", Text), ("amount", BigInt), ("description", Text)])
        );
        let intents: Vec<_> =
            self.holds.iter().map(|hold| (&hold.intent_id, &hold.payer_id, hold.amount, &hold.description)).collect();
        sqlx::query(&intents_sql)
            .bind(json_text(&intents)?)
            .bind(self.currency.code())
            .bind(now)
            .execute(&mut **transaction)
            .await?;
        Ok(())
    }
}

fn json_text<T: serde::Serialize>(rows: &T) -> Result<String, WalletError> {
    serde_json::to_string(rows).map_err(|error| WalletError::Invariant(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(funded: &[(&str, i64)]) -> HoldBatch {
        let accounts = funded
            .iter()
            .map(|(id, balance)| {
                let pin_set = id.ends_with("_with_pin");
                (id.to_string(), PayerAccount { balance: *balance, held: 0, balance_before: *balance, pin_set })
            })
            .collect();
        HoldBatch {
            currency: Currency::parse("USD").expect("USD"),
            backend: Backend::Sqlite,
            accounts,
            holds: Vec::new(),
        }
    }

    #[test]
    fn holds_run_down_the_balance_in_order_and_a_short_one_plans_nothing() {
        let mut holds = batch(&[("ann", 1_000)]);
        assert!(holds.hold("ann", 600, "order", false).is_ok());
        assert!(matches!(
            holds.hold("ann", 600, "order", false),
            Err(WalletError::InsufficientFunds { available: 400, requested: 600 })
        ));
        assert!(holds.hold("ann", 400, "order", false).is_ok());
        assert_eq!(holds.available("ann"), 0);
        assert_eq!(holds.len(), 2);
        assert!(matches!(
            holds.hold("bob", 1, "order", false),
            Err(WalletError::InsufficientFunds { available: 0, .. })
        ));
        assert_eq!(holds.accounts["ann"].held, 1_000);
    }

    #[test]
    fn a_payer_with_a_pin_is_held_only_once_it_was_verified() {
        let mut holds = batch(&[("cat_with_pin", 1_000)]);
        assert!(matches!(holds.hold("cat_with_pin", 100, "order", false), Err(WalletError::PinRequired)));
        assert!(holds.is_empty(), "nothing planned");
        assert!(holds.hold("cat_with_pin", 100, "order", true).is_ok());
        assert_eq!(holds.available("cat_with_pin"), 900);
    }
}
