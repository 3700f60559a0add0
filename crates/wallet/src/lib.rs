//! Plaza wallet: the one place in Plaza that moves money.
//!
//! The main design choice is a **double-entry ledger with balances kept beside it**:
//! every movement is a row in `wallet_movements` (debit account, credit account, amount,
//! currency, kind, reference), and the `balance` of each account changes only in the same
//! transaction as the movements that explain it. A debit is an atomic conditional update
//! (`… SET balance = balance - $1 WHERE id = $2 AND balance >= $1`), so two concurrent
//! debits can never overdraw on SQLite (one writer) or PostgreSQL (row locks), and each
//! posting asserts before it is written that its legs sum to zero per currency. System
//! accounts (the funding source, fees, payment-intent escrow, red-packet escrow) carry the
//! other side, so the sum of all balances of a currency is always zero; `Wallet::check`
//! recomputes every balance from the journal to prove it.
//!
//! Every money-moving call takes an optional idempotency key, claimed (with a hash of the
//! request) in the same transaction as the movement and stored with its result: a retry
//! returns the first result and moves nothing, and a concurrent duplicate waits on the
//! key's unique index and then reads the winner's result.
//!
//! Transfers are group-committed: those arriving together share one database transaction
//! with a fixed number of statements (`transfer_batch`), each answered exactly as if it had
//! run alone.
//!
//! Other services pay through [`Wallet`]'s payment intents (hold, capture, void, refund),
//! or at once inside their own transaction with a direct payment (`direct.rs`),
//! and post into chats through `plaza_chat::Chat`; none of them reads these tables.

pub mod bench_support;
mod direct;
mod hold_batch;
mod idempotency;
mod intents;
mod ledger;
mod migrations;
pub mod model;
mod pin;
mod red_packets;
pub mod routes;
mod service;
mod transfer_batch;

pub use direct::{DirectPayment, DirectRefund, DIRECT_PAYMENT_KIND, DIRECT_REFUND_KIND};
pub use hold_batch::{HoldBatch, HoldEvents};
pub use intents::{PaymentIntent, PaymentIntentStatus};
pub use ledger::{check as check_ledger, CurrencySum, LedgerCheck, Mismatch};
pub use migrations::MIGRATIONS;
pub use model::{FundingProvider, FundingReceipt, SandboxFunding};
pub use pin::Pin;
pub use red_packets::{RedPacket, RedPacketClaim, RedPacketMode, RedPacketRequest};
pub use routes::router;
pub use service::{Balance, Entry, Transfer, TransferRequest, Wallet, WalletConfig, WalletError};
