//! `mfq inspect MODEL`: opsets, inputs/outputs, op histogram, parameter count, per-layer MACs
//! and dot-product lengths (shapes inferred at batch 1), and the ops mfq cannot run.

use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `mfq inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// ONNX model file.
    pub model: PathBuf,
    /// Do not print the per-layer MAC table (totals only).
    #[arg(long)]
    pub summary: bool,
}

fn dims(s: &[usize]) -> String {
    format!(
        "[{}]",
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// Runs `mfq inspect`. Exit code 0 even when some ops are unsupported (they are listed).
pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    use crate::ir::dump::shape_str;
    let m = crate::onnx::load(&args.model)?;
    let g = &m.graph;
    println!("model: {}", args.model.display());
    println!(
        "ir_version {}  producer {} {}",
        m.meta.ir_version, m.meta.producer_name, m.meta.producer_version
    );
    for (d, v) in &m.opsets {
        println!("opset {} = {v}", if d.is_empty() { "ai.onnx" } else { d });
    }
    for v in g.required_inputs() {
        let val = g.value(v);
        println!(
            "input  {}: {} {}",
            val.name,
            val.dtype.map(|d| d.name()).unwrap_or("?"),
            shape_str(val.shape.as_ref())
        );
    }
    for &v in &g.outputs {
        let val = g.value(v);
        println!(
            "output {}: {} {}",
            val.name,
            val.dtype.map(|d| d.name()).unwrap_or("?"),
            shape_str(val.shape.as_ref())
        );
    }
    let mut hist: BTreeMap<String, usize> = BTreeMap::new();
    let mut unsupported: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for n in g.node_ids() {
        let node = g.node(n);
        let key = if node.domain.is_empty() {
            node.op_type.clone()
        } else {
            format!("{}::{}", node.domain, node.op_type)
        };
        *hist.entry(key.clone()).or_default() += 1;
        if let Err(e) = crate::interp::build_op(&m, n) {
            let ent = unsupported.entry(key).or_insert((0, e.to_string()));
            ent.0 += 1;
        }
    }
    let mut h: Vec<_> = hist.into_iter().collect();
    h.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    println!("nodes: {}", g.node_count());
    for (op, n) in &h {
        println!("  {op:<28} {n}");
    }
    let mut params = 0usize;
    let mut seen = std::collections::HashSet::new();
    for n in g.node_ids() {
        for v in g.node(n).inputs.iter().flatten() {
            let val = g.value(*v);
            if let Some(c) = &val.constant {
                let float = matches!(
                    c.dtype(),
                    crate::tensor::DType::F32
                        | crate::tensor::DType::F16
                        | crate::tensor::DType::F64
                        | crate::tensor::DType::Bf16
                );
                if float && g.producer(*v).is_none() && seen.insert(*v) {
                    params += c.len();
                }
            }
        }
    }
    println!("parameters: {params} (floating-point initializer elements)");
    if unsupported.is_empty() {
        println!("unsupported ops: none");
    } else {
        println!("unsupported ops:");
        for (op, (n, why)) in &unsupported {
            println!("  {op} ×{n}: {why}");
        }
        println!("MACs: not computed (the model cannot run)");
        return Ok(ExitCode::SUCCESS);
    }
    let mut sm = m.clone();
    if let Err(e) =
        crate::ir::fold::fix_batch(&mut sm, 1).and_then(|_| crate::ir::fold::infer_shapes(&mut sm))
    {
        println!("MACs: not computed ({e})");
        return Ok(ExitCode::SUCCESS);
    }
    let sg = &sm.graph;
    let mut total = 0u64;
    let mut longest: Option<(usize, String)> = None;
    if !args.summary {
        println!(
            "{:<40} {:<16} {:>14} {:>8}  output",
            "layer (batch 1)", "op", "MACs", "dot len"
        );
    }
    for n in sg.topo_order()? {
        let node = sg.node(n);
        let op = crate::interp::build_op(&sm, n)?;
        let ins: Vec<Option<Vec<usize>>> = node
            .inputs
            .iter()
            .map(|i| i.and_then(|v| sg.value(v).static_shape()))
            .collect();
        let outs: Vec<Vec<usize>> = node
            .outputs
            .iter()
            .map(|o| {
                o.and_then(|v| sg.value(v).static_shape())
                    .unwrap_or_default()
            })
            .collect();
        let in_refs: Vec<Option<&[usize]>> = ins.iter().map(|s| s.as_deref()).collect();
        let out_refs: Vec<&[usize]> = outs.iter().map(|s| s.as_slice()).collect();
        let macs = op.macs(&in_refs, &out_refs);
        if macs == 0 {
            continue;
        }
        total += macs;
        let dl = op.dot_length(&in_refs);
        if let Some(d) = dl {
            if longest.as_ref().is_none_or(|l| d > l.0) {
                longest = Some((d, node.label()));
            }
        }
        if !args.summary {
            println!(
                "{:<40} {:<16} {:>14} {:>8}  {}",
                node.label(),
                node.op_type,
                macs,
                dl.map(|d| d.to_string()).unwrap_or_default(),
                outs.first().map(|s| dims(s)).unwrap_or_default()
            );
        }
    }
    println!(
        "total MACs per sample: {total} ({:.3} G)",
        total as f64 / 1e9
    );
    match longest {
        Some((d, l)) => println!("largest dot-product length: {d} (node {l})"),
        None => println!("largest dot-product length: none"),
    }
    Ok(ExitCode::SUCCESS)
}
