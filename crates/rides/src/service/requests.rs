//! Requests and their holds: one open ride per rider, holds keyed by the quote, stranded
//! holds released by the sweep.

use super::*;

impl Rides {
    /// Requests a ride on the caller's quote, holding the fare plus the margin. Asking
    /// again with the same quote returns the same ride (`true`) and holds nothing more.
    /// A rider has at most one open ride: the database's partial unique index decides
    /// between concurrent requests on different quotes, and the loser's hold is released
    /// before it is told 409.
    pub async fn request(&self, me: &User, quote_id: &str) -> Result<(Ride, bool), RidesError> {
        let quote = self.load_quote(me, quote_id).await?;
        if let Some(ride) = self.ride_by_quote(quote_id).await? {
            return Ok((ride, true));
        }
        if quote.expires_at.unix_millis() < Timestamp::now().unix_millis() {
            return Err(RidesError::QuoteExpired);
        }
        // The common case, answered without touching the wallet.
        if let Some(ride_id) = self.open_ride_of_rider(&me.id).await? {
            return Err(RidesError::RideAlreadyOpen { ride_id });
        }
        let currency = Currency::parse(&quote.currency)
            .ok_or_else(|| RidesError::Invariant(format!("quote currency {:?}", quote.currency)))?;
        let hold = hold_for(quote.fare, self.inner.config.hold_margin_percent);
        let money = Money::new(hold, currency).map_err(|error| RidesError::Invariant(error.to_string()))?;
        // Recorded before the wallet call: if this node dies between the hold and the
        // ride's row, the sweep finds the hold through this row once the quote is dead.
        sqlx::query(
            "INSERT INTO ride_holds (quote_id, rider_id, quote_expires_at, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (quote_id) DO NOTHING",
        )
        .bind(quote_id)
        .bind(&me.id)
        .bind(quote.expires_at.unix_millis())
        .bind(Timestamp::now().unix_millis())
        .execute(self.inner.store.write())
        .await?;
        // Keyed by the quote: a retry after a crash between the hold and the ride's row
        // finds the same hold instead of taking a second one.
        let key = hold_key(quote_id)?;
        let intent = match self.inner.wallet.create_payment_intent(&me.id, money, "ride", Some(&key)).await {
            Ok((intent, false)) => intent,
            // A replay answers the intent as it was created; what counts is how it stands now.
            Ok((intent, true)) => self.inner.wallet.payment_intent(&intent.id).await?,
            Err(error) => {
                // Only a refusal proves nothing was held. After any other error (a lost
                // connection mid-commit, the key already holding another amount) a hold may
                // exist, and the row lets the sweep find and release it.
                if matches!(error, WalletError::InsufficientFunds { .. } | WalletError::InvalidField { .. }) {
                    self.forget_pending_hold(quote_id).await?;
                }
                return Err(error.into());
            }
        };
        if intent.status != PaymentIntentStatus::Held {
            // This quote's hold was already released (its request lost a race, or the
            // sweep took it): the quote is spent.
            return Err(RidesError::QuoteSpent);
        }
        self.save_ride(me, &quote, &intent.id, hold).await
    }

    /// The request's last step: the ride's row, in the transaction that forgets the pending
    /// hold and tells the rider. A concurrent request of the same quote that saved first
    /// makes this one a replay; one of another quote makes it the loser, whose hold goes back.
    async fn save_ride(
        &self,
        me: &User,
        quote: &Quote,
        intent_id: &str,
        hold: i64,
    ) -> Result<(Ride, bool), RidesError> {
        let quote_id = quote.id.as_str();
        let now = Timestamp::now().unix_millis();
        let ride_id = plaza_kernel::new_id();
        let mut transaction = self.inner.store.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO rides (id, quote_id, rider_id, driver_id, status, pickup_lat, pickup_lng, dropoff_lat, dropoff_lng,
                 fare_amount, currency, distance_m, duration_s, surge_milli, payment_intent_id, hold_amount,
                 payment_status, charged_amount, dispatch_rounds, created_at, updated_at)
             VALUES ($1, $2, $3, NULL, 'requested', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'held', 0, 0, $15, $15)
             ON CONFLICT (quote_id) DO NOTHING",
        )
        .bind(&ride_id)
        .bind(quote_id)
        .bind(&me.id)
        .bind(quote.pickup.lat())
        .bind(quote.pickup.lng())
        .bind(quote.dropoff.lat())
        .bind(quote.dropoff.lng())
        .bind(quote.fare)
        .bind(&quote.currency)
        .bind(quote.distance_m)
        .bind(quote.duration_s)
        .bind(quote.surge_milli)
        .bind(intent_id)
        .bind(hold)
        .bind(now)
        .execute(&mut *transaction)
        .await;
        let inserted = match inserted {
            Ok(inserted) => inserted,
            Err(error) if plaza_store::is_unique_violation(&error) => {
                transaction.rollback().await?;
                return self.lost_to_another_request(me, quote_id, intent_id).await;
            }
            Err(error) => return Err(error.into()),
        };
        if inserted.rows_affected() == 0 {
            transaction.rollback().await?;
            let ride = self.ride_by_quote(quote_id).await?.ok_or(RidesError::RideNotFound)?;
            return Ok((ride, true));
        }
        sqlx::query("DELETE FROM ride_holds WHERE quote_id = $1").bind(quote_id).execute(&mut *transaction).await?;
        let ride = load_ride(&mut transaction, &ride_id).await?;
        let appended = self
            .inner
            .events
            .append(&mut transaction, std::slice::from_ref(&me.id), "ride.updated", &ride.to_json())
            .await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok((ride, false))
    }

    /// Another request of the rider's saved its ride first: release this request's hold
    /// and say which ride is open. (The same quote requested twice at once shares one
    /// hold; then the other request's ride is this one's too, and nothing is released.)
    pub(crate) async fn lost_to_another_request(
        &self,
        me: &User,
        quote_id: &str,
        intent_id: &str,
    ) -> Result<(Ride, bool), RidesError> {
        if let Some(ride) = self.ride_by_quote(quote_id).await? {
            return Ok((ride, true));
        }
        let key = idempotency_key(&format!("ride-hold-release-{quote_id}"))?;
        self.release_hold(intent_id, &key).await?;
        self.forget_pending_hold(quote_id).await?;
        let ride_id = self.open_ride_of_rider(&me.id).await?.unwrap_or_default();
        Err(RidesError::RideAlreadyOpen { ride_id })
    }

    /// Voids a hold, keyed by `key`. A hold no longer held (released or captured already,
    /// by an earlier try or another node) is left as it is: releasing is then done.
    pub(crate) async fn release_hold(&self, intent_id: &str, key: &IdempotencyKey) -> Result<(), RidesError> {
        match self.inner.wallet.void_payment_intent(intent_id, Some(key)).await {
            Ok(_) | Err(WalletError::InvalidTransition { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    pub(crate) async fn forget_pending_hold(&self, quote_id: &str) -> Result<(), RidesError> {
        sqlx::query("DELETE FROM ride_holds WHERE quote_id = $1")
            .bind(quote_id)
            .execute(self.inner.store.write())
            .await?;
        Ok(())
    }

    /// Holds taken for requests whose ride was never saved (the node died between the
    /// wallet call and the ride's row), released once their quote is dead for `grace`:
    /// by then no request can still be using it, because a request refuses an expired
    /// quote before holding and lives at most the HTTP time-out (30 s) after that.
    pub(crate) async fn release_stranded_holds(&self, now: i64) -> Result<u64, RidesError> {
        let cutoff = now - self.inner.config.stranded_hold_grace.as_millis() as i64;
        let rows = sqlx::query("SELECT quote_id, rider_id FROM ride_holds WHERE quote_expires_at < $1 LIMIT 100")
            .bind(cutoff)
            .fetch_all(self.inner.store.write())
            .await?;
        let mut released = 0;
        for row in rows {
            let quote_id: String = row.try_get("quote_id")?;
            let rider_id: String = row.try_get("rider_id")?;
            if self.ride_by_quote(&quote_id).await?.is_none() {
                let key = hold_key(&quote_id)?;
                let intent = self.inner.wallet.payment_intent_created_with_key(&rider_id, &key).await?;
                if let Some(intent) = intent.filter(|intent| intent.status == PaymentIntentStatus::Held) {
                    let release = idempotency_key(&format!("ride-hold-release-{quote_id}"))?;
                    self.release_hold(&intent.id, &release).await?;
                    tracing::info!(quote_id, rider_id, amount = intent.amount, "released a stranded ride hold");
                    released += 1;
                }
            }
            self.forget_pending_hold(&quote_id).await?;
        }
        Ok(released)
    }

    pub(crate) async fn open_ride_of_rider(&self, rider_id: &str) -> Result<Option<String>, RidesError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM rides WHERE rider_id = $1
             AND status IN ('requested', 'driver_assigned', 'driver_arrived', 'in_progress') LIMIT 1",
        )
        .bind(rider_id)
        .fetch_optional(self.inner.store.write())
        .await?)
    }

    pub(crate) async fn ride_by_quote(&self, quote_id: &str) -> Result<Option<Ride>, RidesError> {
        let row = sqlx::query(&format!("SELECT {RIDE_COLUMNS} FROM rides WHERE quote_id = $1"))
            .bind(quote_id)
            .fetch_optional(self.inner.store.write())
            .await?;
        row.map(|row| ride_from_row(&row)).transpose()
    }

    /// A ride its rider, its driver or the driver it is offered to may see.
    pub async fn ride(&self, me: &User, ride_id: &str) -> Result<Ride, RidesError> {
        let row = sqlx::query(&format!("SELECT {RIDE_COLUMNS} FROM rides WHERE id = $1"))
            .bind(ride_id)
            .fetch_optional(self.inner.store.write())
            .await?
            .ok_or(RidesError::RideNotFound)?;
        let ride = ride_from_row(&row)?;
        if !ride.can_see(&me.id) {
            return Err(RidesError::RideNotFound);
        }
        Ok(ride)
    }

    /// The ride offered to `me` or that `me` is driving, if any: what a driver's app (or
    /// the demo's simulated drivers) polls for when it missed the `ride.updated` event.
    pub async fn driver_work(&self, me: &User) -> Result<Option<Ride>, RidesError> {
        let row = sqlx::query(&format!(
            "SELECT {RIDE_COLUMNS} FROM rides WHERE (status = 'requested' AND offered_driver_id = $1)
             OR (driver_id = $1 AND status IN ({TRIP_STATUSES_SQL}))
             ORDER BY created_at LIMIT 1"
        ))
        .bind(&me.id)
        .fetch_optional(self.inner.store.write())
        .await?;
        row.map(|row| ride_from_row(&row)).transpose()
    }
}

/// What a request holds for `fare`: the fare plus `margin_percent`, rounded up.
pub(crate) fn hold_for(fare: i64, margin: Percent) -> i64 {
    fare + margin.of_rounded_up(fare)
}

/// The wallet key of a quote's hold, so that the hold is taken at most once per quote.
pub(crate) fn hold_key(quote_id: &str) -> Result<IdempotencyKey, RidesError> {
    idempotency_key(&format!("ride-hold-{quote_id}"))
}
