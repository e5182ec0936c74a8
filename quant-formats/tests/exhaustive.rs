//! Exhaustive checks over a representative family of every format of at most 12 bits (all
//! E/M splits, sign, subnormals, special-value policies, overflow rules, three biases, and all
//! integers): every code decodes and re-encodes to itself (modulo NaN payloads and non-canonical
//! zeros), magnitudes strictly increase with the code, negative codes mirror positive ones, and
//! every midpoint between neighbouring grid values (and the f32 values just beside it) rounds as
//! the brute-force oracle says, through both the fast and the reference kernels.

mod common;
use common::{representative, same_for, Oracle};
use quant_formats::{Format, Rounding, Specials};

fn check_codes(f: &Format) {
    let q = f.quantizer(Rounding::HalfEven);
    let bits = f.bits();
    let n = 1u32 << bits;
    let sign_bit = if f.is_signed() { 1u32 << (bits - 1) } else { 0 };
    let is_float = matches!(f, Format::Float(_));
    let mut last = f64::NEG_INFINITY;
    for c in 0..n {
        let v = f.decode(c);
        if v.is_nan() {
            let back = f.code_of_value(v);
            assert!(
                f.decode(back).is_nan(),
                "{f}: NaN code {c:#x} re-encodes to non-NaN {back:#x}"
            );
            continue;
        }
        if v.is_infinite() {
            assert_eq!(f.code_of_value(v), c, "{f}: inf code {c:#x}");
            continue;
        }
        if let Format::Int(i) = f {
            let k = f64::from(v);
            if i.narrow && (k < i.qmin() as f64 || k > i.qmax() as f64) {
                // The code narrow range leaves unused saturates to the nearest end.
                let end = if k < 0.0 { i.qmin() } else { i.qmax() };
                assert_eq!(f.quantize_value(v), end as f32, "{f}");
                continue;
            }
        }
        // Idempotent on the grid, through both kernels.
        assert!(
            same_for(f, q.quantize_one(v, 0), v),
            "{f}: code {c:#x} value {v} not fixed by Q"
        );
        let r = q.reference_kernel().quantize_one(v, 0);
        assert!(
            same_for(f, r, v),
            "{f}: code {c:#x} value {v} not fixed by reference Q"
        );
        let back = f.code_of_value(v);
        if back != c {
            // Only non-canonical zeros may re-encode elsewhere: flushed subnormal codes.
            assert_eq!(v, 0.0, "{f}: code {c:#x} ({v}) re-encodes to {back:#x}");
            assert_eq!(f.decode(back), v, "{f}: zero code {c:#x}");
            continue;
        }
        if is_float && c & sign_bit == 0 {
            assert!(
                f64::from(v) > last || (c == 0 && v == 0.0),
                "{f}: code {c:#x} value {v} not above {last}"
            );
            last = f64::from(v);
        }
        if is_float && sign_bit != 0 && c & sign_bit == 0 {
            let neg = f.decode(c | sign_bit);
            if let Format::Float(ff) = f {
                if ff.specials == Specials::Fnuz && c == 0 {
                    assert!(neg.is_nan());
                    continue;
                }
            }
            assert_eq!(
                neg.to_bits(),
                (-v).to_bits(),
                "{f}: code {c:#x} not mirrored"
            );
        }
    }
    if let Format::Int(i) = f {
        // Integer codes: two's complement order is value order after sign adjustment.
        let vals: Vec<f32> = (0..n).map(|c| f.decode(c)).collect();
        let mut sorted = vals.clone();
        sorted.sort_by(f32::total_cmp);
        sorted.dedup();
        assert_eq!(sorted.len(), n as usize, "{f}: integer codes not distinct");
        assert_eq!(f.grid().len() as u32, n - u32::from(i.narrow), "{f}");
    }
}

fn check_midpoints(f: &Format) {
    let q = f.quantizer(Rounding::HalfEven);
    let r = q.reference_kernel();
    let o = Oracle::new(f);
    let g = f.grid();
    let mut probes = Vec::new();
    for w in g.windows(2) {
        let mid = (w[0] + w[1]) / 2.0;
        let m32 = mid as f32;
        if f64::from(m32) != mid {
            continue;
        }
        probes.extend([m32, common::next_up(m32), common::next_down(m32)]);
    }
    let max = f.max_value() as f32;
    probes.extend([
        0.0,
        -0.0,
        max,
        -max,
        max * 1.01,
        -max * 1.01,
        max * 4.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        1e-45,
        -1e-45,
    ]);
    for x in probes {
        let want = o.round(f64::from(x), Rounding::HalfEven) as f32;
        let got = q.quantize_one(x, 0);
        assert!(
            same_for(f, got, want),
            "{f}: Q({x:e}) = {got:e}, oracle {want:e}"
        );
        let got_r = r.quantize_one(x, 0);
        assert!(
            same_for(f, got_r, want),
            "{f}: reference Q({x:e}) = {got_r:e}, oracle {want:e}"
        );
    }
}

#[test]
fn every_code_round_trips_and_is_monotone() {
    let fams = representative(12);
    assert!(fams.len() > 1000, "family has {} formats", fams.len());
    let codes: u64 = fams.iter().map(|f| f.code_count()).sum();
    eprintln!(
        "exhaustive: {} formats of <= 12 bits, {codes} codes",
        fams.len()
    );
    for f in &fams {
        check_codes(f);
    }
}

#[test]
fn every_midpoint_rounds_like_the_oracle() {
    let fams = representative(10);
    eprintln!(
        "midpoints: {} formats of <= 10 bits plus the presets",
        fams.len()
    );
    for f in fams {
        check_midpoints(&f);
    }
    // Named presets (including the 16-bit ones, whose midpoints are still enumerable).
    for (_, f) in Format::presets() {
        if f.bits() <= 16 {
            check_midpoints(&f);
        }
    }
}
