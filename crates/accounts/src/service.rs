//! The accounts service: everything accounts can do, as plain async functions over the
//! store. No HTTP types here; `routes` translates.

use crate::model::{ContactStatus, DisplayName, Password, Role, User, Username};
use crate::password::{HashError, PasswordHasher};
use crate::session_cache::SessionCache;
use crate::session_reads::{session_reads, StoredSession};
use crate::sessions::{Authenticated, Revocation, SessionId, SessionWatch, REVOCATION_CHANNEL_CAPACITY};
use crate::throttle::LoginThrottle;
use plaza_bus::Received;
use plaza_events::Events;
use plaza_kernel::{Cursor, Page, PageLimit, Timestamp};
use plaza_media::Media;
use plaza_store::{is_unique_violation, AnyRow, ReadBatch, Row, Store};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// A session ends after this long without use.
pub const SESSION_IDLE_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);
/// `last_used_at` is written at most this often per session, so that authenticating a
/// request is a read, not a write.
const SESSION_TOUCH_INTERVAL: Duration = Duration::from_secs(3600);
/// How long an authenticated session is served from memory by default.
pub const DEFAULT_SESSION_CACHE_TTL: Duration = Duration::from_secs(10);
/// The most sessions held in memory per node.
const SESSION_CACHE_ENTRIES_MAX: usize = 100_000;

/// The bus subject on which nodes tell each other which session (by token hash) ended.
const REVOKED_SESSIONS_SUBJECT: &str = "sessions.revoked";
/// The longest search query accepted.
pub const SEARCH_QUERY_MAX_CHARS: usize = 64;

/// Tunables of the accounts service.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// Login/register attempts allowed per client address per minute.
    pub auth_attempts_per_address_per_minute: u32,
    /// Login/register attempts allowed per username from one client address per minute.
    pub auth_attempts_per_username_per_minute: u32,
    /// Failed logins per username (from any address) in 15 minutes before each further
    /// attempt on it is slowed down.
    pub auth_failures_per_username: u32,
    /// How long an authenticated session may be served from memory (zero: never).
    pub session_cache_ttl: Duration,
    /// Password hashes that may wait for a hashing thread, per queue.
    pub hash_queue_max: usize,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            auth_attempts_per_address_per_minute: 30,
            auth_attempts_per_username_per_minute: 10,
            auth_failures_per_username: 100,
            session_cache_ttl: DEFAULT_SESSION_CACHE_TTL,
            hash_queue_max: crate::password::DEFAULT_QUEUE_MAX,
        }
    }
}

/// What can go wrong, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: &'static str },
    #[error("the username {0} is taken")]
    UsernameTaken(String),
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("missing, unknown or expired session token")]
    Unauthenticated,
    #[error("too many attempts; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("no such user")]
    UserNotFound,
    #[error("cannot add yourself as a contact")]
    CannotContactSelf,
    #[error("no contact or request with that user")]
    ContactNotFound,
    #[error("cannot follow yourself")]
    CannotFollowSelf,
    #[error("media: {0}")]
    Media(plaza_media::MediaError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("password hashing: {0}")]
    Hashing(HashError),
    #[error("bus: {0}")]
    Bus(String),
}

/// A session just created: the token is shown to the client once and never stored.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub user: User,
}

/// One side of a contact relationship.
#[derive(Debug, Clone)]
pub struct Contact {
    pub user: User,
    pub status: ContactStatus,
    pub updated_at: Timestamp,
}

/// The accounts service handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub(crate) inner: Arc<Inner>,
}

impl From<HashError> for AccountsError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy { retry_after } => Self::RateLimited { retry_after },
            other => Self::Hashing(other),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Store,
    hasher: PasswordHasher,
    throttle: LoginThrottle,
    pub(crate) sessions: SessionCache,
    /// The reads behind cache misses, batched (`session_reads.rs`).
    session_reads: ReadBatch<StoredSession>,
    pub(crate) media: Media,
    /// Ended sessions, for this node's sockets (see `sessions.rs`).
    revocations: broadcast::Sender<Revocation>,
    pub(crate) events: Events,
}

pub(crate) const USER_COLUMNS: &str =
    "u.id, u.username, u.display_name, u.avatar_url, u.created_at, u.bio, u.followers_count, u.following_count";

impl Accounts {
    pub fn new(store: Store, events: Events, media: Media, config: AccountsConfig) -> Result<Self, AccountsError> {
        Ok(Self {
            inner: Arc::new(Inner {
                session_reads: session_reads(store.clone()),
                store,
                hasher: PasswordHasher::with_queue_max(config.hash_queue_max)?,
                throttle: LoginThrottle::new(
                    config.auth_attempts_per_address_per_minute,
                    config.auth_attempts_per_username_per_minute,
                    config.auth_failures_per_username,
                ),
                sessions: SessionCache::new(config.session_cache_ttl, SESSION_CACHE_ENTRIES_MAX),
                revocations: broadcast::channel(REVOCATION_CHANNEL_CAPACITY).0,
                events,
                media,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The argon2 hashing threads, for other secrets hashed like passwords (payment PINs).
    pub fn password_hasher(&self) -> &PasswordHasher {
        &self.inner.hasher
    }

    /// Creates a user and a first session.
    pub async fn register(
        &self,
        client_address: &str,
        username: &str,
        password: &str,
        display_name: Option<&str>,
    ) -> Result<Session, AccountsError> {
        let username =
            Username::parse(username).map_err(|reason| AccountsError::InvalidField { field: "username", reason })?;
        self.admit(client_address, username.as_str()).await?;
        let password =
            Password::parse(password).map_err(|reason| AccountsError::InvalidField { field: "password", reason })?;
        let display_name = DisplayName::parse(display_name.unwrap_or(username.as_str()))
            .map_err(|reason| AccountsError::InvalidField { field: "display_name", reason })?;
        let password_hash = self.inner.hasher.hash(password.expose()).await?;
        let user = User {
            id: plaza_kernel::new_id(),
            username: username.as_str().to_string(),
            display_name: display_name.as_str().to_string(),
            avatar_url: None,
            created_at: Timestamp::now(),
            bio: String::new(),
            followers_count: 0,
            following_count: 0,
        };
        let (token, token_hash) = new_token();
        let mut transaction = self.inner.store.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, display_name, display_name_lower, avatar_url, password_hash, created_at)
             VALUES ($1, $2, $3, $4, NULL, $5, $6)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(user.display_name.to_lowercase())
        .bind(&password_hash)
        .bind(user.created_at.unix_millis())
        .execute(&mut *transaction)
        .await;
        match inserted {
            Err(error) if is_unique_violation(&error) => return Err(AccountsError::UsernameTaken(user.username)),
            other => other?,
        };
        insert_session(&mut transaction, &token_hash, &user.id).await?;
        transaction.commit().await?;
        tracing::info!(user_id = %user.id, "registered");
        Ok(Session { token, user })
    }

    /// Checks a username and password and opens a session.
    pub async fn login(&self, client_address: &str, username: &str, password: &str) -> Result<Session, AccountsError> {
        // A malformed username cannot exist; it still counts against the address and gets
        // the same answer as a wrong password.
        let normalized = username.to_ascii_lowercase();
        self.admit(client_address, &normalized).await?;
        let row = match Username::parse(&normalized) {
            Ok(valid) => {
                sqlx::query(&format!("SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.username = $1"))
                    .bind(valid.as_str())
                    .fetch_optional(self.inner.store.read())
                    .await?
            }
            Err(_) => None,
        };
        let stored_hash = row.as_ref().map(|row| row.try_get::<String, _>("password_hash")).transpose()?;
        let verified = self.inner.hasher.verify(password, stored_hash).await?;
        let Some(row) = row.filter(|_| verified) else {
            self.inner.throttle.failed(&normalized);
            return Err(AccountsError::InvalidCredentials);
        };
        let user = user_from_row(&row)?;
        let (token, token_hash) = new_token();
        let mut transaction = self.inner.store.begin().await?;
        insert_session(&mut transaction, &token_hash, &user.id).await?;
        transaction.commit().await?;
        Ok(Session { token, user })
    }

    /// Who a bearer token belongs to, with their roles, if the session is live.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, AccountsError> {
        let token_hash = hash_token(token).ok_or(AccountsError::Unauthenticated)?;
        if let Some(caller) = self.inner.sessions.get(&token_hash) {
            return Ok(caller);
        }
        let stored = self.inner.session_reads.read(&token_hash).await?.ok_or(AccountsError::Unauthenticated)?;
        let last_used = Timestamp::from_unix_millis(stored.last_used_at);
        let now = Timestamp::now();
        if last_used.plus(SESSION_IDLE_EXPIRY) <= now {
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                .bind(&token_hash)
                .execute(self.inner.store.write())
                .await?;
            return Err(AccountsError::Unauthenticated);
        }
        if last_used.plus(SESSION_TOUCH_INTERVAL) <= now {
            sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE token_hash = $2 AND last_used_at < $1")
                .bind(now.unix_millis())
                .bind(&token_hash)
                .execute(self.inner.store.write())
                .await?;
        }
        let caller = Authenticated { user: stored.user, is_admin: stored.is_admin, session: SessionId(token_hash) };
        self.inner.sessions.put(&caller.session.0, &caller);
        Ok(caller)
    }

    /// Revokes the session of `token`, on every node: the others drop it from their
    /// session caches and close its sockets when they hear of it on the bus (and would
    /// anyway within the cache's time to live, should the notice be lost).
    pub async fn logout(&self, token: &str) -> Result<(), AccountsError> {
        let token_hash = hash_token(token).ok_or(AccountsError::Unauthenticated)?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(&token_hash)
            .execute(self.inner.store.write())
            .await?;
        self.announce(Revocation::Session(SessionId(token_hash)));
        Ok(())
    }

    /// Revokes every session of `user` on every node, the caller's too.
    pub async fn logout_everywhere(&self, user: &User) -> Result<(), AccountsError> {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(&user.id).execute(self.inner.store.write()).await?;
        self.announce(Revocation::User { user_id: user.id.clone(), except: None });
        Ok(())
    }

    /// Replaces the caller's password after checking the current one, and ends every other
    /// session of theirs (the one asking stays signed in).
    pub async fn change_password(
        &self,
        client_address: &str,
        caller: &Authenticated,
        current_password: &str,
        new_password: &str,
    ) -> Result<(), AccountsError> {
        self.admit(client_address, &caller.user.username).await?;
        let new_password = Password::parse(new_password)
            .map_err(|reason| AccountsError::InvalidField { field: "new_password", reason })?;
        let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(&caller.user.id)
            .fetch_one(self.inner.store.read())
            .await?;
        if !self.inner.hasher.verify(current_password, Some(stored)).await? {
            self.inner.throttle.failed(&caller.user.username);
            return Err(AccountsError::InvalidField {
                field: "current_password",
                reason: "the current password is wrong",
            });
        }
        let new_hash = self.inner.hasher.hash(new_password.expose()).await?;
        let mut transaction = self.inner.store.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(&new_hash)
            .bind(&caller.user.id)
            .execute(&mut *transaction)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(&caller.user.id)
            .bind(caller.session.as_str())
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        self.announce(Revocation::User { user_id: caller.user.id.clone(), except: Some(caller.session.clone()) });
        tracing::info!(user_id = %caller.user.id, "password changed; other sessions ended");
        Ok(())
    }

    /// Applies an ended session here at once and tells the other nodes.
    fn announce(&self, revocation: Revocation) {
        self.forget(&revocation);
        self.inner.events.bus().publish(REVOKED_SESSIONS_SUBJECT, revocation.encode());
    }

    /// Evicts what `revocation` names from this node's cache and tells this node's sockets.
    fn forget(&self, revocation: &Revocation) {
        match revocation {
            Revocation::Session(session) => self.inner.sessions.remove(session.as_str()),
            Revocation::User { user_id, except } => {
                self.inner.sessions.remove_user(user_id, except.as_ref().map(SessionId::as_str))
            }
            Revocation::Unknown => self.inner.sessions.clear(),
        }
        // No receiver (no socket open) is not an error.
        let _ = self.inner.revocations.send(revocation.clone());
    }

    /// Something that resolves once `caller`'s session has ended, on this node or any
    /// other: the real-time gateway closes the socket then. It checks the database once
    /// after subscribing, so a session revoked just before cannot slip through.
    pub async fn watch_session(&self, caller: &Authenticated) -> SessionWatch {
        let mut watch = SessionWatch {
            accounts: self.clone(),
            session: caller.session.clone(),
            user_id: caller.user.id.clone(),
            notices: self.inner.revocations.subscribe(),
        };
        if let Ok(false) = self.session_is_live(&caller.session).await {
            // Make `ended` resolve at once: a notice nobody else needs.
            watch.notices = {
                let (sender, receiver) = broadcast::channel(1);
                let _ = sender.send(Revocation::Session(caller.session.clone()));
                receiver
            };
        }
        watch
    }

    /// Whether the session still exists in the database (expiry is judged by
    /// `authenticate`, on the next request).
    pub(crate) async fn session_is_live(&self, session: &SessionId) -> Result<bool, AccountsError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT last_used_at FROM sessions WHERE token_hash = $1")
            .bind(session.as_str())
            .fetch_optional(self.inner.store.read())
            .await?;
        Ok(found.is_some_and(|last_used| {
            Timestamp::from_unix_millis(last_used).plus(SESSION_IDLE_EXPIRY) > Timestamp::now()
        }))
    }

    /// Subscribes to session revocations from other nodes and returns the task that
    /// applies them to this node's session cache and sockets; run it for the life of the
    /// server. Subscribing before returning means no revocation after start-up is missed.
    pub async fn follow_revocations(
        &self,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, AccountsError> {
        let mut revocations = self
            .inner
            .events
            .bus()
            .subscribe(REVOKED_SESSIONS_SUBJECT)
            .await
            .map_err(|error| AccountsError::Bus(error.to_string()))?;
        let accounts = self.clone();
        Ok(async move {
            loop {
                match revocations.recv().await {
                    Received::Notification(notice) => accounts.forget(&Revocation::decode(&notice.payload)),
                    // Some revocations may be lost: forget every cached session, and every
                    // socket checks its own in the database.
                    Received::Lagged(_) => accounts.forget(&Revocation::Unknown),
                    Received::Closed => break,
                }
            }
        })
    }

    /// Grants `role` to the account named `username`; `false` if it already had it.
    pub async fn grant_role(&self, username: &str, role: Role) -> Result<bool, AccountsError> {
        let user = self.user_by_username(username).await?;
        let granted = sqlx::query(
            "INSERT INTO user_roles (user_id, role, granted_at) VALUES ($1, $2, $3) ON CONFLICT (user_id, role) DO NOTHING",
        )
        .bind(&user.id)
        .bind(role.as_str())
        .bind(Timestamp::now().unix_millis())
        .execute(self.inner.store.write())
        .await?;
        self.inner.sessions.remove_user(&user.id, None);
        Ok(granted.rows_affected() > 0)
    }

    /// Takes `role` from the account named `username`; `false` if it did not have it.
    pub async fn revoke_role(&self, username: &str, role: Role) -> Result<bool, AccountsError> {
        let user = self.user_by_username(username).await?;
        let revoked = sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
            .bind(&user.id)
            .bind(role.as_str())
            .execute(self.inner.store.write())
            .await?;
        self.inner.sessions.remove_user(&user.id, None);
        Ok(revoked.rows_affected() > 0)
    }

    /// Grants the admin role to each named account that exists now and returns the names
    /// that have no account (they are skipped: a later registration of such a name must
    /// not make a stranger an admin).
    pub async fn grant_admins_that_exist(&self, usernames: &[String]) -> Result<Vec<String>, AccountsError> {
        let mut skipped = Vec::new();
        for username in usernames {
            match self.grant_role(username, Role::Admin).await {
                Ok(_) => {}
                Err(AccountsError::UserNotFound) => skipped.push(username.clone()),
                Err(error) => return Err(error),
            }
        }
        Ok(skipped)
    }

    pub async fn user(&self, id: &str) -> Result<User, AccountsError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"))
            .bind(id)
            .fetch_optional(self.inner.store.read())
            .await?
            .ok_or(AccountsError::UserNotFound)?;
        Ok(user_from_row(&row)?)
    }

    /// The users with these ids that exist, in no particular order (missing ids are
    /// simply absent from the result).
    pub async fn users(&self, ids: &[String]) -> Result<Vec<User>, AccountsError> {
        let mut users = Vec::with_capacity(ids.len());
        // Bounded statements: at most 500 parameters per query.
        for chunk in ids.chunks(500) {
            let placeholders = plaza_store::numbered_parameters(1, chunk.len());
            let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id IN ({})", placeholders);
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(self.inner.store.read()).await? {
                users.push(user_from_row(&row)?);
            }
        }
        Ok(users)
    }

    pub async fn user_by_username(&self, username: &str) -> Result<User, AccountsError> {
        let username = Username::parse(username).map_err(|_| AccountsError::UserNotFound)?;
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.username = $1"))
            .bind(username.as_str())
            .fetch_optional(self.inner.store.read())
            .await?
            .ok_or(AccountsError::UserNotFound)?;
        Ok(user_from_row(&row)?)
    }

    /// Users whose username or display name starts with `query` (case-insensitive),
    /// ordered by username.
    pub async fn search(
        &self,
        query: &str,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<User>, AccountsError> {
        let query = query.trim().to_lowercase();
        if query.is_empty() || query.chars().count() > SEARCH_QUERY_MAX_CHARS {
            return Err(AccountsError::InvalidField { field: "q", reason: "the search query has 1 to 64 characters" });
        }
        let after = decode_cursor(cursor)?;
        let pattern = format!("{}%", escape_like(&query));
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u
             WHERE (u.username LIKE $1 ESCAPE '\\' OR u.display_name_lower LIKE $1 ESCAPE '\\') AND u.username > $2
             ORDER BY u.username LIMIT $3"
        ))
        .bind(&pattern)
        .bind(after.unwrap_or_default())
        .bind(limit.probe())
        .fetch_all(self.inner.store.read())
        .await?;
        let users = rows.iter().map(user_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_probe(users, limit, |user| user.username.clone()))
    }

    /// Sends a contact request to `other_id`, or accepts theirs if they already asked.
    /// Returns the relationship as seen by `me` and whether a new request was created.
    pub async fn request_contact(&self, me: &User, other_id: &str) -> Result<(Contact, bool), AccountsError> {
        if me.id == other_id {
            return Err(AccountsError::CannotContactSelf);
        }
        let other = self.user(other_id).await?;
        // On PostgreSQL two people asking each other at the same instant both insert; the
        // loser's unique violation means the other request now exists, so try once more
        // and accept it.
        for _attempt in 0..2 {
            match self.try_request_contact(me, &other).await {
                Err(AccountsError::Database(error)) if is_unique_violation(&error) => continue,
                outcome => return outcome,
            }
        }
        self.try_request_contact(me, &other).await
    }

    async fn try_request_contact(&self, me: &User, other: &User) -> Result<(Contact, bool), AccountsError> {
        let now = Timestamp::now();
        let mut transaction = self.inner.store.begin().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT status FROM contacts WHERE user_id = $1 AND contact_id = $2")
                .bind(&me.id)
                .bind(&other.id)
                .fetch_optional(&mut *transaction)
                .await?;
        let (status, created) = match existing.as_deref().and_then(ContactStatus::parse) {
            Some(ContactStatus::Incoming) => {
                // They asked first: this is an acceptance.
                sqlx::query(
                    "UPDATE contacts SET status = 'accepted', updated_at = $1
                     WHERE (user_id = $2 AND contact_id = $3) OR (user_id = $3 AND contact_id = $2)",
                )
                .bind(now.unix_millis())
                .bind(&me.id)
                .bind(&other.id)
                .execute(&mut *transaction)
                .await?;
                (ContactStatus::Accepted, false)
            }
            Some(status) => (status, false),
            None => {
                let insert = "INSERT INTO contacts (user_id, contact_id, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)";
                let mut rows = [(&me.id, &other.id, "outgoing"), (&other.id, &me.id, "incoming")];
                // Both rows of a pair are always inserted in the same (key) order, so two
                // people asking each other at once queue on the first row instead of
                // deadlocking; the loser then sees a unique violation and retries.
                rows.sort_by_key(|(owner, _, _)| owner.as_str());
                for (owner, peer, status) in rows {
                    sqlx::query(insert)
                        .bind(owner)
                        .bind(peer)
                        .bind(status)
                        .bind(now.unix_millis())
                        .execute(&mut *transaction)
                        .await?;
                }
                (ContactStatus::Outgoing, true)
            }
        };
        // The other side learns in real time: a new request, or that theirs was accepted.
        let event = match (status, created) {
            (ContactStatus::Outgoing, true) => Some("contact.request"),
            (ContactStatus::Accepted, false) if existing.as_deref() == Some("incoming") => Some("contact.accepted"),
            _ => None,
        };
        let appended = match event {
            Some(event_type) => {
                let data = contact_event(me, if event_type == "contact.request" { "incoming" } else { "accepted" });
                Some(
                    self.inner
                        .events
                        .append(&mut transaction, std::slice::from_ref(&other.id), event_type, &data)
                        .await?,
                )
            }
            None => None,
        };
        transaction.commit().await?;
        if let Some(appended) = appended {
            self.inner.events.publish(appended);
        }
        Ok((Contact { user: other.clone(), status, updated_at: now }, created))
    }

    /// Accepts the pending request `other_id` sent to `me`.
    pub async fn accept_contact(&self, me: &User, other_id: &str) -> Result<Contact, AccountsError> {
        let now = Timestamp::now();
        let mut transaction = self.inner.store.begin().await?;
        let updated = sqlx::query(
            "UPDATE contacts SET status = 'accepted', updated_at = $1 WHERE user_id = $2 AND contact_id = $3 AND status = 'incoming'",
        )
        .bind(now.unix_millis())
        .bind(&me.id)
        .bind(other_id)
        .execute(&mut *transaction)
        .await?;
        if updated.rows_affected() == 0 {
            let already: Option<String> = sqlx::query_scalar(
                "SELECT status FROM contacts WHERE user_id = $1 AND contact_id = $2 AND status = 'accepted'",
            )
            .bind(&me.id)
            .bind(other_id)
            .fetch_optional(&mut *transaction)
            .await?;
            if already.is_none() {
                return Err(AccountsError::ContactNotFound);
            }
        } else {
            sqlx::query(
                "UPDATE contacts SET status = 'accepted', updated_at = $1 WHERE user_id = $2 AND contact_id = $3",
            )
            .bind(now.unix_millis())
            .bind(other_id)
            .bind(&me.id)
            .execute(&mut *transaction)
            .await?;
        }
        let appended = if updated.rows_affected() > 0 {
            let data = contact_event(me, "accepted");
            Some(self.inner.events.append(&mut transaction, &[other_id.to_string()], "contact.accepted", &data).await?)
        } else {
            None
        };
        transaction.commit().await?;
        if let Some(appended) = appended {
            self.inner.events.publish(appended);
        }
        let other = self.user(other_id).await?;
        Ok(Contact { user: other, status: ContactStatus::Accepted, updated_at: now })
    }

    /// Removes a contact, declines their request, or withdraws mine: both sides forget it.
    pub async fn remove_contact(&self, me: &User, other_id: &str) -> Result<(), AccountsError> {
        let removed = sqlx::query(
            "DELETE FROM contacts WHERE (user_id = $1 AND contact_id = $2) OR (user_id = $2 AND contact_id = $1)",
        )
        .bind(&me.id)
        .bind(other_id)
        .execute(self.inner.store.write())
        .await?;
        if removed.rows_affected() == 0 {
            return Err(AccountsError::ContactNotFound);
        }
        Ok(())
    }

    /// Which of `ids` are accepted contacts of `me`.
    pub async fn contacts_among(
        &self,
        me: &User,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>, AccountsError> {
        let mut found = std::collections::HashSet::new();
        for chunk in ids.chunks(500) {
            let placeholders = plaza_store::numbered_parameters(2, chunk.len());
            let sql = format!(
                "SELECT contact_id FROM contacts WHERE user_id = $1 AND status = 'accepted' AND contact_id IN ({})",
                placeholders
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql).bind(&me.id);
            for id in chunk {
                query = query.bind(id);
            }
            found.extend(query.fetch_all(self.inner.store.read()).await?);
        }
        Ok(found)
    }

    /// My contacts and pending requests, ordered by username, optionally of one status.
    pub async fn contacts(
        &self,
        me: &User,
        status: Option<ContactStatus>,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<Contact>, AccountsError> {
        let after = decode_cursor(cursor)?;
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, c.status, c.updated_at AS contact_updated_at
             FROM contacts c JOIN users u ON u.id = c.contact_id
             WHERE c.user_id = $1 AND ($2 = '' OR c.status = $2) AND u.username > $3
             ORDER BY u.username LIMIT $4"
        ))
        .bind(&me.id)
        .bind(status.map(ContactStatus::as_str).unwrap_or(""))
        .bind(after.unwrap_or_default())
        .bind(limit.probe())
        .fetch_all(self.inner.store.read())
        .await?;
        let contacts = rows
            .iter()
            .map(|row| {
                let status_text: String = row.try_get("status")?;
                Ok(Contact {
                    user: user_from_row(row)?,
                    status: ContactStatus::parse(&status_text)
                        .ok_or_else(|| sqlx::Error::Decode(format!("unknown contact status {status_text}").into()))?,
                    updated_at: Timestamp::from_unix_millis(row.try_get("contact_updated_at")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Page::from_probe(contacts, limit, |contact| contact.user.username.clone()))
    }

    /// Counts a sign-in attempt against the throttle and waits out its delay, if any.
    async fn admit(&self, client_address: &str, username: &str) -> Result<(), AccountsError> {
        let delay = self
            .inner
            .throttle
            .admit(client_address, username)
            .map_err(|retry_after| AccountsError::RateLimited { retry_after })?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }
}

/// The data of a `contact.request` / `contact.accepted` event: who, and where it stands
/// from the recipient's side.
fn contact_event(from: &User, status: &str) -> serde_json::Value {
    serde_json::json!({
        "user": {
            "id": from.id, "username": from.username, "display_name": from.display_name,
            "avatar_url": from.avatar_url, "created_at": from.created_at.to_rfc3339(),
        },
        "status": status,
    })
}

async fn insert_session(
    transaction: &mut plaza_store::Transaction<'static, plaza_store::Any>,
    token_hash: &str,
    user_id: &str,
) -> Result<(), sqlx::Error> {
    let now = Timestamp::now().unix_millis();
    sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, last_used_at) VALUES ($1, $2, $3, $3)")
        .bind(token_hash)
        .bind(user_id)
        .bind(now)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// A new token (64 hex characters, 256 random bits) and the digest that is stored.
fn new_token() -> (String, String) {
    let token = plaza_kernel::id::to_hex(&plaza_kernel::random_token_bytes::<32>());
    let digest = plaza_kernel::id::to_hex(&Sha256::digest(token.as_bytes()));
    (token, digest)
}

/// The stored digest of a presented token; `None` when it cannot be one of ours.
fn hash_token(token: &str) -> Option<String> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(plaza_kernel::id::to_hex(&Sha256::digest(token.to_ascii_lowercase().as_bytes())))
}

pub(crate) fn user_from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        avatar_url: row.try_get("avatar_url")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        bio: row.try_get("bio")?,
        followers_count: row.try_get("followers_count")?,
        following_count: row.try_get("following_count")?,
    })
}

fn decode_cursor(cursor: Option<&str>) -> Result<Option<String>, AccountsError> {
    match cursor {
        None | Some("") => Ok(None),
        Some(opaque) => Cursor::parse_position(opaque)
            .map(Some)
            .ok_or(AccountsError::InvalidField { field: "cursor", reason: "not a cursor this server issued" }),
    }
}

/// Escapes LIKE's wildcards so a search for `a_b` matches only `a_b…`.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_hex_and_only_their_digest_is_kept() {
        let (token, digest) = new_token();
        assert_eq!(token.len(), 64);
        assert_eq!(hash_token(&token).as_deref(), Some(digest.as_str()));
        assert_ne!(token, digest);
        assert_eq!(hash_token("short"), None);
        assert_eq!(hash_token(&"z".repeat(64)), None);
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("a_b%c\\"), "a\\_b\\%c\\\\");
    }
}
