//! Format names in sweep grids and reports: validation, canonical spelling, and the family and
//! width used to order and colour results.
//!
//! [`format_info`] is the single place where the sweep interprets a format string: it parses
//! with quant-formats (`Format::from_str`) and prints the canonical name with its `Display`;
//! grid expansion, sort order and plots all go through it.

use quant_formats::Format;
use std::cmp::Ordering;
use std::fmt;

/// Number-format family of a format string, used for plot series and heat maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Signed or unsigned integer (`int4`, `uint8`).
    Integer,
    /// Minifloat ExMy (`e2m1`, `e4m3`, `fp8-e4m3fn`).
    Minifloat,
    /// OCP MX block format (`mxfp4`, `mxint8`).
    Mx,
}

impl Family {
    /// Short lowercase tag used in file names (`int`, `float`).
    pub fn tag(self) -> &'static str {
        match self {
            Family::Integer => "int",
            Family::Minifloat => "float",
            Family::Mx => "mx",
        }
    }

    /// Human-readable name used in legends and titles.
    pub fn label(self) -> &'static str {
        match self {
            Family::Integer => "integer",
            Family::Minifloat => "minifloat",
            Family::Mx => "MX block",
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
#[error("invalid number format '{name}': {why}")]
pub struct FormatNameError {
    /// The string as written.
    pub name: String,
    /// What is wrong with it.
    pub why: String,
}

/// Validates a format string with the quant-formats parser and returns its canonical
/// spelling (the format's `Display`) and properties. Every syntax of `quant_formats::parse`
/// is accepted: `int4`, `uint8`, `e4m3`, `e5m2:ieee`, `fp8-e4m3fn`, `mxfp4`, ….
pub fn format_info(name: &str) -> Result<FormatInfo, FormatNameError> {
    let format: Format = name
        .trim()
        .parse()
        .map_err(|e: quant_formats::FormatError| FormatNameError {
            name: name.to_string(),
            why: e.to_string(),
        })?;
    let (family, exp_bits) = match &format {
        Format::Int(_) => (Family::Integer, 0),
        Format::Float(f) => (Family::Minifloat, u32::from(f.exp_bits)),
        Format::Mx(_) => (Family::Mx, 0),
    };
    Ok(FormatInfo {
        canonical: format.to_string(),
        family,
        bits: format.bits(),
        exp_bits,
        signed: format.is_signed(),
    })
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
        // A generic ExMy equal to a named preset prints as the preset.
        let p = format_info("e2m1").expect("e2m1");
        assert_eq!((p.canonical.as_str(), p.bits), ("fp4-e2m1", 4));
        assert_eq!(
            format_info("float4_e2m1fn").expect("alias").canonical,
            "fp4-e2m1"
        );
        let m = format_info("mxfp4").expect("mx");
        assert_eq!((m.family, m.bits), (Family::Mx, 4));
        for bad in ["int", "int1", "int17", "e9m1", "fp9", "int4x", ""] {
            assert!(format_info(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn report_order() {
        let mut v = vec!["e3m1", "uint4", "int8", "int4", "e1m2", "zzz", "e4m3"];
        v.sort_by(|a, b| compare_format_names(a, b));
        assert_eq!(v, ["int4", "int8", "uint4", "e1m2", "e3m1", "e4m3", "zzz"]);
    }
}
