//! Image-quality metrics: PSNR and SSIM, accumulated over batches.

use ndarray::ArrayViewD;

use super::{same_shape, MetricError, PairMetric};

/// Peak value used by [`Psnr`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum PsnrPeak {
    /// A fixed peak (1 for `[0, 1]` images, 255 for 8-bit).
    Fixed(f64),
    /// `max − min` of the reference over everything accumulated.
    DataRange,
}

/// Peak signal-to-noise ratio over all elements, `10·log10(peak² / MSE)` in dB (`+inf` when
/// identical).
#[derive(Debug, Clone, PartialEq)]
pub struct Psnr {
    peak: PsnrPeak,
    count: u64,
    sse: f64,
    min: f32,
    max: f32,
}

impl Psnr {
    /// PSNR with the given peak.
    pub fn new(peak: PsnrPeak) -> Self {
        Self {
            peak,
            count: 0,
            sse: 0.0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }
}

impl PairMetric for Psnr {
    fn update(
        &mut self,
        r: ArrayViewD<'_, f32>,
        t: ArrayViewD<'_, f32>,
    ) -> Result<(), MetricError> {
        same_shape("psnr", &r, &t)?;
        for (&a, &b) in r.iter().zip(t.iter()) {
            let d = f64::from(a) - f64::from(b);
            self.sse += d * d;
            self.min = self.min.min(a);
            self.max = self.max.max(a);
        }
        self.count += r.len() as u64;
        Ok(())
    }

    fn finish(&self) -> Result<f64, MetricError> {
        if self.count == 0 {
            return Err(MetricError::Empty { metric: "psnr" });
        }
        let peak = match self.peak {
            PsnrPeak::Fixed(p) => p,
            PsnrPeak::DataRange => f64::from(self.max) - f64::from(self.min),
        };
        if peak.is_nan() || peak <= 0.0 {
            return Err(MetricError::Invalid {
                metric: "psnr",
                reason: format!("peak {peak} must be positive"),
            });
        }
        let mse = self.sse / self.count as f64;
        Ok(if mse == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (peak * peak / mse).log10()
        })
    }
}

/// Structural similarity (Wang et al. 2004) on the last two axes of each array (every leading
/// index is one 2-D plane): 11×11 Gaussian window with σ = 1.5, `K1 = 0.01`, `K2 = 0.03`,
/// `C = (K·L)²` for data range `L`, windows fully inside the plane ("valid"). The result is the
/// mean SSIM over all windows of all planes seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Ssim {
    data_range: f64,
    window: Vec<f64>,
    sum: f64,
    count: u64,
}

const WIN: usize = 11;
const SIGMA: f64 = 1.5;

impl Ssim {
    /// SSIM for images whose values span `data_range` (1 for `[0, 1]`, 255 for 8-bit).
    pub fn new(data_range: f64) -> Result<Self, MetricError> {
        if data_range.is_nan() || data_range <= 0.0 {
            return Err(MetricError::Invalid {
                metric: "ssim",
                reason: format!("data range {data_range} must be positive"),
            });
        }
        let c = (WIN / 2) as f64;
        let w: Vec<f64> = (0..WIN)
            .map(|i| (-((i as f64 - c).powi(2)) / (2.0 * SIGMA * SIGMA)).exp())
            .collect();
        let s: f64 = w.iter().sum();
        Ok(Self {
            data_range,
            window: w.into_iter().map(|v| v / s).collect(),
            sum: 0.0,
            count: 0,
        })
    }

    /// Separable valid filtering of an `h × w` plane.
    fn filter(&self, p: &[f64], h: usize, w: usize) -> Vec<f64> {
        let (oh, ow) = (h + 1 - WIN, w + 1 - WIN);
        let mut tmp = vec![0f64; h * ow];
        for y in 0..h {
            for x in 0..ow {
                tmp[y * ow + x] = (0..WIN).map(|k| self.window[k] * p[y * w + x + k]).sum();
            }
        }
        let mut out = vec![0f64; oh * ow];
        for y in 0..oh {
            for x in 0..ow {
                out[y * ow + x] = (0..WIN)
                    .map(|k| self.window[k] * tmp[(y + k) * ow + x])
                    .sum();
            }
        }
        out
    }
}

impl PairMetric for Ssim {
    fn update(
        &mut self,
        r: ArrayViewD<'_, f32>,
        t: ArrayViewD<'_, f32>,
    ) -> Result<(), MetricError> {
        same_shape("ssim", &r, &t)?;
        let nd = r.ndim();
        if nd < 2 || r.shape()[nd - 2] < WIN || r.shape()[nd - 1] < WIN {
            return Err(MetricError::Invalid {
                metric: "ssim",
                reason: format!(
                    "needs planes of at least {WIN}x{WIN} on the last two axes, got shape {:?}",
                    r.shape()
                ),
            });
        }
        let (h, w) = (r.shape()[nd - 2], r.shape()[nd - 1]);
        let c1 = (0.01 * self.data_range).powi(2);
        let c2 = (0.03 * self.data_range).powi(2);
        let xs: Vec<f64> = r.iter().map(|&v| f64::from(v)).collect();
        let ys: Vec<f64> = t.iter().map(|&v| f64::from(v)).collect();
        for (x, y) in xs.chunks_exact(h * w).zip(ys.chunks_exact(h * w)) {
            let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
            let yy: Vec<f64> = y.iter().map(|v| v * v).collect();
            let xy: Vec<f64> = x.iter().zip(y).map(|(a, b)| a * b).collect();
            let (mx, my) = (self.filter(x, h, w), self.filter(y, h, w));
            let (sxx, syy, sxy) = (
                self.filter(&xx, h, w),
                self.filter(&yy, h, w),
                self.filter(&xy, h, w),
            );
            for i in 0..mx.len() {
                let (a, b) = (mx[i], my[i]);
                let vx = sxx[i] - a * a;
                let vy = syy[i] - b * b;
                let cov = sxy[i] - a * b;
                self.sum += ((2.0 * a * b + c1) * (2.0 * cov + c2))
                    / ((a * a + b * b + c1) * (vx + vy + c2));
            }
            self.count += mx.len() as u64;
        }
        Ok(())
    }

    fn finish(&self) -> Result<f64, MetricError> {
        if self.count == 0 {
            return Err(MetricError::Empty { metric: "ssim" });
        }
        Ok(self.sum / self.count as f64)
    }
}
