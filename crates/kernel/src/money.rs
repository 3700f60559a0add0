//! Money is an `i64` count of a currency's minor units (cents for USD, yen for JPY) and
//! never a float. A currency is an ISO 4217 code with its minor-unit exponent; the set
//! of currencies an operator enables is configuration, the catalogue of known ones is here.

use serde::Serialize;

/// An ISO 4217 currency this build knows, with its minor-unit exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

/// The currencies Plaza knows about. Operators enable a subset.
const KNOWN: &[Currency] = &[
    Currency { code: "USD", exponent: 2 },
    Currency { code: "EUR", exponent: 2 },
    Currency { code: "GBP", exponent: 2 },
    Currency { code: "CNY", exponent: 2 },
    Currency { code: "HKD", exponent: 2 },
    Currency { code: "SGD", exponent: 2 },
    Currency { code: "IDR", exponent: 2 },
    Currency { code: "MYR", exponent: 2 },
    Currency { code: "THB", exponent: 2 },
    Currency { code: "INR", exponent: 2 },
    Currency { code: "BRL", exponent: 2 },
    Currency { code: "JPY", exponent: 0 },
    Currency { code: "KRW", exponent: 0 },
    Currency { code: "VND", exponent: 0 },
    Currency { code: "KWD", exponent: 3 },
];

impl Currency {
    /// The currency with this ISO 4217 code, if Plaza knows it.
    pub fn parse(code: &str) -> Option<Self> {
        KNOWN.iter().copied().find(|known| known.code == code)
    }

    pub fn code(self) -> &'static str {
        self.code
    }

    /// How many decimal digits the minor unit has (2 for USD, 0 for JPY).
    pub fn exponent(self) -> u8 {
        self.exponent
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be positive")]
    NotPositive,
    #[error("amount must be at most {max}")]
    TooLarge { max: i64 },
}

/// A positive amount of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Money {
    amount: i64,
    #[serde(serialize_with = "serialize_currency")]
    currency: Currency,
}

impl Money {
    /// The largest single amount the platform accepts: far below `i64::MAX` so that sums
    /// of many amounts cannot overflow.
    pub const MAX_MINOR: i64 = 1_000_000_000_000;

    pub fn new(amount: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount <= 0 {
            return Err(MoneyError::NotPositive);
        }
        if amount > Self::MAX_MINOR {
            return Err(MoneyError::TooLarge { max: Self::MAX_MINOR });
        }
        Ok(Self { amount, currency })
    }

    pub fn amount(self) -> i64 {
        self.amount
    }

    pub fn currency(self) -> Currency {
        self.currency
    }
}

fn serialize_currency<S: serde::Serializer>(currency: &Currency, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(currency.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_positive_minor_units_of_a_known_currency() {
        let usd = Currency::parse("USD").expect("known");
        assert_eq!(usd.exponent(), 2);
        assert_eq!(Currency::parse("JPY").map(Currency::exponent), Some(0));
        assert_eq!(Currency::parse("usd"), None);
        assert_eq!(Money::new(0, usd), Err(MoneyError::NotPositive));
        assert_eq!(Money::new(-1, usd), Err(MoneyError::NotPositive));
        assert!(Money::new(Money::MAX_MINOR + 1, usd).is_err());
        let money = Money::new(1250, usd).expect("valid");
        assert_eq!(serde_json_like(&money), "1250 USD");
    }

    fn serde_json_like(money: &Money) -> String {
        format!("{} {}", money.amount(), money.currency().code())
    }
}
