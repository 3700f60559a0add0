//! Plaza's integration tests, in one binary: each file below is a module, so the test
//! crate is linked once instead of once per file (the largest part of building the tests).
//! Every test still runs in a process of its own under `cargo nextest`; run one area with
//! `cargo nextest run -p plaza-server -E 'test(/^rides::/)'`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

mod accounts;
mod chaos;
mod chat;
mod cli;
mod client;
mod cluster;
mod edge;
mod http;
mod limits;
mod live;
mod live_browser_ingest;
mod live_chat;
mod live_deals;
mod live_ingest;
mod media;
mod miniapps;
mod miniapps_share;
mod oauth;
mod pay_orders;
mod profiles;
mod realtime;
mod rides;
mod rides_cluster;
mod rides_drivers;
mod shop;
mod shop_crash;
mod shop_groups;
mod video;
mod video_crash;
mod wallet;
mod wallet_crash;
mod web;
