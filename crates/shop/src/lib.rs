//! Plaza shop: shops (one per user, its owner the merchant), products with SKUs and
//! photos, catalogue search in any language, and orders paid into escrow.
//!
//! The main design choice is **escrow through the wallet's payment intents, with stock
//! taken in the order's own transaction**. Placing an order first holds its total
//! (`Wallet::create_payment_intent`, keyed by the client's `Idempotency-Key`), then, in
//! one transaction, takes each SKU's stock with a conditional update (`stock >= quantity`,
//! in SKU-id order, so it never goes below zero and two orders never wait on each other in
//! a cycle) and inserts the order; if the stock is gone the hold is voided before the
//! buyer is told 409 `out_of_stock`. Each later change of an order is one conditional
//! update on its old status (the state machine is `OrderStatus::after`) in the transaction
//! that appends `order.updated` for buyer and seller; a final status records the money
//! still to move (`payment_status = 'held'`), the wallet call that follows is keyed by the
//! order, and the lease-holding job settles whatever a crash left in between, so money
//! moves exactly once. Search indexes for itself (`search.rs`) so that SQLite and
//! PostgreSQL give the same answers, Chinese included.

pub mod bench_support;
mod flash;
mod flash_batch;
mod groups;
mod jobs;
mod migrations;
pub mod model;
mod order_json;
mod orders;
mod placed;
mod reviews;
pub mod routes;
mod sale_routes;
pub mod search;
mod service;

pub use flash::{FlashSale, FlashSaleInput, FlashSaleTotals};
pub use groups::{GroupBuy, GroupBuyCards, GroupStatus, ProductCards, SharedCard};
pub use migrations::MIGRATIONS;
pub use model::{OrderAction, OrderStatus};
pub use orders::{ChangeDetails, OrderRole};
pub use placed::OrdersPlaced;
pub use routes::router;
pub use service::{
    Address, GroupChoice, Order, OrderItem, OrderLine, OrderRequest, Product, ProductChange, ProductInput, Shop,
    ShopConfig, ShopError, ShopHandle, Sku, SkuChange, SkuInput,
};
