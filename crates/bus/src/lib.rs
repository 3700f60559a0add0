//! Plaza's notification bus. Services publish small notifications on subjects
//! (`user.<id>`, …) and the real-time gateway subscribes to the subjects of the clients
//! connected to its node.
//!
//! The bus carries **notifications, never state**: everything a client must not miss is
//! written to the database first, and a lost notification is repaired by the client's
//! cursor sync. That is why a subscriber that falls behind loses messages (and is told how
//! many) rather than making the publisher wait or the server's memory grow.
//!
//! Two implementations behind one [`Bus`]: in-process (one node), and NATS (many nodes).
//! With NATS, each node subscribes on NATS only to the subjects its own clients need
//! (reference-counted, unsubscribed when the last local subscriber leaves), publishes to
//! NATS through a bounded queue, delivers its own publications locally at once (NATS does
//! not echo them back), and after a NATS reconnect tells every local subscriber it may
//! have missed something ([`Received::Lagged`]), so that they resynchronise from the log.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};

/// How many notifications a subscriber may have waiting before the oldest are dropped.
pub const SUBSCRIBER_BUFFER: usize = 1024;
/// The most subjects one node tracks at once; past it, subscribing fails loudly.
pub const SUBJECTS_MAX: usize = 1_000_000;
/// Notifications waiting to go out to NATS; past it they are dropped (and counted).
pub const NATS_OUTBOX: usize = 65_536;

/// A notification as delivered to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub subject: String,
    pub payload: Bytes,
}

#[derive(Debug)]
pub enum BusError {
    TooManySubjects,
    Nats(String),
}

impl std::error::Error for BusError {}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooManySubjects => write!(f, "the bus tracks at most {SUBJECTS_MAX} subjects"),
            Self::Nats(reason) => write!(f, "NATS: {reason}"),
        }
    }
}

/// A handle to the node's bus; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Bus {
    local: Local,
    nats: Option<Arc<Nats>>,
}

#[derive(Debug, Clone, Default)]
struct Local {
    subjects: Arc<Mutex<HashMap<String, broadcast::Sender<Notification>>>>,
}

#[derive(Debug)]
struct Nats {
    client: async_nats::Client,
    outbox: mpsc::Sender<(String, Bytes)>,
    /// The NATS subscription task of each subject some local subscriber wants.
    remote: Mutex<HashMap<String, tokio::task::AbortHandle>>,
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
    /// The subscriber may have missed this many notifications (0: an unknown number, after
    /// a NATS reconnect); it should resynchronise from the durable log.
    Lagged(u64),
    /// The bus is gone (the node is shutting down).
    Closed,
}

/// A subject whose notifications mean "resynchronise", published locally after a NATS
/// reconnect. Never sent over NATS.
const RESYNC_PAYLOAD: &[u8] = b"\x00plaza:resync";

impl Bus {
    pub fn in_process() -> Self {
        Self::default()
    }

    /// Connects to NATS at `url` (`nats://host:port`).
    pub async fn nats(url: &str) -> Result<Self, BusError> {
        let local = Local::default();
        let resync = local.clone();
        let client = async_nats::ConnectOptions::new()
            .no_echo()
            .name("plaza")
            .event_callback(move |event| {
                let resync = resync.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("NATS connection (re)established; subscribers resynchronise");
                            resync.broadcast_resync();
                        }
                        async_nats::Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
                        other => tracing::debug!("NATS: {other}"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|error| BusError::Nats(error.to_string()))?;
        let (outbox, mut queue) = mpsc::channel::<(String, Bytes)>(NATS_OUTBOX);
        let publisher = client.clone();
        tokio::spawn(async move {
            while let Some((subject, payload)) = queue.recv().await {
                if let Err(error) = publisher.publish(subject, payload).await {
                    metrics::counter!("plaza_bus_nats_publish_errors_total").increment(1);
                    tracing::warn!("NATS publish failed: {error}");
                }
            }
        });
        Ok(Self { local, nats: Some(Arc::new(Nats { client, outbox, remote: Mutex::new(HashMap::new()) })) })
    }

    /// Publishes to every subscriber of `subject`, on this node at once and, with NATS,
    /// on every other node.
    pub fn publish(&self, subject: &str, payload: Bytes) {
        if let Some(nats) = &self.nats {
            if nats.outbox.try_send((subject.to_string(), payload.clone())).is_err() {
                metrics::counter!("plaza_bus_nats_dropped_total").increment(1);
            }
        }
        self.local.publish(subject, payload);
        metrics::counter!("plaza_bus_published_total").increment(1);
    }

    /// Subscribes to `subject`. With NATS, returns once the NATS server has the
    /// subscription, so that nothing published afterwards anywhere can be missed.
    pub async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        let (subscription, first) = self.local.subscribe(subject)?;
        if let Some(nats) = &self.nats {
            let already = nats.remote.lock().unwrap_or_else(|p| p.into_inner()).contains_key(subject);
            if first || !already {
                let mut remote = nats
                    .client
                    .subscribe(subject.to_string())
                    .await
                    .map_err(|error| BusError::Nats(error.to_string()))?;
                nats.client.flush().await.map_err(|error| BusError::Nats(error.to_string()))?;
                let local = self.local.clone();
                let name = subject.to_string();
                let task = tokio::spawn(async move {
                    use futures_util::StreamExt;
                    while let Some(message) = remote.next().await {
                        local.publish(&name, message.payload);
                    }
                });
                let mut remote_tasks = nats.remote.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(previous) = remote_tasks.insert(subject.to_string(), task.abort_handle()) {
                    // Two first subscribers raced; keep one NATS subscription.
                    previous.abort();
                }
            }
        }
        Ok(subscription)
    }

    /// Forgets subjects nobody listens to any more (and their NATS subscriptions).
    pub fn sweep(&self) {
        let idle = self.local.sweep();
        if let Some(nats) = &self.nats {
            let mut remote = nats.remote.lock().unwrap_or_else(|p| p.into_inner());
            for subject in idle {
                if let Some(task) = remote.remove(&subject) {
                    task.abort();
                }
            }
        }
    }

    /// Whether other nodes hear this bus (NATS). Without it a notification reaches only this
    /// node's subscribers, so one meant only for other nodes need not be sent at all.
    pub fn is_clustered(&self) -> bool {
        self.nats.is_some()
    }

    /// Subjects currently tracked on this node.
    pub fn subject_count(&self) -> usize {
        self.local.lock().len()
    }
}

impl Local {
    fn publish(&self, subject: &str, payload: Bytes) {
        let sender = self.lock().get(subject).cloned();
        if let Some(sender) = sender {
            // An error only means the last subscriber left meanwhile.
            let delivered = sender.send(Notification { subject: subject.to_string(), payload }).unwrap_or(0);
            metrics::counter!("plaza_bus_delivered_total").increment(delivered as u64);
        }
    }

    /// A subscription, and whether it is the subject's first.
    fn subscribe(&self, subject: &str) -> Result<(Subscription, bool), BusError> {
        let mut subjects = self.lock();
        if let Some(sender) = subjects.get(subject) {
            let first = sender.receiver_count() == 0;
            return Ok((Subscription { receiver: sender.subscribe() }, first));
        }
        if subjects.len() >= SUBJECTS_MAX {
            subjects.retain(|_, sender| sender.receiver_count() > 0);
            if subjects.len() >= SUBJECTS_MAX {
                return Err(BusError::TooManySubjects);
            }
        }
        let (sender, receiver) = broadcast::channel(SUBSCRIBER_BUFFER);
        subjects.insert(subject.to_string(), sender);
        Ok((Subscription { receiver }, true))
    }

    /// Removes subjects without subscribers and returns their names.
    fn sweep(&self) -> Vec<String> {
        let mut subjects = self.lock();
        let idle: Vec<String> =
            subjects.iter().filter(|(_, sender)| sender.receiver_count() == 0).map(|(name, _)| name.clone()).collect();
        for name in &idle {
            subjects.remove(name);
        }
        idle
    }

    fn broadcast_resync(&self) {
        for (subject, sender) in self.lock().iter() {
            let _ = sender.send(Notification { subject: subject.clone(), payload: Bytes::from_static(RESYNC_PAYLOAD) });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Notification>>> {
        self.subjects.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Subscription {
    pub async fn recv(&mut self) -> Received {
        match self.receiver.recv().await {
            Ok(notification) if notification.payload == RESYNC_PAYLOAD => Received::Lagged(0),
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
        let mut ann = bus.subscribe("user.ann").await.expect("subscribe");
        let mut bob = bus.subscribe("user.bob").await.expect("subscribe");
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
        let mut slow = bus.subscribe("room.1").await.expect("subscribe");
        for n in 0..(SUBSCRIBER_BUFFER + 10) {
            bus.publish("room.1", Bytes::from(n.to_string()));
        }
        assert_eq!(slow.recv().await, Received::Lagged(10));
        assert!(matches!(slow.recv().await, Received::Notification(n) if n.payload == "10"));
    }

    #[test]
    fn an_in_process_bus_is_not_clustered() {
        assert!(!Bus::in_process().is_clustered());
    }

    #[tokio::test]
    async fn subjects_without_subscribers_are_swept() {
        let bus = Bus::in_process();
        drop(bus.subscribe("user.gone").await.expect("subscribe"));
        bus.sweep();
        assert_eq!(bus.subject_count(), 0);
    }
}
