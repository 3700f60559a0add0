//! Reviews: 1–5 stars and a text by the buyer of a completed order, once, counted into
//! the ratings of the shop and of each product as a sum and a count (one increment per
//! review), and listed per product.

use crate::model::{self, text, OrderStatus};
use crate::service::{invalid, time_position, Review, ShopError, ShopHandle};
use plaza_accounts::User;
use plaza_kernel::{Page, PageLimit, Timestamp};
use plaza_store::Row;

impl ShopHandle {
    /// A review (1–5 stars) by the buyer of a completed order, once, counted into the
    /// ratings of the shop and of every product in the order.
    pub async fn review(&self, me: &User, order_id: &str, stars: i64, review: Option<&str>) -> Result<(), ShopError> {
        let order = self.order(me, order_id).await?;
        if order.buyer_id != me.id {
            return Err(ShopError::NotAllowed { who: "buyer", action: "review" });
        }
        if !(1..=5).contains(&stars) {
            return Err(invalid("stars", "1 to 5"));
        }
        let review = text(review.unwrap_or(""), "text", model::REVIEW_MAX_CHARS, true)?;
        if order.status != OrderStatus::Completed {
            return Err(ShopError::InvalidTransition { status: order.status.as_str(), action: "review" });
        }
        let mut transaction = self.inner.store.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO shop_reviews (order_id, buyer_id, shop_id, stars, text, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id)
        .bind(&me.id)
        .bind(&order.shop_id)
        .bind(stars)
        .bind(&review)
        .bind(Timestamp::now().unix_millis())
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(ShopError::AlreadyReviewed);
        }
        sqlx::query("UPDATE shops SET rating_sum = rating_sum + $2, rating_count = rating_count + 1 WHERE id = $1")
            .bind(&order.shop_id)
            .bind(stars)
            .execute(&mut *transaction)
            .await?;
        let mut products: Vec<&str> = order.items.iter().map(|item| item.product_id.as_str()).collect();
        products.sort_unstable();
        products.dedup();
        for product_id in products {
            sqlx::query(
                "UPDATE shop_products SET rating_sum = rating_sum + $2, rating_count = rating_count + 1 WHERE id = $1",
            )
            .bind(product_id)
            .bind(stars)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// The reviews of orders that bought `product_id`, newest first.
    pub async fn product_reviews(
        &self,
        product_id: &str,
        limit: PageLimit,
        cursor: Option<&str>,
    ) -> Result<Page<Review>, ShopError> {
        let (before_at, before_id) = time_position(cursor)?;
        let rows = sqlx::query(
            "SELECT r.order_id, r.buyer_id, r.stars, r.text, r.created_at FROM shop_reviews r
             WHERE r.order_id IN (SELECT order_id FROM shop_order_items WHERE product_id = $1)
               AND (r.created_at < $2 OR (r.created_at = $2 AND ($3 = '' OR r.order_id < $3)))
             ORDER BY r.created_at DESC, r.order_id DESC LIMIT $4",
        )
        .bind(product_id)
        .bind(before_at)
        .bind(&before_id)
        .bind(limit.probe())
        .fetch_all(self.inner.store.read())
        .await?;
        let reviews = rows
            .iter()
            .map(|row| {
                Ok(Review {
                    order_id: row.try_get("order_id")?,
                    buyer_id: row.try_get("buyer_id")?,
                    stars: row.try_get("stars")?,
                    text: row.try_get("text")?,
                    created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Page::from_probe(reviews, limit, |review| {
            format!("{}:{}", review.created_at.unix_millis(), review.order_id)
        }))
    }
}
