//! Driver presence across nodes. Every node keeps a **replica** of the whole driver index:
//! a driver's going online, moving and going offline is applied to the index of the node
//! the driver is connected to and announced on the bus (`rides.drivers`), and every other
//! node applies the announcement to its own copy. So whichever node holds the dispatch
//! lease — now, or after taking it over from a node that died — already sees every driver,
//! and has nothing to rebuild. The same announcements carry which rider a driver on a trip
//! streams its locations to, so a driver connected to any node reaches the rider on any
//! other, and a decline on any node wakes the lease holder's dispatcher at once. Quotes are
//! announced too, as demand with the rider who asked, so surge weighs the riders of every
//! node (each rider once, on whichever nodes they asked).
//!
//! We chose a replica on every node over sending locations only to the lease holder
//! because the lease can move at any moment: a node that takes it over rebuilds nothing, and
//! no node needs to know who holds it. The cost is that each location reaches every node —
//! fine for a city's drivers on a handful of nodes; a subject per region comes with regions.
//!
//! All of it is soft state: an announcement lost on the bus costs at most one location
//! (drivers resend every few seconds), and a driver nobody hears from drops out of every
//! replica after the index's silence limit. The announcements whose loss would cost more are
//! a trip's start and end. A node that missed a trip's end would go on streaming the
//! driver's locations to the former rider; one that missed its start would send the rider
//! nothing from the driver's locations it handles. So each node makes the trips it streams
//! match the database (`check_trips`: it drops those whose ride is over and takes up those
//! under way it lacks) at start-up, every `trip_check_interval` and whenever the bus says
//! notices were lost; and when a driver goes online with no trip under way, every node
//! checks the trip it has for that driver (`TripCheck`), so a stale one ends there and then
//! whichever node the driver went online through.
//!
//! A `Trip` can also come late: announced by a node that read the ride just before it ended
//! elsewhere (a driver going online during the last seconds of the trip), or found by a
//! check that read the database just before. So each node remembers the rides whose trips
//! it saw end (`EndedTrips`, the last `ENDED_TRIPS_REMEMBERED`) and takes up no trip of
//! theirs again: a ride that ended never starts again.
//!
//! A node alone (no NATS) announces nothing: it has applied every change already and
//! skips its own notices anyway.

use crate::model::LatLng;
use crate::service::{lock, Rides, RidesError, TRIP_STATUSES_SQL};
use plaza_bus::Received;
use plaza_kernel::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// The bus subject every node listens on for driver presence.
pub const DRIVERS_SUBJECT: &str = "rides.drivers";
/// Announcements longer than this are ignored (a real one is under 200 bytes).
const NOTICE_BYTES_MAX: usize = 1024;
/// Rides asked about in one statement when trips are checked against the database.
const TRIPS_CHECKED_PER_QUERY: usize = 500;
/// Trips under way a node takes up from the database in one check (a region's trips at once,
/// for a city; beyond it the rest wait for the next check).
const TRIPS_LOADED_MAX: i64 = 20_000;
/// Ended trips a node remembers, so that a late `Trip` for one does not start it again.
const ENDED_TRIPS_REMEMBERED: usize = 10_000;

/// The rides whose trips this node saw end lately, oldest first.
#[derive(Debug, Default)]
pub(crate) struct EndedTrips {
    order: std::collections::VecDeque<String>,
    rides: HashSet<String>,
}

impl EndedTrips {
    fn insert(&mut self, ride_id: &str) {
        if !self.rides.insert(ride_id.to_string()) {
            return;
        }
        self.order.push_back(ride_id.to_string());
        while self.order.len() > ENDED_TRIPS_REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.rides.remove(&oldest);
            }
        }
    }

    fn contains(&self, ride_id: &str) -> bool {
        self.rides.contains(ride_id)
    }
}

/// What one node tells the others about a driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Presence {
    /// Online at this point (also a location update: the origin node already checked it).
    At {
        driver_id: String,
        lat: f64,
        lng: f64,
    },
    Offline {
        driver_id: String,
    },
    /// The driver's locations go to this rider (the driver accepted, or came back during
    /// a trip).
    Trip {
        driver_id: String,
        ride_id: String,
        rider_id: String,
    },
    /// The trip of `ride_id` is over. A node removes the driver's trip only if it is that
    /// ride's (a late notice must not end the driver's next trip); without a ride (a node of
    /// an older version), whatever trip the driver has.
    TripEnded {
        driver_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ride_id: Option<String>,
    },
    /// The driver went online with no trip under way: a node that still streams a trip for
    /// them checks it against the database (its end may have been lost on this node's bus).
    TripCheck {
        driver_id: String,
    },
    /// An offer was declined: the lease holder should dispatch now, not at the next tick.
    Dispatch,
    /// A rider was quoted for a pickup here: demand, which surge weighs against supply, so
    /// every node prices an area from the quotes of all nodes, not only its own.
    Demand {
        lat: f64,
        lng: f64,
        /// Who asked: demand counts riders, not quotes. Without it (a node of an older
        /// version), the quote counts as a rider of its own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rider_id: Option<String>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The node that sent it: a node's own announcements come back to it locally and are
    /// skipped (it applied them already).
    node: String,
    #[serde(flatten)]
    presence: Presence,
}

impl Rides {
    /// Applies `presence` here and tells the other nodes.
    pub(crate) fn announce_presence(&self, presence: Presence) {
        self.apply_presence(&presence);
        self.tell_other_nodes(presence);
    }

    /// Tells the other nodes what this node has applied already (nothing to do without
    /// other nodes).
    pub(crate) fn tell_other_nodes(&self, presence: Presence) {
        if !self.inner.events.bus().is_clustered() {
            return;
        }
        let envelope = Envelope { node: self.inner.node_id.clone(), presence };
        match serde_json::to_vec(&envelope) {
            Ok(payload) => self.inner.events.bus().publish(DRIVERS_SUBJECT, bytes::Bytes::from(payload)),
            Err(error) => tracing::error!("cannot encode a driver presence notice: {error}"),
        }
    }

    fn apply_presence(&self, presence: &Presence) {
        let now = Timestamp::now().unix_millis();
        match presence {
            Presence::At { driver_id, lat, lng } => {
                if let Ok(location) = LatLng::new(*lat, *lng) {
                    lock(&self.inner.index).go_online(driver_id, location, now);
                }
            }
            Presence::Offline { driver_id } => {
                lock(&self.inner.index).remove(driver_id);
            }
            Presence::Trip { driver_id, ride_id, rider_id } => {
                // Lock order: ended trips, then trips (as in `check_trips`).
                let ended = lock(&self.inner.ended_trips);
                if !ended.contains(ride_id) {
                    lock(&self.inner.trips).insert(driver_id.clone(), (ride_id.clone(), rider_id.clone()));
                }
            }
            Presence::TripEnded { driver_id, ride_id } => {
                let mut ended_trips = lock(&self.inner.ended_trips);
                if let Some(ride_id) = ride_id {
                    ended_trips.insert(ride_id);
                }
                let mut trips = lock(&self.inner.trips);
                let ended = match (trips.get(driver_id), ride_id) {
                    (Some((trip_ride_id, _)), Some(ride_id)) => trip_ride_id == ride_id,
                    (trip, _) => trip.is_some(),
                };
                if ended {
                    trips.remove(driver_id);
                }
            }
            Presence::TripCheck { driver_id } => {
                // Only a node with a trip for the driver asks the database, in a task of its
                // own: the bus loop must not wait on it.
                if lock(&self.inner.trips).contains_key(driver_id) {
                    let (rides, driver_id) = (self.clone(), driver_id.clone());
                    tokio::spawn(async move {
                        if let Err(error) = rides.end_trip_if_over(&driver_id).await {
                            tracing::warn!("checking a trip when its driver went online failed: {error}");
                        }
                    });
                }
            }
            Presence::Dispatch => self.inner.dispatch_now.notify_one(),
            Presence::Demand { lat, lng, rider_id } => {
                if let Ok(pickup) = LatLng::new(*lat, *lng) {
                    let rider_id = rider_id.clone().unwrap_or_else(plaza_kernel::new_id);
                    self.record_demand(pickup, &rider_id, now);
                }
            }
        }
    }

    /// Ends the trip this node streams `driver_id`'s locations for, here and on every node,
    /// if the database says its ride is no longer under way (its end was announced on a bus
    /// this node did not hear).
    pub(crate) async fn end_trip_if_over(&self, driver_id: &str) -> Result<(), RidesError> {
        let Some(ride_id) = lock(&self.inner.trips).get(driver_id).map(|(ride_id, _)| ride_id.clone()) else {
            return Ok(());
        };
        if self.rides_under_way([ride_id.as_str()].into_iter()).await?.is_empty() {
            self.announce_presence(Presence::TripEnded { driver_id: driver_id.to_string(), ride_id: Some(ride_id) });
        }
        Ok(())
    }

    /// Makes the trips this node streams match the database: drops those whose ride is over
    /// (the repair for a lost `TripEnded`, which would otherwise keep a driver's locations
    /// going to the former rider), then takes up those under way it lacks (the repair for a
    /// lost `Trip`, without which the rider would see nothing of the locations this node
    /// handles). Returns how many were dropped and how many taken up.
    pub(crate) async fn check_trips(&self) -> Result<(usize, usize), RidesError> {
        let dropped = self.drop_ended_trips().await?;
        let taken_up = self.take_up_trips().await?;
        Ok((dropped, taken_up))
    }

    /// Drops every trip this node streams whose ride the database says is over. One
    /// statement per `TRIPS_CHECKED_PER_QUERY` trips.
    async fn drop_ended_trips(&self) -> Result<usize, RidesError> {
        let trips: Vec<(String, String)> = lock(&self.inner.trips)
            .iter()
            .map(|(driver_id, (ride_id, _))| (driver_id.clone(), ride_id.clone()))
            .collect();
        if trips.is_empty() {
            return Ok(0);
        }
        let under_way = self.rides_under_way(trips.iter().map(|(_, ride_id)| ride_id.as_str())).await?;
        let mut current = lock(&self.inner.trips);
        let mut dropped = 0;
        for (driver_id, ride_id) in trips {
            // Only the trip that was checked: the driver may have started another meanwhile.
            let same_trip = current.get(&driver_id).is_some_and(|(current_ride_id, _)| *current_ride_id == ride_id);
            if same_trip && !under_way.contains(&ride_id) {
                current.remove(&driver_id);
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Takes up the trips under way the database has and this node lacks (at most
    /// `TRIPS_LOADED_MAX`), except those it saw end since the database was read.
    async fn take_up_trips(&self) -> Result<usize, RidesError> {
        let rows = sqlx::query(&format!(
            "SELECT id, driver_id, rider_id FROM rides WHERE status IN ({TRIP_STATUSES_SQL}) AND driver_id IS NOT NULL
             ORDER BY updated_at DESC LIMIT $1"
        ))
        .bind(TRIPS_LOADED_MAX)
        .fetch_all(self.inner.store.write())
        .await?;
        let mut under_way = Vec::with_capacity(rows.len());
        for row in rows {
            let ride_id: String = plaza_store::Row::try_get(&row, "id")?;
            let driver_id: String = plaza_store::Row::try_get(&row, "driver_id")?;
            let rider_id: String = plaza_store::Row::try_get(&row, "rider_id")?;
            under_way.push((driver_id, ride_id, rider_id));
        }
        let ended = lock(&self.inner.ended_trips);
        let mut trips = lock(&self.inner.trips);
        let mut taken_up = 0;
        for (driver_id, ride_id, rider_id) in under_way {
            let known = trips.get(&driver_id).is_some_and(|(known_ride_id, _)| *known_ride_id == ride_id);
            if !known && !ended.contains(&ride_id) {
                trips.insert(driver_id, (ride_id, rider_id));
                taken_up += 1;
            }
        }
        Ok(taken_up)
    }

    /// Which of these rides are trips under way.
    async fn rides_under_way<'a>(
        &self,
        ride_ids: impl Iterator<Item = &'a str>,
    ) -> Result<HashSet<String>, RidesError> {
        let ride_ids: Vec<&str> = ride_ids.collect();
        let mut under_way = HashSet::new();
        for chunk in ride_ids.chunks(TRIPS_CHECKED_PER_QUERY) {
            let statement = format!(
                "SELECT id FROM rides WHERE status IN ({TRIP_STATUSES_SQL}) AND id IN ({})",
                plaza_store::numbered_parameters(1, chunk.len())
            );
            let statement = self.inner.store.backend().bulk_sql(&statement);
            let mut query = sqlx::query_scalar::<_, String>(&statement);
            for ride_id in chunk {
                query = query.bind(*ride_id);
            }
            under_way.extend(query.fetch_all(self.inner.store.write()).await?);
        }
        Ok(under_way)
    }

    async fn check_trips_logged(&self) {
        match self.check_trips().await {
            Ok((0, 0)) => {}
            Ok((dropped, taken_up)) => {
                tracing::info!(dropped, taken_up, "the trips this node streams were made to match the database")
            }
            Err(error) => tracing::warn!("checking the trips this node streams failed: {error}"),
        }
    }

    /// Subscribes to the other nodes' driver announcements; the returned future applies
    /// them to this node's replica until the bus closes, and checks the trips it streams
    /// against the database every `trip_check_interval` and after notices were lost.
    /// Subscribed before it returns, so nothing announced after start-up is missed.
    pub async fn follow_presence(&self) -> Result<impl std::future::Future<Output = ()> + Send + 'static, RidesError> {
        let mut notices = self
            .inner
            .events
            .bus()
            .subscribe(DRIVERS_SUBJECT)
            .await
            .map_err(|error| RidesError::Bus(error.to_string()))?;
        let rides = self.clone();
        Ok(async move {
            // The checks run in a task of their own: a database round trip inside this loop
            // would leave the bus unread meanwhile, and a subscriber that lags while the
            // buffer is full lags again at the next notice — checking, lagging and dropping
            // every notice for as long as the bus stays busy. Lag reports arriving during a
            // check ask for one more check, not one each.
            let check_wanted = Arc::new(tokio::sync::Notify::new());
            let _checker = AbortOnDrop(tokio::spawn({
                let (rides, check_wanted) = (rides.clone(), Arc::clone(&check_wanted));
                async move {
                    // The first tick is immediate: a node starting takes up the trips under way.
                    let mut check_every = tokio::time::interval(rides.inner.config.trip_check_interval);
                    check_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = check_every.tick() => {}
                            () = check_wanted.notified() => {}
                        }
                        rides.check_trips_logged().await;
                    }
                }
            }));
            loop {
                let received = notices.recv().await;
                match received {
                    Received::Notification(notice) if notice.payload.len() <= NOTICE_BYTES_MAX => {
                        match serde_json::from_slice::<Envelope>(&notice.payload) {
                            Ok(envelope) if envelope.node != rides.inner.node_id => {
                                rides.apply_presence(&envelope.presence);
                            }
                            Ok(_) => {}
                            Err(error) => tracing::warn!("ignoring a malformed driver presence notice: {error}"),
                        }
                    }
                    Received::Notification(_) => tracing::warn!("ignoring an oversized driver presence notice"),
                    // Lost announcements are repaired by the drivers' next locations and a
                    // lost decline by the next batch, but a lost trip end only by the database.
                    Received::Lagged(_) => check_wanted.notify_one(),
                    Received::Closed => break,
                }
            }
        })
    }
}

/// A task that stops when its handle is dropped, with whatever owned it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_trips_are_remembered_up_to_their_bound_oldest_forgotten_first() {
        let mut ended = EndedTrips::default();
        for n in 0..=ENDED_TRIPS_REMEMBERED {
            ended.insert(&format!("r{n}"));
        }
        ended.insert("r1");
        assert!(!ended.contains("r0"), "the oldest is forgotten");
        assert!(ended.contains("r1") && ended.contains(&format!("r{ENDED_TRIPS_REMEMBERED}")));
        assert_eq!((ended.order.len(), ended.rides.len()), (ENDED_TRIPS_REMEMBERED, ENDED_TRIPS_REMEMBERED));
    }

    #[test]
    fn announcements_round_trip_with_their_node() {
        let envelope =
            Envelope { node: "n1".into(), presence: Presence::At { driver_id: "d1".into(), lat: 1.3, lng: 103.8 } };
        let text = serde_json::to_string(&envelope).unwrap_or_default();
        assert_eq!(text, r#"{"node":"n1","kind":"at","driver_id":"d1","lat":1.3,"lng":103.8}"#);
        let back: Envelope = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!((back.node.as_str(), back.presence), ("n1", envelope.presence));
        let wake: Envelope =
            serde_json::from_str(r#"{"node":"n2","kind":"dispatch"}"#).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(wake.presence, Presence::Dispatch);
        // A trip's end from a node that does not name the ride still reads.
        let ended: Envelope = serde_json::from_str(r#"{"node":"n3","kind":"trip_ended","driver_id":"d1"}"#)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(ended.presence, Presence::TripEnded { driver_id: "d1".into(), ride_id: None });
    }
}
