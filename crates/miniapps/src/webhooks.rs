//! Webhooks to mini-app servers, per the Standard Webhooks specification.
//!
//! **An outbox, not a send.** A webhook is a row of `miniapp_webhook_deliveries`, inserted
//! by [`enqueue`] in the transaction that moves the money it reports, so it exists exactly
//! when the payment does. Every node runs [`MiniApps::deliver_webhooks_continually`],
//! which sends due rows; a commit on a node wakes its sender at once, others find the row
//! within `job_interval`. A SIGKILL between commit and send loses nothing: the row waits.
//!
//! **One node per attempt.** A sender claims a row with a conditional update that sets a
//! lease (`lease_until`, `lease_owner`) and counts the attempt, and records the outcome
//! only if it still holds that lease and attempt. A node that dies mid-send leaves a lease
//! that runs out, and another node tries again with the same `webhook-id`, so receivers
//! see at-least-once delivery and deduplicate by the id, as the specification expects.
//!
//! **Nobody waits for a slow receiver.** Each attempt runs in its own task with a time-out
//! (`webhook_timeout`), at most [`IN_FLIGHT_MAX`] per node and [`IN_FLIGHT_PER_APP_MAX`]
//! per app, so an app whose server hangs uses a few slots for a few seconds and every
//! other app's deliveries go on. Redirects are not followed and the answer's body is
//! read only up to [`RESPONSE_EXCERPT_MAX`] bytes for the delivery log.
//!
//! **Retries** (until a 2xx): the first after `PLAZA_WEBHOOK_RETRY_BASE_MS`, then doubling
//! (capped at [`RETRY_DELAY_MAX`]), each with ±25 % jitter so that receivers coming back
//! from an outage are not hit by every sender at once, for `webhook_give_up_after` (3
//! days from its creation or its last redelivery); then the delivery is `failed`, and
//! the developer can redeliver it by hand.
//!
//! Each delivery is signed at each attempt with the time of the attempt (receivers refuse
//! old timestamps): `webhook-signature: v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>`
//! under the app's `webhook_secret` (`whsec_` + base64 of the key).

use crate::service::{MiniApp, MiniAppError, MiniApps};
use base64::Engine;
use hmac::{Hmac, Mac};
use plaza_accounts::User;
use plaza_kernel::Timestamp;
use plaza_store::{Any, AnyRow, Row, Transaction};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// Attempts one node has in flight at once.
pub const IN_FLIGHT_MAX: usize = 64;
/// Attempts in flight for one app on one node: a hanging receiver holds at most these.
pub const IN_FLIGHT_PER_APP_MAX: usize = 4;
/// Due deliveries one round of the sender reads at most, oldest first, before it keeps
/// [`IN_FLIGHT_PER_APP_MAX`] of each app: a bound on the round's cost whatever the backlog.
const DUE_SCAN_MAX: usize = 1_000;
/// The longest wait between two attempts.
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(6 * 3600);
/// What the delivery log keeps of a receiver's answer.
pub const RESPONSE_EXCERPT_MAX: usize = 512;
/// Deliveries one page of the log holds, at most.
pub const LOG_PAGE_MAX: i64 = 100;
/// Attempts the log shows per delivery (the newest).
pub const ATTEMPTS_SHOWN_MAX: i64 = 20;
/// How often the sender also expires unpaid pay orders.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);

/// What a webhook reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    PaymentSucceeded,
    RefundSucceeded,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentSucceeded => "payment.succeeded",
            Self::RefundSucceeded => "refund.succeeded",
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not yet answered with a 2xx; retried.
    Pending,
    Delivered,
    /// Given up after `webhook_give_up_after`; a redelivery makes it pending again.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A delivery as the developer's log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The `webhook-id`, the same at every attempt.
    pub id: String,
    pub event_type: String,
    pub order_id: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// The body sent, exactly as signed.
    pub payload: String,
    /// The newest attempts first, at most [`ATTEMPTS_SHOWN_MAX`].
    pub attempt_log: Vec<Attempt>,
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub number: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    pub duration_ms: i64,
    pub at: Timestamp,
}

/// The sender's state on this node: the wake-up and the in-flight counts.
#[derive(Debug)]
pub(crate) struct Sender {
    wake: Notify,
    slots: Arc<Semaphore>,
    per_app: Mutex<HashMap<String, usize>>,
    /// Names this node's leases.
    node: String,
}

impl Default for Sender {
    fn default() -> Self {
        Self {
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(IN_FLIGHT_MAX)),
            per_app: Mutex::new(HashMap::new()),
            node: plaza_kernel::new_id(),
        }
    }
}

/// Writes a webhook for `app` into the outbox, in the caller's transaction. An app
/// without a webhook URL gets none (it can poll `GET /pay/orders/{id}`).
pub(crate) async fn enqueue(
    transaction: &mut Transaction<'static, Any>,
    retry_window: i64,
    app: &MiniApp,
    event_type: EventType,
    order_id: &str,
    data: Value,
    now: Timestamp,
) -> Result<(), MiniAppError> {
    if app.webhook_url.is_none() {
        return Ok(());
    }
    let id = format!("msg_{}", plaza_kernel::new_id());
    let payload = json!({"type": event_type.as_str(), "timestamp": now.to_rfc3339(), "data": data}).to_string();
    sqlx::query(
        "INSERT INTO miniapp_webhook_deliveries (id, app_id, event_type, order_id, payload, status, attempts,
             next_attempt_at, lease_until, retry_until, created_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, 0, $7, $6)",
    )
    .bind(&id)
    .bind(&app.id)
    .bind(event_type.as_str())
    .bind(order_id)
    .bind(&payload)
    .bind(now.unix_millis())
    .bind(now.unix_millis().saturating_add(retry_window))
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// The `webhook-signature` value for one attempt (Standard Webhooks, `v1`).
pub fn sign(secret: &str, id: &str, timestamp_s: i64, body: &str) -> Result<String, MiniAppError> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|error| MiniAppError::Invariant(format!("a webhook secret that is not base64: {error}")))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|error| MiniAppError::Invariant(format!("a webhook key HMAC refuses: {error}")))?;
    mac.update(format!("{id}.{timestamp_s}.{body}").as_bytes());
    Ok(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())))
}

/// The wait after the `attempts`-th failed attempt, before jitter.
pub fn retry_delay(base: Duration, attempts: i64) -> Duration {
    let doublings = u32::try_from((attempts - 1).clamp(0, 30)).unwrap_or(30);
    base.saturating_mul(1 << doublings).min(RETRY_DELAY_MAX)
}

/// `delay` scaled by a factor drawn uniformly from [0.75, 1.25].
fn jittered(delay: Duration) -> Duration {
    let random = u64::from_le_bytes(plaza_kernel::random_token_bytes::<8>());
    let factor = 0.75 + (random as f64 / u64::MAX as f64) * 0.5;
    delay.mul_f64(factor)
}

const DELIVERY_COLUMNS: &str = "id, app_id, event_type, order_id, payload, status, attempts, last_status_code,
     last_error, next_attempt_at, delivered_at, created_at";

impl MiniApps {
    /// How long a delivery is retried, in milliseconds, from its creation or redelivery.
    pub(crate) fn retry_window_ms(&self) -> i64 {
        i64::try_from(self.inner().config.payments.webhook_give_up_after.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// Wakes this node's sender (after a commit that wrote a webhook).
    pub(crate) fn wake_deliveries(&self) {
        self.inner().sender.wake.notify_one();
    }

    /// Sends due webhooks for ever (see the module doc); every node runs one.
    pub async fn deliver_webhooks_continually(self) {
        let payments = self.inner().config.payments.clone();
        let client = match reqwest::Client::builder()
            .timeout(payments.webhook_timeout)
            .connect_timeout(payments.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Plaza-Webhooks/1")
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!("no HTTP client for webhooks ({error}); webhooks are not sent from this node");
                return;
            }
        };
        let mut last_expiry = Instant::now() - EXPIRY_INTERVAL;
        loop {
            if let Err(error) = self.start_due_attempts(&client).await {
                tracing::warn!("could not look for due webhooks: {error}");
            }
            if last_expiry.elapsed() >= EXPIRY_INTERVAL {
                last_expiry = Instant::now();
                if let Err(error) = self.expire_pay_orders().await {
                    tracing::warn!("could not expire unpaid pay orders: {error}");
                }
            }
            tokio::select! {
                () = self.inner().sender.wake.notified() => {}
                () = tokio::time::sleep(payments.job_interval) => {}
            }
        }
    }

    /// Claims due deliveries, as many as there are free slots, and starts an attempt for
    /// each in its own task.
    ///
    /// The due rows are read without the apps already at their in-flight limit on this
    /// node, and at most as many per app as it has room for: otherwise a hanging
    /// receiver's backlog, oldest first, fills the whole read and every other app waits
    /// behind it although slots are free.
    async fn start_due_attempts(&self, client: &reqwest::Client) -> Result<(), MiniAppError> {
        let sender = &self.inner().sender;
        let free = sender.slots.available_permits();
        if free == 0 {
            return Ok(());
        }
        let now = Timestamp::now().unix_millis();
        let full = self.apps_at_their_limit();
        let not_full = if full.is_empty() {
            String::new()
        } else {
            format!(" AND app_id NOT IN ({})", plaza_store::numbered_parameters(4, full.len()))
        };
        let sql = format!(
            "SELECT id, app_id FROM (
                 SELECT id, app_id, next_attempt_at,
                        ROW_NUMBER() OVER (PARTITION BY app_id ORDER BY next_attempt_at, id) AS place_in_app
                 FROM (SELECT id, app_id, next_attempt_at FROM miniapp_webhook_deliveries
                       WHERE status = 'pending' AND next_attempt_at <= $1 AND lease_until <= $1{not_full}
                       ORDER BY next_attempt_at LIMIT $3) oldest_due
             ) due
             WHERE place_in_app <= $2 ORDER BY next_attempt_at, id"
        );
        let mut query = sqlx::query(&sql)
            .bind(now)
            .bind(i64::try_from(IN_FLIGHT_PER_APP_MAX).unwrap_or(i64::MAX))
            .bind(i64::try_from(DUE_SCAN_MAX).unwrap_or(i64::MAX));
        for app_id in &full {
            query = query.bind(app_id);
        }
        let due = query.fetch_all(self.inner().store.read()).await?;
        let lease = self.inner().config.payments.webhook_timeout + Duration::from_secs(5);
        for row in due {
            let (id, app_id): (String, String) = (row.try_get("id")?, row.try_get("app_id")?);
            let Ok(permit) = sender.slots.clone().try_acquire_owned() else { break };
            if !self.take_app_slot(&app_id) {
                continue;
            }
            let claimed = sqlx::query(
                "UPDATE miniapp_webhook_deliveries SET lease_until = $2, lease_owner = $3, attempts = attempts + 1
                 WHERE id = $1 AND status = 'pending' AND next_attempt_at <= $4 AND lease_until <= $4
                 RETURNING attempts",
            )
            .bind(&id)
            .bind(now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2))
            .bind(&sender.node)
            .bind(now)
            .fetch_optional(self.inner().store.write())
            .await;
            let attempt = match claimed {
                Ok(Some(row)) => row.try_get::<i64, _>("attempts")?,
                Ok(None) => {
                    self.give_app_slot(&app_id);
                    continue;
                }
                Err(error) => {
                    self.give_app_slot(&app_id);
                    return Err(error.into());
                }
            };
            let (miniapps, client) = (self.clone(), client.clone());
            tokio::spawn(async move {
                if let Err(error) = miniapps.attempt(&client, &id, attempt).await {
                    tracing::warn!(delivery = %id, "a webhook attempt could not be recorded: {error}");
                }
                miniapps.give_app_slot(&app_id);
                drop(permit);
                miniapps.wake_deliveries();
            });
        }
        Ok(())
    }

    /// The apps with [`IN_FLIGHT_PER_APP_MAX`] attempts in flight on this node.
    fn apps_at_their_limit(&self) -> Vec<String> {
        let per_app = self.inner().sender.per_app.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        per_app.iter().filter(|(_, count)| **count >= IN_FLIGHT_PER_APP_MAX).map(|(app_id, _)| app_id.clone()).collect()
    }

    fn take_app_slot(&self, app_id: &str) -> bool {
        let mut per_app = self.inner().sender.per_app.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = per_app.entry(app_id.to_string()).or_insert(0);
        if *count >= IN_FLIGHT_PER_APP_MAX {
            return false;
        }
        *count += 1;
        true
    }

    fn give_app_slot(&self, app_id: &str) {
        let mut per_app = self.inner().sender.per_app.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = per_app.get_mut(app_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_app.remove(app_id);
            }
        }
    }

    /// One attempt of a delivery this node has claimed, and its outcome recorded.
    async fn attempt(&self, client: &reqwest::Client, id: &str, attempt: i64) -> Result<(), MiniAppError> {
        let row = sqlx::query(
            "SELECT d.payload, d.retry_until, a.webhook_url, a.webhook_secret
             FROM miniapp_webhook_deliveries d JOIN miniapps a ON a.id = d.app_id WHERE d.id = $1",
        )
        .bind(id)
        .fetch_one(self.inner().store.read())
        .await?;
        let payload: String = row.try_get("payload")?;
        let retry_until: i64 = row.try_get("retry_until")?;
        let url: Option<String> = row.try_get("webhook_url")?;
        let secret: String = row.try_get("webhook_secret")?;
        let started = Instant::now();
        let outcome = match url {
            None => Outcome::Refused("the app has no webhook URL any more".into()),
            Some(url) => send(client, &url, id, &secret, &payload).await?,
        };
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.record(id, attempt, retry_until, &outcome, duration_ms).await
    }

    /// Writes an attempt's outcome, if this node still holds the delivery's lease for it.
    async fn record(
        &self,
        id: &str,
        attempt: i64,
        retry_until: i64,
        outcome: &Outcome,
        duration_ms: i64,
    ) -> Result<(), MiniAppError> {
        let payments = &self.inner().config.payments;
        let now = Timestamp::now().unix_millis();
        let (status_code, error, excerpt) = outcome.parts();
        let delay = jittered(retry_delay(payments.webhook_retry_base, attempt));
        let next = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let status = match outcome {
            Outcome::Answered { code, .. } if (200..300).contains(code) => DeliveryStatus::Delivered,
            _ if next >= retry_until => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        };
        let mut transaction = self.inner().store.begin().await?;
        let updated = sqlx::query(
            "UPDATE miniapp_webhook_deliveries
             SET status = $4, last_status_code = $5, last_error = $6, last_attempt_at = $7,
                 next_attempt_at = $8, delivered_at = CASE WHEN $4 = 'delivered' THEN $7 ELSE delivered_at END,
                 lease_until = 0, lease_owner = NULL
             WHERE id = $1 AND lease_owner = $2 AND attempts = $3",
        )
        .bind(id)
        .bind(&self.inner().sender.node)
        .bind(attempt)
        .bind(status.as_str())
        .bind(status_code)
        .bind(&error)
        .bind(now)
        .bind(next)
        .execute(&mut *transaction)
        .await?;
        if updated.rows_affected() == 1 {
            sqlx::query(
                "INSERT INTO miniapp_webhook_attempts (delivery_id, number, status_code, error, response_excerpt,
                     duration_ms, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(attempt)
            .bind(status_code)
            .bind(&error)
            .bind(&excerpt)
            .bind(duration_ms)
            .bind(now)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// The app's delivery log, newest first (for its developer).
    pub async fn webhook_deliveries(
        &self,
        developer: &User,
        app_id: &str,
        limit: i64,
        before: Option<&str>,
    ) -> Result<(Vec<Delivery>, Option<String>), MiniAppError> {
        self.developers_app(developer, app_id).await?;
        let limit = limit.clamp(1, LOG_PAGE_MAX);
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM miniapp_webhook_deliveries
             WHERE app_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(app_id)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(self.inner().store.read())
        .await?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows.iter().take(usize::try_from(limit).unwrap_or(0)) {
            deliveries.push(self.delivery_from_row(row).await?);
        }
        let next = match rows.len() as i64 > limit {
            true => deliveries.last().map(|delivery| delivery.id.clone()),
            false => None,
        };
        Ok((deliveries, next))
    }

    /// Sends a delivery again, now, with the same `webhook-id` (a delivered or failed one
    /// too); one being attempted right now is left to that attempt.
    pub async fn redeliver(&self, developer: &User, app_id: &str, delivery_id: &str) -> Result<Delivery, MiniAppError> {
        self.developers_app(developer, app_id).await?;
        let now = Timestamp::now().unix_millis();
        sqlx::query(
            "UPDATE miniapp_webhook_deliveries SET status = 'pending', next_attempt_at = $3, retry_until = $4
             WHERE id = $1 AND app_id = $2 AND lease_until <= $3",
        )
        .bind(delivery_id)
        .bind(app_id)
        .bind(now)
        .bind(now.saturating_add(self.retry_window_ms()))
        .execute(self.inner().store.write())
        .await?;
        self.wake_deliveries();
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM miniapp_webhook_deliveries WHERE id = $1 AND app_id = $2"
        ))
        .bind(delivery_id)
        .bind(app_id)
        .fetch_optional(self.inner().store.write())
        .await?
        .ok_or(MiniAppError::WebhookDeliveryNotFound)?;
        self.delivery_from_row(&row).await
    }

    async fn developers_app(&self, developer: &User, app_id: &str) -> Result<MiniApp, MiniAppError> {
        let app = self.app(app_id).await?;
        if app.developer_id != developer.id {
            return Err(MiniAppError::NotDeveloper { action: "read its webhook deliveries" });
        }
        Ok(app)
    }

    async fn delivery_from_row(&self, row: &AnyRow) -> Result<Delivery, MiniAppError> {
        let id: String = row.try_get("id")?;
        let status: String = row.try_get("status")?;
        let status = DeliveryStatus::parse(&status)
            .ok_or_else(|| MiniAppError::Invariant(format!("a webhook delivery with status {status:?}")))?;
        let attempts = sqlx::query(
            "SELECT number, status_code, error, response_excerpt, duration_ms, at FROM miniapp_webhook_attempts
             WHERE delivery_id = $1 ORDER BY number DESC, at DESC LIMIT $2",
        )
        .bind(&id)
        .bind(ATTEMPTS_SHOWN_MAX)
        .fetch_all(self.inner().store.read())
        .await?;
        let attempt_log = attempts
            .iter()
            .map(|attempt| {
                Ok(Attempt {
                    number: attempt.try_get("number")?,
                    status_code: attempt.try_get("status_code")?,
                    error: attempt.try_get("error")?,
                    response_excerpt: attempt.try_get("response_excerpt")?,
                    duration_ms: attempt.try_get("duration_ms")?,
                    at: Timestamp::from_unix_millis(attempt.try_get("at")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Delivery {
            id,
            event_type: row.try_get("event_type")?,
            order_id: row.try_get("order_id")?,
            status,
            attempts: row.try_get("attempts")?,
            last_status_code: row.try_get("last_status_code")?,
            last_error: row.try_get("last_error")?,
            next_attempt_at: match status {
                DeliveryStatus::Pending => Some(Timestamp::from_unix_millis(row.try_get("next_attempt_at")?)),
                _ => None,
            },
            delivered_at: row.try_get::<Option<i64>, _>("delivered_at")?.map(Timestamp::from_unix_millis),
            created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
            payload: row.try_get("payload")?,
            attempt_log,
        })
    }
}

/// How one attempt ended.
enum Outcome {
    Answered {
        code: i64,
        excerpt: String,
    },
    /// No answer: refused connection, time-out, a bad URL.
    Failed(String),
    /// Not sent at all.
    Refused(String),
}

impl Outcome {
    fn parts(&self) -> (Option<i64>, Option<String>, Option<String>) {
        match self {
            Self::Answered { code, excerpt } => {
                let error = (!(200..300).contains(code)).then(|| format!("answered {code}"));
                (Some(*code), error, Some(excerpt.clone()).filter(|text| !text.is_empty()))
            }
            Self::Failed(error) | Self::Refused(error) => (None, Some(error.clone()), None),
        }
    }
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    secret: &str,
    payload: &str,
) -> Result<Outcome, MiniAppError> {
    let timestamp = Timestamp::now().unix_millis() / 1000;
    let signature = sign(secret, id, timestamp, payload)?;
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(payload.to_string())
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => return Ok(Outcome::Failed(describe(&error))),
    };
    let code = i64::from(response.status().as_u16());
    let mut excerpt = Vec::new();
    while excerpt.len() < RESPONSE_EXCERPT_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                excerpt.extend_from_slice(&chunk[..chunk.len().min(RESPONSE_EXCERPT_MAX - excerpt.len())])
            }
            Ok(None) | Err(_) => break,
        }
    }
    Ok(Outcome::Answered { code, excerpt: String::from_utf8_lossy(&excerpt).into_owned() })
}

/// A send failure in a few words, without the URL (which the log already names).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "could not connect".into()
    } else if error.is_builder() {
        "not a URL Plaza can send to".into()
    } else {
        "the connection failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_the_base_up_to_the_cap() {
        let base = Duration::from_secs(5);
        assert_eq!(retry_delay(base, 1), Duration::from_secs(5));
        assert_eq!(retry_delay(base, 2), Duration::from_secs(10));
        assert_eq!(retry_delay(base, 3), Duration::from_secs(20));
        assert_eq!(retry_delay(base, 40), RETRY_DELAY_MAX);
    }

    #[test]
    fn jitter_keeps_each_retry_later_than_the_one_before() {
        for _ in 0..1_000 {
            let (first, second) = (jittered(Duration::from_secs(5)), jittered(Duration::from_secs(10)));
            assert!(first >= Duration::from_millis(3_750) && first <= Duration::from_millis(6_250));
            assert!(second > first);
        }
    }

    #[test]
    fn the_signature_is_the_specifications_example() {
        // The example of the Standard Webhooks specification's README (secret, id,
        // timestamp and payload as published there).
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap_or_default();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
