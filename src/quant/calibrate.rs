//! Calibration: runs the float model over the calibration set with an observer on every
//! activation the plan quantizes (streaming statistics, memory independent of the number of
//! samples), then turns statistics into scales; quantizes weights per channel.

use std::collections::{BTreeMap, HashMap};

use ndarray::ArrayD;
use quant_formats::{Format, Rounding};

use crate::calib::{
    weight_clips, CalibError, ClipMethod, ObserverConfig, ObserverSet, ScaleRounding,
    WeightGranularity, WeightMethod,
};
use crate::data::{DataError, Dataset};
use crate::interp::{InterpError, Interpreter, Observer};
use crate::ir::{Model, ValueId};
use crate::tensor::Tensor;

use super::plan::Layer;

/// Calibration failure; names the tensor or data file at fault.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Interp(#[from] InterpError),
    #[error(transparent)]
    Calib(#[from] CalibError),
    #[error("weight '{tensor}': {reason}")]
    Weight { tensor: String, reason: String },
}

/// The quantizer chosen for one activation tensor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActQuant {
    /// Tensor name.
    pub name: String,
    /// Format after the unsigned decision.
    pub format: Format,
    /// Clipping value chosen by calibration.
    pub clip: f64,
    /// Scale (clip / format max, possibly a power of two).
    pub scale: f32,
    /// Observed minimum and maximum over the calibration set.
    pub observed_min: f32,
    pub observed_max: f32,
}

/// The quantizer chosen for one weight tensor, with its quantized values.
#[derive(Debug, Clone)]
pub struct WeightQuant {
    /// Tensor name.
    pub name: String,
    pub format: Format,
    /// Per-channel axis (`None`: per-tensor, or MX blocks along `mx_axis`).
    pub axis: Option<usize>,
    /// One scale per channel (one entry when per-tensor).
    pub scales: Vec<f32>,
    /// For MX formats: the axis along which blocks run (the reduction axis).
    pub mx_axis: Option<usize>,
    /// Fake-quantized weight values (`scale · code`), same shape as the original.
    pub values: ArrayD<f32>,
}

struct Watch<'a> {
    names: HashMap<ValueId, String>,
    set: &'a mut ObserverSet,
    err: Option<CalibError>,
}

impl Observer for Watch<'_> {
    fn observe(&mut self, value: ValueId, _name: &str, tensor: &Tensor) {
        if self.err.is_some() {
            return;
        }
        let Some(name) = self.names.get(&value) else {
            return;
        };
        if let Tensor::F32(a) = tensor {
            if let Err(e) = self.set.observe_array(name, a.view()) {
                self.err = Some(e);
            }
        }
    }
}

/// Samples per interpreter call during calibration. Observers are exact and order-independent,
/// so the chunking does not change any statistic; small chunks keep every intermediate tensor
/// of an ImageNet-size CNN below the allocator's mmap threshold (reused instead of mapped and
/// zeroed per op) and bound peak memory by a few samples' activations.
pub const CALIB_CHUNK: usize = 4;

/// Streams `data` through the float model and observes `values` (tensor names).
pub fn observe(
    interp: &Interpreter,
    data: &Dataset,
    batch_size: usize,
    values: &[(ValueId, String)],
    method: &ClipMethod,
) -> Result<ObserverSet, CalibrateError> {
    let config = ObserverConfig {
        histogram_bins: if method.needs_histogram() {
            ObserverConfig::default().histogram_bins
        } else {
            None
        },
    };
    let mut set = ObserverSet::new(config);
    let batches = data.batches(batch_size)?;
    let total = data.len().div_ceil(batch_size) as u64;
    let pb = crate::util::progress::bar(total, "calibrate");
    for b in batches {
        let b = b?;
        let feeds: Vec<(String, Tensor)> = b
            .inputs
            .into_iter()
            .map(|(n, a)| (n, Tensor::F32(a)))
            .collect();
        let mut w = Watch {
            names: values.iter().cloned().collect(),
            set: &mut set,
            err: None,
        };
        interp.run_batched_observed(&feeds, Some(CALIB_CHUNK), &mut w)?;
        if let Some(e) = w.err {
            return Err(e.into());
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(set)
}

/// True when `v` can be shown non-negative from the graph structure (after Relu, Sigmoid,
/// Softmax, Clip with min ≥ 0, through shape-only and max/average pooling ops).
pub fn structurally_nonnegative(model: &Model, v: ValueId) -> bool {
    let g = &model.graph;
    let mut v = v;
    for _ in 0..64 {
        let Some((node, _)) = g.producer(v) else {
            return false;
        };
        let n = g.node(node);
        match n.op_type.as_str() {
            "Relu" | "Sigmoid" | "Softmax" | "HardSigmoid" | "Abs" => return true,
            "Clip" => {
                let min_attr = n.attr("min").and_then(|a| match a.value {
                    crate::ir::AttrValue::Float(f) => Some(f),
                    _ => None,
                });
                let min_in = n.inputs.get(1).copied().flatten().and_then(|m| {
                    g.value(m)
                        .constant
                        .as_ref()
                        .and_then(|t| t.to_f64_vec().ok())
                        .and_then(|x| x.first().copied())
                        .map(|x| x as f32)
                });
                return min_attr.or(min_in).is_some_and(|m| m >= 0.0);
            }
            "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" | "Reshape"
            | "Flatten" | "Transpose" | "Squeeze" | "Unsqueeze" | "Identity" | "Resize"
            | "DepthToSpace" | "SpaceToDepth" => match n.inputs.first().copied().flatten() {
                Some(x) => v = x,
                None => return false,
            },
            _ => return false,
        }
    }
    false
}

/// Makes an integer format unsigned (same width) when the tensor is non-negative.
fn unsigned_variant(f: Format) -> Format {
    match f {
        Format::Int(mut i) if i.signed => {
            i.signed = false;
            Format::Int(i)
        }
        other => other,
    }
}

/// The format of an activation requested as an unsigned minifloat `f` (`e4m3:unsigned`): on a
/// non-negative tensor the bit a sign would take is an extra mantissa bit (`e4m4:unsigned`, same
/// width and exponent bias), on any other tensor the signed format of the same split. When the
/// wider split is not a valid format the requested one is kept.
fn unsigned_float_act(f: quant_formats::FloatFormat, nonneg: bool) -> Format {
    if !nonneg {
        return Format::Float(quant_formats::FloatFormat { signed: true, ..f });
    }
    let wide = Format::Float(quant_formats::FloatFormat {
        man_bits: f.man_bits + 1,
        ..f
    });
    if wide.validate().is_ok() {
        wide
    } else {
        Format::Float(f)
    }
}

/// Chooses activation quantizers for every (tensor, format) pair of the plan.
#[allow(clippy::too_many_arguments)]
pub fn activation_quantizers(
    model: &Model,
    layers: &[Layer],
    set: &ObserverSet,
    method: &ClipMethod,
    rounding: ScaleRounding,
    unsigned_acts: bool,
) -> Result<BTreeMap<(String, String), ActQuant>, CalibrateError> {
    let g = &model.graph;
    let mut out = BTreeMap::new();
    for l in layers {
        let Some(fmt) = l.act_format else { continue };
        let node = g.node(l.node);
        for &slot in &l.act_slots {
            let Some(v) = node.inputs.get(slot).copied().flatten() else {
                continue;
            };
            let name = g.value(v).name.clone();
            let key = (name.clone(), fmt.to_string());
            if out.contains_key(&key) {
                continue;
            }
            let obs = set.get(&name).ok_or_else(|| CalibError::Empty {
                tensor: name.clone(),
            })?;
            let stats = obs.stats();
            let nonneg = structurally_nonnegative(model, v) || (g.is_input(v) && stats.min >= 0.0);
            let format = match fmt {
                // `ExMy:unsigned` as an activation format: the sign bit is free on a
                // non-negative tensor and becomes a mantissa bit (same width); a tensor that
                // can be negative keeps the signed format.
                Format::Float(f) if !f.signed => unsigned_float_act(f, nonneg),
                _ if unsigned_acts && nonneg => unsigned_variant(fmt),
                _ => fmt,
            };
            let cal = set.calibrate(&name, method, &format, rounding)?;
            out.insert(
                key,
                ActQuant {
                    name,
                    format,
                    clip: cal.clip,
                    scale: cal.scale,
                    observed_min: stats.min,
                    observed_max: stats.max,
                },
            );
        }
    }
    Ok(out)
}

/// The reduction axis of a weight (where MX blocks run): the input-channel axis.
fn reduction_axis(op: &str, channel_axis: Option<usize>, rank: usize) -> usize {
    match (op, channel_axis) {
        ("Conv", _) => 1.min(rank.saturating_sub(1)),
        ("ConvTranspose", _) => 0,
        (_, Some(a)) if rank == 2 => 1 - a.min(1),
        (_, Some(a)) if a + 1 == rank => rank.saturating_sub(2),
        _ => rank.saturating_sub(1),
    }
}

/// Quantizes the weight of `layer` with its format and the recipe's granularity/method.
pub fn quantize_weight(
    model: &Model,
    layer: &Layer,
    per_channel: bool,
    method: WeightMethod,
    rounding: ScaleRounding,
    fixed_scales: Option<&[f32]>,
) -> Result<Option<WeightQuant>, CalibrateError> {
    let (Some(w), Some(format)) = (&layer.weight, layer.weight_format) else {
        return Ok(None);
    };
    let val = model.graph.value(w.value);
    let name = val.name.clone();
    let werr = |reason: String| CalibrateError::Weight {
        tensor: name.clone(),
        reason,
    };
    let t = val
        .constant
        .as_ref()
        .ok_or_else(|| werr("not a constant".into()))?;
    let arr = t.to_f32().map_err(|e| werr(e.to_string()))?;
    let shape = arr.shape().to_vec();
    let flat: Vec<f32> = arr.iter().copied().collect();
    let mut out = vec![0f32; flat.len()];
    let q = quant_formats::Quantizer::new(&format, Rounding::HalfEven);
    if let Format::Mx(_) = format {
        let axis = reduction_axis(&layer.op, w.channel_axis, shape.len());
        q.fake_quantize_mx(&flat, &shape, axis, &mut out, None)
            .map_err(|e| werr(e.to_string()))?;
        let values = ArrayD::from_shape_vec(shape, out).map_err(|e| werr(e.to_string()))?;
        return Ok(Some(WeightQuant {
            name: name.clone(),
            format,
            axis: None,
            scales: vec![1.0],
            mx_axis: Some(axis),
            values,
        }));
    }
    let axis = if per_channel { w.channel_axis } else { None };
    let gran = match axis {
        Some(a) => WeightGranularity::PerChannel { axis: a },
        None => WeightGranularity::PerTensor,
    };
    let scales = match fixed_scales {
        Some(s) => s.to_vec(),
        None => weight_clips(&name, arr.view(), gran, method, &format, rounding)?.scales,
    };
    match axis {
        Some(a) => q
            .fake_quantize_per_channel(&flat, &shape, a, &scales, &mut out)
            .map_err(|e| werr(e.to_string()))?,
        None => q.fake_quantize(&flat, scales[0], &mut out),
    }
    let values = ArrayD::from_shape_vec(shape, out).map_err(|e| werr(e.to_string()))?;
    Ok(Some(WeightQuant {
        name: name.clone(),
        format,
        axis,
        scales,
        mx_axis: None,
        values,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(spec: &str) -> quant_formats::FloatFormat {
        match spec.parse::<Format>().expect("format") {
            Format::Float(f) => f,
            other => panic!("{other} is not a minifloat"),
        }
    }

    #[test]
    fn unsigned_minifloat_acts_spend_the_sign_bit_on_the_mantissa() {
        let f = float("e4m3:unsigned");
        assert_eq!(unsigned_float_act(f, true).to_string(), "e4m4:unsigned");
        assert_eq!(unsigned_float_act(f, false).to_string(), "e4m3");
        let f = float("e2m1:unsigned");
        assert_eq!(unsigned_float_act(f, true).to_string(), "e2m2:unsigned");
        // same width as the signed format it stands for
        assert_eq!(
            unsigned_float_act(f, true).bits(),
            Format::Float(float("e2m1")).bits()
        );
    }
}
