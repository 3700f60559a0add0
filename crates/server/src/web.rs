//! The web client, embedded: `web/dist` (the Vite build) is compiled into the binary and
//! served at `/` on the same origin as the API.
//!
//! Every path outside `/api/` that names no file gets `index.html`, so the client's own
//! routes (`/chats/…`, `/wallet`) survive a reload. Vite puts content-hashed files under
//! `/assets/`, which may be cached forever; everything else (the page, the service
//! worker, the manifest) is revalidated on each load by its ETag, so a new binary's
//! client reaches users on their next visit. Without a built client (a Rust-only
//! checkout) a short placeholder page says how to build one.
//!
//! Every response from here carries the client's security headers (`SecurityHeaders`):
//! a Content-Security-Policy that runs scripts from this origin only (the build has no
//! inline script; Preact sets styles through the CSSOM, which `style-src` does not
//! govern), loads images from this origin, `data:`, `blob:` (a picked photo's preview)
//! and the tile server's origin, plays media from this origin and `blob:` (hls.js feeds a
//! live stream to the video element through a MediaSource's blob URL), connects (HTTP and WebSocket) to this origin only, and
//! may not be framed by anyone (`frame-ancestors 'none'` and `X-Frame-Options: DENY`),
//! frames only what a mini-app's `home_url` may be (`https:`, or `http:` on a loopback
//! host; the runner sandboxes each frame),
//! with `Referrer-Policy: no-referrer` and `X-Content-Type-Options: nosniff`.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use plaza_http::{ErrorCode, Problem};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Client;

/// Shown at `/` when the binary was built without `web/dist`.
const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Plaza</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}
a{color:#0a6}code{background:#f3f3f3;padding:0 .3em;border-radius:3px}</style></head>
<body><h1>Plaza is running</h1>
<p>This binary was built without its web client. Build the client with
<code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>, then rebuild <code>plaza</code>
(<code>bash scripts/run</code> does both).</p>
<ul><li><a href="/api/docs">API reference</a> (<a href="/api/v1/openapi.json">OpenAPI 3.1</a>)</li>
<li><a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a>, <a href="/metrics">/metrics</a></li></ul>
</body></html>"#;

/// The headers every web-client response carries, built once at start-up from the tile
/// server's address (the one origin outside this server the client loads from).
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    content_security_policy: HeaderValue,
}

impl SecurityHeaders {
    /// `map_tile_url` is the checked `PLAZA_MAP_TILE_URL` template, if any.
    pub fn new(map_tile_url: Option<&str>) -> Self {
        let tile_source = map_tile_url.and_then(tile_origin).map(|origin| format!(" {origin}")).unwrap_or_default();
        let policy = format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{tile_source}; \
             media-src 'self' blob:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; font-src 'self'; object-src 'none'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'; \
             frame-src 'self' https: http://localhost:* http://127.0.0.1:*"
        );
        // CSP's host-source grammar has no IPv6 literals (Chromium refuses `[::1]` and says
        // so on every page), so a loopback app on `http://[::1]` cannot be framed; develop
        // on `localhost` or `127.0.0.1`.
        // The tile URL was checked for whitespace and control characters, so the policy
        // is always a valid header value; the fallback keeps the policy strict anyway.
        let content_security_policy = HeaderValue::from_str(&policy).unwrap_or_else(|_| {
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
            )
        });
        Self { content_security_policy }
    }

    fn apply(&self, headers: &mut HeaderMap, policy: Option<HeaderValue>) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy.unwrap_or_else(|| self.content_security_policy.clone()));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    }
}

/// The CSP source for a tile URL template: its scheme, host and port (a `{s}`-style
/// placeholder in the host's first label becomes the wildcard `*.`), or nothing for a
/// same-origin path, which `'self'` already allows.
fn tile_origin(template: &str) -> Option<String> {
    let (scheme, rest) = template.split_once("://")?;
    let host = rest.split('/').next().filter(|host| !host.is_empty())?;
    let host = if host.contains('{') {
        let (_, parent) = host.split_once('.')?;
        if parent.contains('{') {
            return None;
        }
        format!("*.{parent}")
    } else {
        host.to_string()
    };
    Some(format!("{scheme}://{host}"))
}

/// Serves the client for any path the API routes did not claim; API paths keep their
/// problem+json 404.
pub async fn fallback(security: SecurityHeaders, request: Request) -> Response {
    let mut response = client_response(request);
    // The placeholder page styles itself inline; it has no script.
    let policy = (!is_embedded() && response.status() == StatusCode::OK).then(|| {
        HeaderValue::from_static(
            "default-src 'self'; style-src 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        )
    });
    security.apply(response.headers_mut(), policy);
    response
}

fn client_response(request: Request) -> Response {
    let path = request.uri().path();
    if path == "/api" || path.starts_with("/api/") {
        return Problem::new(ErrorCode::NotFound, "no such route").into_response();
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = Problem::new(ErrorCode::MethodNotAllowed, "the web client is only read").into_response();
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let name = path.trim_start_matches('/');
    if let Some(file) = Client::get(name).filter(|_| !name.is_empty()) {
        return file_response(name, file, request.headers());
    }
    // A missing file with an extension (a stale hashed asset, a typo) is a 404 rather
    // than the page, so that a script tag never receives HTML.
    let last_segment = name.rsplit('/').next().unwrap_or("");
    if name.starts_with("assets/") || last_segment.contains('.') {
        return Problem::new(ErrorCode::NotFound, "no such file").into_response();
    }
    match Client::get("index.html") {
        Some(file) => file_response("index.html", file, request.headers()),
        None => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PLACEHOLDER)
                .into_response()
        }
    }
}

/// Whether this binary carries a built web client.
pub fn is_embedded() -> bool {
    Client::get("index.html").is_some()
}

fn file_response(name: &str, file: rust_embed::EmbeddedFile, request_headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let cache_control = if name.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut headers = HeaderMap::new();
    let content_type = match file.metadata.mimetype() {
        "application/manifest+json" => "application/manifest+json".to_string(),
        mime if mime.starts_with("text/") || mime == "application/javascript" => format!("{mime}; charset=utf-8"),
        mime => mime.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    if name == "sw.js" {
        // Lets the worker control the whole origin, not just the folder it came from.
        headers.insert("service-worker-allowed", HeaderValue::from_static("/"));
    }
    let not_modified = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    if not_modified {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, file.data.into_owned()).into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tile_servers_origin_is_the_one_outside_image_source() {
        assert_eq!(
            tile_origin("https://tile.openstreetmap.org/{z}/{x}/{y}.png").as_deref(),
            Some("https://tile.openstreetmap.org")
        );
        assert_eq!(tile_origin("http://localhost:8081/{z}/{x}/{y}.png").as_deref(), Some("http://localhost:8081"));
        assert_eq!(
            tile_origin("https://{s}.tiles.example/{z}/{x}/{y}.png").as_deref(),
            Some("https://*.tiles.example")
        );
        assert_eq!(tile_origin("/tiles/{z}/{x}/{y}.png"), None);
    }
}
