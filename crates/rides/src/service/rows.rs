//! Row mapping: rides as the database stores them.

use super::*;

pub(crate) fn idempotency_key(text: &str) -> Result<IdempotencyKey, RidesError> {
    IdempotencyKey::parse(text).map_err(|reason| RidesError::Invariant(format!("key {text:?}: {reason}")))
}

pub(crate) async fn load_ride(transaction: &mut Transaction<'static, Any>, ride_id: &str) -> Result<Ride, RidesError> {
    let row = sqlx::query(&format!("SELECT {RIDE_COLUMNS} FROM rides WHERE id = $1"))
        .bind(ride_id)
        .fetch_optional(&mut **transaction)
        .await?
        .ok_or(RidesError::RideNotFound)?;
    ride_from_row(&row)
}

pub(crate) fn point(row: &AnyRow, prefix: &str) -> Result<LatLng, RidesError> {
    let lat: f64 = row.try_get(format!("{prefix}_lat").as_str())?;
    let lng: f64 = row.try_get(format!("{prefix}_lng").as_str())?;
    LatLng::new(lat, lng).map_err(|reason| RidesError::Invariant(format!("stored {prefix}: {reason}")))
}

pub(crate) fn ride_from_row(row: &AnyRow) -> Result<Ride, RidesError> {
    let status: String = row.try_get("status")?;
    let offer_expires_at: Option<i64> = row.try_get("offer_expires_at")?;
    let started_at: Option<i64> = row.try_get("started_at")?;
    Ok(Ride {
        id: row.try_get("id")?,
        quote_id: row.try_get("quote_id")?,
        rider_id: row.try_get("rider_id")?,
        driver_id: row.try_get("driver_id")?,
        status: RideStatus::parse(&status).ok_or_else(|| RidesError::Invariant(format!("ride status {status:?}")))?,
        pickup: point(row, "pickup")?,
        dropoff: point(row, "dropoff")?,
        fare: row.try_get("fare_amount")?,
        currency: row.try_get("currency")?,
        distance_m: row.try_get("distance_m")?,
        duration_s: row.try_get("duration_s")?,
        surge_milli: row.try_get("surge_milli")?,
        payment_intent_id: row.try_get("payment_intent_id")?,
        hold: row.try_get("hold_amount")?,
        payment_status: {
            let text: String = row.try_get("payment_status")?;
            PaymentStatus::parse(&text)
                .ok_or_else(|| RidesError::Invariant(format!("ride payment status {text:?} is not one Plaza writes")))?
        },
        charged: row.try_get("charged_amount")?,
        offered_driver_id: row.try_get("offered_driver_id")?,
        offer_expires_at: offer_expires_at.map(Timestamp::from_unix_millis),
        dispatch_rounds: row.try_get("dispatch_rounds")?,
        cancelled_by: row.try_get("cancelled_by")?,
        started_at: started_at.map(Timestamp::from_unix_millis),
        route_m: row.try_get("route_m")?,
        review: row.try_get("review")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_unix_millis(row.try_get("updated_at")?),
    })
}
