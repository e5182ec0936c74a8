"""Checks that an mfq re-export of a model is the same model (used by `tests/roundtrip.rs`).

Usage: roundtrip_check.py ORIGINAL.onnx EXPORTED.onnx INPUTS.npz
Compares model and graph metadata (IR version, producer, domain, model version, doc strings,
metadata_props, opset imports, graph name, input/output names, node names/op types/domains/
doc strings/attributes, initializer names and values bit for bit) and runs both files through
onnxruntime (CPU, 1 thread) on the first sample of the `in:<name>` arrays in INPUTS.npz; the
outputs must be bit-identical. Prints one line per check and exits non-zero on any difference.
"""

import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def fail(msg: str) -> None:
    print(f"FAIL {msg}")
    sys.exit(1)


def same(what: str, a, b) -> None:
    if a != b:
        if isinstance(a, list) and isinstance(b, list):
            only_a = [x for x in a if x not in b][:3]
            only_b = [x for x in b if x not in a][:3]
            fail(f"{what}: {len(a)} vs {len(b)} entries; only in original {only_a!r}; "
                 f"only in export {only_b!r}")
        fail(f"{what}: original {a!r} != exported {b!r}")
    print(f"ok   {what}")


def run(path: str, feeds_all: dict) -> list:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        if i.name in feeds_all:
            feeds[i.name] = feeds_all[i.name]
    return sess.run(None, feeds)


def main() -> None:
    orig_path, exp_path, inputs = sys.argv[1:4]
    a = onnx.load(orig_path)
    b = onnx.load(exp_path)
    same("ir_version", a.ir_version, b.ir_version)
    same("producer", (a.producer_name, a.producer_version), (b.producer_name, b.producer_version))
    same("domain/model_version", (a.domain, a.model_version), (b.domain, b.model_version))
    same("model doc_string", a.doc_string, b.doc_string)
    same("metadata_props", [(p.key, p.value) for p in a.metadata_props],
         [(p.key, p.value) for p in b.metadata_props])
    same("opset_import", sorted((o.domain, o.version) for o in a.opset_import),
         sorted((o.domain, o.version) for o in b.opset_import))
    ga, gb = a.graph, b.graph
    same("graph name/doc_string", (ga.name, ga.doc_string), (gb.name, gb.doc_string))
    same("graph inputs", [i.name for i in ga.input], [i.name for i in gb.input])
    same("graph outputs", [o.name for o in ga.output], [o.name for o in gb.output])
    same("input/output types", [i.type.SerializeToString(deterministic=True) for i in list(ga.input) + list(ga.output)],
         [i.type.SerializeToString(deterministic=True) for i in list(gb.input) + list(gb.output)])

    def attr(x):
        # Field by field: the exporter's protobuf runtime leaves out scalar fields equal to
        # their default (e.g. `i: 0`), which reads back identically.
        return (x.name, x.type, x.f, x.i, x.s, tuple(x.floats), tuple(x.ints), tuple(x.strings),
                x.t.SerializeToString(deterministic=True), x.g.SerializeToString(deterministic=True),
                x.doc_string, x.ref_attr_name)

    def nodes(g):
        return sorted(
            (n.name, n.op_type, n.domain, n.doc_string, tuple(n.input), tuple(n.output),
             tuple(sorted(attr(x) for x in n.attribute)))
            for n in g.node
        )

    same("nodes (name, op, domain, doc, inputs, outputs, attributes)", nodes(ga), nodes(gb))
    ia = {t.name: numpy_helper.to_array(t) for t in ga.initializer}
    ib = {t.name: numpy_helper.to_array(t) for t in gb.initializer}
    same("initializer names", sorted(ia), sorted(ib))
    for k, v in ia.items():
        w = ib[k]
        if v.dtype != w.dtype or v.shape != w.shape or v.tobytes() != w.tobytes():
            fail(f"initializer {k} differs")
    print(f"ok   {len(ia)} initializers bit-identical")
    vi_a = {v.name for v in ga.value_info}
    vi_b = {v.name for v in gb.value_info}
    if not vi_a <= vi_b:
        fail(f"value_info lost: {sorted(vi_a - vi_b)[:5]}")
    print(f"ok   {len(vi_a)} value_info entries kept")

    data = np.load(inputs)
    feeds = {k[3:]: data[k][:1] for k in data.files if k.startswith("in:")}
    oa = run(orig_path, feeds)
    ob = run(exp_path, feeds)
    for i, (x, y) in enumerate(zip(oa, ob)):
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            fail(f"output {i}: max |diff| {np.max(np.abs(x.astype(np.float64) - y)):.3e}")
    print(f"ok   {len(oa)} onnxruntime outputs bit-identical")


if __name__ == "__main__":
    main()
