//! Command-line interface: clap definitions and printing. No algorithms live here; each
//! subcommand module parses its arguments and calls into the library.

use clap::{Parser, Subcommand};

pub mod cost;
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
    /// FPGA cost of a MAC unit or a model; `cost fit` fits coefficients to synthesis results.
    Cost(Box<cost::CostArgs>),
    /// Write the Verilog of a MAC unit (or the whole synthesis grid).
    Rtl(rtl::RtlArgs),
}

/// Entry point used by the binary. Exit codes: 0 success, 1 failure (or a regression found by
/// `check`), 2 unusable input where a command distinguishes it.
pub fn main() -> ExitCode {
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
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Version => {
            println!("mfq {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Cost(a) => cost::run(*a),
        Command::Rtl(a) => rtl::run(a),
    }
}
