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
//!
//! A request holds the fare plus the hold margin through `Wallet::create_payment_intent`,
//! keyed by the quote. A rider has at most one open ride, and the database decides it: a
//! partial unique index on `rides (rider_id)` over the open statuses, so of two concurrent
//! requests on different quotes one inserts and the other gets a unique violation, releases
//! its hold and answers 409 `ride_already_open` (a cheap check before the hold answers the
//! common case without touching the wallet). A request records its quote in `ride_holds`
//! before the wallet call and deletes it in the transaction that saves the ride; a crash in
//! between leaves the row, and the dispatcher's sweep releases the hold (found through
//! `Wallet::payment_intent_created_with_key`) once the quote has been dead for 2 minutes —
//! by then no request can still be using it, since a request refuses an expired quote
//! before holding and is cut off by the 30 s request time-out. A quote whose hold was
//! released cannot be used again (409 `quote_expired`). A final state records what it
//! charges (fare, cancel fee, or nothing) with the state; the wallet call that follows
//! (capture to the driver with the platform fee, or void) is keyed by the ride, and the
//! dispatcher re-settles any final ride still `held`, so a crash in between moves money
//! exactly once.

pub mod assignment;
mod card;
mod dispatch;
pub mod index;
mod migrations;
pub mod model;
mod presence;
pub mod routes;
mod service;
pub mod wire;

pub use card::RideCards;
pub use migrations::MIGRATIONS;
pub use model::{FarePolicy, LatLng, PaymentStatus, RideAction, RideStatus, RouteEstimator};
pub use presence::DRIVERS_SUBJECT;
pub use routes::router;
pub use service::{
    coarse_position, DriverState, Offer, Quote, Rating, Ride, Rides, RidesConfig, RidesError, Vehicle,
    NEARBY_DRIVERS_MAX, NEARBY_RADIUS_M, REVIEW_IMPLAUSIBLE_ROUTE,
};
