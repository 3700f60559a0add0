//! Accounts over real HTTP, on SQLite and PostgreSQL: what API.md promises a client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use crate::support::{Db, TestServer};
use serde_json::json;

on_both_databases!(
    registering_returns_a_token_that_identifies_the_user,
    logging_in_works_and_logging_out_revokes_the_token,
    an_unknown_user_and_a_wrong_password_get_the_same_401,
    usernames_are_unique_regardless_of_case,
    invalid_registrations_are_422_naming_the_field,
    requests_without_a_valid_token_are_401,
    many_sessions_at_once_each_see_their_own_user_and_an_ended_one_is_refused,
    a_session_unused_for_thirty_days_expires,
    login_is_rate_limited_per_username_with_retry_after,
    registration_is_rate_limited_per_client_address,
    users_are_found_by_username_or_display_name_prefix_and_paged,
    user_lookup_returns_the_public_profile_or_404,
    a_contact_request_is_accepted_by_asking_back,
    contact_requests_can_be_accepted_declined_and_filtered,
    bad_contact_requests_are_refused_with_their_codes,
    concurrent_registrations_of_one_name_create_one_user,
    two_people_asking_each_other_at_once_become_contacts,
    a_name_in_the_admin_setting_that_nobody_had_registered_grants_its_registrant_nothing,
    admins_are_granted_and_revoked_by_the_operator,
    a_stranger_s_failed_logins_do_not_lock_the_owner_out,
    a_socket_closes_when_its_session_logs_out,
    logging_out_everywhere_ends_every_session_and_socket,
    changing_the_password_ends_every_other_session_and_socket,
    names_with_bidirectional_overrides_are_refused,
);

/// `POST /api/v1/auth/register` with `body` as it is.
async fn register_with(server: &TestServer, body: serde_json::Value) -> support::Reply {
    server.post("/api/v1/auth/register", None, body).await
}

async fn registering_returns_a_token_that_identifies_the_user(db: Db) {
    let server = TestServer::start(db).await;
    let ann = json!({"username": "Ann_Lee", "password": "correct horse", "display_name": " Ann Lee "});
    let reply = register_with(&server, ann).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let token = reply.body["token"].as_str().unwrap();
    assert_eq!(token.len(), 64, "a 256-bit token in hex");
    let user = &reply.body["user"];
    assert_eq!(user["username"], "ann_lee");
    assert_eq!(user["display_name"], "Ann Lee");
    assert!(user["avatar_url"].is_null());
    assert!(user["created_at"].as_str().unwrap().ends_with('Z'));

    let me = server.get("/api/v1/me", Some(token)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["id"], user["id"]);
    assert_eq!(me.body["roles"], json!([]));

    // The token itself is never stored, only its digest.
    let mut database = server.database().await;
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT token_hash FROM sessions").fetch_all(&mut database).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users").fetch_one(&mut database).await.unwrap();
    assert!(hash.starts_with("$argon2id$"));
}

async fn logging_in_works_and_logging_out_revokes_the_token(db: Db) {
    let server = TestServer::start(db).await;
    let (first_token, user_id) = server.register("bob").await;
    let login = server.post("/api/v1/auth/login", None, json!({"username": "BOB", "password": "password-bob"})).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let second_token = login.body["token"].as_str().unwrap().to_string();
    assert_ne!(first_token, second_token);
    assert_eq!(login.body["user"]["id"], user_id.as_str());

    let logout = server.request("POST", "/api/v1/auth/logout", Some(&second_token), None).await;
    assert_eq!(logout.status, 204);
    server.get("/api/v1/me", Some(&second_token)).await.assert_problem(401, "unauthenticated");
    // Other sessions of the same user are untouched.
    assert_eq!(server.get("/api/v1/me", Some(&first_token)).await.status, 200);
}

async fn an_unknown_user_and_a_wrong_password_get_the_same_401(db: Db) {
    let server = TestServer::start(db).await;
    server.register("carol").await;
    let wrong =
        server.post("/api/v1/auth/login", None, json!({"username": "carol", "password": "not-her-password"})).await;
    let unknown =
        server.post("/api/v1/auth/login", None, json!({"username": "nobody", "password": "whatever123"})).await;
    let malformed =
        server.post("/api/v1/auth/login", None, json!({"username": "no way!", "password": "whatever123"})).await;
    for reply in [&wrong, &unknown, &malformed] {
        reply.assert_problem(401, "invalid_credentials");
    }
    assert_eq!(wrong.body["detail"], unknown.body["detail"]);
    assert_eq!(wrong.body["title"], unknown.body["title"]);
}

async fn usernames_are_unique_regardless_of_case(db: Db) {
    let server = TestServer::start(db).await;
    server.register("dave").await;
    let again = register_with(&server, json!({"username": "DAVE", "password": "another password"})).await;
    again.assert_problem(409, "username_taken");
    assert_eq!(again.body["field"], "username");
}

async fn invalid_registrations_are_422_naming_the_field(db: Db) {
    let server = TestServer::start(db).await;
    let cases = [
        (json!({"username": "ab", "password": "long enough"}), "username"),
        (json!({"username": &"x".repeat(33), "password": "long enough"}), "username"),
        (json!({"username": "has space", "password": "long enough"}), "username"),
        (json!({"username": "fine_name", "password": "short"}), "password"),
        (json!({"username": "fine_name", "password": "long enough", "display_name": "   "}), "display_name"),
        (json!({"username": "fine_name", "password": "long enough", "display_name": "x".repeat(65)}), "display_name"),
        (json!({"password": "long enough"}), "username"),
        (json!({"username": "fine_name"}), "password"),
        (json!({"username": 42, "password": "long enough"}), "username"),
        (json!({"username": "fine_name", "password": ["not", "a", "string"]}), "password"),
    ];
    for (body, field) in cases {
        let reply = register_with(&server, body.clone()).await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "for {body}");
    }
    // Nothing was created by any of them.
    let mut database = server.database().await;
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut database).await.unwrap();
    assert_eq!(users, 0);
}

async fn requests_without_a_valid_token_are_401(db: Db) {
    let server = TestServer::start(db).await;
    server.get("/api/v1/me", None).await.assert_problem(401, "unauthenticated");
    server.get("/api/v1/me", Some("not-a-token")).await.assert_problem(401, "unauthenticated");
    server.get("/api/v1/me", Some(&"ab".repeat(32))).await.assert_problem(401, "unauthenticated");
    let basic =
        server.raw(server.client.get(format!("{}/api/v1/me", server.base)).header("authorization", "Basic YTpi")).await;
    basic.assert_problem(401, "unauthenticated");
    server.get("/api/v1/contacts", None).await.assert_problem(401, "unauthenticated");
    server.request("POST", "/api/v1/auth/logout", None, None).await.assert_problem(401, "unauthenticated");
}

/// Session reads that miss the cache are batched (`session_reads.rs`): a crowd of requests
/// at once, each with its own token (some twice, some unknown, one logged out), must each
/// be answered as if read alone.
async fn many_sessions_at_once_each_see_their_own_user_and_an_ended_one_is_refused(db: Db) {
    let server = TestServer::start_with(db, |config| config.session_cache = std::time::Duration::ZERO).await;
    let mut people = Vec::new();
    for n in 0..12 {
        people.push(server.register(&format!("crowd{n}")).await);
    }
    let (ended, _) = server.register("gone").await;
    let out = server.request("POST", "/api/v1/auth/logout", Some(&ended), None).await;
    assert_eq!(out.status, 204, "{}", out.text);
    let mut asks: Vec<(String, Option<String>)> = Vec::new();
    for round in 0..4 {
        for (token, id) in &people {
            asks.push((token.clone(), Some(id.clone())));
        }
        asks.push((format!("{:064x}", round), None));
        asks.push((ended.clone(), None));
    }
    let replies =
        futures_util::future::join_all(asks.iter().map(|(token, _)| server.get("/api/v1/me", Some(token)))).await;
    for ((_, expected), reply) in asks.iter().zip(replies) {
        match expected {
            Some(id) => {
                assert_eq!(reply.status, 200, "{}", reply.text);
                assert_eq!(reply.body["id"], id.as_str(), "{}", reply.text);
            }
            None => {
                reply.assert_problem(401, "unauthenticated");
            }
        }
    }
}

/// Backdates every session's last use to `at` (ms since the epoch), behind the server's back.
async fn set_sessions_last_used(database: &mut sqlx::AnyConnection, at: i64) {
    sqlx::query("UPDATE sessions SET last_used_at = $1").bind(at).execute(database).await.unwrap();
}

async fn a_session_unused_for_thirty_days_expires(db: Db) {
    // The test rewrites the database under the server, so nothing may be served from memory.
    let server = TestServer::start_with(db, |config| config.session_cache = std::time::Duration::ZERO).await;
    let (token, _) = server.register("erin").await;
    let mut database = server.database().await;
    let twenty_nine_days_ago = plaza_kernel::Timestamp::now().unix_millis() - 29 * 24 * 3600 * 1000;
    set_sessions_last_used(&mut database, twenty_nine_days_ago).await;
    assert_eq!(server.get("/api/v1/me", Some(&token)).await.status, 200, "29 days of disuse is fine");
    // Use counts: it was refreshed just now.
    let touched: i64 = sqlx::query_scalar("SELECT last_used_at FROM sessions").fetch_one(&mut database).await.unwrap();
    assert!(touched > twenty_nine_days_ago);

    let thirty_one_days_ago = plaza_kernel::Timestamp::now().unix_millis() - 31 * 24 * 3600 * 1000;
    set_sessions_last_used(&mut database, thirty_one_days_ago).await;
    server.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthenticated");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(&mut database).await.unwrap();
    assert_eq!(left, 0, "the expired session is deleted");
}

async fn login_is_rate_limited_per_username_with_retry_after(db: Db) {
    let server = TestServer::start_with(db, |config| config.auth_attempts_per_username = 3).await;
    server.register("frank").await; // one attempt on "frank"
    for _ in 0..2 {
        let reply =
            server.post("/api/v1/auth/login", None, json!({"username": "frank", "password": "wrong password"})).await;
        reply.assert_problem(401, "invalid_credentials");
    }
    let limited =
        server.post("/api/v1/auth/login", None, json!({"username": "frank", "password": "password-frank"})).await;
    limited.assert_problem(429, "rate_limited");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    // Another username from the same address is not affected by frank's limit.
    server.register("grace").await;
}

async fn registration_is_rate_limited_per_client_address(db: Db) {
    let server = TestServer::start_with(db, |config| config.auth_attempts_per_address = 2).await;
    server.register("henry").await;
    server.register("irene").await;
    let limited = register_with(&server, json!({"username": "jack", "password": "long enough"})).await;
    limited.assert_problem(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
}

async fn users_are_found_by_username_or_display_name_prefix_and_paged(db: Db) {
    let server = TestServer::start_with(db, |config| config.auth_attempts_per_address = 100).await;
    let (token, _) = server.register("searcher").await;
    for (username, display_name) in [
        ("maria", "Maria Gomez"),
        ("marco", "Marco Polo"),
        ("mark_1", "Mark One"),
        ("zed", "Marigold Zed"),
        ("m_x", "Nope"),
    ] {
        let body = json!({"username": username, "password": "long enough", "display_name": display_name});
        let reply = register_with(&server, body).await;
        assert_eq!(reply.status, 201);
    }
    let all = server.get("/api/v1/users?q=MAR", Some(&token)).await;
    assert_eq!(all.status, 200, "{}", all.text);
    let names: Vec<&str> =
        all.body["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["marco", "maria", "mark_1", "zed"], "username or display-name prefix, ordered by username");
    assert!(all.body["next_cursor"].is_null());
    assert!(all.body["items"][0].get("password_hash").is_none());

    // `_` is a literal, not a wildcard.
    let literal = server.get("/api/v1/users?q=m_", Some(&token)).await;
    let names: Vec<&str> =
        literal.body["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["m_x"]);

    let first = server.get("/api/v1/users?q=mar&limit=2", Some(&token)).await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = server.get(&format!("/api/v1/users?q=mar&limit=2&cursor={cursor}"), Some(&token)).await;
    let names: Vec<&str> =
        second.body["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["mark_1", "zed"]);
    assert!(second.body["next_cursor"].is_null());

    for (query, field) in [
        ("", "q"),
        ("?q=", "q"),
        (&format!("?q={}", "a".repeat(65)), "q"),
        ("?q=ma&limit=0", "limit"),
        ("?q=ma&limit=201", "limit"),
        ("?q=ma&limit=ten", "limit"),
        ("?q=ma&cursor=nonsense", "cursor"),
    ] {
        let reply = server.get(&format!("/api/v1/users{query}"), Some(&token)).await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "for {query}");
    }
}

async fn user_lookup_returns_the_public_profile_or_404(db: Db) {
    let server = TestServer::start(db).await;
    let [(token, _), (_, leo)] = server.register_all(["kate", "leo"]).await;
    let reply = server.get(&format!("/api/v1/users/{leo}"), Some(&token)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["username"], "leo");
    let keys: Vec<&String> = reply.body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "avatar_url",
            "bio",
            "created_at",
            "display_name",
            "followed_by_me",
            "followers_count",
            "following_count",
            "id",
            "username"
        ]
    );
    server.get("/api/v1/users/01NOSUCHUSER", Some(&token)).await.assert_problem(404, "user_not_found");
}

async fn a_contact_request_is_accepted_by_asking_back(db: Db) {
    let server = TestServer::start(db).await;
    let [(mia, mia_id), (ned, ned_id)] = server.register_all(["mia", "ned"]).await;

    let request = server.post("/api/v1/contacts", Some(&mia), json!({"user_id": ned_id})).await;
    assert_eq!(request.status, 201, "{}", request.text);
    assert_eq!(request.body["status"], "outgoing");
    assert_eq!(request.body["user"]["username"], "ned");

    let again = server.post("/api/v1/contacts", Some(&mia), json!({"user_id": ned_id})).await;
    assert_eq!(again.status, 200, "asking twice changes nothing");
    assert_eq!(again.body["status"], "outgoing");

    let neds_view = server.get("/api/v1/contacts", Some(&ned)).await;
    assert_eq!(neds_view.body["items"][0]["status"], "incoming");
    assert_eq!(neds_view.body["items"][0]["user"]["id"], mia_id.as_str());

    let accept = server.post("/api/v1/contacts", Some(&ned), json!({"user_id": mia_id})).await;
    assert_eq!(accept.status, 200);
    assert_eq!(accept.body["status"], "accepted");
    for token in [&mia, &ned] {
        let list = server.get("/api/v1/contacts", Some(token)).await;
        assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
        assert_eq!(list.body["items"][0]["status"], "accepted");
    }
}

async fn contact_requests_can_be_accepted_declined_and_filtered(db: Db) {
    let server = TestServer::start(db).await;
    let [(olga, olga_id), (pete, pete_id), (quinn, quinn_id)] = server.register_all(["olga", "pete", "quinn"]).await;
    assert_eq!(server.post("/api/v1/contacts", Some(&pete), json!({"user_id": olga_id})).await.status, 201);
    assert_eq!(server.post("/api/v1/contacts", Some(&quinn), json!({"user_id": olga_id})).await.status, 201);

    let incoming = server.get("/api/v1/contacts?status=incoming", Some(&olga)).await;
    assert_eq!(incoming.body["items"].as_array().unwrap().len(), 2);

    let accepted = server.request("POST", &format!("/api/v1/contacts/{pete_id}/accept"), Some(&olga), None).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(accepted.body["status"], "accepted");
    let declined = server.request("DELETE", &format!("/api/v1/contacts/{quinn_id}"), Some(&olga), None).await;
    assert_eq!(declined.status, 204);

    let olgas = server.get("/api/v1/contacts", Some(&olga)).await;
    let items = olgas.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["user"]["username"], "pete");
    assert_eq!(server.get("/api/v1/contacts?status=outgoing", Some(&quinn)).await.body["items"], json!([]));
    let petes_accepted = server.get("/api/v1/contacts?status=accepted", Some(&pete)).await;
    assert_eq!(petes_accepted.body["items"][0]["user"]["id"], olga_id.as_str());

    // Accepting what was never asked, or removing what does not exist, is a 404.
    server
        .request("POST", &format!("/api/v1/contacts/{quinn_id}/accept"), Some(&olga), None)
        .await
        .assert_problem(404, "contact_not_found");
    server
        .request("DELETE", &format!("/api/v1/contacts/{quinn_id}"), Some(&olga), None)
        .await
        .assert_problem(404, "contact_not_found");
    server.get("/api/v1/contacts?status=friends", Some(&olga)).await.assert_problem(422, "invalid_field");
}

async fn bad_contact_requests_are_refused_with_their_codes(db: Db) {
    let server = TestServer::start(db).await;
    let (rita, rita_id) = server.register("rita").await;
    server
        .post("/api/v1/contacts", Some(&rita), json!({"user_id": rita_id}))
        .await
        .assert_problem(422, "cannot_contact_self");
    server
        .post("/api/v1/contacts", Some(&rita), json!({"user_id": "01NOBODY"}))
        .await
        .assert_problem(404, "user_not_found");
    let missing = server.post("/api/v1/contacts", Some(&rita), json!({})).await;
    missing.assert_problem(422, "invalid_field");
    assert_eq!(missing.body["field"], "user_id");
    let mut database = server.database().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contacts").fetch_one(&mut database).await.unwrap();
    assert_eq!(rows, 0);
}

async fn concurrent_registrations_of_one_name_create_one_user(db: Db) {
    let server = std::sync::Arc::new(
        TestServer::start_with(db, |config| {
            config.auth_attempts_per_address = 100;
            config.auth_attempts_per_username = 100;
        })
        .await,
    );
    let attempts = (0..12).map(|n| {
        let server = server.clone();
        tokio::spawn(async move {
            register_with(&server, json!({"username": "same_name", "password": format!("password {n}")})).await
        })
    });
    let mut created = 0;
    for attempt in attempts {
        let reply = attempt.await.unwrap();
        match reply.status {
            201 => created += 1,
            _ => {
                reply.assert_problem(409, "username_taken");
            }
        }
    }
    assert_eq!(created, 1);
    let mut database = server.database().await;
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut database).await.unwrap();
    assert_eq!(users, 1);
}

async fn two_people_asking_each_other_at_once_become_contacts(db: Db) {
    let server = std::sync::Arc::new(TestServer::start_with(db, |config| config.auth_attempts_per_address = 100).await);
    for round in 0..8 {
        let (first, first_id) = server.register(&format!("first_{round}")).await;
        let (second, second_id) = server.register(&format!("second_{round}")).await;
        let (a, b) = tokio::join!(
            server.post("/api/v1/contacts", Some(&first), json!({"user_id": second_id})),
            server.post("/api/v1/contacts", Some(&second), json!({"user_id": first_id})),
        );
        assert!([200, 201].contains(&a.status) && [200, 201].contains(&b.status), "{} / {}", a.text, b.text);
        for token in [&first, &second] {
            let list = server.get("/api/v1/contacts", Some(token)).await;
            let items = list.body["items"].as_array().unwrap();
            assert_eq!(items.len(), 1);
            assert_eq!(items[0]["status"], "accepted", "round {round}: {}", list.text);
        }
    }
}

async fn a_name_in_the_admin_setting_that_nobody_had_registered_grants_its_registrant_nothing(db: Db) {
    let server = TestServer::start_with(db, |config| {
        config.admins.insert("root_user".to_string());
    })
    .await;
    // Whoever registers the listed name first must not become an admin.
    let (squatter, _) = server.register("Root_User").await;
    assert_eq!(server.get("/api/v1/me", Some(&squatter)).await.body["roles"], json!([]));
    server.get("/api/v1/admin/ledger/check", Some(&squatter)).await.assert_problem(403, "forbidden");

    // At the next start-up the setting grants the account that now exists.
    let database_url = server.database_url.clone();
    let _data = server.stop_keeping_data().await;
    let restarted = TestServer::start_on(&database_url, |config| {
        config.admins.insert("root_user".to_string());
        config.admins.insert("nobody_yet".to_string());
    })
    .await;
    let login = restarted
        .post("/api/v1/auth/login", None, json!({"username": "root_user", "password": "password-Root_User"}))
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let token = login.body["token"].as_str().unwrap();
    assert_eq!(restarted.get("/api/v1/me", Some(token)).await.body["roles"], json!(["admin"]));
    let (late, _) = restarted.register("nobody_yet").await;
    assert_eq!(restarted.get("/api/v1/me", Some(&late)).await.body["roles"], json!([]), "skipped, not remembered");
}

async fn admins_are_granted_and_revoked_by_the_operator(db: Db) {
    let server = TestServer::start_with(db, |config| config.session_cache = std::time::Duration::ZERO).await;
    let [(root, _), (plain, _)] = server.register_all(["root_user", "plain_user"]).await;
    assert_eq!(server.set_admin("root_user", true).await, "root_user is now an admin");
    assert_eq!(server.set_admin("root_user", true).await, "root_user was already an admin");
    assert_eq!(server.get("/api/v1/me", Some(&root)).await.body["roles"], json!(["admin"]));
    assert_eq!(server.get("/api/v1/me", Some(&plain)).await.body["roles"], json!([]));
    assert_eq!(server.get("/api/v1/admin/ledger/check", Some(&root)).await.status, 200);
    assert_eq!(server.set_admin("root_user", false).await, "root_user is no longer an admin");
    assert_eq!(server.get("/api/v1/me", Some(&root)).await.body["roles"], json!([]));
    server.get("/api/v1/admin/ledger/check", Some(&root)).await.assert_problem(403, "forbidden");
}

/// A client whose requests come from another loopback address (127.0.0.0/8 is all ours).
fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(address))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn login_from(server: &TestServer, client: &reqwest::Client, username: &str, password: &str) -> support::Reply {
    let request = client
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": username, "password": password}));
    server.raw(request).await
}

async fn a_stranger_s_failed_logins_do_not_lock_the_owner_out(db: Db) {
    let server = TestServer::start_with(db, |config| config.auth_attempts_per_username = 10).await;
    server.register("owner").await;
    let stranger = client_from([127, 0, 0, 2]);
    for attempt in 0..10 {
        let reply = login_from(&server, &stranger, "owner", "not the password").await;
        reply.assert_problem(401, "invalid_credentials");
        assert!(attempt < 10);
    }
    login_from(&server, &stranger, "owner", "not the password").await.assert_problem(429, "rate_limited");
    // The owner, from their own address, signs in at once.
    let owner = client_from([127, 0, 0, 1]);
    let reply = login_from(&server, &owner, "owner", "password-owner").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// A new session of a user registered by `TestServer::register` (password
/// `password-<username>`), as a second device would sign in.
async fn another_session(server: &TestServer, username: &str) -> String {
    let reply = server
        .post("/api/v1/auth/login", None, json!({"username": username, "password": format!("password-{username}")}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["token"].as_str().unwrap().to_string()
}

/// `Some(code)` once the socket closes within `wait`, `None` if it stayed open.
async fn closed_with(socket: &mut support::Socket, wait: std::time::Duration) -> Option<Option<u16>> {
    socket.closed_within(wait).await
}

/// `token`'s session asks to change its password from `current` to `new`.
async fn change_password(server: &TestServer, token: &str, current: &str, new: &str) -> support::Reply {
    server.post("/api/v1/auth/password", Some(token), json!({"current_password": current, "new_password": new})).await
}

async fn a_socket_closes_when_its_session_logs_out(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, ann_id), (ben, ben_id)] = server.register_all(["ann", "ben"]).await;
    let conversation = server.conversation(&ann, "direct", &[&ben_id]).await;
    let (mut ann_socket, _) = server.socket(&ann).await;
    // A second session of Ann's stays signed in and keeps its socket.
    let second = another_session(&server, "ann").await;
    let (mut second_socket, _) = server.socket(&second).await;

    assert_eq!(server.post("/api/v1/auth/logout", Some(&ann), json!({})).await.status, 204);
    assert_eq!(closed_with(&mut ann_socket, std::time::Duration::from_secs(10)).await, Some(Some(4001)));
    // A new socket with the revoked token is refused.
    let url = format!("{}/api/v1/ws?token={ann}", server.base.replace("http://", "ws://"));
    assert!(tokio_tungstenite::connect_async(url).await.is_err());

    server.send_text(&ben, &conversation, "c1", "still there?").await;
    let frame = second_socket.frames_until("message.new").await.pop().unwrap();
    assert_eq!(frame["data"]["body"]["text"], "still there?", "the other session is untouched");
    assert_eq!(frame["data"]["sender_id"], ben_id.as_str());
    let _ = ann_id;
}

async fn logging_out_everywhere_ends_every_session_and_socket(db: Db) {
    let server = TestServer::start(db).await;
    let (first, _) = server.register("ann").await;
    let second = another_session(&server, "ann").await;
    let (ben, _) = server.register("ben").await;
    let (mut first_socket, _) = server.socket(&first).await;
    let (mut second_socket, _) = server.socket(&second).await;
    let (mut ben_socket, _) = server.socket(&ben).await;
    // Both sessions are cached now; revocation must not wait for the cache to age out.
    assert_eq!(server.get("/api/v1/me", Some(&second)).await.status, 200);

    assert_eq!(server.post("/api/v1/auth/logout-everywhere", Some(&first), json!({})).await.status, 204);
    for socket in [&mut first_socket, &mut second_socket] {
        assert_eq!(closed_with(socket, std::time::Duration::from_secs(10)).await, Some(Some(4001)));
    }
    for token in [&first, &second] {
        server.get("/api/v1/me", Some(token)).await.assert_problem(401, "unauthenticated");
    }
    assert_eq!(server.get("/api/v1/me", Some(&ben)).await.status, 200);
    assert_eq!(closed_with(&mut ben_socket, std::time::Duration::from_millis(300)).await, None, "others stay");
}

async fn changing_the_password_ends_every_other_session_and_socket(db: Db) {
    let server = TestServer::start(db).await;
    let (kept, _) = server.register("ann").await;
    let other = another_session(&server, "ann").await;
    let (mut kept_socket, _) = server.socket(&kept).await;
    let (mut other_socket, _) = server.socket(&other).await;
    assert_eq!(server.get("/api/v1/me", Some(&other)).await.status, 200);

    let wrong = change_password(&server, &kept, "not it at all", "a new password").await;
    wrong.assert_problem(422, "invalid_field");
    assert_eq!(wrong.body["field"], "current_password");
    let short = change_password(&server, &kept, "password-ann", "short").await;
    short.assert_problem(422, "invalid_field");
    assert_eq!(short.body["field"], "new_password");
    assert_eq!(server.get("/api/v1/me", Some(&other)).await.status, 200, "a refused change ends nothing");

    let changed = change_password(&server, &kept, "password-ann", "a new password").await;
    assert_eq!(changed.status, 204, "{}", changed.text);
    assert_eq!(closed_with(&mut other_socket, std::time::Duration::from_secs(10)).await, Some(Some(4001)));
    server.get("/api/v1/me", Some(&other)).await.assert_problem(401, "unauthenticated");
    assert_eq!(server.get("/api/v1/me", Some(&kept)).await.status, 200, "the session that asked stays");
    assert_eq!(closed_with(&mut kept_socket, std::time::Duration::from_millis(300)).await, None);
    let old = server.post("/api/v1/auth/login", None, json!({"username": "ann", "password": "password-ann"})).await;
    old.assert_problem(401, "invalid_credentials");
    let new = server.post("/api/v1/auth/login", None, json!({"username": "ann", "password": "a new password"})).await;
    assert_eq!(new.status, 200, "{}", new.text);
}

async fn names_with_bidirectional_overrides_are_refused(db: Db) {
    let server = TestServer::start(db).await;
    let spoof = json!({"username": "spoof", "password": "correct horse", "display_name": "ann\u{202E}gnp.exe"});
    let reply = register_with(&server, spoof).await;
    reply.assert_problem(422, "invalid_field");
    assert_eq!(reply.body["field"], "display_name");
    let mut database = server.database().await;
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut database).await.unwrap();
    assert_eq!(users, 0, "nothing was created");
}
