//! Parity against onnxruntime reference outputs for the real workloads: max |ours − ort| must
//! be ≤ 1e-4 · max |ort| on every output. References live in `fixtures/cache/ref/<name>.npz`
//! (keys `in:<input>` / `out:<output>`), produced by `bash scripts/prepare-test-data.sh`.

use mfq::interp::Interpreter;
use mfq::tensor::{npz, Tensor};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn need(p: &Path) -> PathBuf {
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/prepare-test-data.sh` first",
        p.display()
    );
    p.to_path_buf()
}

/// Runs `model` on the reference inputs and returns the worst relative error over outputs.
fn parity(model: &str, reference: &str) -> f64 {
    let model = need(&root().join(model));
    let reference = need(&root().join("fixtures/cache/ref").join(format!("{reference}.npz")));
    let m = mfq::onnx::load(&model).expect("load model");
    let interp = Interpreter::new(&m).expect("build interpreter");
    let arrays = npz::read(&reference).expect("read reference");
    let feeds: Vec<(String, Tensor)> = arrays
        .iter()
        .filter_map(|(k, t)| k.strip_prefix("in:").map(|n| (n.to_string(), t.clone())))
        .collect();
    let outs = interp.run_batched(&feeds, None).expect("run");
    let mut worst = 0f64;
    for (name, ours) in outs {
        let (_, want) = arrays
            .iter()
            .find(|(k, _)| *k == format!("out:{name}"))
            .unwrap_or_else(|| panic!("reference has no out:{name}"));
        assert_eq!(ours.shape(), want.shape(), "output {name} shape");
        let a = ours.to_f64_vec().expect("ours");
        let b = want.to_f64_vec().expect("ref");
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        let rel = diff / scale;
        eprintln!("{}: output {name}: max|diff| {diff:.3e}, max|ort| {scale:.3e}, ratio {rel:.3e}", model.display());
        worst = worst.max(rel);
    }
    worst
}

#[test]
fn w1_mnist_matches_onnxruntime_batched() {
    // The file fixes the batch to 1; the reference batch is 8, so this also covers batch splitting.
    let r = parity("fixtures/w1/model.onnx", "w1");
    assert!(r <= 1e-4, "W1 relative error {r}");
}

#[test]
fn w2_efficientnet_lite0_folded_matches_onnxruntime() {
    let r = parity("fixtures/cache/w2/w2.onnx", "w2");
    assert!(r <= 1e-4, "W2 relative error {r}");
}

#[test]
fn w2_efficientnet_lite0_bn_matches_onnxruntime() {
    let r = parity("fixtures/cache/w2/w2_bn.onnx", "w2_bn");
    assert!(r <= 1e-4, "W2 (BN kept) relative error {r}");
}

#[test]
fn w3_dinov2_vit_matches_onnxruntime() {
    let r = parity("fixtures/cache/w3/vit_s_focus.onnx", "w3");
    assert!(r <= 1e-4, "W3 relative error {r}");
}

#[test]
fn w5_terrain_unet_matches_onnxruntime() {
    let r = parity("fixtures/cache/w5/terrain_unet.onnx", "w5");
    assert!(r <= 1e-4, "W5 relative error {r}");
}
