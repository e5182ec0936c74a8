//! Regression check of one `results.json` against a baseline: configurations are matched by
//! recipe, accuracy may not drop by more than a tolerance in percentage points, and no cost
//! figure may rise by more than a relative tolerance. The verdict comes with a Markdown
//! report fit for a CI comment.

use super::grid::ConfigRecipe;
use super::report::metric_label;
use super::schema::{read_versioned, ResultEntry, ResultsFile, SchemaError, RESULTS_SCHEMA};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Tolerances of [`compare`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckOptions {
    /// Largest allowed accuracy drop, in percentage points (0.5 = 0.5 % absolute).
    pub tol_acc_points: f64,
    /// Largest allowed relative rise of any cost figure (0.01 = 1 %).
    pub tol_cost_rel: f64,
    /// Baseline configurations absent from the results are not a regression.
    pub allow_missing: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            tol_acc_points: 0.5,
            tol_cost_rel: 0.01,
            allow_missing: false,
        }
    }
}

/// Error raised when an input cannot be used (exit code 2 of `mfq check`).
#[derive(Debug, thiserror::Error)]
pub enum CheckInputError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("{path}: configuration {label} (id {id}) is listed twice")]
    Duplicate {
        path: PathBuf,
        id: String,
        label: String,
    },
    #[error(
        "configuration {label} (id {id}) measures accuracy as {result} in the results but as \
         {baseline} in the baseline; the two cannot be compared"
    )]
    KindMismatch {
        id: String,
        label: String,
        result: &'static str,
        baseline: &'static str,
    },
    #[error("{path}: configuration {label} (id {id}): {message}")]
    BadValue {
        path: PathBuf,
        id: String,
        label: String,
        message: String,
    },
}

/// Reads a `results.json` (or the `results.json` inside a sweep directory) and checks that
/// every configuration appears once with in-range values.
pub fn load_results(path: &Path) -> Result<ResultsFile, CheckInputError> {
    let file = if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_path_buf()
    };
    let r: ResultsFile = read_versioned(&file, RESULTS_SCHEMA)?;
    let mut seen = HashMap::new();
    for c in &r.configs {
        if seen.insert(c.recipe.clone(), ()).is_some() {
            return Err(CheckInputError::Duplicate {
                path: file,
                id: c.id.clone(),
                label: c.recipe.label(),
            });
        }
        let bad = |message: String| CheckInputError::BadValue {
            path: file.clone(),
            id: c.id.clone(),
            label: c.recipe.label(),
            message,
        };
        if !(0.0..=1.0).contains(&c.accuracy) {
            return Err(bad(format!(
                "accuracy {} is not a fraction in [0, 1]",
                c.accuracy
            )));
        }
        for (k, v) in c.cost.all() {
            if !v.is_finite() || v < 0.0 {
                return Err(bad(format!("cost figure {k} is {v}")));
            }
        }
        if c.mac_lut != c.cost.mac_lut {
            return Err(bad(format!(
                "mac_lut {} differs from cost.mac_lut {}",
                c.mac_lut, c.cost.mac_lut
            )));
        }
    }
    Ok(r)
}

/// How one compared figure moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Worse beyond tolerance.
    Regression,
    /// Worse, within tolerance.
    WithinTolerance,
    /// Better.
    Improved,
}

/// One figure of one configuration that differs between baseline and results.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureDiff {
    /// `accuracy` or a cost figure name.
    pub metric: String,
    pub baseline: Option<f64>,
    pub result: Option<f64>,
    pub verdict: Verdict,
}

/// A configuration present in both files whose figures differ.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigDiff {
    pub id: String,
    pub recipe: ConfigRecipe,
    pub figures: Vec<FigureDiff>,
}

impl ConfigDiff {
    /// True when any figure regressed.
    pub fn regressed(&self) -> bool {
        self.figures
            .iter()
            .any(|f| f.verdict == Verdict::Regression)
    }
}

/// Outcome of [`compare`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub options: CheckOptions,
    /// Configurations present in both.
    pub compared: usize,
    /// Configurations with at least one differing figure, in baseline order.
    pub diffs: Vec<ConfigDiff>,
    /// In the baseline, not in the results.
    pub missing: Vec<(String, ConfigRecipe)>,
    /// In the results, not in the baseline.
    pub added: Vec<(String, ConfigRecipe)>,
}

impl CheckReport {
    /// Number of configurations that regressed (missing ones count unless allowed).
    pub fn regressions(&self) -> usize {
        self.diffs.iter().filter(|d| d.regressed()).count()
            + if self.options.allow_missing {
                0
            } else {
                self.missing.len()
            }
    }

    /// True when the check passes.
    pub fn passed(&self) -> bool {
        self.regressions() == 0
    }

    /// Markdown report: verdict, tolerances, a table of differing figures (regressions first),
    /// and the lists of missing and added configurations.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let n = self.regressions();
        if n == 0 {
            let _ = writeln!(s, "## mfq check: passed\n");
        } else {
            let _ = writeln!(
                s,
                "## mfq check: FAILED, {n} regression{}\n",
                if n == 1 { "" } else { "s" }
            );
        }
        let _ = writeln!(
            s,
            "Compared {} configurations matched by recipe. Tolerances: accuracy may drop by at \
             most {} percentage points; each cost figure may rise by at most {}%. {} changed, \
             {} missing{}, {} added.\n",
            self.compared,
            self.options.tol_acc_points,
            self.options.tol_cost_rel * 100.0,
            self.diffs.len(),
            self.missing.len(),
            if self.options.allow_missing {
                " (allowed)"
            } else {
                ""
            },
            self.added.len()
        );
        if !self.diffs.is_empty() {
            let _ = writeln!(
                s,
                "| status | configuration | figure | baseline | result | change |"
            );
            let _ = writeln!(s, "|---|---|---|---:|---:|---:|");
            let mut rows: Vec<(&ConfigDiff, &FigureDiff)> = self
                .diffs
                .iter()
                .flat_map(|d| d.figures.iter().map(move |f| (d, f)))
                .collect();
            rows.sort_by_key(|(_, f)| match f.verdict {
                Verdict::Regression => 0,
                Verdict::WithinTolerance => 1,
                Verdict::Improved => 2,
            });
            for (d, f) in rows {
                let status = match f.verdict {
                    Verdict::Regression => "**regression**",
                    Verdict::WithinTolerance => "within tolerance",
                    Verdict::Improved => "improved",
                };
                let (b, r, change) = if f.metric == "accuracy" {
                    (
                        f.baseline
                            .map_or("—".into(), |v| format!("{:.2} %", 100.0 * v)),
                        f.result
                            .map_or("—".into(), |v| format!("{:.2} %", 100.0 * v)),
                        match (f.baseline, f.result) {
                            (Some(b), Some(r)) => format!("{:+.2} pp", 100.0 * (r - b)),
                            _ => "—".into(),
                        },
                    )
                } else {
                    (
                        f.baseline.map_or("—".into(), fmt_num),
                        f.result.map_or("missing".into(), fmt_num),
                        match (f.baseline, f.result) {
                            (Some(b), Some(r)) if b != 0.0 => {
                                format!("{:+.2} %", 100.0 * (r - b) / b)
                            }
                            (Some(_), Some(r)) => format!("{:+}", r),
                            _ => "—".into(),
                        },
                    )
                };
                let _ = writeln!(
                    s,
                    "| {status} | {} (`{}`) | {} | {b} | {r} | {change} |",
                    d.recipe.label(),
                    d.id,
                    metric_name(&f.metric)
                );
            }
            s.push('\n');
        }
        let list = |s: &mut String, title: &str, note: &str, v: &[(String, ConfigRecipe)]| {
            if v.is_empty() {
                return;
            }
            let _ = writeln!(s, "### {title} ({})\n\n{note}\n", v.len());
            for (id, r) in v {
                let _ = writeln!(s, "- {} (`{id}`)", r.label());
            }
            s.push('\n');
        };
        let missing_note = if self.options.allow_missing {
            "In the baseline, not in the results (allowed by --allow-missing)."
        } else {
            "In the baseline, not in the results: each counts as a regression."
        };
        list(
            &mut s,
            "Missing configurations",
            missing_note,
            &self.missing,
        );
        list(
            &mut s,
            "Added configurations",
            "In the results, not in the baseline.",
            &self.added,
        );
        s
    }
}

fn metric_name(m: &str) -> String {
    if m == "accuracy" {
        "accuracy".to_string()
    } else {
        format!("{} (`{m}`)", metric_label(m))
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// Compares `results` against `baseline`. Fails only when a configuration's accuracy is
/// measured differently in the two files (top-1 vs agreement with float).
pub fn compare(
    results: &ResultsFile,
    baseline: &ResultsFile,
    options: CheckOptions,
) -> Result<CheckReport, CheckInputError> {
    // Tiny slack so values that are equal up to float noise never fail.
    const EPS: f64 = 1e-9;
    let new_by_recipe: HashMap<&ConfigRecipe, &ResultEntry> =
        results.configs.iter().map(|c| (&c.recipe, c)).collect();
    let base_by_recipe: HashMap<&ConfigRecipe, &ResultEntry> =
        baseline.configs.iter().map(|c| (&c.recipe, c)).collect();
    let mut diffs = Vec::new();
    let mut missing = Vec::new();
    let mut compared = 0;
    for b in &baseline.configs {
        let Some(r) = new_by_recipe.get(&b.recipe) else {
            missing.push((b.id.clone(), b.recipe.clone()));
            continue;
        };
        if r.accuracy_kind != b.accuracy_kind {
            return Err(CheckInputError::KindMismatch {
                id: b.id.clone(),
                label: b.recipe.label(),
                result: r.accuracy_kind.as_str(),
                baseline: b.accuracy_kind.as_str(),
            });
        }
        compared += 1;
        let mut figures = Vec::new();
        if r.accuracy != b.accuracy {
            let drop_points = 100.0 * (b.accuracy - r.accuracy);
            let verdict = if r.accuracy > b.accuracy {
                Verdict::Improved
            } else if drop_points > options.tol_acc_points + EPS {
                Verdict::Regression
            } else {
                Verdict::WithinTolerance
            };
            figures.push(FigureDiff {
                metric: "accuracy".into(),
                baseline: Some(b.accuracy),
                result: Some(r.accuracy),
                verdict,
            });
        }
        for (name, bv) in b.cost.all() {
            let rv = r.cost.get(&name);
            let verdict = match rv {
                None => Some(Verdict::Regression),
                Some(rv) if rv == bv => None,
                Some(rv) if rv < bv => Some(Verdict::Improved),
                Some(rv) => {
                    let over = if bv == 0.0 {
                        true
                    } else {
                        (rv - bv) / bv > options.tol_cost_rel + EPS
                    };
                    Some(if over {
                        Verdict::Regression
                    } else {
                        Verdict::WithinTolerance
                    })
                }
            };
            if let Some(verdict) = verdict {
                figures.push(FigureDiff {
                    metric: name,
                    baseline: Some(bv),
                    result: rv,
                    verdict,
                });
            }
        }
        if !figures.is_empty() {
            diffs.push(ConfigDiff {
                id: b.id.clone(),
                recipe: b.recipe.clone(),
                figures,
            });
        }
    }
    let added = results
        .configs
        .iter()
        .filter(|c| !base_by_recipe.contains_key(&c.recipe))
        .map(|c| (c.id.clone(), c.recipe.clone()))
        .collect();
    Ok(CheckReport {
        options,
        compared,
        diffs,
        missing,
        added,
    })
}
