//! The chat service: conversations, messages and receipts as plain async functions over
//! the store. Every change that others must learn about appends its events in the same
//! transaction and publishes them after commit.

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

    /// Creates a conversation. A direct conversation with the same person is returned
    /// instead of duplicated (`false` in the second place).
    pub async fn create_conversation(
        &self,
        me: &User,
        kind: ConversationKind,
        member_ids: &[String],
        title: Option<&str>,
    ) -> Result<(Conversation, bool), ChatError> {
        let mut others: Vec<String> = member_ids.iter().filter(|id| **id != me.id).cloned().collect();
        others.sort();
        others.dedup();
        match kind {
            ConversationKind::Direct => {
                if others.len() != 1 {
                    return Err(invalid("member_ids", "a direct conversation has exactly one other member"));
                }
                if title.is_some() {
                    return Err(invalid("title", "direct conversations have no title"));
                }
                self.inner.accounts.user(&others[0]).await.map_err(|error| match error {
                    AccountsError::UserNotFound => ChatError::UserNotFound(others[0].clone()),
                    other => other.into(),
                })?;
                self.create_direct(me, &others[0]).await
            }
            ConversationKind::Group => {
                let title = title.map(parse_title).transpose().map_err(|reason| invalid("title", reason))?;
                let max = self.inner.config.group_members_max;
                if others.len() + 1 > max {
                    return Err(ChatError::GroupFull { max });
                }
                self.require_users(&others).await?;
                self.require_contacts(me, &others).await?;
                self.check_group_creations(me).await?;
                Ok((self.create_group(me, &others, title).await?, true))
            }
        }
    }

    async fn create_direct(&self, me: &User, other_id: &str) -> Result<(Conversation, bool), ChatError> {
        let mut pair = [me.id.as_str(), other_id];
        pair.sort();
        let direct_key = pair.join(":");
        if let Some(existing) = self.direct_conversation(&direct_key).await? {
            return Ok((existing, false));
        }
        let now = Timestamp::now();
        let id = plaza_kernel::new_id();
        let mut transaction = self.inner.store.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO conversations (id, kind, title, owner_id, direct_key, last_seq, last_activity_at, created_at)
             VALUES ($1, 'direct', NULL, NULL, $2, 0, $3, $3)",
        )
        .bind(&id)
        .bind(&direct_key)
        .bind(now.unix_millis())
        .execute(&mut *transaction)
        .await;
        match inserted {
            Err(error) if is_unique_violation(&error) => {
                drop(transaction);
                // Both people opened the chat at the same moment: the other insert won.
                let existing = self.direct_conversation(&direct_key).await?.ok_or(ChatError::ConversationNotFound)?;
                return Ok((existing, false));
            }
            other => other?,
        };
        for user_id in pair {
            insert_member(&mut transaction, &id, user_id, "member", now, 0).await?;
        }
        let conversation = load_conversation(&mut transaction, &id).await?.ok_or(ChatError::ConversationNotFound)?;
        let appended = self.announce_conversation(&mut transaction, &conversation, &[]).await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok((conversation, true))
    }

    async fn direct_conversation(&self, direct_key: &str) -> Result<Option<Conversation>, ChatError> {
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM conversations WHERE direct_key = $1")
            .bind(direct_key)
            .fetch_optional(self.inner.store.read())
            .await?;
        match id {
            Some(id) => Ok(self.load(&id).await?),
            None => Ok(None),
        }
    }

    async fn create_group(
        &self,
        me: &User,
        others: &[String],
        title: Option<String>,
    ) -> Result<Conversation, ChatError> {
        let now = Timestamp::now();
        let id = plaza_kernel::new_id();
        let mut transaction = self.inner.store.begin().await?;
        sqlx::query(
            "INSERT INTO conversations (id, kind, title, owner_id, direct_key, last_seq, last_activity_at, created_at, created_by)
             VALUES ($1, 'group', $2, $3, NULL, 0, $4, $4, $3)",
        )
        .bind(&id)
        .bind(&title)
        .bind(&me.id)
        .bind(now.unix_millis())
        .execute(&mut *transaction)
        .await?;
        insert_member(&mut transaction, &id, &me.id, "owner", now, 0).await?;
        for user_id in others {
            insert_member(&mut transaction, &id, user_id, "member", now, 0).await?;
        }
        let mut member_ids = vec![me.id.clone()];
        member_ids.extend(others.iter().cloned());
        let body = json!({"event": "group_created", "actor_id": me.id, "title": title, "user_ids": others});
        let (_, mut appended) =
            self.insert_message(&mut transaction, &id, &me.id, None, MessageKind::System, &body, &member_ids).await?;
        let conversation = load_conversation(&mut transaction, &id).await?.ok_or(ChatError::ConversationNotFound)?;
        appended.merge(self.announce_conversation(&mut transaction, &conversation, &[]).await?);
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok(conversation)
    }

    /// Adds members to a group: any member may add their own contacts, except people who
    /// left it (only they can come back). New members see the history from their joining on.
    pub async fn add_members(
        &self,
        me: &User,
        conversation_id: &str,
        user_ids: &[String],
    ) -> Result<Conversation, ChatError> {
        let mut wanted: Vec<String> = user_ids.to_vec();
        wanted.sort();
        wanted.dedup();
        if wanted.is_empty() {
            return Err(invalid("user_ids", "name at least one user to add"));
        }
        let max = self.inner.config.group_members_max;
        if wanted.len() > max {
            return Err(ChatError::GroupFull { max });
        }
        self.require_users(&wanted).await?;
        let now = Timestamp::now();
        let mut transaction = self.inner.store.begin().await?;
        let conversation = self.member_view(&mut transaction, me, conversation_id).await?;
        if conversation.kind != ConversationKind::Group {
            return Err(ChatError::NotAGroup);
        }
        let added: Vec<String> = wanted.into_iter().filter(|id| conversation.member(id).is_none()).collect();
        if added.is_empty() {
            return Ok(conversation);
        }
        if conversation.members.len() + added.len() > max {
            return Err(ChatError::GroupFull { max });
        }
        self.require_contacts(me, &added).await?;
        if let Some(left) = departed_among(&mut transaction, conversation_id, &added).await?.into_iter().next() {
            return Err(ChatError::LeftConversation(left));
        }
        for user_id in &added {
            insert_member(&mut transaction, conversation_id, user_id, "member", now, conversation.last_seq).await?;
        }
        let mut member_ids = conversation.member_ids();
        member_ids.extend(added.iter().cloned());
        let body = json!({"event": "members_added", "actor_id": me.id, "user_ids": added});
        let (_, mut appended) = self
            .insert_message(&mut transaction, conversation_id, &me.id, None, MessageKind::System, &body, &member_ids)
            .await?;
        let updated =
            load_conversation(&mut transaction, conversation_id).await?.ok_or(ChatError::ConversationNotFound)?;
        appended.merge(self.announce_conversation(&mut transaction, &updated, &[]).await?);
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok(updated)
    }

    /// Removes `user_id` from a group: anyone may leave; only the owner removes others.
    /// When the owner leaves, the longest-standing member becomes the owner.
    pub async fn remove_member(&self, me: &User, conversation_id: &str, user_id: &str) -> Result<(), ChatError> {
        let mut transaction = self.inner.store.begin().await?;
        let conversation = self.member_view(&mut transaction, me, conversation_id).await?;
        if conversation.kind != ConversationKind::Group {
            return Err(ChatError::NotAGroup);
        }
        let target = conversation.member(user_id).ok_or_else(|| ChatError::NotAMember(user_id.to_string()))?;
        let leaving = user_id == me.id;
        if !leaving && conversation.owner_id.as_deref() != Some(me.id.as_str()) {
            return Err(ChatError::NotOwner);
        }
        sqlx::query("DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2")
            .bind(conversation_id)
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
        if leaving {
            // Remembered so that nobody else can put them back.
            sqlx::query(
                "INSERT INTO conversation_departures (conversation_id, user_id, left_at) VALUES ($1, $2, $3)
                 ON CONFLICT (conversation_id, user_id) DO UPDATE SET left_at = excluded.left_at",
            )
            .bind(conversation_id)
            .bind(user_id)
            .bind(Timestamp::now().unix_millis())
            .execute(&mut *transaction)
            .await?;
        }
        let remaining: Vec<&Member> = conversation.members.iter().filter(|member| member.user_id != user_id).collect();
        if target.role == "owner" {
            let successor = remaining.iter().min_by_key(|member| (member.joined_at, member.user_id.clone()));
            if let Some(successor) = successor {
                sqlx::query(
                    "UPDATE conversation_members SET role = 'owner' WHERE conversation_id = $1 AND user_id = $2",
                )
                .bind(conversation_id)
                .bind(&successor.user_id)
                .execute(&mut *transaction)
                .await?;
            }
            sqlx::query("UPDATE conversations SET owner_id = $1 WHERE id = $2")
                .bind(successor.map(|member| member.user_id.clone()))
                .bind(conversation_id)
                .execute(&mut *transaction)
                .await?;
        }
        let remaining_ids: Vec<String> = remaining.iter().map(|member| member.user_id.clone()).collect();
        let event = if leaving { "member_left" } else { "member_removed" };
        let body = json!({"event": event, "actor_id": me.id, "user_ids": [user_id]});
        let (_, mut appended) = self
            .insert_message(&mut transaction, conversation_id, &me.id, None, MessageKind::System, &body, &remaining_ids)
            .await?;
        let updated =
            load_conversation(&mut transaction, conversation_id).await?.ok_or(ChatError::ConversationNotFound)?;
        appended.merge(self.announce_conversation(&mut transaction, &updated, &[user_id.to_string()]).await?);
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok(())
    }

    /// Sends a message as a client. The same `client_id` from the same sender in the same
    /// conversation returns the first message (`false` in the second place) and stores
    /// nothing new.
    pub async fn send_message(
        &self,
        me: &User,
        conversation_id: &str,
        client_id: &str,
        kind: &str,
        body: &Value,
    ) -> Result<(Message, bool), ChatError> {
        self.queue_message(me, conversation_id, client_id, kind, body).await?.outcome().await
    }

    /// Checks a client send and queues it for storing, returning once it is in line. Sends
    /// queued one after another by one caller are stored in that order, so a socket can
    /// keep many sends in flight and still have them numbered in the order they came.
    pub async fn queue_message(
        &self,
        me: &User,
        conversation_id: &str,
        client_id: &str,
        kind: &str,
        body: &Value,
    ) -> Result<QueuedSend, ChatError> {
        let kind = MessageKind::parse(kind)
            .ok_or_else(|| invalid("kind", format!("unknown message kind {kind:?}; use text, image or card")))?;
        let client_id = ClientId::parse(client_id).map_err(|reason| invalid("client_id", reason))?;
        let mut body = MessageBody::parse(kind, body).map_err(|(field, reason)| invalid(field, reason))?;
        if kind == MessageKind::Card {
            body = self.render_card(me, &body).await?;
        }
        if let Some(media_id) = body.media_id() {
            // Only your own uploads can be sent; anyone else's id is as good as unknown.
            let foreign = || invalid("body.media_id", format!("no media {media_id:?} of yours"));
            match self.inner.media.item(media_id).await {
                // Sent in a chat, the upload is referenced: it is no longer cleaned up.
                Ok(item) if item.owner_id == me.id => self.inner.media.keep(&item).await?,
                Ok(_) | Err(MediaError::NotFound) => return Err(foreign()),
                Err(error) => return Err(error.into()),
            }
        }
        let job = SendJob {
            sender_id: me.id.clone(),
            conversation_id: conversation_id.to_string(),
            client_id: client_id.as_str().to_string(),
            kind,
            body: body.value().clone(),
        };
        Ok(QueuedSend(self.sends().enqueue(job).await?))
    }

    /// Stores one send in its own transaction.
    pub(crate) async fn send_one(&self, job: &SendJob) -> SendOutcome {
        // A concurrent duplicate send loses the race on the unique (sender, client_id) key
        // and then finds the winner's message.
        for _attempt in 0..3 {
            match self.try_send(job).await {
                Err(ChatError::Database(error)) if is_unique_violation(&error) => continue,
                outcome => return outcome,
            }
        }
        self.try_send(job).await
    }

    async fn try_send(&self, job: &SendJob) -> SendOutcome {
        let SendJob { sender_id, conversation_id, client_id, kind, body } = job;
        let (conversation_id, kind) = (conversation_id.as_str(), *kind);
        let mut transaction = self.inner.store.begin().await?;
        // Members and an earlier send with this client_id, in one round trip.
        let rows = sqlx::query(
            "SELECT m.user_id,
                    (SELECT e.id FROM messages e
                     WHERE e.conversation_id = $1 AND e.sender_id = $2 AND e.client_id = $3) AS existing_id
             FROM conversation_members m WHERE m.conversation_id = $1",
        )
        .bind(conversation_id)
        .bind(sender_id)
        .bind(client_id.as_str())
        .fetch_all(&mut *transaction)
        .await?;
        let member_ids = rows.iter().map(|row| row.try_get::<String, _>("user_id")).collect::<Result<Vec<_>, _>>()?;
        if !member_ids.contains(sender_id) {
            return Err(ChatError::ConversationNotFound);
        }
        let existing_id = match rows.first() {
            Some(row) => row.try_get::<Option<String>, _>("existing_id")?,
            None => None,
        };
        if let Some(existing_id) = existing_id {
            let row = sqlx::query(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"))
                .bind(&existing_id)
                .fetch_one(&mut *transaction)
                .await?;
            return Ok((message_from_row(&row)?, false));
        }
        if let Some(media_id) = body.get("media_id").and_then(Value::as_str).filter(|_| kind == MessageKind::Image) {
            sqlx::query(
                "INSERT INTO conversation_media (media_id, conversation_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(media_id)
            .bind(conversation_id)
            .execute(&mut *transaction)
            .await?;
        }
        let (message, appended) = self
            .insert_message(
                &mut transaction,
                conversation_id,
                sender_id,
                Some(client_id.as_str()),
                kind,
                body,
                &member_ids,
            )
            .await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok((message, true))
    }

    /// Numbers, stores and announces one message inside `transaction`. The sender's read
    /// mark moves to it: your own messages are never unread.
    #[allow(clippy::too_many_arguments)]
    async fn insert_message(
        &self,
        transaction: &mut Transaction<'static, Any>,
        conversation_id: &str,
        sender_id: &str,
        client_id: Option<&str>,
        kind: MessageKind,
        body: &Value,
        recipients: &[String],
    ) -> Result<(Message, Appended), ChatError> {
        let now = Timestamp::now();
        let seq: i64 = sqlx::query_scalar(
            "UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = $2 WHERE id = $1 RETURNING last_seq",
        )
        .bind(conversation_id)
        .bind(now.unix_millis())
        .fetch_optional(&mut **transaction)
        .await?
        .ok_or(ChatError::ConversationNotFound)?;
        let id = plaza_kernel::new_id();
        let client_id = client_id.map(str::to_string).unwrap_or_else(|| format!("server:{id}"));
        sqlx::query(&format!("INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
            .bind(&id)
            .bind(conversation_id)
            .bind(seq)
            .bind(sender_id)
            .bind(&client_id)
            .bind(kind.as_str())
            .bind(body.to_string())
            .bind(now.unix_millis())
            .execute(&mut **transaction)
            .await?;
        sqlx::query(
            "UPDATE conversation_members SET read_seq = $3 WHERE conversation_id = $1 AND user_id = $2 AND read_seq < $3",
        )
        .bind(conversation_id)
        .bind(sender_id)
        .bind(seq)
        .execute(&mut **transaction)
        .await?;
        let message = Message {
            id,
            conversation_id: conversation_id.to_string(),
            seq,
            sender_id: sender_id.to_string(),
            client_id,
            kind,
            body: body.clone(),
            created_at: now,
        };
        let data = serde_json::to_value(MessageView::from(&message)).unwrap_or(Value::Null);
        let appended = self.inner.events.append(transaction, recipients, "message.new", &data).await?;
        Ok((message, appended))
    }

    /// Posts a message on behalf of a service (a transfer, a red packet, a card) inside
    /// the caller's transaction, so that the message exists exactly when the service's
    /// own change does. Publish the returned events after commit.
    pub async fn post_in_transaction(
        &self,
        transaction: &mut Transaction<'static, Any>,
        conversation_id: &str,
        sender_id: &str,
        client_id: &str,
        kind: MessageKind,
        body: &Value,
    ) -> Result<(Message, Appended), ChatError> {
        let member_ids = member_ids(transaction, conversation_id).await?;
        if !member_ids.iter().any(|id| id == sender_id) {
            return Err(ChatError::ConversationNotFound);
        }
        self.insert_message(transaction, conversation_id, sender_id, Some(client_id), kind, body, &member_ids).await
    }

    /// The caller's conversations, newest activity first.
    pub async fn conversations(
        &self,
        me: &User,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<(Vec<ConversationSummary>, Option<String>), ChatError> {
        let (before_activity, before_id) = match cursor {
            None | Some("") => (i64::MAX, String::new()),
            Some(opaque) => plaza_kernel::Cursor::parse_position(opaque)
                .and_then(|position| {
                    let (activity, id) = position.split_once(':')?;
                    Some((activity.parse::<i64>().ok()?, id.to_string()))
                })
                .ok_or_else(|| invalid("cursor", "not a cursor this server issued"))?,
        };
        let rows = sqlx::query(
            "SELECT c.id, c.kind, c.title, c.owner_id, c.last_seq, c.last_activity_at, c.created_at, m.read_seq,
                    lm.id AS m_id, lm.seq AS m_seq, lm.sender_id AS m_sender_id, lm.client_id AS m_client_id,
                    lm.kind AS m_kind, lm.body AS m_body, lm.created_at AS m_created_at
             FROM conversation_members m
             JOIN conversations c ON c.id = m.conversation_id
             LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = c.last_seq
             WHERE m.user_id = $1
               AND (c.last_activity_at < $2 OR (c.last_activity_at = $2 AND c.id > $3))
             ORDER BY c.last_activity_at DESC, c.id ASC
             LIMIT $4",
        )
        .bind(&me.id)
        .bind(before_activity)
        .bind(&before_id)
        .bind(limit.probe())
        .fetch_all(self.inner.store.read())
        .await?;
        let mut summaries = Vec::with_capacity(rows.len());
        for row in rows.iter().take(limit.get() as usize) {
            let id: String = row.try_get("id")?;
            let last_seq: i64 = row.try_get("last_seq")?;
            let read_seq: i64 = row.try_get("read_seq")?;
            let last_message = match row.try_get::<Option<String>, _>("m_id")? {
                Some(message_id) => Some(Message {
                    id: message_id,
                    conversation_id: id.clone(),
                    seq: row.try_get("m_seq")?,
                    sender_id: row.try_get("m_sender_id")?,
                    client_id: row.try_get("m_client_id")?,
                    kind: parse_kind(&row.try_get::<String, _>("m_kind")?)?,
                    body: parse_body(&row.try_get::<String, _>("m_body")?)?,
                    created_at: Timestamp::from_unix_millis(row.try_get("m_created_at")?),
                }),
                None => None,
            };
            summaries.push(ConversationSummary {
                conversation: Conversation {
                    id,
                    kind: ConversationKind::parse(&row.try_get::<String, _>("kind")?)
                        .ok_or_else(|| decode_error("conversation kind"))?,
                    title: row.try_get("title")?,
                    owner_id: row.try_get("owner_id")?,
                    last_seq,
                    last_activity_at: Timestamp::from_unix_millis(row.try_get("last_activity_at")?),
                    created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
                    members: Vec::new(),
                },
                last_message,
                unread_count: (last_seq - read_seq).max(0),
            });
        }
        let ids: Vec<String> = summaries.iter().map(|summary| summary.conversation.id.clone()).collect();
        let mut members = members_of(self.inner.store.read(), &ids).await?;
        for summary in &mut summaries {
            summary.conversation.members = members.remove(&summary.conversation.id).unwrap_or_default();
        }
        let next = (rows.len() > limit.get() as usize).then(|| summaries.last()).flatten().map(|last| {
            let position = format!("{}:{}", last.conversation.last_activity_at.unix_millis(), last.conversation.id);
            plaza_kernel::Cursor::from_position(&position).into_string()
        });
        Ok((summaries, next))
    }

    /// One conversation with its members; only members see it.
    pub async fn conversation(&self, me: &User, conversation_id: &str) -> Result<Conversation, ChatError> {
        let conversation = self.load(conversation_id).await?.ok_or(ChatError::ConversationNotFound)?;
        if conversation.member(&me.id).is_none() {
            return Err(ChatError::ConversationNotFound);
        }
        Ok(conversation)
    }

    /// Profiles for the members of a conversation.
    pub async fn member_profiles(&self, conversation: &Conversation) -> Result<Vec<User>, ChatError> {
        Ok(self.inner.accounts.users(&conversation.member_ids()).await?)
    }

    /// A page of history, oldest first.
    pub async fn history(
        &self,
        me: &User,
        conversation_id: &str,
        window: HistoryWindow,
        limit: PageLimit,
    ) -> Result<HistoryPage, ChatError> {
        // A member sees the messages after the one that was last when they joined.
        let joined_seq: Option<i64> = sqlx::query_scalar(
            "SELECT joined_seq FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation_id)
        .bind(&me.id)
        .fetch_optional(self.inner.store.read())
        .await?;
        let joined_seq = joined_seq.ok_or(ChatError::ConversationNotFound)?;
        // Each window binds only the bounds it uses: $1 conversation, $2 limit, $3 joined,
        // then bounds.
        let (condition, ascending, bounds) = match window {
            HistoryWindow::Latest => ("", false, vec![]),
            HistoryWindow::After(after, None) => ("AND seq > $4", true, vec![after]),
            HistoryWindow::After(after, Some(before)) => ("AND seq > $4 AND seq < $5", true, vec![after, before]),
            HistoryWindow::Before(before) => ("AND seq < $4", false, vec![before]),
        };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND seq > $3 {condition}
             ORDER BY seq {} LIMIT $2",
            if ascending { "ASC" } else { "DESC" }
        );
        let mut query = sqlx::query(&sql).bind(conversation_id).bind(limit.probe()).bind(joined_seq);
        for bound in bounds {
            query = query.bind(bound);
        }
        let rows = query.fetch_all(self.inner.store.read()).await?;
        let more = rows.len() > limit.get() as usize;
        let mut messages =
            rows.iter().take(limit.get() as usize).map(message_from_row).collect::<Result<Vec<_>, _>>()?;
        if !ascending {
            messages.reverse();
        }
        let next = match (more, window) {
            (false, _) => None,
            (true, HistoryWindow::After(_, upper)) => messages.last().map(|last| HistoryWindow::After(last.seq, upper)),
            (true, _) => messages.first().map(|first| HistoryWindow::Before(first.seq)),
        };
        Ok(HistoryPage { messages, next })
    }

    /// Moves the caller's read mark up to `seq` (never down; never past the last message)
    /// and tells the members (and the caller's other devices) with `message.read`.
    pub async fn mark_read(&self, me: &User, conversation_id: &str, seq: i64) -> Result<(), ChatError> {
        if seq < 0 {
            return Err(invalid("seq", "seq cannot be negative"));
        }
        let mut transaction = self.inner.store.begin().await?;
        let member_ids = member_ids(&mut transaction, conversation_id).await?;
        if !member_ids.contains(&me.id) {
            return Err(ChatError::ConversationNotFound);
        }
        let last_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = $1")
            .bind(conversation_id)
            .fetch_one(&mut *transaction)
            .await?;
        let seq = seq.min(last_seq);
        let moved = sqlx::query(
            "UPDATE conversation_members SET read_seq = $3 WHERE conversation_id = $1 AND user_id = $2 AND read_seq < $3",
        )
        .bind(conversation_id)
        .bind(&me.id)
        .bind(seq)
        .execute(&mut *transaction)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(());
        }
        let receipt = ReadReceipt { conversation_id: conversation_id.to_string(), user_id: me.id.clone(), seq };
        let data = serde_json::to_value(receipt).unwrap_or(Value::Null);
        let appended = self.inner.events.append(&mut transaction, &member_ids, "message.read", &data).await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok(())
    }

    /// Whether the user belongs to the conversation (for typing indicators and media).
    pub async fn is_member(&self, me: &User, conversation_id: &str) -> Result<bool, ChatError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM conversation_members WHERE conversation_id = $1 AND user_id = $2")
                .bind(conversation_id)
                .bind(&me.id)
                .fetch_optional(self.inner.store.read())
                .await?;
        Ok(found.is_some())
    }

    /// The other members of a conversation the caller belongs to.
    pub async fn other_members(&self, me: &User, conversation_id: &str) -> Result<Vec<String>, ChatError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM conversation_members WHERE conversation_id = $1")
                .bind(conversation_id)
                .fetch_all(self.inner.store.read())
                .await?;
        if !ids.contains(&me.id) {
            return Err(ChatError::ConversationNotFound);
        }
        Ok(ids.into_iter().filter(|id| *id != me.id).collect())
    }

    /// Stores an uploaded image of `me`.
    pub async fn upload_media(&self, me: &User, bytes: bytes::Bytes) -> Result<MediaItem, ChatError> {
        Ok(self.inner.media.upload(&me.id, bytes).await?)
    }

    /// A media item and its bytes, for its uploader, for members of a conversation it was
    /// sent in, and for everyone when it is a published product photo; to anyone else it
    /// does not exist.
    pub async fn media_for(&self, me: &User, media_id: &str) -> Result<(MediaItem, bytes::Bytes), ChatError> {
        let item = self.inner.media.item(media_id).await?;
        if item.owner_id != me.id && !item.is_public() {
            let shared: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM conversation_media cm
                 JOIN conversation_members m ON m.conversation_id = cm.conversation_id
                 WHERE cm.media_id = $1 AND m.user_id = $2 LIMIT 1",
            )
            .bind(media_id)
            .bind(&me.id)
            .fetch_optional(self.inner.store.read())
            .await?;
            if shared.is_none() {
                return Err(MediaError::NotFound.into());
            }
        }
        let bytes = self.inner.media.bytes(&item).await?;
        Ok((item, bytes))
    }

    async fn load(&self, conversation_id: &str) -> Result<Option<Conversation>, ChatError> {
        let mut connection = self.inner.store.read().acquire().await?;
        load_conversation(&mut connection, conversation_id).await
    }

    /// The conversation as seen inside a transaction, if `me` is a member.
    async fn member_view(
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

    /// Only a person's contacts may put them into a group.
    async fn require_contacts(&self, me: &User, ids: &[String]) -> Result<(), ChatError> {
        let contacts = self.inner.accounts.contacts_among(me, ids).await?;
        match ids.iter().find(|id| !contacts.contains(*id)) {
            Some(stranger) => Err(ChatError::NotAContact(stranger.clone())),
            None => Ok(()),
        }
    }

    /// At most `group_creations_per_hour` groups per creator in any hour, counted in the
    /// database so that every node and a restart agree.
    async fn check_group_creations(&self, me: &User) -> Result<(), ChatError> {
        let hour_ms = 3_600_000;
        let since = Timestamp::now().unix_millis() - hour_ms;
        let created: Vec<i64> = sqlx::query_scalar(
            "SELECT created_at FROM conversations WHERE created_by = $1 AND created_at > $2 ORDER BY created_at LIMIT $3",
        )
        .bind(&me.id)
        .bind(since)
        .bind(i64::from(self.inner.config.group_creations_per_hour))
        .fetch_all(self.inner.store.read())
        .await?;
        if created.len() as u64 >= u64::from(self.inner.config.group_creations_per_hour) {
            // Room again once the oldest of them is an hour old.
            let oldest = created.first().copied().unwrap_or(since);
            let wait_ms = (oldest - since).max(1_000) as u64;
            return Err(ChatError::TooManyGroups { retry_after: std::time::Duration::from_millis(wait_ms) });
        }
        Ok(())
    }

    /// The server's card for the object a client's card names, from the service that owns
    /// its type; what the client wrote besides `type` and `id` is dropped.
    async fn render_card(&self, me: &User, body: &MessageBody) -> Result<MessageBody, ChatError> {
        let value = body.value();
        let card_type = value.get("type").and_then(Value::as_str).unwrap_or_default();
        let object_id = value.get("id").and_then(Value::as_str).unwrap_or_default();
        let source = self.inner.cards.get(card_type).ok_or_else(|| {
            ChatError::CardNotAllowed(format!("{card_type:?} cards are posted by their own service, not by clients"))
        })?;
        match source.render(me, object_id).await {
            Ok(Some(card)) => Ok(MessageBody::trusted(card)),
            Ok(None) => Err(ChatError::CardNotAllowed(format!("no {card_type} {object_id:?} that you can see"))),
            Err(error) => Err(ChatError::CardNotAllowed(format!("the {card_type} card could not be made: {error}"))),
        }
    }

    async fn require_users(&self, ids: &[String]) -> Result<(), ChatError> {
        let found: HashSet<String> = self.inner.accounts.users(ids).await?.into_iter().map(|user| user.id).collect();
        match ids.iter().find(|id| !found.contains(*id)) {
            Some(missing) => Err(ChatError::UserNotFound(missing.clone())),
            None => Ok(()),
        }
    }

    /// Appends `conversation.updated` for every member and for `also` (people who just
    /// left, so their clients drop it).
    async fn announce_conversation(
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

/// Adds a member who sees the history after `joined_seq` (and has read up to it).
async fn insert_member(
    transaction: &mut Transaction<'static, Any>,
    conversation_id: &str,
    user_id: &str,
    role: &str,
    now: Timestamp,
    joined_seq: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id, role, read_seq, joined_at, joined_seq)
         VALUES ($1, $2, $3, $5, $4, $5)",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(role)
    .bind(now.unix_millis())
    .bind(joined_seq)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// Which of `user_ids` left this conversation themselves.
async fn departed_among(
    transaction: &mut Transaction<'static, Any>,
    conversation_id: &str,
    user_ids: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    let mut departed = Vec::new();
    for user_id in user_ids {
        let left: Option<i64> = sqlx::query_scalar(
            "SELECT left_at FROM conversation_departures WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation_id)
        .bind(user_id)
        .fetch_optional(&mut **transaction)
        .await?;
        if left.is_some() {
            departed.push(user_id.clone());
        }
    }
    Ok(departed)
}

async fn member_ids(
    transaction: &mut Transaction<'static, Any>,
    conversation_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM conversation_members WHERE conversation_id = $1")
        .bind(conversation_id)
        .fetch_all(&mut **transaction)
        .await
}

async fn load_conversation(
    connection: &mut sqlx::AnyConnection,
    conversation_id: &str,
) -> Result<Option<Conversation>, ChatError> {
    let Some(row) = sqlx::query(
        "SELECT id, kind, title, owner_id, last_seq, last_activity_at, created_at FROM conversations WHERE id = $1",
    )
    .bind(conversation_id)
    .fetch_optional(&mut *connection)
    .await?
    else {
        return Ok(None);
    };
    let member_rows = sqlx::query(
        "SELECT user_id, role, read_seq, joined_at FROM conversation_members WHERE conversation_id = $1
         ORDER BY joined_at, user_id",
    )
    .bind(conversation_id)
    .fetch_all(&mut *connection)
    .await?;
    let members = member_rows.iter().map(member_from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Conversation {
        id: row.try_get("id")?,
        kind: ConversationKind::parse(&row.try_get::<String, _>("kind")?)
            .ok_or_else(|| decode_error("conversation kind"))?,
        title: row.try_get("title")?,
        owner_id: row.try_get("owner_id")?,
        last_seq: row.try_get("last_seq")?,
        last_activity_at: Timestamp::from_unix_millis(row.try_get("last_activity_at")?),
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        members,
    }))
}

async fn members_of(
    pool: &plaza_store::AnyPool,
    conversation_ids: &[String],
) -> Result<std::collections::HashMap<String, Vec<Member>>, sqlx::Error> {
    let mut by_conversation: std::collections::HashMap<String, Vec<Member>> = std::collections::HashMap::new();
    for chunk in conversation_ids.chunks(200) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT conversation_id, user_id, role, read_seq, joined_at FROM conversation_members
             WHERE conversation_id IN ({}) ORDER BY joined_at, user_id",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(pool).await? {
            let conversation_id: String = row.try_get("conversation_id")?;
            by_conversation.entry(conversation_id).or_default().push(member_from_row(&row)?);
        }
    }
    Ok(by_conversation)
}

fn member_from_row(row: &AnyRow) -> Result<Member, sqlx::Error> {
    Ok(Member {
        user_id: row.try_get("user_id")?,
        role: row.try_get("role")?,
        read_seq: row.try_get("read_seq")?,
        joined_at: Timestamp::from_unix_millis(row.try_get("joined_at")?),
    })
}

pub(crate) fn message_from_row(row: &AnyRow) -> Result<Message, sqlx::Error> {
    Ok(Message {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        seq: row.try_get("seq")?,
        sender_id: row.try_get("sender_id")?,
        client_id: row.try_get("client_id")?,
        kind: parse_kind(&row.try_get::<String, _>("kind")?)?,
        body: parse_body(&row.try_get::<String, _>("body")?)?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
    })
}

fn parse_kind(text: &str) -> Result<MessageKind, sqlx::Error> {
    MessageKind::parse(text).ok_or_else(|| decode_error("message kind"))
}

fn parse_body(text: &str) -> Result<Value, sqlx::Error> {
    serde_json::from_str(text).map_err(|error| sqlx::Error::Decode(Box::new(error)))
}

fn decode_error(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected {what} in the database").into())
}
