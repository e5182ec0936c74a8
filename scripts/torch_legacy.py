"""Torch-free reader for legacy (pre-zip, non-zipfile) `torch.save` files holding a state_dict.

Layout of such a file: a pickle of the magic number 0x1950a86a20f9469cfc6c, a pickle of the
protocol version (1001), a pickle of a system-info dict, the pickled object itself, a pickle of the
list of storage keys, then for every key in that order an 8-byte little-endian element count
followed by the storage's raw little-endian bytes.

Inside the object pickle every tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, requires_grad, backward_hooks)` and every storage is a persistent id
`('storage', <StorageType>, key, location, numel[, None])`. The unpickler below allows only those globals
(plus collections.OrderedDict) and refuses anything else, so a malicious file cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from pathlib import Path

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFormatError(ValueError):
    """The file is not a legacy torch.save state_dict this reader understands."""


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _StorageRef:
    def __init__(self, stype: _StorageType, key: str, numel: int):
        self.stype, self.key, self.numel = stype, key, numel


class _TensorRef:
    def __init__(self, storage: _StorageRef, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, *rest):
    if not isinstance(storage, _StorageRef):
        raise TorchFormatError("_rebuild_tensor_v2 called without a storage persistent id")
    return _TensorRef(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise TorchFormatError(f"global {module}.{name} is not allowed in a state_dict file")

    def persistent_load(self, pid):
        # Newer writers append a sixth element, the view metadata, which is None for whole storages.
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise TorchFormatError(f"unexpected persistent id {pid!r}")
        if len(pid) == 6 and pid[5] is not None:
            raise TorchFormatError(f"storage views are not supported (persistent id {pid!r})")
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, _StorageType):
            raise TorchFormatError(f"storage {key!r} has an unknown storage type")
        return _StorageRef(stype, str(key), int(numel))


def _plain_load(f):
    # Header pickles contain only plain Python values: no globals at all.
    class Plain(pickle.Unpickler):
        def find_class(self, module, name):
            raise TorchFormatError(f"global {module}.{name} in a header pickle")

    return Plain(f).load()


def load_state_dict(path: Path) -> "collections.OrderedDict[str, np.ndarray]":
    """Reads the state_dict of a legacy torch.save file as an ordered dict of numpy arrays."""
    data = Path(path).read_bytes()
    f = io.BytesIO(data)
    try:
        if _plain_load(f) != MAGIC:
            raise TorchFormatError(f"{path}: bad magic number (not a legacy torch.save file)")
        if _plain_load(f) != PROTOCOL:
            raise TorchFormatError(f"{path}: unsupported torch.save protocol version")
        sysinfo = _plain_load(f)
        if not isinstance(sysinfo, dict) or not sysinfo.get("little_endian", False):
            raise TorchFormatError(f"{path}: only little-endian files are supported")
        obj = _Unpickler(f).load()
        keys = _plain_load(f)
    except (pickle.UnpicklingError, EOFError) as e:
        raise TorchFormatError(f"{path}: corrupt pickle: {e}") from e
    storages: dict[str, np.ndarray] = {}
    refs = {}
    for t in obj.values():
        if not isinstance(t, _TensorRef):
            raise TorchFormatError(f"{path}: state_dict holds a non-tensor value")
        refs[t.storage.key] = t.storage
    pos = f.tell()
    for key in keys:
        if key not in refs:
            raise TorchFormatError(f"{path}: storage {key!r} is listed but not referenced")
        ref = refs[key]
        (count,) = struct.unpack_from("<q", data, pos)
        pos += 8
        nbytes = count * ref.stype.dtype.itemsize
        if count != ref.numel or pos + nbytes > len(data):
            raise TorchFormatError(f"{path}: storage {key!r} is truncated or has a wrong element count")
        storages[key] = np.frombuffer(data, dtype=ref.stype.dtype.newbyteorder("<"), count=count, offset=pos)
        pos += nbytes
    if pos != len(data):
        raise TorchFormatError(f"{path}: {len(data) - pos} trailing bytes after the last storage")
    out = collections.OrderedDict()
    for name, t in obj.items():
        buf = storages.get(t.storage.key)
        if buf is None:
            raise TorchFormatError(f"{path}: tensor {name} refers to missing storage {t.storage.key!r}")
        itemsize = buf.dtype.itemsize
        numel = int(np.prod(t.size)) if t.size else 1
        last = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride)) if numel else t.offset
        if t.offset < 0 or last >= len(buf):
            raise TorchFormatError(f"{path}: tensor {name} lies outside its storage")
        view = np.lib.stride_tricks.as_strided(
            buf[t.offset:], shape=t.size, strides=tuple(s * itemsize for s in t.stride), writeable=False)
        out[name] = np.array(view, dtype=buf.dtype.newbyteorder("="))
    return out
