//! The trip: offers, transitions, settlement (see "The fare" in the service's docs),
//! ratings and sharing.

use super::*;

impl Rides {
    /// The offered driver takes the ride.
    pub async fn accept(&self, me: &User, ride_id: &str) -> Result<Ride, RidesError> {
        let mut transaction = self.inner.store.begin().await?;
        let ride = self.ride_for_offer(&mut transaction, me, ride_id).await?;
        let now = Timestamp::now().unix_millis();
        let offer_open = ride.status == RideStatus::Requested
            && ride.offered_driver_id.as_deref() == Some(me.id.as_str())
            && ride.offer_expires_at.is_some_and(|at| at.unix_millis() >= now);
        let Some(next) = ride.status.after(RideAction::Accept).filter(|_| offer_open) else {
            return Err(RidesError::InvalidTransition { status: ride.status.as_str(), action: "be accepted" });
        };
        let moved = sqlx::query(
            "UPDATE rides SET status = $3, driver_id = $2, offered_driver_id = NULL, offer_expires_at = NULL, updated_at = $4
             WHERE id = $1 AND status = 'requested' AND offered_driver_id = $2",
        )
        .bind(ride_id)
        .bind(&me.id)
        .bind(next.as_str())
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(RidesError::InvalidTransition { status: ride.status.as_str(), action: "be accepted" });
        }
        sqlx::query("UPDATE ride_offers SET outcome = 'accepted' WHERE ride_id = $1 AND driver_id = $2")
            .bind(ride_id)
            .bind(&me.id)
            .execute(&mut *transaction)
            .await?;
        let ride = load_ride(&mut transaction, ride_id).await?;
        let appended = self.announce(&mut transaction, &ride).await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        self.announce_presence(Presence::Trip {
            driver_id: me.id.clone(),
            ride_id: ride.id.clone(),
            rider_id: ride.rider_id.clone(),
        });
        Ok(ride)
    }

    /// The offered driver passes; the next batch offers the ride to the next best driver.
    pub async fn decline(&self, me: &User, ride_id: &str) -> Result<Ride, RidesError> {
        let mut transaction = self.inner.store.begin().await?;
        let ride = self.ride_for_offer(&mut transaction, me, ride_id).await?;
        let now = Timestamp::now().unix_millis();
        if !release_offer(&mut transaction, ride_id, &me.id, "declined", now).await? {
            return Err(RidesError::InvalidTransition { status: ride.status.as_str(), action: "be declined" });
        }
        let ride = load_ride(&mut transaction, ride_id).await?;
        transaction.commit().await?;
        // The lease holder, on whichever node, offers it to the next driver now.
        self.announce_presence(Presence::Dispatch);
        Ok(ride)
    }

    /// The ride as a driver it was ever offered to (or its driver) may act on it; 404 for
    /// anyone else.
    pub(crate) async fn ride_for_offer(
        &self,
        transaction: &mut Transaction<'static, Any>,
        me: &User,
        ride_id: &str,
    ) -> Result<Ride, RidesError> {
        let ride = load_ride(transaction, ride_id).await?;
        let offered: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM ride_offers WHERE ride_id = $1 AND driver_id = $2")
                .bind(ride_id)
                .bind(&me.id)
                .fetch_optional(&mut **transaction)
                .await?;
        if offered.is_none() && !ride.can_see(&me.id) {
            return Err(RidesError::RideNotFound);
        }
        if ride.rider_id == me.id && offered.is_none() {
            return Err(RidesError::NotAllowed { who: "the driver it is offered to", action: "answer" });
        }
        Ok(ride)
    }

    /// The assigned driver moves the trip on (`Arrive`, `Start`, `Complete`); completing
    /// captures the fare.
    pub async fn advance(&self, me: &User, ride_id: &str, action: RideAction) -> Result<Ride, RidesError> {
        self.transition(ride_id, Actor::User(&me.id), action).await
    }

    /// The rider or the assigned driver cancels; after the driver's arrival the cancel fee
    /// is charged, before it the hold is released.
    pub async fn cancel(&self, me: &User, ride_id: &str) -> Result<Ride, RidesError> {
        self.transition(ride_id, Actor::User(&me.id), RideAction::Cancel).await
    }

    /// Every state change after the offer goes through here: the state machine decides,
    /// a conditional update on the old status makes concurrent changes exclusive, both
    /// parties get `ride.updated` in the same transaction, and a final state settles the
    /// money afterwards (idempotently, so a crash in between is repaired by `settle_pending`).
    pub(crate) async fn transition(
        &self,
        ride_id: &str,
        actor: Actor<'_>,
        action: RideAction,
    ) -> Result<Ride, RidesError> {
        let mut transaction = self.inner.store.begin().await?;
        let ride = load_ride(&mut transaction, ride_id).await?;
        if let Actor::User(user_id) = actor {
            let is_rider = ride.rider_id == user_id;
            let is_driver = ride.driver_id.as_deref() == Some(user_id);
            if !is_rider && !is_driver {
                return Err(if ride.can_see(user_id) {
                    RidesError::NotAllowed { who: "the rider or the assigned driver", action: action.as_str() }
                } else {
                    RidesError::RideNotFound
                });
            }
            let allowed = match action {
                RideAction::Arrive | RideAction::Start | RideAction::Complete => is_driver,
                RideAction::Cancel => true,
                RideAction::Accept | RideAction::NoDriver => false,
            };
            if !allowed {
                return Err(RidesError::NotAllowed { who: "the assigned driver", action: action.as_str() });
            }
        }
        let Some(next) = ride.status.after(action) else {
            return Err(RidesError::InvalidTransition { status: ride.status.as_str(), action: action.as_str() });
        };
        self.check_driver_is_there(&ride, action)?;
        let cancelled_by = match (action, actor) {
            (RideAction::Cancel, Actor::User(user_id)) => {
                Some(if ride.rider_id == user_id { "rider" } else { "driver" })
            }
            _ => None,
        };
        let now = Timestamp::now().unix_millis();
        // What a final state will charge is decided here, with the state, so a settlement
        // retried after a crash charges exactly this.
        let (charge, review) = settlement_charge(&self.inner.config, &ride, next, cancelled_by, now);
        let started_at = (next == RideStatus::InProgress).then_some(now);
        let moved = sqlx::query(
            "UPDATE rides SET status = $3, cancelled_by = COALESCE($4, cancelled_by), offered_driver_id = NULL,
                 offer_expires_at = NULL, updated_at = $5, charged_amount = $6, review = COALESCE($7, review),
                 started_at = COALESCE($8, started_at)
             WHERE id = $1 AND status = $2",
        )
        .bind(ride_id)
        .bind(ride.status.as_str())
        .bind(next.as_str())
        .bind(cancelled_by)
        .bind(now)
        .bind(charge)
        .bind(review)
        .bind(started_at)
        .execute(&mut *transaction)
        .await?;
        if moved.rows_affected() != 1 {
            // Someone else moved it first; report the state that won.
            let current = load_ride(&mut transaction, ride_id).await?;
            return Err(RidesError::InvalidTransition { status: current.status.as_str(), action: action.as_str() });
        }
        if ride.status == RideStatus::Requested {
            sqlx::query("UPDATE ride_offers SET outcome = 'expired' WHERE ride_id = $1 AND outcome = 'open'")
                .bind(ride_id)
                .execute(&mut *transaction)
                .await?;
        }
        let updated = load_ride(&mut transaction, ride_id).await?;
        let appended = self.announce(&mut transaction, &updated).await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        if next.is_final() {
            if let Some(driver_id) = &updated.driver_id {
                self.announce_presence(Presence::TripEnded {
                    driver_id: driver_id.clone(),
                    ride_id: Some(updated.id.clone()),
                });
            }
            // The state change stands even if the wallet is briefly unreachable: the
            // dispatcher's sweep settles what is left held.
            match self.settle(&updated).await {
                Ok(settled) => return Ok(settled),
                Err(error) => tracing::warn!(ride_id, "settling the ride failed; the sweep retries: {error}"),
            }
        }
        Ok(updated)
    }

    /// Arriving and starting need the driver's last known location (this node's replica of
    /// the index) within `arrive_radius_m` of the pickup, completing within it of the
    /// drop-off: a driver cannot claim to be somewhere they are not, and so cannot earn a
    /// cancel fee or a fare without coming.
    pub(crate) fn check_driver_is_there(&self, ride: &Ride, action: RideAction) -> Result<(), RidesError> {
        let (place, at_pickup) = match action {
            RideAction::Arrive | RideAction::Start => (ride.pickup, true),
            RideAction::Complete => (ride.dropoff, false),
            RideAction::Accept | RideAction::Cancel | RideAction::NoDriver => return Ok(()),
        };
        let radius_m = self.inner.config.arrive_radius_m;
        let distance_m = ride
            .driver_id
            .as_deref()
            .and_then(|driver_id| self.driver_location(driver_id))
            .map(|at| at.distance_m(place));
        if distance_m.is_some_and(|distance_m| distance_m <= radius_m) {
            return Ok(());
        }
        Err(if at_pickup {
            RidesError::NotAtPickup { distance_m, radius_m }
        } else {
            RidesError::NotAtDropoff { distance_m, radius_m }
        })
    }

    /// `ride.updated` to the rider and the driver, in the transaction.
    pub(crate) async fn announce(
        &self,
        transaction: &mut Transaction<'static, Any>,
        ride: &Ride,
    ) -> Result<Appended, RidesError> {
        let mut users = vec![ride.rider_id.clone()];
        users.extend(ride.driver_id.clone());
        Ok(self.inner.events.append(transaction, &users, "ride.updated", &ride.to_json()).await?)
    }

    /// Captures the ride's `charged` amount (fare or cancel fee, decided with the final
    /// state) for the driver, or releases the hold when it is zero; then records the
    /// outcome on the ride. Keyed by the ride, so running it again (after a crash, or on
    /// another node) moves no more money.
    pub(crate) async fn settle(&self, ride: &Ride) -> Result<Ride, RidesError> {
        let charge = ride.charged;
        if ride.payment_status != PaymentStatus::Held {
            return Ok(ride.clone());
        }
        let key = idempotency_key(&format!("ride-settle-{}", ride.id))?;
        let wallet = &self.inner.wallet;
        let status = match (charge.min(ride.hold), ride.driver_id.as_deref()) {
            (amount, Some(driver_id)) if amount > 0 => {
                let fee = self.inner.config.platform_fee_bps.of(amount);
                match wallet.capture_payment_intent(&ride.payment_intent_id, amount, driver_id, fee, Some(&key)).await {
                    Ok(_) | Err(WalletError::InvalidTransition { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
                PaymentStatus::Captured
            }
            _ => {
                self.release_hold(&ride.payment_intent_id, &key).await?;
                PaymentStatus::Released
            }
        };
        let mut transaction = self.inner.store.begin().await?;
        let recorded = sqlx::query(
            "UPDATE rides SET payment_status = $2, updated_at = $3 WHERE id = $1 AND payment_status = 'held'",
        )
        .bind(&ride.id)
        .bind(status.as_str())
        .bind(Timestamp::now().unix_millis())
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        let ride = load_ride(&mut transaction, &ride.id).await?;
        // Both parties learn that the money moved (the final state's event still said
        // `held`); only the settlement that recorded it tells them, so never twice.
        let appended = if recorded == 1 { Some(self.announce(&mut transaction, &ride).await?) } else { None };
        transaction.commit().await?;
        if let Some(appended) = appended {
            self.inner.events.publish(appended);
        }
        Ok(ride)
    }

    /// The rider rates the driver, or the driver the rider, once, after completion.
    pub async fn rate(
        &self,
        me: &User,
        ride_id: &str,
        stars: i64,
        comment: Option<&str>,
    ) -> Result<Rating, RidesError> {
        if !(1..=5).contains(&stars) {
            return Err(invalid("stars", "1 to 5 stars"));
        }
        let comment = comment.map(str::trim).filter(|text| !text.is_empty());
        if comment.is_some_and(|text| text.chars().count() > COMMENT_MAX_CHARS) {
            return Err(invalid("comment", format!("at most {COMMENT_MAX_CHARS} characters")));
        }
        let ride = self.ride(me, ride_id).await?;
        let ratee_id = match (&ride.driver_id, ride.rider_id == me.id) {
            (Some(driver_id), true) => driver_id.clone(),
            (Some(driver_id), false) if *driver_id == me.id => ride.rider_id.clone(),
            _ => return Err(RidesError::RideNotFound),
        };
        if ride.status != RideStatus::Completed {
            return Err(RidesError::InvalidTransition { status: ride.status.as_str(), action: "be rated" });
        }
        let inserted = sqlx::query(
            "INSERT INTO ride_ratings (ride_id, rater_id, ratee_id, stars, comment, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (ride_id, rater_id) DO NOTHING",
        )
        .bind(ride_id)
        .bind(&me.id)
        .bind(&ratee_id)
        .bind(stars)
        .bind(comment)
        .bind(Timestamp::now().unix_millis())
        .execute(self.inner.store.write())
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(RidesError::AlreadyRated);
        }
        Ok(Rating {
            ride_id: ride_id.into(),
            rater_id: me.id.clone(),
            ratee_id,
            stars,
            comment: comment.map(Into::into),
        })
    }

    /// Posts the ride as a `card` message into a conversation of the caller's.
    pub async fn share(&self, me: &User, ride_id: &str, conversation_id: &str) -> Result<SharedCard, RidesError> {
        let ride = self.ride(me, ride_id).await?;
        let body = crate::card::ride_card(&ride);
        let client_id = format!("ride-share-{}", plaza_kernel::new_id());
        let message = self.inner.chat.post_card(conversation_id, &me.id, &client_id, &body).await?;
        Ok(SharedCard { message_id: message.id, conversation_id: message.conversation_id, seq: message.seq })
    }
}

/// What a final state charges, and why the ride needs review if it does: on completion
/// what the recorded trip supports (`trip_charge`); the cancel fee when the rider cancels
/// after the driver arrived (arriving needs the driver at the pickup); nothing otherwise —
/// above all when the driver cancels, which never costs the rider.
pub(crate) fn settlement_charge(
    config: &RidesConfig,
    ride: &Ride,
    to: RideStatus,
    cancelled_by: Option<&str>,
    now_ms: i64,
) -> (i64, Option<&'static str>) {
    match to {
        RideStatus::Completed => trip_charge(config, ride, now_ms),
        RideStatus::Cancelled if ride.status.cancel_is_charged() && cancelled_by == Some("rider") => {
            (config.cancel_fee.clamp(0, ride.hold), None)
        }
        _ => (0, None),
    }
}

/// The fare a completed trip captures (module docs, "The fare"): the quoted fare when the
/// recorded route and time support it, else the metered fare of what was recorded — never
/// more than the quoted fare or the hold — and the ride is marked `implausible_route`.
pub(crate) fn trip_charge(config: &RidesConfig, ride: &Ride, now_ms: i64) -> (i64, Option<&'static str>) {
    let quoted = ride.fare.min(ride.hold);
    let straight_m = ride.pickup.distance_m(ride.dropoff);
    let duration_ms = ride.started_at.map_or(0, |at| (now_ms - at.unix_millis()).max(0));
    let far_enough = ride.route_m * 100.0 >= straight_m * f64::from(config.route_plausible_percent.get().min(100));
    let fastest_ms = straight_m / (config.trip_speed_max_kmh.max(1.0) / 3.6) * 1000.0;
    let slow_enough = duration_ms as f64 >= fastest_ms;
    if far_enough && slow_enough {
        return (quoted, None);
    }
    let metered = config.fare.metered(ride.route_m.round() as i64, duration_ms / 1000, ride.surge_milli);
    (metered.clamp(0, quoted), Some(REVIEW_IMPLAUSIBLE_ROUTE))
}

/// The review mark of a trip whose recorded route or time does not support its fare.
pub const REVIEW_IMPLAUSIBLE_ROUTE: &str = "implausible_route";

/// Takes an open offer back from `driver_id` (declined, or unanswered in time): the ride
/// waits for the next batch, one round nearer `no_driver`, and the driver is not asked
/// again. False when the offer was no longer open.
pub(crate) async fn release_offer(
    transaction: &mut Transaction<'static, Any>,
    ride_id: &str,
    driver_id: &str,
    outcome: &'static str,
    now: i64,
) -> Result<bool, RidesError> {
    let moved = sqlx::query(
        "UPDATE rides SET offered_driver_id = NULL, offer_expires_at = NULL, dispatch_rounds = dispatch_rounds + 1,
             updated_at = $3
         WHERE id = $1 AND status = 'requested' AND offered_driver_id = $2",
    )
    .bind(ride_id)
    .bind(driver_id)
    .bind(now)
    .execute(&mut **transaction)
    .await?;
    if moved.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query("UPDATE ride_offers SET outcome = $3 WHERE ride_id = $1 AND driver_id = $2 AND outcome = 'open'")
        .bind(ride_id)
        .bind(driver_id)
        .bind(outcome)
        .execute(&mut **transaction)
        .await?;
    Ok(true)
}
