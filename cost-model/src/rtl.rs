//! Verilog generator for the MAC units the cost model describes.
//!
//! One module per (activation format, weight format, n, datapath): combinational operand
//! decode and multiply, then a registered Kulisch accumulator of [`kulisch_width`] bits with a
//! synchronous reset (`rst`) and clock enable (`en`). The only flip-flops are the accumulator
//! bits, so FF = `acc_bits` exactly.
//!
//! Datapaths:
//! - [`Datapath::TwosComplement`] (integer × integer only): one signed multiply of the raw
//!   codes, sign-extended into the accumulator.
//! - [`Datapath::SignMagnitude`]: every operand decodes to (sign, unsigned significand, shift);
//!   minifloats restore the hidden bit (subnormal codes use exponent 1 and no hidden bit; without
//!   subnormals the exponent-0 codes are zero), integers take their absolute value. The
//!   significands are multiplied unsigned, the product is shifted left by the summed exponents
//!   into the Kulisch frame, and the sign is applied where [`SignStyle`] says.
//!
//! Special codes (inf/NaN of IEEE/FN/FNUZ formats) are outside the contract: an exact fixed
//! point sum cannot hold them, and the unit treats those codes as undefined.

use crate::accum::kulisch_width;
use crate::operand::Operand;
use crate::CostError;
use std::fmt::Write as _;

/// Where the product sign is applied in a sign-magnitude datapath.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignStyle {
    /// The accumulator adds or subtracts the unsigned shifted product (XOR into the adder's
    /// LUTs plus the sign as carry-in).
    AddSub,
    /// The narrow product is negated, then arithmetically shifted into the frame.
    NegateBeforeShift,
    /// The unsigned product is shifted, then the frame-wide value is negated.
    NegateAfterShift,
}

/// Structure of the MAC datapath.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "datapath", rename_all = "snake_case")]
pub enum Datapath {
    /// Two's-complement multiply of the raw integer codes (integer × integer only).
    TwosComplement,
    /// Sign/magnitude decode, unsigned multiply, shift into the frame, signed accumulate.
    SignMagnitude {
        /// Where the sign is applied.
        sign: SignStyle,
    },
}

impl Datapath {
    /// Short name used in file names and CSV columns.
    pub fn name(&self) -> &'static str {
        match self {
            Datapath::TwosComplement => "tc",
            Datapath::SignMagnitude {
                sign: SignStyle::AddSub,
            } => "sm_addsub",
            Datapath::SignMagnitude {
                sign: SignStyle::NegateBeforeShift,
            } => "sm_negpre",
            Datapath::SignMagnitude {
                sign: SignStyle::NegateAfterShift,
            } => "sm_negpost",
        }
    }

    /// Parses [`Datapath::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "tc" => Datapath::TwosComplement,
            "sm_addsub" => Datapath::SignMagnitude {
                sign: SignStyle::AddSub,
            },
            "sm_negpre" => Datapath::SignMagnitude {
                sign: SignStyle::NegateBeforeShift,
            },
            "sm_negpost" => Datapath::SignMagnitude {
                sign: SignStyle::NegateAfterShift,
            },
            _ => return None,
        })
    }

    /// The datapath the cost model assumes by default: two's complement for integer pairs,
    /// sign/magnitude with an add/sub accumulator otherwise (cheapest measured; see
    /// docs/cost-model.md).
    pub fn default_for(act: &Operand, wt: &Operand) -> Self {
        if !act.is_float() && !wt.is_float() {
            Datapath::TwosComplement
        } else {
            Datapath::SignMagnitude {
                sign: SignStyle::AddSub,
            }
        }
    }
}

/// A MAC unit to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MacSpec {
    /// Activation operand (port `a`).
    pub act: Operand,
    /// Weight operand (port `w`).
    pub wt: Operand,
    /// Dot-product length the accumulator is sized for.
    pub n: u64,
    /// Datapath structure.
    pub datapath: Datapath,
}

impl MacSpec {
    /// Spec with the default datapath.
    pub fn new(act: Operand, wt: Operand, n: u64) -> Self {
        MacSpec {
            act,
            wt,
            n,
            datapath: Datapath::default_for(&act, &wt),
        }
    }

    /// Accumulator width.
    pub fn acc_bits(&self) -> Result<u32, CostError> {
        kulisch_width(&self.act, &self.wt, self.n)
    }

    /// Frame width of one product (`mag_a + mag_w`).
    pub fn frame_bits(&self) -> u32 {
        self.act.mag_bits() + self.wt.mag_bits()
    }

    /// A Verilog identifier naming this design.
    pub fn module_name(&self) -> String {
        let clean = |s: String| s.to_lowercase().replace(['<', '>', ',', '-'], "_");
        format!(
            "mac_{}_{}_n{}_{}",
            clean(self.act.label()),
            clean(self.wt.label()),
            self.n,
            self.datapath.name()
        )
    }

    fn validate(&self) -> Result<(), CostError> {
        if self.datapath == Datapath::TwosComplement && (self.act.is_float() || self.wt.is_float())
        {
            return Err(CostError::Invalid(format!(
                "two's-complement datapath needs integer operands, got {} x {}",
                self.act.label(),
                self.wt.label()
            )));
        }
        for (name, o) in [("activation", &self.act), ("weight", &self.wt)] {
            if o.code_bits() == 0 || o.code_bits() > 24 || o.sig_bits() == 0 {
                return Err(CostError::Unsupported(format!(
                    "{name} format {} for RTL generation (1..=24 code bits with a significand)",
                    o.label()
                )));
            }
        }
        let acc = self.acc_bits()?;
        if acc > 1024 {
            return Err(CostError::Unsupported(format!(
                "accumulator of {acc} bits for {} x {}",
                self.act.label(),
                self.wt.label()
            )));
        }
        Ok(())
    }
}

/// Zero-extends or truncates `expr` (unsigned, `from` bits) to `to` bits.
fn zext(expr: &str, from: u32, to: u32) -> String {
    if to > from {
        format!("{{{{{}{{1'b0}}}}, {expr}}}", to - from)
    } else if to == from {
        expr.to_string()
    } else {
        format!("{expr}[{}:0]", to - 1)
    }
}

/// Sign-extends `name` (a plain wire of `from` bits) to `to` bits, or truncates it.
fn sext(name: &str, from: u32, to: u32) -> String {
    if to > from {
        format!("{{{{{}{{{name}[{}]}}}}, {name}}}", to - from, from - 1)
    } else if to == from {
        name.to_string()
    } else {
        format!("{name}[{}:0]", to - 1)
    }
}

/// Emits the decode of one operand; returns (sign wire or None, significand wire, effective
/// exponent wire with its width, or None for integers / E = 0).
fn decode(
    v: &mut String,
    p: &str,
    port: &str,
    o: &Operand,
) -> (Option<String>, String, Option<(String, u32)>) {
    let cb = o.code_bits();
    let sb = o.sig_bits();
    match *o {
        Operand::Int { signed, .. } => {
            if signed {
                let _ = writeln!(v, "  wire {p}_s = {port}[{}];", cb - 1);
                let _ = writeln!(
                    v,
                    "  wire [{}:0] {p}_abs = {p}_s ? -{port} : {port};",
                    cb - 1
                );
                let _ = writeln!(
                    v,
                    "  wire [{}:0] {p}_sig = {};",
                    sb - 1,
                    zext(&format!("{p}_abs"), cb, sb)
                );
                (Some(format!("{p}_s")), format!("{p}_sig"), None)
            } else {
                let _ = writeln!(v, "  wire [{}:0] {p}_sig = {port};", sb - 1);
                (None, format!("{p}_sig"), None)
            }
        }
        Operand::Float {
            exp,
            man,
            signed,
            subnormals,
            ..
        } => {
            let s = if signed {
                let _ = writeln!(v, "  wire {p}_s = {port}[{}];", exp + man);
                Some(format!("{p}_s"))
            } else {
                None
            };
            if exp == 0 {
                let _ = writeln!(v, "  wire [{}:0] {p}_sig = {port}[{}:0];", man - 1, man - 1);
                return (s, format!("{p}_sig"), None);
            }
            let _ = writeln!(
                v,
                "  wire [{}:0] {p}_e = {port}[{}:{}];",
                exp - 1,
                exp + man - 1,
                man
            );
            let _ = writeln!(v, "  wire {p}_h = |{p}_e;");
            let mant = if man == 0 {
                String::new()
            } else if subnormals {
                format!(", {port}[{}:0]", man - 1)
            } else {
                format!(", {port}[{}:0] & {{{man}{{{p}_h}}}}", man - 1)
            };
            let _ = writeln!(v, "  wire [{man}:0] {p}_sig = {{{p}_h{mant}}};");
            if subnormals {
                // Exponent field 0 (subnormal) scales like field 1.
                if exp == 1 {
                    let _ = writeln!(v, "  wire [0:0] {p}_x = 1'b1;");
                } else {
                    let _ = writeln!(
                        v,
                        "  wire [{}:0] {p}_x = {{{p}_e[{}:1], {p}_e[0] | ~{p}_h}};",
                        exp - 1,
                        exp - 1
                    );
                }
            } else {
                let _ = writeln!(v, "  wire [{}:0] {p}_x = {p}_e;", exp - 1);
            }
            (s, format!("{p}_sig"), Some((format!("{p}_x"), exp)))
        }
    }
}

/// Generates the synthesizable Verilog-2001 module for `spec`.
pub fn generate_verilog(spec: &MacSpec) -> Result<String, CostError> {
    spec.validate()?;
    let acc = spec.acc_bits()?;
    let (a, w) = (&spec.act, &spec.wt);
    let (ca, cw) = (a.code_bits(), w.code_bits());
    let signed_acc = a.signed() || w.signed();
    let mut v = String::new();
    let _ = writeln!(
        v,
        "// MAC unit generated by mfq cost-model {}.\n// activations {} x weights {}, n = {}, \
         accumulator {acc} bits ({}), datapath {}.\n// Inputs are raw format codes; acc is the \
         exact sum in steps of 2^({}) (product of the operands' smallest steps).",
        env!("CARGO_PKG_VERSION"),
        a.label(),
        w.label(),
        spec.n,
        if signed_acc {
            "two's complement"
        } else {
            "unsigned"
        },
        spec.datapath.name(),
        a.lsb_exp() + w.lsb_exp()
    );
    let _ = writeln!(
        v,
        "module {} (\n  input wire clk,\n  input wire rst,\n  input wire en,\n  input wire [{}:0] a,\n  \
         input wire [{}:0] w,\n  output reg [{}:0] acc\n);",
        spec.module_name(),
        ca - 1,
        cw - 1,
        acc - 1
    );
    let addend: String = match spec.datapath {
        Datapath::TwosComplement => {
            let pw = ca + cw;
            let ao = if a.signed() {
                "$signed(a)".to_string()
            } else {
                "$signed({1'b0, a})".to_string()
            };
            let wo = if w.signed() {
                "$signed(w)".to_string()
            } else {
                "$signed({1'b0, w})".to_string()
            };
            let _ = writeln!(v, "  wire signed [{}:0] prod = {ao} * {wo};", pw - 1);
            let ext = if signed_acc {
                sext("prod", pw, acc)
            } else {
                zext("prod", pw, acc)
            };
            let _ = writeln!(v, "  wire [{}:0] addend = {ext};", acc - 1);
            "addend".into()
        }
        Datapath::SignMagnitude { sign } => {
            let (sa, siga, xa) = decode(&mut v, "a", "a", a);
            let (sw, sigw, xw) = decode(&mut v, "w", "w", w);
            let pm = a.sig_bits() + w.sig_bits();
            let _ = writeln!(v, "  wire [{}:0] prod = {siga} * {sigw};", pm - 1);
            let f = spec.frame_bits();
            // Shift amount: sum of the effective exponents (each >= 1), so the frame drops
            // one low bit per minifloat operand.
            let xs: Vec<(String, u32)> = [xa, xw].into_iter().flatten().collect();
            let k = xs.len() as u32;
            let s = match (sa, sw) {
                (Some(x), Some(y)) => {
                    let _ = writeln!(v, "  wire s = {x} ^ {y};");
                    Some("s".to_string())
                }
                (Some(x), None) | (None, Some(x)) => Some(x),
                (None, None) => None,
            };
            let shb = match xs.len() {
                0 => 0,
                1 => xs[0].1,
                _ => xs[0].1.max(xs[1].1) + 1,
            };
            if k > 0 {
                let sum = xs
                    .iter()
                    .map(|(n, _)| n.clone())
                    .collect::<Vec<_>>()
                    .join(" + ");
                let _ = writeln!(v, "  wire [{}:0] sh = {sum};", shb - 1);
            }
            let magnitude = |v: &mut String| {
                if k > 0 {
                    let _ = writeln!(
                        v,
                        "  wire [{}:0] wide = {} << sh;",
                        f + k - 1,
                        zext("prod", pm, f + k)
                    );
                    let _ = writeln!(v, "  wire [{}:0] mag = wide[{}:{k}];", f - 1, f + k - 1);
                } else {
                    let _ = writeln!(v, "  wire [{}:0] mag = {};", f - 1, zext("prod", pm, f));
                }
                let _ = writeln!(v, "  wire [{}:0] xe = {};", acc - 1, zext("mag", f, acc));
            };
            match (s, sign) {
                (None, _) => {
                    magnitude(&mut v);
                    "xe".into()
                }
                (Some(s), SignStyle::AddSub) => {
                    magnitude(&mut v);
                    let _ = writeln!(v, "  wire [{}:0] xs = xe ^ {{{acc}{{{s}}}}};", acc - 1);
                    // One expression, so the XOR folds into the adder LUTs and the sign
                    // becomes the carry-in.
                    format!("xs + {s}")
                }
                (Some(s), SignStyle::NegateAfterShift) => {
                    magnitude(&mut v);
                    let _ = writeln!(v, "  wire [{}:0] addend = {s} ? -xe : xe;", acc - 1);
                    "addend".into()
                }
                (Some(s), SignStyle::NegateBeforeShift) => {
                    let _ = writeln!(
                        v,
                        "  wire [{pm}:0] sprod = {s} ? -{{1'b0, prod}} : {{1'b0, prod}};"
                    );
                    let fw = f + k + 1;
                    let _ = writeln!(
                        v,
                        "  wire [{}:0] sprod_x = {};",
                        fw - 1,
                        sext("sprod", pm + 1, fw)
                    );
                    if k > 0 {
                        let _ = writeln!(v, "  wire [{}:0] swide = sprod_x << sh;", fw - 1);
                        let _ = writeln!(v, "  wire [{}:0] sframe = swide[{}:{k}];", f, fw - 1);
                    } else {
                        let _ = writeln!(v, "  wire [{}:0] sframe = sprod_x;", f);
                    }
                    let _ = writeln!(
                        v,
                        "  wire [{}:0] addend = {};",
                        acc - 1,
                        sext("sframe", f + 1, acc)
                    );
                    "addend".into()
                }
            }
        }
    };
    let _ = writeln!(
        v,
        "  always @(posedge clk) begin\n    if (rst) acc <= {acc}'d0;\n    else if (en) acc <= acc + {addend};\n  end\nendmodule"
    );
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for d in [
            Datapath::TwosComplement,
            Datapath::SignMagnitude {
                sign: SignStyle::AddSub,
            },
            Datapath::SignMagnitude {
                sign: SignStyle::NegateBeforeShift,
            },
            Datapath::SignMagnitude {
                sign: SignStyle::NegateAfterShift,
            },
        ] {
            assert_eq!(Datapath::from_name(d.name()), Some(d));
        }
    }

    #[test]
    fn rejects_tc_for_floats() {
        let s = MacSpec {
            act: Operand::float(4, 3, true),
            wt: Operand::int(4, true),
            n: 16,
            datapath: Datapath::TwosComplement,
        };
        assert!(generate_verilog(&s).is_err());
    }

    #[test]
    fn module_has_ports_and_width() {
        let s = MacSpec::new(Operand::float(4, 3, true), Operand::float(4, 3, true), 4608);
        let v = generate_verilog(&s).expect("verilog");
        assert!(v.contains("output reg [49:0] acc"), "{v}");
        assert!(v.contains("input wire [7:0] a"));
        assert!(v.contains("endmodule"));
    }
}
