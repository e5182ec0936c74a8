//! `noise-level-calibration`: builds the calibration set of a diffusion denoiser the way PTQ4DM
//! (Shang et al., CVPR 2023) prescribes. The activation ranges of a denoiser change with the noise
//! level, so the calibration inputs are the `(noisy, sigma, conditioning)` tuples the float
//! model's own sampler visits, at noise levels drawn from a configurable distribution.
//!
//! The sampler is the multistep consistency sampler of consistency models (Song et al. 2023) as
//! the W5 terrain package uses it: start from pure noise `x = N(0, 1)·σ_max`, denoise with the
//! float model, re-noise the estimate to the next smaller noise level of a schedule as
//! `x = x̂₀ + sqrt(σ² − σ_min²)·N(0, 1)`, denoise again, and so on. Noise levels live on the
//! package's *strength* axis `s ∈ [0, 1]`, `σ(s) = σ_min·(σ_max/σ_min)^s` (s = 1 is pure noise).
//! A calibration sample at level `σ` runs the sampler down the schedule while the schedule's
//! levels are above `σ`, then re-noises the last estimate to `σ` exactly: the state a sampler
//! whose schedule contained `σ` would visit.
//!
//! Level distributions ([`LevelDistribution`]):
//! - `ptq4dm`: PTQ4DM's normal on the time-step axis, mean 0.4 and standard deviation 0.4 of the
//!   range (the reference code's setting; the paper asks for a mean at most half the range),
//!   truncated to the range by redrawing. It is skewed toward the low-noise end.
//! - `uniform`: `s` uniform in `[0, 1]` (log-uniform σ).
//! - `start`: only `σ_max`, the state the one-step sampler feeds the model (the plain choice).
//! - `schedule`: the schedule's levels in turn (sample `i` at level `i mod steps`), for
//!   evaluation grids over noise levels.
//!
//! Everything is deterministic for a seed: sample `i` draws its conditioning, level and noise
//! from its own SplitMix64 stream, and batches are formed in sample order, so the set does not
//! depend on the batch size's interaction with threads. This pass runs the model (through a
//! closure in [`run_sampler`], or the interpreter in [`build_calibration_set`]); unlike the other
//! passes its product is data, not a graph change.

use ndarray::{ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

use crate::data::{DType, Dataset, Dim, InputSpec};
use crate::interp::Interpreter;
use crate::ir::Model;
use crate::tensor::Tensor;

/// Errors of the noise-level calibration; each names the option or input at fault.
#[derive(Debug, thiserror::Error)]
pub enum NoiseLevelError {
    /// An option is out of range or inconsistent.
    #[error("noise-level-calibration: option {option}: {reason}")]
    Option { option: String, reason: String },
    /// The model's inputs do not match the options.
    #[error("noise-level-calibration: model input '{input}': {reason}")]
    Input { input: String, reason: String },
    /// Running the float model failed.
    #[error("noise-level-calibration: running the float model at sigma {sigma}: {reason}")]
    Model { sigma: f64, reason: String },
    /// The assembled data set was rejected.
    #[error("noise-level-calibration: {0}")]
    Data(#[from] crate::data::DataError),
}

fn opt_err(option: &str, reason: impl Into<String>) -> NoiseLevelError {
    NoiseLevelError::Option {
        option: option.into(),
        reason: reason.into(),
    }
}

/// How noise levels are drawn on the strength axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LevelDistribution {
    /// PTQ4DM's normal (mean and std as fractions of the range), truncated to `[0, 1]`.
    #[default]
    Ptq4dm,
    /// Uniform strength in `[0, 1]`.
    Uniform,
    /// Only the sampler's start level `σ_max`.
    Start,
    /// The schedule's levels in turn.
    Schedule,
}

impl std::str::FromStr for LevelDistribution {
    type Err = NoiseLevelError;
    fn from_str(s: &str) -> Result<Self, NoiseLevelError> {
        match s {
            "ptq4dm" => Ok(Self::Ptq4dm),
            "uniform" => Ok(Self::Uniform),
            "start" => Ok(Self::Start),
            "schedule" => Ok(Self::Schedule),
            other => Err(opt_err(
                "distribution",
                format!("'{other}' (expected ptq4dm, uniform, start or schedule)"),
            )),
        }
    }
}

impl std::fmt::Display for LevelDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ptq4dm => "ptq4dm",
            Self::Uniform => "uniform",
            Self::Start => "start",
            Self::Schedule => "schedule",
        })
    }
}

/// A conditioning input: sampled uniformly in `range`, or cycled through `values`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditioning {
    /// Model input name.
    pub input: String,
    /// Uniform sampling range `[lo, hi]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f64; 2]>,
    /// Given values, used in turn (with `schedule`, each value for a whole sweep of levels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f64>>,
}

fn default_noisy() -> String {
    "noisy".into()
}
fn default_sigma() -> String {
    "sigma".into()
}
fn default_sigma_min() -> f64 {
    0.002
}
fn default_sigma_max() -> f64 {
    80.0
}
fn default_steps() -> usize {
    4
}
fn default_samples() -> usize {
    32
}
fn default_frac() -> f64 {
    0.4
}

/// Options of `noise-level-calibration` (the recipe's `[noise_calibration]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseCalibOptions {
    /// The input holding the noisy sample (default `noisy`).
    #[serde(default = "default_noisy")]
    pub noisy_input: String,
    /// The input holding the noise level σ, one value per sample (default `sigma`).
    #[serde(default = "default_sigma")]
    pub sigma_input: String,
    /// Smallest noise level (default 0.002).
    #[serde(default = "default_sigma_min")]
    pub sigma_min: f64,
    /// Largest noise level, where the sampler starts (default 80).
    #[serde(default = "default_sigma_max")]
    pub sigma_max: f64,
    /// Sampler steps when `schedule` is not given: `σ(1 − k/steps)`, k = 0..steps (default 4).
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// Explicit sampler schedule (strictly decreasing, starting at `sigma_max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Vec<f64>>,
    /// Noise-level distribution (default `ptq4dm`).
    #[serde(default)]
    pub distribution: LevelDistribution,
    /// Mean of the `ptq4dm` normal as a fraction of the strength range (default 0.4).
    #[serde(default = "default_frac")]
    pub ptq4dm_mean: f64,
    /// Standard deviation of the `ptq4dm` normal as a fraction of the range (default 0.4).
    #[serde(default = "default_frac")]
    pub ptq4dm_std: f64,
    /// Number of calibration samples (default 32).
    #[serde(default = "default_samples")]
    pub samples: usize,
    /// Seed of levels, conditioning and noise (default 0).
    #[serde(default)]
    pub seed: u64,
    /// Conditioning inputs; every other model input must be listed here.
    #[serde(default)]
    pub cond: Vec<Conditioning>,
}

impl Default for NoiseCalibOptions {
    fn default() -> Self {
        NoiseCalibOptions {
            noisy_input: default_noisy(),
            sigma_input: default_sigma(),
            sigma_min: default_sigma_min(),
            sigma_max: default_sigma_max(),
            steps: default_steps(),
            schedule: None,
            distribution: LevelDistribution::default(),
            ptq4dm_mean: default_frac(),
            ptq4dm_std: default_frac(),
            samples: default_samples(),
            seed: 0,
            cond: Vec::new(),
        }
    }
}

impl NoiseCalibOptions {
    /// Noise level at strength `s`: `σ_min·(σ_max/σ_min)^s`.
    pub fn sigma_at(&self, s: f64) -> f64 {
        self.sigma_min * (self.sigma_max / self.sigma_min).powf(s)
    }

    /// Strength of noise level `sigma` (inverse of [`NoiseCalibOptions::sigma_at`]).
    pub fn strength_of(&self, sigma: f64) -> f64 {
        (sigma / self.sigma_min).ln() / (self.sigma_max / self.sigma_min).ln()
    }

    /// Checks ranges and consistency of the options.
    pub fn validate(&self) -> Result<(), NoiseLevelError> {
        if !(self.sigma_min.is_finite() && self.sigma_min > 0.0) {
            return Err(opt_err("sigma_min", "must be a positive number"));
        }
        if !(self.sigma_max.is_finite() && self.sigma_max > self.sigma_min) {
            return Err(opt_err("sigma_max", "must be a number above sigma_min"));
        }
        if self.samples == 0 {
            return Err(opt_err("samples", "must be at least 1"));
        }
        if self.schedule.is_none() && self.steps == 0 {
            return Err(opt_err("steps", "must be at least 1"));
        }
        if !(self.ptq4dm_mean.is_finite() && (0.0..=1.0).contains(&self.ptq4dm_mean)) {
            return Err(opt_err("ptq4dm_mean", "must be in [0, 1]"));
        }
        if !(self.ptq4dm_std.is_finite() && self.ptq4dm_std > 0.0) {
            return Err(opt_err("ptq4dm_std", "must be a positive number"));
        }
        if self.noisy_input == self.sigma_input {
            return Err(opt_err(
                "sigma_input",
                "must differ from noisy_input (one input holds the sample, one the noise level)",
            ));
        }
        for c in &self.cond {
            let what = format!("cond '{}'", c.input);
            match (&c.range, &c.values) {
                (Some([lo, hi]), None) => {
                    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                        return Err(opt_err(&what, "range must be [lo, hi] with lo <= hi"));
                    }
                }
                (None, Some(v)) => {
                    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
                        return Err(opt_err(&what, "values must be finite and non-empty"));
                    }
                }
                _ => return Err(opt_err(&what, "give exactly one of range or values")),
            }
            if c.input == self.noisy_input || c.input == self.sigma_input {
                return Err(opt_err(&what, "is also the noisy or sigma input"));
            }
        }
        self.schedule_sigmas().map(|_| ())
    }

    /// The sampler's schedule of noise levels, strictly decreasing from `σ_max`.
    pub fn schedule_sigmas(&self) -> Result<Vec<f64>, NoiseLevelError> {
        match &self.schedule {
            Some(s) => {
                if s.first() != Some(&self.sigma_max) {
                    return Err(opt_err(
                        "schedule",
                        format!(
                            "must start at sigma_max = {} (the sampler starts from pure noise)",
                            self.sigma_max
                        ),
                    ));
                }
                if s.windows(2).any(|w| w[1] >= w[0] || w[1].is_nan()) {
                    return Err(opt_err("schedule", "must be strictly decreasing"));
                }
                if s.iter().any(|&x| x.is_nan() || x < self.sigma_min) {
                    return Err(opt_err("schedule", "levels must be at least sigma_min"));
                }
                Ok(s.clone())
            }
            None => Ok((0..self.steps)
                .map(|k| self.sigma_at(1.0 - k as f64 / self.steps as f64))
                .collect()),
        }
    }
}

/// SplitMix64 (S. Vigna's public-domain generator): one independent stream per sample.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Two independent standard normals (Box–Muller).
    pub fn normal_pair(&mut self) -> (f64, f64) {
        // 1 − u lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        (r * t.cos(), r * t.sin())
    }

    /// `n` standard normals as `f32`.
    pub fn normals_f32(&mut self, n: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(n + 1);
        while v.len() < n {
            let (a, b) = self.normal_pair();
            v.push(a as f32);
            v.push(b as f32);
        }
        v.truncate(n);
        v
    }
}

/// The stream of sample `i` under `seed` (seeds and indices mixed so streams do not overlap).
fn sample_rng(seed: u64, i: usize) -> SplitMix64 {
    let mut m = SplitMix64::new(seed ^ 0x6E6F_6973_652D_6C76);
    let a = m.next_u64();
    let mut m2 = SplitMix64::new(a.wrapping_add((i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)));
    SplitMix64::new(m2.next_u64())
}

/// Draws a strength from PTQ4DM's normal truncated to `[0, 1]` (redrawn when outside).
pub fn ptq4dm_strength(rng: &mut SplitMix64, mean: f64, std: f64) -> f64 {
    for _ in 0..10_000 {
        let (z, _) = rng.normal_pair();
        let s = mean + std * z;
        if (0.0..=1.0).contains(&s) {
            return s;
        }
    }
    mean.clamp(0.0, 1.0)
}

/// One planned calibration sample: its level, conditioning values and noise stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePlan {
    /// Target noise level.
    pub sigma: f64,
    /// Its strength `s` (σ = σ(s)).
    pub strength: f64,
    /// Conditioning values in the order of the options' `cond`.
    pub cond: Vec<f64>,
    rng: SplitMix64,
}

impl PartialEq for SplitMix64 {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}

/// Plans every sample: levels, conditioning, noise streams (no model involved).
pub fn plan_samples(opts: &NoiseCalibOptions) -> Result<Vec<SamplePlan>, NoiseLevelError> {
    opts.validate()?;
    let schedule = opts.schedule_sigmas()?;
    let k = schedule.len();
    let mut out = Vec::with_capacity(opts.samples);
    for i in 0..opts.samples {
        let mut rng = sample_rng(opts.seed, i);
        let cycle = match opts.distribution {
            LevelDistribution::Schedule => i / k,
            _ => i,
        };
        let cond = opts
            .cond
            .iter()
            .map(|c| match (&c.range, &c.values) {
                (Some([lo, hi]), _) => lo + (hi - lo) * rng.uniform(),
                (_, Some(v)) => v[cycle % v.len()],
                _ => 0.0,
            })
            .collect();
        let (sigma, strength) = match opts.distribution {
            LevelDistribution::Start => (opts.sigma_max, 1.0),
            LevelDistribution::Schedule => {
                let s = schedule[i % k];
                (s, opts.strength_of(s))
            }
            LevelDistribution::Uniform => {
                let s = rng.uniform();
                (opts.sigma_at(s), s)
            }
            LevelDistribution::Ptq4dm => {
                let s = ptq4dm_strength(&mut rng, opts.ptq4dm_mean, opts.ptq4dm_std);
                (opts.sigma_at(s), s)
            }
        };
        out.push(SamplePlan {
            sigma: sigma.clamp(opts.sigma_min, opts.sigma_max),
            strength,
            cond,
            rng,
        });
    }
    Ok(out)
}

/// The generated set: noisy samples `[n, …]`, levels, conditioning and bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSet {
    /// Noisy samples, axis 0 = samples.
    pub noisy: ArrayD<f32>,
    /// Noise level of each sample.
    pub sigma: Vec<f32>,
    /// Strength of each sample's level.
    pub strength: Vec<f64>,
    /// Conditioning values per conditioning input (name, one value per sample).
    pub cond: Vec<(String, Vec<f32>)>,
    /// Denoiser evaluations spent (samples × steps run).
    pub forwards: usize,
    /// The sampler's schedule.
    pub schedule: Vec<f64>,
}

impl NoiseSet {
    /// Mean, minimum and maximum strength of the levels (for logs and reports).
    pub fn strength_summary(&self) -> (f64, f64, f64) {
        let n = self.strength.len().max(1) as f64;
        let mean = self.strength.iter().sum::<f64>() / n;
        let min = self.strength.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self
            .strength
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (mean, min, max)
    }
}

/// Runs the multistep consistency sampler for every planned sample. `denoise(noisy, sigma,
/// cond)` evaluates the float model on a batch (`noisy` `[b, sample_shape…]`, one σ and one
/// value per conditioning input per sample) and returns the denoised batch of the same shape.
/// Batches hold at most `batch` samples, formed in sample order at each schedule step.
pub fn run_sampler<F, E>(
    opts: &NoiseCalibOptions,
    sample_shape: &[usize],
    batch: usize,
    mut denoise: F,
) -> Result<NoiseSet, NoiseLevelError>
where
    F: FnMut(&ArrayD<f32>, &[f32], &[Vec<f32>]) -> Result<ArrayD<f32>, E>,
    E: std::fmt::Display,
{
    if batch == 0 {
        return Err(opt_err("batch_size", "must be at least 1"));
    }
    let mut plans = plan_samples(opts)?;
    let schedule = opts.schedule_sigmas()?;
    let per: usize = sample_shape.iter().product();
    let smin2 = opts.sigma_min * opts.sigma_min;
    // State of every trajectory: current noisy sample.
    let mut states: Vec<Vec<f32>> = plans
        .iter_mut()
        .map(|p| {
            let z = p.rng.normals_f32(per);
            let s = opts.sigma_max as f32;
            z.into_iter().map(|v| v * s).collect()
        })
        .collect();
    let mut forwards = 0;
    for (k, &sk) in schedule.iter().enumerate() {
        let active: Vec<usize> = (0..plans.len()).filter(|&i| plans[i].sigma < sk).collect();
        for chunk in active.chunks(batch) {
            let mut shape = vec![chunk.len()];
            shape.extend_from_slice(sample_shape);
            let mut flat = Vec::with_capacity(chunk.len() * per);
            for &i in chunk {
                flat.extend_from_slice(&states[i]);
            }
            let x = ArrayD::from_shape_vec(IxDyn(&shape), flat).map_err(|e| {
                NoiseLevelError::Input {
                    input: opts.noisy_input.clone(),
                    reason: e.to_string(),
                }
            })?;
            let sig = vec![sk as f32; chunk.len()];
            let cond: Vec<Vec<f32>> = (0..opts.cond.len())
                .map(|c| chunk.iter().map(|&i| plans[i].cond[c] as f32).collect())
                .collect();
            let x0 = denoise(&x, &sig, &cond).map_err(|e| NoiseLevelError::Model {
                sigma: sk,
                reason: e.to_string(),
            })?;
            forwards += chunk.len();
            if x0.shape() != x.shape() {
                return Err(NoiseLevelError::Model {
                    sigma: sk,
                    reason: format!(
                        "the denoised output has shape {:?}, the noisy input {:?}",
                        x0.shape(),
                        x.shape()
                    ),
                });
            }
            for (j, &i) in chunk.iter().enumerate() {
                let target = plans[i].sigma;
                let next = match schedule.get(k + 1) {
                    Some(&n) if n > target => n,
                    _ => target,
                };
                let scale = (next * next - smin2).max(0.0).sqrt() as f32;
                let z = plans[i].rng.normals_f32(per);
                let row = x0.index_axis(Axis(0), j);
                states[i] = row.iter().zip(&z).map(|(&a, &n)| a + scale * n).collect();
            }
        }
    }
    let n = plans.len();
    let mut shape = vec![n];
    shape.extend_from_slice(sample_shape);
    let noisy = ArrayD::from_shape_vec(IxDyn(&shape), states.concat()).map_err(|e| {
        NoiseLevelError::Input {
            input: opts.noisy_input.clone(),
            reason: e.to_string(),
        }
    })?;
    Ok(NoiseSet {
        noisy,
        sigma: plans.iter().map(|p| p.sigma as f32).collect(),
        strength: plans.iter().map(|p| p.strength).collect(),
        cond: opts
            .cond
            .iter()
            .enumerate()
            .map(|(c, ci)| {
                (
                    ci.input.clone(),
                    plans.iter().map(|p| p.cond[c] as f32).collect(),
                )
            })
            .collect(),
        forwards,
        schedule,
    })
}

/// Per-sample shape of input `spec` (fixed dims after the batch axis).
fn sample_shape(spec: &InputSpec) -> Result<Vec<usize>, NoiseLevelError> {
    spec.shape[1..]
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => Ok(*n),
            Dim::Dynamic => Err(NoiseLevelError::Input {
                input: spec.name.clone(),
                reason: format!(
                    "shape {} has a dynamic dimension after the batch axis; the sampler needs \
                     a fixed sample shape",
                    spec.shape_string()
                ),
            }),
        })
        .collect()
}

/// An array `[n, shape…]` holding one scalar per sample (`shape` must have one element).
fn per_sample(spec: &InputSpec, values: &[f32]) -> Result<ArrayD<f32>, NoiseLevelError> {
    let rest = sample_shape(spec)?;
    if rest.iter().product::<usize>() != 1 {
        return Err(NoiseLevelError::Input {
            input: spec.name.clone(),
            reason: format!(
                "shape {} holds more than one value per sample; noise levels and conditioning \
                 must be one scalar per sample",
                spec.shape_string()
            ),
        });
    }
    let mut shape = vec![values.len()];
    shape.extend_from_slice(&rest);
    ArrayD::from_shape_vec(IxDyn(&shape), values.to_vec()).map_err(|e| NoiseLevelError::Input {
        input: spec.name.clone(),
        reason: e.to_string(),
    })
}

/// Checks the options against the model's inputs: noisy, sigma and conditioning inputs exist,
/// are float32, and together are every input. Returns (noisy, sigma, cond) specs.
fn match_inputs<'a>(
    opts: &NoiseCalibOptions,
    inputs: &'a [InputSpec],
) -> Result<(&'a InputSpec, &'a InputSpec, Vec<&'a InputSpec>), NoiseLevelError> {
    let find = |name: &str, option: &str| -> Result<&'a InputSpec, NoiseLevelError> {
        let s = inputs.iter().find(|s| s.name == name).ok_or_else(|| {
            opt_err(
                option,
                format!(
                    "the model has no input '{name}' (inputs: {})",
                    inputs
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        if s.dtype != DType::F32 {
            return Err(NoiseLevelError::Input {
                input: name.into(),
                reason: format!("is {}, the sampler produces float32", s.dtype),
            });
        }
        Ok(s)
    };
    let noisy = find(&opts.noisy_input, "noisy_input")?;
    let sigma = find(&opts.sigma_input, "sigma_input")?;
    let cond = opts
        .cond
        .iter()
        .map(|c| find(&c.input, "cond"))
        .collect::<Result<Vec<_>, _>>()?;
    for s in inputs {
        if s.name != noisy.name && s.name != sigma.name && !cond.iter().any(|c| c.name == s.name) {
            return Err(NoiseLevelError::Input {
                input: s.name.clone(),
                reason: "is neither the noisy input, the sigma input nor a [[cond]] entry: say \
                         how to fill it in the [noise_calibration] options"
                    .into(),
            });
        }
    }
    Ok((noisy, sigma, cond))
}

/// The set as model inputs (`[n, …]` per input, in the order of `inputs`).
pub fn set_arrays(
    opts: &NoiseCalibOptions,
    inputs: &[InputSpec],
    set: &NoiseSet,
) -> Result<Vec<(String, ArrayD<f32>)>, NoiseLevelError> {
    let (noisy, sigma, cond) = match_inputs(opts, inputs)?;
    let mut out = Vec::new();
    for spec in inputs {
        let a = if spec.name == noisy.name {
            set.noisy.clone()
        } else if spec.name == sigma.name {
            per_sample(spec, &set.sigma)?
        } else {
            let k = cond
                .iter()
                .position(|c| c.name == spec.name)
                .ok_or_else(|| NoiseLevelError::Input {
                    input: spec.name.clone(),
                    reason: "not a conditioning input".into(),
                })?;
            per_sample(spec, &set.cond[k].1)?
        };
        out.push((spec.name.clone(), a));
    }
    Ok(out)
}

/// Runs the float model's sampler (interpreter, batches of `batch`) and returns the set.
pub fn generate(
    model: &Model,
    inputs: &[InputSpec],
    opts: &NoiseCalibOptions,
    batch: usize,
) -> Result<NoiseSet, NoiseLevelError> {
    let (noisy, sigma, cond) = match_inputs(opts, inputs)?;
    let shape = sample_shape(noisy)?;
    let model_err = |e: &dyn std::fmt::Display| NoiseLevelError::Model {
        sigma: opts.sigma_max,
        reason: e.to_string(),
    };
    let interp = Interpreter::new(model).map_err(|e| model_err(&e))?;
    let out_name = interp
        .output_names()
        .into_iter()
        .next()
        .ok_or_else(|| model_err(&"the model has no output"))?;
    let schedule = opts.schedule_sigmas()?;
    let total: usize = plan_samples(opts)?
        .iter()
        .map(|p| schedule.iter().filter(|&&s| p.sigma < s).count())
        .sum();
    let total = total as u64;
    let pb = crate::util::progress::bar(total, "noise-level calibration set");
    let set = run_sampler(opts, &shape, batch, |x, s, c| {
        let mut feeds: Vec<(String, Tensor)> = vec![(noisy.name.clone(), Tensor::F32(x.clone()))];
        feeds.push((sigma.name.clone(), Tensor::F32(per_sample(sigma, s)?)));
        for (spec, v) in cond.iter().zip(c) {
            feeds.push((spec.name.clone(), Tensor::F32(per_sample(spec, v)?)));
        }
        let outs = interp
            .run_batched(&feeds, Some(batch))
            .map_err(|e| model_err(&e))?;
        let t = outs
            .into_iter()
            .find(|o| o.0 == out_name)
            .ok_or_else(|| model_err(&"missing output"))?;
        pb.inc(s.len() as u64);
        t.1.to_f32().map_err(|e| model_err(&e))
    })?;
    pb.finish_and_clear();
    Ok(set)
}

/// The pass: generates the set with the float `model` and wraps it as an in-memory
/// [`Dataset`] that calibration consumes like any file. Returns the data set, the generated
/// set and a one-line log.
pub fn build_calibration_set(
    model: &Model,
    inputs: &[InputSpec],
    opts: &NoiseCalibOptions,
    batch: usize,
) -> Result<(Dataset, NoiseSet, String), NoiseLevelError> {
    let set = generate(model, inputs, opts, batch)?;
    let arrays = set_arrays(opts, inputs, &set)?;
    let ds = Dataset::from_arrays("<noise-level-calibration>", inputs, arrays)?;
    let (mean, min, max) = set.strength_summary();
    let log = format!(
        "noise-level-calibration: {} samples, distribution {}, schedule [{}], strength mean {:.3} \
         (min {:.3}, max {:.3}), sigma {:.4}..{:.4}, {} denoiser evaluations, seed {}",
        set.sigma.len(),
        opts.distribution,
        set.schedule
            .iter()
            .map(|s| format!("{s:.4}"))
            .collect::<Vec<_>>()
            .join(", "),
        mean,
        min,
        max,
        opts.sigma_at(min),
        opts.sigma_at(max),
        set.forwards,
        opts.seed
    );
    Ok((ds, set, log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_log_uniform_from_sigma_max() {
        let o = NoiseCalibOptions::default();
        let s = o.schedule_sigmas().expect("schedule");
        assert_eq!(s.len(), 4);
        assert!((s[0] - 80.0).abs() < 1e-9);
        // σ(0.75), σ(0.5), σ(0.25) of the package's strength mapping.
        for (k, &v) in s.iter().enumerate() {
            let want = 0.002 * (80.0f64 / 0.002).powf(1.0 - k as f64 / 4.0);
            assert!((v - want).abs() < 1e-9 * want, "{k}: {v} vs {want}");
            assert!((o.strength_of(v) - (1.0 - k as f64 / 4.0)).abs() < 1e-12);
        }
        let bad = NoiseCalibOptions {
            schedule: Some(vec![80.0, 10.0, 20.0]),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = NoiseCalibOptions {
            schedule: Some(vec![10.0, 2.0]),
            ..Default::default()
        };
        let e = bad.validate().expect_err("must start at sigma_max");
        assert!(e.to_string().contains("schedule"), "{e}");
        let ok = NoiseCalibOptions {
            schedule: Some(vec![80.0, 10.0, 2.0, 0.5]),
            ..Default::default()
        };
        assert_eq!(
            ok.schedule_sigmas().expect("explicit"),
            vec![80.0, 10.0, 2.0, 0.5]
        );
    }

    fn strengths(d: LevelDistribution, seed: u64, n: usize) -> Vec<f64> {
        let o = NoiseCalibOptions {
            distribution: d,
            samples: n,
            seed,
            ..Default::default()
        };
        plan_samples(&o)
            .expect("plan")
            .iter()
            .map(|p| p.strength)
            .collect()
    }

    #[test]
    fn distributions_are_deterministic_in_range_and_skewed() {
        for d in [
            LevelDistribution::Ptq4dm,
            LevelDistribution::Uniform,
            LevelDistribution::Start,
            LevelDistribution::Schedule,
        ] {
            let a = strengths(d, 3, 2000);
            assert_eq!(a, strengths(d, 3, 2000), "{d} deterministic");
            assert!(a.iter().all(|s| (0.0..=1.0).contains(s)), "{d} in range");
        }
        assert_ne!(
            strengths(LevelDistribution::Ptq4dm, 3, 50),
            strengths(LevelDistribution::Ptq4dm, 4, 50)
        );
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let p = strengths(LevelDistribution::Ptq4dm, 1, 4000);
        let u = strengths(LevelDistribution::Uniform, 1, 4000);
        // N(0.4, 0.4) truncated to [0, 1]: mean 0.4581 (closed form), below the uniform 0.5,
        // and 56.8 % of the mass in the low-noise half.
        assert!(
            (mean(&p) - 0.4581).abs() < 0.015,
            "ptq4dm mean {}",
            mean(&p)
        );
        assert!((mean(&u) - 0.5).abs() < 0.015, "uniform mean {}", mean(&u));
        let low = p.iter().filter(|&&s| s < 0.5).count() as f64 / p.len() as f64;
        assert!(low > 0.54, "ptq4dm low-noise share {low}");
        assert!(strengths(LevelDistribution::Start, 1, 10)
            .iter()
            .all(|&s| s == 1.0));
        let sch = strengths(LevelDistribution::Schedule, 1, 8);
        assert_eq!(sch, vec![1.0, 0.75, 0.5, 0.25, 1.0, 0.75, 0.5, 0.25]);
    }

    #[test]
    fn normals_have_unit_moments() {
        let mut r = SplitMix64::new(9);
        let v = r.normals_f32(100_001);
        assert_eq!(v.len(), 100_001);
        let n = v.len() as f64;
        let m = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / n;
        assert!(m.abs() < 0.01 && (var - 1.0).abs() < 0.02, "{m} {var}");
    }

    #[test]
    fn conditioning_ranges_and_values() {
        let o = NoiseCalibOptions {
            distribution: LevelDistribution::Schedule,
            samples: 8,
            cond: vec![
                Conditioning {
                    input: "difficulty".into(),
                    range: None,
                    values: Some(vec![0.0, 1.0]),
                },
                Conditioning {
                    input: "other".into(),
                    range: Some([2.0, 3.0]),
                    values: None,
                },
            ],
            ..Default::default()
        };
        let p = plan_samples(&o).expect("plan");
        let d: Vec<f64> = p.iter().map(|s| s.cond[0]).collect();
        // One value per sweep of the 4 schedule levels.
        assert_eq!(d, vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        assert!(p.iter().all(|s| (2.0..=3.0).contains(&s.cond[1])));
        let bad = NoiseCalibOptions {
            cond: vec![Conditioning {
                input: "d".into(),
                range: Some([0.0, 1.0]),
                values: Some(vec![1.0]),
            }],
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    /// A toy "denoiser": x̂₀ = x / (1 + σ) + c, so every step is traceable.
    fn toy(x: &ArrayD<f32>, s: &[f32], c: &[Vec<f32>]) -> Result<ArrayD<f32>, String> {
        let mut y = x.clone();
        for (i, mut row) in y.axis_iter_mut(Axis(0)).enumerate() {
            let cc = c.first().map_or(0.0, |v| v[i]);
            row.mapv_inplace(|v| v / (1.0 + s[i]) + cc);
        }
        Ok(y)
    }

    #[test]
    fn sampler_visits_schedule_and_counts_forwards() {
        let o = NoiseCalibOptions {
            distribution: LevelDistribution::Schedule,
            samples: 8,
            seed: 5,
            ..Default::default()
        };
        let mut seen: Vec<(usize, f32)> = Vec::new();
        let set = run_sampler(&o, &[1, 4, 4], 3, |x, s, c| {
            seen.push((x.shape()[0], s[0]));
            toy(x, s, c)
        })
        .expect("sampler");
        // Levels 80, σ(.75), σ(.5), σ(.25) twice: 0 + 1 + 2 + 3 forwards per sweep.
        assert_eq!(set.forwards, 12);
        assert_eq!(set.noisy.shape(), &[8, 1, 4, 4]);
        let sch = o.schedule_sigmas().expect("schedule");
        for (i, &s) in set.sigma.iter().enumerate() {
            assert_eq!(s, sch[i % 4] as f32);
        }
        // Step 0 denoises the 6 samples below σ_max in batches of 3, all at σ_max.
        assert_eq!(seen[0], (3, 80.0));
        assert_eq!(seen[1], (3, 80.0));
        // Samples at σ_max are pure noise with standard deviation ≈ 80.
        let row = set.noisy.index_axis(Axis(0), 0);
        assert!(row.iter().all(|v| v.abs() < 80.0 * 6.0));
        // Batch size does not change the result.
        let again = run_sampler(&o, &[1, 4, 4], 8, toy).expect("sampler");
        assert_eq!(again, set);
    }

    #[test]
    fn renoise_is_denoised_estimate_plus_scaled_noise() {
        // One sample at the lowest level of a 2-step schedule with a denoiser returning zeros:
        // the state is exactly sqrt(σ² − σ_min²)·z, so its spread follows σ.
        let o = NoiseCalibOptions {
            schedule: Some(vec![80.0, 1.0]),
            distribution: LevelDistribution::Schedule,
            samples: 2,
            ..Default::default()
        };
        let set = run_sampler(&o, &[4096], 4, |x, _, _| {
            Ok::<_, String>(ArrayD::zeros(x.raw_dim()))
        })
        .expect("sampler");
        let row: Vec<f32> = set.noisy.index_axis(Axis(0), 1).iter().copied().collect();
        let sd = (row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / row.len() as f64).sqrt();
        assert!((sd - 1.0).abs() < 0.05, "sd {sd}");
        assert_eq!(set.forwards, 1);
    }
}
