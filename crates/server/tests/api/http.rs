//! The error model, request ids, the OpenAPI document and the operations endpoints, over
//! real HTTP on both databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Db, TestServer};
use serde_json::json;

on_both_databases!(
    malformed_json_is_a_400_problem,
    a_body_of_the_wrong_shape_is_a_422_naming_the_field,
    a_body_over_one_mebibyte_is_a_413_problem,
    a_body_that_is_not_json_is_a_415_problem,
    unknown_routes_and_methods_are_problems,
    every_response_carries_a_request_id_that_problems_repeat,
    the_openapi_document_is_3_1_and_describes_every_route,
    the_api_reference_page_is_served,
    health_readiness_and_metrics_answer,
    nul_characters_are_refused_before_they_reach_the_database,
);

async fn nul_characters_are_refused_before_they_reach_the_database(db: Db) {
    let server = TestServer::start(db).await;
    let (token, _) = server.register("nul_tester").await;
    server.get("/api/v1/users/abc%00def", Some(&token)).await.assert_problem(404, "not_found");
    server.get("/api/v1/users?q=a%00", Some(&token)).await.assert_problem(422, "invalid_field");
    let reply = server.post("/api/v1/contacts", Some(&token), serde_json::json!({"user_id": "a\u{0}b"})).await;
    reply.assert_problem(422, "invalid_field");
    let reply = server
        .post("/api/v1/conversations", Some(&token), serde_json::json!({"kind": "group", "member_ids": ["x\u{0}"]}))
        .await;
    reply.assert_problem(422, "invalid_field");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_with_a_problem_when_the_database_is_gone() {
    let server = TestServer::start(Db::Postgres).await;
    let (token, _) = server.register("watcher").await;
    let name = server.database_url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    let admin_url = std::env::var("PLAZA_TEST_DATABASE_URL").unwrap();
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
    server.get("/readyz", None).await.assert_problem(503, "unavailable");
    assert_eq!(server.get("/healthz", None).await.status, 200, "alive, just not ready");
    let me = server.get("/api/v1/users?q=wat", Some(&token)).await;
    assert!([500, 503].contains(&me.status), "{}", me.text);
    assert_eq!(me.header("content-type"), Some("application/problem+json"));
}

async fn malformed_json_is_a_400_problem(db: Db) {
    let server = TestServer::start(db).await;
    for body in ["{\"username\": ", "not json", "{\"username\": \"a\"} trailing", ""] {
        login_with_body(&server, "application/json", body).await.assert_problem(400, "malformed_json");
    }
}

/// `POST /api/v1/auth/login` with `body` sent as it is, under `content_type`.
async fn login_with_body(server: &TestServer, content_type: &str, body: &str) -> crate::support::Reply {
    let request = server
        .client
        .post(format!("{}/api/v1/auth/login", server.base))
        .header("content-type", content_type)
        .body(body.to_string());
    server.raw(request).await
}

async fn a_body_of_the_wrong_shape_is_a_422_naming_the_field(db: Db) {
    let server = TestServer::start(db).await;
    let reply = server.post("/api/v1/auth/login", None, json!({"username": "ann"})).await;
    reply.assert_problem(422, "invalid_field");
    assert_eq!(reply.body["field"], "password");
    let reply = server.post("/api/v1/auth/login", None, json!(["an", "array"])).await;
    reply.assert_problem(422, "invalid_field");
    let reply = server.post("/api/v1/auth/login", None, json!({"username": "ann", "password": 12345678})).await;
    reply.assert_problem(422, "invalid_field");
    assert_eq!(reply.body["field"], "password");
}

async fn a_body_over_one_mebibyte_is_a_413_problem(db: Db) {
    let server = TestServer::start(db).await;
    // Announced with Content-Length, and sent chunked without announcing a length: the
    // limit holds either way. (Raw sockets: the server may answer and close before the
    // client has written the whole body, which an HTTP client reports as a broken pipe.)
    for chunked in [false, true] {
        let response = send_large_body(&server.base, "/api/v1/auth/register", chunked, 20, 64 * 1024).await;
        assert!(response.starts_with("HTTP/1.1 413"), "chunked={chunked}: {response}");
        assert!(response.contains("application/problem+json"), "{response}");
        assert!(response.contains("payload_too_large"), "{response}");
    }
    let mut database = server.database().await;
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut database).await.unwrap();
    assert_eq!(users, 0);
}

/// Sends a JSON body of `chunks` × `chunk_bytes` spaces over a raw socket, with a
/// Content-Length or chunked, and returns what the server answered.
async fn send_large_body(base: &str, path: &str, chunked: bool, chunks: usize, chunk_bytes: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(host).await.unwrap();
    let framing = if chunked {
        "transfer-encoding: chunked".to_string()
    } else {
        format!("content-length: {}", chunks * chunk_bytes)
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let payload = " ".repeat(chunk_bytes);
    let chunk = if chunked { format!("{chunk_bytes:x}\r\n{payload}\r\n") } else { payload };
    for _ in 0..chunks {
        if socket.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    if chunked {
        let _ = socket.write_all(b"0\r\n\r\n").await;
    }
    let mut response = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).to_string()
}

async fn a_body_that_is_not_json_is_a_415_problem(db: Db) {
    let server = TestServer::start(db).await;
    login_with_body(&server, "text/plain", "username=ann").await.assert_problem(415, "unsupported_media_type");
}

async fn unknown_routes_and_methods_are_problems(db: Db) {
    let server = TestServer::start(db).await;
    server.get("/api/v1/no/such/route", None).await.assert_problem(404, "not_found");
    // Outside /api/ the web client answers; a file it does not have is still a problem.
    server.get("/nothing-here.js", None).await.assert_problem(404, "not_found");
    let reply = server.request("DELETE", "/api/v1/me", None, None).await;
    reply.assert_problem(405, "method_not_allowed");
    assert!(reply.header("allow").unwrap().contains("GET"));
}

async fn every_response_carries_a_request_id_that_problems_repeat(db: Db) {
    let server = TestServer::start(db).await;
    let ok = server.get("/healthz", None).await;
    let first = ok.header("x-request-id").unwrap().to_string();
    assert_eq!(first.len(), 26);
    let problem = server.get("/api/v1/me", None).await;
    let id = problem.header("x-request-id").unwrap();
    assert_ne!(id, first);
    assert_eq!(problem.body["request_id"], id);

    let supplied = server
        .raw(server.client.get(format!("{}/api/v1/me", server.base)).header("x-request-id", "trace-abc_123"))
        .await;
    assert_eq!(supplied.header("x-request-id"), Some("trace-abc_123"));
    assert_eq!(supplied.body["request_id"], "trace-abc_123");
    // An id that could forge a log line is replaced, not echoed.
    let hostile =
        server.raw(server.client.get(format!("{}/healthz", server.base)).header("x-request-id", "x y\tinjected")).await;
    assert_ne!(hostile.header("x-request-id"), Some("x y\tinjected"));
}

async fn the_openapi_document_is_3_1_and_describes_every_route(db: Db) {
    let server = TestServer::start(db).await;
    let reply = server.get("/api/v1/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    let document = &reply.body;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/users/{id}", "get"),
        ("/api/v1/users", "get"),
        ("/api/v1/contacts", "post"),
        ("/api/v1/contacts", "get"),
        ("/api/v1/contacts/{user_id}/accept", "post"),
        ("/api/v1/contacts/{user_id}", "delete"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert_eq!(
            operation["responses"]["default"]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem",
            "{method} {path} documents its problems"
        );
    }
    assert!(paths["/api/v1/me"]["get"]["security"].is_array());
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let user = &document["components"]["schemas"]["User"]["properties"];
    for field in ["id", "username", "display_name", "avatar_url", "created_at"] {
        assert!(user[field].is_object(), "User.{field}");
    }
}

async fn the_api_reference_page_is_served(db: Db) {
    let server = TestServer::start(db).await;
    let reply = server.get("/api/docs", None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").unwrap().starts_with("text/html"));
    assert!(reply.text.contains("/api/v1/openapi.json"));
}

async fn health_readiness_and_metrics_answer(db: Db) {
    let server = TestServer::start(db).await;
    assert_eq!(server.get("/healthz", None).await.body["status"], "ok");
    assert_eq!(server.get("/readyz", None).await.body["status"], "ok");
    server.register("metered").await;
    server.get("/api/v1/me", None).await;
    let metrics = server.get("/metrics", None).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    let text = &metrics.text;
    assert!(
        text.lines().any(|line| line.starts_with("plaza_http_requests_total")
            && line.contains("route=\"/api/v1/auth/register\"")
            && line.contains("status=\"201\"")),
        "{text}"
    );
    assert!(text.lines().any(|line| line.starts_with("plaza_http_requests_total")
        && line.contains("route=\"/api/v1/me\"")
        && line.contains("status=\"401\"")));
    assert!(text.contains("plaza_http_request_duration_seconds_bucket"));
    assert!(text.contains("plaza_db_pool_connections"));
    assert!(text.contains("plaza_http_requests_in_flight"));
}
