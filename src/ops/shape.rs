//! Shape and data-movement ops: Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat, Split,
//! Slice, Gather, Expand, Shape, Size, ConstantOfShape, Constant, Range. They work on every
//! compute dtype; opset differences (attributes that became inputs) are resolved at build time.

use super::elementwise::broadcast_shape;
use super::{axis, eval_err, input, input_i64s, opt_input_i64s, Attrs, Op, OpError};
use crate::tensor::{make_array, Tensor};
use ndarray::{ArrayD, Axis, IxDyn};

/// Applies `$body` (an expression producing `Result<ArrayD<T>, OpError>` from the array `$a`) to
/// whichever compute variant `$t` holds.
macro_rules! each {
    ($op:expr, $t:expr, $a:ident => $body:expr) => {
        match $t {
            Tensor::F32($a) => Tensor::F32($body?),
            Tensor::F64($a) => Tensor::F64($body?),
            Tensor::I64($a) => Tensor::I64($body?),
            Tensor::I32($a) => Tensor::I32($body?),
            Tensor::I8($a) => Tensor::I8($body?),
            Tensor::U8($a) => Tensor::U8($body?),
            Tensor::Bool($a) => Tensor::Bool($body?),
            Tensor::Packed { dtype, .. } => {
                return Err(eval_err($op, format!("{dtype} tensors are not supported")))
            }
        }
    };
}

fn to_usize_shape(op: &str, v: &[i64]) -> Result<Vec<usize>, OpError> {
    v.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| eval_err(op, format!("negative dimension in {v:?}")))
        })
        .collect()
}

/// Resolves a Reshape target shape against the input shape.
pub fn reshape_target(
    input: &[usize],
    spec: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>, OpError> {
    let n: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| {
                eval_err(
                    "Reshape",
                    format!("0 at position {i} but the input has rank {}", input.len()),
                )
            })?),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(eval_err("Reshape", format!("invalid shape {spec:?}"))),
        }
    }
    if let Some(i) = infer {
        let rest: usize = out.iter().product();
        if rest == 0 || n % rest != 0 {
            return Err(eval_err(
                "Reshape",
                format!("cannot reshape {input:?} to {spec:?}"),
            ));
        }
        out[i] = n / rest;
    }
    if out.iter().product::<usize>() != n {
        return Err(eval_err(
            "Reshape",
            format!("cannot reshape {input:?} to {spec:?}"),
        ));
    }
    Ok(out)
}

#[derive(Debug)]
struct Reshape {
    attr_shape: Option<Vec<i64>>,
    allowzero: bool,
}

impl Reshape {
    fn target(&self, shape: &[usize], inputs: &[Option<&Tensor>]) -> Result<Vec<usize>, OpError> {
        let spec = match &self.attr_shape {
            Some(s) => s.clone(),
            None => input_i64s("Reshape", inputs, 1)?,
        };
        reshape_target(shape, &spec, self.allowzero)
    }
}

impl Op for Reshape {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("Reshape", inputs, 0)?;
        let s = self.target(x.shape(), inputs)?;
        Ok(vec![x.reshaped(&s)?])
    }

    fn eval_owned(&self, first: Tensor, rest: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let s = self.target(first.shape(), rest)?;
        Ok(vec![first.into_reshaped(&s)?])
    }
}

#[derive(Debug)]
struct Flatten {
    axis: i64,
}

impl Flatten {
    fn target(&self, shape: &[usize]) -> Result<Vec<usize>, OpError> {
        let r = shape.len();
        let a = if self.axis == r as i64 {
            r
        } else {
            axis("Flatten", self.axis, r + 1)?
        };
        let outer: usize = shape[..a].iter().product();
        let inner: usize = shape[a..].iter().product();
        Ok(vec![outer, inner])
    }
}

impl Op for Flatten {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("Flatten", inputs, 0)?;
        Ok(vec![x.reshaped(&self.target(x.shape())?)?])
    }

    fn eval_owned(&self, first: Tensor, _: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let s = self.target(first.shape())?;
        Ok(vec![first.into_reshaped(&s)?])
    }
}

#[derive(Debug)]
struct Transpose {
    perm: Option<Vec<i64>>,
}

/// Transposes an array by `perm` into standard layout.
pub fn transpose<T: Clone>(a: &ArrayD<T>, perm: &[usize]) -> ArrayD<T> {
    a.view()
        .permuted_axes(IxDyn(perm))
        .as_standard_layout()
        .into_owned()
}

impl Op for Transpose {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("Transpose", inputs, 0)?;
        let r = x.shape().len();
        let perm: Vec<usize> = match &self.perm {
            None => (0..r).rev().collect(),
            Some(p) => p
                .iter()
                .map(|&v| axis("Transpose", v, r))
                .collect::<Result<_, _>>()?,
        };
        let mut seen = vec![false; r];
        if perm.len() != r || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
            return Err(eval_err(
                "Transpose",
                format!("perm {perm:?} is not a permutation of rank {r}"),
            ));
        }
        Ok(vec![
            each!("Transpose", x, a => Ok::<_, OpError>(transpose(a, &perm))),
        ])
    }
}

#[derive(Debug)]
struct Squeeze {
    attr_axes: Option<Vec<i64>>,
    from_input: bool,
}

impl Op for Squeeze {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("Squeeze", inputs, 0)?;
        Ok(vec![x.reshaped(&self.target(x.shape(), inputs)?)?])
    }

    fn eval_owned(&self, first: Tensor, rest: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let s = self.target(first.shape(), rest)?;
        Ok(vec![first.into_reshaped(&s)?])
    }
}

impl Squeeze {
    fn target(&self, shape: &[usize], inputs: &[Option<&Tensor>]) -> Result<Vec<usize>, OpError> {
        let axes = if self.from_input {
            opt_input_i64s(inputs, 1)?
        } else {
            self.attr_axes.clone()
        };
        let r = shape.len();
        let out: Vec<usize> = match axes {
            None => shape.iter().copied().filter(|&d| d != 1).collect(),
            Some(ax) => {
                let ax: Vec<usize> = ax
                    .iter()
                    .map(|&a| axis("Squeeze", a, r))
                    .collect::<Result<_, _>>()?;
                for &a in &ax {
                    if shape[a] != 1 {
                        return Err(eval_err(
                            "Squeeze",
                            format!("axis {a} of {:?} is not 1", shape),
                        ));
                    }
                }
                shape
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !ax.contains(i))
                    .map(|(_, d)| *d)
                    .collect()
            }
        };
        Ok(out)
    }
}

#[derive(Debug)]
struct Unsqueeze {
    attr_axes: Option<Vec<i64>>,
}

impl Op for Unsqueeze {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("Unsqueeze", inputs, 0)?;
        Ok(vec![x.reshaped(&self.target(x.shape(), inputs)?)?])
    }

    fn eval_owned(&self, first: Tensor, rest: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let s = self.target(first.shape(), rest)?;
        Ok(vec![first.into_reshaped(&s)?])
    }
}

impl Unsqueeze {
    fn target(&self, shape: &[usize], inputs: &[Option<&Tensor>]) -> Result<Vec<usize>, OpError> {
        let axes = match &self.attr_axes {
            Some(a) => a.clone(),
            None => input_i64s("Unsqueeze", inputs, 1)?,
        };
        let r = shape.len() + axes.len();
        let mut ax: Vec<usize> = axes
            .iter()
            .map(|&a| axis("Unsqueeze", a, r))
            .collect::<Result<_, _>>()?;
        ax.sort_unstable();
        ax.dedup();
        if ax.len() != axes.len() {
            return Err(eval_err("Unsqueeze", format!("repeated axes {axes:?}")));
        }
        let mut it = shape.iter();
        let out: Vec<usize> = (0..r)
            .map(|i| {
                if ax.contains(&i) {
                    1
                } else {
                    it.next().copied().unwrap_or(1)
                }
            })
            .collect();
        Ok(out)
    }
}

#[derive(Debug)]
struct Concat {
    axis: i64,
}

/// Concatenates along `ax` into a standard-layout (row-major) array: for each index of the
/// leading axes, the inputs' contiguous blocks are copied one after the other.
fn concat_arrays<T: Clone>(ax: usize, arrs: &[&ArrayD<T>]) -> Result<ArrayD<T>, OpError> {
    let bad = || {
        eval_err(
            "Concat",
            format!(
                "inputs must agree on every axis except {ax}: shapes {:?}",
                arrs.iter().map(|a| a.shape().to_vec()).collect::<Vec<_>>()
            ),
        )
    };
    let first = arrs
        .first()
        .ok_or_else(|| eval_err("Concat", "no inputs"))?;
    let mut shape = first.shape().to_vec();
    if ax >= shape.len() {
        return Err(bad());
    }
    shape[ax] = 0;
    for a in arrs {
        let sh = a.shape();
        if sh.len() != shape.len()
            || sh
                .iter()
                .zip(&shape)
                .enumerate()
                .any(|(i, (x, y))| i != ax && x != y)
        {
            return Err(bad());
        }
        shape[ax] += sh[ax];
    }
    let outer: usize = shape[..ax].iter().product();
    let inner: usize = shape[ax + 1..].iter().product();
    let std: Vec<_> = arrs.iter().map(|a| a.as_standard_layout()).collect();
    let mut slices = Vec::with_capacity(std.len());
    for a in &std {
        let sl = a
            .as_slice()
            .ok_or_else(|| eval_err("Concat", "input not contiguous"))?;
        slices.push((sl, a.shape()[ax] * inner));
    }
    let mut out = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for (sl, chunk) in &slices {
            out.extend_from_slice(&sl[o * chunk..(o + 1) * chunk]);
        }
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| eval_err("Concat", e.to_string()))
}

impl Op for Concat {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let ts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
        let first = ts.first().ok_or_else(|| eval_err("Concat", "no inputs"))?;
        let ax = axis("Concat", self.axis, first.shape().len())?;
        macro_rules! cat {
            ($v:ident) => {{
                let mut arrs = Vec::new();
                for t in &ts {
                    match t {
                        Tensor::$v(a) => arrs.push(a),
                        o => {
                            return Err(eval_err(
                                "Concat",
                                format!("mixed input types {} and {}", first.dtype(), o.dtype()),
                            ))
                        }
                    }
                }
                Tensor::$v(concat_arrays(ax, &arrs)?)
            }};
        }
        Ok(vec![match first {
            Tensor::F32(_) => cat!(F32),
            Tensor::F64(_) => cat!(F64),
            Tensor::I64(_) => cat!(I64),
            Tensor::I32(_) => cat!(I32),
            Tensor::I8(_) => cat!(I8),
            Tensor::U8(_) => cat!(U8),
            Tensor::Bool(_) => cat!(Bool),
            Tensor::Packed { dtype, .. } => {
                return Err(eval_err(
                    "Concat",
                    format!("{dtype} tensors are not supported"),
                ))
            }
        }])
    }
}

#[derive(Debug)]
struct Split {
    axis: i64,
    attr_split: Option<Vec<i64>>,
    from_input: bool,
    n_out: usize,
}

fn select_range<T: Clone>(
    a: &ArrayD<T>,
    ax: usize,
    start: usize,
    len: usize,
) -> Result<ArrayD<T>, OpError> {
    Ok(
        a.slice_axis(Axis(ax), ndarray::Slice::from(start..start + len))
            .to_owned(),
    )
}

impl Op for Split {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("Split", inputs, 0)?;
        let ax = axis("Split", self.axis, x.shape().len())?;
        let dim = x.shape()[ax];
        let split = if self.from_input {
            opt_input_i64s(inputs, 1)?
        } else {
            self.attr_split.clone()
        };
        let sizes: Vec<usize> = match split {
            Some(s) => to_usize_shape("Split", &s)?,
            None => {
                let n = self.n_out.max(1);
                let chunk = dim.div_ceil(n);
                (0..n)
                    .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
                    .collect()
            }
        };
        if sizes.iter().sum::<usize>() != dim {
            return Err(eval_err(
                "Split",
                format!("split {sizes:?} does not add up to {dim}"),
            ));
        }
        let mut out = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for s in sizes {
            out.push(each!("Split", x, a => select_range(a, ax, start, s)));
            start += s;
        }
        Ok(out)
    }
}

/// Slice parameters given as attributes (opset < 10): starts, ends, axes.
type SliceAttrs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>);

#[derive(Debug)]
struct Slice {
    attrs: Option<SliceAttrs>,
}

/// Indices selected by one ONNX slice (start, end, step) on a dimension of size `dim`.
pub fn slice_indices(dim: usize, start: i64, end: i64, step: i64) -> Vec<usize> {
    let d = dim as i64;
    let norm = |v: i64| if v < 0 { v + d } else { v };
    let (s, e) = if step > 0 {
        (norm(start).clamp(0, d), norm(end).clamp(0, d))
    } else {
        (norm(start).clamp(-1, d - 1), norm(end).clamp(-1, d - 1))
    };
    let mut out = Vec::new();
    let mut i = s;
    while (step > 0 && i < e) || (step < 0 && i > e) {
        out.push(i as usize);
        i += step;
    }
    out
}

impl Op for Slice {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("Slice", inputs, 0)?;
        let (starts, ends, axes, steps) = match &self.attrs {
            Some((s, e, a)) => (s.clone(), e.clone(), a.clone(), None),
            None => (
                input_i64s("Slice", inputs, 1)?,
                input_i64s("Slice", inputs, 2)?,
                opt_input_i64s(inputs, 3)?,
                opt_input_i64s(inputs, 4)?,
            ),
        };
        let r = x.shape().len();
        let axes: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&v| axis("Slice", v, r))
                .collect::<Result<_, _>>()?,
            None => (0..starts.len()).collect(),
        };
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(eval_err(
                "Slice",
                "starts, ends, axes and steps differ in length",
            ));
        }
        let mut cur = x.clone();
        for i in 0..starts.len() {
            if steps[i] == 0 {
                return Err(eval_err("Slice", "step 0"));
            }
            let ax = axes[i];
            let idx = slice_indices(cur.shape()[ax], starts[i], ends[i], steps[i]);
            if idx.len() == cur.shape()[ax] && steps[i] > 0 {
                continue;
            }
            cur = each!("Slice", &cur, a => Ok::<_, OpError>(a.select(Axis(ax), &idx)));
        }
        Ok(vec![cur])
    }
}

#[derive(Debug)]
struct Gather {
    axis: i64,
}

impl Op for Gather {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("Gather", inputs, 0)?;
        let idx_t = input("Gather", inputs, 1)?;
        let r = x.shape().len();
        let ax = axis("Gather", self.axis, r)?;
        let dim = x.shape()[ax] as i64;
        let idx = idx_t.to_i64()?;
        let flat: Vec<usize> = idx
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + dim } else { i };
                if j < 0 || j >= dim {
                    Err(eval_err(
                        "Gather",
                        format!("index {i} out of range for axis of size {dim}"),
                    ))
                } else {
                    Ok(j as usize)
                }
            })
            .collect::<Result<_, _>>()?;
        let mut shape: Vec<usize> = x.shape()[..ax].to_vec();
        shape.extend_from_slice(idx.shape());
        shape.extend_from_slice(&x.shape()[ax + 1..]);
        let sel = each!("Gather", x, a => Ok::<_, OpError>(a.select(Axis(ax), &flat)));
        Ok(vec![sel.reshaped(&shape)?])
    }
}

#[derive(Debug)]
struct Expand;

impl Op for Expand {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("Expand", inputs, 0)?;
        let s = to_usize_shape("Expand", &input_i64s("Expand", inputs, 1)?)?;
        let out = broadcast_shape(x.shape(), &s)
            .ok_or_else(|| eval_err("Expand", format!("cannot expand {:?} to {s:?}", x.shape())))?;
        Ok(vec![each!("Expand", x, a => a
            .broadcast(IxDyn(&out))
            .map(|v| v.to_owned())
            .ok_or_else(|| eval_err("Expand", "broadcast failed")))])
    }
}

#[derive(Debug)]
struct ShapeOp {
    start: i64,
    end: Option<i64>,
}

impl Op for ShapeOp {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("Shape", inputs, 0)?;
        let r = x.shape().len() as i64;
        let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let s = clampi(self.start);
        let e = clampi(self.end.unwrap_or(r));
        let dims: Vec<i64> = x.shape()[s..e.max(s)].iter().map(|&d| d as i64).collect();
        Ok(vec![Tensor::vec_i64(dims)])
    }
}

#[derive(Debug)]
struct Size;

impl Op for Size {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("Size", inputs, 0)?;
        Ok(vec![Tensor::I64(ArrayD::from_elem(
            IxDyn(&[]),
            x.len() as i64,
        ))])
    }
}

#[derive(Debug)]
struct ConstantOfShape {
    value: Tensor,
}

impl Op for ConstantOfShape {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let s = to_usize_shape(
            "ConstantOfShape",
            &input_i64s("ConstantOfShape", inputs, 0)?,
        )?;
        let d = IxDyn(&s);
        Ok(vec![match &self.value {
            Tensor::F32(a) => Tensor::F32(ArrayD::from_elem(
                d,
                a.iter().next().copied().unwrap_or(0.0),
            )),
            Tensor::F64(a) => Tensor::F64(ArrayD::from_elem(
                d,
                a.iter().next().copied().unwrap_or(0.0),
            )),
            Tensor::I64(a) => {
                Tensor::I64(ArrayD::from_elem(d, a.iter().next().copied().unwrap_or(0)))
            }
            Tensor::I32(a) => {
                Tensor::I32(ArrayD::from_elem(d, a.iter().next().copied().unwrap_or(0)))
            }
            Tensor::I8(a) => {
                Tensor::I8(ArrayD::from_elem(d, a.iter().next().copied().unwrap_or(0)))
            }
            Tensor::U8(a) => {
                Tensor::U8(ArrayD::from_elem(d, a.iter().next().copied().unwrap_or(0)))
            }
            Tensor::Bool(a) => Tensor::Bool(ArrayD::from_elem(
                d,
                a.iter().next().copied().unwrap_or(false),
            )),
            Tensor::Packed { dtype, .. } => {
                return Err(eval_err(
                    "ConstantOfShape",
                    format!("{dtype} values are not supported"),
                ))
            }
        }])
    }
}

#[derive(Debug)]
struct Constant {
    value: Tensor,
}

impl Op for Constant {
    fn eval(&self, _inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        Ok(vec![self.value.clone()])
    }
}

#[derive(Debug)]
struct Range;

impl Op for Range {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let s = input("Range", inputs, 0)?;
        match s {
            Tensor::I64(_) | Tensor::I32(_) => {
                let st = input_i64s("Range", inputs, 0)?[0];
                let li = input_i64s("Range", inputs, 1)?[0];
                let de = input_i64s("Range", inputs, 2)?[0];
                if de == 0 {
                    return Err(eval_err("Range", "delta is 0"));
                }
                let n = ((li - st) as f64 / de as f64).ceil().max(0.0) as usize;
                let v: Vec<i64> = (0..n as i64).map(|i| st + i * de).collect();
                let t = Tensor::vec_i64(v);
                Ok(vec![if matches!(s, Tensor::I32(_)) {
                    super::elementwise::cast(&t, crate::tensor::DType::I32)?
                } else {
                    t
                }])
            }
            _ => {
                let g = |i| -> Result<f32, OpError> {
                    super::input_f32("Range", inputs, i)?
                        .iter()
                        .next()
                        .copied()
                        .ok_or_else(|| eval_err("Range", "empty scalar"))
                };
                let (st, li, de) = (g(0)?, g(1)?, g(2)?);
                let n = ((li - st) / de).ceil().max(0.0) as usize;
                let v: Vec<f32> = (0..n).map(|i| st + i as f32 * de).collect();
                Ok(vec![Tensor::F32(make_array(&[n], v)?)])
            }
        }
    }
}

/// Builds a shape op, or `None` if `op` is not in this family.
pub fn build(op: &str, a: &Attrs) -> Result<Option<Box<dyn Op>>, OpError> {
    let opset = a.opset();
    let b: Box<dyn Op> = match op {
        "Reshape" => {
            if opset < 5 {
                return Err(a.err(
                    "shape",
                    "Reshape with a shape attribute (opset < 5) is not supported",
                ));
            }
            Box::new(Reshape {
                attr_shape: None,
                allowzero: opset >= 14 && a.int("allowzero", 0)? != 0,
            })
        }
        "Flatten" => Box::new(Flatten {
            axis: a.int("axis", 1)?,
        }),
        "Transpose" => Box::new(Transpose {
            perm: a.opt_ints("perm")?,
        }),
        "Squeeze" => Box::new(Squeeze {
            attr_axes: if opset < 13 {
                a.opt_ints("axes")?
            } else {
                None
            },
            from_input: opset >= 13,
        }),
        "Unsqueeze" => Box::new(Unsqueeze {
            attr_axes: if opset < 13 {
                Some(
                    a.opt_ints("axes")?
                        .ok_or_else(|| a.err("axes", "required before opset 13"))?,
                )
            } else {
                None
            },
        }),
        "Concat" => Box::new(Concat {
            axis: match a.opt_int("axis")? {
                Some(v) => v,
                None if opset < 4 => 1,
                None => return Err(a.err("axis", "required")),
            },
        }),
        "Split" => {
            if opset >= 18 {
                a.opt_int("num_outputs")?;
            }
            Box::new(Split {
                axis: a.int("axis", 0)?,
                attr_split: if opset < 13 {
                    a.opt_ints("split")?
                } else {
                    None
                },
                from_input: opset >= 13,
                n_out: a.n_outputs(),
            })
        }
        "Slice" => Box::new(Slice {
            attrs: if opset < 10 {
                Some((
                    a.opt_ints("starts")?
                        .ok_or_else(|| a.err("starts", "required"))?,
                    a.opt_ints("ends")?
                        .ok_or_else(|| a.err("ends", "required"))?,
                    a.opt_ints("axes")?,
                ))
            } else {
                None
            },
        }),
        "Gather" => Box::new(Gather {
            axis: a.int("axis", 0)?,
        }),
        "Expand" => Box::new(Expand),
        "Shape" => Box::new(ShapeOp {
            start: if opset >= 15 { a.int("start", 0)? } else { 0 },
            end: if opset >= 15 { a.opt_int("end")? } else { None },
        }),
        "Size" => Box::new(Size),
        "ConstantOfShape" => Box::new(ConstantOfShape {
            value: match a.opt_tensor("value")? {
                Some(t) => t.clone(),
                None => Tensor::scalar_f32(0.0),
            },
        }),
        "Constant" => {
            let value = if let Some(t) = a.opt_tensor("value")? {
                t.clone()
            } else if let Some(f) = a.opt_float("value_float")? {
                Tensor::scalar_f32(f)
            } else if let Some(v) = a.opt_floats("value_floats")? {
                let n = v.len();
                Tensor::f32(&[n], v)?
            } else if let Some(i) = a.opt_int("value_int")? {
                Tensor::I64(ArrayD::from_elem(IxDyn(&[]), i))
            } else if let Some(v) = a.opt_ints("value_ints")? {
                Tensor::vec_i64(v)
            } else {
                return Err(a.err("value", "Constant without a supported value attribute (value, value_float(s), value_int(s))"));
            };
            Box::new(Constant { value })
        }
        "Range" => Box::new(Range),
        _ => return Ok(None),
    };
    Ok(Some(b))
}
