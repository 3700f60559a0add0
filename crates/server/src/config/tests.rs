use super::*;

/// The settings of a node started without a config file (else the default path is read).
fn no_file() -> SettingsArgs {
    SettingsArgs { config: None, ..Default::default() }
}

fn args() -> SettingsArgs {
    SettingsArgs { config: Some(PathBuf::from("/nonexistent/plaza.toml")), ..Default::default() }
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let config = Config::resolve(&no_file()).expect("defaults");
    assert_eq!(config.addr.to_string(), "127.0.0.1:8080");
    assert!(config.database_url.starts_with("sqlite://"));
    assert!(config.database_url.ends_with("plaza-data/plaza.db"));
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(config.currencies.iter().map(|c| c.code()).collect::<Vec<_>>(), ["USD"]);
    assert_eq!(config.map_tile_url, None, "the bundled map needs no tile server");
}

#[test]
fn the_public_url_loses_its_trailing_slash_and_is_unset_by_default() {
    let config = Config::resolve(&SettingsArgs { public_url: Some("https://plaza.example/".into()), ..no_file() })
        .expect("resolve");
    assert_eq!(config.public_url.as_deref(), Some("https://plaza.example"));
    let config = Config::resolve(&no_file()).expect("defaults");
    assert_eq!(config.public_url, None, "serve uses the listening address");
}

#[test]
fn the_demo_coffee_server_defaults_to_the_port_after_plazas_and_stays_on_loopback() {
    let config = Config::resolve(&SettingsArgs { addr: Some("0.0.0.0:9000".into()), ..no_file() }).expect("resolve");
    assert_eq!(config.demo_coffee_addr, SocketAddr::from(([127, 0, 0, 1], 9001)));
    let config =
        Config::resolve(&SettingsArgs { demo_coffee_addr: Some("[::1]:7000".into()), ..no_file() }).expect("resolve");
    assert_eq!(config.demo_coffee_addr.to_string(), "[::1]:7000");
    for bad in ["192.0.2.1:8081", "coffee", "127.0.0.1:8080"] {
        let error = Config::resolve(&SettingsArgs {
            addr: Some("127.0.0.1:8080".into()),
            demo_coffee_addr: Some(bad.into()),
            ..no_file()
        })
        .expect_err(bad);
        assert!(error.to_string().contains("PLAZA_DEMO_COFFEE_ADDR"), "{bad}: {error}");
    }
}

#[test]
fn a_tile_url_template_is_taken_from_the_environment_or_the_file() {
    let config = Config::resolve(&SettingsArgs {
        map_tile_url: Some(" https://tile.openstreetmap.org/{z}/{x}/{y}.png ".into()),
        map_tile_attribution: Some("© OpenStreetMap contributors".into()),
        ..no_file()
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
        (SettingsArgs { addr: Some("nope".into()), ..no_file() }, "PLAZA_ADDR"),
        (SettingsArgs { database_url: Some("mysql://x".into()), ..no_file() }, "PLAZA_DATABASE_URL"),
        (SettingsArgs { admins: Some("ok,Bad Name".into()), ..no_file() }, "PLAZA_ADMINS"),
        (SettingsArgs { log: Some("info,[[".into()), ..no_file() }, "PLAZA_LOG"),
        (SettingsArgs { log_format: Some("xml".into()), ..no_file() }, "PLAZA_LOG_FORMAT"),
        (SettingsArgs { db_pool_max: Some("0".into()), ..no_file() }, "PLAZA_DB_POOL_MAX"),
        (SettingsArgs { public_url: Some("plaza.example".into()), ..no_file() }, "PLAZA_PUBLIC_URL"),
        (SettingsArgs { public_url: Some("https://plaza.example/?x".into()), ..no_file() }, "PLAZA_PUBLIC_URL"),
        (SettingsArgs { currencies: Some("USD,XXX".into()), ..no_file() }, "PLAZA_CURRENCIES"),
        (SettingsArgs { currencies: Some(" , ".into()), ..no_file() }, "PLAZA_CURRENCIES"),
        (SettingsArgs { topup_daily_limit: Some("0".into()), ..no_file() }, "PLAZA_TOPUP_DAILY_LIMIT"),
        (SettingsArgs { red_packet_refund_seconds: Some("x".into()), ..no_file() }, "PLAZA_RED_PACKET_REFUND_SECONDS"),
        (SettingsArgs { chat_send_batch_max: Some("257".into()), ..no_file() }, "PLAZA_CHAT_SEND_BATCH_MAX"),
        (SettingsArgs { event_retention_days: Some("0".into()), ..no_file() }, "PLAZA_EVENT_RETENTION_DAYS"),
        (
            SettingsArgs { rides_hold_margin_percent: Some("101".into()), ..no_file() },
            "PLAZA_RIDES_HOLD_MARGIN_PERCENT",
        ),
        (SettingsArgs { rides_search_radius_m: Some("50".into()), ..no_file() }, "PLAZA_RIDES_SEARCH_RADIUS_M"),
        (
            SettingsArgs { rides_lease_ms: Some("1500".into()), rides_batch_ms: Some("2000".into()), ..no_file() },
            "PLAZA_RIDES_LEASE_MS",
        ),
        (
            SettingsArgs { map_tile_url: Some("tiles.example/{z}/{x}/{y}.png".into()), ..no_file() },
            "PLAZA_MAP_TILE_URL",
        ),
        (
            SettingsArgs { map_tile_url: Some("https://tiles.example/{z}/{x}.png".into()), ..no_file() },
            "PLAZA_MAP_TILE_URL",
        ),
        (SettingsArgs { metrics_addr: Some("metrics".into()), ..no_file() }, "PLAZA_METRICS_ADDR"),
        (SettingsArgs { metrics_token: Some("short".into()), ..no_file() }, "PLAZA_METRICS_TOKEN"),
        (
            SettingsArgs { connections_per_address_max: Some("0".into()), ..no_file() },
            "PLAZA_CONNECTIONS_PER_ADDRESS_MAX",
        ),
        (
            SettingsArgs { header_read_timeout_seconds: Some("0".into()), ..no_file() },
            "PLAZA_HEADER_READ_TIMEOUT_SECONDS",
        ),
        (SettingsArgs { uploads_per_day: Some("0".into()), ..no_file() }, "PLAZA_UPLOADS_PER_DAY"),
        (SettingsArgs { sockets_per_user_max: Some("0".into()), ..no_file() }, "PLAZA_SOCKETS_PER_USER_MAX"),
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
    let settings = SettingsArgs { connections_max: Some(limit.to_string()), ..no_file() };
    let error = Config::resolve(&settings).expect_err("the whole descriptor limit leaves no room");
    assert_eq!(error.setting, "PLAZA_CONNECTIONS_MAX", "{error}");
    let config = Config::resolve(&no_file()).expect("defaults fit");
    let reserve = crate::connections::descriptor_reserve(config.db_pool_max);
    assert!(config.connections.connections_max as u64 + reserve <= limit, "the default leaves room");
}

#[test]
fn the_toml_file_fills_in_what_flags_leave_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plaza.toml");
    std::fs::write(&path, "addr = \"0.0.0.0:9000\"\nadmins = [\"Root\"]\nlog = \"debug\"\n").expect("write");
    let config =
        Config::resolve(&SettingsArgs { config: Some(path.clone()), log: Some("warn".into()), ..Default::default() })
            .expect("resolve");
    assert_eq!(config.addr.to_string(), "0.0.0.0:9000");
    assert!(config.admins.contains("root"));
    assert_eq!(config.log, "warn", "the flag wins over the file");

    std::fs::write(&path, "adress = \"typo\"\n").expect("write");
    let error = Config::resolve(&SettingsArgs { config: Some(path), ..Default::default() }).expect_err("unknown key");
    assert_eq!(error.setting, "PLAZA_CONFIG");
}

#[test]
fn live_ingest_listens_on_loopback_1935_by_default_and_can_be_moved_or_turned_off() {
    let config = Config::resolve(&no_file()).expect("defaults");
    assert_eq!(config.live.rtmp_addr, Some(SocketAddr::from(([127, 0, 0, 1], 1935))));
    assert!(!config.live.rtmp_addr_required, "a taken default port leaves the node without ingest");
    assert_eq!(config.live.idle_end, Duration::from_secs(60));
    assert_eq!(config.live.rooms_max, 4);
    let moved = Config::resolve(&SettingsArgs {
        live_rtmp_addr: Some("0.0.0.0:1936".into()),
        live_idle_end_seconds: Some("5".into()),
        live_rooms_max: Some("2".into()),
        ..no_file()
    })
    .expect("resolve");
    assert_eq!(moved.live.rtmp_addr, Some(SocketAddr::from(([0, 0, 0, 0], 1936))));
    assert!(moved.live.rtmp_addr_required);
    assert_eq!((moved.live.idle_end, moved.live.rooms_max), (Duration::from_secs(5), 2));
    let off = Config::resolve(&SettingsArgs { live_rtmp_addr: Some("off".into()), ..no_file() }).expect("resolve");
    assert_eq!(off.live.rtmp_addr, None);
    for (args, setting) in [
        (SettingsArgs { live_rtmp_addr: Some("1935".into()), ..no_file() }, "PLAZA_LIVE_RTMP_ADDR"),
        (SettingsArgs { live_rtmp_public_url: Some("http://x".into()), ..no_file() }, "PLAZA_LIVE_RTMP_PUBLIC_URL"),
        (SettingsArgs { live_rooms_max: Some("0".into()), ..no_file() }, "PLAZA_LIVE_ROOMS_MAX"),
        (SettingsArgs { live_idle_end_seconds: Some("0".into()), ..no_file() }, "PLAZA_LIVE_IDLE_END_SECONDS"),
    ] {
        let error = Config::resolve(&args).expect_err(setting);
        assert_eq!(error.setting, setting);
    }
}
