//! Learned rounding (AdaRound, Nagel et al. 2020): each weight element chooses between its two
//! neighbouring grid points `lo ≤ w ≤ hi` (on the element's own grid: integer steps, or the
//! minifloat binade's step, with the per-output-channel scale applied), through a continuous
//! variable V and the rectified sigmoid `h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1)`, ζ = 1.1, γ = −0.1:
//! `W̃ = lo + h(V)·(hi − lo)`. The loss is the layer's output reconstruction error plus
//! `λ·Σ(1 − |2h − 1|^β)`, with β annealed linearly from 20 to 2 after a warm-up without the
//! regulariser; V starts where `h(V)` equals the fractional position of w, and Adam updates it.
//! At the end each element takes `hi` when `h(V) ≥ 0.5`.
//!
//! Normalisation: the two terms are made dimensionless so that one λ means the same on every
//! layer, whatever the magnitudes of its weights and inputs and its size. The reconstruction
//! term is divided by the round-to-nearest reconstruction loss `R₀` of the same layer (it starts
//! at 1), the regulariser is averaged over the elements (it lies in `[0, 1]`):
//! `loss = rec/R₀ + λ·mean(1 − |2h − 1|^β)`. Without this (the raw sum of the AdaRound paper),
//! λ = 0.01 outweighed the reconstruction gradient by orders of magnitude on layers with small
//! weights (W1's) and the learned rounding collapsed back to round-to-nearest.
//!
//! The reconstruction term `(1/n)·Σ_rows ‖(W̃ − W) x‖²` equals `tr(E H Eᵀ)` with `E = W̃ − W` and
//! `H = XᵀX / n`, so the core takes the layer's input second-moment matrix (the same statistic
//! GPTQ accumulates, see [`super::gptq::HessianAccumulator`]; any positive multiple works with a
//! matching λ) instead of the rows themselves: each step costs `O(out · in²)`.

use super::layer::{
    constant_f32, layer_of, set_constant_f32, weight_from_matrices, weight_matrices,
};
use super::{AdaRoundOptions, PassError};
use crate::ir::{Graph, NodeId};
use ndarray::{Array2, ArrayView2};
use quant_formats::{Format, Rounding};

const PASS: &str = "learned-rounding";
const ZETA: f32 = 1.1;
const GAMMA: f32 = -0.1;
const BETA_START: f32 = 20.0;
const BETA_END: f32 = 2.0;

/// The two neighbouring grid points of every element of `w [out, in]` for `format` with one
/// scale per output channel (`scales.len() == out`, or 1 for per-tensor): `(lo, hi)`, equal
/// when the element is on the grid or saturated.
pub fn grid_neighbours(
    w: ArrayView2<'_, f32>,
    format: &Format,
    scales: &[f32],
) -> Result<(Array2<f32>, Array2<f32>), PassError> {
    let (o, _) = w.dim();
    if !(scales.len() == o || scales.len() == 1) || scales.iter().any(|s| s.is_nan() || *s <= 0.0) {
        return Err(PassError::Shape {
            pass: PASS.into(),
            what: "scales".into(),
            detail: format!(
                "{} positive scales needed (or 1), got {:?}",
                o,
                scales.len()
            ),
        });
    }
    let fl = format.quantizer(Rounding::Floor);
    let ce = format.quantizer(Rounding::Ceil);
    let sc = |r: usize| {
        if scales.len() == 1 {
            scales[0]
        } else {
            scales[r]
        }
    };
    let lo = Array2::from_shape_fn(w.dim(), |(r, c)| {
        sc(r) * fl.quantize_one(w[[r, c]] / sc(r), 0)
    });
    let hi = Array2::from_shape_fn(w.dim(), |(r, c)| {
        sc(r) * ce.quantize_one(w[[r, c]] / sc(r), 0)
    });
    Ok((lo, hi))
}

fn rect_sigmoid(v: f32) -> f32 {
    let s = 1.0 / (1.0 + (-v).exp());
    (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)
}

/// Result of [`adaround`].
#[derive(Debug, Clone)]
pub struct AdaRoundResult {
    /// Hard-rounded weight `[out, in]` (every element is its `lo` or `hi`).
    pub weight: Array2<f32>,
    /// Reconstruction loss `tr(E H Eᵀ)` of round-to-nearest.
    pub loss_nearest: f64,
    /// Reconstruction loss of the learned rounding.
    pub loss_learned: f64,
    /// Elements rounded differently from round-to-nearest.
    pub flipped: usize,
}

/// `tr(E H Eᵀ)` for `E = a − w`.
pub fn recon_loss(a: &Array2<f32>, w: ArrayView2<'_, f32>, h: &Array2<f32>) -> f64 {
    let e = a - &w;
    let eh = e.dot(h);
    eh.iter().zip(e.iter()).map(|(x, y)| f64::from(x * y)).sum()
}

/// AdaRound core on one weight matrix: `w [out, in]`, its grid neighbours `lo`/`hi`, and
/// `h [in, in] = XᵀX / n` of the layer input rows.
pub fn adaround(
    w: ArrayView2<'_, f32>,
    h: &Array2<f64>,
    lo: &Array2<f32>,
    hi: &Array2<f32>,
    opts: &AdaRoundOptions,
) -> Result<AdaRoundResult, PassError> {
    let (o, k) = w.dim();
    if h.dim() != (k, k) || lo.dim() != (o, k) || hi.dim() != (o, k) {
        return Err(PassError::Shape {
            pass: PASS.into(),
            what: "AdaRound inputs".into(),
            detail: format!(
                "w {:?}, h {:?}, lo {:?}, hi {:?}",
                w.dim(),
                h.dim(),
                lo.dim(),
                hi.dim()
            ),
        });
    }
    let hf = h.mapv(|v| v as f32);
    let span = hi - lo;
    // initial V: h(V) = fractional position
    let mut v = Array2::from_shape_fn((o, k), |(r, c)| {
        let d = span[[r, c]];
        if d > 0.0 {
            let frac = ((w[[r, c]] - lo[[r, c]]) / d).clamp(1e-4, 1.0 - 1e-4);
            let s = (frac - GAMMA) / (ZETA - GAMMA);
            (s / (1.0 - s)).ln()
        } else {
            0.0
        }
    });
    let nearest = Array2::from_shape_fn((o, k), |(r, c)| {
        if w[[r, c]] - lo[[r, c]] >= hi[[r, c]] - w[[r, c]] {
            hi[[r, c]]
        } else {
            lo[[r, c]]
        }
    });
    // normalisers (see the module docs): R₀ = round-to-nearest reconstruction loss, N elements
    let r0 = recon_loss(&nearest, w, &hf);
    if !(r0.is_finite() && r0 > 0.0) {
        // nothing to reconstruct (all elements on the grid, or no input energy): keep nearest
        return Ok(AdaRoundResult {
            loss_nearest: r0,
            loss_learned: r0,
            weight: nearest,
            flipped: 0,
        });
    }
    let rec_scale = (1.0 / r0) as f32;
    let reg_scale = opts.lambda / (o * k) as f32;
    let mut m = Array2::<f32>::zeros((o, k));
    let mut s2 = Array2::<f32>::zeros((o, k));
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let iters = opts.iterations;
    let warm = (opts.warmup * iters as f32) as usize;
    let pb = if opts.progress {
        Some(crate::util::progress::bar(iters as u64, "adaround"))
    } else {
        None
    };
    for t in 0..iters {
        let hv = v.mapv(rect_sigmoid);
        let soft = lo + &(&hv * &span);
        let e = &soft - &w;
        // d (rec/R₀) / d soft = 2 E H / R₀
        let mut grad = e.dot(&hf) * (2.0 * rec_scale);
        if t >= warm && opts.lambda > 0.0 {
            let rel = (t - warm) as f32 / (iters - warm).max(1) as f32;
            let beta = BETA_END + (BETA_START - BETA_END) * (1.0 - rel).max(0.0);
            ndarray::Zip::from(&mut grad)
                .and(&hv)
                .and(&span)
                .for_each(|g, &hh, &d| {
                    let u = 2.0 * hh - 1.0;
                    let dreg = -reg_scale * beta * u.abs().powf(beta - 1.0) * u.signum() * 2.0;
                    // the regulariser is on h, not on the soft weight: divide out d soft/dh
                    if d > 0.0 {
                        *g += dreg / d;
                    }
                });
        }
        // chain to V: d soft / dV = span · h'(V)
        let t1 = (t + 1) as i32;
        let (c1, c2) = (1.0 - b1.powi(t1), 1.0 - b2.powi(t1));
        ndarray::Zip::from(&mut v)
            .and(&grad)
            .and(&span)
            .and(&mut m)
            .and(&mut s2)
            .for_each(|vv, &g, &d, mm, ss| {
                if d <= 0.0 {
                    return;
                }
                let sg = 1.0 / (1.0 + (-*vv).exp());
                let raw = sg * (ZETA - GAMMA) + GAMMA;
                let dh = if raw > 0.0 && raw < 1.0 {
                    sg * (1.0 - sg) * (ZETA - GAMMA)
                } else {
                    0.0
                };
                let gv = g * d * dh;
                *mm = b1 * *mm + (1.0 - b1) * gv;
                *ss = b2 * *ss + (1.0 - b2) * gv * gv;
                *vv -= opts.lr * (*mm / c1) / ((*ss / c2).sqrt() + eps);
            });
        if let Some(p) = &pb {
            p.inc(1);
        }
    }
    if let Some(p) = pb {
        p.finish_and_clear();
    }
    let weight = Array2::from_shape_fn((o, k), |(r, c)| {
        if rect_sigmoid(v[[r, c]]) >= 0.5 {
            hi[[r, c]]
        } else {
            lo[[r, c]]
        }
    });
    let flipped = weight
        .iter()
        .zip(nearest.iter())
        .filter(|(a, b)| a != b)
        .count();
    Ok(AdaRoundResult {
        loss_nearest: recon_loss(&nearest, w, &hf),
        loss_learned: recon_loss(&weight, w, &hf),
        weight,
        flipped,
    })
}

/// Runs AdaRound on layer `node` and writes the rounded weight back. `second_moments` holds one
/// `XᵀX / n` per group (a finished GPTQ Hessian divided by 2 works), `scales` one per output
/// channel of the whole layer (or 1 for per-tensor).
pub fn adaround_layer(
    g: &mut Graph,
    node: NodeId,
    second_moments: &[Array2<f64>],
    format: &Format,
    scales: &[f32],
    opts: &AdaRoundOptions,
) -> Result<Vec<AdaRoundResult>, PassError> {
    let label = g.node(node).label();
    let err = |reason: &str| PassError::Node {
        pass: PASS.into(),
        node: label.clone(),
        reason: reason.into(),
    };
    let layer =
        layer_of(g, node).ok_or_else(|| err("not a Conv/Gemm/MatMul with a constant weight"))?;
    let w = constant_f32(g, layer.weight).ok_or_else(|| err("weight is not constant"))?;
    let mats = weight_matrices(&layer, &w)?;
    if second_moments.len() != mats.len() {
        return Err(err(&format!(
            "{} second-moment matrices for {} groups",
            second_moments.len(),
            mats.len()
        )));
    }
    let mut out = Vec::new();
    let mut res = Vec::new();
    for (gi, (m, h)) in mats.iter().zip(second_moments).enumerate() {
        let rows = m.nrows();
        let sc: Vec<f32> = if scales.len() == 1 {
            scales.to_vec()
        } else {
            scales
                .get(gi * rows..(gi + 1) * rows)
                .ok_or_else(|| err("fewer scales than output channels"))?
                .to_vec()
        };
        let (lo, hi) = grid_neighbours(m.view(), format, &sc)?;
        let r = adaround(m.view(), h, &lo, &hi, opts)?;
        out.push(r.weight.clone());
        res.push(r);
    }
    let nw = weight_from_matrices(&layer, w.shape(), &out)?;
    set_constant_f32(g, layer.weight, nw);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::gptq::tests::{inputs, randn};

    fn check(format: &str) {
        let f: Format = format.parse().expect("format");
        for seed in [3u64, 5] {
            let (n, k, o) = (256, 32, 12);
            let x = inputs(n, k, seed);
            let w = Array2::from_shape_vec((o, k), randn(o * k, seed + 10)).expect("shape");
            let maxv = f.max_value() as f32;
            let scales: Vec<f32> = w
                .rows()
                .into_iter()
                .map(|r| r.iter().fold(0f32, |a, v| a.max(v.abs())) / maxv)
                .collect();
            let (lo, hi) = grid_neighbours(w.view(), &f, &scales).expect("grid");
            // neighbours bracket w and lie on the grid
            for ((r, c), &v) in w.indexed_iter() {
                assert!(lo[[r, c]] <= v + 1e-6 && v <= hi[[r, c]] + 1e-6);
                let q = |x: f32| scales[r] * f.quantize_value(x / scales[r]);
                assert_eq!(q(lo[[r, c]]), lo[[r, c]]);
                assert_eq!(q(hi[[r, c]]), hi[[r, c]]);
            }
            let h = x.t().dot(&x).mapv(|v| f64::from(v) / n as f64);
            let opts = AdaRoundOptions {
                iterations: 400,
                progress: false,
                ..AdaRoundOptions::default()
            };
            let r = adaround(w.view(), &h, &lo, &hi, &opts).expect("adaround");
            // output MSE on the rows themselves
            let mse = |a: &Array2<f32>| {
                let d = x.dot(&a.t()) - x.dot(&w.t());
                d.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>()
            };
            let nearest = Array2::from_shape_fn((o, k), |(r, c)| {
                scales[r] * f.quantize_value(w[[r, c]] / scales[r])
            });
            let (e_rtn, e_ada) = (mse(&nearest), mse(&r.weight));
            eprintln!(
                "adaround {format} seed {seed}: nearest {e_rtn:.4} learned {e_ada:.4} flipped {}",
                r.flipped
            );
            assert!(
                e_ada < 0.8 * e_rtn,
                "{format} seed {seed}: adaround {e_ada} vs nearest {e_rtn} (flipped {})",
                r.flipped
            );
            for ((rr, c), v) in r.weight.indexed_iter() {
                assert!(*v == lo[[rr, c]] || *v == hi[[rr, c]]);
            }
        }
    }

    /// Timing at ViT-B size (768 × 768, 100 iterations): `cargo test --lib
    /// adaround_timing_vit_size -- --ignored --nocapture`. Ignored by default (seconds).
    #[test]
    #[ignore]
    fn adaround_timing_vit_size() {
        let f: Format = "int4".parse().expect("format");
        let (n, k, o) = (2048, 768, 768);
        let x = inputs(n, k, 1);
        let w = Array2::from_shape_vec((o, k), randn(o * k, 2)).expect("shape") * 0.05;
        let maxv = f.max_value() as f32;
        let scales: Vec<f32> = w
            .rows()
            .into_iter()
            .map(|r| r.iter().fold(0f32, |a, v| a.max(v.abs())) / maxv)
            .collect();
        let (lo, hi) = grid_neighbours(w.view(), &f, &scales).expect("grid");
        let h = x.t().dot(&x).mapv(|v| f64::from(v) / n as f64);
        let opts = AdaRoundOptions {
            iterations: 100,
            progress: false,
            ..AdaRoundOptions::default()
        };
        let t0 = std::time::Instant::now();
        let r = adaround(w.view(), &h, &lo, &hi, &opts).expect("adaround");
        eprintln!(
            "768x768, 100 iterations: {:.2?}; nearest {:.3} learned {:.3}",
            t0.elapsed(),
            r.loss_nearest,
            r.loss_learned
        );
        assert!(r.loss_learned < r.loss_nearest);
    }

    #[test]
    fn adaround_layer_on_matmul_and_gemm() {
        use crate::ir::AttrValue;
        use crate::passes::equalize::tests::{eval, B};
        use crate::passes::gptq::{hessian_dims, layer_input_rows, HessianAccumulator};
        let f: Format = "e2m1".parse().expect("format");
        for op in ["MatMul", "Gemm"] {
            let mut b = B::new();
            let x = b.input("x", &[128, 24]);
            let w0 = Array2::from_shape_vec((10, 24), randn(240, 4)).expect("shape");
            let (wv, attrs) = if op == "Gemm" {
                (w0.clone(), vec![("transB", AttrValue::Int(1))])
            } else {
                (w0.t().to_owned(), vec![])
            };
            let w = b.constant(wv.as_standard_layout().into_owned().into_dyn());
            let y = b.node(op, vec![x, w], attrs, None);
            b.m.graph.outputs.push(y);
            let mut m = b.m;
            let node = m.graph.node_ids()[0];
            let xin = inputs(128, 24, 9).into_dyn();
            let yf = eval(&m, &xin);
            let (dim, groups) = hessian_dims(&m.graph, node).expect("dims");
            let mut acc = HessianAccumulator::new(dim);
            for r in layer_input_rows(&m.graph, node, &xin.view()).expect("rows") {
                acc.update(r.view()).expect("update");
            }
            assert_eq!(groups, 1);
            let hm = acc.finish().expect("h").mapv(|v| v / 2.0);
            let maxv = f.max_value() as f32;
            let scales: Vec<f32> = w0
                .rows()
                .into_iter()
                .map(|r| r.iter().fold(0f32, |a, v| a.max(v.abs())) / maxv)
                .collect();
            let mut mr = m.clone();
            let near = Array2::from_shape_fn((10, 24), |(r, c)| {
                scales[r] * f.quantize_value(w0[[r, c]] / scales[r])
            });
            let nv = if op == "Gemm" {
                near
            } else {
                near.t().to_owned()
            };
            crate::passes::layer::set_constant_f32(
                &mut mr.graph,
                w,
                nv.as_standard_layout().into_owned().into_dyn(),
            );
            let e_near = (&eval(&mr, &xin) - &yf).mapv(|v| v * v).sum();
            let opts = AdaRoundOptions {
                iterations: 300,
                progress: false,
                ..AdaRoundOptions::default()
            };
            adaround_layer(&mut m.graph, node, &[hm], &f, &scales, &opts).expect("adaround");
            let e_ada = (&eval(&m, &xin) - &yf).mapv(|v| v * v).sum();
            eprintln!("adaround layer {op}: nearest {e_near:.4} learned {e_ada:.4}");
            assert!(e_ada < e_near, "{op}: {e_ada} vs {e_near}");
        }
    }

    /// The normalised loss makes λ scale-free: scaling the weights by 2⁻⁶ (grid and scales with
    /// them) and the input second moments by 2¹⁰ gives exactly the same rounding decisions, and
    /// learned rounding still beats nearest at weight magnitudes like W1's (|w| ≈ 0.05), where
    /// the unnormalised λ = 0.01 regulariser used to pin every element to nearest.
    #[test]
    fn adaround_is_scale_invariant() {
        let f: Format = "int4".parse().expect("format");
        let (n, k, o) = (256, 32, 12);
        let x = inputs(n, k, 7);
        let w = Array2::from_shape_vec((o, k), randn(o * k, 8)).expect("shape");
        let maxv = f.max_value() as f32;
        let scales_of = |w: &Array2<f32>| -> Vec<f32> {
            w.rows()
                .into_iter()
                .map(|r| r.iter().fold(0f32, |a, v| a.max(v.abs())) / maxv)
                .collect()
        };
        let h = x.t().dot(&x).mapv(|v| f64::from(v) / n as f64);
        let opts = AdaRoundOptions {
            iterations: 300,
            progress: false,
            ..AdaRoundOptions::default()
        };
        let run = |w: &Array2<f32>, h: &Array2<f64>| {
            let sc = scales_of(w);
            let (lo, hi) = grid_neighbours(w.view(), &f, &sc).expect("grid");
            adaround(w.view(), h, &lo, &hi, &opts).expect("adaround")
        };
        let (c, d) = (2f32.powi(-6), 1024f64);
        let a = run(&w, &h);
        let ws = w.mapv(|v| v * c);
        let b = run(&ws, &h.mapv(|v| v * d));
        assert_eq!(a.weight.mapv(|v| v * c), b.weight);
        assert!(a.flipped > 0);
        assert!(
            b.loss_learned < 0.8 * b.loss_nearest,
            "small weights: learned {} vs nearest {}",
            b.loss_learned,
            b.loss_nearest
        );
    }

    #[test]
    fn adaround_beats_nearest_int4() {
        check("int4");
    }

    #[test]
    fn adaround_beats_nearest_e2m1() {
        check("e2m1");
    }
}
