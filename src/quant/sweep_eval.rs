//! The evaluator `mfq sweep MODEL` runs for each configuration. Shared work is done once: the
//! model is imported and prepared once, the float outputs on the evaluation set are computed
//! once, calibration statistics are gathered once per (passes, calibration method) and reused by
//! every format, and layer shapes for costing are inferred once.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ndarray::ArrayD;

use crate::calib::ObserverSet;
use crate::data::Dataset;
use crate::interp::Interpreter;
use crate::ir::Model;
use crate::metrics::{Accuracy, PairMetric, Sqnr, Top1Agreement};
use crate::sweep::{AccuracyKind, ConfigOutcome, ConfigRecipe, CostFigures};
use crate::tensor::Tensor;

use super::pipeline::{self, QuantizeError};
use super::recipe::{Granularity, Recipe, Resolved};

/// Float outputs of one evaluation batch.
struct EvalBatch {
    feeds: Vec<(String, Tensor)>,
    float_out: ArrayD<f32>,
    labels: Option<Vec<i64>>,
}

/// Shared state of a sweep over one model.
pub struct SweepEvaluator {
    model: Model,
    base: Recipe,
    calib: Dataset,
    batches: Vec<EvalBatch>,
    output: String,
    /// Largest dot-product length and weight element count per layer name (format-independent).
    max_n: u64,
    weight_counts: BTreeMap<String, u64>,
    stats: Mutex<BTreeMap<String, std::sync::Arc<ObserverSet>>>,
}

fn err(e: impl std::fmt::Display) -> QuantizeError {
    QuantizeError::Eval(e.to_string())
}

impl SweepEvaluator {
    /// Prepares the shared work: the float model (after `base.passes`) and its outputs on `eval`.
    pub fn new(
        mut model: Model,
        base: Recipe,
        calib: Dataset,
        eval: &Dataset,
    ) -> Result<Self, QuantizeError> {
        pipeline::prepare(&mut model, &base.passes)?;
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
            let float_out = outs
                .into_iter()
                .find(|o| o.0 == output)
                .ok_or_else(|| err("missing output"))?
                .1
                .to_f32()
                .map_err(err)?;
            batches.push(EvalBatch {
                feeds,
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
            model,
            base,
            calib,
            batches,
            output,
            max_n,
            weight_counts,
            stats: Mutex::new(BTreeMap::new()),
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
            if p != &self.base.passes {
                return Err(QuantizeError::Recipe(super::recipe::RecipeError::Invalid {
                    option: "passes".into(),
                    reason: format!(
                        "this sweep prepared the model with [{}]; a different pass list per configuration is not supported yet",
                        self.base.passes.join(", ")
                    ),
                }));
            }
        }
        let resolved = r.resolve()?;
        Ok((r, resolved))
    }

    fn stats_for(
        &self,
        r: &Recipe,
        needs_hist: bool,
    ) -> Result<std::sync::Arc<ObserverSet>, QuantizeError> {
        // Statistics cover every compute layer's input, whatever the formats: one set per
        // histogram need serves all configurations.
        let key = format!("hist={needs_hist}");
        if let Some(s) = self
            .stats
            .lock()
            .map_err(|_| err("statistics cache poisoned"))?
            .get(&key)
        {
            return Ok(s.clone());
        }
        let s = std::sync::Arc::new(pipeline::calibration_stats(&self.model, r, &self.calib)?);
        self.stats
            .lock()
            .map_err(|_| err("statistics cache poisoned"))?
            .insert(key, s.clone());
        Ok(s)
    }

    /// Evaluates one configuration.
    pub fn evaluate(&self, c: &ConfigRecipe) -> Result<ConfigOutcome, QuantizeError> {
        let (r, resolved) = self.recipe(c)?;
        let stats = self.stats_for(&r, resolved.clip.needs_histogram())?;
        let res = pipeline::quantize_with_stats(&self.model, &r, &stats)?;
        let qi = Interpreter::new(&res.sim).map_err(err)?;
        let mut acc = Accuracy::default();
        let mut agree = Top1Agreement::default();
        let mut sqnr = Sqnr::default();
        let mut labelled = true;
        for b in &self.batches {
            let outs = qi.run_batched(&b.feeds, None).map_err(err)?;
            let q = outs
                .into_iter()
                .find(|o| o.0 == self.output)
                .ok_or_else(|| err("missing output"))?
                .1
                .to_f32()
                .map_err(err)?;
            match &b.labels {
                Some(l) => acc.update(q.view(), l).map_err(err)?,
                None => labelled = false,
            }
            agree.update(b.float_out.view(), q.view()).map_err(err)?;
            sqnr.update(b.float_out.view(), q.view()).map_err(err)?;
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
