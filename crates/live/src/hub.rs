//! This node's live viewers and the chat relay of each room they joined.
//!
//! A socket that sends `live.join` takes a seat in the room's relay on its node. The
//! first seat starts the relay: it subscribes to the room's bus subject
//! (`live.room.<id>`), then reads the room's last 50 messages, and every seat is sent
//! those as one `live.chat` frame. From then on the relay collects what the subject
//! carries and every `chat_batch_interval` (200 ms) sends each seat **one** `live.chat`
//! frame with every new message, serialised once for all of them: 200 messages a second
//! to 10,000 viewers is 5 frames a second per viewer, not 200. Pins, deletions and the
//! end go out at once, after the chat collected before them.
//!
//! Each socket has one bounded queue of room frames (`viewer_queue_frames`), filled
//! without waiting. A viewer whose queue is full is too slow: it loses its seats and its
//! socket is closed, so that nothing is buffered for it without bound and the relay
//! never waits for anyone. The last seat to leave stops the relay and its subscription.
//!
//! The relay keeps the messages it sent (the last 50), so a later joiner's backlog comes
//! from memory, and exactly once: messages still being collected reach it in the next
//! batch, not also in its backlog.

use crate::service::{LiveError, LiveHandle};
use axum::extract::ws::Utf8Bytes;
use plaza_accounts::User;
use plaza_bus::{Received, Subscription};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, Notify};

/// Messages a joining viewer gets.
pub const BACKLOG_MESSAGES: usize = 50;
/// Rooms one socket may have joined at once.
pub const ROOMS_PER_SOCKET_MAX: usize = 5;
/// Messages a relay holds for its next batch; past it the oldest are dropped (and
/// counted), so a flood cannot grow a node's memory.
const PENDING_MAX: usize = 2_000;
/// Bytes of messages a relay holds for its next batch, likewise. A batch is offered to
/// every viewer's queue whole, so its frames (about 17 of [`CHAT_FRAME_BYTES_MAX`] at the
/// most) must fit in a queue that is keeping up: 2,000 of the largest messages, wide
/// characters with a long name and bio, would be over a hundred frames and drop everyone.
const PENDING_BYTES_MAX: usize = 16 * CHAT_FRAME_BYTES_MAX;

/// The bus subject of a room's chat, pins, deletions, bans and end.
pub(crate) fn room_subject(room_id: &str) -> String {
    format!("live.room.{room_id}")
}

/// What a room's subject carries; each is published once, by the node where it happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum RoomNotice {
    /// A new message, as the wire shows it (`{id, user, text, at}`).
    Chat {
        message: Value,
    },
    Deleted {
        message_id: String,
    },
    /// The pinned product's card, or null when unpinned.
    Pinned {
        product: Option<Value>,
    },
    Ended,
    Banned {
        user_id: String,
    },
    /// A deal started: the `live.deal` frame's data (`{room_id, deal}`).
    Deal {
        deal: Value,
    },
    /// Sales of the room's deal or pinned product: `{buyer_name, product_title,
    /// quantity}` each, and how many more were not named.
    Sold {
        sales: Vec<Value>,
        others: usize,
    },
}

impl LiveHandle {
    /// Announces `notice` to every node's viewers of `room_id`.
    pub(crate) fn publish_room(&self, room_id: &str, notice: &RoomNotice) {
        match serde_json::to_vec(notice) {
            Ok(payload) => self.inner.bus.publish(&room_subject(room_id), payload.into()),
            Err(error) => tracing::warn!("encoding a room notice: {error}"),
        }
    }

    /// A socket's live side: the rooms it joined and its queue of their frames.
    pub fn viewer(&self, user: User) -> (LiveViewer, ViewerInbox) {
        let (frames, inbox) = mpsc::channel(self.inner.config.viewer_queue_frames.max(1));
        let dropped = Arc::new(Notify::new());
        let outbox = Outbox { frames, dropped: dropped.clone() };
        let viewer = LiveViewer { live: self.clone(), user, outbox, joined: HashMap::new() };
        (viewer, ViewerInbox { frames: inbox, dropped })
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.inner.hub
    }
}

/// One socket's joined rooms. Dropping it (the socket closed) leaves them all.
#[derive(Debug)]
pub struct LiveViewer {
    live: LiveHandle,
    user: User,
    outbox: Outbox,
    joined: HashMap<String, Seat>,
}

impl LiveViewer {
    /// Joins a room: from now on this socket gets its frames, starting with its last 50
    /// messages. Joining a room already joined sends the backlog again.
    pub async fn join(&mut self, room_id: &str) -> Result<(), LiveError> {
        self.joined.retain(|_, seat| !seat.removed.load(Ordering::Acquire));
        self.joined.remove(room_id);
        if self.joined.len() >= ROOMS_PER_SOCKET_MAX {
            return Err(LiveError::TooManyRooms { max: ROOMS_PER_SOCKET_MAX });
        }
        self.live.check_join(&self.user, room_id).await?;
        let (seat, created) = self.live.hub().enter(&self.live, room_id, &self.user.id, &self.outbox);
        if created {
            if let Err(error) = self.live.start_relay(&seat.relay).await {
                self.live.hub().abandon(&seat.relay);
                return Err(error);
            }
        }
        if let Err(error) = self.live.record_member(room_id, &self.user.id).await {
            // Only chat posted through another node depends on it, and the next count
            // writes it again.
            tracing::warn!(room = %room_id, "recording a live room's member: {error}");
        }
        self.joined.insert(room_id.to_string(), seat);
        Ok(())
    }

    /// Leaves a room; whether this socket had joined it.
    pub fn leave(&mut self, room_id: &str) -> bool {
        self.joined.remove(room_id).is_some_and(|seat| !seat.removed.load(Ordering::Acquire))
    }

    pub fn user(&self) -> &User {
        &self.user
    }
}

/// The socket's end of its room frames.
#[derive(Debug)]
pub struct ViewerInbox {
    frames: mpsc::Receiver<Utf8Bytes>,
    dropped: Arc<Notify>,
}

/// What a socket's rooms have for it next.
#[derive(Debug)]
pub enum RoomDelivery {
    /// A frame to write as it is (JSON text).
    Frame(Utf8Bytes),
    /// The socket did not keep up: it lost its seats and should be closed.
    TooSlow,
}

impl ViewerInbox {
    /// Resolves once the socket lost its seats for being too slow.
    pub async fn dropped(&self) {
        self.dropped.notified().await;
    }

    pub async fn next(&mut self) -> RoomDelivery {
        tokio::select! {
            biased;
            () = self.dropped.notified() => RoomDelivery::TooSlow,
            frame = self.frames.recv() => match frame {
                Some(frame) => RoomDelivery::Frame(frame),
                // The viewer holds a sender for as long as the socket lives.
                None => std::future::pending().await,
            },
        }
    }
}

/// A seat's way to its socket.
#[derive(Debug, Clone)]
struct Outbox {
    frames: mpsc::Sender<Utf8Bytes>,
    dropped: Arc<Notify>,
}

impl Outbox {
    /// Queues a frame without waiting; `false` when the viewer must lose its seat (its
    /// queue is full, or its socket is gone).
    fn offer(&self, frame: &Utf8Bytes) -> bool {
        match self.frames.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("plaza_live_slow_viewers_dropped_total").increment(1);
                self.dropped.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// A socket's place in a room; dropping it leaves.
#[derive(Debug)]
struct Seat {
    live: LiveHandle,
    relay: Arc<Relay>,
    id: u64,
    /// Set when the relay removed the seat itself (too slow, banned, room ended).
    removed: Arc<AtomicBool>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.live.hub().leave(&self.relay, Some(self.id));
    }
}

/// Every room with a viewer on this node.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    rooms: Mutex<HashMap<String, Arc<Relay>>>,
    next_seat: AtomicU64,
    /// Rooms whose last viewer here left since the viewers were last counted.
    emptied: Mutex<HashSet<String>>,
    /// Per room, the deal whose end this node's viewers were told of.
    deal_ends_sent: Mutex<HashMap<String, String>>,
    /// What `live_room_members` holds for this node (with NATS), and the lock that
    /// orders every write to it and to this node's `live_room_nodes` rows (`viewers.rs`).
    pub(crate) rows: tokio::sync::Mutex<crate::viewers::NodeRows>,
}

/// One room's viewers on this node, and its chat on its way to them.
#[derive(Debug)]
pub(crate) struct Relay {
    room_id: String,
    state: Mutex<RelayState>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

#[derive(Debug, Default)]
struct RelayState {
    /// The backlog is loaded and the relay task runs.
    ready: bool,
    stopped: bool,
    seats: HashMap<u64, Seated>,
    /// Seats per user, for "has this user joined" and for the member rows.
    users: HashMap<String, usize>,
    /// Messages for the next batch, and their bytes.
    pending: Vec<Line>,
    pending_bytes: usize,
    /// The last messages sent, oldest first: a joiner's backlog.
    history: VecDeque<Line>,
    backlog_frame: Option<Utf8Bytes>,
    /// Sales for the next batch's `live.sold` (at most `SOLD_NAMED_MAX`), and how many
    /// more came.
    sold: Vec<Value>,
    sold_others: usize,
}

#[derive(Debug)]
struct Seated {
    user_id: String,
    outbox: Outbox,
    removed: Arc<AtomicBool>,
    /// Joined before the relay was ready; sent the backlog once it is.
    needs_backlog: bool,
}

/// A message as the relay holds it: its id and its wire JSON, serialised once.
#[derive(Debug, Clone)]
struct Line {
    id: String,
    json: Arc<str>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    /// Seats a socket in a room's relay (made if this is the room's first viewer here,
    /// in which case the caller must start it).
    fn enter(&self, live: &LiveHandle, room_id: &str, user_id: &str, outbox: &Outbox) -> (Seat, bool) {
        let mut rooms = lock(&self.rooms);
        let (relay, created) = match rooms.get(room_id) {
            Some(relay) => (relay.clone(), false),
            None => {
                let relay =
                    Arc::new(Relay { room_id: room_id.to_string(), state: Mutex::default(), task: Mutex::default() });
                rooms.insert(room_id.to_string(), relay.clone());
                (relay, true)
            }
        };
        lock(&self.emptied).remove(room_id);
        let id = self.next_seat.fetch_add(1, Ordering::Relaxed);
        let removed = Arc::new(AtomicBool::new(false));
        {
            let mut state = lock(&relay.state);
            let seated = Seated {
                user_id: user_id.to_string(),
                outbox: outbox.clone(),
                removed: removed.clone(),
                needs_backlog: !state.ready,
            };
            let seated_now = state.ready && {
                let frame = state.backlog(room_id);
                seated.outbox.offer(&frame)
            };
            if seated_now || !state.ready {
                *state.users.entry(user_id.to_string()).or_insert(0) += 1;
                state.seats.insert(id, seated);
            } else {
                removed.store(true, Ordering::Release);
            }
        }
        drop(rooms);
        (Seat { live: live.clone(), relay, id, removed }, created)
    }

    /// Takes a seat out (`None`: only checks), and stops the relay if none is left.
    fn leave(&self, relay: &Arc<Relay>, seat: Option<u64>) {
        let mut rooms = lock(&self.rooms);
        let mut state = lock(&relay.state);
        if let Some(seated) = seat.and_then(|id| state.seats.remove(&id)) {
            seated.removed.store(true, Ordering::Release);
            state.forget_user(&seated.user_id);
        }
        if !state.seats.is_empty() || state.stopped {
            return;
        }
        state.stopped = true;
        drop(state);
        if rooms.get(&relay.room_id).is_some_and(|current| Arc::ptr_eq(current, relay)) {
            rooms.remove(&relay.room_id);
            lock(&self.emptied).insert(relay.room_id.clone());
        }
        drop(rooms);
        if let Some(task) = lock(&relay.task).take() {
            task.abort();
        }
    }

    /// Gives up a relay that could not start: its seats are told and removed.
    fn abandon(&self, relay: &Arc<Relay>) {
        let problem = plaza_http::Problem::new(plaza_http::ErrorCode::Unavailable, "could not join; try again")
            .with_extension("room_id", relay.room_id.clone());
        let frame = Utf8Bytes::from(json!({"type": "error", "data": problem.to_json()}).to_string());
        relay.remove_seats(|_| true, Some(&frame));
        self.leave(relay, None);
    }

    fn relay(&self, room_id: &str) -> Option<Arc<Relay>> {
        lock(&self.rooms).get(room_id).cloned()
    }

    /// Whether `user_id` has a socket in the room on this node.
    pub(crate) fn has_joined(&self, room_id: &str, user_id: &str) -> bool {
        self.relay(room_id).is_some_and(|relay| lock(&relay.state).users.contains_key(user_id))
    }

    /// Joined sockets per room on this node, and the rooms left empty since last asked.
    pub(crate) fn counts(&self) -> (Vec<(String, i64)>, Vec<String>) {
        let relays: Vec<Arc<Relay>> = lock(&self.rooms).values().cloned().collect();
        let mut counts: Vec<(String, i64)> =
            relays.iter().map(|relay| (relay.room_id.clone(), lock(&relay.state).seats.len() as i64)).collect();
        counts.sort();
        let mut emptied: Vec<String> = lock(&self.emptied).drain().collect();
        emptied.sort();
        (counts, emptied)
    }

    /// Joined sockets in one room on this node.
    pub(crate) fn counts_of(&self, room_id: &str) -> i64 {
        self.relay(room_id).map_or(0, |relay| lock(&relay.state).seats.len() as i64)
    }

    /// Every (room, user) with a socket here.
    pub(crate) fn members(&self) -> HashSet<(String, String)> {
        let relays: Vec<Arc<Relay>> = lock(&self.rooms).values().cloned().collect();
        let mut members = HashSet::new();
        for relay in relays {
            for user_id in lock(&relay.state).users.keys() {
                members.insert((relay.room_id.clone(), user_id.clone()));
            }
        }
        members
    }

    /// Whether this node's viewers of the room are yet to hear that `sale_id` ended (and
    /// from now on, they have); forgets rooms not in `rooms`.
    pub(crate) fn deal_end_unsent(&self, room_id: &str, sale_id: &str, rooms: &[(String, i64)]) -> bool {
        let mut sent = lock(&self.deal_ends_sent);
        sent.retain(|room, _| rooms.iter().any(|(counted, _)| counted == room));
        if sent.get(room_id).map(String::as_str) == Some(sale_id) {
            return false;
        }
        sent.insert(room_id.to_string(), sale_id.to_string());
        true
    }

    /// Sends a frame to every viewer of a room on this node.
    pub(crate) fn send(&self, room_id: &str, frame: &Utf8Bytes) {
        if let Some(relay) = self.relay(room_id) {
            self.deliver(&relay, |state| state.flush(&relay.room_id), Some(frame));
        }
    }

    /// Ends a room for its viewers here: they get what chat was collected, then
    /// `live.ended`, and lose their seats.
    pub(crate) fn end(&self, room_id: &str) {
        if let Some(relay) = self.relay(room_id) {
            let frame = Utf8Bytes::from(json!({"type": "live.ended", "data": {"room_id": room_id}}).to_string());
            let chat = lock(&relay.state).flush(room_id);
            relay.remove_seats(|seated| !chat.iter().all(|frame| seated.outbox.offer(frame)), None);
            relay.remove_seats(|_| true, Some(&frame));
            self.leave(&relay, None);
        }
    }

    /// Runs `prepare` (a batch to send first, if any), then sends it and `frame` to every
    /// seat; the seats that could not take them lose their seats.
    fn deliver(
        &self,
        relay: &Arc<Relay>,
        prepare: impl FnOnce(&mut RelayState) -> Vec<Utf8Bytes>,
        frame: Option<&Utf8Bytes>,
    ) {
        let lost = {
            let mut state = lock(&relay.state);
            let first = prepare(&mut state);
            let frames: Vec<&Utf8Bytes> = first.iter().chain(frame).collect();
            if frames.is_empty() {
                return;
            }
            state.remove_where(|seated| !frames.iter().all(|frame| seated.outbox.offer(frame)))
        };
        if lost > 0 {
            self.leave(relay, None);
        }
    }
}

impl RelayState {
    /// The `live.chat` frame of the last messages sent (made once per change).
    fn backlog(&mut self, room_id: &str) -> Utf8Bytes {
        if let Some(frame) = &self.backlog_frame {
            return frame.clone();
        }
        let frame = chat_frame(room_id, self.history.iter());
        self.backlog_frame = Some(frame.clone());
        frame
    }

    /// Keeps a new message for the next batch; past [`PENDING_MAX`] messages or
    /// [`PENDING_BYTES_MAX`] bytes the oldest are dropped (and counted).
    fn collect(&mut self, line: Line) {
        self.pending_bytes += line.json.len();
        self.pending.push(line);
        let (mut dropped, mut bytes) = (0, self.pending_bytes);
        while self.pending.len() - dropped > 1
            && (self.pending.len() - dropped > PENDING_MAX || bytes > PENDING_BYTES_MAX)
        {
            bytes -= self.pending[dropped].json.len();
            dropped += 1;
        }
        if dropped > 0 {
            self.pending.drain(..dropped);
            self.pending_bytes = bytes;
            metrics::counter!("plaza_live_chat_dropped_total").increment(dropped as u64);
        }
    }

    /// Moves the collected messages into the history; their frames (none if there were
    /// none), each at most about [`CHAT_FRAME_BYTES_MAX`].
    fn flush(&mut self, room_id: &str) -> Vec<Utf8Bytes> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let frames = chat_frames(room_id, &self.pending);
        for line in self.pending.drain(..) {
            self.history.push_back(line);
        }
        self.pending_bytes = 0;
        while self.history.len() > BACKLOG_MESSAGES {
            self.history.pop_front();
        }
        self.backlog_frame = None;
        frames
    }

    /// Keeps sales for the next batch, naming at most `SOLD_NAMED_MAX` and counting the
    /// rest, so a rush of orders costs a bounded frame.
    fn add_sold(&mut self, sales: Vec<Value>, others: usize) {
        let room = crate::deals::SOLD_NAMED_MAX.saturating_sub(self.sold.len());
        self.sold_others += others + sales.len().saturating_sub(room);
        self.sold.extend(sales.into_iter().take(room));
    }

    /// The batch's `live.sold`: the first sale's fields (what one sale's frame carries),
    /// every sale named in `sales`, and `others` not named.
    fn sold_frame(&mut self, room_id: &str) -> Option<Utf8Bytes> {
        if self.sold.is_empty() {
            return None;
        }
        let sales = std::mem::take(&mut self.sold);
        let others = std::mem::take(&mut self.sold_others);
        let first = &sales[0];
        let data = json!({"room_id": room_id, "buyer_name": first["buyer_name"],
            "product_title": first["product_title"], "quantity": first["quantity"],
            "sales": sales, "others": others});
        Some(Utf8Bytes::from(json!({"type": "live.sold", "data": data}).to_string()))
    }

    fn forget_user(&mut self, user_id: &str) {
        if let Some(count) = self.users.get_mut(user_id) {
            *count -= 1;
            if *count == 0 {
                self.users.remove(user_id);
            }
        }
    }

    /// Removes the seats `lose` picks; how many.
    fn remove_where(&mut self, mut lose: impl FnMut(&Seated) -> bool) -> usize {
        let lost: Vec<u64> = self.seats.iter().filter(|(_, seated)| lose(seated)).map(|(id, _)| *id).collect();
        for id in &lost {
            if let Some(seated) = self.seats.remove(id) {
                seated.removed.store(true, Ordering::Release);
                self.forget_user(&seated.user_id);
            }
        }
        lost.len()
    }

    fn is_known(&self, id: &str) -> bool {
        self.history.iter().rev().chain(self.pending.iter()).any(|line| line.id == id)
    }
}

impl Relay {
    /// Removes the seats `lose` picks, sending each `farewell` first.
    fn remove_seats(&self, lose: impl Fn(&Seated) -> bool, farewell: Option<&Utf8Bytes>) {
        let mut state = lock(&self.state);
        state.remove_where(|seated| {
            let leaving = lose(seated);
            if leaving {
                if let Some(frame) = farewell {
                    seated.outbox.offer(frame);
                }
            }
            leaving
        });
    }
}

/// Past this a batch's messages go in another `live.chat` frame. Each socket's writer
/// keeps a buffer as large as the largest frame it ever sent (tungstenite grows it and
/// never shrinks it), so one frame of several seconds of a busy room, sent when the relay
/// fell behind, left that much behind on each of 10,000 sockets. A usual batch (200 ms of
/// 200 messages a second is about 6 KB) stays one frame: the viewers' queues count
/// frames, so splitting every batch would fill them sooner.
pub const CHAT_FRAME_BYTES_MAX: usize = 32 * 1024;

/// The `live.chat` frames of `lines`, in order, each holding as many whole messages as
/// fit in [`CHAT_FRAME_BYTES_MAX`] (and at least one).
fn chat_frames(room_id: &str, lines: &[Line]) -> Vec<Utf8Bytes> {
    let mut frames = Vec::new();
    let mut start = 0;
    while start < lines.len() {
        let mut end = start + 1;
        let mut bytes = lines[start].json.len();
        while end < lines.len() && bytes + 1 + lines[end].json.len() <= CHAT_FRAME_BYTES_MAX {
            bytes += 1 + lines[end].json.len();
            end += 1;
        }
        frames.push(chat_frame(room_id, lines[start..end].iter()));
        start = end;
    }
    frames
}

/// `{"type":"live.chat","data":{"room_id":…,"messages":[…]}}`, from messages already
/// serialised.
fn chat_frame<'a>(room_id: &str, lines: impl Iterator<Item = &'a Line>) -> Utf8Bytes {
    let mut text = String::with_capacity(256);
    text.push_str(r#"{"type":"live.chat","data":{"room_id":"#);
    text.push_str(&Value::from(room_id).to_string());
    text.push_str(r#","messages":["#);
    for (index, line) in lines.enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(&line.json);
    }
    text.push_str("]}}");
    Utf8Bytes::from(text)
}

impl LiveHandle {
    /// Starts a new relay: subscribes to the room's subject first and reads its last
    /// messages second, so nothing said in between is lost (what both saw is kept once),
    /// sends the backlog to everyone who joined meanwhile, then relays until stopped.
    async fn start_relay(&self, relay: &Arc<Relay>) -> Result<(), LiveError> {
        let subscription = self
            .inner
            .bus
            .subscribe(&room_subject(&relay.room_id))
            .await
            .map_err(|error| LiveError::Bus(error.to_string()))?;
        let messages = self.last_chat(&relay.room_id, BACKLOG_MESSAGES).await?;
        let history = messages
            .iter()
            .map(|message| {
                let body = crate::routes_chat::ChatMessageBody::from(message);
                Line { id: message.id.clone(), json: Arc::from(serde_json::to_string(&body).unwrap_or_default()) }
            })
            .collect();
        let lost = {
            let mut state = lock(&relay.state);
            state.history = history;
            state.backlog_frame = None;
            state.ready = true;
            let frame = state.backlog(&relay.room_id);
            let lost = state.remove_where(|seated| seated.needs_backlog && !seated.outbox.offer(&frame));
            for seated in state.seats.values_mut() {
                seated.needs_backlog = false;
            }
            lost
        };
        let task = tokio::spawn(run_relay(self.clone(), relay.clone(), subscription));
        *lock(&relay.task) = Some(task.abort_handle());
        // Everyone may have left while it started.
        if lock(&relay.state).stopped {
            task.abort();
        }
        if lost > 0 {
            self.hub().leave(relay, None);
        }
        Ok(())
    }
}

/// A relay's loop: collect what the room's subject carries, send a batch every interval.
async fn run_relay(live: LiveHandle, relay: Arc<Relay>, mut subscription: Subscription) {
    let mut ticks = tokio::time::interval(live.inner.config.chat_batch_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = subscription.recv() => match received {
                Received::Notification(notification) => {
                    match serde_json::from_slice::<RoomNotice>(&notification.payload) {
                        Ok(notice) => {
                            if !apply(&live, &relay, notice) {
                                return;
                            }
                        }
                        Err(error) => tracing::warn!(room = %relay.room_id, "ignoring a malformed room notice: {error}"),
                    }
                }
                // Chat is not durable delivery: what a lagging relay missed is in the
                // room's kept chat, not resent.
                Received::Lagged(missed) => {
                    metrics::counter!("plaza_live_chat_relay_lagged_total").increment(missed.max(1));
                    tracing::warn!(room = %relay.room_id, missed, "a live chat relay fell behind the bus");
                }
                Received::Closed => return,
            },
            _ = ticks.tick() => {
                let sold = lock(&relay.state).sold_frame(&relay.room_id);
                live.hub().deliver(&relay, |state| state.flush(&relay.room_id), sold.as_ref());
            }
        }
    }
}

/// Applies one notice to a relay; `false` when the relay is done (the room ended).
fn apply(live: &LiveHandle, relay: &Arc<Relay>, notice: RoomNotice) -> bool {
    let hub = live.hub();
    let room_id = relay.room_id.as_str();
    match notice {
        RoomNotice::Chat { message } => {
            let id = message.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            let mut state = lock(&relay.state);
            if !id.is_empty() && !state.is_known(&id) {
                state.collect(Line { id, json: Arc::from(message.to_string()) });
            }
        }
        RoomNotice::Deleted { message_id } => {
            let frame = Utf8Bytes::from(
                json!({"type": "live.chat_deleted", "data": {"room_id": room_id, "message_id": message_id}})
                    .to_string(),
            );
            hub.deliver(
                relay,
                |state| {
                    let batch = state.flush(room_id);
                    state.history.retain(|line| line.id != message_id);
                    state.backlog_frame = None;
                    batch
                },
                Some(&frame),
            );
        }
        RoomNotice::Pinned { product } => {
            let frame = Utf8Bytes::from(
                json!({"type": "live.pinned", "data": {"room_id": room_id, "product": product}}).to_string(),
            );
            hub.deliver(relay, |state| state.flush(room_id), Some(&frame));
        }
        RoomNotice::Banned { user_id } => {
            let problem = plaza_http::Problem::new(plaza_http::ErrorCode::Banned, "the host banned you from this room")
                .with_extension("room_id", room_id);
            let frame = Utf8Bytes::from(json!({"type": "error", "data": problem.to_json()}).to_string());
            relay.remove_seats(|seated| seated.user_id == user_id, Some(&frame));
            hub.leave(relay, None);
        }
        RoomNotice::Ended => {
            hub.end(room_id);
            return false;
        }
        RoomNotice::Deal { deal } => {
            let frame = Utf8Bytes::from(json!({"type": "live.deal", "data": deal}).to_string());
            hub.deliver(relay, |state| state.flush(room_id), Some(&frame));
        }
        RoomNotice::Sold { sales, others } => lock(&relay.state).add_sold(sales, others),
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_big_batch_goes_out_in_frames_of_at_most_32_kib_with_every_message_once_in_order() {
        let mut state = RelayState::default();
        assert!(state.flush("r").is_empty(), "nothing collected, no frame");
        let text = "x".repeat(150);
        for n in 0..800 {
            let json = json!({"id": format!("{n:04}"), "text": text}).to_string();
            state.collect(Line { id: format!("{n:04}"), json: Arc::from(json) });
        }
        // One message larger than a frame still goes, alone.
        let huge = json!({"id": "9999", "text": "y".repeat(40_000)}).to_string();
        state.collect(Line { id: "9999".into(), json: Arc::from(huge) });
        let frames = state.flush("r");
        assert!(frames.len() > 4, "{} frames", frames.len());
        let mut ids = Vec::new();
        for frame in &frames {
            let parsed: Value = serde_json::from_str(frame.as_str()).unwrap();
            assert_eq!(parsed["type"], "live.chat");
            assert_eq!(parsed["data"]["room_id"], "r");
            let in_frame = ids_of(&parsed);
            assert!(frame.len() <= CHAT_FRAME_BYTES_MAX + 100 || in_frame.len() == 1, "{} bytes", frame.len());
            ids.extend(in_frame);
        }
        let expected: Vec<String> = (0..800).map(|n| format!("{n:04}")).chain(["9999".to_string()]).collect();
        assert_eq!(ids, expected);
        assert!(state.pending.is_empty() && state.history.len() == BACKLOG_MESSAGES);
    }

    #[test]
    fn a_flood_of_the_largest_messages_is_one_batch_of_its_newest_that_a_viewers_queue_holds_whole() {
        let mut state = RelayState::default();
        // As large as a message can be on the wire: four-byte characters in the text, the
        // name and the bio, each at its limit.
        let wide = |chars: usize| "😀".repeat(chars);
        let flood = 3 * PENDING_MAX;
        for n in 0..flood {
            let json = json!({
                "id": format!("{n:05}"),
                "user": {"id": "01M97FSQFPN25X0BYX7VF8TD7Q", "username": "u".repeat(32), "display_name": wide(64),
                         "avatar_url": "/api/v1/media/01M97FSQFPN25X0BYX7VF8TD7Q",
                         "created_at": "2026-12-07T07:45:00.000Z", "bio": wide(160),
                         "followers_count": 1_000_000_000, "following_count": 1_000_000_000},
                "text": wide(crate::model::CHAT_CHARS_MAX),
                "at": "2026-12-07T07:45:00.000Z",
            })
            .to_string();
            state.collect(Line { id: format!("{n:05}"), json: Arc::from(json) });
        }
        let frames = state.flush("r");
        let queue = crate::LiveConfig::default().viewer_queue_frames;
        assert!(frames.len() <= queue / 3, "{} frames for a queue of {queue}", frames.len());
        let ids: Vec<String> = frames
            .iter()
            .flat_map(|frame| {
                let parsed: Value = serde_json::from_str(frame.as_str()).unwrap();
                ids_of(&parsed)
            })
            .collect();
        let first = flood - ids.len();
        assert!(ids.len() > 200, "only {} messages kept", ids.len());
        assert_eq!(ids, (first..flood).map(|n| format!("{n:05}")).collect::<Vec<_>>(), "the newest, in order");
        assert_eq!(state.pending_bytes, 0);
    }

    fn ids_of(frame: &Value) -> Vec<String> {
        let messages = frame["data"]["messages"].as_array().unwrap();
        messages.iter().map(|message| message["id"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn a_rush_of_sales_is_one_bounded_live_sold_a_batch() {
        let mut state = RelayState::default();
        assert!(state.sold_frame("r").is_none(), "no sales, no frame");
        let sale = |n: i64| json!({"buyer_name": format!("buyer{n}"), "product_title": "Tea", "quantity": n});
        state.add_sold((1..=15).map(sale).collect(), 0);
        state.add_sold((16..=30).map(sale).collect(), 4);
        let frame: Value = serde_json::from_str(state.sold_frame("r").unwrap().as_str()).unwrap();
        assert_eq!(frame["type"], "live.sold");
        let data = &frame["data"];
        assert_eq!(
            (data["room_id"].clone(), data["buyer_name"].clone(), data["quantity"].clone()),
            (json!("r"), json!("buyer1"), json!(1))
        );
        assert_eq!(data["sales"].as_array().unwrap().len(), crate::deals::SOLD_NAMED_MAX);
        assert_eq!(data["others"], 30 - crate::deals::SOLD_NAMED_MAX + 4);
        assert!(state.sold_frame("r").is_none(), "sent once");
    }
}
