#!/usr/bin/env python3
"""Peak RSS of `mfq quantize` calibrating W2 with 32 and with 256 samples.

W2's calibration set has 72 photos; a 256-sample set is built from them deterministically and
written to a temporary directory (the fixture files are only read): sample k is photo k mod 72
in variant k div 72 of
  0: as stored,  1: mirrored left-right,  2: shifted 16 pixels right (a crop of the photo padded
  by repeating its left edge),  3: mirrored and shifted.
The same file then feeds both runs (`--calib-samples 32` and `--calib-samples 256`, batch 32 so
both runs process full batches of the same shape,
percentile calibration with histograms), each timed with `/usr/bin/time -f %M` (peak resident
set size in KiB). Calibration memory is bounded when the difference is below the size of one
batch of activations; the script prints both and the verdict.

Usage: measure_calib_rss.py MFQ_BINARY [--model fixtures/cache/w2/w2.onnx]
           [--calib fixtures/cache/w2/calib.npz] [--batch 32] [--json OUT]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def build_256(calib, out):
    x = np.load(calib)["input"]
    n = len(x)
    samples = np.empty((256,) + x.shape[1:], dtype=np.float32)
    for k in range(256):
        img = x[k % n]
        v = k // n
        if v in (1, 3):
            img = img[:, :, ::-1]
        if v in (2, 3):
            img = np.concatenate([np.repeat(img[:, :, :1], 16, axis=2), img[:, :, :-16]], axis=2)
        samples[k] = img
    np.savez(out, input=samples)
    return samples.nbytes


def peak_rss_kib(cmd):
    r = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return int(r.stderr.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mfq")
    ap.add_argument("--model", default="fixtures/cache/w2/w2.onnx")
    ap.add_argument("--calib", default="fixtures/cache/w2/calib.npz")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "calib256.npz")
        nbytes = build_256(args.calib, data)
        res = {}
        for n in (32, 256):
            cmd = [args.mfq, "quantize", args.model, "-o", os.path.join(d, f"q{n}.onnx"),
                   "--weights", "int8", "--acts", "int8", "--calib", data,
                   "--calib-samples", str(n), "--batch", str(args.batch), "-q"]
            res[n] = peak_rss_kib(cmd)
            print(f"{n:4d} samples: peak RSS {res[n] / 1024:.1f} MiB", flush=True)
    # One batch of activations: the input batch, and the largest single activation tensor of
    # EfficientNet-Lite0 (96 channels at 112x112 after the first expand convolution).
    input_batch = args.batch * 3 * 224 * 224 * 4
    largest = args.batch * 96 * 112 * 112 * 4
    diff = (res[256] - res[32]) * 1024
    print(f"256-sample set: {nbytes / 2**20:.1f} MiB of float32 in {os.path.basename(data)}")
    print(f"difference 256 - 32: {diff / 2**20:.1f} MiB; one batch of {args.batch}: input "
          f"{input_batch / 2**20:.1f} MiB, largest activation {largest / 2**20:.1f} MiB")
    ok = diff < input_batch
    print("bounded: difference below one input batch" if ok else "NOT bounded")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rss_kib": res, "diff_bytes": diff, "input_batch_bytes": input_batch,
                       "largest_activation_batch_bytes": largest, "ok": ok}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
