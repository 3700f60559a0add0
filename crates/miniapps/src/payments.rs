//! Pay orders: how a mini-app takes money from a Plaza user (API.md, "Mini-apps").
//!
//! The app's server creates an order for one of its users (by the user's pairwise `sub`)
//! with its `client_credentials` token; the user confirms it inside Plaza, on Plaza's own
//! pay sheet, with the PIN when one is set; the confirmation pays the app's developer at
//! once, less `PLAZA_MINIAPPS_FEE_BPS`, through the wallet's direct payments. The app
//! learns of it from a `payment.succeeded` webhook, written to the outbox in the very
//! transaction that moves the money (`webhooks.rs`), so a payment is never without its
//! webhook, nor a webhook without its payment, whatever crashes.
//!
//! Every step is decided by one conditional update of the order's row, inside the
//! transaction that moves the money:
//! - confirm: `status = 'created' AND expires_at > now` → `paid`. Two confirms at once
//!   (two taps, two nodes) pay once: the second finds the row paid and answers it as is.
//! - refund: `status = 'paid' AND refunded + amount <= amount`, so refunds racing each
//!   other never take back more than was paid.
//!
//! Creation is idempotent twice over: by `Idempotency-Key` (scoped to the app) and by
//! `out_trade_no` (unique per app): the same request again answers the first order, and
//! another request under either is refused. Unpaid orders expire after 15 minutes; the
//! expiry is read from `expires_at` at every use, and the payments job only writes it
//! down for listings.

use crate::service::{MiniApp, MiniAppError, MiniApps};
use crate::tokens::AppToken;
use crate::webhooks::{self, EventType};
use plaza_accounts::User;
use plaza_kernel::id::to_hex;
use plaza_kernel::Timestamp;
use plaza_store::{AnyRow, Row};
use plaza_wallet::{DirectPayment, DirectRefund, Pin};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The longest `out_trade_no`.
pub const OUT_TRADE_NO_MAX_CHARS: usize = 64;
/// The longest description on a pay order (Plaza's pay sheet shows it).
pub const DESCRIPTION_MAX_CHARS: usize = 128;
/// The largest pay order, in minor units.
pub const AMOUNT_MAX: i64 = 10_000_000;
/// Refunds one pay order may have.
pub const REFUNDS_PER_ORDER_MAX: i64 = 50;

/// Where a pay order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayOrderStatus {
    /// Waiting for the user's confirmation.
    Created,
    /// Paid (refunds, partial or full, may follow: see `refunded`).
    Paid,
    /// Not confirmed in time; nothing was paid.
    Expired,
}

impl PayOrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Paid => "paid",
            Self::Expired => "expired",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "created" => Some(Self::Created),
            "paid" => Some(Self::Paid),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// A pay order, as its app and its user see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PayOrder {
    pub id: String,
    pub app_id: String,
    pub app_name: String,
    pub out_trade_no: String,
    pub user_id: String,
    pub user_sub: String,
    pub amount: i64,
    pub currency: String,
    pub description: String,
    pub status: PayOrderStatus,
    /// Plaza's fee, taken from the payment (0 until paid).
    pub fee: i64,
    pub refunded: i64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub paid_at: Option<Timestamp>,
}

/// A refund of part or all of a pay order.
#[derive(Debug, Clone, PartialEq)]
pub struct PayRefund {
    pub id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub created_at: Timestamp,
}

/// What an app's server asks for.
#[derive(Debug, Clone)]
pub struct NewPayOrder {
    pub out_trade_no: String,
    pub user_sub: String,
    pub amount: i64,
    pub currency: String,
    pub description: String,
}

const ORDER_COLUMNS: &str = "o.id, o.app_id, a.name AS app_name, o.out_trade_no, o.user_id, o.user_sub, o.amount,
     o.currency, o.description, o.status, o.fee, o.refunded, o.request_hash, o.created_at, o.expires_at, o.paid_at";

impl MiniApps {
    /// Creates a pay order for the app's user `order.user_sub`; `Ok((order, true))` when
    /// this is a retry of an earlier request (by key or by `out_trade_no`).
    pub async fn create_pay_order(
        &self,
        token: &AppToken,
        order: NewPayOrder,
        key: Option<&str>,
    ) -> Result<(PayOrder, bool), MiniAppError> {
        token.require_scope("payments")?;
        let app = &token.app;
        let checked = self.check_new_order(app, &order).await?;
        let hash = request_hash(&json!({
            "out_trade_no": order.out_trade_no, "user_sub": order.user_sub, "amount": order.amount,
            "currency": order.currency, "description": checked.description,
        }));
        if let Some(earlier) = self.earlier_order(app, key, &order.out_trade_no, &hash).await? {
            return Ok((earlier, true));
        }
        let now = Timestamp::now().unix_millis();
        let ttl = i64::try_from(self.inner().config.payments.order_ttl.as_millis()).unwrap_or(i64::MAX);
        let id = plaza_kernel::new_id();
        // Both unique constraints (out_trade_no, and the key) are covered by the bare
        // DO NOTHING: a concurrent twin inserts nothing and reads the winner below.
        let inserted = sqlx::query(
            "INSERT INTO miniapp_pay_orders (id, app_id, out_trade_no, user_id, user_sub, amount, currency,
                 description, status, fee, refunded, idempotency_key, request_hash, created_at, expires_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'created', 0, 0, $9, $10, $11, $12, $11)
             ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(&app.id)
        .bind(&order.out_trade_no)
        .bind(&checked.user_id)
        .bind(&order.user_sub)
        .bind(order.amount)
        .bind(&order.currency)
        .bind(&checked.description)
        .bind(key)
        .bind(&hash)
        .bind(now)
        .bind(now.saturating_add(ttl))
        .execute(self.inner().store.write())
        .await?;
        if inserted.rows_affected() == 0 {
            return match self.earlier_order(app, key, &order.out_trade_no, &hash).await? {
                Some(earlier) => Ok((earlier, true)),
                None => Err(MiniAppError::Invariant("a pay order insert conflicted with nothing".into())),
            };
        }
        Ok((self.find_order("o.id = $1", &[&id]).await?.ok_or(MiniAppError::PayOrderNotFound)?, false))
    }

    /// A pay order of `app` (for its server).
    pub async fn pay_order_for_app(&self, app: &MiniApp, id: &str) -> Result<PayOrder, MiniAppError> {
        self.find_order("o.id = $1 AND o.app_id = $2", &[id, &app.id]).await?.ok_or(MiniAppError::PayOrderNotFound)
    }

    /// A pay order `user` is asked to pay (for Plaza's pay sheet).
    pub async fn pay_order_for_user(&self, user: &User, id: &str) -> Result<PayOrder, MiniAppError> {
        self.find_order("o.id = $1 AND o.user_id = $2", &[id, &user.id]).await?.ok_or(MiniAppError::PayOrderNotFound)
    }

    /// The user's confirmation: pays the developer now, less the fee, and writes the
    /// `payment.succeeded` webhook with it. A paid order confirmed again is answered as it
    /// is, moving nothing (a retry, or the loser of two concurrent confirms).
    pub async fn confirm_pay_order(&self, user: &User, id: &str, pin: Option<&Pin>) -> Result<PayOrder, MiniAppError> {
        let order = self.pay_order_for_user(user, id).await?;
        match order.status {
            PayOrderStatus::Paid => return Ok(order),
            PayOrderStatus::Expired => return Err(MiniAppError::PayOrderExpired),
            PayOrderStatus::Created => {}
        }
        let wallet = &self.inner().wallet;
        wallet.authorize_payment(user, pin).await?;
        let app = self.app(&order.app_id).await?;
        let money = wallet.money(order.amount, &order.currency)?;
        let fee = self.inner().config.payments.fee_bps.of(order.amount);
        let now = Timestamp::now();
        let mut transaction = self.inner().store.begin().await?;
        // The order's row first, then the wallet's accounts (in id order, by the ledger):
        // every confirm locks in this one order.
        let claimed = sqlx::query(
            "UPDATE miniapp_pay_orders SET status = 'paid', fee = $2, paid_at = $3, updated_at = $3
             WHERE id = $1 AND status = 'created' AND expires_at > $3",
        )
        .bind(id)
        .bind(fee)
        .bind(now.unix_millis())
        .execute(&mut *transaction)
        .await?;
        if claimed.rows_affected() != 1 {
            drop(transaction);
            let order = self.pay_order_for_user(user, id).await?;
            return match order.status {
                PayOrderStatus::Paid => Ok(order),
                _ => Err(MiniAppError::PayOrderExpired),
            };
        }
        let payment = DirectPayment {
            payer_id: &user.id,
            payee_id: &app.developer_id,
            money,
            fee,
            reference: format!("miniapp_order:{id}"),
            note: Some(format!("{} · {}", app.name, order.description)),
        };
        let appended = wallet.pay_in_transaction(&mut transaction, &payment).await?;
        let data = json!({
            "order_id": order.id, "out_trade_no": order.out_trade_no,
            "amount": order.amount, "currency": order.currency,
        });
        self.commit_with_webhook(transaction, appended, &app, EventType::PaymentSucceeded, &order.id, data, now)
            .await?;
        self.pay_order_for_user(user, id).await
    }

    /// Refunds `amount` of a paid order to its user, from the developer's wallet (and
    /// Plaza's fee, once the developer's share is used up), with `refund.succeeded`.
    pub async fn refund_pay_order(
        &self,
        token: &AppToken,
        id: &str,
        amount: i64,
        key: Option<&str>,
    ) -> Result<(PayRefund, bool), MiniAppError> {
        token.require_scope("payments")?;
        let app = &token.app;
        if !(1..=AMOUNT_MAX).contains(&amount) {
            return Err(invalid("amount", format!("a whole number of minor units from 1 to {AMOUNT_MAX}")));
        }
        let order = self.pay_order_for_app(app, id).await?;
        let hash = request_hash(&json!({"order_id": id, "amount": amount}));
        if let Some(earlier) = self.earlier_refund(id, key, &hash).await? {
            return Ok((earlier, true));
        }
        let now = Timestamp::now();
        let refund_id = plaza_kernel::new_id();
        let mut transaction = self.inner().store.begin().await?;
        // The key first: a concurrent twin waits on its unique index and then inserts
        // nothing, and reads the winner once this transaction is gone.
        let claimed = sqlx::query(
            "INSERT INTO miniapp_refunds (id, order_id, app_id, amount, currency, idempotency_key, request_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT DO NOTHING",
        )
        .bind(&refund_id)
        .bind(id)
        .bind(&app.id)
        .bind(amount)
        .bind(&order.currency)
        .bind(key)
        .bind(&hash)
        .bind(now.unix_millis())
        .execute(&mut *transaction)
        .await?;
        if claimed.rows_affected() != 1 {
            drop(transaction);
            return self
                .earlier_refund(id, key, &hash)
                .await?
                .map(|earlier| (earlier, true))
                .ok_or_else(|| MiniAppError::Invariant("a refund insert conflicted with nothing".into()));
        }
        let row = sqlx::query(
            "UPDATE miniapp_pay_orders SET refunded = refunded + $2, refunds = refunds + 1, updated_at = $3
             WHERE id = $1 AND status = 'paid' AND refunded + $2 <= amount AND refunds < $4
             RETURNING refunded, amount, fee",
        )
        .bind(id)
        .bind(amount)
        .bind(now.unix_millis())
        .bind(REFUNDS_PER_ORDER_MAX)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(row) = row else {
            drop(transaction);
            let order = self.pay_order_for_app(app, id).await?;
            return Err(match order.status {
                PayOrderStatus::Paid if order.refunded + amount <= order.amount => {
                    invalid("amount", format!("a pay order takes at most {REFUNDS_PER_ORDER_MAX} refunds"))
                }
                PayOrderStatus::Paid => {
                    MiniAppError::RefundExceedsPayment { refundable: order.amount - order.refunded }
                }
                _ => MiniAppError::PayOrderNotPaid,
            });
        };
        let (refunded_now, paid, fee): (i64, i64, i64) =
            (row.try_get("refunded")?, row.try_get("amount")?, row.try_get("fee")?);
        let wallet = &self.inner().wallet;
        let currency = wallet.money(paid, &order.currency)?.currency();
        let refund = DirectRefund {
            payer_id: &order.user_id,
            payee_id: &app.developer_id,
            currency,
            amount,
            paid,
            fee,
            refunded_before: refunded_now - amount,
            reference: format!("miniapp_order:{id}"),
        };
        let appended = wallet.refund_in_transaction(&mut transaction, &refund).await?;
        let data = json!({
            "order_id": order.id, "out_trade_no": order.out_trade_no,
            "amount": amount, "currency": order.currency, "refund_id": refund_id,
        });
        self.commit_with_webhook(transaction, appended, app, EventType::RefundSucceeded, &order.id, data, now).await?;
        Ok((PayRefund { id: refund_id, order_id: id.into(), amount, currency: order.currency, created_at: now }, false))
    }

    /// Writes the webhook into the outbox, commits it with the money, publishes the
    /// wallet's events and wakes this node's sender: the end of every money-moving step.
    #[allow(clippy::too_many_arguments)]
    async fn commit_with_webhook(
        &self,
        mut transaction: plaza_store::Transaction<'static, plaza_store::Any>,
        appended: plaza_events::Appended,
        app: &MiniApp,
        event: EventType,
        order_id: &str,
        data: serde_json::Value,
        now: Timestamp,
    ) -> Result<(), MiniAppError> {
        webhooks::enqueue(&mut transaction, self.retry_window_ms(), app, event, order_id, data, now).await?;
        transaction.commit().await?;
        self.inner().events.publish(appended);
        self.wake_deliveries();
        Ok(())
    }

    /// Marks unpaid orders past their time as expired (what every read already shows).
    pub async fn expire_pay_orders(&self) -> Result<u64, MiniAppError> {
        let now = Timestamp::now().unix_millis();
        let done = sqlx::query(
            "UPDATE miniapp_pay_orders SET status = 'expired', updated_at = $1
             WHERE status = 'created' AND expires_at <= $1",
        )
        .bind(now)
        .execute(self.inner().store.write())
        .await?;
        Ok(done.rows_affected())
    }

    async fn check_new_order(&self, app: &MiniApp, order: &NewPayOrder) -> Result<CheckedOrder, MiniAppError> {
        let out_trade_no = &order.out_trade_no;
        if out_trade_no.is_empty()
            || out_trade_no.len() > OUT_TRADE_NO_MAX_CHARS
            || !out_trade_no.bytes().all(|byte| byte.is_ascii_graphic())
        {
            return Err(invalid("out_trade_no", "1 to 64 printable ASCII characters without spaces"));
        }
        if !(1..=AMOUNT_MAX).contains(&order.amount) {
            return Err(invalid("amount", format!("a whole number of minor units from 1 to {AMOUNT_MAX}")));
        }
        self.inner().wallet.money(order.amount, &order.currency)?;
        let description = order.description.trim();
        if description.is_empty()
            || description.chars().count() > DESCRIPTION_MAX_CHARS
            || description.chars().any(char::is_control)
            || plaza_kernel::text::has_bidi_control(description)
        {
            return Err(invalid("description", "1 to 128 characters, no control characters"));
        }
        let grant = sqlx::query("SELECT user_id, scopes FROM miniapp_grants WHERE app_id = $1 AND sub = $2")
            .bind(&app.id)
            .bind(&order.user_sub)
            .fetch_optional(self.inner().store.read())
            .await?
            .ok_or_else(|| invalid("user_sub", "no user of this app has this sub"))?;
        let scopes: String = grant.try_get("scopes")?;
        let scopes: Vec<String> = serde_json::from_str(&scopes)
            .map_err(|error| MiniAppError::Invariant(format!("a grant's scopes: {error}")))?;
        if !scopes.iter().any(|scope| scope == "payments") {
            return Err(MiniAppError::InsufficientScope { scope: "payments" });
        }
        Ok(CheckedOrder { user_id: grant.try_get("user_id")?, description: description.to_string() })
    }

    /// The order an earlier request with this key or `out_trade_no` made: the same one
    /// again if the request was the same, a refusal if it was not.
    async fn earlier_order(
        &self,
        app: &MiniApp,
        key: Option<&str>,
        out_trade_no: &str,
        hash: &str,
    ) -> Result<Option<PayOrder>, MiniAppError> {
        if let Some(key) = key {
            let by_key = self.order_where("o.app_id = $1 AND o.idempotency_key = $2", &[&app.id, key]).await?;
            if let Some((order, earlier_hash)) = by_key {
                return match earlier_hash == hash {
                    true => Ok(Some(order)),
                    false => Err(MiniAppError::IdempotencyKeyReused),
                };
            }
        }
        let by_number = self.order_where("o.app_id = $1 AND o.out_trade_no = $2", &[&app.id, out_trade_no]).await?;
        match by_number {
            Some((order, earlier_hash)) if earlier_hash == hash => Ok(Some(order)),
            Some(_) => Err(MiniAppError::OutTradeNoTaken { out_trade_no: out_trade_no.to_string() }),
            None => Ok(None),
        }
    }

    async fn earlier_refund(
        &self,
        order_id: &str,
        key: Option<&str>,
        hash: &str,
    ) -> Result<Option<PayRefund>, MiniAppError> {
        let Some(key) = key else { return Ok(None) };
        let row = sqlx::query(
            "SELECT id, order_id, amount, currency, request_hash, created_at FROM miniapp_refunds
             WHERE order_id = $1 AND idempotency_key = $2",
        )
        .bind(order_id)
        .bind(key)
        .fetch_optional(self.inner().store.write())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let earlier_hash: String = row.try_get("request_hash")?;
        if earlier_hash != hash {
            return Err(MiniAppError::IdempotencyKeyReused);
        }
        Ok(Some(PayRefund {
            id: row.try_get("id")?,
            order_id: row.try_get("order_id")?,
            amount: row.try_get("amount")?,
            currency: row.try_get("currency")?,
            created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        }))
    }

    async fn find_order(&self, condition: &str, values: &[&str]) -> Result<Option<PayOrder>, MiniAppError> {
        Ok(self.order_where(condition, values).await?.map(|(order, _)| order))
    }

    /// The order matching `condition` (over `o`, the order, with `$1`, `$2` bound to
    /// `values`), with the hash of the request that made it. Read from the writer, so a
    /// retry right after a commit sees it.
    async fn order_where(&self, condition: &str, values: &[&str]) -> Result<Option<(PayOrder, String)>, MiniAppError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM miniapp_pay_orders o JOIN miniapps a ON a.id = o.app_id WHERE {condition}"
        );
        let mut query = sqlx::query(&sql);
        for value in values {
            query = query.bind(*value);
        }
        let row = query.fetch_optional(self.inner().store.write()).await?;
        row.as_ref().map(|row| Ok((order_from_row(row)?, row.try_get("request_hash")?))).transpose()
    }
}

struct CheckedOrder {
    user_id: String,
    description: String,
}

fn invalid(field: &str, reason: impl Into<String>) -> MiniAppError {
    MiniAppError::InvalidField { field: field.to_string(), reason: reason.into() }
}

fn request_hash(canonical: &serde_json::Value) -> String {
    to_hex(&Sha256::digest(canonical.to_string().as_bytes()))
}

fn order_from_row(row: &AnyRow) -> Result<PayOrder, MiniAppError> {
    let status: String = row.try_get("status")?;
    let status = PayOrderStatus::parse(&status)
        .ok_or_else(|| MiniAppError::Invariant(format!("a pay order with status {status:?}")))?;
    let expires_at = Timestamp::from_unix_millis(row.try_get("expires_at")?);
    // An unpaid order past its time is expired whether or not the job has written it.
    let status = match status {
        PayOrderStatus::Created if expires_at.unix_millis() <= Timestamp::now().unix_millis() => {
            PayOrderStatus::Expired
        }
        status => status,
    };
    Ok(PayOrder {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        app_name: row.try_get("app_name")?,
        out_trade_no: row.try_get("out_trade_no")?,
        user_id: row.try_get("user_id")?,
        user_sub: row.try_get("user_sub")?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        description: row.try_get("description")?,
        status,
        fee: row.try_get("fee")?,
        refunded: row.try_get("refunded")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        expires_at,
        paid_at: row.try_get::<Option<i64>, _>("paid_at")?.map(Timestamp::from_unix_millis),
    })
}
