//! Quantization ops: ONNX QuantizeLinear/DequantizeLinear and the QONNX custom ops.

use super::{Attrs, Op, OpError};

/// Builds an ONNX-domain quantization op, or `None` if `op` is not in this family.
pub fn build_onnx(op: &str, a: &Attrs) -> Result<Option<Box<dyn Op>>, OpError> {
    let _ = (op, a);
    Ok(None)
}

/// Builds a QONNX custom op, or `None` if unknown.
pub fn build_qonnx(op: &str, a: &Attrs) -> Result<Option<Box<dyn Op>>, OpError> {
    let _ = (op, a);
    Ok(None)
}
