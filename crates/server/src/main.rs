//! `plaza`: the Plaza server and its administrative commands.

use clap::{Parser, Subcommand};
use plaza_server::config::{Config, SettingsArgs};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "plaza",
    version,
    about = "Plaza: a self-hostable super app — chat, wallet, rides and more in one binary."
)]
struct Cli {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Seed demo users and contacts (idempotent), print their logins, and exit — or, with
    /// --serve, go on to run the server.
    Demo {
        /// Start the server after seeding.
        #[arg(long)]
        serve: bool,
    },
    /// Wallet ledger administration.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Grant or revoke the admin role of an existing account.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Make an existing account an admin (the ledger check and other /admin endpoints).
    Grant { username: String },
    /// Take the admin role away.
    Revoke { username: String },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Recompute every balance from the journal and check that each currency sums to
    /// zero; exits with status 1 when the ledger is not sound.
    Check,
}

fn main() -> ExitCode {
    // First of all: it may replace this process with itself (see allocator.rs).
    plaza_server::allocator::reexec_with_tunables();
    let cli = Cli::parse();
    // Before the settings are checked, so the connection cap is measured against the
    // limit the server will really have.
    plaza_server::connections::raise_descriptor_limit();
    let config = match Config::resolve(&cli.settings) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("plaza: {error}");
            return ExitCode::from(2);
        }
    };
    plaza_server::init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("plaza: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("plaza: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => serve(config, false).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate => {
            let store = plaza_server::app::open_store(&config).await?;
            println!("migrations are up to date ({})", store.backend().name());
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger { command: LedgerCommand::Check } => {
            let store = plaza_server::app::open_store(&config).await?;
            let check = plaza_wallet::check_ledger(&store).await?;
            store.close().await;
            println!("{}", describe_ledger_check(&check));
            Ok(if check.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Admin { command } => {
            let store = plaza_server::app::open_store(&config).await?;
            let accounts = plaza_server::app::accounts_only(store.clone())?;
            let (username, granting) = match &command {
                AdminCommand::Grant { username } => (username, true),
                AdminCommand::Revoke { username } => (username, false),
            };
            let outcome = plaza_server::app::set_admin(&accounts, username, granting).await;
            store.close().await;
            match outcome {
                Ok(message) => {
                    println!("{message}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(message) => {
                    eprintln!("plaza: {message}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Demo { serve: then_serve } => {
            let store = plaza_server::app::open_store(&config).await?;
            let logins = plaza_server::demo::seed(store.clone(), &config).await?;
            store.close().await;
            println!("{}", plaza_server::demo::describe(&logins, &config));
            if then_serve {
                serve(config, true).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Serves; `demo` (`plaza demo --serve`) adds the simulated drivers and the Coffee House
/// mini-app's server beside Plaza.
async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {} (PLAZA_ADDR): {error}", config.addr))?;
    let local = listener.local_addr()?;
    println!("Plaza is running at http://{local}/  (API reference: /api/docs)");
    let coffee = match demo {
        true => {
            let plaza_url = config.public_url.clone().unwrap_or_else(|| format!("http://{local}"));
            plaza_server::demo_coffee::start(&config, plaza_url).await
        }
        false => None,
    };
    let served = plaza_server::serve_with(config, listener, plaza_server::termination_signal(), demo).await;
    if let Some(coffee) = coffee {
        coffee.shutdown().await;
    }
    served
}

/// The ledger check for a terminal: one line per currency, then any disagreement.
fn describe_ledger_check(check: &plaza_wallet::LedgerCheck) -> String {
    let mut text =
        format!("ledger {}: {} accounts checked\n", if check.ok { "OK" } else { "NOT OK" }, check.accounts_checked);
    for currency in &check.currencies {
        text.push_str(&format!("  {} sums to {}\n", currency.currency, currency.sum));
    }
    for mismatch in &check.mismatches {
        text.push_str(&format!(
            "  {}: balance {} but the journal says {}\n",
            mismatch.account_id, mismatch.balance, mismatch.journal
        ));
    }
    for problem in &check.problems {
        text.push_str(&format!("  {problem}\n"));
    }
    text.trim_end().to_string()
}
