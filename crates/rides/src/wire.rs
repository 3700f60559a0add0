//! What a client sees of a ride, typed, so the OpenAPI document describes it: the answer
//! of the ride endpoints and the data of `ride.updated` are one [`RideView`].

use crate::model::{LatLng, PaymentStatus, RideStatus};
use crate::service::{Offer, Ride};
use plaza_http::MoneyView;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A position, in degrees.
#[derive(Debug, Deserialize, Serialize, ToSchema, Clone, Copy, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lng: f64,
}

impl From<LatLng> for Point {
    fn from(at: LatLng) -> Self {
        Self { lat: at.lat(), lng: at.lng() }
    }
}

/// A driver's car.
#[derive(Debug, Serialize, ToSchema, Clone, PartialEq, Eq)]
pub struct VehicleView {
    pub plate: String,
    pub model: String,
    pub seats: i64,
}

/// A ride as its rider and its driver see it. `GET /rides/{id}` adds `vehicle` (the
/// assigned driver's car, or null) and, while the trip is under way, `driver_location`
/// (the driver's last position, or null), so a client opening the ride sees the car
/// before the next `driver.location` frame; elsewhere both are absent.
#[derive(Debug, Serialize, ToSchema, Clone, PartialEq)]
#[schema(as = Ride)]
pub struct RideView {
    pub id: String,
    pub status: RideStatus,
    pub rider_id: String,
    pub driver_id: Option<String>,
    pub pickup: Point,
    pub dropoff: Point,
    pub fare: MoneyView,
    /// Held from the rider's wallet when requested: the fare plus a margin.
    pub hold: MoneyView,
    /// What the rider paid in the end (the fare, a cancel fee, or nothing).
    pub charged: MoneyView,
    pub payment_status: PaymentStatus,
    pub distance_m: i64,
    pub duration_s: i64,
    /// The surge multiplier the fare was quoted with (1.0 is none).
    pub surge: f64,
    /// `rider` or `driver` when someone cancelled.
    pub cancelled_by: Option<String>,
    /// Why the ride needs a person's look (`implausible_route`), if it does.
    pub review: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<VehicleView>)]
    pub vehicle: Option<Option<VehicleView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Point>)]
    pub driver_location: Option<Option<Point>>,
}

impl From<&Ride> for RideView {
    fn from(ride: &Ride) -> Self {
        let money = |amount| MoneyView::new(amount, &ride.currency);
        Self {
            id: ride.id.clone(),
            status: ride.status,
            rider_id: ride.rider_id.clone(),
            driver_id: ride.driver_id.clone(),
            pickup: Point { lat: ride.pickup.lat(), lng: ride.pickup.lng() },
            dropoff: Point { lat: ride.dropoff.lat(), lng: ride.dropoff.lng() },
            fare: money(ride.fare),
            hold: money(ride.hold),
            charged: money(ride.charged),
            payment_status: ride.payment_status,
            distance_m: ride.distance_m,
            duration_s: ride.duration_s,
            surge: ride.surge_milli as f64 / 1000.0,
            cancelled_by: ride.cancelled_by.clone(),
            review: ride.review.clone(),
            created_at: ride.created_at.to_rfc3339(),
            updated_at: ride.updated_at.to_rfc3339(),
            vehicle: None,
            driver_location: None,
        }
    }
}

/// A ride offered to a driver: the data of `ride.offer` and the `offer` of
/// `GET /rides/driver`.
#[derive(Debug, Serialize, ToSchema, Clone, PartialEq)]
#[schema(as = RideOffer)]
pub struct OfferView {
    pub ride_id: String,
    pub pickup: Point,
    pub dropoff: Point,
    pub fare: MoneyView,
    /// From the driver's position to the pickup, when the server knows where the driver is.
    pub pickup_eta_s: Option<i64>,
    /// RFC 3339, by the server's clock.
    pub expires_at: String,
    /// What is left of the offer, by the server's clock, when this was written: count down
    /// from this rather than from `expires_at`, so a phone whose clock is off shows the
    /// right time. In a `ride.offer` replayed after a reconnect it is as old as the event;
    /// `GET /rides/driver` answers with what is left now.
    pub remaining_ms: i64,
}

impl From<&Offer> for OfferView {
    fn from(offer: &Offer) -> Self {
        Self {
            ride_id: offer.ride_id.clone(),
            pickup: offer.pickup.into(),
            dropoff: offer.dropoff.into(),
            fare: MoneyView::new(offer.fare, &offer.currency),
            pickup_eta_s: offer.pickup_eta_s,
            expires_at: offer.expires_at.to_rfc3339(),
            remaining_ms: offer.remaining_ms,
        }
    }
}
