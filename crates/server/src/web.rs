//! The web client, embedded: `web/dist` (the Vite build) is compiled into the binary and
//! served at `/` on the same origin as the API.
//!
//! Every path outside `/api/` that names no file gets `index.html`, so the client's own
//! routes (`/chats/…`, `/wallet`) survive a reload. Vite puts content-hashed files under
//! `/assets/`, which may be cached forever; everything else (the page, the service
//! worker, the manifest) is revalidated on each load by its ETag, so a new binary's
//! client reaches users on their next visit. Without a built client (a Rust-only
//! checkout) a short placeholder page says how to build one.

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

/// Serves the client for any path the API routes did not claim; API paths keep their
/// problem+json 404.
pub async fn fallback(request: Request) -> Response {
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
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
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
