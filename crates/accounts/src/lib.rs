//! Plaza accounts: who a user is (users and their public profiles), how they prove it
//! (password login and session tokens) and whom they know (contacts and contact
//! requests) or follow (one-way public follows, `profiles.rs`). Other services learn the caller's identity through the [`CurrentUser`]
//! extractor and look users up through [`Accounts`]; none of them reads these tables.
//!
//! Security choices: passwords are hashed with argon2id with a bounded number of hashes
//! running at once (sign-in work ahead of PINs, both queues bounded); session tokens are 256-bit random values of which only a SHA-256
//! digest is stored; a session expires after 30 days of disuse; an unknown username and a
//! wrong password are indistinguishable (same status, same code, same work done); ending a
//! session closes its sockets on every node; roles are rows an operator grants.

mod migrations;
pub mod model;
mod password;
mod profiles;
pub mod routes;
mod service;
mod session_cache;
mod session_reads;
mod sessions;
mod throttle;

pub use migrations::MIGRATIONS;
pub use model::{Bio, ContactStatus, DisplayName, Password, Role, User, Username};
pub use password::{HashError, PasswordHasher};
pub use profiles::{FollowList, ProfileChange, FOLLOWING_IDS_MAX};
pub use routes::{router, CurrentUser, HeaderOrQueryUser, SocketCaller};
pub use service::{Accounts, AccountsConfig, AccountsError, Contact, Session, DEFAULT_SESSION_CACHE_TTL};
pub use sessions::{Authenticated, SessionId, SessionWatch};
