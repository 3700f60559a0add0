//! Configuration: flags, which mirror environment variables (`--addr` / `PLAZA_ADDR`),
//! over an optional `plaza.toml`, over defaults. Every value is checked here, before
//! anything starts, and a bad one stops start-up with one line naming the setting.

use clap::Args;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The settings as given on the command line or in the environment (all optional).
#[derive(Debug, Clone, Default, Args)]
pub struct SettingsArgs {
    /// Path of a TOML file with any of these settings (default: ./plaza.toml if present).
    #[arg(long, env = "PLAZA_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "PLAZA_ADDR", global = true, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Directory for the embedded database and local media [default: ./plaza-data].
    #[arg(long, env = "PLAZA_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// sqlite://FILE or postgres://USER:PASSWORD@HOST/DB [default: SQLite in the data dir].
    #[arg(long, env = "PLAZA_DATABASE_URL", global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Comma-separated usernames that hold the admin role.
    #[arg(long, env = "PLAZA_ADMINS", global = true, value_name = "USERS")]
    pub admins: Option<String>,
    /// Log filter, e.g. `info` or `info,plaza_server=debug` [default: info].
    #[arg(long, env = "PLAZA_LOG", global = true, value_name = "FILTER")]
    pub log: Option<String>,
    /// `text` or `json` [default: text].
    #[arg(long, env = "PLAZA_LOG_FORMAT", global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// SQLite durability: `full` waits for the disk at every commit (survives power
    /// loss); `normal` only at checkpoints (survives a crash of Plaza, not of the
    /// machine) [default: full].
    #[arg(long, env = "PLAZA_SQLITE_SYNC", global = true, value_name = "full|normal")]
    pub sqlite_sync: Option<String>,
    /// Most database connections per pool [default: 16].
    #[arg(long, env = "PLAZA_DB_POOL_MAX", global = true, value_name = "N")]
    pub db_pool_max: Option<String>,
    /// Login/register attempts per client address per minute [default: 30].
    #[arg(long, env = "PLAZA_AUTH_ATTEMPTS_PER_ADDRESS", global = true, value_name = "N")]
    pub auth_attempts_per_address: Option<String>,
    /// Login/register attempts per username per minute [default: 10].
    #[arg(long, env = "PLAZA_AUTH_ATTEMPTS_PER_USERNAME", global = true, value_name = "N")]
    pub auth_attempts_per_username: Option<String>,
    /// Failed logins per username (from any address) in 15 minutes before each further attempt on it is slowed, by 50 ms per failure up to 5 s [default: 100].
    #[arg(long, env = "PLAZA_AUTH_FAILURES_PER_USERNAME", global = true, value_name = "N")]
    pub auth_failures_per_username: Option<String>,
    /// Password and PIN hashes that may wait for a hashing thread, per queue (sign-in, other); past it 429 [default: 64].
    #[arg(long, env = "PLAZA_PASSWORD_HASH_QUEUE_MAX", global = true, value_name = "N")]
    pub password_hash_queue_max: Option<String>,
    /// Groups one user may create per hour [default: 30].
    #[arg(long, env = "PLAZA_GROUP_CREATIONS_PER_HOUR", global = true, value_name = "N")]
    pub group_creations_per_hour: Option<String>,
    /// Seconds an authenticated session may be served from memory; 0 turns it off [default: 10].
    #[arg(long, env = "PLAZA_SESSION_CACHE_SECONDS", global = true, value_name = "SECONDS")]
    pub session_cache_seconds: Option<String>,
    /// Where uploaded media go: s3://bucket[/prefix] (credentials from AWS_* variables)
    /// [default: files under the data dir].
    #[arg(long, env = "PLAZA_MEDIA_URL", global = true, value_name = "URL")]
    pub media_url: Option<String>,
    /// The URL clients reach this deployment at (https://plaza.example), the OpenID
    /// Connect issuer [default: the listening address as http://…].
    #[arg(long, env = "PLAZA_PUBLIC_URL", global = true, value_name = "URL")]
    pub public_url: Option<String>,
    /// nats://host:port of the NATS server that connects the nodes of a cluster
    /// [default: none — a single node with an in-process bus].
    #[arg(long, env = "PLAZA_NATS_URL", global = true, value_name = "URL")]
    pub nats_url: Option<String>,
    /// The loopback address `plaza demo --serve` runs the Coffee House sample mini-app on
    /// [default: 127.0.0.1 and PLAZA_ADDR's port + 1].
    #[arg(long, env = "PLAZA_DEMO_COFFEE_ADDR", global = true, value_name = "HOST:PORT")]
    pub demo_coffee_addr: Option<String>,
    /// The most members a group conversation may have [default: 500].
    #[arg(long, env = "PLAZA_GROUP_MEMBERS_MAX", global = true, value_name = "N")]
    pub group_members_max: Option<String>,
    /// The most chat sends stored in one transaction (group commit); 1 stores each send
    /// in its own [default: 64].
    #[arg(long, env = "PLAZA_CHAT_SEND_BATCH_MAX", global = true, value_name = "N")]
    pub chat_send_batch_max: Option<String>,
    /// Days the per-user event log keeps events; a client whose cursor is older is told to
    /// reload its state [default: 30].
    #[arg(long, env = "PLAZA_EVENT_RETENTION_DAYS", global = true, value_name = "DAYS")]
    pub event_retention_days: Option<String>,
    /// Comma-separated ISO 4217 codes of the currencies wallets hold [default: USD].
    #[arg(long, env = "PLAZA_CURRENCIES", global = true, value_name = "CODES")]
    pub currencies: Option<String>,
    /// The most a user may top up per currency per UTC day, in major units (dollars, yen)
    /// [default: 10000].
    #[arg(long, env = "PLAZA_TOPUP_DAILY_LIMIT", global = true, value_name = "AMOUNT")]
    pub topup_daily_limit: Option<String>,
    /// Seconds after which the unclaimed money of a red packet returns to its sender
    /// [default: 86400].
    #[arg(long, env = "PLAZA_RED_PACKET_REFUND_SECONDS", global = true, value_name = "SECONDS")]
    pub red_packet_refund_seconds: Option<String>,
    /// How many times one user may set or replace the payment PIN per hour; each costs
    /// one or two password hashes [default: 10].
    #[arg(long, env = "PLAZA_PIN_CHANGES_PER_HOUR", global = true, value_name = "N")]
    pub pin_changes_per_hour: Option<String>,
    /// Milliseconds between dispatch batches (open requests are assigned together) [default: 2000].
    #[arg(long, env = "PLAZA_RIDES_BATCH_MS", global = true, value_name = "MS")]
    pub rides_batch_ms: Option<String>,
    /// Milliseconds a driver has to accept an offer [default: 15000].
    #[arg(long, env = "PLAZA_RIDES_OFFER_TIMEOUT_MS", global = true, value_name = "MS")]
    pub rides_offer_timeout_ms: Option<String>,
    /// Declined or unanswered offers (and batches with no driver in reach) before a request ends as no_driver [default: 5].
    #[arg(long, env = "PLAZA_RIDES_DISPATCH_ROUNDS", global = true, value_name = "N")]
    pub rides_dispatch_rounds: Option<String>,
    /// Base fare in minor units [default: 250].
    #[arg(long, env = "PLAZA_RIDES_BASE_FARE", global = true, value_name = "MINOR")]
    pub rides_base_fare: Option<String>,
    /// Fare per km in minor units [default: 120].
    #[arg(long, env = "PLAZA_RIDES_PER_KM", global = true, value_name = "MINOR")]
    pub rides_per_km: Option<String>,
    /// Fare per minute in minor units [default: 30].
    #[arg(long, env = "PLAZA_RIDES_PER_MINUTE", global = true, value_name = "MINOR")]
    pub rides_per_minute: Option<String>,
    /// Minimum fare in minor units [default: 500].
    #[arg(long, env = "PLAZA_RIDES_MINIMUM_FARE", global = true, value_name = "MINOR")]
    pub rides_minimum_fare: Option<String>,
    /// Highest surge multiplier in percent [default: 250].
    #[arg(long, env = "PLAZA_RIDES_SURGE_CAP_PERCENT", global = true, value_name = "PERCENT")]
    pub rides_surge_cap_percent: Option<String>,
    /// The platform's share of fares and cancel fees in basis points [default: 2000].
    #[arg(long, env = "PLAZA_RIDES_PLATFORM_FEE_BPS", global = true, value_name = "BPS")]
    pub rides_platform_fee_bps: Option<String>,
    /// Charged (minor units) when a ride is cancelled after the driver arrived [default: 300].
    #[arg(long, env = "PLAZA_RIDES_CANCEL_FEE", global = true, value_name = "MINOR")]
    pub rides_cancel_fee: Option<String>,
    /// Held on top of the fare, in percent, for a route longer than quoted [default: 20].
    #[arg(long, env = "PLAZA_RIDES_HOLD_MARGIN_PERCENT", global = true, value_name = "PERCENT")]
    pub rides_hold_margin_percent: Option<String>,
    /// How far from the pickup drivers are looked for, in metres [default: 5000].
    #[arg(long, env = "PLAZA_RIDES_SEARCH_RADIUS_M", global = true, value_name = "METRES")]
    pub rides_search_radius_m: Option<String>,
    /// Milliseconds a node holds the dispatch lease without renewing it; another node takes dispatch over this long after the holder dies [default: 10000].
    #[arg(long, env = "PLAZA_RIDES_LEASE_MS", global = true, value_name = "MS")]
    pub rides_lease_ms: Option<String>,
    /// How near the pickup (to arrive and start) and the drop-off (to complete) a driver's last location must be, in metres [default: 150].
    #[arg(long, env = "PLAZA_RIDES_ARRIVE_RADIUS_M", global = true, value_name = "METRES")]
    pub rides_arrive_radius_m: Option<String>,
    /// A trip whose recorded route is shorter than this share of the straight line is captured only for what was driven and marked for review, in percent [default: 50].
    #[arg(long, env = "PLAZA_RIDES_ROUTE_PLAUSIBLE_PERCENT", global = true, value_name = "PERCENT")]
    pub rides_route_plausible_percent: Option<String>,
    /// A trip faster than this on average over the straight line is captured only for what was driven and marked for review, in km/h [default: 150].
    #[arg(long, env = "PLAZA_RIDES_TRIP_SPEED_MAX_KMH", global = true, value_name = "KMH")]
    pub rides_trip_speed_max_kmh: Option<String>,
    /// With fewer free drivers than this in reach, a quote's pickup ETA is only a coarse bucket [default: 3].
    #[arg(long, env = "PLAZA_RIDES_ETA_DRIVERS_MIN", global = true, value_name = "N")]
    pub rides_eta_drivers_min: Option<String>,
    /// The bucket, in seconds, a quote's pickup ETA is rounded up to when few drivers are near [default: 300].
    #[arg(long, env = "PLAZA_RIDES_ETA_COARSE_S", global = true, value_name = "SECONDS")]
    pub rides_eta_coarse_s: Option<String>,
    /// The platform's share of each shop order in basis points, taken when the buyer confirms receipt [default: 500].
    #[arg(long, env = "PLAZA_SHOP_PLATFORM_FEE_BPS", global = true, value_name = "BPS")]
    pub shop_platform_fee_bps: Option<String>,
    /// Days after shipping when an order its buyer has not confirmed confirms itself [default: 10].
    #[arg(long, env = "PLAZA_SHOP_AUTO_CONFIRM_DAYS", global = true, value_name = "DAYS")]
    pub shop_auto_confirm_days: Option<String>,
    /// Seconds a group buy has to fill its seats before every member's order is cancelled and its hold released [default: 86400].
    #[arg(long, env = "PLAZA_SHOP_GROUP_WINDOW_SECONDS", global = true, value_name = "SECONDS")]
    pub shop_group_window_seconds: Option<String>,
    /// The platform's share of each mini-app payment in basis points [default: 100].
    #[arg(long, env = "PLAZA_MINIAPPS_FEE_BPS", global = true, value_name = "BPS")]
    pub miniapps_fee_bps: Option<String>,
    /// Milliseconds before a failed webhook delivery is first retried; later retries double it, with jitter [default: 5000].
    #[arg(long, env = "PLAZA_WEBHOOK_RETRY_BASE_MS", global = true, value_name = "MS")]
    pub webhook_retry_base_ms: Option<String>,
    /// The largest video upload, in MiB [default: 256].
    #[arg(long, env = "PLAZA_VIDEO_UPLOAD_MAX_MB", global = true, value_name = "MIB")]
    pub video_upload_max_mb: Option<String>,
    /// The longest video accepted, in seconds; longer ones fail as too_long [default: 180].
    #[arg(long, env = "PLAZA_VIDEO_DURATION_MAX_S", global = true, value_name = "SECONDS")]
    pub video_duration_max_s: Option<String>,
    /// Videos one node transcodes at once (each an ffmpeg at low priority) [default: 1].
    #[arg(long, env = "PLAZA_VIDEO_TRANSCODE_CONCURRENCY", global = true, value_name = "N")]
    pub video_transcode_concurrency: Option<String>,
    /// Videos waiting to be transcoded, over all nodes, before publishing is refused with a 429 [default: 100].
    #[arg(long, env = "PLAZA_VIDEO_QUEUE_MAX", global = true, value_name = "N")]
    pub video_queue_max: Option<String>,
    /// A raster tile server for the web client's maps, as a URL template with {z}, {x} and
    /// {y}, e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png [default: none — the
    /// client draws the bundled street map of the demo city, which needs no internet].
    #[arg(long, env = "PLAZA_MAP_TILE_URL", global = true, value_name = "URL")]
    pub map_tile_url: Option<String>,
    /// The credit line shown on the map for the tile server's data, e.g.
    /// "© OpenStreetMap contributors" [default: none].
    #[arg(long, env = "PLAZA_MAP_TILE_ATTRIBUTION", global = true, value_name = "TEXT")]
    pub map_tile_attribution: Option<String>,
    /// The most TCP connections open at once, WebSockets included; must leave room under
    /// the descriptor limit (RLIMIT_NOFILE) for the database and files [default: the
    /// descriptor limit less that room, at most 10000].
    #[arg(long, env = "PLAZA_CONNECTIONS_MAX", global = true, value_name = "N")]
    pub connections_max: Option<String>,
    /// The most TCP connections open at once from one client address (an IPv6 /64 counts
    /// as one address); behind a reverse proxy every connection comes from the proxy, so
    /// raise it to PLAZA_CONNECTIONS_MAX there [default: 256].
    #[arg(long, env = "PLAZA_CONNECTIONS_PER_ADDRESS_MAX", global = true, value_name = "N")]
    pub connections_per_address_max: Option<String>,
    /// Seconds a client has to send a complete request head, counted from the connection's
    /// start or from the first byte of a later request [default: 10].
    #[arg(long, env = "PLAZA_HEADER_READ_TIMEOUT_SECONDS", global = true, value_name = "SECONDS")]
    pub header_read_timeout_seconds: Option<String>,
    /// Seconds a kept-alive connection may stay silent between requests [default: 60].
    #[arg(long, env = "PLAZA_IDLE_TIMEOUT_SECONDS", global = true, value_name = "SECONDS")]
    pub idle_timeout_seconds: Option<String>,
    /// Serve /metrics on this separate address (e.g. a private interface) instead of the
    /// main one [default: none — /metrics is on PLAZA_ADDR].
    #[arg(long, env = "PLAZA_METRICS_ADDR", global = true, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// A bearer token /metrics requires (`Authorization: Bearer …`) [default: none — open].
    #[arg(long, env = "PLAZA_METRICS_TOKEN", global = true, value_name = "TOKEN")]
    pub metrics_token: Option<String>,
    /// Real-time sockets one user may hold on one node at once [default: 16].
    #[arg(long, env = "PLAZA_SOCKETS_PER_USER_MAX", global = true, value_name = "N")]
    pub sockets_per_user_max: Option<String>,
    /// Images one user may upload per UTC day [default: 200].
    #[arg(long, env = "PLAZA_UPLOADS_PER_DAY", global = true, value_name = "N")]
    pub uploads_per_day: Option<String>,
    /// Mebibytes one user may upload per UTC day [default: 200].
    #[arg(long, env = "PLAZA_UPLOAD_MIB_PER_DAY", global = true, value_name = "MIB")]
    pub upload_mib_per_day: Option<String>,
    /// Hours after which an upload that was never sent (or otherwise used) is deleted [default: 24].
    #[arg(long, env = "PLAZA_MEDIA_UNREFERENCED_HOURS", global = true, value_name = "HOURS")]
    pub media_unreferenced_hours: Option<String>,
    /// Seconds to let in-flight requests finish after SIGTERM [default: 30].
    #[arg(long, env = "PLAZA_SHUTDOWN_GRACE_SECONDS", global = true, value_name = "SECONDS")]
    pub shutdown_grace_seconds: Option<String>,
}

/// The same settings in `plaza.toml`, with the flag names in snake case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    addr: Option<String>,
    data_dir: Option<String>,
    database_url: Option<String>,
    admins: Option<AdminList>,
    log: Option<String>,
    log_format: Option<String>,
    db_pool_max: Option<u32>,
    auth_attempts_per_address: Option<u32>,
    auth_attempts_per_username: Option<u32>,
    shutdown_grace_seconds: Option<u64>,
    connections_max: Option<u32>,
    connections_per_address_max: Option<u32>,
    header_read_timeout_seconds: Option<u32>,
    idle_timeout_seconds: Option<u32>,
    metrics_addr: Option<String>,
    metrics_token: Option<String>,
    sockets_per_user_max: Option<u32>,
    uploads_per_day: Option<u32>,
    upload_mib_per_day: Option<u32>,
    media_unreferenced_hours: Option<u32>,
    session_cache_seconds: Option<u32>,
    group_creations_per_hour: Option<u32>,
    password_hash_queue_max: Option<u32>,
    auth_failures_per_username: Option<u32>,
    group_members_max: Option<u32>,
    chat_send_batch_max: Option<u32>,
    event_retention_days: Option<u32>,
    media_url: Option<String>,
    public_url: Option<String>,
    nats_url: Option<String>,
    demo_coffee_addr: Option<String>,
    sqlite_sync: Option<String>,
    currencies: Option<AdminList>,
    topup_daily_limit: Option<u32>,
    red_packet_refund_seconds: Option<u32>,
    pin_changes_per_hour: Option<u32>,
    rides_batch_ms: Option<u32>,
    rides_offer_timeout_ms: Option<u32>,
    rides_dispatch_rounds: Option<u32>,
    rides_base_fare: Option<u32>,
    rides_per_km: Option<u32>,
    rides_per_minute: Option<u32>,
    rides_minimum_fare: Option<u32>,
    rides_surge_cap_percent: Option<u32>,
    rides_platform_fee_bps: Option<u32>,
    rides_cancel_fee: Option<u32>,
    rides_hold_margin_percent: Option<u32>,
    rides_search_radius_m: Option<u32>,
    rides_lease_ms: Option<u32>,
    rides_arrive_radius_m: Option<u32>,
    rides_route_plausible_percent: Option<u32>,
    rides_trip_speed_max_kmh: Option<u32>,
    rides_eta_drivers_min: Option<u32>,
    rides_eta_coarse_s: Option<u32>,
    shop_platform_fee_bps: Option<u32>,
    shop_auto_confirm_days: Option<u32>,
    shop_group_window_seconds: Option<u32>,
    miniapps_fee_bps: Option<u32>,
    webhook_retry_base_ms: Option<u32>,
    video_upload_max_mb: Option<u32>,
    video_duration_max_s: Option<u32>,
    video_transcode_concurrency: Option<u32>,
    video_queue_max: Option<u32>,
    map_tile_url: Option<String>,
    map_tile_attribution: Option<String>,
}

/// A list given as comma-separated text or as a TOML array (admins, currencies).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AdminList {
    Text(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub admins: HashSet<String>,
    pub log: String,
    pub log_format: LogFormat,
    pub db_pool_max: u32,
    pub sqlite_sync: plaza_store::SqliteSync,
    pub auth_attempts_per_address: u32,
    pub auth_attempts_per_username: u32,
    pub shutdown_grace: Duration,
    /// Connection caps and time-outs of the listener (`PLAZA_CONNECTIONS_*`,
    /// `PLAZA_HEADER_READ_TIMEOUT_SECONDS`, `PLAZA_IDLE_TIMEOUT_SECONDS`).
    pub connections: crate::connections::ConnectionLimits,
    /// Where /metrics is served when not on the main listener.
    pub metrics_addr: Option<SocketAddr>,
    /// The bearer token /metrics requires, if any.
    pub metrics_token: Option<String>,
    /// Daily upload caps and the clean-up of unreferenced uploads (`PLAZA_UPLOAD*`,
    /// `PLAZA_MEDIA_UNREFERENCED_HOURS`).
    pub media: plaza_media::MediaLimits,
    pub session_cache: Duration,
    /// Groups one user may create per hour.
    pub group_creations_per_hour: u32,
    /// Hashes that may wait for a hashing thread, per queue.
    pub password_hash_queue_max: usize,
    /// Failed logins per username in 15 minutes before attempts on it are slowed down.
    pub auth_failures_per_username: u32,
    pub group_members_max: usize,
    pub chat_send_batch_max: usize,
    /// How long the event log keeps events, and how often it is pruned.
    pub event_retention: Duration,
    pub event_prune_interval: Duration,
    /// The public URL and OpenID Connect issuer, without a trailing slash; the listening
    /// address (`http://…`) when unset.
    pub public_url: Option<String>,
    /// NATS for multi-node delivery; the in-process bus when unset.
    pub nats_url: Option<String>,
    /// Where `plaza demo --serve` runs the Coffee House sample mini-app (a loopback
    /// address: the demo registers it at `http://` this address, which Plaza accepts only
    /// on loopback; port 0 is any free port, registered once bound).
    pub demo_coffee_addr: SocketAddr,
    /// `s3://…` for an S3-compatible bucket; files under the data dir when unset.
    pub media_url: Option<String>,
    /// Per-connection limits of the WebSocket gateway (not configurable from outside yet).
    pub gateway: crate::gateway::GatewayConfig,
    /// The currencies wallets hold, in the order given.
    pub currencies: Vec<plaza_kernel::Currency>,
    /// Per user, currency and UTC day, in major units.
    pub topup_daily_limit: i64,
    pub red_packet_refund_after: Duration,
    /// PIN sets and replacements per user per hour (each costs password hashing).
    pub pin_changes_per_hour: u32,
    /// How often the wallet's background job runs (red-packet refunds); not configurable
    /// from outside, shortened by tests.
    pub wallet_job_interval: Duration,
    /// Fare policy, dispatch timing and fees of rides (`PLAZA_RIDES_*`).
    pub rides: plaza_rides::RidesConfig,
    /// Fees and timing of the shop (`PLAZA_SHOP_*`).
    pub shop: plaza_shop::ShopConfig,
    /// Upload, transcoding and queue limits of short video (`PLAZA_VIDEO_*`).
    pub video: plaza_video::VideoConfig,
    /// Fees, expiry and webhook retries of mini-app payments (`PLAZA_MINIAPPS_*`, `PLAZA_WEBHOOK_*`).
    pub miniapps: plaza_miniapps::PaymentsConfig,
    /// Raster map tiles for the web client (`{z}/{x}/{y}` template); the bundled vector
    /// map of the demo city when unset.
    pub map_tile_url: Option<String>,
    pub map_tile_attribution: Option<String>,
}

/// A setting that cannot be used, named as the operator would write it.
#[derive(Debug, thiserror::Error)]
#[error("invalid {setting}: {message}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub message: String,
}

/// How often old events are pruned from the log.
const EVENT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { setting, message: message.into() }
}

impl Config {
    /// Resolves flags/environment over the TOML file over defaults.
    pub fn resolve(args: &SettingsArgs) -> Result<Self, ConfigError> {
        let file = load_file(args.config.as_deref())?;
        let addr_text = args.addr.clone().or(file.addr).unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let addr = addr_text
            .parse::<SocketAddr>()
            .map_err(|_| invalid("PLAZA_ADDR", format!("{addr_text:?} is not an address like 127.0.0.1:8080")))?;

        let data_dir_text = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| "./plaza-data".to_string());
        if data_dir_text.trim().is_empty() {
            return Err(invalid("PLAZA_DATA_DIR", "must not be empty"));
        }
        let data_dir = PathBuf::from(data_dir_text);

        // An empty variable (PLAZA_DATABASE_URL= in a unit file or script) means "not set".
        let database_url = match args.database_url.clone().filter(|url| !url.trim().is_empty()).or(file.database_url) {
            Some(url)
                if url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://") =>
            {
                url
            }
            Some(url) => {
                return Err(invalid(
                    "PLAZA_DATABASE_URL",
                    format!("{:?} is neither sqlite://… nor postgres://…", plaza_store::redact(&url)),
                ))
            }
            None => plaza_store::Store::sqlite_url_in(&data_dir),
        };

        let admin_names: Vec<String> = match (args.admins.clone(), file.admins) {
            (Some(text), _) | (None, Some(AdminList::Text(text))) => text.split(',').map(str::to_string).collect(),
            (None, Some(AdminList::List(list))) => list,
            (None, None) => Vec::new(),
        };
        let mut admins = HashSet::new();
        for name in admin_names.iter().map(|name| name.trim()).filter(|name| !name.is_empty()) {
            let username = plaza_accounts::Username::parse(name)
                .map_err(|reason| invalid("PLAZA_ADMINS", format!("{name:?} is not a username ({reason})")))?;
            admins.insert(username.as_str().to_string());
        }

        let log = args.log.clone().or(file.log).unwrap_or_else(|| "info".to_string());
        tracing_subscriber::EnvFilter::try_new(&log)
            .map_err(|error| invalid("PLAZA_LOG", format!("{log:?} is not a log filter ({error})")))?;

        let log_format = match args.log_format.clone().or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(invalid("PLAZA_LOG_FORMAT", format!("{other:?} is neither text nor json"))),
        };

        let db_pool_max = number(&args.db_pool_max, file.db_pool_max, 16, 1..=1000, "PLAZA_DB_POOL_MAX")?;
        let auth_attempts_per_address = number(
            &args.auth_attempts_per_address,
            file.auth_attempts_per_address,
            30,
            1..=100_000,
            "PLAZA_AUTH_ATTEMPTS_PER_ADDRESS",
        )?;
        let auth_attempts_per_username = number(
            &args.auth_attempts_per_username,
            file.auth_attempts_per_username,
            10,
            1..=100_000,
            "PLAZA_AUTH_ATTEMPTS_PER_USERNAME",
        )?;
        let grace_file = file.shutdown_grace_seconds.map(|s| s.min(u32::MAX as u64) as u32);
        let grace = number(&args.shutdown_grace_seconds, grace_file, 30, 0..=3600, "PLAZA_SHUTDOWN_GRACE_SECONDS")?;

        let auth_failures_per_username = number(
            &args.auth_failures_per_username,
            file.auth_failures_per_username,
            100,
            1..=1_000_000,
            "PLAZA_AUTH_FAILURES_PER_USERNAME",
        )?;
        let password_hash_queue_max = number(
            &args.password_hash_queue_max,
            file.password_hash_queue_max,
            64,
            1..=100_000,
            "PLAZA_PASSWORD_HASH_QUEUE_MAX",
        )? as usize;
        let group_creations_per_hour = number(
            &args.group_creations_per_hour,
            file.group_creations_per_hour,
            30,
            1..=100_000,
            "PLAZA_GROUP_CREATIONS_PER_HOUR",
        )?;
        let connections = resolve_connection_limits(
            args,
            [
                file.connections_max,
                file.connections_per_address_max,
                file.header_read_timeout_seconds,
                file.idle_timeout_seconds,
            ],
            db_pool_max,
        )?;
        let metrics_addr = match args.metrics_addr.clone().or(file.metrics_addr).map(|text| text.trim().to_string()) {
            None => None,
            Some(text) if text.is_empty() => None,
            Some(text) => {
                let metrics_addr = text.parse::<SocketAddr>().map_err(|_| {
                    invalid("PLAZA_METRICS_ADDR", format!("{text:?} is not an address like 127.0.0.1:9090"))
                })?;
                if metrics_addr == addr {
                    return Err(invalid("PLAZA_METRICS_ADDR", "must differ from PLAZA_ADDR"));
                }
                Some(metrics_addr)
            }
        };
        let metrics_token = match args.metrics_token.clone().or(file.metrics_token) {
            None => None,
            Some(token) if token.is_empty() => None,
            Some(token) if token.len() < 16 || token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(invalid("PLAZA_METRICS_TOKEN", "must be 16 to 512 printable characters without spaces"))
            }
            Some(token) => Some(token),
        };

        let sockets_per_user_max = number(
            &args.sockets_per_user_max,
            file.sockets_per_user_max,
            16,
            1..=10_000,
            "PLAZA_SOCKETS_PER_USER_MAX",
        )?;
        let uploads_per_day =
            number(&args.uploads_per_day, file.uploads_per_day, 200, 1..=1_000_000, "PLAZA_UPLOADS_PER_DAY")?;
        let upload_mib_per_day =
            number(&args.upload_mib_per_day, file.upload_mib_per_day, 200, 10..=1_000_000, "PLAZA_UPLOAD_MIB_PER_DAY")?;
        let media_unreferenced_hours = number(
            &args.media_unreferenced_hours,
            file.media_unreferenced_hours,
            24,
            1..=24 * 365,
            "PLAZA_MEDIA_UNREFERENCED_HOURS",
        )?;
        let media = plaza_media::MediaLimits {
            uploads_per_day,
            upload_bytes_per_day: u64::from(upload_mib_per_day) * 1024 * 1024,
            unreferenced_after: Duration::from_secs(u64::from(media_unreferenced_hours) * 3600),
            ..plaza_media::MediaLimits::default()
        };

        let session_cache = number(
            &args.session_cache_seconds,
            file.session_cache_seconds,
            10,
            0..=300,
            "PLAZA_SESSION_CACHE_SECONDS",
        )?;

        let group_members_max =
            number(&args.group_members_max, file.group_members_max, 500, 2..=100_000, "PLAZA_GROUP_MEMBERS_MAX")?;
        let chat_send_batch_max =
            number(&args.chat_send_batch_max, file.chat_send_batch_max, 64, 1..=256, "PLAZA_CHAT_SEND_BATCH_MAX")?;
        let event_retention_days =
            number(&args.event_retention_days, file.event_retention_days, 30, 1..=3650, "PLAZA_EVENT_RETENTION_DAYS")?;

        let media_url = match args.media_url.clone().filter(|url| !url.trim().is_empty()).or(file.media_url) {
            Some(url) if url.starts_with("s3://") && url.len() > 5 => Some(url),
            Some(url) => return Err(invalid("PLAZA_MEDIA_URL", format!("{url:?} is not s3://bucket[/prefix]"))),
            None => None,
        };

        let public_url = match args.public_url.clone().filter(|url| !url.trim().is_empty()).or(file.public_url) {
            None => None,
            Some(url) => Some(parse_public_url(url.trim())?),
        };

        let demo_coffee_addr = match args.demo_coffee_addr.clone().or(file.demo_coffee_addr) {
            Some(text) if !text.trim().is_empty() => {
                let text = text.trim();
                let parsed = text.parse::<SocketAddr>().map_err(|_| {
                    invalid("PLAZA_DEMO_COFFEE_ADDR", format!("{text:?} is not an address like 127.0.0.1:8081"))
                })?;
                if !parsed.ip().is_loopback() {
                    return Err(invalid("PLAZA_DEMO_COFFEE_ADDR", "must be a loopback address (127.0.0.1 or [::1])"));
                }
                parsed
            }
            _ => default_demo_coffee_addr(addr),
        };
        if demo_coffee_addr == addr && addr.port() != 0 {
            return Err(invalid("PLAZA_DEMO_COFFEE_ADDR", "must differ from PLAZA_ADDR"));
        }

        let nats_url = match args.nats_url.clone().filter(|url| !url.trim().is_empty()).or(file.nats_url) {
            Some(url) if url.starts_with("nats://") || url.starts_with("tls://") => Some(url),
            Some(url) => return Err(invalid("PLAZA_NATS_URL", format!("{url:?} is not nats://host:port"))),
            None => None,
        };

        let sqlite_sync = match args.sqlite_sync.clone().or(file.sqlite_sync).as_deref().map(str::trim) {
            None | Some("") | Some("full") => plaza_store::SqliteSync::Full,
            Some("normal") => plaza_store::SqliteSync::Normal,
            Some(other) => return Err(invalid("PLAZA_SQLITE_SYNC", format!("{other:?} is neither full nor normal"))),
        };

        let currency_codes: Vec<String> = match (args.currencies.clone(), file.currencies) {
            (Some(text), _) | (None, Some(AdminList::Text(text))) => text.split(',').map(str::to_string).collect(),
            (None, Some(AdminList::List(list))) => list,
            (None, None) => vec!["USD".to_string()],
        };
        let mut currencies = Vec::new();
        for code in currency_codes.iter().map(|code| code.trim()).filter(|code| !code.is_empty()) {
            let currency = plaza_kernel::Currency::parse(code).ok_or_else(|| {
                invalid("PLAZA_CURRENCIES", format!("{code:?} is not an ISO 4217 currency code this build knows"))
            })?;
            if !currencies.contains(&currency) {
                currencies.push(currency);
            }
        }
        if currencies.is_empty() {
            return Err(invalid("PLAZA_CURRENCIES", "name at least one currency, e.g. USD"));
        }
        let topup_daily_limit = number(
            &args.topup_daily_limit,
            file.topup_daily_limit,
            10_000,
            1..=1_000_000_000,
            "PLAZA_TOPUP_DAILY_LIMIT",
        )?;
        let red_packet_refund_seconds = number(
            &args.red_packet_refund_seconds,
            file.red_packet_refund_seconds,
            86_400,
            1..=30 * 86_400,
            "PLAZA_RED_PACKET_REFUND_SECONDS",
        )?;
        let pin_changes_per_hour = number(
            &args.pin_changes_per_hour,
            file.pin_changes_per_hour,
            10,
            1..=10_000,
            "PLAZA_PIN_CHANGES_PER_HOUR",
        )?;

        let rides_batch_ms =
            number(&args.rides_batch_ms, file.rides_batch_ms, 2000, 10..=60_000, "PLAZA_RIDES_BATCH_MS")?;
        let rides_offer_timeout_ms = number(
            &args.rides_offer_timeout_ms,
            file.rides_offer_timeout_ms,
            15000,
            100..=300_000,
            "PLAZA_RIDES_OFFER_TIMEOUT_MS",
        )?;
        let rides_dispatch_rounds =
            number(&args.rides_dispatch_rounds, file.rides_dispatch_rounds, 5, 1..=100, "PLAZA_RIDES_DISPATCH_ROUNDS")?;
        let rides_base_fare =
            number(&args.rides_base_fare, file.rides_base_fare, 250, 0..=1_000_000, "PLAZA_RIDES_BASE_FARE")?;
        let rides_per_km = number(&args.rides_per_km, file.rides_per_km, 120, 0..=1_000_000, "PLAZA_RIDES_PER_KM")?;
        let rides_per_minute =
            number(&args.rides_per_minute, file.rides_per_minute, 30, 0..=1_000_000, "PLAZA_RIDES_PER_MINUTE")?;
        let rides_minimum_fare =
            number(&args.rides_minimum_fare, file.rides_minimum_fare, 500, 1..=1_000_000, "PLAZA_RIDES_MINIMUM_FARE")?;
        let rides_surge_cap_percent = number(
            &args.rides_surge_cap_percent,
            file.rides_surge_cap_percent,
            250,
            100..=1000,
            "PLAZA_RIDES_SURGE_CAP_PERCENT",
        )?;
        let rides_platform_fee_bps = number(
            &args.rides_platform_fee_bps,
            file.rides_platform_fee_bps,
            2000,
            0..=10_000,
            "PLAZA_RIDES_PLATFORM_FEE_BPS",
        )?;
        let rides_cancel_fee =
            number(&args.rides_cancel_fee, file.rides_cancel_fee, 300, 0..=1_000_000, "PLAZA_RIDES_CANCEL_FEE")?;
        let rides_hold_margin_percent = number(
            &args.rides_hold_margin_percent,
            file.rides_hold_margin_percent,
            20,
            0..=100,
            "PLAZA_RIDES_HOLD_MARGIN_PERCENT",
        )?;
        let rides_search_radius_m = number(
            &args.rides_search_radius_m,
            file.rides_search_radius_m,
            5000,
            100..=50_000,
            "PLAZA_RIDES_SEARCH_RADIUS_M",
        )?;
        let rides_lease_ms =
            number(&args.rides_lease_ms, file.rides_lease_ms, 10_000, 1000..=300_000, "PLAZA_RIDES_LEASE_MS")?;
        if rides_lease_ms <= rides_batch_ms {
            return Err(invalid(
                "PLAZA_RIDES_LEASE_MS",
                format!("{rides_lease_ms} must be longer than PLAZA_RIDES_BATCH_MS ({rides_batch_ms})"),
            ));
        }
        let rides_arrive_radius_m = number(
            &args.rides_arrive_radius_m,
            file.rides_arrive_radius_m,
            150,
            10..=5000,
            "PLAZA_RIDES_ARRIVE_RADIUS_M",
        )?;
        let rides_route_plausible_percent = number(
            &args.rides_route_plausible_percent,
            file.rides_route_plausible_percent,
            50,
            0..=100,
            "PLAZA_RIDES_ROUTE_PLAUSIBLE_PERCENT",
        )?;
        let rides_trip_speed_max_kmh = number(
            &args.rides_trip_speed_max_kmh,
            file.rides_trip_speed_max_kmh,
            150,
            10..=1000,
            "PLAZA_RIDES_TRIP_SPEED_MAX_KMH",
        )?;
        let rides_eta_drivers_min =
            number(&args.rides_eta_drivers_min, file.rides_eta_drivers_min, 3, 1..=100, "PLAZA_RIDES_ETA_DRIVERS_MIN")?;
        let rides_eta_coarse_s =
            number(&args.rides_eta_coarse_s, file.rides_eta_coarse_s, 300, 60..=3600, "PLAZA_RIDES_ETA_COARSE_S")?;
        let shop_platform_fee_bps = number(
            &args.shop_platform_fee_bps,
            file.shop_platform_fee_bps,
            500,
            0..=10_000,
            "PLAZA_SHOP_PLATFORM_FEE_BPS",
        )?;
        let shop_auto_confirm_days = number(
            &args.shop_auto_confirm_days,
            file.shop_auto_confirm_days,
            10,
            1..=90,
            "PLAZA_SHOP_AUTO_CONFIRM_DAYS",
        )?;
        let shop_group_window_seconds = number(
            &args.shop_group_window_seconds,
            file.shop_group_window_seconds,
            86_400,
            1..=30 * 86_400,
            "PLAZA_SHOP_GROUP_WINDOW_SECONDS",
        )?;
        let shop = plaza_shop::ShopConfig {
            platform_fee_bps: i64::from(shop_platform_fee_bps),
            auto_confirm_after: Duration::from_secs(u64::from(shop_auto_confirm_days) * 86_400),
            group_window: Duration::from_secs(u64::from(shop_group_window_seconds)),
            ..plaza_shop::ShopConfig::default()
        };
        let miniapps_fee_bps =
            number(&args.miniapps_fee_bps, file.miniapps_fee_bps, 100, 0..=10_000, "PLAZA_MINIAPPS_FEE_BPS")?;
        let webhook_retry_base_ms = number(
            &args.webhook_retry_base_ms,
            file.webhook_retry_base_ms,
            5_000,
            10..=3_600_000,
            "PLAZA_WEBHOOK_RETRY_BASE_MS",
        )?;
        let miniapps = plaza_miniapps::PaymentsConfig {
            fee_bps: i64::from(miniapps_fee_bps),
            webhook_retry_base: Duration::from_millis(u64::from(webhook_retry_base_ms)),
            ..plaza_miniapps::PaymentsConfig::default()
        };
        let video = video_config(
            args,
            [
                file.video_upload_max_mb,
                file.video_duration_max_s,
                file.video_transcode_concurrency,
                file.video_queue_max,
            ],
            &data_dir,
        )?;
        let map_tile_url = match args.map_tile_url.clone().or(file.map_tile_url).map(|url| url.trim().to_string()) {
            None => None,
            Some(url) if url.is_empty() => None,
            Some(url) => Some(check_tile_url(&url).map_err(|message| invalid("PLAZA_MAP_TILE_URL", message))?),
        };
        let map_tile_attribution = match args.map_tile_attribution.clone().or(file.map_tile_attribution) {
            Some(text) if text.chars().count() > MAP_ATTRIBUTION_MAX_CHARS => {
                return Err(invalid(
                    "PLAZA_MAP_TILE_ATTRIBUTION",
                    format!("at most {MAP_ATTRIBUTION_MAX_CHARS} characters"),
                ))
            }
            Some(text) => Some(text.trim().to_string()).filter(|text| !text.is_empty()),
            None => None,
        };
        let currency_code = currencies.first().map_or("USD", |currency| currency.code()).to_string();
        let rides = plaza_rides::RidesConfig {
            fare: plaza_rides::FarePolicy {
                currency: currency_code,
                base_fare: i64::from(rides_base_fare),
                per_km: i64::from(rides_per_km),
                per_minute: i64::from(rides_per_minute),
                minimum_fare: i64::from(rides_minimum_fare),
                surge_cap_milli: i64::from(rides_surge_cap_percent) * 10,
            },
            batch_interval: Duration::from_millis(u64::from(rides_batch_ms)),
            offer_timeout: Duration::from_millis(u64::from(rides_offer_timeout_ms)),
            dispatch_rounds_max: i64::from(rides_dispatch_rounds),
            platform_fee_bps: i64::from(rides_platform_fee_bps),
            cancel_fee: i64::from(rides_cancel_fee),
            hold_margin_percent: i64::from(rides_hold_margin_percent),
            search_radius_m: f64::from(rides_search_radius_m),
            lease_ttl: Duration::from_millis(u64::from(rides_lease_ms)),
            arrive_radius_m: f64::from(rides_arrive_radius_m),
            route_plausible_percent: i64::from(rides_route_plausible_percent),
            trip_speed_max_kmh: f64::from(rides_trip_speed_max_kmh),
            eta_precise_drivers_min: rides_eta_drivers_min as usize,
            eta_coarse_s: i64::from(rides_eta_coarse_s),
            ..plaza_rides::RidesConfig::default()
        };
        Ok(Self {
            addr,
            data_dir,
            database_url,
            admins,
            log,
            log_format,
            db_pool_max,
            sqlite_sync,
            auth_attempts_per_address,
            auth_attempts_per_username,
            shutdown_grace: Duration::from_secs(grace as u64),
            connections,
            metrics_addr,
            metrics_token,
            media,
            session_cache: Duration::from_secs(session_cache as u64),
            group_creations_per_hour,
            password_hash_queue_max,
            auth_failures_per_username,
            group_members_max: group_members_max as usize,
            chat_send_batch_max: chat_send_batch_max as usize,
            event_retention: Duration::from_secs(event_retention_days as u64 * 86_400),
            event_prune_interval: EVENT_PRUNE_INTERVAL,
            media_url,
            public_url,
            nats_url,
            demo_coffee_addr,
            gateway: crate::gateway::GatewayConfig {
                sockets_per_user_max: sockets_per_user_max as usize,
                ..Default::default()
            },
            currencies,
            topup_daily_limit: topup_daily_limit as i64,
            red_packet_refund_after: Duration::from_secs(red_packet_refund_seconds as u64),
            pin_changes_per_hour,
            wallet_job_interval: Duration::from_secs(30),
            rides,
            shop,
            video,
            miniapps,
            map_tile_url,
            map_tile_attribution,
        })
    }

    /// Defaults with this data directory and database, for tests and tools.
    pub fn for_test(data_dir: &Path, database_url: Option<String>) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            database_url: database_url.unwrap_or_else(|| plaza_store::Store::sqlite_url_in(data_dir)),
            admins: HashSet::new(),
            log: "warn".to_string(),
            log_format: LogFormat::Text,
            db_pool_max: 8,
            sqlite_sync: plaza_store::SqliteSync::Full,
            auth_attempts_per_address: 30,
            auth_attempts_per_username: 10,
            shutdown_grace: Duration::from_secs(5),
            connections: crate::connections::ConnectionLimits::default(),
            metrics_addr: None,
            metrics_token: None,
            media: plaza_media::MediaLimits::default(),
            session_cache: plaza_accounts::DEFAULT_SESSION_CACHE_TTL,
            group_creations_per_hour: 30,
            password_hash_queue_max: 64,
            auth_failures_per_username: 100,
            group_members_max: 500,
            chat_send_batch_max: 64,
            event_retention: Duration::from_secs(30 * 86_400),
            event_prune_interval: EVENT_PRUNE_INTERVAL,
            media_url: None,
            public_url: None,
            nats_url: None,
            demo_coffee_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            gateway: Default::default(),
            currencies: plaza_kernel::Currency::parse("USD").into_iter().collect(),
            topup_daily_limit: 10_000,
            red_packet_refund_after: Duration::from_secs(86_400),
            pin_changes_per_hour: 10,
            wallet_job_interval: Duration::from_secs(30),
            rides: plaza_rides::RidesConfig::default(),
            shop: plaza_shop::ShopConfig::default(),
            video: plaza_video::VideoConfig { work_dir: data_dir.join("video-work"), ..Default::default() },
            miniapps: plaza_miniapps::PaymentsConfig::default(),
            map_tile_url: None,
            map_tile_attribution: None,
        }
    }
}

/// `PLAZA_PUBLIC_URL`: `http(s)://host[:port][/path]`, without query, fragment or user
/// information; a trailing slash is dropped, since the issuer is compared byte for byte.
/// The demo's coffee server sits next to Plaza: 127.0.0.1 and the next port (any free
/// port when Plaza's is 0 or the last one).
fn default_demo_coffee_addr(plaza: SocketAddr) -> SocketAddr {
    let port = match plaza.port() {
        0 | u16::MAX => 0,
        port => port + 1,
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn parse_public_url(url: &str) -> Result<String, ConfigError> {
    let bad = || invalid("PLAZA_PUBLIC_URL", format!("{url:?} is not a URL like https://plaza.example"));
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(bad)?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains('@') || url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace()) {
        return Err(bad());
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The connection settings, checked against the descriptor limit this process may use:
/// every connection is a descriptor, and so is every database connection (three on
/// SQLite: the database, its WAL and its shared memory), every file being served and the
/// NATS connection, so a cap above `limit - reserve` would let the connections starve
/// the rest of the process (the `accept error: Too many open files` of issue 18).
fn resolve_connection_limits(
    args: &SettingsArgs,
    [file_connections_max, file_per_address_max, file_header_read_timeout, file_idle_timeout]: [Option<u32>; 4],
    db_pool_max: u32,
) -> Result<crate::connections::ConnectionLimits, ConfigError> {
    let descriptors = crate::connections::descriptor_limit();
    let reserve = crate::connections::descriptor_reserve(db_pool_max);
    let room = descriptors.map(|limit| limit.saturating_sub(reserve));
    let default_max = room.map_or(crate::connections::CONNECTIONS_MAX_DEFAULT, |room| {
        room.min(crate::connections::CONNECTIONS_MAX_DEFAULT as u64) as u32
    });
    if default_max < 16 && args.connections_max.is_none() && file_connections_max.is_none() {
        return Err(invalid(
            "PLAZA_CONNECTIONS_MAX",
            format!(
                "the descriptor limit (ulimit -n) is {}, which leaves no room for connections beside the {reserve} \
                 the database and files need; raise it",
                descriptors.unwrap_or(0)
            ),
        ));
    }
    let connections_max = number(
        &args.connections_max,
        file_connections_max,
        default_max.max(16),
        16..=1_000_000,
        "PLAZA_CONNECTIONS_MAX",
    )?;
    if let (Some(limit), Some(room)) = (descriptors, room) {
        if u64::from(connections_max) > room {
            return Err(invalid(
                "PLAZA_CONNECTIONS_MAX",
                format!(
                    "{connections_max} connections do not fit under the descriptor limit of {limit} (ulimit -n) with \
                     {reserve} kept for the database and files; set at most {room} or raise the limit"
                ),
            ));
        }
    }
    let connections_per_address_max = number(
        &args.connections_per_address_max,
        file_per_address_max,
        256.min(connections_max),
        1..=connections_max,
        "PLAZA_CONNECTIONS_PER_ADDRESS_MAX",
    )?;
    let header_read_timeout_seconds = number(
        &args.header_read_timeout_seconds,
        file_header_read_timeout,
        10,
        1..=300,
        "PLAZA_HEADER_READ_TIMEOUT_SECONDS",
    )?;
    let idle_timeout_seconds =
        number(&args.idle_timeout_seconds, file_idle_timeout, 60, 1..=3600, "PLAZA_IDLE_TIMEOUT_SECONDS")?;
    Ok(crate::connections::ConnectionLimits {
        connections_max: connections_max as usize,
        connections_per_address_max: connections_per_address_max as usize,
        header_read_timeout: Duration::from_secs(u64::from(header_read_timeout_seconds)),
        idle_timeout: Duration::from_secs(u64::from(idle_timeout_seconds)),
    })
}

/// The longest map credit line; it is drawn over the map on a phone.
const MAP_ATTRIBUTION_MAX_CHARS: usize = 200;

/// A tile URL template is absolute (http or https, since the browser fetches it) or
/// same-origin (`/tiles/...` behind the same proxy), and names all of `{z}`, `{x}` and
/// `{y}`: without one of them every tile would be the same picture.
fn check_tile_url(url: &str) -> Result<String, String> {
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/');
    if !scheme_ok {
        return Err(format!("{url:?} is not an http(s) URL or a path starting with /"));
    }
    if let Some(missing) = ["{z}", "{x}", "{y}"].into_iter().find(|part| !url.contains(part)) {
        return Err(format!(
            "{url:?} has no {missing}; a template looks like https://tiles.example/{{z}}/{{x}}/{{y}}.png"
        ));
    }
    if url.len() > 2000 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} is not a usable URL"));
    }
    Ok(url.to_string())
}

/// The `PLAZA_VIDEO_*` settings; transcodes keep their scratch files under the data
/// directory, so an operator finds (and sizes) them beside the database.
/// `from_file` holds the file's upload, duration, concurrency and queue settings.
fn video_config(
    args: &SettingsArgs,
    from_file: [Option<u32>; 4],
    data_dir: &Path,
) -> Result<plaza_video::VideoConfig, ConfigError> {
    let [upload_max_mb_file, duration_max_s_file, concurrency_file, queue_max_file] = from_file;
    let upload_max_mb =
        number(&args.video_upload_max_mb, upload_max_mb_file, 256, 1..=4096, "PLAZA_VIDEO_UPLOAD_MAX_MB")?;
    let duration_max_s =
        number(&args.video_duration_max_s, duration_max_s_file, 180, 1..=3600, "PLAZA_VIDEO_DURATION_MAX_S")?;
    let concurrency =
        number(&args.video_transcode_concurrency, concurrency_file, 1, 1..=16, "PLAZA_VIDEO_TRANSCODE_CONCURRENCY")?;
    let queue_max = number(&args.video_queue_max, queue_max_file, 100, 1..=100_000, "PLAZA_VIDEO_QUEUE_MAX")?;
    Ok(plaza_video::VideoConfig {
        upload_max_bytes: i64::from(upload_max_mb) * 1024 * 1024,
        duration_max: Duration::from_secs(u64::from(duration_max_s)),
        transcode_concurrency: concurrency as usize,
        queue_max: i64::from(queue_max),
        work_dir: data_dir.join("video-work"),
        ..plaza_video::VideoConfig::default()
    })
}

fn number(
    flag: &Option<String>,
    from_file: Option<u32>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
    setting: &'static str,
) -> Result<u32, ConfigError> {
    let value = match flag {
        Some(text) => {
            text.trim().parse::<u32>().map_err(|_| invalid(setting, format!("{text:?} is not a whole number")))?
        }
        None => from_file.unwrap_or(default),
    };
    if !range.contains(&value) {
        return Err(invalid(setting, format!("{value} is outside {}..={}", range.start(), range.end())));
    }
    Ok(value)
}

fn load_file(explicit: Option<&Path>) -> Result<FileSettings, ConfigError> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let default = PathBuf::from("plaza.toml");
            if !default.exists() {
                return Ok(FileSettings::default());
            }
            default
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|error| invalid("PLAZA_CONFIG", format!("cannot read {}: {error}", path.display())))?;
    toml::from_str(&text).map_err(|error| {
        let first_line = error.message().lines().next().unwrap_or("invalid TOML").to_string();
        invalid("PLAZA_CONFIG", format!("{}: {first_line}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SettingsArgs {
        SettingsArgs { config: Some(PathBuf::from("/nonexistent/plaza.toml")), ..Default::default() }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = Config::resolve(&SettingsArgs { config: None, ..Default::default() }).expect("defaults");
        assert_eq!(config.addr.to_string(), "127.0.0.1:8080");
        assert!(config.database_url.starts_with("sqlite://"));
        assert!(config.database_url.ends_with("plaza-data/plaza.db"));
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.currencies.iter().map(|c| c.code()).collect::<Vec<_>>(), ["USD"]);
        assert_eq!(config.map_tile_url, None, "the bundled map needs no tile server");
    }

    #[test]
    fn the_public_url_loses_its_trailing_slash_and_is_unset_by_default() {
        let config = Config::resolve(&SettingsArgs {
            config: None,
            public_url: Some("https://plaza.example/".into()),
            ..Default::default()
        })
        .expect("resolve");
        assert_eq!(config.public_url.as_deref(), Some("https://plaza.example"));
        let config = Config::resolve(&SettingsArgs { config: None, ..Default::default() }).expect("defaults");
        assert_eq!(config.public_url, None, "serve uses the listening address");
    }

    #[test]
    fn the_demo_coffee_server_defaults_to_the_port_after_plazas_and_stays_on_loopback() {
        let config =
            Config::resolve(&SettingsArgs { config: None, addr: Some("0.0.0.0:9000".into()), ..Default::default() })
                .expect("resolve");
        assert_eq!(config.demo_coffee_addr, SocketAddr::from(([127, 0, 0, 1], 9001)));
        let config = Config::resolve(&SettingsArgs {
            config: None,
            demo_coffee_addr: Some("[::1]:7000".into()),
            ..Default::default()
        })
        .expect("resolve");
        assert_eq!(config.demo_coffee_addr.to_string(), "[::1]:7000");
        for bad in ["192.0.2.1:8081", "coffee", "127.0.0.1:8080"] {
            let error = Config::resolve(&SettingsArgs {
                config: None,
                addr: Some("127.0.0.1:8080".into()),
                demo_coffee_addr: Some(bad.into()),
                ..Default::default()
            })
            .expect_err(bad);
            assert!(error.to_string().contains("PLAZA_DEMO_COFFEE_ADDR"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_tile_url_template_is_taken_from_the_environment_or_the_file() {
        let config = Config::resolve(&SettingsArgs {
            config: None,
            map_tile_url: Some(" https://tile.openstreetmap.org/{z}/{x}/{y}.png ".into()),
            map_tile_attribution: Some("© OpenStreetMap contributors".into()),
            ..Default::default()
        })
        .expect("resolve");
        assert_eq!(config.map_tile_url.as_deref(), Some("https://tile.openstreetmap.org/{z}/{x}/{y}.png"));
        assert_eq!(config.map_tile_attribution.as_deref(), Some("© OpenStreetMap contributors"));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plaza.toml");
        std::fs::write(&path, "map_tile_url = \"/tiles/{z}/{x}/{y}.png\"\n").expect("write");
        let config = Config::resolve(&SettingsArgs { config: Some(path), ..Default::default() }).expect("resolve");
        assert_eq!(config.map_tile_url.as_deref(), Some("/tiles/{z}/{x}/{y}.png"));
    }

    #[test]
    fn each_bad_value_names_its_setting() {
        let cases: Vec<(SettingsArgs, &str)> = vec![
            (SettingsArgs { addr: Some("nope".into()), config: None, ..Default::default() }, "PLAZA_ADDR"),
            (
                SettingsArgs { database_url: Some("mysql://x".into()), config: None, ..Default::default() },
                "PLAZA_DATABASE_URL",
            ),
            (SettingsArgs { admins: Some("ok,Bad Name".into()), config: None, ..Default::default() }, "PLAZA_ADMINS"),
            (SettingsArgs { log: Some("info,[[".into()), config: None, ..Default::default() }, "PLAZA_LOG"),
            (SettingsArgs { log_format: Some("xml".into()), config: None, ..Default::default() }, "PLAZA_LOG_FORMAT"),
            (SettingsArgs { db_pool_max: Some("0".into()), config: None, ..Default::default() }, "PLAZA_DB_POOL_MAX"),
            (
                SettingsArgs { public_url: Some("plaza.example".into()), config: None, ..Default::default() },
                "PLAZA_PUBLIC_URL",
            ),
            (
                SettingsArgs {
                    public_url: Some("https://plaza.example/?x".into()),
                    config: None,
                    ..Default::default()
                },
                "PLAZA_PUBLIC_URL",
            ),
            (
                SettingsArgs { currencies: Some("USD,XXX".into()), config: None, ..Default::default() },
                "PLAZA_CURRENCIES",
            ),
            (SettingsArgs { currencies: Some(" , ".into()), config: None, ..Default::default() }, "PLAZA_CURRENCIES"),
            (
                SettingsArgs { topup_daily_limit: Some("0".into()), config: None, ..Default::default() },
                "PLAZA_TOPUP_DAILY_LIMIT",
            ),
            (
                SettingsArgs { red_packet_refund_seconds: Some("x".into()), config: None, ..Default::default() },
                "PLAZA_RED_PACKET_REFUND_SECONDS",
            ),
            (
                SettingsArgs { chat_send_batch_max: Some("257".into()), config: None, ..Default::default() },
                "PLAZA_CHAT_SEND_BATCH_MAX",
            ),
            (
                SettingsArgs { event_retention_days: Some("0".into()), config: None, ..Default::default() },
                "PLAZA_EVENT_RETENTION_DAYS",
            ),
            (
                SettingsArgs { rides_hold_margin_percent: Some("101".into()), config: None, ..Default::default() },
                "PLAZA_RIDES_HOLD_MARGIN_PERCENT",
            ),
            (
                SettingsArgs { rides_search_radius_m: Some("50".into()), config: None, ..Default::default() },
                "PLAZA_RIDES_SEARCH_RADIUS_M",
            ),
            (
                SettingsArgs {
                    rides_lease_ms: Some("1500".into()),
                    rides_batch_ms: Some("2000".into()),
                    config: None,
                    ..Default::default()
                },
                "PLAZA_RIDES_LEASE_MS",
            ),
            (
                SettingsArgs {
                    map_tile_url: Some("tiles.example/{z}/{x}/{y}.png".into()),
                    config: None,
                    ..Default::default()
                },
                "PLAZA_MAP_TILE_URL",
            ),
            (
                SettingsArgs {
                    map_tile_url: Some("https://tiles.example/{z}/{x}.png".into()),
                    config: None,
                    ..Default::default()
                },
                "PLAZA_MAP_TILE_URL",
            ),
            (
                SettingsArgs { metrics_addr: Some("metrics".into()), config: None, ..Default::default() },
                "PLAZA_METRICS_ADDR",
            ),
            (
                SettingsArgs { metrics_token: Some("short".into()), config: None, ..Default::default() },
                "PLAZA_METRICS_TOKEN",
            ),
            (
                SettingsArgs { connections_per_address_max: Some("0".into()), config: None, ..Default::default() },
                "PLAZA_CONNECTIONS_PER_ADDRESS_MAX",
            ),
            (
                SettingsArgs { header_read_timeout_seconds: Some("0".into()), config: None, ..Default::default() },
                "PLAZA_HEADER_READ_TIMEOUT_SECONDS",
            ),
            (
                SettingsArgs { uploads_per_day: Some("0".into()), config: None, ..Default::default() },
                "PLAZA_UPLOADS_PER_DAY",
            ),
            (
                SettingsArgs { sockets_per_user_max: Some("0".into()), config: None, ..Default::default() },
                "PLAZA_SOCKETS_PER_USER_MAX",
            ),
            (args(), "PLAZA_CONFIG"),
        ];
        for (settings, expected) in cases {
            let error = Config::resolve(&settings).expect_err(expected);
            assert_eq!(error.setting, expected, "{error}");
            assert!(!error.to_string().contains('\n'));
        }
    }

    #[test]
    fn a_connection_cap_that_does_not_fit_under_the_descriptor_limit_stops_start_up() {
        let Some(limit) = crate::connections::descriptor_limit() else {
            return; // no limit to fit under
        };
        let settings = SettingsArgs { connections_max: Some(limit.to_string()), config: None, ..Default::default() };
        let error = Config::resolve(&settings).expect_err("the whole descriptor limit leaves no room");
        assert_eq!(error.setting, "PLAZA_CONNECTIONS_MAX", "{error}");
        let config = Config::resolve(&SettingsArgs { config: None, ..Default::default() }).expect("defaults fit");
        let reserve = crate::connections::descriptor_reserve(config.db_pool_max);
        assert!(config.connections.connections_max as u64 + reserve <= limit, "the default leaves room");
    }

    #[test]
    fn the_toml_file_fills_in_what_flags_leave_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plaza.toml");
        std::fs::write(&path, "addr = \"0.0.0.0:9000\"\nadmins = [\"Root\"]\nlog = \"debug\"\n").expect("write");
        let config = Config::resolve(&SettingsArgs {
            config: Some(path.clone()),
            log: Some("warn".into()),
            ..Default::default()
        })
        .expect("resolve");
        assert_eq!(config.addr.to_string(), "0.0.0.0:9000");
        assert!(config.admins.contains("root"));
        assert_eq!(config.log, "warn", "the flag wins over the file");

        std::fs::write(&path, "adress = \"typo\"\n").expect("write");
        let error =
            Config::resolve(&SettingsArgs { config: Some(path), ..Default::default() }).expect_err("unknown key");
        assert_eq!(error.setting, "PLAZA_CONFIG");
    }
}
