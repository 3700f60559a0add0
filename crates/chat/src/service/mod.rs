//! The chat service: conversations, messages and receipts as plain async functions over
//! the store. Every change that others must learn about appends its events in the same
//! transaction and publishes them after commit.
//!
//! This module holds the handle, its configuration, errors and types; the rooms below it
//! hold the rest: `conversations` (creating, members), `messages` (sending, history, read
//! receipts), `listing` (what a member sees), `media` (images) and `rows` (row mapping).

use crate::cards::{CardSource, CardSources};
use crate::model::{parse_title, ClientId, ConversationKind, MessageBody, MessageKind};
use crate::send_batch::{SendJob, SendOutcome, SEND_BATCH_MAX, SEND_BATCH_MAX_LIMIT, SEND_QUEUE_MAX};
use crate::wire::{ConversationView, MessageView, ReadReceipt};
use plaza_accounts::{Accounts, AccountsError, User};
use plaza_events::{Appended, Events};
use plaza_kernel::{PageLimit, Timestamp};
use plaza_media::{Media, MediaError, MediaItem};
use plaza_store::{is_unique_violation, Any, AnyRow, GroupCommit, GroupCommitError, Queued, Row, Store, Transaction};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

mod conversations;
mod listing;
mod media;
mod messages;
mod rows;

pub(crate) use rows::message_from_row;
use rows::*;

/// Tunables of the chat service.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// The most members a group may have, its owner included.
    pub group_members_max: usize,
    /// The most client sends stored in one transaction; 1 stores each on its own.
    pub send_batch_max: usize,
    /// Groups one user may create per hour.
    pub group_creations_per_hour: u32,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self { group_members_max: 500, send_batch_max: SEND_BATCH_MAX, group_creations_per_hour: 30 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("no such conversation")]
    ConversationNotFound,
    #[error("no such user: {0}")]
    UserNotFound(String),
    #[error("not a member: {0}")]
    NotAMember(String),
    #[error("only groups have members to add or remove")]
    NotAGroup,
    #[error("only the owner can remove others")]
    NotOwner,
    #[error("a group has at most {max} members")]
    GroupFull { max: usize },
    #[error("not a contact of the caller: {0}")]
    NotAContact(String),
    #[error("left the group; only they can come back: {0}")]
    LeftConversation(String),
    #[error("card not allowed: {0}")]
    CardNotAllowed(String),
    #[error("too many groups created; retry after {retry_after:?}")]
    TooManyGroups { retry_after: std::time::Duration },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("accounts: {0}")]
    Accounts(#[from] AccountsError),
    #[error("media: {0}")]
    Media(#[from] MediaError),
    #[error("send: {0}")]
    SendLost(#[from] GroupCommitError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ChatError {
    ChatError::InvalidField { field, reason: reason.into() }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_id: String,
    pub client_id: String,
    pub kind: MessageKind,
    pub body: Value,
    pub created_at: Timestamp,
}

/// One member of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub user_id: String,
    pub role: String,
    pub read_seq: i64,
    pub joined_at: Timestamp,
}

/// A conversation and its members.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: String,
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub owner_id: Option<String>,
    pub last_seq: i64,
    pub last_activity_at: Timestamp,
    pub created_at: Timestamp,
    pub members: Vec<Member>,
}

impl Conversation {
    pub fn member(&self, user_id: &str) -> Option<&Member> {
        self.members.iter().find(|member| member.user_id == user_id)
    }

    fn member_ids(&self) -> Vec<String> {
        self.members.iter().map(|member| member.user_id.clone()).collect()
    }
}

/// A conversation as listed for one member.
#[derive(Debug, Clone)]
pub struct ConversationSummary {
    pub conversation: Conversation,
    pub last_message: Option<Message>,
    pub unread_count: i64,
}

/// Which page of a conversation's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryWindow {
    /// The newest messages.
    Latest,
    /// Messages after this `seq` (and before the second bound, if any), oldest first.
    After(i64, Option<i64>),
    /// Messages before this `seq`, newest page first.
    Before(i64),
}

/// A page of history, oldest first, with the window that continues it.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    pub next: Option<HistoryWindow>,
}

/// A client send in line to be stored.
#[derive(Debug)]
pub struct QueuedSend(Queued<SendOutcome>);

impl QueuedSend {
    /// The stored message (`false` in the second place for a repeated `client_id`).
    pub async fn outcome(self) -> Result<(Message, bool), ChatError> {
        self.0.answer().await?
    }
}

/// The chat service handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    events: Events,
    accounts: Accounts,
    media: Media,
    config: ChatConfig,
    /// Client sends, group-committed; started on first use (it needs the runtime).
    sends: OnceLock<GroupCommit<SendJob, SendOutcome>>,
    /// Who renders each type of card clients may post.
    cards: CardSources,
}

pub(crate) const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, sender_id, client_id, kind, body, created_at";

impl Chat {
    pub fn new(store: Store, events: Events, accounts: Accounts, media: Media, config: ChatConfig) -> Self {
        let cards = CardSources::default();
        Self { inner: Arc::new(Inner { store, events, accounts, media, config, sends: OnceLock::new(), cards }) }
    }

    /// Lets clients post cards of `card_type`, rendered by `source` (see `cards.rs`).
    /// Types nobody registered are refused.
    pub fn register_card_source(&self, card_type: &str, source: Arc<dyn CardSource>) {
        self.inner.cards.register(card_type, source);
    }

    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    fn sends(&self) -> &GroupCommit<SendJob, SendOutcome> {
        self.inner.sends.get_or_init(|| {
            // The runner holds the service weakly, so dropping the last handle stops it.
            let service = Arc::downgrade(&self.inner);
            let run = move |jobs: Vec<SendJob>| {
                let service = service.upgrade().map(|inner| Chat { inner });
                async move {
                    match service {
                        Some(chat) => chat.send_batch(jobs).await,
                        None => jobs.iter().map(|_| Err(ChatError::SendLost(GroupCommitError::Stopped))).collect(),
                    }
                }
            };
            let batch_max = self.inner.config.send_batch_max.clamp(1, SEND_BATCH_MAX_LIMIT);
            GroupCommit::spawn_on_own_thread("plaza-chat-sends", SEND_QUEUE_MAX, batch_max, run.clone()).unwrap_or_else(
                |error| {
                    tracing::warn!("no thread for chat sends ({error}); they share the main runtime");
                    GroupCommit::spawn(SEND_QUEUE_MAX, batch_max, run)
                },
            )
        })
    }

    pub(crate) async fn load(&self, conversation_id: &str) -> Result<Option<Conversation>, ChatError> {
        let mut connection = self.inner.store.read().acquire().await?;
        load_conversation(&mut connection, conversation_id).await
    }

    /// The conversation as seen inside a transaction, if `me` is a member.
    pub(crate) async fn member_view(
        &self,
        transaction: &mut Transaction<'static, Any>,
        me: &User,
        conversation_id: &str,
    ) -> Result<Conversation, ChatError> {
        let conversation =
            load_conversation(transaction, conversation_id).await?.ok_or(ChatError::ConversationNotFound)?;
        if conversation.member(&me.id).is_none() {
            return Err(ChatError::ConversationNotFound);
        }
        Ok(conversation)
    }

    pub(crate) async fn require_users(&self, ids: &[String]) -> Result<(), ChatError> {
        let found: HashSet<String> = self.inner.accounts.users(ids).await?.into_iter().map(|user| user.id).collect();
        match ids.iter().find(|id| !found.contains(*id)) {
            Some(missing) => Err(ChatError::UserNotFound(missing.clone())),
            None => Ok(()),
        }
    }

    /// Appends `conversation.updated` for every member and for `also` (people who just
    /// left, so their clients drop it).
    pub(crate) async fn announce_conversation(
        &self,
        transaction: &mut Transaction<'static, Any>,
        conversation: &Conversation,
        also: &[String],
    ) -> Result<Appended, ChatError> {
        let mut recipients = conversation.member_ids();
        recipients.extend(also.iter().cloned());
        let data = serde_json::to_value(ConversationView::from(conversation)).unwrap_or(Value::Null);
        Ok(self.inner.events.append(transaction, &recipients, "conversation.updated", &data).await?)
    }
}
