//! Typed n-dimensional tensors as the interpreter and the IR see them.
//!
//! Compute types (f32, f64, i64, i32, i8, u8, bool) are ndarray arrays; every other ONNX element
//! type (f16, bf16, fp8, 4-bit and 2-bit formats, the wider unsigned types, strings) is kept as
//! packed little-endian bytes exactly as stored in the model, so constants of those types survive
//! import → export bit for bit and are decoded only when an op asks for numbers.

use ndarray::{ArrayD, IxDyn};

/// ONNX element types, numbered as `TensorProto.DataType` (including 23–26, which the protobuf
/// crate's enum lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    U8,
    I8,
    U16,
    I16,
    I32,
    I64,
    Str,
    Bool,
    F16,
    F64,
    U32,
    U64,
    Bf16,
    F8E4M3Fn,
    F8E4M3Fnuz,
    F8E5M2,
    F8E5M2Fnuz,
    U4,
    I4,
    F4E2M1,
    F8E8M0,
    U2,
    I2,
}

impl DType {
    /// The `TensorProto.DataType` code.
    pub fn code(self) -> i32 {
        use DType::*;
        match self {
            F32 => 1,
            U8 => 2,
            I8 => 3,
            U16 => 4,
            I16 => 5,
            I32 => 6,
            I64 => 7,
            Str => 8,
            Bool => 9,
            F16 => 10,
            F64 => 11,
            U32 => 12,
            U64 => 13,
            Bf16 => 16,
            F8E4M3Fn => 17,
            F8E4M3Fnuz => 18,
            F8E5M2 => 19,
            F8E5M2Fnuz => 20,
            U4 => 21,
            I4 => 22,
            F4E2M1 => 23,
            F8E8M0 => 24,
            U2 => 25,
            I2 => 26,
        }
    }

    /// Parses a `TensorProto.DataType` code; `None` for undefined/complex/unknown codes.
    pub fn from_code(c: i32) -> Option<DType> {
        use DType::*;
        Some(match c {
            1 => F32,
            2 => U8,
            3 => I8,
            4 => U16,
            5 => I16,
            6 => I32,
            7 => I64,
            8 => Str,
            9 => Bool,
            10 => F16,
            11 => F64,
            12 => U32,
            13 => U64,
            16 => Bf16,
            17 => F8E4M3Fn,
            18 => F8E4M3Fnuz,
            19 => F8E5M2,
            20 => F8E5M2Fnuz,
            21 => U4,
            22 => I4,
            23 => F4E2M1,
            24 => F8E8M0,
            25 => U2,
            26 => I2,
            _ => return None,
        })
    }

    /// Bits per element in packed storage (strings: 0, they are stored element-wise).
    pub fn bits(self) -> usize {
        use DType::*;
        match self {
            F64 | I64 | U64 => 64,
            F32 | I32 | U32 => 32,
            F16 | Bf16 | I16 | U16 => 16,
            U8 | I8 | Bool | F8E4M3Fn | F8E4M3Fnuz | F8E5M2 | F8E5M2Fnuz | F8E8M0 => 8,
            U4 | I4 | F4E2M1 => 4,
            U2 | I2 => 2,
            Str => 0,
        }
    }

    /// Bytes needed to store `n` elements packed (sub-byte types pack low nibble/bits first).
    pub fn packed_len(self, n: usize) -> usize {
        (n * self.bits()).div_ceil(8)
    }

    /// Lower-case ONNX-style name, used in messages and dumps.
    pub fn name(self) -> &'static str {
        use DType::*;
        match self {
            F32 => "float32",
            U8 => "uint8",
            I8 => "int8",
            U16 => "uint16",
            I16 => "int16",
            I32 => "int32",
            I64 => "int64",
            Str => "string",
            Bool => "bool",
            F16 => "float16",
            F64 => "float64",
            U32 => "uint32",
            U64 => "uint64",
            Bf16 => "bfloat16",
            F8E4M3Fn => "float8e4m3fn",
            F8E4M3Fnuz => "float8e4m3fnuz",
            F8E5M2 => "float8e5m2",
            F8E5M2Fnuz => "float8e5m2fnuz",
            U4 => "uint4",
            I4 => "int4",
            F4E2M1 => "float4e2m1",
            F8E8M0 => "float8e8m0",
            U2 => "uint2",
            I2 => "int2",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for tensor conversions and construction.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TensorError {
    #[error("shape {shape:?} needs {expected} elements but {got} were given")]
    ElementCount {
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("cannot use a {0} tensor as numbers")]
    NotNumeric(DType),
    #[error("packed {dtype} data for shape {shape:?} has {got} bytes, expected {expected}")]
    PackedLength {
        dtype: DType,
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
}

/// A tensor value. Compute types are ndarray arrays; all other element types are packed bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    I64(ArrayD<i64>),
    I32(ArrayD<i32>),
    I8(ArrayD<i8>),
    U8(ArrayD<u8>),
    Bool(ArrayD<bool>),
    /// Packed little-endian storage of any other element type (strings: one entry per element
    /// in `strings`, `data` empty).
    Packed {
        dtype: DType,
        shape: Vec<usize>,
        data: Vec<u8>,
        strings: Vec<Vec<u8>>,
    },
}

impl Tensor {
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
            Tensor::I64(_) => DType::I64,
            Tensor::I32(_) => DType::I32,
            Tensor::I8(_) => DType::I8,
            Tensor::U8(_) => DType::U8,
            Tensor::Bool(_) => DType::Bool,
            Tensor::Packed { dtype, .. } => *dtype,
        }
    }

    /// Shape in elements.
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::F64(a) => a.shape(),
            Tensor::I64(a) => a.shape(),
            Tensor::I32(a) => a.shape(),
            Tensor::I8(a) => a.shape(),
            Tensor::U8(a) => a.shape(),
            Tensor::Bool(a) => a.shape(),
            Tensor::Packed { shape, .. } => shape,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An f32 tensor from a shape and row-major data.
    pub fn f32(shape: &[usize], data: Vec<f32>) -> Result<Tensor, TensorError> {
        Ok(Tensor::F32(make_array(shape, data)?))
    }

    /// An i64 tensor from a shape and row-major data.
    pub fn i64(shape: &[usize], data: Vec<i64>) -> Result<Tensor, TensorError> {
        Ok(Tensor::I64(make_array(shape, data)?))
    }

    /// A scalar f32.
    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor::F32(ArrayD::from_elem(IxDyn(&[]), v))
    }

    /// A 1-D i64 tensor.
    pub fn vec_i64(v: Vec<i64>) -> Tensor {
        let n = v.len();
        Tensor::I64(
            ArrayD::from_shape_vec(IxDyn(&[n]), v).unwrap_or_else(|_| ArrayD::zeros(IxDyn(&[0]))),
        )
    }

    /// A zero-filled tensor of a compute dtype (`None` for packed dtypes).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Option<Tensor> {
        let s = IxDyn(shape);
        Some(match dtype {
            DType::F32 => Tensor::F32(ArrayD::zeros(s)),
            DType::F64 => Tensor::F64(ArrayD::zeros(s)),
            DType::I64 => Tensor::I64(ArrayD::zeros(s)),
            DType::I32 => Tensor::I32(ArrayD::zeros(s)),
            DType::I8 => Tensor::I8(ArrayD::zeros(s)),
            DType::U8 => Tensor::U8(ArrayD::zeros(s)),
            DType::Bool => Tensor::Bool(ArrayD::from_elem(s, false)),
            _ => return None,
        })
    }

    /// Builds a tensor of `dtype` from packed little-endian bytes (the `raw_data` layout). Compute
    /// types become arrays; others stay packed.
    pub fn from_le_bytes(
        dtype: DType,
        shape: &[usize],
        bytes: &[u8],
    ) -> Result<Tensor, TensorError> {
        let n: usize = shape.iter().product();
        let expected = dtype.packed_len(n);
        if dtype == DType::Str || bytes.len() != expected {
            return Err(TensorError::PackedLength {
                dtype,
                shape: shape.to_vec(),
                expected,
                got: bytes.len(),
            });
        }
        fn chunks<const N: usize, T>(b: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
            b.chunks_exact(N)
                .map(|c| {
                    let mut a = [0u8; N];
                    a.copy_from_slice(c);
                    f(a)
                })
                .collect()
        }
        Ok(match dtype {
            DType::F32 => Tensor::F32(make_array(shape, chunks(bytes, f32::from_le_bytes))?),
            DType::F64 => Tensor::F64(make_array(shape, chunks(bytes, f64::from_le_bytes))?),
            DType::I64 => Tensor::I64(make_array(shape, chunks(bytes, i64::from_le_bytes))?),
            DType::I32 => Tensor::I32(make_array(shape, chunks(bytes, i32::from_le_bytes))?),
            DType::I8 => Tensor::I8(make_array(shape, bytes.iter().map(|&b| b as i8).collect())?),
            DType::U8 => Tensor::U8(make_array(shape, bytes.to_vec())?),
            DType::Bool => {
                Tensor::Bool(make_array(shape, bytes.iter().map(|&b| b != 0).collect())?)
            }
            _ => Tensor::Packed {
                dtype,
                shape: shape.to_vec(),
                data: bytes.to_vec(),
                strings: Vec::new(),
            },
        })
    }

    /// Packed little-endian bytes (the `raw_data` layout). Empty for strings.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Tensor::F32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Tensor::F64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Tensor::I64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Tensor::I32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Tensor::I8(a) => a.iter().map(|&v| v as u8).collect(),
            Tensor::U8(a) => a.iter().copied().collect(),
            Tensor::Bool(a) => a.iter().map(|&v| v as u8).collect(),
            Tensor::Packed { data, .. } => data.clone(),
        }
    }

    /// Every element as f64 in row-major order (packed types decoded; strings are an error).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>, TensorError> {
        Ok(match self {
            Tensor::F32(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::F64(a) => a.iter().copied().collect(),
            Tensor::I64(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::I32(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::I8(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::U8(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::Bool(a) => a.iter().map(|&v| v as u8 as f64).collect(),
            Tensor::Packed {
                dtype, shape, data, ..
            } => decode_packed(*dtype, shape.iter().product(), data)?,
        })
    }

    /// Converts to an f32 array (any numeric dtype; packed types decoded).
    pub fn to_f32(&self) -> Result<ArrayD<f32>, TensorError> {
        match self {
            Tensor::F32(a) => Ok(a.clone()),
            Tensor::F64(a) => Ok(a.mapv(|v| v as f32)),
            Tensor::I64(a) => Ok(a.mapv(|v| v as f32)),
            Tensor::I32(a) => Ok(a.mapv(|v| v as f32)),
            Tensor::I8(a) => Ok(a.mapv(|v| v as f32)),
            Tensor::U8(a) => Ok(a.mapv(|v| v as f32)),
            Tensor::Bool(a) => Ok(a.mapv(|v| v as u8 as f32)),
            Tensor::Packed { shape, .. } => {
                let v: Vec<f32> = self.to_f64_vec()?.into_iter().map(|x| x as f32).collect();
                make_array(shape, v)
            }
        }
    }

    /// Converts to an i64 array (floats truncate toward zero, as Cast does).
    pub fn to_i64(&self) -> Result<ArrayD<i64>, TensorError> {
        match self {
            Tensor::I64(a) => Ok(a.clone()),
            Tensor::I32(a) => Ok(a.mapv(|v| v as i64)),
            Tensor::I8(a) => Ok(a.mapv(|v| v as i64)),
            Tensor::U8(a) => Ok(a.mapv(|v| v as i64)),
            Tensor::Bool(a) => Ok(a.mapv(|v| v as i64)),
            Tensor::F32(a) => Ok(a.mapv(|v| v as i64)),
            Tensor::F64(a) => Ok(a.mapv(|v| v as i64)),
            Tensor::Packed { shape, .. } => {
                let v: Vec<i64> = self.to_f64_vec()?.into_iter().map(|x| x as i64).collect();
                make_array(shape, v)
            }
        }
    }

    /// Borrow as f32 when the tensor already is f32.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Some(a),
            _ => None,
        }
    }

    /// Returns a copy with a new shape (same element count, row-major order).
    pub fn reshaped(&self, shape: &[usize]) -> Result<Tensor, TensorError> {
        self.clone().into_reshaped(shape)
    }

    /// Like [`Tensor::reshaped`] but consumes the tensor: an array in standard (row-major,
    /// contiguous) layout is reshaped without copying its data.
    pub fn into_reshaped(self, shape: &[usize]) -> Result<Tensor, TensorError> {
        fn rs<T: Clone>(a: ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, TensorError> {
            let n: usize = shape.iter().product();
            if n != a.len() {
                return Err(TensorError::ElementCount {
                    shape: shape.to_vec(),
                    expected: n,
                    got: a.len(),
                });
            }
            if a.is_standard_layout() {
                let got = a.len();
                return a.into_shape_with_order(ndarray::IxDyn(shape)).map_err(|_| {
                    TensorError::ElementCount {
                        shape: shape.to_vec(),
                        expected: n,
                        got,
                    }
                });
            }
            make_array(shape, a.iter().cloned().collect())
        }
        Ok(match self {
            Tensor::F32(a) => Tensor::F32(rs(a, shape)?),
            Tensor::F64(a) => Tensor::F64(rs(a, shape)?),
            Tensor::I64(a) => Tensor::I64(rs(a, shape)?),
            Tensor::I32(a) => Tensor::I32(rs(a, shape)?),
            Tensor::I8(a) => Tensor::I8(rs(a, shape)?),
            Tensor::U8(a) => Tensor::U8(rs(a, shape)?),
            Tensor::Bool(a) => Tensor::Bool(rs(a, shape)?),
            Tensor::Packed {
                dtype,
                shape: old,
                data,
                strings,
            } => {
                let n: usize = shape.iter().product();
                let m: usize = old.iter().product();
                if n != m {
                    return Err(TensorError::ElementCount {
                        shape: shape.to_vec(),
                        expected: n,
                        got: m,
                    });
                }
                Tensor::Packed {
                    dtype,
                    shape: shape.to_vec(),
                    data,
                    strings,
                }
            }
        })
    }
}

/// Builds an ArrayD from a shape and row-major data, checking the element count.
pub fn make_array<T>(shape: &[usize], data: Vec<T>) -> Result<ArrayD<T>, TensorError> {
    let expected: usize = shape.iter().product();
    let got = data.len();
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|_| TensorError::ElementCount {
        shape: shape.to_vec(),
        expected,
        got,
    })
}

/// Decodes `n` elements of packed storage to f64. Float8/float4/e8m0 follow the OCP and ONNX
/// definitions (NaN encodings decode to NaN; FN types have no infinities).
pub fn decode_packed(dtype: DType, n: usize, data: &[u8]) -> Result<Vec<f64>, TensorError> {
    let need = dtype.packed_len(n);
    if data.len() < need {
        return Err(TensorError::PackedLength {
            dtype,
            shape: vec![n],
            expected: need,
            got: data.len(),
        });
    }
    let u16s = |i: usize| u16::from_le_bytes([data[2 * i], data[2 * i + 1]]);
    let nib = |i: usize| (data[i / 2] >> (4 * (i % 2))) & 0xF;
    let crumb = |i: usize| (data[i / 4] >> (2 * (i % 4))) & 0x3;
    let out = (0..n)
        .map(|i| match dtype {
            DType::F32 => f32::from_le_bytes([
                data[4 * i],
                data[4 * i + 1],
                data[4 * i + 2],
                data[4 * i + 3],
            ]) as f64,
            DType::F64 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[8 * i..8 * i + 8]);
                f64::from_le_bytes(b)
            }
            DType::I64 | DType::U64 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[8 * i..8 * i + 8]);
                if dtype == DType::I64 {
                    i64::from_le_bytes(b) as f64
                } else {
                    u64::from_le_bytes(b) as f64
                }
            }
            DType::I32 => i32::from_le_bytes([
                data[4 * i],
                data[4 * i + 1],
                data[4 * i + 2],
                data[4 * i + 3],
            ]) as f64,
            DType::U32 => u32::from_le_bytes([
                data[4 * i],
                data[4 * i + 1],
                data[4 * i + 2],
                data[4 * i + 3],
            ]) as f64,
            DType::U16 => u16s(i) as f64,
            DType::I16 => u16s(i) as i16 as f64,
            DType::F16 => half::f16::from_bits(u16s(i)).to_f64(),
            DType::Bf16 => half::bf16::from_bits(u16s(i)).to_f64(),
            DType::U8 | DType::Bool => data[i] as f64,
            DType::I8 => data[i] as i8 as f64,
            DType::U4 => nib(i) as f64,
            DType::I4 => (((nib(i) << 4) as i8) >> 4) as f64,
            DType::U2 => crumb(i) as f64,
            DType::I2 => (((crumb(i) << 6) as i8) >> 6) as f64,
            DType::F4E2M1 => minifloat(nib(i) as u32, 2, 1, 1, Special::None),
            DType::F8E4M3Fn => minifloat(data[i] as u32, 4, 3, 7, Special::FnNan),
            DType::F8E4M3Fnuz => minifloat(data[i] as u32, 4, 3, 8, Special::Uz),
            DType::F8E5M2 => minifloat(data[i] as u32, 5, 2, 15, Special::Ieee),
            DType::F8E5M2Fnuz => minifloat(data[i] as u32, 5, 2, 16, Special::Uz),
            DType::F8E8M0 => {
                if data[i] == 0xFF {
                    f64::NAN
                } else {
                    2f64.powi(data[i] as i32 - 127)
                }
            }
            DType::Str => f64::NAN,
        })
        .collect();
    if dtype == DType::Str {
        return Err(TensorError::NotNumeric(dtype));
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Special {
    /// No NaN/Inf encodings.
    None,
    /// All-ones exponent and mantissa is NaN (E4M3FN).
    FnNan,
    /// Negative zero encoding is NaN (the FNUZ types).
    Uz,
    /// IEEE-style infinities and NaNs.
    Ieee,
}

fn minifloat(code: u32, e: u32, m: u32, bias: i32, sp: Special) -> f64 {
    let sign = (code >> (e + m)) & 1;
    let exp = (code >> m) & ((1 << e) - 1);
    let man = code & ((1 << m) - 1);
    let emax = (1u32 << e) - 1;
    match sp {
        Special::FnNan if exp == emax && man == (1 << m) - 1 => return f64::NAN,
        Special::Uz if sign == 1 && exp == 0 && man == 0 => return f64::NAN,
        Special::Ieee if exp == emax => {
            return if man == 0 {
                if sign == 1 {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }
            } else {
                f64::NAN
            }
        }
        _ => {}
    }
    let mag = if exp == 0 {
        man as f64 * 2f64.powi(1 - bias - m as i32)
    } else {
        (1.0 + man as f64 / (1u32 << m) as f64) * 2f64.powi(exp as i32 - bias)
    };
    if sign == 1 {
        -mag
    } else {
        mag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_codes_round_trip() {
        for c in 0..40 {
            if let Some(d) = DType::from_code(c) {
                assert_eq!(d.code(), c);
            }
        }
        assert_eq!(DType::from_code(14), None);
    }

    #[test]
    fn le_bytes_round_trip_and_decode() {
        let t = Tensor::f32(&[2, 2], vec![1.0, -2.5, 3.0, 0.0]).expect("tensor");
        let b = t.to_le_bytes();
        assert_eq!(
            Tensor::from_le_bytes(DType::F32, &[2, 2], &b).expect("decode"),
            t
        );
        let i4 = decode_packed(DType::I4, 3, &[0xF7, 0x08]).expect("i4");
        assert_eq!(i4, vec![7.0, -1.0, -8.0]);
        let e4 = decode_packed(DType::F8E4M3Fn, 3, &[0x38, 0x7E, 0x7F]).expect("e4m3");
        assert_eq!(e4[0], 1.0);
        assert_eq!(e4[1], 448.0);
        assert!(e4[2].is_nan());
        let f4 = decode_packed(DType::F4E2M1, 2, &[0xF1]).expect("fp4");
        assert_eq!(f4, vec![0.5, -6.0]);
        assert!(Tensor::from_le_bytes(DType::F32, &[3], &[0; 8]).is_err());
    }
}

/// Reading and writing `.npz` archives of tensors (ndarray-npy), keyed by array name.
pub mod npz {
    use super::Tensor;
    use ndarray::ArrayD;
    use ndarray_npy::{NpzReader, NpzWriter};
    use std::path::{Path, PathBuf};

    /// Error reading or writing an npz file.
    #[derive(Debug, thiserror::Error)]
    pub enum NpzError {
        #[error("cannot open {path}: {source}")]
        Io {
            path: PathBuf,
            source: std::io::Error,
        },
        #[error("{path}: not a readable npz archive: {reason}")]
        Format { path: PathBuf, reason: String },
        #[error("{path}: array '{name}' has an unsupported dtype (float32/64, int64/32/8, uint8, bool are supported)")]
        Dtype { path: PathBuf, name: String },
        #[error("cannot write npz: {0}")]
        Write(String),
    }

    /// Reads every array of an npz file, in archive order.
    pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, NpzError> {
        let f = std::fs::File::open(path).map_err(|source| NpzError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let fmt = |e: &dyn std::fmt::Display| NpzError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut r = NpzReader::new(f).map_err(|e| fmt(&e))?;
        let names = r.names().map_err(|e| fmt(&e))?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let key = n.strip_suffix(".npy").unwrap_or(&n).to_string();
            macro_rules! attempt {
                ($t:ty, $v:ident) => {
                    if let Ok(a) = r.by_name::<ndarray::OwnedRepr<$t>, ndarray::IxDyn>(&n) {
                        out.push((key, Tensor::$v(a)));
                        continue;
                    }
                };
            }
            attempt!(f32, F32);
            attempt!(f64, F64);
            attempt!(i64, I64);
            attempt!(i32, I32);
            attempt!(i8, I8);
            attempt!(u8, U8);
            attempt!(bool, Bool);
            return Err(NpzError::Dtype {
                path: path.to_path_buf(),
                name: key,
            });
        }
        Ok(out)
    }

    /// Reads one `.npy` file (float32/64, int64/32/8, uint8, bool).
    pub fn read_npy(path: &Path) -> Result<Tensor, NpzError> {
        macro_rules! attempt {
            ($t:ty, $v:ident) => {
                if let Ok(a) = ndarray_npy::read_npy::<_, ArrayD<$t>>(path) {
                    return Ok(Tensor::$v(a));
                }
            };
        }
        if !path.exists() {
            return Err(NpzError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        attempt!(f32, F32);
        attempt!(f64, F64);
        attempt!(i64, I64);
        attempt!(i32, I32);
        attempt!(i8, I8);
        attempt!(u8, U8);
        attempt!(bool, Bool);
        Err(NpzError::Dtype {
            path: path.to_path_buf(),
            name: String::new(),
        })
    }

    /// Serializes tensors into npz bytes (compressed).
    pub fn to_bytes(arrays: &[(String, Tensor)]) -> Result<Vec<u8>, NpzError> {
        let mut w = NpzWriter::new_compressed(std::io::Cursor::new(Vec::new()));
        let err = |e: &dyn std::fmt::Display| NpzError::Write(e.to_string());
        for (name, t) in arrays {
            match t {
                Tensor::F32(a) => w.add_array(name.as_str(), a),
                Tensor::F64(a) => w.add_array(name.as_str(), a),
                Tensor::I64(a) => w.add_array(name.as_str(), a),
                Tensor::I32(a) => w.add_array(name.as_str(), a),
                Tensor::I8(a) => w.add_array(name.as_str(), a),
                Tensor::U8(a) => w.add_array(name.as_str(), a),
                Tensor::Bool(a) => w.add_array(name.as_str(), a),
                Tensor::Packed { .. } => {
                    let a: ArrayD<f32> = t.to_f32().map_err(|e| err(&e))?;
                    w.add_array(name.as_str(), &a)
                }
            }
            .map_err(|e| err(&e))?;
        }
        Ok(w.finish().map_err(|e| err(&e))?.into_inner())
    }
}
