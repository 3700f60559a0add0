//! Password hashing with argon2id (OWASP's recommended minimum: 19 MiB, 2 passes, 1 lane).
//! Hashing is deliberately expensive, so it runs on the blocking pool and at most one hash
//! per CPU runs at once: a burst of logins queues instead of starving every other request.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// argon2id memory cost in KiB.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// argon2id passes over memory.
pub const ITERATIONS: u32 = 2;
/// argon2id lanes.
pub const PARALLELISM: u32 = 1;

#[derive(Debug, Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
    /// A hash of a random password, verified against when the username is unknown so that
    /// an unknown user costs the same time as a wrong password.
    decoy_hash: Arc<String>,
}

/// Work for the hashing threads.
type Job = Box<dyn FnOnce() + Send>;

/// Hashes waiting for a thread; past this, callers wait for room.
const QUEUE_MAX: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("the hashing threads are gone")]
    Stopped,
}

impl PasswordHasher {
    /// Starts one hashing thread per CPU. Dedicated threads (rather than the async
    /// runtime's blocking pool, which grows to hundreds of threads under a burst) keep
    /// the memory argon2 touches — 19 MiB per hash — to one allocation per thread.
    pub fn new() -> Result<Self, HashError> {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let (jobs, receiver) = mpsc::channel::<Job>(QUEUE_MAX);
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for index in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("plaza-argon2-{index}"))
                .spawn(move || loop {
                    let job = receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).blocking_recv();
                    match job {
                        Some(job) => job(),
                        None => return,
                    }
                })
                .map_err(|error| HashError::Hashing(error.to_string()))?;
        }
        let decoy_password = plaza_kernel::id::to_hex(&plaza_kernel::random_token_bytes::<16>());
        let decoy_hash = hash_now(&decoy_password)?;
        Ok(Self { jobs, decoy_hash: Arc::new(decoy_hash) })
    }

    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let password = password.to_string();
        self.run(move || hash_now(&password)).await?
    }

    /// Verifies `password` against `stored`, or against the decoy when there is no stored
    /// hash (and then always answers false).
    pub async fn verify(&self, password: &str, stored: Option<String>) -> Result<bool, HashError> {
        let password = password.to_string();
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.decoy_hash.as_ref().clone());
        let matches = self.run(move || verify_now(&password, &hash)).await??;
        Ok(known && matches)
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        self.jobs.send(job).await.map_err(|_| HashError::Stopped)?;
        answer.await.map_err(|_| HashError::Stopped)
    }
}

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params =
        Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).map_err(|e| HashError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_now(password: &str) -> Result<String, HashError> {
    let salt_bytes = plaza_kernel::random_token_bytes::<16>();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| HashError::Hashing(e.to_string()))?;
    let hash = argon2()?.hash_password(password.as_bytes(), &salt).map_err(|e| HashError::Hashing(e.to_string()))?;
    Ok(hash.to_string())
}

fn verify_now(password: &str, stored: &str) -> Result<bool, HashError> {
    let parsed = PasswordHash::new(stored).map_err(|e| HashError::Hashing(e.to_string()))?;
    // Verification uses the parameters recorded in the hash, so raising the costs later
    // keeps old hashes valid.
    Ok(argon2()?.verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::new().expect("hasher");
        let hash = hasher.hash("correct horse").await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher.verify("correct horse", Some(hash.clone())).await.expect("verify"));
        assert!(!hasher.verify("wrong horse", Some(hash)).await.expect("verify"));
        assert!(!hasher.verify("correct horse", None).await.expect("verify decoy"));
    }
}
