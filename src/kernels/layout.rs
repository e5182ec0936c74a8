//! Data-movement kernels: ONNX DepthToSpace (DCR and CRD) and SpaceToDepth.

use super::{param_err, shape_err, KernelError};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

/// Channel ordering of DepthToSpace (`mode` attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepthToSpaceMode {
    /// depth-column-row (ONNX default): channels are `[b, b, C']`.
    Dcr,
    /// column-row-depth (PyTorch PixelShuffle): channels are `[C', b, b]`.
    Crd,
}

fn permute_reshape(
    op: &'static str,
    x: &ArrayViewD<'_, f32>,
    split: &[usize],
    perm: &[usize],
    out: &[usize],
) -> Result<ArrayD<f32>, KernelError> {
    let v = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(split))
        .map_err(|e| shape_err(op, e.to_string()))?;
    let t = v.permuted_axes(IxDyn(perm));
    t.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(out))
        .map_err(|e| shape_err(op, e.to_string()))
}

/// ONNX DepthToSpace: `[N, C, H, W]` → `[N, C/b², H·b, W·b]`. DCR reads channel
/// `(i·b + j)·C' + c` for output `(c, h·b + i, w·b + j)`; CRD reads `c·b² + i·b + j`.
pub fn depth_to_space(
    x: &ArrayViewD<'_, f32>,
    blocksize: usize,
    mode: DepthToSpaceMode,
) -> Result<ArrayD<f32>, KernelError> {
    const OP: &str = "DepthToSpace";
    if x.ndim() != 4 {
        return Err(shape_err(OP, format!("input {:?} must be 4-D", x.shape())));
    }
    let b = blocksize;
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    if b == 0 || c % (b * b) != 0 {
        return Err(param_err(
            OP,
            "blocksize",
            format!("{b} does not divide channels {c} into blocksize² groups"),
        ));
    }
    let cp = c / (b * b);
    let out = [n, cp, h * b, w * b];
    match mode {
        DepthToSpaceMode::Dcr => {
            permute_reshape(OP, x, &[n, b, b, cp, h, w], &[0, 3, 4, 1, 5, 2], &out)
        }
        DepthToSpaceMode::Crd => {
            permute_reshape(OP, x, &[n, cp, b, b, h, w], &[0, 1, 4, 2, 5, 3], &out)
        }
    }
}

/// ONNX SpaceToDepth (inverse of DCR DepthToSpace): `[N, C, H, W]` → `[N, C·b², H/b, W/b]`.
pub fn space_to_depth(
    x: &ArrayViewD<'_, f32>,
    blocksize: usize,
) -> Result<ArrayD<f32>, KernelError> {
    const OP: &str = "SpaceToDepth";
    if x.ndim() != 4 {
        return Err(shape_err(OP, format!("input {:?} must be 4-D", x.shape())));
    }
    let b = blocksize;
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    if b == 0 || h % b != 0 || w % b != 0 {
        return Err(param_err(
            OP,
            "blocksize",
            format!("{b} does not divide spatial size {h}x{w}"),
        ));
    }
    permute_reshape(
        OP,
        x,
        &[n, c, h / b, b, w / b, b],
        &[0, 3, 5, 1, 2, 4],
        &[n, c * b * b, h / b, w / b],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iota(shape: &[usize]) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(shape.to_vec(), (0..n).map(|v| v as f32).collect()).expect("x")
    }

    #[test]
    fn depth_to_space_dcr_crd_index_rules() {
        let (b, cp, h, w) = (2usize, 3usize, 2usize, 3usize);
        let x = iota(&[1, cp * b * b, h, w]);
        let dcr = depth_to_space(&x.view(), b, DepthToSpaceMode::Dcr).expect("dcr");
        let crd = depth_to_space(&x.view(), b, DepthToSpaceMode::Crd).expect("crd");
        assert_eq!(dcr.shape(), &[1, cp, h * b, w * b]);
        for c in 0..cp {
            for y in 0..h * b {
                for xx in 0..w * b {
                    let (i, j) = (y % b, xx % b);
                    let (hh, ww) = (y / b, xx / b);
                    assert_eq!(dcr[[0, c, y, xx]], x[[0, (i * b + j) * cp + c, hh, ww]]);
                    assert_eq!(crd[[0, c, y, xx]], x[[0, c * b * b + i * b + j, hh, ww]]);
                }
            }
        }
        let back = space_to_depth(&dcr.view(), b).expect("s2d");
        assert_eq!(back, x);
        assert!(depth_to_space(&x.view(), 3, DepthToSpaceMode::Dcr).is_err());
    }
}
