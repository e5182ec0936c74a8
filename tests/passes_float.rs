//! Differential tests on the real workloads: the function-preserving passes (fold-batch-norm,
//! equalize-channels, smooth-quant, exponent-shift) leave the float model's outputs unchanged.
//! Outputs before and after each pass, on a few evaluation samples, must agree within 1e-5
//! relative (‖after − before‖₂ / ‖before‖₂, and every element within 1e-4 of the output's
//! max |before|). W2 and W3 need `bash scripts/prepare-test-data.sh`.

mod common;
use common::{need, root};
use std::path::Path;

use mfq::data::Dataset;
use mfq::interp::Interpreter;
use mfq::ir::Model;
use mfq::passes::{driver, EqualizeOptions, ExponentShiftOptions, SmoothOptions};
use mfq::quant::{pipeline, Fixed, Recipe};
use mfq::tensor::Tensor;

fn data(model: &Model, path: &Path, n: usize) -> Dataset {
    let mut d = Dataset::open(path, &pipeline::data_inputs(model), None).expect("open data");
    d.select(n, Some(3));
    d
}

fn outputs(model: &Model, ds: &Dataset) -> Vec<f32> {
    let interp = Interpreter::new(model).expect("interpreter");
    let mut out = Vec::new();
    for b in ds.batches(4).expect("batches") {
        let b = b.expect("batch");
        let feeds: Vec<(String, Tensor)> = b
            .inputs
            .into_iter()
            .map(|(n, a)| (n, Tensor::F32(a)))
            .collect();
        let o = interp.run(&feeds).expect("run");
        out.extend(o[0].1.to_f32().expect("f32 output").iter().copied());
    }
    out
}

fn compare(what: &str, before: &[f32], after: &[f32]) {
    assert_eq!(before.len(), after.len(), "{what}: output sizes differ");
    let num: f64 = before
        .iter()
        .zip(after)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum();
    let den: f64 = before.iter().map(|a| f64::from(*a).powi(2)).sum();
    let rel = (num / den.max(1e-300)).sqrt();
    let peak = before.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = before
        .iter()
        .zip(after)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!(
        "{what}: relative L2 difference {rel:.3e}, max |diff| / max |out| {:.3e}",
        worst / peak
    );
    assert!(rel <= 1e-5, "{what}: relative difference {rel:.3e} > 1e-5");
    assert!(
        worst <= 1e-4 * peak,
        "{what}: element difference {worst:.3e} > 1e-4 × {peak:.3e}"
    );
}

/// Runs every function-preserving pass that applies to `model` and compares outputs.
fn check(name: &str, model_path: &Path, calib: &Path, eval: &Path, bn: bool, samples: usize) {
    let mut base = mfq::onnx::load(model_path).expect("load model");
    pipeline::prepare(&mut base, &[]).expect("prepare");
    let ev = data(&base, eval, samples);
    let cal = data(&base, calib, samples);
    let reference = outputs(&base, &ev);
    assert!(reference.iter().all(|v| v.is_finite()));

    let mut folded = base.clone();
    let n = mfq::ir::fold::fold_batch_norm(&mut folded).expect("fold-batch-norm");
    if bn {
        assert!(n > 0, "{name}: expected BatchNormalization nodes to fold");
    }
    compare(
        &format!("{name} fold-batch-norm ({n} folded)"),
        &reference,
        &outputs(&folded, &ev),
    );

    let mut eq = folded.clone();
    let r = mfq::passes::equalize::equalize_channels(&mut eq, &EqualizeOptions::default())
        .expect("equalize-channels");
    compare(
        &format!("{name} equalize-channels ({} pairs)", r.pairs.len()),
        &reference,
        &outputs(&eq, &ev),
    );

    let recipe = Recipe {
        weights: "e2m1".into(),
        acts: "e4m3".into(),
        batch_size: 4,
        ..Recipe::default()
    };
    let mut sm = folded.clone();
    let log = driver::smooth(&mut sm, &recipe, &cal, &SmoothOptions::default()).expect("smooth");
    compare(
        &format!("{name} smooth-quant ({})", log[0]),
        &reference,
        &outputs(&sm, &ev),
    );

    // int8 weights with e2m1 activations: the shift pays there (with e2m1 weights the search
    // may rightly choose no offsets, which would leave nothing to check)
    let shift_recipe = Recipe {
        weights: "int8".into(),
        acts: "e2m1".into(),
        ..recipe.clone()
    };
    let mut sh = folded.clone();
    let mut fixed = Fixed::default();
    let log = driver::exponent_shift(
        &mut sh,
        &shift_recipe,
        &cal,
        &ExponentShiftOptions::default(),
        &mut fixed,
    )
    .expect("exponent-shift");
    assert!(!fixed.acts.is_empty(), "{name}: no tensor shifted: {log:?}");
    // "…, N of M channels shifted (max k K), …" per tensor
    let channels: usize = log
        .iter()
        .filter_map(|l| {
            l.split(" of ")
                .next()?
                .rsplit(", ")
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!(channels > 0, "{name}: no channel got an offset: {log:?}");
    compare(
        &format!("{name} exponent-shift ({})", log[0]),
        &reference,
        &outputs(&sh, &ev),
    );
}

#[test]
fn w1_function_preserving_passes() {
    let w1 = root().join("fixtures/w1");
    check(
        "W1",
        &w1.join("model.onnx"),
        &w1.join("calib.npz"),
        &w1.join("eval.npz"),
        false,
        16,
    );
}

#[test]
fn w2_bn_function_preserving_passes() {
    let c = root().join("fixtures/cache/w2");
    check(
        "W2 (BN kept)",
        &need(&c.join("w2_bn.onnx")),
        &need(&c.join("calib.npz")),
        &need(&c.join("eval.npz")),
        true,
        4,
    );
}

#[test]
fn w3_function_preserving_passes() {
    let c = root().join("fixtures/cache/w3");
    check(
        "W3",
        &need(&c.join("vit_s_focus.onnx")),
        &need(&c.join("calib.npz")),
        &need(&c.join("eval.npz")),
        true,
        2,
    );
}
