//! Matrix products: MatMul (batched, broadcast), Gemm and Einsum, delegated to
//! `crate::kernels::matmul` / `crate::kernels::einsum`.

use super::{input_f32, Attrs, Op, OpError};
use crate::kernels;
use crate::tensor::Tensor;

#[derive(Debug)]
struct MatMul;

impl Op for MatMul {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let a = input_f32("MatMul", inputs, 0)?;
        let b = input_f32("MatMul", inputs, 1)?;
        Ok(vec![Tensor::F32(kernels::matmul::matmul(
            &a.view(),
            &b.view(),
        )?)])
    }

    fn macs(&self, inputs: &[Option<&[usize]>], outputs: &[&[usize]]) -> u64 {
        match (self.dot_length(inputs), outputs.first()) {
            (Some(k), Some(o)) => k as u64 * o.iter().product::<usize>() as u64,
            _ => 0,
        }
    }

    fn dot_length(&self, inputs: &[Option<&[usize]>]) -> Option<usize> {
        inputs.first().copied().flatten()?.last().copied()
    }
}

#[derive(Debug)]
struct Gemm {
    p: kernels::matmul::GemmParams,
}

impl Op for Gemm {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let a = input_f32("Gemm", inputs, 0)?;
        let b = input_f32("Gemm", inputs, 1)?;
        let c = match inputs.get(2).copied().flatten() {
            Some(t) => Some(t.to_f32()?),
            None => None,
        };
        let cv = c.as_ref().map(|c| c.view());
        Ok(vec![Tensor::F32(kernels::matmul::gemm(
            &a.view(),
            &b.view(),
            cv.as_ref(),
            &self.p,
        )?)])
    }

    fn macs(&self, inputs: &[Option<&[usize]>], outputs: &[&[usize]]) -> u64 {
        match (self.dot_length(inputs), outputs.first()) {
            (Some(k), Some(o)) => k as u64 * o.iter().product::<usize>() as u64,
            _ => 0,
        }
    }

    fn dot_length(&self, inputs: &[Option<&[usize]>]) -> Option<usize> {
        let a = inputs.first().copied().flatten()?;
        if a.len() != 2 {
            return None;
        }
        Some(if self.p.trans_a { a[0] } else { a[1] })
    }
}

#[derive(Debug)]
struct Einsum {
    equation: String,
}

impl Op for Einsum {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let arrs: Vec<std::borrow::Cow<'_, ndarray::ArrayD<f32>>> = (0..inputs.len())
            .map(|i| input_f32("Einsum", inputs, i))
            .collect::<Result<_, _>>()?;
        let views: Vec<_> = arrs.iter().map(|a| a.view()).collect();
        Ok(vec![Tensor::F32(kernels::einsum::einsum(
            &self.equation,
            &views,
        )?)])
    }
}

/// Builds a linear-algebra op, or `None` if `op` is not in this family.
pub fn build(op: &str, a: &Attrs) -> Result<Option<Box<dyn Op>>, OpError> {
    let b: Box<dyn Op> = match op {
        "MatMul" => Box::new(MatMul),
        "Einsum" => Box::new(Einsum {
            equation: a
                .opt_string("equation")?
                .ok_or_else(|| a.err("equation", "required"))?
                .replace(' ', ""),
        }),
        "Gemm" => {
            if a.opset() < 7 && a.has("broadcast") {
                return Err(a.err("broadcast", "legacy opset < 7 attribute is not supported"));
            }
            Box::new(Gemm {
                p: kernels::matmul::GemmParams {
                    alpha: a.float("alpha", 1.0)?,
                    beta: a.float("beta", 1.0)?,
                    trans_a: a.int("transA", 0)? != 0,
                    trans_b: a.int("transB", 0)? != 0,
                },
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(b))
}
