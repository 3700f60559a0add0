//! Each service's own configuration, built from its `PLAZA_<SERVICE>_*` settings: media,
//! the wallet's currencies, rides, the shop, mini-app payments, short video and live rooms.

use super::settings::{basis_points, number, percent, FileSettings, SettingsArgs};
use super::{invalid, text_list, ConfigError};
use std::path::Path;
use std::time::Duration;

/// Daily upload caps and the clean-up of unreferenced uploads (`PLAZA_UPLOAD*`,
/// `PLAZA_MEDIA_UNREFERENCED_HOURS`).
pub(super) fn media_limits(args: &SettingsArgs, file: &FileSettings) -> Result<plaza_media::MediaLimits, ConfigError> {
    let uploads_per_day =
        number(&args.uploads_per_day, file.uploads_per_day, 200, 1..=1_000_000, "PLAZA_UPLOADS_PER_DAY")?;
    let upload_mib_per_day =
        number(&args.upload_mib_per_day, file.upload_mib_per_day, 200, 10..=1_000_000, "PLAZA_UPLOAD_MIB_PER_DAY")?;
    let unreferenced_hours = number(
        &args.media_unreferenced_hours,
        file.media_unreferenced_hours,
        24,
        1..=24 * 365,
        "PLAZA_MEDIA_UNREFERENCED_HOURS",
    )?;
    Ok(plaza_media::MediaLimits {
        uploads_per_day,
        upload_bytes_per_day: u64::from(upload_mib_per_day) * 1024 * 1024,
        unreferenced_after: Duration::from_secs(u64::from(unreferenced_hours) * 3600),
        ..plaza_media::MediaLimits::default()
    })
}

/// The currencies wallets hold, in the order given, each once; USD when none is named.
pub(super) fn currencies(args: &SettingsArgs, file: &FileSettings) -> Result<Vec<plaza_kernel::Currency>, ConfigError> {
    let mut currencies = Vec::new();
    let codes = text_list(&args.currencies, &file.currencies, &["USD"]);
    for code in codes.iter().map(|code| code.trim()).filter(|code| !code.is_empty()) {
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
    Ok(currencies)
}

/// Fare policy, dispatch timing and fees of rides (`PLAZA_RIDES_*`).
pub(super) fn rides_config(
    args: &SettingsArgs,
    file: &FileSettings,
    currencies: &[plaza_kernel::Currency],
) -> Result<plaza_rides::RidesConfig, ConfigError> {
    let batch_ms = number(&args.rides_batch_ms, file.rides_batch_ms, 2000, 10..=60_000, "PLAZA_RIDES_BATCH_MS")?;
    let lease_ms = number(&args.rides_lease_ms, file.rides_lease_ms, 10_000, 1000..=300_000, "PLAZA_RIDES_LEASE_MS")?;
    if lease_ms <= batch_ms {
        return Err(invalid(
            "PLAZA_RIDES_LEASE_MS",
            format!("{lease_ms} must be longer than PLAZA_RIDES_BATCH_MS ({batch_ms})"),
        ));
    }
    Ok(plaza_rides::RidesConfig {
        fare: fare_policy(args, file, currencies)?,
        batch_interval: Duration::from_millis(u64::from(batch_ms)),
        offer_timeout: Duration::from_millis(u64::from(number(
            &args.rides_offer_timeout_ms,
            file.rides_offer_timeout_ms,
            15000,
            100..=300_000,
            "PLAZA_RIDES_OFFER_TIMEOUT_MS",
        )?)),
        dispatch_rounds_max: i64::from(number(
            &args.rides_dispatch_rounds,
            file.rides_dispatch_rounds,
            5,
            1..=100,
            "PLAZA_RIDES_DISPATCH_ROUNDS",
        )?),
        platform_fee_bps: basis_points(
            &args.rides_platform_fee_bps,
            file.rides_platform_fee_bps,
            2000,
            "PLAZA_RIDES_PLATFORM_FEE_BPS",
        )?,
        cancel_fee: i64::from(number(
            &args.rides_cancel_fee,
            file.rides_cancel_fee,
            300,
            0..=1_000_000,
            "PLAZA_RIDES_CANCEL_FEE",
        )?),
        hold_margin_percent: percent(
            &args.rides_hold_margin_percent,
            file.rides_hold_margin_percent,
            20,
            0..=100,
            "PLAZA_RIDES_HOLD_MARGIN_PERCENT",
        )?,
        search_radius_m: f64::from(number(
            &args.rides_search_radius_m,
            file.rides_search_radius_m,
            5000,
            100..=50_000,
            "PLAZA_RIDES_SEARCH_RADIUS_M",
        )?),
        lease_ttl: Duration::from_millis(u64::from(lease_ms)),
        arrive_radius_m: f64::from(number(
            &args.rides_arrive_radius_m,
            file.rides_arrive_radius_m,
            150,
            10..=5000,
            "PLAZA_RIDES_ARRIVE_RADIUS_M",
        )?),
        route_plausible_percent: percent(
            &args.rides_route_plausible_percent,
            file.rides_route_plausible_percent,
            50,
            0..=100,
            "PLAZA_RIDES_ROUTE_PLAUSIBLE_PERCENT",
        )?,
        trip_speed_max_kmh: f64::from(number(
            &args.rides_trip_speed_max_kmh,
            file.rides_trip_speed_max_kmh,
            150,
            10..=1000,
            "PLAZA_RIDES_TRIP_SPEED_MAX_KMH",
        )?),
        eta_precise_drivers_min: number(
            &args.rides_eta_drivers_min,
            file.rides_eta_drivers_min,
            3,
            1..=100,
            "PLAZA_RIDES_ETA_DRIVERS_MIN",
        )? as usize,
        eta_coarse_s: i64::from(number(
            &args.rides_eta_coarse_s,
            file.rides_eta_coarse_s,
            300,
            60..=3600,
            "PLAZA_RIDES_ETA_COARSE_S",
        )?),
        ..plaza_rides::RidesConfig::default()
    })
}

/// What a ride costs (`PLAZA_RIDES_*_FARE`, `_PER_KM`, `_PER_MINUTE`, `_SURGE_CAP_PERCENT`),
/// in the first currency.
fn fare_policy(
    args: &SettingsArgs,
    file: &FileSettings,
    currencies: &[plaza_kernel::Currency],
) -> Result<plaza_rides::FarePolicy, ConfigError> {
    Ok(plaza_rides::FarePolicy {
        currency: currencies.first().map_or("USD", |currency| currency.code()).to_string(),
        base_fare: i64::from(number(
            &args.rides_base_fare,
            file.rides_base_fare,
            250,
            0..=1_000_000,
            "PLAZA_RIDES_BASE_FARE",
        )?),
        per_km: i64::from(number(&args.rides_per_km, file.rides_per_km, 120, 0..=1_000_000, "PLAZA_RIDES_PER_KM")?),
        per_minute: i64::from(number(
            &args.rides_per_minute,
            file.rides_per_minute,
            30,
            0..=1_000_000,
            "PLAZA_RIDES_PER_MINUTE",
        )?),
        minimum_fare: i64::from(number(
            &args.rides_minimum_fare,
            file.rides_minimum_fare,
            500,
            1..=1_000_000,
            "PLAZA_RIDES_MINIMUM_FARE",
        )?),
        surge_cap_milli: i64::from(number(
            &args.rides_surge_cap_percent,
            file.rides_surge_cap_percent,
            250,
            100..=1000,
            "PLAZA_RIDES_SURGE_CAP_PERCENT",
        )?) * 10,
    })
}

/// Fees and timing of the shop (`PLAZA_SHOP_*`).
pub(super) fn shop_config(args: &SettingsArgs, file: &FileSettings) -> Result<plaza_shop::ShopConfig, ConfigError> {
    let platform_fee_bps =
        basis_points(&args.shop_platform_fee_bps, file.shop_platform_fee_bps, 500, "PLAZA_SHOP_PLATFORM_FEE_BPS")?;
    let auto_confirm_days =
        number(&args.shop_auto_confirm_days, file.shop_auto_confirm_days, 10, 1..=90, "PLAZA_SHOP_AUTO_CONFIRM_DAYS")?;
    let group_window_seconds = number(
        &args.shop_group_window_seconds,
        file.shop_group_window_seconds,
        86_400,
        1..=30 * 86_400,
        "PLAZA_SHOP_GROUP_WINDOW_SECONDS",
    )?;
    Ok(plaza_shop::ShopConfig {
        platform_fee_bps,
        auto_confirm_after: Duration::from_secs(u64::from(auto_confirm_days) * 86_400),
        group_window: Duration::from_secs(u64::from(group_window_seconds)),
        ..plaza_shop::ShopConfig::default()
    })
}

/// Fees, expiry and webhook retries of mini-app payments (`PLAZA_MINIAPPS_*`, `PLAZA_WEBHOOK_*`).
pub(super) fn miniapps_config(
    args: &SettingsArgs,
    file: &FileSettings,
) -> Result<plaza_miniapps::PaymentsConfig, ConfigError> {
    let fee_bps = basis_points(&args.miniapps_fee_bps, file.miniapps_fee_bps, 100, "PLAZA_MINIAPPS_FEE_BPS")?;
    let webhook_retry_base_ms = number(
        &args.webhook_retry_base_ms,
        file.webhook_retry_base_ms,
        5_000,
        10..=3_600_000,
        "PLAZA_WEBHOOK_RETRY_BASE_MS",
    )?;
    Ok(plaza_miniapps::PaymentsConfig {
        fee_bps,
        webhook_retry_base: Duration::from_millis(u64::from(webhook_retry_base_ms)),
        ..plaza_miniapps::PaymentsConfig::default()
    })
}

/// The `PLAZA_VIDEO_*` settings; transcodes keep their scratch files under the data
/// directory, so an operator finds (and sizes) them beside the database.
pub(super) fn video_config(
    args: &SettingsArgs,
    file: &FileSettings,
    data_dir: &Path,
) -> Result<plaza_video::VideoConfig, ConfigError> {
    let upload_max_mb =
        number(&args.video_upload_max_mb, file.video_upload_max_mb, 256, 1..=4096, "PLAZA_VIDEO_UPLOAD_MAX_MB")?;
    let duration_max_s =
        number(&args.video_duration_max_s, file.video_duration_max_s, 180, 1..=3600, "PLAZA_VIDEO_DURATION_MAX_S")?;
    let concurrency = number(
        &args.video_transcode_concurrency,
        file.video_transcode_concurrency,
        1,
        1..=16,
        "PLAZA_VIDEO_TRANSCODE_CONCURRENCY",
    )?;
    let queue_max = number(&args.video_queue_max, file.video_queue_max, 100, 1..=100_000, "PLAZA_VIDEO_QUEUE_MAX")?;
    Ok(plaza_video::VideoConfig {
        upload_max_bytes: i64::from(upload_max_mb) * 1024 * 1024,
        duration_max: Duration::from_secs(u64::from(duration_max_s)),
        transcode_concurrency: concurrency as usize,
        queue_max: i64::from(queue_max),
        work_dir: data_dir.join("video-work"),
        ..plaza_video::VideoConfig::default()
    })
}

/// The `PLAZA_LIVE_*` settings; ingest keeps its scratch segments under the data
/// directory, like transcodes.
pub(super) fn live_config(
    args: &SettingsArgs,
    file: &FileSettings,
    data_dir: &Path,
) -> Result<plaza_live::LiveConfig, ConfigError> {
    let addr_text = args.live_rtmp_addr.clone().or(file.live_rtmp_addr.clone()).map(|text| text.trim().to_string());
    let rtmp_addr = match addr_text.as_deref() {
        None => plaza_live::LiveConfig::default().rtmp_addr,
        Some("" | "off") => None,
        Some(text) => Some(text.parse::<std::net::SocketAddr>().map_err(|_| {
            invalid("PLAZA_LIVE_RTMP_ADDR", format!("{text:?} is not an address like 127.0.0.1:1935, or off"))
        })?),
    };
    let public_url =
        args.live_rtmp_public_url.clone().or(file.live_rtmp_public_url.clone()).map(|text| text.trim().to_string());
    let rtmp_public_url = match public_url {
        Some(url) if url.is_empty() => None,
        Some(url) if !(url.starts_with("rtmp://") || url.starts_with("rtmps://")) || url.len() > 512 => {
            return Err(invalid("PLAZA_LIVE_RTMP_PUBLIC_URL", format!("{url:?} is not an rtmp:// URL")));
        }
        other => other,
    };
    let rooms_max = number(&args.live_rooms_max, file.live_rooms_max, 4, 1..=256, "PLAZA_LIVE_ROOMS_MAX")?;
    let idle_end_seconds =
        number(&args.live_idle_end_seconds, file.live_idle_end_seconds, 60, 1..=86_400, "PLAZA_LIVE_IDLE_END_SECONDS")?;
    Ok(plaza_live::LiveConfig {
        rtmp_addr_required: rtmp_addr.is_some() && addr_text.is_some(),
        rtmp_addr,
        rtmp_public_url,
        rooms_max: rooms_max as usize,
        idle_end: Duration::from_secs(u64::from(idle_end_seconds)),
        work_dir: data_dir.join("live-work"),
        ..plaza_live::LiveConfig::default()
    })
}
