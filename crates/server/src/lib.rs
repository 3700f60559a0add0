//! The `plaza` binary's library half: configuration, router assembly, operations
//! endpoints, the demo seed and the serve loop. Services never depend on this crate;
//! it depends on all of them and wires them together.

pub mod allocator;
pub mod app;
pub mod client;
pub mod config;
pub mod connections;
pub mod demo;
pub mod demo_coffee;
mod demo_live;
mod demo_shop;
mod demo_video;
pub mod docs;
pub mod gateway;
pub mod metrics;
pub mod ops;
pub mod web;

use config::{Config, LogFormat};
use std::future::Future;
use tokio::net::TcpListener;

/// Starts logging to stderr according to the configuration.
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second initialisation (tests start many servers in one process) is harmless.
    drop(result);
}

/// Serves on `listener` until `shutdown` completes, then stops accepting, lets in-flight
/// requests finish for at most the configured grace period, and closes the database.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(config, listener, shutdown, false).await
}

/// `serve`, plus simulated drivers in the demo city when `demo_drivers` (`plaza demo
/// --serve`), so one person can try a ride end to end.
pub async fn serve_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    demo_drivers: bool,
) -> anyhow::Result<()> {
    metrics::install();
    let mut config = config;
    if config.public_url.is_none() {
        // The OpenID Connect issuer defaults to the address actually listened on (port 0
        // in tests becomes the real port).
        config.public_url = Some(format!("http://{}", listener.local_addr()?));
    }
    let store = app::open_store(&config).await?;
    let bus = match &config.nats_url {
        Some(url) => plaza_bus::Bus::nats(url).await.map_err(|error| anyhow::anyhow!("PLAZA_NATS_URL: {error}"))?,
        None => plaza_bus::Bus::in_process(),
    };
    let services = app::services(store.clone(), bus.clone(), &config)?;
    grant_configured_admins(&services.accounts, &config).await?;
    let jobs = BackgroundJobs::start(&services, bus, &config, demo_drivers).await?;
    let metrics_access = ops::MetricsAccess::new(store.clone(), config.metrics_token.clone());
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|error| anyhow::anyhow!("cannot listen on {addr} (PLAZA_METRICS_ADDR): {error}"))?,
        ),
        None => None,
    };
    let main_metrics = metrics_listener.is_none().then(|| metrics_access.clone());
    let router = app::router(services, config.gateway, client::ClientConfig::from_config(&config), main_metrics);
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, database = store.backend().name(), "plaza is listening on http://{local}");

    let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
    let stop_receiver_for_server = stop_receiver.clone();
    let mut stopping = stop_receiver.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_sender.send(true);
    });
    let graceful = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
        tracing::info!("shutting down: finishing in-flight requests");
    };
    let metrics_server = metrics_listener.map(|metrics_listener| {
        let metrics_router = ops::metrics_router(metrics_access);
        let stopping = stop_receiver.clone();
        let limits = config.connections;
        tokio::spawn(connections::serve(metrics_listener, metrics_router, limits, stopping))
    });
    let limits = config.connections;
    let server = async move {
        tokio::join!(connections::serve(listener, router, limits, stop_receiver_for_server), graceful);
        anyhow::Ok(())
    };
    let grace = config.shutdown_grace;
    let mut deadline_watch = stop_receiver;
    let deadline = async move {
        let _ = deadline_watch.wait_for(|stop| *stop).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result?,
        () = deadline => tracing::warn!("in-flight requests did not finish within {grace:?}; stopping anyway"),
    }
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    jobs.stop().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The tasks every node runs beside the listener, started after the services and
/// stopped before the database closes.
struct BackgroundJobs {
    /// Tasks that hold nothing to give back: aborting them is the whole stop.
    tasks: Vec<tokio::task::AbortHandle>,
    rides_dispatcher: tokio::task::JoinHandle<()>,
    shop_jobs: tokio::task::JoinHandle<()>,
    rides: plaza_rides::Rides,
    shop: plaza_shop::ShopHandle,
    live: plaza_live::LiveHandle,
}

impl BackgroundJobs {
    async fn start(
        services: &app::Services,
        bus: plaza_bus::Bus,
        config: &Config,
        demo_drivers: bool,
    ) -> anyhow::Result<Self> {
        let mut tasks = Vec::new();
        let mut spawn = |task: tokio::task::JoinHandle<()>| tasks.push(task.abort_handle());
        // Subjects whose last socket closed are forgotten (and unsubscribed on NATS) here.
        spawn(tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                every.tick().await;
                bus.sweep();
            }
        }));
        // Red-packet refunds and other wallet upkeep. Every node runs it; each refund is
        // decided in the database, so running it on many nodes (or after a crash) is safe.
        spawn(tokio::spawn(services.wallet.clone().run_jobs()));
        // Uploads never sent are deleted after a day; each deletion is decided in the
        // database, so every node may run it.
        spawn(tokio::spawn(services.media.clone().run_cleanup()));
        // A logout on another node evicts the session from this node's cache.
        spawn(tokio::spawn(services.accounts.follow_revocations().await?));
        // Every node prunes; deleting what another node already deleted is harmless.
        spawn(tokio::spawn(
            services.events.clone().prune_continually(config.event_retention, config.event_prune_interval),
        ));
        // Every node keeps a replica of the driver index, fed by the other nodes over the bus.
        spawn(tokio::spawn(services.rides.follow_presence().await?));
        if demo_drivers {
            spawn(tokio::spawn(demo::run_drivers(services.rides.clone())));
        }
        // Long-expired OAuth codes and tokens are deleted; every node may do it.
        spawn(tokio::spawn(services.miniapps.clone().prune_continually()));
        // Every node sends due webhooks from the outbox, an attempt at a time per delivery
        // by lease, and expires unpaid pay orders.
        spawn(tokio::spawn(services.miniapps.clone().deliver_webhooks_continually()));
        // Every node transcodes, a job at a time per video by lease, niced; and merges the
        // feed's scorer with what the other nodes learnt.
        spawn(tokio::spawn(services.video.clone().run_transcoder()));
        spawn(tokio::spawn(services.video.clone().sync_model_continually()));
        // Live: this node's RTMP listener when it ingests, and on every node the idle end
        // (each end is one conditional update, so running it everywhere is safe).
        let rtmp = services.live.bind_ingest().await.map_err(|error| {
            anyhow::anyhow!(
                "cannot listen for RTMP on {:?} (PLAZA_LIVE_RTMP_ADDR): {error}",
                services.live.config().rtmp_addr
            )
        })?;
        if let Some(listener) = rtmp {
            spawn(tokio::spawn(services.live.clone().serve_ingest(listener)));
            if demo_drivers {
                // `plaza demo --serve`: a room live at once, fed a test pattern over RTMP.
                let (live, accounts, shop) = (services.live.clone(), services.accounts.clone(), services.shop.clone());
                spawn(tokio::spawn(demo_live::run(live, accounts, shop)));
            }
        }
        spawn(tokio::spawn(services.live.clone().end_idle_rooms_continually()));
        spawn(tokio::spawn(services.live.clone().flush_likes_continually()));
        // Each node counts its joined sockets per room once a second, sums every node's
        // counts in the database and sends its viewers `live.stats`.
        spawn(tokio::spawn(services.live.clone().count_viewers_continually()));
        Ok(Self {
            tasks,
            // Ride dispatch runs on every node but acts only on the one holding the
            // region's lease; the shop's job (auto-confirmation, settlement, stranded
            // holds) likewise.
            rides_dispatcher: tokio::spawn(services.rides.clone().run_dispatcher()),
            shop_jobs: tokio::spawn(services.shop.clone().run_jobs()),
            rides: services.rides.clone(),
            shop: services.shop.clone(),
            live: services.live.clone(),
        })
    }

    async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.rides_dispatcher.abort();
        self.shop_jobs.abort();
        // Live sessions store their last segments and give their leases back while the
        // database is still open.
        self.live.stop_ingest(std::time::Duration::from_secs(10)).await;
        // The aborted dispatcher stops at its next await; wait for that before handing
        // dispatch over now rather than after the lease's TTL (a crash still waits it out).
        let _cancelled = self.rides_dispatcher.await;
        if let Err(error) = self.rides.release_lease().await {
            tracing::warn!("could not give the rides dispatch lease back: {error}");
        }
        let _cancelled = self.shop_jobs.await;
        if let Err(error) = self.shop.release_lease().await {
            tracing::warn!("could not give the shop job's lease back: {error}");
        }
    }
}

/// Grants the admin role to the accounts `PLAZA_ADMINS` names that exist now, and says
/// which names it skipped: a name nobody has registered yet grants nothing, then or later
/// (whoever registered it first would otherwise become an admin).
pub async fn grant_configured_admins(accounts: &plaza_accounts::Accounts, config: &Config) -> anyhow::Result<()> {
    let mut names: Vec<String> = config.admins.iter().cloned().collect();
    names.sort();
    let skipped = accounts.grant_admins_that_exist(&names).await?;
    if !skipped.is_empty() {
        tracing::warn!(
            skipped = %skipped.join(","),
            "PLAZA_ADMINS names accounts that do not exist; they were not granted admin \
             (register them, then run `plaza admin grant USERNAME`)"
        );
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
