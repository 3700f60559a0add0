//! Driver presence across nodes. Every node keeps a **replica** of the whole driver index:
//! a driver's going online, moving and going offline is applied to the index of the node
//! the driver is connected to and announced on the bus (`rides.drivers`), and every other
//! node applies the announcement to its own copy. So whichever node holds the dispatch
//! lease — now, or after taking it over from a node that died — already sees every driver,
//! and has nothing to rebuild. The same announcements carry which rider a driver on a trip
//! streams its locations to, so a driver connected to any node reaches the rider on any
//! other, and a decline on any node wakes the lease holder's dispatcher at once. Quotes are
//! announced too, as demand, so surge weighs the quotes of every node.
//!
//! All of it is soft state: an announcement lost on the bus costs at most one location
//! (drivers resend every few seconds), and a driver nobody hears from drops out of every
//! replica after the index's silence limit.

use crate::model::LatLng;
use crate::service::{lock, Rides, RidesError};
use plaza_bus::Received;
use plaza_kernel::Timestamp;
use serde::{Deserialize, Serialize};

/// The bus subject every node listens on for driver presence.
pub const DRIVERS_SUBJECT: &str = "rides.drivers";
/// Announcements longer than this are ignored (a real one is under 200 bytes).
const NOTICE_BYTES_MAX: usize = 1024;

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
    TripEnded {
        driver_id: String,
    },
    /// An offer was declined: the lease holder should dispatch now, not at the next tick.
    Dispatch,
    /// A rider was quoted for a pickup here: demand, which surge weighs against supply, so
    /// every node prices an area from the quotes of all nodes, not only its own.
    Demand {
        lat: f64,
        lng: f64,
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
                lock(&self.inner.trips).insert(driver_id.clone(), (ride_id.clone(), rider_id.clone()));
            }
            Presence::TripEnded { driver_id } => {
                lock(&self.inner.trips).remove(driver_id);
            }
            Presence::Dispatch => self.inner.dispatch_now.notify_one(),
            Presence::Demand { lat, lng } => {
                if let Ok(pickup) = LatLng::new(*lat, *lng) {
                    self.record_demand(pickup, now);
                }
            }
        }
    }

    /// Subscribes to the other nodes' driver announcements; the returned future applies
    /// them to this node's replica until the bus closes. Subscribed before it returns, so
    /// nothing announced after start-up is missed.
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
            loop {
                match notices.recv().await {
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
                    // Lost announcements are repaired by the drivers' next locations; a lost
                    // decline by the next batch.
                    Received::Lagged(_) => {}
                    Received::Closed => break,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
