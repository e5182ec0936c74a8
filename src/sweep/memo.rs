//! Once-per-key memoisation for work shared between configurations of a sweep (float
//! activations, calibration statistics, weights quantized per (layer, format, pass set)).
//!
//! Evaluators run concurrently; [`Memo::get_or_try_insert`] computes each key at most once
//! even when several threads ask for it at the same time (the others wait for the first and
//! share its value). Failed computations are not cached, so a later call retries. The value
//! of a key must depend only on the key, which keeps sweep results independent of scheduling.
//! A computation must not ask the same memo for its own key (it would wait for itself).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

type Slot<V> = Arc<Mutex<Option<Arc<V>>>>;

/// A concurrent once-per-key cache.
pub struct Memo<K, V> {
    map: Mutex<HashMap<K, Slot<V>>>,
}

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo {
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// Locks a mutex, ignoring poisoning: a panicking computation leaves its slot empty, which is
/// a valid state (the next caller recomputes).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Eq + Hash + Clone, V> Memo<K, V> {
    /// An empty memo.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, computing it with `compute` if no earlier call has; concurrent
    /// callers for the same key wait for one computation. Errors are returned and not cached.
    pub fn get_or_try_insert<E>(
        &self,
        key: &K,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        let slot = lock(&self.map).entry(key.clone()).or_default().clone();
        let mut value = lock(&slot);
        if let Some(v) = value.as_ref() {
            return Ok(Arc::clone(v));
        }
        let v = Arc::new(compute()?);
        *value = Some(Arc::clone(&v));
        Ok(v)
    }

    /// The value of `key` if it has been computed.
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        let slot = lock(&self.map).get(key).cloned()?;
        let v = lock(&slot);
        v.clone()
    }

    /// Number of keys with a computed value.
    pub fn len(&self) -> usize {
        let slots: Vec<Slot<V>> = lock(&self.map).values().cloned().collect();
        slots.iter().filter(|s| lock(s).is_some()).count()
    }

    /// True when no value has been computed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every cached value (e.g. between models), releasing their memory.
    pub fn clear(&self) {
        lock(&self.map).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn computes_each_key_once_under_contention() {
        let memo: Memo<u32, u64> = Memo::new();
        let calls = AtomicUsize::new(0);
        let sums: Vec<u64> = (0..400u32)
            .into_par_iter()
            .map(|k| {
                let key = k % 8;
                let v = memo
                    .get_or_try_insert(&key, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        Ok::<u64, String>(u64::from(key) * 1000)
                    })
                    .expect("value");
                *v
            })
            .collect();
        assert_eq!(calls.load(Ordering::SeqCst), 8);
        assert_eq!(memo.len(), 8);
        for (k, s) in sums.iter().enumerate() {
            assert_eq!(*s, (k as u64 % 8) * 1000);
        }
        assert_eq!(memo.get(&3).as_deref(), Some(&3000));
        memo.clear();
        assert!(memo.is_empty() && memo.get(&3).is_none());
    }

    #[test]
    fn errors_are_not_cached() {
        let memo: Memo<&str, u8> = Memo::new();
        let e = memo.get_or_try_insert(&"w", || Err::<u8, _>("boom"));
        assert_eq!(e.err(), Some("boom"));
        assert!(memo.get(&"w").is_none());
        let v = memo
            .get_or_try_insert(&"w", || Ok::<u8, &str>(7))
            .expect("retry");
        assert_eq!(*v, 7);
    }
}
