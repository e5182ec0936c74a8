//! Elementwise ops: unary math and activations, numpy-broadcast binary arithmetic and
//! comparisons, variadic Sum/Max/Min/Mean, Where, Cast, CastLike, Clip, Identity and inference
//! Dropout.

use super::{eval_err, input, Attrs, Op, OpError};
use crate::tensor::{DType, Tensor};
use ndarray::{ArrayD, IxDyn, Zip};

use crate::kernels::elementwise::{erf_f32, exp_f32};

/// Numpy broadcast of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let x = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let y = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if x == y || y == 1 {
            x
        } else if x == 1 {
            y
        } else {
            return None;
        };
    }
    Some(out)
}

/// Applies `f` to two arrays with numpy broadcasting.
pub fn zip_broadcast<T: Clone, U>(
    op: &str,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    f: impl Fn(&T, &T) -> U,
) -> Result<ArrayD<U>, OpError> {
    if a.shape() == b.shape() {
        return Ok(Zip::from(a).and(b).map_collect(&f));
    }
    let s = broadcast_shape(a.shape(), b.shape()).ok_or_else(|| {
        eval_err(
            op,
            format!("cannot broadcast {:?} with {:?}", a.shape(), b.shape()),
        )
    })?;
    let av = a
        .broadcast(IxDyn(&s))
        .ok_or_else(|| eval_err(op, "broadcast failed"))?;
    let bv = b
        .broadcast(IxDyn(&s))
        .ok_or_else(|| eval_err(op, "broadcast failed"))?;
    Ok(Zip::from(&av).and(&bv).map_collect(&f))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unary {
    Sqrt,
    Reciprocal,
    Exp,
    Log,
    Sin,
    Cos,
    Tanh,
    Sigmoid,
    Relu,
    Neg,
    Abs,
    Floor,
    Ceil,
    Erf,
    Softplus,
    LeakyRelu(f32),
    HardSigmoid(f32, f32),
    HardSwish,
    Gelu { tanh: bool },
    Clip(Option<f32>, Option<f32>),
}

impl Unary {
    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Sqrt => x.sqrt(),
            Unary::Reciprocal => 1.0 / x,
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Sin => x.sin(),
            Unary::Cos => x.cos(),
            Unary::Tanh => x.tanh(),
            Unary::Sigmoid => {
                if x >= 0.0 {
                    1.0 / (1.0 + exp_f32(-x))
                } else {
                    let e = exp_f32(x);
                    e / (1.0 + e)
                }
            }
            Unary::Relu => x.max(0.0),
            Unary::Neg => -x,
            Unary::Abs => x.abs(),
            Unary::Floor => x.floor(),
            Unary::Ceil => x.ceil(),
            Unary::Erf => erf_f32(x),
            Unary::Softplus => {
                if x > 20.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
            Unary::LeakyRelu(a) => {
                if x < 0.0 {
                    a * x
                } else {
                    x
                }
            }
            Unary::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Unary::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Unary::Gelu { tanh: false } => {
                0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
            }
            Unary::Gelu { tanh: true } => {
                let c = (2.0f32 / std::f32::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            Unary::Clip(lo, hi) => {
                let mut y = x;
                if let Some(l) = lo {
                    y = y.max(l);
                }
                if let Some(h) = hi {
                    y = y.min(h);
                }
                y
            }
        }
    }
}

#[derive(Debug)]
struct UnaryOp {
    name: String,
    f: Unary,
    /// Clip at opset ≥ 11 reads min/max from inputs 1 and 2.
    clip_inputs: bool,
}

impl Op for UnaryOp {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input(&self.name, inputs, 0)?;
        let mut f = self.f;
        if self.clip_inputs {
            f = clip_from_inputs(inputs)?;
        }
        // Integer inputs for the ops that accept them.
        match (x, f) {
            (Tensor::I64(a), Unary::Relu) => return Ok(vec![Tensor::I64(a.mapv(|v| v.max(0)))]),
            (Tensor::I64(a), Unary::Neg) => {
                return Ok(vec![Tensor::I64(a.mapv(|v| v.wrapping_neg()))])
            }
            (Tensor::I64(a), Unary::Abs) => {
                return Ok(vec![Tensor::I64(a.mapv(|v| v.wrapping_abs()))])
            }
            (Tensor::I64(a), Unary::Clip(lo, hi)) => {
                let lo = lo.map(|v| v as i64).unwrap_or(i64::MIN);
                let hi = hi.map(|v| v as i64).unwrap_or(i64::MAX);
                return Ok(vec![Tensor::I64(a.mapv(|v| v.max(lo).min(hi)))]);
            }
            // QDQ exports clip 2–7-bit codes stored as int8/uint8 (Q → Clip → DQ).
            (Tensor::I8(a), Unary::Clip(lo, hi)) => {
                let lo = lo.map_or(i8::MIN, |v| v as i8);
                let hi = hi.map_or(i8::MAX, |v| v as i8);
                return Ok(vec![Tensor::I8(a.mapv(|v| v.max(lo).min(hi)))]);
            }
            (Tensor::U8(a), Unary::Clip(lo, hi)) => {
                let lo = lo.map_or(u8::MIN, |v| v as u8);
                let hi = hi.map_or(u8::MAX, |v| v as u8);
                return Ok(vec![Tensor::U8(a.mapv(|v| v.max(lo).min(hi)))]);
            }
            (Tensor::I32(a), Unary::Clip(lo, hi)) => {
                let lo = lo.map_or(i32::MIN, |v| v as i32);
                let hi = hi.map_or(i32::MAX, |v| v as i32);
                return Ok(vec![Tensor::I32(a.mapv(|v| v.max(lo).min(hi)))]);
            }
            (Tensor::I32(a), Unary::Neg) => {
                return Ok(vec![Tensor::I32(a.mapv(|v| v.wrapping_neg()))])
            }
            (Tensor::F32(_), _) => {}
            (t, _) => {
                return Err(eval_err(
                    &self.name,
                    format!(
                        "input of type {} is not supported (float32 expected)",
                        t.dtype()
                    ),
                ))
            }
        }
        let a = x
            .as_f32()
            .ok_or_else(|| eval_err(&self.name, "float32 input expected"))?;
        let mut out = a.as_standard_layout().into_owned();
        unary_in_place(f, &mut out);
        Ok(vec![Tensor::F32(out)])
    }

    fn as_clamp(&self, consts: &[Option<&Tensor>]) -> Option<crate::kernels::conv::Clamp> {
        use crate::kernels::conv::Clamp;
        let f = if self.clip_inputs {
            clip_from_inputs(consts).ok()?
        } else {
            self.f
        };
        match f {
            Unary::Relu => Some(Clamp {
                lo: Some(0.0),
                hi: None,
            }),
            Unary::Clip(lo, hi) => Some(Clamp { lo, hi }),
            _ => None,
        }
    }

    fn eval_owned(&self, first: Tensor, rest: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        match first {
            Tensor::F32(mut a) => {
                let f = if self.clip_inputs {
                    clip_from_inputs(rest)?
                } else {
                    self.f
                };
                unary_in_place(f, &mut a);
                Ok(vec![Tensor::F32(a)])
            }
            other => {
                let mut ins = rest.to_vec();
                ins[0] = Some(&other);
                self.eval(&ins)
            }
        }
    }
}

/// Clip bounds at opset >= 11, read from the optional scalar inputs 1 (min) and 2 (max).
fn clip_from_inputs(inputs: &[Option<&Tensor>]) -> Result<Unary, OpError> {
    let scalar = |i: usize| -> Result<Option<f32>, OpError> {
        match inputs.get(i).copied().flatten() {
            None => Ok(None),
            Some(t) => {
                let v = t.to_f64_vec()?;
                if v.len() != 1 {
                    return Err(eval_err(
                        "Clip",
                        format!("min/max must be scalars, got shape {:?}", t.shape()),
                    ));
                }
                Ok(Some(v[0] as f32))
            }
        }
    };
    Ok(Unary::Clip(scalar(1)?, scalar(2)?))
}

/// Elements per parallel task in elementwise loops. Every element is computed independently,
/// so results do not depend on how the work is split.
const PAR_CHUNK: usize = 1 << 14;

fn map_in_place<F: Fn(f32) -> f32 + Sync>(a: &mut ArrayD<f32>, f: F) {
    use rayon::prelude::*;
    match a.as_slice_mut() {
        Some(s) if s.len() > PAR_CHUNK => s
            .par_chunks_mut(PAR_CHUNK)
            .for_each(|c| c.iter_mut().for_each(|v| *v = f(*v))),
        Some(s) => s.iter_mut().for_each(|v| *v = f(*v)),
        None => a.map_inplace(|v| *v = f(*v)),
    }
}

/// Applies a unary function in place, with one specialised loop per function.
fn unary_in_place(f: Unary, a: &mut ArrayD<f32>) {
    match f {
        Unary::Sqrt => map_in_place(a, |x| Unary::Sqrt.apply(x)),
        Unary::Reciprocal => map_in_place(a, |x| Unary::Reciprocal.apply(x)),
        Unary::Exp => map_in_place(a, |x| Unary::Exp.apply(x)),
        Unary::Log => map_in_place(a, |x| Unary::Log.apply(x)),
        Unary::Sin => map_in_place(a, |x| Unary::Sin.apply(x)),
        Unary::Cos => map_in_place(a, |x| Unary::Cos.apply(x)),
        Unary::Tanh => map_in_place(a, |x| Unary::Tanh.apply(x)),
        Unary::Sigmoid => map_in_place(a, |x| Unary::Sigmoid.apply(x)),
        Unary::Relu => map_in_place(a, |x| Unary::Relu.apply(x)),
        Unary::Neg => map_in_place(a, |x| Unary::Neg.apply(x)),
        Unary::Abs => map_in_place(a, |x| Unary::Abs.apply(x)),
        Unary::Floor => map_in_place(a, |x| Unary::Floor.apply(x)),
        Unary::Ceil => map_in_place(a, |x| Unary::Ceil.apply(x)),
        Unary::Erf => match a.as_slice_mut() {
            Some(s) => {
                use rayon::prelude::*;
                s.par_chunks_mut(PAR_CHUNK)
                    .for_each(crate::kernels::elementwise::erf_in_place)
            }
            None => a.map_inplace(|v| *v = Unary::Erf.apply(*v)),
        },
        Unary::Softplus => map_in_place(a, |x| Unary::Softplus.apply(x)),
        Unary::LeakyRelu(p) => map_in_place(a, |x| Unary::LeakyRelu(p).apply(x)),
        Unary::HardSigmoid(p, q) => map_in_place(a, |x| Unary::HardSigmoid(p, q).apply(x)),
        Unary::HardSwish => map_in_place(a, |x| Unary::HardSwish.apply(x)),
        Unary::Gelu { tanh } => map_in_place(a, |x| Unary::Gelu { tanh }.apply(x)),
        Unary::Clip(Some(lo), Some(hi)) => map_in_place(a, |x| x.max(lo).min(hi)),
        Unary::Clip(lo, hi) => map_in_place(a, |x| Unary::Clip(lo, hi).apply(x)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Mod { fmod: bool },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
}

#[derive(Debug)]
struct BinaryOp {
    name: String,
    f: Binary,
}

#[inline(always)]
fn bin_f32(f: Binary, x: f32, y: f32) -> f32 {
    match f {
        Binary::Add => x + y,
        Binary::Sub => x - y,
        Binary::Mul => x * y,
        Binary::Div => x / y,
        Binary::Pow => x.powf(y),
        Binary::Max => {
            if x.is_nan() || y.is_nan() {
                f32::NAN
            } else {
                x.max(y)
            }
        }
        Binary::Min => {
            if x.is_nan() || y.is_nan() {
                f32::NAN
            } else {
                x.min(y)
            }
        }
        Binary::Mod { .. } => x % y,
    }
}

fn bin_i64(f: Binary, x: i64, y: i64) -> i64 {
    match f {
        Binary::Add => x.wrapping_add(y),
        Binary::Sub => x.wrapping_sub(y),
        Binary::Mul => x.wrapping_mul(y),
        Binary::Div => {
            if y == 0 {
                0
            } else {
                x.wrapping_div(y)
            }
        }
        Binary::Pow => {
            if y < 0 {
                0
            } else {
                x.wrapping_pow(y.min(u32::MAX as i64) as u32)
            }
        }
        Binary::Max => x.max(y),
        Binary::Min => x.min(y),
        Binary::Mod { fmod } => {
            if y == 0 {
                0
            } else if fmod {
                x % y
            } else {
                x.rem_euclid(y) + if y < 0 && x.rem_euclid(y) != 0 { y } else { 0 }
            }
        }
    }
}

/// `out[i] = g(out[i], other[i])` with `other` broadcast to `out`'s shape (checked by the
/// caller), in parallel over fixed-size pieces for large arrays.
fn zip_in_place<G: Fn(f32, f32) -> f32 + Sync + Send>(
    out: &mut ArrayD<f32>,
    other: &ArrayD<f32>,
    g: G,
) -> Result<(), OpError> {
    if let (Some(o), Some(s)) = (out.as_slice_mut(), other.as_slice()) {
        if o.len() == s.len() {
            use rayon::prelude::*;
            o.par_chunks_mut(PAR_CHUNK)
                .zip(s.par_chunks(PAR_CHUNK))
                .for_each(|(o, s)| o.iter_mut().zip(s).for_each(|(x, &y)| *x = g(*x, y)));
            return Ok(());
        }
        if s.len() == 1 {
            let y = s[0];
            use rayon::prelude::*;
            o.par_chunks_mut(PAR_CHUNK)
                .for_each(|o| o.iter_mut().for_each(|x| *x = g(*x, y)));
            return Ok(());
        }
    }
    let view = other
        .broadcast(out.raw_dim())
        .ok_or_else(|| eval_err("broadcast", "broadcast failed"))?;
    let z = Zip::from(out).and(&view);
    if view.len() > PAR_CHUNK {
        z.par_for_each(|x, &y| *x = g(*x, y));
    } else {
        z.for_each(|x, &y| *x = g(*x, y));
    }
    Ok(())
}

fn is_scalar(t: &ArrayD<f32>, v: f32) -> bool {
    t.len() == 1 && t.iter().all(|&x| x == v)
}

/// `out = f(out, other)` (or `f(other, out)` when `swap`) elementwise, one specialised loop per
/// op. `other` must broadcast to `out`'s shape.
fn binary_in_place(
    f: Binary,
    out: &mut ArrayD<f32>,
    other: &ArrayD<f32>,
    swap: bool,
) -> Result<(), OpError> {
    macro_rules! go {
        ($g:expr) => {
            if swap {
                zip_in_place(out, other, |x, y| $g(y, x))
            } else {
                zip_in_place(out, other, $g)
            }
        };
    }
    match f {
        Binary::Add => go!(|x: f32, y: f32| x + y),
        Binary::Sub => go!(|x: f32, y: f32| x - y),
        Binary::Mul => go!(|x: f32, y: f32| x * y),
        Binary::Div => go!(|x: f32, y: f32| x / y),
        // x² is exactly rounded; powf(x, 2) is too on every libm we know, so this is the same.
        Binary::Pow if !swap && is_scalar(other, 2.0) => go!(|x: f32, _y: f32| x * x),
        f => go!(|x: f32, y: f32| bin_f32(f, x, y)),
    }
}

/// Float32 binary op with broadcasting through the in-place loops, when the output has the shape
/// of one of the operands (the common case); `None` otherwise.
fn binary_f32_fast(
    name: &str,
    f: Binary,
    x: &ArrayD<f32>,
    y: &ArrayD<f32>,
) -> Result<Option<ArrayD<f32>>, OpError> {
    let Some(s) = broadcast_shape(x.shape(), y.shape()) else {
        return Err(eval_err(
            name,
            format!("cannot broadcast {:?} with {:?}", x.shape(), y.shape()),
        ));
    };
    if s == x.shape() {
        let mut out = x.as_standard_layout().into_owned();
        binary_in_place(f, &mut out, y, false)?;
        Ok(Some(out))
    } else if s == y.shape() {
        let mut out = y.as_standard_layout().into_owned();
        binary_in_place(f, &mut out, x, true)?;
        Ok(Some(out))
    } else {
        Ok(None)
    }
}

/// Applies a binary arithmetic op with broadcasting to two tensors.
fn binary(name: &str, f: Binary, a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    Ok(match (a, b) {
        (Tensor::F32(x), Tensor::F32(y)) => match binary_f32_fast(name, f, x, y)? {
            Some(out) => Tensor::F32(out),
            None => Tensor::F32(zip_broadcast(name, x, y, |&p, &q| bin_f32(f, p, q))?),
        },
        (Tensor::F32(x), other) if f == Binary::Pow => {
            let y = other.to_f32()?;
            Tensor::F32(zip_broadcast(name, x, &y, |&p, &q| bin_f32(f, p, q))?)
        }
        (Tensor::F64(x), Tensor::F64(y)) => Tensor::F64(zip_broadcast(name, x, y, |&p, &q| {
            bin_f32(f, p as f32, q as f32) as f64
        })?),
        (Tensor::I64(x), Tensor::I64(y)) => {
            Tensor::I64(zip_broadcast(name, x, y, |&p, &q| bin_i64(f, p, q))?)
        }
        (Tensor::I32(x), Tensor::I32(y)) => Tensor::I32(zip_broadcast(name, x, y, |&p, &q| {
            bin_i64(f, p as i64, q as i64) as i32
        })?),
        (Tensor::I64(x), Tensor::I32(_)) | (Tensor::I64(x), Tensor::F32(_)) if f == Binary::Pow => {
            let y = b.to_i64()?;
            Tensor::I64(zip_broadcast(name, x, &y, |&p, &q| bin_i64(f, p, q))?)
        }
        _ => {
            return Err(eval_err(
                name,
                format!("unsupported input types {} and {}", a.dtype(), b.dtype()),
            ))
        }
    })
}

impl Op for BinaryOp {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let a = input(&self.name, inputs, 0)?;
        let b = input(&self.name, inputs, 1)?;
        Ok(vec![binary(&self.name, self.f, a, b)?])
    }

    fn eval_owned(&self, first: Tensor, rest: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let b = input(&self.name, rest, 1)?;
        match (first, b) {
            (Tensor::F32(mut x), Tensor::F32(y))
                if broadcast_shape(x.shape(), y.shape()).as_deref() == Some(x.shape()) =>
            {
                binary_in_place(self.f, &mut x, y, false)?;
                Ok(vec![Tensor::F32(x)])
            }
            (other, _) => {
                let out = binary(&self.name, self.f, &other, b)?;
                super::recycle(other);
                Ok(vec![out])
            }
        }
    }
}

#[derive(Debug)]
struct Variadic {
    name: String,
    f: Binary,
    mean: bool,
}

impl Op for Variadic {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let mut acc = input(&self.name, inputs, 0)?.clone();
        for t in inputs.iter().skip(1).flatten() {
            acc = binary(&self.name, self.f, &acc, t)?;
        }
        if self.mean {
            let n = inputs.iter().flatten().count() as f32;
            acc = binary(&self.name, Binary::Div, &acc, &Tensor::scalar_f32(n))?;
        }
        Ok(vec![acc])
    }
}

#[derive(Debug)]
struct CmpOp {
    name: String,
    f: Cmp,
}

fn is_integral(t: &Tensor) -> bool {
    matches!(
        t,
        Tensor::I64(_) | Tensor::I32(_) | Tensor::I8(_) | Tensor::U8(_) | Tensor::Bool(_)
    )
}

impl Op for CmpOp {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let a = input(&self.name, inputs, 0)?;
        let b = input(&self.name, inputs, 1)?;
        let f = self.f;
        fn c<T: PartialOrd>(f: Cmp, x: &T, y: &T) -> bool {
            match f {
                Cmp::Equal => x == y,
                Cmp::Less => x < y,
                Cmp::Greater => x > y,
                Cmp::LessOrEqual => x <= y,
                Cmp::GreaterOrEqual => x >= y,
            }
        }
        let out = if is_integral(a) && is_integral(b) {
            zip_broadcast(&self.name, &a.to_i64()?, &b.to_i64()?, |x, y| c(f, x, y))?
        } else {
            let x = ArrayD::from_shape_vec(IxDyn(a.shape()), a.to_f64_vec()?)
                .map_err(|e| eval_err(&self.name, e.to_string()))?;
            let y = ArrayD::from_shape_vec(IxDyn(b.shape()), b.to_f64_vec()?)
                .map_err(|e| eval_err(&self.name, e.to_string()))?;
            zip_broadcast(&self.name, &x, &y, |p, q| c(f, p, q))?
        };
        Ok(vec![Tensor::Bool(out)])
    }
}

#[derive(Debug)]
struct Logic {
    name: String,
}

impl Op for Logic {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let a = input(&self.name, inputs, 0)?;
        let Tensor::Bool(x) = a else {
            return Err(eval_err(&self.name, "bool input expected"));
        };
        if self.name == "Not" {
            return Ok(vec![Tensor::Bool(x.mapv(|v| !v))]);
        }
        let Some(Tensor::Bool(y)) = inputs.get(1).copied().flatten() else {
            return Err(eval_err(&self.name, "bool input 1 expected"));
        };
        let out = match self.name.as_str() {
            "And" => zip_broadcast(&self.name, x, y, |p, q| *p && *q)?,
            "Or" => zip_broadcast(&self.name, x, y, |p, q| *p || *q)?,
            _ => zip_broadcast(&self.name, x, y, |p, q| *p ^ *q)?,
        };
        Ok(vec![Tensor::Bool(out)])
    }
}

#[derive(Debug)]
struct WhereOp;

fn where3<T: Clone>(c: &ArrayD<bool>, x: &ArrayD<T>, y: &ArrayD<T>) -> Result<ArrayD<T>, OpError> {
    let s = broadcast_shape(c.shape(), x.shape())
        .and_then(|s| broadcast_shape(&s, y.shape()))
        .ok_or_else(|| {
            eval_err(
                "Where",
                format!(
                    "cannot broadcast {:?}, {:?}, {:?}",
                    c.shape(),
                    x.shape(),
                    y.shape()
                ),
            )
        })?;
    let d = IxDyn(&s);
    let (cv, xv, yv) = match (
        c.broadcast(d.clone()),
        x.broadcast(d.clone()),
        y.broadcast(d),
    ) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => return Err(eval_err("Where", "broadcast failed")),
    };
    Ok(Zip::from(&cv)
        .and(&xv)
        .and(&yv)
        .map_collect(|&c, a, b| if c { a.clone() } else { b.clone() }))
}

impl Op for WhereOp {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let Tensor::Bool(c) = input("Where", inputs, 0)? else {
            return Err(eval_err("Where", "condition must be bool"));
        };
        let x = input("Where", inputs, 1)?;
        let y = input("Where", inputs, 2)?;
        Ok(vec![match (x, y) {
            (Tensor::F32(a), Tensor::F32(b)) => Tensor::F32(where3(c, a, b)?),
            (Tensor::I64(a), Tensor::I64(b)) => Tensor::I64(where3(c, a, b)?),
            (Tensor::I32(a), Tensor::I32(b)) => Tensor::I32(where3(c, a, b)?),
            (Tensor::Bool(a), Tensor::Bool(b)) => Tensor::Bool(where3(c, a, b)?),
            _ => {
                return Err(eval_err(
                    "Where",
                    format!("unsupported types {} and {}", x.dtype(), y.dtype()),
                ))
            }
        }])
    }
}

#[derive(Debug)]
struct CastOp {
    to: DType,
}

/// Converts a tensor to another compute dtype with ONNX Cast semantics (float → int truncates,
/// saturating at the type's range; nonzero → true).
pub fn cast(t: &Tensor, to: DType) -> Result<Tensor, OpError> {
    if t.dtype() == to {
        return Ok(t.clone());
    }
    Ok(match to {
        DType::F32 => Tensor::F32(t.to_f32()?),
        DType::F64 => Tensor::F64(t.to_f32()?.mapv(|v| v as f64)),
        DType::I64 => Tensor::I64(t.to_i64()?),
        DType::I32 => Tensor::I32(t.to_i64()?.mapv(|v| v as i32)),
        DType::I8 => Tensor::I8(t.to_f32()?.mapv(|v| v as i8)),
        DType::U8 => Tensor::U8(t.to_f32()?.mapv(|v| v as u8)),
        DType::Bool => Tensor::Bool(t.to_f32()?.mapv(|v| v != 0.0)),
        other => {
            return Err(eval_err(
                "Cast",
                format!("cast to {other} is not supported"),
            ))
        }
    })
}

impl Op for CastOp {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        Ok(vec![cast(input("Cast", inputs, 0)?, self.to)?])
    }
}

/// CastLike: Cast input 0 to the element type of input 1 (same conversions as Cast).
#[derive(Debug)]
struct CastLikeOp;

impl Op for CastLikeOp {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("CastLike", inputs, 0)?;
        let like = input("CastLike", inputs, 1)?;
        let to = like.dtype();
        if !matches!(
            to,
            DType::F32 | DType::F64 | DType::I64 | DType::I32 | DType::I8 | DType::U8 | DType::Bool
        ) {
            return Err(eval_err(
                "CastLike",
                format!("cast to {to} is not supported"),
            ));
        }
        Ok(vec![cast(x, to)?])
    }
}

#[derive(Debug)]
struct IdentityOp {
    /// Dropout also returns an all-true mask.
    mask: bool,
}

impl Op for IdentityOp {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input("Identity", inputs, 0)?.clone();
        self.eval_owned(x, &[])
    }

    fn eval_owned(&self, x: Tensor, _: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        if self.mask {
            let m = Tensor::Bool(ArrayD::from_elem(IxDyn(x.shape()), true));
            return Ok(vec![x, m]);
        }
        Ok(vec![x])
    }
}

/// Builds an elementwise op, or `None` if `op` is not in this family.
pub fn build(op: &str, a: &Attrs) -> Result<Option<Box<dyn Op>>, OpError> {
    let unary = |f: Unary| -> Result<Option<Box<dyn Op>>, OpError> {
        Ok(Some(Box::new(UnaryOp {
            name: op.to_string(),
            f,
            clip_inputs: false,
        })))
    };
    let bin = |f: Binary| -> Result<Option<Box<dyn Op>>, OpError> {
        Ok(Some(Box::new(BinaryOp {
            name: op.to_string(),
            f,
        })))
    };
    let cmp = |f: Cmp| -> Result<Option<Box<dyn Op>>, OpError> {
        Ok(Some(Box::new(CmpOp {
            name: op.to_string(),
            f,
        })))
    };
    let var = |f: Binary, mean: bool| -> Result<Option<Box<dyn Op>>, OpError> {
        Ok(Some(Box::new(Variadic {
            name: op.to_string(),
            f,
            mean,
        })))
    };
    let opset = a.opset();
    if opset < 6 && a.has("consumed_inputs") {
        return Err(a.err(
            "consumed_inputs",
            "legacy opset < 6 attribute is not supported",
        ));
    }
    match op {
        "Sqrt" => unary(Unary::Sqrt),
        "Reciprocal" => unary(Unary::Reciprocal),
        "Exp" => unary(Unary::Exp),
        "Log" => unary(Unary::Log),
        "Sin" => unary(Unary::Sin),
        "Cos" => unary(Unary::Cos),
        "Tanh" => unary(Unary::Tanh),
        "Sigmoid" => unary(Unary::Sigmoid),
        "Relu" => unary(Unary::Relu),
        "Neg" => unary(Unary::Neg),
        "Abs" => unary(Unary::Abs),
        "Floor" => unary(Unary::Floor),
        "Ceil" => unary(Unary::Ceil),
        "Erf" => unary(Unary::Erf),
        "Softplus" => unary(Unary::Softplus),
        "LeakyRelu" => unary(Unary::LeakyRelu(a.float("alpha", 0.01)?)),
        "HardSigmoid" => unary(Unary::HardSigmoid(
            a.float("alpha", 0.2)?,
            a.float("beta", 0.5)?,
        )),
        "HardSwish" => unary(Unary::HardSwish),
        "Gelu" => {
            let approx = a.string("approximate", "none")?;
            match approx.as_str() {
                "none" => unary(Unary::Gelu { tanh: false }),
                "tanh" => unary(Unary::Gelu { tanh: true }),
                other => Err(a.err("approximate", format!("unknown value '{other}'"))),
            }
        }
        "Clip" => {
            if opset < 11 {
                let lo = a.float("min", f32::MIN)?;
                let hi = a.float("max", f32::MAX)?;
                unary(Unary::Clip(Some(lo), Some(hi)))
            } else {
                Ok(Some(Box::new(UnaryOp {
                    name: op.to_string(),
                    f: Unary::Clip(None, None),
                    clip_inputs: true,
                })))
            }
        }
        "Add" | "Sub" | "Mul" | "Div" if opset < 7 && a.has("broadcast") => Err(a.err(
            "broadcast",
            "legacy opset < 7 broadcasting is not supported",
        )),
        "Add" => bin(Binary::Add),
        "Sub" => bin(Binary::Sub),
        "Mul" => bin(Binary::Mul),
        "Div" => bin(Binary::Div),
        "Pow" => bin(Binary::Pow),
        "Mod" => bin(Binary::Mod {
            fmod: a.int("fmod", 0)? != 0,
        }),
        "Equal" => cmp(Cmp::Equal),
        "Less" => cmp(Cmp::Less),
        "Greater" => cmp(Cmp::Greater),
        "LessOrEqual" => cmp(Cmp::LessOrEqual),
        "GreaterOrEqual" => cmp(Cmp::GreaterOrEqual),
        "Not" | "And" | "Or" | "Xor" => Ok(Some(Box::new(Logic {
            name: op.to_string(),
        }))),
        "Sum" => var(Binary::Add, false),
        "Mean" => var(Binary::Add, true),
        "Max" => var(Binary::Max, false),
        "Min" => var(Binary::Min, false),
        "Where" => Ok(Some(Box::new(WhereOp))),
        "CastLike" if opset < 15 => Ok(None),
        "CastLike" => {
            if a.int("saturate", 1)? != 1 {
                return Err(a.err("saturate", "only saturate=1 is supported"));
            }
            if a.has("round_mode") {
                return Err(a.err("round_mode", "not supported"));
            }
            Ok(Some(Box::new(CastLikeOp)))
        }
        "Cast" => {
            let to = a.int("to", 0)?;
            if opset >= 19 && a.int("saturate", 1)? != 1 {
                return Err(a.err("saturate", "only saturate=1 is supported"));
            }
            if opset >= 21 && a.has("round_mode") {
                return Err(a.err("round_mode", "not supported"));
            }
            let to = DType::from_code(to as i32)
                .ok_or_else(|| a.err("to", format!("unknown data type {to}")))?;
            if !matches!(
                to,
                DType::F32
                    | DType::F64
                    | DType::I64
                    | DType::I32
                    | DType::I8
                    | DType::U8
                    | DType::Bool
            ) {
                return Err(a.err("to", format!("cast to {to} is not supported")));
            }
            Ok(Some(Box::new(CastOp { to })))
        }
        "Identity" => Ok(Some(Box::new(IdentityOp { mask: false }))),
        "Dropout" => {
            if opset < 7 {
                if a.int("is_test", 0)? == 0 {
                    return Err(a.err("is_test", "training-mode Dropout is not supported"));
                }
            } else if opset < 12 {
                a.float("ratio", 0.5)?;
            } else if a.has("seed") {
                a.int("seed", 0)?;
            }
            Ok(Some(Box::new(IdentityOp { mask: true })))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shape(&[2, 1, 3], &[4, 1]), Some(vec![2, 4, 3]));
        assert_eq!(broadcast_shape(&[2], &[3]), None);
        let a = Tensor::f32(&[2, 1], vec![1.0, 2.0]).expect("a");
        let b = Tensor::f32(&[3], vec![10.0, 20.0, 30.0]).expect("b");
        let r = binary("Add", Binary::Add, &a, &b).expect("add");
        assert_eq!(
            r.to_f32().expect("f").iter().copied().collect::<Vec<_>>(),
            vec![11., 21., 31., 12., 22., 32.]
        );
    }
}
