//! Integration tests of the sweep runner (resume after interruption, thread-count and shard
//! independence, merge, reports and figures) and of `mfq check` exit codes and messages,
//! using a synthetic evaluator whose cost figures follow the MAC LUT fits of the cost-model
//! notes and whose accuracy grows with the precision of both operands.

use mfq::sweep::format_name::{format_info, Family};
use mfq::sweep::{
    merge_dirs, run_sweep, AccuracyKind, ConfigOutcome, ConfigRecipe, CostFigures, Grid, Shard,
    SweepError, SweepOptions,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Largest dot-product length of the synthetic model (ResNet-18's 3·3·512).
const DOT_LEN_LOG2: f64 = 13.0;

fn mac_lut(w: &str, a: &str) -> f64 {
    let (w, a) = (format_info(w).expect("w"), format_info(a).expect("a"));
    match (w.family, a.family) {
        (Family::Minifloat, Family::Minifloat) => {
            let (ew, mw) = (f64::from(w.exp_bits), f64::from(w.bits - 1 - w.exp_bits));
            let (ea, ma) = (f64::from(a.exp_bits), f64::from(a.bits - 1 - a.exp_bits));
            let acc = 2f64.powf(ea) + ma + 2f64.powf(ew) + mw + DOT_LEN_LOG2 - 1.0;
            let pm = ma + mw + 2.0;
            let sh = (2f64.powf(ea) - 2.0) + (2f64.powf(ew) - 2.0);
            let shb = (sh + 1.0).log2().ceil();
            let fx = 1.0 + pm + sh;
            acc + 1.75 * (ma + 1.0) * (mw + 1.0) + 0.78 * (pm + 1.0) * shb + 0.55 * fx - 7.3
        }
        _ => {
            let (wb, ab) = (f64::from(w.bits), f64::from(a.bits));
            let acc = ab + wb + DOT_LEN_LOG2 + 1.0;
            acc + 2.98 * ab * wb - 3.62 * (ab + wb) + 6.5
        }
    }
}

fn precision(name: &str) -> f64 {
    let f = format_info(name).expect("format");
    match f.family {
        Family::Integer | Family::Mx => f64::from(f.bits) - 1.0,
        Family::Minifloat => {
            let m = f64::from(f.bits - 1 - f.exp_bits);
            // Too few exponent bits cost range; too many cost mantissa.
            m + 1.0 + 0.8 * f64::from(f.exp_bits.min(3))
        }
    }
}

fn synthetic(r: &ConfigRecipe) -> ConfigOutcome {
    let (pw, pa) = (precision(&r.weights), precision(&r.acts));
    let q = ((pw - 1.0).max(0.0) * (pa - 1.0).max(0.0)) / 6.0;
    let accuracy = (0.1 + 0.885 * (1.0 - (-q).exp())).clamp(0.0, 1.0);
    let accuracy = (accuracy * 5000.0).round() / 5000.0;
    let lut = (mac_lut(&r.weights, &r.acts) * 10.0).round() / 10.0;
    let wbits = f64::from(format_info(&r.weights).expect("w").bits);
    ConfigOutcome {
        accuracy,
        accuracy_kind: AccuracyKind::Top1,
        fidelity: BTreeMap::from([("sqnr_db".to_string(), 6.02 * pw.min(pa) + 1.76)]),
        cost: CostFigures {
            mac_lut: lut,
            dataflow_lut: Some((lut * 64.0 + 2400.0).round()),
            weight_mem_bits: Some(wbits * 93_322.0),
            other: BTreeMap::new(),
        },
    }
}

fn ok_eval(r: &ConfigRecipe) -> Result<ConfigOutcome, String> {
    Ok(synthetic(r))
}

fn grid(text: &str) -> Grid {
    Grid::from_toml_str(text, "test-grid").expect("grid")
}

const SMALL_GRID: &str = r#"
name = "synthetic"
weights = ["int3..int8", "all-exmy 3..5"]
acts = ["int3..int8", "all-exmy 3..5"]
"#;

fn opts(threads: usize) -> SweepOptions {
    SweepOptions {
        threads: Some(threads),
        ..SweepOptions::default()
    }
}

/// results.json with timings removed, re-serialized.
fn without_timings(path: &Path) -> String {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("read results")).expect("json");
    v.as_object_mut()
        .expect("object")
        .remove("total_eval_seconds");
    for c in v["configs"].as_array_mut().expect("configs") {
        c.as_object_mut().expect("config").remove("timings");
    }
    serde_json::to_string_pretty(&v).expect("ser")
}

fn mfq(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mfq"))
        .args(args)
        .output()
        .expect("run mfq");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn interrupted_sweep_resumes_to_identical_results() {
    let g = grid(SMALL_GRID);
    let tmp = tempfile::tempdir().expect("tmp");
    let full = tmp.path().join("full");
    let s = run_sweep(&g, &full, Shard::ALL, &ok_eval, &opts(2)).expect("full run");
    assert_eq!((s.planned, s.evaluated, s.skipped_existing), (144, 144, 0));

    // The evaluator "dies" after 40 configurations.
    let resumed = tmp.path().join("resumed");
    let calls = AtomicUsize::new(0);
    let dying = |r: &ConfigRecipe| {
        if calls.fetch_add(1, Ordering::SeqCst) >= 40 {
            Err("simulated crash".to_string())
        } else {
            Ok(synthetic(r))
        }
    };
    let err = run_sweep(&g, &resumed, Shard::ALL, &dying, &opts(2)).expect_err("must fail");
    let msg = err.to_string();
    assert!(matches!(err, SweepError::Evaluation { .. }), "{msg}");
    assert!(
        msg.contains("simulated crash") && msg.contains("rerun to resume"),
        "{msg}"
    );
    let kept = std::fs::read_dir(resumed.join("configs"))
        .expect("ls")
        .count();
    assert!((40..144).contains(&kept), "kept {kept}");
    assert!(!resumed.join("results.json").exists());

    // A panicking evaluator is reported as a failure, not a crash of the runner.
    let panicking = |r: &ConfigRecipe| -> Result<ConfigOutcome, String> {
        if !r.weights.is_empty() {
            panic!("bad kernel")
        }
        Ok(synthetic(r))
    };
    let err = run_sweep(&g, &resumed, Shard::ALL, &panicking, &opts(1)).expect_err("panic");
    assert!(
        err.to_string().contains("evaluator panicked: bad kernel"),
        "{err}"
    );

    let s = run_sweep(&g, &resumed, Shard::ALL, &ok_eval, &opts(1)).expect("resume");
    assert_eq!(s.evaluated + s.skipped_existing, 144);
    assert!(s.skipped_existing >= 40);
    assert_eq!(
        without_timings(&full.join("results.json")),
        without_timings(&resumed.join("results.json"))
    );
    // A second rerun has nothing to do.
    let s = run_sweep(&g, &resumed, Shard::ALL, &ok_eval, &opts(2)).expect("noop");
    assert_eq!((s.evaluated, s.skipped_existing), (0, 144));
    // Text reports carry no timings and are byte-identical.
    for f in [
        "results.md",
        "accuracy_vs_mac_lut.svg",
        "heatmap_int_int.svg",
    ] {
        assert_eq!(
            std::fs::read(full.join(f)).expect("a"),
            std::fs::read(resumed.join(f)).expect("b"),
            "{f}"
        );
    }
}

#[test]
fn shards_partition_the_plan_and_merge_to_the_full_result() {
    let g = grid(SMALL_GRID);
    let tmp = tempfile::tempdir().expect("tmp");
    let full = tmp.path().join("full");
    run_sweep(&g, &full, Shard::ALL, &ok_eval, &opts(2)).expect("full");
    let mut dirs = Vec::new();
    let mut total = 0;
    for i in 0..3 {
        let d = tmp.path().join(format!("shard-{i}"));
        let shard: Shard = format!("{i}/3").parse().expect("shard");
        let s = run_sweep(&g, &d, shard, &ok_eval, &opts(1)).expect("shard run");
        assert!(s.in_shard > 20, "shard {i} has {}", s.in_shard);
        total += s.in_shard;
        dirs.push(d);
    }
    assert_eq!(total, 144);
    let merged = tmp.path().join("merged");
    let m = merge_dirs(&dirs, &merged).expect("merge");
    assert_eq!((m.copied, m.conflicts.len()), (144, 0));
    assert_eq!(
        without_timings(&full.join("results.json")),
        without_timings(&merged.join("results.json"))
    );
    // The CLI does the same, and `report` regenerates identical reports.
    let merged2 = tmp.path().join("merged2");
    let args: Vec<String> = ["sweep", "merge"]
        .iter()
        .map(|s| s.to_string())
        .chain(dirs.iter().map(|d| d.display().to_string()))
        .chain(["-o".to_string(), merged2.display().to_string()])
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = mfq(&args);
    assert_eq!(code, 0, "{err}");
    let md = std::fs::read(merged2.join("results.md")).expect("md");
    std::fs::remove_file(merged2.join("results.md")).expect("rm");
    let (code, out, err) = mfq(&["sweep", "report", &merged2.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("results.md") && out.contains("heatmap_float_float.svg"),
        "{out}"
    );
    assert_eq!(std::fs::read(merged2.join("results.md")).expect("md"), md);
    // Bad shard strings are rejected.
    for bad in ["3/3", "1/0", "x/2", "1"] {
        assert!(bad.parse::<Shard>().is_err(), "{bad}");
    }
}

#[test]
fn reports_have_schema_pareto_and_figures() {
    let g = grid(
        r#"
        weights = ["int3..int8", "all-exmy 3..8"]
        acts = ["int3..int8", "all-exmy 3..8"]
        "#,
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = std::env::var_os("MFQ_SWEEP_KEEP")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("w1"));
    let s = run_sweep(&g, &dir, Shard::ALL, &ok_eval, &SweepOptions::default()).expect("run");
    assert_eq!(s.planned, 729);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).expect("r")).expect("j");
    assert_eq!(v["schema"], "mfq-sweep-results");
    assert_eq!(v["version"], 1);
    let configs = v["configs"].as_array().expect("configs");
    assert_eq!(configs.len(), 729);
    for c in configs {
        for key in [
            "weights", "acts", "accuracy", "mac_lut", "recipe", "cost", "fidelity",
        ] {
            assert!(c.get(key).is_some(), "missing {key}");
        }
        let acc = c["accuracy"].as_f64().expect("acc");
        assert!((0.0..=1.0).contains(&acc));
    }
    assert_eq!(configs[0]["weights"], "int3");
    assert_eq!(configs[0]["acts"], "int3");
    for m in ["mac_lut", "dataflow_lut", "weight_mem_bits"] {
        let front = v["pareto"][m].as_array().expect("front");
        assert!(!front.is_empty());
    }
    let csv = std::fs::read_to_string(dir.join("results.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 730);
    assert!(csv.starts_with("id,weights,acts,"));
    let md = std::fs::read_to_string(dir.join("results.md")).expect("md");
    assert!(md.contains("## Pareto front: accuracy vs LUTs per MAC"));
    for (f, needles) in [
        (
            "accuracy_vs_mac_lut.svg",
            &[
                "LUTs per MAC",
                "top-1 accuracy (%)",
                "Pareto front",
                "integer W / integer A",
            ][..],
        ),
        ("accuracy_vs_dataflow_lut.svg", &["dataflow LUTs"][..]),
        ("accuracy_vs_weight_mem_bits.svg", &["weight memory"][..]),
        ("heatmap_int_int.svg", &["weight format", "int8"][..]),
        (
            "heatmap_float_float.svg",
            &["activation format", "e4m3"][..],
        ),
        ("heatmap_int_float.svg", &["minifloat activations"][..]),
    ] {
        let svg = std::fs::read_to_string(dir.join(f)).expect(f);
        assert!(svg.starts_with("<svg"), "{f}");
        for n in needles {
            assert!(svg.contains(n), "{f} lacks {n}");
        }
    }
}

// ---- mfq check ----

/// A results.json from a small synthetic sweep, as a JSON value.
fn baseline_value(tmp: &Path) -> serde_json::Value {
    let g = grid("weights = [\"int4\", \"int8\", \"e2m1\"]\nacts = [\"int8\", \"e4m3\"]");
    let dir = std::env::var_os("MFQ_SWEEP_KEEP")
        .map(|d| PathBuf::from(d).with_extension("small"))
        .unwrap_or_else(|| tmp.join("base"));
    run_sweep(&g, &dir, Shard::ALL, &ok_eval, &opts(1)).expect("run");
    serde_json::from_slice(&std::fs::read(dir.join("results.json")).expect("r")).expect("j")
}

fn write_json(path: &Path, v: &serde_json::Value) -> String {
    std::fs::write(path, serde_json::to_vec_pretty(v).expect("ser")).expect("write");
    path.display().to_string()
}

fn find<'a>(v: &'a mut serde_json::Value, w: &str, a: &str) -> &'a mut serde_json::Value {
    v["configs"]
        .as_array_mut()
        .expect("configs")
        .iter_mut()
        .find(|c| c["weights"] == w && c["acts"] == a)
        .expect("config")
}

#[test]
fn check_exit_codes_and_messages() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = baseline_value(tmp.path());
    let base_path = write_json(&tmp.path().join("baseline.json"), &base);
    let case = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = base.clone();
        edit(&mut v);
        write_json(&tmp.path().join(format!("{name}.json")), &v)
    };

    // Identical: pass.
    let (code, out, _) = mfq(&["check", &base_path, "--baseline", &base_path]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("## mfq check: passed") && out.contains("Compared 6 configurations"));

    // Accuracy down 1 point: regression; 0.3 points: within tolerance.
    let drop = |pp: f64| {
        move |v: &mut serde_json::Value| {
            let c = find(v, "int4", "e4m3");
            let a = c["accuracy"].as_f64().expect("acc") - pp / 100.0;
            c["accuracy"] = a.into();
        }
    };
    let p = case("acc_drop", &drop(1.0));
    let (code, out, _) = mfq(&["check", &p, "--baseline", &base_path]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED, 1 regression"), "{out}");
    assert!(out.contains("| **regression** | W int4 / A e4m3"), "{out}");
    assert!(out.contains("-1.00 pp"), "{out}");
    let p = case("acc_small", &drop(0.3));
    let (code, out, _) = mfq(&["check", &p, "--baseline", &base_path, "--tol-acc", "0.5"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("within tolerance") && out.contains("-0.30 pp"),
        "{out}"
    );

    // Cost up 2 %: regression at 1 %, fine at 5 %.
    let p = case("cost_rise", &|v| {
        let c = find(v, "fp4-e2m1", "int8");
        let x = c["mac_lut"].as_f64().expect("lut") * 1.02;
        c["mac_lut"] = x.into();
        c["cost"]["mac_lut"] = x.into();
    });
    let (code, out, _) = mfq(&["check", &p, "--baseline", &base_path, "--tol-cost", "1%"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("W fp4-e2m1 / A int8") && out.contains("+2.00 %"),
        "{out}"
    );
    assert!(out.contains("LUTs per MAC (`mac_lut`)"), "{out}");
    let (code, out, _) = mfq(&["check", &p, "--baseline", &base_path, "--tol-cost", "5%"]);
    assert_eq!(code, 0, "{out}");

    // A configuration missing from the results: regression unless allowed; an added one is
    // listed but harmless.
    let p = case("missing", &|v| {
        v["configs"]
            .as_array_mut()
            .expect("configs")
            .retain(|c| !(c["weights"] == "int8" && c["acts"] == "int8"));
    });
    let (code, out, _) = mfq(&["check", &p, "--baseline", &base_path]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("### Missing configurations") && out.contains("W int8 / A int8"));
    let (code, out, _) = mfq(&["check", &p, "--baseline", &base_path, "--allow-missing"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(allowed)"), "{out}");
    let (code, out, _) = mfq(&["check", &base_path, "--baseline", &p]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("### Added configurations") && out.contains("W int8 / A int8"));

    // Unusable inputs: exit 2 with the file named.
    let corrupt = tmp.path().join("corrupt.json");
    std::fs::write(&corrupt, &std::fs::read(&base_path).expect("r")[..200]).expect("w");
    let corrupt = corrupt.display().to_string();
    let (code, _, err) = mfq(&["check", &corrupt, "--baseline", &base_path]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unusable results") && err.contains("corrupt.json"),
        "{err}"
    );
    assert!(err.contains("not valid JSON"), "{err}");
    let p = case("v2", &|v| v["version"] = 2.into());
    let (code, _, err) = mfq(&["check", &base_path, "--baseline", &p]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unusable baseline") && err.contains("version 2"),
        "{err}"
    );
    let p = case("bad_acc", &|v| {
        find(v, "int4", "int8")["accuracy"] = 75.0.into()
    });
    let (code, _, err) = mfq(&["check", &p, "--baseline", &base_path]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a fraction"), "{err}");
    let p = case("kind", &|v| {
        find(v, "int4", "int8")["accuracy_kind"] = "agreement".into()
    });
    let (code, _, err) = mfq(&["check", &p, "--baseline", &base_path]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot be compared") && err.contains("W int4 / A int8"),
        "{err}"
    );
    let (code, _, err) = mfq(&[
        "check",
        "/nonexistent/results.json",
        "--baseline",
        &base_path,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/results.json"), "{err}");
}

#[test]
fn plan_command_lists_configs_and_drops() {
    let tmp = tempfile::tempdir().expect("tmp");
    let g = tmp.path().join("g.toml");
    std::fs::write(
        &g,
        "weights = [\"int4\", \"e2m1\"]\nacts = \"int8\"\n[[exclude]]\nweights = \"e2m1\"\n",
    )
    .expect("write grid");
    let (code, out, err) = mfq(&["sweep", "plan", &g.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("2 combinations, 1 configurations, 1 dropped"),
        "{out}"
    );
    let id = ConfigRecipe::new("int4", "int8").id();
    assert!(out.contains(&format!("{id}  W int4 / A int8")), "{out}");
    assert!(
        out.contains("W fp4-e2m1 / A int8: excluded by grid rule exclude[0]"),
        "{out}"
    );
    std::fs::write(&g, "weights = [\"int4\"]\nacts = [\"int9x\"]\n").expect("write grid");
    let (code, _, err) = mfq(&["sweep", "plan", &g.display().to_string()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("g.toml") && err.contains("'acts'") && err.contains("int9x"),
        "{err}"
    );
}

#[test]
fn a_smaller_grid_in_the_same_directory_reuses_results_and_reports_its_plan() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("d");
    let big = grid("weights = \"int3..int8\"\nacts = [\"int8\", \"e4m3\"]");
    run_sweep(&big, &dir, Shard::ALL, &ok_eval, &opts(2)).expect("big");
    let small = grid("weights = [\"int4\", \"int8\"]\nacts = \"int8\"");
    let s = run_sweep(&small, &dir, Shard::ALL, &ok_eval, &opts(2)).expect("small");
    assert_eq!((s.evaluated, s.skipped_existing), (0, 2));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).expect("r")).expect("j");
    assert_eq!(v["configs"].as_array().expect("configs").len(), 2);
    assert_eq!(v["summary"]["not_planned"], 10);
    // Figures of family pairs no longer reported are removed.
    assert!(dir.join("heatmap_int_int.svg").exists());
    assert!(!dir.join("heatmap_int_float.svg").exists());
    let md = std::fs::read_to_string(dir.join("results.md")).expect("md");
    assert!(
        md.contains("10 result files of configurations outside the plan"),
        "{md}"
    );
}

#[test]
fn fidelity_figures_on_request_and_unknown_metric_is_an_error() {
    let g = grid(SMALL_GRID);
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("s");
    let options = SweepOptions {
        figure_metrics: vec!["sqnr_db".into()],
        ..opts(2)
    };
    run_sweep(&g, &dir, Shard::ALL, &ok_eval, &options).expect("run");
    for f in [
        "accuracy_vs_mac_lut.svg",
        "sqnr_db_vs_mac_lut.svg",
        "sqnr_db_vs_dataflow_lut.svg",
        "heatmap_sqnr_db_int_int.svg",
    ] {
        let svg = std::fs::read_to_string(dir.join(f)).unwrap_or_else(|_| panic!("{f}"));
        assert!(svg.contains("<svg"), "{f}");
    }
    let svg = std::fs::read_to_string(dir.join("sqnr_db_vs_mac_lut.svg")).expect("svg");
    assert!(svg.contains("output SQNR vs float (dB)") && svg.contains("Pareto front"));
    let e = mfq::sweep::write_reports_with(&dir, &[], &["no_such_metric".to_string()])
        .expect_err("unknown metric");
    assert!(
        e.to_string().contains("no_such_metric") && e.to_string().contains("sqnr_db"),
        "{e}"
    );
    // A report without the metric removes its figures again.
    mfq::sweep::write_reports_with(&dir, &[], &[]).expect("report");
    assert!(!dir.join("sqnr_db_vs_mac_lut.svg").exists());
}
