//! The dispatcher: every `batch_interval`, on the node holding the region's lease, it
//! expires unanswered offers, ends requests that ran out of rounds as `no_driver`, and
//! assigns the open requests of the batch to free drivers all at once (Kuhn–Munkres on
//! pickup ETA). Everything it decides is a conditional update in the database, so a
//! restart (or a lease moving to another node) picks up exactly where it stopped.
//!
//! Every node runs the loop, but only the holder of the region's lease row acts: the lease
//! is renewed each batch, given back on a graceful shutdown (`release_lease` waits for a
//! batch under way and stops this node's dispatching, so no late batch takes it back), and
//! taken over `lease_ttl` after a holder that crashed. Candidates come from this node's
//! replica of the index, but only drivers `ride_drivers` has online are offered anything:
//! drivers found offline are skipped before the nearest `candidates_per_request` are taken
//! (searching again, at most `CANDIDATE_SEARCHES_MAX` times), so a lost `offline`
//! announcement costs nothing. A decline on any node wakes the batch at once; such a batch
//! only hands requests on (it counts no `no_driver` round and leaves housekeeping to the
//! batches on the clock). Housekeeping: stranded holds are released, final rides still
//! `held` are settled, and quotes expired over an hour ago are pruned (a ride keeps its own
//! copy of the price).

use crate::assignment::assign_batched;
use crate::index::Candidate;
use crate::model::RideAction;
use crate::service::{lock, release_offer, ride_from_row, Actor, Offer, Rides, RidesError, TRIP_STATUSES_SQL};
use crate::wire::OfferView;
use plaza_kernel::Timestamp;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Index searches per request and batch: each search after the first skips the drivers
/// the one before found offline in the database, so a request finds online drivers behind
/// up to this many times `candidates_per_request` stale ones (drivers whose `offline`
/// announcement was lost, who leave the index after its silence limit anyway).
const CANDIDATE_SEARCHES_MAX: usize = 4;

impl Rides {
    /// Runs the dispatcher until the task is aborted.
    pub async fn run_dispatcher(self) {
        let mut every = tokio::time::interval(self.inner.config.batch_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A decline anywhere wakes the batch early (at most one extra batch per
            // decline: `Notify` keeps a single permit).
            let on_time = tokio::select! {
                _ = every.tick() => true,
                () = self.inner.dispatch_now.notified() => false,
            };
            if let Err(error) = self.dispatch(on_time).await {
                tracing::warn!("rides dispatch batch failed: {error}");
            }
        }
    }

    /// One batch. Public so that tests and the simulator can step it.
    pub async fn dispatch_once(&self) -> Result<(), RidesError> {
        self.dispatch(true).await
    }

    /// One batch. A batch woken early by a decline (`on_time` false) only hands requests
    /// on: it counts no round towards `no_driver` for a request nobody could reach (which
    /// would end requests after a fraction of `dispatch_rounds_max × batch interval`) and
    /// leaves the housekeeping to the batches on the clock.
    async fn dispatch(&self, on_time: bool) -> Result<(), RidesError> {
        // Held to the batch's end, so that `release_lease` waits for a batch under way.
        let stopped = self.inner.dispatch_stopped.lock().await;
        if *stopped {
            return Ok(());
        }
        let now = Timestamp::now().unix_millis();
        lock(&self.inner.index).sweep(now);
        if !self.hold_lease(now).await? {
            return Ok(());
        }
        self.expire_offers(now).await?;
        self.give_up(now).await?;
        self.assign(now, on_time).await?;
        if on_time {
            self.settle_pending().await?;
            self.release_stranded_holds(now).await?;
            self.prune_quotes(now).await?;
        }
        Ok(())
    }

    /// Deletes quotes expired longer than `quote_retention` ago, a bounded number per
    /// batch. A ride keeps its own copy of the price, and the stranded-hold sweep works from
    /// `ride_holds`; a request naming a pruned quote gets `quote_not_found`.
    async fn prune_quotes(&self, now: i64) -> Result<u64, RidesError> {
        let cutoff = now - self.inner.config.quote_retention.as_millis() as i64;
        let pruned = sqlx::query(
            "DELETE FROM ride_quotes WHERE id IN (SELECT id FROM ride_quotes WHERE expires_at < $1 LIMIT 1000)",
        )
        .bind(cutoff)
        .execute(self.inner.store.write())
        .await?;
        Ok(pruned.rows_affected())
    }

    /// Gives the region's lease back if this node holds it (a graceful shutdown), so that
    /// another node dispatches at its next batch instead of after the lease's TTL. Waits for
    /// a batch under way to end (or be dropped, if its task was aborted), and this node
    /// dispatches no more: a batch that renewed the lease after this would hold it for a
    /// node that is gone.
    pub async fn release_lease(&self) -> Result<bool, RidesError> {
        *self.inner.dispatch_stopped.lock().await = true;
        let released = sqlx::query("DELETE FROM ride_leases WHERE region = $1 AND holder = $2")
            .bind(crate::service::REGION)
            .bind(&self.inner.node_id)
            .execute(self.inner.store.write())
            .await?;
        Ok(released.rows_affected() == 1)
    }

    /// Takes or renews the region's lease: a row that names its holder until it expires.
    async fn hold_lease(&self, now: i64) -> Result<bool, RidesError> {
        let expires = now + self.inner.config.lease_ttl.as_millis() as i64;
        let held = sqlx::query(
            "INSERT INTO ride_leases (region, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (region) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE ride_leases.holder = excluded.holder OR ride_leases.expires_at < $4",
        )
        .bind(crate::service::REGION)
        .bind(&self.inner.node_id)
        .bind(expires)
        .bind(now)
        .execute(self.inner.store.write())
        .await?;
        Ok(held.rows_affected() == 1)
    }

    async fn expire_offers(&self, now: i64) -> Result<(), RidesError> {
        let rows = sqlx::query(
            "SELECT id, offered_driver_id FROM rides WHERE status = 'requested' AND offered_driver_id IS NOT NULL
             AND offer_expires_at < $1 LIMIT 500",
        )
        .bind(now)
        .fetch_all(self.inner.store.write())
        .await?;
        for row in rows {
            let ride_id: String = plaza_store::Row::try_get(&row, "id")?;
            let driver_id: String = plaza_store::Row::try_get(&row, "offered_driver_id")?;
            let mut transaction = self.inner.store.begin().await?;
            release_offer(&mut transaction, &ride_id, &driver_id, "expired", now).await?;
            transaction.commit().await?;
        }
        Ok(())
    }

    async fn give_up(&self, _now: i64) -> Result<(), RidesError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM rides WHERE status = 'requested' AND offered_driver_id IS NULL AND dispatch_rounds >= $1
             LIMIT 500",
        )
        .bind(self.inner.config.dispatch_rounds_max)
        .fetch_all(self.inner.store.write())
        .await?;
        for ride_id in ids {
            match self.transition(&ride_id, Actor::Dispatcher, RideAction::NoDriver).await {
                Ok(_) | Err(RidesError::InvalidTransition { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Final rides whose money is still held (a crash between the state change and the
    /// wallet call): settle them now.
    async fn settle_pending(&self) -> Result<(), RidesError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM rides WHERE payment_status = 'held' AND status IN ('completed', 'cancelled', 'no_driver')
             LIMIT 100",
            crate::service::RIDE_COLUMNS_PUB
        ))
        .fetch_all(self.inner.store.write())
        .await?;
        for row in rows {
            let ride = ride_from_row(&row)?;
            self.settle(&ride).await?;
        }
        Ok(())
    }

    /// Which of these drivers the database has online, asked 500 at a time.
    async fn online_among<'a>(&self, driver_ids: impl Iterator<Item = &'a str>) -> Result<HashSet<String>, RidesError> {
        let unique: Vec<&str> = driver_ids.collect::<HashSet<_>>().into_iter().collect();
        let mut online = HashSet::with_capacity(unique.len());
        for chunk in unique.chunks(500) {
            let statement = format!(
                "SELECT driver_id FROM ride_drivers WHERE online = 1 AND driver_id IN ({})",
                plaza_store::numbered_parameters(1, chunk.len())
            );
            let statement = self.inner.store.backend().bulk_sql(&statement);
            let mut query = sqlx::query_scalar::<_, String>(&statement);
            for driver_id in chunk {
                query = query.bind(*driver_id);
            }
            online.extend(query.fetch_all(self.inner.store.write()).await?);
        }
        Ok(online)
    }

    /// Up to `candidates_per_request` drivers for each ride, nearest first, free, not asked
    /// before, and online in the database. The index is soft state fed by the bus; the
    /// database says who is online, so a driver whose `offline` announcement was lost (or
    /// one announced on a bus this database does not serve) is offered nothing. Such drivers
    /// are skipped *before* taking the nearest few, or they would fill a request's slots
    /// and hide an online driver a little further away. One database question per search
    /// round for the whole batch.
    async fn online_candidates(
        &self,
        rides: &[crate::service::Ride],
        busy: &HashSet<String>,
        asked_of: &[HashSet<String>],
        now: i64,
    ) -> Result<Vec<Vec<Candidate>>, RidesError> {
        let config = &self.inner.config;
        let wanted = config.candidates_per_request;
        let mut candidates_of: Vec<Vec<Candidate>> = vec![Vec::new(); rides.len()];
        let mut online: HashSet<String> = HashSet::new();
        let mut offline: HashSet<String> = HashSet::new();
        let mut searching: Vec<usize> = (0..rides.len()).collect();
        for _ in 0..CANDIDATE_SEARCHES_MAX {
            let found_of: Vec<(usize, Vec<Candidate>)> = {
                let index = lock(&self.inner.index);
                searching
                    .iter()
                    .map(|&r| {
                        let (ride, asked) = (&rides[r], &asked_of[r]);
                        let found = index.nearest(ride.pickup, config.search_radius_m, wanted, now, |id| {
                            busy.contains(id) || asked.contains(id) || offline.contains(id) || id == ride.rider_id
                        });
                        (r, found)
                    })
                    .collect()
            };
            let unknown = found_of.iter().flat_map(|(_, found)| found).map(|candidate| &*candidate.driver_id);
            let online_now = self.online_among(unknown.filter(|id| !online.contains(*id))).await?;
            for candidate in found_of.iter().flat_map(|(_, found)| found) {
                if !online_now.contains(&*candidate.driver_id) && !online.contains(&*candidate.driver_id) {
                    offline.insert(candidate.driver_id.to_string());
                }
            }
            online.extend(online_now);
            searching.clear();
            for (r, found) in found_of {
                // Fewer than wanted: the index has nobody else in reach, so searching again
                // finds no one new.
                let complete =
                    found.len() < wanted || found.iter().all(|candidate| online.contains(&*candidate.driver_id));
                candidates_of[r] =
                    found.into_iter().filter(|candidate| online.contains(&*candidate.driver_id)).collect();
                if !complete {
                    searching.push(r);
                }
            }
            if searching.is_empty() {
                break;
            }
        }
        Ok(candidates_of)
    }

    async fn assign(&self, now: i64, count_rounds: bool) -> Result<(), RidesError> {
        let config = &self.inner.config;
        let rows = sqlx::query(&format!(
            "SELECT {} FROM rides WHERE status = 'requested' AND offered_driver_id IS NULL ORDER BY created_at LIMIT $1",
            crate::service::RIDE_COLUMNS_PUB
        ))
        .bind(config.batch_requests_max)
        .fetch_all(self.inner.store.write())
        .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let rides = rows.iter().map(ride_from_row).collect::<Result<Vec<_>, _>>()?;
        // Drivers on a trip or holding an offer are not free (one open offer per driver).
        let busy: HashSet<String> = sqlx::query_scalar(&format!(
            "SELECT driver_id FROM rides WHERE status IN ({TRIP_STATUSES_SQL}) AND driver_id IS NOT NULL
             UNION SELECT offered_driver_id FROM rides WHERE status = 'requested' AND offered_driver_id IS NOT NULL"
        ))
        .fetch_all(self.inner.store.write())
        .await?
        .into_iter()
        .collect();
        let mut asked_of: Vec<HashSet<String>> = Vec::with_capacity(rides.len());
        for ride in &rides {
            asked_of.push(
                sqlx::query_scalar("SELECT driver_id FROM ride_offers WHERE ride_id = $1")
                    .bind(&ride.id)
                    .fetch_all(self.inner.store.write())
                    .await?
                    .into_iter()
                    .collect(),
            );
        }
        let candidates_of = self.online_candidates(&rides, &busy, &asked_of, now).await?;
        let mut columns: Vec<Candidate> = Vec::new();
        let mut column_of: HashMap<Arc<str>, usize> = HashMap::new();
        let mut costs: Vec<Vec<Option<i64>>> = Vec::with_capacity(rides.len());
        for (ride, candidates) in rides.iter().zip(candidates_of) {
            let mut row = Vec::new();
            for candidate in candidates {
                let column = *column_of.entry(candidate.driver_id.clone()).or_insert_with(|| {
                    columns.push(candidate.clone());
                    columns.len() - 1
                });
                if row.len() <= column {
                    row.resize(column + 1, None);
                }
                row[column] = Some(self.inner.routes.estimate(candidate.location, ride.pickup).1);
            }
            costs.push(row);
        }
        for row in &mut costs {
            row.resize(columns.len(), None);
        }
        let pairs = assign_batched(&costs, columns.len());
        let matched: HashSet<usize> = pairs.iter().map(|(r, _)| *r).collect();
        // A request nobody could reach counts a round towards `no_driver`; one that lost
        // its drivers to others in this batch simply waits for the next.
        for (r, ride) in rides.iter().enumerate() {
            if count_rounds && !matched.contains(&r) && costs[r].iter().all(Option::is_none) {
                sqlx::query(
                    "UPDATE rides SET dispatch_rounds = dispatch_rounds + 1 WHERE id = $1 AND status = 'requested'
                     AND offered_driver_id IS NULL",
                )
                .bind(&ride.id)
                .execute(self.inner.store.write())
                .await?;
            }
        }
        let offer_timeout_ms = config.offer_timeout.as_millis() as i64;
        for (r, column) in pairs {
            let ride = &rides[r];
            let driver_id = columns[column].driver_id.to_string();
            let eta = costs[r][column].unwrap_or(0);
            let expires_at = now + offer_timeout_ms;
            let mut transaction = self.inner.store.begin().await?;
            let offered = sqlx::query(
                "UPDATE rides SET offered_driver_id = $2, offer_expires_at = $3, updated_at = $4
                 WHERE id = $1 AND status = 'requested' AND offered_driver_id IS NULL",
            )
            .bind(&ride.id)
            .bind(&driver_id)
            .bind(expires_at)
            .bind(now)
            .execute(&mut *transaction)
            .await?;
            if offered.rows_affected() != 1 {
                continue;
            }
            sqlx::query(
                "INSERT INTO ride_offers (ride_id, driver_id, outcome, created_at) VALUES ($1, $2, 'open', $3)
                 ON CONFLICT (ride_id, driver_id) DO UPDATE SET outcome = 'open'",
            )
            .bind(&ride.id)
            .bind(&driver_id)
            .bind(now)
            .execute(&mut *transaction)
            .await?;
            let offer = Offer {
                ride_id: ride.id.clone(),
                pickup: ride.pickup,
                dropoff: ride.dropoff,
                fare: ride.fare,
                currency: ride.currency.clone(),
                pickup_eta_s: Some(eta),
                expires_at: Timestamp::from_unix_millis(expires_at),
                remaining_ms: offer_timeout_ms,
            };
            let data = serde_json::to_value(OfferView::from(&offer))
                .map_err(|error| RidesError::Invariant(format!("an offer's event: {error}")))?;
            let appended = self.inner.events.append(&mut transaction, &[driver_id], "ride.offer", &data).await?;
            transaction.commit().await?;
            self.inner.events.publish(appended);
        }
        Ok(())
    }
}
