//! Accuracy and fidelity metrics, accumulated batch by batch: each accumulator keeps a few
//! running sums (memory independent of the number of samples), takes batches with `update` and
//! reports with `finish`.
//!
//! Conventions: axis 0 of every array is the sample axis; "per sample" metrics flatten the
//! other axes. Sums are kept in `f64`. Results are deterministic for a given batch order.

mod image;

pub use image::{Psnr, PsnrPeak, Ssim};

use ndarray::ArrayViewD;

/// Errors of the metrics module; each names the metric.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricError {
    #[error("{metric}: reference shape {reference:?} and test shape {test:?} differ")]
    ShapeMismatch {
        metric: &'static str,
        reference: Vec<usize>,
        test: Vec<usize>,
    },
    #[error("{metric}: {batch} outputs but {labels} labels in the batch")]
    LabelCount {
        metric: &'static str,
        batch: usize,
        labels: usize,
    },
    #[error("{metric}: label {label} out of range for {classes} classes")]
    LabelRange {
        metric: &'static str,
        label: i64,
        classes: usize,
    },
    #[error("{metric}: no samples were accumulated")]
    Empty { metric: &'static str },
    #[error("{metric}: {reason}")]
    Invalid {
        metric: &'static str,
        reason: String,
    },
}

/// A metric comparing a reference output (float model) with a test output (quantized model).
pub trait PairMetric {
    /// Adds one batch; both arrays have the same shape, axis 0 = samples.
    fn update(
        &mut self,
        reference: ArrayViewD<'_, f32>,
        test: ArrayViewD<'_, f32>,
    ) -> Result<(), MetricError>;
    /// The metric over everything accumulated so far.
    fn finish(&self) -> Result<f64, MetricError>;
}

fn same_shape(
    metric: &'static str,
    a: &ArrayViewD<'_, f32>,
    b: &ArrayViewD<'_, f32>,
) -> Result<(), MetricError> {
    if a.shape() == b.shape() {
        Ok(())
    } else {
        Err(MetricError::ShapeMismatch {
            metric,
            reference: a.shape().to_vec(),
            test: b.shape().to_vec(),
        })
    }
}

/// Rows (samples) of an array as flat vectors: `[N, …] → N × (∏ rest)`.
fn rows(a: &ArrayViewD<'_, f32>) -> Vec<Vec<f32>> {
    if a.ndim() == 0 {
        return vec![vec![a.iter().copied().next().unwrap_or(0.0)]];
    }
    a.outer_iter()
        .map(|r| r.iter().copied().collect())
        .collect()
}

/// Index of the largest value (first on ties; NaN never wins).
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > bv {
            bv = x;
            best = i;
        }
    }
    best
}

/// Top-1 and top-5 accuracy of logits against integer labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accuracy {
    samples: u64,
    top1: u64,
    top5: u64,
}

/// Final accuracy figures (fractions in `[0, 1]`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AccuracyResult {
    pub samples: u64,
    pub top1: f64,
    pub top5: f64,
}

impl Accuracy {
    /// Adds a batch of logits `[N, classes…]` and its `N` labels. Ranking is by value, ties
    /// broken by lower class index, NaN ranked last.
    pub fn update(
        &mut self,
        logits: ArrayViewD<'_, f32>,
        labels: &[i64],
    ) -> Result<(), MetricError> {
        let rs = rows(&logits);
        if rs.len() != labels.len() {
            return Err(MetricError::LabelCount {
                metric: "accuracy",
                batch: rs.len(),
                labels: labels.len(),
            });
        }
        for (r, &l) in rs.iter().zip(labels) {
            let classes = r.len();
            let li = usize::try_from(l).ok().filter(|&i| i < classes).ok_or(
                MetricError::LabelRange {
                    metric: "accuracy",
                    label: l,
                    classes,
                },
            )?;
            let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
            let lv = key(r[li]);
            let rank = r
                .iter()
                .enumerate()
                .filter(|&(i, &v)| key(v) > lv || (key(v) == lv && i < li))
                .count();
            self.samples += 1;
            self.top1 += u64::from(rank < 1);
            self.top5 += u64::from(rank < 5);
        }
        Ok(())
    }

    /// Accuracy so far.
    pub fn finish(&self) -> Result<AccuracyResult, MetricError> {
        if self.samples == 0 {
            return Err(MetricError::Empty { metric: "accuracy" });
        }
        let n = self.samples as f64;
        Ok(AccuracyResult {
            samples: self.samples,
            top1: self.top1 as f64 / n,
            top5: self.top5 as f64 / n,
        })
    }
}

/// Fraction of samples whose arg-max agrees between reference and test.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Top1Agreement {
    samples: u64,
    agree: u64,
}

impl PairMetric for Top1Agreement {
    fn update(
        &mut self,
        r: ArrayViewD<'_, f32>,
        t: ArrayViewD<'_, f32>,
    ) -> Result<(), MetricError> {
        same_shape("top-1 agreement", &r, &t)?;
        for (a, b) in rows(&r).iter().zip(rows(&t).iter()) {
            self.samples += 1;
            self.agree += u64::from(argmax(a) == argmax(b));
        }
        Ok(())
    }

    fn finish(&self) -> Result<f64, MetricError> {
        if self.samples == 0 {
            return Err(MetricError::Empty {
                metric: "top-1 agreement",
            });
        }
        Ok(self.agree as f64 / self.samples as f64)
    }
}

/// Signal-to-quantization-noise ratio over all elements, in dB:
/// `20·log10(‖x‖ / ‖x − x̂‖)` (`+inf` when identical).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sqnr {
    count: u64,
    signal: f64,
    noise: f64,
}

impl PairMetric for Sqnr {
    fn update(
        &mut self,
        r: ArrayViewD<'_, f32>,
        t: ArrayViewD<'_, f32>,
    ) -> Result<(), MetricError> {
        same_shape("sqnr", &r, &t)?;
        for (&a, &b) in r.iter().zip(t.iter()) {
            let (a, b) = (f64::from(a), f64::from(b));
            self.signal += a * a;
            self.noise += (a - b) * (a - b);
        }
        self.count += r.len() as u64;
        Ok(())
    }

    fn finish(&self) -> Result<f64, MetricError> {
        if self.count == 0 {
            return Err(MetricError::Empty { metric: "sqnr" });
        }
        Ok(if self.noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.signal / self.noise).log10()
        })
    }
}

/// Mean over samples of the cosine similarity of the flattened sample vectors (1 when both are
/// zero, 0 when exactly one is).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cosine {
    samples: u64,
    sum: f64,
}

impl PairMetric for Cosine {
    fn update(
        &mut self,
        r: ArrayViewD<'_, f32>,
        t: ArrayViewD<'_, f32>,
    ) -> Result<(), MetricError> {
        same_shape("cosine", &r, &t)?;
        for (a, b) in rows(&r).iter().zip(rows(&t).iter()) {
            let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
            for (&x, &y) in a.iter().zip(b) {
                let (x, y) = (f64::from(x), f64::from(y));
                ab += x * y;
                aa += x * x;
                bb += y * y;
            }
            let c = match (aa == 0.0, bb == 0.0) {
                (true, true) => 1.0,
                (true, false) | (false, true) => 0.0,
                _ => ab / (aa.sqrt() * bb.sqrt()),
            };
            self.samples += 1;
            self.sum += c;
        }
        Ok(())
    }

    fn finish(&self) -> Result<f64, MetricError> {
        if self.samples == 0 {
            return Err(MetricError::Empty { metric: "cosine" });
        }
        Ok(self.sum / self.samples as f64)
    }
}

/// Mean over samples of `KL(softmax(reference) ‖ softmax(test))` in nats, softmax over the
/// flattened sample (log-sum-exp stabilised).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SoftmaxKl {
    samples: u64,
    sum: f64,
}

fn log_softmax(v: &[f32]) -> Vec<f64> {
    let m = v
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
    let lse = m + v
        .iter()
        .map(|&x| (f64::from(x) - m).exp())
        .sum::<f64>()
        .ln();
    v.iter().map(|&x| f64::from(x) - lse).collect()
}

impl PairMetric for SoftmaxKl {
    fn update(
        &mut self,
        r: ArrayViewD<'_, f32>,
        t: ArrayViewD<'_, f32>,
    ) -> Result<(), MetricError> {
        same_shape("softmax kl", &r, &t)?;
        for (a, b) in rows(&r).iter().zip(rows(&t).iter()) {
            if a.iter().chain(b).any(|v| !v.is_finite()) {
                return Err(MetricError::Invalid {
                    metric: "softmax kl",
                    reason: "non-finite logits".into(),
                });
            }
            let (lp, lq) = (log_softmax(a), log_softmax(b));
            let kl: f64 = lp.iter().zip(&lq).map(|(&p, &q)| p.exp() * (p - q)).sum();
            self.samples += 1;
            self.sum += kl.max(0.0);
        }
        Ok(())
    }

    fn finish(&self) -> Result<f64, MetricError> {
        if self.samples == 0 {
            return Err(MetricError::Empty {
                metric: "softmax kl",
            });
        }
        Ok(self.sum / self.samples as f64)
    }
}

/// Pearson correlation over all elements, with numerically stable co-moment updates (Chan et
/// al.'s pairwise combination of batch statistics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pearson {
    n: f64,
    mean_x: f64,
    mean_y: f64,
    m2x: f64,
    m2y: f64,
    cxy: f64,
}

impl Pearson {
    /// Combines the statistics of another accumulator (equivalent to having seen its data).
    pub fn merge(&mut self, o: &Pearson) {
        if o.n == 0.0 {
            return;
        }
        if self.n == 0.0 {
            *self = o.clone();
            return;
        }
        let n = self.n + o.n;
        let dx = o.mean_x - self.mean_x;
        let dy = o.mean_y - self.mean_y;
        let f = self.n * o.n / n;
        self.m2x += o.m2x + dx * dx * f;
        self.m2y += o.m2y + dy * dy * f;
        self.cxy += o.cxy + dx * dy * f;
        self.mean_x += dx * o.n / n;
        self.mean_y += dy * o.n / n;
        self.n = n;
    }
}

impl PairMetric for Pearson {
    fn update(
        &mut self,
        r: ArrayViewD<'_, f32>,
        t: ArrayViewD<'_, f32>,
    ) -> Result<(), MetricError> {
        same_shape("pearson", &r, &t)?;
        if r.is_empty() {
            return Ok(());
        }
        let n = r.len() as f64;
        let mx = r.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let my = t.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let mut b = Pearson {
            n,
            mean_x: mx,
            mean_y: my,
            ..Pearson::default()
        };
        for (&x, &y) in r.iter().zip(t.iter()) {
            let (dx, dy) = (f64::from(x) - mx, f64::from(y) - my);
            b.m2x += dx * dx;
            b.m2y += dy * dy;
            b.cxy += dx * dy;
        }
        self.merge(&b);
        Ok(())
    }

    fn finish(&self) -> Result<f64, MetricError> {
        if self.n == 0.0 {
            return Err(MetricError::Empty { metric: "pearson" });
        }
        if self.m2x == 0.0 || self.m2y == 0.0 {
            return Err(MetricError::Invalid {
                metric: "pearson",
                reason: "one of the inputs is constant; correlation is undefined".into(),
            });
        }
        Ok(self.cxy / (self.m2x.sqrt() * self.m2y.sqrt()))
    }
}

/// Intersection over union of the masks `reference > threshold` and `test > threshold`,
/// accumulated over all elements (1 when both masks are empty).
#[derive(Debug, Clone, PartialEq)]
pub struct MaskIou {
    threshold: f32,
    count: u64,
    inter: u64,
    union: u64,
}

impl MaskIou {
    /// IoU at `threshold` (e.g. 0.5 for probabilities, 0 for logits).
    pub fn new(threshold: f32) -> Self {
        Self {
            threshold,
            count: 0,
            inter: 0,
            union: 0,
        }
    }
}

impl PairMetric for MaskIou {
    fn update(
        &mut self,
        r: ArrayViewD<'_, f32>,
        t: ArrayViewD<'_, f32>,
    ) -> Result<(), MetricError> {
        same_shape("mask iou", &r, &t)?;
        for (&a, &b) in r.iter().zip(t.iter()) {
            let (a, b) = (a > self.threshold, b > self.threshold);
            self.inter += u64::from(a && b);
            self.union += u64::from(a || b);
        }
        self.count += r.len() as u64;
        Ok(())
    }

    fn finish(&self) -> Result<f64, MetricError> {
        if self.count == 0 {
            return Err(MetricError::Empty { metric: "mask iou" });
        }
        Ok(if self.union == 0 {
            1.0
        } else {
            self.inter as f64 / self.union as f64
        })
    }
}

#[cfg(test)]
mod tests;
