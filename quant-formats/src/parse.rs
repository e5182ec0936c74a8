//! The format-string syntax shared by the CLI, config files and reports, and its canonical
//! printing. `parse(display(f)) == f` for every valid format.
//!
//! Grammar: `BASE(:OPTION)*`, case-insensitive.
//! - Integers: `intB`, `uintB` (B = 2..16); `intBn`/`uintBn` or option `narrow` for narrow range.
//! - Generic minifloats: `eXmY` (signed, default bias 2^(X-1)-1, subnormals on, no special
//!   codes, saturating). Options: `bias=N`, `unsigned`, `nosub` (flush the subnormal range),
//!   `nozero` (M = 0 only: field 0 is 2^-bias, no zero, as E8M0), `ieee`, `fn`, `fnuz`, `none`
//!   (special-value policy), `sat`, `nonsat` (overflow), `sub`, `signed` (the defaults).
//! - Presets (canonical names, ml_dtypes/ONNX semantics, saturating unless `:nonsat`):
//!   see [`PRESETS`]. ml_dtypes type names (`float8_e4m3fn`, …) are accepted as aliases.
//! - MX: `mxfp8` (E4M3), `mxfp8-e5m2`, `mxfp6-e2m3`, `mxfp6-e3m2`, `mxfp4`, `mxint8`; option
//!   `block=N` (default 32).
//!
//! Canonical printing uses the preset name whenever the format (ignoring overflow) equals a
//! preset, then `:nonsat` if it does not saturate; otherwise `eXmY` followed by the non-default
//! options in the order unsigned, bias, nosub/nozero, specials, nonsat.

use crate::{
    FloatFormat, Format, FormatError, IntFormat, MxElement, MxFormat, Overflow, Rounding, Specials,
};
use std::fmt;
use std::str::FromStr;

const fn fl(e: u8, m: u8, bias: i32, signed: bool, subnormals: bool, specials: Specials) -> Format {
    Format::Float(FloatFormat {
        exp_bits: e,
        man_bits: m,
        bias,
        signed,
        subnormals,
        specials,
        overflow: Overflow::Saturate,
    })
}

/// Named presets: canonical name, format (saturating), ml_dtypes type name if any.
pub const PRESETS: &[(&str, Format, Option<&str>)] = &[
    (
        "fp8-e4m3fn",
        fl(4, 3, 7, true, true, Specials::Fn),
        Some("float8_e4m3fn"),
    ),
    (
        "fp8-e4m3fnuz",
        fl(4, 3, 8, true, true, Specials::Fnuz),
        Some("float8_e4m3fnuz"),
    ),
    (
        "fp8-e4m3b11fnuz",
        fl(4, 3, 11, true, true, Specials::Fnuz),
        Some("float8_e4m3b11fnuz"),
    ),
    (
        "fp8-e5m2",
        fl(5, 2, 15, true, true, Specials::Ieee),
        Some("float8_e5m2"),
    ),
    (
        "fp8-e5m2fnuz",
        fl(5, 2, 16, true, true, Specials::Fnuz),
        Some("float8_e5m2fnuz"),
    ),
    (
        "fp8-e4m3",
        fl(4, 3, 7, true, true, Specials::Ieee),
        Some("float8_e4m3"),
    ),
    (
        "fp8-e3m4",
        fl(3, 4, 3, true, true, Specials::Ieee),
        Some("float8_e3m4"),
    ),
    (
        "fp6-e2m3",
        fl(2, 3, 1, true, true, Specials::None),
        Some("float6_e2m3fn"),
    ),
    (
        "fp6-e3m2",
        fl(3, 2, 3, true, true, Specials::None),
        Some("float6_e3m2fn"),
    ),
    (
        "fp4-e2m1",
        fl(2, 1, 1, true, true, Specials::None),
        Some("float4_e2m1fn"),
    ),
    (
        "e8m0",
        fl(8, 0, 127, false, false, Specials::Fn),
        Some("float8_e8m0fnu"),
    ),
    (
        "fp16",
        fl(5, 10, 15, true, true, Specials::Ieee),
        Some("float16"),
    ),
    (
        "bf16",
        fl(8, 7, 127, true, true, Specials::Ieee),
        Some("bfloat16"),
    ),
];

const MX_NAMES: &[(&str, MxElement)] = &[
    ("mxfp8", MxElement::Fp8E4m3),
    ("mxfp8-e5m2", MxElement::Fp8E5m2),
    ("mxfp6-e2m3", MxElement::Fp6E2m3),
    ("mxfp6-e3m2", MxElement::Fp6E3m2),
    ("mxfp4", MxElement::Fp4E2m1),
    ("mxint8", MxElement::Int8),
];

impl Format {
    /// All named presets (floats, then int2..int16 and uint2..uint16, then MX) with canonical
    /// names, for listings.
    pub fn presets() -> Vec<(String, Format)> {
        let mut v: Vec<(String, Format)> = PRESETS
            .iter()
            .map(|(n, f, _)| (n.to_string(), *f))
            .collect();
        for signed in [true, false] {
            for bits in 2..=16u8 {
                let f = Format::Int(IntFormat {
                    bits,
                    signed,
                    narrow: false,
                });
                v.push((f.to_string(), f));
            }
        }
        for (n, e) in MX_NAMES {
            v.push((
                n.to_string(),
                Format::Mx(MxFormat {
                    element: *e,
                    block_size: 32,
                }),
            ));
        }
        v
    }
}

fn perr(input: &str, reason: impl Into<String>) -> FormatError {
    FormatError::Parse {
        input: input.to_string(),
        reason: reason.into(),
    }
}

fn parse_int_base(b: &str) -> Option<(bool, u32, bool)> {
    let (signed, rest) = if let Some(r) = b.strip_prefix("uint") {
        (false, r)
    } else if let Some(r) = b.strip_prefix("int") {
        (true, r)
    } else {
        return None;
    };
    let (digits, narrow) = match rest.strip_suffix('n') {
        Some(d) => (d, true),
        None => (rest, false),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(|bits| (signed, bits, narrow))
}

fn parse_em(b: &str) -> Option<(u32, u32)> {
    let r = b.strip_prefix('e')?;
    let (e, m) = r.split_once('m')?;
    let ok = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|c| c.is_ascii_digit());
    if !ok(e) || !ok(m) {
        return None;
    }
    Some((e.parse().ok()?, m.parse().ok()?))
}

impl FromStr for Format {
    type Err = FormatError;

    fn from_str(input: &str) -> Result<Format, FormatError> {
        let lower = input.trim().to_ascii_lowercase();
        let mut parts = lower.split(':');
        let base = parts.next().unwrap_or("");
        let opts: Vec<&str> = parts.collect();
        if base.is_empty() {
            return Err(perr(input, "empty format name"));
        }
        let mut fmt = if let Some((_, f, _)) = PRESETS
            .iter()
            .find(|(n, _, alias)| *n == base || *alias == Some(base))
        {
            *f
        } else if let Some((_, e)) =
            MX_NAMES
                .iter()
                .find(|(n, _)| *n == base)
                .or(if base == "mxfp8-e4m3" {
                    Some(&MX_NAMES[0])
                } else {
                    None
                })
        {
            Format::Mx(MxFormat {
                element: *e,
                block_size: 32,
            })
        } else if let Some((signed, bits, narrow)) = parse_int_base(base) {
            if !(2..=16).contains(&bits) {
                return Err(perr(
                    input,
                    format!("integer width must be 2..=16 bits, got {bits}"),
                ));
            }
            Format::Int(IntFormat {
                bits: bits as u8,
                signed,
                narrow,
            })
        } else if let Some((e, m)) = parse_em(base) {
            if e > 8 {
                return Err(perr(input, format!("exponent bits must be 0..=8, got {e}")));
            }
            if m > 10 {
                return Err(perr(
                    input,
                    format!("mantissa bits must be 0..=10, got {m}"),
                ));
            }
            Format::Float(FloatFormat::generic(e as u8, m as u8))
        } else {
            return Err(perr(
                input,
                format!("unknown format `{base}`: expected intB, uintB, eXmY, an MX name (mxfp8, mxfp4, ...) or a preset ({})", PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")),
            ));
        };
        let mut bias_set = false;
        for opt in opts {
            let (key, val) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            let no_value = |v: Option<&str>| match v {
                Some(_) => Err(perr(input, format!("option `{key}` takes no value"))),
                None => Ok(()),
            };
            match &mut fmt {
                Format::Int(i) => match key {
                    "narrow" => {
                        no_value(val)?;
                        i.narrow = true
                    }
                    _ => return Err(perr(input, format!("unknown integer option `{opt}` (integers accept only `narrow`)"))),
                },
                Format::Mx(mx) => match (key, val) {
                    ("block", Some(v)) => {
                        mx.block_size = v.parse().map_err(|_| {
                            perr(input, format!("block size `{v}` is not a positive integer"))
                        })?
                    }
                    _ => return Err(perr(input, format!("unknown MX option `{opt}` (MX formats accept only `block=N`)"))),
                },
                Format::Float(f) => match key {
                    "bias" => {
                        let v = val.ok_or_else(|| perr(input, "option `bias` needs a value, e.g. `bias=2`"))?;
                        f.bias = v
                            .parse()
                            .map_err(|_| perr(input, format!("bias `{v}` is not an integer")))?;
                        bias_set = true;
                    }
                    "unsigned" | "signed" | "sub" | "nosub" | "nozero" | "ieee" | "fn" | "fnuz"
                    | "none" | "sat" | "nonsat" => {
                        no_value(val)?;
                        match key {
                            "unsigned" => f.signed = false,
                            "signed" => f.signed = true,
                            "sub" => f.subnormals = true,
                            "nosub" => {
                                if f.man_bits == 0 {
                                    return Err(perr(input, "M = 0 has no subnormal codes to turn off; use `nozero` for the E8M0-style grid without zero"));
                                }
                                f.subnormals = false
                            }
                            "nozero" => {
                                if f.man_bits != 0 {
                                    return Err(perr(input, "`nozero` applies only to M = 0 formats (E8M0-style)"));
                                }
                                f.subnormals = false
                            }
                            "ieee" => f.specials = Specials::Ieee,
                            "fn" => f.specials = Specials::Fn,
                            "fnuz" => f.specials = Specials::Fnuz,
                            "none" => f.specials = Specials::None,
                            "sat" => f.overflow = Overflow::Saturate,
                            _ => f.overflow = Overflow::NonSaturating,
                        }
                    }
                    _ => return Err(perr(input, format!("unknown minifloat option `{opt}` (expected bias=N, unsigned, nosub, nozero, ieee, fn, fnuz, none, sat, nonsat)"))),
                },
            }
        }
        let _ = bias_set;
        fmt.validate().map_err(|e| match e {
            FormatError::Invalid { reason, .. } => perr(input, reason),
            other => other,
        })?;
        Ok(fmt)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, w: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Int(i) => write!(
                w,
                "{}int{}{}",
                if i.signed { "" } else { "u" },
                i.bits,
                if i.narrow { "n" } else { "" }
            ),
            Format::Mx(m) => {
                let name = MX_NAMES
                    .iter()
                    .find(|(_, e)| *e == m.element)
                    .map(|(n, _)| *n)
                    .unwrap_or("mx?");
                write!(w, "{name}")?;
                if m.block_size != 32 {
                    write!(w, ":block={}", m.block_size)?;
                }
                Ok(())
            }
            Format::Float(f) => {
                let sat = Format::Float(FloatFormat {
                    overflow: Overflow::Saturate,
                    ..*f
                });
                if let Some((n, _, _)) = PRESETS.iter().find(|(_, p, _)| *p == sat) {
                    write!(w, "{n}")?;
                } else {
                    write!(w, "e{}m{}", f.exp_bits, f.man_bits)?;
                    if !f.signed {
                        write!(w, ":unsigned")?;
                    }
                    if f.bias != FloatFormat::default_bias(f.exp_bits) {
                        write!(w, ":bias={}", f.bias)?;
                    }
                    if !f.subnormals {
                        write!(w, "{}", if f.man_bits == 0 { ":nozero" } else { ":nosub" })?;
                    }
                    match f.specials {
                        Specials::None => {}
                        Specials::Ieee => write!(w, ":ieee")?,
                        Specials::Fn => write!(w, ":fn")?,
                        Specials::Fnuz => write!(w, ":fnuz")?,
                    }
                }
                if f.overflow == Overflow::NonSaturating {
                    write!(w, ":nonsat")?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for Rounding {
    type Err = FormatError;

    /// Accepts mfq names (`half-even`, `half-away`, `half-toward-zero`, `toward-zero`, `away`,
    /// `floor`, `ceil`, `stochastic=SEED`) and QONNX names (`ROUND`, `HALF_EVEN`, `HALF_UP`,
    /// `HALF_DOWN`, `UP`, `DOWN`, `ROUND_TO_ZERO`, `CEIL`, `FLOOR`).
    fn from_str(s: &str) -> Result<Rounding, FormatError> {
        let l = s.trim().to_ascii_lowercase().replace('_', "-");
        if let Some(seed) = l.strip_prefix("stochastic=") {
            return seed
                .parse()
                .map(|seed| Rounding::Stochastic { seed })
                .map_err(|_| FormatError::Rounding {
                    input: s.to_string(),
                });
        }
        Ok(match l.as_str() {
            "half-even" | "round" | "nearest" | "rne" => Rounding::HalfEven,
            "half-away" | "half-up" => Rounding::HalfAwayFromZero,
            "half-toward-zero" | "half-down" => Rounding::HalfTowardZero,
            "toward-zero" | "down" | "round-to-zero" | "trunc" => Rounding::TowardZero,
            "away" | "up" => Rounding::AwayFromZero,
            "floor" => Rounding::Floor,
            "ceil" => Rounding::Ceil,
            _ => {
                return Err(FormatError::Rounding {
                    input: s.to_string(),
                })
            }
        })
    }
}

impl fmt::Display for Rounding {
    fn fmt(&self, w: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rounding::HalfEven => write!(w, "half-even"),
            Rounding::HalfAwayFromZero => write!(w, "half-away"),
            Rounding::HalfTowardZero => write!(w, "half-toward-zero"),
            Rounding::TowardZero => write!(w, "toward-zero"),
            Rounding::AwayFromZero => write!(w, "away"),
            Rounding::Floor => write!(w, "floor"),
            Rounding::Ceil => write!(w, "ceil"),
            Rounding::Stochastic { seed } => write!(w, "stochastic={seed}"),
        }
    }
}
