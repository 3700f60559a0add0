//! Live chat and moderation over HTTP (API.md, "Live"). The socket side (`live.join`,
//! `live.leave`, `live.chat.send`) is the gateway's, through [`crate::LiveViewer`].

use crate::chat::ChatMessage;
use crate::moderation::{Moderation, ModerationAction};
use crate::service::LiveHandle;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use plaza_accounts::routes::UserBody;
use plaza_accounts::CurrentUser;
use plaza_http::{ApiJson, ApiQuery, PageParams, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn router() -> OpenApiRouter<LiveHandle> {
    OpenApiRouter::new().routes(routes!(post_chat, list_chat)).routes(routes!(delete_chat)).routes(routes!(moderate))
}

/// A live chat message, as `live.chat` frames and these routes carry it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = LiveChatMessage)]
pub struct ChatMessageBody {
    pub id: String,
    pub user: UserBody,
    pub text: String,
    /// RFC 3339, UTC.
    pub at: String,
}

impl From<&ChatMessage> for ChatMessageBody {
    fn from(message: &ChatMessage) -> Self {
        Self {
            id: message.id.clone(),
            user: message.user.clone().into(),
            text: message.text.clone(),
            at: message.at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// 1–200 characters after trimming.
    pub text: String,
}

/// Say something in a live room's chat. The caller must have joined the room
/// (`live.join` on a socket, on any node); it reaches every viewer in the next batch.
/// 1 message a second per viewer and room, bursts of 3 (429 `rate_limited`); muted or
/// banned is 403 `muted`, not joined 409 `live_room_not_joined`, ended 409
/// `live_room_ended`.
#[utoipa::path(post, path = "/live/rooms/{id}/chat", tag = "live", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ChatRequest,
    responses((status = 202, description = "Accepted and on its way to every viewer", body = ChatMessageBody)))]
async fn post_chat(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChatRequest>,
) -> Result<(StatusCode, Json<ChatMessageBody>), Problem> {
    let message = live.post_chat(&current.user, &id, &body.text).await?;
    Ok((StatusCode::ACCEPTED, Json(ChatMessageBody::from(&message))))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LiveChatPage)]
pub struct ChatPage {
    pub items: Vec<ChatMessageBody>,
    pub next_cursor: Option<String>,
}

/// A room's kept chat, oldest first: what was said in a replay, or before joining.
#[utoipa::path(get, path = "/live/rooms/{id}/chat", tag = "live", security(("bearer" = [])),
    params(("id" = String, Path), PageParams), responses((status = 200, body = ChatPage)))]
async fn list_chat(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<ChatPage>, Problem> {
    let limit = plaza_http::page_limit(params.limit)?;
    let page = live.chat_history(&current.user, &id, limit, params.cursor.as_deref()).await?;
    Ok(Json(ChatPage { items: page.items.iter().map(ChatMessageBody::from).collect(), next_cursor: page.next_cursor }))
}

/// Delete a message from the room's chat (host only); every viewer gets
/// `live.chat_deleted`.
#[utoipa::path(delete, path = "/live/rooms/{id}/chat/{message_id}", tag = "live", security(("bearer" = [])),
    params(("id" = String, Path), ("message_id" = String, Path)), responses((status = 204)))]
async fn delete_chat(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    live.delete_chat(&current.user, &id, &message_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModerationRequest {
    pub user_id: String,
    /// `mute`, `unmute` or `ban` (a ban also mutes, and removes the user from the room on
    /// every node; nothing lifts it).
    pub action: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LiveModeration)]
pub struct ModerationBody {
    pub room_id: String,
    pub user_id: String,
    pub muted: bool,
    pub banned: bool,
}

impl From<Moderation> for ModerationBody {
    fn from(moderation: Moderation) -> Self {
        Self {
            room_id: moderation.room_id,
            user_id: moderation.user_id,
            muted: moderation.muted,
            banned: moderation.banned,
        }
    }
}

/// Mute, unmute or ban a viewer in the room (host only; anyone else 403).
#[utoipa::path(post, path = "/live/rooms/{id}/moderation", tag = "live", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ModerationRequest,
    responses((status = 200, description = "The user's standing in the room now", body = ModerationBody)))]
async fn moderate(
    State(live): State<LiveHandle>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ModerationRequest>,
) -> Result<Json<ModerationBody>, Problem> {
    let action = ModerationAction::parse(&body.action)
        .ok_or_else(|| Problem::invalid_field("action", "one of mute, unmute and ban"))?;
    Ok(Json(live.moderate(&current.user, &id, &body.user_id, action).await?.into()))
}
