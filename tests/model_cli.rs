//! `mfq run` and `mfq inspect` end to end on W1 (committed in `fixtures/w1/`).

use mfq::tensor::{npz, Tensor};
use std::path::PathBuf;
use std::process::Command;

fn w1() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/w1/model.onnx");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/prepare-test-data.sh` first",
        p.display()
    );
    p
}

fn mfq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mfq"))
}

#[test]
fn run_writes_outputs_keyed_by_name() {
    let d = tempfile::tempdir().expect("tmp");
    let input = d.path().join("x.npz");
    let x = Tensor::f32(
        &[3, 1, 28, 28],
        (0..3 * 784).map(|i| (i % 256) as f32).collect(),
    )
    .expect("x");
    std::fs::write(&input, npz::to_bytes(&[("Input3".into(), x)]).expect("npz")).expect("write");
    let out = d.path().join("y.npz");
    let st = mfq()
        .args(["run"])
        .arg(w1())
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .status()
        .expect("spawn");
    assert!(st.success());
    let y = npz::read(&out).expect("read");
    assert_eq!(y[0].0, "Plus214_Output_0");
    assert_eq!(y[0].1.shape(), &[3, 10]);
}

#[test]
fn run_rejects_wrong_shape_and_dtype_with_clear_errors() {
    let d = tempfile::tempdir().expect("tmp");
    for (name, t, want) in [
        (
            "shape",
            Tensor::f32(&[2, 1, 27, 28], vec![0.0; 2 * 27 * 28]).expect("t"),
            "expected shape",
        ),
        (
            "dtype",
            Tensor::I64(ndarray::ArrayD::zeros(ndarray::IxDyn(&[1, 1, 28, 28]))),
            "expected dtype float32",
        ),
    ] {
        let input = d.path().join(format!("{name}.npz"));
        std::fs::write(&input, npz::to_bytes(&[("Input3".into(), t)]).expect("npz"))
            .expect("write");
        let o = mfq()
            .arg("run")
            .arg(w1())
            .arg("--input")
            .arg(&input)
            .output()
            .expect("spawn");
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("Input3") && err.contains(want), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let bad = d.path().join("bad.onnx");
    std::fs::write(&bad, b"definitely not protobuf \xff\xff\xff").expect("write");
    let o = mfq().arg("inspect").arg(&bad).output().expect("spawn");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.onnx"));
}

#[test]
fn inspect_reports_histogram_params_and_macs() {
    let o = mfq().arg("inspect").arg(w1()).output().expect("spawn");
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("Conv                         2"), "{s}");
    assert!(s.contains("parameters: 5994"), "{s}");
    assert!(s.contains("total MACs per sample: 786560"), "{s}");
    assert!(s.contains("largest dot-product length: 256"), "{s}");
    assert!(s.contains("opset ai.onnx = 8"), "{s}");
}
