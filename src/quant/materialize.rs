//! Turns a quantization plan with chosen scales into graph nodes. Quantization is an annotation
//! (a [`Quantized`] record) until this module materializes it, in one of three styles:
//! - **simulation**: weights replaced by their fake-quantized values, activations passed through
//!   QONNX `Quant`/`FloatQuant` nodes; this is the graph mfq evaluates;
//! - **QONNX export**: the same plus a QONNX node on every weight (float values on the grid, so
//!   re-quantizing them is the identity) — the exported file is the simulated graph;
//! - **QDQ export**: standard QuantizeLinear/DequantizeLinear, weights stored as integer or
//!   minifloat codes behind a DequantizeLinear only.
//!
//! A format that the chosen style or opset cannot express exactly is an error saying what would.

use std::collections::BTreeMap;
use std::sync::Arc;

use ndarray::ArrayD;
use quant_formats::{Format, IntFormat, MxElement, Overflow, Specials};

use crate::ir::{Attr, AttrValue, Model, Node, Value, ValueId};
use crate::tensor::{DType, Tensor};

use super::calibrate::{ActQuant, WeightQuant};
use super::plan::Layer;
use super::recipe::{BiasMode, ExportStyle};

/// Domain of the QONNX custom ops.
pub const QONNX_DOMAIN: &str = "qonnx.custom_op.general";

/// Everything quantization decided, keyed for materialization.
#[derive(Debug, Clone)]
pub struct Quantized {
    pub layers: Vec<Layer>,
    /// Activation quantizers keyed by (tensor name, requested format string).
    pub acts: BTreeMap<(String, String), ActQuant>,
    /// Weight quantizers keyed by weight tensor name.
    pub weights: BTreeMap<String, WeightQuant>,
    pub bias: BiasMode,
}

/// A quantizer that cannot be written in the requested style.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("{what}: format {format} cannot be exported as {style}: {reason}")]
    NotRepresentable {
        what: String,
        format: String,
        style: &'static str,
        reason: String,
    },
    #[error("graph rewrite failed at {what}: {reason}")]
    Graph { what: String, reason: String },
    #[error("cannot raise the model from opset {from} to {to}: node {node} ({op}) changed meaning between those opsets; export with --export qonnx or keep the opset")]
    OpsetUpgrade {
        from: i64,
        to: i64,
        node: String,
        op: String,
    },
}

fn f32_scalar(v: f32) -> Tensor {
    Tensor::scalar_f32(v)
}

fn tensor_f32(shape: &[usize], data: Vec<f32>) -> Result<Tensor, MaterializeError> {
    Tensor::f32(shape, data).map_err(|e| MaterializeError::Graph {
        what: "constant".into(),
        reason: e.to_string(),
    })
}

fn attr_i(name: &str, v: i64) -> Attr {
    Attr {
        name: name.into(),
        value: AttrValue::Int(v),
    }
}

fn attr_s(name: &str, v: &str) -> Attr {
    Attr {
        name: name.into(),
        value: AttrValue::String(v.as_bytes().to_vec()),
    }
}

/// Scale tensor broadcastable against a weight of `shape` along `axis` (QONNX convention).
fn broadcast_scale(
    shape: &[usize],
    axis: Option<usize>,
    scales: &[f32],
) -> Result<Tensor, MaterializeError> {
    match axis {
        None => Ok(f32_scalar(scales.first().copied().unwrap_or(1.0))),
        Some(a) => {
            let mut s = vec![1usize; shape.len()];
            s[a] = scales.len();
            tensor_f32(&s, scales.to_vec())
        }
    }
}

/// QONNX node parts (op type, extra constant inputs after the scale, attributes) for a format.
fn qonnx_parts(
    what: &str,
    f: &Format,
) -> Result<(&'static str, Vec<Tensor>, Vec<Attr>), MaterializeError> {
    let err = |reason: &str| MaterializeError::NotRepresentable {
        what: what.into(),
        format: f.to_string(),
        style: "QONNX",
        reason: reason.into(),
    };
    match f {
        Format::Int(i) => Ok((
            "Quant",
            vec![f32_scalar(0.0), f32_scalar(f32::from(i.bits))],
            vec![
                attr_i("signed", i64::from(i.signed)),
                attr_i("narrow", i64::from(i.narrow)),
                attr_s("rounding_mode", "ROUND"),
            ],
        )),
        Format::Float(fl) => {
            if !fl.signed && (fl.overflow != Overflow::Saturate || fl.no_zero()) {
                return Err(err(
                    "QONNX FloatQuant is always signed; mfq writes an unsigned minifloat as Relu + FloatQuant, which is exact only for saturating formats with a zero (a negative input becomes 0)",
                ));
            }
            if !fl.subnormals {
                return Err(err(
                    "QONNX FloatQuant always produces subnormals (its reference ignores has_subnormal); use a format with subnormals",
                ));
            }
            if fl.exp_bits == 0 {
                return Err(err("FloatQuant needs at least one exponent bit"));
            }
            let has_inf = fl.specials == Specials::Ieee;
            let has_nan = fl.specials != Specials::None;
            Ok((
                "FloatQuant",
                vec![
                    f32_scalar(f32::from(fl.exp_bits)),
                    f32_scalar(f32::from(fl.man_bits)),
                    f32_scalar(fl.bias as f32),
                    f32_scalar(f.max_value() as f32),
                ],
                vec![
                    attr_i("has_inf", i64::from(has_inf)),
                    attr_i("has_nan", i64::from(has_nan)),
                    attr_i("has_subnormal", 1),
                    attr_i("saturation", i64::from(fl.overflow == Overflow::Saturate)),
                    attr_s("rounding_mode", "ROUND"),
                ],
            ))
        }
        Format::Mx(_) => Err(err(
            "QONNX has no block-scaled op; export MX weights with --export qdq --opset 24",
        )),
    }
}

fn add_const(model: &mut Model, base: &str, t: Tensor) -> ValueId {
    let name = model.graph.fresh_name(base);
    model.graph.add_constant(&name, t)
}

fn new_value(model: &mut Model, base: &str, like: ValueId) -> ValueId {
    let name = model.graph.fresh_name(base);
    let src = model.graph.value(like);
    let v = Value {
        dtype: src.dtype,
        shape: src.shape.clone(),
        ..Value::named(&name)
    };
    model.graph.add_value(v)
}

fn add_node(model: &mut Model, node: Node, what: &str) -> Result<(), MaterializeError> {
    model
        .graph
        .add_node(node)
        .map(|_| ())
        .map_err(|e| MaterializeError::Graph {
            what: what.into(),
            reason: e.to_string(),
        })
}

/// Inserts a QONNX quantizer on `x`; returns the quantized value.
fn insert_qonnx(
    model: &mut Model,
    x: ValueId,
    f: &Format,
    scale: Tensor,
    what: &str,
) -> Result<ValueId, MaterializeError> {
    let (op, extra, attrs) = qonnx_parts(what, f)?;
    let base = model.graph.value(x).name.clone();
    let s = add_const(model, &format!("{base}_scale"), scale);
    // FloatQuant has no unsigned variant: an unsigned (saturating) minifloat sends every
    // negative input to 0, which a Relu in front reproduces exactly.
    let x = match f {
        Format::Float(fl) if !fl.signed => {
            let r = new_value(model, &format!("{base}_nonneg"), x);
            let node = Node {
                name: model.graph.fresh_name(&format!("{base}_Relu")),
                ..Node::new("Relu", vec![Some(x)], vec![Some(r)])
            };
            add_node(model, node, what)?;
            r
        }
        _ => x,
    };
    let mut inputs = vec![Some(x), Some(s)];
    let names = if op == "Quant" {
        ["zeropt", "bitwidth", "", ""]
    } else {
        [
            "exponent_bitwidth",
            "mantissa_bitwidth",
            "exponent_bias",
            "max_val",
        ]
    };
    for (t, n) in extra.into_iter().zip(names) {
        inputs.push(Some(add_const(model, &format!("{base}_{n}"), t)));
    }
    let y = new_value(model, &format!("{base}_q"), x);
    let node = Node {
        name: model.graph.fresh_name(&format!("{base}_{op}")),
        domain: QONNX_DOMAIN.into(),
        attrs,
        ..Node::new(op, inputs, vec![Some(y)])
    };
    add_node(model, node, what)?;
    model.opsets.entry(QONNX_DOMAIN.into()).or_insert(1);
    Ok(y)
}

fn replace_constant(model: &mut Model, v: ValueId, t: Tensor) {
    model.graph.value_mut(v).constant = Some(Arc::new(t));
}

/// Quantizes the bias of a layer to int32 at scale s_w·s_a (values stay float, on the grid).
fn int32_bias(b: &ArrayD<f32>, w_scales: &[f32], a_scale: f32) -> (Vec<f32>, Vec<f32>, Vec<i32>) {
    let n = b.len();
    let mut vals = Vec::with_capacity(n);
    let mut scales = Vec::with_capacity(n);
    let mut codes = Vec::with_capacity(n);
    for (i, &x) in b.iter().enumerate() {
        let sw = if w_scales.len() == n {
            w_scales[i]
        } else {
            w_scales.first().copied().unwrap_or(1.0)
        };
        let s = sw * a_scale;
        let q = (x / s)
            .round_ties_even()
            .clamp(i32::MIN as f32, i32::MAX as f32);
        codes.push(q as i32);
        scales.push(s);
        vals.push(q * s);
    }
    (vals, scales, codes)
}

/// Per-layer helper: the activation quantizer feeding slot `slot` of layer `l`.
fn act_for<'a>(
    q: &'a Quantized,
    model: &Model,
    l: &Layer,
    slot: usize,
) -> Option<(ValueId, &'a ActQuant)> {
    let fmt = l.act_format?;
    let v = model
        .graph
        .node(l.node)
        .inputs
        .get(slot)
        .copied()
        .flatten()?;
    let name = model.graph.value(v).name.clone();
    q.acts.get(&(name, fmt.to_string())).map(|a| (v, a))
}

/// Routes every quantized activation input of every layer through the quantizer `insert`
/// builds: one quantizer per (tensor, format), shared by all its consumers.
fn quantize_act_inputs(
    m: &mut Model,
    q: &Quantized,
    mut insert: impl FnMut(&mut Model, ValueId, &ActQuant, &str) -> Result<ValueId, MaterializeError>,
) -> Result<(), MaterializeError> {
    let mut made: BTreeMap<(String, String), ValueId> = BTreeMap::new();
    for l in &q.layers {
        for &slot in &l.act_slots {
            let Some((v, a)) = act_for(q, m, l, slot) else {
                continue;
            };
            let key = (
                a.name.clone(),
                l.act_format.map(|f| f.to_string()).unwrap_or_default(),
            );
            let y = match made.get(&key) {
                Some(y) => *y,
                None => {
                    let y = insert(m, v, a, &format!("activation '{}'", a.name))?;
                    made.insert(key, y);
                    y
                }
            };
            m.graph.set_input(l.node, slot, Some(y));
        }
    }
    Ok(())
}

/// Builds the simulation graph (also the QONNX export when `weight_nodes` is true).
pub fn qonnx_graph(
    base: &Model,
    q: &Quantized,
    weight_nodes: bool,
) -> Result<Model, MaterializeError> {
    let mut m = base.clone();
    quantize_act_inputs(&mut m, q, |m, v, a, what| {
        insert_qonnx(m, v, &a.format, f32_scalar(a.scale), what)
    })?;
    for l in &q.layers {
        let Some(w) = &l.weight else { continue };
        let name = m.graph.value(w.value).name.clone();
        let Some(wq) = q.weights.get(&name) else {
            continue;
        };
        // A weight shared by several layers gets one fake-quantized copy per format.
        let shape = wq.values.shape().to_vec();
        let wv = if m.graph.consumers(w.value).len() > 1 {
            let c = add_const(
                &mut m,
                &format!("{name}_{}", wq.format),
                Tensor::F32(wq.values.clone()),
            );
            m.graph.set_input(l.node, w.slot, Some(c));
            c
        } else {
            replace_constant(&mut m, w.value, Tensor::F32(wq.values.clone()));
            w.value
        };
        if weight_nodes {
            let s = broadcast_scale(&shape, wq.axis, &wq.scales)?;
            let y = insert_qonnx(&mut m, wv, &wq.format, s, &format!("weight '{name}'"))?;
            m.graph.set_input(l.node, w.slot, Some(y));
        }
        if q.bias == BiasMode::Int32 {
            bias_int32_qonnx(&mut m, q, l, wq, weight_nodes)?;
        }
    }
    Ok(m)
}

fn bias_int32_qonnx(
    m: &mut Model,
    q: &Quantized,
    l: &Layer,
    wq: &WeightQuant,
    nodes: bool,
) -> Result<(), MaterializeError> {
    let Some(bslot) = l.bias_slot else {
        return Ok(());
    };
    let Some(&aslot) = l.act_slots.first() else {
        return Ok(());
    };
    let Some((_, a)) = act_for(q, m, l, aslot) else {
        return Ok(());
    };
    let Some(bv) = m.graph.node(l.node).inputs.get(bslot).copied().flatten() else {
        return Ok(());
    };
    let Some(b) = m
        .graph
        .value(bv)
        .constant
        .as_ref()
        .and_then(|t| t.to_f32().ok())
    else {
        return Ok(());
    };
    let (vals, scales, _) = int32_bias(&b, &wq.scales, a.scale);
    let shape = b.shape().to_vec();
    replace_constant(m, bv, tensor_f32(&shape, vals)?);
    if nodes {
        let s = tensor_f32(&shape, scales)?;
        let f = Format::Int(IntFormat {
            bits: 16,
            signed: true,
            narrow: false,
        });
        // QONNX Quant carries any bit width: write 32 bits via the bitwidth input.
        let y = insert_qonnx(m, bv, &f, s, "bias")?;
        if let Some((n, _)) = m.graph.producer(y) {
            let bw = m.graph.node(n).inputs.get(3).copied().flatten();
            if let Some(bw) = bw {
                replace_constant(m, bw, f32_scalar(32.0));
            }
        }
        m.graph.set_input(l.node, bslot, Some(y));
    }
    Ok(())
}

/// The ONNX storage type of a format in QDQ, and the opset it needs.
fn qdq_type(f: &Format) -> Option<(DType, i64)> {
    match f {
        Format::Int(i) if i.bits <= 8 => Some((if i.signed { DType::I8 } else { DType::U8 }, 13)),
        Format::Int(i) => Some((if i.signed { DType::I16 } else { DType::U16 }, 21)),
        Format::Float(_) => {
            let s = f.to_string();
            match s.as_str() {
                "fp8-e4m3fn" | "fp8-e4m3fn:sat" => Some((DType::F8E4M3Fn, 19)),
                "fp8-e4m3fnuz" | "fp8-e4m3fnuz:sat" => Some((DType::F8E4M3Fnuz, 19)),
                "fp8-e5m2" | "fp8-e5m2:sat" => Some((DType::F8E5M2, 19)),
                "fp8-e5m2fnuz" | "fp8-e5m2fnuz:sat" => Some((DType::F8E5M2Fnuz, 19)),
                "fp4-e2m1" => Some((DType::F4E2M1, 23)),
                _ => None,
            }
        }
        Format::Mx(_) => None,
    }
}

/// The smallest default-domain opset at which every quantizer of `q` is expressible in `style`.
pub fn required_opset(q: &Quantized, style: ExportStyle) -> i64 {
    if style == ExportStyle::Qonnx {
        return 0;
    }
    let mut need = 13;
    for a in q.acts.values() {
        if let Some((_, o)) = qdq_type(&a.format) {
            need = need.max(o);
        }
    }
    for w in q.weights.values() {
        if let Format::Mx(_) = w.format {
            need = need.max(24);
        } else if let Some((_, o)) = qdq_type(&w.format) {
            need = need.max(o);
        }
        if let Format::Int(i) = w.format {
            if i.bits == 4 {
                need = need.max(21);
            }
        }
    }
    need
}

/// Why a format cannot be QDQ at `opset`, if it cannot.
pub fn qdq_blocker(f: &Format, opset: i64, weight: bool) -> Option<String> {
    match f {
        Format::Mx(_) if !weight => Some("MX activations need per-block dynamic scales, which QDQ cannot express; use MX for weights only".into()),
        Format::Mx(_) if opset < 24 => Some(format!("MX weights need blocked DequantizeLinear with float8e8m0 scales (opset ≥ 24, got {opset})")),
        Format::Mx(_) => None,
        _ => match qdq_type(f) {
            None => Some("only integers of 2–16 bits and the ONNX float types fp8-e4m3fn, fp8-e4m3fnuz, fp8-e5m2, fp8-e5m2fnuz (opset ≥ 19) and fp4-e2m1 (opset ≥ 23) have QDQ types; use --export qonnx".into()),
            Some((_, need)) if need > opset => Some(format!("needs opset ≥ {need}, got {opset}")),
            _ => None,
        },
    }
}

/// Ops whose attributes or semantics changed in a way a plain opset bump would break, with the
/// opset versions that introduced the change (from the ONNX operator changelog): raising a model
/// from opset `a` to `b` is refused only when one of its ops changed at a version in `(a, b]`.
const OPSET_SENSITIVE: &[(&str, &[i64])] = &[
    ("Clip", &[6, 11]),
    ("Squeeze", &[13]),
    ("Unsqueeze", &[13]),
    ("Split", &[13, 18]),
    ("Slice", &[10]),
    ("Pad", &[11]),
    ("Resize", &[10, 11, 13]),
    ("Upsample", &[9, 10]),
    ("ReduceSum", &[13]),
    ("ReduceMean", &[18]),
    ("ReduceMax", &[18]),
    ("ReduceMin", &[18]),
    ("ReduceProd", &[18]),
    ("ReduceL2", &[18]),
    ("Dropout", &[7, 10, 12]),
    ("BatchNormalization", &[7, 9, 14]),
    ("Softmax", &[13]),
    ("LogSoftmax", &[13]),
    ("TopK", &[10, 11]),
    ("Scatter", &[11]),
];

/// True when `op` changed meaning at an opset version in `(from, to]`.
fn changed_between(op: &str, from: i64, to: i64) -> bool {
    OPSET_SENSITIVE
        .iter()
        .find(|(o, _)| *o == op)
        .is_some_and(|(_, vs)| vs.iter().any(|&v| v > from && v <= to))
}

/// Raises the default-domain opset to `to` when nothing in the graph changes meaning.
pub fn raise_opset(m: &mut Model, to: i64) -> Result<(), MaterializeError> {
    let from = m.default_opset().unwrap_or(to);
    if from >= to {
        return Ok(());
    }
    for id in m.graph.node_ids() {
        let n = m.graph.node(id);
        if (n.domain.is_empty() || n.domain == "ai.onnx") && changed_between(&n.op_type, from, to) {
            return Err(MaterializeError::OpsetUpgrade {
                from,
                to,
                node: n.label(),
                op: n.op_type.clone(),
            });
        }
    }
    let key = if m.opsets.contains_key("ai.onnx") {
        "ai.onnx"
    } else {
        ""
    };
    m.opsets.insert(key.into(), to);
    if m.meta.ir_version < 7 {
        m.meta.ir_version = match to {
            ..=14 => 7,
            15..=18 => 8,
            19..=20 => 9,
            _ => 10,
        };
    } else if to >= 21 && m.meta.ir_version < 10 {
        m.meta.ir_version = 10;
    }
    Ok(())
}

fn zero_point(dt: DType) -> Tensor {
    match dt {
        DType::I8 => Tensor::I8(ArrayD::from_elem(ndarray::IxDyn(&[]), 0)),
        DType::U8 => Tensor::U8(ArrayD::from_elem(ndarray::IxDyn(&[]), 0)),
        other => Tensor::Packed {
            dtype: other,
            shape: vec![],
            data: vec![0; other.packed_len(1)],
            strings: vec![],
        },
    }
}

/// Integer range of an int format stored in a wider QDQ type (for the Clip after QuantizeLinear).
fn int_range(i: &IntFormat) -> (i64, i64) {
    let (lo, hi) = if i.signed {
        (-(1i64 << (i.bits - 1)), (1i64 << (i.bits - 1)) - 1)
    } else {
        (0, (1i64 << i.bits) - 1)
    };
    match (i.narrow, i.signed) {
        (true, true) => (lo + 1, hi),
        (true, false) => (lo, hi - 1),
        _ => (lo, hi),
    }
}

fn storage_full_range(dt: DType) -> (i64, i64) {
    match dt {
        DType::I8 => (-128, 127),
        DType::U8 => (0, 255),
        DType::I16 => (-32768, 32767),
        DType::U16 => (0, 65535),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Storage bytes of `codes` in element type `dt`: little-endian bytes for types of 8 bits or
/// more, ONNX sub-byte packing (low bits first) below.
fn pack_storage(dt: DType, codes: &[u32]) -> Result<Vec<u8>, quant_formats::FormatError> {
    let bits = dt.bits() as u32;
    if bits >= 8 {
        let n = (bits / 8) as usize;
        Ok(codes
            .iter()
            .flat_map(|c| c.to_le_bytes()[..n].to_vec())
            .collect())
    } else {
        quant_formats::pack_codes(codes, bits)
    }
}

fn int_tensor(dt: DType, shape: &[usize], codes: &[i64]) -> Result<Tensor, MaterializeError> {
    let bad = |e: String| MaterializeError::Graph {
        what: "integer constant".into(),
        reason: e,
    };
    Ok(match dt {
        DType::I8 => Tensor::I8(
            ArrayD::from_shape_vec(shape.to_vec(), codes.iter().map(|&c| c as i8).collect())
                .map_err(|e| bad(e.to_string()))?,
        ),
        DType::U8 => Tensor::U8(
            ArrayD::from_shape_vec(shape.to_vec(), codes.iter().map(|&c| c as u8).collect())
                .map_err(|e| bad(e.to_string()))?,
        ),
        DType::I32 => Tensor::I32(
            ArrayD::from_shape_vec(shape.to_vec(), codes.iter().map(|&c| c as i32).collect())
                .map_err(|e| bad(e.to_string()))?,
        ),
        other => {
            let bits = other.bits() as u32;
            let raw: Vec<u32> = codes
                .iter()
                .map(|&c| (c as u32) & ((1u64 << bits) - 1) as u32)
                .collect();
            let data = pack_storage(other, &raw).map_err(|e| bad(e.to_string()))?;
            Tensor::Packed {
                dtype: other,
                shape: shape.to_vec(),
                data,
                strings: vec![],
            }
        }
    })
}

/// Builds the QDQ export at `opset`.
pub fn qdq_graph(base: &Model, q: &Quantized, opset: i64) -> Result<Model, MaterializeError> {
    let mut m = base.clone();
    raise_opset(&mut m, opset)?;
    quantize_act_inputs(&mut m, q, |m, v, a, what| {
        if let Some(reason) = qdq_blocker(&a.format, opset, false) {
            return Err(MaterializeError::NotRepresentable {
                what: what.to_string(),
                format: a.format.to_string(),
                style: "QDQ",
                reason,
            });
        }
        insert_qdq_act(m, v, a, what)
    })?;
    for l in &q.layers {
        let Some(w) = &l.weight else { continue };
        let name = m.graph.value(w.value).name.clone();
        let Some(wq) = q.weights.get(&name) else {
            continue;
        };
        let what = format!("weight '{name}'");
        if let Some(reason) = qdq_blocker(&wq.format, opset, true) {
            return Err(MaterializeError::NotRepresentable {
                what,
                format: wq.format.to_string(),
                style: "QDQ",
                reason,
            });
        }
        let y = insert_qdq_weight(&mut m, wq, opset, &what)?;
        m.graph.set_input(l.node, w.slot, Some(y));
        if q.bias == BiasMode::Int32 {
            if let (Some(bslot), Some(&aslot)) = (l.bias_slot, l.act_slots.first()) {
                if let Some((_, a)) = act_for(q, &m, l, aslot) {
                    let bv = m.graph.node(l.node).inputs.get(bslot).copied().flatten();
                    if let Some(b) = bv.and_then(|bv| {
                        m.graph
                            .value(bv)
                            .constant
                            .as_ref()
                            .and_then(|t| t.to_f32().ok())
                    }) {
                        let (_, scales, codes) = int32_bias(&b, &wq.scales, a.scale);
                        let codes: Vec<i64> = codes.into_iter().map(i64::from).collect();
                        let shape = b.shape().to_vec();
                        let c = add_const(
                            &mut m,
                            &format!("{name}_bias_q"),
                            int_tensor(DType::I32, &shape, &codes)?,
                        );
                        let s = add_const(
                            &mut m,
                            &format!("{name}_bias_scale"),
                            tensor_f32(&shape, scales)?,
                        );
                        let out = new_value(&mut m, &format!("{name}_bias_dq"), c);
                        m.graph.value_mut(out).dtype = Some(DType::F32);
                        // Per-element scales: DequantizeLinear needs a 1-D per-axis scale.
                        let node = Node {
                            name: m.graph.fresh_name(&format!("{name}_bias_DequantizeLinear")),
                            attrs: vec![attr_i("axis", 0)],
                            ..Node::new("DequantizeLinear", vec![Some(c), Some(s)], vec![Some(out)])
                        };
                        add_node(&mut m, node, &what)?;
                        m.graph.set_input(l.node, bslot, Some(out));
                    }
                }
            }
        }
    }
    Ok(m)
}

fn insert_qdq_act(
    m: &mut Model,
    x: ValueId,
    a: &ActQuant,
    what: &str,
) -> Result<ValueId, MaterializeError> {
    let (dt, _) = qdq_type(&a.format).ok_or_else(|| MaterializeError::NotRepresentable {
        what: what.into(),
        format: a.format.to_string(),
        style: "QDQ",
        reason: "no ONNX type".into(),
    })?;
    let base = a.name.clone();
    let s = add_const(m, &format!("{base}_scale"), f32_scalar(a.scale));
    let zp = add_const(m, &format!("{base}_zero_point"), zero_point(dt));
    let q = new_value(m, &format!("{base}_quantized"), x);
    m.graph.value_mut(q).dtype = Some(dt);
    let mut attrs = Vec::new();
    if let Format::Float(f) = &a.format {
        attrs.push(attr_i(
            "saturate",
            i64::from(f.overflow == Overflow::Saturate),
        ));
    }
    let node = Node {
        name: m.graph.fresh_name(&format!("{base}_QuantizeLinear")),
        attrs,
        ..Node::new(
            "QuantizeLinear",
            vec![Some(x), Some(s), Some(zp)],
            vec![Some(q)],
        )
    };
    add_node(m, node, what)?;
    let mut qv = q;
    if let Format::Int(i) = &a.format {
        let (lo, hi) = int_range(i);
        if (lo, hi) != storage_full_range(dt) {
            let lo_c = add_const(m, &format!("{base}_qmin"), int_tensor(dt, &[], &[lo])?);
            let hi_c = add_const(m, &format!("{base}_qmax"), int_tensor(dt, &[], &[hi])?);
            let c = new_value(m, &format!("{base}_clipped"), q);
            let node = Node {
                name: m.graph.fresh_name(&format!("{base}_Clip")),
                ..Node::new("Clip", vec![Some(q), Some(lo_c), Some(hi_c)], vec![Some(c)])
            };
            add_node(m, node, what)?;
            qv = c;
        }
    }
    let y = new_value(m, &format!("{base}_dequantized"), x);
    m.graph.value_mut(y).dtype = Some(DType::F32);
    let node = Node {
        name: m.graph.fresh_name(&format!("{base}_DequantizeLinear")),
        ..Node::new(
            "DequantizeLinear",
            vec![Some(qv), Some(s), Some(zp)],
            vec![Some(y)],
        )
    };
    add_node(m, node, what)?;
    Ok(y)
}

fn mx_elem_dtype(e: MxElement) -> Option<DType> {
    Some(match e {
        MxElement::Fp8E4m3 => DType::F8E4M3Fn,
        MxElement::Fp8E5m2 => DType::F8E5M2,
        MxElement::Fp4E2m1 => DType::F4E2M1,
        MxElement::Int8 => return None,
        MxElement::Fp6E2m3 | MxElement::Fp6E3m2 => return None,
    })
}

fn insert_qdq_weight(
    m: &mut Model,
    wq: &WeightQuant,
    opset: i64,
    what: &str,
) -> Result<ValueId, MaterializeError> {
    let shape = wq.values.shape().to_vec();
    let base = wq.name.clone();
    let unrepresentable = |reason: String| MaterializeError::NotRepresentable {
        what: what.into(),
        format: wq.format.to_string(),
        style: "QDQ",
        reason,
    };
    let flat: Vec<f32> = wq.values.iter().copied().collect();
    // Codes: value / scale of its channel, exactly on the grid.
    let (dim, inner) = match wq.axis {
        Some(a) => (shape[a], shape[a + 1..].iter().product::<usize>()),
        None => (1, flat.len().max(1)),
    };
    let scale_of = |i: usize| -> f32 {
        if wq.axis.is_some() {
            wq.scales[(i / inner) % dim]
        } else {
            wq.scales[0]
        }
    };
    let mut attrs = Vec::new();
    let (codes_t, scale_t) = match wq.format {
        Format::Int(i) => {
            let dt = if i.bits == 4 && opset >= 21 {
                if i.signed {
                    DType::I4
                } else {
                    DType::U4
                }
            } else {
                qdq_type(&wq.format)
                    .map(|t| t.0)
                    .ok_or_else(|| unrepresentable("no ONNX type".into()))?
            };
            let codes: Vec<i64> = flat
                .iter()
                .enumerate()
                .map(|(k, &v)| (v / scale_of(k)).round_ties_even() as i64)
                .collect();
            (int_tensor(dt, &shape, &codes)?, wq.scales.clone())
        }
        Format::Float(_) => {
            let (dt, _) =
                qdq_type(&wq.format).ok_or_else(|| unrepresentable("no ONNX float type".into()))?;
            let codes: Vec<u32> = flat
                .iter()
                .enumerate()
                .map(|(k, &v)| wq.format.encode(v / scale_of(k)))
                .collect();
            let data = pack_storage(dt, &codes).map_err(|e| unrepresentable(e.to_string()))?;
            (
                Tensor::Packed {
                    dtype: dt,
                    shape: shape.clone(),
                    data,
                    strings: vec![],
                },
                wq.scales.clone(),
            )
        }
        Format::Mx(mx) => {
            let axis = wq.mx_axis.unwrap_or(0);
            let dt = mx_elem_dtype(mx.element).ok_or_else(|| {
                unrepresentable(
                    "ONNX has no float6 or MX-int8 element type; use mxfp8/mxfp4".into(),
                )
            })?;
            let elem = mx
                .element
                .float_format()
                .map(Format::Float)
                .ok_or_else(|| unrepresentable("no element format".into()))?;
            let bs = mx.block_size as usize;
            let outer: usize = shape[..axis].iter().product();
            let d = shape[axis];
            let inn: usize = shape[axis + 1..].iter().product();
            let nb = d.div_ceil(bs);
            let mut sshape = shape.clone();
            sshape[axis] = nb;
            let mut exps = vec![0u8; outer * nb * inn];
            let mut codes = vec![0u32; flat.len()];
            for o in 0..outer {
                for b in 0..nb {
                    for k in 0..inn {
                        let idx = |j: usize| (o * d + j) * inn + k;
                        let amax = (b * bs..((b + 1) * bs).min(d))
                            .fold(0f32, |mx_, j| mx_.max(flat[idx(j)].abs()));
                        let e = quant_formats::mx::shared_exponent(amax, mx.element.emax());
                        exps[(o * nb + b) * inn + k] = quant_formats::mx::e8m0_code(e);
                        let sc = (e.unwrap_or(0) as f32).exp2();
                        for j in b * bs..((b + 1) * bs).min(d) {
                            codes[idx(j)] = elem.encode(flat[idx(j)] / sc);
                        }
                    }
                }
            }
            let data = pack_storage(dt, &codes).map_err(|e| unrepresentable(e.to_string()))?;
            attrs.push(attr_i("axis", axis as i64));
            attrs.push(attr_i("block_size", bs as i64));
            // At opset 24 DequantizeLinear outputs the scale's type unless told otherwise.
            attrs.push(attr_i("output_dtype", 1));
            let st = Tensor::Packed {
                dtype: DType::F8E8M0,
                shape: sshape,
                data: exps,
                strings: vec![],
            };
            let c = add_const(
                m,
                &format!("{base}_quantized"),
                Tensor::Packed {
                    dtype: dt,
                    shape: shape.clone(),
                    data,
                    strings: vec![],
                },
            );
            let s = add_const(m, &format!("{base}_scale"), st);
            let y = m.graph.add_value(Value {
                dtype: Some(DType::F32),
                ..Value::named(&m.graph.fresh_name(&format!("{base}_dequantized")))
            });
            let node = Node {
                name: m.graph.fresh_name(&format!("{base}_DequantizeLinear")),
                attrs,
                ..Node::new("DequantizeLinear", vec![Some(c), Some(s)], vec![Some(y)])
            };
            add_node(m, node, what)?;
            return Ok(y);
        }
    };
    let c = add_const(m, &format!("{base}_quantized"), codes_t);
    let s = if let Some(a) = wq.axis {
        attrs.push(attr_i("axis", a as i64));
        add_const(
            m,
            &format!("{base}_scale"),
            tensor_f32(&[scale_t.len()], scale_t)?,
        )
    } else {
        add_const(m, &format!("{base}_scale"), f32_scalar(scale_t[0]))
    };
    let y = m.graph.add_value(Value {
        dtype: Some(DType::F32),
        shape: None,
        ..Value::named(&m.graph.fresh_name(&format!("{base}_dequantized")))
    });
    let node = Node {
        name: m.graph.fresh_name(&format!("{base}_DequantizeLinear")),
        attrs,
        ..Node::new("DequantizeLinear", vec![Some(c), Some(s)], vec![Some(y)])
    };
    add_node(m, node, what)?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unsigned minifloat quantizer in QONNX (Relu + FloatQuant) computes exactly what the
    /// format does, negative inputs included (FloatQuant alone is always signed).
    #[test]
    fn unsigned_minifloat_quantizer_is_exact_in_qonnx() {
        let xs: Vec<f32> = vec![-3.0, -0.5, -0.01, 0.0, 0.3, 1.7, 5.0, 100.0];
        for spec in ["e2m1:unsigned", "e4m3:unsigned", "e3m2:unsigned:bias=2"] {
            let f: Format = spec.parse().expect("format");
            let mut m = Model::default();
            m.opsets.insert(String::new(), 17);
            let mut v = Value::named("x");
            v.dtype = Some(DType::F32);
            v.shape = Some(vec![crate::ir::Dim::Known(xs.len())]);
            let x = m.graph.add_value(v);
            m.graph.inputs.push(x);
            let y = insert_qonnx(&mut m, x, &f, f32_scalar(0.5), "test").expect("insert");
            m.graph.outputs.push(y);
            let out = crate::interp::Interpreter::new(&m)
                .expect("interpreter")
                .run(&[("x".into(), tensor_f32(&[xs.len()], xs.clone()).expect("x"))])
                .expect("run");
            let got = out[0].1.to_f32().expect("f32");
            let mut want = vec![0f32; xs.len()];
            f.fake_quantize(&xs, 0.5, &mut want);
            assert_eq!(got.iter().copied().collect::<Vec<_>>(), want, "{spec}");
            assert_eq!(want[0], 0.0, "{spec}: a negative input becomes 0");
        }
        // non-saturating unsigned formats cannot be written this way
        let f: Format = "e4m3:unsigned:ieee:nonsat".parse().expect("format");
        assert!(qonnx_parts("w", &f).is_err());
    }

    #[test]
    fn opset_changes_count_only_inside_the_raised_range() {
        // Clip moved min/max from attributes to inputs at opset 11: a bump from 13 is safe.
        assert!(!changed_between("Clip", 13, 21));
        assert!(changed_between("Clip", 8, 13));
        assert!(changed_between("Softmax", 11, 13));
        assert!(!changed_between("Softmax", 13, 24));
        assert!(changed_between("ReduceMean", 13, 19));
        assert!(!changed_between("Conv", 7, 24));
    }
}
