//! The tus 1.0 routes (core protocol and the creation extension) at
//! `/api/v1/videos/uploads`.
//!
//! They are a router of their own because an upload's `PATCH` is the one request whose
//! body may be hundreds of megabytes and take minutes: the server mounts these routes
//! outside the global body limit and request time-out, and each `PATCH` is bounded
//! instead by the upload's declared length and by [`crate::uploads::BODY_IDLE_TIMEOUT`].
//! The body is received in a task of its own, so that a client that disconnects midway
//! still leaves every byte it sent stored and `HEAD` tells where to resume. They are
//! kept out of the OpenAPI document: tus is its own protocol, with its own headers.

use crate::service::{VideoError, VideoHandle};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{options, patch};
use axum::Router;
use plaza_accounts::CurrentUser;
use plaza_http::{ErrorCode, Problem};

/// The protocol version this server speaks.
pub const TUS_VERSION: &str = "1.0.0";
const UPLOAD_PATH: &str = "/api/v1/videos/uploads";

/// The tus routes, with their full paths.
pub fn tus_router(video: VideoHandle) -> Router {
    Router::new()
        .route(UPLOAD_PATH, options(describe).post(create))
        .route(&format!("{UPLOAD_PATH}/{{id}}"), patch(append).head(state))
        .layer(middleware::from_fn(speak_tus))
        .with_state(video)
}

/// Every answer says `Tus-Resumable`; every request but `OPTIONS` must say it too.
async fn speak_tus(request: Request, next: Next) -> Response {
    let speaks = request.headers().get("tus-resumable").is_some_and(|value| value == TUS_VERSION);
    let mut response = if speaks || request.method() == axum::http::Method::OPTIONS {
        next.run(request).await
    } else {
        let mut refused = Problem::from(VideoError::TusVersion).into_response();
        refused.headers_mut().insert("tus-version", HeaderValue::from_static(TUS_VERSION));
        refused
    };
    response.headers_mut().insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

/// What the server supports (tus `OPTIONS`).
async fn describe(State(video): State<VideoHandle>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-extension", HeaderValue::from_static("creation"));
    headers.insert("tus-max-size", number(video.config().upload_max_bytes));
    response
}

/// Creates an upload of `Upload-Length` bytes; `Location` is where its bytes go.
async fn create(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    if headers.contains_key("upload-defer-length") {
        return Err(Problem::new(ErrorCode::BadRequest, "Upload-Defer-Length is not supported; send Upload-Length")
            .with_field("Upload-Length"));
    }
    let length = number_header(&headers, "upload-length")?;
    let id = video.create_upload(&current.user, length).await?;
    let mut response = StatusCode::CREATED.into_response();
    let location = HeaderValue::try_from(format!("{UPLOAD_PATH}/{id}")).map_err(|error| Problem::internal(&error))?;
    response.headers_mut().insert(header::LOCATION, location);
    response.headers_mut().insert("upload-offset", number(0));
    Ok(response)
}

/// Where an upload stands (tus `HEAD`).
async fn state(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let state = video.upload_state(&current.user, &id).await?;
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert("upload-offset", number(state.offset));
    headers.insert("upload-length", number(state.length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Appends the body at `Upload-Offset` (tus `PATCH`); answers the new offset.
async fn append(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let octets = headers.get(header::CONTENT_TYPE).is_some_and(|value| value == "application/offset+octet-stream");
    if !octets {
        return Err(VideoError::ContentType.into());
    }
    let offset = number_header(&headers, "upload-offset")?;
    let stream = body.into_data_stream();
    // In a task of its own, so that a dropped connection still stores what it sent.
    let task = tokio::spawn(async move { video.append(&current.user, &id, offset, stream).await });
    let offset = task.await.map_err(|error| Problem::internal(&error))??;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert("upload-offset", number(offset));
    Ok(response)
}

fn number_header(headers: &HeaderMap, name: &'static str) -> Result<i64, Problem> {
    let text = headers
        .get(name)
        .ok_or_else(|| Problem::new(ErrorCode::BadRequest, format!("send the {name} header")).with_field(name))?;
    text.to_str()
        .ok()
        .filter(|text| !text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| Problem::new(ErrorCode::BadRequest, format!("{name} is a number of bytes")).with_field(name))
}

fn number(value: i64) -> HeaderValue {
    HeaderValue::from(value)
}
