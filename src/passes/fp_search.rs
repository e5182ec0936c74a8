//! LLM-FP4's per-layer format and clipping search (Liu et al. 2023), numeric core: for one
//! layer (`W [out, in]`, float input rows `X [n, in]`) and a bit budget for weights and
//! activations, every signed ExMy split (E ≥ 1, E + M = bits − 1) is tried for both; for each
//! pair, 3 alternating rounds search the weight biases (one per output channel, each minimising
//! that channel's output MSE) and the activation bias (one per tensor, minimising the whole
//! output MSE) over `b̃ = c · b̃_init`, c ∈ [0.01, 1.2] in 100 steps, `b̃_init` from the max.
//! The pair with the lowest layer output MSE wins. The integer analogue ([`int_clip_search`])
//! searches the clip ratio the same way, so int-vs-minifloat comparisons get the same effort.
//!
//! A bias is applied as the scale `2^(b0 − b̃)` of the generic ExMy format (see
//! [`super::exponent_shift`]); results are returned as scales, ready for per-channel fake
//! quantization. Graph wiring (choosing formats per layer in the recipe) is left to the caller.

use super::exponent_shift::{bias_from_clip, scale_for_bias};
use super::PassError;
use ndarray::{Array2, ArrayView2};
use quant_formats::{FloatFormat, Format, IntFormat};

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
    /// One weight scale per output channel.
    pub weight_scales: Vec<f32>,
    /// Activation scale (per tensor).
    pub act_scale: f32,
    /// Layer output MSE at the result.
    pub mse: f64,
    /// Output MSE with max calibration for the same formats (the starting point).
    pub mse_max_calibration: f64,
}

fn fq(fmt: &Format, v: f32, s: f32) -> f32 {
    s * fmt.quantize_value(v / s)
}

fn quant_x(x: ArrayView2<'_, f32>, fmt: &Format, s: f32) -> Array2<f32> {
    x.mapv(|v| fq(fmt, v, s))
}

fn out_mse(xq: &Array2<f32>, wq: &Array2<f32>, y: &Array2<f32>) -> f64 {
    let d = xq.dot(&wq.t()) - y;
    d.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / d.len().max(1) as f64
}

/// Candidate scale for a channel/tensor max under grid point `c`.
type ScaleFn = dyn Fn(f32, f64) -> f32;

fn search_pair(
    w: ArrayView2<'_, f32>,
    x: ArrayView2<'_, f32>,
    y: &Array2<f32>,
    wf: Format,
    af: Format,
    wscale: &ScaleFn,
    ascale: &ScaleFn,
) -> LayerSearch {
    let wmax: Vec<f32> = w
        .rows()
        .into_iter()
        .map(|r| r.iter().fold(0f32, |a, v| a.max(v.abs())))
        .collect();
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let mut ws: Vec<f32> = wmax.iter().map(|&m| wscale(m, 1.0)).collect();
    let mut a_s = ascale(amax, 1.0);
    let quant_w = |ws: &[f32]| Array2::from_shape_fn(w.dim(), |(r, c)| fq(&wf, w[[r, c]], ws[r]));
    let mse0 = out_mse(&quant_x(x, &af, a_s), &quant_w(&ws), y);
    for _round in 0..3 {
        // weight scales, channel by channel (channel o only affects output column o)
        let xq = quant_x(x, &af, a_s);
        for (o, wo) in ws.iter_mut().enumerate() {
            if wmax[o] == 0.0 {
                continue;
            }
            let yo = y.column(o);
            let row = w.row(o);
            let mut best = (f64::INFINITY, *wo);
            for i in 0..STEPS {
                let s = wscale(wmax[o], grid(i));
                if !(s.is_finite() && s > 0.0) {
                    continue;
                }
                let rq: Vec<f32> = row.iter().map(|&v| fq(&wf, v, s)).collect();
                let mut e = 0f64;
                for (xr, &t) in xq.rows().into_iter().zip(yo.iter()) {
                    let p: f32 = xr.iter().zip(&rq).map(|(a, b)| a * b).sum();
                    e += f64::from(p - t).powi(2);
                }
                if e < best.0 {
                    best = (e, s);
                }
            }
            *wo = best.1;
        }
        // activation scale
        let wq = quant_w(&ws);
        let mut best = (f64::INFINITY, a_s);
        for i in 0..STEPS {
            let s = ascale(amax, grid(i));
            if !(s.is_finite() && s > 0.0) {
                continue;
            }
            let e = out_mse(&quant_x(x, &af, s), &wq, y);
            if e < best.0 {
                best = (e, s);
            }
        }
        a_s = best.1;
    }
    let mse = out_mse(&quant_x(x, &af, a_s), &quant_w(&ws), y);
    LayerSearch {
        weight_format: wf,
        act_format: af,
        weight_scales: ws,
        act_scale: a_s,
        mse,
        mse_max_calibration: mse0,
    }
}

fn check(w: ArrayView2<'_, f32>, x: ArrayView2<'_, f32>) -> Result<Array2<f32>, PassError> {
    if w.ncols() != x.ncols() || x.nrows() == 0 || w.nrows() == 0 {
        return Err(PassError::Shape {
            pass: PASS.into(),
            what: "layer".into(),
            detail: format!("weight {:?} vs inputs {:?}", w.dim(), x.dim()),
        });
    }
    Ok(x.dot(&w.t()))
}

/// Minifloat search: all signed ExMy splits of `w_bits` / `a_bits` (E ≥ 1), biases searched.
pub fn fp_search(
    w: ArrayView2<'_, f32>,
    x: ArrayView2<'_, f32>,
    w_bits: u8,
    a_bits: u8,
) -> Result<LayerSearch, PassError> {
    let y = check(w, x)?;
    let splits = |bits: u8| -> Vec<(u8, u8)> {
        (1..bits)
            .map(|e| (e, bits - 1 - e))
            .filter(|&(e, m)| Format::Float(FloatFormat::generic(e, m)).validate().is_ok())
            .collect()
    };
    let mut best: Option<LayerSearch> = None;
    for (we, wm) in splits(w_bits) {
        for (ae, am) in splits(a_bits) {
            let wf = Format::Float(FloatFormat::generic(we, wm));
            let af = Format::Float(FloatFormat::generic(ae, am));
            let wsc =
                move |m: f32, c: f64| scale_for_bias(we, c * bias_from_clip(we, wm, f64::from(m)));
            let asc =
                move |m: f32, c: f64| scale_for_bias(ae, c * bias_from_clip(ae, am, f64::from(m)));
            let r = search_pair(w, x, &y, wf, af, &wsc, &asc);
            if best.as_ref().map(|b| r.mse < b.mse).unwrap_or(true) {
                best = Some(r);
            }
        }
    }
    best.ok_or_else(|| PassError::InvalidOption {
        pass: PASS.into(),
        option: "bits".into(),
        reason: format!("no valid ExMy split for {w_bits}/{a_bits} bits"),
    })
}

/// Integer analogue: signed `w_bits`/`a_bits` integers, clip = c · max searched the same way.
pub fn int_clip_search(
    w: ArrayView2<'_, f32>,
    x: ArrayView2<'_, f32>,
    w_bits: u8,
    a_bits: u8,
) -> Result<LayerSearch, PassError> {
    let y = check(w, x)?;
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
    let (wq, aq) = (wf.max_value() as f32, af.max_value() as f32);
    let wsc = move |m: f32, c: f64| (f64::from(m) * c) as f32 / wq;
    let asc = move |m: f32, c: f64| (f64::from(m) * c) as f32 / aq;
    Ok(search_pair(w, x, &y, wf, af, &wsc, &asc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::gptq::tests::{inputs, randn};

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
        // the best split is no worse than E2M1 with max calibration
        let e2m1 = Format::Float(FloatFormat::generic(2, 1));
        let y = x.dot(&w.t());
        let base = search_pair(
            w.view(),
            x.view(),
            &y,
            e2m1,
            e2m1,
            &|m, c| scale_for_bias(2, c * bias_from_clip(2, 1, f64::from(m))),
            &|m, c| scale_for_bias(2, c * bias_from_clip(2, 1, f64::from(m))),
        );
        assert!(fp.mse <= base.mse + 1e-12);
        assert!(fp.mse < base.mse_max_calibration);
    }
}
