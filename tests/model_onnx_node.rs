//! The onnx package's own node test cases (exported by `scripts/export_onnx_node_tests.py` into
//! `fixtures/cache/onnx-node/<case>/` with a `manifest.json`) run as golden tests.
//!
//! `tests/model_onnx_node_expected.txt` lists the cases mfq must pass; every listed case that
//! fails is reported (all at once). Run with `MFQ_BLESS=1` to rewrite the list from the current
//! results after adding support for an op.

use mfq::interp::Interpreter;
use mfq::tensor::{npz, Tensor};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares with the case's tolerance: |a − b| ≤ atol + rtol·|b|; NaN matches NaN; integer and
/// bool outputs must be equal.
fn close(a: &Tensor, b: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if a.shape() != b.shape() {
        return Err(format!("shape {:?} vs expected {:?}", a.shape(), b.shape()));
    }
    let x = a.to_f64_vec().map_err(|e| e.to_string())?;
    let y = b.to_f64_vec().map_err(|e| e.to_string())?;
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        let ok = (p.is_nan() && q.is_nan()) || p == q || (p - q).abs() <= atol + rtol * q.abs();
        if !ok {
            return Err(format!("element {i}: {p} vs expected {q}"));
        }
    }
    Ok(())
}

/// The exported .npy files store 0-d arrays as shape [1]; the manifest has the true shape.
fn with_manifest_shape(t: Tensor, spec: &serde_json::Value) -> Tensor {
    let Some(shape) = spec["shape"].as_array() else {
        return t;
    };
    let shape: Option<Vec<usize>> = shape
        .iter()
        .map(|d| d.as_u64().map(|v| v as usize))
        .collect();
    match shape {
        Some(s) if s.iter().product::<usize>() == t.len() && s.as_slice() != t.shape() => {
            t.reshaped(&s).unwrap_or(t)
        }
        _ => t,
    }
}

fn run_case(dir: &std::path::Path, case: &serde_json::Value) -> Result<(), String> {
    let m = mfq::onnx::load(&dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let interp = Interpreter::new(&m).map_err(|e| e.to_string())?;
    let mut feeds = Vec::new();
    let empty = vec![];
    for (i, inp) in case["inputs"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .enumerate()
    {
        if inp["npy"].as_bool() != Some(true) {
            return Err(format!("input {i} has no .npy form"));
        }
        let t = npz::read_npy(&dir.join(format!("input_{i}.npy"))).map_err(|e| e.to_string())?;
        let t = with_manifest_shape(t, inp);
        feeds.push((inp["name"].as_str().unwrap_or_default().to_string(), t));
    }
    // Optional inputs declared by the graph but absent from the case are left to defaults.
    let outs = interp.run(&feeds).map_err(|e| e.to_string())?;
    let rtol = case["rtol"].as_f64().unwrap_or(1e-3);
    let atol = case["atol"].as_f64().unwrap_or(1e-7);
    for (i, out) in case["outputs"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .enumerate()
    {
        if out["npy"].as_bool() != Some(true) {
            return Err(format!("output {i} has no .npy form"));
        }
        let want =
            npz::read_npy(&dir.join(format!("output_{i}.npy"))).map_err(|e| e.to_string())?;
        let want = with_manifest_shape(want, out);
        let got = outs.get(i).ok_or_else(|| format!("output {i} missing"))?;
        close(&got.1, &want, rtol, atol).map_err(|e| format!("output {i} ({}): {e}", got.0))?;
    }
    Ok(())
}

#[test]
fn onnx_node_cases_in_expected_manifest_pass() {
    let base = root().join("fixtures/cache/onnx-node");
    let manifest = base.join("manifest.json");
    assert!(
        manifest.exists(),
        "{} is missing: run `bash scripts/prepare-test-data.sh` first",
        manifest.display()
    );
    let text = std::fs::read_to_string(&manifest).expect("read manifest");
    let json: serde_json::Value = serde_json::from_str(&text).expect("parse manifest");
    let cases = json["cases"].as_array().expect("cases").clone();
    let expected_path = root().join("tests/model_onnx_node_expected.txt");
    let expected: Vec<String> = std::fs::read_to_string(&expected_path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let bless = std::env::var_os("MFQ_BLESS").is_some();
    let mut passed = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap_or_default().to_string();
        if case["has_subgraph"].as_bool() == Some(true) {
            continue;
        }
        if !bless && !expected.contains(&name) {
            continue;
        }
        let dir = base.join(&name);
        let r = std::panic::catch_unwind(|| run_case(&dir, case))
            .unwrap_or_else(|_| Err("panicked".to_string()));
        match r {
            Ok(()) => passed.push(name),
            Err(e) => {
                if bless {
                    eprintln!("not passing: {name}: {e}");
                }
                if expected.contains(&name) {
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
    }
    if bless {
        let mut s = String::from("# ONNX node test cases mfq passes (rewrite with MFQ_BLESS=1).\n");
        for p in &passed {
            s.push_str(p);
            s.push('\n');
        }
        std::fs::write(&expected_path, s).expect("write expected list");
        eprintln!("blessed {} passing cases of {}", passed.len(), cases.len());
    }
    eprintln!("{} expected cases passed", passed.len());
    assert!(
        failures.is_empty(),
        "{} expected cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(!expected.is_empty() || bless, "expected list is empty");
}
