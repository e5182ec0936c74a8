//! Golden test of the kernels against onnxruntime: `testdata/ort_oracle.py` builds single-node
//! ONNX models (Resize in every mode, pools with ceil_mode/count_include_pad/dilations, Conv,
//! ConvTranspose, Einsum, norms, Softmax, Erf, Gemm, MatMul, Pad, DepthToSpace), runs them with
//! the pinned onnxruntime and this test compares every kernel output with them.
//!
//! The Python interpreter comes from `MFQ_PYTHON` (default `.venv/bin/python` at the workspace
//! root, created by `bash scripts/venv.sh`).

use super::*;
use ndarray::ArrayD;
use ndarray_npy::read_npy;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> PathBuf {
    let p = std::env::var_os("MFQ_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        p.exists(),
        "Python interpreter {} not found: run `bash scripts/venv.sh` or set MFQ_PYTHON",
        p.display()
    );
    p
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as usize)
        .collect()
}

fn split_pads(v: &Value) -> (Vec<usize>, Vec<usize>) {
    let p = usizes(v);
    let h = p.len() / 2;
    (p[..h].to_vec(), p[h..].to_vec())
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().expect("string field")
}

fn i(v: &Value, k: &str) -> i64 {
    v[k].as_i64().expect("integer field")
}

fn fl(v: &Value, k: &str) -> f32 {
    v[k].as_f64().expect("number field") as f32
}

fn run_case(op: &str, p: &Value, ins: &[Option<ArrayD<f32>>]) -> Result<ArrayD<f32>, KernelError> {
    let x = ins[0].as_ref().expect("first input").view();
    let arg = |k: usize| ins[k].as_ref().expect("input").view();
    match op {
        "Resize" => {
            let rp = resize::ResizeParams {
                output_shape: usizes(&p["output_shape"]),
                scales: p["scales"]
                    .as_array()
                    .expect("scales")
                    .iter()
                    .map(|v| v.as_f64().expect("scale") as f32)
                    .collect(),
                mode: match s(p, "mode") {
                    "nearest" => resize::ResizeMode::Nearest,
                    "linear" => resize::ResizeMode::Linear,
                    _ => resize::ResizeMode::Cubic,
                },
                nearest_mode: match s(p, "nearest_mode") {
                    "round_prefer_floor" => resize::NearestMode::RoundPreferFloor,
                    "round_prefer_ceil" => resize::NearestMode::RoundPreferCeil,
                    "floor" => resize::NearestMode::Floor,
                    _ => resize::NearestMode::Ceil,
                },
                coord: match s(p, "coord") {
                    "half_pixel" => resize::CoordTransform::HalfPixel,
                    "pytorch_half_pixel" => resize::CoordTransform::PytorchHalfPixel,
                    "align_corners" => resize::CoordTransform::AlignCorners,
                    "asymmetric" => resize::CoordTransform::Asymmetric,
                    _ => resize::CoordTransform::HalfPixelSymmetric,
                },
                cubic_coeff_a: fl(p, "a"),
                exclude_outside: i(p, "exclude_outside") == 1,
            };
            resize::resize(&x, &rp)
        }
        "AveragePool" | "MaxPool" => {
            let (pb, pe) = split_pads(&p["pads"]);
            let pp = pool::PoolParams {
                kernel: usizes(&p["kernel"]),
                strides: usizes(&p["strides"]),
                dilations: usizes(&p["dilations"]),
                pads_begin: pb,
                pads_end: pe,
                ceil_mode: i(p, "ceil_mode") == 1,
                count_include_pad: i(p, "count_include_pad") == 1,
            };
            if op == "MaxPool" {
                pool::max_pool(&x, &pp)
            } else {
                pool::average_pool(&x, &pp)
            }
        }
        "ConvTranspose" => {
            let (pb, pe) = split_pads(&p["pads"]);
            let cp = conv::ConvTransposeParams {
                strides: usizes(&p["strides"]),
                dilations: usizes(&p["dilations"]),
                pads_begin: pb,
                pads_end: pe,
                output_padding: usizes(&p["output_padding"]),
                groups: i(p, "groups") as usize,
            };
            conv::conv_transpose(&x, &arg(1), Some(&arg(2)), &cp)
        }
        "Conv" => {
            let (pb, pe) = split_pads(&p["pads"]);
            let cp = conv::Conv2dParams {
                strides: usizes(&p["strides"]),
                dilations: usizes(&p["dilations"]),
                pads_begin: pb,
                pads_end: pe,
                groups: i(p, "groups") as usize,
            };
            conv::conv(&x, &arg(1), Some(&arg(2)), &cp)
        }
        "Einsum" => einsum::einsum(s(p, "equation"), &[x, arg(1)]),
        "LayerNormalization" => norm::layer_normalization(
            &x,
            Some(&arg(1)),
            Some(&arg(2)),
            i(p, "axis"),
            fl(p, "epsilon"),
        ),
        "InstanceNormalization" => {
            norm::instance_normalization(&x, &arg(1), &arg(2), fl(p, "epsilon"))
        }
        "Softmax" => norm::softmax(&x, i(p, "axis")),
        "Erf" => Ok(elementwise::erf(&x)),
        "Gemm" => matmul::gemm(
            &x,
            &arg(1),
            Some(&arg(2)),
            &matmul::GemmParams {
                alpha: fl(p, "alpha"),
                beta: fl(p, "beta"),
                trans_a: i(p, "transA") == 1,
                trans_b: i(p, "transB") == 1,
            },
        ),
        "MatMul" => matmul::matmul(&x, &arg(1)),
        "Pad" => {
            let pads: Vec<i64> = p["pads"]
                .as_array()
                .expect("pads")
                .iter()
                .map(|v| v.as_i64().expect("pad"))
                .collect();
            let h = pads.len() / 2;
            let mode = match s(p, "mode") {
                "reflect" => pad::PadMode::Reflect,
                "edge" => pad::PadMode::Edge,
                _ => pad::PadMode::Wrap,
            };
            pad::pad(&x, &pads[..h], &pads[h..], mode)
        }
        "DepthToSpace" => layout::depth_to_space(
            &x,
            i(p, "blocksize") as usize,
            if s(p, "mode") == "DCR" {
                layout::DepthToSpaceMode::Dcr
            } else {
                layout::DepthToSpaceMode::Crd
            },
        ),
        other => panic!("oracle case with unknown op {other}"),
    }
}

#[test]
fn kernels_match_onnxruntime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kernels/testdata/ort_oracle.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("run ort_oracle.py");
    assert!(
        out.status.success(),
        "ort_oracle.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("cases.json")).expect("cases.json");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("json");
    assert!(cases.len() >= 100, "only {} oracle cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let name = s(c, "name");
        let ins: Vec<Option<ArrayD<f32>>> = c["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .map(|v| {
                v.as_str()
                    .map(|f| read_npy(dir.path().join(f)).expect("input npy"))
            })
            .collect();
        let expected: ArrayD<f32> = read_npy(dir.path().join(s(c, "output"))).expect("output npy");
        match run_case(s(c, "op"), &c["params"], &ins) {
            Err(e) => failures.push(format!("{name}: {e}")),
            Ok(got) if got.shape() != expected.shape() => failures.push(format!(
                "{name}: shape {:?}, onnxruntime {:?}",
                got.shape(),
                expected.shape()
            )),
            Ok(got) => {
                let scale = expected.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-30);
                let diff = got
                    .iter()
                    .zip(expected.iter())
                    .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
                if diff > 1e-5 * scale {
                    failures.push(format!("{name}: max |diff| {diff} (max |ort| {scale})"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "kernel/onnxruntime mismatches:\n{}",
        failures.join("\n")
    );
}
