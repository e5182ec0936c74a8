//! The model IR: a dataflow [`Graph`] of ONNX-style nodes plus model-level facts (opsets,
//! metadata). Transforms live in submodules; each one leaves a graph that passes [`verify`].
//!
//! The IR is format-neutral: the protobuf types stay in `crate::onnx`. Fields that mfq does not
//! interpret travel as [`Opaque`] bytes so export can reproduce them.

pub mod dump;
pub mod fold;
pub mod graph;
pub mod transform;
pub mod verify;

pub use graph::{Graph, GraphInput, Node, NodeId, Value, ValueId};

use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// Serialized fields of the source format that mfq carries without interpreting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opaque(pub Vec<u8>);

/// One dimension of a value's shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A known size.
    Known(usize),
    /// A named symbolic size (e.g. `batch`).
    Sym(String),
    /// Unknown.
    Unknown,
}

impl Dim {
    /// The size when known.
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => write!(f, "{s}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

/// A node attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    /// Attribute name.
    pub name: String,
    /// Attribute value.
    pub value: AttrValue,
}

/// Attribute values. Graph, type and sparse-tensor attributes are carried opaquely.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    String(Vec<u8>),
    Tensor(Tensor),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    /// An attribute kind mfq does not interpret (graphs, types, sparse tensors), serialized.
    Opaque(Opaque),
}

impl AttrValue {
    /// Short kind name for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AttrValue::Float(_) => "float",
            AttrValue::Int(_) => "int",
            AttrValue::String(_) => "string",
            AttrValue::Tensor(_) => "tensor",
            AttrValue::Floats(_) => "floats",
            AttrValue::Ints(_) => "ints",
            AttrValue::Strings(_) => "strings",
            AttrValue::Opaque(_) => "graph/type/sparse",
        }
    }
}

/// Model-level metadata carried through unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelMeta {
    pub ir_version: i64,
    pub producer_name: String,
    pub producer_version: String,
    pub domain: String,
    pub model_version: i64,
    pub doc_string: String,
    pub metadata_props: Vec<(String, String)>,
}

/// A model: graph, opset imports and metadata.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The main graph.
    pub graph: Graph,
    /// Opset version per domain (`""` is the default ONNX domain).
    pub opsets: BTreeMap<String, i64>,
    /// Metadata.
    pub meta: ModelMeta,
    /// Remaining model fields (functions, training info, unknown fields) in source format.
    pub opaque: Opaque,
}

impl Model {
    /// Opset of the default domain (`ai.onnx`), if imported.
    pub fn default_opset(&self) -> Option<i64> {
        self.opsets
            .get("")
            .or_else(|| self.opsets.get("ai.onnx"))
            .copied()
    }

    /// Opset version imported for a node's domain.
    pub fn opset_for(&self, domain: &str) -> Option<i64> {
        if domain.is_empty() || domain == "ai.onnx" {
            self.default_opset()
        } else {
            self.opsets.get(domain).copied()
        }
    }
}

/// Errors raised by IR construction, verification and transforms.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IrError {
    #[error("graph has a cycle through node {node}")]
    Cycle { node: String },
    #[error("tensor '{value}' is produced by both {first} and {second}")]
    MultipleProducers {
        value: String,
        first: String,
        second: String,
    },
    #[error("node {node} uses tensor '{value}', which no node, input or initializer defines")]
    Undefined { node: String, value: String },
    #[error("graph output '{value}' is not defined by any node, input or initializer")]
    UndefinedOutput { value: String },
    #[error("tensor name '{0}' is used by more than one value")]
    DuplicateName(String),
    #[error(
        "value '{value}': constant shape {constant:?} disagrees with declared shape {declared}"
    )]
    ShapeMismatch {
        value: String,
        constant: Vec<usize>,
        declared: String,
    },
    #[error("after transform '{pass}': {error}")]
    AfterPass { pass: String, error: Box<IrError> },
    #[error("transform '{pass}' failed at node {node}: {reason}")]
    Transform {
        pass: String,
        node: String,
        reason: String,
    },
    #[error("{0}")]
    Other(String),
}
