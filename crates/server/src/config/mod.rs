//! Configuration: flags, which mirror environment variables (`--addr` / `PLAZA_ADDR`),
//! over an optional `plaza.toml`, over defaults. Every value is checked here, before
//! anything starts, and a bad one stops start-up with one line naming the setting.
//!
//! [`settings`] holds where a value comes from (the flags, the file, [`settings::number`]);
//! [`network`] checks addresses, URLs and connection limits; [`services`] builds each
//! service's own configuration from its `PLAZA_<SERVICE>_*` settings.

mod network;
mod services;
mod settings;
#[cfg(test)]
mod tests;

pub use settings::SettingsArgs;
use settings::{number, FileSettings, TextList};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// RTMP ingest, rooms per node and the idle end of live rooms (`PLAZA_LIVE_*`).
    pub live: plaza_live::LiveConfig,
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
        let file = settings::load_file(args.config.as_deref())?;
        let addr = network::listen_addr(args, &file)?;
        let data_dir = data_dir(args, &file)?;
        let db_pool_max = number(&args.db_pool_max, file.db_pool_max, 16, 1..=1000, "PLAZA_DB_POOL_MAX")?;
        let grace_file = file.shutdown_grace_seconds.map(|s| s.min(u32::MAX as u64) as u32);
        let grace = number(&args.shutdown_grace_seconds, grace_file, 30, 0..=3600, "PLAZA_SHUTDOWN_GRACE_SECONDS")?;
        let currencies = services::currencies(args, &file)?;
        let rides = services::rides_config(args, &file, &currencies)?;
        Ok(Self {
            addr,
            database_url: database_url(args, &file, &data_dir)?,
            admins: admins(args, &file)?,
            log: log_filter(args, &file)?,
            log_format: log_format(args, &file)?,
            db_pool_max,
            sqlite_sync: sqlite_sync(args, &file)?,
            auth_attempts_per_address: number(
                &args.auth_attempts_per_address,
                file.auth_attempts_per_address,
                30,
                1..=100_000,
                "PLAZA_AUTH_ATTEMPTS_PER_ADDRESS",
            )?,
            auth_attempts_per_username: number(
                &args.auth_attempts_per_username,
                file.auth_attempts_per_username,
                10,
                1..=100_000,
                "PLAZA_AUTH_ATTEMPTS_PER_USERNAME",
            )?,
            shutdown_grace: Duration::from_secs(u64::from(grace)),
            auth_failures_per_username: number(
                &args.auth_failures_per_username,
                file.auth_failures_per_username,
                100,
                1..=1_000_000,
                "PLAZA_AUTH_FAILURES_PER_USERNAME",
            )?,
            password_hash_queue_max: number(
                &args.password_hash_queue_max,
                file.password_hash_queue_max,
                64,
                1..=100_000,
                "PLAZA_PASSWORD_HASH_QUEUE_MAX",
            )? as usize,
            group_creations_per_hour: number(
                &args.group_creations_per_hour,
                file.group_creations_per_hour,
                30,
                1..=100_000,
                "PLAZA_GROUP_CREATIONS_PER_HOUR",
            )?,
            connections: network::connection_limits(args, &file, db_pool_max)?,
            metrics_addr: network::metrics_addr(args, &file, addr)?,
            metrics_token: network::metrics_token(args, &file)?,
            gateway: network::gateway_config(args, &file)?,
            media: services::media_limits(args, &file)?,
            session_cache: Duration::from_secs(u64::from(number(
                &args.session_cache_seconds,
                file.session_cache_seconds,
                10,
                0..=300,
                "PLAZA_SESSION_CACHE_SECONDS",
            )?)),
            group_members_max: number(
                &args.group_members_max,
                file.group_members_max,
                500,
                2..=100_000,
                "PLAZA_GROUP_MEMBERS_MAX",
            )? as usize,
            chat_send_batch_max: number(
                &args.chat_send_batch_max,
                file.chat_send_batch_max,
                64,
                1..=256,
                "PLAZA_CHAT_SEND_BATCH_MAX",
            )? as usize,
            event_retention: event_retention(args, &file)?,
            event_prune_interval: EVENT_PRUNE_INTERVAL,
            media_url: network::media_url(args, &file)?,
            public_url: network::public_url(args, &file)?,
            demo_coffee_addr: network::demo_coffee_addr(args, &file, addr)?,
            nats_url: network::nats_url(args, &file)?,
            topup_daily_limit: i64::from(number(
                &args.topup_daily_limit,
                file.topup_daily_limit,
                10_000,
                1..=1_000_000_000,
                "PLAZA_TOPUP_DAILY_LIMIT",
            )?),
            red_packet_refund_after: Duration::from_secs(u64::from(number(
                &args.red_packet_refund_seconds,
                file.red_packet_refund_seconds,
                86_400,
                1..=30 * 86_400,
                "PLAZA_RED_PACKET_REFUND_SECONDS",
            )?)),
            pin_changes_per_hour: number(
                &args.pin_changes_per_hour,
                file.pin_changes_per_hour,
                10,
                1..=10_000,
                "PLAZA_PIN_CHANGES_PER_HOUR",
            )?,
            wallet_job_interval: Duration::from_secs(30),
            rides,
            shop: services::shop_config(args, &file)?,
            miniapps: services::miniapps_config(args, &file)?,
            video: services::video_config(args, &file, &data_dir)?,
            live: services::live_config(args, &file, &data_dir)?,
            map_tile_url: network::map_tile_url(args, &file)?,
            map_tile_attribution: network::map_tile_attribution(args, &file)?,
            currencies,
            data_dir,
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
            // Every test client connects from 127.0.0.1, and a test that fires hundreds of
            // requests at once opens as many connections: the production cap per address
            // (256) would close the surplus at once (IncompleteMessage under load). The
            // edge test sets its own low cap to test it.
            connections: crate::connections::ConnectionLimits {
                connections_per_address_max: 4096,
                ..crate::connections::ConnectionLimits::default()
            },
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
            // Tests that stream set an address (port 0); the others run no RTMP listener.
            live: plaza_live::LiveConfig {
                rtmp_addr: None,
                work_dir: data_dir.join("live-work"),
                ..Default::default()
            },
            miniapps: plaza_miniapps::PaymentsConfig::default(),
            map_tile_url: None,
            map_tile_attribution: None,
        }
    }
}

fn data_dir(args: &SettingsArgs, file: &FileSettings) -> Result<PathBuf, ConfigError> {
    let text = args.data_dir.clone().or(file.data_dir.clone()).unwrap_or_else(|| "./plaza-data".to_string());
    if text.trim().is_empty() {
        return Err(invalid("PLAZA_DATA_DIR", "must not be empty"));
    }
    Ok(PathBuf::from(text))
}

/// An empty variable (`PLAZA_DATABASE_URL=` in a unit file or script) means "not set":
/// SQLite in the data directory.
fn database_url(args: &SettingsArgs, file: &FileSettings, data_dir: &Path) -> Result<String, ConfigError> {
    match args.database_url.clone().filter(|url| !url.trim().is_empty()).or(file.database_url.clone()) {
        Some(url)
            if url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://") =>
        {
            Ok(url)
        }
        Some(url) => Err(invalid(
            "PLAZA_DATABASE_URL",
            format!("{:?} is neither sqlite://… nor postgres://…", plaza_store::redact(&url)),
        )),
        None => Ok(plaza_store::Store::sqlite_url_in(data_dir)),
    }
}

fn sqlite_sync(args: &SettingsArgs, file: &FileSettings) -> Result<plaza_store::SqliteSync, ConfigError> {
    match args.sqlite_sync.clone().or(file.sqlite_sync.clone()).as_deref().map(str::trim) {
        None | Some("") | Some("full") => Ok(plaza_store::SqliteSync::Full),
        Some("normal") => Ok(plaza_store::SqliteSync::Normal),
        Some(other) => Err(invalid("PLAZA_SQLITE_SYNC", format!("{other:?} is neither full nor normal"))),
    }
}

/// A comma-separated list from a flag, or the file's text or array; `default` when
/// neither is given.
fn text_list(flag: &Option<String>, from_file: &Option<TextList>, default: &[&str]) -> Vec<String> {
    match (flag, from_file) {
        (Some(text), _) | (None, Some(TextList::Text(text))) => text.split(',').map(str::to_string).collect(),
        (None, Some(TextList::List(list))) => list.clone(),
        (None, None) => default.iter().map(|item| item.to_string()).collect(),
    }
}

fn admins(args: &SettingsArgs, file: &FileSettings) -> Result<HashSet<String>, ConfigError> {
    let mut admins = HashSet::new();
    for name in
        text_list(&args.admins, &file.admins, &[]).iter().map(|name| name.trim()).filter(|name| !name.is_empty())
    {
        let username = plaza_accounts::Username::parse(name)
            .map_err(|reason| invalid("PLAZA_ADMINS", format!("{name:?} is not a username ({reason})")))?;
        admins.insert(username.as_str().to_string());
    }
    Ok(admins)
}

fn log_filter(args: &SettingsArgs, file: &FileSettings) -> Result<String, ConfigError> {
    let log = args.log.clone().or(file.log.clone()).unwrap_or_else(|| "info".to_string());
    tracing_subscriber::EnvFilter::try_new(&log)
        .map_err(|error| invalid("PLAZA_LOG", format!("{log:?} is not a log filter ({error})")))?;
    Ok(log)
}

fn log_format(args: &SettingsArgs, file: &FileSettings) -> Result<LogFormat, ConfigError> {
    match args.log_format.clone().or(file.log_format.clone()).as_deref() {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(invalid("PLAZA_LOG_FORMAT", format!("{other:?} is neither text nor json"))),
    }
}

/// How long the event log keeps events (`PLAZA_EVENT_RETENTION_DAYS`).
fn event_retention(args: &SettingsArgs, file: &FileSettings) -> Result<Duration, ConfigError> {
    let days =
        number(&args.event_retention_days, file.event_retention_days, 30, 1..=3650, "PLAZA_EVENT_RETENTION_DAYS")?;
    Ok(Duration::from_secs(u64::from(days) * 86_400))
}
