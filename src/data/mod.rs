//! Calibration and evaluation data: `.npz` archives (one array per model input, optional integer
//! `labels`), `.npy` files for single-input models, and image folders with preprocessing.
//!
//! A [`Dataset`] is opened against the model's expected inputs ([`InputSpec`]), which are checked
//! up front (array present, element type, per-sample shape, equal lengths, non-empty). Sample
//! order is deterministic (array order; image files sorted by name) and subsets/splits are seeded
//! ([`select`]). [`Dataset::batches`] streams batches: only the rows of the current batch are in
//! memory, whatever the size of the file. Every error names the file and the array at fault.

pub mod image;
mod npy;
pub mod select;

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

pub use self::image::{
    load_image, Channels, ImageOptions, Layout, Normalize, Preprocess, Resample, IMAGENET_MEAN_STD,
};
use npy::ArrayStream;

/// Element type of a model input or a stored array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F16,
    F32,
    F64,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// NumPy name (`float32`, `uint8`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "float16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::I32 => "int32",
            DType::U32 => "uint32",
            DType::I64 => "int64",
            DType::U64 => "uint64",
            DType::Bool => "bool",
        }
    }

    /// Integer types (labels must be one).
    pub fn is_integer(self) -> bool {
        !matches!(self, DType::F16 | DType::F32 | DType::F64 | DType::Bool)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One dimension of a declared input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// Any size (symbolic or unknown).
    Dynamic,
}

/// A model input as the data must match it. Axis 0 is the sample (batch) axis: data arrays hold
/// samples along axis 0 and every other axis must match the declared fixed sizes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InputSpec {
    /// Input name (the key in a `.npz`).
    pub name: String,
    /// Element type the model expects; stored arrays must have exactly this type.
    pub dtype: DType,
    /// Declared shape including the batch axis.
    pub shape: Vec<Dim>,
}

impl InputSpec {
    /// Shape as text, dynamic dims as `?` (e.g. `[?, 3, 224, 224]`).
    pub fn shape_string(&self) -> String {
        let parts: Vec<String> = self
            .shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(v) => v.to_string(),
                Dim::Dynamic => "?".into(),
            })
            .collect();
        format!("[{}]", parts.join(", "))
    }

    /// Whether one sample of shape `sample` (without axis 0) fits the declared shape.
    pub fn accepts_sample(&self, sample: &[usize]) -> bool {
        self.shape.len() == sample.len() + 1
            && self.shape[1..].iter().zip(sample).all(|(d, &s)| match d {
                Dim::Fixed(v) => *v == s,
                Dim::Dynamic => true,
            })
    }
}

/// Errors of the data module; each names the file and, where relevant, the array and sample.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: unsupported data source ({reason})", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error("{}: array '{array}': {reason}", path.display())]
    BadArray {
        path: PathBuf,
        array: String,
        reason: String,
    },
    #[error("{}: no array '{array}' for the model input of that name (arrays present: {})", path.display(), available.join(", "))]
    MissingArray {
        path: PathBuf,
        array: String,
        available: Vec<String>,
    },
    #[error("{}: array '{array}' has dtype {found} but {expected} is required{hint}", path.display())]
    WrongDtype {
        path: PathBuf,
        array: String,
        found: DType,
        expected: String,
        hint: String,
    },
    #[error("{}: array '{array}' has shape {found:?}; model input '{input}' expects {expected} (axis 0 = samples)", path.display())]
    WrongShape {
        path: PathBuf,
        array: String,
        input: String,
        found: Vec<usize>,
        expected: String,
    },
    #[error("{}: array '{array}' has {found} samples but '{reference}' has {expected}", path.display())]
    LengthMismatch {
        path: PathBuf,
        array: String,
        found: usize,
        reference: String,
        expected: usize,
    },
    #[error("{}: the data set is empty (no samples{})", path.display(), if *selected { " selected" } else { "" })]
    Empty { path: PathBuf, selected: bool },
    #[error("{}: array '{array}', sample {sample}: non-finite value {value}", path.display())]
    NonFinite {
        path: PathBuf,
        array: String,
        sample: usize,
        value: f32,
    },
    #[error("{}: image: {reason}", path.display())]
    Image { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Inputs { path: PathBuf, reason: String },
    #[error("invalid data option: {reason}")]
    Options { reason: String },
}

/// One batch: model inputs by name (axis 0 = samples), labels when the data has them, and the
/// sample indices (in the full data set) it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub inputs: Vec<(String, ArrayD<f32>)>,
    pub labels: Option<Vec<i64>>,
    pub indices: Vec<usize>,
}

impl Batch {
    /// Number of samples in the batch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True for a batch without samples (never yielded by [`Dataset::batches`]).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The input called `name`.
    pub fn input(&self, name: &str) -> Option<&ArrayD<f32>> {
        self.inputs.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
}

#[derive(Debug, Clone)]
enum Source {
    /// Array names per input, in input order; labels array present.
    Npz {
        arrays: Vec<String>,
        labels: bool,
    },
    Npy,
    Images {
        files: Vec<PathBuf>,
        labels: Option<Vec<i64>>,
        prep: Preprocess,
    },
    /// Arrays held in memory, one per input in input order (e.g. a generated calibration set).
    Memory {
        arrays: std::sync::Arc<Vec<ArrayD<f32>>>,
    },
}

/// Name of the optional label array in a `.npz`.
pub const LABELS: &str = "labels";

/// A data set opened against a model's inputs, with a deterministic selection of samples.
#[derive(Debug, Clone)]
pub struct Dataset {
    path: PathBuf,
    inputs: Vec<InputSpec>,
    source: Source,
    total: usize,
    selected: Vec<usize>,
}

fn check_array(path: &Path, s: &ArrayStream, spec: &InputSpec) -> Result<(), DataError> {
    if s.header.dtype != spec.dtype {
        return Err(DataError::WrongDtype {
            path: path.into(),
            array: s.array.clone(),
            found: s.header.dtype,
            expected: format!("{} (model input '{}')", spec.dtype, spec.name),
            hint: format!(" (convert with .astype(np.{}))", spec.dtype.name()),
        });
    }
    if !spec.accepts_sample(&s.header.shape[1..]) {
        return Err(DataError::WrongShape {
            path: path.into(),
            array: s.array.clone(),
            input: spec.name.clone(),
            found: s.header.shape.clone(),
            expected: spec.shape_string(),
        });
    }
    Ok(())
}

fn check_labels(path: &Path, s: &ArrayStream, rows: usize, first: &str) -> Result<(), DataError> {
    if !s.header.dtype.is_integer() {
        return Err(DataError::WrongDtype {
            path: path.into(),
            array: s.array.clone(),
            found: s.header.dtype,
            expected: "an integer type".into(),
            hint: String::new(),
        });
    }
    let sh = &s.header.shape;
    if !(sh.len() == 1 || (sh.len() == 2 && sh[1] == 1)) {
        return Err(DataError::BadArray {
            path: path.into(),
            array: s.array.clone(),
            reason: format!("labels must have shape [N] or [N, 1], found {sh:?}"),
        });
    }
    if s.rows() != rows {
        return Err(DataError::LengthMismatch {
            path: path.into(),
            array: s.array.clone(),
            found: s.rows(),
            reference: first.into(),
            expected: rows,
        });
    }
    Ok(())
}

impl Dataset {
    /// Opens `path` for a model with `inputs`: a directory of images, a `.npz` or a `.npy`.
    /// `images` sets the image preprocessing (default: [`Preprocess::for_input`]).
    pub fn open(
        path: &Path,
        inputs: &[InputSpec],
        images: Option<Preprocess>,
    ) -> Result<Self, DataError> {
        if inputs.is_empty() {
            return Err(DataError::Inputs {
                path: path.into(),
                reason: "the model declares no inputs".into(),
            });
        }
        let meta = std::fs::metadata(path).map_err(|e| DataError::Io {
            path: path.into(),
            source: e,
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let single = |what: &str| -> Result<&InputSpec, DataError> {
            match inputs {
                [one] => Ok(one),
                _ => Err(DataError::Inputs {
                    path: path.into(),
                    reason: format!(
                        "{what} feeds a single input but the model has {} ({}); use a .npz \
                         keyed by input names",
                        inputs.len(),
                        inputs
                            .iter()
                            .map(|i| i.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
            }
        };
        let (source, total) = if meta.is_dir() {
            let spec = single("an image folder")?;
            if spec.dtype != DType::F32 {
                return Err(DataError::Inputs {
                    path: path.into(),
                    reason: format!(
                        "images can only feed a float32 input, '{}' is {}",
                        spec.name, spec.dtype
                    ),
                });
            }
            let prep = match images {
                Some(p) => p,
                None => Preprocess::for_input(spec)?,
            };
            let (files, labels) = image::list_folder(path)?;
            let n = files.len();
            (
                Source::Images {
                    files,
                    labels,
                    prep,
                },
                n,
            )
        } else {
            match ext.as_deref() {
                Some("npy") => {
                    let spec = single("a .npy file")?;
                    let s = ArrayStream::open_npy(path, &spec.name)?;
                    check_array(path, &s, spec)?;
                    (Source::Npy, s.rows())
                }
                Some("npz") => Self::open_npz(path, inputs)?,
                _ => {
                    return Err(DataError::Unsupported {
                        path: path.into(),
                        reason: "expected a .npz, a .npy or a folder of .jpg/.png images".into(),
                    })
                }
            }
        };
        if total == 0 {
            return Err(DataError::Empty {
                path: path.into(),
                selected: false,
            });
        }
        Ok(Self {
            path: path.into(),
            inputs: inputs.to_vec(),
            source,
            total,
            selected: (0..total).collect(),
        })
    }

    /// A data set over arrays already in memory (axis 0 = samples), one per model input keyed
    /// by input name; `name` stands in for the file name in error messages. The same checks as
    /// for files apply (every input present, float32 input, per-sample shape, equal lengths,
    /// non-empty, finite values).
    pub fn from_arrays(
        name: &str,
        inputs: &[InputSpec],
        arrays: Vec<(String, ArrayD<f32>)>,
    ) -> Result<Self, DataError> {
        let path = PathBuf::from(name);
        if inputs.is_empty() {
            return Err(DataError::Inputs {
                path,
                reason: "the model declares no inputs".into(),
            });
        }
        let mut ordered = Vec::with_capacity(inputs.len());
        let mut rows: Option<usize> = None;
        for spec in inputs {
            let Some((_, a)) = arrays.iter().find(|(n, _)| *n == spec.name) else {
                return Err(DataError::MissingArray {
                    path,
                    array: spec.name.clone(),
                    available: arrays.iter().map(|(n, _)| n.clone()).collect(),
                });
            };
            if spec.dtype != DType::F32 {
                return Err(DataError::WrongDtype {
                    path,
                    array: spec.name.clone(),
                    found: DType::F32,
                    expected: format!("{} (model input '{}')", spec.dtype, spec.name),
                    hint: String::new(),
                });
            }
            if a.ndim() == 0 || !spec.accepts_sample(&a.shape()[1..]) {
                return Err(DataError::WrongShape {
                    path,
                    array: spec.name.clone(),
                    input: spec.name.clone(),
                    found: a.shape().to_vec(),
                    expected: spec.shape_string(),
                });
            }
            let n = a.shape()[0];
            match rows {
                None => rows = Some(n),
                Some(r) if r != n => {
                    return Err(DataError::LengthMismatch {
                        path,
                        array: spec.name.clone(),
                        found: n,
                        reference: inputs[0].name.clone(),
                        expected: r,
                    })
                }
                Some(_) => {}
            }
            if let Some(k) = a.iter().position(|v| !v.is_finite()) {
                let per = (a.len() / n.max(1)).max(1);
                return Err(DataError::NonFinite {
                    path,
                    array: spec.name.clone(),
                    sample: k / per,
                    value: a.iter().nth(k).copied().unwrap_or(f32::NAN),
                });
            }
            ordered.push(a.as_standard_layout().into_owned());
        }
        let total = rows.unwrap_or(0);
        if total == 0 {
            return Err(DataError::Empty {
                path,
                selected: false,
            });
        }
        Ok(Self {
            path,
            inputs: inputs.to_vec(),
            source: Source::Memory {
                arrays: std::sync::Arc::new(ordered),
            },
            total,
            selected: (0..total).collect(),
        })
    }

    fn open_npz(path: &Path, inputs: &[InputSpec]) -> Result<(Source, usize), DataError> {
        let names = npy::npz_names_of(path)?;
        let data_names: Vec<&String> = names.iter().filter(|n| *n != LABELS).collect();
        let mut arrays = Vec::new();
        for spec in inputs {
            if names.contains(&spec.name) {
                arrays.push(spec.name.clone());
            } else if inputs.len() == 1 && data_names.len() == 1 {
                // `np.savez(f, x)` stores `arr_0`: accept the only array for a single input.
                arrays.push(data_names[0].clone());
            } else {
                return Err(DataError::MissingArray {
                    path: path.into(),
                    array: spec.name.clone(),
                    available: names.clone(),
                });
            }
        }
        let mut rows = None;
        for (spec, a) in inputs.iter().zip(&arrays) {
            let s = ArrayStream::open_npz(path, a)?;
            check_array(path, &s, spec)?;
            match rows {
                None => rows = Some(s.rows()),
                Some(r) if r != s.rows() => {
                    return Err(DataError::LengthMismatch {
                        path: path.into(),
                        array: a.clone(),
                        found: s.rows(),
                        reference: arrays[0].clone(),
                        expected: r,
                    })
                }
                Some(_) => {}
            }
        }
        let rows = rows.unwrap_or(0);
        let labels = names.iter().any(|n| n == LABELS) && !arrays.iter().any(|a| a == LABELS);
        if labels {
            let s = ArrayStream::open_npz(path, LABELS)?;
            check_labels(path, &s, rows, &arrays[0])?;
        }
        Ok((Source::Npz { arrays, labels }, rows))
    }

    /// The model inputs the data was checked against.
    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    /// The file or folder this data set reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of selected samples.
    pub fn len(&self) -> usize {
        self.selected.len()
    }

    /// True when no sample is selected.
    pub fn is_empty(&self) -> bool {
        self.selected.is_empty()
    }

    /// Number of samples in the source.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Selected sample indices (increasing).
    pub fn indices(&self) -> &[usize] {
        &self.selected
    }

    /// Whether batches carry labels.
    pub fn has_labels(&self) -> bool {
        match &self.source {
            Source::Npz { labels, .. } => *labels,
            Source::Npy => false,
            Source::Images { labels, .. } => labels.is_some(),
            Source::Memory { .. } => false,
        }
    }

    /// Keeps `samples` of the currently selected samples: the first ones without a seed, a
    /// seeded random subset otherwise (see [`select::subset`]).
    pub fn select(&mut self, samples: usize, seed: Option<u64>) {
        let keep = select::subset(self.selected.len(), samples, seed);
        self.selected = keep.into_iter().map(|k| self.selected[k]).collect();
    }

    /// Splits the selection into two disjoint data sets of `first` and the remaining samples
    /// (e.g. calibration and evaluation), seeded as in [`select::split`].
    pub fn split(&self, first: usize, seed: Option<u64>) -> (Dataset, Dataset) {
        let (a, b) = select::split(self.selected.len(), first, seed);
        let mut da = self.clone();
        let mut db = self.clone();
        da.selected = a.into_iter().map(|k| self.selected[k]).collect();
        db.selected = b.into_iter().map(|k| self.selected[k]).collect();
        (da, db)
    }

    /// Streams the selected samples in batches of `batch_size` (the last may be smaller).
    pub fn batches(&self, batch_size: usize) -> Result<Batches<'_>, DataError> {
        if batch_size == 0 {
            return Err(DataError::Options {
                reason: "batch size must be at least 1".into(),
            });
        }
        if self.selected.is_empty() {
            return Err(DataError::Empty {
                path: self.path.clone(),
                selected: true,
            });
        }
        let mut streams = Vec::new();
        let mut labels = None;
        match &self.source {
            Source::Npz { arrays, labels: l } => {
                for a in arrays {
                    streams.push(ArrayStream::open_npz(&self.path, a)?);
                }
                if *l {
                    labels = Some(ArrayStream::open_npz(&self.path, LABELS)?);
                }
            }
            Source::Npy => streams.push(ArrayStream::open_npy(&self.path, &self.inputs[0].name)?),
            Source::Images { .. } | Source::Memory { .. } => {}
        }
        Ok(Batches {
            ds: self,
            batch_size,
            pos: 0,
            streams,
            labels,
        })
    }
}

/// Iterator over batches of a [`Dataset`]; yields `Err` once on the first failure, then stops.
pub struct Batches<'a> {
    ds: &'a Dataset,
    batch_size: usize,
    pos: usize,
    streams: Vec<ArrayStream>,
    labels: Option<ArrayStream>,
}

impl Batches<'_> {
    fn next_batch(&mut self, rows: &[usize]) -> Result<Batch, DataError> {
        let ds = self.ds;
        let mut inputs = Vec::with_capacity(ds.inputs.len());
        let mut labels = None;
        match &ds.source {
            Source::Images {
                files,
                labels: l,
                prep,
            } => {
                let spec = &ds.inputs[0];
                // Decode in parallel; results keep row order and the first failing row (in
                // order) is reported, so output and errors do not depend on the thread count.
                let decoded: Vec<Result<ndarray::Array3<f32>, DataError>> = rows
                    .par_iter()
                    .map(|&r| load_image(&files[r], prep))
                    .collect();
                let mut imgs = Vec::with_capacity(rows.len());
                for (&r, img) in rows.iter().zip(decoded) {
                    let img = img?;
                    if !spec.accepts_sample(img.shape()) {
                        return Err(DataError::Image {
                            path: files[r].clone(),
                            reason: format!(
                                "preprocessed to {:?} but model input '{}' expects {} \
                                 (adjust resize/crop/layout)",
                                img.shape(),
                                spec.name,
                                spec.shape_string()
                            ),
                        });
                    }
                    imgs.push(img);
                }
                let arr = image::stack(imgs).ok_or_else(|| DataError::Image {
                    path: ds.path.clone(),
                    reason: "images of one batch have different shapes".into(),
                })?;
                inputs.push((spec.name.clone(), arr));
                if let Some(l) = l {
                    labels = Some(rows.iter().map(|&r| l[r]).collect());
                }
            }
            Source::Memory { arrays } => {
                for (spec, a) in ds.inputs.iter().zip(arrays.iter()) {
                    inputs.push((spec.name.clone(), a.select(ndarray::Axis(0), rows)));
                }
            }
            Source::Npz { .. } | Source::Npy => {
                for (spec, s) in ds.inputs.iter().zip(&mut self.streams) {
                    let data = s.read_f32(rows)?;
                    if let Some(k) = data.iter().position(|v| !v.is_finite()) {
                        let per = data.len() / rows.len();
                        return Err(DataError::NonFinite {
                            path: ds.path.clone(),
                            array: s.array.clone(),
                            sample: rows[k / per.max(1)],
                            value: data[k],
                        });
                    }
                    let mut shape = vec![rows.len()];
                    shape.extend_from_slice(&s.header.shape[1..]);
                    let arr = ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| {
                        DataError::BadArray {
                            path: ds.path.clone(),
                            array: s.array.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                    inputs.push((spec.name.clone(), arr));
                }
                if let Some(l) = &mut self.labels {
                    labels = Some(l.read_i64(rows)?);
                }
            }
        }
        Ok(Batch {
            inputs,
            labels,
            indices: rows.to_vec(),
        })
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let sel = &self.ds.selected;
        if self.pos >= sel.len() {
            return None;
        }
        let end = (self.pos + self.batch_size).min(sel.len());
        let rows = sel[self.pos..end].to_vec();
        let r = self.next_batch(&rows);
        // Stop after an error so callers using `collect`/`?` see it once.
        self.pos = if r.is_err() { sel.len() } else { end };
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.ds.selected.len().saturating_sub(self.pos);
        let n = left.div_ceil(self.batch_size);
        (n, Some(n))
    }
}

#[cfg(test)]
mod tests;
