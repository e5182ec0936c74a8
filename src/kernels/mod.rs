//! Numeric kernels for the interpreter: pure functions over `ndarray` f32 arrays that implement
//! the arithmetic of ONNX operators once their attributes have been parsed and normalised by the
//! caller (auto_pad resolved to explicit pads, negative axes resolved, opset differences folded).
//!
//! Every function validates shapes and returns [`KernelError`] instead of panicking. Results are
//! deterministic: each output element is produced by one task with a fixed reduction order, and
//! the way work is split depends only on the shapes, never on the number of threads.
//!
//! Index of kernels (module — function — ONNX operator):
//! - [`buffer`] — per-thread recycling of large output buffers ([`buffer::take`],
//!   [`buffer::recycle`]), so big tensors do not page-fault on every op.
//! - [`conv`] — [`conv::conv`] (Conv, N-d: 1-D/2-D/3-D…, groups, strides, dilations, pads, bias;
//!   im2col + GEMM, 1×1 fast path, dedicated depthwise 2-D kernel),
//!   [`conv::conv_transpose`] (ConvTranspose; `output_shape` is resolved to pads by the caller),
//!   [`conv::conv_transpose_output_len`] and [`conv::conv_output_len`] (shape helpers).
//! - [`matmul`] — [`matmul::matmul`] (MatMul: batched, numpy broadcast, 1-D promotion),
//!   [`matmul::gemm`] (Gemm: transA/transB/alpha/beta, unidirectional C broadcast),
//!   [`matmul::sgemm`] (low-level row-major single-precision GEMM on slices).
//! - [`pool`] — [`pool::max_pool`], [`pool::average_pool`] (MaxPool/AveragePool: kernel, strides,
//!   pads, dilations, ceil_mode, count_include_pad), [`pool::global_average_pool`],
//!   [`pool::global_max_pool`], [`pool::pool_output_len`].
//! - [`norm`] — [`norm::softmax`], [`norm::log_softmax`] (opset ≥ 13 single-axis semantics),
//!   [`norm::softmax_flattened`] / [`norm::log_softmax_flattened`] (opset < 13 semantics),
//!   [`norm::layer_normalization`], [`norm::instance_normalization`],
//!   [`norm::batch_normalization`] (inference form).
//! - [`reduce`] — [`reduce::reduce`] with [`reduce::ReduceOp`] Mean/Sum/Max/Min/Prod over axes,
//!   keepdims and noop_with_empty_axes.
//! - [`elementwise`] — [`elementwise::erf`] / [`elementwise::erf_f32`] (precise Erf).
//! - [`resize`] — [`resize::resize`] (Resize: nearest with all nearest_modes, linear, cubic;
//!   half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric).
//! - [`pad`] — [`pad::pad`] (Pad: constant, reflect, edge, wrap; negative pads crop).
//! - [`layout`] — [`layout::depth_to_space`] (DepthToSpace, DCR and CRD).
//! - [`layout`] also has [`layout::space_to_depth`] (SpaceToDepth).
//! - [`einsum`] — [`einsum::einsum`] (Einsum: explicit/implicit output, ellipsis, repeated
//!   indices (diagonals), summed-out indices; evaluated pairwise via batched GEMM).

pub mod buffer;
pub mod conv;
pub mod einsum;
pub mod elementwise;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod pad;
pub mod pool;
pub mod reduce;
pub mod resize;

#[cfg(test)]
mod oracle_tests;

/// Error returned by every kernel: the operand or parameter that is inconsistent, with the
/// offending values.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KernelError {
    /// An input has the wrong rank or dimensions for the operator.
    #[error("{op}: shape mismatch: {detail}")]
    Shape {
        /// Operator (e.g. "Conv").
        op: &'static str,
        /// Which tensors/dimensions disagree.
        detail: String,
    },
    /// A parameter value is invalid (e.g. zero stride, axis out of range).
    #[error("{op}: invalid parameter {param}: {detail}")]
    Param {
        /// Operator (e.g. "Conv").
        op: &'static str,
        /// Parameter name as spelled in ONNX (e.g. "strides").
        param: &'static str,
        /// What is wrong with the value.
        detail: String,
    },
    /// A parameter value is valid ONNX but not supported by this kernel.
    #[error("{op}: unsupported {param}: {detail}")]
    Unsupported {
        /// Operator.
        op: &'static str,
        /// Parameter name as spelled in ONNX.
        param: &'static str,
        /// The unsupported value.
        detail: String,
    },
}

pub(crate) fn shape_err(op: &'static str, detail: impl Into<String>) -> KernelError {
    KernelError::Shape {
        op,
        detail: detail.into(),
    }
}

pub(crate) fn param_err(
    op: &'static str,
    param: &'static str,
    detail: impl Into<String>,
) -> KernelError {
    KernelError::Param {
        op,
        param,
        detail: detail.into(),
    }
}

/// Resolves a possibly negative ONNX axis against `rank`.
pub fn normalize_axis(op: &'static str, axis: i64, rank: usize) -> Result<usize, KernelError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(param_err(
            op,
            "axis",
            format!("axis {axis} out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}

#[cfg(test)]
pub(crate) mod testutil {
    use ndarray::ArrayD;

    /// Deterministic pseudo-random values in [-1, 1) (xorshift), for tests.
    pub fn rand_array(shape: &[usize], seed: u64) -> ArrayD<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        ArrayD::from_shape_vec(shape.to_vec(), v).expect("shape")
    }

    pub fn assert_close(a: &ArrayD<f32>, b: &ArrayD<f32>, tol: f32) {
        assert_eq!(a.shape(), b.shape(), "shapes differ");
        for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "element {i}: {x} vs {y} (tol {tol})"
            );
        }
    }
}
