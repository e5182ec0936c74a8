//! Empirical bias correction (Nagel et al. 2019): per output channel
//! `b ← b + E[y_float] − E[y_quant]`, where the expectations are taken over calibration data with
//! the already-quantized network upstream (the caller runs the two networks and feeds the
//! per-channel output means, e.g. through [`ChannelMean`]). Conv and Gemm get the correction in
//! their bias input (inserted when absent); MatMul gets an `Add` with a constant after it.

use super::layer::{constant_f32, layer_of, set_constant_f32, LayerKind};
use super::PassError;
use crate::ir::{Graph, Node, NodeId, Value};
use crate::tensor::Tensor;
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

const PASS: &str = "correct-bias";

/// Streaming per-channel mean of a layer output (channel axis 1 for Conv outputs, the last axis
/// for Gemm/MatMul outputs). Sums in f64 in a fixed order.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMean {
    axis: usize,
    sum: Vec<f64>,
    count: u64,
}

impl ChannelMean {
    /// A mean over `channels` channels along `axis`.
    pub fn new(channels: usize, axis: usize) -> Self {
        ChannelMean {
            axis,
            sum: vec![0.0; channels],
            count: 0,
        }
    }

    /// Adds one batch of outputs.
    pub fn update(&mut self, y: &ArrayViewD<'_, f32>) -> Result<(), PassError> {
        if self.axis >= y.ndim() || y.shape()[self.axis] != self.sum.len() {
            return Err(PassError::Shape {
                pass: PASS.into(),
                what: "layer output".into(),
                detail: format!(
                    "output {:?} has no axis {} of size {}",
                    y.shape(),
                    self.axis,
                    self.sum.len()
                ),
            });
        }
        for (c, lane) in y.axis_iter(Axis(self.axis)).enumerate() {
            self.sum[c] += lane.iter().map(|&v| f64::from(v)).sum::<f64>();
        }
        self.count += (y.len() / self.sum.len().max(1)) as u64;
        Ok(())
    }

    /// The means (zero when nothing was seen).
    pub fn mean(&self) -> Vec<f64> {
        let n = self.count.max(1) as f64;
        self.sum.iter().map(|s| s / n).collect()
    }
}

/// Channel axis of a layer's output (1 for Conv, last for Gemm/MatMul of rank `rank`).
pub fn output_channel_axis(g: &Graph, node: NodeId, rank: usize) -> Option<usize> {
    let l = layer_of(g, node)?;
    Some(match l.kind {
        LayerKind::Conv { .. } => 1,
        _ => rank.saturating_sub(1),
    })
}

/// Applies `b += E[y_float] − E[y_quant]` to layer `node`; returns the per-channel correction
/// added to the layer output. For a MatMul the node is re-inserted (its `NodeId` may change; look
/// it up again through the producer of the new `<output>_nobias` tensor) and an `Add` node
/// producing the original output tensor is added.
pub fn correct_bias(
    g: &mut Graph,
    node: NodeId,
    mean_float: &[f64],
    mean_quant: &[f64],
) -> Result<Vec<f32>, PassError> {
    if mean_float.len() != mean_quant.len() {
        return Err(PassError::Shape {
            pass: PASS.into(),
            what: format!("output means of {}", g.node(node).label()),
            detail: format!(
                "{} float / {} quantized means",
                mean_float.len(),
                mean_quant.len()
            ),
        });
    }
    let delta: Vec<f64> = mean_float
        .iter()
        .zip(mean_quant)
        .map(|(f, q)| f - q)
        .collect();
    shift_bias(g, node, &delta)
}

/// Adds `delta` (one value per output channel) to the output of layer `node` through its bias,
/// as [`correct_bias`] does; returns the shift as f32.
pub fn shift_bias(g: &mut Graph, node: NodeId, delta: &[f64]) -> Result<Vec<f32>, PassError> {
    let label = g.node(node).label();
    let err = |reason: String| PassError::Node {
        pass: PASS.into(),
        node: label.clone(),
        reason,
    };
    let layer = layer_of(g, node)
        .ok_or_else(|| err("not a Conv/Gemm/MatMul with a constant f32 weight".into()))?;
    let w = constant_f32(g, layer.weight).ok_or_else(|| err("weight is not constant".into()))?;
    let n = layer.out_channels(&w);
    if delta.len() != n {
        return Err(PassError::Shape {
            pass: PASS.into(),
            what: format!("bias shift of {label}"),
            detail: format!("{} values for {n} output channels", delta.len()),
        });
    }
    let delta: Vec<f32> = delta.iter().map(|&d| d as f32).collect();
    if delta.iter().any(|d| !d.is_finite()) {
        return Err(err("non-finite output mean".into()));
    }
    match layer.kind {
        LayerKind::Conv { .. } | LayerKind::Gemm { .. } => {
            let beta = if let LayerKind::Gemm { beta, .. } = layer.kind {
                beta
            } else {
                1.0
            };
            if beta == 0.0 {
                return Err(err("Gemm beta is 0, a bias cannot be added".into()));
            }
            match layer.bias {
                Some(b) => {
                    let mut bv =
                        constant_f32(g, b).ok_or_else(|| err("bias not constant".into()))?;
                    if bv.len() != n || g.consumers(b).len() != 1 {
                        return Err(err(format!(
                            "bias has {} elements (needs {n}, one per output channel) or is shared",
                            bv.len()
                        )));
                    }
                    for (x, d) in bv.iter_mut().zip(&delta) {
                        *x += d / beta;
                    }
                    set_constant_f32(g, b, bv);
                }
                None => {
                    let name = g.fresh_name(&format!("{}_bias", g.value(layer.weight).name));
                    let a = ArrayD::from_shape_vec(
                        IxDyn(&[n]),
                        delta.iter().map(|d| d / beta).collect(),
                    )
                    .map_err(|e| err(e.to_string()))?;
                    let v = g.add_constant(&name, Tensor::F32(a));
                    g.set_input(node, 2, Some(v));
                }
            }
        }
        LayerKind::MatMul => {
            let name = g.fresh_name(&format!("{}_bias", g.value(layer.weight).name));
            let a = ArrayD::from_shape_vec(IxDyn(&[n]), delta.clone())
                .map_err(|e| err(e.to_string()))?;
            let b = g.add_constant(&name, Tensor::F32(a));
            let out = layer.output;
            let mut nv = Value::named(&g.fresh_name(&format!("{}_nobias", g.value(out).name)));
            nv.dtype = g.value(out).dtype;
            nv.shape = g.value(out).shape.clone();
            let pre = g.add_value(nv);
            // The MatMul now writes `pre`; an Add produces the original output tensor.
            let mut mm = g
                .remove_node(node)
                .ok_or_else(|| err("node vanished".into()))?;
            mm.outputs[0] = Some(pre);
            g.add_node(mm).map_err(|e| err(e.to_string()))?;
            let mut add = Node::new("Add", vec![Some(pre), Some(b)], vec![Some(out)]);
            add.name = format!("{label}_bias_correction").replace(['\'', ' '], "_");
            g.add_node(add).map_err(|e| err(e.to_string()))?;
        }
    }
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::AttrValue;
    use crate::kernels::testutil::rand_array;
    use crate::passes::equalize::tests::{eval, B};
    use crate::passes::gptq::tests::rtn_quantizer;
    use quant_formats::Format;

    fn quantize_weight(g: &mut Graph, v: crate::ir::ValueId, out_axis: usize) {
        let w = constant_f32(g, v).expect("w");
        let w2 = w.clone().into_dimensionality::<ndarray::Ix2>().expect("2d");
        let w2 = if out_axis == 0 { w2 } else { w2.t().to_owned() };
        let q = rtn_quantizer(&w2, "int3".parse::<Format>().expect("fmt"));
        let wq = w2.indexed_map(|(r, _), v| q(r, *v));
        let wq = if out_axis == 0 { wq } else { wq.t().to_owned() };
        set_constant_f32(g, v, wq.into_dyn().as_standard_layout().into_owned());
    }

    trait IndexedMap {
        fn indexed_map(&self, f: impl Fn((usize, usize), &f32) -> f32) -> ndarray::Array2<f32>;
    }
    impl IndexedMap for ndarray::Array2<f32> {
        fn indexed_map(&self, f: impl Fn((usize, usize), &f32) -> f32) -> ndarray::Array2<f32> {
            let mut o = self.clone();
            for (i, v) in self.indexed_iter() {
                o[i] = f(i, v);
            }
            o
        }
    }

    fn check(op: &str) {
        let mut b = B::new();
        let x = b.input("x", &[64, 12]);
        let (w, attrs) = if op == "Gemm" {
            (
                b.constant(rand_array(&[5, 12], 3)),
                vec![("transB", AttrValue::Int(1))],
            )
        } else {
            (b.constant(rand_array(&[12, 5], 3)), vec![])
        };
        let y = b.node(op, vec![x, w], attrs, None);
        b.m.graph.outputs.push(y);
        let mut m = b.m;
        // inputs with a non-zero mean so weight error shows up as a mean shift
        let xin = rand_array(&[64, 12], 9).mapv(|v| v + 0.7);
        let yf = eval(&m, &xin);
        let node = m.graph.node_ids()[0];
        quantize_weight(&mut m.graph, w, if op == "Gemm" { 0 } else { 1 });
        let yq = eval(&m, &xin);
        let mean = |y: &ArrayD<f32>| {
            let mut c = ChannelMean::new(5, 1);
            c.update(&y.view()).expect("update");
            c.mean()
        };
        let (mf, mq) = (mean(&yf), mean(&yq));
        let before = mf
            .iter()
            .zip(&mq)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            before > 1e-3,
            "quantization should shift the mean ({before})"
        );
        correct_bias(&mut m.graph, node, &mf, &mq).expect("correct");
        crate::ir::verify::verify(&m.graph).expect("verify");
        let yc = eval(&m, &xin);
        let mc = mean(&yc);
        for (a, b) in mf.iter().zip(&mc) {
            assert!(
                (a - b).abs() < 1e-5,
                "{op}: mean error {a} vs {b} (was {before})"
            );
        }
    }

    #[test]
    fn bias_correction_zeroes_mean_error_gemm() {
        check("Gemm");
    }

    #[test]
    fn bias_correction_zeroes_mean_error_matmul() {
        check("MatMul");
    }
}
