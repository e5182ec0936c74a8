//! Small shared helpers: atomic file output and progress reporting.

pub mod atomic;
pub mod progress;
