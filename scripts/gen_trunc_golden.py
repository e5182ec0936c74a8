"""Writes tests/golden/qonnx_trunc.json: QONNX Trunc cases computed by qonnx 1.0's own
implementation (`qonnx.custom_op.general.trunc.trunc_v1` / `trunc_v2`), checked by
`tests/model_trunc.rs`. Run from the workspace root with the pinned venv:
`.venv/bin/python scripts/gen_trunc_golden.py`.
"""

import json

import numpy as np
from qonnx.custom_op.general.trunc import trunc_v1, trunc_v2

rng = np.random.default_rng(20261128)
f32 = np.float32


def arr(a):
    a = np.asarray(a, dtype=f32)
    return {"shape": list(a.shape), "data": [float(v) for v in a.ravel()]}


cases = []
# Inputs on (and between) the input grid so every rounding path is exercised.
for version, rounding, signed, narrow, per_channel, zp, ibits, obits, shift in [
    (1, "FLOOR", 1, 0, False, 0.0, 8, 4, 0),
    (1, "ROUND", 1, 0, False, 0.0, 8, 5, 0),
    (1, "CEIL", 1, 0, True, 2.0, 10, 6, 0),
    (2, "FLOOR", 1, 0, False, 0.0, 8, 4, 4),
    (2, "ROUND", 1, 1, True, 0.0, 8, 4, 3),
    (2, "CEIL", 0, 0, False, 3.0, 8, 5, 3),
    (2, "FLOOR", 0, 1, True, 0.0, 12, 6, 5),
    (2, "HALF_EVEN", 1, 0, False, 0.0, 16, 8, 8),
]:
    shape = (2, 3, 4, 4)
    if per_channel:
        scale = (2.0 ** rng.integers(-6, -2, size=(1, 3, 1, 1))).astype(f32)
    else:
        scale = np.array(2.0**-5, dtype=f32)
    lo = -(2 ** (ibits - 1)) if signed else 0
    hi = 2 ** (ibits - 1) - 1 if signed else 2**ibits - 1
    q = rng.integers(lo, hi + 1, size=shape).astype(f32)
    x = ((q - f32(zp)) * scale + rng.uniform(-0.3, 0.3, size=shape).astype(f32) * scale).astype(f32)
    zeropt = np.array(zp, dtype=f32)
    in_bw = np.array(ibits, dtype=f32)
    out_bw = np.array(obits, dtype=f32)
    if version == 1:
        y = trunc_v1(x, scale, zeropt, in_bw, out_bw, rounding)
        inputs = [arr(x), arr(scale), arr(zeropt), arr(in_bw), arr(out_bw)]
    else:
        out_scale = (scale * f32(2.0**shift)).astype(f32)
        y = trunc_v2(x, scale, zeropt, in_bw, narrow, signed, out_scale, out_bw, rounding)
        inputs = [arr(x), arr(scale), arr(zeropt), arr(in_bw), arr(out_scale), arr(out_bw)]
    cases.append(
        {
            "version": version,
            "rounding_mode": rounding,
            "signed": signed,
            "narrow": narrow,
            "inputs": inputs,
            "output": arr(y),
        }
    )

with open("tests/golden/qonnx_trunc.json", "w") as f:
    json.dump({"generator": "scripts/gen_trunc_golden.py (qonnx 1.0.0)", "cases": cases}, f)
print(f"wrote {len(cases)} cases")
