//! Plaza mini-apps: developers register third-party web apps that sign Plaza users in
//! and take payments from their wallets.
//!
//! The main design choice is **secrets that exist only in the developer's hands**: the
//! client secret and the webhook secret are drawn from the operating system's random
//! source, shown once in the answer to the registration (or rotation), and stored only as
//! SHA-256 digests (for the client secret) so that a copy of the database lets nobody act
//! as an app. The webhook secret must be kept to sign deliveries (Standard Webhooks is
//! HMAC), so it is the one secret kept as is; it is never shown again after creation.
//! Redirect URIs are stored as given and matched byte for byte (RFC 9700 §4.1.3).

mod migrations;
pub mod model;
pub mod routes;
mod service;

pub use migrations::MIGRATIONS;
pub use routes::router;
pub use service::{MiniApp, MiniAppError, MiniApps, NewSecrets};
