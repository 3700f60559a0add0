//! Where a setting comes from: a flag (which mirrors an environment variable), then
//! `plaza.toml`, then the default. [`number`] applies that order to a whole number and
//! checks its range; the other settings are read by the functions that check them.

use super::{invalid, ConfigError};
use clap::Args;
use serde::Deserialize;
use std::path::{Path, PathBuf};

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
    /// Where this node listens for RTMP publishers of live rooms, or `off` for no ingest on
    /// this node [default: 127.0.0.1:1935].
    #[arg(long, env = "PLAZA_LIVE_RTMP_ADDR", global = true, value_name = "ADDR")]
    pub live_rtmp_addr: Option<String>,
    /// The RTMP base URL hosts are told to publish to, the room's key appended
    /// [default: rtmp:// + the bound address + /live].
    #[arg(long, env = "PLAZA_LIVE_RTMP_PUBLIC_URL", global = true, value_name = "URL")]
    pub live_rtmp_public_url: Option<String>,
    /// Live rooms one node ingests at once, each an ffmpeg at low priority [default: 4].
    #[arg(long, env = "PLAZA_LIVE_ROOMS_MAX", global = true, value_name = "N")]
    pub live_rooms_max: Option<String>,
    /// Seconds a live room waits for media after it stopped before it ends; a reconnect
    /// sooner continues the room [default: 60].
    #[arg(long, env = "PLAZA_LIVE_IDLE_END_SECONDS", global = true, value_name = "SECONDS")]
    pub live_idle_end_seconds: Option<String>,
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
pub(super) struct FileSettings {
    pub(super) addr: Option<String>,
    pub(super) data_dir: Option<String>,
    pub(super) database_url: Option<String>,
    pub(super) admins: Option<TextList>,
    pub(super) log: Option<String>,
    pub(super) log_format: Option<String>,
    pub(super) db_pool_max: Option<u32>,
    pub(super) auth_attempts_per_address: Option<u32>,
    pub(super) auth_attempts_per_username: Option<u32>,
    pub(super) shutdown_grace_seconds: Option<u64>,
    pub(super) connections_max: Option<u32>,
    pub(super) connections_per_address_max: Option<u32>,
    pub(super) header_read_timeout_seconds: Option<u32>,
    pub(super) idle_timeout_seconds: Option<u32>,
    pub(super) metrics_addr: Option<String>,
    pub(super) metrics_token: Option<String>,
    pub(super) sockets_per_user_max: Option<u32>,
    pub(super) uploads_per_day: Option<u32>,
    pub(super) upload_mib_per_day: Option<u32>,
    pub(super) media_unreferenced_hours: Option<u32>,
    pub(super) session_cache_seconds: Option<u32>,
    pub(super) group_creations_per_hour: Option<u32>,
    pub(super) password_hash_queue_max: Option<u32>,
    pub(super) auth_failures_per_username: Option<u32>,
    pub(super) group_members_max: Option<u32>,
    pub(super) chat_send_batch_max: Option<u32>,
    pub(super) event_retention_days: Option<u32>,
    pub(super) media_url: Option<String>,
    pub(super) public_url: Option<String>,
    pub(super) nats_url: Option<String>,
    pub(super) demo_coffee_addr: Option<String>,
    pub(super) sqlite_sync: Option<String>,
    pub(super) currencies: Option<TextList>,
    pub(super) topup_daily_limit: Option<u32>,
    pub(super) red_packet_refund_seconds: Option<u32>,
    pub(super) pin_changes_per_hour: Option<u32>,
    pub(super) rides_batch_ms: Option<u32>,
    pub(super) rides_offer_timeout_ms: Option<u32>,
    pub(super) rides_dispatch_rounds: Option<u32>,
    pub(super) rides_base_fare: Option<u32>,
    pub(super) rides_per_km: Option<u32>,
    pub(super) rides_per_minute: Option<u32>,
    pub(super) rides_minimum_fare: Option<u32>,
    pub(super) rides_surge_cap_percent: Option<u32>,
    pub(super) rides_platform_fee_bps: Option<u32>,
    pub(super) rides_cancel_fee: Option<u32>,
    pub(super) rides_hold_margin_percent: Option<u32>,
    pub(super) rides_search_radius_m: Option<u32>,
    pub(super) rides_lease_ms: Option<u32>,
    pub(super) rides_arrive_radius_m: Option<u32>,
    pub(super) rides_route_plausible_percent: Option<u32>,
    pub(super) rides_trip_speed_max_kmh: Option<u32>,
    pub(super) rides_eta_drivers_min: Option<u32>,
    pub(super) rides_eta_coarse_s: Option<u32>,
    pub(super) shop_platform_fee_bps: Option<u32>,
    pub(super) shop_auto_confirm_days: Option<u32>,
    pub(super) shop_group_window_seconds: Option<u32>,
    pub(super) miniapps_fee_bps: Option<u32>,
    pub(super) webhook_retry_base_ms: Option<u32>,
    pub(super) video_upload_max_mb: Option<u32>,
    pub(super) video_duration_max_s: Option<u32>,
    pub(super) video_transcode_concurrency: Option<u32>,
    pub(super) video_queue_max: Option<u32>,
    pub(super) live_rtmp_addr: Option<String>,
    pub(super) live_rtmp_public_url: Option<String>,
    pub(super) live_rooms_max: Option<u32>,
    pub(super) live_idle_end_seconds: Option<u32>,
    pub(super) map_tile_url: Option<String>,
    pub(super) map_tile_attribution: Option<String>,
}

/// A list given as comma-separated text or as a TOML array (admins, currencies).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum TextList {
    Text(String),
    List(Vec<String>),
}

/// A whole number: the flag if given (text to parse), else the file's, else `default`;
/// outside `range` it is refused, naming `setting`.
pub(super) fn number(
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

/// A share in basis points (0–10 000), read as [`number`] reads it.
pub(super) fn basis_points(
    flag: &Option<String>,
    from_file: Option<u32>,
    default: u32,
    setting: &'static str,
) -> Result<plaza_kernel::BasisPoints, ConfigError> {
    let bps = number(flag, from_file, default, 0..=u32::from(plaza_kernel::BasisPoints::ALL), setting)?;
    plaza_kernel::BasisPoints::try_from(bps).map_err(|reason| invalid(setting, reason))
}

/// A percentage within `range`, read as [`number`] reads it.
pub(super) fn percent(
    flag: &Option<String>,
    from_file: Option<u32>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
    setting: &'static str,
) -> Result<plaza_kernel::Percent, ConfigError> {
    plaza_kernel::Percent::try_from(number(flag, from_file, default, range, setting)?)
        .map_err(|reason| invalid(setting, reason))
}

/// `plaza.toml` (or the file `PLAZA_CONFIG` names); nothing when the default file is absent.
pub(super) fn load_file(explicit: Option<&Path>) -> Result<FileSettings, ConfigError> {
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
