//! The IR verifier: every transform's result must pass it. Checks that the graph is acyclic,
//! that every used value is defined exactly once (by a node, a graph input or a constant), that
//! value names are unique, and that constants agree with declared shapes.

use super::{Dim, Graph, IrError};
use std::collections::HashSet;

/// Checks the graph's structural invariants.
pub fn verify(g: &Graph) -> Result<(), IrError> {
    g.topo_order()?;
    let defined = |v: super::ValueId| {
        g.producer(v).is_some() || g.is_input(v) || g.value(v).constant.is_some()
    };
    let mut used = HashSet::new();
    for n in g.node_ids() {
        let node = g.node(n);
        for v in node.inputs.iter().flatten() {
            used.insert(*v);
            if !defined(*v) {
                return Err(IrError::Undefined {
                    node: node.label(),
                    value: g.value(*v).name.clone(),
                });
            }
        }
        for v in node.outputs.iter().flatten() {
            used.insert(*v);
        }
    }
    for v in &g.outputs {
        used.insert(*v);
        if !defined(*v) {
            return Err(IrError::UndefinedOutput {
                value: g.value(*v).name.clone(),
            });
        }
    }
    used.extend(g.inputs.iter().copied());
    let mut names = HashSet::new();
    for v in used {
        let val = g.value(v);
        if !val.name.is_empty() && !names.insert(val.name.clone()) {
            return Err(IrError::DuplicateName(val.name.clone()));
        }
        if let (Some(c), Some(shape)) = (&val.constant, &val.shape) {
            let ok = c.shape().len() == shape.len()
                && c.shape().iter().zip(shape).all(|(a, d)| {
                    matches!(d, Dim::Known(b) if b == a) || !matches!(d, Dim::Known(_))
                });
            if !ok {
                return Err(IrError::ShapeMismatch {
                    value: val.name.clone(),
                    constant: c.shape().to_vec(),
                    declared: super::dump::shape_str(Some(shape)),
                });
            }
        }
    }
    Ok(())
}
