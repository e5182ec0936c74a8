//! GPTQ (Frantar et al. 2023): quantizes a layer's weight column by column (a column = one input
//! feature across all output channels) and, after each column, spreads its rounding error over
//! the columns not yet quantized, weighted by the inverse Hessian `H⁻¹` of the layer
//! reconstruction loss `‖X Wᵀ − X Ŵᵀ‖²` (`H = 2/n · Xᵀ X` over calibration input rows).
//!
//! Format-agnostic: the column is rounded by a caller-supplied quantizer (the layer's own
//! integer or minifloat quantizer with its per-output-channel scales), so minifloats use their
//! own per-element grid step. Damping adds `damp · mean(diag H)` to the diagonal; updates are
//! applied lazily in blocks; act-order processes columns by decreasing `diag H`.
//!
//! Linear algebra is in f64. `H⁻¹ = Uᵀ U` with `U` upper triangular is obtained without forming
//! `H⁻¹`: the "upper-lower" factorisation `H = V Vᵀ` (V upper, via Cholesky of the
//! index-reversed matrix) gives `U = V⁻¹`.

use super::layer::{
    constant_f32, conv_im2col_rows, conv_params, layer_of, linear_rows, set_constant_f32,
    weight_from_matrices, weight_matrices, Layer, LayerKind,
};
use super::{GptqOptions, PassError};
use crate::ir::{Graph, NodeId};
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD};
use rayon::prelude::*;

const PASS: &str = "gptq";

/// Streaming accumulator of `Σ xᵀx` over layer input rows (f64), finished as `H = 2/n · Xᵀ X`.
#[derive(Debug, Clone)]
pub struct HessianAccumulator {
    dim: usize,
    sum: Vec<f64>,
    rows: u64,
}

impl HessianAccumulator {
    /// An empty accumulator for inputs of `dim` features.
    pub fn new(dim: usize) -> Self {
        HessianAccumulator {
            dim,
            sum: vec![0.0; dim * dim],
            rows: 0,
        }
    }

    /// Feature count.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows seen so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds rows `[n, dim]`. Each batch is multiplied in f32 (`gemm`) and added in f64; the
    /// result depends only on the sequence of batches.
    pub fn update(&mut self, rows: ArrayView2<'_, f32>) -> Result<(), PassError> {
        if rows.ncols() != self.dim {
            return Err(PassError::Shape {
                pass: PASS.into(),
                what: "Hessian rows".into(),
                detail: format!("rows have {} features, expected {}", rows.ncols(), self.dim),
            });
        }
        let n = rows.nrows();
        if n == 0 {
            return Ok(());
        }
        let x = rows.as_standard_layout();
        let d = self.dim;
        let xs = x.as_slice().unwrap_or(&[]);
        let mut c = vec![0f32; d * d];
        // C = Xᵀ X: A = Xᵀ (d×n, strides 1/d), B = X (n×d)
        crate::kernels::matmul::sgemm(
            d,
            n,
            d,
            1.0,
            crate::kernels::matmul::MatRef {
                data: xs,
                rs: 1,
                cs: d,
            },
            crate::kernels::matmul::MatRef::row_major(xs, d),
            &mut c,
            d,
            false,
        )
        .map_err(|e| PassError::Numeric {
            pass: PASS.into(),
            what: "Hessian update".into(),
            reason: e.to_string(),
        })?;
        for (s, v) in self.sum.iter_mut().zip(&c) {
            *s += f64::from(*v);
        }
        self.rows += n as u64;
        Ok(())
    }

    /// Adds another accumulator of the same dimension.
    pub fn merge(&mut self, other: &HessianAccumulator) -> Result<(), PassError> {
        if other.dim != self.dim {
            return Err(PassError::Shape {
                pass: PASS.into(),
                what: "Hessian merge".into(),
                detail: format!("{} vs {}", other.dim, self.dim),
            });
        }
        for (s, v) in self.sum.iter_mut().zip(&other.sum) {
            *s += v;
        }
        self.rows += other.rows;
        Ok(())
    }

    /// `H = 2/n · Σ xᵀx` (`[dim, dim]`).
    pub fn finish(&self) -> Result<Array2<f64>, PassError> {
        if self.rows == 0 {
            return Err(PassError::Numeric {
                pass: PASS.into(),
                what: "Hessian".into(),
                reason: "no calibration rows were accumulated".into(),
            });
        }
        let f = 2.0 / self.rows as f64;
        Array2::from_shape_vec(
            (self.dim, self.dim),
            self.sum.iter().map(|v| v * f).collect(),
        )
        .map_err(|e| PassError::Numeric {
            pass: PASS.into(),
            what: "Hessian".into(),
            reason: e.to_string(),
        })
    }
}

/// Result of [`gptq_quantize`].
#[derive(Debug, Clone)]
pub struct GptqResult {
    /// Quantized weight `[out, in]`.
    pub weight: Array2<f32>,
    /// Damping actually added to the diagonal (after any retries).
    pub damp: f64,
    /// Input features whose Hessian diagonal was zero (their weights are set to 0).
    pub dead_columns: usize,
}

/// In-place lower Cholesky of a row-major `n×n` matrix (lower triangle used and overwritten;
/// upper triangle zeroed). Err(i) when pivot `i` is not positive.
fn cholesky_lower(a: &mut [f64], n: usize) -> Result<(), usize> {
    for i in 0..n {
        for j in 0..=i {
            let (ri, rj) = (i * n, j * n);
            let mut s = a[ri + j];
            for k in 0..j {
                s -= a[ri + k] * a[rj + k];
            }
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return Err(i);
                }
                a[ri + i] = s.sqrt();
            } else {
                a[ri + j] = s / a[rj + j];
            }
        }
        for j in i + 1..n {
            a[i * n + j] = 0.0;
        }
    }
    Ok(())
}

/// Upper-triangular `U` with `H⁻¹ = Uᵀ U` (row-major), or Err(pivot) if `H` is not positive
/// definite.
fn inverse_cholesky_upper(h: &Array2<f64>) -> Result<Vec<f64>, usize> {
    let n = h.nrows();
    // R = P H P (index reversal); R = L Lᵀ; V = P L P is upper and H = V Vᵀ.
    let mut r = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            r[i * n + j] = h[[n - 1 - i, n - 1 - j]];
        }
    }
    cholesky_lower(&mut r, n).map_err(|i| n - 1 - i)?;
    let v = |i: usize, j: usize| r[(n - 1 - i) * n + (n - 1 - j)];
    // U = V⁻¹, column by column (independent, so parallel and deterministic).
    let cols: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|j| {
            let mut col = vec![0.0; j + 1];
            col[j] = 1.0 / v(j, j);
            for i in (0..j).rev() {
                let mut s = 0.0;
                for (k, ck) in col.iter().enumerate().take(j + 1).skip(i + 1) {
                    s += v(i, k) * ck;
                }
                col[i] = -s / v(i, i);
            }
            col
        })
        .collect();
    let mut u = vec![0.0; n * n];
    for (j, col) in cols.iter().enumerate() {
        for (i, c) in col.iter().enumerate() {
            u[i * n + j] = *c;
        }
    }
    Ok(u)
}

/// GPTQ on one weight matrix `w [out, in]` with Hessian `h [in, in]`.
///
/// `quantize_column(j, values)` must return the quantized values of input column `j` (original,
/// unpermuted index) for all `out` output channels — i.e. apply the layer's own per-element
/// quantizer including its per-output-channel scale. If `H + damp` is not positive definite the
/// damping is multiplied by 10 up to 4 times before giving up.
pub fn gptq_quantize<F>(
    w: ArrayView2<'_, f32>,
    h: &Array2<f64>,
    quantize_column: F,
    opts: &GptqOptions,
) -> Result<GptqResult, PassError>
where
    F: Fn(usize, &[f32]) -> Vec<f32>,
{
    let (rows, cols) = w.dim();
    if h.dim() != (cols, cols) {
        return Err(PassError::Shape {
            pass: PASS.into(),
            what: "Hessian".into(),
            detail: format!(
                "Hessian {:?} for a weight with {cols} input columns",
                h.dim()
            ),
        });
    }
    if opts.block == 0 || opts.damp.is_nan() || opts.damp <= 0.0 {
        return Err(PassError::InvalidOption {
            pass: PASS.into(),
            option: "block/damp".into(),
            reason: "block must be ≥ 1 and damp positive".into(),
        });
    }
    let mut h = h.clone();
    // Working weight, transposed: wt[j] is column j (contiguous).
    let mut wt: Vec<Vec<f64>> = (0..cols)
        .map(|j| w.column(j).iter().map(|&v| f64::from(v)).collect())
        .collect();
    let mut dead = 0;
    for j in 0..cols {
        if h[[j, j]] == 0.0 {
            h[[j, j]] = 1.0;
            wt[j].iter_mut().for_each(|v| *v = 0.0);
            dead += 1;
        }
    }
    let perm: Vec<usize> = if opts.act_order {
        let mut p: Vec<usize> = (0..cols).collect();
        p.sort_by(|&a, &b| h[[b, b]].total_cmp(&h[[a, a]]).then(a.cmp(&b)));
        p
    } else {
        (0..cols).collect()
    };
    let hp = Array2::from_shape_fn((cols, cols), |(i, j)| h[[perm[i], perm[j]]]);
    let mut wt: Vec<Vec<f64>> = perm.iter().map(|&j| std::mem::take(&mut wt[j])).collect();
    let mean_diag = (0..cols).map(|i| hp[[i, i]]).sum::<f64>() / cols.max(1) as f64;
    let mut damp = opts.damp * mean_diag;
    let mut u = None;
    for _ in 0..5 {
        let mut hd = hp.clone();
        for i in 0..cols {
            hd[[i, i]] += damp;
        }
        match inverse_cholesky_upper(&hd) {
            Ok(x) => {
                u = Some(x);
                break;
            }
            Err(_) => damp *= 10.0,
        }
    }
    let u = u.ok_or_else(|| PassError::Numeric {
        pass: PASS.into(),
        what: "Hessian".into(),
        reason: format!("not positive definite even with damping {damp:e}"),
    })?;
    let n = cols;
    let mut q_cols: Vec<Vec<f32>> = vec![Vec::new(); cols];
    let mut i1 = 0;
    while i1 < cols {
        let i2 = (i1 + opts.block).min(cols);
        let mut errs: Vec<Vec<f64>> = Vec::with_capacity(i2 - i1);
        for i in i1..i2 {
            let col: Vec<f32> = wt[i].iter().map(|&v| v as f32).collect();
            let q = quantize_column(perm[i], &col);
            if q.len() != rows {
                return Err(PassError::Shape {
                    pass: PASS.into(),
                    what: "quantized column".into(),
                    detail: format!("quantizer returned {} values for {rows}", q.len()),
                });
            }
            let d = u[i * n + i];
            let err: Vec<f64> = wt[i]
                .iter()
                .zip(&q)
                .map(|(&w, &q)| (w - f64::from(q)) / d)
                .collect();
            // Spread inside the block.
            let (_, rest) = wt.split_at_mut(i + 1);
            for (jj, wj) in rest[..i2 - i - 1].iter_mut().enumerate() {
                let c = u[i * n + i + 1 + jj];
                if c != 0.0 {
                    for (x, e) in wj.iter_mut().zip(&err) {
                        *x -= e * c;
                    }
                }
            }
            q_cols[perm[i]] = q;
            errs.push(err);
        }
        // Lazy update of the remaining columns.
        wt[i2..].par_iter_mut().enumerate().for_each(|(jj, wj)| {
            let j = i2 + jj;
            for (bi, err) in errs.iter().enumerate() {
                let c = u[(i1 + bi) * n + j];
                if c != 0.0 {
                    for (x, e) in wj.iter_mut().zip(err) {
                        *x -= e * c;
                    }
                }
            }
        });
        i1 = i2;
    }
    let weight = Array2::from_shape_fn((rows, cols), |(r, c)| q_cols[c][r]);
    Ok(GptqResult {
        weight,
        damp,
        dead_columns: dead,
    })
}

/// Layer input rows for the Hessian of a layer, per group (Conv: im2col rows per group, so a
/// depthwise conv gets one small Hessian per channel; Gemm/MatMul: the input flattened to
/// `[∏leading, K]`). `x` is one batch of the layer's float (or upstream-quantized) input.
pub fn layer_input_rows(
    g: &Graph,
    node: NodeId,
    x: &ArrayViewD<'_, f32>,
) -> Result<Vec<Array2<f32>>, PassError> {
    let layer = layer_of(g, node).ok_or_else(|| PassError::Node {
        pass: PASS.into(),
        node: g.node(node).label(),
        reason: "not a Conv/Gemm/MatMul with a constant f32 weight".into(),
    })?;
    match layer.kind {
        LayerKind::Conv { .. } => {
            let w = g
                .value(layer.weight)
                .constant
                .as_deref()
                .map(|t| t.shape().to_vec())
                .unwrap_or_default();
            let kernel = &w[2..];
            if x.ndim() != kernel.len() + 2 {
                return Err(PassError::Node {
                    pass: PASS.into(),
                    node: g.node(node).label(),
                    reason: format!("input shape {:?} does not fit kernel {w:?}", x.shape()),
                });
            }
            let p = conv_params(g, node, &x.shape()[2..], kernel)?;
            conv_im2col_rows(x, kernel, &p)
        }
        _ => Ok(vec![linear_rows(x)?]),
    }
}

/// Feature count of each group's Hessian for a layer (`C/g·∏k` for Conv, `K` otherwise), and
/// the number of groups.
pub fn hessian_dims(g: &Graph, node: NodeId) -> Result<(usize, usize), PassError> {
    let layer = layer_of(g, node).ok_or_else(|| PassError::Node {
        pass: PASS.into(),
        node: g.node(node).label(),
        reason: "not a Conv/Gemm/MatMul with a constant f32 weight".into(),
    })?;
    let w = constant_f32(g, layer.weight).unwrap_or_default();
    let mats = weight_matrices(&layer, &w)?;
    Ok((mats.first().map(|m| m.ncols()).unwrap_or(0), mats.len()))
}

/// Runs GPTQ on layer `node` of `g` and writes the quantized (fake-quantized, f32) weight back.
///
/// `hessians` holds one finished Hessian per group (see [`layer_input_rows`] and
/// [`HessianAccumulator`]). `quantize(out_channel, value)` rounds one weight element with the
/// layer's quantizer: typically `s[out] · format.quantize_value(value / s[out])` with the
/// per-output-channel scale `s` computed from the float weight before this call.
pub fn gptq_layer<Q>(
    g: &mut Graph,
    node: NodeId,
    hessians: &[Array2<f64>],
    quantize: Q,
    opts: &GptqOptions,
) -> Result<GptqResult, PassError>
where
    Q: Fn(usize, f32) -> f32,
{
    let (label, layer, w) = float_layer(g, node)?;
    let mats = weight_matrices(&layer, &w)?;
    if hessians.len() != mats.len() {
        return Err(PassError::Shape {
            pass: PASS.into(),
            what: format!("Hessians of {label}"),
            detail: format!("{} Hessians for {} groups", hessians.len(), mats.len()),
        });
    }
    let mut out = Vec::with_capacity(mats.len());
    let mut last = None;
    let mut dead = 0;
    let mut damp: f64 = 0.0;
    for (gi, (m, h)) in mats.iter().zip(hessians).enumerate() {
        let off = gi * m.nrows();
        let r = gptq_quantize(
            m.view(),
            h,
            |_, col| {
                col.iter()
                    .enumerate()
                    .map(|(o, &v)| quantize(off + o, v))
                    .collect()
            },
            opts,
        )
        .map_err(|e| match e {
            PassError::Numeric { pass, what, reason } => PassError::Numeric {
                pass,
                what: format!("{what} of {label} group {gi}"),
                reason,
            },
            other => other,
        })?;
        dead += r.dead_columns;
        damp = damp.max(r.damp);
        out.push(r.weight.clone());
        last = Some(r);
    }
    let nw = weight_from_matrices(&layer, w.shape(), &out)?;
    set_constant_f32(g, layer.weight, nw.clone());
    let mut r = last.ok_or_else(|| PassError::Node {
        pass: PASS.into(),
        node: label,
        reason: "weight has no groups".into(),
    })?;
    r.dead_columns = dead;
    r.damp = damp;
    // Report the full weight as a matrix of the first group's layout for single-group layers.
    if out.len() == 1 {
        r.weight = out.swap_remove(0);
    }
    Ok(r)
}

/// The label, layer and float weight of a Conv/Gemm/MatMul node.
fn float_layer(g: &Graph, node: NodeId) -> Result<(String, Layer, ArrayD<f32>), PassError> {
    let label = g.node(node).label();
    let layer = layer_of(g, node).ok_or_else(|| PassError::Node {
        pass: PASS.into(),
        node: label.clone(),
        reason: "not a Conv/Gemm/MatMul with a constant f32 weight".into(),
    })?;
    let w = constant_f32(g, layer.weight).ok_or_else(|| PassError::Node {
        pass: PASS.into(),
        node: label.clone(),
        reason: "weight is not constant".into(),
    })?;
    Ok((label, layer, w))
}

/// Held-out reconstruction errors of one layer: `Σ_o δ_o H δ_oᵀ` with `δ = Ŵ − W` and `H` the
/// Hessian of held-out calibration inputs, for the GPTQ weight (fitted without those inputs)
/// and for the round-to-nearest weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldOutCheck {
    /// Error of the GPTQ weight.
    pub gptq: f64,
    /// Error of the round-to-nearest weight.
    pub nearest: f64,
}

impl HeldOutCheck {
    /// GPTQ generalises to the held-out inputs: its error is below round-to-nearest's.
    pub fn keeps_gptq(&self) -> bool {
        self.gptq < self.nearest
    }
}

/// `tr(ΔW H ΔWᵀ)` with `ΔW = wq − w`, in f64 (the f64 counterpart of
/// [`super::adaround::recon_loss`], whose second moments are f32).
fn quadratic_error(w: &Array2<f32>, wq: &Array2<f32>, h: &Array2<f64>) -> f64 {
    let e = wq.mapv(f64::from) - w.mapv(f64::from);
    (e.dot(h) * &e).sum()
}

/// GPTQ guarded against overfitting the calibration rows (a layer whose Hessian comes from few
/// rows compared with its input features, e.g. the late 7×7 convolutions of a CNN on a few dozen
/// images, can be fitted far below round-to-nearest on those rows and far above it on others).
/// Rounds the layer with the Hessians of the `fit` accumulators, compares the held-out errors
/// (see [`HeldOutCheck`]) on the `held_out` ones, then either rounds again with both merged
/// (GPTQ generalised; `Some` result) or leaves the float weight in place so that the layer is
/// rounded to nearest by its quantizer (`None`). One accumulator per group in each slice.
pub fn gptq_layer_held_out<Q>(
    g: &mut Graph,
    node: NodeId,
    fit: &[HessianAccumulator],
    held_out: &[HessianAccumulator],
    quantize: Q,
    opts: &GptqOptions,
) -> Result<(Option<GptqResult>, HeldOutCheck), PassError>
where
    Q: Fn(usize, f32) -> f32,
{
    let (label, layer, w0) = float_layer(g, node)?;
    let fit_h: Vec<Array2<f64>> = fit.iter().map(|a| a.finish()).collect::<Result<_, _>>()?;
    gptq_layer(g, node, &fit_h, &quantize, opts)?;
    let (_, _, wg) = float_layer(g, node)?;
    let (m0, mg) = (weight_matrices(&layer, &w0)?, weight_matrices(&layer, &wg)?);
    if held_out.len() != m0.len() {
        return Err(PassError::Shape {
            pass: PASS.into(),
            what: format!("held-out Hessians of {label}"),
            detail: format!("{} Hessians for {} groups", held_out.len(), m0.len()),
        });
    }
    let mut check = HeldOutCheck {
        gptq: 0.0,
        nearest: 0.0,
    };
    for (gi, ((a, b), acc)) in m0.iter().zip(&mg).zip(held_out).enumerate() {
        let h = acc.finish()?;
        let off = gi * a.nrows();
        let r = Array2::from_shape_fn(a.raw_dim(), |(o, k)| quantize(off + o, a[[o, k]]));
        check.gptq += quadratic_error(a, b, &h);
        check.nearest += quadratic_error(a, &r, &h);
    }
    set_constant_f32(g, layer.weight, w0);
    if !check.keeps_gptq() {
        return Ok((None, check));
    }
    let all: Vec<Array2<f64>> = fit
        .iter()
        .zip(held_out)
        .map(|(a, b)| {
            let mut a = a.clone();
            a.merge(b)?;
            a.finish()
        })
        .collect::<Result<_, _>>()?;
    let r = gptq_layer(g, node, &all, quantize, opts)?;
    Ok((Some(r), check))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use quant_formats::Format;

    /// Deterministic normal-ish samples (sum of uniforms) from a seed.
    pub fn randn(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut u = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        (0..n)
            .map(|_| (0..4).map(|_| u()).sum::<f32>() - 2.0)
            .collect()
    }

    /// Correlated inputs `[n, k]`: a low-rank mix plus noise (like real activations).
    pub fn inputs(n: usize, k: usize, seed: u64) -> Array2<f32> {
        let basis = Array2::from_shape_vec((4, k), randn(4 * k, seed + 1)).expect("shape");
        let coef = Array2::from_shape_vec((n, 4), randn(n * 4, seed + 2)).expect("shape");
        let noise = Array2::from_shape_vec((n, k), randn(n * k, seed + 3)).expect("shape");
        coef.dot(&basis) + noise * 0.3
    }

    /// Per-output-channel abs-max scales for `format` and the matching element quantizer.
    pub fn rtn_quantizer(w: &Array2<f32>, format: Format) -> impl Fn(usize, f32) -> f32 {
        let maxv = format.max_value() as f32;
        let scales: Vec<f32> = w
            .rows()
            .into_iter()
            .map(|r| r.iter().fold(0f32, |a, v| a.max(v.abs())) / maxv)
            .collect();
        move |o: usize, v: f32| scales[o] * format.quantize_value(v / scales[o])
    }

    pub fn recon_err(x: &Array2<f32>, w: &Array2<f32>, wq: &Array2<f32>) -> f64 {
        let d = x.dot(&w.t()) - x.dot(&wq.t());
        d.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>()
    }

    fn check(format: &str, act_order: bool) {
        let f: Format = format.parse().expect("format");
        for seed in [1u64, 7, 42] {
            let (n, k, o) = (256, 48, 16);
            let x = inputs(n, k, seed);
            let w = Array2::from_shape_vec((o, k), randn(o * k, seed + 10)).expect("shape");
            let q = rtn_quantizer(&w, f);
            let rtn = w.indexed_iter().fold(w.clone(), |mut a, ((r, c), v)| {
                a[[r, c]] = q(r, *v);
                a
            });
            let mut acc = HessianAccumulator::new(k);
            acc.update(x.slice(ndarray::s![..100, ..])).expect("update");
            acc.update(x.slice(ndarray::s![100.., ..])).expect("update");
            let h = acc.finish().expect("h");
            let opts = GptqOptions {
                block: 16,
                act_order,
                ..GptqOptions::default()
            };
            let r = gptq_quantize(
                w.view(),
                &h,
                |_, col| col.iter().enumerate().map(|(o, v)| q(o, *v)).collect(),
                &opts,
            )
            .expect("gptq");
            // every element lies on its channel's grid
            for ((ri, _), v) in r.weight.indexed_iter() {
                assert_eq!(q(ri, *v), *v);
            }
            let (e_rtn, e_gptq) = (recon_err(&x, &w, &rtn), recon_err(&x, &w, &r.weight));
            eprintln!(
                "gptq {format} act_order={act_order} seed {seed}: rtn {e_rtn:.4} gptq {e_gptq:.4}"
            );
            assert!(
                e_gptq < 0.8 * e_rtn,
                "{format} seed {seed}: gptq {e_gptq} vs rtn {e_rtn}"
            );
        }
    }

    #[test]
    fn gptq_beats_rtn_int4() {
        check("int4", false);
        check("int4", true);
    }

    #[test]
    fn gptq_beats_rtn_e2m1() {
        check("e2m1", false);
        check("e2m1", true);
    }

    #[test]
    fn gptq_layer_on_conv_and_depthwise() {
        use crate::ir::AttrValue;
        use crate::kernels::testutil::rand_array;
        use crate::passes::equalize::tests::{eval, B};
        let f: Format = "int4".parse().expect("fmt");
        for group in [1i64, 6] {
            let mut b = B::new();
            let x = b.input("x", &[4, 6, 9, 9]);
            let cin = if group == 1 { 6 } else { 1 };
            let w = b.constant(rand_array(&[6, cin, 3, 3], 5));
            let y = b.node(
                "Conv",
                vec![x, w],
                vec![
                    ("pads", AttrValue::Ints(vec![1; 4])),
                    ("group", AttrValue::Int(group)),
                ],
                None,
            );
            b.m.graph.outputs.push(y);
            let mut m = b.m;
            let node = m.graph.node_ids()[0];
            // smooth, correlated input images
            let noise = rand_array(&[4, 6, 9, 9], 8);
            let xin = ndarray::Array::from_shape_fn(noise.raw_dim(), |i| {
                let (n, c, h, w) = (i[0] as f32, i[1] as f32, i[2] as f32, i[3] as f32);
                (0.4 * h + 0.7 * n + 0.3 * c).sin() + (0.5 * w - 0.2 * n).cos()
            }) + &noise * 0.2;
            let yf = eval(&m, &xin);
            let (dim, groups) = hessian_dims(&m.graph, node).expect("dims");
            assert_eq!(groups, group as usize);
            let mut accs = vec![HessianAccumulator::new(dim); groups];
            for (a, rows) in accs
                .iter_mut()
                .zip(layer_input_rows(&m.graph, node, &xin.view()).expect("rows"))
            {
                a.update(rows.view()).expect("update");
            }
            let hs: Vec<Array2<f64>> = accs.iter().map(|a| a.finish().expect("h")).collect();
            let w0 = crate::passes::layer::constant_f32(&m.graph, w).expect("w");
            let maxv = f.max_value() as f32;
            let scales: Vec<f32> = w0
                .outer_iter()
                .map(|c| c.iter().fold(0f32, |a, v| a.max(v.abs())) / maxv)
                .collect();
            let q = |o: usize, v: f32| scales[o] * f.quantize_value(v / scales[o]);
            // round-to-nearest reference
            let mut mr = m.clone();
            let wr = ndarray::Array::from_shape_fn(w0.raw_dim(), |i| q(i[0], w0[&i]));
            crate::passes::layer::set_constant_f32(&mut mr.graph, w, wr);
            let e_rtn = (&eval(&mr, &xin) - &yf).mapv(|v| v * v).sum();
            gptq_layer(&mut m.graph, node, &hs, q, &GptqOptions::default()).expect("gptq");
            let wq = crate::passes::layer::constant_f32(&m.graph, w).expect("wq");
            for (i, v) in wq.indexed_iter() {
                assert_eq!(q(i[0], *v), *v);
            }
            let e_gptq = (&eval(&m, &xin) - &yf).mapv(|v| v * v).sum();
            eprintln!("gptq conv group {group}: rtn {e_rtn:.4} gptq {e_gptq:.4}");
            assert!(
                e_gptq < e_rtn,
                "group {group}: gptq {e_gptq} vs rtn {e_rtn}"
            );
        }
    }

    /// Rows `[n, k]` from one fixed distribution (a fixed low-rank part plus independent noise
    /// of the same size, so every direction of the input space is used), coefficients and
    /// noise drawn from `seed`: fit and held-out rows are samples of the same inputs.
    fn same_distribution(n: usize, k: usize, seed: u64) -> Array2<f32> {
        let basis = Array2::from_shape_vec((4, k), randn(4 * k, 1000)).expect("shape");
        let coef = Array2::from_shape_vec((n, 4), randn(n * 4, seed + 2)).expect("shape");
        let noise = Array2::from_shape_vec((n, k), randn(n * k, seed + 3)).expect("shape");
        coef.dot(&basis) * 0.5 + noise
    }

    fn accumulate(x: &Array2<f32>) -> HessianAccumulator {
        let mut acc = HessianAccumulator::new(x.ncols());
        acc.update(x.view()).expect("update");
        acc
    }

    /// The held-out check rounds to nearest where GPTQ was fitted on fewer rows than input
    /// features (it overfits them) and keeps GPTQ, re-fitted on all rows, where the rows
    /// determine the Hessian.
    #[test]
    fn held_out_check_reverts_overfitted_layers() {
        use crate::ir::AttrValue;
        use crate::passes::equalize::tests::B;
        let f: Format = "int4".parse().expect("fmt");
        let (k, o) = (64, 24);
        for (fit_rows, expect_kept) in [(24, false), (1024, true)] {
            let mut b = B::new();
            let x = b.input("x", &[1, k]);
            let w0 = Array2::from_shape_vec((o, k), randn(o * k, 9)).expect("shape");
            let w = b.constant(w0.clone().into_dyn());
            let y = b.node(
                "Gemm",
                vec![x, w],
                vec![("transB", AttrValue::Int(1))],
                None,
            );
            b.m.graph.outputs.push(y);
            let mut g = b.m.graph;
            let node = g.node_ids()[0];
            let q = rtn_quantizer(&w0, f);
            let xf = same_distribution(fit_rows, k, 5);
            let xh = same_distribution(512, k, 77);
            let (af, ah) = (accumulate(&xf), accumulate(&xh));
            let hf = af.finish().expect("h");
            let mut all = HessianAccumulator::new(k);
            all.update(xf.view()).expect("update");
            all.update(xh.view()).expect("update");
            let ha = all.finish().expect("h");
            let opts = GptqOptions::default();
            let (res, chk) = gptq_layer_held_out(
                &mut g,
                node,
                std::slice::from_ref(&af),
                std::slice::from_ref(&ah),
                &q,
                &opts,
            )
            .expect("gptq");
            eprintln!(
                "{fit_rows} fit rows: held-out gptq {:.4} vs nearest {:.4}",
                chk.gptq, chk.nearest
            );
            assert_eq!(res.is_some(), expect_kept, "{fit_rows} rows: {chk:?}");
            assert_eq!(chk.keeps_gptq(), expect_kept);
            // the held-out errors are the reconstruction errors on the held-out rows
            let mut g_fit = g.clone();
            set_constant_f32(&mut g_fit, w, w0.clone().into_dyn());
            gptq_layer(&mut g_fit, node, std::slice::from_ref(&hf), &q, &opts).expect("fit");
            let wfit = constant_f32(&g_fit, w)
                .expect("w")
                .into_dimensionality()
                .expect("2d");
            let rtn = Array2::from_shape_fn((o, k), |(r, c)| q(r, w0[[r, c]]));
            let scale = 2.0 / xh.nrows() as f64;
            let (eg, en) = (
                scale * recon_err(&xh, &w0, &wfit),
                scale * recon_err(&xh, &w0, &rtn),
            );
            assert!((chk.gptq - eg).abs() <= 1e-3 * eg, "{} vs {eg}", chk.gptq);
            assert!(
                (chk.nearest - en).abs() <= 1e-3 * en,
                "{} vs {en}",
                chk.nearest
            );
            let after = constant_f32(&g, w).expect("w");
            if expect_kept {
                // re-fitted on all rows: the same weight as GPTQ with the merged Hessian
                let mut g_all = g.clone();
                set_constant_f32(&mut g_all, w, w0.clone().into_dyn());
                gptq_layer(&mut g_all, node, std::slice::from_ref(&ha), &q, &opts).expect("all");
                assert_eq!(after, constant_f32(&g_all, w).expect("w"));
            } else {
                // the float weight stays, to be rounded to nearest by the layer's quantizer
                assert_eq!(after, w0.into_dyn());
            }
        }
    }

    /// Timing at ViT-B size (768 × 768, 2048 rows): `cargo test --lib gptq_timing_vit_size --
    /// --ignored --nocapture`. Ignored by default because it takes seconds on 2 cores.
    #[test]
    #[ignore]
    fn gptq_timing_vit_size() {
        let f: Format = "int4".parse().expect("format");
        let (n, k, o) = (2048, 768, 768);
        let x = inputs(n, k, 1);
        let w = Array2::from_shape_vec((o, k), randn(o * k, 2)).expect("shape") * 0.05;
        let q = rtn_quantizer(&w, f);
        let t0 = std::time::Instant::now();
        let mut acc = HessianAccumulator::new(k);
        for c in x.axis_chunks_iter(ndarray::Axis(0), 256) {
            acc.update(c).expect("update");
        }
        let h = acc.finish().expect("h");
        let t1 = std::time::Instant::now();
        let r = gptq_quantize(
            w.view(),
            &h,
            |_, col| col.iter().enumerate().map(|(o, v)| q(o, *v)).collect(),
            &GptqOptions::default(),
        )
        .expect("gptq");
        let t2 = std::time::Instant::now();
        let rtn = Array2::from_shape_fn((o, k), |(r, c)| q(r, w[[r, c]]));
        let (e_rtn, e_gptq) = (recon_err(&x, &w, &rtn), recon_err(&x, &w, &r.weight));
        eprintln!(
            "768x768, 2048 rows: hessian {:.2?}, gptq {:.2?}; rtn {e_rtn:.3} gptq {e_gptq:.3}",
            t1 - t0,
            t2 - t1
        );
        assert!(e_gptq < e_rtn);
    }

    #[test]
    fn inverse_cholesky_is_exact() {
        let x = inputs(64, 10, 3);
        let mut acc = HessianAccumulator::new(10);
        acc.update(x.view()).expect("update");
        let h = acc.finish().expect("h");
        let u = inverse_cholesky_upper(&h).expect("pd");
        let um = Array2::from_shape_vec((10, 10), u).expect("shape");
        let prod = h.dot(&um.t().dot(&um));
        for i in 0..10 {
            for j in 0..10 {
                let e = if i == j { 1.0 } else { 0.0 };
                assert!((prod[[i, j]] - e).abs() < 1e-8, "{i},{j}: {}", prod[[i, j]]);
            }
            for j in 0..i {
                assert_eq!(um[[i, j]], 0.0);
            }
        }
    }
}
