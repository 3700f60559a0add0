//! The wallet HTTP API (API.md, "Wallet"): wire requests and responses, thin handlers, and
//! the one mapping from [`WalletError`] to problems.

use crate::model::{parse_text, IdempotencyKey, GREETING_MAX_CHARS, NOTE_MAX_CHARS};
use crate::pin::Pin;
use crate::red_packets::{RedPacket, RedPacketClaim, RedPacketMode, RedPacketRequest};
use crate::service::{Entry, Transfer, TransferRequest, Wallet, WalletError};
use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use plaza_accounts::{Accounts, CurrentUser};
use plaza_http::{idempotent_answer, page_limit, ApiJson, ApiQuery, ErrorCode, PageParams, Problem};
use plaza_kernel::{Money, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The wallet routes, relative to `/api/v1`.
pub fn router(wallet: Wallet) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_wallet))
        .routes(routes!(create_topup))
        .routes(routes!(create_withdrawal))
        .routes(routes!(create_transfer))
        .routes(routes!(list_transactions))
        .routes(routes!(set_pin))
        .routes(routes!(create_red_packet))
        .routes(routes!(claim_red_packet))
        .routes(routes!(get_red_packet))
        .routes(routes!(ledger_check))
        .with_state(wallet)
}

impl FromRef<Wallet> for Accounts {
    fn from_ref(wallet: &Wallet) -> Accounts {
        wallet.accounts().clone()
    }
}

impl From<WalletError> for Problem {
    fn from(error: WalletError) -> Self {
        match error {
            WalletError::InvalidField { field, reason } => Problem::invalid_field(field, reason),
            WalletError::InsufficientFunds { available, requested } => Problem::new(
                ErrorCode::InsufficientFunds,
                format!("{requested} is needed but only {available} is available"),
            )
            .with_extension("available", available)
            .with_extension("requested", requested),
            WalletError::TopupLimitExceeded { limit, remaining } => Problem::new(
                ErrorCode::TopupLimitExceeded,
                format!("you may top up {limit} per day; {remaining} remains today"),
            )
            .with_field("amount")
            .with_extension("limit", limit)
            .with_extension("remaining", remaining),
            WalletError::IdempotencyKeyReused => Problem::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was already used with a different request; use a new key",
            ),
            WalletError::IdempotencyKeyInProgress => Problem::new(
                ErrorCode::IdempotencyKeyInProgress,
                "a request with this Idempotency-Key is still running; retry shortly",
            ),
            WalletError::PinRequired => {
                Problem::new(ErrorCode::PinRequired, "a payment PIN is set; send it as `pin`").with_field("pin")
            }
            WalletError::WrongPin { attempts_left } => Problem::new(
                ErrorCode::WrongPin,
                format!("wrong PIN; {attempts_left} more wrong attempts lock payments for a while"),
            )
            .with_field("pin"),
            WalletError::PinLocked { until } => {
                let seconds = (until.unix_millis() - Timestamp::now().unix_millis()).max(1000) / 1000;
                Problem::new(
                    ErrorCode::PinLocked,
                    format!("too many wrong PINs: payments are locked until {}", until.to_rfc3339()),
                )
                .with_retry_after(seconds as u64)
            }
            WalletError::RateLimited { retry_after } => {
                Problem::new(ErrorCode::RateLimited, "too many PIN changes; wait before trying again")
                    .with_retry_after(retry_after.as_secs().max(1))
            }
            WalletError::UserNotFound => Problem::new(ErrorCode::UserNotFound, "no such user").with_field("to_user_id"),
            WalletError::ConversationNotFound => {
                Problem::new(ErrorCode::ConversationNotFound, "no such conversation").with_field("conversation_id")
            }
            WalletError::RecipientNotAMember => {
                Problem::new(ErrorCode::NotAMember, "the recipient is not a member of that conversation")
                    .with_field("conversation_id")
            }
            WalletError::RedPacketNotFound => Problem::new(ErrorCode::RedPacketNotFound, "no such red packet"),
            WalletError::AlreadyClaimed => {
                Problem::new(ErrorCode::AlreadyClaimed, "you already claimed a share of this red packet")
            }
            WalletError::RedPacketEmpty => {
                Problem::new(ErrorCode::RedPacketEmpty, "every share of this red packet has been claimed")
            }
            WalletError::OwnRedPacket => Problem::new(
                ErrorCode::OwnRedPacket,
                "in a direct chat a red packet is for the other person; only they may claim it",
            ),
            WalletError::RedPacketExpired => Problem::new(
                ErrorCode::RedPacketExpired,
                "this red packet has expired; its unclaimed money returned to the sender",
            ),
            WalletError::PaymentIntentNotFound => {
                Problem::new(ErrorCode::PaymentIntentNotFound, "no such payment intent")
            }
            WalletError::InvalidTransition { status, action } => Problem::new(
                ErrorCode::InvalidTransition,
                format!("the payment intent is {status}, so it cannot be {action}"),
            ),
            WalletError::Provider(reason) => {
                tracing::warn!("funding provider failed: {reason}");
                Problem::new(ErrorCode::FundingProviderFailed, "the funding provider failed; nothing was moved")
            }
            WalletError::Database(error) if plaza_store::is_unavailable(&error) => {
                Problem::new(ErrorCode::Unavailable, "the database is not reachable; try again shortly")
            }
            WalletError::Database(error) => Problem::internal(&error),
            WalletError::Invariant(reason) => Problem::internal(&format!("ledger invariant broken: {reason}")),
            WalletError::Hashing(reason) => Problem::internal(&reason),
            WalletError::Accounts(error) => error.into(),
            WalletError::Chat(error) => error.into(),
            WalletError::TransferLost(error) => {
                Problem::new(ErrorCode::Unavailable, format!("{error}; retry with the same Idempotency-Key"))
            }
        }
    }
}

/// An optional PIN field of a request, parsed where it enters: a malformed PIN is a 422
/// on its field and never counts as a guess.
fn pin_field(raw: Option<&str>, field: &'static str) -> Result<Option<Pin>, Problem> {
    Pin::parse_optional(raw).map_err(|reason| Problem::invalid_field(field, reason))
}

/// A top-up's or a withdrawal's amount and PIN, checked: the two take the same body.
fn funding_request(wallet: &Wallet, request: &TopupRequest) -> Result<(Money, Option<Pin>), Problem> {
    let money = wallet.money(request.amount, &request.currency)?;
    let pin = pin_field(request.pin.as_deref(), "pin")?;
    Ok((money, pin))
}

/// The optional `Idempotency-Key` header of a money-moving request.
#[derive(Debug, Clone)]
pub struct IdempotencyKeyHeader(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else { return Ok(Self(None)) };
        let text = value.to_str().map_err(|_| Problem::invalid_field("Idempotency-Key", "not printable ASCII"))?;
        IdempotencyKey::parse(text)
            .map(|key| Self(Some(key)))
            .map_err(|reason| Problem::invalid_field("Idempotency-Key", reason))
    }
}

/// An amount of money: `amount` is an integer count of minor units (cents for USD).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Money)]
pub struct MoneyBody {
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    /// ISO 4217, one the server enables (`PLAZA_CURRENCIES`).
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub currency: String,
    /// Spendable now, in minor units.
    pub available: i64,
    /// Held for services by payment intents, in minor units.
    pub held: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WalletView {
    pub balances: Vec<BalanceView>,
}

/// One movement in or out of the caller's wallet.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WalletEntry)]
pub struct EntryView {
    pub id: String,
    /// Movements of one ledger transaction share it.
    pub transaction_id: String,
    /// `topup`, `withdrawal`, `transfer`, `red_packet`, `red_packet_claim`, `red_packet_refund`,
    /// `payment_hold`, `payment_capture`, `payment_release`, `payment_refund`, `miniapp_payment`
    /// or `miniapp_refund`.
    pub kind: String,
    /// `in` or `out` of the caller's wallet.
    pub direction: String,
    /// Always positive, in minor units.
    pub amount: i64,
    pub currency: String,
    /// `user` or a system account: `funding`, `fees`, `escrow`, `red_packets`.
    pub counterparty: String,
    /// The other user, when the counterparty is one.
    pub counterparty_user_id: Option<String>,
    /// What the money moved for: `transfer:<id>`, `red_packet:<id>`, `payment_intent:<id>`, `topup:<ref>`, …
    pub reference: String,
    pub note: Option<String>,
    pub created_at: String,
}

impl From<Entry> for EntryView {
    fn from(entry: Entry) -> Self {
        Self {
            id: entry.id,
            transaction_id: entry.transaction_id,
            kind: entry.kind,
            direction: entry.direction,
            amount: entry.amount,
            currency: entry.currency,
            counterparty: entry.counterparty,
            counterparty_user_id: entry.counterparty_user_id,
            reference: entry.reference,
            note: entry.note,
            created_at: Timestamp::from_unix_millis(entry.created_at_ms).to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryPage {
    /// Newest first.
    pub items: Vec<EntryView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Transfer)]
pub struct TransferView {
    pub id: String,
    pub from_user_id: String,
    pub to_user_id: String,
    pub amount: i64,
    pub currency: String,
    pub note: Option<String>,
    pub conversation_id: Option<String>,
    /// The `transfer` message posted in the conversation, if one was named.
    pub message_id: Option<String>,
    pub created_at: String,
}

impl From<Transfer> for TransferView {
    fn from(transfer: Transfer) -> Self {
        Self {
            id: transfer.id,
            from_user_id: transfer.from_user_id,
            to_user_id: transfer.to_user_id,
            amount: transfer.amount,
            currency: transfer.currency,
            note: transfer.note,
            conversation_id: transfer.conversation_id,
            message_id: transfer.message_id,
            created_at: Timestamp::from_unix_millis(transfer.created_at_ms).to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RedPacketClaim)]
pub struct ClaimView {
    pub user_id: String,
    pub amount: i64,
    pub currency: String,
    pub claimed_at: String,
}

impl From<RedPacketClaim> for ClaimView {
    fn from(claim: RedPacketClaim) -> Self {
        Self {
            user_id: claim.user_id,
            amount: claim.amount,
            currency: claim.currency,
            claimed_at: Timestamp::from_unix_millis(claim.claimed_at_ms).to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RedPacket)]
pub struct RedPacketView {
    pub id: String,
    pub sender_id: String,
    pub conversation_id: String,
    pub total: MoneyBody,
    pub count: i64,
    /// `lucky` or `equal`.
    pub mode: String,
    pub greeting: Option<String>,
    /// The `red_packet` message in the conversation.
    pub message_id: Option<String>,
    pub claimed_count: i64,
    pub claimed_amount: i64,
    pub created_at: String,
    /// When unclaimed money goes back to the sender.
    pub expires_at: String,
    pub refunded_at: Option<String>,
    pub refunded_amount: Option<i64>,
    pub claims: Vec<ClaimView>,
}

impl From<RedPacket> for RedPacketView {
    fn from(packet: RedPacket) -> Self {
        Self {
            id: packet.id,
            sender_id: packet.sender_id,
            conversation_id: packet.conversation_id,
            total: MoneyBody { amount: packet.total, currency: packet.currency },
            count: packet.count,
            mode: packet.mode.as_str().to_string(),
            greeting: packet.greeting,
            message_id: packet.message_id,
            claimed_count: packet.claimed_count,
            claimed_amount: packet.claimed_amount,
            created_at: Timestamp::from_unix_millis(packet.created_at_ms).to_rfc3339(),
            expires_at: Timestamp::from_unix_millis(packet.expires_at_ms).to_rfc3339(),
            refunded_at: packet.refunded_at_ms.map(|ms| Timestamp::from_unix_millis(ms).to_rfc3339()),
            refunded_amount: packet.refunded_amount,
            claims: packet.claims.into_iter().map(ClaimView::from).collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TopupRequest {
    /// Minor units, a positive integer.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    pub currency: String,
    /// The payment PIN, when one is set.
    pub pin: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TransferBody {
    pub to_user_id: String,
    /// Minor units, a positive integer.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    pub currency: String,
    /// Up to 200 characters.
    pub note: Option<String>,
    /// A conversation both people are in: a `transfer` message is posted there.
    pub conversation_id: Option<String>,
    /// The payment PIN, when one is set.
    pub pin: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PinRequest {
    /// Six digits, as a string.
    #[schema(pattern = "^[0-9]{6}$")]
    pub pin: String,
    /// The PIN in force, to replace it.
    pub current_pin: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateRedPacketRequest {
    pub conversation_id: String,
    pub total: MoneyBody,
    /// 1 to 100 shares; the total must be at least one minor unit per share.
    #[schema(minimum = 1, maximum = 100)]
    pub count: i64,
    /// `lucky` (random shares) or `equal`.
    pub mode: String,
    /// Up to 100 characters.
    pub greeting: Option<String>,
    /// The payment PIN, when one is set.
    pub pin: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimResult {
    /// The share this claim received, in minor units.
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CurrencySumView {
    pub currency: String,
    /// Zero in a sound ledger.
    pub sum: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MismatchView {
    pub account_id: String,
    pub balance: i64,
    /// The balance recomputed from the journal.
    pub journal: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerCheckView {
    pub ok: bool,
    pub currencies: Vec<CurrencySumView>,
    pub accounts_checked: i64,
    pub mismatches: Vec<MismatchView>,
    pub problems: Vec<String>,
}

/// The caller's balances: `available` to spend and `held` for services, per currency.
#[utoipa::path(get, path = "/wallet", tag = "wallet", security(("bearer" = [])),
    responses((status = 200, description = "Balances", body = WalletView)))]
async fn get_wallet(State(wallet): State<Wallet>, current: CurrentUser) -> Result<axum::Json<WalletView>, Problem> {
    let balances = wallet.balances(&current.user).await?;
    Ok(axum::Json(WalletView {
        balances: balances
            .into_iter()
            .map(|balance| BalanceView { currency: balance.currency, available: balance.available, held: balance.held })
            .collect(),
    }))
}

/// Add money from the funding provider (the sandbox by default), within a daily limit.
#[utoipa::path(post, path = "/wallet/topups", tag = "wallet", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first response")),
    request_body = TopupRequest,
    responses((status = 201, description = "Credited", body = EntryView)))]
async fn create_topup(
    State(wallet): State<Wallet>,
    current: CurrentUser,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(request): ApiJson<TopupRequest>,
) -> Result<Response, Problem> {
    let (money, pin) = funding_request(&wallet, &request)?;
    let (entry, replayed) = wallet.topup(&current.user, money, key.as_ref(), pin.as_ref()).await?;
    Ok(idempotent_answer(StatusCode::CREATED, EntryView::from(entry), replayed))
}

/// Send money out through the funding provider.
#[utoipa::path(post, path = "/wallet/withdrawals", tag = "wallet", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first response")),
    request_body = TopupRequest,
    responses((status = 201, description = "Debited and paid out", body = EntryView)))]
async fn create_withdrawal(
    State(wallet): State<Wallet>,
    current: CurrentUser,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(request): ApiJson<TopupRequest>,
) -> Result<Response, Problem> {
    let (money, pin) = funding_request(&wallet, &request)?;
    let (entry, replayed) = wallet.withdraw(&current.user, money, key.as_ref(), pin.as_ref()).await?;
    Ok(idempotent_answer(StatusCode::CREATED, EntryView::from(entry), replayed))
}

/// Send money to another user, optionally with a `transfer` message in a shared conversation.
#[utoipa::path(post, path = "/wallet/transfers", tag = "wallet", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first response")),
    request_body = TransferBody,
    responses((status = 201, description = "Sent", body = TransferView)))]
async fn create_transfer(
    State(wallet): State<Wallet>,
    current: CurrentUser,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(request): ApiJson<TransferBody>,
) -> Result<Response, Problem> {
    let money = wallet.money(request.amount, &request.currency)?;
    let note =
        parse_text(request.note.as_deref(), NOTE_MAX_CHARS).map_err(|reason| Problem::invalid_field("note", reason))?;
    let pin = pin_field(request.pin.as_deref(), "pin")?;
    let transfer = TransferRequest {
        to_user_id: request.to_user_id,
        money,
        note,
        conversation_id: request.conversation_id.filter(|id| !id.is_empty()),
    };
    let (transfer, replayed) = wallet.transfer(&current.user, transfer, key.as_ref(), pin.as_ref()).await?;
    Ok(idempotent_answer(StatusCode::CREATED, TransferView::from(transfer), replayed))
}

/// The caller's history, newest first.
#[utoipa::path(get, path = "/wallet/transactions", tag = "wallet", security(("bearer" = [])), params(PageParams),
    responses((status = 200, description = "Entries, newest first", body = EntryPage)))]
async fn list_transactions(
    State(wallet): State<Wallet>,
    current: CurrentUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<axum::Json<EntryPage>, Problem> {
    let limit = page_limit(params.limit)?;
    let page = wallet.transactions(&current.user, limit, params.cursor.as_deref()).await?;
    Ok(axum::Json(EntryPage {
        items: page.items.into_iter().map(EntryView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Set a 6-digit payment PIN, or replace it (with `current_pin`).
#[utoipa::path(post, path = "/wallet/pin", tag = "wallet", security(("bearer" = [])), request_body = PinRequest,
    responses((status = 204, description = "The PIN is set")))]
async fn set_pin(
    State(wallet): State<Wallet>,
    current: CurrentUser,
    ApiJson(request): ApiJson<PinRequest>,
) -> Result<StatusCode, Problem> {
    let pin = Pin::parse(&request.pin).map_err(|reason| Problem::invalid_field("pin", reason))?;
    let current_pin = pin_field(request.current_pin.as_deref(), "current_pin")?;
    wallet.set_pin(&current.user, &pin, current_pin.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a red packet into a conversation; posts a `red_packet` message there.
#[utoipa::path(post, path = "/red-packets", tag = "wallet", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first response")),
    request_body = CreateRedPacketRequest,
    responses((status = 201, description = "Sent", body = RedPacketView)))]
async fn create_red_packet(
    State(wallet): State<Wallet>,
    current: CurrentUser,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(request): ApiJson<CreateRedPacketRequest>,
) -> Result<Response, Problem> {
    let total = wallet.money(request.total.amount, &request.total.currency).map_err(|error| match error {
        WalletError::InvalidField { field, reason } => Problem::invalid_field(format!("total.{field}"), reason),
        other => other.into(),
    })?;
    let mode =
        RedPacketMode::parse(&request.mode).ok_or_else(|| Problem::invalid_field("mode", "mode is lucky or equal"))?;
    let greeting = parse_text(request.greeting.as_deref(), GREETING_MAX_CHARS)
        .map_err(|reason| Problem::invalid_field("greeting", reason))?;
    let pin = pin_field(request.pin.as_deref(), "pin")?;
    let packet =
        RedPacketRequest { conversation_id: request.conversation_id, total, count: request.count, mode, greeting };
    let (packet, replayed) = wallet.create_red_packet(&current.user, packet, key.as_ref(), pin.as_ref()).await?;
    Ok(idempotent_answer(StatusCode::CREATED, RedPacketView::from(packet), replayed))
}

/// Claim a share of a red packet in one of your conversations (once per person).
#[utoipa::path(post, path = "/red-packets/{id}/claim", tag = "wallet", security(("bearer" = [])),
    params(("id" = String, Path, description = "Red packet id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key returns the first response")),
    responses((status = 200, description = "Your share", body = ClaimResult)))]
async fn claim_red_packet(
    State(wallet): State<Wallet>,
    current: CurrentUser,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (claim, replayed) = wallet.claim_red_packet(&current.user, &id, key.as_ref()).await?;
    Ok(idempotent_answer(StatusCode::OK, ClaimResult { amount: claim.amount, currency: claim.currency }, replayed))
}

/// A red packet with its claims (members of its conversation only).
#[utoipa::path(get, path = "/red-packets/{id}", tag = "wallet", security(("bearer" = [])),
    params(("id" = String, Path, description = "Red packet id")),
    responses((status = 200, description = "The red packet", body = RedPacketView)))]
async fn get_red_packet(
    State(wallet): State<Wallet>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<axum::Json<RedPacketView>, Problem> {
    Ok(axum::Json(RedPacketView::from(wallet.red_packet(&current.user, &id).await?)))
}

/// Recompute every balance from the journal and check each currency sums to zero (admins only).
#[utoipa::path(get, path = "/admin/ledger/check", tag = "wallet", security(("bearer" = [])),
    responses((status = 200, description = "The result of the check", body = LedgerCheckView)))]
async fn ledger_check(
    State(wallet): State<Wallet>,
    current: CurrentUser,
) -> Result<axum::Json<LedgerCheckView>, Problem> {
    if !current.is_admin {
        return Err(Problem::new(ErrorCode::Forbidden, "only admins may check the ledger"));
    }
    let check = wallet.check().await?;
    Ok(axum::Json(LedgerCheckView {
        ok: check.ok,
        currencies: check
            .currencies
            .into_iter()
            .map(|sum| CurrencySumView { currency: sum.currency, sum: sum.sum })
            .collect(),
        accounts_checked: check.accounts_checked,
        mismatches: check
            .mismatches
            .into_iter()
            .map(|m| MismatchView { account_id: m.account_id, balance: m.balance, journal: m.journal })
            .collect(),
        problems: check.problems,
    }))
}
