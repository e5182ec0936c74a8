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

    /// Evaluates one configuration.
    pub fn evaluate(&self, c: &ConfigRecipe) -> Result<ConfigOutcome, QuantizeError> {
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
        let fast = if self.batches.iter().all(|b| !b.chunks.is_empty()) {
            FastSim::new(&res.sim).ok()
        } else {
            None
        };
        let qi = match fast {
            Some(_) => None,
            None => Some(Interpreter::new(&res.sim).map_err(err)?),
        };
        let mut acc = Accuracy::default();
        let mut agree = Top1Agreement::default();
        let mut sqnr = Sqnr::default();
        let mut cos = Cosine::default();
        let mut labelled = true;
        for b in &self.batches {
            let q = match (&fast, &qi) {
                (Some(f), _) => {
                    use rayon::prelude::*;
                    let parts: Vec<ArrayD<f32>> = b
                        .chunks
                        .par_iter()
                        .map(|c| f.run_chunk(c.clone()))
                        .collect::<Result<_, _>>()?;
                    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
                    ndarray::concatenate(ndarray::Axis(0), &views).map_err(err)?
                }
                (None, Some(qi)) => qi
                    .run_batched(&b.feeds, None)
                    .map_err(err)?
                    .into_iter()
                    .find(|o| o.0 == self.output)
                    .ok_or_else(|| err("missing output"))?
                    .1
                    .to_f32()
                    .map_err(err)?,
                (None, None) => return Err(err("no evaluator for the simulation graph")),
            };
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
    BinConst { op: BinOp, c: ArrayD<f32> },
    /// 2-D max pooling without padding or dilation, in the kernel's tap order.
    MaxPool2d { k: [usize; 2], s: [usize; 2] },
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
    },
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
                        kind = Some(StepKind::BinConst { op, c });
                    }
                }
            } else if single
                && onnx
                && node.op_type == "MaxPool"
                && only_attrs(
                    node,
                    &[
                        "kernel_shape",
                        "strides",
                        "pads",
                        "dilations",
                        "auto_pad",
                        "ceil_mode",
                        "storage_order",
                    ],
                )
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
                        kind = Some(StepKind::FloatQuant {
                            q: quant_formats::Quantizer::new(&fmt, rounding),
                            s,
                            mx,
                            saturate: attr_int(node, "saturation").unwrap_or(1) != 0,
                            has_inf: attr_int(node, "has_inf").unwrap_or(0) != 0,
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
                vals[v.index()] = None;
            }
        }
        vals[self.output.index()]
            .take()
            .ok_or_else(|| err("the output was not computed"))?
            .to_f32()
            .map_err(err)
    }
}

/// Applies a specialised step to `a` (replacing it for pooling).
fn apply_in_place(kind: &StepKind, a: &mut ArrayD<f32>) -> Result<(), String> {
    match kind {
        StepKind::Generic(_) => return Err("generic step applied in place".into()),
        StepKind::Relu => a.mapv_inplace(|x| x.max(0.0)),
        StepKind::BinConst { op, c } => {
            if c.broadcast(a.shape()).is_none() {
                return Err(format!(
                    "constant of shape {:?} does not broadcast to {:?}",
                    c.shape(),
                    a.shape()
                ));
            }
            match op {
                BinOp::Add => a.zip_mut_with(c, |x, &y| *x += y),
                BinOp::Mul => a.zip_mut_with(c, |x, &y| *x *= y),
            }
        }
        StepKind::IntQuant { q, s, z } => {
            let (s, z) = (*s, *z);
            for (i, v) in a.iter_mut().enumerate() {
                *v = (q.quantize_one(*v / s + z, i as u64) - z) * s;
            }
        }
        StepKind::FloatQuant {
            q,
            s,
            mx,
            saturate,
            has_inf,
        } => {
            let (s, mx) = (*s, *mx);
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
        StepKind::MaxPool2d { k, s } => {
            if a.ndim() != 4 {
                return Err(format!("MaxPool input {:?} is not 4-D", a.shape()));
            }
            let sh = a.shape().to_vec();
            let (h, w) = (sh[2], sh[3]);
            if h < k[0] || w < k[1] {
                return Err(format!(
                    "MaxPool input {sh:?} smaller than the window {k:?}"
                ));
            }
            let (oh, ow) = ((h - k[0]) / s[0] + 1, (w - k[1]) / s[1] + 1);
            let x = a.as_standard_layout();
            let xd = x.as_slice().ok_or("MaxPool input not contiguous")?;
            let planes = sh[0] * sh[1];
            let mut out = vec![0f32; planes * oh * ow];
            for (p, o) in out.chunks_mut(oh * ow).enumerate() {
                let xp = &xd[p * h * w..(p + 1) * h * w];
                for (oy, orow) in o.chunks_mut(ow).enumerate() {
                    for (ox, ov) in orow.iter_mut().enumerate() {
                        let mut acc = f32::NEG_INFINITY;
                        for ky in 0..k[0] {
                            let row = &xp[(oy * s[0] + ky) * w + ox * s[1]..];
                            for &v in &row[..k[1]] {
                                if v > acc || v.is_nan() {
                                    acc = v;
                                }
                            }
                        }
                        *ov = acc;
                    }
                }
            }
            *a = ArrayD::from_shape_vec(vec![sh[0], sh[1], oh, ow], out)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
