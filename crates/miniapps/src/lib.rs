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
//!
//! The same crate is Plaza's OAuth 2.0 authorization server and OpenID Connect provider
//! (`oauth.rs`: the authorization endpoint and grants; `tokens.rs`: codes, tokens, their
//! families and revocation; `keys.rs`: the id_token keys and pairwise subjects;
//! `oauth_routes.rs`: the endpoints). Its design choice is **state in the database,
//! checked on every use**: codes and tokens are opaque random strings kept as SHA-256
//! digests, and every bearer token is looked up on each request, so revoking a token, a
//! grant or a replayed code's family takes effect at once on every node. Other services
//! authenticate app servers and users' app tokens with [`MiniApps::authenticate_app_token`]
//! and [`MiniApps::authenticate_user_token`], or the extractors in [`bearer`].

pub mod bearer;
mod keys;
mod migrations;
pub mod model;
pub mod oauth;
mod oauth_routes;
mod payment_routes;
pub mod payments;
pub mod routes;
mod sdk;
mod service;
pub mod share;
pub mod tokens;
pub mod webhooks;

pub use bearer::{AppBearer, BearerRejection, UserBearer};
pub use keys::PublicJwk;
pub use migrations::MIGRATIONS;
pub use oauth::OAuthErrorCode;
pub use oauth_routes::discovery_router;
pub use payments::{NewPayOrder, PayOrder, PayOrderStatus, PayRefund};
pub use routes::router;
pub use sdk::{sdk_router, SDK_SOURCE};
pub use service::{MiniApp, MiniAppError, MiniApps, MiniAppsConfig, NewSecrets, PaymentsConfig};
pub use share::{share_router, SharedPage};
pub use tokens::{AppToken, UserToken};
