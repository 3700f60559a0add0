//! Coffee House: a sample Plaza mini-app server, small enough to read in one sitting.
//!
//! The main design choice is **the app's server decides, never its page**: the page
//! (served at `/`, loading Plaza's SDK) only passes along what Plaza hands it. The code
//! from `Plaza.login()` is exchanged here, with the client secret and the PKCE verifier;
//! pay orders are created here, with the app's client-credentials token and an
//! `Idempotency-Key`; and an order counts as paid only when this server has received a
//! `payment.succeeded` webhook whose Standard Webhooks signature it verified
//! ([`webhook`]). `Plaza.requestPayment` resolving in the page proves nothing.
//!
//! It keeps everything in memory ([`memory`]), bounded, because it is a sample: a
//! restart signs everyone out and forgets the orders. `plaza demo --serve` runs it
//! in-process through [`serve`]; the `plaza-coffee` binary runs it alone.
//!
//! Routes: `GET /` and `GET /menu` (the page), `GET /callback` (a page for browsers that
//! land on the redirect URI outside Plaza), `GET /api/menu`, `POST /api/session`
//! (`{code, code_verifier, redirect_uri}` → a session token), `POST /api/orders`
//! (`{item}`), `GET /api/orders/{out_trade_no}`, and `POST /webhooks/plaza`.

pub mod memory;
pub mod plaza;
pub mod webhook;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use memory::Bounded;
use plaza::{NewPayOrder, Plaza, PlazaError, UserInfo};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use webhook::WebhookSecret;

/// Where Plaza sends the user back after consent: registered as the app's redirect URI.
pub const CALLBACK_PATH: &str = "/callback";
/// Where Plaza delivers webhooks: registered as the app's `webhook_url`.
pub const WEBHOOK_PATH: &str = "/webhooks/plaza";
/// The scopes the app asks for: who the user is, their name and photo, and payments.
pub const SCOPES: &[&str] = &["openid", "profile", "payments"];

/// Requests and webhooks here are a few hundred bytes; this bounds what a caller can
/// make the server read.
const BODY_BYTES_MAX: usize = 16 * 1024;
/// A request (including the Plaza calls it makes, 10 s each, at most three) is answered
/// within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);
/// Sessions kept at once; a new sign-in beyond this signs the oldest session out.
const SESSIONS_MAX: usize = 10_000;
/// How long a session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Orders kept at once; beyond this the oldest is forgotten (its webhook is then
/// answered 2xx and only logged).
const ORDERS_MAX: usize = 10_000;
/// Webhook ids remembered for deduplication. Plaza retries a delivery for up to three
/// days; an id forgotten earlier is processed again, which is harmless, because applying
/// an event twice changes nothing (see [`apply_event`]).
const WEBHOOK_IDS_MAX: usize = 50_000;
/// The longest text field a client may send (codes, verifiers, URIs).
const FIELD_CHARS_MAX: usize = 2048;
/// The currency of the menu.
const CURRENCY: &str = "USD";

/// One drink: id, name, price in cents.
struct MenuItem {
    id: &'static str,
    name: &'static str,
    amount: i64,
}

const MENU: &[MenuItem] = &[
    MenuItem { id: "flat-white", name: "Flat white", amount: 350 },
    MenuItem { id: "latte", name: "Latte", amount: 400 },
    MenuItem { id: "espresso", name: "Espresso", amount: 300 },
];

/// How the server is reached and who it is to Plaza.
#[derive(Clone)]
pub struct Config {
    /// Plaza's public URL (its OpenID Connect issuer), e.g. `http://127.0.0.1:8080`.
    pub plaza_url: String,
    /// Where users reach this server (the app's `home_url`, without a trailing slash);
    /// `None` means `http://` and the address actually bound.
    pub public_url: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// The app's `whsec_…` secret, as Plaza showed it at registration.
    pub webhook_secret: String,
    pub listen: SocketAddr,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets stay out of every log line.
        formatter
            .debug_struct("Config")
            .field("plaza_url", &self.plaza_url)
            .field("public_url", &self.public_url)
            .field("client_id", &self.client_id)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the webhook secret: {0}")]
    WebhookSecret(#[from] webhook::SecretError),
    #[error("{0}")]
    Plaza(#[from] PlazaError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("{field} must be an http:// or https:// URL, not {value:?}")]
    Url { field: &'static str, value: String },
}

/// A running coffee server: where it listens and how to stop it.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// Where users reach it (the app's `home_url`).
    pub public_url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, and returns when it has stopped.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Binds `config.listen` and serves until [`Running::shutdown`] (or the runtime ends).
pub async fn serve(config: Config) -> Result<Running, StartError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen { addr: config.listen, source })?;
    serve_on(listener, config).await
}

/// Serves on a listener already bound (`config.listen` is then ignored): for a caller
/// that must know the address before it has the credentials, as `plaza demo --serve`
/// does, since it registers the app at the address bound.
pub async fn serve_on(listener: tokio::net::TcpListener, config: Config) -> Result<Running, StartError> {
    let addr = listener.local_addr().map_err(|source| StartError::Listen { addr: config.listen, source })?;
    let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let app = Arc::new(App::new(&config, public_url.trim_end_matches('/'))?);
    let router = router(app.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
            tracing::error!(%error, "the coffee server stopped");
        }
    });
    tracing::info!(%addr, public_url = %app.public_url, "Coffee House is listening");
    Ok(Running { addr, public_url: app.public_url.clone(), stop, task })
}

/// The app's shared state.
pub struct App {
    plaza: Plaza,
    plaza_url: String,
    public_url: String,
    webhook_secret: WebhookSecret,
    sessions: Mutex<Bounded<Session>>,
    orders: Mutex<Bounded<Order>>,
    webhook_ids: Mutex<Bounded<()>>,
}

impl App {
    pub fn new(config: &Config, public_url: &str) -> Result<Self, StartError> {
        for (field, value) in [("the Plaza URL", &config.plaza_url), ("the public URL", &public_url.to_string())] {
            if !(value.starts_with("http://") || value.starts_with("https://")) || value.contains(char::is_whitespace) {
                return Err(StartError::Url { field, value: value.clone() });
            }
        }
        Ok(Self {
            plaza: Plaza::new(&config.plaza_url, &config.client_id, &config.client_secret)?,
            plaza_url: config.plaza_url.trim_end_matches('/').to_string(),
            public_url: public_url.to_string(),
            webhook_secret: WebhookSecret::parse(&config.webhook_secret)?,
            sessions: Mutex::new(Bounded::new(SESSIONS_MAX)),
            orders: Mutex::new(Bounded::new(ORDERS_MAX)),
            webhook_ids: Mutex::new(Bounded::new(WEBHOOK_IDS_MAX)),
        })
    }
}

#[derive(Debug, Clone)]
struct Session {
    user: UserInfo,
    expires_at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum OrderStatus {
    /// Created; Plaza has not told this server of a payment.
    AwaitingPayment,
    /// A verified `payment.succeeded` arrived.
    Paid,
}

#[derive(Debug, Clone)]
struct Order {
    out_trade_no: String,
    user_sub: String,
    item: &'static str,
    amount: i64,
    /// Plaza's pay order id, once Plaza answered.
    pay_order_id: Option<String>,
    status: OrderStatus,
    refunded: i64,
    refund_ids: Vec<String>,
}

/// Refunds one order may record; Plaza refunds at most the amount, so a handful at most.
const REFUNDS_PER_ORDER_MAX: usize = 100;

/// The app's routes, without a socket (tests drive it with `oneshot`).
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/menu", get(page))
        .route(CALLBACK_PATH, get(callback_page))
        .route("/api/menu", get(menu))
        .route("/api/session", post(sign_in))
        .route("/api/orders", post(create_order))
        .route("/api/orders/{out_trade_no}", get(order))
        .route(WEBHOOK_PATH, post(receive_webhook))
        .layer(axum::middleware::from_fn(cross_origin))
        .layer(axum::middleware::from_fn(time_limit))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(app)
}

/// What a client of the app's own API is told when something fails.
#[derive(Debug, thiserror::Error)]
enum CoffeeError {
    #[error("sign in first")]
    NotSignedIn,
    #[error("there is no such drink")]
    UnknownItem,
    #[error("there is no such order")]
    UnknownOrder,
    #[error("{0}")]
    BadRequest(String),
    #[error("Plaza refused: {0}")]
    Plaza(#[from] PlazaError),
    #[error("internal: {0}")]
    Internal(String),
}

impl IntoResponse for CoffeeError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            CoffeeError::NotSignedIn => (StatusCode::UNAUTHORIZED, "not_signed_in"),
            CoffeeError::UnknownItem => (StatusCode::NOT_FOUND, "unknown_item"),
            CoffeeError::UnknownOrder => (StatusCode::NOT_FOUND, "unknown_order"),
            CoffeeError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            // A refused code exchange means the sign-in must start again; the page says so.
            CoffeeError::Plaza(PlazaError::Refused { .. }) => (StatusCode::BAD_GATEWAY, "plaza_refused"),
            CoffeeError::Plaza(PlazaError::Unreachable(_)) => (StatusCode::BAD_GATEWAY, "plaza_unreachable"),
            CoffeeError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = match &self {
            CoffeeError::Internal(_) | CoffeeError::Plaza(PlazaError::Unreachable(_)) => {
                tracing::error!(error = %self, "a request failed");
                "something went wrong; try again".to_string()
            }
            other => other.to_string(),
        };
        (status, Json(serde_json::json!({ "code": code, "message": message }))).into_response()
    }
}

fn locked<T>(mutex: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, CoffeeError> {
    mutex.lock().map_err(|_| CoffeeError::Internal("a lock was poisoned".into()))
}

/// The page may run in a sandboxed iframe without `allow-same-origin`, whose origin is
/// opaque (`null`), so its calls to this server are cross-origin. Any origin may call the
/// API because nothing here rides on ambient credentials: the session is a bearer token
/// the page holds in memory, never a cookie, so a foreign page can do nothing with it.
async fn cross_origin(request: Request, next: Next) -> Response {
    let is_api = request.uri().path().starts_with("/api/");
    if is_api && request.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        return response;
    }
    let mut response = next.run(request).await;
    if is_api {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the request took too long").into_response(),
    }
}

/// The page, with a fresh nonce for its inline script and style and a policy that lets
/// scripts come only from it and from Plaza (the SDK), and lets only Plaza frame it.
async fn page(State(app): State<Arc<App>>) -> Response {
    let nonce = base64::engine::general_purpose::STANDARD.encode(random_bytes::<16>());
    let plaza_origin = origin(&app.plaza_url);
    let own_origin = origin(&app.public_url);
    let html = PAGE.replace("{{NONCE}}", &nonce).replace("{{PLAZA_URL}}", &html_attribute(&app.plaza_url));
    let policy = format!(
        "default-src 'none'; script-src 'nonce-{nonce}' {plaza_origin}; style-src 'nonce-{nonce}'; \
         connect-src {own_origin}; img-src {plaza_origin} https: data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors {plaza_origin}"
    );
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

async fn callback_page() -> Html<&'static str> {
    Html(
        "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>\
         <title>Coffee House</title><p>Coffee House runs inside Plaza: open it from Plaza's mini-app directory.</p>",
    )
}

const PAGE: &str = include_str!("page.html");

/// `scheme://host[:port]` of a URL (what CSP source lists and `postMessage` compare).
fn origin(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    let end = url[after_scheme..].find(['/', '?', '#']).map_or(url.len(), |at| after_scheme + at);
    url[..end].to_string()
}

/// Escapes text for a double-quoted HTML attribute.
fn html_attribute(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

#[derive(Serialize)]
struct MenuView {
    id: &'static str,
    name: &'static str,
    amount: i64,
    currency: &'static str,
}

async fn menu() -> Json<Vec<MenuView>> {
    Json(
        MENU.iter()
            .map(|item| MenuView { id: item.id, name: item.name, amount: item.amount, currency: CURRENCY })
            .collect(),
    )
}

/// What the page sends after `Plaza.login()` resolved.
#[derive(Deserialize)]
struct SignIn {
    code: String,
    code_verifier: String,
    redirect_uri: String,
}

#[derive(Serialize)]
struct SignedIn {
    session: String,
    name: String,
    picture: Option<String>,
}

async fn sign_in(State(app): State<Arc<App>>, Json(sign_in): Json<SignIn>) -> Result<Json<SignedIn>, CoffeeError> {
    for (field, value) in
        [("code", &sign_in.code), ("code_verifier", &sign_in.code_verifier), ("redirect_uri", &sign_in.redirect_uri)]
    {
        if value.is_empty() || value.chars().count() > FIELD_CHARS_MAX {
            return Err(CoffeeError::BadRequest(format!("{field} must be 1 to {FIELD_CHARS_MAX} characters")));
        }
    }
    // The redirect URI names where Plaza sends codes for this app; ours are on this
    // server. Plaza itself checks that it is the one the code was issued for.
    if !sign_in.redirect_uri.starts_with(&format!("{}/", app.public_url)) {
        return Err(CoffeeError::BadRequest("redirect_uri is not one of this app's".into()));
    }
    let tokens = app.plaza.exchange_code(&sign_in.code, &sign_in.code_verifier, &sign_in.redirect_uri).await?;
    // The tokens came straight from Plaza's token endpoint over this server's own
    // connection, so userinfo (read with them) is who signed in; an app that takes
    // id_tokens from elsewhere must check their signature against the JWKS instead.
    let user = app.plaza.userinfo(&tokens.access_token).await?;
    let session = hex(&random_bytes::<32>());
    let name = user.name.clone().unwrap_or_else(|| "Plaza user".to_string());
    let picture = user.picture.clone();
    locked(&app.sessions)?.insert(session.clone(), Session { user, expires_at: Instant::now() + SESSION_TTL });
    Ok(Json(SignedIn { session, name, picture }))
}

/// The signed-in user of a request (`Authorization: Bearer <session>`).
fn signed_in(app: &App, headers: &HeaderMap) -> Result<UserInfo, CoffeeError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(CoffeeError::NotSignedIn)?;
    let sessions = locked(&app.sessions)?;
    match sessions.get(token) {
        Some(session) if session.expires_at > Instant::now() => Ok(session.user.clone()),
        _ => Err(CoffeeError::NotSignedIn),
    }
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
}

#[derive(Serialize)]
struct OrderView {
    out_trade_no: String,
    /// Plaza's pay order id: what the page hands to `Plaza.requestPayment`.
    order_id: Option<String>,
    item: &'static str,
    amount: i64,
    currency: &'static str,
    status: OrderStatus,
    refunded: i64,
}

impl From<&Order> for OrderView {
    fn from(order: &Order) -> Self {
        Self {
            out_trade_no: order.out_trade_no.clone(),
            order_id: order.pay_order_id.clone(),
            item: order.item,
            amount: order.amount,
            currency: CURRENCY,
            status: order.status,
            refunded: order.refunded,
        }
    }
}

async fn create_order(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(new_order): Json<NewOrder>,
) -> Result<(StatusCode, Json<OrderView>), CoffeeError> {
    let user = signed_in(&app, &headers)?;
    let item = MENU.iter().find(|item| item.id == new_order.item).ok_or(CoffeeError::UnknownItem)?;
    let out_trade_no = format!("cof_{}", hex(&random_bytes::<12>()));
    // Recorded before Plaza is asked, so a webhook can never find the order missing.
    let order = Order {
        out_trade_no: out_trade_no.clone(),
        user_sub: user.sub.clone(),
        item: item.name,
        amount: item.amount,
        pay_order_id: None,
        status: OrderStatus::AwaitingPayment,
        refunded: 0,
        refund_ids: Vec::new(),
    };
    locked(&app.orders)?.insert(out_trade_no.clone(), order);
    let request = NewPayOrder {
        out_trade_no: &out_trade_no,
        user_sub: &user.sub,
        amount: item.amount,
        currency: CURRENCY,
        description: item.name,
    };
    // Our order number is the idempotency key: one order here is one pay order there.
    let pay_order = app.plaza.create_pay_order(&request, &out_trade_no).await?;
    if pay_order.out_trade_no != out_trade_no || pay_order.amount != item.amount || pay_order.currency != CURRENCY {
        return Err(CoffeeError::Internal(format!("Plaza's pay order {} is not the one asked for", pay_order.id)));
    }
    tracing::info!(%out_trade_no, pay_order = %pay_order.id, status = %pay_order.status, "pay order created");
    let mut orders = locked(&app.orders)?;
    let order = orders.get_mut(&out_trade_no).ok_or(CoffeeError::UnknownOrder)?;
    order.pay_order_id = Some(pay_order.id);
    Ok((StatusCode::CREATED, Json(OrderView::from(&*order))))
}

/// An order as its buyer's page polls it: `paid` only after the verified webhook.
async fn order(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(out_trade_no): Path<String>,
) -> Result<Json<OrderView>, CoffeeError> {
    let user = signed_in(&app, &headers)?;
    let orders = locked(&app.orders)?;
    match orders.get(&out_trade_no) {
        // Someone else's order is answered like one that does not exist.
        Some(order) if order.user_sub == user.sub => Ok(Json(OrderView::from(order))),
        _ => Err(CoffeeError::UnknownOrder),
    }
}

/// A webhook's body as Plaza sends it.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    order_id: String,
    out_trade_no: String,
    amount: i64,
    currency: String,
    #[serde(default)]
    refund_id: Option<String>,
}

/// Verifies, deduplicates, applies, then answers 2xx; a refused signature is 401 (and
/// Plaza retries, which is right if the secret was just rotated here).
async fn receive_webhook(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let header_text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let delivery = webhook::Headers {
        id: header_text("webhook-id"),
        timestamp: header_text("webhook-timestamp"),
        signature: header_text("webhook-signature"),
    };
    let id = match webhook::verify(&app.webhook_secret, delivery, &body, unix_now()) {
        Ok(id) => id.to_string(),
        Err(refused) => {
            tracing::warn!(%refused, "a webhook was refused");
            return (StatusCode::UNAUTHORIZED, refused.to_string()).into_response();
        }
    };
    match locked(&app.webhook_ids) {
        Ok(seen) if seen.contains(&id) => return StatusCode::NO_CONTENT.into_response(),
        Ok(_) => {}
        Err(error) => return error.into_response(),
    }
    let event: Event = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(error) => {
            // Signed by Plaza yet not an event we understand: a 4xx makes Plaza retry,
            // and the log says why, so the developer can fix this receiver.
            tracing::error!(%error, webhook_id = %id, "a verified webhook has an unexpected body");
            return (StatusCode::BAD_REQUEST, "unexpected body").into_response();
        }
    };
    let applied = locked(&app.orders).map(|mut orders| apply_event(&mut orders, &event));
    if let Err(error) = applied {
        return error.into_response();
    }
    if let Ok(mut seen) = locked(&app.webhook_ids) {
        seen.insert(id, ());
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Records what a verified event says. Idempotent: a payment marks the order paid
/// (again), a refund counts once per refund id.
fn apply_event(orders: &mut Bounded<Order>, event: &Event) {
    let data = &event.data;
    let Some(order) = orders.get_mut(&data.out_trade_no) else {
        tracing::warn!(out_trade_no = %data.out_trade_no, kind = %event.kind, "a webhook for an order this server forgot");
        return;
    };
    // The event must be about the pay order this server created for it.
    if order.pay_order_id.as_deref().is_some_and(|id| id != data.order_id) || data.currency != CURRENCY {
        tracing::error!(out_trade_no = %data.out_trade_no, order_id = %data.order_id, "a webhook for another pay order");
        return;
    }
    match event.kind.as_str() {
        "payment.succeeded" if data.amount == order.amount => {
            order.pay_order_id.get_or_insert_with(|| data.order_id.clone());
            order.status = OrderStatus::Paid;
            tracing::info!(out_trade_no = %order.out_trade_no, amount = data.amount, "paid (verified webhook)");
        }
        "refund.succeeded" => {
            let Some(refund_id) = &data.refund_id else { return };
            if !order.refund_ids.contains(refund_id) && order.refund_ids.len() < REFUNDS_PER_ORDER_MAX {
                order.refund_ids.push(refund_id.clone());
                order.refunded += data.amount;
            }
        }
        other => tracing::info!(kind = other, "a webhook this app does not act on"),
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests;
