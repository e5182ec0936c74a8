"""Generates qonnx_golden.json: a hand-built QONNX graph (Conv, grouped Conv, MatMul, Gemm with
integer and minifloat datatypes and some zero weights), qonnx's inference_cost on it, and the
same layers as cost_model::layers::LayerDesc JSON. Run with the pinned venv:
    $MFQ_PYTHON cost-model/tests/data/qonnx_golden.py > cost-model/tests/data/qonnx_golden.json
"""
import json
import os
import re
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.inference_cost import inference_cost

rng = np.random.default_rng(0)


def fmt(name):
    m = re.fullmatch(r"(U?)INT(\d+)", name)
    if m:
        return {"Int": {"bits": int(m.group(2)), "signed": m.group(1) == "", "narrow": False}}
    m = re.fullmatch(r"FLOAT<(\d+),(\d+),(-?\d+)>", name)
    e, mb, b = map(int, m.groups())
    return {"Float": {"exp_bits": e, "man_bits": mb, "bias": b, "signed": True,
                      "subnormals": True, "specials": "None", "overflow": "Saturate"}}


w1 = rng.integers(-8, 8, size=(16, 8, 3, 3)).astype(np.float32)
w1[0] = 0.0  # one all-zero output channel
w2 = rng.integers(-2, 2, size=(16, 4, 3, 3)).astype(np.float32)  # groups = 4
w3 = rng.standard_normal((16 * 6 * 6, 10)).astype(np.float32)
w4 = rng.integers(0, 2, size=(12, 10)).astype(np.float32)  # Gemm transB: (N, K)

nodes = [
    helper.make_node("Conv", ["x", "w1"], ["y1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    helper.make_node("Conv", ["y1", "w2"], ["y2"], name="conv2", kernel_shape=[3, 3], group=4, strides=[2, 2], pads=[1, 1, 1, 1]),
    helper.make_node("Flatten", ["y2"], ["f"], name="flat"),
    helper.make_node("MatMul", ["f", "w3"], ["y3"], name="mm"),
    helper.make_node("Gemm", ["y3", "w4"], ["y4"], name="gemm", transB=1),
]
graph = helper.make_graph(
    nodes, "golden",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 12, 12])],
    [helper.make_tensor_value_info("y4", TensorProto.FLOAT, [1, 12])],
    [helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.flatten()) for n, a in
     [("w1", w1), ("w2", w2), ("w3", w3), ("w4", w4)]],
)
model = ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
dtypes = {"x": "UINT8", "w1": "INT4", "y1": "UINT4", "w2": "INT2", "y2": "FLOAT<4,3,7>",
          "w3": "FLOAT<2,1,1>", "f": "FLOAT<4,3,7>", "y3": "INT8", "w4": "UINT2"}
for t, d in dtypes.items():
    model.set_tensor_datatype(t, DataType[d])
model = model.transform(InferShapes())
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "golden.onnx")
    onnx.save(model.model, path)
    # preprocess=False keeps the datatypes annotated above (qonnx would re-infer them).
    res = inference_cost(path, discount_sparsity=True, output_json=None, output_onnx=None,
                         preprocess=False)["total_cost"]
res = {k: v for k, v in res.items() if k not in ("unsupported", "discount_sparsity")}


def layer(name, op, macs, n, mh, wc, nz, oc, wdt, adt, odt):
    return {"name": name, "op": op, "macs": macs, "n": n, "out_channels": mh,
            "weight_count": wc, "weight_nonzero": nz, "output_count": oc,
            "weight_format": fmt(wdt), "act_format": fmt(adt),
            "output_format": None if odt == "FLOAT32" else fmt(odt)}


layers = [
    layer("conv1", "Conv", 8 * 9 * 16 * 144, 72, 16, w1.size, int(np.count_nonzero(w1)), 16 * 144, "INT4", "UINT8", "UINT4"),
    layer("conv2", "Conv", 4 * 9 * 16 * 36, 36, 16, w2.size, int(np.count_nonzero(w2)), 16 * 36, "INT2", "UINT4", "FLOAT<4,3,7>"),
    layer("mm", "MatMul", 576 * 10, 576, 10, w3.size, int(np.count_nonzero(w3)), 10, "FLOAT<2,1,1>", "FLOAT<4,3,7>", "INT8"),
    layer("gemm", "Gemm", 10 * 12, 10, 12, w4.size, int(np.count_nonzero(w4)), 12, "UINT2", "INT8", "FLOAT32"),
]
print(json.dumps({"layers": layers, "qonnx": res}, indent=1, sort_keys=True))
