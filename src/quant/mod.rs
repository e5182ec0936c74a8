//! `mfq quantize`: plan which tensors to quantize, calibrate activations with streaming
//! statistics, quantize weights, simulate the quantized model, evaluate it against float with a
//! per-tensor diagnosis, and export QDQ or QONNX.
//!
//! Invariant: the simulation graph is the QONNX export minus the (idempotent) weight quantizers,
//! so what mfq reports is what the exported file computes.

pub mod calibrate;
pub mod cost;
pub mod materialize;
pub mod pipeline;
pub mod plan;
pub mod recipe;
pub mod sweep_eval;

pub use pipeline::{
    evaluate, export, prepare, prepare_recipe, quantize, EvalReport, Fixed, PassRecord,
    QuantizeError, QuantizeResult,
};
pub use recipe::Recipe;
