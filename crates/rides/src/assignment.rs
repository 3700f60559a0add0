//! Matching a batch of open requests to available drivers. Pure functions over a cost
//! matrix of pickup ETAs, so the dispatcher and the simulator run the same code.
//!
//! Batched assignment solves the whole batch at once with Kuhn–Munkres (the Hungarian
//! method), minimising the total pickup ETA; greedy gives each request, oldest first, the
//! nearest driver still free. Greedy can strand a later request whose only nearby driver
//! was taken by an earlier one that had other choices; batching does not.

use pathfinding::prelude::{kuhn_munkres_min, Matrix};

/// The cost of leaving a request unmatched in this batch: above any real ETA, so the
/// solver matches every request it can, and small enough that sums never overflow.
const UNMATCHED_COST: i64 = 1_000_000_000;

/// `costs[r][d]` is the pickup ETA in seconds of driver `d` for request `r`, or `None`
/// when the driver is out of reach. Returns (request, driver) pairs, each request and
/// each driver at most once, minimising the total ETA of the matched pairs.
pub fn assign_batched(costs: &[Vec<Option<i64>>], drivers: usize) -> Vec<(usize, usize)> {
    let requests = costs.len();
    if requests == 0 || drivers == 0 {
        return Vec::new();
    }
    // One "unmatched" column per request keeps rows ≤ columns (the solver's
    // precondition) and lets any request stay unmatched.
    let matrix = Matrix::from_fn(requests, drivers + requests, |(r, column)| {
        if column < drivers {
            costs[r].get(column).copied().flatten().map_or(UNMATCHED_COST + 1, |eta| eta.clamp(0, UNMATCHED_COST - 1))
        } else {
            UNMATCHED_COST
        }
    });
    let (_, columns) = kuhn_munkres_min(&matrix);
    columns
        .into_iter()
        .enumerate()
        .filter(|(r, column)| *column < drivers && costs[*r].get(*column).copied().flatten().is_some())
        .collect()
}

/// Each request in order takes the free driver with the lowest ETA.
pub fn assign_greedy(costs: &[Vec<Option<i64>>], drivers: usize) -> Vec<(usize, usize)> {
    let mut taken = vec![false; drivers];
    let mut pairs = Vec::new();
    for (r, row) in costs.iter().enumerate() {
        let best = row
            .iter()
            .enumerate()
            .filter(|(d, eta)| *d < drivers && !taken[*d] && eta.is_some())
            .min_by_key(|(_, eta)| eta.unwrap_or(i64::MAX));
        if let Some((d, _)) = best {
            taken[d] = true;
            pairs.push((r, d));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(costs: &[Vec<Option<i64>>], pairs: &[(usize, usize)]) -> i64 {
        pairs.iter().map(|(r, d)| costs[*r][*d].unwrap_or(0)).sum()
    }

    #[test]
    fn batching_beats_greedy_where_greedy_strands_a_request() {
        // Driver 0 is near both; driver 1 only reaches request 0.
        let costs = vec![vec![Some(60), Some(120)], vec![Some(90), None]];
        let greedy = assign_greedy(&costs, 2);
        assert_eq!(greedy, [(0, 0)]);
        let batched = assign_batched(&costs, 2);
        assert_eq!(batched.len(), 2);
        assert_eq!(total(&costs, &batched), 210);
    }

    #[test]
    fn batching_minimises_the_total_eta() {
        let costs = vec![vec![Some(100), Some(110)], vec![Some(10), Some(500)]];
        let batched = assign_batched(&costs, 2);
        assert_eq!(total(&costs, &batched), 120);
        assert_eq!(assign_greedy(&costs, 2), [(0, 0), (1, 1)]);
    }

    #[test]
    fn more_requests_than_drivers_and_unreachable_pairs_are_left_unmatched() {
        let costs = vec![vec![Some(30)], vec![Some(20)], vec![None]];
        let batched = assign_batched(&costs, 1);
        assert_eq!(batched, [(1, 0)]);
        assert!(assign_batched(&[vec![None, None]], 2).is_empty());
        assert!(assign_batched(&[], 3).is_empty());
        assert!(assign_batched(&[vec![]], 0).is_empty());
    }

    #[test]
    fn every_driver_is_used_at_most_once() {
        let costs: Vec<Vec<Option<i64>>> =
            (0..20).map(|r| (0..7).map(|d| Some(((r * 7 + d * 13) % 31) as i64)).collect()).collect();
        let batched = assign_batched(&costs, 7);
        assert_eq!(batched.len(), 7);
        let mut drivers: Vec<usize> = batched.iter().map(|p| p.1).collect();
        drivers.sort_unstable();
        drivers.dedup();
        assert_eq!(drivers.len(), 7);
        assert!(total(&costs, &batched) <= total(&costs, &assign_greedy(&costs, 7)));
    }
}
