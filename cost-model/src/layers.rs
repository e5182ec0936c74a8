//! Per-layer and per-model estimates over plain layer descriptions: MAC counts, accumulator
//! widths, weight memory (BRAM18/URAM/LUTRAM), and two architectures:
//!
//! - [`Arch::MacPerPair`] — the seed paper's metric: one MAC unit per distinct (activation,
//!   weight) format pair, sized for the largest n among the layers using that pair;
//! - [`Arch::Dataflow`] — a FINN-style dataflow accelerator: one matrix-vector unit per layer
//!   with PE output channels × SIMD inputs in parallel, folded so that every layer meets a
//!   target frame rate at a clock. Each PE has SIMD multipliers, an adder tree and one
//!   accumulator.
//!
//! [`finn_estimate`] reproduces FINN's own (HLS back end) integer formulas for comparison.

use crate::accum::{ceil_log2, kulisch_width};
use crate::estimate::{estimate_mac, Device, MacEstimate, MacOptions};
use crate::operand::Operand;
use crate::CostError;
use quant_formats::Format;
use std::collections::BTreeMap;

/// One Conv/MatMul/Gemm layer as the cost model sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerDesc {
    /// Layer (node) name.
    pub name: String,
    /// ONNX op type (Conv, MatMul, Gemm).
    pub op: String,
    /// Multiply-accumulates per inference (batch included), QONNX convention.
    pub macs: u64,
    /// Dot-product length (Cin/groups · prod(kernel) for Conv, K for MatMul/Gemm).
    pub n: u64,
    /// Output channels / columns (rows of the weight matrix, FINN's MH).
    pub out_channels: u64,
    /// Weight elements.
    pub weight_count: u64,
    /// Non-zero weight elements (QONNX discounts sparsity); `None` = all non-zero.
    pub weight_nonzero: Option<u64>,
    /// Output elements.
    pub output_count: u64,
    /// Weight format.
    pub weight_format: Format,
    /// Activation (input) format.
    pub act_format: Format,
    /// Output format; `None` = FLOAT32.
    pub output_format: Option<Format>,
}

/// Where weights live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightMemory {
    /// LUTRAM for shallow memories (depth ≤ 64·k with k = 2), BRAM18 otherwise.
    Auto,
    /// Block RAM (18 kb primitives).
    Bram,
    /// UltraRAM (288 kb primitives); UltraScale+ and Versal only.
    Uram,
    /// Distributed RAM in LUTs.
    Lutram,
}

/// Architecture to estimate.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "arch", rename_all = "lowercase")]
pub enum Arch {
    /// One MAC unit per format pair (paper metric).
    MacPerPair,
    /// FINN-style dataflow folded to a target throughput.
    Dataflow {
        /// Target frames per second.
        fps: f64,
        /// Clock in MHz.
        clock_mhz: f64,
    },
}

/// Options of a model estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelOptions {
    /// MAC options (device, DSP use, datapath).
    pub mac: MacOptions,
    /// Architecture.
    pub arch: Arch,
    /// Weight memory kind.
    pub memory: WeightMemory,
}

/// Weight memory of one layer.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemoryEstimate {
    /// Memory depth (words).
    pub depth: u64,
    /// Memory width (bits).
    pub width: u64,
    /// BRAM18 primitives.
    pub bram18: u64,
    /// URAM primitives.
    pub uram: u64,
    /// LUTs used as distributed RAM.
    pub lutram_lut: u64,
}

/// Estimate of one layer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerEstimate {
    /// Layer name.
    pub name: String,
    /// MACs per inference.
    pub macs: u64,
    /// Dot-product length.
    pub n: u64,
    /// Kulisch accumulator width of this layer's MAC.
    pub acc_bits: u32,
    /// Activation × weight labels.
    pub pair: String,
    /// PE (output channels in parallel), dataflow only.
    pub pe: u64,
    /// SIMD (inputs in parallel), dataflow only.
    pub simd: u64,
    /// Cycles per frame, dataflow only.
    pub cycles: u64,
    /// LUTs.
    pub lut: u64,
    /// Flip-flops.
    pub ff: u64,
    /// Carry cells.
    pub carry: u64,
    /// DSP blocks.
    pub dsp: u64,
    /// Weight memory.
    pub memory: MemoryEstimate,
}

/// Estimate of a model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelEstimate {
    /// Architecture estimated.
    pub arch: Arch,
    /// Per-layer results (dataflow) — for the paper metric, the layers' MAC counts and widths.
    pub layers: Vec<LayerEstimate>,
    /// MAC units per format pair (paper metric; empty for dataflow).
    pub mac_units: Vec<MacEstimate>,
    /// Total LUTs (logic plus LUTRAM).
    pub lut: u64,
    /// Total flip-flops.
    pub ff: u64,
    /// Total carry cells.
    pub carry: u64,
    /// Total DSPs.
    pub dsp: u64,
    /// Total BRAM18.
    pub bram18: u64,
    /// Total URAM.
    pub uram: u64,
    /// Total MACs per inference.
    pub total_macs: u64,
    /// Cycles per frame of the slowest layer (dataflow initiation interval).
    pub cycles_per_frame: u64,
    /// Sum of per-layer cycles (latency bound of one frame through the pipeline).
    pub latency_cycles: u64,
    /// True when every layer meets the target frame rate (dataflow).
    pub meets_target: bool,
}

fn operands(l: &LayerDesc) -> Result<(Operand, Operand), CostError> {
    let a = Operand::from_format(&l.act_format)
        .map_err(|e| CostError::Invalid(format!("layer {}: activations: {e}", l.name)))?;
    let w = Operand::from_format(&l.weight_format)
        .map_err(|e| CostError::Invalid(format!("layer {}: weights: {e}", l.name)))?;
    Ok((a, w))
}

fn validate(l: &LayerDesc) -> Result<(), CostError> {
    if l.n == 0 || l.out_channels == 0 {
        return Err(CostError::Invalid(format!(
            "layer {}: n and out_channels must be positive",
            l.name
        )));
    }
    if l.macs % (l.n * l.out_channels) != 0 {
        return Err(CostError::Invalid(format!(
            "layer {}: {} MACs are not a multiple of n·out_channels = {}",
            l.name,
            l.macs,
            l.n * l.out_channels
        )));
    }
    Ok(())
}

/// FINN's BRAM18 count for a memory of `depth` words × `width` bits.
pub fn bram18(depth: u64, width: u64) -> u64 {
    let d = depth;
    match width {
        0 => 0,
        1 => d.div_ceil(16384),
        2 => d.div_ceil(8192),
        3..=4 => d.div_ceil(4096) * width.div_ceil(4),
        5..=9 => d.div_ceil(2048) * width.div_ceil(9),
        _ if width <= 18 || d > 512 => d.div_ceil(1024) * width.div_ceil(18),
        _ => d.div_ceil(512) * width.div_ceil(36),
    }
}

/// Weight memory of a layer with `pe·simd` weights read per cycle.
pub fn weight_memory(
    weights: u64,
    wbits: u64,
    pe: u64,
    simd: u64,
    kind: WeightMemory,
    device: Device,
) -> Result<MemoryEstimate, CostError> {
    let width = pe * simd * wbits;
    let depth = weights.div_ceil(pe * simd);
    let mut m = MemoryEstimate {
        depth,
        width,
        ..Default::default()
    };
    let kind = match kind {
        WeightMemory::Auto if depth <= 128 => WeightMemory::Lutram,
        WeightMemory::Auto => WeightMemory::Bram,
        k => k,
    };
    match kind {
        WeightMemory::Lutram => m.lutram_lut = width * depth.div_ceil(64),
        WeightMemory::Bram | WeightMemory::Auto => m.bram18 = bram18(depth, width),
        WeightMemory::Uram => {
            if !device.has_uram() {
                return Err(CostError::Invalid(format!(
                    "--memory uram: device {device:?} has no UltraRAM"
                )));
            }
            m.uram = width.div_ceil(72) * depth.div_ceil(4096);
        }
    }
    Ok(m)
}

fn divisors(x: u64) -> Vec<u64> {
    let mut d: Vec<u64> = (1..=x.min(1 << 20)).filter(|k| x % k == 0).collect();
    d.sort_unstable();
    d
}

/// Folding (PE | out_channels, SIMD | n) meeting `max_cycles` for `vectors` input vectors per
/// frame. Candidates are visited in one fixed order — SIMD through the divisors of n first,
/// then PE through the divisors of out_channels with SIMD = n — so both factors only grow
/// with the target throughput and so does every resource. Returns (pe, simd, cycles, met).
pub fn solve_folding(n: u64, mh: u64, vectors: u64, max_cycles: f64) -> (u64, u64, u64, bool) {
    let order = divisors(n)
        .into_iter()
        .map(|s| (1, s))
        .chain(divisors(mh).into_iter().skip(1).map(|p| (p, n)));
    for (pe, simd) in order {
        let cycles = vectors * (mh / pe) * (n / simd);
        if (cycles as f64) <= max_cycles {
            return (pe, simd, cycles, true);
        }
    }
    (mh, n, vectors, false)
}

/// Estimates a model given as layer descriptions.
pub fn estimate_model(
    layers: &[LayerDesc],
    opts: &ModelOptions,
) -> Result<ModelEstimate, CostError> {
    let mut out = ModelEstimate {
        arch: opts.arch,
        layers: vec![],
        mac_units: vec![],
        lut: 0,
        ff: 0,
        carry: 0,
        dsp: 0,
        bram18: 0,
        uram: 0,
        total_macs: 0,
        cycles_per_frame: 0,
        latency_cycles: 0,
        meets_target: true,
    };
    for l in layers {
        validate(l)?;
        out.total_macs += l.macs;
    }
    match opts.arch {
        Arch::MacPerPair => {
            // Largest n per (activation, weight) pair, in first-seen order.
            let mut pairs: Vec<(Operand, Operand, u64)> = vec![];
            for l in layers {
                let (a, w) = operands(l)?;
                match pairs.iter_mut().find(|(pa, pw, _)| *pa == a && *pw == w) {
                    Some(p) => p.2 = p.2.max(l.n),
                    None => pairs.push((a, w, l.n)),
                }
                out.layers.push(LayerEstimate {
                    name: l.name.clone(),
                    macs: l.macs,
                    n: l.n,
                    acc_bits: kulisch_width(&a, &w, l.n)?,
                    pair: format!("{}x{}", a.label(), w.label()),
                    pe: 1,
                    simd: 1,
                    cycles: l.macs,
                    lut: 0,
                    ff: 0,
                    carry: 0,
                    dsp: 0,
                    memory: MemoryEstimate::default(),
                });
            }
            for (a, w, n) in pairs {
                let m = estimate_mac(&a, &w, n, &opts.mac)?;
                out.lut += m.lut;
                out.ff += m.ff;
                out.carry += m.carry;
                out.dsp += m.dsp;
                out.mac_units.push(m);
            }
            out.cycles_per_frame = out.total_macs;
            out.latency_cycles = out.total_macs;
        }
        Arch::Dataflow { fps, clock_mhz } => {
            if !(fps > 0.0 && clock_mhz > 0.0) {
                return Err(CostError::Invalid(format!(
                    "--fps {fps} / --clock {clock_mhz}: both must be positive"
                )));
            }
            let budget = clock_mhz * 1e6 / fps;
            for l in layers {
                let (a, w) = operands(l)?;
                let vectors = l.macs / (l.n * l.out_channels);
                let (pe, simd, cycles, met) = solve_folding(l.n, l.out_channels, vectors, budget);
                out.meets_target &= met;
                let m = estimate_mac(&a, &w, l.n, &opts.mac)?;
                let mem = weight_memory(
                    l.weight_count,
                    u64::from(w.code_bits()),
                    pe,
                    simd,
                    opts.memory,
                    opts.mac.device,
                )?;
                // Per PE: SIMD multipliers (MAC minus its accumulator), an adder tree of
                // SIMD−1 adders on the product frame (1 LUT per bit), one accumulator.
                let mult_lut = (m.lut as f64 - m.acc_lut).max(0.0);
                let tree_bits = (simd - 1) * u64::from(m.frame_bits + ceil_log2(simd));
                let pe_lut = simd as f64 * mult_lut + tree_bits as f64 + m.acc_lut;
                let cb = u64::from(opts.mac.device.carry_bits());
                let acc_carry = u64::from(m.acc_bits).div_ceil(cb);
                let pe_carry = simd * m.carry.saturating_sub(acc_carry)
                    + (simd - 1) * u64::from(m.frame_bits + ceil_log2(simd)).div_ceil(cb)
                    + acc_carry;
                let le = LayerEstimate {
                    name: l.name.clone(),
                    macs: l.macs,
                    n: l.n,
                    acc_bits: m.acc_bits,
                    pair: format!("{}x{}", a.label(), w.label()),
                    pe,
                    simd,
                    cycles,
                    lut: (pe as f64 * pe_lut).round() as u64 + mem.lutram_lut,
                    ff: pe * u64::from(m.acc_bits),
                    carry: pe * pe_carry,
                    dsp: pe * simd * m.dsp,
                    memory: mem,
                };
                out.lut += le.lut;
                out.ff += le.ff;
                out.carry += le.carry;
                out.dsp += le.dsp;
                out.bram18 += le.memory.bram18;
                out.uram += le.memory.uram;
                out.cycles_per_frame = out.cycles_per_frame.max(cycles);
                out.latency_cycles += cycles;
                out.layers.push(le);
            }
        }
    }
    Ok(out)
}

/// FINN's own (HLS back end) estimate of one MVAU layer, for comparison.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FinnEstimate {
    /// Layer name.
    pub name: String,
    /// LUTs.
    pub lut: u64,
    /// DSPs.
    pub dsp: u64,
    /// BRAM18.
    pub bram18: u64,
    /// URAM.
    pub uram: u64,
    /// Cycles per frame.
    pub cycles: u64,
}

/// FINN's formulas for one layer at folding (`pe`, `simd`): LUT = 300 + 1.1·P·(mult + add +
/// acc) + LUTRAM term, DSP = P·Q·ceil((W+A)/48) when multipliers use DSPs. Threshold
/// activations are not modelled (this crate costs the MAC, not the activation). Minifloat
/// operands enter with their code width, which is all FINN's formulas know about.
pub fn finn_estimate(
    l: &LayerDesc,
    pe: u64,
    simd: u64,
    use_dsp: bool,
    memory: WeightMemory,
    device: Device,
) -> Result<FinnEstimate, CostError> {
    validate(l)?;
    let (a, w) = operands(l)?;
    let (wb, ab) = (f64::from(w.code_bits()), f64::from(a.code_bits()));
    let (p, q) = (pe as f64, simd as f64);
    let mult = if use_dsp {
        0.0
    } else {
        q * (2.0 * ((wb + ab) / 6.0).ceil() - 1.0) * (wb + ab)
    };
    let add = (wb + ab) * (2.0 * q - 1.0);
    let alpha = (l.n as f64).log2() + wb + ab - 1.0 - if a.signed() { 1.0 } else { 0.0 };
    let acc = (alpha + (1.0 + 2f64.powf(-alpha)).log2() + 1.0)
        .ceil()
        .min(32.0);
    let mem = weight_memory(
        l.weight_count,
        u64::from(w.code_bits()),
        pe,
        simd,
        memory,
        device,
    )?;
    let lut = (300.0 + 1.1 * p * (mult + add + acc)).floor() as u64 + mem.lutram_lut;
    let vectors = l.macs / (l.n * l.out_channels);
    Ok(FinnEstimate {
        name: l.name.clone(),
        lut,
        dsp: if use_dsp {
            pe * simd * ((wb + ab) / 48.0).ceil() as u64
        } else {
            0
        },
        bram18: mem.bram18,
        uram: mem.uram,
        cycles: vectors * (l.out_channels / pe) * (l.n / simd),
    })
}

/// QONNX datatype name of a format (INT4, UINT8, BINARY, FLOAT<E,M,bias>; FLOAT32 for None).
pub fn qonnx_dtype(f: Option<&Format>) -> (String, u32) {
    match f {
        None => ("FLOAT32".into(), 32),
        Some(Format::Int(i)) => {
            if i.bits == 1 && !i.signed {
                ("BINARY".into(), 1)
            } else {
                (
                    format!("{}INT{}", if i.signed { "" } else { "U" }, i.bits),
                    i.bits.into(),
                )
            }
        }
        Some(Format::Float(fl)) => (
            format!("FLOAT<{},{},{}>", fl.exp_bits, fl.man_bits, fl.bias),
            u32::from(fl.exp_bits) + u32::from(fl.man_bits) + u32::from(fl.signed),
        ),
        Some(Format::Mx(m)) => (format!("MX<{:?},{}>", m.element, m.block_size), 8),
    }
}

/// A QONNX datatype as `inference_cost` names it in its keys (`INT4`, `UINT8`, `SCALEDINT<8>`,
/// `FLOAT<4,3,7>`, `FLOAT32`, ...) with its bit width (QONNX's `DataType.bitwidth()`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QonnxType {
    /// QONNX datatype name.
    pub name: String,
    /// Bits per element.
    pub bits: u32,
}

impl QonnxType {
    /// `FLOAT32`, QONNX's type for any tensor it knows nothing more about.
    pub fn float32() -> QonnxType {
        QonnxType {
            name: "FLOAT32".into(),
            bits: 32,
        }
    }

    /// The QONNX type of a format (see [`qonnx_dtype`]); `None` is `FLOAT32`.
    pub fn of(f: Option<&Format>) -> QonnxType {
        let (name, bits) = qonnx_dtype(f);
        QonnxType { name, bits }
    }
}

/// One node as QONNX's `inference_cost` costs it: MACs, weight and output elements with the
/// datatypes of input 0 (activation), input 1 (weight) and output 0.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QonnxNode {
    /// Node name.
    pub name: String,
    /// ONNX op type.
    pub op: String,
    /// Multiply-accumulates (batch included), before the sparsity discount.
    pub macs: u64,
    /// Weight elements (0 when neither operand is a constant).
    pub weight_elems: u64,
    /// Non-zero weight elements when the weight is a constant (`None`: no discount).
    pub weight_nonzero: Option<u64>,
    /// Output elements.
    pub output_elems: u64,
    /// Datatype of input 0.
    pub act: QonnxType,
    /// Datatype of input 1.
    pub weight: QonnxType,
    /// Datatype of output 0.
    pub output: QonnxType,
}

/// QONNX `inference_cost`-compatible counts of costed nodes: `op_mac_<act>_<wt>`,
/// `mem_w_<wt>`, `mem_o_<out>` summed per key, then `total_macs`, `total_bops` (Σ act bits ·
/// weight bits · MACs), `total_mem_w_bits`, `total_mem_w_elems`, `total_mem_o_bits`,
/// `total_mem_o_elems` computed from the keys, as QONNX does. Sparsity is discounted like
/// QONNX's default: MACs and weight memory scale by the non-zero fraction of the weight.
pub fn qonnx_node_counts(nodes: &[QonnxNode]) -> BTreeMap<String, f64> {
    let mut m: BTreeMap<String, f64> = BTreeMap::new();
    let mut bits: BTreeMap<String, u32> = BTreeMap::new();
    for l in nodes {
        let density = match l.weight_nonzero {
            Some(nz) if l.weight_elems > 0 => nz as f64 / l.weight_elems as f64,
            _ => 1.0,
        };
        let mac_key = format!("op_mac_{}_{}", l.act.name, l.weight.name);
        bits.insert(l.act.name.clone(), l.act.bits);
        bits.insert(l.weight.name.clone(), l.weight.bits);
        bits.insert(l.output.name.clone(), l.output.bits);
        *m.entry(mac_key).or_default() += l.macs as f64 * density;
        *m.entry(format!("mem_w_{}", l.weight.name)).or_default() +=
            l.weight_elems as f64 * density;
        *m.entry(format!("mem_o_{}", l.output.name)).or_default() += l.output_elems as f64;
    }
    let (mut bops, mut macs, mut wbits, mut welems, mut obits, mut oelems) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (k, v) in &m {
        if let Some(rest) = k.strip_prefix("op_mac_") {
            // Datatype names never contain '_', so the split is unambiguous.
            let (a, w) = rest.split_once('_').unwrap_or((rest, rest));
            let ab = bits.get(a).copied().unwrap_or(32);
            let wb = bits.get(w).copied().unwrap_or(32);
            bops += f64::from(ab) * f64::from(wb) * v;
            macs += v;
        } else if let Some(t) = k.strip_prefix("mem_w_") {
            wbits += f64::from(bits.get(t).copied().unwrap_or(32)) * v;
            welems += v;
        } else if let Some(t) = k.strip_prefix("mem_o_") {
            obits += f64::from(bits.get(t).copied().unwrap_or(32)) * v;
            oelems += v;
        }
    }
    m.insert("total_bops".into(), bops);
    m.insert("total_macs".into(), macs);
    m.insert("total_mem_w_bits".into(), wbits);
    m.insert("total_mem_w_elems".into(), welems);
    m.insert("total_mem_o_bits".into(), obits);
    m.insert("total_mem_o_elems".into(), oelems);
    m
}

/// [`qonnx_node_counts`] of layer descriptions, with the layers' formats as QONNX datatypes
/// (a unit-scale quantizer's type: `INT4`, not `SCALEDINT<4>`).
pub fn qonnx_counts(layers: &[LayerDesc]) -> BTreeMap<String, f64> {
    let nodes: Vec<QonnxNode> = layers
        .iter()
        .map(|l| QonnxNode {
            name: l.name.clone(),
            op: l.op.clone(),
            macs: l.macs,
            weight_elems: l.weight_count,
            weight_nonzero: l.weight_nonzero,
            output_elems: l.output_count,
            act: QonnxType::of(Some(&l.act_format)),
            weight: QonnxType::of(Some(&l.weight_format)),
            output: QonnxType::of(l.output_format.as_ref()),
        })
        .collect();
    qonnx_node_counts(&nodes)
}
