//! End-to-end speed of mfq's interpreter against onnxruntime on the real workloads.
//!
//! `cargo bench --bench models` times, in one run, W2 (EfficientNet-Lite0, batch 8), W3
//! (DINOv2-S/14 saliency ViT, batch 1) and W5 (terrain diffusion UNet, batch 8) through mfq's
//! interpreter in-process and through onnxruntime with 2 intra-op threads
//! (`scripts/bench_ort.py`, run with the Python named by `MFQ_PYTHON`, default `.venv/bin/python`),
//! and prints the median time per batch and the ratio mfq / onnxruntime.
//!
//! mfq runs the model after `ir::fold::make_static(batch)` and `ir::fold::fold_batch_norm`, the
//! counterpart of onnxruntime's default graph optimisations; both sides get one warm-up run and
//! report the median of `BENCH_REPS` (default 5) timed runs on the first `batch` samples of the
//! workload's `eval.npz`. Options (environment): `BENCH_FILTER=w3` runs only workloads whose name
//! contains the text, `MFQ_PROFILE=1` additionally prints mfq's time per op type.
//!
//! This is a benchmark, not a test: it asserts nothing about speed. It fails with a message
//! naming the command to run when the workload cache or the Python environment is missing.

use mfq::interp::{Interpreter, Profile};
use mfq::tensor::{npz, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

struct Workload {
    name: &'static str,
    model: &'static str,
    inputs: &'static str,
    batch: usize,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "W2 EfficientNet-Lite0",
        model: "fixtures/cache/w2/w2.onnx",
        inputs: "fixtures/cache/w2/eval.npz",
        batch: 8,
    },
    Workload {
        name: "W3 DINOv2-S/14 ViT",
        model: "fixtures/cache/w3/vit_s_focus.onnx",
        inputs: "fixtures/cache/w3/eval.npz",
        batch: 1,
    },
    Workload {
        name: "W5 terrain UNet",
        model: "fixtures/cache/w5/terrain_unet.onnx",
        inputs: "fixtures/cache/w5/eval.npz",
        batch: 8,
    },
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn need(p: &Path) -> PathBuf {
    if !p.exists() {
        eprintln!(
            "{} is missing: run `bash scripts/prepare-test-data.sh` first",
            p.display()
        );
        std::process::exit(2);
    }
    p.to_path_buf()
}

fn python() -> PathBuf {
    let p = std::env::var_os("MFQ_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    if !p.exists() {
        eprintln!(
            "Python interpreter {} not found: run `bash scripts/venv.sh` or set MFQ_PYTHON",
            p.display()
        );
        std::process::exit(2);
    }
    p
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median seconds per batch through mfq's interpreter (and the op profile of the last run).
fn time_mfq(w: &Workload, reps: usize) -> (f64, Profile) {
    let mut m = mfq::onnx::load(&need(&root().join(w.model))).expect("load model");
    mfq::ir::fold::make_static(&mut m, w.batch).expect("make_static");
    mfq::ir::fold::fold_batch_norm(&mut m).expect("fold_batch_norm");
    let interp = Interpreter::new(&m).expect("build interpreter");
    let arrays = npz::read(&need(&root().join(w.inputs))).expect("read inputs");
    let feeds: Vec<(String, Tensor)> = interp
        .inputs()
        .iter()
        .filter(|s| m.graph.value(s.value).constant.is_none())
        .map(|s| {
            let t = arrays
                .iter()
                .find(|(k, _)| *k == s.name)
                .unwrap_or_else(|| panic!("{} has no array '{}'", w.inputs, s.name));
            let a = t.1.to_f32().expect("workload inputs are f32");
            let b = a
                .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..w.batch))
                .to_owned();
            (s.name.clone(), Tensor::F32(b))
        })
        .collect();
    interp.run(&feeds).expect("warm-up run");
    let mut times = Vec::new();
    let mut prof = Profile::default();
    for _ in 0..reps {
        let t0 = Instant::now();
        let (_, p) = interp.run_profiled(&feeds).expect("run");
        times.push(t0.elapsed().as_secs_f64());
        prof = p;
    }
    (median(times), prof)
}

/// Median seconds per batch through onnxruntime with 2 intra-op threads.
fn time_ort(w: &Workload, reps: usize) -> f64 {
    let out = Command::new(python())
        .arg(root().join("scripts/bench_ort.py"))
        .arg(root().join(w.model))
        .arg(root().join(w.inputs))
        .arg(w.batch.to_string())
        .arg(reps.to_string())
        .output()
        .expect("start python");
    if !out.status.success() {
        panic!(
            "scripts/bench_ort.py failed for {}: {}",
            w.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("bench_ort.py prints one JSON object");
    v["median_s"].as_f64().expect("median_s")
}

fn main() {
    let filter = std::env::var("BENCH_FILTER")
        .unwrap_or_default()
        .to_lowercase();
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let show_profile = std::env::var("MFQ_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0");
    for w in WORKLOADS {
        need(&root().join(w.model));
        need(&root().join(w.inputs));
    }
    python();
    // `cargo test --all-targets` runs bench targets without `--bench`: inputs checked, no timing.
    if !std::env::args().any(|a| a == "--bench") {
        println!("models benchmark: inputs present; time it with `cargo bench --bench models`");
        return;
    }
    println!(
        "| workload | batch | mfq ms | onnxruntime (2 threads) ms | mfq / ort |\n|---|---|---|---|---|"
    );
    for w in WORKLOADS
        .iter()
        .filter(|w| w.name.to_lowercase().contains(&filter))
    {
        let (mfq_s, prof) = time_mfq(w, reps);
        let ort_s = time_ort(w, reps);
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.2} |",
            w.name,
            w.batch,
            mfq_s * 1e3,
            ort_s * 1e3,
            mfq_s / ort_s
        );
        if show_profile {
            eprintln!(
                "mfq time per op type, {} (last run):\n{}",
                w.name,
                prof.table()
            );
        }
    }
}
