//! `GET /api/v1/client/config`: what the web client needs to know about this server
//! before it draws anything — where map tiles come from (if anywhere), where the map
//! opens, and the ride rules a rider is shown before agreeing to them. Public, since
//! the sign-in screen may already draw a map; nothing in it is a secret.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the client is told, built once at start-up.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientConfig {
    pub map: MapConfig,
    pub rides: RideRules,
    /// The currencies wallets hold, the first being the one rides are priced in.
    pub currencies: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MapConfig {
    /// A raster tile URL template with `{z}`, `{x}` and `{y}` (Web Mercator, 256-pixel
    /// tiles), or null: the client then draws its bundled street map of the demo city.
    pub tile_url: Option<String>,
    /// The credit line to show over tiles, or null.
    pub attribution: Option<String>,
    /// Where the map opens.
    pub center: MapPoint,
    /// The zoom level it opens at.
    pub zoom: u8,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct MapPoint {
    pub lat: f64,
    pub lng: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RideRules {
    /// Charged when a ride is cancelled after the driver arrived at the pickup
    /// (cancelling earlier is free).
    pub cancel_fee: Money,
    /// The platform's share of each fare and cancel fee, in basis points; the driver
    /// receives the rest.
    pub platform_fee_bps: i64,
    /// How much more than the quoted fare is held while a ride is open, in percent.
    pub hold_margin_percent: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

/// The zoom the map opens at: a few streets around the centre on a phone.
const DEFAULT_ZOOM: u8 = 15;

impl ClientConfig {
    pub fn from_config(config: &crate::config::Config) -> Self {
        let rides = &config.rides;
        Self {
            map: MapConfig {
                tile_url: config.map_tile_url.clone(),
                attribution: config.map_tile_attribution.clone(),
                center: MapPoint { lat: crate::demo::DEMO_CITY.0, lng: crate::demo::DEMO_CITY.1 },
                zoom: DEFAULT_ZOOM,
            },
            rides: RideRules {
                cancel_fee: Money { amount: rides.cancel_fee, currency: rides.fare.currency.clone() },
                platform_fee_bps: i64::from(rides.platform_fee_bps.get()),
                hold_margin_percent: i64::from(rides.hold_margin_percent.get()),
            },
            currencies: config.currencies.iter().map(|currency| currency.code().to_string()).collect(),
        }
    }
}

pub fn router(config: ClientConfig) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(client_config)).with_state(Arc::new(config))
}

/// The web client's settings for this server: map tiles, the map's start, ride rules.
#[utoipa::path(get, path = "/client/config", tag = "client",
    responses((status = 200, description = "The client's settings", body = ClientConfig)))]
async fn client_config(State(config): State<Arc<ClientConfig>>) -> Json<ClientConfig> {
    Json(config.as_ref().clone())
}
