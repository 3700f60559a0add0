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

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Executor};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Mutex};

/// What a caller waits on: the commits up to this one must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncTicket(u64);

/// Makes deferred commits durable: fsyncs the SQLite WAL file, coalescing waiters.
#[derive(Debug)]
pub struct WalSync {
    wal_path: PathBuf,
    /// Deferred commits so far; a ticket is this count right after its commit.
    committed: AtomicU64,
    /// The highest ticket known to be on disk, or the error the last fsync met.
    synced: watch::Sender<Result<u64, String>>,
    /// One fsync at a time; whoever holds it syncs for everyone waiting.
    syncing: Mutex<Option<std::fs::File>>,
}

impl WalSync {
    pub(crate) fn new(database_path: PathBuf) -> Arc<Self> {
        let mut wal_path = database_path.into_os_string();
        wal_path.push("-wal");
        Arc::new(Self {
            wal_path: PathBuf::from(wal_path),
            committed: AtomicU64::new(0),
            synced: watch::channel(Ok(0)).0,
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

    /// Waits until the commit behind `ticket` (and every one before it) is on disk.
    pub async fn durable(&self, ticket: SyncTicket) -> Result<(), sqlx::Error> {
        loop {
            if matches!(*self.synced.borrow(), Ok(synced) if synced >= ticket.0) {
                return Ok(());
            }
            let mut file = self.syncing.lock().await;
            // Someone may have synced past us while we waited for the lock.
            if matches!(*self.synced.borrow(), Ok(synced) if synced >= ticket.0) {
                return Ok(());
            }
            // Every commit counted so far has written its frames: one fsync covers them.
            let target = self.committed.load(Ordering::SeqCst);
            let handle = match file.take() {
                Some(handle) => handle,
                None => std::fs::File::open(&self.wal_path).map_err(sqlx::Error::Io)?,
            };
            let (handle, outcome) = tokio::task::spawn_blocking(move || {
                let outcome = handle.sync_data();
                (handle, outcome)
            })
            .await
            .map_err(|error| sqlx::Error::Io(std::io::Error::other(error.to_string())))?;
            *file = Some(handle);
            match outcome {
                Ok(()) => {
                    self.synced.send_modify(|synced| {
                        if matches!(synced, Ok(before) if *before < target) || synced.is_err() {
                            *synced = Ok(target);
                        }
                    });
                }
                Err(error) => {
                    let message = error.to_string();
                    let _previous = self.synced.send_replace(Err(message));
                    return Err(sqlx::Error::Io(error));
                }
            }
        }
    }
}

/// The writer connection, set for one transaction whose commit does not wait for the disk
/// (see the module's comment). [`DeferredSyncWriter::finish`] sets it back; should that
/// not happen (an error, a panic), the connection is closed rather than handed to a
/// writer that expects its commits synced.
pub struct DeferredSyncWriter {
    connection: Option<PoolConnection<Any>>,
    restore: &'static str,
}

impl DeferredSyncWriter {
    pub(crate) async fn start(mut connection: PoolConnection<Any>, restore: &'static str) -> Result<Self, sqlx::Error> {
        connection.execute("PRAGMA synchronous = NORMAL").await?;
        Ok(Self { connection: Some(connection), restore })
    }

    /// The connection, to begin the transaction on.
    pub fn connection(&mut self) -> &mut AnyConnection {
        self.connection.as_mut().expect("a deferred-sync writer is used only until it is finished")
    }

    /// Sets the connection back to the configured durability and returns it to the pool.
    pub async fn finish(mut self) -> Result<(), sqlx::Error> {
        let mut connection = self.connection.take().expect("finished once");
        let sql = format!("PRAGMA synchronous = {}", self.restore);
        if let Err(error) = connection.execute(sql.as_str()).await {
            connection.close_on_drop();
            return Err(error);
        }
        Ok(())
    }
}

impl Drop for DeferredSyncWriter {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.as_mut() {
            connection.close_on_drop();
        }
    }
}
