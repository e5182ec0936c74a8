//! Design-space sweeps: grid files expanded to configuration recipes, a resumable, sharded,
//! parallel runner over a caller-supplied evaluator, reports (JSON, CSV, Markdown, Pareto
//! fronts, SVG figures), shard merging, and the regression check behind `mfq check`.
//!
//! The runner knows nothing about models: the caller passes an evaluator that turns a
//! [`ConfigRecipe`] into a [`ConfigOutcome`] (accuracy, fidelity, cost figures). Layout of a
//! sweep directory: `plan.json`, `configs/<id>.json` (one per finished configuration),
//! `results.{json,csv,md}`, `accuracy_vs_*.svg`, `heatmap_*.svg`. See docs/sweep.md.

pub mod check;
pub mod format_name;
pub mod grid;
pub mod memo;
pub mod pareto;
pub mod plot;
pub mod report;
pub mod runner;
pub mod schema;

pub use check::{compare, load_results, CheckOptions, CheckReport};
pub use grid::{ConfigRecipe, Grid, GridError, Plan, Validity};
pub use memo::Memo;
pub use report::{merge_dirs, write_reports, write_reports_with, ReportError};
pub use runner::{run_plan, run_sweep, Evaluator, Shard, SweepError, SweepOptions, SweepSummary};
pub use schema::{AccuracyKind, ConfigOutcome, CostFigures, ResultsFile};
