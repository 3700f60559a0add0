//! The chat HTTP API (API.md, "Chat"): wire requests, handlers, and the one mapping from
//! [`ChatError`] to problems.

use crate::service::{Chat, ChatError, Conversation, HistoryWindow};
use crate::wire::{ConversationView, MemberView, MessageView};
use crate::ConversationKind;
use axum::extract::{DefaultBodyLimit, FromRef, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use plaza_accounts::{Accounts, CurrentUser, HeaderOrQueryUser};
use plaza_http::{page_limit, ApiJson, ApiQuery, ErrorCode, PageParams, Problem};
use plaza_media::{MediaError, MediaItem, UPLOAD_MAX_BYTES};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// The chat routes, relative to `/api/v1`.
pub fn router(chat: Chat) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_conversation, list_conversations))
        .routes(routes!(get_conversation))
        .routes(routes!(add_members))
        .routes(routes!(remove_member))
        .routes(routes!(send_message, list_messages))
        .routes(routes!(mark_read))
        .routes(routes!(upload_media).layer(DefaultBodyLimit::max(UPLOAD_MAX_BYTES + 64 * 1024)))
        .routes(routes!(get_media))
        .with_state(chat)
}

impl FromRef<Chat> for Accounts {
    fn from_ref(chat: &Chat) -> Accounts {
        chat.accounts().clone()
    }
}

impl From<ChatError> for Problem {
    fn from(error: ChatError) -> Self {
        match error {
            ChatError::InvalidField { field, reason } => Problem::invalid_field(field, reason),
            ChatError::ConversationNotFound => Problem::new(ErrorCode::ConversationNotFound, "no such conversation"),
            ChatError::UserNotFound(id) => {
                Problem::new(ErrorCode::UserNotFound, format!("no user with id {id:?}")).with_field("member_ids")
            }
            ChatError::NotAMember(id) => {
                Problem::new(ErrorCode::NotAMember, format!("user {id:?} is not a member of this conversation"))
            }
            ChatError::NotAGroup => Problem::new(ErrorCode::NotAGroup, "direct conversations have fixed members"),
            ChatError::NotOwner => {
                Problem::new(ErrorCode::NotConversationOwner, "only the group's owner can remove others")
            }
            ChatError::NotAContact(user_id) => Problem::new(
                ErrorCode::NotAContact,
                format!("{user_id} is not your contact; only a person's contacts can add them to a group"),
            )
            .with_field("user_ids"),
            ChatError::LeftConversation(user_id) => {
                Problem::new(ErrorCode::LeftConversation, format!("{user_id} left this group; only they can come back"))
                    .with_field("user_ids")
            }
            ChatError::CardNotAllowed(reason) => Problem::new(ErrorCode::CardNotAllowed, reason).with_field("body"),
            ChatError::TooManyGroups { retry_after } => {
                Problem::new(ErrorCode::RateLimited, "you have created too many groups in the last hour")
                    .with_retry_after(retry_after.as_secs_f64().ceil() as u64)
            }
            ChatError::GroupFull { max } => {
                Problem::new(ErrorCode::GroupFull, format!("a group has at most {max} members"))
            }
            ChatError::Database(error) if plaza_store::is_unavailable(&error) => {
                Problem::new(ErrorCode::Unavailable, "the database is not reachable; try again shortly")
            }
            ChatError::Database(error) => Problem::internal(&error),
            ChatError::SendLost(error) => {
                Problem::new(ErrorCode::Unavailable, format!("{error}; retry with the same client_id"))
            }
            ChatError::Accounts(error) => error.into(),
            ChatError::Media(error) => match error {
                MediaError::TooLarge { max } => {
                    Problem::new(ErrorCode::PayloadTooLarge, format!("an image has at most {max} bytes"))
                        .with_field("file")
                }
                MediaError::Empty => Problem::invalid_field("file", "the file is empty"),
                MediaError::NotAnImage => {
                    Problem::invalid_field("file", "the file is not a PNG, JPEG, GIF or WebP image")
                }
                MediaError::NotFound => Problem::new(ErrorCode::MediaNotFound, "no such media"),
                MediaError::DailyLimit { retry_after_seconds, .. } => {
                    Problem::new(ErrorCode::UploadLimitExceeded, error.to_string())
                        .with_retry_after(retry_after_seconds)
                }
                MediaError::NotOwned { .. } => Problem::new(ErrorCode::MediaNotFound, "no such media"),
                MediaError::Database(error) => ChatError::Database(error).into(),
                MediaError::UnsupportedUrl(_) | MediaError::Storage(_) => Problem::internal(&error),
            },
        }
    }
}

/// The multipart body of an upload (documentation only; parsed by hand).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The image: PNG, JPEG, GIF or WebP, at most 10 MiB.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// An uploaded media item.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Media)]
pub struct MediaView {
    pub id: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub created_at: String,
    /// Where members fetch it (with their bearer token).
    pub url: String,
}

impl From<&MediaItem> for MediaView {
    fn from(item: &MediaItem) -> Self {
        Self {
            id: item.id.clone(),
            content_type: item.content_type.clone(),
            size_bytes: item.size_bytes,
            created_at: item.created_at.to_rfc3339(),
            url: format!("/api/v1/media/{}", item.id),
        }
    }
}

/// Upload an image (multipart form, field `file`), to send as an `image` message.
#[utoipa::path(post, path = "/media", tag = "chat", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "Stored", body = MediaView)))]
async fn upload_media(
    State(chat): State<Chat>,
    current: CurrentUser,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, axum::Json<MediaView>), Problem> {
    let mut multipart = multipart.map_err(|rejection| {
        Problem::new(ErrorCode::UnsupportedMediaType, format!("send multipart/form-data: {}", rejection.body_text()))
    })?;
    let too_large = || {
        Problem::new(ErrorCode::PayloadTooLarge, format!("an image has at most {UPLOAD_MAX_BYTES} bytes"))
            .with_field("file")
    };
    while let Some(mut field) = multipart.next_field().await.map_err(|error| multipart_problem(&error))? {
        if field.name() != Some("file") {
            continue;
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|error| multipart_problem(&error))? {
            if bytes.len() + chunk.len() > UPLOAD_MAX_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        let item = chat.upload_media(&current.user, bytes::Bytes::from(bytes)).await?;
        return Ok((StatusCode::CREATED, axum::Json(MediaView::from(&item))));
    }
    Err(Problem::invalid_field("file", "the form has no `file` field"))
}

fn multipart_problem(error: &axum::extract::multipart::MultipartError) -> Problem {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(ErrorCode::PayloadTooLarge, format!("an image has at most {UPLOAD_MAX_BYTES} bytes"))
            .with_field("file")
    } else {
        Problem::new(ErrorCode::BadRequest, format!("unreadable multipart body: {}", error.body_text()))
    }
}

/// Fetch an image: its uploader and the members of a conversation it was sent in may.
/// Takes `?token=` as well as a bearer header, so that an `<img src>` can show it.
#[utoipa::path(get, path = "/media/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path, description = "Media id"),
           ("token" = Option<String>, Query, description = "The session token, for clients that cannot set headers")),
    responses((status = 200, description = "The image bytes", content_type = "image/*", body = Vec<u8>)))]
async fn get_media(
    State(chat): State<Chat>,
    HeaderOrQueryUser(user): HeaderOrQueryUser,
    Path(id): Path<String>,
) -> Result<axum::response::Response, Problem> {
    let (item, bytes) = chat.media_for(&user, &id).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, item.content_type),
            (axum::http::header::CACHE_CONTROL, "private, max-age=31536000, immutable".to_string()),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateConversationRequest {
    /// `direct` or `group`.
    pub kind: String,
    /// The other members (for `direct`, exactly one). The caller is always a member.
    pub member_ids: Vec<String>,
    /// Groups only; 1–64 characters.
    pub title: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddMembersRequest {
    pub user_ids: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SendMessageRequest {
    /// The client's id for this send, 1–64 printable characters: sending again with the
    /// same one returns the first message instead of posting a second.
    pub client_id: String,
    /// `text`, `image` or `card`.
    pub kind: String,
    pub body: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReadRequest {
    /// Everything up to this `seq` is read.
    pub seq: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryParams {
    /// Messages with a greater `seq`, oldest first.
    #[param(minimum = 0)]
    pub after_seq: Option<i64>,
    /// Messages with a smaller `seq` (the page just before it).
    #[param(minimum = 1)]
    pub before_seq: Option<i64>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// From `next_cursor`: continues in the same direction.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationPage {
    pub items: Vec<ConversationView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    /// Ordered by `seq`, oldest first.
    pub items: Vec<MessageView>,
    pub next_cursor: Option<String>,
}

async fn with_members(chat: &Chat, conversation: &Conversation) -> Result<ConversationView, Problem> {
    let profiles = chat.member_profiles(conversation).await?;
    let mut view = ConversationView::from(conversation);
    view.members = Some(
        conversation
            .members
            .iter()
            .filter_map(|member| {
                let profile = profiles.iter().find(|user| user.id == member.user_id)?;
                Some(MemberView::new(member, profile.clone()))
            })
            .collect(),
    );
    Ok(view)
}

/// Start a direct or group conversation (a direct one with the same person is returned, not duplicated).
#[utoipa::path(post, path = "/conversations", tag = "chat", security(("bearer" = [])), request_body = CreateConversationRequest,
    responses(
        (status = 201, description = "Created", body = ConversationView),
        (status = 200, description = "The existing direct conversation", body = ConversationView)))]
async fn create_conversation(
    State(chat): State<Chat>,
    current: CurrentUser,
    ApiJson(request): ApiJson<CreateConversationRequest>,
) -> Result<(StatusCode, axum::Json<ConversationView>), Problem> {
    let kind = ConversationKind::parse(&request.kind)
        .ok_or_else(|| Problem::invalid_field("kind", "kind is direct or group"))?;
    let (conversation, created) =
        chat.create_conversation(&current.user, kind, &request.member_ids, request.title.as_deref()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(with_members(&chat, &conversation).await?)))
}

/// The caller's conversations, newest activity first, with the last message and unread count.
#[utoipa::path(get, path = "/conversations", tag = "chat", security(("bearer" = [])), params(PageParams),
    responses((status = 200, description = "Conversations", body = ConversationPage)))]
async fn list_conversations(
    State(chat): State<Chat>,
    current: CurrentUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<axum::Json<ConversationPage>, Problem> {
    let limit = page_limit(params.limit)?;
    let page = chat.conversations(&current.user, limit, params.cursor.as_deref()).await?;
    let items = page
        .items
        .iter()
        .map(|summary| {
            let mut view = ConversationView::from(&summary.conversation);
            view.last_message = summary.last_message.as_ref().map(MessageView::from);
            view.unread_count = Some(summary.unread_count);
            view
        })
        .collect();
    Ok(axum::Json(ConversationPage { items, next_cursor: page.next_cursor }))
}

/// A conversation with its members and their read marks.
#[utoipa::path(get, path = "/conversations/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, description = "The conversation", body = ConversationView)))]
async fn get_conversation(
    State(chat): State<Chat>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<axum::Json<ConversationView>, Problem> {
    let conversation = chat.conversation(&current.user, &id).await?;
    Ok(axum::Json(with_members(&chat, &conversation).await?))
}

/// Add members to a group (any member may invite).
#[utoipa::path(post, path = "/conversations/{id}/members", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path, description = "Conversation id")), request_body = AddMembersRequest,
    responses((status = 200, description = "The group with its new members", body = ConversationView)))]
async fn add_members(
    State(chat): State<Chat>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<AddMembersRequest>,
) -> Result<axum::Json<ConversationView>, Problem> {
    let conversation = chat.add_members(&current.user, &id, &request.user_ids).await?;
    Ok(axum::Json(with_members(&chat, &conversation).await?))
}

/// Leave a group (your own id) or, as its owner, remove someone.
#[utoipa::path(delete, path = "/conversations/{id}/members/{user_id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path, description = "Conversation id"), ("user_id" = String, Path, description = "Who leaves")),
    responses((status = 204, description = "Removed")))]
async fn remove_member(
    State(chat): State<Chat>,
    current: CurrentUser,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    chat.remove_member(&current.user, &id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a message; retrying with the same `client_id` returns the first one.
#[utoipa::path(post, path = "/conversations/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path, description = "Conversation id")), request_body = SendMessageRequest,
    responses(
        (status = 201, description = "Sent", body = MessageView),
        (status = 200, description = "Already sent with this client_id", body = MessageView)))]
async fn send_message(
    State(chat): State<Chat>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<SendMessageRequest>,
) -> Result<(StatusCode, axum::Json<MessageView>), Problem> {
    let (message, created) =
        chat.send_message(&current.user, &id, &request.client_id, &request.kind, &request.body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(MessageView::from(&message))))
}

/// History, ordered by `seq`: the newest page by default, or after/before a `seq`.
#[utoipa::path(get, path = "/conversations/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path, description = "Conversation id"), HistoryParams),
    responses((status = 200, description = "Messages, oldest first", body = MessagePage)))]
async fn list_messages(
    State(chat): State<Chat>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<axum::Json<MessagePage>, Problem> {
    let limit = page_limit(params.limit)?;
    let window = match (params.cursor.as_deref(), params.after_seq, params.before_seq) {
        (Some(cursor), _, _) if !cursor.is_empty() => parse_history_cursor(cursor)?,
        (_, Some(after), before) if after >= 0 => HistoryWindow::After(after, before),
        (_, None, Some(before)) if before >= 1 => HistoryWindow::Before(before),
        (_, None, None) => HistoryWindow::Latest,
        (_, Some(_), _) => return Err(Problem::invalid_field("after_seq", "after_seq cannot be negative")),
        (_, None, Some(_)) => return Err(Problem::invalid_field("before_seq", "before_seq is at least 1")),
    };
    let page = chat.history(&current.user, &id, window, limit).await?;
    Ok(axum::Json(MessagePage {
        items: page.messages.iter().map(MessageView::from).collect(),
        next_cursor: page.next.map(history_cursor),
    }))
}

/// Mark everything up to `seq` as read.
#[utoipa::path(post, path = "/conversations/{id}/read", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path, description = "Conversation id")), request_body = ReadRequest,
    responses((status = 204, description = "Read mark moved (it never moves back)")))]
async fn mark_read(
    State(chat): State<Chat>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ReadRequest>,
) -> Result<StatusCode, Problem> {
    chat.mark_read(&current.user, &id, request.seq).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn history_cursor(window: HistoryWindow) -> String {
    let position = match window {
        HistoryWindow::Latest => "latest".to_string(),
        HistoryWindow::After(after, None) => format!("after:{after}"),
        HistoryWindow::After(after, Some(before)) => format!("after:{after}:{before}"),
        HistoryWindow::Before(before) => format!("before:{before}"),
    };
    plaza_kernel::Cursor::from_position(&position).into_string()
}

fn parse_history_cursor(cursor: &str) -> Result<HistoryWindow, Problem> {
    let invalid = || Problem::invalid_field("cursor", "not a cursor this server issued");
    let position = plaza_kernel::Cursor::parse_position(cursor).ok_or_else(invalid)?;
    let parts: Vec<&str> = position.split(':').collect();
    let number = |text: &str| text.parse::<i64>().map_err(|_| invalid());
    match parts.as_slice() {
        ["after", after] => Ok(HistoryWindow::After(number(after)?, None)),
        ["after", after, before] => Ok(HistoryWindow::After(number(after)?, Some(number(before)?))),
        ["before", before] => Ok(HistoryWindow::Before(number(before)?)),
        _ => Err(invalid()),
    }
}
