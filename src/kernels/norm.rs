//! Normalisation kernels: Softmax/LogSoftmax along an axis (opset ≥ 13, plus the older
//! flatten-to-2-D semantics), LayerNormalization, InstanceNormalization and inference-mode
//! BatchNormalization. Statistics accumulate in f64; lanes run in parallel.

use super::{normalize_axis, shape_err, KernelError};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

/// Applies `f` to every 1-D lane of `x` along `axis` (lanes run in parallel).
fn map_lanes(
    op: &'static str,
    x: &ArrayViewD<'_, f32>,
    axis: usize,
    f: impl Fn(&mut [f32]) + Sync,
) -> Result<ArrayD<f32>, KernelError> {
    let shape = x.shape().to_vec();
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut data = x.as_standard_layout().into_owned();
    let buf = data
        .as_slice_mut()
        .ok_or_else(|| shape_err(op, "input not contiguous"))?;
    if len == 0 || buf.is_empty() {
        return Ok(data);
    }
    if inner == 1 {
        buf.par_chunks_mut(len).with_min_len(16).for_each(&f);
    } else {
        buf.par_chunks_mut(len * inner).for_each(|block| {
            let mut lane = vec![0f32; len];
            for j in 0..inner {
                for (t, v) in lane.iter_mut().enumerate() {
                    *v = block[t * inner + j];
                }
                f(&mut lane);
                for (t, v) in lane.iter().enumerate() {
                    block[t * inner + j] = *v;
                }
            }
        });
    }
    Ok(data)
}

fn softmax_lane(v: &mut [f32]) {
    let m = v.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = 0f64;
    for x in v.iter_mut() {
        *x = super::elementwise::exp_f32(*x - m);
    }
    for x in v.iter() {
        s += *x as f64;
    }
    let inv = (1.0 / s) as f32;
    v.iter_mut().for_each(|x| *x *= inv);
}

fn log_softmax_lane(v: &mut [f32]) {
    let m = v.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let s: f64 = v.iter().map(|&x| ((x - m) as f64).exp()).sum();
    let l = s.ln() as f32;
    v.iter_mut().for_each(|x| *x = *x - m - l);
}

/// ONNX Softmax (opset ≥ 13): `exp(x − max) / Σ exp(x − max)` along `axis` (negative allowed).
pub fn softmax(x: &ArrayViewD<'_, f32>, axis: i64) -> Result<ArrayD<f32>, KernelError> {
    let a = normalize_axis("Softmax", axis, x.ndim())?;
    map_lanes("Softmax", x, a, softmax_lane)
}

/// ONNX LogSoftmax (opset ≥ 13): `x − max − log Σ exp(x − max)` along `axis`.
pub fn log_softmax(x: &ArrayViewD<'_, f32>, axis: i64) -> Result<ArrayD<f32>, KernelError> {
    let a = normalize_axis("LogSoftmax", axis, x.ndim())?;
    map_lanes("LogSoftmax", x, a, log_softmax_lane)
}

fn flattened(
    op: &'static str,
    x: &ArrayViewD<'_, f32>,
    axis: i64,
    f: fn(&mut [f32]),
) -> Result<ArrayD<f32>, KernelError> {
    let r = x.ndim() as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a > r {
        return Err(super::param_err(
            op,
            "axis",
            format!("axis {axis} out of range for rank {r}"),
        ));
    }
    let a = a as usize;
    let rows: usize = x.shape()[..a].iter().product();
    let cols: usize = x.shape()[a..].iter().product();
    let flat = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[rows, cols]))
        .map_err(|e| shape_err(op, e.to_string()))?;
    let y = map_lanes(op, &flat.view(), 1, f)?;
    y.into_shape_with_order(IxDyn(x.shape()))
        .map_err(|e| shape_err(op, e.to_string()))
}

/// ONNX Softmax for opsets 1–12: the input is coerced to 2-D `[∏ dims[..axis], ∏ dims[axis..]]`
/// and softmax is taken over each row; the result has the input's shape. Default axis is 1.
pub fn softmax_flattened(x: &ArrayViewD<'_, f32>, axis: i64) -> Result<ArrayD<f32>, KernelError> {
    flattened("Softmax", x, axis, softmax_lane)
}

/// ONNX LogSoftmax for opsets 1–12 (same coercion as [`softmax_flattened`]).
pub fn log_softmax_flattened(
    x: &ArrayViewD<'_, f32>,
    axis: i64,
) -> Result<ArrayD<f32>, KernelError> {
    flattened("LogSoftmax", x, axis, log_softmax_lane)
}

/// Broadcasts an optional per-feature parameter to `feat` (unidirectional) and flattens it.
fn feature_param(
    op: &'static str,
    what: &str,
    p: Option<&ArrayViewD<'_, f32>>,
    feat: &[usize],
) -> Result<Option<Vec<f32>>, KernelError> {
    match p {
        None => Ok(None),
        Some(p) => {
            let b = p.broadcast(IxDyn(feat)).ok_or_else(|| {
                shape_err(
                    op,
                    format!("{what} {:?} does not broadcast to {feat:?}", p.shape()),
                )
            })?;
            Ok(Some(b.iter().copied().collect()))
        }
    }
}

/// ONNX LayerNormalization (Y output only): normalises over dimensions `axis..rank`:
/// `Y = (X − mean) / sqrt(var + epsilon) · scale + bias`, with population variance; `scale` and
/// `bias` broadcast to `X.shape[axis..]` (ONNX requires scale; it is optional here).
pub fn layer_normalization(
    x: &ArrayViewD<'_, f32>,
    scale: Option<&ArrayViewD<'_, f32>>,
    bias: Option<&ArrayViewD<'_, f32>>,
    axis: i64,
    epsilon: f32,
) -> Result<ArrayD<f32>, KernelError> {
    const OP: &str = "LayerNormalization";
    let a = normalize_axis(OP, axis, x.ndim())?;
    let feat = &x.shape()[a..];
    let sc = feature_param(OP, "Scale", scale, feat)?;
    let bi = feature_param(OP, "B", bias, feat)?;
    let n: usize = feat.iter().product();
    let mut data = x.as_standard_layout().into_owned();
    let buf = data
        .as_slice_mut()
        .ok_or_else(|| shape_err(OP, "input not contiguous"))?;
    if n == 0 {
        return Ok(data);
    }
    buf.par_chunks_mut(n).for_each(|row| {
        normalize_slice(row, epsilon);
        for (i, v) in row.iter_mut().enumerate() {
            let s = sc.as_ref().map_or(1.0, |s| s[i]);
            let b = bi.as_ref().map_or(0.0, |b| b[i]);
            *v = *v * s + b;
        }
    });
    Ok(data)
}

/// In place: `(v − mean) / sqrt(var + eps)` with f64 statistics.
fn normalize_slice(v: &mut [f32], eps: f32) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| {
            let d = x as f64 - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    let inv = 1.0 / (var + eps as f64).sqrt();
    v.iter_mut()
        .for_each(|x| *x = ((*x as f64 - mean) * inv) as f32);
}

fn channel_vec(
    op: &'static str,
    what: &str,
    p: &ArrayViewD<'_, f32>,
    c: usize,
) -> Result<Vec<f32>, KernelError> {
    if p.len() != c || p.ndim() != 1 {
        return Err(shape_err(
            op,
            format!("{what} {:?} must be [{c}]", p.shape()),
        ));
    }
    Ok(p.iter().copied().collect())
}

/// ONNX InstanceNormalization: for each (n, c), normalise over the spatial dimensions and apply
/// `scale[c]`, `bias[c]`. Input `[N, C, D1…]`.
pub fn instance_normalization(
    x: &ArrayViewD<'_, f32>,
    scale: &ArrayViewD<'_, f32>,
    bias: &ArrayViewD<'_, f32>,
    epsilon: f32,
) -> Result<ArrayD<f32>, KernelError> {
    const OP: &str = "InstanceNormalization";
    if x.ndim() < 3 {
        return Err(shape_err(
            OP,
            format!("input {:?} must be [N, C, D1, ...]", x.shape()),
        ));
    }
    let c = x.shape()[1];
    let s = channel_vec(OP, "scale", scale, c)?;
    let b = channel_vec(OP, "B", bias, c)?;
    let plane: usize = x.shape()[2..].iter().product();
    let mut data = x.as_standard_layout().into_owned();
    let buf = data
        .as_slice_mut()
        .ok_or_else(|| shape_err(OP, "input not contiguous"))?;
    if plane == 0 {
        return Ok(data);
    }
    buf.par_chunks_mut(plane).enumerate().for_each(|(i, p)| {
        normalize_slice(p, epsilon);
        let (sv, bv) = (s[i % c], b[i % c]);
        p.iter_mut().for_each(|v| *v = *v * sv + bv);
    });
    Ok(data)
}

/// ONNX BatchNormalization in inference mode (training_mode = 0):
/// `Y = (X − mean[c]) / sqrt(var[c] + epsilon) · scale[c] + B[c]` with channel axis 1.
pub fn batch_normalization(
    x: &ArrayViewD<'_, f32>,
    scale: &ArrayViewD<'_, f32>,
    bias: &ArrayViewD<'_, f32>,
    mean: &ArrayViewD<'_, f32>,
    var: &ArrayViewD<'_, f32>,
    epsilon: f32,
) -> Result<ArrayD<f32>, KernelError> {
    const OP: &str = "BatchNormalization";
    if x.ndim() < 2 {
        return Err(shape_err(
            OP,
            format!("input {:?} must be [N, C, ...]", x.shape()),
        ));
    }
    let c = x.shape()[1];
    let s = channel_vec(OP, "scale", scale, c)?;
    let b = channel_vec(OP, "B", bias, c)?;
    let m = channel_vec(OP, "input_mean", mean, c)?;
    let v = channel_vec(OP, "input_var", var, c)?;
    // Folded per-channel affine map y = a·x + k.
    let a: Vec<f32> = (0..c)
        .map(|i| (s[i] as f64 / (v[i] as f64 + epsilon as f64).sqrt()) as f32)
        .collect();
    let k: Vec<f32> = (0..c)
        .map(|i| (b[i] as f64 - m[i] as f64 * a[i] as f64) as f32)
        .collect();
    let plane: usize = x.shape()[2..].iter().product();
    let mut data = x.as_standard_layout().into_owned();
    let buf = data
        .as_slice_mut()
        .ok_or_else(|| shape_err(OP, "input not contiguous"))?;
    if plane == 0 {
        return Ok(data);
    }
    buf.par_chunks_mut(plane).enumerate().for_each(|(i, p)| {
        let (av, kv) = (a[i % c], k[i % c]);
        p.iter_mut().for_each(|x| *x = *x * av + kv);
    });
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{assert_close, rand_array};
    use ndarray::{array, Axis};

    #[test]
    fn softmax_hand_checked_and_axes() {
        let x = array![[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]].into_dyn();
        let y = softmax(&x.view(), -1).expect("softmax");
        let e: Vec<f32> = [1.0f32, 2.0, 3.0].iter().map(|v| v.exp()).collect();
        let s: f32 = e.iter().sum();
        assert!((y[[0, 2]] - e[2] / s).abs() < 1e-6);
        assert!((y[[1, 1]] - 1.0 / 3.0).abs() < 1e-6);
        // Axis 0 of a 3-D array: lanes sum to one.
        let x = rand_array(&[4, 3, 5], 1);
        let y = softmax(&x.view(), 0).expect("softmax");
        for v in y.sum_axis(Axis(0)).iter() {
            assert!((v - 1.0).abs() < 1e-5);
        }
        let l = log_softmax(&x.view(), 0).expect("logsoftmax");
        assert_close(&l.mapv(f32::exp), &y, 1e-5);
        assert!(softmax(&x.view(), 3).is_err());
    }

    #[test]
    fn softmax_flattened_semantics() {
        let x = rand_array(&[2, 3, 4], 2);
        let y = softmax_flattened(&x.view(), 1).expect("softmax");
        for i in 0..2 {
            let s: f32 = y.index_axis(Axis(0), i).sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
        let l = log_softmax_flattened(&x.view(), 1).expect("ls");
        assert_close(&l.mapv(f32::exp), &y, 1e-5);
    }

    #[test]
    fn layer_norm_matches_definition() {
        let x = rand_array(&[2, 3, 4], 3);
        let sc = rand_array(&[4], 4);
        let b = rand_array(&[4], 5);
        let y = layer_normalization(&x.view(), Some(&sc.view()), Some(&b.view()), -1, 1e-5)
            .expect("ln");
        for i in 0..2 {
            for j in 0..3 {
                let row: Vec<f64> = (0..4).map(|k| x[[i, j, k]] as f64).collect();
                let m = row.iter().sum::<f64>() / 4.0;
                let v = row.iter().map(|r| (r - m) * (r - m)).sum::<f64>() / 4.0;
                for k in 0..4 {
                    let e = (row[k] - m) / (v + 1e-5).sqrt() * sc[[k]] as f64 + b[[k]] as f64;
                    assert!((y[[i, j, k]] as f64 - e).abs() < 1e-5);
                }
            }
        }
        let bad = rand_array(&[3], 1);
        assert!(layer_normalization(&x.view(), Some(&bad.view()), None, -1, 1e-5).is_err());
    }

    #[test]
    fn instance_and_batch_norm() {
        let x = array![[[1.0f32, 3.0], [2.0, 2.0]]].into_dyn(); // [1, 2, 2]
        let s = array![2.0f32, 1.0].into_dyn();
        let b = array![0.5f32, -1.0].into_dyn();
        let y = instance_normalization(&x.view(), &s.view(), &b.view(), 1e-6).expect("in");
        assert_close(&y, &array![[[-1.5f32, 2.5], [-1.0, -1.0]]].into_dyn(), 1e-6);
        let m = array![1.0f32, 2.0].into_dyn();
        let v = array![4.0f32, 1.0].into_dyn();
        let y = batch_normalization(&x.view(), &s.view(), &b.view(), &m.view(), &v.view(), 0.0)
            .expect("bn");
        assert_close(&y, &array![[[0.5f32, 2.5], [-1.0, -1.0]]].into_dyn(), 1e-6);
        let short = array![1.0f32].into_dyn();
        assert!(instance_normalization(&x.view(), &short.view(), &b.view(), 0.0).is_err());
    }
}
