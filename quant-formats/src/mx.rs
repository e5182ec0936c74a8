//! OCP Microscaling (MX v1.0) helpers: the shared E8M0 block exponent.
//!
//! Rule (spec section 6.3): for a block with largest magnitude `amax`, the shared scale is
//! `X = 2^e` with `e = floor(log2(amax)) - emax_elem`, clamped to the E8M0 range [-127, 127].
//! Elements are `quantize(v / X)` with saturation to the element's max; mfq rounds them ties to
//! even, as the spec does (Microsoft's microxcaling emulator defaults to ties away from zero:
//! use `Rounding::HalfAwayFromZero` to reproduce it). Because `amax / X` can reach
//! `2^(emax_elem+1)` while the element max is below that (6 for FP4), the largest elements of a
//! block may saturate; this is the spec's behaviour. An all-zero block uses e = -127. A block
//! holding NaN or ±inf gets the NaN scale (E8M0 code 0xFF).

/// Shared exponent for a block whose largest |value| is `amax` (None: the NaN scale).
pub fn shared_exponent(amax: f32, emax_elem: i32) -> Option<i32> {
    if !amax.is_finite() {
        return None;
    }
    if amax == 0.0 {
        return Some(-127);
    }
    let b = amax.to_bits() & 0x7fff_ffff;
    let field = (b >> 23) as i32;
    let fl = if field == 0 {
        // f32 subnormal: value = mantissa * 2^-149.
        (31 - (b & 0x7f_ffff).leading_zeros() as i32) - 149
    } else {
        field - 127
    };
    Some((fl - emax_elem).clamp(-127, 127))
}

/// E8M0 code of a shared exponent (`None` → the NaN code 0xFF).
pub fn e8m0_code(exp: Option<i32>) -> u8 {
    match exp {
        Some(e) => (e.clamp(-127, 127) + 127) as u8,
        None => 0xff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_exponent_rule() {
        // FP4 (emax 2): amax 6 → floor(log2 6) = 2 → e = 0.
        assert_eq!(shared_exponent(6.0, 2), Some(0));
        assert_eq!(shared_exponent(7.9, 2), Some(0));
        assert_eq!(shared_exponent(8.0, 2), Some(1));
        assert_eq!(shared_exponent(0.0, 2), Some(-127));
        assert_eq!(shared_exponent(f32::NAN, 2), None);
        assert_eq!(shared_exponent(f32::from_bits(1), 0), Some(-127));
        assert_eq!(shared_exponent(f32::MAX, 0), Some(127));
        assert_eq!(e8m0_code(Some(0)), 127);
        assert_eq!(e8m0_code(None), 255);
    }
}
