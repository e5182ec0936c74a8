//! Collates the result files of a sweep directory into `results.json`, `results.csv`,
//! `results.md` and the SVG figures, and merges shard directories.
//!
//! Reports are a pure function of the result files and `plan.json`: configurations are listed
//! in a fixed order (formats by family, width and exponent bits, then the other axes), so any
//! set of shards merged in any order gives the same reports.

use super::format_name::{format_info, Family};
use super::grid::{ConfigRecipe, DroppedConfig, PlannedConfig};
use super::pareto::pareto_front;
use super::plot::{write_figures, write_quality_figures, PlotError, Quality};
use super::runner::CONFIGS_DIR;
use super::schema::{
    parse_versioned, read_versioned, to_json_bytes, ConfigResult, PlanFile, ResultEntry,
    ResultsFile, ResultsSummary, SchemaError, CONFIG_SCHEMA, PARETO_METRICS, PLAN_SCHEMA,
    RESULTS_SCHEMA, SCHEMA_VERSION,
};
use crate::util::atomic::{same_file, write_atomic, AtomicWriteError};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Error raised while building reports or merging directories.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("cannot read directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("{path}: {message}")]
    Inconsistent { path: PathBuf, message: String },
    #[error("{path} is not a sweep directory (no {CONFIGS_DIR}/ and no plan.json)")]
    NotASweep { path: PathBuf },
    #[error("{dir}: no configuration has the figure metric '{metric}' (fidelity metrics present: {available})")]
    NoSuchMetric {
        dir: String,
        metric: String,
        available: String,
    },
}

/// Sort key of one format name: valid formats first, in [`FormatInfo::sort_key`] order, then
/// unparsable names alphabetically.
///
/// [`FormatInfo::sort_key`]: super::format_name::FormatInfo::sort_key
type FormatKey = (bool, Family, bool, u32, u32, String);

fn format_key(name: &str) -> FormatKey {
    match format_info(name) {
        Ok(f) => (false, f.family, !f.signed, f.bits, f.exp_bits, f.canonical),
        Err(_) => (true, Family::Integer, false, 0, 0, name.to_string()),
    }
}

/// Sort key of a recipe in report order (see [`compare_recipes`]).
pub type RecipeKey = (
    FormatKey,
    FormatKey,
    Option<FormatKey>,
    Option<Vec<String>>,
    Option<String>,
    Option<String>,
    Option<u64>,
);

/// The report-order key of a recipe; computing it once per recipe keeps sorting large sweeps
/// cheap.
pub fn recipe_key(r: &ConfigRecipe) -> RecipeKey {
    (
        format_key(&r.weights),
        format_key(&r.acts),
        r.first_last.as_deref().map(format_key),
        r.passes.clone(),
        r.granularity.clone(),
        r.calib_method.clone(),
        r.seed,
    )
}

/// Orders recipes for reports: formats by family, signedness, width and exponent bits; then
/// first/last formats, passes, granularity, calibration method and seed.
pub fn compare_recipes(a: &ConfigRecipe, b: &ConfigRecipe) -> Ordering {
    recipe_key(a).cmp(&recipe_key(b))
}

/// Reads every `configs/*.json` of a sweep directory, checking that each file's name and id
/// match its recipe. Returned in report order.
pub fn load_config_results(dir: &Path) -> Result<Vec<ConfigResult>, ReportError> {
    let cdir = dir.join(CONFIGS_DIR);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&cdir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(ReportError::ReadDir { path: cdir, source }),
    };
    let mut paths = Vec::new();
    for e in entries {
        let e = e.map_err(|source| ReportError::ReadDir {
            path: cdir.clone(),
            source,
        })?;
        let name = e.file_name().to_string_lossy().into_owned();
        // Hidden files are temporaries of atomic writes in flight or interrupted.
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        paths.push(e.path());
    }
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|source| SchemaError::Read {
            path: path.clone(),
            source,
        })?;
        let r: ConfigResult = parse_versioned(&path, &bytes, CONFIG_SCHEMA)?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        if r.id != r.recipe.id() || stem.as_deref() != Some(r.id.as_str()) {
            return Err(ReportError::Inconsistent {
                path,
                message: format!(
                    "id {} does not match its recipe (expected {}) or file name",
                    r.id,
                    r.recipe.id()
                ),
            });
        }
        if let Err(message) = r.outcome.validate() {
            return Err(ReportError::Inconsistent { path, message });
        }
        out.push(r);
    }
    out.sort_by_cached_key(|r| (recipe_key(&r.recipe), r.id.clone()));
    Ok(out)
}

fn read_plan_opt(dir: &Path) -> Result<Option<PlanFile>, ReportError> {
    let p = dir.join("plan.json");
    if !p.exists() {
        return Ok(None);
    }
    Ok(Some(read_versioned(&p, PLAN_SCHEMA)?))
}

/// Builds the `results.json` content of a directory.
pub fn build_results(dir: &Path) -> Result<ResultsFile, ReportError> {
    let plan = read_plan_opt(dir)?;
    let mut results = load_config_results(dir)?;
    // With a plan, the report covers the plan: result files of configurations that are no
    // longer planned (left by an earlier grid) are counted but not listed.
    let before = results.len();
    if let Some(p) = &plan {
        let planned: HashSet<&str> = p.configs.iter().map(|c| c.id.as_str()).collect();
        results.retain(|r| planned.contains(r.id.as_str()));
    }
    let not_planned = before - results.len();
    if plan.is_none() && !dir.join(CONFIGS_DIR).is_dir() {
        return Err(ReportError::NotASweep {
            path: dir.to_path_buf(),
        });
    }
    let mut pareto: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut on_front: HashMap<&str, Vec<String>> = HashMap::new();
    for metric in PARETO_METRICS {
        let points: Vec<(usize, f64, f64)> = results
            .iter()
            .enumerate()
            .filter_map(|(k, r)| {
                r.outcome
                    .cost
                    .get(metric)
                    .map(|c| (k, c, r.outcome.accuracy))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let front = pareto_front(&points);
        let ids: Vec<String> = front.iter().map(|&k| results[k].id.clone()).collect();
        for id in &front {
            on_front
                .entry(results[*id].id.as_str())
                .or_default()
                .push(metric.to_string());
        }
        pareto.insert(metric.to_string(), ids);
    }
    let configs: Vec<ResultEntry> = results
        .iter()
        .map(|r| ResultEntry {
            id: r.id.clone(),
            weights: r.recipe.weights.clone(),
            acts: r.recipe.acts.clone(),
            accuracy: r.outcome.accuracy,
            accuracy_kind: r.outcome.accuracy_kind,
            mac_lut: r.outcome.cost.mac_lut,
            dataflow_lut: r.outcome.cost.dataflow_lut,
            weight_mem_bits: r.outcome.cost.weight_mem_bits,
            pareto: on_front.get(r.id.as_str()).cloned().unwrap_or_default(),
            recipe: r.recipe.clone(),
            fidelity: r.outcome.fidelity.clone(),
            cost: r.outcome.cost.clone(),
            timings: r.timings.clone(),
        })
        .collect();
    let have: HashSet<&str> = results.iter().map(|r| r.id.as_str()).collect();
    let (grid, planned, missing, dropped) = match &plan {
        Some(p) => (
            p.grid.clone(),
            p.configs.len(),
            p.configs
                .iter()
                .filter(|c| !have.contains(c.id.as_str()))
                .map(|c| c.id.clone())
                .collect::<Vec<_>>(),
            p.dropped.clone(),
        ),
        None => (String::new(), 0, Vec::new(), Vec::new()),
    };
    Ok(ResultsFile {
        schema: RESULTS_SCHEMA.to_string(),
        version: SCHEMA_VERSION,
        grid,
        summary: ResultsSummary {
            planned,
            completed: configs.len(),
            missing: missing.len(),
            dropped: dropped.len(),
            not_planned,
        },
        total_eval_seconds: results.iter().map(|r| r.timings.eval_seconds).sum(),
        configs,
        pareto,
        dropped,
        missing,
    })
}

/// Regenerates every report of a sweep directory; returns the paths written.
pub fn write_reports(dir: &Path, inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ReportError> {
    write_reports_with(dir, inputs, &[])
}

/// Like [`write_reports`], with figures of further quality metrics besides accuracy (fidelity
/// keys of the results such as `sqnr_db` or `top1_agreement`; see [`Quality`]).
pub fn write_reports_with(
    dir: &Path,
    inputs: &[PathBuf],
    figure_metrics: &[String],
) -> Result<Vec<PathBuf>, ReportError> {
    let results = build_results(dir)?;
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: Vec<u8>| -> Result<(), ReportError> {
        let p = dir.join(name);
        write_atomic(&p, &bytes, &inputs)?;
        written.push(p);
        Ok(())
    };
    put("results.json", to_json_bytes(&results))?;
    put("results.csv", results_csv(&results).into_bytes())?;
    put("results.md", results_markdown(&results).into_bytes())?;
    written.extend(write_figures(&results, dir, &inputs)?);
    for m in figure_metrics {
        let q = Quality::parse(m);
        if q == Quality::Accuracy {
            continue;
        }
        if !results.configs.iter().any(|c| c.fidelity.contains_key(m)) {
            return Err(ReportError::NoSuchMetric {
                dir: dir.display().to_string(),
                metric: m.clone(),
                available: results
                    .configs
                    .iter()
                    .flat_map(|c| c.fidelity.keys().cloned())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        written.extend(write_quality_figures(&results, dir, &inputs, &q)?);
    }
    remove_stale_figures(dir, &written);
    Ok(written)
}

/// Removes figures of an earlier report that this report did not draw (e.g. the heat map of a
/// family pair no longer in the results), so the directory never shows outdated plots.
fn remove_stale_figures(dir: &Path, written: &[PathBuf]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let figure =
            name.ends_with(".svg") && (name.contains("_vs_") || name.starts_with("heatmap_"));
        if figure
            && !written
                .iter()
                .any(|w| w.file_name() == Some(e.file_name().as_os_str()))
        {
            // Best effort: a figure that cannot be removed is merely outdated.
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt_num(x: Option<f64>) -> String {
    x.map_or(String::new(), |v| v.to_string())
}

fn passes_text(p: &Option<Vec<String>>) -> String {
    match p {
        None => String::new(),
        Some(v) if v.is_empty() => "none".to_string(),
        Some(v) => v.join("+"),
    }
}

/// `results.csv`: one row per configuration; fidelity and extra cost columns are the union of
/// keys present, sorted.
pub fn results_csv(r: &ResultsFile) -> String {
    let fid: BTreeSet<&str> = r
        .configs
        .iter()
        .flat_map(|c| c.fidelity.keys().map(String::as_str))
        .collect();
    let other: BTreeSet<&str> = r
        .configs
        .iter()
        .flat_map(|c| c.cost.other.keys().map(String::as_str))
        .collect();
    let mut s = String::from(
        "id,weights,acts,first_last,passes,granularity,calib_method,seed,accuracy,accuracy_kind,\
         mac_lut,dataflow_lut,weight_mem_bits",
    );
    for m in PARETO_METRICS {
        let _ = write!(s, ",pareto_{m}");
    }
    for k in &fid {
        let _ = write!(s, ",{}", csv_field(&format!("fidelity_{k}")));
    }
    for k in &other {
        let _ = write!(s, ",{}", csv_field(&format!("cost_{k}")));
    }
    s.push_str(",eval_seconds\n");
    for c in &r.configs {
        let rc = &c.recipe;
        let cells = [
            c.id.clone(),
            c.weights.clone(),
            c.acts.clone(),
            rc.first_last.clone().unwrap_or_default(),
            passes_text(&rc.passes),
            rc.granularity.clone().unwrap_or_default(),
            rc.calib_method.clone().unwrap_or_default(),
            rc.seed.map_or(String::new(), |x| x.to_string()),
            c.accuracy.to_string(),
            c.accuracy_kind.as_str().to_string(),
            c.mac_lut.to_string(),
            opt_num(c.dataflow_lut),
            opt_num(c.weight_mem_bits),
        ];
        s.push_str(
            &cells
                .iter()
                .map(|x| csv_field(x))
                .collect::<Vec<_>>()
                .join(","),
        );
        for m in PARETO_METRICS {
            let _ = write!(s, ",{}", c.pareto.iter().any(|p| p == m));
        }
        for k in &fid {
            let _ = write!(s, ",{}", opt_num(c.fidelity.get(*k).copied()));
        }
        for k in &other {
            let _ = write!(s, ",{}", opt_num(c.cost.other.get(*k).copied()));
        }
        let _ = writeln!(s, ",{}", c.timings.eval_seconds);
    }
    s
}

/// Human label of a cost metric, with its unit.
pub fn metric_label(metric: &str) -> &str {
    match metric {
        "mac_lut" => "LUTs per MAC",
        "dataflow_lut" => "dataflow LUTs (total)",
        "weight_mem_bits" => "weight memory (bits)",
        other => other,
    }
}

fn fmt_cost(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn family_pair(c: &ResultEntry) -> String {
    let fam = |s: &str| format_info(s).map_or("other", |f| f.family.label());
    format!("W {} × A {}", fam(&c.weights), fam(&c.acts))
}

/// `results.md`: summary, Pareto fronts, best configuration per family pair, all
/// configurations, dropped combinations and missing configurations.
pub fn results_markdown(r: &ResultsFile) -> String {
    let mut s = String::new();
    let title = if r.grid.is_empty() {
        "Sweep results".to_string()
    } else {
        format!("Sweep results: {}", r.grid)
    };
    let _ = writeln!(s, "# {title}\n");
    let kinds: BTreeSet<&str> = r.configs.iter().map(|c| c.accuracy_kind.as_str()).collect();
    let _ = writeln!(
        s,
        "{} configurations completed of {} planned ({} missing, {} combinations dropped{}). \
         Accuracy: {}.\n",
        r.summary.completed,
        r.summary.planned,
        r.summary.missing,
        r.summary.dropped,
        if r.summary.not_planned > 0 {
            format!(
                "; {} result files of configurations outside the plan not listed",
                r.summary.not_planned
            )
        } else {
            String::new()
        },
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.into_iter().collect::<Vec<_>>().join(", ")
        }
    );
    let by_id: HashMap<&str, &ResultEntry> = r.configs.iter().map(|c| (c.id.as_str(), c)).collect();
    for m in PARETO_METRICS {
        let Some(ids) = r.pareto.get(m) else { continue };
        let _ = writeln!(s, "## Pareto front: accuracy vs {}\n", metric_label(m));
        let _ = writeln!(s, "| configuration | accuracy (%) | {} |", metric_label(m));
        let _ = writeln!(s, "|---|---:|---:|");
        for id in ids {
            if let Some(c) = by_id.get(id.as_str()) {
                let _ = writeln!(
                    s,
                    "| {} | {:.2} | {} |",
                    c.recipe.label(),
                    100.0 * c.accuracy,
                    c.cost.get(m).map_or(String::new(), fmt_cost)
                );
            }
        }
        s.push('\n');
    }
    let mut best: BTreeMap<String, &ResultEntry> = BTreeMap::new();
    for c in &r.configs {
        let k = family_pair(c);
        let better = best.get(&k).is_none_or(|b| {
            c.accuracy > b.accuracy || (c.accuracy == b.accuracy && c.mac_lut < b.mac_lut)
        });
        if better {
            best.insert(k, c);
        }
    }
    if !best.is_empty() {
        let _ = writeln!(s, "## Best configuration per family\n");
        let _ = writeln!(
            s,
            "| family | configuration | accuracy (%) | LUTs per MAC |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|");
        for (k, c) in &best {
            let _ = writeln!(
                s,
                "| {k} | {} | {:.2} | {} |",
                c.recipe.label(),
                100.0 * c.accuracy,
                fmt_cost(c.mac_lut)
            );
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## All configurations\n");
    let has_df = r.configs.iter().any(|c| c.dataflow_lut.is_some());
    let has_mem = r.configs.iter().any(|c| c.weight_mem_bits.is_some());
    let mut head = "| id | configuration | accuracy (%) | LUTs per MAC |".to_string();
    let mut rule = "|---|---|---:|---:|".to_string();
    if has_df {
        head.push_str(" dataflow LUTs |");
        rule.push_str("---:|");
    }
    if has_mem {
        head.push_str(" weight memory (bits) |");
        rule.push_str("---:|");
    }
    head.push_str(" Pareto |");
    rule.push_str("---|");
    let _ = writeln!(s, "{head}\n{rule}");
    for c in &r.configs {
        let _ = write!(
            s,
            "| `{}` | {} | {:.2} | {} |",
            c.id,
            c.recipe.label(),
            100.0 * c.accuracy,
            fmt_cost(c.mac_lut)
        );
        if has_df {
            let _ = write!(s, " {} |", c.dataflow_lut.map_or(String::new(), fmt_cost));
        }
        if has_mem {
            let _ = write!(
                s,
                " {} |",
                c.weight_mem_bits.map_or(String::new(), fmt_cost)
            );
        }
        let _ = writeln!(s, " {} |", c.pareto.join(", "));
    }
    s.push('\n');
    if !r.dropped.is_empty() {
        let _ = writeln!(s, "## Dropped combinations\n");
        let _ = writeln!(s, "| configuration | reason |\n|---|---|");
        for d in &r.dropped {
            let _ = writeln!(s, "| {} | {} |", d.recipe.label(), d.reason);
        }
        s.push('\n');
    }
    if !r.missing.is_empty() {
        let _ = writeln!(
            s,
            "## Missing configurations\n\n{} planned configurations have no result yet: {}\n",
            r.missing.len(),
            r.missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    s
}

/// What [`merge_dirs`] did.
#[derive(Debug, Clone, Default)]
pub struct MergeSummary {
    /// Result files copied into the output.
    pub copied: usize,
    /// Result files already present with identical content.
    pub identical: usize,
    /// Ids found in several inputs with different outcomes (the first input wins).
    pub conflicts: Vec<String>,
    /// Reports written.
    pub reports: Vec<PathBuf>,
}

/// Collates shard directories into `out`: copies every result file (the first input wins on
/// conflicting duplicates), merges the plans, and writes the reports.
pub fn merge_dirs(inputs: &[PathBuf], out: &Path) -> Result<MergeSummary, ReportError> {
    let out_configs = out.join(CONFIGS_DIR);
    std::fs::create_dir_all(&out_configs).map_err(|source| ReportError::CreateDir {
        path: out_configs.clone(),
        source,
    })?;
    let mut summary = MergeSummary::default();
    let mut plan: Option<PlanFile> = read_plan_opt(out)?;
    let mut planned_ids: HashSet<String> = plan
        .as_ref()
        .map(|p| p.configs.iter().map(|c| c.id.clone()).collect())
        .unwrap_or_default();
    let mut dropped_seen: HashSet<DroppedConfig> = plan
        .as_ref()
        .map(|p| p.dropped.iter().cloned().collect())
        .unwrap_or_default();
    let mut taken: HashMap<String, ConfigResult> = load_config_results(out)?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    for input in inputs {
        if !input.join(CONFIGS_DIR).is_dir() && !input.join("plan.json").exists() {
            return Err(ReportError::NotASweep {
                path: input.clone(),
            });
        }
        if let Some(p) = read_plan_opt(input)? {
            let merged = plan.get_or_insert_with(|| PlanFile {
                schema: PLAN_SCHEMA.to_string(),
                version: SCHEMA_VERSION,
                grid: p.grid.clone(),
                configs: Vec::new(),
                dropped: Vec::new(),
            });
            if merged.grid.is_empty() {
                merged.grid = p.grid.clone();
            }
            for c in p.configs {
                if planned_ids.insert(c.id.clone()) {
                    merged.configs.push(c);
                }
            }
            for d in p.dropped {
                if dropped_seen.insert(d.clone()) {
                    merged.dropped.push(d);
                }
            }
        }
        if same_file(input, out) {
            continue;
        }
        for r in load_config_results(input)? {
            match taken.get(&r.id) {
                Some(prev) if prev.outcome == r.outcome => summary.identical += 1,
                Some(_) => summary.conflicts.push(r.id.clone()),
                None => {
                    let dest = out_configs.join(format!("{}.json", r.id));
                    write_atomic(&dest, &to_json_bytes(&r), &[])?;
                    summary.copied += 1;
                    taken.insert(r.id.clone(), r);
                }
            }
        }
    }
    if let Some(p) = &plan {
        write_atomic(&out.join("plan.json"), &to_json_bytes(p), &[])?;
    }
    summary.reports = write_reports(out, &[])?;
    Ok(summary)
}

/// Planned configurations of a directory that have no result file.
pub fn missing_configs(dir: &Path) -> Result<Vec<PlannedConfig>, ReportError> {
    let have: HashSet<String> = load_config_results(dir)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    Ok(read_plan_opt(dir)?
        .map(|p| {
            p.configs
                .into_iter()
                .filter(|c| !have.contains(&c.id))
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::format_name::compare_format_names;

    #[test]
    fn recipe_order_follows_format_order_then_other_axes() {
        let names = [
            "e4m3", "uint4", "int8", "bogus", "int4", "e1m2", "fp4-e2m1", "mxfp4",
        ];
        for a in names {
            for b in names {
                assert_eq!(
                    compare_recipes(&ConfigRecipe::new(a, "int8"), &ConfigRecipe::new(b, "int8")),
                    compare_format_names(a, b),
                    "{a} vs {b}"
                );
            }
        }
        let plain = ConfigRecipe::new("int4", "int8");
        let mut with_fl = plain.clone();
        with_fl.first_last = Some("int8".into());
        let mut with_seed = plain.clone();
        with_seed.seed = Some(1);
        assert_eq!(compare_recipes(&plain, &with_fl), Ordering::Less);
        assert_eq!(compare_recipes(&plain, &with_seed), Ordering::Less);
        assert_eq!(compare_recipes(&with_seed, &with_fl), Ordering::Less);
        let acts_first = ConfigRecipe::new("int4", "int4");
        assert_eq!(compare_recipes(&acts_first, &with_fl), Ordering::Less);
    }
}
