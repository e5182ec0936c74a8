//! A named collection of observers, one per tensor, created on first sight and iterated in name
//! order (deterministic reports).

use std::collections::BTreeMap;

use ndarray::ArrayViewD;

use super::observer::{ObserverConfig, TensorObserver};
use super::scale::ScaleRounding;
use super::select::{calibrate_activation, ActivationCalibration, ClipMethod};
use super::{CalibError, Quantizer};

/// Observers of many tensors sharing one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ObserverSet {
    config: ObserverConfig,
    observers: BTreeMap<String, TensorObserver>,
}

impl ObserverSet {
    /// An empty set whose observers will use `config`.
    pub fn new(config: ObserverConfig) -> Self {
        Self {
            config,
            observers: BTreeMap::new(),
        }
    }

    fn entry(&mut self, name: &str) -> Result<&mut TensorObserver, CalibError> {
        if !self.observers.contains_key(name) {
            let o = TensorObserver::new(name, self.config)?;
            self.observers.insert(name.to_string(), o);
        }
        self.observers.get_mut(name).ok_or(CalibError::Empty {
            tensor: name.into(),
        })
    }

    /// Observes a batch of tensor `name`.
    pub fn observe(&mut self, name: &str, x: &[f32]) -> Result<(), CalibError> {
        self.entry(name)?.observe(x)
    }

    /// Observes a batch of tensor `name` given as an array of any layout.
    pub fn observe_array(&mut self, name: &str, x: ArrayViewD<'_, f32>) -> Result<(), CalibError> {
        self.entry(name)?.observe_array(x)
    }

    /// The observer of `name`, if it saw data.
    pub fn get(&self, name: &str) -> Option<&TensorObserver> {
        self.observers.get(name)
    }

    /// All observers in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TensorObserver)> {
        self.observers.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of tensors observed.
    pub fn len(&self) -> usize {
        self.observers.len()
    }

    /// True when nothing was observed.
    pub fn is_empty(&self) -> bool {
        self.observers.is_empty()
    }

    /// Adds everything another set observed (exact and order-independent).
    pub fn merge(&mut self, other: &ObserverSet) -> Result<(), CalibError> {
        for (name, o) in &other.observers {
            match self.observers.get_mut(name) {
                Some(mine) => mine.merge(o)?,
                None => {
                    self.observers.insert(name.clone(), o.clone());
                }
            }
        }
        Ok(())
    }

    /// Heap bytes held by all observers (grows with the number of tensors, not of samples).
    pub fn heap_bytes(&self) -> usize {
        self.observers
            .values()
            .map(|o| o.heap_bytes() + o.name().len())
            .sum()
    }

    /// Calibrates tensor `name` (see [`calibrate_activation`]); a tensor never observed is an
    /// [`CalibError::Empty`] error naming it.
    pub fn calibrate(
        &self,
        name: &str,
        method: &ClipMethod,
        format: &dyn Quantizer,
        rounding: ScaleRounding,
    ) -> Result<ActivationCalibration, CalibError> {
        let o = self.observers.get(name).ok_or(CalibError::Empty {
            tensor: name.into(),
        })?;
        calibrate_activation(o, method, format, rounding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_creates_merges_and_calibrates() {
        let mut a = ObserverSet::new(ObserverConfig::default());
        let mut b = ObserverSet::new(ObserverConfig::default());
        a.observe("y", &[1.0, -2.0]).expect("finite");
        a.observe("x", &[0.5]).expect("finite");
        b.observe("y", &[4.0]).expect("finite");
        b.observe("z", &[0.0, 3.0]).expect("finite");
        let bytes = a.heap_bytes();
        a.merge(&b).expect("same config");
        assert_eq!(
            a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["x", "y", "z"]
        );
        assert_eq!(a.get("y").expect("y").stats().absmax(), 4.0);
        assert!(a.heap_bytes() > bytes);
        let f: quant_formats::Format = "int8".parse().expect("format");
        let c = a
            .calibrate("y", &ClipMethod::MinMax, &f, ScaleRounding::Float)
            .expect("observed");
        assert_eq!(c.clip, 4.0);
        let e = a
            .calibrate("w", &ClipMethod::MinMax, &f, ScaleRounding::Float)
            .expect_err("never observed");
        assert!(e.to_string().contains("'w'"));
        let e = a.observe("x", &[f32::NAN]).expect_err("nan");
        assert!(e.to_string().contains("'x'"));
    }
}
