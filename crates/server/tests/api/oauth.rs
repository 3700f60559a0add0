//! Plaza's OAuth 2.0 authorization server and OpenID Connect provider over real HTTP, on
//! SQLite and PostgreSQL: the code flow with S256 PKCE only, exact redirect URIs (a bad
//! one is never redirected to), one-use codes whose replay revokes what they gave,
//! rotated refresh tokens whose reuse revokes the family, pairwise subjects, id_tokens
//! that verify against the JWKS across a key rotation, scopes on userinfo, and grants a
//! user revokes with immediate effect. (Python's authlib drives the same server from
//! `scripts/test`: `crates/server/tests/oidc/authlib_flow.py`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Db, Reply, TestServer};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

on_both_databases!(
    a_code_flow_with_pkce_gives_tokens_an_id_token_that_verifies_against_the_jwks_and_a_userinfo,
    a_wrong_or_extra_slashed_redirect_uri_or_an_unknown_client_is_never_redirected_to,
    plain_pkce_or_none_and_other_bad_requests_are_sent_back_to_the_app_with_their_state,
    a_missing_or_wrong_code_verifier_gets_no_tokens,
    a_replayed_code_is_invalid_grant_and_revokes_the_tokens_its_first_use_gave,
    a_reused_refresh_token_revokes_its_whole_family,
    an_expired_code_is_invalid_grant,
    userinfo_needs_the_openid_scope_and_shows_the_profile_only_with_profile,
    a_revoked_grant_stops_its_tokens_at_once_and_is_listed_no_more,
    sub_is_pairwise_per_app_and_union_id_is_shared_by_one_developers_apps,
    a_rotated_signing_key_stays_in_the_jwks_and_old_id_tokens_still_verify,
    the_token_endpoint_authenticates_clients_and_answers_errors_as_rfc_6749_json,
    client_credentials_give_an_app_token_with_no_user_and_revocation_ends_a_token,
    a_granted_request_is_answered_at_once_and_a_denied_one_comes_back_as_access_denied,
    of_many_concurrent_exchanges_of_one_code_exactly_one_wins_and_its_tokens_are_revoked,
    long_expired_codes_and_tokens_are_deleted_and_live_ones_kept,
);

pub(crate) const CALLBACK: &str = "https://coffee.example/callback";

/// A registered app: (id, client id, client secret).
pub(crate) struct App {
    pub(crate) id: String,
    pub(crate) client_id: String,
    pub(crate) secret: String,
}

async fn register_app(server: &TestServer, developer: &str, name: &str, scopes: &[&str]) -> App {
    let body = json!({
        "name": name,
        "home_url": "https://coffee.example/",
        "redirect_uris": [CALLBACK, "http://127.0.0.1:8080/cb?from=plaza"],
        "scopes": scopes,
    });
    let reply = server.post("/api/v1/miniapps", Some(developer), body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    App {
        id: reply.body["id"].as_str().unwrap().to_string(),
        client_id: reply.body["client_id"].as_str().unwrap().to_string(),
        secret: reply.body["client_secret"].as_str().unwrap().to_string(),
    }
}

/// A server with a developer (`dev`), a user (`ann`) and the developer's Coffee House app.
async fn coffee_house(db: Db, scopes: &[&str]) -> (TestServer, String, String, App) {
    let server = TestServer::start(db).await;
    let [(developer, _), (user, _)] = server.register_all(["dev", "ann"]).await;
    let app = register_app(&server, &developer, "Coffee House", scopes).await;
    (server, developer, user, app)
}

/// A request's fields as query pairs.
fn query_pairs(request: &Value) -> Vec<(String, String)> {
    request.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect()
}

/// A PKCE pair (RFC 7636 appendix B): (verifier, S256 challenge).
pub(crate) fn pkce() -> (String, String) {
    let verifier = format!("v{}", plaza_kernel::id::to_hex(&plaza_kernel::random_token_bytes::<32>()));
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub(crate) fn authorization(app: &App, scope: &str, challenge: &str) -> Value {
    json!({
        "client_id": app.client_id,
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "scope": scope,
        "state": "st&te=1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": "n-0S6_WzA2Mj",
    })
}

/// The query parameters of a URL.
pub(crate) fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    let query = url.split_once('?').map(|(_, query)| query).unwrap_or("");
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap().into_iter().collect()
}

/// The signed-in user approves; returns the code from the redirect.
pub(crate) async fn approve(server: &TestServer, user: &str, request: Value) -> String {
    let mut body = request;
    body["approve"] = json!(true);
    let reply = server.post("/api/v1/oauth/authorize", Some(user), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let redirect_to = reply.body["redirect_to"].as_str().unwrap();
    assert!(redirect_to.starts_with(&format!("{CALLBACK}?")), "{redirect_to}");
    let query = query_of(redirect_to);
    assert_eq!(query["state"], "st&te=1");
    assert_eq!(query["iss"], server.base);
    query["code"].clone()
}

/// POSTs a form to an OAuth endpoint with `client_secret_basic`.
pub(crate) async fn form(server: &TestServer, path: &str, app: &App, fields: &[(&str, &str)]) -> Reply {
    let request = server
        .client
        .post(format!("{}/api/v1/oauth/{path}", server.base))
        .basic_auth(&app.client_id, Some(&app.secret))
        .form(fields);
    server.raw(request).await
}

async fn exchange(server: &TestServer, app: &App, code: &str, verifier: &str) -> Reply {
    let fields =
        [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CALLBACK), ("code_verifier", verifier)];
    form(server, "token", app, &fields).await
}

async fn refresh(server: &TestServer, app: &App, refresh_token: &str) -> Reply {
    form(server, "token", app, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
}

/// A user's tokens for `app` with `scope`, through the whole flow.
pub(crate) async fn sign_in(server: &TestServer, user: &str, app: &App, scope: &str) -> Value {
    let (verifier, challenge) = pkce();
    let code = approve(server, user, authorization(app, scope, &challenge)).await;
    let tokens = exchange(server, app, &code, &verifier).await;
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    tokens.body
}

fn assert_oauth_error(reply: &Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "expected {status} {error}: {}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/json"), "{}", reply.text);
    assert_eq!(reply.body["error"], error, "{}", reply.text);
    assert!(reply.body["error_description"].is_string(), "{}", reply.text);
}

async fn userinfo(server: &TestServer, access_token: &str) -> Reply {
    server.get("/api/v1/oauth/userinfo", Some(access_token)).await
}

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn authorize_page(server: &TestServer, query: &[(&str, &str)]) -> reqwest::Response {
    let query = serde_urlencoded::to_string(query).unwrap();
    browser().get(format!("{}/api/v1/oauth/authorize?{query}", server.base)).send().await.unwrap()
}

/// Verifies an id_token against the JWKS as a client would: by its `kid`, with EdDSA,
/// for this issuer and audience.
async fn verify_id_token(server: &TestServer, app: &App, id_token: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(server.get("/api/v1/oauth/jwks", None).await.body).unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let kid = header.kid.expect("a kid");
    let jwk = jwks.find(&kid).unwrap_or_else(|| panic!("kid {kid} is not in the JWKS"));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&[&app.client_id]);
    validation.set_issuer(&[&server.base]);
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    jsonwebtoken::decode::<Value>(id_token, &key, &validation).expect("the id_token verifies").claims
}

async fn a_code_flow_with_pkce_gives_tokens_an_id_token_that_verifies_against_the_jwks_and_a_userinfo(db: Db) {
    let (server, _, user, app) = coffee_house(db, &["openid", "profile", "payments"]).await;

    let discovery = server.get("/.well-known/openid-configuration", None).await;
    assert_eq!(discovery.status, 200, "{}", discovery.text);
    assert_eq!(discovery.body["issuer"], server.base);
    assert_eq!(discovery.body["authorization_endpoint"], format!("{}/api/v1/oauth/authorize", server.base));
    assert_eq!(discovery.body["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(discovery.body["subject_types_supported"], json!(["pairwise"]));
    assert_eq!(discovery.body["id_token_signing_alg_values_supported"], json!(["EdDSA"]));

    // The browser is sent on to the client's consent screen with the same parameters.
    let (verifier, challenge) = pkce();
    let request = authorization(&app, "openid profile", &challenge);
    let query = query_pairs(&request);
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let page = authorize_page(&server, &query).await;
    assert_eq!(page.status(), 302, "{:?}", page.headers());
    let location = page.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("{}/consent?", server.base)), "{location}");
    assert_eq!(query_of(&location)["code_challenge"], challenge);

    let consent_query = location.split_once('?').unwrap().1;
    let consent = server.get(&format!("/api/v1/oauth/consent?{consent_query}"), Some(&user)).await;
    assert_eq!(consent.status, 200, "{}", consent.text);
    assert_eq!(consent.body["app"]["name"], "Coffee House");
    assert_eq!(consent.body["scopes"], json!(["openid", "profile"]));
    assert_eq!(consent.body["already_granted"], false);

    let code = approve(&server, &user, request).await;
    let tokens = exchange(&server, &app, &code, &verifier).await;
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    assert_eq!(tokens.header("cache-control"), Some("no-store"));
    assert_eq!(tokens.body["token_type"], "Bearer");
    assert_eq!(tokens.body["expires_in"], 3600);
    assert_eq!(tokens.body["scope"], "openid profile");
    let access_token = tokens.body["access_token"].as_str().unwrap();
    let refresh_token = tokens.body["refresh_token"].as_str().unwrap();

    let claims = verify_id_token(&server, &app, tokens.body["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["aud"], app.client_id);
    let now = plaza_kernel::Timestamp::now().unix_millis() / 1000;
    assert!((claims["iat"].as_i64().unwrap() - now).abs() < 60, "{claims}");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert!(claims["auth_time"].as_i64().unwrap() <= claims["iat"].as_i64().unwrap());

    let info = userinfo(&server, access_token).await;
    assert_eq!(info.status, 200, "{}", info.text);
    assert_eq!(info.body["sub"], claims["sub"]);
    assert_eq!(info.body["name"], "ann");
    assert!(info.body["union_id"].is_string());
    assert!(info.body.get("picture").is_none(), "ann has no photo, so no picture claim (never null): {}", info.text);
    // An app's token is no Plaza session.
    server.get("/api/v1/me", Some(access_token)).await.assert_problem(401, "unauthenticated");

    // Refreshing with client_secret_post rotates the refresh token.
    let request = server.client.post(format!("{}/api/v1/oauth/token", server.base)).form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", &app.client_id),
        ("client_secret", &app.secret),
    ]);
    let refreshed = server.raw(request).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    assert_ne!(refreshed.body["refresh_token"], tokens.body["refresh_token"]);
    let new_access = refreshed.body["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&server, new_access).await.body["sub"], claims["sub"]);
    let refreshed_claims = verify_id_token(&server, &app, refreshed.body["id_token"].as_str().unwrap()).await;
    assert_eq!(refreshed_claims["sub"], claims["sub"]);
    server.stop().await;
}

async fn a_wrong_or_extra_slashed_redirect_uri_or_an_unknown_client_is_never_redirected_to(db: Db) {
    let (server, _, user, app) = coffee_house(db, &["openid"]).await;
    let (_, challenge) = pkce();
    let slashed = format!("{CALLBACK}/");
    let cased = CALLBACK.replace("coffee", "Coffee");
    for (client_id, redirect_uri) in [
        (app.client_id.as_str(), slashed.as_str()),
        (app.client_id.as_str(), "https://evil.example/callback"),
        (app.client_id.as_str(), cased.as_str()),
        (app.client_id.as_str(), "http://127.0.0.1:8080/cb"),
        (app.client_id.as_str(), ""),
        ("app_nosuchclient", CALLBACK),
    ] {
        let query = [
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", "s"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        let page = authorize_page(&server, &query).await;
        assert_eq!(page.status(), 400, "{redirect_uri}");
        assert!(page.headers().get("location").is_none(), "{redirect_uri} was redirected to");
        let body: Value = page.json().await.unwrap();
        assert_eq!(body["code"], "invalid_authorization_request", "{body}");

        let mut answer = authorization(&app, "openid", &challenge);
        answer["client_id"] = json!(client_id);
        answer["redirect_uri"] = json!(redirect_uri);
        answer["approve"] = json!(true);
        let reply = server.post("/api/v1/oauth/authorize", Some(&user), answer).await;
        reply.assert_problem(400, "invalid_authorization_request");
    }
    // The registered URI with its own query matches, and keeps that query.
    let mut request = authorization(&app, "openid", &challenge);
    request["redirect_uri"] = json!("http://127.0.0.1:8080/cb?from=plaza");
    request["approve"] = json!(true);
    let reply = server.post("/api/v1/oauth/authorize", Some(&user), request).await;
    assert!(reply.body["redirect_to"].as_str().unwrap().starts_with("http://127.0.0.1:8080/cb?from=plaza&code="));
    // The answer needs a signed-in user.
    let reply = server.post("/api/v1/oauth/authorize", None, authorization(&app, "openid", &challenge)).await;
    reply.assert_problem(401, "unauthenticated");
    server.stop().await;
}

async fn plain_pkce_or_none_and_other_bad_requests_are_sent_back_to_the_app_with_their_state(db: Db) {
    let (server, _, user, app) = coffee_house(db, &["openid"]).await;
    let (verifier, challenge) = pkce();
    let cases: [(&str, Value, &str); 7] = [
        ("code_challenge_method", json!("plain"), "invalid_request"),
        ("code_challenge_method", Value::Null, "invalid_request"),
        ("code_challenge", Value::Null, "invalid_request"),
        ("code_challenge", json!("short"), "invalid_request"),
        ("response_type", json!("token"), "unsupported_response_type"),
        ("scope", json!("openid payments"), "invalid_scope"),
        ("scope", json!("openid email"), "invalid_scope"),
    ];
    for (field, value, error) in cases {
        let mut request = authorization(&app, "openid", &challenge);
        if value.is_null() {
            request.as_object_mut().unwrap().remove(field);
        } else {
            request[field] = value.clone();
        }
        if field == "code_challenge_method" && value == json!("plain") {
            request["code_challenge"] = json!(verifier);
        }
        let query: Vec<(String, String)> =
            request.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let page = authorize_page(&server, &query).await;
        assert_eq!(page.status(), 302, "{field}={value}");
        let location = page.headers()["location"].to_str().unwrap().to_string();
        assert!(location.starts_with(&format!("{CALLBACK}?")), "{location}");
        let answer = query_of(&location);
        assert_eq!(answer["error"], error, "{field}={value}: {location}");
        assert_eq!(answer["state"], "st&te=1");
        assert!(!answer.contains_key("code"));

        // The consent screen's answer is refused the same way, and issues no code.
        request["approve"] = json!(true);
        let reply = server.post("/api/v1/oauth/authorize", Some(&user), request).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(query_of(reply.body["redirect_to"].as_str().unwrap())["error"], error);
    }
    server.stop().await;
}

async fn a_missing_or_wrong_code_verifier_gets_no_tokens(db: Db) {
    let (server, _, user, app) = coffee_house(db, &["openid"]).await;
    let (_, challenge) = pkce();
    let code = approve(&server, &user, authorization(&app, "openid", &challenge)).await;
    let missing = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CALLBACK)];
    assert_oauth_error(&form(&server, "token", &app, &missing).await, 400, "invalid_request");
    let (other_verifier, _) = pkce();
    assert_oauth_error(&exchange(&server, &app, &code, &other_verifier).await, 400, "invalid_grant");
    // The challenge itself is not a verifier of itself.
    assert_oauth_error(&exchange(&server, &app, &code, &challenge).await, 400, "invalid_grant");
    server.stop().await;
}

async fn a_replayed_code_is_invalid_grant_and_revokes_the_tokens_its_first_use_gave(db: Db) {
    let (server, _, user, app) = coffee_house(db, &["openid"]).await;
    let (verifier, challenge) = pkce();
    let code = approve(&server, &user, authorization(&app, "openid", &challenge)).await;
    let first = exchange(&server, &app, &code, &verifier).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let access_token = first.body["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&server, access_token).await.status, 200);

    assert_oauth_error(&exchange(&server, &app, &code, &verifier).await, 400, "invalid_grant");
    let after = userinfo(&server, access_token).await;
    after.assert_problem(401, "invalid_token");
    assert!(after.header("www-authenticate").unwrap().contains("invalid_token"));
    let refresh_token = first.body["refresh_token"].as_str().unwrap();
    assert_oauth_error(&refresh(&server, &app, refresh_token).await, 400, "invalid_grant");
    server.stop().await;
}

async fn a_reused_refresh_token_revokes_its_whole_family(db: Db) {
    let (server, developer, user, app) = coffee_house(db, &["openid"]).await;
    let tokens = sign_in(&server, &user, &app, "openid").await;
    let first_refresh = tokens["refresh_token"].as_str().unwrap();
    let second = refresh(&server, &app, first_refresh).await;
    assert_eq!(second.status, 200, "{}", second.text);
    let second_access = second.body["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&server, second_access).await.status, 200);

    // The first refresh token again: it was copied, so everything of its family ends.
    assert_oauth_error(&refresh(&server, &app, first_refresh).await, 400, "invalid_grant");
    userinfo(&server, second_access).await.assert_problem(401, "invalid_token");
    userinfo(&server, tokens["access_token"].as_str().unwrap()).await.assert_problem(401, "invalid_token");
    let second_refresh = second.body["refresh_token"].as_str().unwrap();
    assert_oauth_error(&refresh(&server, &app, second_refresh).await, 400, "invalid_grant");

    // Another app cannot use this app's refresh token, and another sign-in is unharmed.
    let other = register_app(&server, &developer, "Tea Garden", &["openid"]).await;
    let fresh = sign_in(&server, &user, &app, "openid").await;
    assert_oauth_error(&refresh(&server, &other, fresh["refresh_token"].as_str().unwrap()).await, 400, "invalid_grant");
    assert_eq!(refresh(&server, &app, fresh["refresh_token"].as_str().unwrap()).await.status, 200);
    server.stop().await;
}

async fn an_expired_code_is_invalid_grant(db: Db) {
    let (server, _, user, app) = coffee_house(db, &["openid"]).await;
    let (verifier, challenge) = pkce();
    let code = approve(&server, &user, authorization(&app, "openid", &challenge)).await;
    // Five minutes pass (the code's expiry is moved back instead of waiting).
    let mut database = server.database().await;
    let lifetime: i64 =
        sqlx::query_scalar("SELECT expires_at - created_at FROM miniapp_codes").fetch_one(&mut database).await.unwrap();
    assert_eq!(lifetime, 5 * 60 * 1000);
    let now = plaza_kernel::Timestamp::now().unix_millis();
    sqlx::query("UPDATE miniapp_codes SET expires_at = $1").bind(now - 1).execute(&mut database).await.unwrap();
    assert_oauth_error(&exchange(&server, &app, &code, &verifier).await, 400, "invalid_grant");
    server.stop().await;
}

async fn userinfo_needs_the_openid_scope_and_shows_the_profile_only_with_profile(db: Db) {
    let (server, _, user, app) = coffee_house(db, &["openid", "profile", "payments"]).await;
    let payments = sign_in(&server, &user, &app, "payments").await;
    assert!(payments.get("id_token").is_none(), "no openid, no id_token");
    let reply = userinfo(&server, payments["access_token"].as_str().unwrap()).await;
    reply.assert_problem(403, "insufficient_scope");
    assert!(reply.header("www-authenticate").unwrap().contains("insufficient_scope"));

    let openid = sign_in(&server, &user, &app, "openid").await;
    let reply = userinfo(&server, openid["access_token"].as_str().unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.body["sub"].is_string() && reply.body["union_id"].is_string());
    assert!(reply.body.get("name").is_none() && reply.body.get("picture").is_none(), "{}", reply.text);

    userinfo(&server, "pat_nosuchtoken").await.assert_problem(401, "invalid_token");
    server.get("/api/v1/oauth/userinfo", None).await.assert_problem(401, "invalid_token");
    // A Plaza session token is not an app's access token.
    userinfo(&server, &user).await.assert_problem(401, "invalid_token");
    server.stop().await;
}

async fn a_revoked_grant_stops_its_tokens_at_once_and_is_listed_no_more(db: Db) {
    let server = TestServer::start(db).await;
    let [(developer, _), (user, _), (other_user, _)] = server.register_all(["dev", "ann", "bob"]).await;
    let app = register_app(&server, &developer, "Coffee House", &["openid", "profile"]).await;
    let tokens = sign_in(&server, &user, &app, "openid profile").await;
    let others = sign_in(&server, &other_user, &app, "openid").await;

    let listed = server.get("/api/v1/me/authorizations", Some(&user)).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", listed.text);
    assert_eq!(items[0]["app_id"], app.id);
    assert_eq!(items[0]["app"]["name"], "Coffee House");
    assert_eq!(items[0]["scopes"], json!(["openid", "profile"]));
    assert_eq!(listed.body["next_cursor"], Value::Null);

    let revoked = server.request("DELETE", &format!("/api/v1/me/authorizations/{}", app.id), Some(&user), None).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    userinfo(&server, tokens["access_token"].as_str().unwrap()).await.assert_problem(401, "invalid_token");
    assert_oauth_error(&refresh(&server, &app, tokens["refresh_token"].as_str().unwrap()).await, 400, "invalid_grant");
    let listed = server.get("/api/v1/me/authorizations", Some(&user)).await;
    assert_eq!(listed.body["items"], json!([]), "{}", listed.text);
    // Another user's grant to the same app is untouched.
    assert_eq!(userinfo(&server, others["access_token"].as_str().unwrap()).await.status, 200);
    server.get("/api/v1/me/authorizations", None).await.assert_problem(401, "unauthenticated");
    server.stop().await;
}

async fn sub_is_pairwise_per_app_and_union_id_is_shared_by_one_developers_apps(db: Db) {
    let server = TestServer::start(db).await;
    let [(developer, _), (other_developer, _), (user, _), (second_user, _)] =
        server.register_all(["dev", "dev2", "ann", "bob"]).await;
    let coffee = register_app(&server, &developer, "Coffee House", &["openid"]).await;
    let tea = register_app(&server, &developer, "Tea Garden", &["openid"]).await;
    let juice = register_app(&server, &other_developer, "Juice Bar", &["openid"]).await;
    let mut seen = Vec::new();
    for app in [&coffee, &tea, &juice] {
        let tokens = sign_in(&server, &user, app, "openid").await;
        let info = userinfo(&server, tokens["access_token"].as_str().unwrap()).await;
        assert_eq!(info.status, 200, "{}", info.text);
        // Stable: a second sign-in gives the same subject.
        let again = sign_in(&server, &user, app, "openid").await;
        assert_eq!(userinfo(&server, again["access_token"].as_str().unwrap()).await.body["sub"], info.body["sub"]);
        seen.push((info.body["sub"].clone(), info.body["union_id"].clone()));
    }
    assert_ne!(seen[0].0, seen[1].0, "one developer's two apps see different subs");
    assert_ne!(seen[0].0, seen[2].0);
    assert_eq!(seen[0].1, seen[1].1, "one developer's apps share the union_id");
    assert_ne!(seen[0].1, seen[2].1, "another developer's apps do not");
    let bob = sign_in(&server, &second_user, &coffee, "openid").await;
    let bob_info = userinfo(&server, bob["access_token"].as_str().unwrap()).await;
    assert_ne!(bob_info.body["sub"], seen[0].0);
    assert_ne!(bob_info.body["union_id"], seen[0].1);
    server.stop().await;
}

async fn a_rotated_signing_key_stays_in_the_jwks_and_old_id_tokens_still_verify(db: Db) {
    let (server, _, user, app) = coffee_house(db, &["openid"]).await;
    let old = sign_in(&server, &user, &app, "openid").await;
    let old_id_token = old["id_token"].as_str().unwrap();
    let old_kid = jsonwebtoken::decode_header(old_id_token).unwrap().kid.unwrap();
    let jwks = server.get("/api/v1/oauth/jwks", None).await;
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 1, "{}", jwks.text);
    assert_eq!(jwks.body["keys"][0]["kty"], "OKP");
    assert_eq!(jwks.body["keys"][0]["crv"], "Ed25519");
    assert!(jwks.body["keys"][0].get("d").is_none(), "no private part is published");

    // Thirty-one days pass for the key (its age is moved back instead of waiting).
    let mut database = server.database().await;
    let month_ago = plaza_kernel::Timestamp::now().unix_millis() - 31 * 86_400 * 1000;
    sqlx::query("UPDATE miniapp_signing_keys SET created_at = $1")
        .bind(month_ago)
        .execute(&mut database)
        .await
        .unwrap();
    let new = sign_in(&server, &user, &app, "openid").await;
    let new_id_token = new["id_token"].as_str().unwrap();
    let new_kid = jsonwebtoken::decode_header(new_id_token).unwrap().kid.unwrap();
    assert_ne!(new_kid, old_kid, "the old key was rotated out");

    let jwks = server.get("/api/v1/oauth/jwks", None).await;
    let kids: Vec<&str> = jwks.body["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()], "the new key first, the old one still published");
    verify_id_token(&server, &app, old_id_token).await;
    verify_id_token(&server, &app, new_id_token).await;
    // And the next signature uses the new key again (no rotation at every signature).
    let next = sign_in(&server, &user, &app, "openid").await;
    assert_eq!(jsonwebtoken::decode_header(next["id_token"].as_str().unwrap()).unwrap().kid.unwrap(), new_kid);
    server.stop().await;
}

async fn the_token_endpoint_authenticates_clients_and_answers_errors_as_rfc_6749_json(db: Db) {
    let (server, developer, user, app) = coffee_house(db, &["openid"]).await;
    let other = register_app(&server, &developer, "Tea Garden", &["openid"]).await;
    let (verifier, challenge) = pkce();
    let code = approve(&server, &user, authorization(&app, "openid", &challenge)).await;

    let wrong_secret = App { id: app.id.clone(), client_id: app.client_id.clone(), secret: other.secret.clone() };
    let reply = exchange(&server, &wrong_secret, &code, &verifier).await;
    assert_oauth_error(&reply, 401, "invalid_client");
    assert!(reply.header("www-authenticate").unwrap().starts_with("Basic"));
    let anonymous = server.client.post(format!("{}/api/v1/oauth/token", server.base)).form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("client_id", &app.client_id),
    ]);
    assert_oauth_error(&server.raw(anonymous).await, 401, "invalid_client");
    // Two authentication methods at once are refused.
    let both = server
        .client
        .post(format!("{}/api/v1/oauth/token", server.base))
        .basic_auth(&app.client_id, Some(&app.secret))
        .form(&[("grant_type", "client_credentials"), ("client_secret", &app.secret)]);
    assert_oauth_error(&server.raw(both).await, 400, "invalid_request");
    // A code is only for the client it was issued to.
    assert_oauth_error(&exchange(&server, &other, &code, &verifier).await, 400, "invalid_grant");
    let wrong_uri = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://127.0.0.1:8080/cb?from=plaza"),
        ("code_verifier", verifier.as_str()),
    ];
    assert_oauth_error(&form(&server, "token", &app, &wrong_uri).await, 400, "invalid_grant");
    assert_oauth_error(
        &form(&server, "token", &app, &[("grant_type", "password")]).await,
        400,
        "unsupported_grant_type",
    );
    assert_oauth_error(&form(&server, "token", &app, &[]).await, 400, "invalid_request");
    let twice = [("grant_type", "client_credentials"), ("grant_type", "client_credentials")];
    assert_oauth_error(&form(&server, "token", &app, &twice).await, 400, "invalid_request");
    // After all that the code still works once: none of those requests could use it.
    assert_eq!(exchange(&server, &app, &code, &verifier).await.status, 200);
    server.stop().await;
}

async fn client_credentials_give_an_app_token_with_no_user_and_revocation_ends_a_token(db: Db) {
    let (server, _, user, app) = coffee_house(db, &["openid", "payments"]).await;
    let reply = form(&server, "token", &app, &[("grant_type", "client_credentials"), ("scope", "payments")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["scope"], "payments");
    assert!(reply.body.get("refresh_token").is_none() && reply.body.get("id_token").is_none(), "{}", reply.text);
    let app_token = reply.body["access_token"].as_str().unwrap();
    // An app token speaks for no user.
    userinfo(&server, app_token).await.assert_problem(401, "invalid_token");
    let scope = [("grant_type", "client_credentials"), ("scope", "profile")];
    assert_oauth_error(&form(&server, "token", &app, &scope).await, 400, "invalid_scope");

    // RFC 7009: the app revokes a user's access token; unknown tokens are answered alike.
    let tokens = sign_in(&server, &user, &app, "openid").await;
    let access_token = tokens["access_token"].as_str().unwrap();
    assert_eq!(form(&server, "revoke", &app, &[("token", access_token)]).await.status, 200);
    userinfo(&server, access_token).await.assert_problem(401, "invalid_token");
    assert_eq!(form(&server, "revoke", &app, &[("token", "pat_nosuch")]).await.status, 200);
    // Revoking a refresh token ends its family.
    let tokens = sign_in(&server, &user, &app, "openid").await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let fields = [("token", refresh_token), ("token_type_hint", "refresh_token")];
    assert_eq!(form(&server, "revoke", &app, &fields).await.status, 200);
    userinfo(&server, tokens["access_token"].as_str().unwrap()).await.assert_problem(401, "invalid_token");
    assert_oauth_error(&refresh(&server, &app, refresh_token).await, 400, "invalid_grant");
    assert_oauth_error(&form(&server, "revoke", &app, &[]).await, 400, "invalid_request");
    server.stop().await;
}

async fn a_granted_request_is_answered_at_once_and_a_denied_one_comes_back_as_access_denied(db: Db) {
    let (server, _, user, app) = coffee_house(db, &["openid", "profile", "payments"]).await;
    let (_, challenge) = pkce();
    let mut denied = authorization(&app, "openid profile", &challenge);
    denied["approve"] = json!(false);
    let reply = server.post("/api/v1/oauth/authorize", Some(&user), denied).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let answer = query_of(reply.body["redirect_to"].as_str().unwrap());
    assert_eq!(answer["error"], "access_denied");
    assert_eq!(answer["state"], "st&te=1");
    assert!(!answer.contains_key("code"));
    let listed = server.get("/api/v1/me/authorizations", Some(&user)).await;
    assert_eq!(listed.body["items"], json!([]), "a denial grants nothing");

    let consent_path = |scope: &str| {
        let query = serde_urlencoded::to_string([
            ("client_id", app.client_id.as_str()),
            ("redirect_uri", CALLBACK),
            ("response_type", "code"),
            ("scope", scope),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .unwrap();
        format!("/api/v1/oauth/consent?{query}")
    };
    sign_in(&server, &user, &app, "openid profile").await;
    let consent = server.get(&consent_path("openid profile"), Some(&user)).await;
    assert_eq!(consent.body["already_granted"], true, "{}", consent.text);
    let consent = server.get(&consent_path("profile"), Some(&user)).await;
    assert_eq!(consent.body["already_granted"], true, "a subset was granted too");
    let consent = server.get(&consent_path("openid payments"), Some(&user)).await;
    assert_eq!(consent.body["already_granted"], false, "payments was never granted");
    // Granting more widens the grant.
    sign_in(&server, &user, &app, "payments").await;
    let listed = server.get("/api/v1/me/authorizations", Some(&user)).await;
    assert_eq!(listed.body["items"][0]["scopes"], json!(["openid", "profile", "payments"]), "{}", listed.text);
    server.get(&consent_path("openid"), None).await.assert_problem(401, "unauthenticated");
    server.stop().await;
}

async fn of_many_concurrent_exchanges_of_one_code_exactly_one_wins_and_its_tokens_are_revoked(db: Db) {
    let (server, _, user, app) = coffee_house(db, &["openid"]).await;
    let (verifier, challenge) = pkce();
    let code = approve(&server, &user, authorization(&app, "openid", &challenge)).await;
    let attempts = (0..8).map(|_| exchange(&server, &app, &code, &verifier));
    let replies = futures_util::future::join_all(attempts).await;
    let winners: Vec<&Reply> = replies.iter().filter(|reply| reply.status == 200).collect();
    assert_eq!(winners.len(), 1, "{:?}", replies.iter().map(|reply| &reply.text).collect::<Vec<_>>());
    for reply in replies.iter().filter(|reply| reply.status != 200) {
        assert_oauth_error(reply, 400, "invalid_grant");
    }
    // The others were replays, so what the winner got is revoked too.
    let access_token = winners[0].body["access_token"].as_str().unwrap();
    userinfo(&server, access_token).await.assert_problem(401, "invalid_token");
    server.stop().await;
}

async fn long_expired_codes_and_tokens_are_deleted_and_live_ones_kept(db: Db) {
    let (server, _, user, app) = coffee_house(db, &["openid"]).await;
    sign_in(&server, &user, &app, "openid").await;
    let live = sign_in(&server, &user, &app, "openid").await;
    // The first sign-in's code and tokens expired long ago (moved back instead of waiting).
    let mut database = server.database().await;
    let live_hashes: Vec<String> =
        sqlx::query_scalar("SELECT token_hash FROM miniapp_tokens").fetch_all(&mut database).await.unwrap();
    assert_eq!(live_hashes.len(), 4);
    let long_ago = plaza_kernel::Timestamp::now().unix_millis() - 40 * 86_400 * 1000;
    let first_code: String = sqlx::query_scalar("SELECT code_hash FROM miniapp_codes ORDER BY created_at LIMIT 1")
        .fetch_one(&mut database)
        .await
        .unwrap();
    sqlx::query("UPDATE miniapp_codes SET expires_at = $1 WHERE code_hash = $2")
        .bind(long_ago)
        .bind(&first_code)
        .execute(&mut database)
        .await
        .unwrap();
    let first_family: String = sqlx::query_scalar("SELECT family_id FROM miniapp_codes WHERE code_hash = $1")
        .bind(&first_code)
        .fetch_one(&mut database)
        .await
        .unwrap();
    sqlx::query("UPDATE miniapp_tokens SET expires_at = $1 WHERE family_id = $2")
        .bind(long_ago)
        .bind(&first_family)
        .execute(&mut database)
        .await
        .unwrap();
    drop(database);
    // Every node prunes when it starts, then hourly.
    let database_url = server.database_url.clone();
    let _data = server.stop_keeping_data().await;
    let server = TestServer::start_on(&database_url, |_| {}).await;
    let mut database = server.database().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let tokens: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM miniapp_tokens").fetch_one(&mut database).await.unwrap();
        let codes: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM miniapp_codes").fetch_one(&mut database).await.unwrap();
        if tokens == 2 && codes == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {tokens} tokens and {codes} codes");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(userinfo(&server, live["access_token"].as_str().unwrap()).await.status, 200);
    server.stop().await;
}
