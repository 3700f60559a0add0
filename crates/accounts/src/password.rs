//! Password hashing with argon2id (OWASP's recommended minimum: 19 MiB, 2 passes, 1 lane).
//!
//! Hashing is deliberately expensive, so it runs on dedicated threads, one per CPU, never
//! on the async runtime, and what waits for them is bounded:
//! - Two queues. Sign-in work (register, login, a password change) is always taken before
//!   other secrets (payment PINs), so one account's burst of PIN changes cannot make other
//!   people's logins wait behind it.
//! - Each queue holds at most `queue_max` jobs, and other secrets at most
//!   [`HASHES_PER_OWNER_MAX`] per owner: past that the caller gets [`HashError::Busy`]
//!   (a 429 with `Retry-After`) at once instead of a growing wait.
//! - Each thread owns one argon2 memory block array (19 MiB) and reuses it for every hash.
//!   Allocating it per hash let the allocator keep hundreds of megabytes after a burst
//!   (glibc raises its mmap threshold after the first free, so later 19 MiB blocks came
//!   from arenas it never returns).

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// argon2id memory cost in KiB.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// argon2id passes over memory.
pub const ITERATIONS: u32 = 2;
/// argon2id lanes.
pub const PARALLELISM: u32 = 1;
/// Jobs one queue holds by default.
pub const DEFAULT_QUEUE_MAX: usize = 64;
/// Non-sign-in hashes one owner (a user hashing PINs) may have waiting or running.
pub const HASHES_PER_OWNER_MAX: usize = 2;
/// The `Retry-After` suggested when a queue is full: roughly what a full queue takes to
/// drain on a small machine.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(2);
/// The length of the hash output stored in the PHC string.
const OUTPUT_LEN: usize = 32;

#[derive(Debug, Clone)]
pub struct PasswordHasher {
    queues: Arc<Queues>,
    /// A hash of a random password, verified against when the username is unknown so that
    /// an unknown user costs the same time as a wrong password.
    decoy_hash: Arc<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("the hashing threads are gone")]
    Stopped,
    #[error("too many hashes are waiting; retry after {retry_after:?}")]
    Busy { retry_after: Duration },
}

/// Work for a hashing thread, given that thread's reusable argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Which queue a job goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    SignIn,
    Other,
}

#[derive(Debug)]
struct Queues {
    state: Mutex<QueueState>,
    ready: Condvar,
    queue_max: usize,
}

#[derive(Default)]
struct QueueState {
    sign_in: VecDeque<Job>,
    other: VecDeque<(String, Job)>,
    /// Jobs of each owner in `other`, waiting or running.
    per_owner: HashMap<String, usize>,
}

impl std::fmt::Debug for QueueState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueState")
            .field("sign_in", &self.sign_in.len())
            .field("other", &self.other.len())
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Starts one hashing thread per CPU with queues of [`DEFAULT_QUEUE_MAX`].
    pub fn new() -> Result<Self, HashError> {
        Self::with_queue_max(DEFAULT_QUEUE_MAX)
    }

    /// Starts one hashing thread per CPU; each queue holds at most `queue_max` jobs.
    pub fn with_queue_max(queue_max: usize) -> Result<Self, HashError> {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let queues = Arc::new(Queues {
            state: Mutex::new(QueueState::default()),
            ready: Condvar::new(),
            queue_max: queue_max.max(1),
        });
        for index in 0..threads {
            let queues = queues.clone();
            std::thread::Builder::new()
                .name(format!("plaza-argon2-{index}"))
                .spawn(move || queues.work())
                .map_err(|error| HashError::Hashing(error.to_string()))?;
        }
        let decoy_password = plaza_kernel::id::to_hex(&plaza_kernel::random_token_bytes::<16>());
        let decoy_hash = hash_now(&decoy_password, &mut Vec::new())?;
        Ok(Self { queues, decoy_hash: Arc::new(decoy_hash) })
    }

    /// Hashes a password (sign-in work: ahead of every other secret).
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let password = password.to_string();
        self.run(Class::SignIn, None, move |memory| hash_now(&password, memory)).await?
    }

    /// Verifies `password` against `stored`, or against the decoy when there is no stored
    /// hash (and then always answers false). Sign-in work.
    pub async fn verify(&self, password: &str, stored: Option<String>) -> Result<bool, HashError> {
        let password = password.to_string();
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.decoy_hash.as_ref().clone());
        let matches = self.run(Class::SignIn, None, move |memory| verify_now(&password, &hash, memory)).await??;
        Ok(known && matches)
    }

    /// Hashes another secret (a payment PIN) for `owner`, behind sign-in work, with at
    /// most [`HASHES_PER_OWNER_MAX`] of one owner's hashes at a time.
    pub async fn hash_for(&self, owner: &str, secret: &str) -> Result<String, HashError> {
        let secret = secret.to_string();
        self.run(Class::Other, Some(owner), move |memory| hash_now(&secret, memory)).await?
    }

    /// Verifies another secret of `owner` against its stored hash; see [`Self::hash_for`].
    pub async fn verify_for(&self, owner: &str, secret: &str, stored: &str) -> Result<bool, HashError> {
        let secret = secret.to_string();
        let stored = stored.to_string();
        self.run(Class::Other, Some(owner), move |memory| verify_now(&secret, &stored, memory)).await?
    }

    async fn run<T: Send + 'static>(
        &self,
        class: Class,
        owner: Option<&str>,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = reply.send(work(memory));
        });
        self.queues.push(class, owner, job)?;
        answer.await.map_err(|_| HashError::Stopped)
    }
}

impl Queues {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, class: Class, owner: Option<&str>, job: Job) -> Result<(), HashError> {
        let busy = HashError::Busy { retry_after: BUSY_RETRY_AFTER };
        let mut state = self.lock();
        match (class, owner) {
            (Class::SignIn, _) => {
                if state.sign_in.len() >= self.queue_max {
                    return Err(busy);
                }
                state.sign_in.push_back(job);
            }
            (Class::Other, owner) => {
                let owner = owner.unwrap_or_default().to_string();
                let owned = state.per_owner.get(&owner).copied().unwrap_or(0);
                if state.other.len() >= self.queue_max || owned >= HASHES_PER_OWNER_MAX {
                    return Err(busy);
                }
                state.per_owner.insert(owner.clone(), owned + 1);
                state.other.push_back((owner, job));
            }
        }
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// A hashing thread: the next job with this thread's memory; returns never (the
    /// threads live as long as the process).
    fn work(&self) {
        let mut memory: Vec<Block> = Vec::new();
        loop {
            let (owner, job) = {
                let mut state = self.lock();
                loop {
                    if let Some(next) = state.pop() {
                        break next;
                    }
                    state = self.ready.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            };
            job(&mut memory);
            if let Some(owner) = owner {
                self.lock().finished(&owner);
            }
        }
    }
}

impl QueueState {
    /// The next job: sign-in work first, then the others in arrival order.
    fn pop(&mut self) -> Option<(Option<String>, Job)> {
        if let Some(job) = self.sign_in.pop_front() {
            return Some((None, job));
        }
        self.other.pop_front().map(|(owner, job)| (Some(owner), job))
    }

    /// One of `owner`'s jobs is done.
    fn finished(&mut self, owner: &str) {
        match self.per_owner.get_mut(owner) {
            Some(count) if *count > 1 => *count -= 1,
            _ => {
                self.per_owner.remove(owner);
            }
        }
    }
}

fn params() -> Result<Params, HashError> {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(OUTPUT_LEN)).map_err(|e| HashError::Hashing(e.to_string()))
}

/// `memory` grown (never shrunk) to what `params` needs, so each thread allocates once.
fn blocks_for<'a>(memory: &'a mut Vec<Block>, params: &Params) -> &'a mut [Block] {
    let needed = params.block_count();
    if memory.len() < needed {
        memory.resize(needed, Block::default());
    }
    &mut memory[..needed]
}

fn hash_now(password: &str, memory: &mut Vec<Block>) -> Result<String, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Hashing(e.to_string());
    let salt_bytes = plaza_kernel::random_token_bytes::<16>();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| failed(&e))?;
    let params = params()?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let output = Output::init_with(OUTPUT_LEN, |out| {
        argon2
            .hash_password_into_with_memory(password.as_bytes(), &salt_bytes, out, blocks_for(memory, &params))
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|e| failed(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

fn verify_now(password: &str, stored: &str, memory: &mut Vec<Block>) -> Result<bool, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Hashing(e.to_string());
    let parsed = PasswordHash::new(stored).map_err(|e| failed(&e))?;
    // Verification uses the parameters recorded in the hash, so raising the costs later
    // keeps old hashes valid.
    let params = Params::try_from(&parsed).map_err(|e| failed(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| failed(&e))?;
    let version = match parsed.version {
        Some(version) => Version::try_from(version).map_err(|e| failed(&e))?,
        None => Version::default(),
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(HashError::Hashing("the stored hash has no salt or output".into()));
    };
    let mut salt_buffer = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buffer).map_err(|e| failed(&e))?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = Output::init_with(expected.len(), |out| {
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, blocks_for(memory, &params))
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|e| failed(&e))?;
    // `Output`'s equality is constant-time.
    Ok(computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::new().expect("hasher");
        let hash = hasher.hash("correct horse").await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher.verify("correct horse", Some(hash.clone())).await.expect("verify"));
        assert!(!hasher.verify("wrong horse", Some(hash.clone())).await.expect("verify"));
        assert!(!hasher.verify("correct horse", None).await.expect("verify decoy"));
        assert!(hasher.verify_for("ann", "correct horse", &hash).await.expect("verify for an owner"));
    }

    #[test]
    fn hashes_agree_with_the_argon2_crate_both_ways() {
        // Stored hashes made before memory reuse must still verify, and ours must verify
        // with the crate's own verifier.
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params().expect("params"));
        let salt = SaltString::encode_b64(b"sixteen byte salt").expect("salt");
        let theirs = argon2.hash_password(b"old password", &salt).expect("hash").to_string();
        let mut memory = Vec::new();
        assert!(verify_now("old password", &theirs, &mut memory).expect("verify"));
        assert!(!verify_now("other password", &theirs, &mut memory).expect("verify"));
        let ours = hash_now("new password", &mut memory).expect("hash");
        let parsed = PasswordHash::new(&ours).expect("parse");
        assert!(argon2.verify_password(b"new password", &parsed).is_ok());
        assert_eq!(memory.len(), MEMORY_KIB as usize, "one 1 KiB block per KiB, allocated once");
    }

    #[test]
    fn sign_in_goes_first_one_owner_gets_its_share_and_a_full_queue_is_busy() {
        // No threads: the queue alone, so nothing drains while it is examined.
        let queues = Queues { state: Mutex::new(QueueState::default()), ready: Condvar::new(), queue_max: 3 };
        let job = || -> Job { Box::new(|_| {}) };
        let busy = |result: Result<(), HashError>| matches!(result, Err(HashError::Busy { .. }));
        assert!(queues.push(Class::Other, Some("ann"), job()).is_ok());
        assert!(queues.push(Class::Other, Some("ann"), job()).is_ok());
        assert!(busy(queues.push(Class::Other, Some("ann"), job())), "ann has her share waiting");
        assert!(queues.push(Class::Other, Some("ben"), job()).is_ok());
        assert!(busy(queues.push(Class::Other, Some("cat"), job())), "the queue is full");
        for _ in 0..3 {
            assert!(queues.push(Class::SignIn, None, job()).is_ok(), "sign-in work has its own queue");
        }
        assert!(busy(queues.push(Class::SignIn, None, job())));
        let mut state = queues.lock();
        let order: Vec<Option<String>> = std::iter::from_fn(|| state.pop().map(|(owner, _)| owner)).collect();
        assert_eq!(order, [None, None, None, Some("ann".into()), Some("ann".into()), Some("ben".into())]);
        state.finished("ann");
        assert_eq!(state.per_owner.get("ann"), Some(&1));
        state.finished("ann");
        assert_eq!(state.per_owner.get("ann"), None, "an owner with nothing left is forgotten");
    }
}
