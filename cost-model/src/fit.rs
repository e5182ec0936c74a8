//! Least-squares fit of the MAC cost model to synthesis results, and the coefficient-set data
//! files (with provenance) the estimator loads.
//!
//! Results are CSV rows of the form written by `scripts/eda/synth_grid.sh`: the grid manifest
//! columns (operands described structurally), then `family,flow,yosys,rev,lut,...,ff,carry,
//! dsp`. Any tool's numbers can be fitted as long as those columns are present.
//!
//! One model per datapath (see [`crate::rtl::Datapath`]); each predicts LUTs, carry cells and
//! DSPs as a linear combination of structural features ([`features`]). Coefficients of
//! features that grow with operand bits are constrained to be non-negative, so estimates
//! never decrease when an operand gains a bit or n grows. Flip-flops are not fitted: the
//! generated units register only the accumulator, so FF = acc_bits, and the fit checks it.

use crate::operand::Operand;
use crate::rtl::{Datapath, MacSpec};
use crate::CostError;
use std::collections::BTreeMap;

/// Where a coefficient set comes from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// Synthesis tool (e.g. "yosys").
    pub tool: String,
    /// Tool version (e.g. "0.23").
    pub version: String,
    /// Flow / command line used.
    pub flow: String,
    /// Device family the tool targeted (e.g. "xcup").
    pub device_family: String,
    /// Date of the fit (YYYY-MM-DD).
    pub date: String,
    /// Revision of the generated designs (git revision of mfq when synthesized).
    pub design_revision: String,
    /// Results file the set was fitted to.
    pub source: String,
    /// Rows used for fitting / held out.
    pub rows_fit: usize,
    /// Rows held out for validation.
    pub rows_holdout: usize,
}

/// Fit quality on the held-out rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FitQuality {
    /// Mean absolute percentage error of LUTs on held-out rows.
    pub lut_mape_holdout: f64,
    /// Largest absolute percentage error of LUTs on held-out rows.
    pub lut_max_ape_holdout: f64,
    /// Mean absolute percentage error of LUTs on the fitted rows.
    pub lut_mape_fit: f64,
    /// Mean absolute error of carry cells on held-out rows.
    pub carry_mae_holdout: f64,
    /// True when every row has FF = acc_bits.
    pub ff_equals_acc_bits: bool,
    /// True when every row's DSP count equals the mapping rule of [`dsp_blocks`] (0 in a
    /// no-DSP flow).
    pub dsp_rule_matches: bool,
    /// Rows fitted / held out.
    pub rows_fit: usize,
    /// Rows held out.
    pub rows_holdout: usize,
}

/// Linear model of one datapath.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatapathModel {
    /// Feature names, in coefficient order.
    pub features: Vec<String>,
    /// LUT coefficients.
    pub lut: Vec<f64>,
    /// Carry-cell coefficients.
    pub carry: Vec<f64>,
    /// DSP coefficients (all zero in a no-DSP flow).
    pub dsp: Vec<f64>,
    /// Fit quality.
    pub quality: FitQuality,
    /// Held-out LUT MAPE per format family (int, minifloat, mixed).
    pub holdout_mape_by_family: BTreeMap<String, f64>,
}

/// A fitted coefficient set: one model per datapath name, plus provenance.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CoeffSet {
    /// Where the numbers come from.
    pub provenance: Provenance,
    /// True when the flow maps multipliers to DSP blocks.
    pub uses_dsp: bool,
    /// Models keyed by [`Datapath::name`].
    pub models: BTreeMap<String, DatapathModel>,
}

impl CoeffSet {
    /// Parses a coefficient file; `path` names it in errors.
    pub fn from_json(text: &str, path: &str) -> Result<Self, CostError> {
        serde_json::from_str(text).map_err(|e| CostError::File {
            path: path.into(),
            msg: format!("not a coefficient set: {e}"),
        })
    }

    /// Serializes as pretty JSON (stable key order).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Names of the features of a datapath. In a DSP flow the multiplier terms are zeroed for
/// designs whose multiplier yosys maps to a DSP block ([`dsp_blocks`]) and `dsp_glue` marks
/// them instead.
pub fn feature_names(dp: &Datapath) -> Vec<&'static str> {
    match dp {
        Datapath::TwosComplement => vec![
            "acc_bits",
            "(sa-1)(sw-1)",
            "sa+sw",
            "unsigned_ops",
            "dsp_glue",
            "one",
        ],
        Datapath::SignMagnitude { .. } => vec![
            "acc_bits",
            "sa*sw",
            "(pm+1)*shb",
            "frame_bits",
            "signed_mix",
            "dsp_glue",
            "one",
        ],
    }
}

/// True for features whose coefficient must be non-negative (they grow with operand bits).
fn constrained(name: &str) -> bool {
    !matches!(name, "one" | "unsigned_ops" | "signed_mix" | "dsp_glue")
}

/// DSP blocks yosys 0.23 (`synth_xilinx`, DSP48E2 27×18 multipliers) uses for the multiplier of
/// `spec` when DSP inference is on: multipliers with both inputs of at least 2 bits and a
/// product of at least 9 bits go to DSPs (its `mul2dsp` thresholds); wider ones tile.
pub fn dsp_blocks(spec: &MacSpec) -> u64 {
    let (a, b) = match spec.datapath {
        Datapath::TwosComplement => (
            spec.act.code_bits() + u32::from(!spec.act.signed()),
            spec.wt.code_bits() + u32::from(!spec.wt.signed()),
        ),
        Datapath::SignMagnitude { .. } => (spec.act.sig_bits(), spec.wt.sig_bits()),
    };
    let y = match spec.datapath {
        Datapath::TwosComplement => spec.act.code_bits() + spec.wt.code_bits(),
        Datapath::SignMagnitude { .. } => a + b,
    };
    if a < 2 || b < 2 || y < 9 {
        return 0;
    }
    let (hi, lo) = (a.max(b), a.min(b));
    u64::from(hi.div_ceil(27) * lo.div_ceil(18))
}

/// Feature vector of a MAC spec (order of [`feature_names`]); `dsp_flow` selects the flow
/// with DSP inference.
pub fn features(spec: &MacSpec, dsp_flow: bool) -> Result<Vec<f64>, CostError> {
    let acc = f64::from(spec.acc_bits()?);
    let sa = f64::from(spec.act.sig_bits());
    let sw = f64::from(spec.wt.sig_bits());
    let in_dsp = dsp_flow && dsp_blocks(spec) > 0;
    // Multiplier terms vanish when the multiplier sits in a DSP block.
    let mulk = if in_dsp { 0.0 } else { 1.0 };
    let glue = if in_dsp { 1.0 } else { 0.0 };
    Ok(match spec.datapath {
        Datapath::TwosComplement => {
            let uns = f64::from(u8::from(!spec.act.signed()) + u8::from(!spec.wt.signed()));
            vec![
                acc,
                mulk * (sa - 1.0) * (sw - 1.0),
                mulk * (sa + sw),
                uns,
                glue,
                1.0,
            ]
        }
        Datapath::SignMagnitude { .. } => {
            let pm = sa + sw;
            let sh = spec.act.max_shift() + spec.wt.max_shift();
            let shb = f64::from(crate::accum::ceil_log2(u64::from(sh) + 1));
            let mix = f64::from(u8::from(spec.act.signed() != spec.wt.signed()));
            vec![
                acc,
                mulk * sa * sw,
                (pm + 1.0) * shb,
                f64::from(spec.frame_bits()),
                mix,
                glue,
                1.0,
            ]
        }
    })
}

/// Format family of a spec for error reporting: "int", "minifloat" or "mixed".
pub fn format_family(spec: &MacSpec) -> &'static str {
    match (spec.act.is_float(), spec.wt.is_float()) {
        (false, false) => "int",
        (true, true) => "minifloat",
        _ => "mixed",
    }
}

/// One synthesis result row.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// Design name.
    pub design: String,
    /// The MAC the row measured.
    pub spec: MacSpec,
    /// Device family synthesized for.
    pub family: String,
    /// Flow name ("nodsp" or "dsp").
    pub flow: String,
    /// Tool version.
    pub tool_version: String,
    /// Design revision.
    pub rev: String,
    /// Measured LUTs.
    pub lut: f64,
    /// Measured flip-flops.
    pub ff: f64,
    /// Measured carry cells.
    pub carry: f64,
    /// Measured DSP blocks.
    pub dsp: f64,
}

fn operand_from_cols(
    get: &dyn Fn(&str) -> Result<String, CostError>,
    p: &str,
) -> Result<Operand, CostError> {
    let num = |k: &str| -> Result<u32, CostError> {
        let v = get(&format!("{p}_{k}"))?;
        v.parse::<u32>()
            .map_err(|_| CostError::Invalid(format!("column {p}_{k}: {v:?} is not a number")))
    };
    let kind = get(&format!("{p}_kind"))?;
    let signed = num("signed")? == 1;
    match kind.as_str() {
        "int" => Ok(Operand::Int {
            bits: num("bits")?,
            signed,
            narrow: false,
        }),
        "float" => {
            let exp = num("exp")?;
            Ok(Operand::Float {
                exp,
                man: num("man")?,
                signed,
                subnormals: num("sub")? == 1,
                specials: quant_formats::Specials::None,
                bias: (1i32 << exp.saturating_sub(1)) - 1,
            })
        }
        k => Err(CostError::Invalid(format!(
            "column {p}_kind: {k:?} (expected int or float)"
        ))),
    }
}

/// Parses a results CSV (`path` names it in errors).
pub fn parse_results(text: &str, path: &str) -> Result<Vec<ResultRow>, CostError> {
    let ferr = |line: usize, msg: String| CostError::File {
        path: path.into(),
        msg: format!("line {line}: {msg}"),
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| ferr(1, "empty file".into()))?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let mut rows = Vec::new();
    for (i, line) in lines {
        let vals: Vec<&str> = line.split(',').map(str::trim).collect();
        if vals.len() != cols.len() {
            return Err(ferr(
                i + 1,
                format!("{} fields, header has {}", vals.len(), cols.len()),
            ));
        }
        let get = |k: &str| -> Result<String, CostError> {
            cols.iter()
                .position(|c| *c == k)
                .map(|j| vals[j].to_string())
                .ok_or_else(|| CostError::Invalid(format!("missing column {k}")))
        };
        let num = |k: &str| -> Result<f64, CostError> {
            let v = get(k).map_err(|e| ferr(i + 1, e.to_string()))?;
            v.parse::<f64>()
                .map_err(|_| ferr(i + 1, format!("column {k}: {v:?} is not a number")))
        };
        let act = operand_from_cols(&get, "a").map_err(|e| ferr(i + 1, e.to_string()))?;
        let wt = operand_from_cols(&get, "w").map_err(|e| ferr(i + 1, e.to_string()))?;
        let dpn = get("datapath").map_err(|e| ferr(i + 1, e.to_string()))?;
        let datapath = Datapath::from_name(&dpn)
            .ok_or_else(|| ferr(i + 1, format!("unknown datapath {dpn:?}")))?;
        let spec = MacSpec {
            act,
            wt,
            n: num("n")? as u64,
            datapath,
        };
        let opt = |k: &str| get(k).unwrap_or_default();
        rows.push(ResultRow {
            design: opt("design"),
            spec,
            family: opt("family"),
            flow: opt("flow"),
            tool_version: opt("yosys"),
            rev: opt("rev"),
            lut: num("lut")?,
            ff: num("ff")?,
            carry: num("carry")?,
            dsp: num("dsp")?,
        });
    }
    Ok(rows)
}

/// Least squares with non-negativity on the `nonneg` columns (greedy active set: a
/// constrained coefficient that comes out negative is fixed at 0 and the rest refitted).
pub fn constrained_lstsq(x: &[Vec<f64>], y: &[f64], nonneg: &[bool]) -> Vec<f64> {
    let p = nonneg.len();
    let mut active: Vec<bool> = vec![true; p];
    loop {
        let idx: Vec<usize> = (0..p).filter(|&j| active[j]).collect();
        let k = idx.len();
        // Normal equations with a tiny ridge for rank-deficient designs.
        let mut a = vec![vec![0.0; k + 1]; k];
        for (row, &t) in x.iter().zip(y) {
            for (r, &jr) in idx.iter().enumerate() {
                for (c, &jc) in idx.iter().enumerate() {
                    a[r][c] += row[jr] * row[jc];
                }
                a[r][k] += row[jr] * t;
            }
        }
        for (r, row) in a.iter_mut().enumerate() {
            row[r] += 1e-9;
        }
        let sol = solve(a);
        let mut coef = vec![0.0; p];
        for (r, &j) in idx.iter().enumerate() {
            coef[j] = sol[r];
        }
        let worst = (0..p)
            .filter(|&j| active[j] && nonneg[j] && coef[j] < 0.0)
            .min_by(|&i, &j| coef[i].total_cmp(&coef[j]));
        match worst {
            Some(j) => active[j] = false,
            None => return coef,
        }
    }
}

/// Gaussian elimination with partial pivoting on an augmented k×(k+1) matrix.
fn solve(mut a: Vec<Vec<f64>>) -> Vec<f64> {
    let k = a.len();
    for col in 0..k {
        let piv = (col..k)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, piv);
        let d = a[col][col];
        if d.abs() < 1e-300 {
            continue;
        }
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / d;
                if f != 0.0 {
                    for (x, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                        *x -= f * p;
                    }
                }
            }
        }
    }
    (0..k)
        .map(|r| {
            if a[r][r].abs() < 1e-300 {
                0.0
            } else {
                a[r][k] / a[r][r]
            }
        })
        .collect()
}

/// Dot product of coefficients and features.
pub fn predict(coef: &[f64], feat: &[f64]) -> f64 {
    coef.iter().zip(feat).map(|(c, f)| c * f).sum()
}

/// Deterministic hold-out rule: a row is held out when the FNV-1a hash of its design name
/// falls in the lowest quarter.
pub fn is_holdout(design: &str) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in design.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % 4 == 0
}

fn ape(pred: f64, real: f64) -> f64 {
    (pred - real).abs() / real.max(1.0) * 100.0
}

/// Fits one model per datapath to `rows` (all of one family and flow).
pub fn fit(rows: &[ResultRow], source: &str, date: &str) -> Result<CoeffSet, CostError> {
    let first = rows
        .first()
        .ok_or_else(|| CostError::Invalid(format!("{source}: no result rows to fit")))?;
    for r in rows {
        if r.family != first.family || r.flow != first.flow || r.tool_version != first.tool_version
        {
            return Err(CostError::Invalid(format!(
                "{source}: rows mix device families/flows/tool versions ({}/{}/{} vs {}/{}/{}); \
                 split the file or filter it",
                r.family, r.flow, r.tool_version, first.family, first.flow, first.tool_version
            )));
        }
    }
    let mut models = BTreeMap::new();
    let mut total_fit = 0;
    let mut total_hold = 0;
    let mut dps: Vec<Datapath> = rows.iter().map(|r| r.spec.datapath).collect();
    dps.sort_by_key(|d| d.name());
    dps.dedup();
    for dp in dps {
        let names = feature_names(&dp);
        let nonneg: Vec<bool> = names.iter().map(|n| constrained(n)).collect();
        let mine: Vec<&ResultRow> = rows.iter().filter(|r| r.spec.datapath == dp).collect();
        let dsp_flow = first.flow == "dsp";
        let feats: Vec<Vec<f64>> = mine
            .iter()
            .map(|r| features(&r.spec, dsp_flow))
            .collect::<Result<_, _>>()?;
        let (mut xf, mut yl, mut yc, mut yd) = (vec![], vec![], vec![], vec![]);
        let mut hold = vec![];
        for (r, f) in mine.iter().zip(&feats) {
            if is_holdout(&r.design) {
                hold.push((*r, f));
            } else {
                xf.push(f.clone());
                yl.push(r.lut);
                yc.push(r.carry);
                yd.push(r.dsp);
            }
        }
        if xf.len() < names.len() + 1 {
            continue; // too few designs for this datapath to fit honestly
        }
        let lut = constrained_lstsq(&xf, &yl, &nonneg);
        let carry = constrained_lstsq(&xf, &yc, &nonneg);
        let dsp = constrained_lstsq(&xf, &yd, &nonneg);
        let fit_mape = xf
            .iter()
            .zip(&yl)
            .map(|(f, &y)| ape(predict(&lut, f), y))
            .sum::<f64>()
            / xf.len() as f64;
        let mut by_fam: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        let (mut sum, mut max, mut csum) = (0.0, 0.0f64, 0.0);
        for (r, f) in &hold {
            let e = ape(predict(&lut, f), r.lut);
            sum += e;
            max = max.max(e);
            csum += (predict(&carry, f) - r.carry).abs();
            let ent = by_fam
                .entry(format_family(&r.spec).to_string())
                .or_insert((0.0, 0));
            ent.0 += e;
            ent.1 += 1;
        }
        let nh = hold.len().max(1) as f64;
        total_fit += xf.len();
        total_hold += hold.len();
        models.insert(
            dp.name().to_string(),
            DatapathModel {
                features: names.iter().map(|s| s.to_string()).collect(),
                lut: round6(&lut),
                carry: round6(&carry),
                dsp: round6(&dsp),
                quality: FitQuality {
                    lut_mape_holdout: round3(sum / nh),
                    lut_max_ape_holdout: round3(max),
                    lut_mape_fit: round3(fit_mape),
                    carry_mae_holdout: round3(csum / nh),
                    ff_equals_acc_bits: mine.iter().all(|r| {
                        r.spec
                            .acc_bits()
                            .map(|a| f64::from(a) == r.ff)
                            .unwrap_or(false)
                    }),
                    dsp_rule_matches: mine.iter().all(|r| {
                        let want = if dsp_flow { dsp_blocks(&r.spec) } else { 0 };
                        r.dsp == want as f64
                    }),
                    rows_fit: xf.len(),
                    rows_holdout: hold.len(),
                },
                holdout_mape_by_family: by_fam
                    .into_iter()
                    .map(|(k, (s, c))| (k, round3(s / c as f64)))
                    .collect(),
            },
        );
    }
    if models.is_empty() {
        return Err(CostError::Invalid(format!(
            "{source}: no datapath has enough rows to fit (need at least features + 1 per datapath)"
        )));
    }
    let flow = match first.flow.as_str() {
        "nodsp" => format!(
            "synth_xilinx -family {} -flatten -noiopad -nodsp -abc9",
            first.family
        ),
        "dsp" => format!(
            "synth_xilinx -family {} -flatten -noiopad -abc9",
            first.family
        ),
        other => other.to_string(),
    };
    Ok(CoeffSet {
        provenance: Provenance {
            tool: if first.tool_version.is_empty() {
                "unknown".into()
            } else {
                "yosys".into()
            },
            version: first.tool_version.clone(),
            flow,
            device_family: first.family.clone(),
            date: date.into(),
            design_revision: first.rev.clone(),
            source: source.into(),
            rows_fit: total_fit,
            rows_holdout: total_hold,
        },
        uses_dsp: first.flow == "dsp",
        models,
    })
}

fn round6(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 1e6).round() / 1e6).collect()
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lstsq_recovers_plane_and_respects_sign() {
        let x: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![i as f64, ((i * 7) % 5) as f64, 1.0])
            .collect();
        let y: Vec<f64> = x.iter().map(|r| 2.0 * r[0] + 0.5 * r[1] + 3.0).collect();
        let c = constrained_lstsq(&x, &y, &[true, true, false]);
        assert!(
            (c[0] - 2.0).abs() < 1e-6 && (c[1] - 0.5).abs() < 1e-6 && (c[2] - 3.0).abs() < 1e-6
        );
        let y2: Vec<f64> = x.iter().map(|r| 2.0 * r[0] - 0.5 * r[1] + 3.0).collect();
        let c2 = constrained_lstsq(&x, &y2, &[true, true, false]);
        assert_eq!(c2[1], 0.0);
        assert!(c2[0] > 0.0);
    }

    #[test]
    fn parse_rejects_bad_rows() {
        let h = format!(
            "{},family,flow,yosys,rev,lut,ff,carry,dsp",
            crate::grid::MANIFEST_HEADER
        );
        let bad = format!("{h}\nx,INT4,INT4,16,tc,13,8,int,4,0,0,1,0,int,4,0,0,1,0,xcup,nodsp,0.23,r,abc,13,2,0\n");
        let e = parse_results(&bad, "r.csv").expect_err("bad lut");
        assert!(
            e.to_string().contains("r.csv") && e.to_string().contains("lut"),
            "{e}"
        );
        let ok = format!(
            "{h}\nx,INT4,INT4,16,tc,13,8,int,4,0,0,1,0,int,4,0,0,1,0,xcup,nodsp,0.23,r,40,13,2,0\n"
        );
        let rows = parse_results(&ok, "r.csv").expect("rows");
        assert_eq!(rows[0].spec.acc_bits().expect("acc"), 13);
    }
}
