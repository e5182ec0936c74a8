//! Validation, static properties (max, min normal, …), decode/encode of single codes and grid
//! enumeration. Values are computed in `f64` (exact for every valid format) and returned as `f32`
//! (exact too: validation guarantees every finite value of a format is an `f32`).

use crate::{
    FloatFormat, Format, FormatError, IntFormat, MxElement, MxFormat, Overflow, Rounding, Specials,
};

/// `2^e` as `f64`, exact for the exponent range used here (|e| < 1000).
pub(crate) fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// `floor(log2(a))` for a positive finite normal `f64`, read from the bit pattern.
pub(crate) fn ilog2(a: f64) -> i32 {
    ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023
}

/// The element-level view of any format: what a single code means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Elem {
    /// Integer codes `k` with value `k · 2^step_exp` (step_exp is 0 except for MX INT8, −6).
    Int { fmt: IntFormat, step_exp: i32 },
    /// A minifloat.
    Float(FloatFormat),
}

impl MxElement {
    /// Element bits (8, 6 or 4).
    pub fn bits(self) -> u32 {
        match self {
            MxElement::Fp8E4m3 | MxElement::Fp8E5m2 | MxElement::Int8 => 8,
            MxElement::Fp6E2m3 | MxElement::Fp6E3m2 => 6,
            MxElement::Fp4E2m1 => 4,
        }
    }

    /// `emax_elem` of the OCP MX spec: exponent of the element type's largest normal binade.
    pub fn emax(self) -> i32 {
        match self {
            MxElement::Fp8E4m3 => 8,
            MxElement::Fp8E5m2 => 15,
            MxElement::Fp6E2m3 => 2,
            MxElement::Fp6E3m2 => 4,
            MxElement::Fp4E2m1 => 2,
            MxElement::Int8 => 0,
        }
    }

    /// The element's minifloat format (saturating, as MX requires), or `None` for INT8, whose
    /// elements are 8-bit two's-complement integers with an implicit scale of 2^-6.
    pub fn float_format(self) -> Option<FloatFormat> {
        let f = |e, m, bias, specials| FloatFormat {
            exp_bits: e,
            man_bits: m,
            bias,
            signed: true,
            subnormals: true,
            specials,
            overflow: Overflow::Saturate,
        };
        match self {
            MxElement::Fp8E4m3 => Some(f(4, 3, 7, Specials::Fn)),
            MxElement::Fp8E5m2 => Some(f(5, 2, 15, Specials::Ieee)),
            MxElement::Fp6E2m3 => Some(f(2, 3, 1, Specials::None)),
            MxElement::Fp6E3m2 => Some(f(3, 2, 3, Specials::None)),
            MxElement::Fp4E2m1 => Some(f(2, 1, 1, Specials::None)),
            MxElement::Int8 => None,
        }
    }

    pub(crate) fn elem(self) -> Elem {
        match self.float_format() {
            Some(f) => Elem::Float(f),
            None => Elem::Int {
                fmt: IntFormat {
                    bits: 8,
                    signed: true,
                    narrow: false,
                },
                step_exp: -6,
            },
        }
    }
}

impl IntFormat {
    /// Smallest integer value.
    pub fn qmin(&self) -> i64 {
        if self.signed {
            -(1i64 << (self.bits - 1)) + i64::from(self.narrow)
        } else {
            0
        }
    }

    /// Largest integer value.
    pub fn qmax(&self) -> i64 {
        if self.signed {
            (1i64 << (self.bits - 1)) - 1
        } else {
            (1i64 << self.bits) - 1 - i64::from(self.narrow)
        }
    }

    /// Checks the bit width (2–16).
    pub fn validate(&self) -> Result<(), FormatError> {
        if !(2..=16).contains(&self.bits) {
            return Err(FormatError::Invalid {
                format: format!("{self:?}"),
                reason: format!(
                    "integer width must be 2..=16 bits, got {} (wider integers are not supported)",
                    self.bits
                ),
            });
        }
        Ok(())
    }
}

impl FloatFormat {
    /// Default exponent bias `2^(E−1) − 1` (0 for E = 0, a pure fixed-point grid).
    pub fn default_bias(exp_bits: u8) -> i32 {
        if exp_bits == 0 {
            0
        } else {
            (1i32 << (exp_bits - 1)) - 1
        }
    }

    /// A generic signed minifloat with default bias, subnormals, no special codes, saturating.
    pub fn generic(exp_bits: u8, man_bits: u8) -> FloatFormat {
        FloatFormat {
            exp_bits,
            man_bits,
            bias: Self::default_bias(exp_bits),
            signed: true,
            subnormals: true,
            specials: Specials::None,
            overflow: Overflow::Saturate,
        }
    }

    /// True for M = 0 with subnormals off: exponent field 0 is the normal value 2^-bias and the
    /// format has no zero (the E8M0 scale convention).
    pub fn no_zero(&self) -> bool {
        self.man_bits == 0 && !self.subnormals
    }

    /// Exponent of the smallest normal binade.
    pub(crate) fn emin(&self) -> i32 {
        if self.no_zero() {
            -self.bias
        } else {
            1 - self.bias
        }
    }

    pub(crate) fn em(&self) -> u32 {
        u32::from(self.exp_bits) + u32::from(self.man_bits)
    }

    /// Total bits of one code.
    pub fn bits(&self) -> u32 {
        self.em() + u32::from(self.signed)
    }

    pub(crate) fn top_field(&self) -> u32 {
        (1u32 << self.exp_bits) - 1
    }

    pub(crate) fn man_mask(&self) -> u32 {
        (1u32 << self.man_bits) - 1
    }

    /// Magnitude (code without sign bit) of the NaN pattern with the given sign, if any.
    pub(crate) fn nan_code(&self, negative: bool) -> Option<u32> {
        let s = if negative && self.signed {
            1u32 << self.em()
        } else {
            0
        };
        match self.specials {
            Specials::None => None,
            Specials::Ieee => {
                Some(s | (self.top_field() << self.man_bits) | (1u32 << (self.man_bits.max(1) - 1)))
            }
            Specials::Fn => Some(s | ((1u32 << self.em()) - 1)),
            Specials::Fnuz => Some(1u32 << self.em()),
        }
    }

    /// Decodes a code to `f64` (NaN and ±inf included).
    pub(crate) fn decode_f64(&self, code: u32) -> f64 {
        let em = self.em();
        let code = code & ((1u32 << self.bits()) - 1);
        let neg = self.signed && (code >> em) & 1 == 1;
        let mag = code & ((1u32 << em) - 1);
        let field = mag >> self.man_bits;
        let mant = mag & self.man_mask();
        match self.specials {
            Specials::Ieee if field == self.top_field() => {
                return if mant == 0 {
                    if neg {
                        f64::NEG_INFINITY
                    } else {
                        f64::INFINITY
                    }
                } else {
                    f64::NAN
                };
            }
            Specials::Fn if mag == (1u32 << em) - 1 => return f64::NAN,
            Specials::Fnuz if neg && mag == 0 => return f64::NAN,
            _ => {}
        }
        let m = f64::from(self.man_bits);
        let frac = f64::from(mant) / 2f64.powf(m);
        let v = if self.no_zero() {
            pow2(field as i32 - self.bias)
        } else if field == 0 || self.exp_bits == 0 {
            if self.subnormals {
                pow2(1 - self.bias) * frac
            } else {
                0.0
            }
        } else {
            pow2(field as i32 - self.bias) * (1.0 + frac)
        };
        if neg && !(v == 0.0 && self.specials == Specials::Fnuz) {
            -v
        } else {
            v
        }
    }

    /// Code of an exactly representable value (sign, NaN and inf included). The value must lie
    /// on the grid; callers round first.
    pub(crate) fn code_of(&self, v: f64) -> u32 {
        if v.is_nan() {
            return self.nan_code(v.is_sign_negative()).unwrap_or(0);
        }
        let em = self.em();
        let neg =
            self.signed && v.is_sign_negative() && !(self.specials == Specials::Fnuz && v == 0.0);
        let s = if neg { 1u32 << em } else { 0 };
        let a = v.abs();
        if a.is_infinite() {
            return match self.specials {
                Specials::Ieee => s | (self.top_field() << self.man_bits),
                _ => s | self.max_code(),
            };
        }
        if a == 0.0 {
            return s;
        }
        let e = ilog2(a);
        if self.no_zero() {
            return s | ((e + self.bias).clamp(0, self.top_field() as i32) as u32);
        }
        let emin = self.emin();
        if e >= emin && self.exp_bits > 0 {
            let field = (e + self.bias) as u32;
            let mant = ((a / pow2(e) - 1.0) * pow2(i32::from(self.man_bits))) as u32;
            s | (field << self.man_bits) | mant
        } else {
            let d = (a / pow2(emin - i32::from(self.man_bits))) as u32;
            s | d
        }
    }

    /// Magnitude code of the largest finite value.
    pub(crate) fn max_code(&self) -> u32 {
        let all = (1u32 << self.em()) - 1;
        match self.specials {
            Specials::None | Specials::Fnuz => all,
            Specials::Fn => all.saturating_sub(1),
            Specials::Ieee => {
                (self.top_field().saturating_sub(1) << self.man_bits) | self.man_mask()
            }
        }
    }

    /// Largest finite value.
    pub fn max_value(&self) -> f64 {
        self.decode_f64(self.max_code())
    }

    /// Checks that the parameters describe a usable format and that every value is an `f32`.
    pub fn validate(&self) -> Result<(), FormatError> {
        let bad = |reason: String| {
            Err(FormatError::Invalid {
                format: format!("{self:?}"),
                reason,
            })
        };
        let (e, m) = (self.exp_bits, self.man_bits);
        if self.bias.abs() > 1000 {
            return bad(format!(
                "bias {} is out of range (no value would be an f32)",
                self.bias
            ));
        }
        if e > 8 {
            return bad(format!("exponent bits must be 0..=8, got {e}"));
        }
        if m > 10 {
            return bad(format!("mantissa bits must be 0..=10, got {m}"));
        }
        if self.bits() > 16 {
            return bad(format!(
                "width is {} bits (sign + E + M); at most 16 are supported",
                self.bits()
            ));
        }
        if self.bits() < 2 {
            return bad("a format needs at least 2 bits".into());
        }
        if e == 0 {
            if !self.subnormals {
                return bad(
                    "E = 0 has no normal numbers, so subnormals must be on (it is a fixed-point grid)"
                        .into(),
                );
            }
            if self.specials != Specials::None {
                return bad("E = 0 has no exponent field to reserve for special values".into());
            }
            if m == 0 {
                return bad("E = 0 with M = 0 has no nonzero value".into());
            }
        }
        if self.no_zero() && self.signed {
            return bad("M = 0 without subnormals has no zero; only unsigned such formats (E8M0-like) are supported".into());
        }
        match self.specials {
            Specials::Ieee => {
                if e < 2 {
                    return bad("IEEE specials reserve the all-ones exponent; with E < 2 no normal numbers remain".into());
                }
                if m == 0 {
                    return bad("IEEE specials need M >= 1 to tell NaN (mantissa != 0) from inf (mantissa 0)".into());
                }
            }
            Specials::Fnuz => {
                if !self.signed {
                    return bad("FNUZ uses the negative-zero code as NaN; an unsigned format has no sign bit".into());
                }
                if self.no_zero() {
                    return bad("FNUZ needs a zero".into());
                }
            }
            Specials::Fn | Specials::None => {}
        }
        if self.overflow == Overflow::NonSaturating && self.specials == Specials::None {
            return bad("non-saturating overflow needs an inf or NaN code to produce, but specials=none reserves none (use saturation)".into());
        }
        let mc = self.max_code();
        let maxv = self.decode_f64(mc);
        if !(maxv.is_finite() && maxv > 0.0) {
            return bad(format!(
                "the {:?} special-value policy leaves no positive finite value in E{e}M{m}",
                self.specials
            ));
        }
        if maxv > f64::from(f32::MAX) {
            return bad(format!(
                "largest value {maxv:e} exceeds f32 (bias {} too small for E{e})",
                self.bias
            ));
        }
        let finest = if self.subnormals && !self.no_zero() {
            self.emin() - i32::from(m)
        } else {
            self.emin()
        };
        if finest < -149 {
            return bad(format!(
                "smallest step 2^{finest} is below f32's 2^-149 (bias {} too large)",
                self.bias
            ));
        }
        Ok(())
    }
}

impl MxFormat {
    /// Checks the block size (1..=2^20; the spec uses 32).
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.block_size == 0 || self.block_size > (1 << 20) {
            return Err(FormatError::Invalid {
                format: format!("{self:?}"),
                reason: format!("block size must be 1..=1048576, got {}", self.block_size),
            });
        }
        Ok(())
    }
}

impl Format {
    pub(crate) fn elem(&self) -> Elem {
        match self {
            Format::Int(i) => Elem::Int {
                fmt: *i,
                step_exp: 0,
            },
            Format::Float(f) => Elem::Float(*f),
            Format::Mx(m) => m.element.elem(),
        }
    }

    /// Checks that the combination of parameters is a usable format; the error says why not.
    /// Parsing always validates; formats built by hand should be validated before use (the
    /// operations never panic on an invalid format but their results are then meaningless).
    pub fn validate(&self) -> Result<(), FormatError> {
        match self {
            Format::Int(i) => i.validate(),
            Format::Float(f) => f.validate(),
            Format::Mx(m) => m.validate(),
        }
    }

    /// Bits of one element code (MX: the element, not counting the shared scale).
    pub fn bits(&self) -> u32 {
        match self.elem() {
            Elem::Int { fmt, .. } => u32::from(fmt.bits),
            Elem::Float(f) => f.bits(),
        }
    }

    /// True when negative values are representable.
    pub fn is_signed(&self) -> bool {
        match self.elem() {
            Elem::Int { fmt, .. } => fmt.signed,
            Elem::Float(f) => f.signed,
        }
    }

    /// Largest finite value (MX: of the element, before the block scale).
    pub fn max_value(&self) -> f64 {
        match self.elem() {
            Elem::Int { fmt, step_exp } => fmt.qmax() as f64 * pow2(step_exp),
            Elem::Float(f) => f.max_value(),
        }
    }

    /// Smallest positive normal value. Integers and E = 0 fixed-point grids report their step.
    pub fn min_normal(&self) -> f64 {
        match self.elem() {
            Elem::Int { step_exp, .. } => pow2(step_exp),
            Elem::Float(f) if f.exp_bits == 0 => pow2(f.emin() - i32::from(f.man_bits)),
            Elem::Float(f) => pow2(f.emin()),
        }
    }

    /// Smallest positive subnormal value, when the format has subnormals (None for integers,
    /// E = 0 grids, formats with subnormals off and M = 0 formats).
    pub fn min_subnormal(&self) -> Option<f64> {
        match self.elem() {
            Elem::Float(f) if f.subnormals && f.man_bits > 0 && f.exp_bits > 0 => {
                Some(pow2(f.emin() - i32::from(f.man_bits)))
            }
            _ => None,
        }
    }

    /// Number of bit patterns, 2^bits (special codes and duplicate zeros included).
    pub fn code_count(&self) -> u64 {
        1u64 << self.bits()
    }

    /// log2(max / smallest positive value).
    pub fn dynamic_range_binades(&self) -> f64 {
        let lo = self.min_subnormal().unwrap_or_else(|| self.min_normal());
        (self.max_value() / lo).log2()
    }

    /// Value of a code (bits above [`Format::bits`] are ignored). Integers are two's complement.
    pub fn decode(&self, code: u32) -> f32 {
        match self.elem() {
            Elem::Int { fmt, step_exp } => {
                let b = u32::from(fmt.bits);
                let c = code & ((1u32 << b) - 1);
                let k = if fmt.signed && (c >> (b - 1)) & 1 == 1 {
                    i64::from(c) - (1i64 << b)
                } else {
                    i64::from(c)
                };
                (k as f64 * pow2(step_exp)) as f32
            }
            Elem::Float(f) => f.decode_f64(code) as f32,
        }
    }

    /// Code of `x` after rounding with the format's overflow rule and ties-to-even. NaN maps to
    /// the format's NaN code (sign kept where the format has signed NaNs), or to +0 when the
    /// format has no NaN; integers also map NaN to 0.
    pub fn encode(&self, x: f32) -> u32 {
        self.encode_with(x, Rounding::HalfEven)
    }

    /// [`Format::encode`] with an explicit rounding mode.
    pub fn encode_with(&self, x: f32, rounding: Rounding) -> u32 {
        let q = crate::quant::Quantizer::new(self, rounding).quantize_one(x, 0);
        self.code_of_value(q)
    }

    /// Code of a value already on the grid (as produced by [`Format::quantize_value`]).
    pub fn code_of_value(&self, q: f32) -> u32 {
        match self.elem() {
            Elem::Int { fmt, step_exp } => {
                if q.is_nan() {
                    return 0;
                }
                let k = (f64::from(q) / pow2(step_exp)) as i64;
                (k.clamp(fmt.qmin(), fmt.qmax()) as u32) & ((1u32 << fmt.bits) - 1)
            }
            Elem::Float(f) => f.code_of(f64::from(q)),
        }
    }

    /// Sorted distinct finite values (one zero).
    pub fn grid(&self) -> Vec<f64> {
        if let Elem::Int { fmt, step_exp } = self.elem() {
            return (fmt.qmin()..=fmt.qmax())
                .map(|k| k as f64 * pow2(step_exp))
                .collect();
        }
        let n = 1u32 << self.bits();
        let mut v: Vec<f64> = (0..n)
            .map(|c| match self.elem() {
                Elem::Float(f) => f.decode_f64(c),
                _ => f64::from(self.decode(c)),
            })
            .filter(|x| x.is_finite())
            .map(|x| if x == 0.0 { 0.0 } else { x })
            .collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    }
}
