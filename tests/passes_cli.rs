//! `mfq quantize --passes` end to end on W1 (committed in `fixtures/w1/`): every pass runs from
//! the CLI, its options and wall time land in the report, and bad pass lists or options are
//! errors naming them.

use std::path::PathBuf;
use std::process::{Command, Output};

fn w1() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/w1")
}

fn quantize(dir: &std::path::Path, extra: &[&str]) -> Output {
    let w = w1();
    Command::new(env!("CARGO_BIN_EXE_mfq"))
        .arg("quantize")
        .arg(w.join("model.onnx"))
        .arg("-o")
        .arg(dir.join("q.onnx"))
        .arg("--calib")
        .arg(w.join("calib.npz"))
        .arg("--eval")
        .arg(w.join("eval.npz"))
        .args(["--calib-samples", "64", "--eval-samples", "200", "--report"])
        .arg(dir.join("r.json"))
        .args(extra)
        .output()
        .expect("run mfq quantize")
}

fn report(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("r.json")).expect("report")).expect("json")
}

#[test]
fn every_pass_runs_and_is_recorded() {
    let d = tempfile::tempdir().expect("tmp");
    for (fmt, passes, opts) in [
        (
            "int4",
            "seed",
            vec!["--pass-option", "smooth-quant.alpha=0.6"],
        ),
        (
            "e2m1",
            "fold-batch-norm,exponent-shift,fp-search,learned-rounding,correct-bias",
            vec!["--pass-option", "learned-rounding.iterations=50"],
        ),
    ] {
        let mut args = vec!["--weights", fmt, "--acts", fmt, "--passes", passes];
        args.extend(opts.iter().copied());
        let out = quantize(d.path(), &args);
        assert!(
            out.status.success(),
            "{passes}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = report(d.path());
        let recs = r["passes"].as_array().expect("passes array");
        let names: Vec<&str> = recs.iter().filter_map(|p| p["name"].as_str()).collect();
        let want: Vec<String> = if passes == "seed" {
            mfq::passes::SEED_PIPELINE
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            passes.split(',').map(String::from).collect()
        };
        assert_eq!(names, want, "passes run in stage order");
        for p in recs {
            assert!(p["wall_s"].as_f64().is_some_and(|t| t >= 0.0), "{p}");
            assert!(!p["log"].as_array().expect("log").is_empty(), "{p}");
        }
        if passes == "seed" {
            let sq = recs
                .iter()
                .find(|p| p["name"] == "smooth-quant")
                .expect("sq");
            assert_eq!(sq["options"]["alpha"].as_f64(), Some(0.6000000238418579));
        }
        let top1 = r["evaluation"]["quant_top1"].as_f64().expect("top1");
        assert!(top1 > 0.5, "{passes}: top-1 {top1}");
    }
}

#[test]
fn bad_pass_lists_are_errors_naming_the_culprit() {
    let d = tempfile::tempdir().expect("tmp");
    for (args, want) in [
        (vec!["--passes", "fold-batch-norm,gptqq"], "gptqq"),
        (
            vec!["--passes", "gptq,learned-rounding"],
            "learned-rounding",
        ),
        (
            vec![
                "--passes",
                "smooth-quant",
                "--pass-option",
                "smooth-quant.alpah=0.3",
            ],
            "alpah",
        ),
        (
            vec![
                "--passes",
                "smooth-quant",
                "--pass-option",
                "smooth-quant.alpha=3",
            ],
            "alpha",
        ),
        (
            vec![
                "--passes",
                "gptq",
                "--pass-option",
                "smooth-quant.alpha=0.3",
            ],
            "smooth-quant",
        ),
    ] {
        let out = quantize(d.path(), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            err.contains(want),
            "{args:?}: error does not name {want}: {err}"
        );
    }
}
