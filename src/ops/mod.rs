//! Operator semantics, one module per op family. [`build`] turns an IR node plus the imported
//! opset into an executable [`Op`]: it reads every attribute through [`Attrs`], which rejects
//! attributes it did not read, so partial support is an error before running rather than a
//! silently wrong result. Simple elementwise and shape ops compute here; heavy math is delegated
//! to `crate::kernels`.

pub mod elementwise;
pub mod linalg;
pub mod nn;
pub mod quant;
pub mod reduce;
pub mod shape;

use crate::ir::{AttrValue, Node};
use crate::tensor::{Tensor, TensorError};
use std::cell::RefCell;
use std::collections::HashSet;

/// Error building or evaluating an op. The interpreter adds the node name.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum OpError {
    #[error("unsupported operator {domain}{op} at opset {opset}")]
    UnsupportedOp {
        op: String,
        domain: String,
        opset: i64,
    },
    #[error("{op} (opset {opset}): attribute '{attr}': {reason}")]
    Attribute {
        op: String,
        opset: i64,
        attr: String,
        reason: String,
    },
    #[error("{op}: input {index}: {reason}")]
    Input {
        op: String,
        index: usize,
        reason: String,
    },
    #[error("{op}: {reason}")]
    Eval { op: String, reason: String },
    #[error(transparent)]
    Kernel(#[from] crate::kernels::KernelError),
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

/// An executable operator with its attributes parsed.
pub trait Op: Send + Sync + std::fmt::Debug {
    /// Evaluates the op. `inputs[i]` is `None` for an omitted optional input.
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError>;

    /// Evaluates with ownership of input 0 (`first`), which the caller no longer needs, so
    /// elementwise and shape-only ops can reuse its buffer. `rest[0]` is `None`; the other
    /// entries are the remaining inputs. Must compute exactly what [`Op::eval`] computes; the
    /// default simply borrows `first`.
    fn eval_owned(&self, first: Tensor, rest: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let mut ins = rest.to_vec();
        if ins.is_empty() {
            ins.push(None);
        }
        ins[0] = Some(&first);
        let out = self.eval(&ins);
        drop(ins);
        recycle(first);
        out
    }

    /// This op with the elementwise clamp `act` applied to its (single, float) output as it is
    /// produced, computing exactly `act` of [`Op::eval`]'s result; `None` when the op has no
    /// fused form. The interpreter uses it to fold a following Relu/Clip into a Conv.
    fn with_clamp(&self, _act: crate::kernels::conv::Clamp) -> Option<Box<dyn Op>> {
        None
    }

    /// The clamp this op computes when it is a float Relu or Clip whose inputs after the first
    /// are the given constants (`None` entries: omitted inputs); `None` for any other op or when
    /// the bounds cannot be read.
    fn as_clamp(&self, _consts: &[Option<&Tensor>]) -> Option<crate::kernels::conv::Clamp> {
        None
    }

    /// Multiply-accumulate count for the given input shapes (0 when not a MAC op).
    fn macs(&self, _inputs: &[Option<&[usize]>], _outputs: &[&[usize]]) -> u64 {
        0
    }

    /// Length of each dot product this op computes (reduction length), when it has one.
    fn dot_length(&self, _inputs: &[Option<&[usize]>]) -> Option<usize> {
        None
    }
}

/// Reads attributes of one node and remembers which were read.
pub struct Attrs<'a> {
    node: &'a Node,
    opset: i64,
    read: RefCell<HashSet<&'a str>>,
}

impl<'a> Attrs<'a> {
    /// Starts reading `node`'s attributes.
    pub fn new(node: &'a Node, opset: i64) -> Attrs<'a> {
        Attrs {
            node,
            opset,
            read: RefCell::new(HashSet::new()),
        }
    }

    /// Number of outputs the node declares.
    pub fn n_outputs(&self) -> usize {
        self.node.outputs.len()
    }

    /// The opset the node is interpreted at.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// An attribute error for this node.
    pub fn err(&self, attr: &str, reason: impl Into<String>) -> OpError {
        OpError::Attribute {
            op: self.node.op_type.clone(),
            opset: self.opset,
            attr: attr.to_string(),
            reason: reason.into(),
        }
    }

    fn get(&self, name: &str) -> Option<&'a AttrValue> {
        let a = self.node.attrs.iter().find(|a| a.name == name)?;
        self.read.borrow_mut().insert(a.name.as_str());
        Some(&a.value)
    }

    /// True when the attribute is present (marks it read).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Optional int attribute.
    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Int(i)) => Ok(Some(*i)),
            Some(v) => Err(self.err(name, format!("expected an int, got {}", v.kind()))),
        }
    }

    /// Int attribute with default.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, OpError> {
        Ok(self.opt_int(name)?.unwrap_or(default))
    }

    /// Optional float attribute (ints are accepted).
    pub fn opt_float(&self, name: &str) -> Result<Option<f32>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Float(f)) => Ok(Some(*f)),
            Some(AttrValue::Int(i)) => Ok(Some(*i as f32)),
            Some(v) => Err(self.err(name, format!("expected a float, got {}", v.kind()))),
        }
    }

    /// Float attribute with default.
    pub fn float(&self, name: &str, default: f32) -> Result<f32, OpError> {
        Ok(self.opt_float(name)?.unwrap_or(default))
    }

    /// Optional ints attribute.
    pub fn opt_ints(&self, name: &str) -> Result<Option<Vec<i64>>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v.clone())),
            Some(AttrValue::Int(i)) => Ok(Some(vec![*i])),
            Some(v) => Err(self.err(name, format!("expected ints, got {}", v.kind()))),
        }
    }

    /// Optional floats attribute.
    pub fn opt_floats(&self, name: &str) -> Result<Option<Vec<f32>>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Floats(v)) => Ok(Some(v.clone())),
            Some(v) => Err(self.err(name, format!("expected floats, got {}", v.kind()))),
        }
    }

    /// Optional string attribute.
    pub fn opt_string(&self, name: &str) -> Result<Option<String>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::String(s)) => Ok(Some(String::from_utf8_lossy(s).into_owned())),
            Some(v) => Err(self.err(name, format!("expected a string, got {}", v.kind()))),
        }
    }

    /// String attribute with default.
    pub fn string(&self, name: &str, default: &str) -> Result<String, OpError> {
        Ok(self
            .opt_string(name)?
            .unwrap_or_else(|| default.to_string()))
    }

    /// Optional tensor attribute.
    pub fn opt_tensor(&self, name: &str) -> Result<Option<&'a Tensor>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Tensor(t)) => Ok(Some(t)),
            Some(v) => Err(self.err(name, format!("expected a tensor, got {}", v.kind()))),
        }
    }

    /// Errors on the first attribute that was never read (unknown or unsupported).
    pub fn finish(&self) -> Result<(), OpError> {
        let read = self.read.borrow();
        for a in &self.node.attrs {
            if !read.contains(a.name.as_str()) {
                return Err(self.err(&a.name, "unknown or unsupported attribute"));
            }
        }
        Ok(())
    }
}

/// Domains whose ops mean the QONNX custom ops.
pub const QONNX_DOMAINS: [&str; 3] = [
    "qonnx.custom_op.general",
    "onnx.brevitas",
    "finn.custom_op.general",
];

/// Highest default-domain opset accepted. Opsets 24 and 25 changed no semantics of the ops
/// implemented here: their new operator versions (Cast, CastLike, Constant, ConstantOfShape,
/// QuantizeLinear, DequantizeLinear, Flatten, Identity, Pad, Reshape, Shape, Size, Squeeze,
/// Transpose, Unsqueeze) only add element types (FLOAT8E8M0 in 24, INT2/UINT2 in 25) and Cast's
/// `round_mode` for FLOAT8E8M0, which is refused; the ops new in 24/25 (Attention, Swish, TopK,
/// TensorScatter, …) are not implemented and are refused by name. Opset 26 and later change
/// semantics (e.g. Range, Mod, Einsum, DepthToSpace in 27/28) and are refused.
pub const MAX_DEFAULT_OPSET: i64 = 25;

/// Builds the executable op for a node at the given opset of its domain.
pub fn build(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs::new(node, opset);
    let dom = node.domain.as_str();
    let op: Box<dyn Op> = if dom.is_empty() || dom == "ai.onnx" {
        if !(1..=MAX_DEFAULT_OPSET).contains(&opset) {
            return Err(unsupported(node, opset));
        }
        if let Some(op) = elementwise::build(&node.op_type, &a)? {
            op
        } else if let Some(op) = shape::build(&node.op_type, &a)? {
            op
        } else if let Some(op) = nn::build(&node.op_type, &a)? {
            op
        } else if let Some(op) = linalg::build(&node.op_type, &a)? {
            op
        } else if let Some(op) = reduce::build(&node.op_type, &a)? {
            op
        } else if let Some(op) = quant::build_onnx(&node.op_type, &a)? {
            op
        } else {
            return Err(unsupported(node, opset));
        }
    } else if QONNX_DOMAINS.contains(&dom) {
        match quant::build_qonnx(&node.op_type, &a)? {
            Some(op) => op,
            None => return Err(unsupported(node, opset)),
        }
    } else {
        return Err(unsupported(node, opset));
    };
    a.finish()?;
    Ok(op)
}

fn unsupported(node: &Node, opset: i64) -> OpError {
    OpError::UnsupportedOp {
        op: node.op_type.clone(),
        domain: if node.domain.is_empty() {
            String::new()
        } else {
            format!("{}::", node.domain)
        },
        opset,
    }
}

/// Returns input `i` or an error naming it.
pub fn input<'t>(op: &str, inputs: &[Option<&'t Tensor>], i: usize) -> Result<&'t Tensor, OpError> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| OpError::Input {
            op: op.to_string(),
            index: i,
            reason: "required input is missing".into(),
        })
}

/// Hands a dead tensor's f32 storage back to the kernels' buffer pool
/// (`kernels::buffer`), so the next large output does not start from fresh pages.
pub fn recycle(t: Tensor) {
    if let Tensor::F32(a) = t {
        crate::kernels::buffer::recycle(a.into_raw_vec_and_offset().0);
    }
}

/// Returns input `i` as f32 (converting other numeric types).
pub fn input_f32<'a>(
    op: &str,
    inputs: &[Option<&'a Tensor>],
    i: usize,
) -> Result<std::borrow::Cow<'a, ndarray::ArrayD<f32>>, OpError> {
    let t = input(op, inputs, i)?;
    Ok(match t.as_f32() {
        // Borrowed: copying a large activation costs as much as a convolution (fresh pages).
        Some(a) => std::borrow::Cow::Borrowed(a),
        None => std::borrow::Cow::Owned(t.to_f32()?),
    })
}

/// Returns input `i` as a vector of i64 (for shape-like inputs).
pub fn input_i64s(op: &str, inputs: &[Option<&Tensor>], i: usize) -> Result<Vec<i64>, OpError> {
    Ok(input(op, inputs, i)?.to_i64()?.iter().copied().collect())
}

/// Optional input `i` as i64s.
pub fn opt_input_i64s(inputs: &[Option<&Tensor>], i: usize) -> Result<Option<Vec<i64>>, OpError> {
    match inputs.get(i).copied().flatten() {
        None => Ok(None),
        Some(t) => Ok(Some(t.to_i64()?.iter().copied().collect())),
    }
}

/// Resolves a possibly negative axis against `rank`.
pub fn axis(op: &str, a: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let x = if a < 0 { a + r } else { a };
    if x < 0 || x >= r.max(1) {
        return Err(OpError::Eval {
            op: op.to_string(),
            reason: format!("axis {a} out of range for rank {rank}"),
        });
    }
    Ok(x as usize)
}

/// An evaluation error.
pub fn eval_err(op: &str, reason: impl Into<String>) -> OpError {
    OpError::Eval {
        op: op.to_string(),
        reason: reason.into(),
    }
}
