//! LLM-FP4's pre-shifted exponent bias (Liu et al. 2023): activations quantized to a minifloat
//! ExMy get one real-valued exponent bias ρ per tensor plus an integer offset `k_j` per input
//! channel, `k_j = clamp(round(b̃_j) − round(ρ), 0, 2^E − 1)` with `b̃_j` the bias that makes
//! channel j's max the format's max (`b̃ = 2^E − log2(clip) + log2(2 − 2^−M) − 1`). Because the
//! offsets are integers, quantizing channel j with bias ρ + k_j is exactly quantizing
//! `x_j · 2^k_j` per tensor with bias ρ and multiplying weight row j of every consumer by
//! `2^−k_j`; the `2^k_j` is folded into the producer (norm scale/bias or the producing layer's
//! output channels) or an inserted `Mul`. ρ is searched on the grid `c · min_j b̃_j`,
//! c ∈ [0.01, 1.2] in 100 steps, minimising the consumers' expected output error (activation
//! rounding weighted by the weight columns, plus the weights rounded after the shift) when the
//! weight format is known, the activation quantization MSE otherwise; the same grid without
//! offsets is searched too, so the shift is kept only where it lowers that error.
//!
//! A bias b̃ of the generic ExMy format (default bias b0, subnormals, no special codes) is the
//! same grid as that format at scale `2^(b0 − b̃)`, which is how it is applied here.

use super::layer::{constant_f32, layer_of, Layer, LayerKind};
use super::smooth::migrate;
use super::PassError;
use crate::ir::Model;
use ndarray::ArrayView2;
use quant_formats::{FloatFormat, Format};
use rayon::prelude::*;

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
    /// The search objective at the chosen ρ: the activation quantization MSE, or with the
    /// consumers' weights known the expected output error per sample row (see [`search_rho`]).
    pub mse: f64,
}

/// The consumers' weights as the ρ search needs them, flattened: every element with the input
/// channel it multiplies and its output channel, and the weight format (per-output-channel
/// abs-max scales).
pub struct WeightSide<'a> {
    /// One entry per consumer.
    pub weights: Vec<ConsumerWeight>,
    /// Weight format of the consumers.
    pub format: &'a Format,
}

/// One consumer's weight, flattened in standard order.
pub struct ConsumerWeight {
    /// The values.
    pub values: Vec<f32>,
    /// Input channel (of the shifted tensor) each value multiplies.
    pub input: Vec<usize>,
    /// Output channel of each value (its per-channel scale).
    pub output: Vec<usize>,
    /// Number of output channels.
    pub outputs: usize,
}

impl WeightSide<'_> {
    /// `Σ_j E[x_j²] · Σ_o (W_oj − Q(W_oj·2^−k_j)·2^k_j)²` over every consumer: the expected
    /// output error from weight rounding after the shift (cross terms neglected), with `m2[j]`
    /// the second moment of channel j.
    fn error(&self, offsets: &[u32], m2: &[f64]) -> f64 {
        let maxv = self.format.max_value() as f32;
        let qz = self.format.quantizer(quant_formats::Rounding::HalfEven);
        let mut err = 0f64;
        for cw in &self.weights {
            let (w, chan, out) = (&cw.values, &cw.input, &cw.output);
            let f = |i: usize| 2f32.powi(-(offsets[chan[i]] as i32));
            let mut amax = vec![0f32; cw.outputs];
            for (i, v) in w.iter().enumerate() {
                amax[out[i]] = amax[out[i]].max((v * f(i)).abs());
            }
            for (i, &v) in w.iter().enumerate() {
                let s = amax[out[i]] / maxv;
                let q = if s > 0.0 {
                    s * qz.quantize_one(v * f(i) / s, 0) / f(i)
                } else {
                    0.0
                };
                err += m2[chan[i]] * f64::from(v - q).powi(2);
            }
        }
        err
    }

    /// `Σ_o W_oj²` per input channel (`channels` of them).
    fn column_norms(&self, channels: usize) -> Vec<f64> {
        let mut n = vec![0f64; channels];
        for cw in &self.weights {
            for (&v, &j) in cw.values.iter().zip(&cw.input) {
                n[j] += f64::from(v).powi(2);
            }
        }
        n
    }
}

/// Searches ρ for activation samples `x [n, C]` (channels as columns). Without `weights` the
/// objective is the activation quantization MSE. With them it is the expected error of the
/// consumers' outputs: each channel's activation error weighted by `Σ_o W_oj²`, plus the
/// error of the consumers' weights rounded after the `2^−k_j` shift (which can push whole
/// weight rows into a narrow format's underflow), and the grid also holds every ρ without
/// offsets (plain per-tensor scales), so the shift is used only where it pays.
pub fn search_rho(
    x: ArrayView2<'_, f32>,
    e: u8,
    m: u8,
    weights: Option<&WeightSide<'_>>,
) -> Result<ExponentShift, PassError> {
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
    let c = x.ncols();
    let rows = x.nrows().max(1) as f64;
    // channel weights of the activation error and second moments for the weight error
    let (colw, m2): (Vec<f64>, Vec<f64>) = match weights {
        Some(ws) => (
            ws.column_norms(c),
            x.columns()
                .into_iter()
                .map(|col| col.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / rows)
                .collect(),
        ),
        None => (vec![1.0; c], vec![0.0; c]),
    };
    // channels as contiguous columns, quantized with the vectorised slice kernel
    let cols: Vec<Vec<f32>> = x.columns().into_iter().map(|c| c.to_vec()).collect();
    let quantizer = quant_formats::Quantizer::new(&fmt, quant_formats::Rounding::HalfEven);
    let mut best: Option<ExponentShift> = None;
    let with_plain = weights.is_some();
    let mut plain_werr: Option<f64> = None;
    for plain in [false, true] {
        if plain && !with_plain {
            continue;
        }
        for i in 0..100 {
            let cf = 0.01 + (1.2 - 0.01) * f64::from(i) / 99.0;
            let rho = cf * init;
            let offsets = if plain {
                vec![0; c]
            } else {
                channel_offsets(&cmax, e, m, rho)
            };
            let scale = scale_for_bias(e, rho);
            let err: Vec<f64> = cols
                .par_iter()
                .enumerate()
                .map(|(j, col)| {
                    let s = scale * 2f32.powi(-(offsets[j] as i32));
                    let mut q = vec![0f32; col.len()];
                    quantizer.fake_quantize(col, s, &mut q);
                    col.iter()
                        .zip(&q)
                        .map(|(&v, &q)| f64::from(v - q).powi(2))
                        .sum::<f64>()
                })
                .collect();
            // without weights: the mean over all elements (the activation MSE)
            let per = if weights.is_some() {
                rows
            } else {
                x.len().max(1) as f64
            };
            let act: f64 = err.iter().zip(&colw).map(|(e, w)| e * w).sum::<f64>() / per;
            // the weight error without offsets is the same for every plain candidate
            let werr = match (weights, plain) {
                (None, _) => 0.0,
                (Some(_), true) => *plain_werr
                    .get_or_insert_with(|| weights.map_or(0.0, |ws| ws.error(&offsets, &m2))),
                (Some(ws), false) => ws.error(&offsets, &m2),
            };
            let mse = act + werr;
            if best.as_ref().map(|b| mse < b.mse).unwrap_or(true) {
                best = Some(ExponentShift {
                    rho,
                    offsets,
                    scale,
                    mse,
                });
            }
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
    let qz = fmt.quantizer(quant_formats::Rounding::HalfEven);
    let mut zero = vec![false; w.len()];
    let scales: Vec<f32> = w
        .axis_iter(ndarray::Axis(ax))
        .map(|c| c.iter().fold(0f32, |a, v| a.max(v.abs())) / maxv)
        .collect();
    for (i, (idx, v)) in w.indexed_iter().enumerate() {
        let s = scales[idx[ax]];
        zero[i] = *v != 0.0 && (s == 0.0 || qz.quantize_one(v / s, 0) == 0.0);
    }
    zero
}

/// The input channel (of the layer's input tensor) each element of weight `w` multiplies, in
/// standard order.
fn input_channels(l: &Layer, w: &ndarray::ArrayD<f32>) -> Vec<usize> {
    let in_ax = l.in_axis();
    let cg = w.shape().get(1).copied().unwrap_or(1);
    w.indexed_iter()
        .map(|(idx, _)| match l.kind {
            LayerKind::Conv { groups } => {
                (idx[0] / (w.shape()[0] / groups.max(1)).max(1)) * cg + idx[1]
            }
            _ => idx[in_ax],
        })
        .collect()
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
    let side = weight_format.map(|f| WeightSide {
        weights: layers
            .iter()
            .filter_map(|l| {
                let w = constant_f32(g, l.weight)?;
                let chan = input_channels(l, &w);
                let ax = l.out_axis();
                let out: Vec<usize> = w.indexed_iter().map(|(idx, _)| idx[ax]).collect();
                let outs = w.shape().get(ax).copied().unwrap_or(1);
                Some(ConsumerWeight {
                    values: w.iter().copied().collect(),
                    input: chan,
                    output: out,
                    outputs: outs,
                })
            })
            .collect(),
        format: f,
    });
    if side.as_ref().is_some_and(|s| {
        s.weights
            .iter()
            .any(|cw| cw.input.iter().any(|&j| j >= x.ncols()))
    }) {
        return Err(err(format!(
            "the consumers' weights have more input channels than the {} sampled",
            x.ncols()
        )));
    }
    let shift = search_rho(x, e, m, side.as_ref())?;
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
            let chan = input_channels(l, &w);
            for (i, &j) in chan.iter().enumerate() {
                if after[i] && !b.get(i).copied().unwrap_or(false) {
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
        let sh = search_rho(x.view(), e, m, None).expect("search");
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
