//! `mfq quantize MODEL -o OUT --weights FMT --acts FMT [...]`: calibrate, quantize, evaluate
//! against float and export QDQ or QONNX, with a JSON report that reproduces the run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use crate::data::{Channels, Dataset, ImageOptions, Layout, Resample};
use crate::quant::recipe::{BiasMode, ExportStyle, Granularity, ScaleKind};
use crate::quant::{self, Recipe};

/// Arguments of `mfq quantize`. Flags override the `--config` recipe.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Float ONNX model.
    pub model: PathBuf,
    /// Quantized ONNX model to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Weight format of compute layers (e.g. int4, e2m1, fp8-e4m3fn, mxfp4).
    #[arg(long)]
    pub weights: Option<String>,
    /// Input-activation format of compute layers (e.g. int8, e4m3; `e4m3:unsigned`: e4m4:unsigned on non-negative tensors, e4m3 elsewhere)
    #[arg(long)]
    pub acts: Option<String>,
    /// Format of the first and last compute layers (weights and inputs).
    #[arg(long)]
    pub first_last: Option<String>,
    /// Calibration data: .npz keyed by input names, .npy (single input) or an image folder.
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Evaluation data (same forms; `labels` array enables top-1/top-5).
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Activation clipping: minmax, percentile[:P], mse[:NORM], kl.
    #[arg(long)]
    pub calib_method: Option<String>,
    /// Weight scale granularity.
    #[arg(long, value_parser = ["per-channel", "per-tensor"])]
    pub granularity: Option<String>,
    /// Scales: float or pow2.
    #[arg(long, value_parser = ["float", "pow2"])]
    pub scale: Option<String>,
    /// Bias: float or int32 (at scale s_w·s_a).
    #[arg(long, value_parser = ["float", "int32"])]
    pub bias: Option<String>,
    /// Keep integer activations signed even when non-negative.
    #[arg(long)]
    pub signed_acts: bool,
    /// Calibration samples (default: all).
    #[arg(long)]
    pub calib_samples: Option<usize>,
    /// Evaluation samples (default: all).
    #[arg(long)]
    pub eval_samples: Option<usize>,
    /// Batch size for calibration and evaluation.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Seed for sample selection.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Comma-separated passes (default: fold-batch-norm): fold-batch-norm, equalize-channels,
    /// smooth-quant, exponent-shift, fp-search, gptq or learned-rounding, correct-bias; `seed`
    /// is the seed paper's pipeline. They run in pipeline-stage order.
    #[arg(long)]
    pub passes: Option<String>,
    /// Pass option PASS.KEY=VALUE (repeatable), e.g. smooth-quant.alpha=0.8 or
    /// learned-rounding.iterations=200; same keys as `[pass_options.PASS]` in the recipe.
    #[arg(long = "pass-option", value_name = "PASS.KEY=VALUE")]
    pub pass_option: Vec<String>,
    /// TOML recipe file (same keys as the flags; per-layer overrides as [[override]]).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Export style: auto (QDQ when representable, else QONNX), qdq or qonnx.
    #[arg(long, value_parser = ["auto", "qdq", "qonnx"])]
    pub export: Option<String>,
    /// Default-domain opset of the export.
    #[arg(long)]
    pub opset: Option<i64>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also run mfq's simulation of the quantized model on these inputs (.npz keyed by input
    /// name) and write its outputs to `--simulate-out` (for cross-checking other runtimes).
    #[arg(long, requires = "simulate_out")]
    pub simulate_in: Option<PathBuf>,
    /// Where `--simulate-in` outputs go (.npz keyed by output name).
    #[arg(long, requires = "simulate_in")]
    pub simulate_out: Option<PathBuf>,
    /// Also write the QONNX export of the same quantization here (skipped with a note when
    /// QONNX cannot express the formats, e.g. MX weights).
    #[arg(long)]
    pub also_qonnx: Option<PathBuf>,
    #[command(flatten)]
    pub images: ImageArgs,
}

/// Preprocessing of image-folder data (`--calib DIR`, `--eval DIR`, `--data DIR`); ignored for
/// .npz/.npy data. Unset options follow the model input: ImageNet transform for its size
/// (resize to size/0.875, centre crop, ImageNet mean/std), RGB, layout from its shape.
#[derive(Debug, Clone, Default, Args)]
pub struct ImageArgs {
    /// Resize the shorter side of each image to N pixels (0: no resize).
    #[arg(long, value_name = "N", help_heading = "Image folders")]
    pub resize: Option<u32>,
    /// Resize interpolation.
    #[arg(long, value_parser = ["bilinear", "bicubic"], help_heading = "Image folders")]
    pub resample: Option<String>,
    /// Centre crop: N (square) or HxW (0: no crop).
    #[arg(long, value_name = "N|HxW", help_heading = "Image folders")]
    pub crop: Option<String>,
    /// Per-channel mean of v/255 in RGB order: one value or R,G,B.
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        help_heading = "Image folders"
    )]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation of v/255 in RGB order: one value or R,G,B.
    #[arg(long, value_delimiter = ',', help_heading = "Image folders")]
    pub std: Option<Vec<f32>>,
    /// Affine normalisation v·S + O on 0..255 pixels: S (instead of mean/std).
    #[arg(
        long,
        value_name = "S",
        allow_hyphen_values = true,
        help_heading = "Image folders"
    )]
    pub pixel_scale: Option<f32>,
    /// Affine normalisation: O (e.g. --pixel-scale 0.0078125 --pixel-offset -0.9921875 for
    /// (v − 127)/128).
    #[arg(
        long,
        value_name = "O",
        allow_hyphen_values = true,
        help_heading = "Image folders"
    )]
    pub pixel_offset: Option<f32>,
    /// Channel order of the tensor.
    #[arg(long, value_parser = ["rgb", "bgr", "gray"], help_heading = "Image folders")]
    pub channels: Option<String>,
    /// Shorthand for --channels bgr.
    #[arg(long, conflicts_with = "channels", help_heading = "Image folders")]
    pub bgr: bool,
    /// Tensor layout.
    #[arg(long, value_parser = ["nchw", "nhwc"], help_heading = "Image folders")]
    pub layout: Option<String>,
}

impl ImageArgs {
    /// The options these flags set (unset flags stay unset).
    pub fn options(&self) -> anyhow::Result<ImageOptions> {
        let crop = match &self.crop {
            None => None,
            Some(c) => {
                let parts: Vec<&str> = c.split(['x', 'X']).collect();
                let v: Result<Vec<u32>, _> =
                    parts.iter().map(|p| p.trim().parse::<u32>()).collect();
                match v {
                    Ok(v) if v.len() == 1 || v.len() == 2 => Some(v),
                    _ => bail!("--crop '{c}': expected N or HxW (e.g. 224 or 224x192)"),
                }
            }
        };
        let channels = if self.bgr {
            Some(Channels::Bgr)
        } else {
            self.channels.as_deref().map(|c| match c {
                "bgr" => Channels::Bgr,
                "gray" => Channels::Gray,
                _ => Channels::Rgb,
            })
        };
        Ok(ImageOptions {
            resize: self.resize,
            resample: self.resample.as_deref().map(|r| {
                if r == "bicubic" {
                    Resample::Bicubic
                } else {
                    Resample::Bilinear
                }
            }),
            crop,
            mean: self.mean.clone(),
            std: self.std.clone(),
            scale: self.pixel_scale,
            offset: self.pixel_offset,
            channels,
            layout: self.layout.as_deref().map(|l| {
                if l == "nhwc" {
                    Layout::Nhwc
                } else {
                    Layout::Nchw
                }
            }),
        })
    }
}

/// Opens `path` (.npz, .npy or an image folder preprocessed with `images`) against `model`'s
/// inputs and keeps `samples` of it (seeded); an empty result is an error naming `what`.
pub fn open_dataset(
    path: &Path,
    model: &crate::ir::Model,
    images: &ImageOptions,
    samples: Option<usize>,
    seed: u64,
    what: &str,
) -> anyhow::Result<Dataset> {
    let inputs = quant::pipeline::data_inputs(model);
    let prep = images
        .for_data(path, &inputs)
        .with_context(|| format!("{what} data {}", path.display()))?;
    let mut ds = Dataset::open(path, &inputs, prep).with_context(|| format!("{what} data"))?;
    if let Some(n) = samples {
        if n == 0 {
            bail!("--{what}-samples must be at least 1");
        }
        ds.select(n, Some(seed));
    }
    if ds.is_empty() {
        bail!("{what} data {} holds no samples", path.display());
    }
    Ok(ds)
}

fn recipe_from(args: &QuantizeArgs) -> anyhow::Result<Recipe> {
    let mut r = match &args.config {
        Some(p) => Recipe::from_toml_file(p)?,
        None => Recipe::default(),
    };
    if let Some(v) = &args.weights {
        r.weights = v.clone();
    }
    if let Some(v) = &args.acts {
        r.acts = v.clone();
    }
    if let Some(v) = &args.first_last {
        r.first_last = Some(v.clone());
    }
    if let Some(v) = &args.calib_method {
        r.calib_method = v.clone();
    }
    if let Some(v) = &args.granularity {
        r.granularity = if v == "per-tensor" {
            Granularity::PerTensor
        } else {
            Granularity::PerChannel
        };
    }
    if let Some(v) = &args.scale {
        r.scale = if v == "pow2" {
            ScaleKind::Pow2
        } else {
            ScaleKind::Float
        };
    }
    if let Some(v) = &args.bias {
        r.bias = if v == "int32" {
            BiasMode::Int32
        } else {
            BiasMode::Float
        };
    }
    if args.signed_acts {
        r.unsigned_acts = false;
    }
    if let Some(v) = args.calib_samples {
        r.calib_samples = Some(v);
    }
    if let Some(v) = args.batch {
        r.batch_size = v;
    }
    if let Some(v) = args.seed {
        r.seed = v;
    }
    if let Some(v) = &args.passes {
        r.passes = v
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    for po in &args.pass_option {
        let (key, value) = po
            .split_once('=')
            .context(format!("--pass-option '{po}': expected PASS.KEY=VALUE"))?;
        let (pass, opt) = key
            .split_once('.')
            .context(format!("--pass-option '{po}': expected PASS.KEY=VALUE"))?;
        // TOML value syntax (numbers, booleans); anything else is a string
        let v = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        r.pass_options
            .entry(pass.trim().to_string())
            .or_default()
            .insert(opt.trim().to_string(), v);
    }
    if let Some(v) = &args.export {
        r.export = match v.as_str() {
            "qdq" => ExportStyle::Qdq,
            "qonnx" => ExportStyle::Qonnx,
            _ => ExportStyle::Auto,
        };
    }
    if let Some(v) = args.opset {
        r.opset = Some(v);
    }
    r.images = r.images.overridden_by(&args.images.options()?);
    r.resolve()?;
    Ok(r)
}

/// Fails unless `path`'s directory exists (output files are created there atomically).
pub fn check_writable(path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!("cannot write {}: it is a directory", path.display());
    }
    Ok(())
}

/// The calibration set: generated by the `noise-level-calibration` pass (the path then names
/// the pass, and its log line is returned) or read from `--calib`.
fn calib_data(
    args: &QuantizeArgs,
    recipe: &Recipe,
    model: &crate::ir::Model,
) -> anyhow::Result<(Dataset, PathBuf, Option<String>)> {
    if recipe.passes.iter().any(|p| p == "noise-level-calibration") {
        if let Some(p) = &args.calib {
            bail!(
                "--calib {} and the noise-level-calibration pass both give calibration data; \
                 use one",
                p.display()
            );
        }
        let (ds, log) = quant::pipeline::noise_level_calibration(model, recipe)?;
        return Ok((ds, PathBuf::from("<noise-level-calibration>"), Some(log)));
    }
    let calib_path = args
        .calib
        .as_ref()
        .context("--calib DATA is required (activation scales come from calibration data)")?;
    let ds = open_dataset(
        calib_path,
        model,
        &recipe.images,
        recipe.calib_samples,
        recipe.seed,
        "calib",
    )?;
    Ok((ds, calib_path.clone(), None))
}

/// Runs `mfq quantize`.
pub fn run(args: QuantizeArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let recipe = recipe_from(&args)?;
    if crate::util::atomic::same_file(&args.model, &args.output) {
        bail!(
            "refusing to overwrite the input model {}",
            args.model.display()
        );
    }
    // Output locations are checked before any work so a bad path fails fast and leaves nothing.
    for p in [
        Some(&args.output),
        args.report.as_ref(),
        args.simulate_out.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        check_writable(p)?;
    }
    let mut model = crate::onnx::load(&args.model)?;
    let (prepare_log, mut pass_records) = quant::prepare_recipe(&mut model, &recipe)?;
    let (calib, calib_path, calib_log) = calib_data(&args, &recipe, &model)?;
    let prepare_log: Vec<String> = prepare_log.into_iter().chain(calib_log).collect();
    let calib_path = &calib_path;
    let eval = match &args.eval {
        Some(p) => Some(open_dataset(
            p,
            &model,
            &recipe.images,
            args.eval_samples,
            recipe.seed,
            "eval",
        )?),
        None => None,
    };
    let t_cal = Instant::now();
    let mut result = quant::quantize(&model, &recipe, &calib)?;
    let pass_log = std::mem::take(&mut result.prepare_log);
    pass_records.append(&mut result.passes);
    result.prepare_log = prepare_log.into_iter().chain(pass_log).collect();
    for line in &result.prepare_log {
        eprintln!("{line}");
    }
    for p in &pass_records {
        eprintln!("pass {}: {:.2} s", p.name, p.wall_s);
    }
    let calib_s = t_cal.elapsed().as_secs_f64();
    let t_eval = Instant::now();
    let eval_report = match &eval {
        Some(ds) => Some(quant::evaluate(&result, ds, recipe.batch_size)?),
        None => None,
    };
    let eval_s = t_eval.elapsed().as_secs_f64();
    let (exported, style, opset) = quant::export(&result, recipe.export, recipe.opset)?;
    let mut inputs: Vec<&Path> = vec![args.model.as_path(), calib_path.as_path()];
    if let Some(p) = &args.eval {
        inputs.push(p.as_path());
    }
    if let Some(p) = &args.config {
        inputs.push(p.as_path());
    }
    crate::onnx::save(&exported, &args.output, &inputs)?;
    if let Some(p) = &args.also_qonnx {
        if crate::util::atomic::same_file(&args.model, p) {
            bail!(
                "refusing to overwrite the input model {}",
                args.model.display()
            );
        }
        match quant::export(&result, ExportStyle::Qonnx, None) {
            Ok((m, _, _)) => crate::onnx::save(&m, p, &inputs)?,
            Err(e) => eprintln!("note: --also-qonnx {} not written: {e}", p.display()),
        }
    }
    if let (Some(si), Some(so)) = (&args.simulate_in, &args.simulate_out) {
        let interp = crate::interp::Interpreter::new(&result.sim)?;
        let feeds: Vec<(String, crate::tensor::Tensor)> = crate::tensor::npz::read(si)?
            .into_iter()
            .map(|(k, t)| (k.strip_prefix("in:").unwrap_or(&k).to_string(), t))
            .collect();
        let outs = interp.run_batched(&feeds, None)?;
        let bytes = crate::tensor::npz::to_bytes(&outs)?;
        let mut ins = inputs.clone();
        ins.push(si.as_path());
        crate::util::atomic::write_atomic(so, &bytes, &ins)?;
    }
    if let Some(e) = &eval_report {
        print_summary(e);
    }
    let cost = cost_summary(&result);
    match &cost {
        Ok(c) => println!(
            "cost: largest dot product n = {}, MAC unit ({} x {}) {} LUT / {} FF, accumulator {} bits; {} MACs per sample",
            c["n"], c["mac"]["wt"].as_str().unwrap_or("?"), c["mac"]["act"].as_str().unwrap_or("?"),
            c["mac"]["lut"], c["mac"]["ff"], c["mac"]["acc_bits"], c["total_macs"]
        ),
        Err(e) => eprintln!("note: no cost estimate: {e}"),
    }
    eprintln!(
        "wrote {} ({style}, opset {opset}) in {:.2} s",
        args.output.display(),
        t0.elapsed().as_secs_f64()
    );
    if let Some(rp) = &args.report {
        let report = serde_json::json!({
            "schema": "mfq.quantize.report/1",
            "mfq_version": env!("CARGO_PKG_VERSION"),
            "model": args.model.display().to_string(),
            "output": args.output.display().to_string(),
            "calib": calib_path.display().to_string(),
            "calib_samples": calib.len(),
            "eval": args.eval.as_ref().map(|p| p.display().to_string()),
            "recipe": recipe,
            "prepare": result.prepare_log,
            "passes": pass_records,
            "export": { "style": style, "opset": opset },
            "layers": result.layers,
            "activations": result.quantized.acts.values().collect::<Vec<_>>(),
            "evaluation": eval_report,
            "cost": cost.as_ref().map_err(|e| e.to_string()).map_or_else(|e| serde_json::json!({ "error": e }), |c| c.clone()),
            "timings_s": { "calibrate_quantize": calib_s, "evaluate": eval_s, "total": t0.elapsed().as_secs_f64() },
        });
        let text = serde_json::to_string_pretty(&report)?;
        crate::util::atomic::write_atomic(rp, text.as_bytes(), &inputs)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Cost figures of the quantized model: the MAC unit of the most common (weights, acts) pair at
/// the largest dot-product length (the paper's metric), every pair's unit, and per-layer
/// descriptions with totals.
fn cost_summary(result: &quant::QuantizeResult) -> anyhow::Result<serde_json::Value> {
    use std::collections::BTreeMap;
    let descs = quant::cost::layer_descs(&result.base, &result.quantized.layers)?;
    anyhow::ensure!(
        !descs.is_empty(),
        "no quantized compute layer with both formats"
    );
    let n = descs.iter().map(|d| d.n).max().unwrap_or(1);
    let mut pairs: BTreeMap<(String, String), (u64, quant_formats::Format, quant_formats::Format)> =
        BTreeMap::new();
    for d in &descs {
        let e = pairs
            .entry((d.weight_format.to_string(), d.act_format.to_string()))
            .or_insert((0, d.weight_format, d.act_format));
        e.0 += d.macs;
    }
    let main = pairs
        .values()
        .max_by_key(|p| p.0)
        .map(|p| (p.1, p.2))
        .context("no format pair")?;
    let mac = quant::cost::mac_cost(&main.0, &main.1, n)?;
    let units: Vec<_> = pairs
        .values()
        .map(|(macs, w, a)| {
            quant::cost::mac_cost(w, a, n).map(|m| serde_json::json!({ "weights": w.to_string(), "acts": a.to_string(), "macs": macs, "estimate": m }))
        })
        .collect::<Result<_, _>>()?;
    let paper = quant::cost::model_cost(&descs, cost_model::layers::Arch::MacPerPair)?;
    let weight_bits: u64 = descs
        .iter()
        .map(|d| d.weight_count * u64::from(d.weight_format.bits()))
        .sum();
    Ok(serde_json::json!({
        "n": n,
        "mac": mac,
        "mac_units": units,
        "total_macs": descs.iter().map(|d| d.macs).sum::<u64>(),
        "weight_memory_bits": weight_bits,
        "mac_per_pair_lut": paper.lut,
        "layers": descs,
    }))
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.2} %", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn print_summary(e: &quant::EvalReport) {
    println!(
        "evaluation on {} samples (output '{}')",
        e.samples, e.output
    );
    println!("| metric | float | quantized |");
    println!("|---|---|---|");
    println!("| top-1 | {} | {} |", pct(e.float_top1), pct(e.quant_top1));
    println!("| top-5 | {} | {} |", pct(e.float_top5), pct(e.quant_top5));
    println!("top-1 agreement with float: {}", pct(e.top1_agreement));
    println!(
        "output SQNR {:.2} dB, cosine {:.5}",
        e.output_sqnr_db, e.output_cosine
    );
    println!();
    println!("| tensor | format | scale | SQNR alone (dB) | SQNR drift (dB) |");
    println!("|---|---|---|---|---|");
    for t in &e.tensors {
        println!(
            "| {} | {} | {:.4e} | {:.2} | {:.2} |",
            t.tensor, t.format, t.scale, t.sqnr_alone_db, t.sqnr_drift_db
        );
    }
}
