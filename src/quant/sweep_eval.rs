//! The evaluator `mfq sweep MODEL` runs for each configuration. Shared work is done once: the
//! model is imported and prepared once, the float outputs on the evaluation set are computed
//! once, calibration statistics are gathered once per (passes, calibration method) and reused by
//! every format, and layer shapes for costing are inferred once. Each configuration may carry its
//! own pass list: the model is prepared once per list of function-preserving passes (with
//! calibration statistics per prepared model), and weight passes such as GPTQ run through
//! `pipeline::quantize` for that configuration. The quantized model is evaluated by [`FastSim`].
//! Outputs other than `[N, classes]` are scored against the float model only (top-1 agreement
//! of the flattened output, SQNR, cosine).

use std::collections::BTreeMap;

use ndarray::ArrayD;

use crate::calib::ObserverSet;
use crate::data::Dataset;
use crate::interp::Interpreter;
use crate::ir::{Model, ValueId};
use crate::metrics::{Accuracy, Cosine, PairMetric, Sqnr, Top1Agreement};
use crate::sweep::{AccuracyKind, ConfigOutcome, ConfigRecipe, CostFigures, Memo};
use crate::tensor::Tensor;

use super::pipeline::{self, QuantizeError};
use super::recipe::{Granularity, Recipe, Resolved};

/// Float outputs of one evaluation batch.
struct EvalBatch {
    feeds: Vec<(String, Tensor)>,
    /// The single data input split into the chunks [`Interpreter::run_batched`] would run
    /// (empty when the model has several inputs).
    chunks: Vec<ArrayD<f32>>,
    float_out: ArrayD<f32>,
    labels: Option<Vec<i64>>,
}

/// Shared state of a sweep over one model.
pub struct SweepEvaluator {
    /// The model as imported (each pass list prepares its own copy).
    raw: Model,
    /// The model prepared with the base recipe's passes: float reference and layer shapes.
    model: Model,
    /// Prepared models by function-preserving pass list (the base list maps to `model`).
    prepared: Memo<Vec<String>, Model>,
    base: Recipe,
    calib: Dataset,
    batches: Vec<EvalBatch>,
    output: String,
    /// Largest dot-product length and weight element count per layer name (format-independent).
    max_n: u64,
    weight_counts: BTreeMap<String, u64>,
    /// Calibration statistics by (function-preserving pass list, histogram need).
    stats: Memo<(Vec<String>, bool), ObserverSet>,
}

/// The passes of `passes` that prepare the float model (function-preserving, run before
/// calibration), in order: every pass the pipeline does not list as a weight pass.
fn pre_passes(passes: &[String]) -> Vec<String> {
    passes
        .iter()
        .filter(|p| !pipeline::WEIGHT_PASSES.contains(&p.as_str()))
        .cloned()
        .collect()
}

/// True when `passes` holds a pass that changes how weights are quantized (it then runs
/// through [`pipeline::quantize`], which calibrates for it).
fn has_weight_pass(passes: &[String]) -> bool {
    passes
        .iter()
        .any(|p| pipeline::WEIGHT_PASSES.contains(&p.as_str()))
}

fn err(e: impl std::fmt::Display) -> QuantizeError {
    QuantizeError::Eval(e.to_string())
}

impl SweepEvaluator {
    /// Prepares the shared work: the float model (after `base.passes`) and its outputs on `eval`.
    pub fn new(
        raw: Model,
        base: Recipe,
        calib: Dataset,
        eval: &Dataset,
    ) -> Result<Self, QuantizeError> {
        let mut model = raw.clone();
        pipeline::prepare(&mut model, &pre_passes(&base.passes))?;
        let interp = Interpreter::new(&model).map_err(err)?;
        let output = interp
            .output_names()
            .into_iter()
            .next()
            .ok_or_else(|| err("the model has no output"))?;
        let mut batches = Vec::new();
        for b in eval.batches(base.batch_size).map_err(err)? {
            let b = b.map_err(err)?;
            let feeds: Vec<(String, Tensor)> = b
                .inputs
                .into_iter()
                .map(|(n, a)| (n, Tensor::F32(a)))
                .collect();
            let outs = interp.run_batched(&feeds, None).map_err(err)?;
            let chunks = match feeds.as_slice() {
                [(_, Tensor::F32(a))] => {
                    let n = a.shape().first().copied().unwrap_or(1);
                    let chunk = interp.fixed_batch().unwrap_or_else(|| n.div_ceil(2)).max(1);
                    (0..n)
                        .step_by(chunk)
                        .map(|s| {
                            a.slice_axis(
                                ndarray::Axis(0),
                                ndarray::Slice::from(s..(s + chunk).min(n)),
                            )
                            .to_owned()
                        })
                        .collect()
                }
                _ => Vec::new(),
            };
            let float_out = outs
                .into_iter()
                .find(|o| o.0 == output)
                .ok_or_else(|| err("missing output"))?
                .1
                .to_f32()
                .map_err(err)?;
            batches.push(EvalBatch {
                feeds,
                chunks,
                float_out,
                labels: b.labels,
            });
        }
        let layers = super::plan::plan(&model, &base.resolve()?)?;
        let descs = super::cost::layer_descs(&model, &layers).map_err(err)?;
        let max_n = descs.iter().map(|d| d.n).max().unwrap_or(1);
        let weight_counts = descs
            .iter()
            .map(|d| (d.name.clone(), d.weight_count))
            .collect();
        Ok(SweepEvaluator {
            raw,
            model,
            prepared: Memo::new(),
            base,
            calib,
            batches,
            output,
            max_n,
            weight_counts,
            stats: Memo::new(),
        })
    }

    /// The recipe of one sweep configuration (unset axes keep the base recipe's values), with
    /// its options parsed.
    pub fn recipe(&self, c: &ConfigRecipe) -> Result<(Recipe, Resolved), QuantizeError> {
        let mut r = self.base.clone();
        r.weights = c.weights.clone();
        r.acts = c.acts.clone();
        if let Some(f) = &c.first_last {
            r.first_last = if f == "same" { None } else { Some(f.clone()) };
        }
        if let Some(g) = &c.granularity {
            r.granularity = match g.as_str() {
                "per-tensor" => Granularity::PerTensor,
                "per-channel" => Granularity::PerChannel,
                other => {
                    return Err(QuantizeError::Recipe(super::recipe::RecipeError::Invalid {
                        option: "granularity".into(),
                        reason: format!("'{other}' (expected per-channel or per-tensor)"),
                    }))
                }
            };
        }
        if let Some(m) = &c.calib_method {
            r.calib_method = m.clone();
        }
        if let Some(s) = c.seed {
            r.seed = s;
        }
        if let Some(p) = &c.passes {
            let known =
                |x: &str| pipeline::PRE_PASSES.contains(&x) || pipeline::WEIGHT_PASSES.contains(&x);
            if let Some(bad) = p.iter().find(|x| !known(x)) {
                return Err(QuantizeError::Recipe(super::recipe::RecipeError::Invalid {
                    option: "passes".into(),
                    reason: format!(
                        "unknown or unavailable pass '{bad}' (available: {}, {})",
                        pipeline::PRE_PASSES.join(", "),
                        pipeline::WEIGHT_PASSES.join(", ")
                    ),
                }));
            }
            r.passes = p.clone();
        }
        let resolved = r.resolve()?;
        Ok((r, resolved))
    }

    /// The float model prepared with the function-preserving passes of `passes` (computed
    /// once per distinct pass list).
    fn prepared_for(&self, pre: &[String]) -> Result<std::sync::Arc<Model>, QuantizeError> {
        if pre == pre_passes(&self.base.passes).as_slice() {
            return self
                .prepared
                .get_or_try_insert(&pre.to_vec(), || Ok(self.model.clone()));
        }
        self.prepared.get_or_try_insert(&pre.to_vec(), || {
            let mut m = self.raw.clone();
            pipeline::prepare(&mut m, pre)?;
            Ok(m)
        })
    }

    fn stats_for(
        &self,
        model: &Model,
        pre: &[String],
        r: &Recipe,
        needs_hist: bool,
    ) -> Result<std::sync::Arc<ObserverSet>, QuantizeError> {
        // Statistics cover every compute layer's input, whatever the formats: one set per
        // (prepared model, histogram need) serves all configurations.
        self.stats
            .get_or_try_insert(&(pre.to_vec(), needs_hist), || {
                pipeline::calibration_stats(model, r, &self.calib)
            })
    }

    /// Quantizes configuration `c` (the recipe, its quantization result).
    fn quantize(
        &self,
        c: &ConfigRecipe,
    ) -> Result<(Resolved, pipeline::QuantizeResult), QuantizeError> {
        let (r, resolved) = self.recipe(c)?;
        let pre = pre_passes(&r.passes);
        let model = self.prepared_for(&pre)?;
        let res = if has_weight_pass(&r.passes) {
            // Weight passes (GPTQ, …) run inside the pipeline, which calibrates for them.
            pipeline::quantize(&model, &r, &self.calib)?
        } else {
            let stats = self.stats_for(&model, &pre, &r, resolved.clip.needs_histogram())?;
            pipeline::quantize_with_stats(&model, &r, &stats)?
        };
        Ok((resolved, res))
    }

    /// The simulation graph's output on every evaluation batch, by [`FastSim`] when the graph
    /// compiles to it, otherwise (or with `interpreter`) by the [`Interpreter`].
    fn outputs(&self, sim: &Model, interpreter: bool) -> Result<Vec<ArrayD<f32>>, QuantizeError> {
        let fast = if !interpreter && self.batches.iter().all(|b| !b.chunks.is_empty()) {
            FastSim::new(sim).ok()
        } else {
            None
        };
        if let Some(f) = fast {
            use rayon::prelude::*;
            return self
                .batches
                .iter()
                .map(|b| {
                    let parts: Vec<ArrayD<f32>> = b
                        .chunks
                        .par_iter()
                        .map(|c| f.run_chunk(pooled_copy(c)))
                        .collect::<Result<_, _>>()?;
                    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
                    ndarray::concatenate(ndarray::Axis(0), &views).map_err(err)
                })
                .collect();
        }
        let qi = Interpreter::new(sim).map_err(err)?;
        self.batches
            .iter()
            .map(|b| {
                qi.run_batched(&b.feeds, None)
                    .map_err(err)?
                    .into_iter()
                    .find(|o| o.0 == self.output)
                    .ok_or_else(|| err("missing output"))?
                    .1
                    .to_f32()
                    .map_err(err)
            })
            .collect()
    }

    /// The quantized model's output for configuration `c` on every evaluation batch, as
    /// [`SweepEvaluator::evaluate`] scores it, or (with `interpreter`) as the interpreter
    /// computes it from the same simulation graph (the two are bit-identical).
    pub fn simulate(
        &self,
        c: &ConfigRecipe,
        interpreter: bool,
    ) -> Result<Vec<ArrayD<f32>>, QuantizeError> {
        let (_, res) = self.quantize(c)?;
        self.outputs(&res.sim, interpreter)
    }

    /// Evaluates one configuration.
    pub fn evaluate(&self, c: &ConfigRecipe) -> Result<ConfigOutcome, QuantizeError> {
        let (resolved, res) = self.quantize(c)?;
        let outs = self.outputs(&res.sim, false)?;
        let mut acc = Accuracy::default();
        let mut agree = Top1Agreement::default();
        let mut sqnr = Sqnr::default();
        let mut cos = Cosine::default();
        let mut labelled = true;
        for (b, q) in self.batches.iter().zip(outs) {
            // Labels score classifiers ([N, classes] outputs); other outputs (saliency maps,
            // images) are scored against the float model only.
            match &b.labels {
                Some(l) if b.float_out.ndim() == 2 => acc.update(q.view(), l).map_err(err)?,
                _ => labelled = false,
            }
            agree.update(b.float_out.view(), q.view()).map_err(err)?;
            sqnr.update(b.float_out.view(), q.view()).map_err(err)?;
            cos.update(b.float_out.view(), q.view()).map_err(err)?;
        }
        let agreement = agree.finish().map_err(err)?;
        let (accuracy, kind) = if labelled {
            (acc.finish().map_err(err)?.top1, AccuracyKind::Top1)
        } else {
            (agreement, AccuracyKind::Agreement)
        };
        let mut fidelity = BTreeMap::new();
        fidelity.insert("top1_agreement".to_string(), agreement);
        let s = sqnr.finish().map_err(err)?;
        if s.is_finite() {
            fidelity.insert("sqnr_db".to_string(), s);
        }
        let cs = cos.finish().map_err(err)?;
        if cs.is_finite() {
            fidelity.insert("cosine".to_string(), cs);
        }
        let mac =
            super::cost::mac_cost(&resolved.weights, &resolved.acts, self.max_n).map_err(err)?;
        let weight_bits: u64 = res
            .quantized
            .layers
            .iter()
            .filter_map(|l| {
                Some(self.weight_counts.get(&l.name)? * u64::from(l.weight_format?.bits()))
            })
            .sum();
        let mut other = BTreeMap::new();
        other.insert("acc_bits".to_string(), f64::from(mac.acc_bits));
        other.insert("mac_ff".to_string(), mac.ff as f64);
        Ok(ConfigOutcome {
            accuracy,
            accuracy_kind: kind,
            fidelity,
            cost: CostFigures {
                mac_lut: mac.lut as f64,
                dataflow_lut: None,
                weight_mem_bits: Some(weight_bits as f64),
                other,
            },
        })
    }
}

/// Element-wise ops with a constant operand that [`FastSim`] applies in place.
#[derive(Debug, Clone, Copy)]
enum BinOp {
    Add,
    Mul,
}

/// How one step of a [`FastSim`] program computes its output.
enum StepKind {
    /// Any op, through the interpreter's own implementation.
    Generic(Box<dyn crate::ops::Op>),
    /// `max(x, 0)` in place.
    Relu,
    /// `x ∘ c` in place, `c` a constant broadcast to `x` (Add and Mul are commutative).
    /// With `relu`, `max(x ∘ c, 0)` in the same pass (an Add/Mul whose only reader is a Relu).
    BinConst {
        op: BinOp,
        c: ArrayD<f32>,
        relu: bool,
    },
    /// 2-D max pooling without padding or dilation, in the kernel's tap order.
    MaxPool2d { k: [usize; 2], s: [usize; 2] },
    /// 2-D convolution, one group, more than one input channel, constant weights and bias:
    /// the interpreter kernel's im2col + [`crate::kernels::matmul::sgemm`] per image (the same
    /// GEMM call on the same operands, then the bias), with the im2col buffer reused.
    Conv2d(Box<ConvStep>),
    /// QONNX Quant with scalar parameters: `(Q(x/s + z) − z)·s` in place.
    IntQuant {
        q: quant_formats::Quantizer,
        s: f32,
        z: f32,
    },
    /// QONNX FloatQuant with scalar parameters, in place.
    FloatQuant {
        q: quant_formats::Quantizer,
        s: f32,
        mx: f32,
        saturate: bool,
        has_inf: bool,
        /// The clamp to `±mx` can never act (saturating, and the format's largest value is at
        /// most `mx`), so the step is exactly `Q(x/s)·s`.
        plain: bool,
    },
}

/// A convolution [`FastSim`] runs itself (see [`StepKind::Conv2d`]).
struct ConvStep {
    /// Weights `[M, C·kh·kw]`, row-major.
    w: Vec<f32>,
    bias: Option<Vec<f32>>,
    m: usize,
    c: usize,
    k: [usize; 2],
    strides: [usize; 2],
    dil: [usize; 2],
    /// Explicit pads `[top, left, bottom, right]`, or `None` for SAME_UPPER/SAME_LOWER.
    pads: Option<[usize; 4]>,
    same_upper: bool,
}

impl ConvStep {
    /// Begin and end pads of one spatial dimension, as the Conv op resolves them.
    fn pads(&self, i: usize, input: usize) -> (usize, usize) {
        match self.pads {
            Some(p) => (p[i], p[i + 2]),
            None => {
                let out = input.div_ceil(self.strides[i].max(1));
                let need =
                    out.saturating_sub(1) * self.strides[i] + (self.k[i] - 1) * self.dil[i] + 1;
                let total = need.saturating_sub(input);
                let small = total / 2;
                if self.same_upper {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            }
        }
    }
}

thread_local! {
    /// im2col and padded-plane buffers of the current thread, reused across images and chunks.
    #[allow(clippy::type_complexity)]
    static COL: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Fills `col[(c, ky, kx), (oy, ox)]` with `x[c, oy·s − pt + ky·d, ox·s − pl + kx·d]` (zero
/// outside the input); `x` is one image `[C, H, W]`. Every element is written.
///
/// Each channel is first copied into a zero-padded plane `pad` covering exactly the rows and
/// columns the windows read, so every output row of every tap is one contiguous (or, with a
/// column stride, strided) run of that plane, with no bounds logic per row. The short rows of
/// small feature maps (W1: 14 columns) are copied with fixed-size moves instead of `memcpy`
/// calls.
#[allow(clippy::too_many_arguments)]
fn im2col_2d(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    (oh, ow): (usize, usize),
    cv: &ConvStep,
    (pt, pl): (usize, usize),
    col: &mut [f32],
    pad: &mut Vec<f32>,
) {
    let [kh, kw] = cv.k;
    let [sh, sw] = cv.strides;
    let [dh, dw] = cv.dil;
    let op = oh * ow;
    let ph = (oh - 1) * sh + (kh - 1) * dh + 1;
    let pw = (ow - 1) * sw + (kw - 1) * dw + 1;
    pad.clear();
    pad.resize(ph * pw, 0.0);
    // Padded rows/columns that map into the input: [r_lo, r_hi) × [c_lo, c_hi).
    let (r_lo, r_hi) = (pt.min(ph), (pt + h).min(ph));
    let (c_lo, c_hi) = (pl.min(pw), (pl + w).min(pw));
    for ci in 0..c {
        let xp = &x[ci * h * w..(ci + 1) * h * w];
        if c_lo < c_hi {
            for r in r_lo..r_hi {
                let src = &xp[(r - pt) * w + (c_lo - pl)..(r - pt) * w + (c_hi - pl)];
                pad[r * pw + c_lo..r * pw + c_hi].copy_from_slice(src);
            }
        }
        for ky in 0..kh {
            for kx in 0..kw {
                let r = (ci * kh + ky) * kw + kx;
                let dst = &mut col[r * op..(r + 1) * op];
                for (oy, drow) in dst.chunks_exact_mut(ow).enumerate() {
                    let start = (oy * sh + ky * dh) * pw + kx * dw;
                    if sw == 1 {
                        copy_run(drow, &pad[start..start + ow]);
                    } else {
                        let src = &pad[start..start + (ow - 1) * sw + 1];
                        for (d, v) in drow.iter_mut().zip(src.chunks(sw)) {
                            *d = v[0];
                        }
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)`, with runs of 8 to 16 elements done as two overlapping 8-element
/// moves (no library call).
#[inline]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    if (8..=16).contains(&n) && src.len() == n {
        let (a, b): (&[f32; 8], &[f32; 8]) = (
            src[..8].try_into().expect("8 elements"),
            src[n - 8..].try_into().expect("8 elements"),
        );
        dst[..8].copy_from_slice(a);
        dst[n - 8..].copy_from_slice(b);
    } else {
        dst.copy_from_slice(src);
    }
}

/// Runs a [`ConvStep`] on `x` `[N, C, H, W]`: per image, im2col then the same
/// [`crate::kernels::matmul::sgemm`] call as the interpreter's convolution kernel, then the
/// bias, images in parallel.
fn conv2d_gemm(x: &ArrayD<f32>, cv: &ConvStep) -> Result<ArrayD<f32>, String> {
    use rayon::prelude::*;
    if x.ndim() != 4 || x.shape()[1] != cv.c {
        return Err(format!(
            "Conv input {:?} does not match {} input channels",
            x.shape(),
            cv.c
        ));
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (pt, pb) = cv.pads(0, h);
    let (pl, pr) = cv.pads(1, w);
    let out_len = |i: usize, len: usize, b: usize, e: usize| {
        crate::kernels::conv::conv_output_len(len, cv.k[i], cv.strides[i], cv.dil[i], b, e)
            .ok_or_else(|| format!("Conv input {:?} smaller than the kernel", x.shape()))
    };
    let (oh, ow) = (out_len(0, h, pt, pb)?, out_len(1, w, pl, pr)?);
    let xs = x.as_standard_layout();
    let xd = xs.as_slice().ok_or("Conv input not contiguous")?;
    let (m, op, kk, img) = (cv.m, oh * ow, c * cv.k[0] * cv.k[1], c * h * w);
    // Every element is written below (GEMMs that overwrite, then the bias).
    let mut out = crate::kernels::buffer::take(n * m * op);
    if !out.is_empty() {
        out.par_chunks_mut(m * op)
            .enumerate()
            .try_for_each(|(i, o)| -> Result<(), String> {
                // Taken out of the thread-local slot (a nested job on this thread gets its own).
                let (mut col, mut pad) = COL.with(|c| std::mem::take(&mut *c.borrow_mut()));
                col.resize(kk * op, 0.0);
                im2col_2d(
                    &xd[i * img..(i + 1) * img],
                    (c, h, w),
                    (oh, ow),
                    cv,
                    (pt, pl),
                    &mut col,
                    &mut pad,
                );
                let r = crate::kernels::conv::gemm_bias_act(
                    &cv.w,
                    &col,
                    cv.bias.as_deref(),
                    (m, kk, op),
                    crate::kernels::conv::Clamp::NONE,
                    o,
                );
                COL.with(|c| *c.borrow_mut() = (col, pad));
                r.map_err(|e| e.to_string())
            })?;
    }
    ArrayD::from_shape_vec(vec![n, m, oh, ow], out).map_err(|e| e.to_string())
}

struct SimStep {
    kind: StepKind,
    label: String,
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<ValueId>>,
    /// Values whose last use is this step.
    free: Vec<ValueId>,
}

/// The simulation graph compiled for repeated evaluation: the same op implementations as
/// [`Interpreter`] (so the same numbers, bit for bit), with element-wise steps (QONNX
/// quantizers with scalar parameters, Relu, Add/Mul by a constant) done in place on a tensor
/// whose last use they are, and 2-D max pooling without padding done by a direct loop (max is
/// exact, taps are visited in the kernel's order). Batches are split into the same chunks as
/// [`Interpreter::run_batched`].
pub struct FastSim {
    steps: Vec<SimStep>,
    n_values: usize,
    consts: Vec<(ValueId, std::sync::Arc<Tensor>)>,
    input: ValueId,
    output: ValueId,
}

fn attr_int(node: &crate::ir::Node, name: &str) -> Option<i64> {
    match node.attr(name).map(|a| &a.value) {
        Some(crate::ir::AttrValue::Int(i)) => Some(*i),
        _ => None,
    }
}

fn attr_ints(node: &crate::ir::Node, name: &str) -> Option<Vec<i64>> {
    match node.attr(name).map(|a| &a.value) {
        Some(crate::ir::AttrValue::Ints(v)) => Some(v.clone()),
        _ => None,
    }
}

fn attr_str(node: &crate::ir::Node, name: &str) -> Option<String> {
    match node.attr(name).map(|a| &a.value) {
        Some(crate::ir::AttrValue::String(s)) => Some(String::from_utf8_lossy(s).into_owned()),
        _ => None,
    }
}

/// Only these attributes may be present for a specialised step; anything else keeps the
/// generic op (which validates it).
fn only_attrs(node: &crate::ir::Node, allowed: &[&str]) -> bool {
    node.attrs
        .iter()
        .all(|a| allowed.contains(&a.name.as_str()))
}

/// The sliding-window attributes Conv and MaxPool share.
const WINDOW_ATTRS: [&str; 5] = ["kernel_shape", "strides", "pads", "dilations", "auto_pad"];

/// [`only_attrs`] for a windowed op: the window attributes plus `extra`.
fn only_window_attrs(node: &crate::ir::Node, extra: &[&str]) -> bool {
    node.attrs.iter().all(|a| {
        let n = a.name.as_str();
        WINDOW_ATTRS.contains(&n) || extra.contains(&n)
    })
}

/// A [`ConvStep`] for a Conv node the interpreter's kernel runs by im2col + GEMM (2-D, one
/// group, more than one input channel, constant weights and bias, known attributes only).
fn conv_step(g: &crate::ir::Graph, node: &crate::ir::Node) -> Option<ConvStep> {
    if !only_window_attrs(node, &["group"]) || attr_int(node, "group").unwrap_or(1) != 1 {
        return None;
    }
    let konst = |i: usize| -> Option<ArrayD<f32>> {
        let v = node.inputs.get(i).copied().flatten()?;
        if g.producer(v).is_some() {
            return None;
        }
        g.value(v).constant.as_ref()?.as_f32().cloned()
    };
    let w = konst(1)?;
    let &[m, c, kh, kw] = w.shape() else {
        return None;
    };
    let bias = match node.inputs.get(2).copied().flatten() {
        Some(_) => Some(konst(2)?),
        None => None,
    };
    if c < 2 || m == 0 || kh == 0 || kw == 0 || bias.as_ref().is_some_and(|b| b.shape() != [m]) {
        return None;
    }
    let pair = |name: &str| -> Option<[usize; 2]> {
        match attr_ints(node, name) {
            None => Some([1, 1]),
            Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 1) => {
                Some([v[0] as usize, v[1] as usize])
            }
            Some(_) => None,
        }
    };
    if let Some(ks) = attr_ints(node, "kernel_shape") {
        if ks != [kh as i64, kw as i64] {
            return None;
        }
    }
    let (strides, dil) = (pair("strides")?, pair("dilations")?);
    let auto = attr_str(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    let (pads, same_upper) = match auto.as_str() {
        "NOTSET" => match attr_ints(node, "pads") {
            None => (Some([0; 4]), false),
            Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => (
                Some([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]),
                false,
            ),
            Some(_) => return None,
        },
        "VALID" => (Some([0; 4]), false),
        "SAME_UPPER" => (None, true),
        "SAME_LOWER" => (None, false),
        _ => return None,
    };
    let w = w.as_standard_layout().iter().copied().collect();
    let bias = bias.map(|b| b.iter().copied().collect());
    Some(ConvStep {
        w,
        bias,
        m,
        c,
        k: [kh, kw],
        strides,
        dil,
        pads,
        same_upper,
    })
}

impl FastSim {
    /// Compiles `model` (one float input, one output). Nodes are resolved with the
    /// interpreter's op builder, so unsupported ops are reported the same way.
    pub fn new(model: &Model) -> Result<FastSim, QuantizeError> {
        let g = &model.graph;
        crate::ir::verify::verify(g).map_err(err)?;
        let scalar = |v: Option<ValueId>| -> Option<f32> {
            let t = g.value(v?).constant.as_ref()?;
            let a = t.as_f32()?;
            (a.len() == 1).then(|| a.iter().next().copied()).flatten()
        };
        let konst = |v: Option<ValueId>| -> Option<ArrayD<f32>> {
            let v = v?;
            if g.producer(v).is_some() {
                return None;
            }
            g.value(v).constant.as_ref()?.as_f32().cloned()
        };
        let mut steps = Vec::new();
        for id in g.topo_order().map_err(err)? {
            let node = g.node(id);
            let ins = &node.inputs;
            let inp = |i: usize| ins.get(i).copied().flatten();
            let onnx = node.domain.is_empty() || node.domain == "ai.onnx";
            let qonnx = crate::ops::QONNX_DOMAINS.contains(&node.domain.as_str());
            let single = node.outputs.len() == 1;
            let mut kind = None;
            if single && onnx && node.op_type == "Relu" && node.attrs.is_empty() {
                kind = Some(StepKind::Relu);
            } else if single
                && onnx
                && (node.op_type == "Add" || node.op_type == "Mul")
                && node.attrs.is_empty()
                && ins.len() == 2
            {
                let op = if node.op_type == "Add" {
                    BinOp::Add
                } else {
                    BinOp::Mul
                };
                // The constant goes second; the data operand is computed (in place target).
                if let (Some(c), Some(x)) = (konst(inp(1)), inp(0)) {
                    if g.value(x).constant.is_none() {
                        kind = Some(StepKind::BinConst { op, c, relu: false });
                    }
                }
            } else if single && onnx && node.op_type == "Conv" {
                kind = conv_step(g, node).map(|c| StepKind::Conv2d(Box::new(c)));
            } else if single
                && onnx
                && node.op_type == "MaxPool"
                && only_window_attrs(node, &["ceil_mode", "storage_order"])
            {
                let k = attr_ints(node, "kernel_shape");
                let s = attr_ints(node, "strides").or(Some(vec![1, 1]));
                let pads_ok = attr_ints(node, "pads").is_none_or(|p| p.iter().all(|&x| x == 0));
                let dil_ok = attr_ints(node, "dilations").is_none_or(|d| d.iter().all(|&x| x == 1));
                let ap_ok =
                    attr_str(node, "auto_pad").is_none_or(|a| a == "NOTSET" || a == "VALID");
                let flags_ok = attr_int(node, "ceil_mode").unwrap_or(0) == 0
                    && attr_int(node, "storage_order").unwrap_or(0) == 0;
                if let (Some(k), Some(s)) = (k, s) {
                    if k.len() == 2
                        && s.len() == 2
                        && k.iter().chain(&s).all(|&x| x >= 1)
                        && pads_ok
                        && dil_ok
                        && ap_ok
                        && flags_ok
                    {
                        kind = Some(StepKind::MaxPool2d {
                            k: [k[0] as usize, k[1] as usize],
                            s: [s[0] as usize, s[1] as usize],
                        });
                    }
                }
            } else if single
                && qonnx
                && (node.op_type == "Quant" || node.op_type == "IntQuant")
                && only_attrs(node, &["signed", "narrow", "rounding_mode"])
                && attr_str(node, "rounding_mode").is_none_or(|r| r == "ROUND")
            {
                if let (Some(s), Some(z), Some(bits)) =
                    (scalar(inp(1)), scalar(inp(2)), scalar(inp(3)))
                {
                    if bits.fract() == 0.0 && (2.0..=16.0).contains(&bits) {
                        let fmt = quant_formats::Format::Int(quant_formats::IntFormat {
                            bits: bits as u8,
                            signed: attr_int(node, "signed").unwrap_or(1) != 0,
                            narrow: attr_int(node, "narrow").unwrap_or(0) != 0,
                        });
                        let rounding: quant_formats::Rounding = "ROUND".parse().map_err(err)?;
                        kind = Some(StepKind::IntQuant {
                            q: quant_formats::Quantizer::new(&fmt, rounding),
                            s,
                            z,
                        });
                    }
                }
            } else if single
                && qonnx
                && node.op_type == "FloatQuant"
                && only_attrs(
                    node,
                    &[
                        "has_inf",
                        "has_nan",
                        "has_subnormal",
                        "rounding_mode",
                        "saturation",
                    ],
                )
                && attr_str(node, "rounding_mode").is_none_or(|r| r == "ROUND")
            {
                if let (Some(s), Some(e), Some(m), Some(b), Some(mx)) = (
                    scalar(inp(1)),
                    scalar(inp(2)),
                    scalar(inp(3)),
                    scalar(inp(4)),
                    scalar(inp(5)),
                ) {
                    if e.fract() == 0.0
                        && m.fract() == 0.0
                        && b.fract() == 0.0
                        && (0.0..=8.0).contains(&e)
                        && (0.0..=10.0).contains(&m)
                    {
                        let fmt = quant_formats::Format::Float(quant_formats::FloatFormat {
                            exp_bits: e as u8,
                            man_bits: m as u8,
                            bias: b as i32,
                            signed: true,
                            subnormals: attr_int(node, "has_subnormal").unwrap_or(1) != 0,
                            specials: quant_formats::Specials::None,
                            overflow: quant_formats::Overflow::Saturate,
                        });
                        let rounding: quant_formats::Rounding = "ROUND".parse().map_err(err)?;
                        let saturate = attr_int(node, "saturation").unwrap_or(1) != 0;
                        kind = Some(StepKind::FloatQuant {
                            q: quant_formats::Quantizer::new(&fmt, rounding),
                            s,
                            mx,
                            saturate,
                            has_inf: attr_int(node, "has_inf").unwrap_or(0) != 0,
                            plain: saturate && fmt.max_value() <= f64::from(mx),
                        });
                    }
                }
            }
            let (kind, inputs) = match kind {
                Some(k) => (k, vec![inp(0)]),
                None => (
                    StepKind::Generic(crate::interp::build_op(model, id).map_err(err)?),
                    ins.clone(),
                ),
            };
            steps.push(SimStep {
                kind,
                label: node.label(),
                inputs,
                outputs: node.outputs.clone(),
                free: Vec::new(),
            });
        }
        let mut consts = Vec::new();
        for v in g.value_ids() {
            if let Some(c) = &g.value(v).constant {
                if g.producer(v).is_none() {
                    consts.push((v, c.clone()));
                }
            }
        }
        let data_inputs: Vec<ValueId> = g
            .inputs
            .iter()
            .copied()
            .filter(|&v| g.value(v).constant.is_none())
            .collect();
        let (&[input], &[output]) = (data_inputs.as_slice(), g.outputs.as_slice()) else {
            return Err(err(
                "the fast simulation needs exactly one data input and one output",
            ));
        };
        // A per-channel bias (or scale) whose only reader is a Relu: one pass instead of two,
        // computing exactly `max(x ∘ c, 0)` as the two steps would.
        let mut i = 0;
        while i + 1 < steps.len() {
            let mid = steps[i].outputs.first().copied().flatten();
            let sole_reader = || {
                steps
                    .iter()
                    .filter(|s| s.inputs.iter().flatten().any(|v| Some(*v) == mid))
                    .count()
                    == 1
            };
            if matches!(steps[i].kind, StepKind::BinConst { relu: false, .. })
                && matches!(steps[i + 1].kind, StepKind::Relu)
                && mid.is_some()
                && mid != Some(output)
                && steps[i + 1].inputs.first().copied().flatten() == mid
                && sole_reader()
            {
                let relu = steps.remove(i + 1);
                if let StepKind::BinConst { relu: r, .. } = &mut steps[i].kind {
                    *r = true;
                }
                steps[i].outputs = relu.outputs;
                steps[i].label = format!("{}+{}", steps[i].label, relu.label);
            }
            i += 1;
        }
        let n_values = g.value_count();
        let mut last: Vec<Option<usize>> = vec![None; n_values];
        for (i, s) in steps.iter().enumerate() {
            for v in s.inputs.iter().flatten() {
                last[v.index()] = Some(i);
            }
        }
        for v in g.value_ids() {
            if let Some(i) = last[v.index()] {
                if v != output && g.value(v).constant.is_none() {
                    steps[i].free.push(v);
                }
            }
        }
        Ok(FastSim {
            steps,
            n_values,
            consts,
            input,
            output,
        })
    }

    /// Runs one chunk (the whole input in one piece) and returns the output.
    pub fn run_chunk(&self, x: ArrayD<f32>) -> Result<ArrayD<f32>, QuantizeError> {
        let mut vals: Vec<Option<Tensor>> = vec![None; self.n_values];
        let mut consts: Vec<Option<&Tensor>> = vec![None; self.n_values];
        for (v, c) in &self.consts {
            consts[v.index()] = Some(c);
        }
        vals[self.input.index()] = Some(Tensor::F32(x));
        for s in &self.steps {
            let fail = |e: &dyn std::fmt::Display| err(format!("node {}: {e}", s.label));
            let out = match &s.kind {
                StepKind::Generic(op) => {
                    let ins: Vec<Option<&Tensor>> = s
                        .inputs
                        .iter()
                        .map(|i| i.and_then(|v| vals[v.index()].as_ref().or(consts[v.index()])))
                        .collect();
                    op.eval(&ins).map_err(|e| fail(&e))?
                }
                StepKind::Conv2d(cv) => {
                    let v = s.inputs[0].ok_or_else(|| fail(&"missing input"))?;
                    let x = vals[v.index()]
                        .as_ref()
                        .or(consts[v.index()])
                        .ok_or_else(|| fail(&"input not computed"))?;
                    let Tensor::F32(x) = x else {
                        return Err(fail(&"expected a float32 input"));
                    };
                    vec![Tensor::F32(conv2d_gemm(x, cv).map_err(|e| fail(&e))?)]
                }
                kind => {
                    let v = s.inputs[0].ok_or_else(|| fail(&"missing input"))?;
                    // In place when this step is the input's last use.
                    let t = if s.free.contains(&v) {
                        vals[v.index()].take()
                    } else {
                        vals[v.index()].clone()
                    };
                    let t = t
                        .or_else(|| consts[v.index()].cloned())
                        .ok_or_else(|| fail(&"input not computed"))?;
                    let Tensor::F32(mut a) = t else {
                        return Err(fail(&"expected a float32 input"));
                    };
                    apply_in_place(kind, &mut a).map_err(|e| fail(&e))?;
                    vec![Tensor::F32(a)]
                }
            };
            for (slot, t) in s.outputs.iter().zip(out) {
                if let Some(v) = slot {
                    vals[v.index()] = Some(t);
                }
            }
            for v in &s.free {
                if let Some(t) = vals[v.index()].take() {
                    crate::ops::recycle(t);
                }
            }
        }
        vals[self.output.index()]
            .take()
            .ok_or_else(|| err("the output was not computed"))?
            .to_f32()
            .map_err(err)
    }
}

/// A standard-layout copy of `a` in a buffer from the kernels' pool (`kernels::buffer`):
/// a fresh allocation of a large chunk costs a page fault per 4 KiB on first write.
fn pooled_copy(a: &ArrayD<f32>) -> ArrayD<f32> {
    let mut v = crate::kernels::buffer::take(a.len());
    match a.as_slice() {
        Some(src) => v.copy_from_slice(src),
        None => v.iter_mut().zip(a.iter()).for_each(|(d, &x)| *d = x),
    }
    ArrayD::from_shape_vec(a.raw_dim(), v).expect("same number of elements")
}

/// Elements per block of the in-place quantizer loops (a stack copy of the block is the
/// quantizer's input, the tensor itself its output).
const QBLOCK: usize = 512;

/// `a = Q(a / s) · s` in place through the quantizer's slice kernel (vectorized; exactly the
/// same arithmetic as [`quant_formats::Quantizer::quantize_one`] per element).
fn fake_quantize_in_place(q: &quant_formats::Quantizer, s: f32, a: &mut [f32]) {
    let mut tmp = [0f32; QBLOCK];
    for block in a.chunks_mut(QBLOCK) {
        let t = &mut tmp[..block.len()];
        t.copy_from_slice(block);
        q.fake_quantize(t, s, block);
    }
}

/// `x ∘ c` in place with `c` broadcast to `x`'s shape, for a standard-layout `x` whose
/// constant is either one value per run of trailing elements (a per-channel bias on NCHW) or
/// a trailing block (a bias on `[N, classes]`). `None` when neither applies.
fn bin_const_runs(op: BinOp, c: &ArrayD<f32>, a: &mut ArrayD<f32>, relu: bool) -> Option<()> {
    let n = a.ndim();
    if c.ndim() > n {
        return None;
    }
    let mut cs = vec![1usize; n - c.ndim()];
    cs.extend_from_slice(c.shape());
    let shape = a.shape().to_vec();
    let data = a.as_slice_mut()?;
    // Trailing axes along which the constant does not vary.
    let k = (0..=n).rev().find(|&k| k == 0 || cs[k - 1] != 1)?;
    let run: usize = shape[k..].iter().product();
    let apply = |x: &mut [f32], y: &[f32]| match (op, relu) {
        (BinOp::Add, false) => x.iter_mut().zip(y).for_each(|(x, &y)| *x += y),
        (BinOp::Mul, false) => x.iter_mut().zip(y).for_each(|(x, &y)| *x *= y),
        (BinOp::Add, true) => x
            .iter_mut()
            .zip(y)
            .for_each(|(x, &y)| *x = (*x + y).max(0.0)),
        (BinOp::Mul, true) => x
            .iter_mut()
            .zip(y)
            .for_each(|(x, &y)| *x = (*x * y).max(0.0)),
    };
    if run >= 8 || k == n {
        // One constant per run: the constant broadcast over the leading axes, in order.
        let mut lead = shape[..k].to_vec();
        lead.extend(std::iter::repeat_n(1, n - k));
        let cb = c.broadcast(lead)?;
        let vals: Vec<f32> = cb.iter().copied().collect();
        if run == 0 {
            return Some(());
        }
        for (x, &v) in data.chunks_exact_mut(run).zip(&vals) {
            match (op, relu) {
                (BinOp::Add, false) => x.iter_mut().for_each(|x| *x += v),
                (BinOp::Mul, false) => x.iter_mut().for_each(|x| *x *= v),
                (BinOp::Add, true) => x.iter_mut().for_each(|x| *x = (*x + v).max(0.0)),
                (BinOp::Mul, true) => x.iter_mut().for_each(|x| *x = (*x * v).max(0.0)),
            }
        }
        return Some(());
    }
    // The constant is a trailing block of `x` (leading axes of size 1).
    let j = cs.iter().position(|&d| d != 1).unwrap_or(n);
    if cs[j..] != shape[j..] {
        return None;
    }
    let cd = c.as_slice()?;
    let block = cd.len();
    if block == 0 {
        return Some(());
    }
    for x in data.chunks_exact_mut(block) {
        apply(x, cd);
    }
    Some(())
}

/// 2-D max pooling (no padding or dilation) of standard-layout `xd` with shape `sh`; taps
/// are visited in the kernel's order for every output (ties and NaN as in the kernel).
fn max_pool_2d(
    xd: &[f32],
    sh: &[usize],
    k: [usize; 2],
    s: [usize; 2],
) -> Result<ArrayD<f32>, String> {
    let (h, w) = (sh[2], sh[3]);
    if h < k[0] || w < k[1] {
        return Err(format!(
            "MaxPool input {sh:?} smaller than the window {k:?}"
        ));
    }
    let (oh, ow) = ((h - k[0]) / s[0] + 1, (w - k[1]) / s[1] + 1);
    let planes = sh[0] * sh[1];
    // Every element is written below.
    let mut out = crate::kernels::buffer::take(planes * oh * ow);
    // One output row at a time: its taps are merged in the kernel's order (ky, then kx) with
    // a branch-free select; tap (ky, kx) of output column ox is input column ox·s + kx.
    for (p, o) in out.chunks_mut(oh * ow).enumerate() {
        let xp = &xd[p * h * w..(p + 1) * h * w];
        for (oy, orow) in o.chunks_mut(ow).enumerate() {
            orow.fill(f32::NEG_INFINITY);
            for ky in 0..k[0] {
                let row = &xp[(oy * s[0] + ky) * w..(oy * s[0] + ky + 1) * w];
                match (k[1], s[1]) {
                    // Window width = stride (W1's 2×2/2 and 3×3/3): output column ox reads
                    // exactly chunk ox of the row, and `ow·s <= w` holds.
                    (2, 2) => pool_row_exact::<2>(orow, row),
                    (3, 3) => pool_row_exact::<3>(orow, row),
                    _ => {
                        for kx in 0..k[1] {
                            for (acc, c) in orow.iter_mut().zip(row[kx..].chunks(s[1])) {
                                *acc = max_select(*acc, c[0]);
                            }
                        }
                    }
                }
            }
        }
    }
    ArrayD::from_shape_vec(vec![sh[0], sh[1], oh, ow], out).map_err(|e| e.to_string())
}

/// The pooling select: `v` when it is larger or NaN (the kernel's tie and NaN rule).
#[inline(always)]
fn max_select(acc: f32, v: f32) -> f32 {
    if v > acc || v.is_nan() {
        v
    } else {
        acc
    }
}

/// One row of taps `ky` for a window as wide as its stride `S`: `orow[ox]` merges
/// `row[ox·S + kx]` for `kx = 0..S` in order (a compile-time `S` lets the loop vectorize).
fn pool_row_exact<const S: usize>(orow: &mut [f32], row: &[f32]) {
    for (acc, c) in orow.iter_mut().zip(row.chunks_exact(S)) {
        let mut a = *acc;
        for &v in c {
            a = max_select(a, v);
        }
        *acc = a;
    }
}

/// Applies a specialised step to `a` (replacing it for pooling).
fn apply_in_place(kind: &StepKind, a: &mut ArrayD<f32>) -> Result<(), String> {
    if !a.is_standard_layout() {
        *a = a.as_standard_layout().into_owned();
    }
    match kind {
        StepKind::Generic(_) | StepKind::Conv2d(_) => return Err("step cannot run in place".into()),
        StepKind::Relu => match a.as_slice_mut() {
            Some(d) => d.iter_mut().for_each(|x| *x = x.max(0.0)),
            None => a.mapv_inplace(|x| x.max(0.0)),
        },
        StepKind::BinConst { op, c, relu } => {
            if c.broadcast(a.shape()).is_none() {
                return Err(format!(
                    "constant of shape {:?} does not broadcast to {:?}",
                    c.shape(),
                    a.shape()
                ));
            }
            if bin_const_runs(*op, c, a, *relu).is_none() {
                match op {
                    BinOp::Add => a.zip_mut_with(c, |x, &y| *x += y),
                    BinOp::Mul => a.zip_mut_with(c, |x, &y| *x *= y),
                }
                if *relu {
                    a.mapv_inplace(|x| x.max(0.0));
                }
            }
        }
        StepKind::IntQuant { q, s, z } => {
            let (s, z) = (*s, *z);
            match a.as_slice_mut() {
                // `(Q(v/s + 0) − 0)·s` is `Q(v/s)·s` bit for bit: adding zero only turns −0
                // into +0, which an integer grid rounds to +0 either way.
                Some(d) if z == 0.0 => fake_quantize_in_place(q, s, d),
                _ => {
                    for (i, v) in a.iter_mut().enumerate() {
                        *v = (q.quantize_one(*v / s + z, i as u64) - z) * s;
                    }
                }
            }
        }
        StepKind::FloatQuant {
            q,
            s,
            mx,
            saturate,
            has_inf,
            plain,
        } => {
            let (s, mx) = (*s, *mx);
            match a.as_slice_mut() {
                Some(d) if *plain => fake_quantize_in_place(q, s, d),
                _ => {
                    for (i, v) in a.iter_mut().enumerate() {
                        let r = q.quantize_one(*v / s, i as u64);
                        let r = if *saturate {
                            r.clamp(-mx, mx)
                        } else if r.abs() > mx {
                            if *has_inf {
                                r.signum() * f32::INFINITY
                            } else {
                                f32::NAN
                            }
                        } else {
                            r
                        };
                        *v = r * s;
                    }
                }
            }
        }
        StepKind::MaxPool2d { k, s } => {
            if a.ndim() != 4 {
                return Err(format!("MaxPool input {:?} is not 4-D", a.shape()));
            }
            let sh = a.shape().to_vec();
            let xd = a.as_slice().ok_or("MaxPool input not contiguous")?;
            let pooled = max_pool_2d(xd, &sh, *k, *s)?;
            let old = std::mem::replace(a, pooled);
            crate::kernels::buffer::recycle(old.into_raw_vec_and_offset().0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn w1_evaluator(eval_samples: usize) -> SweepEvaluator {
        let w1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/w1");
        let m = crate::onnx::load(&w1.join("model.onnx")).expect("model");
        let inputs = pipeline::data_inputs(&m);
        let calib = Dataset::open(&w1.join("calib.npz"), &inputs, None).expect("calib");
        let mut eval = Dataset::open(&w1.join("eval.npz"), &inputs, None).expect("eval");
        eval.select(eval_samples, Some(7));
        SweepEvaluator::new(m, Recipe::default(), calib, &eval).expect("evaluator")
    }

    fn bits(outs: &[ArrayD<f32>]) -> Vec<u32> {
        outs.iter()
            .flat_map(|o| o.iter().map(|v| v.to_bits()))
            .collect()
    }

    /// The compiled simulation gives the interpreter's outputs bit for bit, for integer and
    /// minifloat weights and activations (FloatQuant and Quant steps, every special case of
    /// the element-wise kernels on W1: per-channel bias, Relu, 2×2 and 3×3 pooling).
    #[test]
    fn fast_sim_matches_interpreter_bit_for_bit() {
        let ev = w1_evaluator(150);
        for (w, a) in [
            ("int3", "int8"),
            ("int8", "int3"),
            ("e2m1", "e4m3"),
            ("e4m3", "e1m2"),
            ("e3m2", "int5"),
            ("int4", "e5m2"),
            ("e1m1", "e2m0"),
        ] {
            let c = ConfigRecipe::new(w, a);
            let (_, res) = ev.quantize(&c).expect("quantize");
            let sim = FastSim::new(&res.sim).expect("W1 compiles to a FastSim");
            let special = sim
                .steps
                .iter()
                .filter(|s| !matches!(s.kind, StepKind::Generic(_)))
                .count();
            assert!(special >= 6, "{w}/{a}: only {special} specialised steps");
            let fused = sim
                .steps
                .iter()
                .filter(|s| matches!(s.kind, StepKind::BinConst { relu: true, .. }))
                .count();
            assert_eq!(fused, 2, "{w}/{a}: both bias + Relu pairs run as one pass");
            assert!(
                sim.steps
                    .iter()
                    .any(|s| matches!(s.kind, StepKind::Conv2d(_))),
                "{w}/{a}: the second convolution is not specialised"
            );
            let fast = ev.simulate(&c, false).expect("fast");
            let slow = ev.simulate(&c, true).expect("interpreter");
            assert_eq!(fast.len(), slow.len());
            assert!(fast.iter().map(|o| o.len()).sum::<usize>() == 150 * 10);
            assert!(bits(&fast) == bits(&slow), "{w}/{a}: outputs differ");
        }
    }

    /// Bias add on NCHW (one value per plane), on `[N, K]` (a trailing block) and a general
    /// broadcast agree with ndarray's broadcasting arithmetic.
    #[test]
    fn bin_const_runs_match_broadcasting() {
        let x = ArrayD::from_shape_fn(vec![3, 4, 5, 6], |d| {
            (d[0] * 131 + d[1] * 37 + d[2] * 7 + d[3]) as f32 * 0.37 - 20.0
        });
        let cases: Vec<ArrayD<f32>> = vec![
            ArrayD::from_shape_fn(vec![4, 1, 1], |d| d[0] as f32 * 1.5 - 2.0),
            ArrayD::from_shape_fn(vec![1, 4, 1, 1], |d| d[1] as f32 * 0.25 + 0.1),
            ArrayD::from_shape_fn(vec![6], |d| d[0] as f32 - 2.5),
            ArrayD::from_shape_fn(vec![5, 6], |d| (d[0] * 6 + d[1]) as f32 * 0.1),
            ArrayD::from_shape_fn(vec![3, 1, 5, 1], |d| (d[0] + d[2]) as f32 * 0.7),
            ArrayD::from_elem(vec![1], 3.25),
        ];
        for c in cases {
            for op in [BinOp::Add, BinOp::Mul] {
                for relu in [false, true] {
                    let mut want = x.clone();
                    match op {
                        BinOp::Add => want.zip_mut_with(&c, |a, &b| *a += b),
                        BinOp::Mul => want.zip_mut_with(&c, |a, &b| *a *= b),
                    }
                    if relu {
                        want.mapv_inplace(|v| v.max(0.0));
                    }
                    let mut got = x.clone();
                    let kind = StepKind::BinConst {
                        op,
                        c: c.clone(),
                        relu,
                    };
                    apply_in_place(&kind, &mut got).expect("op");
                    let (g, w): (Vec<u32>, Vec<u32>) = (
                        got.iter().map(|v| v.to_bits()).collect(),
                        want.iter().map(|v| v.to_bits()).collect(),
                    );
                    assert!(g == w, "{:?} {op:?} relu {relu}", c.shape());
                }
            }
        }
    }

    /// Pooling keeps the kernel's tap order: NaN and −0/+0 ties come out as in a tap-by-tap
    /// scan of each window.
    #[test]
    fn max_pool_keeps_tap_order() {
        let mut x = ArrayD::from_shape_fn(vec![2, 3, 7, 8], |d| {
            ((d[0] * 17 + d[1] * 5 + d[2] * 3 + d[3] * 11) % 13) as f32 - 6.0
        });
        x[[0, 0, 1, 1]] = f32::NAN;
        x[[1, 2, 0, 0]] = -0.0;
        x[[1, 2, 0, 1]] = 0.0;
        for (k, s) in [([2, 2], [2, 2]), ([3, 3], [3, 3]), ([3, 2], [1, 2])] {
            let sh = x.shape().to_vec();
            let (oh, ow) = ((7 - k[0]) / s[0] + 1, (8 - k[1]) / s[1] + 1);
            let mut want = vec![0f32; 6 * oh * ow];
            for p in 0..6 {
                let (n, ch) = (p / 3, p % 3);
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = f32::NEG_INFINITY;
                        for ky in 0..k[0] {
                            for kx in 0..k[1] {
                                let v = x[[n, ch, oy * s[0] + ky, ox * s[1] + kx]];
                                if v > acc || v.is_nan() {
                                    acc = v;
                                }
                            }
                        }
                        want[(p * oh + oy) * ow + ox] = acc;
                    }
                }
            }
            let mut got = x.clone();
            apply_in_place(&StepKind::MaxPool2d { k, s }, &mut got).expect("pool");
            assert_eq!(got.shape(), &[sh[0], sh[1], oh, ow]);
            let g: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            let w: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
            assert_eq!(g, w, "k {k:?} s {s:?}");
        }
    }

    /// The specialised convolution equals the interpreter's kernel bit for bit across
    /// strides, dilations, explicit and SAME pads, 1×1 kernels and bias/no bias.
    #[test]
    fn conv_step_matches_kernel() {
        use crate::kernels::conv::{conv, Conv2dParams};
        let x = ArrayD::from_shape_fn(vec![3, 5, 11, 9], |d| {
            (((d[0] * 97 + d[1] * 31 + d[2] * 13 + d[3] * 7) % 29) as f32 - 14.0) * 0.173
        });
        type Case = (
            [usize; 2],
            [usize; 2],
            [usize; 2],
            Option<[usize; 4]>,
            bool,
            bool,
        );
        let cases: [Case; 7] = [
            ([3, 3], [1, 1], [1, 1], Some([1, 1, 1, 1]), false, true),
            ([5, 5], [1, 1], [1, 1], None, true, true),
            ([5, 3], [2, 1], [1, 1], None, false, false),
            ([3, 3], [2, 3], [2, 1], Some([0, 2, 1, 0]), false, true),
            ([1, 1], [1, 1], [1, 1], Some([0, 0, 0, 0]), false, true),
            ([2, 4], [3, 2], [1, 2], None, true, false),
            ([3, 3], [1, 1], [1, 1], Some([0, 0, 0, 0]), false, false),
        ];
        for (k, strides, dil, pads, same_upper, with_bias) in cases {
            let m = 6;
            let w = ArrayD::from_shape_fn(vec![m, 5, k[0], k[1]], |d| {
                (((d[0] * 11 + d[1] * 5 + d[2] * 3 + d[3]) % 17) as f32 - 8.0) * 0.0917
            });
            let b = ArrayD::from_shape_fn(vec![m], |d| d[0] as f32 * 0.31 - 0.7);
            let cv = ConvStep {
                w: w.iter().copied().collect(),
                bias: with_bias.then(|| b.iter().copied().collect()),
                m,
                c: 5,
                k,
                strides,
                dil,
                pads,
                same_upper,
            };
            let (pt, pb) = cv.pads(0, 11);
            let (pl, pr) = cv.pads(1, 9);
            let p = Conv2dParams {
                strides: strides.to_vec(),
                dilations: dil.to_vec(),
                pads_begin: vec![pt, pl],
                pads_end: vec![pb, pr],
                groups: 1,
            };
            let bv = b.view();
            let want = conv(&x.view(), &w.view(), with_bias.then_some(&bv), &p).expect("kernel");
            let got = conv2d_gemm(&x, &cv).expect("step");
            assert_eq!(
                got.shape(),
                want.shape(),
                "{k:?} {strides:?} {dil:?} {pads:?}"
            );
            let g: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            let e: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
            assert!(g == e, "{k:?} {strides:?} {dil:?} {pads:?}: values differ");
        }
    }
}
