//! Sweep throughput benchmark (`cargo bench --bench sweep`): the full W1 grid (27 weight × 27
//! activation formats = 729 configurations, all 4,500 evaluation digits, round-to-nearest)
//! and a W2 grid (EfficientNet-Lite0, 20 evaluation photos), each in a fresh directory.
//! Prints wall time, time per configuration, CPU time and the machine's load average, since
//! the figures only mean something next to the load they were measured under.
//!
//! Environment: `MFQ_BENCH_SKIP_W1=1` / `MFQ_BENCH_SKIP_W2=1` skip a workload;
//! `MFQ_BENCH_JOBS=N` sets the worker threads (default: all cores).

use mfq::data::Dataset;
use mfq::quant::sweep_eval::SweepEvaluator;
use mfq::quant::Recipe;
use mfq::sweep::{run_plan, ConfigRecipe, Grid, Shard, SweepOptions};
use std::path::Path;
use std::time::Instant;

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return f64::NAN;
        }
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
        t(u.ru_utime) + t(u.ru_stime)
    }
}

fn bench(name: &str, model: &Path, calib: &Path, eval: &Path, grid: &str) {
    let jobs = std::env::var("MFQ_BENCH_JOBS")
        .ok()
        .and_then(|s| s.parse().ok());
    let m = mfq::onnx::load(model).expect("model");
    let inputs = mfq::quant::pipeline::data_inputs(&m);
    let cds = Dataset::open(calib, &inputs, None).expect("calibration data");
    let eds = Dataset::open(eval, &inputs, None).expect("evaluation data");
    let n_eval = eds.len();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let ev = SweepEvaluator::new(m, Recipe::default(), cds, &eds).expect("shared work");
    let shared = t0.elapsed().as_secs_f64();
    let grid = Grid::from_toml_str(grid, name).expect("grid");
    let validity = |r: &ConfigRecipe| ev.recipe(r).map(|_| ()).map_err(|e| e.to_string());
    let plan = grid.expand(Some(&validity));
    let dir = tempfile::tempdir().expect("tempdir");
    let evaluator = |r: &ConfigRecipe| ev.evaluate(r).map_err(|e| e.to_string());
    let options = SweepOptions {
        threads: jobs,
        write_reports: false,
        ..SweepOptions::default()
    };
    let t1 = Instant::now();
    let s = run_plan(
        &plan,
        &grid.name,
        dir.path(),
        Shard::ALL,
        &evaluator,
        &options,
    )
    .expect("sweep");
    let run = t1.elapsed().as_secs_f64();
    let total = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    let n = s.evaluated.max(1) as f64;
    println!(
        "{name}: {} configurations x {n_eval} eval samples: total {total:.1} s (shared work \
         {shared:.1} s, configurations {run:.1} s), {:.3} s per configuration, CPU {cpu:.1} s \
         ({:.3} CPU-s per configuration), {} threads, {} failed, load average {}",
        s.evaluated,
        run / n,
        cpu / n,
        jobs.unwrap_or_else(rayon::current_num_threads),
        s.failed.len(),
        load_average()
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench targets without it,
    // and then nothing is timed.
    if !std::env::args().any(|a| a == "--bench") {
        println!("sweep benchmark: time it with `cargo bench --bench sweep`");
        return;
    }
    println!(
        "mfq sweep benchmark: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    if std::env::var_os("MFQ_BENCH_SKIP_W1").is_none() {
        let w1 = root.join("fixtures/w1");
        bench(
            "W1 full grid",
            &w1.join("model.onnx"),
            &w1.join("calib.npz"),
            &w1.join("eval.npz"),
            &std::fs::read_to_string(root.join("tests/baselines/w1-grid.toml")).expect("grid"),
        );
    }
    if std::env::var_os("MFQ_BENCH_SKIP_W2").is_none() {
        let w2 = root.join("fixtures/cache/w2");
        if !w2.join("w2.onnx").exists() {
            println!("W2: skipped, fixtures/cache/w2 is missing (scripts/prepare-test-data.sh)");
            return;
        }
        bench(
            "W2 (int4/int8/e2m1/e4m3 grid)",
            &w2.join("w2.onnx"),
            &w2.join("calib.npz"),
            &w2.join("eval.npz"),
            "name = \"w2-bench\"\nweights = [\"int4\", \"int8\", \"e2m1\", \"e4m3\"]\n\
             acts = [\"int8\", \"e4m3\"]\n",
        );
    }
}
