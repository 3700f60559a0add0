//! The shop's job: every `job_interval` on every node, acting only while the node holds
//! the `shop_leases` row (renewed each run, taken over `lease_ttl` after a holder that
//! died), so it runs once across nodes. It confirms shipped orders nobody confirmed in
//! time, settles orders whose money a crash left unmoved, fails group buys whose window
//! ended (cancelling their orders), gives flash sales' unsold units back to their SKUs,
//! and releases holds whose order was never saved. Each step is decided by a conditional update, so a run repeated after
//! a restart or by the next holder does nothing twice.

use crate::model::OrderAction;
use crate::orders::{hold_key, load_order, ChangeDetails};
use crate::service::{Actor, ShopError, ShopHandle};
use plaza_kernel::Timestamp;
use plaza_store::Row;
use plaza_wallet::PaymentIntentStatus;

const LEASE: &str = "shop";
/// Orders handled per step of one run; the rest wait for the next run.
const BATCH_MAX: i64 = 200;

impl ShopHandle {
    /// Runs the job until the process ends.
    pub async fn run_jobs(self) {
        if let Err(error) = self.warm_search_index().await {
            tracing::warn!("shop search index: {error}; the first search loads it");
        }
        let mut ticker = tokio::time::interval(self.inner.config.job_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(error) = self.run_jobs_once().await {
                tracing::warn!("shop job: {error}");
            }
        }
    }

    /// One run; `false` when another node holds the lease.
    pub async fn run_jobs_once(&self) -> Result<bool, ShopError> {
        let now = Timestamp::now().unix_millis();
        if !self.hold_lease(now).await? {
            return Ok(false);
        }
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM shop_orders WHERE status = 'shipped' AND auto_confirm_at <= $1
             ORDER BY auto_confirm_at LIMIT $2",
        )
        .bind(now)
        .bind(BATCH_MAX)
        .fetch_all(self.inner.store.write())
        .await?;
        for order_id in due {
            match self.change(Actor::Job, &order_id, OrderAction::Confirm, ChangeDetails::default()).await {
                Ok(_) | Err(ShopError::InvalidTransition { .. }) => {}
                Err(error) => tracing::warn!(order_id, "auto-confirm: {error}"),
            }
        }
        let unsettled: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM shop_orders
             WHERE (payment_status = 'held' AND status IN ('cancelled', 'completed', 'refunded'))
                OR (payment_status = 'captured' AND status = 'refunded')
             LIMIT $1",
        )
        .bind(BATCH_MAX)
        .fetch_all(self.inner.store.write())
        .await?;
        for order_id in unsettled {
            let mut connection = self.inner.store.write().acquire().await?;
            let order = load_order(&mut connection, &order_id).await?;
            drop(connection);
            if let Some(order) = order {
                if let Err(error) = self.settle(order).await {
                    tracing::warn!(order_id, "settlement: {error}");
                }
            }
        }
        self.fail_expired_groups(now).await?;
        self.return_ended_sales(now).await?;
        self.release_stranded_holds(now).await?;
        Ok(true)
    }

    /// Gives the lease back (a graceful shutdown), so another node runs the job next.
    pub async fn release_lease(&self) -> Result<(), ShopError> {
        sqlx::query("DELETE FROM shop_leases WHERE name = $1 AND holder = $2")
            .bind(LEASE)
            .bind(&self.inner.node_id)
            .execute(self.inner.store.write())
            .await?;
        Ok(())
    }

    async fn hold_lease(&self, now: i64) -> Result<bool, ShopError> {
        let expires = now + self.inner.config.lease_ttl.as_millis() as i64;
        let held = sqlx::query(
            "INSERT INTO shop_leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE shop_leases.holder = excluded.holder OR shop_leases.expires_at < $4",
        )
        .bind(LEASE)
        .bind(&self.inner.node_id)
        .bind(expires)
        .bind(now)
        .execute(self.inner.store.write())
        .await?;
        Ok(held.rows_affected() == 1)
    }

    /// Holds taken for orders never saved (a crash between the hold and the order's row),
    /// once no request can still be saving them.
    async fn release_stranded_holds(&self, now: i64) -> Result<(), ShopError> {
        let before = now - self.inner.config.stranded_hold_grace.as_millis() as i64;
        let rows = sqlx::query(
            "SELECT buyer_id, idempotency_key FROM shop_pending_holds WHERE created_at < $1 ORDER BY created_at LIMIT $2",
        )
        .bind(before)
        .bind(BATCH_MAX)
        .fetch_all(self.inner.store.write())
        .await?;
        for row in rows {
            let (buyer_id, key): (String, String) = (row.try_get("buyer_id")?, row.try_get("idempotency_key")?);
            let saved: Option<String> =
                sqlx::query_scalar("SELECT id FROM shop_orders WHERE buyer_id = $1 AND idempotency_key = $2")
                    .bind(&buyer_id)
                    .bind(&key)
                    .fetch_optional(self.inner.store.write())
                    .await?;
            if saved.is_none() {
                let hold = hold_key(&buyer_id, &key)?;
                if let Some(intent) = self.inner.wallet.payment_intent_created_with_key(&buyer_id, &hold).await? {
                    if intent.status == PaymentIntentStatus::Held {
                        self.release(&intent.id, &hold_key(&buyer_id, &format!("{key}\nstranded"))?).await?;
                    }
                }
            }
            self.forget_pending_hold(&buyer_id, &key).await?;
        }
        Ok(())
    }
}
