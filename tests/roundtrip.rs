//! Round trip of the real workloads: import → export unchanged → the original and the re-export
//! give bit-identical onnxruntime outputs, and model/graph/node metadata (metadata_props, doc
//! strings, producer, names, opset imports, attributes, initializers, value_info) survive.
//! Driven by `scripts/roundtrip_check.py` with the pinned Python venv (`MFQ_PYTHON`).

mod common;
use common::{need, python, root};
use std::process::Command;

fn round_trip(model: &str, reference: &str) {
    let model = need(&root().join(model));
    let reference = need(&root().join(format!("fixtures/cache/ref/{reference}.npz")));
    let m = mfq::onnx::load(&model).expect("import");
    let dir = tempfile::tempdir().expect("tempdir");
    let exported = dir.path().join("exported.onnx");
    mfq::onnx::save(&m, &exported, &[&model]).expect("export");
    let out = Command::new(python())
        .arg(root().join("scripts/roundtrip_check.py"))
        .arg(&model)
        .arg(&exported)
        .arg(&reference)
        .output()
        .expect("start python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}:\n{stdout}", model.display());
    assert!(
        out.status.success(),
        "{}: round trip check failed:\n{stdout}\n{}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("onnxruntime outputs bit-identical"));
}

#[test]
fn w1_round_trip_is_identical() {
    round_trip("fixtures/w1/model.onnx", "w1");
}

#[test]
fn w2_round_trip_is_identical() {
    round_trip("fixtures/cache/w2/w2.onnx", "w2");
}

#[test]
fn w3_round_trip_is_identical() {
    round_trip("fixtures/cache/w3/vit_s_focus.onnx", "w3");
}

#[test]
fn w5_round_trip_is_identical() {
    round_trip("fixtures/cache/w5/terrain_unet.onnx", "w5");
}
