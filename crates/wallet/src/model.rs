//! The wallet vocabulary, each type built only by its `parse`, and the pure parts of the
//! domain (how a red packet is split) that are easiest to trust when tested alone.

use plaza_kernel::{Currency, Money};
use std::future::Future;
use std::pin::Pin as BoxedPin;

/// An `Idempotency-Key`: 1–128 printable ASCII characters without spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() || raw.len() > Self::MAX_CHARS || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("an Idempotency-Key has 1 to 128 printable ASCII characters without spaces");
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text that travels with money (a transfer's note, a red packet's greeting): at
/// most `max_chars` characters after trimming, no control characters; empty means none.
pub fn parse_text(raw: Option<&str>, max_chars: usize) -> Result<Option<String>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.chars().count() > max_chars {
        return Err(format!("at most {max_chars} characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err("no control characters".to_string());
    }
    Ok(Some(trimmed.to_string()))
}

pub const NOTE_MAX_CHARS: usize = 200;
pub const GREETING_MAX_CHARS: usize = 100;
pub const DESCRIPTION_MAX_CHARS: usize = 200;

/// Checks an amount and a currency code from a request against the enabled currencies.
/// The error names the field at fault.
pub fn parse_money(amount: i64, currency: &str, enabled: &[Currency]) -> Result<Money, (&'static str, String)> {
    let currency = Currency::parse(currency)
        .filter(|known| enabled.contains(known))
        .ok_or_else(|| ("currency", format!("{currency:?} is not a currency this server accepts")))?;
    Money::new(amount, currency).map_err(|error| ("amount", format!("{error} (in minor units, an integer)")))
}

/// The most shares a red packet may have.
pub const RED_PACKET_SHARES_MAX: i64 = 100;

/// Splits `total` into `count` shares of at least one minor unit each that sum exactly to
/// `total`: equal shares differ by at most one unit (the remainder goes to the first).
pub fn split_equal(total: i64, count: i64) -> Option<Vec<i64>> {
    if count < 1 || total < count {
        return None;
    }
    let base = total / count;
    let remainder = total % count;
    Some((0..count).map(|index| base + i64::from(index < remainder)).collect())
}

/// Splits `total` into `count` random shares by the double-mean method: each share but the
/// last is drawn uniformly from 1 to twice the mean of what is left (bounded so that every
/// later share can still get one unit), the last takes the rest; the shares are then
/// shuffled so that claiming early or late is no advantage.
pub fn split_lucky(total: i64, count: i64, random: &mut impl FnMut() -> u64) -> Option<Vec<i64>> {
    if count < 1 || total < count {
        return None;
    }
    let mut shares = Vec::with_capacity(count as usize);
    let mut remaining = total;
    for left in (1..=count).rev() {
        if left == 1 {
            shares.push(remaining);
            break;
        }
        let upper = (2 * (remaining / left)).min(remaining - (left - 1)).max(1);
        let share = 1 + uniform_below(upper as u64, random) as i64;
        shares.push(share);
        remaining -= share;
    }
    for index in (1..shares.len()).rev() {
        let other = uniform_below(index as u64 + 1, random) as usize;
        shares.swap(index, other);
    }
    Some(shares)
}

/// A uniform number in `0..bound` (bound ≥ 1), without modulo bias.
fn uniform_below(bound: u64, random: &mut impl FnMut() -> u64) -> u64 {
    let zone = u64::MAX - (u64::MAX % bound);
    loop {
        let value = random();
        if value < zone {
            return value % bound;
        }
    }
}

/// Randomness from the operating system, for splitting red packets (a predictable split
/// would let a client claim when the big share is next).
pub fn os_random() -> u64 {
    u64::from_le_bytes(plaza_kernel::random_token_bytes::<8>())
}

/// What a funding provider answers when it has moved money in or out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundingReceipt {
    /// The provider's reference for the payment, recorded in the journal.
    pub reference: String,
}

pub type FundingFuture<'a> = BoxedPin<Box<dyn Future<Output = Result<FundingReceipt, String>> + Send + 'a>>;

/// Where top-ups come from and withdrawals go: a card processor, a bank, or (by default)
/// the sandbox. Each call carries the request's idempotency key, so that a provider that
/// deduplicates by key (as real ones do) charges a retried top-up once.
pub trait FundingProvider: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// Takes `money` from the user's outside funding source.
    fn charge<'a>(&'a self, user_id: &'a str, money: Money, key: &'a str) -> FundingFuture<'a>;
    /// Sends `money` to the user's outside account.
    fn payout<'a>(&'a self, user_id: &'a str, money: Money, key: &'a str) -> FundingFuture<'a>;
}

/// The built-in provider for development and tests: every charge and payout succeeds at
/// once. (The per-user daily cap on top-ups is the wallet's, so it applies to any provider.)
#[derive(Debug, Clone, Copy, Default)]
pub struct SandboxFunding;

impl FundingProvider for SandboxFunding {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn charge<'a>(&'a self, _user_id: &'a str, _money: Money, key: &'a str) -> FundingFuture<'a> {
        Box::pin(async move { Ok(FundingReceipt { reference: format!("sandbox:charge:{key}") }) })
    }

    fn payout<'a>(&'a self, _user_id: &'a str, _money: Money, key: &'a str) -> FundingFuture<'a> {
        Box::pin(async move { Ok(FundingReceipt { reference: format!("sandbox:payout:{key}") }) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            state ^ (state >> 29)
        }
    }

    #[test]
    fn lucky_splits_sum_exactly_and_give_everyone_at_least_one_unit() {
        let mut random = seeded(7);
        for (total, count) in [(1, 1), (100, 100), (101, 100), (1_000, 7), (1_000_000_000_000, 100), (5, 3)] {
            for _ in 0..200 {
                let shares = split_lucky(total, count, &mut random).expect("valid split");
                assert_eq!(shares.len() as i64, count);
                assert_eq!(shares.iter().sum::<i64>(), total);
                assert!(shares.iter().all(|share| *share >= 1), "{shares:?}");
            }
        }
        assert_eq!(split_lucky(99, 100, &mut random), None);
        assert_eq!(split_lucky(10, 0, &mut random), None);
    }

    #[test]
    fn lucky_splits_vary() {
        let mut random = seeded(11);
        let first = split_lucky(10_000, 10, &mut random).expect("split");
        let second = split_lucky(10_000, 10, &mut random).expect("split");
        assert_ne!(first, second);
    }

    #[test]
    fn equal_splits_differ_by_at_most_one_unit() {
        assert_eq!(split_equal(10, 3), Some(vec![4, 3, 3]));
        assert_eq!(split_equal(9, 3), Some(vec![3, 3, 3]));
        assert_eq!(split_equal(2, 3), None);
        assert_eq!(split_equal(100, 100).map(|s| s.iter().sum::<i64>()), Some(100));
    }

    #[test]
    fn pins_and_keys_are_checked() {
        use crate::pin::Pin;
        assert!(Pin::parse("012345").is_ok());
        for bad in ["12345", "1234567", "12345a", "", "12 345"] {
            assert!(Pin::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", Pin::parse("123456").expect("pin")), "Pin(******)");
        assert!(IdempotencyKey::parse("transfer-1").is_ok());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(129)).is_err());
    }

    #[test]
    fn money_from_requests_checks_the_currency_and_the_amount() {
        let usd = Currency::parse("USD").expect("usd");
        let enabled = [usd];
        assert!(parse_money(1, "USD", &enabled).is_ok());
        assert_eq!(parse_money(0, "USD", &enabled).map_err(|e| e.0), Err("amount"));
        assert_eq!(parse_money(-5, "USD", &enabled).map_err(|e| e.0), Err("amount"));
        assert_eq!(parse_money(Money::MAX_MINOR + 1, "USD", &enabled).map_err(|e| e.0), Err("amount"));
        assert_eq!(parse_money(5, "EUR", &enabled).map_err(|e| e.0), Err("currency"));
        assert_eq!(parse_money(5, "XYZ", &enabled).map_err(|e| e.0), Err("currency"));
    }
}
