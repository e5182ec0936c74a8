//! Bit-exact software model of the generated MAC units: decodes each operand code by the
//! format definition ([`Operand::decode`]), multiplies exactly and accumulates modulo
//! 2^acc_bits in a wide two's-complement register, so RTL outputs can be compared bit for bit.

use crate::operand::Operand;

/// A two's-complement register of `bits` bits stored in 64-bit limbs (little endian).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WideAcc {
    bits: u32,
    limbs: Vec<u64>,
}

impl WideAcc {
    /// A zero register of `bits` bits.
    pub fn new(bits: u32) -> Self {
        WideAcc {
            bits,
            limbs: vec![0; bits.div_ceil(64) as usize + 1],
        }
    }

    /// Adds `±mag · 2^shift` modulo 2^bits.
    pub fn add_shifted(&mut self, negative: bool, mag: u128, shift: u32) {
        let mut term = vec![0u64; self.limbs.len()];
        let (q, r) = ((shift / 64) as usize, shift % 64);
        // Place the 128-bit magnitude shifted by `shift` bits.
        let lo = (mag as u64) as u128;
        let hi = mag >> 64;
        for (part, off) in [(lo, 0usize), (hi, 1usize)] {
            let wide = part << r; // at most 128 bits
            for (k, limb) in [(0usize, wide as u64), (1usize, (wide >> 64) as u64)] {
                let idx = q + off + k;
                if idx < term.len() {
                    term[idx] |= limb;
                }
            }
        }
        if negative {
            // Two's-complement negation of the term over the limb vector.
            let mut carry = 1u128;
            for t in term.iter_mut() {
                let s = (!*t) as u128 + carry;
                *t = s as u64;
                carry = s >> 64;
            }
        }
        let mut carry = 0u128;
        for (a, t) in self.limbs.iter_mut().zip(term) {
            let s = *a as u128 + t as u128 + carry;
            *a = s as u64;
            carry = s >> 64;
        }
        self.mask();
    }

    fn mask(&mut self) {
        let full = (self.bits / 64) as usize;
        let rem = self.bits % 64;
        for (i, l) in self.limbs.iter_mut().enumerate() {
            if i > full || (i == full && rem == 0) {
                *l = 0;
            } else if i == full {
                *l &= (1u64 << rem) - 1;
            }
        }
    }

    /// Lower-case hex of the register, `ceil(bits/4)` digits (as Verilog `%h` prints it).
    pub fn to_hex(&self) -> String {
        let digits = self.bits.div_ceil(4) as usize;
        let mut out = String::with_capacity(digits);
        for d in (0..digits).rev() {
            let bit = d * 4;
            let limb = self.limbs[bit / 64];
            let nib = (limb >> (bit % 64)) & 0xf;
            out.push(char::from_digit(nib as u32, 16).unwrap_or('?'));
        }
        out
    }

    /// Value as i128 when it fits (sign taken from bit `bits − 1` when `signed`).
    pub fn to_i128(&self, signed: bool) -> Option<i128> {
        if self.bits > 127 {
            return None;
        }
        let raw =
            (self.limbs[0] as u128) | ((self.limbs.get(1).copied().unwrap_or(0) as u128) << 64);
        if signed && (raw >> (self.bits - 1)) & 1 == 1 {
            Some(raw as i128 - (1i128 << self.bits))
        } else {
            Some(raw as i128)
        }
    }
}

/// Adds the product of two codes to `acc` exactly; `false` when either code is not a finite
/// value of its format.
pub fn mac_step(acc: &mut WideAcc, act: &Operand, wt: &Operand, a: u64, w: u64) -> bool {
    match (act.decode(a), wt.decode(w)) {
        (Some((sa, ma, xa)), Some((sw, mw, xw))) => {
            acc.add_shifted(sa ^ sw, ma as u128 * mw as u128, xa + xw);
            true
        }
        _ => false,
    }
}

/// Deterministic SplitMix64 generator (stimulus streams; no external RNG dependency).
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// All finite codes of `op` (at most 2^20 of them).
pub fn finite_codes(op: &Operand) -> Vec<u64> {
    (0..1u64 << op.code_bits().min(20))
        .filter(|&c| op.decode(c).is_some())
        .collect()
}

/// Finite codes of largest magnitude with the given sign (`None` when the format cannot
/// represent a nonzero value of that sign).
pub fn extreme_code(op: &Operand, negative: bool) -> Option<u64> {
    finite_codes(op)
        .into_iter()
        .filter_map(|c| op.decode(c).map(|d| (c, d)))
        .filter(|(_, (neg, sig, _))| *neg == negative && *sig != 0)
        .max_by_key(|(_, (_, sig, sh))| (*sig as u128) << sh)
        .map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_acc_matches_i128() {
        let mut rng = SplitMix(7);
        let mut acc = WideAcc::new(90);
        let mut r: i128 = 0;
        for _ in 0..2000 {
            let mag = (rng.next_u64() >> 40) as u128;
            let sh = (rng.next_u64() % 50) as u32;
            let neg = rng.next_u64() & 1 == 1;
            acc.add_shifted(neg, mag, sh);
            let t = (mag as i128) << sh;
            r += if neg { -t } else { t };
            assert_eq!(acc.to_i128(true), Some(r));
        }
        let hex = acc.to_hex();
        assert_eq!(hex.len(), 23);
    }

    #[test]
    fn decode_known_values() {
        // E2M1 (bias 1): code 0b0111 = 6.0 = 12 steps of 0.5 -> sig 3 shift 2
        let f = Operand::float(2, 1, true);
        assert_eq!(f.decode(0b0111), Some((false, 3, 2)));
        assert_eq!(f.decode(0b1001), Some((true, 1, 0))); // -0.5 subnormal
        let ns = Operand::float(2, 1, false);
        assert_eq!(ns.decode(0b0001), Some((false, 0, 0))); // flushed to zero
        let i = Operand::int(4, true);
        assert_eq!(i.decode(0b1000), Some((true, 8, 0)));
        assert_eq!(extreme_code(&i, true), Some(0b1000));
        assert_eq!(extreme_code(&Operand::int(4, false), true), None);
    }
}
