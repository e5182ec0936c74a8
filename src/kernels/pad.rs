//! ONNX Pad for f32 tensors: constant, reflect, edge and wrap modes; negative pads crop.

use super::{param_err, shape_err, KernelError};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

/// Padding mode (`mode` attribute) with the constant value for `constant`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// Fill with the value.
    Constant(f32),
    /// Mirror without repeating the edge element (numpy `reflect`).
    Reflect,
    /// Repeat the edge element.
    Edge,
    /// Wrap around (opset 19 `wrap`).
    Wrap,
}

/// ONNX Pad: `pads_begin[i]`/`pads_end[i]` elements are added before/after axis `i` (negative
/// values remove elements). The caller expands the `axes` input (opset 18) into full-rank
/// vectors. Reflect, edge and wrap need a non-empty axis wherever padding is added (reflect also
/// accepts length 1, repeating the element).
pub fn pad(
    x: &ArrayViewD<'_, f32>,
    pads_begin: &[i64],
    pads_end: &[i64],
    mode: PadMode,
) -> Result<ArrayD<f32>, KernelError> {
    const OP: &str = "Pad";
    let r = x.ndim();
    if pads_begin.len() != r || pads_end.len() != r {
        return Err(param_err(
            OP,
            "pads",
            format!("begin {pads_begin:?} / end {pads_end:?} do not match input rank {r}"),
        ));
    }
    // Source index for each output index of each axis (None = constant fill).
    let mut maps: Vec<Vec<Option<usize>>> = Vec::with_capacity(r);
    let mut out_shape = Vec::with_capacity(r);
    for i in 0..r {
        let n = x.shape()[i] as i64;
        let len = n + pads_begin[i] + pads_end[i];
        if len < 0 {
            return Err(param_err(
                OP,
                "pads",
                format!(
                    "axis {i}: length {n} with pads {}+{} is negative",
                    pads_begin[i], pads_end[i]
                ),
            ));
        }
        let padding = pads_begin[i] > 0 || pads_end[i] > 0;
        if n == 0 && padding && !matches!(mode, PadMode::Constant(_)) {
            return Err(shape_err(
                OP,
                format!("axis {i} is empty; {mode:?} padding needs at least one element"),
            ));
        }
        let map: Vec<Option<usize>> = (0..len)
            .map(|o| {
                let s = o - pads_begin[i];
                if (0..n).contains(&s) {
                    return Some(s as usize);
                }
                match mode {
                    PadMode::Constant(_) => None,
                    PadMode::Edge => Some(s.clamp(0, n - 1) as usize),
                    PadMode::Wrap => Some(s.rem_euclid(n) as usize),
                    PadMode::Reflect => {
                        if n == 1 {
                            Some(0)
                        } else {
                            let period = 2 * (n - 1);
                            let m = s.rem_euclid(period);
                            Some(if m >= n { period - m } else { m } as usize)
                        }
                    }
                }
            })
            .collect();
        out_shape.push(len as usize);
        maps.push(map);
    }
    let fill = match mode {
        PadMode::Constant(v) => v,
        _ => 0.0,
    };
    let total: usize = out_shape.iter().product();
    let xs = x.as_standard_layout();
    let xd = xs
        .as_slice()
        .ok_or_else(|| shape_err(OP, "input not contiguous"))?;
    if r == 0 {
        return Ok(x.to_owned());
    }
    let mut in_str = vec![1usize; r];
    for i in (0..r - 1).rev() {
        in_str[i] = in_str[i + 1] * x.shape()[i + 1];
    }
    let mut out = Vec::with_capacity(total);
    let last = out_shape[r - 1];
    if total > 0 {
        let rows = total / last;
        let mut idx = vec![0usize; r - 1];
        for _ in 0..rows {
            let mut base = Some(0usize);
            for i in 0..r - 1 {
                base = match (base, maps[i][idx[i]]) {
                    (Some(b), Some(s)) => Some(b + s * in_str[i]),
                    _ => None,
                };
            }
            match base {
                None => out.extend(std::iter::repeat_n(fill, last)),
                Some(b) => out.extend(maps[r - 1].iter().map(|m| m.map_or(fill, |s| xd[b + s]))),
            }
            for i in (0..r - 1).rev() {
                idx[i] += 1;
                if idx[i] < out_shape[i] {
                    break;
                }
                idx[i] = 0;
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&out_shape), out).map_err(|e| shape_err(OP, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn pad_modes_match_numpy() {
        let x = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn();
        let y = pad(&x.view(), &[1, 2], &[0, 1], PadMode::Constant(9.0)).expect("pad");
        assert_eq!(
            y,
            array![
                [9.0f32, 9.0, 9.0, 9.0, 9.0, 9.0],
                [9.0, 9.0, 1.0, 2.0, 3.0, 9.0],
                [9.0, 9.0, 4.0, 5.0, 6.0, 9.0]
            ]
            .into_dyn()
        );
        // numpy.pad([1, 2, 3], (4, 3), "reflect").
        let v = array![1.0f32, 2.0, 3.0].into_dyn();
        let y = pad(&v.view(), &[4], &[3], PadMode::Reflect).expect("pad");
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0]
        );
        let y = pad(&v.view(), &[2], &[2], PadMode::Edge).expect("pad");
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]
        );
        let y = pad(&v.view(), &[2], &[1], PadMode::Wrap).expect("pad");
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![2.0, 3.0, 1.0, 2.0, 3.0, 1.0]
        );
        // Negative pads crop.
        let y = pad(&x.view(), &[0, -1], &[-1, 0], PadMode::Constant(0.0)).expect("pad");
        assert_eq!(y, array![[2.0f32, 3.0]].into_dyn());
        assert!(pad(&x.view(), &[0], &[0], PadMode::Edge).is_err());
        assert!(pad(&x.view(), &[0, -4], &[0, 0], PadMode::Edge).is_err());
    }
}
