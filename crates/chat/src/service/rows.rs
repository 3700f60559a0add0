//! Row mapping and the statements several rooms share.

use super::*;

/// Adds a member who sees the history after `joined_seq` (and has read up to it).
pub(super) async fn insert_member(
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
pub(super) async fn departed_among(
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

pub(super) async fn member_ids(
    transaction: &mut Transaction<'static, Any>,
    conversation_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM conversation_members WHERE conversation_id = $1")
        .bind(conversation_id)
        .fetch_all(&mut **transaction)
        .await
}

pub(super) async fn load_conversation(
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

pub(super) async fn members_of(
    pool: &plaza_store::AnyPool,
    conversation_ids: &[String],
) -> Result<std::collections::HashMap<String, Vec<Member>>, sqlx::Error> {
    let mut by_conversation: std::collections::HashMap<String, Vec<Member>> = std::collections::HashMap::new();
    for chunk in conversation_ids.chunks(200) {
        let placeholders = plaza_store::numbered_parameters(1, chunk.len());
        let sql = format!(
            "SELECT conversation_id, user_id, role, read_seq, joined_at FROM conversation_members
             WHERE conversation_id IN ({}) ORDER BY joined_at, user_id",
            placeholders
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

pub(super) fn member_from_row(row: &AnyRow) -> Result<Member, sqlx::Error> {
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

pub(super) fn parse_kind(text: &str) -> Result<MessageKind, sqlx::Error> {
    MessageKind::parse(text).ok_or_else(|| decode_error("message kind"))
}

pub(super) fn parse_body(text: &str) -> Result<Value, sqlx::Error> {
    serde_json::from_str(text).map_err(|error| sqlx::Error::Decode(Box::new(error)))
}

pub(super) fn decode_error(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected {what} in the database").into())
}
