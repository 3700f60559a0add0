//! Who a session belongs to, and how its end reaches everything that relies on it.
//!
//! A session is named by the SHA-256 of its token ([`SessionId`]); the token itself is
//! never stored. Ending sessions (logout, "log out everywhere", a password change) deletes
//! their rows first, then tells every node: locally through a broadcast channel, and to the
//! other nodes through the bus subject `sessions.revoked`, whose followers evict the
//! session cache and pass the notice on to their own broadcast. Long-lived holders of a
//! session — WebSockets — wait on [`SessionWatch::ended`], which resolves on a matching
//! notice, and which re-reads the database whenever notices may have been lost (a lagging
//! broadcast, a NATS reconnect), so a lost notice cannot keep a socket of a revoked
//! session open.

use crate::model::User;
use std::fmt;
use tokio::sync::broadcast;

/// The stored digest of a session token; safe to log and to compare, useless to present.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(pub(crate) String);

impl SessionId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The digest is not a secret, but a short prefix is all a log needs.
        write!(f, "SessionId({}…)", &self.0[..self.0.len().min(8)])
    }
}

/// The caller of an authenticated request: the user, their roles, and which session.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub is_admin: bool,
    pub session: SessionId,
}

/// Which sessions ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Revocation {
    /// One session (logout).
    Session(SessionId),
    /// Every session of a user, but perhaps the one that asked (a password change keeps
    /// its own session; "log out everywhere" keeps none).
    User { user_id: String, except: Option<SessionId> },
    /// Notices may have been lost: whoever holds a session checks it again.
    Unknown,
}

/// Bus payloads: a bare digest (what nodes have always sent for a logout), or
/// `user:<id>` / `user:<id>:<digest-kept>`.
const USER_PREFIX: &str = "user:";

impl Revocation {
    pub(crate) fn encode(&self) -> bytes::Bytes {
        let text = match self {
            Self::Session(session) => session.0.clone(),
            Self::User { user_id, except: None } => format!("{USER_PREFIX}{user_id}"),
            Self::User { user_id, except: Some(kept) } => format!("{USER_PREFIX}{user_id}:{}", kept.0),
            Self::Unknown => String::new(),
        };
        bytes::Bytes::from(text.into_bytes())
    }

    pub(crate) fn decode(payload: &[u8]) -> Self {
        let Ok(text) = std::str::from_utf8(payload) else { return Self::Unknown };
        match text.strip_prefix(USER_PREFIX) {
            Some(rest) => match rest.split_once(':') {
                Some((user_id, kept)) => {
                    Self::User { user_id: user_id.to_string(), except: Some(SessionId(kept.to_string())) }
                }
                None => Self::User { user_id: rest.to_string(), except: None },
            },
            None if !text.is_empty() => Self::Session(SessionId(text.to_string())),
            None => Self::Unknown,
        }
    }

    /// Whether this notice ends `session` of `user_id`; `None` when it cannot tell.
    pub(crate) fn ends(&self, session: &SessionId, user_id: &str) -> Option<bool> {
        match self {
            Self::Session(ended) => Some(ended == session),
            Self::User { user_id: ended_user, except } => {
                Some(ended_user == user_id && except.as_ref() != Some(session))
            }
            Self::Unknown => None,
        }
    }
}

/// Notices of ended sessions on this node; past this many unread, a watcher is told it
/// lagged and checks the database instead.
pub(crate) const REVOCATION_CHANNEL_CAPACITY: usize = 1024;

/// Resolves once a session has ended; see [`crate::Accounts::watch_session`].
pub struct SessionWatch {
    pub(crate) accounts: crate::Accounts,
    pub(crate) session: SessionId,
    pub(crate) user_id: String,
    pub(crate) notices: broadcast::Receiver<Revocation>,
}

impl SessionWatch {
    /// Waits until the session is revoked or expires. Database errors while re-checking
    /// count as "still live": a socket is not closed because the database blinked, and
    /// the next notice or lag checks again.
    pub async fn ended(&mut self) {
        loop {
            let notice = match self.notices.recv().await {
                Ok(notice) => notice,
                Err(broadcast::error::RecvError::Lagged(_)) => Revocation::Unknown,
                // The accounts service is gone (the server is stopping): never resolve,
                // the socket ends with the server.
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            };
            match notice.ends(&self.session, &self.user_id) {
                Some(true) => return,
                Some(false) => continue,
                None => {
                    if let Ok(false) = self.accounts.session_is_live(&self.session).await {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_through_the_bus_encoding() {
        let session = SessionId("ab".repeat(32));
        for notice in [
            Revocation::Session(session.clone()),
            Revocation::User { user_id: "01HUSER".into(), except: None },
            Revocation::User { user_id: "01HUSER".into(), except: Some(session.clone()) },
            Revocation::Unknown,
        ] {
            assert_eq!(Revocation::decode(&notice.encode()), notice);
        }
        assert_eq!(Revocation::decode(&[0xff, 0xfe]), Revocation::Unknown);
    }

    #[test]
    fn a_notice_ends_only_the_sessions_it_names() {
        let mine = SessionId("a".repeat(64));
        let other = SessionId("b".repeat(64));
        assert_eq!(Revocation::Session(mine.clone()).ends(&mine, "u1"), Some(true));
        assert_eq!(Revocation::Session(other.clone()).ends(&mine, "u1"), Some(false));
        let everywhere = Revocation::User { user_id: "u1".into(), except: None };
        assert_eq!(everywhere.ends(&mine, "u1"), Some(true));
        assert_eq!(everywhere.ends(&mine, "u2"), Some(false));
        let password_change = Revocation::User { user_id: "u1".into(), except: Some(mine.clone()) };
        assert_eq!(password_change.ends(&mine, "u1"), Some(false));
        assert_eq!(password_change.ends(&other, "u1"), Some(true));
        assert_eq!(Revocation::Unknown.ends(&mine, "u1"), None);
    }
}
