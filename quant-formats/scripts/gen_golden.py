#!/usr/bin/env python3
"""Generate the golden tables in quant-formats/tests/golden/ (committed; Rust tests read them).

Run from the workspace root with the pinned venv (scripts/requirements.txt):
    .venv/bin/python quant-formats/scripts/gen_golden.py
Pinned: numpy==2.3.5 ml_dtypes==0.6.0 onnx==1.23.2 qonnx==1.0.0. Output is deterministic
(fixed seeds). Each case set is a little-endian u32 stream of (input f32 bits, expected bits)
pairs, described by an entry in manifest.json:
  reference  ml_dtypes | onnx | qonnx
  op         decode   : input is a code, expected is the f32 value bits
             round    : expected = Q(input) (scale 1), f32 bits
             code     : expected = code of Q(input / scale)     (ONNX QuantizeLinear)
             fakequant: expected = Q(input / scale) * scale     (QONNX)
  format     mfq format string;  rounding  mfq rounding name;  scale  f32
  compare    bits (bit-exact, NaN == NaN) | value (== on floats, +0 == -0, NaN == NaN)
"""
import json
import os
import sys

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from qonnx.custom_op.general.floatquant import float_quant
from qonnx.custom_op.general.intquant import int_quant

EXPECTED = {"numpy": "2.3.5", "ml_dtypes": "0.6.0", "onnx": "1.23.2"}
for mod, want in [(np, EXPECTED["numpy"]), (ml_dtypes, EXPECTED["ml_dtypes"]), (onnx, EXPECTED["onnx"])]:
    if mod.__version__ != want:
        sys.exit(f"{mod.__name__} {mod.__version__} found, {want} pinned")

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")
os.makedirs(OUT, exist_ok=True)
manifest = []


def write(name, reference, op, fmt, inputs_bits, expected_bits, rounding="half-even", scale=1.0, compare="bits",
          excluded=0, why=None):
    a = np.empty(2 * len(inputs_bits), dtype="<u4")
    a[0::2] = np.asarray(inputs_bits, dtype=np.uint32)
    a[1::2] = np.asarray(expected_bits, dtype=np.uint32)
    a.tofile(os.path.join(OUT, name + ".bin"))
    manifest.append(dict(file=name + ".bin", reference=reference, op=op, format=fmt, rounding=rounding,
                         scale=float(np.float32(scale)), compare=compare, count=len(inputs_bits)))
    if excluded:
        manifest[-1]["excluded"] = int(excluded)
        manifest[-1]["excluded_why"] = why


def f32bits(x):
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def probe_inputs(values, rng, n_random=9000, max_mid=8000, specials=True, max_grid=2000):
    """Inputs for a format whose finite values (f64, sorted, distinct) are `values`."""
    v = np.asarray(values, dtype=np.float64)
    pos = v[v > 0]
    mx, mn = pos.max(), pos.min()
    mids = (v[:-1] + v[1:]) / 2.0
    mids = mids[np.asarray(mids, np.float32).astype(np.float64) == mids]
    if len(mids) > max_mid:
        mids = rng.choice(mids, max_mid, replace=False)
    m32 = mids.astype(np.float32)
    if len(v) > max_grid:
        v = rng.choice(v, max_grid, replace=False)
    xs = [v.astype(np.float32), m32, np.nextafter(m32, np.float32(np.inf)), np.nextafter(m32, np.float32(-np.inf))]
    # Random over the whole range: log-uniform magnitude from min/4 to 4*max, random sign.
    lo, hi = np.log2(mn / 4), np.log2(min(mx * 4, 3e38))
    r = np.exp2(rng.uniform(lo, hi, n_random)) * rng.choice([-1.0, 1.0], n_random)
    xs.append(r.astype(np.float32))
    edge = [0.0, -0.0, mx, -mx, mx * 1.01, -mx * 1.01, mx * 1.5, mx * 2.5, 1e30, -1e30, 3e38,
            mn / 2, -mn / 2, mn * 0.3, mn * 0.7, 1e-40, -1e-40, 1e-45]
    if specials:
        edge += [np.inf, -np.inf, np.nan, -np.nan]
    xs.append(np.asarray(edge, dtype=np.float32))
    return np.concatenate(xs).astype(np.float32)


rng = np.random.default_rng(20261128)

# ---------------------------------------------------------------- (a) ml_dtypes
# ml_dtypes `astype` semantics: round to nearest even, overflow -> NaN (types with NaN) or
# inf (IEEE types); fp6/fp4 have neither and saturate. mfq: the preset, `:nonsat` when the type
# has a NaN. NaN inputs are left out for fp6/fp4 (ml_dtypes turns them into a zero of the
# opposite sign; mfq fake quantization keeps NaN and encode gives +0).
ML = [
    ("float8_e4m3fn", "fp8-e4m3fn:nonsat", 8, True),
    ("float8_e4m3fnuz", "fp8-e4m3fnuz:nonsat", 8, True),
    ("float8_e4m3b11fnuz", "fp8-e4m3b11fnuz:nonsat", 8, True),
    ("float8_e5m2", "fp8-e5m2:nonsat", 8, True),
    ("float8_e5m2fnuz", "fp8-e5m2fnuz:nonsat", 8, True),
    ("float8_e4m3", "fp8-e4m3:nonsat", 8, True),
    ("float8_e3m4", "fp8-e3m4:nonsat", 8, True),
    ("float6_e2m3fn", "fp6-e2m3", 6, False),
    ("float6_e3m2fn", "fp6-e3m2", 6, False),
    ("float4_e2m1fn", "fp4-e2m1", 4, False),
    ("float8_e8m0fnu", "e8m0:nonsat", 8, True),
    ("bfloat16", "bf16:nonsat", 16, True),
]
for tname, fmt, bits, has_nan in ML:
    t = getattr(ml_dtypes, tname)
    store = np.uint16 if bits == 16 else np.uint8
    codes = np.arange(1 << bits, dtype=np.uint32)
    vals = codes.astype(store).view(t).astype(np.float32)
    write(f"mldtypes_{tname}_decode", "ml_dtypes", "decode", fmt, codes, f32bits(vals))
    finite = np.unique(vals[np.isfinite(vals)].astype(np.float64))
    xs = probe_inputs(finite, rng, specials=has_nan)
    if not has_nan:
        xs = np.concatenate([xs, np.asarray([np.inf, -np.inf], np.float32)])
    excluded, why = 0, None
    if tname == "float8_e8m0fnu":
        # ml_dtypes rounds f32 subnormal inputs by their bit pattern (0x00526edd, 1.29 * 2^-127,
        # becomes 2^-126); mfq rounds to the nearest value. Those inputs are left out.
        b = f32bits(xs)
        keep = ~((b & 0x7F800000) == 0) | ((b & 0x7FFFFFFF) <= 0x00400000)
        excluded, why = int((~keep).sum()), "f32 subnormal inputs above 2^-127 (ml_dtypes rounds their bit pattern)"
        xs = xs[keep]
    ys = xs.astype(t).astype(np.float32)
    write(f"mldtypes_{tname}_round", "ml_dtypes", "round", fmt, f32bits(xs), f32bits(ys), excluded=excluded, why=why)

# numpy float16 (IEEE binary16) for the fp16 preset (decode of every code is checked against
# the `half` crate in tests/cross_checks.rs).
codes = np.arange(1 << 16, dtype=np.uint32)
vals = codes.astype(np.uint16).view(np.float16).astype(np.float32)
xs = probe_inputs(np.unique(vals[np.isfinite(vals)].astype(np.float64)), rng, max_mid=4000)
write("numpy_float16_round", "ml_dtypes", "round", "fp16:nonsat", f32bits(xs), f32bits(xs.astype(np.float16).astype(np.float32)))

# ml_dtypes integers: `astype` truncates toward zero (and wraps out of range, which mfq does
# not model): decode of every code, and toward-zero rounding of in-range inputs.
for tname, fmt, lo, hi in [("int2", "int2", -2, 1), ("int4", "int4", -8, 7), ("uint2", "uint2", 0, 3), ("uint4", "uint4", 0, 15)]:
    t = getattr(ml_dtypes, tname)
    bits = int(fmt.strip("uint"))
    codes = np.arange(1 << bits, dtype=np.uint32)
    raw = codes.astype(np.uint8)
    # ml_dtypes stores sub-byte ints one per byte, sign-extended for signed types.
    if lo < 0:
        raw = np.where(codes >= (1 << (bits - 1)), codes.astype(np.int64) - (1 << bits), codes).astype(np.int8).view(np.uint8)
    vals = raw.view(t).astype(np.float32)
    write(f"mldtypes_{tname}_decode", "ml_dtypes", "decode", fmt, codes, f32bits(vals))
    xs = np.concatenate([rng.uniform(lo - 0.999, hi + 0.999, 10000), np.arange(lo, hi + 1) + 0.5, np.arange(lo, hi + 1) - 0.5])
    xs = xs[(xs > lo - 1) & (xs < hi + 1)].astype(np.float32)
    write(f"mldtypes_{tname}_round", "ml_dtypes", "round", fmt, f32bits(xs), f32bits(xs.astype(t).astype(np.float32)),
          rounding="toward-zero", compare="value")

# ---------------------------------------------------------------- (b) ONNX QuantizeLinear
def quantize_linear(x, scale, elem_type, saturate, opset):
    zp = helper.make_tensor("zp", elem_type, [], [0])
    attrs = {} if saturate is None else {"saturate": saturate}
    node = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], **attrs)
    g = helper.make_graph([node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                          [helper.make_tensor_value_info("y", elem_type, [None])],
                          [helper.make_tensor("s", TensorProto.FLOAT, [], [scale]), zp])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    (y,) = ReferenceEvaluator(m).run(None, {"x": x})
    return y


ONNX_FP8 = [
    (TensorProto.FLOAT8E4M3FN, "fp8-e4m3fn", ml_dtypes.float8_e4m3fn),
    (TensorProto.FLOAT8E4M3FNUZ, "fp8-e4m3fnuz", ml_dtypes.float8_e4m3fnuz),
    (TensorProto.FLOAT8E5M2, "fp8-e5m2", ml_dtypes.float8_e5m2),
    (TensorProto.FLOAT8E5M2FNUZ, "fp8-e5m2fnuz", ml_dtypes.float8_e5m2fnuz),
]
for et, preset, t in ONNX_FP8:
    vals = np.arange(256, dtype=np.uint8).view(t).astype(np.float32)
    finite = np.unique(vals[np.isfinite(vals)].astype(np.float64))
    for saturate in (1, 0):
        for scale in (1.0, 0.37):
            xs = (probe_inputs(finite, rng, n_random=2000, max_mid=3000) * np.float32(scale)).astype(np.float32)
            y = quantize_linear(xs, scale, et, saturate, 21)
            codes = np.asarray(y).view(np.uint8).astype(np.uint32)
            fmt = preset if saturate else preset + ":nonsat"
            write(f"onnx_ql_{preset}_sat{saturate}_s{scale}", "onnx", "code", fmt, f32bits(xs), codes, scale=scale)

# Integer QuantizeLinear (round half to even, saturate) for int4/uint4/int8/uint8/int16.
for et, fmt, lo, hi, opset in [(TensorProto.INT4, "int4", -8, 7, 21), (TensorProto.UINT4, "uint4", 0, 15, 21),
                               (TensorProto.INT8, "int8", -128, 127, 21), (TensorProto.UINT8, "uint8", 0, 255, 21),
                               (TensorProto.INT16, "int16", -32768, 32767, 21)]:
    scale = 0.05
    halves = np.arange(lo - 3, hi + 3) + 0.5
    if len(halves) > 3000:
        halves = rng.choice(halves, 3000, replace=False)
    xs = np.concatenate([rng.uniform(lo * 1.3 - 2, hi * 1.3 + 2, 3000) * scale, halves * scale]).astype(np.float32)
    y = np.asarray(quantize_linear(xs, scale, et, None, opset))
    bits = int(fmt.strip("uint"))
    codes = (y.astype(np.int64) & ((1 << bits) - 1)).astype(np.uint32)
    write(f"onnx_ql_{fmt}", "onnx", "code", fmt, f32bits(xs), codes, scale=scale)

# ---------------------------------------------------------------- (c) QONNX
# FloatQuant: its reference code always produces subnormals (has_subnormal is ignored) and
# turns +-inf into NaN even when saturating, so inputs exclude inf; its max_val clamp is tested
# at the maxima mfq formats have (generic, OCP-FN style, IEEE style).
FLOAT_CASES = []
for e, m in [(2, 1), (2, 3), (3, 2), (4, 3), (5, 2), (3, 4), (4, 1), (1, 2), (2, 2), (5, 4), (6, 3), (3, 0), (4, 0)]:
    d = 2 ** (e - 1) - 1
    for bias in sorted({d, d + 2, d - 2}):
        FLOAT_CASES.append((e, m, bias, "none"))
    if m > 0:
        FLOAT_CASES.append((e, m, d, "fn"))
    if e >= 2 and m > 0:
        FLOAT_CASES.append((e, m, d, "ieee"))
modes = ["ROUND", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN"]
mfq_mode = {"ROUND": "half-even", "CEIL": "ceil", "FLOOR": "floor", "UP": "away", "DOWN": "toward-zero",
            "HALF_UP": "half-away", "HALF_DOWN": "half-toward-zero"}
for i, (e, m, bias, spec) in enumerate(FLOAT_CASES):
    fmt = f"e{e}m{m}:bias={bias}" + ("" if spec == "none" else ":" + spec)
    # Grid of the mfq format (positive part), computed from the definition.
    top = 2 ** e - 1
    vals = {0.0}
    for p in range(0, top + 1):
        for dm in range(2 ** m):
            if spec == "ieee" and p == top:
                continue
            if spec == "fn" and p == top and dm == 2 ** m - 1:
                continue
            vals.add(2.0 ** (1 - bias) * dm / 2 ** m if p == 0 else 2.0 ** (p - bias) * (1 + dm / 2 ** m))
    pos = np.array(sorted(vals))
    max_val = pos.max()
    grid = np.concatenate([-pos[::-1], pos[1:]])
    for signed in (1, 0):
        sfmt = fmt if signed else fmt + ":unsigned"
        for sat in ((1, 0) if spec != "none" else (1,)):
            mode = modes[(i + signed + sat) % len(modes)] if (signed or sat == 0) else "ROUND"
            for mode_ in [mode]:
                scale = np.float32(0.75 if i % 2 else 1.0)
                xs = probe_inputs(grid, rng, n_random=250, max_mid=200, specials=False, max_grid=100)
                xs = np.concatenate([xs, np.asarray([np.nan], np.float32)])
                xs = (xs * scale).astype(np.float32)
                y = float_quant(xs.copy(), scale, e, m, exponent_bias=bias, signed=bool(signed), max_val=max_val,
                                has_inf=spec == "ieee", has_nan=spec != "none", has_subnormal=True,
                                rounding_mode=mode_, saturation=bool(sat))
                y = np.asarray(y).astype(np.float32)
                # Exact re-evaluation in float64: QONNX's HALF_UP/HALF_DOWN compute
                # floor(|x| + 0.5) in float32, which rounds 0.49999997 + 0.5 up to 1.
                y64 = float_quant(xs.astype(np.float64), np.float64(scale), e, m, exponent_bias=bias,
                                  signed=bool(signed), max_val=max_val, has_inf=spec == "ieee",
                                  has_nan=spec != "none", has_subnormal=True, rounding_mode=mode_,
                                  saturation=bool(sat)).astype(np.float32)
                keep = (y == y64) | (np.isnan(y) & np.isnan(y64))
                why = "float32 artefact of floor(|x| + 0.5) in QONNX HALF_UP/HALF_DOWN"
                if not signed and not sat and spec == "ieee":
                    # QONNX sends negative values of an unsigned non-saturating IEEE format to
                    # -inf, which such a format cannot encode; mfq gives NaN.
                    neg_ovf = (xs < 0) & (y != 0)
                    keep &= ~neg_ovf
                    why += "; negative inputs of an unsigned IEEE format (QONNX -inf, mfq NaN)"
                excluded = int((~keep).sum())
                name = f"qonnx_floatquant_{i}_{'s' if signed else 'u'}{sat}_{mode_.lower()}"
                write(name, "qonnx", "fakequant", sfmt + ("" if sat else ":nonsat"), f32bits(xs[keep]), f32bits(y[keep]),
                      rounding=mfq_mode[mode_], scale=scale, compare="value", excluded=excluded,
                      why=why if excluded else None)

# IntQuant: 2..8 bits, signed/unsigned, narrow or not, every rounding mode.
for bits in range(2, 9):
    for signed in (1, 0):
        for narrow in (0, 1):
            for mode in modes:
                fmt = ("int" if signed else "uint") + str(bits) + ("n" if narrow else "")
                scale = np.float32(0.1)
                qmax = 2 ** (bits - 1) if signed else 2 ** bits
                k = np.arange(-qmax - 2, qmax + 2)
                if len(k) > 80:
                    k = np.concatenate([k[:8], rng.choice(k[8:-8], 64, replace=False), k[-8:]])
                xs = np.concatenate([rng.uniform(-qmax * 1.2, qmax * 1.2, 150), k + 0.5, k + 0.25, k, [0.0, -0.0, np.nan]])
                xs = (xs.astype(np.float32) * scale).astype(np.float32)
                y = int_quant(xs.copy(), scale, np.float32(0), np.float32(bits), signed, narrow, mode)
                y = np.asarray(y).astype(np.float32)
                write(f"qonnx_intquant_{fmt}_{mode.lower()}", "qonnx", "fakequant", fmt, f32bits(xs), f32bits(y),
                      rounding=mfq_mode[mode], scale=scale, compare="value")

with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump({"generator": "quant-formats/scripts/gen_golden.py", "versions": EXPECTED, "cases": manifest}, f, indent=0)
total, excl = {}, {}
for c in manifest:
    total[c["reference"]] = total.get(c["reference"], 0) + c["count"]
    excl[c["reference"]] = excl.get(c["reference"], 0) + c.get("excluded", 0)
print("golden cases per reference:", total, "excluded known reference quirks:", excl)
