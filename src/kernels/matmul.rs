//! Matrix products: a safe, bounds-checked single-precision GEMM over slices built on the `gemm`
//! crate, and the ONNX MatMul and Gemm operators on top of it.
//!
//! Parallelism: large products are split into column or row tiles whose size depends only on
//! (m, k, n); each output element is computed entirely inside one tile by one `gemm` call, so
//! results are bit-identical for any number of rayon threads.

use super::{param_err, shape_err, KernelError};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use rayon::prelude::*;

/// Products with fewer multiply-accumulates than this run as a single call.
const PAR_MIN_MACS: usize = 1 << 20;

/// Strided read-only matrix operand for [`sgemm`]: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// Backing storage.
    pub data: &'a [f32],
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major contiguous matrix with `cols` columns.
    pub fn row_major(data: &'a [f32], cols: usize) -> Self {
        MatRef {
            data,
            rs: cols,
            cs: 1,
        }
    }

    fn check(&self, rows: usize, cols: usize, what: &str) -> Result<(), KernelError> {
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        let last = (rows - 1).checked_mul(self.rs).and_then(|r| {
            (cols - 1)
                .checked_mul(self.cs)
                .and_then(|c| r.checked_add(c))
        });
        match last {
            Some(l) if l < self.data.len() => Ok(()),
            _ => Err(shape_err(
                "sgemm",
                format!(
                    "operand {what} ({rows}x{cols}, strides {}/{}) exceeds its buffer of {}",
                    self.rs,
                    self.cs,
                    self.data.len()
                ),
            )),
        }
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: tiles handed to different threads write disjoint element sets of the destination.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `C[m×n] = alpha · A[m×k] · B[k×n] (+ C if accumulate)`, with `C` row-major with row stride
/// `ldc`. Shapes are checked against the buffers; work is split across rayon threads
/// deterministically (see module doc).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) -> Result<(), KernelError> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if ldc < n || (m - 1) * ldc + n > c.len() {
        return Err(shape_err(
            "sgemm",
            format!(
                "destination {m}x{n} with ldc {ldc} exceeds its buffer of {}",
                c.len()
            ),
        ));
    }
    if k == 0 {
        for i in 0..m {
            let row = &mut c[i * ldc..i * ldc + n];
            if !accumulate {
                row.fill(0.0);
            }
        }
        return Ok(());
    }
    a.check(m, k, "A")?;
    b.check(k, n, "B")?;
    let ptr = SendPtr(c.as_mut_ptr());
    let run = |r0: usize, r1: usize, c0: usize, c1: usize| {
        let p = ptr;
        // SAFETY: bounds of A, B and C were checked above for the whole product; the tile
        // [r0, r1) × [c0, c1) lies inside it, and concurrent tiles are disjoint.
        unsafe {
            gemm::gemm(
                r1 - r0,
                c1 - c0,
                k,
                p.0.add(r0 * ldc + c0),
                1,
                ldc as isize,
                accumulate,
                a.data.as_ptr().add(r0 * a.rs),
                a.cs as isize,
                a.rs as isize,
                b.data.as_ptr().add(c0 * b.cs),
                b.cs as isize,
                b.rs as isize,
                1.0,
                alpha,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    };
    let macs = m.saturating_mul(n).saturating_mul(k);
    if macs < PAR_MIN_MACS {
        run(0, m, 0, n);
    } else if n >= m {
        let chunk = (n.div_ceil(4).div_ceil(16) * 16).max(128);
        let tiles: Vec<usize> = (0..n).step_by(chunk).collect();
        tiles
            .into_par_iter()
            .for_each(|c0| run(0, m, c0, (c0 + chunk).min(n)));
    } else {
        let chunk = (m.div_ceil(4).div_ceil(8) * 8).max(64);
        let tiles: Vec<usize> = (0..m).step_by(chunk).collect();
        tiles
            .into_par_iter()
            .for_each(|r0| run(r0, (r0 + chunk).min(m), 0, n));
    }
    Ok(())
}

/// Numpy-style broadcast of two batch shapes.
pub(crate) fn broadcast_shapes(
    op: &'static str,
    a: &[usize],
    b: &[usize],
) -> Result<Vec<usize>, KernelError> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(shape_err(
                op,
                format!("batch dimensions {a:?} and {b:?} do not broadcast"),
            ));
        };
    }
    Ok(out)
}

/// Offsets (in matrices) of each broadcast batch element into an operand with batch shape `src`.
fn batch_offsets(out: &[usize], src: &[usize]) -> Vec<usize> {
    let total: usize = out.iter().product();
    let r = out.len();
    // Strides of src in units of matrices, zero where broadcast.
    let mut strides = vec![0usize; r];
    let mut s = 1usize;
    for i in (0..src.len()).rev() {
        let oi = i + r - src.len();
        strides[oi] = if src[i] == 1 { 0 } else { s };
        s *= src[i];
    }
    let mut idx = vec![0usize; r];
    let mut res = Vec::with_capacity(total);
    for _ in 0..total {
        res.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum());
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    res
}

/// ONNX MatMul (numpy `matmul` semantics): operands of rank ≥ 2 are stacks of matrices whose
/// leading (batch) dimensions broadcast; a 1-D first operand is treated as a row vector
/// `[1, K]` and a 1-D second operand as a column vector `[K, 1]`, and the inserted dimension is
/// removed from the result.
pub fn matmul(
    a: &ArrayViewD<'_, f32>,
    b: &ArrayViewD<'_, f32>,
) -> Result<ArrayD<f32>, KernelError> {
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(shape_err("MatMul", "operands must have rank >= 1"));
    }
    let a_vec = a.ndim() == 1;
    let b_vec = b.ndim() == 1;
    let a2 = if a_vec {
        a.clone().insert_axis(Axis(0))
    } else {
        a.clone()
    };
    let b2 = if b_vec {
        b.clone().insert_axis(Axis(1))
    } else {
        b.clone()
    };
    let (ar, br) = (a2.ndim(), b2.ndim());
    let (m, k) = (a2.shape()[ar - 2], a2.shape()[ar - 1]);
    let (k2, n) = (b2.shape()[br - 2], b2.shape()[br - 1]);
    if k != k2 {
        return Err(shape_err(
            "MatMul",
            format!(
                "inner dimensions differ: A {:?} and B {:?}",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let batch = broadcast_shapes("MatMul", &a2.shape()[..ar - 2], &b2.shape()[..br - 2])?;
    let a_off = batch_offsets(&batch, &a2.shape()[..ar - 2]);
    let b_off = batch_offsets(&batch, &b2.shape()[..br - 2]);
    let a_std = a2.as_standard_layout();
    let b_std = b2.as_standard_layout();
    let a_data = a_std
        .as_slice()
        .ok_or_else(|| shape_err("MatMul", "operand A not contiguous"))?;
    let b_data = b_std
        .as_slice()
        .ok_or_else(|| shape_err("MatMul", "operand B not contiguous"))?;
    let nb: usize = batch.iter().product();
    // Every element is overwritten by the products below (`sgemm` without accumulation).
    let mut out = super::buffer::take(nb * m * n);
    if br == 2 && m * n > 0 {
        // B is shared by every batch element: one product with the batch folded into rows.
        sgemm(
            nb * m,
            k,
            n,
            1.0,
            MatRef::row_major(a_data, k),
            MatRef::row_major(b_data, n),
            &mut out,
            n,
            false,
        )?;
    } else if m * n > 0 {
        out.par_chunks_mut(m * n)
            .enumerate()
            .try_for_each(|(i, c)| {
                let ao = a_off[i] * m * k;
                let bo = b_off[i] * k * n;
                sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    MatRef::row_major(&a_data[ao..ao + m * k], k),
                    MatRef::row_major(&b_data[bo..bo + k * n], n),
                    c,
                    n,
                    false,
                )
            })?;
    }
    let mut shape = batch;
    if !a_vec {
        shape.push(m);
    }
    if !b_vec {
        shape.push(n);
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| shape_err("MatMul", e.to_string()))
}

/// Parameters of ONNX Gemm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmParams {
    /// Scale of the product `A'·B'`.
    pub alpha: f32,
    /// Scale of `C`.
    pub beta: f32,
    /// Use `Aᵀ` (A stored as `[K, M]`).
    pub trans_a: bool,
    /// Use `Bᵀ` (B stored as `[N, K]`).
    pub trans_b: bool,
}

impl Default for GemmParams {
    fn default() -> Self {
        GemmParams {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
        }
    }
}

/// ONNX Gemm: `Y[M, N] = alpha · A' · B' + beta · C`, where `A' = transA ? Aᵀ : A`,
/// `B' = transB ? Bᵀ : B`, both 2-D, and the optional `C` is unidirectionally broadcast to
/// `[M, N]` (scalar, `[N]`, `[M, 1]`, `[1, N]` or `[M, N]`).
pub fn gemm(
    a: &ArrayViewD<'_, f32>,
    b: &ArrayViewD<'_, f32>,
    c: Option<&ArrayViewD<'_, f32>>,
    p: &GemmParams,
) -> Result<ArrayD<f32>, KernelError> {
    if a.ndim() != 2 || b.ndim() != 2 {
        return Err(shape_err(
            "Gemm",
            format!("A {:?} and B {:?} must be 2-D", a.shape(), b.shape()),
        ));
    }
    let a_std = a.as_standard_layout();
    let b_std = b.as_standard_layout();
    let (a0, a1) = (a.shape()[0], a.shape()[1]);
    let (b0, b1) = (b.shape()[0], b.shape()[1]);
    let (m, k) = if p.trans_a { (a1, a0) } else { (a0, a1) };
    let (k2, n) = if p.trans_b { (b1, b0) } else { (b0, b1) };
    if k != k2 {
        return Err(shape_err(
            "Gemm",
            format!(
                "inner dimensions differ: A {:?} (transA={}) and B {:?} (transB={})",
                a.shape(),
                p.trans_a,
                b.shape(),
                p.trans_b
            ),
        ));
    }
    let a_data = a_std
        .as_slice()
        .ok_or_else(|| shape_err("Gemm", "operand A not contiguous"))?;
    let b_data = b_std
        .as_slice()
        .ok_or_else(|| shape_err("Gemm", "operand B not contiguous"))?;
    let am = if p.trans_a {
        MatRef {
            data: a_data,
            rs: 1,
            cs: a1,
        }
    } else {
        MatRef {
            data: a_data,
            rs: a1,
            cs: 1,
        }
    };
    let bm = if p.trans_b {
        MatRef {
            data: b_data,
            rs: 1,
            cs: b1,
        }
    } else {
        MatRef {
            data: b_data,
            rs: b1,
            cs: 1,
        }
    };
    let mut out = ArrayD::<f32>::zeros(IxDyn(&[m, n]));
    let mut accumulate = false;
    if let Some(c) = c {
        if p.beta != 0.0 {
            if c.ndim() > 2 {
                return Err(shape_err("Gemm", format!("C {:?} has rank > 2", c.shape())));
            }
            let cb = c.broadcast(IxDyn(&[m, n])).ok_or_else(|| {
                shape_err(
                    "Gemm",
                    format!("C {:?} does not broadcast to [{m}, {n}]", c.shape()),
                )
            })?;
            out.zip_mut_with(&cb, |o, &v| *o = p.beta * v);
            accumulate = true;
        }
    }
    let slice = out
        .as_slice_mut()
        .ok_or_else(|| param_err("Gemm", "output", "not contiguous"))?;
    sgemm(m, k, n, p.alpha, am, bm, slice, n, accumulate)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{assert_close, rand_array};
    use ndarray::{array, Array2};

    /// Output buffers from `kernels::buffer` hold stale values: without accumulation `sgemm`
    /// must never read them (NaN garbage would otherwise leak into the result).
    #[test]
    fn sgemm_ignores_stale_destination() {
        for &(m, k, n) in &[(1, 7, 33), (33, 7, 1), (1, 1, 1), (5, 0, 3), (40, 64, 300)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
            let mut zero = vec![0f32; m * n];
            let mut stale = vec![f32::NAN; m * n];
            for c in [&mut zero, &mut stale] {
                sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    MatRef::row_major(&a, k),
                    MatRef::row_major(&b, n),
                    c,
                    n,
                    false,
                )
                .expect("sgemm");
            }
            assert!(zero
                .iter()
                .zip(&stale)
                .all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }

    fn naive(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
        let (m, k) = a.dim();
        let n = b.dim().1;
        let mut c = Array2::zeros((m, n));
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for t in 0..k {
                    s += a[[i, t]] as f64 * b[[t, j]] as f64;
                }
                c[[i, j]] = s as f32;
            }
        }
        c
    }

    #[test]
    fn matmul_2d_hand_checked() {
        let a = array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn();
        let b = array![[5.0f32, 6.0], [7.0, 8.0]].into_dyn();
        let c = matmul(&a.view(), &b.view()).expect("matmul");
        assert_eq!(c, array![[19.0f32, 22.0], [43.0, 50.0]].into_dyn());
    }

    #[test]
    fn matmul_large_parallel_matches_naive() {
        for &(m, k, n) in &[(300, 70, 90), (40, 300, 700), (1, 5, 1)] {
            let a = rand_array(&[m, k], 1);
            let b = rand_array(&[k, n], 2);
            let c = matmul(&a.view(), &b.view()).expect("matmul");
            let a2 = a.into_dimensionality().expect("2d");
            let b2 = b.into_dimensionality().expect("2d");
            assert_close(&c, &naive(&a2, &b2).into_dyn(), 1e-4);
        }
    }

    #[test]
    fn matmul_independent_of_thread_count() {
        let a = rand_array(&[3, 200, 150], 11);
        let b = rand_array(&[3, 150, 700], 12);
        let y1 = matmul(&a.view(), &b.view()).expect("matmul");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let y2 = pool.install(|| matmul(&a.view(), &b.view()).expect("matmul"));
        assert_eq!(y1, y2);
    }

    #[test]
    fn matmul_broadcast_and_vectors() {
        let a = rand_array(&[2, 1, 3, 4], 3);
        let b = rand_array(&[5, 4, 6], 4);
        let c = matmul(&a.view(), &b.view()).expect("matmul");
        assert_eq!(c.shape(), &[2, 5, 3, 6]);
        for i in 0..2 {
            for j in 0..5 {
                let am = a.slice(ndarray::s![i, 0, .., ..]).to_owned();
                let bm = b.slice(ndarray::s![j, .., ..]).to_owned();
                let r = naive(&am, &bm);
                let got = c.slice(ndarray::s![i, j, .., ..]).to_owned();
                assert_close(&got.into_dyn(), &r.into_dyn(), 1e-5);
            }
        }
        let v = rand_array(&[4], 5);
        let mv = matmul(&a.view(), &v.view()).expect("mv");
        assert_eq!(mv.shape(), &[2, 1, 3]);
        let vm = matmul(&v.view(), &b.view()).expect("vm");
        assert_eq!(vm.shape(), &[5, 6]);
        let vv = matmul(&v.view(), &v.view()).expect("vv");
        assert_eq!(vv.ndim(), 0);
        let dot: f32 = v.iter().map(|x| x * x).sum();
        assert!((vv.iter().next().copied().unwrap_or(f32::NAN) - dot).abs() < 1e-5);
    }

    #[test]
    fn matmul_shape_errors() {
        let a = rand_array(&[2, 3], 1);
        let b = rand_array(&[4, 2], 1);
        assert!(matches!(
            matmul(&a.view(), &b.view()),
            Err(KernelError::Shape { .. })
        ));
        let a = rand_array(&[2, 2, 3], 1);
        let b = rand_array(&[3, 3, 2], 1);
        assert!(matmul(&a.view(), &b.view()).is_err());
    }

    #[test]
    fn gemm_transposes_alpha_beta_broadcast() {
        let a = rand_array(&[4, 3], 7); // transA: A' is 3x4
        let b = rand_array(&[5, 4], 8); // transB: B' is 4x5
        let c = rand_array(&[5], 9);
        let p = GemmParams {
            alpha: 0.5,
            beta: 2.0,
            trans_a: true,
            trans_b: true,
        };
        let y = gemm(&a.view(), &b.view(), Some(&c.view()), &p).expect("gemm");
        let at = a.t().to_owned().into_dimensionality().expect("2d");
        let bt = b.t().to_owned().into_dimensionality().expect("2d");
        let mut r = naive(&at, &bt) * 0.5;
        for mut row in r.rows_mut() {
            for (x, cv) in row.iter_mut().zip(c.iter()) {
                *x += 2.0 * cv;
            }
        }
        assert_close(&y, &r.into_dyn(), 1e-5);
        let bad = rand_array(&[2, 2], 1);
        assert!(gemm(&a.view(), &b.view(), Some(&bad.view()), &p).is_err());
    }
}
