//! Streaming reader of NumPy `.npy` arrays, standalone or stored/deflated inside a `.npz`.
//!
//! Only the header and the requested rows (indices along axis 0) are read: memory is one batch,
//! whatever the array's length. Stored entries and `.npy` files are read by seeking; deflated
//! `.npz` entries are decompressed once, front to back (rows must then be requested in
//! increasing order, which the dataset guarantees).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Take};
use std::path::{Path, PathBuf};

use flate2::read::DeflateDecoder;

use super::{DType, DataError};

/// Parsed `.npy` header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NpyHeader {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Bytes of magic + header before the data.
    pub header_len: u64,
}

fn parse_descr(descr: &str) -> Option<DType> {
    let (order, code) = descr.split_at(1.min(descr.len()));
    // Single-byte types use '|'; wider types must be little-endian (or '=' on this machine).
    let little = matches!(order, "<" | "|" | "=");
    if !little {
        return None;
    }
    Some(match code {
        "f2" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        "i1" => DType::I8,
        "u1" => DType::U8,
        "i2" => DType::I16,
        "u2" => DType::U16,
        "i4" => DType::I32,
        "u4" => DType::U32,
        "i8" => DType::I64,
        "u8" => DType::U64,
        "b1" => DType::Bool,
        _ => return None,
    })
}

/// Value of `'key': value` in the header dict (raw text up to the next top-level comma).
fn dict_value<'a>(h: &'a str, key: &str) -> Option<&'a str> {
    let start = h.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = h[start..].trim_start().strip_prefix(':')?.trim_start();
    if let Some(inner) = rest.strip_prefix('(') {
        let end = inner.find(')')?;
        return Some(&inner[..end]);
    }
    if let Some(inner) = rest.strip_prefix('\'') {
        let end = inner.find('\'')?;
        return Some(&inner[..end]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// Reads and parses the header from the start of `r`.
pub(crate) fn read_header(r: &mut impl Read) -> Result<NpyHeader, String> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|e| format!("cannot read the .npy magic: {e}"))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (bad magic)".into());
    }
    let (len, fixed) = match pre[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(|e| e.to_string())?;
            (u64::from(u16::from_le_bytes(b)), 10u64)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|e| e.to_string())?;
            (u64::from(u32::from_le_bytes(b)), 12u64)
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    if len > 1 << 20 {
        return Err(format!("implausible .npy header length {len}"));
    }
    let mut text = vec![0u8; len as usize];
    r.read_exact(&mut text)
        .map_err(|e| format!("truncated .npy header: {e}"))?;
    let text = String::from_utf8_lossy(&text);
    let descr = dict_value(&text, "descr").ok_or("header has no 'descr'")?;
    let dtype = parse_descr(descr).ok_or_else(|| format!("unsupported element type '{descr}'"))?;
    let fortran = dict_value(&text, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let shape_txt = dict_value(&text, "shape").ok_or("header has no 'shape'")?;
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad shape entry '{s}'"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if fortran == "True" && shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err("Fortran-ordered arrays are not supported (save with C order)".into());
    }
    Ok(NpyHeader {
        dtype,
        shape,
        header_len: fixed + len,
    })
}

enum Source {
    /// Random access: data starts at `base` in the file.
    Seek { file: BufReader<File>, base: u64 },
    /// Sequential decompression; `next_row` is the next row the decoder will produce.
    Deflate {
        dec: Box<DeflateDecoder<Take<BufReader<File>>>>,
        next_row: usize,
    },
}

/// Streams rows of one array.
pub(crate) struct ArrayStream {
    pub path: PathBuf,
    pub array: String,
    pub header: NpyHeader,
    row_bytes: usize,
    src: Source,
}

fn io_err(path: &Path, e: std::io::Error) -> DataError {
    DataError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

impl ArrayStream {
    /// Opens a standalone `.npy` file.
    pub fn open_npy(path: &Path, array: &str) -> Result<Self, DataError> {
        let f = File::open(path).map_err(|e| io_err(path, e))?;
        let mut file = BufReader::new(f);
        let header = read_header(&mut file).map_err(|reason| DataError::BadArray {
            path: path.to_path_buf(),
            array: array.into(),
            reason,
        })?;
        let base = header.header_len;
        Self::new(path, array, header, Source::Seek { file, base })
    }

    /// Opens entry `array` (`array.npy` in the archive) of a `.npz` file.
    pub fn open_npz(path: &Path, array: &str) -> Result<Self, DataError> {
        let f = File::open(path).map_err(|e| io_err(path, e))?;
        let mut zip = zip::ZipArchive::new(f).map_err(|e| DataError::BadArray {
            path: path.to_path_buf(),
            array: array.into(),
            reason: format!("not a readable .npz archive: {e}"),
        })?;
        let entry_name = format!("{array}.npy");
        let (method, start, csize) = {
            let entry = zip
                .by_name(&entry_name)
                .map_err(|_| DataError::MissingArray {
                    path: path.to_path_buf(),
                    array: array.into(),
                    available: npz_names_of(path).unwrap_or_default(),
                })?;
            (
                entry.compression(),
                entry.data_start(),
                entry.compressed_size(),
            )
        };
        let mut file = BufReader::new(File::open(path).map_err(|e| io_err(path, e))?);
        file.seek(SeekFrom::Start(start))
            .map_err(|e| io_err(path, e))?;
        let bad = |reason: String| DataError::BadArray {
            path: path.to_path_buf(),
            array: array.into(),
            reason,
        };
        match method {
            zip::CompressionMethod::Stored => {
                let header = read_header(&mut file).map_err(bad)?;
                let base = start + header.header_len;
                Self::new(path, array, header, Source::Seek { file, base })
            }
            zip::CompressionMethod::Deflated => {
                let mut dec = Box::new(DeflateDecoder::new(file.take(csize)));
                let header = read_header(&mut dec).map_err(bad)?;
                Self::new(path, array, header, Source::Deflate { dec, next_row: 0 })
            }
            m => Err(bad(format!("unsupported zip compression {m:?}"))),
        }
    }

    fn new(path: &Path, array: &str, header: NpyHeader, src: Source) -> Result<Self, DataError> {
        if header.shape.is_empty() {
            return Err(DataError::BadArray {
                path: path.to_path_buf(),
                array: array.into(),
                reason: "a 0-d array has no sample axis".into(),
            });
        }
        let row_elems: usize = header.shape[1..].iter().product();
        Ok(Self {
            path: path.to_path_buf(),
            array: array.into(),
            row_bytes: row_elems * header.dtype.size(),
            header,
            src,
        })
    }

    /// Number of rows (length of axis 0).
    pub fn rows(&self) -> usize {
        self.header.shape[0]
    }

    /// Raw little-endian bytes of `rows` (strictly increasing for deflated entries).
    fn read_raw(&mut self, rows: &[usize]) -> Result<Vec<u8>, DataError> {
        let mut buf = vec![0u8; rows.len() * self.row_bytes];
        let rb = self.row_bytes;
        let path = self.path.clone();
        for (k, &r) in rows.iter().enumerate() {
            let dst = &mut buf[k * rb..(k + 1) * rb];
            match &mut self.src {
                Source::Seek { file, base } => {
                    file.seek(SeekFrom::Start(*base + (r * rb) as u64))
                        .map_err(|e| io_err(&path, e))?;
                    file.read_exact(dst).map_err(|e| io_err(&path, e))?;
                }
                Source::Deflate { dec, next_row } => {
                    if r < *next_row {
                        return Err(DataError::BadArray {
                            path: path.clone(),
                            array: self.array.clone(),
                            reason: "rows of a compressed entry must be read in increasing order"
                                .into(),
                        });
                    }
                    let skip = ((r - *next_row) * rb) as u64;
                    std::io::copy(&mut (&mut **dec).take(skip), &mut std::io::sink())
                        .map_err(|e| io_err(&path, e))?;
                    dec.read_exact(dst).map_err(|e| io_err(&path, e))?;
                    *next_row = r + 1;
                }
            }
        }
        Ok(buf)
    }

    /// Rows converted to `f32` (exact for every type but 64-bit values beyond 2^24).
    pub fn read_f32(&mut self, rows: &[usize]) -> Result<Vec<f32>, DataError> {
        let raw = self.read_raw(rows)?;
        Ok(convert(&raw, self.header.dtype, |v| v as f32))
    }

    /// Rows converted to `i64` (integer types only; the caller checks the type).
    pub fn read_i64(&mut self, rows: &[usize]) -> Result<Vec<i64>, DataError> {
        let raw = self.read_raw(rows)?;
        Ok(convert(&raw, self.header.dtype, |v| v as i64))
    }
}

/// Decodes little-endian elements of `dtype` through `f64` (exact for integers below 2^53).
fn convert<T>(raw: &[u8], dtype: DType, f: impl Fn(f64) -> T) -> Vec<T>
where
    T: Copy,
{
    macro_rules! go {
        ($t:ty) => {
            raw.chunks_exact(std::mem::size_of::<$t>())
                .map(|c| {
                    let mut b = [0u8; std::mem::size_of::<$t>()];
                    b.copy_from_slice(c);
                    f(<$t>::from_le_bytes(b) as f64)
                })
                .collect()
        };
    }
    match dtype {
        DType::F16 => raw
            .chunks_exact(2)
            .map(|c| f(f64::from(half::f16::from_le_bytes([c[0], c[1]]))))
            .collect(),
        DType::F32 => go!(f32),
        DType::F64 => go!(f64),
        DType::I8 => go!(i8),
        DType::U8 => go!(u8),
        DType::I16 => go!(i16),
        DType::U16 => go!(u16),
        DType::I32 => go!(i32),
        DType::U32 => go!(u32),
        DType::I64 => go!(i64),
        DType::U64 => go!(u64),
        DType::Bool => raw
            .iter()
            .map(|&b| f(f64::from(u8::from(b != 0))))
            .collect(),
    }
}

/// Array names stored in a `.npz` (entry names without `.npy`), sorted.
pub(crate) fn npz_names_of(path: &Path) -> Result<Vec<String>, DataError> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let zip = zip::ZipArchive::new(f).map_err(|e| DataError::BadArray {
        path: path.to_path_buf(),
        array: String::new(),
        reason: format!("not a readable .npz archive: {e}"),
    })?;
    let mut names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.strip_suffix(".npy").map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers() {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (10, 1, 28, 28), }";
        assert_eq!(dict_value(h, "descr"), Some("<f4"));
        assert_eq!(dict_value(h, "fortran_order"), Some("False"));
        assert_eq!(dict_value(h, "shape"), Some("10, 1, 28, 28"));
        let h1 = "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }";
        assert_eq!(dict_value(h1, "shape"), Some("5,"));
        assert_eq!(parse_descr(">f4"), None);
        assert_eq!(parse_descr("<i8"), Some(DType::I64));
    }

    fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend((h.len() as u16).to_le_bytes());
        v.extend(h.as_bytes());
        v.extend(data);
        v
    }

    #[test]
    fn header_edge_cases() {
        let ok = npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &[],
        );
        let h = read_header(&mut ok.as_slice()).expect("valid");
        assert_eq!(h.shape, vec![2, 3]);
        assert_eq!(h.dtype, DType::F32);
        assert_eq!(h.header_len, 128);
        let big = npy_bytes(
            "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
            &[],
        );
        let e = read_header(&mut big.as_slice()).expect_err("big-endian");
        assert!(e.contains(">f4"), "{e}");
        let fo = npy_bytes(
            "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
            &[],
        );
        assert!(read_header(&mut fo.as_slice())
            .expect_err("fortran")
            .contains("Fortran"));
        let fo1 = npy_bytes(
            "{'descr': '<f8', 'fortran_order': True, 'shape': (7,), }",
            &[],
        );
        assert_eq!(
            read_header(&mut fo1.as_slice()).expect("1-d").shape,
            vec![7]
        );
        let scalar = npy_bytes(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (), }",
            &[],
        );
        assert_eq!(
            read_header(&mut scalar.as_slice()).expect("0-d").shape,
            Vec::<usize>::new()
        );
        assert!(read_header(&mut &b"PK\x03\x04xxxxxxxx"[..]).is_err());
        let obj = npy_bytes(
            "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
            &[],
        );
        assert!(read_header(&mut obj.as_slice())
            .expect_err("object")
            .contains("|O"));
    }

    #[test]
    fn zero_d_and_truncated_files_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("s.npy");
        std::fs::write(
            &p,
            npy_bytes(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                &[0; 4],
            ),
        )
        .expect("write");
        assert!(ArrayStream::open_npy(&p, "x").is_err());
        let t = dir.path().join("t.npy");
        std::fs::write(
            &t,
            npy_bytes(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
                &[0; 8],
            ),
        )
        .expect("write");
        let mut s = ArrayStream::open_npy(&t, "x").expect("header ok");
        assert_eq!(s.read_f32(&[0]).expect("row 0"), vec![0.0, 0.0]);
        let e = s.read_f32(&[2]).expect_err("truncated");
        assert!(e.to_string().contains("t.npy"), "{e}");
    }
}
