//! The embedded web client: served at `/` beside the API, with the client's own routes
//! falling back to its page and the API keeping its problem documents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Db, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_page_is_served_at_the_root_and_for_its_own_routes() {
    let server = TestServer::start(Db::Sqlite).await;
    for path in ["/", "/chats", "/chats/some-conversation", "/wallet"] {
        let reply = server.get(path, None).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(reply.header("content-type"), Some("text/html; charset=utf-8"), "{path}");
        assert_eq!(reply.header("cache-control"), Some("no-cache"), "{path}");
        assert!(reply.text.contains("Plaza"), "{path}: {}", reply.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_paths_and_missing_files_stay_problems() {
    let server = TestServer::start(Db::Sqlite).await;
    server.get("/api/v1/no/such/route", None).await.assert_problem(404, "not_found");
    server.get("/api/nothing", None).await.assert_problem(404, "not_found");
    server.get("/assets/missing-0123.js", None).await.assert_problem(404, "not_found");
    let reply = server.request("POST", "/chats", None, None).await;
    reply.assert_problem(405, "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_assets_are_cached_forever_and_the_page_revalidates_by_etag() {
    if !client_is_embedded("built_assets_are_cached_forever_and_the_page_revalidates_by_etag") {
        return;
    }
    let server = TestServer::start(Db::Sqlite).await;
    let page = server.get("/", None).await;
    let script = page.text.split("src=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a script tag");
    let asset = server.get(script, None).await;
    assert_eq!(asset.status, 200);
    assert_eq!(asset.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(asset.header("cache-control"), Some("public, max-age=31536000, immutable"));
    let etag = page.header("etag").expect("an etag").to_string();
    let again = server.raw(server.client.get(format!("{}/", server.base)).header("if-none-match", etag.as_str())).await;
    assert_eq!(again.status, 304);
    let manifest = server.get("/manifest.webmanifest", None).await;
    assert_eq!(manifest.status, 200);
    assert_eq!(manifest.body["name"], "Plaza");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_runs_only_its_own_scripts_and_cannot_be_framed() {
    let server = TestServer::start(Db::Sqlite).await;
    for path in ["/", "/chats/some-conversation", "/manifest.webmanifest"] {
        let reply = server.get(path, None).await;
        let policy = reply.header("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
        let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
        if plaza_server::web::is_embedded() {
            assert!(directives.contains(&"script-src 'self'"), "{path}: {policy}");
            assert!(directives.contains(&"connect-src 'self'"), "{path}: {policy}");
            assert!(directives.contains(&"img-src 'self' data: blob:"), "{path}: {policy}");
            assert!(directives.contains(&"media-src 'self' blob:"), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-eval"), "{path}: {policy}");
        assert!(directives.contains(&"frame-ancestors 'none'"), "{path}: {policy}");
        assert!(directives.contains(&"object-src 'none'"), "{path}: {policy}");
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_tile_server_is_the_one_other_origin_images_may_come_from() {
    let server = TestServer::start_with(Db::Sqlite, |config| {
        config.map_tile_url = Some("https://tile.openstreetmap.org/{z}/{x}/{y}.png".to_string());
    })
    .await;
    let reply = server.get("/", None).await;
    let policy = reply.header("content-security-policy").expect("a CSP");
    if plaza_server::web::is_embedded() {
        assert!(policy.contains("img-src 'self' data: blob: https://tile.openstreetmap.org;"), "{policy}");
        assert!(policy.contains("script-src 'self';"), "{policy}");
    }
}

/// Whether this binary embeds a built client. A Rust-only build carries the placeholder
/// page, which has no assets, so a test of the assets cannot run there: it says so loudly
/// and passes. In CI (`CI` set) the client is always built before the Rust tests
/// (`scripts/test`), so a missing client there is a broken build, and the test fails
/// instead of passing without having checked anything.
fn client_is_embedded(test: &str) -> bool {
    if plaza_server::web::is_embedded() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI is set but this binary embeds no web client; build it first (`cd web && npm ci && npm run build`), \
         then rebuild the server so that it embeds web/dist"
    );
    eprintln!(
        "\n*** SKIPPED {test}: no web client is embedded in this build (web/dist was not built). \
         Run `cd web && npm ci && npm run build` and test again to check the assets. ***\n"
    );
    false
}
