//! The chat types as clients see them, in HTTP responses and in socket events alike
//! (one shape for both, so a client renders a `message.new` event and a history page with
//! the same code).

use crate::service::{Conversation, Member, Message};
use plaza_accounts::routes::UserBody;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Message)]
pub struct MessageView {
    pub id: String,
    pub conversation_id: String,
    /// 1, 2, 3, … within the conversation, without gaps.
    pub seq: i64,
    pub sender_id: String,
    pub client_id: String,
    /// `text`, `image`, `card`, `system`, `transfer` or `red_packet`.
    pub kind: String,
    /// `{text}` for text, `{media_id}` for images, `{type, id, title, …}` for cards.
    pub body: Value,
    pub created_at: String,
}

impl From<&Message> for MessageView {
    fn from(message: &Message) -> Self {
        Self {
            id: message.id.clone(),
            conversation_id: message.conversation_id.clone(),
            seq: message.seq,
            sender_id: message.sender_id.clone(),
            client_id: message.client_id.clone(),
            kind: message.kind.as_str().to_string(),
            body: message.body.clone(),
            created_at: message.created_at.to_rfc3339(),
        }
    }
}

/// A member of a conversation.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ConversationMember)]
pub struct MemberView {
    pub user: UserBody,
    /// `owner` or `member`.
    pub role: String,
    /// The member's read high-water mark: every message up to this `seq` is read.
    pub read_seq: i64,
    pub joined_at: String,
}

impl MemberView {
    pub fn new(member: &Member, user: plaza_accounts::User) -> Self {
        Self {
            user: user.into(),
            role: member.role.clone(),
            read_seq: member.read_seq,
            joined_at: member.joined_at.to_rfc3339(),
        }
    }
}

/// A conversation.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Conversation)]
pub struct ConversationView {
    pub id: String,
    /// `direct` or `group`.
    pub kind: String,
    pub title: Option<String>,
    /// The group's owner; null for direct conversations.
    pub owner_id: Option<String>,
    pub member_ids: Vec<String>,
    /// The `seq` of the newest message (0 when there is none).
    pub last_seq: i64,
    pub last_activity_at: String,
    pub created_at: String,
    /// Members with profiles and receipts (on `GET /conversations/{id}` and creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberView>>,
    /// The newest message (in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<MessageView>,
    /// Messages after the caller's read mark (in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread_count: Option<i64>,
}

impl From<&Conversation> for ConversationView {
    fn from(conversation: &Conversation) -> Self {
        Self {
            id: conversation.id.clone(),
            kind: conversation.kind.as_str().to_string(),
            title: conversation.title.clone(),
            owner_id: conversation.owner_id.clone(),
            member_ids: conversation.members.iter().map(|member| member.user_id.clone()).collect(),
            last_seq: conversation.last_seq,
            last_activity_at: conversation.last_activity_at.to_rfc3339(),
            created_at: conversation.created_at.to_rfc3339(),
            members: None,
            last_message: None,
            unread_count: None,
        }
    }
}

/// The data of a `message.read` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadReceipt {
    pub conversation_id: String,
    pub user_id: String,
    pub seq: i64,
}
