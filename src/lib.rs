//! mfq: a post-training quantization compiler and FPGA cost model for integer and minifloat
//! formats. See ARCHITECTURE.md for the map of modules.

pub mod calib;
pub mod cli;
pub mod data;
pub mod ir;
pub mod kernels;
pub mod onnx;
pub mod passes;
pub mod tensor;
pub mod util;
