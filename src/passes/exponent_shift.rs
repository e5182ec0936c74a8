//! LLM-FP4's pre-shifted exponent bias (Liu et al. 2023): activations quantized to a minifloat
//! ExMy get one real-valued exponent bias ρ per tensor plus an integer offset `k_j` per input
//! channel, `k_j = clamp(round(b̃_j) − round(ρ), 0, 2^E − 1)` with `b̃_j` the bias that makes
//! channel j's max the format's max (`b̃ = 2^E − log2(clip) + log2(2 − 2^−M) − 1`). Because the
//! offsets are integers, quantizing channel j with bias ρ + k_j is exactly quantizing
//! `x_j · 2^k_j` per tensor with bias ρ and multiplying weight row j of every consumer by
//! `2^−k_j`; the `2^k_j` is folded into the producer (norm scale/bias or the producing layer's
//! output channels) or an inserted `Mul`. ρ is searched on the grid `c · min_j b̃_j`,
//! c ∈ [0.01, 1.2] in 100 steps, minimising the activation quantization MSE.
//!
//! A bias b̃ of the generic ExMy format (default bias b0, subnormals, no special codes) is the
//! same grid as that format at scale `2^(b0 − b̃)`, which is how it is applied here.

use super::layer::{constant_f32, layer_of, Layer, LayerKind};
use super::smooth::migrate;
use super::PassError;
use crate::ir::Model;
use ndarray::ArrayView2;
use quant_formats::{FloatFormat, Format};

const PASS: &str = "exponent-shift";

/// The exponent bias that maps `clip` to the largest value of ExMy.
pub fn bias_from_clip(e: u8, m: u8, clip: f64) -> f64 {
    2f64.powi(i32::from(e)) - clip.log2() + (2.0 - 2f64.powi(-i32::from(m))).log2() - 1.0
}

/// Scale that realises bias `b` on the generic ExMy format.
pub fn scale_for_bias(e: u8, b: f64) -> f32 {
    let b0 = f64::from(FloatFormat::default_bias(e));
    2f64.powf(b0 - b) as f32
}

/// Integer per-channel offsets for shared bias `rho` (channels with max 0 get 0).
pub fn channel_offsets(channel_max: &[f32], e: u8, m: u8, rho: f64) -> Vec<u32> {
    let kmax = (1u32 << e) - 1;
    channel_max
        .iter()
        .map(|&c| {
            if c > 0.0 && c.is_finite() {
                let d = bias_from_clip(e, m, f64::from(c)).round() - rho.round();
                d.clamp(0.0, f64::from(kmax)) as u32
            } else {
                0
            }
        })
        .collect()
}

/// Result of the ρ search.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExponentShift {
    /// Shared real-valued bias.
    pub rho: f64,
    /// Per-channel integer offsets.
    pub offsets: Vec<u32>,
    /// Per-tensor scale realising ρ on the generic ExMy format.
    pub scale: f32,
    /// Mean squared activation quantization error at the chosen ρ.
    pub mse: f64,
}

/// Searches ρ for activation samples `x [n, C]` (channels as columns).
pub fn search_rho(x: ArrayView2<'_, f32>, e: u8, m: u8) -> Result<ExponentShift, PassError> {
    let f = FloatFormat::generic(e, m);
    let fmt = Format::Float(f);
    fmt.validate().map_err(|err| PassError::InvalidOption {
        pass: PASS.into(),
        option: format!("format e{e}m{m}"),
        reason: err.to_string(),
    })?;
    let cmax: Vec<f32> = x
        .columns()
        .into_iter()
        .map(|c| c.iter().fold(0f32, |a, v| a.max(v.abs())))
        .collect();
    let init = cmax
        .iter()
        .filter(|c| **c > 0.0 && c.is_finite())
        .map(|&c| bias_from_clip(e, m, f64::from(c)))
        .fold(f64::INFINITY, f64::min);
    if !init.is_finite() {
        return Err(PassError::Numeric {
            pass: PASS.into(),
            what: "activation samples".into(),
            reason: "every channel is zero or non-finite".into(),
        });
    }
    let mut best: Option<ExponentShift> = None;
    for i in 0..100 {
        let c = 0.01 + (1.2 - 0.01) * f64::from(i) / 99.0;
        let rho = c * init;
        let offsets = channel_offsets(&cmax, e, m, rho);
        let scale = scale_for_bias(e, rho);
        let mut err = 0f64;
        for row in x.rows() {
            for (j, &v) in row.iter().enumerate() {
                let s = scale * 2f32.powi(-(offsets[j] as i32));
                let q = s * fmt.quantize_value(v / s);
                err += f64::from(v - q).powi(2);
            }
        }
        let mse = err / x.len().max(1) as f64;
        if best.as_ref().map(|b| mse < b.mse).unwrap_or(true) {
            best = Some(ExponentShift {
                rho,
                offsets,
                scale,
                mse,
            });
        }
    }
    best.ok_or_else(|| PassError::Numeric {
        pass: PASS.into(),
        what: "search".into(),
        reason: "no candidate".into(),
    })
}

/// What [`exponent_shift`] did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExponentShiftReport {
    /// The tensor.
    pub tensor: String,
    /// Search result.
    pub shift: ExponentShift,
    /// Where `2^k` went.
    pub folded_into: String,
    /// Input channels (of the consumers' weights) with at least one nonzero weight that rounds
    /// to zero after the shift but not before, with the weight format at per-output-channel
    /// abs-max scales.
    pub underflow_channels: Vec<usize>,
}

fn per_out_zero_mask(l: &Layer, w: &ndarray::ArrayD<f32>, fmt: &Format) -> Vec<bool> {
    let ax = l.out_axis();
    let maxv = fmt.max_value() as f32;
    let mut zero = vec![false; w.len()];
    let scales: Vec<f32> = w
        .axis_iter(ndarray::Axis(ax))
        .map(|c| c.iter().fold(0f32, |a, v| a.max(v.abs())) / maxv)
        .collect();
    for (i, (idx, v)) in w.indexed_iter().enumerate() {
        let s = scales[idx[ax]];
        zero[i] = *v != 0.0 && (s == 0.0 || fmt.quantize_value(v / s) == 0.0);
    }
    zero
}

/// Searches ρ and the offsets for tensor `tensor` from samples `x [n, C]` and folds
/// `2^k_j` into the producer (or a `Mul`) and `2^−k_j` into every consumer's weights. All
/// consumers must be Conv/Gemm/MatMul layers reading the tensor as their input, so they share
/// the offsets.
pub fn exponent_shift(
    model: &mut Model,
    tensor: &str,
    x: ArrayView2<'_, f32>,
    e: u8,
    m: u8,
    weight_format: Option<&Format>,
) -> Result<ExponentShiftReport, PassError> {
    let g = &mut model.graph;
    let err = |reason: String| PassError::Node {
        pass: PASS.into(),
        node: format!("tensor '{tensor}'"),
        reason,
    };
    let v = g
        .find_value(tensor)
        .ok_or_else(|| err("no such tensor".into()))?;
    let mut layers = Vec::new();
    for (n, slot) in g.consumers(v) {
        match layer_of(g, n) {
            Some(l) if slot == 0 => layers.push(l),
            _ => {
                return Err(err(format!(
                    "consumer {} is not a Conv/Gemm/MatMul reading it as its input",
                    g.node(n).label()
                )))
            }
        }
    }
    if layers.is_empty() {
        return Err(err("no consumers".into()));
    }
    let is_conv = matches!(layers[0].kind, LayerKind::Conv { .. });
    if layers
        .iter()
        .any(|l| matches!(l.kind, LayerKind::Conv { .. }) != is_conv)
    {
        return Err(err("consumers disagree on the channel axis".into()));
    }
    let shift = search_rho(x, e, m)?;
    let before: Vec<Vec<bool>> = match weight_format {
        Some(f) => layers
            .iter()
            .map(|l| {
                constant_f32(g, l.weight)
                    .map(|w| per_out_zero_mask(l, &w, f))
                    .unwrap_or_default()
            })
            .collect(),
        None => Vec::new(),
    };
    let s: Vec<f32> = shift
        .offsets
        .iter()
        .map(|&k| 2f32.powi(-(k as i32)))
        .collect();
    let rank = g.value(v).static_shape().map(|s| s.len());
    let folded_into = migrate(g, v, &layers, &s, is_conv, rank)?;
    let mut underflow = std::collections::BTreeSet::new();
    if let Some(f) = weight_format {
        for (l, b) in layers.iter().zip(&before) {
            let Some(w) = constant_f32(g, l.weight) else {
                continue;
            };
            let after = per_out_zero_mask(l, &w, f);
            let in_ax = l.in_axis();
            let cg = w.shape()[1];
            for (i, (idx, _)) in w.indexed_iter().enumerate() {
                if after[i] && !b.get(i).copied().unwrap_or(false) {
                    let j = match l.kind {
                        LayerKind::Conv { groups } => {
                            (idx[0] / (w.shape()[0] / groups.max(1))) * cg + idx[1]
                        }
                        _ => idx[in_ax],
                    };
                    underflow.insert(j);
                }
            }
        }
    }
    Ok(ExponentShiftReport {
        tensor: tensor.to_string(),
        shift,
        folded_into,
        underflow_channels: underflow.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::rand_array;
    use crate::passes::equalize::tests::{eval, B};
    use ndarray::{Array2, Axis};

    fn outlier_rows() -> Array2<f32> {
        let mut x = rand_array(&[64, 8], 5)
            .into_dimensionality::<ndarray::Ix2>()
            .expect("2d");
        for (j, mut c) in x.axis_iter_mut(Axis(1)).enumerate() {
            let f = 2f32.powi(j as i32 - 3) * 1.3;
            c.mapv_inplace(|v| v * f);
        }
        x
    }

    #[test]
    fn shift_is_bit_exact_with_per_channel_bias() {
        let x = outlier_rows();
        let (e, m) = (4u8, 3u8);
        let sh = search_rho(x.view(), e, m).expect("search");
        assert!(sh.offsets.iter().any(|&k| k > 0), "{:?}", sh.offsets);
        let fmt = Format::Float(FloatFormat::generic(e, m));
        let scales: Vec<f32> = sh
            .offsets
            .iter()
            .map(|&k| sh.scale * 2f32.powi(-(k as i32)))
            .collect();
        let flat: Vec<f32> = x.iter().copied().collect();
        let mut per_ch = vec![0f32; flat.len()];
        fmt.fake_quantize_per_channel(&flat, &[64, 8], 1, &scales, &mut per_ch)
            .expect("per channel");
        let shifted: Vec<f32> = flat
            .iter()
            .enumerate()
            .map(|(i, v)| v * 2f32.powi(sh.offsets[i % 8] as i32))
            .collect();
        let mut per_t = vec![0f32; flat.len()];
        fmt.fake_quantize(&shifted, sh.scale, &mut per_t);
        for (i, (a, b)) in per_ch.iter().zip(&per_t).enumerate() {
            let back = b * 2f32.powi(-(sh.offsets[i % 8] as i32));
            assert_eq!(a.to_bits(), back.to_bits(), "element {i}: {a} vs {back}");
        }
        // the shift helps against plain per-tensor quantization at the best ρ without offsets
        let plain = (0..100)
            .map(|i| {
                let init =
                    bias_from_clip(e, m, f64::from(x.iter().fold(0f32, |a, v| a.max(v.abs()))));
                let s = scale_for_bias(e, (0.01 + 1.19 * f64::from(i) / 99.0) * init);
                let mut q = vec![0f32; flat.len()];
                fmt.fake_quantize(&flat, s, &mut q);
                flat.iter()
                    .zip(&q)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
                    / flat.len() as f64
            })
            .fold(f64::INFINITY, f64::min);
        assert!(sh.mse < plain, "shifted {} vs plain {plain}", sh.mse);
    }

    #[test]
    fn exponent_shift_preserves_function() {
        let mut b = B::new();
        let x = b.input("x", &[64, 8]);
        let mut w1v = rand_array(&[8, 8], 1) * 0.05;
        for j in 0..8 {
            w1v[[j, j]] += 1.0;
        }
        let w1 = b.constant(w1v);
        let h = b.node("MatMul", vec![x, w1], vec![], Some(&[64, 8]));
        let w2 = b.constant(rand_array(&[8, 4], 2));
        let y = b.node("MatMul", vec![h, w2], vec![], None);
        b.m.graph.outputs.push(y);
        let mut m = b.m;
        let xin = outlier_rows().into_dyn();
        let before = eval(&m, &xin);
        let hname = m.graph.value(h).name.clone();
        // samples of h
        let hv = crate::kernels::matmul::matmul(
            &xin.view(),
            &constant_f32(&m.graph, w1).expect("w1").view(),
        )
        .expect("mm")
        .into_dimensionality::<ndarray::Ix2>()
        .expect("2d");
        let fmt: Format = "int4".parse().expect("fmt");
        let rep = exponent_shift(&mut m, &hname, hv.view(), 4, 3, Some(&fmt)).expect("shift");
        assert!(rep.folded_into.starts_with("MatMul"), "{rep:?}");
        assert!(rep.shift.offsets.iter().any(|&k| k > 0), "{rep:?}");
        assert!(!rep.underflow_channels.is_empty(), "{rep:?}");
        for &j in &rep.underflow_channels {
            assert!(rep.shift.offsets[j] > 0, "{rep:?}");
        }
        let after = eval(&m, &xin);
        let scale = before.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (a, e) in after.iter().zip(before.iter()) {
            assert!((a - e).abs() <= 1e-5 * scale, "{a} vs {e}");
        }
    }
}
