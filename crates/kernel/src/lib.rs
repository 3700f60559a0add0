//! Plaza's shared vocabulary, used by every service: opaque ids, money, UTC time and
//! pagination. The crate is pure — it never touches the network, the disk or a database —
//! so that every type here can be reasoned about (and tested) on its own.

pub mod id;
pub mod money;
pub mod page;
pub mod ratio;
pub mod text;
pub mod time;

pub use id::{new_id, random_token_bytes};
pub use money::{Currency, Money, MoneyError};
pub use page::{Cursor, Page, PageLimit};
pub use ratio::{BasisPoints, Percent};
pub use time::Timestamp;
