//! Quotes and surge (see "What drives surge" and "What a quote tells of drivers" in the
//! service's docs).

use super::*;

impl Rides {
    /// Prices a trip for the caller; the quote is theirs for `quote_ttl`.
    pub async fn quote(&self, me: &User, pickup: LatLng, dropoff: LatLng) -> Result<Quote, RidesError> {
        let config = &self.inner.config;
        let now = Timestamp::now();
        let (distance_m, duration_s) = self.inner.routes.estimate(pickup, dropoff);
        let (in_area, found) = {
            let index = lock(&self.inner.index);
            let in_area = index.drivers_in_area(pickup, now.unix_millis());
            let wanted = config.eta_precise_drivers_min.max(1) + ETA_SPARE_CANDIDATES;
            let found = index.nearest(pickup, config.search_radius_m, wanted, now.unix_millis(), |id| id == me.id);
            (in_area, found)
        };
        // The index is fed by the bus; the database says who is online (and who is free).
        let standing =
            self.standing_of(in_area.iter().chain(found.iter().map(|c| &c.driver_id)).map(|id| &**id)).await?;
        let supply = in_area.iter().filter(|id| standing.contains_key(&***id)).count() as u64;
        let nearest: Vec<_> = found
            .into_iter()
            .filter(|candidate| standing.get(&*candidate.driver_id) == Some(&nearby::Standing::Free))
            .take(config.eta_precise_drivers_min.max(1))
            .collect();
        let demand = self.record_demand(pickup, &me.id, now.unix_millis());
        self.tell_other_nodes(Presence::Demand { lat: pickup.lat(), lng: pickup.lng(), rider_id: Some(me.id.clone()) });
        let surge_milli = config.fare.surge_milli(demand, supply);
        let fare = config.fare.fare(distance_m, duration_s, surge_milli);
        let pickup_eta_s = nearest.first().map(|candidate| {
            let eta_s = self.inner.routes.estimate(candidate.location, pickup).1;
            coarse_eta_s(eta_s, nearest.len(), config)
        });
        let quote = Quote {
            id: plaza_kernel::new_id(),
            rider_id: me.id.clone(),
            pickup,
            dropoff,
            fare,
            currency: config.fare.currency.clone(),
            distance_m,
            duration_s,
            surge_milli,
            pickup_eta_s,
            expires_at: Timestamp::from_unix_millis(now.unix_millis() + config.quote_ttl.as_millis() as i64),
        };
        sqlx::query(
            "INSERT INTO ride_quotes (id, rider_id, pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, fare_amount, currency,
                 distance_m, duration_s, surge_milli, pickup_eta_s, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&quote.id)
        .bind(&quote.rider_id)
        .bind(pickup.lat())
        .bind(pickup.lng())
        .bind(dropoff.lat())
        .bind(dropoff.lng())
        .bind(fare)
        .bind(&quote.currency)
        .bind(distance_m)
        .bind(duration_s)
        .bind(surge_milli)
        .bind(pickup_eta_s)
        .bind(quote.expires_at.unix_millis())
        .bind(now.unix_millis())
        .execute(self.inner.store.write())
        .await?;
        Ok(quote)
    }

    /// Counts `rider_id`'s quote as demand in its area and returns the area's recent
    /// demand: the riders who asked in the window, each once however often they asked.
    pub(crate) fn record_demand(&self, pickup: LatLng, rider_id: &str, now_ms: i64) -> u64 {
        let Some(area) = h3o::LatLng::new(pickup.lat(), pickup.lng()).ok().map(|p| p.to_cell(SURGE_RESOLUTION)) else {
            return 0;
        };
        let mut demand = lock(&self.inner.demand);
        if demand.len() >= DEMAND_AREAS_MAX && !demand.contains_key(&area) {
            demand.retain(|_, area| area.last_ms().is_some_and(|last| now_ms - last <= DEMAND_WINDOW_MS));
            if demand.len() >= DEMAND_AREAS_MAX {
                return 0;
            }
        }
        demand.entry(area).or_default().record(rider_id, now_ms)
    }

    pub(crate) async fn load_quote(&self, me: &User, quote_id: &str) -> Result<Quote, RidesError> {
        let row = sqlx::query(
            "SELECT id, rider_id, pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, fare_amount, currency, distance_m,
                    duration_s, surge_milli, pickup_eta_s, expires_at FROM ride_quotes WHERE id = $1",
        )
        .bind(quote_id)
        .fetch_optional(self.inner.store.write())
        .await?
        .ok_or(RidesError::QuoteNotFound)?;
        let rider_id: String = row.try_get("rider_id")?;
        if rider_id != me.id {
            return Err(RidesError::QuoteNotFound);
        }
        Ok(Quote {
            id: row.try_get("id")?,
            rider_id,
            pickup: point(&row, "pickup")?,
            dropoff: point(&row, "dropoff")?,
            fare: row.try_get("fare_amount")?,
            currency: row.try_get("currency")?,
            distance_m: row.try_get("distance_m")?,
            duration_s: row.try_get("duration_s")?,
            surge_milli: row.try_get("surge_milli")?,
            pickup_eta_s: row.try_get("pickup_eta_s")?,
            expires_at: Timestamp::from_unix_millis(row.try_get("expires_at")?),
        })
    }
}

/// Drivers taken from the index beyond those a quote's ETA needs, for some the database
/// has busy or offline.
const ETA_SPARE_CANDIDATES: usize = 8;

/// The riders who quoted in one area recently, each counted once: the demand side of surge.
/// `asked` holds every quote in time order (so the window's end is found at the front) and
/// `riders` each rider's latest; a quote leaving the window forgets its rider only if that
/// rider has not asked since.
#[derive(Debug, Default)]
pub(crate) struct AreaDemand {
    asked: VecDeque<(i64, Arc<str>)>,
    riders: HashMap<Arc<str>, i64>,
}

impl AreaDemand {
    /// Records a quote and returns the distinct riders in the window.
    pub(crate) fn record(&mut self, rider_id: &str, now_ms: i64) -> u64 {
        while let Some((at_ms, _)) = self.asked.front() {
            if now_ms - at_ms <= DEMAND_WINDOW_MS && self.asked.len() < DEMAND_PER_AREA_MAX {
                break;
            }
            if let Some((at_ms, rider)) = self.asked.pop_front() {
                if self.riders.get(&rider) == Some(&at_ms) {
                    self.riders.remove(&rider);
                }
            }
        }
        let rider: Arc<str> = Arc::from(rider_id);
        self.asked.push_back((now_ms, rider.clone()));
        self.riders.insert(rider, now_ms);
        self.riders.len() as u64
    }

    pub(crate) fn last_ms(&self) -> Option<i64> {
        self.asked.back().map(|(at_ms, _)| *at_ms)
    }
}

/// What a quote tells of the nearest driver's ETA: whole minutes (rounded up) when at
/// least `eta_precise_drivers_min` drivers are in reach, else only a bucket of
/// `eta_coarse_s`. A precise ETA from three pickups around a lone driver would trilaterate
/// where that driver is; a bucket says only that someone is within a wide ring.
pub(crate) fn coarse_eta_s(eta_s: i64, drivers_near: usize, config: &RidesConfig) -> i64 {
    let step_s = if drivers_near >= config.eta_precise_drivers_min { 60 } else { config.eta_coarse_s.max(60) };
    (eta_s.max(1) + step_s - 1) / step_s * step_s
}
