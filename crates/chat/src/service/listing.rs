//! What a member sees of their conversations: the list, one conversation, its members.

use super::*;

impl Chat {
    /// The caller's conversations, newest activity first.
    pub async fn conversations(
        &self,
        me: &User,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<plaza_kernel::Page<ConversationSummary>, ChatError> {
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
        // The probe row too: `Page::from_probe` tells from it whether another page exists.
        let mut summaries = Vec::with_capacity(rows.len());
        for row in &rows {
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
        Ok(plaza_kernel::Page::from_probe(summaries, limit, |last| {
            format!("{}:{}", last.conversation.last_activity_at.unix_millis(), last.conversation.id)
        }))
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
}
