//! Rides' domain types: coordinates, the trip state machine, the fare policy and the
//! route estimate. Pure: no I/O, so the rules are unit-tested on their own.

use serde::{Deserialize, Serialize};

/// Earth's mean radius, for great-circle distances.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A valid WGS 84 coordinate (latitude −90..90, longitude −180..180, both finite).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLng {
    lat: f64,
    lng: f64,
}

impl LatLng {
    pub fn new(lat: f64, lng: f64) -> Result<Self, &'static str> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err("latitude must be a number from -90 to 90");
        }
        if !lng.is_finite() || !(-180.0..=180.0).contains(&lng) {
            return Err("longitude must be a number from -180 to 180");
        }
        Ok(Self { lat, lng })
    }

    pub fn lat(self) -> f64 {
        self.lat
    }

    pub fn lng(self) -> f64 {
        self.lng
    }

    /// The great-circle (haversine) distance in metres.
    pub fn distance_m(self, other: LatLng) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlng = (other.lng - self.lng).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }

    pub(crate) fn to_h3(self) -> Option<h3o::LatLng> {
        h3o::LatLng::new(self.lat, self.lng).ok()
    }
}

/// Where a ride stands (API.md "Rides").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RideStatus {
    Requested,
    DriverAssigned,
    DriverArrived,
    InProgress,
    Completed,
    Cancelled,
    NoDriver,
}

/// Where a ride's money stands: held from the rider when requested, then captured for
/// the driver (the fare or a cancel fee) or released back once the trip is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Held,
    Captured,
    Released,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Captured => "captured",
            Self::Released => "released",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Held, Self::Captured, Self::Released].into_iter().find(|status| status.as_str() == text)
    }
}

/// What someone asks of a ride.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RideAction {
    Accept,
    Arrive,
    Start,
    Complete,
    Cancel,
    NoDriver,
}

impl RideStatus {
    pub const ALL: [RideStatus; 7] = [
        Self::Requested,
        Self::DriverAssigned,
        Self::DriverArrived,
        Self::InProgress,
        Self::Completed,
        Self::Cancelled,
        Self::NoDriver,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::DriverAssigned => "driver_assigned",
            Self::DriverArrived => "driver_arrived",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::NoDriver => "no_driver",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Whether the trip is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::NoDriver)
    }

    /// The trip state machine, in one place: the state `action` leads to from here, or
    /// `None` when it is not allowed (a 409 `invalid_transition`).
    pub fn after(self, action: RideAction) -> Option<RideStatus> {
        use RideAction as A;
        use RideStatus as S;
        match (self, action) {
            (S::Requested, A::Accept) => Some(S::DriverAssigned),
            (S::DriverAssigned, A::Arrive) => Some(S::DriverArrived),
            (S::DriverArrived, A::Start) => Some(S::InProgress),
            (S::InProgress, A::Complete) => Some(S::Completed),
            // The rider waits for no driver once one is on the way; only the dispatcher
            // gives up, and only while it is still looking.
            (S::Requested, A::NoDriver) => Some(S::NoDriver),
            (S::Requested | S::DriverAssigned | S::DriverArrived | S::InProgress, A::Cancel) => Some(S::Cancelled),
            (S::Requested | S::DriverAssigned | S::DriverArrived | S::InProgress | S::Completed, _)
            | (S::Cancelled | S::NoDriver, _) => None,
        }
    }

    /// Whether cancelling from here charges the cancel fee: the driver has come.
    pub fn cancel_is_charged(self) -> bool {
        matches!(self, Self::DriverArrived | Self::InProgress)
    }
}

impl RideAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Arrive => "arrive",
            Self::Start => "start",
            Self::Complete => "complete",
            Self::Cancel => "cancel",
            Self::NoDriver => "no_driver",
        }
    }
}

/// How far and how long a trip is. Behind a trait so that a routing engine (OSRM,
/// Valhalla) can replace the straight-line estimate without touching pricing or dispatch.
pub trait RouteEstimator: Send + Sync + std::fmt::Debug {
    /// (distance in metres, duration in seconds) from `from` to `to`.
    fn estimate(&self, from: LatLng, to: LatLng) -> (i64, i64);
}

/// Great-circle distance times a detour factor, driven at a constant city speed.
#[derive(Debug, Clone, Copy)]
pub struct GreatCircleRoutes {
    /// Road distance over straight-line distance (1.3–1.4 in most cities).
    pub detour_factor: f64,
    pub city_speed_kmh: f64,
}

impl RouteEstimator for GreatCircleRoutes {
    fn estimate(&self, from: LatLng, to: LatLng) -> (i64, i64) {
        let distance_m = from.distance_m(to) * self.detour_factor;
        let duration_s = distance_m / (self.city_speed_kmh / 3.6);
        (distance_m.round() as i64, duration_s.round() as i64)
    }
}

/// The fare policy, all in minor units of `currency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarePolicy {
    pub currency: String,
    pub base_fare: i64,
    pub per_km: i64,
    pub per_minute: i64,
    pub minimum_fare: i64,
    /// The highest surge, in thousandths (2500 = ×2.5).
    pub surge_cap_milli: i64,
}

impl Default for FarePolicy {
    fn default() -> Self {
        Self {
            currency: "USD".into(),
            base_fare: 250,
            per_km: 120,
            per_minute: 30,
            minimum_fare: 500,
            surge_cap_milli: 2500,
        }
    }
}

impl FarePolicy {
    /// The fare in minor units: (base + distance + time) × surge, at least the minimum.
    /// Integer arithmetic throughout, rounding half up, so every node prices alike.
    pub fn fare(&self, distance_m: i64, duration_s: i64, surge_milli: i64) -> i64 {
        self.metered(distance_m, duration_s, surge_milli).max(self.minimum_fare)
    }

    /// (base + distance + time) × surge without the minimum: what a recorded route that
    /// does not support the quoted fare is charged at most (see `trip` in the service).
    pub fn metered(&self, distance_m: i64, duration_s: i64, surge_milli: i64) -> i64 {
        let before_surge = self.base_fare
            + (self.per_km * distance_m.max(0) + 500) / 1000
            + (self.per_minute * duration_s.max(0) + 30) / 60;
        (before_surge * surge_milli.max(1000) + 500) / 1000
    }

    /// The surge multiplier (thousandths, in steps of 0.1) for `demand` recent requests
    /// against `supply` available drivers in one area: 1.0 while supply keeps up, then
    /// demand over supply, capped.
    pub fn surge_milli(&self, demand: u64, supply: u64) -> i64 {
        if demand == 0 {
            return 1000;
        }
        let ratio_milli = (demand.saturating_mul(1000) / supply.max(1)) as i64;
        let stepped = ratio_milli / 100 * 100;
        stepped.clamp(1000, self.surge_cap_milli.max(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_out_of_range_or_not_finite_are_refused() {
        assert!(LatLng::new(91.0, 0.0).is_err());
        assert!(LatLng::new(0.0, -180.5).is_err());
        assert!(LatLng::new(f64::NAN, 0.0).is_err());
        assert!(LatLng::new(f64::INFINITY, 0.0).is_err());
        assert!(LatLng::new(-90.0, 180.0).is_ok());
    }

    #[test]
    fn great_circle_distance_matches_a_known_pair() {
        // Paris to London is about 344 km.
        let paris = LatLng::new(48.8566, 2.3522).unwrap_or(LatLng { lat: 0.0, lng: 0.0 });
        let london = LatLng::new(51.5074, -0.1278).unwrap_or(LatLng { lat: 0.0, lng: 0.0 });
        let km = paris.distance_m(london) / 1000.0;
        assert!((340.0..348.0).contains(&km), "{km}");
        assert_eq!(paris.distance_m(paris), 0.0);
    }

    #[test]
    fn the_state_machine_allows_exactly_the_documented_transitions() {
        use RideAction as A;
        use RideStatus as S;
        let allowed = [
            (S::Requested, A::Accept, S::DriverAssigned),
            (S::DriverAssigned, A::Arrive, S::DriverArrived),
            (S::DriverArrived, A::Start, S::InProgress),
            (S::InProgress, A::Complete, S::Completed),
            (S::Requested, A::NoDriver, S::NoDriver),
            (S::Requested, A::Cancel, S::Cancelled),
            (S::DriverAssigned, A::Cancel, S::Cancelled),
            (S::DriverArrived, A::Cancel, S::Cancelled),
            (S::InProgress, A::Cancel, S::Cancelled),
        ];
        let actions = [A::Accept, A::Arrive, A::Start, A::Complete, A::Cancel, A::NoDriver];
        for status in RideStatus::ALL {
            for action in actions {
                let expected = allowed.iter().find(|(from, by, _)| *from == status && *by == action).map(|t| t.2);
                assert_eq!(status.after(action), expected, "{status:?} {action:?}");
            }
            assert_eq!(RideStatus::parse(status.as_str()), Some(status));
        }
        assert!(S::DriverArrived.cancel_is_charged() && S::InProgress.cancel_is_charged());
        assert!(!S::DriverAssigned.cancel_is_charged());
    }

    #[test]
    fn fares_add_up_surge_and_respect_the_minimum() {
        let policy = FarePolicy::default();
        // 10 km, 20 min: 250 + 1200 + 600 = 2050.
        assert_eq!(policy.fare(10_000, 1200, 1000), 2050);
        assert_eq!(policy.fare(10_000, 1200, 1500), 3075);
        assert_eq!(policy.fare(100, 10, 1000), policy.minimum_fare);
        // Metered: the same sum without the minimum.
        assert_eq!(policy.metered(100, 10, 1000), 250 + 12 + 5);
        assert_eq!(policy.metered(10_000, 1200, 1500), 3075);
    }

    #[test]
    fn surge_follows_demand_over_supply_in_steps_and_is_capped() {
        let policy = FarePolicy::default();
        assert_eq!(policy.surge_milli(0, 0), 1000);
        assert_eq!(policy.surge_milli(3, 10), 1000);
        assert_eq!(policy.surge_milli(15, 10), 1500);
        assert_eq!(policy.surge_milli(17, 10), 1700);
        assert_eq!(policy.surge_milli(100, 1), 2500);
        assert_eq!(policy.surge_milli(5, 0), 2500);
    }

    #[test]
    fn the_straight_line_estimate_applies_detour_and_speed() {
        let routes = GreatCircleRoutes { detour_factor: 1.5, city_speed_kmh: 36.0 };
        let a = LatLng::new(0.0, 0.0).unwrap_or(LatLng { lat: 0.0, lng: 0.0 });
        let b = LatLng::new(0.0, 0.01).unwrap_or(LatLng { lat: 0.0, lng: 0.0 });
        let (distance_m, duration_s) = routes.estimate(a, b);
        assert!((1660..1680).contains(&distance_m), "{distance_m}");
        assert!((166..168).contains(&duration_s), "{duration_s}");
    }
}
