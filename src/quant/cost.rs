//! Bridges the quantization plan to the `cost-model` crate: per-layer descriptions (MACs,
//! dot-product length, output channels, weight and output counts at batch 1) with each layer's
//! formats, and the MAC-unit and model estimates the reports carry; and [`graph_counts`], the
//! per-node counts of a whole graph (float or QONNX export) in QONNX's `inference_cost`
//! convention, datatypes included.

use cost_model::estimate::{estimate_mac, MacEstimate, MacOptions};
use cost_model::layers::{
    estimate_model, qonnx_node_counts, Arch, LayerDesc, ModelEstimate, ModelOptions, QonnxNode,
    QonnxType,
};
use cost_model::Operand;
use quant_formats::Format;

use crate::ir::{AttrValue, Model, NodeId, ValueId};

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

/// Ops QONNX's `inference_cost` costs (Upsample aside, which mfq does not implement).
pub const QONNX_COSTED_OPS: &[&str] = &["Conv", "MatMul", "Gemm"];

/// Per-node counts of a whole graph in QONNX's `inference_cost` convention, plus the compute
/// nodes QONNX skips.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GraphCounts {
    /// Every compute node (Conv, ConvTranspose, Gemm, MatMul, Einsum) in graph order, with
    /// QONNX's datatypes of input 0, input 1 and output 0; an unnamed node is named after its
    /// first output.
    pub nodes: Vec<cost_model::layers::QonnxNode>,
    /// QONNX totals over the nodes QONNX costs ([`QONNX_COSTED_OPS`]).
    pub qonnx: std::collections::BTreeMap<String, f64>,
    /// Compute nodes mfq costs but QONNX 1.0.0 lists as unsupported (ConvTranspose, Einsum):
    /// op type → MACs.
    pub qonnx_skipped: std::collections::BTreeMap<String, u64>,
    /// MACs of every compute node (no sparsity discount).
    pub total_macs: u64,
}

/// A graph with static shapes at batch 1 and every constant-computable value (quantized
/// weights included) evaluated, as QONNX's preprocessing leaves it.
fn static_graph(model: &Model) -> Result<Model, CostBridgeError> {
    let shapes = |e: String| CostBridgeError::Shapes(e);
    let mut m = model.clone();
    super::prepare(&mut m, &[]).map_err(|e| shapes(e.to_string()))?;
    crate::ir::fold::make_static(&mut m, 1).map_err(|e| shapes(e.to_string()))?;
    // The folding above leaves custom-domain nodes (QONNX quantizers) alone; QONNX folds
    // them, so weights are costed (sparsity, constness) as the quantized values.
    let order = m.graph.topo_order().map_err(|e| shapes(e.to_string()))?;
    for id in order {
        let node = m.graph.node(id);
        let ins: Option<Vec<std::sync::Arc<crate::tensor::Tensor>>> = node
            .inputs
            .iter()
            .flatten()
            .map(|v| m.graph.value(*v).constant.clone())
            .collect();
        let Some(ins) = ins else { continue };
        if node
            .outputs
            .iter()
            .flatten()
            .all(|v| m.graph.value(*v).constant.is_some())
        {
            continue;
        }
        let op = crate::interp::build_op(&m, id).map_err(|e| CostBridgeError::Layer {
            layer: node.label(),
            reason: e.to_string(),
        })?;
        let mut it = ins.iter();
        let refs: Vec<Option<&crate::tensor::Tensor>> = node
            .inputs
            .iter()
            .map(|i| i.and_then(|_| it.next().map(|t| t.as_ref())))
            .collect();
        let outs = op.eval(&refs).map_err(|e| CostBridgeError::Layer {
            layer: node.label(),
            reason: e.to_string(),
        })?;
        let slots = node.outputs.clone();
        for (slot, t) in slots.iter().zip(outs) {
            if let Some(v) = slot {
                m.graph.value_mut(*v).constant = Some(std::sync::Arc::new(t));
            }
        }
    }
    Ok(m)
}

fn qt(name: &str, bits: u32) -> QonnxType {
    QonnxType {
        name: name.to_string(),
        bits,
    }
}

/// Scalar value of a constant input (QONNX reads quantizer parameters from initializers only).
fn init_values(m: &Model, v: Option<ValueId>) -> Option<(Vec<f64>, usize)> {
    let v = v?;
    if m.graph.producer(v).is_some() {
        return None;
    }
    let t = m.graph.value(v).constant.as_ref()?;
    Some((t.to_f64_vec().ok()?, t.shape().len()))
}

/// QONNX datatype of a quantizer's output, following qonnx 1.0.0's `Quant`/`IntQuant`,
/// `FloatQuant` and `BipolarQuant` `infer_node_datatype` (scaled-int types allowed, as
/// `inference_cost` asks): a unit scale gives `INTb`/`UINTb` (`BIPOLAR`/`BINARY` at 1 bit),
/// another scale `SCALEDINT<b>`, a non-zero zero point or non-constant parameter `FLOAT32`;
/// a FloatQuant gives `FLOAT<E,M,bias>` only with unit scale, else `FLOAT32`.
fn quantizer_type(m: &Model, id: NodeId) -> QonnxType {
    let node = m.graph.node(id);
    let input = |i: usize| init_values(m, node.inputs.get(i).copied().flatten());
    let scalar = |i: usize| -> Option<f64> {
        let (v, rank) = input(i)?;
        (rank == 0 && v.len() == 1).then(|| v[0])
    };
    let unit_scale = || input(1).is_some_and(|(v, _)| v.iter().all(|x| *x == 1.0));
    match node.op_type.as_str() {
        "Quant" | "IntQuant" => {
            let (Some(_), Some((zp, _)), Some(b)) = (input(1), input(2), scalar(3)) else {
                return QonnxType::float32();
            };
            if zp.iter().any(|z| *z != 0.0) || b.fract() != 0.0 || b < 1.0 {
                return QonnxType::float32();
            }
            let bits = b as u32;
            let signed = match node.attr("signed").map(|a| &a.value) {
                Some(AttrValue::Int(s)) => *s != 0,
                _ => true,
            };
            if !unit_scale() {
                qt(&format!("SCALEDINT<{bits}>"), bits)
            } else if bits == 1 {
                qt(if signed { "BIPOLAR" } else { "BINARY" }, 1)
            } else {
                qt(&format!("{}INT{bits}", if signed { "" } else { "U" }), bits)
            }
        }
        "FloatQuant" => {
            let (Some(e), Some(mb), Some(bias), Some(_)) =
                (scalar(2), scalar(3), scalar(4), scalar(5))
            else {
                return QonnxType::float32();
            };
            if input(1).is_none() || !unit_scale() || [e, mb, bias].iter().any(|x| x.fract() != 0.0)
            {
                return QonnxType::float32();
            }
            qt(
                &format!("FLOAT<{},{},{}>", e as i64, mb as i64, bias as i64),
                1 + e as u32 + mb as u32,
            )
        }
        "BipolarQuant" => qt("BIPOLAR", 1),
        _ => QonnxType::float32(),
    }
}

fn is_integer_type(t: &QonnxType) -> bool {
    t.name == "BINARY"
        || t.name == "BIPOLAR"
        || t.name.starts_with("INT")
        || t.name.starts_with("UINT")
}

/// QONNX datatypes of every value (indexed by `ValueId::index`), following qonnx 1.0.0's
/// `InferDataTypes(allow_scaledint_dtypes=True)`: quantizers as [`quantizer_type`]; MAC-like
/// ops (MatMul, Gemm, Conv, Add, Sub, Mul) give `INT32`/`UINT32` when every input is an
/// integer, `SCALEDINT<32>` when every input is a (scaled) integer, else `FLOAT32`;
/// shape-moving ops, Clip, Pad, Concat and nearest Resize pass input 0's type on; everything
/// else is `FLOAT32` (`FLOAT16` for half-precision tensors).
fn qonnx_types(m: &Model, order: &[NodeId]) -> Vec<QonnxType> {
    const IDENTITY: &[&str] = &[
        "Reshape",
        "Transpose",
        "Flatten",
        "Slice",
        "Gather",
        "GatherElements",
        "GatherND",
        "Identity",
        "Expand",
        "MaxPool",
        "GlobalMaxPool",
        "Scatter",
        "ScatterElements",
        "ScatterND",
        "Squeeze",
        "Unsqueeze",
        "Tile",
        "Pad",
        "Concat",
        "Clip",
    ];
    const MAC_LIKE: &[&str] = &["MatMul", "Gemm", "Conv", "Add", "Sub", "Mul"];
    let g = &m.graph;
    let mut types: Vec<QonnxType> = g
        .value_ids()
        .map(|v| match g.value(v).dtype {
            Some(crate::tensor::DType::F16) => qt("FLOAT16", 16),
            _ => QonnxType::float32(),
        })
        .collect();
    let ty = |types: &Vec<QonnxType>, v: Option<ValueId>| {
        v.map(|v| types[v.index()].clone())
            .unwrap_or_else(QonnxType::float32)
    };
    for &id in order {
        let node = g.node(id);
        let first = node.inputs.first().copied().flatten();
        let out = if crate::ops::QONNX_DOMAINS.contains(&node.domain.as_str()) {
            Some(quantizer_type(m, id))
        } else if node.op_type == "Sign" {
            Some(qt("BIPOLAR", 1))
        } else if MAC_LIKE.contains(&node.op_type.as_str()) {
            let ins: Vec<QonnxType> = node.inputs.iter().map(|v| ty(&types, *v)).collect();
            let signed = node.op_type == "Sub"
                || ins
                    .iter()
                    .any(|t| !t.name.starts_with("UINT") && t.name != "BINARY");
            if ins.iter().all(is_integer_type) {
                Some(qt(if signed { "INT32" } else { "UINT32" }, 32))
            } else if ins
                .iter()
                .all(|t| is_integer_type(t) || t.name.starts_with("SCALEDINT"))
            {
                Some(qt("SCALEDINT<32>", 32))
            } else {
                Some(QonnxType::float32())
            }
        } else if node.op_type == "Resize" || node.op_type == "Upsample" {
            let nearest = match node.attr("mode").map(|a| &a.value) {
                Some(AttrValue::String(s)) => s.as_slice() == b"nearest",
                _ => true,
            };
            nearest.then(|| ty(&types, first))
        } else if IDENTITY.contains(&node.op_type.as_str()) {
            Some(ty(&types, first))
        } else {
            None
        };
        if let Some(t) = out {
            // Ops with several outputs only ever get output 0 typed by QONNX's rules here;
            // the others keep their container type.
            for (i, v) in node.outputs.iter().enumerate() {
                if let Some(v) = v {
                    if i == 0 || !MAC_LIKE.contains(&node.op_type.as_str()) {
                        types[v.index()] = t.clone();
                    }
                }
            }
        }
    }
    types
}

/// Counts every compute node of `model` (a float graph or a QONNX export) the way qonnx
/// 1.0.0's `inference_cost` does after its preprocessing (batch fixed to 1, shapes inferred,
/// constants and weight quantizers folded, datatypes inferred with scaled-int types), using
/// mfq's own MAC counts of each op.
pub fn graph_counts(model: &Model) -> Result<GraphCounts, CostBridgeError> {
    let m = static_graph(model)?;
    let g = &m.graph;
    let order = g
        .topo_order()
        .map_err(|e| CostBridgeError::Shapes(e.to_string()))?;
    let types = qonnx_types(&m, &order);
    let mut nodes = Vec::new();
    let mut skipped: std::collections::BTreeMap<String, u64> = Default::default();
    let mut total_macs = 0u64;
    for &id in &order {
        let node = g.node(id);
        if !(node.domain.is_empty() || node.domain == "ai.onnx")
            || !super::plan::COMPUTE_OPS.contains(&node.op_type.as_str())
        {
            continue;
        }
        // Unnamed nodes are named after their first output (unique in a valid graph).
        let name = match (
            node.name.is_empty(),
            node.outputs.first().copied().flatten(),
        ) {
            (true, Some(v)) => g.value(v).name.clone(),
            _ => node.name.clone(),
        };
        let err = |reason: String| CostBridgeError::Layer {
            layer: name.clone(),
            reason,
        };
        let op = crate::interp::build_op(&m, id).map_err(|e| err(e.to_string()))?;
        let shape = |v: Option<ValueId>| v.and_then(|v| g.value(v).static_shape());
        let ins: Vec<Option<Vec<usize>>> = node.inputs.iter().map(|v| shape(*v)).collect();
        let outs: Vec<Vec<usize>> = node
            .outputs
            .iter()
            .map(|v| shape(*v).unwrap_or_default())
            .collect();
        let out0 = node
            .outputs
            .first()
            .copied()
            .flatten()
            .and_then(|v| g.value(v).static_shape())
            .ok_or_else(|| err("output shape unknown after shape inference".into()))?;
        let in_refs: Vec<Option<&[usize]>> = ins.iter().map(|s| s.as_deref()).collect();
        let out_refs: Vec<&[usize]> = outs.iter().map(|s| s.as_slice()).collect();
        let macs = op.macs(&in_refs, &out_refs);
        total_macs += macs;
        let input = |i: usize| node.inputs.get(i).copied().flatten();
        let constant = |i: usize| input(i).and_then(|v| g.value(v).constant.clone());
        // Weight: input 1 for Conv; for MatMul/Gemm the constant side (none when both are
        // activations), as QONNX does.
        let wslot = match node.op_type.as_str() {
            "MatMul" | "Gemm" => {
                if constant(1).is_some() {
                    Some(1)
                } else if constant(0).is_some() {
                    Some(0)
                } else {
                    None
                }
            }
            _ => Some(1),
        };
        let (weight_elems, weight_nonzero) = match wslot {
            Some(s) => {
                let elems = ins
                    .get(s)
                    .cloned()
                    .flatten()
                    .map(|s| s.iter().product::<usize>() as u64)
                    .ok_or_else(|| err(format!("input {s} shape unknown")))?;
                let nz = match constant(s) {
                    Some(t) => Some(
                        t.to_f64_vec()
                            .map_err(|e| err(e.to_string()))?
                            .iter()
                            .filter(|x| **x != 0.0)
                            .count() as u64,
                    ),
                    None => None,
                };
                (elems, nz)
            }
            None => (0, None),
        };
        let ty = |v: Option<ValueId>| {
            v.map(|v| types[v.index()].clone())
                .unwrap_or_else(QonnxType::float32)
        };
        if !QONNX_COSTED_OPS.contains(&node.op_type.as_str()) {
            *skipped.entry(node.op_type.clone()).or_default() += macs;
        }
        nodes.push(QonnxNode {
            name,
            op: node.op_type.clone(),
            macs,
            weight_elems,
            weight_nonzero,
            output_elems: out0.iter().product::<usize>() as u64,
            act: ty(input(0)),
            weight: ty(input(1)),
            output: ty(node.outputs.first().copied().flatten()),
        });
    }
    let costed: Vec<QonnxNode> = nodes
        .iter()
        .filter(|n| QONNX_COSTED_OPS.contains(&n.op.as_str()))
        .cloned()
        .collect();
    Ok(GraphCounts {
        qonnx: qonnx_node_counts(&costed),
        nodes,
        qonnx_skipped: skipped,
        total_macs,
    })
}
