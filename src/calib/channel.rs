//! Per-channel streaming statistics of an activation (max |x| and mean per channel along one
//! axis), for passes that scale channels (SmoothQuant, equalization) or correct biases. Memory
//! is proportional to the channel count only.

use ndarray::{ArrayViewD, Axis};

use super::CalibError;

/// Running per-channel `max |x|`, sum and count along `axis` of every observed batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelStats {
    name: String,
    axis: usize,
    absmax: Vec<f32>,
    sum: Vec<f64>,
    count: u64,
}

impl ChannelStats {
    /// Statistics of tensor `name` per index of `axis` (e.g. 1 for NCHW activations, the last
    /// axis for `[…, features]` inputs of a MatMul).
    pub fn new(name: impl Into<String>, axis: usize) -> Self {
        Self {
            name: name.into(),
            axis,
            absmax: Vec::new(),
            sum: Vec::new(),
            count: 0,
        }
    }

    /// Adds one batch. The channel count is fixed by the first batch; later batches must agree.
    pub fn observe(&mut self, x: ArrayViewD<'_, f32>) -> Result<(), CalibError> {
        if self.axis >= x.ndim() {
            return Err(CalibError::BadAxis {
                tensor: self.name.clone(),
                axis: self.axis,
                rank: x.ndim(),
            });
        }
        let c = x.shape()[self.axis];
        if self.absmax.is_empty() && self.count == 0 {
            self.absmax = vec![0.0; c];
            self.sum = vec![0.0; c];
        } else if c != self.absmax.len() {
            return Err(CalibError::InvalidOption {
                option: format!("channel statistics of '{}'", self.name),
                reason: format!(
                    "batch has {c} channels on axis {} but earlier batches had {}",
                    self.axis,
                    self.absmax.len()
                ),
            });
        }
        if let Some((index, &value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(CalibError::NonFinite {
                tensor: self.name.clone(),
                index,
                value,
            });
        }
        for (k, lane) in x.axis_iter(Axis(self.axis)).enumerate() {
            let mut m = self.absmax[k];
            let mut s = 0f64;
            for &v in lane.iter() {
                m = m.max(v.abs());
                s += f64::from(v);
            }
            self.absmax[k] = m;
            self.sum[k] += s;
        }
        self.count += (x.len() / c.max(1)) as u64;
        Ok(())
    }

    /// `max |x|` per channel (empty before the first batch).
    pub fn absmax(&self) -> &[f32] {
        &self.absmax
    }

    /// Mean per channel over all positions of all batches.
    pub fn mean(&self) -> Result<Vec<f64>, CalibError> {
        if self.count == 0 {
            return Err(CalibError::Empty {
                tensor: self.name.clone(),
            });
        }
        Ok(self.sum.iter().map(|s| s / self.count as f64).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn nchw_channel_stats() {
        let a = Array4::from_shape_fn((2, 3, 2, 2), |(n, c, y, x)| {
            (c as f32 + 1.0) * if (n + y + x) % 2 == 0 { 1.0 } else { -2.0 }
        });
        let mut s = ChannelStats::new("act", 1);
        s.observe(a.view().into_dyn()).expect("ok");
        s.observe(a.view().into_dyn()).expect("ok");
        assert_eq!(s.absmax(), &[2.0, 4.0, 6.0]);
        // Per channel c: half the values are (c+1), half −2(c+1) → mean −(c+1)/2.
        assert_eq!(s.mean().expect("data"), vec![-0.5, -1.0, -1.5]);
        let wrong = Array4::<f32>::zeros((1, 4, 2, 2));
        assert!(s.observe(wrong.view().into_dyn()).is_err());
        let mut t = ChannelStats::new("act", 5);
        assert!(matches!(
            t.observe(a.view().into_dyn()),
            Err(CalibError::BadAxis {
                axis: 5,
                rank: 4,
                ..
            })
        ));
        assert!(ChannelStats::new("e", 0).mean().is_err());
    }
}
