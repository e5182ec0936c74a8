//! `mfq cost --mac --json`, `mfq rtl` and `mfq cost fit` end to end.

use std::process::Command;

fn mfq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mfq"))
        .args(args)
        .output()
        .expect("run mfq");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cost_mac_json_has_the_documented_keys() {
    let (ok, out, err) = mfq(&[
        "cost",
        "--mac",
        "--weights",
        "e4m3",
        "--acts",
        "e4m3",
        "--n",
        "4608",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    for k in ["lut", "ff", "carry", "dsp", "acc_bits"] {
        assert!(v[k].is_u64(), "key {k} missing or not an integer: {out}");
    }
    assert_eq!(v["acc_bits"], 50);
    assert_eq!(v["ff"], 50);
    let (ok, out, err) = mfq(&[
        "cost",
        "--mac",
        "--weights",
        "int4",
        "--acts",
        "uint8",
        "--n",
        "64",
        "--device",
        "7series",
        "--dsp",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["acc_bits"], 4 + 8 + 6 + 1);
}

#[test]
fn bad_inputs_name_the_option() {
    let (ok, _, err) = mfq(&[
        "cost",
        "--mac",
        "--weights",
        "int99x",
        "--acts",
        "int4",
        "--n",
        "8",
    ]);
    assert!(!ok);
    assert!(err.contains("--weights"), "{err}");
    let (ok, _, err) = mfq(&[
        "cost",
        "--mac",
        "--weights",
        "int4",
        "--acts",
        "int4",
        "--n",
        "8",
        "--device",
        "stratix",
    ]);
    assert!(!ok);
    assert!(err.contains("--device"), "{err}");
}

#[test]
fn rtl_writes_verilog_and_fit_roundtrips() {
    let d = tempfile::tempdir().expect("tempdir");
    let v = d.path().join("mac.v");
    let (ok, _, err) = mfq(&[
        "rtl",
        "--weights",
        "e2m1",
        "--acts",
        "int4",
        "--n",
        "100",
        "-o",
        v.to_str().expect("path"),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&v).expect("verilog");
    assert!(
        text.contains("module mac_int4_e2m1_n100_sm_addsub"),
        "{text}"
    );
    // Fit the committed results and compare with the shipped coefficient set's models.
    let csv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/cost-model/data/yosys-0.23-xcup.csv"
    );
    let out = d.path().join("coeffs.json");
    let (ok, _, err) = mfq(&[
        "cost",
        "fit",
        csv,
        "-o",
        out.to_str().expect("path"),
        "--flow",
        "nodsp",
        "--date",
        "2026-11-28",
    ]);
    assert!(ok, "{err}");
    let ours: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("read")).expect("json");
    let shipped: serde_json::Value = serde_json::from_str(include_str!(
        "../cost-model/data/coeffs-yosys-0.23-xcup-nodsp.json"
    ))
    .expect("json");
    assert_eq!(
        ours["models"], shipped["models"],
        "shipped coefficients are not the fit of the shipped CSV"
    );
    let (ok, out2, err) = mfq(&[
        "cost",
        "--mac",
        "--weights",
        "int4",
        "--acts",
        "int4",
        "--n",
        "64",
        "--coeffs",
        out.to_str().expect("p"),
        "--json",
    ]);
    assert!(ok, "{err}");
    assert!(out2.contains("\"lut\""));
}

#[test]
fn cost_layers_reports_estimate_qonnx_and_finn() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../cost-model/tests/data/qonnx_golden.json"))
            .expect("golden");
    let d = tempfile::tempdir().expect("tempdir");
    let layers = d.path().join("layers.json");
    std::fs::write(&layers, golden["layers"].to_string()).expect("write");
    let lp = layers.to_str().expect("path");
    let (ok, out, err) = mfq(&[
        "cost", "--layers", lp, "--arch", "dataflow", "--fps", "5000", "--clock", "200", "--finn",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["qonnx"]["total_macs"], golden["qonnx"]["total_macs"]);
    assert_eq!(v["estimate"]["layers"].as_array().expect("layers").len(), 4);
    assert_eq!(v["finn"].as_array().expect("finn").len(), 4);
    assert!(v["estimate"]["meets_target"].as_bool().expect("bool"));
    let (ok, out, err) = mfq(&["cost", "--layers", lp, "--csv"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 5, "{out}");
    let (ok, _, err) = mfq(&["cost", "--layers", lp, "--arch", "systolic"]);
    assert!(!ok && err.contains("--arch"), "{err}");
}

#[test]
fn device_families_say_which_measurement_they_use() {
    let mac = |device: &str, dsp: bool| {
        let mut args = vec![
            "cost",
            "--mac",
            "--weights",
            "e2m1",
            "--acts",
            "e1m3",
            "--n",
            "4608",
            "--device",
            device,
            "--json",
        ];
        if dsp {
            args.push("--dsp");
        }
        let (ok, out, err) = mfq(&args);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).expect("json")
    };
    let usp = mac("ultrascale+", false);
    assert!(usp.get("device_note").is_none(), "{usp}");
    assert!(usp["coefficients"].as_str().expect("str").contains("xcup"));
    // 7-series: its own yosys xc7 fit.
    let xc7 = mac("7series", false);
    assert!(xc7.get("device_note").is_none(), "{xc7}");
    assert!(
        xc7["coefficients"]
            .as_str()
            .expect("str")
            .contains("-family xc7"),
        "{xc7}"
    );
    // Versal: no yosys target; the UltraScale+ set stands in and the estimate says so.
    let versal = mac("versal", false);
    let note = versal["device_note"]
        .as_str()
        .expect("Versal carries a device_note");
    assert!(
        note.contains("no yosys target") && note.contains("xcup"),
        "{note}"
    );
    assert_eq!(versal["lut"], usp["lut"]);
    // 7-series DSP flow was not synthesized: the xcup DSP set stands in, flagged.
    let xc7_dsp = mac("7series", true);
    assert!(
        xc7_dsp["device_note"]
            .as_str()
            .expect("note")
            .contains("xcup"),
        "{xc7_dsp}"
    );
    let (ok, out, err) = mfq(&[
        "cost",
        "--mac",
        "--weights",
        "int4",
        "--acts",
        "int4",
        "--n",
        "8",
        "--device",
        "versal",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("note: Versal has no yosys target"), "{out}");
}
