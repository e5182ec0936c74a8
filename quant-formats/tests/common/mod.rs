//! Shared test helpers: a representative family of formats and a slow, obviously correct
//! rounding oracle (enumerate the grid, take the nearest point in f64, explicit tie rule).
#![allow(dead_code)]

use quant_formats::{FloatFormat, Format, IntFormat, Overflow, Rounding, Specials};

/// Every valid combination of E (0..=8), M (0..=10), sign, subnormals, special-value policy,
/// overflow rule and three biases (default, default+2, default-3) with at most `max_bits` bits,
/// plus all integer formats of at most `max_bits` bits.
pub fn representative(max_bits: u32) -> Vec<Format> {
    let mut v = Vec::new();
    for bits in 2..=max_bits.min(16) as u8 {
        for signed in [true, false] {
            for narrow in [false, true] {
                v.push(Format::Int(IntFormat {
                    bits,
                    signed,
                    narrow,
                }));
            }
        }
    }
    for e in 0..=8u8 {
        for m in 0..=10u8 {
            for signed in [true, false] {
                if u32::from(e) + u32::from(m) + u32::from(signed) > max_bits {
                    continue;
                }
                for subnormals in [true, false] {
                    for specials in [Specials::None, Specials::Ieee, Specials::Fn, Specials::Fnuz] {
                        for overflow in [Overflow::Saturate, Overflow::NonSaturating] {
                            let d = FloatFormat::default_bias(e);
                            for bias in [d, d + 2, d - 3] {
                                let f = Format::Float(FloatFormat {
                                    exp_bits: e,
                                    man_bits: m,
                                    bias,
                                    signed,
                                    subnormals,
                                    specials,
                                    overflow,
                                });
                                if f.validate().is_ok() {
                                    v.push(f);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    v
}

/// Rounds `x` onto `f` by brute force over the grid, in f64.
/// Semantics: saturating formats clamp to [lowest, max] then take the nearest grid point;
/// non-saturating formats round on the grid extended by one point beyond ±max (the next value
/// of the unbounded grid) and map that point to the overflow value (inf for IEEE, else NaN).
/// Ties: the neighbour that is an even multiple of the gap between the two neighbours (= the
/// even code for M >= 1 and for integers; the larger power of two for M = 0).
/// Special rules: NaN stays NaN; +-inf saturates to +-max (as the ONNX reference does, FNUZ included); zero into a
/// format without zero is the smallest value (saturating) or NaN; a negative value in an unsigned
/// format that does not round to zero becomes the lowest value (saturating) or NaN; signed
/// non-FNUZ float formats keep the sign of a zero result.
pub fn oracle(f: &Format, x: f64, mode: Rounding) -> f64 {
    Oracle::new(f).round(x, mode)
}

/// The oracle with its grid enumerated once.
pub struct Oracle {
    f: Format,
    grid: Vec<f64>,
    ext: Vec<f64>,
}

impl Oracle {
    /// Enumerates the grid of `f`.
    pub fn new(f: &Format) -> Oracle {
        let grid = f.grid();
        let max = f.max_value();
        let mp = next_up_unbounded(f, max);
        let mut ext = grid.clone();
        ext.push(mp);
        if f.is_signed() {
            ext.insert(0, -mp);
        }
        Oracle { f: *f, grid, ext }
    }

    /// See [`oracle`].
    pub fn round(&self, x: f64, mode: Rounding) -> f64 {
        let f = &self.f;
        if x.is_nan() {
            return f64::NAN;
        }
        let grid = &self.grid;
        let max = f.max_value();
        let (ovf, fnuz, is_float) = match f {
            Format::Float(ff) => (
                match (ff.overflow, ff.specials) {
                    (Overflow::Saturate, _) => max,
                    (_, Specials::Ieee) => f64::INFINITY,
                    _ => f64::NAN,
                },
                ff.specials == Specials::Fnuz,
                true,
            ),
            _ => (max, false, false),
        };
        let nonsat = is_float && !(ovf == max);
        let lowest = grid[0];
        let neg_x = x.is_sign_negative();
        if !f.is_signed() && x < 0.0 {
            if !nonsat {
                return lowest;
            }
            let mag_mode = match mode {
                Rounding::Floor | Rounding::AwayFromZero => Rounding::Ceil,
                Rounding::Ceil | Rounding::TowardZero => Rounding::Floor,
                m => m,
            };
            let r = self.round(-x, mag_mode);
            return if r == 0.0 { 0.0 } else { f64::NAN };
        }
        if x == 0.0 && lowest > 0.0 {
            return if nonsat { f64::NAN } else { lowest };
        }
        if x.is_infinite() {
            return if nonsat {
                ovf.copysign(x)
            } else if x > 0.0 {
                max
            } else {
                lowest
            };
        }
        let max_plus = next_up_unbounded(f, max);
        let (g, xc) = if nonsat {
            (&self.ext, x.clamp(-max_plus, max_plus))
        } else {
            (grid, x.clamp(lowest, max))
        };
        let r = pick(g, xc, mode);
        let r = if nonsat && r.abs() == max_plus {
            ovf.copysign(r)
        } else {
            r
        };
        if r == 0.0 {
            if is_float && f.is_signed() && !fnuz && neg_x {
                -0.0
            } else {
                0.0
            }
        } else {
            r
        }
    }
}

/// The next point of the unbounded grid above `max` (only meaningful for floats).
fn next_up_unbounded(f: &Format, max: f64) -> f64 {
    match f {
        Format::Float(ff) => {
            let e = max.log2().floor() as i32;
            let emin = if ff.man_bits == 0 && !ff.subnormals {
                -ff.bias
            } else {
                1 - ff.bias
            };
            max + 2f64.powi(e.max(emin) - i32::from(ff.man_bits))
        }
        _ => max + 1.0,
    }
}

fn pick(g: &[f64], x: f64, mode: Rounding) -> f64 {
    let i = g.partition_point(|&v| v <= x);
    if i > 0 && g[i - 1] == x {
        return x;
    }
    if i == 0 {
        return g[0];
    }
    if i == g.len() {
        return g[g.len() - 1];
    }
    let (lo, hi) = (g[i - 1], g[i]);
    let gap = hi - lo;
    let mid = lo + gap / 2.0;
    let toward_zero = if x > 0.0 { lo } else { hi };
    let away = if x > 0.0 { hi } else { lo };
    let even = if ((lo / gap).round() as i64) % 2 == 0 {
        lo
    } else {
        hi
    };
    match mode {
        Rounding::Floor => lo,
        Rounding::Ceil => hi,
        Rounding::TowardZero => toward_zero,
        Rounding::AwayFromZero => away,
        _ => {
            if x < mid {
                lo
            } else if x > mid {
                hi
            } else {
                match mode {
                    Rounding::HalfAwayFromZero => away,
                    Rounding::HalfTowardZero => toward_zero,
                    _ => even,
                }
            }
        }
    }
}

/// Equality of results: both NaN, or same bits; integers ignore the sign of zero.
pub fn same_for(f: &Format, a: f32, b: f32) -> bool {
    match f {
        Format::Float(_) => same(a, b),
        _ => (a.is_nan() && b.is_nan()) || a == b,
    }
}

/// Bitwise-or-NaN equality of f32 results (both NaN counts as equal; +0 and -0 differ).
pub fn same(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// The next f32 toward +inf (finite inputs).
pub fn next_up(x: f32) -> f32 {
    if x == 0.0 {
        f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() + 1)
    } else {
        f32::from_bits(x.to_bits() - 1)
    }
}

/// The next f32 toward -inf (finite inputs).
pub fn next_down(x: f32) -> f32 {
    -next_up(-x)
}
