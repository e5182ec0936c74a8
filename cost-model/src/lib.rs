//! FPGA resource estimator for integer and minifloat multiply-accumulate datapaths.
//!
//! - [`operand`]: how a number format decodes inside a MAC (sign, significand, shift).
//! - [`accum`]: exact (Kulisch) and data-aware accumulator widths.
//! - [`rtl`]: Verilog generator for the MAC units the model describes.
//! - [`reference`]: bit-exact software model of those units (used to prove the RTL).
//! - [`sim`]: runs generated RTL under iverilog against the reference.
//!
//! Queries take plain structs built from `quant_formats::Format`; nothing here depends on the
//! model IR.

pub mod accum;
pub mod estimate;
pub mod fit;
pub mod grid;
pub mod layers;
pub mod operand;
pub mod reference;
pub mod rtl;
pub mod sim;

pub use accum::{data_aware_width, exact_width, kulisch_width};
pub use operand::Operand;
pub use rtl::{generate_verilog, Datapath, MacSpec, SignStyle};

/// Errors of the cost model. Messages name the format, option, file or layer at fault.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    /// A format or option outside what the model covers.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An invalid query or input value.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A file could not be read or parsed.
    #[error("{path}: {msg}")]
    File {
        /// The file at fault.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// An external tool (iverilog, yosys) is missing or failed.
    #[error("{0}")]
    Tool(String),
}
