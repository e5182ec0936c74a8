//! Pareto fronts of accuracy (maximised) against a cost (minimised).
//!
//! A point is on the front when no other point has cost ≤ and accuracy ≥ with at least one
//! strict. Exact duplicates are all kept. The computation is a sort and one scan.

/// Indices (the `.0` of each point) on the front of `(index, cost, accuracy)` points, by
/// increasing cost (ties by index).
pub fn pareto_front(points: &[(usize, f64, f64)]) -> Vec<usize> {
    let mut v: Vec<&(usize, f64, f64)> = points
        .iter()
        .filter(|p| p.1.is_finite() && p.2.is_finite())
        .collect();
    v.sort_by(|a, b| {
        a.1.total_cmp(&b.1)
            .then_with(|| b.2.total_cmp(&a.2))
            .then_with(|| a.0.cmp(&b.0))
    });
    let mut front = Vec::new();
    // Best accuracy among points of strictly lower cost.
    let mut best_below = f64::NEG_INFINITY;
    let mut k = 0;
    while k < v.len() {
        let cost = v[k].1;
        let mut end = k;
        while end < v.len() && v[end].1 == cost {
            end += 1;
        }
        // Within one cost group the first point has the highest accuracy.
        let top = v[k].2;
        if top > best_below {
            front.extend(v[k..end].iter().filter(|p| p.2 == top).map(|p| p.0));
            best_below = top;
        }
        k = end;
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dominated(p: &(usize, f64, f64), all: &[(usize, f64, f64)]) -> bool {
        all.iter()
            .any(|q| q.1 <= p.1 && q.2 >= p.2 && (q.1 < p.1 || q.2 > p.2))
    }

    #[test]
    fn small_example() {
        let pts = [
            (0, 10.0, 0.5),
            (1, 20.0, 0.9),
            (2, 15.0, 0.4),
            (3, 30.0, 0.9),
            (4, 5.0, 0.1),
            (5, 20.0, 0.9),
        ];
        assert_eq!(pareto_front(&pts), vec![4, 0, 1, 5]);
    }

    proptest! {
        #[test]
        fn matches_quadratic_definition(raw in proptest::collection::vec((0u8..20, 0u8..20), 0..40)) {
            let pts: Vec<(usize, f64, f64)> = raw
                .iter()
                .enumerate()
                .map(|(k, (c, a))| (k, f64::from(*c), f64::from(*a) / 20.0))
                .collect();
            let mut got = pareto_front(&pts);
            got.sort_unstable();
            let want: Vec<usize> = pts.iter().filter(|p| !dominated(p, &pts)).map(|p| p.0).collect();
            prop_assert_eq!(got, want);
        }
    }
}
