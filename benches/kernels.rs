//! Throughput benchmark of the convolution and matrix-product kernels against straightforward
//! loops (single-threaded, f32, cache-friendly i-k-j order). Run with
//! `cargo bench --bench kernels` (optionally `RAYON_NUM_THREADS=1|2`). Prints milliseconds per
//! call and GFLOP/s (2 flops per multiply-accumulate) for the shapes that dominate W2
//! (EfficientNet-Lite0, batch 8) and W3 (ViT-S/14, batch 1). `BENCH_FILTER=text` runs only the
//! cases whose name contains `text`. Convolution outputs go back to the buffer pool after each
//! call, as in the interpreter.

use mfq::kernels::conv::{conv, conv_output_len, Conv2dParams};
use mfq::kernels::matmul::matmul;
use ndarray::ArrayD;
use std::hint::black_box;
use std::time::Instant;

fn data(shape: &[usize], seed: u32) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 16) as f32 / 65536.0 - 0.5
        })
        .collect();
    ArrayD::from_shape_vec(shape.to_vec(), v).expect("shape")
}

/// Fastest of `reps` runs after one warm-up, in seconds per call (the minimum is the most
/// stable estimate on a machine shared with other jobs).
fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Direct 2-D convolution loop (no im2col, one thread).
fn naive_conv(x: &[f32], xs: [usize; 4], w: &[f32], ws: [usize; 4], p: &Conv2dParams) -> Vec<f32> {
    let [n, c, h, wd] = xs;
    let [m, cg, kh, kw] = ws;
    let g = p.groups;
    let mg = m / g;
    let oh = conv_output_len(
        h,
        kh,
        p.strides[0],
        p.dilations[0],
        p.pads_begin[0],
        p.pads_end[0],
    )
    .unwrap_or(0);
    let ow = conv_output_len(
        wd,
        kw,
        p.strides[1],
        p.dilations[1],
        p.pads_begin[1],
        p.pads_end[1],
    )
    .unwrap_or(0);
    let mut y = vec![0f32; n * m * oh * ow];
    for ni in 0..n {
        for mi in 0..m {
            let gi = mi / mg;
            for ci in 0..cg {
                let xc = &x[((ni * c) + gi * cg + ci) * h * wd..][..h * wd];
                for i in 0..kh {
                    for j in 0..kw {
                        let wv = w[((mi * cg + ci) * kh + i) * kw + j];
                        for oy in 0..oh {
                            let iy = (oy * p.strides[0] + i * p.dilations[0]) as isize
                                - p.pads_begin[0] as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            let yrow = &mut y[((ni * m + mi) * oh + oy) * ow..][..ow];
                            for (ox, yv) in yrow.iter_mut().enumerate() {
                                let ix = (ox * p.strides[1] + j * p.dilations[1]) as isize
                                    - p.pads_begin[1] as isize;
                                if ix >= 0 && ix < wd as isize {
                                    *yv += wv * xc[iy as usize * wd + ix as usize];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

/// i-k-j matrix product loop (one thread).
fn naive_matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        let crow = &mut c[i * n..(i + 1) * n];
        for t in 0..k {
            let av = a[i * k + t];
            for (cv, bv) in crow.iter_mut().zip(&b[t * n..(t + 1) * n]) {
                *cv += av * bv;
            }
        }
    }
    c
}

struct ConvCase {
    name: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    stride: usize,
    pad: usize,
    groups: usize,
}

fn main() {
    // Optional substring filter on the case names: `BENCH_FILTER=depthwise cargo bench ...`.
    let filter = std::env::var("BENCH_FILTER").unwrap_or_default();
    let threads = rayon::current_num_threads();
    println!("rayon threads: {threads}");
    println!("| kernel | shape | mfq ms | mfq GFLOP/s | naive ms | naive GFLOP/s | speed-up |");
    println!("|---|---|---|---|---|---|---|");
    let convs = [
        ConvCase {
            name: "conv 3x3 s2 (W2 stem)",
            x: [8, 3, 224, 224],
            w: [32, 3, 3, 3],
            stride: 2,
            pad: 1,
            groups: 1,
        },
        ConvCase {
            name: "conv 1x1 (W2 expand)",
            x: [8, 24, 56, 56],
            w: [144, 24, 1, 1],
            stride: 1,
            pad: 0,
            groups: 1,
        },
        ConvCase {
            name: "conv 1x1 (W2 blocks.1 expand)",
            x: [8, 16, 112, 112],
            w: [96, 16, 1, 1],
            stride: 1,
            pad: 0,
            groups: 1,
        },
        ConvCase {
            name: "conv 1x1 (W2 blocks.4 expand, k=40)",
            x: [8, 40, 28, 28],
            w: [240, 40, 1, 1],
            stride: 1,
            pad: 0,
            groups: 1,
        },
        ConvCase {
            name: "conv 1x1 (W2 blocks.6 expand, k=80)",
            x: [8, 80, 14, 14],
            w: [480, 80, 1, 1],
            stride: 1,
            pad: 0,
            groups: 1,
        },
        ConvCase {
            name: "conv 1x1 (W2 blocks.2 project, k=144)",
            x: [8, 144, 56, 56],
            w: [24, 144, 1, 1],
            stride: 1,
            pad: 0,
            groups: 1,
        },
        ConvCase {
            name: "depthwise 3x3 (W2)",
            x: [8, 144, 56, 56],
            w: [144, 1, 3, 3],
            stride: 1,
            pad: 1,
            groups: 144,
        },
        ConvCase {
            name: "depthwise 3x3 s2 (W2 blocks.1)",
            x: [8, 96, 112, 112],
            w: [96, 1, 3, 3],
            stride: 2,
            pad: 1,
            groups: 96,
        },
        ConvCase {
            name: "depthwise 3x3 (W2 blocks.0)",
            x: [8, 32, 112, 112],
            w: [32, 1, 3, 3],
            stride: 1,
            pad: 1,
            groups: 32,
        },
        ConvCase {
            name: "depthwise 5x5 s2 (W2)",
            x: [8, 240, 28, 28],
            w: [240, 1, 5, 5],
            stride: 2,
            pad: 2,
            groups: 240,
        },
        ConvCase {
            name: "conv 3x3 (dense)",
            x: [1, 128, 56, 56],
            w: [128, 128, 3, 3],
            stride: 1,
            pad: 1,
            groups: 1,
        },
        ConvCase {
            name: "conv 14x14 s14 (W3 patches)",
            x: [1, 3, 224, 224],
            w: [384, 3, 14, 14],
            stride: 14,
            pad: 0,
            groups: 1,
        },
    ];
    for cc in convs.iter().filter(|c| c.name.contains(filter.as_str())) {
        let x = data(&cc.x, 1);
        let w = data(&cc.w, 2);
        let p = Conv2dParams {
            strides: vec![cc.stride; 2],
            dilations: vec![1; 2],
            pads_begin: vec![cc.pad; 2],
            pads_end: vec![cc.pad; 2],
            groups: cc.groups,
        };
        let y = conv(&x.view(), &w.view(), None, &p).expect("conv");
        let (oh, ow) = (y.shape()[2], y.shape()[3]);
        let macs = (cc.x[0] * cc.w[0] * cc.w[1] * cc.w[2] * cc.w[3] * oh * ow) as f64;
        let t = time(15, || {
            let y = black_box(conv(&x.view(), &w.view(), None, &p).expect("conv"));
            // Hand the output back to the buffer pool, as the interpreter does with dead
            // tensors, so that the timing is the kernel's and not the first touch of fresh pages.
            mfq::kernels::buffer::recycle(y.into_raw_vec_and_offset().0);
        });
        // The naive loop runs on one image and is scaled to the batch.
        let x1 = data(&[1, cc.x[1], cc.x[2], cc.x[3]], 1);
        let xs = x1.as_slice().expect("contiguous");
        let ws = w.as_slice().expect("contiguous");
        let tn = time(5, || {
            black_box(naive_conv(xs, [1, cc.x[1], cc.x[2], cc.x[3]], ws, cc.w, &p));
        }) * cc.x[0] as f64;
        let yn = naive_conv(xs, [1, cc.x[1], cc.x[2], cc.x[3]], ws, cc.w, &p);
        let y1 = y.as_slice().expect("contiguous");
        let err = yn
            .iter()
            .zip(y1)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-3, "{}: mismatch {err}", cc.name);
        println!(
            "| {} | X {:?} W {:?} | {:.2} | {:.1} | {:.2} | {:.1} | {:.1}x |",
            cc.name,
            cc.x,
            cc.w,
            t * 1e3,
            2.0 * macs / t / 1e9,
            tn * 1e3,
            2.0 * macs / tn / 1e9,
            tn / t
        );
    }
    let mms: [(&str, &[usize], &[usize]); 4] = [
        ("matmul (W3 qkv)", &[257, 384], &[384, 1152]),
        ("matmul (W3 mlp)", &[257, 384], &[384, 1536]),
        (
            "batched matmul (W3 attention)",
            &[6, 257, 64],
            &[6, 64, 257],
        ),
        ("matmul (square 1024)", &[1024, 1024], &[1024, 1024]),
    ];
    for (name, sa, sb) in mms.into_iter().filter(|m| m.0.contains(filter.as_str())) {
        let a = data(sa, 3);
        let b = data(sb, 4);
        let nb: usize = sa[..sa.len() - 2].iter().product();
        let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
        let macs = (nb * m * k * n) as f64;
        let t = time(15, || {
            black_box(matmul(&a.view(), &b.view()).expect("matmul"));
        });
        let ad = a.as_slice().expect("contiguous");
        let bd = b.as_slice().expect("contiguous");
        let tn = time(5, || {
            black_box(naive_matmul(&ad[..m * k], &bd[..k * n], m, k, n));
        }) * nb as f64;
        println!(
            "| {} | {:?} x {:?} | {:.2} | {:.1} | {:.2} | {:.1} | {:.1}x |",
            name,
            sa,
            sb,
            t * 1e3,
            2.0 * macs / t / 1e9,
            tn * 1e3,
            2.0 * macs / tn / 1e9,
            tn / t
        );
    }
}
