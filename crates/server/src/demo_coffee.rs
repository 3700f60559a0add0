//! The demo's mini-app: "Coffee House" (`examples/coffee`), developed by carol. `plaza demo`
//! registers it once; `plaza demo --serve` runs its server in-process on
//! `PLAZA_DEMO_COFFEE_ADDR`, after moving the registration to the address it bound and
//! rotating both of its secrets, which it hands to the coffee server in memory: Plaza
//! shows a secret only once, and the demo never prints one.

use crate::app;
use crate::config::Config;
use plaza_accounts::User;
use plaza_miniapps::model::{AppUrl, Registration};
use plaza_miniapps::{MiniApp, MiniApps};
use std::net::SocketAddr;

pub const COFFEE_APP_NAME: &str = "Coffee House";
/// The demo user who registered the app (and whose wallet its payments reach).
pub const COFFEE_DEVELOPER: &str = "carol";
const COFFEE_DESCRIPTION: &str =
    "Flat whites and lattes, paid from your Plaza wallet. A sample mini-app: its source is examples/coffee.";

/// The app's URL at a loopback address.
pub fn coffee_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// The addresses the app is registered with when its server is at `addr`.
fn addresses(addr: SocketAddr) -> anyhow::Result<(AppUrl, Vec<AppUrl>, AppUrl)> {
    let base = coffee_url(addr);
    let parse = |url: String, field: &str| AppUrl::parse(&url, field).map_err(anyhow::Error::msg);
    Ok((
        parse(format!("{base}/"), "home_url")?,
        vec![parse(format!("{base}{}", plaza_coffee::CALLBACK_PATH), "redirect_uris/0")?],
        parse(format!("{base}{}", plaza_coffee::WEBHOOK_PATH), "webhook_url")?,
    ))
}

/// Registers the app for `developer` unless it is registered already (found by its name
/// among the developer's apps). Its secrets are dropped: `--serve` rotates them.
pub(crate) async fn seed(miniapps: &MiniApps, developer: &User, addr: SocketAddr) -> anyhow::Result<MiniApp> {
    if let Some(app) = find(miniapps, developer).await? {
        return Ok(app);
    }
    let (home_url, redirect_uris, webhook_url) = addresses(addr)?;
    let redirect_uris: Vec<String> = redirect_uris.iter().map(|uri| uri.as_str().to_string()).collect();
    let scopes: Vec<String> = plaza_coffee::SCOPES.iter().map(|scope| scope.to_string()).collect();
    let registration = Registration::parse(
        COFFEE_APP_NAME,
        COFFEE_DESCRIPTION,
        home_url.as_str(),
        &redirect_uris,
        Some(webhook_url.as_str()),
        &scopes,
    )?;
    let (app, _secrets) = miniapps.register(developer, registration).await?;
    Ok(app)
}

async fn find(miniapps: &MiniApps, developer: &User) -> anyhow::Result<Option<MiniApp>> {
    // The directory holds at most 50 apps per query; the developer may own 20, so a
    // query by this exact name finds theirs unless 30 other developers copied the name.
    let apps = miniapps.directory(Some(COFFEE_APP_NAME)).await?;
    Ok(apps.into_iter().find(|app| app.developer_id == developer.id && app.name == COFFEE_APP_NAME))
}

/// Starts the coffee server for `plaza demo --serve`, talking to Plaza at `plaza_url`.
/// Any failure (the port taken, say) is logged, and the demo goes on without it.
pub async fn start(config: &Config, plaza_url: String) -> Option<plaza_coffee::Running> {
    match try_start(config, plaza_url).await {
        Ok(running) => Some(running),
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "the Coffee House demo app is not running");
            None
        }
    }
}

async fn try_start(config: &Config, plaza_url: String) -> anyhow::Result<plaza_coffee::Running> {
    let listener = tokio::net::TcpListener::bind(config.demo_coffee_addr).await.map_err(|error| {
        anyhow::anyhow!("cannot listen on {} (PLAZA_DEMO_COFFEE_ADDR): {error}", config.demo_coffee_addr)
    })?;
    let addr = listener.local_addr()?;
    let store = app::open_store(config).await?;
    let prepared = async {
        let services = app::services(store.clone(), plaza_bus::Bus::in_process(), config)?;
        let miniapps = &services.miniapps;
        let developer = services.accounts.user_by_username(COFFEE_DEVELOPER).await?;
        let app = seed(miniapps, &developer, addr).await?;
        let (home_url, redirect_uris, webhook_url) = addresses(addr)?;
        let app = miniapps.update_urls(&developer, &app.id, &home_url, &redirect_uris, Some(&webhook_url)).await?;
        let (_, client_secret) = miniapps.rotate_client_secret(&developer, &app.id).await?;
        let (_, webhook_secret) = miniapps.rotate_webhook_secret(&developer, &app.id).await?;
        anyhow::Ok((app, client_secret, webhook_secret))
    }
    .await;
    store.close().await;
    let (app, client_secret, webhook_secret) = prepared?;
    let coffee = plaza_coffee::Config {
        plaza_url,
        public_url: Some(coffee_url(addr)),
        client_id: app.client_id,
        client_secret,
        webhook_secret,
        listen: addr,
    };
    Ok(plaza_coffee::serve_on(listener, coffee).await?)
}
