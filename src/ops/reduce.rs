//! Reductions and softmax-style normalisations over axes: ReduceMean/Sum/Max/Min/Prod (axes as
//! an attribute before opset 13 for ReduceSum and before 18 for the others, as an input after),
//! Softmax and LogSoftmax (flattened semantics before opset 13, single axis after).

use super::{input_f32, opt_input_i64s, Attrs, Op, OpError};
use crate::kernels::{self, reduce::ReduceOp};
use crate::tensor::Tensor;

#[derive(Debug)]
struct Reduce {
    op: ReduceOp,
    attr_axes: Option<Vec<i64>>,
    from_input: bool,
    keepdims: bool,
    noop_with_empty_axes: bool,
}

impl Op for Reduce {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input_f32("Reduce", inputs, 0)?;
        let axes = if self.from_input {
            opt_input_i64s(inputs, 1)?
        } else {
            self.attr_axes.clone()
        }
        .unwrap_or_default();
        Ok(vec![Tensor::F32(kernels::reduce::reduce(
            &x.view(),
            &axes,
            self.keepdims,
            self.noop_with_empty_axes,
            self.op,
        )?)])
    }
}

#[derive(Debug)]
struct Softmax {
    log: bool,
    axis: i64,
    flattened: bool,
}

impl Op for Softmax {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input_f32("Softmax", inputs, 0)?;
        let v = x.view();
        let y = match (self.log, self.flattened) {
            (false, false) => kernels::norm::softmax(&v, self.axis)?,
            (true, false) => kernels::norm::log_softmax(&v, self.axis)?,
            (false, true) => kernels::norm::softmax_flattened(&v, self.axis)?,
            (true, true) => kernels::norm::log_softmax_flattened(&v, self.axis)?,
        };
        Ok(vec![Tensor::F32(y)])
    }
}

/// Builds a reduction op, or `None` if `op` is not in this family.
pub fn build(op: &str, a: &Attrs) -> Result<Option<Box<dyn Op>>, OpError> {
    let rop = match op {
        "ReduceMean" => ReduceOp::Mean,
        "ReduceSum" => ReduceOp::Sum,
        "ReduceMax" => ReduceOp::Max,
        "ReduceMin" => ReduceOp::Min,
        "ReduceProd" => ReduceOp::Prod,
        "Softmax" | "LogSoftmax" => {
            let flattened = a.opset() < 13;
            return Ok(Some(Box::new(Softmax {
                log: op == "LogSoftmax",
                axis: a.int("axis", if flattened { 1 } else { -1 })?,
                flattened,
            })));
        }
        _ => return Ok(None),
    };
    let input_from = if rop == ReduceOp::Sum { 13 } else { 18 };
    let from_input = a.opset() >= input_from;
    Ok(Some(Box::new(Reduce {
        op: rop,
        attr_axes: if from_input {
            None
        } else {
            a.opt_ints("axes")?
        },
        from_input,
        keepdims: a.int("keepdims", 1)? != 0,
        noop_with_empty_axes: from_input && a.int("noop_with_empty_axes", 0)? != 0,
    })))
}
