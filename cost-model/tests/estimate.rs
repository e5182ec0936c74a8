//! Estimator behaviour: every knob moves the estimate, and cost never decreases with operand
//! bits, accumulator length or parallelism.

use cost_model::estimate::{estimate_mac, Device, MacOptions};
use cost_model::layers::{estimate_model, Arch, LayerDesc, ModelOptions, WeightMemory};
use cost_model::operand::Operand;
use cost_model::rtl::{Datapath, SignStyle};
use proptest::prelude::*;
use quant_formats::{FloatFormat, Format, IntFormat, Overflow, Specials};

fn int(bits: u8, signed: bool) -> Format {
    Format::Int(IntFormat {
        bits,
        signed,
        narrow: false,
    })
}

fn fl(e: u8, m: u8) -> Format {
    Format::Float(FloatFormat {
        exp_bits: e,
        man_bits: m,
        bias: (1 << (e - 1)) - 1,
        signed: true,
        subnormals: true,
        specials: Specials::None,
        overflow: Overflow::Saturate,
    })
}

fn conv(name: &str, cin: u64, cout: u64, k: u64, pix: u64, a: Format, w: Format) -> LayerDesc {
    let n = cin * k * k;
    LayerDesc {
        name: name.into(),
        op: "Conv".into(),
        macs: n * cout * pix,
        n,
        out_channels: cout,
        weight_count: n * cout,
        weight_nonzero: None,
        output_count: cout * pix,
        weight_format: w,
        act_format: a,
        output_format: None,
    }
}

fn model(a: Format, w: Format) -> Vec<LayerDesc> {
    vec![
        conv("c1", 16, 32, 3, 32 * 32, a, w),
        conv("c2", 32, 64, 3, 16 * 16, a, w),
        conv("fc", 64, 10, 1, 1, a, w),
    ]
}

fn df(fps: f64, clock: f64) -> ModelOptions {
    ModelOptions {
        mac: MacOptions::default(),
        arch: Arch::Dataflow {
            fps,
            clock_mhz: clock,
        },
        memory: WeightMemory::Bram,
    }
}

#[test]
fn every_mac_knob_moves_the_estimate() {
    let a = Operand::int(4, true);
    let w = Operand::int(4, true);
    let base = estimate_mac(&a, &w, 4608, &MacOptions::default()).expect("base");
    let key = |e: &cost_model::estimate::MacEstimate| (e.lut, e.ff, e.carry, e.dsp, e.acc_bits);
    let variants = [
        estimate_mac(&Operand::int(5, true), &w, 4608, &MacOptions::default()),
        estimate_mac(&a, &Operand::int(5, true), 4608, &MacOptions::default()),
        estimate_mac(&Operand::int(4, false), &w, 4608, &MacOptions::default()),
        estimate_mac(&a, &w, 64, &MacOptions::default()),
        estimate_mac(
            &a,
            &w,
            4608,
            &MacOptions {
                device: Device::Series7,
                ..Default::default()
            },
        ),
        estimate_mac(
            &a,
            &w,
            4608,
            &MacOptions {
                use_dsp: true,
                ..Default::default()
            },
        ),
        estimate_mac(
            &a,
            &w,
            4608,
            &MacOptions {
                datapath: Some(Datapath::SignMagnitude {
                    sign: SignStyle::AddSub,
                }),
                ..Default::default()
            },
        ),
    ];
    for (i, v) in variants.into_iter().enumerate() {
        let v = v.expect("variant");
        assert_ne!(
            key(&v),
            key(&base),
            "knob {i} did not move the MAC estimate"
        );
    }
}

#[test]
fn every_model_knob_moves_the_estimate() {
    let layers = model(int(4, false), int(4, true));
    let key = |o: &ModelOptions, l: &[LayerDesc]| {
        let e = estimate_model(l, o).expect("estimate");
        (
            e.lut,
            e.ff,
            e.carry,
            e.dsp,
            e.bram18,
            e.uram,
            e.cycles_per_frame,
        )
    };
    let base = df(2000.0, 200.0);
    let b = key(&base, &layers);
    let mut cases: Vec<(&str, ModelOptions, Vec<LayerDesc>)> = vec![
        ("fps", df(8000.0, 200.0), layers.clone()),
        ("clock", df(2000.0, 100.0), layers.clone()),
        (
            "memory uram",
            ModelOptions {
                memory: WeightMemory::Uram,
                ..base
            },
            layers.clone(),
        ),
        (
            "memory lutram",
            ModelOptions {
                memory: WeightMemory::Lutram,
                ..base
            },
            layers.clone(),
        ),
        (
            "dsp",
            ModelOptions {
                mac: MacOptions {
                    use_dsp: true,
                    ..base.mac
                },
                ..base
            },
            layers.clone(),
        ),
        (
            "device",
            ModelOptions {
                mac: MacOptions {
                    device: Device::Series7,
                    ..base.mac
                },
                ..base
            },
            layers.clone(),
        ),
        (
            "arch",
            ModelOptions {
                arch: Arch::MacPerPair,
                ..base
            },
            layers.clone(),
        ),
        ("weights", base, model(int(4, false), int(6, true))),
        ("acts", base, model(int(8, false), int(4, true))),
        ("minifloat", base, model(fl(2, 1), fl(2, 1))),
    ];
    for (name, o, l) in cases.drain(..) {
        assert_ne!(
            key(&o, &l),
            b,
            "knob {name} did not move the model estimate"
        );
    }
}

#[test]
fn dataflow_meets_target_and_reports_cycles() {
    let layers = model(int(4, false), int(4, true));
    let e = estimate_model(&layers, &df(2000.0, 200.0)).expect("estimate");
    assert!(e.meets_target);
    assert!(e.cycles_per_frame as f64 <= 200e6 / 2000.0);
    for l in &e.layers {
        assert_eq!(l.cycles * l.pe * l.simd, l.macs);
    }
    let slow = estimate_model(&layers, &df(1e9, 100.0)).expect("estimate");
    assert!(!slow.meets_target);
}

fn ops() -> impl Strategy<Value = Operand> {
    prop_oneof![
        (2u32..=8, any::<bool>()).prop_map(|(b, s)| Operand::int(b, s)),
        (1u32..=5, 0u32..=4, any::<bool>()).prop_map(|(e, m, s)| Operand::float(e, m, s)),
    ]
}

fn grow(o: &Operand, which: bool) -> Operand {
    match *o {
        Operand::Int {
            bits,
            signed,
            narrow,
        } => Operand::Int {
            bits: bits + 1,
            signed,
            narrow,
        },
        Operand::Float {
            exp,
            man,
            signed,
            subnormals,
            specials,
            ..
        } => {
            let (e, m) = if which {
                (exp + 1, man)
            } else {
                (exp, man + 1)
            };
            Operand::Float {
                exp: e,
                man: m,
                signed,
                subnormals,
                specials,
                bias: (1 << (e - 1)) - 1,
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn cost_never_decreases_with_bits_or_n(a in ops(), w in ops(), n in 1u64..10000, which in any::<bool>(), dsp in any::<bool>()) {
        let o = MacOptions { use_dsp: dsp, ..Default::default() };
        let base = estimate_mac(&a, &w, n, &o).expect("base");
        for (a2, w2, n2) in [(grow(&a, which), w, n), (a, grow(&w, which), n), (a, w, n * 2)] {
            let e = estimate_mac(&a2, &w2, n2, &o).expect("grown");
            // With DSP inference a multiplier that moves into a DSP block trades its LUTs for
            // the DSP; LUTs and carries are monotone while the DSP count stays the same.
            if e.dsp == base.dsp {
                prop_assert!(e.lut >= base.lut, "lut {} -> {} ({}x{} n={})", base.lut, e.lut, a2.label(), w2.label(), n2);
                prop_assert!(e.carry >= base.carry);
            }
            prop_assert!(e.ff >= base.ff);
            prop_assert!(e.dsp >= base.dsp);
            prop_assert!(e.acc_bits >= base.acc_bits);
        }
    }

    #[test]
    fn cost_never_decreases_with_parallelism(fps in 10.0f64..20000.0, factor in 1.0f64..8.0) {
        let layers = model(int(4, false), int(4, true));
        let lo = estimate_model(&layers, &df(fps, 200.0)).expect("lo");
        let hi = estimate_model(&layers, &df(fps * factor, 200.0)).expect("hi");
        prop_assert!(hi.lut >= lo.lut && hi.ff >= lo.ff && hi.dsp >= lo.dsp && hi.carry >= lo.carry);
        prop_assert!(hi.cycles_per_frame <= lo.cycles_per_frame);
    }
}
