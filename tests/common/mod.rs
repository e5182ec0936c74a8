//! Helpers shared by the integration tests that use the fetched workloads or the Python oracles.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pinned Python venv (`MFQ_PYTHON`, default `.venv/bin/python`); fails naming the script
/// that creates it.
pub fn python() -> PathBuf {
    let p = std::env::var_os("MFQ_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "Python oracle venv not found at {}: run `bash scripts/venv.sh` (or set MFQ_PYTHON)",
        p.display()
    );
    p
}

/// `p`, which must exist; fails naming the fetch command otherwise.
pub fn need(p: &Path) -> PathBuf {
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/prepare-test-data.sh` first",
        p.display()
    );
    p.to_path_buf()
}
