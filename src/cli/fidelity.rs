//! `mfq fidelity --data IN.npz --reference REF.npz --test LABEL=OUT.npz …`: image fidelity (PSNR,
//! SSIM, SQNR) of one or more models' outputs against reference outputs on the same inputs,
//! overall and grouped by the values of per-sample scalar inputs (e.g. `--group-by sigma` for a
//! denoiser evaluated across noise levels). Outputs come from `mfq run --output` (float) and
//! `mfq quantize --simulate-out` (quantized). Prints Markdown tables; `--report` writes JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use ndarray::{ArrayD, Axis};

use crate::metrics::{PairMetric, Psnr, PsnrPeak, Sqnr, Ssim};
use crate::tensor::Tensor;

/// Arguments of `mfq fidelity`.
#[derive(Debug, Args)]
pub struct FidelityArgs {
    /// The inputs the outputs were computed on (.npz keyed by input name), for `--group-by`.
    #[arg(long)]
    pub data: PathBuf,
    /// Reference outputs (.npz keyed by output name).
    #[arg(long)]
    pub reference: PathBuf,
    /// Outputs to compare, as LABEL=FILE.npz (repeatable).
    #[arg(long, required = true)]
    pub test: Vec<String>,
    /// Output array to compare (default: the reference's only array or `denoised`).
    #[arg(long)]
    pub output_name: Option<String>,
    /// Comma-separated per-sample inputs to group by (e.g. sigma or sigma,difficulty).
    #[arg(long)]
    pub group_by: Option<String>,
    /// PSNR peak and SSIM data range (default: the reference's max − min).
    #[arg(long)]
    pub peak: Option<f64>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    crate::tensor::npz::read(path).with_context(|| format!("reading {}", path.display()))
}

fn pick(
    arrays: &[(String, Tensor)],
    name: &str,
    file: &std::path::Path,
) -> anyhow::Result<ArrayD<f32>> {
    let t = arrays
        .iter()
        .find(|(n, _)| n == name || n.strip_prefix("out:") == Some(name))
        .map(|(_, t)| t)
        .with_context(|| {
            format!(
                "{}: no array '{name}' (arrays: {})",
                file.display(),
                arrays
                    .iter()
                    .map(|a| a.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    Ok(t.to_f32()?)
}

struct Acc {
    psnr: Psnr,
    ssim: Ssim,
    sqnr: Sqnr,
    n: usize,
}

/// Runs `mfq fidelity`.
pub fn run(args: FidelityArgs) -> anyhow::Result<ExitCode> {
    let reference = read(&args.reference)?;
    let out_name = match &args.output_name {
        Some(n) => n.clone(),
        None if reference.len() == 1 => reference[0].0.clone(),
        None => "denoised".into(),
    };
    let r = pick(&reference, &out_name, &args.reference)?;
    if r.ndim() < 3 {
        bail!(
            "output '{out_name}' has shape {:?}; images need at least [n, h, w]",
            r.shape()
        );
    }
    let n = r.shape()[0];
    let peak = match args.peak {
        Some(p) => p,
        None => {
            let (lo, hi) = r
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            f64::from(hi) - f64::from(lo)
        }
    };
    // Group key of every sample.
    let data = read(&args.data)?;
    let keys: Vec<String> = match &args.group_by {
        None => vec![String::new(); n],
        Some(g) => {
            let cols: Vec<(String, ArrayD<f32>)> = g
                .split(',')
                .map(|c| c.trim())
                .filter(|c| !c.is_empty())
                .map(|c| Ok((c.to_string(), pick(&data, c, &args.data)?)))
                .collect::<anyhow::Result<_>>()?;
            for (c, a) in &cols {
                if a.len() != n {
                    bail!(
                        "{}: '{c}' has {} values for {n} samples (one scalar per sample needed)",
                        args.data.display(),
                        a.len()
                    );
                }
            }
            (0..n)
                .map(|i| {
                    cols.iter()
                        .map(|(c, a)| {
                            format!("{c}={:.4}", a.iter().nth(i).copied().unwrap_or(f32::NAN))
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        }
    };
    let mut groups: Vec<String> = Vec::new();
    for k in &keys {
        if !groups.contains(k) {
            groups.push(k.clone());
        }
    }
    let mut rows = Vec::new();
    let mut json_tests = Vec::new();
    for spec in &args.test {
        let (label, path) = spec
            .split_once('=')
            .with_context(|| format!("--test {spec}: expected LABEL=FILE.npz"))?;
        let path = PathBuf::from(path);
        let t = pick(&read(&path)?, &out_name, &path)?;
        if t.shape() != r.shape() {
            bail!(
                "{}: '{out_name}' has shape {:?}, the reference {:?}",
                path.display(),
                t.shape(),
                r.shape()
            );
        }
        let mk = || -> anyhow::Result<Acc> {
            Ok(Acc {
                psnr: Psnr::new(PsnrPeak::Fixed(peak)),
                ssim: Ssim::new(peak)?,
                sqnr: Sqnr::default(),
                n: 0,
            })
        };
        let mut all = mk()?;
        let mut per: Vec<Acc> = groups.iter().map(|_| mk()).collect::<anyhow::Result<_>>()?;
        for (i, key) in keys.iter().enumerate() {
            let ri = r.index_axis(Axis(0), i).insert_axis(Axis(0));
            let ti = t.index_axis(Axis(0), i).insert_axis(Axis(0));
            let g = groups.iter().position(|k| k == key).unwrap_or(0);
            for acc in [&mut all, &mut per[g]] {
                acc.psnr.update(ri.view(), ti.view())?;
                acc.ssim.update(ri.view(), ti.view())?;
                acc.sqnr.update(ri.view(), ti.view())?;
                acc.n += 1;
            }
        }
        let fin = |a: &Acc| -> (f64, f64, f64) {
            (
                a.psnr.finish().unwrap_or(f64::NAN),
                a.ssim.finish().unwrap_or(f64::NAN),
                a.sqnr.finish().unwrap_or(f64::NAN),
            )
        };
        let a = fin(&all);
        let p: Vec<(f64, f64, f64)> = per.iter().map(fin).collect();
        json_tests.push(serde_json::json!({
            "label": label,
            "file": path.display().to_string(),
            "all": { "samples": all.n, "psnr_db": a.0, "ssim": a.1, "sqnr_db": a.2 },
            "groups": groups.iter().zip(&p).zip(&per).map(|((g, v), acc)| serde_json::json!({
                "group": g, "samples": acc.n, "psnr_db": v.0, "ssim": v.1, "sqnr_db": v.2
            })).collect::<Vec<_>>(),
        }));
        rows.push((label.to_string(), a, p));
    }
    let head: Vec<String> = std::iter::once("all".to_string())
        .chain(groups.iter().filter(|g| !g.is_empty()).cloned())
        .collect();
    let grouped = args.group_by.is_some();
    for (title, pickf) in [("PSNR (dB)", 0usize), ("SSIM", 1usize)] {
        println!(
            "{title} of '{out_name}' against {} (peak {peak}), {n} samples",
            args.reference.display()
        );
        println!();
        println!("| config | {} |", head.join(" | "));
        println!("|---|{}", "---|".repeat(head.len()));
        for (label, a, p) in &rows {
            let get = |v: &(f64, f64, f64)| match pickf {
                0 => format!("{:.2}", v.0),
                _ => format!("{:.4}", v.1),
            };
            let mut cells = vec![get(a)];
            if grouped {
                cells.extend(p.iter().map(get));
            }
            println!("| {label} | {} |", cells.join(" | "));
        }
        println!();
    }
    if let Some(rp) = &args.report {
        let j = serde_json::json!({
            "schema": "mfq.fidelity/1",
            "data": args.data.display().to_string(),
            "reference": args.reference.display().to_string(),
            "output": out_name,
            "peak": peak,
            "group_by": args.group_by,
            "tests": json_tests,
        });
        let ins = [args.data.as_path(), args.reference.as_path()];
        crate::util::atomic::write_atomic(rp, serde_json::to_string_pretty(&j)?.as_bytes(), &ins)?;
    }
    Ok(ExitCode::SUCCESS)
}
