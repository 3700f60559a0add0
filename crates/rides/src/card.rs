//! A ride as a chat card: what `share` posts, and what a client naming a ride in a `card`
//! message gets instead of whatever it wrote (`plaza_chat::CardSource`), so a card always
//! shows the ride as it is, and only to someone who may see it.

use crate::service::{Ride, Rides, RidesError};
use plaza_accounts::User;
use plaza_chat::{CardFuture, CardSource};
use serde_json::{json, Value};

/// The card body of a ride: its state, its ends and the quoted route's length (so a client
/// shows the same distance the ride's own screens do, without working one out).
pub(crate) fn ride_card(ride: &Ride) -> Value {
    json!({"type": "ride", "id": ride.id, "title": format!("Ride ({})", ride.status.as_str()),
        "status": ride.status.as_str(), "pickup": {"lat": ride.pickup.lat(), "lng": ride.pickup.lng()},
        "dropoff": {"lat": ride.dropoff.lat(), "lng": ride.dropoff.lng()}, "distance_m": ride.distance_m})
}

/// Renders `ride` cards for chat from the rides the viewer may see.
pub struct RideCards(pub Rides);

impl CardSource for RideCards {
    fn render<'a>(&'a self, viewer: &'a User, object_id: &'a str) -> CardFuture<'a> {
        Box::pin(async move {
            match self.0.ride(viewer, object_id).await {
                Ok(ride) => Ok(Some(ride_card(&ride))),
                Err(RidesError::RideNotFound) => Ok(None),
                Err(error) => Err(error.to_string()),
            }
        })
    }
}
