//! Router assembly: every service's routes under `/api/v1`, the operations endpoints,
//! the OpenAPI document and the middleware every request passes through.

use crate::config::Config;
use crate::gateway::GatewayConfig;
use crate::{docs, ops};
use axum::extract::{FromRef, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use plaza_accounts::{Accounts, AccountsConfig};
use plaza_bus::Bus;
use plaza_chat::{Chat, ChatConfig};
use plaza_events::Events;
use plaza_http::{ErrorCode, Problem};
use plaza_miniapps::MiniApps;
use plaza_rides::Rides;
use plaza_shop::ShopHandle;
use plaza_store::Store;
use plaza_video::VideoHandle;
use plaza_wallet::{Wallet, WalletConfig};
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// How long one request may take before it is abandoned with a 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a running node holds: its services and the gateway's own state.
#[derive(Debug, Clone)]
pub struct AppState {
    pub services: Services,
    pub gateway: GatewayConfig,
    pub sockets: crate::gateway::UserSockets,
    pub openapi_json: Arc<String>,
}

impl FromRef<AppState> for Accounts {
    fn from_ref(state: &AppState) -> Accounts {
        state.services.accounts.clone()
    }
}

/// The services of one node.
#[derive(Debug, Clone)]
pub struct Services {
    pub store: Store,
    pub accounts: Accounts,
    pub events: Events,
    pub chat: Chat,
    pub wallet: Wallet,
    pub rides: Rides,
    /// Uploads; chat shares them, and every node cleans up the unreferenced ones.
    pub media: plaza_media::Media,
    pub shop: ShopHandle,
    pub miniapps: MiniApps,
    pub video: VideoHandle,
    /// Live rooms; every node serves their playback, and ingests when it listens for RTMP.
    pub live: plaza_live::LiveHandle,
}

/// Every service's migrations, in dependency order.
pub fn migrations() -> Vec<plaza_store::Migration> {
    [
        plaza_accounts::MIGRATIONS,
        plaza_events::MIGRATIONS,
        plaza_media::MIGRATIONS,
        plaza_chat::MIGRATIONS,
        plaza_wallet::MIGRATIONS,
        plaza_rides::MIGRATIONS,
        plaza_shop::MIGRATIONS,
        plaza_miniapps::MIGRATIONS,
        plaza_video::MIGRATIONS,
        plaza_live::MIGRATIONS,
    ]
    .concat()
}

/// Connects to the database and applies pending migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    if config.database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir).map_err(|error| {
            anyhow::anyhow!("cannot create the data directory {}: {error}", config.data_dir.display())
        })?;
    }
    let store = Store::connect_with(&config.database_url, config.db_pool_max, config.sqlite_sync).await?;
    store.migrate(&migrations()).await?;
    Ok(store)
}

/// The accounts service alone, for command-line administration.
pub fn accounts_only(store: Store) -> anyhow::Result<Accounts> {
    let events = Events::new(store.clone(), Bus::in_process());
    let media = plaza_media::Media::in_memory(store.clone());
    Ok(Accounts::new(store, events, media, AccountsConfig::default())?)
}

/// Grants (or revokes) the admin role of `username`; the sentence to print, or why not.
/// Running servers see the change within `PLAZA_SESSION_CACHE_SECONDS`.
pub async fn set_admin(accounts: &Accounts, username: &str, granting: bool) -> Result<String, String> {
    let outcome = if granting {
        accounts.grant_role(username, plaza_accounts::Role::Admin).await
    } else {
        accounts.revoke_role(username, plaza_accounts::Role::Admin).await
    };
    match (outcome, granting) {
        (Ok(true), true) => Ok(format!("{username} is now an admin")),
        (Ok(false), true) => Ok(format!("{username} was already an admin")),
        (Ok(true), false) => Ok(format!("{username} is no longer an admin")),
        (Ok(false), false) => Ok(format!("{username} was not an admin")),
        (Err(plaza_accounts::AccountsError::UserNotFound), _) => Err(format!("no account is named {username}")),
        (Err(error), _) => Err(format!("cannot change {username}'s role: {error}")),
    }
}

/// The services over an open store and this node's bus.
pub fn services(store: Store, bus: Bus, config: &Config) -> anyhow::Result<Services> {
    let events = Events::new(store.clone(), bus);
    let media = plaza_media::Media::open(store.clone(), &config.data_dir, config.media_url.as_deref())
        .map_err(|error| anyhow::anyhow!("PLAZA_MEDIA_URL: {error}"))?
        .with_limits(config.media);
    let accounts = Accounts::new(
        store.clone(),
        events.clone(),
        media.clone(),
        AccountsConfig {
            auth_attempts_per_address_per_minute: config.auth_attempts_per_address,
            auth_attempts_per_username_per_minute: config.auth_attempts_per_username,
            auth_failures_per_username: config.auth_failures_per_username,
            session_cache_ttl: config.session_cache,
            hash_queue_max: config.password_hash_queue_max,
        },
    )?;
    let chat = Chat::new(
        store.clone(),
        events.clone(),
        accounts.clone(),
        media.clone(),
        ChatConfig {
            group_members_max: config.group_members_max,
            send_batch_max: config.chat_send_batch_max,
            group_creations_per_hour: config.group_creations_per_hour,
        },
    );
    let wallet = Wallet::new(
        store.clone(),
        events.clone(),
        accounts.clone(),
        chat.clone(),
        WalletConfig {
            currencies: config.currencies.clone(),
            topup_daily_limit_major: config.topup_daily_limit,
            red_packet_refund_after: config.red_packet_refund_after,
            job_interval: config.wallet_job_interval,
            pin_changes_per_hour: config.pin_changes_per_hour,
            ..WalletConfig::default()
        },
    );
    let rides =
        Rides::new(store.clone(), events.clone(), accounts.clone(), wallet.clone(), chat.clone(), config.rides.clone());
    let shop = ShopHandle::new(
        store.clone(),
        events.clone(),
        accounts.clone(),
        media.clone(),
        wallet.clone(),
        chat.clone(),
        config.shop.clone(),
    );
    // `serve` fills the public URL in from the listener when it is unset; the fallback
    // here is for in-process users of the services (benchmarks), which serve no OAuth.
    let issuer = config.public_url.clone().unwrap_or_else(|| format!("http://{}", config.addr));
    let miniapps = MiniApps::new(
        store.clone(),
        events.clone(),
        accounts.clone(),
        wallet.clone(),
        chat.clone(),
        plaza_miniapps::MiniAppsConfig { issuer, payments: config.miniapps.clone() },
    );
    // Videos share the media crate's object store (under keys of their own), so a node
    // serves every video whichever node stored it.
    let video = VideoHandle::new(
        store.clone(),
        events.clone(),
        accounts.clone(),
        chat.clone(),
        shop.clone(),
        media.object_store(),
        config.video.clone(),
    );
    // Live rooms keep their segments and playlists in the same object store, so any node
    // serves playback of a room ingested on any node.
    let live = plaza_live::LiveHandle::new(
        store.clone(),
        accounts.clone(),
        shop.clone(),
        media.clone(),
        events.bus().clone(),
        config.live.clone(),
    );
    // Cards clients may post, each rendered by the service that owns its type.
    chat.register_card_source("ride", Arc::new(plaza_rides::RideCards(rides.clone())));
    chat.register_card_source("product", Arc::new(plaza_shop::ProductCards(shop.clone())));
    chat.register_card_source("group_buy", Arc::new(plaza_shop::GroupBuyCards(shop.clone())));
    chat.register_card_source("video", Arc::new(plaza_video::VideoCards(video.clone())));
    Ok(Services { store, accounts, events, chat, wallet, rides, shop, miniapps, media, video, live })
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Plaza API", description = "The public HTTP API of Plaza, the self-hostable super app. Errors are RFC 9457 problem documents with a stable `code`."),
    tags(
        (name = "accounts", description = "Users, sessions and contacts"),
        (name = "chat", description = "Conversations, messages and read receipts"),
        (name = "wallet", description = "Balances, top-ups, transfers, red packets, the payment PIN and the ledger check"),
        (name = "rides", description = "Drivers, quotes, ride requests, offers and trips"),
        (name = "shop", description = "Shops, products, catalogue search and orders paid into escrow"),
        (name = "video", description = "Short videos: publishing tus uploads, playback, the For You and Following feeds, likes, comments and shares (the tus upload protocol itself is at /api/v1/videos/uploads, outside this document)"),
        (name = "live", description = "Live rooms: creating one with the host's products, the stream key for RTMP ingest, live now and replays (HLS playback is at /live/{room_id}/index.m3u8 at the server's root, outside this document)"),
        (name = "miniapps", description = "Third-party apps: registration, the directory and the apps a user let in (OAuth 2.0 and OpenID Connect endpoints are described by /.well-known/openid-configuration)"),
        (name = "realtime", description = "The WebSocket gateway and its events over HTTP"),
        (name = "client", description = "Settings the web client reads from the server (maps, ride rules)"),
        (name = "operations", description = "Health and metrics")),
    components(schemas(plaza_http::ProblemSchema))
)]
struct ApiDoc;

/// The whole HTTP application.
/// `metrics` is `None` when /metrics is served on its own listener (`PLAZA_METRICS_ADDR`).
pub fn router(
    services: Services,
    gateway: GatewayConfig,
    client: crate::client::ClientConfig,
    metrics: Option<ops::MetricsAccess>,
) -> Router {
    let security = crate::web::SecurityHeaders::new(client.map.tile_url.as_deref());
    // The gateway's routes are part of the document, so its state is built first with a
    // placeholder document and completed below.
    let mut state = AppState { services, gateway, sockets: Default::default(), openapi_json: Arc::new(String::new()) };
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", plaza_accounts::router(state.services.accounts.clone()))
        .nest("/api/v1", plaza_chat::router(state.services.chat.clone()))
        .nest("/api/v1", plaza_wallet::router(state.services.wallet.clone()))
        .nest("/api/v1", plaza_rides::router(state.services.rides.clone()))
        .nest("/api/v1", plaza_shop::router(state.services.shop.clone()))
        .nest("/api/v1", plaza_miniapps::router(state.services.miniapps.clone()))
        .nest("/api/v1", plaza_miniapps::share_router(state.services.miniapps.clone()))
        .nest("/api/v1", plaza_video::router(state.services.video.clone()))
        .nest("/api/v1", plaza_live::router(state.services.live.clone()))
        .nest("/api/v1", crate::client::router(client))
        .merge(crate::gateway::router(state.clone()))
        .merge(ops::router(state.services.store.clone(), metrics))
        .split_for_parts();
    state.openapi_json = Arc::new(docs::finish_openapi(openapi));

    api.merge(docs::router(state.clone()))
        // OpenID Connect discovery lives at the root, beside the issuer, not under /api/v1.
        .merge(plaza_miniapps::discovery_router(state.services.miniapps.clone()))
        // Live playback (HLS) lives at the root: `/live/{room_id}/index.m3u8`.
        .merge(plaza_live::playback_router(state.services.live.clone()))
        // The browser camera's ingest socket (a stream key, not a session, opens it).
        .merge(plaza_live::ingest_router(state.services.live.clone()))
        // The mini-app SDK, a static script apps load from any origin.
        .merge(plaza_miniapps::sdk_router())
        // Paths under `/api/` that no route claims stay problem+json 404s; anything else
        // is the embedded web client.
        .fallback(move |request: Request| crate::web::fallback(security.clone(), request))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        // The largest body any route takes (an image upload); JSON routes hold their
        // bodies to 1 MiB in `ApiJson`.
        .layer(RequestBodyLimitLayer::new(plaza_media::UPLOAD_MAX_BYTES + 64 * 1024))
        // A tus PATCH streams up to an upload's declared length for as long as bytes keep
        // coming, so its routes join below the time-out and the body limit (`tus.rs`).
        .merge(plaza_video::tus_router(state.services.video.clone()))
        .layer(middleware::from_fn(problem_for_bare_errors))
        .layer(middleware::from_fn(refuse_nul_in_url))
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let request_id = request
                        .headers()
                        .get(plaza_http::request_id::HEADER)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
                })
                .on_request(())
                .on_response(|response: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::debug!(
                        status = response.status().as_u16(),
                        latency_ms = latency.as_millis() as u64,
                        "response"
                    );
                })
                .on_failure(()),
        )
        .layer(middleware::from_fn(plaza_http::request_id::assign))
}

/// PostgreSQL cannot store U+0000 in text and no id or parameter has a use for it, so a
/// percent-encoded NUL is refused before it reaches a handler: in the path nothing can be
/// found by it (404), in the query it is an invalid parameter (422).
async fn refuse_nul_in_url(request: Request, next: Next) -> Response {
    let has_nul = |text: &str| text.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0');
    if has_nul(request.uri().path()) {
        return Problem::new(ErrorCode::NotFound, "no such resource").into_response();
    }
    if request.uri().query().is_some_and(has_nul) {
        return Problem::invalid_field("", "query parameters cannot contain the NUL character").into_response();
    }
    next.run(request).await
}

/// Errors produced below the handlers (no route for a method, a body over the limit,
/// a time-out, a path that does not parse) come out of axum and tower as bare statuses.
/// This turns each into the problem document the API promises.
async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // A problem, or a deliberate JSON error (OAuth's RFC 6749 §5.2 answers of
    // /oauth/token and /oauth/revoke), is kept; axum's own rejections are plain text.
    let is_problem = response.headers().get(header::CONTENT_TYPE).is_some_and(|value| {
        value == HeaderValue::from_static("application/problem+json")
            || value == HeaderValue::from_static("application/json")
    });
    if is_problem {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let problem = match status {
        StatusCode::NOT_FOUND => Problem::new(ErrorCode::NotFound, "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            Problem::new(ErrorCode::MethodNotAllowed, "this route does not accept that method")
        }
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(ErrorCode::PayloadTooLarge, "the request body is too large"),
        StatusCode::REQUEST_TIMEOUT => Problem::new(ErrorCode::Timeout, "the request took too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Problem::new(ErrorCode::UnsupportedMediaType, "unsupported content type"),
        status if status.is_server_error() => Problem::internal(&format!("bare {status} from the stack")),
        _ => Problem::new(ErrorCode::BadRequest, "the request could not be understood"),
    };
    let mut response = problem.into_response();
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}
