//! Bit-exact number formats for quantization: integers, generic minifloats (ExMy), the named
//! OCP/ONNX/ml_dtypes presets (FP8/FP6/FP4, FNUZ, E8M0) and OCP MX block formats.
//!
//! This file fixes the public vocabulary shared by the whole workspace (the format types below).
//! Other crates rely on these names and fields; operations live in the submodules.

/// Rounding rule used when a value falls between two representable points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Rounding {
    /// Round to nearest, ties to even (default everywhere; QONNX `ROUND`).
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
    Stochastic { seed: u64 },
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
    Fp8E4m3,
    Fp8E5m2,
    Fp6E2m3,
    Fp6E3m2,
    Fp4E2m1,
    Int8,
}

/// An OCP MX v1.0 block format: `block_size` elements share one E8M0 power-of-two scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MxFormat {
    pub element: MxElement,
    /// Elements per shared scale (32 in the spec).
    pub block_size: u32,
}

/// Any number format mfq can quantize to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Format {
    Int(IntFormat),
    Float(FloatFormat),
    Mx(MxFormat),
}
