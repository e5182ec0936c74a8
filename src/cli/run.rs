//! `mfq run MODEL --input x.npz [--output y.npz] [--batch N]`: runs a model on arrays keyed by
//! input name and writes (or summarises) the outputs keyed by output name.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `mfq run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// ONNX model file.
    pub model: PathBuf,
    /// Input arrays (.npz) keyed by model input name; extra keys are ignored with a note.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the outputs (.npz keyed by output name). Without it, a summary is printed.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Samples per interpreter call (default: the model's fixed batch, else half the batch).
    #[arg(long)]
    pub batch: Option<usize>,
}

/// Runs `mfq run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let model = crate::onnx::load(&args.model)?;
    let interp = crate::interp::Interpreter::new(&model)
        .with_context(|| format!("{} cannot be run", args.model.display()))?;
    let arrays = crate::tensor::npz::read(&args.input)?;
    let names: Vec<&str> = interp.inputs().iter().map(|s| s.name.as_str()).collect();
    let mut feeds = Vec::new();
    for (k, t) in arrays {
        // Accept both plain input names and the `in:<name>` keys of reference files.
        let key = k.strip_prefix("in:").unwrap_or(&k).to_string();
        if names.contains(&key.as_str()) {
            feeds.push((key, t));
        } else {
            eprintln!("note: ignoring array '{k}' (not a model input)");
        }
    }
    if args.batch == Some(0) {
        anyhow::bail!("--batch must be at least 1");
    }
    let t0 = std::time::Instant::now();
    let outs = interp
        .run_batched(&feeds, args.batch)
        .with_context(|| format!("running {}", args.model.display()))?;
    let dt = t0.elapsed();
    match &args.output {
        Some(p) => {
            let bytes = crate::tensor::npz::to_bytes(&outs)?;
            crate::util::atomic::write_atomic(
                p,
                &bytes,
                &[args.model.as_path(), args.input.as_path()],
            )?;
            eprintln!(
                "wrote {} output(s) to {} in {:.3} s",
                outs.len(),
                p.display(),
                dt.as_secs_f64()
            );
        }
        None => {
            for (name, t) in &outs {
                let v = t.to_f64_vec().unwrap_or_default();
                let (lo, hi) = v
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                        (a.min(x), b.max(x))
                    });
                let mean = if v.is_empty() {
                    0.0
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                };
                println!(
                    "{name}: {} {:?} min {lo:.6} max {hi:.6} mean {mean:.6}",
                    t.dtype(),
                    t.shape()
                );
            }
            eprintln!("ran in {:.3} s", dt.as_secs_f64());
        }
    }
    Ok(ExitCode::SUCCESS)
}
