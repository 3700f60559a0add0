//! Operations endpoints: liveness, readiness and Prometheus metrics.
//!
//! `/metrics` is open on the main listener by default. `PLAZA_METRICS_TOKEN` makes it
//! require `Authorization: Bearer <token>` (401 `unauthorized` otherwise), and
//! `PLAZA_METRICS_ADDR` moves it to a listener of its own (a private interface), leaving
//! the main listener's `/metrics` a 404. The token applies on either listener.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use plaza_http::{ErrorCode, Problem};
use plaza_store::Store;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Who may read /metrics and what it reports on.
#[derive(Debug, Clone)]
pub struct MetricsAccess {
    store: Store,
    token: Option<Arc<str>>,
}

impl MetricsAccess {
    pub fn new(store: Store, token: Option<String>) -> Self {
        Self { store, token: token.map(Arc::from) }
    }

    /// Compares every byte whatever the first difference, so the time taken does not
    /// tell how much of a guess was right.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        given.len() == expected.len()
            && given.bytes().zip(expected.bytes()).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
    }
}

/// `/healthz`, `/readyz`, and `/metrics` unless it has a listener of its own.
pub fn router(store: Store, metrics_access: Option<MetricsAccess>) -> OpenApiRouter {
    let health = OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).with_state(store);
    match metrics_access {
        Some(access) => health.merge(OpenApiRouter::new().routes(routes!(metrics)).with_state(access)),
        None => health,
    }
}

/// The router of the separate metrics listener (`PLAZA_METRICS_ADDR`).
pub fn metrics_router(access: MetricsAccess) -> axum::Router {
    let (router, _document) = OpenApiRouter::new().routes(routes!(metrics)).with_state(access).split_for_parts();
    router.layer(axum::middleware::from_fn(crate::metrics::track))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".to_string() })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready", body = Health)))]
async fn readyz(State(store): State<Store>) -> Result<axum::Json<Health>, Problem> {
    if store.ping().await {
        Ok(axum::Json(Health { status: "ok".to_string() }))
    } else {
        Err(Problem::new(ErrorCode::Unavailable, "the database is not reachable"))
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Metrics", body = String, content_type = "text/plain; version=0.0.4")))]
async fn metrics(State(access): State<MetricsAccess>, headers: HeaderMap) -> Result<impl IntoResponse, Problem> {
    if !access.admits(&headers) {
        let mut problem = Problem::new(ErrorCode::Unauthenticated, "/metrics needs its bearer token").into_response();
        problem.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Ok(problem);
    }
    crate::metrics::record_pool(&access.store);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render()).into_response())
}
