//! The database read behind a session the cache does not hold, batched: the misses that
//! arrive while every read in flight (at most [`READ_ROUNDS_MAX`]) is busy are read
//! together by the next, in one statement (`plaza_store::ReadBatch`). A burst of callers new to this node (a flash sale's first
//! second, every socket reconnecting after a restart) costs a few statements instead of
//! one each, and a lone miss is read at once.

use crate::model::User;
use crate::service::{user_from_row, USER_COLUMNS};
use plaza_store::{numbered_parameters, ReadBatch, ReadMany, Row, Store};
use std::collections::HashMap;
use std::sync::Arc;

/// The most reads in flight at once, each on a pooled connection: a quarter of the default
/// pool, so that a burst of new callers leaves the rest to the writes they came for. (One
/// at a time measured slower on SQLite, whose reads run in parallel on the read pool.)
const READ_ROUNDS_MAX: usize = 4;
/// The most sessions one statement reads.
const READ_KEYS_MAX: usize = 256;
/// The most misses waiting for a read; beyond, a miss is read on its own.
const WAITING_MAX: usize = 4096;

/// A stored session, as `authenticate` judges it.
#[derive(Debug, Clone)]
pub(crate) struct StoredSession {
    pub(crate) user: User,
    pub(crate) last_used_at: i64,
    pub(crate) is_admin: bool,
}

/// Session reads by token hash over `store`'s read pool.
pub(crate) fn session_reads(store: Store) -> ReadBatch<StoredSession> {
    let read_many: ReadMany<StoredSession> = Arc::new(move |token_hashes: Vec<String>| {
        let store = store.clone();
        metrics::counter!("plaza_accounts_session_reads_total").increment(1);
        metrics::counter!("plaza_accounts_session_reads_sessions_total").increment(token_hashes.len() as u64);
        Box::pin(async move { read_sessions(&store, &token_hashes).await })
    });
    ReadBatch::new(READ_ROUNDS_MAX, READ_KEYS_MAX, WAITING_MAX, read_many)
}

async fn read_sessions(store: &Store, token_hashes: &[String]) -> Result<HashMap<String, StoredSession>, sqlx::Error> {
    let sql = format!(
        "SELECT {USER_COLUMNS}, s.token_hash, s.last_used_at,
                (SELECT COUNT(*) FROM user_roles r WHERE r.user_id = u.id AND r.role = 'admin') AS admin_roles
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash IN ({})",
        numbered_parameters(1, token_hashes.len())
    );
    let mut query = sqlx::query(&sql);
    for token_hash in token_hashes {
        query = query.bind(token_hash);
    }
    let rows = query.fetch_all(store.read()).await?;
    rows.iter()
        .map(|row| {
            let admin_roles: i64 = row.try_get("admin_roles")?;
            let session = StoredSession {
                user: user_from_row(row)?,
                last_used_at: row.try_get("last_used_at")?,
                is_admin: admin_roles > 0,
            };
            Ok((row.try_get("token_hash")?, session))
        })
        .collect()
}
