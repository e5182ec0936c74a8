//! Neural-network ops: Conv and ConvTranspose (groups, dilations, explicit and auto pads),
//! pooling, normalizations, Softmax/LogSoftmax, Resize, Pad, DepthToSpace. Attributes are
//! parsed and normalised here (auto_pad resolved against the input shape, opset defaults
//! applied); the arithmetic runs in `crate::kernels`.

use super::{eval_err, input_f32, opt_input_i64s, Attrs, Op, OpError};
use crate::kernels;
use crate::tensor::Tensor;

#[derive(Debug, Clone, Copy, PartialEq)]
enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

fn auto_pad(a: &Attrs) -> Result<AutoPad, OpError> {
    match a.string("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" => Ok(AutoPad::NotSet),
        "SAME_UPPER" => Ok(AutoPad::SameUpper),
        "SAME_LOWER" => Ok(AutoPad::SameLower),
        "VALID" => Ok(AutoPad::Valid),
        o => Err(a.err("auto_pad", format!("unknown value '{o}'"))),
    }
}

fn to_usizes(a: &Attrs, name: &str, v: Option<Vec<i64>>) -> Result<Option<Vec<usize>>, OpError> {
    match v {
        None => Ok(None),
        Some(v) => v
            .iter()
            .map(|&x| {
                usize::try_from(x).map_err(|_| a.err(name, format!("negative value in {v:?}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}

/// Window attributes shared by Conv and the pooling ops.
#[derive(Debug, Clone)]
struct Window {
    auto_pad: AutoPad,
    kernel: Option<Vec<usize>>,
    strides: Option<Vec<usize>>,
    dilations: Option<Vec<usize>>,
    pads: Option<Vec<usize>>,
}

impl Window {
    fn read(a: &Attrs) -> Result<Window, OpError> {
        Ok(Window {
            auto_pad: auto_pad(a)?,
            kernel: to_usizes(a, "kernel_shape", a.opt_ints("kernel_shape")?)?,
            strides: to_usizes(a, "strides", a.opt_ints("strides")?)?,
            dilations: to_usizes(a, "dilations", a.opt_ints("dilations")?)?,
            pads: to_usizes(a, "pads", a.opt_ints("pads")?)?,
        })
    }

    /// Resolves strides, dilations and begin/end pads for input spatial dims `input` and kernel
    /// spatial dims `k`.
    #[allow(clippy::type_complexity)]
    fn resolve(
        &self,
        op: &str,
        input: &[usize],
        k: &[usize],
    ) -> Result<(Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>), OpError> {
        let r = input.len();
        if k.contains(&0) {
            return Err(eval_err(
                op,
                format!("kernel shape {k:?} has a zero dimension"),
            ));
        }
        let strides = self.strides.clone().unwrap_or_else(|| vec![1; r]);
        let dil = self.dilations.clone().unwrap_or_else(|| vec![1; r]);
        if strides.len() != r || dil.len() != r || k.len() != r {
            return Err(eval_err(
                op,
                format!("strides/dilations/kernel do not match {r} spatial dims"),
            ));
        }
        let (pb, pe) = match self.auto_pad {
            AutoPad::NotSet => match &self.pads {
                None => (vec![0; r], vec![0; r]),
                Some(p) if p.len() == 2 * r => (p[..r].to_vec(), p[r..].to_vec()),
                Some(p) => {
                    return Err(eval_err(
                        op,
                        format!("pads {p:?} do not match {r} spatial dims"),
                    ))
                }
            },
            AutoPad::Valid => (vec![0; r], vec![0; r]),
            AutoPad::SameUpper | AutoPad::SameLower => {
                let mut pb = vec![0; r];
                let mut pe = vec![0; r];
                for i in 0..r {
                    let out = input[i].div_ceil(strides[i].max(1));
                    let need = (out.saturating_sub(1)) * strides[i] + (k[i] - 1) * dil[i] + 1;
                    let total = need.saturating_sub(input[i]);
                    let small = total / 2;
                    if self.auto_pad == AutoPad::SameUpper {
                        pb[i] = small;
                        pe[i] = total - small;
                    } else {
                        pb[i] = total - small;
                        pe[i] = small;
                    }
                }
                (pb, pe)
            }
        };
        Ok((strides, dil, pb, pe))
    }
}

#[derive(Debug)]
struct Conv {
    win: Window,
    group: usize,
    /// Fused activation (a following Relu/Clip folded in by the interpreter).
    act: kernels::conv::Clamp,
}

impl Op for Conv {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input_f32("Conv", inputs, 0)?;
        let w = input_f32("Conv", inputs, 1)?;
        let b = match inputs.get(2).copied().flatten() {
            Some(t) => Some(t.to_f32()?),
            None => None,
        };
        if x.ndim() < 3 || w.ndim() != x.ndim() {
            return Err(eval_err(
                "Conv",
                format!(
                    "X {:?} and W {:?} must have equal rank >= 3",
                    x.shape(),
                    w.shape()
                ),
            ));
        }
        let k = &w.shape()[2..];
        if let Some(ks) = &self.win.kernel {
            if ks.as_slice() != k {
                return Err(eval_err(
                    "Conv",
                    format!("kernel_shape {ks:?} disagrees with W {:?}", w.shape()),
                ));
            }
        }
        let (strides, dilations, pads_begin, pads_end) =
            self.win.resolve("Conv", &x.shape()[2..], k)?;
        let p = kernels::conv::Conv2dParams {
            strides,
            dilations,
            pads_begin,
            pads_end,
            groups: self.group,
        };
        let bv = b.as_ref().map(|b| b.view());
        Ok(vec![Tensor::F32(kernels::conv::conv_clamped(
            &x.view(),
            &w.view(),
            bv.as_ref(),
            &p,
            self.act,
        )?)])
    }

    fn with_clamp(&self, act: kernels::conv::Clamp) -> Option<Box<dyn Op>> {
        if !self.act.is_none() {
            return None;
        }
        Some(Box::new(Conv {
            win: self.win.clone(),
            group: self.group,
            act,
        }))
    }

    fn macs(&self, inputs: &[Option<&[usize]>], outputs: &[&[usize]]) -> u64 {
        match (self.dot_length(inputs), outputs.first()) {
            (Some(d), Some(o)) => d as u64 * o.iter().product::<usize>() as u64,
            _ => 0,
        }
    }

    fn dot_length(&self, inputs: &[Option<&[usize]>]) -> Option<usize> {
        let w = inputs.get(1).copied().flatten()?;
        Some(w.iter().skip(1).product())
    }
}

#[derive(Debug)]
struct ConvTranspose {
    win: Window,
    group: usize,
    output_padding: Option<Vec<usize>>,
    output_shape: Option<Vec<usize>>,
}

impl Op for ConvTranspose {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        const OP: &str = "ConvTranspose";
        let x = input_f32(OP, inputs, 0)?;
        let w = input_f32(OP, inputs, 1)?;
        let b = match inputs.get(2).copied().flatten() {
            Some(t) => Some(t.to_f32()?),
            None => None,
        };
        if x.ndim() < 3 || w.ndim() != x.ndim() {
            return Err(eval_err(
                OP,
                format!(
                    "X {:?} and W {:?} must have equal rank >= 3",
                    x.shape(),
                    w.shape()
                ),
            ));
        }
        let r = x.ndim() - 2;
        let k = w.shape()[2..].to_vec();
        if k.contains(&0) {
            return Err(eval_err(
                OP,
                format!("kernel shape {k:?} has a zero dimension"),
            ));
        }
        let ins = x.shape()[2..].to_vec();
        let strides = self.win.strides.clone().unwrap_or_else(|| vec![1; r]);
        let dil = self.win.dilations.clone().unwrap_or_else(|| vec![1; r]);
        let op = self.output_padding.clone().unwrap_or_else(|| vec![0; r]);
        if strides.len() != r || dil.len() != r || op.len() != r {
            return Err(eval_err(
                OP,
                "strides/dilations/output_padding do not match the spatial rank",
            ));
        }
        let target: Option<Vec<usize>> = match (&self.output_shape, self.win.auto_pad) {
            (Some(s), _) => Some(if s.len() == r {
                s.clone()
            } else if s.len() == r + 2 {
                s[2..].to_vec()
            } else {
                return Err(eval_err(
                    OP,
                    format!("output_shape {s:?} does not match the spatial rank"),
                ));
            }),
            (None, AutoPad::SameUpper | AutoPad::SameLower) => {
                Some((0..r).map(|i| ins[i] * strides[i]).collect())
            }
            _ => None,
        };
        let (pb, pe) = match target {
            Some(t) => {
                let mut pb = vec![0; r];
                let mut pe = vec![0; r];
                for i in 0..r {
                    let full = strides[i] * (ins[i].max(1) - 1) + op[i] + (k[i] - 1) * dil[i] + 1;
                    let total = full
                        .checked_sub(t[i])
                        .ok_or_else(|| eval_err(OP, format!("output_shape {t:?} is too large")))?;
                    if self.win.auto_pad == AutoPad::SameUpper {
                        pb[i] = total / 2;
                        pe[i] = total - total / 2;
                    } else {
                        pb[i] = total - total / 2;
                        pe[i] = total / 2;
                    }
                }
                (pb, pe)
            }
            None => match (&self.win.pads, self.win.auto_pad) {
                (Some(p), AutoPad::NotSet) if p.len() == 2 * r => {
                    (p[..r].to_vec(), p[r..].to_vec())
                }
                (Some(p), AutoPad::NotSet) => {
                    return Err(eval_err(
                        OP,
                        format!("pads {p:?} do not match the spatial rank"),
                    ))
                }
                _ => (vec![0; r], vec![0; r]),
            },
        };
        let p = kernels::conv::ConvTransposeParams {
            strides,
            dilations: dil,
            pads_begin: pb,
            pads_end: pe,
            output_padding: op,
            groups: self.group,
        };
        let bv = b.as_ref().map(|b| b.view());
        Ok(vec![Tensor::F32(kernels::conv::conv_transpose(
            &x.view(),
            &w.view(),
            bv.as_ref(),
            &p,
        )?)])
    }

    fn macs(&self, inputs: &[Option<&[usize]>], _outputs: &[&[usize]]) -> u64 {
        match (
            inputs.first().copied().flatten(),
            inputs.get(1).copied().flatten(),
        ) {
            (Some(x), Some(w)) if w.len() >= 2 => {
                // Every input element is multiplied by M/group·k… weights.
                x.iter().product::<usize>() as u64 * w.iter().skip(1).product::<usize>() as u64
            }
            _ => 0,
        }
    }

    fn dot_length(&self, inputs: &[Option<&[usize]>]) -> Option<usize> {
        let w = inputs.get(1).copied().flatten()?;
        let c_per_group = w.first()? / self.group.max(1);
        Some(c_per_group * w.iter().skip(2).product::<usize>())
    }
}

#[derive(Debug)]
struct Pool {
    max: bool,
    win: Window,
    ceil_mode: bool,
    count_include_pad: bool,
}

impl Op for Pool {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let op = if self.max { "MaxPool" } else { "AveragePool" };
        let x = input_f32(op, inputs, 0)?;
        if x.ndim() < 3 {
            return Err(eval_err(
                op,
                format!("input {:?} must be [N, C, D1, ...]", x.shape()),
            ));
        }
        let k = self
            .win
            .kernel
            .clone()
            .ok_or_else(|| eval_err(op, "kernel_shape is required"))?;
        let (strides, dilations, pads_begin, pads_end) =
            self.win.resolve(op, &x.shape()[2..], &k)?;
        let p = kernels::pool::PoolParams {
            kernel: k,
            strides,
            dilations,
            pads_begin,
            pads_end,
            ceil_mode: self.ceil_mode,
            count_include_pad: self.count_include_pad,
        };
        let y = if self.max {
            kernels::pool::max_pool(&x.view(), &p)?
        } else {
            kernels::pool::average_pool(&x.view(), &p)?
        };
        Ok(vec![Tensor::F32(y)])
    }
}

#[derive(Debug)]
struct GlobalPool {
    max: bool,
}

impl Op for GlobalPool {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input_f32("GlobalPool", inputs, 0)?;
        let y = if self.max {
            kernels::pool::global_max_pool(&x.view())?
        } else {
            kernels::pool::global_average_pool(&x.view())?
        };
        Ok(vec![Tensor::F32(y)])
    }
}

#[derive(Debug)]
enum NormKind {
    Batch,
    Instance,
    Layer { axis: i64 },
}

#[derive(Debug)]
struct Norm {
    kind: NormKind,
    epsilon: f32,
}

impl Op for Norm {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let get = |i: usize| -> Result<Option<ndarray::ArrayD<f32>>, OpError> {
            inputs
                .get(i)
                .copied()
                .flatten()
                .map(|t| t.to_f32())
                .transpose()
                .map_err(OpError::from)
        };
        let x = input_f32("Normalization", inputs, 0)?;
        let y = match self.kind {
            NormKind::Batch => {
                let need =
                    |i: usize| -> Result<std::borrow::Cow<'_, ndarray::ArrayD<f32>>, OpError> {
                        input_f32("BatchNormalization", inputs, i)
                    };
                let (sc, b, m, v) = (need(1)?, need(2)?, need(3)?, need(4)?);
                kernels::norm::batch_normalization(
                    &x.view(),
                    &sc.view(),
                    &b.view(),
                    &m.view(),
                    &v.view(),
                    self.epsilon,
                )?
            }
            NormKind::Instance => {
                let sc = input_f32("InstanceNormalization", inputs, 1)?;
                let b = input_f32("InstanceNormalization", inputs, 2)?;
                kernels::norm::instance_normalization(
                    &x.view(),
                    &sc.view(),
                    &b.view(),
                    self.epsilon,
                )?
            }
            NormKind::Layer { axis } => {
                let sc = get(1)?;
                let b = get(2)?;
                let scv = sc.as_ref().map(|a| a.view());
                let bv = b.as_ref().map(|a| a.view());
                kernels::norm::layer_normalization(
                    &x.view(),
                    scv.as_ref(),
                    bv.as_ref(),
                    axis,
                    self.epsilon,
                )?
            }
        };
        Ok(vec![Tensor::F32(y)])
    }
}

#[derive(Debug)]
struct Resize {
    opset10: bool,
    mode: kernels::resize::ResizeMode,
    nearest_mode: kernels::resize::NearestMode,
    coord: kernels::resize::CoordTransform,
    cubic_coeff_a: f32,
    exclude_outside: bool,
    axes: Option<Vec<i64>>,
}

impl Op for Resize {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        const OP: &str = "Resize";
        let x = input_f32(OP, inputs, 0)?;
        let r = x.ndim();
        let (scales_in, sizes_in) = if self.opset10 {
            (
                Some(
                    input_f32(OP, inputs, 1)?
                        .iter()
                        .copied()
                        .collect::<Vec<f32>>(),
                ),
                None,
            )
        } else {
            let sc = inputs.get(2).copied().flatten().filter(|t| !t.is_empty());
            let sz = inputs.get(3).copied().flatten().filter(|t| !t.is_empty());
            (
                sc.map(|t| t.to_f32().map(|a| a.iter().copied().collect::<Vec<f32>>()))
                    .transpose()?,
                sz.map(|t| t.to_i64().map(|a| a.iter().copied().collect::<Vec<i64>>()))
                    .transpose()?,
            )
        };
        let axes: Vec<usize> = match &self.axes {
            Some(a) => a
                .iter()
                .map(|&v| super::axis(OP, v, r))
                .collect::<Result<_, _>>()?,
            None => (0..r).collect(),
        };
        let mut out = x.shape().to_vec();
        let mut scales = vec![1.0f32; r];
        match (scales_in, sizes_in) {
            (Some(sc), None) => {
                if sc.len() != axes.len() {
                    return Err(eval_err(
                        OP,
                        format!("{} scales for {} axes", sc.len(), axes.len()),
                    ));
                }
                for (k, &ax) in axes.iter().enumerate() {
                    scales[ax] = sc[k];
                    out[ax] = (x.shape()[ax] as f32 * sc[k]).floor() as usize;
                }
            }
            (None, Some(sz)) => {
                if sz.len() != axes.len() {
                    return Err(eval_err(
                        OP,
                        format!("{} sizes for {} axes", sz.len(), axes.len()),
                    ));
                }
                for (k, &ax) in axes.iter().enumerate() {
                    let o = usize::try_from(sz[k])
                        .map_err(|_| eval_err(OP, format!("negative size {}", sz[k])))?;
                    out[ax] = o;
                    scales[ax] = o as f32 / x.shape()[ax].max(1) as f32;
                }
            }
            _ => {
                return Err(eval_err(
                    OP,
                    "exactly one of scales and sizes must be given",
                ))
            }
        }
        let p = kernels::resize::ResizeParams {
            output_shape: out,
            scales,
            mode: self.mode,
            nearest_mode: self.nearest_mode,
            coord: self.coord,
            cubic_coeff_a: self.cubic_coeff_a,
            exclude_outside: self.exclude_outside,
        };
        Ok(vec![Tensor::F32(kernels::resize::resize(&x.view(), &p)?)])
    }
}

#[derive(Debug)]
struct Pad {
    mode: String,
    attr: Option<(Vec<i64>, f32)>,
}

impl Op for Pad {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        const OP: &str = "Pad";
        let x = input_f32(OP, inputs, 0)?;
        let r = x.ndim();
        let (pads, value, axes) = match &self.attr {
            Some((p, v)) => (p.clone(), *v, None),
            None => {
                let p = super::input_i64s(OP, inputs, 1)?;
                let v = match inputs.get(2).copied().flatten() {
                    Some(t) => t.to_f64_vec()?.first().copied().unwrap_or(0.0) as f32,
                    None => 0.0,
                };
                (p, v, opt_input_i64s(inputs, 3)?)
            }
        };
        let axes: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&v| super::axis(OP, v, r))
                .collect::<Result<_, _>>()?,
            None => (0..r).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(eval_err(
                OP,
                format!("pads {pads:?} do not match {} axes", axes.len()),
            ));
        }
        let mut pb = vec![0i64; r];
        let mut pe = vec![0i64; r];
        for (k, &ax) in axes.iter().enumerate() {
            pb[ax] = pads[k];
            pe[ax] = pads[k + axes.len()];
        }
        let mode = match self.mode.as_str() {
            "constant" => kernels::pad::PadMode::Constant(value),
            "reflect" => kernels::pad::PadMode::Reflect,
            "edge" => kernels::pad::PadMode::Edge,
            _ => kernels::pad::PadMode::Wrap,
        };
        Ok(vec![Tensor::F32(kernels::pad::pad(
            &x.view(),
            &pb,
            &pe,
            mode,
        )?)])
    }
}

#[derive(Debug)]
struct DepthToSpace {
    blocksize: usize,
    mode: kernels::layout::DepthToSpaceMode,
}

impl Op for DepthToSpace {
    fn eval(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = input_f32("DepthToSpace", inputs, 0)?;
        Ok(vec![Tensor::F32(kernels::layout::depth_to_space(
            &x.view(),
            self.blocksize,
            self.mode,
        )?)])
    }
}

/// Builds an nn op, or `None` if `op` is not in this family.
pub fn build(op: &str, a: &Attrs) -> Result<Option<Box<dyn Op>>, OpError> {
    let b: Box<dyn Op> = match op {
        "Conv" => {
            let group = a.int("group", 1)?;
            if group < 1 {
                return Err(a.err("group", format!("must be >= 1, got {group}")));
            }
            Box::new(Conv {
                win: Window::read(a)?,
                group: group as usize,
                act: kernels::conv::Clamp::NONE,
            })
        }
        "ConvTranspose" => {
            let group = a.int("group", 1)?;
            if group < 1 {
                return Err(a.err("group", format!("must be >= 1, got {group}")));
            }
            Box::new(ConvTranspose {
                win: Window::read(a)?,
                group: group as usize,
                output_padding: to_usizes(a, "output_padding", a.opt_ints("output_padding")?)?,
                output_shape: to_usizes(a, "output_shape", a.opt_ints("output_shape")?)?,
            })
        }
        "MaxPool" | "AveragePool" => {
            let max = op == "MaxPool";
            if a.n_outputs() > 1 {
                return Err(a.err("Indices", "the Indices output of MaxPool is not supported"));
            }
            if max && a.int("storage_order", 0)? != 0 {
                return Err(a.err("storage_order", "only 0 (row major) is supported"));
            }
            let count_include_pad = if max {
                false
            } else {
                a.int("count_include_pad", 0)? != 0
            };
            Box::new(Pool {
                max,
                win: Window::read(a)?,
                ceil_mode: a.int("ceil_mode", 0)? != 0,
                count_include_pad,
            })
        }
        "GlobalAveragePool" => Box::new(GlobalPool { max: false }),
        "GlobalMaxPool" => Box::new(GlobalPool { max: true }),
        "BatchNormalization" => {
            if a.n_outputs() > 1 {
                return Err(a.err(
                    "outputs",
                    "training outputs (running mean/var) are not supported",
                ));
            }
            if a.opset() < 7 && a.int("is_test", 1)? == 0 {
                return Err(a.err("is_test", "training mode is not supported"));
            }
            if a.opset() < 9 && a.int("spatial", 1)? != 1 {
                return Err(a.err("spatial", "only spatial=1 is supported"));
            }
            if a.int("training_mode", 0)? != 0 {
                return Err(a.err("training_mode", "training mode is not supported"));
            }
            a.float("momentum", 0.9)?;
            Box::new(Norm {
                kind: NormKind::Batch,
                epsilon: a.float("epsilon", 1e-5)?,
            })
        }
        "InstanceNormalization" => Box::new(Norm {
            kind: NormKind::Instance,
            epsilon: a.float("epsilon", 1e-5)?,
        }),
        "LayerNormalization" => {
            if a.n_outputs() > 1 {
                return Err(a.err("outputs", "the Mean/InvStdDev outputs are not supported"));
            }
            if a.int("stash_type", 1)? != 1 {
                return Err(a.err("stash_type", "only float32 stashing (1) is supported"));
            }
            Box::new(Norm {
                kind: NormKind::Layer {
                    axis: a.int("axis", -1)?,
                },
                epsilon: a.float("epsilon", 1e-5)?,
            })
        }
        "Resize" | "Upsample" => {
            use kernels::resize::{CoordTransform, NearestMode, ResizeMode};
            let opset10 = a.opset() < 11;
            if op == "Upsample" && a.opset() < 9 {
                return Err(a.err(
                    "scales",
                    "Upsample with a scales attribute (opset < 9) is not supported",
                ));
            }
            let mode = match a.string("mode", "nearest")?.as_str() {
                "nearest" => ResizeMode::Nearest,
                "linear" | "bilinear" => ResizeMode::Linear,
                "cubic" if !opset10 => ResizeMode::Cubic,
                o => return Err(a.err("mode", format!("unsupported value '{o}'"))),
            };
            let (coord, nearest_mode) = if opset10 {
                (CoordTransform::Asymmetric, NearestMode::Floor)
            } else {
                let c = match a
                    .string("coordinate_transformation_mode", "half_pixel")?
                    .as_str()
                {
                    "half_pixel" => CoordTransform::HalfPixel,
                    "half_pixel_symmetric" => CoordTransform::HalfPixelSymmetric,
                    "pytorch_half_pixel" => CoordTransform::PytorchHalfPixel,
                    "align_corners" => CoordTransform::AlignCorners,
                    "asymmetric" => CoordTransform::Asymmetric,
                    o => {
                        return Err(a.err(
                            "coordinate_transformation_mode",
                            format!("unsupported value '{o}'"),
                        ))
                    }
                };
                let n = match a.string("nearest_mode", "round_prefer_floor")?.as_str() {
                    "round_prefer_floor" => NearestMode::RoundPreferFloor,
                    "round_prefer_ceil" => NearestMode::RoundPreferCeil,
                    "floor" => NearestMode::Floor,
                    "ceil" => NearestMode::Ceil,
                    o => return Err(a.err("nearest_mode", format!("unsupported value '{o}'"))),
                };
                (c, n)
            };
            if a.opset() >= 18 {
                if a.int("antialias", 0)? != 0 {
                    return Err(a.err("antialias", "antialiasing is not supported"));
                }
                if a.string("keep_aspect_ratio_policy", "stretch")? != "stretch" {
                    return Err(a.err("keep_aspect_ratio_policy", "only 'stretch' is supported"));
                }
            }
            a.float("extrapolation_value", 0.0)?;
            Box::new(Resize {
                opset10,
                mode,
                nearest_mode,
                coord,
                cubic_coeff_a: a.float("cubic_coeff_a", -0.75)?,
                exclude_outside: a.int("exclude_outside", 0)? != 0,
                axes: if a.opset() >= 18 {
                    a.opt_ints("axes")?
                } else {
                    None
                },
            })
        }
        "Pad" => {
            let mode = a.string("mode", "constant")?;
            let known = ["constant", "reflect", "edge"].contains(&mode.as_str());
            let wrap = mode == "wrap" && a.opset() >= 19;
            if !known && !wrap {
                return Err(a.err("mode", format!("unsupported value '{mode}'")));
            }
            let attr = if a.opset() < 11 {
                let pads = a
                    .opt_ints(if a.opset() < 2 { "paddings" } else { "pads" })?
                    .ok_or_else(|| a.err("pads", "required"))?;
                Some((pads, a.float("value", 0.0)?))
            } else {
                None
            };
            Box::new(Pad { mode, attr })
        }
        "DepthToSpace" => {
            let bs = a.int("blocksize", 0)?;
            if bs < 1 {
                return Err(a.err("blocksize", format!("must be >= 1, got {bs}")));
            }
            let mode = match a.string("mode", "DCR")?.as_str() {
                "DCR" => kernels::layout::DepthToSpaceMode::Dcr,
                "CRD" => kernels::layout::DepthToSpaceMode::Crd,
                o => return Err(a.err("mode", format!("unsupported value '{o}'"))),
            };
            Box::new(DepthToSpace {
                blocksize: bs as usize,
                mode,
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(b))
}
