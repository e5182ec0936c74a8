//! Weight calibration on the full tensor (exact, no histogram): abs-max or MSE-optimal clip per
//! tensor or per output channel.

use ndarray::{ArrayViewD, Axis};
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
}

/// Per-group clips and scales of a weight tensor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WeightCalibration {
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
    let groups: Vec<Vec<f32>> = match granularity {
        WeightGranularity::PerTensor => vec![w.iter().copied().collect()],
        WeightGranularity::PerChannel { axis } => {
            if axis >= w.ndim() {
                return Err(CalibError::BadAxis {
                    tensor: name.into(),
                    axis,
                    rank: w.ndim(),
                });
            }
            w.axis_iter(Axis(axis))
                .map(|c| c.iter().copied().collect())
                .collect()
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
    Ok(WeightCalibration { clips, scales })
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
