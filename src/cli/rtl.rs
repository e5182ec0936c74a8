//! `mfq rtl`: writes the Verilog of one MAC unit, or (`--grid DIR`) every design of the
//! synthesis grid plus a `manifest.csv` describing them (input of scripts/eda/synth_grid.sh).

use crate::util::atomic::write_atomic;
use anyhow::{bail, Context};
use clap::Args;
use cost_model::grid::{full_grid, manifest_row, MANIFEST_HEADER};
use cost_model::operand::Operand;
use cost_model::rtl::{generate_verilog, Datapath, MacSpec};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `mfq rtl`.
#[derive(Debug, Args)]
pub struct RtlArgs {
    /// Weight format (e.g. int4, uint8, e4m3, e2m1:nosub, fp8-e4m3fn).
    #[arg(long, required_unless_present = "grid")]
    pub weights: Option<String>,
    /// Activation format.
    #[arg(long, required_unless_present = "grid")]
    pub acts: Option<String>,
    /// Dot-product length the accumulator is sized for.
    #[arg(long, default_value_t = 4608)]
    pub n: u64,
    /// Datapath: tc (two's complement, integers only), sm_addsub, sm_negpre, sm_negpost.
    /// Default: tc for integer pairs, sm_addsub otherwise.
    #[arg(long)]
    pub datapath: Option<String>,
    /// Output Verilog file.
    #[arg(short, long, required_unless_present = "grid")]
    pub output: Option<PathBuf>,
    /// Write the whole synthesis grid (one .v per design and manifest.csv) into this directory.
    #[arg(long, conflicts_with_all = ["weights", "acts", "output"])]
    pub grid: Option<PathBuf>,
}

/// Runs `mfq rtl`.
pub fn run(args: RtlArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.grid {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut manifest = format!("{MANIFEST_HEADER}\n");
        for spec in full_grid() {
            let v = generate_verilog(&spec)?;
            let path = dir.join(format!("{}.v", spec.module_name()));
            write_atomic(&path, v.as_bytes(), &[])?;
            manifest.push_str(&manifest_row(&spec)?);
            manifest.push('\n');
        }
        write_atomic(&dir.join("manifest.csv"), manifest.as_bytes(), &[])?;
        eprintln!("wrote {} designs to {}", full_grid().len(), dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(w), Some(a), Some(out)) = (&args.weights, &args.acts, &args.output) else {
        bail!("--weights, --acts and -o are required without --grid");
    };
    let wt = crate::cli::cost::parse_operand(w, "--weights")?;
    let act = crate::cli::cost::parse_operand(a, "--acts")?;
    let spec = spec_for(act, wt, args.n, args.datapath.as_deref())?;
    let v = generate_verilog(&spec)?;
    write_atomic(out, v.as_bytes(), &[])?;
    eprintln!(
        "wrote {} ({} x {}, n = {}, accumulator {} bits, datapath {})",
        out.display(),
        act.label(),
        wt.label(),
        args.n,
        spec.acc_bits()?,
        spec.datapath.name()
    );
    Ok(ExitCode::SUCCESS)
}

/// Builds the MAC spec, validating the `--datapath` name.
pub fn spec_for(
    act: Operand,
    wt: Operand,
    n: u64,
    datapath: Option<&str>,
) -> anyhow::Result<MacSpec> {
    let mut spec = MacSpec::new(act, wt, n);
    if let Some(d) = datapath {
        spec.datapath = Datapath::from_name(d).with_context(|| {
            format!("--datapath {d}: expected tc, sm_addsub, sm_negpre or sm_negpost")
        })?;
    }
    Ok(spec)
}
