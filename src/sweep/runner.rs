//! Runs the configurations of a plan through a caller-supplied evaluator.
//!
//! Each finished configuration is written at once, atomically, to `DIR/configs/<id>.json`, so
//! an interrupted sweep loses only the configurations in flight and a rerun skips every
//! configuration whose file is present and matches its recipe. Configurations run in parallel
//! on the rayon pool; each result depends only on its recipe, never on scheduling, so output
//! is identical for any thread count. `--shard i/n` selects the configurations whose id hash
//! is `i` modulo `n`: membership depends only on the recipe, so shards stay stable when a grid
//! grows and shards of the same grid never overlap.

use super::grid::{ConfigRecipe, Grid, Plan, PlannedConfig};
use super::report::{write_reports_with, ReportError};
use super::schema::{
    parse_versioned, to_json_bytes, ConfigOutcome, ConfigResult, PlanFile, SchemaError, Timings,
    CONFIG_SCHEMA, PLAN_SCHEMA, SCHEMA_VERSION,
};
use crate::util::atomic::{write_atomic, AtomicWriteError};
use rayon::prelude::*;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The evaluator: quantizes and scores one configuration.
pub type Evaluator<'a, E> = dyn Fn(&ConfigRecipe) -> Result<ConfigOutcome, E> + Sync + 'a;

/// Subdirectory of a sweep directory holding one result file per configuration.
pub const CONFIGS_DIR: &str = "configs";

/// A deterministic slice of a plan: configurations whose id is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based shard index, `< count`.
    pub index: u32,
    /// Number of shards, `>= 1`.
    pub count: u32,
}

impl Shard {
    /// The whole plan.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// True when the configuration with this id belongs to the shard.
    pub fn contains(&self, id: &str) -> bool {
        if self.count <= 1 {
            return true;
        }
        // Ids are 16 hex digits; anything else (never produced) hashes by its bytes.
        let h = u64::from_str_radix(id, 16).unwrap_or_else(|_| {
            id.bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        });
        h % u64::from(self.count) == u64::from(self.index)
    }
}

impl FromStr for Shard {
    type Err = String;
    /// Parses `i/n` with 0 <= i < n (e.g. `0/4` .. `3/4`).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid shard '{s}': expected i/n with 0 <= i < n, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Options of [`run_sweep`] / [`run_plan`].
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Worker threads; `None` uses the global rayon pool (all cores).
    pub threads: Option<usize>,
    /// Keep evaluating other configurations after one fails (failures are reported in the
    /// summary); otherwise stop scheduling new ones and return the first failure.
    pub keep_going: bool,
    /// Regenerate the reports (results.json, csv, md, svg) from every result in the directory
    /// when the run ends.
    pub write_reports: bool,
    /// Input files of the run (model, data, grid); output never overwrites them.
    pub inputs: Vec<PathBuf>,
    /// Fidelity metrics to draw figures of besides accuracy (e.g. `sqnr_db`).
    pub figure_metrics: Vec<String>,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            threads: None,
            keep_going: false,
            write_reports: true,
            figure_metrics: Vec::new(),
            inputs: Vec::new(),
        }
    }
}

/// A configuration whose evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedConfig {
    pub id: String,
    pub recipe: ConfigRecipe,
    pub message: String,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct SweepSummary {
    /// Configurations in the whole plan.
    pub planned: usize,
    /// Combinations dropped from the grid.
    pub dropped: usize,
    /// Configurations in this shard.
    pub in_shard: usize,
    /// Configurations skipped because a valid result file already existed.
    pub skipped_existing: usize,
    /// Configurations evaluated and written in this run.
    pub evaluated: usize,
    /// Existing result files that were unreadable or did not match their recipe (re-run).
    pub replaced_invalid: Vec<PathBuf>,
    /// Failures (only with `keep_going`; otherwise the run returns an error).
    pub failed: Vec<FailedConfig>,
    /// Wall-clock seconds of the run.
    pub elapsed_seconds: f64,
    /// Reports written, when `write_reports` was set.
    pub reports: Vec<PathBuf>,
}

/// Error raised by a sweep run.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("cannot create sweep directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    #[error("cannot build a thread pool of {threads} threads: {message}")]
    Pool { threads: usize, message: String },
    #[error(
        "configuration {id} ({label}) failed: {message} ({completed} configurations finished and \
         kept; rerun to resume)"
    )]
    Evaluation {
        id: String,
        label: String,
        message: String,
        completed: usize,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Path of the result file of configuration `id` in sweep directory `dir`.
pub fn config_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(CONFIGS_DIR).join(format!("{id}.json"))
}

/// Expands `grid` (without a validity hook) and runs the shard of it; see [`run_plan`].
pub fn run_sweep<E: Display>(
    grid: &Grid,
    dir: &Path,
    shard: Shard,
    evaluator: &Evaluator<'_, E>,
    options: &SweepOptions,
) -> Result<SweepSummary, SweepError> {
    run_plan(
        &grid.expand(None),
        &grid.name,
        dir,
        shard,
        evaluator,
        options,
    )
}

/// True when `path` holds a valid result for `planned`.
fn finished(path: &Path, planned: &PlannedConfig) -> Result<bool, ()> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(_) => return Err(()),
    };
    match parse_versioned::<ConfigResult>(path, &bytes, CONFIG_SCHEMA) {
        Ok(r) if r.id == planned.id && r.recipe == planned.recipe => Ok(true),
        _ => Err(()),
    }
}

/// Runs every configuration of `plan` in `shard` that has no result in `dir` yet, writing
/// `dir/plan.json`, `dir/configs/<id>.json` and (with `write_reports`) the reports.
pub fn run_plan<E: Display>(
    plan: &Plan,
    grid_name: &str,
    dir: &Path,
    shard: Shard,
    evaluator: &Evaluator<'_, E>,
    options: &SweepOptions,
) -> Result<SweepSummary, SweepError> {
    let start = Instant::now();
    let configs_dir = dir.join(CONFIGS_DIR);
    std::fs::create_dir_all(&configs_dir).map_err(|source| SweepError::CreateDir {
        path: configs_dir.clone(),
        source,
    })?;
    let inputs: Vec<&Path> = options.inputs.iter().map(PathBuf::as_path).collect();
    let plan_file = PlanFile {
        schema: PLAN_SCHEMA.to_string(),
        version: SCHEMA_VERSION,
        grid: grid_name.to_string(),
        configs: plan.configs.clone(),
        dropped: plan.dropped.clone(),
    };
    write_atomic(&dir.join("plan.json"), &to_json_bytes(&plan_file), &inputs)?;

    let mine: Vec<&PlannedConfig> = plan
        .configs
        .iter()
        .filter(|c| shard.contains(&c.id))
        .collect();
    let mut pending = Vec::new();
    let mut replaced_invalid = Vec::new();
    for c in &mine {
        let path = config_path(dir, &c.id);
        match finished(&path, c) {
            Ok(true) => {}
            Ok(false) => pending.push(*c),
            Err(()) => {
                replaced_invalid.push(path);
                pending.push(*c);
            }
        }
    }
    let skipped_existing = mine.len() - pending.len();

    let stop = AtomicBool::new(false);
    let failures: Mutex<Vec<(usize, FailedConfig)>> = Mutex::new(Vec::new());
    let write_error: Mutex<Option<AtomicWriteError>> = Mutex::new(None);
    let evaluated = std::sync::atomic::AtomicUsize::new(0);
    let bar = crate::util::progress::bar(pending.len() as u64, "sweep");
    let work = || {
        pending.par_iter().enumerate().for_each(|(k, c)| {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let t0 = Instant::now();
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| evaluator(&c.recipe)));
            let eval_seconds = t0.elapsed().as_secs_f64();
            let outcome = match result {
                Ok(Ok(o)) => o.validate().map(|()| o),
                Ok(Err(e)) => Err(e.to_string()),
                Err(panic) => Err(panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .map_or("evaluator panicked".to_string(), |m| {
                        format!("evaluator panicked: {m}")
                    })),
            };
            match outcome {
                Ok(outcome) => {
                    let record = ConfigResult {
                        schema: CONFIG_SCHEMA.to_string(),
                        version: SCHEMA_VERSION,
                        id: c.id.clone(),
                        recipe: c.recipe.clone(),
                        outcome,
                        timings: Timings { eval_seconds },
                    };
                    let path = config_path(dir, &c.id);
                    if let Err(e) = write_atomic(&path, &to_json_bytes(&record), &inputs) {
                        stop.store(true, Ordering::Relaxed);
                        if let Ok(mut slot) = write_error.lock() {
                            slot.get_or_insert(e);
                        }
                        return;
                    }
                    evaluated.fetch_add(1, Ordering::Relaxed);
                }
                Err(message) => {
                    if !options.keep_going {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if let Ok(mut f) = failures.lock() {
                        f.push((
                            k,
                            FailedConfig {
                                id: c.id.clone(),
                                recipe: c.recipe.clone(),
                                message,
                            },
                        ));
                    }
                }
            }
            bar.inc(1);
        })
    };
    match options.threads {
        None => work(),
        Some(threads) => rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| SweepError::Pool {
                threads,
                message: e.to_string(),
            })?
            .install(work),
    }
    bar.finish_and_clear();
    if let Some(e) = write_error.into_inner().ok().flatten() {
        return Err(SweepError::Write(e));
    }
    let mut failed = failures.into_inner().unwrap_or_default();
    failed.sort_by_key(|(k, _)| *k);
    let failed: Vec<FailedConfig> = failed.into_iter().map(|(_, f)| f).collect();
    let evaluated = evaluated.into_inner();
    if !options.keep_going {
        if let Some(f) = failed.first() {
            return Err(SweepError::Evaluation {
                id: f.id.clone(),
                label: f.recipe.label(),
                message: f.message.clone(),
                completed: skipped_existing + evaluated,
            });
        }
    }
    let reports = if options.write_reports {
        write_reports_with(dir, &options.inputs, &options.figure_metrics)?
    } else {
        Vec::new()
    };
    Ok(SweepSummary {
        planned: plan.configs.len(),
        dropped: plan.dropped.len(),
        in_shard: mine.len(),
        skipped_existing,
        evaluated,
        replaced_invalid,
        failed,
        elapsed_seconds: start.elapsed().as_secs_f64(),
        reports,
    })
}

/// Reads a plan file, for callers that want to resume from a directory alone.
pub fn read_plan(dir: &Path) -> Result<PlanFile, SchemaError> {
    super::schema::read_versioned(&dir.join("plan.json"), PLAN_SCHEMA)
}
