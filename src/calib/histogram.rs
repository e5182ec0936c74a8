//! A fixed-size histogram of magnitudes with separate counts for positive and negative values,
//! whose range grows by exact doubling.
//!
//! Scheme: the histogram has `N = 2^k` bins of equal width over `[0, R)` with `R = 2^e` a power
//! of two, chosen as the smallest power of two strictly above the largest magnitude seen so far.
//! Bin `i` holds magnitudes in `[i·w, (i+1)·w)` with `w = R / N`, also a power of two, so the bin
//! index `floor(|x| / w)` is computed exactly in `f64`. When a batch holds a magnitude `≥ R`, the
//! range doubles (as often as needed): bins `2i` and `2i+1` merge into bin `i` and the upper half
//! empties. Because the bins nest dyadically, a value binned at a finer width and merged later
//! lands in exactly the bin it would have been given at the coarser width directly. The final
//! histogram is therefore a function of the multiset of observed values only: independent of batch
//! order, batch sizes and merge order, and its memory is `2·N` counters whatever the sample count.
//! Exact zeros are counted apart (they carry no range information).

use super::CalibError;

/// Default number of bins (a power of two).
pub const DEFAULT_BINS: usize = 2048;

/// Histogram of `|x|` split by sign, over a power-of-two range; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    log2_bins: u32,
    /// `R = 2^range_exp`; `None` until the first non-zero value.
    range_exp: Option<i32>,
    pos: Vec<u64>,
    neg: Vec<u64>,
    zeros: u64,
    absmax: f32,
}

/// `floor(log2(a))` for a finite `a > 0`, exact (read from the `f64` exponent field; every
/// `f32`, subnormals included, is a normal `f64`).
fn floor_log2(a: f64) -> i32 {
    let biased = ((a.to_bits() >> 52) & 0x7ff) as i32;
    biased - 1023
}

impl Histogram {
    /// A histogram with `bins` bins; `bins` must be a power of two in `16..=2^20`.
    pub fn new(bins: usize) -> Result<Self, CalibError> {
        if !bins.is_power_of_two() || !(16..=1 << 20).contains(&bins) {
            return Err(CalibError::InvalidOption {
                option: "histogram bins".into(),
                reason: format!("{bins} is not a power of two in 16..=1048576"),
            });
        }
        Ok(Self {
            log2_bins: bins.trailing_zeros(),
            range_exp: None,
            pos: vec![0; bins],
            neg: vec![0; bins],
            zeros: 0,
            absmax: 0.0,
        })
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.pos.len()
    }

    /// Upper end of the binned range (`R`), or `None` when only zeros were seen.
    pub fn range(&self) -> Option<f64> {
        self.range_exp.map(|e| 2f64.powi(e))
    }

    /// Width of one bin, or `None` when only zeros were seen.
    pub fn bin_width(&self) -> Option<f64> {
        self.range_exp.map(|e| 2f64.powi(e - self.log2_bins as i32))
    }

    /// Counts of positive values per bin.
    pub fn positive(&self) -> &[u64] {
        &self.pos
    }

    /// Counts of negative values per bin (binned by magnitude).
    pub fn negative(&self) -> &[u64] {
        &self.neg
    }

    /// Number of exact zeros seen.
    pub fn zeros(&self) -> u64 {
        self.zeros
    }

    /// Largest magnitude seen (exact).
    pub fn absmax(&self) -> f32 {
        self.absmax
    }

    /// Total number of values seen.
    pub fn total(&self) -> u64 {
        self.zeros + self.pos.iter().sum::<u64>() + self.neg.iter().sum::<u64>()
    }

    /// Bytes of heap memory held (constant for a given bin count).
    pub fn heap_bytes(&self) -> usize {
        (self.pos.capacity() + self.neg.capacity()) * std::mem::size_of::<u64>()
    }

    /// Centre of bin `i` (`(i + 0.5)·w`), or `None` when only zeros were seen.
    pub fn bin_centre(&self, i: usize) -> Option<f64> {
        self.bin_width().map(|w| (i as f64 + 0.5) * w)
    }

    /// Grows the range to `2^new_exp` by merging adjacent bins.
    fn grow_to(&mut self, new_exp: i32) {
        let old = match self.range_exp {
            None => {
                self.range_exp = Some(new_exp);
                return;
            }
            Some(e) if e >= new_exp => return,
            Some(e) => e,
        };
        let n = self.pos.len();
        let steps = ((new_exp - old) as u32).min(self.log2_bins);
        for counts in [&mut self.pos, &mut self.neg] {
            for _ in 0..steps {
                for i in 0..n / 2 {
                    counts[i] = counts[2 * i] + counts[2 * i + 1];
                }
                counts[n / 2..].iter_mut().for_each(|c| *c = 0);
            }
        }
        self.range_exp = Some(new_exp);
    }

    /// Adds finite values. Non-finite values are rejected before anything is counted; the
    /// error's tensor name is left empty for the caller to fill.
    pub fn observe(&mut self, x: &[f32]) -> Result<(), CalibError> {
        let mut batch_max = 0f32;
        for (index, &v) in x.iter().enumerate() {
            if !v.is_finite() {
                return Err(CalibError::NonFinite {
                    tensor: String::new(),
                    index,
                    value: v,
                });
            }
            batch_max = batch_max.max(v.abs());
        }
        if batch_max == 0.0 {
            self.zeros += x.len() as u64;
            return Ok(());
        }
        self.absmax = self.absmax.max(batch_max);
        self.grow_to(floor_log2(f64::from(batch_max)) + 1);
        let Some(e) = self.range_exp else {
            return Ok(());
        };
        // 1/w is a power of two: the product is exact and floor gives the exact bin.
        let inv_w = 2f64.powi(self.log2_bins as i32 - e);
        let last = self.pos.len() - 1;
        for &v in x {
            if v == 0.0 {
                self.zeros += 1;
                continue;
            }
            let i = ((f64::from(v.abs()) * inv_w) as usize).min(last);
            if v > 0.0 {
                self.pos[i] += 1;
            } else {
                self.neg[i] += 1;
            }
        }
        Ok(())
    }

    /// Adds the counts of `other` (same bin count). The result equals a histogram that observed
    /// both sets of values.
    pub fn merge(&mut self, other: &Histogram) -> Result<(), CalibError> {
        if other.bins() != self.bins() {
            return Err(CalibError::MergeMismatch {
                tensor: String::new(),
                left: self.bins(),
                right: other.bins(),
            });
        }
        self.zeros += other.zeros;
        self.absmax = self.absmax.max(other.absmax);
        let Some(oe) = other.range_exp else {
            return Ok(());
        };
        self.grow_to(oe);
        let Some(e) = self.range_exp else {
            return Ok(());
        };
        let mut theirs = other.clone();
        theirs.grow_to(e);
        for (a, b) in self.pos.iter_mut().zip(&theirs.pos) {
            *a += b;
        }
        for (a, b) in self.neg.iter_mut().zip(&theirs.neg) {
            *a += b;
        }
        Ok(())
    }

    /// Index one past the last non-empty bin (0 when only zeros were seen).
    pub fn used_bins(&self) -> usize {
        (0..self.bins())
            .rev()
            .find(|&i| self.pos[i] + self.neg[i] > 0)
            .map_or(0, |i| i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 10.0
            })
            .collect()
    }

    #[test]
    fn bins_must_be_power_of_two() {
        assert!(Histogram::new(1000).is_err());
        assert!(Histogram::new(8).is_err());
        assert_eq!(Histogram::new(64).expect("valid").bins(), 64);
    }

    #[test]
    fn range_is_smallest_power_of_two_above_max() {
        let mut h = Histogram::new(16).expect("valid");
        h.observe(&[0.0, 0.75, -1.0]).expect("finite");
        assert_eq!(h.range(), Some(2.0));
        h.observe(&[4.0]).expect("finite");
        assert_eq!(h.range(), Some(8.0));
        assert_eq!(h.total(), 4);
        assert_eq!(h.zeros(), 1);
        // 0.75 → bin floor(0.75/0.5)=1, −1 → bin 2, 4 → bin 8 at width 0.5.
        assert_eq!(h.positive()[1], 1);
        assert_eq!(h.negative()[2], 1);
        assert_eq!(h.positive()[8], 1);
    }

    #[test]
    fn growth_equals_direct_binning_and_order_independent() {
        let data = lcg(7, 5000);
        let mut direct = Histogram::new(256).expect("valid");
        direct.observe(&data).expect("finite");
        // Small batches first (range grows many times), in two different orders.
        let mut sorted = data.clone();
        sorted.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
        let mut grown = Histogram::new(256).expect("valid");
        for c in sorted.chunks(7) {
            grown.observe(c).expect("finite");
        }
        assert_eq!(grown, direct);
        let mut rev = Histogram::new(256).expect("valid");
        for c in sorted.rchunks(13) {
            rev.observe(c).expect("finite");
        }
        assert_eq!(rev, direct);
    }

    #[test]
    fn merge_is_order_independent() {
        let parts: Vec<Vec<f32>> = (0..5)
            .map(|k| {
                lcg(k, 300)
                    .into_iter()
                    .map(|v| v * (k as f32 + 1.0).powi(3))
                    .collect()
            })
            .collect();
        let hists: Vec<Histogram> = parts
            .iter()
            .map(|p| {
                let mut h = Histogram::new(128).expect("valid");
                h.observe(p).expect("finite");
                h
            })
            .collect();
        let mut a = Histogram::new(128).expect("valid");
        for h in &hists {
            a.merge(h).expect("same bins");
        }
        let mut b = Histogram::new(128).expect("valid");
        for h in hists.iter().rev() {
            b.merge(h).expect("same bins");
        }
        let mut all = Histogram::new(128).expect("valid");
        all.observe(&parts.concat()).expect("finite");
        assert_eq!(a, b);
        assert_eq!(a, all);
    }

    #[test]
    fn rejects_non_finite_without_counting() {
        let mut h = Histogram::new(16).expect("valid");
        let err = h.observe(&[1.0, f32::NAN]).expect_err("nan");
        assert!(matches!(err, CalibError::NonFinite { index: 1, .. }));
        assert_eq!(h.total(), 0);
    }

    #[test]
    fn tiny_and_huge_values_are_binned() {
        let mut h = Histogram::new(16).expect("valid");
        h.observe(&[f32::from_bits(1), 1e-30]).expect("finite");
        h.observe(&[f32::MAX]).expect("finite");
        assert_eq!(h.total(), 3);
        assert_eq!(h.range(), Some(2f64.powi(128)));
        assert_eq!(h.positive()[15], 1);
        assert_eq!(h.positive()[0], 2);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            /// Any split into batches and any merge order give the histogram of all values
            /// binned at once.
            #[test]
            fn batching_never_changes_the_histogram(
                xs in proptest::collection::vec(-1e6f32..1e6f32, 1..400),
                cuts in proptest::collection::vec(1usize..50, 1..10),
                bins_log2 in 4u32..9,
            ) {
                let bins = 1usize << bins_log2;
                let mut direct = Histogram::new(bins).expect("valid");
                direct.observe(&xs).expect("finite");
                let mut parts = Vec::new();
                let mut rest: &[f32] = &xs;
                let mut k = 0;
                while !rest.is_empty() {
                    let n = cuts[k % cuts.len()].min(rest.len());
                    let mut h = Histogram::new(bins).expect("valid");
                    h.observe(&rest[..n]).expect("finite");
                    parts.push(h);
                    rest = &rest[n..];
                    k += 1;
                }
                let mut fwd = Histogram::new(bins).expect("valid");
                for h in &parts {
                    fwd.merge(h).expect("same bins");
                }
                let mut rev = Histogram::new(bins).expect("valid");
                for h in parts.iter().rev() {
                    rev.merge(h).expect("same bins");
                }
                prop_assert_eq!(&fwd, &direct);
                prop_assert_eq!(&rev, &direct);
            }
        }
    }
}
