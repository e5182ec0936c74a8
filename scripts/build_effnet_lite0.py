"""Builds the EfficientNet-Lite0 ONNX graph (W2) from its PyTorch state_dict, without torch.

Architecture: EfficientNet-B0 without squeeze-excite, ReLU6 (Clip 0..6) instead of swish, stem and
head not scaled. Stem conv 3x3/2 -> 32; seven MBConv stages; head conv 1x1 -> 1280; global average
pool; fully connected 1280 -> 1000. Every conv uses TensorFlow "SAME" padding, written as static
pads computed for a 224x224 input (the odd extra pad goes at the end). BatchNorm epsilon 1e-3.

Two variants: `fold_bn=False` keeps every BatchNormalization node (the graph exercises BN folding
in the importer), `fold_bn=True` folds BN into the preceding conv's weight and a new bias
(computed in float64, stored as float32).

Input `input` float32 [N,3,224,224] (N symbolic), output `logits` float32 [N,1000].
Opset 13, IR version 8.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
IMAGE_SIZE = 224
BN_EPS = 1e-3
OPSET = 13
IR_VERSION = 8

# (repeats, kernel, stride, expand ratio, in channels, out channels)
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF SAME padding for one spatial axis: (pad_begin, pad_end, output size)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class _Builder:
    def __init__(self, sd: dict[str, np.ndarray], fold_bn: bool):
        self.sd = sd
        self.used: set[str] = set()
        self.fold_bn = fold_bn
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.macs = 0

    def param(self, key: str) -> np.ndarray:
        if key not in self.sd:
            raise KeyError(f"state_dict has no entry {key}")
        self.used.add(key)
        return self.sd[key]

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def conv_bn(self, x: str, size: int, conv_key: str, bn_key: str, stride: int, group: int,
                name: str, relu6: bool) -> tuple[str, int]:
        w = self.param(conv_key + ".weight").astype(np.float32)
        cout, cin_g, k, _ = w.shape
        pb, pe, out = same_pads(size, k, stride)
        gamma = self.param(bn_key + ".weight").astype(np.float64)
        beta = self.param(bn_key + ".bias").astype(np.float64)
        mean = self.param(bn_key + ".running_mean").astype(np.float64)
        var = self.param(bn_key + ".running_var").astype(np.float64)
        self.used.add(bn_key + ".num_batches_tracked")
        self.macs += cout * cin_g * k * k * out * out
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], pads=[pb, pb, pe, pe],
                     dilations=[1, 1], group=group)
        if self.fold_bn:
            s = gamma / np.sqrt(var + BN_EPS)
            wf = (w.astype(np.float64) * s[:, None, None, None]).astype(np.float32)
            bf = (beta - mean * s).astype(np.float32)
            y = f"{name}/conv"
            self.nodes.append(helper.make_node(
                "Conv", [x, self.init(f"{name}/conv.weight", wf), self.init(f"{name}/conv.bias", bf)],
                [y], name=f"{name}/conv", **attrs))
        else:
            c = f"{name}/conv"
            self.nodes.append(helper.make_node(
                "Conv", [x, self.init(f"{name}/conv.weight", w)], [c], name=c, **attrs))
            y = f"{name}/bn"
            self.nodes.append(helper.make_node(
                "BatchNormalization",
                [c, self.init(f"{name}/bn.scale", gamma.astype(np.float32)),
                 self.init(f"{name}/bn.bias", beta.astype(np.float32)),
                 self.init(f"{name}/bn.mean", mean.astype(np.float32)),
                 self.init(f"{name}/bn.var", var.astype(np.float32))],
                [y], name=y, epsilon=BN_EPS))
        if relu6:
            r = f"{name}/relu6"
            self.nodes.append(helper.make_node("Clip", [y, "relu6.min", "relu6.max"], [r], name=r))
            y = r
        return y, out


def build(state_dict: dict[str, np.ndarray], fold_bn: bool) -> onnx.ModelProto:
    """Returns the checked EfficientNet-Lite0 model built from `state_dict`."""
    b = _Builder(state_dict, fold_bn)
    b.init("relu6.min", np.array(0.0, dtype=np.float32))
    b.init("relu6.max", np.array(6.0, dtype=np.float32))
    x, size = b.conv_bn(INPUT_NAME, IMAGE_SIZE, "_conv_stem", "_bn0", 2, 1, "stem", True)
    idx = 0
    for repeats, k, stride, expand, cin, cout in STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            bin_ = cin if r == 0 else cout
            p = f"_blocks.{idx}"
            name = f"blocks.{idx}"
            inp = x
            if expand != 1:
                x, size = b.conv_bn(x, size, f"{p}._expand_conv", f"{p}._bn0", 1, 1, f"{name}/expand", True)
            hidden = bin_ * expand
            dw = b.sd.get(f"{p}._depthwise_conv.weight")
            if dw is None or dw.shape != (hidden, 1, k, k):
                raise ValueError(f"{p}._depthwise_conv.weight: expected shape {(hidden, 1, k, k)}")
            x, size = b.conv_bn(x, size, f"{p}._depthwise_conv", f"{p}._bn1", s, hidden, f"{name}/dw", True)
            x, size = b.conv_bn(x, size, f"{p}._project_conv", f"{p}._bn2", 1, 1, f"{name}/project", False)
            if s == 1 and bin_ == cout:
                a = f"{name}/add"
                b.nodes.append(helper.make_node("Add", [inp, x], [a], name=a))
                x = a
            idx += 1
    x, size = b.conv_bn(x, size, "_conv_head", "_bn1", 1, 1, "head", True)
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    b.nodes.append(helper.make_node("Flatten", ["pool"], ["flatten"], name="flatten", axis=1))
    fc_w = b.param("_fc.weight").astype(np.float32)
    fc_b = b.param("_fc.bias").astype(np.float32)
    b.macs += fc_w.size
    b.nodes.append(helper.make_node(
        "Gemm", ["flatten", b.init("fc.weight", fc_w), b.init("fc.bias", fc_b)], [OUTPUT_NAME],
        name="fc", transB=1))
    unused = sorted(set(state_dict) - b.used)
    if unused:
        raise ValueError(f"state_dict entries not used by the architecture: {unused[:5]}...")
    graph = helper.make_graph(
        b.nodes, "efficientnet_lite0" + ("" if fold_bn else "_bn"),
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 1000])],
        b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mfq-fixtures", producer_version="1")
    model.ir_version = IR_VERSION
    model.doc_string = ("EfficientNet-Lite0 (ImageNet, 1000 classes) built by mfq's "
                        "scripts/build_effnet_lite0.py from efficientnet-lite0-57934424.pth "
                        f"(Apache-2.0); BatchNorm {'folded' if fold_bn else 'kept'}. "
                        "Input: RGB, shorter side 256 bicubic, centre crop 224, (x-127)/128, NCHW.")
    helper.set_model_props(model, {"macs_per_image": str(b.macs)})
    onnx.checker.check_model(model, full_check=True)
    return model
