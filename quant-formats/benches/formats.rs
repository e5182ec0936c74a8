//! Throughput of per-tensor, per-channel and MX fake quantization on one core, each beside a
//! plain copy of the same buffer (elements/s). Run: `cargo bench -p quant-formats`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quant_formats::{Format, Rounding};
use std::hint::black_box;
use std::time::Duration;

const ROWS: usize = 256;
const COLS: usize = 4096;

fn input() -> Vec<f32> {
    let mut s = 0x9E37_79B9u32;
    (0..ROWS * COLS)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32 - 0.5) * 8.0
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let x = input();
    let mut out = vec![0f32; x.len()];
    let mut g = c.benchmark_group("quantize");
    g.throughput(Throughput::Elements(x.len() as u64));
    g.bench_function("copy", |b| {
        b.iter(|| {
            out.copy_from_slice(black_box(&x));
            black_box(&out);
        })
    });
    for name in ["fp8-e4m3fn", "fp4-e2m1", "fp6-e3m2", "int4"] {
        let f: Format = name.parse().expect("format");
        let q = f.quantizer(Rounding::HalfEven);
        g.bench_with_input(BenchmarkId::new("per-tensor", name), &q, |b, q| {
            b.iter(|| q.fake_quantize(black_box(&x), black_box(0.37), &mut out))
        });
        g.bench_with_input(BenchmarkId::new("per-tensor-pow2", name), &q, |b, q| {
            b.iter(|| q.fake_quantize(black_box(&x), black_box(0.25), &mut out))
        });
    }
    let e4 = "fp8-e4m3fn".parse::<Format>().expect("format");
    let reference = e4.quantizer(Rounding::HalfEven).reference_kernel();
    g.bench_function("per-tensor-reference-kernel/fp8-e4m3fn", |b| {
        b.iter(|| reference.fake_quantize(black_box(&x), black_box(0.37), &mut out))
    });
    let int4: Format = "int4".parse().expect("format");
    let scales: Vec<f32> = (0..ROWS).map(|r| 0.1 + r as f32 * 0.01).collect();
    g.bench_function("per-channel/int4", |b| {
        b.iter(|| {
            int4.fake_quantize_per_channel(black_box(&x), &[ROWS, COLS], 0, &scales, &mut out)
                .expect("shape")
        })
    });
    let col_scales: Vec<f32> = (0..COLS).map(|c| 0.1 + c as f32 * 0.001).collect();
    g.bench_function("per-channel-last-axis/int4", |b| {
        b.iter(|| {
            int4.fake_quantize_per_channel(black_box(&x), &[ROWS, COLS], 1, &col_scales, &mut out)
                .expect("shape")
        })
    });
    g.bench_function("per-channel-last-axis/fp8-e4m3fn", |b| {
        b.iter(|| {
            e4.fake_quantize_per_channel(black_box(&x), &[ROWS, COLS], 1, &col_scales, &mut out)
                .expect("shape")
        })
    });
    let mx: Format = "mxfp4".parse().expect("format");
    g.bench_function("mx/mxfp4", |b| {
        b.iter(|| {
            mx.fake_quantize_mx(black_box(&x), &[ROWS, COLS], 1, &mut out)
                .expect("shape")
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10);
    targets = bench
}
criterion_main!(benches);
