//! The payment PIN: six digits that guard a user's payments once set.
//!
//! A PIN is parsed once, where it enters (the HTTP handlers), into a [`Pin`]; everything
//! below takes a `Pin`, never a string.
//!
//! Guesses are counted before they are judged. Checking a PIN costs an argon2 run, so a
//! burst of concurrent payments would otherwise all read "not locked" before any of them
//! finished its check, and a right guess could get through after more than five wrong
//! ones. Each check therefore first takes an attempt with one conditional update (`…
//! SET failed_attempts = failed_attempts + 1 WHERE failed_attempts < max AND locked_until
//! <= now`), which hands out at most `pin_attempts_max` attempts per lock window on both
//! engines, and only then verifies. A right answer gives the attempts back; the wrong
//! answer that took the last attempt locks payments. A guess that finds no attempt left is
//! refused as locked without being judged. An attempt taken by a node that then crashed
//! stays counted: it errs on the side of locking.
//!
//! Setting or replacing the PIN costs one or two argon2 runs, so it is rate-limited per
//! user (`PLAZA_PIN_CHANGES_PER_HOUR`, counted on each node).

use crate::service::{invalid, Wallet, WalletError};
use plaza_accounts::User;
use plaza_kernel::Timestamp;
use plaza_store::Row;

/// A payment PIN: exactly six ASCII digits, sent as a string so leading zeros survive.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    /// The one parser of PINs; the reason is for a 422 on the caller's field.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.len() != 6 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err("a PIN is exactly 6 digits, sent as a string");
        }
        Ok(Self(raw.to_string()))
    }

    /// Parses an optional PIN field of a request.
    pub fn parse_optional(raw: Option<&str>) -> Result<Option<Self>, &'static str> {
        raw.map(Self::parse).transpose()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(******)")
    }
}

/// How long the per-user limit on PIN changes counts.
pub(crate) const PIN_CHANGE_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// Users tracked by the PIN-change limiter before the oldest windows are dropped.
pub(crate) const PIN_CHANGE_USERS_MAX: usize = 100_000;

impl Wallet {
    /// Sets the payment PIN, or replaces it (then `current` must be the PIN in force).
    pub async fn set_pin(&self, me: &User, pin: &Pin, current: Option<&Pin>) -> Result<(), WalletError> {
        self.inner.pin_changes.check(&me.id).map_err(|retry_after| WalletError::RateLimited { retry_after })?;
        let existing: Option<String> = sqlx::query_scalar("SELECT pin_hash FROM wallet_pins WHERE user_id = $1")
            .bind(&me.id)
            .fetch_optional(self.inner.store.read())
            .await?;
        if existing.is_some() {
            match current {
                None => return Err(invalid("current_pin", "a PIN is set; send it as current_pin to replace it")),
                Some(current) => self.verify_pin(me, current).await?,
            }
        }
        let hash = self.inner.accounts.password_hasher().hash_for(&me.id, pin.expose()).await.map_err(hashing_error)?;
        sqlx::query(
            "INSERT INTO wallet_pins (user_id, pin_hash, failed_attempts, locked_until, updated_at) VALUES ($1, $2, 0, 0, $3)
             ON CONFLICT (user_id) DO UPDATE SET pin_hash = excluded.pin_hash, failed_attempts = 0,
                                                 updated_at = excluded.updated_at",
        )
        .bind(&me.id)
        .bind(hash)
        .bind(Timestamp::now().unix_millis())
        .execute(self.inner.store.write())
        .await?;
        Ok(())
    }

    /// Lets a payment by `me` go ahead: without a PIN set, always; with one, only when
    /// `pin` is right and payments are not locked. Other services call this before they
    /// move a user's money on the user's request.
    pub async fn authorize_payment(&self, me: &User, pin: Option<&Pin>) -> Result<(), WalletError> {
        let set: Option<i64> = sqlx::query_scalar("SELECT locked_until FROM wallet_pins WHERE user_id = $1")
            .bind(&me.id)
            .fetch_optional(self.inner.store.read())
            .await?;
        if set.is_none() {
            return Ok(());
        }
        let pin = pin.ok_or(WalletError::PinRequired)?;
        self.verify_pin(me, pin).await
    }

    /// Takes an attempt, then checks `pin` against the stored hash (see the module doc).
    async fn verify_pin(&self, me: &User, pin: &Pin) -> Result<(), WalletError> {
        let now = Timestamp::now();
        let Some((hash, attempt)) = self.take_pin_attempt(me, now).await? else {
            return self.refuse_unjudged(me, now).await;
        };
        let right = self
            .inner
            .accounts
            .password_hasher()
            .verify_for(&me.id, pin.expose(), &hash)
            .await
            .map_err(hashing_error)?;
        if right {
            sqlx::query("UPDATE wallet_pins SET failed_attempts = 0 WHERE user_id = $1 AND failed_attempts <> 0")
                .bind(&me.id)
                .execute(self.inner.store.write())
                .await?;
            return Ok(());
        }
        let max = self.inner.config.pin_attempts_max;
        if attempt < max {
            return Err(WalletError::WrongPin { attempts_left: max - attempt });
        }
        // The last attempt was wrong: lock, and count from zero once the lock is over.
        let until = now.plus(self.inner.config.pin_lock);
        sqlx::query("UPDATE wallet_pins SET locked_until = $2, failed_attempts = 0 WHERE user_id = $1")
            .bind(&me.id)
            .bind(until.unix_millis())
            .execute(self.inner.store.write())
            .await?;
        Err(WalletError::PinLocked { until })
    }

    /// Reserves one attempt atomically: the stored hash and the attempt's number (1 to
    /// `pin_attempts_max`), or `None` when payments are locked or every attempt of this
    /// window is taken.
    async fn take_pin_attempt(&self, me: &User, now: Timestamp) -> Result<Option<(String, i64)>, WalletError> {
        let row = sqlx::query(
            "UPDATE wallet_pins SET failed_attempts = failed_attempts + 1
             WHERE user_id = $1 AND failed_attempts < $2 AND locked_until <= $3
             RETURNING pin_hash, failed_attempts",
        )
        .bind(&me.id)
        .bind(self.inner.config.pin_attempts_max)
        .bind(now.unix_millis())
        .fetch_optional(self.inner.store.write())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((row.try_get("pin_hash")?, row.try_get("failed_attempts")?)))
    }

    /// The answer to a guess that found no attempt left: locked, until the lock in force
    /// or, while the last attempts are still being judged, until the lock they will set.
    async fn refuse_unjudged(&self, me: &User, now: Timestamp) -> Result<(), WalletError> {
        let locked_until: Option<i64> = sqlx::query_scalar("SELECT locked_until FROM wallet_pins WHERE user_id = $1")
            .bind(&me.id)
            .fetch_optional(self.inner.store.write())
            .await?;
        // PINs are never removed, so a missing row cannot happen after the caller saw one.
        let locked_until = locked_until.ok_or_else(|| WalletError::Invariant("the PIN row went away".into()))?;
        let until = if locked_until > now.unix_millis() {
            Timestamp::from_unix_millis(locked_until)
        } else {
            now.plus(self.inner.config.pin_lock)
        };
        Err(WalletError::PinLocked { until })
    }
}

/// PIN hashing queues behind sign-ins, two per user at a time; a full queue is a 429.
fn hashing_error(error: plaza_accounts::HashError) -> WalletError {
    match error {
        plaza_accounts::HashError::Busy { retry_after } => WalletError::RateLimited { retry_after },
        other => WalletError::Hashing(other.to_string()),
    }
}
