//! The quantization recipe: everything `mfq quantize` flags say, as one serializable struct that
//! a TOML file can hold too (per-layer overrides included). The report records the resolved
//! recipe so any run can be reproduced.

use quant_formats::Format;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::calib::{ClipMethod, ScaleRounding, WeightMethod};

/// Which elements of a weight tensor share one scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One scale per output channel (default).
    #[default]
    PerChannel,
    /// One scale for the whole tensor.
    PerTensor,
}

/// How the scales are constrained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleKind {
    /// Any float32 scale.
    #[default]
    Float,
    /// Powers of two only (rounded up so nothing extra clips): FPGA-friendly shifts.
    Pow2,
}

/// What happens to the bias of a quantized layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BiasMode {
    /// Keep the bias in float.
    #[default]
    Float,
    /// Quantize to int32 at scale s_w·s_a (the QDQ convention).
    Int32,
}

/// Export style of the quantized model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ExportStyle {
    /// QDQ when every quantizer is representable at the opset, QONNX otherwise.
    #[default]
    Auto,
    /// Standard QuantizeLinear/DequantizeLinear.
    Qdq,
    /// QONNX IntQuant/FloatQuant (`qonnx.custom_op.general`).
    Qonnx,
}

/// Selects the layers an override applies to. Exactly one field is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LayerMatch {
    /// Exact node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ONNX op type (Conv, Gemm, MatMul, ConvTranspose, Einsum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// Regular expression over the node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A per-layer override; later overrides win over earlier ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Which layers.
    #[serde(rename = "match")]
    pub selector: LayerMatch,
    /// Weight format for these layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// Input-activation format for these layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acts: Option<String>,
    /// Leave these layers in float.
    #[serde(default)]
    pub skip: bool,
}

/// The full quantization recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    /// Weight format of compute layers (canonical format string).
    pub weights: String,
    /// Input-activation format of compute layers.
    pub acts: String,
    /// Format of the first and last compute layers (weights and inputs); `None` = same as the rest.
    pub first_last: Option<String>,
    /// Weight granularity.
    pub granularity: Granularity,
    /// Activation clipping method (`minmax`, `percentile[:P]`, `mse[:NORM]`, `kl`).
    pub calib_method: String,
    /// Weight clipping method.
    pub weight_method: WeightMethod,
    /// Float or power-of-two scales.
    pub scale: ScaleKind,
    /// Bias handling.
    pub bias: BiasMode,
    /// Integer activations observed non-negative become unsigned (same bits, one more level).
    pub unsigned_acts: bool,
    /// Passes by name (`fold-batch-norm`, `equalize-channels`, `smooth-quant`,
    /// `exponent-shift`, `fp-search`, `gptq` or `learned-rounding`, `correct-bias`; `seed` expands
    /// to the seed paper's pipeline). They run in pipeline-stage order (docs/passes.md).
    pub passes: Vec<String>,
    /// Options per pass (`[pass_options.smooth-quant] alpha = 0.5`); keys are the pass names.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub pass_options: std::collections::BTreeMap<String, toml::Table>,
    /// Calibration samples (`None` = all).
    pub calib_samples: Option<usize>,
    /// Batch size for calibration and evaluation.
    pub batch_size: usize,
    /// Seed for sample selection and stochastic choices.
    pub seed: u64,
    /// Export style.
    pub export: ExportStyle,
    /// Opset of the exported default domain (`None` = the lowest that can express every quantizer,
    /// at least the model's own).
    pub opset: Option<i64>,
    /// Preprocessing of image-folder data (`[images]` table; unset keys follow the model input).
    #[serde(skip_serializing_if = "crate::data::ImageOptions::is_empty")]
    pub images: crate::data::ImageOptions,
    /// Per-layer overrides.
    #[serde(rename = "override", skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
    /// Options of the `noise-level-calibration` pass (`[noise_calibration]` table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_calibration: Option<crate::passes::noise_level::NoiseCalibOptions>,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            weights: "int8".into(),
            acts: "int8".into(),
            first_last: None,
            granularity: Granularity::PerChannel,
            calib_method: "percentile".into(),
            weight_method: WeightMethod::AbsMax,
            scale: ScaleKind::Float,
            bias: BiasMode::Float,
            unsigned_acts: true,
            passes: vec!["fold-batch-norm".into()],
            pass_options: Default::default(),
            calib_samples: None,
            batch_size: 64,
            seed: 0,
            export: ExportStyle::Auto,
            opset: None,
            images: crate::data::ImageOptions::default(),
            overrides: Vec::new(),
            noise_calibration: None,
        }
    }
}

/// A recipe option that does not parse or does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("option {option}: {reason}")]
    Invalid { option: String, reason: String },
    #[error("recipe file {path}: {reason}")]
    File { path: String, reason: String },
}

fn parse_format(option: &str, s: &str) -> Result<Format, RecipeError> {
    s.parse::<Format>().map_err(|e| RecipeError::Invalid {
        option: option.to_string(),
        reason: format!("'{s}': {e}"),
    })
}

/// A layer matcher compiled once.
#[derive(Debug, Clone)]
pub enum Matcher {
    Name(String),
    Op(String),
    Regex(Regex),
}

impl Matcher {
    /// True when the layer `name` of type `op` is selected.
    pub fn matches(&self, name: &str, op: &str) -> bool {
        match self {
            Matcher::Name(n) => n == name,
            Matcher::Op(o) => o == op,
            Matcher::Regex(r) => r.is_match(name),
        }
    }
}

/// A compiled override.
#[derive(Debug, Clone)]
pub struct ResolvedOverride {
    pub matcher: Matcher,
    pub weights: Option<Format>,
    pub acts: Option<Format>,
    pub skip: bool,
}

/// The recipe with every string option parsed and checked.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub weights: Format,
    pub acts: Format,
    pub first_last: Option<Format>,
    pub clip: ClipMethod,
    pub scale_rounding: ScaleRounding,
    pub overrides: Vec<ResolvedOverride>,
}

impl Recipe {
    /// Reads a TOML recipe file.
    pub fn from_toml_file(path: &std::path::Path) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|e| RecipeError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| RecipeError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The pass names with `seed` expanded, in list order.
    pub fn pass_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.passes {
            if p == "seed" {
                out.extend(crate::passes::SEED_PIPELINE.iter().map(|s| s.to_string()));
            } else {
                out.push(p.clone());
            }
        }
        out
    }

    /// The passes with their options, checked and sorted by pipeline stage. Errors name the
    /// unknown pass, the bad option, options given for a pass that is not listed, or the
    /// conflicting pair (gptq with learned-rounding).
    pub fn resolve_passes(&self) -> Result<Vec<crate::passes::Pass>, RecipeError> {
        let names = self.pass_names();
        for k in self.pass_options.keys() {
            if !names.iter().any(|n| n == k) {
                return Err(RecipeError::Invalid {
                    option: format!("pass_options.{k}"),
                    reason: format!(
                        "options given for pass '{k}', which is not in passes [{}]",
                        names.join(", ")
                    ),
                });
            }
        }
        let mut passes = Vec::new();
        for n in &names {
            let p =
                crate::passes::Pass::with_options(n, self.pass_options.get(n)).map_err(|e| {
                    RecipeError::Invalid {
                        option: if self.pass_options.contains_key(n) {
                            format!("pass_options.{n}")
                        } else {
                            "passes".into()
                        },
                        reason: e.to_string(),
                    }
                })?;
            passes.push(p);
        }
        crate::passes::check_pipeline(&passes).map_err(|e| RecipeError::Invalid {
            option: "passes".into(),
            reason: e.to_string(),
        })
    }

    /// Parses and checks every option; the error names the option at fault.
    pub fn resolve(&self) -> Result<Resolved, RecipeError> {
        self.resolve_passes()?;
        let weights = parse_format("weights", &self.weights)?;
        let acts = parse_format("acts", &self.acts)?;
        let first_last = self
            .first_last
            .as_deref()
            .map(|s| parse_format("first_last", s))
            .transpose()?;
        let clip: ClipMethod =
            self.calib_method
                .parse()
                .map_err(|e: crate::calib::CalibError| RecipeError::Invalid {
                    option: "calib_method".into(),
                    reason: e.to_string(),
                })?;
        if self.batch_size == 0 {
            return Err(RecipeError::Invalid {
                option: "batch_size".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.calib_samples == Some(0) {
            return Err(RecipeError::Invalid {
                option: "calib_samples".into(),
                reason: "an empty calibration set cannot choose any scale".into(),
            });
        }
        let mut overrides = Vec::new();
        for (i, o) in self.overrides.iter().enumerate() {
            let what = format!("override[{i}]");
            let sel = &o.selector;
            let set = [sel.name.is_some(), sel.op.is_some(), sel.regex.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if set != 1 {
                return Err(RecipeError::Invalid {
                    option: format!("{what}.match"),
                    reason: "give exactly one of name, op or regex".into(),
                });
            }
            let matcher = if let Some(n) = &sel.name {
                Matcher::Name(n.clone())
            } else if let Some(op) = &sel.op {
                Matcher::Op(op.clone())
            } else {
                let r = sel.regex.as_deref().unwrap_or_default();
                Matcher::Regex(Regex::new(r).map_err(|e| RecipeError::Invalid {
                    option: format!("{what}.match.regex"),
                    reason: e.to_string(),
                })?)
            };
            overrides.push(ResolvedOverride {
                matcher,
                weights: o
                    .weights
                    .as_deref()
                    .map(|s| parse_format(&format!("{what}.weights"), s))
                    .transpose()?,
                acts: o
                    .acts
                    .as_deref()
                    .map(|s| parse_format(&format!("{what}.acts"), s))
                    .transpose()?,
                skip: o.skip,
            });
        }
        Ok(Resolved {
            weights,
            acts,
            first_last,
            clip,
            scale_rounding: match self.scale {
                ScaleKind::Float => ScaleRounding::Float,
                ScaleKind::Pow2 => ScaleRounding::Pow2Up,
            },
            overrides,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::MseOptions;

    #[test]
    fn weight_method_table_takes_defaults_and_rejects_unknown_keys() {
        let r: Recipe = toml::from_str("[weight_method]\nmethod = \"mse\"\n").expect("parse");
        assert_eq!(r.weight_method, WeightMethod::Mse(MseOptions::default()));
        let r: Recipe =
            toml::from_str("[weight_method]\nmethod = \"mse\"\nnorm = 2.4\n").expect("parse");
        assert_eq!(
            r.weight_method,
            WeightMethod::Mse(MseOptions {
                norm: 2.4,
                ..MseOptions::default()
            })
        );
        let r: Recipe = toml::from_str("[weight_method]\nmethod = \"abs-max\"\n").expect("parse");
        assert_eq!(r.weight_method, WeightMethod::AbsMax);
        let e = toml::from_str::<Recipe>("[weight_method]\nmethod = \"mse\"\nnrom = 2\n")
            .expect_err("misspelt key");
        assert!(e.to_string().contains("nrom"), "{e}");
    }
}
