//! Convolution kernels: ONNX Conv (N-d, groups, strides, dilations, explicit pads, bias) and
//! ConvTranspose.
//!
//! Conv lowers each (image, group) to `W_g[M/g, C/g·∏k] × col[C/g·∏k, ∏out]` with an im2col
//! buffer; a 1×1 kernel with unit strides and no padding uses the input directly. Convolutions
//! where every group sees one input channel (depthwise, any channel multiplier) and have two
//! spatial dimensions (1-D is promoted to 2-D) use a direct kernel instead. Images of a batch run
//! in parallel; each output element is produced by one task with a fixed summation order.

use super::matmul::{sgemm, MatRef};
use super::{param_err, shape_err, KernelError};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

/// Normalised attributes of ONNX Conv. All vectors have one entry per spatial dimension; the
/// caller resolves `auto_pad` (SAME_UPPER/SAME_LOWER/VALID) into explicit pads and fills defaults
/// (strides 1, dilations 1, pads 0, groups 1). ONNX `pads` = `[pads_begin..., pads_end...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Stride per spatial dimension.
    pub strides: Vec<usize>,
    /// Dilation per spatial dimension.
    pub dilations: Vec<usize>,
    /// Padding at the start of each spatial dimension.
    pub pads_begin: Vec<usize>,
    /// Padding at the end of each spatial dimension.
    pub pads_end: Vec<usize>,
    /// Number of groups; C and M must both be divisible by it.
    pub groups: usize,
}

/// The parameter struct is rank-generic; this alias is the preferred name.
pub type ConvParams = Conv2dParams;

impl Conv2dParams {
    /// Defaults for `rank` spatial dimensions: unit strides/dilations, no padding, one group.
    pub fn new(rank: usize) -> Self {
        Conv2dParams {
            strides: vec![1; rank],
            dilations: vec![1; rank],
            pads_begin: vec![0; rank],
            pads_end: vec![0; rank],
            groups: 1,
        }
    }
}

/// Normalised attributes of ONNX ConvTranspose, one entry per spatial dimension.
///
/// The caller resolves `output_shape` into pads: with total padding
/// `t = stride·(in−1) + output_padding + (kernel−1)·dilation + 1 − output_shape`, SAME_UPPER
/// uses `pads_begin = t/2, pads_end = t − t/2` (SAME_LOWER/explicit `output_shape` without
/// auto_pad: `pads_begin = t − t/2, pads_end = t/2`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvTransposeParams {
    /// Stride per spatial dimension.
    pub strides: Vec<usize>,
    /// Dilation per spatial dimension.
    pub dilations: Vec<usize>,
    /// Padding removed at the start of each spatial dimension.
    pub pads_begin: Vec<usize>,
    /// Padding removed at the end of each spatial dimension.
    pub pads_end: Vec<usize>,
    /// Extra cells added at the end of each spatial dimension.
    pub output_padding: Vec<usize>,
    /// Number of groups.
    pub groups: usize,
}

impl ConvTransposeParams {
    /// Defaults for `rank` spatial dimensions.
    pub fn new(rank: usize) -> Self {
        ConvTransposeParams {
            strides: vec![1; rank],
            dilations: vec![1; rank],
            pads_begin: vec![0; rank],
            pads_end: vec![0; rank],
            output_padding: vec![0; rank],
            groups: 1,
        }
    }
}

/// Output length of one spatial dimension of Conv:
/// `floor((in + pb + pe − ((k − 1)·d + 1)) / s) + 1`; `None` if the padded input is shorter than
/// the dilated kernel or the stride is zero.
pub fn conv_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
) -> Option<usize> {
    if stride == 0 || dilation == 0 || kernel == 0 {
        return None;
    }
    let eff = (kernel - 1) * dilation + 1;
    let padded = input + pad_begin + pad_end;
    if padded < eff {
        return None;
    }
    Some((padded - eff) / stride + 1)
}

/// Output length of one spatial dimension of ConvTranspose:
/// `s·(in − 1) + output_padding + (k − 1)·d + 1 − pb − pe`; `None` if not positive.
pub fn conv_transpose_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
    output_padding: usize,
) -> Option<usize> {
    if input == 0 || kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let full = stride * (input - 1) + output_padding + (kernel - 1) * dilation + 1;
    let out = full.checked_sub(pad_begin + pad_end)?;
    (out > 0).then_some(out)
}

/// Geometry shared by the inner loops, with spatial rank `d`.
struct Geom {
    in_sp: Vec<usize>,
    out_sp: Vec<usize>,
    k_sp: Vec<usize>,
    strides: Vec<usize>,
    dil: Vec<usize>,
    pb: Vec<usize>,
}

impl Geom {
    fn in_prod(&self) -> usize {
        self.in_sp.iter().product()
    }
    fn out_prod(&self) -> usize {
        self.out_sp.iter().product()
    }
    fn k_prod(&self) -> usize {
        self.k_sp.iter().product()
    }
}

fn check_params(
    op: &'static str,
    rank: usize,
    strides: &[usize],
    dil: &[usize],
    pb: &[usize],
    pe: &[usize],
    groups: usize,
) -> Result<(), KernelError> {
    for (name, v) in [
        ("strides", strides),
        ("dilations", dil),
        ("pads", pb),
        ("pads", pe),
    ] {
        if v.len() != rank {
            return Err(param_err(
                op,
                name,
                format!("{} entries for {rank} spatial dimensions", v.len()),
            ));
        }
    }
    if strides.contains(&0) {
        return Err(param_err(op, "strides", format!("{strides:?} contains 0")));
    }
    if dil.contains(&0) {
        return Err(param_err(op, "dilations", format!("{dil:?} contains 0")));
    }
    if groups == 0 {
        return Err(param_err(op, "group", "must be >= 1"));
    }
    Ok(())
}

/// ONNX Conv: `Y[n, m, o…] = B[m] + Σ_{c ∈ group(m), k…} X[n, c, o·s − pb + k·d] · W[m, c, k…]`
/// with zero padding. Shapes: `X [N, C, D1…Dr]`, `W [M, C/groups, k1…kr]`, optional `B [M]`,
/// result `[N, M, O1…Or]` with `Oi` from [`conv_output_len`]. Any spatial rank r ≥ 1.
pub fn conv(
    x: &ArrayViewD<'_, f32>,
    w: &ArrayViewD<'_, f32>,
    bias: Option<&ArrayViewD<'_, f32>>,
    p: &Conv2dParams,
) -> Result<ArrayD<f32>, KernelError> {
    conv_clamped(x, w, bias, p, Clamp::NONE)
}

/// [`conv`] followed by the elementwise clamp `act` (a fused Relu or Clip), applied to each
/// output block while it is still in cache. Bit-identical to running [`conv`] and then the
/// clamp.
pub fn conv_clamped(
    x: &ArrayViewD<'_, f32>,
    w: &ArrayViewD<'_, f32>,
    bias: Option<&ArrayViewD<'_, f32>>,
    p: &Conv2dParams,
    act: Clamp,
) -> Result<ArrayD<f32>, KernelError> {
    const OP: &str = "Conv";
    if x.ndim() < 3 || w.ndim() != x.ndim() {
        return Err(shape_err(
            OP,
            format!(
                "X {:?} and W {:?} must both have rank >= 3 and equal rank",
                x.shape(),
                w.shape()
            ),
        ));
    }
    let r = x.ndim() - 2;
    check_params(
        OP,
        r,
        &p.strides,
        &p.dilations,
        &p.pads_begin,
        &p.pads_end,
        p.groups,
    )?;
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let (m, cg) = (w.shape()[0], w.shape()[1]);
    let g = p.groups;
    if c % g != 0 || m % g != 0 || c / g != cg {
        return Err(shape_err(
            OP,
            format!(
                "X {:?}, W {:?} inconsistent with group={g} (need C/group == W.shape[1] and M % group == 0)",
                x.shape(),
                w.shape()
            ),
        ));
    }
    let bias_data = match bias {
        Some(b) => {
            if b.shape() != [m] {
                return Err(shape_err(OP, format!("bias {:?} must be [{m}]", b.shape())));
            }
            Some(b.iter().copied().collect::<Vec<f32>>())
        }
        None => None,
    };
    let mut out_sp = Vec::with_capacity(r);
    for i in 0..r {
        let o = conv_output_len(
            x.shape()[2 + i],
            w.shape()[2 + i],
            p.strides[i],
            p.dilations[i],
            p.pads_begin[i],
            p.pads_end[i],
        )
        .ok_or_else(|| {
            shape_err(
                OP,
                format!(
                    "spatial dim {i}: input {} with pads {}+{} shorter than dilated kernel {} (dilation {})",
                    x.shape()[2 + i],
                    p.pads_begin[i],
                    p.pads_end[i],
                    w.shape()[2 + i],
                    p.dilations[i]
                ),
            )
        })?;
        out_sp.push(o);
    }
    let mut geom = Geom {
        in_sp: x.shape()[2..].to_vec(),
        out_sp: out_sp.clone(),
        k_sp: w.shape()[2..].to_vec(),
        strides: p.strides.clone(),
        dil: p.dilations.clone(),
        pb: p.pads_begin.clone(),
    };
    if r == 1 {
        // Promote 1-D to 2-D with a unit leading spatial dimension.
        geom.in_sp.insert(0, 1);
        geom.out_sp.insert(0, 1);
        geom.k_sp.insert(0, 1);
        geom.strides.insert(0, 1);
        geom.dil.insert(0, 1);
        geom.pb.insert(0, 0);
    }
    let xs = x.as_standard_layout();
    let ws = w.as_standard_layout();
    let xd = xs
        .as_slice()
        .ok_or_else(|| shape_err(OP, "X not contiguous"))?;
    let wd = ws
        .as_slice()
        .ok_or_else(|| shape_err(OP, "W not contiguous"))?;
    let out_prod = geom.out_prod();
    // Every element is written below (depthwise rows, or GEMMs that overwrite).
    let mut out = super::buffer::take(n * m * out_prod);
    if out.is_empty() {
        return to_array(OP, n, m, &out_sp, out);
    }
    let in_img = c * geom.in_prod();
    if cg == 1 && geom.in_sp.len() == 2 {
        depthwise2d(xd, wd, bias_data.as_deref(), &geom, c, m, act, &mut out);
    } else {
        out.par_chunks_mut(m * out_prod)
            .enumerate()
            .try_for_each(|(i, o)| {
                conv_image(
                    &xd[i * in_img..(i + 1) * in_img],
                    wd,
                    bias_data.as_deref(),
                    &geom,
                    c,
                    m,
                    g,
                    act,
                    o,
                )
            })?;
    }
    to_array(OP, n, m, &out_sp, out)
}

fn to_array(
    op: &'static str,
    n: usize,
    m: usize,
    sp: &[usize],
    data: Vec<f32>,
) -> Result<ArrayD<f32>, KernelError> {
    let mut shape = vec![n, m];
    shape.extend_from_slice(sp);
    ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| shape_err(op, e.to_string()))
}

/// One image of a grouped convolution via im2col + GEMM.
#[allow(clippy::too_many_arguments)]
fn conv_image(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    geom: &Geom,
    c: usize,
    m: usize,
    g: usize,
    act: Clamp,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let (cg, mg) = (c / g, m / g);
    let in_prod = geom.in_prod();
    let out_prod = geom.out_prod();
    let kk = cg * geom.k_prod();
    let pointwise = geom.k_sp.iter().all(|&k| k == 1)
        && geom.strides.iter().all(|&s| s == 1)
        && geom.pb.iter().all(|&p| p == 0)
        && geom.in_sp == geom.out_sp;
    // im2col writes every element of `col`.
    let mut col = if pointwise {
        Vec::new()
    } else {
        super::buffer::take(kk * out_prod)
    };
    for gi in 0..g {
        let xg = &x[gi * cg * in_prod..(gi + 1) * cg * in_prod];
        let b: &[f32] = if pointwise {
            xg
        } else {
            im2col(xg, geom, &mut col);
            &col
        };
        let og = &mut out[gi * mg * out_prod..(gi + 1) * mg * out_prod];
        gemm_bias_act(
            &w[gi * mg * kk..(gi + 1) * mg * kk],
            b,
            bias.map(|b| &b[gi * mg..(gi + 1) * mg]),
            (mg, kk, out_prod),
            act,
            og,
        )?;
    }
    super::buffer::recycle(col);
    Ok(())
}

/// Output columns per block of [`gemm_bias_act`]: all of them while the `m × n` output is at
/// most 128 Ki elements (512 KiB), else blocks of about 64 Ki elements (a multiple of 16
/// columns, at least 64), so the bias and clamp pass reads a block still in cache.
fn gemm_block_cols(m: usize, n: usize) -> usize {
    if m.saturating_mul(n) <= 1 << 17 {
        n
    } else {
        ((1usize << 16) / m.max(1) / 16 * 16).max(64)
    }
}

/// `out[m × n] = act(w[m × k] · b[k × n] + bias)` (row-major, `bias` one value per row),
/// computed in column blocks of [`gemm_block_cols`]: one [`sgemm`] per block, then the bias
/// and the clamp on that block. The block split depends only on `(m, n)`, so results do not
/// depend on the thread count. The convolution kernel and the sweep's compiled convolution
/// share this function, so they agree bit for bit.
pub(crate) fn gemm_bias_act(
    w: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    (m, k, n): (usize, usize, usize),
    act: Clamp,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let nb = gemm_block_cols(m, n);
    for c0 in (0..n).step_by(nb.max(1)) {
        let c1 = (c0 + nb).min(n);
        sgemm(
            m,
            k,
            c1 - c0,
            1.0,
            MatRef::row_major(w, k),
            MatRef {
                data: &b[c0.min(b.len())..],
                rs: n,
                cs: 1,
            },
            &mut out[c0..],
            n,
            false,
        )?;
        for (i, row) in out.chunks_mut(n).enumerate().take(m) {
            act.bias_apply(&mut row[c0..c1], bias.map(|b| b[i]));
        }
    }
    Ok(())
}

/// Range `[lo, hi)` of output indices `o < len` with `0 <= o·s + off < input`.
fn valid_range(len: usize, s: usize, off: isize, input: usize) -> (usize, usize) {
    let s_i = s as isize;
    let lo = if off >= 0 {
        0
    } else {
        ((-off + s_i - 1) / s_i) as usize
    };
    let lim = input as isize - off;
    let hi = if lim <= 0 {
        0
    } else {
        ((lim + s_i - 1) / s_i) as usize
    };
    (lo.min(len), hi.min(len).max(lo.min(len)))
}

/// Fills `col[(c, k…), o…]` with `x[c, o·s − pb + k·d]` (zero outside the input).
fn im2col(x: &[f32], geom: &Geom, col: &mut [f32]) {
    let d = geom.in_sp.len();
    let kp = geom.k_prod();
    let in_prod = geom.in_prod();
    let out_prod = geom.out_prod();
    let ol = geom.out_sp[d - 1];
    let il = geom.in_sp[d - 1];
    let sl = geom.strides[d - 1];
    let outer: usize = out_prod / ol.max(1);
    // Input strides per spatial dim.
    let mut in_str = vec![1usize; d];
    for i in (0..d.saturating_sub(1)).rev() {
        in_str[i] = in_str[i + 1] * geom.in_sp[i + 1];
    }
    col.par_chunks_mut(out_prod)
        .with_min_len(8)
        .enumerate()
        .for_each(|(row, dst)| {
            let ci = row / kp;
            let mut rem = row % kp;
            let mut kidx = vec![0usize; d];
            for i in (0..d).rev() {
                kidx[i] = rem % geom.k_sp[i];
                rem /= geom.k_sp[i];
            }
            let off_last = (kidx[d - 1] * geom.dil[d - 1]) as isize - geom.pb[d - 1] as isize;
            let (lo, hi) = valid_range(ol, sl, off_last, il);
            let xc = &x[ci * in_prod..(ci + 1) * in_prod];
            let mut oidx = vec![0usize; d.saturating_sub(1)];
            for op in 0..outer {
                let seg = &mut dst[op * ol..(op + 1) * ol];
                let mut base = 0isize;
                let mut inside = true;
                for i in 0..d - 1 {
                    let ic = (oidx[i] * geom.strides[i] + kidx[i] * geom.dil[i]) as isize
                        - geom.pb[i] as isize;
                    if ic < 0 || ic >= geom.in_sp[i] as isize {
                        inside = false;
                        break;
                    }
                    base += ic * in_str[i] as isize;
                }
                if !inside || lo >= hi {
                    seg.fill(0.0);
                } else {
                    seg[..lo].fill(0.0);
                    seg[hi..].fill(0.0);
                    let start = (base + lo as isize * sl as isize + off_last) as usize;
                    copy_strided(&mut seg[lo..hi], &xc[start..], sl);
                }
                for i in (0..d - 1).rev() {
                    oidx[i] += 1;
                    if oidx[i] < geom.out_sp[i] {
                        break;
                    }
                    oidx[i] = 0;
                }
            }
        });
}

/// An elementwise clamp applied to a kernel's output as it is written (the fused form of a Relu
/// or Clip that follows the op): `y = x`, then `y = y.max(lo)` if `lo` is set, then
/// `y = y.min(hi)` if `hi` is set — exactly what the unfused ONNX Relu (`lo = 0`) and Clip
/// compute, so fusing never changes a result.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Clamp {
    /// Lower bound (Relu: 0).
    pub lo: Option<f32>,
    /// Upper bound.
    pub hi: Option<f32>,
}

impl Clamp {
    /// No clamping.
    pub const NONE: Clamp = Clamp { lo: None, hi: None };

    /// Whether the clamp changes nothing.
    pub fn is_none(&self) -> bool {
        self.lo.is_none() && self.hi.is_none()
    }

    /// Applies the clamp to every element of `v`.
    pub fn apply(&self, v: &mut [f32]) {
        self.bias_apply(v, None);
    }

    /// `v[i] = clamp(v[i] + b)` (just the clamp when `b` is `None`) in one pass: exactly the
    /// bias addition followed by [`Clamp::apply`]. The same Rust code is compiled for AVX2 when
    /// the CPU has it (8 lanes instead of SSE's 4; the operations and their NaN and signed-zero
    /// behaviour are those of `f32::max`/`f32::min` either way).
    pub fn bias_apply(&self, v: &mut [f32], b: Option<f32>) {
        if self.is_none() && b.is_none() {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if have_avx2_fma() {
            // SAFETY: AVX2 was detected at run time.
            unsafe { self.bias_apply_avx2(v, b) };
            return;
        }
        self.bias_apply_generic(v, b);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn bias_apply_avx2(&self, v: &mut [f32], b: Option<f32>) {
        self.bias_apply_generic(v, b);
    }

    #[inline(always)]
    fn bias_apply_generic(&self, v: &mut [f32], b: Option<f32>) {
        match (b, self.lo, self.hi) {
            (None, None, None) => {}
            (None, Some(lo), None) => v.iter_mut().for_each(|x| *x = x.max(lo)),
            (None, None, Some(hi)) => v.iter_mut().for_each(|x| *x = x.min(hi)),
            (None, Some(lo), Some(hi)) => v.iter_mut().for_each(|x| *x = x.max(lo).min(hi)),
            (Some(b), None, None) => v.iter_mut().for_each(|x| *x += b),
            (Some(b), Some(lo), None) => v.iter_mut().for_each(|x| *x = (*x + b).max(lo)),
            (Some(b), None, Some(hi)) => v.iter_mut().for_each(|x| *x = (*x + b).min(hi)),
            (Some(b), Some(lo), Some(hi)) => {
                v.iter_mut().for_each(|x| *x = (*x + b).max(lo).min(hi))
            }
        }
    }
}

/// Whether the AVX2+FMA depthwise row kernel can run (fixed per machine, so results stay
/// deterministic).
fn have_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One output plane of a depthwise convolution:
/// `out[y·ow + x] = bias + Σ_t w[t] · buf[taps[t] + y·row + x]` for `y < oh`, `x < ow`, taps
/// accumulated in order `t = 0, 1, …` starting from the bias, each tap one fused multiply-add
/// when `fma` (the AVX2+FMA tiles and their masked last columns), else a multiply then an add.
/// The AVX2 path computes tiles of up to 8 rows × 8 columns with one accumulator per row, so
/// eight independent multiply-add chains hide the FMA latency even on 7-wide planes.
#[allow(clippy::too_many_arguments)]
fn dw_plane(
    out: &mut [f32],
    oh: usize,
    ow: usize,
    buf: &[f32],
    row: usize,
    taps: &[usize],
    w: &[f32],
    bias: f32,
    fma: bool,
) {
    assert!(out.len() == oh * ow && taps.len() == w.len());
    if oh == 0 || ow == 0 {
        return;
    }
    assert!(taps.iter().all(|&t| t + (oh - 1) * row + ow <= buf.len()));
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: AVX2 and FMA were detected at run time (`have_avx2_fma`); every tap reads
        // `buf[taps[t] + y·row + x]` with `y < oh`, `x < ow`, which the assertion above keeps in
        // bounds, and writes stay inside `out[..oh·ow]`.
        unsafe { dw_plane_avx2_fma(out, oh, ow, buf, row, taps, w, bias) };
        return;
    }
    let _ = fma;
    for (y, orow) in out.chunks_mut(ow).enumerate() {
        orow.fill(bias);
        for (&t, &wt) in taps.iter().zip(w) {
            let src = &buf[t + y * row..t + y * row + ow];
            for (o, x) in orow.iter_mut().zip(src) {
                *o += wt * x;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn dw_plane_avx2_fma(
    out: &mut [f32],
    oh: usize,
    ow: usize,
    buf: &[f32],
    row: usize,
    taps: &[usize],
    w: &[f32],
    bias: f32,
) {
    use std::arch::x86_64::*;
    // Lanes `0..n` active for a column block of `n < 8` outputs.
    const LANES: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
    let (bp, op) = (buf.as_ptr(), out.as_mut_ptr());
    let mut x = 0;
    // SAFETY (whole body): see `dw_plane`; every tile covers rows `y..y + R <= oh` and columns
    // `x..x + n` with `n = min(8, ow − x)`, masked when `n < 8`.
    unsafe {
        while x < ow {
            let n = (ow - x).min(8);
            let mask = _mm256_loadu_si256(LANES.as_ptr().add(8 - n).cast::<__m256i>());
            let mut y = 0;
            macro_rules! tiles {
                ($masked:literal) => {{
                    while y + 8 <= oh {
                        dw_tile::<8, $masked>(op, ow, bp, row, taps, w, bias, y, x, mask);
                        y += 8;
                    }
                    if y + 4 <= oh {
                        dw_tile::<4, $masked>(op, ow, bp, row, taps, w, bias, y, x, mask);
                        y += 4;
                    }
                    if y + 2 <= oh {
                        dw_tile::<2, $masked>(op, ow, bp, row, taps, w, bias, y, x, mask);
                        y += 2;
                    }
                    if y < oh {
                        dw_tile::<1, $masked>(op, ow, bp, row, taps, w, bias, y, x, mask);
                    }
                }};
            }
            if n == 8 {
                tiles!(false);
            } else {
                tiles!(true);
            }
            x += 8;
        }
    }
}

/// `R` output rows × one 8-wide column block of [`dw_plane`] (lanes outside `mask` neither
/// read nor written when `MASKED`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn dw_tile<const R: usize, const MASKED: bool>(
    op: *mut f32,
    ow: usize,
    bp: *const f32,
    row: usize,
    taps: &[usize],
    w: &[f32],
    bias: f32,
    y: usize,
    x: usize,
    mask: std::arch::x86_64::__m256i,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller (`dw_plane_avx2_fma`) keeps rows `y..y + R` and the active lanes of
    // columns `x..x + 8` inside both buffers.
    unsafe {
        let mut acc = [_mm256_set1_ps(bias); R];
        for (&t, &wt) in taps.iter().zip(w) {
            let vw = _mm256_set1_ps(wt);
            let p = bp.add(t + y * row + x);
            for (r, a) in acc.iter_mut().enumerate() {
                let v = if MASKED {
                    _mm256_maskload_ps(p.add(r * row), mask)
                } else {
                    _mm256_loadu_ps(p.add(r * row))
                };
                *a = _mm256_fmadd_ps(vw, v, *a);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let o = op.add((y + r) * ow + x);
            if MASKED {
                _mm256_maskstore_ps(o, mask, *a);
            } else {
                _mm256_storeu_ps(o, *a);
            }
        }
    }
}

/// `dst[i] = src[stride·i]` for every `i < dst.len()` (`src` long enough): the row copies of
/// im2col and of the depthwise phase planes. Stride 1 is a plain copy and stride 2 goes
/// through [`gather_even`].
fn copy_strided(dst: &mut [f32], src: &[f32], stride: usize) {
    let n = dst.len();
    assert!(n == 0 || src.len() > stride * (n - 1));
    match stride {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => gather_even(dst, src),
        _ => {
            for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
                *d = *s;
            }
        }
    }
}

/// `dst[i] = src[2·i]` for every `i < dst.len()`; `src.len() ≥ 2·dst.len() − 1`. Pure data
/// movement: the AVX2 path deinterleaves 16 loaded values into their 8 even ones.
fn gather_even(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    assert!(n == 0 || src.len() > 2 * (n - 1));
    #[allow(unused_mut)]
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if have_avx2_fma() {
        // SAFETY: AVX2 was detected at run time; see `gather_even_avx2` for the bounds.
        i = unsafe { gather_even_avx2(dst, src) };
    }
    for (d, s) in dst[i..].iter_mut().zip(src[2 * i..].iter().step_by(2)) {
        *d = *s;
    }
}

/// The 8-wide blocks of [`gather_even`] whose 16 source values lie inside `src`; returns the
/// number of outputs written.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gather_even_avx2(dst: &mut [f32], src: &[f32]) -> usize {
    use std::arch::x86_64::*;
    let mut i = 0;
    while i + 8 <= dst.len() && 2 * i + 16 <= src.len() {
        // SAFETY: reads `src[2i..2i + 16]` and writes `dst[i..i + 8]`, both checked above.
        unsafe {
            let a = _mm256_loadu_ps(src.as_ptr().add(2 * i));
            let b = _mm256_loadu_ps(src.as_ptr().add(2 * i + 8));
            // [a0 a2 b0 b2 | a4 a6 b4 b6], then 64-bit lanes (0, 2, 1, 3).
            let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let e = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)));
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), e);
        }
        i += 8;
    }
    i
}

/// Direct 2-D convolution where each output channel reads exactly one input channel
/// (`C/groups == 1`): output channel `m` reads input channel `m / (M/groups)`.
///
/// Each plane is copied once into a zero-padded buffer split into `stride_h × stride_w` phase
/// sub-planes (`S[qr][qc][r][c] = padded[qr + stride_h·r][qc + stride_w·c]`). Every kernel tap
/// then reads one sub-plane at a fixed offset, so an output row is a sum of contiguous sub-plane
/// rows: [`dw_row`] keeps a block of outputs in registers across all taps (AVX2+FMA when the
/// CPU has them) and writes it once. Taps are accumulated in kernel order starting from the
/// bias; `act` is applied to each finished row.
#[allow(clippy::too_many_arguments)]
fn depthwise2d(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    geom: &Geom,
    c: usize,
    m: usize,
    act: Clamp,
    out: &mut [f32],
) {
    let (ih, iw) = (geom.in_sp[0], geom.in_sp[1]);
    let (oh, ow) = (geom.out_sp[0], geom.out_sp[1]);
    let (kh, kw) = (geom.k_sp[0], geom.k_sp[1]);
    let (sh, sw) = (geom.strides[0], geom.strides[1]);
    let (dh, dw) = (geom.dil[0], geom.dil[1]);
    let (pt, pl) = (geom.pb[0], geom.pb[1]);
    let mult = m / c;
    let plane_in = ih * iw;
    // Padded extent actually read by the windows, split into phases.
    let ph_rows = (oh - 1) * sh + (kh - 1) * dh + 1;
    let pw_cols = (ow - 1) * sw + (kw - 1) * dw + 1;
    let sub_rows = ph_rows.div_ceil(sh);
    let sub_cols = pw_cols.div_ceil(sw);
    let sub_len = sub_rows * sub_cols;
    // Start of each tap's window (output row 0, column 0) in the phase buffer, kernel order.
    let mut taps = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        let (qr, tr0) = ((i * dh) % sh, (i * dh) / sh);
        for j in 0..kw {
            let (qc, tc0) = ((j * dw) % sw, (j * dw) / sw);
            taps.push((qr * sw + qc) * sub_len + tr0 * sub_cols + tc0);
        }
    }
    // Copy plan of one plane into the phase buffer: for each input row that the windows read,
    // (start of the row in the plane, start of its phase row in `buf`); for each column phase,
    // (first input column, number of columns, offset in the phase row).
    let mut rows = Vec::new();
    for r in 0..ph_rows {
        if let Some(iy) = r.checked_sub(pt).filter(|&iy| iy < ih) {
            rows.push((iy * iw, (r % sh) * sw * sub_len + (r / sh) * sub_cols));
        }
    }
    let mut cols = Vec::new();
    // Valid padded columns: those mapping into [0, iw).
    let (c_lo, c_hi) = (pl.min(pw_cols), (pl + iw).min(pw_cols));
    for qc in 0..sw {
        // First valid padded column in phase qc, and its index within the phase.
        let col0 = c_lo + (qc + sw - c_lo % sw) % sw;
        if col0 < c_hi {
            cols.push((
                col0 - pl,
                (c_hi - col0).div_ceil(sw),
                qc * sub_len + col0 / sw,
            ));
        }
    }
    let fma = have_avx2_fma();
    out.par_chunks_mut(oh * ow).enumerate().for_each_init(
        || vec![0f32; sh * sw * sub_len],
        |buf, (plane, o)| {
            let (ni, mi) = (plane / m, plane % m);
            let ci = mi / mult;
            let xp = &x[(ni * c + ci) * plane_in..(ni * c + ci + 1) * plane_in];
            // Every plane writes the same cells of `buf`, so the padding stays zero from the
            // buffer's creation.
            for &(so, db) in &rows {
                let src = &xp[so..so + iw];
                for &(sc, n, dof) in &cols {
                    copy_strided(&mut buf[db + dof..db + dof + n], &src[sc..], sw);
                }
            }
            let wk = &w[mi * kh * kw..(mi + 1) * kh * kw];
            let b = bias.map_or(0.0, |b| b[mi]);
            dw_plane(o, oh, ow, buf, sub_cols, &taps, wk, b, fma);
            act.apply(o);
        },
    );
}

/// ONNX ConvTranspose (the gradient of Conv with respect to its input):
/// `Y[n, m, i·s − pb + k·d] += X[n, c, i…] · W[c, m − g·M/g, k…]` for each group `g`, plus `B[m]`.
/// Shapes: `X [N, C, D1…Dr]`, `W [C, M/groups, k1…kr]`, optional `B [M]`, result
/// `[N, M, O1…Or]` with `Oi` from [`conv_transpose_output_len`]. `output_shape` must be resolved
/// into pads by the caller (see [`ConvTransposeParams`]).
pub fn conv_transpose(
    x: &ArrayViewD<'_, f32>,
    w: &ArrayViewD<'_, f32>,
    bias: Option<&ArrayViewD<'_, f32>>,
    p: &ConvTransposeParams,
) -> Result<ArrayD<f32>, KernelError> {
    const OP: &str = "ConvTranspose";
    if x.ndim() < 3 || w.ndim() != x.ndim() {
        return Err(shape_err(
            OP,
            format!(
                "X {:?} and W {:?} must both have rank >= 3 and equal rank",
                x.shape(),
                w.shape()
            ),
        ));
    }
    let r = x.ndim() - 2;
    check_params(
        OP,
        r,
        &p.strides,
        &p.dilations,
        &p.pads_begin,
        &p.pads_end,
        p.groups,
    )?;
    if p.output_padding.len() != r {
        return Err(param_err(
            OP,
            "output_padding",
            format!(
                "{} entries for {r} spatial dimensions",
                p.output_padding.len()
            ),
        ));
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let g = p.groups;
    let mg = w.shape()[1];
    let m = mg * g;
    if w.shape()[0] != c || c % g != 0 {
        return Err(shape_err(
            OP,
            format!(
                "X {:?}, W {:?} inconsistent with group={g} (need W.shape[0] == C, C % group == 0)",
                x.shape(),
                w.shape()
            ),
        ));
    }
    let bias_data = match bias {
        Some(b) => {
            if b.shape() != [m] {
                return Err(shape_err(OP, format!("bias {:?} must be [{m}]", b.shape())));
            }
            Some(b.iter().copied().collect::<Vec<f32>>())
        }
        None => None,
    };
    let mut out_sp = Vec::with_capacity(r);
    for i in 0..r {
        out_sp.push(
            conv_transpose_output_len(
                x.shape()[2 + i],
                w.shape()[2 + i],
                p.strides[i],
                p.dilations[i],
                p.pads_begin[i],
                p.pads_end[i],
                p.output_padding[i],
            )
            .ok_or_else(|| {
                shape_err(
                    OP,
                    format!("spatial dim {i}: output length is not positive"),
                )
            })?,
        );
    }
    let geom = Geom {
        in_sp: x.shape()[2..].to_vec(),
        out_sp: out_sp.clone(),
        k_sp: w.shape()[2..].to_vec(),
        strides: p.strides.clone(),
        dil: p.dilations.clone(),
        pb: p.pads_begin.clone(),
    };
    let xs = x.as_standard_layout();
    let ws = w.as_standard_layout();
    let xd = xs
        .as_slice()
        .ok_or_else(|| shape_err(OP, "X not contiguous"))?;
    let wd = ws
        .as_slice()
        .ok_or_else(|| shape_err(OP, "W not contiguous"))?;
    let out_prod = geom.out_prod();
    let in_prod = geom.in_prod();
    let mut out = vec![0f32; n * m * out_prod];
    if out.is_empty() || in_prod == 0 {
        return to_array(OP, n, m, &out_sp, out);
    }
    let cg = c / g;
    let rows = mg * geom.k_prod();
    out.par_chunks_mut(m * out_prod).enumerate().try_for_each(
        |(ni, o)| -> Result<(), KernelError> {
            // The GEMM below overwrites every element of `col`.
            let mut col = super::buffer::take(rows * in_prod);
            for gi in 0..g {
                let wg = &wd[gi * cg * rows..(gi + 1) * cg * rows];
                let xg = &xd[(ni * c + gi * cg) * in_prod..(ni * c + (gi + 1) * cg) * in_prod];
                // col[rows, in] = W_gᵀ · X_g with W_g stored as [cg, rows].
                sgemm(
                    rows,
                    cg,
                    in_prod,
                    1.0,
                    MatRef {
                        data: wg,
                        rs: 1,
                        cs: rows,
                    },
                    MatRef::row_major(xg, in_prod),
                    &mut col,
                    in_prod,
                    false,
                )?;
                col2im(
                    &col,
                    &geom,
                    &mut o[gi * mg * out_prod..(gi + 1) * mg * out_prod],
                );
            }
            super::buffer::recycle(col);
            if let Some(b) = &bias_data {
                for (row, &bv) in o.chunks_mut(out_prod).zip(b.iter()) {
                    row.iter_mut().for_each(|v| *v += bv);
                }
            }
            Ok(())
        },
    )?;
    to_array(OP, n, m, &out_sp, out)
}

/// Scatter-adds `col[(m, k…), i…]` into `out[m, i·s − pb + k·d]`, skipping positions outside.
/// Output channels are independent and run in parallel; within a channel the kernel taps are
/// added in order, so the result does not depend on the thread count.
fn col2im(col: &[f32], geom: &Geom, out: &mut [f32]) {
    let kp = geom.k_prod();
    let in_prod = geom.in_prod();
    let out_prod = geom.out_prod();
    out.par_chunks_mut(out_prod)
        .zip(col.par_chunks(kp * in_prod))
        .for_each(|(dst, src)| col2im_channel(src, geom, dst));
}

/// [`col2im`] for one output channel: `col` holds its `∏k` rows.
fn col2im_channel(col: &[f32], geom: &Geom, dst: &mut [f32]) {
    let d = geom.in_sp.len();
    let in_prod = geom.in_prod();
    let mut out_str = vec![1usize; d];
    for i in (0..d.saturating_sub(1)).rev() {
        out_str[i] = out_str[i + 1] * geom.out_sp[i + 1];
    }
    let il = geom.in_sp[d - 1];
    let ol = geom.out_sp[d - 1];
    let sl = geom.strides[d - 1];
    let outer = in_prod / il.max(1);
    let mut kidx = vec![0usize; d];
    let mut iidx = vec![0usize; d.saturating_sub(1)];
    for (row, src) in col.chunks(in_prod).enumerate() {
        let mut rem = row;
        for i in (0..d).rev() {
            kidx[i] = rem % geom.k_sp[i];
            rem /= geom.k_sp[i];
        }
        iidx.iter_mut().for_each(|v| *v = 0);
        for op in 0..outer {
            let mut base = 0isize;
            let mut inside = true;
            for i in 0..d - 1 {
                let oc = (iidx[i] * geom.strides[i] + kidx[i] * geom.dil[i]) as isize
                    - geom.pb[i] as isize;
                if oc < 0 || oc >= geom.out_sp[i] as isize {
                    inside = false;
                    break;
                }
                base += oc * out_str[i] as isize;
            }
            if inside {
                let off = (kidx[d - 1] * geom.dil[d - 1]) as isize - geom.pb[d - 1] as isize;
                let seg = &src[op * il..(op + 1) * il];
                // Input positions t whose output column t·s + off lies in [0, ol).
                let (lo, hi) = valid_range(il, sl, off, ol);
                for (t, &v) in seg.iter().enumerate().take(hi).skip(lo) {
                    dst[(base + (t * sl) as isize + off) as usize] += v;
                }
            }
            for i in (0..d - 1).rev() {
                iidx[i] += 1;
                if iidx[i] < geom.in_sp[i] {
                    break;
                }
                iidx[i] = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{assert_close, rand_array};

    /// Direct definition of Conv, any rank, f64 accumulation.
    fn naive_conv(
        x: &ArrayD<f32>,
        w: &ArrayD<f32>,
        b: Option<&ArrayD<f32>>,
        p: &Conv2dParams,
    ) -> ArrayD<f32> {
        let r = x.ndim() - 2;
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let (m, cg) = (w.shape()[0], w.shape()[1]);
        let mg = m / p.groups;
        let out_sp: Vec<usize> = (0..r)
            .map(|i| {
                conv_output_len(
                    x.shape()[2 + i],
                    w.shape()[2 + i],
                    p.strides[i],
                    p.dilations[i],
                    p.pads_begin[i],
                    p.pads_end[i],
                )
                .expect("len")
            })
            .collect();
        let mut shape = vec![n, m];
        shape.extend(&out_sp);
        let _ = c;
        let mut y = ArrayD::<f32>::zeros(IxDyn(&shape));
        let k_sp = w.shape()[2..].to_vec();
        for (idx, v) in y.indexed_iter_mut() {
            let (ni, mi) = (idx[0], idx[1]);
            let gi = mi / mg;
            let mut s = b.map_or(0.0, |b| b[[mi]] as f64);
            for ci in 0..cg {
                let kn: usize = k_sp.iter().product();
                for kf in 0..kn {
                    let mut rem = kf;
                    let mut kidx = vec![0; r];
                    for i in (0..r).rev() {
                        kidx[i] = rem % k_sp[i];
                        rem /= k_sp[i];
                    }
                    let mut xi = vec![ni, gi * cg + ci];
                    let mut ok = true;
                    for i in 0..r {
                        let pos = (idx[2 + i] * p.strides[i] + kidx[i] * p.dilations[i]) as isize
                            - p.pads_begin[i] as isize;
                        if pos < 0 || pos >= x.shape()[2 + i] as isize {
                            ok = false;
                        }
                        xi.push(pos.max(0) as usize);
                    }
                    if ok {
                        let mut wi = vec![mi, ci];
                        wi.extend(&kidx);
                        s += x[IxDyn(&xi)] as f64 * w[IxDyn(&wi)] as f64;
                    }
                }
            }
            *v = s as f32;
        }
        y
    }

    /// The strided row copy (AVX2 deinterleave for stride 2) equals a plain strided copy for
    /// every stride, length and source size.
    #[test]
    fn gather_even_matches_strided_copy() {
        for stride in 1..=3usize {
            for len in 0..70usize {
                let src: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
                for n in 0..=len.div_ceil(stride) {
                    let want: Vec<f32> = src.iter().step_by(stride).take(n).copied().collect();
                    let mut dst = vec![f32::NAN; n];
                    copy_strided(&mut dst, &src, stride);
                    assert_eq!(dst, want, "stride {stride}, len {len}, n {n}");
                    if stride == 2 {
                        let mut dst = vec![f32::NAN; n];
                        gather_even(&mut dst, &src);
                        assert_eq!(dst, want, "gather_even, len {len}, n {n}");
                    }
                }
            }
        }
    }

    /// The AVX2 plane kernel (8/4/2/1-row tiles, masked last columns) equals a scalar fused
    /// multiply-add in tap order, bit for bit, for every plane size, and writes nothing else.
    #[test]
    fn depthwise_plane_kernel_matches_scalar_fma() {
        if !have_avx2_fma() {
            return;
        }
        let buf: Vec<f32> = (0..1200)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let w = [0.3f32, -1.7, 2.25, 0.001, -0.5];
        for oh in 1..=19 {
            for ow in 1..=27 {
                let row = ow + 3;
                let last = (oh - 1) * row + ow;
                let taps = [0usize, 3, row + 1, 2 * row, 1200 - last];
                let mut got = vec![f32::NAN; oh * ow + 3];
                dw_plane(
                    &mut got[..oh * ow],
                    oh,
                    ow,
                    &buf,
                    row,
                    &taps,
                    &w,
                    0.125,
                    true,
                );
                for y in 0..oh {
                    for x in 0..ow {
                        let mut a = 0.125f32;
                        for (&t, &wt) in taps.iter().zip(&w) {
                            a = wt.mul_add(buf[t + y * row + x], a);
                        }
                        let g = got[y * ow + x];
                        assert_eq!(g.to_bits(), a.to_bits(), "{oh}x{ow} at ({y}, {x})");
                    }
                }
                assert!(
                    got[oh * ow..].iter().all(|v| v.is_nan()),
                    "wrote past the plane"
                );
            }
        }
    }

    #[test]
    fn conv2d_hand_checked() {
        // 1x1x3x3 input 1..9, 2x2 kernel of ones, pad 0 → sums of 2x2 windows.
        let x = ArrayD::from_shape_vec(vec![1, 1, 3, 3], (1..=9).map(|v| v as f32).collect())
            .expect("x");
        let w = ArrayD::from_elem(vec![1, 1, 2, 2], 1.0f32);
        let y = conv(&x.view(), &w.view(), None, &Conv2dParams::new(2)).expect("conv");
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![12.0, 16.0, 24.0, 28.0]
        );
    }

    #[test]
    fn conv2d_variants_match_naive() {
        let cases: Vec<(Vec<usize>, Vec<usize>, Conv2dParams)> = vec![
            // general, stride 2, asymmetric pads, bias
            (
                vec![2, 4, 9, 8],
                vec![6, 4, 3, 3],
                Conv2dParams {
                    strides: vec![2, 2],
                    dilations: vec![1, 1],
                    pads_begin: vec![1, 0],
                    pads_end: vec![1, 2],
                    groups: 1,
                },
            ),
            // grouped + dilated
            (
                vec![1, 6, 10, 11],
                vec![4, 3, 3, 2],
                Conv2dParams {
                    strides: vec![1, 2],
                    dilations: vec![2, 3],
                    pads_begin: vec![2, 1],
                    pads_end: vec![0, 3],
                    groups: 2,
                },
            ),
            // depthwise, multiplier 2, stride 2
            (
                vec![2, 3, 9, 9],
                vec![6, 1, 3, 3],
                Conv2dParams {
                    strides: vec![2, 2],
                    dilations: vec![1, 1],
                    pads_begin: vec![1, 1],
                    pads_end: vec![1, 1],
                    groups: 3,
                },
            ),
            // depthwise dilated, stride 1, 5x5
            (
                vec![1, 4, 12, 7],
                vec![4, 1, 5, 5],
                Conv2dParams {
                    strides: vec![1, 1],
                    dilations: vec![2, 1],
                    pads_begin: vec![4, 2],
                    pads_end: vec![4, 2],
                    groups: 4,
                },
            ),
            // depthwise, unequal strides, width dilation, asymmetric pads
            (
                vec![1, 2, 13, 11],
                vec![2, 1, 3, 4],
                Conv2dParams {
                    strides: vec![3, 2],
                    dilations: vec![1, 3],
                    pads_begin: vec![0, 2],
                    pads_end: vec![2, 1],
                    groups: 2,
                },
            ),
            // pointwise
            (vec![3, 8, 5, 5], vec![16, 8, 1, 1], Conv2dParams::new(2)),
            // 1-D
            (
                vec![2, 3, 17],
                vec![5, 3, 4],
                Conv2dParams {
                    strides: vec![3],
                    dilations: vec![2],
                    pads_begin: vec![2],
                    pads_end: vec![1],
                    groups: 1,
                },
            ),
            // 1-D depthwise
            (
                vec![1, 4, 9],
                vec![4, 1, 3],
                Conv2dParams {
                    strides: vec![1],
                    dilations: vec![1],
                    pads_begin: vec![1],
                    pads_end: vec![1],
                    groups: 4,
                },
            ),
            // 3-D
            (
                vec![1, 2, 5, 6, 4],
                vec![3, 2, 2, 3, 2],
                Conv2dParams {
                    strides: vec![1, 2, 1],
                    dilations: vec![2, 1, 1],
                    pads_begin: vec![1, 1, 0],
                    pads_end: vec![0, 1, 1],
                    groups: 1,
                },
            ),
        ];
        for (ci, (xs, wsh, p)) in cases.iter().enumerate() {
            let x = rand_array(xs, 10 + ci as u64);
            let w = rand_array(wsh, 20 + ci as u64);
            let b = rand_array(&[wsh[0]], 30 + ci as u64);
            let y = conv(&x.view(), &w.view(), Some(&b.view()), p).expect("conv");
            let r = naive_conv(&x, &w, Some(&b), p);
            assert_close(&y, &r, 1e-5);
        }
    }

    #[test]
    fn conv_large_deterministic_and_correct() {
        let x = rand_array(&[2, 16, 20, 20], 3);
        let w = rand_array(&[32, 16, 3, 3], 4);
        let p = Conv2dParams {
            pads_begin: vec![1, 1],
            pads_end: vec![1, 1],
            ..Conv2dParams::new(2)
        };
        let y1 = conv(&x.view(), &w.view(), None, &p).expect("conv");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let y2 = pool
            .install(|| conv(&x.view(), &w.view(), None, &p))
            .expect("conv");
        assert_eq!(y1, y2, "thread count changed the result");
        assert_close(&y1, &naive_conv(&x, &w, None, &p), 1e-4);
    }

    #[test]
    fn conv_shape_errors() {
        let x = rand_array(&[1, 4, 5, 5], 1);
        let w = rand_array(&[2, 3, 3, 3], 1);
        assert!(matches!(
            conv(&x.view(), &w.view(), None, &Conv2dParams::new(2)),
            Err(KernelError::Shape { .. })
        ));
        let w = rand_array(&[2, 4, 7, 7], 1);
        assert!(conv(&x.view(), &w.view(), None, &Conv2dParams::new(2)).is_err());
        let w = rand_array(&[2, 4, 3, 3], 1);
        let mut p = Conv2dParams::new(2);
        p.strides = vec![0, 1];
        assert!(matches!(
            conv(&x.view(), &w.view(), None, &p),
            Err(KernelError::Param { .. })
        ));
    }

    /// Direct scatter definition of ConvTranspose.
    fn naive_convt(
        x: &ArrayD<f32>,
        w: &ArrayD<f32>,
        b: &ArrayD<f32>,
        p: &ConvTransposeParams,
    ) -> ArrayD<f32> {
        let r = x.ndim() - 2;
        let c = x.shape()[1];
        let mg = w.shape()[1];
        let g = p.groups;
        let cg = c / g;
        let out_sp: Vec<usize> = (0..r)
            .map(|i| {
                conv_transpose_output_len(
                    x.shape()[2 + i],
                    w.shape()[2 + i],
                    p.strides[i],
                    p.dilations[i],
                    p.pads_begin[i],
                    p.pads_end[i],
                    p.output_padding[i],
                )
                .expect("len")
            })
            .collect();
        let mut shape = vec![x.shape()[0], mg * g];
        shape.extend(&out_sp);
        let mut y = ArrayD::<f64>::zeros(IxDyn(&shape));
        for (xi, &xv) in x.indexed_iter() {
            let ci = xi[1];
            let gi = ci / cg;
            for (wi, &wv) in w.indexed_iter() {
                if wi[0] != ci {
                    continue;
                }
                let mut yi = vec![xi[0], gi * mg + wi[1]];
                let mut ok = true;
                for d in 0..r {
                    let pos = (xi[2 + d] * p.strides[d] + wi[2 + d] * p.dilations[d]) as isize
                        - p.pads_begin[d] as isize;
                    if pos < 0 || pos >= out_sp[d] as isize {
                        ok = false;
                    }
                    yi.push(pos.max(0) as usize);
                }
                if ok {
                    y[IxDyn(&yi)] += xv as f64 * wv as f64;
                }
            }
        }
        for (yi, v) in y.indexed_iter_mut() {
            *v += b[[yi[1]]] as f64;
        }
        y.mapv(|v| v as f32)
    }

    #[test]
    fn conv_transpose_matches_naive() {
        let cases = [
            (
                vec![1, 2, 3, 3],
                vec![2, 3, 3, 3],
                ConvTransposeParams {
                    strides: vec![2, 2],
                    dilations: vec![1, 1],
                    pads_begin: vec![1, 0],
                    pads_end: vec![0, 1],
                    output_padding: vec![1, 1],
                    groups: 1,
                },
            ),
            (
                vec![2, 4, 4, 5],
                vec![4, 2, 2, 3],
                ConvTransposeParams {
                    strides: vec![1, 3],
                    dilations: vec![2, 1],
                    pads_begin: vec![0, 1],
                    pads_end: vec![1, 0],
                    output_padding: vec![0, 2],
                    groups: 2,
                },
            ),
            (
                vec![1, 3, 6],
                vec![3, 2, 4],
                ConvTransposeParams {
                    strides: vec![2],
                    dilations: vec![1],
                    pads_begin: vec![1],
                    pads_end: vec![1],
                    output_padding: vec![0],
                    groups: 1,
                },
            ),
        ];
        for (ci, (xs, wsh, p)) in cases.iter().enumerate() {
            let x = rand_array(xs, 40 + ci as u64);
            let w = rand_array(wsh, 50 + ci as u64);
            let b = rand_array(&[wsh[1] * p.groups], 60 + ci as u64);
            let y = conv_transpose(&x.view(), &w.view(), Some(&b.view()), p).expect("convT");
            assert_close(&y, &naive_convt(&x, &w, &b, p), 1e-5);
        }
    }

    #[test]
    fn conv_transpose_hand_checked() {
        // ONNX doc example shape: 1x1x3x3 ones-like input, 1x2x3x3 ones weights, stride 1.
        let x = ArrayD::from_shape_vec(vec![1, 1, 3, 3], (0..9).map(|v| v as f32).collect())
            .expect("x");
        let w = ArrayD::from_elem(vec![1, 2, 3, 3], 1.0f32);
        let y = conv_transpose(&x.view(), &w.view(), None, &ConvTransposeParams::new(2))
            .expect("convT");
        assert_eq!(y.shape(), &[1, 2, 5, 5]);
        let first_row: Vec<f32> = y.iter().take(5).copied().collect();
        assert_eq!(first_row, vec![0.0, 1.0, 3.0, 3.0, 2.0]);
    }
}
