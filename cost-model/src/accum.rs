//! Accumulator widths for exact (Kulisch) dot products.
//!
//! Every product of two operands lands in a common fixed-point frame whose step is the product
//! of the operands' smallest steps. An operand whose largest magnitude needs `mag_bits` bits in
//! its own frame (see [`Operand::mag_bits`]) gives products below `2^(mag_a + mag_w)` steps, so a
//! sum of `n` of them stays below `2^(mag_a + mag_w + ceil(log2 n))`, plus one sign bit when
//! either operand is signed:
//!
//! `W = mag_a + mag_w + ceil(log2 n) + s`
//!
//! With `mag = r` for an r-bit integer and `mag = 2^E + M − 1` for a minifloat this reproduces
//! both formulas of the seed paper (integer `ra + rb + ceil(log2 n) + 1`, minifloat
//! `2^ea + ma + 2^eb + mb + ceil(log2 n) − 1`), and it gives the mixed integer × minifloat width
//! `r + 2^E + M + ceil(log2 n)` and the all-unsigned width (no sign bit) directly.
//! [`exact_width`] is the tightest width for the worst-case operands and [`data_aware_width`]
//! the tightest one for given weights and an activation range.

use crate::operand::Operand;
use crate::CostError;

/// `ceil(log2 n)` for n ≥ 1 (0 for n ≤ 1).
pub fn ceil_log2(n: u64) -> u32 {
    if n <= 1 {
        0
    } else {
        64 - (n - 1).leading_zeros()
    }
}

/// The Kulisch accumulator width the MAC units of this crate are built with (formula above).
pub fn kulisch_width(a: &Operand, w: &Operand, n: u64) -> Result<u32, CostError> {
    if n == 0 {
        return Err(CostError::Invalid(
            "dot-product length n must be at least 1".into(),
        ));
    }
    Ok(a.mag_bits() + w.mag_bits() + ceil_log2(n) + u32::from(a.signed() || w.signed()))
}

/// Smallest two's-complement (or unsigned, when neither operand is signed) width holding every
/// sum in `[lo, hi]` (steps of the product frame).
pub fn width_for_range(lo: i128, hi: i128, signed: bool) -> u32 {
    if !signed && lo >= 0 {
        return (128 - (hi.max(0) as u128).leading_zeros()).max(1);
    }
    // Two's complement with W bits holds [-2^(W-1), 2^(W-1) - 1].
    let need_pos = if hi > 0 {
        129 - (hi as u128).leading_zeros()
    } else {
        1
    };
    let need_neg = if lo < 0 {
        // -lo <= 2^(W-1)  <=>  W-1 >= ceil(log2(-lo))
        let m = lo.unsigned_abs();
        1 + (128 - (m - 1).leading_zeros())
    } else {
        1
    };
    need_pos.max(need_neg)
}

/// Largest and smallest product of the two operand formats, in steps of the product frame.
fn product_range(a: &Operand, w: &Operand) -> Result<(i128, i128), CostError> {
    if a.mag_bits() + w.mag_bits() > 120 {
        return Err(CostError::Unsupported(format!(
            "exact width for {} x {}: product frame of {} bits exceeds 120",
            a.label(),
            w.label(),
            a.mag_bits() + w.mag_bits()
        )));
    }
    let ext = |o: &Operand| -> (i128, i128) {
        // (most negative value, largest value) in frame steps.
        let mut lo = 0i128;
        let mut hi = 0i128;
        let codes = 1u64 << o.code_bits().min(20);
        for c in 0..codes {
            if let Some((neg, sig, sh)) = o.decode(c) {
                let v = (sig as i128) << sh;
                let v = if neg { -v } else { v };
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        (lo, hi)
    };
    let (alo, ahi) = ext(a);
    let (wlo, whi) = ext(w);
    let cands = [alo * wlo, alo * whi, ahi * wlo, ahi * whi];
    let lo = cands.iter().copied().min().unwrap_or(0);
    let hi = cands.iter().copied().max().unwrap_or(0);
    Ok((lo, hi))
}

/// Tightest width for any `n` operand pairs of the two formats (at most the Kulisch width;
/// usually 1 bit less for signed integers, whose formula carries one spare bit).
pub fn exact_width(a: &Operand, w: &Operand, n: u64) -> Result<u32, CostError> {
    if n == 0 {
        return Err(CostError::Invalid(
            "dot-product length n must be at least 1".into(),
        ));
    }
    if a.code_bits() > 20 || w.code_bits() > 20 {
        return Err(CostError::Unsupported(
            "exact width enumerates codes; operands wider than 20 bits are not supported".into(),
        ));
    }
    let (lo, hi) = product_range(a, w)?;
    let n = n as i128;
    let lo = lo.checked_mul(n);
    let hi = hi.checked_mul(n);
    match (lo, hi) {
        (Some(lo), Some(hi)) => Ok(width_for_range(lo, hi, a.signed() || w.signed())),
        _ => Err(CostError::Unsupported(
            "exact width overflows 127 bits".into(),
        )),
    }
}

/// Converts a decoded value of `op` into integer steps of its frame; errors when the value is
/// not on the format's grid or out of its range.
pub fn to_steps(op: &Operand, value: f64, what: &str) -> Result<i128, CostError> {
    if !value.is_finite() {
        return Err(CostError::Invalid(format!(
            "{what}: value {value} is not finite"
        )));
    }
    let scaled = value * 2f64.powi(-op.lsb_exp());
    if scaled.fract() != 0.0 || scaled.abs() > 2f64.powi(op.mag_bits() as i32) {
        return Err(CostError::Invalid(format!(
            "{what}: value {value} is not representable in {}",
            op.label()
        )));
    }
    if !op.signed() && scaled < 0.0 {
        return Err(CostError::Invalid(format!(
            "{what}: negative value {value} in unsigned format {}",
            op.label()
        )));
    }
    Ok(scaled as i128)
}

/// Data-aware accumulator width: the tightest width that holds every partial sum of
/// `Σ_i w_i · x_i` for the actual quantized weights and any activations in
/// `[act_lo, act_hi]` (decoded values, i.e. without the tensor scale).
///
/// `weights` holds the decoded weight values row by row, each row being one dot product of
/// length `row_len` (for a conv layer: one output channel, `Cin·kh·kw` values). Every partial
/// sum is bounded too because each term's extreme is taken independently.
pub fn data_aware_width(
    act: &Operand,
    wt: &Operand,
    weights: &[f64],
    row_len: usize,
    act_lo: f64,
    act_hi: f64,
) -> Result<u32, CostError> {
    if row_len == 0 || weights.is_empty() || weights.len() % row_len != 0 {
        return Err(CostError::Invalid(format!(
            "weights: {} values do not split into rows of {row_len}",
            weights.len()
        )));
    }
    if act_lo > act_hi {
        return Err(CostError::Invalid(format!(
            "activation range [{act_lo}, {act_hi}] is empty"
        )));
    }
    if act.mag_bits() + wt.mag_bits() + crate::accum::ceil_log2(row_len as u64) > 124 {
        return Err(CostError::Unsupported(format!(
            "data-aware width for {} x {}: frame too wide for exact 128-bit sums",
            act.label(),
            wt.label()
        )));
    }
    let lo = to_steps(act, act_lo, "activation range low")?;
    let hi = to_steps(act, act_hi, "activation range high")?;
    let mut width = 1;
    for (r, row) in weights.chunks(row_len).enumerate() {
        let (mut smin, mut smax) = (0i128, 0i128);
        for (i, &v) in row.iter().enumerate() {
            let wv = to_steps(wt, v, &format!("weight row {r} element {i}"))?;
            let (p, q) = (wv * lo, wv * hi);
            // A partial sum never leaves [Σ negative extremes, Σ positive extremes].
            smin += p.min(q).min(0);
            smax += p.max(q).max(0);
        }
        width = width.max(width_for_range(smin, smax, act.signed() || wt.signed()));
    }
    Ok(width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(a: Operand, n: u64) -> u32 {
        kulisch_width(&a, &a, n).expect("width")
    }

    #[test]
    fn paper_widths_at_4608() {
        let n = 4608;
        assert_eq!(ceil_log2(n), 13);
        assert_eq!(w(Operand::int(4, true), n), 22);
        assert_eq!(w(Operand::int(8, true), n), 30);
        assert_eq!(w(Operand::float(2, 1, true), n), 22);
        assert_eq!(w(Operand::float(2, 3, true), n), 26);
        assert_eq!(w(Operand::float(3, 2, true), n), 32);
        assert_eq!(w(Operand::float(4, 3, true), n), 50);
        assert_eq!(w(Operand::float(5, 2, true), n), 80);
    }

    #[test]
    fn paper_formulas_hold_on_grid() {
        for n in [1u64, 2, 3, 64, 4608, 1 << 20] {
            let l = ceil_log2(n);
            for ra in 2..=8 {
                for rb in 2..=8 {
                    let got = kulisch_width(&Operand::int(ra, true), &Operand::int(rb, true), n);
                    assert_eq!(got.expect("w"), ra + rb + l + 1);
                }
            }
            for ea in 1..=5 {
                for ma in 0..=4 {
                    for eb in 1..=5 {
                        for mb in 0..=4 {
                            let got = kulisch_width(
                                &Operand::float(ea, ma, true),
                                &Operand::float(eb, mb, false),
                                n,
                            )
                            .expect("w");
                            assert_eq!(got, (1 << ea) + ma + (1 << eb) + mb + l - 1);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn mixed_and_unsigned() {
        let n = 4608;
        // INT8 x E4M3: 8 + (16 + 3 - 1) + 13 + 1
        let got = kulisch_width(&Operand::int(8, true), &Operand::float(4, 3, true), n);
        assert_eq!(got.expect("w"), 8 + 18 + 13 + 1);
        // UINT4 x UINT4: no sign bit
        let got = kulisch_width(&Operand::int(4, false), &Operand::int(4, false), n);
        assert_eq!(got.expect("w"), 21);
        // UINT8 activations x INT4 weights: sign bit present
        let got = kulisch_width(&Operand::int(8, false), &Operand::int(4, true), n);
        assert_eq!(got.expect("w"), 26);
        assert!(kulisch_width(&Operand::int(8, false), &Operand::int(4, true), 0).is_err());
    }

    #[test]
    fn exact_width_is_bounded_by_kulisch_and_tight() {
        let ops = [
            Operand::int(2, true),
            Operand::int(4, true),
            Operand::int(5, false),
            Operand::float(2, 1, true),
            Operand::float(3, 2, false),
            Operand::float(4, 3, true),
        ];
        for a in ops {
            for b in ops {
                for n in [1u64, 7, 64, 4608] {
                    let e = exact_width(&a, &b, n).expect("exact");
                    let k = kulisch_width(&a, &b, n).expect("k");
                    assert!(
                        e <= k,
                        "{} x {} n={n}: exact {e} > kulisch {k}",
                        a.label(),
                        b.label()
                    );
                    assert!(
                        k - e <= 2,
                        "{} x {} n={n}: {e} vs {k}",
                        a.label(),
                        b.label()
                    );
                }
            }
        }
        // INT4 x INT4, n = 1: products in [-56, 64] -> 8 bits (64 needs 7 magnitude bits + sign).
        assert_eq!(
            exact_width(&Operand::int(4, true), &Operand::int(4, true), 1).expect("w"),
            8
        );
    }

    #[test]
    fn width_for_range_edges() {
        assert_eq!(width_for_range(-128, 127, true), 8);
        assert_eq!(width_for_range(-129, 127, true), 9);
        assert_eq!(width_for_range(-1, 128, true), 9);
        assert_eq!(width_for_range(0, 255, false), 8);
        assert_eq!(width_for_range(0, 0, false), 1);
        assert_eq!(width_for_range(0, 0, true), 1);
    }

    #[test]
    fn data_aware_is_tighter_and_rejects_off_grid() {
        let a = Operand::int(8, false);
        let wt = Operand::int(4, true);
        // Two rows of 4; activations 0..=255.
        let weights = [1.0, -2.0, 3.0, 0.0, -8.0, -8.0, 7.0, 7.0];
        let got = data_aware_width(&a, &wt, &weights, 4, 0.0, 255.0).expect("w");
        // row 2: max 14*255 = 3570, min -16*255 = -4080 -> 13 bits
        assert_eq!(got, 13);
        assert!(got <= kulisch_width(&a, &wt, 4).expect("k"));
        assert!(data_aware_width(&a, &wt, &[0.5, 1.0], 2, 0.0, 1.0).is_err());
        assert!(data_aware_width(&a, &wt, &[1.0, 1.0, 1.0], 2, 0.0, 1.0).is_err());
        // Minifloat weights: E2M1 values on a half-step grid.
        let f = Operand::float(2, 1, true);
        let got = data_aware_width(&f, &f, &[6.0, -6.0, 0.5], 3, -6.0, 6.0).expect("w");
        // steps of 0.5: 6 -> 12; per term max 144; sum max 144+144+12=300 -> min -300: 10 bits
        assert_eq!(got, 10);
    }
}
