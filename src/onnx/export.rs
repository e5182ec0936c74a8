//! IR → ModelProto. Starts from each element's opaque source fields and overwrites only what
//! the IR models, so unchanged models round-trip with metadata, doc strings and unknown fields.

use super::OnnxError;
use crate::ir::{AttrValue, Dim, Graph, Model, Node, ValueId};
use crate::tensor::{DType, Tensor};
use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, ValueInfoProto,
};
use protobuf::{Message, MessageField};
use std::path::Path;

fn parse<M: Message>(bytes: &[u8]) -> Result<M, OnnxError> {
    M::parse_from_bytes(bytes).map_err(|e| OnnxError::Encode(e.to_string()))
}

/// Serializes a model to ModelProto bytes.
pub fn to_bytes(m: &Model) -> Result<Vec<u8>, OnnxError> {
    let mut p: ModelProto = parse(&m.opaque.0)?;
    p.ir_version = m.meta.ir_version;
    p.producer_name = m.meta.producer_name.clone();
    p.producer_version = m.meta.producer_version.clone();
    p.domain = m.meta.domain.clone();
    p.model_version = m.meta.model_version;
    p.doc_string = m.meta.doc_string.clone();
    p.metadata_props = m
        .meta
        .metadata_props
        .iter()
        .map(|(k, v)| StringStringEntryProto {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        })
        .collect();
    p.opset_import = m
        .opsets
        .iter()
        .map(|(d, v)| OperatorSetIdProto {
            domain: d.clone(),
            version: *v,
            ..Default::default()
        })
        .collect();
    p.graph = MessageField::some(export_graph(&m.graph)?);
    p.write_to_bytes()
        .map_err(|e| OnnxError::Encode(e.to_string()))
}

/// Writes a model file atomically (refusing to overwrite `inputs`).
pub fn save(m: &Model, path: &Path, inputs: &[&Path]) -> Result<(), OnnxError> {
    let bytes = to_bytes(m)?;
    crate::util::atomic::write_atomic(path, &bytes, inputs)?;
    Ok(())
}

fn export_graph(g: &Graph) -> Result<GraphProto, OnnxError> {
    let mut gp: GraphProto = parse(&g.opaque.0)?;
    gp.name = g.name.clone();
    gp.doc_string = g.doc_string.clone();
    let order = g
        .topo_order()
        .map_err(|e| OnnxError::Encode(e.to_string()))?;
    // Initializers: the listed ones still in use, then constants folded later and still used.
    let mut used = std::collections::HashSet::new();
    for n in &order {
        used.extend(g.node(*n).inputs.iter().flatten().copied());
    }
    used.extend(g.outputs.iter().copied());
    used.extend(g.inputs.iter().copied());
    let mut inits: Vec<ValueId> = g
        .initializers
        .iter()
        .copied()
        .filter(|v| used.contains(v) && g.value(*v).constant.is_some())
        .collect();
    for v in g.value_ids() {
        if used.contains(&v)
            && g.value(v).constant.is_some()
            && g.producer(v).is_none()
            && !inits.contains(&v)
        {
            inits.push(v);
        }
    }
    for v in inits {
        let val = g.value(v);
        if let Some(c) = &val.constant {
            let mut tp: TensorProto = parse(&val.init_opaque.0)?;
            fill_tensor(&mut tp, &val.name, c);
            gp.initializer.push(tp);
        }
    }
    for v in &g.inputs {
        gp.input.push(value_info(g, *v)?);
    }
    for v in &g.outputs {
        gp.output.push(value_info(g, *v)?);
    }
    for v in &g.value_info {
        let defined = g.producer(*v).is_some() || g.value(*v).constant.is_some();
        if defined && !g.outputs.contains(v) && !g.inputs.contains(v) {
            gp.value_info.push(value_info(g, *v)?);
        }
    }
    for n in order {
        gp.node.push(export_node(g, g.node(n))?);
    }
    Ok(gp)
}

fn value_info(g: &Graph, v: ValueId) -> Result<ValueInfoProto, OnnxError> {
    let val = g.value(v);
    let mut vi: ValueInfoProto = parse(&val.info_opaque.0)?;
    vi.name = val.name.clone();
    vi.doc_string = val.doc_string.clone();
    let (dt, shape) = super::import::parse_type(vi.type_.as_ref());
    let want_dt = val.dtype.or(dt);
    if want_dt != dt || (val.shape.is_some() && val.shape != shape) || vi.type_.is_none() {
        if let Some(d) = want_dt {
            let mut tt = type_proto::Tensor::new();
            tt.elem_type = d.code();
            if let Some(s) = val.shape.as_ref().or(shape.as_ref()) {
                let mut sp = TensorShapeProto::new();
                for d in s {
                    let mut dim = tensor_shape_proto::Dimension::new();
                    match d {
                        Dim::Known(n) => dim.set_dim_value(*n as i64),
                        Dim::Sym(p) => dim.set_dim_param(p.clone()),
                        Dim::Unknown => {}
                    }
                    sp.dim.push(dim);
                }
                tt.shape = MessageField::some(sp);
            }
            let mut tp = vi.type_.take().unwrap_or_default();
            tp.value = Some(type_proto::Value::TensorType(tt));
            vi.type_ = MessageField::some(tp);
        }
    }
    Ok(vi)
}

fn fill_tensor(tp: &mut TensorProto, name: &str, t: &Tensor) {
    tp.name = name.to_string();
    tp.dims = t.shape().iter().map(|&d| d as i64).collect();
    tp.data_type = t.dtype().code();
    match t {
        Tensor::Packed {
            dtype: DType::Str,
            strings,
            ..
        } => tp.string_data = strings.clone(),
        _ => tp.raw_data = t.to_le_bytes(),
    }
}

fn export_node(g: &Graph, n: &Node) -> Result<NodeProto, OnnxError> {
    let mut np: NodeProto = parse(&n.opaque.0)?;
    np.name = n.name.clone();
    np.op_type = n.op_type.clone();
    np.domain = n.domain.clone();
    np.doc_string = n.doc_string.clone();
    np.input = n
        .inputs
        .iter()
        .map(|i| i.map(|v| g.value(v).name.clone()).unwrap_or_default())
        .collect();
    np.output = n
        .outputs
        .iter()
        .map(|o| o.map(|v| g.value(v).name.clone()).unwrap_or_default())
        .collect();
    np.attribute.clear();
    for a in &n.attrs {
        let ap = match &a.value {
            AttrValue::Opaque(o) => parse::<AttributeProto>(&o.0)?,
            v => {
                let mut ap = AttributeProto::new();
                ap.name = a.name.clone();
                let ty = match v {
                    AttrValue::Float(f) => {
                        ap.f = *f;
                        AttributeType::FLOAT
                    }
                    AttrValue::Int(i) => {
                        ap.i = *i;
                        AttributeType::INT
                    }
                    AttrValue::String(s) => {
                        ap.s = s.clone();
                        AttributeType::STRING
                    }
                    AttrValue::Floats(f) => {
                        ap.floats = f.clone();
                        AttributeType::FLOATS
                    }
                    AttrValue::Ints(i) => {
                        ap.ints = i.clone();
                        AttributeType::INTS
                    }
                    AttrValue::Strings(s) => {
                        ap.strings = s.clone();
                        AttributeType::STRINGS
                    }
                    AttrValue::Tensor(t) => {
                        let mut tp = TensorProto::new();
                        fill_tensor(&mut tp, "", t);
                        ap.t = MessageField::some(tp);
                        AttributeType::TENSOR
                    }
                    AttrValue::Opaque(_) => AttributeType::UNDEFINED,
                };
                ap.type_ = ty.into();
                ap
            }
        };
        np.attribute.push(ap);
    }
    Ok(np)
}
