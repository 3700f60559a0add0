//! Benchmark support: the flash sale's own code without its group commit, for the naive
//! baseline of `plaza-bench shop`; nothing else should call it.
//!
//! The naive design the benchmark compares with is one transaction per order that locks
//! the stock row (`SELECT … FOR UPDATE`) and writes that order. Written as a few statements
//! of its own, that design writes fewer rows than a Plaza order does (no journal, no
//! payment intent, no events, no idempotency key) and so flatters itself. This is the same
//! design in Plaza's code: each order runs the batch's transaction alone
//! (`try_flash_batch` with one job), which on PostgreSQL locks the sale's row
//! (`FOR UPDATE OF f`) until it commits, and writes every row a batched order writes. The
//! ratio between the two paths is then the group commit's alone.

use crate::flash::FlashJob;
use crate::orders::{check_request, request_hash};
use crate::{Order, OrderRequest, ShopError, ShopHandle};
use plaza_accounts::User;
use plaza_wallet::model::IdempotencyKey;

/// Places one flash-sale order in a transaction of its own, bypassing the batching queue;
/// the order, or why the sale refused it. Orders that carry a PIN are not supported.
pub async fn place_flash_order_unbatched(
    shop: &ShopHandle,
    me: &User,
    request: OrderRequest,
    key: &IdempotencyKey,
) -> Result<Order, ShopError> {
    check_request(&request)?;
    let hash = request_hash(&request);
    let line = &request.lines[0];
    let job = FlashJob {
        buyer_id: me.id.clone(),
        sale_id: line.flash_sale_id.clone().unwrap_or_default(),
        sku_id: line.sku_id.clone(),
        quantity: line.quantity,
        address: request.address.to_json(),
        client_key: key.as_str().to_string(),
        hash,
        pin_verified: false,
    };
    let (mut answers, durable) = shop.try_flash_batch(std::slice::from_ref(&job)).await?;
    if let Some((wal, ticket)) = durable {
        wal.durable(ticket).await.map_err(|_| ShopError::Lost(plaza_store::GroupCommitError::Lost))?;
    }
    let (order, _, _) = answers.pop().ok_or_else(|| ShopError::Invariant("an unanswered order".into()))??;
    Ok(order)
}
