//! Sending and reading messages: client sends queued for group commit, one send in its
//! own transaction, numbering and storing a message, services' posts, cards rendered by
//! their service, history (from the reader's joining on) and read receipts.

use super::*;

impl Chat {
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

    pub(crate) async fn try_send(&self, job: &SendJob) -> SendOutcome {
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
    pub(crate) async fn insert_message(
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

    /// Posts a service's `card` message in a transaction of its own, then publishes it:
    /// for a share, which changes nothing else of the service's.
    pub async fn post_card(
        &self,
        conversation_id: &str,
        sender_id: &str,
        client_id: &str,
        body: &Value,
    ) -> Result<Message, ChatError> {
        let mut transaction = self.inner.store.begin().await?;
        let (message, appended) = self
            .post_in_transaction(&mut transaction, conversation_id, sender_id, client_id, MessageKind::Card, body)
            .await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok(message)
    }

    /// The server's card for the object a client's card names, from the service that owns
    /// its type; what the client wrote besides `type` and `id` is dropped.
    pub(crate) async fn render_card(&self, me: &User, body: &MessageBody) -> Result<MessageBody, ChatError> {
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
}
