//! The double-entry core. A [`Posting`] is one ledger transaction: movements of one
//! currency between accounts. [`post`] asserts that it balances, applies the net change of
//! each account with one statement per account (a conditional update for any account that
//! must not go negative), in account-id order so that concurrent postings on PostgreSQL
//! lock rows in one global order and cannot deadlock, and appends the movements.
//! Nothing else in the crate writes `wallet_accounts.balance` or `wallet_movements`, except
//! the group-committed transfers of `transfer_batch`, which assert the same per batch.

use crate::service::WalletError;
use plaza_kernel::{Currency, Timestamp};
use plaza_store::{Any, Row, Transaction};
use serde::Serialize;
use std::collections::BTreeMap;

/// The system accounts that carry the other side of users' money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SystemAccount {
    /// The outside world: top-ups come from here and withdrawals go here. The only
    /// account whose balance goes negative (by as much as users hold in total).
    Funding,
    /// Fees taken on captures.
    Fees,
    /// Money held for payment intents.
    Escrow,
    /// Money in red packets not yet claimed or refunded.
    RedPackets,
}

impl SystemAccount {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Funding => "funding",
            Self::Fees => "fees",
            Self::Escrow => "escrow",
            Self::RedPackets => "red_packets",
        }
    }
}

/// An account of one currency.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Account {
    User(String),
    System(SystemAccount),
}

impl Account {
    pub fn user(user_id: &str) -> Self {
        Self::User(user_id.to_string())
    }

    /// The row id: readable, and derived, so that posting never has to look an id up.
    pub fn id(&self, currency: Currency) -> String {
        match self {
            Self::User(user_id) => format!("user:{user_id}:{}", currency.code()),
            Self::System(system) => format!("system:{}:{}", system.kind(), currency.code()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::System(system) => system.kind(),
        }
    }

    fn owner_id(&self) -> Option<&str> {
        match self {
            Self::User(user_id) => Some(user_id),
            Self::System(_) => None,
        }
    }

    fn may_go_negative(&self) -> bool {
        matches!(self, Self::System(SystemAccount::Funding))
    }
}

/// `amount` leaves the debit account and enters the credit account.
#[derive(Debug, Clone)]
pub struct Movement {
    pub id: String,
    pub debit: Account,
    pub credit: Account,
    pub amount: i64,
}

/// One ledger transaction in one currency.
#[derive(Debug, Clone)]
pub struct Posting {
    pub transaction_id: String,
    pub kind: &'static str,
    pub currency: Currency,
    /// What the money moved for: `transfer:<id>`, `red_packet:<id>`, `payment_intent:<id>`, …
    pub reference: String,
    pub note: Option<String>,
    pub movements: Vec<Movement>,
    /// Changes to users' `held` column (payment-intent holds), applied with the balances.
    pub held_changes: Vec<(String, i64)>,
}

impl Posting {
    pub fn new(kind: &'static str, currency: Currency, reference: String) -> Self {
        Self {
            transaction_id: plaza_kernel::new_id(),
            kind,
            currency,
            reference,
            note: None,
            movements: Vec::new(),
            held_changes: Vec::new(),
        }
    }

    pub fn with_transaction_id(mut self, transaction_id: &str) -> Self {
        self.transaction_id = transaction_id.to_string();
        self
    }

    pub fn with_note(mut self, note: Option<String>) -> Self {
        self.note = note;
        self
    }

    /// Moves `amount` from `debit` to `credit`; a zero amount is skipped.
    pub fn movement(mut self, debit: Account, credit: Account, amount: i64) -> Self {
        if amount != 0 {
            self.movements.push(Movement { id: plaza_kernel::new_id(), debit, credit, amount });
        }
        self
    }

    pub fn held(mut self, user_id: &str, change: i64) -> Self {
        if change != 0 {
            self.held_changes.push((user_id.to_string(), change));
        }
        self
    }
}

/// An account's state after a posting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountState {
    pub balance: i64,
    pub held: i64,
}

/// Applies a posting inside `transaction`. Returns the new state of every user account it
/// touched, by user id. Fails with `InsufficientFunds` (and changes nothing the caller
/// will commit) when a user's balance would go below zero.
pub async fn post(
    transaction: &mut Transaction<'static, Any>,
    posting: &Posting,
) -> Result<BTreeMap<String, AccountState>, WalletError> {
    // Net change per account, in id order. The pair assertion: every movement leaves one
    // account and enters another, so the changes must sum to zero.
    let mut changes: BTreeMap<String, (Account, i64, i64)> = BTreeMap::new();
    for Movement { debit, credit, amount, .. } in &posting.movements {
        if *amount <= 0 || debit == credit {
            return Err(WalletError::Invariant(format!("a movement of {amount} from {debit:?} to {credit:?}")));
        }
        changes.entry(debit.id(posting.currency)).or_insert_with(|| (debit.clone(), 0, 0)).1 -= amount;
        changes.entry(credit.id(posting.currency)).or_insert_with(|| (credit.clone(), 0, 0)).1 += amount;
    }
    for (user_id, change) in &posting.held_changes {
        let account = Account::user(user_id);
        changes.entry(account.id(posting.currency)).or_insert_with(|| (account, 0, 0)).2 += change;
    }
    let sum: i64 = changes.values().map(|(_, change, _)| change).sum();
    if sum != 0 {
        return Err(WalletError::Invariant(format!("posting {} does not balance: {sum}", posting.transaction_id)));
    }

    let now = Timestamp::now().unix_millis();
    let mut states = BTreeMap::new();
    for (id, (account, change, held_change)) in &changes {
        if *change == 0 && *held_change == 0 {
            continue;
        }
        let state = apply_account_change(transaction, posting, id, account, *change, *held_change, now).await?;
        if let Account::User(user_id) = account {
            states.insert(user_id.clone(), state);
        }
    }

    // One multi-row insert for the movements (a posting has a handful).
    let placeholders: Vec<String> = (0..posting.movements.len())
        .map(|n| {
            let base = 7 + 4 * n;
            format!("(${}, $1, $2, ${}, ${}, ${}, $3, $4, $5, $6)", base, base + 1, base + 2, base + 3)
        })
        .collect();
    if placeholders.is_empty() {
        return Ok(states);
    }
    let sql = format!(
        "INSERT INTO wallet_movements
         (id, transaction_id, kind, debit_account, credit_account, amount, currency, reference, note, created_at)
         VALUES {}",
        placeholders.join(", ")
    );
    let mut insert = sqlx::query(&sql)
        .bind(&posting.transaction_id)
        .bind(posting.kind)
        .bind(posting.currency.code())
        .bind(&posting.reference)
        .bind(&posting.note)
        .bind(now);
    for movement in &posting.movements {
        insert = insert
            .bind(&movement.id)
            .bind(movement.debit.id(posting.currency))
            .bind(movement.credit.id(posting.currency))
            .bind(movement.amount);
    }
    insert.execute(&mut **transaction).await?;
    Ok(states)
}

/// Applies one account's net change of a posting (a conditional update where the account
/// must not go negative) and returns its new state; `InsufficientFunds` for a user whose
/// balance would go below zero.
async fn apply_account_change(
    transaction: &mut Transaction<'static, Any>,
    posting: &Posting,
    id: &str,
    account: &Account,
    change: i64,
    held_change: i64,
    now: i64,
) -> Result<AccountState, WalletError> {
    let row = if change < 0 && !account.may_go_negative() {
        sqlx::query(
            "UPDATE wallet_accounts SET balance = balance - $2, held = held + $3
             WHERE id = $1 AND balance >= $2 RETURNING balance, held",
        )
        .bind(id)
        .bind(-change)
        .bind(held_change)
        .fetch_optional(&mut **transaction)
        .await?
    } else if held_change < 0 {
        // Releasing a hold: the account exists (it was debited for the hold). PostgreSQL
        // checks constraints on an upsert's candidate row, so this cannot be an upsert.
        let row = sqlx::query(
            "UPDATE wallet_accounts SET balance = balance + $2, held = held + $3 WHERE id = $1 RETURNING balance, held",
        )
        .bind(id)
        .bind(change)
        .bind(held_change)
        .fetch_optional(&mut **transaction)
        .await?;
        Some(row.ok_or_else(|| WalletError::Invariant(format!("releasing a hold on a missing account {id}")))?)
    } else {
        Some(
            sqlx::query(
                "INSERT INTO wallet_accounts (id, owner_id, kind, currency, balance, held, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (id) DO UPDATE SET balance = wallet_accounts.balance + excluded.balance,
                                                held = wallet_accounts.held + excluded.held
                 RETURNING balance, held",
            )
            .bind(id)
            .bind(account.owner_id())
            .bind(account.kind())
            .bind(posting.currency.code())
            .bind(change)
            .bind(held_change)
            .bind(now)
            .fetch_one(&mut **transaction)
            .await?,
        )
    };
    let Some(row) = row else {
        let available: Option<i64> = sqlx::query_scalar("SELECT balance FROM wallet_accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **transaction)
            .await?;
        return match account {
            Account::User(_) => {
                Err(WalletError::InsufficientFunds { available: available.unwrap_or(0), requested: -change })
            }
            Account::System(system) => {
                Err(WalletError::Invariant(format!("system account {system:?} would go below zero by {change}")))
            }
        };
    };
    Ok(AccountState { balance: row.try_get("balance")?, held: row.try_get("held")? })
}

/// The result of recomputing the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerCheck {
    /// True when every balance equals its journal and every currency sums to zero.
    pub ok: bool,
    pub currencies: Vec<CurrencySum>,
    pub accounts_checked: i64,
    /// Accounts whose balance differs from their journal (at most 100 listed).
    pub mismatches: Vec<Mismatch>,
    /// Other invariants that do not hold, in words (held amounts, escrow totals).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurrencySum {
    pub currency: String,
    /// The sum of every account's balance: zero in a sound ledger.
    pub sum: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub account_id: String,
    pub balance: i64,
    pub journal: i64,
}

/// Recomputes every balance from the journal and checks that each currency sums to zero,
/// that users' `held` matches their open payment intents, and that each escrow account
/// holds exactly what its intents and red packets say.
pub async fn check(store: &plaza_store::Store) -> Result<LedgerCheck, sqlx::Error> {
    // One snapshot for the whole check, so concurrent postings cannot make it disagree with
    // itself: a SQLite read transaction is a snapshot; on PostgreSQL, REPEATABLE READ is.
    let mut connection = store.read().acquire().await?;
    let mut transaction = sqlx::Connection::begin(&mut *connection).await?;
    if store.backend() == plaza_store::Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *transaction).await?;
    }
    let rows = sqlx::query(
        "SELECT a.id, a.balance,
                COALESCE((SELECT CAST(SUM(m.amount) AS BIGINT) FROM wallet_movements m WHERE m.credit_account = a.id), 0)
              - COALESCE((SELECT CAST(SUM(m.amount) AS BIGINT) FROM wallet_movements m WHERE m.debit_account = a.id), 0)
                AS journal
         FROM wallet_accounts a ORDER BY a.id",
    )
    .fetch_all(&mut *transaction)
    .await?;
    let mut mismatches = Vec::new();
    for row in &rows {
        let balance: i64 = row.try_get("balance")?;
        let journal: i64 = row.try_get("journal")?;
        if balance != journal && mismatches.len() < 100 {
            mismatches.push(Mismatch { account_id: row.try_get("id")?, balance, journal });
        }
    }
    let sums = sqlx::query(
        "SELECT currency, CAST(SUM(balance) AS BIGINT) AS total FROM wallet_accounts GROUP BY currency ORDER BY currency",
    )
    .fetch_all(&mut *transaction)
    .await?;
    let currencies = sums
        .iter()
        .map(|row| Ok(CurrencySum { currency: row.try_get("currency")?, sum: row.try_get("total")? }))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;

    let mut problems = Vec::new();
    let held = sqlx::query(
        "SELECT a.id, a.held,
                COALESCE((SELECT CAST(SUM(i.held) AS BIGINT) FROM wallet_payment_intents i
                          WHERE i.payer_id = a.owner_id AND i.currency = a.currency AND i.status = 'held'), 0) AS open
         FROM wallet_accounts a WHERE a.kind = 'user'",
    )
    .fetch_all(&mut *transaction)
    .await?;
    for row in &held {
        let (id, held, open): (String, i64, i64) = (row.try_get("id")?, row.try_get("held")?, row.try_get("open")?);
        if held != open && problems.len() < 100 {
            problems.push(format!("{id} shows {held} held but its open payment intents hold {open}"));
        }
    }
    let escrow = sqlx::query(
        "SELECT a.id, a.balance,
                COALESCE((SELECT CAST(SUM(i.held) AS BIGINT) FROM wallet_payment_intents i
                          WHERE i.currency = a.currency AND i.status = 'held'), 0) AS expected
         FROM wallet_accounts a WHERE a.kind = 'escrow'
         UNION ALL
         SELECT a.id, a.balance,
                COALESCE((SELECT CAST(SUM(p.total - p.claimed_amount) AS BIGINT) FROM wallet_red_packets p
                          WHERE p.currency = a.currency AND p.refunded_at IS NULL), 0) AS expected
         FROM wallet_accounts a WHERE a.kind = 'red_packets'",
    )
    .fetch_all(&mut *transaction)
    .await?;
    for row in &escrow {
        let (id, balance, expected): (String, i64, i64) =
            (row.try_get("id")?, row.try_get("balance")?, row.try_get("expected")?);
        if balance != expected {
            problems.push(format!("{id} holds {balance} but its open intents or packets account for {expected}"));
        }
    }
    transaction.rollback().await?;
    let ok = mismatches.is_empty() && problems.is_empty() && currencies.iter().all(|currency| currency.sum == 0);
    Ok(LedgerCheck { ok, currencies, accounts_checked: rows.len() as i64, mismatches, problems })
}
