//! `mfq quantize` on bad input: a missing or invalid data file, arrays that do not match the
//! model's inputs, an empty calibration set, NaN/inf in the data or the weights, an unknown
//! format, an unwritable output path and the input as output. Each must exit non-zero with an
//! error naming the culprit, write no output file and leave the input model untouched.

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

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A private copy of the W1 model and 32 calibration digits in a temporary directory.
struct Fixture {
    dir: tempfile::TempDir,
    model: PathBuf,
    model_bytes: Vec<u8>,
    calib: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.onnx");
    std::fs::copy(root().join("fixtures/w1/model.onnx"), &model).expect("copy model");
    let model_bytes = std::fs::read(&model).expect("read model");
    let arrays = npz::read(&root().join("fixtures/w1/calib.npz")).expect("W1 calib");
    let x = arrays
        .iter()
        .find(|(n, _)| n == "Input3")
        .expect("Input3")
        .1
        .to_f32()
        .expect("f32");
    let calib = dir.path().join("calib.npz");
    write_npz(&calib, &[("Input3", first_rows(&x, 32))]);
    Fixture {
        dir,
        model,
        model_bytes,
        calib,
    }
}

fn first_rows(x: &ndarray::ArrayD<f32>, n: usize) -> ndarray::ArrayD<f32> {
    x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..n))
        .to_owned()
}

fn write_npz(path: &Path, arrays: &[(&str, ndarray::ArrayD<f32>)]) {
    let ts: Vec<(String, Tensor)> = arrays
        .iter()
        .map(|(n, a)| (n.to_string(), Tensor::F32(a.clone())))
        .collect();
    std::fs::write(path, npz::to_bytes(&ts).expect("npz bytes")).expect("write npz");
}

/// Runs `mfq quantize` with `extra` arguments and checks the failure contract; returns stderr.
fn fails(f: &Fixture, out: &Path, extra: &[&str], expect: &[&str]) -> String {
    let mut args = vec!["quantize", s(&f.model), "-o", s(out), "-q"];
    args.extend_from_slice(extra);
    let o = mfq(&args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !o.status.success(),
        "expected failure for {extra:?}; stderr:\n{err}"
    );
    assert!(
        err.contains("error:"),
        "no error line for {extra:?}:\n{err}"
    );
    for e in expect {
        assert!(
            err.contains(e),
            "error for {extra:?} should mention '{e}':\n{err}"
        );
    }
    assert!(!out.exists(), "{} was written for {extra:?}", out.display());
    assert_eq!(
        std::fs::read(&f.model).expect("model"),
        f.model_bytes,
        "input model changed for {extra:?}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(f.dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp") || n.starts_with(".out"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    err
}

#[test]
fn missing_and_invalid_data_files() {
    let f = fixture();
    let out = f.dir.path().join("out.onnx");
    let missing = f.dir.path().join("nope.npz");
    fails(&f, &out, &["--calib", s(&missing)], &["nope.npz"]);
    let garbage = f.dir.path().join("garbage.npz");
    std::fs::write(&garbage, b"this is not a zip archive").expect("write");
    fails(&f, &out, &["--calib", s(&garbage)], &["garbage.npz"]);
    let txt = f.dir.path().join("data.csv");
    std::fs::write(&txt, b"1,2,3\n").expect("write");
    fails(&f, &out, &["--calib", s(&txt)], &["data.csv", ".npz"]);
    // Missing --calib altogether.
    fails(&f, &out, &[], &["--calib"]);
    // A bad evaluation file fails before anything is written, too.
    fails(
        &f,
        &out,
        &["--calib", s(&f.calib), "--eval", s(&missing)],
        &["nope.npz"],
    );
}

#[test]
fn arrays_not_matching_the_model_inputs() {
    let f = fixture();
    let out = f.dir.path().join("out.onnx");
    let x = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[4, 1, 28, 28]));
    // Wrong name in a two-array file: the error lists what is there.
    let p = f.dir.path().join("names.npz");
    write_npz(&p, &[("image", x.clone()), ("other", x.clone())]);
    fails(&f, &out, &["--calib", s(&p)], &["Input3", "image"]);
    // Wrong per-sample shape.
    let p = f.dir.path().join("shape.npz");
    write_npz(
        &p,
        &[(
            "Input3",
            ndarray::ArrayD::zeros(ndarray::IxDyn(&[4, 1, 28, 27])),
        )],
    );
    fails(&f, &out, &["--calib", s(&p)], &["Input3", "28, 27"]);
    // Wrong dtype.
    let p = f.dir.path().join("dtype.npz");
    let ts = vec![(
        "Input3".to_string(),
        Tensor::i64(&[1, 1, 28, 28], vec![0; 784]).expect("i64"),
    )];
    std::fs::write(&p, npz::to_bytes(&ts).expect("npz")).expect("write");
    fails(&f, &out, &["--calib", s(&p)], &["int64", "float32"]);
}

#[test]
fn empty_calibration_set() {
    let f = fixture();
    let out = f.dir.path().join("out.onnx");
    let p = f.dir.path().join("empty.npz");
    write_npz(
        &p,
        &[(
            "Input3",
            ndarray::ArrayD::zeros(ndarray::IxDyn(&[0, 1, 28, 28])),
        )],
    );
    fails(&f, &out, &["--calib", s(&p)], &["empty"]);
    fails(
        &f,
        &out,
        &["--calib", s(&f.calib), "--calib-samples", "0"],
        &["calib"],
    );
    let dir = f.dir.path().join("no_images");
    std::fs::create_dir(&dir).expect("mkdir");
    fails(&f, &out, &["--calib", s(&dir)], &["no_images"]);
}

#[test]
fn non_finite_data_and_weights() {
    let f = fixture();
    let out = f.dir.path().join("out.onnx");
    for (bad, word) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let mut x = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[8, 1, 28, 28]));
        x[[5, 0, 3, 4]] = bad;
        let p = f.dir.path().join("nan.npz");
        write_npz(&p, &[("Input3", x)]);
        let err = fails(&f, &out, &["--calib", s(&p)], &["sample 5"]);
        assert!(err.contains(word), "{err}");
    }
    // A weight with a NaN: the error names the tensor.
    let mut m = mfq::onnx::load(&f.model).expect("load");
    let w = m.graph.find_value("Parameter5").expect("conv weight");
    let t = m
        .graph
        .value(w)
        .constant
        .as_deref()
        .cloned()
        .expect("constant");
    let mut a = t.to_f32().expect("f32");
    a.as_slice_mut().expect("contiguous")[3] = f32::NAN;
    m.graph.value_mut(w).constant = Some(std::sync::Arc::new(Tensor::F32(a)));
    let bad_model = f.dir.path().join("nan_weight.onnx");
    mfq::onnx::save(&m, &bad_model, &[]).expect("save");
    let o = mfq(&[
        "quantize",
        s(&bad_model),
        "-o",
        s(&out),
        "--calib",
        s(&f.calib),
        "-q",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "NaN weight accepted:\n{err}");
    assert!(err.contains("Parameter5"), "{err}");
    assert!(!out.exists());
}

#[test]
fn unknown_format_and_bad_options() {
    let f = fixture();
    let out = f.dir.path().join("out.onnx");
    let c = s(&f.calib);
    fails(
        &f,
        &out,
        &["--calib", c, "--weights", "int99"],
        &["weights", "int99"],
    );
    fails(
        &f,
        &out,
        &["--calib", c, "--acts", "e9m9"],
        &["acts", "e9m9"],
    );
    fails(
        &f,
        &out,
        &["--calib", c, "--first-last", "foo"],
        &["first_last", "foo"],
    );
    fails(
        &f,
        &out,
        &["--calib", c, "--calib-method", "median"],
        &["median"],
    );
    let cfg = f.dir.path().join("recipe.toml");
    std::fs::write(&cfg, "weights = \"int4\"\nbogus_key = 1\n").expect("write");
    fails(
        &f,
        &out,
        &["--calib", c, "--config", s(&cfg)],
        &["recipe.toml", "bogus_key"],
    );
    // A format the requested export cannot express says what would work.
    fails(
        &f,
        &out,
        &["--calib", c, "--weights", "e3m2", "--export", "qdq"],
        &["qonnx"],
    );
}

#[test]
fn unwritable_output_and_input_as_output() {
    let f = fixture();
    let c = s(&f.calib);
    let out = f.dir.path().join("no/such/dir/out.onnx");
    fails(&f, &out, &["--calib", c], &["out.onnx"]);
    // The report path is checked as well: nothing is left behind when it cannot be written.
    let out2 = f.dir.path().join("out2.onnx");
    let bad_report = f.dir.path().join("missing_dir/report.json");
    fails(
        &f,
        &out2,
        &["--calib", c, "--report", s(&bad_report)],
        &["report.json"],
    );
    // Output = input model: refused, model untouched.
    let o = mfq(&[
        "quantize",
        s(&f.model),
        "-o",
        s(&f.model),
        "--calib",
        c,
        "-q",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert!(err.contains("model.onnx"), "{err}");
    assert_eq!(std::fs::read(&f.model).expect("model"), f.model_bytes);
}
