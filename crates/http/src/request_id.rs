//! Every request gets an id (taken from a well-formed `X-Request-Id` header, or made
//! here). It is returned in the response header, recorded on every log line of the
//! request's span, and put into every problem document, so that a user's report can be
//! matched with the server's logs.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

/// The request id of the request being handled, or `-` outside of one.
pub fn current() -> String {
    current_opt().unwrap_or_else(|| "-".to_string())
}

pub fn current_opt() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Middleware: assigns the id, runs the rest of the stack with it in scope, and echoes it.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_acceptable(value))
        .map(str::to_string)
        .unwrap_or_else(plaza_kernel::new_id);
    let header_value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("-"));
    request.headers_mut().insert(HEADER, header_value.clone());
    let mut response = CURRENT.scope(id, next.run(request)).await;
    response.headers_mut().insert(HEADER, header_value);
    response
}

/// Client-supplied ids are kept only when short and plain, so they cannot forge log lines.
fn is_acceptable(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}
