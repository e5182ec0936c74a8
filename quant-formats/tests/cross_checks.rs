//! Cross-checks with known facts: integer/minifloat grid identities, the maxima of the OCP and
//! generic formats, fp16/bf16 against the `half` crate, parsing/printing round trips, the
//! per-channel, per-block and MX tensor paths against element-wise computation.

mod common;
use common::representative;
use quant_formats::{FloatFormat, Format, FormatError, IntFormat, Rounding};

fn p(s: &str) -> Format {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn e1m_b2_bias0_is_the_narrow_int_grid() {
    for b in 3..=12u8 {
        let m = b - 2;
        let mut f = FloatFormat::generic(1, m);
        f.bias = 0;
        let int = Format::Int(IntFormat {
            bits: b,
            signed: true,
            narrow: true,
        })
        .grid();
        // Bias 0 gives the integer grid scaled by 2^(1-M) ...
        let g: Vec<f64> = Format::Float(f)
            .grid()
            .iter()
            .map(|v| v * 2f64.powi(i32::from(m) - 1))
            .collect();
        assert_eq!(g, int, "E1M{m} bias 0");
        // ... and bias 1-M gives it exactly.
        f.bias = 1 - i32::from(m);
        assert_eq!(Format::Float(f).grid(), int, "E1M{m} bias {}", f.bias);
    }
}

#[test]
fn small_grids_and_maxima() {
    let pos = |f: Format| {
        f.grid()
            .into_iter()
            .filter(|v| *v >= 0.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pos(p("e2m1:bias=1")),
        vec![0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    );
    assert_eq!(
        pos(p("e3m0:bias=3")),
        vec![0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    );
    assert_eq!(p("fp8-e4m3fn").max_value(), 448.0);
    assert_eq!(p("fp8-e5m2").max_value(), 57344.0);
    assert_eq!(p("e4m3").max_value(), 480.0);
    assert_eq!(p("fp8-e4m3fnuz").max_value(), 240.0);
    assert_eq!(p("fp8-e5m2fnuz").max_value(), 57344.0);
    assert_eq!(p("fp8-e4m3").max_value(), 240.0);
    assert_eq!(p("fp8-e3m4").max_value(), 15.5);
    assert_eq!(p("e8m0").max_value(), 2f64.powi(127));
    assert_eq!(p("e8m0").grid()[0], 2f64.powi(-127));
    assert_eq!(p("fp16").max_value(), 65504.0);
    for (s, max) in [
        ("e2m1", 6.0),
        ("e2m2", 7.0),
        ("e3m1", 24.0),
        ("e2m3", 7.5),
        ("e3m2", 28.0),
        ("e4m1", 384.0),
        ("e3m3", 30.0),
        ("e4m2", 448.0),
        ("e5m1", 98304.0),
        ("e3m4", 31.0),
        ("e4m3", 480.0),
        ("e5m2", 114688.0),
    ] {
        assert_eq!(p(s).max_value(), max, "{s}");
    }
    assert_eq!(p("mxint8").max_value(), 127.0 / 64.0);
    assert_eq!(p("int8").code_count(), 256);
    assert!((p("int8").dynamic_range_binades() - 127f64.log2()).abs() < 1e-12);
}

#[test]
fn fp16_and_bf16_match_half() {
    let h = p("fp16:nonsat");
    let b = p("bf16:nonsat");
    for c in 0..=u16::MAX {
        let hv = half::f16::from_bits(c).to_f32();
        let bv = half::bf16::from_bits(c).to_f32();
        assert!(common::same(h.decode(u32::from(c)), hv), "fp16 {c:#x}");
        assert!(common::same(b.decode(u32::from(c)), bv), "bf16 {c:#x}");
    }
    let mut s = 0x1234_5678_9abc_def0u64;
    for _ in 0..200_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let x = f32::from_bits(s as u32);
        let want_h = half::f16::from_f32(x).to_f32();
        let want_b = half::bf16::from_f32(x).to_f32();
        assert!(common::same(h.quantize_value(x), want_h), "fp16 Q({x:e})");
        assert!(common::same(b.quantize_value(x), want_b), "bf16 Q({x:e})");
        if !x.is_nan() {
            assert_eq!(
                h.encode(x),
                u32::from(half::f16::from_f32(x).to_bits()),
                "fp16 enc {x:e}"
            );
        }
    }
}

#[test]
fn every_format_prints_and_parses_back() {
    let mut n = 0;
    for f in representative(16)
        .into_iter()
        .chain(Format::presets().into_iter().map(|p| p.1))
    {
        let s = f.to_string();
        let back: Format = s
            .parse()
            .unwrap_or_else(|e| panic!("{f:?} printed as {s}: {e}"));
        assert_eq!(back, f, "{s}");
        n += 1;
    }
    assert!(n > 1000);
    for (alias, canon) in [
        ("int4:narrow", "int4n"),
        ("E4M3:FN", "fp8-e4m3fn"),
        ("float8_e5m2", "fp8-e5m2"),
        ("e2m1", "fp4-e2m1"),
        ("e4m3:fnuz:bias=8", "fp8-e4m3fnuz"),
        ("mxfp8-e4m3", "mxfp8"),
        ("mxfp4:block=16", "mxfp4:block=16"),
        ("fp8-e4m3fn:nonsat", "fp8-e4m3fn:nonsat"),
        ("e3m2:bias=2", "e3m2:bias=2"),
        ("e2m1:unsigned", "e2m1:unsigned"),
    ] {
        assert_eq!(p(alias).to_string(), canon);
    }
    for bad in [
        "int17",
        "int1",
        "e9m1",
        "e4m11",
        "e0m3:nosub",
        "e1m0:fn",
        "e2m1:nonsat",
        "e4m3:fnuz:unsigned",
        "e3m0:nosub",
        "e4m3:nozero",
        "fp9",
        "int4:bias=3",
        "e4m3:bias",
        "e4m3:bias=x",
        "e8m7:bias=-10",
        "mxfp4:block=0",
        "",
    ] {
        let e = bad.parse::<Format>().expect_err(bad);
        assert!(matches!(e, FormatError::Parse { .. }), "{bad}: {e}");
        assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
    }
    assert_eq!(
        "stochastic=5".parse::<Rounding>(),
        Ok(Rounding::Stochastic { seed: 5 })
    );
    assert_eq!(
        "HALF_UP".parse::<Rounding>(),
        Ok(Rounding::HalfAwayFromZero)
    );
    assert!("sideways".parse::<Rounding>().is_err());
}

#[test]
fn per_channel_and_per_block_match_elementwise() {
    let f = p("fp8-e4m3fn");
    let shape = [3usize, 4, 5];
    let x: Vec<f32> = (0..60)
        .map(|i| ((i * 37 % 61) as f32 - 30.0) * 0.731)
        .collect();
    let mut y = vec![0f32; 60];
    for axis in 0..3 {
        let scales: Vec<f32> = (0..shape[axis]).map(|c| 0.01 + c as f32 * 0.37).collect();
        f.fake_quantize_per_channel(&x, &shape, axis, &scales, &mut y)
            .expect("per-channel");
        for (i, (xi, yi)) in x.iter().zip(&y).enumerate() {
            let idx = [i / 20, (i / 5) % 4, i % 5];
            let s = scales[idx[axis]];
            assert_eq!(*yi, f.quantize_value(xi / s) * s, "axis {axis} element {i}");
        }
        // Blocks of 2 along the axis.
        let nb = shape[axis].div_ceil(2);
        let mut sshape = shape;
        sshape[axis] = nb;
        let ns: usize = sshape.iter().product();
        let bs: Vec<f32> = (0..ns).map(|j| 0.05 + j as f32 * 0.11).collect();
        f.fake_quantize_per_block(&x, &shape, axis, 2, &bs, &mut y)
            .expect("per-block");
        for (i, (xi, yi)) in x.iter().zip(&y).enumerate() {
            let mut idx = [i / 20, (i / 5) % 4, i % 5];
            idx[axis] /= 2;
            let j = (idx[0] * sshape[1] + idx[1]) * sshape[2] + idx[2];
            assert_eq!(
                *yi,
                f.quantize_value(xi / bs[j]) * bs[j],
                "block axis {axis} element {i}"
            );
        }
    }
    assert!(matches!(
        f.fake_quantize_per_channel(&x, &shape, 3, &[1.0], &mut y),
        Err(FormatError::Shape(_))
    ));
    assert!(matches!(
        f.fake_quantize_per_channel(&x, &shape, 1, &[1.0; 3], &mut y),
        Err(FormatError::Shape(_))
    ));
    assert!(matches!(
        f.fake_quantize_per_channel(&x, &[2, 4, 5], 1, &[1.0; 4], &mut y),
        Err(FormatError::Shape(_))
    ));
    assert!(matches!(
        f.fake_quantize_per_block(&x, &shape, 1, 3, &[1.0; 29], &mut y),
        Err(FormatError::Shape(_))
    ));
}

#[test]
fn mx_blocks_follow_the_ocp_rule() {
    let f = p("mxfp4");
    // One block of 32: amax 5 -> floor(log2 5) = 2, emax 2 -> X = 1.
    let mut x: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) * 0.3125).collect();
    let mut y = vec![0f32; 32];
    f.fake_quantize_mx(&x, &[32], 0, &mut y).expect("mx");
    let e2m1 = p("fp4-e2m1");
    for (a, b) in x.iter().zip(&y) {
        assert_eq!(*b, e2m1.quantize_value(*a), "x = {a}");
    }
    // Scaling the block by 2^k scales the result by 2^k exactly.
    let x8: Vec<f32> = x.iter().map(|v| v * 256.0).collect();
    let mut y8 = vec![0f32; 32];
    f.fake_quantize_mx(&x8, &[32], 0, &mut y8).expect("mx");
    assert!(y.iter().zip(&y8).all(|(a, b)| a * 256.0 == *b));
    // amax 7.5 lands in [2^2, 2^3): X = 1 and 7.5 saturates to 6 (the spec's clipping).
    x[0] = 7.5;
    f.fake_quantize_mx(&x, &[32], 0, &mut y).expect("mx");
    assert_eq!(y[0], 6.0);
    // A NaN poisons its block only; blocks along axis 0 of a [64, 2] tensor are strided.
    let mut t: Vec<f32> = (0..128).map(|i| i as f32 * 0.01).collect();
    t[2] = f32::NAN; // row 1, column 0 -> block (0, col 0)
    let mut out = vec![0f32; 128];
    let mut exps = Vec::new();
    f.quantizer(Rounding::HalfEven)
        .fake_quantize_mx(&t, &[64, 2], 0, &mut out, Some(&mut exps))
        .expect("mx");
    assert_eq!(exps.len(), 4);
    assert_eq!(exps[0], i32::MIN);
    assert!(out
        .iter()
        .enumerate()
        .all(|(i, v)| v.is_nan() == (i < 64 && i % 2 == 0)));
    // Column 1, rows 0..32: amax 0.63 -> floor(log2) = -1 -> e = -3.
    assert_eq!(exps[1], -3);
    // MX int8: elements are k/64 of the block scale.
    let mi = p("mxint8");
    let v: Vec<f32> = (0..32).map(|i| i as f32 / 10.0).collect();
    let mut w = vec![0f32; 32];
    mi.fake_quantize_mx(&v, &[32], 0, &mut w).expect("mx");
    // amax 3.1 -> e = 1, X = 2: elements quantized to multiples of 2/64.
    for (a, b) in v.iter().zip(&w) {
        assert_eq!(
            *b,
            ((a / 2.0) * 64.0).round_ties_even().min(127.0) / 64.0 * 2.0
        );
    }
    assert!(f.fake_quantize_mx(&x, &[31], 0, &mut y).is_err());
    assert!(p("int8").fake_quantize_mx(&x, &[32], 0, &mut y).is_err());
}
