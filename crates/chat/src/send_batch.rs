//! Group-committed sends: client sends that arrive together are stored together, in one
//! transaction with a fixed number of multi-row statements, instead of one transaction of
//! eight statements each. On SQLite every send queues for the one writer connection and a
//! statement is a round trip to its worker thread, so statements per send, not work, set
//! the ceiling; a batch pays them once for all its sends.
//!
//! The outcome per send is exactly what [`Chat::send_message`] promises one at a time:
//! seqs stay gap-free (each conversation's counter moves once by the number of its new
//! messages, under the same row lock / single writer), a repeated `client_id` returns the
//! first message whether the first is in the database or earlier in the same batch, and a
//! non-member is refused without affecting the others. Should the batch as a whole fail
//! (a concurrent duplicate from another node, a deadlock, a lost connection), its sends
//! are retried one by one on the single-send path, which has its own retry for duplicates.

use crate::model::MessageKind;
use crate::service::{message_from_row, Chat, ChatError, Message, MESSAGE_COLUMNS};
use crate::wire::MessageView;
use plaza_events::ToAppend;
use plaza_kernel::Timestamp;
use plaza_store::Row;
use serde_json::Value;
use sqlx::AnyConnection;
use std::collections::{BTreeMap, HashMap};

/// Sends stored in one transaction at most, by default.
pub(crate) const SEND_BATCH_MAX: usize = 64;

/// The largest batch the setting allows; bounds statement sizes (8 parameters per
/// message row) well under both engines' limits.
pub(crate) const SEND_BATCH_MAX_LIMIT: usize = 256;

/// Sends waiting for the batcher at most, before senders wait for room.
pub(crate) const SEND_QUEUE_MAX: usize = 4096;

/// One validated client send waiting for its batch.
#[derive(Debug)]
pub(crate) struct SendJob {
    pub sender_id: String,
    pub conversation_id: String,
    pub client_id: String,
    pub kind: MessageKind,
    pub body: Value,
}

pub(crate) type SendOutcome = Result<(Message, bool), ChatError>;

/// What one send of a batch turns into before anything is written.
enum Plan {
    Settled(SendOutcome),
    /// The same client send as an earlier new one in this batch.
    SameAs(usize),
    New,
}

impl Chat {
    /// Stores a batch of sends and answers each, in order.
    pub(crate) async fn send_batch(&self, jobs: Vec<SendJob>) -> Vec<SendOutcome> {
        metrics::counter!("plaza_chat_send_batches_total").increment(1);
        if jobs.len() > 1 {
            metrics::counter!("plaza_chat_batched_sends_total").increment(jobs.len() as u64);
            match self.try_send_batch(&jobs).await {
                Ok(outcomes) => return outcomes,
                Err(error) => {
                    tracing::debug!("a batch of {} sends failed as a whole ({error}); sending one by one", jobs.len())
                }
            }
        }
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in &jobs {
            outcomes.push(self.send_one(job).await);
        }
        outcomes
    }

    /// One transaction for the whole batch: who may send, which sends are retries, the
    /// counters, the messages, the senders' read marks, the shared images and the events.
    async fn try_send_batch(&self, jobs: &[SendJob]) -> Result<Vec<SendOutcome>, ChatError> {
        let mut transaction = self.store().begin().await?;
        let members = self.members_of(&mut transaction, jobs).await?;
        let earlier = self.earlier_sends(&mut transaction, jobs).await?;
        let (plans, new_per_conversation) = plan_batch(jobs, &members, &earlier);
        if new_per_conversation.is_empty() {
            transaction.commit().await?;
            return Ok(plans.into_iter().enumerate().map(|(index, plan)| settle(index, plan, &[])).collect());
        }
        let now = Timestamp::now();
        let first_seqs = self.advance_counters(&mut transaction, &new_per_conversation, now).await?;
        let messages = number_messages(jobs, &plans, first_seqs, now)?;
        let new: Vec<&Message> = messages.iter().flatten().collect();
        self.insert_messages(&mut transaction, &new).await?;
        self.advance_read_marks(&mut transaction, &new).await?;
        self.record_shared_images(&mut transaction, &new).await?;

        let data: Vec<Box<serde_json::value::RawValue>> =
            new.iter().map(|message| plaza_events::to_data(&MessageView::from(*message))).collect();
        let no_members = Vec::new();
        let to_append: Vec<ToAppend<'_>> = new
            .iter()
            .zip(&data)
            .map(|(message, data)| ToAppend {
                user_ids: members.get(&message.conversation_id).unwrap_or(&no_members),
                event_type: "message.new",
                data,
            })
            .collect();
        let appended = self.events().append_many(&mut transaction, &to_append).await?;
        transaction.commit().await?;
        self.events().publish(appended);

        Ok(plans.into_iter().enumerate().map(|(index, plan)| settle(index, plan, &messages)).collect())
    }

    /// The members of every conversation the batch sends to.
    async fn members_of(&self, connection: &mut AnyConnection, jobs: &[SendJob]) -> Result<Members, ChatError> {
        let mut conversation_ids: Vec<&str> = jobs.iter().map(|job| job.conversation_id.as_str()).collect();
        conversation_ids.sort_unstable();
        conversation_ids.dedup();
        let sql = format!(
            "SELECT conversation_id, user_id FROM conversation_members WHERE conversation_id IN ({})",
            plaza_store::numbered_parameters(1, conversation_ids.len())
        );
        let sql = self.store().backend().bulk_sql(&sql);
        let mut query = sqlx::query(&sql);
        for id in &conversation_ids {
            query = query.bind(*id);
        }
        let mut members: Members = HashMap::new();
        for row in query.fetch_all(&mut *connection).await? {
            members.entry(row.try_get("conversation_id")?).or_default().push(row.try_get("user_id")?);
        }
        Ok(members)
    }

    /// Messages already stored for any of the batch's client sends (retries).
    async fn earlier_sends(&self, connection: &mut AnyConnection, jobs: &[SendJob]) -> Result<Earlier, ChatError> {
        let conditions: Vec<String> = (0..jobs.len())
            .map(|n| {
                format!(
                    "(conversation_id = ${} AND sender_id = ${} AND client_id = ${})",
                    3 * n + 1,
                    3 * n + 2,
                    3 * n + 3
                )
            })
            .collect();
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE {}", conditions.join(" OR "));
        let sql = self.store().backend().bulk_sql(&sql);
        let mut query = sqlx::query(&sql);
        for job in jobs {
            query = query.bind(&job.conversation_id).bind(&job.sender_id).bind(&job.client_id);
        }
        let mut earlier: Earlier = HashMap::new();
        for row in query.fetch_all(&mut *connection).await? {
            let message = message_from_row(&row)?;
            earlier.insert(
                (message.conversation_id.clone(), message.sender_id.clone(), message.client_id.clone()),
                message,
            );
        }
        Ok(earlier)
    }

    /// Each conversation's counter moves once, by its number of new messages; answers
    /// the first seq of each conversation's new messages.
    async fn advance_counters(
        &self,
        connection: &mut AnyConnection,
        new_per_conversation: &BTreeMap<&str, i64>,
        now: Timestamp,
    ) -> Result<HashMap<String, i64>, ChatError> {
        let cases: Vec<String> =
            (0..new_per_conversation.len()).map(|n| format!("WHEN ${} THEN ${}", 2 * n + 2, 2 * n + 3)).collect();
        let ids: Vec<String> = (0..new_per_conversation.len()).map(|n| format!("${}", 2 * n + 2)).collect();
        let sql = format!(
            "UPDATE conversations SET last_seq = last_seq + CASE id {} END, last_activity_at = $1
             WHERE id IN ({}) RETURNING id, last_seq",
            cases.join(" "),
            ids.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(now.unix_millis());
        for (id, count) in new_per_conversation {
            query = query.bind(*id).bind(*count);
        }
        let mut first_seqs: HashMap<String, i64> = HashMap::new();
        for row in query.fetch_all(&mut *connection).await? {
            let id: String = row.try_get("id")?;
            let last: i64 = row.try_get("last_seq")?;
            let count = new_per_conversation.get(id.as_str()).copied().unwrap_or_default();
            first_seqs.insert(id, last - count + 1);
        }
        Ok(first_seqs)
    }

    async fn insert_messages(&self, connection: &mut AnyConnection, new: &[&Message]) -> Result<(), ChatError> {
        let rows: Vec<String> =
            (0..new.len()).map(|n| format!("({})", plaza_store::numbered_parameters(8 * n + 1, 8))).collect();
        let sql = format!("INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES {}", rows.join(", "));
        let sql = self.store().backend().bulk_sql(&sql);
        let mut query = sqlx::query(&sql);
        for message in new {
            query = query
                .bind(&message.id)
                .bind(&message.conversation_id)
                .bind(message.seq)
                .bind(&message.sender_id)
                .bind(&message.client_id)
                .bind(message.kind.as_str())
                .bind(message.body.to_string())
                .bind(message.created_at.unix_millis());
        }
        query.execute(&mut *connection).await?;
        Ok(())
    }

    /// Senders' read marks move to their newest message: your own messages are never unread.
    async fn advance_read_marks(&self, connection: &mut AnyConnection, new: &[&Message]) -> Result<(), ChatError> {
        let mut read_marks: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for message in new {
            let mark = read_marks.entry((&message.conversation_id, &message.sender_id)).or_default();
            *mark = (*mark).max(message.seq);
        }
        let cases: Vec<String> = (0..read_marks.len())
            .map(|n| format!("WHEN conversation_id = ${} AND user_id = ${} THEN ${}", 3 * n + 1, 3 * n + 2, 3 * n + 3))
            .collect();
        let conditions: Vec<String> = (0..read_marks.len())
            .map(|n| {
                format!("(conversation_id = ${} AND user_id = ${} AND read_seq < ${})", 3 * n + 1, 3 * n + 2, 3 * n + 3)
            })
            .collect();
        let sql = format!(
            "UPDATE conversation_members SET read_seq = CASE {} ELSE read_seq END WHERE {}",
            cases.join(" "),
            conditions.join(" OR ")
        );
        // (Each parameter appears twice here, so `bulk_sql` could not make it anonymous; a
        // batch has at most `send_batch_max` senders, which keeps it small.)
        let mut query = sqlx::query(&sql);
        for ((conversation_id, user_id), seq) in &read_marks {
            query = query.bind(*conversation_id).bind(*user_id).bind(*seq);
        }
        query.execute(&mut *connection).await?;
        Ok(())
    }

    /// Images sent into a conversation become visible to its members.
    async fn record_shared_images(&self, connection: &mut AnyConnection, new: &[&Message]) -> Result<(), ChatError> {
        let mut shared_media: Vec<(&str, &str)> = new
            .iter()
            .filter(|message| message.kind == MessageKind::Image)
            .filter_map(|message| {
                message
                    .body
                    .get("media_id")
                    .and_then(Value::as_str)
                    .map(|media| (media, message.conversation_id.as_str()))
            })
            .collect();
        shared_media.sort_unstable();
        shared_media.dedup();
        if shared_media.is_empty() {
            return Ok(());
        }
        let rows: Vec<String> =
            (0..shared_media.len()).map(|n| format!("({})", plaza_store::numbered_parameters(2 * n + 1, 2))).collect();
        let sql = format!(
            "INSERT INTO conversation_media (media_id, conversation_id) VALUES {} ON CONFLICT DO NOTHING",
            rows.join(", ")
        );
        let sql = self.store().backend().bulk_sql(&sql);
        let mut query = sqlx::query(&sql);
        for (media_id, conversation_id) in &shared_media {
            query = query.bind(*media_id).bind(*conversation_id);
        }
        query.execute(&mut *connection).await?;
        Ok(())
    }
}

/// Members by conversation id.
type Members = HashMap<String, Vec<String>>;

/// Stored messages by (conversation, sender, client id).
type Earlier = HashMap<(String, String, String), Message>;

/// What each send turns into, and how many new messages each conversation gets: a
/// non-member is refused, a stored retry answers its message, a repeat within the batch
/// answers the first, and the rest are new.
fn plan_batch<'a>(jobs: &'a [SendJob], members: &Members, earlier: &Earlier) -> (Vec<Plan>, BTreeMap<&'a str, i64>) {
    let mut plans = Vec::with_capacity(jobs.len());
    let mut first_in_batch: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut new_per_conversation: BTreeMap<&str, i64> = BTreeMap::new();
    for (index, job) in jobs.iter().enumerate() {
        let key = (job.conversation_id.as_str(), job.sender_id.as_str(), job.client_id.as_str());
        let is_member = members.get(key.0).is_some_and(|ids| ids.iter().any(|id| id == key.1));
        let plan = if !is_member {
            Plan::Settled(Err(ChatError::ConversationNotFound))
        } else if let Some(message) = earlier.get(&(key.0.to_string(), key.1.to_string(), key.2.to_string())) {
            Plan::Settled(Ok((message.clone(), false)))
        } else if let Some(first) = first_in_batch.get(&key) {
            Plan::SameAs(*first)
        } else {
            first_in_batch.insert(key, index);
            *new_per_conversation.entry(key.0).or_default() += 1;
            Plan::New
        };
        plans.push(plan);
    }
    (plans, new_per_conversation)
}

/// The new messages, in their jobs' places, numbered from each conversation's first new
/// seq in batch order.
fn number_messages(
    jobs: &[SendJob],
    plans: &[Plan],
    mut next_seq: HashMap<String, i64>,
    now: Timestamp,
) -> Result<Vec<Option<Message>>, ChatError> {
    let mut messages: Vec<Option<Message>> = vec![None; jobs.len()];
    for (index, job) in jobs.iter().enumerate() {
        if !matches!(plans[index], Plan::New) {
            continue;
        }
        // A conversation deleted under us would return no row: fail the batch.
        let seq = next_seq.get_mut(&job.conversation_id).ok_or(ChatError::ConversationNotFound)?;
        messages[index] = Some(Message {
            id: plaza_kernel::new_id(),
            conversation_id: job.conversation_id.clone(),
            seq: *seq,
            sender_id: job.sender_id.clone(),
            client_id: job.client_id.clone(),
            kind: job.kind,
            body: job.body.clone(),
            created_at: now,
        });
        *seq += 1;
    }
    Ok(messages)
}

fn settle(index: usize, plan: Plan, messages: &[Option<Message>]) -> SendOutcome {
    let stored = |index: usize, fresh: bool| {
        messages.get(index).cloned().flatten().map(|message| (message, fresh)).ok_or(ChatError::ConversationNotFound)
    };
    match plan {
        Plan::Settled(outcome) => outcome,
        Plan::SameAs(first) => stored(first, false),
        Plan::New => stored(index, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(conversation: &str, sender: &str, client_id: &str) -> SendJob {
        SendJob {
            sender_id: sender.to_string(),
            conversation_id: conversation.to_string(),
            client_id: client_id.to_string(),
            kind: MessageKind::Text,
            body: serde_json::json!({"text": client_id}),
        }
    }

    fn members() -> Members {
        HashMap::from([
            ("c1".to_string(), vec!["ann".to_string(), "bob".to_string()]),
            ("c2".to_string(), vec!["ann".to_string()]),
        ])
    }

    #[test]
    fn a_batch_plans_refusals_retries_repeats_and_new_sends() {
        let jobs = [job("c1", "ann", "a"), job("c1", "eve", "e"), job("c1", "ann", "a"), job("c2", "ann", "b")];
        let earlier = Earlier::new();
        let (plans, new_per_conversation) = plan_batch(&jobs, &members(), &earlier);
        assert!(matches!(plans[0], Plan::New));
        assert!(matches!(plans[1], Plan::Settled(Err(ChatError::ConversationNotFound))));
        assert!(matches!(plans[2], Plan::SameAs(0)));
        assert!(matches!(plans[3], Plan::New));
        assert_eq!(new_per_conversation, BTreeMap::from([("c1", 1), ("c2", 1)]));

        let messages =
            number_messages(&jobs, &plans, HashMap::from([("c1".into(), 7), ("c2".into(), 1)]), Timestamp::now())
                .expect("numbered");
        let seqs: Vec<Option<i64>> = messages.iter().map(|message| message.as_ref().map(|m| m.seq)).collect();
        assert_eq!(seqs, [Some(7), None, None, Some(1)]);
        let outcomes: Vec<SendOutcome> =
            plans.into_iter().enumerate().map(|(n, plan)| settle(n, plan, &messages)).collect();
        let answered: Vec<Option<(i64, bool)>> =
            outcomes.iter().map(|outcome| outcome.as_ref().ok().map(|(m, fresh)| (m.seq, *fresh))).collect();
        assert_eq!(answered, [Some((7, true)), None, Some((7, false)), Some((1, true))]);
    }

    #[test]
    fn new_messages_of_one_conversation_take_consecutive_seqs_in_batch_order() {
        let jobs = [job("c1", "ann", "a"), job("c1", "bob", "b"), job("c1", "ann", "c")];
        let (plans, new_per_conversation) = plan_batch(&jobs, &members(), &Earlier::new());
        assert_eq!(new_per_conversation, BTreeMap::from([("c1", 3)]));
        let messages =
            number_messages(&jobs, &plans, HashMap::from([("c1".into(), 41)]), Timestamp::now()).expect("numbered");
        let seqs: Vec<i64> = messages.iter().flatten().map(|message| message.seq).collect();
        assert_eq!(seqs, [41, 42, 43]);
    }

    #[test]
    fn a_conversation_whose_counter_did_not_move_fails_the_batch() {
        let jobs = [job("c1", "ann", "a")];
        let (plans, _) = plan_batch(&jobs, &members(), &Earlier::new());
        let outcome = number_messages(&jobs, &plans, HashMap::new(), Timestamp::now());
        assert!(matches!(outcome, Err(ChatError::ConversationNotFound)));
    }
}
