//! Runs the built `mfq` binary: `formats list`, `formats show`, and `formats quantize` on .npy
//! files (per tensor, per channel, MX), including the error paths (unknown format, wrong dtype,
//! wrong shape, unreadable file), which must exit non-zero and leave no output file.

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{read_npy, write_npy};
use quant_formats::Format;
use std::path::Path;
use std::process::{Command, Output};

fn mfq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mfq"))
        .args(args)
        .output()
        .expect("run mfq")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn list_and_show() {
    let o = mfq(&["formats", "list"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for name in [
        "fp8-e4m3fn",
        "fp8-e5m2fnuz",
        "fp4-e2m1",
        "e8m0",
        "int4",
        "uint16",
        "mxfp4",
        "bf16",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing from list"
        );
    }
    assert!(text.contains("4.48e2"), "e4m3fn max 448 shown");
    let o = mfq(&["formats", "show", "fp4-e2m1", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["max"], 6.0);
    let codes = v["codes"].as_array().expect("codes");
    assert_eq!(codes.len(), 16);
    assert_eq!(codes[7]["bits"], "0111");
    assert_eq!(codes[7]["value"], 6.0);
    assert_eq!(codes[9]["value"], -0.5);
    let o = mfq(&["formats", "show", "fp8-e4m3fn"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("0x007f 01111111 NaN"), "{text}");
    let o = mfq(&["formats", "show", "e9m1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("exponent bits must be 0..=8"));
}

#[test]
fn quantize_npy_per_tensor_channel_and_mx() {
    let d = tempfile::tempdir().expect("tempdir");
    let x = ArrayD::from_shape_fn(IxDyn(&[4, 64]), |i| {
        ((i[0] * 64 + i[1]) as f32 - 100.0) * 0.173
    });
    let xin = d.path().join("x.npy");
    write_npy(&xin, &x).expect("write x");
    let xs: Vec<f32> = x.iter().copied().collect();

    let out = d.path().join("y.npy");
    let o = mfq(&[
        "formats",
        "quantize",
        "--format",
        "fp8-e4m3fn",
        "--scale",
        "0.25",
        "--in",
        s(&xin),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let y: ArrayD<f32> = read_npy(&out).expect("read y");
    assert_eq!(y.shape(), &[4, 64]);
    let f: Format = "fp8-e4m3fn".parse().expect("fmt");
    let mut want = vec![0f32; xs.len()];
    f.fake_quantize(&xs, 0.25, &mut want);
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), want);

    let o = mfq(&[
        "formats",
        "quantize",
        "--format",
        "int4",
        "--axis",
        "0",
        "--scales",
        "0.5,1,2,4",
        "--in",
        s(&xin),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let y: ArrayD<f32> = read_npy(&out).expect("read y");
    let f: Format = "int4".parse().expect("fmt");
    f.fake_quantize_per_channel(&xs, &[4, 64], 0, &[0.5, 1.0, 2.0, 4.0], &mut want)
        .expect("pc");
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), want);

    let o = mfq(&[
        "formats",
        "quantize",
        "--format",
        "mxfp4",
        "--in",
        s(&xin),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let y: ArrayD<f32> = read_npy(&out).expect("read y");
    let f: Format = "mxfp4".parse().expect("fmt");
    f.fake_quantize_mx(&xs, &[4, 64], 1, &mut want).expect("mx");
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), want);
}

#[test]
fn bad_inputs_fail_cleanly_without_output() {
    let d = tempfile::tempdir().expect("tempdir");
    let xin = d.path().join("x.npy");
    write_npy(&xin, &ArrayD::<f32>::zeros(IxDyn(&[3, 5]))).expect("write");
    let x64 = d.path().join("x64.npy");
    write_npy(&x64, &ArrayD::<f64>::zeros(IxDyn(&[3, 5]))).expect("write");
    let out = d.path().join("y.npy");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--format", "fp9", "--in", s(&xin)],
            "unknown format `fp9`",
        ),
        (
            vec!["--format", "int4", "--in", s(&x64)],
            "x64.npy is not a float32 .npy",
        ),
        (
            vec!["--format", "int4", "--in", "/nonexistent/x.npy"],
            "cannot open /nonexistent/x.npy",
        ),
        (
            vec![
                "--format",
                "int4",
                "--axis",
                "1",
                "--scales",
                "1,2,3",
                "--in",
                s(&xin),
            ],
            "needs 5 scales, got 3",
        ),
        (
            vec![
                "--format",
                "int4",
                "--axis",
                "2",
                "--scales",
                "1,2,3",
                "--in",
                s(&xin),
            ],
            "--axis 2 is out of range",
        ),
        (
            vec!["--format", "int4", "--scale", "0", "--in", s(&xin)],
            "--scale: scale 0",
        ),
        (
            vec![
                "--format",
                "int4",
                "--rounding",
                "sideways",
                "--in",
                s(&xin),
            ],
            "--rounding",
        ),
        (
            vec!["--format", "mxfp4", "--scale", "2", "--in", s(&xin)],
            "computes its own block scales",
        ),
    ];
    for (args, msg) in cases {
        let mut full = vec!["formats", "quantize"];
        full.extend(args);
        full.extend(["--out", s(&out)]);
        let o = mfq(&full);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{full:?} succeeded");
        assert!(err.contains(msg), "{full:?}: stderr `{err}` lacks `{msg}`");
        assert!(!out.exists(), "{full:?} left an output file");
    }
}
