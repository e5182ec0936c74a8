//! `mfq eval` and the image-folder preprocessing flags of `eval`/`quantize`:
//! - an exported W1 model (QDQ and QONNX) evaluated by `mfq eval` against the float model gives
//!   exactly the accuracy and fidelity numbers `mfq quantize` reported for its simulation;
//! - image folders written from the W1 digits and W2 photos, read with `--resize 0 --crop 0
//!   --pixel-scale/--pixel-offset` (or the recipe's `[images]` table), give the same accuracy and
//!   the same calibration as the `.npz` arrays they were written from; BGR files with `--bgr` too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mfq::tensor::{npz, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mfq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mfq"))
        .args(args)
        .output()
        .expect("run mfq")
}

fn ok(args: &[&str]) -> String {
    let o = mfq(args);
    assert!(
        o.status.success(),
        "mfq {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).expect("read json")).expect("json")
}

fn array(path: &Path, name: &str) -> Tensor {
    npz::read(path)
        .expect("read npz")
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{} has no '{name}'", path.display()))
        .1
}

fn write_npz(path: &Path, arrays: Vec<(String, Tensor)>) {
    std::fs::write(path, npz::to_bytes(&arrays).expect("npz")).expect("write npz");
}

#[test]
fn w1_exports_evaluate_to_the_quantize_report() {
    let d = tempfile::tempdir().expect("tempdir");
    let w1 = root().join("fixtures/w1");
    let model = w1.join("model.onnx");
    let eval = w1.join("eval.npz");
    for (w, a, style) in [("int4", "int8", "qdq"), ("e3m2", "e2m3", "qonnx")] {
        let out = d.path().join(format!("{w}_{style}.onnx"));
        let report = d.path().join(format!("{w}_{style}.json"));
        ok(&[
            "quantize",
            s(&model),
            "-o",
            s(&out),
            "--weights",
            w,
            "--acts",
            a,
            "--export",
            style,
            "--calib",
            s(&w1.join("calib.npz")),
            "--calib-samples",
            "128",
            "--eval",
            s(&eval),
            "--eval-samples",
            "600",
            "--report",
            s(&report),
            "-q",
        ]);
        let ej = d.path().join(format!("{w}_{style}_eval.json"));
        let text = ok(&[
            "eval",
            s(&out),
            "--reference",
            s(&model),
            "--data",
            s(&eval),
            "--samples",
            "600",
            "--json",
            s(&ej),
            "-q",
        ]);
        assert!(
            text.contains("top-1 agreement with the reference"),
            "{text}"
        );
        let r = json(&report)["evaluation"].clone();
        let e = json(&ej);
        assert_eq!(e["samples"], 600);
        assert_eq!(e["accuracy"]["top1"], r["quant_top1"], "{style}");
        assert_eq!(e["accuracy"]["top5"], r["quant_top5"], "{style}");
        assert_eq!(e["reference_accuracy"]["top1"], r["float_top1"], "{style}");
        assert_eq!(
            e["fidelity"]["top1_agreement"], r["top1_agreement"],
            "{style}"
        );
        let (es, rs) = (
            e["fidelity"]["output_sqnr_db"].as_f64().expect("sqnr"),
            r["output_sqnr_db"].as_f64().expect("sqnr"),
        );
        assert!(
            (es - rs).abs() < 1e-6,
            "{style}: eval SQNR {es} vs report {rs}"
        );
        let (ec, rc) = (
            e["fidelity"]["output_cosine"].as_f64().expect("cos"),
            r["output_cosine"].as_f64().expect("cos"),
        );
        assert!((ec - rc).abs() < 1e-9, "{style}: cosine {ec} vs {rc}");
    }
}

#[test]
fn eval_errors_name_the_culprit() {
    let d = tempfile::tempdir().expect("tempdir");
    let w1 = root().join("fixtures/w1");
    let model = w1.join("model.onnx");
    let j = d.path().join("e.json");
    let o = mfq(&[
        "eval",
        s(&model),
        "--data",
        s(&d.path().join("missing.npz")),
        "--json",
        s(&j),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.npz"));
    assert!(!j.exists());
    // A reference whose output does not match.
    let o = mfq(&[
        "eval",
        s(&model),
        "--reference",
        s(&root().join("fixtures/cache/w2/w2.onnx")),
        "--data",
        s(&w1.join("eval.npz")),
        "--samples",
        "4",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("w2.onnx"), "{err}");
}

/// 100 W1 digits as PNG files in class subfolders `0`…`9` (label = folder index) and the same
/// digits as a `.npz`.
fn w1_folder(dir: &Path) -> (PathBuf, PathBuf) {
    let src = root().join("fixtures/w1/eval.npz");
    let x = array(&src, "Input3").to_f32().expect("f32");
    let labels: Vec<i64> = array(&src, "labels")
        .to_f64_vec()
        .expect("labels")
        .iter()
        .map(|&v| v as i64)
        .collect();
    let folder = dir.join("digits");
    let n = 100;
    for (i, &label) in labels.iter().enumerate().take(n) {
        let sub = folder.join(label.to_string());
        std::fs::create_dir_all(&sub).expect("mkdir");
        let px: Vec<u8> = x
            .index_axis(ndarray::Axis(0), i)
            .iter()
            .map(|&v| v as u8)
            .collect();
        image::GrayImage::from_raw(28, 28, px)
            .expect("image")
            .save(sub.join(format!("{i:04}.png")))
            .expect("save png");
    }
    let npz_path = dir.join("digits.npz");
    let sub = x
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..n))
        .to_owned();
    write_npz(
        &npz_path,
        vec![
            ("Input3".into(), Tensor::F32(sub)),
            (
                "labels".into(),
                Tensor::i64(&[n], labels[..n].to_vec()).expect("labels"),
            ),
        ],
    );
    (folder, npz_path)
}

#[test]
fn image_folder_flags_reproduce_the_npz_on_w1() {
    let d = tempfile::tempdir().expect("tempdir");
    let (folder, npz_path) = w1_folder(d.path());
    let model = root().join("fixtures/w1/model.onnx");
    let raw = [
        "--resize",
        "0",
        "--crop",
        "0",
        "--pixel-scale",
        "1",
        "--pixel-offset",
        "0",
    ];
    let a = d.path().join("a.json");
    let b = d.path().join("b.json");
    let mut args = vec![
        "eval",
        s(&model),
        "--data",
        s(&folder),
        "--json",
        s(&a),
        "-q",
    ];
    args.extend_from_slice(&raw);
    ok(&args);
    ok(&[
        "eval",
        s(&model),
        "--data",
        s(&npz_path),
        "--json",
        s(&b),
        "-q",
    ]);
    let (ja, jb) = (json(&a), json(&b));
    assert_eq!(ja["samples"], 100);
    assert_eq!(ja["accuracy"], jb["accuracy"]);
    assert!(ja["accuracy"]["top1"].as_f64().expect("top1") > 0.9);
    // Quantize: calibration on the folder (flags, then the recipe's [images] table) equals
    // calibration on the arrays.
    let quant = |data: &Path, extra: &[&str], tag: &str| -> serde_json::Value {
        let out = d.path().join(format!("{tag}.onnx"));
        let rep = d.path().join(format!("{tag}.json"));
        let mut args = vec![
            "quantize",
            s(&model),
            "-o",
            s(&out),
            "--calib",
            s(data),
            "--report",
            s(&rep),
            "-q",
        ];
        args.extend_from_slice(extra);
        ok(&args);
        json(&rep)["activations"].clone()
    };
    let from_npz = quant(&npz_path, &[], "npz");
    let from_flags = quant(&folder, &raw, "flags");
    assert_eq!(from_flags, from_npz);
    let recipe = d.path().join("recipe.toml");
    std::fs::write(
        &recipe,
        "[images]\nresize = 0\ncrop = [0]\nscale = 1.0\noffset = 0.0\n",
    )
    .expect("write recipe");
    let from_recipe = quant(&folder, &["--config", s(&recipe)], "recipe");
    assert_eq!(from_recipe, from_npz);
    // The model-derived default (ImageNet-style resize 32 / crop 28, pixels / 255) differs.
    let default = quant(&folder, &[], "default");
    assert_ne!(default, from_npz);
    // Conflicting normalisations are refused.
    let o = mfq(&[
        "eval",
        s(&model),
        "--data",
        s(&folder),
        "--mean",
        "0.5",
        "--pixel-scale",
        "1",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not both"));
}

#[test]
fn rgb_and_bgr_folders_reproduce_w2_photos() {
    let d = tempfile::tempdir().expect("tempdir");
    let w2 = root().join("fixtures/cache/w2");
    let src = w2.join("eval.npz");
    let x = array(&src, "input").to_f32().expect("f32");
    let n = 2;
    let rgb = d.path().join("rgb");
    let bgr = d.path().join("bgr");
    std::fs::create_dir_all(&rgb).expect("mkdir");
    std::fs::create_dir_all(&bgr).expect("mkdir");
    for i in 0..n {
        // The photos were stored as (v − 127) / 128 of 8-bit pixels, NCHW.
        let img = x.index_axis(ndarray::Axis(0), i);
        let mut px_rgb = Vec::with_capacity(224 * 224 * 3);
        let mut px_bgr = Vec::with_capacity(224 * 224 * 3);
        for y in 0..224 {
            for xx in 0..224 {
                let v = |c: usize| (img[[c, y, xx]] * 128.0 + 127.0).round() as u8;
                px_rgb.extend([v(0), v(1), v(2)]);
                px_bgr.extend([v(2), v(1), v(0)]);
            }
        }
        image::RgbImage::from_raw(224, 224, px_rgb)
            .expect("rgb")
            .save(rgb.join(format!("{i}.png")))
            .expect("save");
        image::RgbImage::from_raw(224, 224, px_bgr)
            .expect("bgr")
            .save(bgr.join(format!("{i}.png")))
            .expect("save");
    }
    let npz_path = d.path().join("photos.npz");
    write_npz(
        &npz_path,
        vec![(
            "input".into(),
            Tensor::F32(
                x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..n))
                    .to_owned(),
            ),
        )],
    );
    let model = w2.join("w2.onnx");
    let flags = [
        "--resize",
        "0",
        "--crop",
        "224",
        "--pixel-scale",
        "0.0078125",
        "--pixel-offset",
        "-0.9921875",
    ];
    let quant = |data: &Path, extra: &[&str], tag: &str| -> serde_json::Value {
        let out = d.path().join(format!("{tag}.onnx"));
        let rep = d.path().join(format!("{tag}.json"));
        let mut args = vec![
            "quantize",
            s(&model),
            "-o",
            s(&out),
            "--calib",
            s(data),
            "--calib-method",
            "minmax",
            "--report",
            s(&rep),
            "-q",
        ];
        args.extend_from_slice(extra);
        ok(&args);
        json(&rep)["activations"].clone()
    };
    let from_npz = quant(&npz_path, &[], "npz");
    assert_eq!(quant(&rgb, &flags, "rgb"), from_npz);
    let mut bgr_flags = flags.to_vec();
    bgr_flags.push("--bgr");
    assert_eq!(quant(&bgr, &bgr_flags, "bgr"), from_npz);
    // An NHWC layout does not fit the NCHW input: the error says what to adjust.
    let mut nhwc = flags.to_vec();
    nhwc.extend(["--layout", "nhwc"]);
    let mut args = vec!["eval", s(&model), "--data", s(&rgb)];
    args.extend_from_slice(&nhwc);
    let o = mfq(&args);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("layout"));
}
