//! Extractors whose every rejection is a [`Problem`]: malformed JSON is a 400, a body of
//! the wrong shape is a 422 naming the field, a body over [`crate::JSON_BODY_MAX_BYTES`]
//! is a 413, and a body that is not JSON at all is a 415.

use crate::problem::{ErrorCode, Problem};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON request body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(&request) {
            return Err(Problem::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::to_bytes(request.into_body(), crate::JSON_BODY_MAX_BYTES).await.map_err(|_| {
            Problem::new(
                ErrorCode::PayloadTooLarge,
                format!("the body must be at most {} bytes", crate::JSON_BODY_MAX_BYTES),
            )
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON document into `T`, classifying failures the way the API promises.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // Syntax first, over the whole document: a body that is both malformed and incomplete
    // is malformed.
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(Problem::new(ErrorCode::MalformedJson, strip_position(&error.to_string())));
    }
    // PostgreSQL cannot store U+0000 in text, and no Plaza field has a use for it.
    if contains_escaped_nul(bytes) {
        return Err(Problem::invalid_field("", "strings cannot contain the NUL character (U+0000)"));
    }
    // Every Plaza request body is an object; serde would otherwise accept an array for a
    // struct, field by position.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::invalid_field("", "the body must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        classify(error.into_inner(), path)
    })?;
    deserializer.end().map_err(|error| classify(error, String::new()))?;
    Ok(value)
}

fn classify(error: serde_json::Error, path: String) -> Problem {
    match error.classify() {
        serde_json::error::Category::Data => {
            let message = error.to_string();
            let field = missing_field_name(&message).map(|missing| join_path(&path, missing)).unwrap_or(path);
            let field = if field == "." { String::new() } else { field };
            Problem::invalid_field(field, strip_position(&message))
        }
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            Problem::new(ErrorCode::MalformedJson, strip_position(&error.to_string()))
        }
    }
}

/// True when a JSON document contains an escaped NUL (`\u0000`) in a string. (A raw NUL
/// byte is not valid JSON at all, so the escape is the only way one can arrive.)
pub fn contains_escaped_nul(json: &[u8]) -> bool {
    let pattern = b"\\u0000";
    let mut start = 0;
    while let Some(offset) = json[start..].windows(pattern.len()).position(|window| window == pattern) {
        let at = start + offset;
        // `\\u0000` is an escaped backslash followed by the text "u0000", not a NUL: the
        // escape is real only after an even number of backslashes.
        let backslashes_before = json[..at].iter().rev().take_while(|byte| **byte == b'\\').count();
        if backslashes_before % 2 == 0 {
            return true;
        }
        start = at + 1;
    }
    false
}

/// The credentials of `Authorization: <scheme> <credentials>`, trimmed, when the header
/// is there, is text, and names `scheme` (compared without regard to case, as RFC 9110
/// §11.1 says): `authorization_credentials(headers, "bearer")` is a bearer token.
pub fn authorization_credentials<'a>(headers: &'a axum::http::HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (given_scheme, credentials) = value.split_once(' ')?;
    given_scheme.eq_ignore_ascii_case(scheme).then(|| credentials.trim())
}

/// Query-string parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => {
                let text = rejection.body_text();
                let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
                let field = missing_field_name(detail)
                    .or_else(|| detail.split(':').next().filter(|name| !name.contains(' ')))
                    .unwrap_or("query");
                Err(Problem::invalid_field(field.to_string(), detail.to_string()))
            }
        }
    }
}

fn has_json_content_type(request: &Request) -> bool {
    let Some(value) = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn missing_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn join_path(path: &str, field: &str) -> String {
    if path.is_empty() || path == "." {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// serde_json appends " at line 1 column 17"; clients need the sentence, not the offset.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Login {
        username: String,
        password: String,
        nested: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn syntax_errors_are_malformed_and_shape_errors_name_the_field() {
        let malformed = parse_json::<Login>(b"{\"username\": ").expect_err("malformed");
        assert_eq!(malformed.code(), ErrorCode::MalformedJson);

        let missing = parse_json::<Login>(br#"{"username": "ann"}"#).expect_err("missing");
        assert_eq!(missing.code(), ErrorCode::InvalidField);
        assert_eq!(missing.field(), Some("password"));

        let wrong_type = parse_json::<Login>(br#"{"username": 5, "password": "x"}"#).expect_err("type");
        assert_eq!(wrong_type.field(), Some("username"));

        let nested =
            parse_json::<Login>(br#"{"username": "a", "password": "b", "nested": {"count": -1}}"#).expect_err("nested");
        assert_eq!(nested.field(), Some("nested.count"));

        let trailing = parse_json::<Login>(br#"{"username": "a", "password": "b"} x"#).expect_err("trailing");
        assert_eq!(trailing.code(), ErrorCode::MalformedJson);

        let nul = parse_json::<Login>(br#"{"username": "a\u0000", "password": "b"}"#).expect_err("nul");
        assert_eq!(nul.code(), ErrorCode::InvalidField);
        assert!(parse_json::<Login>(br#"{"username": "a\\u0000", "password": "b"}"#).is_ok(), "a literal backslash-u");
        assert!(contains_escaped_nul(br#"["\\\u0000"]"#));
    }
}

/// The address of the client, for rate limits and logs: the peer of the TCP connection.
/// (Behind a reverse proxy every request shares the proxy's address; trusting a
/// forwarded header is a deployment decision this extractor does not make.)
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let address = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        Ok(ClientAddress(address))
    }
}

/// The query of a list that pages by `limit` and an opaque `cursor` alone, for
/// [`ApiQuery`]; its `limit` goes through [`page_limit`].
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The `?limit=` of a list: default 50, 1 to 200, otherwise a 422 naming `limit`.
pub fn page_limit(limit: Option<i64>) -> Result<plaza_kernel::PageLimit, Problem> {
    plaza_kernel::PageLimit::parse(limit).map_err(|reason| Problem::invalid_field("limit", reason))
}
