//! What riders are told of drivers before a driver is theirs: the cars on the map while
//! they choose a trip, and (in `quotes`) who is in reach. Both come from the index, which
//! is soft state fed by the bus, so both ask the database which of the drivers found are
//! online and which are free (see "What a rider sees of drivers" in the service's docs).

use super::*;
use crate::index::INDEX_RESOLUTION;

/// Cars shown around a rider at most.
pub const NEARBY_DRIVERS_MAX: usize = 20;
/// How far from the rider cars are shown, at most (the dispatcher's search radius, if it
/// is smaller).
pub const NEARBY_RADIUS_M: f64 = 3_000.0;
/// Drivers taken from the index for one answer: room for some found busy or offline in the
/// database before fewer than `NEARBY_DRIVERS_MAX` free ones are left.
const NEARBY_CANDIDATES_MAX: usize = 3 * NEARBY_DRIVERS_MAX;
/// Drivers asked about in one statement.
const DRIVERS_PER_QUERY: usize = 500;

/// How the database has a driver the index found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Online and neither on a trip nor holding an offer.
    Free,
    /// Online, but on a trip or holding an offer.
    Busy,
}

/// What a rider may see of where a driver is: the centre of the driver's resolution-9 H3
/// cell (about 0.1 km²; a point at most some 200 m from the driver).
pub fn coarse_position(at: LatLng) -> Option<LatLng> {
    let cell = at.to_h3()?.to_cell(INDEX_RESOLUTION);
    let centre = h3o::LatLng::from(cell);
    // Six decimals (about 0.1 m) say all a cell's centre can.
    let round = |degrees: f64| (degrees * 1e6).round() / 1e6;
    LatLng::new(round(centre.lat()), round(centre.lng())).ok()
}

impl Rides {
    /// Where free drivers are near `point`, coarsened (`coarse_position`): the centre of each
    /// resolution-9 H3 cell (centres some 300 m apart) holding at least one, nearest first,
    /// at most `NEARBY_DRIVERS_MAX` within `NEARBY_RADIUS_M`. No ids, no names, no exact
    /// positions, and nobody on a trip, holding an offer, or offline in the database.
    pub async fn nearby_drivers(&self, me: &User, point: LatLng) -> Result<Vec<LatLng>, RidesError> {
        let now = Timestamp::now().unix_millis();
        let radius_m = NEARBY_RADIUS_M.min(self.inner.config.search_radius_m);
        let found = lock(&self.inner.index).nearest(point, radius_m, NEARBY_CANDIDATES_MAX, now, |id| id == me.id);
        let standing = self.standing_of(found.iter().map(|candidate| &*candidate.driver_id)).await?;
        let mut centres: Vec<LatLng> = Vec::new();
        for candidate in &found {
            if standing.get(&*candidate.driver_id) != Some(&Standing::Free) {
                continue;
            }
            let Some(centre) = coarse_position(candidate.location) else { continue };
            if !centres.contains(&centre) {
                centres.push(centre);
            }
        }
        // Ordered by the centres, not by the drivers' exact distances, which the order
        // would otherwise hint at.
        centres.sort_by(|a, b| point.distance_m(*a).total_cmp(&point.distance_m(*b)));
        centres.truncate(NEARBY_DRIVERS_MAX);
        Ok(centres)
    }

    /// Which of these drivers the database has online, and whether each is free. Drivers
    /// it has offline (an `offline` notice this node's replica missed) are absent. One
    /// statement per `DRIVERS_PER_QUERY` drivers, on the read pool: what a rider is shown
    /// may lag a moment; what a driver is offered is decided by the dispatcher's own query.
    pub(crate) async fn standing_of<'a>(
        &self,
        driver_ids: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<String, Standing>, RidesError> {
        let unique: Vec<&str> = driver_ids.collect::<std::collections::HashSet<_>>().into_iter().collect();
        let mut standing = HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(DRIVERS_PER_QUERY) {
            let statement = format!(
                "SELECT d.driver_id,
                     CAST(CASE WHEN EXISTS (SELECT 1 FROM rides r WHERE r.driver_id = d.driver_id
                                       AND r.status IN ({TRIP_STATUSES_SQL}))
                            OR EXISTS (SELECT 1 FROM rides r WHERE r.offered_driver_id = d.driver_id
                                       AND r.status = 'requested')
                          THEN 1 ELSE 0 END AS BIGINT) AS busy
                 FROM ride_drivers d WHERE d.online = 1 AND d.driver_id IN ({})",
                plaza_store::numbered_parameters(1, chunk.len())
            );
            let statement = self.inner.store.backend().bulk_sql(&statement);
            let mut query = sqlx::query(&statement);
            for driver_id in chunk {
                query = query.bind(*driver_id);
            }
            for row in query.fetch_all(self.inner.store.read()).await? {
                let busy: i64 = row.try_get("busy")?;
                standing.insert(row.try_get("driver_id")?, if busy == 1 { Standing::Busy } else { Standing::Free });
            }
        }
        Ok(standing)
    }
}
