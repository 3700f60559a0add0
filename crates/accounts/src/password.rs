//! Password hashing with argon2id (OWASP's recommended minimum: 19 MiB, 2 passes, 1 lane).
//! Hashing is deliberately expensive, so it runs on the blocking pool and at most one hash
//! per CPU runs at once: a burst of logins queues instead of starving every other request.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// argon2id memory cost in KiB.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// argon2id passes over memory.
pub const ITERATIONS: u32 = 2;
/// argon2id lanes.
pub const PARALLELISM: u32 = 1;

#[derive(Debug, Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the username is unknown so that
    /// an unknown user costs the same time as a wrong password.
    decoy_hash: Arc<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("the hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl PasswordHasher {
    pub fn new() -> Result<Self, HashError> {
        let concurrent = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let decoy_password = plaza_kernel::id::to_hex(&plaza_kernel::random_token_bytes::<16>());
        let decoy_hash = hash_now(&decoy_password)?;
        Ok(Self { permits: Arc::new(Semaphore::new(concurrent)), decoy_hash: Arc::new(decoy_hash) })
    }

    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError::Hashing(e.to_string()))?;
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hash_now(&password)).await?
    }

    /// Verifies `password` against `stored`, or against the decoy when there is no stored
    /// hash (and then always answers false).
    pub async fn verify(&self, password: &str, stored: Option<String>) -> Result<bool, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError::Hashing(e.to_string()))?;
        let password = password.to_string();
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.decoy_hash.as_ref().clone());
        let matches = tokio::task::spawn_blocking(move || verify_now(&password, &hash)).await??;
        Ok(known && matches)
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
