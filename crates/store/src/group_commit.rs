//! Group commit: jobs submitted concurrently are run together, many per database
//! transaction.
//!
//! Every statement costs a round trip (to SQLite's worker thread or to PostgreSQL), and
//! on SQLite all writers queue for one connection, so a write-heavy path is bounded by
//! round trips, not by work. A [`GroupCommit`] has one task that takes every job waiting
//! (up to a batch limit) and hands the whole batch to the caller's `run`, which does the
//! batch's work in one transaction with multi-row statements. A lone job is run at once
//! (no waiting for company), so latency under light load is unchanged; under heavy load
//! batches grow by themselves while the previous one is in the database.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Why a submitted job has no answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GroupCommitError {
    /// The runner is gone (the service is shutting down).
    #[error("the group-commit runner has stopped")]
    Stopped,
    /// The batch holding this job panicked; whether its work committed is unknown to the
    /// caller, as after any lost connection, and an idempotent retry settles it.
    #[error("the batch holding this job failed without an answer")]
    Lost,
}

type Submitted<J, O> = (J, oneshot::Sender<O>);

/// A queue of jobs of type `J`, each answered with an `O`; cheap to clone.
pub struct GroupCommit<J, O> {
    sender: mpsc::Sender<Submitted<J, O>>,
}

impl<J, O> Clone for GroupCommit<J, O> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone() }
    }
}

impl<J, O> std::fmt::Debug for GroupCommit<J, O> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GroupCommit")
            .field("queued", &(self.sender.max_capacity() - self.sender.capacity()))
            .finish()
    }
}

impl<J: Send + 'static, O: Send + 'static> GroupCommit<J, O> {
    /// Starts the runner on the current tokio runtime. `run` receives between 1 and
    /// `max_batch` jobs and must return exactly one output per job, in the same order.
    /// At most `queue` jobs wait; further submitters wait for room (back-pressure rather
    /// than unbounded memory). The runner stops when every clone is dropped.
    pub fn spawn<F, Fut>(queue: usize, max_batch: usize, run: F) -> Self
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<O>> + Send + 'static,
    {
        let (sender, runner) = Self::runner(queue, max_batch, run);
        tokio::spawn(runner);
        Self { sender }
    }

    /// [`GroupCommit::spawn`], but the runner gets an OS thread (and a single-threaded
    /// runtime) of its own. A batch is a chain of database round trips, and each hop
    /// resumes the runner; on a runtime busy with thousands of sockets, every resume
    /// would queue behind socket work, so the batch — which everyone waits on — would
    /// take as long as the busiest moment of the whole server.
    pub fn spawn_on_own_thread<F, Fut>(name: &str, queue: usize, max_batch: usize, run: F) -> std::io::Result<Self>
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<O>> + Send + 'static,
    {
        let (sender, runner) = Self::runner(queue, max_batch, run);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name(name.to_string()).spawn(move || runtime.block_on(runner))?;
        Ok(Self { sender })
    }

    fn runner<F, Fut>(
        queue: usize,
        max_batch: usize,
        run: F,
    ) -> (mpsc::Sender<Submitted<J, O>>, impl Future<Output = ()> + Send + 'static)
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<O>> + Send + 'static,
    {
        let (sender, mut receiver) = mpsc::channel::<Submitted<J, O>>(queue.max(1));
        let max_batch = max_batch.max(1);
        let run = Arc::new(run);
        let runner = async move {
            let mut batch = Vec::with_capacity(max_batch);
            while receiver.recv_many(&mut batch, max_batch).await > 0 {
                let (jobs, replies): (Vec<J>, Vec<oneshot::Sender<O>>) = batch.drain(..).unzip();
                let run = Arc::clone(&run);
                // The batch runs in its own task so that a panic in it drops only its
                // replies (those callers see `Lost`) and the runner goes on.
                let outcome = tokio::spawn(async move {
                    let outputs = run(jobs).await;
                    debug_assert_eq!(outputs.len(), replies.len(), "one output per job");
                    for (output, reply) in outputs.into_iter().zip(replies) {
                        // A caller that stopped waiting no longer needs its answer.
                        let _ = reply.send(output);
                    }
                })
                .await;
                if let Err(error) = outcome {
                    tracing::error!("a group-commit batch failed: {error}");
                }
            }
        };
        (sender, runner)
    }

    /// Queues `job` and waits for its output.
    pub async fn submit(&self, job: J) -> Result<O, GroupCommitError> {
        self.enqueue(job).await?.answer().await
    }

    /// Queues `job` (waiting only for room in the queue) and returns the claim on its
    /// output. Jobs enqueued one after another by one task run in that order, which lets
    /// a caller keep several jobs in flight without reordering them.
    pub async fn enqueue(&self, job: J) -> Result<Queued<O>, GroupCommitError> {
        let (reply, answer) = oneshot::channel();
        self.sender.send((job, reply)).await.map_err(|_| GroupCommitError::Stopped)?;
        Ok(Queued { answer })
    }
}

/// A queued job's future output.
#[derive(Debug)]
pub struct Queued<O> {
    answer: oneshot::Receiver<O>,
}

impl<O> Queued<O> {
    pub async fn answer(self) -> Result<O, GroupCommitError> {
        self.answer.await.map_err(|_| GroupCommitError::Lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn every_job_gets_its_own_answer_and_concurrent_jobs_share_batches() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&batches);
        let doubler = GroupCommit::spawn(1024, 16, move |jobs: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                // Long enough that the other submitters queue up behind this batch.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                jobs.into_iter().map(|job| job * 2).collect::<Vec<_>>()
            }
        });
        let handles: Vec<_> = (0..100u32)
            .map(|job| {
                let doubler = doubler.clone();
                tokio::spawn(async move { (job, doubler.submit(job).await) })
            })
            .collect();
        for handle in handles {
            let (job, answer) = handle.await.expect("joined");
            assert_eq!(answer, Ok(job * 2));
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!((7..100).contains(&batches), "100 jobs in batches of at most 16 took {batches} batches");
    }

    #[tokio::test]
    async fn a_panicking_batch_loses_only_its_own_jobs() {
        let runner = GroupCommit::spawn(8, 1, |jobs: Vec<u32>| async move {
            assert!(jobs[0] != 13, "unlucky");
            jobs
        });
        assert_eq!(runner.submit(13).await, Err(GroupCommitError::Lost));
        assert_eq!(runner.submit(14).await, Ok(14));
    }
}
