//! From a clipping value to a quantization scale: `scale = clip / format_max`, optionally
//! constrained to a power of two (FPGA-friendly shifts).

/// How a scale is represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleRounding {
    /// Any positive `f32` (`clip / max` rounded to the nearest `f32`).
    #[default]
    Float,
    /// The smallest power of two `≥ clip / max`: the representable range covers the whole clip
    /// range (no extra clipping), at the cost of up to one bit of resolution.
    Pow2Up,
    /// The power of two nearest to `clip / max` in the log domain (`2^round(log2 s)`, ties to
    /// the larger): on average half a bit closer, but may clip up to √2× below the chosen clip.
    Pow2Nearest,
}

impl std::str::FromStr for ScaleRounding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "float" => Ok(Self::Float),
            "pow2" | "pow2-up" => Ok(Self::Pow2Up),
            "pow2-nearest" => Ok(Self::Pow2Nearest),
            _ => Err(format!(
                "unknown scale rounding '{s}' (expected float, pow2-up or pow2-nearest)"
            )),
        }
    }
}

/// `clip / max_value` under `rounding`. A clip that is zero, negative or not finite (a tensor
/// that was all zeros) gives scale 1, which represents those zeros exactly. Results are kept in
/// the normal `f32` range `[2^-126, 2^127]`.
pub fn scale_from_clip(clip: f64, max_value: f64, rounding: ScaleRounding) -> f32 {
    if !(clip.is_finite() && clip > 0.0 && max_value.is_finite() && max_value > 0.0) {
        return 1.0;
    }
    let s = clip / max_value;
    let min_normal = f64::from(f32::MIN_POSITIVE);
    match rounding {
        ScaleRounding::Float => (s.clamp(min_normal, f64::from(f32::MAX))) as f32,
        ScaleRounding::Pow2Up => {
            let mut e = s.log2().ceil() as i32;
            // Correct for log2 rounding so that 2^e ≥ s > 2^(e-1) holds exactly.
            if 2f64.powi(e) < s {
                e += 1;
            }
            if 2f64.powi(e - 1) >= s {
                e -= 1;
            }
            pow2(e)
        }
        ScaleRounding::Pow2Nearest => pow2(s.log2().round() as i32),
    }
}

fn pow2(e: i32) -> f32 {
    2f64.powi(e.clamp(-126, 127)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_scale() {
        assert_eq!(scale_from_clip(12.7, 127.0, ScaleRounding::Float), 0.1);
        assert_eq!(scale_from_clip(0.0, 127.0, ScaleRounding::Float), 1.0);
        assert_eq!(scale_from_clip(f64::NAN, 127.0, ScaleRounding::Float), 1.0);
    }

    #[test]
    fn pow2_up_and_nearest() {
        // s = 0.1 → up 0.125, nearest 0.125 (log2 0.1 = −3.32).
        assert_eq!(scale_from_clip(12.7, 127.0, ScaleRounding::Pow2Up), 0.125);
        assert_eq!(
            scale_from_clip(12.7, 127.0, ScaleRounding::Pow2Nearest),
            0.125
        );
        // s = 0.07 → up 0.125, nearest 0.0625 (log2 0.07 = −3.84).
        assert_eq!(scale_from_clip(7.0, 100.0, ScaleRounding::Pow2Up), 0.125);
        assert_eq!(
            scale_from_clip(7.0, 100.0, ScaleRounding::Pow2Nearest),
            0.0625
        );
        // Exact powers stay.
        assert_eq!(scale_from_clip(8.0, 2.0, ScaleRounding::Pow2Up), 4.0);
        assert_eq!(scale_from_clip(8.0, 2.0, ScaleRounding::Pow2Nearest), 4.0);
        assert_eq!(
            "pow2-up".parse::<ScaleRounding>(),
            Ok(ScaleRounding::Pow2Up)
        );
        assert!("x".parse::<ScaleRounding>().is_err());
    }

    #[test]
    fn pow2_up_never_below_exact() {
        for k in 1..2000 {
            let clip = f64::from(k) * 0.0137;
            let s = scale_from_clip(clip, 448.0, ScaleRounding::Pow2Up);
            assert!(f64::from(s) >= clip / 448.0);
            assert!(f64::from(s) < 2.0 * clip / 448.0);
        }
    }
}
