//! Command-line interface: clap definitions and printing. No algorithms live here; each
//! subcommand module parses its arguments and calls into the library.

pub mod calib_set;
pub mod check;
pub mod eval;
pub mod fidelity;
pub mod inspect;
pub mod quantize;
pub mod run;
pub mod sweep;

use clap::{Parser, Subcommand};

pub mod cost;
mod formats;
pub mod rtl;
use std::process::ExitCode;

/// mfq: quantize ONNX models to integer and minifloat formats and estimate their FPGA cost.
#[derive(Debug, Parser)]
#[command(name = "mfq", version, about)]
pub struct Cli {
    /// Suppress progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print version and build information.
    Version,
    /// Number formats: list presets, show codes, fake-quantize .npy tensors.
    Formats(formats::FormatsArgs),
    /// Design-space sweeps: plan a grid, merge shard directories, regenerate reports.
    Sweep(Box<sweep::SweepArgs>),
    /// Compare sweep results with a baseline (exit 0 ok, 1 regression, 2 unusable input).
    Check(check::CheckArgs),
    /// Summarise a model: opsets, op histogram, parameters, MACs, unsupported ops.
    Inspect(inspect::InspectArgs),
    /// Run a model on .npz inputs keyed by input name.
    Run(run::RunArgs),
    /// Calibrate, quantize, evaluate and export a model.
    Quantize(Box<quantize::QuantizeArgs>),
    /// Evaluate a model (float or a QDQ/QONNX export) on data, side by side with a reference.
    Eval(Box<eval::EvalArgs>),
    /// FPGA cost of a MAC unit or a model; `cost fit` fits coefficients to synthesis results.
    Cost(Box<cost::CostArgs>),
    /// Write the Verilog of a MAC unit (or the whole synthesis grid).
    Rtl(rtl::RtlArgs),
    /// Build a diffusion denoiser's calibration set with its sampler (noise-level-calibration).
    CalibSet(calib_set::CalibSetArgs),
    /// PSNR/SSIM of model outputs against reference outputs, grouped by input values.
    Fidelity(fidelity::FidelityArgs),
}

/// Entry point used by the binary. Exit codes: 0 success, 1 failure (or a regression found by
/// `check`), 2 unusable input where a command distinguishes it.
pub fn main() -> ExitCode {
    // Writing to a closed pipe (`mfq ... | head`) ends the process quietly, as Unix tools do,
    // instead of panicking inside `println!`.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Activations of a few samples reach tens of MiB: keep blocks up to 32 MiB (glibc's largest
    // mmap threshold) on the heap and do not trim it, so the interpreter reuses memory instead of
    // mapping and zero-filling fresh pages for every op (measured: W2 calibration 25 % faster).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: allocator tuning at start-up, before any thread exists; both calls only set limits.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    crate::util::progress::set_quiet(cli.quiet);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run(a) => run::run(a),
        Command::Quantize(a) => quantize::run(*a),
        Command::Eval(a) => eval::run(*a),
        Command::Inspect(a) => inspect::run(a),
        Command::Version => {
            println!("mfq {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Formats(a) => formats::run(a),
        Command::Sweep(args) => sweep::run(*args),
        Command::Check(args) => check::run(args),
        Command::Cost(a) => cost::run(*a),
        Command::Rtl(a) => rtl::run(a),
        Command::CalibSet(a) => calib_set::run(a),
        Command::Fidelity(a) => fidelity::run(a),
    }
}

/// The error and its causes joined by ": ", skipping a cause whose text the message before it
/// already contains (library errors often embed their source).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
