//! The `quantize` pipeline: prepare the float model, calibrate, quantize weights, build the
//! simulation graph, evaluate float against quantized side by side with a per-tensor diagnosis,
//! and materialize the export.

use std::collections::BTreeMap;
use std::time::Instant;

use ndarray::ArrayD;
use serde::Serialize;

use crate::data::{DType as DataDType, Dataset, Dim as DataDim, InputSpec as DataInput};
use crate::interp::{Interpreter, Observer};
use crate::ir::{Dim, Model, ValueId};
use crate::metrics::{Accuracy, Cosine, PairMetric, Sqnr, Top1Agreement};
use crate::passes::{driver, Pass, Stage};
use crate::tensor::{DType, Tensor};

use super::calibrate::{self, ActQuant, CalibrateError};
use super::materialize::{self, MaterializeError, Quantized};
use super::plan::{self, Layer, PlanError, Role};
use super::recipe::{ExportStyle, Granularity, Recipe, RecipeError};

/// Any failure of the pipeline, naming the stage.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error("planning: {0}")]
    Plan(#[from] PlanError),
    #[error("calibration: {0}")]
    Calibrate(#[from] CalibrateError),
    #[error("export: {0}")]
    Materialize(#[from] MaterializeError),
    #[error(transparent)]
    Pass(#[from] crate::passes::PassError),
    #[error("model: {0}")]
    Model(String),
    #[error("evaluation: {0}")]
    Eval(String),
}

fn model_err(e: impl std::fmt::Display) -> QuantizeError {
    QuantizeError::Model(e.to_string())
}

/// What one pass did: its options, wall time and log (recorded in the report).
#[derive(Debug, Clone, Serialize)]
pub struct PassRecord {
    /// Pass name.
    pub name: String,
    /// Options as used.
    pub options: serde_json::Value,
    /// Wall time in seconds.
    pub wall_s: f64,
    /// Log lines.
    pub log: Vec<String>,
}

/// Decisions of passes that quantization must keep, by name (weight tensor, activation
/// tensor, node).
#[derive(Debug, Clone, Default)]
pub struct Fixed {
    /// Weight scales by weight tensor name (GPTQ/AdaRound output stays on that grid; fp-search
    /// chose them).
    pub weight_scales: BTreeMap<String, Vec<f32>>,
    /// Activation format and scale by tensor name (exponent-shift, fp-search).
    pub acts: BTreeMap<String, (quant_formats::Format, f32)>,
    /// Weight and activation format by layer (node) name (fp-search).
    pub layer_formats: BTreeMap<String, (quant_formats::Format, quant_formats::Format)>,
}

/// Passes that build the calibration data (run by the caller before [`quantize`], see
/// [`noise_level_calibration`]).
pub const DATA_PASSES: &[&str] = &["noise-level-calibration"];

/// Builds the calibration set of a diffusion denoiser with the float model's sampler
/// (`noise-level-calibration`, options from the recipe's `[noise_calibration]` table or their
/// defaults). Returns the in-memory data set and a log line.
pub fn noise_level_calibration(
    model: &Model,
    recipe: &Recipe,
) -> Result<(Dataset, String), QuantizeError> {
    let opts = recipe.noise_calibration.clone().unwrap_or_default();
    let (ds, _, log) = crate::passes::noise_level::build_calibration_set(
        model,
        &data_inputs(model),
        &opts,
        recipe.batch_size,
    )
    .map_err(model_err)?;
    Ok((ds, log))
}

/// Data-free, function-preserving passes applied by [`prepare`].
pub const PRE_PASSES: &[&str] = &["fold-batch-norm", "equalize-channels"];

/// Passes that need calibration data and run inside [`quantize`] (in stage order).
pub const WEIGHT_PASSES: &[&str] = &[
    "smooth-quant",
    "exponent-shift",
    "fp-search",
    "gptq",
    "learned-rounding",
    "correct-bias",
];

/// Applies the data-free, function-preserving passes (`fold-batch-norm`,
/// `equalize-channels`) named in `passes` with default options, after constant folding and batch
/// generalization. Other known pass names are left for [`quantize`]; unknown names are errors.
pub fn prepare(model: &mut Model, passes: &[String]) -> Result<Vec<String>, QuantizeError> {
    let recipe = Recipe {
        passes: passes.to_vec(),
        ..Recipe::default()
    };
    let list = recipe
        .pass_names()
        .iter()
        .map(|n| {
            n.parse::<Pass>().map_err(|e| {
                QuantizeError::Recipe(RecipeError::Invalid {
                    option: "passes".into(),
                    reason: e.to_string(),
                })
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(prepare_passes(model, &list)?.0)
}

/// [`prepare`] with the recipe's pass options; also returns a record per pass run.
pub fn prepare_recipe(
    model: &mut Model,
    recipe: &Recipe,
) -> Result<(Vec<String>, Vec<PassRecord>), QuantizeError> {
    let passes = recipe.resolve_passes()?;
    prepare_passes(model, &passes)
}

fn prepare_passes(
    model: &mut Model,
    passes: &[Pass],
) -> Result<(Vec<String>, Vec<PassRecord>), QuantizeError> {
    let mut log = Vec::new();
    let mut records = Vec::new();
    // Old (IR < 4) files list every initializer as a graph input too; for quantization they are
    // weights, so they stop being overridable inputs (the export then needs IR ≥ 4).
    let g = &mut model.graph;
    let before = g.inputs.len();
    let consts: Vec<ValueId> = g
        .inputs
        .iter()
        .copied()
        .filter(|&v| g.value(v).constant.is_some())
        .collect();
    g.inputs.retain(|v| !consts.contains(v));
    if g.inputs.len() != before {
        log.push(format!(
            "{} initializer-backed graph inputs treated as weights",
            before - g.inputs.len()
        ));
        model.meta.ir_version = model.meta.ir_version.max(4);
    }
    let folded = crate::ir::fold::fold_constants(model).map_err(model_err)?;
    if folded > 0 {
        log.push(format!("constant folding: {folded} nodes folded"));
    }
    if let Some(n) = generalize_batch(model)? {
        log.push(format!(
            "batch dimension made dynamic ({n} Reshape shapes rewritten from 1 to -1)"
        ));
    }
    for p in passes {
        let t = Instant::now();
        let line = match p {
            Pass::FoldBatchNorm => {
                let n = crate::ir::fold::fold_batch_norm(model).map_err(model_err)?;
                format!("fold-batch-norm: {n} BatchNormalization nodes folded")
            }
            Pass::EqualizeChannels(o) => {
                let r = crate::passes::equalize::equalize_channels(model, o).map_err(model_err)?;
                format!(
                    "equalize-channels: {} pairs equalized over {} sweeps (last max change {:.2e}), {} skipped{}",
                    r.pairs.len(),
                    r.iterations,
                    r.last_max_change,
                    r.skipped.len(),
                    r.skipped.iter().map(|k| format!("; {}", k.reason)).collect::<String>()
                )
            }
            _ => continue,
        };
        log.push(line.clone());
        records.push(PassRecord {
            name: p.name().into(),
            options: p.options_json(),
            wall_s: t.elapsed().as_secs_f64(),
            log: vec![line],
        });
    }
    Ok((log, records))
}

/// A model exported with batch 1 baked in (inputs `[1, …]` and Reshape shapes starting with 1)
/// is rewritten to take any batch: the inputs' first dimension becomes symbolic and each such
/// Reshape shape starts with -1. The rewrite is kept only if the model then gives the same
/// outputs on a batch of two as on each sample alone; otherwise the model is left unchanged.
/// Returns the number of Reshape shapes rewritten, or `None` when nothing was done.
pub fn generalize_batch(model: &mut Model) -> Result<Option<usize>, QuantizeError> {
    let g = &model.graph;
    let req: Vec<ValueId> = g
        .inputs
        .iter()
        .copied()
        .filter(|&v| g.value(v).constant.is_none())
        .collect();
    let fixed_one = !req.is_empty()
        && req.iter().all(|&v| {
            g.value(v)
                .shape
                .as_ref()
                .and_then(|s| s.first())
                .is_some_and(|d| *d == Dim::Known(1))
        });
    if !fixed_one {
        return Ok(None);
    }
    let mut cand = model.clone();
    let mut rewritten = 0;
    for id in cand.graph.node_ids() {
        let node = cand.graph.node(id);
        if node.op_type != "Reshape" {
            continue;
        }
        let Some(sv) = node.inputs.get(1).copied().flatten() else {
            continue;
        };
        let Some(Tensor::I64(a)) = cand.graph.value(sv).constant.as_deref().cloned() else {
            continue;
        };
        let v: Vec<i64> = a.iter().copied().collect();
        if v.len() >= 2 && v[0] == 1 && !v.contains(&-1) {
            let mut nv = v.clone();
            nv[0] = -1;
            let t = Tensor::i64(&[nv.len()], nv).map_err(model_err)?;
            // A shape constant shared with other nodes gets its own copy.
            let name = cand
                .graph
                .fresh_name(&format!("{}_any_batch", cand.graph.value(sv).name));
            let c = cand.graph.add_constant(&name, t);
            cand.graph.set_input(id, 1, Some(c));
            rewritten += 1;
        }
    }
    for &v in &req {
        if let Some(s) = cand.graph.value_mut(v).shape.as_mut() {
            s[0] = Dim::Sym("batch".into());
        }
    }
    // Intermediate shapes recorded for batch 1 (value_info) no longer hold: forget them (they
    // are re-inferred by every runtime); outputs get the symbolic batch.
    let outputs = cand.graph.outputs.clone();
    for v in cand.graph.value_ids().collect::<Vec<_>>() {
        if req.contains(&v) || cand.graph.value(v).constant.is_some() {
            continue;
        }
        let val = cand.graph.value_mut(v);
        if outputs.contains(&v) {
            if let Some(s) = val.shape.as_mut() {
                if s.first() == Some(&Dim::Known(1)) {
                    s[0] = Dim::Sym("batch".into());
                }
            }
        } else {
            val.shape = None;
        }
    }
    cand.graph.value_info.clear();
    // Check: a batch of two equals the two samples run alone (deterministic pseudo-random data).
    let Ok(interp) = Interpreter::new(&cand) else {
        return Ok(None);
    };
    let orig = Interpreter::new(model).map_err(model_err)?;
    let mut feeds2 = Vec::new();
    let mut feeds_a = Vec::new();
    let mut feeds_b = Vec::new();
    for &v in &req {
        let val = model.graph.value(v);
        let Some(shape) = val.static_shape() else {
            return Ok(None);
        };
        if val.dtype.is_some_and(|d| d != DType::F32) {
            return Ok(None);
        }
        let n: usize = shape.iter().product();
        let mut state = 0x9e37_79b9_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) - 0.5
        };
        let a: Vec<f32> = (0..n).map(|_| next()).collect();
        let b: Vec<f32> = (0..n).map(|_| next()).collect();
        let mut s2 = shape.clone();
        s2[0] = 2;
        let both: Vec<f32> = a.iter().chain(b.iter()).copied().collect();
        let name = val.name.clone();
        feeds2.push((name.clone(), Tensor::f32(&s2, both).map_err(model_err)?));
        feeds_a.push((name.clone(), Tensor::f32(&shape, a).map_err(model_err)?));
        feeds_b.push((name, Tensor::f32(&shape, b).map_err(model_err)?));
    }
    let (Ok(o2), Ok(oa), Ok(ob)) = (interp.run(&feeds2), orig.run(&feeds_a), orig.run(&feeds_b))
    else {
        return Ok(None);
    };
    for ((x2, xa), xb) in o2.iter().zip(&oa).zip(&ob) {
        let (Ok(x2), Ok(xa), Ok(xb)) = (x2.1.to_f32(), xa.1.to_f32(), xb.1.to_f32()) else {
            return Ok(None);
        };
        let joined: Vec<f32> = xa.iter().chain(xb.iter()).copied().collect();
        let got: Vec<f32> = x2.iter().copied().collect();
        let scale = joined.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-30);
        if got.len() != joined.len()
            || got
                .iter()
                .zip(&joined)
                .any(|(p, q)| (p - q).abs() > 1e-5 * scale)
        {
            return Ok(None);
        }
    }
    crate::ir::transform::remove_dead_code(&mut cand.graph).map_err(model_err)?;
    *model = cand;
    Ok(Some(rewritten))
}

/// The data-module description of the model's inputs (for opening data sets): graph inputs
/// without an initializer default, batch axis dynamic.
pub fn data_inputs(model: &Model) -> Vec<DataInput> {
    let g = &model.graph;
    g.inputs
        .iter()
        .filter(|&&v| g.value(v).constant.is_none())
        .map(|&v| {
            let val = g.value(v);
            DataInput {
                name: val.name.clone(),
                dtype: match val.dtype {
                    Some(DType::I64) => DataDType::I64,
                    Some(DType::I32) => DataDType::I32,
                    _ => DataDType::F32,
                },
                shape: val
                    .shape
                    .as_ref()
                    .map(|sh| {
                        sh.iter()
                            .enumerate()
                            .map(|(i, d)| match d {
                                Dim::Known(n) if i > 0 => DataDim::Fixed(*n),
                                _ => DataDim::Dynamic,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// One quantized layer in the report.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub name: String,
    pub op: String,
    pub role: Role,
    pub weight_format: Option<String>,
    pub act_format: Option<String>,
    pub weight_scales: Option<ScaleSummary>,
}

/// Summary of a set of scales.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleSummary {
    pub count: usize,
    pub min: f32,
    pub max: f32,
    pub pow2: bool,
}

fn summarize(s: &[f32]) -> ScaleSummary {
    ScaleSummary {
        count: s.len(),
        min: s.iter().copied().fold(f32::INFINITY, f32::min),
        max: s.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        pow2: s.iter().all(|x| x.log2().fract() == 0.0),
    }
}

/// Output of [`quantize`].
#[derive(Debug, Clone)]
pub struct QuantizeResult {
    /// Prepared float model (after preparation passes): the reference quantized outputs are
    /// compared against.
    pub float: Model,
    /// The model the quantization applies to: `float` plus what the rounding and correction
    /// passes changed in the graph (e.g. `correct-bias`'s biases and inserted `Add`s). The
    /// simulation graph and every export are built from it.
    pub base: Model,
    /// Simulation graph (fake-quantized weights, QONNX activation quantizers).
    pub sim: Model,
    pub quantized: Quantized,
    pub layers: Vec<LayerReport>,
    pub prepare_log: Vec<String>,
    /// Records of the passes run by [`quantize`] (data-driven passes).
    pub passes: Vec<PassRecord>,
}

/// The activation tensors a plan quantizes (inputs of compute layers with an activation format).
pub fn watched_activations(model: &Model, layers: &[Layer]) -> Vec<(ValueId, String)> {
    let mut watch: BTreeMap<ValueId, String> = BTreeMap::new();
    for l in layers {
        if l.act_format.is_none() {
            continue;
        }
        for &s in &l.act_slots {
            if let Some(v) = model.graph.node(l.node).inputs.get(s).copied().flatten() {
                watch.insert(v, model.graph.value(v).name.clone());
            }
        }
    }
    watch.into_iter().collect()
}

/// Streams the calibration set through the float model and gathers statistics of every
/// activation the recipe's plan quantizes. The result depends only on the float model, the
/// data and whether the clip method needs histograms, so sweeps share it across formats.
pub fn calibration_stats(
    model: &Model,
    recipe: &Recipe,
    calib: &Dataset,
) -> Result<crate::calib::ObserverSet, QuantizeError> {
    let r = recipe.resolve()?;
    let layers = plan::plan(model, &r)?;
    let interp = Interpreter::new(model).map_err(model_err)?;
    let watch = watched_activations(model, &layers);
    Ok(calibrate::observe(
        &interp,
        calib,
        recipe.batch_size,
        &watch,
        &r.clip,
    )?)
}

/// Calibrates and quantizes `model` (already prepared) on `calib`, running the recipe's
/// data-driven passes in stage order: smooth-quant and exponent-shift (function-preserving, on
/// the float model), calibration, fp-search, gptq or learned-rounding, correct-bias.
pub fn quantize(
    model: &Model,
    recipe: &Recipe,
    calib: &Dataset,
) -> Result<QuantizeResult, QuantizeError> {
    let passes = recipe.resolve_passes()?;
    let mut m = model.clone();
    let mut fixed = Fixed::default();
    let mut records = Vec::new();
    let mut log = Vec::new();
    let mut record = |p: &Pass, t: Instant, lines: Vec<String>, log: &mut Vec<String>| {
        log.extend(lines.iter().cloned());
        records.push(PassRecord {
            name: p.name().into(),
            options: p.options_json(),
            wall_s: t.elapsed().as_secs_f64(),
            log: lines,
        });
    };
    for p in passes.iter().filter(|p| p.stage() == Stage::DataPrepare) {
        let t = Instant::now();
        let lines = match p {
            Pass::SmoothQuant(o) => driver::smooth(&mut m, recipe, calib, o)?,
            Pass::ExponentShift(o) => driver::exponent_shift(&mut m, recipe, calib, o, &mut fixed)?,
            _ => Vec::new(),
        };
        record(p, t, lines, &mut log);
    }
    // The function-preserving passes are done: this is the float reference.
    let float_ref = m.clone();
    let set = calibration_stats(&m, recipe, calib)?;
    let mut r = quantize_with_fixed(&m, recipe, &set, &fixed)?;
    for p in passes.iter().filter(|p| p.stage() > Stage::DataPrepare) {
        let t = Instant::now();
        let lines = match p {
            Pass::FpSearch(o) => driver::fp_search(&m, recipe, calib, &r.quantized, o, &mut fixed)?,
            Pass::Gptq(_) | Pass::LearnedRounding(_) => {
                driver::round_weights(&mut m, recipe, calib, &r.quantized, p, &mut fixed)?
            }
            Pass::CorrectBias(o) => {
                driver::correct_bias(&mut m, &float_ref, recipe, calib, &set, &fixed, o)?
            }
            _ => Vec::new(),
        };
        r = quantize_with_fixed(&m, recipe, &set, &fixed)?;
        record(p, t, lines, &mut log);
    }
    r.float = float_ref;
    r.prepare_log = log;
    r.passes = records;
    Ok(r)
}

/// Quantizes `model` with calibration statistics gathered earlier (see [`calibration_stats`]).
pub fn quantize_with_stats(
    model: &Model,
    recipe: &Recipe,
    set: &crate::calib::ObserverSet,
) -> Result<QuantizeResult, QuantizeError> {
    quantize_with_fixed(model, recipe, set, &Fixed::default())
}

/// Like [`quantize_with_stats`], with formats and scales fixed by earlier passes.
pub fn quantize_with_fixed(
    model: &Model,
    recipe: &Recipe,
    set: &crate::calib::ObserverSet,
    fixed: &Fixed,
) -> Result<QuantizeResult, QuantizeError> {
    let r = recipe.resolve()?;
    let mut layers = plan::plan(model, &r)?;
    for l in &mut layers {
        if let Some((wf, af)) = fixed.layer_formats.get(&l.name) {
            if l.weight_format.is_some() {
                l.weight_format = Some(*wf);
            }
            if l.act_format.is_some() {
                l.act_format = Some(*af);
            }
        }
    }
    let mut acts = calibrate::activation_quantizers(
        model,
        &layers,
        set,
        &r.clip,
        r.scale_rounding,
        recipe.unsigned_acts,
    )?;
    for a in acts.values_mut() {
        if let Some((f, sc)) = fixed.acts.get(&a.name) {
            a.format = *f;
            a.scale = *sc;
            a.clip = f.max_value() * f64::from(*sc);
        }
    }
    let mut weights = BTreeMap::new();
    let mut reports = Vec::new();
    for l in &layers {
        let fixed_scales = l
            .weight
            .as_ref()
            .and_then(|w| fixed.weight_scales.get(&model.graph.value(w.value).name))
            .map(|v| v.as_slice());
        let wq = calibrate::quantize_weight(
            model,
            l,
            recipe.granularity == Granularity::PerChannel,
            recipe.weight_method,
            r.scale_rounding,
            fixed_scales,
        )?;
        let act_format = l.act_format.map(|f| {
            // Report the format actually used (after the unsigned decision) of the first input.
            l.act_slots
                .first()
                .and_then(|&s| model.graph.node(l.node).inputs.get(s).copied().flatten())
                .and_then(|v| acts.get(&(model.graph.value(v).name.clone(), f.to_string())))
                .map(|a: &ActQuant| a.format.to_string())
                .unwrap_or_else(|| f.to_string())
        });
        reports.push(LayerReport {
            name: l.name.clone(),
            op: l.op.clone(),
            role: l.role,
            weight_format: wq.as_ref().map(|w| w.format.to_string()),
            act_format,
            weight_scales: wq.as_ref().map(|w| summarize(&w.scales)),
        });
        if let Some(wq) = wq {
            weights.insert(wq.name.clone(), wq);
        }
    }
    let quantized = Quantized {
        layers: layers.clone(),
        acts,
        weights,
        bias: recipe.bias,
    };
    let sim = materialize::qonnx_graph(model, &quantized, false)?;
    Ok(QuantizeResult {
        float: model.clone(),
        base: model.clone(),
        sim,
        quantized,
        layers: reports,
        prepare_log: Vec::new(),
        passes: Vec::new(),
    })
}

/// Materializes the export in the requested style and opset.
pub fn export(
    result: &QuantizeResult,
    style: ExportStyle,
    opset: Option<i64>,
) -> Result<(Model, &'static str, i64), QuantizeError> {
    let own = result.base.default_opset().unwrap_or(13);
    let q = &result.quantized;
    let try_qdq = |opset: i64| materialize::qdq_graph(&result.base, q, opset);
    match style {
        ExportStyle::Qonnx => Ok((
            materialize::qonnx_graph(&result.base, q, true)?,
            "qonnx",
            own,
        )),
        ExportStyle::Qdq => {
            let o =
                opset.unwrap_or_else(|| own.max(materialize::required_opset(q, ExportStyle::Qdq)));
            Ok((try_qdq(o)?, "qdq", o))
        }
        ExportStyle::Auto => {
            let o =
                opset.unwrap_or_else(|| own.max(materialize::required_opset(q, ExportStyle::Qdq)));
            match try_qdq(o) {
                Ok(m) => Ok((m, "qdq", o)),
                Err(MaterializeError::NotRepresentable { .. })
                | Err(MaterializeError::OpsetUpgrade { .. }) => Ok((
                    materialize::qonnx_graph(&result.base, q, true)?,
                    "qonnx",
                    own,
                )),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Side-by-side metrics of float and quantized outputs.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EvalReport {
    pub samples: usize,
    pub output: String,
    pub float_top1: Option<f64>,
    pub float_top5: Option<f64>,
    pub quant_top1: Option<f64>,
    pub quant_top5: Option<f64>,
    pub top1_agreement: Option<f64>,
    pub output_sqnr_db: f64,
    pub output_cosine: f64,
    /// Per-tensor diagnosis, in graph order of the quantized tensors.
    pub tensors: Vec<TensorDiagnosis>,
}

/// Quantization error of one tensor: alone (its own quantizer applied to the float tensor) and
/// accumulated (the quantized model's tensor against the float model's).
#[derive(Debug, Clone, Serialize)]
pub struct TensorDiagnosis {
    pub tensor: String,
    pub format: String,
    pub scale: f32,
    pub sqnr_alone_db: f64,
    pub sqnr_drift_db: f64,
}

struct Capture {
    names: BTreeMap<ValueId, String>,
    got: BTreeMap<String, ArrayD<f32>>,
}

impl Observer for Capture {
    fn observe(&mut self, value: ValueId, _name: &str, tensor: &Tensor) {
        if let (Some(n), Tensor::F32(a)) = (self.names.get(&value), tensor) {
            self.got.insert(n.clone(), a.clone());
        }
    }
}

fn capture_ids(m: &Model, names: &[String]) -> BTreeMap<ValueId, String> {
    names
        .iter()
        .filter_map(|n| m.graph.find_value(n).map(|v| (v, n.clone())))
        .collect()
}

fn eval_err(e: impl std::fmt::Display) -> QuantizeError {
    QuantizeError::Eval(e.to_string())
}

/// Runs float and simulation models over `data` and compares them.
pub fn evaluate(
    result: &QuantizeResult,
    data: &Dataset,
    batch_size: usize,
) -> Result<EvalReport, QuantizeError> {
    let fi = Interpreter::new(&result.float).map_err(model_err)?;
    let qi = Interpreter::new(&result.sim).map_err(model_err)?;
    let out_name = fi
        .output_names()
        .into_iter()
        .next()
        .ok_or_else(|| eval_err("the model has no output"))?;
    let diag: Vec<(String, ActQuant)> = result
        .quantized
        .acts
        .values()
        .map(|a| (a.name.clone(), a.clone()))
        .collect();
    let names: Vec<String> = diag.iter().map(|d| d.0.clone()).collect();
    let mut acc_f = Accuracy::default();
    let mut acc_q = Accuracy::default();
    let mut agree = Top1Agreement::default();
    let mut sqnr = Sqnr::default();
    let mut cos = Cosine::default();
    let mut alone: Vec<Sqnr> = diag.iter().map(|_| Sqnr::default()).collect();
    let mut drift: Vec<Sqnr> = diag.iter().map(|_| Sqnr::default()).collect();
    let mut labels_seen = false;
    let mut samples = 0;
    let total = data.len().div_ceil(batch_size) as u64;
    let pb = crate::util::progress::bar(total, "evaluate");
    for b in data.batches(batch_size).map_err(eval_err)? {
        let b = b.map_err(eval_err)?;
        samples += b.len();
        let feeds: Vec<(String, Tensor)> = b
            .inputs
            .iter()
            .map(|(n, a)| (n.clone(), Tensor::F32(a.clone())))
            .collect();
        let mut cf = Capture {
            names: capture_ids(&result.float, &names),
            got: BTreeMap::new(),
        };
        let mut cq = Capture {
            names: capture_ids(&result.sim, &names),
            got: BTreeMap::new(),
        };
        let fo = fi
            .run_batched_observed(&feeds, None, &mut cf)
            .map_err(eval_err)?;
        let qo = qi
            .run_batched_observed(&feeds, None, &mut cq)
            .map_err(eval_err)?;
        let get = |o: &Vec<(String, Tensor)>| -> Result<ArrayD<f32>, QuantizeError> {
            o.iter()
                .find(|x| x.0 == out_name)
                .ok_or_else(|| eval_err("missing output"))?
                .1
                .to_f32()
                .map_err(eval_err)
        };
        let (f, q) = (get(&fo)?, get(&qo)?);
        if let Some(l) = &b.labels {
            labels_seen = true;
            acc_f.update(f.view(), l).map_err(eval_err)?;
            acc_q.update(q.view(), l).map_err(eval_err)?;
        }
        if f.ndim() == 2 {
            agree.update(f.view(), q.view()).map_err(eval_err)?;
        }
        sqnr.update(f.view(), q.view()).map_err(eval_err)?;
        cos.update(f.view(), q.view()).map_err(eval_err)?;
        for (i, (n, a)) in diag.iter().enumerate() {
            let (Some(xf), Some(xq)) = (cf.got.get(n), cq.got.get(n)) else {
                continue;
            };
            let flat: Vec<f32> = xf.iter().copied().collect();
            let mut qv = vec![0f32; flat.len()];
            a.format.fake_quantize(&flat, a.scale, &mut qv);
            let qa = ArrayD::from_shape_vec(xf.shape().to_vec(), qv).map_err(eval_err)?;
            alone[i].update(xf.view(), qa.view()).map_err(eval_err)?;
            drift[i].update(xf.view(), xq.view()).map_err(eval_err)?;
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let fin = |m: &dyn PairMetric| m.finish().unwrap_or(f64::NAN);
    let (ft, qt) = if labels_seen {
        (acc_f.finish().ok(), acc_q.finish().ok())
    } else {
        (None, None)
    };
    Ok(EvalReport {
        samples,
        output: out_name,
        float_top1: ft.as_ref().map(|r| r.top1),
        float_top5: ft.as_ref().map(|r| r.top5),
        quant_top1: qt.as_ref().map(|r| r.top1),
        quant_top5: qt.as_ref().map(|r| r.top5),
        top1_agreement: agree.finish().ok(),
        output_sqnr_db: fin(&sqnr),
        output_cosine: fin(&cos),
        tensors: diag
            .iter()
            .enumerate()
            .map(|(i, (n, a))| TensorDiagnosis {
                tensor: n.clone(),
                format: a.format.to_string(),
                scale: a.scale,
                sqnr_alone_db: fin(&alone[i]),
                sqnr_drift_db: fin(&drift[i]),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w1() -> Model {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/w1/model.onnx");
        crate::onnx::load(&p).expect("W1 model is vendored")
    }

    #[test]
    fn w1_batch_one_model_runs_batched_after_prepare() {
        let mut m = w1();
        let log = prepare(&mut m, &["fold-batch-norm".to_string()]).expect("prepare");
        assert!(
            log.iter()
                .any(|l| l.contains("batch dimension made dynamic")),
            "{log:?}"
        );
        let interp = Interpreter::new(&m).expect("interp");
        let x = Tensor::f32(
            &[8, 1, 28, 28],
            (0..8 * 784).map(|i| (i % 255) as f32).collect(),
        )
        .expect("x");
        let out = interp
            .run(&[("Input3".into(), x.clone())])
            .expect("batched run");
        assert_eq!(out[0].1.shape(), &[8, 10]);
        // Same numbers as the original batch-1 model sample by sample.
        let orig = Interpreter::new(&w1()).expect("orig");
        let all = out[0].1.to_f32().expect("f32");
        let xs = x.to_f32().expect("f32");
        for i in 0..8 {
            let xi = Tensor::F32(
                xs.slice(ndarray::s![i..i + 1, .., .., ..])
                    .to_owned()
                    .into_dyn(),
            );
            let o = orig.run(&[("Input3".into(), xi)]).expect("single");
            let o = o[0].1.to_f32().expect("f32");
            for (a, b) in o.iter().zip(all.slice(ndarray::s![i, ..]).iter()) {
                assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn unknown_pass_is_an_error_naming_it() {
        let mut m = w1();
        let e = prepare(&mut m, &["no-such-pass".to_string()]).expect_err("unknown pass");
        assert!(e.to_string().contains("no-such-pass"), "{e}");
    }
}
