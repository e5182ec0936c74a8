//! Bridges the quantization plan to the `cost-model` crate: per-layer descriptions (MACs,
//! dot-product length, output channels, weight and output counts at batch 1) with each layer's
//! formats, and the MAC-unit and model estimates the reports carry.

use cost_model::estimate::{estimate_mac, MacEstimate, MacOptions};
use cost_model::layers::{estimate_model, Arch, LayerDesc, ModelEstimate, ModelOptions};
use cost_model::Operand;
use quant_formats::Format;

use crate::ir::Model;

use super::plan::Layer;

/// Why a cost could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum CostBridgeError {
    #[error("shape inference for costing failed: {0}")]
    Shapes(String),
    #[error("layer {layer}: {reason}")]
    Layer { layer: String, reason: String },
    #[error(transparent)]
    Cost(#[from] cost_model::CostError),
}

/// Layer descriptions (batch 1) for every planned layer with both formats set.
pub fn layer_descs(model: &Model, layers: &[Layer]) -> Result<Vec<LayerDesc>, CostBridgeError> {
    let mut sm = model.clone();
    crate::ir::fold::fix_batch(&mut sm, 1)
        .and_then(|_| crate::ir::fold::infer_shapes(&mut sm))
        .map_err(|e| CostBridgeError::Shapes(e.to_string()))?;
    let g = &sm.graph;
    let mut out = Vec::new();
    for l in layers {
        let (Some(wf), Some(af)) = (l.weight_format, l.act_format) else {
            continue;
        };
        let node = g.node(l.node);
        let err = |reason: String| CostBridgeError::Layer {
            layer: l.name.clone(),
            reason,
        };
        let op = crate::interp::build_op(&sm, l.node).map_err(|e| err(e.to_string()))?;
        let ins: Vec<Option<Vec<usize>>> = node
            .inputs
            .iter()
            .map(|i| i.and_then(|v| g.value(v).static_shape()))
            .collect();
        let outs: Vec<Vec<usize>> = node
            .outputs
            .iter()
            .map(|o| {
                o.and_then(|v| g.value(v).static_shape())
                    .unwrap_or_default()
            })
            .collect();
        let in_refs: Vec<Option<&[usize]>> = ins.iter().map(|s| s.as_deref()).collect();
        let out_refs: Vec<&[usize]> = outs.iter().map(|s| s.as_slice()).collect();
        let macs = op.macs(&in_refs, &out_refs);
        let n = op.dot_length(&in_refs).unwrap_or(0) as u64;
        let out_shape = outs.first().cloned().unwrap_or_default();
        let output_count: usize = out_shape.iter().product();
        let (weight_count, weight_nonzero, out_channels) = match &l.weight {
            Some(w) => {
                let t = g.value(w.value).constant.as_ref();
                let count = t.map(|t| t.len()).unwrap_or(0) as u64;
                let nz = t
                    .and_then(|t| t.to_f64_vec().ok())
                    .map(|v| v.iter().filter(|x| **x != 0.0).count() as u64);
                let oc = w
                    .channel_axis
                    .and_then(|a| t.and_then(|t| t.shape().get(a).copied()))
                    .unwrap_or(1) as u64;
                (count, nz, oc)
            }
            None => (0, None, out_shape.last().copied().unwrap_or(1) as u64),
        };
        out.push(LayerDesc {
            name: l.name.clone(),
            op: l.op.clone(),
            macs,
            n,
            out_channels,
            weight_count,
            weight_nonzero,
            output_count: output_count as u64,
            // MX: the element format (the shared block scale sits outside the MAC unit).
            weight_format: mac_format(&wf),
            act_format: mac_format(&af),
            output_format: None,
        });
    }
    Ok(out)
}

/// Element format of an MX format (its shared scale sits outside the MAC unit).
fn mac_format(f: &Format) -> Format {
    match f {
        Format::Mx(m) => m
            .element
            .float_format()
            .map(Format::Float)
            .unwrap_or(Format::Int(quant_formats::IntFormat {
                bits: 8,
                signed: true,
                narrow: false,
            })),
        other => *other,
    }
}

/// Cost of one MAC unit for (weights, acts) at dot-product length `n` (the paper's metric).
pub fn mac_cost(weights: &Format, acts: &Format, n: u64) -> Result<MacEstimate, CostBridgeError> {
    let a = Operand::from_format(&mac_format(acts))?;
    let w = Operand::from_format(&mac_format(weights))?;
    Ok(estimate_mac(&a, &w, n.max(1), &MacOptions::default())?)
}

/// Model estimate of the given architecture.
pub fn model_cost(descs: &[LayerDesc], arch: Arch) -> Result<ModelEstimate, CostBridgeError> {
    let opts = ModelOptions {
        arch,
        mac: MacOptions::default(),
        memory: cost_model::layers::WeightMemory::Auto,
    };
    Ok(estimate_model(descs, &opts)?)
}
