//! Payment intents: how other services (rides, shop, live, mini-apps) take payment.
//!
//! `create` holds the amount: it moves from the payer's account into escrow and shows as
//! `held` in their wallet. `capture` pays part or all of the hold to a payee, minus a fee
//! to the fees account, and releases the rest to the payer; `void` releases all of it;
//! `refund` returns part or all of a capture to the payer (from the payee first, then from
//! the fee). Each state change is a conditional update of the intent's `status` in the
//! transaction that moves the money, and each call takes an idempotency key scoped to the
//! intent (or, for `create`, to the payer).

use crate::idempotency;
use crate::ledger::{self, Account, Posting, SystemAccount};
use crate::model::{parse_text, IdempotencyKey, DESCRIPTION_MAX_CHARS};
use crate::service::{invalid, wallet_updates, Wallet, WalletError};
use plaza_kernel::{Money, Timestamp};
use plaza_store::{Any, AnyRow, Row, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Where a payment intent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentIntentStatus {
    /// Funds are held in escrow.
    Held,
    /// Paid to the payee (refunds may follow).
    Captured,
    /// Released back to the payer.
    Voided,
}

impl PaymentIntentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Captured => "captured",
            Self::Voided => "voided",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "held" => Some(Self::Held),
            "captured" => Some(Self::Captured),
            "voided" => Some(Self::Voided),
            _ => None,
        }
    }
}

/// A payment intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub payer_id: String,
    pub currency: String,
    /// The amount authorised (and held while `held`).
    pub amount: i64,
    /// What escrow holds for it now.
    pub held: i64,
    pub captured: i64,
    pub fee: i64,
    pub refunded: i64,
    pub payee_id: Option<String>,
    pub status: PaymentIntentStatus,
    pub description: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const INTENT_COLUMNS: &str =
    "id, payer_id, currency, amount, held, captured, fee, refunded, payee_id, status, description, created_at, updated_at";

impl Wallet {
    /// Holds `money` from the payer's available balance for a service. (The service checks
    /// the payer's PIN with [`Wallet::authorize_payment`] when the payer asked for this.)
    pub async fn create_payment_intent(
        &self,
        payer_id: &str,
        money: Money,
        description: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<(PaymentIntent, bool), WalletError> {
        let description = parse_text(Some(description), DESCRIPTION_MAX_CHARS)
            .map_err(|reason| invalid("description", reason))?
            .ok_or_else(|| invalid("description", "say what the payment is for"))?;
        let canonical =
            json!({"amount": money.amount(), "currency": money.currency().code(), "description": description});
        let idempotent = key.map(|key| idempotency::Request::new(payer_id, key, "payment_intent.create", &canonical));
        let mut transaction = self.inner.store.begin().await?;
        if let Some(intent) = idempotency::claim(&mut transaction, idempotent.as_ref()).await? {
            return Ok((intent, true));
        }
        let now = Timestamp::now();
        let id = plaza_kernel::new_id();
        let posting = Posting::new("payment_hold", money.currency(), format!("payment_intent:{id}"))
            .with_note(Some(description.clone()))
            .movement(Account::user(payer_id), Account::System(SystemAccount::Escrow), money.amount())
            .held(payer_id, money.amount());
        let states = ledger::post(&mut transaction, &posting).await?;
        sqlx::query(&format!(
            "INSERT INTO wallet_payment_intents ({INTENT_COLUMNS})
             VALUES ($1, $2, $3, $4, $4, 0, 0, 0, NULL, 'held', $5, $6, $6)"
        ))
        .bind(&id)
        .bind(payer_id)
        .bind(money.currency().code())
        .bind(money.amount())
        .bind(&description)
        .bind(now.unix_millis())
        .execute(&mut *transaction)
        .await?;
        let intent = load(&mut transaction, &id).await?;
        let appended = self
            .append_events(
                &mut transaction,
                wallet_updates(&states, money.currency(), posting.kind, &posting.reference),
            )
            .await?;
        idempotency::complete(&mut transaction, idempotent.as_ref(), &intent).await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok((intent, false))
    }

    /// Pays `amount` (at most what is held) to `payee_id`, of which `fee` goes to the fees
    /// account, and releases the rest of the hold to the payer.
    pub async fn capture_payment_intent(
        &self,
        intent_id: &str,
        amount: i64,
        payee_id: &str,
        fee: i64,
        key: Option<&IdempotencyKey>,
    ) -> Result<(PaymentIntent, bool), WalletError> {
        if amount < 1 {
            return Err(invalid("amount", "capture at least one minor unit (or void the intent)"));
        }
        if !(0..=amount).contains(&fee) {
            return Err(invalid("fee", "the fee is between zero and the amount captured"));
        }
        let scope = format!("payment_intent:{intent_id}");
        let canonical = json!({"amount": amount, "payee_id": payee_id, "fee": fee});
        let idempotent = key.map(|key| idempotency::Request::new(&scope, key, "payment_intent.capture", &canonical));
        let mut transaction = self.inner.store.begin().await?;
        if let Some(intent) = idempotency::claim(&mut transaction, idempotent.as_ref()).await? {
            return Ok((intent, true));
        }
        let before = load(&mut transaction, intent_id).await?;
        if amount > before.amount {
            return Err(invalid("amount", format!("at most the {} held can be captured", before.amount)));
        }
        let now = Timestamp::now();
        let moved = sqlx::query(
            "UPDATE wallet_payment_intents SET status = 'captured', held = 0, captured = $2, fee = $3, payee_id = $4,
                    updated_at = $5
             WHERE id = $1 AND status = 'held'",
        )
        .bind(intent_id)
        .bind(amount)
        .bind(fee)
        .bind(payee_id)
        .bind(now.unix_millis())
        .execute(&mut *transaction)
        .await?;
        if moved.rows_affected() != 1 {
            let status = load(&mut transaction, intent_id).await?.status;
            return Err(WalletError::InvalidTransition { status: status.as_str(), action: "captured" });
        }
        let currency = self.stored_currency(&before.currency)?;
        let escrow = || Account::System(SystemAccount::Escrow);
        let posting = Posting::new("payment_capture", currency, format!("payment_intent:{intent_id}"))
            .movement(escrow(), Account::user(payee_id), amount - fee)
            .movement(escrow(), Account::System(SystemAccount::Fees), fee)
            .movement(escrow(), Account::user(&before.payer_id), before.amount - amount)
            .held(&before.payer_id, -before.amount);
        self.finish_intent_change(transaction, intent_id, posting, idempotent.as_ref()).await
    }

    /// Releases the whole hold back to the payer.
    pub async fn void_payment_intent(
        &self,
        intent_id: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<(PaymentIntent, bool), WalletError> {
        let scope = format!("payment_intent:{intent_id}");
        let idempotent = key.map(|key| idempotency::Request::new(&scope, key, "payment_intent.void", &json!({})));
        let mut transaction = self.inner.store.begin().await?;
        if let Some(intent) = idempotency::claim(&mut transaction, idempotent.as_ref()).await? {
            return Ok((intent, true));
        }
        let before = load(&mut transaction, intent_id).await?;
        let moved = sqlx::query(
            "UPDATE wallet_payment_intents SET status = 'voided', held = 0, updated_at = $2
             WHERE id = $1 AND status = 'held'",
        )
        .bind(intent_id)
        .bind(Timestamp::now().unix_millis())
        .execute(&mut *transaction)
        .await?;
        if moved.rows_affected() != 1 {
            let status = load(&mut transaction, intent_id).await?.status;
            return Err(WalletError::InvalidTransition { status: status.as_str(), action: "voided" });
        }
        let currency = self.stored_currency(&before.currency)?;
        let posting = Posting::new("payment_release", currency, format!("payment_intent:{intent_id}"))
            .movement(Account::System(SystemAccount::Escrow), Account::user(&before.payer_id), before.amount)
            .held(&before.payer_id, -before.amount);
        self.finish_intent_change(transaction, intent_id, posting, idempotent.as_ref()).await
    }

    /// Returns `amount` of a capture to the payer: from the payee's share first, then from
    /// the fee. The payee must still have it (402 otherwise).
    pub async fn refund_payment_intent(
        &self,
        intent_id: &str,
        amount: i64,
        key: Option<&IdempotencyKey>,
    ) -> Result<(PaymentIntent, bool), WalletError> {
        if amount < 1 {
            return Err(invalid("amount", "refund at least one minor unit"));
        }
        let scope = format!("payment_intent:{intent_id}");
        let idempotent =
            key.map(|key| idempotency::Request::new(&scope, key, "payment_intent.refund", &json!({"amount": amount})));
        let mut transaction = self.inner.store.begin().await?;
        if let Some(intent) = idempotency::claim(&mut transaction, idempotent.as_ref()).await? {
            return Ok((intent, true));
        }
        // The conditional update both checks the state and serialises refunds of one intent.
        let row = sqlx::query(
            "UPDATE wallet_payment_intents SET refunded = refunded + $2, updated_at = $3
             WHERE id = $1 AND status = 'captured' AND refunded + $2 <= captured
             RETURNING refunded, captured, fee, payer_id, payee_id, currency",
        )
        .bind(intent_id)
        .bind(amount)
        .bind(Timestamp::now().unix_millis())
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(row) = row else {
            let intent = load(&mut transaction, intent_id).await?;
            return match intent.status {
                PaymentIntentStatus::Captured => Err(invalid(
                    "amount",
                    format!("at most the {} not yet refunded can be refunded", intent.captured - intent.refunded),
                )),
                status => Err(WalletError::InvalidTransition { status: status.as_str(), action: "refunded" }),
            };
        };
        let refunded_now: i64 = row.try_get("refunded")?;
        let (captured, fee): (i64, i64) = (row.try_get("captured")?, row.try_get("fee")?);
        let payer_id: String = row.try_get("payer_id")?;
        let payee_id: Option<String> = row.try_get("payee_id")?;
        let payee_id = payee_id.ok_or_else(|| WalletError::Invariant("a captured intent without a payee".into()))?;
        let refunded_before = refunded_now - amount;
        let payee_share_left = (captured - fee - refunded_before).max(0);
        let from_payee = amount.min(payee_share_left);
        let currency = self.stored_currency(&row.try_get::<String, _>("currency")?)?;
        let posting = Posting::new("payment_refund", currency, format!("payment_intent:{intent_id}"))
            .movement(Account::user(&payee_id), Account::user(&payer_id), from_payee)
            .movement(Account::System(SystemAccount::Fees), Account::user(&payer_id), amount - from_payee);
        self.finish_intent_change(transaction, intent_id, posting, idempotent.as_ref()).await
    }

    /// A payment intent by id.
    pub async fn payment_intent(&self, intent_id: &str) -> Result<PaymentIntent, WalletError> {
        let row = sqlx::query(&format!("SELECT {INTENT_COLUMNS} FROM wallet_payment_intents WHERE id = $1"))
            .bind(intent_id)
            .fetch_optional(self.inner.store.read())
            .await?
            .ok_or(WalletError::PaymentIntentNotFound)?;
        intent_from_row(&row)
    }

    /// The payment intent `payer_id` created with `key`, as it stands now, if any: how a
    /// service finds a hold it took but could not record (a crash between the two).
    pub async fn payment_intent_created_with_key(
        &self,
        payer_id: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<PaymentIntent>, WalletError> {
        let row = sqlx::query(
            "SELECT result FROM wallet_idempotency
             WHERE scope = $1 AND idempotency_key = $2 AND operation = 'payment_intent.create'",
        )
        .bind(payer_id)
        .bind(key.as_str())
        .fetch_optional(self.inner.store.write())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let result: Option<String> = row.try_get("result")?;
        let Some(result) = result else { return Ok(None) };
        let created: PaymentIntent =
            serde_json::from_str(&result).map_err(|error| WalletError::Invariant(error.to_string()))?;
        self.payment_intent(&created.id).await.map(Some)
    }

    async fn finish_intent_change(
        &self,
        mut transaction: Transaction<'static, Any>,
        intent_id: &str,
        posting: Posting,
        idempotent: Option<&idempotency::Request<'_>>,
    ) -> Result<(PaymentIntent, bool), WalletError> {
        let states = ledger::post(&mut transaction, &posting).await?;
        let appended = self
            .append_events(
                &mut transaction,
                wallet_updates(&states, posting.currency, posting.kind, &posting.reference),
            )
            .await?;
        let intent = load(&mut transaction, intent_id).await?;
        idempotency::complete(&mut transaction, idempotent, &intent).await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok((intent, false))
    }
}

async fn load(transaction: &mut Transaction<'static, Any>, intent_id: &str) -> Result<PaymentIntent, WalletError> {
    let row = sqlx::query(&format!("SELECT {INTENT_COLUMNS} FROM wallet_payment_intents WHERE id = $1"))
        .bind(intent_id)
        .fetch_optional(&mut **transaction)
        .await?
        .ok_or(WalletError::PaymentIntentNotFound)?;
    intent_from_row(&row)
}

fn intent_from_row(row: &AnyRow) -> Result<PaymentIntent, WalletError> {
    let status: String = row.try_get("status")?;
    Ok(PaymentIntent {
        id: row.try_get("id")?,
        payer_id: row.try_get("payer_id")?,
        currency: row.try_get("currency")?,
        amount: row.try_get("amount")?,
        held: row.try_get("held")?,
        captured: row.try_get("captured")?,
        fee: row.try_get("fee")?,
        refunded: row.try_get("refunded")?,
        payee_id: row.try_get("payee_id")?,
        status: PaymentIntentStatus::parse(&status)
            .ok_or_else(|| WalletError::Invariant(format!("payment intent status {status:?}")))?,
        description: row.try_get("description")?,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}
