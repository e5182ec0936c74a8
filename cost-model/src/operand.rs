//! The datapath view of a number format: how an operand code decodes into a sign, an unsigned
//! significand and a left shift inside the fixed-point (Kulisch) frame of its format.
//!
//! Every finite value of a supported format is `(-1)^s · sig · 2^(shift + lsb_exp)`, where
//! `lsb_exp` is the exponent of the format's smallest step (1 − bias − M for a minifloat, 0 for
//! an integer). The frame of the format is `mag_bits` bits wide: the largest magnitude fits in
//! `sig_bits + max_shift` bits.

use crate::CostError;
use quant_formats::{FloatFormat, Format, IntFormat, Specials};

/// Operand kind as the MAC datapath sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Operand {
    /// Two's-complement (`signed`) or unsigned integer of `bits` bits.
    Int {
        /// Total bits.
        bits: u32,
        /// Two's complement when true.
        signed: bool,
        /// The most negative (signed) or largest (unsigned) code is unused.
        narrow: bool,
    },
    /// Minifloat with `exp` exponent bits and `man` mantissa bits.
    Float {
        /// Exponent bits E.
        exp: u32,
        /// Mantissa bits M.
        man: u32,
        /// Has a sign bit.
        signed: bool,
        /// Exponent field 0 encodes subnormals (true) or zero (false).
        subnormals: bool,
        /// Reserved special codes.
        specials: Specials,
        /// Exponent bias (shifts the frame; never changes the datapath).
        bias: i32,
    },
}

impl Operand {
    /// Builds the datapath view of `fmt`. MX block formats are rejected: their shared scale
    /// is applied outside the MAC unit, so cost their element format instead.
    pub fn from_format(fmt: &Format) -> Result<Self, CostError> {
        match *fmt {
            Format::Int(IntFormat {
                bits,
                signed,
                narrow,
            }) => {
                if !(1..=32).contains(&bits) {
                    return Err(CostError::Unsupported(format!(
                        "integer width {bits} (supported 1..=32)"
                    )));
                }
                Ok(Operand::Int {
                    bits: bits.into(),
                    signed,
                    narrow,
                })
            }
            Format::Float(f) if f.man_bits == 0 && !f.subnormals => Err(CostError::Unsupported(
                format!(
                    "minifloat E{}M0 without subnormals has no zero (a scale format such as \
                     E8M0), not a MAC operand",
                    f.exp_bits
                ),
            )),
            Format::Float(FloatFormat {
                exp_bits,
                man_bits,
                bias,
                signed,
                subnormals,
                specials,
                ..
            }) => {
                if exp_bits > 8 || man_bits > 23 {
                    return Err(CostError::Unsupported(format!(
                        "minifloat E{exp_bits}M{man_bits} (supported E<=8, M<=23)"
                    )));
                }
                if exp_bits == 0 && !subnormals {
                    return Err(CostError::Unsupported(
                        "minifloat with 0 exponent bits and no subnormals has no nonzero values"
                            .into(),
                    ));
                }
                Ok(Operand::Float {
                    exp: exp_bits.into(),
                    man: man_bits.into(),
                    signed,
                    subnormals,
                    specials,
                    bias,
                })
            }
            Format::Mx(mx) => Err(CostError::Unsupported(format!(
                "MX block format {:?}: cost the element format; the shared scale is outside the MAC",
                mx.element
            ))),
        }
    }

    /// A plain signed/unsigned integer operand (convenience for tests and grids).
    pub fn int(bits: u32, signed: bool) -> Self {
        Operand::Int {
            bits,
            signed,
            narrow: false,
        }
    }

    /// A plain signed minifloat ExMy without special codes and with the default bias.
    pub fn float(exp: u32, man: u32, subnormals: bool) -> Self {
        Operand::Float {
            exp,
            man,
            signed: true,
            subnormals,
            specials: Specials::None,
            bias: (1i32 << exp.saturating_sub(1)) - 1,
        }
    }

    /// Bits of the operand code.
    pub fn code_bits(&self) -> u32 {
        match *self {
            Operand::Int { bits, .. } => bits,
            Operand::Float {
                exp, man, signed, ..
            } => exp + man + u32::from(signed),
        }
    }

    /// True when the operand can be negative.
    pub fn signed(&self) -> bool {
        match *self {
            Operand::Int { signed, .. } | Operand::Float { signed, .. } => signed,
        }
    }

    /// True for minifloats.
    pub fn is_float(&self) -> bool {
        matches!(self, Operand::Float { .. })
    }

    /// Width of the unsigned significand (magnitude) the multiplier sees: M+1 for a minifloat
    /// with exponent bits (hidden bit), M for E=0, and the magnitude width of an integer
    /// (`bits` for signed — |−2^(bits−1)| needs all of them — `bits − 1` when narrow).
    pub fn sig_bits(&self) -> u32 {
        match *self {
            Operand::Int {
                bits,
                signed,
                narrow,
            } => {
                if signed && narrow {
                    bits - 1
                } else {
                    bits
                }
            }
            Operand::Float { exp, man, .. } => {
                if exp == 0 {
                    man
                } else {
                    man + 1
                }
            }
        }
    }

    /// Largest left shift of the significand inside the frame: 2^E − 2 for a minifloat (its
    /// largest exponent field minus one), one less with IEEE specials (the all-ones exponent
    /// holds inf/NaN), 0 for integers and E=0.
    pub fn max_shift(&self) -> u32 {
        match *self {
            Operand::Int { .. } => 0,
            Operand::Float { exp, specials, .. } => {
                if exp == 0 {
                    0
                } else {
                    let top = (1u32 << exp) - 2;
                    if specials == Specials::Ieee {
                        top.saturating_sub(1)
                    } else {
                        top
                    }
                }
            }
        }
    }

    /// Bits of the width of the shift amount field (0 when the operand never shifts).
    pub fn shift_field_bits(&self) -> u32 {
        match *self {
            Operand::Int { .. } => 0,
            Operand::Float { exp, .. } => exp,
        }
    }

    /// Frame width: bits needed for the largest magnitude in units of the smallest step.
    /// Minifloat: 2^E + M − 1 (the seed paper's per-operand term); integer: `sig_bits`.
    pub fn mag_bits(&self) -> u32 {
        self.sig_bits() + self.max_shift()
    }

    /// Base-2 exponent of the smallest step of the format (1 − bias − M for minifloats).
    pub fn lsb_exp(&self) -> i32 {
        match *self {
            Operand::Int { .. } => 0,
            Operand::Float { man, bias, .. } => 1 - bias - man as i32,
        }
    }

    /// Short human label: INT4, UINT8, E4M3, E4M3_NS (no subnormals), UE4M3 (unsigned).
    pub fn label(&self) -> String {
        match *self {
            Operand::Int {
                bits,
                signed,
                narrow,
            } => format!(
                "{}INT{bits}{}",
                if signed { "" } else { "U" },
                if narrow { "N" } else { "" }
            ),
            Operand::Float {
                exp,
                man,
                signed,
                subnormals,
                specials,
                ..
            } => {
                let sp = match specials {
                    Specials::None => "",
                    Specials::Ieee => "_IEEE",
                    Specials::Fn => "_FN",
                    Specials::Fnuz => "_FNUZ",
                };
                format!(
                    "{}E{exp}M{man}{}{sp}",
                    if signed { "" } else { "U" },
                    if subnormals { "" } else { "_NS" }
                )
            }
        }
    }

    /// Decodes an operand code into `(negative, significand, shift)` in the format's frame, or
    /// `None` for codes that are not finite numbers (inf/NaN, the unused narrow code).
    pub fn decode(&self, code: u64) -> Option<(bool, u64, u32)> {
        let mask = if self.code_bits() >= 64 {
            u64::MAX
        } else {
            (1u64 << self.code_bits()) - 1
        };
        let code = code & mask;
        match *self {
            Operand::Int {
                bits,
                signed,
                narrow,
            } => {
                if signed {
                    let neg = (code >> (bits - 1)) & 1 == 1;
                    let v = if neg { (1u64 << bits) - code } else { code };
                    if narrow && neg && v == 1u64 << (bits - 1) {
                        return None;
                    }
                    Some((neg && v != 0, v, 0))
                } else {
                    if narrow && code == mask {
                        return None;
                    }
                    Some((false, code, 0))
                }
            }
            Operand::Float {
                exp,
                man,
                signed,
                subnormals,
                specials,
                ..
            } => {
                let m = code & ((1u64 << man) - 1);
                let e = (code >> man) & ((1u64 << exp) - 1);
                let s = signed && (code >> (exp + man)) & 1 == 1;
                let e_all = (1u64 << exp) - 1;
                let m_all = (1u64 << man) - 1;
                match specials {
                    Specials::None => {}
                    Specials::Ieee => {
                        if exp > 0 && e == e_all {
                            return None;
                        }
                    }
                    Specials::Fn => {
                        if e == e_all && m == m_all {
                            return None;
                        }
                    }
                    Specials::Fnuz => {
                        if s && e == 0 && m == 0 {
                            return None;
                        }
                    }
                }
                if exp == 0 {
                    return Some((s && m != 0, m, 0));
                }
                if e == 0 {
                    if subnormals {
                        Some((s && m != 0, m, 0))
                    } else {
                        Some((false, 0, 0))
                    }
                } else {
                    Some((s, (1u64 << man) | m, (e - 1) as u32))
                }
            }
        }
    }
}
