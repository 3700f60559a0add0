//! Creating conversations and changing who is in a group: direct chats (one per pair),
//! groups (contacts only, creations capped per hour), adding (never someone who left) and
//! leaving or removing.

use super::*;

impl Chat {
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

    pub(crate) async fn create_direct(&self, me: &User, other_id: &str) -> Result<(Conversation, bool), ChatError> {
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

    pub(crate) async fn direct_conversation(&self, direct_key: &str) -> Result<Option<Conversation>, ChatError> {
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM conversations WHERE direct_key = $1")
            .bind(direct_key)
            .fetch_optional(self.inner.store.read())
            .await?;
        match id {
            Some(id) => Ok(self.load(&id).await?),
            None => Ok(None),
        }
    }

    pub(crate) async fn create_group(
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

    /// Only a person's contacts may put them into a group.
    pub(crate) async fn require_contacts(&self, me: &User, ids: &[String]) -> Result<(), ChatError> {
        let contacts = self.inner.accounts.contacts_among(me, ids).await?;
        match ids.iter().find(|id| !contacts.contains(*id)) {
            Some(stranger) => Err(ChatError::NotAContact(stranger.clone())),
            None => Ok(()),
        }
    }

    /// At most `group_creations_per_hour` groups per creator in any hour, counted in the
    /// database so that every node and a restart agree.
    pub(crate) async fn check_group_creations(&self, me: &User) -> Result<(), ChatError> {
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
}
