//! Weight calibration on the full tensor (exact, no histogram): abs-max or MSE-optimal clip per
//! tensor or per output channel.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use rayon::prelude::*;

use super::scale::{scale_from_clip, ScaleRounding};
use super::select::MseOptions;
use super::{CalibError, Quantizer};

/// How a weight clip is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum WeightMethod {
    /// Largest magnitude of the channel.
    #[default]
    AbsMax,
    /// Clip minimising `Σ |w − Q(w)|^p` over the channel's actual values, with candidates
    /// `absmax · k / candidates`.
    Mse(MseOptions),
}

/// Which elements share one scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "granularity", rename_all = "kebab-case")]
pub enum WeightGranularity {
    /// One scale for the whole tensor.
    PerTensor,
    /// One scale per index along `axis` (output channels: axis 0 for Conv/Gemm weights in ONNX
    /// layout `[out, in, …]`, axis 1 for a MatMul `[in, out]` weight).
    PerChannel { axis: usize },
    /// One scale per run of `block_size` consecutive indices along `axis`, for every index of
    /// the other axes (ONNX blocked layout: the scale tensor has the weight's shape with
    /// `shape[axis]` replaced by `ceil(shape[axis] / block_size)`; the last block may be short).
    PerBlock { axis: usize, block_size: usize },
}

/// Per-group clips and scales of a weight tensor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WeightCalibration {
    /// Shape of the scale tensor: `[]` per tensor, `[shape[axis]]` per channel, the blocked
    /// shape per block. `clips` and `scales` are its elements in row-major order.
    pub shape: Vec<usize>,
    /// One clip per group (one entry for per-tensor).
    pub clips: Vec<f64>,
    /// `scale_from_clip(clip, format max, rounding)` per group.
    pub scales: Vec<f32>,
}

/// Calibrates weight tensor `name`. Groups are processed in parallel; the result does not depend
/// on the thread count. NaN or infinite weights are an error naming the tensor.
pub fn weight_clips(
    name: &str,
    w: ArrayViewD<'_, f32>,
    granularity: WeightGranularity,
    method: WeightMethod,
    format: &(dyn Quantizer + Sync),
    rounding: ScaleRounding,
) -> Result<WeightCalibration, CalibError> {
    if let Some((index, &value)) = w.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(CalibError::NonFinite {
            tensor: name.into(),
            index,
            value,
        });
    }
    if w.is_empty() {
        return Err(CalibError::Empty {
            tensor: name.into(),
        });
    }
    let maxv = format.max_value();
    if !(maxv.is_finite() && maxv > 0.0) {
        return Err(CalibError::BadFormat {
            tensor: name.into(),
            max: maxv,
        });
    }
    if let WeightMethod::Mse(o) = method {
        if format.block_scaled() {
            return Err(CalibError::BlockScaled {
                tensor: name.into(),
                method: "mse".into(),
            });
        }
        if o.candidates == 0 || o.norm.is_nan() || o.norm <= 0.0 {
            return Err(CalibError::InvalidOption {
                option: format!("weight mse (tensor '{name}')"),
                reason: "candidates must be ≥ 1 and the norm positive".into(),
            });
        }
    }
    let bad_axis = |axis: usize| CalibError::BadAxis {
        tensor: name.into(),
        axis,
        rank: w.ndim(),
    };
    let (shape, groups): (Vec<usize>, Vec<Vec<f32>>) = match granularity {
        WeightGranularity::PerTensor => (vec![], vec![w.iter().copied().collect()]),
        WeightGranularity::PerChannel { axis } => {
            if axis >= w.ndim() {
                return Err(bad_axis(axis));
            }
            (
                vec![w.shape()[axis]],
                w.axis_iter(Axis(axis))
                    .map(|c| c.iter().copied().collect())
                    .collect(),
            )
        }
        WeightGranularity::PerBlock { axis, block_size } => {
            if axis >= w.ndim() {
                return Err(bad_axis(axis));
            }
            if block_size == 0 {
                return Err(CalibError::InvalidOption {
                    option: format!("block size (weight '{name}')"),
                    reason: "must be at least 1".into(),
                });
            }
            let mut shape = w.shape().to_vec();
            shape[axis] = shape[axis].div_ceil(block_size);
            // Group k of the blocked scale tensor (row-major) collects its block's elements:
            // walk lanes along `axis` of the weight and of an index tensor of the scale shape
            // together (both iterate the other axes in the same order).
            let n: usize = shape.iter().product();
            let ids = ArrayD::from_shape_vec(IxDyn(&shape), (0..n).collect::<Vec<usize>>())
                .map_err(|e| CalibError::InvalidOption {
                    option: format!("block layout (weight '{name}')"),
                    reason: e.to_string(),
                })?;
            let mut groups = vec![Vec::new(); n];
            for (lane, idl) in w.lanes(Axis(axis)).into_iter().zip(ids.lanes(Axis(axis))) {
                for (c, &v) in lane.iter().enumerate() {
                    groups[idl[c / block_size]].push(v);
                }
            }
            (shape, groups)
        }
    };
    let clips: Vec<f64> = groups
        .par_iter()
        .map(|g| group_clip(g, method, format, rounding))
        .collect();
    let scales = clips
        .iter()
        .map(|&c| scale_from_clip(c, maxv, rounding))
        .collect();
    Ok(WeightCalibration {
        shape,
        clips,
        scales,
    })
}

fn group_clip(
    g: &[f32],
    method: WeightMethod,
    format: &(dyn Quantizer + Sync),
    rounding: ScaleRounding,
) -> f64 {
    let absmax = f64::from(g.iter().fold(0f32, |m, v| m.max(v.abs())));
    let o = match method {
        WeightMethod::AbsMax => return absmax,
        WeightMethod::Mse(o) => o,
    };
    if absmax == 0.0 {
        return 0.0;
    }
    let maxv = format.max_value();
    let mut out = vec![0f32; g.len()];
    let mut best: Option<(f64, f64)> = None;
    let mut last_scale = None;
    for k in (1..=o.candidates).rev() {
        let clip = absmax * k as f64 / o.candidates as f64;
        let scale = scale_from_clip(clip, maxv, rounding);
        if last_scale == Some(scale) {
            continue;
        }
        last_scale = Some(scale);
        format.fake_quantize(g, scale, &mut out);
        let err: f64 = g
            .iter()
            .zip(&out)
            .map(|(&a, &b)| {
                let d = (f64::from(a) - f64::from(b)).abs();
                if o.norm == 2.0 {
                    d * d
                } else {
                    d.powf(o.norm)
                }
            })
            .sum();
        if best.is_none_or(|(e, _)| err < e) {
            best = Some((err, clip));
        }
    }
    best.map_or(absmax, |(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::super::testq::{MiniFloat, NarrowInt};
    use super::*;
    use ndarray::{Array2, ArrayD, IxDyn};

    #[test]
    fn absmax_per_channel() {
        let w = Array2::from_shape_vec((2, 3), vec![1.0, -4.0, 2.0, 0.5, 0.25, -0.125])
            .expect("shape")
            .into_dyn();
        let c = weight_clips(
            "w",
            w.view(),
            WeightGranularity::PerChannel { axis: 0 },
            WeightMethod::AbsMax,
            &NarrowInt(8),
            ScaleRounding::Float,
        )
        .expect("ok");
        assert_eq!(c.clips, vec![4.0, 0.5]);
        assert_eq!(
            c.scales,
            vec![(4.0f64 / 127.0) as f32, (0.5f64 / 127.0) as f32]
        );
        let cols = weight_clips(
            "w",
            w.view(),
            WeightGranularity::PerChannel { axis: 1 },
            WeightMethod::AbsMax,
            &NarrowInt(8),
            ScaleRounding::Float,
        )
        .expect("ok");
        assert_eq!(cols.clips, vec![1.0, 4.0, 2.0]);
        let t = weight_clips(
            "w",
            w.view(),
            WeightGranularity::PerTensor,
            WeightMethod::AbsMax,
            &NarrowInt(8),
            ScaleRounding::Float,
        )
        .expect("ok");
        assert_eq!(t.clips, vec![4.0]);
    }

    #[test]
    fn mse_clips_an_outlier_and_never_loses_to_absmax() {
        // 999 small weights and one outlier: the 3-bit MSE clip sacrifices the outlier.
        let mut v: Vec<f32> = (0..999).map(|i| ((i % 21) as f32 - 10.0) * 0.01).collect();
        v.push(1.0);
        let w = ArrayD::from_shape_vec(IxDyn(&[1, 1000]), v.clone()).expect("shape");
        for q in [&NarrowInt(3) as &(dyn Quantizer + Sync), &MiniFloat(2, 1)] {
            let m = weight_clips(
                "w",
                w.view(),
                WeightGranularity::PerChannel { axis: 0 },
                WeightMethod::Mse(MseOptions::default()),
                q,
                ScaleRounding::Float,
            )
            .expect("ok");
            let err = |clip: f64| {
                let mut out = vec![0f32; v.len()];
                q.fake_quantize(&v, (clip / q.max_value()) as f32, &mut out);
                v.iter()
                    .zip(&out)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
            };
            assert!(m.clips[0] < 1.0);
            assert!(err(m.clips[0]) < err(1.0));
        }
    }

    #[test]
    fn per_block_uses_onnx_blocked_layout() {
        // Weight [I=5, O=2] blocked along axis 0 with block 2: scales [3, 2], row-major.
        let w = Array2::from_shape_vec(
            (5, 2),
            vec![1.0, -10.0, 2.0, 20.0, -3.0, 30.0, 4.0, 40.0, 5.0, -50.0],
        )
        .expect("shape")
        .into_dyn();
        let c = weight_clips(
            "w",
            w.view(),
            WeightGranularity::PerBlock {
                axis: 0,
                block_size: 2,
            },
            WeightMethod::AbsMax,
            &NarrowInt(8),
            ScaleRounding::Float,
        )
        .expect("ok");
        assert_eq!(c.shape, vec![3, 2]);
        assert_eq!(c.clips, vec![2.0, 20.0, 4.0, 40.0, 5.0, 50.0]);
        // The scales drive quant_formats' blocked fake quantization without a shape error.
        let f: quant_formats::Format = "int8:narrow".parse().expect("format");
        let flat: Vec<f32> = w.iter().copied().collect();
        let mut out = vec![0f32; flat.len()];
        f.fake_quantize_per_block(&flat, &[5, 2], 0, 2, &c.scales, &mut out)
            .expect("layout");
        for (a, b) in flat.iter().zip(&out) {
            assert!((a - b).abs() <= 50.0 / 127.0 / 2.0 + 1e-6);
        }
        let e = weight_clips(
            "w",
            w.view(),
            WeightGranularity::PerBlock {
                axis: 1,
                block_size: 0,
            },
            WeightMethod::AbsMax,
            &NarrowInt(8),
            ScaleRounding::Float,
        );
        assert!(e.is_err());
    }

    #[test]
    fn errors_name_the_weight() {
        let w = ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0, f32::NAN]).expect("shape");
        let e = weight_clips(
            "conv1.weight",
            w.view(),
            WeightGranularity::PerTensor,
            WeightMethod::AbsMax,
            &NarrowInt(8),
            ScaleRounding::Float,
        )
        .expect_err("nan");
        assert!(e.to_string().contains("conv1.weight"));
        let ok = ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0, 2.0]).expect("shape");
        let e = weight_clips(
            "fc",
            ok.view(),
            WeightGranularity::PerChannel { axis: 3 },
            WeightMethod::AbsMax,
            &NarrowInt(8),
            ScaleRounding::Float,
        )
        .expect_err("axis");
        assert!(matches!(
            e,
            CalibError::BadAxis {
                axis: 3,
                rank: 1,
                ..
            }
        ));
    }
}
