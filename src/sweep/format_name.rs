//! Format names in sweep grids and reports: validation, canonical spelling, and the family and
//! width used to order and colour results.
//!
//! [`format_info`] is the single place where the sweep interprets a format string; everything
//! else (grid expansion, sort order, plots, the regression check) goes through it, so switching
//! to the quant-formats parser changes one function.

use std::cmp::Ordering;
use std::fmt;

/// Number-format family of a format string, used for plot series and heat maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Signed or unsigned integer (`int4`, `uint8`).
    Integer,
    /// Minifloat ExMy (`e2m1`, `e4m3`).
    Minifloat,
}

impl Family {
    /// Short lowercase tag used in file names (`int`, `float`).
    pub fn tag(self) -> &'static str {
        match self {
            Family::Integer => "int",
            Family::Minifloat => "float",
        }
    }

    /// Human-readable name used in legends and titles.
    pub fn label(self) -> &'static str {
        match self {
            Family::Integer => "integer",
            Family::Minifloat => "minifloat",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A validated format name with the properties the sweep needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FormatInfo {
    /// Canonical spelling (lowercase, e.g. `int4`, `uint8`, `e4m3`).
    pub canonical: String,
    /// Integer or minifloat.
    pub family: Family,
    /// Total storage width in bits, sign bit included.
    pub bits: u32,
    /// Exponent bits of a minifloat (0 for integers).
    pub exp_bits: u32,
    /// True when the format has a sign bit.
    pub signed: bool,
}

impl FormatInfo {
    /// Total order used everywhere results are listed: integers before minifloats, signed
    /// before unsigned, then by width, then by exponent bits, then by name.
    pub fn sort_key(&self) -> (Family, bool, u32, u32, &str) {
        (
            self.family,
            !self.signed,
            self.bits,
            self.exp_bits,
            &self.canonical,
        )
    }
}

/// Compares two format strings in the report order of [`FormatInfo::sort_key`]; strings that
/// do not parse sort after every valid one, alphabetically.
pub fn compare_format_names(a: &str, b: &str) -> Ordering {
    match (format_info(a), format_info(b)) {
        (Ok(x), Ok(y)) => x.sort_key().cmp(&y.sort_key()),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// A format string the sweep does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown number format '{name}': {why}")]
pub struct FormatNameError {
    /// The string as written.
    pub name: String,
    /// What is wrong with it.
    pub why: String,
}

/// Validates a format string and returns its canonical spelling and properties.
///
/// Accepted: `intN` / `uintN` (N = 2..=16) and minifloats `eEmM` with a sign bit
/// (E = 1..=8, M = 0..=10), case-insensitive.
pub fn format_info(name: &str) -> Result<FormatInfo, FormatNameError> {
    let err = |why: &str| FormatNameError {
        name: name.to_string(),
        why: why.to_string(),
    };
    let s = name.trim().to_ascii_lowercase();
    let (signed, rest) = if let Some(r) = s.strip_prefix("uint") {
        (false, Some(r))
    } else if let Some(r) = s.strip_prefix("int") {
        (true, Some(r))
    } else {
        (true, None)
    };
    if let Some(digits) = rest {
        let bits: u32 = parse_digits(digits).ok_or_else(|| err("expected intN or uintN"))?;
        if !(2..=16).contains(&bits) {
            return Err(err("integer width must be 2..=16 bits"));
        }
        let prefix = if signed { "int" } else { "uint" };
        return Ok(FormatInfo {
            canonical: format!("{prefix}{bits}"),
            family: Family::Integer,
            bits,
            exp_bits: 0,
            signed,
        });
    }
    if let Some(r) = s.strip_prefix('e') {
        if let Some((e, m)) = r.split_once('m') {
            let e = parse_digits(e).ok_or_else(|| err("expected eEmM, e.g. e4m3"))?;
            let m = parse_digits(m).ok_or_else(|| err("expected eEmM, e.g. e4m3"))?;
            if !(1..=8).contains(&e) {
                return Err(err("minifloat exponent bits must be 1..=8"));
            }
            if m > 10 {
                return Err(err("minifloat mantissa bits must be 0..=10"));
            }
            return Ok(FormatInfo {
                canonical: format!("e{e}m{m}"),
                family: Family::Minifloat,
                bits: 1 + e + m,
                exp_bits: e,
                signed: true,
            });
        }
    }
    Err(err("expected intN, uintN or eEmM"))
}

fn parse_digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises_and_classifies() {
        let i = format_info(" INT4 ").expect("int4");
        assert_eq!(i.canonical, "int4");
        assert_eq!((i.family, i.bits, i.signed), (Family::Integer, 4, true));
        let u = format_info("uint8").expect("uint8");
        assert_eq!((u.canonical.as_str(), u.signed), ("uint8", false));
        let f = format_info("E4M3").expect("e4m3");
        assert_eq!((f.canonical.as_str(), f.bits, f.exp_bits), ("e4m3", 8, 4));
        for bad in [
            "int", "int1", "int17", "e0m3", "e9m1", "e4m11", "fp8", "e4m", "int4x",
        ] {
            assert!(format_info(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn report_order() {
        let mut v = vec!["e2m1", "uint4", "int8", "int4", "e1m2", "zzz"];
        v.sort_by(|a, b| compare_format_names(a, b));
        assert_eq!(v, ["int4", "int8", "uint4", "e1m2", "e2m1", "zzz"]);
    }
}
