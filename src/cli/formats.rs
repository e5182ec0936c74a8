//! `mfq formats`: list the named number formats, show every code of one format, and
//! fake-quantize an f32 `.npy` tensor (per tensor, per channel, per block or MX) so that users
//! and other tools can cross-check mfq's rounding.

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use quant_formats::{Format, Rounding};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `mfq formats`.
#[derive(Debug, Args)]
pub struct FormatsArgs {
    #[command(subcommand)]
    pub action: FormatsAction,
}

/// The `mfq formats` subcommands.
#[derive(Debug, Subcommand)]
pub enum FormatsAction {
    /// List the named presets with max, min normal, min subnormal and code count.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the properties of FORMAT and every code with its bits and value.
    Show {
        /// Format string, e.g. fp8-e4m3fn, e3m2:bias=2, int4n, mxfp4.
        format: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Fake-quantize an f32 .npy tensor: y = Q(x / s) * s.
    Quantize(QuantizeArgs),
}

/// Arguments of `mfq formats quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Format string.
    #[arg(long)]
    pub format: String,
    /// Rounding mode: half-even (default), half-away, half-toward-zero, toward-zero, away,
    /// floor, ceil, stochastic=SEED.
    #[arg(long, default_value = "half-even")]
    pub rounding: String,
    /// Per-tensor scale (default 1).
    #[arg(long, conflicts_with = "scales")]
    pub scale: Option<f32>,
    /// Axis for per-channel scales, per-block scales or MX blocks (MX default: last axis).
    #[arg(long)]
    pub axis: Option<usize>,
    /// Per-channel (or, with --block-size, per-block) scales: comma-separated list or a .npy file.
    #[arg(long)]
    pub scales: Option<String>,
    /// Block size along --axis (blocked scales from --scales, or the MX block size).
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Input tensor (.npy, float32).
    #[arg(long = "in")]
    pub input: PathBuf,
    /// Output tensor (.npy, float32), written atomically.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `mfq formats`.
pub fn run(args: FormatsArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        FormatsAction::List { json } => list(json),
        FormatsAction::Show { format, json } => show(&format, json),
        FormatsAction::Quantize(q) => quantize(&q),
    }
    .map(|()| ExitCode::SUCCESS)
}

fn parse_format(s: &str) -> anyhow::Result<Format> {
    s.parse::<Format>().map_err(|e| anyhow!("--format: {e}"))
}

fn num(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else {
        serde_json::json!(v.to_string())
    }
}

fn properties(name: &str, f: &Format) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "canonical": f.to_string(),
        "bits": f.bits(),
        "signed": f.is_signed(),
        "max": num(f.max_value()),
        "min_normal": num(f.min_normal()),
        "min_subnormal": f.min_subnormal().map(num),
        "code_count": f.code_count(),
        "dynamic_range_binades": num(f.dynamic_range_binades()),
    })
}

fn list(json: bool) -> anyhow::Result<()> {
    let presets = Format::presets();
    if json {
        let v: Vec<_> = presets.iter().map(|(n, f)| properties(n, f)).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<16} {:>4} {:>14} {:>14} {:>14} {:>7}",
        "name", "bits", "max", "min normal", "min subnormal", "codes"
    );
    for (n, f) in &presets {
        let sub = f
            .min_subnormal()
            .map(|v| format!("{v:e}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<16} {:>4} {:>14} {:>14} {:>14} {:>7}",
            n,
            f.bits(),
            format!("{:e}", f.max_value()),
            format!("{:e}", f.min_normal()),
            sub,
            f.code_count()
        );
    }
    Ok(())
}

fn show(format: &str, json: bool) -> anyhow::Result<()> {
    let f = parse_format(format)?;
    let bits = f.bits() as usize;
    let codes = (0..f.code_count() as u32).map(|c| (c, f.decode(c)));
    if json {
        let mut v = properties(format, &f);
        v["codes"] = codes
            .map(|(c, x)| {
                serde_json::json!({"code": c, "bits": format!("{c:0bits$b}"), "value": num(f64::from(x))})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("format {f}: {bits} bits, signed {}, max {:e}, min normal {:e}, min subnormal {}, {} codes, {:.2} binades",
        f.is_signed(), f.max_value(), f.min_normal(),
        f.min_subnormal().map(|v| format!("{v:e}")).unwrap_or_else(|| "none".into()),
        f.code_count(), f.dynamic_range_binades());
    for (c, x) in codes {
        println!("{c:#06x} {c:0bits$b} {x:e}");
    }
    Ok(())
}

fn read_f32(path: &Path, what: &str) -> anyhow::Result<ArrayD<f32>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("{what}: cannot open {}", path.display()))?;
    let a = ArrayD::<f32>::read_npy(std::io::BufReader::new(file)).with_context(|| {
        format!(
            "{what}: {} is not a float32 .npy array (little-endian <f4 expected)",
            path.display()
        )
    })?;
    Ok(a.as_standard_layout().into_owned())
}

fn parse_scales(s: &str) -> anyhow::Result<Vec<f32>> {
    if s.ends_with(".npy") {
        return Ok(read_f32(Path::new(s), "--scales")?.into_iter().collect());
    }
    s.split(',')
        .map(|t| {
            t.trim()
                .parse::<f32>()
                .map_err(|_| anyhow!("--scales: `{t}` is not a number"))
        })
        .collect()
}

fn check_scales(v: &[f32], opt: &str) -> anyhow::Result<()> {
    if let Some(bad) = v.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        bail!("{opt}: scale {bad} is not a finite positive number");
    }
    Ok(())
}

fn quantize(a: &QuantizeArgs) -> anyhow::Result<()> {
    let f = parse_format(&a.format)?;
    let rounding: Rounding = a.rounding.parse().map_err(|e| anyhow!("--rounding: {e}"))?;
    let x = read_f32(&a.input, "--in")?;
    let shape = x.shape().to_vec();
    let xs = x
        .as_slice()
        .ok_or_else(|| anyhow!("--in: {} is not contiguous", a.input.display()))?;
    let mut out = vec![0f32; xs.len()];
    let axis_ok = |axis: usize| -> anyhow::Result<usize> {
        if axis >= shape.len() {
            bail!(
                "--axis {axis} is out of range for the input of shape {shape:?} in {}",
                a.input.display()
            );
        }
        Ok(axis)
    };
    let ctx = || format!("quantizing {} to {}", a.input.display(), f);
    if let Format::Mx(mut mx) = f {
        if a.scale.is_some() || a.scales.is_some() {
            bail!("--scale/--scales: MX format {f} computes its own block scales");
        }
        if shape.is_empty() {
            bail!(
                "--in: {} is a scalar; MX needs at least one axis",
                a.input.display()
            );
        }
        if let Some(bs) = a.block_size {
            mx.block_size =
                u32::try_from(bs).map_err(|_| anyhow!("--block-size {bs} is too large"))?;
        }
        let fm = Format::Mx(mx);
        fm.validate().map_err(|e| anyhow!("--block-size: {e}"))?;
        let axis = axis_ok(a.axis.unwrap_or(shape.len() - 1))?;
        fm.quantizer(rounding)
            .fake_quantize_mx(xs, &shape, axis, &mut out, None)
            .with_context(ctx)?;
    } else if let Some(scales) = &a.scales {
        let scales = parse_scales(scales)?;
        check_scales(&scales, "--scales")?;
        let axis = axis_ok(a.axis.ok_or_else(|| anyhow!("--scales needs --axis"))?)?;
        let q = f.quantizer(rounding);
        match a.block_size {
            Some(bs) => q.fake_quantize_per_block(xs, &shape, axis, bs, &scales, &mut out),
            None => q.fake_quantize_per_channel(xs, &shape, axis, &scales, &mut out),
        }
        .map_err(|e| anyhow!("--scales: {e}"))
        .with_context(ctx)?;
    } else {
        if a.axis.is_some() || a.block_size.is_some() {
            bail!("--axis/--block-size need --scales (or an MX format)");
        }
        let s = a.scale.unwrap_or(1.0);
        check_scales(&[s], "--scale")?;
        f.quantizer(rounding).fake_quantize(xs, s, &mut out);
    }
    let y = ArrayD::from_shape_vec(shape, out)?;
    let mut bytes = Vec::new();
    y.write_npy(&mut bytes)?;
    mfq_atomic(&a.out, &bytes, &a.input)
}

fn mfq_atomic(path: &Path, bytes: &[u8], input: &Path) -> anyhow::Result<()> {
    crate::util::atomic::write_atomic(path, bytes, &[input])
        .with_context(|| format!("--out {}", path.display()))
}
