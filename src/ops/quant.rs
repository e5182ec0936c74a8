//! Quantization ops. ONNX QuantizeLinear/DequantizeLinear (per-tensor, per-axis and blocked;
//! integer outputs of 2–16 bits and the FP8/FP4 types) and the QONNX custom ops Quant
//! (IntQuant), FloatQuant, BipolarQuant and Trunc from the `qonnx.custom_op.general`, `onnx.brevitas`
//! and `finn.custom_op.general` domains. All rounding and grid arithmetic uses the
//! `quant-formats` crate so mfq's own quantizers and these ops agree bit for bit.

use super::{axis, eval_err, input, input_f32, Attrs, Op, OpError};
use crate::tensor::{make_array, DType, Tensor};
use ndarray::{ArrayD, IxDyn};
use quant_formats::{FloatFormat, Format, IntFormat, Overflow, Quantizer, Rounding, Specials};

/// Broadcasts a parameter tensor to `shape` (numpy rules) and returns it flattened.
fn broadcast_param(op: &str, p: &ArrayD<f32>, shape: &[usize]) -> Result<Vec<f32>, OpError> {
    if p.len() == 1 {
        return Ok(vec![
            p.iter().next().copied().unwrap_or(0.0);
            shape.iter().product()
        ]);
    }
    let v = p.broadcast(IxDyn(shape)).ok_or_else(|| {
        eval_err(
            op,
            format!(
                "parameter of shape {:?} does not broadcast to {shape:?}",
                p.shape()
            ),
        )
    })?;
    Ok(v.iter().copied().collect())
}

/// Expands an ONNX Q/DQ scale or zero point (scalar, 1-D per-axis, or blocked) to one value per
/// element of `shape`.
fn expand_qdq(
    op: &str,
    p: &[f64],
    pshape: &[usize],
    shape: &[usize],
    ax: usize,
    block: usize,
) -> Result<Vec<f64>, OpError> {
    let n: usize = shape.iter().product();
    if p.len() == 1 && block == 0 {
        return Ok(vec![p[0]; n]);
    }
    let inner: usize = shape[ax + 1..].iter().product();
    let dim = shape[ax];
    if block == 0 {
        if pshape.len() != 1 || pshape[0] != dim {
            return Err(eval_err(
                op,
                format!(
                    "per-axis parameter shape {pshape:?} does not match axis {ax} of {shape:?}"
                ),
            ));
        }
        return Ok((0..n).map(|i| p[(i / inner) % dim]).collect());
    }
    // Blocked: the parameter has the input's shape with axis `ax` divided (rounded up) by block.
    if pshape.len() != shape.len() || pshape[ax] != dim.div_ceil(block) {
        return Err(eval_err(
            op,
            format!(
                "blocked parameter shape {pshape:?} does not match {shape:?} with block {block}"
            ),
        ));
    }
    let outer_stride = inner * dim;
    let pinner = inner;
    let pdim = pshape[ax];
    Ok((0..n)
        .map(|i| {
            let o = i / outer_stride;
            let a = (i / inner) % dim;
            let r = i % inner;
            p[(o * pdim + a / block) * pinner + r]
        })
        .collect())
}

fn int_range(dt: DType) -> Option<(i64, i64, u32)> {
    Some(match dt {
        DType::U8 => (0, 255, 8),
        DType::I8 => (-128, 127, 8),
        DType::U16 => (0, 65535, 16),
        DType::I16 => (-32768, 32767, 16),
        DType::U4 => (0, 15, 4),
        DType::I4 => (-8, 7, 4),
        DType::U2 => (0, 3, 2),
        DType::I2 => (-2, 1, 2),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64, 32),
        _ => return None,
    })
}

fn float_format(dt: DType, saturate: bool) -> Option<FloatFormat> {
    let (e, m, bias, specials) = match dt {
        DType::F8E4M3Fn => (4, 3, 7, Specials::Fn),
        DType::F8E4M3Fnuz => (4, 3, 8, Specials::Fnuz),
        DType::F8E5M2 => (5, 2, 15, Specials::Ieee),
        DType::F8E5M2Fnuz => (5, 2, 16, Specials::Fnuz),
        DType::F4E2M1 => (2, 1, 1, Specials::None),
        _ => return None,
    };
    Some(FloatFormat {
        exp_bits: e,
        man_bits: m,
        bias,
        signed: true,
        subnormals: true,
        specials,
        overflow: if saturate {
            Overflow::Saturate
        } else {
            Overflow::NonSaturating
        },
    })
}

/// Packs integer codes of a 2–16-bit type into little-endian storage.
fn pack_ints(dt: DType, q: &[i64], shape: &[usize]) -> Result<Tensor, OpError> {
    Ok(match dt {
        DType::U8 => Tensor::U8(make_array(shape, q.iter().map(|&v| v as u8).collect())?),
        DType::I8 => Tensor::I8(make_array(shape, q.iter().map(|&v| v as i8).collect())?),
        DType::I32 => Tensor::I32(make_array(shape, q.iter().map(|&v| v as i32).collect())?),
        DType::U16 | DType::I16 => Tensor::Packed {
            dtype: dt,
            shape: shape.to_vec(),
            data: q.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect(),
            strings: Vec::new(),
        },
        _ => {
            let bits = dt.bits() as u32;
            let mask = (1u32 << bits) - 1;
            let codes: Vec<u32> = q.iter().map(|&v| (v as u32) & mask).collect();
            let data = quant_formats::pack_codes(&codes, bits)
                .map_err(|e| eval_err("QuantizeLinear", e.to_string()))?;
            Tensor::Packed {
                dtype: dt,
                shape: shape.to_vec(),
                data,
                strings: Vec::new(),
            }
        }
    })
}

#[derive(Debug)]
struct QuantizeLinear {
    axis: i64,
    block: usize,
    saturate: bool,
    output_dtype: Option<DType>,
}

impl Op for QuantizeLinear {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        const OP: &str = "QuantizeLinear";
        let x = input_f32(OP, inputs, 0)?;
        let s = input(OP, inputs, 1)?;
        let zp = inputs.get(2).copied().flatten();
        let dt = zp
            .map(|z| z.dtype())
            .or(self.output_dtype)
            .unwrap_or(DType::U8);
        let shape = x.shape().to_vec();
        let ax = if shape.is_empty() {
            0
        } else {
            axis(OP, self.axis, shape.len())?
        };
        let sv = expand_qdq(OP, &s.to_f64_vec()?, s.shape(), &shape, ax, self.block)?;
        let zv = match zp {
            Some(z) => expand_qdq(OP, &z.to_f64_vec()?, z.shape(), &shape, ax, self.block)?,
            None => vec![0.0; sv.len()],
        };
        if let Some((lo, hi, _)) = int_range(dt) {
            let q: Vec<i64> = x
                .iter()
                .zip(sv.iter().zip(&zv))
                .map(|(&v, (&sc, &z))| {
                    // x / y_scale in float32, as ONNX defines it (and onnxruntime computes
                    // it): a float64 quotient rounds differently at exact half steps.
                    let r = f64::from(v / sc as f32).round_ties_even();
                    let r = if r.is_nan() { 0.0 } else { r };
                    ((r + z) as i64).clamp(lo, hi)
                })
                .collect();
            return Ok(vec![pack_ints(dt, &q, &shape)?]);
        }
        let ff = Format::Float(
            float_format(dt, self.saturate)
                .ok_or_else(|| eval_err(OP, format!("output type {dt} is not supported")))?,
        );
        let codes: Vec<u32> = x
            .iter()
            .zip(sv.iter().zip(&zv))
            .map(|(&v, (&sc, &z))| ff.encode((v / sc as f32) + z as f32))
            .collect();
        let data = if dt == DType::F4E2M1 {
            quant_formats::pack_codes(&codes, 4).map_err(|e| eval_err(OP, e.to_string()))?
        } else {
            codes.iter().map(|&c| c as u8).collect()
        };
        Ok(vec![Tensor::Packed {
            dtype: dt,
            shape,
            data,
            strings: Vec::new(),
        }])
    }
}

#[derive(Debug)]
struct DequantizeLinear {
    axis: i64,
    block: usize,
}

impl Op for DequantizeLinear {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        const OP: &str = "DequantizeLinear";
        let x = input(OP, inputs, 0)?;
        let s = input(OP, inputs, 1)?;
        let shape = x.shape().to_vec();
        let ax = if shape.is_empty() {
            0
        } else {
            axis(OP, self.axis, shape.len())?
        };
        let xv = x.to_f64_vec()?;
        let sv = expand_qdq(OP, &s.to_f64_vec()?, s.shape(), &shape, ax, self.block)?;
        let zv = match inputs.get(2).copied().flatten() {
            Some(z) => expand_qdq(OP, &z.to_f64_vec()?, z.shape(), &shape, ax, self.block)?,
            None => vec![0.0; sv.len()],
        };
        let y: Vec<f32> = xv
            .iter()
            .zip(sv.iter().zip(&zv))
            .map(|(&q, (&sc, &z))| ((q - z) as f32) * sc as f32)
            .collect();
        Ok(vec![Tensor::F32(make_array(&shape, y)?)])
    }
}

/// QONNX Quant / IntQuant: `y = s · (clip(round(x/s + z), qmin, qmax) − z)`.
#[derive(Debug)]
struct IntQuant {
    signed: bool,
    narrow: bool,
    rounding: Rounding,
}

impl Op for IntQuant {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        const OP: &str = "Quant";
        let x = input_f32(OP, inputs, 0)?;
        let shape = x.shape().to_vec();
        let s = broadcast_param(OP, &*input_f32(OP, inputs, 1)?, &shape)?;
        let z = broadcast_param(OP, &*input_f32(OP, inputs, 2)?, &shape)?;
        let bw = input_f32(OP, inputs, 3)?;
        let bits = bw.iter().next().copied().unwrap_or(0.0);
        if bw.len() != 1 || bits.fract() != 0.0 || !(2.0..=16.0).contains(&bits) {
            return Err(eval_err(
                OP,
                format!("bit width {bits} is not supported (scalar integer 2..16 required)"),
            ));
        }
        let fmt = Format::Int(IntFormat {
            bits: bits as u8,
            signed: self.signed,
            narrow: self.narrow,
        });
        let q = Quantizer::new(&fmt, self.rounding);
        let y: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| (q.quantize_one(v / s[i] + z[i], i as u64) - z[i]) * s[i])
            .collect();
        Ok(vec![Tensor::F32(make_array(&shape, y)?)])
    }
}

/// QONNX FloatQuant: `y = s · clip(Q_ExMy(x/s), −max_val, max_val)`.
#[derive(Debug)]
struct FloatQuant {
    has_inf: bool,
    subnormals: bool,
    rounding: Rounding,
    saturate: bool,
}

impl Op for FloatQuant {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        const OP: &str = "FloatQuant";
        let x = input_f32(OP, inputs, 0)?;
        let shape = x.shape().to_vec();
        let s = broadcast_param(OP, &*input_f32(OP, inputs, 1)?, &shape)?;
        let scalar = |i: usize, what: &str| -> Result<f32, OpError> {
            let a = input_f32(OP, inputs, i)?;
            if a.len() != 1 {
                return Err(eval_err(OP, format!("{what} must be a scalar")));
            }
            Ok(a.iter().next().copied().unwrap_or(0.0))
        };
        let (e, m, b, mx) = (
            scalar(2, "exponent_bitwidth")?,
            scalar(3, "mantissa_bitwidth")?,
            scalar(4, "exponent_bias")?,
            scalar(5, "max_val")?,
        );
        if e.fract() != 0.0
            || m.fract() != 0.0
            || b.fract() != 0.0
            || !(0.0..=8.0).contains(&e)
            || !(0.0..=10.0).contains(&m)
        {
            return Err(eval_err(
                OP,
                format!("format E{e}M{m} bias {b} is not supported"),
            ));
        }
        let fmt = Format::Float(FloatFormat {
            exp_bits: e as u8,
            man_bits: m as u8,
            bias: b as i32,
            signed: true,
            subnormals: self.subnormals,
            specials: Specials::None,
            overflow: Overflow::Saturate,
        });
        let q = Quantizer::new(&fmt, self.rounding);
        let y: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let r = q.quantize_one(v / s[i], i as u64);
                let r = if self.saturate {
                    r.clamp(-mx, mx)
                } else if r.abs() > mx {
                    if self.has_inf {
                        r.signum() * f32::INFINITY
                    } else {
                        f32::NAN
                    }
                } else {
                    r
                };
                r * s[i]
            })
            .collect();
        Ok(vec![Tensor::F32(make_array(&shape, y)?)])
    }
}

/// QONNX BipolarQuant: `y = s · (x ≥ 0 ? 1 : −1)`.
#[derive(Debug)]
struct BipolarQuant;

impl Op for BipolarQuant {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        const OP: &str = "BipolarQuant";
        let x = input_f32(OP, inputs, 0)?;
        let shape = x.shape().to_vec();
        let s = broadcast_param(OP, &*input_f32(OP, inputs, 1)?, &shape)?;
        let y: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| if v >= 0.0 { s[i] } else { -s[i] })
            .collect();
        Ok(vec![Tensor::F32(make_array(&shape, y)?)])
    }
}

/// Integer rounding of QONNX Trunc (`rounding_mode`, the modes qonnx 1.0 accepts for it).
#[derive(Debug, Clone, Copy, PartialEq)]
enum TruncRounding {
    /// `ROUND` / `HALF_EVEN`: nearest, ties to even.
    HalfEven,
    /// `FLOOR`.
    Floor,
    /// `CEIL`.
    Ceil,
}

impl TruncRounding {
    fn apply(self, v: f32) -> f32 {
        match self {
            TruncRounding::HalfEven => v.round_ties_even(),
            TruncRounding::Floor => v.floor(),
            TruncRounding::Ceil => v.ceil(),
        }
    }
}

/// QONNX Trunc, truncating the low bits of an already-quantized integer tensor (Brevitas
/// `TruncIntQuant`). Arithmetic follows qonnx 1.0's `trunc_v1` / `trunc_v2` step by step in
/// float32:
/// - version 1 (domain opset 1; inputs x, scale, zeropt, in_bits, out_bits):
///   `q = round(x/s + z)`, `y = (rnd(q / 2^(in_bits − out_bits)) − z) · s`;
/// - version 2 (domain opset ≥ 2; inputs x, scale, zeropt, in_bits, out_scale, out_bits):
///   `t = 2^round(log2(out_scale / s))`, `q = clip(round(x/s + z) / t, min_int, max_int)` of the
///   output bit width, `y = (rnd(q) − z/t) · out_scale`.
#[derive(Debug)]
struct Trunc {
    v2: bool,
    signed: bool,
    narrow: bool,
    rounding: TruncRounding,
}

impl Op for Trunc {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        const OP: &str = "Trunc";
        let x = input_f32(OP, inputs, 0)?;
        let shape = x.shape().to_vec();
        let s = broadcast_param(OP, &*input_f32(OP, inputs, 1)?, &shape)?;
        let z = broadcast_param(OP, &*input_f32(OP, inputs, 2)?, &shape)?;
        let scalar = |i: usize, what: &str| -> Result<f32, OpError> {
            let t = input_f32(OP, inputs, i)?;
            match t.iter().next() {
                Some(&v) if t.len() == 1 => Ok(v),
                _ => Err(eval_err(
                    OP,
                    format!(
                        "{what} (input {i}) must be a scalar, got shape {:?}",
                        t.shape()
                    ),
                )),
            }
        };
        let in_bits = scalar(3, "input bit width")?;
        let r = self.rounding;
        let y: Vec<f32> = if !self.v2 {
            let out_bits = scalar(4, "output bit width")?;
            let t = 2f32.powf(in_bits - out_bits);
            x.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let q = (v / s[i] + z[i]).round_ties_even() / t;
                    (r.apply(q) - z[i]) * s[i]
                })
                .collect()
        } else {
            let os = broadcast_param(OP, &*input_f32(OP, inputs, 4)?, &shape)?;
            let out_bits = scalar(5, "output bit width")?;
            if out_bits.fract() != 0.0 || !(1.0..=32.0).contains(&out_bits) {
                return Err(eval_err(
                    OP,
                    format!("output bit width {out_bits} is not an integer in 1..32"),
                ));
            }
            let b = out_bits as i32;
            let (lo, hi) = match (self.signed, self.narrow) {
                (true, true) => (1.0 - 2f64.powi(b - 1), 2f64.powi(b - 1) - 1.0),
                (true, false) => (-(2f64.powi(b - 1)), 2f64.powi(b - 1) - 1.0),
                (false, true) => (0.0, 2f64.powi(b) - 2.0),
                (false, false) => (0.0, 2f64.powi(b) - 1.0),
            };
            let (lo, hi) = (lo as f32, hi as f32);
            x.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let t = 2f32.powf((os[i] / s[i]).log2().round_ties_even());
                    let mut q = (v / s[i] + z[i]).round_ties_even() / t;
                    if q > hi {
                        q = hi;
                    }
                    if q < lo {
                        q = lo;
                    }
                    (r.apply(q) - z[i] / t) * os[i]
                })
                .collect()
        };
        Ok(vec![Tensor::F32(make_array(&shape, y)?)])
    }
}

fn rounding(a: &Attrs, default: &str) -> Result<Rounding, OpError> {
    let r = a.string("rounding_mode", default)?;
    r.parse::<Rounding>()
        .map_err(|e| a.err("rounding_mode", e.to_string()))
}

/// Builds an ONNX-domain quantization op, or `None` if `op` is not in this family.
pub fn build_onnx(op: &str, a: &Attrs) -> Result<Option<Box<dyn Op>>, OpError> {
    let opset = a.opset();
    let block = if opset >= 21 {
        a.int("block_size", 0)?
    } else {
        0
    };
    if block < 0 {
        return Err(a.err("block_size", format!("must be >= 0, got {block}")));
    }
    let b: Box<dyn Op> = match op {
        "QuantizeLinear" => {
            let saturate = if opset >= 19 {
                a.int("saturate", 1)? != 0
            } else {
                true
            };
            let output_dtype = if opset >= 21 {
                match a.int("output_dtype", 0)? {
                    0 => None,
                    c => Some(
                        DType::from_code(c as i32)
                            .ok_or_else(|| a.err("output_dtype", format!("unknown type {c}")))?,
                    ),
                }
            } else {
                None
            };
            if opset >= 23 && a.has("precision") {
                return Err(a.err("precision", "not supported"));
            }
            Box::new(QuantizeLinear {
                axis: if opset >= 13 { a.int("axis", 1)? } else { 1 },
                block: block as usize,
                saturate,
                output_dtype,
            })
        }
        "DequantizeLinear" => {
            if opset >= 23
                && a.has("output_dtype")
                && a.int("output_dtype", 0)? != 0
                && a.int("output_dtype", 0)? != 1
            {
                return Err(a.err("output_dtype", "only float32 output is supported"));
            }
            Box::new(DequantizeLinear {
                axis: if opset >= 13 { a.int("axis", 1)? } else { 1 },
                block: block as usize,
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(b))
}

/// Builds a QONNX custom op, or `None` if unknown.
pub fn build_qonnx(op: &str, a: &Attrs) -> Result<Option<Box<dyn Op>>, OpError> {
    let b: Box<dyn Op> = match op {
        "Quant" | "IntQuant" => Box::new(IntQuant {
            signed: a.int("signed", 1)? != 0,
            narrow: a.int("narrow", 0)? != 0,
            rounding: rounding(a, "ROUND")?,
        }),
        "FloatQuant" => {
            // The special encodings only matter for overflow without saturation: the grid itself
            // is bounded by the max_val input.
            a.int("has_nan", 0)?;
            Box::new(FloatQuant {
                has_inf: a.int("has_inf", 0)? != 0,
                subnormals: a.int("has_subnormal", 1)? != 0,
                rounding: rounding(a, "ROUND")?,
                saturate: a.int("saturation", 1)? != 0,
            })
        }
        "BipolarQuant" => Box::new(BipolarQuant),
        "Trunc" => {
            let v2 = a.opset() >= 2;
            let (signed, narrow) = if v2 {
                (a.int("signed", 1)? != 0, a.int("narrow", 0)? != 0)
            } else {
                (true, false)
            };
            let mode = a.string("rounding_mode", "FLOOR")?;
            let rounding = match mode.to_uppercase().as_str() {
                "ROUND" | "HALF_EVEN" => TruncRounding::HalfEven,
                "FLOOR" => TruncRounding::Floor,
                "CEIL" => TruncRounding::Ceil,
                other => {
                    return Err(a.err(
                        "rounding_mode",
                        format!("'{other}' is not supported (ROUND, HALF_EVEN, FLOOR, CEIL)"),
                    ))
                }
            };
            Box::new(Trunc {
                v2,
                signed,
                narrow,
                rounding,
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(b))
}
