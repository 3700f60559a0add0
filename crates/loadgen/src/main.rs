//! `plaza-bench`: Plaza's benchmarks. Each subcommand starts a real `plaza serve` on a
//! free loopback port with a fresh database, drives it, and prints Markdown rows ready
//! for `docs/BENCHMARKS.md`. Every figure comes with a baseline measured in the same run
//! (this machine is shared and noisy), and the ratio between them.

mod chat;
mod hashing;
mod me;
mod miniapps;
mod rides;
mod server;
mod shop;
mod video;
mod video_ranking;
mod wallet;
mod wrk;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "plaza-bench", version, about = "Benchmarks for Plaza")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A flash sale sold out over HTTP (with a naive PostgreSQL baseline in the same run),
    /// and catalogue search over many products against GET /me.
    Shop {
        /// The plaza binary to benchmark (build it with --release).
        #[arg(long, default_value = "target/release/plaza")]
        plaza: PathBuf,
        /// A postgres:// URL of an empty database; SQLite in a temporary directory if unset.
        #[arg(long)]
        database_url: Option<String>,
        /// Distinct funded buyers, each ordering one unit once.
        #[arg(long, default_value_t = 50_000)]
        buyers: usize,
        /// Units in the sale.
        #[arg(long, default_value_t = 10_000)]
        units: i64,
        /// Concurrent HTTP clients of the flash sale.
        #[arg(long, default_value_t = 128)]
        clients: usize,
        /// Concurrent HTTP clients of the search runs (and of their GET /me baseline).
        #[arg(long, default_value_t = 16)]
        search_clients: usize,
        /// Products in the catalogue for the search runs.
        #[arg(long, default_value_t = 100_000)]
        products: usize,
        /// Seconds per search run.
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// GET /api/v1/me with a valid token under wrk (baseline: GET /healthz), and the cost
    /// of one login (argon2id).
    Me {
        /// The plaza binary to benchmark (build it with --release).
        #[arg(long, default_value = "target/release/plaza")]
        plaza: PathBuf,
        /// A postgres:// URL of an empty database; SQLite in a temporary directory if unset.
        #[arg(long)]
        database_url: Option<String>,
        /// Seconds per wrk run.
        #[arg(long, default_value_t = 10)]
        duration: u32,
        /// wrk connections.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// wrk threads.
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// Sequential logins to time.
        #[arg(long, default_value_t = 30)]
        logins: u32,
    },
    /// WebSockets end to end: idle sockets and memory per socket, 1:1 throughput and
    /// latency, and fan-out to a large group.
    /// Password hashing: memory after a burst, and logins while one account floods PINs.
    Hashing {
        #[arg(long, default_value = "target/release/plaza")]
        plaza: PathBuf,
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long, default_value_t = 40)]
        registrations: usize,
        #[arg(long, default_value_t = 400)]
        pin_flood: usize,
        #[arg(long, default_value_t = 20)]
        logins: usize,
    },
    Chat {
        #[arg(long, default_value = "target/release/plaza")]
        plaza: PathBuf,
        /// A postgres:// URL of an empty database; SQLite in a temporary directory if unset.
        #[arg(long)]
        database_url: Option<String>,
        /// Start two nodes connected by this NATS server (needs --database-url).
        #[arg(long, requires = "database_url")]
        nats_url: Option<String>,
        /// Idle sockets to open (0 to skip).
        #[arg(long, default_value_t = 20_000)]
        idle_sockets: usize,
        /// 1:1 conversations driven at once (0 to skip).
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        /// Messages per second offered across all pairs.
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
        /// Seconds of 1:1 sending.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Members of the fan-out group, its sender included (0 to skip).
        #[arg(long, default_value_t = 500)]
        group_size: usize,
        /// Messages sent to the group, one at a time.
        #[arg(long, default_value_t = 20)]
        group_messages: usize,
    },
    /// Transfers: group commit against one transaction per transfer at the service layer
    /// (in-process), and through HTTP, over many accounts and over a few Zipf-hot ones.
    Wallet {
        #[arg(long, default_value = "target/release/plaza")]
        plaza: PathBuf,
        /// A postgres:// URL of an empty database; SQLite in a temporary directory if unset.
        #[arg(long)]
        database_url: Option<String>,
        /// Users with money (the "many accounts" workload picks any two).
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// Hot users for the Zipf workload.
        #[arg(long, default_value_t = 100)]
        hot: usize,
        /// Zipf exponent over the hot users.
        #[arg(long, default_value_t = 1.1)]
        zipf_s: f64,
        /// Concurrent keep-alive HTTP clients.
        #[arg(long, default_value_t = 256)]
        http_clients: usize,
        /// Concurrent callers at the service layer.
        #[arg(long, default_value_t = 1024)]
        service_tasks: usize,
        /// Seconds per measured run.
        #[arg(long, default_value_t = 5)]
        duration: u64,
        /// Only the service layer, with group commit (no baseline, no HTTP): for profiling.
        #[arg(long, conflicts_with = "http_only")]
        service_only: bool,
        /// Only the HTTP runs (no service layer, no floor): for profiling the server.
        #[arg(long)]
        http_only: bool,
    },
    /// Short video over HTTP: GET /me idle and while the server transcodes 720p clips (and
    /// how long each transcode takes), and For You feed latency over a catalogue of ready
    /// videos, against GET /feed/following and GET /videos/{id} in the same run.
    Video {
        /// The plaza binary to benchmark (build it with --release).
        #[arg(long, default_value = "target/release/plaza")]
        plaza: PathBuf,
        /// A postgres:// URL of an empty database; SQLite in a temporary directory if unset.
        #[arg(long)]
        database_url: Option<String>,
        /// Concurrent clients of GET /me, idle and while transcoding.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Seconds per measured run.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// 1280x720 clips published at once for the transcoding run (0 skips that run).
        #[arg(long, default_value_t = 3)]
        transcodes: usize,
        /// Length of each of those clips, in seconds.
        #[arg(long, default_value_t = 25)]
        clip_seconds: u32,
        /// PLAZA_VIDEO_TRANSCODE_CONCURRENCY of the server.
        #[arg(long, default_value_t = 1)]
        transcode_concurrency: usize,
        /// Ready videos wanted for the feed runs (seeding also stops at --seed-seconds).
        #[arg(long, default_value_t = 2_000)]
        feed_videos: usize,
        /// Seconds at most spent publishing the feed's catalogue.
        #[arg(long, default_value_t = 180)]
        seed_seconds: u64,
        /// Creators of the catalogue.
        #[arg(long, default_value_t = 20)]
        creators: usize,
        /// Viewers: half build a history through the API, half stay fresh.
        #[arg(long, default_value_t = 100)]
        viewers: usize,
        /// Concurrent clients of the feed runs.
        #[arg(long, default_value_t = 16)]
        feed_clients: usize,
    },
    /// Mini-apps over HTTP: the token endpoint (code exchange and refresh), a payment end to
    /// end (create, confirm, webhook) at a steady rate, and webhooks while some receivers
    /// are slow; GET /me from as many clients in the same run is the baseline.
    Miniapps(miniapps::Options),
    /// For You in-process: ranking quality in a simulator with hidden tastes (against
    /// random, most-popular, chronological and an oracle in the same run), and `for_you`
    /// latency over a large catalogue against `video` by id and `following_feed`.
    VideoRanking {
        /// A postgres:// URL of an empty database; SQLite in a temporary directory if unset.
        #[arg(long)]
        database_url: Option<String>,
        /// Which part to run (with --database-url, one part per fresh database).
        #[arg(long, value_enum, default_value_t = video_ranking::Part::Both)]
        part: video_ranking::Part,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Topics (hashtags) of the simulated catalogue.
        #[arg(long, default_value_t = 20)]
        topics: usize,
        /// Authors, each with one or two topics.
        #[arg(long, default_value_t = 200)]
        authors: usize,
        /// Videos in the simulated catalogue, spread over the last week.
        #[arg(long, default_value_t = 3_000)]
        videos: usize,
        /// Simulated users with hidden tastes.
        #[arg(long, default_value_t = 300)]
        users: usize,
        /// Rounds: every user has one session per round.
        #[arg(long, default_value_t = 4)]
        rounds: usize,
        /// Pages of 10 per session at most.
        #[arg(long, default_value_t = 3)]
        pages: usize,
        /// Fresh uploads added before the middle round.
        #[arg(long, default_value_t = 20)]
        fresh: usize,
        /// Users (or callers) driven at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Videos in the latency catalogue.
        #[arg(long, default_value_t = 20_000)]
        scale_videos: usize,
        /// Users in the latency run.
        #[arg(long, default_value_t = 2_000)]
        scale_users: usize,
        /// Views each of those users records first, through record_view.
        #[arg(long, default_value_t = 3)]
        scale_views: usize,
        /// Sequential calls of each kind timed.
        #[arg(long, default_value_t = 1_000)]
        requests: usize,
    },
    /// Rides in-process: location updates and nearest-candidates latency on the live
    /// driver index, and a dispatch simulator comparing greedy and batched assignment.
    Rides {
        /// Online drivers in the index benchmark.
        #[arg(long, default_value_t = 100_000)]
        index_drivers: usize,
        /// Nearest-candidates queries to time.
        #[arg(long, default_value_t = 50_000)]
        queries: usize,
        /// Drivers in the simulated city.
        #[arg(long, default_value_t = 500)]
        sim_drivers: usize,
        /// City-wide requests per second; one greedy and one batched run per value.
        #[arg(long, value_delimiter = ',', default_values_t = [0.2, 0.4, 0.6])]
        demand: Vec<f64>,
        /// Simulated minutes per run.
        #[arg(long, default_value_t = 60)]
        sim_minutes: i64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Percent of offers a driver declines (0–100); the request goes to the next batch
        /// without that driver, and ends unserved after the dispatcher's rounds.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
        decline_percent: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Me { plaza, database_url, duration, connections, threads, logins } => {
            me::run(me::Options { plaza, database_url, duration, connections, threads, logins }).await
        }
        Command::Hashing { plaza, database_url, registrations, pin_flood, logins } => {
            hashing::run(hashing::Options { plaza, database_url, registrations, pin_flood, logins }).await
        }
        Command::Chat {
            plaza,
            database_url,
            nats_url,
            idle_sockets,
            pairs,
            rate,
            duration,
            group_size,
            group_messages,
        } => {
            chat::run(chat::Options {
                plaza,
                database_url,
                nats_url,
                idle_sockets,
                pairs,
                rate_per_second: rate,
                duration,
                group_size,
                group_messages,
            })
            .await
        }
        Command::Shop { plaza, database_url, buyers, units, clients, search_clients, products, duration } => {
            let options =
                shop::Options { plaza, database_url, buyers, units, clients, search_clients, products, duration };
            shop::run(options).await
        }
        Command::Wallet {
            plaza,
            database_url,
            accounts,
            hot,
            zipf_s,
            http_clients,
            service_tasks,
            duration,
            service_only,
            http_only,
        } => {
            wallet::run(wallet::Options {
                plaza,
                database_url,
                accounts,
                hot,
                zipf_s,
                http_clients,
                service_tasks,
                duration,
                service_only,
                http_only,
            })
            .await
        }
        Command::Video {
            plaza,
            database_url,
            clients,
            duration,
            transcodes,
            clip_seconds,
            transcode_concurrency,
            feed_videos,
            seed_seconds,
            creators,
            viewers,
            feed_clients,
        } => {
            video::run(video::Options {
                plaza,
                database_url,
                clients,
                duration,
                transcodes,
                clip_seconds,
                transcode_concurrency,
                feed_videos,
                seed_seconds,
                creators,
                viewers,
                feed_clients,
            })
            .await
        }
        Command::Miniapps(options) => {
            let quick = options.quick;
            miniapps::run(if quick { options.quick() } else { options }).await
        }
        Command::VideoRanking {
            database_url,
            part,
            seed,
            topics,
            authors,
            videos,
            users,
            rounds,
            pages,
            fresh,
            concurrency,
            scale_videos,
            scale_users,
            scale_views,
            requests,
        } => {
            video_ranking::run(video_ranking::Options {
                database_url,
                part,
                seed,
                topics,
                authors,
                videos,
                users,
                rounds,
                pages,
                fresh,
                concurrency,
                scale_videos,
                scale_users,
                scale_views,
                requests,
            })
            .await
        }
        Command::Rides { index_drivers, queries, sim_drivers, demand, sim_minutes, seed, decline_percent } => {
            rides::run(rides::Options {
                index_drivers,
                queries,
                sim_drivers,
                demand,
                sim_seconds: sim_minutes * 60,
                seed,
                decline_percent,
            })
            .await
        }
    }
}
