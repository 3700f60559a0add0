//! The listener, its neighbours and what the server reaches out to: addresses, URLs,
//! connection limits and the map's tiles.

use super::settings::{number, FileSettings, SettingsArgs};
use super::{invalid, ConfigError};
use std::net::SocketAddr;
use std::time::Duration;

pub(super) fn listen_addr(args: &SettingsArgs, file: &FileSettings) -> Result<SocketAddr, ConfigError> {
    let text = args.addr.clone().or(file.addr.clone()).unwrap_or_else(|| "127.0.0.1:8080".to_string());
    text.parse::<SocketAddr>()
        .map_err(|_| invalid("PLAZA_ADDR", format!("{text:?} is not an address like 127.0.0.1:8080")))
}

/// A separate listener for /metrics, or none (then /metrics is on the main listener).
pub(super) fn metrics_addr(
    args: &SettingsArgs,
    file: &FileSettings,
    addr: SocketAddr,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(text) = args.metrics_addr.clone().or(file.metrics_addr.clone()).map(|text| text.trim().to_string()) else {
        return Ok(None);
    };
    if text.is_empty() {
        return Ok(None);
    }
    let metrics_addr = text
        .parse::<SocketAddr>()
        .map_err(|_| invalid("PLAZA_METRICS_ADDR", format!("{text:?} is not an address like 127.0.0.1:9090")))?;
    if metrics_addr == addr {
        return Err(invalid("PLAZA_METRICS_ADDR", "must differ from PLAZA_ADDR"));
    }
    Ok(Some(metrics_addr))
}

pub(super) fn metrics_token(args: &SettingsArgs, file: &FileSettings) -> Result<Option<String>, ConfigError> {
    match args.metrics_token.clone().or(file.metrics_token.clone()) {
        None => Ok(None),
        Some(token) if token.is_empty() => Ok(None),
        Some(token) if token.len() < 16 || token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic()) => {
            Err(invalid("PLAZA_METRICS_TOKEN", "must be 16 to 512 printable characters without spaces"))
        }
        Some(token) => Ok(Some(token)),
    }
}

pub(super) fn media_url(args: &SettingsArgs, file: &FileSettings) -> Result<Option<String>, ConfigError> {
    match args.media_url.clone().filter(|url| !url.trim().is_empty()).or(file.media_url.clone()) {
        Some(url) if url.starts_with("s3://") && url.len() > 5 => Ok(Some(url)),
        Some(url) => Err(invalid("PLAZA_MEDIA_URL", format!("{url:?} is not s3://bucket[/prefix]"))),
        None => Ok(None),
    }
}

pub(super) fn public_url(args: &SettingsArgs, file: &FileSettings) -> Result<Option<String>, ConfigError> {
    match args.public_url.clone().filter(|url| !url.trim().is_empty()).or(file.public_url.clone()) {
        None => Ok(None),
        Some(url) => parse_public_url(url.trim()).map(Some),
    }
}

pub(super) fn demo_coffee_addr(
    args: &SettingsArgs,
    file: &FileSettings,
    addr: SocketAddr,
) -> Result<SocketAddr, ConfigError> {
    let demo_coffee_addr = match args.demo_coffee_addr.clone().or(file.demo_coffee_addr.clone()) {
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
    Ok(demo_coffee_addr)
}

pub(super) fn nats_url(args: &SettingsArgs, file: &FileSettings) -> Result<Option<String>, ConfigError> {
    match args.nats_url.clone().filter(|url| !url.trim().is_empty()).or(file.nats_url.clone()) {
        Some(url) if url.starts_with("nats://") || url.starts_with("tls://") => Ok(Some(url)),
        Some(url) => Err(invalid("PLAZA_NATS_URL", format!("{url:?} is not nats://host:port"))),
        None => Ok(None),
    }
}

pub(super) fn map_tile_url(args: &SettingsArgs, file: &FileSettings) -> Result<Option<String>, ConfigError> {
    match args.map_tile_url.clone().or(file.map_tile_url.clone()).map(|url| url.trim().to_string()) {
        None => Ok(None),
        Some(url) if url.is_empty() => Ok(None),
        Some(url) => check_tile_url(&url).map(Some).map_err(|message| invalid("PLAZA_MAP_TILE_URL", message)),
    }
}

pub(super) fn map_tile_attribution(args: &SettingsArgs, file: &FileSettings) -> Result<Option<String>, ConfigError> {
    match args.map_tile_attribution.clone().or(file.map_tile_attribution.clone()) {
        Some(text) if text.chars().count() > MAP_ATTRIBUTION_MAX_CHARS => {
            Err(invalid("PLAZA_MAP_TILE_ATTRIBUTION", format!("at most {MAP_ATTRIBUTION_MAX_CHARS} characters")))
        }
        Some(text) => Ok(Some(text.trim().to_string()).filter(|text| !text.is_empty())),
        None => Ok(None),
    }
}

/// The connection settings, checked against the descriptor limit this process may use:
/// every connection is a descriptor, and so is every database connection (three on
/// SQLite: the database, its WAL and its shared memory), every file being served and the
/// NATS connection, so a cap above `limit - reserve` would let the connections starve
/// the rest of the process (the `accept error: Too many open files` of issue 18).
pub(super) fn connection_limits(
    args: &SettingsArgs,
    file: &FileSettings,
    db_pool_max: u32,
) -> Result<crate::connections::ConnectionLimits, ConfigError> {
    let descriptors = crate::connections::descriptor_limit();
    let reserve = crate::connections::descriptor_reserve(db_pool_max);
    let room = descriptors.map(|limit| limit.saturating_sub(reserve));
    let default_max = room.map_or(crate::connections::CONNECTIONS_MAX_DEFAULT, |room| {
        room.min(crate::connections::CONNECTIONS_MAX_DEFAULT as u64) as u32
    });
    if default_max < 16 && args.connections_max.is_none() && file.connections_max.is_none() {
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
        file.connections_max,
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
        file.connections_per_address_max,
        256.min(connections_max),
        1..=connections_max,
        "PLAZA_CONNECTIONS_PER_ADDRESS_MAX",
    )?;
    let header_read_timeout_seconds = number(
        &args.header_read_timeout_seconds,
        file.header_read_timeout_seconds,
        10,
        1..=300,
        "PLAZA_HEADER_READ_TIMEOUT_SECONDS",
    )?;
    let idle_timeout_seconds =
        number(&args.idle_timeout_seconds, file.idle_timeout_seconds, 60, 1..=3600, "PLAZA_IDLE_TIMEOUT_SECONDS")?;
    Ok(crate::connections::ConnectionLimits {
        connections_max: connections_max as usize,
        connections_per_address_max: connections_per_address_max as usize,
        header_read_timeout: Duration::from_secs(u64::from(header_read_timeout_seconds)),
        idle_timeout: Duration::from_secs(u64::from(idle_timeout_seconds)),
    })
}

/// The demo's coffee server sits next to Plaza: 127.0.0.1 and the next port (any free
/// port when Plaza's is 0 or the last one).
fn default_demo_coffee_addr(plaza: SocketAddr) -> SocketAddr {
    let port = match plaza.port() {
        0 | u16::MAX => 0,
        port => port + 1,
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `PLAZA_PUBLIC_URL`: `http(s)://host[:port][/path]`, without query, fragment or user
/// information; a trailing slash is dropped, since the issuer is compared byte for byte.
fn parse_public_url(url: &str) -> Result<String, ConfigError> {
    let bad = || invalid("PLAZA_PUBLIC_URL", format!("{url:?} is not a URL like https://plaza.example"));
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(bad)?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains('@') || url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace()) {
        return Err(bad());
    }
    Ok(url.trim_end_matches('/').to_string())
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

/// Per-connection limits of the WebSocket gateway; only the sockets per user are set
/// from outside.
pub(super) fn gateway_config(
    args: &SettingsArgs,
    file: &FileSettings,
) -> Result<crate::gateway::GatewayConfig, ConfigError> {
    let sockets_per_user_max =
        number(&args.sockets_per_user_max, file.sockets_per_user_max, 16, 1..=10_000, "PLAZA_SOCKETS_PER_USER_MAX")?;
    Ok(crate::gateway::GatewayConfig { sockets_per_user_max: sockets_per_user_max as usize, ..Default::default() })
}
