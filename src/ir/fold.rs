//! Transforms that need op semantics: fixing the batch size, shape inference by abstract
//! execution, constant folding (including shape arithmetic: Shape/Gather/Concat/Unsqueeze/
//! ConstantOfShape/Equal/Where/Expand/…), and folding BatchNormalization into a preceding Conv,
//! ConvTranspose or Gemm. Each public transform verifies the graph afterwards.
//!
//! Shape inference runs the model once on zero-filled inputs of the fixed shapes and records the
//! dtype and shape of every tensor. This is exact for every supported op, because their output
//! shapes depend only on input shapes and on constant inputs (which are real constants, not
//! zeros); it costs one forward pass.

use super::transform::{remove_dead_code, run_verified};
use super::{Dim, IrError, Model, NodeId, ValueId};
use crate::interp::{Interpreter, Observer};
use crate::tensor::Tensor;
use std::sync::Arc;

/// Largest tensor (in elements) that constant folding materialises.
pub const MAX_FOLDED_ELEMENTS: usize = 1 << 22;

/// Sets the leading dimension of every fed input to `n` (symbolic or fixed before).
pub fn fix_batch(m: &mut Model, n: usize) -> Result<(), IrError> {
    run_verified(&mut m.graph, "fix_batch", |g| {
        for v in g.required_inputs() {
            if let Some(s) = g.value_mut(v).shape.as_mut() {
                if let Some(d) = s.first_mut() {
                    *d = Dim::Known(n);
                }
            }
        }
        Ok(())
    })
}

struct ShapeRecorder {
    seen: Vec<Option<(crate::tensor::DType, Vec<usize>)>>,
}

impl Observer for ShapeRecorder {
    fn observe(&mut self, value: ValueId, _name: &str, t: &Tensor) {
        if let Some(slot) = self.seen.get_mut(value.index()) {
            *slot = Some((t.dtype(), t.shape().to_vec()));
        }
    }
}

/// Infers dtype and static shape of every value by running the model once on zero inputs.
/// Every fed input must have a fully known shape (call [`fix_batch`] first for a symbolic batch).
pub fn infer_shapes(m: &mut Model) -> Result<(), IrError> {
    let interp =
        Interpreter::new(m).map_err(|e| IrError::Other(format!("shape inference: {e}")))?;
    let mut feeds = Vec::new();
    for v in m.graph.required_inputs() {
        let val = m.graph.value(v);
        let shape = val.static_shape().ok_or_else(|| {
            IrError::Other(format!(
                "shape inference: input '{}' has shape {} (fix the batch size first)",
                val.name,
                super::dump::shape_str(val.shape.as_ref())
            ))
        })?;
        let dt = val.dtype.unwrap_or(crate::tensor::DType::F32);
        let t = Tensor::zeros(dt, &shape).ok_or_else(|| {
            IrError::Other(format!(
                "shape inference: input '{}' has unsupported dtype {dt}",
                val.name
            ))
        })?;
        feeds.push((val.name.clone(), t));
    }
    let mut rec = ShapeRecorder {
        seen: vec![None; m.graph.value_count()],
    };
    interp
        .run_observed(&feeds, &mut rec)
        .map_err(|e| IrError::Other(format!("shape inference: {e}")))?;
    for v in m.graph.value_ids().collect::<Vec<_>>() {
        if let Some((dt, s)) = rec.seen[v.index()].take() {
            let val = m.graph.value_mut(v);
            val.dtype = Some(dt);
            val.shape = Some(s.into_iter().map(Dim::Known).collect());
        }
    }
    Ok(())
}

/// Evaluates every node whose inputs are all constant (and every Shape/Size of a value with a
/// known static shape), replacing its outputs by constants, then removes dead nodes. Returns the
/// number of nodes folded.
pub fn fold_constants(m: &mut Model) -> Result<usize, IrError> {
    let mut folded = 0;
    let mut pending: Option<IrError> = None;
    run_verified(&mut m.graph, "fold_constants", |_| Ok(()))?;
    loop {
        let order = m.graph.topo_order()?;
        let mut changed = false;
        for n in order {
            match try_fold(m, n) {
                Ok(true) => {
                    folded += 1;
                    changed = true;
                }
                Ok(false) => {}
                Err(e) => {
                    pending.get_or_insert(e);
                }
            }
        }
        if !changed {
            break;
        }
    }
    if let Some(e) = pending {
        return Err(e);
    }
    run_verified(&mut m.graph, "fold_constants", |g| {
        remove_dead_code(g).map(|_| ())
    })?;
    Ok(folded)
}

fn try_fold(m: &mut Model, n: NodeId) -> Result<bool, IrError> {
    let g = &m.graph;
    let node = g.node(n);
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Ok(false);
    }
    let shape_only = matches!(node.op_type.as_str(), "Shape" | "Size");
    let mut inputs: Vec<Option<Arc<Tensor>>> = Vec::with_capacity(node.inputs.len());
    for i in &node.inputs {
        match i {
            None => inputs.push(None),
            Some(v) => {
                let val = g.value(*v);
                if let Some(c) = &val.constant {
                    if g.producer(*v).is_none() && !g.is_input(*v) {
                        inputs.push(Some(c.clone()));
                        continue;
                    }
                }
                if shape_only {
                    if let (Some(s), Some(dt)) = (val.static_shape(), val.dtype) {
                        if s.iter().product::<usize>() <= MAX_FOLDED_ELEMENTS {
                            if let Some(z) = Tensor::zeros(dt, &s) {
                                inputs.push(Some(Arc::new(z)));
                                continue;
                            }
                        }
                    }
                }
                return Ok(false);
            }
        }
    }
    let op = crate::interp::build_op(m, n).map_err(|e| IrError::Transform {
        pass: "fold_constants".into(),
        node: node.label(),
        reason: e.to_string(),
    })?;
    let refs: Vec<Option<&Tensor>> = inputs.iter().map(|i| i.as_deref()).collect();
    let outs = op.eval(&refs).map_err(|e| IrError::Transform {
        pass: "fold_constants".into(),
        node: node.label(),
        reason: e.to_string(),
    })?;
    if outs.iter().any(|t| t.len() > MAX_FOLDED_ELEMENTS) {
        return Ok(false);
    }
    let outputs = node.outputs.clone();
    let g = &mut m.graph;
    g.remove_node(n);
    for (slot, t) in outputs.iter().zip(outs) {
        if let Some(v) = slot {
            let val = g.value_mut(*v);
            val.dtype = Some(t.dtype());
            val.shape = Some(t.shape().iter().map(|&d| Dim::Known(d)).collect());
            val.constant = Some(Arc::new(t));
            g.initializers.push(*v);
        }
    }
    Ok(true)
}

/// Fixes the batch, infers shapes and folds constants: a model with dynamic-shape arithmetic
/// becomes a static graph. Returns the number of folded nodes.
pub fn make_static(m: &mut Model, batch: usize) -> Result<usize, IrError> {
    fix_batch(m, batch)?;
    let mut total = fold_constants(m)?;
    infer_shapes(m)?;
    total += fold_constants(m)?;
    Ok(total)
}

fn const_of(m: &Model, v: Option<ValueId>) -> Option<Arc<Tensor>> {
    let v = v?;
    let g = &m.graph;
    if g.producer(v).is_some() || g.is_input(v) {
        return None;
    }
    g.value(v).constant.clone()
}

fn f32_vec(t: &Tensor) -> Option<Vec<f32>> {
    t.as_f32().map(|a| a.iter().copied().collect())
}

/// Folds inference BatchNormalization nodes into a preceding Conv, ConvTranspose or Gemm whose
/// weights are constant and whose output feeds only the BatchNormalization. Returns the number
/// of BatchNormalization nodes removed.
pub fn fold_batch_norm(m: &mut Model) -> Result<usize, IrError> {
    let mut count = 0;
    for bn in m.graph.topo_order()? {
        if fold_one_bn(m, bn)? {
            count += 1;
        }
    }
    run_verified(&mut m.graph, "fold_batch_norm", |g| {
        remove_dead_code(g).map(|_| ())
    })?;
    Ok(count)
}

fn fold_one_bn(m: &mut Model, bn: NodeId) -> Result<bool, IrError> {
    let g = &m.graph;
    let node = g.node(bn);
    if node.op_type != "BatchNormalization" || !node.domain.is_empty() || node.outputs.len() != 1 {
        return Ok(false);
    }
    let Some(x) = node.inputs.first().copied().flatten() else {
        return Ok(false);
    };
    let Some((prod, _)) = g.producer(x) else {
        return Ok(false);
    };
    if g.consumers(x).len() != 1 || g.outputs.contains(&x) {
        return Ok(false);
    }
    let p = g.node(prod);
    let kind = p.op_type.clone();
    let kind = kind.as_str();
    if !matches!(kind, "Conv" | "ConvTranspose" | "Gemm") || !p.domain.is_empty() {
        return Ok(false);
    }
    let eps = match node.attr("epsilon").map(|a| &a.value) {
        Some(super::AttrValue::Float(f)) => *f,
        None => 1e-5,
        _ => return Ok(false),
    };
    let params: Option<Vec<Vec<f32>>> = (1..5)
        .map(|i| const_of(m, node.inputs.get(i).copied().flatten()).and_then(|t| f32_vec(&t)))
        .collect();
    let Some(params) = params else {
        return Ok(false);
    };
    let (scale, bias, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
    let c = scale.len();
    if [bias.len(), mean.len(), var.len()].iter().any(|&l| l != c) {
        return Ok(false);
    }
    let s: Vec<f32> = (0..c).map(|i| scale[i] / (var[i] + eps).sqrt()).collect();
    let Some(w) = const_of(m, p.inputs.get(1).copied().flatten()) else {
        return Ok(false);
    };
    let Some(mut wa) = w.as_f32().cloned() else {
        return Ok(false);
    };
    let old_b = match p.inputs.get(2).copied().flatten() {
        None => vec![0.0; c],
        Some(v) => match const_of(m, Some(v)).and_then(|t| f32_vec(&t)) {
            Some(b) if b.len() == c => b,
            Some(b) if b.len() == 1 => vec![b[0]; c],
            _ => return Ok(false),
        },
    };
    let int_attr = |name: &str, d: i64| match p.attr(name).map(|a| &a.value) {
        Some(super::AttrValue::Int(i)) => Some(*i),
        None => Some(d),
        _ => None,
    };
    let float_attr = |name: &str| match p.attr(name).map(|a| &a.value) {
        Some(super::AttrValue::Float(f)) => Some(*f),
        None => Some(1.0),
        _ => None,
    };
    let mut b_scale = 1.0f32;
    match kind {
        "Conv" => {
            if wa.shape().first() != Some(&c) {
                return Ok(false);
            }
            for (mi, mut sub) in wa.outer_iter_mut().enumerate() {
                sub.mapv_inplace(|v| v * s[mi]);
            }
        }
        "ConvTranspose" => {
            let Some(groups) = int_attr("group", 1) else {
                return Ok(false);
            };
            let groups = groups.max(1) as usize;
            if wa.ndim() < 2 || wa.shape()[1] * groups != c {
                return Ok(false);
            }
            let mpg = wa.shape()[1];
            let cin = wa.shape()[0];
            for ci in 0..cin {
                let gi = ci / (cin / groups).max(1);
                for j in 0..mpg {
                    let mut sub = wa.index_axis_mut(ndarray::Axis(0), ci);
                    let mut sub2 = sub.index_axis_mut(ndarray::Axis(0), j);
                    sub2.mapv_inplace(|v| v * s[gi * mpg + j]);
                }
            }
        }
        _ => {
            let (Some(tb), Some(alpha), Some(beta)) = (
                int_attr("transB", 0),
                float_attr("alpha"),
                float_attr("beta"),
            ) else {
                return Ok(false);
            };
            if wa.ndim() != 2 {
                return Ok(false);
            }
            let _ = alpha;
            b_scale = beta;
            if tb != 0 {
                if wa.shape()[0] != c {
                    return Ok(false);
                }
                for (ni, mut row) in wa.outer_iter_mut().enumerate() {
                    row.mapv_inplace(|v| v * s[ni]);
                }
            } else {
                if wa.shape()[1] != c {
                    return Ok(false);
                }
                for mut row in wa.outer_iter_mut() {
                    for (ni, v) in row.iter_mut().enumerate() {
                        *v *= s[ni];
                    }
                }
            }
        }
    }
    let new_b: Vec<f32> = (0..c)
        .map(|i| (b_scale * old_b[i] - mean[i]) * s[i] + bias[i])
        .collect();
    let bn_out = node.outputs[0];
    let pname = p.name.clone();
    let p_out = p.outputs.first().copied().flatten();
    let g = &mut m.graph;
    let wname = g.fresh_name(&format!("{pname}_bnfold_W"));
    let bname = g.fresh_name(&format!("{pname}_bnfold_B"));
    let wv = g.add_constant(&wname, Tensor::F32(wa));
    let bv = g.add_constant(
        &bname,
        Tensor::f32(&[c], new_b).map_err(|e| IrError::Other(e.to_string()))?,
    );
    g.set_input(prod, 1, Some(wv));
    g.set_input(prod, 2, Some(bv));
    if kind == "Gemm" {
        let n = g.node_mut(prod);
        n.attrs.retain(|a| a.name != "beta");
    }
    let (Some(bn_out), Some(p_out)) = (bn_out, p_out) else {
        return Ok(false);
    };
    g.remove_node(bn);
    g.replace_uses(bn_out, p_out);
    // The producer's output takes over the BatchNormalization output's name and metadata.
    let old = g.value(bn_out).clone();
    let val = g.value_mut(p_out);
    val.name = old.name;
    val.info_opaque = old.info_opaque;
    val.doc_string = old.doc_string;
    if old.shape.is_some() {
        val.shape = old.shape;
    }
    let renamed = g.value_mut(bn_out);
    renamed.name = String::new();
    Ok(true)
}
