#!/usr/bin/env python3
"""Exports the onnx package's node test cases as golden test fixtures.

`onnx.backend.test.case.node.collect_testcases(None)` (onnx==1.23.2) builds every node test in
memory: a one-node (or expanded-function) model, its inputs and numpy reference outputs. This
writes each case whose inputs and outputs are all tensors to

  fixtures/cache/onnx-node/<case name>/model.onnx
  fixtures/cache/onnx-node/<case name>/input_<i>.pb    TensorProto, always (any element type)
  fixtures/cache/onnx-node/<case name>/input_<i>.npy   also, when the element type has a plain
                                                        numpy dtype (bool, [u]int8..64, float16/32/64)
  fixtures/cache/onnx-node/<case name>/output_<i>.pb / output_<i>.npy   likewise

<i> follows the order of graph.input / graph.output. Element types numpy has no portable .npy
dtype for (bfloat16, float8*, int4/uint4, int2/uint2, float4e2m1, float8e8m0, string) are only in
the .pb files. Cases with sequence, optional or map values are skipped and listed with the reason.

fixtures/cache/onnx-node/manifest.json: {"onnx": version, "fingerprint": ..., "cases": [{"name",
"ops": [[domain, op_type], ...] (top-level graph nodes), "opsets": {domain: version},
"has_subgraph", "rtol", "atol", "inputs"/"outputs": [{"name", "elem_type", "shape", "npy"}]}],
"skipped": [{"name", "reason"}]}.
Idempotent: skipped when the onnx version and this script are unchanged and every file exists.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from wheelcache import CACHE, log, rel

OUT = CACHE / "onnx-node"
PLAIN_DTYPES = {np.dtype(t) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                      np.uint32, np.uint64, np.float16, np.float32, np.float64)}


class Skip(Exception):
    """The case has a value that is not a tensor."""


def value_kind(vi: onnx.ValueInfoProto) -> str:
    return vi.type.WhichOneof("value")


def to_tensor(value, vi: onnx.ValueInfoProto) -> tuple[onnx.TensorProto, np.ndarray | None]:
    """The TensorProto of a test value, and a plain-dtype array when .npy can represent it."""
    if value_kind(vi) != "tensor_type":
        raise Skip(f"{vi.name} is a {value_kind(vi)} value")
    if value is None or isinstance(value, list):
        raise Skip(f"{vi.name} is a {'None' if value is None else 'list'} value")
    if isinstance(value, onnx.TensorProto):
        tensor = onnx.TensorProto()
        tensor.CopyFrom(value)
        tensor.name = vi.name
        arr = None
        try:
            a = numpy_helper.to_array(tensor)
            if a.dtype in PLAIN_DTYPES:
                arr = a
        except Exception:  # exotic types numpy_helper cannot decode: keep the .pb only
            arr = None
        return tensor, arr
    arr = np.asarray(value)
    tensor = numpy_helper.from_array(arr, vi.name)
    want = vi.type.tensor_type.elem_type
    if want and tensor.data_type != want:
        raise Skip(f"{vi.name}: value has element type {onnx.TensorProto.DataType.Name(tensor.data_type)}, "
                   f"graph declares {onnx.TensorProto.DataType.Name(want)}")
    return tensor, (arr if arr.dtype in PLAIN_DTYPES else None)


def has_subgraph(graph: onnx.GraphProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for n in graph.node for a in n.attribute)


def export_case(case, root: Path) -> dict:
    model = case.model
    if len(case.data_sets) != 1:
        raise Skip(f"{len(case.data_sets)} data sets (expected 1)")
    inputs, outputs = case.data_sets[0]
    graph = model.graph
    if len(inputs) != len(graph.input) or len(outputs) != len(graph.output):
        raise Skip("data set arity differs from the graph's inputs/outputs")
    files: dict[str, bytes] = {"model.onnx": model.SerializeToString()}
    record = {"name": case.name}
    for prefix, values, vis in (("input", inputs, graph.input), ("output", outputs, graph.output)):
        entries = []
        for i, (value, vi) in enumerate(zip(values, vis)):
            tensor, arr = to_tensor(value, vi)
            files[f"{prefix}_{i}.pb"] = tensor.SerializeToString()
            if arr is not None:
                files[f"{prefix}_{i}.npy"] = _npy_bytes(arr)
            entries.append({"name": vi.name, "elem_type": onnx.TensorProto.DataType.Name(tensor.data_type),
                            "shape": list(tensor.dims), "npy": arr is not None})
        record[prefix + "s"] = entries
    d = root / case.name
    d.mkdir(parents=True)
    for fname, data in files.items():
        (d / fname).write_bytes(data)
    record.update({
        "ops": sorted({(n.domain or "", n.op_type) for n in graph.node}),
        "opsets": {(o.domain or ""): o.version for o in model.opset_import},
        "ir_version": model.ir_version,
        "has_subgraph": has_subgraph(graph),
        "rtol": case.rtol,
        "atol": case.atol,
    })
    return record


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def fingerprint() -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(onnx.__version__.encode())
    h.update(np.__version__.encode())
    return h.hexdigest()


def up_to_date(fp: str) -> bool:
    manifest = OUT / "manifest.json"
    if not manifest.exists():
        return False
    try:
        rec = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False
    if rec.get("fingerprint") != fp:
        return False
    for c in rec.get("cases", []):
        d = OUT / c["name"]
        names = ["model.onnx"] + [f"{p}_{i}.pb" for p in ("input", "output") for i in range(len(c[p + "s"]))]
        if not all((d / n).exists() for n in names):
            return False
    return True


def main() -> int:
    fp = fingerprint()
    if up_to_date(fp):
        log(f"  ok      {rel(OUT)}: node test cases up to date")
        return 0
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators divide by zero on purpose
        cases = collect_testcases(None)
    log(f"  collect {len(cases)} node test cases from onnx {onnx.__version__}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=OUT.parent, prefix="onnx-node."))
    try:
        records, skipped = [], []
        for case in sorted(cases, key=lambda c: c.name):
            try:
                records.append(export_case(case, tmp))
            except Skip as e:
                shutil.rmtree(tmp / case.name, ignore_errors=True)
                skipped.append({"name": case.name, "reason": str(e)})
        manifest = {"onnx": onnx.__version__, "fingerprint": fp, "cases": records, "skipped": skipped}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if OUT.exists():
            old = OUT.with_name(OUT.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            OUT.rename(old)
            tmp.rename(OUT)
            shutil.rmtree(old)
        else:
            tmp.rename(OUT)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_npy = sum(all(t["npy"] for t in r["inputs"] + r["outputs"]) for r in records)
    log(f"  wrote   {rel(OUT)}: {len(records)} cases ({n_npy} fully as .npy), {len(skipped)} skipped "
        f"(non-tensor values), manifest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
