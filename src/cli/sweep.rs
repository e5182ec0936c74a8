//! `mfq sweep`: inspect a grid (`plan`), collate shard directories (`merge`) and regenerate the
//! reports of a sweep directory (`report`).

use crate::sweep::grid::Grid;
use crate::sweep::report::{merge_dirs, write_reports};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `mfq sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub action: SweepAction,
}

/// Sweep subcommands.
#[derive(Debug, Subcommand)]
pub enum SweepAction {
    /// Expand a grid file and list the configurations and dropped combinations.
    Plan {
        /// Grid file (TOML).
        grid: PathBuf,
        /// Print the expansion as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Collate sweep directories (e.g. shards) into one and write its reports.
    Merge {
        /// Sweep directories to collate.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output directory (may be one of the inputs).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Regenerate results.json/csv/md and the figures from the result files of a directory.
    Report {
        /// Sweep directory.
        dir: PathBuf,
    },
}

/// Runs `mfq sweep`.
pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        SweepAction::Plan { grid, json } => {
            let g = Grid::load(&grid)?;
            let plan = g.expand(None);
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                println!(
                    "{}: {} combinations, {} configurations, {} dropped",
                    grid.display(),
                    g.combinations(),
                    plan.configs.len(),
                    plan.dropped.len()
                );
                for c in &plan.configs {
                    println!("{}  {}", c.id, c.recipe.label());
                }
                for d in &plan.dropped {
                    println!("dropped           {}: {}", d.recipe.label(), d.reason);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SweepAction::Merge { dirs, output } => {
            let s = merge_dirs(&dirs, &output)
                .with_context(|| format!("merging into {}", output.display()))?;
            eprintln!(
                "merged {} directories into {}: {} result files copied, {} already present",
                dirs.len(),
                output.display(),
                s.copied,
                s.identical
            );
            for id in &s.conflicts {
                eprintln!(
                    "warning: configuration {id} has different results in several inputs; \
                     kept the first"
                );
            }
            for p in &s.reports {
                println!("{}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        SweepAction::Report { dir } => {
            let written = write_reports(&dir, &[])
                .with_context(|| format!("writing reports for {}", dir.display()))?;
            for p in &written {
                println!("{}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
