//! `mfq sweep`: inspect a grid (`plan`), collate shard directories (`merge`), regenerate the
//! reports of a sweep directory (`report`), and the shared options and driver of a sweep run
//! ([`SweepRunArgs`], [`run_with_evaluator`]) used by the model-evaluating form of the command.

use crate::sweep::grid::{Grid, Validity};
use crate::sweep::report::{merge_dirs, write_reports_with};
use crate::sweep::runner::{run_plan, Evaluator, Shard, SweepOptions};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of a sweep run that do not depend on the model (flatten into the run command).
#[derive(Debug, Clone, Args)]
pub struct SweepRunArgs {
    /// Grid file (TOML; see docs/sweep.md).
    #[arg(long)]
    pub grid: PathBuf,
    /// Sweep directory (results, reports and figures go here; reruns resume).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Run only shard i of n (0-based), e.g. --shard 0/4.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Continue after a failed configuration (failures are listed; exit code 1).
    #[arg(long)]
    pub keep_going: bool,
    /// Do not write the reports at the end (write them later with `mfq sweep report`).
    #[arg(long)]
    pub no_report: bool,
    /// Also draw the figures with this fidelity metric as quality axis (`sqnr_db`,
    /// `top1_agreement`, …); repeatable.
    #[arg(long = "figure-metric", value_name = "METRIC")]
    pub figure_metrics: Vec<String>,
}

/// Runs a sweep with the given evaluator: loads and expands the grid (dropping combinations
/// `validity` rejects), runs the shard, prints a summary on stderr and the reports written on
/// stdout. `inputs` are the run's input files (model, data), never overwritten. Exit code 0,
/// or 1 when configurations failed under `--keep-going`.
pub fn run_with_evaluator<E: Display>(
    args: &SweepRunArgs,
    inputs: Vec<PathBuf>,
    validity: Option<&Validity<'_>>,
    evaluator: &Evaluator<'_, E>,
) -> anyhow::Result<ExitCode> {
    let grid = Grid::load(&args.grid)?;
    let plan = grid.expand(validity);
    let mut inputs = inputs;
    inputs.push(args.grid.clone());
    let options = SweepOptions {
        threads: args.jobs,
        keep_going: args.keep_going,
        write_reports: !args.no_report,
        inputs,
        figure_metrics: args.figure_metrics.clone(),
    };
    let s = run_plan(
        &plan,
        &grid.name,
        &args.output,
        args.shard,
        evaluator,
        &options,
    )
    .with_context(|| format!("sweep into {}", args.output.display()))?;
    eprintln!(
        "sweep {}: {} configurations planned ({} dropped); shard {}: {} configurations, {} already \
         done, {} evaluated, {} failed, {:.1} s",
        grid.name,
        s.planned,
        s.dropped,
        args.shard,
        s.in_shard,
        s.skipped_existing,
        s.evaluated,
        s.failed.len(),
        s.elapsed_seconds
    );
    for p in &s.replaced_invalid {
        eprintln!("warning: replaced unreadable result file {}", p.display());
    }
    for f in &s.failed {
        eprintln!("failed: {} ({}): {}", f.id, f.recipe.label(), f.message);
    }
    for p in &s.reports {
        println!("{}", p.display());
    }
    Ok(if s.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Arguments of `mfq sweep`: either `mfq sweep MODEL --calib DATA --eval DATA --grid GRID -o DIR`
/// or one of the subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    /// Float ONNX model to sweep.
    #[arg(required = true)]
    pub model: Option<PathBuf>,
    /// Calibration data (.npz keyed by input names, .npy, or an image folder).
    #[arg(long, required = true)]
    pub calib: Option<PathBuf>,
    /// Evaluation data (with `labels` for top-1; otherwise agreement with float).
    #[arg(long, required = true)]
    pub eval: Option<PathBuf>,
    /// Calibration samples (default: all).
    #[arg(long)]
    pub calib_samples: Option<usize>,
    /// Evaluation samples (default: all).
    #[arg(long)]
    pub eval_samples: Option<usize>,
    /// Base recipe (TOML, as for `mfq quantize --config`); grid axes override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub run: Option<SweepRunArgs>,
    #[command(flatten)]
    pub images: super::quantize::ImageArgs,
}

fn run_model(args: &SweepArgs) -> anyhow::Result<ExitCode> {
    use crate::quant::sweep_eval::SweepEvaluator;
    let (Some(model), Some(calib), Some(eval), Some(run)) =
        (&args.model, &args.calib, &args.eval, &args.run)
    else {
        anyhow::bail!("mfq sweep needs MODEL, --calib, --eval, --grid and -o (or a subcommand)");
    };
    let mut base = match &args.config {
        Some(p) => crate::quant::Recipe::from_toml_file(p)?,
        None => crate::quant::Recipe::default(),
    };
    base.images = base.images.overridden_by(&args.images.options()?);
    let m = crate::onnx::load(model)?;
    use super::quantize::open_dataset;
    let cds = open_dataset(
        calib,
        &m,
        &base.images,
        args.calib_samples,
        base.seed,
        "calib",
    )?;
    let eds = open_dataset(eval, &m, &base.images, args.eval_samples, base.seed, "eval")?;
    let t0 = std::time::Instant::now();
    let ev = SweepEvaluator::new(m, base, cds, &eds)?;
    eprintln!(
        "shared work (float outputs, shapes) ready in {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let validity =
        |r: &crate::sweep::ConfigRecipe| ev.recipe(r).map(|_| ()).map_err(|e| e.to_string());
    let evaluator = |r: &crate::sweep::ConfigRecipe| ev.evaluate(r).map_err(|e| e.to_string());
    let mut files = vec![model.clone(), calib.clone(), eval.clone()];
    if let Some(c) = &args.config {
        files.push(c.clone());
    }
    run_with_evaluator(run, files, Some(&validity), &evaluator)
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
        /// Also draw the figures with this fidelity metric as quality axis (`sqnr_db`,
        /// `top1_agreement`, …); repeatable.
        #[arg(long = "figure-metric", value_name = "METRIC")]
        figure_metrics: Vec<String>,
    },
}

/// Runs `mfq sweep`.
pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let Some(action) = args.action else {
        return run_model(&args);
    };
    match action {
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
        SweepAction::Report {
            dir,
            figure_metrics,
        } => {
            let written = write_reports_with(&dir, &[], &figure_metrics)
                .with_context(|| format!("writing reports for {}", dir.display()))?;
            for p in &written {
                println!("{}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::{AccuracyKind, ConfigOutcome, ConfigRecipe, CostFigures};
    use std::collections::BTreeMap;

    fn eval(r: &ConfigRecipe) -> Result<ConfigOutcome, String> {
        if r.weights == "int3" {
            return Err("int3 is not supported by this evaluator".into());
        }
        Ok(ConfigOutcome {
            accuracy: 0.5,
            accuracy_kind: AccuracyKind::Agreement,
            fidelity: BTreeMap::new(),
            cost: CostFigures {
                mac_lut: 10.0 + r.weights.len() as f64,
                dataflow_lut: None,
                weight_mem_bits: None,
                other: BTreeMap::new(),
            },
        })
    }

    #[test]
    fn driver_runs_resumes_and_reports_failures() {
        let d = tempfile::tempdir().expect("tmp");
        let grid = d.path().join("g.toml");
        std::fs::write(&grid, "weights = \"int3..int5\"\nacts = \"int8\"\n").expect("grid");
        let mut args = SweepRunArgs {
            grid: grid.clone(),
            output: d.path().join("out"),
            shard: Shard::ALL,
            jobs: Some(2),
            keep_going: true,
            no_report: false,
            figure_metrics: vec![],
        };
        let veto = |r: &ConfigRecipe| {
            if r.weights == "int5" {
                Err("int5 vetoed".to_string())
            } else {
                Ok(())
            }
        };
        // int3 fails (kept going), int4 succeeds, int5 is dropped.
        let code = run_with_evaluator(&args, vec![], Some(&veto), &eval).expect("run");
        assert_eq!(code, ExitCode::from(1));
        let results = std::fs::read_to_string(args.output.join("results.json")).expect("json");
        assert!(results.contains("\"int4\"") && results.contains("int5 vetoed"));
        assert!(!results.contains("\"weights\": \"int3\""));
        // Without keep-going the failure is an error naming the configuration.
        args.keep_going = false;
        let e = run_with_evaluator(&args, vec![], Some(&veto), &eval).expect_err("fails");
        assert!(format!("{e:#}").contains("W int3 / A int8"), "{e:#}");
    }
}
