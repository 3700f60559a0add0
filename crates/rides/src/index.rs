//! The live index of online drivers: soft state in memory, keyed by H3 cell at
//! resolution 9 (cells about 0.1 km² — a few blocks), searched outward ring by ring from
//! the pickup's cell. Drivers resend their location every few seconds, so nothing here is
//! stored: a restart or a silent driver simply drops out until the next update.

use crate::model::LatLng;
use h3o::{CellIndex, Resolution};
use std::collections::HashMap;
use std::sync::Arc;

/// The resolution drivers are indexed at.
pub const INDEX_RESOLUTION: Resolution = Resolution::Nine;
/// The resolution surge is measured at (about 5 km², a neighbourhood).
pub const SURGE_RESOLUTION: Resolution = Resolution::Seven;

/// Why a location update is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LocationRefused {
    #[error("the driver is not online")]
    NotOnline,
    #[error("a move of {distance_m:.0} m in {elapsed_ms} ms is faster than {max_kmh} km/h")]
    TooFast { distance_m: f64, elapsed_ms: i64, max_kmh: f64 },
    #[error("updates come at most every {interval_ms} ms")]
    TooFrequent { interval_ms: i64 },
}

/// Limits of the index.
#[derive(Debug, Clone, Copy)]
pub struct IndexLimits {
    /// A driver not heard from for this long is out of the index.
    pub silence_ms: i64,
    /// A move implying a higher speed is refused (a GPS glitch or a spoofer).
    pub speed_max_kmh: f64,
    /// Updates closer together than this are refused.
    pub update_interval_min_ms: i64,
}

impl Default for IndexLimits {
    fn default() -> Self {
        Self { silence_ms: 60_000, speed_max_kmh: 250.0, update_interval_min_ms: 200 }
    }
}

#[derive(Debug, Clone)]
struct IndexedDriver {
    location: LatLng,
    cell: CellIndex,
    last_seen_ms: i64,
}

/// A driver found near a point.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub driver_id: Arc<str>,
    pub location: LatLng,
    pub distance_m: f64,
}

/// Online drivers by H3 cell.
#[derive(Debug, Default)]
pub struct DriverIndex {
    limits: IndexLimits,
    drivers: HashMap<Arc<str>, IndexedDriver>,
    cells: HashMap<CellIndex, Vec<Arc<str>>>,
}

impl DriverIndex {
    pub fn new(limits: IndexLimits) -> Self {
        Self { limits, drivers: HashMap::new(), cells: HashMap::new() }
    }

    pub fn len(&self) -> usize {
        self.drivers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.drivers.is_empty()
    }

    /// Puts a driver online at `location` (or moves one already online there, without
    /// the speed check: going online again is a fresh start).
    pub fn go_online(&mut self, driver_id: &str, location: LatLng, now_ms: i64) {
        self.remove(driver_id);
        let Some(cell) = location.to_h3().map(|point| point.to_cell(INDEX_RESOLUTION)) else { return };
        let key: Arc<str> = Arc::from(driver_id);
        self.cells.entry(cell).or_default().push(key.clone());
        self.drivers.insert(key, IndexedDriver { location, cell, last_seen_ms: now_ms });
    }

    /// Takes a driver out.
    pub fn remove(&mut self, driver_id: &str) -> bool {
        let Some((key, driver)) = self.drivers.remove_entry(driver_id) else { return false };
        self.unlink(&key, driver.cell);
        true
    }

    /// Whether the driver is online and not silent.
    pub fn is_online(&self, driver_id: &str, now_ms: i64) -> bool {
        self.drivers.get(driver_id).is_some_and(|driver| now_ms - driver.last_seen_ms <= self.limits.silence_ms)
    }

    pub fn location(&self, driver_id: &str) -> Option<LatLng> {
        self.drivers.get(driver_id).map(|driver| driver.location)
    }

    /// Moves an online driver. A silent driver comes back without the speed check (its
    /// old position says nothing about where it is now).
    pub fn update(&mut self, driver_id: &str, location: LatLng, now_ms: i64) -> Result<(), LocationRefused> {
        self.update_measured(driver_id, location, now_ms).map(|_| ())
    }

    /// As `update`, returning how far the driver moved when the move was checked against
    /// the speed limit, and `None` when it was not (the driver had been silent): only a
    /// checked move is a stretch of road a trip may count as driven.
    pub fn update_measured(
        &mut self,
        driver_id: &str,
        location: LatLng,
        now_ms: i64,
    ) -> Result<Option<f64>, LocationRefused> {
        let limits = self.limits;
        let driver = self.drivers.get_mut(driver_id).ok_or(LocationRefused::NotOnline)?;
        let elapsed_ms = now_ms - driver.last_seen_ms;
        if elapsed_ms < limits.update_interval_min_ms {
            return Err(LocationRefused::TooFrequent { interval_ms: limits.update_interval_min_ms });
        }
        let mut checked_m = None;
        if elapsed_ms <= limits.silence_ms {
            let distance_m = driver.location.distance_m(location);
            checked_m = Some(distance_m);
            // Updates less than a second apart are judged as a second apart: GPS jitter of
            // a few metres between two quick fixes is not a 1000 km/h jump.
            let speed_kmh = distance_m / 1000.0 / (elapsed_ms.max(1000) as f64 / 3_600_000.0);
            if speed_kmh > limits.speed_max_kmh {
                return Err(LocationRefused::TooFast { distance_m, elapsed_ms, max_kmh: limits.speed_max_kmh });
            }
        }
        let Some(cell) = location.to_h3().map(|point| point.to_cell(INDEX_RESOLUTION)) else {
            return Err(LocationRefused::NotOnline);
        };
        let old_cell = driver.cell;
        driver.location = location;
        driver.last_seen_ms = now_ms;
        driver.cell = cell;
        if old_cell != cell {
            if let Some((key, _)) = self.drivers.get_key_value(driver_id) {
                let key = key.clone();
                self.unlink(&key, old_cell);
                self.cells.entry(cell).or_default().push(key);
            }
        }
        Ok(checked_m)
    }

    /// Up to `count` drivers heard from in the last `silence_ms`, within `radius_m` of
    /// `point`, nearest first, skipping those `exclude` says no to. Rings grow outward
    /// until there are `count` candidates and one more ring has been searched (a driver
    /// one ring further out can be nearer than one in a corner of the last ring), or the
    /// ring lies beyond the radius.
    pub fn nearest(
        &self,
        point: LatLng,
        radius_m: f64,
        count: usize,
        now_ms: i64,
        exclude: impl Fn(&str) -> bool,
    ) -> Vec<Candidate> {
        let Some(origin) = point.to_h3().map(|p| p.to_cell(INDEX_RESOLUTION)) else { return Vec::new() };
        // Centres of neighbouring res-9 cells are about 2 × 174 m × cos(30°) ≈ 300 m apart;
        // ring k starts no nearer than (k − 1) × that.
        let ring_spacing_m = 2.0 * INDEX_RESOLUTION.edge_length_m() * 0.866;
        let rings_max = (radius_m / ring_spacing_m).ceil() as u32 + 1;
        let mut found: Vec<Candidate> = Vec::new();
        let mut extra_rings_left: Option<u32> = None;
        for k in 0..=rings_max {
            for cell in ring(origin, k) {
                let Some(ids) = self.cells.get(&cell) else { continue };
                for id in ids {
                    let Some(driver) = self.drivers.get(id) else { continue };
                    if now_ms - driver.last_seen_ms > self.limits.silence_ms || exclude(id) {
                        continue;
                    }
                    let distance_m = point.distance_m(driver.location);
                    if distance_m <= radius_m {
                        found.push(Candidate { driver_id: id.clone(), location: driver.location, distance_m });
                    }
                }
            }
            match extra_rings_left {
                Some(0) => break,
                Some(left) => extra_rings_left = Some(left - 1),
                None if found.len() >= count => extra_rings_left = Some(0),
                None => {}
            }
        }
        found.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
        found.truncate(count);
        found
    }

    /// Online drivers per resolution-7 area around `point` (the supply side of surge).
    pub fn supply_near(&self, point: LatLng, now_ms: i64) -> u64 {
        self.drivers_in_area(point, now_ms).len() as u64
    }

    /// The drivers heard from lately in the resolution-7 area around `point`.
    pub fn drivers_in_area(&self, point: LatLng, now_ms: i64) -> Vec<Arc<str>> {
        let Some(area) = point.to_h3().map(|p| p.to_cell(SURGE_RESOLUTION)) else { return Vec::new() };
        area.children(INDEX_RESOLUTION)
            .filter_map(|cell| self.cells.get(&cell))
            .flatten()
            .filter(|id| self.drivers.get(*id).is_some_and(|d| now_ms - d.last_seen_ms <= self.limits.silence_ms))
            .cloned()
            .collect()
    }

    /// Drops drivers silent for longer than `silence_ms`; returns their ids.
    pub fn sweep(&mut self, now_ms: i64) -> Vec<Arc<str>> {
        let silence_ms = self.limits.silence_ms;
        let silent: Vec<Arc<str>> = self
            .drivers
            .iter()
            .filter(|(_, driver)| now_ms - driver.last_seen_ms > silence_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &silent {
            self.remove(id);
        }
        silent
    }

    fn unlink(&mut self, key: &Arc<str>, cell: CellIndex) {
        if let Some(ids) = self.cells.get_mut(&cell) {
            if let Some(position) = ids.iter().position(|id| id == key) {
                ids.swap_remove(position);
            }
            if ids.is_empty() {
                self.cells.remove(&cell);
            }
        }
    }
}

/// The cells at exactly grid distance `k` from `origin`. The fast ring walk fails near
/// the twelve pentagons; the disk difference is the safe fallback there.
fn ring(origin: CellIndex, k: u32) -> Vec<CellIndex> {
    if let Some(cells) = origin.grid_ring_fast(k).collect::<Option<Vec<_>>>() {
        return cells;
    }
    let inner: std::collections::HashSet<CellIndex> =
        if k == 0 { Default::default() } else { origin.grid_disk_safe(k - 1).collect() };
    origin.grid_disk_safe(k).filter(|cell| !inner.contains(cell)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).unwrap_or_else(|reason| panic!("{reason}"))
    }

    #[test]
    fn ring_search_finds_the_nearest_drivers_in_order_within_the_radius() {
        let mut index = DriverIndex::new(IndexLimits::default());
        let pickup = at(1.3000, 103.8000);
        index.go_online("far", at(1.3300, 103.8000), 0); // ~3.3 km
        index.go_online("near", at(1.3010, 103.8000), 0); // ~110 m
        index.go_online("middle", at(1.3100, 103.8000), 0); // ~1.1 km
        index.go_online("outside", at(1.4000, 103.8000), 0); // ~11 km
        let found = index.nearest(pickup, 5_000.0, 10, 1, |_| false);
        let ids: Vec<&str> = found.iter().map(|c| &*c.driver_id).collect();
        assert_eq!(ids, ["near", "middle", "far"]);
        let two = index.nearest(pickup, 5_000.0, 2, 1, |_| false);
        assert_eq!(two.iter().map(|c| &*c.driver_id).collect::<Vec<_>>(), ["near", "middle"]);
        let excluded = index.nearest(pickup, 5_000.0, 10, 1, |id| id == "near");
        assert_eq!(&*excluded[0].driver_id, "middle");
    }

    #[test]
    fn a_silent_driver_drops_out_and_comes_back_with_an_update() {
        let mut index = DriverIndex::new(IndexLimits::default());
        let point = at(1.3, 103.8);
        index.go_online("ann", point, 0);
        assert_eq!(index.nearest(point, 1000.0, 5, 60_000, |_| false).len(), 1);
        assert!(index.nearest(point, 1000.0, 5, 60_001, |_| false).is_empty());
        assert!(!index.is_online("ann", 60_001));
        // Far away after the silence: no speed check applies.
        assert_eq!(index.update("ann", at(1.4, 103.8), 70_000), Ok(()));
        assert_eq!(index.nearest(at(1.4, 103.8), 1000.0, 5, 70_001, |_| false).len(), 1);
        assert_eq!(index.sweep(200_000).len(), 1);
        assert!(index.is_empty());
    }

    #[test]
    fn impossible_jumps_and_floods_are_refused() {
        let mut index = DriverIndex::new(IndexLimits::default());
        index.go_online("ann", at(1.3, 103.8), 0);
        // 11 km in 10 s is ~4000 km/h.
        assert!(matches!(index.update("ann", at(1.4, 103.8), 10_000), Err(LocationRefused::TooFast { .. })));
        // 100 m in 10 s is 36 km/h.
        assert_eq!(index.update("ann", at(1.3009, 103.8), 10_300), Ok(()));
        assert!(matches!(index.update("ann", at(1.3009, 103.8), 10_350), Err(LocationRefused::TooFrequent { .. })));
        assert_eq!(index.update("bob", at(1.3, 103.8), 20_000), Err(LocationRefused::NotOnline));
        assert_eq!(index.location("ann"), Some(at(1.3009, 103.8)));
        // A checked move says how far it went; one after a silence does not count.
        let moved = index.update_measured("ann", at(1.3018, 103.8), 20_300).unwrap_or_default();
        assert!(moved.is_some_and(|m| (95.0..105.0).contains(&m)), "{moved:?}");
        assert_eq!(index.update_measured("ann", at(1.35, 103.8), 200_000), Ok(None));
    }

    #[test]
    fn moving_across_cells_keeps_one_entry_and_supply_counts_the_area() {
        let mut index = DriverIndex::new(IndexLimits::default());
        index.go_online("ann", at(1.3, 103.8), 0);
        for step in 1..50 {
            let location = at(1.3 + f64::from(step) * 0.0005, 103.8);
            assert_eq!(index.update("ann", location, i64::from(step) * 10_000), Ok(()));
        }
        assert_eq!(index.cells.values().map(Vec::len).sum::<usize>(), 1);
        assert_eq!(index.supply_near(at(1.3245, 103.8), 490_000), 1);
        assert!(index.remove("ann"));
        assert!(index.cells.is_empty());
    }

    #[test]
    fn rings_near_a_pentagon_are_complete() {
        let pentagon = h3o::CellIndex::base_cells()
            .find(|cell| cell.is_pentagon())
            .and_then(|cell| cell.center_child(INDEX_RESOLUTION));
        let Some(pentagon) = pentagon else { panic!("no pentagon") };
        let disk: std::collections::HashSet<_> = pentagon.grid_disk_safe(3).collect();
        let rings: std::collections::HashSet<_> = (0..=3).flat_map(|k| ring(pentagon, k)).collect();
        assert_eq!(disk, rings);
    }
}
