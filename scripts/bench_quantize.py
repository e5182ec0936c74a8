#!/usr/bin/env python3
"""Speed of `mfq quantize` against onnxruntime's `quantize_static`, in one run on one machine.

Both calibrate W2 (EfficientNet-Lite0) on the same 32 calibration photos with min/max ranges,
quantize to int8 weights (per channel) and int8 activations, and write a QDQ model:
  mfq:  `mfq quantize W2 -o OUT --weights int8 --acts int8 --calib-method minmax --export qdq`
        (the whole process: start-up, model load, calibration, quantization, export), wall time;
  ORT:  `onnxruntime.quantization.quantize_static(W2, OUT, reader, quant_format=QDQ,
        per_channel=True, activation_type=QInt8, weight_type=QInt8, calibrate_method=MinMax)`,
        wall time of the call; the CalibrationDataReader yields the photos one per inference
        (the documented pattern) and, as a second measurement, all 32 in one batch.
Each is run `--repeat` times (best time kept). Prints the times and the ratio mfq / ORT against
ORT's faster variant; the goal is a ratio of at most 0.5.

Usage: bench_quantize.py MFQ_BINARY [--model fixtures/cache/w2/w2.onnx]
           [--calib fixtures/cache/w2/calib.npz] [--samples 32] [--repeat 3] [--json OUT]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mfq")
    ap.add_argument("--model", default="fixtures/cache/w2/w2.onnx")
    ap.add_argument("--calib", default="fixtures/cache/w2/calib.npz")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    x = np.load(args.calib)["input"][: args.samples].astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self, batch):
            self.items = iter([{"input": x[i:i + batch]} for i in range(0, len(x), batch)])

        def get_next(self):
            return next(self.items, None)

    res = {"mfq": [], "ort_per_image": [], "ort_one_batch": []}
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "calib32.npz")
        np.savez(data, input=x)
        for _ in range(args.repeat):
            t = time.perf_counter()
            r = subprocess.run([args.mfq, "quantize", args.model, "-o", os.path.join(d, "mfq.onnx"),
                                "--weights", "int8", "--acts", "int8", "--calib", data,
                                "--calib-method", "minmax", "--export", "qdq", "-q"],
                               capture_output=True, text=True)
            res["mfq"].append(time.perf_counter() - t)
            if r.returncode != 0:
                sys.exit(f"mfq failed:\n{r.stderr}")
            for key, batch in (("ort_per_image", 1), ("ort_one_batch", len(x))):
                t = time.perf_counter()
                quantize_static(args.model, os.path.join(d, f"{key}.onnx"), Reader(batch),
                                quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax)
                res[key].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in res.items()}
    ort_best = min(best["ort_per_image"], best["ort_one_batch"])
    ratio = best["mfq"] / ort_best
    print(f"W2, {len(x)} calibration photos, int8 QDQ, min/max (best of {args.repeat}; "
          f"onnxruntime {onnxruntime.__version__}, {os.cpu_count()} cores)")
    print(f"mfq quantize (whole process):          {best['mfq']:.2f} s")
    print(f"ORT quantize_static, 1 photo per run:  {best['ort_per_image']:.2f} s")
    print(f"ORT quantize_static, 32 photos at once: {best['ort_one_batch']:.2f} s")
    print(f"ratio mfq / ORT (faster variant): {ratio:.2f} (goal <= 0.5: "
          f"{'met' if ratio <= 0.5 else 'not met'})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": res, "best": best, "ratio": ratio}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
