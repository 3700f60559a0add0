//! Plaza's database access. One [`Store`] holds two pools over either SQLite or
//! PostgreSQL, chosen by the database URL:
//!
//! - On **SQLite** (WAL), all writes go through a pool of exactly one connection and reads
//!   through several read-only ones. SQLite allows one writer at a time anyway; queueing
//!   writers in the pool instead of in SQLite's lock means a transaction never fails with
//!   `SQLITE_BUSY` halfway, and concurrent read-modify-write code is serialised for free.
//! - On **PostgreSQL**, both are the same pool, and concurrency-sensitive writes rely on
//!   atomic conditional updates and row locks, as they must across many nodes.
//!
//! SQL is written once with `$1`-style parameters (both drivers accept them); where the
//! dialects differ, [`Store::backend`] lets the caller choose. Each service crate owns
//! its tables and hands its [`Migration`]s to [`Store::migrate`].

mod group_commit;
mod migrate;
mod read_batch;
mod wal_sync;

pub use group_commit::{GroupCommit, GroupCommitError, Queued};
pub use migrate::{AppliedMigration, Migration};
pub use read_batch::{ReadBatch, ReadMany};
pub use sqlx::any::AnyRow;
pub use sqlx::AnyPool;
pub use sqlx::{Any, Row, Transaction};
use wal_sync::SyncRestore;
pub use wal_sync::{DeferredSyncWriter, SyncTicket, WalSync};

use sqlx::any::AnyPoolOptions;
use sqlx::Executor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Which database engine a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// `sql` with its numbered parameters written the way this engine binds them fastest.
    ///
    /// SQLite keeps named parameters (`$7`) in a list it searches linearly, once per
    /// parameter when preparing and again when binding, so a multi-row statement with
    /// thousands of them costs time quadratic in its size (measured: over half of a
    /// transfer batch's CPU); its anonymous `?` costs nothing. On SQLite, numbered
    /// parameters become `?` when they appear exactly in the order `$1, $2, $3, …`, each
    /// once, which is how the multi-row statements are written; any other statement, and
    /// every statement on PostgreSQL, is returned as it is.
    pub fn bulk_sql(self, sql: &str) -> std::borrow::Cow<'_, str> {
        if self == Self::Postgres {
            return std::borrow::Cow::Borrowed(sql);
        }
        let bytes = sql.as_bytes();
        let mut out = String::with_capacity(sql.len());
        let (mut expected, mut copied, mut at) = (1usize, 0usize, 0usize);
        let mut in_literal = false;
        while at < bytes.len() {
            match bytes[at] {
                b'\'' => in_literal = !in_literal,
                b'$' if !in_literal => {
                    let digits = bytes[at + 1..].iter().take_while(|byte| byte.is_ascii_digit()).count();
                    let number: Option<usize> = sql[at + 1..at + 1 + digits].parse().ok();
                    if number != Some(expected) {
                        return std::borrow::Cow::Borrowed(sql);
                    }
                    out.push_str(&sql[copied..at]);
                    out.push('?');
                    expected += 1;
                    at += 1 + digits;
                    copied = at;
                    continue;
                }
                _ => {}
            }
            at += 1;
        }
        out.push_str(&sql[copied..]);
        std::borrow::Cow::Owned(out)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration {service}/{version} ({name}) failed: {source}")]
    Migration { service: &'static str, version: i64, name: &'static str, source: sqlx::Error },
    #[error("migration {service}/{version} was changed after it was applied (checksum differs)")]
    MigrationChanged { service: String, version: i64 },
}

/// When SQLite waits for the disk. Both survive a crash of the process (SIGKILL): a
/// committed transaction is in the WAL, in the operating system's hands. `Full` also
/// survives a power cut or kernel crash, by waiting for the disk at every commit; `Normal`
/// waits only at checkpoints, and may lose the last transactions to a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSync {
    Full,
    Normal,
}

impl SqliteSync {
    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// How long a request waits for a free connection before it gives up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SQLite waits on a lock held by another process (e.g. `plaza migrate`).
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// Page cache of the one writer connection. SQLite's default (2 MiB) is far smaller than
/// the hot part of a busy chat database (indexes of messages and the event log), and every
/// miss is a read system call on the write path.
const SQLITE_WRITER_CACHE_KIB: u32 = 64 * 1024;

/// How many WAL pages make the writer checkpoint by itself. Normally the background
/// checkpointer keeps the WAL far below this; it is the backstop should it fall behind.
const SQLITE_WRITER_CHECKPOINT_PAGES: u32 = 20_000;

/// How often the background checkpointer copies the WAL back into the database.
const SQLITE_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Copies committed WAL pages into the database file from a connection of its own, so
/// that the writer — whose commits every sender waits on — does not stop every thousand
/// pages to do it (and, with `synchronous = FULL`, to fsync the database file). A passive
/// checkpoint never blocks the writer or readers; once it has caught up, the next write
/// transaction starts the WAL from its beginning again, so the file stays small.
async fn checkpoint_continually(checkpointer: AnyPool, write: AnyPool) {
    let mut tick = tokio::time::interval(SQLITE_CHECKPOINT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !write.is_closed() {
        tick.tick().await;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&checkpointer).await {
            tracing::debug!("background checkpoint: {error}");
        }
    }
    checkpointer.close().await;
}

/// The database, as every service sees it.
#[derive(Debug, Clone)]
pub struct Store {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
    /// On SQLite with `synchronous = FULL`: what makes deferred commits durable.
    wal_sync: Option<Arc<WalSync>>,
    /// Whether the SQLite writer still has a finished deferred writer's setting.
    restore: Arc<SyncRestore>,
}

/// Connection-pool occupancy, for the `/metrics` gauges.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub read_size: u32,
    pub read_idle: usize,
    pub write_size: u32,
    pub write_idle: usize,
}

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://…`). `pool_max` bounds the
    /// PostgreSQL pool and SQLite's read pool; SQLite's write pool is always one.
    pub async fn connect(url: &str, pool_max: u32) -> Result<Self, StoreError> {
        Self::connect_with(url, pool_max, SqliteSync::Full).await
    }

    /// [`Store::connect`] with a choice of SQLite durability (ignored for PostgreSQL).
    pub async fn connect_with(url: &str, pool_max: u32, sqlite_sync: SqliteSync) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let pool_max = pool_max.max(1);
        let sync = sqlite_sync.pragma();
        if url.starts_with("sqlite:") {
            // A file connection does not go stale, so no ping before each use: on the one
            // writer that ping is a round trip every transaction would queue behind.
            let restore = SyncRestore::new(sqlite_sync);
            let restore_on_acquire = Arc::clone(&restore);
            let write = AnyPoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .before_acquire(move |connection, _| {
                    let restore = Arc::clone(&restore_on_acquire);
                    Box::pin(async move { restore.before_acquire(connection).await })
                })
                .after_connect(move |connection, _| {
                    Box::pin(async move {
                        connection
                            .execute(
                                format!(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
                                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA temp_store = MEMORY; \
                                     PRAGMA cache_size = -{SQLITE_WRITER_CACHE_KIB}; \
                                     PRAGMA wal_autocheckpoint = {SQLITE_WRITER_CHECKPOINT_PAGES};"
                                )
                                .as_str(),
                            )
                            .await?;
                        Ok(())
                    })
                })
                .connect(&with_sqlite_mode(url, "rwc"))
                .await?;
            // The write connection has created the file and switched it to WAL; only now
            // can read-only connections open it.
            let read = AnyPoolOptions::new()
                .max_connections(pool_max)
                .test_before_acquire(false)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        connection
                            .execute(
                                format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA query_only = ON;")
                                    .as_str(),
                            )
                            .await?;
                        Ok(())
                    })
                })
                .connect(&with_sqlite_mode(url, "ro"))
                .await?;
            let checkpointer = AnyPoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .connect(&with_sqlite_mode(url, "rw"))
                .await?;
            tokio::spawn(checkpoint_continually(checkpointer, write.clone()));
            // The file SQLite really opened (the URL's path is percent-decoded and may be
            // relative), whose `-wal` deferred commits are synced through.
            let wal_sync = match sqlite_sync {
                SqliteSync::Full => {
                    let file: String = sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                        .fetch_one(&write)
                        .await?;
                    (!file.is_empty()).then(|| WalSync::new(PathBuf::from(file)))
                }
                SqliteSync::Normal => None,
            };
            Ok(Self { read, write, backend: Backend::Sqlite, wal_sync, restore })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool =
                AnyPoolOptions::new().max_connections(pool_max).acquire_timeout(ACQUIRE_TIMEOUT).connect(url).await?;
            Ok(Self {
                read: pool.clone(),
                write: pool,
                backend: Backend::Postgres,
                wal_sync: None,
                restore: SyncRestore::new(SqliteSync::Full),
            })
        } else {
            Err(StoreError::UnsupportedUrl(redact(url)))
        }
    }

    /// The SQLite URL for the database file inside a data directory.
    pub fn sqlite_url_in(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("plaza.db").display())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for queries that only read.
    pub fn read(&self) -> &AnyPool {
        &self.read
    }

    /// The pool for anything that writes; on SQLite it serialises writers.
    pub fn write(&self) -> &AnyPool {
        &self.write
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        self.write.begin().await
    }

    /// The writer for one transaction whose commit does not wait for the disk, and what
    /// makes it durable afterwards (see [`WalSync`]). `None` on PostgreSQL, and on SQLite
    /// when commits are not synced anyway (`SqliteSync::Normal`): then the caller begins
    /// an ordinary transaction with [`Store::begin`].
    pub async fn deferred_sync_writer(&self) -> Result<Option<(DeferredSyncWriter, Arc<WalSync>)>, sqlx::Error> {
        let Some(wal_sync) = &self.wal_sync else {
            return Ok(None);
        };
        let connection = SyncRestore::acquire_deferred(&self.write).await?;
        Ok(Some((DeferredSyncWriter::start(connection, Arc::clone(&self.restore)), Arc::clone(wal_sync))))
    }

    /// What makes deferred commits durable, when this store defers any (SQLite with
    /// `synchronous = FULL`): an answer that may rest on one waits for a ticket from it.
    pub fn wal_sync(&self) -> Option<&Arc<WalSync>> {
        self.wal_sync.as_ref()
    }

    /// True when the database answers a trivial query, for `/readyz`.
    pub async fn ping(&self) -> bool {
        let read = sqlx::query("SELECT 1").execute(&self.read);
        let write = sqlx::query("SELECT 1").execute(&self.write);
        matches!(
            tokio::time::timeout(Duration::from_secs(2), async { (read.await, write.await) }).await,
            Ok((Ok(_), Ok(_)))
        )
    }

    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            read_size: self.read.size(),
            read_idle: self.read.num_idle(),
            write_size: self.write.size(),
            write_idle: self.write.num_idle(),
        }
    }

    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// True when `error` is a violated unique constraint, on either engine.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|database_error| database_error.is_unique_violation())
}

/// True when `error` means the database could not be reached (pool exhausted, connection
/// refused or lost) rather than that a query was wrong: a 503, not a 500.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_))
}

fn with_sqlite_mode(url: &str, mode: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode={mode}")
}

/// The SQL type of a column read out of a JSON parameter by [`Backend::json_rows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonColumn {
    Text,
    BigInt,
}

impl Backend {
    /// A `SELECT` over the rows of one parameter, `$parameter`, bound as the JSON text of
    /// an array of arrays (`[["a", 1], ["b", 2]]`, what `serde_json` makes of a list of
    /// tuples): one row per inner array, its elements as the `columns` in order (a JSON
    /// `null` is SQL `NULL`).
    ///
    /// The way to pass a batch's rows to the database: the statement's text is the same
    /// for every batch, so it is prepared once and cached, and binding is one string. A
    /// multi-row `VALUES` list with a parameter per value is a new statement for every
    /// batch size — parsed and planned afresh each time (measured: a tenth of the SQLite
    /// writer's time in a transfer batch) — with thousands of values bound one by one.
    pub fn json_rows(self, parameter: usize, columns: &[(&str, JsonColumn)]) -> String {
        let selected: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(index, (name, kind))| match (self, kind) {
                (Self::Sqlite, _) => format!("value ->> {index} AS {name}"),
                (Self::Postgres, JsonColumn::Text) => format!("element ->> {index} AS {name}"),
                (Self::Postgres, JsonColumn::BigInt) => format!("CAST(element ->> {index} AS BIGINT) AS {name}"),
            })
            .collect();
        match self {
            Self::Sqlite => format!("SELECT {} FROM json_each(${parameter})", selected.join(", ")),
            Self::Postgres => format!(
                "SELECT {} FROM json_array_elements(CAST(${parameter} AS JSON)) AS element",
                selected.join(", ")
            ),
        }
    }
}

impl Backend {
    /// An aggregate of a query's rows as the JSON text of one array of arrays (`[["a", 1],
    /// …]`, the shape [`Backend::json_rows`] reads), `NULL` or `[]` when there are none:
    /// a read of many rows then comes back as one. On SQLite every row of a result is a
    /// hand-off from the connection's thread to the caller (a wake-up each), which a
    /// batch reading a row per payer or per recipient would wait on row by row.
    pub fn json_array_agg(self, columns: &[&str]) -> String {
        match self {
            Self::Sqlite => format!("json_group_array(json_array({}))", columns.join(", ")),
            Self::Postgres => format!("CAST(json_agg(json_build_array({})) AS TEXT)", columns.join(", ")),
        }
    }
}

/// `$from, $from+1, …`: `count` numbered parameters, for multi-row statements written
/// once for both engines.
pub fn numbered_parameters(from: usize, count: usize) -> String {
    (from..from + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// A URL with any password removed, fit for an error message or a log line.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &credentials[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bulk_sql_makes_ordered_parameters_anonymous_on_sqlite_only() {
        let sql = "INSERT INTO t (a, b, c) VALUES ($1, $2, 'x$3'), ($3, $4, $5)";
        assert_eq!(super::Backend::Sqlite.bulk_sql(sql), "INSERT INTO t (a, b, c) VALUES (?, ?, 'x$3'), (?, ?, ?)");
        assert_eq!(super::Backend::Postgres.bulk_sql(sql), sql);
        // Reused or out-of-order parameters must keep their numbers.
        for kept in ["SELECT $1, $1", "SELECT $2, $1", "SELECT $1, $3", "SELECT $"] {
            assert_eq!(super::Backend::Sqlite.bulk_sql(kept), kept);
        }
        assert_eq!(super::Backend::Sqlite.bulk_sql("SELECT 1"), "SELECT 1");
    }

    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact("postgres://plaza:secret@db:5432/plaza"), "postgres://plaza:***@db:5432/plaza");
        assert_eq!(redact("postgres://plaza@db/plaza"), "postgres://plaza@db/plaza");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[tokio::test]
    async fn sqlite_store_reads_what_it_writes_and_refuses_writes_on_the_read_pool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&Store::sqlite_url_in(dir.path()), 4).await.expect("connect");
        sqlx::query("CREATE TABLE t (n BIGINT NOT NULL)").execute(store.write()).await.expect("create");
        sqlx::query("INSERT INTO t (n) VALUES ($1)").bind(7_i64).execute(store.write()).await.expect("insert");
        let n: i64 = sqlx::query_scalar("SELECT n FROM t").fetch_one(store.read()).await.expect("select");
        assert_eq!(n, 7);
        assert!(sqlx::query("INSERT INTO t (n) VALUES (1)").execute(store.read()).await.is_err());
        assert!(store.ping().await);
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(store.write()).await.expect("pragma");
        assert_eq!(mode, "wal");
    }

    /// Rows passed as JSON come back as they went in on both engines: quotes, non-ASCII
    /// text, `NULL`, and the extremes of `i64`.
    #[tokio::test]
    async fn json_rows_carry_text_nulls_and_64_bit_integers_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut urls = vec![Store::sqlite_url_in(dir.path())];
        urls.extend(std::env::var("PLAZA_TEST_DATABASE_URL").ok());
        let rows: Vec<(Option<&str>, i64)> =
            vec![(Some("it's \"quoted\" \\ 红包 🧧"), i64::MAX), (None, i64::MIN), (Some(""), -1)];
        let payload = serde_json::to_string(&rows).expect("json");
        for url in urls {
            let store = Store::connect(&url, 2).await.expect("connect");
            let sql = format!(
                "SELECT label, amount FROM ({}) AS rows ORDER BY amount",
                store.backend().json_rows(1, &[("label", JsonColumn::Text), ("amount", JsonColumn::BigInt)])
            );
            let read: Vec<(Option<String>, i64)> =
                sqlx::query_as(&sql).bind(&payload).fetch_all(store.read()).await.expect("select");
            let mut expected: Vec<(Option<String>, i64)> =
                rows.iter().map(|(label, amount)| (label.map(str::to_string), *amount)).collect();
            expected.sort_by_key(|(_, amount)| *amount);
            assert_eq!(read, expected, "on {}", store.backend().name());
        }
    }

    /// A deferred-sync writer leaves no trace on the connection: after `finish`, and after
    /// being dropped unfinished (an error, a panic), the writer syncs every commit again;
    /// and a deferred commit becomes durable through its ticket.
    #[tokio::test]
    async fn deferred_sync_writers_hand_back_a_synced_writer_and_their_tickets_resolve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&Store::sqlite_url_in(dir.path()), 2).await.expect("connect");
        let synchronous = || async {
            sqlx::query_scalar::<_, i64>("PRAGMA synchronous").fetch_one(store.write()).await.expect("pragma")
        };
        assert_eq!(synchronous().await, 2, "FULL");
        sqlx::query("CREATE TABLE t (n BIGINT NOT NULL)").execute(store.write()).await.expect("create");

        let (mut writer, wal) = store.deferred_sync_writer().await.expect("writer").expect("on SQLite with FULL");
        let mut transaction = writer.begin().await.expect("begin");
        let during: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *transaction).await.expect("pragma");
        assert_eq!(during, 1, "NORMAL inside the deferred transaction");
        sqlx::query("INSERT INTO t (n) VALUES (1)").execute(&mut *transaction).await.expect("insert");
        transaction.commit().await.expect("commit");
        writer.finish();
        let ticket = wal.committed();
        wal.durable(ticket).await.expect("durable");
        wal.durable(wal.read_ticket()).await.expect("nothing newer to sync");
        assert_eq!(synchronous().await, 2, "FULL again after finish");

        // Two deferred writers in a row, then an ordinary transaction: it syncs.
        for _ in 0..2 {
            let (mut writer, _) = store.deferred_sync_writer().await.expect("writer").expect("on SQLite with FULL");
            let transaction = writer.begin().await.expect("begin");
            transaction.commit().await.expect("commit");
            writer.finish();
        }
        let mut transaction = store.begin().await.expect("begin");
        let ordinary: i64 =
            sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *transaction).await.expect("pragma");
        assert_eq!(ordinary, 2, "FULL in an ordinary transaction after deferred ones");
        transaction.rollback().await.expect("rollback");

        let (writer, _) = store.deferred_sync_writer().await.expect("writer").expect("on SQLite with FULL");
        drop(writer);
        assert_eq!(synchronous().await, 2, "FULL on the connection that replaced the dropped one");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(store.read()).await.expect("count");
        assert_eq!(n, 1);

        let normal =
            Store::connect_with(&Store::sqlite_url_in(dir.path()), 2, SqliteSync::Normal).await.expect("connect");
        assert!(
            normal.deferred_sync_writer().await.expect("writer").is_none(),
            "nothing to defer when commits are not synced"
        );
    }

    /// A failed fsync is final: a later one that succeeds proves nothing about the pages
    /// the failed one lost, so no deferred commit is confirmed again.
    #[tokio::test]
    async fn a_failed_wal_sync_fails_every_later_ticket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = WalSync::new(dir.path().join("gone.db"));
        let ticket = wal.committed();
        assert!(wal.durable(ticket).await.is_err(), "there is no WAL file to sync");
        std::fs::write(dir.path().join("gone.db-wal"), b"frames").expect("write");
        assert!(wal.durable(ticket).await.is_err());
        assert!(wal.durable(wal.read_ticket()).await.is_err());
        let fresh = WalSync::new(dir.path().join("gone.db"));
        assert!(fresh.durable(fresh.committed()).await.is_ok(), "the same file syncs for a store that never failed");
    }
}
