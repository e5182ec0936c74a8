//! `mfq cost`: FPGA cost of one MAC unit (`--mac`) or of a model given as layer descriptions
//! (`--layers layers.json`), and `mfq cost fit` to fit coefficient sets to synthesis results.

use crate::util::atomic::write_atomic;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use cost_model::estimate::{builtin_for, estimate_mac_with, Device, MacOptions};
use cost_model::fit::{fit, parse_results, CoeffSet};
use cost_model::layers::{
    estimate_model, finn_estimate, qonnx_counts, Arch, LayerDesc, ModelOptions, WeightMemory,
};
use cost_model::operand::Operand;
use quant_formats::Format;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `mfq cost`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CostArgs {
    #[command(subcommand)]
    pub action: Option<CostAction>,
    /// Float ONNX model to cost with --weights and --acts (per-layer MACs, dot lengths,
    /// accumulator widths, memory, the chosen architecture and QONNX counts).
    #[arg(conflicts_with_all = ["mac", "layers"])]
    pub model: Option<PathBuf>,
    /// Format of the first and last compute layers (with MODEL).
    #[arg(long, requires = "model")]
    pub first_last: Option<String>,
    /// Cost one MAC unit (needs --weights, --acts, --n).
    #[arg(long)]
    pub mac: bool,
    /// Layer descriptions (JSON list of cost_model::layers::LayerDesc) to cost as a model.
    #[arg(long, conflicts_with = "mac")]
    pub layers: Option<PathBuf>,
    /// Weight format (int4, uint8, e4m3, e2m1:nosub, fp8-e4m3fn, ...).
    #[arg(long)]
    pub weights: Option<String>,
    /// Activation format.
    #[arg(long)]
    pub acts: Option<String>,
    /// Dot-product length.
    #[arg(long)]
    pub n: Option<u64>,
    /// Device family: ultrascale+, versal, 7series.
    #[arg(long, default_value = "ultrascale+")]
    pub device: String,
    /// Map multipliers to DSP blocks.
    #[arg(long)]
    pub dsp: bool,
    /// Datapath: tc, sm_addsub, sm_negpre, sm_negpost (default: tc for integers, sm_addsub
    /// otherwise).
    #[arg(long)]
    pub datapath: Option<String>,
    /// Coefficient set (JSON from `mfq cost fit`) instead of the built-in one.
    #[arg(long)]
    pub coeffs: Option<PathBuf>,
    /// Architecture for --layers: mac (one MAC unit per format pair) or dataflow.
    #[arg(long, default_value = "mac")]
    pub arch: String,
    /// Target frames per second (dataflow).
    #[arg(long, default_value_t = 1000.0)]
    pub fps: f64,
    /// Clock in MHz (dataflow).
    #[arg(long, default_value_t = 200.0)]
    pub clock: f64,
    /// Weight memory: auto, bram, uram, lutram (dataflow).
    #[arg(long, default_value = "auto")]
    pub memory: String,
    /// Also report FINN's own formulas at the solved folding (dataflow).
    #[arg(long)]
    pub finn: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Print per-layer CSV.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

/// Subcommands of `mfq cost`.
#[derive(Debug, Subcommand)]
pub enum CostAction {
    /// Fit a coefficient set to a synthesis results CSV (scripts/eda/synth_grid.sh format).
    Fit {
        /// Results CSV.
        results: PathBuf,
        /// Output coefficient JSON.
        #[arg(short, long)]
        output: PathBuf,
        /// Only rows of this flow (nodsp, dsp); required when the file mixes flows.
        #[arg(long)]
        flow: Option<String>,
        /// Only rows of this device family (xcup, xc7).
        #[arg(long)]
        family: Option<String>,
        /// Date recorded in the provenance (YYYY-MM-DD; default today, UTC).
        #[arg(long)]
        date: Option<String>,
    },
}

/// Runs `mfq cost`.
/// Layer descriptions of an ONNX model quantized with the given formats (batch 1).
fn model_layers(path: &std::path::Path, args: &CostArgs) -> anyhow::Result<Vec<LayerDesc>> {
    let (Some(w), Some(a)) = (&args.weights, &args.acts) else {
        bail!("costing a model needs --weights FMT --acts FMT");
    };
    let mut m = crate::onnx::load(path)?;
    let recipe = crate::quant::Recipe {
        weights: w.clone(),
        acts: a.clone(),
        first_last: args.first_last.clone(),
        ..crate::quant::Recipe::default()
    };
    crate::quant::prepare(&mut m, &recipe.passes)?;
    let layers = crate::quant::plan::plan(&m, &recipe.resolve()?)?;
    Ok(crate::quant::cost::layer_descs(&m, &layers)?)
}

pub fn run(args: CostArgs) -> anyhow::Result<ExitCode> {
    if let Some(CostAction::Fit {
        results,
        output,
        flow,
        family,
        date,
    }) = &args.action
    {
        return run_fit(
            results,
            output,
            flow.as_deref(),
            family.as_deref(),
            date.clone(),
        );
    }
    let device = Device::parse(&args.device)?;
    let datapath = match &args.datapath {
        Some(d) => Some(cost_model::rtl::Datapath::from_name(d).with_context(|| {
            format!("--datapath {d}: expected tc, sm_addsub, sm_negpre or sm_negpost")
        })?),
        None => None,
    };
    let mac = MacOptions {
        device,
        use_dsp: args.dsp,
        datapath,
    };
    let custom = match &args.coeffs {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading coefficient set {}", p.display()))?;
            Some(CoeffSet::from_json(&text, &p.display().to_string())?)
        }
        None => None,
    };
    if args.mac {
        let (Some(w), Some(a), Some(n)) = (&args.weights, &args.acts, args.n) else {
            bail!("--mac needs --weights FMT --acts FMT --n N");
        };
        let wt = parse_operand(w, "--weights")?;
        let act = parse_operand(a, "--acts")?;
        let set = match &custom {
            Some(s) => s,
            None => builtin_for(device, args.dsp)?,
        };
        let e = estimate_mac_with(set, &act, &wt, n, &mac)?;
        if args.json {
            println!("{}", serde_json::to_string(&e)?);
        } else {
            println!(
                "{} x {} (n = {n}, {:?}, datapath {}): {} LUT, {} FF, {} carry, {} DSP, accumulator {} bits\ncoefficients: {}",
                e.act, e.wt, device, e.datapath, e.lut, e.ff, e.carry, e.dsp, e.acc_bits, e.coefficients
            );
            if let Some(note) = &e.device_note {
                println!("note: {note}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if custom.is_some() {
        bail!("--coeffs applies to --mac only");
    }
    if let (Some(mp), None, None) = (&args.model, &args.weights, &args.acts) {
        return run_graph_counts(mp, &args);
    }
    let layers: Vec<LayerDesc> = match (&args.model, &args.layers) {
        (Some(mp), _) => model_layers(mp, &args)?,
        (None, Some(lp)) => {
            let text = std::fs::read_to_string(lp)
                .with_context(|| format!("reading layers {}", lp.display()))?;
            serde_json::from_str(&text).with_context(|| {
                format!("{}: not a JSON list of layer descriptions", lp.display())
            })?
        }
        (None, None) => bail!(
            "give MODEL --weights FMT --acts FMT, --mac (one MAC unit) or --layers layers.json"
        ),
    };
    let arch = match args.arch.as_str() {
        "mac" => Arch::MacPerPair,
        "dataflow" => Arch::Dataflow {
            fps: args.fps,
            clock_mhz: args.clock,
        },
        other => bail!("--arch {other}: expected mac or dataflow"),
    };
    let memory = match args.memory.as_str() {
        "auto" => WeightMemory::Auto,
        "bram" => WeightMemory::Bram,
        "uram" => WeightMemory::Uram,
        "lutram" => WeightMemory::Lutram,
        other => bail!("--memory {other}: expected auto, bram, uram or lutram"),
    };
    let est = estimate_model(&layers, &ModelOptions { mac, arch, memory })?;
    let finn = if args.finn {
        let mut v = Vec::new();
        for (l, e) in layers.iter().zip(&est.layers) {
            v.push(finn_estimate(l, e.pe, e.simd, args.dsp, memory, device)?);
        }
        Some(v)
    } else {
        None
    };
    let counts = qonnx_counts(&layers);
    if args.json {
        let obj = serde_json::json!({ "estimate": est, "qonnx": counts, "finn": finn });
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else if args.csv {
        println!(
            "layer,pair,macs,n,acc_bits,pe,simd,cycles,lut,ff,carry,dsp,bram18,uram,lutram_lut"
        );
        for l in &est.layers {
            println!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                l.name,
                l.pair,
                l.macs,
                l.n,
                l.acc_bits,
                l.pe,
                l.simd,
                l.cycles,
                l.lut,
                l.ff,
                l.carry,
                l.dsp,
                l.memory.bram18,
                l.memory.uram,
                l.memory.lutram_lut
            );
        }
    } else {
        println!(
            "{} layers, {} MACs: {} LUT, {} FF, {} carry, {} DSP, {} BRAM18, {} URAM; {} cycles/frame{}",
            est.layers.len(),
            est.total_macs,
            est.lut,
            est.ff,
            est.carry,
            est.dsp,
            est.bram18,
            est.uram,
            est.cycles_per_frame,
            if est.meets_target { "" } else { " (target throughput NOT met)" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `mfq cost MODEL` without formats: every compute node of the graph as it is (float, or a
/// QONNX export whose quantizers give the datatypes), counted in QONNX's convention.
fn run_graph_counts(path: &Path, args: &CostArgs) -> anyhow::Result<ExitCode> {
    if args.first_last.is_some() {
        bail!("--first-last needs --weights FMT --acts FMT");
    }
    let m = crate::onnx::load(path)?;
    let c = crate::quant::cost::graph_counts(&m)
        .with_context(|| format!("counting {}", path.display()))?;
    if args.json {
        let obj = serde_json::json!({
            "model": path.display().to_string(),
            "layers": c.nodes,
            "qonnx": c.qonnx,
            "qonnx_skipped": c.qonnx_skipped,
            "total_macs": c.total_macs,
        });
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else if args.csv {
        println!("layer,op,macs,weight_elems,weight_nonzero,output_elems,act_type,weight_type,output_type");
        for n in &c.nodes {
            println!(
                "{},{},{},{},{},{},\"{}\",\"{}\",\"{}\"",
                n.name,
                n.op,
                n.macs,
                n.weight_elems,
                n.weight_nonzero.map(|z| z.to_string()).unwrap_or_default(),
                n.output_elems,
                n.act.name,
                n.weight.name,
                n.output.name
            );
        }
    } else {
        println!(
            "{}: {} compute layers, {} MACs per inference (batch 1)",
            path.display(),
            c.nodes.len(),
            c.total_macs
        );
        for (k, v) in &c.qonnx {
            println!("  {k}: {v}");
        }
        for (op, macs) in &c.qonnx_skipped {
            println!("  not costed by QONNX inference_cost: {op} ({macs} MACs)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = (secs / 86400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn run_fit(
    results: &Path,
    output: &Path,
    flow: Option<&str>,
    family: Option<&str>,
    date: Option<String>,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(results)
        .with_context(|| format!("reading results {}", results.display()))?;
    let src = results.display().to_string();
    let mut rows = parse_results(&text, &src)?;
    rows.retain(|r| flow.is_none_or(|f| r.flow == f) && family.is_none_or(|f| r.family == f));
    let set = fit(&rows, &src, &date.unwrap_or_else(today_utc))?;
    write_atomic(
        output,
        format!("{}\n", set.to_json()).as_bytes(),
        &[results],
    )?;
    for (dp, m) in &set.models {
        eprintln!(
            "{dp}: {} fit / {} held out; LUT MAPE held-out {:.1} % (max {:.1} %), fit {:.1} %; by family {:?}; FF = acc_bits: {}",
            m.quality.rows_fit,
            m.quality.rows_holdout,
            m.quality.lut_mape_holdout,
            m.quality.lut_max_ape_holdout,
            m.quality.lut_mape_fit,
            m.holdout_mape_by_family,
            m.quality.ff_equals_acc_bits
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses a format string with the shared quant-formats syntax (`int4`, `uint8`, `e4m3`,
/// `e2m1:nosub`, `fp8-e4m3fn`, ...).
pub fn parse_format(s: &str) -> anyhow::Result<Format> {
    s.parse::<Format>()
        .map_err(|e| anyhow::anyhow!("format {s:?}: {e}"))
}

/// Parses a format and converts it to the datapath view; `what` names the option.
pub fn parse_operand(s: &str, what: &str) -> anyhow::Result<Operand> {
    let f = parse_format(s).with_context(|| what.to_string())?;
    Operand::from_format(&f).with_context(|| format!("{what} {s}"))
}
