//! Sharing a mini-app page into a chat (`POST /miniapps/{id}/share`): a `miniapp` card
//! that every member of the conversation can open at the shared path inside Plaza.
//!
//! The card is written by this service, not by the client: the app's name, home URL and
//! description come from its registration, so a card can only ever open the app it names
//! and only a path on that app's origin. The path is checked here as strictly as the web
//! client checks it before it builds the frame's URL, because a card is kept as posted.

use crate::service::{MiniAppError, MiniApps};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use plaza_accounts::{CurrentUser, User};
use plaza_chat::wire::MessageView;
use plaza_http::{ApiJson, Problem};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The longest title a shared page may have (a chat card shows one line or two).
pub const SHARE_TITLE_MAX_CHARS: usize = 80;
/// The longest path a shared page may have.
pub const SHARE_PATH_MAX_CHARS: usize = 512;
/// Conversation ids are short opaque strings; anything longer cannot name one.
const CONVERSATION_ID_MAX_CHARS: usize = 64;

/// The share route, relative to `/api/v1` (merged beside [`crate::router`]).
pub fn share_router(miniapps: MiniApps) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(share_page)).with_state(miniapps)
}

/// A page of an app as it may be shared: a title to show and a path on the app's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPage {
    title: String,
    path: String,
}

impl SharedPage {
    /// The title is 1 to 80 characters (trimmed) without control characters. The path
    /// starts with `/` but not `//` (which a browser reads as another host), has at most
    /// 512 characters, and no white space, control characters or `\` (which browsers
    /// read as `/`, so `/\evil.example` would also be another host).
    pub fn parse(title: &str, path: &str) -> Result<Self, MiniAppError> {
        let title = title.trim();
        let title_chars = title.chars().count();
        if title_chars == 0 || title_chars > SHARE_TITLE_MAX_CHARS {
            return Err(invalid("title", format!("1 to {SHARE_TITLE_MAX_CHARS} characters")));
        }
        if title.chars().any(char::is_control) {
            return Err(invalid("title", "no control characters".into()));
        }
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(invalid("path", "a path on the app's origin: starts with / but not //".into()));
        }
        if path.chars().count() > SHARE_PATH_MAX_CHARS {
            return Err(invalid("path", format!("at most {SHARE_PATH_MAX_CHARS} characters")));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
            return Err(invalid("path", "no white space, control characters or \\".into()));
        }
        Ok(Self { title: title.to_string(), path: path.to_string() })
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    pub fn path(&self) -> &str {
        &self.path
    }
}

impl MiniApps {
    /// Posts a `miniapp` card for `page` of the app `app_id` into a conversation of
    /// `sharer`'s; a conversation they are not in is not found, as chat answers it. The
    /// answer is the message as chat shows it (chat keeps its message type to itself).
    pub async fn share_page(
        &self,
        sharer: &User,
        app_id: &str,
        conversation_id: &str,
        page: &SharedPage,
    ) -> Result<MessageView, MiniAppError> {
        if conversation_id.is_empty() || conversation_id.chars().count() > CONVERSATION_ID_MAX_CHARS {
            return Err(invalid("conversation_id", format!("1 to {CONVERSATION_ID_MAX_CHARS} characters")));
        }
        let app = self.app(app_id).await?;
        let body = json!({
            "type": "miniapp",
            "id": app.id,
            "title": page.title(),
            "path": page.path(),
            "app_name": app.name,
            "home_url": app.home_url,
            "description": app.description,
        });
        let client_id = format!("miniapp-share-{}", plaza_kernel::new_id());
        let message = self.inner().chat.post_card(conversation_id, &sharer.id, &client_id, &body).await?;
        Ok(MessageView::from(&message))
    }
}

fn invalid(field: &str, reason: String) -> MiniAppError {
    MiniAppError::InvalidField { field: field.to_string(), reason }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SharePageRequest {
    /// One of your conversations.
    pub conversation_id: String,
    /// What the card says, 1 to 80 characters.
    pub title: String,
    /// The page on the app's origin the card opens: starts with `/` (not `//`), at most
    /// 512 characters, no white space, control characters or `\`.
    pub path: String,
}

/// Share a page of a mini-app into one of your chats as a `miniapp` card, which opens the
/// app at that path inside Plaza.
#[utoipa::path(post, path = "/miniapps/{id}/share", tag = "miniapps", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = SharePageRequest,
    responses((status = 201, body = MessageView, description = "The card message, as the chat has it")))]
async fn share_page(
    State(miniapps): State<MiniApps>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SharePageRequest>,
) -> Result<(StatusCode, Json<MessageView>), Problem> {
    let page = SharedPage::parse(&body.title, &body.path)?;
    let message = miniapps.share_page(&current.user, &id, &body.conversation_id, &page).await?;
    Ok((StatusCode::CREATED, Json(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<SharedPage, MiniAppError>) -> String {
        match result {
            Err(MiniAppError::InvalidField { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn a_page_on_the_apps_origin_is_accepted() {
        let page = SharedPage::parse("  Flat white  ", "/menu?item=3#top").expect("valid");
        assert_eq!(page.title(), "Flat white");
        assert_eq!(page.path(), "/menu?item=3#top");
        assert!(SharedPage::parse(&"咖".repeat(80), "/").is_ok());
        assert!(SharedPage::parse("t", &format!("/{}", "a".repeat(511))).is_ok());
    }

    #[test]
    fn paths_that_could_leave_the_apps_origin_are_refused() {
        for path in
            ["", "menu", "//evil.example/", "/\\evil.example", "https://evil.example/", "/a b", "/a\tb", "/a\u{7}"]
        {
            assert_eq!(field_of(SharedPage::parse("t", path)), "path", "{path:?}");
        }
        assert_eq!(field_of(SharedPage::parse("t", &format!("/{}", "a".repeat(512)))), "path");
    }

    #[test]
    fn titles_are_one_to_eighty_characters_without_control_characters() {
        for title in ["", "   ", "line\nbreak", "bell\u{7}"] {
            assert_eq!(field_of(SharedPage::parse(title, "/")), "title", "{title:?}");
        }
        assert_eq!(field_of(SharedPage::parse(&"a".repeat(81), "/")), "title");
    }
}
