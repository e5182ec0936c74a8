//! SmoothQuant (Xiao et al. 2023): migrates activation outliers into the weights. For the input
//! tensor X of one or more compute layers, per input channel j
//! `s_j = max|X_j|^α / max|W_j|^(1−α)` (α default 0.5; `max|W_j|` over all consumers' weights),
//! X is divided by s and each consumer's weight input channel j multiplied by s_j, which leaves
//! the float function unchanged.
//!
//! The division is folded into the producer of X when that is a LayerNormalization over the
//! channel axis (scale and bias ÷ s) or a Conv/Gemm/MatMul whose only consumers are the smoothed
//! layers (output channel j ÷ s_j, bias too); otherwise an explicit `Mul` by `1/s` is inserted
//! in front of the consumers. The per-channel activation abs-max comes from calibration.

use super::equalize::in_channel_views;
use super::layer::{attr_int, constant_f32, layer_of, set_constant_f32, Layer, LayerKind};
use super::{PassError, SmoothOptions};
use crate::ir::{Graph, Model, Node, Value, ValueId};
use crate::tensor::Tensor;
use ndarray::{ArrayD, Axis, IxDyn};
use std::collections::{BTreeMap, HashMap};

const PASS: &str = "smooth-quant";

/// Pure core: the smoothing factors. Channels whose activation or weight range is zero or
/// not finite get 1; factors are clamped to [1e-5, 1e5].
pub fn smooth_scales(act_absmax: &[f32], w_absmax: &[f32], alpha: f32) -> Vec<f32> {
    act_absmax
        .iter()
        .zip(w_absmax)
        .map(|(&a, &w)| {
            let (a, w) = (f64::from(a), f64::from(w));
            if a > 0.0 && w > 0.0 && a.is_finite() && w.is_finite() {
                let s = a.powf(f64::from(alpha)) / w.powf(1.0 - f64::from(alpha));
                s.clamp(1e-5, 1e5) as f32
            } else {
                1.0
            }
        })
        .collect()
}

/// Where the division by s went for one smoothed tensor.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SmoothedTensor {
    /// The activation tensor.
    pub tensor: String,
    /// The layers whose weights absorbed s.
    pub consumers: Vec<String>,
    /// `"LayerNormalization 'ln'"`, `"Gemm 'fc1'"` or `"Mul (inserted)"`.
    pub folded_into: String,
    /// Largest and smallest factor.
    pub s_max: f32,
    /// Smallest factor.
    pub s_min: f32,
}

/// What [`smooth_quant`] did.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct SmoothReport {
    /// Smoothed tensors.
    pub smoothed: Vec<SmoothedTensor>,
    /// Layer inputs that were left alone, with the reason.
    pub skipped: Vec<(String, String)>,
}

fn channel_axis(l: &Layer, rank: Option<usize>) -> Option<isize> {
    match l.kind {
        LayerKind::Conv { .. } => Some(1),
        _ => rank.map(|r| r as isize - 1).or(Some(-1)),
    }
}

/// Applies SmoothQuant to every Conv/Gemm/MatMul input that has an entry in `act_absmax`
/// (tensor name → per-channel max |x| over the calibration data; the channel axis is 1 for
/// Conv inputs and the last axis for Gemm/MatMul inputs).
pub fn smooth_quant(
    model: &mut Model,
    act_absmax: &HashMap<String, Vec<f32>>,
    opts: &SmoothOptions,
) -> Result<SmoothReport, PassError> {
    if !(0.0..=1.0).contains(&opts.alpha) {
        return Err(PassError::InvalidOption {
            pass: PASS.into(),
            option: "alpha".into(),
            reason: format!("{} is not in [0, 1]", opts.alpha),
        });
    }
    let g = &mut model.graph;
    // Group layers by their activation input.
    let mut by_input: BTreeMap<ValueId, Vec<Layer>> = BTreeMap::new();
    for n in g.node_ids() {
        if let Some(l) = layer_of(g, n) {
            by_input.entry(l.input).or_default().push(l);
        }
    }
    let mut rep = SmoothReport::default();
    for (x, layers) in by_input {
        let xname = g.value(x).name.clone();
        let Some(amax) = act_absmax.get(&xname) else {
            continue;
        };
        let mut skip = |r: String| rep.skipped.push((xname.clone(), r));
        let rank = g.value(x).static_shape().map(|s| s.len());
        let axes: Vec<Option<isize>> = layers.iter().map(|l| channel_axis(l, rank)).collect();
        let is_conv = matches!(layers[0].kind, LayerKind::Conv { .. });
        if layers
            .iter()
            .any(|l| matches!(l.kind, LayerKind::Conv { .. }) != is_conv)
            || axes.iter().any(|a| a.is_none())
        {
            skip("consumers disagree on the channel axis".into());
            continue;
        }
        let c = amax.len();
        let mut wmax = vec![0f32; c];
        let mut ok = true;
        for l in &layers {
            let Some(mut w) = constant_f32(g, l.weight) else {
                ok = false;
                break;
            };
            let cin = match l.kind {
                LayerKind::Conv { groups } => w.shape()[1] * groups,
                _ => w.shape()[l.in_axis()],
            };
            if cin != c || g.consumers(l.weight).len() != 1 {
                skip(format!(
                    "{} has {cin} input channels, statistics have {c}, or its weight is shared",
                    g.node(l.node).label()
                ));
                ok = false;
                break;
            }
            for (j, m) in wmax.iter_mut().enumerate() {
                let r = in_channel_views(l, &mut w, j)
                    .iter()
                    .fold(0f32, |a, v| a.max(v.abs()));
                *m = m.max(r);
            }
        }
        if !ok {
            continue;
        }
        let s = smooth_scales(amax, &wmax, opts.alpha);
        let folded = migrate(g, x, &layers, &s, is_conv, rank)?;
        rep.smoothed.push(SmoothedTensor {
            tensor: xname.clone(),
            consumers: layers.iter().map(|l| g.node(l.node).label()).collect(),
            folded_into: folded,
            s_max: s.iter().cloned().fold(f32::MIN, f32::max),
            s_min: s.iter().cloned().fold(f32::MAX, f32::min),
        });
    }
    Ok(rep)
}

/// Divides tensor `x` by `s` per channel (folded into its producer when possible, else an
/// inserted `Mul`) and multiplies input channel j of every layer in `layers` (all consumers of
/// `x` that read it as their activation input) by `s_j`. Returns where the division went.
pub(crate) fn migrate(
    g: &mut Graph,
    x: ValueId,
    layers: &[Layer],
    s: &[f32],
    is_conv: bool,
    rank: Option<usize>,
) -> Result<String, PassError> {
    let c = s.len();
    let xname = g.value(x).name.clone();
    let all_consumers_smoothed = g.consumers(x).len() == layers.len() && !g.outputs.contains(&x);
    // 1. fold into the producer if possible
    let mut folded = None;
    if all_consumers_smoothed {
        if let Some((p, 0)) = g.producer(x) {
            let pnode = g.node(p).clone();
            if pnode.op_type == "LayerNormalization" && !is_conv {
                let axis = attr_int(g, p, "axis", -1);
                let last = rank.map(|r| axis == r as i64 - 1).unwrap_or(false) || axis == -1;
                let sc = pnode.inputs.get(1).copied().flatten();
                let bi = pnode.inputs.get(2).copied().flatten();
                let scv = sc.and_then(|v| constant_f32(g, v));
                let biv = bi.and_then(|v| constant_f32(g, v));
                let shared = sc.map(|v| g.consumers(v).len() != 1).unwrap_or(true)
                    || bi.map(|v| g.consumers(v).len() != 1).unwrap_or(false);
                if last
                    && !shared
                    && scv.as_ref().map(|a| a.len() == c).unwrap_or(false)
                    && (bi.is_none() || biv.as_ref().map(|a| a.len() == c).unwrap_or(false))
                {
                    if let (Some(scid), Some(mut a)) = (sc, scv) {
                        a.iter_mut().zip(s).for_each(|(v, s)| *v /= s);
                        set_constant_f32(g, scid, a);
                    }
                    if let (Some(bid), Some(mut a)) = (bi, biv) {
                        a.iter_mut().zip(s).for_each(|(v, s)| *v /= s);
                        set_constant_f32(g, bid, a);
                    }
                    folded = Some(pnode.label());
                }
            } else if let Some(pl) = layer_of(g, p) {
                let pw = constant_f32(g, pl.weight);
                let pb = pl.bias.and_then(|b| constant_f32(g, b));
                let conv_to_conv = matches!(pl.kind, LayerKind::Conv { .. }) == is_conv;
                if let Some(mut pw) = pw.filter(|w| pl.out_channels(w) == c) {
                    if conv_to_conv
                        && g.consumers(pl.weight).len() == 1
                        && pl.bias.map(|b| g.consumers(b).len() == 1).unwrap_or(true)
                        && pb.as_ref().map(|b| b.len() == c).unwrap_or(true)
                    {
                        for (j, sj) in s.iter().enumerate() {
                            pw.index_axis_mut(Axis(pl.out_axis()), j)
                                .mapv_inplace(|v| v / sj);
                        }
                        set_constant_f32(g, pl.weight, pw);
                        if let (Some(bid), Some(mut b)) = (pl.bias, pb) {
                            b.iter_mut().zip(s).for_each(|(v, s)| *v /= s);
                            set_constant_f32(g, bid, b);
                        }
                        folded = Some(pnode.label());
                    }
                }
            }
        }
    }
    // 2. otherwise an explicit Mul in front of the smoothed layers
    let folded = match folded {
        Some(f) => f,
        None => {
            let shape: Vec<usize> = if is_conv {
                let kr = layers
                    .first()
                    .and_then(|l| g.value(l.weight).static_shape())
                    .map(|s| s.len() - 2)
                    .unwrap_or(2);
                std::iter::once(c)
                    .chain(std::iter::repeat_n(1, kr))
                    .collect()
            } else {
                vec![c]
            };
            let inv: Vec<f32> = s.iter().map(|v| 1.0 / v).collect();
            let a = ArrayD::from_shape_vec(IxDyn(&shape), inv).map_err(|e| PassError::Shape {
                pass: PASS.into(),
                what: "smoothing factors".into(),
                detail: e.to_string(),
            })?;
            let cname = g.fresh_name(&format!("{xname}_smooth_inv_s"));
            let cid = g.add_constant(&cname, Tensor::F32(a));
            let mut nv = Value::named(&g.fresh_name(&format!("{xname}_smoothed")));
            nv.dtype = g.value(x).dtype;
            nv.shape = g.value(x).shape.clone();
            let y = g.add_value(nv);
            let mut mul = Node::new("Mul", vec![Some(x), Some(cid)], vec![Some(y)]);
            mul.name = g.fresh_name(&format!("{xname}_smooth"));
            g.add_node(mul).map_err(|e| PassError::Node {
                pass: PASS.into(),
                node: xname.clone(),
                reason: e.to_string(),
            })?;
            for l in layers {
                g.set_input(l.node, 0, Some(y));
            }
            "Mul (inserted)".to_string()
        }
    };
    // 3. scale the consumers' weight input channels
    for l in layers {
        if let Some(mut w) = constant_f32(g, l.weight) {
            for (j, sj) in s.iter().enumerate() {
                in_channel_views(l, &mut w, j).mapv_inplace(|v| v * sj);
            }
            set_constant_f32(g, l.weight, w);
        }
    }
    Ok(folded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::AttrValue;
    use crate::kernels::testutil::rand_array;
    use crate::passes::equalize::tests::{eval, B};

    fn absmax_last(x: &ArrayD<f32>) -> Vec<f32> {
        let c = *x.shape().last().expect("rank");
        let mut m = vec![0f32; c];
        for (i, v) in x.iter().enumerate() {
            m[i % c] = m[i % c].max(v.abs());
        }
        m
    }

    #[test]
    fn smoothquant_preserves_function_layernorm_linear_and_mul() {
        // x -> LN -> {MatMul q, MatMul k} ; q -> Gemm (producer fold) ; x -> MatMul (Mul insert)
        let mut b = B::new();
        let x = b.input("x", &[16, 8]);
        let g = b.constant(rand_array(&[8], 1).mapv(|v| v + 1.5));
        let be = b.constant(rand_array(&[8], 2));
        let ln = b.node(
            "LayerNormalization",
            vec![x, g, be],
            vec![("axis", AttrValue::Int(-1))],
            Some(&[16, 8]),
        );
        let wq = b.constant(rand_array(&[8, 6], 3));
        let wk = b.constant(rand_array(&[8, 6], 4));
        let q = b.node("MatMul", vec![ln, wq], vec![], Some(&[16, 6]));
        let k = b.node("MatMul", vec![ln, wk], vec![], Some(&[16, 6]));
        let wf = b.constant(rand_array(&[4, 6], 5));
        let f = b.node(
            "Gemm",
            vec![q, wf],
            vec![("transB", AttrValue::Int(1))],
            None,
        );
        let wx = b.constant(rand_array(&[8, 4], 6));
        let xx = b.node("MatMul", vec![x, wx], vec![], None);
        let s1 = b.node("Add", vec![f, xx], vec![], None);
        let wk2 = b.constant(rand_array(&[6, 4], 7));
        let kk = b.node("MatMul", vec![k, wk2], vec![], None);
        let out = b.node("Add", vec![s1, kk], vec![], None);
        b.m.graph.outputs.push(out);
        let mut m = b.m;
        // an outlier channel in x
        let mut xin = rand_array(&[16, 8], 9);
        xin.index_axis_mut(Axis(1), 3).mapv_inplace(|v| v * 30.0);
        let before = eval(&m, &xin);
        // statistics
        let mut stats = HashMap::new();
        stats.insert("x".to_string(), absmax_last(&xin));
        let ln_out = crate::kernels::norm::layer_normalization(
            &xin.view(),
            Some(&constant_f32(&m.graph, g).expect("g").view()),
            Some(&constant_f32(&m.graph, be).expect("b").view()),
            -1,
            1e-5,
        )
        .expect("ln");
        let ln_name = m.graph.value(ln).name.clone();
        stats.insert(ln_name, absmax_last(&ln_out));
        let qv = ln_out.dot_2d(&constant_f32(&m.graph, wq).expect("wq"));
        stats.insert(m.graph.value(q).name.clone(), absmax_last(&qv));
        let rep = smooth_quant(&mut m, &stats, &SmoothOptions::default()).expect("smooth");
        crate::ir::verify::verify(&m.graph).expect("verify");
        let kinds: Vec<&str> = rep
            .smoothed
            .iter()
            .map(|s| s.folded_into.as_str())
            .collect();
        assert_eq!(rep.smoothed.len(), 3, "{rep:?}");
        assert!(
            kinds.iter().any(|k| k.starts_with("LayerNormalization")),
            "{kinds:?}"
        );
        assert!(kinds.iter().any(|k| k.starts_with("MatMul")), "{kinds:?}");
        assert!(kinds.contains(&"Mul (inserted)"), "{kinds:?}");
        let after = eval(&m, &xin);
        let scale = before.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (a, e) in after.iter().zip(before.iter()) {
            assert!((a - e).abs() <= 1e-5 * scale, "{a} vs {e}");
        }
        // the outlier channel's range shrank in the inserted Mul's output
        let sm = rep
            .smoothed
            .iter()
            .find(|s| s.tensor == "x")
            .expect("x smoothed");
        assert!(sm.s_max > 2.0 * sm.s_min);
    }

    trait Dot2 {
        fn dot_2d(&self, o: &ArrayD<f32>) -> ArrayD<f32>;
    }
    impl Dot2 for ArrayD<f32> {
        fn dot_2d(&self, o: &ArrayD<f32>) -> ArrayD<f32> {
            let a = self
                .view()
                .into_dimensionality::<ndarray::Ix2>()
                .expect("2d");
            let b = o.view().into_dimensionality::<ndarray::Ix2>().expect("2d");
            a.dot(&b).into_dyn()
        }
    }

    #[test]
    fn scales_formula() {
        let s = smooth_scales(&[4.0, 0.0, 1.0], &[1.0, 2.0, 4.0], 0.5);
        assert_eq!(s, vec![2.0, 1.0, 0.5]);
    }
}
