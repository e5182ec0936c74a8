//! Structural graph transforms that need no op semantics: dead-code removal. Every transform is
//! followed by [`super::verify::verify`] through [`run_verified`].

use super::{Graph, IrError, ValueId};
use std::collections::HashSet;

/// Runs a transform and verifies the graph afterwards, naming the transform in any error.
pub fn run_verified<F>(g: &mut Graph, pass: &str, f: F) -> Result<(), IrError>
where
    F: FnOnce(&mut Graph) -> Result<(), IrError>,
{
    f(g)?;
    super::verify::verify(g).map_err(|e| IrError::AfterPass {
        pass: pass.to_string(),
        error: Box::new(e),
    })
}

/// Removes nodes whose outputs reach no graph output, and initializers nobody uses.
/// Returns the number of nodes removed.
pub fn remove_dead_code(g: &mut Graph) -> Result<usize, IrError> {
    let order = g.topo_order()?;
    let mut live: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let mut dead = Vec::new();
    for n in order.into_iter().rev() {
        let node = g.node(n);
        if node.outputs.iter().flatten().any(|o| live.contains(o)) {
            live.extend(node.inputs.iter().flatten().copied());
        } else {
            dead.push(n);
        }
    }
    let removed = dead.len();
    for n in dead {
        g.remove_node(n);
    }
    let inputs: HashSet<ValueId> = g.inputs.iter().copied().collect();
    g.initializers
        .retain(|v| live.contains(v) || inputs.contains(v));
    Ok(removed)
}
