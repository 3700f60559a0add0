//! The real-time gateway: one WebSocket per client at `/api/v1/ws`, and the same events
//! over HTTP at `/api/v1/events`.
//!
//! Delivery is exactly-once and in order per user, by construction rather than by care:
//! a connection remembers the cursor of the last event it sent. An event from the bus is
//! sent only if its cursor is exactly the next one; anything else (a lost, late or
//! reordered notification, a lagging subscription, a `resume`) makes the connection read
//! the durable log after its cursor instead. Subscribing before reading the log closes the
//! race between the two, so the seam between replay and live delivery neither drops nor
//! repeats an event.
//!
//! Every connection has a bounded send queue. A client that does not drain it within the
//! send time-out is disconnected (it resumes later from its cursor) instead of growing
//! the server's memory.
//!
//! Live rooms' frames (`live.chat`, `live.stats`, `live.pinned`, …) are not events: a
//! socket that sent `live.join` gets them through its room inbox (`plaza_live::LiveViewer`),
//! batched by each room's relay, without a cursor and never replayed. A socket whose room
//! inbox fills is disconnected as too slow.

use crate::app::AppState;
use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use plaza_accounts::User;
use plaza_bus::Received;
use plaza_events::{Event, Notice};
use plaza_http::{ApiQuery, ErrorCode, Problem};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct GatewayConfig {
    /// Frames that may wait to be written to one socket.
    pub send_queue_frames: usize,
    /// How long a full queue may stay full before the client is disconnected.
    pub send_timeout: Duration,
    /// How often the server pings an otherwise quiet socket.
    pub heartbeat: Duration,
    /// A socket that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// Sockets one user may hold on this node at once (`PLAZA_SOCKETS_PER_USER_MAX`);
    /// one more is refused with 429 `too_many_connections` before the upgrade.
    pub sockets_per_user_max: usize,
}

/// How many sockets each user holds on this node. Per node, not per cluster: a socket is
/// a cost to the node holding it, and counting across nodes would put a database write
/// on every connect.
#[derive(Debug, Clone, Default)]
pub struct UserSockets {
    open: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

/// One socket's place under its user's cap, given back when the socket ends.
#[derive(Debug)]
pub struct UserSocketSlot {
    sockets: UserSockets,
    user_id: String,
}

impl UserSockets {
    fn take(&self, user_id: &str, max: usize) -> Option<UserSocketSlot> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(user_id.to_string()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(UserSocketSlot { sockets: self.clone(), user_id: user_id.to_string() })
    }
}

impl Drop for UserSocketSlot {
    fn drop(&mut self) {
        let mut open = self.sockets.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            send_queue_frames: 256,
            send_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(70),
            sockets_per_user_max: 16,
        }
    }
}

/// The largest frame a client may send.
const INBOUND_FRAME_MAX_BYTES: usize = 64 * 1024;

/// `message.send` frames one socket may have waiting for their ack. Sends are queued in
/// the order they arrive (so they are numbered in that order) and stored group-committed
/// with everyone else's; acks come back as each is stored. Past this many, the socket's
/// next frames wait, which pushes back on a client that sends faster than we store.
const SENDS_IN_FLIGHT_MAX: usize = 64;

/// An ack (or error) to send once a queued `message.send` is stored.
type PendingAck = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (Option<String>, Result<(plaza_chat::wire::MessageView, bool), plaza_chat::ChatError>),
            > + Send,
    >,
>;
/// How long a new connection waits for a `resume` before it starts live delivery from
/// the cursor in its `hello`.
const RESUME_GRACE: Duration = Duration::from_secs(1);
/// Why a socket closes when its session was revoked, and the close code clients see
/// (4000–4999 are the application's own; a client should sign in again, not reconnect).
const SESSION_ENDED: &str = "session ended";
const SESSION_ENDED_CLOSE_CODE: u16 = 4001;
/// Typing indicators a connection may relay per second.
const TYPING_PER_SECOND: u32 = 5;

pub fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(events)).routes(routes!(websocket)).with_state(state)
}

/// One event as delivered over HTTP (the same fields as on the socket).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    #[serde(rename = "type")]
    pub event_type: String,
    /// Opaque, increasing per user; pass it back as `after` (or in `resume`).
    pub cursor: String,
    pub data: Value,
    pub created_at: String,
}

impl From<&Event> for EventView {
    fn from(event: &Event) -> Self {
        Self {
            event_type: event.event_type.clone(),
            cursor: event.cursor.to_string(),
            data: event.data.clone(),
            created_at: plaza_kernel::Timestamp::from_unix_millis(event.created_at_ms).to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventView>,
    /// The cursor to pass as `after` next (the last item's), or null when caught up.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct EventParams {
    /// Events after this cursor; omit for the first.
    pub after: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// The caller's durable events after a cursor: the same events the socket delivers.
#[utoipa::path(get, path = "/api/v1/events", tag = "realtime", security(("bearer" = [])), params(EventParams),
    responses((status = 200, description = "Events in cursor order", body = EventPage)))]
async fn events(
    State(state): State<AppState>,
    current: plaza_accounts::CurrentUser,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<axum::Json<EventPage>, Problem> {
    let limit = plaza_http::page_limit(params.limit)?;
    let after = match params.after.as_deref() {
        None | Some("") => 0,
        Some(text) => plaza_events::parse_cursor(text)
            .ok_or_else(|| Problem::invalid_field("after", "not a cursor this server issued"))?,
    };
    let checked = state
        .services
        .events
        .after_checked(&current.user.id, after, limit.get())
        .await
        .map_err(|error| Problem::internal(&error))?;
    // Without `after` the caller asks for whatever is kept, so nothing can be missing.
    if checked.expired && params.after.as_deref().is_some_and(|text| !text.is_empty()) {
        return Err(Problem::new(
            ErrorCode::CursorExpired,
            "events after this cursor are no longer kept; reload state, then read events without `after`",
        ));
    }
    let found = checked.events;
    let next_cursor =
        (found.len() == limit.get() as usize).then(|| found.last().map(|e| e.cursor.to_string())).flatten();
    Ok(axum::Json(EventPage { items: found.iter().map(EventView::from).collect(), next_cursor }))
}

/// Opens the real-time socket (see API.md, "Real time").
#[utoipa::path(get, path = "/api/v1/ws", tag = "realtime", security(("bearer" = [])), params(SocketParams),
    responses((status = 101, description = "Switching to the WebSocket protocol")))]
async fn websocket(
    State(state): State<AppState>,
    plaza_accounts::SocketCaller(caller): plaza_accounts::SocketCaller,
    ApiQuery(params): ApiQuery<SocketParams>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Problem> {
    let resume_from = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            plaza_events::parse_cursor(text)
                .ok_or_else(|| Problem::invalid_field("cursor", "not a cursor this server issued"))?,
        ),
    };
    let Some(slot) = state.sockets.take(&caller.user.id, state.gateway.sockets_per_user_max) else {
        return Err(Problem::new(
            ErrorCode::TooManyConnections,
            format!("at most {} sockets per user; close one first", state.gateway.sockets_per_user_max),
        )
        .with_retry_after(5));
    };
    // Small buffers: most sockets are idle most of the time, and tungstenite's defaults
    // (128 KiB each way) would cost a quarter of a megabyte per connected client.
    Ok(upgrade
        .max_message_size(INBOUND_FRAME_MAX_BYTES)
        .max_frame_size(INBOUND_FRAME_MAX_BYTES)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| async move {
            metrics::gauge!("plaza_ws_connections").increment(1.0);
            let user_id = caller.user.id.clone();
            let session = state.services.accounts.watch_session(&caller).await;
            if let Err(reason) = Connection::run(socket, caller.user, session, state, resume_from).await {
                tracing::debug!(user_id, "socket closed: {reason}");
            }
            metrics::gauge!("plaza_ws_connections").decrement(1.0);
            drop(slot);
        }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SocketParams {
    /// The session token, for clients that cannot send headers.
    pub token: Option<String>,
    /// Resume at connect: replay every event after this cursor, then continue live.
    pub cursor: Option<String>,
}

/// A frame from the client: its kind, parsed once, its request id and its data.
#[derive(Debug, Deserialize)]
struct ClientFrame {
    #[serde(rename = "type")]
    kind: FrameKind,
    id: Option<String>,
    #[serde(default)]
    data: Value,
}

/// What a client frame asks for (API.md "Real time"); anything else is answered with an
/// `invalid_field` error frame naming `type`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
enum FrameKind {
    Resume,
    Ping,
    MessageSend,
    Typing,
    DriverLocation,
    LiveJoin,
    LiveLeave,
    LiveChatSend,
    Unknown(String),
}

impl From<String> for FrameKind {
    fn from(text: String) -> Self {
        match text.as_str() {
            "resume" => Self::Resume,
            "ping" => Self::Ping,
            "message.send" => Self::MessageSend,
            "typing" => Self::Typing,
            "driver.location" => Self::DriverLocation,
            "live.join" => Self::LiveJoin,
            "live.leave" => Self::LiveLeave,
            "live.chat.send" => Self::LiveChatSend,
            _ => Self::Unknown(text),
        }
    }
}

/// Why a connection ends; decides its close frame and what is counted.
#[derive(Debug)]
enum Disconnect {
    /// The send queue stayed full for the send time-out: the client is too slow.
    TooSlow,
    /// Nothing heard from the client (not even a pong) for the idle time-out.
    Idle,
    /// The session was revoked, here or on another node.
    SessionEnded,
    /// The writer task ended (the socket is gone).
    WriterGone,
    /// The socket failed while reading.
    Transport(String),
    /// Something on the server failed (the database, the bus).
    Internal(String),
}

impl Disconnect {
    fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

impl std::fmt::Display for Disconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooSlow => f.write_str("too slow"),
            Self::Idle => f.write_str("idle"),
            Self::SessionEnded => f.write_str(SESSION_ENDED),
            Self::WriterGone => f.write_str("writer gone"),
            Self::Transport(error) => write!(f, "socket: {error}"),
            Self::Internal(error) => write!(f, "server: {error}"),
        }
    }
}

struct Connection {
    user: User,
    state: AppState,
    outbound: mpsc::Sender<WsMessage>,
    /// The cursor of the last durable event sent on this socket.
    last_sent: i64,
    /// Until the client's first frame (or [`RESUME_GRACE`]), durable events are held back,
    /// so that a `resume` sent first replays in order without repeating what live
    /// delivery would otherwise have sent ahead of it.
    live: bool,
    typing_window: (Instant, u32),
    /// The live rooms this socket joined (`live.join`); their frames come through the
    /// socket's room inbox, batched by each room's relay.
    rooms: plaza_live::LiveViewer,
}

impl Connection {
    async fn run(
        socket: WebSocket,
        user: User,
        mut session: plaza_accounts::SessionWatch,
        state: AppState,
        resume_from: Option<i64>,
    ) -> Result<(), Disconnect> {
        let config = state.gateway;
        let (mut sink, mut stream) = socket.split();
        let (outbound, mut queue) = mpsc::channel::<WsMessage>(config.send_queue_frames.max(1));
        let writer = tokio::spawn(async move {
            while let Some(frame) = queue.recv().await {
                if sink.send(frame).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });

        // Subscribe first, then read where the log stands: nothing committed in between
        // can fall into the gap.
        let mut subscription = state.services.events.subscribe(&user.id).await.map_err(Disconnect::internal)?;
        let latest = state.services.events.latest_cursor(&user.id).await.map_err(Disconnect::internal)?;
        let (last_sent, live) = match resume_from {
            Some(cursor) => (cursor, true),
            None => (latest, false),
        };
        let (rooms, mut room_frames) = state.services.live.viewer(user.clone());
        let mut connection =
            Connection { user, state, outbound, last_sent, live, typing_window: (Instant::now(), 0), rooms };
        connection
            .send_json(&json!({"type": "hello", "data": {"user_id": connection.user.id, "cursor": latest.to_string()}}))
            .await?;
        if connection.live {
            connection.catch_up().await?;
        }
        let grace = tokio::time::sleep(RESUME_GRACE);
        tokio::pin!(grace);

        let mut heartbeat = tokio::time::interval(config.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut sends_in_flight = futures_util::stream::FuturesUnordered::<PendingAck>::new();
        let outcome = loop {
            tokio::select! {
                () = &mut grace, if !connection.live => {
                    if let Err(reason) = connection.go_live().await {
                        break Err(reason);
                    }
                }
                Some((id, stored)) = sends_in_flight.next(), if !sends_in_flight.is_empty() => {
                    let acked = match stored {
                        Ok((message, _)) => connection.send_json(&with_id(json!({"type": "ack", "data": message}), id)).await,
                        Err(error) => connection.send_error(id, &Problem::from(error)).await,
                    };
                    if let Err(reason) = acked {
                        break Err(reason);
                    }
                }
                inbound = stream.next(), if sends_in_flight.len() < SENDS_IN_FLIGHT_MAX => {
                    last_heard = Instant::now();
                    match connection.on_inbound(inbound, &mut sends_in_flight).await {
                        Ok(true) => {}
                        Ok(false) => break Ok(()),
                        Err(reason) => break Err(reason),
                    }
                }
                received = subscription.recv() => {
                    match connection.on_received(received).await {
                        Ok(true) => {}
                        Ok(false) => break Ok(()),
                        Err(reason) => break Err(reason),
                    }
                }
                delivery = room_frames.next() => match delivery {
                    plaza_live::RoomDelivery::Frame(frame) => tokio::select! {
                        queued = connection.enqueue(WsMessage::Text(frame)) => {
                            if let Err(reason) = queued {
                                break Err(reason);
                            }
                        }
                        // Waiting here is what fills the room queue; once it is full
                        // the socket is done, without waiting out the send time-out.
                        () = room_frames.dropped() => break Err(Disconnect::TooSlow),
                    },
                    // Its room queue filled: it already lost its seats.
                    plaza_live::RoomDelivery::TooSlow => break Err(Disconnect::TooSlow),
                },
                // Logged out (here or on another node), or the password changed elsewhere.
                () = session.ended() => break Err(Disconnect::SessionEnded),
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > config.idle_timeout {
                        break Err(Disconnect::Idle);
                    }
                    if let Err(reason) = connection.enqueue(WsMessage::Ping(Default::default())).await {
                        break Err(reason);
                    }
                }
            }
        };
        if matches!(outcome, Err(Disconnect::TooSlow)) {
            metrics::counter!("plaza_ws_slow_consumer_disconnects_total").increment(1);
            // The queue is full, so the close frame cannot wait in line: stop the writer.
            writer.abort();
            return outcome;
        }
        if let Some(close) = close_frame(&outcome) {
            let _ = connection.outbound.try_send(WsMessage::Close(Some(close)));
        }
        drop(connection);
        let _ = writer.await;
        outcome
    }

    /// One frame (or the end) from the client; `Ok(false)` when the client closed.
    async fn on_inbound(
        &mut self,
        inbound: Option<Result<WsMessage, axum::Error>>,
        sends_in_flight: &mut futures_util::stream::FuturesUnordered<PendingAck>,
    ) -> Result<bool, Disconnect> {
        match inbound {
            Some(Ok(WsMessage::Text(text))) => {
                let frame = parse_client_frame(text.as_str());
                let resuming = matches!(&frame, Ok(frame) if frame.kind == FrameKind::Resume);
                if !self.live && !resuming {
                    self.go_live().await?;
                }
                match frame {
                    Ok(frame) if frame.kind == FrameKind::MessageSend => {
                        self.queue_send(frame, sends_in_flight).await?
                    }
                    Ok(frame) => self.handle_client_frame(frame).await?,
                    Err(problem) => self.send_error(None, &problem).await?,
                }
                Ok(true)
            }
            Some(Ok(WsMessage::Binary(_))) => {
                self.send_error(None, &Problem::new(ErrorCode::BadRequest, "frames are JSON text")).await?;
                Ok(true)
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => Ok(true),
            Some(Ok(WsMessage::Close(_))) | None => Ok(false),
            Some(Err(error)) => Err(Disconnect::Transport(error.to_string())),
        }
    }

    /// One notice from the bus for this user; `Ok(false)` when the subscription closed.
    async fn on_received(&mut self, received: Received) -> Result<bool, Disconnect> {
        match received {
            Received::Notification(notification) => match serde_json::from_slice::<Notice>(&notification.payload) {
                Ok(Notice::Durable { event }) if self.live => self.deliver(event).await?,
                // Held back until the client has said where to start; the log has it.
                Ok(Notice::Durable { .. }) => {}
                Ok(Notice::Ephemeral { frame_type, data }) => {
                    self.send_json(&json!({"type": frame_type, "data": data})).await?
                }
                Err(error) => return Err(Disconnect::Internal(format!("undecodable notice: {error}"))),
            },
            Received::Lagged(_) if self.live => self.catch_up().await?,
            Received::Lagged(_) => {}
            Received::Closed => return Ok(false),
        }
        Ok(true)
    }

    async fn handle_client_frame(&mut self, frame: ClientFrame) -> Result<(), Disconnect> {
        let id = frame.id.clone();
        match frame.kind {
            FrameKind::Ping => self.send_json(&with_id(json!({"type": "pong"}), id)).await,
            FrameKind::Resume => {
                let cursor = frame.data.get("cursor").and_then(Value::as_str).and_then(plaza_events::parse_cursor);
                match cursor {
                    Some(cursor) => {
                        self.last_sent = cursor;
                        self.live = true;
                        self.catch_up().await?;
                        self.send_json(&with_id(
                            json!({"type": "resumed", "data": {"cursor": self.last_sent.to_string()}}),
                            id,
                        ))
                        .await
                    }
                    None => {
                        let problem = Problem::invalid_field("data.cursor", "resume needs a cursor this server issued");
                        self.send_error(id, &problem).await
                    }
                }
            }
            FrameKind::Typing => {
                let conversation_id =
                    frame.data.get("conversation_id").and_then(Value::as_str).unwrap_or("").to_string();
                if !self.allow_typing() {
                    return Ok(());
                }
                match self.state.services.chat.other_members(&self.user, &conversation_id).await {
                    Ok(others) => {
                        let data = json!({"conversation_id": conversation_id, "user_id": self.user.id});
                        self.state.services.events.publish_ephemeral(&others, "typing", &data);
                        Ok(())
                    }
                    Err(error) => self.send_error(id, &Problem::from(error)).await,
                }
            }
            FrameKind::DriverLocation => {
                let data = &frame.data;
                let number = |name: &str| data.get(name).and_then(Value::as_f64);
                let location = match (number("lat"), number("lng")) {
                    (Some(lat), Some(lng)) => {
                        plaza_rides::LatLng::new(lat, lng).map_err(|reason| Problem::invalid_field("data", reason))
                    }
                    _ => Err(Problem::invalid_field("data", "driver.location needs numbers lat and lng")),
                };
                let parsed = location
                    .and_then(|location| Ok((location, plaza_rides::routes::parse_heading(number("heading"))?)));
                let result = match parsed {
                    Ok((location, heading)) => self
                        .state
                        .services
                        .rides
                        .update_location(&self.user, location, heading)
                        .await
                        .map_err(Problem::from),
                    Err(problem) => Err(problem),
                };
                match (result, id) {
                    (Ok(()), Some(id)) => self.send_json(&json!({"type": "ack", "id": id})).await,
                    (Ok(()), None) => Ok(()),
                    (Err(problem), id) => self.send_error(id, &problem).await,
                }
            }
            kind @ (FrameKind::LiveJoin | FrameKind::LiveLeave | FrameKind::LiveChatSend) => {
                self.handle_live_frame(kind, id, &frame.data).await
            }
            FrameKind::Unknown(other) => {
                let problem = Problem::invalid_field("type", format!("unknown frame type {other:?}"));
                self.send_error(id, &problem).await
            }
            // The connection loop queues sends before this is called (`queue_send`).
            FrameKind::MessageSend => {
                let problem = Problem::new(ErrorCode::BadRequest, "message.send is queued, not handled here");
                self.send_error(id, &problem).await
            }
        }
    }

    /// `live.join`, `live.leave` and `live.chat.send {room_id, text}`: an `ack` (with the
    /// message, for a chat) when the frame had an id, an `error` frame naming the room
    /// otherwise. A join's backlog and the room's frames come through the room inbox.
    async fn handle_live_frame(&mut self, kind: FrameKind, id: Option<String>, data: &Value) -> Result<(), Disconnect> {
        let Some(room_id) = data.get("room_id").and_then(Value::as_str).filter(|room| !room.is_empty()) else {
            return self.send_error(id, &Problem::invalid_field("data.room_id", "the live room's id")).await;
        };
        let room_id = room_id.to_string();
        let outcome = match kind {
            FrameKind::LiveJoin => self.rooms.join(&room_id).await.map(|()| json!({"room_id": room_id})),
            FrameKind::LiveLeave => {
                self.rooms.leave(&room_id);
                Ok(json!({"room_id": room_id}))
            }
            _ => {
                let text = data.get("text").and_then(Value::as_str).unwrap_or("");
                self.state.services.live.post_chat(&self.user, &room_id, text).await.map(|message| {
                    serde_json::to_value(plaza_live::routes_chat::ChatMessageBody::from(&message)).unwrap_or_default()
                })
            }
        };
        match (outcome, id) {
            (Ok(data), Some(id)) => self.send_json(&json!({"type": "ack", "id": id, "data": data})).await,
            (Ok(_), None) => Ok(()),
            (Err(error), id) => {
                let mut problem = Problem::from(error).with_extension("room_id", room_id);
                if problem.field() == Some("text") {
                    problem = problem.with_field("data.text");
                }
                self.send_error(id, &problem).await
            }
        }
    }

    /// Checks and queues a `message.send`; its ack follows once it is stored.
    async fn queue_send(
        &mut self,
        frame: ClientFrame,
        in_flight: &mut futures_util::stream::FuturesUnordered<PendingAck>,
    ) -> Result<(), Disconnect> {
        let data = &frame.data;
        let text_field = |name: &str| data.get(name).and_then(Value::as_str).unwrap_or("").to_string();
        let queued = self
            .state
            .services
            .chat
            .queue_message(
                &self.user,
                &text_field("conversation_id"),
                &text_field("client_id"),
                &text_field("kind"),
                data.get("body").unwrap_or(&Value::Null),
            )
            .await;
        match queued {
            Ok(queued) => {
                let id = frame.id;
                in_flight.push(Box::pin(async move {
                    let stored = queued.outcome().await;
                    (id, stored.map(|(message, fresh)| (plaza_chat::wire::MessageView::from(&message), fresh)))
                }));
                Ok(())
            }
            Err(error) => self.send_error(frame.id, &Problem::from(error)).await,
        }
    }

    /// Starts live delivery from where the log stood at connect (plus anything since).
    async fn go_live(&mut self) -> Result<(), Disconnect> {
        self.live = true;
        self.catch_up().await
    }

    /// Sends `event` if it is the next one; otherwise reads the log to fill the gap.
    async fn deliver(&mut self, event: Event) -> Result<(), Disconnect> {
        if event.cursor <= self.last_sent {
            return Ok(());
        }
        if event.cursor == self.last_sent + 1 {
            self.send_event(&event).await
        } else {
            self.catch_up().await
        }
    }

    /// Sends every logged event after `last_sent`.
    async fn catch_up(&mut self) -> Result<(), Disconnect> {
        loop {
            let page = self
                .state
                .services
                .events
                .after_checked(&self.user.id, self.last_sent, plaza_events::READ_MAX)
                .await
                .map_err(Disconnect::internal)?;
            if page.expired {
                // What came after the client's cursor was pruned (PLAZA_EVENT_RETENTION_DAYS):
                // it must reload its state over HTTP; events continue from `cursor`.
                let resume_from = match page.events.first() {
                    Some(first) => first.cursor - 1,
                    None => {
                        self.state.services.events.latest_cursor(&self.user.id).await.map_err(Disconnect::internal)?
                    }
                };
                self.last_sent = resume_from;
                self.send_json(&json!({"type": "resync", "data": {"cursor": resume_from.to_string()}})).await?;
            }
            let page = page.events;
            let full = page.len() == plaza_events::READ_MAX as usize;
            for event in &page {
                self.send_event(event).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn send_event(&mut self, event: &Event) -> Result<(), Disconnect> {
        self.send_json(&json!({"type": event.event_type, "cursor": event.cursor.to_string(), "data": event.data}))
            .await?;
        self.last_sent = event.cursor;
        Ok(())
    }

    async fn send_error(&self, id: Option<String>, problem: &Problem) -> Result<(), Disconnect> {
        self.send_json(&with_id(json!({"type": "error", "data": problem.to_json()}), id)).await
    }

    async fn send_json(&self, frame: &Value) -> Result<(), Disconnect> {
        self.enqueue(WsMessage::Text(Utf8Bytes::from(frame.to_string()))).await
    }

    /// Queues a frame, waiting at most the send time-out for room.
    async fn enqueue(&self, frame: WsMessage) -> Result<(), Disconnect> {
        match tokio::time::timeout(self.state.gateway.send_timeout, self.outbound.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Disconnect::WriterGone),
            Err(_) => Err(Disconnect::TooSlow),
        }
    }

    fn allow_typing(&mut self) -> bool {
        let (started, count) = &mut self.typing_window;
        if started.elapsed() >= Duration::from_secs(1) {
            *started = Instant::now();
            *count = 0;
        }
        *count += 1;
        *count <= TYPING_PER_SECOND
    }
}

/// A client's text frame, or the problem to answer it with.
fn parse_client_frame(text: &str) -> Result<ClientFrame, Problem> {
    if plaza_http::extract::contains_escaped_nul(text.as_bytes()) {
        return Err(Problem::invalid_field("", "strings cannot contain the NUL character (U+0000)"));
    }
    serde_json::from_str(text).map_err(|error| Problem::new(ErrorCode::MalformedJson, format!("not a frame: {error}")))
}

/// The close frame a connection ends with, if the socket can still carry one.
fn close_frame(outcome: &Result<(), Disconnect>) -> Option<CloseFrame> {
    match outcome {
        Ok(()) | Err(Disconnect::WriterGone | Disconnect::Transport(_) | Disconnect::TooSlow) => None,
        Err(Disconnect::SessionEnded) => {
            Some(CloseFrame { code: SESSION_ENDED_CLOSE_CODE, reason: Utf8Bytes::from(SESSION_ENDED) })
        }
        Err(Disconnect::Idle | Disconnect::Internal(_)) => {
            Some(CloseFrame { code: 1011, reason: Utf8Bytes::from("server error") })
        }
    }
}

fn with_id(mut frame: Value, id: Option<String>) -> Value {
    if let (Some(id), Some(object)) = (id, frame.as_object_mut()) {
        object.insert("id".to_string(), Value::String(id));
    }
    frame
}
