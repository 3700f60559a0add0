//! Rides, in-process, with the rides crate's real types: the live driver index (location
//! updates per second and nearest-candidates latency with 100,000 online drivers), and a
//! dispatch simulator that runs the real assignment code (greedy and batched Kuhn–Munkres)
//! on a synthetic city, same seed and same demand for both.
//!
//! The simulator stands in for the dispatcher's database work (offers, acceptance,
//! time-outs), but keeps its offer cycle: a driver declines an offer with probability
//! `decline_percent`, and then, as in the dispatcher, the request waits for the next batch,
//! is never offered to that driver again, and ends unserved after `dispatch_rounds_max`
//! declines. What it keeps from the dispatcher is the cost matrix (the index's `nearest`
//! candidates per request, ETAs from `GreatCircleRoutes`, the same radius and candidate
//! count, decliners excluded) and the batch interval.

use crate::random::Random;
use hdrhistogram::Histogram;
use plaza_rides::assignment::{assign_batched, assign_greedy};
use plaza_rides::index::{DriverIndex, IndexLimits};
use plaza_rides::model::GreatCircleRoutes;
use plaza_rides::{LatLng, RidesConfig, RouteEstimator};
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Online drivers in the index benchmark.
    #[arg(long, default_value_t = 100_000)]
    pub index_drivers: usize,
    /// Nearest-candidates queries to time.
    #[arg(long, default_value_t = 50_000)]
    pub queries: usize,
    /// Drivers in the simulated city.
    #[arg(long, default_value_t = 500)]
    pub sim_drivers: usize,
    /// City-wide requests per second; one greedy and one batched run per value.
    #[arg(long, value_delimiter = ',', default_values_t = [0.2, 0.4, 0.6])]
    pub demand: Vec<f64>,
    /// Simulated minutes per run.
    #[arg(long, default_value_t = 60)]
    pub sim_minutes: i64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Percent of offers a driver declines (0–100); the request goes to the next batch
    /// without that driver, and ends unserved after the dispatcher's rounds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub decline_percent: u32,
}

impl Options {
    fn sim_seconds(&self) -> i64 {
        self.sim_minutes * 60
    }
}

/// A square synthetic city around a centre, in metres east (x) and north (y).
#[derive(Clone, Copy)]
struct City {
    centre_lat: f64,
    centre_lng: f64,
    half_side_m: f64,
}

impl City {
    fn at(&self, x: f64, y: f64) -> anyhow::Result<LatLng> {
        let lat = self.centre_lat + y / 111_320.0;
        let lng = self.centre_lng + x / (111_320.0 * self.centre_lat.to_radians().cos());
        LatLng::new(lat, lng).map_err(|reason| anyhow::anyhow!(reason))
    }

    fn clamp(&self, v: f64) -> f64 {
        v.clamp(-self.half_side_m, self.half_side_m)
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let city = City { centre_lat: 1.3521, centre_lng: 103.8198, half_side_m: 10_000.0 };
    index_benchmark(&options, city)?;
    dispatch_simulation(&options, City { half_side_m: 5_000.0, ..city })?;
    Ok(())
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new(3)?)
}

fn index_benchmark(options: &Options, city: City) -> anyhow::Result<()> {
    let mut random = Random(options.seed | 1);
    let mut index = DriverIndex::new(IndexLimits::default());
    let ids: Vec<String> = (0..options.index_drivers).map(|i| format!("driver-{i}")).collect();
    let mut positions: Vec<(f64, f64)> = (0..options.index_drivers)
        .map(|_| {
            (random.between(-city.half_side_m, city.half_side_m), random.between(-city.half_side_m, city.half_side_m))
        })
        .collect();
    for (id, (x, y)) in ids.iter().zip(&positions) {
        index.go_online(id, city.at(*x, *y)?, 0);
    }

    // Updates: every driver moves up to 15 m each second (≤ 54 km/h), rounds of all
    // drivers, one thread. Cell changes happen at the rate real traffic makes them.
    let rounds = 5;
    let started = Instant::now();
    let mut refused = 0u64;
    for round in 1..=rounds {
        let now_ms = round * 1000;
        for (id, position) in ids.iter().zip(positions.iter_mut()) {
            position.0 = city.clamp(position.0 + random.between(-15.0, 15.0));
            position.1 = city.clamp(position.1 + random.between(-15.0, 15.0));
            if index.update(id, city.at(position.0, position.1)?, now_ms).is_err() {
                refused += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    let updates = rounds as u64 * options.index_drivers as u64;
    let updates_per_second = updates as f64 / elapsed.as_secs_f64();

    // Queries: the dispatcher's radius and candidate count, pickups anywhere in the city.
    let config = RidesConfig::default();
    let now_ms = rounds * 1000 + 1;
    let mut latency = histogram()?;
    let mut found_total = 0usize;
    for _ in 0..options.queries {
        let pickup = city.at(
            random.between(-city.half_side_m, city.half_side_m),
            random.between(-city.half_side_m, city.half_side_m),
        )?;
        let started = Instant::now();
        let found = index.nearest(pickup, config.search_radius_m, config.candidates_per_request, now_ms, |_| false);
        latency.record(started.elapsed().as_nanos().max(1) as u64)?;
        found_total += found.len();
    }
    let us = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let density = options.index_drivers as f64 / (4.0 * city.half_side_m * city.half_side_m / 1e6);
    println!("### Index: {} online drivers ({density:.0} per km²), one core\n", options.index_drivers);
    println!("| measure | result | target | met |");
    println!("| --- | ---: | ---: | --- |");
    println!(
        "| location updates/s ({updates} updates, {refused} refused) | {updates_per_second:.0} | ≥ 200,000 | {} |",
        if updates_per_second >= 200_000.0 { "yes" } else { "no" }
    );
    println!(
        "| nearest {} within {:.0} m: p50 / p99 / max ({} queries, {:.1} found on average) | {:.1} µs / {:.1} µs / {:.1} µs | p99 < 1 ms | {} |",
        config.candidates_per_request,
        config.search_radius_m,
        options.queries,
        found_total as f64 / options.queries.max(1) as f64,
        us(0.5),
        us(0.99),
        latency.max() as f64 / 1000.0,
        if us(0.99) < 1000.0 { "yes" } else { "no" }
    );
    println!();
    Ok(())
}

/// One rider's request, generated once and replayed identically for each strategy.
#[derive(Clone, Copy)]
struct Request {
    at_s: i64,
    pickup: (f64, f64),
    dropoff: (f64, f64),
    patience_s: i64,
}

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    Greedy,
    Batched,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Self::Greedy => "greedy nearest driver",
            Self::Batched => "batched (Kuhn–Munkres)",
        }
    }
}

struct Outcome {
    requests: usize,
    matched: usize,
    abandoned: usize,
    time_to_match_s: Histogram<u64>,
    pickup_eta_s: Histogram<u64>,
    pickup_distance_m_total: f64,
    pickup_eta_s_total: f64,
    busy_s: f64,
    /// Busy seconds with a rider on board (busy minus driving empty to pickups).
    carrying_s: f64,
    driver_seconds: f64,
    declines: usize,
    /// Requests that ran out of dispatch rounds (declined too often).
    no_driver: usize,
}

impl Outcome {
    fn new(requests: usize, driver_seconds: f64) -> anyhow::Result<Self> {
        Ok(Self {
            requests,
            matched: 0,
            abandoned: 0,
            time_to_match_s: histogram()?,
            pickup_eta_s: histogram()?,
            pickup_distance_m_total: 0.0,
            pickup_eta_s_total: 0.0,
            busy_s: 0.0,
            carrying_s: 0.0,
            driver_seconds,
            declines: 0,
            no_driver: 0,
        })
    }
}

/// Demand: Poisson arrivals per 1 km zone, busier towards the centre (weight e^(−r/3 km)),
/// destinations anywhere in the city at least 1 km away, patience 1–5 minutes.
fn demand(options: &Options, city: City, requests_per_second: f64, tick_s: i64) -> Vec<Request> {
    let mut random = Random(options.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let zones_per_side = (2.0 * city.half_side_m / 1000.0).round().max(1.0) as usize;
    let zone_m = 2.0 * city.half_side_m / zones_per_side as f64;
    let mut zones = Vec::new();
    for i in 0..zones_per_side {
        for j in 0..zones_per_side {
            let x = -city.half_side_m + (i as f64 + 0.5) * zone_m;
            let y = -city.half_side_m + (j as f64 + 0.5) * zone_m;
            zones.push((x, y, (-(x * x + y * y).sqrt() / 3000.0).exp()));
        }
    }
    let weight_total: f64 = zones.iter().map(|z| z.2).sum();
    let mut requests = Vec::new();
    let mut at_s = 0;
    while at_s < options.sim_seconds() {
        for (x, y, weight) in &zones {
            let mean = requests_per_second * weight / weight_total * tick_s as f64;
            for _ in 0..random.poisson(mean) {
                let pickup =
                    (x + random.between(-zone_m / 2.0, zone_m / 2.0), y + random.between(-zone_m / 2.0, zone_m / 2.0));
                let dropoff = loop {
                    let d = (
                        random.between(-city.half_side_m, city.half_side_m),
                        random.between(-city.half_side_m, city.half_side_m),
                    );
                    if ((d.0 - pickup.0).powi(2) + (d.1 - pickup.1).powi(2)).sqrt() >= 1000.0 {
                        break d;
                    }
                };
                let patience_s = random.between(60.0, 300.0) as i64;
                requests.push(Request {
                    at_s: at_s + random.between(0.0, tick_s as f64) as i64,
                    pickup,
                    dropoff,
                    patience_s,
                });
            }
        }
        at_s += tick_s;
    }
    requests.sort_by_key(|r| r.at_s);
    requests
}

fn simulate(
    options: &Options,
    city: City,
    requests: &[Request],
    strategy: Strategy,
    tick_s: i64,
) -> anyhow::Result<Outcome> {
    let config = RidesConfig::default();
    let routes = GreatCircleRoutes { detour_factor: config.detour_factor, city_speed_kmh: config.city_speed_kmh };
    let mut random = Random(options.seed.rotate_left(17) | 1);
    let mut index = DriverIndex::new(IndexLimits::default());
    let ids: Vec<String> = (0..options.sim_drivers).map(|i| format!("driver-{i}")).collect();
    let mut positions: Vec<(f64, f64)> = (0..options.sim_drivers)
        .map(|_| {
            (random.between(-city.half_side_m, city.half_side_m), random.between(-city.half_side_m, city.half_side_m))
        })
        .collect();
    // When each driver is free again (0: free now), and where it will be then.
    let mut busy_until: Vec<i64> = vec![0; options.sim_drivers];
    let mut free_at: Vec<(f64, f64)> = positions.clone();
    for (id, (x, y)) in ids.iter().zip(&positions) {
        index.go_online(id, city.at(*x, *y)?, 0);
    }
    let mut outcome = Outcome::new(requests.len(), options.sim_drivers as f64 * options.sim_seconds() as f64)?;
    // Declines draw from their own stream, so that both strategies see the same demand
    // and the same cruising whatever they decline.
    let mut answers = Random(options.seed.rotate_left(29) | 1);
    let decline_probability = f64::from(options.decline_percent.min(100)) / 100.0;
    let rounds_max = config.dispatch_rounds_max.max(1) as usize;
    let mut open: Vec<Request> = Vec::new();
    // The drivers who declined each open request (parallel to `open`).
    let mut declined: Vec<Vec<usize>> = Vec::new();
    let mut next = 0;
    let mut now_s = 0;
    while now_s < options.sim_seconds() {
        now_s += tick_s;
        let now_ms = now_s * 1000;
        // Drivers who finished a trip come back online where they dropped off; idle
        // drivers cruise (up to 8 m/s each way) and send their location every tick.
        for d in 0..options.sim_drivers {
            if busy_until[d] > 0 && busy_until[d] <= now_s {
                busy_until[d] = 0;
                positions[d] = free_at[d];
                index.go_online(&ids[d], city.at(positions[d].0, positions[d].1)?, now_ms);
            } else if busy_until[d] == 0 {
                let step = 8.0 * tick_s as f64;
                positions[d].0 = city.clamp(positions[d].0 + random.between(-step, step));
                positions[d].1 = city.clamp(positions[d].1 + random.between(-step, step));
                let _ = index.update(&ids[d], city.at(positions[d].0, positions[d].1)?, now_ms);
            }
        }
        while next < requests.len() && requests[next].at_s <= now_s {
            open.push(requests[next]);
            declined.push(Vec::new());
            next += 1;
        }
        let before = open.len();
        let keep: Vec<bool> = open
            .iter()
            .zip(&declined)
            .map(|(r, declined)| now_s - r.at_s <= r.patience_s && declined.len() < rounds_max)
            .collect();
        outcome.no_driver += declined.iter().filter(|d| d.len() >= rounds_max).count();
        retain_by(&mut open, &keep);
        retain_by(&mut declined, &keep);
        outcome.abandoned += before - open.len();
        if open.is_empty() {
            continue;
        }
        let batch = open.len().min(config.batch_requests_max.max(1) as usize);
        let (columns, costs) = cost_matrix(&index, city, &config, &routes, &open[..batch], &declined, now_ms)?;
        let pairs = match strategy {
            Strategy::Greedy => assign_greedy(&costs, columns.len()),
            Strategy::Batched => assign_batched(&costs, columns.len()),
        };
        let mut matched = vec![false; open.len()];
        for (r, column) in pairs {
            let d = columns[column];
            if answers.unit() < decline_probability {
                // Declined: the driver stays free, the request waits for the next batch.
                declined[r].push(d);
                outcome.declines += 1;
                continue;
            }
            let request = open[r];
            let pickup = city.at(request.pickup.0, request.pickup.1)?;
            let here = city.at(positions[d].0, positions[d].1)?;
            let (pickup_m, pickup_s) = routes.estimate(here, pickup);
            let (_, trip_s) = routes.estimate(pickup, city.at(request.dropoff.0, request.dropoff.1)?);
            let until = now_s + pickup_s + trip_s + 30;
            outcome.busy_s += (until.min(options.sim_seconds()) - now_s) as f64;
            let on_board_from = (now_s + pickup_s).min(options.sim_seconds());
            outcome.carrying_s += ((now_s + pickup_s + trip_s).min(options.sim_seconds()) - on_board_from) as f64;
            busy_until[d] = until.max(now_s + 1);
            free_at[d] = request.dropoff;
            index.remove(&ids[d]);
            matched[r] = true;
            outcome.matched += 1;
            outcome.time_to_match_s.record((now_s - request.at_s).max(0) as u64)?;
            outcome.pickup_eta_s.record(pickup_s.max(0) as u64)?;
            outcome.pickup_eta_s_total += pickup_s as f64;
            outcome.pickup_distance_m_total += pickup_m as f64;
        }
        let keep: Vec<bool> = matched.iter().map(|m| !m).collect();
        retain_by(&mut open, &keep);
        retain_by(&mut declined, &keep);
    }
    outcome.abandoned += open.len();
    Ok(outcome)
}

/// The dispatcher's cost matrix for `open` requests: candidates from the index (less
/// those who declined each request), ETAs from the routes. Returns the drivers of the
/// columns and a row per request.
#[allow(clippy::type_complexity)]
fn cost_matrix(
    index: &DriverIndex,
    city: City,
    config: &RidesConfig,
    routes: &GreatCircleRoutes,
    open: &[Request],
    declined: &[Vec<usize>],
    now_ms: i64,
) -> anyhow::Result<(Vec<usize>, Vec<Vec<Option<i64>>>)> {
    let driver_of = |id: &str| id.strip_prefix("driver-").and_then(|n| n.parse::<usize>().ok());
    let mut columns: Vec<usize> = Vec::new();
    let mut column_of = std::collections::HashMap::new();
    let mut costs: Vec<Vec<Option<i64>>> = Vec::with_capacity(open.len());
    for (request, declined) in open.iter().zip(declined) {
        let pickup = city.at(request.pickup.0, request.pickup.1)?;
        let mut row = Vec::new();
        let excluded = |id: &str| driver_of(id).is_some_and(|d| declined.contains(&d));
        for candidate in index.nearest(pickup, config.search_radius_m, config.candidates_per_request, now_ms, excluded)
        {
            let Some(d) = driver_of(&candidate.driver_id) else { continue };
            let column = *column_of.entry(d).or_insert_with(|| {
                columns.push(d);
                columns.len() - 1
            });
            if row.len() <= column {
                row.resize(column + 1, None);
            }
            row[column] = Some(routes.estimate(candidate.location, pickup).1);
        }
        costs.push(row);
    }
    for row in &mut costs {
        row.resize(columns.len(), None);
    }
    Ok((columns, costs))
}

/// Keeps the items whose `keep` is true, in order.
fn retain_by<T>(items: &mut Vec<T>, keep: &[bool]) {
    let mut i = 0;
    items.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

fn dispatch_simulation(options: &Options, city: City) -> anyhow::Result<()> {
    let tick_s = RidesConfig::default().batch_interval.as_secs().max(1) as i64;
    println!(
        "### Dispatch simulator: {} drivers, {:.0} km × {:.0} km city, {} simulated minutes per run, batch every {tick_s} s, {}% of offers declined\n",
        options.sim_drivers,
        2.0 * city.half_side_m / 1000.0,
        2.0 * city.half_side_m / 1000.0,
        options.sim_minutes,
        options.decline_percent,
    );
    println!("| demand | strategy | requests | service rate | abandoned (of which no_driver) | declines | time to match p50 / p95 | pickup ETA p50 / p95 | mean pickup distance | driver utilisation | rider on board | run time |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut gains = Vec::new();
    for &requests_per_second in &options.demand {
        let requests = demand(options, city, requests_per_second, tick_s);
        let mut means = Vec::new();
        for strategy in [Strategy::Greedy, Strategy::Batched] {
            let started = Instant::now();
            let outcome = simulate(options, city, &requests, strategy, tick_s)?;
            let matched = outcome.matched.max(1) as f64;
            let mean_distance = outcome.pickup_distance_m_total / matched;
            let mean_eta = outcome.pickup_eta_s_total / matched;
            println!(
                "| {requests_per_second}/s | {} | {} | {:.1}% | {} ({}) | {} | {} s / {} s | {} s / {} s | {mean_distance:.0} m | {:.1}% | {:.1}% | {:.1} s |",
                strategy.name(),
                outcome.requests,
                100.0 * outcome.matched as f64 / outcome.requests.max(1) as f64,
                outcome.abandoned,
                outcome.no_driver,
                outcome.declines,
                outcome.time_to_match_s.value_at_quantile(0.5),
                outcome.time_to_match_s.value_at_quantile(0.95),
                outcome.pickup_eta_s.value_at_quantile(0.5),
                outcome.pickup_eta_s.value_at_quantile(0.95),
                100.0 * outcome.busy_s / outcome.driver_seconds.max(1.0),
                100.0 * outcome.carrying_s / outcome.driver_seconds.max(1.0),
                started.elapsed().as_secs_f64(),
            );
            means.push((mean_distance, mean_eta, outcome.matched));
        }
        gains.push((requests_per_second, means));
    }
    println!("\n| demand | batched: pickup distance | batched: mean pickup ETA | batched: rides matched |");
    println!("| ---: | ---: | ---: | ---: |");
    for (requests_per_second, means) in gains {
        let (greedy, batched) = (means[0], means[1]);
        let change = |g: f64, b: f64| if g > 0.0 { 100.0 * (b - g) / g } else { 0.0 };
        println!(
            "| {requests_per_second}/s | {:+.1}% | {:+.1}% | {:+} |",
            change(greedy.0, batched.0),
            change(greedy.1, batched.1),
            batched.2 as i64 - greedy.2 as i64
        );
    }
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            index_drivers: 0,
            queries: 0,
            sim_drivers: 40,
            demand: vec![0.05],
            sim_minutes: 15,
            seed: 7,
            decline_percent: 0,
        }
    }

    #[test]
    fn both_strategies_see_the_same_demand_and_account_for_every_request() {
        let options = options();
        let city = City { centre_lat: 1.3521, centre_lng: 103.8198, half_side_m: 3_000.0 };
        let requests = demand(&options, city, 0.05, 2);
        let again = demand(&options, city, 0.05, 2);
        assert!(!requests.is_empty());
        assert_eq!(
            requests.iter().map(|r| (r.at_s, r.patience_s)).collect::<Vec<_>>(),
            again.iter().map(|r| (r.at_s, r.patience_s)).collect::<Vec<_>>()
        );
        for strategy in [Strategy::Greedy, Strategy::Batched] {
            let outcome = simulate(&options, city, &requests, strategy, 2).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(outcome.requests, requests.len());
            assert_eq!(outcome.matched + outcome.abandoned, requests.len());
            assert!(outcome.matched > 0);
            assert_eq!(outcome.pickup_eta_s.len(), outcome.matched as u64);
            assert_eq!((outcome.declines, outcome.no_driver), (0, 0));
        }
    }

    #[test]
    fn declined_offers_go_to_other_drivers_and_every_request_is_still_accounted_for() {
        let options = Options { decline_percent: 50, ..options() };
        let city = City { centre_lat: 1.3521, centre_lng: 103.8198, half_side_m: 3_000.0 };
        let requests = demand(&options, city, 0.05, 2);
        let outcome = simulate(&options, city, &requests, Strategy::Batched, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome.matched + outcome.abandoned, requests.len());
        assert!(outcome.declines > 0 && outcome.matched > 0);
        assert!(outcome.no_driver <= outcome.abandoned);
    }
}
