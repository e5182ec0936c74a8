//! Streaming calibration: per-tensor observers whose memory does not grow with the number of
//! samples, and the rules that turn their statistics into a clipping value and a scale.
//!
//! Lifecycle: create one [`TensorObserver`] per tensor to calibrate, feed it every batch with
//! [`TensorObserver::observe`] (observers of the same tensor filled on different workers can be
//! combined with [`TensorObserver::merge`]), then ask for a clip value with
//! [`TensorObserver::clip`] or a full [`ActivationCalibration`] with
//! [`calibrate_activation`]. Weights are calibrated exactly on the full tensor with
//! [`weight_clips`]. The clip is converted to a scale by [`scale_from_clip`]:
//! `scale = clip / format.max_value()`, optionally constrained to a power of two.
//!
//! The module knows nothing about the graph: it sees `f32` slices, ndarray views and a
//! [`Quantizer`] (the target number format) only.

mod channel;
mod histogram;
mod observer;
mod scale;
mod select;
mod set;
mod weights;

pub use channel::ChannelStats;
pub use histogram::{Histogram, DEFAULT_BINS};
pub use observer::{ObserverConfig, RangeStats, Signedness, TensorObserver};
pub use scale::{scale_from_clip, ScaleRounding};
pub use select::{
    calibrate_activation, clip_from_histogram, ActivationCalibration, ClipMethod, KlOptions,
    MseOptions, DEFAULT_PERCENTILE,
};
pub use set::ObserverSet;
pub use weights::{weight_clips, WeightCalibration, WeightGranularity, WeightMethod};

/// The part of a number format that calibration needs: fake quantization with a scale and the
/// largest representable magnitude. Implemented for `quant_formats::Format`.
pub trait Quantizer {
    /// Writes `scale · Q(x / scale)` into `out` (same length as `x`), where `Q` rounds to the
    /// format's grid and saturates at its range.
    fn fake_quantize(&self, x: &[f32], scale: f32, out: &mut [f32]);
    /// Largest finite positive value of the format at scale 1 (e.g. 127 for int8, 448 for
    /// OCP E4M3).
    fn max_value(&self) -> f64;
    /// True for block-scaled formats (MX) whose fake quantization derives its own scale per
    /// block: histogram-based clip searches cannot measure them and are refused.
    fn block_scaled(&self) -> bool {
        false
    }
}

impl Quantizer for quant_formats::Format {
    fn fake_quantize(&self, x: &[f32], scale: f32, out: &mut [f32]) {
        quant_formats::Format::fake_quantize(self, x, scale, out);
    }
    fn max_value(&self) -> f64 {
        quant_formats::Format::max_value(self)
    }
    fn block_scaled(&self) -> bool {
        matches!(self, quant_formats::Format::Mx(_))
    }
}

/// A format with an explicit rounding mode, prepared once (`quant_formats::Quantizer`).
/// `quant_formats::Format` itself implements [`Quantizer`] with ties-to-even.
#[derive(Debug, Clone, Copy)]
pub struct FormatQuantizer {
    format: quant_formats::Format,
    prepared: quant_formats::Quantizer,
}

impl FormatQuantizer {
    /// Prepares `format` for rounding with `rounding`.
    pub fn new(format: quant_formats::Format, rounding: quant_formats::Rounding) -> Self {
        Self {
            format,
            prepared: format.quantizer(rounding),
        }
    }

    /// The format.
    pub fn format(&self) -> &quant_formats::Format {
        &self.format
    }
}

impl Quantizer for FormatQuantizer {
    fn fake_quantize(&self, x: &[f32], scale: f32, out: &mut [f32]) {
        self.prepared.fake_quantize(x, scale, out);
    }
    fn max_value(&self) -> f64 {
        self.format.max_value()
    }
    fn block_scaled(&self) -> bool {
        matches!(self.format, quant_formats::Format::Mx(_))
    }
}

/// Errors of the calibration module; each names the tensor or option at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CalibError {
    /// A NaN or infinity reached an observer.
    #[error(
        "tensor '{tensor}': non-finite value {value} at flat index {index} during calibration"
    )]
    NonFinite {
        tensor: String,
        index: usize,
        value: f32,
    },
    /// Calibration was asked for a tensor that never received data.
    #[error("tensor '{tensor}': no values were observed, cannot choose a clipping range")]
    Empty { tensor: String },
    /// A method needs the histogram but the observer was created without one.
    #[error("tensor '{tensor}': method '{method}' needs a histogram; create the observer with histogram bins enabled")]
    NoHistogram { tensor: String, method: String },
    /// Two observers with different settings cannot be merged.
    #[error("tensor '{tensor}': cannot merge observers with different histogram settings ({left} vs {right} bins)")]
    MergeMismatch {
        tensor: String,
        left: usize,
        right: usize,
    },
    /// An option value is out of range.
    #[error("invalid calibration option {option}: {reason}")]
    InvalidOption { option: String, reason: String },
    /// The format cannot be used to derive a scale (max value not finite and positive).
    #[error("tensor '{tensor}': the target format's max value {max} cannot define a scale")]
    BadFormat { tensor: String, max: f64 },
    /// The method cannot measure a block-scaled (MX) format.
    #[error("tensor '{tensor}': method '{method}' cannot calibrate a block-scaled (MX) format, whose scales are computed per block at run time; use minmax")]
    BlockScaled { tensor: String, method: String },
    /// The weight channel axis does not exist.
    #[error("weight '{tensor}': channel axis {axis} out of range for a tensor of rank {rank}")]
    BadAxis {
        tensor: String,
        axis: usize,
        rank: usize,
    },
}

#[cfg(test)]
pub(crate) mod testq {
    //! Test-only reference quantizers (slow, obviously correct) used as oracles.
    use super::Quantizer;

    /// Symmetric signed integer grid with `bits` bits (range ±(2^(bits−1)−1), narrow),
    /// round half to even.
    pub struct NarrowInt(pub u32);

    impl Quantizer for NarrowInt {
        fn fake_quantize(&self, x: &[f32], scale: f32, out: &mut [f32]) {
            let m = self.max_value() as f32;
            for (o, &v) in out.iter_mut().zip(x) {
                *o = (v / scale).round_ties_even().clamp(-m, m) * scale;
            }
        }
        fn max_value(&self) -> f64 {
            f64::from((1u32 << (self.0 - 1)) - 1)
        }
    }

    /// Minifloat ExMy with default bias, subnormals, no reserved codes, saturating,
    /// round half to even (the seed paper's convention).
    pub struct MiniFloat(pub i32, pub i32);

    impl Quantizer for MiniFloat {
        fn fake_quantize(&self, x: &[f32], scale: f32, out: &mut [f32]) {
            let (e, m) = (self.0, self.1);
            let bias = (1 << (e - 1)) - 1;
            let max = self.max_value();
            for (o, &v) in out.iter_mut().zip(x) {
                let xs = f64::from(v) / f64::from(scale);
                if xs == 0.0 {
                    *o = 0.0;
                    continue;
                }
                let ex = (xs.abs().log2().floor() as i32).max(1 - bias);
                let q = 2f64.powi(ex - m);
                let y = (q * (xs / q).round_ties_even()).clamp(-max, max);
                *o = (y * f64::from(scale)) as f32;
            }
        }
        fn max_value(&self) -> f64 {
            let (e, m) = (self.0, self.1);
            let bias = (1 << (e - 1)) - 1;
            (2.0 - 2f64.powi(-m)) * 2f64.powi((1 << e) - 1 - bias)
        }
    }
}
