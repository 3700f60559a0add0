//! The shop's domain types: checked text and numbers (parse, don't validate) and the order
//! state machine.

use crate::service::{invalid, ShopError};

pub const SHOP_NAME_MAX_CHARS: usize = 80;
pub const TITLE_MAX_CHARS: usize = 120;
pub const DESCRIPTION_MAX_CHARS: usize = 5_000;
pub const SKU_NAME_MAX_CHARS: usize = 60;
/// SKUs of one product, photos of one product, lines of one order.
pub const SKUS_MAX: usize = 50;
pub const PHOTOS_MAX: usize = 9;
pub const ORDER_ITEMS_MAX: usize = 20;
/// Units of one line of an order.
pub const QUANTITY_MAX: i64 = 99;
/// Units of stock of one SKU.
pub const STOCK_MAX: i64 = 1_000_000_000;
pub const GROUP_SIZE_MIN: i64 = 2;
pub const GROUP_SIZE_MAX: i64 = 50;
pub const ADDRESS_PART_MAX_CHARS: usize = 200;
pub const CARRIER_MAX_CHARS: usize = 60;
pub const TRACKING_NUMBER_MAX_CHARS: usize = 80;
pub const REASON_MAX_CHARS: usize = 1_000;
pub const REVIEW_MAX_CHARS: usize = 2_000;

/// Trimmed text of 1 to `max` characters (or, when `allow_empty`, 0 to `max`).
pub fn text(value: &str, field: impl Into<String>, max: usize, allow_empty: bool) -> Result<String, ShopError> {
    let value = value.trim();
    if (!allow_empty && value.is_empty()) || value.chars().count() > max {
        let least = if allow_empty { 0 } else { 1 };
        return Err(invalid(field, format!("{least} to {max} characters")));
    }
    Ok(value.to_string())
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Waiting for its group to fill (group buying).
    Grouping,
    /// Paid into escrow; the merchant is to ship.
    Paid,
    Shipped,
    /// Received: the money went to the merchant.
    Completed,
    Cancelled,
    RefundRequested,
    Refunded,
}

/// What someone does to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAction {
    Cancel,
    /// The group's last seat was taken: every member's order is paid at once.
    CompleteGroup,
    Ship,
    Confirm,
    RequestRefund,
    ApproveRefund,
    /// Rejecting a refund request returns the order to where it was before the request.
    RejectRefund {
        before_request: OrderStatus,
    },
}

impl OrderAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::CompleteGroup => "complete the group",
            Self::Ship => "ship",
            Self::Confirm => "confirm",
            Self::RequestRefund => "request a refund",
            Self::ApproveRefund => "approve a refund",
            Self::RejectRefund { .. } => "reject a refund",
        }
    }
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grouping => "grouping",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::RefundRequested => "refund_requested",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "grouping" => Self::Grouping,
            "paid" => Self::Paid,
            "shipped" => Self::Shipped,
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "refund_requested" => Self::RefundRequested,
            "refunded" => Self::Refunded,
            _ => return None,
        })
    }

    /// The one state machine of an order: the status after `action`, or `None` when the
    /// current status does not allow it (409 `invalid_transition`). Who may act is decided
    /// by the service; this says only what may follow what.
    pub fn after(self, action: OrderAction) -> Option<Self> {
        use OrderAction as A;
        use OrderStatus as S;
        match (self, action) {
            (S::Grouping | S::Paid, A::Cancel) => Some(S::Cancelled),
            (S::Grouping, A::CompleteGroup) => Some(S::Paid),
            (S::Paid, A::Ship) => Some(S::Shipped),
            (S::Shipped, A::Confirm) => Some(S::Completed),
            (S::Shipped | S::Completed, A::RequestRefund) => Some(S::RefundRequested),
            (S::RefundRequested, A::ApproveRefund) => Some(S::Refunded),
            (S::RefundRequested, A::RejectRefund { before_request: back @ (S::Shipped | S::Completed) }) => Some(back),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_goes_from_paid_to_completed_and_refunds_return_where_they_came_from() {
        use OrderAction as A;
        use OrderStatus as S;
        assert_eq!(S::Paid.after(A::Ship), Some(S::Shipped));
        assert_eq!(S::Shipped.after(A::Confirm), Some(S::Completed));
        assert_eq!(S::Paid.after(A::Confirm), None);
        assert_eq!(S::Grouping.after(A::CompleteGroup), Some(S::Paid));
        assert_eq!(S::Grouping.after(A::Ship), None);
        assert_eq!(S::Paid.after(A::CompleteGroup), None);
        assert_eq!(S::Shipped.after(A::Cancel), None);
        assert_eq!(S::Paid.after(A::RequestRefund), None);
        assert_eq!(S::Completed.after(A::RequestRefund), Some(S::RefundRequested));
        let reject = A::RejectRefund { before_request: S::Completed };
        assert_eq!(S::RefundRequested.after(reject), Some(S::Completed));
        assert_eq!(S::RefundRequested.after(A::RejectRefund { before_request: S::Paid }), None);
        assert_eq!(S::Refunded.after(A::ApproveRefund), None);
        for status in [S::Grouping, S::Paid, S::Shipped, S::Completed, S::Cancelled, S::RefundRequested, S::Refunded] {
            assert_eq!(S::parse(status.as_str()), Some(status));
        }
    }
}
