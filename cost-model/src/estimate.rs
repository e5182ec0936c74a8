//! Per-MAC-unit estimates (LUT, FF, carry cells, DSP, accumulator bits) for any operand pair
//! and device family, from a fitted [`CoeffSet`].
//!
//! The shipped sets were fitted to yosys 0.23 post-synthesis counts (`synth_xilinx -family
//! xcup`, with and without DSP inference) of the RTL in [`crate::rtl`]; see `cost-model/data/`
//! for the files and their provenance. Versal and 7-series use the same LUT6 mapping (yosys has
//! no Versal target); the device family changes the carry-cell count (CARRY8 on UltraScale+ and
//! Versal, CARRY4 on 7-series) and the memory primitives available.

use crate::fit::{dsp_blocks, features, predict, CoeffSet, DatapathModel};
use crate::operand::Operand;
use crate::rtl::{Datapath, MacSpec};
use crate::CostError;
use std::sync::OnceLock;

/// Device family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// AMD UltraScale+ (LUT6, CARRY8, DSP48E2, BRAM18/36, URAM).
    UltraScalePlus,
    /// AMD Versal (LUT6, LOOKAHEAD8, DSP58, BRAM, URAM). yosys has no Versal target: costed
    /// with the UltraScale+ fit, which every estimate says in [`MacEstimate::device_note`].
    Versal,
    /// AMD 7-series (LUT6, CARRY4, DSP48E1, BRAM18/36, no URAM).
    Series7,
}

impl Device {
    /// Parses `ultrascale+`/`xcup`, `versal`, `7series`/`xc7`. (`xcv` is not accepted: to
    /// yosys it means Virtex, not Versal.)
    pub fn parse(s: &str) -> Result<Self, CostError> {
        match s.to_ascii_lowercase().replace(['-', '_', ' '], "").as_str() {
            "ultrascale+" | "ultrascaleplus" | "xcup" | "usp" => Ok(Device::UltraScalePlus),
            "versal" => Ok(Device::Versal),
            "7series" | "xc7" | "series7" => Ok(Device::Series7),
            _ => Err(CostError::Invalid(format!(
                "--device {s}: expected ultrascale+, versal or 7series"
            ))),
        }
    }

    /// Bits covered by one carry cell.
    pub fn carry_bits(&self) -> u32 {
        match self {
            Device::Series7 => 4,
            _ => 8,
        }
    }

    /// The yosys `-family` a coefficient set for this device is measured with (`None`:
    /// yosys has no such target).
    pub fn yosys_family(&self) -> Option<&'static str> {
        match self {
            Device::UltraScalePlus => Some("xcup"),
            Device::Versal => None,
            Device::Series7 => Some("xc7"),
        }
    }

    /// Whether the family has UltraRAM.
    pub fn has_uram(&self) -> bool {
        !matches!(self, Device::Series7)
    }
}

/// Options of a MAC estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacOptions {
    /// Device family.
    pub device: Device,
    /// Map multipliers to DSP blocks.
    pub use_dsp: bool,
    /// Datapath (default: [`Datapath::default_for`]).
    pub datapath: Option<Datapath>,
}

impl Default for MacOptions {
    fn default() -> Self {
        MacOptions {
            device: Device::UltraScalePlus,
            use_dsp: false,
            datapath: None,
        }
    }
}

/// Cost of one MAC unit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MacEstimate {
    /// LUTs.
    pub lut: u64,
    /// Flip-flops (the accumulator).
    pub ff: u64,
    /// Carry-chain cells of the device (CARRY8 or CARRY4).
    pub carry: u64,
    /// DSP blocks.
    pub dsp: u64,
    /// Accumulator width.
    pub acc_bits: u32,
    /// Product frame width (`mag_a + mag_w`).
    pub frame_bits: u32,
    /// Datapath costed.
    pub datapath: String,
    /// LUTs of the accumulator alone (its fitted per-bit cost times `acc_bits`).
    pub acc_lut: f64,
    /// Activation and weight labels.
    pub act: String,
    /// Weight label.
    pub wt: String,
    /// Coefficient set used (tool version, flow, family).
    pub coefficients: String,
    /// Set when the coefficient set was measured for another device family than the one
    /// asked for (Versal: always, yosys has no Versal target), saying which one stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_note: Option<String>,
}

const NODSP: &str = include_str!("../data/coeffs-yosys-0.23-xcup-nodsp.json");
const XC7_NODSP: &str = include_str!("../data/coeffs-yosys-0.23-xc7-nodsp.json");
const DSP: &str = include_str!("../data/coeffs-yosys-0.23-xcup-dsp.json");

/// The shipped UltraScale+ (`xcup`) coefficient set for the flow (`use_dsp`).
pub fn builtin(use_dsp: bool) -> Result<&'static CoeffSet, CostError> {
    builtin_index(usize::from(use_dsp))
}

/// The shipped coefficient set for a device and flow: the 7-series (`xc7`) set for 7-series
/// without DSPs, the UltraScale+ (`xcup`) sets otherwise (Versal has no yosys target and the
/// 7-series DSP flow was not synthesized; [`MacEstimate::device_note`] says so).
pub fn builtin_for(device: Device, use_dsp: bool) -> Result<&'static CoeffSet, CostError> {
    match (device, use_dsp) {
        (Device::Series7, false) => builtin_index(2),
        _ => builtin_index(usize::from(use_dsp)),
    }
}

fn builtin_index(i: usize) -> Result<&'static CoeffSet, CostError> {
    static SETS: OnceLock<[Result<CoeffSet, String>; 3]> = OnceLock::new();
    let sets = SETS.get_or_init(|| {
        [
            CoeffSet::from_json(NODSP, "cost-model/data/coeffs-yosys-0.23-xcup-nodsp.json")
                .map_err(|e| e.to_string()),
            CoeffSet::from_json(DSP, "cost-model/data/coeffs-yosys-0.23-xcup-dsp.json")
                .map_err(|e| e.to_string()),
            CoeffSet::from_json(
                XC7_NODSP,
                "cost-model/data/coeffs-yosys-0.23-xc7-nodsp.json",
            )
            .map_err(|e| e.to_string()),
        ]
    });
    sets[i].as_ref().map_err(|e| CostError::File {
        path: "built-in coefficients".into(),
        msg: e.clone(),
    })
}

/// Why `set` is not a measurement of `device`, if it is not.
pub fn device_note(set: &CoeffSet, device: Device) -> Option<String> {
    let fam = set.provenance.device_family.as_str();
    match device.yosys_family() {
        Some(f) if f == fam => None,
        Some(f) => Some(format!(
            "{device:?} costed with a coefficient set measured for yosys -family {fam}, not {f}"
        )),
        None => Some(format!(
            "{device:?} has no yosys target: costed with the coefficient set measured for yosys -family {fam} (not a {device:?} measurement)"
        )),
    }
}

/// Model of `dp` in `set`.
pub fn model_for<'a>(set: &'a CoeffSet, dp: &Datapath) -> Result<&'a DatapathModel, CostError> {
    set.models.get(dp.name()).ok_or_else(|| {
        CostError::Unsupported(format!(
            "datapath {} has no fitted model in the coefficient set ({} {} {}); available: {}",
            dp.name(),
            set.provenance.tool,
            set.provenance.version,
            set.provenance.flow,
            set.models.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Estimates one MAC unit with the built-in coefficients.
pub fn estimate_mac(
    act: &Operand,
    wt: &Operand,
    n: u64,
    opts: &MacOptions,
) -> Result<MacEstimate, CostError> {
    estimate_mac_with(builtin_for(opts.device, opts.use_dsp)?, act, wt, n, opts)
}

/// Estimates one MAC unit with an explicit coefficient set.
pub fn estimate_mac_with(
    set: &CoeffSet,
    act: &Operand,
    wt: &Operand,
    n: u64,
    opts: &MacOptions,
) -> Result<MacEstimate, CostError> {
    let dp = opts
        .datapath
        .unwrap_or_else(|| Datapath::default_for(act, wt));
    let spec = MacSpec {
        act: *act,
        wt: *wt,
        n,
        datapath: dp,
    };
    let acc_bits = spec.acc_bits()?;
    if dp == Datapath::TwosComplement && (act.is_float() || wt.is_float()) {
        return Err(CostError::Invalid(format!(
            "datapath tc needs integer operands, got {} x {}",
            act.label(),
            wt.label()
        )));
    }
    let model = model_for(set, &dp)?;
    let f = features(&spec, set.uses_dsp)?;
    let lut = predict(&model.lut, &f).max(f64::from(acc_bits));
    // Yosys 0.23 maps xcup carries to CARRY4 cells; convert to the device's carry cell.
    let carry4 = predict(&model.carry, &f).max(f64::from(acc_bits) / 4.0);
    let carry = match opts.device.carry_bits() {
        4 => carry4.round(),
        _ => (carry4 / 2.0).ceil(),
    };
    // DSP count follows yosys' mapping rule exactly; the fitted DSP coefficients are kept in
    // the file as a check of that rule.
    let dsp = if set.uses_dsp {
        dsp_blocks(&spec) as f64
    } else {
        0.0
    };
    let acc_lut = model.lut.first().copied().unwrap_or(1.0) * f64::from(acc_bits);
    Ok(MacEstimate {
        lut: lut.round() as u64,
        ff: u64::from(acc_bits),
        carry: carry as u64,
        dsp: dsp as u64,
        acc_bits,
        frame_bits: spec.frame_bits(),
        datapath: dp.name().to_string(),
        acc_lut,
        act: act.label(),
        wt: wt.label(),
        coefficients: format!(
            "{} {} {} ({})",
            set.provenance.tool, set.provenance.version, set.provenance.flow, set.provenance.date
        ),
        device_note: device_note(set, opts.device),
    })
}
