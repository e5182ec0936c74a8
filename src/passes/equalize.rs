//! Cross-layer equalization (Nagel et al. 2019, "Data-free quantization"): for two layers joined
//! by per-channel positive-homogeneous ops (`f(x/s) = f(x)/s` for s > 0: Relu, max/average
//! pooling, Identity, Flatten of a 1×1 map; an `Add` of a constant with one value per channel,
//! e.g. a bias exported as its own node, whose constant is scaled too), output channel c of the
//! first layer is divided by `s_c = sqrt(r1_c / r2_c)` (weights and bias) and input channel c of
//! the second multiplied by it, where `r1_c` / `r2_c` are the max-abs of the channel's weights.
//! This leaves the float function unchanged and equalizes the per-channel weight ranges. Pairs
//! are swept repeatedly (default 20 times, stopping early once no scale moves by more than
//! 1e-7). Grouped and depthwise convs are handled in either position, so chains conv →
//! depthwise → conv are equalized pair by pair.
//!
//! Relu6 / Clip are not positive-homogeneous with a per-tensor bound; a pair joined by them is
//! skipped and reported (scaling the bound per channel is not implemented). Bias absorption is
//! not implemented.

use super::layer::{attr_int, constant_f32, layer_of, set_constant_f32, Layer, LayerKind};
use super::{EqualizeOptions, PassError};
use crate::ir::{Graph, Model, NodeId, ValueId};
use crate::tensor::Tensor;
use ndarray::{ArrayD, Axis, Slice};

const PASS: &str = "equalize-channels";

/// One equalized pair.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EqualizedPair {
    /// First layer (its output channels are scaled down).
    pub first: String,
    /// Second layer (its input channels are scaled up).
    pub second: String,
    /// Channels.
    pub channels: usize,
    /// Per-channel constant `Add`s between the two layers (scaled with the channels).
    pub channel_adds: usize,
}

/// A candidate pair that was not equalized, with the reason.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SkippedPair {
    /// First layer.
    pub first: String,
    /// What follows it.
    pub next: String,
    /// Why it was skipped.
    pub reason: String,
}

/// What [`equalize_channels`] did.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct EqualizeReport {
    /// Equalized pairs.
    pub pairs: Vec<EqualizedPair>,
    /// Skipped candidates.
    pub skipped: Vec<SkippedPair>,
    /// Sweeps performed.
    pub iterations: usize,
    /// Largest `|s − 1|` of the last sweep.
    pub last_max_change: f64,
}

/// A constant added to the first layer's output on the way to the second (e.g. a bias exported
/// as a separate `Add`): one value per channel along `axis`, scaled with the channel.
#[derive(Debug, Clone, Copy)]
struct ChannelConstant {
    value: ValueId,
    axis: usize,
}

/// The axis of a constant `Add` operand of shape `shape` that holds one value per channel of a
/// rank-`rank` tensor whose channels lie on `channel_axis`, broadcasting from the right.
fn per_channel_axis(shape: &[usize], rank: usize, channel_axis: usize, c: usize) -> Option<usize> {
    let k = shape.len();
    if k > rank || channel_axis + k < rank {
        return None;
    }
    let axis = channel_axis + k - rank;
    let ok = shape
        .iter()
        .enumerate()
        .all(|(i, &d)| if i == axis { d == c } else { d == 1 });
    ok.then_some(axis)
}

/// Finds the layer that consumes `first`'s output through positive-homogeneous per-channel ops
/// and per-channel constant `Add`s (whose constants are scaled with the channels).
fn follow(
    g: &Graph,
    first: &Layer,
    channels: usize,
) -> Result<(Layer, Vec<ChannelConstant>), String> {
    let mut v = first.output;
    let mut hops = 0;
    let mut flattened = false;
    let mut adds = Vec::new();
    loop {
        if g.outputs.contains(&v) {
            return Err(format!("tensor '{}' is a graph output", g.value(v).name));
        }
        let cons = g.consumers(v);
        if cons.len() != 1 {
            return Err(format!(
                "tensor '{}' has {} consumers (needs exactly one)",
                g.value(v).name,
                cons.len()
            ));
        }
        let (c, slot) = cons[0];
        let node = g.node(c);
        if slot == 0 {
            if let Some(l) = layer_of(g, c) {
                // A Conv output has its channels on axis 1; Gemm/MatMul contract the last axis,
                // which only holds the channels after a Flatten of a 1×1 map.
                let conv1 = matches!(first.kind, LayerKind::Conv { .. });
                let conv2 = matches!(l.kind, LayerKind::Conv { .. });
                if conv1 && !conv2 && !flattened {
                    return Err(format!(
                        "{} contracts the last axis of a Conv output, not its channels",
                        node.label()
                    ));
                }
                if !conv1 && conv2 {
                    return Err(format!(
                        "{} consumes a Gemm/MatMul output as a Conv input",
                        node.label()
                    ));
                }
                return Ok((l, adds));
            }
        }
        hops += 1;
        if hops > 16 {
            return Err("too many ops between layers".into());
        }
        let ok = match node.op_type.as_str() {
            "Relu" | "Identity" | "GlobalAveragePool" | "GlobalMaxPool" => slot == 0,
            "MaxPool" => slot == 0 && node.outputs.iter().flatten().count() == 1,
            "AveragePool" => slot == 0,
            "Add" => {
                let conv_layout = matches!(first.kind, LayerKind::Conv { .. }) && !flattened;
                // rank of the added tensor: its inferred shape, else a Conv output's rank is
                // its weight's
                let rank = g.value(v).static_shape().map(|s| s.len()).or_else(|| {
                    let w = g.value(first.weight).constant.as_deref()?;
                    conv_layout.then(|| w.shape().len())
                });
                // the other operand: an unshared f32 constant with one value per channel
                let other = 1usize
                    .checked_sub(slot)
                    .and_then(|i| node.inputs.get(i).copied().flatten());
                let found = other.zip(rank).and_then(|(o, r)| {
                    let Some(Tensor::F32(k)) = g.value(o).constant.as_deref() else {
                        return None;
                    };
                    if g.consumers(o).len() != 1 || g.is_input(o) {
                        return None;
                    }
                    let ch = if conv_layout { 1 } else { r.saturating_sub(1) };
                    per_channel_axis(k.shape(), r, ch, channels)
                        .map(|axis| ChannelConstant { value: o, axis })
                });
                match found {
                    Some(a) => {
                        adds.push(a);
                        true
                    }
                    None => {
                        return Err(format!(
                            "{} does not add an unshared constant with one value per channel",
                            node.label()
                        ))
                    }
                }
            }
            "Flatten" => {
                let axis = attr_int(g, c, "axis", 1);
                let shape = g.value(v).static_shape();
                match shape {
                    Some(s) if axis == 1 && s.len() >= 2 && s[2..].iter().all(|&d| d == 1) => {
                        flattened = true;
                        true
                    }
                    _ => {
                        return Err(format!(
                            "{} merges channels with spatial positions (needs a known [N, C, 1…] input and axis 1)",
                            node.label()
                        ))
                    }
                }
            }
            "Clip" | "Relu6" | "HardSigmoid" | "HardSwish" => {
                return Err(format!(
                    "{} has a per-tensor bound, not positive-homogeneous per channel (scaling the bound per channel is not implemented)",
                    node.label()
                ))
            }
            _ => {
                return Err(format!(
                    "{} is not a per-channel positive-homogeneous op",
                    node.label()
                ))
            }
        };
        if !ok {
            return Err(format!(
                "{} uses the tensor in an unsupported slot",
                node.label()
            ));
        }
        v = match node.outputs.first().copied().flatten() {
            Some(o) => o,
            None => return Err(format!("{} has no output", node.label())),
        };
    }
}

/// Number of input channels of a layer's weight.
fn in_channels(l: &Layer, w: &ArrayD<f32>) -> usize {
    match l.kind {
        LayerKind::Conv { groups } => w.shape()[1] * groups,
        _ => w.shape()[l.in_axis()],
    }
}

/// Max-abs per output channel of layer `l`'s weight.
fn out_ranges(l: &Layer, w: &ArrayD<f32>) -> Vec<f64> {
    w.axis_iter(Axis(l.out_axis()))
        .map(|c| c.iter().fold(0f64, |a, v| a.max(f64::from(v.abs()))))
        .collect()
}

/// Applies `f(view, c)` to the weights of input channel c of layer `l`.
pub(crate) fn in_channel_views<'a>(
    l: &Layer,
    w: &'a mut ArrayD<f32>,
    c: usize,
) -> ndarray::ArrayViewMutD<'a, f32> {
    match l.kind {
        LayerKind::Conv { groups } => {
            let cg = w.shape()[1];
            let mg = w.shape()[0] / groups;
            let gi = c / cg;
            let mut v = w.view_mut();
            v.slice_axis_inplace(Axis(0), Slice::from(gi * mg..(gi + 1) * mg));
            v.index_axis_move(Axis(1), c % cg)
        }
        _ => {
            let ax = l.in_axis();
            w.index_axis_mut(Axis(ax), c)
        }
    }
}

pub(crate) fn in_ranges(l: &Layer, w: &mut ArrayD<f32>, n: usize) -> Vec<f64> {
    (0..n)
        .map(|c| {
            in_channel_views(l, w, c)
                .iter()
                .fold(0f64, |a, v| a.max(f64::from(v.abs())))
        })
        .collect()
}

/// Pure core: equalizes one pair in place given the first layer's weight (and bias) and the
/// second layer's weight; returns the scales `s_c` applied (first ÷ s, second × s).
pub fn equalize_pair(
    first: &Layer,
    w1: &mut ArrayD<f32>,
    b1: Option<&mut ArrayD<f32>>,
    second: &Layer,
    w2: &mut ArrayD<f32>,
) -> Vec<f64> {
    let r1 = out_ranges(first, w1);
    let r2 = in_ranges(second, w2, r1.len());
    let s: Vec<f64> = r1
        .iter()
        .zip(&r2)
        .map(|(&a, &b)| {
            if a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() {
                (a / b).sqrt()
            } else {
                1.0
            }
        })
        .collect();
    let ax = first.out_axis();
    for (c, &sc) in s.iter().enumerate() {
        let inv = (1.0 / sc) as f32;
        w1.index_axis_mut(Axis(ax), c).mapv_inplace(|x| x * inv);
        in_channel_views(second, w2, c).mapv_inplace(|x| (f64::from(x) * sc) as f32);
    }
    if let Some(b) = b1 {
        for (c, &sc) in s.iter().enumerate() {
            if let Some(x) = b.iter_mut().nth(c) {
                *x = (f64::from(*x) / sc) as f32;
            }
        }
    }
    s
}

/// Finds equalizable pairs in the model and rewrites their constant weights and biases.
pub fn equalize_channels(
    model: &mut Model,
    opts: &EqualizeOptions,
) -> Result<EqualizeReport, PassError> {
    if opts.iterations == 0 {
        return Err(PassError::InvalidOption {
            pass: PASS.into(),
            option: "iterations".into(),
            reason: "must be at least 1".into(),
        });
    }
    if opts.bias_absorption {
        return Err(PassError::NotImplemented(format!("{PASS} bias-absorption")));
    }
    let g = &mut model.graph;
    let order = g.topo_order().map_err(|e| PassError::Node {
        pass: PASS.into(),
        node: "graph".into(),
        reason: e.to_string(),
    })?;
    let mut report = EqualizeReport::default();
    let mut pairs: Vec<(Layer, Layer, Vec<ChannelConstant>)> = Vec::new();
    let shared = |g: &Graph, l: &Layer| -> Option<String> {
        let wc = g.consumers(l.weight).len();
        let bc = l.bias.map(|b| g.consumers(b).len()).unwrap_or(1);
        if wc != 1 || bc != 1 || g.is_input(l.weight) {
            Some(format!(
                "{}'s weight or bias is shared or a graph input",
                g.node(l.node).label()
            ))
        } else {
            None
        }
    };
    for n in order {
        let Some(first) = layer_of(g, n) else {
            continue;
        };
        let label = g.node(n).label();
        let skip = |next: String, reason: String| SkippedPair {
            first: label.clone(),
            next,
            reason,
        };
        let Some(Tensor::F32(w1)) = g.value(first.weight).constant.as_deref() else {
            continue;
        };
        let c1 = first.out_channels(w1);
        let (second, adds) = match follow(g, &first, c1) {
            Ok(s) => s,
            Err(reason) => {
                report.skipped.push(skip("-".into(), reason));
                continue;
            }
        };
        let slabel = g.node(second.node).label();
        if let Some(r) = shared(g, &first).or_else(|| shared(g, &second)) {
            report.skipped.push(skip(slabel, r));
            continue;
        }
        let Some(w2) = constant_f32(g, second.weight) else {
            continue;
        };
        if in_channels(&second, &w2) != c1 {
            report.skipped.push(skip(
                slabel,
                format!(
                    "{c1} output channels vs {} input channels",
                    in_channels(&second, &w2)
                ),
            ));
            continue;
        }
        if let Some(b) = first.bias {
            let n = g.value(b).constant.as_deref().map(|t| t.len()).unwrap_or(0);
            if n != c1 {
                report.skipped.push(skip(
                    slabel,
                    format!("bias has {n} elements, not one per output channel ({c1})"),
                ));
                continue;
            }
        }
        report.pairs.push(EqualizedPair {
            first: label.clone(),
            second: slabel,
            channels: c1,
            channel_adds: adds.len(),
        });
        pairs.push((first, second, adds));
    }
    for it in 0..opts.iterations {
        let mut maxc: f64 = 0.0;
        for (first, second, adds) in &pairs {
            let label = g.node(first.node).label();
            let err = |what: &str| PassError::Node {
                pass: PASS.into(),
                node: label.clone(),
                reason: format!("{what} is not a constant f32 tensor"),
            };
            let mut w1 = constant_f32(g, first.weight).ok_or_else(|| err("weight"))?;
            let mut w2 = constant_f32(g, second.weight).ok_or_else(|| err("next weight"))?;
            let mut b1 = match first.bias {
                Some(b) => Some(constant_f32(g, b).ok_or_else(|| err("bias"))?),
                None => None,
            };
            let s = equalize_pair(first, &mut w1, b1.as_mut(), second, &mut w2);
            for x in &s {
                maxc = maxc.max((x - 1.0).abs());
            }
            set_constant_f32(g, first.weight, w1);
            set_constant_f32(g, second.weight, w2);
            if let (Some(b), Some(bv)) = (first.bias, b1) {
                set_constant_f32(g, b, bv);
            }
            for a in adds {
                let mut k = constant_f32(g, a.value).ok_or_else(|| err("added constant"))?;
                for (c, &sc) in s.iter().enumerate() {
                    k.index_axis_mut(Axis(a.axis), c)
                        .mapv_inplace(|x| (f64::from(x) / sc) as f32);
                }
                set_constant_f32(g, a.value, k);
            }
        }
        report.iterations = it + 1;
        report.last_max_change = maxc;
        if maxc < 1e-7 {
            break;
        }
    }
    Ok(report)
}

/// Node ids of the equalizable layers (for callers that want to show the plan first).
pub fn layer_nodes(g: &Graph) -> Vec<NodeId> {
    g.node_ids()
        .into_iter()
        .filter(|n| layer_of(g, *n).is_some())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ir::{Attr, AttrValue, Node, Value, ValueId};
    use crate::kernels::testutil::rand_array;
    use crate::tensor::Tensor;

    /// Builders for small test graphs.
    pub struct B {
        pub m: Model,
        n: usize,
    }

    impl B {
        pub fn new() -> B {
            let mut m = Model::default();
            m.opsets.insert(String::new(), 17);
            B { m, n: 0 }
        }
        pub fn input(&mut self, name: &str, shape: &[usize]) -> ValueId {
            let mut v = Value::named(name);
            v.dtype = Some(crate::tensor::DType::F32);
            v.shape = Some(shape.iter().map(|&d| crate::ir::Dim::Known(d)).collect());
            let id = self.m.graph.add_value(v);
            self.m.graph.inputs.push(id);
            id
        }
        pub fn constant(&mut self, a: ArrayD<f32>) -> ValueId {
            self.n += 1;
            let name = format!("c{}", self.n);
            self.m.graph.add_constant(&name, Tensor::F32(a))
        }
        pub fn node(
            &mut self,
            op: &str,
            inputs: Vec<ValueId>,
            attrs: Vec<(&str, AttrValue)>,
            out_shape: Option<&[usize]>,
        ) -> ValueId {
            self.n += 1;
            let mut v = Value::named(&format!("t{}", self.n));
            if let Some(s) = out_shape {
                v.shape = Some(s.iter().map(|&d| crate::ir::Dim::Known(d)).collect());
            }
            let out = self.m.graph.add_value(v);
            let mut node = Node::new(op, inputs.into_iter().map(Some).collect(), vec![Some(out)]);
            node.name = format!("{op}{}", self.n);
            node.attrs = attrs
                .into_iter()
                .map(|(n, v)| Attr {
                    name: n.into(),
                    value: v,
                })
                .collect();
            self.m.graph.add_node(node).expect("add node");
            out
        }
    }

    /// Evaluates the small test graphs (Conv, Relu, Clip, GlobalAveragePool, Flatten, Gemm,
    /// MatMul, Mul, LayerNormalization) with the crate kernels.
    pub fn eval(m: &Model, x: &ArrayD<f32>) -> ArrayD<f32> {
        let g = &m.graph;
        let mut vals: std::collections::HashMap<ValueId, ArrayD<f32>> = Default::default();
        vals.insert(g.inputs[0], x.clone());
        let get = |vals: &std::collections::HashMap<ValueId, ArrayD<f32>>, v: ValueId| {
            vals.get(&v)
                .cloned()
                .or_else(|| constant_f32(g, v))
                .expect("value")
        };
        for n in g.topo_order().expect("topo") {
            let node = g.node(n);
            let ins: Vec<ArrayD<f32>> = node
                .inputs
                .iter()
                .flatten()
                .map(|v| get(&vals, *v))
                .collect();
            let y = match node.op_type.as_str() {
                "Conv" => {
                    let k = &ins[1].shape()[2..];
                    let p = super::super::layer::conv_params(g, n, &ins[0].shape()[2..], k)
                        .expect("params");
                    crate::kernels::conv::conv(
                        &ins[0].view(),
                        &ins[1].view(),
                        ins.get(2).map(|b| b.view()).as_ref(),
                        &p,
                    )
                    .expect("conv")
                }
                "Relu" => ins[0].mapv(|v| v.max(0.0)),
                "Clip" => {
                    let (lo, hi) = (ins[1].iter().next().copied(), ins[2].iter().next().copied());
                    ins[0].mapv(|v| v.clamp(lo.expect("lo"), hi.expect("hi")))
                }
                "GlobalAveragePool" => {
                    crate::kernels::pool::global_average_pool(&ins[0].view()).expect("gap")
                }
                "Flatten" => {
                    let s = ins[0].shape();
                    let rest: usize = s[1..].iter().product();
                    ins[0]
                        .clone()
                        .into_shape_with_order(ndarray::IxDyn(&[s[0], rest]))
                        .expect("flatten")
                }
                "Gemm" => crate::kernels::matmul::gemm(
                    &ins[0].view(),
                    &ins[1].view(),
                    ins.get(2).map(|b| b.view()).as_ref(),
                    &crate::kernels::matmul::GemmParams {
                        trans_b: attr_int(g, n, "transB", 0) != 0,
                        ..Default::default()
                    },
                )
                .expect("gemm"),
                "MatMul" => {
                    crate::kernels::matmul::matmul(&ins[0].view(), &ins[1].view()).expect("mm")
                }
                "Mul" => &ins[0] * &ins[1],
                "Add" => &ins[0] + &ins[1],
                "LayerNormalization" => crate::kernels::norm::layer_normalization(
                    &ins[0].view(),
                    Some(&ins[1].view()),
                    ins.get(2).map(|b| b.view()).as_ref(),
                    -1,
                    1e-5,
                )
                .expect("ln"),
                other => panic!("test evaluator lacks {other}"),
            };
            vals.insert(node.outputs[0].expect("out"), y);
        }
        vals.remove(&g.outputs[0]).expect("output")
    }

    fn conv_attrs(pad: i64, group: i64) -> Vec<(&'static str, AttrValue)> {
        vec![
            ("pads", AttrValue::Ints(vec![pad; 4])),
            ("group", AttrValue::Int(group)),
        ]
    }

    /// Weights with some output channels 50× larger, so equalization has work to do.
    fn skewed(shape: &[usize], seed: u64) -> ArrayD<f32> {
        let mut w = rand_array(shape, seed);
        for (c, mut row) in w.axis_iter_mut(Axis(0)).enumerate() {
            let f = if c % 3 == 0 { 50.0 } else { 1.0 };
            row.mapv_inplace(|v| v * f);
        }
        w
    }

    fn ratio(w: &ArrayD<f32>) -> f64 {
        let r: Vec<f64> = w
            .axis_iter(Axis(0))
            .map(|c| c.iter().fold(0f64, |a, v| a.max(f64::from(v.abs()))))
            .collect();
        r.iter().cloned().fold(0.0, f64::max) / r.iter().cloned().fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn equalization_preserves_function_and_balances_ranges() {
        let mut b = B::new();
        let x = b.input("x", &[2, 3, 8, 8]);
        let w1 = b.constant(skewed(&[8, 3, 3, 3], 1));
        let b1 = b.constant(rand_array(&[8], 2));
        let y1 = b.node("Conv", vec![x, w1, b1], conv_attrs(1, 1), None);
        let r1 = b.node("Relu", vec![y1], vec![], None);
        let wd = b.constant(skewed(&[8, 1, 3, 3], 3));
        let bd = b.constant(rand_array(&[8], 4));
        let yd = b.node("Conv", vec![r1, wd, bd], conv_attrs(1, 8), None);
        let rd = b.node("Relu", vec![yd], vec![], None);
        let w2 = b.constant(skewed(&[6, 8, 1, 1], 5));
        let y2 = b.node("Conv", vec![rd, w2], conv_attrs(0, 1), Some(&[2, 6, 8, 8]));
        let gp = b.node("GlobalAveragePool", vec![y2], vec![], Some(&[2, 6, 1, 1]));
        let fl = b.node("Flatten", vec![gp], vec![], Some(&[2, 6]));
        let wg = b.constant(rand_array(&[4, 6], 6));
        let bg = b.constant(rand_array(&[4], 7));
        let y3 = b.node(
            "Gemm",
            vec![fl, wg, bg],
            vec![("transB", AttrValue::Int(1))],
            None,
        );
        let r3 = b.node("Relu", vec![y3], vec![], None);
        let w4 = b.constant(rand_array(&[4, 5], 8));
        let w4c = b.constant(ndarray::arr0(0.0f32).into_dyn());
        let w4d = b.constant(ndarray::arr0(6.0f32).into_dyn());
        let c4 = b.node("Clip", vec![r3, w4c, w4d], vec![], None);
        let y4 = b.node("MatMul", vec![c4, w4], vec![], None);
        let w5 = b.constant(rand_array(&[5, 3], 9));
        let y5 = b.node("MatMul", vec![y4, w5], vec![], None);
        b.m.graph.outputs.push(y5);
        let mut m = b.m;
        let xin = rand_array(&[2, 3, 8, 8], 11) * 2.0;
        let before = eval(&m, &xin);
        let ratio_before = ratio(&constant_f32(&m.graph, w1).expect("w1"));
        let rep = equalize_channels(&mut m, &EqualizeOptions::default()).expect("cle");
        let after = eval(&m, &xin);
        let pairs: Vec<(String, String)> = rep
            .pairs
            .iter()
            .map(|p| (p.first.clone(), p.second.clone()))
            .collect();
        // conv→dw, dw→conv, conv→(gap, flatten)→gemm, matmul→matmul
        assert_eq!(pairs.len(), 4, "{pairs:?} {:?}", rep.skipped);
        assert!(rep
            .skipped
            .iter()
            .any(|s| s.reason.contains("Clip") && s.first.starts_with("Gemm")));
        let scale = before.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (a, e) in after.iter().zip(before.iter()) {
            assert!((a - e).abs() <= 1e-5 * scale, "{a} vs {e}");
        }
        let ratio_after = ratio(&constant_f32(&m.graph, w1).expect("w1"));
        assert!(
            ratio_after < ratio_before / 2.0,
            "{ratio_before} -> {ratio_after}"
        );
        assert!(rep.iterations >= 1);
    }

    /// A bias exported as its own `Add` (W1's CNTK graph: Conv → Add[C,1,1] → Relu → MaxPool →
    /// Conv) joins a pair; its constant is scaled with the channels. An `Add` of a per-tensor
    /// constant or of a shared constant does not.
    #[test]
    fn channel_constant_add_joins_a_pair() {
        for (bias_shape, shared, expect_pair) in [
            (vec![8usize, 1, 1], false, true),
            (vec![1, 8, 1, 1], false, true),
            (vec![1], false, false),
            (vec![8, 1, 1], true, false),
        ] {
            let mut b = B::new();
            let x = b.input("x", &[2, 3, 8, 8]);
            let w1 = b.constant(skewed(&[8, 3, 3, 3], 1));
            let y1 = b.node("Conv", vec![x, w1], conv_attrs(1, 1), Some(&[2, 8, 8, 8]));
            let k = b.constant(rand_array(&bias_shape, 2));
            let a1 = b.node("Add", vec![y1, k], vec![], Some(&[2, 8, 8, 8]));
            let r1 = b.node("Relu", vec![a1], vec![], None);
            let w2 = b.constant(skewed(&[8, 8, 3, 3], 5));
            let y2 = b.node("Conv", vec![r1, w2], conv_attrs(1, 1), None);
            let out = if shared {
                // the bias constant also feeds a second Add
                b.node("Add", vec![y2, k], vec![], None)
            } else {
                y2
            };
            b.m.graph.outputs.push(out);
            let mut m = b.m;
            let xin = rand_array(&[2, 3, 8, 8], 11) * 2.0;
            let before = eval(&m, &xin);
            let k0 = constant_f32(&m.graph, k).expect("k");
            let rep = equalize_channels(&mut m, &EqualizeOptions::default()).expect("cle");
            let after = eval(&m, &xin);
            assert_eq!(
                rep.pairs.len(),
                usize::from(expect_pair),
                "{bias_shape:?} {rep:?}"
            );
            let scale = before.iter().fold(0f32, |a, v| a.max(v.abs()));
            for (a, e) in after.iter().zip(before.iter()) {
                assert!((a - e).abs() <= 1e-5 * scale, "{bias_shape:?}: {a} vs {e}");
            }
            let k1 = constant_f32(&m.graph, k).expect("k");
            if expect_pair {
                assert_eq!(rep.pairs[0].channel_adds, 1);
                assert_ne!(k0, k1, "the added constant is scaled with its channels");
            } else {
                assert_eq!(k0, k1);
                assert!(
                    rep.skipped.iter().any(|s| s.reason.contains("Add")),
                    "{rep:?}"
                );
            }
        }
    }
}
