//! Plaza's HTTP edge, shared by every service's router: the RFC 9457 problem document
//! and the one catalogue of error codes ([`ErrorCode`]), JSON and query extractors whose
//! rejections are problems, per-key rate limits, and the request id carried into every
//! problem. Domain crates never see these types in their domain functions; only their
//! `routes` modules do.

pub mod extract;
pub mod problem;
pub mod rate_limit;
pub mod request_id;

pub use extract::{authorization_credentials, page_limit, ApiJson, ApiQuery, ClientAddress, PageParams};
pub use problem::{ErrorCode, Problem, ProblemSchema};
pub use rate_limit::RateLimiter;

/// The largest request body any JSON endpoint accepts (1 MiB).
pub const JSON_BODY_MAX_BYTES: usize = 1024 * 1024;

/// An amount in an answer: `amount` in minor units (cents for USD) of `currency`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct MoneyView {
    pub amount: i64,
    pub currency: String,
}

impl MoneyView {
    pub fn new(amount: i64, currency: &str) -> Self {
        Self { amount, currency: currency.to_string() }
    }
}

/// The answer to an idempotent write: `status` with the body, marked
/// `Idempotent-Replayed: true` when it repeats the first answer to a retried key.
pub fn idempotent_answer<T: serde::Serialize>(
    status: axum::http::StatusCode,
    body: T,
    replayed: bool,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut headers = axum::http::HeaderMap::new();
    if replayed {
        headers.insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    (status, headers, axum::Json(body)).into_response()
}
