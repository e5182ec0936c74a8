//! Drift check: a handful of generated MAC units synthesized by yosys (the flow of the shipped
//! no-DSP coefficient set) must agree with the model — FF exactly, LUTs within 15 % on average (35 % per design).
//! Needs yosys (`bash scripts/eda/install.sh`); fails with that message when missing.

use cost_model::estimate::{builtin, estimate_mac, MacOptions};
use cost_model::operand::Operand;
use cost_model::rtl::{generate_verilog, MacSpec};
use std::process::Command;

fn synth(spec: &MacSpec) -> (u64, u64) {
    let dir = std::env::temp_dir().join(format!(
        "mfq-yosys-{}-{}",
        std::process::id(),
        spec.module_name()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let v = dir.join("mac.v");
    std::fs::write(&v, generate_verilog(spec).expect("rtl")).expect("write");
    let stat = dir.join("stat.txt");
    let script = format!(
        "read_verilog {}; synth_xilinx -family xcup -flatten -noiopad -nodsp -abc9 -top {}; tee -q -o {} stat",
        v.display(),
        spec.module_name(),
        stat.display()
    );
    let out = Command::new("yosys")
        .args(["-q", "-p", &script])
        .output()
        .expect("run yosys");
    assert!(
        out.status.success(),
        "yosys failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&stat).expect("stat");
    let _ = std::fs::remove_dir_all(&dir);
    let (mut lut, mut ff) = (0, 0);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if let (Some(cell), Some(count)) = (it.next(), it.next()) {
            let c: u64 = count.parse().unwrap_or(0);
            if cell.starts_with("LUT") && cell.len() == 4 {
                lut += c;
            } else if cell.starts_with("FD") {
                ff += c;
            }
        }
    }
    (lut, ff)
}

#[test]
fn model_tracks_yosys_on_a_handful_of_designs() {
    let have = Command::new("yosys").arg("-V").output().is_ok();
    assert!(
        have,
        "yosys not found: run `bash scripts/eda/install.sh` (installs Debian yosys and iverilog)"
    );
    let set = builtin(false).expect("coefficients");
    let ver = String::from_utf8_lossy(
        &Command::new("yosys")
            .arg("-V")
            .output()
            .expect("yosys")
            .stdout,
    )
    .to_string();
    assert!(
        ver.contains(&format!("Yosys {}", set.provenance.version)),
        "coefficients were fitted with yosys {}, found {ver}; refit with scripts/eda/synth_grid.sh and `mfq cost fit`",
        set.provenance.version
    );
    let designs = [
        (Operand::int(4, true), Operand::int(4, true), 4608),
        (Operand::int(8, false), Operand::int(3, true), 64),
        (Operand::float(4, 3, true), Operand::float(4, 3, true), 4608),
        (Operand::float(2, 1, true), Operand::float(2, 1, true), 64),
        (Operand::int(8, true), Operand::float(3, 2, true), 256),
    ];
    let mut sum = 0.0;
    let mut report = String::new();
    for (a, w, n) in designs {
        let spec = MacSpec::new(a, w, n);
        let (lut, ff) = synth(&spec);
        let est = estimate_mac(&a, &w, n, &MacOptions::default()).expect("estimate");
        assert_eq!(ff, est.ff, "{}: FF", spec.module_name());
        let err = (est.lut as f64 - lut as f64).abs() / lut as f64;
        report.push_str(&format!(
            "{}: model {} LUT, yosys {lut} ({:.1} %)\n",
            spec.module_name(),
            est.lut,
            err * 100.0
        ));
        // The largest held-out error of the shipped fit is below 30 %.
        assert!(err <= 0.35, "{report}");
        sum += err;
    }
    let mape = sum / designs.len() as f64;
    assert!(mape <= 0.15, "mean error {:.1} %\n{report}", mape * 100.0);
    println!("{report}mean {:.1} %", mape * 100.0);
}
