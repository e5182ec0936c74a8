//! Pipeline drivers of the data-driven passes: they run the model over calibration data with
//! the interpreter, gather what each numeric core needs (per-channel activation ranges, layer
//! input rows, Hessians, per-channel output means) and apply the core to the model, recording
//! the formats and scales quantization must keep in [`Fixed`]. Called by
//! [`crate::quant::pipeline::quantize`] in pipeline-stage order.
//!
//! Layer inputs are captured in batches of at most [`CAPTURE_BATCH`] samples (im2col rows of
//! large early feature maps are big) and, where a pass works on a row sample, evenly strided
//! rows are kept per batch, so memory stays bounded and results are deterministic.

use std::collections::{BTreeMap, HashMap, HashSet};

use ndarray::{concatenate, Array2, ArrayD, Axis};
use quant_formats::{FloatFormat, Format};

use super::bias::{output_channel_axis, ChannelMean};
use super::fp_search::{float_splits, search_layer, SearchSpace, Start};
use super::gptq::{
    gptq_layer, gptq_layer_held_out, hessian_dims, layer_input_rows, GptqResult, HessianAccumulator,
};
use super::layer::{constant_f32, layer_of, weight_matrices, LayerKind};
use super::{
    adaround, AdaRoundOptions, BiasCorrectionOptions, ExponentShiftOptions, FpSearchOptions, Pass,
    PassError, SmoothOptions,
};
use crate::calib::ObserverSet;
use crate::data::Dataset;
use crate::interp::{Interpreter, Observer};
use crate::ir::{Model, NodeId, ValueId};
use crate::kernels::conv::Clamp;
use crate::quant::materialize::Quantized;
use crate::quant::pipeline::{quantize_with_fixed, Fixed, QuantizeError};
use crate::quant::plan;
use crate::quant::recipe::{Granularity, Recipe};
use crate::tensor::Tensor;

/// Largest batch used when capturing layer inputs.
pub const CAPTURE_BATCH: usize = 8;

fn eval_err(e: impl std::fmt::Display) -> QuantizeError {
    QuantizeError::Eval(e.to_string())
}

fn model_err(e: impl std::fmt::Display) -> QuantizeError {
    QuantizeError::Model(e.to_string())
}

/// Callback receiving one observed tensor.
type TensorFn<'a> = dyn FnMut(ValueId, &ArrayD<f32>) -> Result<(), QuantizeError> + 'a;

struct Tap<'a, 'b> {
    want: &'a HashSet<ValueId>,
    f: &'a mut TensorFn<'b>,
    err: Option<QuantizeError>,
}

impl Observer for Tap<'_, '_> {
    fn observe(&mut self, value: ValueId, _name: &str, tensor: &Tensor) {
        if self.err.is_some() || !self.want.contains(&value) {
            return;
        }
        if let Tensor::F32(a) = tensor {
            if let Err(e) = (self.f)(value, a) {
                self.err = Some(e);
            }
        }
    }
}

/// Streams `data` through `model` in batches of `batch`, handing every float tensor in `want`
/// to `f` (in graph order within a batch, batches in order).
fn stream(
    model: &Model,
    data: &Dataset,
    batch: usize,
    want: &[ValueId],
    what: &str,
    f: &mut TensorFn<'_>,
) -> Result<(), QuantizeError> {
    let interp = Interpreter::new(model).map_err(model_err)?;
    let want: HashSet<ValueId> = want.iter().copied().collect();
    let batch = batch.max(1);
    let pb = crate::util::progress::bar(data.len().div_ceil(batch) as u64, what);
    for b in data.batches(batch).map_err(eval_err)? {
        let b = b.map_err(eval_err)?;
        let feeds: Vec<(String, Tensor)> = b
            .inputs
            .into_iter()
            .map(|(n, a)| (n, Tensor::F32(a)))
            .collect();
        let mut tap = Tap {
            want: &want,
            f: &mut *f,
            err: None,
        };
        interp
            .run_batched_observed(&feeds, None, &mut tap)
            .map_err(model_err)?;
        if let Some(e) = tap.err {
            return Err(e);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(())
}

/// The first `n` samples of `data`.
fn head(data: &Dataset, n: usize) -> Dataset {
    let mut d = data.clone();
    if d.len() > n {
        d.select(n, None);
    }
    d
}

/// At most `keep` evenly strided rows of `a`.
fn keep_rows(a: Array2<f32>, keep: usize) -> Array2<f32> {
    let n = a.nrows();
    if n <= keep.max(1) {
        return a;
    }
    let stride = n.div_ceil(keep.max(1));
    let idx: Vec<usize> = (0..n).step_by(stride).collect();
    a.select(Axis(0), &idx)
}

/// Rows of a tensor with its channels as columns: axis 1 for Conv inputs, the last axis
/// otherwise.
fn channel_rows(x: &ArrayD<f32>, conv: bool) -> Result<Array2<f32>, QuantizeError> {
    let bad = || {
        model_err(format!(
            "activation of shape {:?} has no channel axis",
            x.shape()
        ))
    };
    if x.ndim() == 0 {
        return Err(bad());
    }
    let v = if conv {
        if x.ndim() < 2 {
            return Err(bad());
        }
        let mut perm: Vec<usize> = (0..x.ndim()).collect();
        perm.remove(1);
        perm.push(1);
        x.view().permuted_axes(perm)
    } else {
        x.view()
    };
    let c = *v.shape().last().ok_or_else(bad)?;
    let std = v.as_standard_layout().into_owned();
    std.into_shape_with_order((x.len() / c.max(1), c))
        .map_err(|e| model_err(e.to_string()))
}

fn concat_rows(parts: &[Array2<f32>], cols: usize) -> Result<Array2<f32>, QuantizeError> {
    if parts.is_empty() {
        return Ok(Array2::zeros((0, cols)));
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    concatenate(Axis(0), &views).map_err(|e| model_err(e.to_string()))
}

fn is_conv(kind: &LayerKind) -> bool {
    matches!(kind, LayerKind::Conv { .. })
}

/// `smooth-quant`: per-input-channel max |x| of every quantized Conv/Gemm/MatMul input over the
/// calibration set, then [`super::smooth::smooth_quant`].
pub fn smooth(
    m: &mut Model,
    recipe: &Recipe,
    calib: &Dataset,
    o: &SmoothOptions,
) -> Result<Vec<String>, QuantizeError> {
    let r = recipe.resolve()?;
    let layers = plan::plan(m, &r)?;
    let mut conv: BTreeMap<ValueId, bool> = BTreeMap::new();
    for l in &layers {
        if l.act_format.is_none() || l.weight_format.is_none() {
            continue;
        }
        if let Some(pl) = layer_of(&m.graph, l.node) {
            conv.insert(pl.input, is_conv(&pl.kind));
        }
    }
    let want: Vec<ValueId> = conv.keys().copied().collect();
    let mut amax: BTreeMap<ValueId, Vec<f32>> = BTreeMap::new();
    stream(
        m,
        calib,
        recipe.batch_size,
        &want,
        "smooth-quant",
        &mut |v, a| {
            let rows = channel_rows(a, conv.get(&v).copied().unwrap_or(false))?;
            let e = amax.entry(v).or_insert_with(|| vec![0.0; rows.ncols()]);
            for row in rows.rows() {
                for (m, x) in e.iter_mut().zip(row) {
                    *m = m.max(x.abs());
                }
            }
            Ok(())
        },
    )?;
    let stats: HashMap<String, Vec<f32>> = amax
        .into_iter()
        .map(|(v, a)| (m.graph.value(v).name.clone(), a))
        .collect();
    let rep = super::smooth::smooth_quant(m, &stats, o)?;
    let muls = rep
        .smoothed
        .iter()
        .filter(|s| s.folded_into.starts_with("Mul"))
        .count();
    let mut lines = vec![format!(
        "smooth-quant: alpha {}, {} tensors smoothed ({} folded into the producer, {} through an inserted Mul), {} skipped",
        o.alpha,
        rep.smoothed.len(),
        rep.smoothed.len() - muls,
        muls,
        rep.skipped.len()
    )];
    lines.extend(
        rep.skipped
            .iter()
            .map(|(t, why)| format!("smooth-quant: skipped '{t}': {why}")),
    );
    Ok(lines)
}

/// `exponent-shift`: for every tensor read by layers with a minifloat activation format, ρ and
/// the per-channel offsets from `o.rows` activation rows of the first `o.samples` calibration
/// samples, folded into the model; the activation is then quantized per tensor with the generic
/// ExMy at the scale realising ρ (kept in `fixed`).
pub fn exponent_shift(
    m: &mut Model,
    recipe: &Recipe,
    calib: &Dataset,
    o: &ExponentShiftOptions,
    fixed: &mut Fixed,
) -> Result<Vec<String>, QuantizeError> {
    let r = recipe.resolve()?;
    let layers = plan::plan(m, &r)?;
    // tensor → (E, M, weight format of a consumer, conv)
    let mut cand: BTreeMap<ValueId, (u8, u8, Option<Format>, bool)> = BTreeMap::new();
    for l in &layers {
        let Some(Format::Float(f)) = l.act_format else {
            continue;
        };
        if f.exp_bits == 0 {
            continue;
        }
        if let Some(pl) = layer_of(&m.graph, l.node) {
            cand.entry(pl.input).or_insert((
                f.exp_bits,
                f.man_bits,
                l.weight_format,
                is_conv(&pl.kind),
            ));
        }
    }
    if cand.is_empty() {
        return Ok(vec![
            "exponent-shift: no layer has a minifloat activation format; nothing to shift".into(),
        ]);
    }
    let data = head(calib, o.samples);
    let batch = recipe.batch_size.min(CAPTURE_BATCH);
    let per_batch = o.rows.div_ceil(data.len().div_ceil(batch).max(1));
    let want: Vec<ValueId> = cand.keys().copied().collect();
    let mut rows: BTreeMap<ValueId, Vec<Array2<f32>>> = BTreeMap::new();
    stream(m, &data, batch, &want, "exponent-shift", &mut |v, a| {
        let conv = cand.get(&v).map(|c| c.3).unwrap_or(false);
        rows.entry(v)
            .or_default()
            .push(keep_rows(channel_rows(a, conv)?, per_batch));
        Ok(())
    })?;
    let mut lines = Vec::new();
    let (mut done, mut skipped) = (0, 0);
    for (v, (e, mm, wf, _)) in cand {
        let name = m.graph.value(v).name.clone();
        let parts = rows.remove(&v).unwrap_or_default();
        let cols = parts.first().map(|p| p.ncols()).unwrap_or(0);
        let x = concat_rows(&parts, cols)?;
        let consumers: Vec<NodeId> = m.graph.consumers(v).iter().map(|c| c.0).collect();
        match super::exponent_shift::exponent_shift(m, &name, x.view(), e, mm, wf.as_ref()) {
            Ok(rep) => {
                done += 1;
                let now = consumers
                    .first()
                    .and_then(|&n| m.graph.node(n).inputs.first().copied().flatten())
                    .map(|v| m.graph.value(v).name.clone())
                    .unwrap_or(name.clone());
                fixed.acts.insert(
                    now,
                    (Format::Float(FloatFormat::generic(e, mm)), rep.shift.scale),
                );
                let shifted = rep.shift.offsets.iter().filter(|&&k| k > 0).count();
                let kmax = rep.shift.offsets.iter().copied().max().unwrap_or(0);
                lines.push(format!(
                    "exponent-shift: '{name}' e{e}m{mm}: rho {:.3}, {shifted} of {} channels shifted (max k {kmax}), 2^k folded into {}, {} weight channels underflow{}",
                    rep.shift.rho,
                    rep.shift.offsets.len(),
                    rep.folded_into,
                    rep.underflow_channels.len(),
                    if rep.underflow_channels.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (channels {:?}{})",
                            &rep.underflow_channels[..rep.underflow_channels.len().min(16)],
                            if rep.underflow_channels.len() > 16 { ", …" } else { "" }
                        )
                    }
                ));
            }
            Err(err) => {
                skipped += 1;
                lines.push(format!("exponent-shift: skipped '{name}': {err}"));
            }
        }
    }
    lines.insert(
        0,
        format!("exponent-shift: {done} tensors shifted, {skipped} skipped"),
    );
    Ok(lines)
}

/// A compute layer the weight passes can handle, with the value feeding it.
struct Target {
    node: NodeId,
    name: String,
    weight: String,
    input: ValueId,
}

fn targets(m: &Model, q: &Quantized, what: &str, lines: &mut Vec<String>) -> Vec<Target> {
    let mut out = Vec::new();
    for l in &q.layers {
        let (Some(w), Some(wf)) = (&l.weight, l.weight_format) else {
            continue;
        };
        if matches!(wf, Format::Mx(_)) {
            lines.push(format!("{what}: {} skipped (MX weight format)", l.name));
            continue;
        }
        let Some(pl) = layer_of(&m.graph, l.node) else {
            lines.push(format!(
                "{what}: {} ({}) skipped (only Conv/Gemm/MatMul with a constant weight)",
                l.name, l.op
            ));
            continue;
        };
        out.push(Target {
            node: l.node,
            name: l.name.clone(),
            weight: m.graph.value(w.value).name.clone(),
            input: pl.input,
        });
    }
    out
}

fn by_input(ts: &[Target]) -> BTreeMap<ValueId, Vec<usize>> {
    let mut want: BTreeMap<ValueId, Vec<usize>> = BTreeMap::new();
    for (i, t) in ts.iter().enumerate() {
        want.entry(t.input).or_default().push(i);
    }
    want
}

/// `fp-search`: per layer, from the float inputs of the first `o.samples` calibration samples
/// (at most `o.rows` rows), the LLM-FP4 search (minifloats: formats of the bit budget and
/// exponent biases; integers: clip ratios) starting from the round-to-nearest quantizers in `q`.
/// Layers whose input tensor was searched already (shared by several layers) keep that
/// activation quantizer and search their weights only.
pub fn fp_search(
    m: &Model,
    recipe: &Recipe,
    calib: &Dataset,
    q: &Quantized,
    o: &FpSearchOptions,
    fixed: &mut Fixed,
) -> Result<Vec<String>, QuantizeError> {
    if recipe.granularity != Granularity::PerChannel {
        return Err(PassError::InvalidOption {
            pass: "fp-search".into(),
            option: "granularity".into(),
            reason:
                "fp-search chooses one weight scale per output channel; use per-channel weights"
                    .into(),
        }
        .into());
    }
    let mut lines = Vec::new();
    let mut ts = Vec::new();
    for t in targets(m, q, "fp-search", &mut lines) {
        let l = q.layers.iter().find(|l| l.node == t.node);
        match l.map(|l| (l.weight_format, l.act_format)) {
            Some((Some(Format::Float(_)), Some(Format::Float(_))))
            | Some((Some(Format::Int(_)), Some(Format::Int(_)))) => ts.push(t),
            _ => lines.push(format!(
                "fp-search: {} skipped (needs both formats minifloat or both integer, and a quantized input)",
                t.name
            )),
        }
    }
    let data = head(calib, o.samples);
    let batch = recipe.batch_size.min(CAPTURE_BATCH);
    let per_batch = o.rows.div_ceil(data.len().div_ceil(batch).max(1));
    let want = by_input(&ts);
    let mut xs: Vec<Vec<Vec<Array2<f32>>>> = ts.iter().map(|_| Vec::new()).collect();
    let keys: Vec<ValueId> = want.keys().copied().collect();
    stream(m, &data, batch, &keys, "fp-search capture", &mut |v, a| {
        for &i in want.get(&v).map(|x| x.as_slice()).unwrap_or(&[]) {
            let rows = layer_input_rows(&m.graph, ts[i].node, &a.view())?;
            if xs[i].is_empty() {
                xs[i] = rows.iter().map(|_| Vec::new()).collect();
            }
            for (acc, r) in xs[i].iter_mut().zip(rows) {
                acc.push(keep_rows(r, per_batch));
            }
        }
        Ok(())
    })?;
    let pb = crate::util::progress::bar(ts.len() as u64, "fp-search");
    let (mut before, mut after) = (0f64, 0f64);
    for (i, t) in ts.iter().enumerate() {
        pb.inc(1);
        let Some(l) = q.layers.iter().find(|l| l.node == t.node) else {
            continue;
        };
        let (Some(wf), Some(lf)) = (l.weight_format, l.act_format) else {
            continue;
        };
        let pl = layer_of(&m.graph, t.node).ok_or_else(|| model_err("layer vanished"))?;
        let w = constant_f32(&m.graph, pl.weight)
            .ok_or_else(|| model_err(format!("{}: weight not constant", t.name)))?;
        let mats = weight_matrices(&pl, &w)?;
        let x: Vec<Array2<f32>> = xs[i]
            .iter()
            .zip(&mats)
            .map(|(p, w)| concat_rows(p, w.ncols()))
            .collect::<Result<_, _>>()?;
        if x.len() != mats.len() || x.iter().any(|x| x.nrows() == 0) {
            lines.push(format!(
                "fp-search: {} skipped (no input rows captured)",
                t.name
            ));
            continue;
        }
        let Some(wq) = q.weights.get(&t.weight) else {
            continue;
        };
        let tensor = m.graph.value(t.input).name.clone();
        let aq = q
            .acts
            .get(&(tensor.clone(), lf.to_string()))
            .map(|a| (a.format, a.scale));
        let Some((af0, as0)) = fixed.acts.get(&tensor).copied().or(aq) else {
            continue;
        };
        let act_fixed = fixed.acts.contains_key(&tensor);
        let splits = |f: Format| -> Vec<Format> {
            match f {
                Format::Float(_) if o.formats => {
                    let mut v = vec![f];
                    v.extend(float_splits(f.bits()).into_iter().filter(|s| *s != f));
                    v
                }
                _ => vec![f],
            }
        };
        let space = SearchSpace {
            weight_formats: splits(wf),
            act_formats: splits(af0),
            act_fixed,
            rounds: o.rounds,
        };
        let start = Start {
            weight_format: wf,
            weight_scales: wq.scales.clone(),
            act_format: af0,
            act_scale: as0,
        };
        let res = search_layer(&mats, &x, &space, Some(start))?;
        before += res.mse_max_calibration;
        after += res.mse;
        lines.push(format!(
            "fp-search: {}: W {} A {} (scale {:.3e}{}), layer output MSE {:.4e} -> {:.4e}",
            t.name,
            res.weight_format,
            res.act_format,
            res.act_scale,
            if act_fixed { ", shared, kept" } else { "" },
            res.mse_max_calibration,
            res.mse
        ));
        // integer activations keep the recipe's format name (the unsigned choice is in the
        // fixed activation quantizer)
        let layer_act = if matches!(lf, Format::Int(_)) {
            lf
        } else {
            res.act_format
        };
        fixed
            .layer_formats
            .insert(t.name.clone(), (res.weight_format, layer_act));
        fixed
            .weight_scales
            .insert(t.weight.clone(), res.weight_scales);
        fixed.acts.insert(tensor, (res.act_format, res.act_scale));
    }
    pb.finish_and_clear();
    lines.insert(
        0,
        format!(
            "fp-search: {} layers searched on {} samples; summed layer output MSE {:.4e} -> {:.4e}",
            ts.len(),
            data.len(),
            before,
            after
        ),
    );
    Ok(lines)
}

/// Hessian accumulators (one per group) of every target layer's float inputs over `data`.
fn hessians(
    m: &Model,
    recipe: &Recipe,
    data: &Dataset,
    ts: &[Target],
    what: &str,
) -> Result<Vec<Vec<HessianAccumulator>>, QuantizeError> {
    let mut acc: Vec<Vec<HessianAccumulator>> = Vec::new();
    for t in ts {
        let (dim, groups) = hessian_dims(&m.graph, t.node)?;
        acc.push((0..groups).map(|_| HessianAccumulator::new(dim)).collect());
    }
    let want = by_input(ts);
    let keys: Vec<ValueId> = want.keys().copied().collect();
    let g = &m.graph;
    stream(
        m,
        data,
        recipe.batch_size.min(CAPTURE_BATCH),
        &keys,
        what,
        &mut |v, a| {
            for &i in want.get(&v).map(|x| x.as_slice()).unwrap_or(&[]) {
                let rows = layer_input_rows(g, ts[i].node, &a.view())?;
                for (h, r) in acc[i].iter_mut().zip(rows) {
                    h.update(r.view())?;
                }
            }
            Ok(())
        },
    )?;
    Ok(acc)
}

/// `gptq` or `learned-rounding`: Hessians `2/n·XᵀX` of every weight-quantized layer from its
/// float inputs over the calibration set (one per group), then each layer's weight rounded with
/// its own quantizer (format and per-channel scales from `q`, which stay fixed).
pub fn round_weights(
    m: &mut Model,
    recipe: &Recipe,
    calib: &Dataset,
    q: &Quantized,
    pass: &Pass,
    fixed: &mut Fixed,
) -> Result<Vec<String>, QuantizeError> {
    let what = pass.name();
    let mut lines = Vec::new();
    let ts = targets(m, q, what, &mut lines);
    // GPTQ's held-out check: the last `held` calibration samples are kept out of the fit.
    let held = match pass {
        Pass::Gptq(o) => (calib.len() as f64 * o.holdout).floor() as usize,
        _ => 0,
    };
    let check = held > 0 && held < calib.len();
    if let Pass::Gptq(o) = pass {
        lines.push(if check {
            format!(
                "gptq: held-out check on {held} of {} calibration samples (holdout {})",
                calib.len(),
                o.holdout
            )
        } else {
            format!(
                "gptq: no held-out check (holdout {} of {} calibration samples)",
                o.holdout,
                calib.len()
            )
        });
    }
    let (fit_data, held_data) = if check {
        let (a, b) = calib.split(calib.len() - held, None);
        (a, Some(b))
    } else {
        (calib.clone(), None)
    };
    let acc = hessians(m, recipe, &fit_data, &ts, &format!("{what} Hessians"))?;
    let acc_held = match &held_data {
        Some(d) => Some(hessians(m, recipe, d, &ts, "gptq held-out Hessians")?),
        None => None,
    };
    let pb = crate::util::progress::bar(ts.len() as u64, what);
    let (mut sum_rtn, mut sum_new) = (0f64, 0f64);
    let (mut by_gptq, mut reverted) = (0usize, 0usize);
    let finish = |accs: &[HessianAccumulator]| -> Result<Vec<Array2<f64>>, PassError> {
        accs.iter().map(|a| a.finish()).collect()
    };
    for (i, t) in ts.iter().enumerate() {
        pb.inc(1);
        let Some(wq) = q.weights.get(&t.weight) else {
            continue;
        };
        let scales = wq.scales.clone();
        let fmt = wq.format;
        let s = |o: usize| scales.get(o).copied().unwrap_or(scales[0]);
        match pass {
            Pass::Gptq(o) => {
                let groups = acc[i].len();
                let qz = fmt.quantizer(quant_formats::Rounding::HalfEven);
                let quantize = |oc: usize, v: f32| s(oc) * qz.quantize_one(v / s(oc), 0);
                let rounded = |res: &GptqResult, note: String| {
                    format!(
                        "gptq: {} ({groups} groups, damping {:.3e}, {} dead columns{note})",
                        t.name, res.damp, res.dead_columns
                    )
                };
                let line = match &acc_held {
                    None => {
                        let hs = finish(&acc[i])?;
                        let res = gptq_layer(&mut m.graph, t.node, &hs, quantize, o)?;
                        by_gptq += 1;
                        rounded(&res, String::new())
                    }
                    Some(held) => {
                        let (res, c) = gptq_layer_held_out(
                            &mut m.graph,
                            t.node,
                            &acc[i],
                            &held[i],
                            quantize,
                            o,
                        )?;
                        if let Some(res) = res {
                            by_gptq += 1;
                            rounded(
                                &res,
                                format!(
                                    "; held-out error {:.4e} vs round-to-nearest {:.4e}",
                                    c.gptq, c.nearest
                                ),
                            )
                        } else {
                            reverted += 1;
                            format!(
                                "gptq: {} rounded to nearest: GPTQ fitted on {} samples has held-out error {:.4e} >= round-to-nearest {:.4e}",
                                t.name,
                                fit_data.len(),
                                c.gptq,
                                c.nearest
                            )
                        }
                    }
                };
                lines.push(line);
            }
            Pass::LearnedRounding(o) => {
                let second: Vec<Array2<f64>> = finish(&acc[i])?.iter().map(|h| h / 2.0).collect();
                let opts = AdaRoundOptions {
                    progress: false,
                    ..*o
                };
                let res =
                    adaround::adaround_layer(&mut m.graph, t.node, &second, &fmt, &scales, &opts)?;
                let rtn: f64 = res.iter().map(|r| r.loss_nearest).sum();
                let new: f64 = res.iter().map(|r| r.loss_learned).sum();
                let flipped: usize = res.iter().map(|r| r.flipped).sum();
                sum_rtn += rtn;
                sum_new += new;
                lines.push(format!(
                    "learned-rounding: {} ({} groups, {} iterations): reconstruction {:.4e} -> {:.4e}, {} elements flipped vs nearest",
                    t.name,
                    res.len(),
                    o.iterations,
                    rtn,
                    new,
                    flipped
                ));
            }
            _ => {}
        }
        fixed.weight_scales.insert(t.weight.clone(), scales);
    }
    pb.finish_and_clear();
    let head_line = if matches!(pass, Pass::LearnedRounding(_)) {
        format!(
            "learned-rounding: {} layers; summed reconstruction loss {:.4e} -> {:.4e}",
            ts.len(),
            sum_rtn,
            sum_new
        )
    } else {
        format!(
            "gptq: {} layers rounded, {by_gptq} by GPTQ, {reverted} to nearest by the held-out check",
            ts.len()
        )
    };
    lines.insert(0, head_line);
    Ok(lines)
}

/// `correct-bias`: layer by layer in graph order, `b += E[y_float] − E[y_quant]` per output
/// channel over the calibration set, where `y_quant` comes from the quantized network with
/// every earlier correction applied (the float means come from `float_ref` in one pass).
///
/// The quantized network is materialized once and run incrementally, node by node in
/// topological order, over all correction samples at once (their live activations are held in
/// memory, one entry per batch of `recipe.batch_size`): when a corrected layer's output has
/// been computed, its mean gives the correction, the correction is written into `m`, and the
/// stored output is shifted by it, so every later layer sees the corrected network upstream.
/// This is what re-materializing and re-running the whole network after every layer computes
/// (activation quantizers are calibrated before the pass and fixed, so they do not depend on
/// the biases) at the cost of one forward pass instead of one per layer. The shift equals the
/// re-materialized output up to float rounding, and with int32 biases up to the bias's own
/// rounding (`s_w·s_a / 2`).
pub fn correct_bias(
    m: &mut Model,
    float_ref: &Model,
    recipe: &Recipe,
    calib: &Dataset,
    set: &ObserverSet,
    fixed: &Fixed,
    o: &BiasCorrectionOptions,
) -> Result<Vec<String>, QuantizeError> {
    let calib = &head(calib, o.samples.unwrap_or(usize::MAX));
    let r = recipe.resolve()?;
    let layers = plan::plan(m, &r)?;
    // (node name, output tensor name)
    let mut ts: Vec<(String, String)> = Vec::new();
    for l in &layers {
        if l.weight_format.is_none() {
            continue;
        }
        if let Some(pl) = layer_of(&m.graph, l.node) {
            ts.push((l.name.clone(), m.graph.value(pl.output).name.clone()));
        }
    }
    // the Relu/Clip each corrected output goes through (when it is its only reader): its bias
    // is chosen so that the mean after the clamp matches
    let clamps: HashMap<String, Clamp> = if o.pre_activation {
        HashMap::new()
    } else {
        ts.iter()
            .filter_map(|(_, out)| sole_clamp(m, out).map(|c| (out.clone(), c)))
            .collect()
    };
    // float means in one streamed pass
    let mut float_means: BTreeMap<String, ChannelMean> = BTreeMap::new();
    {
        let g = &float_ref.graph;
        let ids: Vec<(ValueId, String)> = ts
            .iter()
            .filter_map(|(_, out)| g.find_value(out).map(|v| (v, out.clone())))
            .collect();
        let names: HashMap<ValueId, String> = ids.iter().cloned().collect();
        let want: Vec<ValueId> = ids.iter().map(|x| x.0).collect();
        stream(
            float_ref,
            calib,
            recipe.batch_size,
            &want,
            "correct-bias float means",
            &mut |v, a| {
                let name = names.get(&v).cloned().unwrap_or_default();
                let axis = g
                    .producer(v)
                    .and_then(|(n, _)| output_channel_axis(g, n, a.ndim()))
                    .unwrap_or(1);
                let clamp = clamps.get(&name).copied();
                let e = means_entry(&mut float_means, name, a, axis);
                match clamp {
                    Some(c) => e.update(&a.mapv(|x| apply_clamp(x, c)).view())?,
                    None => e.update(&a.view())?,
                }
                Ok(())
            },
        )?;
    }
    // the quantized network, materialized once
    let sim = quantize_with_fixed(m, recipe, set, fixed)?.sim;
    let sg = &sim.graph;
    let order = sg.topo_order().map_err(model_err)?;
    let ops: Vec<Box<dyn crate::ops::Op>> = order
        .iter()
        .map(|&n| crate::interp::build_op(&sim, n).map_err(model_err))
        .collect::<Result<_, _>>()?;
    // last step reading each value (values that are graph outputs or constants are kept)
    let mut last: Vec<Option<usize>> = vec![None; sg.value_count()];
    for (i, &n) in order.iter().enumerate() {
        for v in sg.node(n).inputs.iter().flatten() {
            last[v.index()] = Some(i);
        }
    }
    let keep: HashSet<ValueId> = sg
        .outputs
        .iter()
        .copied()
        .chain(sg.value_ids().filter(|&v| sg.value(v).constant.is_some()))
        .collect();
    // corrected layers by the (sim) value of their output
    let targets: HashMap<ValueId, usize> = ts
        .iter()
        .enumerate()
        .filter_map(|(i, (_, out))| sg.find_value(out).map(|v| (v, i)))
        .collect();
    // one value table per batch, with constants and the batch's inputs
    let consts: Vec<(ValueId, std::sync::Arc<Tensor>)> = sg
        .value_ids()
        .filter(|&v| sg.producer(v).is_none())
        .filter_map(|v| sg.value(v).constant.clone().map(|c| (v, c)))
        .collect();
    let mut chunks: Vec<Vec<Option<std::sync::Arc<Tensor>>>> = Vec::new();
    for b in calib.batches(recipe.batch_size.max(1)).map_err(eval_err)? {
        let b = b.map_err(eval_err)?;
        let mut vals: Vec<Option<std::sync::Arc<Tensor>>> = vec![None; sg.value_count()];
        for (v, c) in &consts {
            vals[v.index()] = Some(c.clone());
        }
        for (name, a) in b.inputs {
            let v = sg
                .inputs
                .iter()
                .copied()
                .find(|&v| sg.value(v).name == name)
                .ok_or_else(|| model_err(format!("'{name}' is not an input of the model")))?;
            vals[v.index()] = Some(std::sync::Arc::new(Tensor::F32(a)));
        }
        chunks.push(vals);
    }
    let mut lines = Vec::new();
    let mut max_shift = 0f32;
    let mut done = 0usize;
    let mut after_clamp = 0usize;
    let pb = crate::util::progress::bar(order.len() as u64, "correct-bias");
    for (i, (&n, op)) in order.iter().zip(&ops).enumerate() {
        let node = sg.node(n);
        for vals in chunks.iter_mut() {
            let ins: Vec<Option<&Tensor>> = node
                .inputs
                .iter()
                .map(|x| x.and_then(|v| vals[v.index()].as_deref()))
                .collect();
            let outs = op
                .eval(&ins)
                .map_err(|e| model_err(format!("{}: {e}", node.label())))?;
            for (slot, t) in node.outputs.iter().zip(outs) {
                if let Some(v) = slot {
                    vals[v.index()] = Some(std::sync::Arc::new(t));
                }
            }
        }
        for v in node.outputs.iter().flatten() {
            let Some(&ti) = targets.get(v) else {
                continue;
            };
            let (name, out) = &ts[ti];
            let Some(fm) = float_means.get(out) else {
                continue;
            };
            let Some(mnode) = m
                .graph
                .node_ids()
                .into_iter()
                .find(|&x| m.graph.node(x).name == *name)
            else {
                continue;
            };
            // quantized mean over every batch
            let mut qm: Option<ChannelMean> = None;
            let mut axis = 1;
            for vals in &chunks {
                let Some(Tensor::F32(a)) = vals[v.index()].as_deref() else {
                    return Err(model_err(format!("output {out} of {name} is not f32")));
                };
                axis = output_channel_axis(&m.graph, mnode, a.ndim()).unwrap_or(1);
                let e = qm.get_or_insert_with(|| {
                    ChannelMean::new(a.shape().get(axis).copied().unwrap_or(1), axis)
                });
                e.update(&a.view())?;
            }
            let Some(qm) = qm else {
                continue;
            };
            let d = match clamps.get(out) {
                None => super::bias::correct_bias(&mut m.graph, mnode, &fm.mean(), &qm.mean())?,
                Some(&c) => {
                    let outs: Vec<&ndarray::ArrayD<f32>> = chunks
                        .iter()
                        .filter_map(|vals| match vals[v.index()].as_deref() {
                            Some(Tensor::F32(a)) => Some(a),
                            _ => None,
                        })
                        .collect();
                    let shift = clamped_mean_shift(&outs, axis, &fm.mean(), c);
                    after_clamp += 1;
                    super::bias::shift_bias(&mut m.graph, mnode, &shift)?
                }
            };
            // the corrected network's output of this layer
            for vals in chunks.iter_mut() {
                if let Some(Tensor::F32(a)) = vals[v.index()].as_deref() {
                    let mut a = a.clone();
                    for (c, mut lane) in a.axis_iter_mut(Axis(axis)).enumerate() {
                        let dc = d.get(c).copied().unwrap_or(0.0);
                        lane.mapv_inplace(|x| x + dc);
                    }
                    vals[v.index()] = Some(std::sync::Arc::new(Tensor::F32(a)));
                }
            }
            let big = d.iter().fold(0f32, |a, v| a.max(v.abs()));
            let mean_abs = d.iter().map(|v| v.abs()).sum::<f32>() / d.len().max(1) as f32;
            max_shift = max_shift.max(big);
            done += 1;
            lines.push(format!(
                "correct-bias: {name}: {} channels, mean |delta b| {mean_abs:.3e}, max {big:.3e}",
                d.len()
            ));
        }
        // free values this step read for the last time, and outputs nothing reads
        let unread = node
            .outputs
            .iter()
            .flatten()
            .filter(|v| last[v.index()].is_none());
        for v in node.inputs.iter().flatten().chain(unread) {
            if last[v.index()].is_none_or(|l| l == i) && !keep.contains(v) {
                for vals in chunks.iter_mut() {
                    vals[v.index()] = None;
                }
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    lines.insert(
        0,
        format!(
            "correct-bias: {done} of {} layers corrected on {} samples, {after_clamp} of them to the mean after their Relu/Clip (largest change {max_shift:.3e})",
            ts.len(),
            calib.len()
        ),
    );
    Ok(lines)
}

/// The clamp of the Relu/Clip that is the only reader of tensor `out` (with constant bounds),
/// when there is one and `out` is not a graph output.
fn sole_clamp(m: &Model, out: &str) -> Option<Clamp> {
    let g = &m.graph;
    let v = g.find_value(out)?;
    if g.outputs.contains(&v) {
        return None;
    }
    let [(n, 0)] = g.consumers(v)[..] else {
        return None;
    };
    let node = g.node(n);
    let onnx = node.domain.is_empty() || node.domain == "ai.onnx";
    if !onnx || !matches!(node.op_type.as_str(), "Relu" | "Clip") {
        return None;
    }
    let op = crate::interp::build_op(m, n).ok()?;
    crate::interp::constant_clamp(g, &node.inputs, op.as_ref())
}

fn apply_clamp(x: f32, c: Clamp) -> f32 {
    let x = c.lo.map_or(x, |l| x.max(l));
    c.hi.map_or(x, |h| x.min(h))
}

/// Per channel (along `axis` of every array in `outs`), the shift `d` of the layer output for
/// which the mean of `clamp(y + d)` equals `target`: safeguarded Newton steps on the monotone
/// function `d ↦ mean(clamp(y + d))` (its slope is the fraction of values inside the bounds),
/// bisecting within the bracket found so far when a step leaves it.
fn clamped_mean_shift(
    outs: &[&ndarray::ArrayD<f32>],
    axis: usize,
    target: &[f64],
    c: Clamp,
) -> Vec<f64> {
    use rayon::prelude::*;
    let width = match (c.lo, c.hi) {
        (Some(l), Some(h)) => f64::from(h - l).max(1e-6),
        _ => 1.0,
    };
    (0..target.len())
        .into_par_iter()
        .map(|ch| {
            let t = target[ch];
            // mean of clamp(y + d) and the fraction of values strictly inside the bounds
            let at = |d: f64| {
                let (mut sum, mut inside, mut n) = (0f64, 0u64, 0u64);
                for a in outs {
                    for &y in a.index_axis(Axis(axis), ch).iter() {
                        let x = (f64::from(y) + d) as f32;
                        let z = apply_clamp(x, c);
                        sum += f64::from(z);
                        inside += u64::from(z == x && c.lo != Some(x) && c.hi != Some(x));
                        n += 1;
                    }
                }
                let n = n.max(1) as f64;
                (sum / n, inside as f64 / n)
            };
            let tol = 1e-7 * (width + t.abs());
            let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
            let (mut d, mut step) = (0f64, width);
            for _ in 0..100 {
                let (mean, slope) = at(d);
                let r = mean - t;
                if r.abs() <= tol {
                    break;
                }
                if r < 0.0 {
                    lo = d;
                } else {
                    hi = d;
                }
                let newton = d - r / slope;
                d = if slope > 0.0 && newton > lo && newton < hi {
                    newton
                } else if lo.is_finite() && hi.is_finite() {
                    0.5 * (lo + hi)
                } else {
                    step *= 2.0;
                    if lo.is_finite() {
                        lo + step
                    } else {
                        hi - step
                    }
                };
            }
            d
        })
        .collect()
}

fn means_entry<'a>(
    means: &'a mut BTreeMap<String, ChannelMean>,
    name: String,
    a: &ArrayD<f32>,
    axis: usize,
) -> &'a mut ChannelMean {
    means
        .entry(name)
        .or_insert_with(|| ChannelMean::new(a.shape().get(axis).copied().unwrap_or(1), axis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::AttrValue;
    use crate::kernels::testutil::rand_array;
    use crate::passes::equalize::tests::B;
    use ndarray::IxDyn;

    const N: usize = 16;

    /// Conv 4→8 (3×3, pads 1) → Clip(0, 1.5) → Conv 8→4 (1×1); returns the model and the name of
    /// the Clip output.
    fn conv_clip_conv() -> (Model, String) {
        let mut b = B::new();
        let x = b.input("x", &[N, 4, 8, 8]);
        let w1 = b.constant(rand_array(&[8, 4, 3, 3], 1));
        let b1 = b.constant(rand_array(&[8], 2).mapv(|v| v * 0.5));
        let y1 = b.node(
            "Conv",
            vec![x, w1, b1],
            vec![("pads", AttrValue::Ints(vec![1, 1, 1, 1]))],
            Some(&[N, 8, 8, 8]),
        );
        let lo = b.constant(ArrayD::from_elem(IxDyn(&[]), 0.0));
        let hi = b.constant(ArrayD::from_elem(IxDyn(&[]), 1.5));
        let a1 = b.node("Clip", vec![y1, lo, hi], vec![], Some(&[N, 8, 8, 8]));
        let w2 = b.constant(rand_array(&[4, 8, 1, 1], 3));
        let b2 = b.constant(rand_array(&[4], 4));
        let y2 = b.node("Conv", vec![a1, w2, b2], vec![], Some(&[N, 4, 8, 8]));
        b.m.graph.outputs.push(y2);
        let name = b.m.graph.value(a1).name.clone();
        (b.m, name)
    }

    struct Means {
        name: String,
        sum: Vec<f64>,
        count: usize,
    }

    impl Observer for Means {
        fn observe(&mut self, _v: ValueId, name: &str, t: &Tensor) {
            if let (true, Tensor::F32(a)) = (name == self.name, t) {
                for (c, lane) in a.axis_iter(Axis(1)).enumerate() {
                    self.sum[c] += lane.iter().map(|&v| f64::from(v)).sum::<f64>();
                }
                self.count += a.len() / a.shape()[1];
            }
        }
    }

    fn means(m: &Model, x: &ArrayD<f32>, name: &str) -> Vec<f64> {
        let mut obs = Means {
            name: name.into(),
            sum: vec![0.0; 8],
            count: 0,
        };
        Interpreter::new(m)
            .expect("interpreter")
            .run_observed(&[("x".into(), Tensor::F32(x.clone()))], &mut obs)
            .expect("run");
        obs.sum.iter().map(|s| s / obs.count as f64).collect()
    }

    #[test]
    fn correct_bias_matches_the_mean_after_a_clamp() {
        let (model, clip_out) = conv_clip_conv();
        let x = rand_array(&[N, 4, 8, 8], 5);
        let inputs = crate::quant::pipeline::data_inputs(&model);
        let ds = Dataset::from_arrays("<test>", &inputs, vec![("x".into(), x.clone())])
            .expect("dataset");
        let worst = |pre_activation: bool| {
            let mut opts = toml::Table::new();
            opts.insert(
                "pre-activation".into(),
                toml::Value::Boolean(pre_activation),
            );
            let recipe = Recipe {
                weights: "int3".into(),
                acts: "int3".into(),
                passes: vec!["correct-bias".into()],
                pass_options: [("correct-bias".to_string(), opts)].into_iter().collect(),
                batch_size: N,
                ..Recipe::default()
            };
            let mut m = model.clone();
            crate::quant::prepare_recipe(&mut m, &recipe).expect("prepare");
            let r = crate::quant::pipeline::quantize(&m, &recipe, &ds).expect("quantize");
            let (f, q) = (means(&r.float, &x, &clip_out), means(&r.sim, &x, &clip_out));
            f.iter()
                .zip(&q)
                .fold(0f64, |w, (a, b)| w.max((a - b).abs()))
        };
        let (post, pre) = (worst(false), worst(true));
        eprintln!("max |mean error| after the Clip: {post:.3e} (pre-activation rule {pre:.3e})");
        assert!(post < 1e-5, "{post:.3e}");
        assert!(pre > 100.0 * post.max(1e-7), "{pre:.3e} vs {post:.3e}");
    }
}
