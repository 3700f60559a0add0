//! Shares of an amount as the operator configures them: a platform's fee in basis points,
//! a margin or a threshold in percent. Each is a type, so that a fee is never multiplied
//! by a percentage, and each is applied to minor units by one function with its rounding
//! stated, instead of `amount * bps / 10_000` written out (and clamped, or not) at every
//! place that takes a fee.

use serde::Serialize;

/// A share in basis points (hundredths of a percent), from 0 to 10 000 (all of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BasisPoints(u16);

impl BasisPoints {
    pub const ALL: u16 = 10_000;

    /// `None` above 10 000.
    pub const fn new(bps: u16) -> Option<Self> {
        if bps <= Self::ALL {
            Some(Self(bps))
        } else {
            None
        }
    }

    /// `bps`, or all of it above 10 000: for constants written in the code.
    pub const fn at_most_all(bps: u16) -> Self {
        Self(if bps > Self::ALL { Self::ALL } else { bps })
    }

    pub const fn get(self) -> u16 {
        self.0
    }

    /// This share of `amount` minor units, rounded down: a fee never exceeds what it is
    /// taken from, and the payee keeps the odd unit.
    pub fn of(self, amount: i64) -> i64 {
        // i128: a ten-digit amount times 10 000 does not fit an i64's headroom checks.
        (i128::from(amount) * i128::from(self.0) / i128::from(Self::ALL)) as i64
    }
}

impl TryFrom<u32> for BasisPoints {
    type Error = String;

    fn try_from(bps: u32) -> Result<Self, Self::Error> {
        u16::try_from(bps).ok().and_then(Self::new).ok_or_else(|| format!("{bps} basis points is more than 10000"))
    }
}

/// A percentage, 0 and up (a margin of 20 %, a threshold of 50 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Percent(u16);

impl Percent {
    pub const fn new(percent: u16) -> Self {
        Self(percent)
    }

    pub const fn get(self) -> u16 {
        self.0
    }

    /// This share of `amount` minor units, rounded up: what is held for a price must
    /// cover it.
    pub fn of_rounded_up(self, amount: i64) -> i64 {
        let scaled = i128::from(amount.max(0)) * i128::from(self.0);
        ((scaled + 99) / 100) as i64
    }

    /// As a fraction (50 % is 0.5), for comparing measured quantities.
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl TryFrom<u32> for Percent {
    type Error = String;

    fn try_from(percent: u32) -> Result<Self, Self::Error> {
        u16::try_from(percent).map(Self).map_err(|_| format!("{percent} percent is too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fee_is_rounded_down_and_never_more_than_the_amount() {
        let five_percent = BasisPoints::new(500).expect("500 bps");
        assert_eq!(five_percent.of(10_000), 500);
        assert_eq!(five_percent.of(19), 0);
        assert_eq!(five_percent.of(39), 1);
        assert_eq!(BasisPoints::new(10_000).expect("all").of(1_234), 1_234);
        assert_eq!(BasisPoints::new(0).expect("none").of(1_234), 0);
        assert_eq!(BasisPoints::new(10_001), None);
        assert_eq!(BasisPoints::at_most_all(12_000).get(), 10_000);
        assert!(BasisPoints::try_from(70_000u32).is_err());
        assert_eq!(BasisPoints::new(2_000).expect("20 %").of(i64::MAX / 2), i64::MAX / 10);
    }

    #[test]
    fn a_margin_is_rounded_up() {
        let twenty = Percent::new(20);
        assert_eq!(twenty.of_rounded_up(1_000), 200);
        assert_eq!(twenty.of_rounded_up(1_001), 201);
        assert_eq!(twenty.of_rounded_up(0), 0);
        assert_eq!(Percent::new(50).fraction(), 0.5);
    }
}
