//! Rounding onto a format's grid: the per-element kernels and the tensor-level fake
//! quantization entry points (per tensor, per channel along an axis, per block along an axis).
//!
//! Order of operations for a scale `s` (per tensor, per channel or per block):
//! `y = Q(x / s) * s`, where `x / s` is one IEEE f32 division, `Q` rounds that f32 exactly onto
//! the grid (saturating or not, as the format says) and the product is one IEEE f32
//! multiplication. When `s` is a power of two the division is done as an exact multiplication by
//! `1/s`, which gives bit-identical results faster; with such scales the whole operation is exact
//! (no rounding besides `Q`) unless the result leaves the f32 range.
//!
//! The ties-to-even default (`Rounding::HalfEven`) runs a branch-free kernel that reads the
//! exponent from the f32 bit pattern and rounds with one magic-constant addition; every other
//! rounding mode, and formats whose top binade touches the f32 limit (bf16, E8M0), use a scalar
//! `f64` kernel that is exact by construction. NaN inputs give NaN outputs.

use crate::spec::{ilog2, pow2, Elem};
use crate::{FloatFormat, Format, FormatError, Overflow, Rounding, Specials};

/// Precomputed constants of the fast ties-to-even float kernel.
#[derive(Debug, Clone, Copy)]
struct FastFloat {
    /// Magnitudes above this are clamped before rounding (max when saturating, the next grid
    /// point above max otherwise, so that overflow is detected after rounding).
    clampv: f32,
    /// Biased f32 exponent of the smallest normal.
    emin_b: u32,
    /// Added to a normal input's biased exponent to get the magic constant's exponent.
    c_norm_add: u32,
    /// Magic constant exponent below the smallest normal.
    c_sub: u32,
    /// Largest finite value.
    max: f32,
    /// Result for rounded magnitudes above max.
    ovf: f32,
    /// Result for negative inputs of an unsigned format that do not round to zero.
    neg_val: f32,
    /// Has a sign bit.
    signed: bool,
    /// FNUZ: zero results are +0.
    fnuz: bool,
    /// Saturating overflow.
    sat: bool,
}

/// How a slice kernel turns an input into the value to round.
#[derive(Debug, Clone, Copy)]
enum Pre {
    /// `x / s` (IEEE division).
    Div(f32),
    /// `x * m` (used when `m` is an exact power-of-two inverse).
    Mul(f32),
}

/// The loop shared by all fast kernels: `out = q(pre(x)) * post`.
#[inline(always)]
fn drive<F: Fn(f32) -> f32>(x: &[f32], out: &mut [f32], pre: Pre, post: f32, q: F) {
    match pre {
        Pre::Div(s) => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = q(v / s) * post;
            }
        }
        Pre::Mul(m) => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = q(v * m) * post;
            }
        }
    }
}

/// Branch-free ties-to-even rounding of one f32 onto a minifloat grid.
#[inline(always)]
fn float_kernel<const SIGNED: bool, const FNUZ: bool, const SAT: bool>(
    p: &FastFloat,
    v: f32,
) -> f32 {
    let b = v.to_bits();
    let s = b & 0x8000_0000;
    let a = f32::from_bits(b & 0x7fff_ffff);
    // NaN compares false and passes through; +inf clamps to clampv.
    let a = if a > p.clampv { p.clampv } else { a };
    let ea = (a.to_bits() >> 23) as i32;
    let ce = if ea >= p.emin_b as i32 {
        ea.wrapping_add(p.c_norm_add as i32)
    } else {
        p.c_sub as i32
    };
    let c = f32::from_bits(((ce as u32) << 23) | 0x0040_0000);
    let r = (a + c) - c;
    // Saturating: a <= max (on the grid) already bounds r.
    let r = if !SAT && r > p.max { p.ovf } else { r };
    if SIGNED {
        let keep = if FNUZ && r == 0.0 { 0 } else { s };
        f32::from_bits(r.to_bits() | keep)
    } else if s != 0 && r > 0.0 {
        p.neg_val
    } else {
        r
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Int {
        qmin: f32,
        qmax: f32,
        step: f32,
    },
    Float {
        f: FloatFormat,
        max: f32,
        /// Result for rounded magnitudes above max: max (saturating), inf or NaN.
        ovf: f32,
        /// Result for a negative input in an unsigned format when it does not round to zero.
        neg_val: f32,
        /// Smallest positive value (only used by no-zero formats).
        min_pos: f32,
        fast: Option<FastFloat>,
    },
}

/// A format prepared for rounding with a given rounding mode. Build once, apply to many slices.
#[derive(Debug, Clone, Copy)]
pub struct Quantizer {
    kind: Kind,
    rounding: Rounding,
    /// MX block size and element emax (None for scalar formats).
    mx: Option<(u32, i32)>,
    /// Forces the scalar f64 kernel (reference path used by tests and benchmarks).
    generic: bool,
}

const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds |v| < 2^22 to an integer (RNE)

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform `[0, 1)` number for stochastic rounding, a pure function of seed, element index and
/// input bits (so results do not depend on threading or chunking).
fn uniform(seed: u64, idx: u64, bits: u32) -> f64 {
    let h = splitmix(seed ^ splitmix(idx ^ (u64::from(bits) << 40)));
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Rounds `k` to an integer with `mode` (ties to even: even integer).
fn round_int(k: f64, mode: Rounding, u: f64) -> f64 {
    let fl = k.floor();
    let fr = k - fl;
    let up = match mode {
        Rounding::HalfEven => fr > 0.5 || (fr == 0.5 && fl % 2.0 != 0.0),
        Rounding::HalfAwayFromZero => fr > 0.5 || (fr == 0.5 && k > 0.0),
        Rounding::HalfTowardZero => fr > 0.5 || (fr == 0.5 && k < 0.0),
        Rounding::TowardZero => fr > 0.0 && k < 0.0,
        Rounding::AwayFromZero => fr > 0.0 && k > 0.0,
        Rounding::Floor => false,
        Rounding::Ceil => fr > 0.0,
        Rounding::Stochastic { .. } => u < fr,
    };
    if up {
        fl + 1.0
    } else {
        fl
    }
}

/// The rounding mode to apply to a magnitude, given the sign of the value.
fn magnitude_mode(mode: Rounding, negative: bool) -> Rounding {
    match (mode, negative) {
        (Rounding::Floor, true) | (Rounding::AwayFromZero, _) => Rounding::Ceil,
        (Rounding::Ceil, true) | (Rounding::TowardZero, _) => Rounding::Floor,
        (m, _) => m,
    }
}

/// Rounds a finite magnitude `a >= 0` onto the unbounded grid of `f` (no clamping).
fn round_magnitude(f: &FloatFormat, a: f64, mode: Rounding, u: f64) -> f64 {
    if a == 0.0 {
        return 0.0;
    }
    let emin = f.emin();
    let m = i32::from(f.man_bits);
    if f.no_zero() && a < pow2(emin) {
        return pow2(emin);
    }
    let e = ilog2(a);
    let ulp_e = if e >= emin && f.exp_bits > 0 {
        e - m
    } else if f.subnormals {
        emin - m
    } else {
        emin
    };
    round_int(a * pow2(-ulp_e), mode, u) * pow2(ulp_e)
}

impl Quantizer {
    /// Prepares `format` for rounding with `rounding`.
    pub fn new(format: &Format, rounding: Rounding) -> Quantizer {
        let mx = match format {
            Format::Mx(m) => Some((m.block_size.max(1), m.element.emax())),
            _ => None,
        };
        let kind = match format.elem() {
            Elem::Int { fmt, step_exp } => Kind::Int {
                qmin: fmt.qmin() as f32,
                qmax: fmt.qmax() as f32,
                step: pow2(step_exp) as f32,
            },
            Elem::Float(f) => {
                let max = f.max_value() as f32;
                let ovf = match (f.overflow, f.specials) {
                    (Overflow::Saturate, _) | (_, Specials::None) => max,
                    (Overflow::NonSaturating, Specials::Ieee) => f32::INFINITY,
                    (Overflow::NonSaturating, _) => f32::NAN,
                };
                let min_pos = pow2(f.emin()) as f32;
                let lowest = if f.no_zero() { min_pos } else { 0.0 };
                let neg_val = match f.overflow {
                    Overflow::Saturate => lowest,
                    Overflow::NonSaturating => f32::NAN,
                };
                Kind::Float {
                    f,
                    max,
                    ovf,
                    neg_val,
                    min_pos,
                    fast: fast_params(&f, max, ovf, neg_val, rounding),
                }
            }
        };
        Quantizer {
            kind,
            rounding,
            mx,
            generic: false,
        }
    }

    /// The same quantizer forced onto the scalar `f64` reference kernel (slower; identical
    /// results). Used to cross-check the fast kernels.
    pub fn reference_kernel(mut self) -> Quantizer {
        self.generic = true;
        if let Kind::Float { fast, .. } = &mut self.kind {
            *fast = None;
        }
        self
    }

    /// The rounding mode.
    pub fn rounding(&self) -> Rounding {
        self.rounding
    }

    /// Rounds one already-scaled value onto the grid. `idx` only matters for stochastic
    /// rounding (it is the element's position in its tensor).
    #[inline]
    pub fn quantize_one(&self, v: f32, idx: u64) -> f32 {
        match self.kind {
            Kind::Int { qmin, qmax, step } => {
                if self.rounding == Rounding::HalfEven && !self.generic {
                    int_fast(v, qmin, qmax, step, 1.0 / step)
                } else {
                    self.int_generic(v, qmin, qmax, step, idx)
                }
            }
            Kind::Float { fast: Some(p), .. } => self.float_fast(&p, v),
            Kind::Float { .. } => self.float_generic(v, idx),
        }
    }

    fn int_generic(&self, v: f32, qmin: f32, qmax: f32, step: f32, idx: u64) -> f32 {
        if v.is_nan() {
            return f32::NAN;
        }
        let u = match self.rounding {
            Rounding::Stochastic { seed } => uniform(seed, idx, v.to_bits()),
            _ => 0.0,
        };
        let k = f64::from(v) / f64::from(step);
        let r = round_int(k, self.rounding, u).clamp(f64::from(qmin), f64::from(qmax));
        (r * f64::from(step)) as f32
    }

    #[inline(always)]
    fn float_fast(&self, p: &FastFloat, v: f32) -> f32 {
        match (p.signed, p.fnuz, p.sat) {
            (true, false, true) => float_kernel::<true, false, true>(p, v),
            (true, false, false) => float_kernel::<true, false, false>(p, v),
            (true, true, true) => float_kernel::<true, true, true>(p, v),
            (true, true, false) => float_kernel::<true, true, false>(p, v),
            (false, _, true) => float_kernel::<false, false, true>(p, v),
            (false, _, false) => float_kernel::<false, false, false>(p, v),
        }
    }

    fn float_generic(&self, v: f32, idx: u64) -> f32 {
        let Kind::Float {
            f,
            max,
            ovf,
            neg_val,
            min_pos,
            ..
        } = self.kind
        else {
            return v;
        };
        if v.is_nan() {
            return f32::NAN;
        }
        let neg = v.is_sign_negative();
        let a = f64::from(v.abs());
        let u = match self.rounding {
            Rounding::Stochastic { seed } => uniform(seed, idx, v.to_bits()),
            _ => 0.0,
        };
        let mut r = if a.is_infinite() {
            ovf
        } else if f.no_zero() && a == 0.0 {
            if f.overflow == Overflow::Saturate {
                min_pos
            } else {
                f32::NAN
            }
        } else {
            let mode = magnitude_mode(self.rounding, neg);
            let r = round_magnitude(&f, a, mode, u);
            if r > f64::from(max) {
                ovf
            } else {
                r as f32
            }
        };
        if !f.signed {
            if neg && r > 0.0 {
                r = neg_val;
            }
            return r;
        }
        if neg && !(r == 0.0 && f.specials == Specials::Fnuz) {
            -r
        } else {
            r
        }
    }

    /// Per-tensor fake quantization `out[i] = Q(x[i] / scale) * scale` (see the module doc for
    /// the exact order of operations). MX formats additionally compute one shared power-of-two
    /// scale per run of `block_size` consecutive elements (after dividing by `scale`).
    ///
    /// # Panics
    /// If `x` and `out` differ in length (a programming error, not a data error).
    pub fn fake_quantize(&self, x: &[f32], scale: f32, out: &mut [f32]) {
        assert_eq!(
            x.len(),
            out.len(),
            "fake_quantize: x and out lengths differ"
        );
        if let Some((bs, emax)) = self.mx {
            for (i, (xb, ob)) in x
                .chunks(bs as usize)
                .zip(out.chunks_mut(bs as usize))
                .enumerate()
            {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let amax = if xb.iter().any(|v| !v.is_finite()) {
                    f32::NAN
                } else {
                    amax / scale
                };
                self.mx_block(
                    xb.iter().copied(),
                    ob.iter_mut(),
                    amax,
                    emax,
                    scale,
                    (i * bs as usize) as u64,
                );
            }
            return;
        }
        self.scalar_slice(x, scale, out, 0);
    }

    /// Quantizes one MX block: `vals` are the raw inputs, divided by `scale`, then by the shared
    /// scale derived from `amax` (the block's largest |x/scale|).
    fn mx_block<'a>(
        &self,
        vals: impl Iterator<Item = f32>,
        outs: impl Iterator<Item = &'a mut f32>,
        amax: f32,
        emax: i32,
        scale: f32,
        idx0: u64,
    ) {
        match crate::mx::shared_exponent(amax, emax) {
            None => outs.for_each(|o| *o = f32::NAN),
            Some(e) => {
                let down = pow2(-e) as f32;
                let up = pow2(e) as f32;
                for (k, (v, o)) in vals.zip(outs).enumerate() {
                    let q = self.quantize_one((v / scale) * down, idx0 + k as u64);
                    *o = (q * up) * scale;
                }
            }
        }
    }

    /// Scalar-format per-tensor loop; `idx0` is the flat index of `x[0]` in its tensor.
    fn scalar_slice(&self, x: &[f32], scale: f32, out: &mut [f32], idx0: u64) {
        let pre = match pow2_inverse(scale) {
            Some(inv) => Pre::Mul(inv),
            None => Pre::Div(scale),
        };
        self.run_slice(x, out, pre, scale, idx0);
    }

    /// `out = Q(pre(x)) * post` with the fastest kernel available for this quantizer.
    fn run_slice(&self, x: &[f32], out: &mut [f32], pre: Pre, post: f32, idx0: u64) {
        match (self.kind, self.rounding) {
            (Kind::Int { qmin, qmax, step }, Rounding::HalfEven) if !self.generic => {
                let inv = 1.0 / step;
                drive(x, out, pre, post, move |v| {
                    int_fast(v, qmin, qmax, step, inv)
                })
            }
            (Kind::Float { fast: Some(p), .. }, _) => {
                macro_rules! k {
                    ($s:literal, $z:literal, $t:literal) => {
                        drive(x, out, pre, post, move |v| {
                            float_kernel::<$s, $z, $t>(&p, v)
                        })
                    };
                }
                match (p.signed, p.fnuz, p.sat) {
                    (true, false, true) => k!(true, false, true),
                    (true, false, false) => k!(true, false, false),
                    (true, true, true) => k!(true, true, true),
                    (true, true, false) => k!(true, true, false),
                    (false, _, true) => k!(false, false, true),
                    (false, _, false) => k!(false, false, false),
                }
            }
            _ => {
                for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                    let u = match pre {
                        Pre::Div(s) => v / s,
                        Pre::Mul(m) => v * m,
                    };
                    *o = self.quantize_one(u, idx0 + i as u64) * post;
                }
            }
        }
    }

    /// Loop with one scale per element (per-channel/per-block layouts with inner stride 1):
    /// `out[i] = Q(x[i] / scales[i]) * scales[i]`.
    fn scaled_each(&self, x: &[f32], scales: &[f32], out: &mut [f32], idx0: u64) {
        #[inline(always)]
        fn each<F: Fn(f32) -> f32>(x: &[f32], scales: &[f32], out: &mut [f32], q: F) {
            for ((o, &v), &s) in out.iter_mut().zip(x).zip(scales) {
                *o = q(v / s) * s;
            }
        }
        match (self.kind, self.rounding) {
            (Kind::Int { qmin, qmax, step }, Rounding::HalfEven) if !self.generic => {
                let inv = 1.0 / step;
                each(x, scales, out, move |v| int_fast(v, qmin, qmax, step, inv))
            }
            (Kind::Float { fast: Some(p), .. }, _) => {
                each(x, scales, out, move |v| self.float_fast(&p, v))
            }
            _ => {
                for (i, ((o, &v), &s)) in out.iter_mut().zip(x).zip(scales).enumerate() {
                    *o = self.quantize_one(v / s, idx0 + i as u64) * s;
                }
            }
        }
    }
}

/// `1/s` when `s` is a normal power of two whose inverse is a normal f32.
fn pow2_inverse(s: f32) -> Option<f32> {
    let b = s.to_bits();
    let e = (b >> 23) & 0xff;
    if b & 0x807f_ffff == 0 && (2..=252).contains(&e) {
        Some(f32::from_bits((254 - e) << 23))
    } else {
        None
    }
}

#[inline(always)]
fn int_fast(v: f32, qmin: f32, qmax: f32, step: f32, inv_step: f32) -> f32 {
    // step is a power of two, so multiplying by its inverse is exact.
    let k = v * inv_step;
    let k = if k < qmin { qmin } else { k };
    let k = if k > qmax { qmax } else { k };
    ((k + MAGIC) - MAGIC) * step
}

fn fast_params(
    f: &FloatFormat,
    max: f32,
    ovf: f32,
    neg_val: f32,
    rounding: Rounding,
) -> Option<FastFloat> {
    if rounding != Rounding::HalfEven || f.no_zero() {
        return None;
    }
    let m = i32::from(f.man_bits);
    let emin_b = f.emin() + 127;
    if emin_b < 1 {
        return None;
    }
    let maxf = f64::from(max);
    let max_plus = maxf + pow2(ilog2(maxf).max(f.emin()) - m);
    let clampv = match f.overflow {
        Overflow::Saturate => max,
        Overflow::NonSaturating => max_plus as f32,
    };
    if !clampv.is_finite() {
        return None;
    }
    let ce_top = ((clampv.to_bits() >> 23) as i32) + 23 - m;
    if ce_top > 254 {
        return None;
    }
    let sub_ulp = if f.subnormals { f.emin() - m } else { f.emin() };
    let c_sub = sub_ulp + 127 + 23;
    if c_sub < 1 {
        return None;
    }
    Some(FastFloat {
        clampv,
        emin_b: emin_b as u32,
        c_norm_add: (23 - m) as u32,
        c_sub: c_sub as u32,
        max,
        ovf,
        neg_val,
        signed: f.signed,
        fnuz: f.specials == Specials::Fnuz,
        sat: f.overflow == Overflow::Saturate,
    })
}

/// Checks `x`, `out` and `shape` agree and `axis` is in range; returns (outer, dim, inner).
fn layout(
    x: usize,
    out: usize,
    shape: &[usize],
    axis: usize,
) -> Result<(usize, usize, usize), FormatError> {
    if axis >= shape.len() {
        return Err(FormatError::Shape(format!(
            "axis {axis} out of range for shape {shape:?} (rank {})",
            shape.len()
        )));
    }
    let n: usize = shape.iter().product();
    if n != x || n != out {
        return Err(FormatError::Shape(format!(
            "shape {shape:?} has {n} elements but input has {x} and output {out}"
        )));
    }
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    Ok((outer, shape[axis], inner))
}

impl Quantizer {
    /// Per-channel fake quantization: `scales[c]` applies to index `c` along `axis` of a
    /// row-major tensor of `shape`. Not for MX formats (they choose their own scales).
    pub fn fake_quantize_per_channel(
        &self,
        x: &[f32],
        shape: &[usize],
        axis: usize,
        scales: &[f32],
        out: &mut [f32],
    ) -> Result<(), FormatError> {
        let (outer, dim, inner) = layout(x.len(), out.len(), shape, axis)?;
        if scales.len() != dim {
            return Err(FormatError::Shape(format!(
                "per-channel quantization along axis {axis} of shape {shape:?} needs {dim} scales, got {}",
                scales.len()
            )));
        }
        if self.mx.is_some() {
            return Err(FormatError::Shape(
                "MX formats compute their own block scales; use fake_quantize_mx".into(),
            ));
        }
        if inner == 1 {
            for (o, (xr, orow)) in x.chunks(dim).zip(out.chunks_mut(dim)).enumerate() {
                self.scaled_each(xr, scales, orow, (o * dim) as u64);
            }
        } else {
            for (r, (xr, orow)) in x.chunks(inner).zip(out.chunks_mut(inner)).enumerate() {
                self.scalar_slice(xr, scales[r % dim], orow, (r * inner) as u64);
            }
        }
        let _ = outer;
        Ok(())
    }

    /// Per-block fake quantization along `axis` (ONNX blocked-quantization layout): `scales`
    /// has the shape of `x` with `shape[axis]` replaced by `ceil(shape[axis] / block_size)`;
    /// element index `c` along `axis` uses scale block `c / block_size`.
    pub fn fake_quantize_per_block(
        &self,
        x: &[f32],
        shape: &[usize],
        axis: usize,
        block_size: usize,
        scales: &[f32],
        out: &mut [f32],
    ) -> Result<(), FormatError> {
        let (outer, dim, inner) = layout(x.len(), out.len(), shape, axis)?;
        if block_size == 0 {
            return Err(FormatError::Shape("block size must be at least 1".into()));
        }
        if self.mx.is_some() {
            return Err(FormatError::Shape(
                "MX formats compute their own block scales; use fake_quantize_mx".into(),
            ));
        }
        let nb = dim.div_ceil(block_size);
        if scales.len() != outer * nb * inner {
            return Err(FormatError::Shape(format!(
                "blocked quantization of shape {shape:?} along axis {axis} with block size {block_size} needs {} scales ({} blocks), got {}",
                outer * nb * inner,
                nb,
                scales.len()
            )));
        }
        for o in 0..outer {
            for c in 0..dim {
                let row = (o * dim + c) * inner;
                let srow = (o * nb + c / block_size) * inner;
                let xs = &x[row..row + inner];
                let os = &mut out[row..row + inner];
                if inner == 1 {
                    os[0] = self.quantize_one(xs[0] / scales[srow], row as u64) * scales[srow];
                } else {
                    self.scaled_each(xs, &scales[srow..srow + inner], os, row as u64);
                }
            }
        }
        Ok(())
    }

    /// MX fake quantization with blocks of `block_size` consecutive indices along `axis`
    /// (the last block may be shorter). Each block gets the OCP shared scale 2^e,
    /// `e = clamp(floor(log2(max|x|)) - emax_elem, -127, 127)`; elements are rounded with this
    /// quantizer's rounding (ties to even by default) and saturate. A block holding NaN or ±inf
    /// gets the NaN scale, so all its outputs are NaN. `exps`, when given, receives one
    /// exponent per block (`i32::MIN` for the NaN scale) in row-major block order.
    pub fn fake_quantize_mx(
        &self,
        x: &[f32],
        shape: &[usize],
        axis: usize,
        out: &mut [f32],
        mut exps: Option<&mut Vec<i32>>,
    ) -> Result<(), FormatError> {
        let Some((bs, emax)) = self.mx else {
            return Err(FormatError::Shape(
                "fake_quantize_mx needs an MX format".into(),
            ));
        };
        let (outer, dim, inner) = layout(x.len(), out.len(), shape, axis)?;
        let bs = bs as usize;
        let nb = dim.div_ceil(bs);
        if let Some(e) = exps.as_deref_mut() {
            e.clear();
            e.reserve(outer * nb * inner);
        }
        if inner == 1 {
            // Blocks are contiguous runs: amax, then one fast slice pass per block.
            for (o, (xr, orow)) in x.chunks(dim).zip(out.chunks_mut(dim)).enumerate() {
                for (b, (xb, ob)) in xr.chunks(bs).zip(orow.chunks_mut(bs)).enumerate() {
                    // Max of |x| on the bit patterns: for non-negative floats integer order is
                    // float order, and inf/NaN patterns (>= 0x7f80_0000) sort above all finite.
                    let bmax = xb
                        .iter()
                        .fold(0i32, |m, v| m.max((v.to_bits() & 0x7fff_ffff) as i32));
                    let amax = if bmax >= 0x7f80_0000 {
                        f32::NAN
                    } else {
                        f32::from_bits(bmax as u32)
                    };
                    let exp = crate::mx::shared_exponent(amax, emax);
                    if let Some(e) = exps.as_deref_mut() {
                        e.push(exp.unwrap_or(i32::MIN));
                    }
                    match exp {
                        None => ob.iter_mut().for_each(|v| *v = f32::NAN),
                        Some(e) => self.run_slice(
                            xb,
                            ob,
                            Pre::Mul(pow2(-e) as f32),
                            pow2(e) as f32,
                            (o * dim + b * bs) as u64,
                        ),
                    }
                }
            }
            return Ok(());
        }
        for o in 0..outer {
            for b in 0..nb {
                let c0 = b * bs;
                let c1 = (c0 + bs).min(dim);
                for i in 0..inner {
                    let at = |c: usize| (o * dim + c) * inner + i;
                    let mut amax = 0f32;
                    let mut finite = true;
                    for c in c0..c1 {
                        let v = x[at(c)];
                        finite &= v.is_finite();
                        amax = amax.max(v.abs());
                    }
                    let amax = if finite { amax } else { f32::NAN };
                    if let Some(e) = exps.as_deref_mut() {
                        e.push(crate::mx::shared_exponent(amax, emax).unwrap_or(i32::MIN));
                    }
                    match crate::mx::shared_exponent(amax, emax) {
                        None => (c0..c1).for_each(|c| out[at(c)] = f32::NAN),
                        Some(e) => {
                            let down = pow2(-e) as f32;
                            let up = pow2(e) as f32;
                            for c in c0..c1 {
                                let q = self.quantize_one(x[at(c)] * down, at(c) as u64);
                                out[at(c)] = q * up;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
