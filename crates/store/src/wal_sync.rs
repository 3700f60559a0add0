//! Commits that do not wait for the disk while they hold the writer, made durable before
//! anyone is answered.
//!
//! With `synchronous = FULL`, SQLite fsyncs the WAL inside every `COMMIT`, on the one writer
//! connection: while the disk syncs, no other transaction can run, and a group-committed
//! batch of small random writes (a transfer touches about nine pages) spends much of its
//! time there with the CPUs idle. A [`DeferredSyncWriter`] runs one transaction with
//! `synchronous = NORMAL` (the commit writes the WAL but does not fsync it) and gives the
//! connection back — set to what it was — at once; the caller then takes a [`SyncTicket`]
//! and waits on [`WalSync::durable`], which fsyncs the WAL file from another thread, one
//! fsync covering every commit made before it. The next transaction runs meanwhile.
//!
//! Nothing is answered before its fsync, so an acknowledged write survives power loss as
//! with `FULL`; what changes is that other connections may read a commit a few
//! milliseconds before it is durable (as PostgreSQL's `synchronous_commit = off` lets
//! them), and a crash of the machine in that window loses it along with everything after.
//! A SIGKILL loses nothing: the WAL is written before `COMMIT` returns.

use crate::SqliteSync;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Connection, Executor, Transaction};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Mutex;

/// What a caller waits on: the commits up to this one must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncTicket(u64);

/// Makes deferred commits durable: fsyncs the SQLite WAL file, coalescing waiters.
#[derive(Debug)]
pub struct WalSync {
    wal_path: PathBuf,
    /// Deferred commits so far; a ticket is this count right after its commit.
    committed: AtomicU64,
    /// The highest ticket known to be on disk, or why durability can no longer be
    /// promised: a failed fsync is final (the kernel reports a writeback error once, so a
    /// later fsync that succeeds proves nothing about the pages the failed one lost).
    synced: std::sync::Mutex<Result<u64, String>>,
    /// One fsync at a time, holding the inode last synced: whoever holds it syncs for
    /// everyone waiting.
    syncing: Mutex<Option<u64>>,
}

impl WalSync {
    pub(crate) fn new(database_path: PathBuf) -> Arc<Self> {
        let mut wal_path = database_path.into_os_string();
        wal_path.push("-wal");
        Arc::new(Self {
            wal_path: PathBuf::from(wal_path),
            committed: AtomicU64::new(0),
            synced: std::sync::Mutex::new(Ok(0)),
            syncing: Mutex::new(None),
        })
    }

    /// Records that a deferred commit has just returned.
    pub fn committed(&self) -> SyncTicket {
        SyncTicket(self.committed.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// A ticket for an answer that committed nothing but may rest on what earlier deferred
    /// commits wrote (a replayed result, a balance read): durable once they are.
    pub fn read_ticket(&self) -> SyncTicket {
        SyncTicket(self.committed.load(Ordering::SeqCst))
    }

    /// Whether `ticket` is on disk (`Ok(true)`), not yet (`Ok(false)`), or never will be
    /// known to be.
    fn is_durable(&self, ticket: SyncTicket) -> Result<bool, sqlx::Error> {
        match &*self.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Ok(synced) => Ok(*synced >= ticket.0),
            Err(reason) => {
                Err(sqlx::Error::Io(std::io::Error::other(format!("the WAL could not be synced: {reason}"))))
            }
        }
    }

    /// Waits until the commit behind `ticket` (and every one before it) is on disk.
    pub async fn durable(&self, ticket: SyncTicket) -> Result<(), sqlx::Error> {
        if self.is_durable(ticket)? {
            return Ok(());
        }
        let mut last_inode = self.syncing.lock().await;
        // Someone may have synced past us while we waited for the lock.
        if self.is_durable(ticket)? {
            return Ok(());
        }
        // Every commit counted so far has written its frames: one fsync covers them.
        let target = self.committed.load(Ordering::SeqCst);
        // Opened afresh each time: SQLite deletes the WAL when its last connection closes
        // and creates a new one, and an fsync through an old handle would sync nothing.
        let wal_path = self.wal_path.clone();
        let known_inode = *last_inode;
        let synced = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            use std::os::unix::fs::MetadataExt;
            let file = std::fs::File::open(&wal_path)?;
            file.sync_data()?;
            let inode = file.metadata()?.ino();
            if known_inode != Some(inode) {
                // A new file: its directory entry must be on disk too.
                if let Some(directory) = wal_path.parent() {
                    std::fs::File::open(directory)?.sync_all()?;
                }
            }
            Ok(inode)
        })
        .await
        .unwrap_or_else(|error| Err(std::io::Error::other(error.to_string())));
        let mut state = self.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match synced {
            Ok(inode) => {
                *last_inode = Some(inode);
                if let Ok(before) = &mut *state {
                    *before = (*before).max(target);
                }
                drop(state);
                self.is_durable(ticket).map(|_| ())
            }
            Err(error) => {
                tracing::error!("fsync of the SQLite WAL failed; no deferred commit will be confirmed again: {error}");
                *state = Err(error.to_string());
                Err(sqlx::Error::Io(error))
            }
        }
    }
}

/// The writer connection, set for one transaction whose commit does not wait for the disk
/// (see the module's comment). [`DeferredSyncWriter::finish`] hands it back marked as not
/// syncing, and the next ordinary user of the writer sets it back to syncing as it takes it
/// ([`SyncRestore::before_acquire`]), so a run of deferred batches pays for no setting
/// in between; should `finish` not happen (an error, a panic, a cancelled future), the
/// connection is closed rather than handed to a writer that expects its commits synced.
pub struct DeferredSyncWriter {
    connection: Option<PoolConnection<Any>>,
    restore: Arc<SyncRestore>,
}

impl DeferredSyncWriter {
    pub(crate) fn start(connection: PoolConnection<Any>, restore: Arc<SyncRestore>) -> Self {
        // Owned by the writer before any await, so that its `Drop` covers every path.
        Self { connection: Some(connection), restore }
    }

    /// Begins the one transaction, with the commit set not to wait for the disk: the
    /// setting and `BEGIN` go to SQLite together, in one round trip.
    pub async fn begin(&mut self) -> Result<Transaction<'_, Any>, sqlx::Error> {
        self.connection
            .as_mut()
            .expect("a deferred-sync writer is used only until it is finished")
            .begin_with("PRAGMA synchronous = NORMAL; BEGIN")
            .await
    }

    /// Returns the connection to the pool, owed a reset to syncing commits.
    pub fn finish(mut self) {
        self.restore.owed.store(true, Ordering::SeqCst);
        drop(self.connection.take());
    }
}

tokio::task_local! {
    /// Set while a deferred-sync writer takes the writer: it wants commits not synced, so
    /// the reset would be undone at once.
    static DEFERRED_ACQUIRE: ();
}

/// Whether the one writer connection still has a deferred writer's `synchronous = NORMAL`.
#[derive(Debug)]
pub(crate) struct SyncRestore {
    owed: AtomicBool,
    sql: &'static str,
}

impl SyncRestore {
    /// For a writer whose configured durability is `configured`.
    pub(crate) fn new(configured: SqliteSync) -> Arc<Self> {
        let sql = match configured {
            SqliteSync::Full => "PRAGMA synchronous = FULL",
            SqliteSync::Normal => "PRAGMA synchronous = NORMAL",
        };
        Arc::new(Self { owed: AtomicBool::new(false), sql })
    }

    /// Takes the writer for a deferred-sync transaction.
    pub(crate) async fn acquire_deferred(pool: &sqlx::AnyPool) -> Result<PoolConnection<Any>, sqlx::Error> {
        DEFERRED_ACQUIRE.scope((), pool.acquire()).await
    }

    /// The write pool's `before_acquire`: anyone but a deferred writer gets the writer
    /// syncing its commits again. (An error closes the connection; its replacement
    /// starts syncing.)
    pub(crate) async fn before_acquire(&self, connection: &mut AnyConnection) -> Result<bool, sqlx::Error> {
        if DEFERRED_ACQUIRE.try_with(|_| ()).is_err() && self.owed.load(Ordering::SeqCst) {
            connection.execute(self.sql).await?;
            self.owed.store(false, Ordering::SeqCst);
        }
        Ok(true)
    }
}

impl Drop for DeferredSyncWriter {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.as_mut() {
            connection.close_on_drop();
        }
    }
}
