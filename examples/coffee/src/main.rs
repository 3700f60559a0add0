//! `plaza-coffee`: the Coffee House sample mini-app, on its own.
//!
//! Register the app in Plaza first (docs/MINIAPPS.md), with `http://127.0.0.1:8081/` as its
//! `home_url`, `http://127.0.0.1:8081/callback` as its redirect URI and
//! `http://127.0.0.1:8081/webhooks/plaza` as its `webhook_url`; then run this with the
//! client id and the two secrets Plaza showed once.

use clap::Parser;
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "plaza-coffee", about = "Coffee House: a sample Plaza mini-app (state in memory).")]
struct Args {
    /// Plaza's public URL.
    #[arg(long, env = "COFFEE_PLAZA_URL", default_value = "http://127.0.0.1:8080")]
    plaza_url: String,
    /// The app's OAuth client id (`app_…`).
    #[arg(long, env = "COFFEE_CLIENT_ID")]
    client_id: String,
    /// The app's client secret (`secret_…`), shown once by Plaza.
    #[arg(long, env = "COFFEE_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// The app's webhook secret (`whsec_…`), shown once by Plaza.
    #[arg(long, env = "COFFEE_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: String,
    /// The address to listen on.
    #[arg(long, env = "COFFEE_ADDR", default_value = "127.0.0.1:8081")]
    addr: SocketAddr,
    /// Where users reach this server, if not `http://` and the listening address (behind
    /// a proxy, say). It must be the `home_url` registered in Plaza.
    #[arg(long, env = "COFFEE_PUBLIC_URL")]
    public_url: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFEE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("plaza-coffee: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("plaza-coffee: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = plaza_coffee::Config {
        plaza_url: args.plaza_url,
        public_url: args.public_url,
        client_id: args.client_id,
        client_secret: args.client_secret,
        webhook_secret: args.webhook_secret,
        listen: args.addr,
    };
    let running = plaza_coffee::serve(config).await?;
    println!("Coffee House is running at {}/", running.public_url);
    tokio::signal::ctrl_c().await?;
    running.shutdown().await;
    Ok(())
}
