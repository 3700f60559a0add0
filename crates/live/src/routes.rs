//! The live HTTP API (API.md, "Live"): wire types, thin handlers, HLS playback at the
//! server's root, and the one mapping from [`LiveError`] to problems.

use crate::model::RoomStatus;
use crate::playlist;
use crate::rooms::RoomList;
use crate::service::{LiveError, LiveHandle, Room, RoomWithKey};
use crate::storage;
use axum::body::Body;
use axum::extract::{FromRef, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::TryStreamExt;
use plaza_accounts::routes::UserBody;
use plaza_accounts::{Accounts, CurrentUser, HeaderOrQueryUser};
use plaza_http::{ApiJson, ApiQuery, ErrorCode, Problem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Where the browser camera's ingest socket is served (`ingest.rs`).
pub const BROWSER_INGEST_PATH: &str = "/api/v1/live/ingest";

/// The room routes, relative to `/api/v1`.
pub fn router(live: LiveHandle) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_room, list_rooms))
        .routes(routes!(get_room))
        .routes(routes!(rotate_stream_key))
        .routes(routes!(end_room))
        .routes(routes!(pin_product))
        .routes(routes!(like))
        .merge(crate::routes_chat::router())
        .merge(crate::routes_deals::router())
        .with_state(live)
}

/// HLS playback at the server's root (`/live/{room_id}/index.m3u8` and its segments),
/// outside `/api/v1` and the OpenAPI document: players fetch whatever the playlist names.
pub fn playback_router(live: LiveHandle) -> axum::Router {
    axum::Router::new()
        .route("/live/{room_id}/{file}", axum::routing::get(playback).options(preflight))
        .with_state(live)
}

impl FromRef<LiveHandle> for Accounts {
    fn from_ref(live: &LiveHandle) -> Accounts {
        live.inner.accounts.clone()
    }
}

impl From<LiveError> for Problem {
    fn from(error: LiveError) -> Self {
        match error {
            LiveError::InvalidField { field, reason } => Problem::invalid_field(field, reason),
            LiveError::RoomNotFound => Problem::new(ErrorCode::LiveRoomNotFound, "no such live room"),
            LiveError::NotHost { action } => {
                Problem::new(ErrorCode::Forbidden, format!("only the room's host may {action}"))
            }
            LiveError::ProductNotFound { product_id } => {
                Problem::new(ErrorCode::ProductNotFound, format!("no product {product_id} is on sale"))
                    .with_field("product_ids")
            }
            LiveError::ProductNotInShop { product_id } => Problem::new(
                ErrorCode::ProductNotInShop,
                format!("product {product_id} is not sold by your shop; a room shows its host's own products"),
            )
            .with_field("product_ids"),
            LiveError::InvalidTransition { status, action } => Problem::new(
                ErrorCode::InvalidTransition,
                format!("the room is {}; it cannot {action}", status.as_str()),
            ),
            LiveError::FileNotFound => Problem::new(ErrorCode::NotFound, "no such file"),
            LiveError::RoomEnded => Problem::new(ErrorCode::LiveRoomEnded, "the room has ended"),
            LiveError::NotJoined => {
                Problem::new(ErrorCode::LiveRoomNotJoined, "join the room first: send live.join on a socket, then chat")
            }
            LiveError::TooManyRooms { max } => {
                Problem::new(ErrorCode::TooManyRooms, format!("a socket joins at most {max} rooms; leave one first"))
            }
            LiveError::Muted => Problem::new(ErrorCode::Muted, "the host muted you in this room"),
            LiveError::Banned => Problem::new(ErrorCode::Banned, "the host banned you from this room"),
            LiveError::RateLimited { retry_after } => {
                Problem::new(ErrorCode::RateLimited, "at most one chat message a second (three at once); wait a moment")
                    .with_retry_after(retry_after.as_secs_f64().ceil() as u64)
            }
            LiveError::MessageNotFound => Problem::new(ErrorCode::LiveMessageNotFound, "no such message in this room"),
            LiveError::NotLive => Problem::new(
                ErrorCode::LiveRoomNotLive,
                "the room is not live yet: start streaming into it, then start the deal",
            ),
            LiveError::DealRunning => Problem::new(
                ErrorCode::LiveDealRunning,
                "a deal is running in this room; start the next once it has ended",
            ),
            LiveError::SkuNotInShop { sku_id } => Problem::new(
                ErrorCode::ProductNotInShop,
                format!("SKU {sku_id} is not sold by your shop; a deal sells one of your own products"),
            )
            .with_field("sku_id"),
            LiveError::Bus(error) | LiveError::Media(error) => Problem::internal(&error),
            LiveError::Accounts(error) => error.into(),
            LiveError::Shop(error) => error.into(),
            // A file not written yet (a playlist before the first segment) or gone.
            LiveError::Storage(object_store::Error::NotFound { .. }) => {
                Problem::new(ErrorCode::NotFound, "no such file")
            }
            LiveError::Storage(error) => Problem::internal(&error),
            LiveError::Database(error) if plaza_store::is_unavailable(&error) => {
                Problem::new(ErrorCode::Unavailable, "the database is not reachable; try again shortly")
            }
            LiveError::Database(error) => Problem::internal(&error),
            LiveError::ChatLost(error) => {
                Problem::new(ErrorCode::Unavailable, format!("{error}; the message may not have been kept"))
            }
        }
    }
}

/// A live room as anyone may see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LiveRoom)]
pub struct RoomBody {
    pub id: String,
    pub host: UserBody,
    pub title: String,
    /// `created`, `live` or `ended`.
    pub status: String,
    pub viewers: i64,
    pub likes: i64,
    /// The shop's `product` cards of the host's products in the room, in order.
    pub products: Vec<Value>,
    pub pinned_product: Option<Value>,
    /// The in-stream flash deal running now; null before the first and after each ends.
    pub deal: Option<crate::routes_deals::DealBody>,
    /// Where to play it while it is live: public, no sign-in needed.
    pub playback: Option<HlsBody>,
    /// The recording, once ended: to any signed-in user (bearer header or `?token=`).
    pub replay: Option<HlsBody>,
    pub cover_url: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HlsBody {
    /// At the server's root, not under `/api/v1`.
    pub hls_url: String,
}

impl From<Room> for RoomBody {
    fn from(room: Room) -> Self {
        let hls = || HlsBody { hls_url: format!("/live/{}/index.m3u8", room.id) };
        let pinned_product = room
            .pinned_product_id
            .as_ref()
            .and_then(|id| room.products.iter().find(|card| card["id"].as_str() == Some(id)).cloned());
        Self {
            playback: (room.status == RoomStatus::Live && room.has_recording).then(hls),
            replay: (room.status == RoomStatus::Ended && room.has_recording).then(hls),
            cover_url: room.cover_media_id.as_ref().map(|id| format!("/api/v1/media/{id}")),
            id: room.id,
            host: room.host.into(),
            title: room.title,
            status: room.status.as_str().to_string(),
            viewers: room.viewers,
            likes: room.likes,
            products: room.products,
            pinned_product,
            deal: room.deal.as_ref().map(crate::routes_deals::DealBody::from),
            created_at: room.created_at.to_rfc3339(),
            started_at: room.started_at.map(|at| at.to_rfc3339()),
            ended_at: room.ended_at.map(|at| at.to_rfc3339()),
        }
    }
}

/// A room with its secret stream key: answered to its host only, at creation and at each
/// rotation (the server keeps only a digest of the key).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LiveRoomWithKey)]
pub struct RoomWithKeyBody {
    #[serde(flatten)]
    pub room: RoomBody,
    pub stream_key: String,
    pub ingest: IngestBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestBody {
    /// The whole RTMP URL to publish to, key included (OBS: server and stream key are
    /// this URL split at its last `/`); null when no node ingests RTMP.
    pub rtmp_url: Option<String>,
    /// The browser camera's ingest socket, a path on this server (`ws:` or `wss:` as the
    /// page's own origin): send `{"stream_key": …}`, then MediaRecorder's WebM chunks.
    pub websocket_url: Option<String>,
}

impl From<RoomWithKey> for RoomWithKeyBody {
    fn from(created: RoomWithKey) -> Self {
        Self {
            room: created.room.into(),
            stream_key: created.stream_key.as_str().to_string(),
            ingest: IngestBody { rtmp_url: created.rtmp_url, websocket_url: Some(BROWSER_INGEST_PATH.to_string()) },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomPage {
    pub items: Vec<RoomBody>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoomRequest {
    /// 1–100 characters.
    pub title: String,
    /// Products of the caller's own shop to show, at most 50, in order.
    pub product_ids: Option<Vec<String>>,
    /// An image the caller uploaded (`POST /media`).
    pub cover_media_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// `live` (the default: live now, most viewers first), `ended` (replays, most recent
    /// first) or `created` (the caller's own rooms not yet live).
    pub status: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Create a room; the answer alone carries its stream key.
#[utoipa::path(post, path = "/live/rooms", tag = "live", security(("bearer" = [])),
    request_body = CreateRoomRequest, responses((status = 201, body = RoomWithKeyBody)))]
async fn create_room(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    ApiJson(body): ApiJson<CreateRoomRequest>,
) -> Result<(StatusCode, Json<RoomWithKeyBody>), Problem> {
    let product_ids = body.product_ids.unwrap_or_default();
    let created = live.create_room(&current.user, &body.title, &product_ids, body.cover_media_id.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Rooms live now (most viewers first), replays, or the caller's rooms not yet live.
#[utoipa::path(get, path = "/live/rooms", tag = "live", security(("bearer" = [])),
    params(ListParams), responses((status = 200, body = RoomPage)))]
async fn list_rooms(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<RoomPage>, Problem> {
    let list = match params.status.as_deref() {
        None | Some("live") => RoomList::Live,
        Some("ended") => RoomList::Ended,
        Some("created") => RoomList::MineCreated,
        Some(_) => return Err(Problem::invalid_field("status", "one of live, ended and created")),
    };
    let limit = plaza_http::page_limit(params.limit)?;
    let page = live.rooms(&current.user, list, limit, params.cursor.as_deref()).await?;
    Ok(Json(RoomPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// A room (one not yet live is its host's alone).
#[utoipa::path(get, path = "/live/rooms/{id}", tag = "live", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RoomBody)))]
async fn get_room(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<RoomBody>, Problem> {
    Ok(Json(live.room(Some(&current.user), &id).await?.into()))
}

/// A new stream key for the room (host only); the old key stops working at once and a
/// publisher using it is disconnected.
#[utoipa::path(post, path = "/live/rooms/{id}/stream-key", tag = "live", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RoomWithKeyBody)))]
async fn rotate_stream_key(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<RoomWithKeyBody>, Problem> {
    Ok(Json(live.rotate_stream_key(&current.user, &id).await?.into()))
}

/// End the room (host only); its recording becomes the replay.
#[utoipa::path(post, path = "/live/rooms/{id}/end", tag = "live", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RoomBody)))]
async fn end_room(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<RoomBody>, Problem> {
    Ok(Json(live.end_room(&current.user, &id).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// A product of the host's shop (it joins the room's products if it was not one of
    /// them), or null to unpin.
    pub product_id: Option<String>,
}

/// Pin a product over the stream, or unpin (host only).
#[utoipa::path(post, path = "/live/rooms/{id}/pin", tag = "live", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = PinRequest, responses((status = 200, body = RoomBody)))]
async fn pin_product(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PinRequest>,
) -> Result<Json<RoomBody>, Problem> {
    Ok(Json(live.pin_product(&current.user, &id, body.product_id.as_deref()).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LikesRequest {
    /// Hearts sent at once, 1–100.
    pub count: i64,
}

/// Send hearts to a live room; they are counted (the room's `likes`), within a second.
#[utoipa::path(post, path = "/live/rooms/{id}/likes", tag = "live", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = LikesRequest, responses((status = 202)))]
async fn like(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LikesRequest>,
) -> Result<StatusCode, Problem> {
    live.like(&current.user, &id, body.count).await?;
    Ok(StatusCode::ACCEPTED)
}

/// What a playback path names: the playlist or one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlaybackFile {
    Playlist,
    Segment(i64),
}

impl PlaybackFile {
    fn parse(name: &str) -> Option<Self> {
        if name == "index.m3u8" {
            return Some(Self::Playlist);
        }
        playlist::parse_segment_name(name).map(Self::Segment)
    }
}

/// A playlist or segment: public while the room is live, to signed-in users once ended.
async fn playback(
    State(live): State<LiveHandle>,
    Path((room_id, file)): Path<(String, String)>,
    caller: Result<HeaderOrQueryUser, Problem>,
) -> Result<Response, Problem> {
    let file = PlaybackFile::parse(&file).ok_or_else(|| Problem::new(ErrorCode::NotFound, "no such file"))?;
    let status = live.playback_status(&room_id).await?;
    let ended = match status {
        RoomStatus::Created => return Err(LiveError::RoomNotFound.into()),
        RoomStatus::Live => false,
        RoomStatus::Ended => {
            caller?;
            true
        }
    };
    let (key, content_type, cache) = match file {
        PlaybackFile::Playlist => (
            storage::playlist_key(&room_id),
            "application/vnd.apple.mpegurl",
            // The live window changes every segment; the ended playlist never changes
            // but is for signed-in users only.
            if ended { "private, max-age=3600" } else { "no-cache" },
        ),
        PlaybackFile::Segment(seq) => (
            storage::segment_key(&room_id, seq),
            "video/mp2t",
            if ended { "private, max-age=31536000, immutable" } else { "public, max-age=31536000, immutable" },
        ),
    };
    let object = live.inner.objects.get(&key).await.map_err(LiveError::from)?;
    let size = object.meta.size;
    let stream = object.into_stream().map_err(std::io::Error::other);
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    cors(headers);
    Ok(response)
}

/// Players on other origins (an embed, a mini-app) may fetch playback; a bearer token is
/// not an ambient credential, so `*` lets nothing in that the token does not.
fn cors(headers: &mut HeaderMap) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Content-Length"));
}

/// The CORS preflight of a cross-origin player sending `Authorization` (for a replay).
async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    cors(headers);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Range"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn only_the_playlist_and_segment_names_are_served() {
        assert_eq!(PlaybackFile::parse("index.m3u8"), Some(PlaybackFile::Playlist));
        assert_eq!(PlaybackFile::parse("seg7.ts"), Some(PlaybackFile::Segment(7)));
        for bad in ["../index.m3u8", "master.m3u8", "seg.ts", "seg07.ts", "local.m3u8"] {
            assert_eq!(PlaybackFile::parse(bad), None, "{bad}");
        }
    }
}
