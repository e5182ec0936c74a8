//! Atomic output: every file mfq writes goes to a temporary file in the destination directory
//! and is renamed into place only when complete, so a failed run leaves no partial output.
//! Writing onto one of the run's input files is refused.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Error raised by [`write_atomic`].
#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    #[error("refusing to overwrite input file {0}")]
    WouldOverwriteInput(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// True when `a` and `b` name the same existing file (or the same path when either is missing).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Writes `bytes` to `path` atomically (temporary file + rename). `inputs` are the run's input
/// files; writing onto any of them is an error.
pub fn write_atomic(path: &Path, bytes: &[u8], inputs: &[&Path]) -> Result<(), AtomicWriteError> {
    write_atomic_with(path, inputs, |w| w.write_all(bytes))
}

/// Like [`write_atomic`] but streams the content through `fill`.
pub fn write_atomic_with<F>(path: &Path, inputs: &[&Path], fill: F) -> Result<(), AtomicWriteError>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    if inputs.iter().any(|i| same_file(i, path)) {
        return Err(AtomicWriteError::WouldOverwriteInput(path.to_path_buf()));
    }
    let io_err = |source| AtomicWriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_string());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = io::BufWriter::new(fs::File::create(&tmp)?);
        fill(&mut f)?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_refuses_inputs() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("a.bin");
        write_atomic(&p, b"hello", &[]).expect("write");
        assert_eq!(fs::read(&p).expect("read"), b"hello");
        let err = write_atomic(&p, b"x", &[p.as_path()]).expect_err("must refuse");
        assert!(matches!(err, AtomicWriteError::WouldOverwriteInput(_)));
        assert_eq!(fs::read(&p).expect("read"), b"hello");
        // A failing writer leaves neither the target nor a temporary file behind.
        let q = d.path().join("b.bin");
        let r = write_atomic_with(&q, &[], |_| Err(io::Error::other("boom")));
        assert!(r.is_err());
        assert!(!q.exists());
        assert_eq!(fs::read_dir(d.path()).expect("ls").count(), 1);
    }
}
