//! Which tensors get quantized, and to what: finds the compute layers (Conv, ConvTranspose,
//! Gemm, MatMul, Einsum), their constant weights with the output-channel axis, their activation
//! inputs, and applies first/last and per-layer overrides from the recipe.

use quant_formats::Format;

use crate::ir::{AttrValue, Model, NodeId, ValueId};

use super::recipe::Resolved;

/// Ops whose weights and input activations are quantized (the "layerwise" scheme).
pub const COMPUTE_OPS: &[&str] = &["Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum"];

/// Position of a layer among the compute layers in topological order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    First,
    Middle,
    Last,
    /// The only compute layer: both first and last.
    Only,
}

/// A constant weight input of a layer.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightInput {
    /// Input slot of the node.
    pub slot: usize,
    /// The constant value.
    pub value: ValueId,
    /// Output-channel axis for per-channel scales (`None`: per-tensor only, e.g. Einsum).
    pub channel_axis: Option<usize>,
}

/// One compute layer and what the recipe asks for it.
#[derive(Debug, Clone)]
pub struct Layer {
    pub node: NodeId,
    pub name: String,
    pub op: String,
    pub role: Role,
    /// Constant weight, if the layer has one.
    pub weight: Option<WeightInput>,
    /// Input slots holding activations (non-constant data inputs).
    pub act_slots: Vec<usize>,
    /// Bias input slot (Conv/ConvTranspose slot 2, Gemm C), if present and constant.
    pub bias_slot: Option<usize>,
    /// Weight format (`None` = left in float by an override).
    pub weight_format: Option<Format>,
    /// Activation format (`None` = left in float).
    pub act_format: Option<Format>,
}

/// Planning failure.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("graph error: {0}")]
    Graph(String),
    #[error("override {index} matches no layer of the model (layers: {layers})")]
    UnusedOverride { index: usize, layers: String },
}

fn int_attr(model: &Model, node: NodeId, name: &str) -> Option<i64> {
    match model.graph.node(node).attr(name).map(|a| &a.value) {
        Some(AttrValue::Int(i)) => Some(*i),
        _ => None,
    }
}

fn is_const(model: &Model, v: ValueId) -> bool {
    let g = &model.graph;
    // Initializers count as weights even when an old (IR < 4) model also lists them as inputs.
    g.value(v).constant.is_some() && g.producer(v).is_none()
}

fn rank(model: &Model, v: ValueId) -> Option<usize> {
    let val = model.graph.value(v);
    val.constant
        .as_ref()
        .map(|t| t.shape().len())
        .or_else(|| val.shape.as_ref().map(|s| s.len()))
}

/// Finds the weight and activation inputs of one compute node.
fn classify(model: &Model, id: NodeId) -> (Option<WeightInput>, Vec<usize>, Option<usize>) {
    let node = model.graph.node(id);
    let input = |i: usize| node.inputs.get(i).copied().flatten();
    let mut acts = Vec::new();
    let mut weight = None;
    let mut bias = None;
    match node.op_type.as_str() {
        "Conv" | "ConvTranspose" => {
            if input(0).is_some() {
                acts.push(0);
            }
            if let Some(w) = input(1).filter(|&w| is_const(model, w)) {
                // Conv weights are [M, C/g, k...]; ConvTranspose weights are [C, M/g, k...].
                let axis = if node.op_type == "Conv" { 0 } else { 1 };
                weight = Some(WeightInput {
                    slot: 1,
                    value: w,
                    channel_axis: Some(axis),
                });
            } else if input(1).is_some() {
                acts.push(1);
            }
            if input(2).is_some_and(|b| is_const(model, b)) {
                bias = Some(2);
            }
        }
        "Gemm" => {
            let trans_a = int_attr(model, id, "transA").unwrap_or(0) != 0;
            let trans_b = int_attr(model, id, "transB").unwrap_or(0) != 0;
            for (slot, trans, out_axis) in [(0, trans_a, 0usize), (1, trans_b, 1usize)] {
                let Some(v) = input(slot) else { continue };
                if slot == 1 && is_const(model, v) {
                    // B is [K, N] (or [N, K] transposed): output channels are N.
                    let axis = if trans { 0 } else { out_axis };
                    weight = Some(WeightInput {
                        slot,
                        value: v,
                        channel_axis: Some(axis),
                    });
                } else if slot == 0 && is_const(model, v) {
                    weight = Some(WeightInput {
                        slot,
                        value: v,
                        channel_axis: Some(if trans { 1 } else { 0 }),
                    });
                } else {
                    acts.push(slot);
                }
            }
            if input(2).is_some_and(|c| is_const(model, c)) {
                bias = Some(2);
            }
        }
        "MatMul" => {
            let b_const = input(1).filter(|&v| is_const(model, v));
            let a_const = input(0).filter(|&v| is_const(model, v));
            if let Some(b) = b_const {
                // [..., K, N]: output channels are the last axis.
                let axis = rank(model, b).map(|r| r.saturating_sub(1));
                weight = Some(WeightInput {
                    slot: 1,
                    value: b,
                    channel_axis: axis,
                });
                if input(0).is_some() {
                    acts.push(0);
                }
            } else if let Some(a) = a_const {
                // [..., M, K]: output rows are axis rank-2.
                let axis = rank(model, a).and_then(|r| r.checked_sub(2));
                weight = Some(WeightInput {
                    slot: 0,
                    value: a,
                    channel_axis: axis,
                });
                if input(1).is_some() {
                    acts.push(1);
                }
            } else {
                acts.extend((0..2).filter(|&i| input(i).is_some()));
            }
        }
        _ => {
            // Einsum and anything else: constants are per-tensor weights, the rest activations.
            for (i, v) in node.inputs.iter().enumerate() {
                let Some(v) = v else { continue };
                if is_const(model, *v) && weight.is_none() {
                    weight = Some(WeightInput {
                        slot: i,
                        value: *v,
                        channel_axis: None,
                    });
                } else if !is_const(model, *v) {
                    acts.push(i);
                }
            }
        }
    }
    (weight, acts, bias)
}

/// Builds the quantization plan of `model` for the resolved recipe.
pub fn plan(model: &Model, r: &Resolved) -> Result<Vec<Layer>, PlanError> {
    let order = model
        .graph
        .topo_order()
        .map_err(|e| PlanError::Graph(e.to_string()))?;
    let compute: Vec<NodeId> = order
        .into_iter()
        .filter(|&id| {
            let n = model.graph.node(id);
            (n.domain.is_empty() || n.domain == "ai.onnx")
                && COMPUTE_OPS.contains(&n.op_type.as_str())
        })
        .collect();
    let count = compute.len();
    let mut used = vec![false; r.overrides.len()];
    let mut layers = Vec::with_capacity(count);
    for (i, id) in compute.into_iter().enumerate() {
        let node = model.graph.node(id);
        let role = match (i == 0, i + 1 == count) {
            (true, true) => Role::Only,
            (true, false) => Role::First,
            (false, true) => Role::Last,
            _ => Role::Middle,
        };
        let edge = role != Role::Middle;
        let (weight, act_slots, bias_slot) = classify(model, id);
        let mut wf = Some(if edge {
            r.first_last.unwrap_or(r.weights)
        } else {
            r.weights
        });
        let mut af = Some(if edge {
            r.first_last.unwrap_or(r.acts)
        } else {
            r.acts
        });
        for (k, o) in r.overrides.iter().enumerate() {
            if o.matcher.matches(&node.name, &node.op_type) {
                used[k] = true;
                if o.skip {
                    wf = None;
                    af = None;
                }
                if let Some(f) = o.weights {
                    wf = Some(f);
                }
                if let Some(f) = o.acts {
                    af = Some(f);
                }
            }
        }
        layers.push(Layer {
            node: id,
            name: node.name.clone(),
            op: node.op_type.clone(),
            role,
            weight_format: if weight.is_some() { wf } else { None },
            weight,
            act_slots,
            bias_slot,
            act_format: af,
        });
    }
    if let Some(index) = used.iter().position(|u| !u) {
        return Err(PlanError::UnusedOverride {
            index,
            layers: layers
                .iter()
                .map(|l| format!("{} ({})", l.name, l.op))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(layers)
}
