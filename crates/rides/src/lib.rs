//! Plaza rides: drivers online on a live H3 index, priced quotes, batched dispatch with
//! offers and time-outs, and the trip state machine paid through the wallet.
//!
//! The main design choice is the split between **soft state and durable state**. Where
//! drivers are is soft: an in-memory index keyed by H3 cell that drivers refill every few
//! seconds, so it never touches the database on the hot path. Everything a rider or a
//! driver is promised — the quote, the ride, the offer, the trip's status, the money — is
//! durable: each change is one conditional update on the ride's row (the state machine in
//! `model.rs` decides what is allowed) in the transaction that appends `ride.updated`.
//! Money moves through the wallet's payment intents, keyed by the ride, so a settlement
//! retried after a crash moves nothing twice.

pub mod assignment;
mod dispatch;
pub mod index;
mod migrations;
pub mod model;
mod presence;
pub mod routes;
mod service;

pub use migrations::MIGRATIONS;
pub use model::{FarePolicy, LatLng, RideAction, RideStatus, RouteEstimator};
pub use presence::DRIVERS_SUBJECT;
pub use routes::router;
pub use service::{
    DriverState, Quote, Rating, Ride, Rides, RidesConfig, RidesError, Vehicle, REVIEW_IMPLAUSIBLE_ROUTE,
};
