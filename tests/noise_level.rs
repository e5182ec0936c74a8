//! `noise-level-calibration` on a small graph: the pass runs the model's sampler through the
//! interpreter, builds an in-memory calibration set with the right shapes and noise levels, and
//! the quantize pipeline calibrates on it. The toy denoiser is `x̂₀ = Conv1x1(x / (1 + σ) + d)`,
//! so every state the sampler visits can be recomputed by hand.

use mfq::interp::Interpreter;
use mfq::ir::{Dim, Model, Node, Value, ValueId};
use mfq::passes::noise_level::{
    build_calibration_set, run_sampler, Conditioning, LevelDistribution, NoiseCalibOptions,
};
use mfq::quant::Recipe;
use mfq::tensor::{DType, Tensor};
use ndarray::{ArrayD, Axis};

fn input(m: &mut Model, name: &str, shape: Vec<Dim>) -> ValueId {
    let mut v = Value::named(name);
    v.dtype = Some(DType::F32);
    v.shape = Some(shape);
    let id = m.graph.add_value(v);
    m.graph.inputs.push(id);
    id
}

fn node(m: &mut Model, op: &str, ins: Vec<ValueId>, out: &str) -> ValueId {
    let o = m.graph.add_value(Value::named(out));
    let mut n = Node::new(op, ins.into_iter().map(Some).collect(), vec![Some(o)]);
    n.name = format!("{op}_{out}");
    m.graph.add_node(n).expect("add node");
    o
}

/// noisy [b,1,4,4], sigma [b], difficulty [b] → denoised [b,1,4,4].
fn toy_model() -> Model {
    let mut m = Model::default();
    m.opsets.insert(String::new(), 17);
    let b = || Dim::Sym("batch".into());
    let x = input(
        &mut m,
        "noisy",
        vec![b(), Dim::Known(1), Dim::Known(4), Dim::Known(4)],
    );
    let s = input(&mut m, "sigma", vec![b()]);
    let d = input(&mut m, "difficulty", vec![b()]);
    let shape = m.graph.add_constant(
        "shape",
        Tensor::i64(&[4], vec![-1, 1, 1, 1]).expect("shape"),
    );
    let one = m.graph.add_constant("one", Tensor::scalar_f32(1.0));
    let w = m
        .graph
        .add_constant("w", Tensor::f32(&[1, 1, 1, 1], vec![0.75]).expect("weight"));
    let s4 = node(&mut m, "Reshape", vec![s, shape], "s4");
    let d4 = node(&mut m, "Reshape", vec![d, shape], "d4");
    let s1 = node(&mut m, "Add", vec![s4, one], "s1");
    let xs = node(&mut m, "Div", vec![x, s1], "xs");
    let xd = node(&mut m, "Add", vec![xs, d4], "xd");
    let y = node(&mut m, "Conv", vec![xd, w], "denoised");
    m.graph.outputs.push(y);
    m
}

fn opts() -> NoiseCalibOptions {
    NoiseCalibOptions {
        distribution: LevelDistribution::Schedule,
        samples: 8,
        seed: 3,
        cond: vec![Conditioning {
            input: "difficulty".into(),
            range: None,
            values: Some(vec![0.25, 0.5]),
        }],
        ..Default::default()
    }
}

#[test]
fn pass_builds_calibration_set_with_shapes_levels_and_states() {
    let m = toy_model();
    let inputs = mfq::quant::pipeline::data_inputs(&m);
    let o = opts();
    let (ds, set, log) = build_calibration_set(&m, &inputs, &o, 3).expect("pass");
    assert!(
        log.contains("8 samples") && log.contains("schedule"),
        "{log}"
    );
    assert_eq!(ds.len(), 8);
    let schedule = o.schedule_sigmas().expect("schedule");
    let b: Vec<_> = ds
        .batches(8)
        .expect("batches")
        .collect::<Result<_, _>>()
        .expect("batch");
    assert_eq!(b.len(), 1);
    let noisy = b[0].input("noisy").expect("noisy");
    let sigma = b[0].input("sigma").expect("sigma");
    let diff = b[0].input("difficulty").expect("difficulty");
    assert_eq!(noisy.shape(), &[8, 1, 4, 4]);
    assert_eq!(sigma.shape(), &[8]);
    assert_eq!(diff.shape(), &[8]);
    for i in 0..8 {
        assert_eq!(sigma[[i]], schedule[i % 4] as f32, "sample {i}");
        assert_eq!(diff[[i]], if i < 4 { 0.25 } else { 0.5 });
    }
    // 0 + 1 + 2 + 3 denoiser evaluations per sweep of the 4 levels.
    assert_eq!(set.forwards, 12);
    // The same sampler with the toy computed by hand visits the same states.
    let by_hand = run_sampler(&o, &[1, 4, 4], 3, |x, s, c| {
        let mut y = x.clone();
        for (i, mut row) in y.axis_iter_mut(Axis(0)).enumerate() {
            row.mapv_inplace(|v| 0.75 * (v / (1.0 + s[i]) + c[0][i]));
        }
        Ok::<ArrayD<f32>, String>(y)
    })
    .expect("by hand");
    for (a, e) in set.noisy.iter().zip(by_hand.noisy.iter()) {
        assert!((a - e).abs() <= 1e-4 * e.abs().max(1.0), "{a} vs {e}");
    }
    // Pure-noise samples have spread ≈ σ_max; the lowest level is close to the estimate.
    let sd = |i: usize| {
        let r = set.noisy.index_axis(Axis(0), i);
        (r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / r.len() as f64).sqrt()
    };
    assert!(sd(0) > 30.0 && sd(0) < 160.0, "{}", sd(0));
    assert!(sd(3) < 5.0, "{}", sd(3));
    // Deterministic for the seed, different for another seed.
    let (_, again, _) = build_calibration_set(&m, &inputs, &o, 8).expect("again");
    assert_eq!(again.noisy, set.noisy);
    let other = NoiseCalibOptions { seed: 4, ..o };
    let (_, diff_seed, _) = build_calibration_set(&m, &inputs, &other, 3).expect("other");
    assert_ne!(diff_seed.noisy, set.noisy);
}

#[test]
fn quantize_calibrates_on_the_generated_set() {
    let m = toy_model();
    let recipe = Recipe {
        passes: vec!["noise-level-calibration".into()],
        noise_calibration: Some(NoiseCalibOptions {
            distribution: LevelDistribution::Ptq4dm,
            samples: 6,
            cond: vec![Conditioning {
                input: "difficulty".into(),
                range: Some([0.0, 1.0]),
                values: None,
            }],
            ..Default::default()
        }),
        batch_size: 4,
        ..Default::default()
    };
    let mut prepared = m.clone();
    mfq::quant::prepare(&mut prepared, &recipe.passes).expect("prepare accepts the pass");
    let (ds, log) =
        mfq::quant::pipeline::noise_level_calibration(&prepared, &recipe).expect("pass");
    assert!(log.contains("ptq4dm"), "{log}");
    assert_eq!(ds.len(), 6);
    let r = mfq::quant::quantize(&prepared, &recipe, &ds).expect("quantize");
    assert_eq!(r.quantized.acts.len(), 1, "the Conv input is calibrated");
    let interp = Interpreter::new(&r.sim).expect("sim");
    let b = ds.batches(6).expect("b").next().expect("one").expect("ok");
    let feeds: Vec<(String, Tensor)> = b
        .inputs
        .into_iter()
        .map(|(n, a)| (n, Tensor::F32(a)))
        .collect();
    let out = interp.run(&feeds).expect("run");
    assert_eq!(out[0].1.shape(), &[6, 1, 4, 4]);
    // The TOML table parses into the same options.
    let t: Recipe = toml::from_str(
        "passes = [\"noise-level-calibration\"]\n[noise_calibration]\nsamples = 6\n\
         distribution = \"ptq4dm\"\n[[noise_calibration.cond]]\ninput = \"difficulty\"\n\
         range = [0.0, 1.0]\n",
    )
    .expect("toml");
    assert_eq!(t.noise_calibration, recipe.noise_calibration);
    assert!(toml::from_str::<Recipe>("[noise_calibration]\nbogus = 1\n").is_err());
}

#[test]
fn options_errors_name_the_input() {
    let m = toy_model();
    let inputs = mfq::quant::pipeline::data_inputs(&m);
    // difficulty not described: the error names it.
    let o = NoiseCalibOptions {
        samples: 2,
        ..Default::default()
    };
    let e = build_calibration_set(&m, &inputs, &o, 2).expect_err("unfilled input");
    assert!(e.to_string().contains("difficulty"), "{e}");
    let o = NoiseCalibOptions {
        noisy_input: "x".into(),
        ..opts()
    };
    let e = build_calibration_set(&m, &inputs, &o, 2).expect_err("no such input");
    assert!(e.to_string().contains("'x'"), "{e}");
}
