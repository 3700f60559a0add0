//! Plaza's notification bus. Services publish small notifications on subjects
//! (`user.<id>`, `conversation.<id>`, …) and the real-time gateway subscribes to the
//! subjects of the clients connected to its node.
//!
//! The bus carries **notifications, never state**: everything a client must not miss is
//! written to the database first, and a lost notification is repaired by the client's
//! cursor sync. That is why a subscriber that falls behind loses messages (and is told how
//! many) rather than making the publisher wait or the server's memory grow.
//!
//! This crate has the in-process implementation used by a single node; a NATS
//! implementation for many nodes plugs in behind the same [`Bus`] type.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// How many notifications a subscriber may have waiting before the oldest are dropped.
pub const SUBSCRIBER_BUFFER: usize = 1024;
/// The most subjects one node tracks at once; past it, subscribing fails loudly.
pub const SUBJECTS_MAX: usize = 1_000_000;

/// A notification as delivered to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub subject: String,
    pub payload: Bytes,
}

#[derive(Debug)]
pub enum BusError {
    TooManySubjects,
}

impl std::error::Error for BusError {}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooManySubjects => write!(f, "the bus tracks at most {SUBJECTS_MAX} subjects"),
        }
    }
}

/// A handle to the node's bus; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Bus {
    subjects: Arc<Mutex<HashMap<String, broadcast::Sender<Notification>>>>,
}

/// A stream of notifications on one subject.
#[derive(Debug)]
pub struct Subscription {
    receiver: broadcast::Receiver<Notification>,
}

/// What a subscriber receives next.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Notification(Notification),
    /// The subscriber fell behind and this many notifications were dropped for it.
    Lagged(u64),
    /// The bus is gone (the node is shutting down).
    Closed,
}

impl Bus {
    pub fn in_process() -> Self {
        Self::default()
    }

    /// Publishes to every current subscriber of `subject`; with none, it is a no-op.
    pub fn publish(&self, subject: &str, payload: Bytes) {
        let sender = self.lock().get(subject).cloned();
        if let Some(sender) = sender {
            // An error only means the last subscriber left meanwhile.
            let delivered = sender.send(Notification { subject: subject.to_string(), payload }).unwrap_or(0);
            metrics::counter!("plaza_bus_delivered_total").increment(delivered as u64);
        }
        metrics::counter!("plaza_bus_published_total").increment(1);
    }

    pub fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        let mut subjects = self.lock();
        if let Some(sender) = subjects.get(subject) {
            return Ok(Subscription { receiver: sender.subscribe() });
        }
        if subjects.len() >= SUBJECTS_MAX {
            subjects.retain(|_, sender| sender.receiver_count() > 0);
            if subjects.len() >= SUBJECTS_MAX {
                return Err(BusError::TooManySubjects);
            }
        }
        let (sender, receiver) = broadcast::channel(SUBSCRIBER_BUFFER);
        subjects.insert(subject.to_string(), sender);
        Ok(Subscription { receiver })
    }

    /// Forgets subjects nobody listens to any more.
    pub fn sweep(&self) {
        self.lock().retain(|_, sender| sender.receiver_count() > 0);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Notification>>> {
        self.subjects.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Subscription {
    pub async fn recv(&mut self) -> Received {
        match self.receiver.recv().await {
            Ok(notification) => Received::Notification(notification),
            Err(broadcast::error::RecvError::Lagged(missed)) => Received::Lagged(missed),
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_receive_what_is_published_on_their_subject_only() {
        let bus = Bus::in_process();
        let mut ann = bus.subscribe("user.ann").expect("subscribe");
        let mut bob = bus.subscribe("user.bob").expect("subscribe");
        bus.publish("user.ann", Bytes::from_static(b"hello"));
        bus.publish("user.nobody", Bytes::from_static(b"lost"));
        assert_eq!(
            ann.recv().await,
            Received::Notification(Notification { subject: "user.ann".into(), payload: Bytes::from_static(b"hello") })
        );
        bus.publish("user.bob", Bytes::from_static(b"hi"));
        assert!(matches!(bob.recv().await, Received::Notification(n) if n.payload == "hi"));
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed_instead_of_blocking_the_publisher() {
        let bus = Bus::in_process();
        let mut slow = bus.subscribe("room.1").expect("subscribe");
        for n in 0..(SUBSCRIBER_BUFFER + 10) {
            bus.publish("room.1", Bytes::from(n.to_string()));
        }
        assert_eq!(slow.recv().await, Received::Lagged(10));
        assert!(matches!(slow.recv().await, Received::Notification(n) if n.payload == "10"));
    }

    #[tokio::test]
    async fn subjects_without_subscribers_are_swept() {
        let bus = Bus::in_process();
        drop(bus.subscribe("user.gone").expect("subscribe"));
        bus.sweep();
        assert!(bus.lock().is_empty());
    }
}
