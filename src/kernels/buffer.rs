//! Recycled `f32` output buffers.
//!
//! Large tensors (tens of MB for a batch of feature maps) are allocated and freed once per op;
//! fresh allocations of that size come straight from the OS and every page faults on its first
//! write, which can cost as much as the arithmetic. Kernels therefore take their output buffers
//! with [`take`], and the interpreter hands the storage of each intermediate tensor back with
//! [`recycle`] once the tensor is dead. Buffers are kept per thread (no locking), only when at
//! least [`MIN_BYTES`] large, and at most [`MAX_BYTES`] in total per thread.
//!
//! A recycled buffer holds stale (but initialised) values: callers of [`take`] must overwrite
//! every element. Results therefore never depend on whether a buffer was recycled.

use std::cell::RefCell;

/// Buffers smaller than this are left to the allocator.
pub const MIN_BYTES: usize = 1 << 18;
/// Total bytes kept per thread.
pub const MAX_BYTES: usize = 1 << 28;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` elements with unspecified contents (zeros when freshly allocated, stale
/// values when recycled); the caller must write every element before reading it.
pub fn take(len: usize) -> Vec<f32> {
    if len * 4 >= MIN_BYTES {
        let hit = POOL.with(|p| {
            let mut p = p.borrow_mut();
            // Best fit: the smallest buffer that holds `len`, at most 8 times larger.
            let i = p
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len && v.capacity() / 8 <= len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i)?;
            Some(p.swap_remove(i))
        });
        if let Some(mut v) = hit {
            if v.len() >= len {
                v.truncate(len);
            } else {
                v.resize(len, 0.0);
            }
            return v;
        }
    }
    vec![0f32; len]
}

/// Like [`take`] but every element is zero.
pub fn take_zeroed(len: usize) -> Vec<f32> {
    let mut v = take(len);
    v.fill(0.0);
    v
}

/// Returns a dead buffer's storage to this thread's pool (or frees it when it is small or the
/// pool is full).
pub fn recycle(v: Vec<f32>) {
    let bytes = v.capacity() * 4;
    if !(MIN_BYTES..=MAX_BYTES).contains(&bytes) {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let held: usize = p.iter().map(|b| b.capacity() * 4).sum();
        if held + bytes <= MAX_BYTES {
            p.push(v);
        } else if let Some((i, _)) = p
            .iter()
            .enumerate()
            .min_by_key(|(_, b)| b.capacity())
            .filter(|(_, b)| {
                b.capacity() < v.capacity() && held - b.capacity() * 4 + bytes <= MAX_BYTES
            })
        {
            // Prefer keeping the larger buffer.
            p[i] = v;
        }
    });
}

/// Frees every buffer held by this thread's pool.
pub fn clear() {
    POOL.with(|p| p.borrow_mut().clear());
}

/// Bytes currently held by this thread's pool.
pub fn held_bytes() -> usize {
    POOL.with(|p| p.borrow().iter().map(|b| b.capacity() * 4).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_buffer_is_reused_and_resized() {
        clear();
        let n = 4 * MIN_BYTES; // elements: 16× the minimum size in bytes
        let mut v = take(n);
        assert_eq!(v.len(), n);
        assert!(v.iter().all(|&x| x == 0.0));
        v.fill(7.0);
        let ptr = v.as_ptr();
        recycle(v);
        assert_eq!(held_bytes(), n * 4);
        // A slightly smaller request reuses the same storage, with stale contents.
        let w = take(n - 10);
        assert_eq!(w.len(), n - 10);
        assert_eq!(w.as_ptr(), ptr);
        assert_eq!(held_bytes(), 0);
        recycle(w);
        // take_zeroed really zeroes a stale buffer.
        let z = take_zeroed(n);
        assert_eq!(z.as_ptr(), ptr);
        assert!(z.iter().all(|&x| x == 0.0));
        // Far smaller requests do not take a huge buffer; small buffers are not kept.
        recycle(z);
        let s = take(n / 16);
        assert_ne!(s.as_ptr(), ptr);
        recycle(vec![0f32; 16]);
        assert_eq!(held_bytes(), n * 4);
        clear();
        assert_eq!(held_bytes(), 0);
    }
}
