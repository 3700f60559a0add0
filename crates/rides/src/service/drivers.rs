//! Drivers: going online and offline, locations (and the trip's recorded route).

use super::*;

impl Rides {
    /// Puts the caller online as a driver with `vehicle` at `location`.
    pub async fn go_online(&self, me: &User, vehicle: Vehicle, location: LatLng) -> Result<DriverState, RidesError> {
        let now = Timestamp::now().unix_millis();
        sqlx::query(
            "INSERT INTO ride_drivers (driver_id, plate, model, seats, online, updated_at) VALUES ($1, $2, $3, $4, 1, $5)
             ON CONFLICT (driver_id) DO UPDATE SET plate = excluded.plate, model = excluded.model,
                 seats = excluded.seats, online = 1, updated_at = excluded.updated_at",
        )
        .bind(&me.id)
        .bind(&vehicle.plate)
        .bind(&vehicle.model)
        .bind(vehicle.seats)
        .bind(now)
        .execute(self.inner.store.write())
        .await?;
        self.announce_presence(Presence::At { driver_id: me.id.clone(), lat: location.lat(), lng: location.lng() });
        // A driver coming back (after a restart of either side) resumes streaming to the
        // rider of a trip still under way.
        match self.active_ride_of_driver(&me.id).await? {
            Some(ride) => self.announce_presence(Presence::Trip {
                driver_id: me.id.clone(),
                ride_id: ride.id.clone(),
                rider_id: ride.rider_id.clone(),
            }),
            // A trip some node still streams although its ride is over (its end was lost on
            // the bus) must not send this driver's next locations to that rider: this node
            // checks its own, and asks every other node to check theirs.
            None => {
                self.end_trip_if_over(&me.id).await?;
                self.tell_other_nodes(Presence::TripCheck { driver_id: me.id.clone() });
            }
        }
        self.driver_state(me).await
    }

    /// Takes the caller out of dispatch. A trip under way goes on.
    pub async fn go_offline(&self, me: &User) -> Result<DriverState, RidesError> {
        let now = Timestamp::now().unix_millis();
        sqlx::query("UPDATE ride_drivers SET online = 0, updated_at = $2 WHERE driver_id = $1")
            .bind(&me.id)
            .bind(now)
            .execute(self.inner.store.write())
            .await?;
        self.announce_presence(Presence::Offline { driver_id: me.id.clone() });
        self.driver_state(me).await
    }

    /// Where the caller stands as a driver: online or not, the car, the trip under way and
    /// the offer waiting for an answer with the milliseconds it has left by the server's
    /// clock. What a driver's app reads after a reload to carry on instead of going online
    /// again.
    pub async fn driver_state(&self, me: &User) -> Result<DriverState, RidesError> {
        let now = Timestamp::now().unix_millis();
        let row = sqlx::query("SELECT plate, model, seats, online FROM ride_drivers WHERE driver_id = $1")
            .bind(&me.id)
            .fetch_optional(self.inner.store.write())
            .await?;
        let (vehicle, online_in_database) = match row {
            Some(row) => {
                let vehicle = Vehicle {
                    plate: row.try_get("plate")?,
                    model: row.try_get("model")?,
                    seats: row.try_get("seats")?,
                };
                (Some(vehicle), row.try_get::<i64, _>("online")? == 1)
            }
            None => (None, false),
        };
        let (heard_from, location) = {
            let index = lock(&self.inner.index);
            (index.is_online(&me.id, now), index.location(&me.id))
        };
        let online = online_in_database && heard_from;
        let ride = self.active_ride_of_driver(&me.id).await?;
        let offer = match ride {
            Some(_) => None,
            None => self.open_offer_of(&me.id, location, now).await?,
        };
        Ok(DriverState {
            driver_id: me.id.clone(),
            online,
            vehicle,
            location: location.filter(|_| online).map(|at| (at.lat(), at.lng())),
            active_ride_id: ride.as_ref().map(|ride| ride.id.clone()),
            ride,
            offer,
        })
    }

    /// The offer `driver_id` may still accept, priced from where the driver is now.
    async fn open_offer_of(
        &self,
        driver_id: &str,
        location: Option<LatLng>,
        now: i64,
    ) -> Result<Option<Offer>, RidesError> {
        let row = sqlx::query(&format!(
            "SELECT {RIDE_COLUMNS} FROM rides WHERE status = 'requested' AND offered_driver_id = $1
             AND offer_expires_at >= $2 LIMIT 1"
        ))
        .bind(driver_id)
        .bind(now)
        .fetch_optional(self.inner.store.write())
        .await?;
        let Some(ride) = row.map(|row| ride_from_row(&row)).transpose()? else { return Ok(None) };
        let Some(expires_at) = ride.offer_expires_at else { return Ok(None) };
        let pickup_eta_s = location.map(|at| self.inner.routes.estimate(at, ride.pickup).1);
        Ok(Some(Offer {
            ride_id: ride.id,
            pickup: ride.pickup,
            dropoff: ride.dropoff,
            fare: ride.fare,
            currency: ride.currency,
            pickup_eta_s,
            expires_at,
            remaining_ms: (expires_at.unix_millis() - now).max(0),
        }))
    }

    /// A new position of an online driver; the rider of the driver's trip sees it live.
    /// While the trip is in progress, the stretch driven (a move the index checked against
    /// its speed limit) is added to the ride's recorded route, which the fare is judged by.
    pub async fn update_location(&self, me: &User, location: LatLng, heading: Option<f64>) -> Result<(), RidesError> {
        let now = Timestamp::now().unix_millis();
        let driven_m = lock(&self.inner.index).update_measured(&me.id, location, now)?;
        // Checked here; the other nodes' replicas take it as it is.
        self.tell_other_nodes(Presence::At { driver_id: me.id.clone(), lat: location.lat(), lng: location.lng() });
        let trip = lock(&self.inner.trips).get(&me.id).cloned();
        if let Some((ride_id, rider_id)) = trip {
            let data = json!({"ride_id": ride_id, "driver_id": me.id, "lat": location.lat(), "lng": location.lng(),
                "heading": heading});
            self.inner.events.publish_ephemeral(&[rider_id], "driver.location", &data);
            if let Some(driven_m) = driven_m.filter(|driven_m| *driven_m > 0.0) {
                self.record_route(&ride_id, &me.id, driven_m).await?;
            }
        }
        Ok(())
    }

    /// Adds `driven_m` to the route of `ride_id` if it is `driver_id`'s trip in progress (on
    /// the way to the pickup nothing counts). Additions commute, so locations handled on
    /// several nodes at once add up all the same.
    pub(crate) async fn record_route(&self, ride_id: &str, driver_id: &str, driven_m: f64) -> Result<(), RidesError> {
        sqlx::query(
            "UPDATE rides SET route_m = route_m + $3 WHERE id = $1 AND driver_id = $2 AND status = 'in_progress'",
        )
        .bind(ride_id)
        .bind(driver_id)
        .bind(driven_m)
        .execute(self.inner.store.write())
        .await?;
        Ok(())
    }

    /// Where an online driver last said they were, as this node's index has it.
    pub fn driver_location(&self, driver_id: &str) -> Option<LatLng> {
        lock(&self.inner.index).location(driver_id)
    }

    /// The car a driver last went online with (what a rider is told to look for).
    pub async fn vehicle_of(&self, driver_id: &str) -> Result<Option<Vehicle>, RidesError> {
        let row = sqlx::query("SELECT plate, model, seats FROM ride_drivers WHERE driver_id = $1")
            .bind(driver_id)
            .fetch_optional(self.inner.store.read())
            .await?;
        row.map(|row| {
            Ok(Vehicle { plate: row.try_get("plate")?, model: row.try_get("model")?, seats: row.try_get("seats")? })
        })
        .transpose()
    }

    pub(crate) async fn active_ride_of_driver(&self, driver_id: &str) -> Result<Option<Ride>, RidesError> {
        let row = sqlx::query(&format!(
            "SELECT {RIDE_COLUMNS} FROM rides WHERE driver_id = $1 AND status IN ({TRIP_STATUSES_SQL}) LIMIT 1"
        ))
        .bind(driver_id)
        .fetch_optional(self.inner.store.write())
        .await?;
        row.map(|row| ride_from_row(&row)).transpose()
    }
}
