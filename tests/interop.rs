//! Interop: mfq's QDQ and QONNX exports run in onnxruntime (opset ≤ 22), onnx's reference
//! evaluator (opset ≥ 23) and qonnx's executor with mfq's own numbers, over a grid of integer,
//! minifloat, OCP and MX formats. Driven by scripts/interop_check.py with the pinned Python venv.
//!
//! W1 (MNIST CNN): end to end, every runtime's output equals mfq's simulation (≤ 1e-5 relative,
//! same top-1). W2 (EfficientNet-Lite0): mfq running each exported file equals its simulation,
//! and every quantizer of the file computes in each runtime exactly what mfq computes on the
//! runtime's own input (teacher-forced); end-to-end differences, caused by float kernels summing
//! in different orders and flipping values that sit on a rounding boundary, are measured and
//! reported (docs/reports/interop-w2.md).

mod common;
use common::{python, root};
use std::path::Path;
use std::process::Command;

fn need(p: &Path) -> &Path {
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/prepare-test-data.sh` first",
        p.display()
    );
    p
}

fn interop(model: &Path, calib: &Path, eval: &Path, input: &str, extra: &[&str]) -> String {
    let out = Command::new(python())
        .arg(root().join("scripts/interop_check.py"))
        .arg(env!("CARGO_BIN_EXE_mfq"))
        .arg(need(model))
        .arg(need(calib))
        .arg(need(eval))
        .arg(input)
        .args(extra)
        .output()
        .expect("run interop_check.py");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "interop check failed:\n{text}");
    text
}

#[test]
fn w1_exports_match_onnxruntime_reference_and_qonnx() {
    let w1 = root().join("fixtures/w1");
    let text = interop(
        &w1.join("model.onnx"),
        &w1.join("calib.npz"),
        &w1.join("eval.npz"),
        "Input3",
        &[],
    );
    for row in [
        "| int8 | int8 | onnxruntime no-opt",
        "| int8 | int8 | qonnx execute_onnx | ok |",
        "| mxfp4 | int8 | onnx reference (opset 24) | ok |",
        "| fp4-e2m1 | int8 | onnx reference (opset 23) | ok |",
    ] {
        assert!(text.contains(row), "missing '{row}':\n{text}");
    }
}

/// One evaluation photo, four calibration photos: about 200 s on 2 cores at moderate load.
#[test]
fn w2_exports_quantize_exactly_as_mfq_in_onnxruntime_reference_and_qonnx() {
    let w2 = root().join("fixtures/cache/w2");
    let text = interop(
        &w2.join("w2.onnx"),
        &w2.join("calib.npz"),
        &w2.join("eval.npz"),
        "input",
        &[
            "--grid",
            "w2",
            "--samples",
            "1",
            "--calib-samples",
            "4",
            "--end-to-end",
            "measured",
        ],
    );
    for row in [
        "| int8 | int8 | onnxruntime no-opt (opset 13) |",
        "| int4 | int8 | onnxruntime no-opt (opset 21) |",
        "| e3m2 | e2m3 | qonnx execute_onnx |",
        "| fp4-e2m1 | int8 | onnx reference (opset 23) |",
        "| mxfp4 | int8 | onnx reference (opset 24) |",
        "| int8 | int8 | mfq runs the QDQ file | ok |",
    ] {
        assert!(text.contains(row), "missing '{row}':\n{text}");
    }
}
