//! Prometheus metrics: requests by route and status, a latency histogram per route,
//! requests in flight, and database pool occupancy. The recorder is process-wide (the
//! `metrics` facade is global), installed once.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use plaza_store::Store;
use std::sync::OnceLock;
use std::time::Instant;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Installs the recorder (once per process).
pub fn install() {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".to_string()), LATENCY_BUCKETS)
            .ok()?;
        match builder.install_recorder() {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!("metrics recorder not installed: {error}");
                None
            }
        }
    });
}

pub fn render() -> String {
    install();
    HANDLE.get().and_then(Option::as_ref).map(PrometheusHandle::render).unwrap_or_default()
}

pub fn record_pool(store: &Store) {
    let stats = store.pool_stats();
    let backend = store.backend().name();
    for (pool, size, idle) in
        [("read", stats.read_size, stats.read_idle), ("write", stats.write_size, stats.write_idle)]
    {
        metrics::gauge!("plaza_db_pool_connections", "backend" => backend, "pool" => pool, "state" => "idle")
            .set(idle as f64);
        metrics::gauge!("plaza_db_pool_connections", "backend" => backend, "pool" => pool, "state" => "in_use")
            .set(size.saturating_sub(idle as u32) as f64);
    }
}

/// The method as a label: one of the standard methods, or `other` for anything a client
/// made up (each made-up method once gave a series of its own, and 20,000 of them grew
/// /metrics from 105 KB to 101 MB).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Middleware: counts and times every request under its route template (never the raw
/// path, which would give one series per user id; paths no route matches share the one
/// route `unmatched`) and its method label. Every label is bounded: routes by the
/// router, methods by `method_label`, statuses by what the handlers answer.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = method_label(request.method());
    let started = Instant::now();
    let in_flight = metrics::gauge!("plaza_http_requests_in_flight");
    in_flight.increment(1.0);
    let response = next.run(request).await;
    in_flight.decrement(1.0);
    let status = response.status().as_u16().to_string();
    metrics::counter!("plaza_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("plaza_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
