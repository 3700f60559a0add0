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
//! ## What a rider sees of drivers
//! Before a driver is theirs, a rider learns only where free drivers roughly are. The map's
//! cars (`nearby_drivers`, `GET /rides/nearby-drivers`) are the centres of the resolution-9
//! H3 cells (about 0.1 km², centres some 300 m apart) holding at least one free driver, at
//! most `NEARBY_DRIVERS_MAX` within `NEARBY_RADIUS_M`, nearest first by the centre: no ids,
//! no names, no exact positions, one point however many drivers share a cell. A quote tells
//! an ETA (above) and counts supply. Both start from the index and then ask the database
//! (`standing_of`, one statement for the drivers found): a driver it has offline (an
//! `offline` notice this node's replica missed) is neither shown, nor an ETA, nor supply, and
//! a driver on a trip or holding an offer is not shown or used for the ETA. Only once a
//! driver accepts does the rider get their id, their car and their live position.
//!
//! ## What a driver's app reads
//! `driver_state` (`GET /rides/driver`) is where a driver stands: online (in the database
//! and heard from within the index's silence limit, so actually offered rides), the car,
//! the trip under way and the open offer with `remaining_ms` counted by the server's clock
//! (`ride.offer` carries it too, as of when the offer was made). An app reads it after a
//! reload, and after a reconnect, instead of going online again.
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
use crate::model::{FarePolicy, GreatCircleRoutes, LatLng, PaymentStatus, RideAction, RideStatus, RouteEstimator};
use crate::presence::Presence;
use plaza_accounts::{Accounts, User};
use plaza_chat::{Chat, ChatError};
use plaza_events::{Appended, Events};
use plaza_kernel::{BasisPoints, Currency, Money, Percent, Timestamp};
use plaza_store::{Any, AnyRow, Row, Store, Transaction};
use plaza_wallet::model::IdempotencyKey;
use plaza_wallet::{PaymentIntentStatus, Wallet, WalletError};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod drivers;
mod nearby;
mod quotes;
mod requests;
mod rows;
mod trips;

pub use nearby::{coarse_position, NEARBY_DRIVERS_MAX, NEARBY_RADIUS_M};
pub(crate) use quotes::AreaDemand;
pub(crate) use rows::{idempotency_key, load_ride, point, ride_from_row};
pub(crate) use trips::release_offer;
pub use trips::REVIEW_IMPLAUSIBLE_ROUTE;

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
    pub hold_margin_percent: Percent,
    /// The platform's share of each fare and cancel fee, in basis points.
    pub platform_fee_bps: BasisPoints,
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
    pub route_plausible_percent: Percent,
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
            hold_margin_percent: Percent::new(20),
            platform_fee_bps: BasisPoints::at_most_all(2000),
            cancel_fee: 300,
            index_limits: IndexLimits::default(),
            lease_ttl: Duration::from_secs(10),
            stranded_hold_grace: Duration::from_secs(120),
            quote_retention: Duration::from_secs(3600),
            trip_check_interval: Duration::from_secs(60),
            arrive_radius_m: 150.0,
            route_plausible_percent: Percent::new(50),
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

/// A driver as the driver sees themself: what an app reads to carry on after a reload
/// (`Rides::driver_state`).
#[derive(Debug, Clone, PartialEq)]
pub struct DriverState {
    pub driver_id: String,
    /// Online in the database and heard from within the index's silence limit (this node's
    /// replica): only such a driver is offered rides.
    pub online: bool,
    pub vehicle: Option<Vehicle>,
    pub location: Option<(f64, f64)>,
    pub active_ride_id: Option<String>,
    /// The trip under way (`active_ride_id`'s ride).
    pub ride: Option<Ride>,
    /// The offer waiting for the driver's answer, if one is open.
    pub offer: Option<Offer>,
}

/// A ride offered to a driver, as `ride.offer` carries it and `GET /rides/driver` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub ride_id: String,
    pub pickup: LatLng,
    pub dropoff: LatLng,
    pub fare: i64,
    pub currency: String,
    /// From where the driver is to the pickup, when the index knows where that is.
    pub pickup_eta_s: Option<i64>,
    pub expires_at: Timestamp,
    /// What is left of the offer by the server's clock when this was written, so a phone
    /// whose clock is off still counts down the right time.
    pub remaining_ms: i64,
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
    pub payment_status: PaymentStatus,
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
        serde_json::to_value(crate::wire::RideView::from(self)).unwrap_or(Value::Null)
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
    /// The rides whose trips this node saw end lately: never taken up again. Locked before
    /// `trips` when both are held.
    pub(crate) ended_trips: Mutex<crate::presence::EndedTrips>,
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
                ended_trips: Mutex::new(Default::default()),
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
}
