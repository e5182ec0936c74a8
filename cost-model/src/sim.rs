//! Functional proof of generated MAC units: writes the module and a testbench that streams
//! operand codes through it, runs iverilog/vvp, and compares every partial sum with the
//! [`reference`](crate::reference) model bit for bit.

use crate::reference::{extreme_code, finite_codes, mac_step, SplitMix, WideAcc};
use crate::rtl::{generate_verilog, MacSpec};
use crate::CostError;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Message used whenever the simulator is missing.
pub const MISSING_TOOLS: &str =
    "iverilog/vvp not found: run `bash scripts/eda/install.sh` (installs Debian iverilog and yosys)";

/// One step of a stimulus stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Clear the accumulator.
    Reset,
    /// Accumulate `a · w` (raw codes).
    Mac(u64, u64),
}

/// Stimulus for `spec`: a random stream of finite codes of length `spec.n`, then (each after a
/// reset) `n` copies of the largest positive product and `n` of the most negative one, which
/// drive the accumulator to the ends of its range.
pub fn stimulus(spec: &MacSpec, seed: u64) -> Vec<Step> {
    let ca = finite_codes(&spec.act);
    let cw = finite_codes(&spec.wt);
    let mut rng = SplitMix(seed);
    let n = spec.n as usize;
    let mut steps = vec![Step::Reset];
    for _ in 0..n {
        let a = ca[(rng.next_u64() % ca.len() as u64) as usize];
        let w = cw[(rng.next_u64() % cw.len() as u64) as usize];
        steps.push(Step::Mac(a, w));
    }
    let pairs = [
        (
            extreme_code(&spec.act, false),
            extreme_code(&spec.wt, false),
        ),
        (extreme_code(&spec.act, true), extreme_code(&spec.wt, true)),
        (extreme_code(&spec.act, true), extreme_code(&spec.wt, false)),
        (extreme_code(&spec.act, false), extreme_code(&spec.wt, true)),
    ];
    for (a, w) in pairs {
        if let (Some(a), Some(w)) = (a, w) {
            steps.push(Step::Reset);
            steps.extend(std::iter::repeat_n(Step::Mac(a, w), n));
        }
    }
    steps
}

/// Expected accumulator value (hex) after each [`Step::Mac`].
pub fn expected(spec: &MacSpec, steps: &[Step]) -> Result<Vec<String>, CostError> {
    let bits = spec.acc_bits()?;
    let mut acc = WideAcc::new(bits);
    let mut out = Vec::new();
    for s in steps {
        match *s {
            Step::Reset => acc = WideAcc::new(bits),
            Step::Mac(a, w) => {
                if !mac_step(&mut acc, &spec.act, &spec.wt, a, w) {
                    return Err(CostError::Invalid(format!(
                        "stimulus code pair ({a:#x}, {w:#x}) is not finite in {} x {}",
                        spec.act.label(),
                        spec.wt.label()
                    )));
                }
                out.push(acc.to_hex());
            }
        }
    }
    Ok(out)
}

fn testbench(spec: &MacSpec, steps: &[Step]) -> Result<String, CostError> {
    let acc = spec.acc_bits()?;
    let (ca, cw) = (spec.act.code_bits(), spec.wt.code_bits());
    let mut tb = String::new();
    let _ = writeln!(
        tb,
        "`timescale 1ns/1ns\nmodule tb;\n  reg clk = 0, rst = 0, en = 0;\n  reg [{}:0] a = 0;\n  \
         reg [{}:0] w = 0;\n  wire [{}:0] acc;\n  {} dut(.clk(clk), .rst(rst), .en(en), .a(a), \
         .w(w), .acc(acc));\n  task tick; begin #1 clk = 1; #1 clk = 0; end endtask\n  initial begin",
        ca - 1,
        cw - 1,
        acc - 1,
        spec.module_name()
    );
    for s in steps {
        match *s {
            Step::Reset => tb.push_str("    rst = 1; en = 0; tick; rst = 0;\n"),
            Step::Mac(a, w) => {
                let _ = writeln!(
                    tb,
                    "    a = {ca}'h{a:x}; w = {cw}'h{w:x}; en = 1; tick; en = 0; $display(\"%h\", acc);"
                );
            }
        }
    }
    tb.push_str("    $finish;\n  end\nendmodule\n");
    Ok(tb)
}

fn scratch_dir(tag: &str) -> Result<PathBuf, CostError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mfq-sim-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| CostError::Tool(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// True when `iverilog` and `vvp` can be run.
pub fn tools_available() -> bool {
    ["iverilog", "vvp"].iter().all(|t| {
        Command::new(t)
            .arg("-V")
            .output()
            .map(|_| true)
            .unwrap_or(false)
    })
}

/// Result of one simulation.
#[derive(Debug, Clone)]
pub struct SimReport {
    /// MAC steps compared.
    pub steps: usize,
    /// First mismatch as (step index, expected hex, got hex), if any.
    pub mismatch: Option<(usize, String, String)>,
}

/// Simulates `spec` on `steps` and compares every partial sum with the reference.
pub fn simulate(spec: &MacSpec, steps: &[Step]) -> Result<SimReport, CostError> {
    if !tools_available() {
        return Err(CostError::Tool(MISSING_TOOLS.into()));
    }
    let dir = scratch_dir(&spec.module_name())?;
    let res = simulate_in(&dir, spec, steps);
    let _ = std::fs::remove_dir_all(&dir);
    res
}

fn simulate_in(dir: &Path, spec: &MacSpec, steps: &[Step]) -> Result<SimReport, CostError> {
    let want = expected(spec, steps)?;
    let rtl = generate_verilog(spec)?;
    let tb = testbench(spec, steps)?;
    let write = |name: &str, text: &str| -> Result<PathBuf, CostError> {
        let p = dir.join(name);
        std::fs::write(&p, text)
            .map_err(|e| CostError::Tool(format!("cannot write {}: {e}", p.display())))?;
        Ok(p)
    };
    let mac = write("mac.v", &rtl)?;
    let tbp = write("tb.v", &tb)?;
    let vvp = dir.join("sim.vvp");
    let out = Command::new("iverilog")
        .args(["-g2005", "-o"])
        .arg(&vvp)
        .arg(&mac)
        .arg(&tbp)
        .output()
        .map_err(|e| CostError::Tool(format!("{MISSING_TOOLS} ({e})")))?;
    if !out.status.success() {
        return Err(CostError::Tool(format!(
            "iverilog failed on {}: {}",
            spec.module_name(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let out = Command::new("vvp")
        .arg("-n")
        .arg(&vvp)
        .output()
        .map_err(|e| CostError::Tool(format!("{MISSING_TOOLS} ({e})")))?;
    if !out.status.success() {
        return Err(CostError::Tool(format!(
            "vvp failed on {}: {}",
            spec.module_name(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let got: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.contains("$finish"))
        .collect();
    if got.len() != want.len() {
        return Err(CostError::Tool(format!(
            "simulation of {} printed {} sums, expected {}",
            spec.module_name(),
            got.len(),
            want.len()
        )));
    }
    let mismatch = want
        .iter()
        .zip(&got)
        .enumerate()
        .find(|(_, (w, g))| w.as_str() != **g)
        .map(|(i, (w, g))| (i, w.clone(), g.to_string()));
    Ok(SimReport {
        steps: want.len(),
        mismatch,
    })
}
