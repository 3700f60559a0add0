//! The rides HTTP API (API.md, "Rides"): wire types, thin handlers, and the one mapping
//! from [`RidesError`] to problems.

use crate::index::LocationRefused;
use crate::model::{LatLng, RideAction};
use crate::service::{DriverState, Quote, Rides, RidesError, Vehicle};
pub use crate::wire::{OfferView, Point, RideView, VehicleView};
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::Json;
use plaza_accounts::{Accounts, CurrentUser};
use plaza_http::{ApiJson, ApiQuery, ErrorCode, MoneyView, Problem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The rides routes, relative to `/api/v1`.
pub fn router(rides: Rides) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(driver_state))
        .routes(routes!(driver_online))
        .routes(routes!(driver_offline))
        .routes(routes!(driver_location))
        .routes(routes!(nearby_drivers))
        .routes(routes!(create_quote))
        .routes(routes!(request_ride))
        .routes(routes!(get_ride))
        .routes(routes!(accept_ride))
        .routes(routes!(decline_ride))
        .routes(routes!(arrive))
        .routes(routes!(start))
        .routes(routes!(complete))
        .routes(routes!(cancel))
        .routes(routes!(rate))
        .routes(routes!(share))
        .with_state(rides)
}

impl FromRef<Rides> for Accounts {
    fn from_ref(rides: &Rides) -> Accounts {
        rides.accounts().clone()
    }
}

impl From<RidesError> for Problem {
    fn from(error: RidesError) -> Self {
        match error {
            RidesError::InvalidField { field, reason } => Problem::invalid_field(field, reason),
            RidesError::QuoteNotFound => Problem::new(ErrorCode::QuoteNotFound, "no such quote").with_field("quote_id"),
            RidesError::QuoteExpired => {
                Problem::new(ErrorCode::QuoteExpired, "the quote expired; ask for a new one").with_field("quote_id")
            }
            RidesError::QuoteSpent => {
                Problem::new(ErrorCode::QuoteExpired, "this quote's request ended without a ride; ask for a new quote")
                    .with_field("quote_id")
            }
            RidesError::RideNotFound => Problem::new(ErrorCode::RideNotFound, "no such ride"),
            RidesError::RideAlreadyOpen { ride_id } => {
                Problem::new(ErrorCode::RideAlreadyOpen, format!("you already have an open ride {ride_id}"))
                    .with_extension("ride_id", ride_id)
            }
            RidesError::InvalidTransition { status, action } => Problem::new(
                ErrorCode::InvalidTransition,
                format!("the ride is {status}, which does not allow {action}"),
            ),
            RidesError::NotAllowed { who, action } => {
                Problem::new(ErrorCode::Forbidden, format!("only {who} may {action} this ride"))
            }
            RidesError::Location(LocationRefused::NotOnline) => {
                Problem::new(ErrorCode::DriverOffline, "go online before sending locations")
            }
            RidesError::Location(refused @ LocationRefused::TooFast { .. }) => {
                Problem::new(ErrorCode::LocationJump, refused.to_string())
            }
            RidesError::Location(LocationRefused::TooFrequent { interval_ms }) => {
                Problem::new(ErrorCode::RateLimited, format!("send at most one location every {interval_ms} ms"))
                    .with_retry_after(1)
            }
            RidesError::NotAtPickup { distance_m, radius_m } => Problem::new(
                ErrorCode::NotAtPickup,
                format!(
                    "drive to the pickup first: you are {} from it, and must be within {radius_m:.0} m",
                    far(distance_m)
                ),
            ),
            RidesError::NotAtDropoff { distance_m, radius_m } => Problem::new(
                ErrorCode::NotAtDropoff,
                format!(
                    "drive to the drop-off first: you are {} from it, and must be within {radius_m:.0} m",
                    far(distance_m)
                ),
            ),
            RidesError::AlreadyRated => Problem::new(ErrorCode::AlreadyRated, "you already rated this ride"),
            RidesError::Wallet(error) => error.into(),
            RidesError::Chat(error) => error.into(),
            RidesError::Database(error) if plaza_store::is_unavailable(&error) => {
                Problem::new(ErrorCode::Unavailable, "the database is not reachable; try again shortly")
            }
            RidesError::Database(error) => Problem::internal(&error),
            RidesError::Bus(reason) => Problem::internal(&reason),
            RidesError::Invariant(reason) => Problem::internal(&reason),
        }
    }
}

/// How far a driver is, for a problem's sentence.
fn far(distance_m: Option<f64>) -> String {
    match distance_m {
        Some(distance_m) => format!("{distance_m:.0} m"),
        None => "at an unknown distance (send your location)".into(),
    }
}

impl Point {
    fn parse(self, field: &'static str) -> Result<LatLng, Problem> {
        LatLng::new(self.lat, self.lng).map_err(|reason| Problem::invalid_field(field, reason))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VehicleBody {
    pub plate: String,
    pub model: String,
    /// 1 to 16.
    pub seats: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct OnlineRequest {
    pub vehicle: VehicleBody,
    pub location: Point,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LocationRequest {
    pub lat: f64,
    pub lng: f64,
    /// Degrees clockwise from north.
    pub heading: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct QuoteRequest {
    pub pickup: Point,
    pub dropoff: Point,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RideRequest {
    pub quote_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RatingRequest {
    /// 1 to 5.
    pub stars: i64,
    pub comment: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ShareRequest {
    pub conversation_id: String,
}

/// A driver as the driver sees themself: the answer of going online and offline, and of
/// `GET /rides/driver`, which an app reads after a reload to carry on where it was.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DriverState)]
pub struct DriverStateView {
    pub driver_id: String,
    /// Online and heard from lately: only then is the driver offered rides.
    pub online: bool,
    pub vehicle: Option<VehicleView>,
    pub location: Option<Point>,
    pub active_ride_id: Option<String>,
    /// The trip under way, if there is one.
    pub ride: Option<RideView>,
    /// The offer waiting for an answer, with `remaining_ms` by the server's clock.
    pub offer: Option<OfferView>,
}

impl From<DriverState> for DriverStateView {
    fn from(state: DriverState) -> Self {
        Self {
            driver_id: state.driver_id,
            online: state.online,
            vehicle: state.vehicle.map(|v| VehicleView { plate: v.plate, model: v.model, seats: v.seats }),
            location: state.location.map(|(lat, lng)| Point { lat, lng }),
            active_ride_id: state.active_ride_id,
            ride: state.ride.as_ref().map(RideView::from),
            offer: state.offer.as_ref().map(OfferView::from),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Quote)]
pub struct QuoteView {
    pub id: String,
    pub fare: MoneyView,
    pub distance_m: i64,
    pub duration_s: i64,
    /// The surge multiplier applied (1.0 = none).
    pub surge: f64,
    /// The nearest free driver's ETA to the pickup, when one is online nearby.
    pub pickup_eta_s: Option<i64>,
    pub expires_at: String,
}

impl From<Quote> for QuoteView {
    fn from(quote: Quote) -> Self {
        Self {
            id: quote.id,
            fare: MoneyView { amount: quote.fare, currency: quote.currency },
            distance_m: quote.distance_m,
            duration_s: quote.duration_s,
            surge: quote.surge_milli as f64 / 1000.0,
            pickup_eta_s: quote.pickup_eta_s,
            expires_at: quote.expires_at.to_rfc3339(),
        }
    }
}

type Reply<T> = Result<Json<T>, Problem>;

/// The caller as a driver: online or not, the car, the trip under way and the offer
/// waiting for an answer (with the milliseconds it has left by the server's clock).
#[utoipa::path(get, path = "/rides/driver", tag = "rides", security(("bearer" = [])),
    responses((status = 200, body = DriverStateView)))]
async fn driver_state(State(rides): State<Rides>, current: CurrentUser) -> Reply<DriverStateView> {
    Ok(Json(rides.driver_state(&current.user).await?.into()))
}

/// Go online as a driver.
#[utoipa::path(post, path = "/rides/driver/online", tag = "rides", security(("bearer" = [])),
    request_body = OnlineRequest, responses((status = 200, body = DriverStateView)))]
async fn driver_online(
    State(rides): State<Rides>,
    current: CurrentUser,
    ApiJson(body): ApiJson<OnlineRequest>,
) -> Reply<DriverStateView> {
    let vehicle = Vehicle::parse(&body.vehicle.plate, &body.vehicle.model, body.vehicle.seats)?;
    let location = body.location.parse("location")?;
    Ok(Json(rides.go_online(&current.user, vehicle, location).await?.into()))
}

/// Go offline (no more offers; a trip under way goes on).
#[utoipa::path(post, path = "/rides/driver/offline", tag = "rides", security(("bearer" = [])),
    responses((status = 200, body = DriverStateView)))]
async fn driver_offline(State(rides): State<Rides>, current: CurrentUser) -> Reply<DriverStateView> {
    Ok(Json(rides.go_offline(&current.user).await?.into()))
}

/// Send the driver's position (the socket frame `driver.location` does the same).
#[utoipa::path(post, path = "/rides/driver/location", tag = "rides", security(("bearer" = [])),
    request_body = LocationRequest, responses((status = 204, description = "Taken")))]
async fn driver_location(
    State(rides): State<Rides>,
    current: CurrentUser,
    ApiJson(body): ApiJson<LocationRequest>,
) -> Result<StatusCode, Problem> {
    let location = Point { lat: body.lat, lng: body.lng }.parse("")?;
    let heading = parse_heading(body.heading)?;
    rides.update_location(&current.user, location, heading).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks an optional heading (0 to 360 degrees).
pub fn parse_heading(heading: Option<f64>) -> Result<Option<f64>, Problem> {
    match heading {
        Some(value) if !(value.is_finite() && (0.0..=360.0).contains(&value)) => {
            Err(Problem::invalid_field("heading", "degrees from 0 to 360"))
        }
        other => Ok(other),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct NearbyParams {
    /// Latitude of the point (the rider's pickup), -90 to 90.
    pub lat: f64,
    /// Longitude of the point, -180 to 180.
    pub lng: f64,
}

/// Free drivers near a point, coarsened for a map.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NearbyDrivers)]
pub struct NearbyDriversView {
    /// The centre of each H3 cell (resolution 9: about 0.1 km², centres some 300 m apart)
    /// holding at least one free driver, nearest first: at most 20, within 3 km. Never a
    /// driver's id, name or exact position.
    pub drivers: Vec<Point>,
}

/// Free drivers near a point, for the rider's map before requesting.
#[utoipa::path(get, path = "/rides/nearby-drivers", tag = "rides", security(("bearer" = [])),
    params(NearbyParams), responses((status = 200, body = NearbyDriversView)))]
async fn nearby_drivers(
    State(rides): State<Rides>,
    current: CurrentUser,
    ApiQuery(params): ApiQuery<NearbyParams>,
) -> Reply<NearbyDriversView> {
    let point = LatLng::new(params.lat, params.lng)
        .map_err(|reason| Problem::invalid_field(if reason.starts_with("latitude") { "lat" } else { "lng" }, reason))?;
    let drivers = rides.nearby_drivers(&current.user, point).await?;
    Ok(Json(NearbyDriversView { drivers: drivers.into_iter().map(Point::from).collect() }))
}

/// Price a trip.
#[utoipa::path(post, path = "/rides/quotes", tag = "rides", security(("bearer" = [])),
    request_body = QuoteRequest, responses((status = 201, body = QuoteView)))]
async fn create_quote(
    State(rides): State<Rides>,
    current: CurrentUser,
    ApiJson(body): ApiJson<QuoteRequest>,
) -> Result<(StatusCode, Json<QuoteView>), Problem> {
    let pickup = body.pickup.parse("pickup")?;
    let dropoff = body.dropoff.parse("dropoff")?;
    Ok((StatusCode::CREATED, Json(rides.quote(&current.user, pickup, dropoff).await?.into())))
}

/// Request a ride on a quote: the fare plus a margin is held from the wallet.
#[utoipa::path(post, path = "/rides", tag = "rides", security(("bearer" = [])),
    request_body = RideRequest, responses((status = 201, body = RideView), (status = 200, body = RideView, description = "The ride already requested on this quote")))]
async fn request_ride(
    State(rides): State<Rides>,
    current: CurrentUser,
    ApiJson(body): ApiJson<RideRequest>,
) -> Result<(StatusCode, Json<RideView>), Problem> {
    let (ride, existed) = rides.request(&current.user, &body.quote_id).await?;
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(RideView::from(&ride))))
}

/// A ride (its rider, its driver, or the driver it is offered to).
#[utoipa::path(get, path = "/rides/{id}", tag = "rides", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RideView)))]
async fn get_ride(State(rides): State<Rides>, current: CurrentUser, Path(id): Path<String>) -> Reply<RideView> {
    let ride = rides.ride(&current.user, &id).await?;
    let vehicle = match &ride.driver_id {
        Some(driver_id) => rides.vehicle_of(driver_id).await?,
        None => None,
    };
    let mut view = RideView::from(&ride);
    // The rider needs the plate to find the car; events carry the ride alone, so the
    // client reads it here once a driver is assigned.
    let location = match &ride.driver_id {
        Some(driver_id) if !ride.status.is_final() => rides.driver_location(driver_id),
        _ => None,
    };
    view.vehicle = Some(vehicle.map(|v| VehicleView { plate: v.plate, model: v.model, seats: v.seats }));
    view.driver_location = Some(location.map(|at| Point { lat: at.lat(), lng: at.lng() }));
    Ok(Json(view))
}

/// Accept the offer of this ride.
#[utoipa::path(post, path = "/rides/{id}/accept", tag = "rides", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RideView)))]
async fn accept_ride(State(rides): State<Rides>, current: CurrentUser, Path(id): Path<String>) -> Reply<RideView> {
    Ok(Json(RideView::from(&rides.accept(&current.user, &id).await?)))
}

/// Decline the offer of this ride.
#[utoipa::path(post, path = "/rides/{id}/decline", tag = "rides", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RideView)))]
async fn decline_ride(State(rides): State<Rides>, current: CurrentUser, Path(id): Path<String>) -> Reply<RideView> {
    Ok(Json(RideView::from(&rides.decline(&current.user, &id).await?)))
}

/// The driver is at the pickup.
#[utoipa::path(post, path = "/rides/{id}/arrive", tag = "rides", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RideView)))]
async fn arrive(State(rides): State<Rides>, current: CurrentUser, Path(id): Path<String>) -> Reply<RideView> {
    Ok(Json(RideView::from(&rides.advance(&current.user, &id, RideAction::Arrive).await?)))
}

/// The rider is in; the trip starts.
#[utoipa::path(post, path = "/rides/{id}/start", tag = "rides", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RideView)))]
async fn start(State(rides): State<Rides>, current: CurrentUser, Path(id): Path<String>) -> Reply<RideView> {
    Ok(Json(RideView::from(&rides.advance(&current.user, &id, RideAction::Start).await?)))
}

/// The trip is done: the fare is captured.
#[utoipa::path(post, path = "/rides/{id}/complete", tag = "rides", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RideView)))]
async fn complete(State(rides): State<Rides>, current: CurrentUser, Path(id): Path<String>) -> Reply<RideView> {
    Ok(Json(RideView::from(&rides.advance(&current.user, &id, RideAction::Complete).await?)))
}

/// Cancel (rider or driver); after the driver's arrival the cancel fee is charged.
#[utoipa::path(post, path = "/rides/{id}/cancel", tag = "rides", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RideView)))]
async fn cancel(State(rides): State<Rides>, current: CurrentUser, Path(id): Path<String>) -> Reply<RideView> {
    Ok(Json(RideView::from(&rides.cancel(&current.user, &id).await?)))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Rating)]
pub struct RatingView {
    pub ride_id: String,
    pub rater_id: String,
    pub ratee_id: String,
    pub stars: i64,
    pub comment: Option<String>,
}

/// Rate the other party after a completed trip (once).
#[utoipa::path(post, path = "/rides/{id}/rating", tag = "rides", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = RatingRequest, responses((status = 201, body = RatingView)))]
async fn rate(
    State(rides): State<Rides>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RatingRequest>,
) -> Result<(StatusCode, Json<RatingView>), Problem> {
    let rating = rides.rate(&current.user, &id, body.stars, body.comment.as_deref()).await?;
    Ok((
        StatusCode::CREATED,
        Json(RatingView {
            ride_id: rating.ride_id,
            rater_id: rating.rater_id,
            ratee_id: rating.ratee_id,
            stars: rating.stars,
            comment: rating.comment,
        }),
    ))
}

/// Share the ride into a chat as a `card` message.
#[utoipa::path(post, path = "/rides/{id}/share", tag = "rides", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ShareRequest, responses((status = 201, description = "The card message")))]
async fn share(
    State(rides): State<Rides>,
    current: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ShareRequest>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let message = rides.share(&current.user, &id, &body.conversation_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"id": message.message_id, "conversation_id": message.conversation_id,
            "seq": message.seq, "kind": "card"})),
    ))
}
