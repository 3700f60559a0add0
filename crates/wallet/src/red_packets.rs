//! Red packets: money sent into a conversation in shares that its members claim.
//!
//! The shares are split when the packet is created and stored, so a claim only has to
//! take the next one: `claimed_count` is incremented with a conditional update (`… WHERE
//! claimed_count < share_count`), which hands out share `n` to exactly one claimer on both
//! engines, and a unique `(red_packet_id, claimed_by)` makes a second claim by the same
//! user fail even when both race. In a direct chat a packet is for the other person, so
//! its sender may not claim it (`own_red_packet`); in a group the sender may, as in
//! WeChat. Whether a chat is direct comes from `plaza_chat::Chat`. Unclaimed money returns to the sender through
//! [`Wallet::refund_expired_red_packets`], run by a background task on every node: the
//! refund sets `refunded_at` with a conditional update in the transaction that moves the
//! money, so a packet is refunded once however many nodes or restarts try.
//!
//! A claim also tells the chat, as WeChat does, with a `system` message posted in the
//! claim's transaction: "Ben opened your red packet" for each claim of a packet of at most
//! [`CLAIM_NOTICE_EACH_SHARES_MAX`] shares, and for a bigger one (a big group's) a single
//! line when its last share is taken, so a packet of 200 shares posts one line, not 200.

use crate::idempotency;
use crate::ledger::{self, Account, Posting, SystemAccount};
use crate::model::{os_random, split_equal, split_lucky, IdempotencyKey, RED_PACKET_SHARES_MAX};
use crate::service::{invalid, not_found_as_wallet, wallet_updates, Wallet, WalletError};
use plaza_accounts::User;
use plaza_chat::{ConversationKind, MessageKind};
use plaza_kernel::{Money, Timestamp};
use plaza_store::{is_unique_violation, Any, Row, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How a red packet's total is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedPacketMode {
    /// Random shares (double-mean method).
    Lucky,
    /// Shares as equal as minor units allow.
    Equal,
}

impl RedPacketMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "lucky" => Some(Self::Lucky),
            "equal" => Some(Self::Equal),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lucky => "lucky",
            Self::Equal => "equal",
        }
    }
}

/// A red packet with the claims made so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedPacket {
    pub id: String,
    pub sender_id: String,
    pub conversation_id: String,
    pub currency: String,
    pub total: i64,
    pub count: i64,
    pub mode: RedPacketMode,
    pub greeting: Option<String>,
    pub message_id: Option<String>,
    pub claimed_count: i64,
    pub claimed_amount: i64,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub refunded_at_ms: Option<i64>,
    pub refunded_amount: Option<i64>,
    pub claims: Vec<RedPacketClaim>,
}

/// One claimed share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedPacketClaim {
    pub red_packet_id: String,
    pub user_id: String,
    pub amount: i64,
    pub currency: String,
    pub claimed_at_ms: i64,
}

/// What a new red packet asks for, checked.
#[derive(Debug, Clone)]
pub struct RedPacketRequest {
    pub conversation_id: String,
    pub total: Money,
    pub count: i64,
    pub mode: RedPacketMode,
    pub greeting: Option<String>,
}

/// The shares of a new packet, split by its mode, each at least one minor unit.
fn split_shares(request: &RedPacketRequest) -> Result<Vec<i64>, WalletError> {
    let shares = match request.mode {
        RedPacketMode::Equal => split_equal(request.total.amount(), request.count),
        RedPacketMode::Lucky => split_lucky(request.total.amount(), request.count, &mut os_random),
    }
    .ok_or_else(|| invalid("count", "cannot split the total into that many shares"))?;
    if shares.iter().sum::<i64>() != request.total.amount() || shares.iter().any(|share| *share < 1) {
        return Err(WalletError::Invariant(format!("a bad split of {}: {shares:?}", request.total.amount())));
    }
    Ok(shares)
}

/// The packet's row and its shares, numbered from 1 in the order claims take them.
async fn insert_red_packet(
    transaction: &mut Transaction<'static, Any>,
    id: &str,
    me: &User,
    request: &RedPacketRequest,
    shares: &[i64],
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<(), WalletError> {
    sqlx::query(
        "INSERT INTO wallet_red_packets
         (id, sender_id, conversation_id, currency, total, share_count, mode, greeting, message_id,
          claimed_count, claimed_amount, created_at, expires_at, refunded_at, refunded_amount)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, 0, 0, $9, $10, NULL, NULL)",
    )
    .bind(id)
    .bind(&me.id)
    .bind(&request.conversation_id)
    .bind(request.total.currency().code())
    .bind(request.total.amount())
    .bind(request.count)
    .bind(request.mode.as_str())
    .bind(&request.greeting)
    .bind(now.unix_millis())
    .bind(expires_at.unix_millis())
    .execute(&mut **transaction)
    .await?;
    let rows: Vec<String> =
        (0..shares.len()).map(|n| format!("($1, ${}, ${}, NULL, NULL)", 2 + 2 * n, 3 + 2 * n)).collect();
    let sql = format!(
        "INSERT INTO wallet_red_packet_shares (red_packet_id, share_index, amount, claimed_by, claimed_at) VALUES {}",
        rows.join(", ")
    );
    let mut insert = sqlx::query(&sql).bind(id);
    for (index, share) in shares.iter().enumerate() {
        insert = insert.bind(index as i64 + 1).bind(*share);
    }
    insert.execute(&mut **transaction).await?;
    Ok(())
}

/// Packets with at most this many shares post a chat line for every claim; bigger ones
/// post one, when the last share is taken.
pub const CLAIM_NOTICE_EACH_SHARES_MAX: i64 = 3;

/// The `system` message a claim posts in the packet's chat, if it posts one: its client id
/// (unique per packet and share, so a retried claim cannot post it twice) and its body.
/// Clients word it for the reader from `actor_id` (who claimed) and `owner_id` (who sent).
fn claim_notice(packet: &RedPacket, claimer_id: &str, share_index: i64, now: Timestamp) -> Option<(String, Value)> {
    if packet.count <= CLAIM_NOTICE_EACH_SHARES_MAX {
        let body = json!({
            "event": "red_packet_claimed",
            "actor_id": claimer_id,
            "owner_id": packet.sender_id,
            "red_packet_id": packet.id,
        });
        return Some((format!("wallet:red_packet_claim:{}:{share_index}", packet.id), body));
    }
    let last = share_index == packet.count;
    last.then(|| {
        let body = json!({
            "event": "red_packet_finished",
            "actor_id": claimer_id,
            "owner_id": packet.sender_id,
            "red_packet_id": packet.id,
            "count": packet.count,
            "seconds": (now.unix_millis() - packet.created_at_ms).max(0) / 1000,
        });
        (format!("wallet:red_packet_finished:{}", packet.id), body)
    })
}

/// Packets refunded per batch of the background job.
const REFUND_BATCH: i64 = 100;

impl Wallet {
    /// Sends a red packet into a conversation the sender belongs to.
    pub async fn create_red_packet(
        &self,
        me: &User,
        request: RedPacketRequest,
        key: Option<&IdempotencyKey>,
        pin: Option<&crate::pin::Pin>,
    ) -> Result<(RedPacket, bool), WalletError> {
        if !(1..=RED_PACKET_SHARES_MAX).contains(&request.count) {
            return Err(invalid("count", format!("a red packet has 1 to {RED_PACKET_SHARES_MAX} shares")));
        }
        if request.total.amount() < request.count {
            return Err(invalid("total.amount", "every share needs at least one minor unit: total ≥ count"));
        }
        let canonical = json!({
            "conversation_id": request.conversation_id,
            "amount": request.total.amount(),
            "currency": request.total.currency().code(),
            "count": request.count,
            "mode": request.mode.as_str(),
            "greeting": request.greeting,
        });
        let idempotent = key.map(|key| idempotency::Request::new(&me.id, key, "red_packet", &canonical));
        if let Some(packet) = idempotency::lookup(self.inner.store.read(), idempotent.as_ref()).await? {
            return Ok((packet, true));
        }
        if !self.inner.chat.is_member(me, &request.conversation_id).await? {
            return Err(WalletError::ConversationNotFound);
        }
        self.authorize_payment(me, pin).await?;
        let shares = split_shares(&request)?;

        let mut transaction = self.inner.store.begin().await?;
        if let Some(packet) = idempotency::claim(&mut transaction, idempotent.as_ref()).await? {
            return Ok((packet, true));
        }
        let now = Timestamp::now();
        let id = plaza_kernel::new_id();
        let currency = request.total.currency();
        let posting = Posting::new("red_packet", currency, format!("red_packet:{id}"))
            .with_transaction_id(&id)
            .with_note(request.greeting.clone())
            .movement(Account::user(&me.id), Account::System(SystemAccount::RedPackets), request.total.amount());
        let states = ledger::post(&mut transaction, &posting).await?;
        let expires_at = now.plus(self.inner.config.red_packet_refund_after);
        insert_red_packet(&mut transaction, &id, me, &request, &shares, now, expires_at).await?;

        let (message_id, mut appended) = self.post_red_packet_message(&mut transaction, &id, me, &request).await?;
        appended.merge(
            self.append_events(&mut transaction, wallet_updates(&states, currency, posting.kind, &posting.reference))
                .await?,
        );
        let packet = RedPacket {
            id: id.clone(),
            sender_id: me.id.clone(),
            conversation_id: request.conversation_id.clone(),
            currency: currency.code().to_string(),
            total: request.total.amount(),
            count: request.count,
            mode: request.mode,
            greeting: request.greeting.clone(),
            message_id: Some(message_id),
            claimed_count: 0,
            claimed_amount: 0,
            created_at_ms: now.unix_millis(),
            expires_at_ms: expires_at.unix_millis(),
            refunded_at_ms: None,
            refunded_amount: None,
            claims: Vec::new(),
        };
        idempotency::complete(&mut transaction, idempotent.as_ref(), &packet).await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok((packet, false))
    }

    /// The packet's `red_packet` message in its conversation, linked from the packet's row.
    async fn post_red_packet_message(
        &self,
        transaction: &mut Transaction<'static, Any>,
        id: &str,
        me: &User,
        request: &RedPacketRequest,
    ) -> Result<(String, plaza_events::Appended), WalletError> {
        let body = json!({
            "red_packet_id": id,
            "amount": request.total.amount(),
            "currency": request.total.currency().code(),
            "count": request.count,
            "mode": request.mode.as_str(),
            "greeting": request.greeting,
        });
        let (message, appended) = self
            .inner
            .chat
            .post_in_transaction(
                transaction,
                &request.conversation_id,
                &me.id,
                &format!("wallet:red_packet:{id}"),
                MessageKind::RedPacket,
                &body,
            )
            .await
            .map_err(not_found_as_wallet)?;
        sqlx::query("UPDATE wallet_red_packets SET message_id = $2 WHERE id = $1")
            .bind(id)
            .bind(&message.id)
            .execute(&mut **transaction)
            .await?;
        Ok((message.id, appended))
    }

    /// Claims the next share of a red packet for `me`, a member of its conversation.
    pub async fn claim_red_packet(
        &self,
        me: &User,
        red_packet_id: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<(RedPacketClaim, bool), WalletError> {
        let canonical = json!({"red_packet_id": red_packet_id});
        let idempotent = key.map(|key| idempotency::Request::new(&me.id, key, "red_packet.claim", &canonical));
        if let Some(claim) = idempotency::lookup(self.inner.store.read(), idempotent.as_ref()).await? {
            return Ok((claim, true));
        }
        let packet = self.red_packet_for_member(me, red_packet_id).await?;
        // An expired packet is answered as expired, whoever asks.
        let open = packet.refunded_at_ms.is_none() && packet.expires_at_ms > Timestamp::now().unix_millis();
        if packet.sender_id == me.id && open && self.is_direct(me, &packet.conversation_id).await? {
            return Err(WalletError::OwnRedPacket);
        }
        let mut transaction = self.inner.store.begin().await?;
        if let Some(claim) = idempotency::claim(&mut transaction, idempotent.as_ref()).await? {
            return Ok((claim, true));
        }
        let now = Timestamp::now();
        let (share_index, amount) = take_share(&mut transaction, red_packet_id, &me.id, now).await?;
        let currency = self.stored_currency(&packet.currency)?;
        let posting = Posting::new("red_packet_claim", currency, format!("red_packet:{red_packet_id}")).movement(
            Account::System(SystemAccount::RedPackets),
            Account::user(&me.id),
            amount,
        );
        let states = ledger::post(&mut transaction, &posting).await?;
        // The chat line goes before the wallet's events, so cursors are locked in the
        // order every transaction that posts a message and moves money takes them.
        let mut appended = plaza_events::Appended::default();
        if let Some((client_id, body)) = claim_notice(&packet, &me.id, share_index, now) {
            let (_, posted) = self
                .inner
                .chat
                .post_in_transaction(
                    &mut transaction,
                    &packet.conversation_id,
                    &me.id,
                    &client_id,
                    MessageKind::System,
                    &body,
                )
                .await
                .map_err(not_found_as_wallet)?;
            appended = posted;
        }
        let claim = RedPacketClaim {
            red_packet_id: red_packet_id.to_string(),
            user_id: me.id.clone(),
            amount,
            currency: packet.currency.clone(),
            claimed_at_ms: now.unix_millis(),
        };
        let mut events = wallet_updates(&states, currency, posting.kind, &posting.reference);
        events.push((
            packet.sender_id.clone(),
            "red_packet.claimed",
            json!({
                "red_packet_id": red_packet_id,
                "conversation_id": packet.conversation_id,
                "user_id": me.id,
                "amount": amount,
                "currency": packet.currency,
                "claimed_count": share_index,
                "count": packet.count,
            }),
        ));
        appended.merge(self.append_events(&mut transaction, events).await?);
        idempotency::complete(&mut transaction, idempotent.as_ref(), &claim).await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok((claim, false))
    }

    /// A red packet and its claims, for members of its conversation.
    pub async fn red_packet(&self, me: &User, red_packet_id: &str) -> Result<RedPacket, WalletError> {
        let mut packet = self.red_packet_for_member(me, red_packet_id).await?;
        let rows = sqlx::query(
            "SELECT claimed_by, amount, claimed_at FROM wallet_red_packet_shares
             WHERE red_packet_id = $1 AND claimed_by IS NOT NULL ORDER BY claimed_at, share_index",
        )
        .bind(red_packet_id)
        .fetch_all(self.inner.store.read())
        .await?;
        packet.claims = rows
            .iter()
            .map(|row| {
                Ok(RedPacketClaim {
                    red_packet_id: red_packet_id.to_string(),
                    user_id: row.try_get("claimed_by")?,
                    amount: row.try_get("amount")?,
                    currency: packet.currency.clone(),
                    claimed_at_ms: row.try_get("claimed_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(packet)
    }

    /// Returns the unclaimed money of every red packet past its expiry to its sender, and
    /// says how many packets it refunded. Safe to run on many nodes at once and again
    /// after a crash: each refund is decided by a conditional update of `refunded_at` in
    /// the transaction that moves the money.
    pub async fn refund_expired_red_packets(&self) -> Result<usize, WalletError> {
        let mut refunded = 0;
        loop {
            let now = Timestamp::now();
            let due: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM wallet_red_packets WHERE refunded_at IS NULL AND expires_at <= $1
                 ORDER BY expires_at LIMIT $2",
            )
            .bind(now.unix_millis())
            .bind(REFUND_BATCH)
            .fetch_all(self.inner.store.read())
            .await?;
            for id in &due {
                if self.refund_red_packet(id, now).await? {
                    refunded += 1;
                }
            }
            if (due.len() as i64) < REFUND_BATCH {
                return Ok(refunded);
            }
        }
    }

    async fn refund_red_packet(&self, id: &str, now: Timestamp) -> Result<bool, WalletError> {
        let mut transaction = self.inner.store.begin().await?;
        let row = sqlx::query(
            "UPDATE wallet_red_packets SET refunded_at = $2, refunded_amount = total - claimed_amount
             WHERE id = $1 AND refunded_at IS NULL AND expires_at <= $2
             RETURNING sender_id, currency, refunded_amount",
        )
        .bind(id)
        .bind(now.unix_millis())
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(row) = row else {
            // Another node (or an earlier run) refunded it first.
            return Ok(false);
        };
        let sender_id: String = row.try_get("sender_id")?;
        let currency = self.stored_currency(&row.try_get::<String, _>("currency")?)?;
        let amount: i64 = row.try_get("refunded_amount")?;
        let mut appended = plaza_events::Appended::default();
        if amount > 0 {
            let posting = Posting::new("red_packet_refund", currency, format!("red_packet:{id}")).movement(
                Account::System(SystemAccount::RedPackets),
                Account::user(&sender_id),
                amount,
            );
            let states = ledger::post(&mut transaction, &posting).await?;
            appended = self
                .append_events(&mut transaction, wallet_updates(&states, currency, posting.kind, &posting.reference))
                .await?;
        }
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok(true)
    }

    /// Runs the wallet's background work every `job_interval` until the task is dropped:
    /// red-packet refunds, and forgetting idempotency keys past their retention.
    pub async fn run_jobs(self) {
        let mut every = tokio::time::interval(self.inner.config.job_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(error) = self.refund_expired_red_packets().await {
                tracing::warn!("red-packet refunds failed (retried at the next run): {error}");
            }
            let retention = self.inner.config.idempotency_retention.as_millis() as i64;
            if let Err(error) = idempotency::prune(self.inner.store.write(), retention).await {
                tracing::warn!("pruning idempotency keys failed: {error}");
            }
        }
    }

    async fn red_packet_for_member(&self, me: &User, red_packet_id: &str) -> Result<RedPacket, WalletError> {
        let row = sqlx::query(
            "SELECT id, sender_id, conversation_id, currency, total, share_count, mode, greeting, message_id,
                    claimed_count, claimed_amount, created_at, expires_at, refunded_at, refunded_amount
             FROM wallet_red_packets WHERE id = $1",
        )
        .bind(red_packet_id)
        .fetch_optional(self.inner.store.read())
        .await?
        .ok_or(WalletError::RedPacketNotFound)?;
        let conversation_id: String = row.try_get("conversation_id")?;
        if !self.inner.chat.is_member(me, &conversation_id).await? {
            return Err(WalletError::RedPacketNotFound);
        }
        let mode: String = row.try_get("mode")?;
        Ok(RedPacket {
            id: row.try_get("id")?,
            sender_id: row.try_get("sender_id")?,
            conversation_id,
            currency: row.try_get("currency")?,
            total: row.try_get("total")?,
            count: row.try_get("share_count")?,
            mode: RedPacketMode::parse(&mode).ok_or_else(|| WalletError::Invariant(format!("mode {mode:?}")))?,
            greeting: row.try_get("greeting")?,
            message_id: row.try_get("message_id")?,
            claimed_count: row.try_get("claimed_count")?,
            claimed_amount: row.try_get("claimed_amount")?,
            created_at_ms: row.try_get("created_at")?,
            expires_at_ms: row.try_get("expires_at")?,
            refunded_at_ms: row.try_get("refunded_at")?,
            refunded_amount: row.try_get("refunded_amount")?,
            claims: Vec::new(),
        })
    }

    /// Whether a conversation `me` belongs to is a direct (one-to-one) chat, as chat says.
    async fn is_direct(&self, me: &User, conversation_id: &str) -> Result<bool, WalletError> {
        let conversation = self.inner.chat.conversation(me, conversation_id).await.map_err(not_found_as_wallet)?;
        Ok(conversation.kind == ConversationKind::Direct)
    }

    /// A currency read back from the database: known to this build even if no longer
    /// enabled (money already in the ledger must still be able to move home).
    pub(crate) fn stored_currency(&self, code: &str) -> Result<plaza_kernel::Currency, WalletError> {
        plaza_kernel::Currency::parse(code).ok_or_else(|| WalletError::Invariant(format!("unknown currency {code:?}")))
    }
}

/// Takes the next share of a red packet for `me` inside the claim's transaction, with
/// the packet's counter as the one conditional update every claimer races on; answers the
/// share's index and amount, or why there is none (claimed already, empty or expired).
async fn take_share(
    transaction: &mut Transaction<'static, Any>,
    red_packet_id: &str,
    me: &str,
    now: Timestamp,
) -> Result<(i64, i64), WalletError> {
    let mine: Option<i64> =
        sqlx::query_scalar("SELECT amount FROM wallet_red_packet_shares WHERE red_packet_id = $1 AND claimed_by = $2")
            .bind(red_packet_id)
            .bind(me)
            .fetch_optional(&mut **transaction)
            .await?;
    if mine.is_some() {
        return Err(WalletError::AlreadyClaimed);
    }
    let taken: Option<i64> = sqlx::query_scalar(
        "UPDATE wallet_red_packets SET claimed_count = claimed_count + 1
         WHERE id = $1 AND claimed_count < share_count AND refunded_at IS NULL AND expires_at > $2
         RETURNING claimed_count",
    )
    .bind(red_packet_id)
    .bind(now.unix_millis())
    .fetch_optional(&mut **transaction)
    .await?;
    let Some(share_index) = taken else {
        let row = sqlx::query(
            "SELECT claimed_count, share_count, refunded_at, expires_at FROM wallet_red_packets WHERE id = $1",
        )
        .bind(red_packet_id)
        .fetch_one(&mut **transaction)
        .await?;
        let (claimed, count): (i64, i64) = (row.try_get("claimed_count")?, row.try_get("share_count")?);
        return Err(if claimed >= count { WalletError::RedPacketEmpty } else { WalletError::RedPacketExpired });
    };
    let amount: Option<i64> = match sqlx::query_scalar(
        "UPDATE wallet_red_packet_shares SET claimed_by = $3, claimed_at = $4
         WHERE red_packet_id = $1 AND share_index = $2 AND claimed_by IS NULL RETURNING amount",
    )
    .bind(red_packet_id)
    .bind(share_index)
    .bind(me)
    .bind(now.unix_millis())
    .fetch_optional(&mut **transaction)
    .await
    {
        // The same user claiming twice at once: the unique (packet, claimer) stops the second.
        Err(error) if is_unique_violation(&error) => return Err(WalletError::AlreadyClaimed),
        other => other?,
    };
    let amount = amount.ok_or_else(|| WalletError::Invariant(format!("share {share_index} was already taken")))?;
    sqlx::query("UPDATE wallet_red_packets SET claimed_amount = claimed_amount + $2 WHERE id = $1")
        .bind(red_packet_id)
        .bind(amount)
        .execute(&mut **transaction)
        .await?;
    Ok((share_index, amount))
}
