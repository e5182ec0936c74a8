//! W5 smoke test of `noise-level-calibration`: the terrain consistency UNet's multistep sampler
//! builds a two-sample calibration set (pure noise at σ 80 and the re-noised estimate at
//! σ(0.5) ≈ 0.4), the pipeline calibrates int8 on it and the quantized model stays close to
//! float on the low-noise state. About five W5 forward passes.

use std::path::PathBuf;

use mfq::interp::Interpreter;
use mfq::metrics::{PairMetric, Psnr, PsnrPeak};
use mfq::passes::noise_level::{Conditioning, LevelDistribution, NoiseCalibOptions};
use mfq::quant::Recipe;
use mfq::tensor::Tensor;
use ndarray::Axis;

fn w5() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cache/w5/terrain_unet.onnx");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/prepare-test-data.sh` to fetch the workloads",
        p.display()
    );
    p
}

#[test]
fn w5_sampler_calibration_smoke() {
    let mut model = mfq::onnx::load(&w5()).expect("load W5");
    let recipe = Recipe {
        passes: vec!["noise-level-calibration".into()],
        noise_calibration: Some(NoiseCalibOptions {
            steps: 2,
            distribution: LevelDistribution::Schedule,
            samples: 2,
            seed: 7,
            cond: vec![Conditioning {
                input: "difficulty".into(),
                range: None,
                values: Some(vec![0.5]),
            }],
            ..Default::default()
        }),
        batch_size: 2,
        ..Default::default()
    };
    mfq::quant::prepare(&mut model, &recipe.passes).expect("prepare");
    let (ds, log) =
        mfq::quant::pipeline::noise_level_calibration(&model, &recipe).expect("calibration set");
    assert!(log.contains("1 denoiser evaluations"), "{log}");
    let b = ds.batches(2).expect("b").next().expect("one").expect("ok");
    let noisy = b.input("noisy").expect("noisy");
    let sigma = b.input("sigma").expect("sigma");
    assert_eq!(noisy.shape(), &[2, 1, 128, 128]);
    assert_eq!(sigma[[0]], 80.0);
    let s_half = (0.002f64 * (80.0f64 / 0.002).sqrt()) as f32;
    assert!((sigma[[1]] - s_half).abs() < 1e-6, "{}", sigma[[1]]);
    let rms = |i: usize| {
        let r = noisy.index_axis(Axis(0), i);
        (r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / r.len() as f64).sqrt()
    };
    // σ 80 is pure noise; at σ 0.4 the state is a height map in [-1, 1] plus noise of 0.4.
    assert!((rms(0) - 80.0).abs() < 2.0, "rms at sigma 80: {}", rms(0));
    assert!(rms(1) < 2.0 && rms(1) > 0.2, "rms at sigma 0.4: {}", rms(1));

    let r = mfq::quant::quantize(&model, &recipe, &ds).expect("quantize int8");
    let feeds: Vec<(String, Tensor)> = b
        .inputs
        .iter()
        .map(|(n, a)| {
            (
                n.clone(),
                Tensor::F32(a.slice_axis(Axis(0), (1..2).into()).to_owned()),
            )
        })
        .collect();
    let f = Interpreter::new(&r.float)
        .expect("float")
        .run(&feeds)
        .expect("float run");
    let q = Interpreter::new(&r.sim)
        .expect("sim")
        .run(&feeds)
        .expect("sim run");
    let (f, q) = (f[0].1.to_f32().expect("f"), q[0].1.to_f32().expect("q"));
    let mut psnr = Psnr::new(PsnrPeak::Fixed(2.0));
    psnr.update(f.view(), q.view()).expect("psnr");
    let p = psnr.finish().expect("psnr");
    assert!(p > 20.0, "W8A8 PSNR at sigma 0.4: {p:.2} dB");
}
