//! Sweep grid files (TOML) and their expansion into configuration recipes.
//!
//! A grid lists values per axis; [`Grid::expand`] takes the cartesian product in a fixed order
//! (weights outermost, then acts, first_last, passes, granularity, calib_method, seeds — each
//! axis in the order written), drops invalid or duplicate combinations with a reason, and gives
//! every remaining recipe a stable id: a hash of its canonical JSON, so the same recipe has the
//! same id in every run, shard and grid that contains it.

use super::format_name::{format_info, FormatNameError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Largest number of combinations a grid may expand to before it is rejected as a typo.
pub const MAX_COMBINATIONS: usize = 1_000_000;

/// Keyword in `first_last` meaning "first and last layers use the same formats as the body".
pub const SAME: &str = "same";

/// Error raised while reading or validating a grid file.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error("cannot read grid file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("grid file {source_name} is not valid TOML for a sweep grid: {message}")]
    Toml {
        source_name: String,
        message: String,
    },
    #[error("grid file {source_name}, axis '{axis}': {source}")]
    Format {
        source_name: String,
        axis: String,
        source: FormatNameError,
    },
    #[error("grid file {source_name}, axis '{axis}': {message}")]
    Axis {
        source_name: String,
        axis: String,
        message: String,
    },
    #[error("grid file {source_name} expands to {count} combinations (limit {MAX_COMBINATIONS})")]
    TooLarge { source_name: String, count: u128 },
}

/// One string or a list of strings (TOML `x = "a"` or `x = ["a", "b"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StrList {
    One(String),
    Many(Vec<String>),
}

impl StrList {
    fn items(&self) -> Vec<String> {
        match self {
            StrList::One(s) => vec![s.clone()],
            StrList::Many(v) => v.clone(),
        }
    }
}

/// One integer or a list of integers.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum U64List {
    One(u64),
    Many(Vec<u64>),
}

/// An exclusion rule: a combination matching every key given is dropped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludeRuleFile {
    pub weights: Option<StrList>,
    pub acts: Option<StrList>,
    pub first_last: Option<StrList>,
    pub granularity: Option<StrList>,
    pub calib_method: Option<StrList>,
    pub seeds: Option<U64List>,
}

/// The grid file as written (see docs/sweep.md for the syntax).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridFile {
    /// Optional name shown in reports.
    pub name: Option<String>,
    /// Optional free text shown in reports.
    pub description: Option<String>,
    /// Weight formats (compact lists allowed). Required.
    pub weights: StrList,
    /// Activation formats (compact lists allowed). Required.
    pub acts: StrList,
    /// Formats of the first and last layers, or `"same"`.
    pub first_last: Option<StrList>,
    /// Pass lists, each an ordered list of pass names (`[]` = round-to-nearest only).
    pub passes: Option<Vec<Vec<String>>>,
    /// Scale granularity values (e.g. `per-tensor`, `per-channel`).
    pub granularity: Option<StrList>,
    /// Calibration methods (e.g. `max`, `percentile`, `mse`).
    pub calib_method: Option<StrList>,
    /// Seeds.
    pub seeds: Option<U64List>,
    /// Combinations to leave out.
    #[serde(default)]
    pub exclude: Vec<ExcludeRuleFile>,
}

/// One configuration: every axis value of one point of the grid. `None` means the axis was
/// not in the grid and the quantizer's default applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRecipe {
    /// Canonical weight format.
    pub weights: String,
    /// Canonical activation format.
    pub acts: String,
    /// Canonical format of first and last layers, or `"same"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_last: Option<String>,
    /// Ordered pass list (`Some([])` = no passes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passes: Option<Vec<String>>,
    /// Scale granularity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granularity: Option<String>,
    /// Calibration method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calib_method: Option<String>,
    /// Seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl ConfigRecipe {
    /// A recipe with only weight and activation formats set (strings used as given).
    pub fn new(weights: &str, acts: &str) -> Self {
        ConfigRecipe {
            weights: weights.to_string(),
            acts: acts.to_string(),
            first_last: None,
            passes: None,
            granularity: None,
            calib_method: None,
            seed: None,
        }
    }

    /// Canonical JSON of the recipe: compact, fields in declaration order, absent axes omitted.
    pub fn canonical_json(&self) -> String {
        // Serializing a struct of strings, integers and options cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Stable id: 16 hex digits of the 64-bit FNV-1a hash of a version tag and the canonical
    /// JSON. Used as the result file name and to match configurations between runs.
    pub fn id(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in b"mfq-recipe/1\n"
            .iter()
            .chain(self.canonical_json().as_bytes())
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// Short human-readable label: `W int4 / A e4m3` plus any non-default axes.
    pub fn label(&self) -> String {
        let mut s = format!("W {} / A {}", self.weights, self.acts);
        if let Some(fl) = &self.first_last {
            s.push_str(&format!(", first/last {fl}"));
        }
        if let Some(p) = &self.passes {
            if p.is_empty() {
                s.push_str(", no passes");
            } else {
                s.push_str(&format!(", passes {}", p.join("+")));
            }
        }
        if let Some(g) = &self.granularity {
            s.push_str(&format!(", {g}"));
        }
        if let Some(c) = &self.calib_method {
            s.push_str(&format!(", calib {c}"));
        }
        if let Some(seed) = self.seed {
            s.push_str(&format!(", seed {seed}"));
        }
        s
    }
}

/// The quantizer's validity hook: `Err(reason)` drops a combination from the plan.
pub type Validity<'a> = dyn Fn(&ConfigRecipe) -> Result<(), String> + 'a;

/// A recipe of the plan with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedConfig {
    pub id: String,
    pub recipe: ConfigRecipe,
}

/// A combination left out of the plan, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DroppedConfig {
    pub recipe: ConfigRecipe,
    pub reason: String,
}

/// The expansion of a grid: configurations to run, in order, and dropped combinations.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    pub configs: Vec<PlannedConfig>,
    pub dropped: Vec<DroppedConfig>,
}

#[derive(Debug, Clone, Default)]
struct ExcludeRule {
    weights: Option<BTreeSet<String>>,
    acts: Option<BTreeSet<String>>,
    first_last: Option<BTreeSet<String>>,
    granularity: Option<BTreeSet<String>>,
    calib_method: Option<BTreeSet<String>>,
    seeds: Option<BTreeSet<u64>>,
}

impl ExcludeRule {
    fn matches(&self, r: &ConfigRecipe) -> bool {
        fn opt(set: &Option<BTreeSet<String>>, v: Option<&String>) -> bool {
            match set {
                None => true,
                Some(s) => v.is_some_and(|v| s.contains(v)),
            }
        }
        opt(&self.weights, Some(&r.weights))
            && opt(&self.acts, Some(&r.acts))
            && opt(&self.first_last, r.first_last.as_ref())
            && opt(&self.granularity, r.granularity.as_ref())
            && opt(&self.calib_method, r.calib_method.as_ref())
            && match &self.seeds {
                None => true,
                Some(s) => r.seed.is_some_and(|v| s.contains(&v)),
            }
    }
}

/// A validated grid: every axis expanded to its canonical values.
#[derive(Debug, Clone)]
pub struct Grid {
    /// Name of the grid (file stem when the file has none).
    pub name: String,
    /// Free-text description.
    pub description: Option<String>,
    pub weights: Vec<String>,
    pub acts: Vec<String>,
    pub first_last: Vec<Option<String>>,
    pub passes: Vec<Option<Vec<String>>>,
    pub granularity: Vec<Option<String>>,
    pub calib_method: Vec<Option<String>>,
    pub seeds: Vec<Option<u64>>,
    exclude: Vec<ExcludeRule>,
}

/// Expands one entry of a format list: `int3..int8`, `uint2..uint4`, `all-exmy 3..8`,
/// `all-exmy 4`, or a single format name. Returns canonical names.
pub fn expand_format_item(item: &str) -> Result<Vec<String>, FormatNameError> {
    let err = |why: &str| FormatNameError {
        name: item.to_string(),
        why: why.to_string(),
    };
    let s = item.trim().to_ascii_lowercase();
    if let Some(rest) = s.strip_prefix("all-exmy") {
        let (lo, hi) = parse_range(rest.trim())
            .ok_or_else(|| err("expected 'all-exmy A..B' or 'all-exmy N' (total bits)"))?;
        if lo < 3 || hi > 16 || lo > hi {
            return Err(err(
                "all-exmy widths must satisfy 3 <= A <= B <= 16 (sign + E >= 1 + M >= 1)",
            ));
        }
        let mut out = Vec::new();
        for n in lo..=hi {
            // n = 1 sign bit + E + M with E >= 1 and M >= 1.
            for e in 1..=(n - 2) {
                let m = n - 1 - e;
                if e <= 8 && m <= 10 {
                    out.push(format_info(&format!("e{e}m{m}"))?.canonical);
                }
            }
        }
        return Ok(out);
    }
    if let Some((a, b)) = s.split_once("..") {
        let prefix = if a.starts_with("uint") {
            "uint"
        } else if a.starts_with("int") {
            "int"
        } else {
            return Err(err("ranges are written intA..intB or uintA..uintB"));
        };
        let lo = a[prefix.len()..]
            .parse::<u32>()
            .map_err(|_| err("bad lower bound"))?;
        let b = b.trim();
        let hi_str = b.strip_prefix(prefix).unwrap_or(b);
        if b.starts_with(if prefix == "int" { "uint" } else { "int" }) {
            return Err(err("both ends of a range must have the same signedness"));
        }
        let hi = hi_str.parse::<u32>().map_err(|_| err("bad upper bound"))?;
        if lo > hi {
            return Err(err("empty range (lower bound above upper bound)"));
        }
        return (lo..=hi)
            .map(|b| format_info(&format!("{prefix}{b}")).map(|f| f.canonical))
            .collect();
    }
    Ok(vec![format_info(&s)?.canonical])
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    match s.split_once("..") {
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        None => {
            let n = s.parse().ok()?;
            Some((n, n))
        }
    }
}

/// Removes repeated values, keeping the first occurrence.
fn dedup_keep_first<T: Clone + Eq + std::hash::Hash>(v: Vec<T>) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter().filter(|x| seen.insert(x.clone())).collect()
}

impl Grid {
    /// Reads and validates a grid file.
    pub fn load(path: &Path) -> Result<Grid, GridError> {
        let text = std::fs::read_to_string(path).map_err(|source| GridError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut g = Grid::from_toml_str(&text, &path.display().to_string())?;
        if g.name.is_empty() {
            g.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        Ok(g)
    }

    /// Parses and validates grid TOML; `source_name` names the text in error messages.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Grid, GridError> {
        let file: GridFile = toml::from_str(text).map_err(|e| GridError::Toml {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        Grid::from_file(file, source_name)
    }

    /// Validates a parsed grid file.
    pub fn from_file(file: GridFile, source_name: &str) -> Result<Grid, GridError> {
        let formats = |axis: &str, list: &StrList, allow_same: bool| {
            let mut out = Vec::new();
            for item in list.items() {
                if allow_same && item.trim().eq_ignore_ascii_case(SAME) {
                    out.push(SAME.to_string());
                    continue;
                }
                out.extend(
                    expand_format_item(&item).map_err(|source| GridError::Format {
                        source_name: source_name.to_string(),
                        axis: axis.to_string(),
                        source,
                    })?,
                );
            }
            if out.is_empty() {
                return Err(GridError::Axis {
                    source_name: source_name.to_string(),
                    axis: axis.to_string(),
                    message: "the list is empty".to_string(),
                });
            }
            Ok(dedup_keep_first(out))
        };
        let words = |axis: &str, list: &StrList| {
            let out: Vec<String> = list
                .items()
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect();
            if out.is_empty() || out.iter().any(|s| s.is_empty()) {
                return Err(GridError::Axis {
                    source_name: source_name.to_string(),
                    axis: axis.to_string(),
                    message: "values must be non-empty strings and the list non-empty".into(),
                });
            }
            Ok(dedup_keep_first(out))
        };
        let seeds_of = |list: &U64List| match list {
            U64List::One(s) => vec![*s],
            U64List::Many(v) => dedup_keep_first(v.clone()),
        };
        let weights = formats("weights", &file.weights, false)?;
        let acts = formats("acts", &file.acts, false)?;
        let first_last = match &file.first_last {
            None => vec![None],
            Some(l) => formats("first_last", l, true)?
                .into_iter()
                .map(Some)
                .collect(),
        };
        let passes = match &file.passes {
            None => vec![None],
            Some(lists) => {
                if lists.is_empty() {
                    return Err(GridError::Axis {
                        source_name: source_name.to_string(),
                        axis: "passes".into(),
                        message: "the list is empty (write [[]] for 'no passes')".into(),
                    });
                }
                let mut out = Vec::new();
                for list in lists {
                    let names: Vec<String> =
                        list.iter().map(|s| s.trim().to_ascii_lowercase()).collect();
                    if names.iter().any(|s| s.is_empty()) {
                        return Err(GridError::Axis {
                            source_name: source_name.to_string(),
                            axis: "passes".into(),
                            message: "pass names must be non-empty".into(),
                        });
                    }
                    out.push(Some(names));
                }
                dedup_keep_first(out)
            }
        };
        let granularity = match &file.granularity {
            None => vec![None],
            Some(l) => words("granularity", l)?.into_iter().map(Some).collect(),
        };
        let calib_method = match &file.calib_method {
            None => vec![None],
            Some(l) => words("calib_method", l)?.into_iter().map(Some).collect(),
        };
        let seeds = match &file.seeds {
            None => vec![None],
            Some(l) => {
                let v = seeds_of(l);
                if v.is_empty() {
                    return Err(GridError::Axis {
                        source_name: source_name.to_string(),
                        axis: "seeds".into(),
                        message: "the list is empty".into(),
                    });
                }
                v.into_iter().map(Some).collect()
            }
        };
        let mut exclude = Vec::new();
        for (k, rule) in file.exclude.iter().enumerate() {
            let axis = format!("exclude[{k}]");
            let set = |l: &Option<StrList>, fmt: bool, same: bool| -> Result<_, GridError> {
                Ok(match l {
                    None => None,
                    Some(l) => Some(
                        if fmt {
                            formats(&axis, l, same)?
                        } else {
                            words(&axis, l)?
                        }
                        .into_iter()
                        .collect::<BTreeSet<_>>(),
                    ),
                })
            };
            exclude.push(ExcludeRule {
                weights: set(&rule.weights, true, false)?,
                acts: set(&rule.acts, true, false)?,
                first_last: set(&rule.first_last, true, true)?,
                granularity: set(&rule.granularity, false, false)?,
                calib_method: set(&rule.calib_method, false, false)?,
                seeds: rule
                    .seeds
                    .as_ref()
                    .map(|l| seeds_of(l).into_iter().collect()),
            });
        }
        let count = [
            weights.len(),
            acts.len(),
            first_last.len(),
            passes.len(),
            granularity.len(),
            calib_method.len(),
            seeds.len(),
        ]
        .iter()
        .map(|&n| n as u128)
        .product::<u128>();
        if count > MAX_COMBINATIONS as u128 {
            return Err(GridError::TooLarge {
                source_name: source_name.to_string(),
                count,
            });
        }
        Ok(Grid {
            name: file.name.unwrap_or_default(),
            description: file.description,
            weights,
            acts,
            first_last,
            passes,
            granularity,
            calib_method,
            seeds,
            exclude,
        })
    }

    /// Number of combinations before dropping.
    pub fn combinations(&self) -> usize {
        self.weights.len()
            * self.acts.len()
            * self.first_last.len()
            * self.passes.len()
            * self.granularity.len()
            * self.calib_method.len()
            * self.seeds.len()
    }

    /// Expands the cartesian product in grid order. A combination is dropped when an
    /// `exclude` rule matches it, when `validity` (the quantizer's own check, if given) returns
    /// a reason, or when it is the same configuration as an earlier one (first/last formats equal
    /// to the body formats are the same as `first_last = "same"`).
    pub fn expand(&self, validity: Option<&Validity<'_>>) -> Plan {
        let mut plan = Plan::default();
        let mut seen: HashMap<ConfigRecipe, String> = HashMap::new();
        for w in &self.weights {
            for a in &self.acts {
                for fl in &self.first_last {
                    for p in &self.passes {
                        for g in &self.granularity {
                            for c in &self.calib_method {
                                for s in &self.seeds {
                                    let recipe = ConfigRecipe {
                                        weights: w.clone(),
                                        acts: a.clone(),
                                        first_last: fl.clone(),
                                        passes: p.clone(),
                                        granularity: g.clone(),
                                        calib_method: c.clone(),
                                        seed: *s,
                                    };
                                    self.classify(recipe, validity, &mut seen, &mut plan);
                                }
                            }
                        }
                    }
                }
            }
        }
        plan
    }

    fn classify(
        &self,
        recipe: ConfigRecipe,
        validity: Option<&Validity<'_>>,
        seen: &mut HashMap<ConfigRecipe, String>,
        plan: &mut Plan,
    ) {
        let drop = |plan: &mut Plan, recipe: ConfigRecipe, reason: String| {
            plan.dropped.push(DroppedConfig { recipe, reason });
        };
        if let Some(k) = self.exclude.iter().position(|r| r.matches(&recipe)) {
            return drop(plan, recipe, format!("excluded by grid rule exclude[{k}]"));
        }
        if let Some(check) = validity {
            if let Err(reason) = check(&recipe) {
                return drop(plan, recipe, reason);
            }
        }
        // Configurations that quantize identically share one slot.
        let mut key = recipe.clone();
        if key.first_last.as_deref() == Some(key.weights.as_str())
            && key.first_last.as_deref() == Some(key.acts.as_str())
        {
            key.first_last = Some(SAME.to_string());
        }
        if let Some(first) = seen.get(&key) {
            return drop(
                plan,
                recipe,
                format!("same configuration as {first} (first/last formats equal the body's)"),
            );
        }
        let id = recipe.id();
        seen.insert(key, id.clone());
        plan.configs.push(PlannedConfig { id, recipe });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_lists() {
        assert_eq!(
            expand_format_item("int3..int8").expect("ints"),
            ["int3", "int4", "int5", "int6", "int7", "int8"]
        );
        assert_eq!(
            expand_format_item("uint2..4").expect("uints"),
            ["uint2", "uint3", "uint4"]
        );
        assert_eq!(expand_format_item("all-exmy 3").expect("3"), ["e1m1"]);
        assert_eq!(
            expand_format_item("all-exmy 4").expect("4"),
            ["e1m2", "fp4-e2m1"]
        );
        let all = expand_format_item("all-exmy 3..8").expect("3..8");
        assert_eq!(all.len(), 21);
        assert!(all.contains(&"e4m3".to_string()) && all.contains(&"e5m2".to_string()));
        assert!(all.contains(&"fp6-e2m3".to_string()) && all.contains(&"fp6-e3m2".to_string()));
        assert!(all.contains(&"e6m1".to_string()) && all.contains(&"e1m6".to_string()));
        for bad in [
            "int3..uint8",
            "int8..int3",
            "all-exmy 2..4",
            "e4m3..e5m2",
            "nope",
        ] {
            assert!(expand_format_item(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn minimal_grid_and_order() {
        let g = Grid::from_toml_str(
            "weights = [\"int4\", \"e2m1\"]\nacts = [\"int8\", \"e4m3\"]",
            "t",
        )
        .expect("grid");
        let plan = g.expand(None);
        let got: Vec<_> = plan
            .configs
            .iter()
            .map(|c| (c.recipe.weights.as_str(), c.recipe.acts.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("int4", "int8"),
                ("int4", "e4m3"),
                ("fp4-e2m1", "int8"),
                ("fp4-e2m1", "e4m3")
            ]
        );
        assert!(plan.dropped.is_empty());
        // The id depends only on the recipe.
        assert_eq!(plan.configs[0].id, ConfigRecipe::new("int4", "int8").id());
        assert_ne!(plan.configs[0].id, plan.configs[1].id);
        assert_eq!(plan.configs[0].id.len(), 16);
    }

    #[test]
    fn w1_grid_has_729_configs() {
        let g = Grid::from_toml_str(
            "weights = [\"int3..int8\", \"all-exmy 3..8\"]\nacts = [\"int3..int8\", \"all-exmy 3..8\"]",
            "w1",
        )
        .expect("grid");
        assert_eq!(g.expand(None).configs.len(), 729);
    }

    #[test]
    fn drops_with_reasons() {
        let text = r#"
            weights = ["int8", "int4"]
            acts = ["int8"]
            first_last = ["same", "int8"]
            passes = [[], ["bias_correction"]]
            seeds = [1, 2]
            [[exclude]]
            weights = "int4"
            seeds = 2
        "#;
        let g = Grid::from_toml_str(text, "t").expect("grid");
        assert_eq!(g.combinations(), 16);
        let veto = |r: &ConfigRecipe| {
            if r.passes.as_ref().is_some_and(|p| p.is_empty()) && r.seed == Some(1) {
                Err("no passes needs no second seed".to_string())
            } else {
                Ok(())
            }
        };
        let plan = g.expand(Some(&veto));
        let reasons: Vec<&str> = plan.dropped.iter().map(|d| d.reason.as_str()).collect();
        assert!(reasons
            .iter()
            .any(|r| r.starts_with("excluded by grid rule exclude[0]")));
        assert!(reasons.iter().any(|r| r.starts_with("no passes needs")));
        assert!(reasons
            .iter()
            .any(|r| r.starts_with("same configuration as")));
        assert_eq!(plan.configs.len() + plan.dropped.len(), 16);
        // 4 excluded (int4, seed 2), 4 vetoed (no passes, seed 1), 3 duplicates (W int8 /
        // A int8 with first_last int8 among the survivors).
        assert_eq!((plan.configs.len(), plan.dropped.len()), (5, 11));
        let ids: BTreeSet<_> = plan.configs.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids.len(), plan.configs.len(), "ids are unique");
    }

    #[test]
    fn rejects_bad_grids() {
        for (text, needle) in [
            ("acts = [\"int8\"]", "weights"),
            ("weights = [\"int4\"]\nacts = [\"fp9\"]", "axis 'acts'"),
            ("weights = []\nacts = [\"int8\"]", "empty"),
            (
                "weights = [\"int4\"]\nacts = [\"int8\"]\nbogus = 1",
                "bogus",
            ),
            (
                "weights = [\"int4\"]\nacts = [\"int8\"]\npasses = []",
                "passes",
            ),
        ] {
            let e = Grid::from_toml_str(text, "g.toml")
                .expect_err(text)
                .to_string();
            assert!(e.contains(needle) && e.contains("g.toml"), "{e}");
        }
    }
}
