//! The durable per-user event log behind the real-time gateway.
//!
//! Every event a user must not miss (`message.new`, `message.read`, …) is appended here
//! **inside the transaction that causes it**, then announced on the bus after commit.
//! Each user has a cursor that is 1, 2, 3, … without gaps: appending takes the user's
//! counter row with an atomic upsert, so transactions touching one user commit in cursor
//! order, and a reader that has seen cursor `n` knows the next one is `n + 1`. That is
//! what lets the gateway deliver live events straight from the bus and fall back to the
//! database only when it sees a gap (a lost or late notification) — with nothing missed
//! and nothing repeated at the seam between replay and live delivery.
//!
//! Deadlock freedom on PostgreSQL: a transaction appends for its users in sorted id
//! order, so two transactions never wait on each other's counters in a cycle.

use bytes::Bytes;
use plaza_bus::{Bus, BusError, Subscription};
use plaza_kernel::Timestamp;
use plaza_store::{Any, JsonColumn, Migration, Row, Store, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::Arc;

/// The event log's schema.
pub const MIGRATIONS: &[Migration] = &[
    Migration { service: "events", version: 1, name: "per-user event log", sqlite: SCHEMA, postgres: SCHEMA },
    Migration { service: "events", version: 2, name: "event age index", sqlite: AGE_INDEX, postgres: AGE_INDEX },
];

/// Lets pruning find old events without reading the whole log.
const AGE_INDEX: &str = "CREATE INDEX user_events_created_at ON user_events (created_at);";

/// Events pruned per statement, so that pruning never holds the writer for long.
const PRUNE_CHUNK: i64 = 5_000;

/// Portable DDL: both engines share it.
const SCHEMA: &str = r#"
    CREATE TABLE user_event_cursors (
        user_id TEXT PRIMARY KEY,
        last_cursor BIGINT NOT NULL
    );
    CREATE TABLE user_events (
        user_id TEXT NOT NULL,
        cursor BIGINT NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, cursor)
    );
"#;

/// Users per statement when appending (bounded so a statement stays well under both
/// engines' parameter limits).
const APPEND_CHUNK: usize = 500;

/// The most events one read returns.
pub const READ_MAX: u32 = 500;

/// One stored event of one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub cursor: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: Value,
    pub created_at_ms: i64,
}

/// What the bus carries for a user: a durable event (with its cursor), or an ephemeral
/// frame such as a typing indicator that is never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    Durable { event: Event },
    Ephemeral { frame_type: String, data: Value },
}

/// A read of the log after a cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct After {
    /// The events after the cursor that are still kept, in order.
    pub events: Vec<Event>,
    /// Events right after the cursor were pruned: the reader missed something it can no
    /// longer be given, and must reload its state. `events` continue after the gap.
    pub expired: bool,
}

/// One event to append for some users, as part of [`Events::append_many`]; its data
/// already serialized ([`to_data`]), so that a batch can write it from any view of its
/// own without building a `Value` first.
#[derive(Debug, Clone, Copy)]
pub struct ToAppend<'a> {
    pub user_ids: &'a [String],
    pub event_type: &'a str,
    pub data: &'a RawValue,
}

/// An event's data, serialized for [`ToAppend`]. What events carry is plain data (views
/// with string keys), whose serialization cannot fail; should a bug make it fail, the
/// event carries `null` and the error is logged.
pub fn to_data<T: Serialize + ?Sized>(data: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(data).unwrap_or_else(|error| {
        tracing::error!("cannot encode an event's data: {error}");
        RawValue::from_string("null".into()).expect("null is JSON")
    })
}

/// Events appended in a transaction, to announce once it has committed.
#[derive(Debug, Default)]
#[must_use = "publish the appended events after the transaction commits"]
pub struct Appended {
    per_user: Vec<AppendedEvent>,
}

/// One recipient's copy of an appended event: its own cursor, and the entry it shares
/// with the entry's other recipients.
#[derive(Debug)]
struct AppendedEvent {
    user_id: String,
    cursor: i64,
    created_at_ms: i64,
    entry: Arc<SerializedEntry>,
}

/// An entry's type and data, serialized once: the database row of each recipient and
/// each recipient's notice copy the text instead of serializing the data again.
#[derive(Debug)]
struct SerializedEntry {
    event_type: String,
    data: Box<RawValue>,
}

/// [`Notice::Durable`] as the bus carries it, written from a serialized entry (the same
/// JSON, so subscribers read it as a [`Notice`]).
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum DurableNotice<'a> {
    Durable { event: EventText<'a> },
}

#[derive(Serialize)]
struct EventText<'a> {
    cursor: i64,
    #[serde(rename = "type")]
    event_type: &'a str,
    data: &'a RawValue,
    created_at_ms: i64,
}

impl Appended {
    pub fn merge(&mut self, other: Appended) {
        self.per_user.extend(other.per_user);
    }

    pub fn is_empty(&self) -> bool {
        self.per_user.is_empty()
    }
}

/// The event log and the bus it announces on; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    store: Store,
    bus: Bus,
}

impl Events {
    pub fn new(store: Store, bus: Bus) -> Self {
        Self { store, bus }
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Appends one event for each of `user_ids` inside `transaction`.
    pub async fn append(
        &self,
        transaction: &mut Transaction<'_, Any>,
        user_ids: &[String],
        event_type: &str,
        data: &Value,
    ) -> Result<Appended, sqlx::Error> {
        let data = to_data(data);
        self.append_many(transaction, &[ToAppend { user_ids, event_type, data: &data }]).await
    }

    /// Appends several events at once (a group-committed batch of messages): each goes to
    /// its own users, in the order given, with a constant number of statements per chunk
    /// of rows however many events and users there are.
    pub async fn append_many(
        &self,
        transaction: &mut Transaction<'_, Any>,
        batch: &[ToAppend<'_>],
    ) -> Result<Appended, sqlx::Error> {
        let (recipients, counts) = recipients_and_counts(batch);
        let backend = self.store.backend();
        let mut next_cursor = take_cursors(transaction, backend, counts).await?;
        let created_at_ms = Timestamp::now().unix_millis();
        let entries: Vec<Arc<SerializedEntry>> = batch
            .iter()
            .map(|entry| {
                Arc::new(SerializedEntry { event_type: entry.event_type.to_string(), data: entry.data.to_owned() })
            })
            .collect();
        let (rows, appended) = assign_cursors(&entries, &recipients, &mut next_cursor, created_at_ms)?;
        if backend == plaza_store::Backend::Sqlite {
            insert_events_sqlite(transaction, backend, &entries, &rows, created_at_ms).await?;
        } else {
            insert_events_postgres(transaction, &entries, &rows, created_at_ms).await?;
        }
        Ok(appended)
    }

    /// Announces committed events on the bus. Losing an announcement is harmless: the
    /// gateway notices the gap and reads the log.
    pub fn publish(&self, appended: Appended) {
        for event in appended.per_user {
            let notice = DurableNotice::Durable {
                event: EventText {
                    cursor: event.cursor,
                    event_type: &event.entry.event_type,
                    data: &event.entry.data,
                    created_at_ms: event.created_at_ms,
                },
            };
            match serde_json::to_vec(&notice) {
                Ok(payload) => self.bus.publish(&subject(&event.user_id), Bytes::from(payload)),
                Err(error) => tracing::error!("cannot encode a notice: {error}"),
            }
        }
    }

    /// Sends a frame that is never stored (typing indicators) to the users' sockets.
    pub fn publish_ephemeral(&self, user_ids: &[String], frame_type: &str, data: &Value) {
        let notice = Notice::Ephemeral { frame_type: frame_type.to_string(), data: data.clone() };
        for user_id in user_ids {
            self.publish_notice(user_id, &notice);
        }
    }

    fn publish_notice(&self, user_id: &str, notice: &Notice) {
        match serde_json::to_vec(notice) {
            Ok(payload) => self.bus.publish(&subject(user_id), Bytes::from(payload)),
            Err(error) => tracing::error!("cannot encode a notice: {error}"),
        }
    }

    pub async fn subscribe(&self, user_id: &str) -> Result<Subscription, BusError> {
        self.bus.subscribe(&subject(user_id)).await
    }

    /// Up to `limit` (at most [`READ_MAX`]) events of `user_id` after `cursor`, in order.
    pub async fn after(&self, user_id: &str, cursor: i64, limit: u32) -> Result<Vec<Event>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT cursor, type, data, created_at FROM user_events WHERE user_id = $1 AND cursor > $2
             ORDER BY cursor LIMIT $3",
        )
        .bind(user_id)
        .bind(cursor)
        .bind(limit.clamp(1, READ_MAX) as i64)
        .fetch_all(self.store.read())
        .await?;
        rows.iter()
            .map(|row| {
                let data: String = row.try_get("data")?;
                Ok(Event {
                    cursor: row.try_get("cursor")?,
                    event_type: row.try_get("type")?,
                    data: serde_json::from_str(&data).map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
                    created_at_ms: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// [`Events::after`], telling also whether events right after `cursor` were pruned.
    pub async fn after_checked(&self, user_id: &str, cursor: i64, limit: u32) -> Result<After, sqlx::Error> {
        let mut events = self.after(user_id, cursor, limit).await?;
        if events.is_empty() {
            // Nothing after the cursor: either the reader is up to date or everything after
            // it was pruned. The counter says which — read before the log again, so that an
            // event committed between the two reads is not taken for a pruned one.
            let latest = self.latest_cursor(user_id).await?;
            if latest <= cursor {
                return Ok(After { events, expired: false });
            }
            events = self.after(user_id, cursor, limit).await?;
            if events.is_empty() {
                return Ok(After { events, expired: true });
            }
        }
        // Cursors are gap-free as committed, so a first event past cursor + 1 means pruning.
        let expired = events.first().is_some_and(|first| first.cursor > cursor + 1);
        Ok(After { events, expired })
    }

    /// Deletes events created before `before_ms`, a chunk at a time; returns how many.
    /// Cursors are not reset: a reader that was behind learns from
    /// [`Events::after_checked`] that it missed pruned events.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, sqlx::Error> {
        let mut pruned = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM user_events WHERE (user_id, cursor) IN
                 (SELECT user_id, cursor FROM user_events WHERE created_at < $1 LIMIT $2)",
            )
            .bind(before_ms)
            .bind(PRUNE_CHUNK)
            .execute(self.store.write())
            .await?
            .rows_affected();
            pruned += deleted;
            if deleted < PRUNE_CHUNK as u64 {
                return Ok(pruned);
            }
        }
    }

    /// Prunes events older than `retention` every `interval`, for the life of the server.
    /// Every node may run it: deleting what another node already deleted is harmless.
    pub async fn prune_continually(self, retention: std::time::Duration, interval: std::time::Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let before_ms = Timestamp::now().unix_millis() - retention.as_millis().min(i64::MAX as u128) as i64;
            match self.prune(before_ms).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "pruned old events"),
                Err(error) => tracing::warn!("pruning old events: {error}"),
            }
        }
    }

    /// The cursor of the user's latest event (0 when there is none).
    pub async fn latest_cursor(&self, user_id: &str) -> Result<i64, sqlx::Error> {
        let cursor: Option<i64> = sqlx::query_scalar("SELECT last_cursor FROM user_event_cursors WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(self.store.read())
            .await?;
        Ok(cursor.unwrap_or(0))
    }
}

/// The bus subject of one user's notices.
pub fn subject(user_id: &str) -> String {
    format!("user.{user_id}")
}

/// Parses a cursor a client sent back (the decimal form of the number); `None` if it is
/// not one.
pub fn parse_cursor(text: &str) -> Option<i64> {
    let cursor: i64 = text.parse().ok()?;
    (cursor >= 0 && text.len() <= 19).then_some(cursor)
}

/// Each entry's recipients, sorted and without repeats, and how many events each user
/// receives (each user's counter moves once, by that many).
fn recipients_and_counts<'a>(batch: &'a [ToAppend<'_>]) -> (Vec<Vec<&'a str>>, Vec<(&'a str, i64)>) {
    let mut counts: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    let mut recipients: Vec<Vec<&str>> = Vec::with_capacity(batch.len());
    for entry in batch {
        let mut users: Vec<&str> = entry.user_ids.iter().map(String::as_str).collect();
        users.sort_unstable();
        users.dedup();
        for user in &users {
            *counts.entry(user).or_default() += 1;
        }
        recipients.push(users);
    }
    // Counters are taken in sorted user order (a BTreeMap), so PostgreSQL locks them in
    // that order.
    (recipients, counts.into_iter().collect())
}

/// Moves each user's counter by their count and returns the first cursor to hand out
/// per user.
async fn take_cursors<'a>(
    transaction: &mut Transaction<'_, Any>,
    backend: plaza_store::Backend,
    counted: Vec<(&'a str, i64)>,
) -> Result<std::collections::HashMap<&'a str, i64>, sqlx::Error> {
    let mut next_cursor = std::collections::HashMap::with_capacity(counted.len());
    // Rows go in as one JSON parameter (`Backend::json_rows`), so each statement's text
    // is the same for every batch and is prepared once. (`WHERE true` tells SQLite's
    // parser that `ON CONFLICT` is not a join's `ON`.) The counters are read back in one
    // row (`Backend::json_array_agg`) rather than returned a row per user; the upsert
    // holds them (the writer on SQLite, the rows' locks on PostgreSQL) until commit.
    let counts = backend.json_rows(1, &[("user_id", JsonColumn::Text), ("added", JsonColumn::BigInt)]);
    let upsert = format!(
        "INSERT INTO user_event_cursors (user_id, last_cursor)
         SELECT user_id, added FROM ({counts}) AS counts WHERE true
         ON CONFLICT (user_id) DO UPDATE SET last_cursor = user_event_cursors.last_cursor + excluded.last_cursor"
    );
    let read = format!(
        "SELECT {} FROM user_event_cursors WHERE user_id IN (SELECT user_id FROM ({counts}) AS counts)",
        backend.json_array_agg(&["user_id", "last_cursor"])
    );
    for chunk in counted.chunks(APPEND_CHUNK) {
        let payload = json_text(chunk)?;
        sqlx::query(&upsert).bind(&payload).execute(&mut **transaction).await?;
        let counters: Option<String> = sqlx::query_scalar(&read).bind(&payload).fetch_one(&mut **transaction).await?;
        let returned: std::collections::HashMap<String, i64> = match counters {
            Some(text) => {
                let rows: Vec<(String, i64)> =
                    serde_json::from_str(&text).map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
                rows.into_iter().collect()
            }
            None => std::collections::HashMap::new(),
        };
        for (user_id, count) in chunk {
            let last = *returned
                .get(*user_id)
                .ok_or_else(|| sqlx::Error::Protocol(format!("no cursor returned for user {user_id}")))?;
            next_cursor.insert(*user_id, last - count + 1);
        }
    }
    Ok(next_cursor)
}

/// One event row to insert: the recipient, its cursor, and which entry of the batch.
type EventRow<'a> = (&'a str, i64, usize);

/// One row per recipient of each entry, in order, and the events to publish once
/// committed.
fn assign_cursors<'a>(
    entries: &[Arc<SerializedEntry>],
    recipients: &[Vec<&'a str>],
    next_cursor: &mut std::collections::HashMap<&'a str, i64>,
    created_at_ms: i64,
) -> Result<(Vec<EventRow<'a>>, Appended), sqlx::Error> {
    let mut appended = Appended::default();
    let mut rows: Vec<EventRow<'a>> = Vec::new();
    for (index, users) in recipients.iter().enumerate() {
        for user_id in users {
            let cursor = next_cursor.get_mut(user_id).ok_or_else(|| sqlx::Error::Protocol("cursor lost".into()))?;
            rows.push((user_id, *cursor, index));
            appended.per_user.push(AppendedEvent {
                user_id: (*user_id).to_string(),
                cursor: *cursor,
                created_at_ms,
                entry: Arc::clone(&entries[index]),
            });
            *cursor += 1;
        }
    }
    Ok((rows, appended))
}

/// The event rows on SQLite, in three JSON parameters: the rows (recipient, cursor, which
/// entry), the entries' types and the entries' data, each entry's data once however many
/// recipients share it.
async fn insert_events_sqlite(
    transaction: &mut Transaction<'_, Any>,
    backend: plaza_store::Backend,
    entries: &[Arc<SerializedEntry>],
    rows: &[(&str, i64, usize)],
    created_at_ms: i64,
) -> Result<(), sqlx::Error> {
    // `$2 ->> n` is the n-th element of the JSON array `$2`, parsed once per statement.
    let insert = format!(
        "INSERT INTO user_events (user_id, cursor, type, data, created_at)
         SELECT user_id, cursor, $2 ->> entry, $3 ->> entry, $4 FROM ({}) AS events",
        backend.json_rows(
            1,
            &[("user_id", JsonColumn::Text), ("cursor", JsonColumn::BigInt), ("entry", JsonColumn::BigInt)]
        )
    );
    for chunk in rows.chunks(APPEND_CHUNK) {
        // The chunk's entries, renumbered from 0 in order of first use.
        let mut position_of: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
        let mut used: Vec<&SerializedEntry> = Vec::new();
        let rows: Vec<(&str, i64, usize)> = chunk
            .iter()
            .map(|(user_id, cursor, index)| {
                let position = *position_of.entry(*index).or_insert_with(|| {
                    used.push(&entries[*index]);
                    used.len() - 1
                });
                (*user_id, *cursor, position)
            })
            .collect();
        let types: Vec<&str> = used.iter().map(|entry| entry.event_type.as_str()).collect();
        let data: Vec<&str> = used.iter().map(|entry| entry.data.get()).collect();
        sqlx::query(&insert)
            .bind(json_text(&rows)?)
            .bind(json_text(&types)?)
            .bind(json_text(&data)?)
            .bind(created_at_ms)
            .execute(&mut **transaction)
            .await?;
    }
    Ok(())
}

fn json_text<T: Serialize + ?Sized>(value: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|error| sqlx::Error::Encode(Box::new(error)))
}

/// The event rows on PostgreSQL: each event's type and data are bound once and shared by
/// its rows (a group message's 500 recipients send its text once).
async fn insert_events_postgres(
    transaction: &mut Transaction<'_, Any>,
    entries_of_batch: &[Arc<SerializedEntry>],
    rows: &[(&str, i64, usize)],
    created_at_ms: i64,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(APPEND_CHUNK) {
        let mut entries: Vec<usize> = chunk.iter().map(|(_, _, index)| *index).collect();
        entries.sort_unstable();
        entries.dedup();
        // Parameters: $1 created_at, then type and data per entry, then user and cursor per row.
        let entry_param: std::collections::HashMap<usize, usize> =
            entries.iter().enumerate().map(|(position, index)| (*index, 2 + 2 * position)).collect();
        let first_row_param = 2 + 2 * entries.len();
        let values: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(n, (_, _, index))| {
                let entry = entry_param[index];
                format!(
                    "(${}, ${}, ${}, ${}, $1)",
                    first_row_param + 2 * n,
                    first_row_param + 2 * n + 1,
                    entry,
                    entry + 1
                )
            })
            .collect();
        let sql =
            format!("INSERT INTO user_events (user_id, cursor, type, data, created_at) VALUES {}", values.join(", "));
        let mut insert = sqlx::query(&sql).bind(created_at_ms);
        for index in &entries {
            let entry = &entries_of_batch[*index];
            insert = insert.bind(entry.event_type.as_str()).bind(entry.data.get());
        }
        for (user_id, cursor, _) in chunk {
            insert = insert.bind(*user_id).bind(*cursor);
        }
        insert.execute(&mut **transaction).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn events() -> (Events, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&Store::sqlite_url_in(dir.path()), 2).await.expect("connect");
        store.migrate(MIGRATIONS).await.expect("migrate");
        (Events::new(store, Bus::in_process()), dir)
    }

    #[tokio::test]
    async fn cursors_are_gap_free_per_user_and_announced_after_commit() {
        let (events, _dir) = events().await;
        let mut ann = events.subscribe("ann").await.expect("subscribe");
        let users = vec!["bob".to_string(), "ann".to_string()];
        for n in 0..3 {
            let mut transaction = events.store.begin().await.expect("begin");
            let appended = events
                .append(&mut transaction, &users, "test.event", &serde_json::json!({"n": n}))
                .await
                .expect("append");
            transaction.commit().await.expect("commit");
            events.publish(appended);
        }
        let stored = events.after("ann", 0, 100).await.expect("read");
        assert_eq!(stored.iter().map(|e| e.cursor).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(stored[2].data["n"], 2);
        assert_eq!(events.after("bob", 1, 100).await.expect("read").len(), 2);
        assert_eq!(events.latest_cursor("ann").await.expect("latest"), 3);
        assert_eq!(events.latest_cursor("nobody").await.expect("latest"), 0);
        match ann.recv().await {
            plaza_bus::Received::Notification(notification) => {
                let notice: Notice = serde_json::from_slice(&notification.payload).expect("notice");
                let expected = Event {
                    cursor: 1,
                    event_type: "test.event".into(),
                    data: serde_json::json!({"n": 0}),
                    created_at_ms: stored[0].created_at_ms,
                };
                assert_eq!(notice, Notice::Durable { event: expected });
            }
            other => panic!("expected a notification, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_rolled_back_transaction_leaves_no_event_and_no_gap() {
        let (events, _dir) = events().await;
        let users = vec!["ann".to_string()];
        let mut transaction = events.store.begin().await.expect("begin");
        let _discarded = events.append(&mut transaction, &users, "lost", &Value::Null).await.expect("append");
        transaction.rollback().await.expect("rollback");
        let mut transaction = events.store.begin().await.expect("begin");
        let kept = events.append(&mut transaction, &users, "kept", &Value::Null).await.expect("append");
        transaction.commit().await.expect("commit");
        events.publish(kept);
        let stored = events.after("ann", 0, 10).await.expect("read");
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].cursor, stored[0].event_type.as_str()), (1, "kept"));
    }

    /// Entries of one append shared by several recipients, and others by one: every
    /// recipient's row and notice hold its entry's own type and data, byte for byte.
    #[tokio::test]
    async fn shared_entries_reach_each_recipient_whole() {
        let (events, _dir) = events().await;
        let mut bob = events.subscribe("bob").await.expect("subscribe");
        let (both, ann) = (vec!["bob".to_string(), "ann".to_string()], vec!["ann".to_string()]);
        let tricky =
            serde_json::json!({"text": "it's \"quoted\" \\ 红包 🧧", "n": i64::MAX, "list": [1, null, {"a": []}]});
        let plain = serde_json::json!({"n": 1});
        let data = [to_data(&plain), to_data(&tricky), to_data(&Value::Null)];
        let batch = [
            ToAppend { user_ids: &ann, event_type: "first", data: &data[0] },
            ToAppend { user_ids: &both, event_type: "second", data: &data[1] },
            ToAppend { user_ids: &ann, event_type: "third", data: &data[2] },
        ];
        let mut transaction = events.store.begin().await.expect("begin");
        let appended = events.append_many(&mut transaction, &batch).await.expect("append");
        transaction.commit().await.expect("commit");
        events.publish(appended);
        let of_ann = events.after("ann", 0, 10).await.expect("read");
        let seen: Vec<(i64, &str, &Value)> =
            of_ann.iter().map(|event| (event.cursor, event.event_type.as_str(), &event.data)).collect();
        assert_eq!(seen, [(1, "first", &plain), (2, "second", &tricky), (3, "third", &Value::Null)]);
        let of_bob = events.after("bob", 0, 10).await.expect("read");
        assert_eq!(of_bob.len(), 1);
        assert_eq!((of_bob[0].cursor, of_bob[0].event_type.as_str(), &of_bob[0].data), (1, "second", &tricky));
        match bob.recv().await {
            plaza_bus::Received::Notification(notification) => {
                let notice: Notice = serde_json::from_slice(&notification.payload).expect("notice");
                assert_eq!(notice, Notice::Durable { event: of_bob[0].clone() });
            }
            other => panic!("expected a notification, got {other:?}"),
        }
    }

    #[test]
    fn cursors_from_clients_are_checked() {
        assert_eq!(parse_cursor("42"), Some(42));
        assert_eq!(parse_cursor("-1"), None);
        assert_eq!(parse_cursor("abc"), None);
    }
}
