#!/usr/bin/env python3
"""Writes onnxruntime reference outputs for the parity tests into fixtures/cache/ref/.

For each workload, fixed deterministic inputs are run through onnxruntime (pinned version, CPU
execution provider, 2 intra-op threads, default graph optimisation level) and saved as
fixtures/cache/ref/<name>.npz with one array per model input under `in:<input name>` and one per
model output under `out:<output name>`:

  w1     fixtures/w1/model.onnx, the first 8 digits of fixtures/w1/eval.npz. The file's batch
         dimension is fixed to 1, so onnxruntime runs the 8 digits one by one and the outputs are
         stacked: in:Input3 [8,1,28,28], out:Plus214_Output_0 [8,10].
  w2     cache/w2/w2.onnx (BN folded), the first 8 photos of cache/w2/eval.npz:
         in:input [8,3,224,224], out:logits [8,1000].
  w2_bn  cache/w2/w2_bn.onnx (BN kept), same inputs as w2.
  w3     cache/w3/vit_s_focus.onnx, photo 0 of cache/w3/eval.npz (ImageNet mean/std on 0..1 RGB):
         in:input_image [1,3,224,224], out:output_importance [1,1,224,224].
  w5     cache/w5/terrain_unet.onnx, batch 2: in:noisy = N(0,1) * sigma drawn with
         numpy.random.default_rng(20250101) as float32 [2,1,128,128], in:sigma = [80, 0.5],
         in:difficulty = [0.3, 0.9]; out:denoised [2,1,128,128].

QONNX references (runner: qonnx.core.onnx_exec.execute_onnx from qonnx 1.0.0, not onnxruntime),
on models from the qonnx wheel extracted by `fetch_workloads.py --only qx`:

  qonnx_fp8                 cache/qonnx/floatquant_exec/qonnx_act_weight_fp8.onnx with the
                            wheel's own test input (FloatQuant nodes; output equals the wheel's
                            output.npy exactly).
  qonnx_espcn_<v>_<k>       <v> in nn_resize, subpixel; <k> in float, quant (Brevitas-exported
                            Quant nodes). The model is first normalised with
                            qonnx.util.cleanup.cleanup_model (shape inference, constant folding,
                            input/output renamed to global_in/global_out) and saved next to the
                            original as <k>_model.clean.onnx; the references are for that file.
                            Input: the wheel's test_data/input_0.pb [1,3,128,128] (nn_resize),
                            or its top-left [1,3,4,4] corner for subpixel/float, whose input
                            is 4x4.

fixtures/cache/ref/manifest.json lists every file with its model, shapes, dtypes and settings,
plus onnxruntime's top-1 for W2 (both variants) on all 20 labelled photos.
Idempotent: skipped when the models, inputs, this script and the onnxruntime version are unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from wheelcache import CACHE, ROOT, FixtureError, log, npz_bytes, rel, sha256_file, write_atomic

REF = CACHE / "ref"
W5_SEED = 20250101
W5_SIGMA = [80.0, 0.5]
W5_DIFFICULTY = [0.3, 0.9]
THREADS = 2
N_REFS = 10


def session(model: Path) -> ort.InferenceSession:
    if not model.exists():
        raise FixtureError(f"{rel(model)} is missing: run `bash scripts/prepare-test-data.sh` "
                           "(or `.venv/bin/python scripts/fetch_workloads.py`) first")
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


def load(path: Path) -> np.lib.npyio.NpzFile:
    if not path.exists():
        raise FixtureError(f"{rel(path)} is missing: run `bash scripts/prepare-test-data.sh` first")
    return np.load(path)


def run(model: Path, feeds: dict[str, np.ndarray], per_sample: bool = False) -> dict[str, np.ndarray]:
    sess = session(model)
    names = [o.name for o in sess.get_outputs()]
    if not per_sample:
        return dict(zip(names, sess.run(names, feeds)))
    n = len(next(iter(feeds.values())))
    outs = [sess.run(names, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)]
    return {name: np.concatenate([o[j] for o in outs]) for j, name in enumerate(names)}


def cases() -> dict[str, tuple[Path, dict[str, np.ndarray], bool]]:
    """name -> (model, inputs, run one sample at a time)."""
    w1 = load(ROOT / "fixtures" / "w1" / "eval.npz")
    w2 = load(CACHE / "w2" / "eval.npz")
    w3 = load(CACHE / "w3" / "eval.npz")
    rng = np.random.default_rng(W5_SEED)
    sigma = np.array(W5_SIGMA, dtype=np.float32)
    noisy = (rng.standard_normal((2, 1, 128, 128)).astype(np.float32) * sigma[:, None, None, None]).astype(np.float32)
    return {
        "w1": (ROOT / "fixtures" / "w1" / "model.onnx", {"Input3": w1["Input3"][:8]}, True),
        "w2": (CACHE / "w2" / "w2.onnx", {"input": w2["input"][:8]}, False),
        "w2_bn": (CACHE / "w2" / "w2_bn.onnx", {"input": w2["input"][:8]}, False),
        "w3": (CACHE / "w3" / "vit_s_focus.onnx", {"input_image": w3["input_image"][:1]}, False),
        "w5": (CACHE / "w5" / "terrain_unet.onnx",
               {"noisy": noisy, "sigma": sigma, "difficulty": np.array(W5_DIFFICULTY, dtype=np.float32)}, False),
    }


QONNX_DIR = CACHE / "qonnx"


def qonnx_cases() -> dict[str, tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """name -> (model file, inputs, outputs), computed with qonnx's own executor."""
    import onnx
    from onnx import numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    out = {}
    fp8 = QONNX_DIR / "floatquant_exec" / "qonnx_act_weight_fp8.onnx"
    if not fp8.exists():
        raise FixtureError(f"{rel(fp8)} is missing: run `bash scripts/prepare-test-data.sh` first")
    m = ModelWrapper(str(fp8))
    x = np.load(QONNX_DIR / "floatquant_exec" / "test_data" / "input.npy")
    feeds = {m.graph.input[0].name: x}
    res = execute_onnx(m, feeds)
    want = np.load(QONNX_DIR / "floatquant_exec" / "test_data" / "output.npy")
    got = res[m.graph.output[0].name]
    if not np.array_equal(got, want):
        raise FixtureError(f"qonnx does not reproduce {rel(fp8)}'s shipped output")
    out["qonnx_fp8"] = (fp8, feeds, {m.graph.output[0].name: got})
    tp = onnx.TensorProto()
    tp.ParseFromString((QONNX_DIR / "bsd300x3-espcn" / "test_data" / "input_0.pb").read_bytes())
    image = numpy_helper.to_array(tp).astype(np.float32)
    for variant in ("nn_resize", "subpixel"):
        for kind in ("float", "quant"):
            src = QONNX_DIR / "bsd300x3-espcn" / variant / f"{kind}_model.onnx"
            clean = src.with_name(f"{kind}_model.clean.onnx")
            m = cleanup_model(ModelWrapper(str(src)))
            write_atomic(clean, m.model.SerializeToString())
            name = m.graph.input[0].name
            shape = m.get_tensor_shape(name)
            feeds = {name: np.ascontiguousarray(image[:, :, :shape[2], :shape[3]])}
            res = execute_onnx(m, feeds)
            out[f"qonnx_espcn_{variant}_{kind}"] = (clean, feeds, {o.name: res[o.name] for o in m.graph.output})
    return out


def fingerprint(models: list[Path], data: list[Path]) -> str:
    h = hashlib.sha256()
    for p in [Path(__file__).resolve(), *models, *data]:
        h.update(sha256_file(p).encode() if p.exists() else b"missing")
    h.update(ort.__version__.encode())
    h.update(importlib.metadata.version("qonnx").encode())
    return h.hexdigest()


def w2_top1() -> dict:
    data = load(CACHE / "w2" / "eval.npz")
    x, labels = data["input"], data["labels"]
    res = {"labels": labels.tolist()}
    for name in ("w2", "w2_bn"):
        logits = run(CACHE / "w2" / f"{name}.onnx", {"input": x})["logits"]
        pred = logits.argmax(axis=1)
        res[name] = {"top1": int((pred == labels).sum()), "n": int(len(labels)), "pred": pred.tolist()}
        log(f"  top-1   {name}: {res[name]['top1']}/{len(labels)} (onnxruntime {ort.__version__})")
    return res


def main() -> int:
    inputs = [ROOT / "fixtures" / "w1" / "eval.npz", CACHE / "w2" / "eval.npz", CACHE / "w3" / "eval.npz"]
    models = [ROOT / "fixtures" / "w1" / "model.onnx", CACHE / "w2" / "w2.onnx", CACHE / "w2" / "w2_bn.onnx",
              CACHE / "w3" / "vit_s_focus.onnx", CACHE / "w5" / "terrain_unet.onnx",
              QONNX_DIR / "floatquant_exec" / "qonnx_act_weight_fp8.onnx",
              *[QONNX_DIR / "bsd300x3-espcn" / v / f"{k}_model.onnx"
                for v in ("nn_resize", "subpixel") for k in ("float", "quant")]]
    manifest_path = REF / "manifest.json"
    try:
        fp = fingerprint(models, inputs)
        if manifest_path.exists():
            old = json.loads(manifest_path.read_text())
            files_ok = all((REF / f"{n}.npz").exists() and sha256_file(REF / f"{n}.npz") == e["sha256"]
                           and (ROOT / e["model"]).exists() and sha256_file(ROOT / e["model"]) == e.get("model_sha256")
                           for n, e in old.get("refs", {}).items())
            if old.get("fingerprint") == fp and files_ok and len(old.get("refs", {})) == N_REFS:
                log(f"  ok      {rel(REF)}: reference outputs up to date")
                return 0
        refs = {}
        computed = {name: (model, feeds, run(model, feeds, per_sample), "onnxruntime")
                    for name, (model, feeds, per_sample) in cases().items()}
        computed |= {name: (model, feeds, outs, "qonnx.execute_onnx")
                     for name, (model, feeds, outs) in qonnx_cases().items()}
        for name, (model, feeds, outs, runner) in computed.items():
            arrays = {f"in:{k}": v for k, v in feeds.items()} | {f"out:{k}": v for k, v in outs.items()}
            path = REF / f"{name}.npz"
            write_atomic(path, npz_bytes(arrays, compress=False))
            refs[name] = {
                "model": rel(model),
                "model_sha256": sha256_file(model),
                "runner": runner,
                "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
                "sha256": sha256_file(path),
            }
            shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())
            log(f"  ref     {rel(path)}: {shapes}")
        manifest = {
            "fingerprint": fp,
            "onnxruntime": ort.__version__,
            "qonnx": importlib.metadata.version("qonnx"),
            "settings": {"provider": "CPUExecutionProvider", "intra_op_num_threads": THREADS,
                         "graph_optimization_level": "default (ORT_ENABLE_ALL)"},
            "key_convention": "in:<model input name>, out:<model output name>",
            "w5": {"seed": W5_SEED, "sigma": W5_SIGMA, "difficulty": W5_DIFFICULTY},
            "refs": refs,
            "w2_top1_20_photos": w2_top1(),
        }
        write_atomic(manifest_path, (json.dumps(manifest, indent=1) + "\n").encode())
        log(f"  wrote   {rel(manifest_path)}")
    except FixtureError as e:
        print(f"gen_reference: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
