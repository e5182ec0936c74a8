//! Clip selection: min/max, percentile, MSE-optimal (measured with the target format) and
//! KL/entropy (TensorRT-style, generalised to non-uniform grids).

use super::histogram::Histogram;
use super::observer::{Signedness, TensorObserver};
use super::scale::{scale_from_clip, ScaleRounding};
use super::{CalibError, Quantizer};

/// Default percentile of `|x|` (the seed paper's integer activation setting).
pub const DEFAULT_PERCENTILE: f64 = 99.999;

/// Options of the MSE search (each key optional in a recipe; unset keys take the defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MseOptions {
    /// Linear candidate clips `absmax · k / candidates` for `k = 1..=candidates`, searched
    /// together with 49 geometric ones from `absmax` down to `absmax / 4096`.
    pub candidates: usize,
    /// Error exponent `p` in `Σ |x − x̂|^p` (2 = MSE; PTQ4DM uses 2.4).
    pub norm: f64,
}

impl Default for MseOptions {
    fn default() -> Self {
        Self {
            candidates: 200,
            norm: 2.0,
        }
    }
}

/// Options of the KL search.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KlOptions {
    /// Largest number of candidate thresholds evaluated (evenly strided over the bins).
    pub max_candidates: usize,
}

impl Default for KlOptions {
    fn default() -> Self {
        Self {
            max_candidates: 256,
        }
    }
}

/// How an activation's clipping value is chosen.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum ClipMethod {
    /// Largest observed magnitude.
    MinMax,
    /// The given percentile (0 < p ≤ 100) of `|x|`, interpolated linearly within a bin.
    Percentile { percentile: f64 },
    /// Clip minimising `Σ count·|c − Q(c)|^p` over the histogram bin centres `c`, where `Q` is the
    /// target format at the candidate's scale (so minifloat grids are measured as they are).
    Mse(MseOptions),
    /// Threshold minimising KL(P‖Q) between the clipped histogram and its quantized version.
    Kl(KlOptions),
}

impl Default for ClipMethod {
    fn default() -> Self {
        ClipMethod::Percentile {
            percentile: DEFAULT_PERCENTILE,
        }
    }
}

impl ClipMethod {
    /// Whether the observer needs a histogram for this method.
    pub fn needs_histogram(&self) -> bool {
        !matches!(self, ClipMethod::MinMax)
    }

    /// Short name as accepted by `FromStr`.
    pub fn name(&self) -> String {
        match self {
            ClipMethod::MinMax => "minmax".into(),
            ClipMethod::Percentile { percentile } => format!("percentile:{percentile}"),
            ClipMethod::Mse(o) if o.norm == 2.0 => "mse".into(),
            ClipMethod::Mse(o) => format!("mse:{}", o.norm),
            ClipMethod::Kl(_) => "kl".into(),
        }
    }
}

impl std::str::FromStr for ClipMethod {
    type Err = CalibError;
    /// Accepts `minmax` (or `max`), `percentile[:P]`, `mse[:P-NORM]`, `kl` (or `entropy`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| CalibError::InvalidOption {
            option: format!("calibration method '{s}'"),
            reason,
        };
        let (head, arg) = match s.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (s, None),
        };
        let num = |a: &str| {
            a.parse::<f64>()
                .map_err(|_| bad(format!("'{a}' is not a number")))
        };
        match (head, arg) {
            ("minmax" | "max", None) => Ok(ClipMethod::MinMax),
            ("percentile", a) => {
                let percentile = a.map_or(Ok(DEFAULT_PERCENTILE), num)?;
                if !(percentile > 0.0 && percentile <= 100.0) {
                    return Err(bad(format!("percentile {percentile} not in (0, 100]")));
                }
                Ok(ClipMethod::Percentile { percentile })
            }
            ("mse", a) => {
                let norm = a.map_or(Ok(2.0), num)?;
                if !(norm > 0.0 && norm.is_finite()) {
                    return Err(bad(format!("error exponent {norm} must be positive")));
                }
                Ok(ClipMethod::Mse(MseOptions {
                    norm,
                    ..MseOptions::default()
                }))
            }
            ("kl" | "entropy", None) => Ok(ClipMethod::Kl(KlOptions::default())),
            _ => Err(bad(
                "expected minmax, percentile[:P], mse[:NORM] or kl".to_string()
            )),
        }
    }
}

/// Result of calibrating one activation tensor.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ActivationCalibration {
    /// Chosen clipping magnitude.
    pub clip: f64,
    /// `scale_from_clip(clip, format max, rounding)`.
    pub scale: f32,
    /// Largest observed magnitude.
    pub absmax: f32,
    /// Sign record of the observed data.
    pub signedness: Signedness,
}

/// Calibrates one observed tensor: chooses the clip with `method`, measured with `format` where
/// the method uses the format, and converts it into a scale.
pub fn calibrate_activation(
    obs: &TensorObserver,
    method: &ClipMethod,
    format: &dyn Quantizer,
    rounding: ScaleRounding,
) -> Result<ActivationCalibration, CalibError> {
    let name = obs.name();
    if obs.stats().count == 0 {
        return Err(CalibError::Empty {
            tensor: name.into(),
        });
    }
    check_format(name, format)?;
    let clip = match method {
        ClipMethod::MinMax => f64::from(obs.stats().absmax()),
        _ => {
            let h = obs.histogram().ok_or_else(|| CalibError::NoHistogram {
                tensor: name.into(),
                method: method.name(),
            })?;
            clip_from_histogram(name, h, method, format, rounding)?
        }
    };
    Ok(ActivationCalibration {
        clip,
        scale: scale_from_clip(clip, format.max_value(), rounding),
        absmax: obs.stats().absmax(),
        signedness: obs.signedness(),
    })
}

fn check_format(name: &str, format: &dyn Quantizer) -> Result<(), CalibError> {
    let max = format.max_value();
    if max.is_finite() && max > 0.0 {
        Ok(())
    } else {
        Err(CalibError::BadFormat {
            tensor: name.into(),
            max,
        })
    }
}

/// The clip chosen by `method` from a histogram (`tensor` only names errors). Returns 0 for a
/// histogram of zeros only.
pub fn clip_from_histogram(
    tensor: &str,
    h: &Histogram,
    method: &ClipMethod,
    format: &dyn Quantizer,
    rounding: ScaleRounding,
) -> Result<f64, CalibError> {
    if h.total() == 0 {
        return Err(CalibError::Empty {
            tensor: tensor.into(),
        });
    }
    check_format(tensor, format)?;
    if format.block_scaled() && matches!(method, ClipMethod::Mse(_) | ClipMethod::Kl(_)) {
        return Err(CalibError::BlockScaled {
            tensor: tensor.into(),
            method: method.name(),
        });
    }
    if h.used_bins() == 0 {
        return Ok(0.0);
    }
    let bad = |option: &str, reason: String| CalibError::InvalidOption {
        option: format!("{option} (tensor '{tensor}')"),
        reason,
    };
    Ok(match method {
        ClipMethod::MinMax => f64::from(h.absmax()),
        ClipMethod::Percentile { percentile } => {
            if !(*percentile > 0.0 && *percentile <= 100.0) {
                return Err(bad("percentile", format!("{percentile} not in (0, 100]")));
            }
            percentile_clip(h, *percentile)
        }
        ClipMethod::Mse(o) => {
            if o.candidates == 0 || o.norm.is_nan() || o.norm <= 0.0 {
                return Err(bad(
                    "mse",
                    "candidates must be ≥ 1 and the norm positive".into(),
                ));
            }
            mse_clip(h, format, rounding, o)
        }
        ClipMethod::Kl(o) => {
            if o.max_candidates == 0 {
                return Err(bad("kl", "max_candidates must be ≥ 1".into()));
            }
            kl_clip(h, format, rounding, o)
        }
    })
}

fn percentile_clip(h: &Histogram, p: f64) -> f64 {
    let absmax = f64::from(h.absmax());
    let Some(w) = h.bin_width() else {
        return 0.0;
    };
    if p >= 100.0 {
        return absmax;
    }
    let target = p / 100.0 * h.total() as f64;
    let mut cum = h.zeros() as f64;
    if cum >= target {
        return 0.0;
    }
    for i in 0..h.used_bins() {
        let c = (h.positive()[i] + h.negative()[i]) as f64;
        if c > 0.0 && cum + c >= target {
            let v = (i as f64 + (target - cum) / c) * w;
            return v.min(absmax);
        }
        cum += c;
    }
    absmax
}

/// Bin centres up to the last used bin, as `f32` (exact: `(i + ½)·2^k`).
fn centres(h: &Histogram, used: usize) -> Vec<f32> {
    let w = h.bin_width().unwrap_or(0.0);
    (0..used).map(|i| ((i as f64 + 0.5) * w) as f32).collect()
}

/// Candidate clips of the MSE searches, largest first: the linear grid `absmax · k / n`
/// (`k = n..1`) merged with the geometric grid `absmax · 2^(−j/4)` (`j = 0..=48`, down to
/// `absmax / 4096`), which keeps resolution when a few outliers make the best clip a small
/// fraction of `absmax`.
pub(crate) fn mse_candidates(absmax: f64, n: usize) -> Vec<f64> {
    let mut c: Vec<f64> = (1..=n).map(|k| absmax * k as f64 / n as f64).collect();
    c.extend((0..=48).map(|j| absmax * 2f64.powf(-f64::from(j) / 4.0)));
    c.sort_by(|a, b| b.total_cmp(a));
    c.dedup();
    c
}

fn mse_clip(h: &Histogram, q: &dyn Quantizer, rounding: ScaleRounding, o: &MseOptions) -> f64 {
    let used = h.used_bins();
    let pos_c = centres(h, used);
    let neg_c: Vec<f32> = pos_c.iter().map(|c| -c).collect();
    let mut out = vec![0f32; used];
    let absmax = f64::from(h.absmax());
    let maxv = q.max_value();
    let err = |x: f32, y: f32| {
        let d = f64::from(x) - f64::from(y);
        if o.norm == 2.0 {
            d * d
        } else {
            d.abs().powf(o.norm)
        }
    };
    let mut best: Option<(f64, f64)> = None;
    let mut last_scale = None;
    // From the largest clip down: on exact ties the larger clip wins (less clipping of unseen
    // data).
    for clip in mse_candidates(absmax, o.candidates) {
        let scale = scale_from_clip(clip, maxv, rounding);
        if last_scale == Some(scale) {
            continue;
        }
        last_scale = Some(scale);
        let mut total = 0f64;
        for (counts, cs) in [(h.positive(), &pos_c), (h.negative(), &neg_c)] {
            q.fake_quantize(cs, scale, &mut out);
            for i in 0..used {
                if counts[i] > 0 {
                    total += counts[i] as f64 * err(cs[i], out[i]);
                }
            }
        }
        if best.is_none_or(|(e, _)| total < e) {
            best = Some((total, clip));
        }
    }
    best.map_or(absmax, |(_, c)| c)
}

fn kl_clip(h: &Histogram, q: &dyn Quantizer, rounding: ScaleRounding, o: &KlOptions) -> f64 {
    let used = h.used_bins();
    let Some(w) = h.bin_width() else {
        return 0.0;
    };
    let mut hist: Vec<f64> = (0..used)
        .map(|i| (h.positive()[i] + h.negative()[i]) as f64)
        .collect();
    hist[0] += h.zeros() as f64;
    let cs = centres(h, used);
    let mut out = vec![0f32; used];
    let maxv = q.max_value();
    // Thresholds at bin edges i·w for i in [start, used]; TensorRT starts at 128 of 2048 bins.
    let start = (h.bins() / 16).clamp(1, used);
    let span = used - start;
    let stride = span / o.max_candidates + 1;
    let mut cands: Vec<usize> = (start..=used).step_by(stride).collect();
    if cands.last() != Some(&used) {
        cands.push(used);
    }
    let mut best: Option<(f64, usize)> = None;
    for &i in &cands {
        let clip = i as f64 * w;
        let scale = scale_from_clip(clip, maxv, rounding);
        // Reference: the first i bins, outliers folded into the last one.
        let mut p: Vec<f64> = hist[..i].to_vec();
        p[i - 1] += hist[i..].iter().sum::<f64>();
        // Quantized: bins whose centres map to the same grid point form one level; each level's
        // mass is spread evenly over its non-empty bins.
        q.fake_quantize(&cs[..i], scale, &mut out[..i]);
        let mut qd = vec![0f64; i];
        let mut a = 0;
        while a < i {
            let mut b = a + 1;
            while b < i && out[b] == out[a] {
                b += 1;
            }
            let mass: f64 = hist[a..b].iter().sum();
            let nonzero = hist[a..b].iter().filter(|&&v| v > 0.0).count();
            if nonzero > 0 {
                for j in a..b {
                    if hist[j] > 0.0 {
                        qd[j] = mass / nonzero as f64;
                    }
                }
            }
            a = b;
        }
        let Some(kl) = kl_divergence(&p, &qd) else {
            continue;
        };
        if best.is_none_or(|(e, _)| kl < e) {
            best = Some((kl, i));
        }
    }
    best.map_or(f64::from(h.absmax()), |(_, i)| {
        (i as f64 * w).min(f64::from(h.absmax()))
    })
}

/// KL(P‖Q) of two unnormalised distributions; zero bins of Q under non-zero P are smoothed
/// with ε = 1e-4 taken evenly from Q's non-zero bins. `None` when smoothing is impossible.
fn kl_divergence(p: &[f64], q: &[f64]) -> Option<f64> {
    let ps: f64 = p.iter().sum();
    let qs: f64 = q.iter().sum();
    if ps <= 0.0 || qs <= 0.0 {
        return None;
    }
    const EPS: f64 = 1e-4;
    let zeros = q.iter().filter(|&&v| v == 0.0).count();
    let nonzeros = q.len() - zeros;
    let eps1 = EPS * zeros as f64 / nonzeros as f64;
    let mut kl = 0.0;
    for (&pi, &qi) in p.iter().zip(q) {
        if pi == 0.0 {
            continue;
        }
        let qn = if qi == 0.0 { EPS } else { qi / qs - eps1 };
        if qn <= 0.0 {
            return None;
        }
        let pn = pi / ps;
        kl += pn * (pn / qn).ln();
    }
    Some(kl)
}

#[cfg(test)]
mod tests {
    use super::super::testq::{MiniFloat, NarrowInt};
    use super::super::ObserverConfig;
    use super::*;

    /// Deterministic standard normal samples (Box–Muller over a 64-bit LCG).
    fn normal(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed;
        let mut u = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (a, b) = (u(), u());
                ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
            })
            .collect()
    }

    fn observe(name: &str, x: &[f32]) -> TensorObserver {
        let mut o = TensorObserver::new(name, ObserverConfig::default()).expect("cfg");
        for c in x.chunks(4096) {
            o.observe(c).expect("finite");
        }
        o
    }

    #[test]
    fn percentile_of_uniform_ramp() {
        // 0.001, 0.002, …, 10.000: the p-th percentile of |x| is ≈ p/10.
        let x: Vec<f32> = (1..=10_000).map(|i| i as f32 * 0.001).collect();
        let o = observe("ramp", &x);
        let h = o.histogram().expect("hist");
        let w = h.bin_width().expect("nonzero");
        for p in [50.0, 90.0, 99.0, 99.9] {
            let c = clip_from_histogram(
                "ramp",
                h,
                &ClipMethod::Percentile { percentile: p },
                &NarrowInt(8),
                ScaleRounding::Float,
            )
            .expect("ok");
            assert!((c - p / 10.0).abs() <= w, "p{p}: {c}");
        }
        let c100 = clip_from_histogram(
            "ramp",
            h,
            &ClipMethod::Percentile { percentile: 100.0 },
            &NarrowInt(8),
            ScaleRounding::Float,
        )
        .expect("ok");
        assert_eq!(c100, f64::from(10.0f32));
    }

    #[test]
    fn percentile_of_normal_matches_quantile() {
        let x = normal(1, 200_000);
        let o = observe("n", &x);
        // P(|Z| ≤ 2.5758) = 0.99, P(|Z| ≤ 1.6449) = 0.9.
        for (p, z) in [(99.0, 2.5758), (90.0, 1.6449)] {
            let cal = calibrate_activation(
                &o,
                &ClipMethod::Percentile { percentile: p },
                &NarrowInt(8),
                ScaleRounding::Float,
            )
            .expect("ok");
            assert!((cal.clip - z).abs() < 0.03, "p{p}: {}", cal.clip);
            assert!((f64::from(cal.scale) - cal.clip / 127.0).abs() < 1e-6);
        }
    }

    #[test]
    fn mse_int4_normal_matches_known_optimum() {
        // The MSE-optimal clip of a unit Gaussian on a 4-bit uniform grid is about 2.5σ (the
        // analytic clipping literature, e.g. ACIQ, Banner et al. 2019); this narrow 15-level
        // grid gives 2.47σ here. Also check against a brute-force search on the raw samples.
        let x = normal(2, 100_000);
        let o = observe("g", &x);
        let q = NarrowInt(4);
        let cal = calibrate_activation(
            &o,
            &ClipMethod::Mse(MseOptions::default()),
            &q,
            ScaleRounding::Float,
        )
        .expect("ok");
        let raw_mse = |clip: f64| {
            let s = (clip / 7.0) as f32;
            let mut out = vec![0f32; x.len()];
            q.fake_quantize(&x, s, &mut out);
            x.iter()
                .zip(&out)
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum::<f64>()
                / x.len() as f64
        };
        let brute = (100..400)
            .map(|k| f64::from(k) * 0.01)
            .min_by(|a, b| raw_mse(*a).total_cmp(&raw_mse(*b)))
            .expect("non-empty");
        assert!((2.3..2.8).contains(&cal.clip), "clip {}", cal.clip);
        assert!(
            raw_mse(cal.clip) <= raw_mse(brute) * 1.01,
            "{} vs brute {}",
            cal.clip,
            brute
        );
    }

    #[test]
    fn mse_finds_small_clips_next_to_a_huge_outlier() {
        // One outlier 10^4 among unit Gaussians with the L1 objective (`mse:1`): the best 4-bit
        // clip is a few σ, far below the linear grid's smallest candidate (absmax / 200 = 50);
        // the geometric grid reaches it. (Under L2 the outlier's squared error dominates and
        // the maximum is optimal.) 2^16 bins resolve the Gaussian at this range.
        let mut x = normal(6, 50_000);
        x.push(10_000.0);
        let mut o = TensorObserver::new(
            "o",
            ObserverConfig {
                histogram_bins: Some(1 << 16),
            },
        )
        .expect("cfg");
        o.observe(&x).expect("finite");
        let l1 = MseOptions {
            norm: 1.0,
            ..MseOptions::default()
        };
        let cal = calibrate_activation(
            &o,
            &ClipMethod::Mse(l1),
            &NarrowInt(4),
            ScaleRounding::Float,
        )
        .expect("ok");
        assert!(cal.clip > 1.0 && cal.clip < 10.0, "{}", cal.clip);
        let c = mse_candidates(1.0, 4);
        assert_eq!(c[0], 1.0);
        assert!(c.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(*c.last().expect("non-empty"), 1.0 / 4096.0);
    }

    #[test]
    fn mse_is_format_aware() {
        // Heavy-tailed data: a minifloat's relative precision tolerates a larger range than an
        // integer grid of the same width, so its MSE clip must be larger.
        let x: Vec<f32> = normal(3, 50_000).iter().map(|v| v * v * v).collect();
        let o = observe("t", &x);
        let m = ClipMethod::Mse(MseOptions::default());
        let int4 = calibrate_activation(&o, &m, &NarrowInt(4), ScaleRounding::Float).expect("ok");
        let e2m1 =
            calibrate_activation(&o, &m, &MiniFloat(2, 1), ScaleRounding::Float).expect("ok");
        assert!(e2m1.clip > int4.clip, "{} vs {}", e2m1.clip, int4.clip);
        assert!(int4.clip < f64::from(o.stats().absmax()) * 0.6);
    }

    #[test]
    fn mse_with_pow2_scales_returns_pow2() {
        let x = normal(4, 20_000);
        let o = observe("p", &x);
        let cal = calibrate_activation(
            &o,
            &ClipMethod::Mse(MseOptions::default()),
            &NarrowInt(8),
            ScaleRounding::Pow2Up,
        )
        .expect("ok");
        assert_eq!(cal.scale.log2().fract(), 0.0);
    }

    #[test]
    fn kl_clips_outliers_and_is_deterministic() {
        let mut x = normal(5, 100_000);
        x.extend([40.0f32, -35.0]);
        let o = observe("k", &x);
        let m = ClipMethod::Kl(KlOptions::default());
        let a = calibrate_activation(&o, &m, &NarrowInt(8), ScaleRounding::Float).expect("ok");
        let b = calibrate_activation(&o, &m, &NarrowInt(8), ScaleRounding::Float).expect("ok");
        assert_eq!(a, b);
        assert!(a.clip > 2.0 && a.clip < 20.0, "{}", a.clip);
        let mf = calibrate_activation(&o, &m, &MiniFloat(4, 3), ScaleRounding::Float).expect("ok");
        assert!(mf.clip > 2.0, "{}", mf.clip);
    }

    #[test]
    fn minmax_needs_no_histogram_and_zero_tensor_gives_unit_scale() {
        let mut o = TensorObserver::new(
            "z",
            ObserverConfig {
                histogram_bins: None,
            },
        )
        .expect("cfg");
        o.observe(&[0.0; 10]).expect("finite");
        let cal =
            calibrate_activation(&o, &ClipMethod::MinMax, &NarrowInt(8), ScaleRounding::Float)
                .expect("ok");
        assert_eq!(cal.clip, 0.0);
        assert_eq!(cal.scale, 1.0);
        let e = calibrate_activation(
            &o,
            &ClipMethod::default(),
            &NarrowInt(8),
            ScaleRounding::Float,
        )
        .expect_err("no histogram");
        assert!(e.to_string().contains("'z'"));
        let empty = TensorObserver::new("e", ObserverConfig::default()).expect("cfg");
        assert!(matches!(
            calibrate_activation(
                &empty,
                &ClipMethod::MinMax,
                &NarrowInt(8),
                ScaleRounding::Float
            ),
            Err(CalibError::Empty { .. })
        ));
    }

    #[test]
    fn parse_methods() {
        assert_eq!("minmax".parse::<ClipMethod>(), Ok(ClipMethod::MinMax));
        assert_eq!(
            "percentile".parse::<ClipMethod>(),
            Ok(ClipMethod::Percentile {
                percentile: DEFAULT_PERCENTILE
            })
        );
        assert_eq!(
            "percentile:99.9".parse::<ClipMethod>(),
            Ok(ClipMethod::Percentile { percentile: 99.9 })
        );
        assert!("percentile:101".parse::<ClipMethod>().is_err());
        assert!(matches!("mse:2.4".parse::<ClipMethod>(), Ok(ClipMethod::Mse(o)) if o.norm == 2.4));
        assert!(matches!("kl".parse::<ClipMethod>(), Ok(ClipMethod::Kl(_))));
        assert!("foo".parse::<ClipMethod>().is_err());
        for m in ["minmax", "percentile:99.99", "mse", "mse:2.4", "kl"] {
            let p: ClipMethod = m.parse().expect("valid");
            assert_eq!(p.name(), m);
        }
    }
}

#[cfg(test)]
mod format_tests {
    //! The same searches with the real `quant_formats` formats.
    use super::super::testq::{MiniFloat, NarrowInt};
    use super::super::{FormatQuantizer, ObserverConfig};
    use super::*;
    use quant_formats::{Format, Rounding};

    fn data() -> Vec<f32> {
        // Laplace-like heavy tail from a deterministic sequence.
        (1..20_000)
            .map(|i| {
                let u = (i as f64 * 0.618_033_988_75).fract();
                let v = -(1.0 - u).ln() * if i % 2 == 0 { 1.0 } else { -1.0 };
                v as f32
            })
            .collect()
    }

    fn obs() -> TensorObserver {
        let mut o = TensorObserver::new("act", ObserverConfig::default()).expect("cfg");
        for c in data().chunks(1000) {
            o.observe(c).expect("finite");
        }
        o
    }

    #[test]
    fn real_formats_agree_with_reference_quantizers() {
        let o = obs();
        let m = ClipMethod::Mse(MseOptions::default());
        let pairs: [(&str, &dyn Quantizer); 3] = [
            ("e2m1", &MiniFloat(2, 1)),
            ("e4m3", &MiniFloat(4, 3)),
            ("int4:narrow", &NarrowInt(4)),
        ];
        for (name, reference) in pairs {
            let f: Format = name.parse().expect("format");
            assert_eq!(Quantizer::max_value(&f), reference.max_value(), "{name}");
            for r in [ScaleRounding::Float, ScaleRounding::Pow2Up] {
                let a = calibrate_activation(&o, &m, &f, r).expect("real");
                let b = calibrate_activation(&o, &m, reference, r).expect("reference");
                assert_eq!(a, b, "{name}");
            }
        }
    }

    #[test]
    fn histogram_mse_is_near_brute_force_on_raw_samples() {
        // The histogram search (bin centres weighted by counts) must pick a clip whose true
        // error on the raw samples is within 2 % of the best of a fine brute-force scan.
        let x = data();
        let o = obs();
        let absmax = f64::from(o.stats().absmax());
        for name in ["e2m1", "e3m2", "int4", "fp8-e4m3fn"] {
            let f: Format = name.parse().expect("format");
            let raw = |clip: f64| {
                let mut out = vec![0f32; x.len()];
                Quantizer::fake_quantize(
                    &f,
                    &x,
                    (clip / Quantizer::max_value(&f)) as f32,
                    &mut out,
                );
                x.iter()
                    .zip(&out)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
            };
            let best = (1..=400)
                .map(|k| raw(absmax * f64::from(k) / 400.0))
                .fold(f64::INFINITY, f64::min);
            let c = calibrate_activation(
                &o,
                &ClipMethod::Mse(MseOptions::default()),
                &f,
                ScaleRounding::Float,
            )
            .expect("ok");
            assert!(
                raw(c.clip) <= best * 1.02,
                "{name}: {} vs {best}",
                raw(c.clip)
            );
        }
    }

    #[test]
    fn every_method_runs_on_named_formats() {
        let o = obs();
        let absmax = f64::from(o.stats().absmax());
        for name in [
            "int8",
            "uint8",
            "int3",
            "fp8-e4m3fn",
            "fp8-e5m2",
            "fp4-e2m1",
            "e3m2",
        ] {
            let f: Format = name.parse().expect("format");
            for m in ["minmax", "percentile", "mse", "mse:2.4", "kl"] {
                let method: ClipMethod = m.parse().expect("method");
                let q = FormatQuantizer::new(f, Rounding::HalfEven);
                let c = calibrate_activation(&o, &method, &q, ScaleRounding::Float)
                    .expect("calibrates");
                assert!(c.clip > 0.0 && c.clip <= absmax, "{name} {m}: {}", c.clip);
                assert!(c.scale > 0.0);
            }
        }
    }

    #[test]
    fn mx_formats_refuse_histogram_searches() {
        let o = obs();
        let f: Format = "mxfp4".parse().expect("format");
        let e = calibrate_activation(
            &o,
            &ClipMethod::Mse(MseOptions::default()),
            &f,
            ScaleRounding::Float,
        )
        .expect_err("mx");
        assert!(matches!(e, CalibError::BlockScaled { .. }));
        assert!(calibrate_activation(&o, &ClipMethod::MinMax, &f, ScaleRounding::Float).is_ok());
    }
}
