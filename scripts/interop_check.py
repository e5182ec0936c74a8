#!/usr/bin/env python3
"""Interop check: mfq's exports run in onnxruntime, onnx's reference evaluator and qonnx with
mfq's own numbers.

For every (weights, acts) pair of the grid this script
  1. runs `mfq quantize` with `--export qonnx` (when QONNX can express the formats): the QONNX
     file is mfq's simulation graph plus idempotent weight quantizers;
  2. runs `mfq quantize` with `--export qdq` (when QDQ can express them);
  3. runs `mfq run` on the QONNX export (mfq's simulation; for MX weights, which QONNX cannot
     express, on mfq's QDQ export) to get mfq's outputs on a fixed batch;
  4. runs the QDQ export in onnxruntime (graph optimizations enabled and disabled) or, for
     opset >= 23 (fp4, e8m0 scales), in onnx.reference.ReferenceEvaluator; runs the QONNX
     export in qonnx's execute_onnx;
  5. requires max|ref - mfq| <= tol * max|ref| and the same top-1 on every sample, and counts how
     many outputs differ at all (onnxruntime's fused integer kernels may round differently).

Usage: interop_check.py MFQ_BINARY MODEL CALIB.npz EVAL.npz INPUT_NAME [--grid small|full]
           [--samples N] [--tol 1e-5] [--json OUT]
Exit 0 when every check passes, 1 otherwise. Prints a Markdown table.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

GRID_SMALL = [
    ("int8", "int8"), ("int4", "int8"), ("int2", "int4"), ("int3", "int5"), ("int6", "int7"),
    ("uint8", "int8"),
    ("e2m1", "e4m3"), ("e3m2", "e3m2"), ("e2m3", "e2m3"), ("e4m3", "e5m2"),
    ("fp8-e4m3fn", "fp8-e4m3fn"), ("fp8-e5m2", "fp8-e4m3fn"), ("fp8-e4m3fnuz", "fp8-e5m2fnuz"),
    ("fp4-e2m1", "int8"), ("mxfp4", "int8"), ("mxfp8", "fp8-e4m3fn"),
    ("int4", "e3m2:unsigned"),
]


def sh(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def run_ort(path, feeds, optimized):
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    shape0 = s.get_inputs()[0].shape[0]
    x = feeds[name]
    if isinstance(shape0, int):
        return np.concatenate([s.run(None, {name: x[i:i + shape0]})[0] for i in range(0, len(x), shape0)])
    return s.run(None, {name: x})[0]


def run_reference(path, feeds):
    from onnx.reference import ReferenceEvaluator
    m = onnx.load(path)
    ev = ReferenceEvaluator(m)
    name = m.graph.input[0].name
    dims = m.graph.input[0].type.tensor_type.shape.dim
    b = dims[0].dim_value if dims and dims[0].dim_value > 0 else None
    x = feeds[name]
    if b:
        return np.concatenate([ev.run(None, {name: x[i:i + b]})[0] for i in range(0, len(x), b)])
    return ev.run(None, {name: x})[0]


def run_qonnx(path, feeds):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    mw = ModelWrapper(path)
    name = mw.graph.input[0].name
    x = feeds[name]
    dims = mw.get_tensor_shape(name)
    b = dims[0] if dims and isinstance(dims[0], int) and dims[0] > 0 else len(x)
    if b == len(x):
        # A symbolic batch: qonnx checks input shapes strictly, so fix it to this batch.
        mw.set_tensor_shape(name, [len(x)] + list(x.shape[1:]))
    mw = mw.transform(InferShapes())
    out = mw.graph.output[0].name
    return np.concatenate([execute_onnx(mw, {name: x[i:i + b]})[out] for i in range(0, len(x), b)])


def compare(ref, ours, tol):
    ref = ref.astype(np.float64)
    ours = ours.astype(np.float64)
    scale = max(np.abs(ref).max(), 1e-30)
    err = np.abs(ref - ours).max() / scale
    flat = ref.reshape(len(ref), -1)
    same_top1 = bool((flat.argmax(1) == ours.reshape(len(ours), -1).argmax(1)).all())
    differing = int((ref != ours).sum())
    return {"rel_err": float(err), "same_top1": same_top1, "differing_elements": differing,
            "elements": int(ref.size), "ok": bool(err <= tol and same_top1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mfq")
    ap.add_argument("model")
    ap.add_argument("calib")
    ap.add_argument("eval")
    ap.add_argument("input_name")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--json")
    args = ap.parse_args()
    data = np.load(args.eval)
    x = data[args.input_name][: args.samples].astype(np.float32)
    feeds = {args.input_name: x}
    rows = []
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, "in.npz")
        np.savez(inp, **feeds)
        for w, a in GRID_SMALL:
            tag = f"{w}/{a}".replace(":", "_")
            base = os.path.join(d, tag.replace("/", "__"))
            common = [args.mfq, "quantize", args.model, "--weights", w, "--acts", a,
                      "--calib", args.calib, "--calib-samples", str(args.calib_samples), "-q"]
            qonnx_path, qdq_path = base + "_qonnx.onnx", base + "_qdq.onnx"
            out = os.path.join(d, "out.npz")
            sim = ["--simulate-in", inp, "--simulate-out", out]
            rc_qonnx, msg_qonnx = sh(common + ["-o", qonnx_path, "--export", "qonnx"])
            rc_qdq, msg_qdq = sh(common + ["-o", qdq_path, "--export", "qdq"] + sim)
            # mfq's simulation outputs come from the QDQ run; without a QDQ export, from a run
            # that writes the QONNX file again.
            rc, msg = (rc_qdq, msg_qdq)
            if rc_qdq != 0:
                rc, msg = sh(common + ["-o", qonnx_path, "--export", "qonnx"] + sim)
            if rc != 0:
                rows.append({"weights": w, "acts": a, "runtime": "mfq", "status": "FAIL", "detail": msg.strip()[-200:]})
                failed += 1
                continue
            ours = list(np.load(out).values())[0]
            checks = []
            if rc_qonnx == 0:
                checks.append(("qonnx execute_onnx", lambda: run_qonnx(qonnx_path, feeds), qonnx_path))
            else:
                rows.append({"weights": w, "acts": a, "runtime": "qonnx", "status": "not expressible",
                             "detail": (msg_qonnx.strip().splitlines() or [""])[-1][:160]})
            if rc_qdq == 0:
                opset = max(o.version for o in onnx.load(qdq_path).opset_import if o.domain in ("", "ai.onnx"))
                if opset >= 23:
                    checks.append((f"onnx reference (opset {opset})", lambda: run_reference(qdq_path, feeds), qdq_path))
                else:
                    checks.append((f"onnxruntime opt (opset {opset})", lambda: run_ort(qdq_path, feeds, True), qdq_path))
                    checks.append((f"onnxruntime no-opt (opset {opset})", lambda: run_ort(qdq_path, feeds, False), qdq_path))
            else:
                rows.append({"weights": w, "acts": a, "runtime": "QDQ", "status": "not expressible",
                             "detail": (msg_qdq.strip().splitlines() or [""])[-1][:160]})
            for name, fn, path in checks:
                try:
                    onnx.checker.check_model(onnx.load(path))
                    ref = fn()
                    c = compare(ref, ours, args.tol)
                    # onnxruntime with graph optimizations is measured, not required: its fused
                    # kernels may compute differently from the QDQ definition.
                    binding = "opt (" not in name
                    status = "ok" if c["ok"] else ("FAIL" if binding else "differs (measured)")
                    c.update({"weights": w, "acts": a, "runtime": name, "status": status})
                    failed += 0 if (c["ok"] or not binding) else 1
                    rows.append(c)
                except Exception as e:  # noqa: BLE001 - report any runtime failure as a failed check
                    rows.append({"weights": w, "acts": a, "runtime": name, "status": "FAIL", "detail": str(e)[:200]})
                    failed += 1
    print("| weights | acts | runtime | status | max rel err | same top-1 | differing elements |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        err = f"{r['rel_err']:.2e}" if "rel_err" in r else "-"
        diff = f"{r['differing_elements']}/{r['elements']}" if "elements" in r else r.get("detail", "")
        print(f"| {r['weights']} | {r['acts']} | {r['runtime']} | {r['status']} | {err} | {r.get('same_top1', '-')} | {diff} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"{sum(1 for r in rows if r['status'] == 'ok')} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
