//! Image folders: deterministic listing and torchvision-style preprocessing (resize of the
//! shorter side, centre crop, normalisation, channel order, layout).

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use ndarray::{Array3, ArrayD, IxDyn};

use super::{DataError, Dim, InputSpec};

/// Interpolation for resizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resample {
    /// Triangle filter (bilinear; widened when downsampling, like Pillow).
    #[default]
    Bilinear,
    /// Catmull–Rom cubic.
    Bicubic,
}

/// Pixel normalisation. Pixels start as `v` in `0..=255`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Normalize {
    /// `(v/255 − mean[c]) / std[c]` per channel (in the output channel order's RGB meaning:
    /// `mean[0]` is red also for BGR output; grayscale uses index 0).
    MeanStd { mean: [f32; 3], std: [f32; 3] },
    /// `v · scale + offset` (e.g. scale 1/255, offset 0 for `[0, 1]`; scale 1/127.5, offset −1
    /// for `[−1, 1]`).
    Affine { scale: f32, offset: f32 },
}

/// ImageNet mean/std as used by torchvision.
pub const IMAGENET_MEAN_STD: Normalize = Normalize::MeanStd {
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
};

/// Channel order of the output tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channels {
    #[default]
    Rgb,
    Bgr,
    /// One luma channel (ITU-R 601 weights, as the `image` crate computes it).
    Gray,
}

/// Tensor layout of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    #[default]
    Nchw,
    Nhwc,
}

/// Preprocessing applied to every image, in this order: decode, convert to RGB or gray, resize
/// the shorter side, centre crop, normalise, lay out.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preprocess {
    /// Resize so the shorter side has this many pixels (aspect ratio kept, longer side
    /// `floor(s · long / short)` as in torchvision).
    pub resize_shorter: Option<u32>,
    /// Interpolation of the resize.
    pub resample: Resample,
    /// Centre crop `(height, width)`; offsets are `round((size − crop) / 2)` with ties to even,
    /// like torchvision.
    pub crop: Option<(u32, u32)>,
    /// Pixel normalisation.
    pub normalize: Normalize,
    /// Channel order.
    pub channels: Channels,
    /// Output layout.
    pub layout: Layout,
}

impl Preprocess {
    /// The usual ImageNet evaluation transform for an `h × w` input: resize the shorter side to
    /// `round(h / 0.875)`, centre crop `h × w`, ImageNet mean/std, RGB, NCHW.
    pub fn imagenet(h: u32, w: u32) -> Self {
        Self {
            resize_shorter: Some((f64::from(h) / 0.875).round() as u32),
            resample: Resample::Bilinear,
            crop: Some((h, w)),
            normalize: IMAGENET_MEAN_STD,
            channels: Channels::Rgb,
            layout: Layout::Nchw,
        }
    }

    /// Defaults derived from a rank-4 model input: layout from where the 1- or 3-channel axis
    /// is (axis 1 → NCHW, axis 3 → NHWC), gray for 1 channel, and the ImageNet transform for
    /// its fixed spatial size. Spatial dims must be fixed.
    pub fn for_input(spec: &InputSpec) -> Result<Self, DataError> {
        let fixed = |d: &Dim| match d {
            Dim::Fixed(v) => Some(*v),
            Dim::Dynamic => None,
        };
        let dims: Vec<Option<usize>> = spec.shape.iter().map(fixed).collect();
        let bad = || DataError::Options {
            reason: format!(
                "model input '{}' with shape {} is not an image batch [N,C,H,W] or [N,H,W,C] \
                 with C = 1 or 3 and fixed H, W",
                spec.name,
                spec.shape_string()
            ),
        };
        if dims.len() != 4 {
            return Err(bad());
        }
        let (layout, c, h, w) = match (dims[1], dims[3]) {
            (Some(c @ (1 | 3)), _) => (Layout::Nchw, c, dims[2], dims[3]),
            (_, Some(c @ (1 | 3))) => (Layout::Nhwc, c, dims[1], dims[2]),
            _ => return Err(bad()),
        };
        let (Some(h), Some(w)) = (h, w) else {
            return Err(bad());
        };
        let mut p = Self::imagenet(h as u32, w as u32);
        p.layout = layout;
        if c == 1 {
            p.channels = Channels::Gray;
            p.normalize = Normalize::Affine {
                scale: 1.0 / 255.0,
                offset: 0.0,
            };
        }
        Ok(p)
    }

    /// Number of output channels.
    pub fn channel_count(&self) -> usize {
        if self.channels == Channels::Gray {
            1
        } else {
            3
        }
    }
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .is_some_and(|e| matches!(e.as_str(), "jpg" | "jpeg" | "png"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|e| DataError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        v.push(e.path());
    }
    v.sort();
    Ok(v)
}

/// Lists a folder: its `.jpg/.jpeg/.png` files sorted by name, without labels; or, when it
/// holds no image file but subfolders, the images of each subfolder with the label = index of
/// the subfolder in name order (the ImageNet `train/<wnid>/` convention).
pub(crate) fn list_folder(dir: &Path) -> Result<(Vec<PathBuf>, Option<Vec<i64>>), DataError> {
    let entries = sorted_entries(dir)?;
    let files: Vec<PathBuf> = entries
        .iter()
        .filter(|p| p.is_file() && is_image(p))
        .cloned()
        .collect();
    if !files.is_empty() {
        return Ok((files, None));
    }
    let mut files = Vec::new();
    let mut labels = Vec::new();
    let subdirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    for (class, sub) in subdirs.iter().enumerate() {
        for f in sorted_entries(sub)? {
            if f.is_file() && is_image(&f) {
                files.push(f);
                labels.push(class as i64);
            }
        }
    }
    Ok((
        files,
        if subdirs.is_empty() {
            None
        } else {
            Some(labels)
        },
    ))
}

fn img_err(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Image {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Decodes and preprocesses one image into `[C, H, W]` (NCHW) or `[H, W, C]` (NHWC).
pub fn load_image(path: &Path, p: &Preprocess) -> Result<Array3<f32>, DataError> {
    let img = image::ImageReader::open(path)
        .map_err(|e| img_err(path, e.to_string()))?
        .with_guessed_format()
        .map_err(|e| img_err(path, e.to_string()))?
        .decode()
        .map_err(|e| img_err(path, e.to_string()))?;
    let filter = match p.resample {
        Resample::Bilinear => FilterType::Triangle,
        Resample::Bicubic => FilterType::CatmullRom,
    };
    let mut img = if p.channels == Channels::Gray {
        image::DynamicImage::ImageLuma8(img.to_luma8())
    } else {
        image::DynamicImage::ImageRgb8(img.to_rgb8())
    };
    if let Some(s) = p.resize_shorter {
        if s == 0 {
            return Err(img_err(path, "resize size must be positive"));
        }
        let (w, h) = (img.width(), img.height());
        // torchvision: the longer side becomes floor(s · long / short).
        let (nw, nh) = if w <= h {
            (s, (u64::from(h) * u64::from(s) / u64::from(w)) as u32)
        } else {
            ((u64::from(w) * u64::from(s) / u64::from(h)) as u32, s)
        };
        if (nw, nh) != (w, h) {
            img = img.resize_exact(nw, nh, filter);
        }
    }
    if let Some((ch, cw)) = p.crop {
        let (w, h) = (img.width(), img.height());
        if ch > h || cw > w {
            return Err(img_err(
                path,
                format!("centre crop {ch}x{cw} is larger than the image ({h}x{w} after resizing)"),
            ));
        }
        // torchvision: int(round((size − crop) / 2)), Python rounding = ties to even.
        let top = (f64::from(h - ch) / 2.0).round_ties_even() as u32;
        let left = (f64::from(w - cw) / 2.0).round_ties_even() as u32;
        img = img.crop_imm(left, top, cw, ch);
    }
    let (w, h) = (img.width() as usize, img.height() as usize);
    let c = p.channel_count();
    let px: Vec<u8> = if c == 1 {
        img.to_luma8().into_raw()
    } else {
        img.to_rgb8().into_raw()
    };
    let norm = |v: u8, rgb_channel: usize| -> f32 {
        let v = f32::from(v);
        match p.normalize {
            Normalize::MeanStd { mean, std } => (v / 255.0 - mean[rgb_channel]) / std[rgb_channel],
            Normalize::Affine { scale, offset } => v * scale + offset,
        }
    };
    // Output channel k takes source RGB channel src[k].
    let src: [usize; 3] = match p.channels {
        Channels::Bgr => [2, 1, 0],
        _ => [0, 1, 2],
    };
    let shape = match p.layout {
        Layout::Nchw => [c, h, w],
        Layout::Nhwc => [h, w, c],
    };
    let mut out = Array3::<f32>::zeros(shape);
    for y in 0..h {
        for x in 0..w {
            for (k, &s) in src.iter().enumerate().take(c) {
                let v = norm(px[(y * w + x) * c + s], s);
                match p.layout {
                    Layout::Nchw => out[[k, y, x]] = v,
                    Layout::Nhwc => out[[y, x, k]] = v,
                }
            }
        }
    }
    Ok(out)
}

/// Stacks preprocessed images of one shape into one batch `[N, …]` (`None` if shapes differ).
pub(crate) fn stack(images: Vec<Array3<f32>>) -> Option<ArrayD<f32>> {
    let per: Vec<usize> = images.first().map_or(vec![0, 0, 0], |a| a.shape().to_vec());
    let mut shape = vec![images.len()];
    shape.extend(&per);
    let data: Vec<f32> = images.into_iter().flat_map(|a| a.into_iter()).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), data).ok()
}

/// Image preprocessing as the command line (`--resize`, `--crop`, …) and the recipe's `[images]`
/// table give it. Unset fields keep the defaults [`Preprocess::for_input`] derives from the model
/// input (ImageNet transform for its size, layout and channel count from its shape).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageOptions {
    /// Resize the shorter side to this many pixels (0 = no resize).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize: Option<u32>,
    /// Interpolation of the resize.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resample: Option<Resample>,
    /// Centre crop: `[size]` (square) or `[height, width]`; `[0]` = no crop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop: Option<Vec<u32>>,
    /// Per-channel mean of `v/255` in RGB order (3 values, or 1 for all channels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation of `v/255` in RGB order (3 values, or 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f32>>,
    /// Affine normalisation `v · scale + offset` on `0..=255` pixels: the scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<f32>,
    /// Affine normalisation: the offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<f32>,
    /// Channel order of the tensor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Channels>,
    /// Tensor layout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
}

fn opt_err(reason: impl Into<String>) -> DataError {
    DataError::Options {
        reason: reason.into(),
    }
}

fn three(what: &str, v: &[f32]) -> Result<[f32; 3], DataError> {
    match v {
        [a] => Ok([*a; 3]),
        [a, b, c] => Ok([*a, *b, *c]),
        _ => Err(opt_err(format!(
            "image {what} needs 1 or 3 values, got {}",
            v.len()
        ))),
    }
}

impl ImageOptions {
    /// True when no option is set (the model-derived defaults apply).
    pub fn is_empty(&self) -> bool {
        *self == ImageOptions::default()
    }

    /// These options with every field set in `over` replaced by `over`'s value (flags over a
    /// recipe file).
    pub fn overridden_by(&self, over: &ImageOptions) -> ImageOptions {
        ImageOptions {
            resize: over.resize.or(self.resize),
            resample: over.resample.or(self.resample),
            crop: over.crop.clone().or_else(|| self.crop.clone()),
            mean: over.mean.clone().or_else(|| self.mean.clone()),
            std: over.std.clone().or_else(|| self.std.clone()),
            scale: over.scale.or(self.scale),
            offset: over.offset.or(self.offset),
            channels: over.channels.or(self.channels),
            layout: over.layout.or(self.layout),
        }
    }

    /// The preprocessing for the model input `spec`: [`Preprocess::for_input`] (or, for an input
    /// whose shape does not say, no resize/crop, ImageNet mean/std, RGB, NCHW) with these
    /// options applied. Mean/std and scale/offset are exclusive.
    pub fn resolve(&self, spec: &InputSpec) -> Result<Preprocess, DataError> {
        let mut p = match Preprocess::for_input(spec) {
            Ok(p) => p,
            Err(e) if self.is_empty() => return Err(e),
            Err(_) => Preprocess {
                resize_shorter: None,
                resample: Resample::Bilinear,
                crop: None,
                normalize: IMAGENET_MEAN_STD,
                channels: Channels::Rgb,
                layout: Layout::Nchw,
            },
        };
        if let Some(r) = self.resize {
            p.resize_shorter = (r > 0).then_some(r);
        }
        if let Some(r) = self.resample {
            p.resample = r;
        }
        if let Some(c) = &self.crop {
            p.crop = match c.as_slice() {
                [0] => None,
                [s] => Some((*s, *s)),
                [h, w] if *h > 0 && *w > 0 => Some((*h, *w)),
                _ => {
                    return Err(opt_err(format!(
                    "image crop must be [size] or [height, width] with positive sizes, got {c:?}"
                )))
                }
            };
        }
        if let Some(c) = self.channels {
            p.channels = c;
        }
        if let Some(l) = self.layout {
            p.layout = l;
        }
        let mean_std = self.mean.is_some() || self.std.is_some();
        let affine = self.scale.is_some() || self.offset.is_some();
        if mean_std && affine {
            return Err(opt_err(
                "give either mean/std or scale/offset image normalisation, not both",
            ));
        }
        if mean_std {
            let mean = three("mean", self.mean.as_deref().unwrap_or(&[0.0]))?;
            let std = three("std", self.std.as_deref().unwrap_or(&[1.0]))?;
            if std.iter().any(|s| !(s.is_finite() && *s != 0.0))
                || mean.iter().any(|m| !m.is_finite())
            {
                return Err(opt_err(format!(
                    "image mean {mean:?} / std {std:?} must be finite with non-zero std"
                )));
            }
            p.normalize = Normalize::MeanStd { mean, std };
        } else if affine {
            let scale = self.scale.unwrap_or(1.0);
            let offset = self.offset.unwrap_or(0.0);
            if !(scale.is_finite() && offset.is_finite()) {
                return Err(opt_err("image scale and offset must be finite"));
            }
            p.normalize = Normalize::Affine { scale, offset };
        }
        Ok(p)
    }

    /// The preprocessing to open `path` with: `None` unless `path` is an image folder, else
    /// the resolved options for the model's single input (the data module reports a model with
    /// several inputs).
    pub fn for_data(
        &self,
        path: &Path,
        inputs: &[InputSpec],
    ) -> Result<Option<Preprocess>, DataError> {
        match inputs {
            [one] if path.is_dir() => self.resolve(one).map(Some),
            _ => Ok(None),
        }
    }
}
