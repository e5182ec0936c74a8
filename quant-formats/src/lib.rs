//! Bit-exact number formats for quantization: integers, generic minifloats (ExMy), the named
//! OCP/ONNX/ml_dtypes presets (FP8/FP6/FP4, FNUZ, E8M0) and OCP MX block formats.
//!
//! This file fixes the public vocabulary shared by the whole workspace (the format types below)
//! and the convenience operations on [`Format`]; the algorithms live in the submodules:
//! [`spec`] (validation, properties, decode/encode, grid), [`parse`] (format-string syntax),
//! [`quant`] (rounding kernels and tensor fake quantization), [`mx`] (OCP MX shared scales) and
//! [`pack`] (sub-byte packing).
//!
//! Conventions: every finite value of a valid format is exactly an `f32`; rounding defaults to
//! ties to even (the even integer significand, so for M = 0 formats such as E8M0 a tie goes to
//! the larger power of two, as ml_dtypes does); overflow saturates unless the format says
//! `nonsat`; NaN inputs stay NaN through fake quantization.

pub mod error;
pub mod mx;
pub mod pack;
pub mod parse;
pub mod quant;
pub mod spec;

pub use error::FormatError;
pub use pack::{pack_codes, unpack_codes};
pub use parse::PRESETS;
pub use quant::Quantizer;

/// Rounding rule used when a value falls between two representable points.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Rounding {
    /// Round to nearest, ties to even (default everywhere; QONNX `ROUND`).
    #[default]
    HalfEven,
    /// Round to nearest, ties away from zero (QONNX `HALF_UP`).
    HalfAwayFromZero,
    /// Round to nearest, ties toward zero (QONNX `HALF_DOWN`).
    HalfTowardZero,
    /// Truncate toward zero (QONNX `DOWN`).
    TowardZero,
    /// Away from zero (QONNX `UP`).
    AwayFromZero,
    /// Toward −∞ (QONNX `FLOOR`).
    Floor,
    /// Toward +∞ (QONNX `CEIL`).
    Ceil,
    /// Stochastic rounding with an explicit seed (deterministic for a given seed and input).
    Stochastic {
        /// Seed of the counter-based generator.
        seed: u64,
    },
}

/// A two's-complement or unsigned integer format of 2–16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IntFormat {
    /// Total bits, 2..=16.
    pub bits: u8,
    /// Two's complement when true, unsigned otherwise.
    pub signed: bool,
    /// Narrow range: drops the most negative code (signed) or the largest code (unsigned).
    pub narrow: bool,
}

/// Which codes of a minifloat are reserved for special values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Specials {
    /// Every code is finite (seed paper, Brevitas, QONNX generic convention).
    None,
    /// IEEE-754 style: all-ones exponent holds ±inf (mantissa 0) and NaN (mantissa ≠ 0).
    Ieee,
    /// OCP E4M3 "FN": no infinities; only the all-ones code (S.1…1.1…1) is NaN.
    Fn,
    /// FNUZ: no infinities, no negative zero; the code 1000…0 is the only NaN.
    Fnuz,
}

/// What happens to finite values beyond the largest representable magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Overflow {
    /// Clamp to ±max.
    Saturate,
    /// Produce inf when the format has it, NaN otherwise (ml_dtypes `astype`, ONNX saturate=0).
    NonSaturating,
}

/// A minifloat ExMy: optional sign bit, `exp_bits` exponent bits, `man_bits` mantissa bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FloatFormat {
    /// Exponent bits E, 0..=8 (0 only with subnormals on: a pure fixed-point grid).
    pub exp_bits: u8,
    /// Mantissa bits M, 0..=10.
    pub man_bits: u8,
    /// Exponent bias (any integer; default 2^(E−1) − 1).
    pub bias: i32,
    /// Has a sign bit.
    pub signed: bool,
    /// Subnormal numbers (exponent field 0) are representable.
    pub subnormals: bool,
    /// Reserved special codes.
    pub specials: Specials,
    /// Overflow behaviour.
    pub overflow: Overflow,
}

/// Element type of an OCP MX block format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MxElement {
    /// OCP FP8 E4M3 (max 448).
    Fp8E4m3,
    /// OCP FP8 E5M2 (max 57344).
    Fp8E5m2,
    /// FP6 E2M3 (max 7.5).
    Fp6E2m3,
    /// FP6 E3M2 (max 28).
    Fp6E3m2,
    /// FP4 E2M1 (max 6).
    Fp4E2m1,
    /// 8-bit two's complement with implicit scale 2^-6 (values k/64, k in [-128, 127]).
    Int8,
}

/// An OCP MX v1.0 block format: `block_size` elements share one E8M0 power-of-two scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MxFormat {
    /// Element type.
    pub element: MxElement,
    /// Elements per shared scale (32 in the spec).
    pub block_size: u32,
}

/// Any number format mfq can quantize to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Format {
    /// Integer.
    Int(IntFormat),
    /// Minifloat (including the named FP8/FP6/FP4/E8M0/fp16/bf16 presets).
    Float(FloatFormat),
    /// OCP MX block format.
    Mx(MxFormat),
}

impl Format {
    /// A [`Quantizer`] for this format with an explicit rounding mode (build once, reuse).
    pub fn quantizer(&self, rounding: Rounding) -> Quantizer {
        Quantizer::new(self, rounding)
    }

    /// Rounds one already-scaled value onto the grid (ties to even, the format's overflow rule).
    /// MX formats round onto the element grid (no block scale).
    pub fn quantize_value(&self, x: f32) -> f32 {
        Quantizer::new(self, Rounding::HalfEven).quantize_one(x, 0)
    }

    /// Per-tensor fake quantization `out = scale * Q(x / scale)`, ties to even; see
    /// [`quant`] for the exact order of operations and [`Quantizer::fake_quantize`] for MX.
    ///
    /// # Panics
    /// If `x.len() != out.len()`.
    pub fn fake_quantize(&self, x: &[f32], scale: f32, out: &mut [f32]) {
        Quantizer::new(self, Rounding::HalfEven).fake_quantize(x, scale, out)
    }

    /// Per-channel fake quantization along `axis` of a row-major tensor of `shape`
    /// (`scales.len() == shape[axis]`), ties to even.
    pub fn fake_quantize_per_channel(
        &self,
        x: &[f32],
        shape: &[usize],
        axis: usize,
        scales: &[f32],
        out: &mut [f32],
    ) -> Result<(), FormatError> {
        Quantizer::new(self, Rounding::HalfEven)
            .fake_quantize_per_channel(x, shape, axis, scales, out)
    }

    /// Per-block fake quantization along `axis` (ONNX blocked layout), ties to even; see
    /// [`Quantizer::fake_quantize_per_block`].
    pub fn fake_quantize_per_block(
        &self,
        x: &[f32],
        shape: &[usize],
        axis: usize,
        block_size: usize,
        scales: &[f32],
        out: &mut [f32],
    ) -> Result<(), FormatError> {
        Quantizer::new(self, Rounding::HalfEven)
            .fake_quantize_per_block(x, shape, axis, block_size, scales, out)
    }

    /// MX fake quantization along `axis` with the OCP shared-scale rule, ties to even; see
    /// [`Quantizer::fake_quantize_mx`] and [`mx`].
    pub fn fake_quantize_mx(
        &self,
        x: &[f32],
        shape: &[usize],
        axis: usize,
        out: &mut [f32],
    ) -> Result<(), FormatError> {
        Quantizer::new(self, Rounding::HalfEven).fake_quantize_mx(x, shape, axis, out, None)
    }
}
