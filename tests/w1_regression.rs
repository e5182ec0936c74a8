//! CI regression: the W1 grid (int3–int8 and every ExMy split of 3–8 bits, weights ×
//! activations, round-to-nearest, 1,000 seeded evaluation digits) is swept and compared with
//! the committed baseline by `mfq check`. Regenerate the baseline with scripts/w1-baseline.sh.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn w1_grid_matches_committed_baseline() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let w1 = root.join("fixtures/w1");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_mfq"))
        .args(["sweep"])
        .arg(w1.join("model.onnx"))
        .arg("--calib")
        .arg(w1.join("calib.npz"))
        .arg("--eval")
        .arg(w1.join("eval.npz"))
        .args(["--eval-samples", "1000", "-q", "--grid"])
        .arg(root.join("tests/baselines/w1-grid.toml"))
        .arg("-o")
        .arg(dir.path())
        .output()
        .expect("run mfq sweep");
    assert!(
        out.status.success(),
        "sweep failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = Command::new(env!("CARGO_BIN_EXE_mfq"))
        .arg("check")
        .arg(dir.path().join("results.json"))
        .arg("--baseline")
        .arg(root.join("tests/baselines/w1-results.json"))
        .output()
        .expect("run mfq check");
    let text = String::from_utf8_lossy(&check.stdout);
    println!("{text}");
    assert_eq!(
        check.status.code(),
        Some(0),
        "W1 regression against the committed baseline:\n{text}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        text.contains("729"),
        "check did not compare the full grid:\n{text}"
    );
}
