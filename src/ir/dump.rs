//! A stable, human-readable text dump of a graph for golden tests: inputs, constants (name,
//! dtype, shape and a content checksum), nodes in topological order with attributes, outputs.
//! The format depends only on graph content, never on internal ids.

use super::{AttrValue, Dim, Graph, Model};
use std::fmt::Write;

/// Formats a shape as `[1,3,?,batch]` (or `?` for unknown rank).
pub fn shape_str(s: Option<&Vec<Dim>>) -> String {
    match s {
        None => "?".to_string(),
        Some(d) => format!(
            "[{}]",
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn attr_str(v: &AttrValue) -> String {
    match v {
        AttrValue::Float(f) => format!("{f}"),
        AttrValue::Int(i) => format!("{i}"),
        AttrValue::String(s) => format!("{:?}", String::from_utf8_lossy(s)),
        AttrValue::Tensor(t) => format!(
            "tensor<{}{:?}#{:016x}>",
            t.dtype(),
            t.shape(),
            fnv(&t.to_le_bytes())
        ),
        AttrValue::Floats(f) => format!("{f:?}"),
        AttrValue::Ints(i) => format!("{i:?}"),
        AttrValue::Strings(s) => format!(
            "{:?}",
            s.iter()
                .map(|x| String::from_utf8_lossy(x).into_owned())
                .collect::<Vec<_>>()
        ),
        AttrValue::Opaque(o) => format!("opaque#{:016x}", fnv(&o.0)),
    }
}

/// Dumps a graph. Errors only if the graph has a cycle.
pub fn dump_graph(g: &Graph) -> Result<String, super::IrError> {
    let mut s = String::new();
    let ty = |v: super::ValueId| {
        let val = g.value(v);
        format!(
            "{}:{}{}",
            val.name,
            val.dtype.map(|d| d.name()).unwrap_or("?"),
            shape_str(val.shape.as_ref())
        )
    };
    for v in &g.inputs {
        let _ = writeln!(s, "input {}", ty(*v));
    }
    let mut consts: Vec<_> = g
        .value_ids()
        .filter(|v| g.value(*v).constant.is_some())
        .filter(|v| g.producer(*v).is_none())
        .filter(|v| !g.consumers(*v).is_empty() || g.outputs.contains(v))
        .collect();
    consts.sort_by(|a, b| g.value(*a).name.cmp(&g.value(*b).name));
    for v in consts {
        if let Some(c) = &g.value(v).constant {
            let _ = writeln!(
                s,
                "const {}:{}{:?} #{:016x}",
                g.value(v).name,
                c.dtype(),
                c.shape(),
                fnv(&c.to_le_bytes())
            );
        }
    }
    for n in g.topo_order()? {
        let node = g.node(n);
        let ins: Vec<String> = node
            .inputs
            .iter()
            .map(|i| i.map(|v| g.value(v).name.clone()).unwrap_or_default())
            .collect();
        let outs: Vec<String> = node
            .outputs
            .iter()
            .map(|o| o.map(&ty).unwrap_or_default())
            .collect();
        let dom = if node.domain.is_empty() {
            String::new()
        } else {
            format!("{}::", node.domain)
        };
        let attrs: Vec<String> = node
            .attrs
            .iter()
            .map(|a| format!("{}={}", a.name, attr_str(&a.value)))
            .collect();
        let _ = writeln!(
            s,
            "{} = {}{}({}){}",
            outs.join(", "),
            dom,
            node.op_type,
            ins.join(", "),
            if attrs.is_empty() {
                String::new()
            } else {
                format!(" {{{}}}", attrs.join(", "))
            }
        );
    }
    for v in &g.outputs {
        let _ = writeln!(s, "output {}", ty(*v));
    }
    Ok(s)
}

/// Dumps a model: opsets then the graph.
pub fn dump_model(m: &Model) -> Result<String, super::IrError> {
    let mut s = String::new();
    for (d, v) in &m.opsets {
        let _ = writeln!(
            s,
            "opset {}={}",
            if d.is_empty() { "ai.onnx" } else { d },
            v
        );
    }
    s.push_str(&dump_graph(&m.graph)?);
    Ok(s)
}
