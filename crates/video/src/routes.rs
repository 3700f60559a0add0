//! The video HTTP API (API.md, "Video"): wire types, thin handlers, playback of the
//! transcoded files with byte ranges, the `video` card source, and the one mapping from
//! [`VideoError`] to problems. The tus upload routes are in `tus.rs`.

use crate::engagement::{Comment, SharedVideo};
use crate::feed::FeedItem;
use crate::service::{Video, VideoError, VideoHandle};
use crate::storage;
use axum::body::Body;
use axum::extract::{FromRef, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore};
use plaza_accounts::routes::UserBody;
use plaza_accounts::{Accounts, CurrentUser, HeaderOrQueryUser, User};
use plaza_chat::{CardFuture, CardSource};
use plaza_http::{ApiJson, ApiQuery, ErrorCode, PageParams, Problem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The video routes, relative to `/api/v1`. HLS files are served too but left out of the
/// OpenAPI document: their paths are whatever the playlists name.
pub fn router(video: VideoHandle) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(publish))
        .routes(routes!(get_video, delete_video))
        .routes(routes!(user_videos))
        .routes(routes!(for_you))
        .routes(routes!(following))
        .routes(routes!(record_view))
        .routes(routes!(like, unlike))
        .routes(routes!(comment, comments))
        .routes(routes!(delete_comment))
        .routes(routes!(share))
        .routes(routes!(not_interested))
        .routes(routes!(reset_feed))
        .routes(routes!(mp4))
        .routes(routes!(poster))
        .route("/videos/{id}/hls/{*file}", axum::routing::get(hls))
        .with_state(video)
}

impl FromRef<VideoHandle> for Accounts {
    fn from_ref(video: &VideoHandle) -> Accounts {
        video.inner.accounts.clone()
    }
}

impl From<VideoError> for Problem {
    fn from(error: VideoError) -> Self {
        match error {
            VideoError::InvalidField { field, reason } => Problem::invalid_field(field, reason),
            VideoError::VideoNotFound => Problem::new(ErrorCode::VideoNotFound, "no such video"),
            VideoError::UploadNotFound => Problem::new(ErrorCode::UploadNotFound, "no such upload"),
            VideoError::OffsetMismatch { offset } => Problem::new(
                ErrorCode::UploadOffsetMismatch,
                format!("the upload is at offset {offset}; resume from there"),
            )
            .with_extension("offset", offset),
            VideoError::UploadIncomplete { offset, length } => Problem::new(
                ErrorCode::UploadIncomplete,
                format!("the upload has {offset} of its {length} bytes; finish it first"),
            )
            .with_field("upload_id"),
            VideoError::TooLarge { max_bytes } => {
                Problem::new(ErrorCode::PayloadTooLarge, format!("a video upload has at most {max_bytes} bytes"))
            }
            VideoError::UploadBusy => Problem::new(
                ErrorCode::UploadBusy,
                "another request is writing this upload; ask HEAD for its offset and retry",
            ),
            VideoError::TusVersion => {
                Problem::new(ErrorCode::TusVersionUnsupported, "this server speaks tus 1.0.0 (Tus-Resumable: 1.0.0)")
            }
            VideoError::ContentType => Problem::new(
                ErrorCode::UnsupportedMediaType,
                "a PATCH carries Content-Type: application/offset+octet-stream",
            ),
            VideoError::Busy { what, retry_after_seconds } => {
                Problem::new(ErrorCode::RateLimited, what).with_retry_after(retry_after_seconds)
            }
            VideoError::ProductNotFound => {
                Problem::new(ErrorCode::ProductNotFound, "no such product on sale").with_field("product_id")
            }
            VideoError::CommentNotFound => Problem::new(ErrorCode::CommentNotFound, "no such comment"),
            VideoError::Forbidden { who, action } => {
                Problem::new(ErrorCode::Forbidden, format!("only {who} may {action}"))
            }
            VideoError::Chat(error) => error.into(),
            VideoError::Accounts(error) => error.into(),
            VideoError::Shop(error) => error.into(),
            // A file that is gone belongs to a video deleted meanwhile.
            VideoError::Storage(object_store::Error::NotFound { .. }) => {
                Problem::new(ErrorCode::VideoNotFound, "no such video")
            }
            VideoError::Storage(error) => Problem::internal(&error),
            VideoError::Io(error) => Problem::internal(&error),
            VideoError::Database(error) if plaza_store::is_unavailable(&error) => {
                Problem::new(ErrorCode::Unavailable, "the database is not reachable; try again shortly")
            }
            VideoError::Database(error) => Problem::internal(&error),
        }
    }
}

/// A short video as the caller sees it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Video)]
pub struct VideoBody {
    pub id: String,
    pub author: UserBody,
    pub caption: String,
    /// Lower-case, without `#`, in the order they appear.
    pub hashtags: Vec<String>,
    /// `processing`, `ready` or `failed`.
    pub status: String,
    /// For `failed`: `not_a_video`, `too_long` or `transcode_failed`.
    pub failure: Option<String>,
    pub duration_ms: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// `public`, `followers` or `private`.
    pub visibility: String,
    /// Where to play it, once it is `ready`.
    pub playback: Option<PlaybackBody>,
    pub poster_url: Option<String>,
    /// The shop's `product` card of the product the video sells, if any.
    pub product: Option<Value>,
    pub counts: CountsBody,
    pub liked_by_me: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// Playback URLs: HLS (two renditions) and a fast-start MP4 that answers byte ranges.
/// Both take `?token=` as well as a bearer header, for `<video src>`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaybackBody {
    pub hls_url: String,
    pub mp4_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CountsBody {
    pub views: i64,
    pub likes: i64,
    pub comments: i64,
    pub shares: i64,
}

impl From<Video> for VideoBody {
    fn from(video: Video) -> Self {
        let ready = video.status == crate::VideoStatus::Ready;
        let base = format!("/api/v1/videos/{}", video.id);
        Self {
            playback: ready.then(|| PlaybackBody {
                hls_url: format!("{base}/hls/master.m3u8"),
                mp4_url: format!("{base}/video.mp4"),
            }),
            poster_url: ready.then(|| format!("{base}/poster.jpg")),
            id: video.id,
            author: video.author.into(),
            caption: video.caption,
            hashtags: video.hashtags,
            status: video.status.as_str().to_string(),
            failure: video.failure,
            duration_ms: video.duration_ms,
            width: video.width,
            height: video.height,
            visibility: video.visibility.as_str().to_string(),
            product: video.product,
            counts: CountsBody {
                views: video.views,
                likes: video.likes,
                comments: video.comments,
                shares: video.shares,
            },
            liked_by_me: video.liked_by_me,
            created_at: video.created_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VideoPage {
    pub items: Vec<VideoBody>,
    pub next_cursor: Option<String>,
}

/// A feed item: the video and why it was chosen.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedItemBody {
    pub video: VideoBody,
    /// Why the caller sees it, in words.
    pub reason: String,
    /// The same as a stable code: `following`, `co_engagement`, `hashtag`, `author`,
    /// `trending`, `fresh` (the explore share) or `again`.
    pub reason_code: String,
}

impl From<FeedItem> for FeedItemBody {
    fn from(item: FeedItem) -> Self {
        Self { reason: item.source.reason(), reason_code: item.source.code().to_string(), video: item.video.into() }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedPage {
    pub items: Vec<FeedItemBody>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = VideoComment)]
pub struct CommentBody {
    pub id: String,
    pub video_id: String,
    pub author: UserBody,
    /// The top-level comment this one replies to.
    pub parent_id: Option<String>,
    pub text: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl From<Comment> for CommentBody {
    fn from(comment: Comment) -> Self {
        Self {
            id: comment.id,
            video_id: comment.video_id,
            author: comment.author.into(),
            parent_id: comment.parent_id,
            text: comment.text,
            created_at: comment.created_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommentPage {
    pub items: Vec<CommentBody>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// A finished tus upload of the caller's.
    pub upload_id: String,
    /// 1–2,200 characters; `#words` in it become the hashtags.
    pub caption: String,
    /// A product on sale that the video links to.
    pub product_id: Option<String>,
    /// `public`, `followers` or `private`.
    pub visibility: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewRequest {
    /// How long was watched in all, 0–3,600,000 ms.
    pub watched_ms: i64,
    /// Whether playback reached the end.
    pub completed: bool,
    /// How many times it started over, 0–100.
    pub replays: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    /// 1–500 characters.
    pub text: String,
    /// A top-level comment of the same video to reply to (one level of replies).
    pub parent_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VideoShareRequest)]
pub struct ShareRequest {
    pub conversation_id: String,
}

/// The card message a share posted.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SharedVideo)]
pub struct SharedVideoBody {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub kind: String,
}

impl From<SharedVideo> for SharedVideoBody {
    fn from(shared: SharedVideo) -> Self {
        Self { id: shared.message_id, conversation_id: shared.conversation_id, seq: shared.seq, kind: "card".into() }
    }
}

/// Publish a finished upload; it is `processing` until transcoded (`video.ready` or
/// `video.failed` follows). Publishing the same upload again answers the same video.
#[utoipa::path(post, path = "/videos", tag = "video", security(("bearer" = [])),
    request_body = PublishRequest, responses((status = 201, body = VideoBody)))]
async fn publish(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    ApiJson(body): ApiJson<PublishRequest>,
) -> Result<(StatusCode, Json<VideoBody>), Problem> {
    let published = video
        .publish(&current.user, &body.upload_id, &body.caption, body.product_id.as_deref(), &body.visibility)
        .await?;
    Ok((StatusCode::CREATED, Json(published.into())))
}

/// A video the caller may see.
#[utoipa::path(get, path = "/videos/{id}", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = VideoBody)))]
async fn get_video(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<VideoBody>, Problem> {
    Ok(Json(video.video(&current.user, &id).await?.into()))
}

/// Delete one of your videos, with its likes, comments and files.
#[utoipa::path(delete, path = "/videos/{id}", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204)))]
async fn delete_video(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    video.delete(&current.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's videos the caller may see, newest first (the author also sees those
/// processing or failed).
#[utoipa::path(get, path = "/users/{id}/videos", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path), PageParams), responses((status = 200, body = VideoPage)))]
async fn user_videos(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<VideoPage>, Problem> {
    let limit = plaza_http::page_limit(params.limit)?;
    let page = video.user_videos(&current.user, &id, limit, params.cursor.as_deref()).await?;
    Ok(Json(VideoPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// The For You feed: a ranked page of ready videos the caller may see, each with why.
#[utoipa::path(get, path = "/feed/for-you", tag = "video", security(("bearer" = [])),
    params(PageParams), responses((status = 200, body = FeedPage)))]
async fn for_you(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<FeedPage>, Problem> {
    let limit = plaza_http::page_limit(params.limit)?;
    let page = video.for_you(&current.user, limit, params.cursor.as_deref()).await?;
    Ok(Json(FeedPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// The newest videos of the people the caller follows.
#[utoipa::path(get, path = "/feed/following", tag = "video", security(("bearer" = [])),
    params(PageParams), responses((status = 200, body = FeedPage)))]
async fn following(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<FeedPage>, Problem> {
    let limit = plaza_http::page_limit(params.limit)?;
    let page = video.following_feed(&current.user, limit, params.cursor.as_deref()).await?;
    Ok(Json(FeedPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Report a view when it ends: the signals the feed learns from. Counted once per
/// viewer and day.
#[utoipa::path(post, path = "/videos/{id}/views", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ViewRequest, responses((status = 202)))]
async fn record_view(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ViewRequest>,
) -> Result<StatusCode, Problem> {
    video.record_view(&current.user, &id, body.watched_ms, body.completed, body.replays.unwrap_or(0)).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Like a video; liking twice is one like.
#[utoipa::path(post, path = "/videos/{id}/like", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204)))]
async fn like(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    video.like(&current.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Take a like back.
#[utoipa::path(delete, path = "/videos/{id}/like", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204)))]
async fn unlike(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    video.unlike(&current.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Comment on a video, or reply to one of its comments.
#[utoipa::path(post, path = "/videos/{id}/comments", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = CommentRequest, responses((status = 201, body = CommentBody)))]
async fn comment(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CommentRequest>,
) -> Result<(StatusCode, Json<CommentBody>), Problem> {
    let comment = video.comment(&current.user, &id, &body.text, body.parent_id.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(comment.into())))
}

/// A video's comments, oldest first; replies name their parent.
#[utoipa::path(get, path = "/videos/{id}/comments", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path), PageParams), responses((status = 200, body = CommentPage)))]
async fn comments(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<CommentPage>, Problem> {
    let limit = plaza_http::page_limit(params.limit)?;
    let page = video.comments(&current.user, &id, limit, params.cursor.as_deref()).await?;
    Ok(Json(CommentPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Delete a comment: its writer may, and the video's author may delete any (with its
/// replies).
#[utoipa::path(delete, path = "/videos/{id}/comments/{comment_id}", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path), ("comment_id" = String, Path)), responses((status = 204)))]
async fn delete_comment(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path((id, comment_id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    video.delete_comment(&current.user, &id, &comment_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Share a video into one of your chats as a `video` card, which plays there.
#[utoipa::path(post, path = "/videos/{id}/share", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ShareRequest, responses((status = 201, body = SharedVideoBody)))]
async fn share(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ShareRequest>,
) -> Result<(StatusCode, Json<SharedVideoBody>), Problem> {
    let shared = video.share(&current.user, &id, &body.conversation_id).await?;
    Ok((StatusCode::CREATED, Json(shared.into())))
}

/// Less of this author and hashtags, and never this video again.
#[utoipa::path(post, path = "/videos/{id}/not-interested", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204)))]
async fn not_interested(
    State(video): State<VideoHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    video.not_interested(&current.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Forget what the feed learnt about the caller: affinities, hidden videos and history.
#[utoipa::path(post, path = "/feed/reset", tag = "video", security(("bearer" = [])),
    responses((status = 204)))]
async fn reset_feed(State(video): State<VideoHandle>, current: CurrentUser) -> Result<StatusCode, Problem> {
    video.reset_feed(&current.user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The fast-start MP4 (720p or the source's size if smaller); answers `Range` requests.
#[utoipa::path(get, path = "/videos/{id}/video.mp4", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path),
           ("token" = Option<String>, Query, description = "The session token, for `<video src>`")),
    responses((status = 200, description = "The whole file", content_type = "video/mp4", body = Vec<u8>),
              (status = 206, description = "The range asked for", content_type = "video/mp4", body = Vec<u8>)))]
async fn mp4(
    State(video): State<VideoHandle>,
    HeaderOrQueryUser(user): HeaderOrQueryUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    video.playable_row(&user, &id).await?;
    serve_file(&video.inner.objects, &storage::video_key(&id, "video.mp4"), "video/mp4", &headers).await
}

/// The poster frame.
#[utoipa::path(get, path = "/videos/{id}/poster.jpg", tag = "video", security(("bearer" = [])),
    params(("id" = String, Path),
           ("token" = Option<String>, Query, description = "The session token, for `<img src>`")),
    responses((status = 200, description = "A JPEG", content_type = "image/jpeg", body = Vec<u8>)))]
async fn poster(
    State(video): State<VideoHandle>,
    HeaderOrQueryUser(user): HeaderOrQueryUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    video.playable_row(&user, &id).await?;
    serve_file(&video.inner.objects, &storage::video_key(&id, "poster.jpg"), "image/jpeg", &headers).await
}

/// An HLS playlist or segment. Only the names the transcoder writes are served, so no
/// path reaches the store that Plaza did not make.
async fn hls(
    State(video): State<VideoHandle>,
    HeaderOrQueryUser(user): HeaderOrQueryUser,
    Path((id, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let content_type = hls_content_type(&file).ok_or_else(|| Problem::new(ErrorCode::NotFound, "no such file"))?;
    video.playable_row(&user, &id).await?;
    serve_file(&video.inner.objects, &storage::video_key(&id, &format!("hls/{file}")), content_type, &headers).await
}

/// The content type of a file name the transcoder writes under `hls/`, or `None`.
fn hls_content_type(file: &str) -> Option<&'static str> {
    if file == "master.m3u8" {
        return Some("application/vnd.apple.mpegurl");
    }
    let (variant, name) = file.split_once('/')?;
    let rendition = variant.strip_prefix('v')?;
    if rendition.is_empty() || rendition.len() > 2 || !rendition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if name == "index.m3u8" {
        return Some("application/vnd.apple.mpegurl");
    }
    let number = name.strip_prefix("seg")?.strip_suffix(".ts")?;
    (!number.is_empty() && number.len() <= 6 && number.bytes().all(|b| b.is_ascii_digit())).then_some("video/mp2t")
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    Whole,
    /// `start..end`, end exclusive, within the file.
    Part(u64, u64),
    Unsatisfiable,
}

/// Reads one `bytes=` range (`a-b`, `a-`, `-n`). Several ranges, or a unit other than
/// bytes, are answered with the whole file, as RFC 9110 allows.
fn parse_range(header: Option<&HeaderValue>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|value| value.to_str().ok()).and_then(|text| text.strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeAsk::Whole };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        (true, true) => return RangeAsk::Whole,
        (true, false) => last.parse::<u64>().ok().map(|suffix| (size.saturating_sub(suffix), size)),
        (false, true) => first.parse::<u64>().ok().map(|start| (start, size)),
        (false, false) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(start), Ok(end)) if end >= start => Some((start, end.saturating_add(1).min(size))),
            _ => None,
        },
    };
    match parsed {
        None => RangeAsk::Whole,
        Some((start, end)) if start >= size || end <= start => RangeAsk::Unsatisfiable,
        Some((start, end)) => RangeAsk::Part(start, end),
    }
}

/// Streams a stored file, or the byte range asked for.
async fn serve_file(
    objects: &std::sync::Arc<dyn ObjectStore>,
    key: &str,
    content_type: &'static str,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let path = ObjectPath::from(key);
    let size = objects.head(&path).await.map_err(VideoError::from)?.size;
    let ask = parse_range(headers.get(header::RANGE), size);
    let (status, range) = match ask {
        RangeAsk::Whole => (StatusCode::OK, None),
        RangeAsk::Part(start, end) => (StatusCode::PARTIAL_CONTENT, Some((start, end))),
        RangeAsk::Unsatisfiable => {
            let mut response =
                Problem::new(ErrorCode::RangeNotSatisfiable, format!("the file has {size} bytes")).into_response();
            response.headers_mut().insert(header::CONTENT_RANGE, header_value(format!("bytes */{size}")));
            return Ok(response);
        }
    };
    let options = GetOptions { range: range.map(|(start, end)| GetRange::Bounded(start..end)), ..Default::default() };
    let result = objects.get_opts(&path, options).await.map_err(VideoError::from)?;
    let length = range.map_or(size, |(start, end)| end - start);
    let stream = result.into_stream().map_err(std::io::Error::other);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, header_value(length.to_string()));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Who may play a video is checked on every request, so caches along the way keep none.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some((start, end)) = range {
        headers.insert(header::CONTENT_RANGE, header_value(format!("bytes {start}-{}/{size}", end - 1)));
    }
    Ok(response)
}

fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("digits, spaces, dashes and slashes are a valid header value")
}

/// Renders `video` cards: a ready video the viewer may see.
pub struct VideoCards(pub VideoHandle);

impl CardSource for VideoCards {
    fn render<'a>(&'a self, viewer: &'a User, object_id: &'a str) -> CardFuture<'a> {
        Box::pin(async move {
            match self.0.playable_row(viewer, object_id).await {
                Ok(row) => self.0.card(&row).await.map(Some).map_err(|error| error.to_string()),
                Err(VideoError::VideoNotFound) => Ok(None),
                Err(error) => Err(error.to_string()),
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn range(text: &str, size: u64) -> RangeAsk {
        parse_range(Some(&HeaderValue::from_str(text).unwrap()), size)
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range(None, 100), RangeAsk::Whole);
        assert_eq!(range("bytes=0-9", 100), RangeAsk::Part(0, 10));
        assert_eq!(range("bytes=90-", 100), RangeAsk::Part(90, 100));
        assert_eq!(range("bytes=-10", 100), RangeAsk::Part(90, 100));
        assert_eq!(range("bytes=-1000", 100), RangeAsk::Part(0, 100));
        assert_eq!(range("bytes=50-5000", 100), RangeAsk::Part(50, 100));
        assert_eq!(range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(range("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(range("bytes=9-0", 100), RangeAsk::Whole);
        assert_eq!(range("bytes=0-1,5-6", 100), RangeAsk::Whole);
        assert_eq!(range("items=0-1", 100), RangeAsk::Whole);
    }

    #[test]
    fn only_the_transcoders_file_names_are_served() {
        assert_eq!(hls_content_type("master.m3u8"), Some("application/vnd.apple.mpegurl"));
        assert_eq!(hls_content_type("v0/index.m3u8"), Some("application/vnd.apple.mpegurl"));
        assert_eq!(hls_content_type("v1/seg004.ts"), Some("video/mp2t"));
        for bad in ["../poster.jpg", "v0/../../x", "v/index.m3u8", "v0/seg.ts", "v0/seg1.ts/x", "x.m3u8", "v0/a.ts"] {
            assert_eq!(hls_content_type(bad), None, "{bad}");
        }
    }
}
