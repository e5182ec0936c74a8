#!/usr/bin/env python3
"""W2 (EfficientNet-Lite0) W8A8 and W4A8 with `mfq quantize`: runs each configuration on all 20
labelled photos (the W8A8 ones also on the 72 calibration photos, calibrated on the 20), runs
onnxruntime's own int8 quantizer (`quantize_static`) on the same folds as the peer reference, then
writes docs/reports/w2-quantize.md with the tables and the exact commands.

Usage: .venv/bin/python scripts/w2_quantize_report.py MFQ_BINARY [--out docs/reports/w2-quantize.md]
       [--calib-samples 72]   (needs numpy and onnxruntime: the test venv has both)
"""
import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile

# (kind, weights, acts, passes, extra flags); rows whose kind starts with "W8A8" also run the
# second fold
CB = "fold-batch-norm,correct-bias"
LR = "fold-batch-norm,learned-rounding,correct-bias"
LR_FLAGS = ["--calib-method", "mse", "--pass-option", "learned-rounding.iterations=300"]
LR_KIND = "W8A8 + learned-rounding + correct-bias, MSE clipping"
CONFIGS = [
    ("W8A8", "int8", "int8", None, []),
    ("W8A8", "e4m3", "e4m3", None, []),
    ("W8A8", "fp8-e4m3fn", "fp8-e4m3fn", None, []),
    ("W8A8 + correct-bias", "int8", "int8", CB, []),
    ("W8A8 + correct-bias", "e4m3", "e4m3", CB, []),
    ("W8A8 + correct-bias", "e4m3", "e4m3:unsigned", CB, []),
    (LR_KIND, "int8", "int8", LR, LR_FLAGS),
    ("W4A8", "int4", "int8", None, []),
    ("W4A8", "e2m1", "int8", None, []),
    # where the W8A8 loss comes from: one side quantized, the other kept at fp16 (near-lossless)
    ("W8 only", "int8", "fp16", None, []),
    ("W8 only", "e4m3", "fp16", None, []),
    ("A8 only", "fp16", "int8", None, []),
    ("A8 only", "fp16", "e4m3", None, []),
]


def tag_of(w, a, passes):
    suffix = {None: "", CB: "-cb", LR: "-lr-cb"}[passes]
    return f"{w}-{a}".replace(":", "-") + suffix


def ort_peer(model, calib, ev):
    """onnxruntime's `quantize_static` (QDQ, int8 weights per channel and int8 activations, the
    MinMax and Percentile 99.999 calibrators) on the same two folds: top-1 agreement with the
    float model run by onnxruntime, and output SQNR. Each quantized file runs twice: with
    onnxruntime's default graph optimizations (its fused integer kernels, what a user of
    onnxruntime gets on this CPU) and with them disabled (the QDQ graph evaluated as written, the
    counterpart of mfq's simulation). Returns rows (method, how, k1, n1, k2, n2, s1, s2) and the
    onnxruntime version."""
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    def run(path, x, optimized=True):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        if not optimized:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])

    def sqnr(f, q):
        return 10 * np.log10(float((f.astype(np.float64) ** 2).sum())
                             / float(((f.astype(np.float64) - q) ** 2).sum()))

    xc = np.load(calib)["input"].astype(np.float32)
    xe = np.load(ev)["input"].astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for method, extra in ((CalibrationMethod.MinMax, {}),
                              (CalibrationMethod.Percentile, {"CalibPercentile": 99.999})):
            res = {True: [], False: []}  # optimized -> [(k, n, sqnr) per fold]
            for fold, (c, e) in enumerate(((xc, xe), (xe, xc)), 1):
                class Reader(CalibrationDataReader):
                    def __init__(self):
                        self.it = iter([{"input": c[i:i + 1]} for i in range(len(c))])

                    def get_next(self):
                        return next(self.it, None)

                out = os.path.join(d, f"ort-{method.name}-{fold}.onnx")
                quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8, calibrate_method=method,
                                extra_options=extra)
                f = run(model, e)
                for optimized, folds in res.items():
                    q = run(out, e, optimized)
                    folds.append((int((f.argmax(1) == q.argmax(1)).sum()), len(e), sqnr(f, q)))
            for optimized, ((k1, n1, s1), (k2, n2, s2)) in res.items():
                how = ("integer kernels (default optimizations)" if optimized
                       else "QDQ as written (optimizations off)")
                rows.append((method.name, how, k1, n1, k2, n2, s1, s2))
    return rows, ort.__version__


def pct(v):
    return "-" if v is None else f"{100 * v:.1f} %"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mfq")
    ap.add_argument("--out", default="docs/reports/w2-quantize.md")
    ap.add_argument("--calib-samples", type=int, default=72)
    ap.add_argument("--display-binary", default="target/release/mfq",
                    help="program name shown in the documented commands")
    args = ap.parse_args()
    model = "fixtures/cache/w2/w2.onnx"
    calib = "fixtures/cache/w2/calib.npz"
    ev = "fixtures/cache/w2/eval.npz"
    rows, cmds, folds = [], [], []
    with tempfile.TemporaryDirectory() as d:
        for kind, w, a, passes, extra in CONFIGS:
            tag = tag_of(w, a, passes)
            pflags = (["--passes", passes] if passes else []) + extra
            rep = os.path.join(d, tag + ".json")
            cmd = [args.mfq, "quantize", model, "-o", f"w2-{tag}.onnx", "--weights", w, "--acts", a,
                   *pflags, "--calib", calib, "--calib-samples", str(args.calib_samples),
                   "--eval", ev, "--report", f"w2-{tag}.json", "-q"]
            cmds.append(shlex.join([args.display_binary] + cmd[1:]))
            run = list(cmd)
            run[run.index("-o") + 1] = os.path.join(d, tag + ".onnx")
            run[run.index("--report") + 1] = rep
            r = subprocess.run(run, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"{tag} failed:\n{r.stderr}")
            j = json.load(open(rep))
            e = j["evaluation"]
            worst = min(e["tensors"], key=lambda t: t["sqnr_alone_db"])
            rows.append((kind, w, a, j["export"]["style"], e, worst,
                         j["timings_s"]["total"]))
            if not kind.startswith("W8A8"):
                continue
            # Second fold: calibrate on the 20 labelled photos, evaluate on the 72 calibration
            # photos, so that every available photo is scored by a model not calibrated on it.
            rep2 = os.path.join(d, tag + "-fold2.json")
            cmd2 = [args.mfq, "quantize", model, "-o", os.path.join(d, tag + "-fold2.onnx"),
                    "--weights", w, "--acts", a, *pflags, "--calib", ev, "--calib-samples", "20",
                    "--eval", calib, "--report", rep2, "-q"]
            shown = list(cmd2)
            shown[shown.index("-o") + 1] = f"w2-{tag}-fold2.onnx"
            shown[shown.index("--report") + 1] = f"w2-{tag}-fold2.json"
            cmds.append(shlex.join([args.display_binary] + shown[1:]))
            r = subprocess.run(cmd2, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"{tag} fold 2 failed:\n{r.stderr}")
            folds.append((kind, w, a, e, json.load(open(rep2))["evaluation"]))
    peer, ort_version = ort_peer(model, calib, ev)
    n = rows[0][4]["samples"]
    lines = [
        f"# W2 EfficientNet-Lite0: W8A8 and W4A8 with `mfq quantize` ({datetime.date.today()})",
        "",
        f"All {n} labelled ImageNet photos of W2 (`fixtures/cache/w2/eval.npz`), calibration on "
        f"{args.calib_samples} of the 72 unlabelled calibration photos (`calib.npz`), default "
        "recipe otherwise: per-channel abs-max weights, percentile 99.999 activations, float "
        "scales, first and last layers in the same format, BN folded. fp32 reaches 18/20 top-1 "
        "(19/20 top-5), as onnxruntime does.",
        "",
        "| | weights | acts | export | fp32 top-1 | quantized top-1 | top-5 | top-1 agreement "
        "with fp32 | output SQNR (dB) | cosine | lowest tensor SQNR alone | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, w, a, style, e, worst, t in rows:
        lines.append(
            f"| {kind} | {w} | {a} | {style} | {pct(e['float_top1'])} | {pct(e['quant_top1'])} | "
            f"{pct(e['quant_top5'])} | {pct(e['top1_agreement'])} | {e['output_sqnr_db']:.2f} | "
            f"{e['output_cosine']:.4f} | {worst['tensor']} {worst['sqnr_alone_db']:.1f} dB | "
            f"{t:.1f} |")
    lines += [
        "",
        "**All available photos** (the brief asks for top-1 agreement over every available "
        "image): each W8A8 configuration is also calibrated on the 20 labelled photos and "
        "evaluated on the 72 calibration photos (agreement needs no labels), so each of the "
        "92 photos is scored by a model that was not calibrated on it.",
        "",
        "| | weights | acts | agreement, 20 labelled photos | agreement, 72 calibration photos "
        "| agreement, all 92 | output SQNR (dB), 20 / 72 |",
        "|---|---|---|---|---|---|---|",
    ]
    fold_counts = []
    for kind, w, a, e1, e2 in folds:
        n1, n2 = e1["samples"], e2["samples"]
        k1 = round(e1["top1_agreement"] * n1)
        k2 = round(e2["top1_agreement"] * n2)
        fold_counts.append((kind, w, a, k1, n1, k2, n2))
        lines.append(
            f"| mfq {kind} | {w} | {a} | {k1}/{n1} | {k2}/{n2} | {k1 + k2}/{n1 + n2} = "
            f"{pct((k1 + k2) / (n1 + n2))} | {e1['output_sqnr_db']:.2f} / "
            f"{e2['output_sqnr_db']:.2f} |")
    for method, how, k1, n1, k2, n2, s1, s2 in peer:
        lines.append(
            f"| onnxruntime {ort_version} `quantize_static`, {method}, {how} | int8 per channel | int8 | "
            f"{k1}/{n1} | {k2}/{n2} | {k1 + k2}/{n1 + n2} = {pct((k1 + k2) / (n1 + n2))} | "
            f"{s1:.2f} / {s2:.2f} |")
    lines += [
        "",
        f"W8A8 goal (top-1 agreement with fp32 ≥ 95 % on all available photos): "
        + "; ".join(f"{w}/{a}{kind[4:]} "
                    f"{pct((k1 + k2) / (n1 + n2))} over {n1 + n2} "
                    f"({'met' if (k1 + k2) / (n1 + n2) >= 0.95 else 'NOT met'})"
                    for kind, w, a, k1, n1, k2, n2 in fold_counts)
        + ". On the 20 labelled photos alone one disagreement is 5 points, so the 92-photo "
        "figure and the output SQNR are the finer measures (the calibration photos include "
        "scenes far from ImageNet: a deep-field sky, a retina, a microscope slide, where the "
        "float model's top two classes are close). onnxruntime's own int8 quantizer on the same "
        "folds (last rows) does not reach 95 % either. Run as written (graph optimizations off) "
        "its files are level with mfq's round-to-nearest int8; with onnxruntime's default "
        "optimizations its fused integer kernels lose about 9 dB more on this machine (an AMD "
        "EPYC with AVX2 but neither AVX-512 nor VNNI in /proc/cpuinfo; the same script gave "
        "18.8 / 18.7 dB with default optimizations on the machine of an earlier session), so "
        "what an onnxruntime user gets from an int8 QDQ file depends on the CPU. "
        "`correct-bias` (each layer's mean matched after its ReLU6, docs/passes.md) adds about "
        "5 dB of output SQNR; `learned-rounding` (AdaRound-style rounding of each layer's "
        "weights on the calibration photos, 300 iterations per layer) with `correct-bias` and "
        "MSE activation clipping adds about 1.5 dB more and meets the int8 goal. Measured by "
        "hand on the second fold (calibrated on the 20 labelled photos, 72 evaluated): MSE "
        "clipping with `correct-bias` alone gives 69/72 at 24.12 dB (percentile: 68/72 at "
        "23.80 dB), so most of the gain is the rounding; KL clipping collapses to 4.5 dB "
        "(it clips a ReLU6 output to 2.0). The same learned-rounding recipe with e4m3 weights "
        "and `e4m3:unsigned` activations gives 53/72 at 12.20 dB (correct-bias alone: 57/72 at "
        "11.54 dB): better rounding of the weights does not rescue e4m3, whose loss is in the "
        "activations. The `W8 only` / `A8 only` rows quantize one side and "
        "keep the other at fp16: generic e4m3 (3 mantissa bits, relative error up to 2^-4 per "
        "value) costs about 10 dB of output SQNR more than per-channel int8 on the weights and "
        "about 15 dB more than int8 on the activations; this network of 16 depthwise blocks "
        "amplifies per-tensor errors of 31–32 dB (e4m3) into an output SQNR near 10 dB. It is "
        "the number format, not a calibration choice (measured by hand on the 20 photos in an "
        "earlier session: minmax and MSE calibration 8.8 and 8.6 dB, `--first-last int8` 9.5 dB). "
        "`correct-bias` and `e4m3:unsigned` activations (e4m4 on the non-negative ReLU6 outputs: "
        "the sign bit becomes a mantissa bit) recover part of the gap, not all of it. W4A8 "
        "collapses with plain round-to-nearest per-channel weights (depthwise 3x3/5x5 kernels "
        "have 9–25 weights per channel); the PTQ passes are measured in docs/reports/passes.md.",
        "",
        "Commands (release binary; each writes the quantized model and its JSON report):",
        "",
        "```sh",
        *cmds,
        "```",
        "",
        f"Regenerate this file: `.venv/bin/python scripts/w2_quantize_report.py "
        f"{args.display_binary}` (onnxruntime runs in-process for the peer rows).",
        "",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
