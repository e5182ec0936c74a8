//! Golden tables against the reference implementations (ml_dtypes, the ONNX reference
//! QuantizeLinear, QONNX FloatQuant/IntQuant), generated once by scripts/gen_golden.py and
//! committed under tests/golden/. No Python runs here. See the script for the file layout.

use quant_formats::{Format, Rounding};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn nan_eq(a: f32, b: f32) -> bool {
    a.is_nan() && b.is_nan()
}

#[test]
fn golden_tables_match_references() {
    let text = std::fs::read_to_string(dir().join("manifest.json"))
        .expect("read tests/golden/manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    let cases = manifest["cases"].as_array().expect("cases array");
    let mut per_ref: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in cases {
        let s = |k: &str| {
            case[k]
                .as_str()
                .unwrap_or_else(|| panic!("case field {k}: {case}"))
                .to_string()
        };
        let (file, reference, op, fmt_s, compare) = (
            s("file"),
            s("reference"),
            s("op"),
            s("format"),
            s("compare"),
        );
        let f: Format = fmt_s.parse().unwrap_or_else(|e| panic!("{file}: {e}"));
        let rounding: Rounding = s("rounding")
            .parse()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let scale = case["scale"].as_f64().expect("scale") as f32;
        let q = f.quantizer(rounding);
        let bytes = std::fs::read(dir().join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let words: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(
            words.len(),
            2 * case["count"].as_u64().expect("count") as usize,
            "{file}: size"
        );
        let inputs: Vec<u32> = words.iter().step_by(2).copied().collect();
        let expected: Vec<u32> = words.iter().skip(1).step_by(2).copied().collect();
        let xs: Vec<f32> = inputs.iter().map(|b| f32::from_bits(*b)).collect();
        let mut fq = vec![0f32; xs.len()];
        if op == "fakequant" {
            q.fake_quantize(&xs, scale, &mut fq);
        }
        let mut bad = 0usize;
        for (i, (&inp, &want)) in inputs.iter().zip(&expected).enumerate() {
            let x = f32::from_bits(inp);
            let ok = match op.as_str() {
                "decode" => {
                    let got = f.decode(inp);
                    got.to_bits() == want || nan_eq(got, f32::from_bits(want))
                }
                "round" | "fakequant" => {
                    let got = if op == "round" {
                        q.quantize_one(x, 0)
                    } else {
                        fq[i]
                    };
                    let w = f32::from_bits(want);
                    match compare.as_str() {
                        "bits" => got.to_bits() == want || nan_eq(got, w),
                        _ => got == w || nan_eq(got, w),
                    }
                }
                "code" => {
                    let got = f.code_of_value(q.quantize_one(x / scale, 0));
                    got == want || nan_eq(f.decode(got), f.decode(want))
                }
                other => panic!("{file}: unknown op {other}"),
            };
            if !ok {
                bad += 1;
                if bad <= 3 {
                    failures.push(format!(
                        "{file} ({fmt_s}, {rounding}): input {x:e} ({inp:#010x}) expected {want:#010x} ({:e})",
                        f32::from_bits(want)
                    ));
                }
            }
        }
        if bad > 0 {
            failures.push(format!("{file}: {bad} of {} cases differ", inputs.len()));
        }
        *per_ref.entry(reference).or_default() += inputs.len();
    }
    eprintln!("golden cases per reference: {per_ref:?}");
    assert!(per_ref.get("ml_dtypes").copied().unwrap_or(0) > 100_000);
    assert!(per_ref.get("onnx").copied().unwrap_or(0) > 10_000);
    assert!(per_ref.get("qonnx").copied().unwrap_or(0) > 10_000);
    assert!(
        failures.is_empty(),
        "{} golden mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
