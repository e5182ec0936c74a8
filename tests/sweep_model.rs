//! End-to-end tests of `mfq sweep MODEL` on the vendored W1 model: a per-configuration
//! `passes` axis (function-preserving passes and GPTQ in one grid), and a sweep process killed
//! midway (SIGKILL) that a rerun completes to the same results.json as an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `mfq sweep` on W1 with a small seeded evaluation and calibration subset.
fn sweep_cmd(grid: &Path, out: &Path, eval_samples: &str) -> Command {
    let w1 = root().join("fixtures/w1");
    let mut c = Command::new(env!("CARGO_BIN_EXE_mfq"));
    c.arg("-q")
        .arg("sweep")
        .arg(w1.join("model.onnx"))
        .arg("--calib")
        .arg(w1.join("calib.npz"))
        .args(["--calib-samples", "128"])
        .arg("--eval")
        .arg(w1.join("eval.npz"))
        .args(["--eval-samples", eval_samples])
        .arg("--grid")
        .arg(grid)
        .arg("-o")
        .arg(out);
    c
}

fn results(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// results.json with the timing fields removed.
fn without_timings(dir: &Path) -> String {
    let mut v = results(dir);
    v.as_object_mut()
        .expect("object")
        .remove("total_eval_seconds");
    for c in v["configs"].as_array_mut().expect("configs") {
        c.as_object_mut().expect("config").remove("timings");
    }
    serde_json::to_string_pretty(&v).expect("json")
}

fn config<'a>(v: &'a serde_json::Value, passes: &[&str]) -> &'a serde_json::Value {
    v["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| {
            c["recipe"]["passes"].as_array().is_some_and(|p| {
                p.iter()
                    .map(|x| x.as_str())
                    .eq(passes.iter().map(|x| Some(*x)))
            })
        })
        .unwrap_or_else(|| panic!("no configuration with passes {passes:?}"))
}

#[test]
fn passes_axis_varies_per_configuration() {
    let tmp = tempfile::tempdir().expect("tmp");
    let grid = tmp.path().join("grid.toml");
    std::fs::write(
        &grid,
        r#"
weights = ["int4"]
acts = ["int8"]
passes = [["fold-batch-norm"], ["fold-batch-norm", "equalize-channels"],
          ["fold-batch-norm", "gptq"], ["fold-batch-norm", "no-such-pass"]]
"#,
    )
    .expect("grid");
    let out = tmp.path().join("out");
    let o = sweep_cmd(&grid, &out, "300").output().expect("run");
    assert!(
        o.status.success(),
        "sweep failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = results(&out);
    assert_eq!(v["summary"]["completed"], 3, "{v:#}");
    // The unknown pass is dropped with a reason naming it.
    let dropped = v["dropped"].to_string();
    assert!(dropped.contains("no-such-pass"), "{dropped}");

    let plain = config(&v, &["fold-batch-norm"]);
    let eq = config(&v, &["fold-batch-norm", "equalize-channels"]);
    let gptq = config(&v, &["fold-batch-norm", "gptq"]);
    let sqnr = |c: &serde_json::Value| c["fidelity"]["sqnr_db"].as_f64().expect("sqnr");
    // Equalization prepares its own model: on W1 it rescales the conv1 → (bias Add, Relu,
    // MaxPool) → conv2 pair, which changes the quantized numbers.
    assert!(sqnr(eq).is_finite());
    assert_ne!(sqnr(eq), sqnr(plain));
    assert_ne!(sqnr(plain), sqnr(gptq));
    // GPTQ compensates 4-bit rounding error: better output SQNR than round-to-nearest.
    assert!(
        sqnr(gptq) > sqnr(plain),
        "{} vs {}",
        sqnr(gptq),
        sqnr(plain)
    );

    // The same recipe without a passes axis (the base passes, fold-batch-norm) gives the
    // same numbers as the explicit pass list.
    let grid2 = tmp.path().join("grid2.toml");
    std::fs::write(&grid2, "weights = \"int4\"\nacts = \"int8\"\n").expect("grid");
    let out2 = tmp.path().join("out2");
    let o = sweep_cmd(&grid2, &out2, "300").output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let base = &results(&out2)["configs"][0];
    assert_eq!(base["fidelity"], plain["fidelity"]);
    assert_eq!(base["accuracy"], plain["accuracy"]);
}

#[test]
fn killed_sweep_reruns_to_identical_results() {
    let tmp = tempfile::tempdir().expect("tmp");
    let grid = tmp.path().join("grid.toml");
    std::fs::write(
        &grid,
        "weights = [\"int3..int8\", \"all-exmy 4\"]\nacts = [\"int4\", \"int8\", \"e2m1\", \"e4m3\"]\n",
    )
    .expect("grid");
    let full = tmp.path().join("full");
    let o = sweep_cmd(&grid, &full, "500").output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Start the same sweep elsewhere and kill it (SIGKILL) once some results are written.
    let killed = tmp.path().join("killed");
    let mut child = sweep_cmd(&grid, &killed, "500")
        .args(["--jobs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    let configs = killed.join("configs");
    let done = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    let mut finished_early = false;
    while done(&configs) < 3 {
        if child.try_wait().expect("wait").is_some() {
            finished_early = true;
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "sweep made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().ok();
    child.wait().expect("reap");
    let kept = done(&configs);
    if !finished_early {
        assert!(
            kept < 32,
            "the sweep finished before it could be killed ({kept})"
        );
        assert!(!killed.join("results.json").exists());
    }
    let o = sweep_cmd(&grid, &killed, "500").output().expect("rerun");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already done"), "{err}");
    assert_eq!(without_timings(&full), without_timings(&killed));
}
