//! Post-training quantization passes (the techniques studied by the seed papers): each one is a
//! pure numeric core over `ndarray` plus a graph-level function on [`crate::ir::Model`] that takes
//! the statistics it needs (activation ranges, captured layer inputs, Hessians, output means) as
//! arguments, so the passes never run the model themselves.
//!
//! Implemented: [`gptq`] (`gptq`), [`equalize`] (`equalize-channels`), [`smooth`]
//! (`smooth-quant`), [`bias`] (`correct-bias`), [`adaround`] (`learned-rounding`),
//! [`exponent_shift`] (`exponent-shift`), [`fp_search`] (`fp-search`, numeric core: the caller
//! applies the chosen formats and scales to the layer's quantizers), [`noise_level`]
//! (`noise-level-calibration`: builds a diffusion denoiser's calibration set with its sampler).
//! The registry [`Pass`] parses every pass name of the pipeline, including the ones not
//! implemented here; asking for those yields [`PassError::NotImplemented`].

pub mod adaround;
pub mod bias;
pub mod driver;
pub mod equalize;
pub mod exponent_shift;
pub mod fp_search;
pub mod gptq;
pub mod layer;
pub mod noise_level;
pub mod smooth;

use serde::{Deserialize, Serialize};

/// Errors of the passes; each names the node, tensor or option at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PassError {
    /// The pass name is known but this build does not implement it.
    #[error("pass '{0}' is not implemented yet")]
    NotImplemented(String),
    /// The pass name is unknown.
    #[error("unknown pass '{name}' (known passes: {known})")]
    Unknown { name: String, known: String },
    /// An option value is out of range.
    #[error("pass '{pass}': invalid option {option}: {reason}")]
    InvalidOption {
        pass: String,
        option: String,
        reason: String,
    },
    /// Inputs of a numeric core have inconsistent shapes.
    #[error("pass '{pass}': shape mismatch for {what}: {detail}")]
    Shape {
        pass: String,
        what: String,
        detail: String,
    },
    /// A node cannot be handled (unsupported attribute, non-constant weight, ...).
    #[error("pass '{pass}': node {node}: {reason}")]
    Node {
        pass: String,
        node: String,
        reason: String,
    },
    /// A numerical failure (e.g. Hessian not positive definite even after extra damping).
    #[error("pass '{pass}': {what}: {reason}")]
    Numeric {
        pass: String,
        what: String,
        reason: String,
    },
}

fn default_iterations() -> usize {
    20
}
fn default_true() -> bool {
    true
}
fn default_alpha() -> f32 {
    0.5
}
fn default_damp() -> f64 {
    0.01
}
fn default_block() -> usize {
    128
}
fn default_holdout() -> f64 {
    0.25
}
fn default_ada_iters() -> usize {
    1000
}
fn default_ada_lr() -> f32 {
    0.1
}
fn default_ada_lambda() -> f32 {
    10.0
}
fn default_warmup() -> f32 {
    0.2
}

/// Options of `equalize-channels`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EqualizeOptions {
    /// Sweeps over all pairs (default 20).
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    /// Bias absorption (Nagel 2019 §4.2). Not implemented: `true` is rejected.
    #[serde(default)]
    pub bias_absorption: bool,
}

impl Default for EqualizeOptions {
    fn default() -> Self {
        EqualizeOptions {
            iterations: default_iterations(),
            bias_absorption: false,
        }
    }
}

/// Options of `smooth-quant`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SmoothOptions {
    /// Migration strength α in [0, 1] (default 0.5).
    #[serde(default = "default_alpha")]
    pub alpha: f32,
}

impl Default for SmoothOptions {
    fn default() -> Self {
        SmoothOptions {
            alpha: default_alpha(),
        }
    }
}

/// Options of `gptq`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GptqOptions {
    /// Damping as a fraction of the mean Hessian diagonal (default 0.01).
    #[serde(default = "default_damp")]
    pub damp: f64,
    /// Columns per lazy-update block (default 128).
    #[serde(default = "default_block")]
    pub block: usize,
    /// Quantize columns in order of decreasing Hessian diagonal.
    #[serde(default)]
    pub act_order: bool,
    /// Fraction of the calibration samples held out to check each layer (default 0.25): GPTQ is
    /// fitted on the rest and kept (re-fitted on all samples) only where its reconstruction
    /// error on the held-out samples is below round-to-nearest's; otherwise the layer is
    /// rounded to nearest. 0 turns the check off.
    #[serde(default = "default_holdout")]
    pub holdout: f64,
}

impl Default for GptqOptions {
    fn default() -> Self {
        GptqOptions {
            damp: default_damp(),
            block: default_block(),
            act_order: false,
            holdout: default_holdout(),
        }
    }
}

/// Options of `correct-bias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BiasCorrectionOptions {
    /// Calibration samples used for the output means (default: all). The quantized network runs
    /// once per corrected layer, so this bounds the pass's cost on deep models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    /// Match the means of the layer output itself even when a Relu/Clip is its only reader
    /// (the textbook rule). By default such a layer's bias is chosen so that the mean *after*
    /// the Relu/Clip matches the float network: with coarse formats (e.g. e4m3 activations)
    /// the clamp rectifies the quantization noise, and matching the pre-activation mean then
    /// leaves, or adds, a bias after it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_activation: bool,
}

fn default_fp_samples() -> usize {
    32
}
fn default_fp_rows() -> usize {
    512
}
fn default_rounds() -> usize {
    3
}
fn default_shift_rows() -> usize {
    4096
}

/// Options of `fp-search` (LLM-FP4 format and exponent-bias search; integer clip-ratio search).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FpSearchOptions {
    /// Calibration samples whose float layer inputs drive the search (default 32).
    #[serde(default = "default_fp_samples")]
    pub samples: usize,
    /// Input rows per layer kept for the search (evenly strided subsample; default 512).
    #[serde(default = "default_fp_rows")]
    pub rows: usize,
    /// Alternating rounds of (weight format + biases, activation format + bias) (default 3).
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    /// Also search the ExMy split (minifloats); `false` keeps the recipe's split and searches
    /// biases only.
    #[serde(default = "default_true")]
    pub formats: bool,
}

impl Default for FpSearchOptions {
    fn default() -> Self {
        FpSearchOptions {
            samples: default_fp_samples(),
            rows: default_fp_rows(),
            rounds: default_rounds(),
            formats: true,
        }
    }
}

/// Options of `exponent-shift` (LLM-FP4 pre-shifted exponent bias).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExponentShiftOptions {
    /// Calibration samples used for the ρ search (default 32).
    #[serde(default = "default_fp_samples")]
    pub samples: usize,
    /// Activation rows (one row = all channels at one position) kept per tensor (default 4096).
    #[serde(default = "default_shift_rows")]
    pub rows: usize,
}

impl Default for ExponentShiftOptions {
    fn default() -> Self {
        ExponentShiftOptions {
            samples: default_fp_samples(),
            rows: default_shift_rows(),
        }
    }
}

/// Options of `learned-rounding` (AdaRound).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdaRoundOptions {
    /// Adam steps per layer (default 1000).
    #[serde(default = "default_ada_iters")]
    pub iterations: usize,
    /// Adam learning rate (default 0.1, the seed paper's benchmark setting).
    #[serde(default = "default_ada_lr")]
    pub lr: f32,
    /// Weight λ of the rounding regulariser (default 10). The loss is normalised
    /// (`rec/R₀ + λ·mean(1 − |2h − 1|^β)`, `R₀` the round-to-nearest reconstruction loss, see
    /// [`adaround`]), so λ means the same on every layer; it is not the AdaRound paper's λ
    /// (0.01 on an unnormalised sum).
    #[serde(default = "default_ada_lambda")]
    pub lambda: f32,
    /// Fraction of iterations without the regulariser (default 0.2).
    #[serde(default = "default_warmup")]
    pub warmup: f32,
    /// Seed for the row subsampling of large calibration sets.
    #[serde(default)]
    pub seed: u64,
    /// Show a progress bar.
    #[serde(default = "default_true")]
    pub progress: bool,
}

impl Default for AdaRoundOptions {
    fn default() -> Self {
        AdaRoundOptions {
            iterations: default_ada_iters(),
            lr: default_ada_lr(),
            lambda: default_ada_lambda(),
            warmup: default_warmup(),
            seed: 0,
            progress: true,
        }
    }
}

/// A pass of the quantization pipeline with its options, as named on the CLI (`--passes a,b`)
/// and in the TOML recipe (`[[passes]] name = "gptq"  act-order = true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Pass {
    /// Fold BatchNormalization into the preceding Conv/Gemm (lives with the importer).
    FoldBatchNorm,
    /// Cross-layer equalization.
    EqualizeChannels(EqualizeOptions),
    /// SmoothQuant activation-to-weight range migration.
    SmoothQuant(SmoothOptions),
    /// Empirical bias correction.
    CorrectBias(BiasCorrectionOptions),
    /// LLM-FP4 per-layer format and exponent-bias search.
    FpSearch(FpSearchOptions),
    /// LLM-FP4 pre-shifted exponent bias.
    ExponentShift(ExponentShiftOptions),
    /// GPTQ weight rounding.
    Gptq(GptqOptions),
    /// AdaRound learned rounding.
    LearnedRounding(AdaRoundOptions),
    /// PTQ4DM noise-level-aware calibration set for diffusion denoisers.
    NoiseLevelCalibration,
}

/// Every pass name, in the default pipeline order of the seed paper where it applies.
pub const PASS_NAMES: [&str; 9] = [
    "fold-batch-norm",
    "equalize-channels",
    "smooth-quant",
    "noise-level-calibration",
    "fp-search",
    "exponent-shift",
    "gptq",
    "learned-rounding",
    "correct-bias",
];

impl Pass {
    /// The pass name as written on the CLI.
    pub fn name(&self) -> &'static str {
        match self {
            Pass::FoldBatchNorm => "fold-batch-norm",
            Pass::EqualizeChannels(_) => "equalize-channels",
            Pass::SmoothQuant(_) => "smooth-quant",
            Pass::CorrectBias(_) => "correct-bias",
            Pass::FpSearch(_) => "fp-search",
            Pass::ExponentShift(_) => "exponent-shift",
            Pass::Gptq(_) => "gptq",
            Pass::LearnedRounding(_) => "learned-rounding",
            Pass::NoiseLevelCalibration => "noise-level-calibration",
        }
    }

    /// True when this module implements the pass (the others are parsed so recipes can name
    /// them, but [`Pass::check_implemented`] rejects them).
    pub fn is_implemented(&self) -> bool {
        matches!(
            self,
            Pass::EqualizeChannels(_)
                | Pass::SmoothQuant(_)
                | Pass::CorrectBias(_)
                | Pass::Gptq(_)
                | Pass::LearnedRounding(_)
                | Pass::ExponentShift(_)
                | Pass::FpSearch(_)
                | Pass::FoldBatchNorm
                | Pass::NoiseLevelCalibration
        )
    }

    /// Ok for implemented passes, [`PassError::NotImplemented`] otherwise.
    pub fn check_implemented(&self) -> Result<(), PassError> {
        if self.is_implemented() {
            Ok(())
        } else {
            Err(PassError::NotImplemented(self.name().to_string()))
        }
    }

    /// Validates the options.
    pub fn validate(&self) -> Result<(), PassError> {
        let bad = |option: &str, reason: &str| {
            Err(PassError::InvalidOption {
                pass: self.name().into(),
                option: option.into(),
                reason: reason.into(),
            })
        };
        match self {
            Pass::EqualizeChannels(o) => {
                if o.iterations == 0 {
                    return bad("iterations", "must be at least 1");
                }
                if o.bias_absorption {
                    return Err(PassError::NotImplemented(
                        "equalize-channels bias-absorption".into(),
                    ));
                }
            }
            Pass::SmoothQuant(o) if !(0.0..=1.0).contains(&o.alpha) => {
                return bad("alpha", "must be in [0, 1]");
            }
            Pass::Gptq(o) => {
                if !(o.damp.is_finite() && o.damp > 0.0) {
                    return bad("damp", "must be a positive number");
                }
                if o.block == 0 {
                    return bad("block", "must be at least 1");
                }
                if !(0.0..1.0).contains(&o.holdout) {
                    return bad("holdout", "must be a fraction in [0, 1)");
                }
            }
            Pass::FpSearch(o) => {
                if o.samples == 0 {
                    return bad("samples", "must be at least 1");
                }
                if o.rows == 0 {
                    return bad("rows", "must be at least 1");
                }
                if o.rounds == 0 {
                    return bad("rounds", "must be at least 1");
                }
            }
            Pass::ExponentShift(o) => {
                if o.samples == 0 {
                    return bad("samples", "must be at least 1");
                }
                if o.rows == 0 {
                    return bad("rows", "must be at least 1");
                }
            }
            Pass::CorrectBias(o) if o.samples == Some(0) => {
                return bad("samples", "must be at least 1");
            }
            Pass::LearnedRounding(o) => {
                if o.iterations == 0 {
                    return bad("iterations", "must be at least 1");
                }
                if !(o.lr.is_finite() && o.lr > 0.0) {
                    return bad("lr", "must be a positive number");
                }
                if !(o.lambda.is_finite() && o.lambda >= 0.0) {
                    return bad("lambda", "must be a non-negative number");
                }
                if !(0.0..1.0).contains(&o.warmup) {
                    return bad("warmup", "must be in [0, 1)");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Where a pass runs in the quantize pipeline; passes run in stage order whatever the order of
/// the list (within a stage, in list order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Builds the calibration set (before anything runs).
    CalibrationData,
    /// Data-free, function-preserving graph rewrites (fold-batch-norm, equalize-channels).
    Prepare,
    /// Function-preserving rewrites driven by calibration statistics (smooth-quant,
    /// exponent-shift).
    DataPrepare,
    /// Per-layer format and scale choice after calibration (fp-search).
    Search,
    /// Weight rounding (gptq or learned-rounding).
    Rounding,
    /// Bias correction, last.
    Correction,
}

impl Pass {
    /// Builds a pass from its name and an optional option table (TOML keys as in the recipe's
    /// `[pass_options.NAME]`); unknown names and options are errors naming them.
    pub fn with_options(name: &str, options: Option<&toml::Table>) -> Result<Pass, PassError> {
        let base: Pass = name.parse()?;
        let Some(t) = options.filter(|t| !t.is_empty()) else {
            return Ok(base);
        };
        let mut t = t.clone();
        t.insert("name".into(), toml::Value::String(base.name().into()));
        toml::Value::Table(t)
            .try_into::<Pass>()
            .map_err(|e| PassError::InvalidOption {
                pass: base.name().into(),
                option: "options".into(),
                reason: e.to_string(),
            })
    }

    /// The pipeline stage of this pass.
    pub fn stage(&self) -> Stage {
        match self {
            Pass::NoiseLevelCalibration => Stage::CalibrationData,
            Pass::FoldBatchNorm | Pass::EqualizeChannels(_) => Stage::Prepare,
            Pass::SmoothQuant(_) | Pass::ExponentShift(_) => Stage::DataPrepare,
            Pass::FpSearch(_) => Stage::Search,
            Pass::Gptq(_) | Pass::LearnedRounding(_) => Stage::Rounding,
            Pass::CorrectBias(_) => Stage::Correction,
        }
    }

    /// The options as JSON (for reports): the serialized pass without its name.
    pub fn options_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.remove("name");
        }
        v
    }
}

/// The seed paper's default pipeline (`--passes seed`).
pub const SEED_PIPELINE: [&str; 5] = [
    "fold-batch-norm",
    "equalize-channels",
    "smooth-quant",
    "gptq",
    "correct-bias",
];

/// Checks a resolved pass list: every pass implemented and valid, no pass twice, not both
/// `gptq` and `learned-rounding`; returns the passes sorted by stage (stable).
pub fn check_pipeline(passes: &[Pass]) -> Result<Vec<Pass>, PassError> {
    let mut seen = std::collections::BTreeSet::new();
    for p in passes {
        p.check_implemented()?;
        p.validate()?;
        if !seen.insert(p.name()) {
            return Err(PassError::InvalidOption {
                pass: p.name().into(),
                option: "passes".into(),
                reason: "listed twice".into(),
            });
        }
    }
    if seen.contains("gptq") && seen.contains("learned-rounding") {
        return Err(PassError::InvalidOption {
            pass: "gptq".into(),
            option: "passes".into(),
            reason: "gptq and learned-rounding both choose the weight rounding; use one of them"
                .into(),
        });
    }
    let mut v = passes.to_vec();
    v.sort_by_key(|p| p.stage());
    Ok(v)
}

impl std::str::FromStr for Pass {
    type Err = PassError;

    /// Parses a bare pass name (default options).
    fn from_str(s: &str) -> Result<Pass, PassError> {
        Ok(match s.trim() {
            "fold-batch-norm" => Pass::FoldBatchNorm,
            "equalize-channels" => Pass::EqualizeChannels(EqualizeOptions::default()),
            "smooth-quant" => Pass::SmoothQuant(SmoothOptions::default()),
            "correct-bias" => Pass::CorrectBias(BiasCorrectionOptions::default()),
            "fp-search" => Pass::FpSearch(FpSearchOptions::default()),
            "exponent-shift" => Pass::ExponentShift(ExponentShiftOptions::default()),
            "gptq" => Pass::Gptq(GptqOptions::default()),
            "learned-rounding" => Pass::LearnedRounding(AdaRoundOptions::default()),
            "noise-level-calibration" => Pass::NoiseLevelCalibration,
            other => {
                return Err(PassError::Unknown {
                    name: other.to_string(),
                    known: PASS_NAMES.join(", "),
                })
            }
        })
    }
}

/// Parses a comma-separated CLI list (`--passes equalize-channels,gptq`) into passes with
/// default options.
pub fn parse_pass_list(s: &str) -> Result<Vec<Pass>, PassError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_names_and_rejects_unknown() {
        for n in PASS_NAMES {
            let p: Pass = n.parse().expect("known name");
            assert_eq!(p.name(), n);
        }
        let e = "gptqq".parse::<Pass>().expect_err("unknown");
        assert!(e.to_string().contains("gptqq"));
        let l = parse_pass_list("equalize-channels, gptq").expect("list");
        assert_eq!(l.len(), 2);
        assert!(Pass::NoiseLevelCalibration.check_implemented().is_ok());
        assert!(Pass::Gptq(GptqOptions::default())
            .check_implemented()
            .is_ok());
    }

    #[test]
    fn options_tables_and_pipeline_checks() {
        let mut t = toml::Table::new();
        t.insert("alpha".into(), toml::Value::Float(0.75));
        let p = Pass::with_options("smooth-quant", Some(&t)).expect("alpha");
        assert_eq!(p, Pass::SmoothQuant(SmoothOptions { alpha: 0.75 }));
        assert_eq!(p.options_json()["alpha"], serde_json::json!(0.75));
        let mut bad = toml::Table::new();
        bad.insert("alpah".into(), toml::Value::Float(0.75));
        let e = Pass::with_options("smooth-quant", Some(&bad)).expect_err("typo");
        assert!(e.to_string().contains("alpah"), "{e}");
        let both = parse_pass_list("gptq,learned-rounding").expect("names");
        let e = check_pipeline(&both).expect_err("both rounding passes");
        assert!(e.to_string().contains("learned-rounding"), "{e}");
        let order = check_pipeline(
            &parse_pass_list("correct-bias,gptq,smooth-quant,fold-batch-norm").expect("names"),
        )
        .expect("valid");
        let names: Vec<_> = order.iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            ["fold-batch-norm", "smooth-quant", "gptq", "correct-bias"]
        );
        let mut a = toml::Table::new();
        a.insert("alpha".into(), toml::Value::Float(1.5));
        let p = Pass::with_options("smooth-quant", Some(&a)).expect("parses");
        assert!(check_pipeline(&[p])
            .expect_err("range")
            .to_string()
            .contains("alpha"));
        for bad in [1.0, -0.1, f64::NAN] {
            let mut a = toml::Table::new();
            a.insert("holdout".into(), toml::Value::Float(bad));
            let p = Pass::with_options("gptq", Some(&a)).expect("parses");
            assert!(check_pipeline(&[p])
                .expect_err("range")
                .to_string()
                .contains("holdout"));
        }
    }

    #[test]
    fn toml_options_round_trip() {
        #[derive(Deserialize, Serialize)]
        struct R {
            passes: Vec<Pass>,
        }
        let r: R = toml::from_str(
            "[[passes]]\nname = \"gptq\"\nact-order = true\n\n[[passes]]\nname = \"equalize-channels\"\n\n[[passes]]\nname = \"fp-search\"\n",
        )
        .expect("toml");
        assert_eq!(
            r.passes[0],
            Pass::Gptq(GptqOptions {
                act_order: true,
                ..GptqOptions::default()
            })
        );
        assert_eq!(
            r.passes[1],
            Pass::EqualizeChannels(EqualizeOptions::default())
        );
        assert_eq!(r.passes[2], Pass::FpSearch(FpSearchOptions::default()));
        let s = toml::to_string(&r).expect("serialize");
        let back: R = toml::from_str(&s).expect("reparse");
        assert_eq!(back.passes, r.passes);
        assert!(toml::from_str::<R>("[[passes]]\nname = \"gptq\"\nbogus = 1\n").is_err());
    }
}
