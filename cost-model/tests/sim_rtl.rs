//! Simulation proof: generated MAC RTL against the reference arithmetic under iverilog.
//! Needs iverilog (`bash scripts/eda/install.sh`); fails with that message when missing.

use cost_model::grid;
use cost_model::operand::Operand;
use cost_model::rtl::{Datapath, MacSpec, SignStyle};
use cost_model::sim::{simulate, stimulus, tools_available, MISSING_TOOLS};

fn check(spec: MacSpec, seed: u64) {
    let steps = stimulus(&spec, seed);
    let rep = simulate(&spec, &steps).unwrap_or_else(|e| panic!("{}: {e}", spec.module_name()));
    assert!(rep.steps > 0);
    if let Some((i, want, got)) = rep.mismatch {
        panic!(
            "{}: step {i}: expected {want}, simulated {got}",
            spec.module_name()
        );
    }
}

#[test]
fn sample_of_grid_is_exact() {
    assert!(tools_available(), "{MISSING_TOOLS}");
    // Short accumulators keep the worst-case streams short; the datapath does not depend on n
    // beyond the accumulator width.
    for (i, mut spec) in grid::sample(9).into_iter().enumerate() {
        spec.n = [7, 16, 33][i % 3];
        check(spec, 1000 + i as u64);
    }
}

#[test]
fn special_variants_are_exact() {
    assert!(tools_available(), "{MISSING_TOOLS}");
    use quant_formats::Specials;
    let ieee = Operand::Float {
        exp: 5,
        man: 2,
        signed: true,
        subnormals: true,
        specials: Specials::Ieee,
        bias: 15,
    };
    let fnuz = Operand::Float {
        exp: 4,
        man: 3,
        signed: true,
        subnormals: true,
        specials: Specials::Fnuz,
        bias: 8,
    };
    let ufl = Operand::Float {
        exp: 3,
        man: 2,
        signed: false,
        subnormals: true,
        specials: Specials::None,
        bias: 3,
    };
    let e0 = Operand::Float {
        exp: 0,
        man: 3,
        signed: true,
        subnormals: true,
        specials: Specials::None,
        bias: 0,
    };
    let narrow = Operand::Int {
        bits: 4,
        signed: true,
        narrow: true,
    };
    let pairs = [
        (ieee, ieee),
        (fnuz, Operand::float(2, 1, false)),
        (ufl, ufl),
        (ufl, Operand::int(4, false)),
        (e0, Operand::float(1, 2, true)),
        (narrow, Operand::float(3, 0, true)),
        (Operand::int(3, false), Operand::int(5, false)),
        (Operand::float(1, 0, true), Operand::float(1, 0, false)),
    ];
    for (k, (a, w)) in pairs.into_iter().enumerate() {
        for dp in [
            Datapath::SignMagnitude {
                sign: SignStyle::AddSub,
            },
            Datapath::SignMagnitude {
                sign: SignStyle::NegateBeforeShift,
            },
            Datapath::SignMagnitude {
                sign: SignStyle::NegateAfterShift,
            },
        ] {
            check(
                MacSpec {
                    act: a,
                    wt: w,
                    n: 20,
                    datapath: dp,
                },
                77 + k as u64,
            );
        }
    }
    for (a, w) in [
        (Operand::int(3, false), Operand::int(5, false)),
        (Operand::int(8, false), Operand::int(2, true)),
        (narrow, narrow),
    ] {
        check(
            MacSpec {
                act: a,
                wt: w,
                n: 20,
                datapath: Datapath::TwosComplement,
            },
            5,
        );
    }
}

/// The reference decode (sign, significand, shift in the format's frame) agrees with
/// quant-formats' own decode for every code of a set of formats.
#[test]
fn reference_decode_matches_quant_formats() {
    use quant_formats::Format;
    for name in [
        "int4",
        "uint8",
        "int2",
        "e2m1",
        "e2m3",
        "e3m2",
        "e4m3",
        "e5m2",
        "e2m1:nosub",
        "e4m3:nosub",
        "fp8-e4m3fn",
        "fp8-e4m3fnuz",
        "fp8-e5m2",
        "e3m2:unsigned",
        "e1m2",
        "e3m0",
    ] {
        let f: Format = name.parse().expect("format");
        let op = Operand::from_format(&f).expect("operand");
        let step = 2f64.powi(op.lsb_exp());
        for code in 0..(1u32 << op.code_bits()) {
            let theirs = f64::from(f.decode(code));
            match op.decode(u64::from(code)) {
                Some((neg, sig, sh)) => {
                    let v = (sig as f64) * 2f64.powi(sh as i32) * step;
                    let v = if neg { -v } else { v };
                    assert_eq!(v, theirs, "{name} code {code:#x}");
                }
                None => assert!(
                    !theirs.is_finite(),
                    "{name} code {code:#x}: finite {theirs} rejected"
                ),
            }
        }
    }
    let e8m0: Format = "e8m0:nozero".parse().expect("e8m0");
    assert!(Operand::from_format(&e8m0).is_err());
}

/// Every design of the synthesis grid, with short accumulators (about 10 s).
#[test]
fn whole_grid_is_exact() {
    assert!(tools_available(), "{MISSING_TOOLS}");
    for (i, mut spec) in grid::full_grid().into_iter().enumerate() {
        spec.n = [5, 12, 40][i % 3];
        check(spec, 5000 + i as u64);
    }
}

/// Accumulators at the paper's n = 4,608 driven to the ends of their range.
#[test]
fn paper_length_extremes_are_exact() {
    assert!(tools_available(), "{MISSING_TOOLS}");
    for (a, w) in [
        (Operand::int(8, true), Operand::int(8, true)),
        (Operand::float(5, 2, true), Operand::float(5, 2, true)),
    ] {
        check(MacSpec::new(a, w, 4608), 99);
    }
}
