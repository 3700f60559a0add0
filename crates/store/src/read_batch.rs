//! Reads by key that many callers want at the same moment, answered one statement a round.
//!
//! Up to `max_rounds` rounds run at once; while they are all in flight, the keys that
//! arrive wait, and the next round reads all of them at once (up to `max_keys`; the rest
//! wait for the round after). A caller that finds a round free is read at once, without
//! waiting for company, so a quiet server pays nothing for it,
//! while a burst of new callers (a flash sale's first second, every socket reconnecting
//! after a restart) pays one statement a round instead of one a caller, and one pooled
//! connection instead of one each.
//!
//! Rounds run in a task of their own, never inside a caller's future: a caller that goes
//! away (its client hung up) cannot strand the others waiting on its round.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Reads the values of a round's keys (distinct, sorted); a key with no value is absent.
pub type ReadMany<V> = Arc<
    dyn Fn(Vec<String>) -> Pin<Box<dyn Future<Output = Result<HashMap<String, V>, sqlx::Error>> + Send>> + Send + Sync,
>;

/// Batches concurrent reads by key; cheap to clone.
pub struct ReadBatch<V> {
    shared: Arc<Shared<V>>,
}

impl<V> Clone for ReadBatch<V> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<V> std::fmt::Debug for ReadBatch<V> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ReadBatch").field("max_keys", &self.shared.max_keys).finish_non_exhaustive()
    }
}

impl<V: Clone + Send + 'static> ReadBatch<V> {
    /// At most `max_rounds` rounds at once, each of at most `max_keys` keys; beyond
    /// `max_waiting` callers waiting, a caller is read on its own (so the queue has a bound,
    /// and overload degrades to one statement a caller).
    pub fn new(max_rounds: usize, max_keys: usize, max_waiting: usize, read_many: ReadMany<V>) -> Self {
        let state = Mutex::new(State { waiting: Vec::new(), rounds: 0 });
        let (max_rounds, max_keys) = (max_rounds.max(1), max_keys.max(1));
        Self { shared: Arc::new(Shared { read_many, max_rounds, max_keys, max_waiting, state }) }
    }

    /// The value of `key`, read in the next round.
    pub async fn read(&self, key: &str) -> Result<Option<V>, sqlx::Error> {
        let (sender, receiver) = oneshot::channel();
        let queued = {
            let mut state = self.shared.lock();
            match state.waiting.len() < self.shared.max_waiting {
                true => {
                    state.waiting.push((key.to_string(), sender));
                    let start = state.rounds < self.shared.max_rounds;
                    state.rounds += usize::from(start);
                    Some(start)
                }
                false => None,
            }
        };
        let Some(start_rounds) = queued else {
            let mut found = (self.shared.read_many)(vec![key.to_string()]).await?;
            return Ok(found.remove(key));
        };
        if start_rounds {
            tokio::spawn(Arc::clone(&self.shared).rounds());
        }
        match receiver.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Failed::Unavailable)) => Err(sqlx::Error::PoolTimedOut),
            Ok(Err(Failed::Other(why))) => Err(sqlx::Error::Protocol(why)),
            Err(_) => Err(sqlx::Error::Protocol("a batched read ended without an answer".into())),
        }
    }
}

struct Shared<V> {
    read_many: ReadMany<V>,
    max_rounds: usize,
    max_keys: usize,
    max_waiting: usize,
    state: Mutex<State<V>>,
}

struct State<V> {
    waiting: Vec<(String, oneshot::Sender<Answer<V>>)>,
    /// Rounds tasks running; each counts itself out when nobody is left waiting.
    rounds: usize,
}

type Answer<V> = Result<Option<V>, Failed>;

/// A round's failure, for each of its callers (`sqlx::Error` is not `Clone`): whether the
/// database was unavailable (a 503 to the client) or failed otherwise (a 500).
#[derive(Debug, Clone)]
enum Failed {
    Unavailable,
    Other(String),
}

impl<V: Clone + Send + 'static> Shared<V> {
    fn lock(&self) -> MutexGuard<'_, State<V>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn rounds(self: Arc<Self>) {
        let _unstick = Unstick(&self);
        loop {
            let round: Vec<(String, oneshot::Sender<Answer<V>>)> = {
                let mut state = self.lock();
                if state.waiting.is_empty() {
                    state.rounds -= 1;
                    return;
                }
                let count = state.waiting.len().min(self.max_keys);
                state.waiting.drain(..count).collect()
            };
            let mut keys: Vec<String> = round.iter().map(|(key, _)| key.clone()).collect();
            keys.sort_unstable();
            keys.dedup();
            let answer = (self.read_many)(keys).await.map_err(|error| match crate::is_unavailable(&error) {
                true => Failed::Unavailable,
                false => Failed::Other(format!("a batched read failed: {error}")),
            });
            for (key, sender) in round {
                // A caller that has gone away no longer listens; nothing to do for it.
                let _ = sender.send(answer.as_ref().map(|found| found.get(&key).cloned()).map_err(Clone::clone));
            }
        }
    }
}

/// Should a round panic, counts its task out so that callers can start rounds again; the
/// callers of its round get an error (their senders are dropped) instead of waiting for
/// ever, and those still waiting are read by the other rounds or the next one started.
struct Unstick<'a, V>(&'a Shared<V>);

impl<V> Drop for Unstick<'_, V> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = self.0.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            state.rounds = state.rounds.saturating_sub(1);
            if state.rounds == 0 {
                state.waiting.clear();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Semaphore;

    /// A batch over a reader that answers `key` → its length (nothing for keys starting
    /// "unknown"), records each round's keys, and holds its first `gated` rounds until the
    /// test opens the gate.
    struct Rig {
        batch: ReadBatch<usize>,
        rounds: Arc<Mutex<Vec<Vec<String>>>>,
        gate: Arc<Semaphore>,
    }

    type Reading = tokio::task::JoinHandle<Result<Option<usize>, sqlx::Error>>;

    impl Rig {
        fn new(max_rounds: usize, max_keys: usize, max_waiting: usize, gated: usize) -> Self {
            let rounds: Arc<Mutex<Vec<Vec<String>>>> = Arc::new(Mutex::new(Vec::new()));
            let gate = Arc::new(Semaphore::new(0));
            let (seen, held_at) = (Arc::clone(&rounds), Arc::clone(&gate));
            let read_many: ReadMany<usize> = Arc::new(move |keys: Vec<String>| {
                let (seen, held_at) = (Arc::clone(&seen), Arc::clone(&held_at));
                Box::pin(async move {
                    let held = {
                        let mut seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                        seen.push(keys.clone());
                        seen.len() <= gated
                    };
                    if held {
                        held_at.acquire().await.expect("the gate stays open").forget();
                    }
                    Ok(keys
                        .into_iter()
                        .filter(|key| !key.starts_with("unknown"))
                        .map(|key| (key.clone(), key.len()))
                        .collect())
                })
            });
            Self { batch: ReadBatch::new(max_rounds, max_keys, max_waiting, read_many), rounds, gate }
        }

        fn spawn(&self, key: &str) -> Reading {
            let (batch, key) = (self.batch.clone(), key.to_string());
            tokio::spawn(async move { batch.read(&key).await })
        }

        async fn until_rounds(&self, count: usize) {
            while self.rounds.lock().unwrap().len() < count {
                tokio::task::yield_now().await;
            }
        }

        async fn until_waiting(&self, count: usize) {
            while self.batch.shared.lock().waiting.len() < count {
                tokio::task::yield_now().await;
            }
        }

        fn sizes(&self) -> Vec<usize> {
            self.rounds.lock().unwrap().iter().map(Vec::len).collect()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_arriving_during_a_round_are_read_together_in_the_next() {
        let rig = Rig::new(1, 1000, 1000, 1);
        let first = rig.spawn("a");
        rig.until_rounds(1).await;
        // The first round is in flight: these forty wait, and are read in one round.
        let keys: Vec<String> =
            (0..40).map(|n| if n % 10 == 9 { format!("unknown{n}") } else { "k".repeat(n + 1) }).collect();
        let waiting: Vec<Reading> = keys.iter().map(|key| rig.spawn(key)).collect();
        let duplicate = rig.spawn("kk");
        rig.until_waiting(41).await;
        rig.gate.add_permits(1);
        assert_eq!(first.await.unwrap().unwrap(), Some(1));
        for (key, handle) in keys.iter().zip(waiting) {
            let expected = (!key.starts_with("unknown")).then_some(key.len());
            assert_eq!(handle.await.unwrap().unwrap(), expected, "{key}");
        }
        assert_eq!(duplicate.await.unwrap().unwrap(), Some(2));
        assert_eq!(rig.sizes(), vec![1, 40], "the duplicate key is read once");
        assert_eq!(rig.rounds.lock().unwrap()[0], vec!["a".to_string()]);
        // And the batch is idle again: a later lone caller is read at once.
        assert_eq!(rig.batch.read("later").await.unwrap(), Some(5));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_takes_at_most_max_keys_and_a_full_queue_reads_alone() {
        let rig = Rig::new(1, 3, 5, 1);
        let first = rig.spawn("a");
        rig.until_rounds(1).await;
        let waiting: Vec<Reading> = (0..5).map(|n| rig.spawn(&format!("w{n}"))).collect();
        rig.until_waiting(5).await;
        // Five are waiting: a sixth caller does not queue, it is read on its own at once.
        assert_eq!(rig.batch.read("alone").await.unwrap(), Some(5));
        rig.gate.add_permits(1);
        assert_eq!(first.await.unwrap().unwrap(), Some(1));
        for handle in waiting {
            assert_eq!(handle.await.unwrap().unwrap(), Some(2));
        }
        assert_eq!(rig.sizes(), vec![1, 1, 3, 2], "the first, the lone one, then the five in rounds of three");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_are_read_at_once_while_a_round_is_free_and_wait_only_when_none_is() {
        let rig = Rig::new(2, 1000, 1000, 2);
        // One at a time: spawned together, the first round could take both keys.
        let first = rig.spawn("a");
        rig.until_rounds(1).await;
        let second = rig.spawn("bb");
        rig.until_rounds(2).await;
        let waiting: Vec<Reading> = (0..5).map(|n| rig.spawn(&format!("w{n}"))).collect();
        rig.until_waiting(5).await;
        rig.gate.add_permits(2);
        assert_eq!(first.await.unwrap().unwrap(), Some(1));
        assert_eq!(second.await.unwrap().unwrap(), Some(2));
        for handle in waiting {
            assert_eq!(handle.await.unwrap().unwrap(), Some(2));
        }
        let mut sizes = rig.sizes();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![1, 1, 5], "two lone rounds at once, then the five together");
        assert_eq!(rig.batch.shared.lock().rounds, 0, "every round counted itself out");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_round_fails_each_of_its_callers_and_the_next_round_runs() {
        let calls = Arc::new(AtomicUsize::new(0));
        let read_many: ReadMany<usize> = Arc::new({
            let calls = Arc::clone(&calls);
            move |keys: Vec<String>| {
                let call = calls.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    match call {
                        0 => Err(sqlx::Error::PoolTimedOut),
                        1 => Err(sqlx::Error::RowNotFound),
                        _ => Ok(keys.into_iter().map(|key| (key, 7)).collect()),
                    }
                })
            }
        });
        let batch = ReadBatch::new(1, 10, 10, read_many);
        assert!(matches!(batch.read("x").await, Err(sqlx::Error::PoolTimedOut)), "unavailable stays unavailable");
        assert!(matches!(batch.read("x").await, Err(sqlx::Error::Protocol(_))));
        assert_eq!(batch.read("x").await.unwrap(), Some(7));
    }
}
