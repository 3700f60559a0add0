//! The shop's placed-orders hook: other services (live rooms' `live.sold`) hear of orders
//! from the path that placed them, instead of polling the orders table.

use crate::service::{Order, ShopHandle};
use std::sync::{Arc, RwLock};

/// A listener of placed orders ([`ShopHandle::on_orders_placed`]).
pub type OrdersPlaced = Arc<dyn Fn(&[Order]) + Send + Sync>;

#[derive(Default)]
pub(crate) struct PlacedHooks(RwLock<Vec<OrdersPlaced>>);

impl std::fmt::Debug for PlacedHooks {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PlacedHooks")
    }
}

impl ShopHandle {
    /// Calls `hook` with the orders placed through this node, after they committed (and,
    /// for flash orders on SQLite, once durable), from the path that placed them: it must
    /// return at once (hand the work to a task) and may miss orders of a node that
    /// crashed right after the commit, so it suits announcements, not bookkeeping.
    pub fn on_orders_placed(&self, hook: OrdersPlaced) {
        self.inner.placed_hooks.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()).push(hook);
    }

    pub(crate) fn tell_placed(&self, orders: &[Order]) {
        if orders.is_empty() {
            return;
        }
        let hooks = self.inner.placed_hooks.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        for hook in hooks {
            hook(orders);
        }
    }
}
