#!/usr/bin/env python3
"""Oracle for `mfq cost MODEL --json`: qonnx 1.0.0's `inference_cost` on the same graph.

usage: qonnx_cost.py MODEL OUT.json [--ort-fold]

The graph is given to qonnx with every symbolic dimension fixed to 1 (mfq costs batch 1; qonnx
would otherwise count a symbolic batch as 0) and stale value_info dropped. Then
`qonnx.util.inference_cost.inference_cost` runs with its default preprocessing (InferShapes,
InferDataTypes with scaled-int types, FoldConstants, ...), sparsity discount on, per-node breakdown
on.

--ort-fold first folds constants with onnxruntime (basic level, every fusion disabled) and checks
that the compute nodes (name, op type, order) are unchanged. qonnx's FoldConstants re-runs shape
inference after each folded layer of constants, which takes many minutes on a graph with deep
shape arithmetic (W3); onnxruntime does the same folding in a second. Only for float graphs
(onnxruntime cannot load QONNX custom ops).

Writes {"total": {...}, "nodes": {node name: {...}}, "unsupported": [...]}. qonnx's wrapper sorts
the graph and renames every node <op>_<k>, which loses the link to the file's nodes; the oracle
swaps that one renaming step for one that keeps the names (unnamed nodes are named after their
first output, as mfq names them), so per-node results can be matched. Counting is untouched.
"""

import json
import sys

import onnx

COMPUTE = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum")
FUSIONS = ["MatMulAddFusion", "ConvAddFusion", "ConvMulFusion", "ConvBNFusion", "ReluClipFusion",
           "ReshapeFusion", "GemmTransposeFusion", "MatMulScaleFusion", "MatMulTransposeFusion"]


def fix_batch(m: onnx.ModelProto) -> None:
    for vi in list(m.graph.input) + list(m.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = 1
    del m.graph.value_info[:]


def compute_nodes(m: onnx.ModelProto) -> list:
    return sorted([n.name, n.op_type] for n in m.graph.node if n.op_type in COMPUTE)


def name_nodes(m: onnx.ModelProto) -> None:
    """Unnamed nodes take their first output's name (unique in a valid graph), as in mfq."""
    for n in m.graph.node:
        if not n.name:
            n.name = n.output[0]
    names = [n.name for n in m.graph.node]
    if len(set(names)) != len(names):
        raise SystemExit("qonnx_cost.py: node names are not unique")


def keep_names_transform():
    from qonnx.transformation.base import Transformation

    class KeepNodeNames(Transformation):
        """Stands in for GiveUniqueNodeNames: names are already unique (name_nodes)."""

        def apply(self, model):
            return (model, False)

    return KeepNodeNames


def ort_fold(m: onnx.ModelProto) -> onnx.ModelProto:
    import os
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.onnx"), os.path.join(tmp, "out.onnx")
        onnx.save(m, src)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = dst
        so.log_severity_level = 3
        ort.InferenceSession(src, so, providers=["CPUExecutionProvider"], disabled_optimizers=FUSIONS)
        out = onnx.load(dst)
    if compute_nodes(out) != compute_nodes(m):
        raise SystemExit("qonnx_cost.py: onnxruntime's folding changed the compute nodes")
    del out.graph.value_info[:]
    return out


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.inference_cost import inference_cost

    m = onnx.load(sys.argv[1])
    fix_batch(m)
    name_nodes(m)
    if "--ort-fold" in sys.argv[3:]:
        m = ort_fold(m)
    import qonnx.util.inference_cost as wrapper

    wrapper.GiveUniqueNodeNames = keep_names_transform()
    r = inference_cost(ModelWrapper(m), cost_breakdown=True)
    total = dict(r["total_cost"])
    unsupported = total.pop("unsupported", "set()")
    total.pop("discount_sparsity", None)
    # inference_cost stringifies the unsupported set: "{'Softmax', 'Sum'}" or "set()".
    unsup = sorted(s.strip().strip("'\"") for s in unsupported.strip("{}").split(",") if s.strip()) \
        if unsupported != "set()" else []
    out = {"total": total, "nodes": r["node_cost"], "unsupported": unsup}
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
