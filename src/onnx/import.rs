//! ModelProto → IR. Validates the IR version, decodes every initializer storage form (typed
//! fields, `raw_data`, external data files relative to the model directory), and links node
//! inputs to values by name, reporting undefined tensors and cycles.

use super::OnnxError;
use crate::ir::{Attr, AttrValue, Dim, Graph, Model, ModelMeta, Node, Opaque, Value, ValueId};
use crate::tensor::{DType, Tensor};
use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataLocation, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto,
};
use protobuf::Message;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Newest IR version accepted. Versions after 10 only add fields (which are carried opaquely), so
/// they import like IR 10.
pub const MAX_IR_VERSION: i64 = 14;

/// Reads an ONNX model file. External data files are resolved relative to its directory.
pub fn load(path: &Path) -> Result<Model, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    from_bytes(&bytes, Some(dir), &path.display().to_string())
}

/// Parses a serialized ModelProto. `base_dir` locates external data (none: external data is an
/// error); `what` names the source in messages.
pub fn from_bytes(bytes: &[u8], base_dir: Option<&Path>, what: &str) -> Result<Model, OnnxError> {
    let mut proto = ModelProto::parse_from_bytes(bytes).map_err(|e| OnnxError::Decode {
        path: what.to_string(),
        reason: e.to_string(),
    })?;
    if proto.ir_version == 0 || proto.graph.is_none() {
        return Err(OnnxError::NotOnnx {
            path: what.to_string(),
            reason: if proto.ir_version == 0 {
                "no ir_version field".into()
            } else {
                "no graph".into()
            },
        });
    }
    if !(3..=MAX_IR_VERSION).contains(&proto.ir_version) {
        return Err(OnnxError::IrVersion {
            path: what.to_string(),
            version: proto.ir_version,
        });
    }
    let ctx = Ctx { what, base_dir };
    let mut opsets = std::collections::BTreeMap::new();
    for o in &proto.opset_import {
        let d = if o.domain == "ai.onnx" {
            ""
        } else {
            o.domain.as_str()
        };
        opsets.insert(d.to_string(), o.version);
    }
    if proto.opset_import.is_empty() {
        // IR version 3 files without opset_import default to opset 1 semantics.
        opsets.insert(String::new(), 1);
    }
    let meta = ModelMeta {
        ir_version: proto.ir_version,
        producer_name: std::mem::take(&mut proto.producer_name),
        producer_version: std::mem::take(&mut proto.producer_version),
        domain: std::mem::take(&mut proto.domain),
        model_version: proto.model_version,
        doc_string: std::mem::take(&mut proto.doc_string),
        metadata_props: proto
            .metadata_props
            .drain(..)
            .map(|e| (e.key, e.value))
            .collect(),
    };
    let gp = proto.graph.take().unwrap_or_default();
    proto.opset_import.clear();
    let graph = import_graph(&ctx, gp)?;
    let opaque = Opaque(proto.write_to_bytes().map_err(|e| OnnxError::Decode {
        path: what.to_string(),
        reason: e.to_string(),
    })?);
    let model = Model {
        graph,
        opsets,
        meta,
        opaque,
    };
    crate::ir::verify::verify(&model.graph).map_err(|error| OnnxError::Graph {
        path: what.to_string(),
        error,
    })?;
    Ok(model)
}

struct Ctx<'a> {
    what: &'a str,
    base_dir: Option<&'a Path>,
}

fn import_graph(ctx: &Ctx, mut gp: GraphProto) -> Result<Graph, OnnxError> {
    let mut g = Graph::new();
    g.name = std::mem::take(&mut gp.name);
    g.doc_string = std::mem::take(&mut gp.doc_string);
    let mut by_name: HashMap<String, ValueId> = HashMap::new();

    for tp in gp.initializer.drain(..) {
        let name = tp.name.clone();
        let t = tensor_from_proto(ctx, &tp)?;
        let mut rest = tp;
        clear_tensor_data(&mut rest);
        let id = g.add_constant(&name, t);
        g.value_mut(id).init_opaque = Opaque(encode(ctx, &rest)?);
        by_name.insert(name, id);
    }
    for vi in gp.input.drain(..) {
        let id = value_for_info(ctx, &mut g, &mut by_name, vi)?;
        g.inputs.push(id);
    }
    let outputs: Vec<ValueInfoProto> = gp.output.drain(..).collect();
    let infos: Vec<ValueInfoProto> = gp.value_info.drain(..).collect();

    let nodes: Vec<NodeProto> = gp.node.drain(..).collect();
    // Create every node output first so nodes listed out of order still link.
    for np in &nodes {
        for o in &np.output {
            if o.is_empty() {
                continue;
            }
            if by_name.contains_key(o)
                && g.producer(by_name[o]).is_none()
                && !g.is_input(by_name[o])
            {
                // An output shadowing an initializer: the node wins, as in onnxruntime.
                let id = by_name[o];
                g.value_mut(id).constant = None;
                g.initializers.retain(|v| *v != id);
                continue;
            }
            if by_name.contains_key(o) {
                continue;
            }
            let id = g.add_value(Value::named(o));
            by_name.insert(o.clone(), id);
        }
    }
    for np in nodes {
        let node = import_node(ctx, np, &by_name, &g)?;
        g.add_node(node).map_err(|error| OnnxError::Graph {
            path: ctx.what.to_string(),
            error,
        })?;
    }
    for vi in outputs {
        let id = match by_name.get(&vi.name) {
            Some(id) => *id,
            None => {
                return Err(OnnxError::Graph {
                    path: ctx.what.to_string(),
                    error: crate::ir::IrError::UndefinedOutput { value: vi.name },
                })
            }
        };
        apply_info(ctx, &mut g, id, vi)?;
        g.outputs.push(id);
    }
    for vi in infos {
        if let Some(&id) = by_name.get(&vi.name) {
            // Kept for initializers too (so re-export preserves it); a constant's own dtype and
            // shape win over the entry.
            apply_info(ctx, &mut g, id, vi)?;
            g.value_info.push(id);
        }
    }
    g.opaque = Opaque(encode(ctx, &gp)?);
    Ok(g)
}

fn encode<M: Message>(ctx: &Ctx, m: &M) -> Result<Vec<u8>, OnnxError> {
    m.write_to_bytes().map_err(|e| OnnxError::Decode {
        path: ctx.what.to_string(),
        reason: e.to_string(),
    })
}

fn value_for_info(
    ctx: &Ctx,
    g: &mut Graph,
    by_name: &mut HashMap<String, ValueId>,
    vi: ValueInfoProto,
) -> Result<ValueId, OnnxError> {
    let id = match by_name.get(&vi.name) {
        Some(id) => *id,
        None => {
            let id = g.add_value(Value::named(&vi.name));
            by_name.insert(vi.name.clone(), id);
            id
        }
    };
    apply_info(ctx, g, id, vi)?;
    Ok(id)
}

/// Records dtype/shape of a value_info entry (a constant's own dtype/shape win).
fn apply_info(
    ctx: &Ctx,
    g: &mut Graph,
    id: ValueId,
    mut vi: ValueInfoProto,
) -> Result<(), OnnxError> {
    let (dtype, shape) = parse_type(vi.type_.as_ref());
    let v = g.value_mut(id);
    if v.constant.is_none() {
        if dtype.is_some() {
            v.dtype = dtype;
        }
        if shape.is_some() {
            v.shape = shape;
        }
    }
    v.doc_string = std::mem::take(&mut vi.doc_string);
    vi.name.clear();
    v.info_opaque = Opaque(encode(ctx, &vi)?);
    Ok(())
}

/// Element type and shape of a tensor TypeProto.
pub(super) fn parse_type(
    tp: Option<&onnx_protobuf::TypeProto>,
) -> (Option<DType>, Option<Vec<Dim>>) {
    let Some(tp) = tp else { return (None, None) };
    match &tp.value {
        Some(type_proto::Value::TensorType(t)) => {
            let dtype = DType::from_code(t.elem_type);
            let shape = t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(tensor_shape_proto::dimension::Value::DimValue(v)) if *v >= 0 => {
                            Dim::Known(*v as usize)
                        }
                        Some(tensor_shape_proto::dimension::Value::DimParam(p))
                            if !p.is_empty() =>
                        {
                            Dim::Sym(p.clone())
                        }
                        _ => Dim::Unknown,
                    })
                    .collect()
            });
            (dtype, shape)
        }
        _ => (None, None),
    }
}

fn import_node(
    ctx: &Ctx,
    mut np: NodeProto,
    by_name: &HashMap<String, ValueId>,
    g: &Graph,
) -> Result<Node, OnnxError> {
    let label = if np.name.is_empty() {
        format!("{} (unnamed)", np.op_type)
    } else {
        format!("{} '{}'", np.op_type, np.name)
    };
    let mut inputs = Vec::with_capacity(np.input.len());
    for i in &np.input {
        if i.is_empty() {
            inputs.push(None);
            continue;
        }
        match by_name.get(i) {
            Some(id) => inputs.push(Some(*id)),
            None => {
                return Err(OnnxError::Graph {
                    path: ctx.what.to_string(),
                    error: crate::ir::IrError::Undefined {
                        node: label,
                        value: i.clone(),
                    },
                })
            }
        }
    }
    let mut outputs = Vec::with_capacity(np.output.len());
    for o in &np.output {
        if o.is_empty() {
            outputs.push(None);
        } else {
            let id = by_name[o];
            if let Some((p, _)) = g.producer(id) {
                return Err(OnnxError::Graph {
                    path: ctx.what.to_string(),
                    error: crate::ir::IrError::MultipleProducers {
                        value: o.clone(),
                        first: g.node(p).label(),
                        second: label,
                    },
                });
            }
            outputs.push(Some(id));
        }
    }
    let mut attrs = Vec::with_capacity(np.attribute.len());
    for a in np.attribute.drain(..) {
        attrs.push(import_attr(ctx, &label, a)?);
    }
    let node = Node {
        name: std::mem::take(&mut np.name),
        op_type: std::mem::take(&mut np.op_type),
        domain: std::mem::take(&mut np.domain),
        inputs,
        outputs,
        attrs,
        doc_string: std::mem::take(&mut np.doc_string),
        opaque: Opaque::default(),
    };
    np.input.clear();
    np.output.clear();
    Ok(Node {
        opaque: Opaque(encode(ctx, &np)?),
        ..node
    })
}

fn import_attr(ctx: &Ctx, node: &str, a: AttributeProto) -> Result<Attr, OnnxError> {
    let bad = |reason: String| OnnxError::BadAttribute {
        path: ctx.what.to_string(),
        node: node.to_string(),
        attr: a.name.clone(),
        reason,
    };
    let ty = match a.type_.enum_value() {
        Ok(AttributeType::UNDEFINED) | Err(_) => {
            // Some old exporters omit the type; infer it from the populated field.
            if !a.floats.is_empty() {
                AttributeType::FLOATS
            } else if !a.ints.is_empty() {
                AttributeType::INTS
            } else if !a.strings.is_empty() {
                AttributeType::STRINGS
            } else if a.t.is_some() {
                AttributeType::TENSOR
            } else if !a.s.is_empty() {
                AttributeType::STRING
            } else if a.f != 0.0 {
                AttributeType::FLOAT
            } else {
                AttributeType::INT
            }
        }
        Ok(t) => t,
    };
    let value = match ty {
        AttributeType::FLOAT => AttrValue::Float(a.f),
        AttributeType::INT => AttrValue::Int(a.i),
        AttributeType::STRING => AttrValue::String(a.s.clone()),
        AttributeType::FLOATS => AttrValue::Floats(a.floats.clone()),
        AttributeType::INTS => AttrValue::Ints(a.ints.clone()),
        AttributeType::STRINGS => AttrValue::Strings(a.strings.clone()),
        AttributeType::TENSOR => match a.t.as_ref() {
            Some(t) => {
                AttrValue::Tensor(tensor_from_proto(ctx, t).map_err(|e| bad(e.to_string()))?)
            }
            None => return Err(bad("TENSOR attribute without a tensor".into())),
        },
        _ => AttrValue::Opaque(Opaque(encode(ctx, &a)?)),
    };
    Ok(Attr {
        name: a.name,
        value,
    })
}

fn clear_tensor_data(t: &mut TensorProto) {
    t.dims.clear();
    t.data_type = 0;
    t.float_data.clear();
    t.int32_data.clear();
    t.string_data.clear();
    t.int64_data.clear();
    t.name.clear();
    t.raw_data.clear();
    t.external_data.clear();
    t.data_location = DataLocation::DEFAULT.into();
    t.double_data.clear();
    t.uint64_data.clear();
}

/// Decodes a TensorProto in any storage form.
fn tensor_from_proto(ctx: &Ctx, tp: &TensorProto) -> Result<Tensor, OnnxError> {
    let bad = |reason: String| OnnxError::BadTensor {
        path: ctx.what.to_string(),
        tensor: tp.name.clone(),
        reason,
    };
    let dtype = DType::from_code(tp.data_type)
        .ok_or_else(|| bad(format!("unsupported data type code {}", tp.data_type)))?;
    let mut shape = Vec::with_capacity(tp.dims.len());
    let mut n: usize = 1;
    for &d in &tp.dims {
        if d < 0 {
            return Err(bad(format!("negative dimension {d} in {:?}", tp.dims)));
        }
        shape.push(d as usize);
        n = n
            .checked_mul(d as usize)
            .filter(|&n| n <= (1usize << 40))
            .ok_or_else(|| bad(format!("dimensions {:?} are too large", tp.dims)))?;
    }
    if tp.segment.is_some() {
        return Err(bad("segmented tensors are not supported".into()));
    }
    if tp.data_location.enum_value() == Ok(DataLocation::EXTERNAL) {
        let bytes = read_external(ctx, tp, dtype.packed_len(n))?;
        return Tensor::from_le_bytes(dtype, &shape, &bytes).map_err(|e| bad(e.to_string()));
    }
    if dtype == DType::Str {
        if tp.string_data.len() != n {
            return Err(bad(format!(
                "{} strings for {n} elements",
                tp.string_data.len()
            )));
        }
        return Ok(Tensor::Packed {
            dtype,
            shape,
            data: Vec::new(),
            strings: tp.string_data.clone(),
        });
    }
    if !tp.raw_data.is_empty() || n == 0 {
        return Tensor::from_le_bytes(dtype, &shape, &tp.raw_data).map_err(|e| bad(e.to_string()));
    }
    let check = |len: usize, field: &str| {
        if len == n {
            Ok(())
        } else {
            Err(bad(format!("{field} has {len} values for {n} elements")))
        }
    };
    let bytes: Vec<u8> = match dtype {
        DType::F32 => {
            check(tp.float_data.len(), "float_data")?;
            tp.float_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        DType::F64 => {
            check(tp.double_data.len(), "double_data")?;
            tp.double_data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        DType::I64 => {
            check(tp.int64_data.len(), "int64_data")?;
            tp.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        DType::U32 => {
            check(tp.uint64_data.len(), "uint64_data")?;
            tp.uint64_data
                .iter()
                .flat_map(|&v| (v as u32).to_le_bytes())
                .collect()
        }
        DType::U64 => {
            check(tp.uint64_data.len(), "uint64_data")?;
            tp.uint64_data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        DType::I32 => {
            check(tp.int32_data.len(), "int32_data")?;
            tp.int32_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        DType::I16 | DType::U16 | DType::F16 | DType::Bf16 => {
            check(tp.int32_data.len(), "int32_data")?;
            tp.int32_data
                .iter()
                .flat_map(|&v| (v as u16).to_le_bytes())
                .collect()
        }
        DType::U4 | DType::I4 | DType::F4E2M1 | DType::U2 | DType::I2 => {
            // Sub-byte types: each int32 holds one packed byte.
            check(tp.int32_data.len(), "int32_data (packed)").or_else(|e| {
                if tp.int32_data.len() == dtype.packed_len(n) {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
            let mut b: Vec<u8> = tp.int32_data.iter().map(|&v| v as u8).collect();
            b.truncate(dtype.packed_len(n));
            if b.len() != dtype.packed_len(n) {
                return Err(bad("packed int32_data too short".into()));
            }
            b
        }
        _ => {
            check(tp.int32_data.len(), "int32_data")?;
            tp.int32_data.iter().map(|&v| v as u8).collect()
        }
    };
    Tensor::from_le_bytes(dtype, &shape, &bytes).map_err(|e| bad(e.to_string()))
}

fn read_external(ctx: &Ctx, tp: &TensorProto, expected: usize) -> Result<Vec<u8>, OnnxError> {
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for e in &tp.external_data {
        match e.key.as_str() {
            "location" => location = Some(e.value.clone()),
            "offset" => offset = e.value.parse().unwrap_or(u64::MAX),
            "length" => length = e.value.parse::<u64>().ok(),
            _ => {}
        }
    }
    let loc = location.ok_or_else(|| OnnxError::BadTensor {
        path: ctx.what.to_string(),
        tensor: tp.name.clone(),
        reason: "external data without a location".into(),
    })?;
    let rel = Path::new(&loc);
    let err = |reason: String| OnnxError::ExternalData {
        path: ctx.what.to_string(),
        tensor: tp.name.clone(),
        file: rel.to_path_buf(),
        reason,
    };
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(err(
            "location must be a relative path inside the model directory".into(),
        ));
    }
    let base = ctx.base_dir.ok_or_else(|| {
        err("model was not loaded from a file, so external data cannot be found".into())
    })?;
    let file = base.join(rel);
    let mut f = std::fs::File::open(&file).map_err(|e| err(format!("{} ({e})", file.display())))?;
    let len = length.unwrap_or(expected as u64);
    if len != expected as u64 {
        return Err(err(format!(
            "length {len} but the tensor needs {expected} bytes"
        )));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| err(e.to_string()))?;
    let mut buf = vec![0u8; expected];
    f.read_exact(&mut buf).map_err(|e| {
        err(format!(
            "cannot read {expected} bytes at offset {offset}: {e}"
        ))
    })?;
    Ok(buf)
}
