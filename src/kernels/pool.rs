//! Pooling kernels: ONNX MaxPool, AveragePool (N-d, strides, pads, dilations, ceil_mode,
//! count_include_pad) and GlobalAveragePool/GlobalMaxPool. Planes (n, c) run in parallel.

use super::{param_err, shape_err, KernelError};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

/// Normalised attributes of MaxPool/AveragePool, one entry per spatial dimension. The caller
/// resolves `auto_pad` into explicit pads and fills defaults (strides 1, dilations 1, pads 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolParams {
    /// Window size per spatial dimension (`kernel_shape`).
    pub kernel: Vec<usize>,
    /// Stride per spatial dimension.
    pub strides: Vec<usize>,
    /// Dilation per spatial dimension.
    pub dilations: Vec<usize>,
    /// Padding at the start of each spatial dimension.
    pub pads_begin: Vec<usize>,
    /// Padding at the end of each spatial dimension.
    pub pads_end: Vec<usize>,
    /// Round the output length up instead of down (windows may not start in the end padding).
    pub ceil_mode: bool,
    /// AveragePool only: divide by the number of window cells inside the padded input instead
    /// of the number of cells inside the real input.
    pub count_include_pad: bool,
}

impl PoolParams {
    /// Defaults for a given kernel: unit strides and dilations, no padding, floor mode.
    pub fn new(kernel: Vec<usize>) -> Self {
        let r = kernel.len();
        PoolParams {
            kernel,
            strides: vec![1; r],
            dilations: vec![1; r],
            pads_begin: vec![0; r],
            pads_end: vec![0; r],
            ceil_mode: false,
            count_include_pad: false,
        }
    }
}

/// Output length of one pooled dimension:
/// `⌊ or ⌈ (in + pb + pe − ((k − 1)·d + 1)) / s ⌉ + 1`; in ceil mode a last window that would
/// start inside the end padding is dropped (as onnxruntime and PyTorch do).
pub fn pool_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
    ceil_mode: bool,
) -> Option<usize> {
    if stride == 0 || dilation == 0 || kernel == 0 {
        return None;
    }
    let eff = (kernel - 1) * dilation + 1;
    let padded = input + pad_begin + pad_end;
    if padded < eff {
        return None;
    }
    let span = padded - eff;
    let mut out = if ceil_mode {
        span.div_ceil(stride) + 1
    } else {
        span / stride + 1
    };
    if ceil_mode && (out - 1) * stride >= input + pad_begin {
        out -= 1;
    }
    Some(out)
}

/// Per spatial dimension and output index: the valid input taps and the number of taps inside
/// the padded extent.
struct Taps {
    taps: Vec<Vec<usize>>,
    padded_count: Vec<usize>,
}

fn dim_taps(input: usize, out: usize, k: usize, s: usize, d: usize, pb: usize, pe: usize) -> Taps {
    let mut taps = Vec::with_capacity(out);
    let mut padded_count = Vec::with_capacity(out);
    for o in 0..out {
        let start = (o * s) as isize - pb as isize;
        let mut t = Vec::with_capacity(k);
        let mut pc = 0;
        for j in 0..k {
            let pos = start + (j * d) as isize;
            if pos >= 0 && (pos as usize) < input {
                t.push(pos as usize);
            }
            if pos < (input + pe) as isize {
                pc += 1;
            }
        }
        taps.push(t);
        padded_count.push(pc);
    }
    Taps { taps, padded_count }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PoolKind {
    Max,
    Avg,
}

fn pool(
    op: &'static str,
    x: &ArrayViewD<'_, f32>,
    p: &PoolParams,
    kind: PoolKind,
) -> Result<ArrayD<f32>, KernelError> {
    if x.ndim() < 3 {
        return Err(shape_err(
            op,
            format!("X {:?} must be [N, C, D1, ...]", x.shape()),
        ));
    }
    let r = x.ndim() - 2;
    for (name, v) in [
        ("kernel_shape", &p.kernel),
        ("strides", &p.strides),
        ("dilations", &p.dilations),
        ("pads", &p.pads_begin),
        ("pads", &p.pads_end),
    ] {
        if v.len() != r {
            return Err(param_err(
                op,
                name,
                format!("{} entries for {r} spatial dimensions", v.len()),
            ));
        }
        if name != "pads" && v.contains(&0) {
            return Err(param_err(op, name, format!("{v:?} contains 0")));
        }
    }
    let in_sp = &x.shape()[2..];
    let mut out_sp = Vec::with_capacity(r);
    let mut dims = Vec::with_capacity(r);
    #[allow(clippy::needless_range_loop)]
    for i in 0..r {
        let o = pool_output_len(
            in_sp[i],
            p.kernel[i],
            p.strides[i],
            p.dilations[i],
            p.pads_begin[i],
            p.pads_end[i],
            p.ceil_mode,
        )
        .ok_or_else(|| {
            shape_err(
                op,
                format!(
                    "spatial dim {i}: input {} with pads {}+{} shorter than window {} (dilation {})",
                    in_sp[i], p.pads_begin[i], p.pads_end[i], p.kernel[i], p.dilations[i]
                ),
            )
        })?;
        out_sp.push(o);
        dims.push(dim_taps(
            in_sp[i],
            o,
            p.kernel[i],
            p.strides[i],
            p.dilations[i],
            p.pads_begin[i],
            p.pads_end[i],
        ));
    }
    let mut in_str = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        in_str[i] = in_str[i + 1] * in_sp[i + 1];
    }
    let in_plane: usize = in_sp.iter().product();
    let out_plane: usize = out_sp.iter().product();
    let planes = x.shape()[0] * x.shape()[1];
    let xs = x.as_standard_layout();
    let xd = xs
        .as_slice()
        .ok_or_else(|| shape_err(op, "X not contiguous"))?;
    let mut out = vec![0f32; planes * out_plane];
    if out_plane > 0 && in_plane > 0 {
        out.par_chunks_mut(out_plane)
            .enumerate()
            .for_each(|(pi, o)| {
                let xp = &xd[pi * in_plane..(pi + 1) * in_plane];
                let mut oidx = vec![0usize; r];
                let mut tidx = vec![0usize; r];
                let mut lists: Vec<&[usize]> = vec![&[]; r];
                for ov in o.iter_mut() {
                    for (i, l) in lists.iter_mut().enumerate() {
                        *l = &dims[i].taps[oidx[i]];
                    }
                    let valid: usize = lists.iter().map(|l| l.len()).product();
                    let mut acc = if kind == PoolKind::Max {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    };
                    if valid > 0 {
                        tidx.iter_mut().for_each(|t| *t = 0);
                        for _ in 0..valid {
                            let off: usize = (0..r).map(|i| lists[i][tidx[i]] * in_str[i]).sum();
                            let v = xp[off];
                            match kind {
                                PoolKind::Max => {
                                    if v > acc || v.is_nan() {
                                        acc = v;
                                    }
                                }
                                PoolKind::Avg => acc += v,
                            }
                            for i in (0..r).rev() {
                                tidx[i] += 1;
                                if tidx[i] < lists[i].len() {
                                    break;
                                }
                                tidx[i] = 0;
                            }
                        }
                    }
                    if kind == PoolKind::Avg {
                        let count: usize = if p.count_include_pad {
                            (0..r).map(|i| dims[i].padded_count[oidx[i]]).product()
                        } else {
                            valid
                        };
                        acc = if count > 0 { acc / count as f32 } else { 0.0 };
                    }
                    *ov = acc;
                    for i in (0..r).rev() {
                        oidx[i] += 1;
                        if oidx[i] < out_sp[i] {
                            break;
                        }
                        oidx[i] = 0;
                    }
                }
            });
    }
    let mut shape = vec![x.shape()[0], x.shape()[1]];
    shape.extend(&out_sp);
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| shape_err(op, e.to_string()))
}

/// ONNX MaxPool (values only; the optional Indices output is not produced): the maximum over
/// each window of valid (non-padding) input cells. Input `[N, C, D1…Dr]`.
pub fn max_pool(x: &ArrayViewD<'_, f32>, p: &PoolParams) -> Result<ArrayD<f32>, KernelError> {
    pool("MaxPool", x, p, PoolKind::Max)
}

/// ONNX AveragePool: the sum over each window's valid cells divided by the number of valid
/// cells, or (count_include_pad) by the number of cells inside the padded input.
pub fn average_pool(x: &ArrayViewD<'_, f32>, p: &PoolParams) -> Result<ArrayD<f32>, KernelError> {
    pool("AveragePool", x, p, PoolKind::Avg)
}

fn global(
    op: &'static str,
    x: &ArrayViewD<'_, f32>,
    kind: PoolKind,
) -> Result<ArrayD<f32>, KernelError> {
    if x.ndim() < 3 {
        return Err(shape_err(
            op,
            format!("X {:?} must be [N, C, D1, ...]", x.shape()),
        ));
    }
    let plane: usize = x.shape()[2..].iter().product();
    let planes = x.shape()[0] * x.shape()[1];
    let xs = x.as_standard_layout();
    let xd = xs
        .as_slice()
        .ok_or_else(|| shape_err(op, "X not contiguous"))?;
    let out: Vec<f32> = (0..planes)
        .into_par_iter()
        .map(|pi| {
            let s = &xd[pi * plane..(pi + 1) * plane];
            match kind {
                PoolKind::Max => {
                    s.iter().fold(
                        f32::NEG_INFINITY,
                        |a, &v| {
                            if v > a || v.is_nan() {
                                v
                            } else {
                                a
                            }
                        },
                    )
                }
                PoolKind::Avg => {
                    (s.iter().map(|&v| v as f64).sum::<f64>() / plane.max(1) as f64) as f32
                }
            }
        })
        .collect();
    let mut shape = vec![x.shape()[0], x.shape()[1]];
    shape.extend(std::iter::repeat_n(1, x.ndim() - 2));
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| shape_err(op, e.to_string()))
}

/// ONNX GlobalAveragePool: mean over all spatial dimensions, result `[N, C, 1, …, 1]`.
pub fn global_average_pool(x: &ArrayViewD<'_, f32>) -> Result<ArrayD<f32>, KernelError> {
    global("GlobalAveragePool", x, PoolKind::Avg)
}

/// ONNX GlobalMaxPool: maximum over all spatial dimensions, result `[N, C, 1, …, 1]`.
pub fn global_max_pool(x: &ArrayViewD<'_, f32>) -> Result<ArrayD<f32>, KernelError> {
    global("GlobalMaxPool", x, PoolKind::Max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iota(shape: &[usize]) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(shape.to_vec(), (0..n).map(|v| v as f32).collect()).expect("x")
    }

    #[test]
    fn max_pool_2x2_stride2() {
        let x = iota(&[1, 1, 4, 4]);
        let mut p = PoolParams::new(vec![2, 2]);
        p.strides = vec![2, 2];
        let y = max_pool(&x.view(), &p).expect("pool");
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![5.0, 7.0, 13.0, 15.0]
        );
    }

    #[test]
    fn average_pool_pads_and_count_include_pad() {
        // 1x1x3x3 of 0..8, 3x3 window, pad 1: corner window holds 0,1,3,4.
        let x = iota(&[1, 1, 3, 3]);
        let mut p = PoolParams::new(vec![3, 3]);
        p.pads_begin = vec![1, 1];
        p.pads_end = vec![1, 1];
        let y = average_pool(&x.view(), &p).expect("pool");
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        assert_eq!(y[[0, 0, 0, 0]], 2.0); // (0+1+3+4)/4
        assert_eq!(y[[0, 0, 1, 1]], 4.0);
        p.count_include_pad = true;
        let y = average_pool(&x.view(), &p).expect("pool");
        assert_eq!(y[[0, 0, 0, 0]], 8.0 / 9.0);
    }

    #[test]
    fn ceil_mode_and_dilation() {
        // 1-D: length 5, k 2, s 2: floor → 2 outputs, ceil → 3 (last window holds only x[4]).
        let x = iota(&[1, 1, 5]);
        let mut p = PoolParams::new(vec![2]);
        p.strides = vec![2];
        assert_eq!(max_pool(&x.view(), &p).expect("pool").shape(), &[1, 1, 2]);
        p.ceil_mode = true;
        let y = max_pool(&x.view(), &p).expect("pool");
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![1.0, 3.0, 4.0]);
        let y = average_pool(&x.view(), &p).expect("pool");
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![0.5, 2.5, 4.0]);
        // ceil mode never starts a window in the end padding.
        assert_eq!(pool_output_len(4, 2, 2, 1, 0, 1, true), Some(2));
        // Dilation 2, k 2 on length 5: windows {0,2},{1,3},{2,4}.
        let mut p = PoolParams::new(vec![2]);
        p.dilations = vec![2];
        let y = max_pool(&x.view(), &p).expect("pool");
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![2.0, 3.0, 4.0]);
    }

    #[test]
    fn global_pools_and_errors() {
        let x = iota(&[2, 3, 2, 2]);
        let a = global_average_pool(&x.view()).expect("gap");
        assert_eq!(a.shape(), &[2, 3, 1, 1]);
        assert_eq!(a[[1, 2, 0, 0]], (20.0 + 21.0 + 22.0 + 23.0) / 4.0);
        let m = global_max_pool(&x.view()).expect("gmp");
        assert_eq!(m[[0, 1, 0, 0]], 7.0);
        let bad = iota(&[2, 3]);
        assert!(global_max_pool(&bad.view()).is_err());
        let p = PoolParams::new(vec![5, 5]);
        assert!(max_pool(&x.view(), &p).is_err());
        let p = PoolParams::new(vec![1]);
        assert!(matches!(
            max_pool(&x.view(), &p),
            Err(KernelError::Param { .. })
        ));
    }
}
