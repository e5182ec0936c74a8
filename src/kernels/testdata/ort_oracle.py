"""Generates onnxruntime oracle cases for the mfq kernels (used by src/kernels/oracle_tests.rs).

Usage: python ort_oracle.py OUT_DIR
Builds one single-node ONNX model per case with fixed random inputs, runs it with onnxruntime
(CPU) and writes inputs/outputs as .npy plus OUT_DIR/cases.json describing the kernel parameters.
Cases marked "oracle": "reference" use the onnx reference evaluator instead, where onnxruntime
rounds an exactly representable source coordinate differently from the ONNX definition.
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

rng = np.random.default_rng(0)
out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
cases = []
REFERENCE_ORACLE = {"resize_nearest_half_pixel_symmetric_floor_0.6_0"}


def run(name, op, inputs, attrs, kparams, opset=19):
    names = [f"i{k}" if v is not None else "" for k, v in enumerate(inputs)]
    node = helper.make_node(op, names, ["y"], **attrs)
    ins = []
    for nm, v in zip(names, inputs):
        if v is None:
            continue
        dt = TensorProto.FLOAT if v.dtype == np.float32 else TensorProto.INT64
        ins.append(helper.make_tensor_value_info(nm, dt, v.shape))
    g = helper.make_graph([node], "g", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    feed = {nm: v for nm, v in zip(names, inputs) if v is not None}
    if name in REFERENCE_ORACLE:
        y = ReferenceEvaluator(m).run(None, feed)[0]
    else:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        y = s.run(None, feed)[0]
    paths = []
    for k, v in enumerate(inputs):
        if v is None or v.dtype != np.float32:
            paths.append(None)
            continue
        p = f"{name}_in{k}.npy"
        np.save(os.path.join(out_dir, p), v)
        paths.append(p)
    yp = f"{name}_out.npy"
    np.save(os.path.join(out_dir, yp), y.astype(np.float32))
    cases.append(dict(name=name, op=op, inputs=paths, output=yp, params=kparams))


def f(*s):
    return rng.standard_normal(s).astype(np.float32)

# Resize
x4 = f(1, 2, 5, 7)
for mode in ['nearest', 'linear', 'cubic']:
    for ctm in ['half_pixel', 'pytorch_half_pixel', 'align_corners', 'asymmetric', 'half_pixel_symmetric']:
        for nm in (['round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil'] if mode == 'nearest' else ['round_prefer_floor']):
            for sc in ([1, 1, 2.0, 1.5], [1, 1, 0.6, 0.43]):
                scales = np.array(sc, np.float32)
                out = [int(np.floor(a * b)) for a, b in zip(x4.shape, sc)]
                for excl in ([0, 1] if mode == 'cubic' else [0]):
                    name = f'resize_{mode}_{ctm}_{nm}_{sc[2]}_{excl}'
                    run(name, 'Resize', [x4, None, scales], dict(mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nm, exclude_outside=excl, cubic_coeff_a=-0.5),
                        dict(output_shape=out, scales=sc, mode=mode, coord=ctm, nearest_mode=nm, exclude_outside=excl, a=-0.5))
# Pools
xp = f(2, 3, 9, 8)
for ceil in [0, 1]:
    for cip in [0, 1]:
        for (k, s, pads, d) in [([3, 3], [2, 2], [1, 1, 1, 1], [1, 1]), ([2, 3], [2, 3], [0, 1, 1, 2], [1, 1]), ([3, 2], [1, 2], [1, 0, 2, 1], [1, 1])]:
            name = f'avgpool_{ceil}_{cip}_{k[0]}{k[1]}_{s[0]}{s[1]}_{"".join(map(str,pads))}'
            run(name, 'AveragePool', [xp], dict(kernel_shape=k, strides=s, pads=pads, ceil_mode=ceil, count_include_pad=cip),
                dict(kernel=k, strides=s, dilations=d, pads=pads, ceil_mode=ceil, count_include_pad=cip))
    for (k, s, pads, d) in [([3, 3], [2, 2], [1, 1, 1, 1], [1, 1]), ([2, 2], [2, 1], [0, 0, 1, 1], [2, 3])]:
        name = f'maxpool_{ceil}_{k[0]}{k[1]}_{s[0]}{s[1]}_{d[0]}{d[1]}'
        run(name, 'MaxPool', [xp], dict(kernel_shape=k, strides=s, pads=pads, ceil_mode=ceil, dilations=d),
            dict(kernel=k, strides=s, dilations=d, pads=pads, ceil_mode=ceil, count_include_pad=0))
# ConvTranspose
for (xs, ws, s, d, pads, op_, g) in [((1, 4, 5, 6), (4, 3, 3, 3), [2, 2], [1, 1], [1, 0, 0, 1], [1, 1], 1),
                                      ((2, 6, 4, 4), (6, 2, 3, 2), [2, 3], [2, 1], [0, 1, 1, 0], [1, 2], 3)]:
    x = f(*xs); w = f(*ws); b = f(ws[1] * g)
    name = f'convt_{g}_{s[0]}{s[1]}'
    run(name, 'ConvTranspose', [x, w, b], dict(strides=s, dilations=d, pads=pads, output_padding=op_, group=g),
        dict(strides=s, dilations=d, pads=pads, output_padding=op_, groups=g))
# Conv
for (xs, ws, s, d, pads, g) in [((2, 6, 11, 10), (8, 3, 3, 3), [2, 1], [1, 2], [1, 2, 0, 1], 2),
                                ((1, 8, 12, 12), (8, 1, 5, 5), [2, 2], [1, 1], [2, 2, 2, 2], 8),
                                ((1, 3, 20), (4, 3, 5), [2], [2], [3, 1], 1)]:
    x = f(*xs); w = f(*ws); b = f(ws[0])
    name = f'conv_{g}_{len(xs)}_{s[0]}'
    run(name, 'Conv', [x, w, b], dict(strides=s, dilations=d, pads=pads, group=g), dict(strides=s, dilations=d, pads=pads, groups=g))
# Einsum
run('einsum_a', 'Einsum', [f(2, 8, 5), f(2, 8, 7)], dict(equation='bct,bcs->bts'), dict(equation='bct,bcs->bts'))
run('einsum_b', 'Einsum', [f(2, 5, 7), f(2, 8, 7)], dict(equation='bts,bcs->bct'), dict(equation='bts,bcs->bct'))
# Norms
run('layernorm', 'LayerNormalization', [f(2, 5, 16), f(16), f(16)], dict(axis=-1, epsilon=1e-5), dict(axis=-1, epsilon=1e-5))
run('layernorm_ax1', 'LayerNormalization', [f(2, 5, 4), f(5, 4), f(5, 4)], dict(axis=1, epsilon=1e-5), dict(axis=1, epsilon=1e-5))
run('instnorm', 'InstanceNormalization', [f(2, 3, 6, 5), f(3), f(3)], dict(epsilon=1e-5), dict(epsilon=1e-5))
run('softmax', 'Softmax', [f(3, 4, 257)], dict(axis=-1), dict(axis=-1))
run('softmax1', 'Softmax', [f(3, 4, 5)], dict(axis=1), dict(axis=1))
run('erf', 'Erf', [f(1000) * 2], {}, {})
run('gemm', 'Gemm', [f(7, 5), f(6, 7), f(6)], dict(transA=1, transB=1, alpha=0.7, beta=1.3), dict(transA=1, transB=1, alpha=0.7, beta=1.3))
run('matmul', 'MatMul', [f(2, 1, 3, 4), f(5, 4, 6)], {}, {})
# Pad
run('pad_reflect', 'Pad', [f(2, 3, 4, 5), np.array([0, 0, 2, 3, 0, 0, 3, 1], np.int64)], dict(mode='reflect'), dict(mode='reflect', pads=[0, 0, 2, 3, 0, 0, 3, 1]), opset=18)
run('pad_edge', 'Pad', [f(2, 3, 4, 5), np.array([0, 1, 2, 3, 0, 0, 3, -1], np.int64)], dict(mode='edge'), dict(mode='edge', pads=[0, 1, 2, 3, 0, 0, 3, -1]), opset=18)
run('d2s_dcr', 'DepthToSpace', [f(1, 12, 3, 4)], dict(blocksize=2, mode='DCR'), dict(blocksize=2, mode='DCR'))
run('d2s_crd', 'DepthToSpace', [f(1, 12, 3, 4)], dict(blocksize=2, mode='CRD'), dict(blocksize=2, mode='CRD'))
with open(os.path.join(out_dir, 'cases.json'), 'w') as fh:
    json.dump(cases, fh, indent=0)
print(len(cases), 'cases')
