//! Element-wise math that the standard library lacks: a precise single-precision Erf and an
//! exponential that vectorises (for Softmax and Sigmoid).

use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;

// Coefficients fitted (least squares on Chebyshev nodes, f64) against Python's `math.erf`;
// evaluated in f64 they are far below f32 resolution (errors noted per table).
// erf(x) / x as a polynomial in x² for |x| <= 1 (max relative error 9.3e-13).
const ERF_SMALL: [f64; 9] = [
    1.1283791670946985,
    -0.37612638889883154,
    0.11283791313670519,
    -0.02686613363468962,
    0.005223785032534343,
    -0.0008542670950282365,
    0.0001195694988341781,
    -1.3911712580052203e-05,
    1.0595288508967534e-06,
];
// erf(x) as a polynomial in (x − centre) on [1, 2], [2, 3], [3, 4] (max abs error 8.4e-12).
const ERF_MID: [[f64; 12]; 3] = [
    [
        0.9661051464673386,
        0.11893028920942568,
        -0.17839543152974102,
        0.1387520056843207,
        -0.04459896670436211,
        -0.014866337002753825,
        0.01932803607643279,
        -0.004742356525694793,
        -0.0023772745692154378,
        0.0017051831153017509,
        -3.94487898230708e-05,
        -0.0002396677286920661,
    ],
    [
        0.9995930479842084,
        0.002178284227140124,
        -0.0054457110522181575,
        0.008350089910781235,
        -0.008622352834580262,
        0.006117336600644782,
        -0.0027988701672882715,
        0.0005425705201279492,
        0.0002636064834436037,
        -0.00025136846075019166,
        6.832861519995104e-05,
        8.688746879268664e-06,
    ],
    [
        0.9999992569015661,
        5.399427014039411e-06,
        -1.8897976095057255e-05,
        4.2295483267967894e-05,
        -6.771862909095881e-05,
        8.21171293580246e-05,
        -7.7730392828693e-05,
        5.8181141483079156e-05,
        -3.436460373646745e-05,
        1.5408078629126893e-05,
        -4.276524361203141e-06,
        1.9783656772703688e-07,
    ],
];

fn horner(c: &[f64], x: f64) -> f64 {
    c.iter().rev().fold(0.0, |acc, &v| acc * x + v)
}

/// Error function `erf(x) = 2/√π ∫₀ˣ e^(−t²) dt`, correctly rounded to f32 except in rare
/// ties (evaluated in f64 with fitted polynomials). NaN maps to NaN; ±∞ to ±1.
pub fn erf_f32(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let a = (x as f64).abs();
    let r = if a <= 1.0 {
        a * horner(&ERF_SMALL, a * a)
    } else if a < 4.0 {
        let i = (a as usize - 1).min(2);
        horner(&ERF_MID[i], a - (i as f64 + 1.5))
    } else {
        // 1 − erf(4) ≈ 1.5e-8 is below half an f32 ulp of 1.
        1.0
    };
    (r as f32).copysign(x)
}

/// `e^x` for f32 in straight-line arithmetic (no libm call, so loops over it vectorise):
/// `x = k·ln2 + r` with |r| ≤ ln2/2 (Cody–Waite split of ln2), `e^r` by its degree-7 Taylor
/// polynomial, scaled by `2^k` through the exponent bits. Relative error below 2.5e-7 (about
/// 2 ulp) on [−87, 88]; arguments below −87.3 return `e^−87.3` ≈ 1.2e-38 instead of a subnormal
/// or zero, arguments above 88.7 return `e^88.7`; NaN gives NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a libm call.
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.7);
    let k = (x * LOG2E + SHIFT) - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    // k is in [−126, 128]: 2^k as exponent bits (k = 128 is split in two factors of 2^64).
    let ki = k as i32;
    let half = ki / 2;
    let s1 = f32::from_bits(((half + 127) as u32) << 23);
    let s2 = f32::from_bits(((ki - half + 127) as u32) << 23);
    p * s1 * s2
}

/// [`ERF_SMALL`] padded with zero leading coefficients to the length of the [`ERF_MID`] rows:
/// Horner's rule gives exactly the same f64 value (`0·t + 0 = 0` until the first real
/// coefficient).
const ERF_SMALL12: [f64; 12] = [
    ERF_SMALL[0],
    ERF_SMALL[1],
    ERF_SMALL[2],
    ERF_SMALL[3],
    ERF_SMALL[4],
    ERF_SMALL[5],
    ERF_SMALL[6],
    ERF_SMALL[7],
    ERF_SMALL[8],
    0.0,
    0.0,
    0.0,
];

/// [`erf_f32`] without branches (each element selects its piece's coefficients and result by
/// comparisons), so a loop over it vectorises. Performs the same f64 operations in the same
/// order on the same coefficients, hence returns bit-identical results.
#[inline(always)]
fn erf_branchless(x: f32) -> f32 {
    let a = (x as f64).abs();
    let small = a <= 1.0;
    let i = if a < 2.0 {
        0
    } else if a < 3.0 {
        1
    } else {
        2
    };
    let t = if small { a * a } else { a - (i as f64 + 1.5) };
    let mut acc = 0.0f64;
    for k in (0..12).rev() {
        let mid = if i == 0 {
            ERF_MID[0][k]
        } else if i == 1 {
            ERF_MID[1][k]
        } else {
            ERF_MID[2][k]
        };
        let c = if small { ERF_SMALL12[k] } else { mid };
        acc = acc * t + c;
    }
    let r = if small {
        a * acc
    } else if a < 4.0 {
        acc
    } else {
        1.0
    };
    let y = (r as f32).copysign(x);
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// Replaces every element of `v` by its [`erf_f32`] (bit-identical), vectorised with AVX2 when
/// the CPU has it.
pub fn erf_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected at run time.
        unsafe { erf_in_place_avx2(v) };
        return;
    }
    v.iter_mut().for_each(|x| *x = erf_branchless(*x));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn erf_in_place_avx2(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = erf_branchless(*x));
}

/// ONNX Erf applied element-wise (large arrays are split across rayon threads; each element
/// is computed independently, so the result does not depend on the thread count).
pub fn erf(x: &ArrayViewD<'_, f32>) -> ArrayD<f32> {
    let mut y = x.as_standard_layout().into_owned();
    match y.as_slice_mut() {
        Some(s) => s.par_chunks_mut(1 << 14).for_each(erf_in_place),
        None => y.mapv_inplace(erf_f32),
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_reference_values() {
        // Values of erf from standard tables (15 significant digits).
        let table = [
            (0.0f64, 0.0f64),
            (0.1, 0.112462916018285),
            (0.5, 0.520499877813047),
            (1.0, 0.842700792949715),
            (1.5, 0.966105146475311),
            (2.0, 0.995322265018953),
            (2.5, 0.999593047982555),
            (3.0, 0.999977909503001),
            (3.5, 0.999999256901628),
        ];
        for (x, e) in table {
            for s in [1.0, -1.0] {
                let got = erf_f32((s * x) as f32);
                assert_eq!(got, (s * e) as f32, "erf({})", s * x);
            }
        }
        assert_eq!(erf_f32(5.0), 1.0);
        let arr = ndarray::Array1::linspace(-5.0f32, 5.0, 40_001).into_dyn();
        let e = erf(&arr.view());
        assert!(e.iter().zip(arr.iter()).all(|(v, x)| *v == erf_f32(*x)));
        assert_eq!(erf_f32(f32::NEG_INFINITY), -1.0);
        assert!(erf_f32(f32::NAN).is_nan());
        // Tiny arguments: erf(x) ≈ 2x/√π.
        let t = 1e-20f32;
        assert_eq!(
            erf_f32(t),
            (t as f64 * std::f64::consts::FRAC_2_SQRT_PI) as f32
        );
    }

    #[test]
    fn vectorised_erf_is_bit_identical() {
        let mut xs: Vec<f32> = (-600_000..600_000).map(|i| i as f32 * 1e-5).collect();
        xs.extend([
            0.0,
            -0.0,
            1.0,
            -1.0,
            2.0,
            3.0,
            4.0,
            -4.0,
            f32::MIN_POSITIVE,
            1e-30,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1.0f32.next_up(),
            2.0f32.next_down(),
            4.0f32.next_down(),
        ]);
        let mut got = xs.clone();
        erf_in_place(&mut got);
        for (x, g) in xs.iter().zip(&got) {
            assert_eq!(erf_f32(*x).to_bits(), g.to_bits(), "erf({x})");
        }
    }

    #[test]
    fn fast_exp_is_within_three_ulp_of_libm() {
        let mut x = -87.0f32;
        let mut worst = 0f64;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_7;
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(-1000.0) < 1.3e-38);
    }

    #[test]
    fn erf_monotone_and_continuous_at_breakpoints() {
        let mut prev = erf_f32(0.0);
        let mut x = 0.0f32;
        while x < 4.5 {
            x += 1.0 / 4096.0;
            let v = erf_f32(x);
            assert!(v >= prev, "erf not monotone at {x}");
            prev = v;
        }
        for b in [1.0f32, 2.0, 3.0, 4.0] {
            let lo = erf_f32(b - 1e-6);
            let hi = erf_f32(b + 1e-6);
            assert!((hi - lo).abs() < 1e-6, "jump at {b}");
        }
    }
}
