//! `plaza-bench`: Plaza's benchmarks. Each subcommand starts a real `plaza serve` on a
//! free loopback port with a fresh database, drives it, and prints Markdown rows ready
//! for `docs/BENCHMARKS.md`. Every figure comes with a baseline measured in the same run
//! (this machine is shared and noisy), and the ratio between them.

mod chat;
mod hashing;
mod live;
mod me;
mod miniapps;
mod random;
mod rides;
mod server;
mod shop;
mod video;
mod video_ranking;
mod wallet;
mod wrk;

use clap::{Parser, Subcommand};

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
    Shop(shop::Options),
    /// GET /api/v1/me with a valid token under wrk (baseline: GET /healthz), and the cost
    /// of one login (argon2id).
    Me(me::Options),
    /// Password hashing: memory after a burst, and logins while one account floods PINs.
    Hashing(hashing::Options),
    /// WebSockets end to end: idle sockets and memory per socket, 1:1 throughput and
    /// latency, and fan-out to a large group.
    Chat(chat::Options),
    /// Transfers: group commit against one transaction per transfer at the service layer
    /// (in-process), and through HTTP, over many accounts and over a few Zipf-hot ones.
    Wallet(wallet::Options),
    /// Short video over HTTP: GET /me idle and while the server transcodes 720p clips (and
    /// how long each transcode takes), and For You feed latency over a catalogue of ready
    /// videos, against GET /feed/following and GET /videos/{id} in the same run.
    Video(video::Options),
    /// Mini-apps over HTTP: the token endpoint (code exchange and refresh), a payment end to
    /// end (create, confirm, webhook) at a steady rate, and webhooks while some receivers
    /// are slow; GET /me from as many clients in the same run is the baseline.
    Miniapps(miniapps::Options),
    /// For You in-process: ranking quality in a simulator with hidden tastes (against
    /// random, most-popular, chronological and an oracle in the same run), and `for_you`
    /// latency over a large catalogue against `video` by id and `following_feed`.
    VideoRanking(video_ranking::Options),
    /// Rides in-process: location updates and nearest-candidates latency on the live
    /// driver index, and a dispatch simulator comparing greedy and batched assignment.
    Rides(rides::Options),
    /// Live shopping: chat fan-out to one room's many viewers (against GET /me in the same
    /// run), ingest-to-playlist latency (against ffmpeg's own HLS) and the CPU of a room.
    Live(live::Options),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Shop(options) => shop::run(options).await,
        Command::Me(options) => me::run(options).await,
        Command::Hashing(options) => hashing::run(options).await,
        Command::Chat(options) => chat::run(options).await,
        Command::Wallet(options) => wallet::run(options).await,
        Command::Video(options) => video::run(options).await,
        Command::Miniapps(options) => miniapps::run(options).await,
        Command::VideoRanking(options) => video_ranking::run(options).await,
        Command::Rides(options) => rides::run(options).await,
        Command::Live(options) => live::run(options).await,
    }
}
