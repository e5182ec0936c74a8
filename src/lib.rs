//! mfq: a post-training quantization compiler and FPGA cost model for integer and minifloat
//! formats. See ARCHITECTURE.md for the map of modules.

pub mod calib;
pub mod cli;
pub mod data;
pub mod interp;
pub mod ir;
pub mod kernels;
pub mod metrics;
pub mod onnx;
pub mod ops;
pub mod passes;
pub mod quant;
pub mod sweep;
pub mod tensor;
pub mod util;
