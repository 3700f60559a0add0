//! An order as its buyer and seller see it, serialized straight from the [`Order`]: the
//! shape of [`Order::to_json`] (which is this view made a `Value`) and the data of
//! `order.updated`, which a flash batch writes for every order it takes, on the path every
//! buyer of the sale waits on — so without a `Value` tree built and dropped per order.
//!
//! Fields are in alphabetical order, as a `serde_json::Value` object prints them, so an
//! event's stored text is the same whichever way it was made.

use crate::service::{Order, OrderItem};
use serde::Serialize;
use serde_json::Value;

/// A borrowed view of an order, serializable.
#[derive(Serialize)]
pub(crate) struct OrderJson<'a> {
    address: &'a Value,
    buyer: Id<'a>,
    created_at: String,
    flash_sale_id: Option<&'a str>,
    group_buy_id: Option<&'a str>,
    id: &'a str,
    items: Vec<ItemJson<'a>>,
    payment_status: &'a str,
    refund: Option<RefundJson<'a>>,
    shipment: Option<ShipmentJson<'a>>,
    shop: ShopRef<'a>,
    status: &'static str,
    total: MoneyJson<'a>,
    updated_at: String,
}

#[derive(Serialize)]
struct Id<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct ShopRef<'a> {
    id: &'a str,
    owner: Id<'a>,
}

#[derive(Serialize)]
struct MoneyJson<'a> {
    amount: i64,
    currency: &'a str,
}

#[derive(Serialize)]
struct ItemJson<'a> {
    product_id: &'a str,
    quantity: i64,
    sku_id: &'a str,
    sku_name: &'a str,
    title: &'a str,
    unit_price: MoneyJson<'a>,
}

#[derive(Serialize)]
struct RefundJson<'a> {
    amount: MoneyJson<'a>,
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct ShipmentJson<'a> {
    auto_confirm_at: Option<String>,
    carrier: &'a str,
    shipped_at: Option<String>,
    tracking_number: Option<&'a str>,
}

impl<'a> OrderJson<'a> {
    pub(crate) fn of(order: &'a Order) -> Self {
        let money = |amount: i64| MoneyJson { amount, currency: &order.currency };
        let item = |item: &'a OrderItem| ItemJson {
            product_id: &item.product_id,
            quantity: item.quantity,
            sku_id: &item.sku_id,
            sku_name: &item.sku_name,
            title: &item.title,
            unit_price: money(item.unit_price),
        };
        Self {
            address: &order.address,
            buyer: Id { id: &order.buyer_id },
            created_at: order.created_at.to_rfc3339(),
            flash_sale_id: order.flash_sale_id.as_deref(),
            group_buy_id: order.group_buy_id.as_deref(),
            id: &order.id,
            items: order.items.iter().map(item).collect(),
            payment_status: &order.payment_status,
            refund: order
                .refund_amount
                .map(|amount| RefundJson { amount: money(amount), reason: order.refund_reason.as_deref() }),
            shipment: order.carrier.as_deref().map(|carrier| ShipmentJson {
                auto_confirm_at: order.auto_confirm_at.map(|at| at.to_rfc3339()),
                carrier,
                shipped_at: order.shipped_at.map(|at| at.to_rfc3339()),
                tracking_number: order.tracking_number.as_deref(),
            }),
            shop: ShopRef { id: &order.shop_id, owner: Id { id: &order.seller_id } },
            status: order.status.as_str(),
            total: money(order.total),
            updated_at: order.updated_at.to_rfc3339(),
        }
    }
}
