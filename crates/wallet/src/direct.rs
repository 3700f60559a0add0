//! Direct payments: money a service moves from a payer to a payee at once, with a fee,
//! inside the service's own transaction, and refunds of them.
//!
//! A mini-app's pay order is one: the user's confirmation pays the developer there and
//! then, and the order's status and its webhook outbox row must commit with the money or
//! not at all. Payment intents cannot give that (each runs its own transaction, because
//! it holds first and captures later), so this is the wallet's other public way to take
//! payment. The caller keeps the record of what was paid and refunded (and the
//! conditional update that serialises it); the wallet moves the money and appends each
//! touched user's `wallet.updated`. A payer without the money fails with
//! `InsufficientFunds` and the caller's transaction must roll back.

use crate::ledger::{self, Account, Posting, SystemAccount};
use crate::service::{invalid, wallet_updates, Wallet, WalletError};
use plaza_events::Appended;
use plaza_kernel::{Currency, Money};
use plaza_store::{Any, Transaction};

/// A payment to make now.
#[derive(Debug, Clone)]
pub struct DirectPayment<'a> {
    pub payer_id: &'a str,
    pub payee_id: &'a str,
    pub money: Money,
    /// Of `money`, what goes to the fees account instead of the payee.
    pub fee: i64,
    /// What the money moved for, as the wallet's history shows it (`miniapp_order:<id>`).
    pub reference: String,
    pub note: Option<String>,
}

/// A refund of part of a direct payment. The caller says what was paid and what was
/// refunded before, from its own record, read in the same transaction under its lock.
#[derive(Debug, Clone)]
pub struct DirectRefund<'a> {
    pub payer_id: &'a str,
    pub payee_id: &'a str,
    pub currency: Currency,
    pub amount: i64,
    pub paid: i64,
    pub fee: i64,
    pub refunded_before: i64,
    pub reference: String,
}

/// The ledger kinds of direct payments, as the wallet's history names them.
pub const DIRECT_PAYMENT_KIND: &str = "miniapp_payment";
pub const DIRECT_REFUND_KIND: &str = "miniapp_refund";

impl Wallet {
    /// Pays `payment.money` from the payer, `fee` of it to the fees account and the rest
    /// to the payee, in `transaction`. A payer who is also the payee pays only the fee.
    pub async fn pay_in_transaction(
        &self,
        transaction: &mut Transaction<'static, Any>,
        payment: &DirectPayment<'_>,
    ) -> Result<Appended, WalletError> {
        let amount = payment.money.amount();
        if amount < 1 {
            return Err(invalid("amount", "pay at least one minor unit"));
        }
        if !(0..=amount).contains(&payment.fee) {
            return Err(invalid("fee", "the fee is between zero and the amount paid"));
        }
        let payee_share = if payment.payer_id == payment.payee_id { 0 } else { amount - payment.fee };
        let posting = Posting::new(DIRECT_PAYMENT_KIND, payment.money.currency(), payment.reference.clone())
            .with_note(payment.note.clone())
            .movement(Account::user(payment.payer_id), Account::user(payment.payee_id), payee_share)
            .movement(Account::user(payment.payer_id), Account::System(SystemAccount::Fees), payment.fee);
        self.post_direct(transaction, &posting).await
    }

    /// Returns `refund.amount` to the payer: from the payee's share first, then from the
    /// fee, as payment intents refund. The caller has checked that the refunds stay within
    /// what was paid; the payee must still have their part (402 otherwise).
    pub async fn refund_in_transaction(
        &self,
        transaction: &mut Transaction<'static, Any>,
        refund: &DirectRefund<'_>,
    ) -> Result<Appended, WalletError> {
        if refund.amount < 1 {
            return Err(invalid("amount", "refund at least one minor unit"));
        }
        if refund.refunded_before < 0 || refund.refunded_before + refund.amount > refund.paid {
            return Err(invalid("amount", "a refund cannot take back more than was paid"));
        }
        let (from_payee, from_fee) = refund_split(refund);
        let (payee, payer) = (Account::user(refund.payee_id), Account::user(refund.payer_id));
        let posting = Posting::new(DIRECT_REFUND_KIND, refund.currency, refund.reference.clone())
            .movement(payee, payer.clone(), from_payee)
            .movement(Account::System(SystemAccount::Fees), payer, from_fee);
        self.post_direct(transaction, &posting).await
    }

    async fn post_direct(
        &self,
        transaction: &mut Transaction<'static, Any>,
        posting: &Posting,
    ) -> Result<Appended, WalletError> {
        let states = ledger::post(transaction, posting).await?;
        self.append_events(transaction, wallet_updates(&states, posting.currency, posting.kind, &posting.reference))
            .await
    }
}

/// How much of a refund comes back from the payee and how much from the fee: the payee's
/// share is used up first. A payer who was the payee paid only the fee, so all of it
/// comes from there.
fn refund_split(refund: &DirectRefund<'_>) -> (i64, i64) {
    if refund.payer_id == refund.payee_id {
        let fee_left = (refund.fee - refund.refunded_before).max(0);
        return (0, refund.amount.min(fee_left));
    }
    let payee_share_left = (refund.paid - refund.fee - refund.refunded_before).max(0);
    let from_payee = refund.amount.min(payee_share_left);
    (from_payee, refund.amount - from_payee)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refund(amount: i64, refunded_before: i64) -> DirectRefund<'static> {
        DirectRefund {
            payer_id: "payer",
            payee_id: "payee",
            currency: Currency::parse("USD").unwrap_or_else(|| unreachable!()),
            amount,
            paid: 1_000,
            fee: 10,
            refunded_before,
            reference: "r".into(),
        }
    }

    #[test]
    fn a_refund_takes_the_payees_share_first_and_then_the_fee() {
        assert_eq!(refund_split(&refund(500, 0)), (500, 0));
        assert_eq!(refund_split(&refund(1_000, 0)), (990, 10));
        assert_eq!(refund_split(&refund(15, 980)), (10, 5));
        assert_eq!(refund_split(&refund(5, 995)), (0, 5));
    }

    #[test]
    fn a_payer_who_was_the_payee_gets_back_at_most_the_fee() {
        let mut own = refund(1_000, 0);
        own.payee_id = "payer";
        assert_eq!(refund_split(&own), (0, 10));
    }
}
