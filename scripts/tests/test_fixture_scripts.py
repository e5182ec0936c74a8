"""Unit tests of the fixture scripts: torch-free reader, EfficientNet builder, wheel cache, images.

Run: .venv/bin/python -m unittest discover -s scripts/tests
Offline: every test uses synthetic data; nothing is downloaded.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import pickle
import struct
import sys
import tempfile
import types
import unittest
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import build_effnet_lite0  # noqa: E402
import fetch_workloads  # noqa: E402
import torch_legacy  # noqa: E402
import wheelcache  # noqa: E402


@contextlib.contextmanager
def fake_torch():
    """Temporarily registers stand-ins for torch's pickled globals so pickle can name them."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class LongStorage:
        pass

    FloatStorage.__module__ = LongStorage.__module__ = "torch"
    FloatStorage.__qualname__, LongStorage.__qualname__ = "FloatStorage", "LongStorage"
    torch.FloatStorage, torch.LongStorage = FloatStorage, LongStorage

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield torch, utils
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Storage:
    def __init__(self, stype, key, data):
        self.stype, self.key, self.data = stype, key, data


class _Tensor:
    def __init__(self, rebuild, storage, offset, size, stride):
        self.args = (rebuild, storage, offset, size, stride)

    def __reduce__(self):
        rebuild, storage, offset, size, stride = self.args
        return rebuild, (storage, offset, size, stride, False, collections.OrderedDict())


def write_legacy(tensors: dict, storages: list[_Storage], view_meta: bool = True) -> bytes:
    """A legacy torch.save byte stream for `tensors` (name -> _Tensor) over `storages`."""

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                pid = ("storage", obj.stype, obj.key, "cpu", obj.data.size)
                return pid + (None,) if view_meta else pid
            return None

    out = io.BytesIO()
    for header in (torch_legacy.MAGIC, torch_legacy.PROTOCOL,
                   {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, out, protocol=2)
    P(out, protocol=2).dump(collections.OrderedDict(tensors))
    pickle.dump([s.key for s in storages], out, protocol=2)
    for s in storages:
        out.write(struct.pack("<q", s.data.size))
        out.write(s.data.astype(s.data.dtype.newbyteorder("<")).tobytes())
    return out.getvalue()


class TorchLegacyTests(unittest.TestCase):
    def sample(self, view_meta=True):
        with fake_torch() as (torch, utils):
            a = _Storage(torch.FloatStorage, "100", np.arange(12, dtype=np.float32))
            b = _Storage(torch.LongStorage, "200", np.array([7], dtype=np.int64))
            tensors = {
                "w": _Tensor(utils._rebuild_tensor_v2, a, 0, (3, 4), (4, 1)),
                "wt": _Tensor(utils._rebuild_tensor_v2, a, 1, (2, 3), (1, 4)),  # strided view, offset 1
                "n": _Tensor(utils._rebuild_tensor_v2, b, 0, (), ()),
            }
            return write_legacy(tensors, [a, b], view_meta)

    def load_bytes(self, data: bytes):
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "x.pth"
            p.write_bytes(data)
            return torch_legacy.load_state_dict(p)

    def test_reads_tensors_with_offsets_and_strides(self):
        for view_meta in (True, False):
            sd = self.load_bytes(self.sample(view_meta))
            self.assertEqual(list(sd), ["w", "wt", "n"])
            np.testing.assert_array_equal(sd["w"], np.arange(12, dtype=np.float32).reshape(3, 4))
            np.testing.assert_array_equal(sd["wt"], np.array([[1, 5, 9], [2, 6, 10]], dtype=np.float32))
            self.assertEqual(sd["n"].shape, ())
            self.assertEqual(sd["n"].dtype, np.int64)
            self.assertEqual(int(sd["n"]), 7)

    def test_refuses_foreign_globals_without_running_them(self):
        class Evil:
            def __reduce__(self):
                return (print, ("pwned",))

        out = io.BytesIO()
        for header in (torch_legacy.MAGIC, torch_legacy.PROTOCOL, {"little_endian": True}):
            pickle.dump(header, out, protocol=2)
        pickle.dump(collections.OrderedDict(x=Evil()), out, protocol=2)
        with self.assertRaisesRegex(torch_legacy.TorchFormatError, r"print is not allowed"):
            self.load_bytes(out.getvalue())

    def test_truncated_and_foreign_files_are_errors(self):
        data = self.sample()
        with self.assertRaisesRegex(torch_legacy.TorchFormatError, "truncated"):
            self.load_bytes(data[:-5])
        with self.assertRaises(torch_legacy.TorchFormatError):
            self.load_bytes(data + b"\0")
        with self.assertRaises(torch_legacy.TorchFormatError):
            self.load_bytes(pickle.dumps(123))
        with self.assertRaises(torch_legacy.TorchFormatError):
            self.load_bytes(data[:30])


def random_state_dict(seed: int) -> dict[str, np.ndarray]:
    """A state_dict with EfficientNet-Lite0's keys and shapes and random (well-scaled) values."""
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {}

    def conv(key, cout, cin, k):
        sd[key + ".weight"] = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)

    def bn(key, c):
        sd[key + ".weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        sd[key + ".bias"] = rng.uniform(-0.2, 0.2, c).astype(np.float32)
        sd[key + ".running_mean"] = rng.uniform(-0.5, 0.5, c).astype(np.float32)
        sd[key + ".running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
        sd[key + ".num_batches_tracked"] = np.array(0, dtype=np.int64)

    conv("_conv_stem", 32, 3, 3)
    bn("_bn0", 32)
    i = 0
    for repeats, k, _stride, expand, cin, cout in build_effnet_lite0.STAGES:
        for r in range(repeats):
            bin_ = cin if r == 0 else cout
            hidden = bin_ * expand
            p = f"_blocks.{i}"
            if expand != 1:
                conv(p + "._expand_conv", hidden, bin_, 1)
                bn(p + "._bn0", hidden)
            conv(p + "._depthwise_conv", hidden, 1, k)
            bn(p + "._bn1", hidden)
            conv(p + "._project_conv", cout, hidden, 1)
            bn(p + "._bn2", cout)
            i += 1
    conv("_conv_head", 1280, 320, 1)
    bn("_bn1", 1280)
    sd["_fc.weight"] = (rng.standard_normal((1000, 1280)) / np.sqrt(1280)).astype(np.float32)
    sd["_fc.bias"] = rng.uniform(-0.1, 0.1, 1000).astype(np.float32)
    return sd


class EffNetBuilderTests(unittest.TestCase):
    def test_same_pads_match_tensorflow(self):
        self.assertEqual(build_effnet_lite0.same_pads(224, 3, 2), (0, 1, 112))
        self.assertEqual(build_effnet_lite0.same_pads(112, 5, 2), (1, 2, 56))
        self.assertEqual(build_effnet_lite0.same_pads(56, 3, 1), (1, 1, 56))
        self.assertEqual(build_effnet_lite0.same_pads(14, 1, 1), (0, 0, 14))
        self.assertEqual(build_effnet_lite0.same_pads(7, 5, 1), (2, 2, 7))

    def test_structure_and_bn_folding_agree(self):
        import onnxruntime as ort

        sd = random_state_dict(3)
        self.assertEqual(len(sd), 296)
        self.assertEqual(sum(v.size for v in sd.values()), 4_694_073)
        kept = build_effnet_lite0.build(sd, fold_bn=False)
        folded = build_effnet_lite0.build(sd, fold_bn=True)
        ops_kept = collections.Counter(n.op_type for n in kept.graph.node)
        ops_folded = collections.Counter(n.op_type for n in folded.graph.node)
        self.assertEqual(ops_kept["BatchNormalization"], 49)
        self.assertEqual(ops_kept["Conv"], 49)
        self.assertEqual(ops_kept["Add"], 9)
        self.assertEqual(ops_kept["Clip"], 33)
        self.assertNotIn("BatchNormalization", ops_folded)
        macs = dict((p.key, p.value) for p in folded.metadata_props)["macs_per_image"]
        self.assertEqual(int(macs), 385_187_552)
        x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
        outs = []
        for m in (kept, folded):
            sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            outs.append(sess.run(None, {"input": x})[0])
        self.assertEqual(outs[0].shape, (2, 1000))
        scale = np.abs(outs[0]).max()
        self.assertGreater(scale, 0)
        self.assertLess(np.abs(outs[0] - outs[1]).max(), 1e-4 * scale)

    def test_missing_or_extra_entries_are_errors(self):
        sd = random_state_dict(4)
        del sd["_fc.bias"]
        with self.assertRaises(KeyError):
            build_effnet_lite0.build(sd, fold_bn=True)
        sd = random_state_dict(4)
        sd["_extra.weight"] = np.zeros(1, np.float32)
        with self.assertRaisesRegex(ValueError, "not used"):
            build_effnet_lite0.build(sd, fold_bn=True)


class WheelCacheTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.old = (wheelcache.WHEELS_DIR, dict(wheelcache.WHEELS), set(wheelcache._VERIFIED))
        wheelcache.WHEELS_DIR = Path(self.tmp.name)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("pkg/data.bin", b"hello fixtures")
        self.member_sha = hashlib.sha256(b"hello fixtures").hexdigest()
        wheel = wheelcache.Wheel("fake-pkg", "1.0", hashlib.sha256(buf.getvalue()).hexdigest())
        wheel.path.write_bytes(buf.getvalue())
        wheelcache.WHEELS["fake-pkg"] = wheel
        wheelcache._VERIFIED.discard("fake-pkg")

    def tearDown(self):
        wheelcache.WHEELS_DIR = self.old[0]
        wheelcache.WHEELS.clear()
        wheelcache.WHEELS.update(self.old[1])
        wheelcache._VERIFIED.clear()
        wheelcache._VERIFIED.update(self.old[2])
        self.tmp.cleanup()

    def test_member_hash_is_checked(self):
        self.assertEqual(wheelcache.read_member("fake-pkg", "pkg/data.bin", self.member_sha), b"hello fixtures")
        with self.assertRaisesRegex(wheelcache.FixtureError, "hash mismatch for pkg/data.bin"):
            wheelcache.read_member("fake-pkg", "pkg/data.bin", "0" * 64)
        with self.assertRaisesRegex(wheelcache.FixtureError, "no member pkg/other"):
            wheelcache.read_member("fake-pkg", "pkg/other", self.member_sha)

    def test_extract_is_idempotent(self):
        dest = Path(self.tmp.name) / "out" / "data.bin"
        wheelcache.extract_member("fake-pkg", "pkg/data.bin", self.member_sha, dest)
        self.assertEqual(dest.read_bytes(), b"hello fixtures")
        mtime = dest.stat().st_mtime_ns
        wheelcache.extract_member("fake-pkg", "pkg/data.bin", self.member_sha, dest)
        self.assertEqual(dest.stat().st_mtime_ns, mtime)
        dest.write_bytes(b"tampered")
        wheelcache.extract_member("fake-pkg", "pkg/data.bin", self.member_sha, dest)
        self.assertEqual(dest.read_bytes(), b"hello fixtures")

    def test_npz_bytes_is_deterministic_and_readable(self):
        arrays = {"input": np.arange(6, dtype=np.float32).reshape(2, 3), "labels": np.array([1, 2])}
        for compress in (False, True):
            a = wheelcache.npz_bytes(arrays, compress=compress)
            self.assertEqual(a, wheelcache.npz_bytes(arrays, compress=compress))
            loaded = np.load(io.BytesIO(a))
            self.assertEqual(sorted(loaded.files), ["input", "labels"])
            np.testing.assert_array_equal(loaded["input"], arrays["input"])


class PreprocessingTests(unittest.TestCase):
    def test_resize_and_crop_geometry(self):
        from PIL import Image

        img = Image.new("RGB", (500, 375))
        r = fetch_workloads.resize_shorter(img, 256)
        self.assertEqual(r.size, (341, 256))  # int(256 * 500 / 375) = 341
        r = fetch_workloads.resize_shorter(Image.new("RGB", (300, 451)), 256)
        self.assertEqual(r.size, (256, 384))  # int(256 * 451 / 300) = 384
        arr = np.zeros((256, 341, 3), np.uint8)
        arr[:, :, 0] = (np.arange(341)[None, :] % 256).astype(np.uint8)
        arr[:, :, 1] = np.arange(256, dtype=np.uint8)[:, None]
        c = np.asarray(fetch_workloads.crop(Image.fromarray(arr), "centre"))
        self.assertEqual(c.shape, (224, 224, 3))
        self.assertEqual((int(c[0, 0, 0]), int(c[0, 0, 1])), (58, 16))  # round(58.5) = 58 (half to even), 32 / 2 = 16
        br = np.asarray(fetch_workloads.crop(Image.fromarray(arr), "bottom-right"))
        self.assertEqual((int(br[0, 0, 0]), int(br[0, 0, 1])), (117, 32))

    def test_normalisations(self):
        x = np.stack([np.full((2, 2), v, np.uint8) for v in (0, 127, 255)])[None]
        w2 = fetch_workloads.w2_normalize(x)
        np.testing.assert_allclose(w2[0, :, 0, 0], [-127 / 128, 0.0, 1.0])
        self.assertEqual(w2.dtype, np.float32)
        w3 = fetch_workloads.w3_normalize(x)
        np.testing.assert_allclose(w3[0, :, 0, 0],
                                   [(0 - 0.485) / 0.229, (127 / 255 - 0.456) / 0.224, (1 - 0.406) / 0.225],
                                   rtol=1e-6)


if __name__ == "__main__":
    unittest.main()
