//! Cards in chats: a message that shows an object of another service (a ride, a product,
//! a group buy, a video, a mini-app page). A client never writes a card's contents: it
//! names the object (`{type, id}`) and the service that owns that type renders the card
//! for the sender — or refuses, if the sender may not see the object — so nobody can post a
//! "ride completed" card for a ride that never was. Services register a [`CardSource`] for
//! their type when the server is wired; services that post cards themselves (a share
//! endpoint) use `Chat::post_in_transaction` as before.

use plaza_accounts::User;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

/// What rendering a card may answer.
pub type CardFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<Value>, String>> + Send + 'a>>;

/// Renders the cards of one type.
pub trait CardSource: Send + Sync {
    /// The card body (at least `type`, `id` and `title`) for `object_id` as `viewer` sees
    /// it; `None` when there is no such object or `viewer` may not see it. An `Err` is an
    /// internal failure, logged and answered as such.
    fn render<'a>(&'a self, viewer: &'a User, object_id: &'a str) -> CardFuture<'a>;
}

/// The registered sources, by card type.
#[derive(Default, Clone)]
pub(crate) struct CardSources {
    by_type: Arc<RwLock<HashMap<String, Arc<dyn CardSource>>>>,
}

impl std::fmt::Debug for CardSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let types: Vec<String> = self.by_type.read().map(|map| map.keys().cloned().collect()).unwrap_or_default();
        f.debug_struct("CardSources").field("types", &types).finish()
    }
}

impl CardSources {
    pub(crate) fn register(&self, card_type: &str, source: Arc<dyn CardSource>) {
        self.by_type.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(card_type.to_string(), source);
    }

    pub(crate) fn get(&self, card_type: &str) -> Option<Arc<dyn CardSource>> {
        self.by_type.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(card_type).cloned()
    }
}
