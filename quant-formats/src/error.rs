//! Error type shared by parsing, validation and the tensor-level quantization entry points.

/// Everything that can go wrong when building or applying a [`crate::Format`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A format string could not be parsed.
    #[error("invalid format string `{input}`: {reason}")]
    Parse {
        /// The string as given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A structurally well-formed format whose parameters do not make a usable number format.
    #[error("invalid format {format}: {reason}")]
    Invalid {
        /// Debug rendering of the offending format.
        format: String,
        /// Why the combination is invalid.
        reason: String,
    },
    /// A rounding-mode string could not be parsed.
    #[error("invalid rounding mode `{input}`: expected one of half-even, half-away, half-toward-zero, toward-zero, away, floor, ceil, stochastic=SEED")]
    Rounding {
        /// The string as given.
        input: String,
    },
    /// Tensor shape, axis, scale count or buffer length do not agree.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Packing/unpacking of codes got inconsistent arguments.
    #[error("packing: {0}")]
    Pack(String),
}
