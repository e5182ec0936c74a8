//! LLM-FP4's per-layer format and clipping search (Liu et al. 2023), numeric core. For one layer
//! (per group `W_g [out_g, in_g]`, float input rows `X_g [n, in_g]`) and candidate formats for
//! weights and activations (every signed ExMy split of the bit budget for minifloats, the single
//! integer format for integers), 3 alternating rounds:
//! 1. weights: for every weight candidate format, each output channel's scale is searched on
//!    the grid (minifloat: exponent bias `b̃ = c · b̃_init`; integer: clip `c · max`;
//!    c ∈ [0.01, 1.2] in 100 steps, `b̃_init` from the channel max) minimising the channel's
//!    weight error weighted by the diagonal of the input second moment `E[x̂_j²]` (the per-channel
//!    part of the layer output MSE that does not couple input features); the format with the
//!    lowest layer output MSE wins;
//! 2. activation: for every activation candidate format, the per-tensor scale on the same grid
//!    minimising the exact layer output MSE (with the current quantized weights); best format
//!    wins.
//!
//! The starting point (max calibration at the first candidate format, or a given start) is kept
//! when no candidate beats it, so the result never has a higher output MSE than the start.
//!
//! A bias is applied as a scale of the format (`scale = 2^(b0 − b̃)` for the generic ExMy, see
//! [`super::exponent_shift`]); results are per-output-channel weight scales and one activation
//! scale, ready for the layer's quantizers.

use super::exponent_shift::bias_from_clip;
use super::PassError;
use ndarray::{Array2, ArrayView2};
use quant_formats::{FloatFormat, Format, IntFormat, Quantizer, Rounding};
use rayon::prelude::*;

const PASS: &str = "fp-search";
const STEPS: usize = 100;

fn grid(i: usize) -> f64 {
    0.01 + (1.2 - 0.01) * i as f64 / (STEPS - 1) as f64
}

/// Result of a layer search.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerSearch {
    /// Weight format.
    pub weight_format: Format,
    /// Activation format.
    pub act_format: Format,
    /// One weight scale per output channel (all groups, in order).
    pub weight_scales: Vec<f32>,
    /// Activation scale (per tensor).
    pub act_scale: f32,
    /// Layer output MSE at the result.
    pub mse: f64,
    /// Output MSE at the starting point (max calibration unless a start was given).
    pub mse_max_calibration: f64,
}

/// The search's quantizer of `fmt` (ties to even, as the layer's own quantizers).
fn quantizer(fmt: &Format) -> Quantizer {
    fmt.quantizer(Rounding::HalfEven)
}

/// Scale of `fmt` for a tensor/channel with max `m` at grid point `c` (c = 1: max calibration).
pub fn grid_scale(fmt: &Format, m: f32, c: f64) -> f32 {
    let fmax = fmt.max_value();
    if !(m > 0.0 && m.is_finite() && fmax > 0.0) {
        return 1.0;
    }
    match fmt {
        Format::Float(f) if f.exp_bits > 0 => {
            // b̃_init makes the channel max the format max; candidates scale that bias by c.
            let b0 = f64::from(f.bias);
            let binit = bias_from_clip(f.exp_bits, f.man_bits, f64::from(m))
                + (fmax.log2()
                    - (2.0 - 2f64.powi(-i32::from(f.man_bits))).log2()
                    - (2f64.powi(i32::from(f.exp_bits)) - 1.0 - b0))
                + (b0 - f64::from(FloatFormat::default_bias(f.exp_bits)));
            2f64.powf(b0 - c * binit) as f32
        }
        _ => (f64::from(m) * c / fmax) as f32,
    }
}

/// Every signed ExMy split (E ≥ 1, E + M = bits − 1) that is a valid generic format.
pub fn float_splits(bits: u32) -> Vec<Format> {
    (1..bits)
        .filter_map(|e| {
            let f = Format::Float(FloatFormat::generic(e as u8, (bits - 1 - e) as u8));
            f.validate().ok().map(|_| f)
        })
        .collect()
}

/// Starting point of a search: formats and scales (e.g. the round-to-nearest quantizers).
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub weight_format: Format,
    pub weight_scales: Vec<f32>,
    pub act_format: Format,
    pub act_scale: f32,
}

/// What to search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpace {
    /// Weight format candidates.
    pub weight_formats: Vec<Format>,
    /// Activation format candidates (ignored when the activation is fixed).
    pub act_formats: Vec<Format>,
    /// Keep this activation quantizer (the tensor is shared with an already searched layer).
    pub act_fixed: bool,
    /// Alternating rounds.
    pub rounds: usize,
}

struct Layer<'a> {
    w: &'a [Array2<f32>],
    x: &'a [Array2<f32>],
    y: Vec<Array2<f32>>,
    wmax: Vec<Vec<f32>>,
    amax: f32,
}

impl Layer<'_> {
    fn quant_w(&self, fmt: &Format, scales: &[f32]) -> Vec<Array2<f32>> {
        let q = quantizer(fmt);
        let mut off = 0;
        self.w
            .iter()
            .map(|w| {
                let mut out = Array2::zeros(w.dim());
                for (r, (src, mut dst)) in w.rows().into_iter().zip(out.rows_mut()).enumerate() {
                    let (src, dst) = (src.to_vec(), dst.as_slice_mut().expect("standard layout"));
                    q.fake_quantize(&src, scales[off + r], dst);
                }
                off += w.nrows();
                out
            })
            .collect()
    }
    fn quant_x(&self, fmt: &Format, s: f32) -> Vec<Array2<f32>> {
        let q = quantizer(fmt);
        self.x
            .iter()
            .map(|x| {
                let src = x.as_standard_layout();
                let mut out = Array2::zeros(x.dim());
                q.fake_quantize(
                    src.as_slice().expect("standard layout"),
                    s,
                    out.as_slice_mut().expect("standard layout"),
                );
                out
            })
            .collect()
    }
    fn mse(&self, xq: &[Array2<f32>], wq: &[Array2<f32>]) -> f64 {
        let mut e = 0f64;
        let mut n = 0usize;
        for ((x, w), y) in xq.iter().zip(wq).zip(&self.y) {
            e += sq_err(x.view(), w, y);
            n += y.len();
        }
        e / n.max(1) as f64
    }
    /// [`Layer::mse`] with the inputs quantized by `q` at scale `s` into one scratch buffer
    /// (no quantized copy of the inputs is kept).
    fn act_mse(&self, q: &Quantizer, s: f32, wq: &[Array2<f32>]) -> f64 {
        let mut buf = Vec::new();
        let mut e = 0f64;
        let mut n = 0usize;
        for ((x, w), y) in self.x.iter().zip(wq).zip(&self.y) {
            let src = x.as_standard_layout();
            buf.resize(x.len(), 0.0);
            q.fake_quantize(src.as_slice().expect("standard layout"), s, &mut buf);
            let xq = ArrayView2::from_shape(x.dim(), &buf).expect("same shape");
            e += sq_err(xq, w, y);
            n += y.len();
        }
        e / n.max(1) as f64
    }
    /// Per-channel scale search for one weight format given quantized inputs `xq`; output
    /// channels are searched in parallel (each independently, so the result does not depend on
    /// the thread count).
    fn search_weights(&self, fmt: &Format, xq: &[Array2<f32>]) -> Vec<f32> {
        let q = quantizer(fmt);
        let mut scales = Vec::new();
        for ((w, x), wmax) in self.w.iter().zip(xq).zip(&self.wmax) {
            let n = x.nrows().max(1) as f32;
            let d: Vec<f32> = x
                .columns()
                .into_iter()
                .map(|c| c.iter().map(|v| v * v).sum::<f32>() / n)
                .collect();
            let rows: Vec<Vec<f32>> = w.rows().into_iter().map(|r| r.to_vec()).collect();
            let group: Vec<f32> = rows
                .par_iter()
                .zip(wmax.par_iter())
                .map(|(row, &m)| {
                    let mut buf = vec![0f32; row.len()];
                    let mut err = |s: f32| -> f64 {
                        q.fake_quantize(row, s, &mut buf);
                        row.iter()
                            .zip(&buf)
                            .zip(&d)
                            .map(|((&v, &r), &dj)| f64::from(dj) * f64::from(v - r).powi(2))
                            .sum()
                    };
                    let s1 = grid_scale(fmt, m, 1.0);
                    let mut best = (err(s1), s1);
                    for i in 0..STEPS {
                        let s = grid_scale(fmt, m, grid(i));
                        if !(s.is_finite() && s > 0.0) {
                            continue;
                        }
                        let e = err(s);
                        if e < best.0 {
                            best = (e, s);
                        }
                    }
                    best.1
                })
                .collect();
            scales.extend(group);
        }
        scales
    }
}

/// Output products at most this large (`in × out` of a group) are computed directly, not by a
/// matrix product (depthwise convolutions: 9 × 1 per group).
const DIRECT_MAX: usize = 64;

/// `Σ (x·wᵀ − y)²` of one group.
fn sq_err(x: ArrayView2<'_, f32>, w: &Array2<f32>, y: &Array2<f32>) -> f64 {
    if w.len() > DIRECT_MAX {
        let d = x.dot(&w.t()) - y;
        return d.iter().map(|v| f64::from(*v).powi(2)).sum();
    }
    let (x, w, y) = (
        x.as_standard_layout(),
        w.as_standard_layout(),
        y.as_standard_layout(),
    );
    let (Some(xs), Some(ws), Some(ys)) = (x.as_slice(), w.as_slice(), y.as_slice()) else {
        unreachable!("standard layout arrays are contiguous")
    };
    let k = w.ncols().max(1);
    let mut e = 0f64;
    for (xr, yr) in xs.chunks_exact(k).zip(ys.chunks_exact(w.nrows().max(1))) {
        for (wr, &yv) in ws.chunks_exact(k).zip(yr) {
            let v: f32 = xr.iter().zip(wr).map(|(a, b)| a * b).sum();
            e += f64::from(v - yv).powi(2);
        }
    }
    e
}

/// Searches one layer (see the module doc). `w[g]` and `x[g]` are the groups' weight matrices
/// and input rows.
pub fn search_layer(
    w: &[Array2<f32>],
    x: &[Array2<f32>],
    space: &SearchSpace,
    start: Option<Start>,
) -> Result<LayerSearch, PassError> {
    if w.is_empty()
        || w.len() != x.len()
        || w.iter()
            .zip(x)
            .any(|(w, x)| w.ncols() != x.ncols() || x.nrows() == 0)
        || space.weight_formats.is_empty()
        || (space.act_formats.is_empty() && start.is_none())
    {
        return Err(PassError::Shape {
            pass: PASS.into(),
            what: "layer".into(),
            detail: format!(
                "weights {:?} vs inputs {:?} ({} weight and {} activation candidates)",
                w.iter().map(|a| a.dim()).collect::<Vec<_>>(),
                x.iter().map(|a| a.dim()).collect::<Vec<_>>(),
                space.weight_formats.len(),
                space.act_formats.len()
            ),
        });
    }
    let l = Layer {
        w,
        x,
        y: w.iter().zip(x).map(|(w, x)| x.dot(&w.t())).collect(),
        wmax: w
            .iter()
            .map(|w| {
                w.rows()
                    .into_iter()
                    .map(|r| r.iter().fold(0f32, |a, v| a.max(v.abs())))
                    .collect()
            })
            .collect(),
        amax: x
            .iter()
            .flat_map(|x| x.iter())
            .fold(0f32, |a, v| a.max(v.abs())),
    };
    let start = start.unwrap_or_else(|| {
        let wf = space.weight_formats[0];
        let af = space.act_formats[0];
        Start {
            weight_format: wf,
            weight_scales: l
                .wmax
                .iter()
                .flatten()
                .map(|&m| grid_scale(&wf, m, 1.0))
                .collect(),
            act_format: af,
            act_scale: grid_scale(&af, l.amax, 1.0),
        }
    });
    let (mut wf, mut ws, mut af, mut a_s) = (
        start.weight_format,
        start.weight_scales.clone(),
        start.act_format,
        start.act_scale,
    );
    let total_out: usize = w.iter().map(|w| w.nrows()).sum();
    if ws.len() == 1 && total_out > 1 {
        ws = vec![ws[0]; total_out];
    }
    if ws.len() != total_out {
        return Err(PassError::Shape {
            pass: PASS.into(),
            what: "start weight scales".into(),
            detail: format!("{} scales for {total_out} output channels", ws.len()),
        });
    }
    let mut wq = l.quant_w(&wf, &ws);
    let mut xq = l.quant_x(&af, a_s);
    let mse0 = l.mse(&xq, &wq);
    let mut best = mse0;
    for _ in 0..space.rounds {
        for f in &space.weight_formats {
            let cand = l.search_weights(f, &xq);
            let cq = l.quant_w(f, &cand);
            let e = l.mse(&xq, &cq);
            if e < best {
                (best, wf, ws, wq) = (e, *f, cand, cq);
            }
        }
        if space.act_fixed {
            continue;
        }
        // every (format, scale) candidate is scored independently in parallel; the winner is
        // picked in candidate order, as a sequential scan would
        let cands: Vec<(Format, f32)> = space
            .act_formats
            .iter()
            .flat_map(|f| {
                (0..=STEPS).filter_map(|i| {
                    let c = if i == STEPS { 1.0 } else { grid(i) };
                    let s = grid_scale(f, l.amax, c);
                    (s.is_finite() && s > 0.0).then_some((*f, s))
                })
            })
            .collect();
        let errs: Vec<f64> = cands
            .par_iter()
            .map(|(f, s)| l.act_mse(&quantizer(f), *s, &wq))
            .collect();
        let mut win = None;
        for (k, &e) in errs.iter().enumerate() {
            if e < best {
                best = e;
                win = Some(k);
            }
        }
        if let Some(k) = win {
            let (f, s) = cands[k];
            (af, a_s, xq) = (f, s, l.quant_x(&f, s));
        }
    }
    Ok(LayerSearch {
        weight_format: wf,
        act_format: af,
        weight_scales: ws,
        act_scale: a_s,
        mse: best,
        mse_max_calibration: mse0,
    })
}

/// Minifloat search on one matrix layer: all signed ExMy splits of `w_bits` / `a_bits` (E ≥ 1),
/// biases searched, starting from max calibration at the split with the most exponent bits
/// below half the budget.
pub fn fp_search(
    w: ArrayView2<'_, f32>,
    x: ArrayView2<'_, f32>,
    w_bits: u8,
    a_bits: u8,
) -> Result<LayerSearch, PassError> {
    let mut wfs = float_splits(u32::from(w_bits));
    let mut afs = float_splits(u32::from(a_bits));
    if wfs.is_empty() || afs.is_empty() {
        return Err(PassError::InvalidOption {
            pass: PASS.into(),
            option: "bits".into(),
            reason: format!("no valid ExMy split for {w_bits}/{a_bits} bits"),
        });
    }
    // start at E2 when available (E2M1 for 4 bits)
    for v in [&mut wfs, &mut afs] {
        if v.len() > 1 {
            v.swap(0, 1);
        }
    }
    search_layer(
        &[w.to_owned()],
        &[x.to_owned()],
        &SearchSpace {
            weight_formats: wfs,
            act_formats: afs,
            act_fixed: false,
            rounds: 3,
        },
        None,
    )
}

/// Integer analogue: signed `w_bits`/`a_bits` integers, clip = c · max searched the same way.
pub fn int_clip_search(
    w: ArrayView2<'_, f32>,
    x: ArrayView2<'_, f32>,
    w_bits: u8,
    a_bits: u8,
) -> Result<LayerSearch, PassError> {
    let mk = |b: u8| {
        Format::Int(IntFormat {
            bits: b,
            signed: true,
            narrow: false,
        })
    };
    let (wf, af) = (mk(w_bits), mk(a_bits));
    for f in [wf, af] {
        f.validate().map_err(|e| PassError::InvalidOption {
            pass: PASS.into(),
            option: "bits".into(),
            reason: e.to_string(),
        })?;
    }
    search_layer(
        &[w.to_owned()],
        &[x.to_owned()],
        &SearchSpace {
            weight_formats: vec![wf],
            act_formats: vec![af],
            act_fixed: false,
            rounds: 3,
        },
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::exponent_shift::scale_for_bias;
    use crate::passes::gptq::tests::{inputs, randn};

    #[test]
    fn grid_scale_matches_the_bias_formula() {
        for (e, m) in [(2u8, 1u8), (1, 2), (4, 3)] {
            let f = Format::Float(FloatFormat::generic(e, m));
            for max in [0.3f32, 6.0, 100.0] {
                for c in [0.5, 1.0, 1.1] {
                    let want = scale_for_bias(e, c * bias_from_clip(e, m, f64::from(max)));
                    let got = grid_scale(&f, max, c);
                    assert!(
                        (want - got).abs() <= 1e-5 * want,
                        "{f} {max} {c}: {want} vs {got}"
                    );
                }
                // c = 1 maps the max onto the format max
                let s = grid_scale(&f, max, 1.0);
                assert!((s * f.max_value() as f32 - max).abs() <= 1e-4 * max);
            }
        }
    }

    #[test]
    fn search_beats_max_calibration() {
        let x = inputs(48, 16, 4);
        let w = Array2::from_shape_vec((6, 16), randn(96, 5)).expect("shape");
        let fp = fp_search(w.view(), x.view(), 4, 4).expect("fp");
        let int = int_clip_search(w.view(), x.view(), 4, 4).expect("int");
        eprintln!(
            "W4A4 layer MSE: fp max {:.5} searched {:.5} ({:?}/{:?}); int max {:.5} searched {:.5}",
            fp.mse_max_calibration,
            fp.mse,
            fp.weight_format,
            fp.act_format,
            int.mse_max_calibration,
            int.mse
        );
        assert!(fp.mse < fp.mse_max_calibration);
        assert!(int.mse < int.mse_max_calibration);
        // the alternating search is greedy: searching the splits can end in a different local
        // optimum than searching E2M1 alone; both must beat max calibration
        let e2m1 = Format::Float(FloatFormat::generic(2, 1));
        let only = search_layer(
            std::slice::from_ref(&w),
            std::slice::from_ref(&x),
            &SearchSpace {
                weight_formats: vec![e2m1],
                act_formats: vec![e2m1],
                act_fixed: false,
                rounds: 3,
            },
            None,
        )
        .expect("e2m1");
        eprintln!("E2M1 only: {:.5}", only.mse);
        assert!(only.mse < only.mse_max_calibration);
    }

    #[test]
    fn grouped_layer_with_fixed_activation() {
        // two groups (a grouped conv seen as matrices); the activation quantizer is kept
        let x: Vec<Array2<f32>> = (0..2).map(|g| inputs(64, 9, 10 + g)).collect();
        let w: Vec<Array2<f32>> = (0..2)
            .map(|g| Array2::from_shape_vec((3, 9), randn(27, 20 + g)).expect("shape"))
            .collect();
        let int4: Format = "int4".parse().expect("int4");
        let start = Start {
            weight_format: int4,
            weight_scales: vec![0.3; 6],
            act_format: int4,
            act_scale: 0.5,
        };
        let r = search_layer(
            &w,
            &x,
            &SearchSpace {
                weight_formats: vec![int4],
                act_formats: vec![int4],
                act_fixed: true,
                rounds: 2,
            },
            Some(start),
        )
        .expect("search");
        assert_eq!(r.act_scale, 0.5);
        assert_eq!(r.weight_scales.len(), 6);
        assert!(r.mse <= r.mse_max_calibration);
    }

    #[test]
    fn search_does_not_depend_on_the_thread_count() {
        // channels and candidates are scored in parallel; the result must be the sequential one
        let x: Vec<Array2<f32>> = vec![inputs(96, 24, 31), inputs(96, 9, 32)];
        let w: Vec<Array2<f32>> = vec![
            Array2::from_shape_vec((12, 24), randn(288, 33)).expect("shape"),
            Array2::from_shape_vec((1, 9), randn(9, 34)).expect("shape"),
        ];
        // one group per layer shape (a matrix layer and a depthwise-like 9-tap group)
        let space = SearchSpace {
            weight_formats: float_splits(4),
            act_formats: float_splits(6),
            act_fixed: false,
            rounds: 2,
        };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            pool.install(|| {
                (0..2)
                    .map(|g| {
                        search_layer(
                            std::slice::from_ref(&w[g]),
                            std::slice::from_ref(&x[g]),
                            &space,
                            None,
                        )
                        .expect("search")
                    })
                    .collect::<Vec<_>>()
            })
        };
        let one = run(1);
        assert!(one.iter().all(|r| r.mse < r.mse_max_calibration));
        assert_eq!(one, run(3));
    }
}
