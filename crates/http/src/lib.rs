//! Plaza's HTTP edge, shared by every service's router: the RFC 9457 problem document
//! and the one catalogue of error codes ([`ErrorCode`]), JSON and query extractors whose
//! rejections are problems, per-key rate limits, and the request id carried into every
//! problem. Domain crates never see these types in their domain functions; only their
//! `routes` modules do.

pub mod extract;
pub mod problem;
pub mod rate_limit;
pub mod request_id;

pub use extract::{page_limit, ApiJson, ApiQuery, ClientAddress};
pub use problem::{ErrorCode, Problem, ProblemSchema};
pub use rate_limit::RateLimiter;

/// The largest request body any JSON endpoint accepts (1 MiB).
pub const JSON_BODY_MAX_BYTES: usize = 1024 * 1024;
