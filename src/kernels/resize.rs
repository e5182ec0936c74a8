//! ONNX Resize for f32 tensors of any rank: nearest (all four nearest modes), linear (N-linear,
//! e.g. bilinear) and cubic interpolation with the standard coordinate transformation modes.
//!
//! Interpolation is separable and applied one axis at a time (axes whose size and scale are
//! unchanged are skipped), which for linear and cubic modes equals the N-dimensional formula up
//! to float rounding. Out-of-range source coordinates are clamped to the edge as onnxruntime
//! does.

use super::{param_err, shape_err, KernelError};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

/// Interpolation mode (`mode` attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    /// Nearest neighbour, rounding chosen by [`NearestMode`].
    Nearest,
    /// Linear along every resized axis (bilinear for 2-D images).
    Linear,
    /// Cubic convolution with coefficient `cubic_coeff_a`.
    Cubic,
}

/// Rounding of the source coordinate in nearest mode (`nearest_mode` attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestMode {
    /// Round half down (ONNX default).
    RoundPreferFloor,
    /// Round half up.
    RoundPreferCeil,
    /// Floor.
    Floor,
    /// Ceiling.
    Ceil,
}

/// How an output coordinate maps to an input coordinate (`coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordTransform {
    /// `(x + 0.5) / scale − 0.5` (ONNX default).
    HalfPixel,
    /// Half-pixel mapping centred on the input (opset 18 `half_pixel_symmetric`).
    HalfPixelSymmetric,
    /// Like half_pixel, but 0 when the output length is 1.
    PytorchHalfPixel,
    /// `x · (in − 1) / (out − 1)` (0 when the output length is 1).
    AlignCorners,
    /// `x / scale`.
    Asymmetric,
}

/// Normalised Resize parameters. The caller computes, per axis, the output length and the scale:
/// from `scales` (output = ⌊in · scale⌋, scale as given) or from `sizes` (scale = out / in), with
/// `axes` and `keep_aspect_ratio_policy` already applied. `tf_crop_and_resize` and antialiasing
/// are not supported.
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeParams {
    /// Output shape, same rank as the input.
    pub output_shape: Vec<usize>,
    /// Scale per axis used in the coordinate transformation.
    pub scales: Vec<f32>,
    /// Interpolation mode.
    pub mode: ResizeMode,
    /// Rounding used by nearest mode.
    pub nearest_mode: NearestMode,
    /// Coordinate transformation.
    pub coord: CoordTransform,
    /// Cubic coefficient `A` (ONNX default −0.75).
    pub cubic_coeff_a: f32,
    /// Cubic: give zero weight to taps outside the input and renormalise.
    pub exclude_outside: bool,
}

fn source_coord(c: CoordTransform, x: usize, scale: f32, in_len: usize, out_len: usize) -> f32 {
    let xf = x as f32;
    match c {
        CoordTransform::HalfPixel => (xf + 0.5) / scale - 0.5,
        CoordTransform::HalfPixelSymmetric => {
            // ONNX defines offset + (x + 0.5) / scale − 0.5 with
            // offset = in/2 · (1 − out / (scale · in)); this is the same expression simplified,
            // which keeps exact results exact (matters for nearest rounding).
            (xf + 0.5 - out_len as f32 / 2.0) / scale + (in_len as f32 - 1.0) / 2.0
        }
        CoordTransform::PytorchHalfPixel => {
            if out_len > 1 {
                (xf + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordTransform::AlignCorners => {
            if out_len == 1 {
                0.0
            } else {
                xf * (in_len as f32 - 1.0) / (out_len as f32 - 1.0)
            }
        }
        CoordTransform::Asymmetric => xf / scale,
    }
}

/// Taps (input index, weight) for each output index of one axis.
fn axis_taps(p: &ResizeParams, axis: usize, in_len: usize) -> Vec<Vec<(usize, f32)>> {
    let out_len = p.output_shape[axis];
    let scale = p.scales[axis];
    let last = in_len as isize - 1;
    let clampi = |i: isize| i.clamp(0, last) as usize;
    (0..out_len)
        .map(|o| {
            let x = source_coord(p.coord, o, scale, in_len, out_len);
            match p.mode {
                ResizeMode::Nearest => {
                    let fl = x.floor();
                    let frac = x - fl;
                    let r = match p.nearest_mode {
                        NearestMode::Floor => fl,
                        NearestMode::Ceil => x.ceil(),
                        NearestMode::RoundPreferFloor => {
                            if frac == 0.5 {
                                fl
                            } else {
                                x.round()
                            }
                        }
                        NearestMode::RoundPreferCeil => {
                            if frac == 0.5 {
                                fl + 1.0
                            } else {
                                x.round()
                            }
                        }
                    };
                    vec![(clampi(r as isize), 1.0)]
                }
                ResizeMode::Linear => {
                    let xc = x.clamp(0.0, last as f32);
                    let i0 = xc.floor() as isize;
                    let i1 = (i0 + 1).min(last);
                    let w1 = xc - i0 as f32;
                    vec![(clampi(i0), 1.0 - w1), (clampi(i1), w1)]
                }
                ResizeMode::Cubic => {
                    let a = p.cubic_coeff_a;
                    let fl = x.floor();
                    let t = x - fl;
                    let base = fl as isize;
                    let w = [
                        ((a * (t + 1.0) - 5.0 * a) * (t + 1.0) + 8.0 * a) * (t + 1.0) - 4.0 * a,
                        ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0,
                        ((a + 2.0) * (1.0 - t) - (a + 3.0)) * (1.0 - t) * (1.0 - t) + 1.0,
                        ((a * (2.0 - t) - 5.0 * a) * (2.0 - t) + 8.0 * a) * (2.0 - t) - 4.0 * a,
                    ];
                    let mut taps: Vec<(usize, f32)> = Vec::with_capacity(4);
                    let mut total = 0.0;
                    for (j, &wj) in w.iter().enumerate() {
                        let idx = base - 1 + j as isize;
                        let inside = idx >= 0 && idx <= last;
                        if p.exclude_outside && !inside {
                            continue;
                        }
                        total += wj;
                        taps.push((clampi(idx), wj));
                    }
                    if p.exclude_outside && total != 0.0 {
                        taps.iter_mut().for_each(|t| t.1 /= total);
                    }
                    taps
                }
            }
        })
        .collect()
}

/// Resamples one axis of a standard-layout array.
fn resize_axis(data: &[f32], shape: &[usize], axis: usize, taps: &[Vec<(usize, f32)>]) -> Vec<f32> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let in_len = shape[axis];
    let out_len = taps.len();
    let mut out = vec![0f32; outer * out_len * inner];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(out_len * inner)
        .enumerate()
        .for_each(|(ob, dst)| {
            let src = &data[ob * in_len * inner..(ob + 1) * in_len * inner];
            for (o, tl) in taps.iter().enumerate() {
                let d = &mut dst[o * inner..(o + 1) * inner];
                for (t, &(i, w)) in tl.iter().enumerate() {
                    let s = &src[i * inner..(i + 1) * inner];
                    if t == 0 {
                        d.iter_mut().zip(s).for_each(|(dv, &sv)| *dv = w * sv);
                    } else {
                        d.iter_mut().zip(s).for_each(|(dv, &sv)| *dv += w * sv);
                    }
                }
            }
        });
    out
}

/// ONNX Resize (opsets 10–19 semantics for the supported modes; see [`ResizeParams`]).
pub fn resize(x: &ArrayViewD<'_, f32>, p: &ResizeParams) -> Result<ArrayD<f32>, KernelError> {
    const OP: &str = "Resize";
    let r = x.ndim();
    if p.output_shape.len() != r || p.scales.len() != r {
        return Err(shape_err(
            OP,
            format!(
                "input rank {r} but output shape {:?} and scales {:?}",
                p.output_shape, p.scales
            ),
        ));
    }
    if p.scales
        .iter()
        .any(|&s| s.is_nan() || s <= 0.0 || !s.is_finite())
    {
        return Err(param_err(
            OP,
            "scales",
            format!("{:?} must be positive", p.scales),
        ));
    }
    let mut shape = x.shape().to_vec();
    if shape.contains(&0) && shape != p.output_shape {
        return Err(shape_err(
            OP,
            format!("cannot resize empty input {shape:?}"),
        ));
    }
    let mut data: Vec<f32> = x.as_standard_layout().iter().copied().collect();
    for axis in 0..r {
        let (il, ol) = (shape[axis], p.output_shape[axis]);
        if il == ol && p.scales[axis] == 1.0 {
            continue;
        }
        if il == 0 {
            return Err(shape_err(OP, format!("axis {axis} has length 0")));
        }
        let taps = axis_taps(p, axis, il);
        data = resize_axis(&data, &shape, axis, &taps);
        shape[axis] = ol;
    }
    ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| shape_err(OP, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::assert_close;
    use ndarray::array;

    fn params(
        out: Vec<usize>,
        scales: Vec<f32>,
        mode: ResizeMode,
        coord: CoordTransform,
    ) -> ResizeParams {
        ResizeParams {
            output_shape: out,
            scales,
            mode,
            nearest_mode: NearestMode::RoundPreferFloor,
            coord,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
        }
    }

    #[test]
    fn nearest_upsample_asymmetric_floor() {
        let x = array![[[[1.0f32, 2.0], [3.0, 4.0]]]].into_dyn();
        let mut p = params(
            vec![1, 1, 4, 4],
            vec![1.0, 1.0, 2.0, 2.0],
            ResizeMode::Nearest,
            CoordTransform::Asymmetric,
        );
        p.nearest_mode = NearestMode::Floor;
        let y = resize(&x.view(), &p).expect("resize");
        let e = array![[[
            [1.0f32, 1.0, 2.0, 2.0],
            [1.0, 1.0, 2.0, 2.0],
            [3.0, 3.0, 4.0, 4.0],
            [3.0, 3.0, 4.0, 4.0]
        ]]]
        .into_dyn();
        assert_eq!(y, e);
    }

    #[test]
    fn nearest_modes_on_half_coordinates() {
        // 1-D, 4 → 2 with half_pixel: source coordinates 0.5 and 2.5.
        let x = array![10.0f32, 11.0, 12.0, 13.0].into_dyn();
        let mut p = params(
            vec![2],
            vec![0.5],
            ResizeMode::Nearest,
            CoordTransform::HalfPixel,
        );
        let run = |p: &ResizeParams| {
            resize(&x.view(), p)
                .expect("resize")
                .iter()
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(run(&p), vec![10.0, 12.0]);
        p.nearest_mode = NearestMode::RoundPreferCeil;
        assert_eq!(run(&p), vec![11.0, 13.0]);
        p.nearest_mode = NearestMode::Ceil;
        assert_eq!(run(&p), vec![11.0, 13.0]);
        p.nearest_mode = NearestMode::Floor;
        assert_eq!(run(&p), vec![10.0, 12.0]);
    }

    #[test]
    fn bilinear_half_pixel_and_align_corners() {
        // ONNX reference example: 2x2 → 4x4 half_pixel (values from the operator doc).
        let x = array![[[[1.0f32, 2.0], [3.0, 4.0]]]].into_dyn();
        let p = params(
            vec![1, 1, 4, 4],
            vec![1.0, 1.0, 2.0, 2.0],
            ResizeMode::Linear,
            CoordTransform::HalfPixel,
        );
        let y = resize(&x.view(), &p).expect("resize");
        let e = array![[[
            [1.0f32, 1.25, 1.75, 2.0],
            [1.5, 1.75, 2.25, 2.5],
            [2.5, 2.75, 3.25, 3.5],
            [3.0, 3.25, 3.75, 4.0]
        ]]]
        .into_dyn();
        assert_close(&y, &e, 1e-6);
        let p = params(
            vec![1, 1, 3, 3],
            vec![1.0, 1.0, 1.5, 1.5],
            ResizeMode::Linear,
            CoordTransform::AlignCorners,
        );
        let y = resize(&x.view(), &p).expect("resize");
        let e = array![[[[1.0f32, 1.5, 2.0], [2.0, 2.5, 3.0], [3.0, 3.5, 4.0]]]].into_dyn();
        assert_close(&y, &e, 1e-6);
        let p = params(
            vec![1, 1, 1, 1],
            vec![1.0, 1.0, 0.5, 0.5],
            ResizeMode::Linear,
            CoordTransform::PytorchHalfPixel,
        );
        let y = resize(&x.view(), &p).expect("resize");
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![1.0]);
    }

    #[test]
    fn cubic_reproduces_linear_ramps_inside() {
        // Cubic convolution with any A reproduces linear functions away from the borders.
        let x = ArrayD::from_shape_vec(vec![8], (0..8).map(|v| v as f32).collect()).expect("x");
        let p = params(
            vec![16],
            vec![2.0],
            ResizeMode::Cubic,
            CoordTransform::Asymmetric,
        );
        let y = resize(&x.view(), &p).expect("resize");
        for o in 2..12 {
            assert!((y[[o]] - o as f32 / 2.0).abs() < 1e-5, "o={o}: {}", y[[o]]);
        }
        let mut p2 = p.clone();
        p2.exclude_outside = true;
        let y2 = resize(&x.view(), &p2).expect("resize");
        assert!((y2[[0]] - 0.0).abs() < 1e-6);
    }

    #[test]
    fn resize_param_errors() {
        let x = array![1.0f32, 2.0].into_dyn();
        let p = params(
            vec![4, 1],
            vec![2.0],
            ResizeMode::Linear,
            CoordTransform::HalfPixel,
        );
        assert!(resize(&x.view(), &p).is_err());
        let p = params(
            vec![4],
            vec![0.0],
            ResizeMode::Linear,
            CoordTransform::HalfPixel,
        );
        assert!(matches!(
            resize(&x.view(), &p),
            Err(KernelError::Param { .. })
        ));
    }
}
