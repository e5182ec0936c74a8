//! Unit tests of the metrics against hand-computed values.

use super::*;
use ndarray::{arr2, Array2, Array4, ArrayD, IxDyn};

fn d(a: Array2<f32>) -> ArrayD<f32> {
    a.into_dyn()
}

#[test]
fn accuracy_top1_top5_with_ties() {
    let mut acc = Accuracy::default();
    // Row 0: label 2 is max. Row 1: label 0 ties with class 1 (lower index wins → top-1).
    let logits = d(arr2(&[
        [0.1, 0.2, 0.9, 0.0, 0.0, 0.0, 0.0],
        [0.5, 0.5, 0.1, 0.0, 0.0, 0.0, 0.0],
    ]));
    acc.update(logits.view(), &[2, 0]).expect("ok");
    // Row: label 6 has rank 5 (five larger values) → neither top-1 nor top-5.
    let l2 = d(arr2(&[[6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5]]));
    acc.update(l2.view(), &[6]).expect("ok");
    let l3 = d(arr2(&[[6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5]]));
    acc.update(l3.view(), &[4]).expect("ok");
    let r = acc.finish().expect("samples");
    assert_eq!(r.samples, 4);
    assert_eq!(r.top1, 0.5);
    assert_eq!(r.top5, 0.75);
    assert!(matches!(
        acc.update(l3.view(), &[7]),
        Err(MetricError::LabelRange { label: 7, .. })
    ));
    assert!(acc.update(l3.view(), &[1, 2]).is_err());
    assert!(Accuracy::default().finish().is_err());
}

#[test]
fn agreement_sqnr_cosine() {
    let r = d(arr2(&[[1.0, 2.0, 3.0], [3.0, 0.0, 0.0]]));
    let t = d(arr2(&[[1.0, 2.0, 2.5], [2.0, 4.0, 0.0]]));
    let mut ag = Top1Agreement::default();
    ag.update(r.view(), t.view()).expect("ok");
    assert_eq!(ag.finish().expect("ok"), 0.5);
    let mut s = Sqnr::default();
    s.update(r.view(), t.view()).expect("ok");
    // signal = 1+4+9+9 = 23, noise = 0.25 + 1 + 16 = 17.25.
    let want = 10.0 * (23.0f64 / 17.25).log10();
    assert!((s.finish().expect("ok") - want).abs() < 1e-12);
    let mut s2 = Sqnr::default();
    s2.update(r.view(), r.view()).expect("ok");
    assert_eq!(s2.finish().expect("ok"), f64::INFINITY);
    let mut c = Cosine::default();
    c.update(r.view(), t.view()).expect("ok");
    let c0 = (1.0 + 4.0 + 7.5) / (14.0f64.sqrt() * 11.25f64.sqrt());
    let c1 = 6.0 / (3.0 * 20.0f64.sqrt());
    assert!((c.finish().expect("ok") - (c0 + c1) / 2.0).abs() < 1e-12);
    let bad = d(Array2::zeros((2, 2)));
    assert!(matches!(
        s.update(r.view(), bad.view()),
        Err(MetricError::ShapeMismatch { .. })
    ));
}

#[test]
fn softmax_kl_matches_hand_value() {
    let r = d(arr2(&[[0.0f32, 0.0]]));
    let t = d(arr2(&[[0.0f32, 2.0f32.ln()]]));
    // p = (1/2, 1/2), q = (1/3, 2/3): KL = ½ln(3/2) + ½ln(3/4).
    let mut k = SoftmaxKl::default();
    k.update(r.view(), t.view()).expect("ok");
    let want = 0.5 * (1.5f64).ln() + 0.5 * (0.75f64).ln();
    assert!((k.finish().expect("ok") - want).abs() < 1e-7);
    let mut z = SoftmaxKl::default();
    z.update(r.view(), r.view()).expect("ok");
    assert_eq!(z.finish().expect("ok"), 0.0);
}

#[test]
fn pearson_streaming_equals_single_pass() {
    let x: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin() + 3.0).collect();
    let y: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, v)| 2.0 * v + (i % 7) as f32 * 0.1)
        .collect();
    let xa = ArrayD::from_shape_vec(IxDyn(&[100]), x.clone()).expect("shape");
    let ya = ArrayD::from_shape_vec(IxDyn(&[100]), y.clone()).expect("shape");
    let mut one = Pearson::default();
    one.update(xa.view(), ya.view()).expect("ok");
    let mut many = Pearson::default();
    for k in 0..10 {
        let xs = ArrayD::from_shape_vec(IxDyn(&[10]), x[k * 10..k * 10 + 10].to_vec()).expect("s");
        let ys = ArrayD::from_shape_vec(IxDyn(&[10]), y[k * 10..k * 10 + 10].to_vec()).expect("s");
        many.update(xs.view(), ys.view()).expect("ok");
    }
    // Two-pass reference.
    let n = 100.0;
    let mx = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let my = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(&y) {
        let (a, b) = (f64::from(a) - mx, f64::from(b) - my);
        sxy += a * b;
        sxx += a * a;
        syy += b * b;
    }
    let want = sxy / (sxx * syy).sqrt();
    assert!((one.finish().expect("ok") - want).abs() < 1e-12);
    assert!((many.finish().expect("ok") - want).abs() < 1e-12);
    let mut neg = Pearson::default();
    let yn = xa.mapv(|v| -v);
    neg.update(xa.view(), yn.view()).expect("ok");
    assert!((neg.finish().expect("ok") + 1.0).abs() < 1e-12);
}

#[test]
fn mask_iou() {
    let r = d(arr2(&[[0.9, 0.8, 0.1, 0.0]]));
    let t = d(arr2(&[[0.7, 0.2, 0.6, 0.0]]));
    let mut m = MaskIou::new(0.5);
    m.update(r.view(), t.view()).expect("ok");
    // r mask {0,1}, t mask {0,2}: I = 1, U = 3.
    assert!((m.finish().expect("ok") - 1.0 / 3.0).abs() < 1e-12);
    let mut e = MaskIou::new(5.0);
    e.update(r.view(), t.view()).expect("ok");
    assert_eq!(e.finish().expect("ok"), 1.0);
}

#[test]
fn psnr_values() {
    let r = d(arr2(&[[0.0, 1.0], [0.5, 0.25]]));
    let t = d(arr2(&[[0.1, 1.0], [0.5, 0.25]]));
    let mut p = Psnr::new(PsnrPeak::Fixed(1.0));
    p.update(r.view(), t.view()).expect("ok");
    // MSE = 0.01 / 4 → PSNR = 10·log10(400) ≈ 26.02 dB.
    let v = p.finish().expect("ok");
    assert!((v - 10.0 * 400f64.log10()).abs() < 1e-5, "{v}");
    let mut q = Psnr::new(PsnrPeak::DataRange);
    q.update(r.view(), t.view()).expect("ok");
    assert!((q.finish().expect("ok") - v).abs() < 1e-5);
}

#[test]
fn ssim_identity_constants_and_degradation() {
    let img = Array4::from_shape_fn((2, 1, 16, 20), |(n, _, y, x)| {
        ((x * 7 + y * 3 + n * 11) % 17) as f32 / 16.0
    })
    .into_dyn();
    let mut s = Ssim::new(1.0).expect("range");
    s.update(img.view(), img.view()).expect("ok");
    assert!((s.finish().expect("ok") - 1.0).abs() < 1e-12);
    // Constant planes a, b: SSIM = (2ab + C1) / (a² + b² + C1) exactly.
    let a = ArrayD::from_elem(IxDyn(&[12, 12]), 0.6f32);
    let b = ArrayD::from_elem(IxDyn(&[12, 12]), 0.3f32);
    let mut c = Ssim::new(1.0).expect("range");
    c.update(a.view(), b.view()).expect("ok");
    let (fa, fb, c1) = (f64::from(0.6f32), f64::from(0.3f32), 1e-4);
    let want = (2.0 * fa * fb + c1) / (fa * fa + fb * fb + c1);
    assert!((c.finish().expect("ok") - want).abs() < 1e-9);
    // Noise lowers SSIM; more noise lowers it more.
    let noisy = |amp: f32| {
        let mut v = img.clone();
        v.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x += amp * if (i * 2654435761) % 7 < 3 { 1.0 } else { -1.0 });
        v
    };
    let mut s1 = Ssim::new(1.0).expect("range");
    s1.update(img.view(), noisy(0.05).view()).expect("ok");
    let mut s2 = Ssim::new(1.0).expect("range");
    s2.update(img.view(), noisy(0.2).view()).expect("ok");
    let (v1, v2) = (s1.finish().expect("ok"), s2.finish().expect("ok"));
    assert!(v1 < 1.0 && v2 < v1, "{v1} {v2}");
    let small = ArrayD::<f32>::zeros(IxDyn(&[5, 5]));
    assert!(s.update(small.view(), small.view()).is_err());
    assert!(Ssim::new(0.0).is_err());
}
