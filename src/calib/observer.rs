//! Per-tensor streaming observer: exact running range statistics plus an optional histogram.

use super::histogram::{Histogram, DEFAULT_BINS};
use super::CalibError;

/// Settings of a [`TensorObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObserverConfig {
    /// Histogram bin count (power of two), or `None` for range statistics only (enough for the
    /// min/max method).
    pub histogram_bins: Option<usize>,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        Self {
            histogram_bins: Some(DEFAULT_BINS),
        }
    }
}

/// Exact running statistics of a tensor: element count, minimum, maximum, largest magnitude.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RangeStats {
    /// Number of values observed.
    pub count: u64,
    /// Smallest value (`+inf` before any value).
    pub min: f32,
    /// Largest value (`−inf` before any value).
    pub max: f32,
}

impl Default for RangeStats {
    fn default() -> Self {
        Self {
            count: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }
}

impl RangeStats {
    /// Largest magnitude, 0 before any value.
    pub fn absmax(&self) -> f32 {
        if self.count == 0 {
            0.0
        } else {
            self.min.abs().max(self.max.abs())
        }
    }

    /// Minimum and maximum of `x` (±infinity when empty) and whether every value is finite, in
    /// one pass. Sixteen independent lanes let the compiler use vector min/max and compares;
    /// the result is the exact minimum and maximum either way (a NaN never wins a comparison,
    /// and is caught by the per-lane NaN test).
    fn scan(x: &[f32]) -> (f32, f32, bool) {
        const L: usize = 16;
        let mut lo = [f32::INFINITY; L];
        let mut hi = [f32::NEG_INFINITY; L];
        let mut nan = [false; L];
        let chunks = x.chunks_exact(L);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..L {
                lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
                hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
                nan[i] |= c[i].is_nan();
            }
        }
        for &v in rest {
            lo[0] = lo[0].min(v);
            hi[0] = hi[0].max(v);
            nan[0] |= v.is_nan();
        }
        let min = lo.iter().copied().fold(f32::INFINITY, f32::min);
        let max = hi.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let finite =
            !nan.iter().any(|&b| b) && (x.is_empty() || (min.is_finite() && max.is_finite()));
        (min, max, finite)
    }

    /// Adds a batch whose minimum and maximum are `min` and `max` (as from [`Self::scan`]).
    fn add(&mut self, min: f32, max: f32, n: usize) {
        if n > 0 {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.count += n as u64;
    }

    fn merge(&mut self, other: &RangeStats) {
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// What the observed data says about the sign of a tensor; the quantize command combines it with
/// the graph (Relu, Sigmoid…) to pick an unsigned activation format.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Signedness {
    /// Smallest value observed.
    pub min: f32,
    /// True when at least one value was observed and none was negative (`min ≥ 0`). Observed
    /// data only: unseen inputs may still be negative.
    pub non_negative: bool,
}

/// Streaming observer of one tensor. Its memory is fixed at creation (a few counters plus
/// `2 × bins` histogram counters), whatever the number of batches observed.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorObserver {
    name: String,
    stats: RangeStats,
    hist: Option<Histogram>,
}

impl TensorObserver {
    /// An observer for the tensor called `name`.
    pub fn new(name: impl Into<String>, config: ObserverConfig) -> Result<Self, CalibError> {
        let name = name.into();
        let hist = match config.histogram_bins {
            Some(b) => Some(Histogram::new(b).map_err(|e| match e {
                CalibError::InvalidOption { option, reason } => CalibError::InvalidOption {
                    option: format!("{option} (tensor '{name}')"),
                    reason,
                },
                other => other,
            })?),
            None => None,
        };
        Ok(Self {
            name,
            stats: RangeStats::default(),
            hist,
        })
    }

    /// Tensor name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Observes one batch of values (any layout; only values matter). A NaN or infinity is an
    /// error naming the tensor and the flat index within this batch; nothing of the batch is
    /// counted then.
    pub fn observe(&mut self, x: &[f32]) -> Result<(), CalibError> {
        // One vectorizable pass finds the range and screens for NaN/infinity; the index is
        // searched only on failure.
        let (min, max, all_finite) = RangeStats::scan(x);
        if !all_finite {
            if let Some((index, &value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(CalibError::NonFinite {
                    tensor: self.name.clone(),
                    index,
                    value,
                });
            }
        }
        self.stats.add(min, max, x.len());
        if let Some(h) = &mut self.hist {
            h.observe(x).map_err(|e| self.rename(e))?;
        }
        Ok(())
    }

    /// Observes one batch given as an array of any layout (copied only when it is not
    /// contiguous in standard order).
    pub fn observe_array(&mut self, x: ndarray::ArrayViewD<'_, f32>) -> Result<(), CalibError> {
        match x.as_slice() {
            Some(s) => self.observe(s),
            None => self.observe(&x.iter().copied().collect::<Vec<f32>>()),
        }
    }

    fn rename(&self, e: CalibError) -> CalibError {
        match e {
            CalibError::NonFinite { index, value, .. } => CalibError::NonFinite {
                tensor: self.name.clone(),
                index,
                value,
            },
            CalibError::MergeMismatch { left, right, .. } => CalibError::MergeMismatch {
                tensor: self.name.clone(),
                left,
                right,
            },
            other => other,
        }
    }

    /// Adds everything `other` observed. Exact and order-independent: the result equals one
    /// observer that saw both streams.
    pub fn merge(&mut self, other: &TensorObserver) -> Result<(), CalibError> {
        match (&mut self.hist, &other.hist) {
            (Some(a), Some(b)) => a.merge(b).map_err(|e| match e {
                CalibError::MergeMismatch { left, right, .. } => CalibError::MergeMismatch {
                    tensor: self.name.clone(),
                    left,
                    right,
                },
                o => o,
            })?,
            (None, None) => {}
            (a, b) => {
                return Err(CalibError::MergeMismatch {
                    tensor: self.name.clone(),
                    left: a.as_ref().map_or(0, Histogram::bins),
                    right: b.as_ref().map_or(0, Histogram::bins),
                })
            }
        }
        self.stats.merge(&other.stats);
        Ok(())
    }

    /// Exact range statistics.
    pub fn stats(&self) -> &RangeStats {
        &self.stats
    }

    /// The histogram, when enabled.
    pub fn histogram(&self) -> Option<&Histogram> {
        self.hist.as_ref()
    }

    /// Sign record of the observed data.
    pub fn signedness(&self) -> Signedness {
        Signedness {
            min: self.stats.min,
            non_negative: self.stats.count > 0 && self.stats.min >= 0.0,
        }
    }

    /// Heap bytes held (fixed at creation).
    pub fn heap_bytes(&self) -> usize {
        self.name.capacity() + self.hist.as_ref().map_or(0, Histogram::heap_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_independent_of_batch_count() {
        let batch: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.37).collect();
        let mut a = TensorObserver::new("t", ObserverConfig::default()).expect("cfg");
        for _ in 0..10 {
            a.observe(&batch).expect("finite");
        }
        let mut b = TensorObserver::new("t", ObserverConfig::default()).expect("cfg");
        for k in 0..10_000 {
            let scaled: Vec<f32> = batch.iter().map(|v| v * (1.0 + k as f32)).collect();
            b.observe(&scaled).expect("finite");
        }
        assert_eq!(a.heap_bytes(), b.heap_bytes());
        assert_eq!(std::mem::size_of_val(&a), std::mem::size_of_val(&b));
        assert_eq!(b.stats().count, 10_000_000);
        assert_eq!(b.histogram().expect("hist").total(), 10_000_000);
    }

    #[test]
    fn stats_and_signedness() {
        let mut o = TensorObserver::new("relu_out", ObserverConfig::default()).expect("cfg");
        assert!(!o.signedness().non_negative);
        o.observe(&[0.0, 2.5, 1.0]).expect("finite");
        assert!(o.signedness().non_negative);
        assert_eq!(o.stats().absmax(), 2.5);
        o.observe(&[-3.0]).expect("finite");
        let s = o.signedness();
        assert!(!s.non_negative);
        assert_eq!(s.min, -3.0);
        assert_eq!(o.stats().absmax(), 3.0);
    }

    #[test]
    fn observe_array_handles_views() {
        let a = ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32 - 5.0);
        let mut t = TensorObserver::new("v", ObserverConfig::default()).expect("cfg");
        t.observe_array(a.t().into_dyn()).expect("finite");
        let mut s = TensorObserver::new("v", ObserverConfig::default()).expect("cfg");
        s.observe(a.as_slice().expect("contiguous"))
            .expect("finite");
        assert_eq!(t, s);
    }

    #[test]
    fn nan_error_names_tensor() {
        let mut o = TensorObserver::new("conv1_in", ObserverConfig::default()).expect("cfg");
        let e = o.observe(&[1.0, f32::INFINITY]).expect_err("inf");
        assert!(e.to_string().contains("conv1_in"), "{e}");
        assert_eq!(o.stats().count, 0);
    }

    #[test]
    fn merge_matches_single_stream() {
        let xs: Vec<f32> = (0..999).map(|i| ((i * 37) % 101) as f32 - 40.0).collect();
        let mut whole = TensorObserver::new("x", ObserverConfig::default()).expect("cfg");
        whole.observe(&xs).expect("finite");
        let mut parts: Vec<TensorObserver> = xs
            .chunks(100)
            .map(|c| {
                let mut o = TensorObserver::new("x", ObserverConfig::default()).expect("cfg");
                o.observe(c).expect("finite");
                o
            })
            .collect();
        let mut merged = parts.remove(3);
        for p in parts.iter().rev() {
            merged.merge(p).expect("same cfg");
        }
        assert_eq!(merged, whole);
        let none = TensorObserver::new(
            "x",
            ObserverConfig {
                histogram_bins: None,
            },
        )
        .expect("cfg");
        assert!(merged.merge(&none).is_err());
    }
}
