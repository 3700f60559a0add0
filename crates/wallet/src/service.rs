//! The wallet service: balances, top-ups and withdrawals, transfers, history, the payment
//! PIN and the ledger check, as plain async functions over the store. Red packets and
//! payment intents live in their own modules as further `impl Wallet` blocks.

use crate::idempotency;
use crate::ledger::{self, Account, AccountState, LedgerCheck, Posting, SystemAccount};
use crate::model::{parse_money, FundingProvider, IdempotencyKey, SandboxFunding};
use crate::pin::{Pin, PIN_CHANGE_USERS_MAX, PIN_CHANGE_WINDOW};
use crate::transfer_batch::{BatchedOutcome, TransferJob, TRANSFER_BATCH_MAX, TRANSFER_QUEUE_MAX};
use plaza_accounts::{Accounts, AccountsError, User};
use plaza_chat::{Chat, ChatError, MessageKind};
use plaza_events::{Appended, Events};
use plaza_http::RateLimiter;
use plaza_kernel::{Currency, Money, PageLimit, Timestamp};
use plaza_store::{Any, GroupCommit, GroupCommitError, Row, Store, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Tunables of the wallet.
#[derive(Debug, Clone)]
pub struct WalletConfig {
    /// The currencies users may hold and move (`PLAZA_CURRENCIES`).
    pub currencies: Vec<Currency>,
    /// The most a user may top up per currency per UTC day, in major units (dollars,
    /// yen): scaled by each currency's exponent.
    pub topup_daily_limit_major: i64,
    /// How long after sending a red packet its unclaimed money returns to the sender.
    pub red_packet_refund_after: Duration,
    /// How often the background job looks for red packets to refund.
    pub job_interval: Duration,
    /// Wrong PINs in a row before payments lock.
    pub pin_attempts_max: i64,
    /// How long payments stay locked after too many wrong PINs.
    pub pin_lock: Duration,
    /// How long an idempotency key is remembered.
    pub idempotency_retention: Duration,
    /// PIN sets and replacements per user per hour (each costs password hashing).
    pub pin_changes_per_hour: u32,
}

impl Default for WalletConfig {
    fn default() -> Self {
        Self {
            currencies: Currency::parse("USD").into_iter().collect(),
            topup_daily_limit_major: 10_000,
            red_packet_refund_after: Duration::from_secs(24 * 3600),
            job_interval: Duration::from_secs(30),
            pin_attempts_max: 5,
            pin_lock: Duration::from_secs(15 * 60),
            idempotency_retention: Duration::from_secs(7 * 24 * 3600),
            pin_changes_per_hour: 10,
        }
    }
}

/// How long a funding provider may take to answer.
const FUNDING_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("not enough money: {available} available, {requested} requested")]
    InsufficientFunds { available: i64, requested: i64 },
    #[error("the daily top-up limit is {limit}; {remaining} remains today")]
    TopupLimitExceeded { limit: i64, remaining: i64 },
    #[error("this Idempotency-Key was used with another request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still running")]
    IdempotencyKeyInProgress,
    #[error("a payment PIN is set; send it as `pin`")]
    PinRequired,
    #[error("wrong PIN; {attempts_left} attempts left")]
    WrongPin { attempts_left: i64 },
    #[error("payments are locked until {until:?}")]
    PinLocked { until: Timestamp },
    #[error("too many PIN changes; retry in {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("no such user")]
    UserNotFound,
    #[error("no such conversation")]
    ConversationNotFound,
    #[error("the recipient is not a member of that conversation")]
    RecipientNotAMember,
    #[error("no such red packet")]
    RedPacketNotFound,
    #[error("already claimed")]
    AlreadyClaimed,
    #[error("every share has been claimed")]
    RedPacketEmpty,
    #[error("in a direct chat, a red packet is for the other person")]
    OwnRedPacket,
    #[error("the red packet has expired")]
    RedPacketExpired,
    #[error("no such payment intent")]
    PaymentIntentNotFound,
    #[error("the payment intent is {status}, so it cannot be {action}")]
    InvalidTransition { status: &'static str, action: &'static str },
    #[error("the funding provider failed: {0}")]
    Provider(String),
    /// A broken invariant of the ledger: a bug, never the caller's fault.
    #[error("ledger invariant: {0}")]
    Invariant(String),
    #[error("hashing: {0}")]
    Hashing(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("accounts: {0}")]
    Accounts(#[from] AccountsError),
    #[error("chat: {0}")]
    Chat(#[from] ChatError),
    /// The group-commit runner gave no answer; whether the transfer happened is unknown,
    /// and a retry with the same Idempotency-Key settles it.
    #[error("{0}")]
    TransferLost(#[from] GroupCommitError),
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> WalletError {
    WalletError::InvalidField { field, reason: reason.into() }
}

/// One currency of a user's wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Balance {
    pub currency: String,
    /// What the user can spend now.
    pub available: i64,
    /// What payment intents hold for services until they capture or release it.
    pub held: i64,
}

/// One line of a user's history: a movement into or out of one of their accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub transaction_id: String,
    /// `topup`, `withdrawal`, `transfer`, `red_packet`, `red_packet_claim`,
    /// `red_packet_refund`, `payment_hold`, `payment_capture`, `payment_release`, `payment_refund`,
    /// `miniapp_payment`, `miniapp_refund`.
    pub kind: String,
    /// `in` or `out`.
    pub direction: String,
    pub amount: i64,
    pub currency: String,
    /// The other side: `user`, or a system account (`funding`, `fees`, `escrow`, `red_packets`).
    pub counterparty: String,
    pub counterparty_user_id: Option<String>,
    pub reference: String,
    pub note: Option<String>,
    pub created_at_ms: i64,
}

/// A transfer between two users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: String,
    pub from_user_id: String,
    pub to_user_id: String,
    pub amount: i64,
    pub currency: String,
    pub note: Option<String>,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub created_at_ms: i64,
}

/// What a transfer asks for, checked.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    pub to_user_id: String,
    pub money: Money,
    pub note: Option<String>,
    pub conversation_id: Option<String>,
}

/// The wallet service handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Wallet {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) events: Events,
    pub(crate) accounts: Accounts,
    pub(crate) chat: Chat,
    pub(crate) funding: Arc<dyn FundingProvider>,
    pub(crate) config: WalletConfig,
    /// Transfers, group-committed; started on first use (it needs the runtime).
    pub(crate) transfers: OnceLock<GroupCommit<TransferJob, BatchedOutcome>>,
    /// PIN sets and replacements per user (see `pin`).
    pub(crate) pin_changes: RateLimiter,
}

/// Events to append in a transaction, one per user; appended in user-id order (see
/// [`Wallet::append_events`]).
pub(crate) type PendingEvents = Vec<(String, &'static str, Value)>;

impl Wallet {
    pub fn new(store: Store, events: Events, accounts: Accounts, chat: Chat, config: WalletConfig) -> Self {
        Self::with_funding(store, events, accounts, chat, config, Arc::new(SandboxFunding))
    }

    /// A wallet whose top-ups and withdrawals go through `funding`.
    pub fn with_funding(
        store: Store,
        events: Events,
        accounts: Accounts,
        chat: Chat,
        config: WalletConfig,
        funding: Arc<dyn FundingProvider>,
    ) -> Self {
        let pin_changes = RateLimiter::new(config.pin_changes_per_hour, PIN_CHANGE_WINDOW, PIN_CHANGE_USERS_MAX);
        let transfers = OnceLock::new();
        Self { inner: Arc::new(Inner { store, events, accounts, chat, funding, config, transfers, pin_changes }) }
    }

    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    pub fn config(&self) -> &WalletConfig {
        &self.inner.config
    }

    /// Checks an amount and currency from a request.
    pub fn money(&self, amount: i64, currency: &str) -> Result<Money, WalletError> {
        parse_money(amount, currency, &self.inner.config.currencies)
            .map_err(|(field, reason)| WalletError::InvalidField { field, reason })
    }

    /// The user's balance in every enabled currency (and any other they still hold).
    pub async fn balances(&self, me: &User) -> Result<Vec<Balance>, WalletError> {
        let rows = sqlx::query(
            "SELECT currency, balance, held FROM wallet_accounts WHERE owner_id = $1 AND kind = 'user' ORDER BY currency",
        )
        .bind(&me.id)
        .fetch_all(self.inner.store.read())
        .await?;
        let mut balances: BTreeMap<String, Balance> = self
            .inner
            .config
            .currencies
            .iter()
            .map(|currency| {
                let code = currency.code().to_string();
                (code.clone(), Balance { currency: code, available: 0, held: 0 })
            })
            .collect();
        for row in rows {
            let currency: String = row.try_get("currency")?;
            balances.insert(
                currency.clone(),
                Balance { currency, available: row.try_get("balance")?, held: row.try_get("held")? },
            );
        }
        Ok(balances.into_values().collect())
    }

    /// Adds money from the funding provider, within the user's daily limit.
    pub async fn topup(
        &self,
        me: &User,
        money: Money,
        key: Option<&IdempotencyKey>,
        pin: Option<&Pin>,
    ) -> Result<(Entry, bool), WalletError> {
        let limit = self.daily_topup_limit(money.currency());
        let check = || {
            if money.amount() > limit {
                return Err(WalletError::TopupLimitExceeded { limit, remaining: limit });
            }
            Ok(())
        };
        let (mut transaction, request) = match self.start_funding(me, "topup", money, key, pin, check).await? {
            Funding::Replayed(entry) => return Ok((entry, true)),
            Funding::Fresh(transaction, request) => (transaction, request),
        };
        let now = Timestamp::now();
        let day = now.unix_millis().div_euclid(86_400_000);
        let counted = sqlx::query(
            "INSERT INTO wallet_topup_days (user_id, currency, day, total) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, currency, day) DO UPDATE SET total = wallet_topup_days.total + excluded.total
             WHERE wallet_topup_days.total + excluded.total <= $5",
        )
        .bind(&me.id)
        .bind(money.currency().code())
        .bind(day)
        .bind(money.amount())
        .bind(limit)
        .execute(&mut *transaction)
        .await?;
        if counted.rows_affected() != 1 {
            let used: i64 = sqlx::query_scalar(
                "SELECT total FROM wallet_topup_days WHERE user_id = $1 AND currency = $2 AND day = $3",
            )
            .bind(&me.id)
            .bind(money.currency().code())
            .bind(day)
            .fetch_one(&mut *transaction)
            .await?;
            return Err(WalletError::TopupLimitExceeded { limit, remaining: (limit - used).max(0) });
        }
        // The provider is asked inside the transaction, after the key is claimed: a crash
        // before commit leaves no credit, and the retry (same key) asks the provider again,
        // which a real provider deduplicates by that key.
        let provider_key = format!("{}:{}", me.id, key.map(IdempotencyKey::as_str).unwrap_or("none"));
        let receipt = self.call_provider(self.inner.funding.charge(&me.id, money, &provider_key)).await?;
        let posting = Posting::new("topup", money.currency(), format!("topup:{}", receipt.reference)).movement(
            Account::System(SystemAccount::Funding),
            Account::user(&me.id),
            money.amount(),
        );
        let states = ledger::post(&mut transaction, &posting).await?;
        let entry = entry_of(&posting, 0, &me.id, now);
        self.finish_funding(transaction, request.as_ref(), &states, &posting, entry).await
    }

    /// Sends money out through the funding provider.
    pub async fn withdraw(
        &self,
        me: &User,
        money: Money,
        key: Option<&IdempotencyKey>,
        pin: Option<&Pin>,
    ) -> Result<(Entry, bool), WalletError> {
        let (mut transaction, request) = match self.start_funding(me, "withdrawal", money, key, pin, || Ok(())).await? {
            Funding::Replayed(entry) => return Ok((entry, true)),
            Funding::Fresh(transaction, request) => (transaction, request),
        };
        let now = Timestamp::now();
        let id = plaza_kernel::new_id();
        // Debit first, so that a payout is only asked for money the user has; the payout
        // happens before commit, so a failed payout leaves the balance untouched.
        let posting = Posting::new("withdrawal", money.currency(), format!("withdrawal:{id}"))
            .with_transaction_id(&id)
            .movement(Account::user(&me.id), Account::System(SystemAccount::Funding), money.amount());
        let states = ledger::post(&mut transaction, &posting).await?;
        let provider_key = format!("{}:{}", me.id, key.map(IdempotencyKey::as_str).unwrap_or(&id));
        let receipt = self.call_provider(self.inner.funding.payout(&me.id, money, &provider_key)).await?;
        let mut entry = entry_of(&posting, 0, &me.id, now);
        entry.note = Some(receipt.reference);
        self.finish_funding(transaction, request.as_ref(), &states, &posting, entry).await
    }

    /// The start a top-up and a withdrawal share: the stored answer of an earlier try with
    /// the key, or, after `check` and the PIN, a transaction with the key claimed.
    async fn start_funding<'a>(
        &self,
        me: &'a User,
        operation: &'static str,
        money: Money,
        key: Option<&'a IdempotencyKey>,
        pin: Option<&Pin>,
        check: impl FnOnce() -> Result<(), WalletError>,
    ) -> Result<Funding<'a>, WalletError> {
        let canonical = json!({"amount": money.amount(), "currency": money.currency().code()});
        let request = key.map(|key| idempotency::Request::new(&me.id, key, operation, &canonical));
        if let Some(entry) = idempotency::lookup(self.inner.store.read(), request.as_ref()).await? {
            return Ok(Funding::Replayed(entry));
        }
        check()?;
        self.authorize_payment(me, pin).await?;
        let mut transaction = self.inner.store.begin().await?;
        if let Some(entry) = idempotency::claim(&mut transaction, request.as_ref()).await? {
            return Ok(Funding::Replayed(entry));
        }
        Ok(Funding::Fresh(transaction, request))
    }

    /// The end they share: the events, the result stored under the key, the commit.
    async fn finish_funding(
        &self,
        mut transaction: Transaction<'static, Any>,
        request: Option<&idempotency::Request<'_>>,
        states: &BTreeMap<String, AccountState>,
        posting: &Posting,
        entry: Entry,
    ) -> Result<(Entry, bool), WalletError> {
        let events = wallet_updates(states, posting.currency, posting.kind, &posting.reference);
        let appended = self.append_events(&mut transaction, events).await?;
        idempotency::complete(&mut transaction, request, &entry).await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok((entry, false))
    }

    /// Moves money from `me` to another user; with a conversation, posts a `transfer`
    /// message there in the same transaction. Transfers without a conversation are
    /// group-committed: those that arrive together share one database transaction (see
    /// `transfer_batch`), each answered exactly as if it had run alone.
    pub async fn transfer(
        &self,
        me: &User,
        request: TransferRequest,
        key: Option<&IdempotencyKey>,
        pin: Option<&Pin>,
    ) -> Result<(Transfer, bool), WalletError> {
        let job = TransferJob::new(me, request, key);
        if job.request.conversation_id.is_some() || pin.is_some() {
            // A PIN costs an argon2 verification anyway, and a chat message is posted by
            // chat's own single-message path: these take the one-by-one path.
            let outcome = self.transfer_one_by_one(job, pin).await;
            self.after_deferred_commits().await?;
            return outcome;
        }
        let BatchedOutcome { outcome, durable } = self.transfers().submit(job).await?;
        if let Some((wal, ticket)) = durable {
            // Committed (or read what was) but perhaps not on disk: the outcome is unknown
            // until it is, and a retry with the same key settles it, never a new transfer.
            wal.durable(ticket).await.map_err(|_| WalletError::TransferLost(GroupCommitError::Lost))?;
        }
        outcome
    }

    /// Waits until the deferred commits of transfer batches made so far are on disk: an
    /// answer that committed nothing itself (a replayed result, a refusal) may rest on one.
    pub(crate) async fn after_deferred_commits(&self) -> Result<(), WalletError> {
        if let Some(wal) = self.inner.store.wal_sync() {
            wal.durable(wal.read_ticket()).await.map_err(|_| WalletError::TransferLost(GroupCommitError::Lost))?;
        }
        Ok(())
    }

    /// The same transfer without group commit: one database transaction for this transfer
    /// alone. Kept as the path for transfers with a conversation or a PIN, as the fallback
    /// of a failed batch, and as the baseline `plaza-bench wallet` measures against.
    pub async fn transfer_alone(
        &self,
        me: &User,
        request: TransferRequest,
        key: Option<&IdempotencyKey>,
        pin: Option<&Pin>,
    ) -> Result<(Transfer, bool), WalletError> {
        let outcome = self.transfer_one_by_one(TransferJob::new(me, request, key), pin).await;
        self.after_deferred_commits().await?;
        outcome
    }

    pub(crate) async fn transfer_one_by_one(
        &self,
        job: TransferJob,
        pin: Option<&Pin>,
    ) -> Result<(Transfer, bool), WalletError> {
        let TransferJob { me, request, key, hash } = &job;
        let idempotent = key.as_ref().map(|key| idempotency::Request {
            scope: &me.id,
            key,
            operation: "transfer",
            hash: hash.clone(),
        });
        if let Some(transfer) = idempotency::lookup(self.inner.store.read(), idempotent.as_ref()).await? {
            return Ok((transfer, true));
        }
        if request.to_user_id == me.id {
            return Err(invalid("to_user_id", "you cannot send money to yourself"));
        }
        self.inner.accounts.user(&request.to_user_id).await.map_err(|error| match error {
            AccountsError::UserNotFound => WalletError::UserNotFound,
            other => other.into(),
        })?;
        if let Some(conversation_id) = &request.conversation_id {
            let others = self.inner.chat.other_members(me, conversation_id).await.map_err(not_found_as_wallet)?;
            if !others.contains(&request.to_user_id) {
                return Err(WalletError::RecipientNotAMember);
            }
        }
        self.authorize_payment(me, pin).await?;
        let mut transaction = self.inner.store.begin().await?;
        if let Some(transfer) = idempotency::claim(&mut transaction, idempotent.as_ref()).await? {
            return Ok((transfer, true));
        }
        let (transfer, appended) = self.transfer_in_transaction(&mut transaction, me, request).await?;
        idempotency::complete(&mut transaction, idempotent.as_ref(), &transfer).await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok((transfer, false))
    }

    fn transfers(&self) -> &GroupCommit<TransferJob, BatchedOutcome> {
        self.inner.transfers.get_or_init(|| {
            // The runner holds the service weakly, so dropping the last handle stops it.
            let service = Arc::downgrade(&self.inner);
            let run = move |jobs: Vec<TransferJob>| {
                let service = service.upgrade().map(|inner| Wallet { inner });
                async move {
                    match service {
                        Some(wallet) => wallet.transfer_batch(jobs).await,
                        None => jobs
                            .iter()
                            .map(|_| BatchedOutcome {
                                outcome: Err(WalletError::TransferLost(GroupCommitError::Stopped)),
                                durable: None,
                            })
                            .collect(),
                    }
                }
            };
            GroupCommit::spawn_on_own_thread(
                "plaza-wallet-transfers",
                TRANSFER_QUEUE_MAX,
                TRANSFER_BATCH_MAX,
                run.clone(),
            )
            .unwrap_or_else(|error| {
                tracing::warn!("no thread for wallet transfers ({error}); they share the main runtime");
                GroupCommit::spawn(TRANSFER_QUEUE_MAX, TRANSFER_BATCH_MAX, run)
            })
        })
    }

    /// The transfer itself, inside the caller's transaction (so that many can share one).
    pub async fn transfer_in_transaction(
        &self,
        transaction: &mut Transaction<'static, Any>,
        me: &User,
        request: &TransferRequest,
    ) -> Result<(Transfer, Appended), WalletError> {
        let now = Timestamp::now();
        let id = plaza_kernel::new_id();
        let money = request.money;
        let posting = Posting::new("transfer", money.currency(), format!("transfer:{id}"))
            .with_transaction_id(&id)
            .with_note(request.note.clone())
            .movement(Account::user(&me.id), Account::user(&request.to_user_id), money.amount());
        let states = ledger::post(transaction, &posting).await?;
        let mut transfer = Transfer {
            id: id.clone(),
            from_user_id: me.id.clone(),
            to_user_id: request.to_user_id.clone(),
            amount: money.amount(),
            currency: money.currency().code().to_string(),
            note: request.note.clone(),
            conversation_id: request.conversation_id.clone(),
            message_id: None,
            created_at_ms: now.unix_millis(),
        };
        // The chat message first: it appends `message.new` for every member in one sorted
        // sweep, so the wallet events after it only touch cursors already locked.
        let mut appended = Appended::default();
        if let Some(conversation_id) = &request.conversation_id {
            let body = json!({
                "transfer_id": id,
                "to_user_id": request.to_user_id,
                "amount": money.amount(),
                "currency": money.currency().code(),
                "note": request.note,
            });
            let (message, message_events) = self
                .inner
                .chat
                .post_in_transaction(
                    transaction,
                    conversation_id,
                    &me.id,
                    &format!("wallet:transfer:{id}"),
                    MessageKind::Transfer,
                    &body,
                )
                .await
                .map_err(not_found_as_wallet)?;
            transfer.message_id = Some(message.id);
            appended.merge(message_events);
        }
        let events = wallet_updates(&states, money.currency(), posting.kind, &posting.reference);
        appended.merge(self.append_events(transaction, events).await?);
        Ok((transfer, appended))
    }

    /// The user's history, newest first.
    pub async fn transactions(
        &self,
        me: &User,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<plaza_kernel::Page<Entry>, WalletError> {
        let (before_time, before_id) = match cursor {
            None | Some("") => (i64::MAX, String::new()),
            Some(opaque) => plaza_kernel::Cursor::parse_position(opaque)
                .and_then(|position| {
                    let (time, id) = position.split_once(':')?;
                    Some((time.parse::<i64>().ok()?, id.to_string()))
                })
                .ok_or_else(|| invalid("cursor", "not a cursor this server issued"))?,
        };
        let accounts: Vec<String> =
            sqlx::query_scalar("SELECT id FROM wallet_accounts WHERE owner_id = $1 AND kind = 'user' ORDER BY id")
                .bind(&me.id)
                .fetch_all(self.inner.store.read())
                .await?;
        if accounts.is_empty() {
            return Ok(plaza_kernel::Page { items: Vec::new(), next_cursor: None });
        }
        // Accounts per user are one per currency, so this list stays short.
        let list = plaza_store::numbered_parameters(4, accounts.len());
        let sql = format!(
            "SELECT m.id, m.transaction_id, m.kind, m.debit_account, m.amount, m.currency, m.reference, m.note,
                    m.created_at, d.kind AS debit_kind, d.owner_id AS debit_owner,
                    c.kind AS credit_kind, c.owner_id AS credit_owner
             FROM wallet_movements m
             JOIN wallet_accounts d ON d.id = m.debit_account
             JOIN wallet_accounts c ON c.id = m.credit_account
             WHERE (m.debit_account IN ({list}) OR m.credit_account IN ({list}))
               AND (m.created_at < $1 OR (m.created_at = $1 AND m.id < $2))
             ORDER BY m.created_at DESC, m.id DESC
             LIMIT $3"
        );
        let mut query = sqlx::query(&sql).bind(before_time).bind(&before_id).bind(limit.probe());
        for account in &accounts {
            query = query.bind(account);
        }
        let rows = query.fetch_all(self.inner.store.read()).await?;
        // The probe row too: `Page::from_probe` tells from it whether another page exists.
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let debit_account: String = row.try_get("debit_account")?;
            let outgoing = accounts.contains(&debit_account);
            let (counterparty, counterparty_user_id): (String, Option<String>) = if outgoing {
                (row.try_get("credit_kind")?, row.try_get("credit_owner")?)
            } else {
                (row.try_get("debit_kind")?, row.try_get("debit_owner")?)
            };
            entries.push(Entry {
                id: row.try_get("id")?,
                transaction_id: row.try_get("transaction_id")?,
                kind: row.try_get("kind")?,
                direction: if outgoing { "out" } else { "in" }.to_string(),
                amount: row.try_get("amount")?,
                currency: row.try_get("currency")?,
                counterparty,
                counterparty_user_id,
                reference: row.try_get("reference")?,
                note: row.try_get("note")?,
                created_at_ms: row.try_get("created_at")?,
            });
        }
        Ok(plaza_kernel::Page::from_probe(entries, limit, |last| format!("{}:{}", last.created_at_ms, last.id)))
    }

    /// Recomputes every balance from the journal (the admin ledger check).
    pub async fn check(&self) -> Result<LedgerCheck, WalletError> {
        Ok(ledger::check(&self.inner.store).await?)
    }

    fn daily_topup_limit(&self, currency: Currency) -> i64 {
        let scale = 10_i64.pow(u32::from(currency.exponent()));
        self.inner.config.topup_daily_limit_major.saturating_mul(scale).min(Money::MAX_MINOR)
    }

    async fn call_provider(
        &self,
        call: crate::model::FundingFuture<'_>,
    ) -> Result<crate::model::FundingReceipt, WalletError> {
        match tokio::time::timeout(FUNDING_TIMEOUT, call).await {
            Ok(Ok(receipt)) => Ok(receipt),
            Ok(Err(reason)) => Err(WalletError::Provider(reason)),
            Err(_) => Err(WalletError::Provider(format!("no answer within {FUNDING_TIMEOUT:?}"))),
        }
    }

    /// Appends per-user events in user-id order. Together with the rule that a chat
    /// message (which locks every member's cursor in one sorted sweep) is posted before
    /// them, this keeps the cursor locks of every wallet transaction in one global order,
    /// so two of them can never deadlock on PostgreSQL.
    pub(crate) async fn append_events(
        &self,
        transaction: &mut Transaction<'static, Any>,
        mut events: PendingEvents,
    ) -> Result<Appended, WalletError> {
        events.sort_by(|first, second| first.0.cmp(&second.0));
        let mut appended = Appended::default();
        for (user_id, event_type, data) in events {
            appended.merge(self.inner.events.append(transaction, &[user_id], event_type, &data).await?);
        }
        Ok(appended)
    }
}

/// `wallet.updated` for every user whose account a posting touched.
/// How a keyed top-up or withdrawal starts.
enum Funding<'a> {
    /// An earlier try with the key committed this.
    Replayed(Entry),
    /// The work is to do, in this transaction, with the key claimed in it.
    Fresh(Transaction<'static, Any>, Option<idempotency::Request<'a>>),
}

pub(crate) fn wallet_updates(
    states: &BTreeMap<String, AccountState>,
    currency: Currency,
    kind: &str,
    reference: &str,
) -> PendingEvents {
    states
        .iter()
        .map(|(user_id, state)| {
            let data = json!({
                "currency": currency.code(),
                "available": state.balance,
                "held": state.held,
                "kind": kind,
                "reference": reference,
            });
            (user_id.clone(), "wallet.updated", data)
        })
        .collect()
}

/// The history line of movement `index` of a posting, as `user_id` sees it.
pub(crate) fn entry_of(posting: &Posting, index: usize, user_id: &str, now: Timestamp) -> Entry {
    let movement = &posting.movements[index.min(posting.movements.len().saturating_sub(1))];
    let mine = |account: &Account| matches!(account, Account::User(id) if id == user_id);
    let outgoing = mine(&movement.debit);
    let other = if outgoing { &movement.credit } else { &movement.debit };
    let (counterparty, counterparty_user_id) = match other {
        Account::User(id) => ("user".to_string(), Some(id.clone())),
        Account::System(system) => (system.kind().to_string(), None),
    };
    Entry {
        id: movement.id.clone(),
        transaction_id: posting.transaction_id.clone(),
        kind: posting.kind.to_string(),
        direction: if outgoing { "out" } else { "in" }.to_string(),
        amount: movement.amount,
        currency: posting.currency.code().to_string(),
        counterparty,
        counterparty_user_id,
        reference: posting.reference.clone(),
        note: posting.note.clone(),
        created_at_ms: now.unix_millis(),
    }
}

/// Chat's "no such conversation" (also what non-members get) in the wallet's terms.
pub(crate) fn not_found_as_wallet(error: ChatError) -> WalletError {
    match error {
        ChatError::ConversationNotFound => WalletError::ConversationNotFound,
        other => other.into(),
    }
}
