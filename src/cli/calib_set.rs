//! `mfq calib-set MODEL --config RECIPE -o SET.npz`: runs the `noise-level-calibration` pass
//! (the float model's multistep consistency sampler, noise levels from the recipe's
//! `[noise_calibration]` table) and writes the generated set as a `.npz` keyed by input name
//! (exactly the model's inputs). The file feeds `mfq quantize --calib`, `mfq run --input` and
//! `mfq quantize --simulate-in`, or serves as a fixed evaluation set.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::passes::noise_level::{self, LevelDistribution};
use crate::quant::{self, Recipe};
use crate::tensor::Tensor;

/// Arguments of `mfq calib-set`. Flags override the recipe's `[noise_calibration]` options.
#[derive(Debug, Args)]
pub struct CalibSetArgs {
    /// Float ONNX denoiser.
    pub model: PathBuf,
    /// The `.npz` to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// TOML recipe with a `[noise_calibration]` table (defaults apply without it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Number of samples.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Seed of levels, conditioning and noise.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Noise-level distribution: ptq4dm, uniform, start or schedule.
    #[arg(long)]
    pub distribution: Option<String>,
    /// Samples per denoiser call.
    #[arg(long)]
    pub batch: Option<usize>,
}

/// Runs `mfq calib-set`.
pub fn run(args: CalibSetArgs) -> anyhow::Result<ExitCode> {
    let t0 = std::time::Instant::now();
    let recipe = match &args.config {
        Some(p) => Recipe::from_toml_file(p)?,
        None => Recipe::default(),
    };
    let mut opts = recipe.noise_calibration.clone().unwrap_or_default();
    if let Some(n) = args.samples {
        opts.samples = n;
    }
    if let Some(s) = args.seed {
        opts.seed = s;
    }
    if let Some(d) = &args.distribution {
        opts.distribution = d.parse::<LevelDistribution>()?;
    }
    let batch = args.batch.unwrap_or(recipe.batch_size);
    let mut model = crate::onnx::load(&args.model)?;
    quant::prepare(&mut model, &[])?;
    let inputs = quant::pipeline::data_inputs(&model);
    let set = noise_level::generate(&model, &inputs, &opts, batch)
        .with_context(|| format!("sampling {}", args.model.display()))?;
    let arrays: Vec<(String, Tensor)> = noise_level::set_arrays(&opts, &inputs, &set)?
        .into_iter()
        .map(|(n, a)| (n, Tensor::F32(a)))
        .collect();
    let bytes = crate::tensor::npz::to_bytes(&arrays)?;
    let mut ins = vec![args.model.as_path()];
    if let Some(p) = &args.config {
        ins.push(p.as_path());
    }
    crate::util::atomic::write_atomic(&args.output, &bytes, &ins)?;
    let (mean, min, max) = set.strength_summary();
    eprintln!(
        "wrote {}: {} samples ({}), strength mean {mean:.3} in [{min:.3}, {max:.3}], {} denoiser \
         evaluations, {:.1} s",
        args.output.display(),
        set.sigma.len(),
        opts.distribution,
        set.forwards,
        t0.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
