//! QONNX Trunc against golden cases computed by qonnx 1.0's own implementation
//! (`tests/golden/qonnx_trunc.json`, written by `scripts/gen_trunc_golden.py`), in each of the
//! three domains mfq accepts QONNX ops from. Versions 1 and 2 follow the domain opset.

use mfq::ir::{Attr, AttrValue, Node};
use mfq::tensor::Tensor;

fn tensor(v: &serde_json::Value) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    let data: Vec<f32> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|d| d.as_f64().expect("number") as f32)
        .collect();
    Tensor::f32(&shape, data).expect("tensor")
}

#[test]
fn trunc_matches_qonnx_golden_cases_in_every_domain() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/qonnx_trunc.json");
    let text = std::fs::read_to_string(path).expect("read golden file");
    let golden: serde_json::Value = serde_json::from_str(&text).expect("parse golden file");
    let cases = golden["cases"].as_array().expect("cases");
    assert!(cases.len() >= 8);
    let mut failures = Vec::new();
    for domain in mfq::ops::QONNX_DOMAINS {
        for (i, c) in cases.iter().enumerate() {
            let version = c["version"].as_i64().expect("version");
            let mut node = Node::new("Trunc", vec![], vec![]);
            node.domain = domain.to_string();
            node.attrs.push(Attr {
                name: "rounding_mode".into(),
                value: AttrValue::String(
                    c["rounding_mode"]
                        .as_str()
                        .expect("mode")
                        .as_bytes()
                        .to_vec(),
                ),
            });
            if version == 2 {
                for k in ["signed", "narrow"] {
                    node.attrs.push(Attr {
                        name: k.into(),
                        value: AttrValue::Int(c[k].as_i64().expect(k)),
                    });
                }
            }
            let op = mfq::ops::build(&node, version).expect("build Trunc");
            let inputs: Vec<Tensor> = c["inputs"]
                .as_array()
                .expect("inputs")
                .iter()
                .map(tensor)
                .collect();
            let refs: Vec<Option<&Tensor>> = inputs.iter().map(Some).collect();
            let got = op.eval(&refs).expect("eval Trunc").remove(0);
            let want = tensor(&c["output"]);
            assert_eq!(got.shape(), want.shape());
            let (g, w) = (got.to_f64_vec().expect("f"), want.to_f64_vec().expect("f"));
            let bad = g.iter().zip(&w).filter(|(a, b)| a != b).count();
            if bad > 0 {
                failures.push(format!(
                    "{domain} case {i} (v{version}, {}): {bad} of {} elements differ",
                    c["rounding_mode"],
                    g.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn trunc_rejects_unknown_rounding_mode() {
    let mut node = Node::new("Trunc", vec![], vec![]);
    node.domain = "qonnx.custom_op.general".into();
    node.attrs.push(Attr {
        name: "rounding_mode".into(),
        value: AttrValue::String(b"STOCHASTIC".to_vec()),
    });
    let err = mfq::ops::build(&node, 2)
        .expect_err("must refuse")
        .to_string();
    assert!(err.contains("rounding_mode"), "{err}");
}
