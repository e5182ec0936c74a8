//! ONNX protobuf in and out. This is the only module that sees protobuf types (from the
//! `onnx-protobuf` crate, rust-protobuf 3.4, which keeps unknown fields): [`load`] turns a file
//! into an [`ir::Model`](crate::ir::Model), [`save`]/[`to_bytes`] turn it back.
//!
//! Fields the IR does not model travel as serialized protobuf in `Opaque` blobs and are merged
//! back on export, so metadata, doc strings, producer, names and unknown fields survive a round
//! trip. Tensor data is always re-emitted as `raw_data` (numerically identical to the source
//! storage form).

mod export;
mod import;

pub use export::{save, to_bytes};
pub use import::{from_bytes, load};

use std::path::PathBuf;

/// Errors reading or writing ONNX files. Messages name the file, node or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid ONNX protobuf (truncated or corrupt): {reason}")]
    Decode { path: String, reason: String },
    #[error("{path}: not an ONNX model: {reason}")]
    NotOnnx { path: String, reason: String },
    #[error("{path}: unsupported IR version {version} (supported: 3 to 14)")]
    IrVersion { path: String, version: i64 },
    #[error("{path}: tensor '{tensor}': {reason}")]
    BadTensor {
        path: String,
        tensor: String,
        reason: String,
    },
    #[error("{path}: tensor '{tensor}': external data file {file}: {reason}")]
    ExternalData {
        path: String,
        tensor: String,
        file: PathBuf,
        reason: String,
    },
    #[error("{path}: node {node}: attribute '{attr}': {reason}")]
    BadAttribute {
        path: String,
        node: String,
        attr: String,
        reason: String,
    },
    #[error("{path}: {error}")]
    Graph {
        path: String,
        error: crate::ir::IrError,
    },
    #[error("cannot serialize model: {0}")]
    Encode(String),
    #[error(transparent)]
    Write(#[from] crate::util::atomic::AtomicWriteError),
}
