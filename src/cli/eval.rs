//! `mfq eval MODEL --data DATA [--reference FLOAT.onnx] [--json out.json]`: evaluates a model
//! (float, or a QDQ/QONNX export, which mfq's interpreter runs) on data and compares it side by
//! side with a reference model: top-1/top-5 when the data has labels, and always, with a
//! reference, the fidelity of the model to it (top-1 agreement, output SQNR, cosine, softmax KL).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

use crate::interp::Interpreter;
use crate::metrics::{
    Accuracy, AccuracyResult, Cosine, PairMetric, SoftmaxKl, Sqnr, Top1Agreement,
};
use crate::tensor::Tensor;

use super::quantize::{open_dataset, ImageArgs};

/// Arguments of `mfq eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model to evaluate (float ONNX, or a QDQ/QONNX export).
    pub model: PathBuf,
    /// Reference model (e.g. the float model the export came from) to compare against.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Data: .npz keyed by input names (optional `labels`), .npy (single input) or an image
    /// folder (class subfolders give labels).
    #[arg(long)]
    pub data: PathBuf,
    /// Samples to evaluate (default: all; a seeded subset otherwise).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Seed of the subset.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Model output to evaluate (default: the first output).
    #[arg(long)]
    pub output_name: Option<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub images: ImageArgs,
}

/// Results of `mfq eval` (the JSON file).
#[derive(Debug, Clone, Serialize)]
pub struct EvalResults {
    pub schema: &'static str,
    pub model: String,
    pub reference: Option<String>,
    pub data: String,
    pub samples: usize,
    pub output: String,
    /// Accuracy of the model (when the data has labels).
    pub accuracy: Option<AccuracyResult>,
    /// Accuracy of the reference (when the data has labels).
    pub reference_accuracy: Option<AccuracyResult>,
    /// Fidelity of the model to the reference.
    pub fidelity: Option<Fidelity>,
    pub seconds: f64,
}

/// How closely the model follows the reference.
#[derive(Debug, Clone, Serialize)]
pub struct Fidelity {
    /// Fraction of samples with the same arg-max (outputs of rank 2 only).
    pub top1_agreement: Option<f64>,
    /// `20·log10(‖ref‖/‖ref − model‖)` over all output elements, dB.
    pub output_sqnr_db: f64,
    /// Mean per-sample cosine similarity.
    pub output_cosine: f64,
    /// Mean KL(softmax(ref) ‖ softmax(model)) per sample, nats (outputs of rank 2 only).
    pub softmax_kl: Option<f64>,
}

fn load(path: &Path) -> anyhow::Result<(crate::ir::Model, Interpreter)> {
    let mut m = crate::onnx::load(path)?;
    // Constant subgraphs (e.g. DequantizeLinear of stored weights) are computed once.
    crate::ir::fold::fold_constants(&mut m)
        .with_context(|| format!("{}: constant folding", path.display()))?;
    let interp =
        Interpreter::new(&m).with_context(|| format!("{} cannot be run", path.display()))?;
    Ok((m, interp))
}

fn output_of(
    outs: Vec<(String, Tensor)>,
    name: &str,
    model: &Path,
) -> anyhow::Result<ndarray::ArrayD<f32>> {
    let t = outs
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .with_context(|| format!("{}: no output '{name}'", model.display()))?;
    t.to_f32()
        .with_context(|| format!("{}: output '{name}' is not numeric", model.display()))
}

fn pick_output(interp: &Interpreter, want: Option<&str>, path: &Path) -> anyhow::Result<String> {
    let names = interp.output_names();
    match want {
        Some(w) if names.iter().any(|n| n == w) => Ok(w.to_string()),
        Some(w) => bail!(
            "{} has no output '{w}' (outputs: {})",
            path.display(),
            names.join(", ")
        ),
        None => names
            .into_iter()
            .next()
            .with_context(|| format!("{} has no output", path.display())),
    }
}

/// Runs `mfq eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(j) = &args.json {
        super::quantize::check_writable(j)?;
    }
    let (model, interp) = load(&args.model)?;
    let out_name = pick_output(&interp, args.output_name.as_deref(), &args.model)?;
    let reference = match &args.reference {
        Some(p) => {
            let (_, ri) = load(p)?;
            // The reference's output of the same name, else its first output.
            let name = if ri.output_names().contains(&out_name) {
                out_name.clone()
            } else {
                pick_output(&ri, None, p)?
            };
            Some((ri, name, p))
        }
        None => None,
    };
    let images = args.images.options()?;
    let data = open_dataset(&args.data, &model, &images, args.samples, args.seed, "eval")?;
    let mut acc = Accuracy::default();
    let mut acc_ref = Accuracy::default();
    let mut agree = Top1Agreement::default();
    let mut sqnr = Sqnr::default();
    let mut cos = Cosine::default();
    let mut kl = SoftmaxKl::default();
    let mut rank2 = true;
    let mut samples = 0;
    let pb = crate::util::progress::bar(data.len().div_ceil(args.batch) as u64, "evaluate");
    for b in data.batches(args.batch)? {
        let b = b?;
        samples += b.len();
        let feeds: Vec<(String, Tensor)> = b
            .inputs
            .into_iter()
            .map(|(n, a)| (n, Tensor::F32(a)))
            .collect();
        let y = output_of(
            interp
                .run_batched(&feeds, None)
                .with_context(|| format!("running {}", args.model.display()))?,
            &out_name,
            &args.model,
        )?;
        if let Some(l) = &b.labels {
            acc.update(y.view(), l)?;
        }
        if let Some((ri, rname, rpath)) = &reference {
            let r = output_of(
                ri.run_batched(&feeds, None)
                    .with_context(|| format!("running {}", rpath.display()))?,
                rname,
                rpath,
            )?;
            if r.shape() != y.shape() {
                bail!(
                    "output '{out_name}' has shape {:?} but the reference's '{rname}' has {:?}",
                    y.shape(),
                    r.shape()
                );
            }
            if let Some(l) = &b.labels {
                acc_ref.update(r.view(), l)?;
            }
            rank2 &= y.ndim() == 2;
            if rank2 {
                agree.update(r.view(), y.view())?;
                kl.update(r.view(), y.view())?;
            }
            sqnr.update(r.view(), y.view())?;
            cos.update(r.view(), y.view())?;
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let labels = data.has_labels();
    let fidelity = match &reference {
        Some(_) => Some(Fidelity {
            top1_agreement: if rank2 { Some(agree.finish()?) } else { None },
            output_sqnr_db: sqnr.finish()?,
            output_cosine: cos.finish()?,
            softmax_kl: if rank2 { Some(kl.finish()?) } else { None },
        }),
        None => None,
    };
    let res = EvalResults {
        schema: "mfq.eval/1",
        model: args.model.display().to_string(),
        reference: args.reference.as_ref().map(|p| p.display().to_string()),
        data: args.data.display().to_string(),
        samples,
        output: out_name,
        accuracy: if labels { Some(acc.finish()?) } else { None },
        reference_accuracy: if labels && reference.is_some() {
            Some(acc_ref.finish()?)
        } else {
            None
        },
        fidelity,
        seconds: t0.elapsed().as_secs_f64(),
    };
    print_results(&res);
    if let Some(j) = &args.json {
        let mut inputs: Vec<&Path> = vec![args.model.as_path(), args.data.as_path()];
        if let Some(r) = &args.reference {
            inputs.push(r.as_path());
        }
        let text = serde_json::to_string_pretty(&res)?;
        crate::util::atomic::write_atomic(j, text.as_bytes(), &inputs)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.2} %", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn print_results(r: &EvalResults) {
    println!(
        "evaluation on {} samples (output '{}')",
        r.samples, r.output
    );
    if r.accuracy.is_some() {
        if r.reference_accuracy.is_some() {
            println!("| metric | reference | model |");
            println!("|---|---|---|");
            let (a, b) = (r.reference_accuracy, r.accuracy);
            println!(
                "| top-1 | {} | {} |",
                pct(a.map(|x| x.top1)),
                pct(b.map(|x| x.top1))
            );
            println!(
                "| top-5 | {} | {} |",
                pct(a.map(|x| x.top5)),
                pct(b.map(|x| x.top5))
            );
        } else {
            let a = r.accuracy;
            println!(
                "top-1 {}, top-5 {}",
                pct(a.map(|x| x.top1)),
                pct(a.map(|x| x.top5))
            );
        }
    }
    if let Some(f) = &r.fidelity {
        if f.top1_agreement.is_some() {
            println!(
                "top-1 agreement with the reference: {}",
                pct(f.top1_agreement)
            );
        }
        println!(
            "output SQNR {:.2} dB, cosine {:.5}{}",
            f.output_sqnr_db,
            f.output_cosine,
            f.softmax_kl
                .map(|k| format!(", softmax KL {k:.3e} nats"))
                .unwrap_or_default()
        );
    }
}
