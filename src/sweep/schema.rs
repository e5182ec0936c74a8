//! On-disk schemas of a sweep directory: per-configuration result files (`configs/<id>.json`),
//! the expanded plan (`plan.json`) and the collated report (`results.json`).
//!
//! Every file carries a `schema` name and an integer `version`; readers refuse other versions
//! with an error naming the file, so scripts and `mfq check` never misread an old layout.

use super::grid::{ConfigRecipe, DroppedConfig, PlannedConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Schema name of a per-configuration result file.
pub const CONFIG_SCHEMA: &str = "mfq-sweep-config";
/// Schema name of `plan.json`.
pub const PLAN_SCHEMA: &str = "mfq-sweep-plan";
/// Schema name of `results.json`.
pub const RESULTS_SCHEMA: &str = "mfq-sweep-results";
/// Version of all three schemas written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// Names of the cost figures that get a Pareto front, in report order.
pub const PARETO_METRICS: [&str; 3] = ["mac_lut", "dataflow_lut", "weight_mem_bits"];

/// What `accuracy` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccuracyKind {
    /// Top-1 accuracy against labels.
    Top1,
    /// Top-1 agreement with the float model (no labels).
    Agreement,
}

impl AccuracyKind {
    /// Name used in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            AccuracyKind::Top1 => "top1",
            AccuracyKind::Agreement => "agreement",
        }
    }
}

/// Hardware cost figures of one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostFigures {
    /// LUTs of one multiply-accumulate unit for the (weight, activation) format pair.
    pub mac_lut: f64,
    /// Total LUTs of the dataflow architecture, when estimated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataflow_lut: Option<f64>,
    /// Weight memory in bits, when estimated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_mem_bits: Option<f64>,
    /// Further named figures (e.g. `bram18`, `dsp`, `total_bops`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, f64>,
}

impl CostFigures {
    /// A figure by name: `mac_lut`, `dataflow_lut`, `weight_mem_bits` or a key of `other`.
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "mac_lut" => Some(self.mac_lut),
            "dataflow_lut" => self.dataflow_lut,
            "weight_mem_bits" => self.weight_mem_bits,
            k => self.other.get(k).copied(),
        }
    }

    /// Every figure present, by name, in a fixed order (the three named ones, then `other`).
    pub fn all(&self) -> Vec<(String, f64)> {
        let mut v = vec![("mac_lut".to_string(), self.mac_lut)];
        if let Some(x) = self.dataflow_lut {
            v.push(("dataflow_lut".to_string(), x));
        }
        if let Some(x) = self.weight_mem_bits {
            v.push(("weight_mem_bits".to_string(), x));
        }
        v.extend(self.other.iter().map(|(k, x)| (k.clone(), *x)));
        v
    }
}

/// What an evaluator returns for one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigOutcome {
    /// Accuracy as a fraction in [0, 1].
    pub accuracy: f64,
    /// What `accuracy` measures.
    pub accuracy_kind: AccuracyKind,
    /// Fidelity metrics against the float model (e.g. `sqnr_db`, `kl`, `cosine`).
    #[serde(default)]
    pub fidelity: BTreeMap<String, f64>,
    /// Hardware cost figures.
    pub cost: CostFigures,
}

impl ConfigOutcome {
    /// Checks the ranges the reports rely on; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.accuracy) {
            return Err(format!(
                "accuracy {} is not a fraction in [0, 1]",
                self.accuracy
            ));
        }
        for (k, v) in self.fidelity.iter() {
            if !v.is_finite() {
                return Err(format!("fidelity metric {k} is {v} (must be finite)"));
            }
        }
        for (k, v) in self.cost.all() {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("cost figure {k} is {v} (must be finite and >= 0)"));
            }
        }
        Ok(())
    }
}

/// Wall-clock timings of one configuration (the only non-deterministic part of a result).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Seconds spent in the evaluator.
    pub eval_seconds: f64,
}

/// Content of `configs/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigResult {
    pub schema: String,
    pub version: u32,
    /// Id of `recipe` ([`ConfigRecipe::id`]).
    pub id: String,
    pub recipe: ConfigRecipe,
    pub outcome: ConfigOutcome,
    pub timings: Timings,
}

/// Content of `plan.json`: the expansion of the grid the directory was run with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub schema: String,
    pub version: u32,
    /// Grid name.
    pub grid: String,
    /// Planned configurations in run order.
    pub configs: Vec<PlannedConfig>,
    /// Dropped combinations with reasons.
    pub dropped: Vec<DroppedConfig>,
}

/// Counts at the top of `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsSummary {
    /// Configurations in the plan (0 when the directory has no plan).
    pub planned: usize,
    /// Configurations with a result.
    pub completed: usize,
    /// Planned configurations without a result.
    pub missing: usize,
    /// Combinations dropped from the grid.
    pub dropped: usize,
    /// Result files in the directory whose configuration is not in the plan (not listed).
    pub not_planned: usize,
}

/// One configuration in `results.json`. `weights`, `acts`, `accuracy` and `mac_lut` are the
/// stable top-level keys scripts depend on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultEntry {
    pub id: String,
    /// Canonical weight format.
    pub weights: String,
    /// Canonical activation format.
    pub acts: String,
    /// Accuracy as a fraction in [0, 1].
    pub accuracy: f64,
    pub accuracy_kind: AccuracyKind,
    /// LUTs per MAC.
    pub mac_lut: f64,
    /// Total dataflow LUTs, when estimated.
    pub dataflow_lut: Option<f64>,
    /// Weight memory bits, when estimated.
    pub weight_mem_bits: Option<f64>,
    /// Pareto fronts (metric names of [`PARETO_METRICS`]) this configuration lies on.
    pub pareto: Vec<String>,
    /// Full recipe.
    pub recipe: ConfigRecipe,
    /// Fidelity metrics.
    pub fidelity: BTreeMap<String, f64>,
    /// All cost figures.
    pub cost: CostFigures,
    pub timings: Timings,
}

/// Content of `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsFile {
    pub schema: String,
    pub version: u32,
    /// Grid name (empty when unknown).
    pub grid: String,
    pub summary: ResultsSummary,
    /// One entry per completed configuration, in report order.
    pub configs: Vec<ResultEntry>,
    /// Per metric of [`PARETO_METRICS`] present: ids on the front, by increasing cost.
    pub pareto: BTreeMap<String, Vec<String>>,
    /// Dropped combinations with reasons.
    pub dropped: Vec<DroppedConfig>,
    /// Ids of planned configurations without a result.
    pub missing: Vec<String>,
    /// Sum of per-configuration evaluation times.
    pub total_eval_seconds: f64,
}

/// Error raised reading a schema file.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {message}")]
    Json { path: PathBuf, message: String },
    #[error("{path} is not a {expected} file (schema is {found})")]
    WrongSchema {
        path: PathBuf,
        expected: &'static str,
        found: String,
    },
    #[error("{path} has {expected} version {found}; this mfq reads version {SCHEMA_VERSION}")]
    WrongVersion {
        path: PathBuf,
        expected: &'static str,
        found: String,
    },
    #[error("{path} does not match the {expected} schema: {message}")]
    Shape {
        path: PathBuf,
        expected: &'static str,
        message: String,
    },
}

/// Parses `bytes` (read from `path`) as schema `expected`, checking name and version first so
/// a wrong version is reported as such rather than as a missing field.
pub fn parse_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    expected: &'static str,
) -> Result<T, SchemaError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| SchemaError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let schema = value.get("schema").and_then(|s| s.as_str());
    if schema != Some(expected) {
        return Err(SchemaError::WrongSchema {
            path: path.to_path_buf(),
            expected,
            found: schema.map_or("missing".to_string(), |s| format!("'{s}'")),
        });
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        other => {
            return Err(SchemaError::WrongVersion {
                path: path.to_path_buf(),
                expected,
                found: other.map_or("missing".to_string(), |v| v.to_string()),
            })
        }
    }
    serde_json::from_value(value).map_err(|e| SchemaError::Shape {
        path: path.to_path_buf(),
        expected,
        message: e.to_string(),
    })
}

/// Reads and parses a schema file.
pub fn read_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    expected: &'static str,
) -> Result<T, SchemaError> {
    let bytes = std::fs::read(path).map_err(|source| SchemaError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_versioned(path, &bytes, expected)
}

/// Pretty JSON with a trailing newline (serialization of these types cannot fail).
pub fn to_json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(value).unwrap_or_default();
    v.push(b'\n');
    v
}
