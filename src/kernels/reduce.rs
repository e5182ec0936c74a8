//! Reductions over a set of axes: ONNX ReduceMean, ReduceSum, ReduceMax, ReduceMin and
//! ReduceProd with keepdims and noop_with_empty_axes. Sums accumulate in f64 in index order.

use super::{normalize_axis, shape_err, KernelError};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

/// Which reduction to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Arithmetic mean (ReduceMean).
    Mean,
    /// Sum (ReduceSum).
    Sum,
    /// Maximum (ReduceMax); an empty reduction gives −∞.
    Max,
    /// Minimum (ReduceMin); an empty reduction gives +∞.
    Min,
    /// Product (ReduceProd).
    Prod,
}

impl ReduceOp {
    fn name(self) -> &'static str {
        match self {
            ReduceOp::Mean => "ReduceMean",
            ReduceOp::Sum => "ReduceSum",
            ReduceOp::Max => "ReduceMax",
            ReduceOp::Min => "ReduceMin",
            ReduceOp::Prod => "ReduceProd",
        }
    }

    fn apply(self, v: &[f32]) -> f32 {
        match self {
            ReduceOp::Sum => v.iter().map(|&x| x as f64).sum::<f64>() as f32,
            ReduceOp::Mean => (v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64) as f32,
            ReduceOp::Prod => v.iter().map(|&x| x as f64).product::<f64>() as f32,
            ReduceOp::Max => {
                v.iter().fold(
                    f32::NEG_INFINITY,
                    |a, &b| {
                        if b > a || b.is_nan() {
                            b
                        } else {
                            a
                        }
                    },
                )
            }
            ReduceOp::Min => v.iter().fold(
                f32::INFINITY,
                |a, &b| {
                    if b < a || b.is_nan() {
                        b
                    } else {
                        a
                    }
                },
            ),
        }
    }
}

/// Reduces `x` over `axes` (negative allowed, duplicates rejected). With empty `axes` all axes
/// are reduced, unless `noop_with_empty_axes` is set, in which case `x` is returned unchanged.
/// `keepdims` keeps reduced axes with length 1.
pub fn reduce(
    x: &ArrayViewD<'_, f32>,
    axes: &[i64],
    keepdims: bool,
    noop_with_empty_axes: bool,
    op: ReduceOp,
) -> Result<ArrayD<f32>, KernelError> {
    let name = op.name();
    let r = x.ndim();
    if axes.is_empty() && noop_with_empty_axes {
        return Ok(x.to_owned());
    }
    let mut red = vec![false; r];
    if axes.is_empty() {
        red.iter_mut().for_each(|v| *v = true);
    }
    for &a in axes {
        let a = normalize_axis(name, a, r)?;
        if red[a] {
            return Err(super::param_err(
                name,
                "axes",
                format!("axis {a} repeated in {axes:?}"),
            ));
        }
        red[a] = true;
    }
    // Permute kept axes first, reduced axes last, so each output reduces one contiguous run.
    let mut perm: Vec<usize> = (0..r).filter(|&i| !red[i]).collect();
    perm.extend((0..r).filter(|&i| red[i]));
    let t = x.view().permuted_axes(IxDyn(&perm));
    let t = t.as_standard_layout();
    let data = t
        .as_slice()
        .ok_or_else(|| shape_err(name, "input not contiguous"))?;
    let len: usize = (0..r).filter(|&i| red[i]).map(|i| x.shape()[i]).product();
    let outer: usize = (0..r).filter(|&i| !red[i]).map(|i| x.shape()[i]).product();
    let out: Vec<f32> = if len == 0 {
        vec![op.apply(&[]); outer]
    } else {
        data.par_chunks(len).map(|c| op.apply(c)).collect()
    };
    let shape: Vec<usize> = (0..r)
        .filter_map(|i| {
            if !red[i] {
                Some(x.shape()[i])
            } else if keepdims {
                Some(1)
            } else {
                None
            }
        })
        .collect();
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| shape_err(name, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn reduce_axes_keepdims() {
        let x = array![[[1.0f32, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]].into_dyn();
        let y = reduce(&x.view(), &[1], true, false, ReduceOp::Sum).expect("sum");
        assert_eq!(y, array![[[4.0f32, 6.0]], [[12.0, 14.0]]].into_dyn());
        let y = reduce(&x.view(), &[0, -1], false, false, ReduceOp::Mean).expect("mean");
        assert_eq!(y, array![3.5f32, 5.5].into_dyn());
        let y = reduce(&x.view(), &[], false, false, ReduceOp::Max).expect("max");
        assert_eq!(y.shape(), &[] as &[usize]);
        assert_eq!(y.iter().next().copied(), Some(8.0));
        let y = reduce(&x.view(), &[], true, true, ReduceOp::Min).expect("noop");
        assert_eq!(y, x);
        let y = reduce(&x.view(), &[2], false, false, ReduceOp::Min).expect("min");
        assert_eq!(y, array![[1.0f32, 3.0], [5.0, 7.0]].into_dyn());
        let y = reduce(&x.view(), &[0], false, false, ReduceOp::Prod).expect("prod");
        assert_eq!(y, array![[5.0f32, 12.0], [21.0, 32.0]].into_dyn());
        assert!(reduce(&x.view(), &[3], false, false, ReduceOp::Sum).is_err());
        assert!(reduce(&x.view(), &[1, 1], false, false, ReduceOp::Sum).is_err());
    }
}
