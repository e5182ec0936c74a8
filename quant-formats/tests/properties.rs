//! Property tests against the brute-force oracle (tests/common): nearest value, ties to even
//! (and every other rounding mode), monotonicity, idempotence, sign symmetry and power-of-two
//! scale equivariance, for random formats from the representative family and random inputs
//! (arbitrary f32 bit patterns, grid points, midpoints and their neighbours).

mod common;
use common::{representative, same_for, Oracle};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use quant_formats::{Format, Rounding, Specials};
use std::sync::OnceLock;

fn family() -> &'static Vec<(Format, Oracle)> {
    static F: OnceLock<Vec<(Format, Oracle)>> = OnceLock::new();
    F.get_or_init(|| {
        let mut v: Vec<Format> = representative(9);
        v.extend(
            Format::presets()
                .into_iter()
                .map(|p| p.1)
                .filter(|f| f.bits() <= 12),
        );
        v.into_iter().map(|f| (f, Oracle::new(&f))).collect()
    })
}

/// An input for format `f`: raw bits, a grid point, a midpoint or a neighbour of one, scaled
/// into the interesting range.
fn input() -> impl Strategy<Value = (usize, u32, u8, u32)> {
    (0..family().len(), any::<u32>(), 0u8..5, any::<u32>())
}

fn make_x(f: &Format, raw: u32, kind: u8, pick: u32) -> f32 {
    let g = f.grid();
    let i = pick as usize % g.len();
    let j = (i + 1).min(g.len() - 1);
    let sgn = if raw & 1 == 1 { -1.0 } else { 1.0 };
    match kind {
        0 => f32::from_bits(raw),
        1 => g[i] as f32,
        2 => ((g[i] + g[j]) / 2.0) as f32 * sgn,
        3 => common::next_up(((g[i] + g[j]) / 2.0) as f32) * sgn,
        _ => {
            // Uniform-ish in [-2 max, 2 max] via the raw bits.
            let u = f64::from(raw) / f64::from(u32::MAX);
            ((u * 4.0 - 2.0) * f.max_value()) as f32
        }
    }
}

fn modes() -> impl Strategy<Value = Rounding> {
    prop_oneof![
        Just(Rounding::HalfEven),
        Just(Rounding::HalfAwayFromZero),
        Just(Rounding::HalfTowardZero),
        Just(Rounding::TowardZero),
        Just(Rounding::AwayFromZero),
        Just(Rounding::Floor),
        Just(Rounding::Ceil),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, rng_seed: RngSeed::Fixed(20261128), ..ProptestConfig::default() })]

    /// Q equals the oracle: nearest grid value with ties to even, and every directed and
    /// other tie rule, including overflow, NaN and inf handling.
    #[test]
    fn matches_oracle((fi, raw, kind, pick) in input(), mode in modes()) {
        let (f, o) = &family()[fi];
        let x = make_x(f, raw, kind, pick);
        let got = f.quantizer(mode).quantize_one(x, 0);
        let want = o.round(f64::from(x), mode) as f32;
        prop_assert!(same_for(f, got, want), "{f} {mode}: Q({x:e}) = {got:e}, oracle {want:e}");
        let got_r = f.quantizer(mode).reference_kernel().quantize_one(x, 0);
        prop_assert!(same_for(f, got_r, want), "{f} {mode}: reference Q({x:e}) = {got_r:e}");
    }

    /// Monotone (non-decreasing), idempotent and sign-symmetric.
    #[test]
    fn monotone_idempotent_symmetric((fi, raw, kind, pick) in input(), (raw2, kind2, pick2) in (any::<u32>(), 0u8..5, any::<u32>()), mode in modes()) {
        let (f, _) = &family()[fi];
        let q = f.quantizer(mode);
        let (a, b) = (make_x(f, raw, kind, pick), make_x(f, raw2, kind2, pick2));
        prop_assume!(!a.is_nan() && !b.is_nan());
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let (ql, qh) = (q.quantize_one(lo, 0), q.quantize_one(hi, 0));
        if !ql.is_nan() && !qh.is_nan() {
            prop_assert!(ql <= qh, "{f} {mode}: Q({lo}) = {ql} > Q({hi}) = {qh}");
        }
        let qa = q.quantize_one(a, 0);
        if qa.is_finite() {
            prop_assert!(same_for(f, q.quantize_one(qa, 0), qa), "{f}: not idempotent at {a}");
        }
        let fnuz = matches!(f, Format::Float(ff) if ff.specials == Specials::Fnuz);
        let mirrored = match mode {
            Rounding::Floor => Rounding::Ceil,
            Rounding::Ceil => Rounding::Floor,
            m => m,
        };
        // Sign symmetry holds wherever the grid itself is symmetric (not for two's complement).
        if f.is_signed() && f.grid()[0] == -f.max_value() {
            let qn = f.quantizer(mirrored).quantize_one(-a, 0);
            if !(fnuz && qa == 0.0) {
                prop_assert!(same_for(f, qn, -qa), "{f} {mode}: Q(-{a}) = {qn} but -Q({a}) = {}", -qa);
            }
        }
    }

    /// fake_quantize(x * 2^k, s * 2^k) == 2^k * fake_quantize(x, s) when nothing leaves the
    /// f32 range, and the per-tensor slice path equals element-wise quantize_one.
    #[test]
    fn pow2_scale_equivariant((fi, raw, kind, pick) in input(), k in -20i32..20, s in 0.01f32..100.0) {
        let (f, _) = &family()[fi];
        let x = make_x(f, raw, kind, pick);
        prop_assume!(x.is_finite() && x.abs() < 1e30 && (x == 0.0 || x.abs() > 1e-30));
        let p = 2f32.powi(k);
        let xs = [x, -x, x * 0.5];
        let mut y1 = [0f32; 3];
        let mut y2 = [0f32; 3];
        f.fake_quantize(&xs, s, &mut y1);
        let xs2: Vec<f32> = xs.iter().map(|v| v * p).collect();
        f.fake_quantize(&xs2, s * p, &mut y2);
        for i in 0..3 {
            // Products that land in f32's subnormal range are rounded, so equivariance needs
            // normal (or zero / non-finite) outputs.
            let tiny = |v: f32| v != 0.0 && v.abs() < f32::MIN_POSITIVE;
            if !tiny(y1[i]) && !tiny(y2[i]) {
                prop_assert!(same_for(f, y2[i], y1[i] * p), "{f}: fq({}, {}) = {} vs {} * 2^{k}", xs2[i], s * p, y2[i], y1[i]);
            }
            if !matches!(f, Format::Mx(_)) {
                let one = f.quantize_value(xs[i] / s) * s;
                prop_assert!(same_for(f, y1[i], one), "{f}: slice path {} vs scalar {}", y1[i], one);
            }
        }
    }
}

#[test]
fn stochastic_rounding_is_seeded_and_unbiased() {
    let f: Format = "int4".parse().expect("int4");
    let x = vec![0.3f32; 20000];
    let mut a = vec![0f32; x.len()];
    let mut b = vec![0f32; x.len()];
    let q = f.quantizer(Rounding::Stochastic { seed: 7 });
    q.fake_quantize(&x, 1.0, &mut a);
    q.fake_quantize(&x, 1.0, &mut b);
    assert_eq!(a, b, "same seed, same result");
    let mean = a.iter().map(|v| f64::from(*v)).sum::<f64>() / a.len() as f64;
    assert!((mean - 0.3).abs() < 0.02, "mean {mean}");
    assert!(a.iter().all(|v| *v == 0.0 || *v == 1.0));
    let mut c = vec![0f32; x.len()];
    f.quantizer(Rounding::Stochastic { seed: 8 })
        .fake_quantize(&x, 1.0, &mut c);
    assert_ne!(a, c, "different seed, different draws");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, rng_seed: RngSeed::Fixed(7), ..ProptestConfig::default() })]

    /// The parser never panics; whatever it accepts prints canonically and parses back.
    #[test]
    fn parser_total(s in "(int|uint|e|fp8-|mx|fp)[0-9]{0,3}(m[0-9]{0,3})?(n)?(:(bias=-?[0-9]{1,4}|nosub|nozero|unsigned|ieee|fn|fnuz|none|sat|nonsat|narrow|block=[0-9]{1,3}|x)){0,4}") {
        if let Ok(f) = s.parse::<Format>() {
            let t = f.to_string();
            prop_assert_eq!(t.parse::<Format>().ok(), Some(f), "{} -> {}", s, t);
        }
    }
}
