//! The design grid the synthesis harness sweeps and the simulation proof samples: integer
//! pairs 2–8 × 2–8 bits, every ExMy split of 3–8 bits (same-format pairs, with and without
//! subnormals), mixed integer × minifloat pairs, and datapath alternatives on a subset.

use crate::operand::Operand;
use crate::rtl::{Datapath, MacSpec, SignStyle};

/// Dot-product length of the main grid (the seed paper's ResNet-18 maximum, 3·3·512).
pub const GRID_N: u64 = 4608;
/// Second length, so the accumulator term of the fit is identifiable.
pub const GRID_N_SHORT: u64 = 64;

/// Every ExMy with E ≥ 1 and 3–8 total bits (sign included).
pub fn float_splits() -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    for total in 3..=8u32 {
        for e in 1..total {
            v.push((e, total - 1 - e));
        }
    }
    v
}

/// The full synthesis grid, in a fixed order.
pub fn full_grid() -> Vec<MacSpec> {
    let mut g = Vec::new();
    let sm = |sign| Datapath::SignMagnitude { sign };
    // Integer pairs: signed x signed at both lengths, unsigned activations x signed weights.
    for a in 2..=8 {
        for w in 2..=8 {
            let n = if (a + w) % 2 == 0 {
                GRID_N
            } else {
                GRID_N_SHORT
            };
            g.push(MacSpec::new(
                Operand::int(a, true),
                Operand::int(w, true),
                n,
            ));
        }
    }
    for a in 2..=8 {
        for w in 2..=8 {
            let n = if (a + w) % 2 == 1 {
                GRID_N
            } else {
                GRID_N_SHORT
            };
            g.push(MacSpec::new(
                Operand::int(a, false),
                Operand::int(w, true),
                n,
            ));
        }
    }
    // Minifloat same-format pairs, with and without subnormals.
    for (i, (e, m)) in float_splits().into_iter().enumerate() {
        for sub in [true, false] {
            let f = Operand::float(e, m, sub);
            let n = if (i + usize::from(sub)) % 2 == 0 {
                GRID_N
            } else {
                GRID_N_SHORT
            };
            g.push(MacSpec::new(f, f, n));
        }
    }
    // Mixed pairs: integer activations x minifloat weights and the reverse.
    for (a, (e, m)) in [
        (8, (2, 1)),
        (8, (2, 3)),
        (8, (3, 2)),
        (8, (4, 3)),
        (4, (2, 1)),
        (4, (3, 2)),
        (6, (2, 3)),
        (5, (4, 3)),
    ] {
        g.push(MacSpec::new(
            Operand::int(a, true),
            Operand::float(e, m, true),
            GRID_N,
        ));
        g.push(MacSpec::new(
            Operand::int(a, false),
            Operand::float(e, m, true),
            GRID_N_SHORT,
        ));
    }
    for (w, (e, m)) in [
        (4, (4, 3)),
        (4, (5, 2)),
        (8, (3, 4)),
        (2, (4, 3)),
        (3, (2, 2)),
    ] {
        g.push(MacSpec::new(
            Operand::float(e, m, true),
            Operand::int(w, true),
            GRID_N,
        ));
    }
    // Mixed minifloat pairs.
    for ((ea, ma), (ew, mw)) in [
        ((4, 3), (2, 1)),
        ((5, 2), (4, 3)),
        ((4, 3), (3, 2)),
        ((2, 3), (2, 1)),
        ((3, 4), (2, 1)),
    ] {
        g.push(MacSpec::new(
            Operand::float(ea, ma, true),
            Operand::float(ew, mw, true),
            GRID_N,
        ));
    }
    // Datapath alternatives.
    for (e, m) in [(2, 1), (2, 3), (3, 2), (4, 3), (5, 2), (3, 4)] {
        let f = Operand::float(e, m, true);
        for sign in [SignStyle::NegateBeforeShift, SignStyle::NegateAfterShift] {
            g.push(MacSpec {
                act: f,
                wt: f,
                n: GRID_N,
                datapath: sm(sign),
            });
        }
    }
    for (a, w) in [
        (2, 2),
        (3, 3),
        (4, 4),
        (5, 5),
        (6, 6),
        (8, 8),
        (4, 8),
        (8, 4),
    ] {
        g.push(MacSpec {
            act: Operand::int(a, true),
            wt: Operand::int(w, true),
            n: GRID_N,
            datapath: sm(SignStyle::AddSub),
        });
    }
    g
}

/// A deterministic sample of the grid (every `stride`-th design plus every datapath kind),
/// used by the simulation proof in CI.
pub fn sample(stride: usize) -> Vec<MacSpec> {
    let all = full_grid();
    let mut out: Vec<MacSpec> = all.iter().step_by(stride.max(1)).copied().collect();
    for d in &all {
        if !out.iter().any(|o| o.datapath == d.datapath) {
            out.push(*d);
        }
    }
    out
}

/// Header of the grid manifest and of synthesis result files (result files append tool
/// columns). Operands are described structurally so any tool's results can be fitted.
pub const MANIFEST_HEADER: &str = "design,act,wt,n,datapath,acc_bits,frame_bits,\
a_kind,a_bits,a_exp,a_man,a_signed,a_sub,w_kind,w_bits,w_exp,w_man,w_signed,w_sub";

fn operand_cols(o: &Operand) -> String {
    match *o {
        Operand::Int { bits, signed, .. } => format!("int,{bits},0,0,{},0", u8::from(signed)),
        Operand::Float {
            exp,
            man,
            signed,
            subnormals,
            ..
        } => format!(
            "float,{},{exp},{man},{},{}",
            o.code_bits(),
            u8::from(signed),
            u8::from(subnormals)
        ),
    }
}

/// One manifest row for `spec` (columns of [`MANIFEST_HEADER`]).
pub fn manifest_row(spec: &MacSpec) -> Result<String, crate::CostError> {
    Ok(format!(
        "{},{},{},{},{},{},{},{},{}",
        spec.module_name(),
        spec.act.label(),
        spec.wt.label(),
        spec.n,
        spec.datapath.name(),
        spec.acc_bits()?,
        spec.frame_bits(),
        operand_cols(&spec.act),
        operand_cols(&spec.wt)
    ))
}
