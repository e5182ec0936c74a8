//! The dataflow graph: nodes in a petgraph `StableDiGraph` (edges run producer → consumer and
//! carry the value id), values in an arena. Both are addressed by newtype ids so petgraph never
//! appears in the public API.
//!
//! Invariant kept by every mutating method: for each node input value with a producer there is
//! exactly one edge producer → consumer per input slot, so topological order and cycle detection
//! can use petgraph directly.

use super::{Attr, Dim, IrError, Opaque};
use crate::tensor::{DType, Tensor};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use std::sync::Arc;

/// Identifies a node of a [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(NodeIndex<u32>);

/// Identifies a value (tensor) of a [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub(crate) u32);

impl ValueId {
    /// Dense index of the value, usable for per-value tables of size [`Graph::value_count`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl NodeId {
    /// Index of the node (stable while the node exists).
    pub fn index(self) -> usize {
        self.0.index()
    }
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Node name (may be empty).
    pub name: String,
    /// Operator type, e.g. `Conv`.
    pub op_type: String,
    /// Operator domain; empty for the default ONNX domain.
    pub domain: String,
    /// Inputs; `None` for an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// Outputs; `None` for an omitted optional output.
    pub outputs: Vec<Option<ValueId>>,
    /// Attributes in file order.
    pub attrs: Vec<Attr>,
    /// Documentation string.
    pub doc_string: String,
    /// Format-specific fields mfq does not interpret (kept for faithful export).
    pub opaque: Opaque,
}

impl Node {
    /// A node with no attributes, name or extra fields.
    pub fn new(op_type: &str, inputs: Vec<Option<ValueId>>, outputs: Vec<Option<ValueId>>) -> Node {
        Node {
            name: String::new(),
            op_type: op_type.to_string(),
            domain: String::new(),
            inputs,
            outputs,
            attrs: Vec::new(),
            doc_string: String::new(),
            opaque: Opaque::default(),
        }
    }

    /// A label for messages: `Conv 'conv1'` or `Conv (unnamed)`.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            format!("{} (unnamed)", self.op_type)
        } else {
            format!("{} '{}'", self.op_type, self.name)
        }
    }

    /// Attribute by name.
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }
}

/// One tensor-valued edge of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// Tensor name (unique within the graph; may be empty only for internal temporaries).
    pub name: String,
    /// Element type when known.
    pub dtype: Option<DType>,
    /// Shape when known (rank known, each dim known, symbolic or unknown).
    pub shape: Option<Vec<Dim>>,
    /// Constant data (initializers and folded constants).
    pub constant: Option<Arc<Tensor>>,
    /// Format-specific fields of the initializer this came from.
    pub init_opaque: Opaque,
    /// Format-specific fields of the input/output/value_info entry this came from.
    pub info_opaque: Opaque,
    /// Documentation string of the value_info/input/output entry.
    pub doc_string: String,
}

impl Value {
    /// A value with only a name.
    pub fn named(name: &str) -> Value {
        Value {
            name: name.to_string(),
            dtype: None,
            shape: None,
            constant: None,
            init_opaque: Opaque::default(),
            info_opaque: Opaque::default(),
            doc_string: String::new(),
        }
    }

    /// Static shape, when every dim is known.
    pub fn static_shape(&self) -> Option<Vec<usize>> {
        if let Some(c) = &self.constant {
            return Some(c.shape().to_vec());
        }
        self.shape.as_ref()?.iter().map(|d| d.known()).collect()
    }
}

/// A graph input (a value that the caller feeds, possibly with an initializer default).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphInput {
    /// The value fed by the caller.
    pub value: ValueId,
}

/// The dataflow graph of a model.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    nodes: StableDiGraph<Node, ValueId>,
    values: Vec<Value>,
    /// Producer of each value (node, output slot).
    producer: Vec<Option<(NodeId, usize)>>,
    /// Graph inputs in order (values fed by the caller; may have a constant default).
    pub inputs: Vec<ValueId>,
    /// Graph outputs in order.
    pub outputs: Vec<ValueId>,
    /// Initializers in file order (values with constant data stored as initializers).
    pub initializers: Vec<ValueId>,
    /// Graph name.
    pub name: String,
    /// Graph doc string.
    pub doc_string: String,
    /// Values with a value_info entry, in file order.
    pub value_info: Vec<ValueId>,
    /// Remaining graph fields in source format (annotations, metadata, unknown fields).
    pub opaque: Opaque,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Adds a value and returns its id.
    pub fn add_value(&mut self, v: Value) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(v);
        self.producer.push(None);
        id
    }

    /// Adds an initializer-style constant value.
    pub fn add_constant(&mut self, name: &str, t: Tensor) -> ValueId {
        let mut v = Value::named(name);
        v.dtype = Some(t.dtype());
        v.shape = Some(t.shape().iter().map(|&d| Dim::Known(d)).collect());
        v.constant = Some(Arc::new(t));
        let id = self.add_value(v);
        self.initializers.push(id);
        id
    }

    /// Number of value slots (including values no longer referenced).
    pub fn value_count(&self) -> usize {
        self.values.len()
    }

    /// A value by id.
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    /// Mutable access to a value.
    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.index()]
    }

    /// All value ids.
    pub fn value_ids(&self) -> impl Iterator<Item = ValueId> + '_ {
        (0..self.values.len() as u32).map(ValueId)
    }

    /// A node by id.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    /// Mutable access to a node's name, attributes and extra fields. Change inputs/outputs only
    /// through [`Graph::set_input`] so edges stay consistent.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.0]
    }

    /// Node ids in insertion order (not necessarily topological).
    pub fn node_ids(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.nodes.node_indices().map(NodeId).collect();
        v.sort();
        v
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.node_count()
    }

    /// Producer (node, output slot) of a value.
    pub fn producer(&self, v: ValueId) -> Option<(NodeId, usize)> {
        self.producer[v.index()]
    }

    /// Consumers (node, input slot) of a value, in node order.
    pub fn consumers(&self, v: ValueId) -> Vec<(NodeId, usize)> {
        let mut out = Vec::new();
        for n in self.node_ids() {
            for (i, inp) in self.node(n).inputs.iter().enumerate() {
                if *inp == Some(v) {
                    out.push((n, i));
                }
            }
        }
        out
    }

    /// Adds a node; its outputs must not already have a producer.
    pub fn add_node(&mut self, node: Node) -> Result<NodeId, IrError> {
        for o in node.outputs.iter().flatten() {
            if let Some((p, _)) = self.producer[o.index()] {
                return Err(IrError::MultipleProducers {
                    value: self.value(*o).name.clone(),
                    first: self.node(p).label(),
                    second: node.label(),
                });
            }
        }
        let inputs = node.inputs.clone();
        let outputs = node.outputs.clone();
        let idx = self.nodes.add_node(node);
        let id = NodeId(idx);
        for (slot, o) in outputs.iter().enumerate() {
            if let Some(o) = o {
                self.producer[o.index()] = Some((id, slot));
            }
        }
        for v in inputs.into_iter().flatten() {
            if let Some((p, _)) = self.producer[v.index()] {
                self.nodes.add_edge(p.0, idx, v);
            }
        }
        // Consumers added earlier than this producer (possible during import) get their edges.
        for o in outputs.into_iter().flatten() {
            for (c, _) in self.consumers(o) {
                if c != id {
                    self.nodes.add_edge(idx, c.0, o);
                }
            }
        }
        Ok(id)
    }

    /// Removes a node; its outputs lose their producer.
    pub fn remove_node(&mut self, id: NodeId) -> Option<Node> {
        let n = self.nodes.remove_node(id.0)?;
        for o in n.outputs.iter().flatten() {
            if self.producer[o.index()].map(|p| p.0) == Some(id) {
                self.producer[o.index()] = None;
            }
        }
        Some(n)
    }

    /// Replaces input `slot` of `node` by `v`.
    pub fn set_input(&mut self, node: NodeId, slot: usize, v: Option<ValueId>) {
        let old = self.nodes[node.0].inputs.get(slot).copied().flatten();
        if let Some(old) = old {
            if let Some((p, _)) = self.producer[old.index()] {
                let e = self
                    .nodes
                    .edges_connecting(p.0, node.0)
                    .find(|e| *e.weight() == old)
                    .map(|e| e.id());
                if let Some(e) = e {
                    self.nodes.remove_edge(e);
                }
            }
        }
        let inputs = &mut self.nodes[node.0].inputs;
        if inputs.len() <= slot {
            inputs.resize(slot + 1, None);
        }
        inputs[slot] = v;
        if let Some(v) = v {
            if let Some((p, _)) = self.producer[v.index()] {
                self.nodes.add_edge(p.0, node.0, v);
            }
        }
    }

    /// Makes every consumer of `old` (and the graph outputs) use `new` instead.
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) {
        for (n, slot) in self.consumers(old) {
            self.set_input(n, slot, Some(new));
        }
        for o in self.outputs.iter_mut() {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Nodes in a deterministic topological order (ties broken by node index).
    pub fn topo_order(&self) -> Result<Vec<NodeId>, IrError> {
        let mut indeg: std::collections::BTreeMap<NodeIndex<u32>, usize> =
            self.nodes.node_indices().map(|n| (n, 0)).collect();
        for e in self.nodes.edge_references() {
            *indeg.entry(e.target()).or_default() += 1;
        }
        let mut ready: std::collections::BTreeSet<NodeIndex<u32>> = indeg
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(n) = ready.pop_first() {
            order.push(NodeId(n));
            for e in self.nodes.edges(n) {
                if let Some(d) = indeg.get_mut(&e.target()) {
                    *d -= 1;
                    if *d == 0 {
                        ready.insert(e.target());
                    }
                }
            }
        }
        if order.len() != indeg.len() {
            let stuck = indeg
                .iter()
                .filter(|(n, _)| !order.contains(&NodeId(**n)))
                .map(|(n, _)| self.nodes[*n].label())
                .next()
                .unwrap_or_default();
            return Err(IrError::Cycle { node: stuck });
        }
        Ok(order)
    }

    /// Looks a value up by name (linear scan).
    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.values
            .iter()
            .position(|v| v.name == name)
            .map(|i| ValueId(i as u32))
    }

    /// True when `v` is a graph input fed by the caller.
    pub fn is_input(&self, v: ValueId) -> bool {
        self.inputs.contains(&v)
    }

    /// Graph inputs that have no initializer default (the ones a caller must feed).
    pub fn required_inputs(&self) -> Vec<ValueId> {
        self.inputs
            .iter()
            .copied()
            .filter(|v| self.value(*v).constant.is_none())
            .collect()
    }

    /// A fresh value name derived from `base`, unique in the graph.
    pub fn fresh_name(&self, base: &str) -> String {
        let names: std::collections::HashSet<&str> =
            self.values.iter().map(|v| v.name.as_str()).collect();
        if !names.contains(base) {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !names.contains(n.as_str()))
            .unwrap_or_else(|| base.to_string())
    }
}
