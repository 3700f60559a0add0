//! The rides service: drivers, quotes, requests, the trip and its money, as plain async
//! functions over the store, the live index and the wallet's payment intents. No HTTP here.
//!
//! ## What drives surge
//! Surge in a resolution-7 area (about 5 km²) is demand over supply, in steps of 0.1 from
//! 1.0 up to `surge_cap_milli` (`FarePolicy::surge_milli`). **Demand** is the number of
//! distinct riders who asked for a quote with a pickup in the area in the last five
//! minutes: a rider counts once however many quotes they ask for (a request always follows
//! its own quote, so it adds no one), and quotes on every node count, since each is
//! announced on the bus with its rider. **Supply** is the number of online drivers heard
//! from in the area. So no one account can price an area up, and a rider's own repeated
//! quotes never raise their own fare.
//!
//! ## What a quote tells of drivers
//! `pickup_eta_s` is the nearest free driver's ETA rounded up to whole minutes when at
//! least `eta_precise_drivers_min` drivers are in reach, and only a bucket of
//! `eta_coarse_s` (rounded up) when fewer are: precise ETAs from three pickups around a
//! lone driver would trilaterate where that driver is.
//!
//! ## Where the driver must be
//! `arrive` and `start` need the driver's last known location (this node's replica of the
//! index) within `arrive_radius_m` of the pickup, and `complete` within it of the drop-off;
//! otherwise 409 `not_at_pickup` / `not_at_dropoff`. A driver's cancel never charges the
//! rider; the cancel fee is charged only when the rider cancels after the driver arrived
//! (which needed the driver at the pickup).
//!
//! ## The fare
//! The quote is an upfront price: `fare = max(minimum, (base + per_km × route estimate +
//! per_minute × time estimate) × surge)`, and the request holds it plus
//! `hold_margin_percent`. While the trip is in progress, every location update the index
//! accepted under its speed check adds the stretch driven to the ride's `route_m` (a move
//! after a silence, or going online again somewhere else, adds nothing); `started_at`
//! marks the start. On completion the trip is **plausible** when `route_m` is at least
//! `route_plausible_percent` of the straight line from pickup to drop-off and the trip took
//! at least that straight line at `trip_speed_max_kmh`. A plausible trip captures the
//! quoted fare. An implausible one captures the metered fare of what was recorded,
//! `(base + per_km × route_m + per_minute × duration) × surge` without the minimum, never
//! more than the quoted fare, and the ride is marked `review: "implausible_route"` for a
//! person to look at. Either way the capture is never above the hold.

use crate::index::{DriverIndex, IndexLimits, LocationRefused, SURGE_RESOLUTION};
use crate::model::{FarePolicy, GreatCircleRoutes, LatLng, RideAction, RideStatus, RouteEstimator};
use crate::presence::Presence;
use plaza_accounts::{Accounts, User};
use plaza_chat::{Chat, ChatError, MessageKind};
use plaza_events::{Appended, Events};
use plaza_kernel::{Currency, Money, Timestamp};
use plaza_store::{Any, AnyRow, Row, Store, Transaction};
use plaza_wallet::model::IdempotencyKey;
use plaza_wallet::{PaymentIntentStatus, Wallet, WalletError};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tunables of rides (`PLAZA_RIDES_*`).
#[derive(Debug, Clone)]
pub struct RidesConfig {
    pub fare: FarePolicy,
    /// Road distance over straight-line distance.
    pub detour_factor: f64,
    pub city_speed_kmh: f64,
    pub quote_ttl: Duration,
    /// How often the dispatcher collects open requests and assigns them together.
    pub batch_interval: Duration,
    /// How long a driver has to answer an offer.
    pub offer_timeout: Duration,
    /// Declined or timed-out offers, and batches without any candidate, before a request
    /// ends as `no_driver`.
    pub dispatch_rounds_max: i64,
    pub search_radius_m: f64,
    /// Candidates considered per request in a batch.
    pub candidates_per_request: usize,
    /// Open requests assigned in one batch (the rest wait for the next one).
    pub batch_requests_max: i64,
    /// Held on top of the fare, in percent, for a longer route than quoted.
    pub hold_margin_percent: i64,
    /// The platform's share of each fare and cancel fee, in basis points.
    pub platform_fee_bps: i64,
    /// Charged (minor units) when a trip is cancelled after the driver arrived.
    pub cancel_fee: i64,
    pub index_limits: IndexLimits,
    /// How long this node holds the dispatch lease without renewing it.
    pub lease_ttl: Duration,
    /// How long after its quote expired a hold whose ride was never saved is released.
    pub stranded_hold_grace: Duration,
    /// How long an expired quote is kept (a ride keeps its own copy of the price), so the
    /// table holds about this much quoting rather than every quote ever made.
    pub quote_retention: Duration,
    /// How often a node checks the trips it streams driver locations for against the
    /// database (the repair for a lost trip-end announcement; it also checks whenever the
    /// bus says announcements were lost).
    pub trip_check_interval: Duration,
    /// How near the pickup (to arrive and to start) and the drop-off (to complete) the
    /// driver's last known location must be, in metres.
    pub arrive_radius_m: f64,
    /// A trip whose recorded route is shorter than this share of the straight line from
    /// pickup to drop-off is implausible (see "The fare" in the module docs).
    pub route_plausible_percent: i64,
    /// A trip faster than this on average, over the straight line, is implausible.
    pub trip_speed_max_kmh: f64,
    /// With fewer free drivers than this in reach, a quote's pickup ETA is only a coarse
    /// bucket (`eta_coarse_s`), so quotes cannot locate a lone driver.
    pub eta_precise_drivers_min: usize,
    /// The bucket, in seconds, a quote's pickup ETA is rounded up to when few drivers are near.
    pub eta_coarse_s: i64,
}

impl Default for RidesConfig {
    fn default() -> Self {
        Self {
            fare: FarePolicy::default(),
            detour_factor: 1.35,
            city_speed_kmh: 25.0,
            quote_ttl: Duration::from_secs(300),
            batch_interval: Duration::from_millis(2000),
            offer_timeout: Duration::from_millis(15_000),
            dispatch_rounds_max: 5,
            search_radius_m: 5_000.0,
            candidates_per_request: 8,
            batch_requests_max: 200,
            hold_margin_percent: 20,
            platform_fee_bps: 2000,
            cancel_fee: 300,
            index_limits: IndexLimits::default(),
            lease_ttl: Duration::from_secs(10),
            stranded_hold_grace: Duration::from_secs(120),
            quote_retention: Duration::from_secs(3600),
            trip_check_interval: Duration::from_secs(60),
            arrive_radius_m: 150.0,
            route_plausible_percent: 50,
            trip_speed_max_kmh: 150.0,
            eta_precise_drivers_min: 3,
            eta_coarse_s: 300,
        }
    }
}

/// The statuses of a trip under way (a driver assigned, not yet final), for `status IN (…)`.
pub(crate) const TRIP_STATUSES_SQL: &str = "'driver_assigned', 'driver_arrived', 'in_progress'";

/// The one region this version dispatches (a lease per city comes with regions).
pub const REGION: &str = "default";
/// How far back a rider's quote counts as demand for surge.
const DEMAND_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Areas and quotes per area remembered for surge; beyond this, the oldest are forgotten.
const DEMAND_AREAS_MAX: usize = 100_000;
const DEMAND_PER_AREA_MAX: usize = 10_000;
/// Characters of a vehicle's plate and model, seats, and of a rating's comment.
pub const PLATE_MAX_CHARS: usize = 16;
pub const MODEL_MAX_CHARS: usize = 64;
pub const SEATS_MAX: i64 = 16;
pub const COMMENT_MAX_CHARS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum RidesError {
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("no such quote")]
    QuoteNotFound,
    #[error("the quote expired")]
    QuoteExpired,
    /// The quote's hold was released without a ride (its request lost to another, or a
    /// crash left it to the sweep): the quote cannot be used again.
    #[error("the quote was used up")]
    QuoteSpent,
    #[error("no such ride")]
    RideNotFound,
    #[error("the rider already has an open ride {ride_id}")]
    RideAlreadyOpen { ride_id: String },
    #[error("the ride is {status}, so it cannot {action}")]
    InvalidTransition { status: &'static str, action: &'static str },
    #[error("only {who} may {action} this ride")]
    NotAllowed { who: &'static str, action: &'static str },
    #[error("location refused: {0}")]
    Location(#[from] LocationRefused),
    /// Arriving and starting need the driver's last known location near the pickup.
    #[error("the driver is {distance_m:?} m from the pickup")]
    NotAtPickup { distance_m: Option<f64>, radius_m: f64 },
    /// Completing needs the driver's last known location near the drop-off.
    #[error("the driver is {distance_m:?} m from the drop-off")]
    NotAtDropoff { distance_m: Option<f64>, radius_m: f64 },
    #[error("already rated")]
    AlreadyRated,
    #[error("wallet: {0}")]
    Wallet(#[from] WalletError),
    #[error("chat: {0}")]
    Chat(#[from] ChatError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("bus: {0}")]
    Bus(String),
    #[error("invariant: {0}")]
    Invariant(String),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> RidesError {
    RidesError::InvalidField { field, reason: reason.into() }
}

/// A driver's car.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vehicle {
    pub plate: String,
    pub model: String,
    pub seats: i64,
}

impl Vehicle {
    pub fn parse(plate: &str, model: &str, seats: i64) -> Result<Self, RidesError> {
        let plate = plate.trim();
        if plate.is_empty() || plate.chars().count() > PLATE_MAX_CHARS {
            return Err(invalid("vehicle.plate", format!("1 to {PLATE_MAX_CHARS} characters")));
        }
        let model = model.trim();
        if model.is_empty() || model.chars().count() > MODEL_MAX_CHARS {
            return Err(invalid("vehicle.model", format!("1 to {MODEL_MAX_CHARS} characters")));
        }
        if !(1..=SEATS_MAX).contains(&seats) {
            return Err(invalid("vehicle.seats", format!("1 to {SEATS_MAX}")));
        }
        Ok(Self { plate: plate.to_string(), model: model.to_string(), seats })
    }
}

/// A driver as the driver sees themself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriverState {
    pub driver_id: String,
    pub online: bool,
    pub vehicle: Option<Vehicle>,
    pub location: Option<(f64, f64)>,
    pub active_ride_id: Option<String>,
}

/// A priced quote.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub id: String,
    pub rider_id: String,
    pub pickup: LatLng,
    pub dropoff: LatLng,
    pub fare: i64,
    pub currency: String,
    pub distance_m: i64,
    pub duration_s: i64,
    pub surge_milli: i64,
    pub pickup_eta_s: Option<i64>,
    pub expires_at: Timestamp,
}

/// A ride.
#[derive(Debug, Clone, PartialEq)]
pub struct Ride {
    pub id: String,
    pub quote_id: String,
    pub rider_id: String,
    pub driver_id: Option<String>,
    pub status: RideStatus,
    pub pickup: LatLng,
    pub dropoff: LatLng,
    pub fare: i64,
    pub currency: String,
    pub distance_m: i64,
    pub duration_s: i64,
    pub surge_milli: i64,
    pub payment_intent_id: String,
    pub hold: i64,
    pub payment_status: String,
    pub charged: i64,
    pub offered_driver_id: Option<String>,
    pub offer_expires_at: Option<Timestamp>,
    pub dispatch_rounds: i64,
    pub cancelled_by: Option<String>,
    /// When the trip started (`in_progress`), for its duration.
    pub started_at: Option<Timestamp>,
    /// Metres the driver's accepted locations covered while the trip was in progress.
    pub route_m: f64,
    /// Why the ride needs a person's look (`implausible_route`), if it does.
    pub review: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Ride {
    /// The ride as both parties see it (also the data of `ride.updated`).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "status": self.status.as_str(),
            "rider_id": self.rider_id,
            "driver_id": self.driver_id,
            "pickup": {"lat": self.pickup.lat(), "lng": self.pickup.lng()},
            "dropoff": {"lat": self.dropoff.lat(), "lng": self.dropoff.lng()},
            "fare": {"amount": self.fare, "currency": self.currency},
            "hold": {"amount": self.hold, "currency": self.currency},
            "charged": {"amount": self.charged, "currency": self.currency},
            "payment_status": self.payment_status,
            "distance_m": self.distance_m,
            "duration_s": self.duration_s,
            "surge": self.surge_milli as f64 / 1000.0,
            "cancelled_by": self.cancelled_by,
            "review": self.review,
            "created_at": self.created_at.to_rfc3339(),
            "updated_at": self.updated_at.to_rfc3339(),
        })
    }

    fn can_see(&self, user_id: &str) -> bool {
        self.rider_id == user_id
            || self.driver_id.as_deref() == Some(user_id)
            || self.offered_driver_id.as_deref() == Some(user_id)
    }
}

/// A rating given after a trip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rating {
    pub ride_id: String,
    pub rater_id: String,
    pub ratee_id: String,
    pub stars: i64,
    pub comment: Option<String>,
}

/// A ride posted into a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCard {
    pub message_id: String,
    pub conversation_id: String,
    pub seq: i64,
}

/// The rides service; cheap to clone.
#[derive(Clone)]
pub struct Rides {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Rides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rides").field("node_id", &self.inner.node_id).finish()
    }
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) events: Events,
    pub(crate) accounts: Accounts,
    pub(crate) wallet: Wallet,
    pub(crate) chat: Chat,
    pub(crate) config: RidesConfig,
    pub(crate) routes: Arc<dyn RouteEstimator>,
    pub(crate) index: Mutex<DriverIndex>,
    /// Recent quoting riders per resolution-7 area: the demand side of surge.
    demand: Mutex<HashMap<h3o::CellIndex, AreaDemand>>,
    /// The rider each driver on a trip streams locations to (driver → (ride, rider)).
    pub(crate) trips: Mutex<HashMap<String, (String, String)>>,
    pub(crate) node_id: String,
    /// Wakes the dispatcher before its next tick (a declined offer, on any node).
    pub(crate) dispatch_now: tokio::sync::Notify,
    /// Held by each dispatch batch from start to end; true once the lease was given back,
    /// after which this node dispatches no more (so no batch can take the lease again after
    /// `release_lease`).
    pub(crate) dispatch_stopped: tokio::sync::Mutex<bool>,
}

pub(crate) const RIDE_COLUMNS_PUB: &str = RIDE_COLUMNS;
const RIDE_COLUMNS: &str =
    "id, quote_id, rider_id, driver_id, status, pickup_lat, pickup_lng, dropoff_lat, dropoff_lng,
    fare_amount, currency, distance_m, duration_s, surge_milli, payment_intent_id, hold_amount, payment_status,
    charged_amount, offered_driver_id, offer_expires_at, dispatch_rounds, cancelled_by, started_at, route_m, review,
    created_at, updated_at";

/// Who asks for a transition.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Actor<'a> {
    User(&'a str),
    /// The dispatcher, giving up on a request.
    Dispatcher,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves soft state at worst stale; keep going.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Rides {
    pub fn new(
        store: Store,
        events: Events,
        accounts: Accounts,
        wallet: Wallet,
        chat: Chat,
        config: RidesConfig,
    ) -> Self {
        let routes =
            Arc::new(GreatCircleRoutes { detour_factor: config.detour_factor, city_speed_kmh: config.city_speed_kmh });
        Self::with_routes(store, events, accounts, wallet, chat, config, routes)
    }

    /// Rides with another route estimator (a routing engine).
    pub fn with_routes(
        store: Store,
        events: Events,
        accounts: Accounts,
        wallet: Wallet,
        chat: Chat,
        config: RidesConfig,
        routes: Arc<dyn RouteEstimator>,
    ) -> Self {
        let index = Mutex::new(DriverIndex::new(config.index_limits));
        Self {
            inner: Arc::new(Inner {
                store,
                events,
                accounts,
                wallet,
                chat,
                config,
                routes,
                index,
                demand: Mutex::new(HashMap::new()),
                trips: Mutex::new(HashMap::new()),
                node_id: plaza_kernel::new_id(),
                dispatch_now: tokio::sync::Notify::new(),
                dispatch_stopped: tokio::sync::Mutex::new(false),
            }),
        }
    }

    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    pub fn config(&self) -> &RidesConfig {
        &self.inner.config
    }

    // ---- drivers ----

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
        let active = self.active_ride_of_driver(&me.id).await?;
        match &active {
            Some(ride) => self.announce_presence(Presence::Trip {
                driver_id: me.id.clone(),
                ride_id: ride.id.clone(),
                rider_id: ride.rider_id.clone(),
            }),
            // A trip this node still streams although its ride is over (its end was lost on
            // the bus) must not send this driver's next locations to that rider.
            None => self.end_trip_if_over(&me.id).await?,
        }
        Ok(DriverState {
            driver_id: me.id.clone(),
            online: true,
            vehicle: Some(vehicle),
            location: Some((location.lat(), location.lng())),
            active_ride_id: active.map(|ride| ride.id),
        })
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
        let vehicle = self.vehicle_of(&me.id).await?;
        let active = self.active_ride_of_driver(&me.id).await?;
        Ok(DriverState {
            driver_id: me.id.clone(),
            online: false,
            vehicle,
            location: None,
            active_ride_id: active.map(|ride| ride.id),
        })
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
    async fn record_route(&self, ride_id: &str, driver_id: &str, driven_m: f64) -> Result<(), RidesError> {
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

    async fn active_ride_of_driver(&self, driver_id: &str) -> Result<Option<Ride>, RidesError> {
        let row = sqlx::query(&format!(
            "SELECT {RIDE_COLUMNS} FROM rides WHERE driver_id = $1 AND status IN ({TRIP_STATUSES_SQL}) LIMIT 1"
        ))
        .bind(driver_id)
        .fetch_optional(self.inner.store.write())
        .await?;
        row.map(|row| ride_from_row(&row)).transpose()
    }

    // ---- quotes ----

    /// Prices a trip for the caller; the quote is theirs for `quote_ttl`.
    pub async fn quote(&self, me: &User, pickup: LatLng, dropoff: LatLng) -> Result<Quote, RidesError> {
        let config = &self.inner.config;
        let now = Timestamp::now();
        let (distance_m, duration_s) = self.inner.routes.estimate(pickup, dropoff);
        let (supply, nearest) = {
            let index = lock(&self.inner.index);
            let supply = index.supply_near(pickup, now.unix_millis());
            let wanted = config.eta_precise_drivers_min.max(1);
            let nearest = index.nearest(pickup, config.search_radius_m, wanted, now.unix_millis(), |id| id == me.id);
            (supply, nearest)
        };
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

    async fn load_quote(&self, me: &User, quote_id: &str) -> Result<Quote, RidesError> {
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

    // ---- requests ----

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
        .bind(&intent.id)
        .bind(hold)
        .bind(now)
        .execute(&mut *transaction)
        .await;
        let inserted = match inserted {
            Ok(inserted) => inserted,
            Err(error) if plaza_store::is_unique_violation(&error) => {
                transaction.rollback().await?;
                return self.lost_to_another_request(me, quote_id, &intent.id).await;
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
    async fn lost_to_another_request(
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
    async fn release_hold(&self, intent_id: &str, key: &IdempotencyKey) -> Result<(), RidesError> {
        match self.inner.wallet.void_payment_intent(intent_id, Some(key)).await {
            Ok(_) | Err(WalletError::InvalidTransition { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    async fn forget_pending_hold(&self, quote_id: &str) -> Result<(), RidesError> {
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

    async fn open_ride_of_rider(&self, rider_id: &str) -> Result<Option<String>, RidesError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM rides WHERE rider_id = $1
             AND status IN ('requested', 'driver_assigned', 'driver_arrived', 'in_progress') LIMIT 1",
        )
        .bind(rider_id)
        .fetch_optional(self.inner.store.write())
        .await?)
    }

    async fn ride_by_quote(&self, quote_id: &str) -> Result<Option<Ride>, RidesError> {
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

    // ---- offers ----

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
    async fn ride_for_offer(
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

    // ---- the trip ----

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
    fn check_driver_is_there(&self, ride: &Ride, action: RideAction) -> Result<(), RidesError> {
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
    async fn announce(&self, transaction: &mut Transaction<'static, Any>, ride: &Ride) -> Result<Appended, RidesError> {
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
        if ride.payment_status != "held" {
            return Ok(ride.clone());
        }
        let key = idempotency_key(&format!("ride-settle-{}", ride.id))?;
        let wallet = &self.inner.wallet;
        let status = match (charge.min(ride.hold), ride.driver_id.as_deref()) {
            (amount, Some(driver_id)) if amount > 0 => {
                let fee = amount * self.inner.config.platform_fee_bps.clamp(0, 10_000) / 10_000;
                match wallet.capture_payment_intent(&ride.payment_intent_id, amount, driver_id, fee, Some(&key)).await {
                    Ok(_) | Err(WalletError::InvalidTransition { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
                "captured"
            }
            _ => {
                self.release_hold(&ride.payment_intent_id, &key).await?;
                "released"
            }
        };
        let mut transaction = self.inner.store.begin().await?;
        let recorded = sqlx::query(
            "UPDATE rides SET payment_status = $2, updated_at = $3 WHERE id = $1 AND payment_status = 'held'",
        )
        .bind(&ride.id)
        .bind(status)
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

    // ---- ratings and sharing ----

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
        let body = json!({"type": "ride", "id": ride.id, "title": format!("Ride ({})", ride.status.as_str()),
            "status": ride.status.as_str(), "pickup": {"lat": ride.pickup.lat(), "lng": ride.pickup.lng()},
            "dropoff": {"lat": ride.dropoff.lat(), "lng": ride.dropoff.lng()}});
        let mut transaction = self.inner.store.begin().await?;
        let client_id = format!("ride-share-{}", plaza_kernel::new_id());
        let (message, appended) = self
            .inner
            .chat
            .post_in_transaction(&mut transaction, conversation_id, &me.id, &client_id, MessageKind::Card, &body)
            .await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok(SharedCard { message_id: message.id, conversation_id: message.conversation_id, seq: message.seq })
    }
}

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
    fn record(&mut self, rider_id: &str, now_ms: i64) -> u64 {
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

    fn last_ms(&self) -> Option<i64> {
        self.asked.back().map(|(at_ms, _)| *at_ms)
    }
}

/// What a final state charges, and why the ride needs review if it does: on completion
/// what the recorded trip supports (`trip_charge`); the cancel fee when the rider cancels
/// after the driver arrived (arriving needs the driver at the pickup); nothing otherwise —
/// above all when the driver cancels, which never costs the rider.
fn settlement_charge(
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
fn trip_charge(config: &RidesConfig, ride: &Ride, now_ms: i64) -> (i64, Option<&'static str>) {
    let quoted = ride.fare.min(ride.hold);
    let straight_m = ride.pickup.distance_m(ride.dropoff);
    let duration_ms = ride.started_at.map_or(0, |at| (now_ms - at.unix_millis()).max(0));
    let far_enough = ride.route_m * 100.0 >= straight_m * config.route_plausible_percent.clamp(0, 100) as f64;
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

/// What a quote tells of the nearest driver's ETA: whole minutes (rounded up) when at
/// least `eta_precise_drivers_min` drivers are in reach, else only a bucket of
/// `eta_coarse_s`. A precise ETA from three pickups around a lone driver would trilaterate
/// where that driver is; a bucket says only that someone is within a wide ring.
fn coarse_eta_s(eta_s: i64, drivers_near: usize, config: &RidesConfig) -> i64 {
    let step_s = if drivers_near >= config.eta_precise_drivers_min { 60 } else { config.eta_coarse_s.max(60) };
    (eta_s.max(1) + step_s - 1) / step_s * step_s
}

/// What a request holds for `fare`: the fare plus `margin_percent`, rounded up.
fn hold_for(fare: i64, margin_percent: i64) -> i64 {
    fare + (fare * margin_percent.max(0) + 99) / 100
}

/// The wallet key of a quote's hold, so that the hold is taken at most once per quote.
fn hold_key(quote_id: &str) -> Result<IdempotencyKey, RidesError> {
    idempotency_key(&format!("ride-hold-{quote_id}"))
}

pub(crate) fn idempotency_key(text: &str) -> Result<IdempotencyKey, RidesError> {
    IdempotencyKey::parse(text).map_err(|reason| RidesError::Invariant(format!("key {text:?}: {reason}")))
}

pub(crate) async fn load_ride(transaction: &mut Transaction<'static, Any>, ride_id: &str) -> Result<Ride, RidesError> {
    let row = sqlx::query(&format!("SELECT {RIDE_COLUMNS} FROM rides WHERE id = $1"))
        .bind(ride_id)
        .fetch_optional(&mut **transaction)
        .await?
        .ok_or(RidesError::RideNotFound)?;
    ride_from_row(&row)
}

fn point(row: &AnyRow, prefix: &str) -> Result<LatLng, RidesError> {
    let lat: f64 = row.try_get(format!("{prefix}_lat").as_str())?;
    let lng: f64 = row.try_get(format!("{prefix}_lng").as_str())?;
    LatLng::new(lat, lng).map_err(|reason| RidesError::Invariant(format!("stored {prefix}: {reason}")))
}

pub(crate) fn ride_from_row(row: &AnyRow) -> Result<Ride, RidesError> {
    let status: String = row.try_get("status")?;
    let offer_expires_at: Option<i64> = row.try_get("offer_expires_at")?;
    let started_at: Option<i64> = row.try_get("started_at")?;
    Ok(Ride {
        id: row.try_get("id")?,
        quote_id: row.try_get("quote_id")?,
        rider_id: row.try_get("rider_id")?,
        driver_id: row.try_get("driver_id")?,
        status: RideStatus::parse(&status).ok_or_else(|| RidesError::Invariant(format!("ride status {status:?}")))?,
        pickup: point(row, "pickup")?,
        dropoff: point(row, "dropoff")?,
        fare: row.try_get("fare_amount")?,
        currency: row.try_get("currency")?,
        distance_m: row.try_get("distance_m")?,
        duration_s: row.try_get("duration_s")?,
        surge_milli: row.try_get("surge_milli")?,
        payment_intent_id: row.try_get("payment_intent_id")?,
        hold: row.try_get("hold_amount")?,
        payment_status: row.try_get("payment_status")?,
        charged: row.try_get("charged_amount")?,
        offered_driver_id: row.try_get("offered_driver_id")?,
        offer_expires_at: offer_expires_at.map(Timestamp::from_unix_millis),
        dispatch_rounds: row.try_get("dispatch_rounds")?,
        cancelled_by: row.try_get("cancelled_by")?,
        started_at: started_at.map(Timestamp::from_unix_millis),
        route_m: row.try_get("route_m")?,
        review: row.try_get("review")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_unix_millis(row.try_get("updated_at")?),
    })
}
