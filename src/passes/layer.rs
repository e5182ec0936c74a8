//! Shared access to the compute layers the passes rewrite (Conv, Gemm, MatMul with a constant
//! weight): reading and writing their constant weights and biases, the weight as an
//! `[out, in]` matrix per group, Conv attributes, and im2col rows of a Conv input (the layer
//! input matrix `X` with `Y = X · Wᵀ` that GPTQ and AdaRound need).

use super::PassError;
use crate::ir::{AttrValue, Graph, NodeId, ValueId};
use crate::kernels::conv::{conv_output_len, Conv2dParams};
use crate::tensor::Tensor;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn};
use std::sync::Arc;

/// How a layer stores its weight.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    /// Conv with `W [M, C/groups, k…]`.
    Conv {
        /// Number of groups.
        groups: usize,
    },
    /// Gemm with `B` as `[N, K]` when `trans_b`, `[K, N]` otherwise; `alpha`/`beta` of the node.
    Gemm {
        /// transB attribute.
        trans_b: bool,
        /// alpha attribute.
        alpha: f32,
        /// beta attribute.
        beta: f32,
    },
    /// MatMul with a constant 2-D second operand `[K, N]`.
    MatMul,
}

/// A compute layer with a constant f32 weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The node.
    pub node: NodeId,
    /// Its kind.
    pub kind: LayerKind,
    /// Activation input.
    pub input: ValueId,
    /// Constant weight.
    pub weight: ValueId,
    /// Constant bias, when present (Conv `B`, Gemm `C`).
    pub bias: Option<ValueId>,
    /// Output.
    pub output: ValueId,
}

/// Integer attribute of a node, or `default`.
pub fn attr_int(g: &Graph, n: NodeId, name: &str, default: i64) -> i64 {
    match g.node(n).attr(name).map(|a| &a.value) {
        Some(AttrValue::Int(v)) => *v,
        _ => default,
    }
}

/// Float attribute of a node, or `default`.
pub fn attr_float(g: &Graph, n: NodeId, name: &str, default: f32) -> f32 {
    match g.node(n).attr(name).map(|a| &a.value) {
        Some(AttrValue::Float(v)) => *v,
        _ => default,
    }
}

/// Integer-list attribute of a node.
pub fn attr_ints(g: &Graph, n: NodeId, name: &str) -> Option<Vec<i64>> {
    match g.node(n).attr(name).map(|a| &a.value) {
        Some(AttrValue::Ints(v)) => Some(v.clone()),
        _ => None,
    }
}

/// The f32 data of a constant value, if it has any.
pub fn constant_f32(g: &Graph, v: ValueId) -> Option<ArrayD<f32>> {
    match g.value(v).constant.as_deref() {
        Some(Tensor::F32(a)) => Some(a.clone()),
        _ => None,
    }
}

/// Replaces the data of a constant value (dtype and shape are kept in the value's metadata).
pub fn set_constant_f32(g: &mut Graph, v: ValueId, a: ArrayD<f32>) {
    g.value_mut(v).constant = Some(Arc::new(Tensor::F32(a)));
}

/// Recognises `n` as a Conv/Gemm/MatMul whose weight is a constant f32 tensor.
pub fn layer_of(g: &Graph, n: NodeId) -> Option<Layer> {
    let node = g.node(n);
    if !node.domain.is_empty() && node.domain != "ai.onnx" {
        return None;
    }
    let input = node.inputs.first().copied().flatten()?;
    let weight = node.inputs.get(1).copied().flatten()?;
    let output = node.outputs.first().copied().flatten()?;
    let w = g.value(weight).constant.as_deref()?;
    if !matches!(w, Tensor::F32(_)) {
        return None;
    }
    if g.value(input).constant.is_some() {
        return None;
    }
    let bias = node
        .inputs
        .get(2)
        .copied()
        .flatten()
        .filter(|b| matches!(g.value(*b).constant.as_deref(), Some(Tensor::F32(_))));
    let kind = match node.op_type.as_str() {
        "Conv" if w.shape().len() >= 3 => LayerKind::Conv {
            groups: attr_int(g, n, "group", 1).max(1) as usize,
        },
        "Gemm" if w.shape().len() == 2 => {
            if attr_int(g, n, "transA", 0) != 0 {
                return None;
            }
            LayerKind::Gemm {
                trans_b: attr_int(g, n, "transB", 0) != 0,
                alpha: attr_float(g, n, "alpha", 1.0),
                beta: attr_float(g, n, "beta", 1.0),
            }
        }
        "MatMul" if w.shape().len() == 2 => LayerKind::MatMul,
        _ => return None,
    };
    if node.inputs.get(2).copied().flatten().is_some() && bias.is_none() {
        return None;
    }
    Some(Layer {
        node: n,
        kind,
        input,
        weight,
        bias,
        output,
    })
}

impl Layer {
    /// Number of output channels of a weight tensor of this kind.
    pub fn out_channels(&self, w: &ArrayD<f32>) -> usize {
        match self.kind {
            LayerKind::Conv { .. } => w.shape()[0],
            LayerKind::Gemm { trans_b: true, .. } => w.shape()[0],
            LayerKind::Gemm { trans_b: false, .. } | LayerKind::MatMul => w.shape()[1],
        }
    }

    /// Axis of the output channels in the stored weight.
    pub fn out_axis(&self) -> usize {
        match self.kind {
            LayerKind::Conv { .. } | LayerKind::Gemm { trans_b: true, .. } => 0,
            LayerKind::Gemm { trans_b: false, .. } | LayerKind::MatMul => 1,
        }
    }

    /// Axis of the input channels in the stored weight.
    pub fn in_axis(&self) -> usize {
        1 - self.out_axis()
    }

    /// Number of groups (1 except for grouped Conv).
    pub fn groups(&self) -> usize {
        match self.kind {
            LayerKind::Conv { groups } => groups,
            _ => 1,
        }
    }
}

/// The weight as one `[out, in]` matrix per group (Conv: `[M/g, C/g·∏k]` rows of the flattened
/// kernel; Gemm/MatMul: `[N, K]`), so that `Y_g = X_g · W_gᵀ`.
pub fn weight_matrices(layer: &Layer, w: &ArrayD<f32>) -> Result<Vec<Array2<f32>>, PassError> {
    let bad = |d: String| PassError::Shape {
        pass: "layer".into(),
        what: "weight".into(),
        detail: d,
    };
    match layer.kind {
        LayerKind::Conv { groups } => {
            let m = w.shape()[0];
            if groups == 0 || m % groups != 0 {
                return Err(bad(format!(
                    "{m} output channels not divisible by {groups} groups"
                )));
            }
            let cols: usize = w.shape()[1..].iter().product();
            let flat = w
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order((m, cols))
                .map_err(|e| bad(e.to_string()))?;
            let per = m / groups;
            Ok((0..groups)
                .map(|g| {
                    flat.slice(ndarray::s![g * per..(g + 1) * per, ..])
                        .to_owned()
                })
                .collect())
        }
        _ => {
            let w2 = w
                .view()
                .into_dimensionality::<ndarray::Ix2>()
                .map_err(|e| bad(e.to_string()))?;
            Ok(vec![if layer.out_axis() == 0 {
                w2.to_owned()
            } else {
                w2.t().to_owned()
            }])
        }
    }
}

/// Inverse of [`weight_matrices`]: rebuilds the stored weight of `shape` from per-group
/// `[out, in]` matrices.
pub fn weight_from_matrices(
    layer: &Layer,
    shape: &[usize],
    mats: &[Array2<f32>],
) -> Result<ArrayD<f32>, PassError> {
    let bad = |d: String| PassError::Shape {
        pass: "layer".into(),
        what: "weight".into(),
        detail: d,
    };
    match layer.kind {
        LayerKind::Conv { .. } => {
            let views: Vec<ArrayView2<f32>> = mats.iter().map(|m| m.view()).collect();
            let stacked = ndarray::concatenate(Axis(0), &views).map_err(|e| bad(e.to_string()))?;
            let v: Vec<f32> = stacked.iter().copied().collect();
            ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| bad(e.to_string()))
        }
        _ => {
            let m = mats.first().ok_or_else(|| bad("no matrix".into()))?;
            let m = if layer.out_axis() == 0 {
                m.clone()
            } else {
                m.t().to_owned()
            };
            let v: Vec<f32> = m.as_standard_layout().iter().copied().collect();
            ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| bad(e.to_string()))
        }
    }
}

/// Conv attributes resolved against the input's spatial size (auto_pad SAME_* and VALID
/// included) for a kernel of spatial size `kernel`.
pub fn conv_params(
    g: &Graph,
    n: NodeId,
    in_spatial: &[usize],
    kernel: &[usize],
) -> Result<Conv2dParams, PassError> {
    let r = kernel.len();
    let err = |reason: String| PassError::Node {
        pass: "layer".into(),
        node: g.node(n).label(),
        reason,
    };
    let ints = |name: &str, def: usize, len: usize| -> Result<Vec<usize>, PassError> {
        match attr_ints(g, n, name) {
            Some(v) if v.len() == len && v.iter().all(|&x| x >= 0) => {
                Ok(v.iter().map(|&x| x as usize).collect())
            }
            Some(v) => Err(err(format!(
                "attribute {name} {v:?} is invalid for {r} spatial dims"
            ))),
            None => Ok(vec![def; len]),
        }
    };
    let mut p = Conv2dParams::new(r);
    p.strides = ints("strides", 1, r)?;
    p.dilations = ints("dilations", 1, r)?;
    p.groups = attr_int(g, n, "group", 1).max(1) as usize;
    let pads = ints("pads", 0, 2 * r)?;
    p.pads_begin = pads[..r].to_vec();
    p.pads_end = pads[r..].to_vec();
    let auto = match g.node(n).attr("auto_pad").map(|a| &a.value) {
        Some(AttrValue::String(s)) => String::from_utf8_lossy(s).to_string(),
        _ => "NOTSET".into(),
    };
    if in_spatial.len() != r {
        return Err(err(format!(
            "input has {} spatial dims, kernel {r}",
            in_spatial.len()
        )));
    }
    match auto.as_str() {
        "NOTSET" => {}
        "VALID" => {
            p.pads_begin = vec![0; r];
            p.pads_end = vec![0; r];
        }
        "SAME_UPPER" | "SAME_LOWER" => {
            for i in 0..r {
                let out = in_spatial[i].div_ceil(p.strides[i]);
                let eff = (kernel[i] - 1) * p.dilations[i] + 1;
                let total = ((out - 1) * p.strides[i] + eff).saturating_sub(in_spatial[i]);
                let (a, b) = (total / 2, total - total / 2);
                if auto == "SAME_UPPER" {
                    p.pads_begin[i] = a;
                    p.pads_end[i] = b;
                } else {
                    p.pads_begin[i] = b;
                    p.pads_end[i] = a;
                }
            }
        }
        other => return Err(err(format!("unsupported auto_pad {other}"))),
    }
    Ok(p)
}

/// im2col rows of a Conv input: for each group g a matrix `[N·∏out, C/g·∏k]` whose column order
/// matches the flattened kernel `W[m, c, k…]`, so `Y_g = rows_g · W_gᵀ` (without bias).
/// Any spatial rank; zero padding.
pub fn conv_im2col_rows(
    x: &ArrayViewD<'_, f32>,
    kernel: &[usize],
    p: &Conv2dParams,
) -> Result<Vec<Array2<f32>>, PassError> {
    let bad = |d: String| PassError::Shape {
        pass: "layer".into(),
        what: "conv input".into(),
        detail: d,
    };
    let r = kernel.len();
    if x.ndim() != r + 2 {
        return Err(bad(format!("input {:?} vs kernel {kernel:?}", x.shape())));
    }
    let (nb, c) = (x.shape()[0], x.shape()[1]);
    if p.groups == 0 || c % p.groups != 0 {
        return Err(bad(format!(
            "{c} channels not divisible by {} groups",
            p.groups
        )));
    }
    let cg = c / p.groups;
    let sp = &x.shape()[2..];
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let o = conv_output_len(
            sp[i],
            kernel[i],
            p.strides[i],
            p.dilations[i],
            p.pads_begin[i],
            p.pads_end[i],
        )
        .ok_or_else(|| {
            bad(format!(
                "kernel {kernel:?} does not fit input {:?}",
                x.shape()
            ))
        })?;
        out.push(o);
    }
    let nout: usize = out.iter().product();
    let nk: usize = kernel.iter().product();
    let xs = x.as_standard_layout();
    let xd = xs
        .as_slice()
        .ok_or_else(|| bad("input not contiguous".into()))?;
    let in_sz: usize = sp.iter().product();
    // strides of the spatial dims in the input
    let mut sstride = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        sstride[i] = sstride[i + 1] * sp[i + 1];
    }
    let unravel = |mut idx: usize, dims: &[usize]| -> Vec<usize> {
        let mut v = vec![0; dims.len()];
        for i in (0..dims.len()).rev() {
            v[i] = idx % dims[i];
            idx /= dims[i];
        }
        v
    };
    // Input offset (within one channel plane) of every (output position, kernel position),
    // `usize::MAX` where the tap falls into the zero padding: computed once, shared by all
    // groups, samples and channels.
    let kidx: Vec<Vec<usize>> = (0..nk).map(|k| unravel(k, kernel)).collect();
    let mut taps = vec![usize::MAX; nout * nk];
    for o in 0..nout {
        let oi = unravel(o, &out);
        for (k, ki) in kidx.iter().enumerate() {
            let mut off = 0usize;
            let mut inside = true;
            for d in 0..r {
                let pos = (oi[d] * p.strides[d] + ki[d] * p.dilations[d]) as isize
                    - p.pads_begin[d] as isize;
                if pos < 0 || pos as usize >= sp[d] {
                    inside = false;
                    break;
                }
                off += pos as usize * sstride[d];
            }
            if inside {
                taps[o * nk + k] = off;
            }
        }
    }
    let cols = cg * nk;
    let mut groups = Vec::with_capacity(p.groups);
    for gi in 0..p.groups {
        let mut data = vec![0f32; nb * nout * cols];
        for b in 0..nb {
            for cc in 0..cg {
                let ch = gi * cg + cc;
                let plane = &xd[(b * c + ch) * in_sz..(b * c + ch + 1) * in_sz];
                for o in 0..nout {
                    let row = &mut data[(b * nout + o) * cols + cc * nk..][..nk];
                    for (dst, &off) in row.iter_mut().zip(&taps[o * nk..(o + 1) * nk]) {
                        if off != usize::MAX {
                            *dst = plane[off];
                        }
                    }
                }
            }
        }
        groups
            .push(Array2::from_shape_vec((nb * nout, cols), data).map_err(|e| bad(e.to_string()))?);
    }
    Ok(groups)
}

/// Rows of a Gemm/MatMul input: the input reshaped to `[∏leading, K]` (`K` = last dim).
pub fn linear_rows(x: &ArrayViewD<'_, f32>) -> Result<Array2<f32>, PassError> {
    let k = *x.shape().last().ok_or_else(|| PassError::Shape {
        pass: "layer".into(),
        what: "linear input".into(),
        detail: "scalar input".into(),
    })?;
    let n = x.len() / k.max(1);
    let v: Vec<f32> = x.as_standard_layout().iter().copied().collect();
    Array2::from_shape_vec((n, k), v).map_err(|e| PassError::Shape {
        pass: "layer".into(),
        what: "linear input".into(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::conv;
    use crate::kernels::testutil::rand_array;

    #[test]
    fn im2col_rows_reproduce_conv() {
        // grouped, strided, padded, dilated 2-D conv
        let x = rand_array(&[2, 4, 7, 6], 1);
        let w = rand_array(&[6, 2, 3, 2], 2);
        let mut p = Conv2dParams::new(2);
        p.groups = 2;
        p.strides = vec![2, 1];
        p.dilations = vec![1, 2];
        p.pads_begin = vec![1, 0];
        p.pads_end = vec![1, 1];
        let y = conv(&x.view(), &w.view(), None, &p).expect("conv");
        let rows = conv_im2col_rows(&x.view(), &[3, 2], &p).expect("rows");
        let layer = Layer {
            node: crate::ir::Graph::new()
                .add_node(crate::ir::Node::new("Conv", vec![], vec![]))
                .expect("node"),
            kind: LayerKind::Conv { groups: 2 },
            input: crate::ir::Graph::new().add_value(crate::ir::Value::named("x")),
            weight: crate::ir::Graph::new().add_value(crate::ir::Value::named("w")),
            bias: None,
            output: crate::ir::Graph::new().add_value(crate::ir::Value::named("y")),
        };
        let mats = weight_matrices(&layer, &w).expect("mats");
        let (oh, ow) = (y.shape()[2], y.shape()[3]);
        for (gi, (r, wm)) in rows.iter().zip(&mats).enumerate() {
            let yg = r.dot(&wm.t());
            for b in 0..2 {
                for m in 0..3 {
                    for i in 0..oh {
                        for j in 0..ow {
                            let a = yg[[b * oh * ow + i * ow + j, m]];
                            let e = y[[b, gi * 3 + m, i, j]];
                            assert!((a - e).abs() < 1e-5, "{a} vs {e}");
                        }
                    }
                }
            }
        }
        let back = weight_from_matrices(&layer, w.shape(), &mats).expect("back");
        assert_eq!(back, w);
    }
}
