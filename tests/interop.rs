//! Interop: mfq's QDQ and QONNX exports of W1 run in onnxruntime (opset ≤ 22), onnx's reference
//! evaluator (opset ≥ 23) and qonnx's executor with mfq's own simulated numbers (≤ 1e-5
//! relative, same top-1) over a grid of integer, minifloat, OCP and MX formats.
//! Driven by scripts/interop_check.py with the pinned Python venv.

use std::path::PathBuf;
use std::process::Command;

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let p = std::env::var_os("MFQ_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        p.exists(),
        "Python oracle venv not found at {}: run `bash scripts/venv.sh` (or set MFQ_PYTHON)",
        p.display()
    );
    p
}

#[test]
fn w1_exports_match_onnxruntime_reference_and_qonnx() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let w1 = root.join("fixtures/w1");
    let out = Command::new(python())
        .arg(root.join("scripts/interop_check.py"))
        .arg(env!("CARGO_BIN_EXE_mfq"))
        .arg(w1.join("model.onnx"))
        .arg(w1.join("calib.npz"))
        .arg(w1.join("eval.npz"))
        .arg("Input3")
        .output()
        .expect("run interop_check.py");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "interop check failed:\n{text}");
    assert!(
        text.contains("| int8 | int8 | onnxruntime no-opt"),
        "grid did not run:\n{text}"
    );
}
