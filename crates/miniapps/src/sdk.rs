//! The mini-app JavaScript SDK (`sdk/plaza-miniapp-1.js`), served at the server's root:
//! `GET /sdk/plaza-miniapp-1.js` (protocol version 1) and `GET /sdk/plaza-miniapp.js`
//! (the current version). Apps load it with a `<script>` tag from their own origin, so it
//! is served to every origin, and it is compiled into the binary, so the SDK a server
//! serves always speaks the protocol its web client's host speaks.

use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The SDK's source: plain ES2017, no build step.
pub const SDK_SOURCE: &str = include_str!("../sdk/plaza-miniapp-1.js");

/// The unversioned name follows the current version, so caches keep it only briefly.
const UNVERSIONED_CACHE_CONTROL: &str = "public, max-age=300";
/// `-1` names the protocol's major version: it only ever gets compatible fixes, so a
/// day's caching is safe, while a year's would keep a fixed bug alive in browsers.
const VERSIONED_CACHE_CONTROL: &str = "public, max-age=86400";

/// `/sdk/*`, to be merged at the server's root (not under `/api/v1`: it is a static
/// script, not part of the JSON API). Stateless, so it fits any router's state.
pub fn sdk_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/sdk/plaza-miniapp.js", get(|| async { script(UNVERSIONED_CACHE_CONTROL) }))
        .route("/sdk/plaza-miniapp-1.js", get(|| async { script(VERSIONED_CACHE_CONTROL) }))
}

fn script(cache_control: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache_control)),
            // Any app's page may load it; it holds nothing but code.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            // Browsers that default to same-origin resource policy would block the
            // cross-origin `<script>` load otherwise.
            (HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("cross-origin")),
        ],
        SDK_SOURCE,
    )
}
